# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Container discovery: which containers run on this host, and what each one looks like.

This is a private module_util: it is not part of the collection's public API.

How a container is recognised (docs/evacuation.md): a child cgroup of the parent cgroup
(default ``haul``, below the cgroup2 root) whose processes include the init of a pid namespace
(``NSpid`` in /proc/PID/status has more than one entry and ends in 1). Its name is the name of
the child cgroup. Its root directory is ``/var/lib/haul/containers/NAME/rootfs`` when that is
the init's root, else the root of its ``/`` mount.

:func:`measure_dirty_rates` measures how fast containers dirty their memory (soft-dirty
tracking), for the strategy ``auto`` (``_policy.choose_strategy``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import array
import ctypes
import errno
import mmap
import os
import struct
import time

from ansible_collections.haul.live.plugins.module_utils import _cgroup
from ansible_collections.haul.live.plugins.module_utils import _container
from ansible_collections.haul.live.plugins.module_utils import _network
from ansible_collections.haul.live.plugins.module_utils import _proc
from ansible_collections.haul.live.plugins.module_utils import _sockets
from ansible_collections.haul.live.plugins.module_utils import _validate
from ansible_collections.haul.live.plugins.module_utils._common import HaulError


def container_state(cg, pids):
    """'frozen' (cgroup frozen), 'stopped' (every task stopped by a signal) or 'running'."""
    state = cg.state()
    if state in (_cgroup.FROZEN, _cgroup.FREEZING):
        return 'frozen'
    if pids and len(_cgroup.stopped_pids(pids)) == len(pids):
        return 'stopped'
    return 'running'


def describe(found):
    """Add state, memory, root, TCP/UDP sockets and network to one entry of :func:`_cgroup.discover_containers`."""
    cg = _cgroup.Cgroup(found['cgroup'], version=found['version'], step='discover')
    pids = found['pids']
    init = found['init_pid']
    rss = _proc.tree_rss(pids)
    tmpfs = _proc.tmpfs_usage(init)
    return {
        'name': found['name'],
        'cgroup': '/' + found['path'].strip('/'),
        'cgroup_fs': found['cgroup'],
        'init_pid': init,
        'processes': len(pids),
        'state': container_state(cg, pids),
        'memory_bytes': rss + tmpfs,
        'rss_bytes': rss,
        'tmpfs_bytes': tmpfs,
        'root': _container.detect_root(init, found['name']),
        'sockets': _sockets.count_sockets(pids),
        'network': _network.inspect(init, step='discover'),
        'non_root_processes': non_root_processes(pids),
    }


def non_root_processes(pids, proc='/proc'):
    """How many of ``pids`` run with a user or group ID other than 0 (real, effective, saved or
    filesystem). CRIU, running as root, reads their rlimits with prlimit(2), which needs
    CAP_SYS_RESOURCE for them (``criu_check``'s ``cap_sys_resource``)."""
    count = 0
    for pid in pids:
        st = _proc.proc_status(pid, proc)
        if st is None:
            continue
        ids = (st.get('Uid') or '').split() + (st.get('Gid') or '').split()
        if any(x != '0' for x in ids):
            count += 1
    return count


def list_containers(parent=_cgroup.DEFAULT_PARENT, names=None, with_pids=False):
    """The containers below ``parent`` (only ``names`` when given), described, sorted by name.

    ``with_pids``: each also has ``pids``, the host pids of its processes.
    """
    out = []
    for found in _cgroup.discover_containers(parent, version=_cgroup.V2):
        if names and found['name'] not in names:
            continue
        entry = describe(found)
        if with_pids:
            entry['pids'] = list(found['pids'])
        out.append(entry)
    return out


def describe_pid(name, init_pid, with_pids=False):
    """A container that a runtime (Podman, LXC) names, described from its init's cgroup the way
    :func:`list_containers` describes a lab container; None when that process is gone."""
    try:
        cg = _cgroup.Cgroup.from_pid(init_pid, step='discover')
        pids = cg.pids()
    except HaulError:
        if _proc.proc_status(init_pid) is None:
            return None
        raise
    found = dict(name=name, cgroup=cg.path, path=cg.rel, version=cg.version, init_pid=init_pid, pids=pids)
    entry = describe(found)
    if with_pids:
        entry['pids'] = list(pids)
    return entry


# --------------------------------------------------------------------------- dirty rate
#
# How fast a container dirties its memory, with the kernel's soft-dirty tracking
# (CONFIG_MEM_SOFT_DIRTY, Documentation/admin-guide/mm/soft-dirty.rst), the way CRIU's pre-dump
# finds what changed: write "4" to /proc/PID/clear_refs (clears the soft-dirty bits of every
# page of the process), wait, then read /proc/PID/pagemap - one 64-bit entry per virtual page,
# at offset (vaddr / page size) * 8 - for the writable private mappings listed in
# /proc/PID/maps, and count the pages whose soft-dirty bit (55) is set. Only pagemap entries
# are read, never the memory itself.

PAGEMAP_ENTRY_BYTES = 8
PM_SOFT_DIRTY = 1 << 55
PM_SWAPPED = 1 << 62
PM_PRESENT = 1 << 63
# Entries read per pread(): 64 KiB of pagemap, 32 MiB of address space with 4 KiB pages.
PAGEMAP_CHUNK_PAGES = 8192
CLEAR_SOFT_DIRTY = '4'
MAX_DIRTY_INTERVAL_MS = 60000

NO_DIRTY_TRACKING = ('not measured: the kernel does not track dirty memory (it has no CONFIG_MEM_SOFT_DIRTY), '
                     'so the soft-dirty bits of /proc/PID/pagemap never show what the container writes')
SOFT_DIRTY_NOT_SET = ('not measured: dirty tracking was reported, but a page written after clearing the soft-dirty '
                      'bits did not get its bit back (CONFIG_MEM_SOFT_DIRTY missing or not working)')


def system_page_size():
    """This host's page size in bytes."""
    return os.sysconf('SC_PAGE_SIZE')


def parse_maps(text):
    """The writable private mappings of a /proc/PID/maps text: a list of (start, end, name).

    ``rw-p`` style permissions (``w`` and ``p``); shared mappings are left out (CRIU dumps
    them apart), and so is ``[vsyscall]`` (outside the process's page tables).
    """
    out = []
    for line in (text or '').splitlines():
        fields = line.split(None, 5)
        if len(fields) < 5:
            continue
        addr, perms = fields[0], fields[1]
        name = fields[5].strip() if len(fields) > 5 else ''
        if name == '[vsyscall]' or len(perms) < 4 or perms[1] != 'w' or perms[3] != 'p':
            continue
        start, sep, end = addr.partition('-')
        try:
            start, end = int(start, 16), int(end, 16)
        except ValueError:
            continue
        if sep and end > start:
            out.append((start, end, name))
    return out


def count_soft_dirty(fd, ranges, page_size, chunk_pages=PAGEMAP_CHUNK_PAGES):
    """Pages of ``ranges`` that are soft-dirty, from the pagemap open as file descriptor ``fd``.

    A page counts when its entry has the soft-dirty bit (55) and is present (63) or swapped
    (62): the pagemap reports the holes of a mapping created since the last clear as
    soft-dirty too, but they hold nothing to copy. Reads at most ``chunk_pages`` entries at a
    time, at offset (address // page_size) * 8.
    """
    if page_size <= 0 or chunk_pages <= 0:
        raise ValueError('page_size and chunk_pages must be positive')
    pages = 0
    want = PM_SOFT_DIRTY
    mapped = PM_PRESENT | PM_SWAPPED
    for start, end, _name in ranges:
        idx = start // page_size
        last = (end + page_size - 1) // page_size
        while idx < last:
            n = min(chunk_pages, last - idx)
            data = os.pread(fd, n * PAGEMAP_ENTRY_BYTES, idx * PAGEMAP_ENTRY_BYTES)
            got = len(data) // PAGEMAP_ENTRY_BYTES
            if not got:
                break
            entries = array.array('Q')
            entries.frombytes(data[:got * PAGEMAP_ENTRY_BYTES])
            pages += sum(1 for e in entries if e & want and e & mapped)
            idx += got
    return pages


def kernel_sets_soft_dirty():
    """Whether this kernel really sets the soft-dirty bit: a self-test on one page of this process.

    Touches an anonymous page, clears this process's soft-dirty bits, writes the page again and
    reads its pagemap entry. Without CONFIG_MEM_SOFT_DIRTY, clear_refs accepts the "4" but the
    bit is never set, and every rate would read as a false 0 B/s.
    """
    m = mmap.mmap(-1, mmap.PAGESIZE)
    try:
        view = ctypes.c_char.from_buffer(m)
        addr = ctypes.addressof(view)
        del view
        m[0:1] = b'\x01'
        with open('/proc/self/clear_refs', 'w') as f:
            f.write(CLEAR_SOFT_DIRTY)
        m[0:1] = b'\x02'
        fd = os.open('/proc/self/pagemap', os.O_RDONLY)
        try:
            data = os.pread(fd, PAGEMAP_ENTRY_BYTES, addr // mmap.PAGESIZE * PAGEMAP_ENTRY_BYTES)
        finally:
            os.close(fd)
    except (IOError, OSError, ValueError, TypeError):
        return False
    finally:
        m.close()
    if len(data) != PAGEMAP_ENTRY_BYTES:
        return False
    return bool(struct.unpack('=Q', data)[0] & PM_SOFT_DIRTY)


def _gone(err):
    return err.errno in (errno.ENOENT, errno.ESRCH)


def clear_soft_dirty(pid, proc='/proc'):
    """Clear the soft-dirty bits of every page of ``pid``; False when the process is gone."""
    path = os.path.join(proc, str(pid), 'clear_refs')
    try:
        with open(path, 'w') as f:
            f.write(CLEAR_SOFT_DIRTY)
    except (IOError, OSError) as e:
        if _gone(e):
            return False
        raise HaulError('dirty_rate', 'cannot clear the soft-dirty bits of pid %s (%s): %s'
                        % (pid, path, e.strerror or e))
    return True


def soft_dirty_pages(pid, proc='/proc', page_size=4096, chunk_pages=PAGEMAP_CHUNK_PAGES):
    """Soft-dirty pages in the writable private mappings of ``pid``; None when the process is gone."""
    base = os.path.join(proc, str(pid))
    try:
        with open(os.path.join(base, 'maps')) as f:
            ranges = parse_maps(f.read())
        fd = os.open(os.path.join(base, 'pagemap'), os.O_RDONLY)
    except (IOError, OSError) as e:
        if _gone(e):
            return None
        raise HaulError('dirty_rate', 'cannot read the memory map of pid %s: %s' % (pid, e.strerror or e))
    try:
        return count_soft_dirty(fd, ranges, page_size, chunk_pages)
    except (IOError, OSError) as e:
        if _gone(e):
            return None
        raise HaulError('dirty_rate', 'cannot read %s: %s' % (os.path.join(base, 'pagemap'), e.strerror or e))
    finally:
        os.close(fd)


def tree_dirty_rate(samples, page_size):
    """Bytes per second dirtied by a process tree: the sum over its processes of
    pages * page_size / seconds, ``samples`` being (pages, seconds) pairs, one per process
    (each measured over its own interval, from its clear to its read). None without samples.
    """
    if page_size <= 0:
        raise ValueError('page_size must be positive')
    total = 0.0
    n = 0
    for pages, seconds in samples:
        if pages < 0 or seconds <= 0:
            raise ValueError('a sample needs pages >= 0 and seconds > 0, not (%r, %r)' % (pages, seconds))
        total += pages * page_size / float(seconds)
        n += 1
    return int(round(total)) if n else None


def _not_measured(reason):
    return {'dirty_rate_bytes_s': None, 'dirty_rate_reason': reason, 'dirty_pages': None}


def measure_dirty_rates(trees, interval_ms, dirty_tracking, proc='/proc', page_size=None,
                        sleep=time.sleep, clock=time.monotonic, chunk_pages=PAGEMAP_CHUNK_PAGES,
                        self_test=kernel_sets_soft_dirty):
    """The dirty rate of several process trees, measured together over one interval.

    :param trees: ``{name: [pid, ...]}``, e.g. each container's processes.
    :param interval_ms: how long to let them run between the clear and the read.
    :param dirty_tracking: whether this kernel tracks dirty memory (CONFIG_MEM_SOFT_DIRTY), as
        ``criu_check`` reports it (``haul_criu.precopy_possible``, ``features.mem_dirty_track``).
        Without it nothing is touched and every tree gets no rate and a reason naming
        CONFIG_MEM_SOFT_DIRTY: the pagemap bits would read as zero and give a false 0 B/s.
    :param self_test: a callable run first when ``dirty_tracking`` is true
        (:func:`kernel_sets_soft_dirty`), so that a wrong ``dirty_tracking`` cannot give a false
        0 B/s either; None skips it (tests over a made-up ``proc``).

    Returns ``{name: {'dirty_rate_bytes_s': int or None, 'dirty_rate_reason': str,
    'dirty_pages': int or None}}``. The only state changed is the soft-dirty bits of the
    processes, cleared at the start (as CRIU's pre-dump does). Processes that exit meanwhile
    are left out of the sum.
    """
    if interval_ms is None or interval_ms <= 0 or interval_ms > MAX_DIRTY_INTERVAL_MS:
        raise HaulError('dirty_rate', 'the interval must be between 1 and %d ms, not %r'
                        % (MAX_DIRTY_INTERVAL_MS, interval_ms))
    if not dirty_tracking:
        return dict((name, _not_measured(NO_DIRTY_TRACKING)) for name in trees)
    if self_test is not None and not self_test():
        return dict((name, _not_measured(SOFT_DIRTY_NOT_SET)) for name in trees)
    psize = page_size or system_page_size()
    cleared = {}
    for name in sorted(trees):
        for pid in trees[name]:
            if clear_soft_dirty(pid, proc):
                cleared[(name, pid)] = clock()
    sleep(interval_ms / 1000.0)
    out = {}
    for name in sorted(trees):
        samples = []
        pages_total = 0
        for pid in trees[name]:
            if (name, pid) not in cleared:
                continue
            pages = soft_dirty_pages(pid, proc, psize, chunk_pages)
            seconds = clock() - cleared[(name, pid)]
            if pages is None or seconds <= 0:
                continue
            samples.append((pages, seconds))
            pages_total += pages
        if not samples:
            out[name] = _not_measured('not measured: no process of it could be measured (they exited)')
            continue
        rate = tree_dirty_rate(samples, psize)
        out[name] = {
            'dirty_rate_bytes_s': rate,
            'dirty_pages': pages_total,
            'dirty_rate_reason': 'measured: %d pages of %d bytes dirtied by %d process%s in about %d ms'
                                 % (pages_total, psize, len(samples), '' if len(samples) == 1 else 'es',
                                    interval_ms),
        }
    return out


# The longest CPU sample (container_info cpu_sample_ms, haul_rebalance_cpu_sample_ms): a
# minute, as its input check (_validate's sample_ms) says.
MAX_CPU_SAMPLE_MS = _validate.SAMPLE_MS_MAX


def measure_cpu_cores(trees, interval_ms, proc='/proc', sleep=time.sleep, clock=time.monotonic, hz=None):
    """How many CPUs each process tree kept busy, on average, over one interval: the user and
    system time its processes used meanwhile (``/proc/PID/stat``), over the interval. Nothing is
    changed. A process that exits meanwhile is left out (its last share is lost).

    :param trees: ``{name: [pid, ...]}``, e.g. each container's processes.
    Returns ``{name: cores}`` (a float, 0.0 for an idle tree)."""
    if interval_ms is None or interval_ms <= 0 or interval_ms > MAX_CPU_SAMPLE_MS:
        raise HaulError('cpu', 'the CPU sample must last between 1 and %d ms, not %r'
                        % (MAX_CPU_SAMPLE_MS, interval_ms))
    ticks_per_s = float(hz or os.sysconf('SC_CLK_TCK'))
    start = dict(((name, pid), _proc.cpu_ticks(pid, proc)) for name in trees for pid in trees[name])
    t0 = clock()
    sleep(interval_ms / 1000.0)
    seconds = clock() - t0
    out = {}
    for name in sorted(trees):
        used = 0
        for pid in trees[name]:
            before, after = start[(name, pid)], _proc.cpu_ticks(pid, proc)
            if before is not None and after is not None and after >= before:
                used += after - before
        out[name] = round(used / ticks_per_s / seconds, 3) if seconds > 0 else 0.0
    return out


def measure_dirty_rate(pids, interval_ms, dirty_tracking, **kwargs):
    """:func:`measure_dirty_rates` for one process tree: its result dict."""
    return measure_dirty_rates({'tree': pids}, interval_ms, dirty_tracking, **kwargs)['tree']
