#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: criu_predump
short_description: Pre-copy a running container's memory with iterative CRIU pre-dump rounds
version_added: 0.1.0
description:
  - Runs CRIU pre-dump rounds against a container while it keeps running. The first round copies all of its
    memory, each next round only the pages written since the round before (CRIU's memory dirty tracking).
  - Each round goes into O(images_dir)C(/round-N), with the previous round as its parent images (C(../round-N-1)),
    or sends its pages to a CRIU page server. Each round's directory gets a C(manifest.json) of kind C(predump).
  - "Rounds stop by the convergence rule: a round wrote O(min_pages) pages or fewer (P.Haul's rule); or the
    predicted freeze is within O(max_downtime_ms) (QEMU's rule: the pages the last round wrote, divided by the
    transfer rate); or a round wrote more than O(growth) more pages than the round before (P.Haul's rule: the
    rounds do not converge); or a round took less than 10 % off the round before (the rounds have stalled at
    what the container dirties in one round's time); or O(max_rounds) rounds were made."
  - The final dump is M(haul.live.criu_dump) with its C(parent_images) option set to RV(last_images).
  - Needs a kernel with memory dirty tracking (C(CONFIG_MEM_SOFT_DIRTY)). The module checks it first and, without
    it, fails with a message naming that option and changes nothing - the container keeps running and no images
    directory is created.
author:
  - haul.live developers (@haul-live)
extends_documentation_fragment:
  - haul.live.attributes
  - haul.live.container
  - haul.live.page_server
attributes:
  check_mode:
    support: full
    details:
      - The kernel, the container and the images directory are checked; no round runs.
  diff_mode:
    support: full
    details:
      - The diff shows the number of rounds in the images directory before and the rounds that may run.
  idempotent:
    support: none
    details:
      - Every run takes new rounds (changed=true), since the container's memory has moved on. Rounds of an
        earlier run in O(images_dir) are replaced.
options:
  images_dir:
    description:
      - Directory for the rounds (C(round-1), C(round-2), ...). Created with mode 0700, as is each round's directory.
      - It must be absent, empty, or hold only the rounds of an earlier run (they are replaced).
    type: path
    required: true
  pre_dump_mode:
    description:
      - How CRIU reads the pages - V(splice) (vmsplice, fast, the default) or V(read) (process_vm_readv, shorter
        freezes for large containers).
    type: str
    choices: [splice, read]
    default: splice
  max_rounds:
    description: Stop after this many rounds (C(haul_precopy_max_rounds)).
    type: int
    default: 8
  min_pages:
    description: Stop when a round wrote this many pages or fewer (the memory has converged).
    type: int
    default: 64
  growth:
    description: Stop when a round wrote more than this fraction more pages than the round before (0.10 is 10 %).
    type: float
    default: 0.10
  max_downtime_ms:
    description:
      - Stop when the predicted freeze of the final dump is within this many milliseconds (C(haul_max_downtime_ms)).
      - The prediction is the bytes the last round wrote divided by the transfer rate - O(transfer_bytes_per_s),
        else, with O(page_server), the rate CRIU sent the round's pages at. With local images and no
        O(transfer_bytes_per_s) this rule does not apply.
    type: int
    default: 300
  transfer_bytes_per_s:
    description: Measured transfer rate to the destination, in bytes per second (for instance of M(haul.live.image_sync)).
    type: int
  checksum:
    description: Whether each round's manifest records a sha256 per image file.
    type: str
    choices: [sha256, none]
    default: sha256
notes:
  - Requires criu >= 4.0 and python3-pycriu (python3-criu on Fedora/RHEL) on the managed host, and a kernel built
    with C(CONFIG_MEM_SOFT_DIRTY) (the C(precopy_possible) fact of M(haul.live.criu_check)).
  - The container is frozen for a short moment at the start of each round (while CRIU collects its memory
    mappings), and keeps running otherwise.
  - Failures report a one-line C(msg) (step and cause). If a round fails, its directory is removed, CRIU resumes
    the container, and the module thaws its cgroup if it was left frozen; the rounds made before are kept and
    returned.
seealso:
  - module: haul.live.criu_check
  - module: haul.live.criu_dump
  - module: haul.live.image_sync
requirements:
  - criu >= 4.0
  - python3-pycriu
'''

EXAMPLES = r'''
- name: Pre-copy web1's memory into local rounds
  haul.live.criu_predump:
    cgroup: haul/web1
    images_dir: /var/lib/haul/images/web1/precopy
    transfer_bytes_per_s: 100000000
  register: predump

- name: Final dump, on top of the last round
  haul.live.criu_dump:
    cgroup: haul/web1
    images_dir: /var/lib/haul/images/web1/final
    parent_images: "{{ predump.last_images }}"

- name: Rounds sent to the destination's page server, at most 4
  haul.live.criu_predump:
    cgroup: haul/web1
    images_dir: /var/lib/haul/images/web1/precopy
    max_rounds: 4
    page_server:
      host: 198.18.0.12
      port: 27000
      tls: true
      tls_cacert: /etc/haul/pki/ca.pem
      tls_cert: /etc/haul/pki/node1.pem
      tls_key: /etc/haul/pki/node1.key

- name: Why the rounds stopped
  ansible.builtin.debug:
    msg: "{{ predump.rounds | length }} rounds: {{ predump.stop_reason }}"
'''

RETURN = r'''
images_dir:
  description: The images directory (the rounds are its sub-directories).
  returned: always
  type: str
  sample: /var/lib/haul/images/web1/precopy
name:
  description: Container name (identity).
  returned: success
  type: str
  sample: web1
pid:
  description: Host pid of the container's pid-namespace init.
  returned: success
  type: int
  sample: 4242
cgroup:
  description: The container's cgroup, inside the hierarchy.
  returned: success
  type: str
  sample: /haul/web1
root:
  description: The container's root directory on this host.
  returned: success
  type: str
  sample: /var/lib/haul/containers/web1/rootfs
rounds:
  description:
    - One entry per round, in order - CRIU's pre-dump stats (C(pages_scanned), C(pages_skipped_parent),
      C(pages_written), C(freezing_time), C(frozen_time), C(memdump_time), C(memwrite_time) in microseconds, the
      same times in milliseconds as C(*_ms), C(bytes_written)), plus C(round), C(images_dir), C(parent),
      C(duration) (seconds), C(bytes) (size of the round's image files), C(log_path),
      C(transfer_bytes_per_s) (when given) and C(predicted_freeze_ms).
    - Empty in check mode. On failure, the rounds made before the failed one.
  returned: always
  type: list
  elements: dict
  sample: [{round: 1, pages_written: 16404, bytes_written: 67190784, predicted_freeze_ms: 672.0, parent: null},
           {round: 2, pages_written: 40, bytes_written: 163840, predicted_freeze_ms: 1.6, parent: ../round-1}]
last_images:
  description: The last complete round's directory; give it as C(parent_images) of M(haul.live.criu_dump).
  returned: always
  type: str
  sample: /var/lib/haul/images/web1/precopy/round-2
stop_reason:
  description: Why the rounds stopped, in one sentence.
  returned: success
  type: str
  sample: "round 2 wrote 40 pages, not more than 64: the memory has converged"
stop_rule:
  description: Which rule stopped the rounds - C(min_pages), C(downtime), C(growth), C(stall) or C(max_rounds).
  returned: success
  type: str
  sample: min_pages
predicted_freeze_ms:
  description: Predicted freeze of the final dump after the last round, or null without a transfer rate.
  returned: success
  type: float
  sample: 1.6
bytes:
  description: Total size of the image files of all the rounds.
  returned: success, not in check mode
  type: int
duration:
  description: Seconds all the rounds took.
  returned: success, not in check mode
  type: float
criu_version:
  description: Version of CRIU.
  returned: success
  type: str
  sample: 4.1.1
log_path:
  description: Path of the last round's CRIU log (C(pre-dump.log)).
  returned: success, not in check mode
  type: str
log_tail:
  description: Last lines (at most 20) of the failed round's CRIU log.
  returned: failure
  type: list
  elements: str
features:
  description: What CRIU said about memory dirty tracking (C(mem_track) by RPC, C(mem_dirty_track) by C(criu check)).
  returned: failure, when the kernel has no memory dirty tracking
  type: dict
  sample: {mem_track: false, mem_dirty_track: false}
failed_step:
  description: The step that failed (predump, identify, images, options, pre-dump, manifest, ...).
  returned: failure
  type: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.haul.live.plugins.module_utils._container import container_argspec, page_server_argspec
from ansible_collections.haul.live.plugins.module_utils._common import HaulError, fail
from ansible_collections.haul.live.plugins.module_utils._precopy import run_rounds
from ansible_collections.haul.live.plugins.module_utils._validate import check_module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            container_argspec(),
            **page_server_argspec(),
            images_dir=dict(type='path', required=True),
            pre_dump_mode=dict(type='str', choices=['splice', 'read'], default='splice'),
            max_rounds=dict(type='int', default=8),
            min_pages=dict(type='int', default=64),
            growth=dict(type='float', default=0.10),
            max_downtime_ms=dict(type='int', default=300),
            transfer_bytes_per_s=dict(type='int'),
            checksum=dict(type='str', choices=['sha256', 'none'], default='sha256'),
        ),
        required_one_of=[['cgroup', 'pid']],
        mutually_exclusive=[['cgroup', 'pid']],
        supports_check_mode=True,
    )
    check_module(module, name='name', cgroup='cgroup')
    try:
        result = run_rounds(module.params, check_mode=module.check_mode, diff=module._diff)
    except HaulError as e:
        extra = {'images_dir': module.params['images_dir']}
        extra.setdefault('rounds', [])
        extra.setdefault('last_images', None)
        res = e.result()
        for key in ('rounds', 'last_images'):
            if key in res:
                extra.pop(key)
        fail(module, e, **extra)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
