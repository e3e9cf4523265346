# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The rollback rule applied (:class:`_migration.rollback.Rollback`), the source's lease, the
strategies' classes and the failpoints."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import signal

import pytest

from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.module_utils._migration import failpoints
from ansible_collections.haul.live.plugins.module_utils._migration import phases
from ansible_collections.haul.live.plugins.module_utils._migration import protocol
from ansible_collections.haul.live.plugins.module_utils._migration import rollback
from ansible_collections.haul.live.plugins.module_utils._migration import source
from ansible_collections.haul.live.plugins.module_utils._migration import strategy


def strategy_of(params, name):
    return strategy.CLASSES[name](params, None)


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
    src = source.Source(params, strategy_of(params, strategy), None, None, lease_dir=leases)
    src.take_lease()
    for p in phases.PHASES[1:phases.index(phase) + 1]:
        src.record(p)
    src.relay = _FakeRelay(ev)
    monkeypatch.setattr(rollback, 'thaw_source', lambda params, dumped, cg: ev.log.append('thaw') or 'running')
    monkeypatch.setattr(rollback.watchdog, 'kill_criu', lambda d: [])
    monkeypatch.setattr(rollback, 'finalize_source', lambda *a: ev.log.append('kill source'))
    return src, _lease, leases


@pytest.mark.parametrize('phase', ['FROZEN', 'DUMPED', 'SENT'])
def test_before_commit_the_destination_goes_first(tmp_path, monkeypatch, phase):
    ev = _Events()
    src, _lease, _leases = _source(tmp_path, phase, monkeypatch, ev)
    state = rollback.Rollback(src).run(phases.rollback_plan(src.phase, 'stopcopy'))
    assert state == 'running'
    assert ev.log == ['send abort', 'wait aborted/failed', 'thaw']


def test_after_commit_the_source_stays_frozen(tmp_path, monkeypatch):
    ev = _Events()
    src, _lease, _leases = _source(tmp_path, 'COMMITTED', monkeypatch, ev)
    assert rollback.Rollback(src).run(phases.rollback_plan(src.phase, 'stopcopy')) == 'frozen'
    assert ev.log == []


def test_a_source_another_migration_holds_is_not_thawed(tmp_path, monkeypatch):
    ev = _Events()
    src, _lease, leases = _source(tmp_path, 'DUMPED', monkeypatch, ev)
    _lease.release('ct', 'm1', leases)
    _lease.acquire('ct', 'm2', {}, 'source', 60, lease_dir=leases)
    executor = rollback.Rollback(src)
    assert executor.run(phases.rollback_plan(src.phase, 'stopcopy')) == 'frozen'
    assert 'thaw' not in ev.log and 'm2' in executor.not_thawed


def test_postcopy_lost_after_resume_kills_the_source(tmp_path, monkeypatch):
    ev = _Events()
    src, _lease, _leases = _source(tmp_path, 'RESUMED', monkeypatch, ev, strategy='postcopy')
    assert rollback.Rollback(src).run(phases.rollback_plan(src.phase, 'postcopy', transfer_broken=True)) == 'lost'
    assert ev.log == ['kill source']
    assert rollback.Rollback(src).run(phases.rollback_plan(src.phase, 'postcopy')) == 'frozen'


def test_the_lease_records_the_phase_and_is_released_when_taken_here(tmp_path, monkeypatch):
    ev = _Events()
    src, _lease, leases = _source(tmp_path, 'SENT', monkeypatch, ev)
    rec = _lease.read('ct', leases)
    assert rec['phase'] == 'SENT' and rec['handoff_took'] is True and rec['handoff_pid'] == os.getpid()
    src.finish_lease(False)
    assert _lease.read('ct', leases) is None


def test_phase_timeouts():
    t = protocol.phase_timeouts({'timeout': 20, 'connect_timeout': 5, 'timeouts': {'dump': 7}})
    assert t == {'connect': 25, 'dump': 7, 'transfer': 20, 'restore': 20, 'commit': 20}


# --------------------------------------------------------------------------- the strategies

@pytest.mark.parametrize('lazy,precopy,name', [(False, False, 'stopcopy'), (False, True, 'precopy'),
                                               (True, False, 'postcopy'), (True, True, 'hybrid')])
def test_the_strategy_is_chosen_by_its_two_options(lazy, precopy, name):
    params = {'images_dir': '/var/lib/haul/images/ct', 'lazy': {'address': 'a'} if lazy else None,
              'precopy': {'max_rounds': 8} if precopy else None}
    s = strategy.for_params(params, None)
    assert s.name == name == strategy.strategy_of(lazy, precopy)
    assert name in phases.STRATEGIES
    assert s.lazy == (name in phases.LAZY_STRATEGIES)


def test_precopy_needs_the_same_images_directory_name():
    with pytest.raises(HaulError, match='same images directory name'):
        strategy.for_params({'images_dir': '/a/ct', 'dest_images_dir': '/b/other', 'precopy': {'max_rounds': 8}}, None)


def test_hybrid_runs_the_rounds_before_the_lazy_warm_up(monkeypatch):
    from ansible_collections.haul.live.plugins.module_utils._migration import postcopy, precopy
    log = []
    monkeypatch.setattr(precopy._precopy, 'send_rounds', lambda ctx, fn: log.append('rounds') or {'parent_images': 'p'})
    monkeypatch.setattr(postcopy._postcopy, 'warm_up', lambda p: log.append('warm up'))

    class _Images(object):
        @staticmethod
        def precopy_dir(d):
            return d + '.precopy'

    class _Src(object):
        images_mod = _Images
        dest_images = '/d/ct'
        rsync = None

    s = strategy.for_params({'images_dir': '/s/ct', 'lazy': {'address': 'a'}, 'precopy': {'max_rounds': 8}}, None)
    dump_params = {}
    s.before_freeze(_Src(), dump_params)
    assert log == ['rounds', 'warm up'] and dump_params['parent_images'] == 'p'
    assert s.scratch_dirs(_Images, '/s/ct') == ['/s/ct.precopy']


# --------------------------------------------------------------------------- the failpoints

def test_failpoints_are_inert_without_their_file(tmp_path):
    failpoints.fire('ct', 'dumped', directory=str(tmp_path))


def test_failpoints_signal_or_sleep_at_their_point(tmp_path, monkeypatch):
    (tmp_path / 'ct').write_text('sigterm@commit sigkill@dumped sigstop@sent sleep@frozen')
    sent, slept = [], []
    monkeypatch.setattr(failpoints.os, 'kill', lambda pid, sig: sent.append((pid, sig)))
    monkeypatch.setattr(failpoints.time, 'sleep', slept.append)
    for point in ('commit', 'dumped', 'sent', 'frozen', 'restored'):
        failpoints.fire('ct', point, directory=str(tmp_path))
    assert sent == [(os.getpid(), signal.SIGTERM), (os.getpid(), signal.SIGKILL), (os.getpid(), signal.SIGSTOP)]
    assert slept == [failpoints.SLEEP_S]


def test_a_failpoint_sleeps_n_seconds_then_goes_on(tmp_path, monkeypatch):
    (tmp_path / 'ct').write_text('sleep20@resumed sleepx@sent sleep@frozen')
    slept = []
    monkeypatch.setattr(failpoints.time, 'sleep', slept.append)
    for point in ('resumed', 'sent', 'frozen', 'committed'):
        failpoints.fire('ct', point, directory=str(tmp_path))
    assert slept == [20, failpoints.SLEEP_S]


def test_every_phase_the_source_records_fires_its_failpoint(tmp_path, monkeypatch):
    fired = []
    monkeypatch.setattr(source.failpoints, 'fire', lambda name, point: fired.append((name, point)))
    params = {'handoff_id': 'm1', 'name': 'ct', 'cgroup': 'haul/ct', 'images_dir': str(tmp_path / 'img'),
              'timeout': 10, 'dest_host': 'node2'}
    src = source.Source(params, strategy_of(params, 'stopcopy'), None, None, lease_dir=str(tmp_path / 'leases'))
    src.take_lease()
    for p in phases.PHASES[1:]:
        src.record(p)
    assert fired == [('ct', p.lower()) for p in phases.PHASES[1:]]


def test_each_phase_and_the_page_transfer_reach_the_progress_file(tmp_path, monkeypatch):
    import json
    monkeypatch.setattr(source.failpoints, 'fire', lambda name, point: None)
    progress = tmp_path / 'progress' / 'ct.handoff.json'
    params = {'handoff_id': 'm1', 'name': 'ct', 'cgroup': 'haul/ct', 'images_dir': str(tmp_path / 'img'),
              'timeout': 10, 'dest_host': 'node2', 'progress_file': str(progress)}
    src = source.Source(params, strategy_of(params, 'postcopy'), None, None, lease_dir=str(tmp_path / 'leases'))
    src.take_lease()
    src.note('connecting')
    reading = json.loads(progress.read_text())
    assert reading['phase'] == 'connecting' and reading['pid'] == os.getpid() and reading['frozen_s'] is None
    assert oct(progress.stat().st_mode & 0o777) == '0o600'
    src.record(phases.FROZEN)
    src.record(phases.DUMPED)
    reading = json.loads(progress.read_text())
    assert reading['phase'] == 'dumped' and reading['frozen_s'] >= 0
    src.record(phases.SENT)
    src.record(phases.COMMITTED)
    src.record(phases.RESUMED)
    # the container runs: no frozen time; post-copy's pages, in numbers only
    src.progress.last = None
    src.note_pages({'moved_bytes': 25, 'total_bytes': 100, 'rate_bytes_s': 5.0, 'eta_s': 15.0})
    reading = json.loads(progress.read_text())
    assert reading['phase'] == 'pages' and reading['frozen_s'] is None
    assert (reading['bytes'], reading['percent'], reading['rate_bytes_s'], reading['eta_s']) == (25, 25, 5.0, 15.0)
    src.end_progress()
    assert not progress.exists()


def test_a_progress_file_that_cannot_be_written_never_stops_the_handoff(tmp_path, monkeypatch):
    monkeypatch.setattr(source.failpoints, 'fire', lambda name, point: None)
    (tmp_path / 'file').write_text('')
    params = {'handoff_id': 'm1', 'name': 'ct', 'cgroup': 'haul/ct', 'images_dir': str(tmp_path / 'img'),
              'timeout': 10, 'dest_host': 'node2', 'progress_file': str(tmp_path / 'file' / 'under' / 'p.json')}
    src = source.Source(params, strategy_of(params, 'stopcopy'), None, None, lease_dir=str(tmp_path / 'leases'))
    src.take_lease()
    src.record(phases.FROZEN)
    assert src.phase == phases.FROZEN and src.progress is None
