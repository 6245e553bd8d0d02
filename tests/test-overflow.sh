#!/usr/bin/env bash
# Overflow: diff storage with a tiny limit.  Every write to the original
# succeeds and reads back; image reads fail with EIO; the corrupted
# event arrives with ENOSPC; the snapshot shows state corrupted.
source ${srcdir:-.}/functions.sh
set -e
set -x
requires qemu-img qemu-io nbdcopy cmp

random_file $dir/disk.img $((32 << 20))
start_nbdsnap device=disk0:$dir/disk.img

# 1 MiB of storage holds 16 chunks of 64 KiB.
id=$(testctl create --tmpfile $dir --limit 1M --device disk0 --take | kv id)
testctl wait-event --code corrupted --timeout 20000 > $dir/event &
waiter=$!
sleep 0.3

# Overwrite the whole original (32 MiB: far more than the limit).
random_file $dir/new.img $((32 << 20))
nbdcopy $dir/new.img "$(uri disk0)"
# ...and some unaligned writes across chunk boundaries on top.
qemu-io -f raw -c 'write -P 0x5a 65000 200000' "$(uri disk0)"
qemu-io -f raw -c 'write -P 0x5a 65000 200000' $dir/new.img

# Every byte of the original is what was written.
nbdcopy "$(uri disk0)" $dir/readback.img
cmp $dir/new.img $dir/readback.img
cmp $dir/new.img $dir/disk.img

wait $waiter
cat $dir/event
grep -x 'event=corrupted' $dir/event
grep -x "id=$id" $dir/event
grep -x 'error=ENOSPC' $dir/event
grep -x 'device=disk0' $dir/event

testctl info $id > $dir/info
cat $dir/info
grep -x 'state=corrupted' $dir/info
grep -x 'error=ENOSPC' $dir/info

# Image reads fail with EIO, everywhere (also chunks never copied).
for off in 0 $((16 << 20)) $((32 << 20 - 512)); do
  if qemu-io -f raw -c "read $off 512" "$(uri disk0@$id)" > $dir/read 2>&1; then
    cat $dir/read
    grep -q 'Input/output error' $dir/read
  fi
  grep -q 'Input/output error' $dir/read
done
fails nbdcopy "$(uri disk0@$id)" $dir/image-copy.img

# Destroying the corrupted snapshot works; the original still works.
testctl destroy $id
qemu-io -f raw -c 'write -P 0x11 0 1M' -c 'read -P 0x11 0 1M' "$(uri disk0)"
