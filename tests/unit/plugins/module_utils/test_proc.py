# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for plugins/module_utils/_proc.py: /proc reads on a fake /proc, waits and kills.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from ansible_collections.haul.live.plugins.module_utils import _proc
from ansible_collections.haul.live.plugins.module_utils._common import HaulError


def test_find_pidns_init(tmp_path, write_proc):
    write_proc(tmp_path, 40, [40, 1], ppid=30)
    write_proc(tmp_path, 41, [41, 2], ppid=40)
    write_proc(tmp_path, 42, [42, 3], ppid=41)
    write_proc(tmp_path, 30, [30], ppid=1)
    assert _proc.find_pidns_init(42, proc=str(tmp_path)) == 40
    assert _proc.find_pidns_init(40, proc=str(tmp_path)) == 40
    assert _proc.find_pidns_init(30, proc=str(tmp_path)) is None
    assert _proc.find_pidns_init(99, proc=str(tmp_path)) is None


def test_all_stopped(tmp_path, write_proc):
    write_proc(tmp_path, 40, [40, 1])
    write_proc(tmp_path, 41, [41, 2], ppid=40)
    assert not _proc.all_stopped([40, 41], proc=str(tmp_path))
    for pid in (40, 41):
        st = tmp_path / str(pid) / 'status'
        st.write_text(st.read_text().replace('S (sleeping)', 'T (stopped)'))
    assert _proc.all_stopped([40, 41, 42], proc=str(tmp_path))
    assert not _proc.all_stopped([42], proc=str(tmp_path))


def test_tree_rss(tmp_path, write_proc):
    write_proc(tmp_path, 40, [40, 1], rss_kb=1000)
    write_proc(tmp_path, 41, [41, 2], rss_kb=24)
    assert _proc.tree_rss([40, 41, 42], proc=str(tmp_path)) == 1024 * 1024


def test_proc_starttime_and_cgroup(tmp_path, write_proc):
    write_proc(tmp_path, 40, [40, 1])
    assert _proc.proc_starttime(40, proc=str(tmp_path)) == 123456
    assert _proc.proc_cgroup_v2(40, proc=str(tmp_path)) == '/haul/ct'
    assert _proc.proc_starttime(41, proc=str(tmp_path)) is None


def test_wait_pid_exit():
    p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(0.3)'])
    start = time.time()
    try:
        with pytest.raises(HaulError) as e:
            _proc.wait_pid_exit(p.pid, 0.05)
        assert e.value.step == 'transfer'
        p.wait()  # reaped: the pid is gone
        _proc.wait_pid_exit(p.pid, 5)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert time.time() - start < 3
    assert not _proc.pid_alive(p.pid)
    assert _proc.pid_alive(os.getpid())


def test_ipv4_hex():
    assert _proc._ipv4_hex('198.18.0.11', 27100) == '0B0012C6:69DC'
    assert _proc._ipv4_hex('fe80::1', 1) is None


def test_tcp_connected_fake_proc(tmp_path):
    proc = tmp_path / 'proc'
    fd = proc / '42' / 'fd'
    fd.mkdir(parents=True)
    os.symlink('socket:[777]', str(fd / '5'))
    os.symlink('/dev/null', str(fd / '0'))
    net = proc / '42' / 'net'
    net.mkdir()
    head = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n'
    row = '   0: 0C0012C6:A000 0B0012C6:69DC %s 00000000:00000000 00:00000000 00000000     0        0 %s 1\n'
    (net / 'tcp').write_text(head + row % ('01', '777'))
    assert _proc.tcp_connected(42, '198.18.0.11', 27100, proc=str(proc))
    assert not _proc.tcp_connected(42, '198.18.0.11', 27101, proc=str(proc))
    (net / 'tcp').write_text(head + row % ('02', '777'))
    assert not _proc.tcp_connected(42, '198.18.0.11', 27100, proc=str(proc))
    (net / 'tcp').write_text(head + row % ('01', '778'))
    assert not _proc.tcp_connected(42, '198.18.0.11', 27100, proc=str(proc))
    assert not _proc.tcp_connected(43, '198.18.0.11', 27100, proc=str(proc))


def test_children_maps_ppid_to_pid_and_starttime(tmp_path, write_proc):
    write_proc(tmp_path, 40, [40], ppid=1)
    write_proc(tmp_path, 41, [41], ppid=40)
    write_proc(tmp_path, 42, [42], ppid=40)
    (tmp_path / '43').mkdir()  # gone meanwhile: no stat
    tree = _proc.children(proc=str(tmp_path))
    assert sorted(tree[40]) == [(41, 123456), (42, 123456)]
    assert tree[1] == [(40, 123456)]


def test_kill_tree_signals_the_process_and_its_descendants():
    parent = subprocess.Popen(['sh', '-c', 'sleep 30 & sleep 30 & wait'])
    try:
        deadline = time.time() + 5
        while len(_proc.children().get(parent.pid, [])) < 2 and time.time() < deadline:
            time.sleep(0.01)
        kids = [pid for pid, dummy in _proc.children()[parent.pid]]
        killed = _proc.kill_tree(parent.pid)
        assert killed[0] == parent.pid and sorted(killed[1:]) == sorted(kids)
        parent.wait(timeout=5)
        for pid in kids:
            _proc.wait_pid_exit(pid, 5)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
