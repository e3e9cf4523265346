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


def _write_proc(root, pid, nspid, ppid=1, rss_kb=None, cgroup='0::/haul/ct\n'):
    d = root / str(pid)
    d.mkdir(parents=True)
    (d / 'status').write_text('Name:\tx\nState:\tS (sleeping)\nPid:\t%d\nPPid:\t%d\nNSpid:\t%s\n'
                              % (pid, ppid, '\t'.join(str(x) for x in nspid)))
    if rss_kb is not None:
        (d / 'smaps_rollup').write_text('00400000-7ffd [rollup]\nRss:             %d kB\nPss: 1 kB\n' % rss_kb)
    (d / 'cgroup').write_text(cgroup)
    (d / 'stat').write_text('%d (x y) S %d 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 123456 0 0\n' % (pid, ppid))


@pytest.fixture
def write_proc():
    """``write_proc(root, pid, nspid, ppid=1, rss_kb=None, cgroup=...)``: one process of a fake /proc
    under ``root`` (status with NSpid, stat, cgroup, smaps_rollup), for _proc and _container."""
    return _write_proc


# The start of a fake ``criu lazy-pages``: its options, and its behaviour ($mode) from FAKE_MODE in
# the images dir; the caller's shell text follows (a ``case "$mode" in ... esac``).
FAKE_CRIU_HEAD = r"""#!/bin/sh
# fake "criu lazy-pages": behaviour chosen by $FAKE_MODE in the images dir
dir=""; fd=""; log=""
while [ $# -gt 0 ]; do
  case "$1" in
    --images-dir) dir=$2; shift;;
    --status-fd) fd=$2; shift;;
    --log-file) log=$2; shift;;
  esac
  shift
done
mode=$(cat "$dir/FAKE_MODE")
"""


@pytest.fixture
def fake_criu(tmp_path):
    """``fake_criu(body)``: an executable fake criu (:data:`FAKE_CRIU_HEAD` + ``body``) and an empty
    images dir; returns their paths (``tmp_path / 'criu'``, ``tmp_path / 'images'``)."""
    def make(body):
        criu = tmp_path / 'criu'
        criu.write_text(FAKE_CRIU_HEAD + body)
        criu.chmod(0o755)
        img = tmp_path / 'images'
        img.mkdir()
        return criu, img
    return make
