# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: in_place_row
short_description: A row of the haul.live report for a container updated in place
version_added: 0.2.0
author: haul.live developers (@haul-live)
description:
  - Makes the report row that C(haul.live.update_in_place) gives each container of the host - the same
    keys as a C(migrate_result), with the host as source and destination and C(strategy=in-place).
  - The results are C(restored) (it runs again on its host), C(failed) (it is down, its checkpoint
    kept) and C(planned) (check mode).
  - C(frozen_ms) is how long the container was down, from its checkpoint to its restore.
options:
  _input:
    description: The container's name.
    type: str
    required: true
  host:
    description: The inventory host it runs on.
    type: str
    required: true
  result:
    description: What became of it.
    type: str
    required: true
    choices: [restored, failed, planned]
  step:
    description: The step it reached (plan, checkpoint, restore, or the step of CRIU that failed).
    type: str
    default: ''
  msg:
    description: What to tell the operator.
    type: str
    default: ''
  down_ms:
    description: How long it was down, in milliseconds.
    type: int
    default: 0
  bytes:
    description: The size of its checkpoint.
    type: int
    default: 0
'''

EXAMPLES = r'''
- name: A row for web1, restored on node1
  ansible.builtin.set_fact:
    row: "{{ 'web1' | haul.live.in_place_row('node1', 'restored', 'restore', 'down 41.2 s', 41200, 67502080) }}"
'''

RETURN = r'''
_value:
  description: The row.
  type: dict
'''

from ansible_collections.haul.live.plugins.plugin_utils._report_row import report_row

RESULTS = ('restored', 'failed', 'planned')


def in_place_row(name, host, result, step='', msg='', down_ms=0, bytes=0):  # pylint: disable=redefined-builtin
    return report_row('in_place_row', RESULTS, result, name, host, host, 'in-place', step, msg, down_ms, bytes)


class FilterModule(object):
    def filters(self):
        return {'in_place_row': in_place_row}
