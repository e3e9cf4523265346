#!/usr/bin/env bash
# Fault case 2, the variant where attempt 1 goes on: CT from SRC to DEST, attempt 1's handoff
# stops itself (failpoint sigstop@PHASE) right after it recorded PHASE (restored: once it heard
# that the destination restored its copy); a re-run then must be refused at once, naming attempt
# 1's migration id, touching nothing; then attempt 1's handoff gets SIGCONT and must COMPLETE its
# migration: exactly one copy, on DEST, with its token, its counter moving; nothing left.
# Usage: complete.sh CT SRC DEST PHASE TIMEOUT. Prints lines the target asserts on; exits 0 unless
# the script itself could not run the case.
set -u -o pipefail
here=$(dirname "$0")
. "$here/lib.sh"
ct=$1 src=$2 dest=$3 phase=$4 timeout=$5
P=${phase^^}
want=$P
[ "$P" = RESTORED ] && want=SENT   # the source's failpoint "restored": its lease still says SENT
tmp=/tmp/haul-fc-$LABNAME-$ct
rep_a=$tmp-a.json rep_b=$tmp-b.json

echo "before: $(state "$ct")"
$LAB ssh "$src" -- sh -c "mkdir -p /run/haul/test-hooks && echo sigstop@$phase > /run/haul/test-hooks/$ct"
rm -f "$rep_a"
setsid "$AP" -i "$INV" haul.live.migrate -e "haul_container=$ct" -e "haul_source=$src" -e "haul_destination=$dest" \
  -e "haul_timeout=$timeout" -e "haul_report=$rep_a" > "$tmp-a.log" 2>&1 &
ctl=$!
# parked: the handoff (its pid in the lease) is stopped (state T) in PHASE
t0=$SECONDS now='' hpid='' hstate=''
while [ $((SECONDS - t0)) -lt 600 ]; do
  now=$(lease_field "$src" "$ct" phase)
  if [ "$now" = "$want" ]; then
    hpid=$(lease_field "$src" "$ct" handoff_pid)
    hstate=$($LAB ssh "$src" -- sh -c "awk '{print \$3}' /proc/$hpid/stat" 2>/dev/null)
    [ "$hstate" = T ] && break
  fi
  kill -0 $ctl 2>/dev/null || break
  sleep 0.3
done
$LAB ssh "$src" -- rm -f "/run/haul/test-hooks/$ct"
if [ "$hstate" != T ]; then
  echo "ERROR: attempt 1 never stopped in $P (phase '$now', handoff '$hpid' state '$hstate')"
  kill -9 -- -$ctl 2>/dev/null; wait $ctl; tail -30 "$tmp-a.log"
  exit 1
fi
mid=$(lease_field "$src" "$ct" migration_id)
echo "attempt1: $mid stopped in $P (handoff pid $hpid)"

# ---- the re-run while attempt 1 is stopped in PHASE: refused, naming attempt 1 ----
migrate "$ct" "$src" "$dest" "$rep_b" "$tmp-b.log" -e "haul_timeout=$timeout"
echo "rerun: rc=$? row: $(row "$rep_b")"
grep -q -- "$mid" "$tmp-b.log" "$rep_b" && echo "rerun names attempt1: yes"
echo "after rerun: source lease $(lease_field "$src" "$ct" migration_id) $(lease_field "$src" "$ct" phase)"

# ---- attempt 1 goes on: it must complete the move ----
$LAB ssh "$src" -- kill -CONT "$hpid"
echo "attempt1: SIGCONT handoff pid $hpid"
wait $ctl
echo "attempt1: rc=$? row: $(row "$rep_a")"
wait_running "$ct" "$dest" 60
left=$(leftovers "$ct")
echo "after: $(state "$ct")"
[ -z "$left" ] && echo "nothing left" || echo "LEFT: $left"
exit 0
