# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""haul.live's own nftables locks, for containers that a runtime checkpoints and restores itself
(Podman: docs/runtimes.md). Private module_util.

haul.live's own pipeline holds a container's network closed from the freeze to the commit through
CRIU and the host ends of its veths (:mod:`_network`). A runtime's checkpoint and restore cannot be
told to, so two tables do it around them:

- :func:`lock_namespace` (source, before the runtime's checkpoint): a table ``inet haul-live-lock``
  in the container's own network namespace that drops every packet but loopback's. Its clients'
  packets are dropped and retransmitted, never answered (no reset) while CRIU dumps, and after it
  killed the tasks until the runtime tears the namespace down. :func:`unlock_namespace` removes it
  when a checkpoint failed and the container runs on in that namespace.
- :func:`hold_addresses` (destination, before the runtime's restore): a table
  ``bridge haul-live-hold-NAME`` in this host's namespace that drops every frame from or to the
  container's MAC addresses, so that its restored copy is unreachable (it answers no ARP, and no
  client's segment reaches its restored sockets) until the commit; an aborted copy is killed
  behind it, and its closing sockets reach nobody. :func:`release_addresses` removes it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import subprocess

from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.module_utils._network import MAC_RE, _in_netns, own_netns

LOCK_TABLE = 'haul-live-lock'
HOLD_PREFIX = 'haul-live-hold-'
PRIORITY = -310   # before CRIU's own lock (-300 is its priority too; either drops)


def _nft(prefix, script, step):
    """Run an nft script (``nft -f -``) with ``prefix`` (nsenter into a namespace, or nothing)."""
    try:
        p = subprocess.run(prefix + ['nft', '-f', '-'], input=script.encode(),  # pylint: disable=ansible-bad-function
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        raise HaulError(step, 'cannot run nft: %s' % e)
    if p.returncode != 0:
        err = p.stderr.decode('utf-8', 'replace').strip().splitlines()
        raise HaulError(step, 'nft failed (exit status %d): %s' % (p.returncode, err[-1] if err else 'no message'))


def _replace(family, table, body):
    """An nft script that makes ``table`` exactly ``body`` (created, or emptied and refilled)."""
    return _delete(family, table) + 'table %s %s {\n%s}\n' % (family, table, body)


def _delete(family, table):
    return 'add table %s %s\ndelete table %s %s\n' % (family, table, family, table)


def lock_script():
    """The nft script of :func:`lock_namespace`."""
    body = ''.join('  chain %s {\n    type filter hook %s priority %d; policy accept;\n    %s "lo" accept\n    drop\n  }\n'
                   % (hook, hook, PRIORITY, 'iifname' if hook == 'input' else 'oifname') for hook in ('input', 'output'))
    return _replace('inet', LOCK_TABLE, body)


def lock_namespace(pid, step='dump'):
    """Close the network namespace of ``pid`` to everything but loopback. False (and nothing done)
    for a container in the host's namespace."""
    if not pid or not own_netns(pid):
        return False
    _nft(_in_netns(pid), lock_script(), step)
    return True


def unlock_namespace(pid, step='unlock'):
    """Remove :func:`lock_namespace`'s table (idempotent: False when there is no such namespace)."""
    if not pid or not own_netns(pid):
        return False
    _nft(_in_netns(pid), _delete('inet', LOCK_TABLE), step)
    return True


def hold_table(name):
    """The table that holds the addresses of the container ``name``."""
    return HOLD_PREFIX + re.sub(r'[^A-Za-z0-9_-]', '_', name)[:40]


def hold_script(name, macs):
    """The nft script of :func:`hold_addresses`."""
    rules = ''.join('    ether saddr %s drop\n    ether daddr %s drop\n' % (m, m) for m in macs)
    body = ''.join('  chain %s {\n    type filter hook %s priority %d; policy accept;\n%s  }\n'
                   % (hook, hook, PRIORITY, rules) for hook in ('forward', 'input', 'output'))
    return _replace('bridge', hold_table(name), body)


def hold_addresses(name, macs, step='restore'):
    """Drop every frame from or to ``macs`` on this host's bridges (the container ``name``'s copy
    here, restored or being restored). Returns the MACs held ([] holds nothing)."""
    macs = sorted(set(str(m).lower() for m in macs or []))
    bad = [m for m in macs if not MAC_RE.match(m)]
    if bad:
        raise HaulError(step, 'not MAC addresses: %s' % ', '.join(bad))
    if macs:
        _nft([], hold_script(name, macs), step)
    return macs


def release_addresses(name, step='commit'):
    """Remove :func:`hold_addresses`'s table for ``name`` (idempotent)."""
    _nft([], _delete('bridge', hold_table(name)), step)
