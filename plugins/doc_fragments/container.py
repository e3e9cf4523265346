# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """The options that name a container and tell CRIU how to checkpoint it.

    Shared by the modules that dump a container (criu_dump, criu_predump, handoff); their
    argument spec is ``_container.container_argspec()``.
    """

    DOCUMENTATION = r'''
options:
  cgroup:
    description:
      - The container's cgroup, relative to the root of the cgroup hierarchy (V(haul/web1)) or as an
        absolute path below a cgroup mount point (V(/sys/fs/cgroup/unified/haul/web1)).
      - The container's init is the process of this cgroup whose C(NSpid) has more than one entry and
        ends with 1 (the init of a pid namespace).
    type: str
  pid:
    description:
      - Host pid of the container's pid-namespace init.
      - A pid inside a container that is not its init is refused, and the error names the init.
    type: int
  name:
    description:
      - Name of the container, recorded in the manifest as its identity.
      - Defaults to the last component of the cgroup path.
    type: str
  root:
    description:
      - The container's root directory on this host.
      - Default, the first of these that is the very directory the init has as its root (same device
        and inode as C(/proc/PID/root)) - C(/var/lib/haul/containers/NAME/rootfs) (the convention of
        the lab's C(ct-run)), then the root of the C(/) mount in C(/proc/PID/mountinfo).
    type: path
  external:
    description:
      - CRIU C(--external) specs, for resources that come from outside the container.
      - The default V(mnt[]:m) has CRIU find the external bind mounts itself.
    type: list
    elements: str
    default: ['mnt[]:m']
  network_lock:
    description:
      - How CRIU locks the container's network while it is dumped.
      - V(iptables) needs the iptables binaries; V(skip) does not lock (only for containers without network).
    type: str
    choices: [nftables, iptables, skip]
    default: nftables
  tcp_established:
    description: Checkpoint established TCP connections (CRIU TCP repair).
    type: bool
    default: false
  manage_cgroups_mode:
    description: CRIU's cgroup mode. The cgroups are always dumped.
    type: str
    choices: [soft, full, strict, ignore]
    default: soft
  freeze_timeout:
    description: Seconds CRIU and the module wait for the cgroup to freeze.
    type: int
    default: 10
  criu_path:
    description: Path of the criu binary. Default, C(criu) in C(PATH) or in C(/usr/sbin).
    type: path
'''
