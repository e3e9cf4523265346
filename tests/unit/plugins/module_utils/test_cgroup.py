# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for plugins/module_utils/_cgroup.py.

The first half is pure parsing. The second half freezes and thaws real cgroups of this machine
(as root, with the v2 freezer and, when mounted, the v1 freezer), in a cgroup of its own
(``haul-unittest-PID``), removed at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from ansible_collections.haul.live.plugins.module_utils import _cgroup
from ansible_collections.haul.live.plugins.module_utils._cgroup import (
    Cgroup, CgroupMounts, HaulError, discover_containers, parse_events, parse_mountinfo,
    parse_proc_cgroup, v1_state, v2_state)
from ansible_collections.haul.live.plugins.module_utils._proc import parse_nspid, pidns_init, sigcont_tree, stopped_pids

HYBRID = """\
22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

PURE_V2 = """\
25 21 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
"""

# a v1 mount with several controllers, a bind mount of a sub-tree first, a space in a mount point
ODD = """\
50 31 0:34 /haul-lab/node1 /mnt/frz rw - cgroup cgroup rw,cpuset,freezer
51 31 0:34 / /sys/fs/cgroup/cpuset,freezer rw - cgroup cgroup rw,cpuset,freezer
52 31 0:38 /haul-lab/node1 /mnt/my\\040cg rw - cgroup2 cgroup2 rw
"""


# ---------------------------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------------------------

def test_mountinfo_hybrid():
    m = parse_mountinfo(HYBRID)
    assert m.v2 == '/sys/fs/cgroup/unified'
    assert m.freezer == '/sys/fs/cgroup/freezer'
    assert m.v2_root == '/' and m.freezer_root == '/'


def test_mountinfo_pure_v2():
    m = parse_mountinfo(PURE_V2)
    assert m.v2 == '/sys/fs/cgroup'
    assert m.freezer is None


def test_mountinfo_prefers_root_mount_and_unescapes():
    m = parse_mountinfo(ODD)
    assert m.freezer == '/sys/fs/cgroup/cpuset,freezer'
    assert m.v2 == '/mnt/my cg'
    assert m.v2_root == '/haul-lab/node1'


def test_mountinfo_empty():
    m = parse_mountinfo('')
    assert m.v2 is None and m.freezer is None


def test_proc_cgroup_hybrid():
    text = "9:name=systemd:/\n6:freezer:/haul/ct1\n4:memory:/x\n0::/haul/ct1\n"
    assert parse_proc_cgroup(text) == {'v2': '/haul/ct1', 'freezer': '/haul/ct1'}


def test_proc_cgroup_v2_only_and_joined_controllers():
    assert parse_proc_cgroup("0::/system.slice/a.service\n") == {'v2': '/system.slice/a.service', 'freezer': None}
    assert parse_proc_cgroup("3:cpuset,freezer:/lxc/c1\n")['freezer'] == '/lxc/c1'
    # a path with a colon stays whole
    assert parse_proc_cgroup("0::/a:b\n")['v2'] == '/a:b'


def test_nspid_and_events_and_states():
    assert parse_nspid("Name:\tx\nNSpid:\t4242\t17\t1\nNSpgid:\t1\n") == [4242, 17, 1]
    assert parse_nspid("Name:\tx\n") == []
    assert parse_events("populated 1\nfrozen 0\n") == {'populated': 1, 'frozen': 0}
    assert v1_state("FROZEN\n") == 'frozen'
    assert v1_state("FREEZING\n") == 'freezing'
    assert v1_state("THAWED\n") == 'thawed'
    assert v2_state("1\n", "populated 1\nfrozen 1\n") == 'frozen'
    assert v2_state("1\n", "populated 1\nfrozen 0\n") == 'freezing'
    assert v2_state("0\n", "populated 1\nfrozen 0\n") == 'thawed'
    # frozen by an ancestor: effective state wins
    assert v2_state("0\n", "populated 1\nfrozen 1\n") == 'frozen'


def test_fs_path_with_mount_root():
    assert _cgroup._fs_path('/sys/fs/cgroup', '/', '/haul/ct1') == '/sys/fs/cgroup/haul/ct1'
    assert _cgroup._fs_path('/mnt/cg', '/haul-lab/node1', '/haul-lab/node1/haul/ct1') == '/mnt/cg/haul/ct1'
    assert _cgroup._fs_path('/mnt/cg', '/haul-lab/node1', '/haul-lab/node1') == '/mnt/cg'


# ---------------------------------------------------------------------------------------------
# a fake cgroup tree on tmpfs: path resolution and error messages
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def fake_tree(tmp_path):
    v2 = tmp_path / 'unified'
    fr = tmp_path / 'freezer'
    for d in (v2 / 'haul' / 'ct1', fr / 'haul' / 'ct1', v2 / 'haul' / 'only2'):
        d.mkdir(parents=True)
    for d in (v2 / 'haul' / 'ct1', v2 / 'haul', v2 / 'haul' / 'only2'):
        (d / 'cgroup.freeze').write_text('0\n')
        (d / 'cgroup.events').write_text('populated 1\nfrozen 0\n')
        (d / 'cgroup.procs').write_text('')
    (v2 / 'haul' / 'ct1' / 'cgroup.procs').write_text('10\n11\n')
    (fr / 'haul' / 'ct1' / 'freezer.state').write_text('FROZEN\n')
    (fr / 'haul' / 'ct1' / 'cgroup.procs').write_text('10\n11\n')
    return CgroupMounts(v2=str(v2), freezer=str(fr))


def test_resolve_relative_auto_prefers_v2_with_twin(fake_tree):
    c = Cgroup('haul/ct1', mounts=fake_tree)
    assert c.version == 'v2'
    assert c.path == os.path.join(fake_tree.v2, 'haul/ct1')
    assert c.rel == 'haul/ct1'
    assert c.twins == [os.path.join(fake_tree.freezer, 'haul/ct1')]
    # the v1 twin is FROZEN: the tasks are frozen, whatever cgroup.freeze says
    assert c.state() == 'frozen'
    assert c.pids() == [10, 11]
    assert Cgroup('/haul/ct1', mounts=fake_tree).path == c.path


def test_resolve_absolute_pins_hierarchy(fake_tree):
    c = Cgroup(os.path.join(fake_tree.freezer, 'haul/ct1'), mounts=fake_tree)
    assert c.version == 'v1' and c.twins == []
    with pytest.raises(HaulError) as e:
        Cgroup(os.path.join(fake_tree.freezer, 'haul/ct1'), version='v2', mounts=fake_tree, step='freeze')
    assert e.value.msg.startswith('freeze: ') and 'v1 hierarchy, not v2' in e.value.msg


def test_explicit_version(fake_tree):
    assert Cgroup('haul/ct1', version='v1', mounts=fake_tree).state() == 'frozen'
    assert Cgroup('haul/ct1', version='v2', mounts=fake_tree).state() == 'thawed'
    # only in v2: auto finds it there
    assert Cgroup('haul/only2', mounts=fake_tree).version == 'v2'


def test_missing_cgroup_message(fake_tree):
    with pytest.raises(HaulError) as e:
        Cgroup('haul/nope', version='v2', mounts=fake_tree, step='freeze')
    assert e.value.msg == 'freeze: cgroup haul/nope does not exist (looked in %s/haul/nope)' % fake_tree.v2
    with pytest.raises(HaulError) as e:
        Cgroup('haul/nope', mounts=fake_tree, step='thaw')
    assert e.value.msg.startswith('thaw: cgroup haul/nope does not exist (looked in ')
    assert ' and ' in e.value.msg


def test_unmounted_hierarchy(fake_tree):
    m = CgroupMounts(v2=fake_tree.v2)
    with pytest.raises(HaulError) as e:
        Cgroup('haul/ct1', version='v1', mounts=m, step='freeze')
    assert 'v1 freezer is not mounted' in e.value.msg


def test_root_cgroup_refused(fake_tree):
    with pytest.raises(HaulError) as e:
        Cgroup('/', mounts=fake_tree, step='freeze')
    assert 'is the root of the cgroup hierarchy' in e.value.msg
    # also when the root has a cgroup.freeze, as the root of a cgroup namespace has
    with open(os.path.join(fake_tree.v2, 'cgroup.freeze'), 'w') as f:
        f.write('0\n')
    with pytest.raises(HaulError) as e:
        Cgroup(fake_tree.v2, mounts=fake_tree, step='freeze')
    assert e.value.msg.startswith('freeze: %s is the root of the cgroup hierarchy' % fake_tree.v2)


def test_nonexistent_pid(tmp_path):
    with pytest.raises(HaulError) as e:
        Cgroup.from_pid(999999999, step='freeze', mounts=CgroupMounts(v2='/sys/fs/cgroup'))
    assert e.value.msg == 'freeze: pid 999999999 does not exist (no /proc/999999999)'
    with pytest.raises(HaulError) as e:
        Cgroup.from_pid('abc', step='freeze')
    assert 'integer' in e.value.msg


def test_from_pid_fake_proc(fake_tree, tmp_path):
    proc = tmp_path / 'proc'
    (proc / '10').mkdir(parents=True)
    (proc / '10' / 'cgroup').write_text('6:freezer:/haul/ct1\n0::/haul/ct1\n')
    c = Cgroup.from_pid(10, mounts=fake_tree, proc=str(proc))
    assert c.version == 'v2' and c.rel == 'haul/ct1' and c.twins
    c1 = Cgroup.from_pid(10, version='v1', mounts=fake_tree, proc=str(proc))
    assert c1.version == 'v1' and c1.path == os.path.join(fake_tree.freezer, 'haul/ct1')
    (proc / '10' / 'cgroup').write_text('0::/\n')
    with pytest.raises(HaulError) as e:
        Cgroup.from_pid(10, version='v2', mounts=fake_tree, proc=str(proc), step='freeze')
    assert 'root cgroup' in e.value.msg


def test_pidns_init_rule(tmp_path):
    proc = tmp_path
    for pid, nspid in ((100, '100'), (101, '101\t1'), (102, '102\t2'), (103, '103\t7\t1')):
        (proc / str(pid)).mkdir()
        (proc / str(pid) / 'status').write_text('Name:\tx\nNSpid:\t%s\n' % nspid)
    assert pidns_init([100, 102], proc=str(proc)) is None
    assert pidns_init([100, 101, 102, 103], proc=str(proc)) == 101  # outermost namespace wins
    assert pidns_init([103, 999], proc=str(proc)) == 103


def test_stopped_pids(tmp_path):
    for pid, st in ((1, 'S'), (2, 'T'), (3, 't')):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / 'stat').write_text('%d (a (weird) name) %s 1 1 1\n' % (pid, st))
    assert stopped_pids([1, 2, 3, 4], proc=str(tmp_path)) == [2]


def test_freeze_timeout_thaws_back(fake_tree, monkeypatch):
    """A cgroup that never reaches frozen is thawed back and the error says so."""
    (open(os.path.join(fake_tree.freezer, 'haul/ct1/freezer.state'), 'w')).write('THAWED\n')
    c = Cgroup('haul/ct1', version='v2', mounts=fake_tree)
    with pytest.raises(HaulError) as e:
        c.freeze(timeout=0.05)
    assert e.value.msg.startswith('freeze: cgroup %s did not freeze within 0.05s' % c.path)
    assert 'thawed it back' in e.value.msg
    with open(os.path.join(c.path, 'cgroup.freeze')) as f:
        assert f.read().strip() == '0'


def test_check_mode_changes_nothing(fake_tree):
    c = Cgroup('haul/ct1', version='v2', mounts=fake_tree)
    assert c.freeze(check_mode=True) is True
    with open(os.path.join(c.path, 'cgroup.freeze')) as f:
        assert f.read().strip() == '0'
    v1 = Cgroup('haul/ct1', version='v1', mounts=fake_tree)
    assert v1.thaw(check_mode=True) is True
    assert v1.state() == 'frozen'


def test_discover_missing_parent(fake_tree):
    assert discover_containers('nothere', mounts=fake_tree) == []


# ---------------------------------------------------------------------------------------------
# the real cgroups of this machine
# ---------------------------------------------------------------------------------------------

REAL = _cgroup.find_mounts()
NEEDS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason='needs root')
HAS_V2 = REAL.v2 is not None and os.path.exists(os.path.join(REAL.v2, 'cgroup.procs'))
HAS_V1 = REAL.freezer is not None


@pytest.fixture
def real_ct():
    """A cgroup haul-unittest-PID/ct1 in v2 (and the v1 freezer) holding a pid-namespace init."""
    if os.geteuid() != 0 or not HAS_V2:
        pytest.skip('needs root and cgroup2')
    parent = 'haul-unittest-%d' % os.getpid()
    dirs = [os.path.join(REAL.v2, parent, 'ct1')]
    if HAS_V1:
        dirs.append(os.path.join(REAL.freezer, parent, 'ct1'))
    for d in dirs:
        os.makedirs(d)

    def enter():
        for d in dirs:
            with open(os.path.join(d, 'cgroup.procs'), 'w') as f:
                f.write(str(os.getpid()))

    # unshare -p -f: a child that is pid 1 of a new pid namespace, like a container init
    proc = subprocess.Popen(['unshare', '--pid', '--fork', '--kill-child', 'sh', '-c',
                             'sleep 600 & while :; do :; done'], preexec_fn=enter)
    deadline = time.time() + 5
    while time.time() < deadline and len(Cgroup(dirs[0]).pids()) < 3:
        time.sleep(0.01)
    try:
        yield parent, proc
    finally:
        try:
            c = Cgroup(os.path.join(parent, 'ct1'))
            c.kill(timeout=5)
        except HaulError:
            pass
        proc.wait()
        for top in (REAL.v2, REAL.freezer):
            if top and os.path.isdir(os.path.join(top, parent)):
                for dirpath, dummy, dummy2 in os.walk(os.path.join(top, parent), topdown=False):
                    os.rmdir(dirpath)


def _cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            with open('/proc/%d/stat' % pid) as f:
                fields = f.read().rsplit(')', 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (IOError, OSError):
            pass
    return total


def _runs(pids):
    a = _cpu_ticks(pids)
    time.sleep(0.3)
    return _cpu_ticks(pids) > a


@NEEDS_ROOT
def test_real_v2_freeze_thaw(real_ct):
    parent, proc = real_ct
    c = Cgroup(parent + '/ct1', version='v2', step='freeze')
    pids = c.pids()
    assert len(pids) >= 3
    assert c.state() == 'thawed' and _runs(pids)
    assert c.freeze(timeout=5) is True
    assert c.state() == 'frozen'
    with open(os.path.join(c.path, 'cgroup.events')) as f:
        assert 'frozen 1' in f.read()
    assert not _runs(pids)
    assert c.freeze(timeout=5) is False  # idempotent
    assert c.thaw(timeout=5) is True
    assert c.state() == 'thawed' and _runs(pids)
    assert c.thaw(timeout=5) is False


@NEEDS_ROOT
@pytest.mark.skipif(not HAS_V1, reason='no v1 freezer')
def test_real_v1_freeze_thaw_and_auto_twin(real_ct):
    parent, proc = real_ct
    v1 = Cgroup(parent + '/ct1', version='v1')
    pids = v1.pids()
    assert v1.freeze(timeout=5) is True
    assert v1.state() == 'frozen' and not _runs(pids)
    with open(os.path.join(v1.path, 'freezer.state')) as f:
        assert f.read().strip() == 'FROZEN'
    # auto mode sees the v1 freeze through the twin, and thaws it
    auto = Cgroup(parent + '/ct1')
    assert auto.version == 'v2' and auto.twins == [v1.path]
    assert auto.state() == 'frozen'
    assert auto.freeze(timeout=5) is False
    assert auto.thaw(timeout=5) is True
    assert v1.state() == 'thawed' and _runs(pids)


@NEEDS_ROOT
def test_real_from_pid_discover_sigcont(real_ct):
    parent, proc = real_ct
    c = Cgroup.from_pid(proc.pid)
    assert c.rel == parent + '/ct1'
    found = discover_containers(parent)
    assert len(found) == 1
    ct = found[0]
    assert ct['name'] == 'ct1' and ct['path'] == parent + '/ct1'
    assert ct['cgroup'] == c.path
    # the init is the forked child of unshare, pid 1 in its namespace, not unshare itself
    assert ct['init_pid'] != proc.pid and ct['init_pid'] in ct['pids']
    with open('/proc/%d/status' % ct['init_pid']) as f:
        assert parse_nspid(f.read())[-1] == 1
    # SIGSTOP then sigcont_tree resumes
    for pid in ct['pids']:
        os.kill(pid, signal.SIGSTOP)
    deadline = time.time() + 5
    while time.time() < deadline and not stopped_pids(ct['pids']):
        time.sleep(0.01)
    assert stopped_pids(ct['pids'])
    assert sigcont_tree(ct['pids'] + [999999999]) == len(ct['pids'])
    time.sleep(0.05)
    assert stopped_pids(ct['pids']) == []


@NEEDS_ROOT
def test_real_kill_frozen_and_remove(real_ct):
    parent, proc = real_ct
    c = Cgroup(parent + '/ct1')
    c.freeze(timeout=5)
    if HAS_V1:
        Cgroup(parent + '/ct1', version='v1').freeze(timeout=5)
    assert c.kill(timeout=5) is True
    assert c.pids() == []
    assert c.kill(timeout=5) is False
    assert proc.wait(timeout=5) is not None
    assert c.remove() is True
    assert not os.path.exists(c.path)
    for t in c.twins:
        assert not os.path.exists(t)
    # the parent now has no container
    assert discover_containers(parent) == []


def test_own_lineage_is_this_process_and_ancestors():
    lineage = _cgroup.own_lineage()
    assert lineage[0][0] == os.getpid()
    assert lineage[1][0] == os.getppid()


@NEEDS_ROOT
def test_real_refuses_to_freeze_own_lineage(real_ct, monkeypatch):
    """A cgroup that holds the module or one of its ancestors (its sshd) is never frozen or killed."""
    parent, proc = real_ct
    c = Cgroup(parent + '/ct1')
    victim = c.pids()[0]
    monkeypatch.setattr(_cgroup, 'own_lineage', lambda proc='/proc': [(os.getpid(), 'pytest'), (victim, 'sshd')])
    with pytest.raises(HaulError) as e:
        c.freeze(timeout=5)
    assert e.value.msg == 'freeze: refusing to freeze %s: it contains pid %d (sshd), an ancestor of this process' % (
        c.path, victim)
    assert c.state() == 'thawed'
    with pytest.raises(HaulError) as e:
        c.kill(timeout=5)
    assert e.value.msg.startswith('kill: refusing to kill ')
    assert c.pids()
