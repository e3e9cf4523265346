# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for plugins/module_utils/_restore.py (criu_restore logic)."""

from __future__ import annotations

from ansible_collections.haul.live.plugins.module_utils import _restore
from ansible_collections.haul.live.plugins.module_utils._common import HaulError


def test_thaw_restored_thaws_what_criu_restored_frozen(monkeypatch):
    calls = []

    class FakeCgroup(object):
        def __init__(self, path, step='cgroup'):
            calls.append((path, step))

        def thaw(self, timeout=10):
            calls.append(('thaw', timeout))
            return True

    monkeypatch.setattr(_restore._cgroup, 'Cgroup', FakeCgroup)
    _restore._thaw_restored('/haul/ct', 5)
    assert calls == [('/haul/ct', 'restore'), ('thaw', 5)]


def test_thaw_restored_leaves_a_missing_cgroup_to_the_check(monkeypatch):
    def missing(path, step='cgroup'):
        raise HaulError(step, 'cgroup %s does not exist' % path)

    monkeypatch.setattr(_restore._cgroup, 'Cgroup', missing)
    _restore._thaw_restored('/haul/gone', 5)  # no error: _check_restored names what is wrong
