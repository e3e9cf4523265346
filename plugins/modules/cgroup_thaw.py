#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: cgroup_thaw
short_description: Thaw the cgroup of a container
version_added: 0.1.0
description:
  - Thaws a container's cgroup frozen with the cgroup v2 freezer or the cgroup v1 C(freezer)
    controller, for example by M(haul.live.cgroup_freeze), to resume it or to roll back a
    migration.
  - "cgroup v2: writes C(0) to C(cgroup.freeze) and waits for C(frozen 0) in C(cgroup.events)."
  - "cgroup v1: writes C(THAWED) to C(freezer.state) and waits until it reads back C(THAWED)."
  - Optionally sends C(SIGCONT) to processes left stopped, as CRIU's C(leave_stopped) leaves them
    after a dump.
author:
  - haul.live developers (@haul-live)
options:
  sigcont:
    description:
      - After thawing, send C(SIGCONT) to every process of the cgroup that is stopped (state C(T)).
      - Use it to resume a source container after a dump with C(leave_stopped), for a rollback.
    type: bool
    default: false
  unlock_network:
    description:
      - Give the container its network back before it runs again, as a dump that held it for a migration
        left it - bring the host ends of its veths up, remove CRIU's nftables network lock (the
        tables C(inet CRIU-*)) from its network namespace, and take its TCP connections out of the
        repair mode that such a dump leaves them in (where they neither send nor acknowledge
        anything).
      - Use it with O(sigcont) to roll back a migration of a networked container, also after a
        CRIU that was killed in the middle of a dump. Containers without a network namespace of
        their own are left alone.
    type: bool
    default: false
extends_documentation_fragment:
  - haul.live.attributes
  - haul.live.freezer
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - The diff shows the freezer state before and after.
  idempotent:
    support: full
notes:
  - Run it as root on the host where the container runs.
  - A cgroup whose parent is frozen cannot be thawed on its own; the module then fails with a
    message that says so.
seealso:
  - module: haul.live.cgroup_freeze
'''

EXAMPLES = r'''
- name: Thaw the container ct1 (cgroup haul/ct1)
  haul.live.cgroup_thaw:
    cgroup: haul/ct1

- name: Roll back after a dump with leave_stopped, resuming stopped processes
  haul.live.cgroup_thaw:
    pid: "{{ dump.root_pid }}"
    sigcont: true

- name: Roll back a networked container (its clients reach it again)
  haul.live.cgroup_thaw:
    cgroup: haul/web1
    sigcont: true
    unlock_network: true

- name: Thaw only the v1 freezer cgroup
  haul.live.cgroup_thaw:
    cgroup: /sys/fs/cgroup/freezer/haul/ct1
    timeout: 2
'''

RETURN = r'''
cgroup:
  description: Filesystem path of the cgroup.
  returned: success
  type: str
  sample: /sys/fs/cgroup/unified/haul/ct1
path:
  description: Path of the cgroup inside its hierarchy.
  returned: success
  type: str
  sample: haul/ct1
version:
  description: The freezer used, V(v1) or V(v2).
  returned: success
  type: str
  sample: v2
state:
  description:
    - The freezer state after the module ran (in check mode, the current state).
    - One of V(frozen), V(thawed), V(freezing).
  returned: success
  type: str
  sample: thawed
pid_count:
  description: Number of processes in the cgroup and its descendants.
  returned: success
  type: int
  sample: 3
twins:
  description: The same cgroup in the other hierarchy, taken into account in V(auto) mode.
  returned: success
  type: list
  elements: str
  sample: [/sys/fs/cgroup/freezer/haul/ct1]
resumed:
  description: Number of stopped processes that got C(SIGCONT) (would get, in check mode).
  returned: success
  type: int
  sample: 0
unlocked:
  description: CRIU's network-lock tables removed from the container's network namespace (would be, in check mode).
  returned: success, with O(unlock_network=true)
  type: list
  elements: str
  sample: [CRIU-1a2b3c]
tcp_repaired:
  description: TCP sockets of the container set out of repair mode (null in check mode, where it is not known).
  returned: success, with O(unlock_network=true)
  type: int
  sample: 2
links_up:
  description: Host ends of the container's veths brought up (would be, in check mode).
  returned: success, with O(unlock_network=true)
  type: list
  elements: str
  sample: [hv0a1b2c3d]
failed_step:
  description: The step that failed (V(thaw)).
  returned: failure
  type: str
  sample: thaw
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.haul.live.plugins.module_utils._common import HaulError, fail
from ansible_collections.haul.live.plugins.module_utils._cgroup import (
    FREEZER_RULES, freezer_argspec, from_params, sigcont_tree, stopped_pids)
from ansible_collections.haul.live.plugins.module_utils._network import reopen
from ansible_collections.haul.live.plugins.module_utils._validate import check_module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            freezer_argspec(),
            sigcont=dict(type='bool', default=False),
            unlock_network=dict(type='bool', default=False),
        ),
        **FREEZER_RULES,
        supports_check_mode=True,
    )
    check_module(module, cgroup='cgroup')
    p = module.params
    try:
        cg = from_params(p['cgroup'], p['pid'], p['version'], step='thaw')
        before = cg.state()
        opened = None
        if p['unlock_network']:
            # before its tasks run: one reading a socket still in repair mode would drop the connection
            pids = cg.pids()
            opened = reopen(pids[0] if pids else None, check_mode=module.check_mode, pids=pids)
        changed = cg.thaw(timeout=p['timeout'], check_mode=module.check_mode)
        resumed = 0
        if p['sigcont']:
            stopped = stopped_pids(cg.pids())
            resumed = len(stopped) if module.check_mode else sigcont_tree(stopped)
            changed = changed or bool(resumed)
        result = cg.info()
        if opened is not None:
            result.update(unlocked=opened['unlocked'], links_up=opened['links'], tcp_repaired=opened['repaired'])
            changed = changed or bool(opened['unlocked'] or opened['links'] or opened['repaired'])
    except HaulError as e:
        fail(module, e)
    after = 'thawed' if changed and before != 'thawed' else before
    result.update(changed=changed, resumed=resumed,
                  diff=dict(before='state: %s\n' % before, after='state: %s\n' % after))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
