# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.haul.live.plugins.module_utils._migration import phases as P

# The rule, as a table: (phase, lazy?) -> actions. docs/reliability.md shows the same table.
BEFORE = [P.REMOVE_DESTINATION_COPY, P.THAW_SOURCE]
TABLE = {
    (P.PREPARING, False): [P.REMOVE_DESTINATION_COPY],
    (P.FROZEN, False): BEFORE,
    (P.DUMPED, False): BEFORE,
    (P.SENT, False): BEFORE,
    (P.RESTORED, False): BEFORE,
    (P.COMMITTED, False): [P.REPORT_IN_DOUBT],
    (P.RESUMED, False): [P.KILL_SOURCE_REMAINS],
    (P.DONE, False): [P.NOTHING],
    (P.PREPARING, True): [P.REMOVE_DESTINATION_COPY],
    (P.FROZEN, True): BEFORE,
    (P.DUMPED, True): BEFORE,
    (P.SENT, True): BEFORE,
    (P.RESTORED, True): BEFORE,
    (P.COMMITTED, True): [P.FINISH_TRANSFER, P.REPORT_IN_DOUBT],
    (P.RESUMED, True): [P.FINISH_TRANSFER],
    (P.DONE, True): [P.NOTHING],
}


@pytest.mark.parametrize('strategy', P.STRATEGIES)
@pytest.mark.parametrize('phase', P.PHASES)
def test_every_phase_and_strategy(phase, strategy):
    plan = P.rollback_plan(phase, strategy)
    assert plan == TABLE[(phase, strategy in P.LAZY_STRATEGIES)]
    assert all(a in P.ACTIONS for a in plan)


@pytest.mark.parametrize('strategy', P.STRATEGIES)
@pytest.mark.parametrize('phase', P.PHASES)
def test_the_invariants(phase, strategy):
    for broken in (False, True):
        plan = P.rollback_plan(phase, strategy, transfer_broken=broken)
        if P.committed(phase):
            # at or after COMMITTED the source never resumes
            assert P.THAW_SOURCE not in plan
            assert P.REMOVE_DESTINATION_COPY not in plan
        if P.THAW_SOURCE in plan:
            # the destination's copy is fenced first
            assert plan.index(P.REMOVE_DESTINATION_COPY) < plan.index(P.THAW_SOURCE)
        if P.REPORT_LOST in plan:
            assert strategy in P.LAZY_STRATEGIES and P.committed(phase)


@pytest.mark.parametrize('strategy', P.LAZY_STRATEGIES)
@pytest.mark.parametrize('phase', (P.COMMITTED, P.RESUMED))
def test_postcopy_after_commit_finishes_or_is_lost(phase, strategy):
    assert P.rollback_plan(phase, strategy, transfer_broken=True) == [P.REPORT_LOST, P.KILL_SOURCE_REMAINS]
    assert P.FINISH_TRANSFER in P.rollback_plan(phase, strategy)


def test_transfer_broken_means_nothing_before_commit():
    assert P.rollback_plan(P.SENT, 'postcopy', transfer_broken=True) == BEFORE
    assert P.rollback_plan(P.SENT, 'stopcopy', transfer_broken=True) == BEFORE


def test_unknown_phase_or_strategy():
    with pytest.raises(ValueError):
        P.rollback_plan('FLYING', 'stopcopy')
    with pytest.raises(ValueError):
        P.rollback_plan(P.SENT, 'teleport')


def test_may_thaw_only_what_this_migration_froze():
    rec = {'migration_id': 'm1', 'phase': P.DUMPED}
    assert P.may_thaw(rec, 'm1') == (True, '')
    ok, why = P.may_thaw(rec, 'm2')
    assert not ok and 'm1' in why
    assert not P.may_thaw(None, 'm1')[0]
    assert not P.may_thaw({'migration_id': 'm1', 'phase': P.PREPARING}, 'm1')[0]
    ok, why = P.may_thaw({'migration_id': 'm1', 'phase': P.COMMITTED}, 'm1')
    assert not ok and 'never resumes' in why
    assert not P.may_thaw({'migration_id': 'm1', 'phase': 'BOGUS'}, 'm1')[0]


# ------------------------------------------------------------------ resolving COMMITTED (in doubt)

FROZEN_SOURCE = {'phase': P.COMMITTED, 'state': 'frozen'}


def dest(copy='absent', reachable=True, receiver_alive=False, decided='none', lease=True):
    return {'copy': copy, 'reachable': reachable, 'receiver_alive': receiver_alive, 'decided': decided,
            'lease': lease}


@pytest.mark.parametrize('copy', P.COPY_STATES)
@pytest.mark.parametrize('alive', [True, False])
@pytest.mark.parametrize('decided', P.DECISIONS)
@pytest.mark.parametrize('lease', [True, False])
def test_resolve_invariants(copy, alive, decided, lease):
    """Whatever the destination shows: never two copies; the source resumes only after the
    destination's copy is removed; it never resumes while a copy runs or a receiver may resume one."""
    r = P.resolve_committed(FROZEN_SOURCE, dest(copy, True, alive, decided, lease))
    acts = r['actions']
    assert r['why']
    if P.THAW_SOURCE in acts:
        assert copy != 'running'
        assert decided == 'abort' or not alive
        if copy != 'absent':
            assert acts.index(P.REMOVE_DESTINATION_COPY) < acts.index(P.THAW_SOURCE)
        assert r['result'] == P.RESOLVE_ROLLED_BACK
    if copy == 'running':
        assert r == dict(result=P.RESOLVE_MOVED, actions=[P.KILL_SOURCE_REMAINS], why=r['why'], warning='')
    if P.KILL_SOURCE_REMAINS in acts:
        assert copy == 'running' and P.THAW_SOURCE not in acts and P.REMOVE_DESTINATION_COPY not in acts
    if r['result'] == P.RESOLVE_IN_DOUBT:
        assert acts == [P.REPORT_IN_DOUBT]


@pytest.mark.parametrize('copy', P.COPY_STATES)
@pytest.mark.parametrize('decided', P.DECISIONS)
def test_resolve_unreachable_stays_in_doubt(copy, decided):
    r = P.resolve_committed(FROZEN_SOURCE, dest(copy, reachable=False, decided=decided))
    assert r['result'] == P.RESOLVE_IN_DOUBT and r['actions'] == [P.REPORT_IN_DOUBT]
    assert 'cannot be reached' in r['why']


def test_resolve_destination_runs_it():
    r = P.resolve_committed(FROZEN_SOURCE, dest('running', decided='commit'))
    assert r['result'] == P.RESOLVE_MOVED and r['actions'] == [P.KILL_SOURCE_REMAINS]


def test_resolve_abort_rolls_back_even_with_a_live_receiver():
    r = P.resolve_committed(FROZEN_SOURCE, dest('stopped', receiver_alive=True, decided='abort'))
    assert r['result'] == P.RESOLVE_ROLLED_BACK
    assert r['actions'] == [P.REMOVE_DESTINATION_COPY, P.THAW_SOURCE]
    assert r['warning'] == ''


def test_resolve_live_receiver_deciding_stays_in_doubt():
    for decided in ('none', 'commit'):
        r = P.resolve_committed(FROZEN_SOURCE, dest('stopped', receiver_alive=True, decided=decided))
        assert r['result'] == P.RESOLVE_IN_DOUBT, decided
        assert 'look again' in r['why']


def test_resolve_no_copy_no_receiver_resumes_the_source():
    r = P.resolve_committed(FROZEN_SOURCE, dest('absent'))
    assert r['result'] == P.RESOLVE_ROLLED_BACK and r['actions'] == [P.THAW_SOURCE]
    assert r['warning'] == ''


def test_resolve_after_a_reboot_warns():
    # rebooted: no lease, no receiver, no copy, no decision left
    r = P.resolve_committed(FROZEN_SOURCE, dest('absent', lease=False))
    assert r['result'] == P.RESOLVE_ROLLED_BACK and r['actions'] == [P.THAW_SOURCE]
    assert 'rebooted' in r['warning']
    # the decision survived on disk: a COMMIT was delivered, its copy is gone
    r = P.resolve_committed(FROZEN_SOURCE, dest('absent', decided='commit', lease=False))
    assert r['actions'] == [P.THAW_SOURCE] and 'COMMIT' in r['warning'] and 'lost' in r['warning']


def test_resolve_committed_copy_that_never_resumed():
    r = P.resolve_committed(FROZEN_SOURCE, dest('stopped', decided='commit'))
    assert r['actions'] == [P.REMOVE_DESTINATION_COPY, P.THAW_SOURCE]
    assert 'never resumed' in r['warning']


def test_resolve_source_gone_is_lost_or_moved():
    gone = {'phase': P.COMMITTED, 'state': 'absent'}
    r = P.resolve_committed(gone, dest('absent', lease=False))
    assert r['result'] == P.RESOLVE_LOST and r['actions'] == [P.REPORT_LOST]
    assert 'started again' in r['why']
    r = P.resolve_committed(gone, dest('stopped'))
    assert r['result'] == P.RESOLVE_LOST and r['actions'] == [P.REMOVE_DESTINATION_COPY, P.REPORT_LOST]
    r = P.resolve_committed(gone, dest('running'))
    assert r['result'] == P.RESOLVE_MOVED and r['actions'] == [P.NOTHING]


def test_resolve_not_committed_or_running_source_touches_nothing():
    for phase in P.PHASES:
        if phase != P.COMMITTED:
            r = P.resolve_committed({'phase': phase, 'state': 'frozen'}, dest('stopped'))
            assert r['result'] == P.RESOLVE_NOTHING and r['actions'] == [P.NOTHING]
    r = P.resolve_committed({'phase': P.COMMITTED, 'state': 'running'}, dest('absent'))
    assert r['result'] == P.RESOLVE_NOTHING


def test_resolve_bad_input():
    with pytest.raises(ValueError):
        P.resolve_committed({'phase': 'NOPE', 'state': 'frozen'}, dest())
    with pytest.raises(ValueError):
        P.resolve_committed(FROZEN_SOURCE, dest('weird'))
    with pytest.raises(ValueError):
        P.resolve_committed(FROZEN_SOURCE, dest(decided='maybe'))
    with pytest.raises(ValueError):
        P.resolve_committed({'phase': P.COMMITTED, 'state': 'weird'}, dest())
