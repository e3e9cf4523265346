#!/usr/bin/env bash
# Fault case 3 in one phase: the source's handoff kills itself with SIGKILL right after it
# recorded PHASE (failpoint sigkill@PHASE; sigkill@restored: once the destination reported its
# copy restored, before the commit decision). CTL=run: the controller goes on (its rescue runs);
# CTL=kill: the controller is killed as soon as the handoff died (nobody watches: only the
# watchdog and the page server's own supervisor act). Expect the copy to run on WHERE.
# Usage: kill.sh CT SRC DEST PHASE CTL WHERE TIMEOUT [extra migrate args...]
set -u -o pipefail
here=$(dirname "$0")
. "$here/lib.sh"
ct=$1 src=$2 dest=$3 phase=$4 ctl_mode=$5 where=$6 timeout=$7
shift 7
tmp=/tmp/haul-fk-$LABNAME-$ct
rep=$tmp.json

echo "before: $(state "$ct")"
$LAB ssh "$src" -- sh -c "mkdir -p /run/haul/test-hooks && echo sigkill@$phase > /run/haul/test-hooks/$ct"
rm -f "$rep"
stale=$(lease_field "$src" "$ct" handoff_pid)
setsid "$AP" -i "$INV" haul.live.migrate -e "haul_container=$ct" -e "haul_source=$src" -e "haul_destination=$dest" \
  -e "haul_timeout=$timeout" -e "haul_report=$rep" "$@" > "$tmp.log" 2>&1 &
ctl=$!
# the handoff recorded its pid in the lease; wait until that process is gone (its failpoint).
# A lease an earlier, killed controller left names a dead handoff: not this one.
hpid="" t0=$SECONDS died=""
while [ $((SECONDS - t0)) -lt 600 ] && kill -0 $ctl 2>/dev/null; do
  if [ -z "$hpid" ]; then
    hpid=$(lease_field "$src" "$ct" handoff_pid)
    [ "$hpid" = "$stale" ] && hpid=
  fi
  seen=$(lease_field "$src" "$ct" phase)
  if [ -n "$hpid" ] && ! $LAB ssh "$src" -- kill -0 "$hpid" 2>/dev/null; then
    # the phase recorded when it died (the failpoint fires right after the record; a lease the
    # controller released meanwhile: the last phase seen)
    died=$(lease_field "$src" "$ct" phase)
    died=${died:-$seen}
    echo "handoff: pid $hpid died at phase $died"
    break
  fi
  sleep 0.3
done
if [ "$ctl_mode" = kill ]; then
  kill -9 -- -$ctl
  wait $ctl 2>/dev/null
  echo "controller: killed after the handoff died"
else
  wait $ctl
  echo "controller: rc=$? row: $(row "$rep")"
fi
$LAB ssh "$src" -- rm -f "/run/haul/test-hooks/$ct"
echo "source lease: phase $(lease_field "$src" "$ct" phase) watchdog $(lease_field "$src" "$ct" watchdog)"
wait_running "$ct" "$where" 90
# the page server, the lazy-pages daemon and the receiver end on their own
t0=$SECONDS
while [ $((SECONDS - t0)) -lt 90 ]; do
  left=$(leftovers "$ct" lease | grep -v ' key: \| keyfile: \| images: ')
  [ -z "$left" ] && break
  sleep 2
done
echo "after: $(state "$ct")"
[ -z "$left" ] && echo "no process left" || echo "LEFT: $left"
exit 0
