# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The ``podman`` runtime: containers that Podman runs as root (private module_util).

Discovery asks Podman (``podman ps --all --format json``, then ``podman inspect``), never the
cgroup tree: the name, the id and the state are Podman's. The processes, memory, sockets and
network of a running container are then read from its init process, as for a lab container
(:func:`_discovery.describe_pid`).

A migration goes through Podman's own checkpoint and restore, so that Podman's database stays
true on both hosts (docs/runtimes.md, "Moving a Podman container"). The handoff (:mod:`._migration`)
calls these steps of :class:`PodmanRuntime` instead of its CRIU dump and restore:

- source: :meth:`~PodmanRuntime.dump` (its network namespace locked, then ``podman container
  checkpoint --export --keep``), :meth:`~PodmanRuntime.resume_source` (the rollback: ``podman
  container restore`` from the kept checkpoint) and :meth:`~PodmanRuntime.remove_source` (after the
  move: ``podman rm``);
- destination: :meth:`~PodmanRuntime.prepare_receive` (what must be there: the image by id, the
  networks, the name free), :meth:`~PodmanRuntime.restore_held` (``podman container restore
  --import`` with CRIU's ``leave-stopped`` and the addresses held), :meth:`~PodmanRuntime.release_hold`
  (the commit) and :meth:`~PodmanRuntime.remove_copy` (the abort).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.module_utils import _cgroup
from ansible_collections.haul.live.plugins.module_utils import _discovery
from ansible_collections.haul.live.plugins.module_utils import _images
from ansible_collections.haul.live.plugins.module_utils import _netlock
from ansible_collections.haul.live.plugins.module_utils import _network
from ansible_collections.haul.live.plugins.module_utils import _sockets
from ansible_collections.haul.live.plugins.module_utils._runtimes.criu_conf import leave_stopped
from ansible_collections.haul.live.plugins.module_utils._runtimes.base import (
    Runtime, no_lazy_pages, run, run_json, which)

# Podman's states whose processes exist (a paused container is frozen by Podman).
LIVE_STATES = ('running', 'paused')
# The checkpoint Podman exports into the images directory (an uncompressed tar).
EXPORT = 'podman-export.tar'
# Podman's checkpoint and restore, each bounded (Podman's own create timeout is about 240 s).
STEP_TIMEOUT_S = 300


def parse_ps(rows):
    """``podman ps --all --format json`` -> [{name, id, podman_state, pid, image}], sorted by
    name; a container with no name keeps its short id as its name."""
    out = []
    for row in rows or []:
        names = row.get('Names') or []
        cid = row.get('Id') or row.get('ID') or ''
        out.append({
            'name': names[0] if names else cid[:12],
            'id': cid,
            'podman_state': (row.get('State') or '').lower(),
            'pid': row.get('Pid') or 0,
            'image': row.get('Image'),
        })
    return sorted(out, key=lambda r: r['name'])


def parse_inspect(info):
    """One entry of ``podman inspect NAME`` -> what a migration needs to know of it: its image
    (name and id, which the destination must hold), its networks (static address and MAC), its bind
    mounts and named volumes, its published ports, its OCI runtime, its state and init pid."""
    info = info or {}
    state = info.get('State') or {}
    nets = ((info.get('NetworkSettings') or {}).get('Networks')) or {}
    mounts = info.get('Mounts') or []
    ports = ((info.get('HostConfig') or {}).get('PortBindings')) or {}
    return {
        'id': info.get('Id') or '',
        'name': (info.get('Name') or '').lstrip('/'),
        'image': info.get('ImageName') or '',
        'image_id': info.get('Image') or '',
        'oci_runtime': info.get('OCIRuntime') or '',
        'state': (state.get('Status') or '').lower(),
        'checkpointed': bool(state.get('Checkpointed')),
        'pid': state.get('Pid') or 0,
        'networks': dict((n, {'ip': (v or {}).get('IPAddress') or '', 'mac': ((v or {}).get('MacAddress') or '').lower()})
                         for n, v in sorted(nets.items())),
        'binds': sorted(m.get('Source') or '' for m in mounts if m.get('Type') == 'bind'),
        'volumes': sorted(m.get('Name') or '' for m in mounts if m.get('Type') == 'volume'),
        'ports': sorted(p for p, bound in ports.items() if bound),
    }


def parse_stats(text):
    """``--print-stats``' JSON (Podman's, then the OCI runtime's and CRIU's durations, in
    microseconds) -> the durations in ms (``podman_ms``, ``runtime_ms``) and CRIU's statistics."""
    text = text or ''
    start = text.find('{')
    try:
        data = json.loads(text[start:]) if start >= 0 else {}
    except ValueError:
        return {}
    out = {}
    for key, value in data.items():
        if key.endswith('_duration') and isinstance(value, (int, float)):
            out['podman_ms'] = int(value) // 1000
    ctr = (data.get('container_statistics') or [{}])[0] or {}
    for key, value in ctr.items():
        if key.endswith('_duration') and isinstance(value, (int, float)):
            out['runtime_ms'] = int(value) // 1000
    criu = ctr.get('criu_statistics') or {}
    for key, value in criu.items():
        if isinstance(value, (int, float)):
            out[key + '_us' if key.endswith('_time') else key] = value
    return out


def destination_problems(source, here, images_present, networks_present):
    """What stops a restore of the container that ``source`` (:func:`parse_inspect` on the
    source) describes, on a host where ``here`` is Podman's container of that name (or None):
    ``images_present(id)`` and ``networks_present(name)`` say what this host holds."""
    problems = []
    name = source.get('name') or '?'
    if here:
        problems.append('a Podman container %s exists here already (%s): remove it, or move the container '
                        'elsewhere' % (name, here.get('state') or 'unknown state'))
    if source.get('image_id') and not images_present(source['image_id']):
        problems.append('the image %s (id %s) of %s is not here: a restore needs the same image id (podman '
                        'pull or podman load it first)' % (source.get('image') or '?', source['image_id'][:12], name))
    for net in sorted(source.get('networks') or {}):
        if net not in ('pasta', 'slirp4netns', 'none', 'host') and not networks_present(net):
            problems.append('the Podman network %s of %s does not exist here (podman network create it with the same '
                            'subnet)' % (net, name))
    for path in source.get('binds') or []:
        if path and not os.path.exists(path):
            problems.append('the bind mount source %s of %s does not exist here' % (path, name))
    return problems


class PodmanRuntime(Runtime):
    kind = 'podman'
    own_source = True   # Podman's checkpoint and restore replace haul.live's dump, freeze and thaw
    tool = 'podman'
    strategies = ('stopcopy', 'precopy')
    why_not = no_lazy_pages('Podman')

    def _cmd(self):
        return which(self.tool, self.path) or self.tool

    def list(self):
        """Podman's own list of its containers on this host, parsed (:func:`parse_ps`)."""
        return parse_ps(run_json([self._cmd(), 'ps', '--all', '--format', 'json'], 'discover'))

    def inspect(self, name, step='discover'):
        """:func:`parse_inspect` of the container ``name``; None when Podman has no such container."""
        if not self.exists(name, step):
            return None
        rows = run_json([self._cmd(), 'container', 'inspect', name], step)
        return parse_inspect((rows or [None])[0])

    def exists(self, name, step='discover'):
        try:
            run([self._cmd(), 'container', 'exists', name], step)
        except HaulError as e:
            if 'exit status 1' in e.cause:
                return False
            raise
        return True

    def find(self, names=None, with_pids=False, **kwargs):
        out = []
        for row in self.list():
            if names and row['name'] not in names:
                continue
            if row['podman_state'] not in LIVE_STATES or not row['pid']:
                continue
            entry = _discovery.describe_pid(row['name'], row['pid'], with_pids=with_pids)
            if entry is None:  # it ended between the listing and now
                continue
            entry.update(runtime=self.kind, id=row['id'], image=row['image'], runtime_state=row['podman_state'])
            if names:  # what a migration needs (the role asks by name): one inspect per container
                entry['podman'] = self.inspect(row['name'])
            out.append(entry)
        return out

    # --- Podman's checkpoint and restore -------------------------------------------------------
    def checkpoint_argv(self, name, export, tcp_established):
        return ([self._cmd(), 'container', 'checkpoint', '--export=' + export, '--compress=none', '--keep',
                 '--print-stats'] + (['--tcp-established'] if tcp_established else []) + [name])

    def restore_argv(self, export=None, name=None, tcp_established=False):
        """``--import`` of an export (a destination), or the kept checkpoint of ``name`` (the source)."""
        return ([self._cmd(), 'container', 'restore', '--print-stats'] + (['--tcp-established'] if tcp_established else [])
                + (['--import=' + export] if export else [name]))

    def remove(self, name, step='remove'):
        """Remove the container ``name`` from Podman (its tasks killed, its record and checkpoint
        gone). Idempotent: False when there was none."""
        if not self.exists(name, step):
            return False
        run([self._cmd(), 'rm', '--force', '--time', '0', name], step, timeout=120)
        return True

    # --- the source's steps --------------------------------------------------------------------
    def describe(self, name, step='dump'):
        """What the dump reports of the running container ``name``, read before the freeze: Podman's
        CLI alone takes a few hundred milliseconds, which must not count inside the critical section."""
        info = self.inspect(name, step)
        if info is None or info['state'] != 'running' or not info['pid']:
            raise HaulError(step, 'Podman has no running container %s here (%s)'
                            % (name, (info or {}).get('state') or 'none'))
        pid = info['pid']
        pids = _cgroup.Cgroup.from_pid(pid, step=step).pids()
        return {'name': name, 'pid': pid, 'root': None, 'cgroup': None, 'runtime': self.kind,
                'sockets': _sockets.count_sockets(pids), 'network': _network.inspect(pid, step=step),
                'podman': info}

    def dump(self, params, described=None):
        """The handoff's dump: the container's network namespace closed (:mod:`_netlock`), then
        Podman's checkpoint into ``images_dir``, its checkpoint kept for a rollback. Podman's CRIU
        kills the tasks; Podman records the container ``exited`` (checkpointed). ``described``:
        :meth:`describe`'s answer, read before the freeze (else it is read now)."""
        name = params['name']
        result = dict(described or self.describe(name))
        pid = result['pid']
        images_dir = os.path.abspath(params['images_dir'])
        _images.ensure_dir(images_dir, migration_id=params.get('migration_id'))
        export = os.path.join(images_dir, EXPORT)
        locked = _netlock.lock_namespace(pid, 'dump')
        try:
            out = run(self.checkpoint_argv(name, export, params.get('tcp_established')), 'dump', timeout=STEP_TIMEOUT_S)
        except HaulError as e:
            now = self.inspect(name, 'dump') or {}
            if locked and now.get('state') == 'running':
                _netlock.unlock_namespace(pid)
            raise HaulError('dump', e.cause)
        result['stats'] = parse_stats(out)
        result['bytes'] = os.path.getsize(export) if os.path.exists(export) else 0
        return result

    def resume_source(self, params, dumped=None):
        """The rollback on the source: the container runs again under Podman, from its kept
        checkpoint when the checkpoint was taken, else where it was (its namespace reopened).
        Returns 'running', or 'unknown: why'."""
        name = params['name']
        try:
            info = self.inspect(name, 'resume')
            if info is None:
                return 'unknown: Podman has no container %s here any more' % name
            if info['state'] in LIVE_STATES:
                _netlock.unlock_namespace(info['pid'])
                return 'running'
            if not info['checkpointed']:
                return 'unknown: %s is %s, with no checkpoint to restore it from' % (name, info['state'] or '?')
            run(self.restore_argv(name=name, tcp_established=params.get('tcp_established')), 'resume',
                timeout=STEP_TIMEOUT_S)
            return 'running'
        except HaulError as e:
            return 'unknown: %s' % e.msg

    def remove_source(self, params):
        """After the move (or by the rule after COMMITTED): the source's record and its kept
        checkpoint go."""
        done = {'killed': False}
        try:
            done['killed'] = self.remove(params['name'])
        except HaulError as e:
            done['error'] = e.msg
        return done

    # --- a checkpoint on this host's disk (update_in_place) -------------------------------------
    def checkpoint_local(self, params):
        """:meth:`dump` into ``images_dir``: Podman stops the container and keeps its checkpoint
        (``--keep``), and the export in ``images_dir`` is there too, should Podman lose it."""
        export = os.path.join(os.path.abspath(params['images_dir']), EXPORT)
        info = self.inspect(params['name'], 'checkpoint')
        if info is None:
            raise HaulError('checkpoint', 'Podman has no container %s here' % params['name'])
        if info['state'] not in LIVE_STATES and os.path.isfile(export):
            return {'changed': False, 'name': params['name'], 'bytes': os.path.getsize(export), 'runtime': self.kind,
                    'msg': '%s is stopped, checkpointed already' % params['name']}
        res = self.dump(params)
        return {'changed': True, 'name': params['name'], 'bytes': res['bytes'], 'stats': res.get('stats'),
                'runtime': self.kind}

    def restore_local(self, params):
        """Podman's restore of its kept checkpoint (``podman container restore NAME``: after a
        reboot, Podman says the container is no longer checkpointed but restores it), else of the
        export in ``images_dir`` (the container's record replaced by it)."""
        name = params['name']
        tcp = params.get('tcp_established')
        export = os.path.join(os.path.abspath(params['images_dir']), EXPORT)
        info = self.inspect(name, 'restore')
        if info is not None and info['state'] in LIVE_STATES:
            return {'changed': False, 'name': name, 'pid': info['pid'], 'runtime': self.kind,
                    'msg': '%s runs already' % name}
        first = None
        if info is not None:
            try:
                out = run(self.restore_argv(name=name, tcp_established=tcp), 'restore', timeout=STEP_TIMEOUT_S)
            except HaulError as e:
                first, out = e.cause, None
        if first is not None or info is None:
            if not os.path.isfile(export):
                raise HaulError('restore', 'no checkpoint of %s to restore: %s, and no export %s'
                                % (name, first or 'Podman has no such container', export))
            if info is not None:
                self.remove(name, 'restore')
            out = run(self.restore_argv(export=export, tcp_established=tcp), 'restore', timeout=STEP_TIMEOUT_S)
        now = self.inspect(name, 'restore')
        if not now or now['state'] not in LIVE_STATES:
            raise HaulError('restore', 'Podman restored %s but it is %s' % (name, (now or {}).get('state') or 'gone'))
        return {'changed': True, 'name': name, 'pid': now['pid'], 'runtime': self.kind, 'stats': parse_stats(out)}

    # --- the destination's steps ---------------------------------------------------------------
    def prepare_receive(self, params):
        """Before the destination says waiting: what a restore of the source's container
        (``handoff.source``, :func:`parse_inspect` on the source) needs here."""
        source = (params.get('handoff') or {}).get('source') or {'name': params['name']}
        source = dict(source, name=params['name'])
        here = self.inspect(params['name'], 'prepare')
        problems = destination_problems(source, here, lambda image_id: self.has('image', image_id),
                                        lambda net: self.has('network', net))
        if problems:
            raise HaulError('prepare', '; '.join(problems))

    def has(self, kind, what):
        """Whether this host's Podman has the image or network (``kind``) ``what``."""
        try:
            run([self._cmd(), kind, 'exists', what], 'prepare')
        except HaulError:
            return False
        return True

    def macs(self, params):
        """The MAC addresses of the source's container (its ``handoff.source``)."""
        return sorted(n['mac'] for n in (((params.get('handoff') or {}).get('source') or {}).get('networks') or {}).values()
                      if n.get('mac'))

    def restore_held(self, params):
        """Podman's restore of the export in ``images_dir``, held: its tasks stopped (CRIU's
        ``leave-stopped``) and its MAC addresses dropped on this host's bridges until the commit.
        A restore that fails leaves nothing in Podman here."""
        name = params['name']
        export = os.path.join(os.path.abspath(params['images_dir']), EXPORT)
        if not os.path.isfile(export):
            raise HaulError('restore', 'no Podman export %s here' % export)
        _netlock.hold_addresses(name, self.macs(params), 'restore')
        try:
            oci = ((params.get('handoff') or {}).get('source') or {}).get('oci_runtime') or 'runc'
            with leave_stopped(oci):
                out = run(self.restore_argv(export=export, tcp_established=params.get('tcp_established')),
                          'restore', timeout=STEP_TIMEOUT_S)
            info = self.inspect(name, 'restore')
            if not info or not info['pid']:
                raise HaulError('restore', 'Podman restored %s but reports no process (%s)'
                                % (name, (info or {}).get('state') or 'no record'))
            cg = _cgroup.Cgroup.from_pid(info['pid'], step='restore')
        except HaulError as e:
            self.remove_copy(params)
            raise HaulError('restore', '%s (the copy of %s was removed from Podman here)' % (e.cause, name))
        return {'changed': True, 'name': name, 'pid': info['pid'], 'cgroup': cg.path, 'runtime': self.kind,
                'network': _network.inspect(info['pid'], step='restore'), 'stats': parse_stats(out),
                'podman': info}

    def copy_removal(self, name):
        """The command that makes Podman here forget a copy of ``name``, its tasks killed
        (:meth:`Runtime.remove_copy`)."""
        return [[self._cmd(), 'rm', '--force', '--time', '0', '--ignore', name]]
