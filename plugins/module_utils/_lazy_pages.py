# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Post-copy, destination side: the lazy-pages daemon (``criu lazy-pages``).

:func:`lazy_pages_spawn` / :func:`start_lazy_pages` start the daemon detached (see
:mod:`_supervisor`), connected to the source's page server; :func:`stop_lazy_pages`
ends it; :func:`restore_lazy` is criu_restore with ``lazy_pages``. The source side
(the lazy dump) is in :mod:`_postcopy`.

This is a private module_util: it is not part of the collection's public API.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import select
import signal
import subprocess
import time

from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.module_utils import _images, _network, _restore
from ansible_collections.haul.live.plugins.module_utils._criu import telling_error
from ansible_collections.haul.live.plugins.module_utils._postcopy import security_of
from ansible_collections.haul.live.plugins.module_utils._proc import kill_tree, open_pidfd, pid_alive, proc_cmdline, tcp_connected, wait_pid_exit
from ansible_collections.haul.live.plugins.module_utils._supervisor import (
    _Gated,
    read_state,
    spawn_detached,
    state_path,
    wait_status_fd,
    write_state,
)
LAZY_PAGES_LOG = 'lazy-pages.log'
LAZY_PAGES_SOCKET = 'lazy-pages.socket'


# --------------------------------------------------------------------------- destination: lazy-pages daemon

def lazy_pages_argv(criu_path, images_dir, address, port, status_fd, tls=True, tls_cacert=None,
                    tls_cert=None, tls_key=None, tls_no_cn_verify=False, log_level=4,
                    log_file=LAZY_PAGES_LOG):
    """argv of ``criu lazy-pages`` against the page server at address:port."""
    argv = [criu_path, 'lazy-pages', '--page-server', '--address', str(address), '--port', str(int(port)),
            '--images-dir', images_dir, '--work-dir', images_dir, '--status-fd', str(int(status_fd)),
            '--log-file', log_file, '-v%d' % int(log_level)]
    if tls:
        argv.append('--tls')
        for flag, value in (('--tls-cacert', tls_cacert), ('--tls-cert', tls_cert), ('--tls-key', tls_key)):
            if value:
                argv.extend([flag, value])
        if tls_no_cn_verify:
            argv.append('--tls-no-cn-verify')
    elif any((tls_cacert, tls_cert, tls_key)):
        raise HaulError('options', 'tls_cacert, tls_cert or tls_key given with tls false')
    return argv


def remove_unserved(images_dirs, migration_id=None, check_mode=False):
    """Remove the images directories of ``images_dirs`` that haul.live made (their marker; of
    ``migration_id`` when given), except one that a lazy-pages daemon still serves a restored
    container from. Returns (removed paths, kept [{path, why}])."""
    removed, kept = [], []
    for d in images_dirs:
        if find_lazy_pages(d):
            kept.append({'path': d, 'why': 'a lazy-pages daemon still serves the container from %s' % d})
            continue
        done, why = _images.remove_ours(d, migration_id=migration_id, check_mode=check_mode)
        if done:
            removed.append(d)
        elif why:
            kept.append({'path': d, 'why': why})
    return removed, kept


def find_lazy_pages(images_dir):
    """The running lazy-pages daemon for ``images_dir``: its state dict (with pid), or None.

    Found through the state file that :func:`start_lazy_pages` writes, and checked
    against /proc (the pid must still run ``criu lazy-pages`` for that directory).
    """
    st = read_state(state_path(images_dir, 'lazy-pages'))
    if not st or st.get('state') != 'running':
        return None
    pid = st.get('pid')
    argv = proc_cmdline(pid) if pid_alive(pid) else []
    if 'lazy-pages' in argv and os.path.abspath(images_dir) in argv:
        return st
    return None


def start_lazy_pages(criu_path, images_dir, address, port, ready_timeout=30, tls=True, tls_cacert=None,
                     tls_cert=None, tls_key=None, tls_no_cn_verify=False):
    """Start ``criu lazy-pages`` detached; return once it is ready (status fd).

    Returns {'pid', 'supervisor_pid', 'log_path', 'ready_ms', 'argv', 'state_file'}.
    Raises HaulError('lazy-pages', ...) with the telling line of its log when it
    fails or is not ready in time; nothing is left running then.
    """
    return lazy_pages_spawn(criu_path, images_dir, address, port, ready_timeout, tls, tls_cacert, tls_cert,
                            tls_key, tls_no_cn_verify).go()


class LazyPages(_Gated):
    """The supervisor of a lazy-pages daemon, started by :func:`lazy_pages_spawn`."""

    CANCELLED = ('cancelled',)

    def __init__(self, rfd, sup, go_fd, info):
        self.rfd, self.sup, self.go_fd = rfd, sup, go_fd
        self.info = info

    def go(self):
        """Start the daemon of a gated supervisor, then wait until it is ready (see :func:`start_lazy_pages`)."""
        info = self.info
        start = time.time()
        self._release()
        rep = self._report(info['ready_timeout'] + 5, 'criu lazy-pages')
        if not rep.get('ready'):
            log = info['log']
            raise HaulError('lazy-pages', 'criu lazy-pages against %s:%s failed: %s'
                            % (info['address'], info['port'], rep.get('error')), log=log if os.path.exists(log) else None)
        rep.update(ready_ms=round((time.time() - start) * 1000, 1), argv=info['argv'], state_file=info['sfile'])
        return rep

    def _state_file(self):
        return self.info['sfile']


def lazy_pages_spawn(criu_path, images_dir, address, port, ready_timeout=30, tls=True, tls_cacert=None,
                     tls_cert=None, tls_key=None, tls_no_cn_verify=False, gated=False):
    """The supervisor of :func:`start_lazy_pages`, as a :class:`LazyPages`.

    ``gated``: the supervisor starts now but starts the daemon only on :meth:`LazyPages.go`
    (a handoff's destination prepares it before the images come); :meth:`LazyPages.cancel`, or
    this process ending, calls it off.
    """
    images_dir = os.path.abspath(images_dir)
    log = os.path.join(images_dir, LAZY_PAGES_LOG)
    sfile = state_path(images_dir, 'lazy-pages')
    for stale in (log, os.path.join(images_dir, LAZY_PAGES_SOCKET), sfile):
        try:
            os.unlink(stale)
        except OSError:
            pass
    # the argv for the result (the status fd number is the supervisor's)
    probe_argv = lazy_pages_argv(criu_path, images_dir, address, port, 0, tls, tls_cacert, tls_cert,
                                 tls_key, tls_no_cn_verify)
    go_r = go_w = None
    if gated:
        go_r, go_w = os.pipe()

    def job(report):
        if go_r is not None:
            if os.read(go_r, 1) != b'g':
                return {'rc': 1, 'state': 'cancelled', 'error': 'called off before the daemon started'}
            os.close(go_r)
        rfd, wfd = os.pipe()
        argv = lazy_pages_argv(criu_path, images_dir, address, port, wfd, tls, tls_cacert, tls_cert,
                               tls_key, tls_no_cn_verify)
        # a daemon that outlives the module and must hand us its status fd: Popen, not run_command
        proc = subprocess.Popen(argv, pass_fds=(wfd,), cwd=images_dir,  # pylint: disable=ansible-bad-function
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(wfd)
        write_state(sfile, {'state': 'starting', 'pid': proc.pid, 'supervisor_pid': os.getpid(),
                            'images_dir': images_dir, 'address': address, 'port': port, 'tls': bool(tls)})
        try:
            ok = wait_status_fd(rfd, ready_timeout, 'criu lazy-pages')
        except HaulError as e:
            proc.kill()
            proc.wait()
            report(dict(ready=False, error=e.cause, log_path=log))
            return {'rc': proc.returncode, 'error': e.cause, 'pid': proc.pid, 'log_path': log}
        finally:
            os.close(rfd)
        if not ok:
            rc = proc.wait()
            why = lazy_pages_error(log) or 'it exited with %s before it was ready' % rc
            report(dict(ready=False, error=why, log_path=log, rc=rc))
            return {'rc': rc, 'error': why, 'pid': proc.pid, 'log_path': log}
        write_state(sfile, {'state': 'running', 'pid': proc.pid, 'supervisor_pid': os.getpid(),
                            'images_dir': images_dir, 'address': address, 'port': port, 'tls': bool(tls),
                            'log_path': log})
        report(dict(ready=True, pid=proc.pid, log_path=log))
        rc = proc.wait()
        res = {'rc': rc, 'pid': proc.pid, 'log_path': log, 'images_dir': images_dir}
        if rc != 0:
            res['error'] = lazy_pages_error(log) or (
                'criu lazy-pages was killed by signal %d' % -rc if rc < 0 else 'criu lazy-pages exited with %s' % rc)
        return res

    try:
        rfd, sup = spawn_detached(job, sfile, keep_fds=[go_r] if gated else ())
    except BaseException:
        for fd in (go_r, go_w):
            if fd is not None:
                os.close(fd)
        raise
    if go_r is not None:
        os.close(go_r)
    return LazyPages(rfd, sup, go_w, dict(log=log, sfile=sfile, argv=probe_argv, address=address, port=port,
                                          ready_timeout=ready_timeout))


def stop_lazy_pages(images_dir, timeout=10):
    """Stop the lazy-pages daemon of ``images_dir``; returns its pid, or None if none ran."""
    st = find_lazy_pages(images_dir)
    if not st:
        return None
    pid = st['pid']
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return pid
    try:
        wait_pid_exit(pid, timeout)
    except HaulError:
        kill_tree(pid)
        wait_pid_exit(pid, 5)
    sup = st.get('supervisor_pid')
    if sup:
        try:
            wait_pid_exit(sup, 5)
        except HaulError:
            pass
    return pid


def wait_lazy_pages_connected(images_dir, timeout=10):
    """After a lazy restore (tasks still stopped): wait until the daemon reached the page server.

    CRIU's lazy-pages daemon connects to the page server only once the restore has
    handed it the userfaultfds, so an unreachable page server shows here, not when
    the daemon starts. Returns when the daemon holds an established connection to it
    (or has already finished with success); raises HaulError('page-server', ...) with
    the telling line of its log when it exits with an error or does not connect in
    ``timeout`` seconds. Waits on the daemon's pidfd in 5 ms slices (no status fd
    exists for this).
    """
    st = read_state(state_path(images_dir, 'lazy-pages'))
    if not st or not st.get('pid'):
        raise HaulError('page-server', 'no lazy-pages daemon was started for %s' % images_dir)
    pid, address, port = st['pid'], st.get('address'), st.get('port')
    log = os.path.join(images_dir, LAZY_PAGES_LOG)
    fd = open_pidfd(pid)
    deadline = time.time() + timeout
    try:
        while True:
            if not pid_alive(pid):
                why, final = _ended_lazy_pages(images_dir, st.get('supervisor_pid'), address, port)
                if why is None:
                    return final
                raise HaulError('page-server', why, log=log if os.path.exists(log) else None)
            if tcp_connected(pid, address, port):
                return st
            if time.time() >= deadline:
                raise HaulError('page-server', 'the lazy-pages daemon did not connect to the page server at %s:%s '
                                'within %ss' % (address, port, timeout), log=log if os.path.exists(log) else None)
            if fd is not None:
                select.select([fd], [], [], 0.005)
            else:
                time.sleep(0.005)
    finally:
        if fd is not None:
            os.close(fd)


def restored_at(images_dir):
    """When criu_restore finished restoring from ``images_dir`` (epoch seconds from restore.json), or None."""
    st = read_state(os.path.join(images_dir, 'restore.json'))
    return (st or {}).get('time')


# --------------------------------------------------------------------------- module logic: criu_restore lazy

def _ended_lazy_pages(images_dir, sup, address, port):
    """After the lazy-pages daemon of ``images_dir`` ended: reap its supervisor ``sup`` and return
    (None, final state) when it succeeded, else (why it failed, final state)."""
    if sup:
        try:
            wait_pid_exit(sup, 5)
        except HaulError:
            pass
    final = read_state(state_path(images_dir, 'lazy-pages')) or {}
    if final.get('rc') == 0:
        return None, final
    log = os.path.join(images_dir, LAZY_PAGES_LOG)
    return ('the lazy-pages daemon could not get the pages from %s:%s: %s'
            % (address, port, lazy_pages_error(log) or final.get('error') or 'it exited')), final


def _lazy_pages_failure(images_dir, daemon):
    """Why the lazy-pages daemon of ``images_dir`` failed (it no longer runs), or None."""
    if not daemon or find_lazy_pages(images_dir):
        return None
    return _ended_lazy_pages(images_dir, daemon.get('supervisor_pid'), daemon.get('address'), daemon.get('port'))[0]


def lazy_pages_error(log):
    """The telling line of a lazy-pages log: an Error line, else its last "Can't ..." line, or None."""
    line = telling_error(log)
    if line:
        return line
    try:
        with open(log, 'rb') as f:
            lines = f.read().decode('utf-8', 'replace').splitlines()
    except (IOError, OSError):
        return None
    for raw in reversed(lines):
        text = raw.split(')', 1)[-1].strip() if raw.startswith('(') else raw.strip()
        if text.startswith(("Can't", 'Unable', 'Failed', 'uffd: Failed')):
            return text[:300]
    return None


def restore_lazy(params, check_mode=False, diff=False):
    """criu_restore with ``lazy_pages``: restore through the lazy-pages daemon (userfaultfd).

    Requires the daemon of M(lazy_pages) for the same images dir. Runs
    ``_restore.restore_container`` with ``lazy_pages=True``. With ``hold='stopped'`` (a handoff)
    the tree is left stopped once the daemon is connected; else it is resumed.
    """
    images_dir = os.path.abspath(params['images_dir'])
    daemon = find_lazy_pages(images_dir)
    if daemon is None and not check_mode and not _restore._read_marker(images_dir):  # pylint: disable=protected-access
        raise HaulError('restore', 'no lazy-pages daemon runs for %s: start it with haul.live.lazy_pages first'
                        % images_dir)
    from ansible_collections.haul.live.plugins.module_utils import _cgroup as cgroup_mod  # pylint: disable=import-outside-toplevel
    # Restore the tree stopped, check that the daemon reached the page server, then resume it
    # (unless the caller holds it stopped, as a handoff does until the source commits): a tree
    # resumed with a daemon that cannot get its pages would run on missing memory.
    try:
        result = _restore.restore_container(dict(params, hold='stopped', lazy_pages=True), check_mode=check_mode,
                                            diff=diff)
    except HaulError as e:
        # CRIU fails the restore when the daemon is gone (it could not reach the page server)
        why = _lazy_pages_failure(images_dir, daemon)
        stop_lazy_pages(images_dir)
        if why:
            raise HaulError('restore', '%s; the restored copy was removed before it ran, the source still holds '
                            'the container (abort its lazy dump and thaw it to roll back); CRIU: %s'
                            % (why, e.cause), log=os.path.join(images_dir, LAZY_PAGES_LOG), restore_log=e.log)
        raise
    result['lazy_pages'] = True
    if result.get('changed') and not check_mode:
        cg, pids, dummy = _restore._running_container(result['cgroup'], cgroup_mod)  # pylint: disable=protected-access
        try:
            wait_lazy_pages_connected(images_dir, timeout=params.get('connect_timeout') or 10)
        except HaulError as e:
            # the restored copy never ran: kill it; the source still holds every page
            if cg is not None:
                try:
                    cg.kill(timeout=10)
                    cg.remove()
                except HaulError:
                    pass
            try:
                os.unlink(os.path.join(images_dir, 'restore.json'))
            except OSError:
                pass
            stop_lazy_pages(images_dir)
            raise HaulError('restore', '%s; the restored copy was killed before it ran, the source still holds '
                            'the container (abort its lazy dump and thaw it to roll back)' % e.cause, log=e.log)
        if params.get('hold') == 'stopped':
            result['state'] = 'restored'
        else:
            result['announced'] = _network.go_live(result.get('network'), lambda: cgroup_mod.sigcont_tree(pids),
                                                   result.get('pid'))
            result['state'] = 'running'
    if daemon:
        result['lazy_pages_pid'] = daemon.get('pid')
        result['tls'] = bool(daemon.get('tls'))
        result['security'] = security_of(daemon.get('tls'))
    return result
