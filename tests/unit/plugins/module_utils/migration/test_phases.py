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
