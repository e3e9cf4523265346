# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The destination's half: it resumes only on COMMIT, and a fence or its deadline comes first."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.module_utils._migration import destination
from ansible_collections.haul.live.plugins.module_utils._migration import protocol


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


def _receive(tmp_path, before_commit, commit_timeout=5, cgroup_mod=None):
    """Run receive_container in a thread; ``before_commit(rx_dir)`` acts once it restored."""
    import threading
    images = str(tmp_path / 'images' / 'ct9')
    params = {'images_dir': images, 'name': 'ct9', 'cgroup': 'haul/ct9',
              'handoff': {'id': 'h1', 'timeout': 5, 'commit_timeout': commit_timeout}}
    out = {}

    def run():
        try:
            out['res'] = destination.receive_container(
                params, lambda p: None, lambda p: {'pid': 1, 'cgroup': '/haul/ct9'}, cgroup_mod or _FakeCgroupMod,
                lease_dir=str(tmp_path / 'leases'))
        except HaulError as e:
            out['err'] = e
    t = threading.Thread(target=run)
    t.start()
    ctl = protocol.control_dir(images, 'h1')
    import time as _t
    deadline = _t.time() + 5
    while _t.time() < deadline:
        try:
            with open(os.path.join(ctl, protocol.STATUS)) as f:
                if '"waiting"' in f.read():
                    break
        except (IOError, OSError):
            pass
        _t.sleep(0.01)
    open(os.path.join(ctl, protocol.SYNCED), 'w').close()
    while _t.time() < deadline:
        with open(os.path.join(ctl, protocol.STATUS)) as f:
            if '"restored"' in f.read():
                break
        _t.sleep(0.01)
    before_commit(ctl)
    t.join(15)
    return out, ctl


def test_a_fenced_receiver_refuses_the_commit_and_kills_its_copy(tmp_path):
    _FakeCg.killed = []

    def fence_then_commit(ctl):
        os.symlink('abort', os.path.join(ctl, protocol.DECIDED))
        open(os.path.join(ctl, protocol.COMMIT), 'w').close()
    out, ctl = _receive(tmp_path, fence_then_commit)
    assert 'refused the commit' in out['err'].msg
    assert _FakeCg.killed == ['/haul/ct9']
    with open(os.path.join(ctl, protocol.STATUS)) as f:
        assert '"aborted"' in f.read()
    # the receiver took the lease itself (no role here), and released it
    assert not os.path.exists(str(tmp_path / 'leases' / 'ct9.json'))


def test_a_late_commit_is_refused(tmp_path):
    _FakeCg.killed = []
    out, ctl = _receive(tmp_path, lambda ctl: None, commit_timeout=1)
    assert 'no commit from the source within 1s' in out['err'].msg
    open(os.path.join(ctl, protocol.COMMIT), 'w').close()   # too late: nobody resumes
    assert os.readlink(os.path.join(ctl, protocol.DECIDED)) == 'abort'
    assert _FakeCg.killed == ['/haul/ct9']


def test_another_migrations_lease_is_refused_before_anything(tmp_path):
    from ansible_collections.haul.live.plugins.module_utils import _lease
    _lease.acquire('ct9', 'other', {'pid': 1}, 'destination', 60, lease_dir=str(tmp_path / 'leases'))
    params = {'images_dir': str(tmp_path / 'images' / 'ct9'), 'name': 'ct9', 'cgroup': 'haul/ct9',
              'handoff': {'id': 'h1', 'timeout': 5}}
    with pytest.raises(HaulError, match='held by migration other'):
        destination.receive_container(params, lambda p: None, None, _FakeCgroupMod, lease_dir=str(tmp_path / 'leases'))
    assert _lease.read('ct9', str(tmp_path / 'leases'))['migration_id'] == 'other'


class _ResumingCgroupMod(object):
    Cgroup = _FakeCg
    resumed = []

    @staticmethod
    def sigcont_tree(pids):
        _ResumingCgroupMod.resumed.append(pids)


def test_the_resumed_failpoint_fires_after_the_resume_before_running_is_said(tmp_path, monkeypatch):
    """fault_partition places its partition there: the copy runs, the source has not heard it."""
    _FakeCg.killed, _ResumingCgroupMod.resumed = [], []
    seen = []

    def fire(name, point):
        with open(os.path.join(protocol.control_dir(str(tmp_path / 'images' / 'ct9'), 'h1'), protocol.STATUS)) as f:
            seen.append((name, point, list(_ResumingCgroupMod.resumed), '"running"' in f.read()))
    monkeypatch.setattr(destination.failpoints, 'fire', fire)
    out, ctl = _receive(tmp_path, lambda ctl: open(os.path.join(ctl, protocol.COMMIT), 'w').close(),
                        cgroup_mod=_ResumingCgroupMod)
    assert out['res']['state'] == protocol.RUNNING
    assert seen == [('ct9', 'resumed', [[]], False)]
    with open(os.path.join(ctl, protocol.STATUS)) as f:
        assert '"running"' in f.read()
    assert _FakeCg.killed == []
