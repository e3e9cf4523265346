# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests of _network: parsing over real ``ip -j`` output, and (as root) the real thing in two
network namespaces made for the test: describe, fence, reopen (CRIU's nftables lock removed),
attach and the gratuitous ARP that the bridge learns from."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
import uuid

import pytest

from ansible_collections.haul.live.plugins.module_utils import _frames
from ansible_collections.haul.live.plugins.module_utils import _network
from ansible_collections.haul.live.plugins.module_utils._common import HaulError

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')
COLLECTIONS = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..', 'build', 'collections'))


def _fixture():
    with open(os.path.join(FIXTURES, 'ip_veth.json')) as f:
        return json.load(f)


def test_parse_links_carries_a_veth_with_its_bridge():
    fx = _fixture()
    net = _network.parse_links(fx['container_addrs'], fx['host_links'])
    assert net['other'] == []
    assert net['interfaces'] == [{'name': 'eth0', 'kind': 'veth', 'mac': '02:48:c6:12:00:65', 'mtu': 1500,
                                  'addresses': ['198.18.0.101/24'], 'host_end': 'hvabc', 'bridge': 'br0'}]
    assert _network.addresses(net) == ['198.18.0.101']
    assert _network.bridges(net) == ['br0']
    assert _network.criu_externals(net) == ['veth[eth0]:hvabc']


def test_parse_links_loopback_only_carries_nothing():
    fx = _fixture()
    net = _network.parse_links(fx['container_addrs'][:1], fx['host_links'])
    assert net == {'interfaces': [], 'other': []}
    assert _network.criu_externals(net) == []
    assert _network.criu_externals(None) == []


def test_parse_links_refuses_a_veth_whose_peer_is_not_here():
    fx = _fixture()
    others = [dict(link, ifindex=99) for link in fx['host_links']]  # the peer is in another namespace
    net = _network.parse_links(fx['container_addrs'], others)
    assert net['interfaces'] == [] and net['other'] == ['eth0']


def test_parse_links_lists_devices_it_cannot_carry():
    fx = _fixture()
    macvlan = dict(fx['container_addrs'][1], ifname='mv0', linkinfo={'info_kind': 'macvlan'})
    net = _network.parse_links(fx['container_addrs'][:1] + [macvlan], fx['host_links'])
    assert net['other'] == ['mv0']


def test_lock_tables_finds_only_criu_inet_tables():
    listing = {'nftables': [{'metainfo': {'version': '1.0.6'}},
                            {'table': {'family': 'inet', 'name': 'CRIU-abc', 'handle': 1}},
                            {'table': {'family': 'inet', 'name': 'other', 'handle': 2}},
                            {'table': {'family': 'ip', 'name': 'CRIU-x', 'handle': 3}}]}
    assert _network.lock_tables(listing) == ['CRIU-abc']
    assert _network.lock_tables({}) == []


def test_garp_frame_layout():
    frame = _frames.garp_frame('02:48:c6:12:00:65', '198.18.0.101')
    assert len(frame) == 42
    assert frame[:6] == b'\xff' * 6 and frame[6:12] == bytes.fromhex('0248c6120065')
    assert struct.unpack('!H', frame[12:14])[0] == 0x0806
    htype, ptype, hlen, plen, op = struct.unpack('!HHBBH', frame[14:22])
    assert (htype, ptype, hlen, plen, op) == (1, 0x0800, 6, 4, 1)
    assert frame[28:32] == frame[38:42] == bytes([198, 18, 0, 101])  # sender = target: gratuitous


def test_require_restorable(tmp_path):
    net = {'interfaces': [{'name': 'eth0', 'host_end': 'hvabc', 'bridge': 'br0', 'addresses': ['198.18.0.101/24']}]}
    with pytest.raises(HaulError) as e:
        _network.require_restorable(net, sysfs=str(tmp_path))
    assert 'no bridge br0' in e.value.msg and '198.18.0.101/24' in e.value.msg
    (tmp_path / 'br0' / 'bridge').mkdir(parents=True)
    _network.require_restorable(net, sysfs=str(tmp_path))
    (tmp_path / 'hvabc').mkdir()
    with pytest.raises(HaulError) as e:
        _network.require_restorable(net, sysfs=str(tmp_path))
    assert 'hvabc already exists' in e.value.msg
    _network.require_restorable(None, sysfs=str(tmp_path))


def test_down_host_ends(tmp_path):
    for name, flags in (('hva', '0x1003'), ('hvb', '0x1002')):
        (tmp_path / name).mkdir()
        (tmp_path / name / 'flags').write_text(flags + '\n')
    net = {'interfaces': [{'name': 'eth0', 'host_end': 'hva'}, {'name': 'eth1', 'host_end': 'hvb'},
                          {'name': 'eth2', 'host_end': 'gone'}]}
    assert _network._down_host_ends(net, sysfs=str(tmp_path)) == ['hvb']  # pylint: disable=protected-access


@pytest.mark.parametrize('bad', [
    {'interfaces': [{'name': 'eth0', 'host_end': 'hv-x]:y@br0'}]},
    {'interfaces': [{'name': 'eth0\n', 'host_end': 'hv'}]},
    {'interfaces': [{'name': 'eth0', 'host_end': 'hv', 'bridge': '-o'}]},
    {'interfaces': [{'name': 'eth0', 'host_end': 'hv', 'mac': 'zz'}]},
    {'interfaces': [{'name': 'eth0', 'host_end': 'hv', 'addresses': ['not-an-address/24']}]},
    {'interfaces': 'eth0'},
    ['eth0'],
])
def test_a_malformed_description_is_refused(bad):
    with pytest.raises(HaulError) as e:
        _network.criu_externals(bad)
    assert e.value.step == 'network'


def test_arp_probe_and_reply_frames():
    probe = _frames.arp_probe_frame('02:48:c6:12:00:0c', '198.18.0.101')
    assert len(probe) == 42 and probe[28:32] == b'\0\0\0\0'  # sender 0.0.0.0: nobody learns from it
    assert probe[38:42] == bytes([198, 18, 0, 101])
    reply = (bytes.fromhex('0248c612000c') + bytes.fromhex('0248c6120065') + b'\x08\x06'
             + struct.pack('!HHBBH', 1, 0x0800, 6, 4, 2) + bytes.fromhex('0248c6120065') + bytes([198, 18, 0, 101])
             + bytes.fromhex('0248c612000c') + b'\0\0\0\0')
    assert _frames.parse_arp_reply(reply) == ('198.18.0.101', '02:48:c6:12:00:65')
    assert _frames.parse_arp_reply(probe) is None  # a request, not a reply


def test_a_container_in_this_namespace_has_no_network_to_carry():
    assert _network.describe(os.getpid()) is None
    assert _network.reopen(os.getpid()) == {'links': [], 'unlocked': [], 'repaired': 0}
    assert _network.release_lock(None) == []


# ------------------------------------------------------------------ the real thing, as root

REAL = os.geteuid() == 0 and shutil.which('ip') and shutil.which('nft') and shutil.which('nsenter')


@pytest.fixture
def two_namespaces():
    """A "host" namespace with bridge br0, and a "container" namespace whose eth0 (198.18.0.101/24)
    is a veth to the host's hvNAME on br0; a process sleeps in the container."""
    tag = uuid.uuid4().hex[:6]
    host, ct, end = 'hlu-h' + tag, 'hlu-c' + tag, 'hv' + tag

    def ip(*args):
        subprocess.run(['ip'] + list(args), check=True)
    ip('netns', 'add', host)
    ip('netns', 'add', ct)
    sleeper = None
    try:
        ip('-n', host, 'link', 'add', 'br0', 'type', 'bridge')
        ip('-n', host, 'link', 'set', 'br0', 'up')
        ip('-n', host, 'link', 'add', end, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ct)
        ip('-n', host, 'link', 'set', end, 'master', 'br0', 'up')
        ip('-n', ct, 'link', 'set', 'eth0', 'address', '02:48:c6:12:00:65', 'up')
        ip('-n', ct, 'addr', 'add', '198.18.0.101/24', 'dev', 'eth0')
        sleeper = subprocess.Popen(['ip', 'netns', 'exec', ct, 'sleep', '60'])
        for dummy in range(100):
            try:
                if os.readlink('/proc/%d/ns/net' % sleeper.pid) != os.readlink('/proc/self/ns/net'):
                    break
            except OSError:
                pass
            time.sleep(0.01)
        yield {'host': host, 'ct': ct, 'end': end, 'pid': sleeper.pid}
    finally:
        if sleeper is not None:
            sleeper.kill()
            sleeper.wait()
        subprocess.run(['ip', 'netns', 'del', ct], check=False)
        subprocess.run(['ip', 'netns', 'del', host], check=False)


def _in_host(ns, code, *args):
    """Run ``code`` with _network imported, in namespace ``ns``; its JSON output."""
    prog = 'import json, sys\nfrom ansible_collections.haul.live.plugins.module_utils import _network as n\n' + code
    p = subprocess.run(['ip', 'netns', 'exec', ns, sys.executable, '-c', prog] + [str(a) for a in args],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       env=dict(os.environ, PYTHONPATH=COLLECTIONS), check=False)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.mark.skipif(not REAL, reason='needs root, ip, nft and nsenter')
def test_fence_reopen_unlock_attach_announce_for_real(two_namespaces):
    ns = two_namespaces
    pid = ns['pid']
    # the network lock CRIU leaves behind when it dies mid-dump (its table in the container's namespace)
    subprocess.run(['ip', 'netns', 'exec', ns['ct'], 'nft', 'add', 'table', 'inet', 'CRIU-deadbeef'], check=True)
    out = _in_host(ns['host'], '''
pid = int(sys.argv[1])
net = n.describe(pid)
fenced = n.fence(net)
check = n.reopen(pid, check_mode=True)
done = n.reopen(pid)
again = n.reopen(pid)
print(json.dumps({"net": net, "fenced": fenced, "check": check, "done": done, "again": again}))
''', pid)
    assert out['net']['interfaces'][0]['host_end'] == ns['end']
    assert out['net']['interfaces'][0]['bridge'] == 'br0'
    assert out['fenced'] == [ns['end']]
    assert out['check'] == {'links': [ns['end']], 'unlocked': ['CRIU-deadbeef'], 'repaired': None}
    assert out['done'] == {'links': [ns['end']], 'unlocked': ['CRIU-deadbeef'], 'repaired': 0}
    assert out['again'] == {'links': [], 'unlocked': [], 'repaired': 0}  # idempotent
    tables = subprocess.run(['ip', 'netns', 'exec', ns['ct'], 'nft', 'list', 'tables'], stdout=subprocess.PIPE,
                            universal_newlines=True, check=True).stdout
    assert 'CRIU-' not in tables

    # the destination's way: host end off the bridge and down (as CRIU's restore leaves it), then
    # live from the description the source recorded
    net = _in_host(ns['host'], 'print(json.dumps(n.describe(int(sys.argv[1]))))', pid)
    subprocess.run(['ip', '-n', ns['host'], 'link', 'set', ns['end'], 'nomaster'], check=True)
    subprocess.run(['ip', '-n', ns['host'], 'link', 'set', ns['end'], 'down'], check=True)
    out = _in_host(ns['host'], '''
net = json.loads(sys.argv[2])
print(json.dumps({"sent": n.go_live(net, None, int(sys.argv[1]))}))
''', pid, json.dumps(net))
    assert out['sent'] == 2
    link = subprocess.run(['ip', '-n', ns['host'], '-j', 'link', 'show', ns['end']], stdout=subprocess.PIPE,
                          universal_newlines=True, check=True).stdout
    assert json.loads(link)[0].get('master') == 'br0'
    fdb = subprocess.run(['ip', 'netns', 'exec', ns['host'], 'bridge', 'fdb', 'show', 'dev', ns['end']],
                         stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    assert '02:48:c6:12:00:65' in fdb  # the bridge learned the container's port from the gratuitous ARP


@pytest.mark.skipif(not REAL, reason='needs root, ip, nft and nsenter')
def test_destination_problems_for_real(two_namespaces):
    """The host's own bridge probes the segment: the container's own MAC is no clash; the same
    address from another namespace with another MAC is; a missing bridge or a taken name is said."""
    ns = two_namespaces
    net = _in_host(ns['host'], 'print(json.dumps(n.describe(int(sys.argv[1]))))', ns['pid'])
    elsewhere = dict(net, interfaces=[dict(net['interfaces'][0], host_end='hvnew')])
    probe = 'problems, details = n.destination_problems(json.loads(sys.argv[1]))\n' \
            'print(json.dumps({"problems": problems, "conflicts": details["conflicts"]}))'
    out = _in_host(ns['host'], probe, json.dumps(elsewhere))
    assert out == {'problems': [], 'conflicts': []}
    out = _in_host(ns['host'], probe, json.dumps(net))  # its host end's name is taken here
    assert len(out['problems']) == 1 and 'already exists' in out['problems'][0]
    # another machine on the segment with the container's address
    other = 'hlu-o' + ns['end'][2:]
    subprocess.run(['ip', 'netns', 'add', other], check=True)
    try:
        subprocess.run(['ip', '-n', ns['host'], 'link', 'add', 'hvo', 'type', 'veth', 'peer', 'name', 'eth0',
                        'netns', other], check=True)
        subprocess.run(['ip', '-n', ns['host'], 'link', 'set', 'hvo', 'master', 'br0', 'up'], check=True)
        subprocess.run(['ip', '-n', other, 'link', 'set', 'eth0', 'address', '02:00:00:00:00:01', 'up'], check=True)
        subprocess.run(['ip', '-n', other, 'addr', 'add', '198.18.0.101/24', 'dev', 'eth0'], check=True)
        out = _in_host(ns['host'], probe, json.dumps(elsewhere))
    finally:
        subprocess.run(['ip', 'netns', 'del', other], check=False)
    assert out['conflicts'] == [{'address': '198.18.0.101', 'macs': ['02:00:00:00:00:01']}]
    assert 'an address clash' in out['problems'][0]
    missing = dict(net, interfaces=[dict(net['interfaces'][0], host_end='hvnew', bridge='br9')])
    out = _in_host(ns['host'], probe, json.dumps(missing))
    assert out['problems'] and 'no bridge br9' in out['problems'][0]


@pytest.mark.skipif(not REAL, reason='needs root, ip, nft and nsenter')
def test_catcher_sends_again_what_the_freeze_dropped(two_namespaces):
    """A client connects while the container's host end is down (as during a freeze): its SYNs are
    dropped, and TCP sends them again after 1 s, then 3 s. The catcher on the host's bridge keeps
    them and sends them again (checksummed: a veth leaves that to the receiver) once the host end is
    up: the connection completes then, not at the client's next retry."""
    ns = two_namespaces
    client = 'hlu-k' + ns['end'][2:]
    subprocess.run(['ip', 'netns', 'add', client], check=True)
    listener = host = None
    try:
        subprocess.run(['ip', '-n', ns['host'], 'link', 'add', 'hvk', 'type', 'veth', 'peer', 'name', 'eth0',
                        'netns', client], check=True)
        subprocess.run(['ip', '-n', ns['host'], 'link', 'set', 'hvk', 'master', 'br0', 'up'], check=True)
        subprocess.run(['ip', '-n', client, 'link', 'set', 'eth0', 'up'], check=True)
        subprocess.run(['ip', '-n', client, 'addr', 'add', '198.18.0.5/24', 'dev', 'eth0'], check=True)
        subprocess.run(['ip', '-n', client, 'neigh', 'add', '198.18.0.101', 'lladdr', '02:48:c6:12:00:65',
                        'dev', 'eth0'], check=True)
        listener = subprocess.Popen(['ip', 'netns', 'exec', ns['ct'], sys.executable, '-c',
                                     'import socket, time\ns = socket.socket()\n'
                                     's.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n'
                                     's.bind(("0.0.0.0", 7777)); s.listen(5); print("up", flush=True); time.sleep(30)'],
                                    stdout=subprocess.PIPE, universal_newlines=True)
        assert listener.stdout.readline().strip() == 'up'
        prog = ('import json, sys, time\nfrom ansible_collections.haul.live.plugins.module_utils import _network as n\n'
                'from ansible_collections.haul.live.plugins.module_utils import _frames\n'
                'net = n.describe(int(sys.argv[1]))\nc = _frames.Catcher(net).start()\nn.fence(net)\n'
                'print("fenced", flush=True)\nsys.stdin.readline()\ntime.sleep(1.5)\n'
                'n.set_up(net)\ntime.sleep(0.05)\nprint(json.dumps({"sent": c.release()}), flush=True)\n')
        host = subprocess.Popen(['ip', 'netns', 'exec', ns['host'], sys.executable, '-c', prog, str(ns['pid'])],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, universal_newlines=True,
                                env=dict(os.environ, PYTHONPATH=COLLECTIONS))
        assert host.stdout.readline().strip() == 'fenced'
        host.stdin.write('go\n')
        host.stdin.flush()
        took = subprocess.run(['ip', 'netns', 'exec', client, sys.executable, '-c',
                               'import socket, time\nt = time.time()\n'
                               's = socket.create_connection(("198.18.0.101", 7777), timeout=5)\n'
                               'print(time.time() - t)'],
                              stdout=subprocess.PIPE, universal_newlines=True, check=True, timeout=20).stdout
        released = json.loads(host.stdout.readline())
    finally:
        for p in (listener, host):
            if p is not None:
                p.kill()
                p.wait()
        subprocess.run(['ip', 'netns', 'del', client], check=False)
    assert released['sent'] >= 1
    # its SYNs (the first, and the retry after 1 s) were dropped, and reached the container when the
    # catcher sent them again at ~1.55 s; without it, the connection waits for the retry at 3 s
    assert float(took) < 2.5


def _tcp_frame(src_port, seq):
    eth = bytes.fromhex('0248c6120065') + bytes.fromhex('0248c6120005') + b'\x08\x00'
    tcp = struct.pack('!HHIIBBHHH', src_port, 7000, seq, 0, 5 << 4, 0x18, 65535, 0, 0) + b'x' * 8
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0,
                     bytes([198, 18, 0, 5]), bytes([198, 18, 0, 101]))
    return eth + ip + tcp


def test_replayed_frames_leave_from_the_replaying_host_s_mac():
    """A caught frame is sent again with the bridge's MAC as its source: with the client's, the
    switches would learn the client behind this host and lose the container's answers."""
    frame = _tcp_frame(40000, 7)
    own = bytes.fromhex('0248c612000b')
    out = _frames.from_mac(frame, own)
    assert out[:6] == frame[:6]                   # still to the container's MAC
    assert out[6:12] == own and frame[6:12] != own
    assert out[12:] == frame[12:]                 # the IP packet untouched
    assert len(out) == len(frame)


def test_latest_per_flow_keeps_the_newest_of_each_connection_in_order():
    a = [_tcp_frame(40000, seq) for seq in range(5)]
    b = [_tcp_frame(40001, seq) for seq in range(2)]
    frames = [a[0], b[0], a[1], a[2], b[1], a[3], a[4]]
    assert _frames.latest_per_flow(frames, keep=2) == [b[0], b[1], a[3], a[4]]
    assert _frames.latest_per_flow(frames, keep=16) == frames


def test_with_tcp_checksum_is_what_a_receiver_checks():
    frame = _frames.with_tcp_checksum(_tcp_frame(40000, 7))
    seg = frame[34:]
    pseudo = frame[26:34] + struct.pack('!BBH', 0, 6, len(seg))
    assert _frames._ones_complement_sum(pseudo + seg) == 0xffff  # pylint: disable=protected-access


def test_neighbours_are_kept_and_checked():
    entries = [{'dst': '198.18.0.5', 'dev': 'eth0', 'lladdr': '02:48:c6:12:00:05', 'state': ['REACHABLE']},
               {'dst': '198.18.0.6', 'dev': 'eth0', 'state': ['FAILED']},
               {'dst': '198.18.0.7', 'dev': 'eth1', 'lladdr': '02:48:c6:12:00:07', 'state': ['STALE']},
               {'dst': 'fe80::1', 'dev': 'eth0', 'lladdr': '02:48:c6:12:00:08', 'state': ['STALE']}]
    kept = _network.parse_neighbours(entries, ['eth0'])
    assert kept == [{'dst': '198.18.0.5', 'lladdr': '02:48:c6:12:00:05', 'dev': 'eth0'}]
    net = {'interfaces': [{'name': 'eth0', 'host_end': 'hv-a', 'bridge': 'br0'}], 'neighbours': kept}
    assert _network.neighbours(net) == kept
    for bad in ({'dst': '198.18.0.5 lladdr 0:0:0:0:0:0', 'lladdr': '02:48:c6:12:00:05', 'dev': 'eth0'},
                {'dst': '198.18.0.5', 'lladdr': '02:48:c6:12:00:05\nneigh flush all', 'dev': 'eth0'},
                {'dst': '198.18.0.5', 'lladdr': '02:48:c6:12:00:05', 'dev': 'eth9'}):
        with pytest.raises(HaulError):
            _network.neighbours(dict(net, neighbours=[bad]))
