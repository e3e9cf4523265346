# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The handoff protocol, run for real between a Receiver and the relay script (without SSH)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import sys

import pytest

from ansible_collections.haul.live.plugins.module_utils import _handoff
from ansible_collections.haul.live.plugins.module_utils._common import HaulError


class LocalTarget(object):
    """Stands for an SshTarget: runs the 'remote' command here, with this Python."""
    host = 'localhost'

    def remote_argv(self, args):
        return [sys.executable] + list(args[1:])


@pytest.fixture
def pair(tmp_path):
    rx = _handoff.Receiver(str(tmp_path / 'images' / 'ct1'), 'attempt-1', timeout=10)
    rx.open()
    relay = _handoff.Relay(LocalTarget(), rx.dir, timeout=30)
    yield rx, relay
    relay.close()


def test_control_dir_is_per_attempt_and_checked():
    assert _handoff.control_dir('/var/lib/haul/images/ct1/', 'a1') == '/var/lib/haul/images/ct1.handoff/a1'
    for bad in ('', '../x', 'a/b', '.hidden'):
        with pytest.raises(HaulError, match='bad handoff id'):
            _handoff.control_dir('/x', bad)


def test_control_dir_is_private(pair):
    rx, _relay = pair
    assert os.stat(rx.dir).st_mode & 0o777 == 0o700
    assert os.stat(os.path.dirname(rx.dir)).st_mode & 0o777 == 0o700


def test_full_conversation(pair):
    rx, relay = pair
    rx.status(_handoff.WAITING)
    relay.start()
    assert relay.expect((_handoff.WAITING,), 10, 'connect')['state'] == 'waiting'
    assert relay.send(_handoff.SYNCED)
    assert rx.wait((_handoff.SYNCED,), 10) == 'synced'
    rx.status(_handoff.RESTORED, pid=4242)
    st = relay.expect((_handoff.RESTORED,), 10, 'restore')
    assert st['state'] == 'restored' and st['pid'] == 4242
    assert relay.send(_handoff.COMMIT)
    assert rx.wait((_handoff.COMMIT,), 10) == 'commit'
    rx.status(_handoff.RUNNING, final=True, pid=4242)
    assert relay.expect((_handoff.RUNNING,), 10, 'confirm')['state'] == 'running'


def test_source_gone_before_commit_means_abort(pair):
    rx, relay = pair
    rx.status(_handoff.WAITING)
    relay.start()
    relay.expect((_handoff.WAITING,), 10, 'connect')
    relay.close()  # the source's session ends: EOF on the relay's stdin
    assert rx.wait((_handoff.SYNCED,), 10) == 'abort'


def test_source_gone_after_commit_does_not_abort(pair):
    rx, relay = pair
    rx.status(_handoff.WAITING)
    relay.start()
    relay.expect((_handoff.WAITING,), 10, 'connect')
    relay.send(_handoff.SYNCED)
    rx.status(_handoff.RESTORED, pid=1)
    relay.expect((_handoff.RESTORED,), 10, 'restore')
    relay.send(_handoff.COMMIT)
    assert rx.wait((_handoff.COMMIT,), 10) == 'commit'
    relay.proc.stdin.close()
    rx.status(_handoff.RUNNING, final=True, pid=1)
    assert not os.path.exists(os.path.join(rx.dir, 'abort'))


def test_waiting_without_answer_times_out(pair):
    rx, relay = pair
    relay.start()
    with pytest.raises(HaulError, match='did not report waiting within 1s') as e:
        relay.expect((_handoff.WAITING,), 1, 'connect')
    assert e.value.step == 'connect'
    assert rx.wait((_handoff.SYNCED,), 0.05) is None


def test_a_failure_is_final(pair):
    rx, relay = pair
    rx.status(_handoff.FAILED, step='prepare', msg='prepare: no root')
    relay.start()
    st = relay.expect((_handoff.WAITING,), 10, 'connect')
    assert st['state'] == 'failed' and st['msg'] == 'prepare: no root'


def test_run_parallel_keeps_order_and_raises_the_first_error():
    import time as _t

    def slow(x):
        _t.sleep(0.05)
        return x

    def boom():
        raise HaulError('sync', 'disk full')

    start = _t.time()
    assert _handoff.run_parallel([(slow, (1,), {}), (slow, (2,), {})]) == [1, 2]
    assert _t.time() - start < 0.09  # side by side, not one after the other
    with pytest.raises(HaulError, match='disk full'):
        _handoff.run_parallel([(slow, (1,), {}), (boom, (), {})])


# --------------------------------------------------------------------------- the one decision

def test_the_decision_is_taken_once(pair):
    rx, _relay = pair
    assert rx.decided() is None
    assert rx.decide(_handoff.ABORT) == 'abort'      # a fence (the role's rollback) came first
    assert rx.decide(_handoff.COMMIT) == 'abort'     # the receiver's commit then loses
    assert rx.decided() == 'abort'


def test_the_fence_of_the_role_uses_the_same_link(pair):
    """rollback.yml's fence: ``ln -s abort CTL/decided``; a receiver that took commit first wins."""
    rx, _relay = pair
    assert rx.decide(_handoff.COMMIT) == 'commit'
    try:
        os.symlink('abort', os.path.join(rx.dir, _handoff.DECIDED))
    except OSError:
        pass
    assert os.readlink(os.path.join(rx.dir, _handoff.DECIDED)) == 'commit'


class _FakeCg(object):
    killed = []

    def __init__(self, path):
        self.path = path

    def kill(self):
        _FakeCg.killed.append(self.path)

    def remove(self):
        pass

    def pids(self):
        return []


class _FakeCgroupMod(object):
    Cgroup = _FakeCg

    @staticmethod
    def sigcont_tree(pids):
        raise AssertionError('a fenced copy must never be resumed')


def _receive(tmp_path, before_commit, commit_timeout=5):
    """Run receive_container in a thread; ``before_commit(rx_dir)`` acts once it restored."""
    import threading
    images = str(tmp_path / 'images' / 'ct9')
    params = {'images_dir': images, 'name': 'ct9', 'cgroup': 'haul/ct9',
              'handoff': {'id': 'h1', 'timeout': 5, 'commit_timeout': commit_timeout}}
    out = {}

    def run():
        try:
            out['res'] = _handoff.receive_container(
                params, lambda p: None, lambda p: {'pid': 1, 'cgroup': '/haul/ct9'}, _FakeCgroupMod,
                lease_dir=str(tmp_path / 'leases'))
        except HaulError as e:
            out['err'] = e
    t = threading.Thread(target=run)
    t.start()
    ctl = _handoff.control_dir(images, 'h1')
    import time as _t
    deadline = _t.time() + 5
    while _t.time() < deadline:
        try:
            with open(os.path.join(ctl, _handoff.STATUS)) as f:
                if '"waiting"' in f.read():
                    break
        except (IOError, OSError):
            pass
        _t.sleep(0.01)
    open(os.path.join(ctl, _handoff.SYNCED), 'w').close()
    while _t.time() < deadline:
        with open(os.path.join(ctl, _handoff.STATUS)) as f:
            if '"restored"' in f.read():
                break
        _t.sleep(0.01)
    before_commit(ctl)
    t.join(15)
    return out, ctl


def test_a_fenced_receiver_refuses_the_commit_and_kills_its_copy(tmp_path):
    _FakeCg.killed = []

    def fence_then_commit(ctl):
        os.symlink('abort', os.path.join(ctl, _handoff.DECIDED))
        open(os.path.join(ctl, _handoff.COMMIT), 'w').close()
    out, ctl = _receive(tmp_path, fence_then_commit)
    assert 'refused the commit' in out['err'].msg
    assert _FakeCg.killed == ['/haul/ct9']
    with open(os.path.join(ctl, _handoff.STATUS)) as f:
        assert '"aborted"' in f.read()
    # the receiver took the lease itself (no role here), and released it
    assert not os.path.exists(str(tmp_path / 'leases' / 'ct9.json'))


def test_a_late_commit_is_refused(tmp_path):
    _FakeCg.killed = []
    out, ctl = _receive(tmp_path, lambda ctl: None, commit_timeout=1)
    assert 'no commit from the source within 1s' in out['err'].msg
    open(os.path.join(ctl, _handoff.COMMIT), 'w').close()   # too late: nobody resumes
    assert os.readlink(os.path.join(ctl, _handoff.DECIDED)) == 'abort'
    assert _FakeCg.killed == ['/haul/ct9']


def test_another_migrations_lease_is_refused_before_anything(tmp_path):
    from ansible_collections.haul.live.plugins.module_utils import _lease
    _lease.acquire('ct9', 'other', {'pid': 1}, 'destination', 60, lease_dir=str(tmp_path / 'leases'))
    params = {'images_dir': str(tmp_path / 'images' / 'ct9'), 'name': 'ct9', 'cgroup': 'haul/ct9',
              'handoff': {'id': 'h1', 'timeout': 5}}
    with pytest.raises(HaulError, match='held by migration other'):
        _handoff.receive_container(params, lambda p: None, None, _FakeCgroupMod, lease_dir=str(tmp_path / 'leases'))
    assert _lease.read('ct9', str(tmp_path / 'leases'))['migration_id'] == 'other'


# --------------------------------------------------------------------------- the rule, applied

class _Events(object):
    def __init__(self):
        self.log = []


class _FakeRelay(object):
    def __init__(self, ev):
        self.ev = ev
        self.proc = object()
        self.last = None

    def send(self, cmd):
        self.ev.log.append('send ' + cmd)
        return True

    def expect(self, states, timeout, step):
        self.ev.log.append('wait ' + '/'.join(states))
        return {'state': 'aborted', 'final': True}


def _source(tmp_path, phase, monkeypatch, ev, strategy='stopcopy'):
    from ansible_collections.haul.live.plugins.module_utils import _lease
    leases = str(tmp_path / 'leases')
    params = {'handoff_id': 'm1', 'name': 'ct', 'cgroup': 'haul/ct', 'images_dir': str(tmp_path / 'img'),
              'timeout': 10, 'dest_host': 'node2'}
    src = _handoff._Source(params, strategy, None, None, None, lease_dir=leases)
    src.take_lease()
    for p in _handoff._phases.PHASES[1:_handoff._phases.index(phase) + 1]:
        src.record(p)
    src.relay = _FakeRelay(ev)
    monkeypatch.setattr(_handoff, '_rollback', lambda params, dumped, cg: ev.log.append('thaw') or 'running')
    monkeypatch.setattr(_handoff._watchdog, 'kill_criu', lambda d: [])
    monkeypatch.setattr(_handoff, '_finalize_source', lambda *a: ev.log.append('kill source'))
    return src, _lease, leases


@pytest.mark.parametrize('phase', ['FROZEN', 'DUMPED', 'SENT'])
def test_before_commit_the_destination_goes_first(tmp_path, monkeypatch, phase):
    ev = _Events()
    src, _lease, _leases = _source(tmp_path, phase, monkeypatch, ev)
    state = src.roll_back(_handoff._phases.rollback_plan(src.phase, 'stopcopy'))
    assert state == 'running'
    assert ev.log == ['send abort', 'wait aborted/failed', 'thaw']


def test_after_commit_the_source_stays_frozen(tmp_path, monkeypatch):
    ev = _Events()
    src, _lease, _leases = _source(tmp_path, 'COMMITTED', monkeypatch, ev)
    assert src.roll_back(_handoff._phases.rollback_plan(src.phase, 'stopcopy')) == 'frozen'
    assert ev.log == []


def test_a_source_another_migration_holds_is_not_thawed(tmp_path, monkeypatch):
    ev = _Events()
    src, _lease, leases = _source(tmp_path, 'DUMPED', monkeypatch, ev)
    _lease.release('ct', 'm1', leases)
    _lease.acquire('ct', 'm2', {}, 'source', 60, lease_dir=leases)
    assert src.roll_back(_handoff._phases.rollback_plan(src.phase, 'stopcopy')) == 'frozen'
    assert 'thaw' not in ev.log and 'm2' in src.not_thawed


def test_postcopy_lost_after_resume_kills_the_source(tmp_path, monkeypatch):
    ev = _Events()
    src, _lease, _leases = _source(tmp_path, 'RESUMED', monkeypatch, ev, strategy='postcopy')
    assert src.roll_back(_handoff._phases.rollback_plan(src.phase, 'postcopy', transfer_broken=True)) == 'lost'
    assert ev.log == ['kill source']
    assert src.roll_back(_handoff._phases.rollback_plan(src.phase, 'postcopy')) == 'frozen'


def test_the_lease_records_the_phase_and_is_released_when_taken_here(tmp_path, monkeypatch):
    ev = _Events()
    src, _lease, leases = _source(tmp_path, 'SENT', monkeypatch, ev)
    rec = _lease.read('ct', leases)
    assert rec['phase'] == 'SENT' and rec['handoff_took'] is True and rec['handoff_pid'] == os.getpid()
    src.finish_lease(False)
    assert _lease.read('ct', leases) is None


def test_phase_timeouts():
    t = _handoff.phase_timeouts({'timeout': 20, 'connect_timeout': 5, 'timeouts': {'dump': 7}})
    assert t == {'connect': 25, 'dump': 7, 'transfer': 20, 'restore': 20, 'commit': 20}
