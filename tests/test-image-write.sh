#!/usr/bin/env bash
# Invariant 3: writes to an image go to diff storage, never to the
# original.  The image reads back what was written to it, and the point
# in time everywhere else; the original file's bytes never change.
source ${srcdir:-.}/functions.sh
set -e
set -x
requires qemu-img qemu-io sha256sum cmp

random_file $dir/disk.img $((16 << 20))
cp $dir/disk.img $dir/ref.img
start_nbdsnap device=disk0:$dir/disk.img
id=$(testctl create --tmpfile $dir --limit 64M --device disk0 --take | kv id)
img=$(uri disk0@$id)

# Writes of every shape: whole chunks, partial, unaligned, across chunk
# boundaries, zeroes (whole and partial chunks), FUA.
qemu-io -f raw \
  -c 'write -P 0xa1 0 64k' \
  -c 'write -P 0xa2 100000 300000' \
  -c 'write -P 0xa3 1048575 2' \
  -c 'write -z 2M 128k' \
  -c 'write -z 3000000 5000' \
  -c 'write -f -P 0xa4 8M 4096' \
  "$img"
sync
cmp $dir/disk.img $dir/ref.img

# The same writes applied to a copy of the reference is the model.
cp $dir/ref.img $dir/model.img
qemu-io -f raw \
  -c 'write -P 0xa1 0 64k' \
  -c 'write -P 0xa2 100000 300000' \
  -c 'write -P 0xa3 1048575 2' \
  -c 'write -z 2M 128k' \
  -c 'write -z 3000000 5000' \
  -c 'write -P 0xa4 8M 4096' \
  $dir/model.img
qemu-img compare -f raw -F raw "$img" $dir/model.img

# The original, as served, is still the reference.
qemu-img compare -f raw -F raw "$(uri disk0)" $dir/ref.img

# Writes to the original after image writes do not disturb the image.
qemu-io -f raw -c 'write -P 0x77 0 4M' "$(uri disk0)"
qemu-img compare -f raw -F raw "$img" $dir/model.img

# With image-readonly=true, image writes are refused.
testctl destroy $id
stop_nbdsnap
start_nbdsnap device=disk0:$dir/disk.img image-readonly=true
id=$(testctl create --tmpfile $dir --limit 64M --device disk0 --take | kv id)
before=$(sha256sum < $dir/disk.img)
fails qemu-io -f raw -c 'write -P 0x99 0 4096' "$(uri disk0@$id)"
[ "$(sha256sum < $dir/disk.img)" = "$before" ]
