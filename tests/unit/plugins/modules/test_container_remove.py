# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for container_remove's images directories: only those haul.live marked go."""

from __future__ import annotations

import pytest

from ansible_collections.haul.live.plugins.modules import container_remove
from ansible_collections.haul.live.plugins.module_utils import _images


class Done(Exception):
    pass


def run(monkeypatch, check=False, **params):
    args = dict(cgroup=None, images_dirs=[], migration_id=None, running=False, timeout=10)
    args.update(params)

    class FakeModule(object):
        def __init__(self, **_kw):
            self.params = args
            self.check_mode = check

        def exit_json(self, **kw):
            raise Done(dict(kw, failed=False))

        def fail_json(self, **kw):
            raise Done(dict(kw, failed=True))

    monkeypatch.setattr(container_remove, 'AnsibleModule', FakeModule)
    with pytest.raises(Done) as e:
        container_remove.main()
    return e.value.args[0]


def test_only_marked_dirs_go(tmp_path, monkeypatch):
    ours = tmp_path / 'web1'
    _images.ensure_dir(str(ours), migration_id='m1')
    (ours / 'pages-1.img').write_bytes(b'secret')
    foreign = tmp_path / 'web1.precopy'
    foreign.mkdir()
    (foreign / 'notes.txt').write_text('mine')
    other = tmp_path / 'web1.handoff'
    _images.ensure_dir(str(other), migration_id='m0')
    res = run(monkeypatch, images_dirs=[str(ours), str(foreign), str(other), str(tmp_path / 'web1.postcopy')],
              migration_id='m1')
    assert not res['failed'] and res['changed']
    assert res['removed'] == [str(ours)]
    assert [k['path'] for k in res['kept']] == [str(foreign), str(other)]
    assert 'no haul.live marker' in res['kept'][0]['why'] and 'migration m0' in res['kept'][1]['why']
    assert not ours.exists() and (foreign / 'notes.txt').exists() and other.exists()
    res = run(monkeypatch, images_dirs=[str(other)])  # without a migration id: any haul.live directory
    assert res['removed'] == [str(other)] and not other.exists()


def test_check_mode_removes_nothing(tmp_path, monkeypatch):
    ours = tmp_path / 'web1'
    _images.ensure_dir(str(ours), migration_id='m1')
    res = run(monkeypatch, check=True, images_dirs=[str(ours)])
    assert res['changed'] and res['removed'] == [str(ours)] and ours.exists()
    res = run(monkeypatch, images_dirs=[str(tmp_path / 'absent')])
    assert not res['changed'] and res['removed'] == [] and res['kept'] == []
