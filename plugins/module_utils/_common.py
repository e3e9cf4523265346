# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Shared error type and failure formatting for haul.live modules.

This is a private module_util: it is not part of the collection's public API.

Every failure a haul.live module reports goes through :class:`HaulError`, so that
``msg`` always has the same one-line shape::

    <step>: <cause>

and the structured details (CRIU log path, tail of the log, rc) travel next to it
in the module result, never the whole log.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess

LOG_TAIL_LINES = 20
LOG_TAIL_MAX_BYTES = 8192
# The images' manifest: _images writes it in every images directory, _verify checks it where they arrive.
MANIFEST = 'manifest.json'


def log_tail(path, lines=LOG_TAIL_LINES, max_bytes=LOG_TAIL_MAX_BYTES):
    """Return the last ``lines`` lines of a log file (bounded in bytes), or [] if unreadable."""
    if not path:
        return []
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except (IOError, OSError):
        return []
    text = data.decode('utf-8', 'replace')
    out = text.splitlines()
    if size > max_bytes and out:
        out = out[1:]  # first line is probably cut in the middle
    return out[-lines:]


class HaulError(Exception):
    """A failure of one step of a migration.

    :param step: the step that failed, e.g. ``dump``, ``freeze``, ``restore``, ``sync``.
    :param cause: one line saying why.
    :param log: path of the CRIU (or other tool) log, if any; its tail is attached.
    :param rc: an exit or errno code, if any.
    :param details: extra JSON-serialisable fields for the result.
    """

    def __init__(self, step, cause, log=None, rc=None, **details):
        self.step = step
        self.cause = ' '.join(str(cause).split())  # one line
        self.log = log
        self.rc = rc
        self.details = details
        super(HaulError, self).__init__(self.msg)

    @property
    def msg(self):
        return '%s: %s' % (self.step, self.cause)

    def result(self):
        res = dict(self.details)
        res['failed_step'] = self.step
        if self.log:
            res['log_path'] = self.log
            res['log_tail'] = log_tail(self.log)
        if self.rc is not None:
            res['rc'] = self.rc
        return res


def fail(module, err, **extra):
    """fail_json for a HaulError, with its details merged with ``extra``."""
    res = err.result()
    res.update(extra)
    module.fail_json(msg=err.msg, **res)


# --------------------------------------------------------------------------- small files on a full disk

NO_SPACE_ERRNOS = (28, 122)  # ENOSPC, EDQUOT
SPARE_SUFFIX = '.spare'
SPARE_BYTES = 4096


def _hostname():
    try:
        return os.uname()[1]
    except (AttributeError, OSError):
        return 'this host'


def no_space_error(step, path, err=None, what=None):
    """The HaulError for a file that cannot be written because its filesystem is full: it names
    the step, the file and ``no space left on <host>``, so that the operator (and the other side
    of a migration) learns it at once instead of waiting out a timeout."""
    return HaulError(step, 'no space left on %s: cannot write %s%s (%s)'
                     % (_hostname(), path, (' (%s)' % what) if what else '',
                        (getattr(err, 'strerror', None) or err) if err is not None else 'No space left on device'),
                     file=path, no_space=True)


def is_no_space(err):
    return getattr(err, 'errno', None) in NO_SPACE_ERRNOS


def _write_spare(spare, data):
    """Overwrite the pre-allocated ``spare`` with ``data`` (no new blocks needed: the spare's
    blocks were written when it was made)."""
    fd = os.open(spare, os.O_WRONLY)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def _make_spare(spare):
    """Best effort: a SPARE_BYTES file written (blocks allocated) and synced, for a later write
    on a full filesystem."""
    try:
        if os.path.exists(spare) and os.path.getsize(spare) >= SPARE_BYTES:
            return
        fd = os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b'\0' * SPARE_BYTES)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        try:
            os.unlink(spare)
        except OSError:
            pass


def write_atomic(path, data, step, what=None, spare=False, mode=0o600):
    """Write ``data`` (bytes or str) to ``path`` atomically (``path.tmp``, then rename).

    When the filesystem is full (ENOSPC, EDQUOT) it raises :func:`no_space_error` (``step``,
    the file, ``no space left on <host>``) at once. With ``spare=True`` (status files that the
    other side of a migration waits for), a successful write also keeps a small pre-allocated
    ``path.spare``; on a full filesystem the data goes into that spare, which is renamed over
    ``path`` (atomic, and it needs no new blocks), so that a short status still gets through.
    """
    if not isinstance(data, bytes):
        data = data.encode('utf-8')
    tmp = path + '.tmp'
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError as e:
        if not is_no_space(e):
            raise
        try:
            os.unlink(tmp)
        except OSError:
            pass
        sp = path + SPARE_SUFFIX
        if spare and len(data) <= SPARE_BYTES and os.path.exists(sp):
            try:
                _write_spare(sp, data)
                os.rename(sp, path)
            except OSError:
                pass
            else:
                _make_spare(sp)  # best effort: the old file's blocks were just freed
                return path
        raise no_space_error(step, path, e, what)
    if spare:
        _make_spare(path + SPARE_SUFFIX)
    return path


def write_json_atomic(path, obj, step, what=None, spare=False):
    """:func:`write_atomic` of ``obj`` as JSON (sorted keys)."""
    return write_atomic(path, json.dumps(obj, sort_keys=True), step, what=what, spare=spare)


def run_command(argv, step, timeout=10, shown=6):
    """Run a short command (no shell); its standard output, or HaulError(step, ...) naming the
    command (its first ``shown`` words), its exit status and the last line of its standard error."""
    what = ' '.join(argv[:shown])
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,  # pylint: disable=ansible-bad-function
                           timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise HaulError(step, '%s did not answer within %d s' % (what, timeout))
    except (OSError, subprocess.SubprocessError) as e:
        raise HaulError(step, 'cannot run %s: %s' % (argv[0], e))
    if p.returncode != 0:
        err = p.stderr.decode('utf-8', 'replace').strip().splitlines()
        raise HaulError(step, '%s failed (exit status %d): %s' % (what, p.returncode, err[-1] if err else 'no message'))
    return p.stdout.decode('utf-8', 'replace')
