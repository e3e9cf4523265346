# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The ``lxc`` runtime: LXC containers (private module_util).

Discovery asks LXC (``lxc-ls`` for the names, ``lxc-info`` for each one's state and init
pid), never the cgroup tree; the processes, memory, sockets and network of a running container
are then read from its init process, as for a lab container (:func:`_discovery.describe_pid`).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.haul.live.plugins.module_utils import _discovery
from ansible_collections.haul.live.plugins.module_utils._runtimes.base import Runtime, no_lazy_pages, run, which

# LXC's states whose processes exist (a frozen container is frozen by LXC).
LIVE_STATES = ('running', 'frozen', 'freezing', 'thawed')


def parse_info(text):
    """``lxc-info -n NAME -s -p`` -> {'state': 'running', 'pid': 1234} (pid 0 when it has none)."""
    out = {'state': '', 'pid': 0}
    for line in text.splitlines():
        key, sep, value = line.partition(':')
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == 'state':
            out['state'] = value.lower()
        elif key == 'pid' and value.isdigit():
            out['pid'] = int(value)
    return out


class LxcRuntime(Runtime):
    kind = 'lxc'
    tool = 'lxc-ls'
    strategies = ('stopcopy', 'precopy')
    why_not = no_lazy_pages('LXC')

    def _cmd(self, tool):
        return which(tool, self.path) or tool

    def names(self):
        """The names of LXC's containers on this host (``lxc-ls -1``), sorted."""
        return sorted(n for n in run([self._cmd('lxc-ls'), '-1'], 'discover').split() if n)

    def info(self, name):
        return parse_info(run([self._cmd('lxc-info'), '-n', name, '-s', '-p'], 'discover'))

    def find(self, names=None, with_pids=False, **kwargs):
        out = []
        for name in self.names():
            if names and name not in names:
                continue
            info = self.info(name)
            if info['state'] not in LIVE_STATES or not info['pid']:
                continue
            entry = _discovery.describe_pid(name, info['pid'], with_pids=with_pids)
            if entry is None:
                continue
            entry.update(runtime=self.kind, id=name, runtime_state=info['state'])
            out.append(entry)
        return out
