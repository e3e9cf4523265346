#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: migration_key
short_description: Authorize or remove a per-migration SSH key on a destination, safely in parallel
version_added: 0.1.0
description:
  - Adds a per-migration public key line to C(authorized_keys), removes a container's key lines,
    or prunes them together with every expired haul.live line.
  - "Every change holds a lock (C(flock) on C(<path>.haul-lock)) and replaces the file atomically,
    so that parallel migrations to one destination never lose each other's keys."
  - A haul.live line ends with the comment C(haul.live NAME [ID]); see roles/migrate/tasks/key.yml
    for the restrictions it carries (C(restrict), C(from=), C(expiry-time=)).
author:
  - haul.live developers (@haul-live)
options:
  container:
    description: The container whose key lines are meant.
    type: str
    required: true
  line:
    description:
      - The whole key line to add, options and comment included (O(state=present)). Its comment
        must be C(haul.live CONTAINER [ID]).
    type: str
  state:
    description:
      - V(present) adds O(line) unless it is there.
      - V(absent) removes every line of O(container).
      - V(pruned) removes every line of O(container) and every haul.live line whose
        C(expiry-time) has passed (what an unreachable destination kept at an earlier clean-up).
    type: str
    choices: [present, absent, pruned]
    default: present
  path:
    description: The authorized_keys file.
    type: path
    default: /root/.ssh/authorized_keys
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
  - Run it as root on the destination.
  - The results name lines by their comment only.
'''

EXAMPLES = r'''
- name: Authorize a per-migration key
  haul.live.migration_key:
    container: web1
    line: 'restrict,from="198.18.0.11",expiry-time="202612011200Z" ssh-ed25519 AAAA... haul.live web1 20261201T1100'

- name: Remove what earlier runs left for web1, and expired haul.live keys
  haul.live.migration_key:
    container: web1
    state: pruned

- name: Remove web1's keys
  haul.live.migration_key:
    container: web1
    state: absent
'''

RETURN = r'''
added:
  description: The comments of the lines added.
  returned: success
  type: list
  elements: str
  sample: ["haul.live web1 20261201T1100"]
removed:
  description: The comments of the lines removed.
  returned: success
  type: list
  elements: str
  sample: ["haul.live web1 20261130T0900"]
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.haul.live.plugins.module_utils._common import HaulError, fail
from ansible_collections.haul.live.plugins.module_utils import _authorized_keys as keys
from ansible_collections.haul.live.plugins.module_utils._validate import check_module


def _comment(line):
    who = keys.owner_of(line)
    return ' '.join(['haul.live'] + [w for w in (who or ()) if w])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            container=dict(type='str', required=True),
            line=dict(type='str'),
            state=dict(type='str', default='present', choices=['present', 'absent', 'pruned']),
            path=dict(type='path', default='/root/.ssh/authorized_keys'),
        ),
        required_if=[('state', 'present', ['line'])],
        supports_check_mode=True,
    )
    p = module.params
    check_module(module, container='name')
    if p['line'] is not None and ('\n' in p['line'] or '\r' in p['line']):
        module.fail_json(msg='key: the key line must be one line', failed_step='key')
    try:
        changed, added, removed = keys.change(p['path'], p['container'], line=p['line'], state=p['state'],
                                              check_mode=module.check_mode)
    except HaulError as e:
        fail(module, e)
    module.exit_json(changed=changed, added=[_comment(x) for x in added], removed=[_comment(x) for x in removed])


if __name__ == '__main__':
    main()
