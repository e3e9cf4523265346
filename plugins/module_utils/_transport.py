# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Moving bytes between hosts, in one place: rsync over SSH (what arrived is checked by
:mod:`_verify`, the link is measured by :mod:`_linkprobe`).

This is a private module_util: it is not part of the collection's public API.

Command lines are built by :class:`CmdBuilder`, a small builder in the spirit of
community.general's CmdRunner (named arguments, one formatter each, a fixed order), without
depending on it. Commands are run through a ``run_command`` callable with the signature of
``AnsibleModule.run_command`` (``run_command(args, data=None, environ_update=None)`` returning
``(rc, stdout, stderr)``), so that everything here can be tested without a network.

Failures raise :class:`HaulError` with step ``sync`` (or ``verify``) and a one-line cause that
names what went wrong (destination unreachable, disk full, authentication, ...), with the rsync
exit code as ``rc`` and the tail of stderr as ``stderr_tail``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import time

try:
    from shlex import quote as _quote
except ImportError:  # pragma: no cover - Python 2
    from pipes import quote as _quote

from ansible_collections.haul.live.plugins.module_utils import _validate
from ansible_collections.haul.live.plugins.module_utils._common import HaulError

PARTIAL_DIR = '.haul-partial'
STDERR_TAIL_LINES = 10
ITEMIZE_KEEP = 100
C_LOCALE = {'LC_ALL': 'C', 'LANG': 'C'}
# Files that criu_restore writes into an images directory on the destination: a later sync of the
# same images with --delete must neither delete them nor report a change for them.
RECEIVER_FILES = ('restore.json', 'restore.json.tmp', 'restore.log', 'stats-restore', 'stats-restore.img')

# ---------------------------------------------------------------------------------------------
# a small CmdRunner-like builder
# ---------------------------------------------------------------------------------------------


class ArgFormat(object):
    """Formatters: each returns a function ``value -> list of arguments``.

    A value of None always gives no arguments.
    """

    @staticmethod
    def as_bool(args_true, args_false=()):
        args_true = list(args_true) if isinstance(args_true, (list, tuple)) else [args_true]
        args_false = list(args_false) if isinstance(args_false, (list, tuple)) else [args_false]
        return lambda v: list(args_true) if v else list(args_false)

    @staticmethod
    def as_opt_val(opt):
        """``--opt VALUE`` (two arguments)."""
        return lambda v: [opt, str(v)]

    @staticmethod
    def as_opt_eq_val(opt):
        """``--opt=VALUE`` (one argument)."""
        return lambda v: ['%s=%s' % (opt, v)]

    @staticmethod
    def as_ssh_option(name):
        """``-o Name=VALUE``; a bool gives yes/no."""
        def fmt(v):
            if isinstance(v, bool):
                v = 'yes' if v else 'no'
            return ['-o', '%s=%s' % (name, v)]
        return fmt

    @staticmethod
    def as_repeated(opt=None):
        """Each item of a list, preceded by ``opt`` when given."""
        def fmt(v):
            out = []
            for item in v:
                if opt:
                    out.append(opt)
                out.append(str(item))
            return out
        return fmt

    @staticmethod
    def as_list():
        """The items of a list (or one value) as they are: positional arguments."""
        return lambda v: [str(x) for x in v] if isinstance(v, (list, tuple)) else [str(v)]


class CmdBuilder(object):
    """Builds an argument list from named values, in a fixed order.

    :param command: the executable (list or string).
    :param arg_formats: ``{name: formatter}``, formatters from :class:`ArgFormat`.
    :param order: names, in the order their arguments appear.

    ``build(**values)`` skips names whose value is None (or not given). Unknown names raise
    ValueError, so that a typo does not silently drop an option.
    """

    def __init__(self, command, arg_formats, order):
        self.command = list(command) if isinstance(command, (list, tuple)) else [command]
        self.arg_formats = dict(arg_formats)
        self.order = list(order)
        missing = [n for n in self.order if n not in self.arg_formats]
        if missing:
            raise ValueError('no formatter for %s' % ', '.join(missing))

    def build(self, **values):
        unknown = [k for k in values if k not in self.arg_formats]
        if unknown:
            raise ValueError('unknown arguments: %s' % ', '.join(sorted(unknown)))
        args = list(self.command)
        for name in self.order:
            value = values.get(name)
            if value is None:
                continue
            args.extend(self.arg_formats[name](value))
        return args


# ---------------------------------------------------------------------------------------------
# SSH
# ---------------------------------------------------------------------------------------------

_SSH_FORMATS = dict(
    options=ArgFormat.as_repeated('-o'),
    key=ArgFormat.as_opt_val('-i'),
    port=ArgFormat.as_opt_val('-p'),
    batch_mode=ArgFormat.as_ssh_option('BatchMode'),
    strict_host_key_checking=ArgFormat.as_ssh_option('StrictHostKeyChecking'),
    known_hosts=ArgFormat.as_ssh_option('UserKnownHostsFile'),
    connect_timeout=ArgFormat.as_ssh_option('ConnectTimeout'),
    server_alive_interval=ArgFormat.as_ssh_option('ServerAliveInterval'),
    server_alive_count_max=ArgFormat.as_ssh_option('ServerAliveCountMax'),
    ciphers=ArgFormat.as_ssh_option('Ciphers'),
)
# user options first: ssh keeps the first value it gets for each option, so they win
_SSH_ORDER = ('options', 'key', 'port', 'batch_mode', 'strict_host_key_checking', 'known_hosts', 'connect_timeout',
              'server_alive_interval', 'server_alive_count_max', 'ciphers')

# With AES instructions, AES-GCM runs about twice as fast as ssh's default chacha20-poly1305
# (measured on the lab: 720 vs 364 MiB/s through ssh, 428 vs 214 MiB/s through rsync). Every
# OpenSSH since 6.2 has both; chacha20 stays in the list, so nothing is refused.
AES_CIPHERS = ('aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,'
               'aes128-ctr,aes192-ctr,aes256-ctr')


def preferred_ciphers(cpuinfo='/proc/cpuinfo'):
    """The ``Ciphers`` list to ask for: AES-GCM first when this CPU has AES instructions
    (the ``aes`` flag on x86, the ``aes`` feature on arm64), else None (ssh's default)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _sep, value = line.partition(':')
                if key.strip() in ('flags', 'Features') and 'aes' in value.split():
                    return AES_CIPHERS
    except (IOError, OSError):
        pass
    return None


def jump_argspec():
    """The ``jump`` option of the modules that reach the destination over SSH (doc fragment
    ``haul.live.jump``)."""
    return dict(type='dict', options=dict(host=dict(type='str', required=True), port=dict(type='int'),
                                          user=dict(type='str', default='root')))


class SshTarget(object):
    """A destination host reached over SSH.

    :param host: host name or address (validated: no option, no space, no newline).
    :param user: remote user (default root; validated, never starts with ``-``).
    :param port: SSH port (None: ssh's default).
    :param key: path of a private key file (``-i``).
    :param options: extra ``-o`` options, each ``Key=Value``; they take precedence over the
        defaults below. Options that run a command, reroute the connection or weaken the host
        key check are refused (:func:`_validate.ssh_option_problem`).
    :param batch_mode: ``BatchMode=yes`` (never prompt).
    :param strict_host_key_checking: only ``yes``: a host key that is not in the known_hosts
        file is refused (never trust on first use).
    :param known_hosts: the known_hosts file holding the destination's pinned host keys
        (``UserKnownHostsFile``); None: ssh's default (``~/.ssh/known_hosts``).
    :param connect_timeout: ``ConnectTimeout`` in seconds.
    :param server_alive_interval: ``ServerAliveInterval`` (with ``ServerAliveCountMax=3``), so a
        host that dies during a transfer is noticed.
    :param ciphers: ``Ciphers`` list; ``auto`` (the default): :func:`preferred_ciphers`; None:
        ssh's default. A ``Ciphers=`` in ``options`` wins.
    :param user: (above) any user but root runs every remote command through ``sudo -n``
        (:attr:`sudo`): the images and root filesystems belong to root on the destination, so
        that user needs passwordless sudo there (docs/install.md).
    :param jump: a jump host, ``{'host': ..., 'port': ..., 'user': ...}`` (user default root),
        reached with the same key and known_hosts file and used only to open the connection to
        the destination (``ssh -W``, as ``ProxyCommand``: the options given here would not reach
        a ``ProxyJump`` hop). None: the destination is reached directly.

    Every command line it builds ends ssh's options with ``--`` before the destination.
    """

    def __init__(self, host, user='root', port=None, key=None, options=None, batch_mode=True,
                 strict_host_key_checking='yes', connect_timeout=10, server_alive_interval=5,
                 ssh_bin='ssh', ciphers='auto', known_hosts=None, jump=None):
        if not host:
            raise HaulError('sync', 'no destination host given')
        jump = dict(jump or {})
        if jump and not jump.get('host'):
            raise HaulError('sync', 'a jump host needs its host')
        jump_checks = [('host', jump['host'])] + ([('user', jump.get('user') or 'root')]) if jump else []
        problems = _validate.problems([('host', host)] + ([('user', user)] if user else []) + jump_checks)
        if jump and _validate.port_problem(jump.get('port') or 0):
            problems.append('the jump host\'s ' + _validate.port_problem(jump.get('port') or 0))
        for opt in options or []:
            problem = _validate.ssh_option_problem(opt)
            if problem:
                problems.append(problem)
        if strict_host_key_checking not in ('yes', True):
            problems.append('StrictHostKeyChecking=%s is refused: host keys are always checked against the pinned '
                            'known_hosts' % (strict_host_key_checking,))
        if known_hosts is not None and _validate.ssh_option_problem('UserKnownHostsFile=%s' % known_hosts):
            problems.append(_validate.ssh_option_problem('UserKnownHostsFile=%s' % known_hosts))
        if problems:
            raise HaulError('sync', '; '.join(problems))
        self.host = host
        self.user = user
        self.port = port
        self.key = key
        self.options = list(options or [])
        self.batch_mode = batch_mode
        self.strict_host_key_checking = 'yes'
        self.known_hosts = known_hosts
        self.connect_timeout = connect_timeout
        self.server_alive_interval = server_alive_interval
        self.ssh_bin = ssh_bin
        self.ciphers = preferred_ciphers() if ciphers == 'auto' else ciphers
        self.jump = jump or None
        self._builder = CmdBuilder(ssh_bin, _SSH_FORMATS, _SSH_ORDER)

    def proxy_command(self):
        """The ``ProxyCommand`` that reaches the destination through :attr:`jump` (ssh runs it
        with a shell: every word quoted), or None."""
        if not self.jump:
            return None
        hop = self._builder.build(
            key=self.key, port=self.jump.get('port') or None, batch_mode=self.batch_mode,
            strict_host_key_checking=self.strict_host_key_checking, known_hosts=self.known_hosts,
            connect_timeout=self.connect_timeout, server_alive_interval=self.server_alive_interval,
            server_alive_count_max=3 if self.server_alive_interval else None)
        login = '%s@%s' % (self.jump.get('user') or 'root', self.jump['host'])
        return ' '.join(_quote(a) for a in hop + ['-W', '%h:%p', '--', login])

    @property
    def sudo(self):
        """The remote commands' prefix: ``['sudo', '-n', '--']`` for a user other than root."""
        return ['sudo', '-n', '--'] if self.user and self.user != 'root' else []

    @property
    def login(self):
        """``user@host`` (IPv6 addresses in brackets for rsync)."""
        host = self.host
        return '%s@%s' % (self.user, host) if self.user else host

    def rsync_dest(self, path):
        host = self.host
        if ':' in host and not host.startswith('['):
            host = '[%s]' % host
        login = '%s@%s' % (self.user, host) if self.user else host
        return '%s:%s' % (login, path)

    def ssh_argv(self):
        """The ssh command and its options, without the host."""
        proxy = self.proxy_command()
        return self._builder.build(
            options=(self.options + (['ProxyCommand=' + proxy] if proxy else [])) or None,
            key=self.key,
            port=self.port,
            batch_mode=self.batch_mode,
            strict_host_key_checking=self.strict_host_key_checking,
            known_hosts=self.known_hosts,
            connect_timeout=self.connect_timeout,
            server_alive_interval=self.server_alive_interval,
            server_alive_count_max=3 if self.server_alive_interval else None,
            ciphers=self.ciphers,
        )

    def rsh(self):
        """The ssh command as one string for ``rsync -e`` (quoted the way rsync splits it).

        rsync appends ``-l USER HOST`` itself, so this one cannot end with ``--``: the user and
        the host were validated instead (neither can start with ``-``)."""
        return ' '.join(_quote(a) for a in self.ssh_argv())

    def remote_argv(self, remote_args):
        """argv running ``remote_args`` (a list, quoted for the remote shell) on the host."""
        return self.ssh_argv() + ['--', self.login, ' '.join(_quote(str(a)) for a in self.sudo + list(remote_args))]

    def control_argv(self, command):
        """argv sending a ControlMaster ``command`` (``exit``, ``check``) for this host."""
        return self.ssh_argv() + ['-O', command, '--', self.login]


# ---------------------------------------------------------------------------------------------
# rsync
# ---------------------------------------------------------------------------------------------

_RSYNC_FORMATS = dict(
    archive=ArgFormat.as_bool('--archive'),
    sparse=ArgFormat.as_bool('--sparse'),
    hard_links=ArgFormat.as_bool('--hard-links'),
    xattrs=ArgFormat.as_bool('--xattrs'),
    acls=ArgFormat.as_bool('--acls'),
    numeric_ids=ArgFormat.as_bool('--numeric-ids'),
    # rsync's quick check compares modification times in whole seconds by default: a file rewritten
    # in place (same size) within the second its earlier version was copied would be called
    # unchanged, and the destination would keep the old contents (a database's data file: seen as
    # a duplicate key in PostgreSQL after a move). -1 compares them to the nanosecond (rsync >= 3.1.3).
    modify_window=ArgFormat.as_bool('--modify-window=-1'),
    delete=ArgFormat.as_bool('--delete'),
    compress=ArgFormat.as_bool('--compress'),
    protect=lambda v: ['--filter=P /%s' % name for name in v],
    omit_dir_times=ArgFormat.as_bool('--omit-dir-times'),
    partial_dir=lambda v: ['--partial', '--partial-dir=%s' % v],
    bwlimit_kib=ArgFormat.as_opt_eq_val('--bwlimit'),
    timeout=ArgFormat.as_opt_eq_val('--timeout'),
    dry_run=ArgFormat.as_bool('--dry-run'),
    itemize=ArgFormat.as_bool('--itemize-changes'),
    stats=ArgFormat.as_bool(['--stats', '--no-human-readable']),
    rsh=ArgFormat.as_opt_val('--rsh'),
    rsync_path=ArgFormat.as_opt_eq_val('--rsync-path'),
    extra=ArgFormat.as_list(),
    src=ArgFormat.as_list(),
    dest=ArgFormat.as_list(),
)
_RSYNC_ORDER = ('archive', 'sparse', 'hard_links', 'xattrs', 'acls', 'numeric_ids', 'modify_window', 'delete', 'compress',
                'protect', 'omit_dir_times', 'partial_dir',
                'bwlimit_kib', 'timeout', 'dry_run', 'itemize', 'stats', 'rsh', 'rsync_path', 'extra',
                'src', 'dest')

RSYNC_EXIT_CODES = {
    1: 'syntax or usage error',
    2: 'protocol incompatibility',
    3: 'errors selecting input/output files or directories',
    4: 'requested action not supported',
    5: 'error starting the client-server protocol',
    6: 'daemon unable to append to its log file',
    10: 'error in socket I/O',
    11: 'error in file I/O',
    12: 'error in the rsync protocol data stream',
    13: 'errors with program diagnostics',
    14: 'error in IPC code',
    20: 'interrupted (SIGUSR1 or SIGINT)',
    21: 'some error returned by waitpid()',
    22: 'error allocating core memory buffers',
    23: 'partial transfer due to error',
    24: 'partial transfer: some source files vanished',
    25: 'the --max-delete limit stopped deletions',
    30: 'timeout in data send/receive',
    35: 'timeout waiting for daemon connection',
    255: 'ssh failed',
}

_UNREACHABLE = ('Connection timed out', 'No route to host', 'Connection refused', 'Network is unreachable',
                'Connection reset', 'Connection closed by', 'Broken pipe', 'Operation timed out',
                'Host is down', 'timed out during banner exchange')

# rsync prints these after the line that matters
_NOISE = re.compile(r'^(rsync error:|rsync: connection unexpectedly closed|rsync: \[\w+\] )')


def _tail(text, lines=STDERR_TAIL_LINES):
    return [ln for ln in (text or '').splitlines() if ln.strip()][-lines:]


def _first_line_with(lines, needles):
    for ln in lines:
        for n in needles:
            if n in ln:
                return ln.strip()
    return None


def _key_line(lines):
    """The most telling stderr line: the last one that is not rsync's closing noise."""
    for ln in reversed(lines):
        if ln.strip() and not _NOISE.match(ln.strip()):
            return ln.strip()
    return lines[-1].strip() if lines else ''


def explain_rsync_failure(rc, stderr, host=None, timeout=None):
    """A one-line cause for a failed rsync (or ssh) run, from its exit code and stderr."""
    lines = [ln for ln in (stderr or '').splitlines() if ln.strip()]
    where = host or 'the destination'
    code = 'rsync exit %s%s' % (rc, ': %s' % RSYNC_EXIT_CODES[rc] if rc in RSYNC_EXIT_CODES else '')

    def detail(line):
        return '%s; %s' % (line, code) if line else code

    line = _first_line_with(lines, ('No space left on device', 'Disk quota exceeded'))
    if line:
        return 'destination disk full on %s (%s)' % (where, detail(line))
    line = _first_line_with(lines, ('Permission denied (publickey', 'Permission denied, please try again',
                                    'Too many authentication failures'))
    if line:
        return 'SSH authentication to %s failed (%s)' % (where, detail(line))
    line = _first_line_with(lines, ('Host key verification failed', 'REMOTE HOST IDENTIFICATION HAS CHANGED'))
    if line:
        return 'SSH host key verification failed for %s (%s)' % (where, detail(line))
    line = _first_line_with(lines, ('Could not resolve hostname', 'Name or service not known'))
    if line:
        return 'cannot resolve destination host %s (%s)' % (where, detail(line))
    line = _first_line_with(lines, ('rsync: command not found', 'rsync: not found', 'rsync: No such file'))
    if line or rc == 127:
        return 'rsync is not installed on %s (%s)' % (where, detail(line or _key_line(lines)))
    line = _first_line_with(lines, _UNREACHABLE)
    if line or rc in (255, 35):
        return 'destination %s unreachable (%s)' % (where, detail(line or _key_line(lines)))
    if rc == 30:
        return 'transfer to %s stalled: no data moved for %ss (%s)' % (where, timeout or '?', detail(_key_line(lines)))
    if rc in (10, 12):
        return 'connection to %s lost (%s)' % (where, detail(_key_line(lines)))
    if rc in (23, 24):
        gone = [ln.split('vanished:', 1)[1].strip() for ln in lines if 'vanished:' in ln]
        named = '; vanished: %s%s' % (', '.join(gone[:3]), ' ...' if len(gone) > 3 else '') if gone else ''
        return 'partial transfer to %s (%s%s)' % (where, detail(_key_line(lines)), named)
    if rc == 11:
        return 'file I/O error (%s)' % detail(_key_line(lines))
    return 'rsync to %s failed (%s)' % (where, detail(_key_line(lines)))


_STATS = {
    'files': r'Number of files:\s*([\d,.\']+)',
    'files_created': r'Number of created files:\s*([\d,.\']+)',
    'files_deleted': r'Number of deleted files:\s*([\d,.\']+)',
    'files_transferred': r'Number of regular files transferred:\s*([\d,.\']+)',
    'total_size': r'Total file size:\s*([\d,.\']+)',
    'transferred_size': r'Total transferred file size:\s*([\d,.\']+)',
    'literal_data': r'Literal data:\s*([\d,.\']+)',
    'bytes_sent': r'Total bytes sent:\s*([\d,.\']+)',
    'bytes_received': r'Total bytes received:\s*([\d,.\']+)',
}

_ITEM = re.compile(r'^(?:\*deleting |[<>ch.][fdLDS][a-zA-Z.+?* ]{9} )')


def parse_stats(text):
    """Parse rsync ``--stats`` output into ints (missing lines are 0)."""
    res = {}
    for key, rx in _STATS.items():
        m = re.search(rx, text or '', re.MULTILINE)
        res[key] = int(re.sub(r'\D', '', m.group(1)) or 0) if m else 0
    return res


def parse_itemized(text):
    """The lines of ``--itemize-changes`` output that are a change (not the stats, not no-ops)."""
    items = []
    for line in (text or '').splitlines():
        if not _ITEM.match(line):
            continue
        if line[0] == '.' and not line.startswith('*') and set(line[2:11]) <= set('. '):
            continue  # listed but unchanged (only with -ii)
        items.append(line)
    return items


class RsyncRunner(object):
    """Runs rsync over SSH from a local directory to a directory on an :class:`SshTarget`.

    :param run_command: ``AnsibleModule.run_command``-like callable.
    :param target: an :class:`SshTarget`.
    :param bwlimit_kib: bandwidth limit in KiB/s (None: unlimited).
    :param timeout: rsync ``--timeout``: seconds without any I/O before giving up.
    :param rsync_bin: local rsync executable.
    :param compress: compress on the wire (``--compress``): worth it on slow links only.
    :param stream: with it, rsync runs with ``--info=progress2`` through ``stream(argv, environ_update=...)``
        (same return as ``run_command``), which reports the progress as it comes.
    """

    def __init__(self, run_command, target, bwlimit_kib=None, timeout=300, rsync_bin='rsync',
                 partial_dir=PARTIAL_DIR, compress=False, stream=None):
        self.run_command = run_command
        # run_command's stand-in that reads rsync's --info=progress2 as it comes (_progress.run_streaming)
        self.stream = stream
        self.compress = compress
        self.target = target
        self.bwlimit_kib = bwlimit_kib
        self.timeout = timeout
        self.partial_dir = partial_dir
        self.builder = CmdBuilder(rsync_bin, _RSYNC_FORMATS, _RSYNC_ORDER)

    def argv(self, src, dest, dry_run=False, delete=False, mkdir_mode=None, acls=False, extra=None, protect=None,
             fresh=False):
        """The rsync argv copying the contents of ``src`` into ``dest`` on the target.

        ``fresh``: the destination holds none of these files (a new images directory inside a
        freeze): send whole files and skip sparse detection, which costs CPU and saves nothing
        for CRIU's page images.

        ``protect``: names, relative to ``dest``, that ``delete`` must keep (``--filter='P /NAME'``);
        directory times are then not copied either (``--omit-dir-times``), so that the files the
        receiver adds do not make the next sync report a change.

        Unless ``dry_run``, the remote rsync is started as ``mkdir -p DEST && rsync`` so that
        missing parents are created (with ``mkdir_mode`` for DEST itself when given; rsync then
        gives DEST the mode of SRC).
        """
        sudo = ' '.join(self.target.sudo[:2])
        rsync_path = ('%s rsync' % sudo) if sudo else None
        if not dry_run:
            mk = ([sudo] if sudo else []) + ['mkdir', '-p']
            if mkdir_mode:
                mk += ['-m', mkdir_mode]
            rsync_path = '%s %s && %s' % (' '.join(mk), _quote(dest), rsync_path or 'rsync')
        return self.builder.build(
            archive=True, sparse=not fresh or None, hard_links=True, xattrs=True, acls=acls or None, numeric_ids=True,
            modify_window=True, delete=delete or None,
            compress=self.compress or None,
            protect=list(protect) if protect and delete else None,
            omit_dir_times=bool(protect) or None,
            partial_dir=self.partial_dir,
            bwlimit_kib=self.bwlimit_kib or None,
            timeout=self.timeout or None,
            dry_run=dry_run or None,
            itemize=True, stats=True,
            rsh=self.target.rsh(),
            rsync_path=rsync_path,
            extra=(list(extra or []) + (['--whole-file'] if fresh else [])) or None,
            src=src.rstrip('/') + '/',
            dest=self.target.rsync_dest(dest.rstrip('/') + '/'),
        )

    def sync(self, src, dest, dry_run=False, delete=False, mkdir_mode=None, acls=False, protect=None, fresh=False,
             vanished_ok=False):
        """Run rsync; return a dict of stats plus ``changed``, ``changes`` (count), ``itemized``
        (first lines), ``duration_s``, ``src``, ``dest`` and ``vanished``. Raise HaulError('sync', ...)
        on failure. With ``vanished_ok``, files that vanished while rsync read them (exit 24: the
        tree is in use, as a running container's is) do not fail it: ``vanished`` is then True.
        """
        if not os.path.isdir(src):
            raise HaulError('sync', 'source directory %s does not exist' % src)
        if dest.rstrip('/') in ('', '.'):
            raise HaulError('sync', 'refusing to sync into %r on %s' % (dest, self.target.host))
        argv = self.argv(src, dest, dry_run=dry_run, delete=delete, mkdir_mode=mkdir_mode, acls=acls,
                         protect=protect, fresh=fresh, extra=['--info=progress2'] if self.stream else None)
        start = time.time()
        run = self.stream or self.run_command
        rc, out, err = run(argv, environ_update=dict(C_LOCALE))
        duration = time.time() - start
        vanished = rc == 24 and vanished_ok
        if rc != 0 and not vanished:
            raise HaulError('sync', explain_rsync_failure(rc, err, self.target.host, self.timeout),
                            rc=rc, stderr_tail=_tail(err), src=src, dest=self.target.rsync_dest(dest))
        res = parse_stats(out)
        items = parse_itemized(out)
        res.update(
            changed=bool(items),
            changes=len(items),
            itemized=items[:ITEMIZE_KEEP],
            duration_s=round(duration, 3),
            src=src,
            dest=self.target.rsync_dest(dest),
            dry_run=bool(dry_run),
            vanished=vanished,
        )
        return res


# ---------------------------------------------------------------------------------------------
# the root filesystem's last changes, inside a freeze
# ---------------------------------------------------------------------------------------------

# An entry whose ctime or mtime is this close to (or after) the moment its state was recorded
# may change again within the same timestamp tick without any visible change of its stat: such
# a tree is never called unchanged (the "racy" case of git's index).
RACY_S = 1.0


def tree_state(root):
    """``{relative path: stat tuple}`` of ``root`` and everything below it (lstat, no symlink
    followed; ``.`` is ``root`` itself), or None when the walk fails (a vanished entry, an
    unreadable directory).

    The tuple holds every field a change of the entry moves: type and mode, inode, device,
    links, owner, size, mtime and ctime (in ns; a change of content, of metadata, of xattrs or a
    rename moves ctime, which a process cannot set back), and rdev.
    """
    def entry(st):
        return (st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid, st.st_size,
                st.st_mtime_ns, st.st_ctime_ns, st.st_rdev)

    try:
        state = {'.': entry(os.lstat(root))}
        todo = ['']
        while todo:
            rel = todo.pop()
            for de in os.scandir(os.path.join(root, rel) if rel else root):
                name = os.path.join(rel, de.name) if rel else de.name
                st = de.stat(follow_symlinks=False)
                state[name] = entry(st)
                if de.is_dir(follow_symlinks=False):
                    todo.append(name)
    except (IOError, OSError):
        return None
    return state


def racy(state, since, racy_s=RACY_S):
    """Whether an entry of ``state`` was changed less than ``racy_s`` before ``since`` (epoch s), or later."""
    limit = int((since - racy_s) * 1e9)
    return any(st[7] >= limit or st[8] >= limit for st in state.values())


class RootfsDelta(object):
    """The root filesystem's last changes, sent inside a freeze only when there are any.

    :meth:`presync` (before the freeze, the container running) records the state of every
    entry of ``src`` (:func:`tree_state`) and then rsyncs ``src`` to ``dest``. When the tree is
    found unchanged in the freeze, with no entry changed within :data:`RACY_S` of that record,
    the destination holds exactly the frozen tree (the rsync ran after the record, and nothing
    changed since), so :meth:`sync` sends nothing: it costs a local walk instead of an rsync
    (two processes, an SSH channel and rsync's own 20 ms waits for its children, about 50 ms
    even for nothing to send). Any change, or any doubt, and :meth:`sync` runs the rsync as
    before. Like rsync's own quick check, it assumes nothing else writes the destination's copy.
    """

    def __init__(self, rsync, src, dest, clock=time.time, state_fn=tree_state):
        self.rsync = rsync
        self.src = src
        self.dest = dest
        self.clock = clock
        self.state_fn = state_fn
        self.before = None

    def presync(self, **kwargs):
        """Record the tree, then rsync it (``kwargs`` go to :meth:`RsyncRunner.sync`); returns its result.

        The container runs meanwhile: files that vanish under rsync (a service's temporary files)
        are no failure here, but the record is then worthless and the freeze runs the full rsync."""
        taken = self.clock()
        state = self.state_fn(self.src)
        res = self.rsync.sync(self.src, self.dest, vanished_ok=True, **kwargs)
        usable = state is not None and not res.get('vanished') and not racy(state, taken)
        self.before = state if usable else None
        return res

    def unchanged(self):
        """Whether the tree is as :meth:`presync` recorded it (False when nothing was recorded)."""
        return self.before is not None and self.state_fn(self.src) == self.before

    def sync(self, **kwargs):
        """Inside the freeze: nothing when :meth:`unchanged`, else the rsync (``kwargs`` as for it)."""
        start = self.clock()
        if self.unchanged():
            return dict(parse_stats(''), changed=False, changes=0, itemized=[], skipped='unchanged since the pre-sync',
                        duration_s=round(self.clock() - start, 3), src=self.src,
                        dest=self.rsync.target.rsync_dest(self.dest), dry_run=False)
        return self.rsync.sync(self.src, self.dest, **kwargs)
