# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Page-server ports for post-copy: a free port from :data:`PORT_RANGE`, reserved in a
locked table (``/run/haul/postcopy-ports.json``) until the migration that took it ends.

This is a private module_util: it is not part of the collection's public API.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import time

from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.module_utils._supervisor import find_running, read_state, write_state

DEFAULT_PORT = 27100


# --------------------------------------------------------------------------- page-server ports

PORT_RANGE = (27100, 27899)
PORTS_LOCK = '/run/haul/postcopy-ports.lock'
PORTS_FILE = '/run/haul/postcopy-ports.json'


def port_free(address, port):
    """Whether nothing is bound to ``port`` on ``address`` (a bind test without SO_REUSEADDR, so that a
    socket in TIME_WAIT or bound to the wildcard address counts as taken)."""
    import socket  # pylint: disable=import-outside-toplevel
    family = socket.AF_INET6 if ':' in str(address) else socket.AF_INET
    sk = socket.socket(family, socket.SOCK_STREAM)
    try:
        sk.bind((str(address), int(port)))
    except (OSError, socket.error):
        return False
    finally:
        sk.close()
    return True


def reserve_port(address, images_dir, first=PORT_RANGE[0], last=PORT_RANGE[1], ttl=600, now=None,
                 lock_file=PORTS_LOCK, table_file=PORTS_FILE, is_free=None, reserve=True):
    """A free TCP port in ``first..last`` for the page server of the lazy dump of ``images_dir``.

    Allocations on one host are serialised by an flock on ``lock_file`` and recorded in
    ``table_file`` (port -> images_dir, expiry): a port stays reserved for ``ttl`` seconds, and for
    as long as a lazy dump of that images directory runs (its CRIU then holds the port), so that
    parallel post-copy migrations from one host never get the same port. A port must also pass
    ``is_free(address, port)`` (:func:`port_free`). A new reservation for the same images directory
    replaces the old one, or is kept (``kept``, its expiry extended) while it is live and its port
    still free. Returns ``{'port', 'expires', 'reserved', 'kept'}``; HaulError('port', ...) when
    every port of the range is taken. ``reserve=False`` (check mode) finds one and records nothing.
    """
    import fcntl  # pylint: disable=import-outside-toplevel
    now = time.time() if now is None else now
    is_free = is_free or port_free
    images_dir = os.path.abspath(images_dir)
    first, last = int(first), int(last)
    if not 0 < first <= last < 65536:
        raise HaulError('options', 'bad page-server port range %s-%s' % (first, last))
    d = os.path.dirname(lock_file)
    if not os.path.isdir(d):
        os.makedirs(d, 0o700)
    lock = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        table = read_state(table_file) or {}
        held, mine = {}, None
        for port, rec in table.items():
            if not isinstance(rec, dict):
                continue
            if rec.get('images_dir') == images_dir:
                if rec.get('expires', 0) > now and str(rec.get('address')) == str(address):
                    mine = int(port)
                continue
            if rec.get('expires', 0) > now or find_running(rec.get('images_dir') or '/nonexistent', 'dump'):
                held[port] = rec
        if mine is not None and is_free(address, mine):
            rec = {'images_dir': images_dir, 'expires': now + ttl, 'address': str(address), 'pid': os.getpid()}
            if reserve:
                held[str(mine)] = rec
                write_state(table_file, held)
            return {'port': mine, 'expires': rec['expires'], 'reserved': reserve, 'kept': True}
        span = last - first + 1
        # start at a spot that depends on the images directory, so that hosts rarely probe the same ports
        offset = int(hashlib.md5(images_dir.encode('utf-8')).hexdigest()[:6], 16) % span
        for i in range(span):
            port = first + (offset + i) % span
            if str(port) in held or not is_free(address, port):
                continue
            rec = {'images_dir': images_dir, 'expires': now + ttl, 'address': str(address), 'pid': os.getpid()}
            if reserve:
                held[str(port)] = rec
                write_state(table_file, held)
            return {'port': port, 'expires': rec['expires'], 'reserved': reserve, 'kept': False}
        raise HaulError('port', 'no free page-server port in %d-%d on %s (%d reserved by other migrations)'
                        % (first, last, address, len(held)))
    finally:
        os.close(lock)


def release_port(images_dir, lock_file=PORTS_LOCK, table_file=PORTS_FILE):
    """Forget the port reservation of ``images_dir`` (its lazy dump ended); the ports released."""
    import fcntl  # pylint: disable=import-outside-toplevel
    if not os.path.exists(table_file):
        return []
    images_dir = os.path.abspath(images_dir)
    lock = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        table = read_state(table_file) or {}
        gone = [p for p, rec in table.items() if isinstance(rec, dict) and rec.get('images_dir') == images_dir]
        if gone:
            write_state(table_file, dict((p, r) for p, r in table.items() if p not in gone))
        return sorted(int(p) for p in gone)
    finally:
        os.close(lock)
