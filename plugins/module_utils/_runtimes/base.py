# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The container runtime seam (private module_util): what every kind of container has to say.

A *runtime* is the software that owns a container on a host: ``lab`` (haul.live's own
namespaced trees, cgroup ``haul/NAME``), ``podman`` or ``lxc`` (docs/runtimes.md). Each
kind is one class, in one file of this package, with the same interface:

- :meth:`Runtime.available`: whether this host has the runtime at all;
- :meth:`Runtime.find`: its containers on this host, each described the same way (name, id,
  runtime, state, memory, init pid, cgroup, root, sockets, network);
- :attr:`Runtime.strategies` and :meth:`Runtime.refusal`: what it can do, and the clear
  refusal, before any freeze, of a strategy it cannot do.

:func:`.registry.find_all` asks every kind (or the one the operator named) and tells which
runtime owns each container (``haul_runtime: auto``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from ansible_collections.haul.live.plugins.module_utils._common import HaulError, run_command
from ansible_collections.haul.live.plugins.module_utils import _netlock

# How long a runtime's listing command may take before discovery gives up on it.
LIST_TIMEOUT_S = 60

# The strategies, and the runtime feature each one needs.
STRATEGY_NEEDS = {
    'stopcopy': 'a checkpoint and a restore',
    'precopy': 'pre-dumps (pre-copy rounds)',
    'postcopy': 'lazy pages (restoring before the memory moved)',
    'hybrid': 'pre-dumps and lazy pages',
}


def no_lazy_pages(who):
    """``why_not`` of a runtime that cannot restore before the memory moved (post-copy, hybrid)."""
    why = '%s has no lazy-pages restore (restoring before the memory moved)' % who
    return {'postcopy': why, 'hybrid': why}


def which(tool, path=None):
    """The path of tool on ``PATH`` (and the sbin directories), or None."""
    dirs = (path or os.environ.get('PATH') or '').split(os.pathsep) + ['/usr/local/sbin', '/usr/sbin', '/sbin']
    for d in dirs:
        cand = os.path.join(d, tool)
        if d and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def run(argv, step, timeout=LIST_TIMEOUT_S):
    """Run a runtime's command (:func:`_common.run_command`, naming it by its first three words)."""
    return run_command(argv, step, timeout, shown=3)


def run_json(argv, step, timeout=LIST_TIMEOUT_S):
    """:func:`run`, its output parsed as JSON (HaulError when it is not JSON)."""
    out = run(argv, step, timeout)
    try:
        return json.loads(out or 'null')
    except ValueError as e:
        raise HaulError(step, '%s did not print JSON: %s' % (' '.join(argv[:3]), e))


class Runtime(object):
    """One kind of container runtime. Subclasses set :attr:`kind`, :attr:`tool`,
    :attr:`strategies` (what haul.live can do with its containers) and :attr:`why_not` (why the
    others are refused), and implement :meth:`find`."""

    kind = None
    tool = None            # the command whose presence says the runtime is installed
    strategies = ()        # the strategies this runtime supports
    why_not = {}           # strategy -> why this runtime cannot do it

    def __init__(self, path=None):
        self.path = path

    def available(self):
        """Whether this host has the runtime (its command is installed)."""
        return self.tool is None or which(self.tool, self.path) is not None

    def find(self, names=None, **kwargs):
        """This runtime's running (or frozen, or paused) containers on this host, described; only
        ``names`` when given. A list of dicts, sorted by name."""
        raise NotImplementedError

    def refusal(self, strategy):
        """None when this runtime can migrate with ``strategy``, else the message that refuses
        it before anything is frozen, naming what it can do instead."""
        if strategy == 'auto' or strategy in self.strategies:
            return None
        why = self.why_not.get(strategy) or 'it has no %s' % STRATEGY_NEEDS.get(strategy, strategy)
        return '%s does not support %s: %s; use %s' % (
            self.kind, strategy, why, ' or '.join(self.strategies) or 'nothing (it cannot be migrated)')

    def capabilities(self):
        """What this runtime can do, for container_info and the report."""
        return {'runtime': self.kind, 'strategies': list(self.strategies)}

    # --- a checkpoint on this host's disk, through a reboot (update_in_place) ------------------
    def checkpoint_local(self, params):
        """Checkpoint the container ``params['name']`` into ``params['images_dir']``, on this
        host's disk (it must outlive a reboot), and stop it. Returns the result (``changed``,
        ``bytes``); ``changed`` is False when it is stopped with its checkpoint there already.
        A checkpoint that fails leaves the container running."""
        raise NotImplementedError('%s has no checkpoint to local disk' % self.kind)

    def restore_local(self, params):
        """Run the container ``params['name']`` again from :meth:`checkpoint_local`'s checkpoint
        (after the reboot, or to undo an update that stopped before every container was on disk).
        Returns the result (``changed``, ``pid``); ``changed`` is False when it runs already."""
        raise NotImplementedError('%s has no restore from local disk' % self.kind)

    # --- a held copy on the destination (runtimes whose restore is their own) ------------------
    def copy_removal(self, name):
        """The commands that make this runtime forget a copy of ``name`` on this host."""
        raise NotImplementedError

    def release_hold(self, params):
        """The commit: the held copy here may be reached (its tasks resume next)."""
        _netlock.release_addresses(params['name'])

    def remove_copy(self, params):
        """The abort: the runtime here forgets the copy (:meth:`copy_removal`), then its
        addresses are released. Best effort, and quiet: the receiver reports the abort itself."""
        for argv in self.copy_removal(params['name']):
            try:
                run(argv, 'abort', timeout=120)
            except HaulError:
                pass
        try:
            _netlock.release_addresses(params['name'], 'abort')
        except HaulError:
            pass
