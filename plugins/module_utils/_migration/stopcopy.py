# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Stop-and-copy, and the hooks every strategy has (private module_util).

:class:`StopCopy` is the plain strategy: freeze, dump everything, copy the images and the root
filesystem's last changes with rsync, restore, resume. The other strategies subclass it and
add to its hooks (:mod:`.precopy`, :mod:`.postcopy`); :func:`.strategy.strategy_of` chooses one.
:func:`.source.send_container` calls the hooks in this order:

``check`` (before the destination is contacted), ``before_freeze`` (the container still runs),
``checkpoint`` (the dump, inside the freeze), ``transfer`` (the images, inside the freeze),
``after_resume`` (the destination runs the container). A failure calls, through the rollback
executor (:mod:`.rollback`), ``abandon`` (stop what the strategy still runs, before the source
thaws or is killed) and removes ``scratch_dirs`` (its own images besides the final dump's).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.haul.live.plugins.module_utils._migration import protocol


class StopCopy(object):
    """Stop-and-copy: everything moves inside the freeze."""

    name = 'stopcopy'
    lazy = False          # the destination resumes before the memory moved (post-copy, hybrid)

    def __init__(self, params, dump_fn):
        self.params = params
        self.dump_fn = dump_fn
        self.precopied = None    # pre-copy: its rounds (:mod:`.precopy`)
        self.t_precopied = None  # pre-copy: when its rounds ended
        self.pages_ms = 0        # post-copy: how long the memory took to follow

    def check(self, src):
        """Before the destination is contacted: what this strategy refuses (the container runs)."""

    def before_freeze(self, src, dump_params):
        """With the destination waiting and the container still running: what the freeze should
        not wait for. May add to ``dump_params``."""

    def checkpoint(self, src, dump_params):
        """The dump, inside the freeze, bounded by the dump timeout; returns the dump's result."""
        return protocol.bounded(src.timeouts['dump'], self.params['images_dir'], self.dump_fn, dump_params)

    def images_job(self, src, images, dest):
        """The job sending the images inside the freeze."""
        return (src.rsync.sync, (images, dest), dict(delete=True, mkdir_mode='0700', fresh=True))

    def rootfs_job(self, src, root, dest):
        """The job sending the root filesystem's last changes inside the freeze."""
        return (src.rsync.sync, (root, dest), dict(delete=True))

    def transfer(self, src, dumped):
        """Send the images (and the root filesystem's delta) side by side over the shared SSH
        connection; returns ``(images sent, rootfs sent or None)``."""
        jobs = [self.images_job(src, self.params['images_dir'], src.dest_images)]
        root = dumped.get('root')
        if self.params.get('sync_rootfs') and root:
            jobs.append(self.rootfs_job(src, root, self.params.get('rootfs_dest') or root))
        return tuple((protocol.run_parallel(jobs) + [None])[:2])

    def after_resume(self, src, st):
        """The destination runs the container (its last status ``st``); returns ``(status,
        bytes of memory that moved after the resume)``."""
        return st, 0

    def abandon(self, src):
        """A failure: stop what this strategy still runs on the source (before a thaw or a kill)."""

    def scratch_dirs(self, images_mod, images_dir):
        """This strategy's own images directories besides ``images_dir`` (removed with it)."""
        return []

    def summary(self):
        """This strategy's part of the handoff's result."""
        return {}
