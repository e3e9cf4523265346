# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Wait for an async job on the (delegated) host, printing its progress as it goes."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import shlex
import signal
import time

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()

MIB = 1024.0 * 1024.0
# Between the job file and the progress file in one probe's output (neither holds it: JSON).
SEPARATOR = '--haul-progress--'
# The longest pause between two probes: also how late the end of a job can be seen.
MAX_PAUSE_S = 0.5
# After Ctrl-C, how long to wait for the job to say its pid (a job that just started).
PID_WAIT_S = 5.0


def _size(n):
    n = float(n or 0)
    return '%.1f GiB' % (n / MIB / 1024) if n >= MIB * 1024 else '%.1f MiB' % (n / MIB)


def _eta(seconds):
    seconds = int(seconds or 0)
    return '%d:%02d:%02d' % (seconds // 3600, seconds // 60 % 60, seconds % 60)


# What the handoff is doing once it has recorded each phase (_migration.phases, lowercased).
PHASE_WORDS = {
    'connecting': 'connecting to the destination (nothing frozen)',
    'frozen': 'frozen, dumping',
    'dumped': 'frozen, sending the images',
    'sent': 'frozen, restoring on the destination',
    'committed': 'committed, resuming on the destination',
    'resumed': 'running on the destination, finishing',
    'pages': 'running on the destination, its memory moving:',
}


def progress_line(label, host, progress):
    """The line printed for one progress reading (a dict written by _progress.ProgressFile): a
    transfer's bytes, share, rate and ETA; or the phase a handoff reached, with the page
    transfer's numbers in post-copy."""
    elapsed = float(progress.get('elapsed_s') or 0)
    phase = progress.get('phase')
    words = PHASE_WORDS.get(phase, phase)
    if phase and 'bytes' not in progress:
        return '%s on %s: %s, %.0f s so far' % (label, host, words, elapsed)
    moved = int(progress.get('bytes') or 0)
    percent = int(progress.get('percent') or 0)
    total = ' of %s (%d%%)' % (_size(moved * 100.0 / percent), percent) if percent > 0 else ''
    return '%s on %s: %s%s%s, %s/s, ETA %s, %.0f s so far' % (
        label, host, (words + ' ') if phase else '', _size(moved), total, _size(progress.get('rate_bytes_s')),
        _eta(progress.get('eta_s')), elapsed)


def read_probe(text):
    """The job's state and the progress reading from one probe's output (the job file, the
    separator, the progress file): ``(state, progress)``. ``state`` is ``missing`` (no job file),
    ``running`` or ``finished``, read as ``async_status`` reads the job file (a file being
    replaced reads as running); ``progress`` is the reading (a dict) or None."""
    job, _sep, rest = (text or '').partition(SEPARATOR)
    job = job.strip()
    if not job:
        state = 'missing'
    else:
        try:
            data = json.loads(job)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            state = 'running'
        else:
            state = 'finished' if 'started' not in data or data.get('finished') else 'running'
    try:
        progress = json.loads(rest.strip()) if rest.strip() else None
    except ValueError:
        progress = None
    return state, (progress if isinstance(progress, dict) else None)


class _Interrupted(Exception):
    def __init__(self, signum):
        super(_Interrupted, self).__init__(signum)
        self.signum = signum


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = True

    def _probe(self, command):
        out = self._low_level_execute_command(command)
        return read_probe(out.get('stdout'))

    def _cancel(self, host, label, command, progress):
        """After Ctrl-C (SIGINT or SIGTERM from Ansible): send SIGTERM to the job's process, as a
        signal to it would come if it ran in the foreground (the handoff then rolls back before
        its commit, and finishes the move after it)."""
        deadline = time.time() + PID_WAIT_S
        while not (progress or {}).get('pid') and time.time() < deadline:
            state, reading = self._probe(command)
            progress = reading or progress
            if state != 'running':
                return
            time.sleep(0.2)
        pid = int((progress or {}).get('pid') or 0)
        if pid <= 1:
            display.warning('%s on %s: interrupted before it said its pid; it finishes or rolls back on its own'
                            % (label, host))
            return
        display.warning('%s on %s: interrupted; sending SIGTERM to it (pid %d): before its commit it rolls back, '
                        'after it it finishes the move' % (label, host, pid))
        self._low_level_execute_command('kill -s TERM %d 2>/dev/null || true' % pid)

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        _valid, args = self.validate_argument_spec(argument_spec=dict(
            jid=dict(type='str', required=True),
            progress_file=dict(type='path', required=True),
            label=dict(type='str', default='transfer'),
            interval=dict(type='float', default=5.0),
            timeout=dict(type='int', default=3600),
            cancel_on_interrupt=dict(type='bool', default=False),
        ))
        if args['interval'] <= 0 or args['timeout'] <= 0:
            raise AnsibleError('haul.live.progress: interval and timeout must be greater than 0')
        async_dir = self._remote_expand_user(self.get_shell_option('async_dir', default='~/.ansible_async'))
        host = self._task.delegate_to or (task_vars or {}).get('inventory_hostname', '?')
        # one cheap round-trip per probe (no module): the job file, then the progress file
        command = 'cat -- %s 2>/dev/null; echo; echo %s; cat -- %s 2>/dev/null; true' % (
            shlex.quote('%s/%s' % (async_dir.rstrip('/'), args['jid'])), SEPARATOR, shlex.quote(args['progress_file']))

        signalled = []

        def on_signal(signum, _frame):
            if not signalled:   # the first one ends the wait; a second one (Ansible's SIGTERM) waits for the cancel
                signalled.append(signum)
                raise _Interrupted(signum)

        handlers = {}
        if args['cancel_on_interrupt']:
            for signum in (signal.SIGINT, signal.SIGTERM):
                handlers[signum] = signal.signal(signum, on_signal)
        progress = None
        try:
            shown, progress = self._wait(args, command, host)
        except _Interrupted as e:
            self._cancel(host, args['label'], command, progress)
            previous = handlers.get(e.signum)
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
            handlers = {}
            if callable(previous):
                previous(e.signum, None)   # the worker's own handler: it ends the worker
            raise KeyboardInterrupt()
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
        if shown is None:
            result.update(failed=True, msg='%s on %s did not finish within %d s (async job %s)'
                          % (args['label'], host, args['timeout'], args['jid']))
            return result
        # the job's own result, as async_status gives it
        status = self._execute_module(module_name='ansible.legacy.async_status', task_vars=task_vars,
                                      module_args=dict(jid=args['jid'], mode='status', _async_dir=async_dir))
        status.pop('invocation', None)
        result.update(status)
        result['progress_lines'] = shown
        return result

    def _wait(self, args, command, host):
        """Probe until the job is no longer running, printing a progress line at most once per
        interval (and a reading once); return the lines printed (None: the timeout came first) and
        the last reading."""
        deadline = time.time() + args['timeout']
        shown, last, progress = 0, None, None
        printed_at = time.time()
        # probed often at first (a short job ends within a second), then every MAX_PAUSE_S
        pause = 0.1
        while True:
            state, reading = self._probe(command)
            progress = reading or progress
            if state != 'running':
                return shown, progress
            if time.time() > deadline:
                return None, progress
            if reading is not None and time.time() - printed_at >= args['interval'] and reading.get('updated') != last:
                printed_at = time.time()
                last = reading.get('updated')
                display.display(progress_line(args['label'], host, reading))
                shown += 1
            time.sleep(min(pause, args['interval']))
            pause = min(pause * 2, MAX_PAUSE_S)
