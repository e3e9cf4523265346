# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for plugins/module_utils/_compat.py: which CRIU can dump sockets on which kernel, and what a
move between two kernels means."""

from __future__ import annotations

import pytest

from ansible_collections.haul.live.plugins.module_utils import _compat


@pytest.mark.parametrize('release,expected', [
    ('6.18.44-fc-v782', (6, 18)),
    ('6.1.0-28-cloud-amd64', (6, 1)),
    ('6.12.48+deb13-amd64', (6, 12)),
    ('6.16', (6, 16)),
    ('5.14.0-503.el9.x86_64', (5, 14)),
    ('10.2.3', (10, 2)),
    ('', None),
    (None, None),
    ('linux', None),
])
def test_kernel_version(release, expected):
    assert _compat.kernel_version(release) == expected


@pytest.mark.parametrize('kernel,criu', [
    ('6.12.0', '4.1.1'),                   # Debian 13's kernel and CRIU
    ('6.12.48+deb13-amd64', '4.1.1'),
    ('6.1.0-28-cloud-amd64', '4.1.1'),     # Debian 12's kernel
    ('6.15.11', '4.0'),
    ('6.18.44-fc-v782', '4.2.1'),          # this machine with sid's CRIU
    ('6.18.44-fc-v782', '4.2'),
    ('6.16.0', '4.2.0'),
    ('6.18.0', 'Version: 4.2.1\nGitID: v4.2.1'),
    ('7.1.0', '5.0'),
    ('6.12.0', None),                      # an old kernel needs no particular CRIU for sockets
])
def test_sockets_supported(kernel, criu):
    assert _compat.sockets_support(kernel, criu) == (True, None)


@pytest.mark.parametrize('kernel,criu,reason', [
    ('6.16.0', '4.1.1', 'CRIU 4.1.1 cannot dump TCP or UDP sockets on kernel 6.16 (kernel >= 6.16 needs CRIU >= 4.2): '
                        'install CRIU >= 4.2'),
    ('6.18.44-fc-v782', '4.1.1', 'CRIU 4.1.1 cannot dump TCP or UDP sockets on kernel 6.18 (kernel >= 6.16 needs '
                                 'CRIU >= 4.2): install CRIU >= 4.2'),
    ('6.16.0-rc1', '4.1', 'CRIU 4.1.0 cannot dump TCP or UDP sockets on kernel 6.16 (kernel >= 6.16 needs CRIU >= 4.2): '
                          'install CRIU >= 4.2'),
    ('7.0.0', '4.1.99', 'CRIU 4.1.99 cannot dump TCP or UDP sockets on kernel 7.0 (kernel >= 6.16 needs CRIU >= 4.2): '
                        'install CRIU >= 4.2'),
    ('6.18.44-fc-v782', None, 'cannot tell whether CRIU can dump TCP or UDP sockets on kernel 6.18: its version is '
                              'unknown (kernel >= 6.16 needs CRIU >= 4.2)'),
    ('6.18.44-fc-v782', 'garbage', 'cannot tell whether CRIU can dump TCP or UDP sockets on kernel 6.18: its version '
                                   'is unknown (kernel >= 6.16 needs CRIU >= 4.2)'),
    ('linux', '4.2.1', "cannot tell whether CRIU can dump TCP or UDP sockets: the kernel release 'linux' has no "
                       "version"),
])
def test_sockets_refused(kernel, criu, reason):
    assert _compat.sockets_support(kernel, criu) == (False, reason)


def test_sockets_phrase():
    assert _compat.sockets_phrase(1) == '1 TCP/UDP socket'
    assert _compat.sockets_phrase(3) == '3 TCP/UDP sockets'


def test_sockets_refusal_source():
    assert _compat.sockets_refusal('node1', 'web1', 3, '6.18.44-fc-v782', '4.1.1') == (
        'node1 cannot move web1: it holds 3 TCP/UDP sockets and CRIU 4.1.1 cannot dump sockets on kernel 6.18 '
        '(needs CRIU >= 4.2)')


def test_sockets_refusal_destination_one_socket():
    assert _compat.sockets_refusal('node2', 'web1', 1, '6.16.3', '4.1.1', side='destination') == (
        'node2 cannot take web1: it holds 1 TCP/UDP socket and CRIU 4.1.1 cannot handle sockets on kernel 6.16 '
        '(needs CRIU >= 4.2)')


def test_sockets_refusal_unknown_criu():
    assert _compat.sockets_refusal('node1', 'web1', 2, '6.18.0', None) == (
        'node1 cannot move web1: it holds 2 TCP/UDP sockets and a CRIU of unknown version cannot dump sockets on '
        'kernel 6.18 (needs CRIU >= 4.2)')


@pytest.mark.parametrize('count,kernel,criu', [
    (0, '6.18.0', '4.1.1'),         # no sockets: nothing to refuse
    (3, '6.12.0', '4.1.1'),         # old kernel
    (3, '6.18.0', '4.2.1'),         # new CRIU
])
def test_sockets_refusal_none(count, kernel, criu):
    assert _compat.sockets_refusal('node1', 'web1', count, kernel, criu) is None


# What the VM lab's two kernels report (criu check on 6.1.0-50 and 6.12.117, CRIU 4.1.1), in part.
FEAT_61 = {'clone3_set_tid': True, 'timens': True, 'mem_dirty_track': True, 'pagemap_scan': False, 'tun': False}
FEAT_612 = {'clone3_set_tid': True, 'timens': True, 'mem_dirty_track': True, 'pagemap_scan': True, 'tun': False}


def test_kernel_direction_to_a_newer_kernel_is_supported():
    out = _compat.kernel_direction('6.1.0-50-cloud-amd64', '6.12.117+deb13-cloud-amd64', FEAT_61, FEAT_612, 'vm1', 'vm2')
    assert out['direction'] == 'newer'
    assert out['supported'] is True
    assert out['missing'] == []
    assert out['statement'].startswith('kernel 6.1.0-50-cloud-amd64 on vm1 -> 6.12.117+deb13-cloud-amd64 on vm2: '
                                       'to a newer kernel, supported')


def test_kernel_direction_to_an_older_kernel_ignores_dump_only_features():
    # 6.1 has no PAGEMAP_SCAN: only the dump uses it, so the way back is supported
    out = _compat.kernel_direction('6.12.117+deb13-cloud-amd64', '6.1.0-50-cloud-amd64', FEAT_612, FEAT_61, 'vm2', 'vm1')
    assert out['direction'] == 'older'
    assert out['supported'] is True
    assert out['missing'] == []
    assert 'to an older kernel, supported' in out['statement']


def test_kernel_direction_to_an_older_kernel_without_a_restore_feature_is_refused():
    src = dict(FEAT_612, timens=True, seccomp_filters=None)
    dst = dict(FEAT_61, timens=False, seccomp_filters=False)
    out = _compat.kernel_direction('6.12.1', '5.4.0', src, dst, 'a', 'b')
    assert out['direction'] == 'older'
    assert out['supported'] is False
    # tun (False on both) and seccomp_filters (unknown on the source) are no need; timens is missing
    assert out['missing'] == ['timens']
    assert out['statement'] == ('kernel 6.12.1 on a -> 5.4.0 on b: to an older kernel, not supported: '
                                'CRIU on b lacks timens, which CRIU on a has')


def test_kernel_direction_same_and_patch_levels():
    assert _compat.kernel_direction('6.18.44-fc', '6.18.44-fc')['direction'] == 'same'
    assert _compat.kernel_direction('6.18.44-fc', '6.18.44-fc')['supported'] is True
    # the patch level counts: 6.1.0 -> 6.1.12 is an update
    assert _compat.kernel_direction('6.1.0-50', '6.1.12')['direction'] == 'newer'
    assert _compat.kernel_direction('6.1.12', '6.1.0-50')['direction'] == 'older'


@pytest.mark.parametrize('src,dst', [(None, '6.1.0'), ('6.1.0', ''), ('linux', '6.1')])
def test_kernel_direction_unknown(src, dst):
    out = _compat.kernel_direction(src, dst)
    assert out['direction'] == 'unknown'
    assert out['supported'] is False
    assert 'cannot tell which is newer' in out['statement']
