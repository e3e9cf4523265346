# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Runs the integration targets of tests/integration/targets/ on the lab, one pytest test each.

For each target NAME (a directory with ``tasks/main.yml``), sorted by name::

    ansible-playbook -i "$(tests/lab/lab inventory)" tests/integration/run_target.yml -e haul_target=NAME

with ANSIBLE_COLLECTIONS_PATH=build/collections, where ``ansible_collections/haul/live`` is a
symlink to the checkout. The lab is brought up first (``tests/lab/lab up`` is idempotent).

- A nonzero exit fails the test with the tail of the output.
- A target that prints ``HAUL_SKIP: <reason>`` with ``ansible.builtin.debug`` (and exits 0) is
  reported as skipped with that reason.
- A target whose ``aliases`` has a line ``disabled`` is skipped, unless it is named in
  HAUL_TARGETS (``make integration TARGETS="a b"`` runs only those).
- A target whose ``aliases`` has a line ``long`` (the long fault-matrix targets) is skipped unless
  HAUL_LONG is set: ``1`` runs every target, ``only`` runs only those (``make test-long``).
- HAUL_VMLAB=1 (``make test-vm``) runs the targets whose ``aliases`` has a line ``vmlab`` against
  the VM lab (tests/vmlab/vmlab, docs/vmlab.md) instead: vm1 on bookworm's 6.1 kernel, vm2 on
  trixie's 6.12, started afresh, and stopped at the end. A target marked ``vmlab_only`` is skipped
  on the namespaced lab; one marked ``long`` too runs only with HAUL_LONG=1 (``make test-vm LONG=1``).
- The full output of each target goes to tests/output/integration/NAME.log.

See docs/development.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / 'tests' / 'lab' / 'lab'
VMLAB = REPO / 'tests' / 'vmlab' / 'vmlab'
# the VM lab's kernels at the start of make test-vm: a move vm1 -> vm2 goes to a newer kernel
VMLAB_KERNELS = 'vm1=6.1,vm2=6.12'
TARGETS_DIR = REPO / 'tests' / 'integration' / 'targets'
PLAYBOOK = REPO / 'tests' / 'integration' / 'run_target.yml'
COLLECTIONS = REPO / 'build' / 'collections'
OUTPUT = REPO / 'tests' / 'output' / 'integration'

LAB_UP_TIMEOUT = int(os.environ.get('HAUL_LAB_UP_TIMEOUT', '1200'))
TARGET_TIMEOUT = int(os.environ.get('HAUL_TARGET_TIMEOUT', '1800'))
TAIL_LINES = 60

# The skip convention: a debug task whose msg starts with "HAUL_SKIP:". ansible-playbook prints
# it as   "msg": "HAUL_SKIP: <reason>"
SKIP_RE = re.compile(r'^\s*"msg": "HAUL_SKIP:\s*(.*?)"\s*,?\s*$', re.MULTILINE)


def aliases(target):
    """The alias lines of a target (comments and blank lines dropped)."""
    path = TARGETS_DIR / target / 'aliases'
    if not path.is_file():
        return []
    words = []
    for line in path.read_text().splitlines():
        line = line.split('#', 1)[0].strip()
        if line:
            words.append(line)
    return words


# Rough seconds per target (a fresh-clone run on a quiet 2-core machine); they only balance the
# shards of a parallel run (make integration runs INTEGRATION_JOBS shards, each on its own lab).
# A target that is not listed counts as DEFAULT_WEIGHT.
WEIGHTS = {
    'migrate_faults': 420, 'migrate_network': 340, 'fault_disk': 330, 'fault_postcopy': 300,
    'fault_owner': 280, 'fault_commit': 280, 'fault_phases': 240, 'fault_phases_late': 240,
    'fault_phases_postcopy': 450, 'fault_hung': 250, 'fault_partition': 480, 'fault_reboot': 420,
    'fault_postcopy_parallel': 190, 'evacuate': 180, 'migrate_postcopy': 170, 'service_postgres': 150,
    'preflight': 140, 'fault_input': 130, 'migrate_interrupted': 100,
    'fault_phases_complete': 180, 'runtime_discovery': 150,
}
DEFAULT_WEIGHT = 60


def shard_of(names, count):
    """{target: shard index} for ``count`` shards: the longest target first, each to the shard
    with the least work so far (ties: the lower index). Deterministic for a given set of names."""
    load = [0] * count
    out = {}
    for name in sorted(names, key=lambda n: (-WEIGHTS.get(n, DEFAULT_WEIGHT), n)):
        i = load.index(min(load))
        out[name] = i
        load[i] += WEIGHTS.get(name, DEFAULT_WEIGHT)
    return out


def vmlab_mode():
    return os.environ.get('HAUL_VMLAB', '').strip() in ('1', 'true', 'yes')


def discover():
    """pytest params for every target, in name order, honouring HAUL_TARGETS and ``disabled``."""
    found = []
    if TARGETS_DIR.is_dir():
        # setup_* targets hold shared tasks for the others (ansible-test's convention): not run alone
        found = sorted(d.name for d in TARGETS_DIR.iterdir()
                       if (d / 'tasks' / 'main.yml').is_file() and not d.name.startswith('setup_'))
    wanted = os.environ.get('HAUL_TARGETS', '').split()
    if wanted:
        # an unknown name is kept, so that its test fails and says so
        return [pytest.param(name, id=name) for name in wanted]
    shard = os.environ.get('HAUL_SHARD', '').strip()
    if shard:
        index, count = (int(x) for x in shard.split('/', 1))
        found = [name for name in found if shard_of(found, count)[name] == index]
    if vmlab_mode():
        found = [name for name in found if {'vmlab', 'vmlab_only'} & set(aliases(name))]
    long_mode = os.environ.get('HAUL_LONG', '').strip()
    if long_mode == 'only':
        found = [name for name in found if 'long' in aliases(name)]
    params = []
    for name in found:
        marks = []
        if 'disabled' in aliases(name):
            marks.append(pytest.mark.skip(reason='%s: disabled in its aliases file' % name))
        elif 'vmlab_only' in aliases(name) and not vmlab_mode():
            marks.append(pytest.mark.skip(reason='%s: needs the VM lab\'s stock kernels (soft-dirty tracking, '
                                          'a kernel update): runs in make test-vm (docs/vmlab.md)' % name))
        elif 'long' in aliases(name) and not long_mode and vmlab_mode():
            marks.append(pytest.mark.skip(reason='%s: a long VM lab target, run by make test-vm LONG=1 '
                                          '(HAUL_LONG=1), kept out of CI for time' % name))
        elif 'long' in aliases(name) and not long_mode:
            marks.append(pytest.mark.skip(reason='%s: a long fault-matrix target, run by make test-long '
                                          '(HAUL_LONG=1), kept out of make test for CI time' % name))
        params.append(pytest.param(name, id=name, marks=marks))
    return params


def tail(text, lines=TAIL_LINES):
    return '\n'.join(text.rstrip('\n').splitlines()[-lines:])


def run(cmd, timeout, env=None, log=None):
    """Run cmd in its own process group; return (rc, output). The group is killed on timeout."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=str(REPO), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out = proc.communicate(timeout=timeout)[0]
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out = proc.communicate()[0]
        rc = None
    text = out.decode('utf-8', 'replace')
    if rc is None:
        text += '\n[haul.live] timed out after %d s\n' % timeout
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text('$ %s\n[haul.live] rc=%s, %.1f s\n\n%s' % (
            ' '.join(cmd), rc, time.monotonic() - start, text))
    return rc, text


def ansible_playbook():
    local = Path(sys.executable).parent / 'ansible-playbook'
    return str(local) if local.exists() else (shutil.which('ansible-playbook') or 'ansible-playbook')


def ensure_collection_link():
    link = COLLECTIONS / 'ansible_collections' / 'haul' / 'live'
    if not os.path.lexists(link):
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.join('..', '..', '..', '..'), link)
    assert link.resolve() == REPO, '%s must point to %s (make collection)' % (link, REPO)


@pytest.fixture(scope='session')
def lab_inventory():
    """Bring the lab up (idempotent) and return its inventory path. In the VM lab mode: start the
    VM lab afresh (each VM on its own kernel, VMLAB_KERNELS) and stop it at the end."""
    if vmlab_mode():
        run([str(VMLAB), 'down'], 300, log=OUTPUT / 'vmlab-down-before.log')
        yield start_lab(VMLAB, ['up', '--kernel', VMLAB_KERNELS], 'vmlab')
        if os.environ.get('HAUL_KEEP_LAB') != '1':
            run([str(VMLAB), 'down'], 300, log=OUTPUT / 'vmlab-down.log')
        return
    yield start_lab(LAB, ['up'], 'lab')


def start_lab(tool, up_args, name):
    """Run ``tool up_args`` (tests/lab/lab or tests/vmlab/vmlab) and return its inventory path."""
    rc, out = run([str(tool)] + up_args, LAB_UP_TIMEOUT, log=OUTPUT / ('%s-up.log' % name))
    if rc != 0:
        pytest.fail('tests/%s/%s up exited %s (full output: %s):\n%s'
                    % (name, name, rc, OUTPUT / ('%s-up.log' % name), tail(out)), pytrace=False)
    rc, out = run([str(tool), 'inventory'], 120)
    if rc != 0 or not out.strip():
        pytest.fail('tests/%s/%s inventory exited %s:\n%s' % (name, name, rc, tail(out)), pytrace=False)
    inventory = out.strip().splitlines()[-1].strip()
    assert os.path.exists(inventory), '%s inventory %s does not exist' % (name, inventory)
    return inventory


@pytest.mark.parametrize('target', discover())
def test_target(target, lab_inventory):
    if not (TARGETS_DIR / target / 'tasks' / 'main.yml').is_file():
        pytest.fail('no integration target %r: tests/integration/targets/%s/tasks/main.yml is missing'
                    % (target, target), pytrace=False)
    ensure_collection_link()
    env = dict(os.environ)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
        ANSIBLE_NOCOLOR='1',
        ANSIBLE_FORCE_COLOR='0',
        ANSIBLE_RETRY_FILES_ENABLED='0',
        PYTHONUNBUFFERED='1',
        # every task's time, for finding what makes a target slow (docs/development.md): one
        # JUnit file per playbook run, the target's own and the collection playbooks it runs
        ANSIBLE_CALLBACKS_ENABLED='ansible.builtin.junit',
        JUNIT_OUTPUT_DIR=str(OUTPUT / 'tasks' / target),
        JUNIT_HIDE_TASK_ARGUMENTS='true',
    )
    env['PATH'] = os.pathsep.join([str(Path(sys.executable).parent), env.get('PATH', os.defpath)])
    log = OUTPUT / ('%s.log' % target)
    cmd = [ansible_playbook(), '-i', lab_inventory, str(PLAYBOOK), '-e', 'haul_target=%s' % target]
    if vmlab_mode():
        cmd += ['-e', 'haul_lab=%s' % VMLAB]
    rc, out = run(cmd, TARGET_TIMEOUT, env=env, log=log)
    if rc != 0:
        pytest.fail('target %s: ansible-playbook exited %s (full output: %s); last lines:\n%s'
                    % (target, rc, log.relative_to(REPO), tail(out)), pytrace=False)
    skips = [json.loads('"%s"' % reason) for reason in SKIP_RE.findall(out)]
    if skips:
        pytest.skip('%s: %s' % (target, '; '.join(skips)))
