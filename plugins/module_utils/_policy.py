# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Strategy policy: when pre-copy rounds stop, and which strategy moves a container.

This is a private module_util: it is not part of the collection's public API.
Plain Python, no I/O: every input is passed in, so that the unit tests run the
policy over recorded statistics.

* :class:`Convergence` / :func:`decide`: after each pre-dump round, stop or go on.
* :func:`choose_strategy`: stopcopy, precopy, postcopy or hybrid, from the
  ``haul_criu`` facts of both hosts (``criu_check``) and the measured rates.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

STRATEGIES = ('stopcopy', 'precopy', 'postcopy', 'hybrid')
REQUESTS = STRATEGIES + ('auto',)

DEFAULT_MAX_ROUNDS = 8
DEFAULT_MIN_PAGES = 64
DEFAULT_GROWTH = 0.10
# the least a round must take off the round before (0.10: 10 %), else the rounds have stalled
DEFAULT_MIN_SHRINK = 0.10
DEFAULT_MAX_DOWNTIME_MS = 300
DEFAULT_PAGE_SIZE = 4096

# auto picks pre-copy only when the container dirties memory at most at this share of the link
# rate: above it the rounds do not shrink fast enough to be worth their cost.
PRECOPY_MAX_DIRTY_SHARE = 0.5

MIB = 1048576.0


def _number(name, value, minimum=0, allow_none=False, integer=False):
    """``value`` checked as a number >= minimum; ValueError naming ``name`` otherwise."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError('%s must be a number, not %r' % (name, value))
    if integer and int(value) != value:
        raise ValueError('%s must be an integer, not %r' % (name, value))
    if value < minimum:
        raise ValueError('%s must be >= %s, not %r' % (name, minimum, value))
    return value


# --------------------------------------------------------------------------- convergence

class Convergence(object):
    """When to stop pre-copy rounds.

    The rule, checked after every round, in this order (the first that holds stops):

    1. **small round** (P.Haul): the round wrote ``min_pages`` pages or fewer (default 64):
       the memory has converged, the final dump is small.
    2. **downtime** (QEMU): the predicted freeze is at most ``max_downtime_ms`` (default 300).
       predicted freeze = remaining dirty bytes / measured transfer rate, where the remaining
       dirty bytes are the pages the last round wrote (the pages dirtied during one round are
       what the final dump still has to write) times ``page_size``, and the transfer rate is
       the round's ``transfer_bytes_per_s`` (measured by the caller), else, when
       ``rate_from_memwrite`` is true, the rate at which CRIU wrote the round's pages
       (``pages_written * page_size / memwrite_time``; that is the link rate when the pages
       go to a page server). Without a rate this rule does not apply.
    3. **growth** (P.Haul): the round wrote more than ``growth`` (default 10 %) more pages than
       the round before: the container dirties memory faster than the rounds copy it, more
       rounds will not help.
    4. **stall**: the round took less than ``min_shrink`` (default 10 %) off the round before
       (without growing past ``growth``): the rounds have reached what the container dirties in
       one round's time, another round would copy about as much again and leave the final dump
       no smaller. (A workload that dirties all its memory within a round stalls at round 2.)
    5. **max rounds**: ``max_rounds`` rounds (default 8) were made.

    Each round is a dict of CRIU's pre-dump stats (``pages_written``, ``pages_scanned``,
    ``pages_skipped_parent``, ``memdump_time``, ``memwrite_time`` in microseconds, ...), plus
    ``transfer_bytes_per_s`` when the caller measured it.
    """

    def __init__(self, max_rounds=DEFAULT_MAX_ROUNDS, min_pages=DEFAULT_MIN_PAGES, growth=DEFAULT_GROWTH,
                 max_downtime_ms=DEFAULT_MAX_DOWNTIME_MS, page_size=DEFAULT_PAGE_SIZE, rate_from_memwrite=True,
                 min_shrink=DEFAULT_MIN_SHRINK):
        self.max_rounds = _number('max_rounds', max_rounds, minimum=1, integer=True)
        self.min_pages = _number('min_pages', min_pages, minimum=0, integer=True)
        self.growth = _number('growth', growth, minimum=0)
        self.max_downtime_ms = _number('max_downtime_ms', max_downtime_ms, minimum=0, allow_none=True)
        self.page_size = _number('page_size', page_size, minimum=1, integer=True)
        self.rate_from_memwrite = bool(rate_from_memwrite)
        self.min_shrink = _number('min_shrink', min_shrink, minimum=0)

    def transfer_rate(self, rnd):
        """Bytes per second for one round: its ``transfer_bytes_per_s``, else the memwrite rate, else None."""
        rate = rnd.get('transfer_bytes_per_s')
        if rate is not None:
            rate = _number('transfer_bytes_per_s', rate)
            return float(rate) if rate > 0 else None
        if not self.rate_from_memwrite:
            return None
        pages = rnd.get('pages_written') or 0
        usec = rnd.get('memwrite_time') or 0
        if pages > 0 and usec > 0:
            return pages * self.page_size / (usec / 1e6)
        return None

    def predicted_freeze_ms(self, rnd):
        """Remaining dirty bytes / transfer rate, in ms, for the round ``rnd``; None without a rate."""
        rate = self.transfer_rate(rnd)
        if not rate:
            return None
        return round(_pages(rnd, 'rounds[-1]') * self.page_size / rate * 1000.0, 3)

    def decide(self, rounds):
        """{'stop': bool, 'reason': str, 'rule': str or None, 'predicted_freeze_ms': float or None}."""
        if not isinstance(rounds, (list, tuple)):
            raise ValueError('rounds must be a list of round statistics, not %r' % (rounds,))
        if not rounds:
            return {'stop': False, 'rule': None, 'predicted_freeze_ms': None,
                    'reason': 'no pre-dump round yet'}
        for i, rnd in enumerate(rounds):
            if not isinstance(rnd, dict):
                raise ValueError('round %d is not a dict of CRIU stats: %r' % (i + 1, rnd))
            _pages(rnd, 'round %d' % (i + 1))
        n = len(rounds)
        last = rounds[-1]
        pages = _pages(last, 'round %d' % n)
        freeze = self.predicted_freeze_ms(last)

        def out(stop, rule, reason):
            return {'stop': stop, 'rule': rule, 'reason': reason, 'predicted_freeze_ms': freeze}

        if pages <= self.min_pages:
            return out(True, 'min_pages', 'round %d wrote %d pages, not more than %d: the memory has converged'
                       % (n, pages, self.min_pages))
        if freeze is not None and self.max_downtime_ms is not None and freeze <= self.max_downtime_ms:
            return out(True, 'downtime', 'round %d left %d dirty pages, a predicted freeze of %.0f ms, '
                       'within the %s ms limit' % (n, pages, freeze, _fmt(self.max_downtime_ms)))
        if n > 1:
            prev = _pages(rounds[-2], 'round %d' % (n - 1))
            if pages > prev * (1.0 + self.growth):
                grew = (pages - prev) * 100.0 / prev if prev else float('inf')
                return out(True, 'growth', 'round %d wrote %d pages, %.0f %% more than round %d (%d): '
                           'the container dirties memory faster than the rounds copy it (limit %s %%)'
                           % (n, pages, grew, n - 1, prev, _fmt(self.growth * 100)))
            if pages > prev * (1.0 - self.min_shrink):
                took = (prev - pages) * 100.0 / prev if prev else 0.0
                return out(True, 'stall', 'round %d wrote %d pages, %.0f %% fewer than round %d (%d), under the '
                           '%s %% a round must take off: the rounds no longer shrink what the container dirties, '
                           'another round would copy about as much again'
                           % (n, pages, max(took, 0.0), n - 1, prev, _fmt(self.min_shrink * 100)))
        if n >= self.max_rounds:
            return out(True, 'max_rounds', 'reached the maximum of %d rounds (round %d wrote %d pages)'
                       % (self.max_rounds, n, pages))
        return out(False, None, 'round %d wrote %d pages%s: another round'
                   % (n, pages, '' if freeze is None else ', a predicted freeze of %.0f ms' % freeze))


def _pages(rnd, what):
    pages = rnd.get('pages_written')
    if isinstance(pages, bool) or not isinstance(pages, int) or pages < 0:
        raise ValueError('%s has no valid pages_written (%r)' % (what, pages))
    return pages


def _fmt(value):
    return ('%d' % value) if float(value) == int(value) else ('%g' % value)


def decide(rounds, max_rounds=DEFAULT_MAX_ROUNDS, min_pages=DEFAULT_MIN_PAGES, growth=DEFAULT_GROWTH,
           max_downtime_ms=DEFAULT_MAX_DOWNTIME_MS, page_size=DEFAULT_PAGE_SIZE, rate_from_memwrite=True,
           min_shrink=DEFAULT_MIN_SHRINK):
    """:meth:`Convergence.decide` with these settings (see :class:`Convergence` for the rule)."""
    return Convergence(max_rounds=max_rounds, min_pages=min_pages, growth=growth, max_downtime_ms=max_downtime_ms,
                       page_size=page_size, rate_from_memwrite=rate_from_memwrite, min_shrink=min_shrink).decide(rounds)


# --------------------------------------------------------------------------- strategy

def _host(facts, default):
    return (facts or {}).get('hostname') or default


def _features(facts):
    return (facts or {}).get('features') or {}


def dirty_tracking(facts):
    """(True, None) when the host can track dirty memory (pre-copy), else (False, why)."""
    facts = facts or {}
    feats = _features(facts)
    if facts.get('precopy_possible') is True or feats.get('mem_dirty_track') is True:
        return True, None
    if facts.get('precopy_possible') is False or feats.get('mem_dirty_track') is False \
            or feats.get('mem_track') is False:
        return False, 'no CONFIG_MEM_SOFT_DIRTY'
    return False, 'no known memory dirty tracking (criu_check did not report mem_dirty_track)'


def uffd_source(facts):
    """(True, None) when the source can serve lazy pages (post-copy), else (False, why)."""
    facts = facts or {}
    feats = _features(facts)
    if not (feats.get('uffd') or feats.get('uffd_noncoop') or facts.get('lazy_pages_possible')):
        if feats.get('uffd') is False:
            return False, 'no userfaultfd (CONFIG_USERFAULTFD)'
        return False, 'no known userfaultfd support (criu_check did not report uffd)'
    if facts.get('pipe_max_size_ok') is False:
        return False, ('fs.pipe-max-size below 8388608 and no CAP_SYS_RESOURCE (a lazy dump fails); '
                       'raise the sysctl')
    return True, None


def lazy_pages_dest(facts):
    """(True, None) when the destination can restore lazily (post-copy), else (False, why)."""
    facts = facts or {}
    feats = _features(facts)
    if facts.get('lazy_pages_possible') is True:
        return True, None
    if feats.get('uffd_noncoop') is False or feats.get('uffd') is False:
        return False, 'no non-cooperative userfaultfd (uffd-noncoop)'
    if facts.get('pipe_max_size_ok') is False:
        return False, 'fs.pipe-max-size below 8388608 and no CAP_SYS_RESOURCE; raise the sysctl'
    return False, 'no known lazy-pages support (criu_check did not report lazy_pages_possible)'


def _mib(value):
    return '%.0f MiB' % (value / MIB)


# What auto weighs against post-copy, said in every post-copy reason (docs/postcopy.md).
POSTCOPY_PRICE = ('its price: until the last page has moved the container needs both hosts and the link, '
                  'and a broken transfer loses it')


def choose_strategy(requested, source_facts, dest_facts, dirty_rate_bytes_s=None, memory_bytes=None,
                    link_bytes_s=None, max_downtime_ms=DEFAULT_MAX_DOWNTIME_MS):
    """Which strategy moves the container: {'strategy', 'reason', 'predicted_freeze_ms'}.

    ``requested`` is one of :data:`REQUESTS`. ``source_facts`` and ``dest_facts`` are the
    ``haul_criu`` facts of ``criu_check`` on the two hosts (``hostname``, ``features``,
    ``precopy_possible``, ``lazy_pages_possible``, ``pipe_max_size_ok``).

    What each strategy needs: precopy, memory dirty tracking on the source; postcopy,
    userfaultfd on the source and lazy pages on the destination; hybrid, both. stopcopy
    always works. A requested strategy that the kernels cannot do raises ValueError naming
    the missing feature and the host.

    auto:

    1. predicted stop-and-copy freeze = ``memory_bytes`` / ``link_bytes_s``; within
       ``max_downtime_ms``: stopcopy (nothing to gain, and post-copy's risk of losing the container
       when its transfer breaks is not worth taking: :data:`POSTCOPY_PRICE`);
    2. else, dirty tracking on the source and a dirty rate at most
       :data:`PRECOPY_MAX_DIRTY_SHARE` of the link rate: precopy;
    3. else, uffd on the source and lazy pages on the destination: postcopy;
    4. else stopcopy.

    ``reason`` says why, in one sentence. ``predicted_freeze_ms`` is the stop-and-copy
    prediction of step 1, or None without memory size and link rate.
    """
    if requested not in REQUESTS:
        raise ValueError('strategy must be one of %s, not %r' % (', '.join(REQUESTS), requested))
    dirty_rate_bytes_s = _number('dirty_rate_bytes_s', dirty_rate_bytes_s, allow_none=True)
    memory_bytes = _number('memory_bytes', memory_bytes, allow_none=True)
    link_bytes_s = _number('link_bytes_s', link_bytes_s, allow_none=True)
    max_downtime_ms = _number('max_downtime_ms', max_downtime_ms)
    src = _host(source_facts, 'the source')
    dst = _host(dest_facts, 'the destination')
    pre_ok, pre_why = dirty_tracking(source_facts)
    usrc_ok, usrc_why = uffd_source(source_facts)
    udst_ok, udst_why = lazy_pages_dest(dest_facts)

    def kernel(host, why):
        return "%s's kernel has %s" % (host, why) if why.startswith('no ') else '%s has %s' % (host, why)

    freeze = None
    if memory_bytes is not None and link_bytes_s:
        freeze = round(memory_bytes / float(link_bytes_s) * 1000.0, 3)

    def out(strategy, reason):
        return {'strategy': strategy, 'reason': reason, 'predicted_freeze_ms': freeze}

    if requested in ('precopy', 'hybrid') and not pre_ok:
        raise ValueError('%s needs memory dirty tracking on the source: %s' % (requested, kernel(src, pre_why)))
    if requested in ('postcopy', 'hybrid'):
        if not usrc_ok:
            raise ValueError('%s needs userfaultfd on the source: %s' % (requested, kernel(src, usrc_why)))
        if not udst_ok:
            raise ValueError('%s needs lazy pages on the destination: %s' % (requested, kernel(dst, udst_why)))
    if requested == 'stopcopy':
        return out('stopcopy', 'stopcopy was requested; it needs no special kernel feature')
    if requested == 'precopy':
        return out('precopy', 'precopy was requested and %s tracks dirty memory' % src)
    if requested == 'postcopy':
        return out('postcopy', 'postcopy was requested and %s and %s support userfaultfd; %s' % (src, dst, POSTCOPY_PRICE))
    if requested == 'hybrid':
        return out('hybrid', 'hybrid was requested: %s tracks dirty memory, and %s and %s support userfaultfd'
                   % (src, src, dst))

    # auto
    if freeze is not None and freeze <= max_downtime_ms:
        return out('stopcopy', 'auto chose stopcopy: copying %s at %s/s freezes the container about %.0f ms, '
                   'within the %s ms limit, with no post-copy risk'
                   % (_mib(memory_bytes), _mib(link_bytes_s), freeze, _fmt(max_downtime_ms)))
    if freeze is None:
        why_not_stopcopy = 'the stop-and-copy freeze cannot be predicted (memory size or link rate unknown)'
    else:
        why_not_stopcopy = 'a stop-and-copy freeze of about %.0f ms exceeds the %s ms limit' % (
            freeze, _fmt(max_downtime_ms))
    if pre_ok and dirty_rate_bytes_s is not None and link_bytes_s \
            and dirty_rate_bytes_s <= PRECOPY_MAX_DIRTY_SHARE * link_bytes_s:
        return out('precopy', 'auto chose precopy: %s, %s tracks dirty memory and the container dirties %s/s, '
                   'well under the link rate of %s/s'
                   % (why_not_stopcopy, src, _mib(dirty_rate_bytes_s), _mib(link_bytes_s)))
    if not pre_ok:
        why_not_precopy = 'precopy is impossible (%s)' % kernel(src, pre_why)
    elif dirty_rate_bytes_s is None or not link_bytes_s:
        why_not_precopy = 'precopy cannot be judged without the dirty rate and the link rate'
    else:
        why_not_precopy = 'the container dirties %s/s, too close to the link rate of %s/s for precopy' % (
            _mib(dirty_rate_bytes_s), _mib(link_bytes_s))
    if usrc_ok and udst_ok:
        return out('postcopy', 'auto chose postcopy: %s, %s, and %s and %s support userfaultfd; %s'
                   % (why_not_stopcopy, why_not_precopy, src, dst, POSTCOPY_PRICE))
    why_not_postcopy = 'postcopy is impossible (%s)' % (kernel(src, usrc_why) if not usrc_ok else kernel(dst, udst_why))
    return out('stopcopy', 'auto fell back to stopcopy: %s, %s and %s'
               % (why_not_stopcopy, why_not_precopy, why_not_postcopy))
