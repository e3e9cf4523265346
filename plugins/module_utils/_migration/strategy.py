# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Which strategy a handoff uses (private module_util). The hooks are documented on
:class:`.stopcopy.StopCopy`; one strategy per file: :mod:`.stopcopy`, :mod:`.precopy`,
:mod:`.postcopy` (post-copy and hybrid)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.haul.live.plugins.module_utils._migration.postcopy import Hybrid, PostCopy
from ansible_collections.haul.live.plugins.module_utils._migration.precopy import PreCopy
from ansible_collections.haul.live.plugins.module_utils._migration.stopcopy import StopCopy

CLASSES = dict((cls.name, cls) for cls in (StopCopy, PreCopy, PostCopy, Hybrid))


def strategy_of(lazy, precopy):
    """The strategy's name (:data:`.phases.STRATEGIES`) from the handoff's two options."""
    if precopy:
        return 'hybrid' if lazy else 'precopy'
    return 'postcopy' if lazy else 'stopcopy'


def for_params(params, dump_fn):
    """The strategy object of a handoff's ``params`` (``lazy``, ``precopy``)."""
    return CLASSES[strategy_of(bool(params.get('lazy')), bool(params.get('precopy')))](params, dump_fn)
