# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Reading /proc, waiting for processes and killing them.

Plain helpers over /proc (status, start time, cgroup, RSS, tmpfs use, TCP
connections), a container's processes (its pid namespace's init, the stopped ones, SIGCONT to
all), waits for a pid that is not a child (pidfd when the kernel has it) and kills of a
process tree. No CRIU here.

This is a private module_util: it is not part of the collection's public API.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import select
import signal
import time

from ansible_collections.haul.live.plugins.module_utils._common import HaulError


def _read_text(path):
    with open(path) as f:
        return f.read()


def proc_status(pid, proc='/proc'):
    """{'NSpid': [...], 'PPid': int, 'State': 'S (sleeping)', ...} of a pid, or None if it is gone."""
    try:
        text = _read_text(os.path.join(proc, str(int(pid)), 'status'))
    except (IOError, OSError):
        return None
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(':')
        if not sep:
            continue
        value = value.strip()
        if key == 'NSpid':
            out[key] = [int(x) for x in value.split()]
        elif key in ('PPid', 'Pid'):
            out[key] = int(value)
        else:
            out[key] = value
    return out


def find_pidns_init(pid, proc='/proc'):
    """Host pid of the init of the pid namespace that ``pid`` is in (walking up the parents), or None."""
    st = proc_status(pid, proc)
    if not st or len(st.get('NSpid', [])) < 2:
        return None
    depth = len(st['NSpid'])
    seen = set()
    while st and pid not in seen:
        seen.add(pid)
        nspid = st.get('NSpid', [])
        if len(nspid) == depth and nspid[-1] == 1:
            return pid
        if len(nspid) < depth:
            return None
        pid = st.get('PPid')
        if not pid:
            return None
        st = proc_status(pid, proc)
    return None


def tree_rss(pids, proc='/proc'):
    """Sum of Rss (bytes) over ``pids`` from smaps_rollup (a safe over-estimate of what CRIU dumps)."""
    total = 0
    for pid in pids:
        try:
            text = _read_text(os.path.join(proc, str(pid), 'smaps_rollup'))
        except (IOError, OSError):
            continue
        for line in text.splitlines():
            if line.startswith('Rss:'):
                total += int(line.split()[1]) * 1024
                break
    return total


def cpu_ticks(pid, proc='/proc'):
    """User plus system CPU time of ``pid`` so far, in clock ticks (``/proc/PID/stat`` fields 14
    and 15), or None when it is gone."""
    try:
        text = _read_text(os.path.join(proc, str(pid), 'stat'))
    except (IOError, OSError):
        return None
    # the command (field 2) is in parentheses and may hold spaces: count from its closing one
    fields = text[text.rindex(')') + 2:].split()
    try:
        return int(fields[11]) + int(fields[12])
    except (IndexError, ValueError):
        return None


def tmpfs_usage(pid, proc='/proc'):
    """Bytes used by the tmpfs mounts in the mount namespace of ``pid`` (CRIU dumps their contents)."""
    total = 0
    try:
        text = _read_text(os.path.join(proc, str(pid), 'mountinfo'))
    except (IOError, OSError):
        return 0
    seen = set()
    for line in text.splitlines():
        pre, sep, post = line.partition(' - ')
        if not sep or not post.startswith('tmpfs '):
            continue
        fields = pre.split()
        dev, mountpoint = fields[2], fields[4]
        if dev in seen:
            continue
        seen.add(dev)
        try:
            st = os.statvfs(os.path.join(proc, str(pid), 'root') + mountpoint)
        except OSError:
            continue
        total += (st.f_blocks - st.f_bfree) * st.f_frsize
    return total


def all_stopped(pids, proc='/proc'):
    """Whether every pid (that still exists) is stopped (state T), as CRIU's leave_stopped leaves them."""
    seen = False
    for pid in pids:
        st = proc_status(pid, proc)
        if st is None:
            continue
        seen = True
        if not st.get('State', '').startswith('T'):
            return False
    return seen


# the processes of a container: its pid namespace's init, the stopped ones, SIGCONT to all

def parse_nspid(status_text):
    """Return the list of pids of the ``NSpid:`` line of ``/proc/PID/status`` (outermost first)."""
    for line in status_text.splitlines():
        if line.startswith('NSpid:'):
            return [int(x) for x in line.split()[1:]]
    return []


def own_lineage(proc='/proc'):
    """[(pid, comm)] of this process and its ancestors, up to the init of our pid namespace."""
    res = []
    pid = os.getpid()
    seen = set()
    while pid > 0 and pid not in seen:
        seen.add(pid)
        try:
            status = _read_text(os.path.join(proc, str(pid), 'status'))
        except (IOError, OSError):
            break
        comm = ''
        ppid = 0
        for line in status.splitlines():
            if line.startswith('Name:'):
                comm = line.split(None, 1)[1] if len(line.split(None, 1)) > 1 else ''
            elif line.startswith('PPid:'):
                ppid = int(line.split()[1])
        res.append((pid, comm))
        pid = ppid
    return res


def sigcont_tree(pids):
    """Send SIGCONT to every pid (e.g. after CRIU's leave_stopped); return how many got it.

    Pids that are gone are skipped silently.
    """
    count = 0
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGCONT)
            count += 1
        except OSError as e:
            if e.errno != errno.ESRCH:
                raise HaulError('resume', 'cannot send SIGCONT to pid %s: %s' % (pid, e.strerror or e))
    return count


def stopped_pids(pids, proc='/proc'):
    """The pids among ``pids`` that are stopped by a signal (state ``T`` in /proc/PID/stat)."""
    res = []
    for pid in pids:
        try:
            stat = _read_text(os.path.join(proc, str(pid), 'stat'))
        except (IOError, OSError):
            continue
        # "PID (comm) S ...": comm may contain spaces and parentheses, the state follows the last ')'
        rest = stat[stat.rfind(')') + 1:].split()
        if rest and rest[0] == 'T':
            res.append(int(pid))
    return res


def pidns_init(pids, proc='/proc'):
    """Among ``pids``, the one that is the init (pid 1) of a pid namespace below ours.

    The rule: ``/proc/PID/status`` has an ``NSpid`` line with more than one entry and its last entry
    is 1. If several match (nested pid namespaces), the outermost one (fewest entries) wins, then
    the lowest pid. Return None when there is none.
    """
    best = None
    for pid in pids:
        try:
            nspid = parse_nspid(_read_text(os.path.join(proc, str(pid), 'status')))
        except (IOError, OSError):
            continue
        if len(nspid) > 1 and nspid[-1] == 1:
            key = (len(nspid), pid)
            if best is None or key < best[0]:
                best = (key, pid)
    return best[1] if best else None


def proc_starttime(pid, proc='/proc'):
    """Start time (clock ticks since boot, field 22 of /proc/PID/stat) of a pid, or None."""
    try:
        text = _read_text(os.path.join(proc, str(int(pid)), 'stat'))
    except (IOError, OSError):
        return None
    try:
        return int(text.rsplit(')', 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def proc_cgroup_v2(pid, proc='/proc'):
    """The cgroup v2 path ('/haul/web1') of a pid, or None."""
    try:
        text = _read_text(os.path.join(proc, str(int(pid)), 'cgroup'))
    except (IOError, OSError):
        return None
    for line in text.splitlines():
        if line.startswith('0::'):
            return line[3:].strip() or '/'
    return None


def pid_alive(pid):
    """Whether pid exists and is not a zombie."""
    if not pid:
        return False
    try:
        with open('/proc/%d/stat' % int(pid)) as f:
            st = f.read().rsplit(')', 1)[1].split()[0]
    except (IOError, OSError, IndexError, ValueError):
        return False
    return st not in ('Z', 'X')


def proc_cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % int(pid), 'rb') as f:
            return [a.decode('utf-8', 'replace') for a in f.read().split(b'\0') if a]
    except (IOError, OSError, ValueError):
        return []


def children(proc='/proc'):
    """ppid -> [(pid, starttime)] of every process (from /proc/*/stat)."""
    out = {}
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            with open('%s/%s/stat' % (proc, name)) as f:
                fields = f.read().rsplit(')', 1)[1].split()
            out.setdefault(int(fields[1]), []).append((int(name), int(fields[19])))
        except (IOError, OSError, IndexError, ValueError):
            continue
    return out


def kill_tree(pid, sig=signal.SIGKILL):
    """Kill a process and its descendants (found through /proc/*/stat's ppid)."""
    tree = children()
    todo, seen = [int(pid)], []
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo.extend(child for child, dummy in tree.get(p, []))
    signal_all(seen, sig)
    return seen


def signal_all(pids, sig):
    """Send ``sig`` to every pid of ``pids``, skipping those already gone (or not ours)."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def _ipv4_hex(address, port):
    """'198.18.0.11', 27100 -> '0B0012C6:69DC' as in /proc/net/tcp (None for a non-IPv4 address)."""
    parts = str(address).split('.')
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
        return None
    return '%02X%02X%02X%02X:%04X' % (int(parts[3]), int(parts[2]), int(parts[1]), int(parts[0]), int(port))


def tcp_connected(pid, address, port, proc='/proc'):
    """Whether process ``pid`` holds an ESTABLISHED TCP socket to address:port (IPv4 or IPv6)."""
    inodes = set()
    fd_dir = os.path.join(proc, str(pid), 'fd')
    try:
        for name in os.listdir(fd_dir):
            try:
                target = os.readlink(os.path.join(fd_dir, name))
            except OSError:
                continue
            if target.startswith('socket:['):
                inodes.add(target[8:-1])
    except OSError:
        return False
    want4 = _ipv4_hex(address, port)
    want_port = ':%04X' % int(port)
    for table in ('tcp', 'tcp6'):
        try:
            with open(os.path.join(proc, str(pid), 'net', table)) as f:
                lines = f.read().splitlines()[1:]
        except (IOError, OSError):
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != '01' or fields[9] not in inodes:
                continue
            remote = fields[2]
            if (want4 and remote == want4) or (table == 'tcp6' and remote.endswith(want_port)):
                return True
    return False


# --------------------------------------------------------------------------- waits

def open_pidfd(pid):
    """A pidfd of ``pid`` (readable once it exits: select on it), or None without pidfd_open or
    when it cannot be opened (gone already, too old a kernel). The caller closes it."""
    opener = getattr(os, 'pidfd_open', None)
    try:
        return opener(int(pid)) if opener is not None else None
    except OSError:
        return None


def wait_pid_exit(pid, timeout):
    """Wait until ``pid`` (not necessarily a child) exits; HaulError('transfer', ...) on timeout.

    Waits on a pidfd (select), so no polling, when the kernel and Python have
    pidfd_open; else polls /proc every 10 ms.
    """
    if not pid_alive(pid):
        return
    fd = open_pidfd(pid)
    deadline = time.time() + timeout
    try:
        while pid_alive(pid):
            left = deadline - time.time()
            if left <= 0:
                raise HaulError('transfer', 'pid %s still runs after %ss' % (pid, timeout))
            if fd is not None:
                select.select([fd], [], [], left)
            else:
                time.sleep(min(0.01, left))
    finally:
        if fd is not None:
            os.close(fd)
