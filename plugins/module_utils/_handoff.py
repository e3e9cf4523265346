# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The critical section of a migration: freeze, dump, send, restore, confirm — with no Ansible
round trip inside it, and with the rollback guarantee.

This is a private module_util: it is not part of the collection's public API.
docs/design.md explains the protocol; in short:

* The destination runs ``criu_restore`` with ``handoff`` as an async task started before the
  freeze (:class:`Receiver`). It checks everything it can, writes ``waiting`` to its control
  directory and waits.
* The source runs the ``handoff`` module (:func:`send_container`). It first opens one SSH
  session to the destination running :data:`RELAY_SCRIPT`, which relays commands from the
  source into the control directory and status changes back, and waits for ``waiting``.
  Only then does it freeze and dump the container (held frozen), rsync the images (and the
  root filesystem's last changes) over the same SSH connection, and send ``synced``.
* The destination restores the tree **stopped** and reports ``restored``. The source answers
  ``commit``; the destination resumes the tree and reports ``running``. Only then is the
  source copy killed and its images removed.

The rollback rule is written once, in :func:`_phases.rollback_plan`, and applied here by
:class:`_Source` (the handoff) and by the freeze's watchdog (:mod:`_watchdog`, which takes over
if the handoff dies). The phase reached is recorded in the lease on each host (:mod:`_lease`):
the source records FROZEN, DUMPED, SENT, COMMITTED and DONE, the receiver RESTORED and RESUMED.
In short: before COMMITTED, the destination's copy is fenced first (no COMMIT was sent, and
ABORT makes the receiver kill its stopped copy), then the source is thawed and its network
reopened. COMMITTED is recorded durably BEFORE the COMMIT is sent, and from then on a signal no
longer interrupts the handoff; at and after COMMITTED the source never resumes: a lost
confirmation leaves it frozen and the failure says so (the role's rollback fences the
destination's copy and looks where the container runs). The destination resumes only on
COMMIT, takes that decision atomically (``decided``, a symlink that a fence can take first),
and refuses a COMMIT that comes after its deadline. At every moment there is one running copy,
or one frozen. docs/reliability.md has the table.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import select
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time

from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.module_utils import _frames
from ansible_collections.haul.live.plugins.module_utils import _lease
from ansible_collections.haul.live.plugins.module_utils import _network
from ansible_collections.haul.live.plugins.module_utils import _phases
from ansible_collections.haul.live.plugins.module_utils import _watchdog

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


# Runs on the destination as ``python3 -c RELAY_SCRIPT CONTROL_DIR TIMEOUT`` in the source's SSH
# session. Lines on stdin (commands) become files in CONTROL_DIR; every change of
# CONTROL_DIR/status.json becomes a JSON line on stdout. It ends at a final state. If the
# source goes away (EOF) before it sent commit, it writes abort (a source that is gone must
# not leave a destination copy that could resume), and ends.
# It also receives small images directories on the same stream (Relay.send_dir: no rsync, no
# new process, no new SSH channel inside the freeze): ``dir {"path"}`` empties (or creates,
# mode 0700) that directory, ``file {"name", "size", "mode", "mtime"}`` is followed by the
# file's bytes, ``link {"name", "target"}`` makes a symlink. If one cannot be written, the
# relay writes abort (the destination restores nothing from an incomplete directory), reports
# a final failure and ends.
RELAY_SCRIPT = r'''
import json, os, select, shutil, sys, time
ctl, timeout = sys.argv[1], float(sys.argv[2])
deadline = time.time() + timeout
last, committed, buf = None, False, b''
into, out, left, meta = None, None, 0, None
swake = None
def put(name):
    p = os.path.join(ctl, name)
    try:
        with open(p + '.tmp', 'w') as f:
            f.write('%f\n' % time.time())
        os.rename(p + '.tmp', p)
    except (IOError, OSError):
        os.close(os.open(p, os.O_WRONLY | os.O_CREAT, 0o600))  # a full disk: the name is what counts
    try:
        fd = os.open(os.path.join(ctl, 'wake'), os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, b'.')
        finally:
            os.close(fd)
    except OSError:
        pass
def fail(msg):
    try:
        if not committed and os.path.isdir(ctl):
            put('abort')
    except (IOError, OSError):
        pass
    sys.stdout.write(json.dumps({'state': 'failed', 'final': True, 'step': 'sync', 'msg': 'relay: ' + msg}) + '\n')
    sys.stdout.flush()
    sys.exit(0)
def entry(kind, m):
    global into, out, left, meta
    if kind == 'dir':
        d = m['path']
        if not os.path.isabs(d) or os.path.normpath(d) == '/':
            raise ValueError('refusing to fill %r' % d)
        if os.path.isdir(d):
            for n in os.listdir(d):
                p = os.path.join(d, n)
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p)
                else:
                    os.unlink(p)
        else:
            os.makedirs(d, 0o700)
        into = d
        return
    name = m['name']
    if into is None or not name or '/' in name or name in ('.', '..'):
        raise ValueError('bad entry %r' % name)
    p = os.path.join(into, name)
    if kind == 'link':
        os.symlink(m['target'], p)
        return
    out = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    left, meta = int(m['size']), (p, m)
    if not left:
        close()
def close():
    global out, meta
    os.close(out)
    p, m = meta
    os.chmod(p, m['mode'])
    os.utime(p, (m['mtime'], m['mtime']))
    out, meta = None, None
while True:
    if swake is None:
        try:
            swake = os.open(os.path.join(ctl, 'status.wake'), os.O_RDWR | os.O_NONBLOCK)
        except OSError:
            pass
    try:
        with open(os.path.join(ctl, 'status.json')) as f:
            st = f.read()
    except (IOError, OSError):
        st = None
    if st and st != last:
        last = st
        deadline = time.time() + timeout  # a destination that still reports (post-copy progress) keeps it
        sys.stdout.write(st.strip() + '\n')
        sys.stdout.flush()
        if json.loads(st).get('final'):
            break
    ready = select.select([0] + ([swake] if swake is not None else []), [], [], 0.002 if swake is None else 0.05)[0]
    if swake in ready:
        try:
            while os.read(swake, 4096):
                pass
        except OSError:
            pass
    if 0 in ready:
        data = os.read(0, 1 << 20)
        if not data:
            # nobody listens any more; without a commit, the destination must not resume
            if not committed and os.path.isdir(ctl):
                put('abort')
            break
        buf += data
        doing = 'write the images'
        try:
            while buf:
                if left:
                    chunk, buf = buf[:left], buf[left:]
                    left -= len(chunk)
                    while chunk:
                        chunk = chunk[os.write(out, chunk):]
                    if not left:
                        close()
                    continue
                if b'\n' not in buf:
                    break
                line, buf = buf.split(b'\n', 1)
                cmd, _, arg = line.decode().strip().partition(' ')
                if cmd in ('synced', 'commit', 'abort'):
                    committed = committed or cmd == 'commit'
                    doing = 'pass on ' + cmd
                    put(cmd)
                elif cmd in ('dir', 'file', 'link'):
                    doing = 'write the images'
                    entry(cmd, json.loads(arg))
        except (IOError, OSError, ValueError, KeyError, TypeError) as e:
            fail('cannot %s: %s' % (doing, e))
    if time.time() > deadline:
        sys.stdout.write(json.dumps({'state': 'failed', 'final': True,
                                     'msg': 'relay: no final state within %ds' % timeout}) + '\n')
        break
'''

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


class Relay(object):
    """The source's side of the conversation: one SSH session running RELAY_SCRIPT."""

    def __init__(self, target, ctl_dir, timeout, python='python3'):
        self.target = target
        self.proc = None
        self.buf = b''
        self.argv = target.remote_argv([python, '-c', RELAY_SCRIPT, ctl_dir, str(int(timeout))])
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


def _before_lazy_freeze(params, dump_params, rsync, transport_mod, postcopy_mod):
    """Post-copy, before the freeze: what its short freeze should not wait for. A last rsync of
    the root filesystem with a record of its state, so that the freeze sends its delta only if it
    changed (:class:`_transport.RootfsDelta`); then everything of the lazy dump but the dump
    itself (``postcopy_mod.warm_up``: pycriu, the CRIU version, the checks, CRIU started and
    waiting). Returns that RootfsDelta, or None."""
    rootfs = None
    if params.get('sync_rootfs') and params.get('root'):
        rootfs = transport_mod.RootfsDelta(rsync, params['root'], params.get('rootfs_dest') or params['root'])
        rootfs.presync(delete=True)
    postcopy_mod.warm_up(dump_params)
    return rootfs


def _images_job(lazy, relay, rsync, src, dest):
    """The job sending the images inside the freeze: the (small) images of a lazy dump through the
    relay's session, anything else with rsync."""
    entries = Relay.dir_entries(src) if lazy else None
    if entries is not None:
        return (relay.send_dir, (src, dest), dict(entries=entries))
    return (rsync.sync, (src, dest), dict(delete=True, mkdir_mode='0700', fresh=True))


def _rootfs_job(rootfs, rsync, root, dest):
    """The job sending the root filesystem's last changes inside the freeze."""
    if rootfs is not None and rootfs.src == root and rootfs.dest == dest:
        return (rootfs.sync, (), dict(delete=True))
    return (rsync.sync, (root, dest), dict(delete=True))


def strategy_of(lazy, precopy):
    """The strategy's name (:data:`_phases.STRATEGIES`) from the handoff's two options."""
    if precopy:
        return 'hybrid' if lazy else 'precopy'
    return 'postcopy' if lazy else 'stopcopy'


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


# The lease record's margin over a phase's own timeout: a handoff that outlives it hangs, and its
# watchdog then kills it and rolls back (before COMMITTED only).
LEASE_MARGIN_S = 30
# Seconds the rollback waits for the destination to confirm it killed its copy (it does so on
# its own anyway: it never resumes without COMMIT).
FENCE_WAIT_S = 2
TEST_HOOKS_DIR = '/run/haul/test-hooks'


def _test_hook(name, point):
    """Tests only (tests/integration/targets/fault_commit): with ``sigterm@POINT`` in
    ``/run/haul/test-hooks/NAME`` on this host, this process sends itself SIGTERM at POINT
    (``dumped``: frozen and dumped; ``restored``: before the commit decision; ``commit``: after
    COMMITTED is recorded, before the COMMIT is sent; ``rollback``: as the rollback starts); with
    ``sleep@POINT`` it sleeps there for 120 s (a handoff to kill in that phase). One failed open
    when there is no file."""
    try:
        with open(os.path.join(TEST_HOOKS_DIR, name)) as f:
            hooks = f.read().split()
    except (IOError, OSError):
        return
    if 'sigterm@' + point in hooks:
        os.kill(os.getpid(), signal.SIGTERM)
    if 'sleep@' + point in hooks:
        time.sleep(120)


def _user():
    import pwd  # pylint: disable=import-outside-toplevel
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


class _Source(object):
    """One handoff on the source: the phase it reached (recorded in the lease) and the rollback
    rule (:func:`_phases.rollback_plan`) applied to it. The one place where the source decides
    what a failure undoes."""

    def __init__(self, params, strategy, cgroup_mod, images_mod, postcopy_mod, lease_dir=None):
        self.params = params
        self.strategy = strategy
        self.lazy = strategy in _phases.LAZY_STRATEGIES
        self.cgroup_mod, self.images_mod, self.postcopy_mod = cgroup_mod, images_mod, postcopy_mod
        self.name = params.get('name') or os.path.basename((params.get('cgroup') or '').rstrip('/')) or None
        self.id = params['handoff_id']
        self.lease_dir = lease_dir or _lease.LEASE_DIR
        self.timeouts = phase_timeouts(params)
        self.phase = _phases.PREPARING
        self.took_lease = False
        self.expires = None
        self.relay = None
        self.dumped = None
        self.catcher = None
        self.watchdog = None
        self.signals = []   # signals received after the commit decision (they no longer interrupt)
        self.not_thawed = None  # why the rollback left the source frozen although the rule says thaw

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
        owner = {'host': os.uname()[1], 'pid': os.getpid(), 'user': _user(), 'started': time.time(), 'by': 'handoff'}
        rec = _lease.acquire(self.name, self.id, owner, 'source', ttl, lease_dir=self.lease_dir)
        self.expires = rec.get('expires')
        _lease.update(self.name, self.id, lease_dir=self.lease_dir, handoff_pid=os.getpid(),
                      handoff_took=self.took_lease)

    def record(self, phase, next_timeout=None):
        """Record ``phase`` durably in the lease (renewed for the next phase's timeout, doubled,
        plus a margin), then make it this run's phase. A lease that is gone or someone else's:
        HaulError('lease', ...), and the rollback then touches nothing on this host."""
        ttl = 2 * next_timeout + LEASE_MARGIN_S if next_timeout else None
        try:
            _lease.update(self.name, self.id, phase=phase, ttl_s=ttl, lease_dir=self.lease_dir)
        except HaulError as e:
            raise HaulError('lease', 'cannot record phase %s of migration %s: %s' % (phase, self.id, e.cause))
        self.phase = phase

    def finish_lease(self, moved):
        """After the handoff: the role's lease gets its expiry back; one taken here is released
        when nothing is left in doubt."""
        try:
            if self.took_lease and moved is not None:
                _lease.release(self.name, self.id, self.lease_dir)
                return
            left = (self.expires or 0) - time.time()
            _lease.update(self.name, self.id, phase=_phases.DONE if moved else None,
                          ttl_s=max(left, 60), lease_dir=self.lease_dir)
        except HaulError:
            pass

    # --- the watchdog ------------------------------------------------------------------------
    def start_watchdog(self):
        """Start the freeze's watchdog (:mod:`_watchdog`): if this process dies before COMMITTED,
        it rolls back by the same rule."""
        self.watchdog = _watchdog.start(self.name, self.id, self.strategy, self.watchdog_rollback,
                                        lease_dir=self.lease_dir)

    def stop_watchdog(self):
        if self.watchdog is not None:
            self.watchdog.stop()
            self.watchdog = None

    def watchdog_rollback(self, plan, record):
        """In the watchdog, with this handoff dead: the plan's source side. The destination's copy
        is fenced already: no COMMIT can come from a dead handoff (COMMITTED is recorded before
        it is sent), and the receiver kills its stopped copy on the relay's EOF or at its own
        deadline."""
        self.relay = None
        self.catcher = None
        if self.postcopy_mod is not None:
            # a lazy dump the handoff had prepared (CRIU started, waiting) is the handoff's: its
            # descriptors are closed here (the watchdog keeps none), and its CRIU was killed with
            # the handoff's other processes; only a started lazy dump (its own supervisor) is left
            getattr(self.postcopy_mod, '_PREPARED', {}).clear()
        dumped = {'cgroup': '/' + self.params['cgroup'].strip('/')} if self.params.get('cgroup') else None
        self.dumped = dumped
        self.phase = record.get('phase') or _phases.PREPARING
        state = self.roll_back(plan, record=record)
        if state == 'running' and not self.params.get('keep_images'):
            self._remove_images()
        return state

    # --- the rollback rule, applied ----------------------------------------------------------
    def roll_back(self, plan, record=None):
        """Do ``plan``'s actions in order; return the source's state afterwards: 'running',
        'frozen' (in doubt, or the lease is not ours any more), 'lost', 'killed', or
        'unknown: why'."""
        state = 'running' if self.phase == _phases.PREPARING else None
        for action in plan:
            if action == _phases.REMOVE_DESTINATION_COPY:
                self._fence_destination()
            elif action == _phases.THAW_SOURCE:
                state = self._thaw(record)
            elif action == _phases.KILL_SOURCE_REMAINS:
                _finalize_source(self.params, self.dumped, self.cgroup_mod, self.images_mod, self.postcopy_mod)
                state = state or 'killed'
            elif action == _phases.FINISH_TRANSFER:
                # the page server (its own supervisor) keeps serving until the destination has
                # every page; it ends then, and the source's tasks with it
                state = state or 'frozen'
            elif action == _phases.REPORT_IN_DOUBT:
                state = state or 'frozen'
            elif action == _phases.REPORT_LOST:
                state = 'lost'
        return state or 'unknown'

    def _fence_destination(self):
        """Before the source thaws: the destination's copy must never run. No COMMIT was sent (the
        phase is before COMMITTED), so the receiver cannot resume it; ABORT makes it kill its
        stopped copy now. Its answer is awaited briefly: a destination that is unreachable
        kills its copy at its own deadline."""
        if self.relay is None or self.relay.proc is None:
            return
        if self.relay.send(ABORT):
            try:
                self.relay.expect((ABORTED, FAILED), FENCE_WAIT_S, 'abort')
            except HaulError:
                pass

    def _thaw(self, record=None):
        """Thaw the source, if this migration froze it (its lease, id and phase, say so)."""
        if record is None:
            try:
                record = _lease.read(self.name, self.lease_dir)
            except HaulError:
                record = None
        ok, why = _phases.may_thaw(record, self.id)
        if not ok:
            self.not_thawed = why
            return 'frozen'
        if self.lazy and self.postcopy_mod is not None:
            try:
                self.postcopy_mod.stop_lazy_dump(self.params['images_dir'])
            except Exception:  # pylint: disable=broad-except
                pass  # its CRIU goes with the next line
        _watchdog.kill_criu(self.params['images_dir'])   # a CRIU that hangs (or serves pages) holds the tasks
        state = _rollback(self.params, self.dumped, self.cgroup_mod)
        if self.catcher and state == 'running':
            self.catcher.release()  # what its clients sent meanwhile reaches it at once
        if self.params.get('precopy'):
            self.images_mod.remove(self.images_mod.precopy_dir(self.params['images_dir']))
        return state

    def _remove_images(self):
        self.images_mod.remove(self.params['images_dir'])
        self.images_mod.remove(self.images_mod.precopy_dir(self.params['images_dir']))
        if self.postcopy_mod is not None:
            self.images_mod.remove(self.postcopy_mod.state_dir(self.params['images_dir']))

    # --- signals -----------------------------------------------------------------------------
    def defer_signals(self):
        """From the commit decision on (and during a rollback), SIGTERM/SIGINT/SIGHUP no longer
        interrupt: they are noted, and the handoff finishes what it must."""
        def note(signum, _frame):
            self.signals.append(signum)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, note)


def send_container(params, run_command, dump_fn, cgroup_mod, images_mod, transport_mod, postcopy_mod=None,
                   precopy_mod=None, lease_dir=None):
    """The source's side of the critical section (the ``handoff`` module's logic).

    ``dump_fn(params)`` dumps and holds the container frozen (``_criu.dump_container``, or for
    post-copy, ``params['lazy']`` set, ``_postcopy.dump_lazy``: only the state moves inside the
    freeze, the memory follows from this host's page server after the container resumed).
    With ``params['precopy']`` (pre-copy, or hybrid together with ``lazy``), ``precopy_mod``
    (``_precopy``) first runs pre-dump rounds while the container runs, each one sent to the
    destination; the final dump then holds only what changed since the last round.

    The phases (:mod:`_phases`) are recorded in the lease as they are reached: FROZEN, DUMPED,
    SENT, COMMITTED (durably BEFORE the COMMIT is sent), RESUMED, DONE. On any failure the
    rollback does what :func:`_phases.rollback_plan` says for the phase reached (:class:`_Source`).
    Returns the result dict; raises HaulError after rolling back.
    """
    lazy = bool(params.get('lazy'))
    precopy = bool(params.get('precopy'))
    strategy = strategy_of(lazy, precopy)
    t_begin = time.time()
    dest_images = params.get('dest_images_dir') or params['images_dir']
    ctl = control_dir(dest_images, params['handoff_id'])
    src = _Source(params, strategy, cgroup_mod, images_mod, postcopy_mod, lease_dir)
    timeouts = src.timeouts
    result = {'changed': False, 'dest_host': params['dest_host'], 'images_dir': params['images_dir'],
              'dest_images_dir': dest_images}
    if precopy and os.path.basename(dest_images.rstrip('/')) != os.path.basename(params['images_dir'].rstrip('/')):
        # the final dump's parent link is relative (../NAME.precopy/round-N): same name on both hosts
        raise HaulError('options', 'pre-copy needs the same images directory name on both hosts, not %s and %s'
                        % (params['images_dir'], dest_images))
    try:
        src.take_lease()
    except HaulError as e:
        e.details.update(source_state='running', frozen_ms=0)
        raise
    precopied = precopy_ctx = None
    if precopy:
        # every pre-copy check (dirty tracking first) before the destination is even contacted
        try:
            precopy_ctx = precopy_mod.prepare_handoff(params, params['images_dir'])
        except HaulError as e:
            e.details.update(source_state='running', frozen_ms=0)
            src.finish_lease(False)
            raise
    cm = ControlMaster()
    target = transport_mod.SshTarget(
        params['dest_host'], user=params.get('dest_user') or 'root', port=params.get('ssh_port'),
        key=params.get('ssh_key'), options=list(params.get('ssh_options') or []) + cm.options(),
        connect_timeout=params.get('connect_timeout') or 10, known_hosts=params.get('known_hosts'))
    relay = src.relay = Relay(target, ctl, params['timeout'] * 4)
    rsync = transport_mod.RsyncRunner(run_command, target, bwlimit_kib=params.get('bwlimit_kib'),
                                      timeout=timeouts['transfer'])
    frozen_at = t_running = None
    guard_signals()
    try:
        relay.start()
        st = relay.expect((WAITING,), timeouts['connect'], 'connect')
        if st['state'] != WAITING:
            raise HaulError(st.get('step') or 'receive', 'the destination %s is not ready: %s'
                            % (params['dest_host'], st.get('msg') or st['state']),
                            log_tail=st.get('log_tail'))
        t_connected = time.time()
        dump_params = dict(params)
        dump_params.update(hold='frozen', checksum='none', force=False, migration_id=params['handoff_id'])
        if precopy:
            # pre-copy rounds while the container runs; each round goes to the destination at once
            # each round syncs the whole rounds directory: the earlier rounds are there already
            # (rsync skips them), and the directory itself gets mode 0700 on the destination too
            rounds_src = images_mod.precopy_dir(params['images_dir'])
            rounds_dest = images_mod.precopy_dir(dest_images)
            precopied = precopy_mod.send_rounds(precopy_ctx, lambda _rdir: rsync.sync(
                rounds_src, rounds_dest, delete=True, mkdir_mode='0700'))
            dump_params['parent_images'] = precopied['parent_images']
        t_precopied = time.time()
        rootfs = _before_lazy_freeze(params, dump_params, rsync, transport_mod, postcopy_mod) if lazy else None
        src.start_watchdog()
        src.catcher = _catch_clients(params, cgroup_mod) if params.get('replay', True) else None

        # ---- critical section: from here the container is frozen ---------------------------
        src.record(_phases.FROZEN, timeouts['dump'])
        frozen_at = time.time()
        src.dumped = _bounded(timeouts['dump'], params['images_dir'], dump_fn, dump_params)
        dumped = src.dumped
        t_dumped = time.time()
        src.record(_phases.DUMPED, timeouts['transfer'])
        _test_hook(src.name, 'dumped')
        root = dumped.get('root')
        jobs = [_images_job(lazy, relay, rsync, params['images_dir'], dest_images)]
        if params.get('sync_rootfs') and root:
            jobs.append(_rootfs_job(rootfs, rsync, root, params.get('rootfs_dest') or root))
        sent, sent_root = (run_parallel(jobs) + [None])[:2]
        t_synced = time.time()
        src.record(_phases.SENT, timeouts['restore'])
        if not relay.send(SYNCED):
            raise HaulError('sync', 'lost the SSH session to the destination %s' % params['dest_host'])
        st = relay.expect((RESTORED,), timeouts['restore'], 'restore')
        if st['state'] != RESTORED:
            raise HaulError(st.get('step') or 'restore', 'on %s: %s' % (params['dest_host'], st.get('msg') or st['state']),
                            log_tail=st.get('log_tail'), log_path=st.get('log_path'))
        t_restored = time.time()
        _test_hook(src.name, 'restored')
        # ---- the commit: decided here, recorded durably BEFORE it is sent ----------------------
        # From now on a signal no longer interrupts (it would otherwise come between the record
        # and the send, and a rollback would then ABORT after a COMMIT): the handoff goes on.
        src.defer_signals()
        src.record(_phases.COMMITTED, timeouts['commit'])
        _test_hook(src.name, 'commit')
        if not relay.send(COMMIT):
            raise HaulError('commit', 'lost the SSH session to the destination %s while sending the commit'
                            % params['dest_host'])
        st = relay.expect((RUNNING,), timeouts['commit'], 'confirm')
        if st['state'] != RUNNING:
            raise HaulError('confirm', 'the destination %s did not resume the container: %s'
                            % (params['dest_host'], st.get('msg') or st['state']), log_tail=st.get('log_tail'))
        t_running = time.time()
        src.record(_phases.RESUMED)
        # ---- end of the critical section: the container runs on the destination ---------------
        replayed = src.catcher.release() if src.catcher else 0
        restore_stats = st.get('stats')
        if lazy:
            # post-copy: its memory is still moving; the destination says when every page is there
            # (no fixed total: the destination judges the progress and beats while pages move)
            st = postcopy_mod.follow_transfer(relay.expect, COMPLETE, RUNNING, params['timeout'])
            if st['state'] != COMPLETE:
                raise HaulError('transfer', st.get('msg') or st['state'], log_tail=st.get('log_tail'),
                                lost=st.get('lost'), progress=st.get('progress'))
        t_complete = time.time()
        # the destination counted the pages its lazy-pages daemon moved
        pages_bytes = int(st.get('pages') or 0) * os.sysconf('SC_PAGE_SIZE') if lazy else 0
    except (HaulError, Interrupted, KeyboardInterrupt, Exception) as e:  # pylint: disable=broad-except
        src.defer_signals()   # a second signal does not interrupt the rollback
        err = e if isinstance(e, HaulError) else HaulError(
            'interrupted' if isinstance(e, (Interrupted, KeyboardInterrupt)) else 'handoff', str(e) or repr(e))
        _test_hook(src.name, 'rollback')
        # a post-copy transfer that failed (not merely a handoff interrupted while pages flow)
        broken = err.step == 'transfer' or (src.relay.last or {}).get('state') == LOST
        plan = _phases.rollback_plan(src.phase, strategy, transfer_broken=broken)
        state = src.roll_back(plan)
        err.details['source_state'] = state
        err.details['phase'] = src.phase
        err.details['rollback'] = plan
        if state == 'lost':
            err.step = 'transfer'
            err.cause = ('the container %s is LOST: it resumed on %s but its memory did not finish moving (%s); '
                         'the source copy is killed, never resumed' % (params.get('name'), params['dest_host'], err.cause))
        elif _phases.REPORT_IN_DOUBT in plan:
            err.cause += ('; the source copy of %s stays FROZEN because the destination may already run it (phase %s '
                          'recorded): run the play again to finish (it never resumes both)'
                          % (params.get('name'), src.phase))
        elif _phases.FINISH_TRANSFER in plan:
            err.cause += ('; %s runs on %s and its memory keeps moving from the page server here, which ends '
                          'when every page has moved' % (params.get('name'), params['dest_host']))
        elif src.not_thawed:
            err.cause += '; the source copy of %s stays FROZEN: %s' % (params.get('name'), src.not_thawed)
        elif state == 'running' and src.phase != _phases.PREPARING:
            err.cause += '; rolled back: %s runs on the source again' % (params.get('name') or 'the container')
        err.details['frozen_ms'] = ms(frozen_at, t_running or time.time()) if frozen_at else 0
        if src.catcher:
            src.catcher.close()
        src.stop_watchdog()
        relay.close()
        cm.close(target, run_command)
        src.finish_lease(True if state in ('killed', 'lost') else (False if state == 'running' else None))
        raise err
    src.stop_watchdog()
    relay.close()
    cm.close(target, run_command)

    # Success: now, and only now, the source copy goes.
    cleanup = _finalize_source(params, dumped, cgroup_mod, images_mod, postcopy_mod)
    src.finish_lease(True)
    if src.signals:
        result['warnings'] = ['signal %s came after the commit: the handoff finished the move' % src.signals[0]]
    result.update(
        changed=True,
        name=dumped.get('name'),
        pid=st.get('pid'),
        source_pid=dumped.get('pid'),
        root=dumped.get('root'),
        frozen_ms=ms(frozen_at, t_running),
        timings_ms={
            'prepare': ms(t_begin, t_connected),
            'precopy': ms(t_connected, t_precopied),
            'dump': ms(frozen_at, t_dumped),
            'sync': ms(t_dumped, t_synced),
            'restore': ms(t_synced, t_restored),
            'resume': ms(t_restored, t_running),
            'frozen': ms(frozen_at, t_running),
            'pages': ms(t_running, t_complete) if lazy else 0,
            'total': ms(t_begin, time.time()),
        },
        strategy=strategy,
        precopy=_precopy_summary(precopied),
        security=dumped.get('security') or 'ssh',
        bytes_images=dumped.get('bytes'),
        bytes_sent=((sent.get('bytes_sent') or 0) + ((sent_root or {}).get('bytes_sent') or 0) + pages_bytes
                    + ((precopied or {}).get('bytes_sent') or 0)),
        bytes_pages=pages_bytes,
        dump_stats=dumped.get('stats'),
        restore_stats=restore_stats,
        source_cleanup=cleanup,
        # what moved besides memory: its TCP/UDP sockets (established ones carried), its veths
        sockets=dumped.get('sockets'),
        tcp_connections=(dumped.get('sockets') or {}).get('tcp_established', 0),
        tcp_replayed=replayed,
        network=dumped.get('network'),
    )
    return result


def _bounded(timeout, images_dir, fn, *args, **kwargs):
    """``fn(*args)`` (a dump or a restore), with the CRIU working in ``images_dir`` killed when
    it has not finished within ``timeout`` seconds: CRIU's RPC then fails at once instead of
    waiting for a hung CRIU forever, and the rollback follows. (Not a socket timeout: pycriu's
    socket pair is shared with CRIU, which must keep reading it blocking.)"""
    step = kwargs.get('step', 'dump')
    fired = []
    timer = threading.Timer(timeout, lambda: fired.append(_watchdog.kill_criu(images_dir)))
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


def _precopy_summary(precopied):
    """The pre-copy part of a handoff's result: each round's pages and transfer, and why the rounds stopped."""
    if not precopied:
        return None
    keep = ('round', 'pages_written', 'pages_skipped_parent', 'bytes', 'bytes_sent', 'sync_ms', 'duration',
            'transfer_bytes_per_s', 'predicted_freeze_ms')
    return {'rounds': [dict((k, r.get(k)) for k in keep) for r in precopied['rounds']],
            'stop_rule': precopied['stop_rule'], 'stop_reason': precopied['stop_reason'],
            'predicted_freeze_ms': precopied['predicted_freeze_ms'], 'bytes_sent': precopied.get('bytes_sent')}


def _rollback(params, dumped, cgroup_mod):
    """Thaw the source; return its state afterwards ('running' or why not). Only through
    :meth:`_Source._thaw`, which first checks that this migration froze it (its lease)."""
    cg_path = (dumped or {}).get('cgroup') or params.get('cgroup')
    try:
        if cg_path:
            cg = cgroup_mod.Cgroup(cg_path)
        elif params.get('pid'):
            cg = cgroup_mod.Cgroup.from_pid(params['pid'])
        else:
            return 'unknown'
        pids = cg.pids()
        # its clients reach it again: host ends up, CRIU's network lock gone (even if CRIU died),
        # its connections out of the repair mode that a dump leaving it stopped keeps them in -
        # before it runs: a task reading a socket still in repair mode would drop the connection
        # (best effort: the thaw comes first in importance; the role's rollback reopens it again
        # with cgroup_thaw unlock_network, which fails loudly if it still cannot)
        try:
            _network.reopen((dumped or {}).get('pid') or (pids[0] if pids else None), pids=pids)
        except HaulError:
            pass
        cg.thaw(timeout=params.get('freeze_timeout') or 10)
        if dumped:
            cgroup_mod.sigcont_tree(cg.pids())
        return 'running'
    except HaulError as e:
        return 'unknown: %s' % e.msg


def _finalize_source(params, dumped, cgroup_mod, images_mod, postcopy_mod=None):
    done = {'killed': False, 'images_removed': False}
    if params.get('lazy') and postcopy_mod is not None:
        postcopy_mod.stop_lazy_dump(params['images_dir'])  # ends a page server that still runs, if any
    try:
        cg = cgroup_mod.Cgroup(dumped['cgroup'])
        cg.kill()
        done['killed'] = True
        cg.remove()
    except HaulError as e:
        done['error'] = e.msg
    if not params.get('keep_images'):
        images_mod.remove(params['images_dir'])
        if postcopy_mod is not None:
            images_mod.remove(postcopy_mod.state_dir(params['images_dir']))
        if params.get('precopy'):
            images_mod.remove(images_mod.precopy_dir(params['images_dir']))
        done['images_removed'] = True
    return done


def receive_container(params, prepare_fn, restore_fn, cgroup_mod, postcopy_mod=None, criu_path=None,
                      lease_dir=None):
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
        daemon = postcopy_mod.lazy_pages_spawn(
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
        res = _bounded(ho.get('restore_timeout') or rx.timeout, params['images_dir'], restore_fn, rparams,
                       step='restore')
    except HaulError as e:
        if lazy:
            postcopy_mod.stop_lazy_pages(params['images_dir'])
        rx.decide(ABORT)
        rx.status(FAILED, step=e.step, msg=e.msg, log_path=e.log,
                  log_tail=e.result().get('log_tail'))
        lease.finish()
        raise
    pid = res.get('pid')
    cg = cgroup_mod.Cgroup(res['cgroup'])
    why = lease.record(_phases.RESTORED)
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
    if cmd == COMMIT:
        # on the network (bridge, link up), resumed, announced (gratuitous ARP): docs/networking.md
        try:
            res['announced'] = _network.go_live(res.get('network'), lambda: cgroup_mod.sigcont_tree(cg.pids()), pid)
        except HaulError as e:
            res['warnings'] = ['%s: the container runs here, but is not reachable until that is fixed' % e.msg]
        rx.status(RUNNING, final=not lazy, pid=pid, stats=res.get('stats'))
        res['state'] = RUNNING
        res['handoff'] = 'committed'
        if lease.record(_phases.RESUMED):
            res.setdefault('warnings', []).append('the lease of %s here could not record RESUMED' % params['name'])
        if lazy:
            try:
                # timeout: the progress timeout (no page moved), no fixed total; beats to the source
                done = postcopy_mod.wait_transfer(params['images_dir'], 'lazy-pages', rx.timeout, on_progress=lambda p:
                                                  rx.status(RUNNING, pid=pid, progress=p))
            except HaulError as e:
                lost = postcopy_mod.abandon_lost(params['images_dir'], cg)  # its copy here runs on missing memory
                rx.status(LOST, final=True, msg=e.msg, lost=lost, progress=e.details.get('progress'))
                raise HaulError('transfer', 'the container %s is LOST: %s' % (params.get('name'), e.cause), log=e.log,
                                lost=lost, progress=e.details.get('progress'))
            pages = postcopy_mod.transferred_pages(os.path.join(params['images_dir'], postcopy_mod.LAZY_PAGES_LOG))
            rx.status(COMPLETE, final=True, pid=pid, pages=pages)
            res['transfer'] = done
            res['pages_moved'] = pages
        lease.finish()
        return res
    rx.decide(ABORT)
    why = why or ('the source aborted' if cmd == ABORT else 'no commit from the source within %ds (a later one is '
                  'refused)' % (ho.get('commit_timeout') or rx.timeout))
    try:
        cg.kill()
        cg.remove()
    except HaulError:
        pass
    if lazy:
        postcopy_mod.stop_lazy_pages(params['images_dir'])
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
        owner = {'host': os.uname()[1], 'pid': os.getpid(), 'user': _user(), 'started': time.time(), 'by': 'receiver'}
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
    cgroup_path = '/' + (params.get('cgroup') or '').strip('/')
    if cgroup_path == '/':
        raise HaulError('prepare', 'handoff needs the cgroup of the container')
    _cg, pids, init = criu_mod._running_container(cgroup_path, cgroup_mod, step='prepare')  # pylint: disable=protected-access
    if pids:
        raise HaulError('prepare', 'a container %s already runs here (cgroup %s, %s): refusing to restore a '
                        'second copy' % (name, cgroup_path, 'init pid %d' % init if init else '%d processes' % len(pids)))
    criu_mod.restore_root(params, name, step='prepare')
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
