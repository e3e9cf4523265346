# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: placement
short_description: Spread containers over destination hosts by free memory
version_added: 0.1.0
author: haul.live developers (@haul-live)
description:
  - Places the largest containers first, each on the destination with the most memory left
    after what was already placed there, keeping O(headroom) spare.
  - A destination also needs free disk for the images, and never gets a container whose name
    already runs there. Ties go to the destination listed first, so a plan is deterministic.
  - Returns C(placed) (each container plus C(destination)) and C(unplaced) (each container
    plus C(reason)).
options:
  _input:
    description: Containers, each a dict with C(name) and C(memory_bytes).
    type: list
    elements: dict
    required: true
  destinations:
    description:
      - Destinations, each a dict with C(host), C(mem_available_bytes), C(disk_free_bytes) and
        optionally C(running), the names of containers already running there.
    type: list
    elements: dict
    required: true
  headroom:
    description: Spare memory to keep on a destination, as a fraction of the container's memory.
    type: float
    default: 0.1
  need_disk:
    description: Whether a destination needs free disk for the container's images.
    type: bool
    default: true
'''

EXAMPLES = r'''
- name: Plan an evacuation
  ansible.builtin.set_fact:
    plan: "{{ containers | haul.live.placement(destinations) }}"
  vars:
    containers:
      - {name: web1, memory_bytes: 268435456}
      - {name: db1, memory_bytes: 1073741824}
    destinations:
      - {host: node2, mem_available_bytes: 8589934592, disk_free_bytes: 42949672960}
      - {host: node3, mem_available_bytes: 4294967296, disk_free_bytes: 42949672960}
'''

RETURN = r'''
_value:
  description: The plan.
  type: dict
  contains:
    placed:
      description: Containers with their C(destination), in placement order.
      type: list
      elements: dict
    unplaced:
      description: Containers that fit nowhere, with the C(reason).
      type: list
      elements: dict
'''

from ansible.errors import AnsibleFilterError
from ansible_collections.haul.live.plugins.module_utils._placement import plan


def placement(containers, destinations, headroom=0.1, need_disk=True):
    try:
        return plan(containers, destinations, headroom=float(headroom), need_disk=bool(need_disk))
    except (ValueError, TypeError) as e:
        raise AnsibleFilterError('haul.live.placement: %s' % e)


class FilterModule(object):
    def filters(self):
        return {'placement': placement}
