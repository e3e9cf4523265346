#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: criu_check
short_description: Gather facts about a host for container live migration with CRIU
version_added: 0.1.0
description:
  - Reports what a host offers for migrating containers with CRIU, as the C(haul_criu) fact. It never changes
    anything on the host (CRIU's C(cpuinfo dump) and C(cpuinfo check) run in a temporary directory that is
    removed afterwards).
  - The CRIU version (by RPC) and the kernel version.
  - Kernel features, by CRIU's RPC C(FEATURE_CHECK) and C(criu check --feature NAME) - memory dirty tracking
    (pre-copy), userfaultfd (post-copy), time namespaces, the nftables network lock, TCP repair, and others.
  - The cgroup layout (v2, v1 or hybrid) and whether a freezer is available.
  - Whether this CRIU can dump TCP and UDP sockets on this kernel (a kernel >= 6.16 needs CRIU >= 4.2).
  - Whether C(fs.pipe-max-size) is high enough for lazy pages (8388608, unless CRIU has CAP_SYS_RESOURCE).
  - CPU information, plus CRIU's C(cpuinfo.img) (base64), so that two hosts can be compared; with
    O(cpuinfo_check_image) or O(cpuinfo_check_dir) it runs CRIU's C(cpuinfo check) against another host's image.
  - The available memory, and the free space where O(images_dir) is or would be.
author:
  - haul.live developers (@haul-live)
extends_documentation_fragment:
  - haul.live.attributes
attributes:
  check_mode:
    support: full
    details:
      - This module never modifies the host; it runs the same way in check mode.
  diff_mode:
    support: N/A
    details:
      - This module never modifies the host.
  idempotent:
    support: full
  facts:
    description: Action returns an C(ansible_facts) dictionary that will update existing host facts.
    support: full
options:
  images_dir:
    description:
      - Report the free space of the filesystem that holds (or would hold) this images directory.
    type: path
  cpuinfo_check_image:
    description:
      - Base64 of a CRIU C(cpuinfo.img) from another host (the C(haul_criu.cpu.cpuinfo_image) fact of that host).
        CRIU checks whether images dumped there can be restored on this host's CPU.
    type: str
  cpuinfo_check_dir:
    description:
      - A directory holding a CRIU C(cpuinfo.img) (for example an images directory synced from the source).
        The image is copied to a temporary directory, so nothing is written into this one.
    type: path
  features:
    description: Check the kernel features (about 0.5 s). With V(false), C(haul_criu.features) is empty.
    type: bool
    default: true
  fail_on_missing:
    description:
      - Fail when criu or pycriu is missing or too old. With V(false), the facts say so in C(usable) and
        C(problems) instead.
    type: bool
    default: true
  criu_path:
    description: Path of the criu binary. Default, C(criu) in C(PATH) or in C(/usr/sbin).
    type: path
notes:
  - Requires criu >= 4.0 and python3-pycriu (python3-criu on Fedora/RHEL) on the managed host.
  - The facts are returned as C(ansible_facts.haul_criu), so they are available as C(haul_criu) for the host and
    as C(hostvars[HOST].haul_criu) for the others.
seealso:
  - module: haul.live.criu_dump
  - module: haul.live.criu_restore
requirements:
  - criu >= 4.0
  - python3-pycriu
'''

EXAMPLES = r'''
- name: Gather CRIU facts on both hosts
  haul.live.criu_check:
    images_dir: /var/lib/haul/images

- name: Refuse to migrate to an older CRIU
  ansible.builtin.assert:
    that:
      - hostvars['node2'].haul_criu.criu_version is version(hostvars['node1'].haul_criu.criu_version, '>=')

- name: Check that node2's CPU can run what node1 dumps
  haul.live.criu_check:
    cpuinfo_check_image: "{{ hostvars['node1'].haul_criu.cpu.cpuinfo_image }}"
    features: false
  delegate_to: node2
  delegate_facts: true

- name: Post-copy needs userfaultfd and a large enough pipe-max-size
  ansible.builtin.debug:
    msg: "lazy pages possible: {{ haul_criu.lazy_pages_possible }}, pre-copy: {{ haul_criu.precopy_possible }}"
'''

RETURN = r'''
ansible_facts:
  description: Facts to add to the host's facts.
  returned: always
  type: dict
  contains:
    haul_criu:
      description: What the host offers for migration with CRIU.
      returned: always
      type: dict
      contains:
        usable:
          description: Whether criu, pycriu and a cgroup freezer are present and recent enough.
          type: bool
        problems:
          description: Why the host is not usable (one line each).
          type: list
          elements: str
        criu_version:
          description: CRIU version, or null when criu is missing.
          type: str
          sample: 4.1.1
        criu_path:
          description: The criu binary.
          type: str
          sample: /usr/sbin/criu
        pycriu_version:
          description: Version of the pycriu package.
          type: str
        kernel:
          description: Kernel release (C(uname -r)).
          type: str
        arch:
          description: Machine architecture.
          type: str
        features:
          description:
            - Feature name to true (supported), false (not supported) or null (this CRIU cannot tell).
            - C(mem_track), C(lazy_pages), C(pidfd_store) come from the RPC C(FEATURE_CHECK); the others from
              C(criu check --feature), with C(-) written C(_) (C(uffd_noncoop) is CRIU's C(uffd-noncoop)) -
              C(mem_dirty_track), C(uffd), C(uffd_noncoop), C(timens), C(network_lock_nftables),
              C(tcp_half_closed), C(cgroupns), C(clone3_set_tid), C(userns), C(tun), C(ns_pid),
              C(external_net_ns), C(seccomp_filters), C(memfd_hugetlb), C(pagemap_scan).
            - C(network_lock_iptables) is whether the iptables binaries CRIU needs for that lock are installed.
          type: dict
          sample: {mem_dirty_track: false, uffd_noncoop: true, timens: true, network_lock_nftables: true}
        precopy_possible:
          description: Memory dirty tracking is available (pre-copy, criu_predump).
          type: bool
        precopy_impossible_reason:
          description: Why pre-copy is impossible, naming the kernel option.
          type: str
          returned: when pre-copy is impossible
        sockets_supported:
          description:
            - Whether this CRIU can dump (and so move) TCP and UDP sockets on this kernel.
            - Linux 6.16 restricted C(SO_PASSCRED) and C(SO_PASSSEC) to unix, netlink and bluetooth sockets, and
              CRIU before 4.2 cannot dump a TCP or UDP socket there (C(Can't get 1:16 opt - Operation not
              supported)). So it is false on a kernel >= 6.16 with CRIU < 4.2 (or a CRIU of unknown version),
              true otherwise. A container without TCP or UDP sockets moves either way.
          type: bool
          sample: true
        sockets_reason:
          description: Why CRIU cannot dump TCP or UDP sockets here, naming both versions and what to install.
          type: str
          returned: when RV(ansible_facts.haul_criu.sockets_supported) is false
          sample: >-
            CRIU 4.1.1 cannot dump TCP or UDP sockets on kernel 6.18 (kernel >= 6.16 needs CRIU >= 4.2):
            install CRIU >= 4.2
        lazy_pages_possible:
          description: userfaultfd (non-cooperative) is available and pipe-max-size is high enough (post-copy).
          type: bool
        pipe_max_size:
          description: Value of C(fs.pipe-max-size).
          type: int
        pipe_max_size_ok:
          description: Whether C(fs.pipe-max-size) >= 8388608, or CRIU has CAP_SYS_RESOURCE.
          type: bool
        cap_sys_resource:
          description: Whether this process (as CRIU will be) has CAP_SYS_RESOURCE.
          type: bool
        cgroup:
          description:
            - C(layout) (v2, v1, hybrid or none), C(v2_mount), C(v1_freezer_mount), C(v2_freezer), C(v1_freezer),
              C(freezer) (any), C(criu_freezer) (the one CRIU uses - v1 when mounted).
          type: dict
        cpu:
          description:
            - C(vendor), C(family), C(model), C(model_name), C(stepping), C(count), C(flags_count),
              C(flags_sha256) (of the sorted flags of the first CPU), C(cpuinfo_image) (base64 of CRIU's cpuinfo.img).
          type: dict
        cpu_compatible:
          description: Result of CRIU's cpuinfo check against O(cpuinfo_check_image) or O(cpuinfo_check_dir).
          type: bool
          returned: when one of them is given
        cpu_incompatible_reason:
          description: CRIU's reason when the CPUs are not compatible.
          type: str
          returned: when one of them is given
        mem_available:
          description: MemAvailable, in bytes.
          type: int
        mem_total:
          description: MemTotal, in bytes.
          type: int
        images_dir:
          description: C(path), C(exists), C(free_bytes), C(total_bytes), C(measured_at) (the existing ancestor).
          type: dict
          returned: when O(images_dir) is given
'''

import base64
import binascii
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.haul.live.plugins.module_utils._common import HaulError, fail
from ansible_collections.haul.live.plugins.module_utils._facts import gather_facts


def main():
    module = AnsibleModule(
        argument_spec=dict(
            images_dir=dict(type='path'),
            cpuinfo_check_image=dict(type='str'),
            cpuinfo_check_dir=dict(type='path'),
            features=dict(type='bool', default=True),
            fail_on_missing=dict(type='bool', default=True),
            criu_path=dict(type='path'),
        ),
        mutually_exclusive=[['cpuinfo_check_image', 'cpuinfo_check_dir']],
        supports_check_mode=True,
    )
    p = module.params
    try:
        if p['cpuinfo_check_dir'] and not os.path.isfile(os.path.join(p['cpuinfo_check_dir'], 'cpuinfo.img')):
            raise HaulError('cpuinfo', 'no cpuinfo.img in %s' % p['cpuinfo_check_dir'])
        if p['cpuinfo_check_image']:
            try:
                base64.b64decode(p['cpuinfo_check_image'], validate=True)
            except (binascii.Error, ValueError) as e:
                raise HaulError('cpuinfo', 'cpuinfo_check_image is not base64: %s' % e)
        facts = gather_facts(p)
    except HaulError as e:
        fail(module, e)
    module.exit_json(changed=False, ansible_facts={'haul_criu': facts})


if __name__ == '__main__':
    main()
