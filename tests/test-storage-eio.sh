#!/usr/bin/env bash
# Fault: diff storage returns EIO.  The diff storage is a file served by
# nbdfuse from an nbdkit memory disk behind nbdkit's error filter, which
# fails every write once a trigger file exists.  Before the trigger,
# copy-on-write works; after it, the snapshot becomes corrupted with
# EIO, the event arrives, image reads fail with EIO, and every write to
# the original succeeds and reads back.
source ${srcdir:-.}/functions.sh
set -e
set -x
requires nbdfuse nbdcopy qemu-io qemu-img cmp
[ -c /dev/fuse ] || skip "/dev/fuse is missing"

# The faulty storage.
nbdkit -f -U $dir/faulty.sock -P $dir/faulty.pid --filter=error memory 256M \
  error-pwrite=EIO error-pwrite-rate=100% error-pwrite-file=$dir/trigger \
  2> $dir/faulty.log &
faulty_pid=$!
cleanup_fn kill $faulty_pid
for i in $(seq 100); do [ -S $dir/faulty.sock ] && break; sleep 0.05; done
mkdir $dir/mnt
nbdfuse $dir/mnt/storage "nbd+unix:///?socket=$dir/faulty.sock" &
fuse_pid=$!
cleanup_fn kill $fuse_pid
cleanup_fn umount -l $dir/mnt
for i in $(seq 100); do [ -f $dir/mnt/storage ] && break; sleep 0.05; done
[ -f $dir/mnt/storage ]

random_file $dir/disk.img $((16 << 20))
cp $dir/disk.img $dir/ref.img
start_nbdsnap device=disk0:$dir/disk.img
id=$(testctl create --storage $dir/mnt/storage --limit 128M --device disk0 \
       --take | kv id)
testctl wait-event --code corrupted --timeout 20000 > $dir/event &
waiter=$!
sleep 0.3

# Healthy first: 4 MiB overwritten, the image still the point in time.
random_file $dir/new.img $((16 << 20))
qemu-io -f raw -c 'write -s '$dir/new.img' 0 4M' "$(uri disk0)"
qemu-img compare -f raw -F raw "$(uri disk0@$id)" $dir/ref.img
testctl info $id | grep -x 'state=taken'

# Now the storage fails.
touch $dir/trigger
nbdcopy $dir/new.img "$(uri disk0)"
nbdcopy "$(uri disk0)" $dir/readback.img
cmp $dir/new.img $dir/readback.img
cmp $dir/new.img $dir/disk.img

wait $waiter
cat $dir/event
grep -x 'event=corrupted' $dir/event
grep -x 'error=EIO' $dir/event
testctl info $id > $dir/info
grep -x 'state=corrupted' $dir/info
grep -x 'error=EIO' $dir/info
fails qemu-io -f raw -c 'read 0 4096' "$(uri disk0@$id)" > $dir/read 2>&1
grep -q 'Input/output error' $dir/read
grep -q "snapshot $id corrupted: device disk0: Input/output error" $dir/nbdkit.log

testctl destroy $id
rm $dir/trigger
