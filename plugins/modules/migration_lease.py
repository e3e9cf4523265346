#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: migration_lease
short_description: Take, renew, query or release the lease that makes one migration the only owner of a container
version_added: 0.1.0
description:
  - A migration holds a lease on the container's name on both of its hosts for its whole life, so
    that no other run freezes, thaws, kills or reuses what it froze or dumped.
  - The lease is a JSON record in C(/run/haul/leases/NAME.json) (tmpfs - a rebooted host has
    neither a lease nor a frozen container), read and written under C(flock) of
    C(/run/haul/leases/NAME.lock), written to a temporary file, fsync'd and renamed.
  - It records the migration id, its owner (the controller host, its C(ansible-playbook) pid, user,
    start), the host's role (V(source) or V(destination)), the phase (C(PREPARING) to C(DONE))
    and an expiry.
  - O(state=present) takes the lease, or renews it when this migration holds it already (the
    phase never moves backwards). When another migration holds a lease that has not expired, it
    fails at once with a message naming the holder, which it returns in RV(holder). An expired
    lease is taken over (C(took_over) in RV(lease) keeps the old record), as is the lease of
    O(take_over).
  - O(state=absent) releases the lease if this migration holds it; it never removes another
    migration's lease (it returns it in RV(holder)).
  - O(state=query) changes nothing and returns the lease and, when another migration holds it,
    RV(holder).
  - O(state=resolve) changes nothing either. Run on the source of a stop-and-copy migration that
    recorded C(COMMITTED) (its source held frozen, in doubt), it reads the phase that migration
    (O(migration_id)) recorded here (its own lease, or the record a later run took over) and
    returns in RV(resolution) what to do, given what the destination shows (O(destination),
    gathered over the controller's own connection) and the source copy's state
    (O(source_state)). The rule is C(_migration.phases.resolve_committed); see docs/reliability.md.
author:
  - haul.live developers (@haul-live)
options:
  name:
    description: The container's name.
    type: str
    required: true
  migration_id:
    description:
      - The migration's id (the handoff id of M(haul.live.handoff)).
      - Required with O(state=present), O(state=absent) and O(state=resolve) (there, the
        migration whose COMMITTED is in doubt).
    type: str
  state:
    description:
      - Take or renew (V(present)), release (V(absent)) or only read (V(query)) the lease, or
        decide how an in-doubt C(COMMITTED) ends (V(resolve), reads only).
    type: str
    choices: [present, absent, query, resolve]
    default: present
  owner:
    description:
      - Who runs the migration, recorded in the lease and named when another run is refused;
        usually C({{ '' | haul.live.lease_owner }}) (host, pid, start_ticks, boot_id, user, started).
      - Only used when the lease is taken.
    type: dict
    default: {}
  role:
    description: This host's part in the migration. Required with O(state=present).
    type: str
    choices: [source, destination]
  ttl:
    description:
      - Seconds the lease lasts from now (O(state=present)). After that another migration may
        take it over. Cover the migration's whole life, including the time its processes
        (the handoff, the receiver) need to finish or roll back on their own.
    type: int
    default: 1320
  phase:
    description:
      - The phase to record with O(state=present); a phase earlier than the recorded one is
        ignored.
    type: str
    choices: [PREPARING, FROZEN, DUMPED, SENT, RESTORED, COMMITTED, RESUMED, DONE]
    default: PREPARING
  take_over:
    description:
      - The id of a migration whose lease may be taken although it has not expired, because its
        owner is known to be dead (see the C(haul.live.lease_owner) filter). Only that holder is
        taken over.
    type: str
  source_state:
    description:
      - With O(state=resolve), the state of the source's copy of the container now
        (M(haul.live.container_info)'s C(state), V(absent) when there is none).
    type: str
    choices: [running, stopped, frozen, absent]
  destination:
    description:
      - With O(state=resolve), what the destination shows, seen over a live connection of the
        controller's.
      - C(reachable) (bool), C(copy) (V(running), V(stopped), V(frozen) or V(absent)).
      - C(receiver_alive) (bool), whether a receiver process of the migration still runs.
      - C(decided) (V(commit), V(abort) or V(none)), the receiver's one decision (its C(decided) link).
      - C(lease) (bool), whether the destination still holds a lease record of that migration
        (false after a reboot).
    type: dict
    default: {}
  lease_dir:
    description: Directory of the lease files (tests use another one).
    type: path
    default: /run/haul/leases
extends_documentation_fragment:
  - haul.live.attributes
attributes:
  check_mode:
    support: full
    details:
      - In check mode, O(state=present) fails just as it would for real when another migration
        holds the lease, and otherwise reports whether it would take one.
  diff_mode:
    support: full
    details:
      - The diff shows the holder and phase before and after.
  idempotent:
    support: full
    details:
      - Renewing the lease this migration holds, with the same phase, is not a change (only its
        expiry moves).
notes:
  - Run it as root on each host of the migration (the source and the destination).
  - Every other haul.live step of a migration checks the same lease (its migration id and
    phase) before it freezes, thaws, restores or removes anything.
seealso:
  - module: haul.live.handoff
  - module: haul.live.criu_restore
'''

EXAMPLES = r'''
- name: Take the lease on the source for 22 minutes
  haul.live.migration_lease:
    name: web1
    migration_id: "{{ migration_id }}"
    owner: "{{ '' | haul.live.lease_owner }}"
    role: source
    ttl: 1320
  delegate_to: node1

- name: Who holds web1 on node2?
  haul.live.migration_lease:
    name: web1
    state: query
  delegate_to: node2
  register: lease

- name: After an in-doubt COMMITTED, decide what to do (reads only)
  haul.live.migration_lease:
    name: web1
    migration_id: "{{ migration_id }}"
    state: resolve
    source_state: frozen
    destination: {reachable: true, copy: stopped, receiver_alive: false, decided: abort, lease: true}
  delegate_to: node1
  register: resolved

- name: Release it at the end
  haul.live.migration_lease:
    name: web1
    migration_id: "{{ migration_id }}"
    state: absent
  delegate_to: node1
'''

RETURN = r'''
lease:
  description:
    - The lease record after the module ran (this migration's with O(state=present); whoever's with
      O(state=query); V(null) when there is none).
    - Keys C(name), C(migration_id), C(owner), C(role), C(phase), C(ttl_s), C(acquired),
      C(updated), C(expires) (seconds since the epoch), and C(took_over) (the record of the
      migration whose lease was taken over, with C(reason) V(expired) or V(abandoned)).
  returned: always
  type: dict
  sample:
    name: web1
    migration_id: 20261130T170000123456-3fa2c1
    owner: {host: ctl, pid: 4242, user: root, started: "2026-11-30T17:00:00Z"}
    role: source
    phase: PREPARING
    ttl_s: 1320
    acquired: 1764522000.1
    updated: 1764522000.1
    expires: 1764523320.1
resolution:
  description:
    - With O(state=resolve), what to do, in order (C(_migration.phases.resolve_committed)).
    - C(result) (V(moved), V(rolled-back), V(in-doubt), V(lost) or V(nothing)), C(actions) (a list of
      V(remove-destination-copy), V(thaw-source), V(kill-source-remains), V(report-in-doubt),
      V(report-lost), V(nothing)), C(why), C(warning), and C(phase) (what the migration recorded
      here; V(null) when no record of it is left).
  returned: with O(state=resolve)
  type: dict
  sample:
    result: rolled-back
    actions: [remove-destination-copy, thaw-source]
    why: "the destination decided abort: its copy never resumes; the source resumes"
    warning: ""
    phase: COMMITTED
holder:
  description: The record of another migration that holds the lease (refused, not released, or found by a query).
  returned: when another migration holds the lease
  type: dict
holder_text:
  description: The holder in words, C(migration ID (OWNER, ROLE, phase P, expires in N s)).
  returned: when another migration holds the lease
  type: str
  sample: migration 20261130T170000123456-3fa2c1 (root@ctl pid 4242, source, phase FROZEN, expires in 1200 s)
expired:
  description: Whether the lease found (RV(lease)) has expired.
  returned: always
  type: bool
released:
  description: Whether O(state=absent) removed this migration's lease (would, in check mode).
  returned: with O(state=absent)
  type: bool
failed_step:
  description: V(lease) (held by another migration, or the lease files could not be used) or V(input).
  returned: failure
  type: str
  sample: lease
'''

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.haul.live.plugins.module_utils._common import HaulError, fail
from ansible_collections.haul.live.plugins.module_utils import _lease
from ansible_collections.haul.live.plugins.module_utils._migration import phases as _phases
from ansible_collections.haul.live.plugins.module_utils._validate import check_module


def argument_spec():
    return dict(
        name=dict(type='str', required=True),
        migration_id=dict(type='str'),
        state=dict(type='str', choices=['present', 'absent', 'query', 'resolve'], default='present'),
        owner=dict(type='dict', default={}),
        role=dict(type='str', choices=list(_lease.ROLES)),
        ttl=dict(type='int', default=1320),
        phase=dict(type='str', choices=list(_phases.PHASES), default=_phases.PREPARING),
        take_over=dict(type='str'),
        source_state=dict(type='str', choices=['running', 'stopped', 'frozen', 'absent']),
        destination=dict(type='dict', default={}),
        lease_dir=dict(type='path', default=_lease.LEASE_DIR),
    )


REQUIRED_IF = [
    ('state', 'present', ('migration_id', 'role')),
    ('state', 'absent', ('migration_id',)),
    ('state', 'resolve', ('migration_id', 'source_state')),
]


def _diff_text(record):
    if not record:
        return 'holder: nobody\n'
    return 'holder: %s\nphase: %s\n' % (record.get('migration_id'), record.get('phase'))


def _holder(result, record, migration_id):
    if record and record.get('migration_id') != migration_id:
        result['holder'] = record
        result['holder_text'] = _lease.describe(record)


def recorded_phase(record, migration_id):
    """The phase ``migration_id`` recorded in this host's lease ``record``: its own record, or
    the one a later migration took over; None when nothing of it is left."""
    while record:
        if record.get('migration_id') == migration_id:
            return record.get('phase') or _phases.PREPARING
        record = record.get('took_over')
    return None


def resolve(record, migration_id, source_state, destination):
    d = destination or {}
    bad = [k for k in ('copy', 'decided') if k in d and d[k] is not None and not isinstance(d[k], str)]
    if bad:
        raise HaulError('input', 'option destination: %s must be strings' % ', '.join(bad))
    phase = recorded_phase(record, migration_id)
    facts = dict(reachable=bool(d.get('reachable')), copy=d.get('copy') or 'absent',
                 receiver_alive=bool(d.get('receiver_alive')), decided=d.get('decided') or 'none',
                 lease=bool(d.get('lease')))
    try:
        out = _phases.resolve_committed(dict(phase=phase or _phases.PREPARING, state=source_state), facts)
    except ValueError as e:
        raise HaulError('input', 'option destination: %s' % e)
    out['phase'] = phase
    out['destination'] = facts
    return out


def run(module):
    p = module.params
    name, mid, lease_dir = p['name'], p['migration_id'], p['lease_dir']
    before = _lease.read(name, lease_dir)
    result = dict(changed=False, lease=before, expired=bool(before) and _lease.expired(before))
    if p['state'] == 'resolve':
        result['resolution'] = resolve(before, mid, p['source_state'], p['destination'])
        return result
    if p['state'] == 'query':
        _holder(result, before, mid)
        return result
    if p['state'] == 'absent':
        ours = bool(before) and before.get('migration_id') == mid
        released = ours if module.check_mode else _lease.release(name, mid, lease_dir)
        after = None if released else _lease.read(name, lease_dir)
        _holder(result, after, mid)
        result.update(changed=released, released=released, lease=after,
                      expired=bool(after) and _lease.expired(after))
        result['diff'] = dict(before=_diff_text(before), after=_diff_text(after))
        return result
    if p['ttl'] <= 0:
        raise HaulError('input', 'option ttl: a positive number of seconds, not %d' % p['ttl'])
    ours = bool(before) and before.get('migration_id') == mid
    if module.check_mode:
        if before and not ours and not _lease.expired(before) and before.get('migration_id') != p['take_over']:
            raise HaulError('lease', '%s is held by %s' % (name, _lease.describe(before)), holder=before)
        after = dict(before) if ours else None
        changed = not ours or _phases.index(p['phase']) > _phases.index(before.get('phase', _phases.PREPARING))
        result.update(changed=changed, lease=after or before)
        result['diff'] = dict(before=_diff_text(before), after='holder: %s\nphase: %s\n' % (
            mid, p['phase'] if not ours else _lease.later(before.get('phase', p['phase']), p['phase'])))
        return result
    after = _lease.acquire(name, mid, p['owner'], p['role'], p['ttl'], phase=p['phase'], lease_dir=lease_dir,
                           take_over=p['take_over'])
    changed = not ours or after.get('phase') != before.get('phase')
    result.update(changed=changed, lease=after, expired=_lease.expired(after, time.time()))
    result['diff'] = dict(before=_diff_text(before), after=_diff_text(after))
    return result


def main():
    module = AnsibleModule(argument_spec=argument_spec(), required_if=REQUIRED_IF, supports_check_mode=True)
    check_module(module, name='name', migration_id='id', take_over='id')
    try:
        result = run(module)
    except HaulError as e:
        holder = e.details.get('holder')
        if holder:
            e.details['holder_text'] = _lease.describe(holder)
        fail(module, e)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
