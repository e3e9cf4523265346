# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What a CRIU version can do on a kernel version: rules known to break migrations, and what a
move between two kernel versions means (kernel_direction).

This is a private module_util: it is not part of the collection's public API. Plain Python,
no I/O: the callers pass the kernel release (``uname -r``) and the CRIU version.

The sockets rule: Linux 6.16 restricted ``SO_PASSCRED``/``SO_PASSSEC`` to unix, netlink and
bluetooth sockets. CRIU before 4.2 still asks for them on every socket, so on a kernel >= 6.16
it cannot dump any process that holds a TCP or UDP socket (``Error (criu/sockets.c:628):
sockets: Can't get 1:16 opt: Operation not supported``; CRIU issues 2705 and 2718). CRIU 4.2
fixed it. So: kernel >= 6.16 with CRIU < 4.2 cannot move a container that holds TCP or UDP
sockets. A container without them moves fine.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.haul.live.plugins.module_utils._criu import format_version, parse_version

SOCKETS_KERNEL = (6, 16)
SOCKETS_CRIU = (4, 2, 0)
SOCKETS_TEXT = {'kernel': '6.16', 'criu': '4.2'}

_KERNEL = re.compile(r'^\s*(\d+)\.(\d+)(?:\.(\d+))?')


def kernel_version(release):
    """(major, minor) of a kernel release such as '6.18.44-fc-v782' or '6.1.0-28-cloud-amd64', or None."""
    key = _release_key(release)
    return key[:2] if key else None


def _kernel_text(release):
    kv = kernel_version(release)
    return '%d.%d' % kv if kv else repr(release)


def _criu_text(version):
    try:
        return 'CRIU %s' % format_version(version)
    except (TypeError, ValueError):
        return 'a CRIU of unknown version'


def sockets_support(kernel_release, criu_version):
    """Whether this CRIU can dump TCP and UDP sockets on this kernel (and so move a container that has some).

    Returns ``(True, None)``, or ``(False, reason)`` where reason is one plain sentence that
    names both versions and what to install. A kernel below 6.16 is fine with any CRIU;
    on 6.16 or later CRIU must be >= 4.2. An unknown CRIU version (criu missing) on such a
    kernel, or a kernel release without a version, counts as not supported.
    """
    need = SOCKETS_TEXT['criu']
    kv = kernel_version(kernel_release)
    if kv is None:
        return False, ('cannot tell whether CRIU can dump TCP or UDP sockets: the kernel release %r has no version'
                       % (kernel_release,))
    if kv < SOCKETS_KERNEL:
        return True, None
    kernel = _kernel_text(kernel_release)
    try:
        criu = parse_version(criu_version) if criu_version else None
    except ValueError:
        criu = None
    if criu is None:
        return False, ('cannot tell whether CRIU can dump TCP or UDP sockets on kernel %s: its version is unknown '
                       '(kernel >= %s needs CRIU >= %s)' % (kernel, SOCKETS_TEXT['kernel'], need))
    if criu >= SOCKETS_CRIU:
        return True, None
    return False, ('CRIU %s cannot dump TCP or UDP sockets on kernel %s (kernel >= %s needs CRIU >= %s): '
                   'install CRIU >= %s' % (format_version(criu), kernel, SOCKETS_TEXT['kernel'], need, need))


def sockets_phrase(count):
    """'1 TCP/UDP socket', '3 TCP/UDP sockets'."""
    return '%d TCP/UDP socket%s' % (count, '' if count == 1 else 's')


def sockets_refusal(host, container, count, kernel_release, criu_version, side='source'):
    """The sentence that refuses to move ``container`` (holding ``count`` TCP/UDP sockets) because
    ``host``'s CRIU cannot handle sockets on its kernel; None when the rule allows it (or count is 0).

    ``side`` is ``source`` (the host that dumps) or ``destination`` (the host that restores).
    The preflight role builds the same sentence in Jinja (roles/preflight/tasks/main.yml).
    """
    if not count:
        return None
    ok, _reason = sockets_support(kernel_release, criu_version)
    if ok:
        return None
    action, verb = ('move', 'dump') if side == 'source' else ('take', 'handle')
    return ('%s cannot %s %s: it holds %s and %s cannot %s sockets on kernel %s (needs CRIU >= %s)'
            % (host, action, container, sockets_phrase(count), _criu_text(criu_version), verb,
               _kernel_text(kernel_release), SOCKETS_TEXT['criu']))


# CRIU features (criu check --feature, haul.live.criu_check's ``features``) that only the dumping
# side uses: a destination without them restores the same images.
DUMP_ONLY_FEATURES = frozenset(('mem_dirty_track', 'mem_track', 'pagemap_scan', 'pidfd_store'))


def _release_key(release):
    """(major, minor, patch) of a kernel release (patch 0 when absent), or None."""
    m = _KERNEL.match(str(release or ''))
    return tuple(int(x or 0) for x in m.groups()) if m else None


def kernel_direction(src_release, dst_release, src_features=None, dst_features=None, source='the source',
                     destination='the destination'):
    """What a move from kernel ``src_release`` to ``dst_release`` means for CRIU: a dict with
    ``source``, ``destination`` (the releases), ``direction`` (``same``, ``newer``, ``older`` or
    ``unknown``), ``supported`` (bool), ``missing`` (features the source's CRIU has and the
    destination's lacks, dump-only ones left out) and ``statement`` (one sentence).

    The rule: CRIU's images do not depend on the kernel, and a kernel keeps the interfaces of the
    kernels before it, so the same or a newer kernel is supported. An older kernel is supported
    when its CRIU offers every feature (criu check) that the source's does, except those only the
    dump uses; a container that calls something the older kernel lacks still fails to restore, and
    the source then resumes (the rollback rule).
    """
    src_features = src_features or {}
    dst_features = dst_features or {}
    s, d = _release_key(src_release), _release_key(dst_release)
    missing = sorted(name for name, have in src_features.items()
                     if have and dst_features.get(name) is False and name not in DUMP_ONLY_FEATURES)
    out = {'source': src_release, 'destination': dst_release, 'missing': missing}
    head = 'kernel %s on %s -> %s on %s' % (src_release, source, dst_release, destination)
    if s is None or d is None:
        out.update(direction='unknown', supported=False,
                   statement='%s: cannot tell which is newer (a release without a version)' % head)
    elif s == d:
        # CRIU versions that differ on one kernel are the preflight's CRIU rule, not a kernel matter
        out.update(direction='same', supported=True, statement='%s: the same kernel version, supported' % head)
    elif d > s:
        out.update(direction='newer', supported=True,
                   statement='%s: to a newer kernel, supported (CRIU\'s images do not depend on the kernel, '
                             'and a newer kernel keeps the interfaces of an older one)' % head)
    elif missing:
        out.update(direction='older', supported=False,
                   statement='%s: to an older kernel, not supported: CRIU on %s lacks %s, which CRIU on %s has'
                             % (head, destination, ', '.join(missing), source))
    else:
        out.update(direction='older', supported=True,
                   statement='%s: to an older kernel, supported: CRIU on %s offers every restore feature that '
                             'CRIU on %s does (a container that calls what the older kernel lacks still fails '
                             'to restore, and the source resumes)' % (head, destination, source))
    return out
