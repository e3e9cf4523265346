# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The source's half of a migration's SSH access: its per-migration key pair and the pinned known_hosts.

This is a private module_util: it is not part of the collection's public API.

For container NAME, in ``/root/.ssh`` of the source: ``haul-live-NAME`` (the private key, 0600),
``haul-live-NAME.pub`` and ``haul-live-NAME.known_hosts`` (the destination's host keys, and the jump
host's, that every ssh and rsync of the migration checks against). The key's comment is
``haul.live NAME ID``: a key with another ID is an earlier run's, and is replaced. The destination's
half (the key line in authorized_keys) is :mod:`_authorized_keys`.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.haul.live.plugins.module_utils._common import HaulError, run_command, write_atomic

SSH_DIR = '/root/.ssh'
STEP = 'key'


def paths(container, directory=SSH_DIR):
    """(private key, public key, known_hosts) of ``container``'s migration."""
    base = os.path.join(directory, 'haul-live-' + container)
    return base, base + '.pub', base + '.known_hosts'


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except (IOError, OSError) as e:
        if getattr(e, 'errno', None) == 2:
            return None
        raise HaulError(STEP, 'cannot read %s: %s' % (path, e.strerror or e))


def public_key(pub_text):
    """``TYPE BASE64`` of a public key file's text, or None."""
    words = (pub_text or '').split()
    return ' '.join(words[:2]) if len(words) >= 2 else None


def _comment_of(pub_text):
    return ' '.join((pub_text or '').split()[2:])


def ensure(container, comment, known_hosts, generate=True, check_mode=False, directory=SSH_DIR):
    """Write the pinned ``known_hosts`` lines and, with ``generate``, make sure the key pair with
    ``comment`` exists (an earlier run's key is replaced). Returns (changed, public key or None:
    ``TYPE BASE64``; None in check mode when the key is still to be made, or without ``generate``)."""
    if generate and (not (comment or '').startswith('haul.live %s' % container) or '\n' in comment):
        raise HaulError(STEP, 'the key comment must be "haul.live %s ID"' % container)
    key, pub, pinned = paths(container, directory)
    changed = False
    want = ''.join(line.strip() + '\n' for line in known_hosts)
    if _read(pinned) != want:
        changed = True
        if not check_mode:
            _ssh_dir(directory)
            write_atomic(pinned, want, STEP, what='the pinned known_hosts')
    if not generate:
        return changed, None
    text = _read(pub)
    if os.path.exists(key) and public_key(text) and _comment_of(text) == comment:
        return changed, public_key(text)
    if check_mode:
        return True, None
    _ssh_dir(directory)
    _remove([key, pub])
    run_command(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', key], STEP, timeout=30)
    made = public_key(_read(pub))
    if not made:
        raise HaulError(STEP, 'ssh-keygen made no public key at %s' % pub)
    return True, made


def remove(container, key_files=True, check_mode=False, directory=SSH_DIR):
    """Remove the pinned known_hosts and, with ``key_files``, the key pair. Returns the paths removed."""
    key, pub, pinned = paths(container, directory)
    there = [p for p in ([key, pub] if key_files else []) + [pinned] if os.path.lexists(p)]
    if not check_mode:
        _remove(there)
    return there


def _remove(files):
    for path in files:
        try:
            os.unlink(path)
        except OSError as e:
            if e.errno != 2:
                raise HaulError(STEP, 'cannot remove %s: %s' % (path, e.strerror or e))


def _ssh_dir(directory):
    try:
        os.makedirs(directory, mode=0o700)
    except OSError as e:
        if not os.path.isdir(directory):
            raise HaulError(STEP, 'cannot make %s: %s' % (directory, e.strerror or e))
