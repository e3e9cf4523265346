# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The phases of one migration, in order.

This is a private module_util: it is not part of the collection's public API.

A migration moves through these phases; the lease (:mod:`_lease`) records the current one on
each host, so that whoever finds a migration half done (a rollback, a re-run, a watchdog) knows
what it may do.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

PREPARING = 'PREPARING'   # checks, keys, the receiver started; nothing frozen
FROZEN = 'FROZEN'         # the source's cgroup is frozen by this migration
DUMPED = 'DUMPED'         # CRIU dumped the source's tree (the source tasks may be gone)
SENT = 'SENT'             # the images are on the destination
RESTORED = 'RESTORED'     # the destination restored its copy, stopped
COMMITTED = 'COMMITTED'   # the source decided, durably, that the destination's copy is the container
RESUMED = 'RESUMED'       # the destination's copy runs
DONE = 'DONE'             # the source's remains are gone, nothing left to do

# The phases in which the container is frozen (on the source, or stopped on the destination).
FROZEN_PHASES = (FROZEN, DUMPED, SENT, RESTORED, COMMITTED)

PHASES = (PREPARING, FROZEN, DUMPED, SENT, RESTORED, COMMITTED, RESUMED, DONE)


def index(phase):
    """The position of ``phase`` in :data:`PHASES` (ValueError for an unknown one)."""
    return PHASES.index(phase)


def committed(phase):
    """Whether ``phase`` is at or past COMMITTED: the source must never run again."""
    return index(phase) >= index(COMMITTED)


# --------------------------------------------------------------------------- the rollback rule
#
# What a failure in each phase must do, in order. THE rule of the collection, written once:
# the handoff (the source's module), its watchdog and docs/reliability.md all follow it.
#
# * Before COMMITTED, the source is the container. First make sure the destination's copy can
#   never run (it is fenced: the destination resumes only on a COMMIT that will now never come,
#   and is told to abort, which kills its stopped copy), THEN thaw the source and reopen its
#   network.
# * At and after COMMITTED, the source never resumes: the destination may run the container.
#   Stop-and-copy keeps the source frozen and reports the in-doubt state (whoever resolves it
#   looks where the container runs first). Post-copy: the destination resumed at COMMIT and
#   fetches its memory from the source, so the only ways out are to FINISH the transfer, or,
#   when it broke, to report the container LOST and kill the source's remains.

REMOVE_DESTINATION_COPY = 'remove-destination-copy'  # fence: abort the receiver, its stopped copy is killed
THAW_SOURCE = 'thaw-source'                # end a page server, reopen the network, thaw, SIGCONT
KILL_SOURCE_REMAINS = 'kill-source-remains'  # the source's frozen tasks and images go
FINISH_TRANSFER = 'finish-transfer'        # post-copy: the page server keeps serving until every page moved
REPORT_IN_DOUBT = 'report-in-doubt'        # keep the source frozen; say where to look
REPORT_LOST = 'report-lost'                # post-copy: the copy that runs will never get all its memory
NOTHING = 'nothing'

ACTIONS = (REMOVE_DESTINATION_COPY, THAW_SOURCE, KILL_SOURCE_REMAINS, FINISH_TRANSFER, REPORT_IN_DOUBT,
           REPORT_LOST, NOTHING)

STRATEGIES = ('stopcopy', 'precopy', 'postcopy', 'hybrid')
LAZY_STRATEGIES = ('postcopy', 'hybrid')   # the destination resumes before its memory has moved


def rollback_plan(phase, strategy, transfer_broken=False):
    """The ordered actions after a failure in ``phase`` of a ``strategy`` migration.

    ``transfer_broken`` (post-copy, after the destination resumed): the page transfer failed for
    good (the destination's daemon or the page server ended without every page), rather than the
    handoff merely being interrupted while pages still flow.

    Pure: it reads nothing and does nothing; see docs/reliability.md for the table.
    """
    if phase not in PHASES:
        raise ValueError('unknown phase %r' % (phase,))
    if strategy not in STRATEGIES:
        raise ValueError('unknown strategy %r' % (strategy,))
    lazy = strategy in LAZY_STRATEGIES
    if phase == DONE:
        return [NOTHING]
    if phase == PREPARING:
        # nothing is frozen: the receiver must only stop waiting
        return [REMOVE_DESTINATION_COPY]
    if not committed(phase):
        # FROZEN, DUMPED, SENT, RESTORED: the destination's copy first, then the source
        return [REMOVE_DESTINATION_COPY, THAW_SOURCE]
    if not lazy:
        if phase == COMMITTED:
            # the COMMIT may have arrived: the source stays frozen until someone looks
            return [REPORT_IN_DOUBT]
        return [KILL_SOURCE_REMAINS]          # RESUMED: the destination runs it
    if transfer_broken:
        return [REPORT_LOST, KILL_SOURCE_REMAINS]
    if phase == COMMITTED:
        return [FINISH_TRANSFER, REPORT_IN_DOUBT]
    return [FINISH_TRANSFER]                  # RESUMED: pages still flow


def may_thaw(record, migration_id):
    """Whether a run with ``migration_id`` may thaw the source that the lease ``record`` describes:
    only the migration that froze it (the record's id is ours, its phase is FROZEN or later), and
    never at or after COMMITTED. Returns ``(bool, why not)``."""
    if not record:
        return False, 'no lease: this run did not freeze it'
    if record.get('migration_id') != migration_id:
        return False, 'the lease belongs to migration %s, not %s' % (record.get('migration_id'), migration_id)
    phase = record.get('phase') or PREPARING
    if phase not in PHASES:
        return False, 'the lease has an unknown phase %r' % (phase,)
    if committed(phase):
        return False, 'migration %s is %s: the source never resumes' % (migration_id, phase)
    if index(phase) < index(FROZEN):
        return False, 'migration %s never froze it (phase %s)' % (migration_id, phase)
    return True, ''


# --------------------------------------------------------------------------- resolving COMMITTED
#
# Stop-and-copy at COMMITTED: the source stays frozen (report-in-doubt) because the COMMIT may
# have reached the destination. Whoever resolves it (the role's rollback, a re-run's reconcile)
# looks at the destination over a connection of its own and applies this. A copy runs only where
# it runs already or where nothing else can ever run one:
#
# * the destination runs it: it is the container; the source's remains go (moved);
# * the destination cannot reach a decision any more, or decided abort: its stopped copy (if any)
#   goes FIRST, then the source resumes (rolled back). A stopped copy never ran (the receiver
#   resumes it only on COMMIT, with SIGCONT), so removing it loses nothing; when a COMMIT may have
#   been delivered (the fence says commit, or the destination lost its lease: a reboot), a warning
#   says so, since a copy that ran there for a while is gone with what it did;
# * the destination is unreachable, or a live receiver is still deciding (or took commit and is
#   resuming its copy right now): nothing is touched, the source stays frozen, in doubt.

RESOLVE_MOVED = 'moved'
RESOLVE_ROLLED_BACK = 'rolled-back'
RESOLVE_IN_DOUBT = 'in-doubt'
RESOLVE_LOST = 'lost'
RESOLVE_NOTHING = 'nothing'

COPY_STATES = ('running', 'stopped', 'frozen', 'absent')
DECISIONS = ('commit', 'abort', 'none')


def resolve_committed(source, destination):
    """What to do with a migration whose source recorded COMMITTED and whose destination's answer
    never came (stop-and-copy: the source is held frozen).

    ``source``: ``{'phase': the phase in the source's lease, 'state': 'frozen'|'stopped'|'running'|
    'absent' (the source's copy now)}``.

    ``destination``, as seen over a live connection (the controller's, not the source's):
    ``{'reachable': bool, 'copy': one of COPY_STATES, 'receiver_alive': bool (a receiver process
    of this migration still runs), 'decided': 'commit'|'abort'|'none' (the receiver's one
    decision; 'none' when its control directory is gone or holds none), 'lease': bool (the
    destination still holds a lease of this container; False after a reboot)}``.

    Returns ``{'result': one of RESOLVE_*, 'actions': ordered actions (REMOVE_DESTINATION_COPY,
    THAW_SOURCE, KILL_SOURCE_REMAINS, REPORT_IN_DOUBT, REPORT_LOST, NOTHING), 'why': text,
    'warning': text or ''}``. Pure: it reads nothing and does nothing.
    """
    phase = (source or {}).get('phase') or PREPARING
    if phase not in PHASES:
        raise ValueError('unknown phase %r' % (phase,))
    src = (source or {}).get('state') or 'absent'
    if src not in COPY_STATES:
        raise ValueError('unknown source state %r' % (src,))
    dest = destination or {}
    copy = dest.get('copy') or 'absent'
    if copy not in COPY_STATES:
        raise ValueError('unknown destination copy state %r' % (copy,))
    decided = dest.get('decided') or 'none'
    if decided not in DECISIONS:
        raise ValueError('unknown decision %r' % (decided,))

    def out(result, actions, why, warning=''):
        return dict(result=result, actions=list(actions), why=why, warning=warning)

    if phase != COMMITTED:
        return out(RESOLVE_NOTHING, [NOTHING], 'the source recorded %s, not COMMITTED: the rollback rule '
                   '(rollback_plan) applies, nothing is in doubt' % phase)
    if src == 'running':
        return out(RESOLVE_NOTHING, [NOTHING], 'the source copy runs: someone resumed it; haul.live touches '
                   'nothing more')
    if not dest.get('reachable'):
        return out(RESOLVE_IN_DOUBT, [REPORT_IN_DOUBT], 'the destination cannot be reached: its copy may run, '
                   'so the source stays frozen; run again once it answers')
    if copy == 'running':
        actions = [KILL_SOURCE_REMAINS] if src in ('frozen', 'stopped') else [NOTHING]
        return out(RESOLVE_MOVED, actions, 'the destination runs the container: it moved; the source\'s '
                   'frozen remains go' if src != 'absent' else 'the destination runs the container: it moved')
    # the destination's copy does not run
    if dest.get('receiver_alive') and decided != 'abort':
        why = ('its receiver took the commit and is resuming its copy now' if decided == 'commit'
               else 'its receiver is alive and has not decided yet')
        return out(RESOLVE_IN_DOUBT, [REPORT_IN_DOUBT], 'the destination\'s copy is %s but %s: the source '
                   'stays frozen; look again' % (copy, why))
    # no copy can ever resume there: the receiver decided abort, or is gone without running it
    warning = ''
    if decided == 'commit' and copy == 'absent':
        warning = ('the destination took the COMMIT and its copy is gone (killed, or the node rebooted): it may '
                   'have run for a while, and what it did since the freeze is lost; the container goes on from '
                   'the source\'s frozen state')
    elif decided == 'commit':
        warning = ('the destination took the COMMIT but its copy is %s and no receiver runs any more: it never '
                   'resumed (only the receiver resumes it), so nothing it did is lost' % copy)
    elif decided == 'none' and not dest.get('lease'):
        warning = ('the destination holds no lease of this container any more (rebooted?): if a COMMIT reached '
                   'it before, a copy that ran there for a while is gone with what it did since the freeze')
    if src == 'absent':
        return out(RESOLVE_LOST, ([REMOVE_DESTINATION_COPY] if copy != 'absent' else []) + [REPORT_LOST],
                   'the container runs nowhere: the source\'s frozen copy is gone (the source rebooted?) and the '
                   'destination holds no copy that can resume (%s, decision %s); it must be started again'
                   % (copy, decided), warning)
    actions = ([REMOVE_DESTINATION_COPY] if copy != 'absent' else []) + [THAW_SOURCE]
    if decided == 'abort':
        why = 'the destination decided abort: its copy never resumes'
    elif copy == 'absent':
        why = 'the destination holds no copy and no receiver that could resume one'
    else:
        why = 'the destination\'s copy is %s and no receiver is left to resume it' % copy
    return out(RESOLVE_ROLLED_BACK, actions, why + '; the source resumes', warning)
