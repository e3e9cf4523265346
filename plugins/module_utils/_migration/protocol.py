# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The handoff's protocol: the control directory, the two ends of the conversation, the shared
SSH connection, and the critical section's small shared helpers (private module_util).

docs/design.md explains the protocol; in short:

* The destination runs ``criu_restore`` with ``handoff`` as an async task started before the
  freeze (:class:`Receiver`, driven by :func:`.destination.receive_container`). It checks
  everything it can, writes ``waiting`` to its control directory and waits.
* The source (:func:`.source.send_container`) first opens one SSH session to the destination
  running the relay (:mod:`.relay`, sent as its source text by :class:`Relay`), which relays
  commands from the source into the control directory and status changes back, and waits for
  ``waiting``. Only then does it freeze and dump the container (held frozen), send the images
  over the same SSH connection (:class:`ControlMaster`), and send ``synced``.
* The destination restores the tree **stopped** and reports ``restored``. The source answers
  ``commit``; the destination resumes the tree and reports ``running``. Only then is the
  source copy killed and its images removed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import inspect
import json
import os
import pkgutil
import select
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time

from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.module_utils._migration import relay as relay_module
from ansible_collections.haul.live.plugins.module_utils._migration.watchdog import kill_criu

# States a destination reports, in order. A status with "final" ends the conversation: running
# for stop-and-copy; for post-copy, complete (every page moved) or lost (the transfer broke
# after the container resumed here).
WAITING, RESTORED, RUNNING = 'waiting', 'restored', 'running'
COMPLETE, LOST = 'complete', 'lost'
FAILED, ABORTED = 'failed', 'aborted'
# Commands a source sends.
SYNCED, COMMIT, ABORT = 'synced', 'commit', 'abort'
POLL = 0.002
STATUS = 'status.json'
# FIFOs in the control directory: a byte in WAKE tells the receiver a command came, a byte in
# STATUS_WAKE tells the relay the status changed; both sides then act at once instead of at
# their next poll (which stays, every POLL_WOKEN seconds, as a safety net).
WAKE, STATUS_WAKE = 'wake', 'status.wake'
# The one decision of a handoff, in its control directory: a symlink to ``commit`` or ``abort``,
# made by whoever decides first (the receiver on COMMIT, or on abort or its deadline; the role's
# rollback, as a fence).
DECIDED = 'decided'
POLL_WOKEN = 0.05


def _fifo(path):
    """Open the FIFO ``path`` for reading without ever seeing EOF (O_RDWR), or None."""
    try:
        return os.open(path, os.O_RDWR | os.O_NONBLOCK)
    except OSError:
        return None


def _poke(path):
    """One byte into the FIFO ``path`` if someone reads it; never blocks, never fails."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    try:
        os.write(fd, b'.')
    except OSError:
        pass
    finally:
        os.close(fd)


def _drain(fd):
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass


def control_dir(images_dir, handoff_id):
    """The control directory of one handoff: ``<images_dir>.handoff/<id>``.

    Each attempt has its own, so that a receiver left over from a failed attempt never acts on
    the commands of a later one.
    """
    if not handoff_id or '/' in handoff_id or handoff_id.startswith('.'):
        raise HaulError('handoff', 'bad handoff id %r' % (handoff_id,))
    return os.path.join(images_dir.rstrip('/') + '.handoff', handoff_id)


# Images directories at most this large go through the relay's session (Relay.send_dir); larger
# ones, or ones with anything but regular files and symlinks, go with rsync.
RELAY_MAX_BYTES = 64 * 1024 * 1024


def _write_json(path, data):
    # a full disk: a clear error at once (step, file, "no space left on HOST"); a status still
    # gets through in a pre-allocated spare, so the source does not wait out its timeout
    from ansible_collections.haul.live.plugins.module_utils._common import write_json_atomic  # pylint: disable=import-outside-toplevel
    write_json_atomic(path, data, 'handoff', what='the handoff status', spare=True)


class Receiver(object):
    """The destination's side: a control directory with status.json and the source's commands."""

    def __init__(self, images_dir, handoff_id, timeout):
        self.dir = control_dir(images_dir, handoff_id)
        self.timeout = timeout
        self.wake = None

    def open(self):
        if os.path.isdir(self.dir):
            shutil.rmtree(self.dir)
        parent = os.path.dirname(self.dir)
        if not os.path.isdir(parent):
            os.makedirs(parent, 0o700)
        os.chmod(parent, 0o700)
        os.mkdir(self.dir, 0o700)
        try:
            for name in (WAKE, STATUS_WAKE):
                os.mkfifo(os.path.join(self.dir, name), 0o600)
        except OSError:
            pass  # no FIFOs here: both sides poll
        self.wake = _fifo(os.path.join(self.dir, WAKE))

    def status(self, state, final=False, **details):
        data = dict(details)
        data.update(state=state, final=bool(final or state in (FAILED, ABORTED)), time=time.time())
        _write_json(os.path.join(self.dir, STATUS), data)
        _poke(os.path.join(self.dir, STATUS_WAKE))

    def wait(self, commands, timeout=None):
        """Wait until one of ``commands`` arrives; return it, or None after the timeout."""
        deadline = time.time() + (timeout or self.timeout)
        while True:
            for cmd in (ABORT,) + tuple(commands):
                if os.path.exists(os.path.join(self.dir, cmd)):
                    return cmd
            left = deadline - time.time()
            if left < 0:
                return None
            if self.wake is not None:
                if select.select([self.wake], [], [], min(left, POLL_WOKEN))[0]:
                    _drain(self.wake)
            else:
                time.sleep(POLL)

    def decide(self, what):
        """Take this handoff's one decision, COMMIT or ABORT, unless it is taken already; return
        the decision that holds. Atomic (a symlink ``decided`` -> commit or abort): the receiver
        takes COMMIT only if no fence took ABORT first (the role's rollback writes the same link,
        docs/reliability.md), so a copy that was fenced never resumes."""
        path = os.path.join(self.dir, DECIDED)
        try:
            os.symlink(what, path)
            return what
        except OSError:
            return self.decided() or ABORT  # it cannot be recorded: never resume on that

    def decided(self):
        try:
            return os.readlink(os.path.join(self.dir, DECIDED))
        except OSError:
            return None

    def close(self):
        if self.wake is not None:
            os.close(self.wake)
            self.wake = None
        shutil.rmtree(self.dir, ignore_errors=True)


def relay_source():
    """The source text of :mod:`.relay`, to run as ``python3 -c``: from the module itself, or
    (where no source is at hand for inspect) read as package data, which also works from the
    zip that AnsiballZ ships."""
    try:
        return inspect.getsource(relay_module)
    except (IOError, OSError, TypeError):
        data = pkgutil.get_data(relay_module.__name__.rsplit('.', 1)[0], 'relay.py')
        if data is None:
            raise HaulError('connect', 'cannot read the relay script (%s)' % relay_module.__name__)
        return data.decode('utf-8')


class Relay(object):
    """The source's side of the conversation: one SSH session running :mod:`.relay`."""

    def __init__(self, target, ctl_dir, timeout, python='python3'):
        self.target = target
        self.proc = None
        self.buf = b''
        self.argv = target.remote_argv([python, '-c', relay_source(), ctl_dir, str(int(timeout))])
        self.last = None

    def start(self):
        # A long-lived, two-way session (commands in, status lines out) while the critical section
        # runs: run_command cannot do that.
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,  # pylint: disable=ansible-bad-function
                                     stderr=subprocess.PIPE, close_fds=True)

    def send(self, cmd):
        try:
            self.proc.stdin.write((cmd + '\n').encode())
            self.proc.stdin.flush()
            return True
        except (IOError, OSError, ValueError):
            return False

    @staticmethod
    def dir_entries(src, max_bytes=RELAY_MAX_BYTES):
        """The entries of ``src`` for :meth:`send_dir`, sorted, as ``(name, lstat, link target)``;
        None when it must go with rsync instead (a subdirectory, a special file, more than
        ``max_bytes`` in all)."""
        entries, total = [], 0
        for name in sorted(os.listdir(src)):
            path = os.path.join(src, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                entries.append((name, st, os.readlink(path)))
            elif stat.S_ISREG(st.st_mode):
                total += st.st_size
                entries.append((name, st, None))
            else:
                return None
        return entries if total <= max_bytes else None

    def send_dir(self, src, dest, entries=None):
        """Send the files of ``src`` (see :meth:`dir_entries`) into ``dest`` on the destination,
        through this session: its relay empties (or creates) ``dest`` and writes them, with their
        mode and mtime. Inside a freeze this replaces an rsync of a small images directory (two
        new processes and an SSH channel, and about 50 ms of rsync's fixed costs).

        Returns ``{'bytes_sent', 'files', 'duration_s', 'via'}``; raises HaulError('sync', ...)
        when the session is gone. A file the relay cannot write comes back as a final failure
        on the status stream (the relay then also aborts the receiver).
        """
        start = time.time()
        if entries is None:
            entries = self.dir_entries(src)
            if entries is None:
                raise HaulError('sync', '%s cannot go through the relay (not only small files and symlinks)' % src)
        sent = 0
        try:
            w = self.proc.stdin
            w.write(('dir %s\n' % json.dumps({'path': dest})).encode())
            for name, st, target in entries:
                if target is not None:
                    w.write(('link %s\n' % json.dumps({'name': name, 'target': target})).encode())
                    continue
                with open(os.path.join(src, name), 'rb') as f:
                    data = f.read()
                w.write(('file %s\n' % json.dumps({'name': name, 'size': len(data), 'mode': stat.S_IMODE(st.st_mode),
                                                   'mtime': st.st_mtime})).encode())
                w.write(data)
                sent += len(data)
            w.flush()
        except (IOError, OSError, ValueError) as e:
            why = 'lost the SSH session to the destination %s while sending %s: %s' % (self.target.host, src, e)
            try:  # a relay that could not write a file said why before it ended
                st = self.expect((), 2, 'sync')
                why = 'on %s: %s' % (self.target.host, st.get('msg') or st.get('state'))
            except HaulError:
                pass
            raise HaulError('sync', why)
        return {'bytes_sent': sent, 'files': len(entries), 'duration_s': round(time.time() - start, 3),
                'via': 'relay'}

    def expect(self, states, timeout, step):
        """Read status lines until one has a state in ``states`` (or a final one); return it."""
        deadline = time.time() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            while b'\n' in self.buf:
                line, self.buf = self.buf.split(b'\n', 1)
                try:
                    st = json.loads(line.decode())
                except ValueError:
                    continue
                self.last = st
                if st.get('state') in states or st.get('final'):
                    return st
            left = deadline - time.time()
            if left <= 0:
                raise HaulError(step, 'the destination %s did not report %s within %ds (last state: %s)'
                                % (self.target.host, ' or '.join(states), timeout,
                                   (self.last or {}).get('state', 'none')))
            if select.select([fd], [], [], min(left, 1.0))[0]:
                data = os.read(fd, 65536)
                if not data:
                    err = self._stderr()
                    raise HaulError(step, 'lost the SSH session to the destination %s%s'
                                    % (self.target.host, (': ' + err) if err else ''))
                self.buf += data

    def _stderr(self):
        try:
            self.proc.wait(timeout=2)
            return ' '.join(self.proc.stderr.read().decode('utf-8', 'replace').split())[-300:]
        except Exception:  # pylint: disable=broad-except
            return ''

    def close(self):
        if self.proc is None:
            return
        for f in (self.proc.stdin,):
            try:
                f.close()
            except (IOError, OSError):
                pass
        try:
            self.proc.wait(timeout=5)
        except Exception:  # pylint: disable=broad-except
            self.proc.kill()
            self.proc.wait()


class ControlMaster(object):
    """A private ControlPath so that the relay and every rsync share one SSH connection."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix='haul-ssh-')
        os.chmod(self.dir, 0o700)

    def options(self):
        return ['ControlMaster=auto', 'ControlPath=%s/cm' % self.dir, 'ControlPersist=60']

    def close(self, target, run_command):
        run_command(target.control_argv('exit'))
        shutil.rmtree(self.dir, ignore_errors=True)


class Interrupted(Exception):
    pass


def _raise_interrupted(signum, _frame):
    raise Interrupted('signal %d' % signum)


def guard_signals():
    """Turn SIGTERM/SIGINT/SIGHUP into an exception, so that an interrupted task still rolls back."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _raise_interrupted)


def run_parallel(jobs):
    """Run ``(fn, args, kwargs)`` jobs at once (the images and the root filesystem's delta travel
    side by side over the shared SSH connection); return their results in order, or raise the
    first job's error."""
    results = [None] * len(jobs)
    errors = [None] * len(jobs)

    def work(i, fn, args, kwargs):
        try:
            results[i] = fn(*args, **kwargs)
        except Exception as e:  # pylint: disable=broad-except
            errors[i] = e

    threads = [threading.Thread(target=work, args=(i,) + tuple(job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in errors:
        if e is not None:
            raise e
    return results


def ms(a, b):
    return int(round((b - a) * 1000))


def phase_timeouts(params):
    """The per-phase timeouts of a handoff, in seconds (docs/reliability.md, "Timeouts"):
    ``connect`` (the SSH session and the destination saying it waits), ``dump`` (the CRIU dump,
    inside the freeze), ``transfer`` (the images and the root filesystem's delta: rsync's I/O
    timeout), ``restore`` (the destination's restore, until it reports the copy restored) and
    ``commit`` (from the COMMIT until the destination reports its copy running). Each defaults to
    ``timeout``; ``connect`` to ``connect_timeout + timeout``."""
    base = int(params.get('timeout') or 300)
    given = params.get('timeouts') or {}
    out = dict((k, int(given.get(k) or base)) for k in ('dump', 'transfer', 'restore', 'commit'))
    out['connect'] = int(given.get('connect') or (int(params.get('connect_timeout') or 10) + base))
    return out


def bounded(timeout, images_dir, fn, *args, **kwargs):
    """``fn(*args)`` (a dump or a restore), with the CRIU working in ``images_dir`` killed when
    it has not finished within ``timeout`` seconds: CRIU's RPC then fails at once instead of
    waiting for a hung CRIU forever, and the rollback follows. (Not a socket timeout: pycriu's
    socket pair is shared with CRIU, which must keep reading it blocking.)"""
    step = kwargs.get('step', 'dump')
    fired = []
    timer = threading.Timer(timeout, lambda: fired.append(kill_criu(images_dir)))
    timer.daemon = True
    timer.start()
    try:
        return fn(*args)
    except Exception:  # pylint: disable=broad-except
        if fired:
            raise HaulError(step, 'CRIU did not finish the %s within %d s (the %s timeout); it was killed'
                            % (step, timeout, step))
        raise
    finally:
        timer.cancel()


def user_name():
    """This process's user name (a lease's owner)."""
    import pwd  # pylint: disable=import-outside-toplevel
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())
