# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Where each container goes: spreading containers over destinations by free memory.

This is a private module_util: it is not part of the collection's public API. It is plain
Python with no I/O, used on the controller by the ``haul.live.placement`` filter.

The rule (documented in docs/evacuation.md):

* the largest containers are placed first;
* each goes to the destination with the most memory left after what was already placed
  there, keeping ``headroom`` (a fraction of the container's memory) spare;
* a destination also needs disk for the images (the container's memory) in its images
  directory, unless ``need_disk`` is false;
* a destination where a container of the same name already runs is never chosen;
* ties go to the destination listed first, so a plan is deterministic.

A container that fits nowhere is not placed; the plan says why.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

MIB = 1024 * 1024


def _mib(n):
    return -(-int(n) // MIB)


def plan(containers, destinations, headroom=0.1, need_disk=True):
    """Place containers on destinations.

    :param containers: list of dicts with ``name`` and ``memory_bytes`` (and anything else,
        which is carried over).
    :param destinations: list of dicts with ``host``, ``mem_available_bytes``,
        ``disk_free_bytes`` and optionally ``running`` (names of containers running there) and
        ``cordon`` (the host's cordon record: a cordoned host takes nothing).
    :returns: dict with ``placed`` (list of the container dicts plus ``destination``) and
        ``unplaced`` (list of the container dicts plus ``reason``), in placement order.
    """
    if not destinations:
        raise ValueError('no destination to place containers on')
    left = []
    for i, d in enumerate(destinations):
        if 'host' not in d:
            raise ValueError('destination #%d has no host' % i)
        left.append({'host': d['host'], 'order': i,
                     'mem': int(d.get('mem_available_bytes') or 0),
                     'disk': int(d.get('disk_free_bytes') or 0),
                     'running': set(d.get('running') or ()),
                     'cordon': d.get('cordon')})
    placed, unplaced = [], []
    names = set()
    order = sorted(enumerate(containers), key=lambda ic: (-int(ic[1].get('memory_bytes') or 0), ic[0]))
    for _i, ct in order:
        name = ct.get('name')
        if not name:
            raise ValueError('a container without a name cannot be placed')
        if name in names:
            raise ValueError('container %s is listed twice' % name)
        names.add(name)
        need = int(ct.get('memory_bytes') or 0)
        need_mem = int(need * (1 + headroom))
        fits, why = [], []
        for d in left:
            if d['cordon']:
                why.append('%s is cordoned (%s)' % (d['host'], d['cordon'].get('reason') or 'cordoned'))
            elif name in d['running']:
                why.append('%s already runs a container named %s' % (d['host'], name))
            elif d['mem'] < need_mem:
                why.append('%s has %d MiB of memory free, %s needs %d MiB'
                           % (d['host'], d['mem'] // MIB, name, _mib(need_mem)))
            elif need_disk and d['disk'] < need:
                why.append('%s has %d MiB of disk free for images, %s needs %d MiB'
                           % (d['host'], d['disk'] // MIB, name, _mib(need)))
            else:
                fits.append(d)
        if not fits:
            item = dict(ct)
            item['reason'] = '; '.join(why)
            unplaced.append(item)
            continue
        best = sorted(fits, key=lambda d: (-d['mem'], d['order']))[0]
        best['mem'] -= need_mem
        if need_disk:
            best['disk'] -= need
        best['running'].add(name)
        item = dict(ct)
        item['destination'] = best['host']
        placed.append(item)
    return {'placed': placed, 'unplaced': unplaced}
