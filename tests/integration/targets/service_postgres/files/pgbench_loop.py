# SPDX-License-Identifier: GPL-3.0-or-later
"""pgbench from the lab's client host, run after run, until DIR/go exists (service_postgres).

Each run is ``pgbench -c 2 -j 2 -T SECONDS -R RATE --max-tries 5 --failures-detailed`` in the
image that has it (``lab client --image IMAGE``), so a migration that happens meanwhile falls
inside a run. Prints JSON: every run's exit code, processed, failed and aborted counts, and the
sums. Exit 0 when it ran; the caller asserts on the numbers.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time


def parse(text):
    """The numbers of one pgbench report."""
    def num(pattern):
        m = re.search(pattern, text, re.MULTILINE)
        return int(m.group(1)) if m else None
    return {
        'processed': num(r'^number of transactions actually processed: (\d+)'),
        'failed': num(r'^number of failed transactions: (\d+)'),
        'aborted': len(re.findall(r'aborted', text)),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--lab', required=True)
    ap.add_argument('--image', default='services')
    ap.add_argument('--host', required=True)
    ap.add_argument('--dir', required=True)
    ap.add_argument('--seconds', type=int, default=20)
    ap.add_argument('--rate', type=int, default=50)
    ap.add_argument('--max-runs', type=int, default=30)
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    runs = []
    while not os.path.exists(os.path.join(args.dir, 'go')) and len(runs) < args.max_runs:
        argv = [args.lab, 'client', '--image', args.image, '--', 'pgbench', '-h', args.host, '-U', 'postgres',
                '-c', '2', '-j', '2', '-T', str(args.seconds), '-R', str(args.rate), '-P', '5',
                '--max-tries', '5', '--failures-detailed', 'postgres']
        start = time.time()
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, check=False)
        with open(os.path.join(args.dir, 'pgbench.%d.log' % (len(runs) + 1)), 'w') as f:
            f.write(p.stdout)
        run = dict(parse(p.stdout), rc=p.returncode, started=round(start, 3), seconds=round(time.time() - start, 1))
        if p.returncode != 0 or run['failed'] is None:
            run['tail'] = p.stdout[-1500:]
        runs.append(run)
    out = {
        'runs': runs,
        'count': len(runs),
        'processed': sum(r['processed'] or 0 for r in runs),
        'failed': sum(r['failed'] or 0 for r in runs),
        'aborted': sum(r['aborted'] for r in runs),
        'bad_rcs': [r['rc'] for r in runs if r['rc'] != 0],
        'unparsed': sum(1 for r in runs if r['failed'] is None or r['processed'] is None),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
