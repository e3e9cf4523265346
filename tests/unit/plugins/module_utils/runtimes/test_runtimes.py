# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The runtime seam (:mod:`_runtimes`): each runtime's listing parsed, its refusals, and
``auto`` keeping one entry per container. The runtimes' commands are small scripts on a PATH of
the test's own (the lab runs the real Podman and LXC: tests/integration/targets/runtime_*)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest

from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.module_utils import _discovery
from ansible_collections.haul.live.plugins.module_utils._runtimes import base
from ansible_collections.haul.live.plugins.module_utils._runtimes import lab
from ansible_collections.haul.live.plugins.module_utils._runtimes import lxc
from ansible_collections.haul.live.plugins.module_utils._runtimes import podman
from ansible_collections.haul.live.plugins.module_utils._runtimes import registry

PS = [
    {'Id': 'b' * 64, 'Names': ['web'], 'State': 'running', 'Pid': 4242, 'Image': 'localhost/haul-lab:latest'},
    {'Id': 'a' * 64, 'Names': ['old'], 'State': 'exited', 'Pid': 0, 'Image': 'localhost/haul-lab:latest'},
    {'Id': 'c' * 64, 'Names': [], 'State': 'Paused', 'Pid': 4343, 'Image': None},
]


def tool(tmp_path, name, body):
    """A command ``name`` on the test's PATH: a shell script with ``body``."""
    path = tmp_path / name
    path.write_text('#!/bin/sh\n' + body + '\n')
    os.chmod(str(path), 0o755)
    return str(tmp_path)


def fake_describe(monkeypatch, gone=()):
    def describe_pid(name, pid, with_pids=False):
        if pid in gone:
            return None
        entry = {'name': name, 'init_pid': pid, 'state': 'running', 'memory_bytes': 1}
        if with_pids:
            entry['pids'] = [pid]
        return entry
    monkeypatch.setattr(_discovery, 'describe_pid', describe_pid)


def test_parse_ps_names_states_and_ids():
    rows = podman.parse_ps(PS)
    assert [r['name'] for r in rows] == ['c' * 12, 'old', 'web']
    assert rows[0]['podman_state'] == 'paused'
    assert rows[2] == {'name': 'web', 'id': 'b' * 64, 'podman_state': 'running', 'pid': 4242,
                       'image': 'localhost/haul-lab:latest'}
    assert podman.parse_ps(None) == []


def test_parse_lxc_info():
    assert lxc.parse_info('State:          RUNNING\nPID:            977\n') == {'state': 'running', 'pid': 977}
    assert lxc.parse_info('State:          STOPPED\n') == {'state': 'stopped', 'pid': 0}
    assert lxc.parse_info('garbage') == {'state': '', 'pid': 0}


def test_podman_find_keeps_live_containers(tmp_path, monkeypatch):
    fake_describe(monkeypatch, gone=(4343,))
    path = tool(tmp_path, 'podman', "echo '%s'" % json.dumps(PS))
    found = podman.PodmanRuntime(path=path).find()
    assert [(c['name'], c['runtime'], c['id'], c['runtime_state']) for c in found] == [
        ('web', 'podman', 'b' * 64, 'running')]
    assert podman.PodmanRuntime(path=path).find(names=['nope']) == []


def test_podman_failure_names_the_command(tmp_path):
    path = tool(tmp_path, 'podman', 'echo "cannot open the database" >&2; exit 125')
    with pytest.raises(HaulError) as e:
        podman.PodmanRuntime(path=path).list()
    assert e.value.step == 'discover'
    assert 'podman ps --all failed (exit status 125): cannot open the database' in e.value.cause


def test_podman_not_json(tmp_path):
    path = tool(tmp_path, 'podman', 'echo not-json')
    with pytest.raises(HaulError, match='did not print JSON'):
        podman.PodmanRuntime(path=path).list()


def test_lxc_find(tmp_path, monkeypatch):
    fake_describe(monkeypatch)
    tool(tmp_path, 'lxc-ls', 'printf "db\\nstopped1\\n"')
    path = tool(tmp_path, 'lxc-info', 'case "$2" in db) printf "State: RUNNING\\nPID: 77\\n";; '
                                      '*) printf "State: STOPPED\\n";; esac')
    found = lxc.LxcRuntime(path=path).find(with_pids=True)
    assert [(c['name'], c['runtime'], c['init_pid'], c['pids']) for c in found] == [('db', 'lxc', 77, [77])]


def test_available(tmp_path):
    path = tool(tmp_path, 'podman', 'true')
    assert podman.PodmanRuntime(path=path).available()
    assert lab.LabRuntime(path=path).available()


@pytest.mark.parametrize('kind,strategy,refused', [
    ('lab', 'postcopy', None),
    ('lab', 'auto', None),
    ('podman', 'stopcopy', None),
    ('podman', 'postcopy', 'podman does not support postcopy: Podman has no lazy-pages restore'),
    ('lxc', 'hybrid', 'lxc does not support hybrid: LXC has no lazy-pages restore'),
])
def test_refusal(kind, strategy, refused):
    msg = registry.runtime(kind).refusal(strategy)
    if refused is None:
        assert msg is None
    else:
        assert msg.startswith(refused)
        assert msg.endswith('use stopcopy or precopy')


def test_unknown_runtime():
    with pytest.raises(HaulError, match="unknown runtime 'docker': use one of auto, lab, lxc, podman"):
        registry.runtime('docker')


class _Fake(base.Runtime):
    rows = []
    fails = None

    def available(self):
        return self.rows is not None

    def find(self, names=None, **kwargs):
        if self.fails:
            raise HaulError('discover', self.fails)
        return [dict(r, runtime=self.kind) for r in self.rows if not names or r['name'] in names]


def fakes(monkeypatch, **rows):
    classes = {}
    for kind in ('lab', 'podman', 'lxc'):
        spec = rows.get(kind)
        classes[kind] = type('Fake' + kind, (_Fake,), {
            'kind': kind, 'rows': spec if not isinstance(spec, str) else [], 'fails': spec if isinstance(spec, str) else None})
    monkeypatch.setattr(registry, 'RUNTIMES', classes)


def test_auto_one_entry_per_container(monkeypatch):
    # the same init pid claimed by Podman and by the lab's cgroup convention belongs to Podman
    fakes(monkeypatch, lab=[{'name': 'web', 'init_pid': 5}, {'name': 'a', 'init_pid': 9}],
          podman=[{'name': 'web', 'init_pid': 5}], lxc=None)
    found, status = registry.find_all()
    assert [(c['name'], c['runtime']) for c in found] == [('a', 'lab'), ('web', 'podman')]
    assert status == {'podman': 'found 1', 'lxc': 'not installed', 'lab': 'found 1'}


def test_auto_same_name_in_two_runtimes_is_ambiguous(monkeypatch):
    fakes(monkeypatch, lab=[{'name': 'web', 'init_pid': 5}], lxc=[{'name': 'web', 'init_pid': 6}], podman=None)
    # both are reported, one per runtime: the migrate role refuses such a name (roles/migrate/tasks/runtime.yml)
    found, dummy = registry.find_all()
    assert sorted(c['runtime'] for c in found if c['name'] == 'web') == ['lab', 'lxc']
    assert [c for c in found if c['name'] == 'other'] == []


def test_auto_survives_a_broken_runtime_but_a_named_one_fails(monkeypatch):
    fakes(monkeypatch, lab=[{'name': 'a', 'init_pid': 9}], podman='podman ps failed', lxc=None)
    found, status = registry.find_all()
    assert [c['name'] for c in found] == ['a']
    assert status['podman'] == 'discover: podman ps failed'
    with pytest.raises(HaulError, match='podman ps failed'):
        registry.find_all('podman')
