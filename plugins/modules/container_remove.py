#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: container_remove
short_description: Kill the leftover copy of a migrated container, and remove its cgroup and images
version_added: 0.1.0
description:
  - Kills every process of a container's cgroup, removes the cgroup (and its v1 freezer twin),
    and removes images directories.
  - It is the last step of a migration, for the copy that must go - the frozen source after the
    destination confirmed, or a stopped partial copy on a destination after a failure.
  - It refuses to kill a container that is running (neither frozen nor stopped) unless
    O(running=true), so that a mistake cannot take down the only live copy.
author:
  - haul.live developers (@haul-live)
options:
  cgroup:
    description: The container's cgroup (v2), relative to the cgroup2 root (V(haul/web1)) or absolute.
    type: str
    required: true
  images_dirs:
    description: Images directories (and handoff control directories) to remove.
    type: list
    elements: path
    default: []
  running:
    description: Also kill a container that is running.
    type: bool
    default: false
  timeout:
    description: Seconds to wait for the processes to die.
    type: int
    default: 10
extends_documentation_fragment:
  - haul.live.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
seealso:
  - module: haul.live.handoff
  - module: haul.live.container_info
'''

EXAMPLES = r'''
- name: Remove the frozen source copy of web1 once node2 runs it
  haul.live.container_remove:
    cgroup: haul/web1
    images_dirs: [/var/lib/haul/images/web1]
'''

RETURN = r'''
killed:
  description: Whether processes were killed.
  returned: always
  type: bool
state_before:
  description: V(absent), V(running), V(frozen) or V(stopped).
  returned: always
  type: str
removed:
  description: The paths that were removed (cgroups and images directories).
  returned: always
  type: list
  elements: str
'''

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.haul.live.plugins.module_utils import _cgroup, _images
from ansible_collections.haul.live.plugins.module_utils._common import HaulError, fail
from ansible_collections.haul.live.plugins.module_utils._discovery import container_state


def main():
    module = AnsibleModule(
        argument_spec=dict(
            cgroup=dict(type='str', required=True),
            images_dirs=dict(type='list', elements='path', default=[]),
            running=dict(type='bool', default=False),
            timeout=dict(type='int', default=10),
        ),
        supports_check_mode=True,
    )
    p = module.params
    check = module.check_mode
    removed = []
    killed = False
    state = 'absent'
    try:
        try:
            cg = _cgroup.Cgroup(p['cgroup'], step='remove')
        except HaulError as e:
            if 'does not exist' not in e.cause:
                raise
            cg = None
        if cg is not None:
            pids = cg.pids()
            state = container_state(cg, pids) if pids else 'empty'
            if state == 'running' and not p['running']:
                raise HaulError('remove', 'container in cgroup %s is running (not frozen nor stopped): refusing to '
                                'kill what may be its only live copy (set running=true to force)' % cg.path)
            killed = cg.kill(timeout=p['timeout'], check_mode=check)
            if cg.remove(check_mode=check):
                removed.append(cg.path)
        for d in p['images_dirs']:
            if os.path.lexists(d):
                if not check:
                    _images.remove(d)
                removed.append(d)
    except HaulError as e:
        fail(module, e)
    module.exit_json(changed=bool(killed or removed), killed=killed, removed=removed, state_before=state)


if __name__ == '__main__':
    main()
