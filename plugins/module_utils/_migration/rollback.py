# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The one executor of the rollback rule (private module_util).

The rule itself is :func:`.phases.rollback_plan` (pure: which actions, in which order, for the
phase reached) and :func:`.phases.may_thaw` (who may thaw). :class:`Rollback` does those actions
on the source; it is the only code that does: the handoff (:func:`.source.send_container`) calls
:meth:`Rollback.run` when it fails, and the freeze's watchdog (:mod:`.watchdog`) calls
:meth:`Rollback.after_handoff_died` when the handoff died. In short: before COMMITTED the
destination's copy is fenced FIRST (ABORT: its receiver kills its stopped copy), then the source
is thawed and its network reopened; at and after COMMITTED the source never resumes.
docs/reliability.md has the table.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.module_utils import _lease
from ansible_collections.haul.live.plugins.module_utils import _network
from ansible_collections.haul.live.plugins.module_utils import _postcopy
from ansible_collections.haul.live.plugins.module_utils import _supervisor
from ansible_collections.haul.live.plugins.module_utils._migration import phases
from ansible_collections.haul.live.plugins.module_utils._migration import protocol
from ansible_collections.haul.live.plugins.module_utils._migration import watchdog
from ansible_collections.haul.live.plugins.module_utils._runtimes import registry

# Seconds the rollback waits for the destination to confirm it killed its copy (it does so on
# its own anyway: it never resumes without COMMIT).
FENCE_WAIT_S = 2


class Rollback(object):
    """The rollback rule applied to one handoff's source (``src``: a :class:`.source.Source`,
    which knows the phase reached, the relay, the dump, the strategy and the injected modules).

    ``not_thawed`` says why a run left the source frozen although the plan said thaw."""

    def __init__(self, src):
        self.src = src
        self.not_thawed = None

    def run(self, plan, record=None):
        """Do ``plan``'s actions in order; return the source's state afterwards: 'running',
        'frozen' (in doubt, or the lease is not ours any more), 'lost', 'killed', or
        'unknown: why'."""
        src = self.src
        state = 'running' if src.phase == phases.PREPARING else None
        for action in plan:
            if action == phases.REMOVE_DESTINATION_COPY:
                self.fence_destination()
            elif action == phases.THAW_SOURCE:
                state = self.thaw(record)
            elif action == phases.KILL_SOURCE_REMAINS:
                finalize_source(src.params, src.dumped, src.strategy, src.cgroup_mod, src.images_mod)
                state = state or 'killed'
            elif action == phases.FINISH_TRANSFER:
                # the page server (its own supervisor) keeps serving until the destination has
                # every page; it ends then, and the source's tasks with it
                state = state or 'frozen'
            elif action == phases.REPORT_IN_DOUBT:
                state = state or 'frozen'
            elif action == phases.REPORT_LOST:
                state = 'lost'
        return state or 'unknown'

    def after_handoff_died(self, plan, record):
        """In the watchdog, with the handoff dead: the plan's source side. The destination's copy
        is fenced already: no COMMIT can come from a dead handoff (COMMITTED is recorded before
        it is sent), and the receiver kills its stopped copy on the relay's EOF or at its own
        deadline."""
        src = self.src
        src.relay = None
        src.catcher = None
        # a lazy dump the handoff had prepared (CRIU started, waiting) is the handoff's: its
        # descriptors are closed here (the watchdog keeps none), and its CRIU was killed with
        # the handoff's other processes; only a started lazy dump (its own supervisor) is left
        getattr(_postcopy, '_PREPARED', {}).clear()
        src.dumped = {'cgroup': '/' + src.params['cgroup'].strip('/')} if src.params.get('cgroup') else None
        src.phase = record.get('phase') or phases.PREPARING
        state = self.run(plan, record=record)
        if state == 'running' and not src.params.get('keep_images'):
            self.remove_images()
        return state

    def fence_destination(self):
        """Before the source thaws: the destination's copy must never run. No COMMIT was sent (the
        phase is before COMMITTED), so the receiver cannot resume it; ABORT makes it kill its
        stopped copy now. Its answer is awaited briefly: a destination that is unreachable
        kills its copy at its own deadline."""
        relay = self.src.relay
        if relay is None or relay.proc is None:
            return
        if relay.send(protocol.ABORT):
            try:
                relay.expect((protocol.ABORTED, protocol.FAILED), FENCE_WAIT_S, 'abort')
            except HaulError:
                pass

    def thaw(self, record=None):
        """Thaw the source, if this migration froze it (its lease, id and phase, say so)."""
        src = self.src
        if record is None:
            try:
                record = _lease.read(src.name, src.lease_dir)
            except HaulError:
                record = None
        ok, why = phases.may_thaw(record, src.id)
        if not ok:
            self.not_thawed = why
            return 'frozen'
        try:
            src.strategy.abandon(src)
        except Exception:  # pylint: disable=broad-except
            pass  # its CRIU goes with the next line
        watchdog.kill_criu(src.params['images_dir'])   # a CRIU that hangs (or serves pages) holds the tasks
        state = thaw_source(src.params, src.dumped, src.cgroup_mod)
        if src.catcher and state == 'running':
            src.catcher.release()  # what its clients sent meanwhile reaches it at once
        for path in src.strategy.scratch_dirs(src.images_mod, src.params['images_dir']):
            src.images_mod.remove(path)
        return state

    def remove_images(self):
        src = self.src
        images_dir = src.params['images_dir']
        src.images_mod.remove(images_dir)
        src.images_mod.remove(src.images_mod.precopy_dir(images_dir))
        src.images_mod.remove(_supervisor.state_dir(images_dir))


def thaw_source(params, dumped, cgroup_mod):
    """Thaw the source; return its state afterwards ('running' or why not). Only through
    :meth:`Rollback.thaw`, which first checks that this migration froze it (its lease). A container
    of a runtime with its own steps (Podman) is resumed by its runtime."""
    own = registry.own_steps(params)
    if own is not None and own.own_source:
        return own.resume_source(params, dumped)
    cg_path = (dumped or {}).get('cgroup') or params.get('cgroup')
    try:
        if cg_path:
            cg = cgroup_mod.Cgroup(cg_path)
        elif params.get('pid'):
            cg = cgroup_mod.Cgroup.from_pid(params['pid'])
        else:
            return 'unknown'
        pids = cg.pids()
        # its clients reach it again: host ends up, CRIU's network lock gone (even if CRIU died),
        # its connections out of the repair mode that a dump leaving it stopped keeps them in -
        # before it runs: a task reading a socket still in repair mode would drop the connection
        # (best effort: the thaw comes first in importance; the role's rollback reopens it again
        # with cgroup_thaw unlock_network, which fails loudly if it still cannot)
        try:
            _network.reopen((dumped or {}).get('pid') or (pids[0] if pids else None), pids=pids)
        except HaulError:
            pass
        cg.thaw(timeout=params.get('freeze_timeout') or 10)
        if dumped:
            cgroup_mod.sigcont_tree(cg.pids())
        return 'running'
    except HaulError as e:
        return 'unknown: %s' % e.msg


def finalize_source(params, dumped, strategy, cgroup_mod, images_mod):
    """The source's remains go: what the strategy still runs, the frozen tasks, the images. After
    a move (success), or by the rule (KILL_SOURCE_REMAINS) after COMMITTED."""
    done = {'killed': False, 'images_removed': False}
    strategy.abandon(None)
    own = registry.own_steps(params)
    if own is None or not own.own_source:
        try:
            cg = cgroup_mod.Cgroup(dumped['cgroup'])
            cg.kill()
            done['killed'] = True
            cg.remove()
        except HaulError as e:
            done['error'] = e.msg
    if own is not None:  # the runtime forgets it (Podman: its kept checkpoint too)
        done.update(own.remove_source(params))
    if not params.get('keep_images'):
        images_mod.remove(params['images_dir'])
        images_mod.remove(_supervisor.state_dir(params['images_dir']))
        for path in strategy.scratch_dirs(images_mod, params['images_dir']):
            images_mod.remove(path)
        done['images_removed'] = True
    return done
