# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for plugins/module_utils/_lazy_pages.py.

The lazy-pages daemon is replaced by a small shell script that behaves like ``criu lazy-pages``
towards its status fd (a byte when ready, then it runs until told to stop, or it fails first).
"""

from __future__ import annotations

import json
import os
import time

import pytest

from ansible_collections.haul.live.plugins.module_utils import _lazy_pages, _proc, _supervisor, _transfer
from ansible_collections.haul.live.plugins.module_utils._common import HaulError


# --------------------------------------------------------------------------- argv

def test_argv_plain():
    argv = _lazy_pages.lazy_pages_argv('/usr/sbin/criu', '/img', '198.18.0.11', 27100, 7, tls=False)
    assert argv[:2] == ['/usr/sbin/criu', 'lazy-pages']
    assert argv[argv.index('--address') + 1] == '198.18.0.11'
    assert argv[argv.index('--port') + 1] == '27100'
    assert argv[argv.index('--status-fd') + 1] == '7'
    assert argv[argv.index('--images-dir') + 1] == '/img'
    assert '--page-server' in argv
    assert '--tls' not in argv


def test_argv_tls():
    argv = _lazy_pages.lazy_pages_argv('criu', '/img', 'h', 1, 3, tls=True, tls_cacert='/ca.pem', tls_cert='/c.pem',
                                       tls_key='/k.pem', tls_no_cn_verify=True)
    assert '--tls' in argv
    assert argv[argv.index('--tls-cacert') + 1] == '/ca.pem'
    assert argv[argv.index('--tls-cert') + 1] == '/c.pem'
    assert argv[argv.index('--tls-key') + 1] == '/k.pem'
    assert '--tls-no-cn-verify' in argv


def test_argv_tls_default_files_left_to_criu():
    argv = _lazy_pages.lazy_pages_argv('criu', '/img', 'h', 1, 3)
    assert '--tls' in argv and '--tls-cacert' not in argv


def test_argv_certs_without_tls_refused():
    with pytest.raises(HaulError) as e:
        _lazy_pages.lazy_pages_argv('criu', '/img', 'h', 1, 3, tls=False, tls_cacert='/ca.pem')
    assert e.value.step == 'options'


# --------------------------------------------------------------------------- the daemon, with a fake criu

FAKE_CRIU_MODES = r'''case "$mode" in
  ready) printf '\0' >&$fd; trap 'kill $!; exit 0' TERM; sleep 30 & wait; exit 0;;
  done) printf '\0' >&$fd; read x < "$dir/go"; exit 0;;
  broken) printf '\0' >&$fd; read x < "$dir/go"; echo "(00.1) Error (criu/uffd.c:1): uffd: connection lost" >> "$dir/$log"; exit 1;;
  fail) echo "(00.1) Error (criu/util.c:1): Can't connect to server: Connection refused" >> "$dir/$log"; exit 1;;
  silent) exec sleep 30;;
esac
'''


@pytest.fixture
def fake(fake_criu):
    criu, img = fake_criu(FAKE_CRIU_MODES)
    os.mkfifo(str(img / 'go'))

    def mode(m):
        (img / 'FAKE_MODE').write_text(m)
    yield str(criu), str(img), mode
    for job in ('lazy-pages',):
        st = _supervisor.read_state(_supervisor.state_path(str(img), job))
        if st and st.get('pid') and _proc.pid_alive(st['pid']):
            _proc.kill_tree(st.get('supervisor_pid') or st['pid'])


def test_daemon_ready_found_stopped(fake):
    criu, img, mode = fake
    mode('ready')
    rep = _lazy_pages.start_lazy_pages(criu, img, '198.18.0.11', 27100, ready_timeout=10, tls=False)
    assert rep['ready'] is True and rep['pid'] > 0 and rep['ready_ms'] >= 0
    assert rep['log_path'] == os.path.join(img, 'lazy-pages.log')
    found = _lazy_pages.find_lazy_pages(img)
    assert found['pid'] == rep['pid'] and found['tls'] is False
    assert _lazy_pages.stop_lazy_pages(img, timeout=5) == rep['pid']
    assert not _proc.pid_alive(rep['pid'])
    assert _lazy_pages.find_lazy_pages(img) is None
    assert _lazy_pages.stop_lazy_pages(img) is None


def test_daemon_fails_before_ready(fake):
    criu, img, mode = fake
    mode('fail')
    with pytest.raises(HaulError) as e:
        _lazy_pages.start_lazy_pages(criu, img, '198.18.0.99', 27100, ready_timeout=10, tls=False)
    assert e.value.step == 'lazy-pages'
    assert '198.18.0.99:27100' in e.value.msg
    assert 'Connection refused' in e.value.msg
    assert _lazy_pages.find_lazy_pages(img) is None


def test_daemon_not_ready_in_time_is_killed(fake):
    criu, img, mode = fake
    mode('silent')
    with pytest.raises(HaulError) as e:
        _lazy_pages.start_lazy_pages(criu, img, 'h', 1, ready_timeout=0.5, tls=False)
    assert 'not ready after 0.5s' in e.value.msg
    st = None
    for dummy in range(100):
        st = _supervisor.read_state(_supervisor.state_path(img, 'lazy-pages'))
        if st and st.get('state') == 'failed':
            break
        time.sleep(0.05)
    assert st['state'] == 'failed'
    assert not _proc.pid_alive(st['pid'])


def test_wait_transfer_finished(fake):
    criu, img, mode = fake
    mode('done')
    _lazy_pages.start_lazy_pages(criu, img, 'h', 1, ready_timeout=10, tls=False)
    with pytest.raises(HaulError) as e:
        _transfer.wait_transfer(img, 'lazy-pages', 0.2)
    assert e.value.step == 'transfer' and 'lost' in e.value.msg
    with open(os.path.join(img, 'go'), 'w') as f:
        f.write('x\n')
    st = _transfer.wait_transfer(img, 'lazy-pages', 10)
    assert st['rc'] == 0 and st['state'] == 'finished' and st['waited_ms'] >= 0
    # a second wait reads the recorded end
    assert _transfer.wait_transfer(img, 'lazy-pages', 1)['rc'] == 0


def test_wait_transfer_broken_says_lost(fake):
    criu, img, mode = fake
    mode('broken')
    _lazy_pages.start_lazy_pages(criu, img, 'h', 1, ready_timeout=10, tls=False)
    with open(os.path.join(img, 'go'), 'w') as f:
        f.write('x\n')
    with pytest.raises(HaulError) as e:
        _transfer.wait_transfer(img, 'lazy-pages', 10)
    assert e.value.step == 'transfer'
    assert 'the container is lost' in e.value.msg
    assert 'connection lost' in e.value.msg


def test_restored_at(tmp_path):
    assert _lazy_pages.restored_at(str(tmp_path)) is None
    with open(str(tmp_path / 'restore.json'), 'w') as f:
        json.dump({'time': 12.5}, f)
    assert _lazy_pages.restored_at(str(tmp_path)) == 12.5


def test_lazy_pages_error(tmp_path):
    log = tmp_path / 'lazy-pages.log'
    assert _lazy_pages.lazy_pages_error(str(log)) is None
    log.write_text("(00.1) Connecting to server 198.18.0.99:27311\n(03.4) Can't connect to server 198.18.0.99:27311\n")
    assert _lazy_pages.lazy_pages_error(str(log)) == "Can't connect to server 198.18.0.99:27311"
    log.write_text("(00.1) Error (criu/uffd.c:1): uffd: boom\n(03.4) Can't connect\n")
    assert _lazy_pages.lazy_pages_error(str(log)) == 'Error (criu/uffd.c:1): uffd: boom'


# --------------------------------------------------------------------------- gated supervisors (prepared before a freeze)

def test_lazy_pages_gated_starts_only_on_go(fake):
    criu, img, mode = fake
    mode('ready')
    daemon = _lazy_pages.lazy_pages_spawn(criu, img, 'h', 1, ready_timeout=10, tls=False, gated=True)
    time.sleep(0.2)
    assert _lazy_pages.find_lazy_pages(img) is None  # nothing started before go
    assert not os.path.exists(os.path.join(img, 'lazy-pages.log'))
    rep = daemon.go()
    assert rep['ready'] is True and rep['pid'] > 0
    assert _lazy_pages.find_lazy_pages(img)['pid'] == rep['pid']
    assert _lazy_pages.stop_lazy_pages(img, timeout=5) == rep['pid']


def test_lazy_pages_gated_cancel_starts_nothing(fake):
    criu, img, mode = fake
    mode('ready')
    daemon = _lazy_pages.lazy_pages_spawn(criu, img, 'h', 1, ready_timeout=10, tls=False, gated=True)
    sup = daemon.sup
    daemon.cancel()
    assert not _proc.pid_alive(sup)
    # called off before it started: it leaves no state behind
    assert not os.path.exists(_supervisor.state_dir(img))
    assert _lazy_pages.find_lazy_pages(img) is None
