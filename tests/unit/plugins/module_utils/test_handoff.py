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
