# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The per-migration keys in a destination's authorized_keys, changed under a lock.

This is a private module_util: it is not part of the collection's public API.

Parallel migrations (``haul_parallel`` > 1) add and remove their keys in the same file at the
same time; a read-change-write without a lock loses another migration's key (seen on the lab:
``SSH authentication failed (publickey)`` for one of three parallel post-copy migrations). Every
change here holds ``flock`` on ``<file>.haul-lock`` and replaces the file atomically.

A haul.live line ends with the comment ``haul.live NAME [ID]`` and may carry
``expiry-time="YYYYMMDDhhmm[Z]"`` (see roles/migrate/tasks/key.yml).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import fcntl
import os
import re
import time

from ansible_collections.haul.live.plugins.module_utils._common import HaulError

_EXPIRY = re.compile(r'expiry-time="([0-9]{12})Z?"')
_HAUL = re.compile(r' haul[.]live (\S+)(?: (\S+))?\Z')


def owner_of(line):
    """(container, migration id or None) of a haul.live line, else None."""
    m = _HAUL.search(line.rstrip())
    return (m.group(1), m.group(2)) if m else None


def expired(line, now_utc):
    """Whether the line's expiry-time (UTC, ``YYYYMMDDhhmm``) is before ``now_utc`` (same format)."""
    m = _EXPIRY.search(line)
    return bool(m) and m.group(1) < now_utc


def stale(lines, container, now_utc):
    """The haul.live lines of ``container`` (any migration), and every expired haul.live line."""
    out = []
    for line in lines:
        who = owner_of(line)
        if who and (who[0] == container or expired(line, now_utc)):
            out.append(line)
    return out


def now_utc():
    return time.strftime('%Y%m%d%H%M', time.gmtime())


@contextlib.contextmanager
def locked(path):
    """flock on ``<path>.haul-lock`` (made 0600) for the duration."""
    d = os.path.dirname(path) or '.'
    if not os.path.isdir(d):
        os.makedirs(d, 0o700)
    fd = os.open(path + '.haul-lock', os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except (IOError, OSError) as e:
        if getattr(e, 'errno', None) == 2:
            return []
        raise HaulError('key', 'cannot read %s: %s' % (path, e.strerror or e))


def write_lines(path, lines):
    """Replace ``path`` atomically with ``lines`` (mode 0600, owned by the owner of its directory:
    root for /root/.ssh, the user for a user's own)."""
    tmp = '%s.haul-tmp.%d' % (path, os.getpid())
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w') as f:
            f.write(''.join(line + '\n' for line in lines))
            f.flush()
            os.fsync(f.fileno())
        # a user's own file must be theirs (sshd's StrictModes): the owner of its .ssh directory
        parent = os.stat(os.path.dirname(os.path.abspath(path)))
        os.chown(tmp, parent.st_uid, parent.st_gid)
        os.rename(tmp, path)
    except (IOError, OSError) as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise HaulError('key', 'cannot write %s on %s: %s' % (path, os.uname()[1], e.strerror or e))


def change(path, container, line=None, state='present', check_mode=False, now=None):
    """Add ``line`` (state present), remove the container's lines (absent), or remove its lines and
    every expired haul.live line (pruned). Returns (changed, added, removed)."""
    if line is not None and (owner_of(line) or (None,))[0] != container:
        raise HaulError('key', 'the key line must end with the comment "haul.live %s [ID]"' % container)
    with locked(path):
        lines = read_lines(path)
        added, removed = [], []
        if state == 'present':
            if line not in lines:
                added = [line]
        elif state == 'absent':
            removed = [ln for ln in lines if (owner_of(ln) or (None,))[0] == container]
        else:
            removed = stale(lines, container, now or now_utc())
        if (added or removed) and not check_mode:
            write_lines(path, [ln for ln in lines if ln not in removed] + added)
    return bool(added or removed), added, removed
