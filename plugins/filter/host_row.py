# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: host_row
short_description: A row of the haul.live report for a host that a rolling update worked on
version_added: 0.2.0
author: haul.live developers (@haul-live)
description:
  - Makes the report row that C(haul.live.rolling_update) gives each host of the fleet, beside the
    rows of the migrations it ran - the same keys as a C(migrate_result), with C(kind=host),
    C(strategy=update), the host as source and C(-) as destination.
  - The results are C(updated), C(skipped), C(failed), C(unreachable) and C(started) (the host's
    update did not finish - the report asks whether it answers).
options:
  _input:
    description: The inventory host.
    type: str
    required: true
  result:
    description: What became of it.
    type: str
    required: true
    choices: [updated, skipped, failed, unreachable, started]
  step:
    description: The step it reached (cordon, evacuate, maintenance, reboot, check, uncordon, return), or why it was skipped.
    type: str
    default: ''
  msg:
    description: What to tell the operator.
    type: str
    default: ''
'''

EXAMPLES = r'''
- name: A row for node1, updated
  ansible.builtin.set_fact:
    row: "{{ 'node1' | haul.live.host_row('updated', 'return', 'kernel updated, 3 containers home') }}"
'''

RETURN = r'''
_value:
  description: The row.
  type: dict
'''

from ansible_collections.haul.live.plugins.plugin_utils._report_row import report_row

RESULTS = ('updated', 'skipped', 'failed', 'unreachable', 'started')


def host_row(host, result, step='', msg=''):
    row = report_row('host_row', RESULTS, result, 'host %s' % host, host, '-', 'update', step, msg)
    row['kind'] = 'host'
    return row


class FilterModule(object):
    def filters(self):
        return {'host_row': host_row}
