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
  - Finds the containers on the host it runs on, and describes each one for a migration plan.
  - "A container is a child cgroup of the parent cgroup O(parent) (below the cgroup2 root)
    whose processes include the init of a pid namespace: C(NSpid) in C(/proc/PID/status) has
    more than one entry and ends in C(1). Its name is the name of that child cgroup."
  - Never changes anything.
author:
  - haul.live developers (@haul-live)
options:
  parent:
    description: The parent cgroup of the containers, relative to the cgroup2 root.
    type: str
    default: haul
  names:
    description: Only these containers. Names that are not found are listed in RV(missing).
    type: list
    elements: str
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
  - Run it as root. It reads C(/proc) and the cgroup filesystems only.
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

- name: Describe two containers, whatever their state
  haul.live.container_info:
    names: [web1, db1]
  register: two
'''

RETURN = r'''
containers:
  description: The containers found, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The container's name (its cgroup's name).
      type: str
      sample: web1
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
missing:
  description: Names asked for in O(names) that were not found.
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.haul.live.plugins.module_utils._common import HaulError, fail
from ansible_collections.haul.live.plugins.module_utils._discovery import list_containers


def main():
    module = AnsibleModule(
        argument_spec=dict(
            parent=dict(type='str', default='haul'),
            names=dict(type='list', elements='str'),
        ),
        supports_check_mode=True,
    )
    names = module.params['names']
    try:
        found = list_containers(module.params['parent'], names)
    except HaulError as e:
        fail(module, e)
    have = set(c['name'] for c in found)
    module.exit_json(changed=False, containers=found, missing=[n for n in names or [] if n not in have])


if __name__ == '__main__':
    main()
