# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: kernel_direction
short_description: What a move from one host's kernel to another's means for CRIU
version_added: 0.1.0
author: haul.live developers (@haul-live)
description:
  - Takes the source's C(haul_criu) facts (of M(haul.live.criu_check)) and the destination's, and says whether CRIU
    supports the move between their kernels; the preflight role reports it and refuses an unsupported direction.
  - The same or a newer kernel is supported. An older kernel is supported when the destination's CRIU offers every
    feature (C(criu check)) that the source's does, except those only the dump uses (C(mem_dirty_track),
    C(mem_track), C(pagemap_scan), C(pidfd_store)).
options:
  _input:
    description: The source's C(haul_criu) facts (C(kernel), C(features)).
    type: dict
    required: true
  destination:
    description: The destination's C(haul_criu) facts.
    type: dict
    required: true
  source_name:
    description: The source host's name, for the statement.
    type: str
    default: the source
  destination_name:
    description: The destination host's name, for the statement.
    type: str
    default: the destination
'''

EXAMPLES = r'''
- name: Say what the move between the two kernels means
  ansible.builtin.debug:
    msg: "{{ (src_facts | haul.live.kernel_direction(dst_facts, 'node1', 'node2')).statement }}"
'''

RETURN = r'''
_value:
  description: The direction and whether CRIU supports it.
  type: dict
  contains:
    source:
      description: The source's kernel release.
      type: str
    destination:
      description: The destination's kernel release.
      type: str
    direction:
      description: V(same), V(newer), V(older) (the destination's kernel against the source's) or V(unknown).
      type: str
    supported:
      description: Whether CRIU supports the move in this direction.
      type: bool
    missing:
      description: The CRIU features the source has and the destination lacks (dump-only ones left out).
      type: list
      elements: str
    statement:
      description: One sentence naming both kernels, the direction and the answer.
      type: str
'''

from ansible.errors import AnsibleFilterError

from ansible_collections.haul.live.plugins.module_utils._compat import kernel_direction as _kernel_direction


def kernel_direction(source, destination, source_name='the source', destination_name='the destination'):
    if not isinstance(source, dict) or not isinstance(destination, dict):
        raise AnsibleFilterError('kernel_direction takes the haul_criu facts of both hosts (dicts)')
    return _kernel_direction(source.get('kernel'), destination.get('kernel'), source.get('features'),
                             destination.get('features'), source_name, destination_name)


class FilterModule(object):
    def filters(self):
        return {'kernel_direction': kernel_direction}
