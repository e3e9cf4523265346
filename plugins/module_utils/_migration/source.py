# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The source's half of a migration: the ``handoff`` module's logic (private module_util).

:func:`send_container` reads as the pipeline: connect, (strategy: before the freeze), freeze and
dump, copy, restore (on the destination), commit, resume (on the destination), finalize. Each
phase is recorded in the lease (:mod:`_lease`) as it is reached: FROZEN, DUMPED, SENT, COMMITTED
(durably BEFORE the COMMIT is sent, and from then on a signal no longer interrupts the handoff),
RESUMED, DONE. The strategy (:mod:`.strategy`) fills in its hooks. On any failure the rollback
executor (:mod:`.rollback`) does what the rule (:func:`.phases.rollback_plan`) says for the
phase reached; if this process dies, the freeze's watchdog (:mod:`.watchdog`) does.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import signal
import time

from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.module_utils import _frames
from ansible_collections.haul.live.plugins.module_utils import _lease
from ansible_collections.haul.live.plugins.module_utils import _network
from ansible_collections.haul.live.plugins.module_utils import _progress
from ansible_collections.haul.live.plugins.module_utils._migration import failpoints
from ansible_collections.haul.live.plugins.module_utils._migration import phases
from ansible_collections.haul.live.plugins.module_utils._migration import protocol
from ansible_collections.haul.live.plugins.module_utils._migration import strategy as strategies
from ansible_collections.haul.live.plugins.module_utils._migration import watchdog
from ansible_collections.haul.live.plugins.module_utils._migration.protocol import ms
from ansible_collections.haul.live.plugins.module_utils._migration.rollback import Rollback, finalize_source

# The lease record's margin over a phase's own timeout: a handoff that outlives it hangs, and its
# watchdog then kills it and rolls back (before COMMITTED only).
LEASE_MARGIN_S = 30


class Source(object):
    """One handoff on the source: the phase it reached (recorded in the lease), its lease, its
    watchdog, its signals, and what the rollback executor needs (relay, dump, strategy)."""

    def __init__(self, params, strategy, cgroup_mod, images_mod, transport_mod=None, lease_dir=None):
        self.params = params
        self.strategy = strategy
        self.cgroup_mod, self.images_mod, self.transport_mod = cgroup_mod, images_mod, transport_mod
        self.name = params.get('name') or os.path.basename((params.get('cgroup') or '').rstrip('/')) or None
        self.id = params['handoff_id']
        self.lease_dir = lease_dir or _lease.LEASE_DIR
        self.timeouts = protocol.phase_timeouts(params)
        self.dest_images = params.get('dest_images_dir') or params['images_dir']
        self.phase = phases.PREPARING
        self.took_lease = False
        self.expires = None
        self.relay = self.rsync = None
        self.dumped = None
        self.catcher = None
        self.watchdog = None
        self.signals = []   # signals received after the commit decision (they no longer interrupt)
        # what the controller's haul.live.progress prints while this runs async (numbers and
        # phases only); its pid lets Ctrl-C on the controller end it as a signal here would
        self.progress = _progress.ProgressFile(params['progress_file'], 'handoff') if params.get('progress_file') else None
        self.frozen_at = None

    # --- the lease ---------------------------------------------------------------------------
    def take_lease(self):
        """Renew the lease the role took for this migration id, or take it (the module alone).
        Another migration's lease: HaulError('lease', ...) before anything is touched."""
        if not self.name:
            raise HaulError('lease', 'the handoff needs the name of the container (name or cgroup)')
        before = _lease.read(self.name, self.lease_dir)
        self.took_lease = not before or before.get('migration_id') != self.id
        ttl = max(self.timeouts['connect'] + sum(self.timeouts.values()) + 120,
                  (before or {}).get('expires', 0) - time.time() if not self.took_lease else 0)
        owner = {'host': os.uname()[1], 'pid': os.getpid(), 'user': protocol.user_name(), 'started': time.time(),
                 'by': 'handoff'}
        rec = _lease.acquire(self.name, self.id, owner, 'source', ttl, lease_dir=self.lease_dir)
        self.expires = rec.get('expires')
        _lease.update(self.name, self.id, lease_dir=self.lease_dir, handoff_pid=os.getpid(),
                      handoff_took=self.took_lease)

    def record(self, phase, next_timeout=None):
        """Record ``phase`` durably in the lease (renewed for the next phase's timeout, doubled,
        plus a margin), then make it this run's phase, then fire its failpoint. A lease that is
        gone or someone else's: HaulError('lease', ...), and the rollback then touches nothing
        on this host."""
        ttl = 2 * next_timeout + LEASE_MARGIN_S if next_timeout else None
        try:
            _lease.update(self.name, self.id, phase=phase, ttl_s=ttl, lease_dir=self.lease_dir)
        except HaulError as e:
            raise HaulError('lease', 'cannot record phase %s of migration %s: %s' % (phase, self.id, e.cause))
        self.phase = phase
        if phase == phases.FROZEN:
            self.frozen_at = time.time()
        self.note(phase)
        failpoints.fire(self.name, phase.lower())

    def note(self, phase, force=True, **numbers):
        """Write the progress file (if asked for): the phase, this process's pid, how long the
        container has been frozen, and ``numbers`` (bytes, percent, rate_bytes_s, eta_s of the
        post-copy page transfer). A progress file that cannot be written never stops the handoff."""
        if self.progress is None:
            return
        frozen = round(time.time() - self.frozen_at, 1) if self.frozen_at and self.phase in phases.FROZEN_PHASES else None
        try:
            self.progress.write(dict(numbers, phase=phase.lower(), pid=os.getpid(), frozen_s=frozen), force=force)
        except (IOError, OSError):
            self.progress = None

    def end_progress(self):
        """The handoff ends (its result says the rest): its progress file goes."""
        if self.progress is not None:
            self.progress.remove()

    def note_pages(self, summary):
        """The post-copy page transfer's progress, as the destination's beats report it."""
        moved, total = summary.get('moved_bytes') or 0, summary.get('total_bytes') or 0
        self.note('pages', force=False, bytes=moved, percent=int(moved * 100 / total) if total else 0,
                  rate_bytes_s=summary.get('rate_bytes_s'), eta_s=summary.get('eta_s'))

    def finish_lease(self, moved):
        """After the handoff: the role's lease gets its expiry back; one taken here is released
        when nothing is left in doubt."""
        try:
            if self.took_lease and moved is not None:
                _lease.release(self.name, self.id, self.lease_dir)
                return
            left = (self.expires or 0) - time.time()
            _lease.update(self.name, self.id, phase=phases.DONE if moved else None,
                          ttl_s=max(left, 60), lease_dir=self.lease_dir)
        except HaulError:
            pass

    # --- the watchdog ------------------------------------------------------------------------
    def start_watchdog(self):
        """Start the freeze's watchdog: if this process dies before COMMITTED, it rolls back by
        the same rule, with the same executor."""
        self.watchdog = watchdog.start(self.name, self.id, self.strategy.name, Rollback(self),
                                       lease_dir=self.lease_dir)

    def stop_watchdog(self):
        if self.watchdog is not None:
            self.watchdog.stop()
            self.watchdog = None

    # --- signals -----------------------------------------------------------------------------
    def defer_signals(self):
        """From the commit decision on (and during a rollback), SIGTERM/SIGINT/SIGHUP no longer
        interrupt: they are noted, and the handoff finishes what it must."""
        def note(signum, _frame):
            self.signals.append(signum)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, note)

    # --- failure -----------------------------------------------------------------------------
    def fail(self, e, frozen_at, t_running):
        """Roll back by the rule after ``e``; return the HaulError to raise, explained, and the
        source's state."""
        self.defer_signals()   # a second signal does not interrupt the rollback
        err = e if isinstance(e, HaulError) else HaulError(
            'interrupted' if isinstance(e, (protocol.Interrupted, KeyboardInterrupt)) else 'handoff', str(e) or repr(e))
        failpoints.fire(self.name, 'rollback')
        # a post-copy transfer that failed (not merely a handoff interrupted while pages flow)
        broken = err.step == 'transfer' or (self.relay.last or {}).get('state') == protocol.LOST
        plan = phases.rollback_plan(self.phase, self.strategy.name, transfer_broken=broken)
        executor = Rollback(self)
        state = executor.run(plan)
        err.details.update(source_state=state, phase=self.phase, rollback=plan)
        name, dest = self.params.get('name'), self.params['dest_host']
        if state == 'lost':
            err.step = 'transfer'
            err.cause = ('the container %s is LOST: it resumed on %s but its memory did not finish moving (%s); '
                         'the source copy is killed, never resumed' % (name, dest, err.cause))
        elif phases.REPORT_IN_DOUBT in plan:
            err.cause += ('; the source copy of %s stays FROZEN because the destination may already run it (phase %s '
                          'recorded): run the play again to finish (it never resumes both)' % (name, self.phase))
        elif phases.FINISH_TRANSFER in plan:
            err.cause += ('; %s runs on %s and its memory keeps moving from the page server here, which ends '
                          'when every page has moved' % (name, dest))
        elif executor.not_thawed:
            err.cause += '; the source copy of %s stays FROZEN: %s' % (name, executor.not_thawed)
        elif state == 'running' and self.phase != phases.PREPARING:
            err.cause += '; rolled back: %s runs on the source again' % (name or 'the container')
        err.details['frozen_ms'] = ms(frozen_at, t_running or time.time()) if frozen_at else 0
        if self.catcher:
            self.catcher.close()
        self.stop_watchdog()
        return err, state


def send_container(params, run_command, dump_fn, cgroup_mod, images_mod, transport_mod, lease_dir=None):
    """The source's side of the critical section (the ``handoff`` module's logic).

    ``dump_fn(params)`` dumps and holds the container frozen (a full dump, or for post-copy a
    lazy one); the strategy (:func:`.strategy.for_params`, from ``params['lazy']`` and
    ``params['precopy']``) does the rest of what differs. Returns the result dict; raises
    HaulError after rolling back.
    """
    t = {'begin': time.time()}   # when each step ended
    strategy = strategies.for_params(params, dump_fn)
    src = Source(params, strategy, cgroup_mod, images_mod, transport_mod, lease_dir)
    timeouts = src.timeouts
    try:
        src.take_lease()
    except HaulError as e:
        e.details.update(source_state='running', frozen_ms=0)
        raise
    try:
        strategy.check(src)
    except HaulError as e:
        e.details.update(source_state='running', frozen_ms=0)
        src.finish_lease(False)
        raise
    cm = protocol.ControlMaster()
    target = transport_mod.SshTarget(
        params['dest_host'], user=params.get('dest_user') or 'root', port=params.get('ssh_port'),
        key=params.get('ssh_key'), options=list(params.get('ssh_options') or []) + cm.options(),
        connect_timeout=params.get('connect_timeout') or 10, known_hosts=params.get('known_hosts'),
        jump=params.get('jump'))
    relay = src.relay = protocol.Relay(target, protocol.control_dir(src.dest_images, src.id), params['timeout'] * 4)
    src.rsync = transport_mod.RsyncRunner(run_command, target, bwlimit_kib=params.get('bwlimit_kib'),
                                          timeout=timeouts['transfer'])
    protocol.guard_signals()
    src.note('connecting')
    try:
        # ---- connect: the destination waits, nothing is frozen ---------------------------------
        relay.start()
        st = relay.expect((protocol.WAITING,), timeouts['connect'], 'connect')
        if st['state'] != protocol.WAITING:
            raise HaulError(st.get('step') or 'receive', 'the destination %s is not ready: %s'
                            % (params['dest_host'], st.get('msg') or st['state']), log_tail=st.get('log_tail'))
        t['connected'] = time.time()
        dump_params = dict(params)
        dump_params.update(hold='frozen', checksum='none', force=False, migration_id=src.id)
        strategy.before_freeze(src, dump_params)
        t['precopied'] = strategy.t_precopied or t['connected']
        src.start_watchdog()
        src.catcher = _catch_clients(params, cgroup_mod) if params.get('replay', True) else None

        # ---- freeze and dump: from here the container is frozen -------------------------------
        src.record(phases.FROZEN, timeouts['dump'])
        t['frozen'] = time.time()
        src.dumped = dumped = strategy.checkpoint(src, dump_params)
        t['dumped'] = time.time()
        src.record(phases.DUMPED, timeouts['transfer'])

        # ---- copy -----------------------------------------------------------------------------
        sent = strategy.transfer(src, dumped)
        t['synced'] = time.time()
        src.record(phases.SENT, timeouts['restore'])

        # ---- restore (on the destination, stopped) ---------------------------------------------
        if not relay.send(protocol.SYNCED):
            raise HaulError('sync', 'lost the SSH session to the destination %s' % params['dest_host'])
        st = relay.expect((protocol.RESTORED,), timeouts['restore'], 'restore')
        if st['state'] != protocol.RESTORED:
            raise HaulError(st.get('step') or 'restore', 'on %s: %s' % (params['dest_host'], st.get('msg') or st['state']),
                            log_tail=st.get('log_tail'), log_path=st.get('log_path'))
        t['restored'] = time.time()
        failpoints.fire(src.name, 'restored')

        # ---- commit: decided here, recorded durably BEFORE it is sent --------------------------
        # From now on a signal no longer interrupts (it would otherwise come between the record
        # and the send, and a rollback would then ABORT after a COMMIT): the handoff goes on.
        src.defer_signals()
        src.record(phases.COMMITTED, timeouts['commit'])
        failpoints.fire(src.name, 'commit')
        if not relay.send(protocol.COMMIT):
            raise HaulError('commit', 'lost the SSH session to the destination %s while sending the commit'
                            % params['dest_host'])

        # ---- resume (on the destination) ------------------------------------------------------
        st = relay.expect((protocol.RUNNING,), timeouts['commit'], 'confirm')
        if st['state'] != protocol.RUNNING:
            raise HaulError('confirm', 'the destination %s did not resume the container: %s'
                            % (params['dest_host'], st.get('msg') or st['state']), log_tail=st.get('log_tail'))
        t['running'] = time.time()
        src.record(phases.RESUMED)
        moved = {'replayed': src.catcher.release() if src.catcher else 0, 'restore_stats': st.get('stats')}
        moved['st'], moved['pages_bytes'] = strategy.after_resume(src, st)
    except (HaulError, protocol.Interrupted, KeyboardInterrupt, Exception) as e:  # pylint: disable=broad-except
        err, state = src.fail(e, t.get('frozen'), t.get('running'))
        relay.close()
        cm.close(target, run_command)
        src.finish_lease(True if state in ('killed', 'lost') else (False if state == 'running' else None))
        src.end_progress()
        raise err
    src.stop_watchdog()
    relay.close()
    cm.close(target, run_command)

    # ---- finalize: now, and only now, the source copy goes ------------------------------------
    moved['cleanup'] = finalize_source(params, dumped, strategy, cgroup_mod, images_mod)
    src.finish_lease(True)
    src.end_progress()
    failpoints.fire(src.name, 'done')
    return _result(params, src, t, sent, moved)


def _result(params, src, t, sent, moved):
    """The handoff's result: ``t`` when each step ended, ``sent`` what :meth:`transfer` sent,
    ``moved`` what came after the resume."""
    dumped, st, strategy = src.dumped, moved['st'], src.strategy
    sent, sent_root = sent
    result = {'changed': True, 'dest_host': params['dest_host'], 'images_dir': params['images_dir'],
              'dest_images_dir': src.dest_images}
    if src.signals:
        result['warnings'] = ['signal %s came after the commit: the handoff finished the move' % src.signals[0]]
    precopied = strategy.precopied
    result.update(
        name=dumped.get('name'),
        pid=st.get('pid'),
        source_pid=dumped.get('pid'),
        root=dumped.get('root'),
        frozen_ms=ms(t['frozen'], t['running']),
        timings_ms={
            'prepare': ms(t['begin'], t['connected']),
            'precopy': ms(t['connected'], t['precopied']),
            'dump': ms(t['frozen'], t['dumped']),
            'sync': ms(t['dumped'], t['synced']),
            'restore': ms(t['synced'], t['restored']),
            'resume': ms(t['restored'], t['running']),
            'frozen': ms(t['frozen'], t['running']),
            'pages': strategy.pages_ms,
            'total': ms(t['begin'], time.time()),
        },
        strategy=strategy.name,
        precopy=strategy.summary().get('precopy'),
        security=dumped.get('security') or 'ssh',
        bytes_images=dumped.get('bytes'),
        bytes_sent=((sent.get('bytes_sent') or 0) + ((sent_root or {}).get('bytes_sent') or 0) + moved['pages_bytes']
                    + ((precopied or {}).get('bytes_sent') or 0)),
        bytes_pages=moved['pages_bytes'],
        dump_stats=dumped.get('stats'),
        restore_stats=moved['restore_stats'],
        source_cleanup=moved['cleanup'],
        # what moved besides memory: its TCP/UDP sockets (established ones carried), its veths
        sockets=dumped.get('sockets'),
        tcp_connections=(dumped.get('sockets') or {}).get('tcp_established', 0),
        tcp_replayed=moved['replayed'],
        network=dumped.get('network'),
    )
    return result


def _catch_clients(params, cgroup_mod):
    """A started :class:`_frames.Catcher` for the container's clients (what its freeze drops is
    sent again once it runs), or None for a container without veths or when it cannot start."""
    try:
        pids = cgroup_mod.Cgroup(params['cgroup']).pids() if params.get('cgroup') else [params.get('pid')]
        network = _network.inspect(pids[0]) if pids and pids[0] else None
        if not _network.interfaces(network):
            return None
        return _frames.Catcher(network).start()
    except (HaulError, OSError):
        return None
