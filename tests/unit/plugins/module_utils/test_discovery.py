# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for the dirty-rate measurement of plugins/module_utils/_discovery.py.

The maps and pagemap parsing and the rate arithmetic run over files made in a tmp dir that
look like /proc/PID/{maps,pagemap,clear_refs}: one 64-bit entry per page, at offset
(address / page size) * 8, as the kernel lays them out.
"""

from __future__ import annotations

import os
import struct

import pytest

from ansible_collections.haul.live.plugins.module_utils import _discovery as d
from ansible_collections.haul.live.plugins.module_utils._common import HaulError

PAGE = 4096
SD = d.PM_SOFT_DIRTY
PRESENT = d.PM_PRESENT
SWAPPED = d.PM_SWAPPED

MAPS = """\
00400000-00401000 r-xp 00000000 08:01 1234                               /usr/bin/app
00600000-00604000 rw-p 00000000 08:01 1234                               /usr/bin/app
01000000-01010000 rw-p 00000000 00:00 0                                  [heap]
7f0000000000-7f0000002000 rw-s 00000000 00:05 77                         /dev/shm/shared
7f0000010000-7f0000011000 ---p 00000000 00:00 0
7f0000020000-7f0000024000 rw-p 00000000 00:00 0
7f0000030000-7f0000031000 rw-p 00000000 08:01 99                         /tmp/a name with spaces (deleted)
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0                          [stack]
7ffc00100000-7ffc00102000 r--p 00000000 00:00 0                          [vvar]
ffffffffff600000-ffffffffff601000 rw-p 00000000 00:00 0                  [vsyscall]
garbage line
zz-yy rw-p 00000000 00:00 0
"""


def test_parse_maps_keeps_writable_private_mappings_only():
    ranges = d.parse_maps(MAPS)
    assert ranges == [
        (0x600000, 0x604000, '/usr/bin/app'),
        (0x1000000, 0x1010000, '[heap]'),
        (0x7f0000020000, 0x7f0000024000, ''),
        (0x7f0000030000, 0x7f0000031000, '/tmp/a name with spaces (deleted)'),
        (0x7ffc00000000, 0x7ffc00021000, '[stack]'),
    ]
    assert d.parse_maps('') == [] and d.parse_maps(None) == []


def write_pagemap(path, entries, page_size=PAGE):
    """A sparse pagemap file: ``entries`` maps a virtual address to its 64-bit entry."""
    with open(path, 'wb') as f:
        for addr, entry in entries.items():
            f.seek(addr // page_size * 8)
            f.write(struct.pack('=Q', entry))


def count(path, ranges, page_size=PAGE, chunk_pages=d.PAGEMAP_CHUNK_PAGES):
    fd = os.open(str(path), os.O_RDONLY)
    try:
        return d.count_soft_dirty(fd, ranges, page_size, chunk_pages)
    finally:
        os.close(fd)


def test_count_soft_dirty_reads_entries_at_their_offsets(tmp_path):
    pm = tmp_path / 'pagemap'
    write_pagemap(pm, {
        0x600000: PRESENT | SD,             # counted
        0x601000: PRESENT,                  # present, clean
        0x602000: SWAPPED | SD,             # swapped out, dirty: counted
        0x603000: SD,                       # a hole reported soft-dirty (new mapping): nothing to copy
        0x1000000: PRESENT | SD | 0x1234,   # pfn bits do not matter
        0x100f000: PRESENT | SD,            # last page of the heap
        0x1010000: PRESENT | SD,            # just past the heap: not in a range
        0x7ffc00020000: PRESENT | SD,       # last page of the stack
    })
    ranges = [(0x600000, 0x604000, 'app'), (0x1000000, 0x1010000, '[heap]'), (0x7ffc00000000, 0x7ffc00021000, '[stack]')]
    assert count(pm, ranges) == 5
    # chunked reads give the same count, whatever the chunk size
    assert count(pm, ranges, chunk_pages=1) == 5
    assert count(pm, ranges, chunk_pages=3) == 5
    # a pagemap shorter than the range (reads past its end return nothing) is no error
    assert count(pm, [(0x7ffc00000000, 0x7ffc10000000, 'big')]) == 1
    with pytest.raises(ValueError):
        count(pm, ranges, page_size=0)


def test_count_soft_dirty_other_page_size(tmp_path):
    pm = tmp_path / 'pagemap'
    write_pagemap(pm, {0x10000: PRESENT | SD, 0x20000: PRESENT | SD, 0x30000: PRESENT}, page_size=65536)
    assert count(pm, [(0x10000, 0x40000, '')], page_size=65536) == 2


def test_tree_dirty_rate_arithmetic():
    # 256 pages in 1 s + 128 pages in 0.5 s = 1 MiB/s + 1 MiB/s
    assert d.tree_dirty_rate([(256, 1.0), (128, 0.5)], PAGE) == 2 * 1048576
    assert d.tree_dirty_rate([(0, 0.3)], PAGE) == 0
    assert d.tree_dirty_rate([(1, 3.0)], PAGE) == 1365  # rounded
    assert d.tree_dirty_rate([], PAGE) is None
    for bad in ([(1, 0)], [(-1, 1.0)]):
        with pytest.raises(ValueError):
            d.tree_dirty_rate(bad, PAGE)
    with pytest.raises(ValueError):
        d.tree_dirty_rate([(1, 1.0)], 0)


class Clock:
    """A clock that the fake sleep moves on, and each read moves on by ``tick``."""

    def __init__(self, tick=0.0):
        self.now = 100.0
        self.tick = tick
        self.slept = []

    def __call__(self):
        self.now += self.tick
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def fake_proc(root, pid, maps, entries):
    p = root / str(pid)
    p.mkdir(parents=True)
    (p / 'maps').write_text(maps)
    (p / 'clear_refs').write_text('')
    write_pagemap(p / 'pagemap', entries)
    return p


def test_measure_dirty_rates_over_a_fake_proc(tmp_path):
    proc = tmp_path / 'proc'
    a = fake_proc(proc, 10, MAPS, {0x600000: PRESENT | SD, 0x1000000: PRESENT | SD, 0x1001000: PRESENT | SD,
                                   0x7f0000000000: PRESENT | SD})  # the shared mapping is not counted
    b = fake_proc(proc, 11, MAPS, {0x7ffc00000000: SWAPPED | SD, 0x7f0000020000: PRESENT})
    c = fake_proc(proc, 20, MAPS, {0x600000: PRESENT | SD})
    clock = Clock()
    res = d.measure_dirty_rates({'ct1': [10, 11, 99], 'ct2': [20]}, 500, True, proc=str(proc), page_size=PAGE,
                                sleep=clock.sleep, clock=clock, self_test=None)
    # clear_refs got "4" for each live process; pid 99 does not exist and is left out
    for p in (a, b, c):
        assert (p / 'clear_refs').read_text() == '4'
    assert clock.slept == [0.5]
    assert res['ct1']['dirty_pages'] == 4
    assert res['ct1']['dirty_rate_bytes_s'] == 4 * PAGE * 2  # 4 pages in 0.5 s
    assert res['ct1']['dirty_rate_reason'] == 'measured: 4 pages of 4096 bytes dirtied by 2 processes in about 500 ms'
    assert res['ct2'] == {'dirty_rate_bytes_s': 2 * PAGE, 'dirty_pages': 1,
                          'dirty_rate_reason': 'measured: 1 pages of 4096 bytes dirtied by 1 process in about 500 ms'}


def test_measure_dirty_rate_uses_each_process_interval(tmp_path):
    proc = tmp_path / 'proc'
    fake_proc(proc, 1, MAPS, {0x600000: PRESENT | SD})
    fake_proc(proc, 2, MAPS, {0x600000: PRESENT | SD})
    clock = Clock(tick=0.25)
    # pid 1 cleared at t+0.25, pid 2 at t+0.5; sleep 1 s; pid 1 read at t+1.75 (1.5 s), pid 2 at t+2.0 (1.5 s)
    res = d.measure_dirty_rate([1, 2], 1000, True, proc=str(proc), page_size=PAGE, sleep=clock.sleep, clock=clock,
                               self_test=None)
    assert res['dirty_rate_bytes_s'] == round(2 * PAGE / 1.5)


def test_measure_dirty_rate_without_tracking_touches_nothing(tmp_path):
    proc = tmp_path / 'proc'
    p = fake_proc(proc, 10, MAPS, {0x600000: PRESENT | SD})
    clock = Clock()
    res = d.measure_dirty_rate([10], 500, False, proc=str(proc), sleep=clock.sleep, clock=clock)
    assert res['dirty_rate_bytes_s'] is None and res['dirty_pages'] is None
    assert 'CONFIG_MEM_SOFT_DIRTY' in res['dirty_rate_reason']
    assert res['dirty_rate_reason'].startswith('not measured: the kernel does not track dirty memory')
    assert (p / 'clear_refs').read_text() == ''
    assert clock.slept == []


def test_measure_dirty_rate_self_test_refuses_a_false_zero(tmp_path):
    proc = tmp_path / 'proc'
    p = fake_proc(proc, 10, MAPS, {})
    res = d.measure_dirty_rate([10], 500, True, proc=str(proc), sleep=lambda s: None, self_test=lambda: False)
    assert res['dirty_rate_bytes_s'] is None
    assert 'CONFIG_MEM_SOFT_DIRTY' in res['dirty_rate_reason']
    assert (p / 'clear_refs').read_text() == ''


def test_measure_dirty_rate_all_gone_and_bad_interval(tmp_path):
    res = d.measure_dirty_rate([4242], 100, True, proc=str(tmp_path), sleep=lambda s: None, self_test=None)
    assert res['dirty_rate_bytes_s'] is None and 'exited' in res['dirty_rate_reason']
    for bad in (0, -1, None, d.MAX_DIRTY_INTERVAL_MS + 1):
        with pytest.raises(HaulError) as e:
            d.measure_dirty_rate([1], bad, True, proc=str(tmp_path), self_test=None)
        assert e.value.msg.startswith('dirty_rate: the interval must be between 1 and 60000 ms')


def test_clear_soft_dirty_permission_error_is_named(tmp_path):
    proc = tmp_path / 'proc'
    p = fake_proc(proc, 10, MAPS, {})
    os.remove(p / 'clear_refs')
    (p / 'clear_refs').mkdir()  # writing a directory fails with EISDIR: not "gone"
    with pytest.raises(HaulError) as e:
        d.clear_soft_dirty(10, str(proc))
    assert e.value.msg.startswith('dirty_rate: cannot clear the soft-dirty bits of pid 10')
    assert d.clear_soft_dirty(11, str(proc)) is False


def test_soft_dirty_pages_gone_process(tmp_path):
    assert d.soft_dirty_pages(12345, str(tmp_path)) is None


def test_self_test_on_this_kernel_gives_a_bool():
    # True where the kernel has CONFIG_MEM_SOFT_DIRTY, False elsewhere (these lab machines); never raises
    assert d.kernel_sets_soft_dirty() in (True, False)


def test_measure_on_this_process_without_tracking_is_none():
    res = d.measure_dirty_rate([os.getpid()], 10, False)
    assert res['dirty_rate_bytes_s'] is None


def test_non_root_processes_counts_any_id_other_than_root(tmp_path):
    for pid, uid, gid in ((10, '0\t0\t0\t0', '0\t0\t0\t0'), (11, '105\t105\t105\t105', '0\t0\t0\t0'),
                          (12, '0\t0\t0\t0', '0\t33\t0\t0')):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / 'status').write_text('Name:\tx\nPid:\t%d\nUid:\t%s\nGid:\t%s\n' % (pid, uid, gid))
    # 13 is gone: not counted
    assert d.non_root_processes([10, 11, 12, 13], proc=str(tmp_path)) == 2
    assert d.non_root_processes([10], proc=str(tmp_path)) == 0


def test_cpu_cores_of_a_busy_and_an_idle_process():
    """Real processes: one spins, one sleeps; the busy one keeps about a CPU busy, the idle none."""
    import subprocess  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel
    busy = subprocess.Popen([sys.executable, '-c', 'while True: pass'])
    idle = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])
    try:
        got = d.measure_cpu_cores({'busy': [busy.pid], 'idle': [idle.pid], 'gone': [2 ** 22 + 7]}, 600)
    finally:
        for p in (busy, idle):
            p.kill()
            p.wait()
    assert got['busy'] > 0.15  # a noisy 2-CPU machine (make test's other work) still gives it a share
    assert got['idle'] < 0.05
    assert got['gone'] == 0.0  # a process that does not exist counts nothing


def test_cpu_sample_must_be_bounded():
    with pytest.raises(HaulError, match='CPU sample'):
        d.measure_cpu_cores({}, 0)
