# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Transfer progress: rsync's progress2 updates parsed, the progress file, a streamed rsync."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import stat
import sys

import pytest

from ansible_collections.haul.live.plugins.module_utils import _progress


@pytest.mark.parametrize('chunk, expected', [
    ('     32,768   0%    0.00kB/s    0:00:00 (xfr#1, ir-chk=1006/1008)',
     {'bytes': 32768, 'percent': 0, 'rate_bytes_s': 0, 'eta_s': 0}),
    ('    536870912  50%  120.50MB/s    0:00:04 (xfr#3, to-chk=10/100)',
     {'bytes': 536870912, 'percent': 50, 'rate_bytes_s': int(120.5 * 1048576), 'eta_s': 4}),
    ('  1,073,741,824 100%    1.02GB/s    1:02:03',
     {'bytes': 1073741824, 'percent': 100, 'rate_bytes_s': int(1.02 * 1073741824), 'eta_s': 3723}),
])
def test_parse_progress2(chunk, expected):
    assert _progress.parse_progress2(chunk) == expected


@pytest.mark.parametrize('chunk', ['', '>f+++++++++ etc/passwd', 'Number of files: 3', 'sent 1,234 bytes'])
def test_other_lines_are_not_progress(chunk):
    assert _progress.parse_progress2(chunk) is None


def test_clean_output_drops_progress_and_keeps_items_and_stats():
    out = ('\r         0   0%    0.00kB/s    0:00:00\r>f+++++++++ a\n'
           '      1024 100%    1.00MB/s    0:00:00 (xfr#1, to-chk=0/2)\n'
           'Total bytes sent: 1234\n')
    assert _progress.clean_output(out).split('\n') == ['>f+++++++++ a', 'Total bytes sent: 1234', '']


def test_progress_file_is_private_throttled_and_removed(tmp_path):
    now = [100.0]
    path = str(tmp_path / 'p.json')
    pf = _progress.ProgressFile(path, label='pre-sync', clock=lambda: now[0], every=1.0)
    assert pf.write({'bytes': 1, 'percent': 1, 'rate_bytes_s': 1, 'eta_s': 9})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    now[0] += 0.5
    assert not pf.write({'bytes': 2, 'percent': 2, 'rate_bytes_s': 1, 'eta_s': 8})
    now[0] += 1.0
    assert pf.write({'bytes': 3, 'percent': 3, 'rate_bytes_s': 1, 'eta_s': 7})
    data = json.load(open(path))
    assert data['bytes'] == 3 and data['label'] == 'pre-sync' and data['elapsed_s'] == 1.5
    pf.remove()
    assert not os.path.exists(path)
    pf.remove()  # twice: nothing to do


def test_run_streaming_reports_updates_as_they_come():
    script = ('import sys, time\n'
              'for i in range(3):\n'
              '    sys.stdout.write("%10d  %d%%    1.00MB/s    0:00:0%d\\r" % (i * 1024, i * 50, 2 - i)); sys.stdout.flush()\n'
              '    time.sleep(0.05)\n'
              'sys.stdout.write("\\n>f+++++++++ a\\nTotal bytes sent: 2048\\n"); sys.stderr.write("warn\\n")\n')
    seen = []
    rc, out, err = _progress.run_streaming([sys.executable, '-c', script], seen.append)
    assert rc == 0
    assert [s['percent'] for s in seen] == [0, 50, 100]
    assert out.split('\n') == ['>f+++++++++ a', 'Total bytes sent: 2048', '']
    assert err == 'warn\n'


def test_run_streaming_returns_the_exit_code():
    rc, _out, err = _progress.run_streaming([sys.executable, '-c', 'import sys; sys.stderr.write("no"); sys.exit(23)'],
                                            lambda p: None)
    assert (rc, err) == (23, 'no')
