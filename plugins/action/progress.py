# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Wait for an async job on the (delegated) host, printing its transfer progress as it goes."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import time

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()

MIB = 1024.0 * 1024.0


def _size(n):
    n = float(n or 0)
    return '%.1f GiB' % (n / MIB / 1024) if n >= MIB * 1024 else '%.1f MiB' % (n / MIB)


def _eta(seconds):
    seconds = int(seconds or 0)
    return '%d:%02d:%02d' % (seconds // 3600, seconds // 60 % 60, seconds % 60)


def progress_line(label, host, progress):
    """The line printed for one progress reading (a dict written by _progress.ProgressFile)."""
    moved = int(progress.get('bytes') or 0)
    percent = int(progress.get('percent') or 0)
    total = ' of %s (%d%%)' % (_size(moved * 100.0 / percent), percent) if percent > 0 else ''
    return '%s on %s: %s%s, %s/s, ETA %s, %.0f s so far' % (
        label, host, _size(moved), total, _size(progress.get('rate_bytes_s')), _eta(progress.get('eta_s')),
        float(progress.get('elapsed_s') or 0))


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        _valid, args = self.validate_argument_spec(argument_spec=dict(
            jid=dict(type='str', required=True),
            progress_file=dict(type='path', required=True),
            label=dict(type='str', default='transfer'),
            interval=dict(type='float', default=5.0),
            timeout=dict(type='int', default=3600),
        ))
        if args['interval'] <= 0 or args['timeout'] <= 0:
            raise AnsibleError('haul.live.progress: interval and timeout must be greater than 0')
        async_dir = self._remote_expand_user(self.get_shell_option('async_dir', default='~/.ansible_async'))
        host = self._task.delegate_to or (task_vars or {}).get('inventory_hostname', '?')
        deadline = time.time() + args['timeout']
        shown = 0
        last = None
        printed_at = time.time()
        # The job's status is asked often at first (a short pre-sync ends within a second), then at
        # most once a second; a progress line is printed at most once per interval.
        pause = 0.1
        while True:
            status = self._execute_module(module_name='ansible.legacy.async_status', task_vars=task_vars,
                                          module_args=dict(jid=args['jid'], mode='status', _async_dir=async_dir))
            if status.get('finished') or (status.get('failed') and not status.get('started')):
                status.pop('invocation', None)
                result.update(status)
                result['progress_lines'] = shown
                return result
            if time.time() > deadline:
                result.update(failed=True, msg='%s on %s did not finish within %d s (async job %s)'
                              % (args['label'], host, args['timeout'], args['jid']))
                return result
            if time.time() - printed_at >= args['interval']:
                printed_at = time.time()
                reading = self._execute_module(module_name='ansible.legacy.slurp', task_vars=task_vars,
                                               module_args=dict(src=args['progress_file']))
                progress = None
                if not reading.get('failed') and reading.get('content'):
                    try:
                        progress = json.loads(base64.b64decode(reading['content']).decode('utf-8'))
                    except ValueError:
                        progress = None
                # a reading is printed once (the file is rewritten at most once a second)
                if isinstance(progress, dict) and progress.get('updated') != last:
                    last = progress.get('updated')
                    display.display(progress_line(args['label'], host, progress))
                    shown += 1
            time.sleep(min(pause, args['interval']))
            pause = min(pause * 2, 1.0)
