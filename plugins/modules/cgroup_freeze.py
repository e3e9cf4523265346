#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: cgroup_freeze
short_description: Freeze the cgroup of a container
version_added: 0.1.0
description:
  - Freezes every process of a container's cgroup, with the cgroup v2 freezer or the cgroup v1
    C(freezer) controller.
  - "cgroup v2: writes C(1) to C(cgroup.freeze) and waits for C(frozen 1) in C(cgroup.events)."
  - "cgroup v1: writes C(FROZEN) to C(freezer.state) and waits until it reads back C(FROZEN)."
  - If the cgroup does not freeze within O(timeout), it is thawed back and the module fails, so a
    container is never left half frozen.
  - The mount points of the hierarchies are read from C(/proc/self/mountinfo), so this works on
    pure cgroup v2 hosts (C(/sys/fs/cgroup)) and on hybrid ones (C(/sys/fs/cgroup/unified) and
    C(/sys/fs/cgroup/freezer)).
author:
  - haul.live developers (@haul-live)
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
  - A frozen container keeps its memory and its open files; thaw it with M(haul.live.cgroup_thaw).
  - It refuses the root of a cgroup hierarchy (also the root of a cgroup namespace, which has a
    C(cgroup.freeze)) and any cgroup that holds the module's own process or one of its ancestors,
    such as the SSH session that runs it, since freezing those would hang the play.
seealso:
  - module: haul.live.cgroup_thaw
  - name: cgroup v2 freezer
    description: The Linux kernel documentation of the cgroup v2 freezer.
    link: https://docs.kernel.org/admin-guide/cgroup-v2.html#core-interface-files
  - name: cgroup v1 freezer
    description: The Linux kernel documentation of the v1 freezer subsystem.
    link: https://docs.kernel.org/admin-guide/cgroup-v1/freezer-subsystem.html
'''

EXAMPLES = r'''
- name: Freeze the container ct1 (cgroup haul/ct1)
  haul.live.cgroup_freeze:
    cgroup: haul/ct1

- name: Freeze the cgroup of a process with the v1 freezer, waiting at most 2 seconds
  haul.live.cgroup_freeze:
    pid: "{{ ct_pid }}"
    version: v1
    timeout: 2

- name: Freeze by absolute path
  haul.live.cgroup_freeze:
    cgroup: /sys/fs/cgroup/unified/haul/ct1
  register: frozen

- name: Show how many processes were frozen
  ansible.builtin.debug:
    msg: "{{ frozen.pid_count }} processes frozen in {{ frozen.cgroup }}"
'''

RETURN = r'''
cgroup:
  description: Filesystem path of the cgroup that was frozen.
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
  sample: frozen
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
failed_step:
  description: The step that failed (V(freeze)).
  returned: failure
  type: str
  sample: freeze
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.haul.live.plugins.module_utils._common import HaulError, fail
from ansible_collections.haul.live.plugins.module_utils._cgroup import FREEZER_RULES, freezer_argspec, from_params
from ansible_collections.haul.live.plugins.module_utils._validate import check_module


def main():
    module = AnsibleModule(
        argument_spec=freezer_argspec(),
        **FREEZER_RULES,
        supports_check_mode=True,
    )
    check_module(module, cgroup='cgroup')
    p = module.params
    try:
        cg = from_params(p['cgroup'], p['pid'], p['version'], step='freeze')
        before = cg.state()
        changed = cg.freeze(timeout=p['timeout'], check_mode=module.check_mode)
        result = cg.info()
    except HaulError as e:
        fail(module, e)
    after = 'frozen' if changed else before
    result.update(changed=changed, diff=dict(before='state: %s\n' % before, after='state: %s\n' % after))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
