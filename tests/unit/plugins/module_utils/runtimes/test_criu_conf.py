# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""CRIU's leave-stopped set for a runtime's own restore, and put back (:mod:`_runtimes.criu_conf`)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.haul.live.plugins.module_utils._runtimes import criu_conf


def test_with_leave_stopped_is_idempotent():
    once = criu_conf.with_leave_stopped('network-lock nftables\n')
    assert once.splitlines()[0] == 'network-lock nftables' and once.splitlines()[-1] == 'leave-stopped'
    assert criu_conf.with_leave_stopped(once) == once
    assert criu_conf.with_leave_stopped(None).splitlines()[-1] == 'leave-stopped'


def test_leave_stopped_puts_the_file_back(tmp_path):
    conf = tmp_path / 'runc.conf'
    conf.write_text('network-lock nftables\n')
    lock = str(tmp_path / 'run' / 'lock')
    with criu_conf.leave_stopped('runc', conf_dir=str(tmp_path), lock_path=lock) as path:
        assert path == str(conf)
        assert 'leave-stopped' in conf.read_text()
        assert (tmp_path / 'runc.conf.haul-live-original').read_text() == 'network-lock nftables\n'
    assert conf.read_text() == 'network-lock nftables\n'
    assert not (tmp_path / 'runc.conf.haul-live-original').exists()


def test_leave_stopped_removes_a_file_it_created(tmp_path):
    lock = str(tmp_path / 'lock')
    with pytest.raises(RuntimeError):
        with criu_conf.leave_stopped('crun', conf_dir=str(tmp_path), lock_path=lock):
            assert (tmp_path / 'crun.conf').read_text().splitlines()[-1] == 'leave-stopped'
            raise RuntimeError('the restore failed')
    assert sorted(os.listdir(str(tmp_path))) == ['lock']


def test_a_killed_run_is_undone_by_the_next(tmp_path):
    conf = tmp_path / 'runc.conf'
    conf.write_text('network-lock nftables\nleave-stopped\n')          # what the killed run left
    (tmp_path / 'runc.conf.haul-live-original').write_text('network-lock nftables\n')
    assert criu_conf.undo_leave_stopped(str(conf)) is True
    assert conf.read_text() == 'network-lock nftables\n'
    assert criu_conf.undo_leave_stopped(str(conf)) is False
