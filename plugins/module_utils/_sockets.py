# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""How many TCP and UDP sockets a container's processes hold, from /proc.

This is a private module_util: it is not part of the collection's public API.

Why: CRIU before 4.2 cannot dump a TCP or UDP socket on a kernel >= 6.16 (``_compat``), so a
migration must know before it freezes anything whether the container has any.

How: every open file descriptor of the container's processes that is a socket reads as
``socket:[INODE]`` through ``/proc/PID/fd/N``. The sockets of a network namespace are listed,
one per line with their state and inode, in ``/proc/PID/net/{tcp,tcp6,udp,udp6}`` of any process
in it. A socket counts when its inode is both in those tables and among the processes'
descriptors; a socket shared by several processes (after a fork) counts once. Sockets that are
in no table (unix, netlink, an unbound TCP socket) are not counted.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os

from ansible_collections.haul.live.plugins.module_utils._common import HaulError

TABLES = (('tcp', 'tcp'), ('tcp6', 'tcp'), ('udp', 'udp'), ('udp6', 'udp'))
TCP_ESTABLISHED = '01'
TCP_LISTEN = '0A'
KEYS = ('tcp_listen', 'tcp_established', 'tcp_other', 'udp', 'total')


def _gone(err):
    return err.errno in (errno.ENOENT, errno.ESRCH)


def tree_pids(root_pid, proc='/proc'):
    """``root_pid`` and its descendants, from ``/proc/PID/task/TID/children``, in walk order."""
    out, todo, seen = [], [int(root_pid)], set()
    while todo:
        pid = todo.pop(0)
        if pid in seen:
            continue
        seen.add(pid)
        out.append(pid)
        try:
            tids = os.listdir(os.path.join(proc, str(pid), 'task'))
        except OSError:
            continue
        for tid in tids:
            try:
                with open(os.path.join(proc, str(pid), 'task', tid, 'children')) as f:
                    todo.extend(int(x) for x in f.read().split())
            except (IOError, OSError, ValueError):
                continue
    return out


def socket_inodes(pid, proc='/proc'):
    """Inodes of the sockets open in ``pid`` (``socket:[INODE]`` fd links); empty when the process is gone."""
    fd_dir = os.path.join(proc, str(pid), 'fd')
    try:
        fds = os.listdir(fd_dir)
    except OSError as e:
        if _gone(e):
            return set()
        raise HaulError('sockets', 'cannot list the descriptors of pid %s (%s): %s' % (pid, fd_dir, e.strerror or e))
    out = set()
    for fd in fds:
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue  # closed meanwhile
        if target.startswith('socket:[') and target.endswith(']'):
            try:
                out.add(int(target[8:-1]))
            except ValueError:
                continue
    return out


def parse_table(text):
    """{inode: state} of a /proc/net/{tcp,tcp6,udp,udp6} text (state as the kernel writes it, e.g. '0A').

    Lines with inode 0 (TIME_WAIT entries, which belong to no process) are left out.
    """
    out = {}
    for line in (text or '').splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        try:
            inode = int(fields[9])
        except ValueError:
            continue
        if inode:
            out[inode] = fields[3].upper()
    return out


def _netns(pid, proc):
    try:
        return os.readlink(os.path.join(proc, str(pid), 'ns', 'net'))
    except OSError:
        return None


def _read_tables(pid, proc):
    """{inode: (kind, state)} over the four tables seen by ``pid``, or None when it is gone."""
    out = {}
    for name, kind in TABLES:
        path = os.path.join(proc, str(pid), 'net', name)
        try:
            with open(path) as f:
                text = f.read()
        except (IOError, OSError) as e:
            if _gone(e) and not os.path.isdir(os.path.join(proc, str(pid))):
                return None
            continue  # no IPv6 in this kernel, say
        for inode, state in parse_table(text).items():
            out[inode] = (kind, state)
    return out


def count_sockets(pids, proc='/proc'):
    """How many TCP and UDP sockets the processes ``pids`` hold.

    :param pids: the container's host pids (every process), or its root pid (an int), whose
        descendants are then found with :func:`tree_pids`.
    :param proc: the proc filesystem (tests pass a made-up tree).

    Returns ``{'tcp_listen': n, 'tcp_established': n, 'tcp_other': n, 'udp': n, 'total': n}``;
    ``tcp_other`` are TCP sockets in another state (SYN_SENT, CLOSE_WAIT, FIN_WAIT...).
    The tables are read once per network namespace among the processes. Processes that exit
    meanwhile are left out. Raises HaulError('sockets', ...) when a process's descriptors cannot be
    read (not root).
    """
    if isinstance(pids, int):
        pids = tree_pids(pids, proc)
    inodes = {}
    by_ns = {}
    for pid in pids:
        found = socket_inodes(pid, proc)
        if not found:
            continue
        inodes[pid] = found
        by_ns.setdefault(_netns(pid, proc), []).append(pid)
    counts = dict((k, 0) for k in KEYS)
    for members in by_ns.values():
        tables = None
        for pid in members:
            tables = _read_tables(pid, proc)
            if tables is not None:
                break
        if not tables:
            continue
        mine = set()
        for pid in members:
            mine |= inodes[pid]
        for inode in mine:
            if inode not in tables:
                continue
            kind, state = tables[inode]
            if kind == 'udp':
                counts['udp'] += 1
            elif state == TCP_LISTEN:
                counts['tcp_listen'] += 1
            elif state == TCP_ESTABLISHED:
                counts['tcp_established'] += 1
            else:
                counts['tcp_other'] += 1
            counts['total'] += 1
    return counts


def refusal(host, container, pids, criu_version, kernel_release=None, proc='/proc'):
    """The sentence refusing to dump ``container`` on ``host`` when its CRIU cannot dump TCP/UDP
    sockets on this kernel (``_compat.sockets_support``) and its processes hold some; else None.

    Cheap where the rule allows sockets: /proc is read only when this CRIU and kernel cannot
    dump them. ``kernel_release`` defaults to this host's (``uname -r``).
    """
    from ansible_collections.haul.live.plugins.module_utils import _compat  # pylint: disable=import-outside-toplevel
    kernel_release = kernel_release or os.uname()[2]
    ok, _reason = _compat.sockets_support(kernel_release, criu_version)
    if ok:
        return None
    count = count_sockets(pids, proc)['total']
    return _compat.sockets_refusal(host, container, count, kernel_release, criu_version, side='source')
