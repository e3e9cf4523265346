# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for plugins/module_utils/_ports.py: page-server port reservations.
"""

from __future__ import annotations

import os

import pytest

from ansible_collections.haul.live.plugins.module_utils import _ports
from ansible_collections.haul.live.plugins.module_utils._common import HaulError


# --------------------------------------------------------------------------- page-server ports

def _port_files(tmp_path):
    return dict(lock_file=str(tmp_path / 'ports.lock'), table_file=str(tmp_path / 'ports.json'))


def test_parallel_reservations_never_share_a_port(tmp_path):
    kw = _port_files(tmp_path)
    got = [_ports.reserve_port('127.0.0.1', '/var/lib/haul/images/ct%d' % i, 40100, 40102, ttl=60,
                               now=1000.0, is_free=lambda a, p: True, **kw)['port'] for i in range(3)]
    assert sorted(got) == [40100, 40101, 40102]
    with pytest.raises(HaulError) as e:
        _ports.reserve_port('127.0.0.1', '/var/lib/haul/images/ct9', 40100, 40102, ttl=60, now=1000.0,
                            is_free=lambda a, p: True, **kw)
    assert e.value.step == 'port' and 'no free page-server port in 40100-40102' in e.value.msg
    # expired reservations (no lazy dump runs for them) free their ports
    again = _ports.reserve_port('127.0.0.1', '/var/lib/haul/images/ct9', 40100, 40102, ttl=60, now=1061.0,
                                is_free=lambda a, p: True, **kw)
    assert again['port'] in got and again['kept'] is False


def test_a_reservation_is_kept_for_its_own_images_dir_and_released(tmp_path):
    kw = _port_files(tmp_path)
    first = _ports.reserve_port('127.0.0.1', '/img/a', 40100, 40199, ttl=60, now=0.0, is_free=lambda a, p: True,
                                **kw)
    second = _ports.reserve_port('127.0.0.1', '/img/a', 40100, 40199, ttl=60, now=10.0,
                                 is_free=lambda a, p: True, **kw)
    assert second['port'] == first['port'] and second['kept'] is True and second['expires'] == 70.0
    assert _ports.release_port('/img/a', **kw) == [first['port']]
    assert _ports.release_port('/img/a', **kw) == []


def test_a_bound_port_is_skipped_and_check_mode_reserves_nothing(tmp_path):
    import socket
    kw = _port_files(tmp_path)
    sk = socket.socket()
    sk.bind(('127.0.0.1', 0))
    busy = sk.getsockname()[1]
    try:
        assert not _ports.port_free('127.0.0.1', busy)
        got = _ports.reserve_port('127.0.0.1', '/img/b', busy, busy + 1, ttl=60, reserve=False, **kw)
        assert got['port'] == busy + 1 or not _ports.port_free('127.0.0.1', busy + 1)
        assert got['reserved'] is False and not os.path.exists(kw['table_file'])
    finally:
        sk.close()


def test_bad_range_refused(tmp_path):
    with pytest.raises(HaulError, match='bad page-server port range'):
        _ports.reserve_port('127.0.0.1', '/img/c', 40200, 40100, **_port_files(tmp_path))
