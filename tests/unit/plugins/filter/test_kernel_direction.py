# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for the kernel_direction filter (the preflight role's statement about two kernels)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.haul.live.plugins.filter.kernel_direction import FilterModule, kernel_direction


def test_filter_reads_the_haul_criu_facts():
    src = {'kernel': '6.1.0-50-cloud-amd64', 'features': {'timens': True}}
    dst = {'kernel': '6.12.117+deb13-cloud-amd64', 'features': {'timens': True}}
    out = FilterModule().filters()['kernel_direction'](src, dst, 'vm1', 'vm2')
    assert out['direction'] == 'newer' and out['supported'] is True
    assert ' on vm1 -> ' in out['statement'] and ' on vm2: ' in out['statement']


def test_filter_without_features_and_names():
    out = kernel_direction({'kernel': '6.12.1'}, {'kernel': '6.1.0'})
    assert out['direction'] == 'older' and out['supported'] is True
    assert 'on the source -> 6.1.0 on the destination' in out['statement']


def test_filter_refuses_what_is_not_facts():
    with pytest.raises(AnsibleFilterError, match='haul_criu facts'):
        kernel_direction('6.1', {'kernel': '6.1'})
