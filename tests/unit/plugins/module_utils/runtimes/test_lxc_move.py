# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""An LXC container's move (:mod:`_runtimes.lxc`): the MACs and cgroups read from its config, and the CRIU
options of LXC's own dump that haul.live's dump adds. The lab runs the real LXC:
tests/integration/targets/runtime_lxc."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.haul.live.plugins.module_utils import _checkpoint
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
