# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A host's cordon (private module_util): a fact on the host that every placement reads.

A cordoned host takes no container: ``drain.yml`` cordons a host before it empties it, and
``uncordon.yml`` lifts it. The record is ``/var/lib/haul/cordon.json`` (``{reason, since, by}``),
written atomically; no file means not cordoned. ``container_info`` returns it as ``cordon``, and the
placement (:mod:`_placement`) refuses a cordoned destination, naming the reason.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import time

from ansible_collections.haul.live.plugins.module_utils._common import HaulError, write_atomic

CORDON_FILE = '/var/lib/haul/cordon.json'
MAX_REASON = 200


def read(path=CORDON_FILE):
    """The cordon record, or None when the host is not cordoned. A file that is not a record
    counts as a cordon (an operator wrote it by hand): never place on a host in doubt."""
    try:
        with open(path) as f:
            text = f.read()
    except (IOError, OSError):
        return None
    try:
        rec = json.loads(text)
    except ValueError:
        rec = None
    if not isinstance(rec, dict):
        return {'reason': 'cordoned (%s is not a haul.live record)' % path, 'since': None, 'by': None}
    return {'reason': str(rec.get('reason') or 'cordoned'), 'since': rec.get('since'), 'by': rec.get('by')}


def check_reason(reason):
    reason = '' if reason is None else str(reason)
    if len(reason) > MAX_REASON or any(ord(c) < 32 for c in reason):
        raise HaulError('cordon', 'the reason must be one line of at most %d characters' % MAX_REASON)
    return reason


def cordon(reason, by=None, path=CORDON_FILE, check_mode=False):
    """Cordon this host. Returns (changed, record). A host cordoned already keeps its record
    (the first reason and time) unless the reason differs."""
    reason = check_reason(reason) or 'cordoned'
    before = read(path)
    if before is not None and before['reason'] == reason:
        return False, before
    rec = {'reason': reason, 'since': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), 'by': by}
    if not check_mode:
        d = os.path.dirname(path)
        if not os.path.isdir(d):
            os.makedirs(d, 0o755)
        write_atomic(path, json.dumps(rec, sort_keys=True) + '\n', 'cordon', what='the cordon record', mode=0o644)
    return True, rec


def uncordon(path=CORDON_FILE, check_mode=False):
    """Lift the cordon. Returns (changed, the record that was there or None)."""
    before = read(path)
    if before is None:
        return False, None
    if not check_mode:
        try:
            os.unlink(path)
        except OSError as e:
            raise HaulError('uncordon', 'cannot remove %s: %s' % (path, e.strerror or e))
    return True, before
