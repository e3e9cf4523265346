#!/usr/bin/env bash
# The plain-LXC baseline: what an operator would type by hand to move an LXC container, with no
# Ansible and no haul.live code. Runs on the source node:
#   baseline_lxc.sh NAME DEST_ADDRESS SSH_KEY
# Pre-syncs the container's directory (config and root filesystem) while it runs (not timed, as
# haul.live does), then times lxc-checkpoint -s (dump and stop), rsync of the images and of the
# directory's last changes, and lxc-checkpoint -r on the destination (stdio to a file: LXC's
# monitor keeps it), then makes the source's LXC forget the container. Prints one JSON line.
# SPDX-License-Identifier: GPL-3.0-or-later
set -euo pipefail
name=$1 dest=$2 key=$3
img=/var/lib/haul/images/$name-baseline
dir=/var/lib/lxc/$name
rsh="ssh -i $key -o BatchMode=yes -o StrictHostKeyChecking=accept-new"
ssh="$rsh -n"
rm -rf "$img"; mkdir -p "$img"; chmod 0700 "$img"
rsync -aSH --numeric-ids -e "$rsh" "$dir/" "$dest:$dir/"
t0=$(date +%s%N)
lxc-checkpoint -s -n "$name" -D "$img" </dev/null >"$img/../$name-baseline.out" 2>&1
t1=$(date +%s%N)
rsync -aSH --numeric-ids --delete -e "$rsh" --rsync-path="mkdir -p -m 0700 $img && rsync" "$img/" "$dest:$img/"
rsync -aSH --numeric-ids --delete -e "$rsh" "$dir/" "$dest:$dir/"
t2=$(date +%s%N)
$ssh "$dest" "lxc-checkpoint -r -n '$name' -D '$img' </dev/null >/dev/null 2>&1"
t3=$(date +%s%N)
bytes=$(du -sb "$img" | cut -f1)
lxc-destroy -f -n "$name" >/dev/null 2>&1 || true
rm -rf "$img" "$img/../$name-baseline.out"; $ssh "$dest" rm -rf "$img"
printf '{"frozen_ms": %d, "dump_ms": %d, "sync_ms": %d, "restore_ms": %d, "bytes": %d}\n' \
  $(((t3 - t0) / 1000000)) $(((t1 - t0) / 1000000)) $(((t2 - t1) / 1000000)) $(((t3 - t2) / 1000000)) "$bytes"
