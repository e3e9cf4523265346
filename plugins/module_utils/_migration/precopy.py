# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Pre-copy: pre-dump rounds while the container runs, then a short final dump (private module_util).

Each round (:mod:`_precopy`) goes to the destination at once; the final dump inside the freeze
then holds only what changed since the last round (its parent). See docs/design.md.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from ansible_collections.haul.live.plugins.module_utils._common import HaulError
from ansible_collections.haul.live.plugins.module_utils import _precopy
from ansible_collections.haul.live.plugins.module_utils._migration.stopcopy import StopCopy


class PreCopy(StopCopy):
    """Pre-copy: rounds before the freeze (hooks ``check``, ``before_freeze``)."""

    name = 'precopy'

    def __init__(self, params, dump_fn):
        super(PreCopy, self).__init__(params, dump_fn)
        dest_images = params.get('dest_images_dir') or params['images_dir']
        if os.path.basename(dest_images.rstrip('/')) != os.path.basename(params['images_dir'].rstrip('/')):
            # the final dump's parent link is relative (../NAME.precopy/round-N): same name on both hosts
            raise HaulError('options', 'pre-copy needs the same images directory name on both hosts, not %s and %s'
                            % (params['images_dir'], dest_images))
        self.ctx = None

    def check(self, src):
        # every pre-copy check (dirty tracking first) before the destination is even contacted
        self.ctx = _precopy.prepare_handoff(self.params, self.params['images_dir'])
        super(PreCopy, self).check(src)

    def before_freeze(self, src, dump_params):
        # pre-copy rounds while the container runs; each round goes to the destination at once
        # each round syncs the whole rounds directory: the earlier rounds are there already
        # (rsync skips them), and the directory itself gets mode 0700 on the destination too
        rounds_src = src.images_mod.precopy_dir(self.params['images_dir'])
        rounds_dest = src.images_mod.precopy_dir(src.dest_images)
        self.precopied = _precopy.send_rounds(self.ctx, lambda _rdir: src.rsync.sync(
            rounds_src, rounds_dest, delete=True, mkdir_mode='0700'))
        dump_params['parent_images'] = self.precopied['parent_images']
        self.t_precopied = time.time()
        super(PreCopy, self).before_freeze(src, dump_params)

    def scratch_dirs(self, images_mod, images_dir):
        return [images_mod.precopy_dir(images_dir)] + super(PreCopy, self).scratch_dirs(images_mod, images_dir)

    def summary(self):
        out = super(PreCopy, self).summary()
        out['precopy'] = precopy_summary(self.precopied)
        return out


def precopy_summary(precopied):
    """The pre-copy part of a handoff's result: each round's pages and transfer, and why the rounds stopped."""
    if not precopied:
        return None
    keep = ('round', 'pages_written', 'pages_skipped_parent', 'bytes', 'bytes_sent', 'sync_ms', 'duration',
            'transfer_bytes_per_s', 'predicted_freeze_ms')
    return {'rounds': [dict((k, r.get(k)) for k in keep) for r in precopied['rounds']],
            'stop_rule': precopied['stop_rule'], 'stop_reason': precopied['stop_reason'],
            'predicted_freeze_ms': precopied['predicted_freeze_ms'], 'bytes_sent': precopied.get('bytes_sent')}
