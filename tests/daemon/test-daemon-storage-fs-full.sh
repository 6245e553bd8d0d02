#!/bin/sh
# Diff storage on a file system that fills up (a 2 MiB tmpfs, mounted by
# the test, root only) while the snapshot's limit is far larger
# (64 MiB).  The snapshot uses the room there is: 1 MiB of chunks is
# copied with the snapshot still taken and its image exact, although no
# 64 MiB portion can be reserved ahead.  When the file system is full
# the snapshot is corrupted with ENOSPC (event and info), its image
# fails with EIO, every write to the original succeeds and reads back,
# and destroy gives all the room back.
. "$srcdir/functions-daemon.sh"
requires qemu-io nbdcopy mount umount mountpoint cmp
set -e
set -x

[ "$(id -u)" -eq 0 ] || skip "needs root (mounts a tmpfs)"
random_file "$dir/ref0" 16M
cp "$dir/ref0" "$dir/disk0.img"
small=$dir/small
mkdir "$small"
mount -t tmpfs -o size=2m nbdsnap-test "$small"
_umount_small () { ! mountpoint -q "$small" || umount "$small"; }
cleanup_fn _umount_small
start_nbdsnapd --device "disk0:$dir/disk0.img"

id=$(ctl snapshot create --device disk0 --diff-storage "$small" \
       --limit 64M --take)
# 1 MiB of new data: 16 chunks copied into the 2 MiB there is.
qemu-io -f raw -c 'write -P 0x31 0 1M' "$(uri disk0)" > /dev/null
ctl --json snapshot info "$id" > "$dir/info"
grep '"state": "taken"' "$dir/info"
grep '"used": 1048576' "$dir/info"
nbdcopy "$(uri "disk0@$id")" "$dir/image"
cmp "$dir/ref0" "$dir/image"

# 8 MiB more: the file system fills up.
qemu-io -f raw -c 'write -P 0x32 4M 8M' "$(uri disk0)" > /dev/null
ctl snapshot wait-event "$id" --timeout 60000 > "$dir/ev"
grep "^corrupted $id device=disk0 error=ENOSPC" "$dir/ev"
ctl --json snapshot info "$id" > "$dir/info"
grep '"state": "corrupted"' "$dir/info"
grep '"error": "ENOSPC"' "$dir/info"
st=0
qemu-io -r -f raw -c 'read 0 64k' "$(uri "disk0@$id")" > "$dir/read" 2>&1 ||
  st=$?
cat "$dir/read"
[ $st -ne 0 ]
grep -q 'Input/output error' "$dir/read"
# The original holds every byte written.
qemu-io -f raw -c 'read -P 0x31 0 1M' -c 'read -P 0x32 4M 8M' \
  "$(uri disk0)" > /dev/null
nbdcopy "$(uri disk0)" "$dir/now"
cmp -n 1M "$dir/ref0" "$dir/now" && exit 1
cmp -i 1M:1M -n 3M "$dir/ref0" "$dir/now"
cmp -i 12M:12M "$dir/ref0" "$dir/now"

ctl snapshot destroy "$id"
[ "$(df --output=used -B1 "$small" | tail -1)" -eq 0 ]
stop_nbdsnapd
