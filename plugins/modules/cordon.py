#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: cordon
short_description: Cordon a host so that no placement puts a container on it, or lift the cordon
version_added: 0.1.0
description:
  - A cordoned host takes no container. The cordon is a fact on the host, C(/var/lib/haul/cordon.json)
    (its reason, when, and by whom), that every placement reads - M(haul.live.container_info) returns it
    as RV(haul.live.container_info#module:cordon), and the placement of C(evacuate.yml) refuses a
    cordoned destination, naming the reason.
  - The playbooks C(haul.live.drain) and C(haul.live.uncordon) use it. A cordon does not move anything
    by itself, and containers that run on a cordoned host keep running.
author:
  - haul.live developers (@haul-live)
options:
  state:
    description:
      - V(present) cordons the host, V(absent) lifts the cordon, V(query) only reads it.
    type: str
    choices: [present, absent, query]
    default: present
  reason:
    description: Why the host is cordoned (one line, at most 200 characters), shown by every refused placement.
    type: str
    default: cordoned
  by:
    description: Who cordoned it (a name for the record, for example the AWX job).
    type: str
extends_documentation_fragment:
  - haul.live.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  idempotent:
    support: full
seealso:
  - module: haul.live.container_info
'''

EXAMPLES = r'''
- name: Cordon node1 before its hardware is replaced
  haul.live.cordon:
    reason: hardware replacement (ticket 4242)

- name: Take node1 back into the fleet
  haul.live.cordon:
    state: absent
'''

RETURN = r'''
cordoned:
  description: Whether the host is cordoned now (in check mode, whether it would be).
  returned: always
  type: bool
cordon:
  description: The cordon record (reason, since in UTC, by), or null when the host is not cordoned.
  returned: always
  type: dict
  sample: {"reason": "hardware replacement", "since": "2026-12-01T10:00:00Z", "by": "awx job 42"}
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.haul.live.plugins.module_utils import _cordon
from ansible_collections.haul.live.plugins.module_utils._common import HaulError, fail


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type='str', default='present', choices=['present', 'absent', 'query']),
            reason=dict(type='str', default='cordoned'),
            by=dict(type='str'),
        ),
        supports_check_mode=True,
    )
    p = module.params
    before = _cordon.read()
    try:
        if p['state'] == 'present':
            changed, rec = _cordon.cordon(p['reason'], by=p['by'], check_mode=module.check_mode)
        elif p['state'] == 'absent':
            changed, _old = _cordon.uncordon(check_mode=module.check_mode)
            rec = None
        else:
            changed, rec = False, before
    except HaulError as e:
        fail(module, e)
    except OSError as e:
        fail(module, HaulError('cordon', 'cannot write %s: %s' % (_cordon.CORDON_FILE, e.strerror or e)))
    result = dict(changed=changed, cordoned=rec is not None, cordon=rec)
    if module._diff:
        result['diff'] = {'before': {'cordon': before}, 'after': {'cordon': rec}}
    module.exit_json(**result)


if __name__ == '__main__':
    main()
