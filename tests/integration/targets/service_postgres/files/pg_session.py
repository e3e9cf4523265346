# SPDX-License-Identifier: GPL-3.0-or-later
"""One psql session kept open across a migration (the service_postgres integration target).

psql runs on the lab's client host, in the image that has it (``lab client --image IMAGE``), and
this driver talks to it through pipes. Phase 1: BEGIN, insert ROWS rows, record
pg_backend_pid() and txid_current(), write DIR/phase1.json, then wait (without a query in
flight) until DIR/go exists. Phase 2, in the same transaction: pg_backend_pid() and
txid_current() again, insert ROWS more rows, COMMIT, count them; write DIR/result.json and print
it. Any error (psql gone, an SQL error, a timeout) ends it with the JSON's "error" set and exit 1.
"""

import argparse
import json
import os
import select
import subprocess
import sys
import time

MARK = '__HAUL_END__'


class Psql:
    def __init__(self, argv, err_path):
        self.err = open(err_path, 'w')
        env = dict(os.environ, PGCONNECT_TIMEOUT='10')
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err,
                                     env=env)
        self.buf = b''

    def query(self, sql, timeout=120):
        """The rows (lists of fields) that sql prints; RuntimeError when psql fails or is too slow."""
        self.proc.stdin.write(('%s\n\\echo %s\n' % (sql, MARK)).encode())
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        lines = []
        while True:
            while b'\n' in self.buf:
                line, self.buf = self.buf.split(b'\n', 1)
                text = line.decode()
                if text == MARK:
                    return [row.split('|') for row in lines if row]
                lines.append(text)
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError('no answer from psql within %d s to: %s' % (timeout, sql))
            if select.select([self.proc.stdout], [], [], left)[0]:
                data = os.read(self.proc.stdout.fileno(), 65536)
                if not data:
                    raise RuntimeError('psql ended (rc=%s) during: %s' % (self.proc.wait(), sql))
                self.buf += data

    def one(self, sql):
        rows = self.query(sql)
        if len(rows) != 1:
            raise RuntimeError('%s: want one row, got %r' % (sql, rows))
        return rows[0]

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--lab', required=True, help='path of tests/lab/lab')
    ap.add_argument('--image', default='services')
    ap.add_argument('--host', required=True)
    ap.add_argument('--dir', required=True, help='for phase1.json, go, result.json, psql.err')
    ap.add_argument('--rows', type=int, default=100)
    ap.add_argument('--table', default='haul_rows')
    ap.add_argument('--wait', type=float, default=900, help='seconds to wait for DIR/go')
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    result = {'error': None}
    argv = [args.lab, 'client', '--image', args.image, '--', 'stdbuf', '-oL', 'psql', '-h', args.host,
            '-U', 'postgres', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', 'postgres']
    psql = Psql(argv, os.path.join(args.dir, 'psql.err'))
    t = args.table
    try:
        psql.query('DROP TABLE IF EXISTS %s; CREATE TABLE %s (id int PRIMARY KEY, phase text NOT NULL, '
                   'backend int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());' % (t, t))
        psql.query('BEGIN;')
        pid, txid = psql.one('SELECT pg_backend_pid(), txid_current();')
        psql.query("INSERT INTO %s (id, phase, backend) SELECT g, 'before', pg_backend_pid() "
                   "FROM generate_series(1, %d) g;" % (t, args.rows))
        count = int(psql.one('SELECT count(*) FROM %s;' % t)[0])
        result.update(backend_pid_before=int(pid), txid_before=int(txid), rows_before=count)
        with open(os.path.join(args.dir, 'phase1.json.tmp'), 'w') as f:
            json.dump(result, f)
        os.rename(os.path.join(args.dir, 'phase1.json.tmp'), os.path.join(args.dir, 'phase1.json'))
        deadline = time.monotonic() + args.wait
        while not os.path.exists(os.path.join(args.dir, 'go')):
            if time.monotonic() > deadline:
                raise RuntimeError('no %s/go within %d s' % (args.dir, args.wait))
            time.sleep(0.1)
        started = time.monotonic()
        pid, txid, state = psql.one("SELECT pg_backend_pid(), txid_current(), "
                                    "(SELECT state FROM pg_stat_activity WHERE pid = pg_backend_pid());")
        result.update(backend_pid_after=int(pid), txid_after=int(txid), state_after=state)
        psql.query("INSERT INTO %s (id, phase, backend) SELECT g, 'after', pg_backend_pid() "
                   "FROM generate_series(%d, %d) g;" % (t, args.rows + 1, 2 * args.rows))
        psql.query('COMMIT;')
        total, lo, hi, before, after = psql.one(
            "SELECT count(*), min(id), max(id), count(*) FILTER (WHERE phase = 'before'), "
            "count(*) FILTER (WHERE phase = 'after') FROM %s;" % t)
        result.update(rows_total=int(total), min_id=int(lo), max_id=int(hi), rows_phase_before=int(before),
                      rows_phase_after=int(after), phase2_seconds=round(time.monotonic() - started, 3))
    except (RuntimeError, OSError, ValueError) as e:
        result['error'] = str(e)
    finally:
        psql.close()
        try:
            with open(os.path.join(args.dir, 'psql.err')) as f:
                result['psql_stderr'] = f.read()[-2000:]
        except OSError:
            pass
    with open(os.path.join(args.dir, 'result.json'), 'w') as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    return 1 if result['error'] else 0


if __name__ == '__main__':
    sys.exit(main())
