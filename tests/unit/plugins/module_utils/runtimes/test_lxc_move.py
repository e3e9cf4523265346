# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""An LXC container's move (:mod:`_runtimes.lxc`): the MACs and cgroups read from its config, and the CRIU
options of LXC's own dump that haul.live's dump adds. The lab runs the real LXC:
tests/integration/targets/runtime_lxc."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.haul.live.plugins.module_utils import _checkpoint
from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.module_utils._criu_options import CriuOptions
from ansible_collections.haul.live.plugins.module_utils._runtimes import lxc

CONFIG = '''lxc.uts.name = lx1
lxc.net.0.type = veth
lxc.net.0.link = br0
lxc.net.0.hwaddr = 02:48:C6:12:00:8D
lxc.net.1.hwaddr=02:48:c6:12:00:8e
# lxc.net.2.hwaddr = commented out
'''


class Repeated(list):
    def add(self):
        item = Msg()
        self.append(item)
        return item


class Msg(object):
    ctrl = None
    path = None


class Opts(object):
    def __init__(self):
        self.external, self.enable_fs, self.cg_root = [], [], Repeated()


class Rpc(object):
    NFTABLES, FULL = 'nft', 'full'


class Cg(object):
    version, path, twins = 'v2', '/sys/fs/cgroup/haul-lxc/lx1', []


def test_config_macs():
    assert lxc.config_macs(CONFIG) == ['02:48:c6:12:00:8d', '02:48:c6:12:00:8e']
    assert lxc.config_macs('') == []


def test_config_cgroup_dirs():
    text = ('lxc.cgroup.dir.container = haul-lxc/lx1\n'
            'lxc.cgroup.dir.monitor=/haul-lxc.monitor/lx1/\n'
            'lxc.cgroup.dir.container.inner = haul-lxc/lx1\n'   # a repeat
            'lxc.cgroup.dir.monitor.pivot = lxc.pivot\n'        # shared by every container: never
            'lxc.cgroup.dir = ../../escape\n'                  # outside the cgroup root: never
            'lxc.cgroup2.memory.max = 1\n')
    assert lxc.config_cgroup_dirs(text) == ['haul-lxc/lx1', 'haul-lxc.monitor/lx1']
    assert lxc.config_cgroup_dirs(CONFIG) == []


def test_lxc_dump_options_reach_criu():
    kwargs = _checkpoint.checkpoint_kwargs(
        {'manage_cgroups_mode': 'full', 'criu_extra': dict(lxc.DUMP_OPTIONS, cg_root=[('', '/haul-lxc/lx1')])},
        4242, '/var/lib/lxc/lx1/rootfs', Cg())
    opts = CriuOptions(**kwargs).apply(Opts(), Rpc())
    assert opts.auto_ext_mnt and opts.ext_sharing and opts.ext_masters and opts.force_irmap
    assert opts.file_locks and opts.link_remap and opts.tcp_skip_in_flight
    assert opts.enable_fs == ['hugetlbfs', 'tracefs']
    assert opts.manage_cgroups_mode == 'full'
    # "" is cgroup2's controller (":/PATH" on the command line), not "every controller"
    assert [(c.ctrl, c.path) for c in opts.cg_root] == [('', '/haul-lxc/lx1')]


def test_lxc_moves_through_haul_lives_own_source():
    assert lxc.LxcRuntime().own_source is False


def _lxc(monkeypatch, state, pid=0):
    rt = lxc.LxcRuntime()
    calls = []
    monkeypatch.setattr(rt, 'names', lambda: ['lx1'])
    monkeypatch.setattr(rt, 'info', lambda name: {'state': state, 'pid': pid})
    monkeypatch.setattr(lxc, 'run', lambda argv, step, timeout=0: calls.append(argv) or '')
    monkeypatch.setattr(rt, 'dump', lambda params: calls.append(('dump', params['pid'], params['hold'], params['cgroup']))
                        or {'bytes': 99})
    return rt, calls


def test_checkpoint_local_dumps_held_frozen_then_stops_it(monkeypatch, tmp_path):
    rt, calls = _lxc(monkeypatch, 'running', 4242)
    res = rt.checkpoint_local({'name': 'lx1', 'images_dir': str(tmp_path), 'cgroup': None})
    assert res['changed'] and res['bytes'] == 99
    # the images are on disk before anything stops
    assert calls[0] == ('dump', 4242, 'frozen', None)
    assert calls[1][0].endswith('lxc-stop') and calls[1][1:] == ['-k', '-n', 'lx1'] and len(calls) == 2


def test_checkpoint_local_of_a_stopped_container(monkeypatch, tmp_path):
    rt, calls = _lxc(monkeypatch, 'stopped')
    with pytest.raises(HaulError, match='is stopped, with no checkpoint'):
        rt.checkpoint_local({'name': 'lx1', 'images_dir': str(tmp_path)})
    (tmp_path / 'inventory.img').write_bytes(b'12345')
    res = rt.checkpoint_local({'name': 'lx1', 'images_dir': str(tmp_path)})
    assert res['changed'] is False and res['bytes'] == 5 and calls == []


def test_restore_local_is_idempotent_and_needs_the_images(monkeypatch, tmp_path):
    rt, _calls = _lxc(monkeypatch, 'running', 4242)
    assert rt.restore_local({'name': 'lx1', 'images_dir': str(tmp_path)})['changed'] is False
    rt, _calls = _lxc(monkeypatch, 'stopped')
    with pytest.raises(HaulError, match='no checkpoint of lx1 in'):
        rt.restore_local({'name': 'lx1', 'images_dir': str(tmp_path)})
