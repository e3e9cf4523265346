#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: images_root
short_description: Put the parent of the images directories on a tmpfs when the memory allows it
version_added: 0.1.0
description:
  - A container's images hold its whole memory. This module makes the images root (the parent of the
    images directories, mode 0700) and, when it can, puts it on a tmpfs, so that nothing of a
    container's memory ever reaches a disk (a removed file on a disk stays readable there until
    it is overwritten).
  - When O(root) is already on a tmpfs (or ramfs), it is used as it is.
  - With O(tmpfs=auto) or O(tmpfs=true), a tmpfs (C(mode=0700,size=50%), nosuid, nodev, noexec) is
    mounted on O(root) when C(MemAvailable) is at least twice O(memory_bytes) (the images on the
    tmpfs, plus the restored copy on a destination) plus 256 MiB, and O(root) is empty (a tmpfs
    would hide what it holds). The tmpfs stays mounted (empty between migrations, it costs no memory);
    a reboot or C(umount) ends it. A lock file serializes two migrations that prepare one host at once.
  - When that cannot be, O(tmpfs=auto) leaves the images on disk and says why in RV(note);
    O(tmpfs=true) fails and names the reason.
  - With O(clear), first removes the images directories that earlier runs left, in the same step
    (only those haul.live made, as M(haul.live.container_remove) does).
author:
  - haul.live developers (@haul-live)
options:
  root:
    description: The images root (the parent of the images directories).
    type: path
    default: /var/lib/haul/images
  tmpfs:
    description:
      - V(auto) - a tmpfs when the memory allows it, else the disk with a note. V(true) - a tmpfs, or fail.
        V(false) - leave O(root) on its filesystem (a tmpfs mounted there already stays).
    type: str
    choices: [auto, 'true', 'false']
    default: auto
  memory_bytes:
    description: The memory of the container that is about to move (its images are about as large).
    type: int
    default: 0
  clear:
    description:
      - Images directories to remove first - only those with haul.live's marker, and never one that a
        lazy-pages daemon still serves a restored container from (those are kept, see RV(kept)).
    type: list
    elements: path
    default: []
extends_documentation_fragment:
  - haul.live.attributes
attributes:
  check_mode:
    support: full
    details:
      - In check mode it reports what it would do and mounts nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
seealso:
  - module: haul.live.container_remove
  - module: haul.live.criu_dump
'''

EXAMPLES = r'''
- name: Put the images of web1 (512 MiB) on a tmpfs when the memory allows it
  haul.live.images_root:
    root: /var/lib/haul/images
    memory_bytes: 536870912

- name: Remove what earlier migrations of web1 left, then prepare the root
  haul.live.images_root:
    clear: [/var/lib/haul/images/web1, /var/lib/haul/images/web1.handoff]
    memory_bytes: 536870912

- name: Refuse to write images on a disk
  haul.live.images_root:
    tmpfs: 'true'
    memory_bytes: 536870912
'''

RETURN = r'''
root:
  description: The images root.
  returned: always
  type: str
on_tmpfs:
  description: Whether the images root is on a tmpfs (or ramfs) now.
  returned: always
  type: bool
mounted:
  description: Whether this run mounted the tmpfs.
  returned: always
  type: bool
fstype:
  description: The type of the filesystem that holds the images root.
  returned: always
  type: str
mount_point:
  description: The mount point of that filesystem.
  returned: always
  type: str
mem_available:
  description: C(MemAvailable) of the host, in bytes.
  returned: always
  type: int
need_bytes:
  description: The C(MemAvailable) a tmpfs needs for this container.
  returned: always
  type: int
note:
  description: Where the images go and why (for example why they stay on disk).
  returned: always
  type: str
removed:
  description: The directories of O(clear) removed.
  returned: always
  type: list
  elements: str
kept:
  description: The directories of O(clear) kept, each with why (not haul.live's, or served by lazy pages).
  returned: always
  type: list
  elements: dict
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.haul.live.plugins.module_utils import _images, _lazy_pages
from ansible_collections.haul.live.plugins.module_utils._common import HaulError, fail


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type='path', default='/var/lib/haul/images'),
            tmpfs=dict(type='str', default='auto', choices=['auto', 'true', 'false']),
            memory_bytes=dict(type='int', default=0),
            clear=dict(type='list', elements='path', default=[]),
        ),
        supports_check_mode=True,
    )
    p = module.params
    removed, kept = [], []
    try:
        removed, kept = _lazy_pages.remove_unserved(p['clear'], check_mode=module.check_mode)
        res = _images.prepare_root(p['root'], tmpfs=p['tmpfs'], memory_bytes=p['memory_bytes'],
                                   check_mode=module.check_mode)
    except HaulError as e:
        fail(module, e, root=p['root'], removed=removed, kept=kept)
    except OSError as e:
        fail(module, HaulError('images', 'cannot remove %s: %s' % (getattr(e, 'filename', None) or 'an images directory',
                                                                   e.strerror or e)), removed=removed, kept=kept)
    res.update(removed=removed, kept=kept, changed=bool(res.get('changed') or removed))
    module.exit_json(**res)


if __name__ == '__main__':
    main()
