# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""One row of the haul.live report, as the controller's filters make it (private plugin_util).

Every row has the keys of a migration's row (the migrate role's ``migrate_result``), so that the
report role, the summary and ``set_stats`` treat a host's row (rolling update) and a container
updated in place like any migration's."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError


def report_row(who, results, result, name, source, destination, strategy, step='', msg='', frozen_ms=0, size=0):
    """The row; ``who`` (the filter's name) starts the error for a result not in ``results`` or a
    number that is no whole number (text is taken, as a survey or a fact gives it)."""
    if result not in results:
        raise AnsibleFilterError('%s: result must be one of %s, not %r' % (who, ', '.join(results), result))
    try:
        frozen_ms, size = int(frozen_ms or 0), int(size or 0)
    except (TypeError, ValueError):
        raise AnsibleFilterError('%s: the time down and the bytes must be whole numbers, not %r and %r'
                                 % (who, frozen_ms, size))
    return {'name': str(name), 'source': str(source), 'destination': str(destination), 'strategy': strategy,
            'frozen_ms': max(frozen_ms, 0), 'bytes': max(size, 0), 'result': result,
            'step': str(step or ''), 'msg': str(msg or '')}
