# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Restore a container from an images directory (criu_restore).

:func:`restore_container` restores the tree with CRIU into its cgroup, checks that it
runs, and records the restore in a marker (``restore.json``) so that a second run does
nothing; a failed restore removes what it created.

This is a private module_util: it is not part of the collection's public API.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from ansible_collections.haul.live.plugins.module_utils._common import HaulError, _hostname
from ansible_collections.haul.live.plugins.module_utils import _cgroup, _images, _network
from ansible_collections.haul.live.plugins.module_utils._container import restore_root
from ansible_collections.haul.live.plugins.module_utils._criu import open_session
from ansible_collections.haul.live.plugins.module_utils._criu_options import CriuOptions
from ansible_collections.haul.live.plugins.module_utils._proc import proc_cgroup_v2, proc_starttime, proc_status


# --------------------------------------------------------------------------- the restore step

RESTORE_MARKER = 'restore.json'


def _running_container(cgroup_path, cgroup_mod, step='restore'):
    """(Cgroup or None, pids, init pid or None) for the cgroup of that path on this host."""
    try:
        cg = cgroup_mod.Cgroup(cgroup_path.strip('/'), step=step)
    except HaulError as e:
        if 'does not exist' in e.cause:
            return None, [], None
        raise
    pids = cg.pids()
    return cg, pids, cgroup_mod.pidns_init(pids)


def _read_marker(images_dir):
    try:
        with open(os.path.join(images_dir, RESTORE_MARKER)) as f:
            import json  # pylint: disable=import-outside-toplevel
            return json.load(f)
    except (IOError, OSError, ValueError):
        return None


def _write_marker(images_dir, data):
    """restore.json; a full disk is a clear error (step restore, the file, ``no space left on HOST``)."""
    from ansible_collections.haul.live.plugins.module_utils._common import write_json_atomic  # pylint: disable=import-outside-toplevel
    write_json_atomic(os.path.join(images_dir, RESTORE_MARKER), data, 'restore', what='the record of the restore')


def _cleanup_restore(cgroup_path, existed_before, cgroup_mod, timeout=10):
    """After a failed restore: kill what CRIU left in the target cgroup, and remove the cgroup if
    CRIU made it. The restore only starts into an empty cgroup (a populated one is refused), so
    every task in it now is a half-restored one: a CRIU killed mid-restore leaves them behind,
    stuck, also in a cgroup an earlier migration left empty."""
    try:
        cg, pids, dummy = _running_container(cgroup_path, cgroup_mod, step='cleanup')
        if cg is None:
            return
        if pids:
            cg.kill(timeout=timeout)
        if not existed_before:
            cg.remove()
    except HaulError:
        pass


def restore_container(params, check_mode=False, diff=False):
    """The criu_restore module's logic. Returns the result dict."""
    images_dir = os.path.abspath(params['images_dir'])
    result = {'changed': False, 'images_dir': images_dir}

    session = open_session(images_dir, criu_path=params.get('criu_path'))
    criu_version = session.version()
    result['criu_version'] = criu_version

    manifest = _images.verify_manifest(images_dir, checksums=params.get('verify', 'sha256') != 'size',
                                       step='verify')
    _images.check_restorable(manifest, criu_version, step='verify')
    ident = manifest['identity']
    name = params.get('name') or ident.get('name')
    if params.get('name') and ident.get('name') and params['name'] != ident['name']:
        raise HaulError('verify', 'images in %s are of container %s, not %s' % (images_dir, ident['name'], params['name']))
    cgroup_path = '/' + (params.get('cgroup') or ident.get('cgroup') or '').strip('/')
    if cgroup_path == '/':
        raise HaulError('verify', 'no cgroup for %s: the manifest has none, pass cgroup' % name)
    if ident.get('cgroup') and cgroup_path != ident['cgroup']:
        raise HaulError('verify', 'CRIU restores the cgroups the images record (%s); cgroup %s cannot differ'
                        % (ident['cgroup'], cgroup_path))
    result.update(name=name, cgroup=cgroup_path, dumped_by=manifest.get('criu_version'),
                  source_host=ident.get('host'))

    # Already running here?
    cg, pids, init = _running_container(cgroup_path, _cgroup)
    marker = _read_marker(images_dir)
    if pids:
        if init is not None and marker and marker.get('pid') == init \
                and marker.get('starttime') == proc_starttime(init) and marker.get('host') == _hostname():
            result.update(pid=init, root=marker.get('root'), stats=_images.summarize_stats(
                _images.read_stats(images_dir, 'restore')), duration=0.0, state='running')
            if diff:
                result['diff'] = {'before': {'container': 'running'}, 'after': {'container': 'running'}}
            return result
        who = 'init pid %d' % init if init else '%d processes' % len(pids)
        raise HaulError('restore', 'a container %s already runs here (cgroup %s, %s) and it is not restored '
                        'from %s: remove it first' % (name, cgroup_path, who, images_dir))

    root = restore_root(params, name)
    result['root'] = root
    network = result['network'] = ident.get('network')
    _network.require_restorable(network, step='restore')

    result['changed'] = True
    if diff:
        result['diff'] = {'before': {'container': 'absent'}, 'after': {'container': 'running'}}
    if check_mode:
        return result

    options = CriuOptions(
        root=root,
        external=list(params.get('external') or []) + _network.criu_externals(network),
        network_lock=params.get('network_lock') or 'nftables',
        tcp_established=bool(params.get('tcp_established')),
        tcp_close=bool(params.get('tcp_close')) or None,
        manage_cgroups=True,
        manage_cgroups_mode=params.get('manage_cgroups_mode') or 'soft',
        rst_sibling=True,
        shell_job=False,
        # handoff: the tree stays stopped until the source commits (see _migration/destination.py)
        leave_stopped=True if params.get('hold') == 'stopped' else None,
        # post-copy: missing pages come through userfaultfd from the lazy-pages daemon
        lazy_pages=True if params.get('lazy_pages') else None,
    )
    existed = cg is not None
    try:
        res = session.restore(options)
    except HaulError:
        _cleanup_restore(cgroup_path, existed, _cgroup)
        raise
    pid = res.get('pid')
    result.update(log_path=res['log_path'], duration=round(res['duration'], 3), pid=pid)
    try:
        _thaw_restored(cgroup_path, params.get('check_timeout', 5))
        _check_restored(pid, cgroup_path, params.get('check_timeout', 5))
        if params.get('hold') == 'stopped':
            _network.prepare_links(network, pid=pid)  # up, on no bridge: it goes live at the commit
    except HaulError:
        _cleanup_restore(cgroup_path, existed, _cgroup)
        raise
    if params.get('hold') != 'stopped':
        # CRIU resumed the tree: it goes on the network now
        _network.restore_neighbours(pid, network)
        result['announced'] = _network.go_live(network, None, pid)
    try:
        _write_marker(images_dir, {'pid': pid, 'starttime': proc_starttime(pid), 'host': _hostname(),
                                   'root': root, 'time': time.time()})
    except HaulError:
        if params.get('hold') == 'stopped':
            _cleanup_restore(cgroup_path, existed, _cgroup)  # a stopped copy never runs: it goes
        raise
    result['stats'] = _images.summarize_stats(_images.read_stats(images_dir, 'restore'))
    result['state'] = 'running'
    return result


def _thaw_restored(cgroup_path, timeout):
    """Thaw the restored container's freezer cgroups (v2 and a v1 twin) that CRIU restored frozen.

    The source is frozen before its dump (_checkpoint._freeze_for_criu), and CRIU's images keep
    the freezer's state, which its restore writes back. The tree is running here, or stopped
    for a handoff (a thaw leaves a SIGSTOPped task stopped): it must not stay frozen as well.
    """
    try:
        cg = _cgroup.Cgroup(cgroup_path, step='restore')
    except HaulError:
        return  # no freezer cgroup to thaw; _check_restored says what is wrong
    cg.thaw(timeout=timeout)


def _check_restored(pid, cgroup_path, timeout):
    """The restored root pid is alive, not a zombie, and in the expected cgroup."""
    if not pid:
        raise HaulError('check', 'CRIU reported no pid for the restored tree')
    deadline = time.time() + timeout
    while True:
        st = proc_status(pid)
        if st is None or st.get('State', '').startswith(('Z', 'X')):
            raise HaulError('check', 'restored root pid %d died right after the restore' % pid)
        nspid = st.get('NSpid', [])
        cg = proc_cgroup_v2(pid)
        if len(nspid) > 1 and nspid[-1] == 1 and (cg is None or cg == cgroup_path):
            return
        if time.time() >= deadline:
            raise HaulError('check', 'restored root pid %d is in cgroup %s, not %s (NSpid %s)'
                            % (pid, cg, cgroup_path, ' '.join(str(x) for x in nspid)))
        time.sleep(0.01)
