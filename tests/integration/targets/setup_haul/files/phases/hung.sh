#!/usr/bin/env bash
# Fault case 10: CRIU hung (SIGSTOP) in the dump (on node1) or in the restore (on node2), CT from
# node1 to node2 with haul_timeout=TIMEOUT (each per-phase timeout defaults to it). A watcher on
# the node stops the CRIU as soon as it writes its log; the bounded wait must expire, the hung CRIU
# be killed and the migration rolled back: the source runs with its state, nothing left.
# Usage: hung.sh CT dump|restore TIMEOUT
set -u -o pipefail
here=$(dirname "$0")
. "$here/lib.sh"
ct=$1 step=$2 timeout=$3
tmp=/tmp/haul-fh-$LABNAME-$ct
if [ "$step" = dump ]; then node=node1; else node=node2; fi
echo "before: $(state "$ct")"
# comm is exactly "criu" (-x): the watcher's own shell never matches; -o: the oldest, the CRIU
# that runs the dump or restore (not the tasks a restore forks, which are named criu too)
$LAB ssh $node -- sh -c "rm -f /tmp/haul-hung-$ct; echo \$\$ > /tmp/haul-hung-$ct.pid; for i in \$(seq 40000); do
    if [ -e /var/lib/haul/images/$ct/$step.log ] && pkill -STOP -o -x criu; then
      echo stopped > /tmp/haul-hung-$ct; pgrep -a -o -x criu >> /tmp/haul-hung-$ct; exit 0; fi
    sleep 0.005; done; exit 1" &
watcher=$!
t0=$SECONDS
migrate "$ct" node1 node2 "$tmp.json" "$tmp.log" -e "haul_timeout=$timeout"
rc=$?
echo "migrate: rc=$rc after $((SECONDS - t0)) s row: $(row "$tmp.json")"
$LAB ssh $node -- sh -c "kill \$(cat /tmp/haul-hung-$ct.pid) 2>/dev/null; rm -f /tmp/haul-hung-$ct.pid"
kill $watcher 2>/dev/null
wait $watcher
echo "watcher: $($LAB ssh "$node" -- cat "/tmp/haul-hung-$ct" 2>/dev/null | tr '\n' ' ')"
$LAB ssh "$node" -- rm -f "/tmp/haul-hung-$ct"
wait_running "$ct" node1 30
left=$(leftovers "$ct")
echo "after: $(state "$ct")"
[ -z "$left" ] && echo "nothing left" || echo "LEFT: $left"
exit 0
