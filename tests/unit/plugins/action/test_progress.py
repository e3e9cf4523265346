# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The line haul.live.progress prints for a progress reading."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.haul.live.plugins.action.progress import progress_line

MIB = 1024 * 1024


def test_progress_line_with_a_share():
    line = progress_line('root filesystem pre-sync of web1', 'node1',
                         {'bytes': 512 * MIB, 'percent': 50, 'rate_bytes_s': 120 * MIB, 'eta_s': 65, 'elapsed_s': 4.2})
    assert line == ('root filesystem pre-sync of web1 on node1: 512.0 MiB of 1.0 GiB (50%), 120.0 MiB/s, '
                    'ETA 0:01:05, 4 s so far')


def test_progress_line_without_a_share_yet():
    line = progress_line('pre-sync', 'node1', {'bytes': 0, 'percent': 0})
    assert line == 'pre-sync on node1: 0.0 MiB, 0.0 MiB/s, ETA 0:00:00, 0 s so far'
