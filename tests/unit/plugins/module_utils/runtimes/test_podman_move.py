# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""A Podman container's move (:mod:`_runtimes.podman`, :mod:`_netlock`): what is read from
Podman, what the destination must hold, the nftables
scripts, and which steps a migration of each runtime takes. The lab runs the real Podman:
tests/integration/targets/runtime_podman."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.module_utils import _netlock
from ansible_collections.haul.live.plugins.module_utils._migration import rollback
from ansible_collections.haul.live.plugins.module_utils._runtimes import podman
from ansible_collections.haul.live.plugins.module_utils._runtimes import registry

INSPECT = {
    'Id': 'f' * 64, 'Name': 'pm1', 'ImageName': 'localhost/haul-lab/workload:latest', 'Image': 'e' * 64,
    'OCIRuntime': 'runc',
    'State': {'Status': 'running', 'Pid': 777, 'Checkpointed': False},
    'NetworkSettings': {'Networks': {'haul-lab-198.18.0.0-24': {
        'IPAddress': '198.18.0.131', 'MacAddress': '02:48:C6:12:00:83'}}},
    'Mounts': [{'Type': 'bind', 'Source': '/srv/data', 'Destination': '/data'},
               {'Type': 'volume', 'Name': 'cache', 'Source': '/var/lib/containers/storage/volumes/cache/_data'}],
    'HostConfig': {'PortBindings': {'80/tcp': [{'HostPort': '8080'}], '443/tcp': None}},
}


def test_parse_inspect():
    got = podman.parse_inspect(INSPECT)
    assert got['image_id'] == 'e' * 64 and got['image'].startswith('localhost/')
    assert got['networks'] == {'haul-lab-198.18.0.0-24': {'ip': '198.18.0.131', 'mac': '02:48:c6:12:00:83'}}
    assert got['binds'] == ['/srv/data'] and got['volumes'] == ['cache']
    assert got['ports'] == ['80/tcp']
    assert (got['state'], got['pid'], got['checkpointed'], got['oci_runtime']) == ('running', 777, False, 'runc')
    assert podman.parse_inspect(None)['networks'] == {}


def test_parse_stats_checkpoint_and_restore():
    out = json.dumps({'podman_checkpoint_duration': 1469000, 'container_statistics': [{
        'Id': 'f' * 64, 'runtime_checkpoint_duration': 459000,
        'criu_statistics': {'freezing_time': 1200, 'frozen_time': 274000, 'memdump_time': 9000, 'pages_written': 8192}}]})
    got = podman.parse_stats('some line first\n' + out)
    assert got == {'podman_ms': 1469, 'runtime_ms': 459, 'freezing_time_us': 1200, 'frozen_time_us': 274000,
                   'memdump_time_us': 9000, 'pages_written': 8192}
    got = podman.parse_stats(json.dumps({'podman_restore_duration': 1272000, 'container_statistics': [{
        'runtime_restore_duration': 434000, 'criu_statistics': {'restore_time': 295000, 'pages_restored': 8192}}]}))
    assert got['podman_ms'] == 1272 and got['runtime_ms'] == 434 and got['pages_restored'] == 8192
    assert podman.parse_stats('') == {} and podman.parse_stats('{not json') == {}


def test_destination_problems():
    source = podman.parse_inspect(INSPECT)

    def yes(_what):
        return True

    def no(_what):
        return False

    assert podman.destination_problems(dict(source, binds=[]), None, yes, yes) == []
    problems = podman.destination_problems(source, {'state': 'exited'}, no, no)
    text = ' | '.join(problems)
    assert 'exists here already (exited)' in text
    assert 'image localhost/haul-lab/workload:latest (id eeeeeeeeeeee)' in text
    assert 'network haul-lab-198.18.0.0-24' in text
    assert 'bind mount source /srv/data' in text
    # networks that are not Podman networks are not asked for
    assert podman.destination_problems(dict(source, networks={'pasta': {}}, binds=[]), None, yes, no) == []


def test_argv():
    rt = podman.PodmanRuntime(path='/nonexistent')
    assert rt.checkpoint_argv('pm1', '/i/podman-export.tar', True) == [
        'podman', 'container', 'checkpoint', '--export=/i/podman-export.tar', '--compress=none', '--keep',
        '--print-stats', '--tcp-established', 'pm1']
    assert rt.restore_argv(export='/i/x.tar') == ['podman', 'container', 'restore', '--print-stats', '--import=/i/x.tar']
    assert rt.restore_argv(name='pm1', tcp_established=True) == [
        'podman', 'container', 'restore', '--print-stats', '--tcp-established', 'pm1']


def test_resume_source(monkeypatch):
    rt = podman.PodmanRuntime()
    calls = []
    monkeypatch.setattr(podman, 'run', lambda argv, step, timeout=0: calls.append(argv) or '')
    monkeypatch.setattr(podman._netlock, 'unlock_namespace', lambda pid, step='unlock': calls.append(('unlock', pid)))
    states = {'info': dict(podman.parse_inspect(INSPECT), state='exited', checkpointed=True, pid=0)}
    monkeypatch.setattr(rt, 'inspect', lambda name, step='discover': states['info'])
    assert rt.resume_source({'name': 'pm1', 'tcp_established': True}) == 'running'
    assert calls[-1][-3:] == ['--print-stats', '--tcp-established', 'pm1']
    states['info'] = podman.parse_inspect(INSPECT)           # the checkpoint failed: it still runs
    assert rt.resume_source({'name': 'pm1'}) == 'running'
    assert calls[-1] == ('unlock', 777)
    states['info'] = dict(podman.parse_inspect(INSPECT), state='exited', checkpointed=False)
    assert 'no checkpoint' in rt.resume_source({'name': 'pm1'})
    states['info'] = None
    assert rt.resume_source({'name': 'pm1'}).startswith('unknown: Podman has no container pm1')


def test_own_steps():
    assert registry.own_steps({}) is None
    assert registry.own_steps({'runtime': 'lab'}) is None
    assert isinstance(registry.own_steps({'runtime': 'podman'}), podman.PodmanRuntime)
    assert registry.own_steps({'runtime': 'lxc'}).own_source is False
    with pytest.raises(HaulError) as e:
        registry.own_steps({'runtime': 'docker'})
    assert 'does not migrate docker containers' in e.value.cause


def test_rollback_resumes_through_the_runtime(monkeypatch):
    seen = []

    class Own(object):
        own_source = True

        def resume_source(self, params, dumped):
            seen.append(('resume', params['name']))
            return 'running'

        def remove_source(self, params):
            seen.append(('remove', params['name']))
            return {'killed': True}

    class Strategy(object):
        def abandon(self, _src):
            pass

        def scratch_dirs(self, _images, _dir):
            return []

    class Images(object):
        removed = []

        def remove(self, path):
            self.removed.append(path)

    monkeypatch.setattr(rollback.registry, 'own_steps', lambda params: Own())
    params = {'name': 'pm1', 'runtime': 'podman', 'images_dir': '/i/pm1'}
    assert rollback.thaw_source(params, None, None) == 'running'
    done = rollback.finalize_source(params, {}, Strategy(), None, Images())
    assert done['killed'] and done['images_removed'] and '/i/pm1' in Images.removed
    assert seen == [('resume', 'pm1'), ('remove', 'pm1')]


def test_lock_script():
    script = _netlock.lock_script()
    assert script.startswith('add table inet haul-live-lock\ndelete table inet haul-live-lock\n')
    assert 'hook input priority -310' in script and 'hook output priority -310' in script
    assert 'iifname "lo" accept' in script and 'oifname "lo" accept' in script


def test_hold_script_and_input():
    script = _netlock.hold_script('pm.1', ['02:48:c6:12:00:83'])
    assert 'table bridge haul-live-hold-pm_1 {' in script
    assert script.count('ether saddr 02:48:c6:12:00:83 drop') == 3
    with pytest.raises(HaulError):
        _netlock.hold_addresses('pm1', ['02:48:c6:12:00'])
    assert _netlock.hold_addresses('pm1', []) == []


def _local(monkeypatch, states, fail_by_name=False):
    """A PodmanRuntime whose Podman answers from ``states`` (a list of inspect answers, one per call)."""
    rt = podman.PodmanRuntime()
    calls = []

    def fake_run(argv, step, timeout=0):
        calls.append(argv)
        if fail_by_name and argv[-1] == 'pm1' and 'restore' in argv:
            raise HaulError(step, 'exit status 125: no checkpoint found')
        return '{}'
    monkeypatch.setattr(podman, 'run', fake_run)
    monkeypatch.setattr(rt, 'inspect', lambda name, step='discover': states.pop(0))
    monkeypatch.setattr(rt, 'remove', lambda name, step='remove': calls.append(['rm', name]) or True)
    return rt, calls


def test_restore_local_from_podmans_kept_checkpoint_after_a_reboot(monkeypatch, tmp_path):
    # after a reboot Podman says "not checkpointed", and restores it by name all the same
    exited = dict(podman.parse_inspect(INSPECT), state='exited', checkpointed=False, pid=0)
    rt, calls = _local(monkeypatch, [exited, podman.parse_inspect(INSPECT)])
    res = rt.restore_local({'name': 'pm1', 'images_dir': str(tmp_path), 'tcp_established': True})
    assert res['changed'] and res['pid'] == 777
    assert calls == [['podman', 'container', 'restore', '--print-stats', '--tcp-established', 'pm1']]


def test_restore_local_falls_back_to_the_export(monkeypatch, tmp_path):
    (tmp_path / podman.EXPORT).write_text('tar')
    exited = dict(podman.parse_inspect(INSPECT), state='exited', pid=0)
    rt, calls = _local(monkeypatch, [exited, podman.parse_inspect(INSPECT)], fail_by_name=True)
    res = rt.restore_local({'name': 'pm1', 'images_dir': str(tmp_path)})
    assert res['changed']
    assert calls[1] == ['rm', 'pm1']
    assert calls[2][-1] == '--import=%s' % (tmp_path / podman.EXPORT)


def test_restore_local_is_idempotent_and_says_what_is_missing(monkeypatch, tmp_path):
    rt, calls = _local(monkeypatch, [podman.parse_inspect(INSPECT)])
    assert rt.restore_local({'name': 'pm1', 'images_dir': str(tmp_path)})['changed'] is False
    assert calls == []
    rt, calls = _local(monkeypatch, [None])
    with pytest.raises(HaulError, match='no checkpoint of pm1 to restore: Podman has no such container, and no export'):
        rt.restore_local({'name': 'pm1', 'images_dir': str(tmp_path)})


def test_checkpoint_local(monkeypatch, tmp_path):
    rt, _calls = _local(monkeypatch, [podman.parse_inspect(INSPECT)])
    monkeypatch.setattr(rt, 'dump', lambda params: {'bytes': 1234, 'stats': {}})
    res = rt.checkpoint_local({'name': 'pm1', 'images_dir': str(tmp_path)})
    assert res['changed'] and res['bytes'] == 1234 and res['runtime'] == 'podman'
    # stopped, with its export there: checkpointed already
    (tmp_path / podman.EXPORT).write_text('tar')
    rt, _calls = _local(monkeypatch, [dict(podman.parse_inspect(INSPECT), state='exited', pid=0)])
    res = rt.checkpoint_local({'name': 'pm1', 'images_dir': str(tmp_path)})
    assert res['changed'] is False and res['bytes'] == 3
    rt, _calls = _local(monkeypatch, [None])
    with pytest.raises(HaulError, match='Podman has no container pm1 here'):
        rt.checkpoint_local({'name': 'pm1', 'images_dir': str(tmp_path)})
