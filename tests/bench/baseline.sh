#!/usr/bin/env bash
# The plain-CRIU baseline: what an operator would type by hand to move a lab container, with no
# Ansible and no haul.live code. Runs on the source node:
#   baseline.sh NAME DEST_ADDRESS SSH_KEY
# Pre-syncs the root filesystem while the container runs (not timed, as haul.live does), then
# times freeze+dump, rsync of images and rootfs delta, and restore on the destination, and kills
# the source. Prints one JSON line.
# SPDX-License-Identifier: GPL-3.0-or-later
set -euo pipefail
name=$1 dest=$2 key=$3
v2=$(awk '$9 == "cgroup2" {print $5; exit}' /proc/self/mountinfo)
fz=$(awk '$9 == "cgroup" && $NF ~ /freezer/ {print $5; exit}' /proc/self/mountinfo)
cg=$v2/haul/$name
pid=
while read -r p; do
  if awk '/^NSpid:/ {exit !($NF == 1 && NF > 2)}' "/proc/$p/status"; then pid=$p; break; fi
done < "$cg/cgroup.procs"
[ -n "$pid" ] || { echo "no container $name here" >&2; exit 1; }
img=/var/lib/haul/images/$name-baseline
root=/var/lib/haul/containers/$name/rootfs
rsh="ssh -i $key -o BatchMode=yes -o StrictHostKeyChecking=accept-new"
ssh="$rsh -n"
rm -rf "$img"; mkdir -p "$img"; chmod 0700 "$img"
rsync -aSH --numeric-ids -e "$rsh" --rsync-path="mkdir -p $root && rsync" "$root/" "$dest:$root/"
freeze=${fz:+$fz/haul/$name}
t0=$(date +%s%N)
criu dump -t "$pid" -D "$img" -o dump.log --root "$root" --manage-cgroups --freeze-cgroup "${freeze:-$cg}" \
  --leave-stopped --network-lock nftables --external 'mnt[]:m'
t1=$(date +%s%N)
rsync -aSH --numeric-ids --delete -e "$rsh" --rsync-path="mkdir -p -m 0700 $img && rsync" "$img/" "$dest:$img/"
rsync -aSH --numeric-ids --delete -e "$rsh" "$root/" "$dest:$root/"
t2=$(date +%s%N)
$ssh "$dest" criu restore -D "$img" -o restore.log --root "$root" --manage-cgroups --restore-detached \
  --network-lock nftables -d
t3=$(date +%s%N)
echo 1 > "$cg/cgroup.kill"
bytes=$(du -sb "$img" | cut -f1)
rm -rf "$img"; $ssh "$dest" rm -rf "$img"
printf '{"frozen_ms": %d, "dump_ms": %d, "sync_ms": %d, "restore_ms": %d, "bytes": %d}\n' \
  $(((t3 - t0) / 1000000)) $(((t1 - t0) / 1000000)) $(((t2 - t1) / 1000000)) $(((t3 - t2) / 1000000)) "$bytes"
