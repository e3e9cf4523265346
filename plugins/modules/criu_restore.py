#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: criu_restore
short_description: Restore a container with CRIU from an images directory
version_added: 0.1.0
description:
  - Restores a container dumped by M(haul.live.criu_dump), detached, with its root directory, its cgroups
    (recreated by CRIU), its external mounts and the nftables network lock, driven through pycriu's RPC.
  - First verifies the images against their C(manifest.json) (every file present, sizes and sha256).
  - Refuses clearly when the images are missing or incomplete, when this host's CRIU is older than the one
    that dumped them, or when a container with that cgroup already runs here and was not restored from
    these images.
  - After the restore, checks that the restored root pid is alive, is a pid-namespace init and sits in the
    expected cgroup.
  - On failure, kills what CRIU left in the container's cgroup and removes that cgroup if it did not exist
    before, so that a retry starts clean.
  - Runs on the destination host, as root, with criu >= 4.0 and python3-pycriu.
author:
  - haul.live developers (@haul-live)
extends_documentation_fragment:
  - haul.live.attributes
attributes:
  check_mode:
    support: full
    details:
      - Verifies the images, the CRIU version, the root directory and that the container does not run here,
        and reports whether a restore would happen.
  diff_mode:
    support: full
  idempotent:
    support: full
    details:
      - When the container restored from these images still runs here (same root pid and start time as recorded
        in C(restore.json) in the images directory after the restore), the module reports changed=false.
options:
  images_dir:
    description: The images directory, with its C(manifest.json).
    type: path
    required: true
  name:
    description:
      - Name of the container. Defaults to the name in the manifest; when given, it must match it.
    type: str
  root:
    description:
      - The container's root directory on this host. It must exist (sync it first, see M(haul.live.image_sync)).
      - Default C(/var/lib/haul/containers/NAME/rootfs).
    type: path
  cgroup:
    description:
      - The cgroup the container is expected in, relative to the root of the cgroup v2 hierarchy
        (V(haul/web1)). CRIU recreates the cgroups recorded in the images, so it must match the manifest.
      - Default, the cgroup of the manifest's identity.
    type: str
  external:
    description: CRIU C(--external) specs for resources that come from outside the container.
    type: list
    elements: str
    default: []
  network_lock:
    description: How CRIU locks the network until the container runs.
    type: str
    choices: [nftables, iptables, skip]
    default: nftables
  tcp_established:
    description: Restore established TCP connections (the dump must have had them).
    type: bool
    default: false
  tcp_close:
    description: Restore established TCP connections closed.
    type: bool
    default: false
  manage_cgroups_mode:
    description: CRIU's cgroup mode.
    type: str
    choices: [soft, full, strict, ignore]
    default: soft
  verify:
    description:
      - How the images are verified against the manifest before restoring. V(sha256) checks the checksums,
        V(size) only that every file is there with its size.
    type: str
    choices: [sha256, size]
    default: sha256
  check_timeout:
    description: Seconds to wait for the restored root pid to show up in the expected cgroup.
    type: int
    default: 5
  criu_path:
    description: Path of the criu binary. Default, C(criu) in C(PATH) or in C(/usr/sbin).
    type: path
  runtime:
    description:
      - The runtime that owns the container (docs/runtimes.md). V(lab) - haul.live's own restore into
        O(cgroup).
      - V(podman) - only with O(handoff). Podman's own restore, C(podman container restore --import) of the
        export that M(haul.live.handoff) sent, under the same name, id, address and MAC, with CRIU's
        C(leave-stopped) set for the restore (in C(/etc/criu/RUNTIME.conf), put back after) so that its
        tasks stay stopped until the commit. On abort, C(podman rm) removes the copy from Podman here.
      - V(lxc) - only with O(handoff). LXC's own restore, C(lxc-checkpoint -r) of the images into the
        container's directory C(/var/lib/lxc/NAME) (sent by M(haul.live.handoff)), with CRIU's C(leave-stopped)
        set for the restore in C(/etc/criu/default.conf) and the MAC addresses of the config's veths held on
        this host's bridges until the commit. On abort, C(lxc-stop -k) and C(lxc-destroy -f).
      - V(podman) or V(lxc) without O(handoff) - run the container O(name) again from the checkpoint that
        M(haul.live.criu_dump) with the same O(runtime) left on this host's disk (C(haul.live.update_in_place)) -
        Podman's kept checkpoint (C(podman container restore NAME)), else the export in O(images_dir); LXC's
        C(lxc-checkpoint -r) of O(images_dir). changed=false when it runs already.
    type: str
    choices: [lab, podman, lxc]
    default: lab
  # --- post-copy (issue 5)
  lazy_pages:
    description:
      - Post-copy - restore lazily - the tree runs at once and its memory comes on demand (userfaultfd) through the
        C(criu lazy-pages) daemon that M(haul.live.lazy_pages) started for the same O(images_dir), from the
        source's lazy dump (M(haul.live.criu_dump) with O(haul.live.criu_dump#module:lazy)).
      - Fails clearly when no such daemon runs. Once this restore has succeeded, the source never resumes (see
        M(haul.live.lazy_pages)).
      - Not with O(handoff).
    type: bool
    default: false
  # --- end post-copy
  handoff:
    description:
      - Receive the container from M(haul.live.handoff) running on the source, as the destination
        half of one critical section (see C(docs/design.md)). Run this task with C(async) and
        C(poll=0) before the source's handoff task.
      - The module checks what it can before the source freezes anything (CRIU version, no container
        of that name here, root directory present, free space), reports C(waiting), waits for the
        images, restores the tree B(stopped), and resumes it only when the source commits. Without a
        commit in time, or on abort, it kills the stopped copy. The images are verified by size
        (rsync has verified their content).
      - It renews the container's lease on this host that the role took with the same O(handoff.id), or
        takes it (and releases it at the end) when it runs alone; another migration's lease fails before
        anything is touched. It records RESTORED and RESUMED in it.
      - Requires O(cgroup) and O(name).
    type: dict
    suboptions:
      id:
        description: The attempt's id, the same as the source's O(haul.live.handoff#module:handoff_id).
        type: str
        required: true
      timeout:
        description:
          - Seconds to wait for the images (this covers the source's connect, pre-copy rounds, dump and
            transfer), and the default of O(handoff.restore_timeout) and O(handoff.commit_timeout).
        type: int
        default: 300
      restore_timeout:
        description:
          - Seconds the restore may take; a CRIU still restoring then is killed, with what it restored.
            Defaults to O(handoff.timeout).
        type: int
      commit_timeout:
        description:
          - Seconds to wait for the commit after the restore. Defaults to O(handoff.timeout).
          - After it the stopped copy is killed and a later commit is refused. The decision (resume on
            commit, or abort) is taken once, atomically (a symlink C(decided) in the control directory),
            so that the role's rollback can fence the copy - see C(docs/reliability.md).
        type: int
      min_criu_version:
        description: The source's CRIU version; a CRIU older than that here fails before the source freezes.
        type: str
      source:
        description:
          - With O(runtime=podman) - the source's description of the container, RV(haul.live.container_info#module:containers[].podman)
            (its image id, networks with their MAC addresses, bind mounts, OCI runtime). Before the source freezes,
            the receiver checks that the image (by id), the networks and the bind sources are here and that Podman
            has no container of that name; it holds the MAC addresses on this host's bridges from the restore to
            the commit.
        type: dict
      expected_bytes:
        description: The size the images will have, about; less free space than that fails before the source freezes.
        type: int
        default: 0
      lazy:
        description:
          - Post-copy. Start CRIU's lazy-pages daemon against the source's page server once the images
            are here, restore through it, and after the commit stay until every page has moved.
          - Must match the source's O(haul.live.handoff#module:lazy).
        type: dict
        suboptions:
          address:
            description: The source's address, where its page server listens.
            type: str
            required: true
          port:
            description: The page server's port.
            type: int
            default: 27100
          tls:
            description: Use TLS with the page server.
            type: bool
            default: true
          tls_cacert:
            description: CA certificate (PEM) on this host.
            type: path
          tls_cert:
            description: This host's certificate (PEM).
            type: path
          tls_key:
            description: This host's private key (PEM).
            type: path
          tls_no_cn_verify:
            description: Do not check the peer certificate's name.
            type: bool
            default: false
          ready_timeout:
            description: Seconds to wait for the daemon to be ready.
            type: int
            default: 30
notes:
  - Requires criu >= 4.0 and python3-pycriu (python3-criu on Fedora/RHEL) on the managed host.
  - Restoring on the host the container was dumped on, while the dumped copy still exists (frozen), is
    refused as "already runs here"; CRIU could not reuse its pids anyway.
  - Failures report a one-line C(msg) (step and cause, with the most telling error line of the CRIU log),
    and C(log_path) and C(log_tail) (at most 20 lines).
seealso:
  - module: haul.live.criu_dump
  - module: haul.live.image_sync
requirements:
  - criu >= 4.0
  - python3-pycriu
'''

EXAMPLES = r'''
- name: Restore web1 from synced images
  haul.live.criu_restore:
    images_dir: /var/lib/haul/images/web1
  register: restored

- name: Restore with an explicit root directory and expected cgroup
  haul.live.criu_restore:
    images_dir: /var/lib/haul/images/web1
    name: web1
    root: /srv/containers/web1/rootfs
    cgroup: haul/web1

- name: Post-copy - restore through the lazy-pages daemon (see haul.live.lazy_pages)
  haul.live.criu_restore:
    images_dir: /var/lib/haul/images/web1
    lazy_pages: true

- name: Show the restored pid
  ansible.builtin.debug:
    msg: "web1 runs as pid {{ restored.pid }}, restored in {{ restored.stats.restore_ms }} ms"

- name: After a reboot, run the Podman container web2 again from its checkpoint on this host's disk
  haul.live.criu_restore:
    name: web2
    runtime: podman
    images_dir: /var/lib/haul/in-place/web2
    tcp_established: true
'''

RETURN = r'''
images_dir:
  description: The images directory.
  returned: always
  type: str
name:
  description: Container name.
  returned: success
  type: str
  sample: web1
pid:
  description: Host pid of the restored container's init.
  returned: success
  type: int
  sample: 5120
cgroup:
  description: The container's cgroup v2 path.
  returned: success
  type: str
  sample: /haul/web1
root:
  description: The root directory it was restored with.
  returned: success
  type: str
network:
  description:
    - The container's network, from the images' manifest (see M(haul.live.criu_dump)); null when it
      had no network namespace of its own.
    - Each veth is recreated with its host end on this host, under the same name, and put on the
      same bridge, which must exist here. The host end stays down and off the bridge while the
      container is held stopped (a handoff), and goes up when it resumes.
  returned: success
  type: dict
announced:
  description: Gratuitous ARP frames sent from inside the container after it resumed, so that the
    segment learns its new port at once.
  returned: success, when the container resumed here and has a veth
  type: int
  sample: 2
state:
  description: C(running) after the restore.
  returned: success, not in check mode
  type: str
stats:
  description:
    - CRIU's stats-restore - C(forking_time), C(restore_time) (microseconds), C(pages_restored),
      C(pages_compared), C(pages_skipped_cow), plus C(*_ms).
  returned: success, not in check mode
  type: dict
duration:
  description: Seconds the CRIU restore request took (0 when nothing was done).
  returned: success, not in check mode
  type: float
criu_version:
  description: This host's CRIU version.
  returned: success
  type: str
dumped_by:
  description: The CRIU version that wrote the images.
  returned: success
  type: str
source_host:
  description: The host the images were dumped on.
  returned: success
  type: str
log_path:
  description: Path of the CRIU log (C(restore.log) in the images directory).
  returned: when CRIU ran
  type: str
log_tail:
  description: Last lines (at most 20) of the CRIU log.
  returned: failure
  type: list
  elements: str
failed_step:
  description: The step that failed (verify, restore, check, ...).
  returned: failure
  type: str
# --- post-copy (issue 5)
lazy_pages:
  description: C(true) when restored lazily (O(lazy_pages)).
  returned: with O(lazy_pages)
  type: bool
lazy_pages_pid:
  description: Pid of the lazy-pages daemon the restore used.
  returned: with O(lazy_pages)
  type: int
tls:
  description: Whether the daemon fetches the pages over TLS.
  returned: with O(lazy_pages)
  type: bool
security:
  description: "The page transport said plainly for reports - C(tls) or C(plaintext (tls: false))."
  returned: with O(lazy_pages)
  type: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.haul.live.plugins.module_utils._common import HaulError, fail
from ansible_collections.haul.live.plugins.module_utils import _cgroup, _criu, _images
from ansible_collections.haul.live.plugins.module_utils._restore import restore_container
from ansible_collections.haul.live.plugins.module_utils._migration.destination import prepare_receive, receive_container
from ansible_collections.haul.live.plugins.module_utils._lazy_pages import restore_lazy  # post-copy (issue 5)
from ansible_collections.haul.live.plugins.module_utils._postcopy import lazy_argspec
from ansible_collections.haul.live.plugins.module_utils._runtimes import registry
from ansible_collections.haul.live.plugins.module_utils._validate import check_module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            images_dir=dict(type='path', required=True),
            name=dict(type='str'),
            root=dict(type='path'),
            cgroup=dict(type='str'),
            external=dict(type='list', elements='str', default=[]),
            network_lock=dict(type='str', choices=['nftables', 'iptables', 'skip'], default='nftables'),
            tcp_established=dict(type='bool', default=False),
            tcp_close=dict(type='bool', default=False),
            manage_cgroups_mode=dict(type='str', choices=['soft', 'full', 'strict', 'ignore'], default='soft'),
            verify=dict(type='str', choices=['sha256', 'size'], default='sha256'),
            check_timeout=dict(type='int', default=5),
            criu_path=dict(type='path'),
            lazy_pages=dict(type='bool', default=False),  # post-copy (issue 5)
            runtime=dict(type='str', choices=['lab', 'podman', 'lxc'], default='lab'),
            handoff=dict(type='dict', options=dict(
                id=dict(type='str', required=True),
                timeout=dict(type='int', default=300),
                restore_timeout=dict(type='int'),
                commit_timeout=dict(type='int'),
                min_criu_version=dict(type='str'),
                source=dict(type='dict'),
                expected_bytes=dict(type='int', default=0),
                lazy=lazy_argspec(ready_timeout=30),
            )),
        ),
        required_by={'handoff': ('name',)},
        mutually_exclusive=[['lazy_pages', 'handoff']],  # post-copy (issue 5)
        supports_check_mode=True,
    )
    check_module(module, name='name', cgroup='cgroup', **{'handoff.id': 'id', 'handoff.lazy.address': 'host'})
    if module.params['tcp_established'] and module.params['tcp_close']:
        module.fail_json(msg='options: tcp_established and tcp_close are mutually exclusive',
                         failed_step='options')
    local = module.params['runtime'] != 'lab' and not module.params['handoff']
    if module.params['runtime'] != 'lab' and ((module.params['handoff'] or {}).get('lazy') or module.params['lazy_pages']
                                              or not module.params['name']):
        module.fail_json(msg='runtime %s: give name, without lazy or lazy_pages' % module.params['runtime'],
                         failed_step='options')
    try:
        if local:
            runtime = registry.runtime(module.params['runtime'])
            module.exit_json(**(dict(changed=True, name=module.params['name'], msg='would restore it from %s'
                                     % module.params['images_dir']) if module.check_mode
                                else runtime.restore_local(module.params)))
        if module.params['handoff'] and module.check_mode:
            module.exit_json(changed=True, images_dir=module.params['images_dir'], name=module.params['name'],
                             msg='would wait for a handoff from the source, then restore')
        if module.params['handoff']:
            params = dict(module.params, verify='size')
            lazy = module.params['handoff']['lazy']
            restore_fn = restore_lazy if lazy else restore_container
            if params['runtime'] != 'lab':
                restore_fn = registry.runtime(params['runtime']).restore_held
            result = receive_container(params, lambda p: prepare_receive(p, _criu, _cgroup, _images),
                                       restore_fn, _cgroup,
                                       criu_path=_criu.find_criu(params['criu_path']))
        elif module.params['lazy_pages']:  # post-copy (issue 5)
            result = restore_lazy(module.params, check_mode=module.check_mode, diff=module._diff)
        else:
            result = restore_container(module.params, check_mode=module.check_mode, diff=module._diff)
    except HaulError as e:
        fail(module, e, images_dir=module.params['images_dir'])
    module.exit_json(**result)


if __name__ == '__main__':
    main()
