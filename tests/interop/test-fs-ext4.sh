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

fs_one_device ext4
