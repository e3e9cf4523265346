# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for plugins/module_utils/_lease.py: one owner per container."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat

import pytest

from ansible_collections.haul.live.plugins.module_utils import _lease
from ansible_collections.haul.live.plugins.module_utils._migration import phases as _phases
from ansible_collections.haul.live.plugins.module_utils._common import HaulError

OWNER_A = {'host': 'ctl-a', 'pid': 101, 'user': 'root', 'started': '2026-11-30T17:00:00Z'}
OWNER_B = {'host': 'ctl-b', 'pid': 202, 'user': 'ops', 'started': '2026-11-30T17:00:01Z'}
T0 = 1000000.0


@pytest.fixture
def ldir(tmp_path):
    return str(tmp_path / 'leases')


def test_acquire_writes_a_durable_record(ldir):
    rec = _lease.acquire('web1', 'm1', OWNER_A, 'source', 60, lease_dir=ldir, now=T0)
    assert rec['name'] == 'web1' and rec['migration_id'] == 'm1' and rec['role'] == 'source'
    assert rec['phase'] == 'PREPARING'
    assert rec['acquired'] == rec['updated'] == T0 and rec['expires'] == T0 + 60
    path = os.path.join(ldir, 'web1.json')
    with open(path) as f:
        assert json.load(f) == rec
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(ldir).st_mode) == 0o700
    assert _lease.read('web1', lease_dir=ldir) == rec
    assert not [n for n in os.listdir(ldir) if '.tmp.' in n]


def test_second_migration_is_refused_naming_the_holder(ldir):
    _lease.acquire('web1', 'm1', OWNER_A, 'source', 60, phase='FROZEN', lease_dir=ldir, now=T0)
    with pytest.raises(HaulError) as e:
        _lease.acquire('web1', 'm2', OWNER_B, 'source', 60, lease_dir=ldir, now=T0 + 10)
    assert e.value.step == 'lease'
    assert e.value.msg == ('lease: web1 is held by migration m1 (root@ctl-a pid 101, source, '
                           'phase FROZEN, expires in 50 s)')
    assert e.value.details['holder']['migration_id'] == 'm1'
    assert _lease.read('web1', lease_dir=ldir)['migration_id'] == 'm1'


def test_same_migration_renews_and_keeps_the_later_phase(ldir):
    _lease.acquire('web1', 'm1', OWNER_A, 'destination', 60, lease_dir=ldir, now=T0)
    _lease.update('web1', 'm1', phase='RESTORED', lease_dir=ldir, now=T0 + 5)
    rec = _lease.acquire('web1', 'm1', OWNER_A, 'destination', 100, lease_dir=ldir, now=T0 + 10)
    assert rec['phase'] == 'RESTORED'
    assert rec['acquired'] == T0 and rec['expires'] == T0 + 110
    with pytest.raises(HaulError, match='as the destination, not the source'):
        _lease.acquire('web1', 'm1', OWNER_A, 'source', 100, lease_dir=ldir, now=T0 + 10)


def test_expired_lease_is_taken_over(ldir):
    _lease.acquire('web1', 'm1', OWNER_A, 'source', 30, phase='FROZEN', lease_dir=ldir, now=T0)
    old = _lease.read('web1', lease_dir=ldir)
    assert not _lease.expired(old, now=T0 + 29.9)
    assert _lease.expired(old, now=T0 + 30)
    rec = _lease.acquire('web1', 'm2', OWNER_B, 'source', 30, lease_dir=ldir, now=T0 + 31)
    assert rec['migration_id'] == 'm2' and rec['phase'] == 'PREPARING' and rec['owner'] == OWNER_B
    assert rec['took_over'] == dict(old, reason='expired')
    # a take-over of a take-over keeps only the last holder, not a growing chain
    rec3 = _lease.acquire('web1', 'm3', OWNER_A, 'source', 30, lease_dir=ldir, now=T0 + 100)
    assert rec3['took_over']['migration_id'] == 'm2' and 'took_over' not in rec3['took_over']
    # the loser finds out at its next step
    with pytest.raises(HaulError, match='held by migration m3'):
        _lease.update('web1', 'm1', phase='DUMPED', lease_dir=ldir, now=T0 + 101)
    with pytest.raises(HaulError, match='not by migration m1'):
        _lease.check('web1', 'm1', lease_dir=ldir)


def test_abandoned_lease_is_taken_over_only_when_named(ldir):
    _lease.acquire('web1', 'm1', OWNER_A, 'source', 600, phase='FROZEN', lease_dir=ldir, now=T0)
    with pytest.raises(HaulError, match='held by migration m1'):
        _lease.acquire('web1', 'm2', OWNER_B, 'source', 60, lease_dir=ldir, now=T0 + 1, take_over='m0')
    rec = _lease.acquire('web1', 'm2', OWNER_B, 'source', 60, lease_dir=ldir, now=T0 + 1, take_over='m1')
    assert rec['migration_id'] == 'm2' and rec['took_over']['reason'] == 'abandoned'
    assert rec['took_over']['phase'] == 'FROZEN'


def test_phases_never_move_backwards(ldir):
    _lease.acquire('web1', 'm1', OWNER_A, 'source', 60, lease_dir=ldir, now=T0)
    for phase in _phases.PHASES:
        assert _lease.update('web1', 'm1', phase=phase, lease_dir=ldir, now=T0)['phase'] == phase
    for phase in _phases.PHASES:
        assert _lease.update('web1', 'm1', phase=phase, lease_dir=ldir, now=T0)['phase'] == 'DONE'
    assert _lease.acquire('web1', 'm1', OWNER_A, 'source', 60, phase='FROZEN', lease_dir=ldir,
                          now=T0)['phase'] == 'DONE'
    with pytest.raises(HaulError, match='unknown phase'):
        _lease.update('web1', 'm1', phase='THAWED', lease_dir=ldir, now=T0)


def test_update_renews_adds_fields_and_refuses_core_keys(ldir):
    _lease.acquire('web1', 'm1', OWNER_A, 'source', 60, lease_dir=ldir, now=T0)
    rec = _lease.update('web1', 'm1', ttl_s=5, lease_dir=ldir, now=T0 + 100, pid=4242)
    assert rec['expires'] == T0 + 105 and rec['pid'] == 4242 and rec['phase'] == 'PREPARING'
    assert _lease.read('web1', lease_dir=ldir) == rec
    with pytest.raises(HaulError, match='cannot change owner, role'):
        _lease.update('web1', 'm1', lease_dir=ldir, role='destination', owner={})


def test_update_of_an_absent_lease_fails(ldir):
    with pytest.raises(HaulError, match='web1 has no lease here: migration m1 lost it'):
        _lease.update('web1', 'm1', phase='FROZEN', lease_dir=ldir)
    with pytest.raises(HaulError, match='does not hold it'):
        _lease.check('web1', 'm1', lease_dir=ldir)


def test_release_only_our_own(ldir):
    assert _lease.release('web1', 'm1', lease_dir=ldir) is False  # no directory yet
    _lease.acquire('web1', 'm1', OWNER_A, 'source', 60, lease_dir=ldir, now=T0)
    assert _lease.release('web1', 'm2', lease_dir=ldir) is False
    assert _lease.check('web1', 'm1', lease_dir=ldir)['migration_id'] == 'm1'
    assert _lease.release('web1', 'm1', lease_dir=ldir) is True
    assert os.listdir(ldir) == []  # neither the record nor the lock file is left
    assert _lease.read('web1', lease_dir=ldir) is None
    assert _lease.release('web1', 'm1', lease_dir=ldir) is False


def test_describe_and_expired(ldir):
    assert _lease.describe(None) == 'nobody'
    rec = _lease.acquire('web1', 'm1', {'host': 'ctl'}, 'destination', 60, lease_dir=ldir, now=T0)
    assert _lease.describe(rec, now=T0 + 100) == ('migration m1 (ctl, destination, phase PREPARING, '
                                                  'expired 40 s ago)')
    assert _lease.expired({}, now=T0)
    assert _lease.expired({'expires': 'soon'}, now=T0)


@pytest.mark.parametrize('name', ['', '.', '..', 'a/b', 'a\nb', '.hidden', None])
def test_bad_names_are_refused(ldir, name):
    with pytest.raises(HaulError, match='bad container name'):
        _lease.acquire(name, 'm1', OWNER_A, 'source', 60, lease_dir=ldir)


@pytest.mark.parametrize('kwargs, match', [
    ({'role': 'both'}, 'bad role'),
    ({'ttl_s': 0}, 'bad lease ttl'),
    ({'ttl_s': 'x'}, 'bad lease ttl'),
    ({'migration_id': '../x'}, 'bad migration id'),
    ({'phase': 'nope'}, 'unknown phase'),
])
def test_bad_arguments_are_refused(ldir, kwargs, match):
    args = {'name': 'web1', 'migration_id': 'm1', 'owner': OWNER_A, 'role': 'source', 'ttl_s': 60,
            'lease_dir': ldir}
    args.update(kwargs)
    with pytest.raises(HaulError, match=match):
        _lease.acquire(**args)
    assert not os.path.exists(os.path.join(ldir, 'web1.json'))


def test_a_torn_or_foreign_record_is_refused_not_overwritten(ldir):
    os.makedirs(ldir)
    with open(os.path.join(ldir, 'web1.json'), 'w') as f:
        f.write('{"half": ')
    with pytest.raises(HaulError, match='is not a lease record'):
        _lease.acquire('web1', 'm1', OWNER_A, 'source', 60, lease_dir=ldir)


def test_write_failure_is_a_lease_error_and_leaves_no_temp_file(ldir, monkeypatch):
    _lease.acquire('web1', 'm1', OWNER_A, 'source', 60, lease_dir=ldir, now=T0)

    def enospc(fd):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(_lease.os, 'fsync', enospc)
    with pytest.raises(HaulError, match='cannot write the lease .*No space left'):
        _lease.update('web1', 'm1', phase='FROZEN', lease_dir=ldir)
    monkeypatch.undo()
    assert _lease.read('web1', lease_dir=ldir)['phase'] == 'PREPARING'
    assert sorted(os.listdir(ldir)) == ['web1.json', 'web1.lock']


def test_durability_path_fsyncs_file_and_directory(ldir, monkeypatch):
    calls = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd):
        calls.append(('fsync', stat.S_ISDIR(os.fstat(fd).st_mode)))
        real_fsync(fd)

    def rename(a, b):
        calls.append(('rename', os.path.basename(b)))
        real_rename(a, b)

    monkeypatch.setattr(_lease.os, 'fsync', fsync)
    monkeypatch.setattr(_lease.os, 'rename', rename)
    _lease.acquire('web1', 'm1', OWNER_A, 'source', 60, lease_dir=ldir)
    assert calls == [('fsync', False), ('rename', 'web1.json'), ('fsync', True)]


def test_lock_wait_is_bounded(ldir, monkeypatch):
    monkeypatch.setattr(_lease, 'LOCK_TIMEOUT_S', 0.2)
    with _lease._locked('web1', ldir):
        with pytest.raises(HaulError, match='stayed held'):
            with _lease._locked('web1', ldir, timeout=0.2):
                pass


def _contender(ldir, mid, start, out):
    start.wait()
    try:
        rec = _lease.acquire('web1', mid, {'host': mid, 'pid': os.getpid()}, 'source', 60, lease_dir=ldir)
        out.put((mid, 'won', rec['migration_id']))
    except HaulError as e:
        out.put((mid, 'lost', e.msg))


def test_two_processes_at_once_one_owner(ldir):
    ctx = multiprocessing.get_context('fork')
    for _round in range(5):
        start, out = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_contender, args=(ldir, 'm%d' % i, start, out)) for i in range(4)]
        for p in procs:
            p.start()
        start.set()
        results = [out.get(timeout=30) for p in procs]
        for p in procs:
            p.join(30)
        won = [r for r in results if r[1] == 'won']
        assert len(won) == 1, results
        winner = won[0][0]
        for r in results:
            if r[1] == 'lost':
                assert 'web1 is held by migration %s' % winner in r[2]
        assert _lease.read('web1', lease_dir=ldir)['migration_id'] == winner
        assert _lease.release('web1', winner, lease_dir=ldir)


def _churn(ldir, mid, rounds, out):
    held = 0
    try:
        for _i in range(rounds):
            try:
                _lease.acquire('web1', mid, {'host': mid}, 'source', 60, lease_dir=ldir)
            except HaulError:
                continue
            # while we hold it nobody else may: the record must stay ours until we release it
            _lease.check('web1', mid, lease_dir=ldir)
            _lease.update('web1', mid, phase='FROZEN', lease_dir=ldir)
            assert _lease.release('web1', mid, lease_dir=ldir)
            held += 1
    except (HaulError, AssertionError) as e:
        out.put((mid, 'two owners: %s' % e))
        return
    out.put((mid, held))


def test_release_and_reacquire_race_never_gives_two_owners(ldir):
    """The lock file is removed on release: waiters on the old file must start again."""
    ctx = multiprocessing.get_context('fork')
    out = ctx.Queue()
    procs = [ctx.Process(target=_churn, args=(ldir, 'm%d' % i, 150, out)) for i in range(3)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for p in procs]
    for p in procs:
        p.join(30)
    assert all(isinstance(h, int) for _m, h in results), results
    assert sum(h for _m, h in results) > 0
    assert os.listdir(ldir) == []


def test_current_owner_and_liveness():
    me = _lease.current_owner(user='root', host='ctl')
    assert me['host'] == 'ctl' and me['user'] == 'root' and me['boot_id']
    assert me['pid'] == _lease.controller_pid()
    if me['pid'] is None:  # pytest does not run under ansible-playbook: an unknown owner is never dead
        assert _lease.owner_alive(me, host='ctl') is None
        me = dict(me, pid=os.getpid(), start_ticks=int(_lease._stat_fields(os.getpid())[19]))
    assert _lease.owner_alive(me, host='ctl') is True
    assert _lease.owner_alive(dict(me, start_ticks=me['start_ticks'] + 1), host='ctl') is False
    assert _lease.owner_alive(me, host='other') is None
    assert _lease.owner_alive(dict(me, boot_id='x'), host='ctl') is None
    assert _lease.owner_alive({'host': 'ctl'}, host='ctl') is None
    ctx = multiprocessing.get_context('fork')
    child = ctx.Process(target=os.getpid)
    child.start()
    child.join()
    assert _lease.owner_alive(dict(me, pid=child.pid, start_ticks=None), host='ctl') is False


def test_controller_pid_finds_its_own_ansible_playbook(tmp_path):
    proc = tmp_path
    outer = '/venv/bin/python /venv/bin/ansible-playbook run_target.yml'
    inner = '/venv/bin/python /venv/bin/ansible-playbook haul.live.migrate'
    tree = {1: (0, 'init'), 50: (1, 'bash'), 60: (50, outer), 61: (60, outer),
            70: (61, '/usr/bin/python3 AnsiballZ_command.py'), 80: (70, inner), 81: (80, inner), 82: (81, 'sh -c x')}
    for pid, (ppid, cmd) in tree.items():
        (proc / str(pid)).mkdir()
        (proc / str(pid) / 'stat').write_text('%d (x y) S %d %s\n' % (pid, ppid, ' '.join(['0'] * 20)))
        (proc / str(pid) / 'cmdline').write_text(cmd.replace(' ', '\0'))
    assert _lease.controller_pid(82, proc=str(proc)) == 80  # the inner play's main process, not the outer one
    assert _lease.controller_pid(81, proc=str(proc)) == 80
    assert _lease.controller_pid(61, proc=str(proc)) == 60
    assert _lease.controller_pid(50, proc=str(proc)) is None  # no ansible-playbook above: unknown
