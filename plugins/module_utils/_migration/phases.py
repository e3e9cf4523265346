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
