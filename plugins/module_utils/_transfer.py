# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Post-copy transfer accounting: how many pages moved, the time budget of the rest, and
the waits for the end of the transfer.

:class:`TransferBudget` (pace by progress), :class:`DaemonProgress` (what the
lazy-pages log says), :func:`socket_bytes`, :func:`wait_transfer`,
:func:`follow_transfer`; :func:`abandon_lost` when the container is LOST.

This is a private module_util: it is not part of the collection's public API.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import select
import subprocess
import time

from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.module_utils._lazy_pages import LAZY_PAGES_LOG, lazy_pages_error, stop_lazy_pages
from ansible_collections.haul.live.plugins.module_utils._proc import open_pidfd, pid_alive
from ansible_collections.haul.live.plugins.module_utils._supervisor import read_state, state_path


_TRANSFERRED = re.compile(r'uffd: (\S+): UFFD transferred pages: \((\d+)/(\d+)\)')


def transferred_pages(log_path):
    """Pages the lazy-pages daemon moved, from its log (the last count of each task, summed); 0 if unknown."""
    last = {}
    try:
        with open(log_path, 'rb') as f:
            for line in f.read().decode('utf-8', 'replace').splitlines():
                m = _TRANSFERRED.search(line)
                if m:
                    last[m.group(1)] = int(m.group(2))
    except (IOError, OSError):
        return 0
    return sum(last.values())


# --------------------------------------------------------------------------- transfer progress and its budget

# A post-copy transfer is judged by its progress, not by a fixed total: see TransferBudget.
BUDGET_SLACK = 2.0      # the rest may take twice what it needs at the rate measured
RATE_WINDOW = 10.0      # seconds of samples the rate is measured over
BEAT_INTERVAL = 2.0     # seconds between the destination's progress statuses (heartbeats)

_FOUND = re.compile(r'uffd: (\S+): Found (\d+) pages to be handled by UFFD')
_COPIED = re.compile(r'uffd: (\S+): uffd_copy: 0x[0-9a-fA-F]+/(\d+)')
_ZERO = re.compile(r'uffd: (\S+): zero page at ')


class TransferBudget(object):
    """When a post-copy page transfer has failed, from its progress (pure arithmetic: unit-tested).

    Each :meth:`observe` gives the bytes moved so far (and the total, once known). The rate is the
    bytes moved over the last ``window`` seconds. At every observation that shows progress the
    budget for the rest is set again: ``max(floor, slack * remaining / rate)`` seconds from now
    (``floor`` alone while the rate or the total is unknown). The transfer has failed when the
    budget runs out with no page moved since: no page moved for ``floor`` seconds (the progress
    timeout), or for longer than ``slack`` times what the remaining bytes need at the rate measured,
    whichever is longer. A slow transfer that keeps moving is therefore never failed, however long
    it takes; a stalled one is failed after the progress timeout (longer while much is left at a low
    rate: a LOST verdict cannot be undone, a late one only costs time).
    """

    def __init__(self, floor, slack=BUDGET_SLACK, window=RATE_WINDOW, now=None):
        now = time.time() if now is None else now
        self.floor = max(float(floor), 0.0)
        self.slack = float(slack)
        self.window = float(window)
        self.started = self.last_progress = now
        self.moved = 0
        self.total = None
        self.samples = [(now, 0)]
        self.deadline = now + self.floor

    def observe(self, moved, total=None, now=None):
        """Record ``moved`` bytes so far (and ``total`` when known); whether pages moved since the last call."""
        now = time.time() if now is None else now
        if total:
            self.total = max(int(total), self.total or 0)
        progressed = moved > self.moved
        if progressed:
            self.moved = int(moved)
            self.last_progress = now
            self.samples.append((now, self.moved))
            while len(self.samples) > 2 and self.samples[1][0] < now - self.window:
                self.samples.pop(0)
            self.deadline = now + self.budget_s()
        return progressed

    def rate(self):
        """Bytes per second over the window, or None before the first progress."""
        (t0, m0), (t1, m1) = self.samples[0], self.samples[-1]
        if t1 <= t0 or m1 <= m0:
            return None
        return (m1 - m0) / float(t1 - t0)

    def remaining(self):
        return None if self.total is None else max(self.total - self.moved, 0)

    def eta_s(self):
        """Seconds the remaining bytes need at the rate measured, or None when unknown."""
        rate, left = self.rate(), self.remaining()
        if not rate or left is None:
            return None
        return left / rate

    def budget_s(self):
        eta = self.eta_s()
        return self.floor if eta is None else max(self.floor, self.slack * eta)

    def expired(self, now=None):
        now = time.time() if now is None else now
        return now > self.deadline

    def summary(self, now=None):
        """What is known, for statuses, results and the LOST message."""
        now = time.time() if now is None else now
        rate, eta = self.rate(), self.eta_s()
        return {'moved_bytes': self.moved, 'total_bytes': self.total,
                'rate_bytes_s': None if rate is None else round(rate, 1),
                'eta_s': None if eta is None else round(eta, 1),
                'budget_s': round(self.budget_s(), 1),
                'silent_s': round(now - self.last_progress, 1),
                'elapsed_s': round(now - self.started, 1)}


class DaemonProgress(object):
    """Pages the lazy-pages daemon moved, read from its log as it grows (``-v4``): the totals of
    ``Found N pages to be handled by UFFD`` and the bytes of each ``uffd_copy`` and zero page."""

    def __init__(self, log_path, page_size=None):
        self.path = log_path
        self.page_size = page_size or os.sysconf('SC_PAGE_SIZE')
        self.offset = 0
        self.rest = b''
        self.totals = {}
        self.moved = 0

    def feed(self, text):
        for line in text.splitlines():
            m = _COPIED.search(line)
            if m:
                self.moved += int(m.group(2))
                continue
            if _ZERO.search(line):
                self.moved += self.page_size
                continue
            m = _FOUND.search(line)
            if m:
                self.totals[m.group(1)] = int(m.group(2)) * self.page_size

    def read(self):
        """(bytes moved, total bytes or None) from what the log says so far."""
        try:
            with open(self.path, 'rb') as f:
                f.seek(self.offset)
                data = f.read()
        except (IOError, OSError):
            data = b''
        if data:
            self.offset += len(data)
            data = self.rest + data
            cut = data.rfind(b'\n') + 1
            self.rest = data[cut:]
            self.feed(data[:cut].decode('utf-8', 'replace'))
        total = sum(self.totals.values()) or None
        return self.moved, total


def socket_bytes(port, run=None):
    """Bytes acknowledged by the peers of the established TCP connections whose local port is
    ``port`` (``ss -tin``: the page server's side), or None when ``ss`` cannot tell."""
    argv = ['ss', '-tinH', 'state', 'established', '( sport = :%d )' % int(port)]
    try:
        if run is None:
            out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,  # pylint: disable=ansible-bad-function
                                 check=False, timeout=5).stdout.decode('utf-8', 'replace')
        else:
            out = run(argv)
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.findall(r'\bbytes_acked:(\d+)', out)
    return sum(int(x) for x in found) if found else None


def _lost_message(job, why, budget):
    info = budget.summary()
    total = info['total_bytes']
    return ('the pages have not all moved: %s (%s moved %d of %s bytes, last progress %.0fs ago, rate %s B/s); '
            'if the destination has resumed, the container is lost' % (
                why, job, info['moved_bytes'], total if total is not None else 'unknown', info['silent_s'],
                info['rate_bytes_s'] if info['rate_bytes_s'] is not None else 'unknown'))


def wait_transfer(images_dir, job, timeout, pid=None, on_progress=None, beat=BEAT_INTERVAL):
    """Wait until every page has moved: the job's supervisor has exited with success.

    ``job`` is ``'dump'`` (on the source: the lazy dump ends once the destination
    holds every page) or ``'lazy-pages'`` (on the destination: the daemon ends then).
    Returns the job's final state (with ``rc``, ``ended``, ``waited_ms`` and ``progress``).

    ``timeout`` is the progress timeout, not a total: the wait fails when no page has moved for
    ``timeout`` seconds, or for longer than the remaining bytes need at the rate measured
    (:class:`TransferBudget`). Progress is read from the daemon's log on the destination, from the
    page server's connection (``ss``) on the source. ``on_progress(summary)`` is called at least
    every ``beat`` seconds while the transfer runs (the destination's heartbeat to the source).

    Raises HaulError('transfer', ...) when the transfer stalls or broke. After the
    destination resumed, that means the container is lost (see ROLLBACK RULE above):
    the message says so, with the cause and what had moved (``progress`` in the details).
    """
    sfile = state_path(images_dir, job)
    start = time.time()
    st = read_state(sfile)
    if pid is None:
        pid = (st or {}).get('supervisor_pid')
    if st is None and not pid:
        raise HaulError('transfer', 'no %s job was started for %s' % (job, images_dir))
    budget = TransferBudget(timeout, now=start)
    if job == 'lazy-pages':
        log = DaemonProgress((st or {}).get('log_path') or os.path.join(images_dir, LAZY_PAGES_LOG))

        def measure():
            return log.read()
    else:
        port = (st or {}).get('port')

        def measure():
            return (socket_bytes(port) or 0) if port else 0, None
    if pid and (st is None or st.get('state') in ('running', 'starting')):
        fd = open_pidfd(pid)
        last_beat = 0.0
        try:
            while pid_alive(pid):
                now = time.time()
                moved, total = measure()
                budget.observe(moved, total, now=now)
                if on_progress is not None and now - last_beat >= beat:
                    last_beat = now
                    on_progress(budget.summary(now))
                if budget.expired(now):
                    raise HaulError('transfer', _lost_message(job, 'no page moved for %.0fs (budget %.0fs)'
                                                              % (now - budget.last_progress, budget.budget_s()),
                                                              budget), progress=budget.summary(now))
                wait = min(0.5, max(budget.deadline - now, 0.01))
                if fd is not None:
                    select.select([fd], [], [], wait)
                else:
                    time.sleep(min(wait, 0.05))
        finally:
            if fd is not None:
                os.close(fd)
        st = read_state(sfile)
    moved, total = measure()
    budget.observe(moved, total)
    if st is None or st.get('state') in ('running', 'starting'):
        raise HaulError('transfer', 'the %s job for %s ended without a final state: it was killed; if the '
                        'destination has resumed, the container is lost' % (job, images_dir),
                        progress=budget.summary())
    st = dict(st)
    st['waited_ms'] = round((time.time() - start) * 1000, 1)
    st['progress'] = budget.summary()
    if st.get('rc') != 0:
        raise HaulError('transfer', 'the page transfer broke (%s exited with %s: %s); once the destination has '
                        'resumed the source may never resume, so the container is lost'
                        % (job, st.get('rc'), st.get('error') or 'no error logged'), log=st.get('log_path'),
                        state=st, progress=st['progress'])
    return st


def follow_transfer(expect, done, beat, silence, on_progress=None):
    """On the source: read the destination's statuses until ``done`` or a final one; return it.

    ``expect(states, timeout, step)`` is the relay's :meth:`expect`. The destination sends a
    ``beat`` status with its progress at least every :data:`BEAT_INTERVAL` seconds while pages
    move, and judges the transfer itself (:func:`wait_transfer`); the source only fails when it
    hears nothing for ``silence`` seconds (the destination or the link is gone). Each beat's
    progress is kept in the returned status (``progress``), and given to ``on_progress(dict)``.
    """
    last = None
    while True:
        try:
            st = expect((done, beat), silence, 'transfer')
        except HaulError as e:
            raise HaulError('transfer', 'no word from the destination about the page transfer for %ss (%s); the '
                            'last progress it reported: %s' % (silence, e.cause, last or 'none'), progress=last)
        if st.get('state') == beat and not st.get('final'):
            last = st.get('progress') or last
            if on_progress is not None and st.get('progress'):
                on_progress(st['progress'])
            continue
        if last and not st.get('progress'):
            st = dict(st, progress=last)
        return st


def abandon_lost(images_dir, cgroup):
    """After a transfer that broke once the destination resumed (the container is LOST): end what is
    left here - the lazy-pages daemon, and the restored copy, which runs on memory that will never
    all come (once the daemon is gone, the kernel fills a missing page with zeroes: a silently
    corrupted container). ``cgroup`` is its :class:`_cgroup.Cgroup`, or None. Returns what was done
    and what is known, for the result (``lost``)."""
    log = os.path.join(images_dir, LAZY_PAGES_LOG)
    moved, total = DaemonProgress(log).read()
    done = {'destination_copy': 'unknown', 'daemon_stopped': bool(stop_lazy_pages(images_dir, timeout=5)),
            'moved_bytes': moved, 'total_bytes': total, 'log_line': lazy_pages_error(log)}
    if cgroup is not None:
        try:
            cgroup.kill(timeout=10)
            cgroup.remove()
            done['destination_copy'] = 'killed'
        except HaulError as e:
            done['destination_copy'] = 'not killed: %s' % e.msg
    return done
