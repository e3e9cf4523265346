# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for the migration_lease module: its argspec and what each state does."""

from __future__ import annotations

import pytest

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.haul.live.plugins.modules import migration_lease
from ansible_collections.haul.live.plugins.module_utils import _lease
from ansible_collections.haul.live.plugins.module_utils._common import HaulError

OWNER = {'host': 'ctl', 'pid': 1, 'user': 'root'}


def validate(**params):
    validator = ArgumentSpecValidator(migration_lease.argument_spec(), required_if=migration_lease.REQUIRED_IF)
    res = validator.validate(params)
    res.problems = [err.args[0] for err in res.errors.errors]
    return res


def test_argspec_defaults():
    res = validate(name='web1', migration_id='m1', role='source')
    assert not res.problems
    p = res.validated_parameters
    assert p['state'] == 'present' and p['ttl'] == 1320 and p['phase'] == 'PREPARING'
    assert p['lease_dir'] == _lease.LEASE_DIR and p['owner'] == {}


@pytest.mark.parametrize('params, error', [
    ({'name': 'web1', 'role': 'source'}, 'migration_id'),
    ({'name': 'web1', 'migration_id': 'm1'}, 'role'),
    ({'name': 'web1', 'state': 'absent'}, 'migration_id'),
    ({'name': 'web1', 'migration_id': 'm1', 'role': 'both'}, 'role'),
    ({'name': 'web1', 'migration_id': 'm1', 'role': 'source', 'phase': 'THAWED'}, 'phase'),
    ({'migration_id': 'm1', 'state': 'absent'}, 'name'),
])
def test_argspec_refuses(params, error):
    res = validate(**params)
    assert res.problems and error in res.problems[0]


def test_argspec_query_needs_only_the_name():
    assert not validate(name='web1', state='query').problems


class FakeModule:
    def __init__(self, check_mode=False, **params):
        res = validate(**params)
        assert not res.problems, res.problems
        self.params = res.validated_parameters
        self.check_mode = check_mode


@pytest.fixture
def ldir(tmp_path):
    return str(tmp_path / 'leases')


def run(ldir, check_mode=False, **params):
    params.setdefault('name', 'web1')
    return migration_lease.run(FakeModule(check_mode=check_mode, lease_dir=ldir, **params))


def test_present_takes_then_renews_without_change(ldir):
    res = run(ldir, migration_id='m1', role='source', owner=OWNER, ttl=60)
    assert res['changed'] and res['lease']['migration_id'] == 'm1' and not res['expired']
    again = run(ldir, migration_id='m1', role='source', owner=OWNER, ttl=60)
    assert not again['changed'] and again['lease']['expires'] >= res['lease']['expires']
    later = run(ldir, migration_id='m1', role='source', owner=OWNER, ttl=60, phase='FROZEN')
    assert later['changed'] and later['lease']['phase'] == 'FROZEN'


def test_present_refused_names_the_holder_also_in_check_mode(ldir):
    run(ldir, migration_id='m1', role='source', owner=OWNER, ttl=60)
    for check_mode in (True, False):
        with pytest.raises(HaulError) as e:
            run(ldir, check_mode=check_mode, migration_id='m2', role='source', ttl=60)
        assert 'web1 is held by migration m1 (root@ctl pid 1, source, phase PREPARING' in e.value.msg
        assert e.value.details['holder']['migration_id'] == 'm1'
    assert _lease.read('web1', ldir)['migration_id'] == 'm1'


def test_check_mode_takes_nothing(ldir):
    res = run(ldir, check_mode=True, migration_id='m1', role='source', ttl=60)
    assert res['changed'] and _lease.read('web1', ldir) is None


def test_take_over_an_abandoned_lease(ldir):
    run(ldir, migration_id='m1', role='source', owner=OWNER, ttl=600)
    res = run(ldir, migration_id='m2', role='source', ttl=60, take_over='m1')
    assert res['lease']['took_over']['migration_id'] == 'm1'
    assert res['lease']['took_over']['reason'] == 'abandoned'


def test_query_and_absent(ldir):
    assert run(ldir, state='query')['lease'] is None
    run(ldir, migration_id='m1', role='destination', owner=OWNER, ttl=60)
    q = run(ldir, state='query', migration_id='m2')
    assert q['holder']['migration_id'] == 'm1' and 'migration m1' in q['holder_text'] and not q['changed']
    assert run(ldir, state='query', migration_id='m1').get('holder') is None
    other = run(ldir, state='absent', migration_id='m2')
    assert not other['changed'] and not other['released'] and other['holder']['migration_id'] == 'm1'
    check = run(ldir, check_mode=True, state='absent', migration_id='m1')
    assert check['changed'] and _lease.read('web1', ldir)
    mine = run(ldir, state='absent', migration_id='m1')
    assert mine['changed'] and mine['released'] and mine['lease'] is None
    assert not run(ldir, state='absent', migration_id='m1')['changed']


def test_resolve_reads_the_phase_of_the_migration_in_doubt(ldir):
    run(ldir, migration_id='m1', role='source', owner=OWNER, ttl=60, phase='COMMITTED')
    seen = {'reachable': True, 'copy': 'stopped', 'receiver_alive': False, 'decided': 'abort', 'lease': True}
    res = run(ldir, state='resolve', migration_id='m1', source_state='frozen', destination=seen)
    assert not res['changed']
    r = res['resolution']
    assert r['phase'] == 'COMMITTED' and r['result'] == 'rolled-back'
    assert r['actions'] == ['remove-destination-copy', 'thaw-source']
    # a re-run took the lease over: the record of m1 is found under took_over
    run(ldir, migration_id='m2', role='source', ttl=60, take_over='m1')
    r = run(ldir, state='resolve', migration_id='m1', source_state='frozen',
            destination=dict(seen, copy='running'))['resolution']
    assert r['phase'] == 'COMMITTED' and r['result'] == 'moved' and r['actions'] == ['kill-source-remains']
    # unreachable: in doubt
    r = run(ldir, state='resolve', migration_id='m1', source_state='frozen', destination={'reachable': False})['resolution']
    assert r['result'] == 'in-doubt'
    # another migration's phase is never used: nothing recorded for m3
    r = run(ldir, state='resolve', migration_id='m3', source_state='frozen', destination=seen)['resolution']
    assert r['phase'] is None and r['result'] == 'nothing'
    assert _lease.read('web1', ldir)['migration_id'] == 'm2'


def test_resolve_bad_destination(ldir):
    with pytest.raises(HaulError):
        run(ldir, state='resolve', migration_id='m1', source_state='frozen',
            destination={'reachable': True, 'copy': 'sideways'})
