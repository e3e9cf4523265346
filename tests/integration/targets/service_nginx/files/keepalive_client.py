# SPDX-License-Identifier: GPL-3.0-or-later
"""One keep-alive HTTP connection to nginx across a migration (the service_nginx target).

Run on the lab's client host (``lab client -- python3 keepalive_client.py ...``). It opens one
connection with http.client and sends GET / every INTERVAL ms on it until DIR/go exists, then
for AFTER seconds more. Counted: requests, errors (an exception, a status other than 200, a body
other than the first one), reconnects (the connection's socket gone or its local port changed).
Writes DIR/started after the first answer; prints JSON at the end.
"""

import argparse
import http.client
import json
import os
import socket
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--host', required=True)
    ap.add_argument('--port', type=int, default=80)
    ap.add_argument('--dir', required=True)
    ap.add_argument('--interval-ms', type=float, default=5)
    ap.add_argument('--after', type=float, default=2, help='seconds to go on after DIR/go')
    ap.add_argument('--max-seconds', type=float, default=900)
    args = ap.parse_args()
    conn = http.client.HTTPConnection(args.host, args.port, timeout=60)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock, port = conn.sock, conn.sock.getsockname()[1]
    out = {'local_port': port, 'requests': 0, 'errors': 0, 'reconnects': 0, 'port_changes': 0,
           'first_error': None, 'max_wait_ms': 0.0, 'requests_after_go': 0}
    body0 = None
    start = time.monotonic()
    stop_at = None
    while True:
        now = time.monotonic()
        if stop_at is None and (os.path.exists(os.path.join(args.dir, 'go')) or now - start > args.max_seconds):
            stop_at = now + args.after
        if stop_at is not None and now >= stop_at:
            break
        if conn.sock is None or conn.sock is not sock:
            out['reconnects'] += 1
        t = time.monotonic()
        try:
            conn.request('GET', '/')
            if conn.sock is not sock:  # http.client connected again by itself
                out['reconnects'] += 1
                sock = conn.sock
            if sock.getsockname()[1] != port:
                out['port_changes'] += 1
                port = sock.getsockname()[1]
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200 or (body0 is not None and body != body0):
                raise ValueError('status %d, body %r' % (resp.status, body[:80]))
            body0 = body if body0 is None else body0
        except (OSError, http.client.HTTPException, ValueError) as e:
            out['errors'] += 1
            out['first_error'] = out['first_error'] or '%s: %s' % (type(e).__name__, e)
            conn.close()
            time.sleep(0.05)
            continue
        wait = (time.monotonic() - t) * 1000.0
        out['max_wait_ms'] = max(out['max_wait_ms'], round(wait, 3))
        out['requests'] += 1
        if stop_at is not None:
            out['requests_after_go'] += 1
        if out['requests'] == 1:
            with open(os.path.join(args.dir, 'started'), 'w') as f:
                f.write('%d\n' % port)
        time.sleep(args.interval_ms / 1000.0)
    out['body'] = (body0 or b'').decode('utf-8', 'replace').strip()
    conn.close()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
