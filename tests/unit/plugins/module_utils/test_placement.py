# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.haul.live.plugins.module_utils._placement import plan

MIB = 1024 * 1024


def dest(host, mem_mib, disk_mib=100000, running=()):
    return {'host': host, 'mem_available_bytes': mem_mib * MIB, 'disk_free_bytes': disk_mib * MIB,
            'running': list(running)}


def ct(name, mib):
    return {'name': name, 'memory_bytes': mib * MIB}


def where(p):
    return dict((c['name'], c['destination']) for c in p['placed'])


def test_spreads_by_free_memory_largest_first():
    p = plan([ct('a', 100), ct('b', 1000), ct('c', 300)], [dest('n2', 2000), dest('n3', 1500)])
    assert [c['name'] for c in p['placed']] == ['b', 'c', 'a']
    # b (1100 with headroom) -> n2 leaves 900; c -> n3 (1500) leaves 1170; a -> n3
    assert where(p) == {'b': 'n2', 'c': 'n3', 'a': 'n3'}
    assert p['unplaced'] == []


def test_ties_go_to_the_first_destination():
    p = plan([ct('a', 10)], [dest('n2', 500), dest('n3', 500)])
    assert where(p) == {'a': 'n2'}


def test_never_to_a_host_where_the_name_runs():
    p = plan([ct('a', 10)], [dest('n2', 5000, running=['a']), dest('n3', 500)])
    assert where(p) == {'a': 'n3'}


def test_unplaced_says_why():
    p = plan([ct('big', 4000)], [dest('n2', 1000), dest('n3', 5000, disk_mib=100)])
    assert p['placed'] == []
    reason = p['unplaced'][0]['reason']
    assert 'n2 has 1000 MiB of memory free' in reason
    assert 'n3 has 100 MiB of disk free' in reason


def test_disk_can_be_ignored():
    p = plan([ct('a', 400)], [dest('n2', 1000, disk_mib=1)], need_disk=False)
    assert where(p) == {'a': 'n2'}


def test_memory_is_consumed_as_containers_are_placed():
    p = plan([ct('a', 700), ct('b', 700)], [dest('n2', 1400)])
    assert where(p) == {'a': 'n2'}
    assert p['unplaced'][0]['name'] == 'b'


@pytest.mark.parametrize('containers, destinations, message', [
    ([ct('a', 1)], [], 'no destination'),
    ([ct('a', 1), ct('a', 2)], [dest('n2', 100)], 'listed twice'),
    ([{'memory_bytes': 1}], [dest('n2', 100)], 'without a name'),
])
def test_bad_input(containers, destinations, message):
    with pytest.raises(ValueError, match=message):
        plan(containers, destinations)


def test_a_cordoned_destination_takes_nothing():
    dests = [{'host': 'big', 'mem_available_bytes': 64 * MIB * 1024, 'disk_free_bytes': 64 * MIB * 1024,
              'cordon': {'reason': 'kernel update'}},
             {'host': 'small', 'mem_available_bytes': 512 * MIB, 'disk_free_bytes': 512 * MIB, 'cordon': None}]
    out = plan([{'name': 'a', 'memory_bytes': 100 * MIB}, {'name': 'b', 'memory_bytes': 600 * MIB}], dests)
    assert [(p['name'], p['destination']) for p in out['placed']] == [('a', 'small')]
    assert out['unplaced'][0]['name'] == 'b'
    assert 'big is cordoned (kernel update)' in out['unplaced'][0]['reason']
