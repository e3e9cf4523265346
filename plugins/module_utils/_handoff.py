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

The rollback rule: until the source has sent ``commit``, any failure (dump, sync, restore, a
timeout, the destination or the SSH session disappearing, the task being interrupted) thaws
the source and tells the destination to abort, which kills its stopped copy. The destination
never resumes without ``commit``, and kills its stopped copy if ``commit`` does not come in
time. After ``commit`` the source never resumes: if the confirmation is lost, the source stays
frozen and the failure says so; running the play again finds the container running on the
destination and finishes the job. At every moment there is one running copy, or one frozen.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from ansible_collections.haul.live.plugins.module_utils._common import HaulError

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
RELAY_SCRIPT = r'''
import json, os, select, sys, time
ctl, timeout = sys.argv[1], float(sys.argv[2])
deadline = time.time() + timeout
last, committed, buf = None, False, b''
def put(name):
    p = os.path.join(ctl, name)
    with open(p + '.tmp', 'w') as f:
        f.write('%f\n' % time.time())
    os.rename(p + '.tmp', p)
while True:
    try:
        with open(os.path.join(ctl, 'status.json')) as f:
            st = f.read()
    except (IOError, OSError):
        st = None
    if st and st != last:
        last = st
        sys.stdout.write(st.strip() + '\n')
        sys.stdout.flush()
        if json.loads(st).get('final'):
            break
    if select.select([0], [], [], 0.002)[0]:
        data = os.read(0, 4096)
        if not data:
            # nobody listens any more; without a commit, the destination must not resume
            if not committed and os.path.isdir(ctl):
                put('abort')
            break
        buf += data
        while b'\n' in buf:
            line, buf = buf.split(b'\n', 1)
            cmd = line.decode().strip()
            if cmd in ('synced', 'commit', 'abort'):
                committed = committed or cmd == 'commit'
                put(cmd)
    if time.time() > deadline:
        sys.stdout.write(json.dumps({'state': 'failed', 'final': True,
                                     'msg': 'relay: no final state within %ds' % timeout}) + '\n')
        break
'''


def _write_json(path, data):
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(data, f, sort_keys=True)
    os.rename(tmp, path)


class Receiver(object):
    """The destination's side: a control directory with status.json and the source's commands."""

    def __init__(self, images_dir, handoff_id, timeout):
        self.dir = control_dir(images_dir, handoff_id)
        self.timeout = timeout

    def open(self):
        if os.path.isdir(self.dir):
            shutil.rmtree(self.dir)
        parent = os.path.dirname(self.dir)
        if not os.path.isdir(parent):
            os.makedirs(parent, 0o700)
        os.chmod(parent, 0o700)
        os.mkdir(self.dir, 0o700)

    def status(self, state, final=False, **details):
        data = dict(details)
        data.update(state=state, final=bool(final or state in (FAILED, ABORTED)), time=time.time())
        _write_json(os.path.join(self.dir, STATUS), data)

    def wait(self, commands, timeout=None):
        """Wait until one of ``commands`` arrives; return it, or None after the timeout."""
        deadline = time.time() + (timeout or self.timeout)
        while True:
            for cmd in (ABORT,) + tuple(commands):
                if os.path.exists(os.path.join(self.dir, cmd)):
                    return cmd
            if time.time() > deadline:
                return None
            time.sleep(POLL)

    def close(self):
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
        run_command(target.ssh_argv() + ['-O', 'exit', target.login])
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


def send_container(params, run_command, dump_fn, cgroup_mod, images_mod, transport_mod, postcopy_mod=None):
    """The source's side of the critical section (the ``handoff`` module's logic).

    ``dump_fn(params)`` dumps and holds the container frozen (``_criu.dump_container``, or for
    post-copy, ``params['lazy']`` set, ``_postcopy.dump_lazy``: only the state moves inside the
    freeze, the memory follows from this host's page server after the container resumed).
    Returns the result dict; raises HaulError after rolling back.
    """
    lazy = bool(params.get('lazy'))
    t_begin = time.time()
    dest_images = params.get('dest_images_dir') or params['images_dir']
    ctl = control_dir(dest_images, params['handoff_id'])
    cm = ControlMaster()
    target = transport_mod.SshTarget(
        params['dest_host'], user=params.get('dest_user') or 'root', port=params.get('ssh_port'),
        key=params.get('ssh_key'), options=list(params.get('ssh_options') or []) + cm.options(),
        connect_timeout=params.get('connect_timeout') or 10)
    relay = Relay(target, ctl, params['timeout'] * 4)
    result = {'changed': False, 'dest_host': params['dest_host'], 'images_dir': params['images_dir'],
              'dest_images_dir': dest_images}
    committed = False
    resumed = False
    frozen_at = t_running = None
    dumped = None
    guard_signals()
    try:
        relay.start()
        st = relay.expect((WAITING,), params.get('connect_timeout', 10) + params['timeout'], 'connect')
        if st['state'] != WAITING:
            raise HaulError(st.get('step') or 'receive', 'the destination %s is not ready: %s'
                            % (params['dest_host'], st.get('msg') or st['state']),
                            log_tail=st.get('log_tail'))
        t_connected = time.time()

        # ---- critical section: from here the container is frozen ---------------------------
        frozen_at = time.time()
        dump_params = dict(params)
        dump_params.update(hold='frozen', checksum='none', force=False)
        dumped = dump_fn(dump_params)
        t_dumped = time.time()
        root = dumped.get('root')
        rsync = transport_mod.RsyncRunner(run_command, target, bwlimit_kib=params.get('bwlimit_kib'),
                                          timeout=params['timeout'])
        jobs = [(rsync.sync, (params['images_dir'], dest_images), dict(delete=True, mkdir_mode='0700', fresh=True))]
        if params.get('sync_rootfs') and root:
            jobs.append((rsync.sync, (root, params.get('rootfs_dest') or root), dict(delete=True)))
        sent, sent_root = (run_parallel(jobs) + [None])[:2]
        t_synced = time.time()
        if not relay.send(SYNCED):
            raise HaulError('sync', 'lost the SSH session to the destination %s' % params['dest_host'])
        st = relay.expect((RESTORED,), params['timeout'], 'restore')
        if st['state'] != RESTORED:
            raise HaulError(st.get('step') or 'restore', 'on %s: %s' % (params['dest_host'], st.get('msg') or st['state']),
                            log_tail=st.get('log_tail'), log_path=st.get('log_path'))
        t_restored = time.time()
        committed = relay.send(COMMIT)
        if not committed:
            raise HaulError('commit', 'lost the SSH session to the destination %s before commit' % params['dest_host'])
        st = relay.expect((RUNNING,), params['timeout'], 'confirm')
        if st['state'] != RUNNING:
            raise HaulError('confirm', 'the destination %s did not resume the container: %s'
                            % (params['dest_host'], st.get('msg') or st['state']), log_tail=st.get('log_tail'))
        t_running = time.time()
        resumed = True
        # ---- end of the critical section: the container runs on the destination ---------------
        restore_stats = st.get('stats')
        if lazy:
            # post-copy: its memory is still moving; the destination says when every page is there
            st = relay.expect((COMPLETE,), params['timeout'] * 2, 'transfer')
            if st['state'] != COMPLETE:
                raise HaulError('transfer', st.get('msg') or st['state'], log_tail=st.get('log_tail'))
        t_complete = time.time()
        # the destination counted the pages its lazy-pages daemon moved
        pages_bytes = int(st.get('pages') or 0) * os.sysconf('SC_PAGE_SIZE') if lazy else 0
    except (HaulError, Interrupted, KeyboardInterrupt, Exception) as e:  # pylint: disable=broad-except
        err = e if isinstance(e, HaulError) else HaulError(
            'interrupted' if isinstance(e, (Interrupted, KeyboardInterrupt)) else 'handoff', str(e) or repr(e))
        if resumed:
            # post-copy after the destination resumed: the source never resumes (ROLLBACK RULE)
            err.step = 'transfer'
            err.cause = ('the container %s is LOST: it resumed on %s but its memory did not finish moving (%s); '
                         'the source copy is killed, never resumed' % (params.get('name'), params['dest_host'], err.cause))
            err.details['source_state'] = 'lost'
            _finalize_source(params, dumped, cgroup_mod, images_mod, postcopy_mod)
        elif committed:
            err.cause += ('; the source copy of %s stays FROZEN because the destination may already run it: '
                          'run the play again to finish (it never resumes both)' % params.get('name'))
            err.details['source_state'] = 'frozen'
        else:
            relay.send(ABORT)
            if lazy and postcopy_mod is not None:
                postcopy_mod.stop_lazy_dump(params['images_dir'])
            err.details['source_state'] = _rollback(params, dumped, cgroup_mod)
            if err.details['source_state'] == 'running':
                err.cause += '; rolled back: %s runs on the source again' % (params.get('name') or 'the container')
        err.details['frozen_ms'] = ms(frozen_at, t_running if resumed else time.time()) if frozen_at else 0
        relay.close()
        cm.close(target, run_command)
        raise err
    relay.close()
    cm.close(target, run_command)

    # Success: now, and only now, the source copy goes.
    cleanup = _finalize_source(params, dumped, cgroup_mod, images_mod, postcopy_mod)
    result.update(
        changed=True,
        name=dumped.get('name'),
        pid=st.get('pid'),
        source_pid=dumped.get('pid'),
        root=dumped.get('root'),
        frozen_ms=ms(frozen_at, t_running),
        timings_ms={
            'prepare': ms(t_begin, t_connected),
            'dump': ms(frozen_at, t_dumped),
            'sync': ms(t_dumped, t_synced),
            'restore': ms(t_synced, t_restored),
            'resume': ms(t_restored, t_running),
            'frozen': ms(frozen_at, t_running),
            'pages': ms(t_running, t_complete) if lazy else 0,
            'total': ms(t_begin, time.time()),
        },
        strategy='postcopy' if lazy else 'stopcopy',
        security=dumped.get('security') or 'ssh',
        bytes_images=dumped.get('bytes'),
        bytes_sent=(sent.get('bytes_sent') or 0) + ((sent_root or {}).get('bytes_sent') or 0) + pages_bytes,
        bytes_pages=pages_bytes,
        dump_stats=dumped.get('stats'),
        restore_stats=restore_stats,
        source_cleanup=cleanup,
    )
    return result


def _rollback(params, dumped, cgroup_mod):
    """Thaw the source; return its state afterwards ('running' or why not)."""
    cg_path = (dumped or {}).get('cgroup') or params.get('cgroup')
    try:
        if cg_path:
            cg = cgroup_mod.Cgroup(cg_path)
        elif params.get('pid'):
            cg = cgroup_mod.Cgroup.from_pid(params['pid'])
        else:
            return 'unknown'
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
        done['images_removed'] = True
    return done


def receive_container(params, prepare_fn, restore_fn, cgroup_mod, postcopy_mod=None, criu_path=None):
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
    try:
        prepare_fn(params)
    except HaulError as e:
        rx.status(FAILED, step=e.step, msg=e.msg)
        raise
    rx.status(WAITING)
    cmd = rx.wait((SYNCED,))
    if cmd != SYNCED:
        why = 'the source aborted' if cmd == ABORT else 'no images within %ds' % rx.timeout
        rx.status(ABORTED, msg=why)
        raise HaulError('handoff', '%s before the restore; nothing was restored here' % why)
    rparams = dict(params)
    rparams.update(hold='stopped')
    try:
        if lazy:
            postcopy_mod.start_lazy_pages(
                criu_path, params['images_dir'], lazy['address'], lazy['port'],
                ready_timeout=lazy.get('ready_timeout') or 30, tls=lazy.get('tls', True),
                tls_cacert=lazy.get('tls_cacert'), tls_cert=lazy.get('tls_cert'), tls_key=lazy.get('tls_key'),
                tls_no_cn_verify=bool(lazy.get('tls_no_cn_verify')))
        res = restore_fn(rparams)
    except HaulError as e:
        if lazy:
            postcopy_mod.stop_lazy_pages(params['images_dir'])
        rx.status(FAILED, step=e.step, msg=e.msg, log_path=e.log,
                  log_tail=e.result().get('log_tail'))
        raise
    pid = res.get('pid')
    rx.status(RESTORED, pid=pid, stats=res.get('stats'))
    cmd = rx.wait((COMMIT,), ho.get('commit_timeout') or rx.timeout)
    cg = cgroup_mod.Cgroup(res['cgroup'])
    if cmd == COMMIT:
        cgroup_mod.sigcont_tree(cg.pids())
        rx.status(RUNNING, final=not lazy, pid=pid, stats=res.get('stats'))
        res['state'] = RUNNING
        res['handoff'] = 'committed'
        if lazy:
            try:
                done = postcopy_mod.wait_transfer(params['images_dir'], 'lazy-pages', rx.timeout * 2)
            except HaulError as e:
                rx.status(LOST, final=True, msg=e.msg)
                raise HaulError('transfer', 'the container %s is LOST: %s' % (params.get('name'), e.cause), log=e.log)
            pages = postcopy_mod.transferred_pages(os.path.join(params['images_dir'], postcopy_mod.LAZY_PAGES_LOG))
            rx.status(COMPLETE, final=True, pid=pid, pages=pages)
            res['transfer'] = done
            res['pages_moved'] = pages
        return res
    why = 'the source aborted' if cmd == ABORT else 'no commit from the source within %ds' % (
        ho.get('commit_timeout') or rx.timeout)
    try:
        cg.kill()
        cg.remove()
    except HaulError:
        pass
    if lazy:
        postcopy_mod.stop_lazy_pages(params['images_dir'])
    rx.status(ABORTED, msg=why)
    raise HaulError('handoff', '%s after the restore; the stopped copy here was killed' % why)


def prepare_receive(params, criu_mod, cgroup_mod, images_mod):
    """What the destination checks before it says ``waiting`` (nothing is frozen yet then)."""
    session = criu_mod.CriuSession(params['images_dir'], criu_path=params.get('criu_path'))
    session.pycriu  # pylint: disable=pointless-statement
    version = session.require_version()
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
    root = params.get('root') or (criu_mod.root_candidates(name) or [None])[0]
    if not root or not os.path.isdir(root):
        raise HaulError('prepare', 'root directory %s of %s does not exist here: sync it first' % (root, name))
    need_bytes = params['handoff'].get('expected_bytes') or 0
    images_mod.ensure_dir(params['images_dir'])
    images_mod.clear_images(params['images_dir'], step='prepare')
    free = images_mod.free_bytes(params['images_dir'])
    if need_bytes and free < need_bytes:
        raise HaulError('prepare', 'the filesystem of %s has %d MiB free, the images of %s need about %d MiB'
                        % (params['images_dir'], free // 1048576, name, -(-need_bytes // 1048576)))
