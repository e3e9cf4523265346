# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for plugins/module_utils/_facts.py (criu_check facts).
"""

from __future__ import annotations

from ansible_collections.haul.live.plugins.module_utils import _facts


# --------------------------------------------------------------------------- facts helpers

CPUINFO = """\
processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 167
model name\t: Intel(R) Xeon(R) Processor
stepping\t: 1
flags\t\t: fpu vme sse2 avx2

processor\t: 1
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 167
model name\t: Intel(R) Xeon(R) Processor
stepping\t: 1
flags\t\t: fpu vme sse2 avx2
"""


def test_parse_cpuinfo():
    cpu = _facts.parse_cpuinfo(CPUINFO)
    assert cpu['vendor'] == 'GenuineIntel'
    assert cpu['family'] == 6 and cpu['model'] == 167 and cpu['stepping'] == 1
    assert cpu['count'] == 2
    assert cpu['flags_count'] == 4
    other = _facts.parse_cpuinfo(CPUINFO.replace('avx2', 'avx512f'))
    assert other['flags_sha256'] != cpu['flags_sha256']
    same_order = _facts.parse_cpuinfo(CPUINFO.replace('fpu vme sse2 avx2', 'avx2 sse2 vme fpu'))
    assert same_order['flags_sha256'] == cpu['flags_sha256']
