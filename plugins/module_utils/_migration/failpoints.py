# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Failpoints: where the fault tests make a handoff fail on purpose (private module_util).

Inert unless the file ``/run/haul/test-hooks/NAME`` (NAME: the container) exists on the host;
then each point costs one failed ``open``. The file holds words ``ACTION@POINT``:

* ``sigterm@POINT``: this process sends itself SIGTERM at POINT (an interrupted handoff);
* ``sigkill@POINT``: SIGKILL (a handoff that dies: its watchdog takes over);
* ``sigstop@POINT``: SIGSTOP (a handoff that hangs: its lease expires, its watchdog kills it);
* ``sleep@POINT``: it sleeps 120 s there (a handoff to kill from outside in that phase);
* ``sleepN@POINT``: it sleeps N seconds there, then goes on (``sleep20@resumed``).

The source's points (:func:`fire`, called by :mod:`.source`, reading the file on the source):
each phase the source records, lowercased, just after it is recorded (``frozen``: recorded, the
dump about to freeze; ``dumped``, ``sent``, ``committed``, ``resumed``, ``done``), and
``restored`` (the destination reported its stopped copy, before the commit decision), ``commit``
(after COMMITTED is recorded, before the COMMIT is sent), ``rollback`` (as the rollback starts).
tests/integration/targets/fault_commit uses them.

The destination's point (called by :mod:`.destination`, reading the file on the destination):
``resumed``: the receiver took the COMMIT and resumed its copy, and has not yet reported
``running`` to the source (tests/integration/targets/fault_partition places a partition there).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import signal
import time

FAILPOINTS_DIR = '/run/haul/test-hooks'
SLEEP_S = 120
_SIGNALS = (('sigterm', signal.SIGTERM), ('sigkill', signal.SIGKILL), ('sigstop', signal.SIGSTOP))


def fire(name, point, directory=FAILPOINTS_DIR):
    """Act on ``POINT`` if the failpoints file of container ``name`` names it; else nothing."""
    if not name:
        return
    try:
        with open(os.path.join(directory, name)) as f:
            words = f.read().split()
    except (IOError, OSError):
        return
    for word, sig in _SIGNALS:
        if '%s@%s' % (word, point) in words:
            os.kill(os.getpid(), sig)
    for word in words:
        if word.startswith('sleep') and word.endswith('@' + point):
            count = word[len('sleep'):-len(point) - 1]
            if count == '' or count.isdigit():
                time.sleep(int(count) if count else SLEEP_S)
