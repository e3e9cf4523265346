# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Container discovery: which containers run on this host, and what each one looks like.

This is a private module_util: it is not part of the collection's public API.

How a container is recognised (docs/evacuation.md): a child cgroup of the parent cgroup
(default ``haul``, below the cgroup2 root) whose processes include the init of a pid namespace
(``NSpid`` in /proc/PID/status has more than one entry and ends in 1). Its name is the name of
the child cgroup. Its root directory is ``/var/lib/haul/containers/NAME/rootfs`` when that is
the init's root, else the root of its ``/`` mount.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.haul.live.plugins.module_utils import _cgroup
from ansible_collections.haul.live.plugins.module_utils import _criu


def container_state(cg, pids):
    """'frozen' (cgroup frozen), 'stopped' (every task stopped by a signal) or 'running'."""
    state = cg.state()
    if state in (_cgroup.FROZEN, _cgroup.FREEZING):
        return 'frozen'
    if pids and len(_cgroup.stopped_pids(pids)) == len(pids):
        return 'stopped'
    return 'running'


def describe(found):
    """Add state, memory and root to one entry of :func:`_cgroup.discover_containers`."""
    cg = _cgroup.Cgroup(found['cgroup'], version=found['version'], step='discover')
    pids = found['pids']
    init = found['init_pid']
    rss = _criu.tree_rss(pids)
    tmpfs = _criu.tmpfs_usage(init)
    return {
        'name': found['name'],
        'cgroup': '/' + found['path'].strip('/'),
        'cgroup_fs': found['cgroup'],
        'init_pid': init,
        'processes': len(pids),
        'state': container_state(cg, pids),
        'memory_bytes': rss + tmpfs,
        'rss_bytes': rss,
        'tmpfs_bytes': tmpfs,
        'root': _criu.detect_root(init, found['name']),
    }


def list_containers(parent=_cgroup.DEFAULT_PARENT, names=None):
    """The containers below ``parent`` (only ``names`` when given), described, sorted by name."""
    out = []
    for found in _cgroup.discover_containers(parent, version=_cgroup.V2):
        if names and found['name'] not in names:
            continue
        out.append(describe(found))
    return out
