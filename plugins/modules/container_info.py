#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: container_info
short_description: List the containers on a host that haul.live can migrate
version_added: 0.1.0
description:
  - Finds the containers on the host it runs on, and describes each one for a migration plan,
    with the runtime that owns it (RV(containers[].runtime)); see docs/runtimes.md.
  - "A C(lab) container (haul.live's own) is a child cgroup of the parent cgroup O(parent) (below
    the cgroup2 root) whose processes include the init of a pid namespace: C(NSpid) in
    C(/proc/PID/status) has more than one entry and ends in C(1). Its name is the name of that
    child cgroup."
  - A C(podman) container is one that C(podman ps) lists as running or paused; an C(lxc) container
    one that C(lxc-ls) and C(lxc-info) show running or frozen. Their names, ids and states are the
    runtime's own; their processes, memory, sockets and network are read from their init process.
  - Never changes anything, except when O(dirty_rate_ms) measures a dirty rate on a kernel that
    tracks dirty memory; see O(dirty_rate_ms).
author:
  - haul.live developers (@haul-live)
options:
  runtime:
    description:
      - Which runtime's containers to list. V(auto) asks every runtime installed on the host (Podman,
        LXC, then the lab's cgroup convention) and reports each container once, under the runtime that
        owns it; a runtime whose listing fails is reported in RV(runtimes) and does not hide the others.
      - A named runtime that is not installed, or whose listing fails, fails the module.
    type: str
    choices: [auto, lab, podman, lxc]
    default: auto
  parent:
    description: The parent cgroup of the C(lab) runtime's containers, relative to the cgroup2 root.
    type: str
    default: haul
  names:
    description: Only these containers. Names that are not found are listed in RV(missing).
    type: list
    elements: str
  dirty_rate_ms:
    description:
      - Measure how fast each container dirties its memory (RV(containers[].dirty_rate_bytes_s)),
        over this many milliseconds (at most 60000). V(0) measures nothing.
      - "How: with the kernel's soft-dirty tracking (C(CONFIG_MEM_SOFT_DIRTY)), the way CRIU's
        pre-dump finds what changed. It writes C(4) to C(/proc/PID/clear_refs) of every process of
        the container, waits, then counts the present or swapped pages of their writable private
        mappings whose soft-dirty bit (bit 55 of C(/proc/PID/pagemap)) is set. The rate is the sum
        over the processes. Only the pagemap is read, never the memory itself."
      - Clearing the soft-dirty bits is the only state it changes (it reports RV(ignore:changed=false)).
        Nothing uses them outside a pre-copy migration, whose own pre-dumps clear them too; do not
        measure a container while one of its pre-copy migrations runs.
      - Needs O(dirty_tracking). Without dirty tracking nothing is cleared or read, and the rate
        is null with a reason naming C(CONFIG_MEM_SOFT_DIRTY), never a made-up number. Before it
        measures, the module also checks on one page of its own that the kernel really sets the
        bit.
    type: int
    default: 0
  cpu_sample_ms:
    description:
      - Measure how many CPUs each container keeps busy (RV(containers[].cpu_cores)), on average over
        this many milliseconds (at most 60000), from the user and system time of its processes
        (C(/proc/PID/stat)). V(0) measures nothing. It changes nothing, in check mode too.
      - C(haul.live.rebalance) uses it with C(haul_rebalance_by=cpu).
    type: int
    default: 0
  dirty_tracking:
    description:
      - Whether this host's kernel tracks dirty memory, as M(haul.live.criu_check) reports it
        (C(haul_criu.precopy_possible), or C(haul_criu.features.mem_dirty_track)).
      - Required when O(dirty_rate_ms) is above V(0).
    type: bool
extends_documentation_fragment:
  - haul.live.attributes
attributes:
  check_mode:
    support: full
    details:
      - In check mode O(dirty_rate_ms) measures nothing (it would clear soft-dirty bits); the rate
        is null and its reason says so, or names C(CONFIG_MEM_SOFT_DIRTY) when O(dirty_tracking=false).
  diff_mode:
    support: none
  idempotent:
    support: full
notes:
  - Run it as root. It reads C(/proc) and the cgroup filesystems only (and, with O(dirty_rate_ms),
    writes C(/proc/PID/clear_refs)).
seealso:
  - module: haul.live.criu_dump
'''

EXAMPLES = r'''
- name: Find the containers on the source
  haul.live.container_info:
  register: found

- name: Show them
  ansible.builtin.debug:
    msg: "{{ found.containers | map(attribute='name') }}"

- name: Find the Podman containers only
  haul.live.container_info:
    runtime: podman
  register: podman_found

- name: Describe two containers, whatever their state
  haul.live.container_info:
    names: [web1, db1]
  register: two

- name: Read what the kernel can do
  haul.live.criu_check:
  register: check

- name: Measure how fast web1 dirties its memory, over one second
  haul.live.container_info:
    names: [web1]
    dirty_rate_ms: 1000
    dirty_tracking: "{{ check.ansible_facts.haul_criu.precopy_possible }}"
  register: web1

- name: Show the rate, or why there is none
  ansible.builtin.debug:
    msg: "{{ web1.containers[0].dirty_rate_bytes_s }} B/s ({{ web1.containers[0].dirty_rate_reason }})"

- name: Measure how many CPUs each container keeps busy, over two seconds
  haul.live.container_info:
    cpu_sample_ms: 2000
  register: busy
'''

RETURN = r'''
containers:
  description: The containers found, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The container's name (a lab container's cgroup's name; Podman's or LXC's name for theirs).
      type: str
      sample: web1
    runtime:
      description: The runtime that owns it - V(lab), V(podman) or V(lxc).
      type: str
      sample: podman
    id:
      description: Its id in its runtime (Podman's container id; the name for LXC and the lab).
      type: str
      sample: 5f2b0c9e1d7a...
    runtime_state:
      description: Its state as its runtime reports it (for example Podman's V(running) or V(paused)).
      returned: for podman and lxc containers
      type: str
      sample: running
    image:
      description: The image it was created from.
      returned: for podman containers
      type: str
      sample: localhost/haul-lab:latest
    cgroup:
      description: Its cgroup v2 path below the cgroup2 root.
      type: str
      sample: /haul/web1
    cgroup_fs:
      description: Its cgroup v2 directory.
      type: str
      sample: /sys/fs/cgroup/unified/haul/web1
    init_pid:
      description: The host pid of its pid-namespace init.
      type: int
      sample: 1234
    processes:
      description: How many processes it has.
      type: int
    state:
      description: V(running), V(frozen) (its cgroup is frozen) or V(stopped) (all its tasks are stopped by a signal).
      type: str
      sample: running
    memory_bytes:
      description: What a dump of it holds, about - resident memory plus tmpfs contents.
      type: int
    rss_bytes:
      description: Resident memory of its processes.
      type: int
    tmpfs_bytes:
      description: Bytes used in its tmpfs mounts (CRIU dumps them).
      type: int
    root:
      description: Its root directory on this host, or null when it cannot be told.
      type: str
      sample: /var/lib/haul/containers/web1/rootfs
    sockets:
      description:
        - The TCP and UDP sockets its processes hold, counted once each - C(tcp_listen), C(tcp_established),
          C(tcp_other) (TCP in another state, such as C(SYN_SENT) or C(CLOSE_WAIT)), C(udp) and C(total).
        - "How: the socket inodes of the descriptors of its processes (C(/proc/PID/fd/N) reads C(socket:[INODE])),
          looked up in C(/proc/PID/net/tcp), C(tcp6), C(udp) and C(udp6) of its network namespace. Unix and
          netlink sockets are not counted."
        - CRIU before 4.2 cannot dump TCP or UDP sockets on a kernel >= 6.16 (see M(haul.live.criu_check)'s
          C(sockets_supported)), so the preflight checks refuse to move a container with a non-zero C(total) there.
      type: dict
      sample: {tcp_listen: 1, tcp_established: 2, tcp_other: 0, udp: 0, total: 3}
    non_root_processes:
      description:
        - How many of its processes run with a user or group ID other than 0. CRIU reads their rlimits with
          C(prlimit), which needs C(CAP_SYS_RESOURCE) for them; preflight refuses such a container on a host that
          lacks it (M(haul.live.criu_check)'s C(cap_sys_resource)).
      type: int
      sample: 0
    network:
      description:
        - Its network namespace's devices, as a migration recreates them (see docs/networking.md); null when it
          shares this host's network namespace.
        - C(interfaces) - its veths whose other end is on this host, each with C(name), C(mac), C(mtu),
          C(addresses) (IPv4, with prefix length), C(host_end) and C(bridge) (the host end's bridge, or null).
        - C(other) - devices a migration cannot carry (anything but loopback and such veths); preflight refuses them.
      type: dict
      sample: {interfaces: [{name: eth0, kind: veth, mac: "02:48:c6:12:00:65", mtu: 1500, addresses: [198.18.0.101/24],
                             host_end: hv-web1, bridge: br0}], other: []}
    dirty_rate_bytes_s:
      description:
        - Bytes per second its processes dirtied during O(dirty_rate_ms), summed over them; null
          when it was not measured (RV(containers[].dirty_rate_reason) says why).
      returned: when O(dirty_rate_ms) is above V(0)
      type: int
      sample: 1048576
    dirty_rate_reason:
      description: How the rate was measured, or why there is none.
      returned: when O(dirty_rate_ms) is above V(0)
      type: str
      sample: >-
        not measured: the kernel does not track dirty memory (it has no CONFIG_MEM_SOFT_DIRTY), so the
        soft-dirty bits of /proc/PID/pagemap never show what the container writes
    dirty_pages:
      description: The soft-dirty pages counted, or null when not measured.
      returned: when O(dirty_rate_ms) is above V(0)
      type: int
      sample: 256
    cpu_cores:
      description: How many CPUs its processes kept busy, on average over O(cpu_sample_ms) (V(1.0) is one CPU).
      returned: when O(cpu_sample_ms) is above V(0)
      type: float
      sample: 0.85
cpu_count:
  description: The CPUs this host lets its processes run on (the capacity of C(haul_rebalance_by=cpu)).
  returned: always
  type: int
  sample: 8
cordon:
  description:
    - This host's cordon (M(haul.live.cordon)) - its reason, since when, by whom - or null when it is not
      cordoned. A placement never puts a container on a cordoned host.
  returned: always
  type: dict
  sample: {"reason": "kernel update", "since": "2026-12-01T10:00:00Z", "by": null}
runtimes:
  description: Each runtime asked, with V(found N), V(not installed), or the error that stopped its listing.
  returned: always
  type: dict
  sample: {podman: found 1, lxc: not installed, lab: found 2}
missing:
  description: Names asked for in O(names) that were not found.
  returned: always
  type: list
  elements: str
'''

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.haul.live.plugins.module_utils import _cordon
from ansible_collections.haul.live.plugins.module_utils._common import HaulError, fail
from ansible_collections.haul.live.plugins.module_utils._discovery import (
    MAX_CPU_SAMPLE_MS, MAX_DIRTY_INTERVAL_MS, NO_DIRTY_TRACKING, measure_cpu_cores, measure_dirty_rates)
from ansible_collections.haul.live.plugins.module_utils._runtimes import registry
from ansible_collections.haul.live.plugins.module_utils._validate import check_module

NOT_IN_CHECK_MODE = 'not measured in check mode: measuring clears the soft-dirty bits of the processes'


def dirty_rates(module, found):
    """Add dirty_rate_bytes_s, dirty_rate_reason and dirty_pages to each container of ``found``."""
    p = module.params
    if p['dirty_rate_ms'] < 0 or p['dirty_rate_ms'] > MAX_DIRTY_INTERVAL_MS:
        raise HaulError('dirty_rate', 'dirty_rate_ms must be between 0 and %d, not %d'
                        % (MAX_DIRTY_INTERVAL_MS, p['dirty_rate_ms']))
    if not p['dirty_rate_ms']:
        return
    if p['dirty_tracking'] is None:
        raise HaulError('dirty_rate', 'dirty_rate_ms needs dirty_tracking: say whether this kernel tracks dirty '
                        'memory, from criu_check (haul_criu.precopy_possible)')
    if not p['dirty_tracking'] or module.check_mode:
        reason = NOT_IN_CHECK_MODE if p['dirty_tracking'] else NO_DIRTY_TRACKING
        rates = dict((i, dict(dirty_rate_bytes_s=None, dirty_rate_reason=reason, dirty_pages=None))
                     for i in range(len(found)))
    else:  # keyed by position: two runtimes may each have a container of the same name
        rates = measure_dirty_rates(dict((i, c['pids']) for i, c in enumerate(found)), p['dirty_rate_ms'], True)
    for i, c in enumerate(found):
        c.update(rates[i])


def cpu_cores(module, found):
    """Add cpu_cores to each container of ``found`` (measured together over cpu_sample_ms)."""
    ms = module.params['cpu_sample_ms']
    if ms < 0 or ms > MAX_CPU_SAMPLE_MS:
        raise HaulError('cpu', 'cpu_sample_ms must be between 0 and %d, not %d' % (MAX_CPU_SAMPLE_MS, ms))
    if not ms:
        return
    cores = measure_cpu_cores(dict((i, c['pids']) for i, c in enumerate(found)), ms)
    for i, c in enumerate(found):
        c['cpu_cores'] = cores[i]


def host_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def main():
    module = AnsibleModule(
        argument_spec=dict(
            runtime=dict(type='str', default='auto', choices=registry.CHOICES),
            parent=dict(type='str', default='haul'),
            names=dict(type='list', elements='str'),
            dirty_rate_ms=dict(type='int', default=0),
            dirty_tracking=dict(type='bool'),
            cpu_sample_ms=dict(type='int', default=0),
        ),
        supports_check_mode=True,
    )
    check_module(module, parent='cgroup', names='name')
    names = module.params['names']
    try:
        p = module.params
        if p['runtime'] not in (registry.AUTO, 'lab') and not registry.runtime(p['runtime']).available():
            raise HaulError('discover', 'runtime %s is not installed on this host' % p['runtime'])
        found, runtimes = registry.find_all(p['runtime'], names, parent=p['parent'],
                                            with_pids=bool(p['dirty_rate_ms'] or p['cpu_sample_ms']))
        dirty_rates(module, found)
        cpu_cores(module, found)
        for c in found:
            c.pop('pids', None)
    except HaulError as e:
        fail(module, e)
    have = set(c['name'] for c in found)
    module.exit_json(changed=False, containers=found, runtimes=runtimes, cordon=_cordon.read(), cpu_count=host_cpus(),
                     missing=[n for n in names or [] if n not in have])


if __name__ == '__main__':
    main()
