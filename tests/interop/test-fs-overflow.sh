#!/usr/bin/env bash
# Overflow under a filesystem workload: ext4 on a device whose snapshot
# has 1 MiB of diff storage.  The workload on the original (files
# deleted, rewritten, overwritten in place, added, each fsynced) keeps
# succeeding while the snapshot overflows and after; the corrupted event
# arrives with ENOSPC; image reads fail with EIO (nbdcopy, qemu-img); the
# original passes e2fsck -fn and every file has its checksum.
. "$srcdir/functions-fs.sh"
requires nbdfuse fusermount3 losetup mountpoint mkfs.ext4 e2fsck fsfreeze nbdcopy qemu-img sha256sum
set -e
set -x

fs_disk disk0 ext4
start_nbdsnapd --device "disk0:$dir/disk0.img"
fs_prepare disk0 ext4

# 1 MiB holds 16 chunks of 64 KiB; the workload copies far more.
id=$(ctl snapshot create --device disk0 --limit 1M)
fs_freeze disk0
ctl snapshot take "$id"
fs_thaw disk0

# The workload, part one: it overflows the diff storage.
fs_change disk0
mkdir "$dir/orig-disk0/data/fsynced"
for i in $(seq 20); do
  head -c $((256 * 1024 + i)) /dev/urandom |
    dd of="$dir/orig-disk0/data/fsynced/a-$i" bs=64K conv=fsync status=none
done

# The corrupted event arrives (other events, such as low space, may
# come first).  Each wait is bounded.
got=
for i in $(seq 10); do
  ctl snapshot wait-event "$id" --timeout 30000 > "$dir/event"
  cat "$dir/event"
  if grep -q '^corrupted ' "$dir/event"; then
    got=yes
    break
  fi
done
test "$got" = yes
grep -q ' device=disk0' "$dir/event"
grep -q ' error=ENOSPC' "$dir/event"
ctl --json snapshot info "$id" > "$dir/info.json"
cat "$dir/info.json"
grep '"state": *"corrupted"' "$dir/info.json"
grep '"error": *"ENOSPC"' "$dir/info.json"

# The workload, part two: the original keeps working after the overflow.
for i in $(seq 20); do
  head -c $((300 * 1024 - i)) /dev/urandom |
    dd of="$dir/orig-disk0/data/fsynced/b-$i" bs=64K conv=fsync status=none
done
rm "$dir/orig-disk0/data/fsynced/a-3"
head -c 5000 /dev/urandom |
  dd of="$dir/orig-disk0/data/fsynced/a-4" bs=1 seek=70000 conv=notrunc,fsync \
     status=none
sync -f "$dir/orig-disk0"
checksums "$dir/orig-disk0" > "$dir/disk0.after"
echo "verified: the workload wrote $(wc -l < "$dir/disk0.after") files, each write succeeded"

# Image reads fail with EIO, with any client.
if nbdcopy "$(uri "disk0@$id")" "$dir/image.raw" 2> "$dir/nbdcopy.err"; then
  echo "$0: nbdcopy read a corrupted image" >&2
  exit 1
fi
cat "$dir/nbdcopy.err"
grep -q 'Input/output error' "$dir/nbdcopy.err"
if qemu-img convert -f raw -O raw "$(uri "disk0@$id")" "$dir/image.raw" \
     2> "$dir/qemu-img.err"; then
  echo "$0: qemu-img read a corrupted image" >&2
  exit 1
fi
cat "$dir/qemu-img.err"
grep -q 'Input/output error' "$dir/qemu-img.err"

ctl snapshot destroy "$id"
# The original: fsck clean and every file as written, read through a
# fresh attach.
fs_finish disk0
stop_nbdsnapd
