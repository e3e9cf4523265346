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
from ansible_collections.haul.live.plugins.module_utils._checkpoint import checkpoint_kwargs
from ansible_collections.haul.live.plugins.module_utils._container import container_root, page_server_kwargs, resolve_target
from ansible_collections.haul.live.plugins.module_utils._criu import CriuSession, open_session
from ansible_collections.haul.live.plugins.module_utils._criu_options import CriuOptions
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
        elif not name.endswith('.log') and name not in (images_mod.MARKER, images_mod.MARKER + '.tmp'):
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


def _policy_from(params, page_size):
    try:
        return Convergence(max_rounds=params.get('max_rounds', 8), min_pages=params.get('min_pages', 64),
                           growth=params.get('growth', 0.10), max_downtime_ms=params.get('max_downtime_ms', 300),
                           page_size=page_size, rate_from_memwrite=bool(params.get('page_server')))
    except ValueError as e:
        raise HaulError('options', str(e))


def prepare(params, images_dir, pycriu_mod=None, page_size=None, cgroup_mod=None, images_mod=None):
    """Everything checked before the first round; nothing is touched. Returns the context of :func:`iterate`.

    In this order: CRIU and pycriu, the kernel's dirty tracking (CONFIG_MEM_SOFT_DIRTY), the
    policy's settings, the container (running), its root, the images directory.
    """
    if images_mod is None:
        from ansible_collections.haul.live.plugins.module_utils import _images as images_mod  # pylint: disable=import-outside-toplevel
    if cgroup_mod is None:
        from ansible_collections.haul.live.plugins.module_utils import _cgroup as cgroup_mod  # pylint: disable=import-outside-toplevel
    if page_size is None:
        page_size = os.sysconf('SC_PAGE_SIZE')
    # CRIU, pycriu and the kernel first: without dirty tracking nothing is touched.
    session = open_session(images_dir, criu_path=params.get('criu_path'), pycriu_mod=pycriu_mod)
    criu_version = session.version()
    features = check_dirty_tracking(session)
    policy = _policy_from(params, page_size)
    hint = params.get('transfer_bytes_per_s')
    if hint is not None and hint <= 0:
        raise HaulError('options', 'transfer_bytes_per_s must be > 0, not %r' % (hint,))

    # Which container? It must be running: pre-copy copies a live container.
    target = resolve_target(pid=params.get('pid'), cgroup=params.get('cgroup'), cgroup_mod=cgroup_mod)
    cg = target['cgroup']
    name = params.get('name') or os.path.basename(target['cgroup_path'].rstrip('/'))
    state = cg.state()
    if state != 'thawed':
        raise HaulError('identify', 'container %s (cgroup %s) is %s: pre-copy needs a running container'
                        % (name, cg.path, state))
    root = container_root(params, target['pid'], name)
    old_rounds = _check_images_dir(images_dir, images_mod)
    _options(params, target, root, None)  # validates the options before anything runs
    return {'params': params, 'images_dir': images_dir, 'session': session, 'criu_version': criu_version,
            'features': features, 'policy': policy, 'hint': hint, 'target': target, 'name': name, 'root': root,
            'old_rounds': old_rounds, 'page_size': page_size, 'images_mod': images_mod,
            'identity': images_mod.make_identity(name, cgroup=target['cgroup_path'], root=root,
                                                 init_pid=target['pid'])}


def iterate(ctx, after_round=None):
    """Run the rounds of :func:`prepare`'s context until the policy stops them.

    Earlier rounds in the directory are removed first. ``after_round(rnd)``, when given, runs
    after each round is written (a handoff sends the round to the destination there) and returns
    a dict merged into the round's stats before the policy decides: its ``transfer_bytes_per_s``
    is then the measured rate that the downtime rule uses. Returns
    ``{'rounds', 'last_images', 'stop_reason', 'stop_rule', 'predicted_freeze_ms', 'duration', 'bytes'}``.
    A failed round raises HaulError('pre-dump' ...) with the earlier rounds in its details; the
    container is left running.
    """
    params, images_dir, images_mod = ctx['params'], ctx['images_dir'], ctx['images_mod']
    target, policy, page_size = ctx['target'], ctx['policy'], ctx['page_size']
    cg = target['cgroup']
    images_mod.ensure_dir(images_dir, migration_id=params.get('handoff_id'))
    for old in ctx['old_rounds']:
        images_mod.remove(os.path.join(images_dir, old))

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
        images_mod.ensure_dir(rdir, mark=False)  # the rounds' directory carries the marker
        options = _options(params, target, ctx['root'], parent)
        rsession = CriuSession(rdir, criu_path=ctx['session'].criu_path, pycriu_mod=ctx['session'].pycriu)
        try:
            res = rsession.pre_dump(options, features=ctx['features'])
        except HaulError as e:
            _rescue(cg, timeout)
            # the round is incomplete: its directory goes (its log tail travels in the result)
            details = dict(e.details)
            details.update(rounds=rounds, last_images=rounds[-1]['images_dir'] if rounds else None,
                           log_tail=log_tail(e.log) if e.log else [])
            shutil.rmtree(rdir, ignore_errors=True)
            raise HaulError(e.step, 'round %d: %s' % (n, e.cause), rc=e.rc, **details)
        stats = images_mod.summarize_stats(images_mod.read_stats(rdir, 'dump'), page_size=page_size)
        try:
            manifest = images_mod.create_manifest(rdir, 'predump', ctx['identity'], ctx['criu_version'],
                                                  parent=parent, checksums=checksums)
        except (IOError, OSError) as e:
            raise HaulError('manifest', 'cannot write the manifest of %s: %s' % (rdir, e), rounds=rounds)
        rnd = dict(stats)
        rnd.update(round=n, images_dir=rdir, parent=parent, duration=round(res['duration'], 3),
                   log_path=res['log_path'],
                   bytes=sum(f.get('size', 0) for f in manifest['files'].values()))
        rnd.setdefault('pages_written', 0)
        if ctx['hint'] is not None:
            rnd['transfer_bytes_per_s'] = ctx['hint']
        if after_round is not None:
            rnd.update(after_round(rnd) or {})
        decision = policy.decide(rounds + [rnd])
        rnd['predicted_freeze_ms'] = decision['predicted_freeze_ms']
        rounds.append(rnd)
        if decision['stop']:
            break
    return {'rounds': rounds, 'last_images': rounds[-1]['images_dir'], 'stop_reason': decision['reason'],
            'stop_rule': decision['rule'], 'predicted_freeze_ms': decision['predicted_freeze_ms'],
            'duration': round(time.time() - start, 3), 'bytes': sum(r['bytes'] for r in rounds)}


def run_rounds(params, check_mode=False, diff=False, pycriu_mod=None, page_size=None):
    """The criu_predump module's logic. ``params`` are the module's parameters. Returns the result dict."""
    images_dir = os.path.abspath(params['images_dir'])
    ctx = prepare(params, images_dir, pycriu_mod=pycriu_mod, page_size=page_size)
    target = ctx['target']
    result = {'changed': True, 'images_dir': images_dir, 'criu_version': ctx['criu_version'], 'name': ctx['name'],
              'pid': target['pid'], 'cgroup': target['cgroup_path'], 'root': ctx['root']}
    # Pre-copy always changes something: the container moves on between two runs.
    if diff:
        result['diff'] = {'before': {'rounds': len(ctx['old_rounds'])},
                          'after': {'rounds': '1..%d' % ctx['policy'].max_rounds}}
    if check_mode:
        result.update(rounds=[], last_images=None, stop_reason=None, stop_rule=None, predicted_freeze_ms=None)
        return result
    result.update(iterate(ctx))
    result['log_path'] = result['rounds'][-1]['log_path']
    return result


def prepare_handoff(params, images_dir, pycriu_mod=None):
    """Pre-copy inside a handoff, part 1: every check of :func:`prepare`, nothing touched.

    Called before the handoff even connects to the destination, so that a kernel without dirty
    tracking fails at once. ``params`` are the handoff's (the container options and ``precopy``:
    the policy's settings). The rounds go to ``_images.precopy_dir(images_dir)``.
    """
    from ansible_collections.haul.live.plugins.module_utils import _images  # pylint: disable=import-outside-toplevel
    pc = dict(params.get('precopy') or {})
    pparams = dict(params)
    pparams.update(max_rounds=pc.get('max_rounds', 8), min_pages=pc.get('min_pages', 64),
                   growth=pc.get('growth', 0.10), max_downtime_ms=pc.get('max_downtime_ms', 300),
                   pre_dump_mode=pc.get('pre_dump_mode') or 'splice', page_server=None,
                   transfer_bytes_per_s=None, checksum='none')
    return prepare(pparams, _images.precopy_dir(images_dir), pycriu_mod=pycriu_mod)


def send_rounds(ctx, sync_fn):
    """Pre-copy inside a handoff, part 2: the rounds of :func:`prepare_handoff`, each one sent on.

    ``sync_fn(round_dir)`` sends (at least) that round to the same place under the destination's
    pre-copy directory and returns the transfer's result (``bytes_sent``, ``duration_s``); the rate of that
    transfer is what the downtime rule of the policy uses. Returns :func:`iterate`'s result plus
    ``parent_images`` (the last round: the parent of the final dump) and ``bytes_sent``. The
    container keeps running.
    """
    def after_round(rnd):
        t = time.time()
        sent = sync_fn(rnd['images_dir']) or {}
        took = max(sent.get('duration_s') or (time.time() - t), 1e-6)
        out = {'bytes_sent': int(sent.get('bytes_sent') or 0), 'sync_ms': int(round(took * 1000))}
        if rnd.get('bytes'):
            out['transfer_bytes_per_s'] = int(rnd['bytes'] / took)
        return out

    res = iterate(ctx, after_round=after_round)
    res['parent_images'] = res['last_images']
    res['bytes_sent'] = sum(r.get('bytes_sent', 0) for r in res['rounds'])
    return res
