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
* :class:`_criu_options.CriuOptions` (its own module): a plain-Python description
  of one CRIU request's options, which a session sends.
* :class:`CriuSession`: one images directory, one CRIU binary; ``dump()``,
  ``pre_dump()``, ``restore()``, ``version()``, ``check_features()``,
  ``cpuinfo_dump()``, ``cpuinfo_check()``. Every CRIU failure becomes a
  :class:`HaulError` whose cause is CRIU's error plus the most telling
  ``Error`` line of the CRIU log (never the whole log), with ``log`` = the log
  path so that the module result carries the log tail.

What uses it: :mod:`_checkpoint` (criu_dump), :mod:`_restore` (criu_restore),
:mod:`_facts` (criu_check), :mod:`_precopy`, :mod:`_postcopy` (the lazy dump) and
:mod:`_lazy_pages` (the destination's daemon); /proc helpers are in :mod:`_proc`.

Design notes (pre-copy, post-copy):

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
from ansible_collections.haul.live.plugins.module_utils._criu_options import LOG_LEVEL

MIN_CRIU_VERSION = (4, 0, 0)
PACKAGE_HINT = 'install criu >= 4.0 and python3-pycriu (python3-criu on Fedora/RHEL)'

# Where criu lives when /usr/sbin is not in PATH (non-login SSH shells).
CRIU_SEARCH_PATHS = ('/usr/sbin/criu', '/usr/local/sbin/criu', '/sbin/criu', '/usr/bin/criu',
                     '/usr/local/bin/criu')
LOG_NAMES = {
    'dump': 'dump.log',
    'pre-dump': 'pre-dump.log',
    'restore': 'restore.log',
    'cpuinfo-dump': 'cpuinfo-dump.log',
    'cpuinfo-check': 'cpuinfo-check.log',
}

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


def open_session(images_dir, criu_path=None, pycriu_mod=None):
    """A :class:`CriuSession` with pycriu imported and a CRIU recent enough (HaulError otherwise).

    Its version is asked once per binary and process (``CriuSession.version``): use
    ``session.version()`` afterwards."""
    session = CriuSession(images_dir, criu_path=criu_path, pycriu_mod=pycriu_mod)
    session.pycriu  # pylint: disable=pointless-statement
    session.require_version()
    return session
