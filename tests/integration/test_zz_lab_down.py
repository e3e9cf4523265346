# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Runs last (file name order): ``tests/lab/lab down`` must leave nothing of the lab behind.

Checked: no ``haul-lab`` or ``haul-lab-client`` network namespace, no mount of them, no
``haul-lab`` cgroup in any hierarchy, no process in such a cgroup, no host interface named ``hl-*``,
and ``lab status`` reports the lab down. Only this lab counts (HAUL_LAB_NAME): another lab on the
same machine, a developer's, is left alone. HAUL_KEEP_LAB=1, or a subset of targets (``make integration TARGETS=...``),
skips this test (and so keeps the lab up). In the VM lab mode (HAUL_VMLAB=1, make test-vm) the
same holds for the VM lab: no ``haul-vmlab`` namespace, no QEMU, no state under /var/lib/haul-vmlab.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / 'tests' / 'lab' / 'lab'
VMLAB = REPO / 'tests' / 'vmlab' / 'vmlab'
VMLAB_MODE = os.environ.get('HAUL_VMLAB', '').strip() in ('1', 'true', 'yes')
NAME = os.environ.get('HAUL_LAB_NAME', 'haul-lab')
IFACE_PREFIX = 'hl-'
# this lab's name as a whole path component (not another lab's haul-lab-d, say)
MINE = re.compile(r'(^|[/:])%s(-client)?(/|\s|$)' % re.escape(NAME), re.MULTILINE)

pytestmark = pytest.mark.skipif(
    os.environ.get('HAUL_KEEP_LAB') == '1' or bool(os.environ.get('HAUL_TARGETS', '').strip()),
    reason='HAUL_KEEP_LAB=1 or a subset of targets (HAUL_TARGETS): the lab is kept up')


def sh(*cmd):
    return subprocess.run(list(cmd), cwd=str(REPO), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=600, check=False)


def leftovers():
    """Everything of the lab that is still there, one line each."""
    found = []

    netns = sh('ip', 'netns', 'list')
    for line in netns.stdout.splitlines():
        if line.split() and line.split()[0] in (NAME, NAME + '-client'):
            found.append('network namespace: %s' % line)
    if os.path.exists('/run/netns/' + NAME):
        found.append('network namespace file: /run/netns/%s' % NAME)

    with open('/proc/self/mountinfo') as f:
        found.extend('mount: %s' % line.strip() for line in f if MINE.search(line))

    candidates = {'/sys/fs/cgroup/unified/' + NAME, '/sys/fs/cgroup/freezer/' + NAME, '/sys/fs/cgroup/' + NAME}
    candidates.update(glob.glob('/sys/fs/cgroup/*/' + NAME))
    found.extend('cgroup: %s' % path for path in sorted(candidates) if os.path.isdir(path))

    me = os.getpid()
    for pid_dir in glob.glob('/proc/[0-9]*'):
        pid = int(os.path.basename(pid_dir))
        if pid == me:
            continue
        try:
            with open(pid_dir + '/cgroup') as f:
                cgroups = f.read()
            if not MINE.search(cgroups):
                continue
            with open(pid_dir + '/cmdline', 'rb') as f:
                cmdline = f.read().replace(b'\0', b' ').decode('utf-8', 'replace').strip()
        except (IOError, OSError):
            continue  # it exited meanwhile
        found.append('process %d (%s) in cgroup %s' % (pid, cmdline, ' '.join(cgroups.split())))

    links = sh('ip', '-o', 'link')
    for line in links.stdout.splitlines():
        parts = line.split(':', 2)
        if len(parts) > 1 and parts[1].strip().split('@')[0].startswith(IFACE_PREFIX):
            found.append('interface: %s' % parts[1].strip())
    return found


def vmlab_leftovers():
    found = []
    if os.path.exists('/run/netns/haul-vmlab'):
        found.append('network namespace: haul-vmlab')
    if os.path.exists('/var/lib/haul-vmlab'):
        found.append('state: /var/lib/haul-vmlab')
    qemu = sh('pgrep', '-af', 'qemu-system-x86_64 -name vm')
    found.extend('process: %s' % line for line in qemu.stdout.splitlines())
    sup = sh('pgrep', '-af', 'vmlab _supervise')
    found.extend('process: %s' % line for line in sup.stdout.splitlines())
    return found


@pytest.mark.skipif(not VMLAB_MODE, reason='the VM lab is not used outside make test-vm')
def test_vmlab_down_leaves_nothing_behind():
    down = sh(str(VMLAB), 'down')
    assert down.returncode == 0, 'tests/vmlab/vmlab down exited %d:\n%s%s' % (down.returncode, down.stdout, down.stderr)
    left = vmlab_leftovers()
    assert not left, 'the VM lab left these behind after "vmlab down":\n' + '\n'.join(left)


@pytest.mark.skipif(VMLAB_MODE, reason='make test-vm does not use the namespaced lab')
def test_lab_down_leaves_nothing_behind():
    down = sh(str(LAB), 'down')
    assert down.returncode == 0, 'tests/lab/lab down exited %d:\n%s%s' % (down.returncode, down.stdout, down.stderr)

    left = leftovers()
    assert not left, 'the lab left these behind after "lab down":\n' + '\n'.join(left)

    status = sh(str(LAB), 'status')
    assert status.returncode != 0, 'tests/lab/lab status exits 0 (up) after "lab down":\n' + status.stdout
    assert json.loads(status.stdout)['up'] is False, status.stdout
