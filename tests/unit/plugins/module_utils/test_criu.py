# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for plugins/module_utils/_criu.py.

The controller has no pycriu: the RPC messages are replaced by plain-Python fakes with the same
attribute names as pycriu.rpc (criu_opts, criu_req, criu_resp, enum constants).
"""

from __future__ import annotations

import types

import pytest

from ansible_collections.haul.live.plugins.module_utils import _criu, _criu_options
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
    o = _criu_options.CriuOptions(pid=40)
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
    o = _criu_options.CriuOptions(
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
    opts = _criu_options.CriuOptions(root='/r', rst_sibling=True, manage_cgroups=True, manage_cgroups_mode='none',
                                     network_lock='iptables').apply(fake_opts(), FAKE_RPC)
    assert opts.rst_sibling is True
    assert opts.manage_cgroups_mode == FAKE_RPC.CG_NONE
    assert opts.network_lock == FAKE_RPC.IPTABLES
    assert opts.pid is None


def test_options_relative_parent_kept():
    o = _criu_options.CriuOptions(pid=1, parent_img='../r1')
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
        _criu_options.CriuOptions(**kwargs)
    assert e.value.step == 'options'
    assert needle in e.value.msg


def test_options_unknown_name():
    with pytest.raises(TypeError):
        _criu_options.CriuOptions(leave_runnin=True)


def test_options_describe():
    d = _criu_options.CriuOptions(pid=3, tcp_established=False).describe()
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
    res = s.dump(_criu_options.CriuOptions(pid=40, leave_stopped=True))
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
        s.dump(_criu_options.CriuOptions(pid=40))
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
        s.restore(_criu_options.CriuOptions(root='/r'))
    assert e.value.msg == 'restore: criu restore failed: Error: no images'
    assert e.value.log is None


def test_session_internal_error(tmp_path, criu_bin):
    images = tmp_path / 'img'
    images.mkdir()
    mod, dummy = make_fake_pycriu({FAKE_RPC.DUMP: FakeCRIUException('DUMP failed with internal error: reset')})
    s = _criu.CriuSession(str(images), criu_path=criu_bin, pycriu_mod=mod)
    with pytest.raises(HaulError) as e:
        s.dump(_criu_options.CriuOptions(pid=4))
    assert 'criu DUMP could not run' in e.value.msg


def test_session_restore_returns_pid(tmp_path, criu_bin):
    images = tmp_path / 'img'
    images.mkdir()
    mod, sent = make_fake_pycriu({FAKE_RPC.RESTORE: ok_resp(restore=FakeMsg(pid=1234))})
    s = _criu.CriuSession(str(images), criu_path=criu_bin, pycriu_mod=mod)
    res = s.restore(_criu_options.CriuOptions(root='/r', rst_sibling=True))
    assert res['pid'] == 1234
    assert sent[0].opts.rst_sibling is True
    assert sent[0].opts.log_file == 'restore.log'


def test_pre_dump_refused_without_dirty_tracking(tmp_path, criu_bin):
    mod, sent = make_fake_pycriu({})
    s = _criu.CriuSession(str(tmp_path), criu_path=criu_bin, pycriu_mod=mod)
    with pytest.raises(HaulError) as e:
        s.pre_dump(_criu_options.CriuOptions(pid=4), features={'mem_dirty_track': False})
    assert 'CONFIG_MEM_SOFT_DIRTY' in e.value.msg
    assert e.value.step == 'pre-dump'
    assert not sent


def test_pre_dump_sets_track_mem(tmp_path, criu_bin):
    mod, sent = make_fake_pycriu({FAKE_RPC.PRE_DUMP: ok_resp()})
    s = _criu.CriuSession(str(tmp_path), criu_path=criu_bin, pycriu_mod=mod)
    s.pre_dump(_criu_options.CriuOptions(pid=4), features={'mem_dirty_track': True})
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
