# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Checkpoint a container (criu_dump, the dump step of a handoff).

:func:`dump_container` freezes the container's cgroup, dumps it with CRIU (see
:mod:`_criu`) into an images directory and writes the manifest; on a failure the
source is thawed again (:func:`_rescue_source`).

This is a private module_util: it is not part of the collection's public API.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from ansible_collections.haul.live.plugins.module_utils._common import HaulError, _hostname
from ansible_collections.haul.live.plugins.module_utils import _cgroup, _images, _network
from ansible_collections.haul.live.plugins.module_utils._container import container_root, page_server_kwargs, resolve_target
from ansible_collections.haul.live.plugins.module_utils._criu import open_session
from ansible_collections.haul.live.plugins.module_utils._criu_options import CriuOptions
from ansible_collections.haul.live.plugins.module_utils._proc import all_stopped, tmpfs_usage, tree_rss


def criu_freeze_cgroup(cg, mounts=None):
    """The freezer cgroup directory to give CRIU's freeze_cgroup for a _cgroup.Cgroup.

    CRIU uses the v1 freezer whenever the host mounts one (hybrid hierarchy), so
    prefer the v1 twin; else the cgroup v2 directory.
    """
    if cg.version == 'v1':
        return cg.path
    for twin in getattr(cg, 'twins', []) or []:
        return twin
    return cg.path


# --------------------------------------------------------------------------- the dump step

DUMP_SIZE_FACTOR = 1.1


def _wait_frozen(cg, timeout):
    deadline = time.time() + timeout
    delay = 0.001
    while True:
        st = cg.state()
        if st == 'frozen' or time.time() >= deadline:
            return st
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _hold_frozen(cg, timeout, cgroup_mod, criu_fz=None):
    """After leave_stopped: freeze the cgroup, then SIGCONT every task so it stays frozen, not stopped.

    ``cg``'s own freezer holds it, whatever its twin does; ``criu_fz``, the freezer that
    :func:`_freeze_for_criu` froze for CRIU, is thawed once the hold is in place when it is another
    one, so that the hold has one freezer, the one a thaw of ``cg`` releases.
    On failure the tasks are resumed (the source keeps running) and HaulError('hold', ...) is raised.
    """
    try:
        held = cgroup_mod.Cgroup(cg.path, version=cg.version, step='hold')
        held.freeze(timeout=timeout)
        cgroup_mod.sigcont_tree(cg.pids())
        st = _wait_frozen(held, timeout)
        if st != 'frozen':
            raise HaulError('hold', 'cgroup %s is %s, not frozen, after resuming the stopped tasks' % (cg.path, st))
        if criu_fz is not None and criu_fz.path != held.path:
            criu_fz.thaw(timeout=timeout)
    except HaulError as e:
        for c in (cg, criu_fz):
            try:
                if c is not None:
                    c.thaw(timeout=timeout)
            except HaulError:
                pass
        cgroup_mod.sigcont_tree(cg.pids())
        raise HaulError('hold', 'the dump succeeded but the source could not be held frozen (%s); '
                        'it was resumed' % e.cause)


def _freeze_for_criu(cg, timeout):
    """Freeze the freezer cgroup CRIU's dump will use, before the dump, for a dump that holds the source.

    CRIU leaves a cgroup it found frozen frozen again before it lets the tasks go (and records
    that state in its images: _restore._thaw_restored); one it found thawed it thaws, and the
    tasks are then held by its SIGSTOP alone until :func:`_hold_frozen` freezes them again.
    Frozen first, they are held by the freezer from before the dump to the end of the hold.
    Returns that freezer (a Cgroup); raises HaulError('freeze', ...), thawed back.
    """
    path = criu_freeze_cgroup(cg)
    fz = _cgroup.Cgroup(path, version=cg.version if path == cg.path else 'v1', step='freeze')
    fz.freeze(timeout=timeout)
    return fz


def _rescue_source(cg, timeout, pid=None):
    """After a failed dump: make sure the container's cgroup is not left frozen, and its network
    not left locked (a CRIU that died mid-dump leaves its nftables lock behind)."""
    try:
        _network.reopen(pid, pids=cg.pids())  # before its tasks run (see _network.repair_off)
    except HaulError:
        pass
    try:
        cg.thaw(timeout=timeout)
    except HaulError:
        pass


def dump_container(params, check_mode=False, diff=False):
    """The criu_dump module's logic. ``params`` are the module's parameters. Returns the result dict."""
    images_dir = os.path.abspath(params['images_dir'])
    result = {'changed': False, 'images_dir': images_dir}

    # CRIU and pycriu first: without them nothing else matters, in check mode too.
    session = open_session(images_dir, criu_path=params.get('criu_path'))
    criu_version = session.version()
    result['criu_version'] = criu_version

    # Which container?
    try:
        target = resolve_target(pid=params.get('pid'), cgroup=params.get('cgroup'), cgroup_mod=_cgroup)
    except HaulError as e:
        # The container may be gone because it has been dumped (and killed) already.
        done = _already_dumped_gone(images_dir, params, _images)
        if done is None:
            raise
        result.update(done)
        return result
    cg = target['cgroup']
    name = params.get('name') or os.path.basename(target['cgroup_path'].rstrip('/'))
    identity = _images.make_identity(name, cgroup=target['cgroup_path'], root=None, init_pid=target['pid'])
    # the migration that makes this dump (a handoff passes its id): only that one may reuse it
    identity['migration_id'] = params.get('migration_id')
    result.update(name=name, pid=target['pid'], root_pid=target['pid'], cgroup=target['cgroup_path'])

    # Idempotence: a complete dump of this container, which is still held frozen since.
    # Idempotence: a complete dump of this container, which is still held (frozen or stopped) since.
    state = cg.state()
    if state == 'thawed' and all_stopped(target['pids']):
        state = 'stopped'
    if not params.get('force') and state in ('frozen', 'stopped') and os.path.isdir(images_dir):
        ok, manifest = _images.is_complete_dump(images_dir, identity)
        # and of this migration: a frozen container another attempt dumped is not ours to reuse
        if (ok and manifest['identity'].get('init_pid') == target['pid']
                and manifest['identity'].get('migration_id') == params.get('migration_id')):
            result.update(_done_result(images_dir, manifest, _images))
            result.update(hold=state, duration=0.0)
            if diff:
                result['diff'] = {'before': _dump_diff_state(state, 'complete dump'),
                                  'after': _dump_diff_state(state, 'complete dump')}
            return result
    if state != 'thawed':
        raise HaulError('identify', 'container %s (cgroup %s) is %s but its images in %s are not a complete dump '
                        'of it by this migration (%s): thaw it first (cgroup_thaw) or dump it elsewhere'
                        % (name, cg.path, state, images_dir, params.get('migration_id') or 'no migration id'))
    result['sockets'] = checked_sockets(name, target['pids'], criu_version)

    root = container_root(params, target['pid'], name)
    identity['root'] = root
    result['root'] = root
    # its veths, addresses and bridges: the restore recreates them (docs/networking.md)
    identity['network'] = result['network'] = _network.describe(target['pid'], step='identify')

    # Images directory and free space.
    _images.require_usable(images_dir)
    if params.get('parent_images'):
        parent_abs = params['parent_images'] if os.path.isabs(params['parent_images']) \
            else os.path.normpath(os.path.join(images_dir, params['parent_images']))
        if not os.path.isdir(parent_abs):
            raise HaulError('images', 'parent images %s do not exist' % parent_abs)
    estimate = int((tree_rss(target['pids']) + tmpfs_usage(target['pid'])) * DUMP_SIZE_FACTOR)
    if params.get('page_server'):
        estimate = int(tmpfs_usage(target['pid']) * DUMP_SIZE_FACTOR) + 16 * 1024 * 1024
    result.update(estimated_bytes=estimate, free_bytes=_images.require_space(images_dir, estimate, 'the dump of ' + name))

    options = _dump_options(params, target, root, cg)
    result['changed'] = True
    if diff:
        result['diff'] = {'before': _dump_diff_state(state, 'absent'),
                          'after': _dump_diff_state('running' if params['hold'] == 'running' else params['hold'],
                                                    'complete dump')}
    if check_mode:
        result['hold'] = params['hold']
        return result

    _images.ensure_dir(images_dir, migration_id=params.get('handoff_id'))
    _images.clear_images(images_dir)
    timeout = params.get('freeze_timeout') or 10
    criu_fz = None
    try:
        if params['hold'] != 'running':
            criu_fz = _freeze_for_criu(cg, timeout)
        res = session.dump(options)
    except HaulError:
        _rescue_source(cg, timeout, target['pid'])
        raise
    result['log_path'] = res['log_path']
    result['duration'] = round(res['duration'], 3)
    if params['hold'] == 'frozen':
        hold_cg = cg
        if params.get('freezer') in ('v1', 'v2'):
            try:
                hold_cg = _cgroup.Cgroup.from_pid(target['pid'], version=params['freezer'], step='hold')
            except HaulError as e:
                try:
                    cg.thaw(timeout=timeout)  # CRIU's freezer too (a twin of cg): see _freeze_for_criu
                except HaulError:
                    pass
                _cgroup.sigcont_tree(cg.pids())
                raise HaulError('hold', 'the dump succeeded but the source could not be held frozen (%s); '
                                'it was resumed' % e.cause)
        _hold_frozen(hold_cg, timeout, _cgroup, criu_fz)
    elif params['hold'] == 'stopped':
        # CRIU froze it again (see _freeze_for_criu): stopped, not frozen, is what was asked
        try:
            criu_fz.thaw(timeout=timeout)
        except HaulError as e:
            _cgroup.sigcont_tree(cg.pids())
            raise HaulError('hold', 'the dump succeeded but the source could not be left stopped (%s); '
                            'it was resumed' % e.cause)
    if params['hold'] != 'running':
        # held for a migration: its host ends go down, so that the frozen source answers no ARP
        # while the copy elsewhere takes over its address (cgroup_thaw's sigcont reopens them)
        _network.fence(identity['network'])
    result['hold'] = params['hold']
    try:
        manifest = _images.create_manifest(images_dir, 'dump', identity, criu_version,
                                           parent=options.parent_relative(images_dir),
                                           checksums=params.get('checksum', 'sha256') != 'none')
    except (IOError, OSError) as e:
        raise HaulError('manifest', 'cannot write the manifest of %s: %s' % (images_dir, e))
    result.update(_done_result(images_dir, manifest, _images))
    return result


def checked_sockets(name, pids, criu_version):
    """The TCP/UDP sockets the container holds (``_sockets.count_sockets``: what a migration
    carries); HaulError('sockets', ...) before any freeze when this CRIU cannot dump them on this
    kernel (``_sockets.refusal``)."""
    from ansible_collections.haul.live.plugins.module_utils import _sockets  # pylint: disable=import-outside-toplevel
    why = _sockets.refusal(_hostname(), name, pids, criu_version)
    if why:
        raise HaulError('sockets', why)
    return _sockets.count_sockets(pids)


def _dump_diff_state(container, images):
    return {'container': container, 'images': images}


def _done_result(images_dir, manifest, images_mod):
    return {
        'manifest': manifest,
        'stats': images_mod.summarize_stats(images_mod.read_stats(images_dir, 'dump')),
        'bytes': sum(f.get('size', 0) for f in manifest['files'].values()),
        'root': manifest['identity'].get('root'),
        'name': manifest['identity'].get('name'),
        'pid': manifest['identity'].get('init_pid'),
        'root_pid': manifest['identity'].get('init_pid'),
        'cgroup': manifest['identity'].get('cgroup'),
    }


def _already_dumped_gone(images_dir, params, images_mod):
    """Result for a container that is gone after a complete dump into images_dir, else None."""
    if params.get('force') or not os.path.isdir(images_dir):
        return None
    try:
        manifest = images_mod.verify_manifest(images_dir)
    except HaulError:
        return None
    ident = manifest['identity']
    if manifest['kind'] != 'dump':
        return None
    if params.get('pid') is not None and ident.get('init_pid') != params['pid']:
        return None
    if params.get('cgroup') is not None:
        want = '/' + params['cgroup'].strip('/')
        if not (ident.get('cgroup') == want or want.endswith(ident.get('cgroup') or '\0')):
            return None
    if params.get('name') and ident.get('name') != params['name']:
        return None
    res = _done_result(images_dir, manifest, images_mod)
    res.update(hold='gone', duration=0.0)
    return res


def checkpoint_kwargs(params, pid, root, cg):
    """CriuOptions keywords shared by every checkpoint of a container (dump, pre-dump, lazy dump),
    from the options of the ``haul.live.container`` doc fragment, and ``parent_images`` (the last
    pre-copy round: the checkpoint then writes only the pages changed since)."""
    kwargs = dict(
        pid=pid,
        root=root,
        external=list(params.get('external') or []),
        network_lock=params.get('network_lock') or 'nftables',
        tcp_established=bool(params.get('tcp_established')),
        manage_cgroups=True,
        manage_cgroups_mode=params.get('manage_cgroups_mode') or 'soft',
        freeze_cgroup=criu_freeze_cgroup(cg),
        shell_job=False,
        timeout=params.get('freeze_timeout') or 10,
    )
    if params.get('parent_images'):
        kwargs.update(parent_img=params['parent_images'], track_mem=True)
    # a runtime's own options (LXC's: what its restore expects), never set by an operator
    kwargs.update(params.get('criu_extra') or {})
    return kwargs


def _dump_options(params, target, root, cg):
    kwargs = checkpoint_kwargs(params, target['pid'], root, cg)
    if params.get('hold') == 'running':
        kwargs['leave_running'] = True
    else:
        kwargs['leave_stopped'] = True
    kwargs.update(page_server_kwargs(params.get('page_server')))
    return CriuOptions(**kwargs)
