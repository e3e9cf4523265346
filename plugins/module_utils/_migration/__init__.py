# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""One live migration, end to end (private: not part of the collection's public API).

Where things live (docs/development.md has the same map):

* :mod:`.phases`: the named phases and THE rollback rule (``rollback_plan``, ``may_thaw``), pure.
* :mod:`.rollback`: the one executor of that rule (:class:`.rollback.Rollback`); the handoff and
  the freeze's watchdog both call it.
* :mod:`.source`: the source's half (``send_container``): freeze, dump, copy, restore, commit,
  finalize, calling its strategy's hooks.
* :mod:`.destination`: the destination's half (``receive_container``, ``prepare_receive``).
* :mod:`.strategy` (the hooks and ``strategy_of``), :mod:`.stopcopy`, :mod:`.precopy`,
  :mod:`.postcopy` (post-copy and hybrid): one strategy per file.
* :mod:`.protocol`: the control directory, :class:`.protocol.Receiver`, :class:`.protocol.Relay`,
  the SSH ControlMaster, the message names; :mod:`.relay`: the script the relay runs on the
  destination (a real module, sent as its source text).
* :mod:`.watchdog`: the freeze's watchdog (ends a freeze whose handoff died).
* :mod:`.failpoints`: test-only failure points, inert unless their file exists.
"""
