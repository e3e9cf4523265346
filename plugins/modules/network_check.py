#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: network_check
short_description: Check that a destination host can take a container's network
version_added: 0.2.0
description:
  - Runs on a migration's destination, before anything is frozen, with the container's network as
    M(haul.live.container_info) describes it on the source (its C(network)).
  - Checks that every bridge the container's veths need exists here, that no interface here already
    has the name of a veth's host end, and that none of the container's addresses already answers on
    the bridge's segment from another MAC than the container's (an ARP probe, RFC 5227, from this
    host's bridge; the source copy itself answers with the container's own MAC and is no clash).
  - Changes nothing. See docs/networking.md.
author:
  - haul.live developers (@haul-live)
options:
  network:
    description:
      - The container's network - C(interfaces), each with C(name), C(mac), C(addresses), C(host_end)
        and C(bridge).
      - V(null) or no interfaces (a container with only loopback, or in the host's namespace) passes.
    type: dict
  probe:
    description: Send ARP probes for the container's addresses on the bridges' segments.
    type: bool
    default: true
  probe_ms:
    description: How long to wait for answers to the ARP probes, in milliseconds.
    type: int
    default: 300
extends_documentation_fragment:
  - haul.live.attributes
attributes:
  check_mode:
    support: full
    details:
      - It only reads and probes, in check mode too.
  diff_mode:
    support: none
  idempotent:
    support: full
notes:
  - Run it as root on the destination host.
seealso:
  - module: haul.live.container_info
  - module: haul.live.criu_restore
'''

EXAMPLES = r'''
- name: Find the container on the source
  haul.live.container_info:
    names: [web1]
  delegate_to: node1
  register: found

- name: Check that node2 can take its network
  haul.live.network_check:
    network: "{{ found.containers[0].network }}"
  delegate_to: node2
  register: net

- name: Refuse before anything is frozen
  ansible.builtin.assert:
    that: net.ok
    fail_msg: "{{ net.problems | join('; ') }}"
'''

RETURN = r'''
ok:
  description: Whether this host can take the container's network.
  returned: always
  type: bool
  sample: true
problems:
  description: One sentence for each problem found (a missing bridge, a host end's name taken, an address clash).
  returned: always
  type: list
  elements: str
  sample: ["this host has no bridge br0, which the container's eth0 (198.18.0.101/24) needs: ..."]
conflicts:
  description: Addresses of the container that another MAC answers for on the segment, with those MACs.
  returned: always
  type: list
  elements: dict
  sample: [{address: 198.18.0.101, macs: ["02:00:00:00:00:01"]}]
bridges:
  description: The bridges the container needs.
  returned: always
  type: list
  elements: str
  sample: [br0]
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.haul.live.plugins.module_utils._common import HaulError, fail
from ansible_collections.haul.live.plugins.module_utils._network import bridges, destination_problems


def main():
    module = AnsibleModule(
        argument_spec=dict(
            network=dict(type='dict'),
            probe=dict(type='bool', default=True),
            probe_ms=dict(type='int', default=300),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p['probe_ms'] < 0 or p['probe_ms'] > 10000:
        module.fail_json(msg='options: probe_ms must be between 0 and 10000, not %d' % p['probe_ms'],
                         failed_step='options')
    try:
        problems, details = destination_problems(p['network'], probe=p['probe'], timeout=p['probe_ms'] / 1000.0)
    except (HaulError, IOError, OSError) as e:
        fail(module, e if isinstance(e, HaulError) else HaulError('network', 'cannot probe the segment: %s' % e))
    module.exit_json(changed=False, ok=not problems, problems=problems, conflicts=details['conflicts'],
                     bridges=bridges(p['network']))


if __name__ == '__main__':
    main()
