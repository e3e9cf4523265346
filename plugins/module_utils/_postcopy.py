# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Post-copy (lazy pages): the source side, the lazy dump.

The destination side (the lazy-pages daemon, criu_restore lazy) is :mod:`_lazy_pages`; the
transfer's accounting and waits are :mod:`_transfer`; page-server ports :mod:`_ports`; the
supervised background jobs and their state files :mod:`_supervisor`.

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
by :func:`_supervisor.spawn_supervised`: a detached supervisor (new session, stdio on
/dev/null, so that Ansible's connection never waits for it) runs the job, reports
readiness or failure on a pipe to the module, then waits for the job's end and writes
its exit status to a state file ``<images_dir>.postcopy/<job>.json``.
:func:`_transfer.wait_transfer` waits on the supervisor's pid with a pidfd (no sleeps when the
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
  pages that will never come. :func:`_transfer.wait_transfer` (lazy_pages state=finished) then
  raises HaulError('transfer', ...) saying so and why (exit status, the telling line
  of the CRIU log). The caller kills the source's frozen remains and the destination's
  stuck copy. This is post-copy's known risk: it trades a short freeze for the
  dependence on both hosts until the last page has moved.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import select
import signal
import time

from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.module_utils import _checkpoint, _container, _criu, _criu_options, _network
from ansible_collections.haul.live.plugins.module_utils._criu import telling_error
from ansible_collections.haul.live.plugins.module_utils._ports import release_port
from ansible_collections.haul.live.plugins.module_utils._proc import all_stopped, kill_tree, pid_alive, signal_all, tmpfs_usage, wait_pid_exit
from ansible_collections.haul.live.plugins.module_utils._supervisor import _Gated, find_running, read_state, spawn_detached, state_dir, state_path, write_state


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
        signal_all(pids, sig)
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


def find_lazy_dump(images_dir):
    """The state of a lazy dump of ``images_dir`` whose supervisor still runs here, or None."""
    return find_running(images_dir, 'dump')


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
    kill_tree(sup)
    wait_pid_exit(sup, timeout)
    st = dict(st, state='stopped', rc=-9, error='stopped by haul.live (lazy_pages state=absent)', ended=time.time())
    write_state(state_path(images_dir, 'dump'), st)
    try:
        release_port(images_dir)
    except (OSError, HaulError):
        pass
    return sup


# --------------------------------------------------------------------------- module logic: criu_dump lazy

# Lazy dumps prepared by warm_up(), by images directory, for lazy_dump() inside the freeze.
_PREPARED = {}


def warm_up(params):
    """Before a handoff's freeze, the part of its lazy dump (``params`` as for :func:`lazy_dump`)
    that can be done while the container runs: import pycriu, ask CRIU's version, check the
    container and the images directory, start the dump's supervisor and CRIU (waiting, see
    :func:`lazy_dump_spawn`). :func:`lazy_dump` then only has to let it go; if it is called with
    other parameters, or :func:`stop_lazy_dump` comes first, or this process ends, the prepared
    dump is called off without having touched the container. A failing check prepares nothing:
    :func:`lazy_dump` meets it again and fails as it would have."""
    # pycriu imported and CRIU's version asked now (it is kept for the process): a lazy dump inside
    # the freeze then neither imports pycriu nor starts a CRIU just to ask (~30 ms on the lab)
    session = _criu.open_session(None, criu_path=params.get('criu_path'))
    images_dir = os.path.abspath(params['images_dir'])
    old = _PREPARED.pop(images_dir, None)
    if old is not None:
        old.cancel()
    try:
        prepared = _lazy_dump(params, prepare=True)
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


def lazy_dump(params, check_mode=False, diff=False):
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
    return _lazy_dump(params, check_mode=check_mode, diff=diff)


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


def _lazy_dump(params, check_mode=False, diff=False, prepare=False):
    """:func:`lazy_dump`; with ``prepare``, a :class:`_PreparedLazyDump` instead of a dump (or
    the result when there is nothing to dump)."""
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
        target = _container.resolve_target(pid=params.get('pid'), cgroup=params.get('cgroup'), cgroup_mod=cgroup_mod)
    except HaulError:
        raise
    cg = target['cgroup']
    name = params.get('name') or os.path.basename(target['cgroup_path'].rstrip('/'))
    identity = _images.make_identity(name, cgroup=target['cgroup_path'], root=None, init_pid=target['pid'])
    result.update(name=name, pid=target['pid'], root_pid=target['pid'], cgroup=target['cgroup_path'])

    def recheck():
        state = cg.state()
        if state != 'thawed' or all_stopped(target['pids']):
            raise HaulError('identify', 'container %s (cgroup %s) is %s: a lazy dump needs it running'
                            % (name, cg.path, 'stopped' if state == 'thawed' else state))
    recheck()
    result['sockets'] = _checkpoint.checked_sockets(name, target['pids'], criu_version)
    root = _container.container_root(params, target['pid'], name)
    identity['root'] = root
    result['root'] = root
    identity['network'] = result['network'] = _network.describe(target['pid'], step='identify')

    _images.require_usable(images_dir)
    estimate = int(tmpfs_usage(target['pid']) * _checkpoint.DUMP_SIZE_FACTOR) + 16 * 1024 * 1024
    result.update(estimated_bytes=estimate,
                  free_bytes=_images.require_space(images_dir, estimate, 'the lazy dump of ' + name))

    options = _criu_options.CriuOptions(
        lazy_pages=True, page_server={'address': lazy['address'], 'port': lazy['port']},
        **dict(_checkpoint.checkpoint_kwargs(params, target['pid'], root, cg), **tls_kwargs))
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
            _checkpoint._rescue_source(cg, params.get('freeze_timeout') or 10, target['pid'])  # pylint: disable=protected-access
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
