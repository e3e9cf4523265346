# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for plugins/module_utils/_policy.py: the pre-copy convergence rule and the strategy choice;
and for the rounds loop of plugins/module_utils/_precopy.py (criu_predump) that applies the rule.

The round statistics are shaped like CRIU's stats-dump of a pre-dump (times in microseconds), for a
256 MiB container (65536 pages of 4 KiB) dirtying memory at different rates.
"""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.haul.live.plugins.module_utils import _criu, _policy, _precopy
from ansible_collections.haul.live.plugins.module_utils._common import HaulError


def rnd(written, scanned=65600, memwrite_us=None, memdump_us=20000, rate=None):
    """One pre-dump round's stats, as CRIU reports them."""
    out = {
        'pages_scanned': scanned,
        'pages_skipped_parent': max(scanned - written, 0),
        'pages_written': written,
        'freezing_time': 900,
        'frozen_time': 25000,
        'memdump_time': memdump_us,
        'memwrite_time': memwrite_us if memwrite_us is not None else max(written // 40, 1) * 1000,
    }
    if rate is not None:
        out['transfer_bytes_per_s'] = rate
    return out


# A workload dirtying ~4 MiB/s: each round copies what was dirtied during the previous one.
CONVERGING = [rnd(65536, memwrite_us=800000), rnd(4100), rnd(310), rnd(40)]
# A workload dirtying faster than the rounds copy: the second round is smaller, then it grows.
GROWING = [rnd(65536, memwrite_us=800000), rnd(20000), rnd(23000)]
# Shrinking, but never small enough and never within the downtime limit (no rate known).
SLOW = [rnd(int(65536 * 0.8 ** i)) for i in range(8)]

LINK = 100 * 1000 * 1000  # 100 MB/s


# --------------------------------------------------------------------------- convergence

def test_no_round_yet():
    d = _policy.decide([])
    assert d == {'stop': False, 'rule': None, 'predicted_freeze_ms': None, 'reason': 'no pre-dump round yet'}


def test_converging_rounds_go_on_then_stop_on_a_tiny_round():
    kw = dict(max_downtime_ms=None)
    assert not _policy.decide(CONVERGING[:1], **kw)['stop']
    assert not _policy.decide(CONVERGING[:2], **kw)['stop']
    assert not _policy.decide(CONVERGING[:3], **kw)['stop']
    d = _policy.decide(CONVERGING, **kw)
    assert d['stop'] and d['rule'] == 'min_pages'
    assert d['reason'] == 'round 4 wrote 40 pages, not more than 64: the memory has converged'


def test_min_pages_is_inclusive():
    assert _policy.decide([rnd(65536), rnd(64)], max_downtime_ms=None)['rule'] == 'min_pages'
    assert not _policy.decide([rnd(65536), rnd(65)], max_downtime_ms=None)['stop']


def test_tiny_first_round_stops_at_once():
    d = _policy.decide([rnd(12, scanned=12)])
    assert d['stop'] and d['rule'] == 'min_pages'


def test_growth_stops_non_converging_rounds():
    assert not _policy.decide(GROWING[:2], max_downtime_ms=None)['stop']
    d = _policy.decide(GROWING, max_downtime_ms=None)
    assert d['stop'] and d['rule'] == 'growth'
    assert '15 % more than round 2 (20000)' in d['reason']
    assert 'limit 10 %' in d['reason']


def test_growth_of_exactly_ten_percent_is_a_stall_not_growth():
    d = _policy.decide([rnd(65536), rnd(10000), rnd(11000)], max_downtime_ms=None)
    assert d['stop'] and d['rule'] == 'stall'
    assert _policy.decide([rnd(65536), rnd(10000), rnd(11001)], max_downtime_ms=None)['rule'] == 'growth'


def test_a_round_that_did_not_shrink_stops_the_rounds():
    # what the VM lab's bench saw: 1 MiB/s dirtied, about 8 s a round under emulation
    rounds = [rnd(16401), rnd(5124), rnd(3076), rnd(2052)]
    assert not _policy.decide(rounds, max_downtime_ms=None)['stop']
    d = _policy.decide(rounds + [rnd(2052)], max_downtime_ms=None)
    assert d['stop'] and d['rule'] == 'stall'
    assert d['reason'] == ('round 5 wrote 2052 pages, 0 % fewer than round 4 (2052), under the 10 % a round must '
                           'take off: the rounds no longer shrink what the container dirties, another round would '
                           'copy about as much again')
    # 10 % off is still progress
    assert not _policy.decide(rounds + [rnd(1846)], max_downtime_ms=None)['stop']
    assert _policy.decide(rounds + [rnd(1847)], max_downtime_ms=None)['rule'] == 'stall'


def test_a_workload_dirtying_all_its_memory_in_a_round_stalls_at_round_two():
    # the VM bench at 4 MiB/s: 16402, 16388, 16388, ... ran on to max_rounds, 7 times the memory
    d = _policy.decide([rnd(16402), rnd(16388)], max_downtime_ms=None)
    assert d['stop'] and d['rule'] == 'stall'
    assert _policy.decide([rnd(16402), rnd(16388)], max_downtime_ms=None, min_shrink=0)['stop'] is False


def test_growth_threshold_is_configurable():
    rounds = [rnd(65536), rnd(10000), rnd(11000)]
    assert _policy.decide(rounds, growth=0.05, max_downtime_ms=None)['rule'] == 'growth'
    assert _policy.decide(rounds, growth=0.5, max_downtime_ms=None)['rule'] == 'stall'


def test_max_rounds():
    for i in range(1, 8):
        assert not _policy.decide(SLOW[:i], max_downtime_ms=None)['stop'], i
    d = _policy.decide(SLOW, max_downtime_ms=None)
    assert d['stop'] and d['rule'] == 'max_rounds'
    assert d['reason'].startswith('reached the maximum of 8 rounds')
    assert _policy.decide(SLOW[:3], max_rounds=3, max_downtime_ms=None)['rule'] == 'max_rounds'
    assert _policy.decide(SLOW[:1], max_rounds=1)['rule'] == 'max_rounds'


def test_downtime_rule_with_measured_transfer_rate():
    # 4100 pages = 16.8 MB at 100 MB/s: 168 ms, within 300 ms
    rounds = [rnd(65536, rate=LINK), rnd(4100, rate=LINK)]
    d = _policy.decide(rounds)
    assert d['stop'] and d['rule'] == 'downtime'
    assert d['predicted_freeze_ms'] == pytest.approx(4100 * 4096 / LINK * 1000, abs=0.01)
    assert 'predicted freeze of 168 ms, within the 300 ms limit' in d['reason']
    # the first round (all 256 MiB, 2.7 s) is far above it
    d1 = _policy.decide(rounds[:1])
    assert not d1['stop'] and d1['predicted_freeze_ms'] == pytest.approx(2684.35, abs=0.01)
    assert 'a predicted freeze of 2684 ms' in d1['reason']
    # a stricter limit lets the rounds go on
    assert not _policy.decide(rounds, max_downtime_ms=100)['stop']


def test_downtime_rule_from_memwrite_time():
    # no measured rate: the rate CRIU wrote the pages at (page server) - 4100 pages in 50 ms
    rounds = [rnd(65536, memwrite_us=2000000), rnd(4100, memwrite_us=50000)]
    d = _policy.decide(rounds)
    assert d['rule'] == 'downtime' and d['predicted_freeze_ms'] == pytest.approx(50.0)
    # ... unless the caller says that rate is not the link's (local images)
    d = _policy.decide(rounds, rate_from_memwrite=False)
    assert not d['stop'] and d['predicted_freeze_ms'] is None


def test_downtime_rule_ignores_zero_rates():
    rounds = [rnd(65536, rate=0, memwrite_us=0)]
    assert _policy.decide(rounds)['predicted_freeze_ms'] is None


def test_small_round_wins_over_downtime():
    d = _policy.decide([rnd(65536, rate=LINK), rnd(10, rate=LINK)])
    assert d['rule'] == 'min_pages' and d['predicted_freeze_ms'] == pytest.approx(0.41, abs=0.01)


def test_page_size_matters():
    rounds = [rnd(65536, rate=LINK), rnd(4100, rate=LINK)]
    d = _policy.decide(rounds, page_size=65536)
    assert not d['stop'] and d['predicted_freeze_ms'] == pytest.approx(4100 * 65536 / LINK * 1000, abs=0.01)


def test_convergence_class_matches_function():
    c = _policy.Convergence(max_rounds=4, min_pages=10, growth=0.2, max_downtime_ms=50)
    assert c.decide(CONVERGING) == _policy.decide(CONVERGING, max_rounds=4, min_pages=10, growth=0.2,
                                                  max_downtime_ms=50)


@pytest.mark.parametrize('kw', [
    {'max_rounds': 0}, {'max_rounds': 1.5}, {'max_rounds': True}, {'min_pages': -1}, {'growth': -0.1},
    {'max_downtime_ms': -1}, {'page_size': 0}, {'growth': 'x'},
])
def test_bad_settings(kw):
    with pytest.raises(ValueError):
        _policy.decide(CONVERGING, **kw)


@pytest.mark.parametrize('rounds', [None, 'x', [None], [{}], [{'pages_written': -1}], [{'pages_written': '3'}],
                                    [rnd(65536), {'pages_scanned': 1}]])
def test_bad_rounds(rounds):
    with pytest.raises(ValueError):
        _policy.decide(rounds)


def test_bad_transfer_rate():
    with pytest.raises(ValueError):
        _policy.decide([rnd(65536, rate='fast')])


# --------------------------------------------------------------------------- strategy choice

def facts(host, dirty=True, uffd=True, lazy=True, pipe_ok=True):
    """haul_criu facts as criu_check reports them."""
    f = {
        'hostname': host,
        'features': {'mem_dirty_track': dirty, 'mem_track': dirty, 'uffd': uffd, 'uffd_noncoop': uffd,
                     'lazy_pages': uffd},
        'precopy_possible': dirty,
        'lazy_pages_possible': lazy and uffd and pipe_ok,
        'pipe_max_size_ok': pipe_ok,
    }
    if not dirty:
        f['precopy_impossible_reason'] = 'the kernel has no memory dirty tracking (built without CONFIG_MEM_SOFT_DIRTY)'
    return f


FULL1, FULL2 = facts('node1'), facts('node2')
# these machines: no soft-dirty, uffd works
LAB1, LAB2 = facts('node1', dirty=False), facts('node2', dirty=False)
NONE1, NONE2 = facts('node1', dirty=False, uffd=False), facts('node2', dirty=False, uffd=False)
GIB = 1 << 30
MIB = 1 << 20


def test_requested_strategies_that_work():
    for s in _policy.STRATEGIES:
        out = _policy.choose_strategy(s, FULL1, FULL2)
        assert out['strategy'] == s
        assert out['reason'].startswith('%s was requested' % s)
        assert out['predicted_freeze_ms'] is None
    assert _policy.choose_strategy('stopcopy', NONE1, NONE2)['strategy'] == 'stopcopy'
    assert _policy.choose_strategy('postcopy', LAB1, LAB2)['strategy'] == 'postcopy'


def test_precopy_without_soft_dirty_is_refused():
    with pytest.raises(ValueError) as e:
        _policy.choose_strategy('precopy', LAB1, LAB2)
    assert str(e.value) == ("precopy needs memory dirty tracking on the source: "
                            "node1's kernel has no CONFIG_MEM_SOFT_DIRTY")


def test_hybrid_without_soft_dirty_is_refused():
    with pytest.raises(ValueError, match="^hybrid needs memory dirty tracking on the source: node1's kernel has no "
                                         "CONFIG_MEM_SOFT_DIRTY$"):
        _policy.choose_strategy('hybrid', LAB1, LAB2)


def test_hybrid_without_uffd_on_destination_is_refused():
    with pytest.raises(ValueError, match="hybrid needs lazy pages on the destination: node2's kernel has no "
                                         r"non-cooperative userfaultfd \(uffd-noncoop\)"):
        _policy.choose_strategy('hybrid', FULL1, facts('node2', uffd=False))


def test_postcopy_refusals_name_the_host():
    with pytest.raises(ValueError, match="postcopy needs userfaultfd on the source: node1's kernel has no "
                                         r"userfaultfd \(CONFIG_USERFAULTFD\)"):
        _policy.choose_strategy('postcopy', NONE1, LAB2)
    with pytest.raises(ValueError, match="postcopy needs lazy pages on the destination: node2's kernel has no "
                                         "non-cooperative userfaultfd"):
        _policy.choose_strategy('postcopy', LAB1, NONE2)
    with pytest.raises(ValueError, match="postcopy needs userfaultfd on the source: node1 has fs.pipe-max-size "
                                         "below 8388608"):
        _policy.choose_strategy('postcopy', facts('node1', pipe_ok=False), LAB2)
    with pytest.raises(ValueError, match="postcopy needs lazy pages on the destination: node2 has fs.pipe-max-size"):
        _policy.choose_strategy('postcopy', LAB1, facts('node2', pipe_ok=False))


def test_unknown_facts_are_not_taken_for_support():
    with pytest.raises(ValueError, match="the source's kernel has no known memory dirty tracking"):
        _policy.choose_strategy('precopy', None, None)
    with pytest.raises(ValueError, match="the source's kernel has no known userfaultfd support"):
        _policy.choose_strategy('postcopy', {}, {})
    with pytest.raises(ValueError, match="the destination's kernel has no known lazy-pages support"):
        _policy.choose_strategy('postcopy', LAB1, {'hostname': 'the destination', 'features': {}})
    out = _policy.choose_strategy('auto', {}, {}, memory_bytes=GIB, link_bytes_s=100 * MIB)
    assert out['strategy'] == 'stopcopy'


def test_bad_requests():
    with pytest.raises(ValueError, match="strategy must be one of stopcopy, precopy, postcopy, hybrid, auto, not 'fast'"):
        _policy.choose_strategy('fast', FULL1, FULL2)
    with pytest.raises(ValueError, match='memory_bytes must be >= 0'):
        _policy.choose_strategy('auto', FULL1, FULL2, memory_bytes=-1)
    with pytest.raises(ValueError, match='link_bytes_s must be a number'):
        _policy.choose_strategy('auto', FULL1, FULL2, link_bytes_s='1G')


def test_auto_small_container_is_stopcopy():
    out = _policy.choose_strategy('auto', FULL1, FULL2, memory_bytes=16 * MIB, link_bytes_s=100 * MIB,
                                  dirty_rate_bytes_s=MIB)
    assert out['strategy'] == 'stopcopy'
    assert out['predicted_freeze_ms'] == pytest.approx(160.0)
    assert out['reason'] == ('auto chose stopcopy: copying 16 MiB at 100 MiB/s freezes the container about 160 ms, '
                             'within the 300 ms limit, with no post-copy risk')


def test_auto_limit_is_inclusive_and_configurable():
    assert _policy.choose_strategy('auto', LAB1, LAB2, memory_bytes=30 * MIB, link_bytes_s=100 * MIB)['strategy'] \
        == 'stopcopy'
    assert _policy.choose_strategy('auto', LAB1, LAB2, memory_bytes=30 * MIB, link_bytes_s=100 * MIB,
                                   max_downtime_ms=100)['strategy'] == 'postcopy'


def test_auto_large_slow_dirtying_is_precopy():
    out = _policy.choose_strategy('auto', FULL1, FULL2, memory_bytes=GIB, link_bytes_s=100 * MIB,
                                  dirty_rate_bytes_s=10 * MIB)
    assert out['strategy'] == 'precopy'
    assert out['reason'] == ('auto chose precopy: a stop-and-copy freeze of about 10240 ms exceeds the 300 ms '
                             'limit, node1 tracks dirty memory and the container dirties 10 MiB/s, well under the '
                             'link rate of 100 MiB/s')


def test_auto_fast_dirtying_is_postcopy():
    out = _policy.choose_strategy('auto', FULL1, FULL2, memory_bytes=GIB, link_bytes_s=100 * MIB,
                                  dirty_rate_bytes_s=80 * MIB)
    assert out['strategy'] == 'postcopy'
    assert 'the container dirties 80 MiB/s, too close to the link rate of 100 MiB/s for precopy' in out['reason']


def test_auto_share_boundary():
    kw = dict(memory_bytes=GIB, link_bytes_s=100 * MIB)
    assert _policy.choose_strategy('auto', FULL1, FULL2, dirty_rate_bytes_s=50 * MIB, **kw)['strategy'] == 'precopy'
    assert _policy.choose_strategy('auto', FULL1, FULL2, dirty_rate_bytes_s=50 * MIB + 1, **kw)['strategy'] \
        == 'postcopy'


def test_auto_without_dirty_rate_skips_precopy():
    out = _policy.choose_strategy('auto', FULL1, FULL2, memory_bytes=GIB, link_bytes_s=100 * MIB)
    assert out['strategy'] == 'postcopy'
    assert 'precopy cannot be judged without the dirty rate and the link rate' in out['reason']


def test_auto_on_these_machines_falls_back_to_postcopy():
    out = _policy.choose_strategy('auto', LAB1, LAB2, memory_bytes=GIB, link_bytes_s=100 * MIB,
                                  dirty_rate_bytes_s=MIB)
    assert out['strategy'] == 'postcopy'
    assert out['reason'] == ("auto chose postcopy: a stop-and-copy freeze of about 10240 ms exceeds the 300 ms "
                             "limit, precopy is impossible (node1's kernel has no CONFIG_MEM_SOFT_DIRTY), and "
                             "node1 and node2 support userfaultfd; " + _policy.POSTCOPY_PRICE)


def test_auto_unknown_sizes():
    out = _policy.choose_strategy('auto', LAB1, LAB2)
    assert out['strategy'] == 'postcopy' and out['predicted_freeze_ms'] is None
    assert out['reason'].startswith('auto chose postcopy: the stop-and-copy freeze cannot be predicted')


def test_auto_nothing_but_stopcopy():
    out = _policy.choose_strategy('auto', NONE1, NONE2, memory_bytes=GIB, link_bytes_s=100 * MIB,
                                  dirty_rate_bytes_s=MIB)
    assert out['strategy'] == 'stopcopy'
    assert out['reason'] == ("auto fell back to stopcopy: a stop-and-copy freeze of about 10240 ms exceeds the "
                             "300 ms limit, precopy is impossible (node1's kernel has no CONFIG_MEM_SOFT_DIRTY) "
                             "and postcopy is impossible (node1's kernel has no userfaultfd (CONFIG_USERFAULTFD))")


def test_auto_precopy_source_but_no_uffd_on_destination():
    out = _policy.choose_strategy('auto', FULL1, facts('node2', uffd=False), memory_bytes=GIB,
                                  link_bytes_s=100 * MIB, dirty_rate_bytes_s=90 * MIB)
    assert out['strategy'] == 'stopcopy'
    assert "postcopy is impossible (node2's kernel has no non-cooperative userfaultfd (uffd-noncoop))" in out['reason']


def test_auto_reason_is_one_sentence():
    for src, dst in ((FULL1, FULL2), (LAB1, LAB2), (NONE1, NONE2)):
        for rate in (None, MIB, 90 * MIB):
            for mem in (None, MIB, GIB):
                out = _policy.choose_strategy('auto', src, dst, memory_bytes=mem, link_bytes_s=100 * MIB,
                                              dirty_rate_bytes_s=rate)
                assert out['strategy'] in _policy.STRATEGIES
                assert '\n' not in out['reason'] and '. ' not in out['reason']


# --------------------------------------------------------------------------- the rounds loop (_precopy)
# criu_predump's logic with the policy above, CRIU faked (pre-copy cannot run on the lab's kernel).
# These live here because the loop is the policy's only user; they need no pycriu.


def _varint(n):
    out = b''
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def _stats_dump(fields):
    """A CRIU stats-dump image: magics, size, then stats_entry{dump_stats{fields}} (varints only)."""
    import struct
    inner = b''.join(_varint(num << 3) + _varint(val) for num, val in fields)
    entry = _varint(1 << 3 | 2) + _varint(len(inner)) + inner
    return struct.pack('<III', 0x55105940, 0x57093306, len(entry)) + entry


class FakeCgroup:
    path = '/sys/fs/cgroup/unified/haul/pd1'
    version = 'v2'
    twins = []

    def __init__(self, state='thawed'):
        self._state = state
        self.thawed = 0

    def state(self):
        return self._state

    def thaw(self, timeout=10):
        self.thawed += 1


@pytest.fixture
def fake_criu(monkeypatch, tmp_path):
    st = {'pages': [], 'calls': [], 'dirty': True, 'cg': FakeCgroup()}

    def pre_dump(self, options, features=None):
        st['calls'].append((os.path.basename(self.images_dir), options.parent_img, options.track_mem, features))
        n = st['pages'].pop(0)
        if n == 'fail':
            st['cg']._state = 'frozen'  # as if CRIU had died with the tree frozen
            raise HaulError('pre-dump', 'criu pre-dump failed: BUG at criu/mem.c:45')
        with open(os.path.join(self.images_dir, 'stats-dump'), 'wb') as f:
            f.write(_stats_dump([(5, 65600), (6, 65600 - n), (7, n), (4, n * 25)]))
        with open(os.path.join(self.images_dir, 'pages-1.img'), 'wb') as f:
            f.write(b'\1' * n)
        return {'duration': 0.05, 'log_path': os.path.join(self.images_dir, 'pre-dump.log')}

    monkeypatch.setattr(_criu.CriuSession, 'pre_dump', pre_dump)
    monkeypatch.setattr(_criu.CriuSession, 'version', lambda self: '4.1.1')
    monkeypatch.setattr(_criu.CriuSession, 'rpc_features', lambda self: {'mem_track': st['dirty']})
    monkeypatch.setattr(_criu.CriuSession, 'cli_feature', lambda self, name: st['dirty'])
    monkeypatch.setattr(_precopy, 'resolve_target', lambda **kw: {
        'pid': 4242, 'cgroup': st['cg'], 'cgroup_path': '/haul/pd1', 'pids': [4242]})
    root = tmp_path / 'rootfs'
    root.mkdir()
    st['params'] = dict(
        cgroup='haul/pd1', pid=None, name=None, images_dir=str(tmp_path / 'images' / 'precopy'), root=str(root),
        external=['mnt[]:m'], network_lock='nftables', tcp_established=False, manage_cgroups_mode='soft',
        freeze_timeout=10, pre_dump_mode='splice', page_server=None, max_rounds=8, min_pages=64, growth=0.1,
        max_downtime_ms=300, transfer_bytes_per_s=None, checksum='sha256', criu_path='/bin/true')
    return st


def run(st, **kw):
    return _precopy.run_rounds(st['params'], pycriu_mod=object(), page_size=4096, **kw)


def test_rounds_until_converged(fake_criu):
    fake_criu['pages'] = [65536, 4100, 300, 40]
    r = run(fake_criu)
    assert r['changed'] and r['stop_rule'] == 'min_pages'
    assert [x['pages_written'] for x in r['rounds']] == [65536, 4100, 300, 40]
    assert [c[:3] for c in fake_criu['calls']] == [('round-1', None, True), ('round-2', '../round-1', True),
                                                   ('round-3', '../round-2', True), ('round-4', '../round-3', True)]
    assert fake_criu['calls'][0][3]['mem_dirty_track'] is True
    images = fake_criu['params']['images_dir']
    assert r['last_images'] == os.path.join(images, 'round-4')
    assert sorted(n for n in os.listdir(images) if n != '.haul-images') == ['round-1', 'round-2', 'round-3', 'round-4']
    for n in range(1, 5):
        d = os.path.join(images, 'round-%d' % n)
        assert os.stat(d).st_mode & 0o777 == 0o700
        with open(os.path.join(d, 'manifest.json')) as f:
            m = json.load(f)
        assert m['kind'] == 'predump' and m['parent'] == (None if n == 1 else '../round-%d' % (n - 1))
        assert m['identity']['name'] == 'pd1' and m['identity']['init_pid'] == 4242
    assert os.stat(images).st_mode & 0o777 == 0o700
    assert r['rounds'][1]['bytes_written'] == 4100 * 4096 and r['rounds'][1]['pages_skipped_parent'] == 61500
    # local images without a measured rate: no downtime prediction
    assert r['predicted_freeze_ms'] is None


def test_rounds_stop_by_downtime_and_replace_an_earlier_run(fake_criu):
    fake_criu['pages'] = [65536, 4100, 300, 40]
    run(fake_criu)
    fake_criu['pages'] = [65536, 4100]
    fake_criu['params']['transfer_bytes_per_s'] = LINK
    r = run(fake_criu)
    assert r['stop_rule'] == 'downtime' and r['predicted_freeze_ms'] == pytest.approx(167.936)
    assert r['rounds'][0]['transfer_bytes_per_s'] == LINK
    assert sorted(n for n in os.listdir(fake_criu['params']['images_dir']) if n != '.haul-images') == ['round-1', 'round-2']


def test_rounds_stop_on_growth_and_max_rounds(fake_criu):
    fake_criu['pages'] = [65536, 20000, 23000]
    assert run(fake_criu)['stop_rule'] == 'growth'
    fake_criu['pages'] = [65536, 20000]
    fake_criu['params']['max_rounds'] = 2
    assert run(fake_criu)['stop_rule'] == 'max_rounds'


def test_no_dirty_tracking_changes_nothing(fake_criu):
    fake_criu['dirty'] = False
    for check_mode in (True, False):
        with pytest.raises(HaulError) as e:
            run(fake_criu, check_mode=check_mode)
        assert e.value.step == 'predump'
        assert 'CONFIG_MEM_SOFT_DIRTY' in e.value.msg and '\n' not in e.value.msg
    assert fake_criu['calls'] == []
    assert not os.path.exists(os.path.dirname(fake_criu['params']['images_dir']))


def test_check_mode_runs_no_round(fake_criu):
    r = run(fake_criu, check_mode=True, diff=True)
    assert r['changed'] and r['rounds'] == [] and r['last_images'] is None
    assert r['diff'] == {'before': {'rounds': 0}, 'after': {'rounds': '1..8'}}
    assert fake_criu['calls'] == [] and not os.path.exists(fake_criu['params']['images_dir'])


def test_a_failed_round_keeps_the_earlier_ones(fake_criu):
    fake_criu['pages'] = [65536, 'fail']
    with pytest.raises(HaulError) as e:
        run(fake_criu)
    assert e.value.msg.startswith('pre-dump: round 2: criu pre-dump failed')
    res = e.value.result()
    assert [x['round'] for x in res['rounds']] == [1]
    assert res['last_images'].endswith('/round-1')
    assert sorted(n for n in os.listdir(fake_criu['params']['images_dir']) if n != '.haul-images') == ['round-1']
    assert fake_criu['cg'].thawed == 1


def test_refusals_before_any_round(fake_criu, tmp_path):
    fake_criu['cg']._state = 'frozen'
    with pytest.raises(HaulError, match='^identify: .* is frozen: pre-copy needs a running container'):
        run(fake_criu)
    fake_criu['cg']._state = 'thawed'
    os.makedirs(fake_criu['params']['images_dir'])
    with open(os.path.join(fake_criu['params']['images_dir'], 'notes.txt'), 'w') as f:
        f.write('mine')
    with pytest.raises(HaulError, match=r'^images: .* not pre-dump rounds \(notes.txt\)'):
        run(fake_criu)
    fake_criu['params']['images_dir'] = str(tmp_path / 'other')
    fake_criu['params']['max_rounds'] = 0
    with pytest.raises(HaulError, match='^options: max_rounds must be >= 1'):
        run(fake_criu)
    fake_criu['params']['max_rounds'] = 8
    fake_criu['params']['transfer_bytes_per_s'] = 0
    with pytest.raises(HaulError, match='^options: transfer_bytes_per_s must be > 0'):
        run(fake_criu)
    assert fake_criu['calls'] == []


# --------------------------------------------------------------------------- pre-copy inside a handoff

def handoff_params(st, **precopy):
    params = dict(st['params'])
    for k in ('max_rounds', 'min_pages', 'growth', 'max_downtime_ms', 'transfer_bytes_per_s', 'page_server'):
        params.pop(k)
    params['images_dir'] = os.path.join(os.path.dirname(st['params']['images_dir']), 'pd1')
    params['precopy'] = dict(precopy)
    return params


def test_handoff_rounds_are_sent_one_by_one_and_their_rate_drives_the_rule(fake_criu, tmp_path):
    fake_criu['pages'] = [65536, 4100, 2000, 1000]
    params = handoff_params(fake_criu, max_downtime_ms=300)
    sent = []

    def sync(rdir):
        sent.append(os.path.basename(rdir))
        # 1 MB/s for the first round, 100 MB/s afterwards
        size = sum(os.path.getsize(os.path.join(rdir, n)) for n in os.listdir(rdir))
        return {'bytes_sent': size, 'duration_s': size / (1e6 if len(sent) == 1 else 1e8)}

    ctx = _precopy.prepare_handoff(params, params['images_dir'], pycriu_mod=object())
    res = _precopy.send_rounds(ctx, sync)
    # round 2: 4100 pages at ~100 MB/s -> a predicted freeze under 300 ms: the downtime rule stops
    assert sent == ['round-1', 'round-2']
    assert res['stop_rule'] == 'downtime'
    assert res['parent_images'] == params['images_dir'] + '.precopy/round-2'
    assert res['rounds'][0]['transfer_bytes_per_s'] == pytest.approx(1e6, rel=0.2)
    assert res['rounds'][1]['transfer_bytes_per_s'] == pytest.approx(1e8, rel=0.2)
    assert res['bytes_sent'] == sum(r['bytes_sent'] for r in res['rounds']) > 0
    assert sorted(n for n in os.listdir(params['images_dir'] + '.precopy') if n != '.haul-images') == ['round-1', 'round-2']
    assert [c[1] for c in fake_criu['calls']] == [None, '../round-1']


def test_handoff_rounds_are_refused_without_dirty_tracking_before_anything(fake_criu):
    fake_criu['dirty'] = False
    params = handoff_params(fake_criu)
    with pytest.raises(HaulError) as e:
        _precopy.prepare_handoff(params, params['images_dir'], pycriu_mod=object())
    assert e.value.step == 'predump' and 'CONFIG_MEM_SOFT_DIRTY' in e.value.msg
    assert fake_criu['calls'] == [] and not os.path.exists(params['images_dir'] + '.precopy')


def test_handoff_rounds_settings_are_checked(fake_criu):
    params = handoff_params(fake_criu, max_rounds=0)
    with pytest.raises(HaulError, match='^options: max_rounds must be >= 1'):
        _precopy.prepare_handoff(params, params['images_dir'], pycriu_mod=object())
