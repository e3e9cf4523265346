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


def test_v2_freezer_on_a_host_without_child_cgroups(tmp_path):
    """A host without systemd has no child cgroup yet (the VM lab's): the root cgroup has no
    cgroup.freeze, and the kernel's version decides; a child with or without it decides otherwise."""
    from ansible_collections.haul.live.plugins.module_utils._facts import v2_has_freezer  # pylint: disable=import-outside-toplevel
    root = tmp_path / 'cgroup'
    root.mkdir()
    (root / 'cgroup.procs').write_text('1\n')
    assert v2_has_freezer(str(root), '6.1.0-50-cloud-amd64')
    assert not v2_has_freezer(str(root), '4.19.0-27-amd64')
    assert not v2_has_freezer(str(root), 'weird')
    child = root / 'haul'
    child.mkdir()
    (child / 'cgroup.procs').write_text('')
    assert not v2_has_freezer(str(root), '6.1.0-50-cloud-amd64')  # a child without it: no freezer
    (child / 'cgroup.freeze').write_text('0\n')
    assert v2_has_freezer(str(root), '4.19.0-27-amd64')
