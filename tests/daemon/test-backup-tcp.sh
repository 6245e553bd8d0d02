#!/usr/bin/env bash
# nbdsnapctl backup over TCP: a full backup, then incremental backups
# with random writes, write-zeroes and trims in between.  After each,
# the backup equals the image as read right after the take, block for
# block, and an incremental backup copied exactly the blocks written
# since the previous snapshot (the --json summary).  A backup damaged
# after a good run: --incremental --verify fails and removes the state
# file, and the next incremental run is a full copy that repairs it.
. "$srcdir/functions-backup.sh"
set -e
set -x

# Some data, some holes.
backup_disk $((64 * 1024 * 1024)) 1M:6:3 64k:5:700
# nbdsnapd with a TCP listener on a free port.
start_nbdsnapd_tcp --device "disk0:$dir/disk0.img"

# Random writes, write-zeroes and trims on the original; the blocks they
# touch are added to $dir/touched.
random_writes ()
{
  local args=() i off len op
  for i in $(seq "$1"); do
    off=$(( (RANDOM * 32768 + RANDOM) % (size - 300000) ))
    len=$(( RANDOM % 300000 + 1 ))
    case $((i % 4)) in
      0) op="write -z $off $len" ;;
      1) op="discard $((off / 512 * 512)) $(((len + 511) / 512 * 512))"
         len=$(((len + 511) / 512 * 512))
         off=$((off / 512 * 512)) ;;
      *) op="write -P $((RANDOM % 255 + 1)) $off $len" ;;
    esac
    args+=(-c "$op")
    seq $((off / bs)) $(((off + len - 1) / bs)) >> "$dir/touched"
  done
  qemu-io -f raw "${args[@]}" "$(uri disk0)" > /dev/null
}
snapshot_uri () { echo "nbd://127.0.0.1:$port/disk0@$1"; }

take
number=$(changes_number)
# --incremental without a state file: a full backup, and why.
ctl --json backup --incremental "$src" "$backup" > "$dir/out.json" \
    2> "$dir/err"
grep -q "backup: no state file $backup.nbdsnap.json: making a full backup" \
     "$dir/err"
[ "$(jv mode "$dir/out.json")" = full ]
[ "$(jv blocks "$dir/out.json")" = $((size / bs)) ]
[ "$(jv connections "$dir/out.json")" = 4 ]
[ "$(jv changes_number "$dir/out.json")" = "$number" ]
same_blocks "$dir/ref.img" "$backup"
# The state file.
[ "$(jv complete "$state")" = true ]
[ "$(jv snapshot_id "$state")" = "$id" ]
[ "$(jv changes_number "$state")" = "$number" ]
[ "$(jv size "$state")" = $size ]
[ "$(jv generation "$state")" = "$(jv generation "$dir/out.json")" ]

for round in 1 2 3 4; do
  ctl snapshot destroy "$id"
  : > "$dir/touched"
  random_writes $((round * 3 + 2))
  prev=$number
  take
  number=$(changes_number)
  # Writes after the take are not in this backup.
  qemu-io -f raw -c "write -P 0xee 0 1M" "$(uri disk0)" > /dev/null
  seq 0 15 > "$dir/touched.next"
  verify=
  [ $round = 3 ] && verify=--verify
  ctl --json backup --incremental $verify --connections $round \
      "$src" "$backup" > "$dir/out.json"
  [ "$(jv mode "$dir/out.json")" = incremental ]
  [ "$(jv reason "$dir/out.json")" = null ]
  [ "$(jv base_changes_number "$dir/out.json")" = "$prev" ]
  [ "$(jv connections "$dir/out.json")" = $round ]
  # Exactly the blocks written since the previous snapshot (those of the
  # write after the previous take, and the random ones).
  expect=$(cat "$dir/touched" "$dir/touched.last" 2>/dev/null | sort -un |
           wc -l)
  [ "$(jv blocks "$dir/out.json")" = "$expect" ]
  # The CBT agrees.
  ctl cbt changed disk0 --since "$prev" --snapshot "$id" > "$dir/changed"
  [ "$(awk -v bs=$bs '{ n += $2 / bs } END { print n + 0 }' \
       "$dir/changed")" = "$expect" ]
  same_blocks "$dir/ref.img" "$backup"
  [ "$(jv changes_number "$state")" = "$number" ]
  [ "$(jv snapshot_id "$state")" = "$id" ]
  mv "$dir/touched.next" "$dir/touched.last"
done

# The same snapshot again: nothing to copy, still equal.
ctl --json backup --incremental "$src" "$backup" > "$dir/out.json"
[ "$(jv mode "$dir/out.json")" = incremental ]
[ "$(jv blocks "$dir/out.json")" = 0 ]
same_blocks "$dir/ref.img" "$backup"

# Without --incremental: a full copy, human output on one line.
ctl backup "$src" "$backup" > "$dir/out.txt"
[ "$(wc -l < "$dir/out.txt")" = 1 ]
grep -q "^full backup of disk0@$id: $((size / bs)) of $((size / bs)) blocks" \
     "$dir/out.txt"
same_blocks "$dir/ref.img" "$backup"

# DEST damaged after a good backup, in a block not changed since: an
# incremental --verify run finds it, fails and removes the state file,
# so the next incremental run cannot resume from the old base (which
# would copy only the changed blocks and keep the damage) but falls
# back to a full copy.
ctl snapshot destroy "$id"
qemu-io -f raw -c "write -P 0x5a $((40 * bs)) $bs" "$(uri disk0)" > /dev/null
take
printf 'XXXX' | dd of="$backup" bs=1 seek=$((8 * 1024 * 1024)) conv=notrunc \
                   status=none
! cmp -s "$dir/ref.img" "$backup"
rc=0
ctl backup --incremental --verify "$src" "$backup" > "$dir/out.txt" \
    2> "$dir/err" || rc=$?
[ $rc = 1 ]
[ ! -s "$dir/out.txt" ]
grep -q "backup: verify: 1 units of DEST $backup differ from the source, the first at offset $((8 * 1024 * 1024)); the state file $state is removed (the next backup is a full one)$" \
     "$dir/err"
[ ! -e "$state" ]
ctl --json backup --incremental "$src" "$backup" > "$dir/out.json" \
    2> "$dir/err"
grep -q "backup: no state file $state: making a full backup" "$dir/err"
! grep -q resuming "$dir/err"
[ "$(jv mode "$dir/out.json")" = full ]
[ "$(jv blocks "$dir/out.json")" = $((size / bs)) ]
same_blocks "$dir/ref.img" "$backup"
[ "$(jv complete "$state")" = true ]
[ "$(jv snapshot_id "$state")" = "$id" ]

ctl snapshot destroy "$id"
stop_nbdsnapd
