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


def test_freeze_for_criu_freezes_the_freezer_criu_uses(monkeypatch):
    made = []

    class FakeCgroup(object):
        def __init__(self, path, version='auto', step='cgroup'):
            made.append((path, version, step))

        def freeze(self, timeout=10):
            made.append(('freeze', timeout))
            return True

    monkeypatch.setattr(_checkpoint._cgroup, 'Cgroup', FakeCgroup)
    hybrid = types.SimpleNamespace(version='v2', path='/sys/fs/cgroup/unified/haul/ct',
                                   twins=['/sys/fs/cgroup/freezer/haul/ct'])
    _checkpoint._freeze_for_criu(hybrid, 7)
    assert made == [('/sys/fs/cgroup/freezer/haul/ct', 'v1', 'freeze'), ('freeze', 7)]
    del made[:]
    _checkpoint._freeze_for_criu(types.SimpleNamespace(version='v2', path='/sys/fs/cgroup/haul/ct', twins=[]), 3)
    assert made == [('/sys/fs/cgroup/haul/ct', 'v2', 'freeze'), ('freeze', 3)]


class _Fz(object):
    """A freezer that records what is done to it."""

    def __init__(self, path, log, version='v2', step='cgroup'):
        self.path, self.version, self.log, self.frozen = path, version, log, False

    def freeze(self, timeout=10):
        self.frozen = True
        self.log.append(('freeze', self.path))

    def thaw(self, timeout=10):
        self.frozen = False
        self.log.append(('thaw', self.path))

    def state(self):
        return 'frozen' if self.frozen else 'thawed'

    def pids(self):
        return [42]


def test_hold_frozen_holds_with_its_own_freezer_and_releases_criu_s(monkeypatch):
    log = []
    made = {}

    def cgroup(path, version='auto', step='cgroup'):
        made[path] = _Fz(path, log, version, step)
        return made[path]

    mod = types.SimpleNamespace(Cgroup=cgroup, sigcont_tree=lambda pids: log.append(('sigcont', tuple(pids))))
    cg = _Fz('/sys/fs/cgroup/unified/haul/ct', log)
    criu_fz = _Fz('/sys/fs/cgroup/freezer/haul/ct', log, 'v1')
    criu_fz.frozen = True
    _checkpoint._hold_frozen(cg, 5, mod, criu_fz)
    assert log == [('freeze', cg.path), ('sigcont', (42,)), ('thaw', criu_fz.path)]
    assert made[cg.path].frozen and not criu_fz.frozen
