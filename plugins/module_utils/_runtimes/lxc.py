# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The ``lxc`` runtime: LXC containers (private module_util).

Discovery asks LXC (``lxc-ls`` for the names, ``lxc-info`` for each one's state and init
pid), never the cgroup tree; the processes, memory, sockets and network of a running container
are then read from its init process, as for a lab container (:func:`_discovery.describe_pid`).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess

from ansible_collections.haul.live.plugins.module_utils import _cgroup
from ansible_collections.haul.live.plugins.module_utils import _checkpoint
from ansible_collections.haul.live.plugins.module_utils import _common
from ansible_collections.haul.live.plugins.module_utils import _discovery
from ansible_collections.haul.live.plugins.module_utils import _images
from ansible_collections.haul.live.plugins.module_utils import _netlock
from ansible_collections.haul.live.plugins.module_utils import _network
from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.module_utils._runtimes.criu_conf import leave_stopped
from ansible_collections.haul.live.plugins.module_utils._runtimes.base import Runtime, no_lazy_pages, run, which

# LXC's states whose processes exist (a frozen container is frozen by LXC).
LIVE_STATES = ('running', 'frozen', 'freezing', 'thawed')


def parse_info(text):
    """``lxc-info -n NAME -s -p`` -> {'state': 'running', 'pid': 1234} (pid 0 when it has none)."""
    out = {'state': '', 'pid': 0}
    for line in text.splitlines():
        key, sep, value = line.partition(':')
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == 'state':
            out['state'] = value.lower()
        elif key == 'pid' and value.isdigit():
            out['pid'] = int(value)
    return out


# --- a migration (work in progress: docs/runtimes.md, "The recipe for moving an LXC container") ---
#
# The source is dumped by haul.live's own pipeline (held frozen; the rollback is a thaw) with the
# options LXC's own dump passes to CRIU, so that `lxc-checkpoint -r` can restore the images: LXC
# 7.0.0 cannot checkpoint a container it restored, so `lxc-checkpoint` is never used to dump. The
# destination restores through LXC, so that LXC's monitor owns the copy, held stopped with
# CRIU's leave-stopped in /etc/criu/default.conf and its MACs held until the commit.

LXC_PATH = '/var/lib/lxc'
# What `lxc-checkpoint` passes to CRIU's dump besides the images directory and the tree.
DUMP_OPTIONS = dict(file_locks=True, link_remap=True, auto_ext_mnt=True, ext_sharing=True, ext_masters=True,
                    enable_fs=['hugetlbfs', 'tracefs'], tcp_skip_in_flight=True, force_irmap=True)
RESTORE_TIMEOUT_S = 300


def config_macs(text):
    """The MAC addresses of an LXC config's veths (``lxc.net.N.hwaddr``), lower case, sorted."""
    out = []
    for line in (text or '').splitlines():
        key, sep, value = line.partition('=')
        key = key.strip()
        if sep and key.startswith('lxc.net.') and key.endswith('.hwaddr'):
            out.append(value.strip().lower())
    return sorted(out)


# The cgroups LXC makes for a container, named in its config. A restore killed in mid-way leaves
# them, empty, and LXC then refuses the next restore ("Failed to create monitor cgroup").
CGROUP_DIR_KEYS = ('lxc.cgroup.dir', 'lxc.cgroup.dir.monitor', 'lxc.cgroup.dir.container',
                   'lxc.cgroup.dir.container.inner')


def config_cgroup_dirs(text):
    """The cgroup directories an LXC config names (``lxc.cgroup.dir*``), in order, without repeats."""
    out = []
    for line in (text or '').splitlines():
        key, sep, value = line.partition('=')
        value = value.strip().strip('/')
        if sep and key.strip() in CGROUP_DIR_KEYS and value and '..' not in value.split('/') and value not in out:
            out.append(value)
    return out


class LxcMoves(object):
    """The LXC steps of a migration (mixed into :class:`LxcRuntime`)."""

    own_source = False   # the source goes through haul.live's own dump, freeze and thaw

    def container_dir(self, name):
        return os.path.join(LXC_PATH, name)

    def dump(self, params):
        """haul.live's dump of the container (``params['pid']``), with LXC's options."""
        cg = _cgroup.Cgroup.from_pid(params['pid'], step='dump')
        extra = dict(DUMP_OPTIONS, cg_root=[('', '/' + cg.rel.strip('/'))])
        res = _checkpoint.dump_container(dict(params, criu_extra=extra, manage_cgroups_mode='full'))
        # what moves besides the images: the container's directory (config and root filesystem)
        res['root'] = self.container_dir(params['name'])
        res['runtime'] = self.kind
        return res

    def remove_source(self, params):
        """After the move: LXC here forgets the container (its tasks are killed already)."""
        done = {}
        try:
            run([self._cmd('lxc-destroy'), '-f', '-n', params['name']], 'finalize', timeout=60)
        except HaulError as e:
            done['error'] = e.msg
        return done

    def _config_cgroup_dirs(self, name):
        try:
            with open(os.path.join(self.container_dir(name), 'config')) as f:
                return config_cgroup_dirs(f.read())
        except (IOError, OSError):
            return []

    @staticmethod
    def _remove_empty_cgroups(dirs, step):
        """Remove the cgroups ``dirs`` (relative to the cgroup root) that exist and hold no process."""
        removed = []
        for rel in dirs:
            try:
                cg = _cgroup.Cgroup(rel, step=step)
                if cg.exists() and not cg.pids():
                    cg.remove()
                    removed.append(rel)
            except (HaulError, IOError, OSError):
                pass  # not there, or in use: LXC's own message will say so
        return removed

    def prepare_receive(self, params):
        name = params['name']
        if name in self.names():
            info = self.info(name)
            if info['state'] in LIVE_STATES:
                raise HaulError('prepare', 'an LXC container %s runs here already (%s)' % (name, info['state']))
        # what an interrupted restore of this container left here
        self._remove_empty_cgroups(self._config_cgroup_dirs(name), 'prepare')

    def restore_held(self, params):
        """``lxc-checkpoint -r`` of the images, the tasks left stopped and the MACs held."""
        name = params['name']
        images = os.path.abspath(params['images_dir'])
        try:
            with open(os.path.join(self.container_dir(name), 'config')) as f:
                macs = config_macs(f.read())
        except (IOError, OSError) as e:
            raise HaulError('restore', 'no LXC config for %s here: %s' % (name, e))
        _netlock.hold_addresses(name, macs, 'restore')
        try:
            with leave_stopped('default'):
                info = self._restore_images(name, images)
            cg = _cgroup.Cgroup.from_pid(info['pid'], step='restore')
        except (HaulError, OSError, subprocess.SubprocessError) as e:
            dirs = self._config_cgroup_dirs(name)
            self.remove_copy(params)
            self._remove_empty_cgroups(dirs, 'restore')
            raise e if isinstance(e, HaulError) else HaulError('restore', 'lxc-checkpoint -r: %s' % e)
        return {'changed': True, 'name': name, 'pid': info['pid'], 'cgroup': cg.path, 'runtime': self.kind,
                'network': _network.inspect(info['pid'], step='restore')}

    # --- a checkpoint on this host's disk (update_in_place) -------------------------------------
    def checkpoint_local(self, params):
        """haul.live's dump (:meth:`dump`, LXC's options), held frozen, then ``lxc-stop -k``: the
        images are on disk before anything stops. A dump that fails leaves it running."""
        name = params['name']
        images = os.path.abspath(params['images_dir'])
        info = self._info_if_known(name)
        if info is None:
            raise HaulError('checkpoint', 'LXC has no container %s here' % name)
        if info['state'] not in LIVE_STATES:
            if os.path.isfile(os.path.join(images, 'inventory.img')):
                return {'changed': False, 'name': name, 'runtime': self.kind, 'bytes': _images.images_bytes(images),
                        'msg': '%s is stopped, checkpointed already' % name}
            raise HaulError('checkpoint', 'LXC container %s is %s, with no checkpoint in %s' % (name, info['state'], images))
        res = self.dump(dict(params, pid=info['pid'], cgroup=None, hold='frozen'))
        run([self._cmd('lxc-stop'), '-k', '-n', name], 'stop', timeout=60)
        return {'changed': True, 'name': name, 'bytes': res.get('bytes'), 'stats': res.get('stats'), 'runtime': self.kind}

    def _info_if_known(self, name):
        """LXC's :meth:`info` of ``name``, or None when LXC has no such container here."""
        return self.info(name) if name in self.names() else None

    def restore_local(self, params):
        """``lxc-checkpoint -r`` of the images in ``images_dir``."""
        name = params['name']
        images = os.path.abspath(params['images_dir'])
        info = self._info_if_known(name)
        if info is None:
            raise HaulError('restore', 'LXC has no container %s here (its directory %s is gone)'
                            % (name, self.container_dir(name)))
        if info['state'] in LIVE_STATES:
            return {'changed': False, 'name': name, 'pid': info['pid'], 'runtime': self.kind, 'msg': '%s runs already' % name}
        if not os.path.isfile(os.path.join(images, 'inventory.img')):
            raise HaulError('restore', 'no checkpoint of %s in %s' % (name, images))
        try:
            info = self._restore_images(name, images)
        except (OSError, subprocess.SubprocessError) as e:
            raise HaulError('restore', 'lxc-checkpoint -r: %s' % e)
        return {'changed': True, 'name': name, 'pid': info['pid'], 'runtime': self.kind}

    def _restore_images(self, name, images):
        """``lxc-checkpoint -r`` of ``images``; LXC's answer (:meth:`info`) once it runs, else
        HaulError naming the tail of its output."""
        out = os.path.join(images, 'lxc-restore.out')
        # LXC's monitor keeps the caller's stdout and stderr: a file, never a pipe
        with open(out, 'w') as f:
            rc = subprocess.call([self._cmd('lxc-checkpoint'), '-r', '-n', name, '-D', images],  # pylint: disable=ansible-bad-function
                                 stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                 timeout=RESTORE_TIMEOUT_S)
        info = self.info(name)
        if rc != 0 or not info['pid']:
            raise HaulError('restore', 'lxc-checkpoint -r failed (exit status %s): %s'
                            % (rc, ' / '.join(_common.log_tail(out, 3) or ['no message'])),
                            log=os.path.join(images, 'restore.log'))
        return info

    def copy_removal(self, name):
        """The commands that make LXC here forget a copy of ``name`` (:meth:`Runtime.remove_copy`)."""
        return [[self._cmd('lxc-stop'), '-k', '-n', name], [self._cmd('lxc-destroy'), '-f', '-n', name]]


class LxcRuntime(LxcMoves, Runtime):
    kind = 'lxc'
    tool = 'lxc-ls'
    strategies = ('stopcopy', 'precopy')
    why_not = no_lazy_pages('LXC')

    def _cmd(self, tool):
        return which(tool, self.path) or tool

    def names(self):
        """The names of LXC's containers on this host (``lxc-ls -1``), sorted."""
        return sorted(n for n in run([self._cmd('lxc-ls'), '-1'], 'discover').split() if n)

    def info(self, name):
        return parse_info(run([self._cmd('lxc-info'), '-n', name, '-s', '-p'], 'discover'))

    def find(self, names=None, with_pids=False, **kwargs):
        out = []
        for name in self.names():
            if names and name not in names:
                continue
            info = self.info(name)
            if info['state'] not in LIVE_STATES or not info['pid']:
                continue
            entry = _discovery.describe_pid(name, info['pid'], with_pids=with_pids)
            if entry is None:
                continue
            entry.update(runtime=self.kind, id=name, runtime_state=info['state'])
            out.append(entry)
        return out
