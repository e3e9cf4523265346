# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The destination's half of a migration: ``criu_restore`` with ``handoff`` (private module_util).

:func:`prepare_receive` checks what can be checked before anything is frozen; then
:func:`receive_container` says ``waiting``, restores the images **stopped** when the source says
``synced``, records RESTORED, and resumes the copy only on COMMIT, a decision it takes
atomically (``decided``, a symlink that a fence can take first) and refuses after its deadline.
Without COMMIT it kills its stopped copy. Post-copy: after the commit it stays until every page
has moved (``complete``) or the transfer broke (``lost``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.module_utils import _container
from ansible_collections.haul.live.plugins.module_utils import _lazy_pages
from ansible_collections.haul.live.plugins.module_utils import _lease
from ansible_collections.haul.live.plugins.module_utils import _network
from ansible_collections.haul.live.plugins.module_utils import _restore
from ansible_collections.haul.live.plugins.module_utils import _transfer
from ansible_collections.haul.live.plugins.module_utils._migration import failpoints
from ansible_collections.haul.live.plugins.module_utils._migration import phases
from ansible_collections.haul.live.plugins.module_utils._runtimes import registry
from ansible_collections.haul.live.plugins.module_utils._migration.protocol import (
    ABORT, ABORTED, COMMIT, COMPLETE, FAILED, LOST, RESTORED, RUNNING, SYNCED, WAITING, Receiver, bounded, user_name)


def receive_container(params, prepare_fn, restore_fn, cgroup_mod, criu_path=None, lease_dir=None):
    """The destination's side (``criu_restore`` with ``handoff``). Returns the restore result.

    ``prepare_fn(params)`` checks all that can be checked before images arrive (and empties the
    images directory); ``restore_fn(params)`` restores with ``hold='stopped'``. With
    ``params['handoff']['lazy']`` (post-copy) the lazy-pages daemon is started against the
    source's page server before the restore, and after the commit the receiver stays until every
    page has moved (``complete``) or the transfer broke (``lost``).
    """
    ho = params['handoff']
    lazy = ho.get('lazy')
    rx = Receiver(params['images_dir'], ho['id'], ho['timeout'])
    rx.open()
    lease = _DestinationLease(params['name'], ho['id'], ho['timeout'], ho.get('commit_timeout'), lease_dir)
    try:
        lease.take()
        prepare_fn(params)
    except HaulError as e:
        rx.status(FAILED, step=e.step, msg=e.msg)
        lease.finish()
        raise
    rx.status(WAITING)
    daemon = None
    if lazy:
        # the daemon's supervisor starts now; the daemon itself once the images are here
        daemon = _lazy_pages.lazy_pages_spawn(
            criu_path, params['images_dir'], lazy['address'], lazy['port'],
            ready_timeout=lazy.get('ready_timeout') or 30, tls=lazy.get('tls', True),
            tls_cacert=lazy.get('tls_cacert'), tls_cert=lazy.get('tls_cert'), tls_key=lazy.get('tls_key'),
            tls_no_cn_verify=bool(lazy.get('tls_no_cn_verify')), gated=True)
    cmd = rx.wait((SYNCED,))
    if cmd != SYNCED:
        if daemon is not None:
            daemon.cancel()
        why = 'the source aborted' if cmd == ABORT else 'no images within %ds' % rx.timeout
        rx.decide(ABORT)
        rx.status(ABORTED, msg=why)
        lease.finish()
        raise HaulError('handoff', '%s before the restore; nothing was restored here' % why)
    rparams = dict(params)
    rparams.update(hold='stopped')
    try:
        if daemon is not None:
            daemon.go()
        res = bounded(ho.get('restore_timeout') or rx.timeout, params['images_dir'], restore_fn, rparams,
                      step='restore')
    except HaulError as e:
        if lazy:
            _lazy_pages.stop_lazy_pages(params['images_dir'])
        rx.decide(ABORT)
        rx.status(FAILED, step=e.step, msg=e.msg, log_path=e.log,
                  log_tail=e.result().get('log_tail'))
        lease.finish()
        raise
    pid = res.get('pid')
    cg = cgroup_mod.Cgroup(res['cgroup'])
    why = lease.record(phases.RESTORED)
    if why:
        cmd = None  # the lease is gone or someone else's: this copy must never run
    else:
        rx.status(RESTORED, pid=pid, stats=res.get('stats'))
        # it resumes only on COMMIT; after its deadline it refuses a late one (the decision is
        # taken once, by whoever comes first: this receiver or a fence from the role's rollback)
        cmd = rx.wait((COMMIT,), ho.get('commit_timeout') or rx.timeout)
        cmd = COMMIT if cmd == COMMIT and rx.decide(COMMIT) == COMMIT else (cmd if cmd == ABORT else None)
        if cmd is None and rx.decided() == ABORT and os.path.exists(os.path.join(rx.dir, COMMIT)):
            why = 'a fence (the rollback) or this receiver\'s deadline refused the commit'
    own = registry.own_steps(params)
    if cmd == COMMIT:
        if own is not None:  # its runtime held its addresses (it runs behind them otherwise)
            try:
                own.release_hold(params)
            except HaulError as e:
                res['warnings'] = ['%s: its addresses are still held here' % e.msg]
        # on the network (bridge, link up), resumed, announced (gratuitous ARP): docs/networking.md
        try:
            res['announced'] = _network.go_live(res.get('network'), lambda: cgroup_mod.sigcont_tree(cg.pids()), pid)
        except HaulError as e:
            res['warnings'] = ['%s: the container runs here, but is not reachable until that is fixed' % e.msg]
        failpoints.fire(params.get('name'), 'resumed')  # test hook: the copy runs, 'running' not said yet
        rx.status(RUNNING, final=not lazy, pid=pid, stats=res.get('stats'))
        res['state'] = RUNNING
        res['handoff'] = 'committed'
        if lease.record(phases.RESUMED):
            res.setdefault('warnings', []).append('the lease of %s here could not record RESUMED' % params['name'])
        if lazy:
            try:
                # timeout: the progress timeout (no page moved), no fixed total; beats to the source
                done = _transfer.wait_transfer(params['images_dir'], 'lazy-pages', rx.timeout, on_progress=lambda p:
                                               rx.status(RUNNING, pid=pid, progress=p))
            except HaulError as e:
                lost = _transfer.abandon_lost(params['images_dir'], cg)  # its copy here runs on missing memory
                rx.status(LOST, final=True, msg=e.msg, lost=lost, progress=e.details.get('progress'))
                raise HaulError('transfer', 'the container %s is LOST: %s' % (params.get('name'), e.cause), log=e.log,
                                lost=lost, progress=e.details.get('progress'))
            pages = _transfer.transferred_pages(os.path.join(params['images_dir'], _lazy_pages.LAZY_PAGES_LOG))
            rx.status(COMPLETE, final=True, pid=pid, pages=pages)
            res['transfer'] = done
            res['pages_moved'] = pages
        lease.finish()
        return res
    rx.decide(ABORT)
    why = why or ('the source aborted' if cmd == ABORT else 'no commit from the source within %ds (a later one is '
                  'refused)' % (ho.get('commit_timeout') or rx.timeout))
    if own is not None:
        own.remove_copy(params)
    else:
        try:
            cg.kill()
            cg.remove()
        except HaulError:
            pass
    if lazy:
        _lazy_pages.stop_lazy_pages(params['images_dir'])
    rx.status(ABORTED, msg=why)
    lease.finish()
    raise HaulError('handoff', '%s after the restore; the stopped copy here was killed' % why)


class _DestinationLease(object):
    """The receiver's part of the lease on the destination: renewed (the role took it with the
    same migration id) or taken (the module alone, then released at the end); RESTORED and
    RESUMED recorded in it."""

    def __init__(self, name, migration_id, timeout, commit_timeout=None, lease_dir=None):
        self.name, self.id = name, migration_id
        self.lease_dir = lease_dir or _lease.LEASE_DIR
        self.ttl = 4 * int(timeout) + int(commit_timeout or timeout) + 120
        self.took = False

    def take(self):
        before = _lease.read(self.name, self.lease_dir)
        self.took = not before or before.get('migration_id') != self.id
        ttl = max(self.ttl, (before or {}).get('expires', 0) - time.time() if not self.took else 0)
        owner = {'host': os.uname()[1], 'pid': os.getpid(), 'user': user_name(), 'started': time.time(), 'by': 'receiver'}
        _lease.acquire(self.name, self.id, owner, 'destination', ttl, lease_dir=self.lease_dir)

    def record(self, phase):
        """Record ``phase``; the reason when the lease is gone or someone else's, else None."""
        try:
            _lease.update(self.name, self.id, phase=phase, lease_dir=self.lease_dir)
        except HaulError as e:
            return 'cannot record phase %s of migration %s here: %s' % (phase, self.id, e.cause)
        return None

    def finish(self):
        if self.took:
            try:
                _lease.release(self.name, self.id, self.lease_dir)
            except HaulError:
                pass


def prepare_receive(params, criu_mod, cgroup_mod, images_mod):
    """What the destination checks before it says ``waiting`` (nothing is frozen yet then)."""
    version = criu_mod.open_session(params['images_dir'], criu_path=params.get('criu_path')).version()
    need = (params['handoff'].get('min_criu_version') or '').strip()
    if need and criu_mod.compare_versions(version, need) < 0:
        raise HaulError('prepare', 'CRIU %s here is older than CRIU %s on the source: it cannot restore '
                        'its images (install criu >= %s)' % (version, need, need))
    name = params.get('name')
    own = registry.own_steps(params)
    if own is not None:
        own.prepare_receive(params)
    else:
        _prepare_lab(params, name, cgroup_mod)
    need_bytes = params['handoff'].get('expected_bytes') or 0
    images_mod.ensure_dir(params['images_dir'], migration_id=params['handoff'].get('id'))
    if os.path.isdir(params['images_dir'].rstrip('/') + '.handoff'):  # Receiver.open made it: haul.live's, marked
        images_mod.write_marker(params['images_dir'].rstrip('/') + '.handoff', params['handoff'].get('id'))
    images_mod.clear_images(params['images_dir'], step='prepare')
    images_mod.remove(images_mod.precopy_dir(params['images_dir']))  # pre-copy rounds of an earlier attempt
    free = images_mod.free_bytes(params['images_dir'])
    if need_bytes and free < need_bytes:
        raise HaulError('prepare', 'the filesystem of %s has %d MiB free, the images of %s need about %d MiB'
                        % (params['images_dir'], free // 1048576, name, -(-need_bytes // 1048576)))


def _prepare_lab(params, name, cgroup_mod):
    """A lab container: no copy of it runs here, and its root filesystem is here."""
    cgroup_path = '/' + (params.get('cgroup') or '').strip('/')
    if cgroup_path == '/':
        raise HaulError('prepare', 'handoff needs the cgroup of the container')
    _cg, pids, init = _restore._running_container(cgroup_path, cgroup_mod, step='prepare')  # pylint: disable=protected-access
    if pids:
        raise HaulError('prepare', 'a container %s already runs here (cgroup %s, %s): refusing to restore a '
                        'second copy' % (name, cgroup_path, 'init pid %d' % init if init else '%d processes' % len(pids)))
    _container.restore_root(params, name, step='prepare')
