# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Everything haul.live knows about cgroups, in one place.

This is a private module_util: it is not part of the collection's public API.

Two hierarchies matter:

* cgroup v2 (``cgroup2``): ``/sys/fs/cgroup`` on a pure v2 machine, ``/sys/fs/cgroup/unified`` on
  a hybrid one. Freezing writes ``cgroup.freeze`` and waits for ``frozen 1`` in ``cgroup.events``.
* the cgroup v1 ``freezer`` controller, usually at ``/sys/fs/cgroup/freezer``. Freezing writes
  ``FROZEN`` to ``freezer.state`` and waits until it reads back ``FROZEN``.

Mount points are found in ``/proc/self/mountinfo``, never assumed.

A :class:`Cgroup` is built from a path or from a pid:

* ``Cgroup('haul/ct1')`` or ``Cgroup('/haul/ct1')``: a path relative to the root of the hierarchy
  (the form ``/proc/PID/cgroup`` uses);
* ``Cgroup('/sys/fs/cgroup/unified/haul/ct1')``: an absolute path below a cgroup mount point; the
  hierarchy is then the one of that mount point;
* ``Cgroup.from_pid(1234)``: the ``0::`` line (v2) or the ``freezer`` line (v1) of
  ``/proc/1234/cgroup``.

With ``version='auto'`` the v2 hierarchy is the primary one when it has a freezer
(``cgroup.freeze``, kernel 5.2+), else the v1 freezer. On a hybrid machine a container usually sits
in both (the lab's ``ct-run`` does that), and a cgroup frozen through one of them is frozen for its
tasks. So in ``auto`` mode the same cgroup in the other hierarchy (its *twin*) is taken into
account: :meth:`Cgroup.state` reports frozen if either is frozen, :meth:`Cgroup.thaw` thaws both,
:meth:`Cgroup.kill` and :meth:`Cgroup.remove` act on both. With an explicit ``v1`` or ``v2`` only
that hierarchy is touched.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import signal
import time

from ansible_collections.haul.live.plugins.module_utils._common import HaulError
# A cgroup's processes are read in _proc; these four stay reachable here for the callers that
# are handed this module (and for their tests, which hand them a stand-in).
from ansible_collections.haul.live.plugins.module_utils._proc import (  # pylint: disable=unused-import
    own_lineage, pidns_init, sigcont_tree, stopped_pids)

MOUNTINFO = '/proc/self/mountinfo'
PROC = '/proc'

V1 = 'v1'
V2 = 'v2'
AUTO = 'auto'
VERSIONS = (AUTO, V1, V2)

FROZEN = 'frozen'
THAWED = 'thawed'
FREEZING = 'freezing'

DEFAULT_PARENT = 'haul'

_NO_TWIN = object()

# polling of freezer state: start short (freezing usually takes well under 1 ms per task),
# back off to at most _POLL_MAX seconds.
_POLL_MIN = 0.0005
_POLL_MAX = 0.02


# ---------------------------------------------------------------------------------------------
# pure parsing (unit tested)
# ---------------------------------------------------------------------------------------------

def _unescape_mountinfo(field):
    """Undo the octal escapes (``\\040`` for a space, ...) of a mountinfo field."""
    if '\\' not in field:
        return field
    out = []
    i = 0
    while i < len(field):
        c = field[i]
        if c == '\\' and len(field[i + 1:i + 4]) == 3 and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(c)
            i += 1
    return ''.join(out)


class CgroupMounts(object):
    """Where the cgroup v2 hierarchy and the v1 freezer are mounted.

    ``v2`` and ``freezer`` are mount points (or None); ``v2_root`` and ``freezer_root`` are the
    paths, inside the hierarchy, of what is mounted there (``/`` unless a sub-tree is mounted or a
    cgroup namespace hides the rest).
    """

    def __init__(self, v2=None, v2_root='/', freezer=None, freezer_root='/'):
        self.v2 = v2
        self.v2_root = v2_root
        self.freezer = freezer
        self.freezer_root = freezer_root

    def mountpoint(self, version):
        return self.v2 if version == V2 else self.freezer

    def root(self, version):
        return self.v2_root if version == V2 else self.freezer_root

    def as_dict(self):
        return dict(v2=self.v2, v2_root=self.v2_root, freezer=self.freezer, freezer_root=self.freezer_root)

    def __repr__(self):
        return 'CgroupMounts(%r)' % (self.as_dict(),)


def parse_mountinfo(text):
    """Find the cgroup2 and v1 freezer mounts in the text of a ``mountinfo`` file.

    When a hierarchy is mounted more than once, the mount of its root (``/``) wins, then the first
    one listed.
    """
    v2 = []
    freezer = []
    for line in text.splitlines():
        if ' - ' not in line:
            continue
        pre, post = line.split(' - ', 1)
        pre = pre.split()
        post = post.split()
        if len(pre) < 5 or len(post) < 1:
            continue
        root = _unescape_mountinfo(pre[3])
        mountpoint = _unescape_mountinfo(pre[4])
        fstype = post[0]
        if fstype == 'cgroup2':
            v2.append((root, mountpoint))
        elif fstype == 'cgroup' and len(post) >= 3 and 'freezer' in post[2].split(','):
            freezer.append((root, mountpoint))

    def pick(cands):
        if not cands:
            return None, '/'
        for root, mp in cands:
            if root == '/':
                return mp, root
        return cands[0][1], cands[0][0]

    v2_mp, v2_root = pick(v2)
    fr_mp, fr_root = pick(freezer)
    return CgroupMounts(v2=v2_mp, v2_root=v2_root, freezer=fr_mp, freezer_root=fr_root)


def find_mounts(mountinfo=MOUNTINFO):
    """:func:`parse_mountinfo` of this process's mountinfo."""
    try:
        with open(mountinfo) as f:
            return parse_mountinfo(f.read())
    except (IOError, OSError) as e:
        raise HaulError('cgroup', 'cannot read %s: %s' % (mountinfo, e.strerror or e))


def parse_proc_cgroup(text):
    """Parse ``/proc/PID/cgroup``: return ``{'v2': path or None, 'freezer': path or None}``."""
    res = {V2: None, 'freezer': None}
    for line in text.splitlines():
        parts = line.split(':', 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        if hid == '0' and controllers == '':
            res[V2] = path
        elif 'freezer' in controllers.split(','):
            res['freezer'] = path
    return res


def parse_events(text):
    """Parse ``cgroup.events`` (``key value`` lines) into a dict of ints."""
    res = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                res[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return res


def v1_state(text):
    """Map the content of ``freezer.state`` to frozen/thawed/freezing."""
    t = text.strip().upper()
    if t == 'FROZEN':
        return FROZEN
    if t == 'FREEZING':
        return FREEZING
    return THAWED


def v2_state(freeze_text, events_text):
    """Map ``cgroup.freeze`` and ``cgroup.events`` to frozen/thawed/freezing.

    ``frozen 1`` in cgroup.events is the effective state (it is also 1 when an ancestor is frozen).
    ``cgroup.freeze`` at 1 without ``frozen 1`` means the freeze is still in progress.
    """
    frozen = parse_events(events_text).get('frozen', 0)
    if frozen:
        return FROZEN
    if freeze_text.strip() == '1':
        return FREEZING
    return THAWED


def _fs_path(mountpoint, mount_root, cg_path):
    """Map a path inside the hierarchy (``/haul/ct1``) to a path in the filesystem."""
    cg_path = '/' + cg_path.strip('/')
    mount_root = '/' + mount_root.strip('/')
    if mount_root != '/':
        if cg_path == mount_root:
            cg_path = '/'
        elif cg_path.startswith(mount_root + '/'):
            cg_path = cg_path[len(mount_root):]
    rel = cg_path.strip('/')
    return os.path.join(mountpoint, rel) if rel else mountpoint


# ---------------------------------------------------------------------------------------------
# small file helpers
# ---------------------------------------------------------------------------------------------

def _read(path):
    with open(path) as f:
        return f.read()


def _write(path, value):
    with open(path, 'w') as f:
        f.write(value)


def _read_pids(path):
    try:
        text = _read(path)
    except (IOError, OSError) as e:
        if e.errno in (errno.ENOENT, errno.ENODEV):
            return []
        raise
    return [int(x) for x in text.split()]


def _proc_text(pid, name, step, proc=PROC):
    try:
        return _read(os.path.join(proc, str(int(pid)), name))
    except (IOError, OSError) as e:
        if e.errno in (errno.ENOENT, errno.ESRCH):
            raise HaulError(step, 'pid %s does not exist (no %s/%s)' % (pid, proc, pid))
        raise HaulError(step, 'cannot read %s/%s/%s: %s' % (proc, pid, name, e.strerror or e))


def _display(rel):
    return rel.strip('/') or '/'


# ---------------------------------------------------------------------------------------------
# one hierarchy
# ---------------------------------------------------------------------------------------------

class _Node(object):
    """One cgroup directory in one hierarchy (v1 freezer or v2)."""

    def __init__(self, version, fs_path):
        self.version = version
        self.fs_path = fs_path

    def exists(self):
        return os.path.isdir(self.fs_path)

    def _file(self, name):
        return os.path.join(self.fs_path, name)

    def can_freeze(self):
        name = 'cgroup.freeze' if self.version == V2 else 'freezer.state'
        return os.path.exists(self._file(name))

    def state(self):
        if self.version == V2:
            return v2_state(_read(self._file('cgroup.freeze')), _read(self._file('cgroup.events')))
        return v1_state(_read(self._file('freezer.state')))

    def request(self, frozen):
        if self.version == V2:
            _write(self._file('cgroup.freeze'), '1' if frozen else '0')
        else:
            _write(self._file('freezer.state'), 'FROZEN' if frozen else 'THAWED')

    def pids(self):
        seen = set()
        for dirpath, dummy, filenames in os.walk(self.fs_path):
            seen.update(_read_pids(os.path.join(dirpath, 'cgroup.procs')))
        return sorted(seen)

    def populated(self):
        if self.version == V2:
            try:
                return bool(parse_events(_read(self._file('cgroup.events'))).get('populated', 0))
            except (IOError, OSError):
                return False
        return bool(self.pids())

    def wait(self, target, timeout, rewrite=False):
        """Poll until state() == target or timeout (seconds); return the last state."""
        deadline = time.time() + max(0.0, float(timeout))
        delay = _POLL_MIN
        while True:
            st = self.state()
            if st == target:
                return st
            if time.time() >= deadline:
                return st
            if rewrite:
                # v1: re-asserting FROZEN nudges tasks that were busy when first asked
                self.request(target == FROZEN)
            time.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)

    def remove(self):
        if not self.exists():
            return False
        for dirpath, dirnames, dummy in os.walk(self.fs_path, topdown=False):
            os.rmdir(dirpath)
        return True


# ---------------------------------------------------------------------------------------------
# the public class
# ---------------------------------------------------------------------------------------------

class Cgroup(object):
    """A container's cgroup, in the v2 hierarchy or the v1 freezer (see the module docstring).

    :param path: absolute path below a cgroup mount point, or a path relative to the root of the
        hierarchy (``haul/ct1`` or ``/haul/ct1``).
    :param version: ``auto``, ``v1`` or ``v2``.
    :param step: the step named in error messages (``freeze``, ``thaw``, ``kill``, ...).
    :param mounts: a :class:`CgroupMounts` (default: read ``/proc/self/mountinfo``).
    :raises HaulError: when the cgroup does not exist or no usable freezer is found.

    Attributes: ``path`` (filesystem path of the primary cgroup), ``rel`` (path inside the
    hierarchy, like ``haul/ct1``), ``version`` (``v1`` or ``v2``, resolved), ``twins`` (list of
    filesystem paths of the same cgroup in the other hierarchy, ``auto`` mode only).
    """

    def __init__(self, path, version=AUTO, step='cgroup', mounts=None, _v1_rel=None):
        if version not in VERSIONS:
            raise HaulError(step, 'version must be one of %s, not %r' % (', '.join(VERSIONS), version))
        if not path or not str(path).strip():
            raise HaulError(step, 'empty cgroup path')
        self.step = step
        self.mounts = mounts or find_mounts()
        self.requested_version = version
        path = str(path)

        # an absolute filesystem path below a cgroup mount point pins the hierarchy
        pinned = None
        rel = path
        if path.startswith('/'):
            best = None
            for ver in (V2, V1):
                mp = self.mounts.mountpoint(ver)
                if mp and (path == mp or path.startswith(mp.rstrip('/') + '/')):
                    if best is None or len(mp) > len(best[1]):
                        best = (ver, mp)
            if best:
                pinned = best[0]
                rel = path[len(best[1]):]
        rel = rel.strip('/')
        if pinned and version != AUTO and pinned != version:
            raise HaulError(step, '%s is in the cgroup %s hierarchy, not %s' % (path, pinned, version))
        if pinned:
            version = pinned

        self.rel = rel
        # the v1 twin of a cgroup found by pid is the pid's freezer cgroup, which may differ
        v1_rel = rel if _v1_rel is None else _v1_rel
        nodes = {}
        if self.mounts.v2:
            nodes[V2] = _Node(V2, os.path.join(self.mounts.v2, rel) if rel else self.mounts.v2)
        if self.mounts.freezer and v1_rel is not _NO_TWIN:
            v1_rel = v1_rel.strip('/')
            nodes[V1] = _Node(V1, os.path.join(self.mounts.freezer, v1_rel) if v1_rel else self.mounts.freezer)

        if version in (V1, V2):
            if version not in nodes:
                what = 'cgroup2' if version == V2 else 'the cgroup v1 freezer'
                raise HaulError(step, '%s is not mounted on this host (see /proc/self/mountinfo)' % what)
            candidates = [nodes[version]]
        else:
            candidates = [nodes[v] for v in (V2, V1) if v in nodes]
            if not candidates:
                raise HaulError(step, 'neither cgroup2 nor the cgroup v1 freezer is mounted on this host')

        if not rel:
            raise HaulError(step, '%s is the root of the cgroup hierarchy (as this host sees it), not the cgroup '
                            'of a container' % ' and '.join(n.fs_path for n in candidates))
        existing = [n for n in candidates if n.exists()]
        if not existing:
            raise HaulError(step, 'cgroup %s does not exist (looked in %s)'
                            % (_display(rel), ' and '.join(n.fs_path for n in candidates)))
        freezable = [n for n in existing if n.can_freeze()]
        if not freezable:
            n = existing[0]
            if n.version == V2:
                cause = 'cgroup %s has no cgroup.freeze (the cgroup v2 freezer needs Linux 5.2+)' % n.fs_path
            else:
                cause = 'cgroup %s has no freezer.state' % n.fs_path
            raise HaulError(step, cause)
        self._primary = freezable[0]
        self._twins = list(freezable[1:]) if self.requested_version == AUTO and not pinned else []
        self.version = self._primary.version
        self.path = self._primary.fs_path

    # -- constructors ---------------------------------------------------------------------------

    @classmethod
    def from_pid(cls, pid, version=AUTO, step='cgroup', mounts=None, proc=PROC):
        """The cgroup of a process: the ``0::`` line (v2) or the ``freezer`` line (v1)."""
        try:
            pid = int(pid)
        except (TypeError, ValueError):
            raise HaulError(step, 'pid must be an integer, not %r' % (pid,))
        if pid <= 0:
            raise HaulError(step, 'pid must be positive, not %d' % pid)
        if version not in VERSIONS:
            raise HaulError(step, 'version must be one of %s, not %r' % (', '.join(VERSIONS), version))
        paths = parse_proc_cgroup(_proc_text(pid, 'cgroup', step, proc))
        mounts = mounts or find_mounts()
        v2_path = paths[V2] if mounts.v2 else None
        v1_path = paths['freezer'] if mounts.freezer else None
        if v2_path is not None:
            v2_path = _fs_path(mounts.v2, mounts.v2_root, v2_path)[len(mounts.v2):]
        if v1_path is not None:
            v1_path = _fs_path(mounts.freezer, mounts.freezer_root, v1_path)[len(mounts.freezer):]

        if version == V2 or (version == AUTO and v2_path is not None and v2_path.strip('/')):
            if v2_path is None:
                raise HaulError(step, 'pid %d has no cgroup v2 membership (or cgroup2 is not mounted)' % pid)
            if not v2_path.strip('/'):
                raise HaulError(step, 'pid %d is in the root cgroup v2, which cannot be frozen' % pid)
            return cls(v2_path.strip('/'), version=version, step=step, mounts=mounts,
                       _v1_rel=v1_path if v1_path is not None and v1_path.strip('/') else _NO_TWIN)
        if v1_path is None:
            raise HaulError(step, 'pid %d is in no freezer cgroup (neither cgroup v2 nor the v1 freezer)' % pid)
        if not v1_path.strip('/'):
            raise HaulError(step, 'pid %d is in the root cgroup, which cannot be frozen' % pid)
        return cls(os.path.join(mounts.freezer, v1_path.strip('/')), version=V1, step=step, mounts=mounts)

    # -- properties -----------------------------------------------------------------------------

    @property
    def twins(self):
        return [n.fs_path for n in self._twins]

    def _all(self):
        return [self._primary] + [n for n in self._twins if n.exists()]

    def __repr__(self):
        return 'Cgroup(%r, version=%r)' % (self.path, self.version)

    def exists(self):
        return self._primary.exists()

    def pids(self):
        """Sorted pids of every process in the cgroup and its descendants."""
        return self._primary.pids()

    def state(self):
        """``frozen``, ``thawed`` or ``freezing`` (effective state, twins included in auto mode)."""
        states = []
        for n in self._all():
            try:
                states.append(n.state())
            except (IOError, OSError) as e:
                raise HaulError(self.step, 'cannot read the freezer state of %s: %s' % (n.fs_path, e.strerror or e))
        if FROZEN in states:
            return FROZEN
        if FREEZING in states:
            return FREEZING
        return THAWED

    # -- actions --------------------------------------------------------------------------------

    def freeze(self, timeout=10, check_mode=False):
        """Freeze the cgroup; return True if it was not frozen before.

        On timeout the cgroup is thawed back and ``HaulError('freeze', ...)`` is raised, so it is
        never left half frozen.
        """
        if self.state() == FROZEN:
            return False
        self._refuse_own_lineage('freeze', 'freeze')
        if check_mode:
            return True
        n = self._primary
        try:
            n.request(True)
            st = n.wait(FROZEN, timeout, rewrite=(n.version == V1))
        except (IOError, OSError) as e:
            self._thaw_quietly()
            raise HaulError('freeze', 'cannot freeze %s: %s (thawed it back)' % (n.fs_path, e.strerror or e))
        if st != FROZEN:
            self._thaw_quietly()
            pids = n.pids()
            raise HaulError('freeze', 'cgroup %s did not freeze within %ss (state %s, %d processes: %s); '
                            'thawed it back' % (n.fs_path, timeout, st, len(pids), _short_list(pids)),
                            cgroup=n.fs_path, version=n.version)
        return True

    def _refuse_own_lineage(self, step, verb):
        """Refuse to act on a cgroup holding this process or one of its ancestors (its sshd, ...).

        Freezing such a cgroup would freeze the module (or the connection that waits for it) and
        never return.
        """
        members = set()
        for n in self._all():
            members.update(n.pids())
        for pid, comm in own_lineage():
            if pid in members:
                who = 'this process' if pid == os.getpid() else 'pid %d (%s), an ancestor of this process' % (pid, comm)
                raise HaulError(step, 'refusing to %s %s: it contains %s' % (verb, self.path, who),
                                cgroup=self.path, version=self.version)

    def _thaw_quietly(self):
        for n in self._all():
            try:
                n.request(False)
            except (IOError, OSError):
                pass

    def thaw(self, timeout=10, check_mode=False):
        """Thaw the cgroup (and its frozen twin in auto mode); return True if anything was thawed."""
        todo = []
        for n in self._all():
            try:
                if n.state() != THAWED:
                    todo.append(n)
            except (IOError, OSError) as e:
                raise HaulError('thaw', 'cannot read the freezer state of %s: %s' % (n.fs_path, e.strerror or e))
        if not todo:
            return False
        if check_mode:
            return True
        deadline = time.time() + max(0.0, float(timeout))
        for n in todo:
            try:
                n.request(False)
                st = n.wait(THAWED, max(0.0, deadline - time.time()))
            except (IOError, OSError) as e:
                raise HaulError('thaw', 'cannot thaw %s: %s' % (n.fs_path, e.strerror or e))
            if st != THAWED:
                cause = 'cgroup %s did not thaw within %ss (state %s)' % (n.fs_path, timeout, st)
                if self._parent_frozen(n):
                    cause += '; a parent cgroup is frozen'
                raise HaulError('thaw', cause, cgroup=n.fs_path, version=n.version)
        return True

    @staticmethod
    def _parent_frozen(n):
        try:
            if n.version == V1:
                return _read(os.path.join(n.fs_path, 'freezer.parent_freezing')).strip() == '1'
            return _read(os.path.join(n.fs_path, 'cgroup.freeze')).strip() == '0'
        except (IOError, OSError):
            return False

    def kill(self, timeout=10, check_mode=False):
        """Kill every process of the cgroup and wait until it is empty; return True if any was killed.

        Uses ``cgroup.kill`` on cgroup v2 when present, else SIGKILL to each process. A frozen
        cgroup is thawed after the signal so that the processes can die (the v1 freezer holds them
        otherwise); the killed processes run no user code.
        """
        pids = self.pids()
        if not pids:
            return False
        self._refuse_own_lineage('kill', 'kill')
        if check_mode:
            return True
        deadline = time.time() + max(0.0, float(timeout))
        n = self._primary
        kill_file = os.path.join(n.fs_path, 'cgroup.kill')
        delay = _POLL_MIN
        first = True
        while True:
            if n.version == V2 and os.path.exists(kill_file):
                if first:
                    try:
                        _write(kill_file, '1')
                    except (IOError, OSError) as e:
                        raise HaulError('kill', 'cannot write %s: %s' % (kill_file, e.strerror or e))
            else:
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError as e:
                        if e.errno != errno.ESRCH:
                            raise HaulError('kill', 'cannot kill pid %d: %s' % (pid, e.strerror or e))
            if first:
                self._thaw_quietly()
                first = False
            pids = self.pids()
            if not pids:
                return True
            if time.time() >= deadline:
                raise HaulError('kill', 'cgroup %s still has %d processes after %ss (%s)'
                                % (n.fs_path, len(pids), timeout, _short_list(pids)))
            time.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)

    def remove(self, check_mode=False):
        """Remove the cgroup and its descendants (depth first), twins included; return changed."""
        nodes = self._all()
        if check_mode:
            return any(n.exists() for n in nodes)
        changed = False
        for n in nodes:
            try:
                changed = n.remove() or changed
            except (IOError, OSError) as e:
                if e.errno == errno.EBUSY:
                    raise HaulError('remove', 'cgroup %s still has processes' % n.fs_path)
                raise HaulError('remove', 'cannot remove %s: %s' % (n.fs_path, e.strerror or e))
        return changed

    def info(self):
        """A dict for module results: cgroup, path, version, state, pid_count, twins."""
        pids = self.pids()
        return dict(cgroup=self.path, path=self.rel, version=self.version, state=self.state(),
                    pid_count=len(pids), twins=self.twins)


def freezer_argspec():
    """The options that name a cgroup and its freezer (the doc fragment ``haul.live.freezer``),
    for cgroup_freeze and cgroup_thaw. Use with FREEZER_RULES."""
    return dict(
        cgroup=dict(type='str'),
        pid=dict(type='int'),
        version=dict(type='str', choices=list(VERSIONS), default='auto'),
        timeout=dict(type='float', default=10),
    )


# One of cgroup and pid names the cgroup.
FREEZER_RULES = dict(mutually_exclusive=[('cgroup', 'pid')], required_one_of=[('cgroup', 'pid')])


def from_params(cgroup=None, pid=None, version=AUTO, step='cgroup', mounts=None):
    """The :class:`Cgroup` named by module options ``cgroup`` (a path) or ``pid``."""
    if cgroup and pid:
        raise HaulError(step, 'give either cgroup or pid, not both')
    if pid is not None:
        return Cgroup.from_pid(pid, version=version, step=step, mounts=mounts)
    if not cgroup:
        raise HaulError(step, 'give a cgroup path or a pid')
    return Cgroup(cgroup, version=version, step=step, mounts=mounts)


def _short_list(pids, limit=10):
    s = ' '.join(str(p) for p in pids[:limit])
    if len(pids) > limit:
        s += ' ...'
    return s or 'none'


def discover_containers(parent=DEFAULT_PARENT, version=AUTO, mounts=None, proc=PROC):
    """List the containers below the cgroup ``parent``.

    A container is a child cgroup of ``parent`` whose processes (recursively) include the init of a
    pid namespace (see :func:`pidns_init`). Child cgroups without one are skipped. A missing
    parent gives an empty list.

    Returns a list, sorted by name, of dicts: ``name`` (child cgroup name), ``cgroup``
    (filesystem path, usable as CRIU's freeze_cgroup and as the ``cgroup`` option of the
    modules), ``path`` (relative path like ``haul/ct1``), ``version``, ``init_pid`` (pid, in this
    host's pid namespace, of the container's init) and ``pids`` (sorted pids).
    """
    try:
        base = Cgroup(parent, version=version, step='discover', mounts=mounts)
    except HaulError as e:
        if 'does not exist' in e.cause:
            return []
        raise
    res = []
    try:
        names = sorted(os.listdir(base.path))
    except OSError:
        return []
    for name in names:
        fs = os.path.join(base.path, name)
        if not os.path.isdir(fs):
            continue
        node = _Node(base.version, fs)
        pids = node.pids()
        init = pidns_init(pids, proc=proc)
        if init is None:
            continue
        rel = (base.rel + '/' + name).strip('/')
        res.append(dict(name=name, cgroup=fs, path=rel, version=base.version, init_pid=init, pids=pids))
    return res
