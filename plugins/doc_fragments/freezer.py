# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """The options that name a cgroup and its freezer (cgroup_freeze, cgroup_thaw);
    their argument spec is ``_cgroup.freezer_argspec()``."""

    DOCUMENTATION = r'''
options:
  cgroup:
    description:
      - The container's cgroup.
      - Either a path relative to the root of the hierarchy, such as V(haul/ct1) or V(/haul/ct1)
        (the form of C(/proc/PID/cgroup)), or an absolute path below a cgroup mount point, such
        as V(/sys/fs/cgroup/unified/haul/ct1). An absolute path selects its hierarchy.
      - Exactly one of O(cgroup) and O(pid) is required.
    type: str
  pid:
    description:
      - A process of the container, in the pid namespace of the host the module runs on.
      - Its cgroup is read from C(/proc/PID/cgroup) (the C(0::) line for cgroup v2, the
        C(freezer) line for cgroup v1).
    type: int
  version:
    description:
      - Which freezer to use.
      - V(auto) uses cgroup v2 when it has a freezer (Linux 5.2+) and the cgroup exists there,
        else the v1 freezer. On a hybrid host, when the container also sits in the same cgroup
        of the other hierarchy, that one counts too - a freeze through either one counts as
        frozen, and a thaw thaws both, so that the processes really run again.
    type: str
    choices: [auto, v1, v2]
    default: auto
  timeout:
    description:
      - Seconds to wait for the cgroup to reach the state asked for.
    type: float
    default: 10
'''
