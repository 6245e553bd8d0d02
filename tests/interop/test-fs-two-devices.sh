#!/usr/bin/env bash
# Two devices in one snapshot, ext4 on one and xfs on the other: both
# frozen, one take, both thawed.  Each image holds every block and file
# of the take, takes writes of its own, and the originals pass fsck -n
# after destroy, with their changed files and none of the images'.
. "$srcdir/functions-fs.sh"
requires nbdfuse fusermount3 losetup mountpoint mkfs.ext4 e2fsck mkfs.xfs xfs_repair fsfreeze nbdcopy cmp sha256sum
set -e
set -x

fs_disk disk0 ext4
fs_disk disk1 xfs
start_nbdsnapd --device "disk0:$dir/disk0.img" --device "disk1:$dir/disk1.img"
fs_prepare disk0 ext4
fs_prepare disk1 xfs

id=$(ctl snapshot create --device disk0 --device disk1)
fs_freeze disk0
fs_freeze disk1
fs_reference disk0
fs_reference disk1
ctl snapshot take "$id"
fs_thaw disk1
fs_thaw disk0
ctl --json snapshot info "$id" > "$dir/info.json"
cat "$dir/info.json"
grep '"state": *"taken"' "$dir/info.json"
grep "\"export\": *\"disk0@$id\"" "$dir/info.json"
grep "\"export\": *\"disk1@$id\"" "$dir/info.json"

fs_change disk0
fs_change disk1
fs_verify_image disk0 "$id"
fs_verify_image disk1 "$id"

ctl snapshot destroy "$id"
fs_finish disk0
fs_finish disk1
stop_nbdsnapd
