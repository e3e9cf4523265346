#!/usr/bin/env bash
# make demo: bring the lab up, start two containers on node1 (demo1 a TCP service with an address
# on the lab segment, a client on the client host talking to it), evacuate node1 to node2 and node3
# with haul.live's evacuate.yml, and show the report, where the containers run afterwards and what
# the client saw.
# SPDX-License-Identifier: GPL-3.0-or-later
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
lab="$here/lab"
playbook=$(command -v ansible-playbook || echo "$repo/.venv/bin/ansible-playbook")
export ANSIBLE_COLLECTIONS_PATH="$repo/build/collections"

show() {
  for ct in demo1 demo2; do
    "$lab" ct-state "$ct" | python3 -c '
import json, sys
s = json.load(sys.stdin)
st = s["state"] or {}
print("  %s runs on %s as pid %s: counter=%s token=%s max_gap_ms=%s" % (
    s["name"], s["node"], s["pid"], st.get("counter"), st.get("token"), st.get("max_gap_ms")))'
  done
}

"$lab" up
for ct in demo1 demo2; do "$lab" ct-rm "$ct"; done
"$lab" ct-run node1 demo1 --memory-mib 64 --dirty-mib-per-s 4 --ip 198.18.0.150/24 --listen 7000 >/dev/null
"$lab" ct-run node1 demo2 --memory-mib 128 --dirty-mib-per-s 4 >/dev/null
sleep 1
echo
echo "Two containers run on node1 (64 and 128 MiB, each dirtying 4 MiB/s); demo1 serves 198.18.0.150:7000."
show
probe=$("$lab" probe 198.18.0.150:7000 --seconds 600 --background | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
echo "A client on the client host (198.18.0.5) asks demo1 for its counter every millisecond, on one TCP connection."
echo
echo "Evacuating node1 with: ansible-playbook haul.live.evacuate -e haul_source=node1 -e '{\"haul_destinations\": [\"node2\", \"node3\"]}'"
report=$(mktemp /tmp/haul-demo-report.XXXXXX.json)
"$playbook" -i "$("$lab" inventory)" haul.live.evacuate -e haul_source=node1 \
  -e '{"haul_destinations": ["node2", "node3"]}' -e '{"haul_containers": ["demo1", "demo2"]}' \
  -e "haul_report=$report" | sed -n '/Show the report/,/^$/p'
echo "The report as JSON: $report"
"$lab" probe-result "$probe" --stop | python3 -c '
import json, sys
p = json.load(sys.stdin)
print("The client: %d answers, %d errors, %d reconnects; its longest wait for an answer: %.0f ms (the freeze)" % (
    p["requests"], p["errors"], p["reconnects"], p["max_stall_ms"]))'
echo
echo "After the evacuation (same tokens, counters went on; max_gap_ms is the downtime the workload saw):"
show
echo
echo "Try:  tests/lab/lab ssh node2 -- criu --version"
echo "      tests/lab/lab probe 198.18.0.150:7000 --seconds 3"
echo "      tests/lab/lab ct-state demo1"
echo "      make lab-down        (removes everything the lab made)"
