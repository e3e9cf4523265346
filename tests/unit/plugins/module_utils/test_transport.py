# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for plugins/module_utils/_transport.py.

Pure logic (argument building, stats and itemize parsing, exit-code mapping, manifest
verification), then real rsync runs between two local directories through a stand-in ``ssh``
that runs the remote command locally.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import stat
import subprocess

import pytest

from ansible_collections.haul.live.plugins.module_utils import _transport
from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.module_utils._transport import (
    RECEIVER_FILES, ArgFormat, CmdBuilder, RsyncRunner, SshTarget, explain_rsync_failure, parse_itemized, parse_stats)
from ansible_collections.haul.live.plugins.module_utils._verify import (
    verify_manifest_local, verify_manifest_remote, verify_problems)

STATS = """\
cd+++++++++ ./
>f+++++++++ pages-1.img
hf+++++++++ link.img => pages-1.img
*deleting   old.img
.d..t...... sub/
.f          same.img

Number of files: 6 (reg: 4, dir: 2)
Number of created files: 6 (reg: 4, dir: 2)
Number of deleted files: 1
Number of regular files transferred: 3
Total file size: 10,685,763 bytes
Total transferred file size: 10585763 bytes
Literal data: 10585763 bytes
Matched data: 0 bytes
File list size: 0
Total bytes sent: 10588625
Total bytes received: 130

sent 10588625 bytes  received 130 bytes  21177510.00 bytes/sec
total size is 10685763  speedup is 1.01
"""

NOTHING = """\

Number of files: 6 (reg: 4, dir: 2)
Number of created files: 0
Number of deleted files: 0
Number of regular files transferred: 0
Total file size: 10685763 bytes
Total transferred file size: 0 bytes
Total bytes sent: 212
Total bytes received: 19
"""


class FakeRun:
    """Records calls and answers with canned (rc, out, err)."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = []

    def __call__(self, args, data=None, environ_update=None, **kwargs):
        self.calls.append(dict(args=args, data=data, environ_update=environ_update))
        return self.answers.pop(0)


# ---------------------------------------------------------------------------------------------
# builder and argv
# ---------------------------------------------------------------------------------------------

def test_cmd_builder_order_and_none():
    b = CmdBuilder('tool', dict(a=ArgFormat.as_bool('-a'), v=ArgFormat.as_opt_eq_val('--v'),
                                p=ArgFormat.as_list()), ['a', 'v', 'p'])
    assert b.build(p=['x', 'y'], a=True) == ['tool', '-a', 'x', 'y']
    assert b.build(a=False, v=3) == ['tool', '--v=3']
    with pytest.raises(ValueError):
        b.build(typo=1)
    with pytest.raises(ValueError):
        CmdBuilder('t', {}, ['missing'])


def test_ssh_argv_defaults_and_user_options_first():
    t = SshTarget('198.18.0.12', key='/k/id', port=2222, options=['ConnectTimeout=3'])
    argv = t.ssh_argv()
    assert argv[0] == 'ssh'
    assert argv[1:3] == ['-o', 'ConnectTimeout=3']  # first value wins in ssh
    assert ['-i', '/k/id'] == argv[3:5] and ['-p', '2222'] == argv[5:7]
    for o in ('BatchMode=yes', 'StrictHostKeyChecking=yes', 'ConnectTimeout=10',
              'ServerAliveInterval=5', 'ServerAliveCountMax=3'):
        assert o in argv and argv[argv.index(o) - 1] == '-o'
    assert t.login == 'root@198.18.0.12'
    assert t.rsync_dest('/x/') == 'root@198.18.0.12:/x/'
    assert SshTarget('fe80::1').rsync_dest('/x') == 'root@[fe80::1]:/x'


def test_ssh_bad_option():
    with pytest.raises(HaulError) as e:
        SshTarget('h', options=['-v'])
    assert e.value.msg.startswith('sync: ssh option')


def test_rsh_is_quoted_for_rsync():
    t = SshTarget('h', key='/path with space/id')
    assert "'/path with space/id'" in t.rsh()
    assert shlex.split(t.rsh()) == t.ssh_argv()


def test_remote_argv():
    t = SshTarget('h')
    argv = t.remote_argv(['python3', '-', '/a b', 'manifest.json'])
    assert argv[-3:-1] == ['--', 'root@h']
    assert argv[-1] == "python3 - '/a b' manifest.json"


def test_rsync_argv_real_run():
    r = RsyncRunner(None, SshTarget('n2', key='/k'), bwlimit_kib=1024, timeout=30)
    argv = r.argv('/imgs', '/var/lib/haul/images/ct1', delete=True, mkdir_mode='0700')
    assert argv[0] == 'rsync'
    for a in ('--archive', '--sparse', '--hard-links', '--xattrs', '--numeric-ids', '--delete', '--partial',
              '--partial-dir=.haul-partial', '--bwlimit=1024', '--timeout=30', '--itemize-changes',
              '--stats', '--no-human-readable'):
        assert a in argv
    assert '--dry-run' not in argv and '--acls' not in argv and '--compress' not in argv
    assert argv[argv.index('--rsh') + 1] == r.target.rsh()
    assert "--rsync-path=mkdir -p -m 0700 /var/lib/haul/images/ct1 && rsync" in argv
    assert argv[-2:] == ['/imgs/', 'root@n2:/var/lib/haul/images/ct1/']
    prot = r.argv('/imgs', '/d', delete=True, protect=['restore.json'])
    assert '--filter=P /restore.json' in prot and '--omit-dir-times' in prot
    assert '--filter=P /restore.json' not in r.argv('/imgs', '/d', protect=['restore.json'])  # no --delete


def test_rsync_argv_dry_run_creates_nothing():
    r = RsyncRunner(None, SshTarget('n2'))
    argv = r.argv('/imgs/', '/d')
    assert '--delete' not in argv and '--bwlimit' not in ' '.join(argv)
    dry = r.argv('/imgs/', '/d', dry_run=True)
    assert '--dry-run' in dry
    assert not [a for a in dry if a.startswith('--rsync-path')]


# ---------------------------------------------------------------------------------------------
# output parsing
# ---------------------------------------------------------------------------------------------

def test_rsync_argv_fresh_sends_whole_files_without_sparse_detection():
    r = RsyncRunner(None, SshTarget('n2'))
    normal = r.argv('/src', '/dst')
    fresh = r.argv('/src', '/dst', fresh=True)
    assert '--sparse' in normal and '--whole-file' not in normal
    assert '--sparse' not in fresh and '--whole-file' in fresh


def test_parse_stats():
    s = parse_stats(STATS)
    assert s['files_transferred'] == 3
    assert s['total_size'] == 10685763  # thousands separators tolerated
    assert s['transferred_size'] == 10585763
    assert s['bytes_sent'] == 10588625
    assert s['bytes_received'] == 130
    assert s['files_deleted'] == 1
    assert parse_stats('')['bytes_sent'] == 0


def test_parse_itemized():
    items = parse_itemized(STATS)
    assert items == ['cd+++++++++ ./', '>f+++++++++ pages-1.img', 'hf+++++++++ link.img => pages-1.img',
                     '*deleting   old.img', '.d..t...... sub/']
    assert parse_itemized(NOTHING) == []


# ---------------------------------------------------------------------------------------------
# exit codes
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('rc,stderr,expect', [
    (255, 'ssh: connect to host 198.18.0.99 port 22: No route to host\n'
          'rsync: connection unexpectedly closed (0 bytes received so far) [sender]\n'
          'rsync error: unexplained error (code 255) at io.c(232) [sender=3.4.1]\n',
     'destination 198.18.0.99 unreachable (ssh: connect to host 198.18.0.99 port 22: No route to host; '
     'rsync exit 255: ssh failed)'),
    (255, 'ssh: connect to host 198.18.0.99 port 22: Connection timed out\n', 'destination 198.18.0.99 unreachable'),
    (12, 'rsync: [receiver] write failed on "/d/pages-1.img": No space left on device (28)\n'
         'rsync error: error in file IO (code 11) at receiver.c(381) [receiver=3.4.1]\n',
     'destination disk full on 198.18.0.99'),
    (11, 'rsync: write failed on "/d/x": No space left on device (28)\n', 'destination disk full'),
    (255, 'root@198.18.0.99: Permission denied (publickey).\n', 'SSH authentication to 198.18.0.99 failed'),
    (255, 'Host key verification failed.\n', 'SSH host key verification failed'),
    (255, 'ssh: Could not resolve hostname nohost: Name or service not known\n', 'cannot resolve destination host'),
    (127, 'bash: line 1: rsync: command not found\n', 'rsync is not installed on 198.18.0.99'),
    (30, 'rsync error: timeout in data send/receive (code 30)\n', 'transfer to 198.18.0.99 stalled'),
    (23, 'rsync: [sender] send_files failed to open "/s/x": Permission denied (13)\n'
         'rsync error: some files/attrs were not transferred (code 23)\n', 'partial transfer to 198.18.0.99'),
    (24, 'file has vanished: "/s/y"\n', 'partial transfer'),
    (24, 'file has vanished: "/s/a"\nfile has vanished: "/s/b"\n'
         'rsync warning: some files vanished before they could be transferred (code 24)\n', 'vanished: "/s/a", "/s/b")'),
    (12, 'rsync: connection unexpectedly closed\n', 'connection to 198.18.0.99 lost'),
    (35, '', 'destination 198.18.0.99 unreachable (rsync exit 35: timeout waiting for daemon connection)'),
    (99, 'weird\n', 'rsync to 198.18.0.99 failed (weird; rsync exit 99)'),
])
def test_explain(rc, stderr, expect):
    cause = explain_rsync_failure(rc, stderr, '198.18.0.99', timeout=30)
    assert expect in cause
    assert '\n' not in cause


def test_sync_failure_raises_one_line_with_tail(tmp_path):
    err = 'ssh: connect to host 198.18.0.99 port 22: No route to host\n' \
          'rsync: connection unexpectedly closed (0 bytes received so far) [sender]\n' \
          'rsync error: unexplained error (code 255) at io.c(232) [sender=3.4.1]\n'
    run = FakeRun((255, '', err))
    r = RsyncRunner(run, SshTarget('198.18.0.99'))
    with pytest.raises(HaulError) as e:
        r.sync(str(tmp_path), '/d')
    assert e.value.msg.startswith('sync: destination 198.18.0.99 unreachable')
    assert e.value.rc in (12, 255)
    res = e.value.result()
    assert res['stderr_tail'][-1].startswith('rsync error')
    assert run.calls[0]['environ_update']['LC_ALL'] == 'C'


def test_sync_refuses_missing_src_and_empty_dest(tmp_path):
    r = RsyncRunner(FakeRun(), SshTarget('h'))
    with pytest.raises(HaulError) as e:
        r.sync(str(tmp_path / 'nope'), '/d')
    assert 'source directory' in e.value.msg
    with pytest.raises(HaulError):
        r.sync(str(tmp_path), '/')


def test_sync_nothing_to_do(tmp_path):
    r = RsyncRunner(FakeRun((0, NOTHING, '')), SshTarget('h'))
    res = r.sync(str(tmp_path), '/d', dry_run=True)
    assert res['changed'] is False and res['files_transferred'] == 0 and res['dry_run'] is True


# ---------------------------------------------------------------------------------------------
# manifest verification
# ---------------------------------------------------------------------------------------------

def _images(d, corrupt=None):
    d.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, data in (('pages-1.img', b'\x01' * 5000), ('core-1.img', b'core'), ('sub/x.img', b'x')):
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        files[name] = dict(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    if corrupt:
        files[corrupt]['sha256'] = '0' * 64
    (d / 'manifest.json').write_text(json.dumps(dict(files=files, criu_version='4.1.1')))
    return d


def test_verify_local_ok_and_problems(tmp_path):
    d = _images(tmp_path / 'ok')
    res = verify_manifest_local(str(d))
    assert res['checked'] == 3 and verify_problems(res) is None
    (d / 'core-1.img').write_bytes(b'CORE')  # same size, other content
    (d / 'sub' / 'x.img').unlink()
    with open(d / 'pages-1.img', 'ab') as f:
        f.write(b'!')
    res = verify_manifest_local(str(d))
    assert res['sha256_mismatch'] == ['core-1.img']
    assert res['missing'] == ['sub/x.img']
    assert res['size_mismatch'] == ['pages-1.img']
    p = verify_problems(res)
    assert '1 missing (sub/x.img)' in p and 'wrong sha256 (core-1.img)' in p and 'wrong size' in p


def test_verify_local_bad_manifest(tmp_path):
    assert 'cannot read' in verify_problems(verify_manifest_local(str(tmp_path)))
    (tmp_path / 'manifest.json').write_text('{"nofiles": 1}')
    assert 'not a valid manifest' in verify_problems(verify_manifest_local(str(tmp_path)))
    (tmp_path / 'manifest.json').write_text(json.dumps({'files': {'../etc/passwd': {'size': 1}}}))
    assert 'unsafe names' in verify_problems(verify_manifest_local(str(tmp_path)))
    (tmp_path / 'manifest.json').write_text(json.dumps({'files': [{'name': 'manifest.json'}]}))
    assert verify_manifest_local(str(tmp_path))['checked'] == 1


def test_verify_remote_runs_script_over_ssh(tmp_path):
    d = _images(tmp_path / 'imgs')
    out = json.dumps(verify_manifest_local(str(d)))
    run = FakeRun((0, out + '\n', ''))
    res = verify_manifest_remote(run, SshTarget('n2'), '/var/lib/haul/images/ct1')
    assert res['checked'] == 3
    call = run.calls[0]
    assert call['args'][-1] == 'python3 - /var/lib/haul/images/ct1 manifest.json'
    assert 'def verify' in call['data']


def test_verify_remote_errors():
    bad = json.dumps(dict(checked=0, missing=['a'], size_mismatch=[], sha256_mismatch=[], bad_names=[], error=None))
    with pytest.raises(HaulError) as e:
        verify_manifest_remote(FakeRun((0, bad, '')), SshTarget('n2'), '/d')
    assert e.value.msg == 'verify: images on n2:/d do not match manifest.json: 1 missing (a)'
    with pytest.raises(HaulError) as e:
        verify_manifest_remote(FakeRun((127, '', 'bash: python3: command not found\n')), SshTarget('n2'), '/d')
    assert 'python3 is not installed on n2' in e.value.msg
    with pytest.raises(HaulError) as e:
        verify_manifest_remote(FakeRun((255, '', 'ssh: connect to host n2 port 22: No route to host\n')),
                               SshTarget('n2'), '/d')
    assert e.value.msg == ('verify: destination n2 unreachable (ssh: connect to host n2 port 22: No route to host; '
                           'ssh exit 255: ssh failed)')
    with pytest.raises(HaulError) as e:
        verify_manifest_remote(FakeRun((0, 'garbage', '')), SshTarget('n2'), '/d')
    assert 'unexpected output' in e.value.msg


# ---------------------------------------------------------------------------------------------
# real rsync through a stand-in ssh that runs the "remote" command locally
# ---------------------------------------------------------------------------------------------


def _run(args, data=None, environ_update=None, **kwargs):
    env = dict(os.environ)
    env.update(environ_update or {})
    p = subprocess.run(args, input=data, capture_output=True, text=True, env=env, check=False)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture
def fake_ssh(stand_in_ssh):
    if not shutil.which('rsync'):
        pytest.skip('rsync not installed')
    return stand_in_ssh


def test_real_rsync_roundtrip(tmp_path, fake_ssh):
    src = _images(tmp_path / 'src')
    os.link(src / 'pages-1.img', src / 'hardlink.img')
    with open(src / 'sparse.img', 'wb') as f:
        f.truncate(8 << 20)
    os.chmod(src, 0o700)
    dest = tmp_path / 'far' / 'away' / 'images'
    r = RsyncRunner(_run, SshTarget('localhost', ssh_bin=fake_ssh), timeout=30)

    dry = r.sync(str(src), str(dest), dry_run=True, delete=True, mkdir_mode='0700')
    assert dry['changed'] and dry['files_transferred'] >= 4
    assert not (tmp_path / 'far').exists()  # check mode created nothing

    res = r.sync(str(src), str(dest), delete=True, mkdir_mode='0700')
    assert res['changed'] and res['files_transferred'] >= 4 and res['bytes_sent'] > 5000
    assert res['total_size'] == dry['total_size']
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o700
    assert os.stat(dest / 'hardlink.img').st_ino == os.stat(dest / 'pages-1.img').st_ino
    assert os.stat(dest / 'sparse.img').st_blocks * 512 < (1 << 20)  # still sparse
    assert verify_problems(verify_manifest_local(str(dest))) is None

    again = r.sync(str(src), str(dest), delete=True, mkdir_mode='0700')
    assert again['changed'] is False and again['files_transferred'] == 0
    assert r.sync(str(src), str(dest), dry_run=True, delete=True)['changed'] is False

    # a stray file on the destination is deleted, the files of criu_restore are kept
    (dest / 'stray.img').write_bytes(b's')
    (dest / 'restore.json').write_text('{}')
    res = r.sync(str(src), str(dest), delete=True, protect=RECEIVER_FILES)
    assert res['changed'] and not (dest / 'stray.img').exists()
    assert (dest / 'restore.json').exists()
    assert r.sync(str(src), str(dest), delete=True, protect=RECEIVER_FILES)['changed'] is False

    # remote verification through the same stand-in ssh
    vres = verify_manifest_remote(_run, r.target, str(dest))
    assert vres['checked'] == 3


def test_real_rsync_sees_a_change_within_the_same_second(tmp_path, fake_ssh):
    """A database rewrites a block of a file in place (same size) within the second its earlier
    version was copied: rsync's quick check in whole seconds calls it unchanged, and the
    destination keeps the old block (seen on the lab: PostgreSQL after a post-copy move reported
    a duplicate key). haul.live compares modification times to the nanosecond."""
    src = tmp_path / 'src'
    src.mkdir()
    data = src / 'base' / '16384'
    data.parent.mkdir()
    data.write_bytes(b'A' * 8192)
    os.utime(data, ns=(1796297261_100000000, 1796297261_100000000))
    dest = tmp_path / 'dest'
    r = RsyncRunner(_run, SshTarget('localhost', ssh_bin=fake_ssh), timeout=30)
    r.sync(str(src), str(dest))
    data.write_bytes(b'B' * 8192)
    os.utime(data, ns=(1796297261_900000000, 1796297261_900000000))  # the same second, later
    res = r.sync(str(src), str(dest))
    assert res['changed'] and (dest / 'base' / '16384').read_bytes() == b'B' * 8192


def test_real_rsync_unreachable(tmp_path):
    if not shutil.which('rsync') or not shutil.which('ssh'):
        pytest.skip('rsync or ssh not installed')
    src = _images(tmp_path / 'src')
    # a TEST-NET-1 address: nothing answers; ConnectTimeout keeps it short
    r = RsyncRunner(_run, SshTarget('192.0.2.1', connect_timeout=1), timeout=5)
    with pytest.raises(HaulError) as e:
        r.sync(str(src), '/tmp/never')
    assert e.value.msg.startswith('sync: destination 192.0.2.1 unreachable'), e.value.msg
    assert e.value.rc in (12, 255)


# --------------------------------------------------------------------------- the root filesystem's delta inside a freeze

def _tree(tmp_path):
    root = tmp_path / 'rootfs'
    (root / 'etc').mkdir(parents=True)
    (root / 'etc' / 'hostname').write_text('pc\n')
    (root / 'bin').mkdir()
    (root / 'bin' / 'app').write_bytes(b'\x7fELF')
    os.symlink('/nonexistent/target', str(root / 'bin' / 'link'))
    return root


def test_tree_state_lists_every_entry_without_following_links(tmp_path):
    from ansible_collections.haul.live.plugins.module_utils._transport import tree_state
    root = _tree(tmp_path)
    st = tree_state(str(root))
    assert sorted(st) == ['.', 'bin', 'bin/app', 'bin/link', 'etc', 'etc/hostname']
    assert stat.S_ISLNK(st['bin/link'][0])
    assert tree_state(str(tmp_path / 'missing')) is None


@pytest.mark.parametrize('change', ['content', 'chmod', 'create', 'delete', 'rename', 'xattr-free touch'])
def test_tree_state_sees_every_change(tmp_path, change):
    from ansible_collections.haul.live.plugins.module_utils._transport import tree_state
    root = _tree(tmp_path)
    before = tree_state(str(root))
    f = root / 'etc' / 'hostname'
    __import__('time').sleep(0.05)  # past the kernel's timestamp tick
    if change == 'content':
        st = f.stat()
        f.write_text('xx\n')  # same size
        os.utime(str(f), ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the mtime set back (ctime moves)
    elif change == 'chmod':
        f.chmod(0o600)
    elif change == 'create':
        (root / 'tmpfile').write_text('')
    elif change == 'delete':
        f.unlink()
    elif change == 'rename':
        f.rename(root / 'etc' / 'hostname2')
    else:
        os.utime(str(f), (1, 1))
    assert tree_state(str(root)) != before


def test_racy_recent_entries(tmp_path):
    import time as _time
    from ansible_collections.haul.live.plugins.module_utils._transport import racy, tree_state
    root = _tree(tmp_path)
    st = tree_state(str(root))
    assert racy(st, _time.time())  # just written
    assert not racy(st, _time.time() + 5)


class _FakeRsync(object):
    def __init__(self, vanished=False):
        self.calls = []
        self.target = SshTarget('dest')
        self.vanished = vanished

    def sync(self, src, dest, **kwargs):
        self.calls.append((src, dest, kwargs))
        res = {'bytes_sent': 123, 'changed': True}
        if self.vanished and kwargs.get('vanished_ok'):
            res['vanished'] = True
        return res


def _delta(tmp_path, clock_offset):
    import time as _time
    from ansible_collections.haul.live.plugins.module_utils._transport import RootfsDelta
    root = _tree(tmp_path)
    rsync = _FakeRsync()
    # the record is taken "later" than the files were written, unless clock_offset is 0 (racy)
    delta = RootfsDelta(rsync, str(root), '/dest/rootfs', clock=lambda: _time.time() + clock_offset)
    assert delta.presync(delete=True) == {'bytes_sent': 123, 'changed': True}
    assert rsync.calls == [(str(root), '/dest/rootfs', {'delete': True, 'vanished_ok': True})]
    return root, rsync, delta


def test_rootfs_delta_presync_tolerates_vanished_files_but_then_rsyncs_in_the_freeze(tmp_path):
    import time as _time
    from ansible_collections.haul.live.plugins.module_utils._transport import RootfsDelta
    root = _tree(tmp_path)
    rsync = _FakeRsync(vanished=True)
    delta = RootfsDelta(rsync, str(root), '/dest/rootfs', clock=lambda: _time.time() + 10)
    assert delta.presync(delete=True)['vanished'] is True
    assert delta.before is None
    delta.sync(delete=True)
    assert rsync.calls[-1] == (str(root), '/dest/rootfs', {'delete': True})


@pytest.mark.parametrize('vanished_ok,fails', [(True, False), (False, True)])
def test_sync_exit_24_fails_unless_vanished_files_are_allowed(tmp_path, vanished_ok, fails):
    runner = _transport.RsyncRunner(lambda argv, **kw: (24, '', 'file has vanished: "/s/y"\n'), SshTarget('dest'))
    if fails:
        with pytest.raises(HaulError) as e:
            runner.sync(str(tmp_path), '/dest', vanished_ok=vanished_ok)
        assert 'vanished' in str(e.value)
    else:
        assert runner.sync(str(tmp_path), '/dest', vanished_ok=vanished_ok)['vanished'] is True


def test_rootfs_delta_sends_nothing_when_unchanged(tmp_path):
    root, rsync, delta = _delta(tmp_path, 10)
    res = delta.sync(delete=True)
    assert res['skipped'] and res['bytes_sent'] == 0 and res['changed'] is False
    assert res['dest'] == 'root@dest:/dest/rootfs'
    assert len(rsync.calls) == 1


def test_rootfs_delta_rsyncs_a_change(tmp_path):
    root, rsync, delta = _delta(tmp_path, 10)
    (root / 'etc' / 'new').write_text('x')
    assert delta.sync(delete=True) == {'bytes_sent': 123, 'changed': True}
    assert rsync.calls[-1] == (str(root), '/dest/rootfs', {'delete': True})


def test_rootfs_delta_rsyncs_when_racy(tmp_path):
    root, rsync, delta = _delta(tmp_path, 0)  # files changed right before the record: never trusted
    assert delta.before is None
    assert delta.sync(delete=True)['bytes_sent'] == 123
    assert len(rsync.calls) == 2


def test_rootfs_delta_rsyncs_when_the_walk_fails(tmp_path):
    root, rsync, delta = _delta(tmp_path, 10)
    delta.state_fn = lambda path: None
    assert delta.sync(delete=True)['bytes_sent'] == 123


# --------------------------------------------------------------------------- ciphers

def test_preferred_ciphers_follow_the_cpu(tmp_path):
    x86 = tmp_path / 'x86'
    x86.write_text('processor\t: 0\nflags\t\t: fpu sse2 aes avx2\n')
    arm = tmp_path / 'arm'
    arm.write_text('processor\t: 0\nFeatures\t: fp asimd aes pmull sha1\n')
    plain = tmp_path / 'plain'
    plain.write_text('processor\t: 0\nflags\t\t: fpu sse2 aesni_fake\n')
    assert _transport.preferred_ciphers(str(x86)).startswith('aes128-gcm@openssh.com,')
    assert 'chacha20-poly1305@openssh.com' in _transport.preferred_ciphers(str(arm))
    assert _transport.preferred_ciphers(str(plain)) is None
    assert _transport.preferred_ciphers(str(tmp_path / 'missing')) is None


def test_ciphers_option_and_user_override():
    t = _transport.SshTarget('198.18.0.12', ciphers='aes128-gcm@openssh.com')
    assert '-o' in t.ssh_argv() and 'Ciphers=aes128-gcm@openssh.com' in t.ssh_argv()
    assert 'Ciphers=' not in ' '.join(_transport.SshTarget('198.18.0.12', ciphers=None).ssh_argv())
    # a user's Ciphers= comes first, and ssh keeps the first value it gets
    t = _transport.SshTarget('198.18.0.12', options=['Ciphers=chacha20-poly1305@openssh.com'],
                             ciphers='aes128-gcm@openssh.com')
    argv = t.ssh_argv()
    assert argv.index('Ciphers=chacha20-poly1305@openssh.com') < argv.index('Ciphers=aes128-gcm@openssh.com')


def test_a_jump_host_is_a_proxy_command_with_the_same_key_and_pinned_keys():
    t = SshTarget('198.18.0.12', key='/root/.ssh/haul live', port=2222, known_hosts='/root/.ssh/kh',
                  jump={'host': '198.18.0.13', 'port': 22})
    argv = t.ssh_argv()
    proxy = [a for a in argv if a.startswith('ProxyCommand=')]
    assert len(proxy) == 1 and argv[argv.index(proxy[0]) - 1] == '-o'
    # ssh runs it through a shell: each word quoted, the hop ends with -W to the destination
    hop = shlex.split(proxy[0][len('ProxyCommand='):])
    assert hop[0] == 'ssh' and hop[-4:] == ['-W', '%h:%p', '--', 'root@198.18.0.13']
    assert ['-i', '/root/.ssh/haul live'] == hop[1:3] and ['-p', '22'] == hop[3:5]
    for o in ('BatchMode=yes', 'StrictHostKeyChecking=yes', 'UserKnownHostsFile=/root/.ssh/kh'):
        assert o in hop
    # the destination's own port stays on the outer ssh; rsync's -e splits it back the same way
    assert ['-p', '2222'] == argv[argv.index('-p'):argv.index('-p') + 2]
    assert shlex.split(t.rsh()) == argv
    assert SshTarget('h').proxy_command() is None


@pytest.mark.parametrize('jump,why', [
    ({'host': '-oProxyCommand=x'}, "starts with '-'"),
    ({'host': 'j', 'user': 'a b'}, 'user'),
    ({'host': 'j', 'port': 70000}, "jump host's port"),
    ({'port': 22}, 'needs its host'),
])
def test_a_bad_jump_host_is_refused(jump, why):
    with pytest.raises(HaulError) as e:
        SshTarget('h', jump=jump)
    assert why in e.value.msg


def test_a_user_other_than_root_runs_every_remote_command_through_sudo():
    t = SshTarget('n2', user='haul')
    assert t.remote_argv(['python3', '-', '/a b'])[-1] == "sudo -n -- python3 - '/a b'"
    assert t.remote_argv(['python3'])[-2] == 'haul@n2'
    argv = RsyncRunner(None, t).argv('/imgs', '/var/lib/haul/images/ct1', mkdir_mode='0700')
    assert '--rsync-path=sudo -n mkdir -p -m 0700 /var/lib/haul/images/ct1 && sudo -n rsync' in argv
    assert '--rsync-path=sudo -n rsync' in RsyncRunner(None, t).argv('/a', '/b', dry_run=True)
    # root: no sudo, as before
    root = SshTarget('n2')
    assert root.sudo == [] and root.remote_argv(['true'])[-1] == 'true'
    assert '--rsync-path=mkdir -p /b && rsync' in RsyncRunner(None, root).argv('/a', '/b')
