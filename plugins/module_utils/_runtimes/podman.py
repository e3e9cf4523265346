# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The ``podman`` runtime: containers that Podman runs as root (private module_util).

Discovery asks Podman (``podman ps --all --format json``), never the cgroup tree: the name,
the id and the state are Podman's, and Podman's database stays the truth on both hosts. The
processes, memory, sockets and network of a running container are then read from its init
process, as for a lab container (:func:`_discovery.describe_pid`).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.haul.live.plugins.module_utils import _discovery
from ansible_collections.haul.live.plugins.module_utils._runtimes.base import Runtime, no_lazy_pages, run_json, which

# Podman's states whose processes exist (a paused container is frozen by Podman).
LIVE_STATES = ('running', 'paused')


def parse_ps(rows):
    """``podman ps --all --format json`` -> [{name, id, podman_state, pid, image}], sorted by
    name; a container with no name keeps its short id as its name."""
    out = []
    for row in rows or []:
        names = row.get('Names') or []
        cid = row.get('Id') or row.get('ID') or ''
        out.append({
            'name': names[0] if names else cid[:12],
            'id': cid,
            'podman_state': (row.get('State') or '').lower(),
            'pid': row.get('Pid') or 0,
            'image': row.get('Image'),
        })
    return sorted(out, key=lambda r: r['name'])


class PodmanRuntime(Runtime):
    kind = 'podman'
    tool = 'podman'
    strategies = ('stopcopy', 'precopy')
    why_not = no_lazy_pages('Podman')

    def list(self):
        """Podman's own list of its containers on this host, parsed (:func:`parse_ps`)."""
        return parse_ps(run_json([which(self.tool, self.path) or self.tool, 'ps', '--all', '--format', 'json'],
                                 'discover'))

    def find(self, names=None, with_pids=False, **kwargs):
        out = []
        for row in self.list():
            if names and row['name'] not in names:
                continue
            if row['podman_state'] not in LIVE_STATES or not row['pid']:
                continue
            entry = _discovery.describe_pid(row['name'], row['pid'], with_pids=with_pids)
            if entry is None:  # it ended between the listing and now
                continue
            entry.update(runtime=self.kind, id=row['id'], image=row['image'], runtime_state=row['podman_state'])
            out.append(entry)
        return out
