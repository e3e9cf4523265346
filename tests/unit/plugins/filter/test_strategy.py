# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for the haul.live.strategy filter: its two ways of refusing."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.haul.live.plugins.filter.strategy import FilterModule

LAB = {'hostname': 'node1', 'precopy_possible': False, 'lazy_pages_possible': True,
       'features': {'mem_dirty_track': False, 'uffd': True, 'uffd_noncoop': True}}
strategy = FilterModule().filters()['strategy']


def test_a_possible_strategy_is_returned_with_its_reason():
    plan = strategy('postcopy', LAB, dict(LAB, hostname='node2'), errors='return')
    assert plan['strategy'] == 'postcopy' and 'node1 and node2 support userfaultfd' in plan['reason']
    assert 'error' not in plan


def test_strict_refusal_fails_the_templating():
    with pytest.raises(AnsibleFilterError, match='CONFIG_MEM_SOFT_DIRTY'):
        strategy('hybrid', LAB, LAB)


def test_returned_refusal_is_one_plain_sentence():
    plan = strategy('precopy', LAB, LAB, errors='return')
    assert plan['strategy'] is None and plan['predicted_freeze_ms'] is None
    assert plan['error'] == "precopy needs memory dirty tracking on the source: node1's kernel has no CONFIG_MEM_SOFT_DIRTY"
    with pytest.raises(AnsibleFilterError, match='errors must be strict or return'):
        strategy('stopcopy', LAB, LAB, errors='ignore')
