#!/usr/bin/env bash
# make demo: bring the lab up, start two containers on node1, evacuate node1 to node2 and node3
# with haul.live's evacuate.yml, and show the report and where the containers run afterwards.
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
"$lab" ct-run node1 demo1 --memory-mib 64 --dirty-mib-per-s 4 >/dev/null
"$lab" ct-run node1 demo2 --memory-mib 128 --dirty-mib-per-s 4 >/dev/null
sleep 1
echo
echo "Two containers run on node1 (64 and 128 MiB, each dirtying 4 MiB/s):"
show
echo
echo "Evacuating node1 with: ansible-playbook haul.live.evacuate -e haul_source=node1 -e '{\"haul_destinations\": [\"node2\", \"node3\"]}'"
report=$(mktemp /tmp/haul-demo-report.XXXXXX.json)
"$playbook" -i "$("$lab" inventory)" haul.live.evacuate -e haul_source=node1 \
  -e '{"haul_destinations": ["node2", "node3"]}' -e '{"haul_containers": ["demo1", "demo2"]}' \
  -e "haul_report=$report" | sed -n '/Show the report/,/^$/p'
echo "The report as JSON: $report"
echo
echo "After the evacuation (same tokens, counters went on; max_gap_ms is the downtime the workload saw):"
show
echo
echo "Try:  tests/lab/lab ssh node2 -- criu --version"
echo "      tests/lab/lab ct-state demo1"
echo "      make lab-down        (removes everything the lab made)"
