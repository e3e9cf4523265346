# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The link's rate to a destination, measured through the same SSH as a migration's images.

This is a private module_util: it is not part of the collection's public API.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import re
import time

from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.module_utils._transport import (
    C_LOCALE, _key_line, _tail, explain_rsync_failure)

PROBE_BLOCK = 1048576
DEFAULT_PROBE_BYTES = 64 * PROBE_BLOCK
MAX_PROBE_BYTES = 1024 * PROBE_BLOCK
# What the destination runs: dd reports the bytes it read and for how long, from its own start,
# so the SSH connection set-up (about 0.1 s on a LAN) is not counted as transfer time.
PROBE_REMOTE = ['env', 'LC_ALL=C', 'dd', 'of=/dev/null', 'bs=%d' % PROBE_BLOCK]
_DD_STATS = re.compile(r'^(\d+) bytes\b.*copied, ([0-9.]+(?:[eE][-+]?\d+)?) s', re.MULTILINE)


def probe_payload(nbytes, block=PROBE_BLOCK, urandom=os.urandom):
    """``nbytes`` of data that does not compress: one random block of ``block`` bytes, repeated.

    A repeat further apart than zlib's 32 KiB window gives SSH compression (when an operator
    turns it on) nothing to gain, and it costs one urandom block, not ``nbytes``.
    """
    if nbytes <= 0:
        raise ValueError('nbytes must be positive')
    unit = urandom(min(block, nbytes))
    whole, rest = divmod(nbytes, len(unit))
    return unit * whole + unit[:rest]


def parse_dd_stats(text):
    """(bytes, seconds) from the summary dd prints on stderr (C locale), or None."""
    m = None
    for m in _DD_STATS.finditer(text or ''):
        pass
    if not m:
        return None
    return int(m.group(1)), float(m.group(2))


def link_rate(nbytes, seconds):
    """Bytes per second for ``nbytes`` moved in ``seconds``, as an int; None when ``seconds`` <= 0."""
    if nbytes < 0:
        raise ValueError('nbytes must be >= 0')
    if not seconds or seconds <= 0:
        return None
    return int(round(nbytes / float(seconds)))


def probe_link(target, run_command, nbytes=DEFAULT_PROBE_BYTES, clock=time.time, urandom=os.urandom):
    """Measure the rate at which this host moves bytes to ``target`` over SSH.

    Pipes ``nbytes`` of incompressible data (:func:`probe_payload`) through
    ``ssh TARGET 'env LC_ALL=C dd of=/dev/null bs=1M'``: the data goes through the same SSH
    (cipher, key, options) as the images of a migration, and lands nowhere on the destination.
    The transfer time is the one dd reports on the destination (from its start to the end of
    its input), so that the SSH handshake does not count; when dd's summary cannot be read,
    it is the local wall-clock time of the whole command (handshake included: a lower rate).

    Returns ``{'link_bytes_s', 'bytes', 'seconds', 'duration_s', 'timed_by'}`` (``timed_by``:
    ``dd`` or ``local``). Raises HaulError('probe', ...) when the destination cannot be
    reached, or when fewer bytes arrived than were sent.
    """
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes <= 0 or nbytes > MAX_PROBE_BYTES:
        raise HaulError('probe', 'the probe size must be between 1 and %d bytes, not %r' % (MAX_PROBE_BYTES, nbytes))
    payload = probe_payload(nbytes, urandom=urandom)
    argv = target.remote_argv(PROBE_REMOTE)
    start = clock()
    try:
        rc, _out, err = run_command(argv, data=payload, binary_data=True, environ_update=dict(C_LOCALE),
                                    handle_exceptions=False)
    except (IOError, OSError) as e:
        if e.errno != errno.EPIPE:
            raise HaulError('probe', 'cannot run ssh to %s: %s' % (target.host, e.strerror or e))
        # ssh exited before it read all the data (no login, say): ask it again without data, for its error
        rc, _out, err = run_command(target.remote_argv(['true']), environ_update=dict(C_LOCALE))
        if rc == 0:
            raise HaulError('probe', 'the connection to %s broke during the probe (broken pipe)' % target.host)
    duration = clock() - start
    if rc != 0:
        if rc == 127 or 'dd: not found' in (err or '') or 'dd: command not found' in (err or ''):
            cause = 'dd is not installed on %s (%s)' % (target.host, _key_line(_tail(err)) or 'rc %s' % rc)
        else:
            cause = explain_rsync_failure(rc, err, target.host).replace('rsync exit', 'ssh exit')
        raise HaulError('probe', cause, rc=rc, stderr_tail=_tail(err))
    stats = parse_dd_stats(err)
    if stats is not None and stats[0] != nbytes:
        raise HaulError('probe', 'only %d of the %d bytes sent arrived on %s' % (stats[0], nbytes, target.host),
                        stderr_tail=_tail(err))
    if stats is not None and stats[1] > 0:
        seconds, timed_by = stats[1], 'dd'
    else:
        seconds, timed_by = duration, 'local'
    rate = link_rate(nbytes, seconds)
    if rate is None:
        raise HaulError('probe', 'the probe of %s took no measurable time' % target.host)
    return {
        'link_bytes_s': rate,
        'bytes': nbytes,
        'seconds': round(seconds, 6),
        'duration_s': round(duration, 3),
        'timed_by': timed_by,
    }
