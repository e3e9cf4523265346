# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What to ask CRIU: :class:`CriuOptions`, a plain-Python description of one CRIU
request's options (dump, pre-dump, lazy dump, restore), validated, and copied onto a
``pycriu.rpc.criu_opts`` message by :meth:`CriuOptions.apply` (or any object with the
same attributes, which is how the unit tests run without pycriu). :mod:`_criu` sends it.

This is a private module_util: it is not part of the collection's public API.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.haul.live.plugins.module_utils._common import HaulError

LOG_LEVEL = 4

NETWORK_LOCKS = ('nftables', 'iptables', 'skip')
CGROUP_MODES = ('soft', 'full', 'strict', 'ignore', 'none', 'props', 'default')
PRE_DUMP_MODES = ('splice', 'read')


# --------------------------------------------------------------------------- options

class CriuOptions(object):
    """Options of one CRIU request, independent of pycriu.

    Only options that are set (not None) are copied to the RPC message, except
    ``network_lock``, which is always set because CRIU's default (iptables)
    is usually wrong on modern hosts.

    :param pid: root pid of the tree to dump (the pid-namespace init).
    :param root: root directory of the container (restore: on this host).
    :param external: list of CRIU ``--external`` specs, e.g. ``mnt[/path]:key``.
    :param leave_stopped: dump leaves the tasks SIGSTOPped (default True).
    :param leave_running: dump leaves the tasks running (pre-copy tests only).
    :param network_lock: ``nftables`` (default), ``iptables`` or ``skip``.
    :param tcp_established: checkpoint/restore established TCP connections.
    :param tcp_close: restore: close established connections instead.
    :param manage_cgroups: dump/restore the cgroups (default True).
    :param manage_cgroups_mode: one of :data:`CGROUP_MODES` (default ``soft``).
    :param freeze_cgroup: absolute path of the freezer cgroup directory
        (a cgroup v1 freezer dir or a cgroup v2 dir) used to freeze the tree.
    :param shell_job: allow a tree that is not a session leader (default False).
    :param file_locks: dump file locks.
    :param ext_unix_sk: allow external unix sockets.
    :param parent_img: parent images dir (pre-dump), relative to the images dir
        (an absolute path is converted with ``images_dir``).
    :param track_mem: turn on memory change tracking (pre-dump rounds).
    :param pre_dump_mode: ``splice`` or ``read``.
    :param auto_dedup: punch holes in parent images as pages are dumped.
    :param page_server: dict(address, port): send pages to this page server
        (dump/pre-dump), or with ``lazy_pages``: listen there for lazy pages.
    :param tls, tls_cacert, tls_cacrl, tls_cert, tls_key, tls_no_cn_verify: TLS for the page server.
    :param lazy_pages: dump: keep pages for lazy transfer; restore: restore lazily.
    :param status_fd: fd (in this process) that CRIU writes a byte to when ready.
    :param rst_sibling: restore the tree as a sibling (child of the caller), detached.
    :param cg_root: list of (controller or None, path) pairs for ``--cgroup-root``.
    :param timeout: seconds CRIU waits for the tree to freeze.
    :param ghost_limit: max size of a ghost file.
    :param auto_ext_mnt, ext_sharing, ext_masters: ``--ext-mount-map auto``,
        ``--enable-external-sharing``, ``--enable-external-masters`` (LXC's dump).
    :param enable_fs: list of filesystem types to dump as they are (``--enable-fs``).
    :param force_irmap: ``--force-irmap``.
    :param log_level: CRIU log level (default 4).
    """

    FIELDS = ('pid', 'root', 'external', 'leave_stopped', 'leave_running', 'network_lock',
              'tcp_established', 'tcp_close', 'tcp_skip_in_flight', 'manage_cgroups', 'manage_cgroups_mode',
              'freeze_cgroup', 'shell_job', 'file_locks', 'ext_unix_sk', 'parent_img', 'track_mem',
              'pre_dump_mode', 'auto_dedup', 'page_server', 'tls', 'tls_cacert', 'tls_cacrl',
              'tls_cert', 'tls_key', 'tls_no_cn_verify', 'lazy_pages', 'status_fd', 'rst_sibling',
              'cg_root', 'timeout', 'ghost_limit', 'log_level', 'evasive_devices', 'link_remap',
              'weak_sysctls', 'display_stats', 'auto_ext_mnt', 'ext_sharing', 'ext_masters', 'enable_fs',
              'force_irmap')

    def __init__(self, **kwargs):
        unknown = set(kwargs) - set(self.FIELDS)
        if unknown:
            raise TypeError('unknown CRIU options: %s' % ', '.join(sorted(unknown)))
        for name in self.FIELDS:
            setattr(self, name, kwargs.get(name))
        if self.network_lock is None:
            self.network_lock = 'nftables'
        if self.log_level is None:
            self.log_level = LOG_LEVEL
        self.validate()

    def validate(self):
        def bad(cause):
            raise HaulError('options', cause)

        if self.network_lock not in NETWORK_LOCKS:
            bad('network_lock must be one of %s, not %r' % (', '.join(NETWORK_LOCKS), self.network_lock))
        if self.manage_cgroups_mode is not None and self.manage_cgroups_mode not in CGROUP_MODES:
            bad('manage_cgroups_mode must be one of %s, not %r' % (', '.join(CGROUP_MODES), self.manage_cgroups_mode))
        if self.pre_dump_mode is not None and self.pre_dump_mode not in PRE_DUMP_MODES:
            bad('pre_dump_mode must be one of %s, not %r' % (', '.join(PRE_DUMP_MODES), self.pre_dump_mode))
        if self.leave_stopped and self.leave_running:
            bad('leave_stopped and leave_running are mutually exclusive')
        if self.pid is not None and (not isinstance(self.pid, int) or self.pid <= 0):
            bad('pid must be a positive integer, not %r' % (self.pid,))
        if self.page_server is not None:
            ps = self.page_server
            if not isinstance(ps, dict) or not ps.get('port'):
                bad('page_server needs at least a port')
            port = ps.get('port')
            if not isinstance(port, int) or not 0 < port < 65536:
                bad('page_server port must be 1..65535, not %r' % (port,))
        tls_files = [n for n in ('tls_cacert', 'tls_cacrl', 'tls_cert', 'tls_key') if getattr(self, n)]
        if tls_files and not self.tls:
            bad('%s given without tls' % ', '.join(tls_files))
        if self.tls and self.page_server is None:
            bad('tls needs a page_server')
        if bool(self.tls_cert) != bool(self.tls_key):
            bad('tls_cert and tls_key go together')
        if self.lazy_pages and self.page_server is None and self.pid is not None:
            bad('a lazy dump needs page_server (the address to serve pages from)')

    def parent_relative(self, images_dir):
        """parent_img as CRIU wants it: relative to the images dir."""
        if not self.parent_img:
            return None
        if os.path.isabs(self.parent_img):
            return os.path.relpath(self.parent_img, images_dir)
        return self.parent_img

    def apply(self, opts, rpc, images_dir=None):
        """Copy these options onto ``opts`` (a ``rpc.criu_opts`` or a fake with the same attributes).

        ``rpc`` is ``pycriu.rpc`` (for the enum values) or any object with
        NFTABLES/IPTABLES/SKIP, SOFT/FULL/..., SPLICE/VM_READ attributes.
        """
        simple = ('pid', 'root', 'leave_stopped', 'leave_running', 'tcp_established', 'tcp_close',
                  'tcp_skip_in_flight', 'manage_cgroups', 'freeze_cgroup', 'shell_job', 'file_locks',
                  'ext_unix_sk', 'track_mem', 'auto_dedup', 'tls', 'tls_cacert', 'tls_cacrl', 'tls_cert',
                  'tls_key', 'tls_no_cn_verify', 'lazy_pages', 'status_fd', 'rst_sibling', 'timeout',
                  'ghost_limit', 'log_level', 'evasive_devices', 'link_remap', 'weak_sysctls',
                  'display_stats', 'auto_ext_mnt', 'ext_sharing', 'ext_masters', 'force_irmap')
        for name in simple:
            value = getattr(self, name)
            if value is not None:
                setattr(opts, name, value)
        opts.network_lock = getattr(rpc, self.network_lock.upper())
        if self.manage_cgroups_mode is not None:
            mode = {'none': 'CG_NONE'}.get(self.manage_cgroups_mode, self.manage_cgroups_mode.upper())
            opts.manage_cgroups_mode = getattr(rpc, mode)
        if self.pre_dump_mode is not None:
            opts.pre_dump_mode = getattr(rpc, {'splice': 'SPLICE', 'read': 'VM_READ'}[self.pre_dump_mode])
        for spec in self.external or ():
            opts.external.append(spec)
        for fs in self.enable_fs or ():
            opts.enable_fs.append(fs)
        parent = self.parent_relative(images_dir) if images_dir else self.parent_img
        if parent:
            opts.parent_img = parent
        if self.page_server is not None:
            if self.page_server.get('address'):
                opts.ps.address = self.page_server['address']
            opts.ps.port = int(self.page_server['port'])
        for ctrl, path in self.cg_root or ():
            item = opts.cg_root.add()
            if ctrl is not None:  # "" is cgroup2 (":/PATH" on the command line)
                item.ctrl = ctrl
            item.path = path
        return opts

    def describe(self):
        """The options that are set, as a dict (for results and diffs)."""
        return dict((n, getattr(self, n)) for n in self.FIELDS if getattr(self, n) is not None)
