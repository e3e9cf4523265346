# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Which containers a rebalance moves: from hosts above a high mark to hosts below a low mark.

This is a private module_util: it is not part of the collection's public API. It is plain
Python with no I/O, used on the controller by the ``haul.live.rebalance`` filter.

A host's load is, by memory (the default), the memory of its containers over its capacity (the
memory haul.live may give containers there); by CPU, the CPUs its containers keep busy over the
CPUs it has. The rule (documented in docs/evacuation.md, "Rebalance"):

* the most loaded host above ``high`` is relieved first;
* fewest moves first: if one container brings it to ``high`` or below, the smallest such
  container moves; else its largest container moves, and the host is looked at again;
* a container goes to the host that is below ``low`` (before any move of this plan), not
  cordoned, has no container of that name, and stays at or below ``high`` with the container
  (and ``headroom`` of it) added; of those, the least loaded after the move, ties to the host
  listed first, so a plan is deterministic;
* never more than ``max_moves`` moves; a host that cannot be relieved is reported with the reason.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

MIB = 1024 * 1024

# by -> (a container's weight, a host's capacity, their type, the name of the resource)
RESOURCES = {
    'memory': ('memory_bytes', 'capacity_bytes', int, 'memory'),
    'cpu': ('cpu_cores', 'capacity_cpus', float, 'CPU'),
}


def _share(used, capacity):
    return float(used) / capacity if capacity > 0 else 0.0


def _check_mark(name, value, what='memory'):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError('%s must be a number between 0 and 1, not %r' % (name, value))
    if not 0 < value < 1:
        raise ValueError('%s must be between 0 and 1 (a share of %s), not %s' % (name, what, value))
    return value


def plan(hosts, high, low, max_moves, headroom=0.1, by='memory'):
    """Plan the moves of a rebalance.

    :param hosts: list of dicts with ``host``, its capacity (``capacity_bytes`` by memory,
        ``capacity_cpus`` by CPU), ``containers`` (dicts with ``name`` and their weight,
        ``memory_bytes`` or ``cpu_cores``; anything else is carried over into the move) and
        optionally ``cordon`` (the host's cordon record: a cordoned host takes nothing, and is
        not relieved either - a drain empties it).
    :param by: ``memory`` or ``cpu`` (:data:`RESOURCES`).
    :returns: dict with ``moves`` (in order: ``container``, ``source``, ``destination``, and
        the container's weight), ``loads`` (host -> {``before``, ``after``}) and ``unresolved``
        (hosts still above ``high``, each with ``host``, ``load`` and ``reason``).
    """
    if by not in RESOURCES:
        raise ValueError('by must be one of %s, not %r' % (', '.join(sorted(RESOURCES)), by))
    weight, capacity_key, kind, what = RESOURCES[by]
    high = _check_mark('high', high, what)
    low = _check_mark('low', low, what)
    if low > high:
        raise ValueError('low (%s) must not be above high (%s)' % (low, high))
    try:
        max_moves = int(max_moves)
    except (TypeError, ValueError):
        raise ValueError('max_moves must be a whole number, not %r' % (max_moves,))
    if max_moves < 0:
        raise ValueError('max_moves must be 0 or more, not %d' % max_moves)
    state = []
    seen = set()
    for i, h in enumerate(hosts):
        name = h.get('host')
        if not name:
            raise ValueError('host #%d has no name' % i)
        if name in seen:
            raise ValueError('host %s is listed twice' % name)
        seen.add(name)
        try:
            capacity = kind(h.get(capacity_key) or 0)
        except (TypeError, ValueError):
            capacity = 0
        if capacity <= 0:
            raise ValueError('host %s has no capacity (%s must be > 0)' % (name, capacity_key))
        cts = [dict(c) for c in h.get('containers') or ()]
        for c in cts:
            if not c.get('name'):
                raise ValueError('a container on %s has no name' % name)
            try:
                c[weight] = kind(c.get(weight) or 0)
            except (TypeError, ValueError):
                raise ValueError('container %s on %s: %s must be a number, not %r' % (c['name'], name, weight, c.get(weight)))
        used = sum(c[weight] for c in cts)
        state.append({'host': name, 'order': i, 'capacity': capacity, 'containers': cts, 'used': used,
                      'before': _share(used, capacity), 'cordon': h.get('cordon'),
                      'names': set(c['name'] for c in cts)})
    takers = [s for s in state if s['before'] < low and not s['cordon']]
    moves, stuck = [], {}
    while len(moves) < max_moves:
        over = [s for s in state if _share(s['used'], s['capacity']) > high and not s['cordon']
                and s['host'] not in stuck]
        if not over:
            break
        src = sorted(over, key=lambda s: (-_share(s['used'], s['capacity']), s['order']))[0]
        excess = src['used'] - high * src['capacity']
        # candidates, each with the best destination that takes it
        options = []
        for c in src['containers']:
            need = c[weight]
            fits = [t for t in takers if t is not src and c['name'] not in t['names']
                    and _share(t['used'] + need * (1 + headroom), t['capacity']) <= high]
            if fits:
                best = sorted(fits, key=lambda t: (_share(t['used'] + need, t['capacity']), t['order']))[0]
                options.append((c, best))
        if not options:
            stuck[src['host']] = ('no host below low (%d%%) takes any of its containers and stays at or below high (%d%%)'
                                  % (round(low * 100), round(high * 100)))
            continue
        enough = [o for o in options if o[0][weight] >= excess]
        if enough:
            c, dest = sorted(enough, key=lambda o: (o[0][weight], o[0]['name']))[0]
        else:
            c, dest = sorted(options, key=lambda o: (-o[0][weight], o[0]['name']))[0]
        src['containers'].remove(c)
        src['names'].discard(c['name'])
        src['used'] -= c[weight]
        dest['containers'].append(c)
        dest['names'].add(c['name'])
        dest['used'] += c[weight]
        move = dict(c)
        move.pop('name')
        move.update({'container': c['name'], 'source': src['host'], 'destination': dest['host']})
        moves.append(move)
    unresolved = []
    for s in state:
        load = _share(s['used'], s['capacity'])
        if load > high and not s['cordon']:
            reason = stuck.get(s['host']) or ('haul_rebalance_max_moves (%d) reached' % max_moves)
            unresolved.append({'host': s['host'], 'load': round(load, 4), 'reason': reason})
    loads = dict((s['host'], {'before': round(s['before'], 4), 'after': round(_share(s['used'], s['capacity']), 4)})
                 for s in state)
    return {'moves': moves, 'loads': loads, 'unresolved': unresolved}
