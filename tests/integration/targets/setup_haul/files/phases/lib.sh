# shellcheck shell=bash
# Shell helpers of the fault targets fault_phases and fault_hung (sourced by their scripts).
# The environment gives: LAB (tests/lab/lab), INV (the lab's inventory), AP (ansible-playbook),
# LABNAME (the lab's name), ANSIBLE_COLLECTIONS_PATH.

# lease_field NODE CT FIELD: a field of the container's lease on NODE ("" when there is none)
lease_field() {
  $LAB ssh "$1" -- python3 -c "import json
try:
    print(json.load(open('/run/haul/leases/$2.json')).get('$3') or '')
except (IOError, OSError, ValueError):
    print('')" 2>/dev/null
}

# state CT: "NODES COUNTER TOKEN" (NODES like ['node1'])
state() {
  $LAB ct-state "$1" | python3 -c 'import json,sys
d = json.load(sys.stdin)
s = d.get("state") or {}
print(str(d.get("nodes")).replace(" ", ""), s.get("counter"), s.get("token"))'
}

# migrate CT SRC DEST REPORT LOG [extra args...]: one migrate.yml run, in the foreground
migrate() {
  local ct=$1 src=$2 dest=$3 report=$4 log=$5
  shift 5
  rm -f "$report"
  ANSIBLE_NOCOLOR=1 "$AP" -i "$INV" haul.live.migrate -e "haul_container=$ct" -e "haul_source=$src" \
    -e "haul_destination=$dest" -e "haul_report=$report" "$@" > "$log" 2>&1
}

# row REPORT: "RESULT STEP SOURCE_STATE" of the report's first migration, then its message
row() {
  python3 -c 'import json,sys
try:
    r = json.load(open(sys.argv[1]))["migrations"][0]
except Exception as e:  # noqa
    print("none none none", e); sys.exit(0)
print(r.get("result"), r.get("step"), r.get("source_state"), (r.get("msg") or r.get("error") or "").replace("\n", " ")[:400])' "$1"
}

# wait_running CT NODE SECONDS: until CT runs on NODE only, its counter moving; prints the time taken
wait_running() {
  local t0=$SECONDS a b
  while [ $((SECONDS - t0)) -lt "$3" ]; do
    a=$(state "$1")
    sleep 0.5
    b=$(state "$1")
    if [ "${a%% *}" = "['$2']" ] && [ "${b%% *}" = "['$2']" ] && [ "$a" != "$b" ]; then
      echo "running on $2 again after $((SECONDS - t0)) s: $b"
      return 0
    fi
  done
  echo "NOT running on $2 after $3 s: $(state "$1")"
  return 1
}

# leftovers CT [lease]: what the migration left on node1 and node2 (nothing printed: nothing left).
# With "lease", a lease is expected (a killed controller's) and not reported.
leftovers() {
  local n
  # the CRIU processes (dump, page server, lazy-pages daemon, restore) working in the container's
  # images directories (cwd or an open fd there); CRIU is found by its comm, so never this shell
  local criu_of='import os, sys
d = \"/var/lib/haul/images/\" + sys.argv[1]
for p in filter(str.isdigit, os.listdir(\"/proc\")):
    try:
        if open(\"/proc/%s/comm\" % p).read().strip() != \"criu\":
            continue
        fds = \"/proc/%s/fd\" % p
        links = [os.readlink(\"/proc/%s/cwd\" % p)] + [os.readlink(os.path.join(fds, f)) for f in os.listdir(fds)]
    except OSError:
        continue
    if any(x == d or x.startswith(d + \".\") or x.startswith(d + \"/\") for x in links):
        print(\"CRIU process:\", p, open(\"/proc/%s/cmdline\" % p).read().replace(chr(0), \" \"))'
  for n in node1 node2; do
    $LAB ssh "$n" -- sh -c "
      [ '${2:-}' = lease ] || ls /run/haul/leases/$1.json /run/haul/leases/$1.lock 2>/dev/null | sed 's/^/lease: /'
      python3 -c \"$criu_of\" $1
      ls -d /var/lib/haul/images/$1 /var/lib/haul/images/$1.* 2>/dev/null | sed 's/^/images: /'
      grep -h 'haul.live $1 ' /root/.ssh/authorized_keys 2>/dev/null | sed 's/^/key: /' | cut -c1-60
      ls /root/.ssh/haul-live-$1* 2>/dev/null | sed 's/^/keyfile: /'
      true" | sed "s/^/$n /"
  done
}
