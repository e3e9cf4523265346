# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for plugins/module_utils/_postcopy.py.

The lazy-pages daemon is replaced by a small shell script that behaves like ``criu lazy-pages``
towards its status fd (a byte when ready, then it runs until told to stop, or it fails first).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import pytest

from ansible_collections.haul.live.plugins.module_utils import _postcopy
from ansible_collections.haul.live.plugins.module_utils._common import HaulError


# --------------------------------------------------------------------------- argv

def test_argv_plain():
    argv = _postcopy.lazy_pages_argv('/usr/sbin/criu', '/img', '198.18.0.11', 27100, 7, tls=False)
    assert argv[:2] == ['/usr/sbin/criu', 'lazy-pages']
    assert argv[argv.index('--address') + 1] == '198.18.0.11'
    assert argv[argv.index('--port') + 1] == '27100'
    assert argv[argv.index('--status-fd') + 1] == '7'
    assert argv[argv.index('--images-dir') + 1] == '/img'
    assert '--page-server' in argv
    assert '--tls' not in argv


def test_argv_tls():
    argv = _postcopy.lazy_pages_argv('criu', '/img', 'h', 1, 3, tls=True, tls_cacert='/ca.pem', tls_cert='/c.pem',
                                     tls_key='/k.pem', tls_no_cn_verify=True)
    assert '--tls' in argv
    assert argv[argv.index('--tls-cacert') + 1] == '/ca.pem'
    assert argv[argv.index('--tls-cert') + 1] == '/c.pem'
    assert argv[argv.index('--tls-key') + 1] == '/k.pem'
    assert '--tls-no-cn-verify' in argv


def test_argv_tls_default_files_left_to_criu():
    argv = _postcopy.lazy_pages_argv('criu', '/img', 'h', 1, 3)
    assert '--tls' in argv and '--tls-cacert' not in argv


def test_argv_certs_without_tls_refused():
    with pytest.raises(HaulError) as e:
        _postcopy.lazy_pages_argv('criu', '/img', 'h', 1, 3, tls=False, tls_cacert='/ca.pem')
    assert e.value.step == 'options'


def test_security_said_plainly():
    assert _postcopy.security_of(True) == 'tls'
    assert _postcopy.security_of(False) == 'plaintext (tls: false)'


def test_tls_kwargs():
    assert _postcopy._tls_kwargs({'tls': False}) == {}
    kw = _postcopy._tls_kwargs({'tls': True, 'tls_cacert': '/ca'})
    assert kw['tls'] is True and kw['tls_cacert'] == '/ca'
    with pytest.raises(HaulError):
        _postcopy._tls_kwargs({'tls': False, 'tls_key': '/k'})


# --------------------------------------------------------------------------- status fds

def test_status_fd_ready():
    r, w = os.pipe()
    os.write(w, b'\0')
    try:
        assert _postcopy.wait_status_fd(r, 1) is True
    finally:
        os.close(r)
        os.close(w)


def test_status_fd_eof_is_not_ready():
    r, w = os.pipe()
    os.close(w)
    try:
        assert _postcopy.wait_status_fd(r, 1) is False
    finally:
        os.close(r)


def test_status_fd_timeout():
    r, w = os.pipe()
    start = time.time()
    try:
        with pytest.raises(HaulError) as e:
            _postcopy.wait_status_fd(r, 0.2, 'criu lazy-pages')
    finally:
        os.close(r)
        os.close(w)
    assert e.value.step == 'ready'
    assert 'criu lazy-pages not ready after 0.2s' in e.value.msg
    assert time.time() - start < 2


def test_read_report_line_in_pieces():
    r, w = os.pipe()
    os.write(w, b'{"ready": tr')
    os.write(w, b'ue, "pid": 5}\n')
    try:
        assert _postcopy.read_report(r, 1) == {'ready': True, 'pid': 5}
    finally:
        os.close(r)
        os.close(w)


def test_read_report_eof_and_timeout_and_garbage():
    r, w = os.pipe()
    os.close(w)
    with pytest.raises(HaulError, match='exited without a report'):
        _postcopy.read_report(r, 1)
    os.close(r)
    r, w = os.pipe()
    with pytest.raises(HaulError, match='not ready after'):
        _postcopy.read_report(r, 0.1)
    os.write(w, b'nonsense\n')
    with pytest.raises(HaulError, match='bad report'):
        _postcopy.read_report(r, 1)
    os.close(r)
    os.close(w)


# --------------------------------------------------------------------------- state, pids

def test_state_paths_outside_images(tmp_path):
    img = str(tmp_path / 'web1')
    assert _postcopy.state_dir(img + '/') == img + '.postcopy'
    assert _postcopy.state_path(img, 'dump') == img + '.postcopy/dump.json'


def test_state_roundtrip(tmp_path):
    p = str(tmp_path / 'x.postcopy' / 'dump.json')
    assert _postcopy.read_state(p) is None
    _postcopy.write_state(p, {'state': 'running', 'pid': 3})
    assert _postcopy.read_state(p) == {'state': 'running', 'pid': 3}
    with open(p, 'w') as f:
        f.write('[1]')
    assert _postcopy.read_state(p) is None


def test_wait_pid_exit():
    p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(0.3)'])
    start = time.time()
    try:
        with pytest.raises(HaulError) as e:
            _postcopy.wait_pid_exit(p.pid, 0.05)
        assert e.value.step == 'transfer'
        p.wait()  # reaped: the pid is gone
        _postcopy.wait_pid_exit(p.pid, 5)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert time.time() - start < 3
    assert not _postcopy.pid_alive(p.pid)
    assert _postcopy.pid_alive(os.getpid())


# --------------------------------------------------------------------------- supervisor

def test_spawn_supervised_reports_and_records(tmp_path):
    sfile = str(tmp_path / 'job.postcopy' / 'job.json')

    def job(report):
        report({'ready': True, 'value': 42})
        return {'rc': 0, 'done': True}

    rep = _postcopy.spawn_supervised(job, sfile, 10)
    assert rep['ready'] is True and rep['value'] == 42
    assert rep['supervisor_pid'] > 0
    _postcopy.wait_pid_exit(rep['supervisor_pid'], 10)
    st = _postcopy.read_state(sfile)
    assert st['state'] == 'finished' and st['rc'] == 0 and st['done'] is True
    assert st['ended'] >= st['started']


def test_spawn_supervised_job_error(tmp_path):
    sfile = str(tmp_path / 'job.json')

    def job(report):
        raise HaulError('dump', 'boom')

    rep = _postcopy.spawn_supervised(job, sfile, 10)
    assert rep['ready'] is False and rep['error'] == 'dump: boom'
    _postcopy.wait_pid_exit(rep['supervisor_pid'], 10)
    assert _postcopy.read_state(sfile)['state'] == 'failed'


# --------------------------------------------------------------------------- the daemon, with a fake criu

FAKE_CRIU = r'''#!/bin/sh
# fake "criu lazy-pages": behaviour chosen by $FAKE_MODE in the images dir
dir=""; fd=""; log=""
while [ $# -gt 0 ]; do
  case "$1" in
    --images-dir) dir=$2; shift;;
    --status-fd) fd=$2; shift;;
    --log-file) log=$2; shift;;
  esac
  shift
done
mode=$(cat "$dir/FAKE_MODE")
case "$mode" in
  ready) printf '\0' >&$fd; trap 'kill $!; exit 0' TERM; sleep 30 & wait; exit 0;;
  done) printf '\0' >&$fd; read x < "$dir/go"; exit 0;;
  broken) printf '\0' >&$fd; read x < "$dir/go"; echo "(00.1) Error (criu/uffd.c:1): uffd: connection lost" >> "$dir/$log"; exit 1;;
  fail) echo "(00.1) Error (criu/util.c:1): Can't connect to server: Connection refused" >> "$dir/$log"; exit 1;;
  silent) exec sleep 30;;
esac
'''


@pytest.fixture
def fake(tmp_path):
    criu = tmp_path / 'criu'
    criu.write_text(FAKE_CRIU)
    criu.chmod(criu.stat().st_mode | stat.S_IXUSR)
    img = tmp_path / 'images'
    img.mkdir()
    os.mkfifo(str(img / 'go'))

    def mode(m):
        (img / 'FAKE_MODE').write_text(m)
    yield str(criu), str(img), mode
    for job in ('lazy-pages',):
        st = _postcopy.read_state(_postcopy.state_path(str(img), job))
        if st and st.get('pid') and _postcopy.pid_alive(st['pid']):
            _postcopy._kill_tree(st.get('supervisor_pid') or st['pid'])


def test_daemon_ready_found_stopped(fake):
    criu, img, mode = fake
    mode('ready')
    rep = _postcopy.start_lazy_pages(criu, img, '198.18.0.11', 27100, ready_timeout=10, tls=False)
    assert rep['ready'] is True and rep['pid'] > 0 and rep['ready_ms'] >= 0
    assert rep['log_path'] == os.path.join(img, 'lazy-pages.log')
    found = _postcopy.find_daemon(img)
    assert found['pid'] == rep['pid'] and found['tls'] is False
    assert _postcopy.stop_lazy_pages(img, timeout=5) == rep['pid']
    assert not _postcopy.pid_alive(rep['pid'])
    assert _postcopy.find_daemon(img) is None
    assert _postcopy.stop_lazy_pages(img) is None


def test_daemon_fails_before_ready(fake):
    criu, img, mode = fake
    mode('fail')
    with pytest.raises(HaulError) as e:
        _postcopy.start_lazy_pages(criu, img, '198.18.0.99', 27100, ready_timeout=10, tls=False)
    assert e.value.step == 'lazy-pages'
    assert '198.18.0.99:27100' in e.value.msg
    assert 'Connection refused' in e.value.msg
    assert _postcopy.find_daemon(img) is None


def test_daemon_not_ready_in_time_is_killed(fake):
    criu, img, mode = fake
    mode('silent')
    with pytest.raises(HaulError) as e:
        _postcopy.start_lazy_pages(criu, img, 'h', 1, ready_timeout=0.5, tls=False)
    assert 'not ready after 0.5s' in e.value.msg
    st = None
    for dummy in range(100):
        st = _postcopy.read_state(_postcopy.state_path(img, 'lazy-pages'))
        if st and st.get('state') == 'failed':
            break
        time.sleep(0.05)
    assert st['state'] == 'failed'
    assert not _postcopy.pid_alive(st['pid'])


def test_wait_transfer_finished(fake):
    criu, img, mode = fake
    mode('done')
    _postcopy.start_lazy_pages(criu, img, 'h', 1, ready_timeout=10, tls=False)
    with pytest.raises(HaulError) as e:
        _postcopy.wait_transfer(img, 'lazy-pages', 0.2)
    assert e.value.step == 'transfer' and 'lost' in e.value.msg
    with open(os.path.join(img, 'go'), 'w') as f:
        f.write('x\n')
    st = _postcopy.wait_transfer(img, 'lazy-pages', 10)
    assert st['rc'] == 0 and st['state'] == 'finished' and st['waited_ms'] >= 0
    # a second wait reads the recorded end
    assert _postcopy.wait_transfer(img, 'lazy-pages', 1)['rc'] == 0


def test_wait_transfer_broken_says_lost(fake):
    criu, img, mode = fake
    mode('broken')
    _postcopy.start_lazy_pages(criu, img, 'h', 1, ready_timeout=10, tls=False)
    with open(os.path.join(img, 'go'), 'w') as f:
        f.write('x\n')
    with pytest.raises(HaulError) as e:
        _postcopy.wait_transfer(img, 'lazy-pages', 10)
    assert e.value.step == 'transfer'
    assert 'the container is lost' in e.value.msg
    assert 'connection lost' in e.value.msg


def test_wait_transfer_nothing_started(tmp_path):
    with pytest.raises(HaulError, match='no dump job'):
        _postcopy.wait_transfer(str(tmp_path / 'none'), 'dump', 1)


def test_wait_transfer_killed_job(tmp_path):
    img = str(tmp_path / 'img')
    _postcopy.write_state(_postcopy.state_path(img, 'dump'), {'state': 'running', 'supervisor_pid': 999999999})
    with pytest.raises(HaulError, match='without a final state'):
        _postcopy.wait_transfer(img, 'dump', 1)


def test_restored_at(tmp_path):
    assert _postcopy.restored_at(str(tmp_path)) is None
    with open(str(tmp_path / 'restore.json'), 'w') as f:
        json.dump({'time': 12.5}, f)
    assert _postcopy.restored_at(str(tmp_path)) == 12.5


def test_lazy_dump_start_needs_page_server():
    class Opts:
        lazy_pages = True
        page_server = None
    with pytest.raises(HaulError) as e:
        _postcopy.lazy_dump_start(None, Opts(), '/nonexistent')
    assert e.value.step == 'options'


def test_daemon_error(tmp_path):
    log = tmp_path / 'lazy-pages.log'
    assert _postcopy.daemon_error(str(log)) is None
    log.write_text("(00.1) Connecting to server 198.18.0.99:27311\n(03.4) Can't connect to server 198.18.0.99:27311\n")
    assert _postcopy.daemon_error(str(log)) == "Can't connect to server 198.18.0.99:27311"
    log.write_text("(00.1) Error (criu/uffd.c:1): uffd: boom\n(03.4) Can't connect\n")
    assert _postcopy.daemon_error(str(log)) == 'Error (criu/uffd.c:1): uffd: boom'


def test_ipv4_hex():
    assert _postcopy._ipv4_hex('198.18.0.11', 27100) == '0B0012C6:69DC'
    assert _postcopy._ipv4_hex('fe80::1', 1) is None


def test_tcp_connected_fake_proc(tmp_path):
    proc = tmp_path / 'proc'
    fd = proc / '42' / 'fd'
    fd.mkdir(parents=True)
    os.symlink('socket:[777]', str(fd / '5'))
    os.symlink('/dev/null', str(fd / '0'))
    net = proc / '42' / 'net'
    net.mkdir()
    head = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n'
    row = '   0: 0C0012C6:A000 0B0012C6:69DC %s 00000000:00000000 00:00000000 00000000     0        0 %s 1\n'
    (net / 'tcp').write_text(head + row % ('01', '777'))
    assert _postcopy.tcp_connected(42, '198.18.0.11', 27100, proc=str(proc))
    assert not _postcopy.tcp_connected(42, '198.18.0.11', 27101, proc=str(proc))
    (net / 'tcp').write_text(head + row % ('02', '777'))
    assert not _postcopy.tcp_connected(42, '198.18.0.11', 27100, proc=str(proc))
    (net / 'tcp').write_text(head + row % ('01', '778'))
    assert not _postcopy.tcp_connected(42, '198.18.0.11', 27100, proc=str(proc))
    assert not _postcopy.tcp_connected(43, '198.18.0.11', 27100, proc=str(proc))


def test_transferred_pages_sums_the_last_count_of_each_task(tmp_path):
    log = tmp_path / 'lazy-pages.log'
    log.write_text('(00.1) uffd: 1-11: UFFD transferred pages: (10/8199)\n'
                   '(00.2) something else\n'
                   '(00.9) uffd: 1-11: UFFD transferred pages: (8199/8199)\n'
                   '(01.0) uffd: 2-12: UFFD transferred pages: (5/5)\n')
    assert _postcopy.transferred_pages(str(log)) == 8204
    assert _postcopy.transferred_pages(str(tmp_path / 'missing.log')) == 0


# --------------------------------------------------------------------------- gated supervisors (prepared before a freeze)

def test_lazy_pages_gated_starts_only_on_go(fake):
    criu, img, mode = fake
    mode('ready')
    daemon = _postcopy.lazy_pages_spawn(criu, img, 'h', 1, ready_timeout=10, tls=False, gated=True)
    time.sleep(0.2)
    assert _postcopy.find_daemon(img) is None  # nothing started before go
    assert not os.path.exists(os.path.join(img, 'lazy-pages.log'))
    rep = daemon.go()
    assert rep['ready'] is True and rep['pid'] > 0
    assert _postcopy.find_daemon(img)['pid'] == rep['pid']
    assert _postcopy.stop_lazy_pages(img, timeout=5) == rep['pid']


def test_lazy_pages_gated_cancel_starts_nothing(fake):
    criu, img, mode = fake
    mode('ready')
    daemon = _postcopy.lazy_pages_spawn(criu, img, 'h', 1, ready_timeout=10, tls=False, gated=True)
    sup = daemon.sup
    daemon.cancel()
    assert not _postcopy.pid_alive(sup)
    # called off before it started: it leaves no state behind
    assert not os.path.exists(_postcopy.state_dir(img))
    assert _postcopy.find_daemon(img) is None


class _FakeComm(object):
    def __init__(self, marker):
        self.marker = marker

    def connect(self, daemon):
        with open(self.marker + '.swrk', 'w') as f:
            f.write('started')
        return 'socket'


class _FakeClient(object):
    def __init__(self, marker):
        self._comm = _FakeComm(marker)
        self.sk = None


class _FakeSession(object):
    """What lazy_dump_spawn needs of a CriuSession: its dump asks _client() first (as _request does)."""

    pycriu = None

    def __init__(self, marker):
        self.marker = marker

    def _client(self):
        return _FakeClient(self.marker)

    def dump_lazy_start(self, options, ready_timeout=60):
        client = self._client()  # gated: blocks until go (or raises when called off)
        with open(self.marker, 'w') as f:
            f.write('dumped with %s' % client.sk)
        child = os.fork()
        if child == 0:  # pragma: no cover - the "CRIU" serving pages
            time.sleep(0.2)
            os._exit(0)
        return child, self.marker + '.log'


class _Opts(object):
    lazy_pages = True
    page_server = {'address': '198.18.0.11', 'port': 27100}
    tls = False


def test_lazy_dump_gated_waits_for_go(tmp_path):
    img = str(tmp_path / 'images')
    os.mkdir(img)
    marker = str(tmp_path / 'dumped')
    dump = _postcopy.lazy_dump_spawn(_FakeSession(marker), _Opts(), img, ready_timeout=10, gated=True)
    assert dump.armed(5) is True  # CRIU (here: the fake swrk) started, the dump waits
    assert os.path.exists(marker + '.swrk') and not os.path.exists(marker)
    assert _postcopy.find_lazy_dump(img)['state'] == 'prepared'
    rep = dump.go()
    assert rep['ready'] is True and rep['dump_pid'] > 0 and rep['ready_ms'] >= 0
    with open(marker) as f:
        assert f.read() == 'dumped with socket'  # the request went through the pre-started CRIU
    _postcopy.wait_pid_exit(rep['supervisor_pid'], 10)
    assert _postcopy.read_state(_postcopy.state_path(img, 'dump'))['state'] == 'finished'


def test_lazy_dump_gated_cancel_never_dumps(tmp_path):
    img = str(tmp_path / 'images')
    os.mkdir(img)
    marker = str(tmp_path / 'dumped')
    dump = _postcopy.lazy_dump_spawn(_FakeSession(marker), _Opts(), img, ready_timeout=10, gated=True)
    assert dump.armed(5) is True
    sup = dump.sup
    dump.cancel()
    assert not _postcopy.pid_alive(sup)
    assert not os.path.exists(marker)
    assert not os.path.exists(_postcopy.state_dir(img))  # nothing left behind
    assert _postcopy.find_lazy_dump(img) is None


def test_stop_lazy_dump_stops_a_prepared_one(tmp_path):
    img = str(tmp_path / 'images')
    os.mkdir(img)
    marker = str(tmp_path / 'dumped')
    dump = _postcopy.lazy_dump_spawn(_FakeSession(marker), _Opts(), img, ready_timeout=10, gated=True)
    dump.armed(5)
    # another process (lazy_pages state=absent) finds it through its state file
    assert _postcopy.stop_lazy_dump(img, timeout=5) == dump.sup
    assert not _postcopy.pid_alive(dump.sup)
    assert not os.path.exists(marker)
    dump.cancel()  # the owner's handle is harmless afterwards


class _Prepared(object):
    def __init__(self, params):
        self.params = dict(params)
        self.ran = self.cancelled = False

    def run(self):
        self.ran = True
        return {'prepared': True}

    def cancel(self):
        self.cancelled = True


def test_dump_lazy_uses_the_prepared_dump_of_the_same_params(tmp_path):
    params = {'images_dir': str(tmp_path / 'images'), 'lazy': {'address': 'a', 'port': 1}, 'cgroup': 'haul/x'}
    prepared = _Prepared(params)
    _postcopy._PREPARED[os.path.abspath(params['images_dir'])] = prepared
    assert _postcopy.dump_lazy(dict(params)) == {'prepared': True}
    assert prepared.ran and not prepared.cancelled
    assert not _postcopy._PREPARED


def test_stop_lazy_dump_cancels_what_this_process_prepared(tmp_path):
    img = str(tmp_path / 'images')
    prepared = _Prepared({'images_dir': img})
    _postcopy._PREPARED[os.path.abspath(img)] = prepared
    assert _postcopy.stop_lazy_dump(img) is None  # no supervisor ran: nothing else to stop
    assert prepared.cancelled and not prepared.ran
    assert not _postcopy._PREPARED


# --------------------------------------------------------------------------- the handoff relay: images without rsync, wake-ups

class _LocalTarget(object):
    host = 'local'

    def remote_argv(self, args):
        return list(args)


def _relay(ctl):
    from ansible_collections.haul.live.plugins.module_utils import _handoff
    relay = _handoff.Relay(_LocalTarget(), ctl, 20)
    relay.argv = [sys.executable, '-c', _handoff.RELAY_SCRIPT, ctl, '20']
    relay.start()
    return relay


def _images_src(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    for i in range(4):
        (src / ('pages-%d.img' % i)).write_bytes(os.urandom(i * 70000))
    (src / 'empty.img').write_bytes(b'')
    (src / 'core-1.img').write_bytes(b'core')
    os.chmod(str(src / 'core-1.img'), 0o640)
    os.utime(str(src / 'core-1.img'), (1000000000, 1000000000))
    os.symlink('../x.precopy/round-1', str(src / 'parent'))
    return src


def test_relay_receives_an_images_dir(tmp_path):
    from ansible_collections.haul.live.plugins.module_utils import _handoff
    src = _images_src(tmp_path)
    dest = tmp_path / 'img'
    (dest / 'stale' / 'sub').mkdir(parents=True)
    (dest / 'old.img').write_bytes(b'old')
    rx = _handoff.Receiver(str(dest), 'h1', 10)
    rx.open()
    relay = _relay(rx.dir)
    try:
        rx.status(_handoff.WAITING)
        assert relay.expect((_handoff.WAITING,), 5, 'connect')['state'] == 'waiting'
        sent = relay.send_dir(str(src), str(dest))
        assert sent['via'] == 'relay' and sent['files'] == 7
        assert sent['bytes_sent'] == sum(i * 70000 for i in range(4)) + 4
        assert relay.send(_handoff.SYNCED)
        assert rx.wait((_handoff.SYNCED,), 5) == _handoff.SYNCED
        assert sorted(os.listdir(str(dest))) == sorted(os.listdir(str(src)))
        for name in os.listdir(str(src)):
            s, d = src / name, dest / name
            if name == 'parent':
                assert os.readlink(str(d)) == '../x.precopy/round-1'
                continue
            assert d.read_bytes() == s.read_bytes()
            assert stat.S_IMODE(d.stat().st_mode) == stat.S_IMODE(s.stat().st_mode)
        assert (dest / 'core-1.img').stat().st_mtime == 1000000000
        rx.status(_handoff.RUNNING, final=True)
        assert relay.expect((_handoff.RUNNING,), 5, 'confirm')['state'] == 'running'
    finally:
        relay.close()
        rx.close()


def test_relay_that_cannot_write_aborts_and_says_why(tmp_path):
    from ansible_collections.haul.live.plugins.module_utils import _handoff
    src = _images_src(tmp_path)
    blocker = tmp_path / 'file'
    blocker.write_text('not a directory')
    rx = _handoff.Receiver(str(tmp_path / 'img'), 'h2', 10)
    rx.open()
    relay = _relay(rx.dir)
    try:
        rx.status(_handoff.WAITING)
        relay.expect((_handoff.WAITING,), 5, 'connect')
        try:
            relay.send_dir(str(src), str(blocker / 'images'))
            relay.send(_handoff.SYNCED)
            st = relay.expect((_handoff.RESTORED,), 5, 'restore')
            msg = st['msg']
            assert st['state'] == 'failed' and st['final'] and st['step'] == 'sync'
        except HaulError as e:  # the relay ended while the images were still being sent
            assert e.step == 'sync'
            msg = e.msg
        assert 'cannot write the images' in msg
        # the receiver is told to abort: it restores nothing from an incomplete directory
        assert rx.wait((_handoff.SYNCED,), 5) == _handoff.ABORT
    finally:
        relay.close()
        rx.close()


def test_relay_dir_entries_refuses_what_it_cannot_send(tmp_path):
    from ansible_collections.haul.live.plugins.module_utils import _handoff
    src = _images_src(tmp_path)
    entries = _handoff.Relay.dir_entries(str(src))
    assert [e[0] for e in entries] == sorted(os.listdir(str(src)))
    assert _handoff.Relay.dir_entries(str(src), max_bytes=1000) is None  # too large: rsync
    (src / 'sub').mkdir()
    assert _handoff.Relay.dir_entries(str(src)) is None  # a subdirectory: rsync


def test_receiver_and_relay_wake_each_other(tmp_path):
    from ansible_collections.haul.live.plugins.module_utils import _handoff
    rx = _handoff.Receiver(str(tmp_path / 'img'), 'h3', 10)
    rx.open()
    assert stat.S_ISFIFO(os.stat(os.path.join(rx.dir, _handoff.WAKE)).st_mode)
    relay = _relay(rx.dir)
    try:
        rx.status(_handoff.WAITING)
        relay.expect((_handoff.WAITING,), 5, 'connect')
        for dummy in range(3):
            start = time.time()
            rx.status(_handoff.RESTORED)
            relay.expect((_handoff.RESTORED,), 5, 'restore')
            relay.send(_handoff.COMMIT)
            assert rx.wait((_handoff.COMMIT,), 5) == _handoff.COMMIT
            # both hops are woken at once, never left to the 50 ms safety poll
            assert time.time() - start < _handoff.POLL_WOKEN
            os.unlink(os.path.join(rx.dir, _handoff.COMMIT))
        assert rx.wait((_handoff.COMMIT,), 0.1) is None  # nothing came: the timeout
    finally:
        relay.close()
        rx.close()
