# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for plugins/module_utils/_supervisor.py: status fds, reports, state files, supervised jobs.
"""

from __future__ import annotations

import os
import time

import pytest

from ansible_collections.haul.live.plugins.module_utils import _proc, _supervisor
from ansible_collections.haul.live.plugins.module_utils._common import HaulError


# --------------------------------------------------------------------------- status fds

def test_status_fd_ready():
    r, w = os.pipe()
    os.write(w, b'\0')
    try:
        assert _supervisor.wait_status_fd(r, 1) is True
    finally:
        os.close(r)
        os.close(w)


def test_status_fd_eof_is_not_ready():
    r, w = os.pipe()
    os.close(w)
    try:
        assert _supervisor.wait_status_fd(r, 1) is False
    finally:
        os.close(r)


def test_status_fd_timeout():
    r, w = os.pipe()
    start = time.time()
    try:
        with pytest.raises(HaulError) as e:
            _supervisor.wait_status_fd(r, 0.2, 'criu lazy-pages')
    finally:
        os.close(r)
        os.close(w)
    assert e.value.step == 'ready'
    assert 'criu lazy-pages not ready after 0.2s' in e.value.msg
    assert time.time() - start < 2


def test_read_report_line_in_pieces():
    r, w = os.pipe()
    os.write(w, b'{"ready": tr')
    os.write(w, b'ue, "pid": 5}\n')
    try:
        assert _supervisor.read_report(r, 1) == {'ready': True, 'pid': 5}
    finally:
        os.close(r)
        os.close(w)


def test_read_report_eof_and_timeout_and_garbage():
    r, w = os.pipe()
    os.close(w)
    with pytest.raises(HaulError, match='exited without a report'):
        _supervisor.read_report(r, 1)
    os.close(r)
    r, w = os.pipe()
    with pytest.raises(HaulError, match='not ready after'):
        _supervisor.read_report(r, 0.1)
    os.write(w, b'nonsense\n')
    with pytest.raises(HaulError, match='bad report'):
        _supervisor.read_report(r, 1)
    os.close(r)
    os.close(w)


# --------------------------------------------------------------------------- state, pids

def test_state_paths_outside_images(tmp_path):
    img = str(tmp_path / 'web1')
    assert _supervisor.state_dir(img + '/') == img + '.postcopy'
    assert _supervisor.state_path(img, 'dump') == img + '.postcopy/dump.json'


def test_state_roundtrip(tmp_path):
    p = str(tmp_path / 'x.postcopy' / 'dump.json')
    assert _supervisor.read_state(p) is None
    _supervisor.write_state(p, {'state': 'running', 'pid': 3})
    assert _supervisor.read_state(p) == {'state': 'running', 'pid': 3}
    with open(p, 'w') as f:
        f.write('[1]')
    assert _supervisor.read_state(p) is None


# --------------------------------------------------------------------------- supervisor

def test_spawn_supervised_reports_and_records(tmp_path):
    sfile = str(tmp_path / 'job.postcopy' / 'job.json')

    def job(report):
        report({'ready': True, 'value': 42})
        return {'rc': 0, 'done': True}

    rep = _supervisor.spawn_supervised(job, sfile, 10)
    assert rep['ready'] is True and rep['value'] == 42
    assert rep['supervisor_pid'] > 0
    _proc.wait_pid_exit(rep['supervisor_pid'], 10)
    st = _supervisor.read_state(sfile)
    assert st['state'] == 'finished' and st['rc'] == 0 and st['done'] is True
    assert st['ended'] >= st['started']


def test_spawn_supervised_job_error(tmp_path):
    sfile = str(tmp_path / 'job.json')

    def job(report):
        raise HaulError('dump', 'boom')

    rep = _supervisor.spawn_supervised(job, sfile, 10)
    assert rep['ready'] is False and rep['error'] == 'dump: boom'
    _proc.wait_pid_exit(rep['supervisor_pid'], 10)
    assert _supervisor.read_state(sfile)['state'] == 'failed'
