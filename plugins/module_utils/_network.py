# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A container's network, as a migration carries it. Private module_util.

A networked container has its own network namespace with a veth whose other end sits in the
host's namespace, attached to a bridge. The bridge is on an L2 segment that spans the hosts, so
the container keeps its address (and MAC) wherever it runs. See docs/networking.md.

The steps, in the order a migration takes them:

1. :func:`describe` (source, before the freeze): the veths, their MACs and addresses, the host
   end of each and its bridge. The dump records it in the images' manifest.
2. :func:`require_restorable` (destination, before the restore): each bridge exists here, and no
   interface here already has the host end's name.
3. :func:`criu_externals` (destination, the restore): ``veth[eth0]:HOSTEND`` for CRIU, which
   recreates the pair with the host end in this namespace, down and on no bridge, so that the
   restored copy is unreachable until it is committed.
4. :func:`attach` (destination, at the commit, before the tasks resume): each host end onto its
   bridge, up.
5. :func:`announce` (destination, right after the resume): a gratuitous ARP for each address from
   inside the container, so that the segment learns the new port at once.

On the way back, :func:`release_lock` removes CRIU's nftables network lock (tables ``inet CRIU-*``)
from the container's namespace: a source that resumes after a failed migration must answer its
clients again, even when CRIU died before it could unlock.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ctypes
import fcntl
import json
import os
import re
import socket
import struct
import subprocess
import time

from ansible_collections.haul.live.plugins.module_utils._common import HaulError, run_command
from ansible_collections.haul.live.plugins.module_utils import _frames

CRIU_LOCK_PREFIX = 'CRIU-'
IFNAMSIZ = 16
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCGIFINDEX = 0x8933
SIOCBRADDIF = 0x89a2
IFF_UP = 0x1
SYS_CLASS_NET = '/sys/class/net'


def _run(argv, step, timeout=10):
    """Run a short command; its stdout, or HaulError(step) naming the command and its stderr."""
    return run_command(argv, step, timeout)


def _in_netns(pid):
    """nsenter's prefix that runs a command in the network namespace of ``pid``."""
    return ['nsenter', '--net=/proc/%d/ns/net' % int(pid), '--']


def own_netns(pid, proc='/proc'):
    """True when ``pid`` is in another network namespace than this process."""
    try:
        return os.readlink('%s/%d/ns/net' % (proc, int(pid))) != os.readlink('%s/self/ns/net' % proc)
    except OSError:
        return False


def parse_links(container_addrs, host_links):
    """The network description from ``ip -j -d addr show`` in the container's namespace and
    ``ip -j -d link show`` in the host's. Only veths are carried; loopback needs nothing.

    Returns ``{'interfaces': [{name, kind, mac, mtu, addresses, host_end, bridge}], 'other': [names]}``:
    ``other`` lists devices a migration cannot carry (anything but loopback and veth)."""
    by_index = dict((link.get('ifindex'), link) for link in host_links)
    out = {'interfaces': [], 'other': []}
    for link in container_addrs:
        kind = ((link.get('linkinfo') or {}).get('info_kind') or '')
        name = link.get('ifname')
        if link.get('link_type') == 'loopback' or name == 'lo':
            continue
        if kind != 'veth':
            out['other'].append(name)
            continue
        peer = by_index.get(link.get('link_index'))
        if peer is None or ((peer.get('linkinfo') or {}).get('info_kind')) != 'veth':
            # its other end is not in the host's namespace (another container's, or gone)
            out['other'].append(name)
            continue
        out['interfaces'].append({
            'name': name,
            'kind': 'veth',
            'mac': link.get('address'),
            'mtu': link.get('mtu'),
            'addresses': ['%s/%s' % (a['local'], a['prefixlen']) for a in link.get('addr_info') or []
                          if a.get('family') == 'inet' and a.get('scope') != 'host'],
            'host_end': peer.get('ifname'),
            'bridge': peer.get('master'),
        })
    return out


NEIGH_STATES = ('REACHABLE', 'STALE', 'DELAY', 'PROBE', 'PERMANENT')


def parse_neighbours(entries, names):
    """The IPv4 neighbours (ARP entries with a MAC) of ``ip -j neigh show`` on the devices ``names``."""
    out = []
    for n in entries or []:
        if n.get('dev') not in names or not n.get('lladdr') or ':' in str(n.get('dst', '')):
            continue
        if any(st in NEIGH_STATES for st in n.get('state') or []):
            out.append({'dst': n['dst'], 'lladdr': n['lladdr'], 'dev': n['dev']})
    return out


def _links(pid, step):
    container = json.loads(_run(_in_netns(pid) + ['ip', '-j', '-d', 'addr', 'show'], step) or '[]')
    host = json.loads(_run(['ip', '-j', '-d', 'link', 'show'], step) or '[]')
    net = parse_links(container, host)
    if net['interfaces']:
        # CRIU restores no ARP entries: the restored copy would ask for its clients' MACs first
        neigh = json.loads(_run(_in_netns(pid) + ['ip', '-j', '-4', 'neigh', 'show'], step) or '[]')
        net['neighbours'] = parse_neighbours(neigh, [i['name'] for i in net['interfaces']])
    return net


def inspect(pid, step='network'):
    """Like :func:`describe`, but a device a migration cannot carry is listed in ``other``
    instead of refused (what ``container_info`` reports and preflight weighs)."""
    if not own_netns(pid):
        return None
    return _links(pid, step)


def describe(pid, step='network'):
    """The network of the container whose init is ``pid``: None when it shares the host's
    namespace, ``{'interfaces': [], ...}`` when it has only loopback."""
    if not own_netns(pid):
        return None
    net = _links(pid, step)
    if net['other']:
        raise HaulError(step, 'the container has network devices a migration cannot carry: %s (only veths '
                        'whose other end is on this host, see docs/networking.md)' % ', '.join(net['other']))
    return net


IFNAME_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]{0,14}\Z')
MAC_RE = re.compile(r'[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}\Z')


def interfaces(network, step='network'):
    """The veths of a network description, checked: names that are interface names (they go into
    CRIU's options and ioctls), MACs that are MACs, IPv4 addresses. HaulError(step) otherwise."""
    if not network:
        return []
    if not isinstance(network, dict) or not isinstance(network.get('interfaces') or [], list):
        raise HaulError(step, 'a network description is a dict with a list "interfaces", not %r' % (network,))
    out = []
    for i in network.get('interfaces') or []:
        if not isinstance(i, dict):
            raise HaulError(step, 'each of its interfaces is a dict, not %r' % (i,))
        for key in ('name', 'host_end', 'bridge'):
            value = i.get(key)
            if (value is not None or key != 'bridge') and not IFNAME_RE.match(str(value or '')):
                raise HaulError(step, 'interface %s %r is not an interface name' % (key, value))
        if i.get('mac') is not None and not MAC_RE.match(str(i['mac'])):
            raise HaulError(step, 'interface mac %r is not a MAC address' % (i['mac'],))
        for a in i.get('addresses') or []:
            try:
                socket.inet_pton(socket.AF_INET, str(a).split('/', maxsplit=1)[0])
            except (OSError, socket.error):
                raise HaulError(step, 'interface address %r is not an IPv4 address' % (a,))
        out.append(i)
    return out


def addresses(network):
    """Every IPv4 address (without its prefix length) of a network description."""
    return [a.split('/')[0] for i in interfaces(network) for a in i.get('addresses') or []]


def bridges(network):
    return sorted(set(i['bridge'] for i in interfaces(network) if i.get('bridge')))


def criu_externals(network):
    """CRIU ``external`` entries that recreate each veth with its host end in the restoring
    namespace, with the host end's old name. No ``@bridge``: :func:`attach` does that at the commit."""
    return ['veth[%s]:%s' % (i['name'], i['host_end']) for i in interfaces(network)]


def _exists(ifname, sysfs=SYS_CLASS_NET):
    return os.path.exists(os.path.join(sysfs, ifname))


def require_restorable(network, step='network', sysfs=SYS_CLASS_NET):
    """Before the restore: every bridge the container needs is here, and no host end's name is taken."""
    for i in interfaces(network):
        br = i.get('bridge')
        if br and not os.path.isdir(os.path.join(sysfs, br, 'bridge')):
            raise HaulError(step, 'this host has no bridge %s, which the container\'s %s (%s) needs: create it '
                            'on the segment the container\'s subnet is on (docs/networking.md)'
                            % (br, i['name'], ', '.join(i.get('addresses') or []) or 'no address'))
        if _exists(i['host_end'], sysfs):
            raise HaulError(step, 'an interface %s already exists on this host: it would clash with the host end '
                            'of the container\'s %s' % (i['host_end'], i['name']))


def _ifreq(name, fmt='', *values):
    data = struct.pack('%dsH' % IFNAMSIZ, name.encode()[:IFNAMSIZ - 1], 0) if not fmt else \
        struct.pack('%ds%s' % (IFNAMSIZ, fmt), name.encode()[:IFNAMSIZ - 1], *values)
    return data + b'\0' * (40 - len(data))


def attach(network, step='attach'):
    """Put each host end onto its bridge and bring it up (``ip link set HOSTEND master BR up``),
    through ioctls: this runs inside the freeze. Returns the host ends attached."""
    done = []
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for i in interfaces(network):
            dev, br = i['host_end'], i.get('bridge')
            try:
                if br:
                    idx = struct.unpack('i', fcntl.ioctl(s, SIOCGIFINDEX, _ifreq(dev))[IFNAMSIZ:IFNAMSIZ + 4])[0]
                    try:
                        fcntl.ioctl(s, SIOCBRADDIF, _ifreq(br, 'i', idx))
                    except OSError as e:
                        if e.errno != 16:  # EBUSY: already a port of it
                            raise
                flags = struct.unpack('H', fcntl.ioctl(s, SIOCGIFFLAGS, _ifreq(dev))[IFNAMSIZ:IFNAMSIZ + 2])[0]
                if not flags & IFF_UP:
                    fcntl.ioctl(s, SIOCSIFFLAGS, _ifreq(dev, 'H', flags | IFF_UP))
            except (IOError, OSError) as e:
                raise HaulError(step, 'cannot attach %s to bridge %s: %s' % (dev, br, e))
            done.append(dev)
    finally:
        s.close()
    return done


def set_up(network, up=True, step='link'):
    """Bring each host end up or down (``ip link set HOSTEND up|down``); returns those changed."""
    done = []
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for i in interfaces(network):
            dev = i['host_end']
            try:
                flags = struct.unpack('H', fcntl.ioctl(s, SIOCGIFFLAGS, _ifreq(dev))[IFNAMSIZ:IFNAMSIZ + 2])[0]
                new = (flags | IFF_UP) if up else (flags & ~IFF_UP)
                if new != flags:
                    fcntl.ioctl(s, SIOCSIFFLAGS, _ifreq(dev, 'H', new))
                    done.append(dev)
            except (IOError, OSError) as e:
                raise HaulError(step, 'cannot bring %s %s: %s' % (dev, 'up' if up else 'down', e))
    finally:
        s.close()
    return done


def fence(network):
    """A source held for a migration: its host ends go down, so that while the copy elsewhere takes
    over its address, the frozen source answers no ARP (its kernel would, frozen or not) and pulls
    no traffic back to itself. Best effort: the source is frozen and locked already."""
    try:
        return set_up(network, up=False, step='fence')
    except HaulError:
        return []


def _down_host_ends(network, sysfs=SYS_CLASS_NET):
    down = []
    for i in interfaces(network):
        try:
            with open(os.path.join(sysfs, i['host_end'], 'flags')) as f:
                if not int(f.read().strip(), 16) & IFF_UP:
                    down.append(i['host_end'])
        except (IOError, OSError, ValueError):
            pass
    return down


SYS_PIDFD_OPEN = 434   # the same number on x86_64 and aarch64 (the generic syscall table)
SYS_PIDFD_GETFD = 438
SOL_TCP = 6
TCP_REPAIR = 19
TCP_REPAIR_OFF = 0


def _tcp_fds(pid, proc='/proc'):
    """The fds of ``pid`` that are TCP sockets (established or other), from /proc."""
    from ansible_collections.haul.live.plugins.module_utils import _sockets  # pylint: disable=import-outside-toplevel
    tables = _sockets._read_tables(pid, proc) or {}  # pylint: disable=protected-access
    tcp = set(inode for inode, (kind, dummy) in tables.items() if kind == 'tcp')
    out = []
    fd_dir = os.path.join(proc, str(pid), 'fd')
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return out
    for name in names:
        try:
            target = os.readlink(os.path.join(fd_dir, name))
        except OSError:
            continue
        if target.startswith('socket:[') and target[8:-1].isdigit() and int(target[8:-1]) in tcp:
            out.append(int(name))
    return out


def repair_off(pids, step='unlock'):
    """Take the TCP sockets of ``pids`` out of repair mode (TCP_REPAIR off), as CRIU does when a
    dump fails. A dump that leaves the tasks stopped (a migration's) leaves its established
    connections in repair mode, where they neither send nor acknowledge anything: a source that
    resumes after a failed migration must have them back. Each socket is reached through a
    duplicate of its fd (pidfd_getfd, Linux >= 5.6); turning repair off also sends a window probe,
    which wakes the peer. Returns the number of sockets set.

    Call it BEFORE the tasks run again: a task that reads a socket still in repair mode gets
    EINVAL, and the workload would close a connection that is about to work again."""
    libc = ctypes.CDLL(None, use_errno=True)
    done = 0
    for pid in pids or []:
        fds = _tcp_fds(pid)
        if not fds:
            continue
        pidfd = libc.syscall(SYS_PIDFD_OPEN, int(pid), 0)
        if pidfd < 0:
            continue  # gone meanwhile
        try:
            for fd in fds:
                dup = libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
                if dup < 0:
                    continue
                try:
                    sk = socket.socket(fileno=dup)
                except (OSError, socket.error):
                    os.close(dup)
                    continue
                try:
                    if sk.getsockopt(SOL_TCP, TCP_REPAIR):
                        sk.setsockopt(SOL_TCP, TCP_REPAIR, TCP_REPAIR_OFF)
                        done += 1
                except (OSError, socket.error) as e:
                    if e.errno not in (1, 22, 95):  # not repairable in its state, or not TCP after all
                        raise HaulError(step, 'cannot take a TCP socket of pid %s out of repair mode: %s' % (pid, e))
                finally:
                    sk.close()  # our duplicate only: the container's fd stays open
        finally:
            os.close(pidfd)
    return done


def reopen(pid, step='unlock', check_mode=False, pids=None):
    """A source that resumes after a failed migration: its host ends up again, and CRIU's network
    lock gone, its TCP connections out of repair mode (:func:`repair_off`, on ``pids``, the
    container's processes). Returns ``{'links': [...], 'unlocked': [...], 'repaired': n}``: the host
    ends brought up, the lock tables removed and the sockets set (that would be, in check mode:
    ``repaired`` is then null); empty without its own namespace."""
    if not pid or not own_netns(pid):
        return {'links': [], 'unlocked': [], 'repaired': 0}
    net = _links(pid, step)
    if check_mode:
        return {'links': _down_host_ends(net), 'unlocked': release_lock(pid, step=step, check_mode=True),
                'repaired': None}
    links = set_up(net, up=True, step=step)
    unlocked = release_lock(pid, step=step)
    return {'links': links, 'unlocked': unlocked, 'repaired': repair_off(pids or [pid], step=step)}


def destination_problems(network, sysfs=SYS_CLASS_NET, probe=True, timeout=0.3):
    """What keeps this host from taking a container with ``network`` (before anything is frozen):
    a missing bridge, a host end's name taken, or one of its addresses answered on the segment by
    another MAC than the container's. Returns (sentences, details)."""
    problems, conflicts = [], []
    interfaces(network)  # a malformed description is an error, not a problem of this host
    try:
        require_restorable(network, step='network', sysfs=sysfs)
    except HaulError as e:
        problems.append(e.cause)
    if probe and not problems:
        for i in interfaces(network):
            if not i.get('bridge'):
                continue
            answers = _frames.arp_probe(i['bridge'], [a.split('/')[0] for a in i.get('addresses') or []], timeout, sysfs)
            for address, macs in sorted(answers.items()):
                others = [m for m in macs if m.lower() != (i.get('mac') or '').lower()]
                if others:
                    conflicts.append({'address': address, 'macs': others})
                    problems.append('%s already answers on the segment of %s from %s, not from the container\'s '
                                    '%s: an address clash' % (address, i['bridge'], ', '.join(others), i.get('mac')))
    return problems, {'conflicts': conflicts}


def go_live(network, resume, pid):
    """The restored copy goes on the network: host ends onto their bridges and up, forwarding,
    then ``resume()`` (the tasks run; None when CRIU resumed them), then the gratuitous ARPs.
    Returns the number of ARP frames sent. The tasks resume even when a host end cannot be
    attached (the caller decided they run here); that HaulError is raised after the resume."""
    failed = None
    try:
        attach(network)
        # forwarding before the tasks run: what they send first (the answer to a request that came
        # before the freeze) would else be dropped, and a restored socket resends only after its
        # retransmission timer (1 s: it has no round-trip estimate yet)
        wait_forwarding(network)
    except HaulError as e:
        failed = e
    if resume is not None:
        resume()
    if failed is not None:
        raise failed
    if not interfaces(network):
        return 0
    return _frames.announce(pid, network)


def wait_forwarding(network, timeout=0.5, sysfs=SYS_CLASS_NET):
    """Wait until each host end forwards on its bridge (a port whose link has just come up starts
    once the kernel has seen the carrier; usually at once when the host end was up before it was
    added: see :func:`prepare_links`). An ARP sent before would be dropped. Bounded: returns the
    host ends still not forwarding after ``timeout`` seconds."""
    deadline = time.time() + timeout
    waiting = [i['host_end'] for i in interfaces(network) if i.get('bridge')]
    delay = 0.0005
    while waiting:
        still = []
        for dev in waiting:
            try:
                with open(os.path.join(sysfs, dev, 'brport', 'state')) as f:
                    if f.read().strip() != '3':  # BR_STATE_FORWARDING
                        still.append(dev)
            except (IOError, OSError):
                still.append(dev)
        waiting = still
        if not waiting or time.time() >= deadline:
            break
        time.sleep(delay)
        delay = min(delay * 2, 0.01)
    return waiting


def neighbours(network, step='network'):
    """The ARP entries of a network description, checked (they go into an ``ip -batch``)."""
    names = [i['name'] for i in interfaces(network, step)]
    out = []
    for n in (network or {}).get('neighbours') or []:
        if not isinstance(n, dict) or n.get('dev') not in names or not MAC_RE.match(str(n.get('lladdr'))):
            raise HaulError(step, 'a neighbour must be {dst, lladdr, dev} on one of %s, not %r' % (names, n))
        try:
            socket.inet_pton(socket.AF_INET, str(n.get('dst')))
        except (OSError, socket.error):
            raise HaulError(step, 'neighbour dst %r is not an IPv4 address' % (n.get('dst'),))
        out.append(n)
    return out


def restore_neighbours(pid, network, step='restore'):
    """Put the source's ARP entries into the restored container's namespace (state STALE: used at
    once, confirmed later). CRIU restores none: the first packet the restored copy sends to a
    client would otherwise wait for ARP, and a solicit sent while its link was still down (CRIU's
    own window probes, at the end of its restore) is only repeated after a second, the time the
    first answers then wait. Returns the number of entries."""
    entries = neighbours(network, step)
    if not entries or not pid:
        return 0
    script = ''.join('neigh replace %s lladdr %s dev %s nud stale\n' % (n['dst'], n['lladdr'], n['dev'])
                     for n in entries)
    try:
        p = subprocess.run(_in_netns(pid) + ['ip', '-batch', '-'], input=script.encode(),  # pylint: disable=ansible-bad-function
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        raise HaulError(step, 'cannot run ip: %s' % e)
    if p.returncode != 0:
        raise HaulError(step, 'cannot restore the ARP entries: %s' % p.stderr.decode('utf-8', 'replace').strip()[-300:])
    return len(entries)


def prepare_links(network, step='restore', pid=None):
    """Right after a restore that holds the container stopped: its ARP entries back
    (:func:`restore_neighbours`), and each host end up, on no bridge. The link is then up by the
    commit, so that adding it to its bridge makes it forward at once; and nothing the restored copy
    sends reaches the segment before the commit."""
    restore_neighbours(pid, network, step)
    return set_up(network, up=True, step=step)


def lock_tables(nft_json):
    """CRIU's network-lock tables (``inet CRIU-*``) in ``nft -j list tables`` output."""
    out = []
    for item in (nft_json or {}).get('nftables') or []:
        table = item.get('table') if isinstance(item, dict) else None
        if table and table.get('family') == 'inet' and str(table.get('name', '')).startswith(CRIU_LOCK_PREFIX):
            out.append(table['name'])
    return out


def release_lock(pid, step='unlock', check_mode=False):
    """Remove CRIU's nftables network lock from the namespace of ``pid`` (a source that resumes
    after a failed migration). Returns the tables removed; [] for a container without its own
    namespace or without a lock."""
    if not pid or not own_netns(pid):
        return []
    try:
        listing = _run(_in_netns(pid) + ['nft', '-j', 'list', 'tables'], step)
    except HaulError as e:
        if 'cannot run' in e.cause:  # no nft here: CRIU could not have locked with nftables
            return []
        raise
    try:
        tables = lock_tables(json.loads(listing or '{}'))
    except ValueError:
        raise HaulError(step, 'nft printed no JSON: cannot tell whether CRIU\'s network lock is still set')
    if check_mode:
        return tables
    for t in tables:
        _run(_in_netns(pid) + ['nft', 'delete', 'table', 'inet', t], step)
    return tables
