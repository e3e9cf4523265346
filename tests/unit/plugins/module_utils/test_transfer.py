# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for plugins/module_utils/_transfer.py: the transfer budget, the progress read from
the lazy-pages log, and the waits for the end of a transfer (with a fake daemon).
"""

from __future__ import annotations

import os
import time

import pytest

from ansible_collections.haul.live.plugins.module_utils import _lazy_pages, _proc, _supervisor, _transfer
from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.filter.report_line import report_line


def test_wait_transfer_nothing_started(tmp_path):
    with pytest.raises(HaulError, match='no dump job'):
        _transfer.wait_transfer(str(tmp_path / 'none'), 'dump', 1)


def test_wait_transfer_killed_job(tmp_path):
    img = str(tmp_path / 'img')
    _supervisor.write_state(_supervisor.state_path(img, 'dump'), {'state': 'running', 'supervisor_pid': 999999999})
    with pytest.raises(HaulError, match='without a final state'):
        _transfer.wait_transfer(img, 'dump', 1)


def test_transferred_pages_sums_the_last_count_of_each_task(tmp_path):
    log = tmp_path / 'lazy-pages.log'
    log.write_text('(00.1) uffd: 1-11: UFFD transferred pages: (10/8199)\n'
                   '(00.2) something else\n'
                   '(00.9) uffd: 1-11: UFFD transferred pages: (8199/8199)\n'
                   '(01.0) uffd: 2-12: UFFD transferred pages: (5/5)\n')
    assert _transfer.transferred_pages(str(log)) == 8204
    assert _transfer.transferred_pages(str(tmp_path / 'missing.log')) == 0


MIB = 1024 * 1024


# --------------------------------------------------------------------------- the budget arithmetic

def test_budget_before_any_progress_is_the_floor():
    b = _transfer.TransferBudget(30, now=100.0)
    assert b.rate() is None and b.eta_s() is None and b.budget_s() == 30
    assert not b.expired(now=130.0)
    assert b.expired(now=130.1)


def test_budget_follows_the_measured_rate():
    b = _transfer.TransferBudget(10, now=0.0)
    b.observe(0, total=100 * MIB, now=0.0)
    assert b.observe(10 * MIB, now=10.0)  # 1 MiB/s, 90 MiB left: 90 s at that rate
    assert b.rate() == pytest.approx(MIB)
    assert b.eta_s() == pytest.approx(90.0)
    assert b.budget_s() == pytest.approx(180.0)  # twice that, above the floor
    assert not b.expired(now=10.0 + 179.0)
    assert b.expired(now=10.0 + 181.0)


def test_slow_but_moving_is_never_expired():
    # 100 MiB at 64 KiB/s: about 1600 s, far beyond an old fixed budget of 2 x 20 s
    b = _transfer.TransferBudget(20, now=0.0)
    b.observe(0, total=100 * MIB, now=0.0)
    t, moved = 0.0, 0
    while moved < 100 * MIB:
        t += 1.0
        moved += 64 * 1024
        b.observe(moved, now=t)
        assert not b.expired(now=t + 0.5)
    assert t > 40 and b.remaining() == 0


def test_a_stall_expires_after_the_floor_when_little_is_left():
    b = _transfer.TransferBudget(5, now=0.0)
    b.observe(0, total=10 * MIB, now=0.0)
    b.observe(9 * MIB, now=1.0)  # fast: 1 MiB left needs 1/9 s; the floor (5 s) rules
    assert b.budget_s() == 5
    assert not b.expired(now=5.9)
    assert b.expired(now=6.1)
    assert not b.observe(9 * MIB, now=6.2)  # no new bytes: no new budget
    assert b.expired(now=6.2)


def test_rate_is_measured_over_the_window():
    b = _transfer.TransferBudget(1, window=10, now=0.0)
    b.observe(100 * MIB, total=1000 * MIB, now=1.0)  # a fast start...
    for t in range(2, 40):
        b.observe(100 * MIB + (t - 1) * MIB, now=float(t))  # ...then 1 MiB/s
    assert b.rate() == pytest.approx(MIB, rel=0.01)


def test_total_unknown_uses_the_floor_and_summary_says_what_is_known():
    b = _transfer.TransferBudget(7, now=0.0)
    b.observe(4096, now=1.0)
    assert b.remaining() is None and b.budget_s() == 7
    s = b.summary(now=3.0)
    assert s['moved_bytes'] == 4096 and s['total_bytes'] is None and s['silent_s'] == 2.0
    assert s['budget_s'] == 7.0 and s['eta_s'] is None


# --------------------------------------------------------------------------- progress from the daemon's log

LOG = '''(00.001) uffd: 1234-5: Found 100 pages to be handled by UFFD
(00.002) uffd: 1235-6: Found 28 pages to be handled by UFFD
(00.003) uffd: 1234-5: #PF at 0x7f0000001000
(00.004) uffd: 1234-5: uffd_copy: 0x7f0000001000/4096
(00.005) uffd: 1234-5: uffd_copy: 0x7f0000002000/65536
(00.006) uffd: 1235-6: zero page at 0x7f0000009000
'''


def test_daemon_progress_reads_the_log_as_it_grows(tmp_path):
    log = tmp_path / 'lazy-pages.log'
    p = _transfer.DaemonProgress(str(log), page_size=4096)
    assert p.read() == (0, None)  # no log yet
    log.write_text(LOG[:130])  # a partial line is kept for later
    moved, total = p.read()
    assert total == 128 * 4096 and moved == 0
    with open(str(log), 'a') as f:
        f.write(LOG[130:])
    assert p.read() == (4096 + 65536 + 4096, 128 * 4096)
    with open(str(log), 'a') as f:
        f.write('(00.007) uffd: 1234-5: uffd_copy: 0x7f0000020000/8192\n')
    assert p.read()[0] == 4096 + 65536 + 4096 + 8192


def test_socket_bytes_from_ss():
    out = ('ESTAB 0 0 198.18.0.11:27123 198.18.0.12:40000\n\t cubic rto:204 bytes_sent:999 bytes_acked:8193 '
           'bytes_received:120 segs_out:9\n')
    assert _transfer.socket_bytes(27123, run=lambda argv: out) == 8193
    assert _transfer.socket_bytes(27123, run=lambda argv: '') is None


# --------------------------------------------------------------------------- wait_transfer with a daemon

FAKE_CRIU_MODES = r'''L="$dir/$log"
printf '\0' >&$fd
echo "(00.001) uffd: 77-3: Found 64 pages to be handled by UFFD" >> "$L"
case "$mode" in
  slow)  # 64 pages, one every 0.05 s: 3.2 s in all, much longer than the 0.6 s progress timeout
    i=0; while [ $i -lt 64 ]; do echo "(00.1) uffd: 77-3: uffd_copy: 0x7f00000$i/4096" >> "$L"; i=$((i+1)); sleep 0.05; done
    echo "(00.2) uffd: 77-3: UFFD transferred pages: (64/64)" >> "$L"; exit 0;;
  stall)  # 8 pages, then nothing (a cut link: the daemon blocks on the socket)
    i=0; while [ $i -lt 8 ]; do echo "(00.1) uffd: 77-3: uffd_copy: 0x7f00000$i/4096" >> "$L"; i=$((i+1)); done
    trap 'exit 1' TERM; sleep 30 & wait; exit 1;;
  killed)  # the page server goes away mid-transfer
    echo "(00.1) uffd: 77-3: uffd_copy: 0x7f0000000/4096" >> "$L"; sleep 0.2
    echo "(00.3) Error (criu/page-xfer.c:1): Can't read from page server: Connection reset by peer" >> "$L"; exit 1;;
esac
'''


@pytest.fixture
def daemon(fake_criu):
    criu, img = fake_criu(FAKE_CRIU_MODES)

    def start(mode):
        (img / 'FAKE_MODE').write_text(mode)
        return _lazy_pages.start_lazy_pages(str(criu), str(img), '198.18.0.11', 27100, ready_timeout=10, tls=False)
    yield str(img), start
    st = _supervisor.read_state(_supervisor.state_path(str(img), 'lazy-pages'))
    if st and st.get('pid') and _proc.pid_alive(st['pid']):
        _proc.kill_tree(st.get('supervisor_pid') or st['pid'])


def test_a_slow_transfer_that_keeps_moving_finishes(daemon):
    img, start = daemon
    start('slow')
    beats = []
    st = _transfer.wait_transfer(img, 'lazy-pages', 0.6, on_progress=beats.append, beat=0.2)
    assert st['rc'] == 0
    assert st['waited_ms'] > 1500  # longer than 2 x the timeout, and not declared lost
    assert st['progress']['moved_bytes'] == 64 * 4096 == st['progress']['total_bytes']
    assert len(beats) >= 3 and beats[-1]['moved_bytes'] > beats[0]['moved_bytes']


def test_a_stalled_transfer_is_lost_with_what_moved(daemon):
    img, start = daemon
    start('stall')
    t0 = time.time()
    with pytest.raises(HaulError) as e:
        _transfer.wait_transfer(img, 'lazy-pages', 0.5)
    assert time.time() - t0 < 10
    assert e.value.step == 'transfer'
    assert 'no page moved for' in e.value.msg and 'the container is lost' in e.value.msg
    assert 'moved 32768 of 262144 bytes' in e.value.msg
    assert e.value.details['progress']['moved_bytes'] == 8 * 4096
    # what the destination then does: the daemon stopped (the copy's cgroup is the caller's)
    lost = _transfer.abandon_lost(img, None)
    assert lost['daemon_stopped'] is True and lost['moved_bytes'] == 8 * 4096
    assert _lazy_pages.find_lazy_pages(img) is None


def test_a_killed_page_server_is_lost_with_the_telling_line(daemon):
    img, start = daemon
    start('killed')
    with pytest.raises(HaulError) as e:
        _transfer.wait_transfer(img, 'lazy-pages', 30)
    assert 'the container is lost' in e.value.msg and 'Connection reset by peer' in e.value.msg
    assert e.value.details['progress']['moved_bytes'] == 4096


class _Cg(object):
    def __init__(self):
        self.calls = []

    def kill(self, timeout=10):
        self.calls.append('kill')

    def remove(self):
        self.calls.append('remove')


def test_abandon_lost_kills_the_copy_that_runs_on_missing_memory(tmp_path):
    cg = _Cg()
    (tmp_path / 'lazy-pages.log').write_text(LOG + '(00.9) Error (criu/uffd.c:1): uffd: Failed to read\n')
    lost = _transfer.abandon_lost(str(tmp_path), cg)
    assert cg.calls == ['kill', 'remove'] and lost['destination_copy'] == 'killed'
    assert lost['daemon_stopped'] is False and lost['total_bytes'] == 128 * os.sysconf('SC_PAGE_SIZE')
    assert 'Failed to read' in lost['log_line']


# --------------------------------------------------------------------------- the source follows the beats

def test_follow_transfer_waits_through_beats_and_keeps_the_last_progress():
    statuses = [{'state': 'running', 'progress': {'moved_bytes': 1}},
                {'state': 'running', 'progress': {'moved_bytes': 2}},
                {'state': 'complete', 'final': True, 'pages': 2}]
    seen = []

    def expect(states, timeout, step):
        seen.append((states, timeout, step))
        return statuses.pop(0)
    beats = []
    st = _transfer.follow_transfer(expect, 'complete', 'running', 20, on_progress=beats.append)
    assert st['state'] == 'complete' and st['progress'] == {'moved_bytes': 2}
    assert seen == [(('complete', 'running'), 20, 'transfer')] * 3
    # each beat's progress reaches the handoff's progress file as it comes
    assert beats == [{'moved_bytes': 1}, {'moved_bytes': 2}]


def test_follow_transfer_silence_says_what_was_last_heard():
    statuses = [{'state': 'running', 'progress': {'moved_bytes': 5}}]

    def expect(states, timeout, step):
        if statuses:
            return statuses.pop(0)
        raise HaulError(step, 'the destination n2 did not report complete or running within 20s')
    with pytest.raises(HaulError) as e:
        _transfer.follow_transfer(expect, 'complete', 'running', 20)
    assert e.value.step == 'transfer' and 'no word from the destination' in e.value.msg
    assert e.value.details['progress'] == {'moved_bytes': 5}


def test_follow_transfer_returns_a_lost_verdict():
    def expect(states, timeout, step):
        return {'state': 'lost', 'final': True, 'msg': 'transfer: no page moved for 20s'}
    assert _transfer.follow_transfer(expect, 'complete', 'running', 20)['state'] == 'lost'


# --------------------------------------------------------------------------- the report row

def test_report_line_says_lost_loudly_with_what_is_known():
    line = report_line({'name': 'pc1', 'source': 'node1', 'destination': 'node2', 'strategy': 'postcopy',
                        'frozen_ms': 12, 'bytes': 0, 'result': 'lost', 'step': 'transfer',
                        'msg': 'the container pc1 is LOST', 'progress': {'moved_bytes': MIB, 'total_bytes': 4 * MIB},
                        'lost': {'destination_copy': 'killed', 'log_line': "Can't read from page server"}})
    assert 'LOST (post-copy) at transfer' in line
    assert '1.0 MiB of 4.0 MiB moved' in line and 'destination copy killed' in line
    assert "CRIU: Can't read from page server" in line
