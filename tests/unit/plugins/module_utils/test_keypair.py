# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The source's key pair and pinned known_hosts, with the real ssh-keygen."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.haul.live.plugins.module_utils import _keypair
from ansible_collections.haul.live.plugins.module_utils._common import HaulError

PINS = ['198.18.0.12 ssh-ed25519 AAAAhostkey', '[198.18.0.13]:2222 ssh-ed25519 AAAAjump']


def ensure(tmp_path, comment='haul.live web1 id1', **kw):
    return _keypair.ensure('web1', comment, kw.pop('pins', PINS), directory=str(tmp_path / 'ssh'), **kw)


def test_makes_the_key_and_pins_the_host_keys(tmp_path):
    changed, pub = ensure(tmp_path)
    key, dot_pub, pinned = _keypair.paths('web1', str(tmp_path / 'ssh'))
    assert changed and pub.startswith('ssh-ed25519 ') and len(pub.split()) == 2
    assert open(dot_pub).read().split()[2:] == ['haul.live', 'web1', 'id1']
    assert open(pinned).read() == ''.join(p + '\n' for p in PINS)
    for path in (key, pinned):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(str(tmp_path / 'ssh')).st_mode) == 0o700
    # again: nothing changes, the same key
    assert ensure(tmp_path) == (False, pub)


def test_an_earlier_runs_key_is_replaced(tmp_path):
    first = ensure(tmp_path)[1]
    changed, second = ensure(tmp_path, comment='haul.live web1 id2')
    assert changed and second != first


def test_new_pins_rewrite_the_known_hosts_only(tmp_path):
    pub = ensure(tmp_path)[1]
    assert ensure(tmp_path, pins=PINS[:1]) == (True, pub)
    assert open(_keypair.paths('web1', str(tmp_path / 'ssh'))[2]).read() == PINS[0] + '\n'


def test_check_mode_changes_nothing(tmp_path):
    assert ensure(tmp_path, check_mode=True) == (True, None)
    assert not (tmp_path / 'ssh').exists()


def test_the_operators_key_only_pins(tmp_path):
    assert ensure(tmp_path, comment=None, generate=False) == (True, None)
    assert sorted(os.listdir(str(tmp_path / 'ssh'))) == ['haul-live-web1.known_hosts']


def test_a_comment_of_another_container_is_refused(tmp_path):
    with pytest.raises(HaulError, match='haul.live web1 ID'):
        ensure(tmp_path, comment='haul.live web2 id1')
    with pytest.raises(HaulError, match='haul.live web1 ID'):
        ensure(tmp_path, comment=None)  # a key needs its comment


def test_remove(tmp_path):
    d = str(tmp_path / 'ssh')
    ensure(tmp_path)
    assert _keypair.remove('web1', directory=d, check_mode=True) == list(_keypair.paths('web1', d))
    assert len(os.listdir(d)) == 3
    assert _keypair.remove('web1', key_files=False, directory=d) == [_keypair.paths('web1', d)[2]]
    assert len(_keypair.remove('web1', directory=d)) == 2
    assert _keypair.remove('web1', directory=d) == [] and os.listdir(d) == []
