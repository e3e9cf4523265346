# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for the images directories' identity (marker), their removal by marker, the images
root on tmpfs, and writes on a full disk (plugins/module_utils/_images.py, _common.py)."""

from __future__ import annotations

import errno
import json
import os
import stat

import pytest

from ansible_collections.haul.live.plugins.module_utils import _common, _images
from ansible_collections.haul.live.plugins.module_utils._common import HaulError

MIB = 1048576


# --------------------------------------------------------------------------- the marker

def test_new_dir_is_marked_0700(tmp_path):
    d = tmp_path / 'web1'
    assert _images.ensure_dir(str(d), migration_id='m1') is True
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    marker = json.loads((d / _images.MARKER).read_text())
    assert marker['made_by'] == 'haul.live'
    assert marker['migration_id'] == 'm1'
    assert marker['host'] == os.uname()[1]
    assert stat.S_IMODE(os.stat(d / _images.MARKER).st_mode) == 0o600
    assert _images.ensure_dir(str(d), migration_id='m1') is False  # idempotent
    assert _images.ensure_dir(str(d), migration_id='m2') is True  # re-stamped for a new migration
    assert _images.read_marker(str(d))['migration_id'] == 'm2'


def test_marker_is_not_an_image_nor_foreign(tmp_path):
    d = tmp_path / 'web1'
    _images.ensure_dir(str(d), migration_id='m1')
    (d / 'core-1.img').write_bytes(b'x')
    assert _images.image_files(str(d)) == ['core-1.img']
    assert _images.foreign_entries(str(d)) == []
    _images.clear_images(str(d))
    assert os.listdir(str(d)) == [_images.MARKER]  # a new dump keeps the directory's marker


def test_dir_with_foreign_files_is_never_adopted(tmp_path):
    d = tmp_path / 'web1'
    d.mkdir()
    (d / 'notes.txt').write_text('mine')
    _images.ensure_dir(str(d), migration_id='m1')
    assert _images.read_marker(str(d)) is None
    with pytest.raises(HaulError):
        _images.require_usable(str(d))
    assert _images.remove_ours(str(d)) == (False, '%s has no haul.live marker (.haul-images): haul.live did not make it' % d)
    assert (d / 'notes.txt').exists()


def test_empty_or_criu_only_dir_is_adopted(tmp_path):
    d = tmp_path / 'web1'
    d.mkdir()
    (d / 'dump.log').write_text('x')
    _images.ensure_dir(str(d), migration_id='m1')
    assert _images.read_marker(str(d))['migration_id'] == 'm1'


def test_foreign_marker_is_not_ours(tmp_path):
    d = tmp_path / 'web1'
    d.mkdir()
    (d / _images.MARKER).write_text(json.dumps({'made_by': 'someone else'}))
    assert _images.read_marker(str(d)) is None
    (d / _images.MARKER).write_text('not json')
    assert _images.read_marker(str(d)) is None
    ok, why = _images.is_ours(str(d))
    assert not ok and 'no haul.live marker' in why


# --------------------------------------------------------------------------- removal by marker

def test_remove_ours(tmp_path):
    d = tmp_path / 'web1'
    _images.ensure_dir(str(d), migration_id='m1')
    (d / 'pages-1.img').write_bytes(b'\0' * 4096)
    assert _images.remove_ours(str(d), migration_id='m2') == (False, '%s was made by migration m1, not m2' % d)
    assert d.exists()
    assert _images.remove_ours(str(d), migration_id='m1', check_mode=True) == (True, None)
    assert d.exists()
    assert _images.remove_ours(str(d), migration_id='m1') == (True, None)
    assert not d.exists()
    assert _images.remove_ours(str(d)) == (False, None)  # gone: nothing to do


def test_remove_ours_any_migration(tmp_path):
    d = tmp_path / 'web1.handoff'
    d.mkdir()
    _images.write_marker(str(d), 'old')
    (d / 'old').mkdir()
    assert _images.remove_ours(str(d)) == (True, None)
    assert not d.exists()


def test_remove_ours_keeps_files_and_links(tmp_path):
    f = tmp_path / 'web1'
    f.write_text('x')
    ok, why = _images.remove_ours(str(f))
    assert not ok and 'not a directory' in why
    target = tmp_path / 'real'
    _images.ensure_dir(str(target))
    os.symlink(str(target), str(tmp_path / 'link'))
    ok, why = _images.remove_ours(str(tmp_path / 'link'))
    assert not ok and target.exists()


# --------------------------------------------------------------------------- the root on tmpfs

def fake_env(tmp_path, avail_mib, fstype='ext4'):
    root = tmp_path / 'images'
    mi = tmp_path / 'mountinfo'
    mi.write_text('22 1 8:1 / / rw,relatime shared:1 - %s /dev/vda rw\n' % fstype)
    mem = tmp_path / 'meminfo'
    mem.write_text('MemTotal:       24000000 kB\nMemAvailable:   %d kB\n' % (avail_mib * 1024))
    return root, str(mi), str(mem)


def test_tmpfs_auto_mounts_when_memory_allows(tmp_path):
    root, mi, mem = fake_env(tmp_path, 4096)
    mounted = []
    res = _images.prepare_root(str(root), 'auto', 512 * MIB, mountinfo=mi, meminfo=mem, lock_dir=str(tmp_path),
                               mount_fn=mounted.append)
    assert mounted == [str(root)]
    assert res['on_tmpfs'] and res['mounted'] and res['changed']
    assert res['need_bytes'] == 2 * 512 * MIB + _images.TMPFS_RESERVE_BYTES
    assert 'mounted a tmpfs' in res['note']
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    assert _images.read_marker(str(root)) is None  # the root itself is never marked (never removed)


def test_tmpfs_auto_stays_on_disk_without_memory(tmp_path):
    root, mi, mem = fake_env(tmp_path, 1000)
    mounted = []
    res = _images.prepare_root(str(root), 'auto', 512 * MIB, mountinfo=mi, meminfo=mem, lock_dir=str(tmp_path),
                               mount_fn=mounted.append)
    assert mounted == []
    assert not res['on_tmpfs']
    assert 'images on disk' in res['note'] and '1000 MiB of memory available' in res['note']
    assert '1280 MiB' in res['note']


def test_tmpfs_true_refuses_without_memory(tmp_path):
    root, mi, mem = fake_env(tmp_path, 1000)
    with pytest.raises(HaulError) as e:
        _images.prepare_root(str(root), 'true', 512 * MIB, mountinfo=mi, meminfo=mem, lock_dir=str(tmp_path),
                             mount_fn=lambda r: None)
    assert e.value.step == 'images' and 'haul_images_on_tmpfs is true' in e.value.msg


def test_tmpfs_never_hides_a_non_empty_root(tmp_path):
    root, mi, mem = fake_env(tmp_path, 8192)
    (root / 'other').mkdir(parents=True)
    res = _images.prepare_root(str(root), 'auto', 64 * MIB, mountinfo=mi, meminfo=mem, lock_dir=str(tmp_path),
                               mount_fn=lambda r: pytest.fail('mounted over files'))
    assert not res['on_tmpfs'] and 'would hide it' in res['note']
    with pytest.raises(HaulError):
        _images.prepare_root(str(root), 'true', 64 * MIB, mountinfo=mi, meminfo=mem, lock_dir=str(tmp_path),
                             mount_fn=lambda r: None)


def test_tmpfs_already_and_false(tmp_path):
    root, mi, mem = fake_env(tmp_path, 100, fstype='tmpfs')
    res = _images.prepare_root(str(root), 'true', 512 * MIB, mountinfo=mi, meminfo=mem, lock_dir=str(tmp_path),
                               mount_fn=lambda r: pytest.fail('mounted twice'))
    assert res['on_tmpfs'] and not res['mounted']
    root, mi, mem = fake_env(tmp_path, 8192)
    res = _images.prepare_root(str(root), 'false', 64 * MIB, mountinfo=mi, meminfo=mem, lock_dir=str(tmp_path),
                               mount_fn=lambda r: pytest.fail('mounted with false'))
    assert not res['on_tmpfs'] and 'is false' in res['note']


def test_tmpfs_check_mode_mounts_nothing(tmp_path):
    root, mi, mem = fake_env(tmp_path, 8192)
    res = _images.prepare_root(str(root), 'auto', 64 * MIB, check_mode=True, mountinfo=mi, meminfo=mem,
                               mount_fn=lambda r: pytest.fail('mounted in check mode'))
    assert res['on_tmpfs'] and 'would mount' in res['note']
    assert not root.exists()


def test_tmpfs_bad_choice(tmp_path):
    with pytest.raises(HaulError):
        _images.prepare_root(str(tmp_path), 'maybe')


def test_mount_of_longest_and_last(tmp_path):
    mi = tmp_path / 'mountinfo'
    mi.write_text('22 1 8:1 / / rw - ext4 /dev/vda rw\n'
                  '30 22 0:40 / /var/lib/haul/images rw - tmpfs haul-images rw\n'
                  '31 30 0:41 / /var/lib/haul/images rw - tmpfs haul-fault rw,size=4096k\n')
    assert _images.mount_of('/var/lib/haul/images/web1', str(mi)) == ('/var/lib/haul/images', 'tmpfs')
    assert _images.mount_of('/var/lib/haulx', str(mi))[1] == 'ext4'


# --------------------------------------------------------------------------- a full disk

class FullDisk(object):
    """os.open/os.write that fail with ENOSPC for new files under ``base`` (as a full filesystem does)."""

    def __init__(self, monkeypatch, base):
        self.base = str(base)
        real_open, real_write = os.open, os.write
        self.full = True

        def fake_open(path, flags, mode=0o777, **kw):
            if self.full and str(path).startswith(self.base) and flags & os.O_CREAT and not os.path.exists(path):
                raise OSError(errno.ENOSPC, 'No space left on device', str(path))
            return real_open(path, flags, mode, **kw)

        def fake_write(fd, data):
            return real_write(fd, data)

        monkeypatch.setattr(os, 'open', fake_open)
        monkeypatch.setattr(os, 'write', fake_write)


def test_write_atomic_no_space_names_step_file_host(tmp_path, monkeypatch):
    FullDisk(monkeypatch, tmp_path)
    path = str(tmp_path / 'status.json')
    with pytest.raises(HaulError) as e:
        _common.write_json_atomic(path, {'state': 'restored'}, 'handoff', what='the handoff status')
    msg = e.value.msg
    assert msg.startswith('handoff: no space left on %s: cannot write %s' % (os.uname()[1], path))
    assert e.value.details.get('no_space') is True
    assert not os.path.exists(path + '.tmp')


def test_write_atomic_status_gets_through_in_its_spare(tmp_path, monkeypatch):
    path = str(tmp_path / 'status.json')
    _common.write_json_atomic(path, {'state': 'waiting'}, 'handoff', spare=True)  # space left: a spare is kept
    assert os.path.getsize(path + _common.SPARE_SUFFIX) == _common.SPARE_BYTES
    disk = FullDisk(monkeypatch, tmp_path)
    _common.write_json_atomic(path, {'state': 'failed', 'msg': 'no space'}, 'handoff', spare=True)
    with open(path) as f:
        assert json.load(f) == {'state': 'failed', 'msg': 'no space'}
    # the spare is used up (the disk stays full): the next status is a clear error
    assert not os.path.exists(path + _common.SPARE_SUFFIX)
    with pytest.raises(HaulError) as e:
        _common.write_json_atomic(path, {'state': 'aborted'}, 'handoff', spare=True)
    assert 'no space left on' in e.value.msg
    disk.full = False
    _common.write_json_atomic(path, {'state': 'aborted'}, 'handoff', spare=True)
    assert os.path.exists(path + _common.SPARE_SUFFIX)


def test_write_atomic_other_errors_stay(tmp_path):
    with pytest.raises(OSError):
        _common.write_atomic(str(tmp_path / 'missing' / 'f'), 'x', 'handoff')


def test_manifest_and_marker_on_a_full_disk(tmp_path, monkeypatch):
    d = tmp_path / 'web1'
    d.mkdir()
    FullDisk(monkeypatch, tmp_path)
    with pytest.raises(HaulError) as e:
        _images.write_manifest(str(d), {'format': 1})
    assert e.value.step == 'manifest' and 'no space left on' in e.value.msg and 'manifest.json' in e.value.msg
    with pytest.raises(HaulError) as e:
        _images.ensure_dir(str(tmp_path / 'web2'), migration_id='m1')
    assert e.value.step == 'images' and 'no space left on' in e.value.msg
