# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""A host's cordon record (:mod:`_cordon`): written, kept, read back, lifted; a file in doubt cordons."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

from ansible_collections.haul.live.plugins.module_utils import _cordon
from ansible_collections.haul.live.plugins.module_utils._common import HaulError


def test_cordon_and_uncordon(tmp_path):
    path = str(tmp_path / 'haul' / 'cordon.json')
    assert _cordon.read(path) is None
    assert _cordon.cordon('kernel update', path=path, check_mode=True)[0] is True
    assert _cordon.read(path) is None                       # check mode writes nothing
    changed, rec = _cordon.cordon('kernel update', by='awx job 7', path=path)
    assert changed and rec['reason'] == 'kernel update' and rec['by'] == 'awx job 7'
    assert _cordon.read(path) == rec
    assert _cordon.cordon('kernel update', path=path) == (False, rec)   # idempotent, first record kept
    assert _cordon.cordon('hardware', path=path)[1]['reason'] == 'hardware'
    assert _cordon.uncordon(path=path, check_mode=True)[0] is True
    assert _cordon.read(path) is not None
    assert _cordon.uncordon(path=path)[0] is True
    assert _cordon.read(path) is None
    assert _cordon.uncordon(path=path) == (False, None)


def test_a_file_in_doubt_cordons(tmp_path):
    path = tmp_path / 'cordon.json'
    path.write_text('maintenance by hand\n')
    assert 'not a haul.live record' in _cordon.read(str(path))['reason']
    path.write_text(json.dumps({'reason': 'x'}))
    assert _cordon.read(str(path))['reason'] == 'x'


@pytest.mark.parametrize('reason', ['two\nlines', 'x' * 201])
def test_a_reason_is_one_short_line(tmp_path, reason):
    with pytest.raises(HaulError, match='one line'):
        _cordon.cordon(reason, path=str(tmp_path / 'c.json'))
