# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Post-copy (lazy pages) building blocks.

This is a private module_util: it is not part of the collection's public API.

A post-copy migration, module by module::

    source       criu_dump lazy: the tree is dumped without its memory; a background
                 CRIU keeps the tasks frozen and serves their pages (page server).
                 Returns once the page server is ready (CRIU's status fd).
    source       image_sync of the (small) images dir and of the root filesystem.
    destination  lazy_pages: ``criu lazy-pages --page-server`` detached, connected to
                 the source's page server. Returns once ready (status fd).
    destination  criu_restore lazy_pages=true: the tree is restored stopped; once the
                 daemon has connected to the page server (CRIU's daemon connects only
                 when the restore hands it the userfaultfds, so an unreachable page
                 server shows here) the tree is resumed. Missing pages come through
                 userfaultfd from the daemon, which also pulls the rest.
    either       lazy_pages state=finished (destination) or wait_transfer (source):
                 wait until every page has moved; both CRIU processes then exit, and
                 the source tasks are gone.

Background processes (the source's lazy dump, the destination's daemon) are started
by :func:`spawn_supervised`: a detached supervisor (new session, stdio on
/dev/null, so that Ansible's connection never waits for it) runs the job, reports
readiness or failure on a pipe to the module, then waits for the job's end and writes
its exit status to a state file ``<images_dir>.postcopy/<job>.json``.
:func:`wait_transfer` waits on the supervisor's pid with a pidfd (no sleeps when the
kernel has pidfd_open) and then reads that state file.

ROLLBACK RULE (post-copy)
-------------------------

* Until the destination has resumed the container (criu_restore lazy_pages succeeded:
  the tree was restored stopped, the daemon reached the page server, then the tree was
  resumed), the source is the container: any failure (dump, sync, lazy-pages daemon,
  restore) stops the post-copy, the destination's copy is removed before it ever ran
  (criu_restore does that), and the source may be resumed: its lazy dump is aborted
  (lazy_pages state=absent on the source) and its cgroup thawed (cgroup_thaw).
* Once the destination has resumed, the source NEVER resumes: its memory is now split
  between both hosts, so a resumed source would be a second, diverging copy (split
  brain). From then on the only way forward is to finish the transfer.
  Enforced on the source: CRIU resumes the tasks whenever its page server fails, so
  once the page server is ready the supervisor also freezes the container's cgroup v2
  (cgroup.freeze); a failed or aborted lazy dump leaves the source frozen
  (``source: frozen`` in its state), never running. Only the caller, which knows
  whether the destination resumed, thaws it (before) or kills it (after).
* Only the destination's daemon exiting with 0 proves that every page moved: CRIU's
  page server takes a closed connection for the end of the transfer, so the source's
  lazy dump may end "successfully" (and CRIU kill the source tasks) when the daemon was
  killed mid-transfer (seen on the lab). The source never runs again either way.
* If the transfer breaks after that point (source host or page server dies, network
  cut, daemon killed, timeout), the container is LOST: the destination's tasks block on
  pages that will never come. :func:`wait_transfer` (lazy_pages state=finished) then
  raises HaulError('transfer', ...) saying so and why (exit status, the telling line
  of the CRIU log). The caller kills the source's frozen remains and the destination's
  stuck copy. This is post-copy's known risk: it trades a short freeze for the
  dependence on both hosts until the last page has moved.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import re
import select
import signal
import subprocess
import time

from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.module_utils import _network
from ansible_collections.haul.live.plugins.module_utils._criu import telling_error

DEFAULT_PORT = 27100
STATE_SUFFIX = '.postcopy'
LAZY_PAGES_LOG = 'lazy-pages.log'
LAZY_PAGES_SOCKET = 'lazy-pages.socket'


# --------------------------------------------------------------------------- paths, state

def state_dir(images_dir):
    """``<images_dir>.postcopy``: state files of the background jobs (outside the images)."""
    return os.path.abspath(images_dir).rstrip('/') + STATE_SUFFIX


def state_path(images_dir, job):
    return os.path.join(state_dir(images_dir), job + '.json')


def read_state(path):
    """The JSON state of a job, or None when missing or unreadable."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (IOError, OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_state(path, data):
    """Write a job's state atomically."""
    d = os.path.dirname(path)
    if not os.path.isdir(d):
        os.makedirs(d, 0o700)
        if d.endswith(STATE_SUFFIX):  # an images dir's state dir: haul.live made it, clean-up may remove it
            from ansible_collections.haul.live.plugins.module_utils import _images  # pylint: disable=import-outside-toplevel
            _images.write_marker(d)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(data, f, sort_keys=True)
    os.rename(tmp, path)


def _forget(path, states):
    """Remove the state file ``path`` when its job ended in one of ``states`` (and its directory
    when that leaves it empty): a job called off before it started leaves nothing behind."""
    if (read_state(path) or {}).get('state') not in states:
        return
    try:
        os.unlink(path)
        d = os.path.dirname(path)
        if os.listdir(d) == ['.haul-images']:  # only haul.live's own marker is left (_images.MARKER)
            os.unlink(os.path.join(d, '.haul-images'))
        os.rmdir(d)
    except OSError:
        pass


def pid_alive(pid):
    """Whether pid exists and is not a zombie."""
    if not pid:
        return False
    try:
        with open('/proc/%d/stat' % int(pid)) as f:
            st = f.read().rsplit(')', 1)[1].split()[0]
    except (IOError, OSError, IndexError, ValueError):
        return False
    return st not in ('Z', 'X')


def proc_cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % int(pid), 'rb') as f:
            return [a.decode('utf-8', 'replace') for a in f.read().split(b'\0') if a]
    except (IOError, OSError, ValueError):
        return []


# --------------------------------------------------------------------------- status fds

def wait_status_fd(fd, timeout, what='CRIU'):
    """Wait for CRIU's readiness byte on ``fd``, no sleeps.

    Returns True when a byte came, False on EOF (the writer exited without one).
    Raises HaulError('ready', ...) after ``timeout`` seconds.
    """
    ready, dummy, dummy2 = select.select([fd], [], [], timeout)
    if not ready:
        raise HaulError('ready', '%s not ready after %ss' % (what, timeout))
    return bool(os.read(fd, 1))


def read_report(fd, timeout, what='background job'):
    """One JSON line from a supervisor's report pipe, within ``timeout`` seconds.

    EOF without a line means the supervisor died: HaulError('ready', ...).
    """
    buf = b''
    deadline = time.time() + timeout
    while b'\n' not in buf:
        left = deadline - time.time()
        if left <= 0:
            raise HaulError('ready', '%s not ready after %ss' % (what, timeout))
        ready, dummy, dummy2 = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            raise HaulError('ready', '%s exited without a report' % what)
        buf += chunk
    try:
        return json.loads(buf.split(b'\n', 1)[0].decode('utf-8', 'replace'))
    except ValueError:
        raise HaulError('ready', '%s sent a bad report: %r' % (what, buf[:200]))


# --------------------------------------------------------------------------- supervisor

def _detach_stdio(keep):
    """In a supervisor: stdio on /dev/null, every other fd closed except ``keep``."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)
    top = 1024
    try:
        top = max(top, os.sysconf('SC_OPEN_MAX'))
    except (ValueError, OSError):
        pass
    top = min(top, 65536)
    keep = sorted(set(fd for fd in keep if fd > 2))
    low = 3
    for fd in keep + [top]:
        if low < fd:
            os.closerange(low, fd)
        low = fd + 1


def spawn_supervised(job, state_file, ready_timeout, what='background job', keep_fds=()):
    """Run ``job(report)`` in a detached supervisor; return its first report (a dict).

    ``job`` runs in a grandchild of this process, in a new session, with stdio on
    /dev/null (so that an Ansible connection does not wait for it). It must call
    ``report(dict)`` once when ready (or failed), and return the final state (a dict,
    with ``rc``), which is written to ``state_file`` with the supervisor's times.
    The returned report gets ``supervisor_pid``. Raises HaulError('ready', ...) when no
    report comes within ``ready_timeout`` (the supervisor is then killed).
    """
    rfd, sup = spawn_detached(job, state_file, keep_fds)
    return collect_report(rfd, sup, ready_timeout, what)


def spawn_detached(job, state_file, keep_fds=()):
    """The first half of :func:`spawn_supervised`: start the supervisor running ``job``;
    return ``(report fd, supervisor pid)`` for :func:`collect_report`. A job whose final state
    is ``cancelled`` (called off before it started anything) leaves no state file."""
    rfd, wfd = os.pipe()
    pid_r, pid_w = os.pipe()
    first = os.fork()
    if first == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            os.close(rfd)
            os.close(pid_r)
            os.setsid()
            second = os.fork()
            if second != 0:
                os.write(pid_w, ('%d\n' % second).encode('ascii'))
                os._exit(0)
            os.close(pid_w)
            _detach_stdio([wfd] + list(keep_fds))
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            sent = []

            def report(data):
                if not sent:
                    sent.append(True)
                    try:
                        os.write(wfd, (json.dumps(data, sort_keys=True) + '\n').encode('utf-8'))
                    except OSError:
                        pass  # nobody reads any more (called off, or the module is gone): the state file says it
                    os.close(wfd)

            started = time.time()
            try:
                final = job(report) or {}
            except HaulError as e:
                final = {'rc': 1, 'error': e.msg, 'log_path': e.log}
                report(dict(ready=False, error=e.msg, log_path=e.log))
            except BaseException as e:  # pylint: disable=broad-except
                final = {'rc': 1, 'error': 'supervisor: %s' % e}
                report(dict(ready=False, error='supervisor: %s' % e))
            final.update(started=started, ended=time.time(), supervisor_pid=os.getpid())
            final.setdefault('state', 'finished' if final.get('rc') == 0 else 'failed')
            if final['state'] != 'cancelled':  # called off before it started: nothing to record
                write_state(state_file, final)
        except BaseException:  # pylint: disable=broad-except
            code = 1
        finally:
            os._exit(code)
    os.close(wfd)
    os.close(pid_w)
    try:
        os.waitpid(first, 0)
        sup = None
        try:
            line = os.read(pid_r, 64).decode('ascii').strip()
            sup = int(line) if line else None
        except (OSError, ValueError):
            sup = None
    except BaseException:
        os.close(rfd)
        raise
    finally:
        os.close(pid_r)
    return rfd, sup


def collect_report(rfd, sup, ready_timeout, what='background job'):
    """The first report of a supervisor started by :func:`spawn_detached` (closes ``rfd``).

    Raises HaulError('ready', ...) when none comes within ``ready_timeout`` (the supervisor is
    then killed).
    """
    try:
        rep = read_report(rfd, ready_timeout, what)
    except HaulError:
        if sup and pid_alive(sup):
            _kill_tree(sup)
        raise
    finally:
        os.close(rfd)
    rep['supervisor_pid'] = sup
    return rep


def _kill_tree(pid, sig=signal.SIGKILL):
    """Kill a process and its descendants (found through /proc/*/stat's ppid)."""
    children = {}
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % name) as f:
                ppid = int(f.read().rsplit(')', 1)[1].split()[1])
        except (IOError, OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(name))
    todo, seen = [int(pid)], []
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo.extend(children.get(p, []))
    for p in seen:
        try:
            os.kill(p, sig)
        except OSError:
            pass
    return seen


# --------------------------------------------------------------------------- source: lazy dump

def _v2_freeze(path, frozen):
    """Write cgroup.freeze of a cgroup v2 directory; True when written."""
    if not path:
        return False
    try:
        with open(os.path.join(path, 'cgroup.freeze'), 'w') as f:
            f.write('1' if frozen else '0')
    except (IOError, OSError):
        return False
    return True


def _cgroup_pids(path):
    """The pids listed in a cgroup directory (``cgroup.procs``, else v1 ``tasks``), recursively."""
    pids = set()
    for dirpath, dummy, files in os.walk(path):
        name = 'cgroup.procs' if 'cgroup.procs' in files else 'tasks' if 'tasks' in files else None
        if not name:
            continue
        try:
            with open(os.path.join(dirpath, name)) as f:
                pids.update(int(x) for x in f.read().split() if x.isdigit())
        except (IOError, OSError):
            continue
    return sorted(pids)


def hold(path, frozen):
    """Hold (or release) the source's tasks against CRIU resuming them when its page server fails.

    ``path`` is the container's cgroup v2 directory (``cgroup.freeze``: a freezer that CRIU, which
    uses the v1 freezer on a hybrid host or thaws through its own freeze cgroup, does not undo), or,
    on a host with only the cgroup v1 freezer, its v1 freezer directory. There CRIU's failure path
    thaws that very freezer, so the hold is SIGSTOP to every task (a stop signal stays pending while
    the tasks are frozen or traced, and stops them once CRIU has let them go); the release is
    SIGCONT. Returns how it holds: ``'v2'``, ``'v1-sigstop'``, or None when it cannot.
    """
    if not path:
        return None
    if os.path.exists(os.path.join(path, 'cgroup.freeze')):
        return 'v2' if _v2_freeze(path, frozen) else None
    if os.path.exists(os.path.join(path, 'freezer.state')):
        sig = signal.SIGSTOP if frozen else signal.SIGCONT
        pids = _cgroup_pids(path)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        return 'v1-sigstop' if pids else None
    return None


def lazy_dump_start(session, options, images_dir, ready_timeout=60, hold_cgroup=None):
    """Start a lazy dump (``options.lazy_pages`` with ``page_server``) in the background.

    Uses :meth:`CriuSession.dump_lazy_start` inside a detached supervisor, which waits
    for the dump's end (every page served, or failure) and records it in
    ``state_path(images_dir, 'dump')``. Returns {'supervisor_pid', 'dump_pid',
    'log_path', 'ready_ms', 'state_file', 'held'}; HaulError('dump', ...) when the dump
    fails or is not ready in ``ready_timeout`` seconds (CRIU then resumes the source).

    ``hold_cgroup``: the container's cgroup v2 directory. Once the page server is
    ready, the supervisor also freezes it there (``cgroup.freeze``), so that CRIU
    cannot resume the source on its own if the transfer breaks later (CRIU resumes
    the tasks whenever its page server fails, even after the destination has resumed).
    On success CRIU kills the tasks (SIGKILL goes through the v2 freezer); on failure
    they stay frozen and the state says ``source: frozen``: the caller thaws them
    (the destination never resumed) or kills them (it did: the container is lost).
    """
    return lazy_dump_spawn(session, options, images_dir, ready_timeout, hold_cgroup).go()


def _gate(session, go_fd, armed_fd):
    """Make ``session``'s next CRIU request start its ``criu swrk`` at once, say so with a byte on
    ``armed_fd``, then wait for a byte on ``go_fd`` before it sends the request (EOF:
    HaulError, nothing is sent)."""
    plain = session._client  # pylint: disable=protected-access

    def client():
        c = plain()
        try:
            c.sk = c._comm.connect(False)  # pylint: disable=protected-access
        except Exception:  # pylint: disable=broad-except
            c.sk = None  # pycriu without these internals: it starts criu itself, after the gate
        try:
            os.write(armed_fd, b'a')
            os.close(armed_fd)
        except OSError:
            pass
        if os.read(go_fd, 1) != b'g':
            raise HaulError('dump', 'the lazy dump was called off before it started')
        os.close(go_fd)
        return c
    session._client = client  # pylint: disable=protected-access


class _Gated(object):
    """A supervised job started gated (its work waits for :meth:`_release`): the parts
    :class:`LazyDump` and :class:`LazyPages` share. Subclasses set ``FDS`` (the pipe ends to close
    on :meth:`cancel`) and ``CANCELLED`` (the states that :meth:`cancel` forgets), and the
    attributes ``sup`` (supervisor pid), ``go_fd``, ``rfd`` and :meth:`_state_file`."""

    FDS = ('go_fd', 'rfd')
    CANCELLED = ()

    def _state_file(self):
        raise NotImplementedError

    def _release(self):
        """Let the job start; a supervisor that is gone is reported by :meth:`_report`."""
        if self.go_fd is not None:
            try:
                os.write(self.go_fd, b'g')
            except OSError:
                pass  # the supervisor is gone: its report (or its absence) says why
            finally:
                os.close(self.go_fd)
                self.go_fd = None

    def _report(self, timeout, what):
        rfd, self.rfd = self.rfd, None
        return collect_report(rfd, self.sup, timeout, what=what)

    def cancel(self):
        """Call off a gated job that has not started: nothing was touched."""
        for name in self.FDS:
            fd = getattr(self, name)
            setattr(self, name, None)
            if fd is not None:
                os.close(fd)
        if self.sup:
            try:
                wait_pid_exit(self.sup, 5)
            except HaulError:
                _kill_tree(self.sup)
                wait_pid_exit(self.sup, 5)
            _forget(self._state_file(), self.CANCELLED)


class LazyDump(_Gated):
    """A lazy dump's supervisor, started by :func:`lazy_dump_spawn`; :meth:`go` waits for its report."""

    FDS = ('go_fd', 'rfd', 'armed_fd')
    CANCELLED = ('failed', 'prepared')

    def __init__(self, rfd, sup, go_fd, sfile, ready_timeout, armed_fd=None):
        self.rfd, self.sup, self.go_fd, self.armed_fd = rfd, sup, go_fd, armed_fd
        self.sfile = sfile
        self.ready_timeout = ready_timeout

    def armed(self, timeout=5):
        """Wait (at most ``timeout`` seconds) until a gated dump's CRIU has started and waits for
        :meth:`go`; whether it did."""
        fd, self.armed_fd = self.armed_fd, None
        if fd is None:
            return False
        try:
            return bool(select.select([fd], [], [], timeout)[0]) and os.read(fd, 1) == b'a'
        finally:
            os.close(fd)

    def go(self):
        """Let a gated dump start (the freeze begins), then wait until its page server is ready.

        Returns the report (see :func:`lazy_dump_start`); HaulError('dump', ...) on failure.
        """
        start = time.time()
        gated = self.go_fd is not None
        self._release()
        # the supervisor's reports come after CRIU's own ready wait: give it a little more time
        rep = self._report(self.ready_timeout + 5, 'lazy dump')
        if not rep.get('ready'):
            raise HaulError('dump', 'lazy dump failed: %s' % rep.get('error'), log=rep.get('log_path'))
        rep['state_file'] = self.sfile
        # the supervisor counts from its own start, which for a gated dump includes the wait for go
        criu_ready_ms = rep.pop('ready_ms', None)
        rep['criu_ready_ms'] = None if gated else criu_ready_ms
        rep['ready_ms'] = round((time.time() - start) * 1000, 1)
        return rep

    def _state_file(self):
        return self.sfile


def lazy_dump_spawn(session, options, images_dir, ready_timeout=60, hold_cgroup=None, gated=False):
    """The supervisor of :func:`lazy_dump_start`, as a :class:`LazyDump`.

    ``gated``: the supervisor, its dump process and CRIU (``criu swrk``) start now, but the
    dump request waits for :meth:`LazyDump.go`, so that a handoff's freeze does not wait for
    three process starts. :meth:`LazyDump.cancel`, or this process ending, calls it off.
    """
    if not options.lazy_pages or not options.page_server:
        raise HaulError('options', 'a lazy dump needs lazy_pages and page_server')
    sfile = state_path(images_dir, 'dump')
    if not os.path.isdir(state_dir(images_dir)):
        os.makedirs(state_dir(images_dir), 0o700)
        from ansible_collections.haul.live.plugins.module_utils import _images  # pylint: disable=import-outside-toplevel
        _images.write_marker(state_dir(images_dir))  # haul.live made it: clean-up may remove it
    try:
        os.unlink(sfile)
    except OSError:
        pass
    session.pycriu  # pylint: disable=pointless-statement
    start = time.time()
    go_r = go_w = armed_r = armed_w = None
    if gated:
        go_r, go_w = os.pipe()
        armed_r, armed_w = os.pipe()

    def job(report):
        if go_r is not None:
            write_state(sfile, {'state': 'prepared', 'supervisor_pid': os.getpid(), 'images_dir': images_dir})
            _gate(session, go_r, armed_w)
        child, log = session.dump_lazy_start(options, ready_timeout=ready_timeout)
        held = hold(hold_cgroup, True)
        write_state(sfile, {'state': 'running', 'dump_pid': child, 'supervisor_pid': os.getpid(), 'log_path': log,
                            'images_dir': images_dir, 'address': options.page_server.get('address'),
                            'port': options.page_server.get('port'), 'tls': bool(options.tls),
                            'held': held, 'hold_cgroup': hold_cgroup})
        report(dict(ready=True, dump_pid=child, log_path=log, ready_ms=round((time.time() - start) * 1000, 1),
                    held=held))
        dummy, status = os.waitpid(child, 0)
        rc = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
        try:
            release_port(images_dir)  # CRIU no longer holds its port
        except (OSError, HaulError):
            pass
        res = {'rc': rc, 'dump_pid': child, 'log_path': log, 'held': held, 'hold_cgroup': hold_cgroup}
        if rc != 0:
            res['error'] = telling_error(log) or 'the lazy dump exited with %d' % rc
            res['source'] = 'frozen' if held else 'resumed by CRIU'
        else:
            res['source'] = 'gone'
            hold(hold_cgroup, False)  # empty by now; leave no frozen cgroup behind
        return res

    try:
        rfd, sup = spawn_detached(job, sfile, keep_fds=[go_r, armed_w] if gated else ())
    except BaseException:
        for fd in (go_r, go_w, armed_r, armed_w):
            if fd is not None:
                os.close(fd)
        raise
    for fd in (go_r, armed_w):
        if fd is not None:
            os.close(fd)
    return LazyDump(rfd, sup, go_w, sfile, ready_timeout, armed_fd=armed_r)


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


def find_daemon(images_dir):
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
            why = daemon_error(log) or 'it exited with %s before it was ready' % rc
            report(dict(ready=False, error=why, log_path=log, rc=rc))
            return {'rc': rc, 'error': why, 'pid': proc.pid, 'log_path': log}
        write_state(sfile, {'state': 'running', 'pid': proc.pid, 'supervisor_pid': os.getpid(),
                            'images_dir': images_dir, 'address': address, 'port': port, 'tls': bool(tls),
                            'log_path': log})
        report(dict(ready=True, pid=proc.pid, log_path=log))
        rc = proc.wait()
        res = {'rc': rc, 'pid': proc.pid, 'log_path': log, 'images_dir': images_dir}
        if rc != 0:
            res['error'] = daemon_error(log) or (
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
    st = find_daemon(images_dir)
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
        _kill_tree(pid)
        wait_pid_exit(pid, 5)
    sup = st.get('supervisor_pid')
    if sup:
        try:
            wait_pid_exit(sup, 5)
        except HaulError:
            pass
    return pid


def find_lazy_dump(images_dir):
    """The state of a lazy dump of ``images_dir`` whose supervisor still runs here, or None."""
    st = read_state(state_path(images_dir, 'dump'))
    if st and st.get('state') in ('running', 'prepared') and pid_alive(st.get('supervisor_pid')):
        return st
    return None


def stop_lazy_dump(images_dir, timeout=10):
    """Abort a lazy dump of ``images_dir`` that still serves pages on this host.

    Kills its supervisor and CRIU (SIGKILL). The container's tasks stay frozen in
    the freezer cgroup CRIU used: before the destination resumed, thaw them (a
    rollback); after, the container is lost and they must be killed, never thawed
    (ROLLBACK RULE). Returns the supervisor pid, or None if no lazy dump ran.
    """
    prepared = _PREPARED.pop(os.path.abspath(images_dir), None)
    if prepared is not None:
        prepared.cancel()
    st = find_lazy_dump(images_dir)
    if not st:
        return None
    sup = st['supervisor_pid']
    _kill_tree(sup)
    wait_pid_exit(sup, timeout)
    st = dict(st, state='stopped', rc=-9, error='stopped by haul.live (lazy_pages state=absent)', ended=time.time())
    write_state(state_path(images_dir, 'dump'), st)
    try:
        release_port(images_dir)
    except (OSError, HaulError):
        pass
    return sup


def _ipv4_hex(address, port):
    """'198.18.0.11', 27100 -> '0B0012C6:69DC' as in /proc/net/tcp (None for a non-IPv4 address)."""
    parts = str(address).split('.')
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
        return None
    return '%02X%02X%02X%02X:%04X' % (int(parts[3]), int(parts[2]), int(parts[1]), int(parts[0]), int(port))


def tcp_connected(pid, address, port, proc='/proc'):
    """Whether process ``pid`` holds an ESTABLISHED TCP socket to address:port (IPv4 or IPv6)."""
    inodes = set()
    fd_dir = os.path.join(proc, str(pid), 'fd')
    try:
        for name in os.listdir(fd_dir):
            try:
                target = os.readlink(os.path.join(fd_dir, name))
            except OSError:
                continue
            if target.startswith('socket:['):
                inodes.add(target[8:-1])
    except OSError:
        return False
    want4 = _ipv4_hex(address, port)
    want_port = ':%04X' % int(port)
    for table in ('tcp', 'tcp6'):
        try:
            with open(os.path.join(proc, str(pid), 'net', table)) as f:
                lines = f.read().splitlines()[1:]
        except (IOError, OSError):
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != '01' or fields[9] not in inodes:
                continue
            remote = fields[2]
            if (want4 and remote == want4) or (table == 'tcp6' and remote.endswith(want_port)):
                return True
    return False


def wait_daemon_connected(images_dir, timeout=10):
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
    opener = getattr(os, 'pidfd_open', None)
    fd = None
    try:
        fd = opener(int(pid)) if opener is not None else None
    except OSError:
        fd = None
    deadline = time.time() + timeout
    try:
        while True:
            if not pid_alive(pid):
                why, final = _ended_daemon(images_dir, st.get('supervisor_pid'), address, port)
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


# --------------------------------------------------------------------------- transfer complete

def wait_pid_exit(pid, timeout):
    """Wait until ``pid`` (not necessarily a child) exits; HaulError('transfer', ...) on timeout.

    Waits on a pidfd (select), so no polling, when the kernel and Python have
    pidfd_open; else polls /proc every 10 ms.
    """
    if not pid_alive(pid):
        return
    opener = getattr(os, 'pidfd_open', None)
    fd = None
    if opener is not None:
        try:
            fd = opener(int(pid))
        except OSError:
            fd = None
    deadline = time.time() + timeout
    try:
        while pid_alive(pid):
            left = deadline - time.time()
            if left <= 0:
                raise HaulError('transfer', 'pid %s still runs after %ss' % (pid, timeout))
            if fd is not None:
                select.select([fd], [], [], left)
            else:
                time.sleep(min(0.01, left))
    finally:
        if fd is not None:
            os.close(fd)


def restored_at(images_dir):
    """When criu_restore finished restoring from ``images_dir`` (epoch seconds from restore.json), or None."""
    st = read_state(os.path.join(images_dir, 'restore.json'))
    return (st or {}).get('time')


_TRANSFERRED = re.compile(r'uffd: (\S+): UFFD transferred pages: \((\d+)/(\d+)\)')


def transferred_pages(log_path):
    """Pages the lazy-pages daemon moved, from its log (the last count of each task, summed); 0 if unknown."""
    last = {}
    try:
        with open(log_path, 'rb') as f:
            for line in f.read().decode('utf-8', 'replace').splitlines():
                m = _TRANSFERRED.search(line)
                if m:
                    last[m.group(1)] = int(m.group(2))
    except (IOError, OSError):
        return 0
    return sum(last.values())


# --------------------------------------------------------------------------- transfer progress and its budget

# A post-copy transfer is judged by its progress, not by a fixed total: see TransferBudget.
BUDGET_SLACK = 2.0      # the rest may take twice what it needs at the rate measured
RATE_WINDOW = 10.0      # seconds of samples the rate is measured over
BEAT_INTERVAL = 2.0     # seconds between the destination's progress statuses (heartbeats)

_FOUND = re.compile(r'uffd: (\S+): Found (\d+) pages to be handled by UFFD')
_COPIED = re.compile(r'uffd: (\S+): uffd_copy: 0x[0-9a-fA-F]+/(\d+)')
_ZERO = re.compile(r'uffd: (\S+): zero page at ')


class TransferBudget(object):
    """When a post-copy page transfer has failed, from its progress (pure arithmetic: unit-tested).

    Each :meth:`observe` gives the bytes moved so far (and the total, once known). The rate is the
    bytes moved over the last ``window`` seconds. At every observation that shows progress the
    budget for the rest is set again: ``max(floor, slack * remaining / rate)`` seconds from now
    (``floor`` alone while the rate or the total is unknown). The transfer has failed when the
    budget runs out with no page moved since: no page moved for ``floor`` seconds (the progress
    timeout), or for longer than ``slack`` times what the remaining bytes need at the rate measured,
    whichever is longer. A slow transfer that keeps moving is therefore never failed, however long
    it takes; a stalled one is failed after the progress timeout (longer while much is left at a low
    rate: a LOST verdict cannot be undone, a late one only costs time).
    """

    def __init__(self, floor, slack=BUDGET_SLACK, window=RATE_WINDOW, now=None):
        now = time.time() if now is None else now
        self.floor = max(float(floor), 0.0)
        self.slack = float(slack)
        self.window = float(window)
        self.started = self.last_progress = now
        self.moved = 0
        self.total = None
        self.samples = [(now, 0)]
        self.deadline = now + self.floor

    def observe(self, moved, total=None, now=None):
        """Record ``moved`` bytes so far (and ``total`` when known); whether pages moved since the last call."""
        now = time.time() if now is None else now
        if total:
            self.total = max(int(total), self.total or 0)
        progressed = moved > self.moved
        if progressed:
            self.moved = int(moved)
            self.last_progress = now
            self.samples.append((now, self.moved))
            while len(self.samples) > 2 and self.samples[1][0] < now - self.window:
                self.samples.pop(0)
            self.deadline = now + self.budget_s()
        return progressed

    def rate(self):
        """Bytes per second over the window, or None before the first progress."""
        (t0, m0), (t1, m1) = self.samples[0], self.samples[-1]
        if t1 <= t0 or m1 <= m0:
            return None
        return (m1 - m0) / float(t1 - t0)

    def remaining(self):
        return None if self.total is None else max(self.total - self.moved, 0)

    def eta_s(self):
        """Seconds the remaining bytes need at the rate measured, or None when unknown."""
        rate, left = self.rate(), self.remaining()
        if not rate or left is None:
            return None
        return left / rate

    def budget_s(self):
        eta = self.eta_s()
        return self.floor if eta is None else max(self.floor, self.slack * eta)

    def expired(self, now=None):
        now = time.time() if now is None else now
        return now > self.deadline

    def summary(self, now=None):
        """What is known, for statuses, results and the LOST message."""
        now = time.time() if now is None else now
        rate, eta = self.rate(), self.eta_s()
        return {'moved_bytes': self.moved, 'total_bytes': self.total,
                'rate_bytes_s': None if rate is None else round(rate, 1),
                'eta_s': None if eta is None else round(eta, 1),
                'budget_s': round(self.budget_s(), 1),
                'silent_s': round(now - self.last_progress, 1),
                'elapsed_s': round(now - self.started, 1)}


class DaemonProgress(object):
    """Pages the lazy-pages daemon moved, read from its log as it grows (``-v4``): the totals of
    ``Found N pages to be handled by UFFD`` and the bytes of each ``uffd_copy`` and zero page."""

    def __init__(self, log_path, page_size=None):
        self.path = log_path
        self.page_size = page_size or os.sysconf('SC_PAGE_SIZE')
        self.offset = 0
        self.rest = b''
        self.totals = {}
        self.moved = 0

    def feed(self, text):
        for line in text.splitlines():
            m = _COPIED.search(line)
            if m:
                self.moved += int(m.group(2))
                continue
            if _ZERO.search(line):
                self.moved += self.page_size
                continue
            m = _FOUND.search(line)
            if m:
                self.totals[m.group(1)] = int(m.group(2)) * self.page_size

    def read(self):
        """(bytes moved, total bytes or None) from what the log says so far."""
        try:
            with open(self.path, 'rb') as f:
                f.seek(self.offset)
                data = f.read()
        except (IOError, OSError):
            data = b''
        if data:
            self.offset += len(data)
            data = self.rest + data
            cut = data.rfind(b'\n') + 1
            self.rest = data[cut:]
            self.feed(data[:cut].decode('utf-8', 'replace'))
        total = sum(self.totals.values()) or None
        return self.moved, total


def socket_bytes(port, run=None):
    """Bytes acknowledged by the peers of the established TCP connections whose local port is
    ``port`` (``ss -tin``: the page server's side), or None when ``ss`` cannot tell."""
    argv = ['ss', '-tinH', 'state', 'established', '( sport = :%d )' % int(port)]
    try:
        if run is None:
            out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,  # pylint: disable=ansible-bad-function
                                 check=False, timeout=5).stdout.decode('utf-8', 'replace')
        else:
            out = run(argv)
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.findall(r'\bbytes_acked:(\d+)', out)
    return sum(int(x) for x in found) if found else None


def _lost_message(job, why, budget):
    info = budget.summary()
    total = info['total_bytes']
    return ('the pages have not all moved: %s (%s moved %d of %s bytes, last progress %.0fs ago, rate %s B/s); '
            'if the destination has resumed, the container is lost' % (
                why, job, info['moved_bytes'], total if total is not None else 'unknown', info['silent_s'],
                info['rate_bytes_s'] if info['rate_bytes_s'] is not None else 'unknown'))


def wait_transfer(images_dir, job, timeout, pid=None, on_progress=None, beat=BEAT_INTERVAL):
    """Wait until every page has moved: the job's supervisor has exited with success.

    ``job`` is ``'dump'`` (on the source: the lazy dump ends once the destination
    holds every page) or ``'lazy-pages'`` (on the destination: the daemon ends then).
    Returns the job's final state (with ``rc``, ``ended``, ``waited_ms`` and ``progress``).

    ``timeout`` is the progress timeout, not a total: the wait fails when no page has moved for
    ``timeout`` seconds, or for longer than the remaining bytes need at the rate measured
    (:class:`TransferBudget`). Progress is read from the daemon's log on the destination, from the
    page server's connection (``ss``) on the source. ``on_progress(summary)`` is called at least
    every ``beat`` seconds while the transfer runs (the destination's heartbeat to the source).

    Raises HaulError('transfer', ...) when the transfer stalls or broke. After the
    destination resumed, that means the container is lost (see ROLLBACK RULE above):
    the message says so, with the cause and what had moved (``progress`` in the details).
    """
    sfile = state_path(images_dir, job)
    start = time.time()
    st = read_state(sfile)
    if pid is None:
        pid = (st or {}).get('supervisor_pid')
    if st is None and not pid:
        raise HaulError('transfer', 'no %s job was started for %s' % (job, images_dir))
    budget = TransferBudget(timeout, now=start)
    if job == 'lazy-pages':
        log = DaemonProgress((st or {}).get('log_path') or os.path.join(images_dir, LAZY_PAGES_LOG))

        def measure():
            return log.read()
    else:
        port = (st or {}).get('port')

        def measure():
            return (socket_bytes(port) or 0) if port else 0, None
    if pid and (st is None or st.get('state') in ('running', 'starting')):
        opener = getattr(os, 'pidfd_open', None)
        fd = None
        try:
            fd = opener(int(pid)) if opener is not None else None
        except OSError:
            fd = None
        last_beat = 0.0
        try:
            while pid_alive(pid):
                now = time.time()
                moved, total = measure()
                budget.observe(moved, total, now=now)
                if on_progress is not None and now - last_beat >= beat:
                    last_beat = now
                    on_progress(budget.summary(now))
                if budget.expired(now):
                    raise HaulError('transfer', _lost_message(job, 'no page moved for %.0fs (budget %.0fs)'
                                                              % (now - budget.last_progress, budget.budget_s()),
                                                              budget), progress=budget.summary(now))
                wait = min(0.5, max(budget.deadline - now, 0.01))
                if fd is not None:
                    select.select([fd], [], [], wait)
                else:
                    time.sleep(min(wait, 0.05))
        finally:
            if fd is not None:
                os.close(fd)
        st = read_state(sfile)
    moved, total = measure()
    budget.observe(moved, total)
    if st is None or st.get('state') in ('running', 'starting'):
        raise HaulError('transfer', 'the %s job for %s ended without a final state: it was killed; if the '
                        'destination has resumed, the container is lost' % (job, images_dir),
                        progress=budget.summary())
    st = dict(st)
    st['waited_ms'] = round((time.time() - start) * 1000, 1)
    st['progress'] = budget.summary()
    if st.get('rc') != 0:
        raise HaulError('transfer', 'the page transfer broke (%s exited with %s: %s); once the destination has '
                        'resumed the source may never resume, so the container is lost'
                        % (job, st.get('rc'), st.get('error') or 'no error logged'), log=st.get('log_path'),
                        state=st, progress=st['progress'])
    return st


def follow_transfer(expect, done, beat, silence):
    """On the source: read the destination's statuses until ``done`` or a final one; return it.

    ``expect(states, timeout, step)`` is the relay's :meth:`expect`. The destination sends a
    ``beat`` status with its progress at least every :data:`BEAT_INTERVAL` seconds while pages
    move, and judges the transfer itself (:func:`wait_transfer`); the source only fails when it
    hears nothing for ``silence`` seconds (the destination or the link is gone). Each beat's
    progress is kept in the returned status (``progress``).
    """
    last = None
    while True:
        try:
            st = expect((done, beat), silence, 'transfer')
        except HaulError as e:
            raise HaulError('transfer', 'no word from the destination about the page transfer for %ss (%s); the '
                            'last progress it reported: %s' % (silence, e.cause, last or 'none'), progress=last)
        if st.get('state') == beat and not st.get('final'):
            last = st.get('progress') or last
            continue
        if last and not st.get('progress'):
            st = dict(st, progress=last)
        return st


def abandon_lost(images_dir, cgroup):
    """After a transfer that broke once the destination resumed (the container is LOST): end what is
    left here - the lazy-pages daemon, and the restored copy, which runs on memory that will never
    all come (once the daemon is gone, the kernel fills a missing page with zeroes: a silently
    corrupted container). ``cgroup`` is its :class:`_cgroup.Cgroup`, or None. Returns what was done
    and what is known, for the result (``lost``)."""
    log = os.path.join(images_dir, LAZY_PAGES_LOG)
    moved, total = DaemonProgress(log).read()
    done = {'destination_copy': 'unknown', 'daemon_stopped': bool(stop_lazy_pages(images_dir, timeout=5)),
            'moved_bytes': moved, 'total_bytes': total, 'log_line': daemon_error(log)}
    if cgroup is not None:
        try:
            cgroup.kill(timeout=10)
            cgroup.remove()
            done['destination_copy'] = 'killed'
        except HaulError as e:
            done['destination_copy'] = 'not killed: %s' % e.msg
    return done


# --------------------------------------------------------------------------- page-server ports

PORT_RANGE = (27100, 27899)
PORTS_LOCK = '/run/haul/postcopy-ports.lock'
PORTS_FILE = '/run/haul/postcopy-ports.json'


def port_free(address, port):
    """Whether nothing is bound to ``port`` on ``address`` (a bind test without SO_REUSEADDR, so that a
    socket in TIME_WAIT or bound to the wildcard address counts as taken)."""
    import socket  # pylint: disable=import-outside-toplevel
    family = socket.AF_INET6 if ':' in str(address) else socket.AF_INET
    sk = socket.socket(family, socket.SOCK_STREAM)
    try:
        sk.bind((str(address), int(port)))
    except (OSError, socket.error):
        return False
    finally:
        sk.close()
    return True


def reserve_port(address, images_dir, first=PORT_RANGE[0], last=PORT_RANGE[1], ttl=600, now=None,
                 lock_file=PORTS_LOCK, table_file=PORTS_FILE, is_free=None, reserve=True):
    """A free TCP port in ``first..last`` for the page server of the lazy dump of ``images_dir``.

    Allocations on one host are serialised by an flock on ``lock_file`` and recorded in
    ``table_file`` (port -> images_dir, expiry): a port stays reserved for ``ttl`` seconds, and for
    as long as a lazy dump of that images directory runs (its CRIU then holds the port), so that
    parallel post-copy migrations from one host never get the same port. A port must also pass
    ``is_free(address, port)`` (:func:`port_free`). A new reservation for the same images directory
    replaces the old one, or is kept (``kept``, its expiry extended) while it is live and its port
    still free. Returns ``{'port', 'expires', 'reserved', 'kept'}``; HaulError('port', ...) when
    every port of the range is taken. ``reserve=False`` (check mode) finds one and records nothing.
    """
    import fcntl  # pylint: disable=import-outside-toplevel
    now = time.time() if now is None else now
    is_free = is_free or port_free
    images_dir = os.path.abspath(images_dir)
    first, last = int(first), int(last)
    if not 0 < first <= last < 65536:
        raise HaulError('options', 'bad page-server port range %s-%s' % (first, last))
    d = os.path.dirname(lock_file)
    if not os.path.isdir(d):
        os.makedirs(d, 0o700)
    lock = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        table = read_state(table_file) or {}
        held, mine = {}, None
        for port, rec in table.items():
            if not isinstance(rec, dict):
                continue
            if rec.get('images_dir') == images_dir:
                if rec.get('expires', 0) > now and str(rec.get('address')) == str(address):
                    mine = int(port)
                continue
            if rec.get('expires', 0) > now or find_lazy_dump(rec.get('images_dir') or '/nonexistent'):
                held[port] = rec
        if mine is not None and is_free(address, mine):
            rec = {'images_dir': images_dir, 'expires': now + ttl, 'address': str(address), 'pid': os.getpid()}
            if reserve:
                held[str(mine)] = rec
                write_state(table_file, held)
            return {'port': mine, 'expires': rec['expires'], 'reserved': reserve, 'kept': True}
        span = last - first + 1
        # start at a spot that depends on the images directory, so that hosts rarely probe the same ports
        offset = int(hashlib.md5(images_dir.encode('utf-8')).hexdigest()[:6], 16) % span
        for i in range(span):
            port = first + (offset + i) % span
            if str(port) in held or not is_free(address, port):
                continue
            rec = {'images_dir': images_dir, 'expires': now + ttl, 'address': str(address), 'pid': os.getpid()}
            if reserve:
                held[str(port)] = rec
                write_state(table_file, held)
            return {'port': port, 'expires': rec['expires'], 'reserved': reserve, 'kept': False}
        raise HaulError('port', 'no free page-server port in %d-%d on %s (%d reserved by other migrations)'
                        % (first, last, address, len(held)))
    finally:
        os.close(lock)


def release_port(images_dir, lock_file=PORTS_LOCK, table_file=PORTS_FILE):
    """Forget the port reservation of ``images_dir`` (its lazy dump ended); the ports released."""
    import fcntl  # pylint: disable=import-outside-toplevel
    if not os.path.exists(table_file):
        return []
    images_dir = os.path.abspath(images_dir)
    lock = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        table = read_state(table_file) or {}
        gone = [p for p, rec in table.items() if isinstance(rec, dict) and rec.get('images_dir') == images_dir]
        if gone:
            write_state(table_file, dict((p, r) for p, r in table.items() if p not in gone))
        return sorted(int(p) for p in gone)
    finally:
        os.close(lock)


# --------------------------------------------------------------------------- module logic: criu_dump lazy

# Lazy dumps prepared by warm_up(), by images directory, for dump_lazy() inside the freeze.
_PREPARED = {}


def warm_up(params):
    """Before a handoff's freeze, the part of its lazy dump (``params`` as for :func:`dump_lazy`)
    that can be done while the container runs: import pycriu, ask CRIU's version, check the
    container and the images directory, start the dump's supervisor and CRIU (waiting, see
    :func:`lazy_dump_spawn`). :func:`dump_lazy` then only has to let it go; if it is called with
    other parameters, or :func:`stop_lazy_dump` comes first, or this process ends, the prepared
    dump is called off without having touched the container. A failing check prepares nothing:
    :func:`dump_lazy` meets it again and fails as it would have."""
    from ansible_collections.haul.live.plugins.module_utils import _criu  # pylint: disable=import-outside-toplevel
    # pycriu imported and CRIU's version asked now (it is kept for the process): a lazy dump inside
    # the freeze then neither imports pycriu nor starts a CRIU just to ask (~30 ms on the lab)
    session = _criu.open_session(None, criu_path=params.get('criu_path'))
    images_dir = os.path.abspath(params['images_dir'])
    old = _PREPARED.pop(images_dir, None)
    if old is not None:
        old.cancel()
    try:
        prepared = _dump_lazy(params, prepare=True)
    except HaulError:
        prepared = None
    if isinstance(prepared, _PreparedLazyDump):
        _PREPARED[images_dir] = prepared
    return session.version()


def lazy_argspec(ready_timeout=60):
    """The argument spec of a ``lazy`` option (criu_dump, handoff, criu_restore's ``handoff.lazy``):
    where the source's page server listens, its TLS, and how long to wait for it to be ready."""
    return dict(type='dict', options=dict(
        address=dict(type='str', required=True),
        port=dict(type='int', default=27100),
        tls=dict(type='bool', default=True),
        tls_cacert=dict(type='path'),
        tls_cert=dict(type='path'),
        tls_key=dict(type='path', no_log=False),
        tls_no_cn_verify=dict(type='bool', default=False),
        ready_timeout=dict(type='int', default=ready_timeout),
    ), required_together=[['tls_cert', 'tls_key']])


def _tls_kwargs(lazy):
    if not lazy.get('tls', True):
        if any(lazy.get(k) for k in ('tls_cacert', 'tls_cert', 'tls_key')):
            raise HaulError('options', 'lazy.tls_cacert, tls_cert or tls_key given with lazy.tls false')
        return {}
    return dict(tls=True, tls_cacert=lazy.get('tls_cacert'), tls_cert=lazy.get('tls_cert'),
                tls_key=lazy.get('tls_key'), tls_no_cn_verify=lazy.get('tls_no_cn_verify') or None)


def security_of(tls):
    """The plain statement a report shows about the page transfer's transport."""
    return 'tls' if tls else 'plaintext (tls: false)'


def dump_lazy(params, check_mode=False, diff=False):
    """criu_dump with ``lazy``: start a lazy dump whose page server serves the memory.

    Returns the module result. The container stays frozen (CRIU holds it) until the
    destination has every page; then CRIU kills it. See the ROLLBACK RULE above.

    When :func:`warm_up` prepared this very dump (same parameters) before a handoff's freeze,
    only the dump itself is left to do.
    """
    prepared = _PREPARED.pop(os.path.abspath(params['images_dir']), None)
    if prepared is not None:
        if not check_mode and prepared.params == params:
            return prepared.run()
        prepared.cancel()
    return _dump_lazy(params, check_mode=check_mode, diff=diff)


class _PreparedLazyDump(object):
    """Everything of a lazy dump but the dump: checked, images directory emptied, its supervisor,
    dump process and CRIU started and waiting (:func:`lazy_dump_spawn` with ``gated``)."""

    def __init__(self, params, result, dump, finish, recheck):
        self.params = dict(params)
        self.result = result
        self.dump = dump
        self.finish = finish
        self.recheck = recheck

    def run(self):
        try:
            self.recheck()
        except HaulError:
            self.cancel()
            raise
        return self.finish(self.dump)

    def cancel(self):
        self.dump.cancel()


def _dump_lazy(params, check_mode=False, diff=False, prepare=False):
    """:func:`dump_lazy`; with ``prepare``, a :class:`_PreparedLazyDump` instead of a dump (or
    the result when there is nothing to dump)."""
    from ansible_collections.haul.live.plugins.module_utils import _criu  # pylint: disable=import-outside-toplevel
    from ansible_collections.haul.live.plugins.module_utils import _images  # pylint: disable=import-outside-toplevel
    from ansible_collections.haul.live.plugins.module_utils import _cgroup as cgroup_mod  # pylint: disable=import-outside-toplevel

    lazy = params['lazy']
    tls = bool(lazy.get('tls', True))
    tls_kwargs = _tls_kwargs(lazy)
    images_dir = os.path.abspath(params['images_dir'])
    result = {'changed': False, 'images_dir': images_dir, 'tls': tls, 'security': security_of(tls),
              'lazy': {'address': lazy['address'], 'port': lazy['port'], 'tls': tls}}

    session = _criu.open_session(images_dir, criu_path=params.get('criu_path'))
    criu_version = session.version()
    result['criu_version'] = criu_version

    # Idempotence: a lazy dump of this images dir still serving pages, or finished.
    st = read_state(state_path(images_dir, 'dump'))
    sup = (st or {}).get('supervisor_pid')
    running = bool(st) and st.get('state') == 'running' and pid_alive(sup)
    if running and params.get('force'):
        raise HaulError('identify', 'a lazy dump into %s still serves its pages (supervisor pid %s): it cannot be '
                        'dumped again before it ends' % (images_dir, sup))
    if st and not params.get('force'):
        if running or st.get('state') == 'finished':
            try:
                manifest = _images.load_manifest(images_dir)
            except HaulError:
                manifest = None
            if manifest:
                ident = manifest['identity']
                result.update(name=ident.get('name'), cgroup=ident.get('cgroup'), pid=ident.get('init_pid'),
                              root_pid=ident.get('init_pid'), root=ident.get('root'), manifest=manifest,
                              hold='lazy' if running else 'gone', duration=0.0)
                result['lazy'].update(supervisor_pid=sup, state='serving' if running else 'finished')
                return result

    try:
        target = _criu.resolve_target(pid=params.get('pid'), cgroup=params.get('cgroup'), cgroup_mod=cgroup_mod)
    except HaulError:
        raise
    cg = target['cgroup']
    name = params.get('name') or os.path.basename(target['cgroup_path'].rstrip('/'))
    identity = _images.make_identity(name, cgroup=target['cgroup_path'], root=None, init_pid=target['pid'])
    result.update(name=name, pid=target['pid'], root_pid=target['pid'], cgroup=target['cgroup_path'])

    def recheck():
        state = cg.state()
        if state != 'thawed' or _criu.all_stopped(target['pids']):
            raise HaulError('identify', 'container %s (cgroup %s) is %s: a lazy dump needs it running'
                            % (name, cg.path, 'stopped' if state == 'thawed' else state))
    recheck()
    result['sockets'] = _criu.checked_sockets(name, target['pids'], criu_version)
    root = _criu.container_root(params, target['pid'], name)
    identity['root'] = root
    result['root'] = root
    identity['network'] = result['network'] = _network.describe(target['pid'], step='identify')

    _images.require_usable(images_dir)
    estimate = int(_criu.tmpfs_usage(target['pid']) * _criu.DUMP_SIZE_FACTOR) + 16 * 1024 * 1024
    result.update(estimated_bytes=estimate,
                  free_bytes=_images.require_space(images_dir, estimate, 'the lazy dump of ' + name))

    options = _criu.CriuOptions(
        lazy_pages=True, page_server={'address': lazy['address'], 'port': lazy['port']},
        **dict(_criu.checkpoint_kwargs(params, target['pid'], root, cg), **tls_kwargs))
    result['changed'] = True
    result['hold'] = 'lazy'
    if diff:
        result['diff'] = {'before': {'container': 'running', 'images': 'absent'},
                          'after': {'container': 'frozen, serving its pages', 'images': 'lazy dump'}}
    if check_mode:
        return result

    _images.ensure_dir(images_dir, migration_id=params.get('handoff_id'))
    _images.clear_images(images_dir)
    hold_cgroup = None
    for version in ('v2', 'v1'):  # v2's cgroup.freeze where there is one; else the v1 freezer (see hold())
        try:
            hold_cgroup = cgroup_mod.Cgroup(target['cgroup_path'], version=version, step='hold').path
            break
        except HaulError:
            hold_cgroup = None
    dump = lazy_dump_spawn(session, options, images_dir, ready_timeout=lazy.get('ready_timeout') or 60,
                           hold_cgroup=hold_cgroup, gated=prepare)

    def finish(dump):
        try:
            rep = dump.go()
        except HaulError:
            _criu._rescue_source(cg, params.get('freeze_timeout') or 10, target['pid'])  # pylint: disable=protected-access
            raise
        done = _lazy_dumped(params, result, rep, images_dir, identity, criu_version, options)
        _network.fence(identity['network'])
        return done

    if prepare:
        dump.armed()
        return _PreparedLazyDump(params, result, dump, finish, recheck)
    return finish(dump)


def _lazy_dumped(params, result, rep, images_dir, identity, criu_version, options):
    """The end of a lazy dump whose page server is ready: its manifest and the result."""
    from ansible_collections.haul.live.plugins.module_utils import _images  # pylint: disable=import-outside-toplevel
    result['log_path'] = rep.get('log_path')
    result['duration'] = round(rep['ready_ms'] / 1000.0, 3)
    result['lazy'].update(supervisor_pid=rep.get('supervisor_pid'), dump_pid=rep.get('dump_pid'),
                          ready_ms=rep['ready_ms'], criu_ready_ms=rep.get('criu_ready_ms'),
                          state_file=rep['state_file'], state='serving', held=rep.get('held'))
    try:
        # no fsync (unlike _images.write_manifest): a lazy dump is worth nothing without its page
        # server, which a crash of this host ends anyway; inside a handoff's freeze it costs ms
        manifest = _images.build_manifest(images_dir, 'dump', identity, criu_version,
                                          parent=options.parent_relative(images_dir),
                                          checksums=params.get('checksum', 'sha256') != 'none')
        tmp = os.path.join(images_dir, _images.MANIFEST_TMP)
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 'w') as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
            f.write('\n')
        os.rename(tmp, os.path.join(images_dir, _images.MANIFEST))
    except (IOError, OSError) as e:
        raise HaulError('manifest', 'cannot write the manifest of %s: %s (the lazy dump still serves its pages; '
                        'the source resumes when its page server is stopped)' % (images_dir, e))
    result['manifest'] = manifest
    result['bytes'] = sum(f.get('size', 0) for f in manifest['files'].values())
    # stats-dump is written only at the end, and its frozen_time is bogus for a lazy dump: not reported
    return result


# --------------------------------------------------------------------------- module logic: criu_restore lazy

def _ended_daemon(images_dir, sup, address, port):
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
            % (address, port, daemon_error(log) or final.get('error') or 'it exited')), final


def _daemon_failure(images_dir, daemon):
    """Why the lazy-pages daemon of ``images_dir`` failed (it no longer runs), or None."""
    if not daemon or find_daemon(images_dir):
        return None
    return _ended_daemon(images_dir, daemon.get('supervisor_pid'), daemon.get('address'), daemon.get('port'))[0]


def daemon_error(log):
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
    ``_criu.restore_container`` with ``lazy_pages=True``. With ``hold='stopped'`` (a handoff)
    the tree is left stopped once the daemon is connected; else it is resumed.
    """
    from ansible_collections.haul.live.plugins.module_utils import _criu  # pylint: disable=import-outside-toplevel
    images_dir = os.path.abspath(params['images_dir'])
    daemon = find_daemon(images_dir)
    if daemon is None and not check_mode and not _criu._read_marker(images_dir):  # pylint: disable=protected-access
        raise HaulError('restore', 'no lazy-pages daemon runs for %s: start it with haul.live.lazy_pages first'
                        % images_dir)
    from ansible_collections.haul.live.plugins.module_utils import _cgroup as cgroup_mod  # pylint: disable=import-outside-toplevel
    # Restore the tree stopped, check that the daemon reached the page server, then resume it
    # (unless the caller holds it stopped, as a handoff does until the source commits): a tree
    # resumed with a daemon that cannot get its pages would run on missing memory.
    try:
        result = _criu.restore_container(dict(params, hold='stopped', lazy_pages=True), check_mode=check_mode,
                                         diff=diff)
    except HaulError as e:
        # CRIU fails the restore when the daemon is gone (it could not reach the page server)
        why = _daemon_failure(images_dir, daemon)
        stop_lazy_pages(images_dir)
        if why:
            raise HaulError('restore', '%s; the restored copy was removed before it ran, the source still holds '
                            'the container (abort its lazy dump and thaw it to roll back); CRIU: %s'
                            % (why, e.cause), log=os.path.join(images_dir, LAZY_PAGES_LOG), restore_log=e.log)
        raise
    result['lazy_pages'] = True
    if result.get('changed') and not check_mode:
        cg, pids, dummy = _criu._running_container(result['cgroup'], cgroup_mod)  # pylint: disable=protected-access
        try:
            wait_daemon_connected(images_dir, timeout=params.get('connect_timeout') or 10)
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
