# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """The jump host of the modules that reach the destination over SSH (handoff, image_sync);
    their argument spec is ``_transport.jump_argspec()``."""

    DOCUMENTATION = r'''
options:
  jump:
    description:
      - Reach the destination through this jump host, when this host cannot reach it directly. The jump
        host only opens the connection (C(ssh -W), as a C(ProxyCommand)); everything else goes end to end
        to the destination, encrypted for it.
      - The hop uses the same key (O(ssh_key)), the same pinned known_hosts file (O(known_hosts)), which
        must hold the jump host's keys too, and C(StrictHostKeyChecking=yes).
      - The migrate role authorizes its per-migration key on the jump host with C(restrict,port-forwarding,
        permitopen="DESTINATION:PORT") and the source's C(from=), so the key opens that one connection and
        nothing else there.
    type: dict
    suboptions:
      host:
        description: The jump host's name or address, as this host reaches it.
        type: str
        required: true
      port:
        description: Its SSH port. Default, ssh's (22).
        type: int
      user:
        description: The user on the jump host.
        type: str
        default: root
'''
