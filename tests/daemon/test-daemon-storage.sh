#!/bin/sh
# Diff storage made by nbdsnapd: an unnamed O_TMPFILE in
# --diff-storage-dir by default, or the file / directory / block device
# given to snapshot create --diff-storage; storage lying on one of the
# snapshot's own devices refused; the default limit from the config
# file; on low space, spare storage appended from spare-storage-dirs
# (storage-extended events, no corruption: the image keeps every block
# of the point in time), or, with no spare directories, a report.
. "$srcdir/functions-daemon.sh"
requires qemu-io nbdcopy losetup split sha256sum
set -e
set -x

bs=65536
block_sums ()
{
  split -b $bs --filter='sha256sum' "$1" | awk '{ print NR - 1, $1 }'
}
# The targets of nbdkit's open descriptors.
nbdkit_fds ()
{
  ls -l "/proc/$(cat "$dir/state/nbdkit.pid")/fd" | sed -n 's/.* -> //p'
}

random_file "$dir/ref0" 16M
truncate -s 16M "$dir/disk0.img"
# A block device: a loop device on a file.
truncate -s 8M "$dir/loop.img"
loop=$(losetup -f --show "$dir/loop.img")
cleanup_fn losetup -d "$loop"
truncate -s 4M "$dir/loop2.img"
loop2=$(losetup -f --show "$dir/loop2.img")
cleanup_fn losetup -d "$loop2"
mkdir "$dir/spare1" "$dir/spare2" "$dir/sdir"

cat > "$dir/nbdsnapd.conf" <<EOF
[nbdsnapd]
# 1 MiB of diff storage per snapshot; when it runs low, 2 MiB more at a
# time, alternately in spare1 and spare2.
diff-storage-limit=1M
spare-storage-dirs=$dir/spare1;$dir/spare2;
spare-storage-size=2M
EOF
start_nbdsnapd --config "$dir/nbdsnapd.conf" \
  --device "disk0:$dir/disk0.img" --device "blk0:$loop"
nbdcopy "$dir/ref0" "$(uri disk0)"

# Storage on the snapshot's own device is refused, nothing is created.
for bad in "$dir/disk0.img:disk0:disk0" "$loop:blk0:blk0"; do
  path=${bad%%:*}; rest=${bad#*:}; devname=${rest%%:*}; dev=${rest#*:}
  st=0
  ctl snapshot create --device "$dev" --diff-storage "$path" 2>"$dir/err" ||
    st=$?
  test $st -eq 1
  grep "^nbdsnapctl: diff storage $path lies on device '$devname'" "$dir/err"
  ctl --json snapshot list | grep '"snapshots": \[\]'
done
cmp "$dir/ref0" "$dir/disk0.img"
# A block device that is no snapshot's device is fine.
id=$(ctl snapshot create --device disk0 --diff-storage "$loop2")
nbdkit_fds | grep -x "$loop2"
ctl snapshot destroy "$id"

# Default: an unnamed file in --diff-storage-dir, the config's limit.
id=$(ctl snapshot create --device disk0)
nbdkit_fds | grep -E "^$dir/#[0-9]+ \\(deleted\\)$"
ctl --json snapshot info "$id" | grep '"limit": 1048576'
ctl snapshot destroy "$id"
# A named file (made), a directory (an unnamed file in it), --limit.
id=$(ctl snapshot create --device disk0 --diff-storage "$dir/new.diff" \
       --limit 3M)
test -f "$dir/new.diff"
nbdkit_fds | grep -x "$dir/new.diff"
ctl --json snapshot info "$id" | grep '"limit": 3145728'
ctl snapshot destroy "$id"
id=$(ctl snapshot create --device disk0 --diff-storage "$dir/sdir")
nbdkit_fds | grep -E "^$dir/sdir/#[0-9]+ \\(deleted\\)$"
ctl snapshot destroy "$id"

# Spare storage (events in wait-event and as D-Bus signals).  13 chunks of 64 KiB copied: 832 KiB of 1 MiB used, less
# than a quarter left: low space, a spare file is appended.
start_monitor
id=$(ctl snapshot create --device disk0 --take)
qemu-io -f raw -c 'write -P 0x61 0 832k' "$(uri disk0)"
ctl snapshot wait-event "$id" --timeout 30000 > "$dir/ev1"
grep -x "low-space $id used=851968 limit=1048576" "$dir/ev1"
ctl snapshot wait-event "$id" --timeout 30000 > "$dir/ev2"
grep -x "storage-extended $id used=851968 limit=3145728" "$dir/ev2"
wait_signal "^LowSpace ('$id', 851968, 1048576)$"
wait_signal "^StorageExtended ('$id', 851968, 3145728)$"
nbdkit_fds | grep -E "^$dir/spare1/#[0-9]+ \\(deleted\\)$"
# 2 MiB more (2880 KiB of 3 MiB at the end): low space again while it
# is written, the second spare, in spare2.
qemu-io -f raw -c 'write -P 0x62 4M 2M' "$(uri disk0)"
ctl snapshot wait-event "$id" --timeout 30000 > "$dir/ev3"
grep -E "^low-space $id used=[0-9]+ limit=3145728$" "$dir/ev3"
ctl snapshot wait-event "$id" --timeout 30000 > "$dir/ev4"
grep -E "^storage-extended $id used=[0-9]+ limit=5242880$" "$dir/ev4"
nbdkit_fds | grep -E "^$dir/spare2/#[0-9]+ \\(deleted\\)$"
grep "snapshot $id: diff storage is low .*: appending spare storage" \
  "$dir/nbdsnapd.log"
# 512 KiB more fits with no event.
qemu-io -f raw -c 'write -P 0x63 10M 512k' "$(uri disk0)"
ctl --json snapshot info "$id" > "$dir/info.json"
grep '"state": "taken"' "$dir/info.json"
grep '"files": 3' "$dir/info.json"
grep '"used": 3473408' "$dir/info.json"
# No corruption: every block of the image is the point in time.
nbdcopy "$(uri "disk0@$id")" "$dir/img"
block_sums "$dir/ref0" > "$dir/ref.sums"
block_sums "$dir/img" > "$dir/img.sums"
test "$(wc -l < "$dir/ref.sums")" -eq 256
diff "$dir/ref.sums" "$dir/img.sums"
ctl snapshot destroy "$id"
stop_nbdsnapd

# No spare directories: low space is reported (event, log), and when the
# storage is full the snapshot is corrupted while the original works.
start_nbdsnapd --device "disk0:$dir/disk0.img"
nbdcopy "$dir/ref0" "$(uri disk0)"
id=$(ctl snapshot create --device disk0 --take --limit 1M)
qemu-io -f raw -c 'write -P 0x64 0 832k' "$(uri disk0)"
ctl snapshot wait-event "$id" --timeout 30000 > "$dir/ev5"
grep -x "low-space $id used=851968 limit=1048576" "$dir/ev5"
grep "snapshot $id: diff storage is low: 851968 of 1048576 bytes used and no spare storage is configured" \
  "$dir/nbdsnapd.log"
qemu-io -f raw -c 'write -P 0x65 1M 1M' "$(uri disk0)"
ctl snapshot wait-event "$id" --timeout 30000 > "$dir/ev6"
grep -E "^corrupted $id device=disk0 error=ENOSPC" "$dir/ev6"
ctl --json snapshot info "$id" | grep '"state": "corrupted"'
# The original holds every write.
head -c 832k /dev/zero | tr '\0' d | dd of="$dir/ref0" conv=notrunc
head -c 1M /dev/zero | tr '\0' e | dd of="$dir/ref0" bs=1M seek=1 conv=notrunc
nbdcopy "$(uri disk0)" "$dir/orig"
cmp "$dir/ref0" "$dir/orig"
ctl snapshot destroy "$id"

stop_nbdsnapd
