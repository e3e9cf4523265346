# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Which runtime owns which container (private module_util): ``haul_runtime: auto``.

:data:`RUNTIMES` names every kind; :func:`find_all` asks each installed one (or only the one
the operator named) for its containers, and keeps one entry per container: a container that two
runtimes would claim (a Podman container placed below the lab's parent cgroup, say) belongs to
the one that knows it by name (Podman, LXC) rather than to the lab's cgroup convention.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.module_utils._runtimes.lab import LabRuntime
from ansible_collections.haul.live.plugins.module_utils._runtimes.lxc import LxcRuntime
from ansible_collections.haul.live.plugins.module_utils._runtimes.podman import PodmanRuntime

RUNTIMES = {'lab': LabRuntime, 'podman': PodmanRuntime, 'lxc': LxcRuntime}
AUTO = 'auto'
CHOICES = [AUTO] + sorted(RUNTIMES)
# Asked in this order; the first to claim an init pid owns the container.
ORDER = ('podman', 'lxc', 'lab')


def runtime(kind, path=None):
    """The runtime object of ``kind`` (HaulError for an unknown kind)."""
    if kind not in RUNTIMES:
        raise HaulError('runtime', 'unknown runtime %r: use one of %s' % (kind, ', '.join(CHOICES)))
    return RUNTIMES[kind](path=path)


def find_all(kind=AUTO, names=None, parent=None, with_pids=False, path=None):
    """The containers of runtime ``kind`` (or of every installed runtime, for ``auto``), sorted
    by name then runtime. Returns ``(containers, runtimes)``: ``runtimes`` maps each kind asked
    to 'found N', 'not installed' or the error that stopped its listing (a broken Podman does not
    hide the lab's containers; the caller decides whether that is fatal)."""
    kinds = ORDER if kind == AUTO else (kind,)
    seen = set()
    out = []
    status = {}
    for k in kinds:
        rt = runtime(k, path)
        if not rt.available():
            status[k] = 'not installed'
            continue
        kwargs = {'with_pids': with_pids}
        if k == 'lab' and parent:
            kwargs['parent'] = parent
        try:
            found = rt.find(names, **kwargs)
        except HaulError as e:
            if kind != AUTO:
                raise
            status[k] = '%s: %s' % (e.step, e.cause)
            continue
        kept = [c for c in found if c['init_pid'] not in seen]
        seen.update(c['init_pid'] for c in kept)
        out.extend(kept)
        status[k] = 'found %d' % len(kept)
    out.sort(key=lambda c: (c['name'], c['runtime']))
    return out, status


# The runtimes whose containers move through their own checkpoint and restore (docs/runtimes.md).
OWN_STEPS = ('podman', 'lxc')


def own_steps(params):
    """The runtime whose own steps replace haul.live's CRIU dump and restore in a migration of
    ``params`` (``params['runtime']``), or None for the lab's containers (haul.live's pipeline)."""
    kind = (params or {}).get('runtime') or 'lab'
    if kind == 'lab':
        return None
    if kind not in OWN_STEPS:
        raise HaulError('runtime', 'haul.live does not migrate %s containers yet (docs/runtimes.md)' % kind)
    return runtime(kind)
