# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for the link probe of plugins/module_utils/_linkprobe.py (probe_link).

The payload, dd's summary, the rate arithmetic and the failures over canned command results;
then a real run through a stand-in ``ssh`` that runs the remote dd locally.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import zlib

import pytest

from ansible_collections.haul.live.plugins.module_utils import _linkprobe as t
from ansible_collections.haul.live.plugins.module_utils._transport import SshTarget
from ansible_collections.haul.live.plugins.module_utils._common import HaulError

DD_COREUTILS = ('0+586 records in\n0+586 records out\n'
                '33554432 bytes (34 MB, 32 MiB) copied, 0.131592 s, 255 MB/s\n')
DD_OLD = '64+0 records in\n64+0 records out\n67108864 bytes (67 MB) copied, 2.5e-01 s, 268 MB/s\n'
DD_BUSYBOX = '0+512 records in\n0+512 records out\n'


class FakeRun:
    """Records calls; answers with canned (rc, out, err), or raises an exception given as an answer."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = []

    def __call__(self, args, data=None, environ_update=None, **kwargs):
        self.calls.append(dict(args=args, data=data, environ_update=environ_update, kwargs=kwargs))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Clock:
    def __init__(self, *times):
        self.times = list(times)

    def __call__(self):
        return self.times.pop(0)


def test_payload_is_incompressible_and_exact():
    data = t.probe_payload(3 * t.PROBE_BLOCK + 5)
    assert len(data) == 3 * t.PROBE_BLOCK + 5
    assert data[:t.PROBE_BLOCK] == data[t.PROBE_BLOCK:2 * t.PROBE_BLOCK]  # one block, repeated
    # the repeat is further apart than zlib's window: compression gains nothing
    assert len(zlib.compress(data, 6)) > 0.99 * len(data)
    assert len(t.probe_payload(10)) == 10
    with pytest.raises(ValueError):
        t.probe_payload(0)


def test_parse_dd_stats():
    assert t.parse_dd_stats(DD_COREUTILS) == (33554432, 0.131592)
    assert t.parse_dd_stats(DD_OLD) == (67108864, 0.25)
    assert t.parse_dd_stats("Warning: Permanently added '198.18.0.12' (ED25519)\n" + DD_COREUTILS) == (33554432, 0.131592)
    assert t.parse_dd_stats(DD_BUSYBOX) is None
    assert t.parse_dd_stats('') is None and t.parse_dd_stats(None) is None


def test_link_rate():
    assert t.link_rate(67108864, 0.25) == 268435456
    assert t.link_rate(1000, 3) == 333
    assert t.link_rate(1000, 0) is None
    assert t.link_rate(0, 1.0) == 0
    with pytest.raises(ValueError):
        t.link_rate(-1, 1.0)


def test_probe_link_uses_dd_time():
    run = FakeRun((0, '', DD_COREUTILS))
    target = SshTarget('198.18.0.12', key='/root/.ssh/k')
    res = t.probe_link(target, run, 33554432, clock=Clock(10.0, 10.3))
    assert res == {'link_bytes_s': round(33554432 / 0.131592), 'bytes': 33554432, 'seconds': 0.131592,
                   'duration_s': 0.3, 'timed_by': 'dd'}
    call = run.calls[0]
    assert call['args'][:3] == ['ssh', '-i', '/root/.ssh/k']
    assert call['args'][-2:] == ['root@198.18.0.12', 'env LC_ALL=C dd of=/dev/null bs=1048576']
    assert len(call['data']) == 33554432 and isinstance(call['data'], bytes)
    assert call['kwargs'] == {'binary_data': True, 'handle_exceptions': False}
    assert call['environ_update'] == t.C_LOCALE


def test_probe_link_falls_back_to_local_time():
    run = FakeRun((0, '', DD_BUSYBOX))
    res = t.probe_link(SshTarget('n2'), run, 1048576, clock=Clock(1.0, 1.5))
    assert res['timed_by'] == 'local' and res['link_bytes_s'] == 2097152 and res['seconds'] == 0.5


def test_probe_link_short_arrival():
    run = FakeRun((0, '', '1000 bytes copied, 0.1 s, 10 kB/s\n'))
    with pytest.raises(HaulError) as e:
        t.probe_link(SshTarget('n2'), run, 2048, clock=Clock(1.0, 1.5))
    assert e.value.msg == 'probe: only 1000 of the 2048 bytes sent arrived on n2'


@pytest.mark.parametrize('size', [0, -1, t.MAX_PROBE_BYTES + 1, True, 1.5, '10'])
def test_probe_link_bad_size(size):
    with pytest.raises(HaulError) as e:
        t.probe_link(SshTarget('n2'), FakeRun(), size)
    assert e.value.msg.startswith('probe: the probe size must be between 1 and')


def test_probe_link_failures():
    with pytest.raises(HaulError) as e:
        t.probe_link(SshTarget('n2'), FakeRun((255, '', 'ssh: connect to host n2 port 22: No route to host\n')), 4096)
    assert e.value.msg == ('probe: destination n2 unreachable (ssh: connect to host n2 port 22: No route to host; '
                           'ssh exit 255: ssh failed)')
    assert e.value.rc == 255
    with pytest.raises(HaulError) as e:
        t.probe_link(SshTarget('n2'), FakeRun((127, '', 'sh: 1: exec: dd: not found\n')), 4096)
    assert e.value.msg.startswith('probe: dd is not installed on n2')


def test_probe_link_broken_pipe_asks_ssh_why():
    # ssh exits before it has read the payload (a refused login): the write fails with EPIPE
    pipe = OSError(errno.EPIPE, 'Broken pipe')
    run = FakeRun(pipe, (255, '', 'root@n2: Permission denied (publickey).\n'))
    with pytest.raises(HaulError) as e:
        t.probe_link(SshTarget('n2'), run, 4096)
    assert e.value.msg.startswith('probe: SSH authentication to n2 failed (root@n2: Permission denied (publickey).')
    assert run.calls[1]['args'][-1] == 'true' and run.calls[1]['data'] is None
    with pytest.raises(HaulError) as e:
        t.probe_link(SshTarget('n2'), FakeRun(pipe, (0, '', '')), 4096)
    assert e.value.msg == 'probe: the connection to n2 broke during the probe (broken pipe)'
    with pytest.raises(HaulError) as e:
        t.probe_link(SshTarget('n2', ssh_bin='/nonexistent/ssh'), FakeRun(OSError(errno.ENOENT, 'No such file')), 4096)
    assert e.value.msg == 'probe: cannot run ssh to n2: No such file'


def _run(args, data=None, environ_update=None, binary_data=False, handle_exceptions=True):
    env = dict(os.environ)
    env.update(environ_update or {})
    p = subprocess.run(args, input=data, capture_output=True, env=env, check=False)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_probe_link_real_dd_through_a_stand_in_ssh(stand_in_ssh):
    if not shutil.which('dd'):
        pytest.skip('dd not installed')
    res = t.probe_link(SshTarget('localhost', ssh_bin=stand_in_ssh), _run, 4 * t.PROBE_BLOCK)
    assert res['timed_by'] == 'dd'
    assert res['bytes'] == 4 * t.PROBE_BLOCK
    assert res['link_bytes_s'] > 0 and res['seconds'] > 0
