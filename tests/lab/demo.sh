#!/usr/bin/env bash
# make demo: bring the lab up, start a demo container on node1, show where it runs and its live state.
# SPDX-License-Identifier: GPL-3.0-or-later
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lab="$here/lab"

"$lab" up
"$lab" ct-rm demo1 >/dev/null
"$lab" ct-run node1 demo1 --memory-mib 64 --dirty-mib-per-s 4 >/dev/null
echo
echo "A container 'demo1' runs on the lab (64 MiB, dirtying 4 MiB/s). Its live state:"
for _ in 1 2 3; do
  sleep 1
  "$lab" ct-state demo1 | python3 -c '
import json, sys
s = json.load(sys.stdin)
st = s["state"] or {}
print("  demo1 runs on %s as pid %s: counter=%s token=%s max_gap_ms=%s" % (
    s["node"], s["pid"], st.get("counter"), st.get("token"), st.get("max_gap_ms")))'
done
echo
echo "Try:  tests/lab/lab ssh node1 -- criu --version"
echo "      tests/lab/lab ct-state demo1"
echo "      make lab-down        (removes everything the lab made)"
