# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The report row a rolling update gives each host (host_row)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.haul.live.plugins.filter.host_row import host_row


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
