# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for plugins/module_utils/_sockets.py: counting a container's TCP and UDP sockets.

Most tests run over a made-up /proc in a tmp dir, laid out as the kernel lays it out:
PID/fd/N (symlinks reading ``socket:[INODE]``), PID/ns/net, PID/net/{tcp,tcp6,udp,udp6} and
PID/task/TID/children. The last ones count this very process's sockets in the real /proc.
"""

from __future__ import annotations

import os
import socket

import pytest

from ansible_collections.haul.live.plugins.module_utils import _checkpoint, _sockets
from ansible_collections.haul.live.plugins.module_utils._common import HaulError

TCP_HEADER = ('  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n')
UDP_HEADER = ('   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref '
              'pointer drops\n')
TCP6_HEADER = ('  sl  local_address                         remote_address                        st tx_queue rx_queue '
               'tr tm->when retrnsmt   uid  timeout inode\n')


def tcp_line(sl, state, inode, local='00000000:1F90', remote='00000000:0000'):
    return ('%4d: %s %s %s 00000000:00000000 00:00000000 00000000     0        0 %d 1 ffff8881 100 0 0 10 0\n'
            % (sl, local, remote, state, inode))


def tcp6_line(sl, state, inode):
    zero = '0' * 32
    return ('%4d: %s:0050 %s:0000 %s 00000000:00000000 00:00000000 00000000     0        0 %d 1 ffff8881 100 0 0 10 0\n'
            % (sl, zero, zero, state, inode))


def udp_line(sl, inode):
    return ('%5d: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 %d 2 '
            'ffff8881 0\n' % (sl, inode))


# The container's network namespace: what its processes see in /proc/PID/net.
TCP = (TCP_HEADER
       + tcp_line(0, '0A', 1001)                                           # listening: web1's server
       + tcp_line(1, '01', 1002, '0100007F:1F90', '0100007F:C350')         # established
       + tcp_line(2, '02', 1003, '0100007F:C351', '0A000002:0050')         # SYN_SENT
       + tcp_line(3, '06', 0, '0100007F:C352', '0100007F:1F90')            # TIME_WAIT: no owner, inode 0
       + tcp_line(4, '0A', 1999))                                          # another process's, not the container's
TCP6 = TCP6_HEADER + tcp6_line(0, '0A', 1101)
UDP = UDP_HEADER + udp_line(53, 2001)
UDP6 = UDP_HEADER


def make_proc(root, pid, fds, netns='net:[4026532100]', tables=None, children=()):
    """A made-up /proc/PID: fds maps an fd number to its link target."""
    base = root / str(pid)
    (base / 'fd').mkdir(parents=True)
    for fd, target in fds.items():
        os.symlink(target, str(base / 'fd' / str(fd)))
    (base / 'ns').mkdir()
    if netns:
        os.symlink(netns, str(base / 'ns' / 'net'))
    (base / 'net').mkdir()
    for name, text in (tables or {}).items():
        (base / 'net' / name).write_text(text)
    (base / 'task' / str(pid)).mkdir(parents=True)
    (base / 'task' / str(pid) / 'children').write_text(' '.join(str(c) for c in children))
    return base


CT_TABLES = {'tcp': TCP, 'tcp6': TCP6, 'udp': UDP, 'udp6': UDP6}


@pytest.fixture
def proc(tmp_path):
    """A container of three processes: init 100, its children 101 and 102 (102 holds no socket)."""
    root = tmp_path / 'proc'
    make_proc(root, 100, {0: '/dev/null', 1: '/dev/null', 3: 'socket:[1001]', 4: 'socket:[1002]',
                          5: 'socket:[2001]', 6: 'socket:[5000]', 7: 'pipe:[77]', 8: 'anon_inode:[eventfd]'},
              tables=CT_TABLES, children=(101, 102))
    # 101 inherited the established connection (counted once) and has its own sockets
    make_proc(root, 101, {0: '/dev/null', 4: 'socket:[1002]', 5: 'socket:[1101]', 6: 'socket:[1003]'},
              tables=CT_TABLES)
    make_proc(root, 102, {0: '/dev/null', 1: '/var/log/app.log'}, tables=CT_TABLES)
    return str(root)


def test_parse_table():
    assert _sockets.parse_table(TCP) == {1001: '0A', 1002: '01', 1003: '02', 1999: '0A'}
    assert _sockets.parse_table(TCP6) == {1101: '0A'}
    assert _sockets.parse_table(UDP) == {2001: '07'}
    assert _sockets.parse_table(UDP6) == {}
    assert _sockets.parse_table('') == {} and _sockets.parse_table(None) == {}
    assert _sockets.parse_table(TCP_HEADER + 'short line\n' + '   0: a b 0a c d e f g notanumber\n') == {}


def test_socket_inodes(proc):
    assert _sockets.socket_inodes(100, proc) == {1001, 1002, 2001, 5000}
    assert _sockets.socket_inodes(102, proc) == set()
    assert _sockets.socket_inodes(999, proc) == set()      # gone


def test_count_sockets_over_the_container(proc):
    assert _sockets.count_sockets([100, 101, 102], proc) == {
        'tcp_listen': 2,          # 1001 (tcp) and 1101 (tcp6); 1999 belongs to someone else
        'tcp_established': 1,     # 1002, shared by 100 and 101
        'tcp_other': 1,           # 1003, SYN_SENT
        'udp': 1,                 # 2001
        'total': 5,               # 5000 (unix, in no table) is not counted
    }


def test_count_sockets_from_the_root_pid(proc):
    assert _sockets.tree_pids(100, proc) == [100, 101, 102]
    assert _sockets.count_sockets(100, proc)['total'] == 5


def test_count_sockets_without_sockets(proc):
    assert _sockets.count_sockets([102], proc) == dict((k, 0) for k in _sockets.KEYS)
    assert _sockets.count_sockets([], proc)['total'] == 0


def test_count_sockets_skips_processes_gone(proc):
    assert _sockets.count_sockets([100, 4242], proc)['total'] == 3


def test_count_sockets_without_ipv6(tmp_path):
    root = tmp_path / 'proc'
    make_proc(root, 300, {3: 'socket:[1001]', 4: 'socket:[2001]'}, tables={'tcp': TCP, 'udp': UDP})
    assert _sockets.count_sockets([300], str(root)) == {
        'tcp_listen': 1, 'tcp_established': 0, 'tcp_other': 0, 'udp': 1, 'total': 2}


def test_count_sockets_reads_each_netns_tables(tmp_path):
    root = tmp_path / 'proc'
    # 400 and 401 share a namespace; 401's own tables are never needed. 402 is in another one,
    # where inode 1001 is not a socket the container knows: only its own tables tell.
    make_proc(root, 400, {3: 'socket:[1001]'}, netns='net:[1]', tables=CT_TABLES)
    make_proc(root, 401, {3: 'socket:[1002]'}, netns='net:[1]', tables={})
    make_proc(root, 402, {3: 'socket:[3001]'}, netns='net:[2]',
              tables={'tcp': TCP_HEADER + tcp_line(0, '01', 3001)})
    assert _sockets.count_sockets([400, 401, 402], str(root)) == {
        'tcp_listen': 1, 'tcp_established': 2, 'tcp_other': 0, 'udp': 0, 'total': 3}


def test_count_sockets_unreadable_descriptors(proc, monkeypatch):
    real = os.listdir

    def listdir(path):
        if path.endswith('/fd'):
            raise PermissionError(13, 'Permission denied')
        return real(path)

    monkeypatch.setattr(os, 'listdir', listdir)
    with pytest.raises(HaulError) as e:
        _sockets.count_sockets([100], proc)
    assert e.value.step == 'sockets' and 'Permission denied' in e.value.cause


def test_refusal_old_criu_on_new_kernel(proc):
    assert _sockets.refusal('node1', 'web1', [100, 101, 102], '4.1.1', '6.18.44-fc-v782', proc) == (
        'node1 cannot move web1: it holds 5 TCP/UDP sockets and CRIU 4.1.1 cannot dump sockets on kernel 6.18 '
        '(needs CRIU >= 4.2)')


def test_refusal_none_without_sockets(proc):
    assert _sockets.refusal('node1', 'web1', [102], '4.1.1', '6.18.44-fc-v782', proc) is None


@pytest.mark.parametrize('criu,kernel', [('4.2.1', '6.18.44-fc-v782'), ('4.1.1', '6.12.0')])
def test_refusal_reads_nothing_when_the_rule_allows(tmp_path, criu, kernel):
    # A /proc that does not exist: nothing is read when sockets are fine here.
    assert _sockets.refusal('node1', 'web1', [100], criu, kernel, str(tmp_path / 'nothing')) is None


# --------------------------------------------------------------------------- the real /proc

@pytest.fixture
def live_sockets():
    """A listening TCP socket, both ends of a connection to it, and a UDP socket, all in this process."""
    made = []
    try:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        made.append(server)
        server.bind(('127.0.0.1', 0))
        server.listen(1)
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        made.append(client)
        client.connect(server.getsockname())
        accepted, _addr = server.accept()
        made.append(accepted)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        made.append(udp)
        udp.bind(('127.0.0.1', 0))
        unix_a, unix_b = socket.socketpair()
        made.extend([unix_a, unix_b])
    except OSError as e:
        for s in made:
            s.close()
        pytest.skip('no loopback sockets here: %s' % e)
    yield
    for s in made:
        s.close()


def test_count_sockets_of_this_process(live_sockets):
    before = _sockets.count_sockets([os.getpid()])
    assert before['tcp_listen'] >= 1 and before['tcp_established'] >= 2 and before['udp'] >= 1
    assert before['total'] == before['tcp_listen'] + before['tcp_established'] + before['tcp_other'] + before['udp']


def test_criu_dump_refuses_before_any_freeze(live_sockets, monkeypatch):
    # _criu's own check, as dump_container makes it right after finding the container.
    real = os.uname()
    monkeypatch.setattr(os, 'uname', lambda: (real[0], 'node1', '6.18.44-fc-v782', real[3], real[4]))
    with pytest.raises(HaulError) as e:
        _checkpoint.checked_sockets('web1', [os.getpid()], '4.1.1')
    assert e.value.step == 'sockets'
    assert e.value.cause.startswith('node1 cannot move web1: it holds ')
    assert e.value.cause.endswith(' TCP/UDP sockets and CRIU 4.1.1 cannot dump sockets on kernel 6.18 (needs CRIU >= 4.2)')
    counts = _checkpoint.checked_sockets('web1', [os.getpid()], '4.2.1')
    assert counts['tcp_established'] >= 2
