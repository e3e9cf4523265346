#!/usr/bin/env bash
# Fault cases 2 and 3 in one phase (stop-and-copy), CT from node1 to node2:
#   attempt 1 is parked in PHASE (failpoint sleep@PHASE) and runs in the background;
#   a re-run then must be refused at once, naming attempt 1's migration id, touching nothing;
#   then attempt 1's controller is stopped (CTL=stop: SIGSTOP, resumed at the end) or killed
#   (CTL=kill: the lease then expires with nobody watching), and its handoff is SIGKILLed:
#   only the freeze's watchdog can end the freeze.
# Usage: park.sh CT PHASE CTL TIMEOUT. Prints lines the target asserts on; exits 0 unless the
# script itself could not run the case.
set -u -o pipefail
here=$(dirname "$0")
. "$here/lib.sh"
ct=$1 phase=$2 ctl_mode=$3 timeout=$4
P=${phase^^}
tmp=/tmp/haul-fp-$LABNAME-$ct
rep_a=$tmp-a.json rep_b=$tmp-b.json

echo "before: $(state "$ct")"
$LAB ssh node1 -- sh -c "mkdir -p /run/haul/test-hooks && echo sleep@$phase > /run/haul/test-hooks/$ct"
rm -f "$rep_a"
setsid "$AP" -i "$INV" haul.live.migrate -e "haul_container=$ct" -e haul_source=node1 -e haul_destination=node2 \
  -e "haul_timeout=$timeout" -e "haul_report=$rep_a" > "$tmp-a.log" 2>&1 &
ctl=$!
t0=$SECONDS now=
while [ $((SECONDS - t0)) -lt 600 ]; do
  if [ "$P" = RESTORED ]; then now=$(lease_field node2 "$ct" phase); else now=$(lease_field node1 "$ct" phase); fi
  [ "$now" = "$P" ] && break
  kill -0 $ctl 2>/dev/null || break
  sleep 0.3
done
if [ "$now" != "$P" ]; then
  echo "ERROR: attempt 1 never reached $P (phase '$now')"; kill -9 -- -$ctl 2>/dev/null; wait $ctl; tail -30 "$tmp-a.log"
  $LAB ssh node1 -- rm -f "/run/haul/test-hooks/$ct"
  exit 1
fi
[ "$P" = RESTORED ] && sleep 1   # the source's handoff reaches its failpoint once it reads 'restored'
mid=$(lease_field node1 "$ct" migration_id)
echo "attempt1: $mid parked in $P (source lease $(lease_field node1 "$ct" phase), destination lease $(lease_field node2 "$ct" phase))"

# ---- case 2: the re-run while attempt 1 is in PHASE ----
migrate "$ct" node1 node2 "$rep_b" "$tmp-b.log" -e "haul_timeout=$timeout"
echo "rerun: rc=$? row: $(row "$rep_b")"
grep -q -- "$mid" "$tmp-b.log" "$rep_b" && echo "rerun names attempt1: yes"
echo "after rerun: source lease $(lease_field node1 "$ct" migration_id) $(lease_field node1 "$ct" phase)"

# ---- case 3: SIGKILL of the source's handoff in PHASE, the controller stopped or killed ----
hpid=$(lease_field node1 "$ct" handoff_pid)
# stopped: before the handoff's SIGKILL, so that the controller cannot act on it; killed: right
# after it (its ssh session's end must not be what ends the handoff)
[ "$ctl_mode" = kill ] || kill -STOP -- -$ctl
echo "controller: $ctl_mode; SIGKILL handoff pid $hpid"
$LAB ssh node1 -- kill -9 "$hpid"
[ "$ctl_mode" = kill ] && kill -9 -- -$ctl
wait_running "$ct" node1 60
echo "watchdog: $(lease_field node1 "$ct" watchdog)"
$LAB ssh node1 -- rm -f "/run/haul/test-hooks/$ct"
if [ "$ctl_mode" = kill ]; then
  wait $ctl 2>/dev/null
  # the receiver (an async job on node2) ends on its own: the relay's EOF, or its deadline
  for _try in $(seq 60); do
    [ -z "$($LAB ssh node2 -- pgrep -x criu)" ] && break
    sleep 1
  done
  echo "attempt1: killed, rc=-9"
  # the controller's clean-up never ran: its key and the destination's images (on a tmpfs when memory
  # allows) stay until the re-run removes what earlier runs left (checked after the final re-run)
  left=$(leftovers "$ct" lease | grep -v ' key: \| keyfile: \| images: ')
else
  kill -CONT -- -$ctl
  wait $ctl
  echo "attempt1: rc=$? row: $(row "$rep_a")"
  left=$(leftovers "$ct")
fi
echo "after: $(state "$ct")"
[ -z "$left" ] && echo "nothing left" || echo "LEFT: $left"
exit 0
