#!/usr/bin/env bash
# The plain-Podman baseline: what an operator would type by hand to move a Podman container, with
# no Ansible and no haul.live code. Runs on the source node:
#   baseline_podman.sh NAME DEST_ADDRESS SSH_KEY
# Times podman container checkpoint --export, rsync of the export, and podman container restore
# --import on the destination (the container is down from the checkpoint's start to the restore's
# end), then removes the source's record. Prints one JSON line.
# SPDX-License-Identifier: GPL-3.0-or-later
set -euo pipefail
name=$1 dest=$2 key=$3
img=/var/lib/haul/images/$name-baseline
export_tar=$img/export.tar
rsh="ssh -i $key -o BatchMode=yes -o StrictHostKeyChecking=accept-new"
ssh="$rsh -n"
rm -rf "$img"; mkdir -p "$img"; chmod 0700 "$img"
t0=$(date +%s%N)
podman container checkpoint --export="$export_tar" --compress=none --tcp-established "$name" >/dev/null
t1=$(date +%s%N)
rsync -aS --numeric-ids -e "$rsh" --rsync-path="mkdir -p -m 0700 $img && rsync" "$export_tar" "$dest:$export_tar"
t2=$(date +%s%N)
$ssh "$dest" podman container restore --import="$export_tar" --tcp-established >/dev/null
t3=$(date +%s%N)
bytes=$(stat -c %s "$export_tar")
podman rm --force --time 0 "$name" >/dev/null
rm -rf "$img"; $ssh "$dest" rm -rf "$img"
printf '{"frozen_ms": %d, "dump_ms": %d, "sync_ms": %d, "restore_ms": %d, "bytes": %d}\n' \
  $(((t3 - t0) / 1000000)) $(((t1 - t0) / 1000000)) $(((t2 - t1) / 1000000)) $(((t3 - t2) / 1000000)) "$bytes"
