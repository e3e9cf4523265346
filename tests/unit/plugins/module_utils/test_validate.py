# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.haul.live.plugins.module_utils import _validate as v
from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.module_utils._transport import SshTarget

# (value, what the message must say)
HOSTILE_WORDS = [
    ('a\nb', 'newline'),
    ('a\rb', 'newline'),
    ('ct1\n', 'newline'),
    ('a b', 'space'),
    ('a\tb', 'space'),
    ('-oProxyCommand=x', "starts with '-'"),
    ('-rf', "starts with '-'"),
    ('..', "'..'"),
    ('.', "'.'"),
    ('a..b', "'..'"),
    ('../etc', "'/'"),
    ('a/b', "'/'"),
    ('/etc', "'/'"),
    ('', 'empty'),
    ('x' * 200, 'longer than'),
    (u'caf\u00e9', 'not ASCII'),
    (u'\u0441t1', 'not ASCII'),  # a Cyrillic 's'
    ('a\x00b', 'NUL'),
    ('a\x1bb', 'control character'),
    ('.hidden', 'pattern'),
    ('_x', 'pattern'),
    ('a;b', 'pattern'),
    ('a$(id)', 'pattern'),
    ("a'b", 'pattern'),
    (5, 'not a string'),
    (None, 'not a string'),
]


@pytest.mark.parametrize('value,why', HOSTILE_WORDS)
def test_hostile_names_are_refused_with_a_clear_message(value, why):
    msg = v.name_problem(value)
    assert msg is not None
    assert msg.startswith('container name ')
    assert ' is not valid: ' in msg
    assert why in msg
    assert '\n' not in msg  # one line, the newline is shown escaped


@pytest.mark.parametrize('value', ['ct1', 'web-1', 'a', 'A.b_c-9', 'x' * 63, '1ct', 'fa1'])
def test_good_names(value):
    assert v.name_problem(value) is None


def test_name_message_quotes_and_escapes():
    assert v.name_problem('a b') == ("container name 'a b' is not valid: it contains a space; use 1 to 63 of "
                                     "A-Z a-z 0-9 _ . -, starting with a letter or digit")
    assert "'a\\nb'" in v.name_problem('a\nb')
    assert v.name_problem('x' * 64).endswith('digit')
    assert '...' in v.name_problem('x' * 200)  # long values are cut in the message


@pytest.mark.parametrize('value', ['a\nb', 'a b', '-oProxyCommand=x', '..', '', 'Root', 'x' * 33, u'r\u00f6ot',
                                   'a/b', '1root', 'ro.ot', 'a@b'])
def test_bad_users(value):
    msg = v.user_problem(value)
    assert msg and msg.startswith('user ')


@pytest.mark.parametrize('value', ['root', 'haul', '_svc', 'haul-mig_1', 'a' * 32])
def test_good_users(value):
    assert v.user_problem(value) is None


@pytest.mark.parametrize('value', ['a\nb', 'a b', '-x', '..', '', 'a/b', 'x' * 129, u'\u00e9', 'a..b', 'id;rm'])
def test_bad_ids(value):
    msg = v.id_problem(value)
    assert msg and msg.startswith('migration id ')


@pytest.mark.parametrize('value', ['20261130T170256123456', 'refused-1', 'a', 'x' * 128, 'm.1_2-3'])
def test_good_ids(value):
    assert v.id_problem(value) is None


@pytest.mark.parametrize('value,why', [
    ('haul/../etc', "'..' component"),
    ('../haul/x', "'..' component"),
    ('haul/./x', "'.' component"),
    ('haul//x', 'empty component'),
    ('haul/x/', 'empty component'),
    ('/etc/passwd', 'below /sys/fs/cgroup/'),
    ('/', 'below /sys/fs/cgroup/'),
    ('/sys/fs/cgroup/../x', "'..' component"),
    ('haul/a b', 'space'),
    ('haul/a\nb', 'newline'),
    ('-haul', "starts with '-'"),
    ('haul/-x', 'pattern'),
    ('', 'empty'),
    (u'haul/\u00e9', 'not ASCII'),
])
def test_bad_cgroups(value, why):
    msg = v.cgroup_problem(value)
    assert msg and msg.startswith('cgroup path ') and why in msg


@pytest.mark.parametrize('value', ['haul', 'haul/ct1', 'haul-lab/node1/haul/ct1', '/sys/fs/cgroup/unified/haul/ct1',
                                   '/sys/fs/cgroup/unified', '/sys/fs/cgroup', 'system.slice/user@1000.service',
                                   '/sys/fs/cgroup/freezer/haul/x'])
def test_good_cgroups(value):
    assert v.cgroup_problem(value) is None


@pytest.mark.parametrize('value', ['-oProxyCommand=x', 'a b', 'h\nx', '', '999.1.1.1', '1.2.3', 'fe80::zz',
                                   'a..b', 'host-.x', 'x' * 254, '[1.2.3.4', 'h/x', 'h;x', u'h\u00e9'])
def test_bad_hosts(value):
    msg = v.host_problem(value)
    assert msg and msg.startswith('host ')


@pytest.mark.parametrize('value', ['198.18.0.12', 'node2', 'node2.example.com', 'fe80::1', '[fe80::1]', '::1',
                                   'my_host', '0.0.0.0', '::'])
def test_good_hosts(value):
    assert v.host_problem(value) is None


@pytest.mark.parametrize('option,why', [
    ('ProxyCommand=nc %h %p', 'ProxyCommand runs a command'),
    ('proxycommand=nc %h %p', 'runs a command'),
    ('ProxyJump=evil', 'ProxyJump'),
    ('LocalCommand=touch /tmp/x', 'LocalCommand'),
    ('PermitLocalCommand=yes', 'PermitLocalCommand'),
    ('KnownHostsCommand=/bin/true', 'KnownHostsCommand'),
    ('RemoteCommand=id', 'RemoteCommand'),
    ('Include=/tmp/evil.conf', 'Include'),
    ('StrictHostKeyChecking=no', 'StrictHostKeyChecking=yes only'),
    ('StrictHostKeyChecking=off', 'StrictHostKeyChecking=yes only'),
    ('StrictHostKeyChecking=accept-new', 'StrictHostKeyChecking=yes only'),
    ('stricthostkeychecking="no"', 'StrictHostKeyChecking=yes only'),
    ('StrictHostKeyChecking=ask', 'StrictHostKeyChecking=yes only'),
    ('UserKnownHostsFile=/dev/null', 'turns off the host key check'),
    ('UserKnownHostsFile=/root/k /dev/null', 'turns off the host key check'),
    ('UserKnownHostsFile=none', 'turns off the host key check'),
    ('GlobalKnownHostsFile=/dev/null', 'turns off the host key check'),
    ('ConnectTimeout=5\nProxyCommand=x', 'newline'),
    ('ProxyCommand nc=x', 'Key=Value'),
    ('-v', 'Key=Value'),
    ('-oProxyCommand=x', 'Key=Value'),
    ('Ciphers', 'Key=Value'),
    ('=x', 'Key=Value'),
])
def test_dangerous_ssh_options_are_refused_naming_the_option(option, why):
    msg = v.ssh_option_problem(option)
    assert msg and msg.startswith('ssh option ') and why in msg
    assert '\n' not in msg


@pytest.mark.parametrize('option', ['ConnectTimeout=5', 'StrictHostKeyChecking=yes', 'Ciphers=aes128-ctr',
                                    'UserKnownHostsFile=/root/.ssh/haul-live-ct1.known_hosts', 'ControlPath=/tmp/x/cm',
                                    'ControlMaster=auto', 'Compression=yes', 'LogLevel=ERROR'])
def test_safe_ssh_options(option):
    assert v.ssh_option_problem(option) is None


def test_problem_of_lists_and_unknown_kind():
    assert v.problem_of('name', ['a', 'b']) is None
    assert 'newline' in v.problem_of('name', ['a', 'b\nc'])
    with pytest.raises(ValueError):
        v.problem_of('nope', 'x')


def test_problems_labels():
    assert v.problems([('name', 'ok'), ('user', 'root')]) == []
    out = v.problems({'haul_container': ('name', 'a b'), 'haul_source': ('host', 'node1')})
    assert out == ["haul_container: container name 'a b' is not valid: it contains a space; use 1 to 63 of "
                   "A-Z a-z 0-9 _ . -, starting with a letter or digit"]


class FakeModule(object):
    def __init__(self, params):
        self.params = params
        self.failed = None

    def fail_json(self, **kw):
        self.failed = kw
        raise SystemExit(1)


def test_check_module_fails_before_anything_with_all_problems():
    m = FakeModule({'name': 'a\nb', 'cgroup': 'haul/ok', 'dest_user': '-oProxyCommand=x', 'handoff': {'id': '..'},
                    'ssh_options': ['ConnectTimeout=3', 'ProxyJump=x'], 'dest_host': None})
    with pytest.raises(SystemExit):
        v.check_module(m, name='name', cgroup='cgroup', dest_user='user', dest_host='host',
                       ssh_options='ssh_option', **{'handoff.id': 'id', 'handoff.lazy.address': 'host'})
    msg = m.failed['msg']
    assert m.failed['failed_step'] == 'input'
    assert msg.startswith('input: ')
    assert "option name: container name 'a\\nb' is not valid: it contains a newline" in msg
    assert "option dest_user: user '-oProxyCommand=x' is not valid: it starts with '-'" in msg
    assert "option handoff.id: migration id '..' is not valid" in msg
    assert "ssh option 'ProxyJump=x' is refused" in msg
    assert 'haul/ok' not in msg


def test_check_module_passes_good_input():
    m = FakeModule({'name': 'ct1', 'cgroup': 'haul/ct1', 'handoff': None})
    v.check_module(m, name='name', cgroup='cgroup', **{'handoff.id': 'id'})
    assert m.failed is None


# ---------------------------------------------------------------------------------------------
# the SSH command lines
# ---------------------------------------------------------------------------------------------

def test_ssh_target_refuses_hostile_user_host_and_options():
    with pytest.raises(HaulError) as e:
        SshTarget('198.18.0.12', user='-oProxyCommand=touch /tmp/pwned')
    assert "user '-oProxyCommand=touch /tmp/pwned' is not valid: it starts with '-'" in e.value.msg
    with pytest.raises(HaulError) as e:
        SshTarget('-oProxyCommand=x')
    assert e.value.msg.startswith('sync: host ')
    with pytest.raises(HaulError) as e:
        SshTarget('n2', options=['ProxyCommand=nc %h %p'])
    assert 'ProxyCommand' in e.value.msg and 'refused' in e.value.msg
    with pytest.raises(HaulError):
        SshTarget('n2', strict_host_key_checking='accept-new')
    with pytest.raises(HaulError):
        SshTarget('n2', known_hosts='/dev/null')


def test_ssh_argv_pins_host_keys_and_ends_options():
    t = SshTarget('198.18.0.12', key='/k', known_hosts='/root/.ssh/haul-live-ct1.known_hosts')
    argv = t.remote_argv(['true'])
    assert 'StrictHostKeyChecking=yes' in argv
    assert 'StrictHostKeyChecking=accept-new' not in argv
    assert 'UserKnownHostsFile=/root/.ssh/haul-live-ct1.known_hosts' in argv
    assert argv[-3:] == ['--', 'root@198.18.0.12', 'true']
    assert t.control_argv('exit')[-4:] == ['-O', 'exit', '--', 'root@198.18.0.12']
    # rsync appends "-l USER HOST" itself: its rsh has no "--", the user and host were validated
    assert '--' not in t.ssh_argv()


@pytest.mark.parametrize('value', ['198.18.0.11', '198.18.0.0/24', 'fe80::/64', 'node1'])
def test_good_from(value):
    assert v.ssh_from_problem(value) is None


@pytest.mark.parametrize('value', ['198.18.0.11",command="id', '1.2.3.4/99', 'a b', '-x', '*', '', 'a\nb'])
def test_bad_from(value):
    msg = v.ssh_from_problem(value)
    assert msg and msg.startswith('from= address ')


# numbers as a survey or -e gives them (text), or as YAML does (int, float)
@pytest.mark.parametrize('kind,value', [
    ('count', 0), ('count', '2048'), ('count', ' 12 '), ('count', 3.0),
    ('port', 0), ('port', '8443'), ('port', 65535),
    ('amount', 0), ('amount', '117.5'), ('amount', 291),
    ('interval', '0.5'), ('interval', 5), ('interval', '1e-1'),
    ('sample_ms', 1), ('sample_ms', '2000'), ('sample_ms', v.SAMPLE_MS_MAX),
])
def test_good_numbers(kind, value):
    assert v.problem_of(kind, value) is None


@pytest.mark.parametrize('kind,value,why', [
    ('count', '2M', 'no number'), ('count', '', 'no number'), ('count', True, 'no number'),
    ('count', None, 'no number'), ('count', '-1', 'too small'), ('count', '1.5', 'not a whole number'),
    ('count', 'nan', 'no number'),
    ('port', '65536', 'too large'), ('port', 'http', 'no number'), ('port', 80.5, 'not a whole number'),
    ('amount', '-0.1', 'too small'), ('amount', 'inf', 'no number'), ('amount', 'fast', 'no number'),
    ('interval', 0, 'too small'), ('interval', '-5', 'too small'), ('interval', '5s', 'no number'),
    ('sample_ms', 0, 'too small'), ('sample_ms', '60001', 'too large'), ('sample_ms', '2s', 'no number'),
    ('sample_ms', '1.5', 'not a whole number'),
])
def test_bad_numbers(kind, value, why):
    msg = v.problem_of(kind, value)
    assert msg and why in msg
    assert msg.startswith(v.KINDS[kind] + ' ')
    assert v.problems({'haul_x': (kind, value)}) == ['haul_x: ' + msg]
