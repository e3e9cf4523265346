# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The rebalance policy: hosts above high are relieved with the fewest moves, onto hosts below low."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.haul.live.plugins.module_utils._rebalance import plan

MIB = 1024 * 1024
CAP = 1000 * MIB


def host(name, *sizes, **kw):
    cts = [{'name': '%s-c%d' % (name, i), 'memory_bytes': s * MIB} for i, s in enumerate(sizes)]
    h = {'host': name, 'capacity_bytes': kw.get('capacity', CAP), 'containers': cts}
    if kw.get('cordon'):
        h['cordon'] = {'reason': kw['cordon']}
    return h


def moves(p):
    return [(m['container'], m['source'], m['destination']) for m in p['moves']]


def test_nothing_to_do_when_every_host_is_below_high():
    p = plan([host('a', 500), host('b', 100)], 0.8, 0.5, 4)
    assert p['moves'] == [] and p['unresolved'] == []
    assert p['loads']['a'] == {'before': 0.5, 'after': 0.5}


def test_one_move_suffices_the_smallest_container_that_is_enough_moves():
    # a is at 90 %, 100 MiB over high: c1 (150) and c2 (300) are each enough; the smaller moves
    p = plan([host('a', 450, 150, 300), host('b', 100)], 0.8, 0.5, 4)
    assert moves(p) == [('a-c1', 'a', 'b')]
    assert p['loads']['a']['after'] == 0.75 and p['loads']['b']['after'] == 0.25
    assert p['moves'][0]['memory_bytes'] == 150 * MIB


def test_fewest_moves_take_the_largest_first_when_none_is_enough_alone():
    # a is at 100 %, 200 MiB over high, each container is 100: two moves, not more
    p = plan([host('a', 100, 100, 100, 100, 100, 100, 100, 100, 100, 100), host('b'), host('c')], 0.8, 0.5, 10)
    assert len(p['moves']) == 2
    assert p['loads']['a']['after'] == 0.8
    # spread: the second goes to the least loaded host after the move (c, as b took the first)
    assert [m['destination'] for m in p['moves']] == ['b', 'c']


def test_the_most_loaded_host_is_relieved_first():
    p = plan([host('a', 450, 400), host('b', 550, 400), host('c')], 0.8, 0.5, 1)
    assert moves(p) == [('b-c1', 'b', 'c')]
    assert p['unresolved'] == [{'host': 'a', 'load': 0.85, 'reason': 'haul_rebalance_max_moves (1) reached'}]


def test_only_hosts_below_low_take_and_none_is_pushed_above_high():
    # b is at 60 % (above low): it takes nothing; c is below low but 450 MiB would push it over high
    p = plan([host('a', 900), host('b', 600), host('c', 400)], 0.8, 0.5, 4)
    assert p['moves'] == []
    assert p['unresolved'][0]['host'] == 'a'
    assert 'no host below low (50%)' in p['unresolved'][0]['reason']


def test_headroom_counts_on_the_destination():
    # c at 40 %: 400 + 400 * 1.1 = 840 > 800 with headroom, fits without
    assert plan([host('a', 500, 400), host('c', 400)], 0.8, 0.5, 4)['moves'] == []
    assert moves(plan([host('a', 500, 400), host('c', 400)], 0.8, 0.5, 4, headroom=0)) == [('a-c1', 'a', 'c')]


def test_cordoned_hosts_neither_take_nor_are_relieved():
    p = plan([host('a', 500, 400, cordon='drain'), host('b', 500, 400), host('c', cordon='kernel'), host('d')], 0.8, 0.5, 4)
    assert moves(p) == [('b-c1', 'b', 'd')]
    assert [u['host'] for u in p['unresolved']] == []


def test_a_name_that_runs_on_the_destination_is_never_sent_there():
    a = host('a', 500, 400)
    b = {'host': 'b', 'capacity_bytes': CAP, 'containers': [{'name': 'a-c1', 'memory_bytes': 1}]}
    p = plan([a, b, host('c')], 0.8, 0.5, 4)
    assert moves(p) == [('a-c1', 'a', 'c')]


def test_capacity_differs_per_host():
    # b has twice the capacity: 300 MiB is 15 % of it, and it is chosen over c (30 %)
    p = plan([host('a', 500, 400), host('b', 0, capacity=2000 * MIB), host('c', 0)], 0.8, 0.5, 4)
    assert p['moves'][0]['destination'] == 'b'


def test_ties_go_to_the_host_listed_first():
    assert plan([host('a', 500, 400), host('c'), host('b')], 0.8, 0.5, 4)['moves'][0]['destination'] == 'c'


def test_extra_keys_are_carried_into_the_move():
    a = {'host': 'a', 'capacity_bytes': CAP, 'containers': [{'name': 'web', 'memory_bytes': 400 * MIB, 'runtime': 'lab'},
                                                            {'name': 'db', 'memory_bytes': 500 * MIB}]}
    m = plan([a, host('b')], 0.8, 0.5, 4)['moves'][0]
    assert m == {'container': 'web', 'source': 'a', 'destination': 'b', 'memory_bytes': 400 * MIB, 'runtime': 'lab'}


def test_max_moves_zero_plans_nothing():
    p = plan([host('a', 900), host('b')], 0.8, 0.5, 0)
    assert p['moves'] == [] and p['unresolved'][0]['host'] == 'a'


@pytest.mark.parametrize('kw, match', [
    (dict(high=1.2, low=0.5, max_moves=1), 'high must be between 0 and 1'),
    (dict(high='lots', low=0.5, max_moves=1), 'high must be a number'),
    (dict(high=0.5, low=0.8, max_moves=1), 'must not be above high'),
    (dict(high=0.8, low=0.5, max_moves=-1), 'max_moves must be 0 or more'),
    (dict(high=0.8, low=0.5, max_moves='x'), 'max_moves must be a whole number'),
])
def test_bad_marks_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        plan([host('a')], **kw)


@pytest.mark.parametrize('hosts, match', [
    ([{'capacity_bytes': CAP}], 'has no name'),
    ([host('a'), host('a')], 'listed twice'),
    ([{'host': 'a', 'capacity_bytes': 0}], 'has no capacity'),
    ([{'host': 'a', 'capacity_bytes': CAP, 'containers': [{'memory_bytes': 1}]}], 'a container on a has no name'),
])
def test_bad_hosts_are_refused(hosts, match):
    with pytest.raises(ValueError, match=match):
        plan(hosts, 0.8, 0.5, 1)


def cpu_host(name, *cores, **kw):
    cts = [{'name': '%s-c%d' % (name, i), 'cpu_cores': c} for i, c in enumerate(cores)]
    return {'host': name, 'capacity_cpus': kw.get('cpus', 4), 'containers': cts}


def test_by_cpu_relieves_the_busiest_host_with_the_fewest_moves():
    # a keeps 3.2 of its 4 CPUs busy (0.8 > high 0.6): c1 (1.0) alone brings it to 0.55
    p = plan([cpu_host('a', 1.6, 1.0, 0.6), cpu_host('b', 0.2), cpu_host('c', 0.4, cpus=8)], 0.6, 0.3, 4, by='cpu')
    assert moves(p) == [('a-c1', 'a', 'c')]  # c: 0.05 -> 0.175, b would be at 0.3
    assert p['moves'][0]['cpu_cores'] == 1.0
    assert p['loads']['a'] == {'before': 0.8, 'after': 0.55}


def test_by_cpu_a_host_with_text_numbers_and_a_bad_one():
    # facts may arrive as text; a weight that is no number is refused, naming the container
    p = plan([{'host': 'a', 'capacity_cpus': '2', 'containers': [{'name': 'x', 'cpu_cores': '1.5'}]},
              {'host': 'b', 'capacity_cpus': 2, 'containers': []}], 0.5, 0.3, 1, by='cpu')
    # x would put b at 0.825 (with its headroom): above high, so a stays, with the reason
    assert moves(p) == [] and p['loads']['a']['before'] == 0.75
    assert p['unresolved'][0]['host'] == 'a' and 'no host below low (30%)' in p['unresolved'][0]['reason']
    with pytest.raises(ValueError, match='container x on a: cpu_cores must be a number'):
        plan([{'host': 'a', 'capacity_cpus': 2, 'containers': [{'name': 'x', 'cpu_cores': 'busy'}]}], 0.5, 0.3, 1, by='cpu')
    with pytest.raises(ValueError, match='capacity_cpus must be > 0'):
        plan([{'host': 'a', 'containers': []}], 0.5, 0.3, 1, by='cpu')
    with pytest.raises(ValueError, match='by must be one of cpu, memory'):
        plan([], 0.5, 0.3, 1, by='disk')
    with pytest.raises(ValueError, match='a share of CPU'):
        plan([], 1.5, 0.3, 1, by='cpu')
