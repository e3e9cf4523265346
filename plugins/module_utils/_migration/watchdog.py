# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The freeze's watchdog: if the handoff dies while the source is frozen, something ends the freeze.

This is a private module_util: it is not part of the collection's public API.

The handoff (the source's half of a migration) starts it just before the freeze, as a detached
process in a session of its own (:func:`_supervisor.spawn_detached`, the collection's one
supervisor machinery), so that neither the Ansible connection nor a signal to the handoff's
process group reaches it. The handoff keeps the write end of a pipe; the watchdog reads the
other end:

* ``d`` on the pipe: the handoff ended normally (moved, or rolled back by itself). The
  watchdog exits.
* EOF without ``d``: the handoff died (SIGKILL, the OOM killer, a crash). The watchdog rolls
  back, by the rule (:func:`.phases.rollback_plan`) for the phase the lease records, with the
  one rollback executor (:class:`.rollback.Rollback`).
* The lease expired without COMMITTED while the handoff still lives (it hangs: a CRIU that
  never answers, a transfer stuck in the kernel): the watchdog first kills the handoff (so that
  it can send nothing more, above all no COMMIT), then rolls back the same way.
* The lease records COMMITTED (or later), is gone, or belongs to another migration: the
  watchdog exits WITHOUT touching anything. After COMMITTED the source never resumes.

Rolling back, the watchdog tells the destination nothing: with the handoff dead no COMMIT can
ever be sent (COMMITTED is recorded durably before the COMMIT goes), the relay sees its SSH
session end and aborts the receiver, and a receiver that hears nothing kills its stopped copy
at its own deadline; it never resumes without COMMIT. So the destination's copy is fenced by
construction, and the watchdog then kills what the handoff left running (its descendants: the
CRIU that dumped, rsync, ssh; a post-copy page server), reopens the source's network, thaws it,
removes its images, and writes what it did into the lease (``watchdog``). It leaves the lease
itself to its owner (the role releases it; a re-run takes it over once it expired), unless the
handoff ran alone and took the lease itself: then the watchdog releases it after a rollback that
left the source running.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import select
import signal
import time

from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.module_utils import _lease
from ansible_collections.haul.live.plugins.module_utils import _proc
from ansible_collections.haul.live.plugins.module_utils import _supervisor
from ansible_collections.haul.live.plugins.module_utils._migration import phases

TICK = 0.5          # seconds between two looks at the lease and the handoff's processes
KILL_WAIT = 5.0     # seconds to wait for a killed handoff to be gone
DONE = b'd'


def _alive(pid, start):
    """Whether ``pid`` is still the process that started at ``start`` (and not a zombie)."""
    return _proc.pid_alive(pid) and (start is None or _proc.proc_starttime(pid) == start)


def descendants(pid):
    """``[(pid, starttime)]`` of every descendant of ``pid``."""
    tree = _proc.children()
    todo, seen = [int(pid)], []
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in seen:
                seen.append(child)
                todo.append(child[0])
    return seen


def criu_processes(images_dir):
    """Pids of the CRIU processes working in ``images_dir`` (an open fd or the cwd there)."""
    images_dir = os.path.realpath(images_dir)
    found = []
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        try:
            with open('/proc/%s/comm' % name) as f:
                if f.read().strip() != 'criu':
                    continue
            links = [os.readlink('/proc/%s/cwd' % name)]
            fd_dir = '/proc/%s/fd' % name
            for fd in os.listdir(fd_dir):
                try:
                    links.append(os.readlink(os.path.join(fd_dir, fd)))
                except OSError:
                    pass
        except (IOError, OSError):
            continue
        # a directory removed meanwhile still names the CRIU that works in it: "PATH (deleted)"
        links = [link[:-len(' (deleted)')] if link.endswith(' (deleted)') else link for link in links]
        if any(link == images_dir or link.startswith(images_dir + '/') for link in links):
            found.append(int(name))
    return found


def kill_criu(images_dir, sig=signal.SIGKILL):
    """Kill the CRIU processes working in ``images_dir`` (a hung dump or restore); their pids."""
    pids = criu_processes(images_dir)
    _proc.signal_all(pids, sig)
    return pids


def _kill(procs):
    _proc.signal_all([pid for pid, start in procs if _alive(pid, start)], signal.SIGKILL)


class Watchdog(object):
    """The handoff's handle on its watchdog (:func:`start`)."""

    def __init__(self, wfd, pid):
        self.wfd = wfd
        self.pid = pid

    def stop(self):
        """The handoff ended normally (moved, or rolled back by itself): the watchdog exits."""
        if self.wfd is None:
            return
        try:
            os.write(self.wfd, DONE)
        except OSError:
            pass  # it exited already (COMMITTED recorded)
        try:
            os.close(self.wfd)
        except OSError:
            pass
        self.wfd = None


def start(name, migration_id, strategy, executor, lease_dir=_lease.LEASE_DIR, spawn_fn=None, ready_timeout=10):
    """Start the watchdog of this handoff (this process); return a :class:`Watchdog`.

    ``executor.after_handoff_died(plan, record)`` (:class:`.rollback.Rollback`) runs in the
    watchdog when it must roll back: the actions of ``plan`` (from
    :func:`.phases.rollback_plan`) that it can do from this host, after the
    handoff and its descendants were killed; it returns the source's state ('running' or why
    not). ``spawn_fn``: :func:`_supervisor.spawn_detached` unless given. Raises HaulError('watchdog', ...) when it
    cannot start (the handoff then does not freeze).
    """
    spawn_fn = spawn_fn or _supervisor.spawn_detached
    handoff_pid = os.getpid()
    rfd, wfd = os.pipe()

    def job(report):
        return _watch(report, rfd, handoff_pid, name, migration_id, strategy, executor, lease_dir)

    try:
        # the state file is only written for a final state other than 'cancelled': never, here
        rep_fd, sup = spawn_fn(job, os.path.join(lease_dir, '.%s.watchdog.json' % name), keep_fds=(rfd,))
        os.close(rfd)
        rep = _supervisor.collect_report(rep_fd, sup, ready_timeout, 'the freeze watchdog')
    except (HaulError, OSError) as e:
        for fd in (rfd, wfd):
            try:
                os.close(fd)
            except OSError:
                pass
        raise HaulError('watchdog', 'cannot start the freeze watchdog: %s' % (getattr(e, 'msg', None) or e))
    if not rep.get('ready'):
        os.close(wfd)
        raise HaulError('watchdog', 'the freeze watchdog did not start: %s' % rep.get('error'))
    return Watchdog(wfd, sup)


def _watch(report, rfd, handoff_pid, name, migration_id, strategy, executor, lease_dir):
    """The watchdog's loop (in the detached process). Returns its final state (always
    'cancelled': it leaves no state file; what it did goes into the lease)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    start = _proc.proc_starttime(handoff_pid)
    report({'ready': True, 'pid': os.getpid()})
    known = []
    why = None
    while why is None:
        ready = select.select([rfd], [], [], TICK)[0]
        if ready:
            try:
                data = os.read(rfd, 16)
            except OSError:
                data = b''
            if DONE in data:
                return {'state': 'cancelled', 'rc': 0}
            if not data:
                why = 'the handoff (pid %d) died' % handoff_pid
                break
        try:
            record = _lease.read(name, lease_dir)
        except HaulError:
            record = None
        if not record or record.get('migration_id') != migration_id:
            return {'state': 'cancelled', 'rc': 0}   # not ours any more: touch nothing
        if phases.committed(record.get('phase') or phases.PREPARING):
            return {'state': 'cancelled', 'rc': 0}   # after COMMITTED the source never resumes
        if not _alive(handoff_pid, start):
            why = 'the handoff (pid %d) died' % handoff_pid
        elif _lease.expired(record):
            why = 'the lease expired at phase %s while the handoff (pid %d) hung' % (record.get('phase'), handoff_pid)
        else:
            known = [p for p in known if _alive(*p)] + [p for p in descendants(handoff_pid) if p not in known]
    return _take_over(why, handoff_pid, start, known, name, migration_id, strategy, executor, lease_dir)


def _take_over(why, handoff_pid, start, known, name, migration_id, strategy, executor, lease_dir):
    """The handoff is dead or hung: make sure it is dead, then roll back by the rule."""
    known = known + [p for p in descendants(handoff_pid) if p not in known]
    if _alive(handoff_pid, start):
        try:
            os.kill(handoff_pid, signal.SIGKILL)
        except OSError:
            pass
        deadline = time.time() + KILL_WAIT
        while _alive(handoff_pid, start) and time.time() < deadline:
            time.sleep(0.02)
    _kill(known)
    # the handoff is gone: the lease now says for good whether COMMITTED was recorded
    try:
        record = _lease.read(name, lease_dir)
    except HaulError:
        record = None
    if not record or record.get('migration_id') != migration_id:
        return {'state': 'cancelled', 'rc': 0}
    phase = record.get('phase') or phases.PREPARING
    plan = phases.rollback_plan(phase, strategy)
    if phases.committed(phase):
        done = 'nothing: COMMITTED is recorded, the source stays frozen'
    else:
        try:
            done = executor.after_handoff_died(plan, record)
        except Exception as e:  # pylint: disable=broad-except
            done = 'rollback failed: %s' % e
    try:
        _lease.update(name, migration_id, lease_dir=lease_dir,
                      watchdog={'at': time.time(), 'why': why, 'phase': phase, 'plan': plan, 'source_state': done})
        if record.get('handoff_took') and done == 'running':
            # the handoff ran alone and took the lease itself: nobody else will release it
            _lease.release(name, migration_id, lease_dir)
    except HaulError:
        pass
    return {'state': 'cancelled', 'rc': 0}
