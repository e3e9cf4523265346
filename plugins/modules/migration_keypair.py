#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: migration_keypair
short_description: The source's per-migration SSH key pair and the destination's pinned host keys, in one step
version_added: 0.1.0
description:
  - On the source of a migration of container NAME, writes C(/root/.ssh/haul-live-NAME.known_hosts)
    with the destination's host keys (and a jump host's) that every ssh and rsync of the migration
    checks, and makes the per-migration key pair C(/root/.ssh/haul-live-NAME) with the comment
    O(comment). A key pair with another comment (an earlier run's) is replaced.
  - With O(state=absent), removes the pinned known_hosts and the key pair.
  - The destination's half, the key's line in C(authorized_keys), is M(haul.live.migration_key).
    roles/migrate/tasks/key.yml uses both (docs/reliability.md, "SSH and input").
author:
  - haul.live developers (@haul-live)
options:
  container:
    description: The container that migrates.
    type: str
    required: true
  comment:
    description:
      - The key's comment, C(haul.live NAME ID) (O(state=present) with O(generate)).
    type: str
  known_hosts:
    description:
      - The known_hosts lines to pin (C(HOST TYPE BASE64), or C([HOST]:PORT TYPE BASE64)), O(state=present).
    type: list
    elements: str
    default: []
  generate:
    description:
      - Make the key pair (O(state=present)), or remove it (O(state=absent)). V(false) where the
        operator gives the migration's key, so that only the known_hosts is written or removed.
    type: bool
    default: true
  state:
    description: V(present) writes the known_hosts and makes the key, V(absent) removes them.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - haul.live.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
notes:
  - Run it as root on the source. The private key never leaves the host, and is never returned.
'''

EXAMPLES = r'''
- name: Pin node2's host key and make web1's per-migration key on node1
  haul.live.migration_keypair:
    container: web1
    comment: haul.live web1 20261201T110000000000-0a1b2c
    known_hosts:
      - 198.18.0.12 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI...
  delegate_to: node1
  register: web1_key

- name: Remove web1's key pair and pinned known_hosts
  haul.live.migration_keypair:
    container: web1
    state: absent
  delegate_to: node1
'''

RETURN = r'''
public_key:
  description: The public key, C(TYPE BASE64) (null in check mode before the key exists, and without O(generate)).
  returned: state is present
  type: str
  sample: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI...
key_path:
  description: The private key's path.
  returned: always
  type: str
  sample: /root/.ssh/haul-live-web1
known_hosts_path:
  description: The pinned known_hosts' path.
  returned: always
  type: str
  sample: /root/.ssh/haul-live-web1.known_hosts
removed:
  description: The files removed (O(state=absent)).
  returned: state is absent
  type: list
  elements: str
  sample: [/root/.ssh/haul-live-web1, /root/.ssh/haul-live-web1.pub]
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.haul.live.plugins.module_utils._common import HaulError, fail
from ansible_collections.haul.live.plugins.module_utils import _keypair
from ansible_collections.haul.live.plugins.module_utils._validate import check_module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            container=dict(type='str', required=True),
            comment=dict(type='str'),
            known_hosts=dict(type='list', elements='str', default=[]),
            generate=dict(type='bool', default=True),
            state=dict(type='str', default='present', choices=['present', 'absent']),
        ),
        supports_check_mode=True,
    )
    p = module.params
    check_module(module, container='name')
    key, dummy, pinned = _keypair.paths(p['container'])
    if any('\n' in line or '\r' in line for line in p['known_hosts']):
        module.fail_json(msg='key: a known_hosts line must be one line', failed_step='key')
    try:
        if p['state'] == 'absent':
            removed = _keypair.remove(p['container'], key_files=p['generate'], check_mode=module.check_mode)
            module.exit_json(changed=bool(removed), removed=removed, key_path=key, known_hosts_path=pinned)
        changed, public = _keypair.ensure(p['container'], p['comment'], p['known_hosts'], generate=p['generate'],
                                          check_mode=module.check_mode)
    except HaulError as e:
        fail(module, e)
    module.exit_json(changed=changed, public_key=public, key_path=key, known_hosts_path=pinned)


if __name__ == '__main__':
    main()
