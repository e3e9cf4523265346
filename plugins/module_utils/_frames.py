# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Raw Ethernet frames on a container's segment. Private module_util.

What :mod:`_network` sends and catches below IP, with packet sockets:

- :func:`announce`: gratuitous ARPs from inside a container that has just resumed somewhere, so
  that the segment learns its new port at once;
- :func:`arp_probe`: who answers for an address on a bridge's segment (RFC 5227 probes), to find
  an address clash before a migration;
- :class:`Catcher`: the clients' TCP segments that a freeze drops, caught on the source's bridge
  and sent again once the container runs (docs/networking.md).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ctypes
import os
import select
import socket
import struct
import time

SYS_CLASS_NET = '/sys/class/net'
CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003
ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4
# what a Catcher keeps at the most (a freeze of seconds with busy clients stays far below)
CATCH_MAX_FRAMES = 4096
CATCH_MAX_BYTES = 16 * 1024 * 1024


def interfaces(network):
    """The veths of a network description (checked by :func:`_network.interfaces`)."""
    from ansible_collections.haul.live.plugins.module_utils import _network  # pylint: disable=import-outside-toplevel
    return _network.interfaces(network)


def mac_bytes(mac):
    return bytes(bytearray(int(x, 16) for x in mac.split(':')))


def garp_frame(mac, address):
    """A gratuitous ARP request (sender = target = ``address``) from ``mac``, as a raw Ethernet frame."""
    hw = mac_bytes(mac)
    ip = socket.inet_aton(address)
    eth = b'\xff' * 6 + hw + struct.pack('!H', ETH_P_ARP)
    arp = struct.pack('!HHBBH', 1, 0x0800, 6, 4, 1) + hw + ip + b'\0' * 6 + ip
    return eth + arp


def arp_probe_frame(mac, address):
    """An ARP probe (RFC 5227: sender address 0.0.0.0) from ``mac`` asking who has ``address``."""
    hw = mac_bytes(mac)
    eth = b'\xff' * 6 + hw + struct.pack('!H', ETH_P_ARP)
    arp = struct.pack('!HHBBH', 1, 0x0800, 6, 4, 1) + hw + b'\0' * 4 + b'\0' * 6 + socket.inet_aton(address)
    return eth + arp


def parse_arp_reply(frame):
    """(sender address, sender MAC) of an ARP reply frame, else None."""
    if len(frame) < 42 or struct.unpack('!H', frame[12:14])[0] != ETH_P_ARP:
        return None
    if struct.unpack('!H', frame[20:22])[0] != 2:
        return None
    mac = ':'.join('%02x' % b for b in bytearray(frame[22:28]))
    return socket.inet_ntoa(frame[28:32]), mac


def arp_probe(bridge, addresses, timeout=0.3, sysfs=SYS_CLASS_NET):
    """Who answers for ``addresses`` on the segment of ``bridge`` (this host's): {address: [MACs]}.

    ARP probes (sender 0.0.0.0, so that no cache learns anything) go out of the bridge twice;
    replies are collected for ``timeout`` seconds. Addresses nobody answers for map to []."""
    with open(os.path.join(sysfs, bridge, 'address')) as f:
        mac = f.read().strip()
    seen = dict((a, []) for a in addresses)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))  # pylint: disable=no-member
    try:
        s.bind((bridge, ETH_P_ARP))
        deadline = time.time() + timeout
        for rnd in range(2):
            for a in addresses:
                s.send(arp_probe_frame(mac, a))
            end = deadline if rnd else time.time() + timeout / 3.0
            while True:
                left = end - time.time()
                if left <= 0:
                    break
                if not select.select([s], [], [], left)[0]:
                    continue
                got = parse_arp_reply(s.recv(2048))
                if got and got[0] in seen and got[1] not in seen[got[0]]:
                    seen[got[0]].append(got[1])
    finally:
        s.close()
    return seen


def _setns_net(pid):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open('/proc/%d/ns/net' % pid, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
    finally:
        os.close(fd)


def announce(pid, network, count=2):
    """Send gratuitous ARPs for each address from inside the container's namespace (a child
    process enters it). Returns the number of frames sent; never raises: the container already
    runs, and the segment learns its port from its next frame anyway."""
    frames = [(i['name'], garp_frame(i['mac'], a.split('/')[0]))
              for i in interfaces(network) if i.get('mac') for a in i.get('addresses') or []]
    if not frames or not pid:
        return 0
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        sent = 0
        try:
            os.close(r)
            _setns_net(pid)
            for dummy in range(count):
                for ifname, frame in frames:
                    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)  # pylint: disable=no-member
                    try:
                        s.bind((ifname, ETH_P_ARP))
                        s.send(frame)
                        sent += 1
                    finally:
                        s.close()
        except Exception:  # pylint: disable=broad-except
            pass
        os.write(w, str(sent).encode())
        os._exit(0)
    os.close(w)
    try:
        data = os.read(r, 32)
    finally:
        os.close(r)
        os.waitpid(child, 0)
    try:
        return int(data or 0)
    except ValueError:
        return 0


def tcp_to_mac_filter(mac):
    """A classic BPF program that keeps IPv4 TCP frames sent to ``mac`` (the container's)."""
    hw = mac_bytes(mac)
    hi, lo = struct.unpack('!H', hw[:2])[0], struct.unpack('!I', hw[2:])[0]
    # (code, jt, jf, k): ldh [0]; jeq hi; ld [2]; jeq lo; ldh [12]; jeq IPv4; ldb [23]; jeq TCP; ret all; ret 0
    prog = [(0x28, 0, 0, 0), (0x15, 0, 7, hi), (0x20, 0, 0, 2), (0x15, 0, 5, lo), (0x28, 0, 0, 12),
            (0x15, 0, 3, ETH_P_IP), (0x30, 0, 0, 23), (0x15, 0, 1, 6), (0x06, 0, 0, 0xffff), (0x06, 0, 0, 0)]
    return b''.join(struct.pack('HBBI', *ins) for ins in prog)


def _attach_filter(sock, program):
    buf = ctypes.create_string_buffer(program)
    fprog = struct.pack('HL', len(program) // 8, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    return buf  # the kernel copied it; kept for symmetry with the socket's life


def _ones_complement_sum(data):
    if len(data) % 2:
        data += b'\0'
    total = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    return total


def with_tcp_checksum(frame):
    """``frame`` (Ethernet, IPv4, TCP) with its TCP checksum computed. A segment caught on a veth
    may carry only the pseudo-header's sum (checksum offload: the kernel finishes it on a real
    NIC, never on a veth), and a receiver drops a segment whose checksum is wrong."""
    ihl = (bytearray(frame[14:15])[0] & 0x0f) * 4
    total_len = struct.unpack('!H', frame[16:18])[0]
    ip = frame[14:14 + ihl]
    seg = bytearray(frame[14 + ihl:14 + total_len])
    if len(seg) < 20:
        return frame
    seg[16:18] = b'\0\0'
    pseudo = ip[12:20] + struct.pack('!BBH', 0, 6, len(seg))
    csum = (~_ones_complement_sum(pseudo + bytes(seg))) & 0xffff
    seg[16:18] = struct.pack('!H', csum)
    return frame[:14 + ihl] + bytes(seg) + frame[14 + total_len:]


REPLAY_PER_FLOW = 16


def from_mac(frame, mac):
    """``frame`` with ``mac`` (6 bytes) as its Ethernet source. A caught frame carries its client's
    MAC: sent again as it is, from this host, every switch on the way would learn that the client
    sits behind this host's port, and send this host what is meant for the client until the client
    speaks again (the container's answers lost, and the client waiting for a retransmission). The
    receiving IP stack does not look at the source MAC."""
    return frame[:6] + mac + frame[12:]


def latest_per_flow(frames, keep=REPLAY_PER_FLOW):
    """The last ``keep`` frames of each TCP connection, in the order they came. The catcher
    starts before the freeze does, so most of what it holds got through already (a TCP receiver
    drops duplicates, but each costs a duplicate ACK); what the freeze dropped is the newest. If a
    client sent more than that meanwhile, the newest arriving first makes its TCP resend the rest
    at once (the receiver's SACK shows the hole)."""
    seen = {}
    keys = []
    for frame in frames:
        ihl = (bytearray(frame[14:15])[0] & 0x0f) * 4
        key = frame[26:34] + frame[14 + ihl:14 + ihl + 4]  # addresses and ports
        keys.append(key)
        seen[key] = seen.get(key, 0) + 1
    out = []
    for frame, key in zip(frames, keys):
        if seen[key] <= keep:
            out.append(frame)
        else:
            seen[key] -= 1
    return out


class Catcher(object):
    """The clients' TCP segments that a freeze drops, caught on the source host and sent again
    once the container runs elsewhere (or here again, after a rollback).

    Why: while the container is frozen, CRIU's network lock (and then its host end, down) drops
    what its clients send. A client resends a lost segment only when its retransmission timer
    fires: at least 200 ms, doubling each time, so a 150 ms freeze can cost a client 400 ms or
    more. The frames caught here, on the bridge ports other than the container's own, are exact
    copies of what the clients sent; sent again through the bridge once the container runs, they
    reach it at once. Only TCP is caught: a TCP receiver drops what it already has, so a segment
    that got through before the lock does no harm twice (a UDP datagram would).

    Best effort: a catcher that cannot start catches nothing, and the migration goes on.
    """

    def __init__(self, network, sysfs=SYS_CLASS_NET):
        self.frames = []
        self.bytes = 0
        self.socks = []
        self.bridges = []
        self._thread = None
        self._wake_r = self._wake_w = None
        for i in interfaces(network):
            br = i.get('bridge')
            if not (br and i.get('mac')):
                continue
            try:
                ports = [d for d in os.listdir(os.path.join(sysfs, br, 'brif')) if d != i['host_end']]
            except OSError:
                continue
            program = tcp_to_mac_filter(i['mac'])
            for port in ports:
                try:
                    sk = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))  # pylint: disable=no-member
                except (OSError, socket.error):
                    continue
                try:
                    _attach_filter(sk, program)
                    sk.bind((port, ETH_P_ALL))
                    sk.setblocking(False)
                except (OSError, socket.error):
                    sk.close()
                    continue
                self.socks.append((sk, mac_bytes(i['mac'])))
            if br not in self.bridges:
                self.bridges.append(br)

    def start(self):
        """Catch from now on, in a thread, until :meth:`release` or :meth:`close`."""
        if not self.socks:
            return self
        import threading  # pylint: disable=import-outside-toplevel
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name='haul-catcher')
        self._thread.daemon = True
        self._thread.start()
        return self

    def _run(self):
        by_fd = dict((sk.fileno(), (sk, mac)) for sk, mac in self.socks)
        while True:
            ready = select.select(list(by_fd) + [self._wake_r], [], [])[0]
            if self._wake_r in ready:
                return
            for fd in ready:
                sk, mac = by_fd[fd]
                try:
                    frame, addr = sk.recvfrom(65536)
                except (OSError, socket.error):
                    continue
                if addr[2] == PACKET_OUTGOING or frame[:6] != mac:
                    continue
                if len(self.frames) < CATCH_MAX_FRAMES and self.bytes + len(frame) <= CATCH_MAX_BYTES:
                    self.frames.append(frame)
                    self.bytes += len(frame)

    def _stop(self):
        if self._thread is not None:
            os.write(self._wake_w, b'x')
            self._thread.join(5)
            self._thread = None
        for sk, dummy in self.socks:
            sk.close()
        self.socks = []
        for fd in (self._wake_r, self._wake_w):
            if fd is not None:
                os.close(fd)
        self._wake_r = self._wake_w = None

    def release(self, sysfs=SYS_CLASS_NET):
        """Stop catching and send what was caught through the bridge (which forwards it to where the
        container's MAC is now), from the bridge's own MAC (:func:`from_mac`). Returns the number of
        frames sent."""
        self._stop()
        sent = 0
        for br in self.bridges[:1]:
            try:
                with open(os.path.join(sysfs, br, 'address')) as f:
                    own = mac_bytes(f.read().strip())
                sk = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)  # pylint: disable=no-member
                try:
                    sk.bind((br, 0))
                    for frame in latest_per_flow(self.frames):
                        sk.send(with_tcp_checksum(from_mac(frame, own)))
                        sent += 1
                finally:
                    sk.close()
            except (OSError, socket.error, ValueError):
                pass
        self.frames = []
        return sent

    def close(self):
        """Stop catching; forget what was caught."""
        self._stop()
        self.frames = []
