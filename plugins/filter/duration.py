# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: duration
short_description: Read a duration in seconds, given as seconds or as 30s, 5m, 1h, 1h30m
version_added: 0.1.0
author: haul.live developers (@haul-live)
description:
  - Returns whole seconds. Accepts a number of seconds (C(300), C("300")) or a text made of amounts with
    the units C(s), C(m), C(h) and C(d), largest first (C(30s), C(5m), C(1h30m), C(2m30s)).
  - Anything else (C(5 minutes), C(-1), C(5x), an empty text) is refused with an error that names the
    variable, never read as 0.
options:
  _input:
    description: The duration.
    type: raw
    required: true
  name:
    description: The variable's name, for the error message.
    type: str
    default: the value
  minimum:
    description: The smallest duration accepted, in seconds.
    type: int
    default: 0
'''

EXAMPLES = r'''
- name: A timeout from -e haul_timeout=300 or a survey's "5m"
  ansible.builtin.set_fact:
    timeout_s: "{{ haul_timeout | default(300) | haul.live.duration('haul_timeout', minimum=1) }}"
'''

RETURN = r'''
_value:
  description: The duration in seconds.
  type: int
'''

import re

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text

UNITS = (('d', 86400), ('h', 3600), ('m', 60), ('s', 1))
DURATION_RE = re.compile(r'\A' + ''.join(r'(?:(\d+)%s)?' % u for u, _s in UNITS) + r'\Z')


def duration(value, name='the value', minimum=0):
    seconds = None
    if isinstance(value, bool):
        seconds = None
    elif isinstance(value, int):
        seconds = value
    elif isinstance(value, float) and value == int(value):
        seconds = int(value)
    else:
        text = to_text(value).strip().lower().replace(' ', '')
        if text.isdigit():
            seconds = int(text)
        else:
            m = DURATION_RE.match(text)
            if text and m and any(m.groups()):
                seconds = sum(int(n) * mult for n, (_u, mult) in zip(m.groups(), UNITS) if n)
    if seconds is None:
        raise AnsibleFilterError('%s must be a duration: seconds (300) or 30s, 5m, 1h, 1h30m; not %r' % (name, value))
    if seconds < int(minimum):
        raise AnsibleFilterError('%s must be at least %d s, not %r' % (name, int(minimum), value))
    return seconds


class FilterModule(object):
    def filters(self):
        return {'duration': duration}
