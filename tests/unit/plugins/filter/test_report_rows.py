# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The report rows of a rolling update's hosts (host_row) and of the containers updated in place (in_place_row)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.haul.live.plugins.filter.host_row import host_row
from ansible_collections.haul.live.plugins.filter.in_place_row import in_place_row


def test_host_row_has_a_migration_rows_keys():
    row = host_row('node1', 'failed', 'maintenance', 'node1 stays cordoned')
    assert row == {'kind': 'host', 'name': 'host node1', 'source': 'node1', 'destination': '-',
                   'strategy': 'update', 'frozen_ms': 0, 'bytes': 0, 'result': 'failed',
                   'step': 'maintenance', 'msg': 'node1 stays cordoned'}


def test_host_row_defaults_to_empty_step_and_msg():
    row = host_row('node2', 'updated')
    assert (row['step'], row['msg']) == ('', '')
    row = host_row('node2', 'skipped', None, None)
    assert (row['step'], row['msg']) == ('', '')


@pytest.mark.parametrize('result', ['moved', 'ok', '', None])
def test_host_row_refuses_an_unknown_result(result):
    with pytest.raises(AnsibleFilterError, match='result must be one of'):
        host_row('node1', result)


def test_in_place_row_is_a_container_row_on_one_host():
    row = in_place_row('web1', 'node1', 'restored', 'restore', 'down 4.2 s', 4200, 1024)
    assert row == {'name': 'web1', 'source': 'node1', 'destination': 'node1', 'strategy': 'in-place',
                   'frozen_ms': 4200, 'bytes': 1024, 'result': 'restored', 'step': 'restore', 'msg': 'down 4.2 s'}
    assert 'kind' not in row


def test_in_place_row_takes_text_numbers_and_refuses_others():
    assert in_place_row('web1', 'node1', 'failed', down_ms='12', bytes='0')['frozen_ms'] == 12
    with pytest.raises(AnsibleFilterError, match='whole numbers'):
        in_place_row('web1', 'node1', 'failed', down_ms='soon')
    with pytest.raises(AnsibleFilterError, match='result must be one of'):
        in_place_row('web1', 'node1', 'moved')
