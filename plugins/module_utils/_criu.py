# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The one place where haul.live talks to CRIU.

This is a private module_util: it is not part of the collection's public API.

CRIU is driven through pycriu's RPC (``criu swrk``), never by parsing the
output of ``criu dump``. The only CLI call is ``criu check --feature NAME``
for kernel features that the RPC ``FEATURE_CHECK`` request does not cover.

Main pieces:

* :func:`find_criu`, :func:`import_pycriu`: locate the binary and the Python
  bindings, with errors that name the packages to install.
* :func:`parse_version`, :func:`compare_versions`, :func:`format_version`.
* :class:`CriuOptions`: a plain-Python description of one CRIU request's
  options (dump, pre-dump, lazy dump, restore). :meth:`CriuOptions.apply`
  copies it onto a ``pycriu.rpc.criu_opts`` message (or any object with the
  same attributes, which is how the unit tests run without pycriu).
* :class:`CriuSession`: one images directory, one CRIU binary; ``dump()``,
  ``pre_dump()``, ``restore()``, ``version()``, ``check_features()``,
  ``cpuinfo_dump()``, ``cpuinfo_check()``. Every CRIU failure becomes a
  :class:`HaulError` whose cause is CRIU's error plus the most telling
  ``Error`` line of the CRIU log (never the whole log), with ``log`` = the log
  path so that the module result carries the log tail.

Design for the next steps (pre-copy, post-copy):

* pre-dump rounds: ``CriuOptions(track_mem=True, parent_img='../round1',
  pre_dump_mode='splice')`` with ``CriuSession.pre_dump()``; the final dump
  passes ``parent_img`` and ``track_mem`` too.
* page server: ``page_server={'address':..., 'port':...}`` plus the ``tls_*``
  options send pages to a remote ``criu page-server``.
* lazy dump: ``lazy_pages=True`` with ``page_server`` (address to listen on)
  and ``status_fd``; :meth:`CriuSession.dump_lazy_start` runs the dump in the
  background and returns once CRIU writes its readiness byte on the status fd.
  Tried by hand on the lab (64 MiB container, node3 -> node2): ready after
  75 ms; then ``criu lazy-pages --page-server --status-fd`` on the destination
  and ``restore()`` with ``CriuOptions(lazy_pages=True, rst_sibling=True, ...)``:
  restored after 83 ms, every page moved after 0.7 s. CRIU's status fd is a
  descriptor of the RPC client: CRIU opens it through /proc/<client>/fd/<n>.
  The lazy dump's stats-dump has a bogus frozen_time (seen: 3390 s).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import re
import select
import shutil
import subprocess
import time

from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.module_utils import _network

MIN_CRIU_VERSION = (4, 0, 0)
PACKAGE_HINT = 'install criu >= 4.0 and python3-pycriu (python3-criu on Fedora/RHEL)'

# Where criu lives when /usr/sbin is not in PATH (non-login SSH shells).
CRIU_SEARCH_PATHS = ('/usr/sbin/criu', '/usr/local/sbin/criu', '/sbin/criu', '/usr/bin/criu',
                     '/usr/local/bin/criu')

LOG_LEVEL = 4
LOG_NAMES = {
    'dump': 'dump.log',
    'pre-dump': 'pre-dump.log',
    'restore': 'restore.log',
    'cpuinfo-dump': 'cpuinfo-dump.log',
    'cpuinfo-check': 'cpuinfo-check.log',
}

NETWORK_LOCKS = ('nftables', 'iptables', 'skip')
CGROUP_MODES = ('soft', 'full', 'strict', 'ignore', 'none', 'props', 'default')
PRE_DUMP_MODES = ('splice', 'read')

# Kernel features asked with `criu check --feature NAME`; key in our result -> CRIU name.
CLI_FEATURES = (
    ('mem_dirty_track', 'mem_dirty_track'),
    ('uffd', 'uffd'),
    ('uffd_noncoop', 'uffd-noncoop'),
    ('timens', 'timens'),
    ('network_lock_nftables', 'network_lock_nftables'),
    ('tcp_half_closed', 'tcp_half_closed'),
    ('cgroupns', 'cgroupns'),
    ('clone3_set_tid', 'clone3_set_tid'),
    ('pidfd_store', 'pidfd_store'),
    ('userns', 'userns'),
    ('tun', 'tun'),
    ('ns_pid', 'ns_pid'),
    ('external_net_ns', 'external_net_ns'),
    ('seccomp_filters', 'seccomp_filters'),
    ('memfd_hugetlb', 'memfd_hugetlb'),
    ('pagemap_scan', 'pagemap_scan'),
)

# Error lines in CRIU logs that never explain a failure.
_HARMLESS_ERRORS = (
    re.compile(r"rlimit: Can't setup RLIMIT_NOFILE"),
    re.compile(r'(Dumping|Restoring|Pre-dumping|Pre-dump|Dump) FAILED'),
    re.compile(r'Unable to detach from \d+'),
    re.compile(r'Unable to unseize'),
    re.compile(r'Unfreezing'),
    # CRIU probes the iptables tools (-V) while dumping or restoring a net namespace
    re.compile(r'ip6?tables(-legacy)?-(save|restore) -V failed'),
    re.compile(r'execvp\("ip6?tables(-legacy)?-save"'),
    re.compile(r'exited, status=\d+$'),
    # iproute2 output while restoring the addresses of lo
    re.compile(r'^Error: ipv[46]: Address already assigned'),
)
# Errors logged by CRIU itself carry their source location: they come first.
_CRIU_ERROR = re.compile(r'^(Error \(\S+:\d+\)|BUG)')
_ERROR_LINE = re.compile(r'^(?:\(\s*[\d.]+\)\s*)?(?:\d+:\s*)?((?:Error|BUG)\b.*)$')


# --------------------------------------------------------------------------- versions

def parse_version(text):
    """'4.1.1', '4.1', 'Version: 4.1.1\\nGitID: v4.1.1', (4, 1) -> (4, 1, 1) / (4, 1, 0).

    Raises ValueError when no version is found.
    """
    if isinstance(text, (tuple, list)):
        parts = [int(x) for x in text][:3]
    else:
        m = re.search(r'(\d+)\.(\d+)(?:\.(\d+))?', str(text or ''))
        if not m:
            raise ValueError('no CRIU version in %r' % (text,))
        parts = [int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)]
    while len(parts) < 3:
        parts.append(0)
    return tuple(parts)


def format_version(version):
    return '%d.%d.%d' % tuple(parse_version(version))


def compare_versions(a, b):
    """-1, 0 or 1 as version a is older than, equal to or newer than version b."""
    a, b = parse_version(a), parse_version(b)
    return (a > b) - (a < b)


# --------------------------------------------------------------------------- locating

def find_criu(path=None):
    """Absolute path of the criu binary (``path`` if given), else HaulError('criu', ...)."""
    if path:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return os.path.abspath(path)
        raise HaulError('criu', 'criu binary %s not found or not executable (%s)' % (path, PACKAGE_HINT))
    found = shutil.which('criu')
    if found:
        return found
    for cand in CRIU_SEARCH_PATHS:
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    raise HaulError('criu', 'criu is not installed (%s)' % PACKAGE_HINT)


def import_pycriu():
    """Import pycriu lazily; HaulError('pycriu', ...) naming the package when missing/too old."""
    try:
        import pycriu  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise HaulError('pycriu', 'cannot import pycriu (%s): %s' % (e, PACKAGE_HINT))
    rpc = getattr(pycriu, 'rpc', None)
    if rpc is None or not hasattr(pycriu, 'criu'):
        raise HaulError('pycriu', 'pycriu has no RPC bindings: %s' % PACKAGE_HINT)
    ver = getattr(getattr(pycriu, 'version', None), '__version__', None) or getattr(pycriu, '__version__', None)
    fields = set(f.name for f in rpc.criu_opts.DESCRIPTOR.fields)
    missing = [f for f in ('leave_stopped', 'network_lock', 'freeze_cgroup', 'lazy_pages', 'tls') if f not in fields]
    if missing or (ver and compare_versions(ver, MIN_CRIU_VERSION) < 0):
        raise HaulError('pycriu', 'pycriu %s is too old (lacks %s): %s'
                        % (ver or 'unknown', ', '.join(missing) or 'nothing', PACKAGE_HINT))
    return pycriu


# --------------------------------------------------------------------------- logs

def telling_error(log_path, max_len=300):
    """The most telling ``Error`` (or ``BUG``) line of a CRIU log, without its timestamp.

    That is the first error line that CRIU logged itself (with its source
    location) and that is not known noise (the RLIMIT_NOFILE line seen on
    machines without CAP_SYS_RESOURCE, the iptables probes, the final
    "Dumping FAILED."); else the first other error line that is not noise
    (output of a helper such as ``execvp(...) failed``); else the last noise
    line; else None.
    """
    if not log_path:
        return None
    try:
        with open(log_path, 'rb') as f:
            data = f.read()
    except (IOError, OSError):
        return None
    noise = other = None
    for raw in data.decode('utf-8', 'replace').splitlines():
        m = _ERROR_LINE.match(raw.strip())
        if not m:
            continue
        line = m.group(1).strip()
        if any(p.search(line) for p in _HARMLESS_ERRORS):
            noise = line
        elif _CRIU_ERROR.match(line) and 'execvp(' not in line:
            return line[:max_len]
        elif other is None:
            other = line
    best = other or noise
    return best[:max_len] if best else None


def _errno_name(num):
    try:
        return errno.errorcode.get(int(num), str(num))
    except (TypeError, ValueError):
        return str(num)


# --------------------------------------------------------------------------- options

class CriuOptions(object):
    """Options of one CRIU request, independent of pycriu.

    Only options that are set (not None) are copied to the RPC message, except
    ``network_lock``, which is always set because CRIU's default (iptables)
    is usually wrong on modern hosts.

    :param pid: root pid of the tree to dump (the pid-namespace init).
    :param root: root directory of the container (restore: on this host).
    :param external: list of CRIU ``--external`` specs, e.g. ``mnt[/path]:key``.
    :param leave_stopped: dump leaves the tasks SIGSTOPped (default True).
    :param leave_running: dump leaves the tasks running (pre-copy tests only).
    :param network_lock: ``nftables`` (default), ``iptables`` or ``skip``.
    :param tcp_established: checkpoint/restore established TCP connections.
    :param tcp_close: restore: close established connections instead.
    :param manage_cgroups: dump/restore the cgroups (default True).
    :param manage_cgroups_mode: one of :data:`CGROUP_MODES` (default ``soft``).
    :param freeze_cgroup: absolute path of the freezer cgroup directory
        (a cgroup v1 freezer dir or a cgroup v2 dir) used to freeze the tree.
    :param shell_job: allow a tree that is not a session leader (default False).
    :param file_locks: dump file locks.
    :param ext_unix_sk: allow external unix sockets.
    :param parent_img: parent images dir (pre-dump), relative to the images dir
        (an absolute path is converted with ``images_dir``).
    :param track_mem: turn on memory change tracking (pre-dump rounds).
    :param pre_dump_mode: ``splice`` or ``read``.
    :param auto_dedup: punch holes in parent images as pages are dumped.
    :param page_server: dict(address, port): send pages to this page server
        (dump/pre-dump), or with ``lazy_pages``: listen there for lazy pages.
    :param tls, tls_cacert, tls_cacrl, tls_cert, tls_key, tls_no_cn_verify: TLS for the page server.
    :param lazy_pages: dump: keep pages for lazy transfer; restore: restore lazily.
    :param status_fd: fd (in this process) that CRIU writes a byte to when ready.
    :param rst_sibling: restore the tree as a sibling (child of the caller), detached.
    :param cg_root: list of (controller or None, path) pairs for ``--cgroup-root``.
    :param timeout: seconds CRIU waits for the tree to freeze.
    :param ghost_limit: max size of a ghost file.
    :param log_level: CRIU log level (default 4).
    """

    FIELDS = ('pid', 'root', 'external', 'leave_stopped', 'leave_running', 'network_lock',
              'tcp_established', 'tcp_close', 'tcp_skip_in_flight', 'manage_cgroups', 'manage_cgroups_mode',
              'freeze_cgroup', 'shell_job', 'file_locks', 'ext_unix_sk', 'parent_img', 'track_mem',
              'pre_dump_mode', 'auto_dedup', 'page_server', 'tls', 'tls_cacert', 'tls_cacrl',
              'tls_cert', 'tls_key', 'tls_no_cn_verify', 'lazy_pages', 'status_fd', 'rst_sibling',
              'cg_root', 'timeout', 'ghost_limit', 'log_level', 'evasive_devices', 'link_remap',
              'weak_sysctls', 'display_stats')

    def __init__(self, **kwargs):
        unknown = set(kwargs) - set(self.FIELDS)
        if unknown:
            raise TypeError('unknown CRIU options: %s' % ', '.join(sorted(unknown)))
        for name in self.FIELDS:
            setattr(self, name, kwargs.get(name))
        if self.network_lock is None:
            self.network_lock = 'nftables'
        if self.log_level is None:
            self.log_level = LOG_LEVEL
        self.validate()

    def validate(self):
        def bad(cause):
            raise HaulError('options', cause)

        if self.network_lock not in NETWORK_LOCKS:
            bad('network_lock must be one of %s, not %r' % (', '.join(NETWORK_LOCKS), self.network_lock))
        if self.manage_cgroups_mode is not None and self.manage_cgroups_mode not in CGROUP_MODES:
            bad('manage_cgroups_mode must be one of %s, not %r' % (', '.join(CGROUP_MODES), self.manage_cgroups_mode))
        if self.pre_dump_mode is not None and self.pre_dump_mode not in PRE_DUMP_MODES:
            bad('pre_dump_mode must be one of %s, not %r' % (', '.join(PRE_DUMP_MODES), self.pre_dump_mode))
        if self.leave_stopped and self.leave_running:
            bad('leave_stopped and leave_running are mutually exclusive')
        if self.pid is not None and (not isinstance(self.pid, int) or self.pid <= 0):
            bad('pid must be a positive integer, not %r' % (self.pid,))
        if self.page_server is not None:
            ps = self.page_server
            if not isinstance(ps, dict) or not ps.get('port'):
                bad('page_server needs at least a port')
            port = ps.get('port')
            if not isinstance(port, int) or not 0 < port < 65536:
                bad('page_server port must be 1..65535, not %r' % (port,))
        tls_files = [n for n in ('tls_cacert', 'tls_cacrl', 'tls_cert', 'tls_key') if getattr(self, n)]
        if tls_files and not self.tls:
            bad('%s given without tls' % ', '.join(tls_files))
        if self.tls and self.page_server is None:
            bad('tls needs a page_server')
        if bool(self.tls_cert) != bool(self.tls_key):
            bad('tls_cert and tls_key go together')
        if self.lazy_pages and self.page_server is None and self.pid is not None:
            bad('a lazy dump needs page_server (the address to serve pages from)')

    def parent_relative(self, images_dir):
        """parent_img as CRIU wants it: relative to the images dir."""
        if not self.parent_img:
            return None
        if os.path.isabs(self.parent_img):
            return os.path.relpath(self.parent_img, images_dir)
        return self.parent_img

    def apply(self, opts, rpc, images_dir=None):
        """Copy these options onto ``opts`` (a ``rpc.criu_opts`` or a fake with the same attributes).

        ``rpc`` is ``pycriu.rpc`` (for the enum values) or any object with
        NFTABLES/IPTABLES/SKIP, SOFT/FULL/..., SPLICE/VM_READ attributes.
        """
        simple = ('pid', 'root', 'leave_stopped', 'leave_running', 'tcp_established', 'tcp_close',
                  'tcp_skip_in_flight', 'manage_cgroups', 'freeze_cgroup', 'shell_job', 'file_locks',
                  'ext_unix_sk', 'track_mem', 'auto_dedup', 'tls', 'tls_cacert', 'tls_cacrl', 'tls_cert',
                  'tls_key', 'tls_no_cn_verify', 'lazy_pages', 'status_fd', 'rst_sibling', 'timeout',
                  'ghost_limit', 'log_level', 'evasive_devices', 'link_remap', 'weak_sysctls',
                  'display_stats')
        for name in simple:
            value = getattr(self, name)
            if value is not None:
                setattr(opts, name, value)
        opts.network_lock = getattr(rpc, self.network_lock.upper())
        if self.manage_cgroups_mode is not None:
            mode = {'none': 'CG_NONE'}.get(self.manage_cgroups_mode, self.manage_cgroups_mode.upper())
            opts.manage_cgroups_mode = getattr(rpc, mode)
        if self.pre_dump_mode is not None:
            opts.pre_dump_mode = getattr(rpc, {'splice': 'SPLICE', 'read': 'VM_READ'}[self.pre_dump_mode])
        for spec in self.external or ():
            opts.external.append(spec)
        parent = self.parent_relative(images_dir) if images_dir else self.parent_img
        if parent:
            opts.parent_img = parent
        if self.page_server is not None:
            if self.page_server.get('address'):
                opts.ps.address = self.page_server['address']
            opts.ps.port = int(self.page_server['port'])
        for ctrl, path in self.cg_root or ():
            item = opts.cg_root.add()
            if ctrl:
                item.ctrl = ctrl
            item.path = path
        return opts

    def describe(self):
        """The options that are set, as a dict (for results and diffs)."""
        return dict((n, getattr(self, n)) for n in self.FIELDS if getattr(self, n) is not None)


# --------------------------------------------------------------------------- session

class CriuSession(object):
    """CRIU requests against one images directory.

    :param images_dir: the images directory (must exist; see ``_images.ensure_dir``).
    :param criu_path: criu binary, default: found with :func:`find_criu`.
    :param pycriu_mod: a pycriu module (tests inject a fake), default: imported lazily.
    """

    def __init__(self, images_dir=None, criu_path=None, pycriu_mod=None):
        self.images_dir = os.path.abspath(images_dir) if images_dir else None
        self.criu_path = find_criu(criu_path)
        self._pycriu = pycriu_mod
        self._version = None
        self.last_log = None

    # -- plumbing
    @property
    def pycriu(self):
        if self._pycriu is None:
            self._pycriu = import_pycriu()
        return self._pycriu

    @property
    def rpc(self):
        return self.pycriu.rpc

    def _client(self):
        c = self.pycriu.criu()
        c.use_binary(self.criu_path)
        return c

    def log_path(self, action, directory=None):
        return os.path.join(directory or self.images_dir, LOG_NAMES[action])

    def _request(self, req_type, step, opts=None, images_dir=None, log_action=None, extra=None):
        """Send one request, return the response; HaulError(step, ...) on failure."""
        rpc = self.rpc
        req = rpc.criu_req()
        req.type = getattr(rpc, req_type)
        log = None
        dir_fd = None
        try:
            if images_dir is not None or opts is not None:
                directory = images_dir or self.images_dir
                dir_fd = os.open(directory, os.O_DIRECTORY)
                req.opts.images_dir_fd = dir_fd
                if log_action:
                    log = self.log_path(log_action, directory)
                    req.opts.log_file = os.path.basename(log)
                    self.last_log = log
                    try:
                        os.unlink(log)  # a log from a previous try would mislead
                    except OSError:
                        pass
                if opts is not None:
                    opts.apply(req.opts, rpc, directory)
            if extra:
                extra(req)
            try:
                resp = self._client()._send_req_and_recv_resp(req)
            except self.pycriu.CRIUException as e:
                cause = 'criu %s could not run: %s' % (req_type, e)
                line = telling_error(log)
                if line:
                    cause += ': ' + line
                raise HaulError(step, cause, log=log if log and os.path.exists(log) else None)
        finally:
            if dir_fd is not None:
                os.close(dir_fd)
        if not resp.success:
            raise HaulError(step, self._failure_cause(req_type, resp, log),
                            log=log if log and os.path.exists(log) else None,
                            rc=int(resp.cr_errno) if resp.cr_errno else None)
        return resp

    @staticmethod
    def _failure_cause(req_type, resp, log):
        cause = 'criu %s failed' % req_type.lower().replace('_', '-')
        if resp.cr_errno:
            cause += ' (errno %s)' % _errno_name(resp.cr_errno)
        line = telling_error(log)
        if not line:
            msg = [m.strip() for m in (getattr(resp, 'cr_errmsg', '') or '').splitlines()]
            msg = [m for m in msg if m and not any(p.search(m) for p in _HARMLESS_ERRORS)]
            line = msg[0] if msg else 'its log has no error: CRIU was killed or crashed'
        cause += ': ' + line
        return cause

    # -- information
    # CRIU version per binary (path, mtime, size) and pycriu module, for the life of this process:
    # a handoff asks more than once, and asking starts a CRIU (~5 ms, inside the freeze for a restore).
    _versions = {}

    def _version_key(self):
        try:
            st = os.stat(self.criu_path)
        except OSError:
            return None
        return (self.criu_path, st.st_mtime_ns, st.st_size, id(self._pycriu))

    def version(self):
        """CRIU version string ('4.1.1'), by RPC, falling back to ``criu --version``."""
        if self._version:
            return self._version
        key = self._version_key()
        if key is not None and key in CriuSession._versions:
            self._version = CriuSession._versions[key]
            return self._version
        self._version = self._ask_version()
        if key is not None:
            CriuSession._versions[key] = self._version
        return self._version

    def _ask_version(self):
        try:
            resp = self._request('VERSION', 'criu-version')
            v = resp.version
            self._version = '%d.%d.%d' % (v.major_number, v.minor_number,
                                          v.sublevel if v.HasField('sublevel') else 0)
        except HaulError:
            try:
                # no AnsibleModule here (module_utils used by several modules): plain subprocess
                out = subprocess.run([self.criu_path, '--version'], stdout=subprocess.PIPE,  # pylint: disable=ansible-bad-function
                                     stderr=subprocess.STDOUT, timeout=30, check=False).stdout
                self._version = format_version(out.decode('utf-8', 'replace'))
            except (OSError, ValueError, subprocess.SubprocessError) as e:
                raise HaulError('criu-version', 'cannot get the CRIU version of %s: %s' % (self.criu_path, e))
        return self._version

    def require_version(self, minimum=MIN_CRIU_VERSION):
        ver = self.version()
        if compare_versions(ver, minimum) < 0:
            raise HaulError('criu-version', 'criu %s is too old, need >= %s (%s)'
                            % (ver, format_version(minimum), PACKAGE_HINT))
        return ver

    def rpc_features(self):
        """RPC FEATURE_CHECK: {'mem_track': bool, 'lazy_pages': bool, 'pidfd_store': bool}."""
        names = [f.name for f in self.rpc.criu_features.DESCRIPTOR.fields]

        def ask(req):
            for n in names:
                setattr(req.features, n, True)

        resp = self._request('FEATURE_CHECK', 'feature-check', extra=ask)
        return dict((n, bool(getattr(resp.features, n))) for n in names if resp.features.HasField(n))

    def cli_feature(self, name):
        """`criu check --feature NAME`: True, False, or None when this CRIU does not know NAME."""
        try:
            p = subprocess.run([self.criu_path, 'check', '--feature', name], stdout=subprocess.PIPE,  # pylint: disable=ansible-bad-function
                               stderr=subprocess.STDOUT, timeout=60, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        out = p.stdout.decode('utf-8', 'replace')
        if p.returncode == 0:
            return True
        if 'Unknown feature' in out:
            return None
        return False

    def check_features(self):
        """All the kernel/CRIU features that matter for migration, as {name: bool or None}.

        Keys: mem_track, lazy_pages, pidfd_store (RPC) and the keys of
        :data:`CLI_FEATURES`; None means this CRIU cannot tell.
        """
        feats = {}
        try:
            feats.update(self.rpc_features())
        except HaulError:
            pass
        for key, name in CLI_FEATURES:
            feats[key] = self.cli_feature(name)
        if feats.get('mem_track') is None:
            feats['mem_track'] = feats.get('mem_dirty_track')
        if feats.get('lazy_pages') is None:
            feats['lazy_pages'] = feats.get('uffd_noncoop')
        feats['network_lock_iptables'] = bool(shutil.which('iptables-restore')
                                              or os.path.exists('/usr/sbin/iptables-restore'))
        return feats

    def cpuinfo_dump(self, directory):
        """Write cpuinfo.img into ``directory``; returns its path."""
        self._request('CPUINFO_DUMP', 'cpuinfo-dump', images_dir=directory, log_action='cpuinfo-dump',
                      extra=lambda req: setattr(req.opts, 'log_level', LOG_LEVEL))
        return os.path.join(directory, 'cpuinfo.img')

    def cpuinfo_check(self, directory):
        """(compatible, reason): is this host's CPU compatible with directory/cpuinfo.img."""
        try:
            self._request('CPUINFO_CHECK', 'cpuinfo-check', images_dir=directory, log_action='cpuinfo-check',
                          extra=lambda req: setattr(req.opts, 'log_level', LOG_LEVEL))
        except HaulError as e:
            return False, e.cause
        return True, None

    # -- actions
    def dump(self, options):
        """Dump the tree; returns {'duration': seconds, 'log_path': ...}. HaulError('dump', ...)."""
        if options.pid is None:
            raise HaulError('dump', 'no pid to dump')
        start = time.time()
        self._request('DUMP', 'dump', opts=options, log_action='dump')
        return {'duration': time.time() - start, 'log_path': self.last_log}

    def pre_dump(self, options, features=None):
        """One pre-dump round. Refuses clearly without memory dirty tracking."""
        if options.pid is None:
            raise HaulError('pre-dump', 'no pid to pre-dump')
        if features is None:
            features = {'mem_dirty_track': self.cli_feature('mem_dirty_track')}
        if features.get('mem_dirty_track') is False or features.get('mem_track') is False:
            raise HaulError('pre-dump', 'this kernel has no memory dirty tracking (built without '
                            'CONFIG_MEM_SOFT_DIRTY): pre-copy is impossible here')
        if options.track_mem is None:
            options.track_mem = True
        start = time.time()
        self._request('PRE_DUMP', 'pre-dump', opts=options, log_action='pre-dump')
        return {'duration': time.time() - start, 'log_path': self.last_log}

    def restore(self, options):
        """Restore the tree detached; returns {'pid': root pid (host), 'duration', 'log_path'}."""
        start = time.time()
        resp = self._request('RESTORE', 'restore', opts=options, log_action='restore')
        pid = resp.restore.pid if resp.HasField('restore') else None
        return {'pid': pid, 'duration': time.time() - start, 'log_path': self.last_log}

    def dump_lazy_start(self, options, ready_timeout=60):
        """Start a lazy dump (post-copy) in a child process and wait for CRIU's readiness byte.

        Returns (child_pid, log_path). The child runs the RPC DUMP with
        ``lazy_pages`` and ``status_fd``; it exits when the restorer has pulled
        every page (then the source tree is gone). Readiness is the status fd,
        never a sleep.
        """
        if not options.lazy_pages:
            raise HaulError('dump', 'dump_lazy_start needs lazy_pages')
        rfd, wfd = os.pipe()
        options.status_fd = wfd
        log = self.log_path('dump')
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                os.close(rfd)
                self._request('DUMP', 'dump', opts=options, log_action='dump')
                code = 0
            except BaseException:  # pylint: disable=broad-except
                code = 1
            finally:
                os._exit(code)
        os.close(wfd)
        try:
            ready, dummy, dummy2 = select.select([rfd], [], [], ready_timeout)
            data = os.read(rfd, 1) if ready else b''
        finally:
            os.close(rfd)
        if not data:
            try:
                pid, status = os.waitpid(child, os.WNOHANG)
            except OSError:
                pid, status = child, 0
            if pid == 0:
                os.kill(child, 9)
                os.waitpid(child, 0)
                cause = 'lazy dump not ready after %ds' % ready_timeout
            else:
                cause = 'lazy dump failed'
            line = telling_error(log)
            raise HaulError('dump', cause + (': ' + line if line else ''), log=log if os.path.exists(log) else None)
        return child, log


# --------------------------------------------------------------------------- dump targets

CONTAINERS_DIR = '/var/lib/haul/containers'


def open_session(images_dir, criu_path=None, pycriu_mod=None):
    """A :class:`CriuSession` with pycriu imported and a CRIU recent enough (HaulError otherwise).

    Its version is asked once per binary and process (``CriuSession.version``): use
    ``session.version()`` afterwards."""
    session = CriuSession(images_dir, criu_path=criu_path, pycriu_mod=pycriu_mod)
    session.pycriu  # pylint: disable=pointless-statement
    session.require_version()
    return session


def _read_text(path):
    with open(path) as f:
        return f.read()


def proc_status(pid, proc='/proc'):
    """{'NSpid': [...], 'PPid': int, 'State': 'S (sleeping)', ...} of a pid, or None if it is gone."""
    try:
        text = _read_text(os.path.join(proc, str(int(pid)), 'status'))
    except (IOError, OSError):
        return None
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(':')
        if not sep:
            continue
        value = value.strip()
        if key == 'NSpid':
            out[key] = [int(x) for x in value.split()]
        elif key in ('PPid', 'Pid'):
            out[key] = int(value)
        else:
            out[key] = value
    return out


def find_pidns_init(pid, proc='/proc'):
    """Host pid of the init of the pid namespace that ``pid`` is in (walking up the parents), or None."""
    st = proc_status(pid, proc)
    if not st or len(st.get('NSpid', [])) < 2:
        return None
    depth = len(st['NSpid'])
    seen = set()
    while st and pid not in seen:
        seen.add(pid)
        nspid = st.get('NSpid', [])
        if len(nspid) == depth and nspid[-1] == 1:
            return pid
        if len(nspid) < depth:
            return None
        pid = st.get('PPid')
        if not pid:
            return None
        st = proc_status(pid, proc)
    return None


def resolve_target(pid=None, cgroup=None, step='identify', proc='/proc', cgroup_mod=None):
    """Find the container to dump, by its init pid or by its cgroup.

    Returns {'pid': host pid of the pid-namespace init, 'cgroup': a _cgroup.Cgroup,
    'cgroup_path': '/haul/NAME' (inside the hierarchy), 'pids': [every pid of the cgroup]}.
    Raises HaulError(step, ...) with a clear cause: pid missing, pid not an init (naming
    the init when there is one), cgroup missing, cgroup without a pid-namespace init.
    """
    if cgroup_mod is None:
        from ansible_collections.haul.live.plugins.module_utils import _cgroup as cgroup_mod  # pylint: disable=import-outside-toplevel
    if pid is not None:
        st = proc_status(pid, proc)
        if st is None:
            raise HaulError(step, 'pid %s does not exist' % pid)
        nspid = st.get('NSpid', [pid])
        if len(nspid) < 2:
            raise HaulError(step, 'pid %s is not in a pid namespace of its own: it is not a container init '
                            '(give the pid of the container\'s pid-namespace init, or its cgroup)' % pid)
        if nspid[-1] != 1:
            init = find_pidns_init(pid, proc)
            hint = ('; its init is pid %d: pass that pid or the cgroup' % init) if init else ''
            raise HaulError(step, 'pid %s is pid %d inside a container\'s pid namespace, not its init%s'
                            % (pid, nspid[-1], hint))
        cg = cgroup_mod.Cgroup.from_pid(pid, step=step)
        init = pid
        pids = cg.pids()
    else:
        cg = cgroup_mod.Cgroup(cgroup, step=step)
        pids = cg.pids()
        init = cgroup_mod.pidns_init(_direct_pids(cg.path), proc=proc)
        if init is None:
            below = cgroup_mod.pidns_init(pids, proc=proc)
            hint = ''
            if below is not None:
                hint = '; pid %d below it is one: give the container\'s own cgroup' % below
            raise HaulError(step, 'cgroup %s holds no pid-namespace init (%d processes): no container there%s'
                            % (cg.path, len(pids), hint))
    return {'pid': init, 'cgroup': cg, 'cgroup_path': '/' + cg.rel.strip('/'), 'pids': pids}


def _direct_pids(cgroup_dir):
    """Pids that are members of the cgroup directory itself (not of its children)."""
    try:
        return [int(x) for x in _read_text(os.path.join(cgroup_dir, 'cgroup.procs')).split()]
    except (IOError, OSError, ValueError):
        return []


def tree_rss(pids, proc='/proc'):
    """Sum of Rss (bytes) over ``pids`` from smaps_rollup (a safe over-estimate of what CRIU dumps)."""
    total = 0
    for pid in pids:
        try:
            text = _read_text(os.path.join(proc, str(pid), 'smaps_rollup'))
        except (IOError, OSError):
            continue
        for line in text.splitlines():
            if line.startswith('Rss:'):
                total += int(line.split()[1]) * 1024
                break
    return total


def tmpfs_usage(pid, proc='/proc'):
    """Bytes used by the tmpfs mounts in the mount namespace of ``pid`` (CRIU dumps their contents)."""
    total = 0
    try:
        text = _read_text(os.path.join(proc, str(pid), 'mountinfo'))
    except (IOError, OSError):
        return 0
    seen = set()
    for line in text.splitlines():
        pre, sep, post = line.partition(' - ')
        if not sep or not post.startswith('tmpfs '):
            continue
        fields = pre.split()
        dev, mountpoint = fields[2], fields[4]
        if dev in seen:
            continue
        seen.add(dev)
        try:
            st = os.statvfs(os.path.join(proc, str(pid), 'root') + mountpoint)
        except OSError:
            continue
        total += (st.f_blocks - st.f_bfree) * st.f_frsize
    return total


def _same_dir(a, b):
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def root_candidates(name):
    return [os.path.join(CONTAINERS_DIR, name, 'rootfs')] if name else []


def detect_root(pid, name=None, proc='/proc'):
    """The container's root directory as seen from this host, or None.

    Candidates, in order: ``/var/lib/haul/containers/NAME/rootfs`` (the convention),
    then the root field of the ``/`` mount in /proc/PID/mountinfo. A candidate counts
    only if it is the very directory (same device and inode) that /proc/PID/root is.
    """
    proc_root = os.path.join(proc, str(pid), 'root')
    cands = root_candidates(name)
    try:
        for line in _read_text(os.path.join(proc, str(pid), 'mountinfo')).splitlines():
            fields = line.split()
            if len(fields) > 4 and fields[4] == '/':
                cands.append(fields[3])
    except (IOError, OSError):
        pass
    for cand in cands:
        if cand and os.path.isabs(cand) and _same_dir(cand, proc_root):
            return cand
    return None


def container_root(params, pid, name):
    """The root directory of the container to checkpoint: ``params['root']`` when given (it must be
    a directory), else :func:`detect_root`. HaulError('identify', ...) naming what was tried."""
    root = params.get('root')
    if root:
        if not os.path.isdir(root):
            raise HaulError('identify', 'root %s is not a directory' % root)
        return root
    root = detect_root(pid, name)
    if not root:
        tried = ', '.join(root_candidates(name)) or '-'
        raise HaulError('identify', 'cannot find the root directory of %s (pid %d) on this host: tried %s and '
                        '/proc/%d/mountinfo; pass root' % (name, pid, tried, pid))
    return root


def restore_root(params, name, step='restore'):
    """The root directory to restore ``name`` into on this host: ``params['root']``, else the
    conventional one; HaulError(step, ...) when it is not there (the rootfs must be synced first)."""
    root = params.get('root') or (root_candidates(name) or [None])[0]
    if not root or not os.path.isdir(root):
        raise HaulError(step, 'root directory %s of %s does not exist on this host: sync the rootfs first'
                        % (root, name))
    return root


def criu_freeze_cgroup(cg, mounts=None):
    """The freezer cgroup directory to give CRIU's freeze_cgroup for a _cgroup.Cgroup.

    CRIU uses the v1 freezer whenever the host mounts one (hybrid hierarchy), so
    prefer the v1 twin; else the cgroup v2 directory.
    """
    if cg.version == 'v1':
        return cg.path
    for twin in getattr(cg, 'twins', []) or []:
        return twin
    return cg.path


# --------------------------------------------------------------------------- the dump step

DUMP_SIZE_FACTOR = 1.1


def _wait_frozen(cg, timeout):
    deadline = time.time() + timeout
    delay = 0.001
    while True:
        st = cg.state()
        if st == 'frozen' or time.time() >= deadline:
            return st
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _hold_frozen(cg, timeout, cgroup_mod):
    """After leave_stopped: freeze the cgroup, then SIGCONT every task so it stays frozen, not stopped.

    On failure the tasks are resumed (the source keeps running) and HaulError('hold', ...) is raised.
    """
    try:
        cg.freeze(timeout=timeout)
        cgroup_mod.sigcont_tree(cg.pids())
        st = _wait_frozen(cg, timeout)
        if st != 'frozen':
            raise HaulError('hold', 'cgroup %s is %s, not frozen, after resuming the stopped tasks' % (cg.path, st))
    except HaulError as e:
        try:
            cg.thaw(timeout=timeout)
        except HaulError:
            pass
        cgroup_mod.sigcont_tree(cg.pids())
        raise HaulError('hold', 'the dump succeeded but the source could not be held frozen (%s); '
                        'it was resumed' % e.cause)


def all_stopped(pids, proc='/proc'):
    """Whether every pid (that still exists) is stopped (state T), as CRIU's leave_stopped leaves them."""
    seen = False
    for pid in pids:
        st = proc_status(pid, proc)
        if st is None:
            continue
        seen = True
        if not st.get('State', '').startswith('T'):
            return False
    return seen


def _rescue_source(cg, timeout, pid=None):
    """After a failed dump: make sure the container's cgroup is not left frozen, and its network
    not left locked (a CRIU that died mid-dump leaves its nftables lock behind)."""
    try:
        _network.reopen(pid, pids=cg.pids())  # before its tasks run (see _network.repair_off)
    except HaulError:
        pass
    try:
        cg.thaw(timeout=timeout)
    except HaulError:
        pass


def container_argspec():
    """The options that name a container and tell CRIU how to checkpoint it (the doc fragment
    ``haul.live.container``), for the modules that dump one. Use with CONTAINER_RULES."""
    return dict(
        cgroup=dict(type='str'),
        pid=dict(type='int'),
        name=dict(type='str'),
        root=dict(type='path'),
        external=dict(type='list', elements='str', default=['mnt[]:m']),
        network_lock=dict(type='str', choices=list(NETWORK_LOCKS), default='nftables'),
        tcp_established=dict(type='bool', default=False),
        manage_cgroups_mode=dict(type='str', choices=['soft', 'full', 'strict', 'ignore'], default='soft'),
        freeze_timeout=dict(type='int', default=10),
        criu_path=dict(type='path'),
    )


# One of cgroup and pid names the container.
CONTAINER_RULES = dict(required_one_of=[['cgroup', 'pid']], mutually_exclusive=[['cgroup', 'pid']])


def dump_container(params, check_mode=False, diff=False):
    """The criu_dump module's logic. ``params`` are the module's parameters. Returns the result dict."""
    from ansible_collections.haul.live.plugins.module_utils import _images  # pylint: disable=import-outside-toplevel
    from ansible_collections.haul.live.plugins.module_utils import _cgroup as cgroup_mod  # pylint: disable=import-outside-toplevel

    images_dir = os.path.abspath(params['images_dir'])
    result = {'changed': False, 'images_dir': images_dir}

    # CRIU and pycriu first: without them nothing else matters, in check mode too.
    session = open_session(images_dir, criu_path=params.get('criu_path'))
    criu_version = session.version()
    result['criu_version'] = criu_version

    # Which container?
    try:
        target = resolve_target(pid=params.get('pid'), cgroup=params.get('cgroup'), cgroup_mod=cgroup_mod)
    except HaulError as e:
        # The container may be gone because it has been dumped (and killed) already.
        done = _already_dumped_gone(images_dir, params, _images)
        if done is None:
            raise
        result.update(done)
        return result
    cg = target['cgroup']
    name = params.get('name') or os.path.basename(target['cgroup_path'].rstrip('/'))
    identity = _images.make_identity(name, cgroup=target['cgroup_path'], root=None, init_pid=target['pid'])
    # the migration that makes this dump (a handoff passes its id): only that one may reuse it
    identity['migration_id'] = params.get('migration_id')
    result.update(name=name, pid=target['pid'], root_pid=target['pid'], cgroup=target['cgroup_path'])

    # Idempotence: a complete dump of this container, which is still held frozen since.
    # Idempotence: a complete dump of this container, which is still held (frozen or stopped) since.
    state = cg.state()
    if state == 'thawed' and all_stopped(target['pids']):
        state = 'stopped'
    if not params.get('force') and state in ('frozen', 'stopped') and os.path.isdir(images_dir):
        ok, manifest = _images.is_complete_dump(images_dir, identity)
        # and of this migration: a frozen container another attempt dumped is not ours to reuse
        if (ok and manifest['identity'].get('init_pid') == target['pid']
                and manifest['identity'].get('migration_id') == params.get('migration_id')):
            result.update(_done_result(images_dir, manifest, _images))
            result.update(hold=state, duration=0.0)
            if diff:
                result['diff'] = {'before': _dump_diff_state(state, 'complete dump'),
                                  'after': _dump_diff_state(state, 'complete dump')}
            return result
    if state != 'thawed':
        raise HaulError('identify', 'container %s (cgroup %s) is %s but its images in %s are not a complete dump '
                        'of it by this migration (%s): thaw it first (cgroup_thaw) or dump it elsewhere'
                        % (name, cg.path, state, images_dir, params.get('migration_id') or 'no migration id'))
    result['sockets'] = checked_sockets(name, target['pids'], criu_version)

    root = container_root(params, target['pid'], name)
    identity['root'] = root
    result['root'] = root
    # its veths, addresses and bridges: the restore recreates them (docs/networking.md)
    identity['network'] = result['network'] = _network.describe(target['pid'], step='identify')

    # Images directory and free space.
    _images.require_usable(images_dir)
    if params.get('parent_images'):
        parent_abs = params['parent_images'] if os.path.isabs(params['parent_images']) \
            else os.path.normpath(os.path.join(images_dir, params['parent_images']))
        if not os.path.isdir(parent_abs):
            raise HaulError('images', 'parent images %s do not exist' % parent_abs)
    estimate = int((tree_rss(target['pids']) + tmpfs_usage(target['pid'])) * DUMP_SIZE_FACTOR)
    if params.get('page_server'):
        estimate = int(tmpfs_usage(target['pid']) * DUMP_SIZE_FACTOR) + 16 * 1024 * 1024
    result.update(estimated_bytes=estimate, free_bytes=_images.require_space(images_dir, estimate, 'the dump of ' + name))

    options = _dump_options(params, target, root, cg)
    result['changed'] = True
    if diff:
        result['diff'] = {'before': _dump_diff_state(state, 'absent'),
                          'after': _dump_diff_state('running' if params['hold'] == 'running' else params['hold'],
                                                    'complete dump')}
    if check_mode:
        result['hold'] = params['hold']
        return result

    _images.ensure_dir(images_dir, migration_id=params.get('handoff_id'))
    _images.clear_images(images_dir)
    timeout = params.get('freeze_timeout') or 10
    try:
        res = session.dump(options)
    except HaulError:
        _rescue_source(cg, timeout, target['pid'])
        raise
    result['log_path'] = res['log_path']
    result['duration'] = round(res['duration'], 3)
    if params['hold'] == 'frozen':
        hold_cg = cg
        if params.get('freezer') in ('v1', 'v2'):
            try:
                hold_cg = cgroup_mod.Cgroup.from_pid(target['pid'], version=params['freezer'], step='hold')
            except HaulError as e:
                cgroup_mod.sigcont_tree(cg.pids())
                raise HaulError('hold', 'the dump succeeded but the source could not be held frozen (%s); '
                                'it was resumed' % e.cause)
        _hold_frozen(hold_cg, timeout, cgroup_mod)
    if params['hold'] != 'running':
        # held for a migration: its host ends go down, so that the frozen source answers no ARP
        # while the copy elsewhere takes over its address (cgroup_thaw's sigcont reopens them)
        _network.fence(identity['network'])
    result['hold'] = params['hold']
    try:
        manifest = _images.create_manifest(images_dir, 'dump', identity, criu_version,
                                           parent=options.parent_relative(images_dir),
                                           checksums=params.get('checksum', 'sha256') != 'none')
    except (IOError, OSError) as e:
        raise HaulError('manifest', 'cannot write the manifest of %s: %s' % (images_dir, e))
    result.update(_done_result(images_dir, manifest, _images))
    return result


def checked_sockets(name, pids, criu_version):
    """The TCP/UDP sockets the container holds (``_sockets.count_sockets``: what a migration
    carries); HaulError('sockets', ...) before any freeze when this CRIU cannot dump them on this
    kernel (``_sockets.refusal``)."""
    from ansible_collections.haul.live.plugins.module_utils import _sockets  # pylint: disable=import-outside-toplevel
    why = _sockets.refusal(_hostname(), name, pids, criu_version)
    if why:
        raise HaulError('sockets', why)
    return _sockets.count_sockets(pids)


def _dump_diff_state(container, images):
    return {'container': container, 'images': images}


def _done_result(images_dir, manifest, images_mod):
    return {
        'manifest': manifest,
        'stats': images_mod.summarize_stats(images_mod.read_stats(images_dir, 'dump')),
        'bytes': sum(f.get('size', 0) for f in manifest['files'].values()),
        'root': manifest['identity'].get('root'),
        'name': manifest['identity'].get('name'),
        'pid': manifest['identity'].get('init_pid'),
        'root_pid': manifest['identity'].get('init_pid'),
        'cgroup': manifest['identity'].get('cgroup'),
    }


def _already_dumped_gone(images_dir, params, images_mod):
    """Result for a container that is gone after a complete dump into images_dir, else None."""
    if params.get('force') or not os.path.isdir(images_dir):
        return None
    try:
        manifest = images_mod.verify_manifest(images_dir)
    except HaulError:
        return None
    ident = manifest['identity']
    if manifest['kind'] != 'dump':
        return None
    if params.get('pid') is not None and ident.get('init_pid') != params['pid']:
        return None
    if params.get('cgroup') is not None:
        want = '/' + params['cgroup'].strip('/')
        if not (ident.get('cgroup') == want or want.endswith(ident.get('cgroup') or '\0')):
            return None
    if params.get('name') and ident.get('name') != params['name']:
        return None
    res = _done_result(images_dir, manifest, images_mod)
    res.update(hold='gone', duration=0.0)
    return res


def checkpoint_kwargs(params, pid, root, cg):
    """CriuOptions keywords shared by every checkpoint of a container (dump, pre-dump, lazy dump),
    from the options of the ``haul.live.container`` doc fragment, and ``parent_images`` (the last
    pre-copy round: the checkpoint then writes only the pages changed since)."""
    kwargs = dict(
        pid=pid,
        root=root,
        external=list(params.get('external') or []),
        network_lock=params.get('network_lock') or 'nftables',
        tcp_established=bool(params.get('tcp_established')),
        manage_cgroups=True,
        manage_cgroups_mode=params.get('manage_cgroups_mode') or 'soft',
        freeze_cgroup=criu_freeze_cgroup(cg),
        shell_job=False,
        timeout=params.get('freeze_timeout') or 10,
    )
    if params.get('parent_images'):
        kwargs.update(parent_img=params['parent_images'], track_mem=True)
    return kwargs


def page_server_argspec():
    """The ``page_server`` option (the doc fragment ``haul.live.page_server``) of criu_dump and criu_predump."""
    return dict(page_server=dict(type='dict', options=dict(
        host=dict(type='str', required=True),
        port=dict(type='int', required=True),
        tls=dict(type='bool', default=False),
        tls_cacert=dict(type='path'),
        tls_cert=dict(type='path'),
        tls_key=dict(type='path', no_log=False),
        tls_no_cn_verify=dict(type='bool', default=False),
    ), required_together=[['tls_cert', 'tls_key']]))


def page_server_kwargs(ps):
    """CriuOptions keywords for a ``page_server`` option (host, port, tls...), or {} without one."""
    if not ps:
        return {}
    kwargs = {'page_server': {'address': ps['host'], 'port': ps['port']}}
    if ps.get('tls'):
        kwargs.update(tls=True, tls_cacert=ps.get('tls_cacert'), tls_cert=ps.get('tls_cert'),
                      tls_key=ps.get('tls_key'), tls_no_cn_verify=ps.get('tls_no_cn_verify') or None)
    return kwargs


def _dump_options(params, target, root, cg):
    kwargs = checkpoint_kwargs(params, target['pid'], root, cg)
    if params.get('hold') == 'running':
        kwargs['leave_running'] = True
    else:
        kwargs['leave_stopped'] = True
    kwargs.update(page_server_kwargs(params.get('page_server')))
    return CriuOptions(**kwargs)


# --------------------------------------------------------------------------- the restore step

RESTORE_MARKER = 'restore.json'


def proc_starttime(pid, proc='/proc'):
    """Start time (clock ticks since boot, field 22 of /proc/PID/stat) of a pid, or None."""
    try:
        text = _read_text(os.path.join(proc, str(int(pid)), 'stat'))
    except (IOError, OSError):
        return None
    try:
        return int(text.rsplit(')', 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def proc_cgroup_v2(pid, proc='/proc'):
    """The cgroup v2 path ('/haul/web1') of a pid, or None."""
    try:
        text = _read_text(os.path.join(proc, str(int(pid)), 'cgroup'))
    except (IOError, OSError):
        return None
    for line in text.splitlines():
        if line.startswith('0::'):
            return line[3:].strip() or '/'
    return None


def _running_container(cgroup_path, cgroup_mod, step='restore'):
    """(Cgroup or None, pids, init pid or None) for the cgroup of that path on this host."""
    try:
        cg = cgroup_mod.Cgroup(cgroup_path.strip('/'), step=step)
    except HaulError as e:
        if 'does not exist' in e.cause:
            return None, [], None
        raise
    pids = cg.pids()
    return cg, pids, cgroup_mod.pidns_init(pids)


def _read_marker(images_dir):
    try:
        with open(os.path.join(images_dir, RESTORE_MARKER)) as f:
            import json  # pylint: disable=import-outside-toplevel
            return json.load(f)
    except (IOError, OSError, ValueError):
        return None


def _write_marker(images_dir, data):
    """restore.json; a full disk is a clear error (step restore, the file, ``no space left on HOST``)."""
    from ansible_collections.haul.live.plugins.module_utils._common import write_json_atomic  # pylint: disable=import-outside-toplevel
    write_json_atomic(os.path.join(images_dir, RESTORE_MARKER), data, 'restore', what='the record of the restore')


def _cleanup_restore(cgroup_path, existed_before, cgroup_mod, timeout=10):
    """After a failed restore: kill what CRIU left in the target cgroup, and remove the cgroup if
    CRIU made it. The restore only starts into an empty cgroup (a populated one is refused), so
    every task in it now is a half-restored one: a CRIU killed mid-restore leaves them behind,
    stuck, also in a cgroup an earlier migration left empty."""
    try:
        cg, pids, dummy = _running_container(cgroup_path, cgroup_mod, step='cleanup')
        if cg is None:
            return
        if pids:
            cg.kill(timeout=timeout)
        if not existed_before:
            cg.remove()
    except HaulError:
        pass


def restore_container(params, check_mode=False, diff=False):
    """The criu_restore module's logic. Returns the result dict."""
    from ansible_collections.haul.live.plugins.module_utils import _images  # pylint: disable=import-outside-toplevel
    from ansible_collections.haul.live.plugins.module_utils import _cgroup as cgroup_mod  # pylint: disable=import-outside-toplevel

    images_dir = os.path.abspath(params['images_dir'])
    result = {'changed': False, 'images_dir': images_dir}

    session = open_session(images_dir, criu_path=params.get('criu_path'))
    criu_version = session.version()
    result['criu_version'] = criu_version

    manifest = _images.verify_manifest(images_dir, checksums=params.get('verify', 'sha256') != 'size',
                                       step='verify')
    _images.check_restorable(manifest, criu_version, step='verify')
    ident = manifest['identity']
    name = params.get('name') or ident.get('name')
    if params.get('name') and ident.get('name') and params['name'] != ident['name']:
        raise HaulError('verify', 'images in %s are of container %s, not %s' % (images_dir, ident['name'], params['name']))
    cgroup_path = '/' + (params.get('cgroup') or ident.get('cgroup') or '').strip('/')
    if cgroup_path == '/':
        raise HaulError('verify', 'no cgroup for %s: the manifest has none, pass cgroup' % name)
    if ident.get('cgroup') and cgroup_path != ident['cgroup']:
        raise HaulError('verify', 'CRIU restores the cgroups the images record (%s); cgroup %s cannot differ'
                        % (ident['cgroup'], cgroup_path))
    result.update(name=name, cgroup=cgroup_path, dumped_by=manifest.get('criu_version'),
                  source_host=ident.get('host'))

    # Already running here?
    cg, pids, init = _running_container(cgroup_path, cgroup_mod)
    marker = _read_marker(images_dir)
    if pids:
        if init is not None and marker and marker.get('pid') == init \
                and marker.get('starttime') == proc_starttime(init) and marker.get('host') == _hostname():
            result.update(pid=init, root=marker.get('root'), stats=_images.summarize_stats(
                _images.read_stats(images_dir, 'restore')), duration=0.0, state='running')
            if diff:
                result['diff'] = {'before': {'container': 'running'}, 'after': {'container': 'running'}}
            return result
        who = 'init pid %d' % init if init else '%d processes' % len(pids)
        raise HaulError('restore', 'a container %s already runs here (cgroup %s, %s) and it is not restored '
                        'from %s: remove it first' % (name, cgroup_path, who, images_dir))

    root = restore_root(params, name)
    result['root'] = root
    network = result['network'] = ident.get('network')
    _network.require_restorable(network, step='restore')

    result['changed'] = True
    if diff:
        result['diff'] = {'before': {'container': 'absent'}, 'after': {'container': 'running'}}
    if check_mode:
        return result

    options = CriuOptions(
        root=root,
        external=list(params.get('external') or []) + _network.criu_externals(network),
        network_lock=params.get('network_lock') or 'nftables',
        tcp_established=bool(params.get('tcp_established')),
        tcp_close=bool(params.get('tcp_close')) or None,
        manage_cgroups=True,
        manage_cgroups_mode=params.get('manage_cgroups_mode') or 'soft',
        rst_sibling=True,
        shell_job=False,
        # handoff: the tree stays stopped until the source commits (see _handoff.py)
        leave_stopped=True if params.get('hold') == 'stopped' else None,
        # post-copy: missing pages come through userfaultfd from the lazy-pages daemon
        lazy_pages=True if params.get('lazy_pages') else None,
    )
    existed = cg is not None
    try:
        res = session.restore(options)
    except HaulError:
        _cleanup_restore(cgroup_path, existed, cgroup_mod)
        raise
    pid = res.get('pid')
    result.update(log_path=res['log_path'], duration=round(res['duration'], 3), pid=pid)
    try:
        _check_restored(pid, cgroup_path, params.get('check_timeout', 5))
        if params.get('hold') == 'stopped':
            _network.prepare_links(network, pid=pid)  # up, on no bridge: it goes live at the commit
    except HaulError:
        _cleanup_restore(cgroup_path, existed, cgroup_mod)
        raise
    if params.get('hold') != 'stopped':
        # CRIU resumed the tree: it goes on the network now
        _network.restore_neighbours(pid, network)
        result['announced'] = _network.go_live(network, None, pid)
    try:
        _write_marker(images_dir, {'pid': pid, 'starttime': proc_starttime(pid), 'host': _hostname(),
                                   'root': root, 'time': time.time()})
    except HaulError:
        if params.get('hold') == 'stopped':
            _cleanup_restore(cgroup_path, existed, cgroup_mod)  # a stopped copy never runs: it goes
        raise
    result['stats'] = _images.summarize_stats(_images.read_stats(images_dir, 'restore'))
    result['state'] = 'running'
    return result


def _hostname():
    return os.uname()[1]


def _check_restored(pid, cgroup_path, timeout):
    """The restored root pid is alive, not a zombie, and in the expected cgroup."""
    if not pid:
        raise HaulError('check', 'CRIU reported no pid for the restored tree')
    deadline = time.time() + timeout
    while True:
        st = proc_status(pid)
        if st is None or st.get('State', '').startswith(('Z', 'X')):
            raise HaulError('check', 'restored root pid %d died right after the restore' % pid)
        nspid = st.get('NSpid', [])
        cg = proc_cgroup_v2(pid)
        if len(nspid) > 1 and nspid[-1] == 1 and (cg is None or cg == cgroup_path):
            return
        if time.time() >= deadline:
            raise HaulError('check', 'restored root pid %d is in cgroup %s, not %s (NSpid %s)'
                            % (pid, cg, cgroup_path, ' '.join(str(x) for x in nspid)))
        time.sleep(0.01)


# --------------------------------------------------------------------------- host facts (criu_check)

PIPE_MAX_SIZE_LAZY = 8388608
CAP_SYS_RESOURCE = 24


def _meminfo():
    out = {}
    try:
        for line in _read_text('/proc/meminfo').splitlines():
            key, sep, value = line.partition(':')
            parts = value.split()
            if sep and parts:
                out[key] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == 'kB' else 1)
    except (IOError, OSError, ValueError):
        pass
    return out


def parse_cpuinfo(text):
    """CPU facts from /proc/cpuinfo text: vendor, family, model, model_name, stepping, count, flags_sha256."""
    import hashlib  # pylint: disable=import-outside-toplevel
    cpus = []
    cur = {}
    for line in text.splitlines():
        if not line.strip():
            if cur:
                cpus.append(cur)
                cur = {}
            continue
        key, sep, value = line.partition(':')
        if sep:
            cur[key.strip()] = value.strip()
    if cur:
        cpus.append(cur)
    first = cpus[0] if cpus else {}
    flags = sorted(set((first.get('flags') or first.get('Features') or '').split()))

    def num(key):
        try:
            return int(first.get(key), 0)
        except (TypeError, ValueError):
            return None

    return {
        'vendor': first.get('vendor_id') or first.get('CPU implementer'),
        'family': num('cpu family'),
        'model': num('model'),
        'model_name': first.get('model name'),
        'stepping': num('stepping'),
        'count': len([c for c in cpus if 'processor' in c]) or len(cpus),
        'flags_count': len(flags),
        'flags_sha256': hashlib.sha256(' '.join(flags).encode('ascii', 'replace')).hexdigest(),
    }


def _cap_eff():
    try:
        for line in _read_text('/proc/self/status').splitlines():
            if line.startswith('CapEff:'):
                return int(line.split()[1], 16)
    except (IOError, OSError, ValueError):
        pass
    return None


def _cgroup_facts(cgroup_mod):
    try:
        mounts = cgroup_mod.find_mounts()
    except HaulError as e:
        return {'error': e.cause}
    v2_freezer = False
    if mounts.v2:
        try:
            cands = [mounts.v2] + [os.path.join(mounts.v2, d) for d in os.listdir(mounts.v2)]
        except OSError:
            cands = [mounts.v2]
        v2_freezer = any(os.path.exists(os.path.join(c, 'cgroup.freeze')) for c in cands)
    v1_freezer = bool(mounts.freezer)
    if mounts.v2 and v1_freezer:
        layout = 'hybrid'
    elif mounts.v2:
        layout = 'v2'
    elif v1_freezer:
        layout = 'v1'
    else:
        layout = 'none'
    return {
        'layout': layout,
        'v2_mount': mounts.v2,
        'v1_freezer_mount': mounts.freezer,
        'v2_freezer': v2_freezer,
        'v1_freezer': v1_freezer,
        'freezer': v2_freezer or v1_freezer,
        'criu_freezer': 'v1' if v1_freezer else ('v2' if v2_freezer else None),
    }


def _fs_facts(path, images_mod):
    anc = images_mod.existing_ancestor(path)
    try:
        st = os.statvfs(anc)
    except OSError as e:
        return {'path': path, 'exists': False, 'error': str(e)}
    return {
        'path': path,
        'exists': os.path.isdir(path),
        'measured_at': anc,
        'free_bytes': st.f_bavail * st.f_frsize,
        'total_bytes': st.f_blocks * st.f_frsize,
    }


def gather_facts(params):
    """The criu_check module's logic: returns the ``haul_criu`` facts dict. Changes nothing."""
    import base64  # pylint: disable=import-outside-toplevel
    import tempfile  # pylint: disable=import-outside-toplevel
    from ansible_collections.haul.live.plugins.module_utils import _images  # pylint: disable=import-outside-toplevel
    from ansible_collections.haul.live.plugins.module_utils import _cgroup as cgroup_mod  # pylint: disable=import-outside-toplevel

    facts = {'kernel': os.uname()[2], 'arch': os.uname()[4], 'hostname': os.uname()[1], 'problems': []}
    problems = facts['problems']

    session = None
    try:
        session = CriuSession(criu_path=params.get('criu_path'))
        facts['criu_path'] = session.criu_path
        mod = session.pycriu
        facts['pycriu_version'] = getattr(getattr(mod, 'version', None), '__version__', None)
        facts['criu_version'] = session.version()
        if compare_versions(facts['criu_version'], MIN_CRIU_VERSION) < 0:
            problems.append('criu %s is too old, need >= %s (%s)'
                            % (facts['criu_version'], format_version(MIN_CRIU_VERSION), PACKAGE_HINT))
    except HaulError as e:
        problems.append(e.msg)
        facts.setdefault('criu_path', None)
        facts.setdefault('criu_version', None)
        facts.setdefault('pycriu_version', None)
        if params.get('fail_on_missing', True):
            raise
        session = None if not facts.get('criu_version') else session

    feats = {}
    if session is not None and params.get('features', True):
        feats = session.check_features()
    facts['features'] = feats

    facts['cgroup'] = _cgroup_facts(cgroup_mod)
    if not facts['cgroup'].get('freezer'):
        problems.append('no cgroup freezer (neither cgroup v2 cgroup.freeze nor the v1 freezer)')

    try:
        pipe_max = int(_read_text('/proc/sys/fs/pipe-max-size').strip())
    except (IOError, OSError, ValueError):
        pipe_max = None
    cap = _cap_eff()
    has_sys_resource = bool(cap is not None and cap & (1 << CAP_SYS_RESOURCE))
    facts['pipe_max_size'] = pipe_max
    facts['pipe_max_size_ok'] = bool(has_sys_resource or (pipe_max or 0) >= PIPE_MAX_SIZE_LAZY)
    facts['cap_sys_resource'] = has_sys_resource
    facts['lazy_pages_possible'] = bool(feats.get('uffd_noncoop') and feats.get('lazy_pages', True)
                                        and facts['pipe_max_size_ok'])
    facts['precopy_possible'] = bool(feats.get('mem_dirty_track'))
    from ansible_collections.haul.live.plugins.module_utils import _compat  # pylint: disable=import-outside-toplevel
    facts['sockets_supported'], why = _compat.sockets_support(facts['kernel'], facts.get('criu_version'))
    if why:
        facts['sockets_reason'] = why
    if feats and not feats.get('mem_dirty_track'):
        facts['precopy_impossible_reason'] = ('the kernel has no memory dirty tracking '
                                              '(built without CONFIG_MEM_SOFT_DIRTY)')

    try:
        cpu = parse_cpuinfo(_read_text('/proc/cpuinfo'))
    except (IOError, OSError):
        cpu = {}
    tmp = None
    if session is not None:
        try:
            tmp = tempfile.mkdtemp(prefix='haul-cpuinfo-')
            img = session.cpuinfo_dump(tmp)
            with open(img, 'rb') as f:
                cpu['cpuinfo_image'] = base64.b64encode(f.read()).decode('ascii')
            check_img = params.get('cpuinfo_check_image')
            check_dir = params.get('cpuinfo_check_dir')
            if check_img or check_dir:
                cdir = os.path.join(tmp, 'check')
                os.mkdir(cdir, 0o700)
                data = base64.b64decode(check_img) if check_img else None
                if data is None:
                    with open(os.path.join(check_dir, 'cpuinfo.img'), 'rb') as f:
                        data = f.read()
                with open(os.path.join(cdir, 'cpuinfo.img'), 'wb') as f:
                    f.write(data)
                ok, why = session.cpuinfo_check(cdir)
                facts['cpu_compatible'] = ok
                facts['cpu_incompatible_reason'] = why
        except (HaulError, IOError, OSError, ValueError, TypeError) as e:
            facts['cpu_compatible'] = facts.get('cpu_compatible')
            problems.append('cpuinfo: %s' % (e.msg if isinstance(e, HaulError) else e))
        finally:
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)
    facts['cpu'] = cpu

    mem = _meminfo()
    facts['mem_available'] = mem.get('MemAvailable')
    facts['mem_total'] = mem.get('MemTotal')
    if params.get('images_dir'):
        facts['images_dir'] = _fs_facts(params['images_dir'], _images)
    facts['usable'] = not problems or all(p.startswith('cpuinfo') for p in problems)
    return facts
