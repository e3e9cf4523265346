# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Detached, supervised background jobs and their state files.

:func:`spawn_supervised` / :func:`spawn_detached` start a job under a detached
supervisor (new session, stdio on /dev/null, so that Ansible's connection never waits
for it) which reports readiness or failure on a pipe to the module, then waits for the
job's end and writes its exit status to a state file ``<images_dir>.postcopy/<job>.json``
(:func:`state_dir`, :func:`state_path`, :func:`read_state`, :func:`write_state`).
:class:`_Gated` is the base of a job started held, let go later (``go``) or cancelled.

This is a private module_util: it is not part of the collection's public API.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import select
import signal
import time

from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.module_utils._proc import kill_tree, pid_alive, wait_pid_exit
STATE_SUFFIX = '.postcopy'


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


def find_running(images_dir, job):
    """The state of the job ``job`` of ``images_dir`` (e.g. ``'dump'``, the lazy dump) whose
    supervisor still runs here, or None."""
    st = read_state(state_path(images_dir, job))
    if st and st.get('state') in ('running', 'prepared') and pid_alive(st.get('supervisor_pid')):
        return st
    return None


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
            kill_tree(sup)
        raise
    finally:
        os.close(rfd)
    rep['supervisor_pid'] = sup
    return rep


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
                kill_tree(self.sup)
                wait_pid_exit(self.sup, 5)
            _forget(self._state_file(), self.CANCELLED)
