# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for plugins/module_utils/_criu.py.

The controller has no pycriu: the RPC messages are replaced by plain-Python fakes with the same
attribute names as pycriu.rpc (criu_opts, criu_req, criu_resp, enum constants).
"""

from __future__ import annotations

import os
import types

import pytest

from ansible_collections.haul.live.plugins.module_utils import _criu
from ansible_collections.haul.live.plugins.module_utils._common import HaulError


# --------------------------------------------------------------------------- fakes

class FakeRepeated(list):
    def __init__(self, factory=None):
        super().__init__()
        self._factory = factory

    def add(self):
        item = self._factory()
        self.append(item)
        return item


class FakeMsg:
    """A protobuf-like message: attributes default to None, HasField tells set ones."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def HasField(self, name):  # noqa: N802 - protobuf API
        return self.__dict__.get(name) is not None

    def __getattr__(self, name):
        if name.startswith('_'):
            raise AttributeError(name)
        return None


def fake_opts():
    opts = FakeMsg()
    opts.external = FakeRepeated()
    opts.cg_root = FakeRepeated(FakeMsg)
    opts.ps = FakeMsg()
    return opts


FAKE_RPC = types.SimpleNamespace(
    NFTABLES=2, IPTABLES=1, SKIP=3,
    IGNORE=0, CG_NONE=1, PROPS=2, SOFT=3, FULL=4, STRICT=5, DEFAULT=6,
    SPLICE=1, VM_READ=2,
    DUMP=1, RESTORE=2, CHECK=3, PRE_DUMP=4, CPUINFO_DUMP=7, CPUINFO_CHECK=8, FEATURE_CHECK=9, VERSION=10,
)


class FakeCRIUException(Exception):
    pass


def make_fake_pycriu(responses):
    """A pycriu stand-in whose criu() client answers each request with responses[req.type]."""
    sent = []

    class Req:
        def __init__(self):
            self.type = None
            self.opts = fake_opts()
            self.features = FakeMsg()

    class Client:
        def use_binary(self, path):
            self.path = path

        def _send_req_and_recv_resp(self, req):
            sent.append(req)
            resp = responses[req.type]
            if isinstance(resp, Exception):
                raise resp
            if callable(resp):
                return resp(req)
            return resp

    rpc = types.SimpleNamespace(criu_req=Req, **vars(FAKE_RPC))
    mod = types.SimpleNamespace(rpc=rpc, criu=Client, CRIUException=FakeCRIUException)
    return mod, sent


@pytest.fixture
def criu_bin(tmp_path):
    path = tmp_path / 'criu'
    path.write_text('#!/bin/sh\necho "Version: 4.1.1"\n')
    path.chmod(0o755)
    return str(path)


# --------------------------------------------------------------------------- versions

@pytest.mark.parametrize('text,expected', [
    ('4.1.1', (4, 1, 1)),
    ('4.1', (4, 1, 0)),
    ('Version: 4.1.1\nGitID: v4.1.1\n', (4, 1, 1)),
    ('3.17.1', (3, 17, 1)),
    ((4, 2), (4, 2, 0)),
    ('criu 4.2.1-1+b1', (4, 2, 1)),
])
def test_parse_version(text, expected):
    assert _criu.parse_version(text) == expected


def test_parse_version_garbage():
    with pytest.raises(ValueError):
        _criu.parse_version('no version here')


@pytest.mark.parametrize('a,b,res', [
    ('4.1.1', '4.1.1', 0), ('4.1', '4.1.0', 0), ('4.1.1', '4.2', -1), ('4.10.0', '4.9.9', 1),
    ('3.17.1', '4.0', -1), ('5.0', '4.99.99', 1),
])
def test_compare_versions(a, b, res):
    assert _criu.compare_versions(a, b) == res


def test_format_version():
    assert _criu.format_version('4.1') == '4.1.0'
    assert _criu.format_version((4, 2, 1)) == '4.2.1'


# --------------------------------------------------------------------------- locating

def test_find_criu_explicit(criu_bin):
    assert _criu.find_criu(criu_bin) == criu_bin


def test_find_criu_explicit_missing(tmp_path):
    with pytest.raises(HaulError) as e:
        _criu.find_criu(str(tmp_path / 'nope'))
    assert e.value.step == 'criu'
    assert 'criu >= 4.0' in e.value.msg


def test_find_criu_absent(monkeypatch):
    monkeypatch.setattr(_criu.shutil, 'which', lambda name: None)
    monkeypatch.setattr(_criu, 'CRIU_SEARCH_PATHS', ('/nonexistent/criu',))
    with pytest.raises(HaulError) as e:
        _criu.find_criu()
    assert 'criu is not installed' in e.value.msg
    assert 'python3-pycriu' in e.value.msg


def test_import_pycriu_missing(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == 'pycriu':
            raise ImportError('No module named pycriu')
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, '__import__', fake_import)
    with pytest.raises(HaulError) as e:
        _criu.import_pycriu()
    assert e.value.step == 'pycriu'
    assert 'python3-pycriu' in e.value.msg


# --------------------------------------------------------------------------- logs

LOG = """\
(00.000000) Version: 4.1.1 (gitid 0)
(00.018184) Error (criu/util.c:1533): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted
(00.019000) Warn  (criu/x.c:1): something harmless
Error (criu/util.c:641): execvp("iptables-save", ...) failed: No such file or directory
(00.159246) Error (criu/util.c:1722): iptables-save -V failed
(00.200000) Error (criu/files-reg.c:1700): Can't lookup mount=421 for fd=0 path=/dev/null
(00.200100) Error (criu/cr-dump.c:1800): Dump files (pid: 40) failed with -1
(00.210000) Error (criu/cr-dump.c:2111): Dumping FAILED.
"""


def test_telling_error_skips_noise(tmp_path):
    log = tmp_path / 'dump.log'
    log.write_text(LOG)
    line = _criu.telling_error(str(log))
    assert line == "Error (criu/files-reg.c:1700): Can't lookup mount=421 for fd=0 path=/dev/null"


def test_telling_error_iptables_lock(tmp_path):
    log = tmp_path / 'dump.log'
    log.write_text('(00.001536) Running network-lock scripts\n'
                   'Error (criu/util.c:641): execvp("iptables-restore", ...) failed: No such file or directory\n'
                   '(00.001958) Error (criu/util.c:656): exited, status=1\n'
                   '(00.002269) Error (criu/net.c:3282): net: Locking network failed: iptables-restore returned -1.\n')
    assert _criu.telling_error(str(log)) == ('Error (criu/net.c:3282): net: Locking network failed: '
                                             'iptables-restore returned -1.')
    log.write_text('Error (criu/util.c:641): execvp("iptables-restore", ...) failed: No such file or directory\n'
                   '(00.001958) Error (criu/util.c:656): exited, status=1\n')
    assert _criu.telling_error(str(log)) == ('Error (criu/util.c:641): execvp("iptables-restore", ...) failed: '
                                             'No such file or directory')


def test_telling_error_restore_noise(tmp_path):
    log = tmp_path / 'restore.log'
    log.write_text('Error: ipv4: Address already assigned.\n'
                   'Error (criu/util.c:641): execvp("iptables-legacy-restore", ...) failed: No such file\n'
                   '(00.030575)      1: Error (criu/util.c:1722): iptables-legacy-restore -V failed\n'
                   '(00.032971)      1: Error (criu/files-reg.c:2254): Can\'t open file bin/haul-workload on '
                   'restore: No such file or directory\n'
                   '(00.04) Error (criu/cr-restore.c:2500): Restoring FAILED.\n')
    assert _criu.telling_error(str(log)) == ("Error (criu/files-reg.c:2254): Can't open file bin/haul-workload "
                                             "on restore: No such file or directory")


def test_telling_error_bug_line(tmp_path):
    log = tmp_path / 'pre-dump.log'
    log.write_text('(00.1) Error (criu/util.c:1533): rlimit: Can\'t setup RLIMIT_NOFILE for self\n'
                   '(00.2) BUG at criu/mem.c:45\n')
    assert _criu.telling_error(str(log)) == 'BUG at criu/mem.c:45'


def test_telling_error_only_noise(tmp_path):
    log = tmp_path / 'dump.log'
    log.write_text('(00.2) Error (criu/cr-dump.c:2111): Dumping FAILED.\n')
    assert _criu.telling_error(str(log)) == 'Error (criu/cr-dump.c:2111): Dumping FAILED.'


def test_telling_error_no_log(tmp_path):
    assert _criu.telling_error(str(tmp_path / 'missing.log')) is None
    assert _criu.telling_error(None) is None


# --------------------------------------------------------------------------- options

def test_options_defaults():
    o = _criu.CriuOptions(pid=40)
    assert o.network_lock == 'nftables'
    assert o.log_level == 4
    opts = o.apply(fake_opts(), FAKE_RPC)
    assert opts.pid == 40
    assert opts.network_lock == FAKE_RPC.NFTABLES
    assert opts.log_level == 4
    assert opts.leave_stopped is None  # unset stays unset
    assert opts.parent_img is None


def test_options_full_dump(tmp_path):
    images = str(tmp_path / 'round2')
    o = _criu.CriuOptions(
        pid=40, root='/var/lib/haul/containers/ct/rootfs', external=['mnt[]:m', 'net[4026532]:veth'],
        leave_stopped=True, network_lock='skip', tcp_established=True, manage_cgroups=True,
        manage_cgroups_mode='soft', freeze_cgroup='/sys/fs/cgroup/freezer/haul/ct', shell_job=False,
        parent_img=str(tmp_path / 'round1'), track_mem=True, pre_dump_mode='read',
        page_server={'address': '198.18.0.12', 'port': 27000}, tls=True, tls_cacert='/ca.pem',
        tls_cert='/c.pem', tls_key='/c.key', cg_root=[(None, '/'), ('freezer', '/haul')], timeout=10)
    opts = o.apply(fake_opts(), FAKE_RPC, images)
    assert opts.root == '/var/lib/haul/containers/ct/rootfs'
    assert list(opts.external) == ['mnt[]:m', 'net[4026532]:veth']
    assert opts.leave_stopped is True
    assert opts.network_lock == FAKE_RPC.SKIP
    assert opts.tcp_established is True
    assert opts.manage_cgroups is True
    assert opts.manage_cgroups_mode == FAKE_RPC.SOFT
    assert opts.freeze_cgroup == '/sys/fs/cgroup/freezer/haul/ct'
    assert opts.shell_job is False
    assert opts.parent_img == '../round1'  # relative to the images dir, as CRIU wants it
    assert opts.track_mem is True
    assert opts.pre_dump_mode == FAKE_RPC.VM_READ
    assert opts.ps.address == '198.18.0.12' and opts.ps.port == 27000
    assert opts.tls is True and opts.tls_cacert == '/ca.pem' and opts.tls_key == '/c.key'
    assert [(c.ctrl, c.path) for c in opts.cg_root] == [(None, '/'), ('freezer', '/haul')]
    assert opts.timeout == 10


def test_options_restore():
    opts = _criu.CriuOptions(root='/r', rst_sibling=True, manage_cgroups=True, manage_cgroups_mode='none',
                             network_lock='iptables').apply(fake_opts(), FAKE_RPC)
    assert opts.rst_sibling is True
    assert opts.manage_cgroups_mode == FAKE_RPC.CG_NONE
    assert opts.network_lock == FAKE_RPC.IPTABLES
    assert opts.pid is None


def test_options_relative_parent_kept():
    o = _criu.CriuOptions(pid=1, parent_img='../r1')
    assert o.apply(fake_opts(), FAKE_RPC, '/images/r2').parent_img == '../r1'
    assert o.parent_relative('/images/r2') == '../r1'


@pytest.mark.parametrize('kwargs,needle', [
    (dict(network_lock='ebtables'), 'network_lock'),
    (dict(manage_cgroups_mode='weird'), 'manage_cgroups_mode'),
    (dict(pre_dump_mode='fast'), 'pre_dump_mode'),
    (dict(leave_stopped=True, leave_running=True), 'mutually exclusive'),
    (dict(pid=0), 'pid'),
    (dict(pid=1, page_server={'address': 'x'}), 'port'),
    (dict(pid=1, page_server={'address': 'x', 'port': 70000}), 'port'),
    (dict(pid=1, tls_cacert='/ca'), 'without tls'),
    (dict(pid=1, tls=True), 'page_server'),
    (dict(pid=1, tls=True, page_server={'port': 1}, tls_cert='/c'), 'go together'),
    (dict(pid=1, lazy_pages=True), 'lazy dump needs page_server'),
])
def test_options_invalid(kwargs, needle):
    with pytest.raises(HaulError) as e:
        _criu.CriuOptions(**kwargs)
    assert e.value.step == 'options'
    assert needle in e.value.msg


def test_options_unknown_name():
    with pytest.raises(TypeError):
        _criu.CriuOptions(leave_runnin=True)


def test_options_describe():
    d = _criu.CriuOptions(pid=3, tcp_established=False).describe()
    assert d == {'pid': 3, 'tcp_established': False, 'network_lock': 'nftables', 'log_level': 4}


# --------------------------------------------------------------------------- session with a fake pycriu

def ok_resp(**kw):
    return FakeMsg(success=True, cr_errno=0, cr_errmsg='', **kw)


def test_session_version(criu_bin):
    mod, sent = make_fake_pycriu({FAKE_RPC.VERSION: ok_resp(
        version=FakeMsg(major_number=4, minor_number=1, sublevel=1))})
    s = _criu.CriuSession(criu_path=criu_bin, pycriu_mod=mod)
    assert s.version() == '4.1.1'
    assert s.require_version() == '4.1.1'
    assert s.version() == '4.1.1'
    assert len(sent) == 1  # cached


def test_session_version_too_old(criu_bin):
    mod, dummy = make_fake_pycriu({FAKE_RPC.VERSION: ok_resp(
        version=FakeMsg(major_number=3, minor_number=17, sublevel=1))})
    s = _criu.CriuSession(criu_path=criu_bin, pycriu_mod=mod)
    with pytest.raises(HaulError) as e:
        s.require_version()
    assert 'criu 3.17.1 is too old, need >= 4.0.0' in e.value.msg


def test_session_version_falls_back_to_cli(criu_bin):
    mod, dummy = make_fake_pycriu({FAKE_RPC.VERSION: FakeCRIUException('connection reset')})
    s = _criu.CriuSession(criu_path=criu_bin, pycriu_mod=mod)
    assert s.version() == '4.1.1'


def test_session_dump_success(tmp_path, criu_bin):
    images = tmp_path / 'img'
    images.mkdir()
    mod, sent = make_fake_pycriu({FAKE_RPC.DUMP: ok_resp()})
    s = _criu.CriuSession(str(images), criu_path=criu_bin, pycriu_mod=mod)
    res = s.dump(_criu.CriuOptions(pid=40, leave_stopped=True))
    req = sent[0]
    assert req.type == FAKE_RPC.DUMP
    assert req.opts.log_file == 'dump.log'
    assert req.opts.log_level == 4
    assert req.opts.pid == 40
    assert isinstance(req.opts.images_dir_fd, int)
    assert res['log_path'] == str(images / 'dump.log')


def test_session_dump_failure_has_telling_line(tmp_path, criu_bin):
    images = tmp_path / 'img'
    images.mkdir()

    def fail(req):
        (images / 'dump.log').write_text(LOG)
        return FakeMsg(success=False, cr_errno=2, cr_errmsg="Error (criu/util.c:1533): rlimit: ...")

    mod, dummy = make_fake_pycriu({FAKE_RPC.DUMP: fail})
    s = _criu.CriuSession(str(images), criu_path=criu_bin, pycriu_mod=mod)
    with pytest.raises(HaulError) as e:
        s.dump(_criu.CriuOptions(pid=40))
    err = e.value
    assert err.step == 'dump'
    assert err.msg.startswith('dump: criu dump failed (errno ENOENT): ')
    assert "Can't lookup mount=421" in err.msg
    assert '\n' not in err.msg
    assert err.log == str(images / 'dump.log')
    assert err.rc == 2
    res = err.result()
    assert len(res['log_tail']) <= 20


def test_session_dump_failure_uses_errmsg_without_log(tmp_path, criu_bin):
    images = tmp_path / 'img'
    images.mkdir()
    mod, dummy = make_fake_pycriu({FAKE_RPC.RESTORE: FakeMsg(success=False, cr_errno=0,
                                                             cr_errmsg='Error: no images\nmore')})
    s = _criu.CriuSession(str(images), criu_path=criu_bin, pycriu_mod=mod)
    with pytest.raises(HaulError) as e:
        s.restore(_criu.CriuOptions(root='/r'))
    assert e.value.msg == 'restore: criu restore failed: Error: no images'
    assert e.value.log is None


def test_session_internal_error(tmp_path, criu_bin):
    images = tmp_path / 'img'
    images.mkdir()
    mod, dummy = make_fake_pycriu({FAKE_RPC.DUMP: FakeCRIUException('DUMP failed with internal error: reset')})
    s = _criu.CriuSession(str(images), criu_path=criu_bin, pycriu_mod=mod)
    with pytest.raises(HaulError) as e:
        s.dump(_criu.CriuOptions(pid=4))
    assert 'criu DUMP could not run' in e.value.msg


def test_session_restore_returns_pid(tmp_path, criu_bin):
    images = tmp_path / 'img'
    images.mkdir()
    mod, sent = make_fake_pycriu({FAKE_RPC.RESTORE: ok_resp(restore=FakeMsg(pid=1234))})
    s = _criu.CriuSession(str(images), criu_path=criu_bin, pycriu_mod=mod)
    res = s.restore(_criu.CriuOptions(root='/r', rst_sibling=True))
    assert res['pid'] == 1234
    assert sent[0].opts.rst_sibling is True
    assert sent[0].opts.log_file == 'restore.log'


def test_pre_dump_refused_without_dirty_tracking(tmp_path, criu_bin):
    mod, sent = make_fake_pycriu({})
    s = _criu.CriuSession(str(tmp_path), criu_path=criu_bin, pycriu_mod=mod)
    with pytest.raises(HaulError) as e:
        s.pre_dump(_criu.CriuOptions(pid=4), features={'mem_dirty_track': False})
    assert 'CONFIG_MEM_SOFT_DIRTY' in e.value.msg
    assert e.value.step == 'pre-dump'
    assert not sent


def test_pre_dump_sets_track_mem(tmp_path, criu_bin):
    mod, sent = make_fake_pycriu({FAKE_RPC.PRE_DUMP: ok_resp()})
    s = _criu.CriuSession(str(tmp_path), criu_path=criu_bin, pycriu_mod=mod)
    s.pre_dump(_criu.CriuOptions(pid=4), features={'mem_dirty_track': True})
    assert sent[0].opts.track_mem is True
    assert sent[0].opts.log_file == 'pre-dump.log'


def test_rpc_features(criu_bin):
    names = ['mem_track', 'lazy_pages', 'pidfd_store']

    def answer(req):
        assert all(getattr(req.features, n) is True for n in names)
        return ok_resp(features=FakeMsg(mem_track=False, lazy_pages=True, pidfd_store=True))

    mod, dummy = make_fake_pycriu({FAKE_RPC.FEATURE_CHECK: answer})
    mod.rpc.criu_features = types.SimpleNamespace(
        DESCRIPTOR=types.SimpleNamespace(fields=[types.SimpleNamespace(name=n) for n in names]))
    s = _criu.CriuSession(criu_path=criu_bin, pycriu_mod=mod)
    assert s.rpc_features() == {'mem_track': False, 'lazy_pages': True, 'pidfd_store': True}


def test_cli_feature(tmp_path):
    script = tmp_path / 'criu'
    script.write_text('#!/bin/sh\ncase "$3" in\n'
                      '  timens) echo "timens is supported"; exit 0;;\n'
                      '  mem_dirty_track) echo "Warn: Dirty tracking is OFF"; exit 1;;\n'
                      '  *) echo "Error (criu/cr-check.c:1866): Unknown feature $3"; exit 1;;\n'
                      'esac\n')
    script.chmod(0o755)
    s = _criu.CriuSession(criu_path=str(script), pycriu_mod=make_fake_pycriu({})[0])
    assert s.cli_feature('timens') is True
    assert s.cli_feature('mem_dirty_track') is False
    assert s.cli_feature('warp_drive') is None


# --------------------------------------------------------------------------- targets

def write_proc(root, pid, nspid, ppid=1, rss_kb=None, cgroup='0::/haul/ct\n'):
    d = root / str(pid)
    d.mkdir(parents=True)
    (d / 'status').write_text('Name:\tx\nState:\tS (sleeping)\nPid:\t%d\nPPid:\t%d\nNSpid:\t%s\n'
                              % (pid, ppid, '\t'.join(str(x) for x in nspid)))
    if rss_kb is not None:
        (d / 'smaps_rollup').write_text('00400000-7ffd [rollup]\nRss:             %d kB\nPss: 1 kB\n' % rss_kb)
    (d / 'cgroup').write_text(cgroup)
    (d / 'stat').write_text('%d (x y) S %d 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 123456 0 0\n' % (pid, ppid))


def test_find_pidns_init(tmp_path):
    write_proc(tmp_path, 40, [40, 1], ppid=30)
    write_proc(tmp_path, 41, [41, 2], ppid=40)
    write_proc(tmp_path, 42, [42, 3], ppid=41)
    write_proc(tmp_path, 30, [30], ppid=1)
    assert _criu.find_pidns_init(42, proc=str(tmp_path)) == 40
    assert _criu.find_pidns_init(40, proc=str(tmp_path)) == 40
    assert _criu.find_pidns_init(30, proc=str(tmp_path)) is None
    assert _criu.find_pidns_init(99, proc=str(tmp_path)) is None


class FakeCgroup:
    base = None  # set by fake_cgroup_mod to a directory below tmp_path

    def __init__(self, path, step='cgroup', **kw):
        if path.strip('/') not in ('haul/ct', 'haul'):
            raise HaulError(step, 'cgroup %s does not exist (looked in /sys/fs/cgroup/%s)' % (path, path))
        self.rel = path.strip('/')
        self.path = os.path.join(self.base, 'unified', self.rel)
        self.version = 'v2'
        self.twins = [os.path.join(self.base, 'freezer', self.rel)]
        if os.path.isdir(os.path.dirname(self.path)):
            os.makedirs(self.path, exist_ok=True)
            with open(os.path.join(self.path, 'cgroup.procs'), 'w') as f:
                f.write('' if self.rel == 'haul' else '40\n41\n')

    @classmethod
    def from_pid(cls, pid, step='cgroup', **kw):
        return cls('haul/ct', step=step)

    def pids(self):
        return [40, 41]


def fake_cgroup_mod(proc):
    FakeCgroup.base = os.path.join(proc, 'cgroupfs')
    os.makedirs(os.path.join(FakeCgroup.base, 'unified', 'haul'), exist_ok=True)
    from ansible_collections.haul.live.plugins.module_utils import _cgroup
    return types.SimpleNamespace(Cgroup=FakeCgroup,
                                 pidns_init=lambda pids, proc=proc: _cgroup.pidns_init(pids, proc=proc))


def test_resolve_target_by_pid(tmp_path):
    write_proc(tmp_path, 40, [40, 1])
    write_proc(tmp_path, 41, [41, 2], ppid=40)
    t = _criu.resolve_target(pid=40, proc=str(tmp_path), cgroup_mod=fake_cgroup_mod(str(tmp_path)))
    assert t['pid'] == 40
    assert t['cgroup_path'] == '/haul/ct'
    assert t['pids'] == [40, 41]


def test_resolve_target_by_cgroup(tmp_path):
    write_proc(tmp_path, 40, [40, 1])
    write_proc(tmp_path, 41, [41, 2], ppid=40)
    t = _criu.resolve_target(cgroup='haul/ct', proc=str(tmp_path), cgroup_mod=fake_cgroup_mod(str(tmp_path)))
    assert t['pid'] == 40


def test_resolve_target_missing_pid(tmp_path):
    with pytest.raises(HaulError) as e:
        _criu.resolve_target(pid=999999, proc=str(tmp_path), cgroup_mod=fake_cgroup_mod(str(tmp_path)))
    assert e.value.msg == 'identify: pid 999999 does not exist'


def test_resolve_target_pid_not_init(tmp_path):
    write_proc(tmp_path, 40, [40, 1])
    write_proc(tmp_path, 41, [41, 2], ppid=40)
    with pytest.raises(HaulError) as e:
        _criu.resolve_target(pid=41, proc=str(tmp_path), cgroup_mod=fake_cgroup_mod(str(tmp_path)))
    assert 'pid 41 is pid 2 inside a container\'s pid namespace, not its init' in e.value.msg
    assert 'its init is pid 40' in e.value.msg


def test_resolve_target_pid_not_in_pidns(tmp_path):
    write_proc(tmp_path, 30, [30])
    with pytest.raises(HaulError) as e:
        _criu.resolve_target(pid=30, proc=str(tmp_path), cgroup_mod=fake_cgroup_mod(str(tmp_path)))
    assert 'not in a pid namespace of its own' in e.value.msg


def test_resolve_target_missing_cgroup(tmp_path):
    with pytest.raises(HaulError) as e:
        _criu.resolve_target(cgroup='haul/nope', proc=str(tmp_path), cgroup_mod=fake_cgroup_mod(str(tmp_path)))
    assert e.value.step == 'identify'
    assert 'does not exist' in e.value.msg


def test_resolve_target_parent_cgroup(tmp_path):
    proc = tmp_path / 'proc'
    write_proc(proc, 40, [40, 1])
    write_proc(proc, 41, [41, 2], ppid=40)
    with pytest.raises(HaulError) as e:
        _criu.resolve_target(cgroup='haul', proc=str(proc), cgroup_mod=fake_cgroup_mod(str(proc)))
    assert 'holds no pid-namespace init' in e.value.msg
    assert "pid 40 below it is one: give the container's own cgroup" in e.value.msg


def test_resolve_target_cgroup_without_init(tmp_path):
    write_proc(tmp_path, 40, [40])
    write_proc(tmp_path, 41, [41])
    with pytest.raises(HaulError) as e:
        _criu.resolve_target(cgroup='haul/ct', proc=str(tmp_path), cgroup_mod=fake_cgroup_mod(str(tmp_path)))
    assert 'holds no pid-namespace init' in e.value.msg


def test_all_stopped(tmp_path):
    write_proc(tmp_path, 40, [40, 1])
    write_proc(tmp_path, 41, [41, 2], ppid=40)
    assert not _criu.all_stopped([40, 41], proc=str(tmp_path))
    for pid in (40, 41):
        st = tmp_path / str(pid) / 'status'
        st.write_text(st.read_text().replace('S (sleeping)', 'T (stopped)'))
    assert _criu.all_stopped([40, 41, 42], proc=str(tmp_path))
    assert not _criu.all_stopped([42], proc=str(tmp_path))


def test_tree_rss(tmp_path):
    write_proc(tmp_path, 40, [40, 1], rss_kb=1000)
    write_proc(tmp_path, 41, [41, 2], rss_kb=24)
    assert _criu.tree_rss([40, 41, 42], proc=str(tmp_path)) == 1024 * 1024


def test_proc_starttime_and_cgroup(tmp_path):
    write_proc(tmp_path, 40, [40, 1])
    assert _criu.proc_starttime(40, proc=str(tmp_path)) == 123456
    assert _criu.proc_cgroup_v2(40, proc=str(tmp_path)) == '/haul/ct'
    assert _criu.proc_starttime(41, proc=str(tmp_path)) is None


def test_criu_freeze_cgroup_prefers_v1_twin():
    cg = types.SimpleNamespace(version='v2', path='/sys/fs/cgroup/unified/haul/ct',
                               twins=['/sys/fs/cgroup/freezer/haul/ct'])
    assert _criu.criu_freeze_cgroup(cg) == '/sys/fs/cgroup/freezer/haul/ct'
    cg.twins = []
    assert _criu.criu_freeze_cgroup(cg) == '/sys/fs/cgroup/unified/haul/ct'


def test_detect_root(tmp_path, monkeypatch):
    rootfs = tmp_path / 'containers' / 'ct' / 'rootfs'
    rootfs.mkdir(parents=True)
    proc = tmp_path / 'proc'
    (proc / '40').mkdir(parents=True)
    os.symlink(str(rootfs), str(proc / '40' / 'root'))
    (proc / '40' / 'mountinfo').write_text('65 48 0:40 /elsewhere / rw - overlay overlay rw\n')
    monkeypatch.setattr(_criu, 'CONTAINERS_DIR', str(tmp_path / 'containers'))
    assert _criu.detect_root(40, 'ct', proc=str(proc)) == str(rootfs)
    # by the mountinfo root field when the convention path is not it
    assert _criu.detect_root(40, 'other', proc=str(proc)) is None
    (proc / '40' / 'mountinfo').write_text('65 48 0:40 %s / rw - overlay overlay rw\n' % rootfs)
    assert _criu.detect_root(40, 'other', proc=str(proc)) == str(rootfs)


# --------------------------------------------------------------------------- facts helpers

CPUINFO = """\
processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 167
model name\t: Intel(R) Xeon(R) Processor
stepping\t: 1
flags\t\t: fpu vme sse2 avx2

processor\t: 1
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 167
model name\t: Intel(R) Xeon(R) Processor
stepping\t: 1
flags\t\t: fpu vme sse2 avx2
"""


def test_parse_cpuinfo():
    cpu = _criu.parse_cpuinfo(CPUINFO)
    assert cpu['vendor'] == 'GenuineIntel'
    assert cpu['family'] == 6 and cpu['model'] == 167 and cpu['stepping'] == 1
    assert cpu['count'] == 2
    assert cpu['flags_count'] == 4
    other = _criu.parse_cpuinfo(CPUINFO.replace('avx2', 'avx512f'))
    assert other['flags_sha256'] != cpu['flags_sha256']
    same_order = _criu.parse_cpuinfo(CPUINFO.replace('fpu vme sse2 avx2', 'avx2 sse2 vme fpu'))
    assert same_order['flags_sha256'] == cpu['flags_sha256']
