# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The ``lab`` runtime: haul.live's own containers (private module_util).

A lab container is a child cgroup of the parent cgroup (default ``haul``) whose processes
include the init of a pid namespace; its name is the child cgroup's name, its root
``/var/lib/haul/containers/NAME/rootfs`` (:mod:`_discovery`). haul.live migrates it with its
own pipeline: freeze, dump, copy, restore stopped, resume on COMMIT (docs/design.md).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.haul.live.plugins.module_utils import _cgroup
from ansible_collections.haul.live.plugins.module_utils import _discovery
from ansible_collections.haul.live.plugins.module_utils._runtimes.base import Runtime


class LabRuntime(Runtime):
    kind = 'lab'
    tool = None
    strategies = ('stopcopy', 'precopy', 'postcopy', 'hybrid')

    def find(self, names=None, parent=_cgroup.DEFAULT_PARENT, with_pids=False, **kwargs):
        found = _discovery.list_containers(parent, names, with_pids=with_pids)
        for c in found:
            c['runtime'] = self.kind
            c['id'] = c['name']
        return found
