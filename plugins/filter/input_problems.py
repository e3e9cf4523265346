# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: input_problems
short_description: Check container names, users, ids, cgroup paths, hosts, ssh options and numbers against haul.live's rules
version_added: 0.1.0
author: haul.live developers (@haul-live)
description:
  - Returns one sentence per value that haul.live refuses, naming the variable, the kind, the value (control
    characters escaped) and what is wrong; an empty list when every value is valid.
  - The patterns are the modules' own (module_utils C(_validate)), so a playbook refuses exactly what the
    modules would refuse, before anything is touched.
  - "Kinds: V(name) (container name: 1 to 63 of C(A-Z a-z 0-9 _ . -), starting with a letter or digit),
    V(user) (login name), V(id) (migration id), V(cgroup) (relative path, or below C(/sys/fs/cgroup/)),
    V(host) (host name or IP address), V(ssh_option) (C(Key=Value), no option that runs a command or
    weakens the host key check), V(count) (a whole number >= 0), V(port) (0 to 65535), V(amount) (a number
    >= 0), V(interval) (seconds above 0), V(sample_ms) (a whole number of milliseconds from 1 to 60000); numbers may be given as text, as a survey gives them."
options:
  _input:
    description:
      - "A dict C({label: [kind, value]}); the label (a variable name) starts each sentence. A list value is
        checked item by item."
    type: dict
    required: true
'''

EXAMPLES = r'''
- name: Refuse bad input before anything is touched
  vars:
    problems: "{{ {'haul_container': ['name', haul_container]} | haul.live.input_problems }}"
  ansible.builtin.fail:
    msg: "{{ problems | join(' | ') }}"
  when: problems | length > 0
'''

RETURN = r'''
_value:
  description: One sentence per bad value, in the order of the labels; empty when all are valid.
  type: list
  elements: str
'''

from ansible.errors import AnsibleFilterError
from ansible_collections.haul.live.plugins.module_utils._validate import CHECKS, problems


def input_problems(checks):
    if not isinstance(checks, dict):
        raise AnsibleFilterError('haul.live.input_problems: expects a dict {label: [kind, value]}, not %s'
                                 % type(checks).__name__)
    pairs = {}
    for label in sorted(checks):
        spec = checks[label]
        if not isinstance(spec, (list, tuple)) or len(spec) != 2 or spec[0] not in CHECKS:
            raise AnsibleFilterError('haul.live.input_problems: %s must be [kind, value], kind one of %s'
                                     % (label, ', '.join(sorted(CHECKS))))
        pairs[label] = (spec[0], spec[1])
    return problems(pairs)


class FilterModule(object):
    def filters(self):
        return {'input_problems': input_problems}
