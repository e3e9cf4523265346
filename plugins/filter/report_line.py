# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: report_line
short_description: Format one migration result as a line of the haul.live report table
version_added: 0.1.0
author: haul.live developers (@haul-live)
description:
  - Formats a C(migrate_result) (see the C(haul.live.migrate) role) as one line - name,
    source -> destination, strategy, frozen ms, bytes, result, and for a failure the step and
    the message. A post-copy container whose memory could not all arrive (result C(lost)) shows
    as C(LOST (post-copy)) with what is known - bytes moved, what became of the destination copy,
    the telling line of the CRIU log.
options:
  _input:
    description: A migration result.
    type: dict
    required: true
'''

EXAMPLES = r'''
- name: Print a row
  ansible.builtin.debug:
    msg: "{{ migrate_result | haul.live.report_line }}"
'''

RETURN = r'''
_value:
  description: The line.
  type: str
'''


def _human(n):
    n = float(n or 0)
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if n < 1024 or unit == 'GiB':
            return ('%d %s' % (n, unit)) if unit == 'B' else ('%.1f %s' % (n, unit))
        n /= 1024.0
    return '%d' % n


def report_line(row):
    row = row or {}
    result = row.get('result', '?')
    if result == 'failed':
        result = 'FAILED at %s: %s' % (row.get('step') or '?', row.get('msg') or '')
    elif result == 'lost':
        # post-copy's price: it resumed on the destination, its memory never all came
        lost = row.get('lost') or {}
        progress = row.get('progress') or {}
        known = []
        if progress.get('moved_bytes') is not None:
            known.append('%s of %s moved' % (_human(progress.get('moved_bytes')),
                                             _human(progress['total_bytes']) if progress.get('total_bytes') else '?'))
        if lost.get('destination_copy'):
            known.append('destination copy %s' % lost['destination_copy'])
        if lost.get('log_line'):
            known.append('CRIU: %s' % lost['log_line'])
        result = 'LOST (post-copy) at %s: %s%s' % (row.get('step') or '?', row.get('msg') or '',
                                                   (' [%s]' % '; '.join(known)) if known else '')
    return '%-20s %-26s %-9s %9s %12s  %s' % (
        row.get('name', '?'), '%s -> %s' % (row.get('source', '?'), row.get('destination', '?')),
        row.get('strategy', '?'), row.get('frozen_ms', 0), _human(row.get('bytes', 0)), result)


class FilterModule(object):
    def filters(self):
        return {'report_line': report_line}
