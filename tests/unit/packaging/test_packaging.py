# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What ships: the collection's tarball (galaxy.yml's build_ignore) and its execution environment
(meta/execution-environment.yml, read by ansible-builder). Both run the real tools from the venv:
``ansible-galaxy collection build`` and ``ansible-builder introspect`` / ``create``."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BIN = os.path.dirname(sys.executable)
COLLECTIONS = os.path.join(REPO, 'build', 'collections')


def tool(name, *args, **kw):
    p = subprocess.run([os.path.join(BIN, name)] + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, check=False, **kw)
    assert p.returncode == 0, '%s %s failed:\n%s' % (name, ' '.join(args), p.stdout[-3000:])
    return p.stdout


@pytest.fixture(scope='module')
def tarball_names(tmp_path_factory):
    out = tmp_path_factory.mktemp('dist')
    tool('ansible-galaxy', 'collection', 'build', '--output-path', str(out), REPO)
    built = [f for f in os.listdir(str(out)) if f.endswith('.tar.gz')]
    assert len(built) == 1, built
    with tarfile.open(str(out / built[0])) as tar:
        return set(tar.getnames())


@pytest.mark.parametrize('left_out', ['Makefile', '.ci', 'tests/lab', 'tests/bench', 'bench', 'tests/output',
                                      'requirements-dev.txt', 'requirements-constraints.txt', 'build', '.venv',
                                      'playbooks/collections'])
def test_the_tarball_leaves_the_development_set_up_out(tarball_names, left_out):
    assert not [n for n in tarball_names if n == left_out or n.startswith(left_out + '/')]


@pytest.mark.parametrize('shipped', ['MANIFEST.json', 'FILES.json', 'README.md', 'meta/runtime.yml',
                                     'meta/execution-environment.yml', 'requirements.txt', 'bindep.txt',
                                     'plugins/modules/criu_dump.py', 'plugins/module_utils/_runtimes/base.py',
                                     'roles/migrate/meta/argument_specs.yml', 'playbooks/evacuate.yml',
                                     'docs/runtimes.md', 'changelogs/changelog.yaml'])
def test_the_tarball_has_the_collection(tarball_names, shipped):
    assert shipped in tarball_names


def test_the_floor_is_what_make_test_runs():
    """meta/runtime.yml's requires_ansible is the lowest ansible-core that requirements-dev.txt installs,
    and the one make test's units-floor gate runs."""
    with open(os.path.join(REPO, 'meta', 'runtime.yml')) as f:
        floor = yaml.safe_load(f)['requires_ansible']
    with open(os.path.join(REPO, 'requirements-dev.txt')) as f:
        cores = sorted((line.split('==')[1].split(';')[0].strip() for line in f if line.startswith('ansible-core==')),
                       key=lambda v: tuple(int(p) for p in v.split('.')))
    lowest = cores[0].split('.')
    assert floor == '>=%s.%s.0' % (lowest[0], lowest[1])
    # and make test's units-floor gate runs the unit tests on exactly that release
    with open(os.path.join(REPO, 'Makefile')) as f:
        assert 'CORE_FLOOR := %s\n' % cores[0] in f.read()


def test_the_collection_says_what_an_execution_environment_needs():
    """ansible-builder finds the collection's Python and system requirements (introspect reads
    meta/execution-environment.yml of every collection in the path)."""
    out = yaml.safe_load(tool('ansible-builder', 'introspect', '--sanitize', COLLECTIONS))
    system = ' '.join(out.get('system') or [])
    assert 'openssh-client' in system and 'rsync' in system
    # no development tool is asked of users' images
    python = ' '.join(out.get('python') or [])
    for dev in ('ansible-lint', 'antsibull', 'pytest', 'jmespath'):
        assert dev not in python


def test_the_example_execution_environment_builds_a_context(tmp_path):
    tool('ansible-builder', 'create', '-f', os.path.join(REPO, 'execution-environment.yml'),
         '-c', str(tmp_path / 'context'), '--output-filename', 'Containerfile', cwd=str(tmp_path))
    context = tmp_path / 'context'
    assert (context / 'Containerfile').is_file()
    with open(str(context / '_build' / 'requirements.yml')) as f:
        galaxy = yaml.safe_load(f)
    assert [c['name'] for c in galaxy['collections']] == ['haul.live']
