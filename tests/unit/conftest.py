# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""pytest set-up for the unit tests: make ``ansible_collections.haul.live`` importable.

``make units`` puts ``build/collections`` on PYTHONPATH; there
``build/collections/ansible_collections/haul/live`` is a symlink to the checkout. When pytest
is run by hand (``.venv/bin/pytest tests/unit``), this file creates that symlink and path entry
itself, so tests can always write::

    from ansible_collections.haul.live.plugins.module_utils import _common
"""

from __future__ import annotations

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, 'build', 'collections')
LINK = os.path.join(COLLECTIONS, 'ansible_collections', 'haul', 'live')


def _ensure_collection_path():
    if not os.path.lexists(LINK):
        os.makedirs(os.path.dirname(LINK), exist_ok=True)
        os.symlink(os.path.join('..', '..', '..', '..'), LINK)
    if os.path.realpath(LINK) != os.path.realpath(REPO):
        raise RuntimeError('%s does not point to the checkout %s: run "make collection"' % (LINK, REPO))
    if COLLECTIONS not in sys.path:
        sys.path.insert(0, COLLECTIONS)


_ensure_collection_path()


# A stand-in for ``ssh`` that drops the options and the host and runs the remote command locally,
# the way sshd would (through a shell): real rsync and dd run through it in the transport tests.
STAND_IN_SSH = """#!/bin/sh
while [ $# -gt 0 ]; do
  case "$1" in
    -o|-i|-p|-l) shift 2 ;;
    -*) shift ;;
    *) shift; break ;;
  esac
done
exec sh -c "$*"
"""


@pytest.fixture
def stand_in_ssh(tmp_path):
    """Path of an executable :data:`STAND_IN_SSH`."""
    p = tmp_path / 'fake-ssh'
    p.write_text(STAND_IN_SSH)
    p.chmod(0o755)
    return str(p)
