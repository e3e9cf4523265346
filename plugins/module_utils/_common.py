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

import os

LOG_TAIL_LINES = 20
LOG_TAIL_MAX_BYTES = 8192


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
