#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: handoff
short_description: Move a container to another host in one critical section, with rollback
version_added: 0.1.0
description:
  - Runs on the source host. Drives the whole critical section of a migration
    directly between the two hosts, so that the time the container is frozen holds no Ansible
    round trip - freeze and dump (M(haul.live.criu_dump)), rsync of the images and of the root
    filesystem's last changes (M(haul.live.image_sync)), restore on the destination, confirm.
  - The destination must already run M(haul.live.criu_restore) with its O(haul.live.criu_restore#module:handoff)
    option, as an async task started before this one. This module talks to it over one SSH
    session (relaying commands to its control directory) and every transfer reuses that
    connection.
  - "The rollback guarantee: the destination restores the container stopped and resumes it only when
    this module says commit. Until then any failure - dump, sync, restore, a timeout, a lost
    destination, the task being interrupted - first makes the destination kill its copy (abort),
    then thaws the source. After commit the source never resumes; it is killed, and its images
    removed, once the destination reports the container running. The rule, phase by phase, is in
    C(docs/reliability.md) (Phases and the rollback rule)."
  - "Phases: the module records the migration's phase in the container's lease on this host
    (C(/run/haul/leases/NAME.json)) - FROZEN, DUMPED, SENT, COMMITTED, RESUMED, DONE. It renews the
    lease the role took with the same O(handoff_id), or takes it (and releases it at the end) when
    it runs alone; another migration's lease fails before anything is touched. COMMITTED is
    recorded durably before the commit is sent; from then on SIGTERM, SIGINT and SIGHUP no longer
    interrupt the module, which finishes the move."
  - If the confirmation is lost after commit, the source stays frozen and the module fails saying
    so (C(source_state=frozen)). Running the play again finds where the container runs and
    finishes the job.
  - "A watchdog starts with the freeze (a detached process): if this module dies (SIGKILL, the OOM
    killer) or its lease expires before COMMITTED is recorded, the watchdog kills what the module left
    running and thaws the source, which runs again within seconds; the destination, which
    never resumes without commit, kills its copy on its own. With COMMITTED recorded it touches nothing."
author:
  - haul.live developers (@haul-live)
options:
  images_dir:
    description: Images directory on this host. Created with mode 0700, removed after success.
    type: path
    required: true
  handoff_id:
    description:
      - The id of this attempt, the same as the destination's O(haul.live.criu_restore#module:handoff.id).
        Use a new one for every attempt.
    type: str
    required: true
  dest_host:
    description: The destination host, as this host reaches it over SSH.
    type: str
    required: true
  dest_user:
    description: The SSH user on the destination. Validated (a login name, never starting with C(-)).
    type: str
    default: root
  dest_images_dir:
    description: Images directory on the destination. Defaults to O(images_dir).
    type: path
  ssh_key:
    description: Private key on this host for SSH to the destination (for example a per-run key).
    type: path
  ssh_port:
    description: SSH port of the destination.
    type: int
  ssh_options:
    description:
      - Extra SSH options, each C(Key=Value).
      - Refused, with an error naming the option - C(ProxyCommand), C(ProxyJump), C(LocalCommand),
        C(PermitLocalCommand), C(KnownHostsCommand), C(RemoteCommand), C(Include), C(Match), C(Host),
        C(StrictHostKeyChecking) other than V(yes), C(UserKnownHostsFile=/dev/null) (or V(none)), and
        anything with a newline. See docs/reliability.md, "SSH and input".
    type: list
    elements: str
    default: []
  known_hosts:
    description:
      - The known_hosts file on this host that holds the destination's pinned host keys. Every ssh and
        rsync runs with C(StrictHostKeyChecking=yes) and C(UserKnownHostsFile) set to it; a host key that
        is not in it is refused. Default, ssh's own (C(~/.ssh/known_hosts)).
      - The migrate role writes one per migration from the keys the controller read over its own connection.
    type: path
  connect_timeout:
    description: Seconds to wait for the SSH connection and for the destination to be ready.
    type: int
    default: 10
  timeout:
    description:
      - Seconds each phase may take (dump, transfer, restore, commit) before the migration is
        rolled back, unless O(timeouts) sets that phase's own.
    type: int
    default: 300
  timeouts:
    description:
      - Per-phase timeouts, in seconds; each one unset is O(timeout) (C(connect) is
        O(connect_timeout) + O(timeout)). docs/reliability.md (Timeouts) describes them.
      - The lease is renewed at each phase for twice the next phase's timeout plus 30 seconds; a
        module that hangs longer is killed by its watchdog, which rolls back (before COMMITTED only).
    type: dict
    suboptions:
      connect:
        description: The SSH session to the destination and the destination saying it waits.
        type: int
      dump:
        description: The CRIU dump, inside the freeze. A CRIU still dumping then is killed and the source thawed.
        type: int
      transfer:
        description: The images and the root filesystem's delta (rsync's I/O timeout).
        type: int
      restore:
        description: From the images being there until the destination reports its copy restored (stopped).
        type: int
      commit:
        description: From the commit until the destination reports its copy running.
        type: int
  sync_rootfs:
    description:
      - Send the last changes of the root directory inside the critical section (to the same path
        on the destination, or O(rootfs_dest)). Sync it beforehand with M(haul.live.image_sync)
        while the container runs, so that only a small delta is left.
    type: bool
    default: true
  rootfs_dest:
    description: Root directory on the destination. Defaults to the same path as on this host.
    type: path
  bwlimit_kib:
    description: Bandwidth limit for the transfers, in KiB/s.
    type: int
  progress_file:
    description:
      - Write the handoff's progress to this file (mode 0600, replaced atomically) as it goes - its phase, its
        pid, how long the container has been frozen, and in post-copy the page transfer's bytes, share, rate
        and ETA - for M(haul.live.progress) to print while the task runs async, and to signal it on Ctrl-C.
        Numbers and phases only. The file is removed when the handoff ends.
      - Writing it is a local file write per phase (and per second of page transfer), never a round-trip.
    type: path
  lazy:
    description:
      - Post-copy. Only the container's state moves inside the freeze; its memory stays here, served
        by CRIU's page server on O(lazy.address):O(lazy.port), and the destination fetches it on
        demand (userfaultfd) after the container resumed there. The destination's
        M(haul.live.criu_restore) needs the same O(haul.live.criu_restore#module:handoff.lazy).
      - "The rollback rule: until the destination resumed the container, any failure aborts the page
        server and thaws the source. Once it resumed, the source never resumes: if the transfer of its
        memory breaks then, the container is lost, and the module fails saying so."
    type: dict
    suboptions:
      address:
        description: The address of this host that the destination reaches; the page server listens there.
        type: str
        required: true
      port:
        description: The page server's TCP port.
        type: int
        default: 27100
      tls:
        description: Encrypt and authenticate the pages with TLS. V(false) sends memory in the clear; the result then says so.
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
        description: Seconds to wait for the page server to be ready.
        type: int
        default: 60
  precopy:
    description:
      - Pre-copy. Before the freeze, pre-dump rounds copy the container's memory while it keeps running. Each
        round goes to C(<images_dir>.precopy/round-N) here and is sent at once to the same place on the
        destination, and the measured rate of that transfer feeds the convergence rule. Inside the freeze the
        final dump writes only the pages changed since the last round (its parent).
      - Rounds stop at O(precopy.max_rounds), at a round of O(precopy.min_pages) pages or fewer, at a round
        more than O(precopy.growth) larger than the one before, at a round less than 10 % smaller than the one before, or
        when the predicted freeze (the last round's pages divided by the measured transfer rate) is within
        O(precopy.max_downtime_ms).
        docs/strategies.md explains the rule.
      - With O(lazy) too, the strategy is hybrid - the rounds, then a lazy final dump whose pages the
        destination fetches after it resumed the container (post-copy of what the rounds left).
      - Needs memory dirty tracking (a kernel with CONFIG_MEM_SOFT_DIRTY) here. Without it the module fails
        before any freeze, naming the option, and the container keeps running.
      - The destination's images directory must have the same name as O(images_dir) (the final dump's parent
        link is relative).
    type: dict
    suboptions:
      max_rounds:
        description: Stop after this many rounds.
        type: int
        default: 8
      min_pages:
        description: Stop after a round that wrote this many pages or fewer.
        type: int
        default: 64
      growth:
        description: Stop after a round that wrote more than this fraction more pages than the round before.
        type: float
        default: 0.10
      max_downtime_ms:
        description: Stop when the predicted freeze is within this many milliseconds.
        type: int
        default: 300
      pre_dump_mode:
        description: How CRIU reads memory in a round - V(splice) (vmsplice, the default) or V(read) (process_vm_readv).
        type: str
        choices: [splice, read]
        default: splice
  keep_images:
    description: Keep the source's images after a successful migration (for debugging).
    type: bool
    default: false
  replay:
    description:
      - For a container with veths - catch, on this host's bridge, the TCP segments its clients send
        while it is frozen (CRIU's network lock drops them), and send them again as soon as it runs on
        the destination (or here again, after a rollback), so that the clients do not wait for their
        retransmission timers (at least 200 ms, doubling). See docs/networking.md.
      - Only TCP is sent again; a segment the container already had is dropped by its TCP stack.
      - Not with O(runtime=podman) (ignored).
    type: bool
    default: true
  runtime:
    description:
      - The runtime that owns the container (docs/runtimes.md). V(lab) - haul.live's own dump (the
        container's O(cgroup) or O(pid)).
      - V(podman) - Podman's own checkpoint, C(podman container checkpoint --export --keep), into
        O(images_dir), after the container's network namespace is closed with an nftables table; Podman's
        CRIU kills the tasks, and a rollback restores the container from its kept checkpoint
        (C(podman container restore NAME)). After the move C(podman rm) removes its record here.
        Needs O(name) (Podman's name) and O(pid) (its init, from M(haul.live.container_info)); stop-and-copy
        only (not with O(lazy) or O(precopy)). The destination runs M(haul.live.criu_restore) with the same
        O(haul.live.criu_restore#module:runtime).
      - V(lxc) - haul.live's own dump of the LXC container O(pid) (held frozen; a rollback thaws it) with
        the CRIU options LXC's own dump uses, so that C(lxc-checkpoint -r) can restore it; the container's
        directory C(/var/lib/lxc/NAME) (config and root filesystem) is sent with the images, and after the
        move C(lxc-destroy) makes LXC here forget it. Stop-and-copy only.
    type: str
    choices: [lab, podman, lxc]
    default: lab
extends_documentation_fragment:
  - haul.live.attributes
  - haul.live.container
  - haul.live.jump
attributes:
  check_mode:
    support: full
    details:
      - In check mode the container is identified and the destination's readiness is not awaited; nothing is frozen.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - Once the container has moved, it no longer runs here and the module reports no change.
notes:
  - Run it as root, as an async task (C(async), C(poll)), so that it finishes or rolls back on its
    own even if the controller goes away.
  - The role C(haul.live.migrate) wires the two sides together; use it rather than this module alone.
seealso:
  - module: haul.live.criu_restore
  - module: haul.live.criu_dump
  - module: haul.live.image_sync
'''

EXAMPLES = r'''
- name: Start the receiving side on the destination
  haul.live.criu_restore:
    images_dir: /var/lib/haul/images/web1
    name: web1
    cgroup: haul/web1
    handoff:
      id: "20261125-1"
      timeout: 300
  delegate_to: node2
  async: 600
  poll: 0
  register: receiver

- name: Move web1 from here to node2
  haul.live.handoff:
    cgroup: haul/web1
    images_dir: /var/lib/haul/images/web1
    handoff_id: "20261125-1"
    dest_host: 198.18.0.12
    ssh_key: /root/.ssh/haul-run
  delegate_to: node1
  async: 600
  poll: 1
  register: moved

- name: Move web1 with pre-copy rounds first (needs CONFIG_MEM_SOFT_DIRTY on node1)
  haul.live.handoff:
    cgroup: haul/web1
    images_dir: /var/lib/haul/images/web1
    handoff_id: "20261125-2"
    dest_host: 198.18.0.12
    ssh_key: /root/.ssh/haul-run
    precopy:
      max_rounds: 8
      max_downtime_ms: 300
  delegate_to: node1
  register: moved

- name: Show how long web1 was frozen
  ansible.builtin.debug:
    msg: "{{ moved.frozen_ms }} ms"
'''

RETURN = r'''
name:
  description: The container's name.
  returned: success
  type: str
  sample: web1
pid:
  description: Host pid of the container's init on the destination.
  returned: success
  type: int
source_pid:
  description: Host pid of the container's init on the source (now killed).
  returned: success
  type: int
frozen_ms:
  description: Time the container was frozen, from the start of the dump until the destination reported it running.
  returned: success and failure
  type: int
  sample: 412
timings_ms:
  description:
    - C(prepare), C(dump), C(sync), C(restore), C(resume), C(frozen) and C(total), in milliseconds.
    - C(pages), for post-copy - from the resume until every page had moved.
    - C(precopy), for pre-copy - the rounds before the freeze.
  returned: success
  type: dict
bytes_images:
  description: Size of the images.
  returned: success
  type: int
bytes_sent:
  description:
    - Bytes sent - rsync (images and root filesystem delta), for pre-copy the rounds, and for post-copy the memory
      pages.
  returned: success
  type: int
bytes_pages:
  description: For post-copy, the bytes of memory the page server sent after the container resumed.
  returned: success
  type: int
dump_stats:
  description: CRIU's dump statistics.
  returned: success
  type: dict
restore_stats:
  description: CRIU's restore statistics, from the destination.
  returned: success
  type: dict
strategy:
  description: V(stopcopy); V(postcopy) with O(lazy); V(precopy) with O(precopy); V(hybrid) with both.
  returned: success
  type: str
precopy:
  description:
    - With O(precopy), the rounds - for each C(round), C(pages_written), C(pages_skipped_parent), C(bytes),
      C(bytes_sent), C(sync_ms), C(transfer_bytes_per_s) and C(predicted_freeze_ms) - and C(stop_rule),
      C(stop_reason) and C(predicted_freeze_ms) (why the rounds stopped).
    - V(null) without O(precopy).
  returned: success
  type: dict
security:
  description: "How the memory travelled - V(ssh) (stop-and-copy), V(tls) or V(plaintext (tls: false)) (post-copy)."
  returned: success
  type: str
source_cleanup:
  description: What was done to the source copy after success (C(killed), C(images_removed)).
  returned: success
  type: dict
sockets:
  description: The TCP and UDP sockets the container held when it was dumped (C(tcp_listen),
    C(tcp_established), C(tcp_other), C(udp), C(total)); see M(haul.live.container_info).
  returned: success
  type: dict
  sample: {tcp_listen: 1, tcp_established: 2, tcp_other: 0, udp: 0, total: 3}
tcp_connections:
  description: Established TCP connections carried to the destination (with O(tcp_established)).
  returned: success
  type: int
  sample: 2
tcp_replayed:
  description:
    - TCP segments that the container's clients sent while it was frozen, caught on this host's bridge
      and sent again once it ran on the destination, so that the clients need not wait for their
      retransmission timers (at least 200 ms, doubling). See docs/networking.md.
  returned: success
  type: int
  sample: 3
network:
  description: The container's veths, addresses and bridges, recreated on the destination (see
    M(haul.live.criu_dump)'s C(network) and docs/networking.md); null without a network namespace of its own.
  returned: success
  type: dict
source_state:
  description:
    - On failure, the state of the source copy - V(running) after a rollback, V(frozen) when it must stay frozen
      (COMMITTED recorded - in doubt, or a post-copy transfer still running; or the lease says this migration may
      not thaw it, and the message says why), V(lost) when a post-copy transfer broke after the container
      resumed on the destination.
  returned: failure
  type: str
phase:
  description: On failure, the phase the migration had reached (PREPARING, FROZEN, DUMPED, SENT, COMMITTED, RESUMED).
  returned: failure
  type: str
  sample: SENT
rollback:
  description: On failure, the actions the rollback rule chose for that phase, in order (docs/reliability.md).
  returned: failure
  type: list
  elements: str
  sample: [remove-destination-copy, thaw-source]
failed_step:
  description:
    - On failure, the step that failed (lease, watchdog, connect, predump, dump, sync, restore, commit, confirm,
      transfer, interrupted).
  returned: failure
  type: str
log_tail:
  description: On failure, the last lines of the CRIU log of the failed step.
  returned: failure, when there is a log
  type: list
  elements: str
'''

import functools

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.haul.live.plugins.module_utils import _cgroup, _images, _transport
from ansible_collections.haul.live.plugins.module_utils._common import HaulError, fail
from ansible_collections.haul.live.plugins.module_utils._checkpoint import dump_container
from ansible_collections.haul.live.plugins.module_utils._container import container_argspec, resolve_target
from ansible_collections.haul.live.plugins.module_utils._migration.source import send_container
from ansible_collections.haul.live.plugins.module_utils._postcopy import lazy_argspec, lazy_dump
from ansible_collections.haul.live.plugins.module_utils._runtimes import registry
from ansible_collections.haul.live.plugins.module_utils._validate import check_module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            container_argspec(),
            images_dir=dict(type='path', required=True),
            handoff_id=dict(type='str', required=True),
            dest_host=dict(type='str', required=True),
            dest_user=dict(type='str', default='root'),
            dest_images_dir=dict(type='path'),
            ssh_key=dict(type='path', no_log=False),
            ssh_port=dict(type='int'),
            ssh_options=dict(type='list', elements='str', default=[]),
            known_hosts=dict(type='path'),
            jump=_transport.jump_argspec(),
            connect_timeout=dict(type='int', default=10),
            timeout=dict(type='int', default=300),
            timeouts=dict(type='dict', options=dict(
                connect=dict(type='int'), dump=dict(type='int'), transfer=dict(type='int'),
                restore=dict(type='int'), commit=dict(type='int'))),
            sync_rootfs=dict(type='bool', default=True),
            rootfs_dest=dict(type='path'),
            bwlimit_kib=dict(type='int'),
            progress_file=dict(type='path'),
            lazy=lazy_argspec(),
            precopy=dict(type='dict', options=dict(
                max_rounds=dict(type='int', default=8),
                min_pages=dict(type='int', default=64),
                growth=dict(type='float', default=0.10),
                max_downtime_ms=dict(type='int', default=300),
                pre_dump_mode=dict(type='str', default='splice', choices=['splice', 'read']),
            )),
            keep_images=dict(type='bool', default=False),
            replay=dict(type='bool', default=True),
            runtime=dict(type='str', choices=['lab', 'podman', 'lxc'], default='lab'),
        ),
        required_one_of=[['cgroup', 'pid']],
        mutually_exclusive=[['cgroup', 'pid']],
        supports_check_mode=True,
    )
    check_module(module, name='name', cgroup='cgroup', handoff_id='id', dest_host='host', dest_user='user',
                 ssh_options='ssh_option', **{'lazy.address': 'host', 'jump.host': 'host', 'jump.user': 'user'})
    p = module.params
    dump_fn = lazy_dump if p['lazy'] else dump_container
    if p['runtime'] != 'lab':
        if p['lazy'] or p['precopy'] or not p['name']:
            module.fail_json(msg='runtime %s: give name, and use stop-and-copy (no lazy, no precopy)' % p['runtime'],
                             failed_step='options')
        dump_fn = registry.runtime(p['runtime']).dump
        if p['runtime'] == 'podman':  # the export carries its root filesystem's changes
            p['replay'] = False
            p['sync_rootfs'] = False
    try:
        target = resolve_target(pid=p['pid'], cgroup=p['cgroup'], step='identify')
    except HaulError as e:
        if 'does not exist' in e.cause:
            # Moved already (or never here): nothing to do on this host.
            module.exit_json(changed=False, msg='%s does not run here' % (p['name'] or p['cgroup'] or p['pid']),
                             frozen_ms=0)
        fail(module, e)
    if module.check_mode:
        module.exit_json(changed=True, name=p['name'], source_pid=target['pid'], frozen_ms=0)
    try:
        if p['runtime'] == 'podman':  # Podman's CLI is slow: ask it before the freeze, not inside
            dump_fn = functools.partial(dump_fn, described=registry.runtime('podman').describe(p['name']))
        result = send_container(p, module.run_command, dump_fn, _cgroup, _images, _transport)
    except HaulError as e:
        fail(module, e)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
