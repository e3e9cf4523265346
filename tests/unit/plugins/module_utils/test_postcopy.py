# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for plugins/module_utils/_postcopy.py: the lazy dump (post-copy's source side) and
its hold on the source's tasks; also the handoff relay's images transfer (without rsync).

CRIU is replaced by a fake session whose lazy dump only reports ready (or never runs).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from ansible_collections.haul.live.plugins.module_utils import _postcopy, _proc, _supervisor
from ansible_collections.haul.live.plugins.module_utils._common import HaulError


def test_security_said_plainly():
    assert _postcopy.security_of(True) == 'tls'
    assert _postcopy.security_of(False) == 'plaintext (tls: false)'


def test_tls_kwargs():
    assert _postcopy._tls_kwargs({'tls': False}) == {}
    kw = _postcopy._tls_kwargs({'tls': True, 'tls_cacert': '/ca'})
    assert kw['tls'] is True and kw['tls_cacert'] == '/ca'
    with pytest.raises(HaulError):
        _postcopy._tls_kwargs({'tls': False, 'tls_key': '/k'})


def test_lazy_dump_start_needs_page_server():
    class Opts:
        lazy_pages = True
        page_server = None
    with pytest.raises(HaulError) as e:
        _postcopy.lazy_dump_start(None, Opts(), '/nonexistent')
    assert e.value.step == 'options'


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
    _proc.wait_pid_exit(rep['supervisor_pid'], 10)
    assert _supervisor.read_state(_supervisor.state_path(img, 'dump'))['state'] == 'finished'


def test_lazy_dump_gated_cancel_never_dumps(tmp_path):
    img = str(tmp_path / 'images')
    os.mkdir(img)
    marker = str(tmp_path / 'dumped')
    dump = _postcopy.lazy_dump_spawn(_FakeSession(marker), _Opts(), img, ready_timeout=10, gated=True)
    assert dump.armed(5) is True
    sup = dump.sup
    dump.cancel()
    assert not _proc.pid_alive(sup)
    assert not os.path.exists(marker)
    assert not os.path.exists(_supervisor.state_dir(img))  # nothing left behind
    assert _postcopy.find_lazy_dump(img) is None


def test_stop_lazy_dump_stops_a_prepared_one(tmp_path):
    img = str(tmp_path / 'images')
    os.mkdir(img)
    marker = str(tmp_path / 'dumped')
    dump = _postcopy.lazy_dump_spawn(_FakeSession(marker), _Opts(), img, ready_timeout=10, gated=True)
    dump.armed(5)
    # another process (lazy_pages state=absent) finds it through its state file
    assert _postcopy.stop_lazy_dump(img, timeout=5) == dump.sup
    assert not _proc.pid_alive(dump.sup)
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


def test_lazy_dump_uses_the_prepared_dump_of_the_same_params(tmp_path):
    params = {'images_dir': str(tmp_path / 'images'), 'lazy': {'address': 'a', 'port': 1}, 'cgroup': 'haul/x'}
    prepared = _Prepared(params)
    _postcopy._PREPARED[os.path.abspath(params['images_dir'])] = prepared
    assert _postcopy.lazy_dump(dict(params)) == {'prepared': True}
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
    from ansible_collections.haul.live.plugins.module_utils._migration import protocol
    relay = protocol.Relay(_LocalTarget(), ctl, 20)
    relay.argv = [sys.executable, '-c', protocol.relay_source(), ctl, '20']
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
    from ansible_collections.haul.live.plugins.module_utils._migration import protocol
    src = _images_src(tmp_path)
    dest = tmp_path / 'img'
    (dest / 'stale' / 'sub').mkdir(parents=True)
    (dest / 'old.img').write_bytes(b'old')
    rx = protocol.Receiver(str(dest), 'h1', 10)
    rx.open()
    relay = _relay(rx.dir)
    try:
        rx.status(protocol.WAITING)
        assert relay.expect((protocol.WAITING,), 5, 'connect')['state'] == 'waiting'
        sent = relay.send_dir(str(src), str(dest))
        assert sent['via'] == 'relay' and sent['files'] == 7
        assert sent['bytes_sent'] == sum(i * 70000 for i in range(4)) + 4
        assert relay.send(protocol.SYNCED)
        assert rx.wait((protocol.SYNCED,), 5) == protocol.SYNCED
        assert sorted(os.listdir(str(dest))) == sorted(os.listdir(str(src)))
        for name in os.listdir(str(src)):
            s, d = src / name, dest / name
            if name == 'parent':
                assert os.readlink(str(d)) == '../x.precopy/round-1'
                continue
            assert d.read_bytes() == s.read_bytes()
            assert stat.S_IMODE(d.stat().st_mode) == stat.S_IMODE(s.stat().st_mode)
        assert (dest / 'core-1.img').stat().st_mtime == 1000000000
        rx.status(protocol.RUNNING, final=True)
        assert relay.expect((protocol.RUNNING,), 5, 'confirm')['state'] == 'running'
    finally:
        relay.close()
        rx.close()


def test_relay_that_cannot_write_aborts_and_says_why(tmp_path):
    from ansible_collections.haul.live.plugins.module_utils._migration import protocol
    src = _images_src(tmp_path)
    blocker = tmp_path / 'file'
    blocker.write_text('not a directory')
    rx = protocol.Receiver(str(tmp_path / 'img'), 'h2', 10)
    rx.open()
    relay = _relay(rx.dir)
    try:
        rx.status(protocol.WAITING)
        relay.expect((protocol.WAITING,), 5, 'connect')
        try:
            relay.send_dir(str(src), str(blocker / 'images'))
            relay.send(protocol.SYNCED)
            st = relay.expect((protocol.RESTORED,), 5, 'restore')
            msg = st['msg']
            assert st['state'] == 'failed' and st['final'] and st['step'] == 'sync'
        except HaulError as e:  # the relay ended while the images were still being sent
            assert e.step == 'sync'
            msg = e.msg
        assert 'cannot write the images' in msg
        # the receiver is told to abort: it restores nothing from an incomplete directory
        assert rx.wait((protocol.SYNCED,), 5) == protocol.ABORT
    finally:
        relay.close()
        rx.close()


def test_relay_dir_entries_refuses_what_it_cannot_send(tmp_path):
    from ansible_collections.haul.live.plugins.module_utils._migration import protocol
    src = _images_src(tmp_path)
    entries = protocol.Relay.dir_entries(str(src))
    assert [e[0] for e in entries] == sorted(os.listdir(str(src)))
    assert protocol.Relay.dir_entries(str(src), max_bytes=1000) is None  # too large: rsync
    (src / 'sub').mkdir()
    assert protocol.Relay.dir_entries(str(src)) is None  # a subdirectory: rsync


def test_receiver_and_relay_wake_each_other(tmp_path):
    from ansible_collections.haul.live.plugins.module_utils._migration import protocol
    rx = protocol.Receiver(str(tmp_path / 'img'), 'h3', 10)
    rx.open()
    assert stat.S_ISFIFO(os.stat(os.path.join(rx.dir, protocol.WAKE)).st_mode)
    relay = _relay(rx.dir)
    try:
        rx.status(protocol.WAITING)
        relay.expect((protocol.WAITING,), 5, 'connect')
        for dummy in range(3):
            start = time.time()
            rx.status(protocol.RESTORED)
            relay.expect((protocol.RESTORED,), 5, 'restore')
            relay.send(protocol.COMMIT)
            assert rx.wait((protocol.COMMIT,), 5) == protocol.COMMIT
            # both hops are woken at once, never left to the 50 ms safety poll
            assert time.time() - start < protocol.POLL_WOKEN
            os.unlink(os.path.join(rx.dir, protocol.COMMIT))
        assert rx.wait((protocol.COMMIT,), 0.1) is None  # nothing came: the timeout
    finally:
        relay.close()
        rx.close()


# --------------------------------------------------------------------------- the hold on v2 and v1-only hosts

def test_hold_v2_writes_cgroup_freeze(tmp_path):
    (tmp_path / 'cgroup.freeze').write_text('0')
    assert _postcopy.hold(str(tmp_path), True) == 'v2'
    assert (tmp_path / 'cgroup.freeze').read_text() == '1'
    assert _postcopy.hold(str(tmp_path), False) == 'v2'
    assert (tmp_path / 'cgroup.freeze').read_text() == '0'
    assert _postcopy.hold(None, True) is None and _postcopy.hold(str(tmp_path / 'none'), True) is None


def _proc_state(pid):
    with open('/proc/%d/stat' % pid) as f:
        return f.read().rsplit(')', 1)[1].split()[0]


def test_hold_v1_only_stops_and_continues_the_tasks(tmp_path):
    """A v1 freezer directory (freezer.state, tasks): CRIU would thaw it, so the hold is SIGSTOP."""
    proc = subprocess.Popen(['sleep', '30'])
    try:
        (tmp_path / 'freezer.state').write_text('THAWED\n')
        (tmp_path / 'tasks').write_text('%d\n' % proc.pid)
        assert _postcopy.hold(str(tmp_path), True) == 'v1-sigstop'
        for dummy in range(200):
            if _proc_state(proc.pid) == 'T':
                break
            time.sleep(0.01)
        assert _proc_state(proc.pid) == 'T'
        assert _postcopy.hold(str(tmp_path), False) == 'v1-sigstop'
        for dummy in range(200):
            if _proc_state(proc.pid) != 'T':
                break
            time.sleep(0.01)
        assert _proc_state(proc.pid) in ('S', 'R')
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
