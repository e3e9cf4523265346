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
  - "It removes an images directory only when its marker (C(.haul-images)) says haul.live made it
    (and, with O(migration_id), that migration): a directory with foreign files, that haul.live
    refused to dump into, is never deleted; it is listed in RV(kept) with the reason."
  - Without O(cgroup) it only removes images directories.
  - It is the last step of a migration, for the copy that must go - the frozen source after the
    destination confirmed, or a stopped partial copy on a destination after a failure.
  - It refuses to kill a container that is running (neither frozen nor stopped) unless
    O(running=true), so that a mistake cannot take down the only live copy.
author:
  - haul.live developers (@haul-live)
options:
  cgroup:
    description:
      - The container's cgroup (v2), relative to the cgroup2 root (V(haul/web1)) or absolute.
      - Without it, only O(images_dirs) are removed.
    type: str
  images_dirs:
    description:
      - Images directories (and handoff control directories) to remove, each only when its marker says
        haul.live made it.
    type: list
    elements: path
    default: []
  migration_id:
    description:
      - Remove only the images directories that this migration made (their marker's migration id).
        Without it, any directory haul.live made goes.
    type: str
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

- name: Remove the images that one migration left (only the directories it made)
  haul.live.container_remove:
    images_dirs: [/var/lib/haul/images/web1, /var/lib/haul/images/web1.handoff]
    migration_id: 20261130T170000123456
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
kept:
  description: Images directories that exist but were not removed, each with why (no haul.live marker, another migration's).
  returned: always
  type: list
  elements: dict
  sample: [{"path": "/var/lib/haul/images/web1", "why": "/var/lib/haul/images/web1 has no haul.live marker"}]
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.haul.live.plugins.module_utils import _cgroup, _lazy_pages
from ansible_collections.haul.live.plugins.module_utils._common import HaulError, fail
from ansible_collections.haul.live.plugins.module_utils._discovery import container_state
from ansible_collections.haul.live.plugins.module_utils._validate import check_module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            cgroup=dict(type='str'),
            images_dirs=dict(type='list', elements='path', default=[]),
            migration_id=dict(type='str'),
            running=dict(type='bool', default=False),
            timeout=dict(type='int', default=10),
        ),
        supports_check_mode=True,
    )
    check_module(module, cgroup='cgroup')
    p = module.params
    check = module.check_mode
    removed = []
    kept = []
    killed = False
    state = 'absent'
    try:
        cg = None
        try:
            if p['cgroup']:
                cg = _cgroup.Cgroup(p['cgroup'], step='remove')
        except HaulError as e:
            if 'does not exist' not in e.cause:
                raise
        if cg is not None:
            pids = cg.pids()
            state = container_state(cg, pids) if pids else 'empty'
            if state == 'running' and not p['running']:
                raise HaulError('remove', 'container in cgroup %s is running (not frozen nor stopped): refusing to '
                                'kill what may be its only live copy (set running=true to force)' % cg.path)
            killed = cg.kill(timeout=p['timeout'], check_mode=check)
            if cg.remove(check_mode=check):
                removed.append(cg.path)
        gone, kept = _lazy_pages.remove_unserved(p['images_dirs'], migration_id=p['migration_id'], check_mode=check)
        removed.extend(gone)
    except HaulError as e:
        fail(module, e, removed=removed, kept=kept)
    except OSError as e:
        what = getattr(e, 'filename', None) or 'an images directory'
        fail(module, HaulError('remove', 'cannot remove %s: %s' % (what, e.strerror or e)), removed=removed, kept=kept)
    module.exit_json(changed=bool(killed or removed), killed=killed, removed=removed, kept=kept, state_before=state)


if __name__ == '__main__':
    main()
