# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for plugins/module_utils/_container.py: which container (pid or cgroup), its root.
"""

from __future__ import annotations

import os
import types

import pytest

from ansible_collections.haul.live.plugins.module_utils import _container
from ansible_collections.haul.live.plugins.module_utils._common import HaulError


class FakeCgroup:
    base = None  # set by fake_cgroup_mod to a directory below tmp_path

    def __init__(self, path, step='cgroup', **kw):
        if path.strip('/') not in ('haul/ct', 'haul'):
            raise HaulError(step, 'cgroup %s does not exist (looked in /sys/fs/cgroup/%s)' % (path, path))
        self.rel = path.strip('/')
        self.path = os.path.join(self.base, 'unified', self.rel)
        self.version = 'v2'
        self.twins = [os.path.join(self.base, 'freezer', self.rel)]
        if os.path.isdir(os.path.dirname(self.path)):
            os.makedirs(self.path, exist_ok=True)
            with open(os.path.join(self.path, 'cgroup.procs'), 'w') as f:
                f.write('' if self.rel == 'haul' else '40\n41\n')

    @classmethod
    def from_pid(cls, pid, step='cgroup', **kw):
        return cls('haul/ct', step=step)

    def pids(self):
        return [40, 41]


def fake_cgroup_mod(proc):
    FakeCgroup.base = os.path.join(proc, 'cgroupfs')
    os.makedirs(os.path.join(FakeCgroup.base, 'unified', 'haul'), exist_ok=True)
    from ansible_collections.haul.live.plugins.module_utils import _cgroup
    return types.SimpleNamespace(Cgroup=FakeCgroup,
                                 pidns_init=lambda pids, proc=proc: _cgroup.pidns_init(pids, proc=proc))


def test_resolve_target_by_pid(tmp_path, write_proc):
    write_proc(tmp_path, 40, [40, 1])
    write_proc(tmp_path, 41, [41, 2], ppid=40)
    t = _container.resolve_target(pid=40, proc=str(tmp_path), cgroup_mod=fake_cgroup_mod(str(tmp_path)))
    assert t['pid'] == 40
    assert t['cgroup_path'] == '/haul/ct'
    assert t['pids'] == [40, 41]


def test_resolve_target_by_cgroup(tmp_path, write_proc):
    write_proc(tmp_path, 40, [40, 1])
    write_proc(tmp_path, 41, [41, 2], ppid=40)
    t = _container.resolve_target(cgroup='haul/ct', proc=str(tmp_path), cgroup_mod=fake_cgroup_mod(str(tmp_path)))
    assert t['pid'] == 40


def test_resolve_target_missing_pid(tmp_path):
    with pytest.raises(HaulError) as e:
        _container.resolve_target(pid=999999, proc=str(tmp_path), cgroup_mod=fake_cgroup_mod(str(tmp_path)))
    assert e.value.msg == 'identify: pid 999999 does not exist'


def test_resolve_target_pid_not_init(tmp_path, write_proc):
    write_proc(tmp_path, 40, [40, 1])
    write_proc(tmp_path, 41, [41, 2], ppid=40)
    with pytest.raises(HaulError) as e:
        _container.resolve_target(pid=41, proc=str(tmp_path), cgroup_mod=fake_cgroup_mod(str(tmp_path)))
    assert 'pid 41 is pid 2 inside a container\'s pid namespace, not its init' in e.value.msg
    assert 'its init is pid 40' in e.value.msg


def test_resolve_target_pid_not_in_pidns(tmp_path, write_proc):
    write_proc(tmp_path, 30, [30])
    with pytest.raises(HaulError) as e:
        _container.resolve_target(pid=30, proc=str(tmp_path), cgroup_mod=fake_cgroup_mod(str(tmp_path)))
    assert 'not in a pid namespace of its own' in e.value.msg


def test_resolve_target_missing_cgroup(tmp_path):
    with pytest.raises(HaulError) as e:
        _container.resolve_target(cgroup='haul/nope', proc=str(tmp_path), cgroup_mod=fake_cgroup_mod(str(tmp_path)))
    assert e.value.step == 'identify'
    assert 'does not exist' in e.value.msg


def test_resolve_target_parent_cgroup(tmp_path, write_proc):
    proc = tmp_path / 'proc'
    write_proc(proc, 40, [40, 1])
    write_proc(proc, 41, [41, 2], ppid=40)
    with pytest.raises(HaulError) as e:
        _container.resolve_target(cgroup='haul', proc=str(proc), cgroup_mod=fake_cgroup_mod(str(proc)))
    assert 'holds no pid-namespace init' in e.value.msg
    assert "pid 40 below it is one: give the container's own cgroup" in e.value.msg


def test_resolve_target_cgroup_without_init(tmp_path, write_proc):
    write_proc(tmp_path, 40, [40])
    write_proc(tmp_path, 41, [41])
    with pytest.raises(HaulError) as e:
        _container.resolve_target(cgroup='haul/ct', proc=str(tmp_path), cgroup_mod=fake_cgroup_mod(str(tmp_path)))
    assert 'holds no pid-namespace init' in e.value.msg


def test_detect_root(tmp_path, monkeypatch):
    rootfs = tmp_path / 'containers' / 'ct' / 'rootfs'
    rootfs.mkdir(parents=True)
    proc = tmp_path / 'proc'
    (proc / '40').mkdir(parents=True)
    os.symlink(str(rootfs), str(proc / '40' / 'root'))
    (proc / '40' / 'mountinfo').write_text('65 48 0:40 /elsewhere / rw - overlay overlay rw\n')
    monkeypatch.setattr(_container, 'CONTAINERS_DIR', str(tmp_path / 'containers'))
    assert _container.detect_root(40, 'ct', proc=str(proc)) == str(rootfs)
    # by the mountinfo root field when the convention path is not it
    assert _container.detect_root(40, 'other', proc=str(proc)) is None
    (proc / '40' / 'mountinfo').write_text('65 48 0:40 %s / rw - overlay overlay rw\n' % rootfs)
    assert _container.detect_root(40, 'other', proc=str(proc)) == str(rootfs)
