# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for plugins/module_utils/_checkpoint.py (criu_dump logic).
"""

from __future__ import annotations

import types

from ansible_collections.haul.live.plugins.module_utils import _checkpoint


def test_criu_freeze_cgroup_prefers_v1_twin():
    cg = types.SimpleNamespace(version='v2', path='/sys/fs/cgroup/unified/haul/ct',
                               twins=['/sys/fs/cgroup/freezer/haul/ct'])
    assert _checkpoint.criu_freeze_cgroup(cg) == '/sys/fs/cgroup/freezer/haul/ct'
    cg.twins = []
    assert _checkpoint.criu_freeze_cgroup(cg) == '/sys/fs/cgroup/unified/haul/ct'
