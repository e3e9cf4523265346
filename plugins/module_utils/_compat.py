# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What a CRIU version can do on a kernel version: rules known to break migrations.

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

_KERNEL = re.compile(r'^\s*(\d+)\.(\d+)')


def kernel_version(release):
    """(major, minor) of a kernel release such as '6.18.44-fc-v782' or '6.1.0-28-cloud-amd64', or None."""
    m = _KERNEL.match(str(release or ''))
    return (int(m.group(1)), int(m.group(2))) if m else None


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
