# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The survey-friendly readers: lists as comma-separated text (as_list), durations as 30s/5m/1h (duration)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.haul.live.plugins.filter.as_list import as_list
from ansible_collections.haul.live.plugins.filter.duration import duration


@pytest.mark.parametrize('value, expected', [
    (['node2', 'node3'], ['node2', 'node3']),
    ('node2,node3', ['node2', 'node3']),
    ('node2, node3', ['node2', 'node3']),
    ('node2 node3\n', ['node2', 'node3']),
    ('node2', ['node2']),
    ('', []),
    (None, []),
    ([' node2 ', ''], ['node2']),
])
def test_as_list(value, expected):
    assert as_list(value) == expected


@pytest.mark.parametrize('value', [3, {'a': 1}, [['x']], [None]])
def test_as_list_refuses(value):
    with pytest.raises(AnsibleFilterError, match='haul_destinations'):
        as_list(value, 'haul_destinations')


@pytest.mark.parametrize('value, expected', [
    (300, 300), ('300', 300), (' 300 ', 300), (300.0, 300), ('30s', 30), ('5m', 300), ('1h', 3600),
    ('1h30m', 5400), ('2m30s', 150), ('1d', 86400), ('5M', 300), ('0', 0),
])
def test_duration(value, expected):
    assert duration(value) == expected


@pytest.mark.parametrize('value', ['5 minutes', '5x', '', '-1', 'm', '30s5m', True, None, 1.5, [5]])
def test_duration_refuses(value):
    with pytest.raises(AnsibleFilterError, match='haul_timeout must be a duration'):
        duration(value, 'haul_timeout')


def test_duration_minimum():
    assert duration('1s', 'haul_timeout', minimum=1) == 1
    with pytest.raises(AnsibleFilterError, match='at least 1 s'):
        duration('0', 'haul_timeout', minimum=1)
