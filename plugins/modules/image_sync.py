#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: image_sync
short_description: Copy a CRIU images directory (and a root filesystem) to another host
version_added: 0.1.0
description:
  - Runs on the source host and copies an images directory, and optionally a container's root
    filesystem, to a destination host with rsync over SSH.
  - Keeps sparse files, hard links, extended attributes and numeric owners. Interrupted transfers
    resume (C(--partial-dir=.haul-partial)).
  - The destination trees mirror the source trees (C(--delete)) unless O(delete=false). The files
    M(haul.live.criu_restore) writes into the destination's images directory (C(restore.json),
    C(restore.log), C(stats-restore)) are kept.
  - With O(verify=true), the receiving side checks every file listed in the images directory's
    C(manifest.json) (size and SHA-256) after the copy.
  - With nothing to send, it reports RV(ignore:changed=false).
  - With O(probe_bytes), it copies nothing and measures the link instead - the rate at which this
    host moves bytes to O(dest_host) over the same SSH as a copy (RV(link_bytes_s)), for the
    strategy C(auto) (see C(docs/strategies.md)).
author:
  - haul.live developers (@haul-live)
requirements:
  - rsync and ssh on the source host; rsync, and python3 when O(verify=true), on the destination host.
  - For O(probe_bytes) - ssh on the source host, C(dd) on the destination host.
options:
  src:
    description:
      - The images directory on this host. Its contents are copied into O(dest).
      - Required unless O(probe_bytes) is set.
    type: path
  dest:
    description:
      - The images directory on the destination host. Missing parents are created; the directory
        itself is created with mode C(0700).
      - Required unless O(probe_bytes) is set.
    type: path
  dest_host:
    description:
      - Host name or address of the destination, as this host reaches it over SSH.
    type: str
    required: true
  dest_user:
    description:
      - The remote user. Validated (a login name, never starting with C(-)).
    type: str
    default: root
  ssh_key:
    description:
      - Private key file on this host used to log in to O(dest_host) (C(ssh -i)).
    type: path
  ssh_port:
    description:
      - SSH port of O(dest_host).
    type: int
    default: 22
  ssh_options:
    description:
      - Extra SSH options, each of the form C(Key=Value) (passed as C(-o Key=Value)).
      - They take precedence over the options this module sets itself (C(BatchMode=yes),
        C(StrictHostKeyChecking=yes), C(ConnectTimeout), C(ServerAliveInterval=5)).
      - Refused, with an error naming the option - C(ProxyCommand), C(ProxyJump), C(LocalCommand),
        C(PermitLocalCommand), C(KnownHostsCommand), C(RemoteCommand), C(Include), C(Match), C(Host),
        C(StrictHostKeyChecking) other than V(yes), C(UserKnownHostsFile=/dev/null) (or V(none)), and
        anything with a newline. See docs/reliability.md, "SSH and input".
    type: list
    elements: str
    default: []
  known_hosts:
    description:
      - The known_hosts file on this host that holds the destination's host keys (C(UserKnownHostsFile)).
        The migrate role writes one per migration from the keys the controller read over its own
        connection. Default, ssh's own (C(~/.ssh/known_hosts)).
    type: path
  strict_host_key_checking:
    description:
      - SSH C(StrictHostKeyChecking). Only V(yes) - a host key that is not in O(known_hosts) is refused;
        trust on first use (C(accept-new)) and no check (C(no)) are not offered.
    type: str
    choices: ['yes']
    default: 'yes'
  connect_timeout:
    description:
      - SSH C(ConnectTimeout), in seconds.
    type: int
    default: 10
  bwlimit_kib:
    description:
      - Bandwidth limit in KiB per second (C(rsync --bwlimit)). V(0) or unset means no limit.
    type: int
  compress:
    description:
      - Compress data on the wire (C(rsync --compress)). It costs CPU on both hosts and only pays
        on slow links; the holes of sparse files are sent as zeros, which compress well.
    type: bool
    default: false
  rootfs_src:
    description:
      - A second tree to copy, usually the container's root filesystem on this host.
    type: path
  rootfs_dest:
    description:
      - Where O(rootfs_src) goes on the destination host.
    type: path
  delete:
    description:
      - Delete files in the destination trees that are not in the source trees.
    type: bool
    default: true
  allow_vanished:
    description:
      - Files that vanish while rsync reads them (rsync's exit 24) do not fail the module; RV(vanished) then says
        so. For a tree in use, such as the root filesystem of a container that still runs (a pre-sync before
        its freeze, after which the sync inside the freeze sends what changed since, deletions too).
    type: bool
    default: false
  verify:
    description:
      - After the copy, verify on the destination that every file listed in O(src)C(/manifest.json)
        exists with the listed size and SHA-256, by running C(python3 -) there over SSH.
      - When O(src) has no C(manifest.json) (not a complete M(haul.live.criu_dump) images
        directory), the module fails; set O(verify=false) to copy a plain directory.
      - Not done in check mode.
    type: bool
    default: true
  timeout:
    description:
      - Seconds without any data moving before rsync gives up (C(rsync --timeout)), so that a dead
        host does not hang the play.
    type: int
    default: 300
  probe_bytes:
    description:
      - Copy nothing; measure the link to O(dest_host) instead, with this many bytes (at most
        1073741824). V(0) (the default) copies.
      - "It pipes that many bytes of random data (one random MiB, repeated, so that SSH compression
        gains nothing) through C(ssh DEST_HOST 'env LC_ALL=C dd of=/dev/null bs=1M') with the SSH
        options of a copy (O(dest_user), O(ssh_key), O(ssh_port), O(ssh_options),
        O(strict_host_key_checking), O(connect_timeout)), and divides by the transfer time C(dd)
        reports on the destination, so that the SSH handshake does not count."
      - Nothing is written on either host. O(src), O(dest), O(rootfs_src) and O(rootfs_dest) must not
        be given. O(bwlimit_kib) does not apply to the probe.
      - V(67108864) (64 MiB) takes about half a second on a link of 200 MiB/s; smaller probes read
        lower rates, as SSH and TCP have not reached their full speed yet.
    type: int
    default: 0
  progress_file:
    description:
      - While rsync copies, write its latest progress (bytes, share, rate, ETA - numbers only) to this file
        every second, for M(haul.live.progress) to print while the task runs async. The file (mode 0600, its
        directory made 0700) is removed when the module ends.
    type: path
extends_documentation_fragment:
  - haul.live.attributes
  - haul.live.jump
attributes:
  check_mode:
    support: full
    details:
      - Runs C(rsync --dry-run) and returns what would be sent.
      - With O(probe_bytes), measures the link in check mode too (it writes nothing anywhere).
  diff_mode:
    support: partial
    details:
      - The diff lists the files rsync sends or deletes (C(--itemize-changes)), at most 100 per tree.
  idempotent:
    support: full
notes:
  - The module runs rsync on the source host; the source host must be able to log in to
    O(dest_host) with O(ssh_key) (or its default keys) without a password.
  - Never copy the images of a running container; freeze or dump it first.
seealso:
  - module: haul.live.criu_dump
  - module: haul.live.criu_restore
'''

EXAMPLES = r'''
- name: Send the images of ct1 to node2
  haul.live.image_sync:
    src: /var/lib/haul/images/ct1
    dest: /var/lib/haul/images/ct1
    dest_host: 198.18.0.12
    ssh_key: /root/.ssh/haul_migrate
  register: sync

- name: Send the images and the root filesystem, at most 50 MiB/s
  haul.live.image_sync:
    src: /var/lib/haul/images/ct1
    dest: /var/lib/haul/images/ct1
    rootfs_src: /var/lib/haul/containers/ct1/rootfs
    rootfs_dest: /var/lib/haul/containers/ct1/rootfs
    dest_host: node2.example.com
    ssh_port: 2222
    known_hosts: /etc/haul/known_hosts
    bwlimit_kib: 51200

- name: Copy a plain directory, without manifest verification
  haul.live.image_sync:
    src: /srv/data
    dest: /srv/data
    dest_host: 198.18.0.12
    verify: false

- name: Measure the link from this host to node2, with 64 MiB
  haul.live.image_sync:
    dest_host: 198.18.0.12
    ssh_key: /root/.ssh/haul_migrate
    probe_bytes: 67108864
  register: link

- name: Show the rate
  ansible.builtin.debug:
    msg: "{{ (link.link_bytes_s / 1048576) | round(1) }} MiB/s"
'''

RETURN = r'''
link_bytes_s:
  description: The measured rate from this host to O(dest_host) over SSH, in bytes per second.
  returned: success, with O(probe_bytes)
  type: int
  sample: 262144000
probe:
  description: The link measurement.
  returned: success, with O(probe_bytes)
  type: dict
  contains:
    bytes:
      description: Bytes sent.
      type: int
      sample: 67108864
    seconds:
      description: Transfer time the rate is computed from.
      type: float
      sample: 0.256
    duration_s:
      description: Wall-clock duration of the whole probe, SSH connection included.
      type: float
      sample: 0.35
    timed_by:
      description: V(dd) (the transfer time dd reported on the destination) or V(local) (the wall-clock time
        here, SSH handshake included, when dd's summary could not be read).
      type: str
      sample: dd
vanished:
  description: Whether files vanished while rsync read them (only with O(allow_vanished); the copy then lacks them).
  returned: success, without O(probe_bytes)
  type: bool
  sample: false
bytes_sent:
  description: Bytes rsync sent over the connection (all trees; would send, in check mode).
  returned: success, without O(probe_bytes)
  type: int
  sample: 270123456
total_size:
  description: Total size of the files of the source trees, in bytes.
  returned: success, without O(probe_bytes)
  type: int
  sample: 269484032
files_transferred:
  description: Number of regular files sent (all trees).
  returned: success, without O(probe_bytes)
  type: int
  sample: 12
duration_s:
  description: Wall-clock duration of the copy and the verification, in seconds.
  returned: success, without O(probe_bytes)
  type: float
  sample: 1.04
verified:
  description: Whether the manifest was verified on the destination.
  returned: success, without O(probe_bytes)
  type: bool
  sample: true
verified_files:
  description: Number of files of the manifest found intact on the destination.
  returned: success, without O(probe_bytes)
  type: int
  sample: 11
trees:
  description: One entry per tree copied, with rsync's statistics.
  returned: success, without O(probe_bytes)
  type: list
  elements: dict
  contains:
    src:
      description: Source directory.
      type: str
    dest:
      description: Destination, as C(user@host:path).
      type: str
    changed:
      description: Whether rsync sent, changed or deleted anything in this tree.
      type: bool
    changes:
      description: Number of items rsync listed as changed.
      type: int
    files_transferred:
      description: Number of regular files sent.
      type: int
    bytes_sent:
      description: Bytes sent for this tree.
      type: int
    total_size:
      description: Total size of the files of the tree.
      type: int
    duration_s:
      description: Duration of this rsync run.
      type: float
failed_step:
  description: The step that failed, V(sync), V(verify) or V(probe).
  returned: failure
  type: str
  sample: sync
rc:
  description: Exit code of rsync or ssh, on failure.
  returned: failure
  type: int
  sample: 255
stderr_tail:
  description: The last lines of rsync's or ssh's standard error, on failure.
  returned: failure
  type: list
  elements: str
'''

import functools
import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.haul.live.plugins.module_utils._common import MANIFEST, HaulError, fail
from ansible_collections.haul.live.plugins.module_utils._progress import ProgressFile, run_streaming
from ansible_collections.haul.live.plugins.module_utils._validate import check_module
from ansible_collections.haul.live.plugins.module_utils._linkprobe import MAX_PROBE_BYTES, probe_link
from ansible_collections.haul.live.plugins.module_utils._transport import RECEIVER_FILES, RsyncRunner, SshTarget, jump_argspec
from ansible_collections.haul.live.plugins.module_utils._verify import verify_manifest_remote


def probe(module, target):
    """The link measurement of O(probe_bytes): exit with link_bytes_s and probe."""
    p = module.params
    given = [k for k in ('src', 'dest', 'rootfs_src', 'rootfs_dest') if p[k]]
    if given:
        raise HaulError('probe', 'probe_bytes measures the link and copies nothing: do not give %s' % ', '.join(given))
    if p['probe_bytes'] > MAX_PROBE_BYTES:
        raise HaulError('probe', 'probe_bytes must be at most %d, not %d' % (MAX_PROBE_BYTES, p['probe_bytes']))
    res = probe_link(target, module.run_command, p['probe_bytes'])
    rate = res.pop('link_bytes_s')
    module.exit_json(changed=False, link_bytes_s=rate, probe=res)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type='path'),
            dest=dict(type='path'),
            dest_host=dict(type='str', required=True),
            dest_user=dict(type='str', default='root'),
            ssh_key=dict(type='path'),
            ssh_port=dict(type='int', default=22),
            ssh_options=dict(type='list', elements='str', default=[]),
            known_hosts=dict(type='path'),
            jump=jump_argspec(),
            strict_host_key_checking=dict(type='str', choices=['yes'], default='yes'),
            connect_timeout=dict(type='int', default=10),
            bwlimit_kib=dict(type='int'),
            compress=dict(type='bool', default=False),
            rootfs_src=dict(type='path'),
            rootfs_dest=dict(type='path'),
            delete=dict(type='bool', default=True),
            allow_vanished=dict(type='bool', default=False),
            verify=dict(type='bool', default=True),
            timeout=dict(type='int', default=300),
            probe_bytes=dict(type='int', default=0),
            progress_file=dict(type='path'),
        ),
        required_together=[('rootfs_src', 'rootfs_dest')],
        required_if=[('probe_bytes', 0, ('src', 'dest'))],
        supports_check_mode=True,
    )
    check_module(module, dest_host='host', dest_user='user', ssh_options='ssh_option',
                 **{'jump.host': 'host', 'jump.user': 'user'})
    p = module.params
    start = time.time()
    try:
        if p['probe_bytes'] < 0:
            raise HaulError('probe', 'probe_bytes must be 0 (copy) or a positive size, not %d' % p['probe_bytes'])
        if p['probe_bytes']:
            probe(module, SshTarget(p['dest_host'], user=p['dest_user'], port=p['ssh_port'], key=p['ssh_key'],
                                    options=p['ssh_options'], strict_host_key_checking=p['strict_host_key_checking'],
                                    connect_timeout=p['connect_timeout'], known_hosts=p['known_hosts'], jump=p['jump']))
        rsync = module.get_bin_path('rsync')
        if not rsync:
            raise HaulError('sync', 'rsync is not installed on this host (install the rsync package)')
        if p['verify'] and not os.path.isfile(os.path.join(p['src'], MANIFEST)):
            raise HaulError('verify', 'no %s in %s (not a complete images directory?); '
                            'set verify=false to copy a plain directory' % (MANIFEST, p['src']))
        target = SshTarget(p['dest_host'], user=p['dest_user'], port=p['ssh_port'], key=p['ssh_key'],
                           options=p['ssh_options'], strict_host_key_checking=p['strict_host_key_checking'],
                           connect_timeout=p['connect_timeout'], known_hosts=p['known_hosts'], jump=p['jump'])
        progress = ProgressFile(p['progress_file']) if p['progress_file'] else None
        runner = RsyncRunner(module.run_command, target, bwlimit_kib=p['bwlimit_kib'], timeout=p['timeout'],
                             rsync_bin=rsync, compress=p['compress'],
                             stream=functools.partial(run_streaming, on_progress=progress.write) if progress else None)
        try:
            trees = [runner.sync(p['src'], p['dest'], dry_run=module.check_mode, delete=p['delete'], mkdir_mode='0700',
                                 protect=RECEIVER_FILES, vanished_ok=p['allow_vanished'])]
            if p['rootfs_src']:
                trees.append(runner.sync(p['rootfs_src'], p['rootfs_dest'], dry_run=module.check_mode,
                                         delete=p['delete'], vanished_ok=p['allow_vanished']))
        finally:
            if progress:
                progress.remove()
        verification = None
        if p['verify'] and not module.check_mode:
            verification = verify_manifest_remote(module.run_command, target, p['dest'])
    except HaulError as e:
        fail(module, e, duration_s=round(time.time() - start, 3))

    changed = any(t['changed'] for t in trees)
    diff_lines = []
    for t in trees:
        diff_lines.append('# %s -> %s' % (t['src'], t['dest']))
        diff_lines.extend(t.pop('itemized'))
    module.exit_json(
        changed=changed,
        bytes_sent=sum(t['bytes_sent'] for t in trees),
        total_size=sum(t['total_size'] for t in trees),
        files_transferred=sum(t['files_transferred'] for t in trees),
        duration_s=round(time.time() - start, 3),
        vanished=any(t.get('vanished') for t in trees),
        verified=verification is not None,
        verified_files=verification['checked'] if verification else 0,
        trees=trees,
        diff=dict(prepared='\n'.join(diff_lines) + '\n') if changed else dict(),
    )


if __name__ == '__main__':
    main()
