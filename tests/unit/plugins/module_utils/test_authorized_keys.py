# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import multiprocessing

import pytest

from ansible_collections.haul.live.plugins.module_utils import _authorized_keys as keys
from ansible_collections.haul.live.plugins.module_utils._common import HaulError

OTHER = 'ssh-ed25519 AAAAother admin@somewhere'


def line(name, mid='m1', expiry='209912312359'):
    return 'restrict,from="198.18.0.11",expiry-time="%sZ" ssh-ed25519 AAAA%s haul.live %s %s' % (expiry, name, name, mid)


def test_owner_and_expiry():
    assert keys.owner_of(line('web1')) == ('web1', 'm1')
    assert keys.owner_of('ssh-ed25519 AAAA haul.live web1') == ('web1', None)
    assert keys.owner_of(OTHER) is None
    assert keys.expired(line('a', expiry='202001010000'), '202611301200')
    assert not keys.expired(line('a'), '202611301200')
    assert not keys.expired(OTHER, '202611301200')


def test_present_absent_pruned(tmp_path):
    path = str(tmp_path / 'authorized_keys')
    (tmp_path / 'authorized_keys').write_text(OTHER + '\n' + line('old', expiry='202001010000') + '\n')
    assert keys.change(path, 'web1', line=line('web1'))[0] is True
    assert keys.change(path, 'web1', line=line('web1'))[0] is False  # idempotent
    assert keys.change(path, 'web2', line=line('web2'), check_mode=True)[0] is True
    assert line('web2') not in keys.read_lines(path)  # check mode changes nothing
    changed, added, removed = keys.change(path, 'web1', state='pruned', now='202611301200')
    assert changed and removed == [line('old', expiry='202001010000'), line('web1')]
    assert keys.read_lines(path) == [OTHER]
    assert (tmp_path / 'authorized_keys').stat().st_mode & 0o777 == 0o600
    keys.change(path, 'web1', line=line('web1'))
    assert keys.change(path, 'web1', state='absent')[2] == [line('web1')]
    assert keys.read_lines(path) == [OTHER]


def test_a_line_of_another_container_is_refused(tmp_path):
    with pytest.raises(HaulError):
        keys.change(str(tmp_path / 'ak'), 'web1', line=line('web2'))


def _add(args):
    path, i = args
    keys.change(path, 'ct%d' % i, line=line('ct%d' % i))
    keys.change(path, 'ct%d' % i, state='pruned')
    keys.change(path, 'ct%d' % i, line=line('ct%d' % i, mid='m2'))


def test_parallel_changes_lose_nothing(tmp_path):
    path = str(tmp_path / 'authorized_keys')
    (tmp_path / 'authorized_keys').write_text(OTHER + '\n')
    with multiprocessing.Pool(6) as pool:
        pool.map(_add, [(path, i) for i in range(24)])
    lines = keys.read_lines(path)
    assert OTHER in lines
    assert sorted(lines) == sorted([OTHER] + [line('ct%d' % i, mid='m2') for i in range(24)])


def test_a_users_file_stays_theirs(tmp_path):
    import os
    if os.geteuid() != 0:
        pytest.skip('needs root to give a directory to another user')
    ssh = tmp_path / 'home' / '.ssh'
    ssh.mkdir(parents=True)
    os.chown(str(ssh), 4321, 4321)
    path = str(ssh / 'authorized_keys')
    keys.change(path, 'ct1', line='restrict ssh-ed25519 AAAA haul.live ct1 m1')
    st = os.stat(path)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (4321, 4321, 0o600)
