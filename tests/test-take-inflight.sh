#!/usr/bin/env bash
# Take with a write in flight: the take must wait for it (quiesce), so
# that the image is a stable point in time.  The debug flag
# -D nbdsnap.write_delay_ms=1500 holds every write to the original for
# 1.5 s after it has marked CBT, so a write is surely in flight when the
# take starts.  The image must read the same right after the take and
# after that write completes (without the drain, the write would land
# on the original after copy-on-write began and change the image under
# its reader), and must include the write.
source ${srcdir:-.}/functions.sh
set -e
set -x
requires qemu-io cmp

random_file $dir/disk.img $((8 << 20))
start_nbdsnap -D nbdsnap.write_delay_ms=1500 device=d:$dir/disk.img

for round in 1 2; do
  pattern=$((round * 16 + 1))
  qemu-io -f raw -c "write -P $pattern 1M 64k" "$(uri d)" &
  writer=$!
  sleep 0.5
  id=$(testctl create --tmpfile $dir --limit 16M --device d --take | kv id)
  qemu-io -f raw -c 'read -v 1M 64k' "$(uri d@$id)" |
    grep '^[0-9a-f]*:' > $dir/first
  wait $writer
  qemu-io -f raw -c 'read -v 1M 64k' "$(uri d@$id)" |
    grep '^[0-9a-f]*:' > $dir/second
  [ -s $dir/first ]
  cmp $dir/first $dir/second
  # The write completed inside the take's drain: it is in the image.
  qemu-io -f raw -c "read -P $pattern 1M 64k" "$(uri d@$id)"
  testctl destroy $id
done
