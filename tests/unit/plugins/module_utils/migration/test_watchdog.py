# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The freeze's watchdog, for real: a forked "handoff" starts it, then dies, hangs or ends."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import signal
import time

from ansible_collections.haul.live.plugins.module_utils import _lease
from ansible_collections.haul.live.plugins.module_utils._migration import phases as _phases
from ansible_collections.haul.live.plugins.module_utils._migration import watchdog as _watchdog


def _wait_for(path, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path):
            time.sleep(0.05)
            with open(path) as f:
                return json.load(f)
        time.sleep(0.02)
    return None


def _handoff(tmp_path, phase, end, ttl=60):
    """Fork a process that takes the lease, starts the watchdog, records ``phase`` and then
    ``end``s: 'die' (SIGKILL itself), 'stop' (the normal end) or 'hang' (sleeps). Returns
    (its pid, the file the watchdog's rollback writes)."""
    leases = str(tmp_path / 'leases')
    out = str(tmp_path / 'rolled-back.json')
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        code = 0
        try:
            _lease.acquire('ct', 'm1', {'pid': os.getpid()}, 'source', ttl, lease_dir=leases)

            class _Executor(object):
                """Stands for the rollback executor (_migration.rollback.Rollback)."""

                @staticmethod
                def after_handoff_died(plan, record):
                    with open(out + '.tmp', 'w') as f:
                        json.dump({'plan': plan, 'phase': record['phase']}, f)
                    os.rename(out + '.tmp', out)
                    return 'running'

            wd = _watchdog.start('ct', 'm1', 'stopcopy', _Executor(), lease_dir=leases)
            _lease.update('ct', 'm1', phase=phase, lease_dir=leases)
            if end == 'die':
                os.kill(os.getpid(), signal.SIGKILL)
            elif end == 'stop':
                wd.stop()
            elif end == 'hang':
                _lease.update('ct', 'm1', ttl_s=0.5, lease_dir=leases)
                time.sleep(60)
        except BaseException:  # pylint: disable=broad-except
            code = 1
        os._exit(code)
    return child, out, leases


def test_a_dead_handoff_before_commit_is_rolled_back(tmp_path):
    pid, out, leases = _handoff(tmp_path, _phases.DUMPED, 'die')
    os.waitpid(pid, 0)
    done = _wait_for(out)
    assert done == {'plan': [_phases.REMOVE_DESTINATION_COPY, _phases.THAW_SOURCE], 'phase': _phases.DUMPED}
    time.sleep(0.2)
    rec = _lease.read('ct', leases)
    assert rec['watchdog']['source_state'] == 'running'
    assert 'died' in rec['watchdog']['why']


def test_after_committed_it_never_rolls_back(tmp_path):
    pid, out, leases = _handoff(tmp_path, _phases.COMMITTED, 'die')
    os.waitpid(pid, 0)
    assert _wait_for(out, timeout=2) is None
    # it may have noted that it found COMMITTED (if the handoff died before its next look), never more
    note = _lease.read('ct', leases).get('watchdog')
    assert note is None or note['source_state'].startswith('nothing: COMMITTED')


def test_a_normal_end_stops_it(tmp_path):
    pid, out, leases = _handoff(tmp_path, _phases.SENT, 'stop')
    assert os.waitpid(pid, 0)[1] == 0
    assert _wait_for(out, timeout=2) is None
    assert 'watchdog' not in _lease.read('ct', leases)


def test_an_expired_lease_kills_a_hung_handoff_first(tmp_path):
    pid, out, leases = _handoff(tmp_path, _phases.FROZEN, 'hang')
    done = _wait_for(out)
    assert done and done['phase'] == _phases.FROZEN
    # the hung handoff was killed before the rollback
    assert os.waitpid(pid, 0)[1] & 0x7f == signal.SIGKILL
    assert 'expired' in _lease.read('ct', leases)['watchdog']['why']


def test_descendants_and_criu_processes(tmp_path):
    assert _watchdog.descendants(os.getpid()) == [] or all(len(p) == 2 for p in _watchdog.descendants(os.getpid()))
    assert _watchdog.criu_processes(str(tmp_path)) == []
