# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for the lab's network naming and its probe (tests/lab/lab, tests/lab/node/haul-lab-ct).

Nothing here needs root or a network: the probe talks over a socketpair.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import socket
import threading

import pytest

LAB_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'lab')


def _load(name, path):
    loader = importlib.machinery.SourceFileLoader(name, path)
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
    loader.exec_module(module)
    return module


lab = _load('haul_lab', os.path.join(LAB_DIR, 'lab'))
ct = _load('haul_lab_ct', os.path.join(LAB_DIR, 'node', 'haul-lab-ct'))


def test_mac_is_the_address_behind_02_48_on_both_sides():
    assert lab.mac_for('198.18.0.101') == '02:48:c6:12:00:65'
    assert ct.mac_for('198.19.255.1') == '02:48:c6:13:ff:01'
    assert lab.mac_for('198.18.0.11') == ct.mac_for('198.18.0.11')


@pytest.mark.parametrize('name, ifname', [
    ('web', 'hv-web'),
    ('twelve-chars', 'hv-twelve-chars'),
    ('thirteen-char', 'hv' + __import__('hashlib').sha1(b'thirteen-char').hexdigest()[:13]),
])
def test_host_end_name(name, ifname):
    assert ct.host_ifname(name) == ifname
    assert len(ct.host_ifname(name)) <= 15


@pytest.mark.parametrize('text', ['198.18.0.101', '10.0.0.1/24', '198.18.0.0/24', '198.18.0.255/24',
                                  '198.18.0.1/8', 'nonsense'])
def test_container_address_refused(text):
    with pytest.raises(SystemExit):
        ct.parse_ip(text)


def test_container_address_accepted():
    assert str(ct.parse_ip('198.18.1.7/24')) == '198.18.1.7/24'


@pytest.mark.parametrize('text', ['198.18.0.101', '127.0.0.1:80', '198.18.0.101:0', 'x:80'])
def test_probe_address_refused(text):
    with pytest.raises(lab.LabError):
        lab.parse_address(text)


def _server(sock, answers):
    """Answer each request line with the next of answers, then close."""
    buf = b''
    with sock:
        for value in answers:
            while b'\n' not in buf:
                data = sock.recv(4096)
                if not data:
                    return
                buf += data
            buf = buf.split(b'\n', 1)[1]
            sock.sendall(b'%d\n' % value)
        # keep the connection open (no more answers) until the probe closes it
        while sock.recv(4096):
            pass


def _run_probe(answers, seconds=0.3, interval_ms=0.0):
    ours, theirs = socket.socketpair()
    server = threading.Thread(target=_server, args=(theirs, answers))
    server.start()
    probe = lab.Probe('198.18.0.101', 8080, seconds, interval_ms, timeout_s=0.2)
    probe.connect = lambda timeout: pytest.fail('the probe must not reconnect here')
    try:
        return probe.run(ours)
    finally:
        server.join(5)


def test_probe_counts_answers_and_measures():
    out = _run_probe(range(1, 100000))
    assert out['requests'] > 100
    assert out['errors'] == 0 and out['out_of_order'] == 0 and out['reconnects'] == 0
    assert out['first_answer'] == 1 and out['last_answer'] == out['requests']
    assert 0 <= out['p50_ms'] <= out['p99_ms'] <= out['max_ms'] <= out['max_stall_ms']
    assert out['started_at'] <= out['stall_started_at'] <= out['ended_at']
    assert out['address'] == '198.18.0.101:8080' and not out['unanswered_at_end']


def test_probe_reports_an_answer_smaller_than_the_one_before():
    out = _run_probe([5, 6, 3, 4] + list(range(10, 100000)))
    assert out['out_of_order'] == 1 and out['errors'] == 1
    assert out['first_answer'] == 5


def test_probe_timeout_at_the_end_is_a_stall():
    out = _run_probe([1, 2, 3], seconds=0.1, interval_ms=1.0)
    assert out['requests'] == 3
    assert out['timeouts'] == 1 and out['unanswered_at_end']
    assert out['max_stall_ms'] >= 150
