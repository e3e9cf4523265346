#!/usr/bin/env python
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run one of haul.live's playbooks through ansible-runner's Python API, as AWX does, and print
what AWX keeps of the job as one JSON line: rc, status, the per-host stats and the artifact
(what set_stats published).

  runner_job.py JOB.json     JOB: {playbook, inventory: [paths], extravars: {...}, limit: str|null}
"""

import json
import os
import sys
import tempfile

import ansible_runner


def main():
    with open(sys.argv[1]) as f:
        job = json.load(f)
    bindir = os.path.dirname(sys.executable)
    env = {'PATH': bindir + os.pathsep + os.environ.get('PATH', ''),
           'ANSIBLE_COLLECTIONS_PATH': os.environ['ANSIBLE_COLLECTIONS_PATH'],
           'ANSIBLE_NOCOLOR': '1', 'ANSIBLE_FORCE_COLOR': '0'}
    os.environ['PATH'] = env['PATH']
    with tempfile.TemporaryDirectory(prefix='haul-runner-') as pdd:
        r = ansible_runner.run(private_data_dir=pdd, playbook=job['playbook'], inventory=job['inventory'],
                               extravars=job.get('extravars') or {}, limit=job.get('limit'), envvars=env,
                               quiet=True)
        artifact = {}
        for ev in r.events:
            if ev.get('event') == 'playbook_on_stats':
                artifact = (ev.get('event_data') or {}).get('artifact_data') or {}
        stdout = r.stdout.read() if r.stdout else ''
        print(json.dumps({'rc': r.rc, 'status': r.status, 'stats': r.stats, 'artifact': artifact,
                          'stdout_tail': stdout.splitlines()[-25:]}))
    return 0


if __name__ == '__main__':
    sys.exit(main())
