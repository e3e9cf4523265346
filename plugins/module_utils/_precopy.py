# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Pre-copy: iterative pre-dump rounds while the container keeps running (criu_predump).

This is a private module_util: it is not part of the collection's public API.

Layout of the images directory::

    IMAGES_DIR/round-1/   first round: all the memory        (manifest kind "predump", parent null)
    IMAGES_DIR/round-2/   pages dirtied since round 1         (parent "../round-1")
    ...
    IMAGES_DIR/round-N/   the last round: ``last_images``, the parent_images of the final criu_dump

Rounds stop by the convergence rule of :class:`_policy.Convergence`. Nothing is done
without memory dirty tracking: the kernel check comes first, and fails before any
directory is created or any process is touched.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import shutil
import time

from ansible_collections.haul.live.plugins.module_utils._common import HaulError, log_tail
from ansible_collections.haul.live.plugins.module_utils._criu import (
    CriuOptions,
    CriuSession,
    checkpoint_kwargs,
    detect_root,
    page_server_kwargs,
    resolve_target,
    root_candidates,
)
from ansible_collections.haul.live.plugins.module_utils._policy import Convergence

ROUND_PREFIX = 'round-'
_ROUND_RE = re.compile(r'^round-(\d+)$')
NO_DIRTY_TRACKING = ('this kernel has no memory dirty tracking (built without CONFIG_MEM_SOFT_DIRTY): '
                     'pre-copy is impossible on %s; use stop-and-copy or post-copy')


def round_dir(images_dir, n):
    return os.path.join(images_dir, '%s%d' % (ROUND_PREFIX, n))


def check_dirty_tracking(session):
    """Raise HaulError('predump', ...) naming CONFIG_MEM_SOFT_DIRTY unless the kernel tracks dirty memory.

    Asks CRIU twice: the RPC FEATURE_CHECK (``mem_track``) and ``criu check --feature
    mem_dirty_track``. Either one saying no is enough to refuse; neither saying yes too.
    Returns the features dict (for ``CriuSession.pre_dump``).
    """
    feats = {}
    try:
        rpc = session.rpc_features()
        if 'mem_track' in rpc:
            feats['mem_track'] = rpc['mem_track']
    except HaulError:
        pass
    feats['mem_dirty_track'] = session.cli_feature('mem_dirty_track')
    if feats.get('mem_track') is False or feats['mem_dirty_track'] is False:
        raise HaulError('predump', NO_DIRTY_TRACKING % os.uname()[1], features=feats)
    if not (feats.get('mem_track') or feats['mem_dirty_track']):
        raise HaulError('predump', 'CRIU cannot tell whether this kernel tracks dirty memory (CONFIG_MEM_SOFT_DIRTY): '
                        'pre-copy is refused on %s' % os.uname()[1], features=feats)
    return feats


def _check_images_dir(images_dir, images_mod):
    """The images dir may be absent, empty, or hold only round-N dirs and logs of an earlier run."""
    ok, why = images_mod.can_create(images_dir)
    if not ok:
        raise HaulError('images', why)
    if not os.path.isdir(images_dir):
        return []
    foreign = []
    old = []
    for name in sorted(os.listdir(images_dir)):
        full = os.path.join(images_dir, name)
        if _ROUND_RE.match(name) and os.path.isdir(full) and not os.path.islink(full):
            old.append(name)
        elif not name.endswith('.log'):
            foreign.append(name)
    if foreign:
        raise HaulError('images', '%s holds entries that are not pre-dump rounds (%s): use an empty or dedicated '
                        'images directory' % (images_dir, ', '.join(foreign[:5])))
    return old


def _options(params, target, root, parent):
    kwargs = checkpoint_kwargs(params, target['pid'], root, target['cgroup'])
    kwargs.update(track_mem=True, pre_dump_mode=params.get('pre_dump_mode') or 'splice', parent_img=parent)
    kwargs.update(page_server_kwargs(params.get('page_server')))
    return CriuOptions(**kwargs)


def _rescue(cg, timeout):
    """After a failed round: CRIU resumes the tree itself; make sure the cgroup is not left frozen."""
    try:
        if cg.state() != 'thawed':
            cg.thaw(timeout=timeout)
    except HaulError:
        pass


def run_rounds(params, check_mode=False, diff=False, pycriu_mod=None, page_size=None):
    """The criu_predump module's logic. ``params`` are the module's parameters. Returns the result dict."""
    from ansible_collections.haul.live.plugins.module_utils import _images  # pylint: disable=import-outside-toplevel
    from ansible_collections.haul.live.plugins.module_utils import _cgroup as cgroup_mod  # pylint: disable=import-outside-toplevel

    images_dir = os.path.abspath(params['images_dir'])
    result = {'changed': False, 'images_dir': images_dir}
    if page_size is None:
        page_size = os.sysconf('SC_PAGE_SIZE')

    # CRIU, pycriu and the kernel first: without dirty tracking nothing is touched.
    session = CriuSession(images_dir, criu_path=params.get('criu_path'), pycriu_mod=pycriu_mod)
    session.pycriu  # pylint: disable=pointless-statement
    criu_version = session.require_version()
    result['criu_version'] = criu_version
    features = check_dirty_tracking(session)

    try:
        policy = Convergence(max_rounds=params.get('max_rounds', 8), min_pages=params.get('min_pages', 64),
                             growth=params.get('growth', 0.10), max_downtime_ms=params.get('max_downtime_ms', 300),
                             page_size=page_size, rate_from_memwrite=bool(params.get('page_server')))
    except ValueError as e:
        raise HaulError('options', str(e))
    hint = params.get('transfer_bytes_per_s')
    if hint is not None and hint <= 0:
        raise HaulError('options', 'transfer_bytes_per_s must be > 0, not %r' % (hint,))

    # Which container? It must be running: pre-copy copies a live container.
    target = resolve_target(pid=params.get('pid'), cgroup=params.get('cgroup'), cgroup_mod=cgroup_mod)
    cg = target['cgroup']
    name = params.get('name') or os.path.basename(target['cgroup_path'].rstrip('/'))
    result.update(name=name, pid=target['pid'], cgroup=target['cgroup_path'])
    state = cg.state()
    if state != 'thawed':
        raise HaulError('identify', 'container %s (cgroup %s) is %s: pre-copy needs a running container'
                        % (name, cg.path, state))
    root = params.get('root')
    if root:
        if not os.path.isdir(root):
            raise HaulError('identify', 'root %s is not a directory' % root)
    else:
        root = detect_root(target['pid'], name)
        if not root:
            tried = ', '.join(root_candidates(name)) or '-'
            raise HaulError('identify', 'cannot find the root directory of %s (pid %d) on this host: tried %s and '
                            '/proc/%d/mountinfo; pass root' % (name, target['pid'], tried, target['pid']))
    result['root'] = root
    identity = _images.make_identity(name, cgroup=target['cgroup_path'], root=root, init_pid=target['pid'])

    old_rounds = _check_images_dir(images_dir, _images)
    _options(params, target, root, None)  # validates the options before anything runs

    # Pre-copy always changes something: the container moves on between two runs.
    result['changed'] = True
    if diff:
        result['diff'] = {'before': {'rounds': len(old_rounds)},
                          'after': {'rounds': '1..%d' % policy.max_rounds}}
    if check_mode:
        result.update(rounds=[], last_images=None, stop_reason=None, stop_rule=None, predicted_freeze_ms=None)
        return result

    _images.ensure_dir(images_dir)
    for old in old_rounds:
        _images.remove(os.path.join(images_dir, old))

    checksums = params.get('checksum', 'sha256') != 'none'
    timeout = params.get('freeze_timeout') or 10
    rounds = []
    decision = None
    start = time.time()
    n = 0
    while True:
        n += 1
        rdir = round_dir(images_dir, n)
        parent = '../%s%d' % (ROUND_PREFIX, n - 1) if n > 1 else None
        _images.ensure_dir(rdir)
        options = _options(params, target, root, parent)
        rsession = CriuSession(rdir, criu_path=session.criu_path, pycriu_mod=session.pycriu)
        try:
            res = rsession.pre_dump(options, features=features)
        except HaulError as e:
            _rescue(cg, timeout)
            # the round is incomplete: its directory goes (its log tail travels in the result)
            details = dict(e.details)
            details.update(rounds=rounds, last_images=rounds[-1]['images_dir'] if rounds else None,
                           log_tail=log_tail(e.log) if e.log else [])
            shutil.rmtree(rdir, ignore_errors=True)
            raise HaulError(e.step, 'round %d: %s' % (n, e.cause), rc=e.rc, **details)
        stats = _images.summarize_stats(_images.read_stats(rdir, 'dump'), page_size=page_size)
        try:
            manifest = _images.create_manifest(rdir, 'predump', identity, criu_version, parent=parent,
                                               checksums=checksums)
        except (IOError, OSError) as e:
            raise HaulError('manifest', 'cannot write the manifest of %s: %s' % (rdir, e), rounds=rounds)
        rnd = dict(stats)
        rnd.update(round=n, images_dir=rdir, parent=parent, duration=round(res['duration'], 3),
                   log_path=res['log_path'],
                   bytes=sum(f.get('size', 0) for f in manifest['files'].values()))
        rnd.setdefault('pages_written', 0)
        if hint is not None:
            rnd['transfer_bytes_per_s'] = hint
        decision = policy.decide(rounds + [rnd])
        rnd['predicted_freeze_ms'] = decision['predicted_freeze_ms']
        rounds.append(rnd)
        if decision['stop']:
            break

    result.update(rounds=rounds, last_images=rounds[-1]['images_dir'], stop_reason=decision['reason'],
                  stop_rule=decision['rule'], predicted_freeze_ms=decision['predicted_freeze_ms'],
                  duration=round(time.time() - start, 3), bytes=sum(r['bytes'] for r in rounds),
                  log_path=rounds[-1]['log_path'])
    return result
