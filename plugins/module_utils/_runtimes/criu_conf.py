# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""CRIU's ``leave-stopped`` for a runtime's own restore (private module_util).

Podman and LXC have no restore that does not resume the container, but the handoff must hold the
copy stopped until the commit (docs/runtimes.md). Their CRIU reads the OCI runtime's configuration
file (``/etc/criu/runc.conf``, ``crun.conf``, or ``default.conf`` for LXC), so :func:`leave_stopped`
adds ``leave-stopped`` to that file while the restore runs, one restore at a time on a host, and
puts the original back after, or on the next run when a run was killed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import fcntl
import os

from ansible_collections.haul.live.plugins.module_utils._common import write_atomic

# CRIU's configuration file for each OCI runtime (runc and crun hand it to CRIU).
CRIU_CONF_DIR = '/etc/criu'
CONF_LOCK = '/run/haul-live/criu-conf.lock'
ORIGINAL_SUFFIX = '.haul-live-original'
ABSENT = '# haul.live: this file did not exist before leave-stopped was set\n'
LEAVE_STOPPED = 'leave-stopped'


def with_leave_stopped(text):
    """CRIU's configuration ``text`` with ``leave-stopped`` added (once)."""
    lines = (text or '').splitlines()
    if LEAVE_STOPPED in (line.strip() for line in lines):
        return text
    return '\n'.join(lines + ['# haul.live: the restored tasks stay stopped until the commit', LEAVE_STOPPED]) + '\n'


def undo_leave_stopped(conf):
    """Put back the configuration that :func:`leave_stopped` changed (one that a killed run left
    changed too). Idempotent."""
    original = conf + ORIGINAL_SUFFIX
    try:
        with open(original) as f:
            text = f.read()
    except (IOError, OSError):
        return False
    if text == ABSENT:
        try:
            os.unlink(conf)
        except OSError:
            pass
    else:
        write_atomic(conf, text, 'restore', what='CRIU\'s configuration', mode=0o644)
    os.unlink(original)
    return True


@contextlib.contextmanager
def leave_stopped(oci_runtime, conf_dir=CRIU_CONF_DIR, lock_path=CONF_LOCK):
    """CRIU's ``leave-stopped`` in the OCI runtime's CRIU configuration while the block runs (Podman
    has no restore that does not resume: docs/runtimes.md). Host-wide while set, so one restore at
    a time (a lock); the original is kept beside it as ``*.haul-live-original`` and put back after,
    or by the next run when this one was killed."""
    conf = os.path.join(conf_dir, '%s.conf' % (oci_runtime or 'runc'))
    for d, mode in ((os.path.dirname(lock_path), 0o700), (conf_dir, 0o755)):
        try:
            os.makedirs(d, mode)
        except OSError:
            pass
    with open(lock_path, 'a') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        undo_leave_stopped(conf)
        try:
            with open(conf) as f:
                text = f.read()
        except (IOError, OSError):
            text = None
        write_atomic(conf + ORIGINAL_SUFFIX, ABSENT if text is None else text, 'restore',
                     what='a copy of CRIU\'s configuration', mode=0o644)
        try:
            write_atomic(conf, with_leave_stopped(text), 'restore', what='CRIU\'s configuration', mode=0o644)
            yield conf
        finally:
            undo_leave_stopped(conf)
