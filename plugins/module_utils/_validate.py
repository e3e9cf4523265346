# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What haul.live accepts as a name, a user, an id, a cgroup path, a host or an ssh option: one
strict pattern per kind, in one place.

This is a private module_util: it is not part of the collection's public API.

These values end up in file names (``images_root/NAME``, ``/root/.ssh/haul-live-NAME``), in cgroup
paths, in authorized_keys lines (``... haul.live NAME ID``) and on ssh command lines: a newline, a
space, a leading ``-``, a ``/`` or a ``..`` in one of them is an injection. Every check here
returns None for a valid value, else one sentence that names the kind, quotes the value and says
what is wrong with it ("container name 'a b' is not valid: it contains a space; ...").

The modules call :func:`check_module` right after they parse their options; the playbooks and
roles call the same checks through the ``haul.live.input_problems`` filter, so both refuse the
same inputs, before anything is touched.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import re

try:
    import ipaddress
except ImportError:  # pragma: no cover - Python 2 without the backport
    ipaddress = None

try:
    string_types = (str, unicode)  # noqa: F821 pylint: disable=undefined-variable
except NameError:
    string_types = (str,)

NAME_MAX = 63
USER_MAX = 32
ID_MAX = 128
CGROUP_COMPONENT_MAX = 255
HOST_MAX = 253

# A container name: a file name and a cgroup component, one word in an authorized_keys comment.
NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,%d}\Z' % (NAME_MAX - 1))
# A login name (POSIX portable, as useradd takes them by default).
USER_RE = re.compile(r'^[a-z_][a-z0-9_-]{0,%d}\Z' % (USER_MAX - 1))
# A migration or handoff id (the role's are like 20261130T170256123456).
ID_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,%d}\Z' % (ID_MAX - 1))
# One component of a cgroup path (systemd's names have '@', ':' and '\x2d'-free '-').
CGROUP_COMPONENT_RE = re.compile(r'^[A-Za-z0-9_@][A-Za-z0-9_.@:+-]{0,%d}\Z' % (CGROUP_COMPONENT_MAX - 1))
# Absolute cgroup paths are accepted below this prefix only.
CGROUP_ROOT = '/sys/fs/cgroup/'
# One DNS label (underscores allowed, as inventories have them).
HOST_LABEL_RE = re.compile(r'^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\Z')

# The longest measurement sample, in ms (container_info's cpu_sample_ms).
SAMPLE_MS_MAX = 60000

KINDS = {
    'name': 'container name',
    'user': 'user',
    'id': 'migration id',
    'cgroup': 'cgroup path',
    'host': 'host',
    'ssh_option': 'ssh option',
    'from': 'from= address',
    'count': 'whole number',
    'port': 'port',
    'amount': 'number',
    'interval': 'interval',
    'sample_ms': 'sample length',
}

_RULES = {
    'name': "use 1 to %d of A-Z a-z 0-9 _ . -, starting with a letter or digit" % NAME_MAX,
    'user': "use 1 to %d of a-z 0-9 _ -, starting with a letter or _" % USER_MAX,
    'id': "use 1 to %d of A-Z a-z 0-9 _ . -, starting with a letter or digit" % ID_MAX,
    'cgroup': ("a relative path (haul/NAME) or one below %s, whose components use A-Z a-z 0-9 _ . @ : + -, "
               "none of them '.' or '..'" % CGROUP_ROOT),
    'host': 'a host name (letters, digits, -, _ and dots) or an IPv4 or IPv6 address',
    'from': 'a host name, an IP address or a network (ADDRESS/PREFIX)',
    'count': 'give 0 or a whole number above it, such as 2048',
    'port': 'give a TCP port, 1 to 65535 (0 where the default is meant)',
    'amount': 'give 0 or a number above it, such as 117.5',
    'interval': 'give a number of seconds above 0, such as 0.5 or 5',
    'sample_ms': 'give a whole number of milliseconds from 1 to %d, such as 2000' % SAMPLE_MS_MAX,
}

# ssh options refused whatever their value: each runs a command, or reroutes the connection.
SSH_FORBIDDEN = ('proxycommand', 'proxyjump', 'localcommand', 'permitlocalcommand', 'knownhostscommand',
                 'remotecommand', 'include', 'match', 'host')
SSH_OPTION_KEY_RE = re.compile(r'^[A-Za-z][A-Za-z0-9]*\Z')


def _show(value):
    """The value as it appears in a message: quoted, with control characters escaped."""
    text = value if isinstance(value, string_types) else str(value)
    if len(text) > 80:
        text = text[:77] + '...'
    shown = repr(text)
    if shown.startswith('u'):  # pragma: no cover - Python 2
        shown = shown[1:]
    return shown


def _common_problem(value, max_len):
    """The first problem every kind shares: not a string, empty, a control character, a space,
    a leading '-', a character that is not ASCII, longer than ``max_len``."""
    if not isinstance(value, string_types):
        return 'it is a %s, not a string' % type(value).__name__
    if value == '':
        return 'it is empty'
    if '\n' in value or '\r' in value:
        return 'it contains a newline'
    if '\x00' in value:
        return 'it contains a NUL byte'
    if value.startswith('-'):
        return "it starts with '-' (it would be read as an option)"
    if ' ' in value or '\t' in value:
        return 'it contains a space'
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return 'it contains a control character'
    if any(ord(c) > 127 for c in value):
        return 'it contains a character that is not ASCII'
    if max_len and len(value) > max_len:
        return 'it is longer than %d characters' % max_len
    return None


def _word_problem(value, regex, max_len):
    problem = _common_problem(value, max_len)
    if problem:
        return problem
    if '/' in value:
        return "it contains '/'"
    if value in ('.', '..'):
        return 'it is %r' % value
    if '..' in value:
        return "it contains '..'"
    if not regex.match(value):
        return 'it does not match the pattern'
    return None


def _message(kind, value, problem):
    rule = _RULES.get(kind)
    return '%s %s is not valid: %s%s' % (KINDS[kind], _show(value), problem, '; %s' % rule if rule else '')


def name_problem(value):
    """None when ``value`` is a valid container name, else a sentence saying why not."""
    problem = _word_problem(value, NAME_RE, NAME_MAX)
    return _message('name', value, problem) if problem else None


def user_problem(value):
    """None when ``value`` is a valid remote user, else a sentence saying why not."""
    problem = _word_problem(value, USER_RE, USER_MAX)
    return _message('user', value, problem) if problem else None


def id_problem(value):
    """None when ``value`` is a valid migration or handoff id, else a sentence saying why not."""
    problem = _word_problem(value, ID_RE, ID_MAX)
    return _message('id', value, problem) if problem else None


def cgroup_problem(value):
    """None when ``value`` is a valid cgroup path (relative, or absolute below /sys/fs/cgroup/),
    else a sentence saying why not."""
    problem = _common_problem(value, 4096)
    if not problem:
        rel = value
        if value == CGROUP_ROOT.rstrip('/'):
            return None  # the root of the hierarchy: the modules refuse it themselves, clearly
        if value.startswith('/'):
            if not value.startswith(CGROUP_ROOT):
                problem = 'an absolute path must be below %s' % CGROUP_ROOT
            rel = value[len(CGROUP_ROOT):]
        if not problem:
            for comp in rel.split('/'):
                if comp == '':
                    problem = "it has an empty component ('//' or a '/' at an end)"
                elif comp in ('.', '..'):
                    problem = 'it has a %r component' % comp
                elif not CGROUP_COMPONENT_RE.match(comp):
                    problem = 'its component %s does not match the pattern' % _show(comp)
                if problem:
                    break
    return _message('cgroup', value, problem) if problem else None


def host_problem(value):
    """None when ``value`` is a valid host name or IP address (IPv6 possibly in brackets),
    else a sentence saying why not."""
    problem = _common_problem(value, HOST_MAX + 2)
    if not problem:
        addr = value[1:-1] if value.startswith('[') and value.endswith(']') else value
        if ipaddress is not None and (':' in addr or addr.replace('.', '').isdigit()):
            try:
                ipaddress.ip_address(addr)
            except ValueError:
                problem = 'it is not an IP address'
        elif len(value) > HOST_MAX:
            problem = 'it is longer than %d characters' % HOST_MAX
        elif not all(HOST_LABEL_RE.match(label) for label in value.split('.')):
            problem = 'it does not match the pattern'
    return _message('host', value, problem) if problem else None


def ssh_from_problem(value):
    """None when ``value`` can go in an authorized_keys ``from="..."``: a host name, an IP address or
    a network (``198.18.0.0/24``); else a sentence saying why not."""
    if isinstance(value, string_types) and '/' in value and not _common_problem(value, 64):
        try:
            ipaddress.ip_network(value, strict=False)
            return None
        except (ValueError, AttributeError):
            return _message('from', value, 'it is not a network (ADDRESS/PREFIX)')
    res = host_problem(value)
    return res.replace(KINDS['host'], KINDS['from'], 1) if res else None


def _ssh_value(value):
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in ('"', "'"):
        value = value[1:-1]
    return value


def ssh_option_problem(option):
    """None when ``option`` (``Key=Value``, given to ssh as ``-o Key=Value``) is allowed, else a
    sentence that names the option and why it is refused.

    Refused: anything that is not one ``Key=Value``, any control character, options that run a
    command or reroute the connection (:data:`SSH_FORBIDDEN`), and anything that weakens the
    host key check (``StrictHostKeyChecking`` other than yes, ``UserKnownHostsFile``
    /dev/null or none, ``GlobalKnownHostsFile`` /dev/null or none).
    """
    if not isinstance(option, string_types):
        return 'ssh option %s is not valid: it is a %s, not a string' % (_show(option), type(option).__name__)
    if any(ord(c) < 32 or ord(c) == 127 for c in option):
        what = 'a newline' if ('\n' in option or '\r' in option) else 'a control character'
        return 'ssh option %s is refused: it contains %s' % (_show(option), what)
    key, sep, value = option.partition('=')
    key = key.strip()
    if not sep or not SSH_OPTION_KEY_RE.match(key):
        return 'ssh option %s is not valid: it must be of the form Key=Value' % _show(option)
    lkey = key.lower()
    val = _ssh_value(value)
    if lkey in SSH_FORBIDDEN:
        return ('ssh option %s is refused: %s runs a command or reroutes the connection, which haul.live never '
                'allows' % (_show(option), key))
    if lkey == 'stricthostkeychecking' and val.lower() not in ('yes', 'true'):
        return ('ssh option %s is refused: haul.live checks host keys strictly against the pinned '
                'known_hosts (StrictHostKeyChecking=yes only)' % _show(option))
    if lkey in ('userknownhostsfile', 'globalknownhostsfile'):
        files = val.split()
        if not files or any(f in ('/dev/null', 'none') or f.endswith('/null') for f in files):
            return ('ssh option %s is refused: it turns off the host key check (%s must name a real '
                    'known_hosts file)' % (_show(option), key))
    return None


def _number(value):
    """``value`` (an int, a float or their text, as a survey or ``-e`` gives it) as a number,
    else None: a boolean, an empty text, 'nan' or 'inf' are no number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = value
    elif isinstance(value, string_types) and value.strip():
        text = value.strip()
        try:
            number = int(text) if text.lstrip('+-').isdigit() else float(text)
        except ValueError:
            return None
    else:
        return None
    if isinstance(number, float) and (math.isnan(number) or math.isinf(number)):
        return None
    return number


def _number_problem(kind, value, whole, low, high=None, low_included=True):
    number = _number(value)
    if number is None:
        problem = 'it is no number'
    elif whole and number != int(number):
        problem = 'it is not a whole number'
    elif number < low or (number == low and not low_included):
        problem = 'it is too small'
    elif high is not None and number > high:
        problem = 'it is too large'
    else:
        return None
    return _message(kind, value, problem)


def count_problem(value):
    """None when ``value`` is a whole number >= 0 (or its text), else a sentence."""
    return _number_problem('count', value, True, 0)


def port_problem(value):
    """None when ``value`` is 0 (the default port) or a TCP port, else a sentence."""
    return _number_problem('port', value, True, 0, 65535)


def amount_problem(value):
    """None when ``value`` is a number >= 0 (or its text), else a sentence."""
    return _number_problem('amount', value, False, 0)


def interval_problem(value):
    """None when ``value`` is a number of seconds above 0 (or its text), else a sentence."""
    return _number_problem('interval', value, False, 0, low_included=False)


def sample_ms_problem(value):
    """None when ``value`` is a whole number of milliseconds from 1 to :data:`SAMPLE_MS_MAX`."""
    return _number_problem('sample_ms', value, True, 1, SAMPLE_MS_MAX)


CHECKS = {
    'name': name_problem,
    'user': user_problem,
    'id': id_problem,
    'cgroup': cgroup_problem,
    'host': host_problem,
    'ssh_option': ssh_option_problem,
    'from': ssh_from_problem,
    'count': count_problem,
    'port': port_problem,
    'amount': amount_problem,
    'interval': interval_problem,
    'sample_ms': sample_ms_problem,
}


def problem_of(kind, value):
    """None when ``value`` is valid for ``kind`` (a key of :data:`CHECKS`), else a sentence.

    A list is checked item by item (the first bad item's sentence)."""
    if kind not in CHECKS:
        raise ValueError('unknown kind %r (one of %s)' % (kind, ', '.join(sorted(CHECKS))))
    if isinstance(value, (list, tuple)):
        for item in value:
            res = CHECKS[kind](item)
            if res:
                return res
        return None
    return CHECKS[kind](value)


def problems(checks):
    """Sentences for every bad value of ``checks``, a list of ``(kind, value)`` (or a dict
    ``{label: (kind, value)}``, whose label then starts each sentence)."""
    out = []
    items = checks.items() if isinstance(checks, dict) else ((None, c) for c in checks)
    for label, (kind, value) in items:
        res = problem_of(kind, value)
        if res:
            out.append('%s: %s' % (label, res) if label else res)
    return out


def _lookup(params, dotted):
    value = params
    for part in dotted.split('.'):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def param_problems(params, kinds):
    """Sentences for every bad option of a module: ``kinds`` maps option names (``a.b`` for a
    suboption) to kinds; options that are None are skipped."""
    out = []
    for option in sorted(kinds):
        value = _lookup(params, option)
        if value is None:
            continue
        res = problem_of(kinds[option], value)
        if res:
            out.append('option %s: %s' % (option, res))
    return out


def check_module(module, step='input', **kinds):
    """Fail ``module`` (an AnsibleModule) when one of its options is not valid, before it does
    anything: ``check_module(module, name='name', cgroup='cgroup', **{'handoff.id': 'id'})``.

    The message is ``input: option name: container name 'a b' is not valid: ...``, with
    ``failed_step`` set to ``step``."""
    found = param_problems(module.params, kinds)
    if found:
        module.fail_json(msg='%s: %s' % (step, ' | '.join(found)), failed_step=step)
