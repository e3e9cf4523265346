# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Which container a step works on, and where its root filesystem is.

:func:`resolve_target` turns a ``pid`` or ``cgroup`` parameter into the container's
init pid, its tasks and its cgroup; :func:`detect_root`, :func:`container_root`,
:func:`restore_root` find the root filesystem; :func:`container_argspec`,
:func:`page_server_argspec` are the options the modules share.

This is a private module_util: it is not part of the collection's public API.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.module_utils._criu_options import NETWORK_LOCKS
from ansible_collections.haul.live.plugins.module_utils._proc import _read_text, find_pidns_init, proc_status


# --------------------------------------------------------------------------- dump targets

CONTAINERS_DIR = '/var/lib/haul/containers'


def resolve_target(pid=None, cgroup=None, step='identify', proc='/proc', cgroup_mod=None):
    """Find the container to dump, by its init pid or by its cgroup.

    Returns {'pid': host pid of the pid-namespace init, 'cgroup': a _cgroup.Cgroup,
    'cgroup_path': '/haul/NAME' (inside the hierarchy), 'pids': [every pid of the cgroup]}.
    Raises HaulError(step, ...) with a clear cause: pid missing, pid not an init (naming
    the init when there is one), cgroup missing, cgroup without a pid-namespace init.
    """
    if cgroup_mod is None:
        from ansible_collections.haul.live.plugins.module_utils import _cgroup as cgroup_mod  # pylint: disable=import-outside-toplevel
    if pid is not None:
        st = proc_status(pid, proc)
        if st is None:
            raise HaulError(step, 'pid %s does not exist' % pid)
        nspid = st.get('NSpid', [pid])
        if len(nspid) < 2:
            raise HaulError(step, 'pid %s is not in a pid namespace of its own: it is not a container init '
                            '(give the pid of the container\'s pid-namespace init, or its cgroup)' % pid)
        if nspid[-1] != 1:
            init = find_pidns_init(pid, proc)
            hint = ('; its init is pid %d: pass that pid or the cgroup' % init) if init else ''
            raise HaulError(step, 'pid %s is pid %d inside a container\'s pid namespace, not its init%s'
                            % (pid, nspid[-1], hint))
        cg = cgroup_mod.Cgroup.from_pid(pid, step=step)
        init = pid
        pids = cg.pids()
    else:
        cg = cgroup_mod.Cgroup(cgroup, step=step)
        pids = cg.pids()
        init = cgroup_mod.pidns_init(_direct_pids(cg.path), proc=proc)
        if init is None:
            below = cgroup_mod.pidns_init(pids, proc=proc)
            hint = ''
            if below is not None:
                hint = '; pid %d below it is one: give the container\'s own cgroup' % below
            raise HaulError(step, 'cgroup %s holds no pid-namespace init (%d processes): no container there%s'
                            % (cg.path, len(pids), hint))
    return {'pid': init, 'cgroup': cg, 'cgroup_path': '/' + cg.rel.strip('/'), 'pids': pids}


def _direct_pids(cgroup_dir):
    """Pids that are members of the cgroup directory itself (not of its children)."""
    try:
        return [int(x) for x in _read_text(os.path.join(cgroup_dir, 'cgroup.procs')).split()]
    except (IOError, OSError, ValueError):
        return []


def _same_dir(a, b):
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def root_candidates(name):
    return [os.path.join(CONTAINERS_DIR, name, 'rootfs')] if name else []


def detect_root(pid, name=None, proc='/proc'):
    """The container's root directory as seen from this host, or None.

    Candidates, in order: ``/var/lib/haul/containers/NAME/rootfs`` (the convention),
    then the root field of the ``/`` mount in /proc/PID/mountinfo. A candidate counts
    only if it is the very directory (same device and inode) that /proc/PID/root is.
    """
    proc_root = os.path.join(proc, str(pid), 'root')
    cands = root_candidates(name)
    try:
        for line in _read_text(os.path.join(proc, str(pid), 'mountinfo')).splitlines():
            fields = line.split()
            if len(fields) > 4 and fields[4] == '/':
                cands.append(fields[3])
    except (IOError, OSError):
        pass
    for cand in cands:
        if cand and os.path.isabs(cand) and _same_dir(cand, proc_root):
            return cand
    return None


def container_root(params, pid, name):
    """The root directory of the container to checkpoint: ``params['root']`` when given (it must be
    a directory), else :func:`detect_root`. HaulError('identify', ...) naming what was tried."""
    root = params.get('root')
    if root:
        if not os.path.isdir(root):
            raise HaulError('identify', 'root %s is not a directory' % root)
        return root
    root = detect_root(pid, name)
    if not root:
        tried = ', '.join(root_candidates(name)) or '-'
        raise HaulError('identify', 'cannot find the root directory of %s (pid %d) on this host: tried %s and '
                        '/proc/%d/mountinfo; pass root' % (name, pid, tried, pid))
    return root


def restore_root(params, name, step='restore'):
    """The root directory to restore ``name`` into on this host: ``params['root']``, else the
    conventional one; HaulError(step, ...) when it is not there (the rootfs must be synced first)."""
    root = params.get('root') or (root_candidates(name) or [None])[0]
    if not root or not os.path.isdir(root):
        raise HaulError(step, 'root directory %s of %s does not exist on this host: sync the rootfs first'
                        % (root, name))
    return root


def container_argspec():
    """The options that name a container and tell CRIU how to checkpoint it (the doc fragment
    ``haul.live.container``), for the modules that dump one. Use with CONTAINER_RULES."""
    return dict(
        cgroup=dict(type='str'),
        pid=dict(type='int'),
        name=dict(type='str'),
        root=dict(type='path'),
        external=dict(type='list', elements='str', default=['mnt[]:m']),
        network_lock=dict(type='str', choices=list(NETWORK_LOCKS), default='nftables'),
        tcp_established=dict(type='bool', default=False),
        manage_cgroups_mode=dict(type='str', choices=['soft', 'full', 'strict', 'ignore'], default='soft'),
        freeze_timeout=dict(type='int', default=10),
        criu_path=dict(type='path'),
    )


# One of cgroup and pid names the container.
CONTAINER_RULES = dict(required_one_of=[['cgroup', 'pid']], mutually_exclusive=[['cgroup', 'pid']])


def page_server_argspec():
    """The ``page_server`` option (the doc fragment ``haul.live.page_server``) of criu_dump and criu_predump."""
    return dict(page_server=dict(type='dict', options=dict(
        host=dict(type='str', required=True),
        port=dict(type='int', required=True),
        tls=dict(type='bool', default=False),
        tls_cacert=dict(type='path'),
        tls_cert=dict(type='path'),
        tls_key=dict(type='path', no_log=False),
        tls_no_cn_verify=dict(type='bool', default=False),
    ), required_together=[['tls_cert', 'tls_key']]))


def page_server_kwargs(ps):
    """CriuOptions keywords for a ``page_server`` option (host, port, tls...), or {} without one."""
    if not ps:
        return {}
    kwargs = {'page_server': {'address': ps['host'], 'port': ps['port']}}
    if ps.get('tls'):
        kwargs.update(tls=True, tls_cacert=ps.get('tls_cacert'), tls_cert=ps.get('tls_cert'),
                      tls_key=ps.get('tls_key'), tls_no_cn_verify=ps.get('tls_no_cn_verify') or None)
    return kwargs
