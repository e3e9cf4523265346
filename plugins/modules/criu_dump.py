#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: criu_dump
short_description: Checkpoint a container with CRIU into an images directory
version_added: 0.1.0
description:
  - Checkpoints a whole container (the process tree of its pid-namespace init, with its namespaces
    and its cgroups) into an images directory with CRIU, driven through pycriu's RPC.
  - The container is identified by its cgroup or by the host pid of its pid-namespace init.
  - Unless O(hold=running), the module freezes the container's freezer cgroup first, so that no task
    runs between the dump and the hold; CRIU then dumps the frozen tree with the nftables network
    lock and leaves the tasks stopped, in the cgroup it found frozen. By default (O(hold=frozen)) the
    module then resumes the stopped tasks inside the frozen cgroup, so that the source is held frozen
    in cgroup terms and a rollback is a plain thaw of the cgroup (M(haul.live.cgroup_thaw)). With
    O(hold=stopped) it thaws the cgroup and the tasks stay stopped.
  - Writes C(manifest.json) into the images directory (container identity, CRIU version, kernel,
    size and sha256 of every image file) once the dump is complete.
  - Before anything is frozen, the free space of the images filesystem is compared with an estimate
    of the dump size (the sum of the resident memory of the container's processes plus the contents
    of its tmpfs mounts, times 1.1). The module fails if it does not fit.
  - Before anything is frozen too, when this CRIU cannot dump TCP or UDP sockets on this kernel (a kernel
    >= 6.16 needs CRIU >= 4.2), the module counts the container's TCP and UDP sockets and fails if it holds
    any, with a sentence naming the host, the container, the number of sockets and both versions.
  - Runs on the host that runs the container, as root, with criu >= 4.0 and python3-pycriu.
  - With O(runtime=podman) or O(runtime=lxc), it checkpoints the runtime's container O(name) to this host's
    disk and stops it, for a reboot (C(haul.live.update_in_place)) - Podman's own checkpoint (C(--keep), and
    its export in O(images_dir)), or for LXC haul.live's dump with LXC's options, then C(lxc-stop -k).
    M(haul.live.criu_restore) with the same O(runtime) runs it again from there. O(hold) does not apply.
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
      - Validates the container (process, cgroup, pid-namespace init), the images directory and the free
        space, and reports whether a dump would happen. Nothing is frozen or written.
  diff_mode:
    support: full
    details:
      - The diff shows the state of the container and of the images directory before and after.
  idempotent:
    support: partial
    details:
      - An images directory that already holds a complete, verified dump of the same container (same
        O(name), cgroup and init pid), while that container is still held (frozen, or stopped with
        O(hold=stopped)) or no longer runs here, gives changed=false.
      - If the container has been thawed since (a rollback), the old images are stale and the container
        is dumped again.
      - With O(hold=running) every run takes a new checkpoint (changed=true), since the container has moved on.
options:
  images_dir:
    description:
      - Directory for the images. Created with mode 0700 (an existing one is set to 0700).
      - It must be empty or hold only CRIU images and logs of an earlier dump (they are replaced).
    type: path
    required: true
  hold:
    description:
      - What becomes of the source after a successful dump.
      - V(frozen) - tasks stopped by CRIU, then the cgroup frozen and the tasks resumed inside it; a
        rollback is a thaw of the cgroup.
      - V(stopped) - tasks left SIGSTOPped by CRIU (CRIU's C(leave_stopped)); a rollback needs SIGCONT.
      - V(running) - the container keeps running (a checkpoint, not a migration).
    type: str
    choices: [frozen, stopped, running]
    default: frozen
  freezer:
    description:
      - Which cgroup freezer holds the source after the dump when O(hold=frozen).
      - V(auto) - the cgroup v2 freezer when the container's cgroup has one, else the v1 freezer.
      - CRIU itself freezes the tree during the dump with the v1 freezer when the host mounts one, else the v2
        freezer; this option does not change that.
    type: str
    choices: [auto, v1, v2]
    default: auto
  parent_images:
    description:
      - Images directory of the previous pre-dump round (memory that did not change since is not dumped
        again). A relative path is relative to O(images_dir), as CRIU wants it.
      - Needs a kernel with memory dirty tracking; see M(haul.live.criu_check).
    type: path
  # --- post-copy (issue 5): lazy mode
  lazy:
    description:
      - Post-copy - dump without the memory, which stays on this host and is served by CRIU's page server
        (C(criu dump --lazy-pages --address --port)) until the destination has every page. The module returns
        once the page server is ready (CRIU's status fd), leaving a supervised background CRIU process.
      - The container stays frozen (held by CRIU) while its pages are served; once the destination has them all,
        CRIU kills it. Once the destination has resumed, the source never resumes; if the transfer breaks after
        that, the container is lost (see M(haul.live.lazy_pages)).
      - O(hold) and O(page_server) do not apply. C(stats) are not returned (CRIU writes them at the end, with a
        meaningless C(frozen_time)).
      - With O(parent_images) (the last pre-copy round, already on the destination) it is the final dump of a
        hybrid migration - only the pages changed since that round are served lazily; the destination restores
        the others from the rounds.
      - The destination runs M(haul.live.lazy_pages) against this page server, then
        M(haul.live.criu_restore) with O(haul.live.criu_restore#module:lazy_pages=true).
    type: dict
    suboptions:
      address:
        description: Address this host's page server listens on (reachable from the destination).
        type: str
        required: true
      port:
        description: TCP port of the page server.
        type: int
        default: 27100
      ready_timeout:
        description: Seconds to wait for the page server to be ready.
        type: int
        default: 60
      tls:
        description:
          - Serve the pages over TLS (on by default). With V(false) the result says C(tls=false) plainly.
          - See M(haul.live.lazy_pages) for how to make a CA and certificates with openssl.
        type: bool
        default: true
      tls_cacert:
        description: CA certificate to verify the destination with. Default, CRIU's C(/etc/pki/CA/cacert.pem).
        type: path
      tls_cert:
        description: This host's certificate. Default, CRIU's C(/etc/pki/criu/cert.pem).
        type: path
      tls_key:
        description: Key of the certificate. Default, CRIU's C(/etc/pki/criu/private/key.pem).
        type: path
      tls_no_cn_verify:
        description: Do not check the destination's certificate CN.
        type: bool
        default: false
  # --- end post-copy
  checksum:
    description:
      - Whether the manifest records a sha256 per image file (about 0.9 s per GiB, spent while the container
        is frozen). With V(none) only sizes are recorded and verified.
    type: str
    choices: [sha256, none]
    default: sha256
  runtime:
    description:
      - The runtime that owns the container (docs/runtimes.md). V(lab) - haul.live's own containers, named by
        O(cgroup) or O(pid).
      - V(podman) or V(lxc) - that runtime's container O(name), checkpointed to this host's disk and stopped;
        changed=false when it is stopped with its checkpoint in O(images_dir) already.
    type: str
    choices: [lab, podman, lxc]
    default: lab
  force:
    description: Dump again even when O(images_dir) already holds a complete dump of this container.
    type: bool
    default: false
notes:
  - Requires criu >= 4.0 and python3-pycriu (python3-criu on Fedora/RHEL) on the managed host.
  - The container's init must be a session leader inside its pid namespace, with its standard streams
    opened inside the container.
  - Failures report a one-line C(msg) (step and cause, with the most telling error line of the CRIU log),
    and C(log_path) and C(log_tail) (at most 20 lines). Nothing of the container's memory is ever logged.
  - If the dump fails, CRIU resumes the container; the module also thaws its cgroup if it was left
    frozen, so the source keeps running.
seealso:
  - module: haul.live.criu_check
  - module: haul.live.criu_restore
  - module: haul.live.image_sync
  - module: haul.live.cgroup_thaw
requirements:
  - criu >= 4.0
  - python3-pycriu
'''

EXAMPLES = r'''
- name: Dump container web1 and hold it frozen
  haul.live.criu_dump:
    cgroup: haul/web1
    images_dir: /var/lib/haul/images/web1
  register: dump

- name: Dump by pid, with TCP connections, keeping it running (a checkpoint)
  haul.live.criu_dump:
    pid: 4242
    name: db1
    images_dir: /var/lib/haul/checkpoints/db1
    tcp_established: true
    hold: running

- name: Final dump after pre-dump rounds, pages streamed to the destination's page server
  haul.live.criu_dump:
    cgroup: haul/web1
    images_dir: /var/lib/haul/images/web1/final
    parent_images: ../round3
    page_server:
      host: 198.18.0.12
      port: 27000
      tls: true
      tls_cacert: /etc/haul/pki/ca.pem
      tls_cert: /etc/haul/pki/node1.pem
      tls_key: /etc/haul/pki/node1.key

- name: Post-copy - lazy dump, pages served from this host until the destination has them all
  haul.live.criu_dump:
    cgroup: haul/web1
    images_dir: /var/lib/haul/images/web1
    lazy:
      address: 198.18.0.11
      port: 27100
      tls_cacert: /etc/haul/pki/ca.pem
      tls_cert: /etc/haul/pki/node1.pem
      tls_key: /etc/haul/pki/node1.key

- name: Checkpoint the Podman container web2 to this host's disk, and stop it (for a reboot)
  haul.live.criu_dump:
    name: web2
    runtime: podman
    images_dir: /var/lib/haul/in-place/web2
    tcp_established: true

- name: Show how long the container was frozen by CRIU
  ansible.builtin.debug:
    msg: "{{ dump.stats.frozen_ms }} ms frozen, {{ dump.bytes }} bytes"
'''

RETURN = r'''
images_dir:
  description: The images directory.
  returned: always
  type: str
  sample: /var/lib/haul/images/web1
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
root_pid:
  description: Same as RV(pid) (the name M(haul.live.cgroup_thaw) examples use).
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
sockets:
  description: The TCP and UDP sockets the container holds (C(tcp_listen), C(tcp_established), C(tcp_other),
    C(udp), C(total)), counted before the freeze; see M(haul.live.container_info).
  returned: success, when a dump was made
  type: dict
  sample: {tcp_listen: 1, tcp_established: 2, tcp_other: 0, udp: 0, total: 3}
network:
  description:
    - The container's network as the restore recreates it, also recorded in the manifest
      (C(identity.network)); null when the container shares the host's network namespace.
    - C(interfaces) lists its veths, each with C(name) (inside), C(mac), C(addresses), C(host_end)
      (the other end, on this host) and C(bridge) (the host end's bridge). See docs/networking.md.
    - While the source is held for a migration, the host ends are down (it answers no ARP); a
      rollback with M(haul.live.cgroup_thaw) O(haul.live.cgroup_thaw#module:unlock_network=true) brings them up again.
  returned: success
  type: dict
  sample: {interfaces: [{name: eth0, kind: veth, mac: "02:48:c6:12:00:65", mtu: 1500, addresses: [198.18.0.101/24],
                         host_end: hv1a2b3c4d, bridge: br0}], other: []}
hold:
  description: What the source is left as (frozen, stopped or running).
  returned: success
  type: str
  sample: frozen
stats:
  description:
    - CRIU's stats-dump - times in microseconds (C(freezing_time), C(frozen_time), C(memdump_time),
      C(memwrite_time)) and pages (C(pages_scanned), C(pages_skipped_parent), C(pages_written),
      C(pages_lazy)), plus the same times in milliseconds (C(*_ms)) and C(bytes_written).
  returned: success
  type: dict
  sample: {frozen_time: 301234, frozen_ms: 301.234, pages_written: 16404, bytes_written: 67190784}
bytes:
  description: Total size of the image files.
  returned: success
  type: int
  sample: 67502080
duration:
  description: Seconds the CRIU dump request took (0 when nothing was done).
  returned: success
  type: float
  sample: 0.31
estimated_bytes:
  description: Estimated dump size used for the free-space check.
  returned: when a dump was made or would be made
  type: int
free_bytes:
  description: Free bytes of the images filesystem before the dump.
  returned: when a dump was made or would be made
  type: int
manifest:
  description: The manifest written to C(manifest.json) (see plugins/module_utils/_images.py for the format).
  returned: success, not in check mode
  type: dict
criu_version:
  description: Version of the CRIU that dumped.
  returned: success
  type: str
  sample: 4.1.1
log_path:
  description: Path of the CRIU log (C(dump.log) in the images directory).
  returned: when CRIU ran
  type: str
log_tail:
  description: Last lines (at most 20) of the CRIU log.
  returned: failure
  type: list
  elements: str
failed_step:
  description: The step that failed (identify, images, space, dump, hold, manifest, ...).
  returned: failure
  type: str
# --- post-copy (issue 5)
lazy:
  description:
    - The lazy dump - C(address), C(port), C(tls), C(state) (serving or finished), C(supervisor_pid) (waits for the
      dump's end and records it in C(state_file)), C(dump_pid), C(ready_ms) (until the page server was ready).
  returned: with O(lazy)
  type: dict
  sample: {address: 198.18.0.11, port: 27100, tls: true, state: serving, ready_ms: 80.5}
tls:
  description: Whether the pages are served over TLS.
  returned: with O(lazy)
  type: bool
security:
  description: "The page transport said plainly for reports - C(tls) or C(plaintext (tls: false))."
  returned: with O(lazy)
  type: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.haul.live.plugins.module_utils._common import HaulError, fail
from ansible_collections.haul.live.plugins.module_utils._checkpoint import dump_container
from ansible_collections.haul.live.plugins.module_utils._container import container_argspec, page_server_argspec
from ansible_collections.haul.live.plugins.module_utils._postcopy import lazy_argspec, lazy_dump  # post-copy (issue 5)
from ansible_collections.haul.live.plugins.module_utils._validate import check_module
from ansible_collections.haul.live.plugins.module_utils._runtimes import registry


def checkpoint_local(params, check_mode):
    """A runtime's container checkpointed to this host's disk, and stopped (update_in_place)."""
    runtime = registry.runtime(params['runtime'])
    if check_mode:
        return {'changed': True, 'name': params['name'], 'runtime': params['runtime'],
                'msg': 'would checkpoint %s to %s and stop it' % (params['name'], params['images_dir'])}
    return runtime.checkpoint_local(params)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            container_argspec(),
            **page_server_argspec(),
            images_dir=dict(type='path', required=True),
            hold=dict(type='str', choices=['frozen', 'stopped', 'running'], default='frozen'),
            freezer=dict(type='str', choices=['auto', 'v1', 'v2'], default='auto'),
            parent_images=dict(type='path'),
            # --- post-copy (issue 5)
            lazy=lazy_argspec(),
            # --- end post-copy
            checksum=dict(type='str', choices=['sha256', 'none'], default='sha256'),
            force=dict(type='bool', default=False),
            runtime=dict(type='str', choices=['lab', 'podman', 'lxc'], default='lab'),
        ),
        required_one_of=[['cgroup', 'pid', 'name']],
        mutually_exclusive=[['cgroup', 'pid'], ['lazy', 'page_server']],
        supports_check_mode=True,
    )
    check_module(module, name='name', cgroup='cgroup', **{'lazy.address': 'host'})
    p = module.params
    if p['runtime'] == 'lab' and not (p['cgroup'] or p['pid']):
        module.fail_json(msg='options: give cgroup or pid (or runtime podman or lxc with name)', failed_step='options')
    if p['runtime'] != 'lab' and (p['cgroup'] or p['pid'] or p['lazy'] or p['page_server'] or p['parent_images']):
        module.fail_json(msg='runtime %s: give name and images_dir (no cgroup, pid, lazy, page_server or '
                         'parent_images)' % p['runtime'], failed_step='options')
    try:
        if p['runtime'] != 'lab':
            result = checkpoint_local(p, module.check_mode)
        elif module.params['lazy']:  # post-copy (issue 5)
            result = lazy_dump(module.params, check_mode=module.check_mode, diff=module._diff)
        else:
            result = dump_container(module.params, check_mode=module.check_mode, diff=module._diff)
    except HaulError as e:
        fail(module, e, images_dir=module.params['images_dir'])
    module.exit_json(**result)


if __name__ == '__main__':
    main()
