# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""One owner per container: the lease.

This is a private module_util: it is not part of the collection's public API.

A migration holds a lease on the container's name on BOTH hosts (the source and the
destination) for its whole life. The lease is a JSON record in ``LEASE_DIR/NAME.json``::

    {"name": "web1", "migration_id": "20261130T170000123456-3fa2c1",
     "owner": {"host": "ctl", "pid": 4242, "user": "root", "started": "..."},
     "role": "source", "phase": "FROZEN", "ttl_s": 1320,
     "acquired": 1764522000.1, "updated": 1764522010.5, "expires": 1764523330.5}

Every read-check-write of the record happens under ``flock(LEASE_DIR/NAME.lock)``; the record
is written to a temporary file, fsync'd, renamed over the old one and the directory fsync'd,
so that a reader sees the old record or the new one, never half of one, and a crash right after
:func:`acquire` or :func:`update` returns cannot lose what they wrote.

Rules:

- :func:`acquire` for the same migration id renews the lease; for another migration id it
  fails at once, naming the holder, unless the holder's lease expired: then it is taken over
  and the new record keeps the old one under ``took_over``.
- :func:`update` fails when the lease is absent or held by another migration: the caller lost
  the container and must stop touching it. A phase never moves backwards
  (:data:`_phases.PHASES` order): an older phase is ignored, the record keeps the later one.
- :func:`release` never removes another migration's lease.

``LEASE_DIR`` is on tmpfs (``/run``): a rebooted host has neither a lease nor a frozen
container, so a lease never outlives what it protects.

The lock file is removed with the record, while the lock is held. A process that opened the
old lock file and then got the lock finds that its file is no longer the one at the path and
starts again (:func:`_locked`), so two processes never both believe they hold the lock.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import errno
import fcntl
import json
import os
import time

from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.module_utils._migration import phases as _phases

LEASE_DIR = '/run/haul/leases'   # tmpfs: a rebooted host has neither a lease nor a frozen container
ROLES = ('source', 'destination')
LOCK_TIMEOUT_S = 10.0            # the lock guards a few file operations: waiting longer means a hung holder
CORE_KEYS = ('name', 'migration_id', 'owner', 'role', 'acquired', 'took_over')


def _now(now):
    return time.time() if now is None else float(now)


def _check_name(name, what='container name'):
    text = '' if name is None else str(name)
    if (not text or '/' in text or '\0' in text or '\n' in text or text.startswith('.')
            or len(text) > 200):
        raise HaulError('lease', 'bad %s %r for a lease' % (what, name))
    return text


def paths(name, lease_dir=LEASE_DIR):
    """``(record, lock)`` paths of ``name``'s lease."""
    name = _check_name(name)
    return os.path.join(lease_dir, name + '.json'), os.path.join(lease_dir, name + '.lock')


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _ensure_dir(lease_dir):
    try:
        os.makedirs(lease_dir, 0o700)
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise HaulError('lease', 'cannot create the lease directory %s: %s' % (lease_dir, e.strerror))
    if not os.path.isdir(lease_dir):
        raise HaulError('lease', 'the lease directory %s is not a directory' % lease_dir)


@contextlib.contextmanager
def _locked(name, lease_dir, timeout=LOCK_TIMEOUT_S):
    """Hold ``flock(LEASE_DIR/NAME.lock)`` (bounded wait of ``timeout`` s)."""
    _ensure_dir(lease_dir)
    lock_path = paths(name, lease_dir)[1]
    deadline = time.time() + timeout
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise HaulError('lease', 'cannot open the lock %s: %s' % (lock_path, e.strerror))
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except (IOError, OSError) as e:
                    if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        raise HaulError('lease', 'cannot lock %s: %s' % (lock_path, e.strerror))
                    if time.time() >= deadline:
                        raise HaulError('lease', 'the lock %s stayed held for %d s: another run is '
                                        'updating the lease of %s' % (lock_path, timeout, name))
                    time.sleep(0.02)
            # the holder before us may have released the lease and removed this lock file
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(lock_path))
            except OSError:
                same = False
            if same:
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield lock_path
    finally:
        os.close(fd)  # closing the last descriptor releases the flock


def _load(record_path):
    try:
        with open(record_path) as f:
            text = f.read()
    except (IOError, OSError) as e:
        if e.errno == errno.ENOENT:
            return None
        raise HaulError('lease', 'cannot read the lease %s: %s' % (record_path, e.strerror))
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    if not isinstance(record, dict) or not record.get('migration_id'):
        raise HaulError('lease', 'the lease %s is not a lease record; remove it by hand if no '
                        'migration runs' % record_path)
    return record


def _store(record_path, record):
    tmp = '%s.tmp.%d' % (record_path, os.getpid())
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, (json.dumps(record, sort_keys=True) + '\n').encode('utf-8'))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, record_path)
        _fsync_dir(os.path.dirname(record_path) or '.')
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise HaulError('lease', 'cannot write the lease %s: %s' % (record_path, e.strerror))


def _phase(phase):
    if phase not in _phases.PHASES:
        raise HaulError('lease', 'unknown phase %r (one of %s)' % (phase, ', '.join(_phases.PHASES)))
    return phase


def later(a, b):
    """The later of two phases."""
    return a if _phases.index(a) >= _phases.index(b) else b


def _ttl(ttl_s):
    try:
        ttl = float(ttl_s)
    except (TypeError, ValueError):
        ttl = 0
    if ttl <= 0:
        raise HaulError('lease', 'bad lease ttl %r: a positive number of seconds' % (ttl_s,))
    return ttl


def expired(record, now=None):
    """Whether ``record``'s lease has expired (a missing or broken expiry counts as expired)."""
    try:
        return _now(now) >= float(record['expires'])
    except (KeyError, TypeError, ValueError):
        return True


def owner_text(owner):
    """``user@host pid N`` for an owner dict (what is known of it)."""
    if not isinstance(owner, dict):
        return str(owner) if owner else 'unknown owner'
    who = owner.get('host') or 'unknown host'
    if owner.get('user'):
        who = '%s@%s' % (owner['user'], who)
    if owner.get('pid') not in (None, ''):
        who += ' pid %s' % owner['pid']
    return who


def describe(record, now=None):
    """``migration ID (OWNER, phase P, expires in N s)``: who holds a lease, for messages."""
    if not record:
        return 'nobody'
    left = int(round(float(record.get('expires', 0) or 0) - _now(now)))
    when = 'expires in %d s' % left if left > 0 else 'expired %d s ago' % -left
    return 'migration %s (%s, %s, phase %s, %s)' % (
        record.get('migration_id'), owner_text(record.get('owner')), record.get('role', 'unknown role'),
        record.get('phase'), when)


def _held_error(name, record, now):
    return HaulError('lease', '%s is held by %s' % (name, describe(record, now)),
                     holder=record)


def read(name, lease_dir=LEASE_DIR):
    """The lease record of ``name``, or None (no lock needed: the record is replaced atomically)."""
    return _load(paths(name, lease_dir)[0])


def acquire(name, migration_id, owner, role, ttl_s, phase=_phases.PREPARING, lease_dir=LEASE_DIR, now=None,
            take_over=None):
    """Take (or renew) the lease of ``name`` for ``migration_id``; returns the record.

    Fails with ``HaulError('lease', '<name> is held by migration ...')`` (``details['holder']``
    is the holder's record) when another migration holds an unexpired lease.

    ``take_over``: the id of a migration whose lease may be taken although it has not expired,
    because the caller knows its owner is dead (its controller process is gone: see the
    ``haul.live.lease_owner`` filter). Only that exact holder is taken over; the record's
    ``took_over`` then has ``reason: abandoned`` (else ``expired``).
    """
    migration_id = _check_name(migration_id, 'migration id')
    if role not in ROLES:
        raise HaulError('lease', 'bad role %r (source or destination)' % (role,))
    ttl = _ttl(ttl_s)
    phase = _phase(phase)
    record_path = paths(name, lease_dir)[0]
    with _locked(name, lease_dir):
        t = _now(now)
        old = _load(record_path)
        if old and old.get('migration_id') == migration_id:
            if old.get('role') != role:
                raise HaulError('lease', '%s: migration %s already holds the lease here as the %s, not the %s'
                                % (name, migration_id, old.get('role'), role), holder=old)
            record = dict(old)
            record['phase'] = later(_phase(old.get('phase', phase)), phase)
        elif old and not expired(old, t) and not (take_over and old.get('migration_id') == take_over):
            raise _held_error(name, old, t)
        else:
            record = {'name': name, 'migration_id': migration_id, 'owner': owner or {}, 'role': role,
                      'phase': phase, 'acquired': t}
            if old:
                previous = dict(old)
                previous.pop('took_over', None)
                previous['reason'] = 'expired' if expired(old, t) else 'abandoned'
                record['took_over'] = previous
        record.update({'updated': t, 'ttl_s': ttl, 'expires': t + ttl})
        _store(record_path, record)
        return record


def update(name, migration_id, phase=None, ttl_s=None, lease_dir=LEASE_DIR, now=None, **extra):
    """Record a new phase (and/or renew for ``ttl_s``, and/or add fields) in our lease; durable.

    Fails with ``HaulError('lease', ...)`` when the lease is absent or another migration holds
    it: the caller must then stop touching the container. A phase older than the recorded one
    is ignored (phases never move backwards).
    """
    record_path = paths(name, lease_dir)[0]
    if phase is not None:
        phase = _phase(phase)
    ttl = _ttl(ttl_s) if ttl_s is not None else None
    bad = sorted(k for k in extra if k in CORE_KEYS)
    if bad:
        raise HaulError('lease', 'a lease update cannot change %s' % ', '.join(bad))
    with _locked(name, lease_dir):
        t = _now(now)
        record = _load(record_path)
        if not record:
            raise HaulError('lease', '%s has no lease here: migration %s lost it (released, taken '
                            'over and released, or the host restarted)' % (name, migration_id))
        if record.get('migration_id') != migration_id:
            raise HaulError('lease', '%s is held by %s, not by migration %s'
                            % (name, describe(record, t), migration_id), holder=record)
        record = dict(record)
        record.update(extra)
        if phase is not None:
            record['phase'] = later(_phase(record.get('phase', phase)), phase)
        if ttl is not None:
            record['ttl_s'] = ttl
            record['expires'] = t + ttl
        record['updated'] = t
        _store(record_path, record)
        return record


def release(name, migration_id, lease_dir=LEASE_DIR):
    """Remove ``name``'s lease if ``migration_id`` holds it (and its lock file); True if removed."""
    record_path, lock_path = paths(name, lease_dir)
    if not os.path.isdir(lease_dir):
        return False
    with _locked(name, lease_dir):
        record = _load(record_path)
        if not record or record.get('migration_id') != migration_id:
            return False
        os.unlink(record_path)
        os.unlink(lock_path)  # under the lock: a waiter on the old file notices and starts again
        _fsync_dir(lease_dir)
        return True


def check(name, migration_id, lease_dir=LEASE_DIR):
    """Our lease record, or ``HaulError('lease', ...)`` when it is absent or someone else's.

    An expired lease that nobody took over is still ours; to be sure it stays ours while doing
    something, renew it with :func:`update` (``ttl_s``) first.
    """
    record = read(name, lease_dir)
    if not record:
        raise HaulError('lease', '%s has no lease here: migration %s does not hold it' % (name, migration_id))
    if record.get('migration_id') != migration_id:
        raise HaulError('lease', '%s is held by %s, not by migration %s'
                        % (name, describe(record), migration_id), holder=record)
    return record


# --------------------------------------------------------------------------- the owner (on the controller)

def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except (IOError, OSError):
        return None


def _stat_fields(pid, proc='/proc'):
    """Fields of /proc/PID/stat after the command name (state is [0], ppid [1], starttime [19])."""
    text = _read(os.path.join(proc, str(pid), 'stat'))
    if not text or ')' not in text:
        return None
    return text.rsplit(')', 1)[1].split()


def _cmdline(pid, proc='/proc'):
    text = _read(os.path.join(proc, str(pid), 'cmdline'))
    return (text or '').replace('\0', ' ')


def boot_id(proc='/proc'):
    """This machine's boot id (a pid means nothing across a reboot)."""
    return (_read(os.path.join(proc, 'sys/kernel/random/boot_id')) or '').strip()


def controller_pid(pid=None, proc='/proc', marker='ansible-playbook'):
    """The ansible-playbook process this one runs under: from ``pid`` (default this process) up,
    the first process whose command line names ``marker``, then up through its parents while they
    name it too (a worker is a fork of the main process); else None (unknown: such an owner is
    never taken for dead, its lease is taken over only once it expired).

    A play started by a task of another play (a test) has its own main process: the chain stops
    at the first parent that is not ansible-playbook, so the outer play is never taken for it."""
    pid = os.getpid() if pid is None else int(pid)
    found = None
    seen = 0
    while pid > 1 and seen < 64:
        seen += 1
        if marker in _cmdline(pid, proc):
            found = pid
        elif found is not None:
            break
        fields = _stat_fields(pid, proc)
        if not fields:
            break
        pid = int(fields[1])
    return found


def current_owner(user=None, host=None, proc='/proc'):
    """The owner dict of a lease taken by this controller: host, pid (the ansible-playbook
    process), its start time in clock ticks since boot, the boot id, user and a start date."""
    pid = controller_pid(proc=proc)
    fields = (_stat_fields(pid, proc) if pid else None) or []
    if user is None:
        try:
            import pwd
            user = pwd.getpwuid(os.getuid()).pw_name
        except (ImportError, KeyError):
            user = str(os.getuid())
    return {
        'host': host or os.uname()[1],
        'pid': pid,
        'start_ticks': int(fields[19]) if len(fields) > 19 else None,
        'boot_id': boot_id(proc),
        'user': user,
        'started': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
    }


def owner_alive(owner, host=None, proc='/proc'):
    """Whether the controller process ``owner`` names still runs: True or False when the owner
    is this machine (same host name and boot id), None when it is another machine (unknown)."""
    if not isinstance(owner, dict) or not owner.get('pid'):
        return None
    if owner.get('host') != (host or os.uname()[1]) or owner.get('boot_id') != boot_id(proc):
        return None
    fields = _stat_fields(owner['pid'], proc)
    if not fields or fields[0] in ('Z', 'X'):
        return False
    if owner.get('start_ticks') is not None and str(fields[19]) != str(owner['start_ticks']):
        return False  # the pid was reused by another process
    return True
