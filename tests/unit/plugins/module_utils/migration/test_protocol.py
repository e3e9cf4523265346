# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The handoff protocol, run for real between a Receiver and the relay (:mod:`_migration.relay`, without SSH)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import sys

import pytest

from ansible_collections.haul.live.plugins.module_utils._migration import protocol
from ansible_collections.haul.live.plugins.module_utils._common import HaulError


class LocalTarget(object):
    """Stands for an SshTarget: runs the 'remote' command here, with this Python."""
    host = 'localhost'

    def remote_argv(self, args):
        return [sys.executable] + list(args[1:])


@pytest.fixture
def pair(tmp_path):
    rx = protocol.Receiver(str(tmp_path / 'images' / 'ct1'), 'attempt-1', timeout=10)
    rx.open()
    relay = protocol.Relay(LocalTarget(), rx.dir, timeout=30)
    yield rx, relay
    relay.close()


def test_control_dir_is_per_attempt_and_checked():
    assert protocol.control_dir('/var/lib/haul/images/ct1/', 'a1') == '/var/lib/haul/images/ct1.handoff/a1'
    for bad in ('', '../x', 'a/b', '.hidden'):
        with pytest.raises(HaulError, match='bad handoff id'):
            protocol.control_dir('/x', bad)


def test_control_dir_is_private(pair):
    rx, _relay = pair
    assert os.stat(rx.dir).st_mode & 0o777 == 0o700
    assert os.stat(os.path.dirname(rx.dir)).st_mode & 0o777 == 0o700


def test_full_conversation(pair):
    rx, relay = pair
    rx.status(protocol.WAITING)
    relay.start()
    assert relay.expect((protocol.WAITING,), 10, 'connect')['state'] == 'waiting'
    assert relay.send(protocol.SYNCED)
    assert rx.wait((protocol.SYNCED,), 10) == 'synced'
    rx.status(protocol.RESTORED, pid=4242)
    st = relay.expect((protocol.RESTORED,), 10, 'restore')
    assert st['state'] == 'restored' and st['pid'] == 4242
    assert relay.send(protocol.COMMIT)
    assert rx.wait((protocol.COMMIT,), 10) == 'commit'
    rx.status(protocol.RUNNING, final=True, pid=4242)
    assert relay.expect((protocol.RUNNING,), 10, 'confirm')['state'] == 'running'


def test_source_gone_before_commit_means_abort(pair):
    rx, relay = pair
    rx.status(protocol.WAITING)
    relay.start()
    relay.expect((protocol.WAITING,), 10, 'connect')
    relay.close()  # the source's session ends: EOF on the relay's stdin
    assert rx.wait((protocol.SYNCED,), 10) == 'abort'


def test_source_gone_after_commit_does_not_abort(pair):
    rx, relay = pair
    rx.status(protocol.WAITING)
    relay.start()
    relay.expect((protocol.WAITING,), 10, 'connect')
    relay.send(protocol.SYNCED)
    rx.status(protocol.RESTORED, pid=1)
    relay.expect((protocol.RESTORED,), 10, 'restore')
    relay.send(protocol.COMMIT)
    assert rx.wait((protocol.COMMIT,), 10) == 'commit'
    relay.proc.stdin.close()
    rx.status(protocol.RUNNING, final=True, pid=1)
    assert not os.path.exists(os.path.join(rx.dir, 'abort'))


def test_waiting_without_answer_times_out(pair):
    rx, relay = pair
    relay.start()
    with pytest.raises(HaulError, match='did not report waiting within 1s') as e:
        relay.expect((protocol.WAITING,), 1, 'connect')
    assert e.value.step == 'connect'
    assert rx.wait((protocol.SYNCED,), 0.05) is None


def test_a_failure_is_final(pair):
    rx, relay = pair
    rx.status(protocol.FAILED, step='prepare', msg='prepare: no root')
    relay.start()
    st = relay.expect((protocol.WAITING,), 10, 'connect')
    assert st['state'] == 'failed' and st['msg'] == 'prepare: no root'


def test_run_parallel_keeps_order_and_raises_the_first_error():
    import time as _t

    def slow(x):
        _t.sleep(0.05)
        return x

    def boom():
        raise HaulError('sync', 'disk full')

    start = _t.time()
    assert protocol.run_parallel([(slow, (1,), {}), (slow, (2,), {})]) == [1, 2]
    assert _t.time() - start < 0.09  # side by side, not one after the other
    with pytest.raises(HaulError, match='disk full'):
        protocol.run_parallel([(slow, (1,), {}), (boom, (), {})])


# --------------------------------------------------------------------------- the one decision

def test_the_decision_is_taken_once(pair):
    rx, _relay = pair
    assert rx.decided() is None
    assert rx.decide(protocol.ABORT) == 'abort'      # a fence (the role's rollback) came first
    assert rx.decide(protocol.COMMIT) == 'abort'     # the receiver's commit then loses
    assert rx.decided() == 'abort'


def test_the_fence_of_the_role_uses_the_same_link(pair):
    """rollback.yml's fence: ``ln -s abort CTL/decided``; a receiver that took commit first wins."""
    rx, _relay = pair
    assert rx.decide(protocol.COMMIT) == 'commit'
    try:
        os.symlink('abort', os.path.join(rx.dir, protocol.DECIDED))
    except OSError:
        pass
    assert os.readlink(os.path.join(rx.dir, protocol.DECIDED)) == 'commit'


# --------------------------------------------------------------------------- the relay's source, as AnsiballZ ships it

def test_the_relay_is_sent_as_its_source_even_from_a_zip(tmp_path):
    """AnsiballZ runs a module from a zip: the relay's source text must come out of it as well."""
    import subprocess
    import zipfile
    from ansible_collections.haul.live.plugins.module_utils._migration import relay
    here = os.path.dirname(os.path.abspath(relay.__file__))
    utils = os.path.dirname(here)
    zpath = str(tmp_path / 'ansiballz.zip')
    with zipfile.ZipFile(zpath, 'w') as z:
        for pkg in ('ansible_collections', 'ansible_collections/haul', 'ansible_collections/haul/live',
                    'ansible_collections/haul/live/plugins', 'ansible_collections/haul/live/plugins/module_utils'):
            z.writestr(pkg + '/__init__.py', '')
        for root, dummy, files in os.walk(utils):
            for name in files:
                if name.endswith('.py'):
                    path = os.path.join(root, name)
                    z.write(path, 'ansible_collections/haul/live/plugins/module_utils/' + os.path.relpath(path, utils))
    code = ('import sys; sys.path.insert(0, %r); '
            'from ansible_collections.haul.live.plugins.module_utils._migration import protocol; '
            'assert protocol.relay_module.__file__.startswith(%r), protocol.relay_module.__file__; '
            'sys.stdout.write(protocol.relay_source())' % (zpath, zpath))
    env = dict((k, v) for k, v in os.environ.items() if k != 'PYTHONPATH')
    out = subprocess.run([sys.executable, '-c', code], env=env, cwd=str(tmp_path), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, check=False)
    assert out.returncode == 0, out.stderr.decode()
    with open(relay.__file__) as f:
        assert out.stdout.decode() == f.read()
    assert protocol.relay_source() == out.stdout.decode()
