# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: as_list
short_description: Read a list variable given as a list or as an AWX survey's text (comma-separated)
version_added: 0.1.0
author: haul.live developers (@haul-live)
description:
  - Returns a list of strings. A list stays a list (each item as a string, stripped). A string is split
    at commas and white space, so a survey's text answer C(node2,node3) or C(node2 node3) becomes
    C([node2, node3]). Empty items are dropped; an empty or missing value gives an empty list.
  - Anything else (a number, a dict) is refused with an error that names the variable.
options:
  _input:
    description: The value, a list or a string.
    type: raw
    required: true
  name:
    description: The variable's name, for the error message.
    type: str
    default: the value
'''

EXAMPLES = r'''
- name: Destinations from a list or from a survey's text node2,node3
  ansible.builtin.set_fact:
    destinations: "{{ haul_destinations | haul.live.as_list('haul_destinations') }}"
'''

RETURN = r'''
_value:
  description: The items.
  type: list
  elements: str
'''

import re

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text


def as_list(value, name='the value'):
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        return [item for item in re.split(r'[,\s]+', to_text(value)) if item]
    if isinstance(value, (list, tuple)):
        out = []
        for item in value:
            if isinstance(item, (dict, list, tuple)) or item is None:
                raise AnsibleFilterError('%s must be a list of names, or names separated by commas; an item is %r'
                                         % (name, item))
            text = to_text(item).strip()
            if text:
                out.append(text)
        return out
    raise AnsibleFilterError('%s must be a list of names, or names separated by commas, not %r' % (name, value))


class FilterModule(object):
    def filters(self):
        return {'as_list': as_list}
