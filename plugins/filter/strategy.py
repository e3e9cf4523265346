# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: strategy
short_description: Choose how a container's memory moves - stopcopy, precopy, postcopy or hybrid
version_added: 0.1.0
author: haul.live developers (@haul-live)
description:
  - Turns a requested strategy (V(stopcopy), V(precopy), V(postcopy), V(hybrid) or V(auto)) into the
    strategy that runs, and says why, from the kernel features that M(haul.live.criu_check) reports on
    both hosts and, for V(auto), the predicted stop-and-copy freeze and the container's dirty rate.
  - Memory dirty tracking (C(CONFIG_MEM_SOFT_DIRTY)) on the source makes pre-copy possible; userfaultfd
    on both hosts (and a large enough C(fs.pipe-max-size)) makes post-copy possible.
  - A strategy the kernels cannot do fails, naming the missing feature and the host.
  - "V(auto): stop-and-copy when its predicted freeze (memory / link rate) is within O(max_downtime_ms);
    else pre-copy when the source tracks dirty memory and the container dirties at most half the link
    rate; else post-copy when both hosts support it; else stop-and-copy."
options:
  _input:
    description: The requested strategy.
    type: str
    required: true
    choices: [stopcopy, precopy, postcopy, hybrid, auto]
  source_facts:
    description: The source's C(haul_criu) facts.
    type: dict
    required: true
  dest_facts:
    description: The destination's C(haul_criu) facts.
    type: dict
    required: true
  memory_bytes:
    description: The container's memory (what a dump holds).
    type: int
  link_bytes_s:
    description: The transfer rate between the hosts, in bytes per second.
    type: int
  dirty_rate_bytes_s:
    description: How fast the container dirties memory, in bytes per second.
    type: int
  max_downtime_ms:
    description: The longest freeze that is acceptable.
    type: int
    default: 300
  errors:
    description:
      - What a request the kernels cannot do (or bad input) gives - V(strict) fails the templating, V(return)
        returns C(strategy=null) and the one-sentence C(error), for a task that fails with a plain message.
    type: str
    choices: [strict, return]
    default: strict
'''

EXAMPLES = r'''
- name: Choose
  ansible.builtin.set_fact:
    plan: "{{ 'auto' | haul.live.strategy(src.ansible_facts.haul_criu, dst.ansible_facts.haul_criu, memory_bytes=268435456) }}"
'''

RETURN = r'''
_value:
  description:
    - C(strategy), C(reason) (one sentence) and C(predicted_freeze_ms) (or null).
    - With O(errors=return), a refusal is C(strategy=null) and C(error) (one sentence).
  type: dict
'''

from ansible.errors import AnsibleFilterError
from ansible_collections.haul.live.plugins.module_utils._policy import choose_strategy


def strategy(requested, source_facts, dest_facts, memory_bytes=None, link_bytes_s=None, dirty_rate_bytes_s=None,
             max_downtime_ms=300, errors='strict'):
    if errors not in ('strict', 'return'):
        raise AnsibleFilterError('haul.live.strategy: errors must be strict or return, not %r' % (errors,))
    try:
        return choose_strategy(requested, source_facts, dest_facts, dirty_rate_bytes_s=dirty_rate_bytes_s,
                               memory_bytes=memory_bytes, link_bytes_s=link_bytes_s, max_downtime_ms=max_downtime_ms)
    except (ValueError, TypeError) as e:
        if errors == 'return':
            return {'strategy': None, 'reason': str(e), 'error': str(e), 'predicted_freeze_ms': None}
        raise AnsibleFilterError('haul.live.strategy: %s' % e)


class FilterModule(object):
    def filters(self):
        return {'strategy': strategy}
