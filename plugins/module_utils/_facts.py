# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The facts of criu_check: CRIU's version and features, the CPU, memory, cgroups and
the images filesystem of a host (:func:`gather_facts`).

This is a private module_util: it is not part of the collection's public API.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil

from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.module_utils._criu import CriuSession, MIN_CRIU_VERSION, PACKAGE_HINT, compare_versions, format_version
from ansible_collections.haul.live.plugins.module_utils._proc import _read_text


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


def v2_has_freezer(v2_mount, kernel_release):
    """Whether the cgroup v2 hierarchy at ``v2_mount`` has the freezer: a child cgroup with
    ``cgroup.freeze`` (the root cgroup has none), or, on a host with no child cgroup at all (no
    systemd, say), a kernel >= 5.2, where every non-root cgroup gets one."""
    try:
        children = [os.path.join(v2_mount, d) for d in os.listdir(v2_mount)
                    if os.path.isfile(os.path.join(v2_mount, d, 'cgroup.procs'))]
    except OSError:
        children = []
    if children:
        return any(os.path.exists(os.path.join(c, 'cgroup.freeze')) for c in children)
    if os.path.exists(os.path.join(v2_mount, 'cgroup.freeze')):
        return True
    try:
        return compare_versions(kernel_release, (5, 2)) >= 0
    except ValueError:
        return False


def _cgroup_facts(cgroup_mod):
    try:
        mounts = cgroup_mod.find_mounts()
    except HaulError as e:
        return {'error': e.cause}
    v2_freezer = False
    if mounts.v2:
        v2_freezer = v2_has_freezer(mounts.v2, os.uname()[2])
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
