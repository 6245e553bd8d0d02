#!/usr/bin/env bash
# xfs on an nbdsnapd device through nbdfuse and a loop device: 200
# files, fsfreeze, take, thaw; delete, overwrite and add files on the
# original.  The image export, attached the same way, holds every block
# and every file of the take while the original shows the new state;
# files written into the mounted image survive a remount and never reach
# the original; after destroy the original passes xfs_repair -n; the
# image mounts with nouuid (it is a clone of a mounted filesystem).
. "$srcdir/functions-fs.sh"
requires nbdfuse fusermount3 losetup mountpoint mkfs.xfs xfs_repair fsfreeze nbdcopy cmp sha256sum
set -e
set -x

fs_one_device xfs
