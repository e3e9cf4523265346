# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: rebalance
short_description: Plan the moves that bring hosts below a high mark of memory or CPU
version_added: 0.2.0
author: haul.live developers (@haul-live)
description:
  - A host's load is the memory of its containers over its capacity (O(by=memory)), or the CPUs its
    containers keep busy over the CPUs it has (O(by=cpu)). The most loaded host above
    O(high) is relieved first, with the fewest moves - the smallest container that alone brings it to
    O(high) or below, else its largest container, then again.
  - A container goes to a host that was below O(low), is not cordoned, has no container of that
    name and stays at or below O(high) with it (plus O(headroom) of it); of those, the least loaded
    after the move. Ties go to the host listed first, so a plan is deterministic.
  - At most O(max_moves) moves. Hosts still above O(high) are listed in C(unresolved) with the reason.
options:
  _input:
    description:
      - The hosts, each a dict with C(host), its capacity (C(capacity_bytes), or C(capacity_cpus) with
        O(by=cpu)), C(containers) (each with C(name) and C(memory_bytes), or C(cpu_cores) with O(by=cpu))
        and optionally C(cordon).
    type: list
    elements: dict
    required: true
  high:
    description: The high mark, a share of a host's capacity (between 0 and 1).
    type: float
    required: true
  low:
    description: The low mark (between 0 and O(high)); only hosts below it take containers.
    type: float
    required: true
  max_moves:
    description: The most moves the plan may have.
    type: int
    required: true
  headroom:
    description: Spare capacity to keep on a destination, as a fraction of the container's weight.
    type: float
    default: 0.1
  by:
    description: What a load is made of.
    type: str
    choices: [memory, cpu]
    default: memory
'''

EXAMPLES = r'''
- name: Plan a rebalance
  ansible.builtin.set_fact:
    moves: "{{ (hosts | haul.live.rebalance(0.8, 0.5, 4)).moves }}"
  vars:
    hosts:
      - host: node1
        capacity_bytes: 1073741824
        containers:
          - {name: web1, memory_bytes: 536870912}
          - {name: db1, memory_bytes: 402653184}
      - {host: node2, capacity_bytes: 1073741824, containers: []}
'''

RETURN = r'''
_value:
  description: The plan.
  type: dict
  contains:
    moves:
      description: In order, each with C(container), C(source), C(destination) and the container's weight (C(memory_bytes) or C(cpu_cores)).
      type: list
      elements: dict
    loads:
      description: Each host's load C(before) and C(after) the moves (shares of its capacity).
      type: dict
    unresolved:
      description: Hosts still above O(high), each with C(host), C(load) and C(reason).
      type: list
      elements: dict
'''

from ansible.errors import AnsibleFilterError
from ansible_collections.haul.live.plugins.module_utils._rebalance import plan


def rebalance(hosts, high, low, max_moves, headroom=0.1, by='memory'):
    try:
        return plan(hosts, high, low, max_moves, headroom=float(headroom), by=by)
    except (ValueError, TypeError) as e:
        raise AnsibleFilterError('haul.live.rebalance: %s' % e)


class FilterModule(object):
    def filters(self):
        return {'rebalance': rebalance}
