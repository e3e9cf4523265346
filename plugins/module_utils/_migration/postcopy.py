# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Post-copy, and hybrid (pre-copy rounds, then post-copy) (private module_util).

Only the state moves inside the freeze: the dump is lazy (:mod:`_postcopy`, its memory stays
with this host's page server), its small images go through the relay's own session, and the
destination resumes the container before its memory has moved; it then fetches the pages, and
the source follows the transfer until the destination says every page is there (or LOST).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.module_utils import _postcopy
from ansible_collections.haul.live.plugins.module_utils import _transfer
from ansible_collections.haul.live.plugins.module_utils._migration import protocol
from ansible_collections.haul.live.plugins.module_utils._migration.precopy import PreCopy
from ansible_collections.haul.live.plugins.module_utils._migration.stopcopy import StopCopy


class PostCopy(StopCopy):
    """Post-copy: a lazy dump; the memory follows after the resume."""

    name = 'postcopy'
    lazy = True

    def __init__(self, params, dump_fn):
        super(PostCopy, self).__init__(params, dump_fn)
        self.rootfs = None

    def before_freeze(self, src, dump_params):
        """What the short freeze should not wait for. A last rsync of the root filesystem with a
        record of its state, so that the freeze sends its delta only if it changed
        (:class:`_transport.RootfsDelta`); then everything of the lazy dump but the dump itself
        (``_postcopy.warm_up``: pycriu, the CRIU version, the checks, CRIU started and waiting)."""
        super(PostCopy, self).before_freeze(src, dump_params)
        if self.params.get('sync_rootfs') and self.params.get('root'):
            self.rootfs = src.transport_mod.RootfsDelta(src.rsync, self.params['root'],
                                                        self.params.get('rootfs_dest') or self.params['root'])
            self.rootfs.presync(delete=True)
        _postcopy.warm_up(dump_params)

    def images_job(self, src, images, dest):
        # the (small) images of a lazy dump go through the relay's session
        entries = protocol.Relay.dir_entries(images)
        if entries is not None:
            return (src.relay.send_dir, (images, dest), dict(entries=entries))
        return super(PostCopy, self).images_job(src, images, dest)

    def rootfs_job(self, src, root, dest):
        if self.rootfs is not None and self.rootfs.src == root and self.rootfs.dest == dest:
            return (self.rootfs.sync, (), dict(delete=True))
        return super(PostCopy, self).rootfs_job(src, root, dest)

    def after_resume(self, src, st):
        # its memory is still moving; the destination says when every page is there (no fixed
        # total: the destination judges the progress and beats while pages move)
        t_running = time.time()
        st = _transfer.follow_transfer(src.relay.expect, protocol.COMPLETE, protocol.RUNNING, self.params['timeout'],
                                       on_progress=src.note_pages)
        if st['state'] != protocol.COMPLETE:
            raise HaulError('transfer', st.get('msg') or st['state'], log_tail=st.get('log_tail'),
                            lost=st.get('lost'), progress=st.get('progress'))
        self.pages_ms = protocol.ms(t_running, time.time())
        # the destination counted the pages its lazy-pages daemon moved
        return st, int(st.get('pages') or 0) * os.sysconf('SC_PAGE_SIZE')

    def abandon(self, src):
        # ends a page server that still runs (or a lazy dump prepared, waiting), if any
        _postcopy.stop_lazy_dump(self.params['images_dir'])
        super(PostCopy, self).abandon(src)


class Hybrid(PreCopy, PostCopy):
    """Hybrid: pre-copy rounds while the container runs, then post-copy."""

    name = 'hybrid'
