#!/usr/bin/env bash
# ext4 on an nbdsnapd device through nbdfuse and a loop device: 200
# files, fsfreeze, take, thaw; delete, overwrite and add files on the
# original.  The image export, attached the same way, holds every block
# and every file of the take while the original shows the new state;
# files written into the mounted image survive a remount and never reach
# the original; after destroy the original passes e2fsck -fn.
. "$srcdir/functions-fs.sh"
requires nbdfuse fusermount3 losetup mountpoint mkfs.ext4 e2fsck fsfreeze nbdcopy cmp sha256sum
set -e
set -x

fs_disk disk0 ext4
start_nbdsnapd --device "disk0:$dir/disk0.img"
fs_prepare disk0 ext4

id=$(ctl snapshot create --device disk0)
fs_freeze disk0
fs_reference disk0
ctl snapshot take "$id"
fs_thaw disk0
ctl --json snapshot info "$id" | grep '"state": *"taken"'

fs_change disk0
fs_verify_image disk0 "$id"

ctl snapshot destroy "$id"
# The image export is gone with the snapshot.
if nbdinfo "$(uri "disk0@$id")" > "$dir/gone" 2>&1; then
  cat "$dir/gone"
  echo "$0: disk0@$id is still served after destroy" >&2
  exit 1
fi
fs_finish disk0
stop_nbdsnapd
