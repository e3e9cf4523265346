#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: lazy_pages
short_description: Run CRIU's lazy-pages daemon for a post-copy restore
version_added: 0.2.0
description:
  - Runs C(criu lazy-pages --page-server) on the destination, detached, against the page server of a
    lazy dump on the source (M(haul.live.criu_dump) with O(haul.live.criu_dump#module:lazy)). It returns once
    the daemon is ready (CRIU's status fd, no sleeps), with its pid and log path.
  - Then M(haul.live.criu_restore) with O(haul.live.criu_restore#module:lazy_pages=true) restores the container,
    whose missing pages come through the daemon (userfaultfd); the daemon also pulls the remaining pages and
    exits once it has them all.
  - O(state=finished) waits until the daemon has exited, that is until every page has moved, and fails if the
    transfer broke. On the source (where no daemon ran for O(images_dir)) it waits for the end of the lazy dump of
    M(haul.live.criu_dump) instead, after which the source's tasks are gone. Only the destination's wait proves
    that every page moved (CRIU's page server also ends without error when the daemon dies mid-transfer).
  - O(state=finished) judges the transfer by its progress, not by a fixed total (see O(timeout)). A slow transfer that
    keeps moving pages is waited for, however long it takes; one where no page moves fails.
  - Once the destination has resumed, the source never resumes, so a broken or stalled transfer means the container is
    LOST; the failure says so, why (the telling line of the CRIU log) and what had moved (RV(progress)). With
    O(kill_lost=true) the destination's copy, which would run on memory that never comes, is killed then.
  - O(state=reserved) reserves a free TCP port for a page server on this host (the source), so that parallel post-copy
    migrations never get the same port. It is held until the lazy dump that uses it ends (or O(timeout) seconds when no
    lazy dump of O(images_dir) starts).
  - O(state=absent) stops the daemon, and on the source a lazy dump of that images directory that still serves
    pages (an abort; its tasks then stay frozen in the freezer cgroup - thaw them only if the destination has not
    resumed, else kill them).
  - TLS is on by default. Make a CA and one certificate per host with openssl (on any machine), for example
    C(openssl req -x509 -newkey rsa:3072 -nodes -days 30 -subj /CN=haul-ca -keyout ca.key -out ca.pem), then for
    each host C(openssl req -newkey rsa:3072 -nodes -subj /CN=ADDR -keyout HOST.key -out HOST.csr) and
    C(openssl x509 -req -in HOST.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -extfile HOST.ext -out HOST.pem)
    where C(HOST.ext) holds C(subjectAltName=IP:ADDR) (the source's certificate is checked against the address
    this module connects to, unless O(tls_no_cn_verify)). Copy C(ca.pem) and the host's own C(.pem) and C(.key)
    (mode 0600) to each host, and give them to the source's dump and to this module.
  - "With O(tls=false) the pages travel in plain text; the result then says C(tls=false) and
    C(security=plaintext (tls: false)) so that a report can show it."
author:
  - haul.live developers (@haul-live)
extends_documentation_fragment:
  - haul.live.attributes
attributes:
  check_mode:
    support: full
    details:
      - Reports whether a daemon would be started or stopped; nothing is started, stopped or waited for. With
        O(state=reserved) a free port is found but not reserved.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - A daemon already running for that images directory gives changed=false with O(state=started); none running
        gives changed=false with O(state=absent). O(state=reserved) keeps (and extends) a live reservation of
        O(images_dir) whose port is still free, with changed=false.
options:
  images_dir:
    description:
      - The images directory of the container on this host (synced from the source). The daemon's socket
        C(lazy-pages.socket) and its log C(lazy-pages.log) go there.
    type: path
    required: true
  state:
    description:
      - V(started) - the daemon runs (started if needed).
      - V(absent) - no daemon runs for that images directory.
      - V(finished) - wait until the daemon has exited after moving every page (see O(timeout)).
      - V(reserved) - reserve a free port for the page server of a lazy dump of O(images_dir) on this host (RV(port)).
    type: str
    choices: [started, absent, finished, reserved]
    default: started
  address:
    description:
      - Address of the source's page server. Required with O(state=started) and O(state=reserved) (there, the address
        the page server will listen on).
    type: str
  port:
    description: TCP port of the source's page server.
    type: int
    default: 27100
  port_range:
    description: With O(state=reserved), the first and the last port to choose from.
    type: list
    elements: int
    default: [27100, 27899]
  kill_lost:
    description:
      - With O(state=finished) on the destination, when the transfer breaks or stalls (the container is lost), stop the
        daemon and kill the restored copy in cgroup O(cgroup) (it would run on memory that never comes; once the daemon
        is gone, the kernel fills its missing pages with zeroes).
    type: bool
    default: false
  cgroup:
    description: The restored container's cgroup (relative to the hierarchy's root), for O(kill_lost).
    type: str
  ready_timeout:
    description: Seconds to wait for the daemon's readiness.
    type: int
    default: 30
  timeout:
    description:
      - With O(state=finished), the progress timeout - the transfer fails when no page has moved for O(timeout)
        seconds, or for longer than twice what the remaining bytes need at the rate measured, whichever is longer.
        There is no limit on the total, so a slow transfer that keeps moving is never declared lost. Progress is read
        from the daemon's log on the destination, from the page server's connection (C(ss -tin)) on the source.
      - With O(state=absent), seconds to wait for the daemon to stop; with O(state=reserved), seconds the port stays
        reserved when no lazy dump of O(images_dir) starts.
    type: int
    default: 300
  tls:
    description: Use TLS with the page server. Both sides must agree.
    type: bool
    default: true
  tls_cacert:
    description: CA certificate to verify the page server with. Default, CRIU's C(/etc/pki/CA/cacert.pem).
    type: path
  tls_cert:
    description: This host's certificate. Default, CRIU's C(/etc/pki/criu/cert.pem).
    type: path
  tls_key:
    description: Key of O(tls_cert). Default, CRIU's C(/etc/pki/criu/private/key.pem).
    type: path
  tls_no_cn_verify:
    description: Do not check that the page server's certificate CN matches its address.
    type: bool
    default: false
  criu_path:
    description: Path of the criu binary. Default, C(criu) in C(PATH) or in C(/usr/sbin).
    type: path
notes:
  - Requires criu >= 4.0 with userfaultfd support in the kernel (C(uffd) and C(uffd-noncoop) in
    M(haul.live.criu_check)), and C(fs.pipe-max-size) of 8388608 or more on the source when CRIU lacks CAP_SYS_RESOURCE.
  - The page server of a lazy dump accepts one connection; start this module once per lazy dump.
  - The background processes are supervised; their final status is recorded in C(<images_dir>.postcopy/lazy-pages.json).
seealso:
  - module: haul.live.criu_dump
  - module: haul.live.criu_restore
requirements:
  - criu >= 4.0
'''

EXAMPLES = r'''
- name: Start the lazy-pages daemon against the source's page server
  haul.live.lazy_pages:
    images_dir: /var/lib/haul/images/web1
    address: 198.18.0.11
    port: 27100
    tls_cacert: /etc/haul/pki/ca.pem
    tls_cert: /etc/haul/pki/node2.pem
    tls_key: /etc/haul/pki/node2.key
  register: daemon

- name: Restore lazily
  haul.live.criu_restore:
    images_dir: /var/lib/haul/images/web1
    lazy_pages: true

- name: Wait until every page has moved
  haul.live.lazy_pages:
    images_dir: /var/lib/haul/images/web1
    state: finished
    timeout: 600

- name: Reserve a free port for the page server on the source
  haul.live.lazy_pages:
    images_dir: /var/lib/haul/images/web1
    state: reserved
    address: 198.18.0.11
    timeout: 600
  register: page_server_port

- name: Stop the daemon (cleanup after a failure)
  haul.live.lazy_pages:
    images_dir: /var/lib/haul/images/web1
    state: absent
'''

RETURN = r'''
images_dir:
  description: The images directory.
  returned: always
  type: str
state:
  description: C(running), C(absent) or C(finished).
  returned: success
  type: str
pid:
  description: Pid of the C(criu lazy-pages) daemon.
  returned: when a daemon runs or ran
  type: int
  sample: 4711
supervisor_pid:
  description: Pid of the process that supervises the daemon and records its exit status.
  returned: when a daemon was started
  type: int
log_path:
  description: Path of the daemon's log (C(lazy-pages.log) in the images directory).
  returned: when a daemon runs or ran
  type: str
ready_ms:
  description: Milliseconds from the start until the daemon was ready.
  returned: when a daemon was started
  type: float
waited_ms:
  description: Milliseconds O(state=finished) waited for the last pages.
  returned: with O(state=finished)
  type: float
progress:
  description:
    - What O(state=finished) saw of the transfer - C(moved_bytes), C(total_bytes) (None when unknown), C(rate_bytes_s),
      C(eta_s), C(budget_s) (how long it may go without progress, at the rate measured), C(silent_s) and C(elapsed_s).
  returned: with O(state=finished), also on failure
  type: dict
lost:
  description:
    - Set when the transfer broke or stalled with O(state=finished) - the container is LOST. C(destination_copy)
      (C(killed) with O(kill_lost), else C(left running)), C(daemon_stopped), C(moved_bytes), C(total_bytes) and
      C(log_line) (the telling line of the daemon's log).
  returned: failure of O(state=finished)
  type: dict
reserved_until:
  description: With O(state=reserved), when the reservation of RV(port) expires (epoch seconds) if no lazy dump uses it.
  returned: with O(state=reserved)
  type: float
lazy_dump_pid:
  description: Supervisor pid of the lazy dump that O(state=absent) stopped.
  returned: when a lazy dump was stopped
  type: int
pages_moved_ms:
  description:
    - Milliseconds from the end of the lazy restore (recorded by M(haul.live.criu_restore) in C(restore.json)) until
      the daemon exited with every page moved.
  returned: with O(state=finished), after a lazy restore
  type: float
job:
  description: What O(state=finished) waited for - C(lazy-pages) (the daemon, destination) or C(dump) (the lazy dump, source).
  returned: with O(state=finished)
  type: str
rc:
  description: Exit status of the daemon (or of the lazy dump).
  returned: with O(state=finished)
  type: int
tls:
  description: Whether the page transfer uses TLS.
  returned: with O(state=started)
  type: bool
security:
  description: "The transport, said plainly for reports - C(tls) or C(plaintext (tls: false))."
  returned: with O(state=started)
  type: str
  sample: 'plaintext (tls: false)'
address:
  description: The page server's address.
  returned: with O(state=started)
  type: str
port:
  description: The page server's port (with O(state=reserved), the port reserved).
  returned: with O(state=started) or O(state=reserved)
  type: int
log_tail:
  description: Last lines (at most 20) of the daemon's log.
  returned: failure
  type: list
  elements: str
failed_step:
  description: The step that failed (lazy-pages, ready, transfer, options, port).
  returned: failure
  type: str
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.haul.live.plugins.module_utils._common import HaulError, fail
from ansible_collections.haul.live.plugins.module_utils import _criu, _lazy_pages, _ports, _postcopy, _supervisor, _transfer
from ansible_collections.haul.live.plugins.module_utils._validate import check_module


def run(module):
    p = module.params
    images_dir = os.path.abspath(p['images_dir'])
    result = {'changed': False, 'images_dir': images_dir}
    running = _lazy_pages.find_lazy_pages(images_dir)

    if p['state'] == 'absent':
        dump = _postcopy.find_lazy_dump(images_dir)
        if running:
            result.update(changed=True, pid=running['pid'])
            if not module.check_mode:
                _lazy_pages.stop_lazy_pages(images_dir, timeout=p['timeout'])
        if dump:
            result.update(changed=True, lazy_dump_pid=dump.get('supervisor_pid'))
            if not module.check_mode:
                _postcopy.stop_lazy_dump(images_dir, timeout=p['timeout'])
        result['state'] = 'absent'
        return result

    if p['state'] == 'reserved':
        if not p['address']:
            raise HaulError('options', 'address (where the page server will listen) is required with state=reserved')
        if len(p['port_range']) != 2:
            raise HaulError('options', 'port_range takes two ports, the first and the last')
        got = _ports.reserve_port(p['address'], images_dir, p['port_range'][0], p['port_range'][1],
                                  ttl=p['timeout'], reserve=not module.check_mode)
        result.update(changed=not got.get('kept'), state='reserved', port=got['port'], address=p['address'],
                      reserved_until=got['expires'])
        return result

    if p['state'] == 'finished':
        if module.check_mode:
            result['state'] = 'finished'
            return result
        # the destination waits for its daemon; the source (no daemon there) for its lazy dump
        job = 'dump' if _supervisor.read_state(_supervisor.state_path(images_dir, 'lazy-pages')) is None \
            and _supervisor.read_state(_supervisor.state_path(images_dir, 'dump')) is not None else 'lazy-pages'
        try:
            st = _transfer.wait_transfer(images_dir, job, p['timeout'])
        except HaulError as e:
            if e.step == 'transfer' and job == 'lazy-pages':
                cg = None
                if p['kill_lost'] and p['cgroup']:
                    from ansible_collections.haul.live.plugins.module_utils import _cgroup  # pylint: disable=import-outside-toplevel
                    try:
                        cg = _cgroup.Cgroup(p['cgroup'])
                    except HaulError:
                        cg = None
                lost = _transfer.abandon_lost(images_dir, cg) if p['kill_lost'] else {
                    'destination_copy': 'left running', 'daemon_stopped': False}
                e.details['lost'] = lost
                e.cause = 'the container is LOST: %s' % e.cause
            raise
        result.update(state='finished', job=job, pid=st.get('pid') or st.get('dump_pid'), rc=st.get('rc'),
                      waited_ms=st.get('waited_ms'), log_path=st.get('log_path'), progress=st.get('progress'))
        restored_at = _lazy_pages.restored_at(images_dir)
        if restored_at and st.get('ended'):
            result['pages_moved_ms'] = round((st['ended'] - restored_at) * 1000, 1)
        return result

    if not p['address']:
        raise HaulError('options', 'address (of the source page server) is required with state=started')
    if not p['tls'] and any(p[k] for k in ('tls_cacert', 'tls_cert', 'tls_key')):
        raise HaulError('options', 'tls_cacert, tls_cert or tls_key given with tls false')
    if not os.path.isdir(images_dir):
        raise HaulError('lazy-pages', 'images directory %s does not exist: sync the images first' % images_dir)
    criu_path = _criu.find_criu(p['criu_path'])
    result.update(tls=p['tls'], security=_postcopy.security_of(p['tls']), address=p['address'], port=p['port'])
    if running:
        result.update(state='running', pid=running['pid'], supervisor_pid=running.get('supervisor_pid'),
                      log_path=running.get('log_path'))
        return result
    result['changed'] = True
    if module.check_mode:
        result['state'] = 'running'
        return result
    rep = _lazy_pages.start_lazy_pages(criu_path, images_dir, p['address'], p['port'], ready_timeout=p['ready_timeout'],
                                       tls=p['tls'], tls_cacert=p['tls_cacert'], tls_cert=p['tls_cert'],
                                       tls_key=p['tls_key'], tls_no_cn_verify=p['tls_no_cn_verify'])
    result.update(state='running', pid=rep.get('pid'), supervisor_pid=rep.get('supervisor_pid'),
                  log_path=rep.get('log_path'), ready_ms=rep.get('ready_ms'))
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            images_dir=dict(type='path', required=True),
            state=dict(type='str', choices=['started', 'absent', 'finished', 'reserved'], default='started'),
            address=dict(type='str'),
            port=dict(type='int', default=27100),
            port_range=dict(type='list', elements='int', default=[27100, 27899]),
            kill_lost=dict(type='bool', default=False),
            cgroup=dict(type='str'),
            ready_timeout=dict(type='int', default=30),
            timeout=dict(type='int', default=300),
            tls=dict(type='bool', default=True),
            tls_cacert=dict(type='path'),
            tls_cert=dict(type='path'),
            tls_key=dict(type='path'),
            tls_no_cn_verify=dict(type='bool', default=False),
            criu_path=dict(type='path'),
        ),
        required_if=[('state', 'started', ('address',)), ('state', 'reserved', ('address',))],
        required_together=[('tls_cert', 'tls_key')],
        supports_check_mode=True,
    )
    check_module(module, address='host')
    try:
        result = run(module)
    except HaulError as e:
        fail(module, e, images_dir=module.params['images_dir'])
    module.exit_json(**result)


if __name__ == '__main__':
    main()
