# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for plugins/module_utils/_images.py (no pycriu needed)."""

from __future__ import annotations

import base64
import json
import os
import stat
import struct

import pytest

from ansible_collections.haul.live.plugins.module_utils import _images
from ansible_collections.haul.live.plugins.module_utils._common import HaulError

IDENTITY = _images.make_identity('ct1', cgroup='haul/ct1', root='/var/lib/haul/containers/ct1/rootfs',
                                 init_pid=40, host='node1')

# stats-dump of a real 64 MiB lab container dumped by CRIU 4.1.1 (numbers only, no memory contents)
REAL_STATS_DUMP = 'QFkQVQYzCVcpAAAACicIngMQzd4FGLKOAyDO3AIoloABMAA4j4ABQABIAFAIWAhgAGgAcAA='


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def message(fields):
    out = b''
    for num, val in fields:
        if isinstance(val, bytes):
            out += varint(num << 3 | 2) + varint(len(val)) + val
        else:
            out += varint(num << 3) + varint(val)
    return out


def stats_image(kind, fields):
    entry = message([(1 if kind == 'dump' else 2, message(fields))])
    return struct.pack('<III', 0x55105940, 0x57093306, len(entry)) + entry


def make_images(path, pages=b'\x07' * 8192):
    path.mkdir(mode=0o700, exist_ok=True)
    (path / 'core-1.img').write_bytes(b'core' * 10)
    (path / 'pages-1.img').write_bytes(pages)
    (path / 'stats-dump').write_bytes(stats_image('dump', [(1, 400), (2, 150000), (7, 16398)]))
    (path / 'dump.log').write_text('(00.1) Dumping finished successfully\n')
    return path


# --------------------------------------------------------------------------- directories

def test_ensure_dir_creates_0700(tmp_path):
    d = tmp_path / 'a' / 'b'
    assert _images.ensure_dir(str(d)) is True
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert _images.ensure_dir(str(d)) is False


def test_ensure_dir_fixes_mode(tmp_path):
    d = tmp_path / 'img'
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    assert _images.ensure_dir(str(d)) is True
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700


def test_ensure_dir_refuses_file(tmp_path):
    f = tmp_path / 'f'
    f.write_text('x')
    with pytest.raises(HaulError) as e:
        _images.ensure_dir(str(f))
    assert 'not a directory' in e.value.msg


def test_image_files_exclusions(tmp_path):
    d = make_images(tmp_path / 'img')
    (d / 'manifest.json').write_text('{}')
    (d / 'restore.log').write_text('x')
    (d / 'stats-restore').write_bytes(b'x')
    (d / 'restore.json').write_text('{}')
    (d / 'lazy-pages.socket').write_text('')
    os.symlink('../round1', str(d / 'parent'))
    assert _images.image_files(str(d)) == ['core-1.img', 'pages-1.img', 'stats-dump']
    assert _images.images_bytes(str(d)) == 40 + 8192 + os.path.getsize(d / 'stats-dump')


def test_remove(tmp_path):
    d = make_images(tmp_path / 'img')
    assert _images.remove(str(d)) is True
    assert not d.exists()
    assert _images.remove(str(d)) is False


def test_clear_images_and_foreign(tmp_path):
    d = make_images(tmp_path / 'img')
    os.symlink('../round1', str(d / 'parent'))
    assert _images.foreign_entries(str(d)) == []
    assert _images.clear_images(str(d)) == 5
    assert os.listdir(d) == []
    (d / 'notes.txt').write_text('mine')
    with pytest.raises(HaulError) as e:
        _images.clear_images(str(d))
    assert 'notes.txt' in e.value.msg
    assert (d / 'notes.txt').exists()


def test_can_create_and_free_bytes(tmp_path):
    assert _images.can_create(str(tmp_path / 'x' / 'y')) == (True, None)
    f = tmp_path / 'file'
    f.write_text('')
    ok, why = _images.can_create(str(f))
    assert not ok and 'not a directory' in why
    assert _images.free_bytes(str(tmp_path / 'x' / 'y')) > 0


# --------------------------------------------------------------------------- manifest

def test_manifest_round_trip(tmp_path):
    d = make_images(tmp_path / 'img')
    m = _images.create_manifest(str(d), 'dump', IDENTITY, '4.1.1', kernel='6.18.0')
    assert stat.S_IMODE(os.stat(d / 'manifest.json').st_mode) == 0o600
    loaded = _images.load_manifest(str(d))
    assert loaded == m
    assert loaded['format'] == 1
    assert loaded['kind'] == 'dump'
    assert loaded['identity'] == {'name': 'ct1', 'cgroup': '/haul/ct1', 'root': '/var/lib/haul/containers/ct1/rootfs',
                                  'init_pid': 40, 'host': 'node1', 'network': None}
    assert loaded['criu_version'] == '4.1.1'
    assert loaded['kernel'] == '6.18.0'
    assert loaded['created'].endswith('Z')
    assert set(loaded['files']) == {'core-1.img', 'pages-1.img', 'stats-dump'}
    assert loaded['files']['pages-1.img']['size'] == 8192
    assert len(loaded['files']['pages-1.img']['sha256']) == 64
    assert _images.verify_manifest(str(d)) == m
    # a restore writes its log, stats and marker next to the images: still verifies
    (d / 'restore.log').write_text('x')
    (d / 'stats-restore').write_bytes(b'x')
    (d / 'restore.json').write_text('{}')
    assert _images.verify_manifest(str(d)) == m
    json.dumps(m)


def test_manifest_without_checksums(tmp_path):
    d = make_images(tmp_path / 'img')
    m = _images.create_manifest(str(d), 'dump', IDENTITY, '4.1.1', checksums=False)
    assert m['files']['pages-1.img']['sha256'] is None
    (d / 'pages-1.img').write_bytes(b'\x08' * 8192)  # same size, other content: only sizes are checked
    _images.verify_manifest(str(d))


def test_verify_corrupt_file(tmp_path):
    d = make_images(tmp_path / 'img')
    _images.create_manifest(str(d), 'dump', IDENTITY, '4.1.1')
    (d / 'pages-1.img').write_bytes(b'\x07' * 8191 + b'\x00')
    with pytest.raises(HaulError) as e:
        _images.verify_manifest(str(d))
    assert e.value.step == 'verify'
    assert 'pages-1.img' in e.value.msg and 'corrupt' in e.value.msg
    assert e.value.details['file'] == 'pages-1.img'
    # without checksums a same-size corruption passes (sizes only)
    _images.verify_manifest(str(d), checksums=False)


def test_verify_truncated_file(tmp_path):
    d = make_images(tmp_path / 'img')
    _images.create_manifest(str(d), 'dump', IDENTITY, '4.1.1')
    with open(d / 'pages-1.img', 'r+b') as f:
        f.truncate(4096)
    with pytest.raises(HaulError) as e:
        _images.verify_manifest(str(d), checksums=False)
    assert 'pages-1.img' in e.value.msg and 'has 4096 bytes, the manifest says 8192' in e.value.msg


def test_verify_missing_file(tmp_path):
    d = make_images(tmp_path / 'img')
    _images.create_manifest(str(d), 'dump', IDENTITY, '4.1.1')
    os.unlink(d / 'core-1.img')
    with pytest.raises(HaulError) as e:
        _images.verify_manifest(str(d))
    assert e.value.msg == 'verify: image file core-1.img is missing from %s' % d


def test_verify_unlisted_image(tmp_path):
    d = make_images(tmp_path / 'img')
    _images.create_manifest(str(d), 'dump', IDENTITY, '4.1.1')
    (d / 'pages-2.img').write_bytes(b'x')
    (d / '.pages-3.img.tmp123').write_bytes(b'x')  # rsync temp file: ignored
    with pytest.raises(HaulError) as e:
        _images.verify_manifest(str(d))
    assert 'pages-2.img' in e.value.msg and 'does not list' in e.value.msg


def test_verify_no_manifest_or_dir(tmp_path):
    d = tmp_path / 'empty'
    d.mkdir()
    with pytest.raises(HaulError) as e:
        _images.verify_manifest(str(d))
    assert 'has no manifest.json' in e.value.msg
    with pytest.raises(HaulError) as e:
        _images.verify_manifest(str(tmp_path / 'nope'))
    assert 'does not exist' in e.value.msg


@pytest.mark.parametrize('content,needle', [
    ('not json', 'not valid JSON'),
    ('[1]', 'not a JSON object'),
    ('{"format": 2, "kind": "dump"}', 'format 2'),
    ('{"format": 1, "kind": "dump"}', "lacks 'identity'"),
    ('{"format": 1, "kind": "weird", "identity": {}, "criu_version": "4.1", "files": {}}', 'malformed'),
])
def test_load_manifest_bad(tmp_path, content, needle):
    (tmp_path / 'manifest.json').write_text(content)
    with pytest.raises(HaulError) as e:
        _images.load_manifest(str(tmp_path))
    assert needle in e.value.msg


def test_verify_rejects_path_in_file_name(tmp_path):
    d = make_images(tmp_path / 'img')
    m = _images.build_manifest(str(d), 'dump', IDENTITY, '4.1.1')
    m['files']['../etc/passwd'] = {'size': 1, 'sha256': None}
    _images.write_manifest(str(d), m)
    with pytest.raises(HaulError) as e:
        _images.verify_manifest(str(d))
    assert 'invalid file name' in e.value.msg


def test_is_complete_dump(tmp_path):
    d = make_images(tmp_path / 'img')
    ok, why = _images.is_complete_dump(str(d), IDENTITY)
    assert not ok and 'manifest.json' in why
    _images.create_manifest(str(d), 'dump', IDENTITY, '4.1.1')
    ok, m = _images.is_complete_dump(str(d), IDENTITY)
    assert ok and m['identity']['name'] == 'ct1'
    other = dict(IDENTITY, name='ct2', cgroup='/haul/ct2')
    ok, why = _images.is_complete_dump(str(d), other)
    assert not ok and 'ct2' in why
    # a pid change does not matter by default (name + cgroup)
    assert _images.is_complete_dump(str(d), dict(IDENTITY, init_pid=99))[0]
    _images.create_manifest(str(d), 'predump', IDENTITY, '4.1.1')
    ok, why = _images.is_complete_dump(str(d), IDENTITY)
    assert not ok and 'predump' in why


def test_build_manifest_bad_kind(tmp_path):
    with pytest.raises(HaulError):
        _images.build_manifest(str(tmp_path), 'snapshot', IDENTITY, '4.1.1')


def test_check_restorable_newer_criu(tmp_path):
    d = make_images(tmp_path / 'img')
    m = _images.create_manifest(str(d), 'dump', IDENTITY, '4.2.1')
    with pytest.raises(HaulError) as e:
        _images.check_restorable(m, '4.1.1')
    assert e.value.msg == ('restore: images were dumped by CRIU 4.2.1, this host has CRIU 4.1.1 (older): '
                           'upgrade criu here')
    _images.check_restorable(m, '4.2.1')
    _images.check_restorable(m, '5.0')
    with pytest.raises(HaulError):
        _images.check_restorable(dict(m, criu_version='garbage'), '4.1.1')
    with pytest.raises(HaulError) as e:
        _images.check_restorable(dict(m, kind='predump'), '4.2.1')
    assert 'pre-dump' in e.value.msg


def test_identity_defaults():
    ident = _images.make_identity('x', cgroup='haul/x')
    assert ident['cgroup'] == '/haul/x'
    assert ident['host']
    assert set(ident) == set(_images.IDENTITY_KEYS)


# --------------------------------------------------------------------------- stats

def test_decode_stats_dump():
    data = stats_image('dump', [(1, 424), (2, 150457), (3, 114143), (4, 111329), (5, 16405), (6, 0), (7, 16398),
                                (9, 0)])
    s = _images.decode_stats(data)['dump']
    assert s == {'freezing_time': 424, 'frozen_time': 150457, 'memdump_time': 114143, 'memwrite_time': 111329,
                 'pages_scanned': 16405, 'pages_skipped_parent': 0, 'pages_written': 16398, 'pages_lazy': 0}


def test_decode_stats_restore_common_magic():
    entry = message([(2, message([(3, 1), (4, 90195), (5, 16398)]))])
    data = struct.pack('<III', 0x54564319, 0x57093306, len(entry)) + entry
    assert _images.decode_stats(data) == {'restore': {'forking_time': 1, 'restore_time': 90195,
                                                      'pages_restored': 16398}}


def test_decode_stats_bad():
    with pytest.raises(ValueError):
        _images.decode_stats(b'\x00' * 4)
    with pytest.raises(ValueError):
        _images.decode_stats(struct.pack('<III', 0x55105940, 0x12345678, 0))


def test_read_stats_and_summary(tmp_path):
    d = make_images(tmp_path / 'img')
    s = _images.read_stats(str(d), 'dump')
    assert s == {'freezing_time': 400, 'frozen_time': 150000, 'pages_written': 16398}
    assert _images.read_stats(str(d), 'restore') == {}
    summary = _images.summarize_stats(s)
    assert summary['frozen_ms'] == 150.0
    assert summary['freezing_ms'] == 0.4
    assert summary['bytes_written'] == 16398 * 4096


def test_decode_real_stats():
    # the same values as pycriu.images.load() gives for this image
    s = _images.decode_stats(base64.b64decode(REAL_STATS_DUMP))['dump']
    assert s == {'freezing_time': 414, 'frozen_time': 94029, 'irmap_resolve': 0, 'memdump_time': 50994,
                 'memwrite_time': 44622, 'page_pipe_bufs': 8, 'page_pipes': 8, 'pages_lazy': 0,
                 'pages_scanned': 16406, 'pages_skipped_parent': 0, 'pages_written': 16399,
                 'shpages_scanned': 0, 'shpages_skipped_parent': 0, 'shpages_written': 0}
