#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: progress
short_description: Wait for a long transfer started with async, and print its progress while it runs
version_added: 0.2.0
description:
  - Waits for an async job (a task run with C(async) and C(poll=0)) on the host the task runs on or is
    delegated to, like C(ansible.builtin.async_status) in a retry loop, and returns the job's own result
    once it has finished - a failed job fails this task with its message.
  - It reads the job's file and the progress file in one cheap round-trip (C(cat), no module), often at
    first (a short job ends within a second), then twice a second, and prints one line at most every
    O(interval) seconds - the bytes moved, the total and share where known, the rate and the ETA, or the
    phase of a handoff and how long its container has been frozen - so that a long step shows progress in
    the play's output and in AWX while it runs, not only once it ends. Once the job has finished, its result
    is read with C(ansible.builtin.async_status).
  - The progress file is written by M(haul.live.image_sync) with O(haul.live.image_sync#module:progress_file)
    and by M(haul.live.handoff) with O(haul.live.handoff#module:progress_file). It holds numbers and phases
    only, never a file name or content.
  - This is an action plugin - it runs on the controller and asks the host for the job's status and the
    progress file.
author:
  - haul.live developers (@haul-live)
options:
  jid:
    description: The async job's id (C(ansible_job_id) of the task that started it).
    type: str
    required: true
  progress_file:
    description: The job's progress file on the host.
    type: path
    required: true
  label:
    description: What the job does, at the start of each line.
    type: str
    default: transfer
  interval:
    description: Seconds between two progress lines (each is one round-trip to the host).
    type: float
    default: 5.0
  timeout:
    description: Seconds to wait for the job before failing.
    type: int
    default: 3600
  cancel_on_interrupt:
    description:
      - When the play is interrupted (Ctrl-C, or AWX cancelling the job) while this waits, send SIGTERM to the
        job's process, whose pid the progress file holds, as the signal would reach it in the foreground.
        A M(haul.live.handoff) then rolls back before its commit and finishes the move after it.
      - Without it, an interrupted wait leaves the job running to its end, as with any async task.
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: none
    details: The job it waits for was started, or skipped, by its own task.
  diff_mode:
    support: none
  platform:
    platforms: posix
seealso:
  - module: haul.live.image_sync
  - module: ansible.builtin.async_status
'''

EXAMPLES = r'''
- name: Send the root filesystem while the container runs, in the background
  haul.live.image_sync:
    src: /var/lib/haul/containers/web1/rootfs
    dest: /var/lib/haul/containers/web1/rootfs
    dest_host: node2
    verify: false
    progress_file: /var/lib/haul/images/web1.presync.progress
  async: 3600
  poll: 0
  register: presync_job

- name: Wait for it, printing its progress every 5 seconds
  haul.live.progress:
    jid: "{{ presync_job.ansible_job_id }}"
    progress_file: /var/lib/haul/images/web1.presync.progress
    label: root filesystem pre-sync of web1
  register: presync

- name: Move the container, in the background
  haul.live.handoff:
    cgroup: haul/web1
    images_dir: /var/lib/haul/images/web1
    handoff_id: web1-20261203
    dest_host: node2
    progress_file: /run/haul/progress/web1.handoff.json
  async: 1260
  poll: 0
  register: handoff_job

- name: Wait for the handoff, printing its phase; Ctrl-C rolls it back before its commit
  haul.live.progress:
    jid: "{{ handoff_job.ansible_job_id }}"
    progress_file: /run/haul/progress/web1.handoff.json
    label: critical section of web1
    interval: 1
    cancel_on_interrupt: true
  register: handoff
'''

RETURN = r'''
progress_lines:
  description: How many progress lines were printed while it waited.
  returned: always
  type: int
  sample: 12
finished:
  description: Whether the job finished (the job's own result is returned with it).
  returned: always
  type: bool
  sample: true
'''

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(
        argument_spec=dict(
            jid=dict(type='str', required=True),
            progress_file=dict(type='path', required=True),
            label=dict(type='str', default='transfer'),
            interval=dict(type='float', default=5.0),
            timeout=dict(type='int', default=3600),
            cancel_on_interrupt=dict(type='bool', default=False),
        ),
        supports_check_mode=False,
    )
    module.fail_json(msg='haul.live.progress is an action plugin: it runs on the controller, not as a module')


if __name__ == '__main__':
    main()
