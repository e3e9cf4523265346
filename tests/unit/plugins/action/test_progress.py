# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The line haul.live.progress prints for a progress reading."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.haul.live.plugins.action.progress import SEPARATOR, progress_line, read_probe

MIB = 1024 * 1024


def test_progress_line_with_a_share():
    line = progress_line('root filesystem pre-sync of web1', 'node1',
                         {'bytes': 512 * MIB, 'percent': 50, 'rate_bytes_s': 120 * MIB, 'eta_s': 65, 'elapsed_s': 4.2})
    assert line == ('root filesystem pre-sync of web1 on node1: 512.0 MiB of 1.0 GiB (50%), 120.0 MiB/s, '
                    'ETA 0:01:05, 4 s so far')


def test_progress_line_without_a_share_yet():
    line = progress_line('pre-sync', 'node1', {'bytes': 0, 'percent': 0})
    assert line == 'pre-sync on node1: 0.0 MiB, 0.0 MiB/s, ETA 0:00:00, 0 s so far'


def test_progress_line_of_a_handoff_phase():
    line = progress_line('critical section of web1 to node2', 'node1',
                         {'phase': 'dumped', 'pid': 4242, 'frozen_s': 1.25, 'elapsed_s': 3.0})
    assert line == 'critical section of web1 to node2 on node1: frozen, sending the images, 3 s so far'
    line = progress_line('critical section of web1 to node2', 'node1', {'phase': 'connecting', 'elapsed_s': 0.2})
    assert line == 'critical section of web1 to node2 on node1: connecting to the destination (nothing frozen), 0 s so far'
    # a phase this release does not know is shown as it is
    assert progress_line('x', 'n', {'phase': 'later'}) == 'x on n: later, 0 s so far'


def test_progress_line_of_post_copy_pages():
    line = progress_line('critical section of web1 to node2', 'node1',
                         {'phase': 'pages', 'bytes': 64 * MIB, 'percent': 25, 'rate_bytes_s': 32 * MIB,
                          'eta_s': 6, 'elapsed_s': 5})
    assert line == ('critical section of web1 to node2 on node1: running on the destination, its memory moving: '
                    '64.0 MiB of 256.0 MiB (25%), 32.0 MiB/s, ETA 0:00:06, 5 s so far')


def _probe(job, progress=None):
    return '%s\n%s\n%s' % (job, SEPARATOR, json.dumps(progress) if progress is not None else '')


def test_probe_of_a_running_job_with_its_progress():
    state, progress = read_probe(_probe('{"started": 1, "finished": 0, "ansible_job_id": "j1"}',
                                        {'phase': 'frozen', 'pid': 7}))
    assert state == 'running' and progress == {'phase': 'frozen', 'pid': 7}


def test_probe_of_a_finished_job():
    # the module's own result replaced the job file (it has no "started")
    assert read_probe(_probe('{"changed": true, "frozen_ms": 420}'))[0] == 'finished'
    assert read_probe(_probe('{"started": 1, "finished": 1}'))[0] == 'finished'


def test_probe_of_a_job_file_being_written_or_missing():
    assert read_probe(_probe('{"started": 1, "fin')) == ('running', None)
    assert read_probe(_probe('')) == ('missing', None)
    assert read_probe('') == ('missing', None)
    # a progress file being replaced reads as no reading
    assert read_probe('{"started": 1}\n%s\n{"phase": "fro' % SEPARATOR) == ('running', None)
