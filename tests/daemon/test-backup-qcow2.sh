#!/usr/bin/env bash
# A backup to an NBD DEST: a qcow2 file served by qemu-nbd, the state
# in --state FILE.  A full backup, then incremental ones with writes in
# between; each read back through qemu-nbd equals the image as read
# right after the take, holes of the source stay unallocated in the
# qcow2 file, a zeroed range becomes zero in it, and a DEST of another
# size is refused.
. "$srcdir/functions-backup.sh"
requires qemu-img qemu-nbd
set -e
set -x

backup_disk $((32 * 1024 * 1024)) 1M:3:4
start_nbdsnapd --device "disk0:$dir/disk0.img"

qcow=$dir/backup.qcow2
dsock=$dir/dest.sock
dest="nbd+unix:///?socket=$dsock"
statef=$dir/backup.json
qemu-img create -q -f qcow2 "$qcow" $size
start_qemu_nbd ()
{
  start_server "$dsock" "" "$dir/qemu-nbd.log" \
    qemu-nbd -f qcow2 -t -e 8 -k "$dsock" "$qcow"
}
# DEST, read back through qemu-nbd, equals the reference.
check ()
{
  rm -f "$dir/readback.img"
  nbdcopy "$dest" "$dir/readback.img"
  cmp "$dir/ref.img" "$dir/readback.img"
}

start_qemu_nbd
take
ctl --json backup --incremental --state "$statef" "$src" "$dest" \
    > "$dir/out.json" 2> "$dir/err"
grep -q "no state file $statef: making a full backup" "$dir/err"
[ "$(jv mode "$dir/out.json")" = full ]
[ "$(jv complete "$statef")" = true ]
check

for round in 1 2 3; do
  ctl snapshot destroy "$id"
  qemu-io -f raw -c "write -P $round $((round * 3))M 100k" \
          -c "write -z 4M 64k" "$(uri disk0)" > /dev/null
  take
  ctl --json backup --incremental --state "$statef" "$src" "$dest" \
      > "$dir/out.json"
  [ "$(jv mode "$dir/out.json")" = incremental ]
  # 2 blocks at 3M, 6M or 9M; the zeroed block (only in round 1 is it
  # new, but a write-zeroes marks it every time).
  [ "$(jv blocks "$dir/out.json")" = 3 ]
  check
done
ctl snapshot destroy "$id"

stop_server
qemu-img check -q "$qcow"
# The holes of the source are not allocated in the qcow2 file, the
# zeroed block at 4M reads as zero without data, the data is there.
qemu-img map --output=json "$qcow" > "$dir/map.json"
alloc=$(sed -n 's/.*"length": \([0-9]*\).*"data": true.*/\1/p' \
        "$dir/map.json" | awk '{ n += $1 } END { print n + 0 }')
[ "$alloc" -ge $((3 * 1024 * 1024 - bs)) ]
[ "$alloc" -le $((3 * 1024 * 1024 + 3 * 2 * bs)) ]
# (qemu-io exits 1 when the pattern differs; its "read" line comes anyway)
qemu-io -f qcow2 -r -c "read -P 0 4M 64k" "$qcow" > /dev/null

# A DEST of another size is refused, and nothing is written.
qemu-img create -q -f qcow2 "$qcow" $((size + bs))
start_qemu_nbd
take
cp "$statef" "$dir/before.json"
st=0
ctl backup --state "$statef" "$src" "$dest" 2> "$dir/err" || st=$?
[ $st = 1 ]
grep -q "^nbdsnapctl: backup: DEST $dest is $((size + bs)) bytes; the source is $size bytes: make them the same size" "$dir/err"
cmp "$dir/before.json" "$statef"
st=0
ctl backup --incremental --state "$statef" "$src" "$dest" 2> "$dir/err" ||
  st=$?
[ $st = 1 ]
cmp "$dir/before.json" "$statef"
ctl snapshot destroy "$id"
stop_server
stop_nbdsnapd
