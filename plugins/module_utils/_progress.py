# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Progress of a long transfer, for the operator to watch (private module_util).

A module that copies for a long time (the root filesystem's pre-sync) runs its rsync with
``--info=progress2`` through :func:`run_streaming`, which reads rsync's progress as it comes and
writes the latest into a small JSON file (:class:`ProgressFile`: bytes, percent, rate, ETA, never
a file name or content). The task runs async; the ``haul.live.progress`` action on the controller
reads that file while it waits and prints one line per interval, which AWX shows as the job runs.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import select
import subprocess
import time

# rsync --info=progress2: "    123,456,789  45%   12.34MB/s    0:00:10 (xfr#3, to-chk=10/100)"
_PROGRESS2 = re.compile(r'^\s*([\d,.]+)\s+(\d{1,3})%\s+([\d.,]+)([kKMGT]?B)/s\s+(\d+):(\d\d):(\d\d)')
_UNITS = {'B': 1, 'kB': 1024, 'KB': 1024, 'MB': 1024 ** 2, 'GB': 1024 ** 3, 'TB': 1024 ** 4}


def parse_progress2(chunk):
    """One rsync ``--info=progress2`` update as a dict (``bytes``, ``percent``, ``rate_bytes_s``,
    ``eta_s``), or None when ``chunk`` is not one."""
    m = _PROGRESS2.match(chunk)
    if not m:
        return None
    moved = int(m.group(1).replace(',', '').replace('.', ''))
    rate = float(m.group(3).replace(',', '')) * _UNITS.get(m.group(4), 1)
    eta = int(m.group(5)) * 3600 + int(m.group(6)) * 60 + int(m.group(7))
    return {'bytes': moved, 'percent': int(m.group(2)), 'rate_bytes_s': int(rate), 'eta_s': eta}


def clean_output(text):
    """rsync's stdout without its progress updates: each line keeps what follows its last CR,
    and lines that are only a progress update go."""
    out = []
    for line in text.split('\n'):
        updated = '\r' in line
        line = line.rsplit('\r', 1)[-1]
        if parse_progress2(line) is None and not (updated and not line.strip()):
            out.append(line)
    return '\n'.join(out)


class ProgressFile(object):
    """The latest progress of one transfer, as JSON in ``path`` (mode 0600, replaced atomically)."""

    def __init__(self, path, label='', clock=time.time, every=1.0):
        self.path = path
        self.label = label
        self.clock = clock
        self.every = every
        self.started = clock()
        self.last = None

    def write(self, progress, force=False):
        now = self.clock()
        if not force and self.last is not None and now - self.last < self.every:
            return False
        self.last = now
        parent = os.path.dirname(self.path)
        if parent and not os.path.isdir(parent):
            os.makedirs(parent, 0o700)
        data = dict(progress, label=self.label, elapsed_s=round(now - self.started, 1), updated=now)
        tmp = '%s.tmp' % self.path
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(data, sort_keys=True).encode('utf-8'))
        finally:
            os.close(fd)
        os.rename(tmp, self.path)
        return True

    def remove(self):
        for path in (self.path, '%s.tmp' % self.path):
            try:
                os.unlink(path)
            except OSError:
                pass


def run_streaming(argv, on_progress, environ_update=None, popen=subprocess.Popen):
    """Run ``argv`` (rsync with ``--info=progress2``), calling ``on_progress(dict)`` for each
    progress update as it comes; return ``(rc, stdout without the updates, stderr)`` as
    ``AnsibleModule.run_command`` would."""
    env = dict(os.environ)
    env.update(environ_update or {})
    # run_command returns only at the end: the progress must be read while rsync runs
    proc = popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)  # pylint: disable=ansible-bad-function
    chunks = {proc.stdout.fileno(): [], proc.stderr.fileno(): []}
    pending = b''
    open_fds = set(chunks)
    while open_fds:
        ready, _w, _x = select.select(list(open_fds), [], [], 1.0)
        for fd in ready:
            data = os.read(fd, 65536)
            if not data:
                open_fds.discard(fd)
                continue
            chunks[fd].append(data)
            if fd == proc.stdout.fileno():
                pending += data
                parts = re.split(b'[\r\n]', pending)
                pending = parts.pop()
                for part in reversed(parts):  # the latest complete update only
                    update = parse_progress2(part.decode('utf-8', 'replace'))
                    if update is not None:
                        on_progress(update)
                        break
    rc = proc.wait()
    out = b''.join(chunks[proc.stdout.fileno()]).decode('utf-8', 'replace')
    err = b''.join(chunks[proc.stderr.fileno()]).decode('utf-8', 'replace')
    return rc, clean_output(out), err
