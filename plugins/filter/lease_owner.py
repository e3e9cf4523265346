# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: lease_owner
short_description: The controller that owns a migration lease, and whether it still runs
version_added: 0.1.0
author: haul.live developers (@haul-live)
description:
  - Without input (an empty string or null), returns the owner of a lease this controller
    takes - its host name, the C(ansible-playbook) process's pid and start time, the boot id, the
    user and the date - for the O(haul.live.migration_lease#module:owner) option.
  - With a lease record (or an owner dict) as input, returns its owner with C(alive) added -
    V(true) or V(false) when the owner is this controller machine (same host name and boot id;
    its process is looked up in C(/proc)), V(null) when it is another machine.
  - A lease whose owner is not alive was abandoned (the controller was interrupted or killed);
    the C(haul.live.migrate) role then takes it over at once rather than waiting for it to expire.
  - Runs on the controller.
options:
  _input:
    description: Nothing, or a lease record, or an owner dict.
    type: raw
    required: true
'''

EXAMPLES = r'''
- name: Take the lease as this controller
  haul.live.migration_lease:
    name: web1
    migration_id: "{{ migration_id }}"
    owner: "{{ '' | haul.live.lease_owner }}"
    role: source

- name: Is the holder's controller still running?
  ansible.builtin.debug:
    msg: "{{ (lease.holder | haul.live.lease_owner).alive }}"
'''

RETURN = r'''
_value:
  description: An owner dict (C(host), C(pid), C(start_ticks), C(boot_id), C(user), C(started)), with C(alive) for an input.
  type: dict
'''

from ansible_collections.haul.live.plugins.module_utils import _lease


def lease_owner(record=None):
    if not record:
        return _lease.current_owner()
    owner = record.get('owner', record) if isinstance(record, dict) else {}
    if not isinstance(owner, dict):
        owner = {}
    res = dict(owner)
    res['alive'] = _lease.owner_alive(owner)
    return res


class FilterModule(object):
    def filters(self):
        return {'lease_owner': lease_owner}
