# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for plugins/module_utils/_common.py."""

from __future__ import annotations

import json

import pytest

from ansible_collections.haul.live.plugins.module_utils import _common


class FakeModule:
    """Stands in for AnsibleModule: fail_json records its arguments and exits like the real one."""

    def __init__(self):
        self.failed = None

    def fail_json(self, **kwargs):
        self.failed = kwargs
        raise SystemExit(1)


def test_msg_is_step_and_cause_on_one_line():
    err = _common.HaulError('dump', 'criu failed:\n  Can\'t dump   nested pid namespace\n')
    assert err.msg == "dump: criu failed: Can't dump nested pid namespace"
    assert str(err) == err.msg
    assert '\n' not in err.msg


def test_non_string_cause_is_converted():
    err = _common.HaulError('sync', OSError(28, 'No space left on device'))
    assert err.msg == 'sync: [Errno 28] No space left on device'


def test_result_without_log_or_rc():
    err = _common.HaulError('freeze', 'cgroup.freeze did not settle', cgroup='haul/ct1')
    assert err.result() == {'failed_step': 'freeze', 'cgroup': 'haul/ct1'}


def test_result_with_log_and_rc(tmp_path):
    log = tmp_path / 'dump.log'
    log.write_text(''.join('line %d\n' % i for i in range(100)))
    err = _common.HaulError('dump', 'criu exited with 1', log=str(log), rc=1)
    res = err.result()
    assert res['failed_step'] == 'dump'
    assert res['rc'] == 1
    assert res['log_path'] == str(log)
    assert res['log_tail'] == ['line %d' % i for i in range(80, 100)]
    json.dumps(res)  # module results must be JSON-serialisable


def test_rc_zero_is_kept():
    assert _common.HaulError('restore', 'x', rc=0).result()['rc'] == 0


def test_log_tail_missing_or_empty_path(tmp_path):
    assert _common.log_tail(None) == []
    assert _common.log_tail('') == []
    assert _common.log_tail(str(tmp_path / 'absent.log')) == []
    assert _common.HaulError('dump', 'x', log=str(tmp_path / 'absent.log')).result()['log_tail'] == []


def test_log_tail_short_file(tmp_path):
    log = tmp_path / 'short.log'
    log.write_text('a\nb\n')
    assert _common.log_tail(str(log)) == ['a', 'b']
    assert _common.log_tail(str(log), lines=1) == ['b']


def test_log_tail_is_bounded_in_bytes_and_drops_the_cut_line(tmp_path):
    log = tmp_path / 'big.log'
    log.write_text('x' * 10000 + '\n' + 'tail line\n')
    tail = _common.log_tail(str(log), max_bytes=100)
    # the first line read starts in the middle of the long line: it is dropped
    assert tail == ['tail line']
    assert sum(len(line) for line in tail) <= 100


def test_log_tail_survives_invalid_utf8(tmp_path):
    log = tmp_path / 'bin.log'
    log.write_bytes(b'ok\n\xff\xfe broken\n')
    assert _common.log_tail(str(log)) == ['ok', '\ufffd\ufffd broken']


def test_fail_merges_details_and_extra(tmp_path):
    log = tmp_path / 'restore.log'
    log.write_text('Error (criu/cr-restore.c:1): Can\'t fork for 42: File exists\n')
    module = FakeModule()
    err = _common.HaulError('restore', 'pid 42 is taken', log=str(log), rc=17, node='node2')
    with pytest.raises(SystemExit):
        _common.fail(module, err, container='ct1')
    assert module.failed == {
        'msg': 'restore: pid 42 is taken',
        'failed_step': 'restore',
        'node': 'node2',
        'container': 'ct1',
        'rc': 17,
        'log_path': str(log),
        'log_tail': ["Error (criu/cr-restore.c:1): Can't fork for 42: File exists"],
    }
