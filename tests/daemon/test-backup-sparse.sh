#!/usr/bin/env bash
# Holes stay holes.  A full backup to a new raw file allocates only the
# data of the source (checked with SEEK_DATA/SEEK_HOLE through qemu-img
# map, and with the allocated size); runs of zeroes become holes too.
# An incremental backup punches holes where the source was zeroed or
# trimmed.  A full backup over an old, fully allocated file leaves it
# as sparse as a new one.
. "$srcdir/functions-backup.sh"
requires qemu-img script
set -e
set -x

M=$((1024 * 1024))
# Data at [2M, 5M) and [40M, 41M); allocated zeroes at [20M, 22M).
backup_disk $((64 * M)) 1M:3:2 1M:1:40
dd if=/dev/zero of="$dir/disk0.img" bs=1M count=2 seek=20 conv=notrunc \
   status=none
start_nbdsnapd --device "disk0:$dir/disk0.img"

# The data extents of a raw file (SEEK_DATA/SEEK_HOLE), "START LENGTH".
data_extents ()
{
  qemu-img map --output=json -f raw "$1" |
    sed -n 's/.*"start": \([0-9]*\), "length": \([0-9]*\).*"data": true.*/\1 \2/p'
}
allocated () { echo $(($(stat -c %b "$1") * 512)); }

take
ctl --json backup "$src" "$backup" > "$dir/out.json"
cmp "$dir/ref.img" "$backup"
[ "$(jv bytes_written "$dir/out.json")" = $((4 * M)) ]
[ "$(jv bytes_zeroed "$dir/out.json")" = $((size - 4 * M)) ]
data_extents "$backup" > "$dir/extents"
printf '%s\n' "$((2 * M)) $((3 * M))" "$((40 * M)) $M" | diff - "$dir/extents"
[ "$(allocated "$backup")" -le $((4 * M + 2 * bs)) ]

# Zero a data range and trim another on the original: the incremental
# backup punches holes there.
ctl snapshot destroy "$id"
qemu-io -f raw -c "write -z $((3 * M)) $M" -c "discard $((40 * M)) $M" \
        -c "write -P 0x11 $((50 * M)) $bs" "$(uri disk0)" > /dev/null
take
ctl --json backup --incremental "$src" "$backup" > "$dir/out.json"
[ "$(jv mode "$dir/out.json")" = incremental ]
[ "$(jv blocks "$dir/out.json")" = 33 ]
cmp "$dir/ref.img" "$backup"
data_extents "$backup" > "$dir/extents"
printf '%s\n' "$((2 * M)) $M" "$((4 * M)) $M" "$((50 * M)) $bs" |
  diff - "$dir/extents"

# A full backup over a fully allocated file of junk: as sparse as new.
head -c $size /dev/urandom > "$backup"
ctl backup "$src" "$backup" > /dev/null
cmp "$dir/ref.img" "$backup"
data_extents "$backup" > "$dir/extents2"
diff "$dir/extents" "$dir/extents2"
[ "$(allocated "$backup")" -le $((2 * M + 2 * bs)) ]

# Output: on a terminal a progress bar on stderr; otherwise stderr
# stays empty and stdout has the summary line only.
"$NBDSNAPCTL" backup --verify "$src" "$dir/quiet.img" > "$dir/out" 2> "$dir/err"
[ ! -s "$dir/err" ]
[ "$(wc -l < "$dir/out")" = 1 ]
grep -q "^full backup of disk0@$id: 1024 of 1024 blocks, 2.1 MiB written, 61.9 MiB holes, in [0-9.]* s, verified$" "$dir/out"
script -qec "$NBDSNAPCTL backup --verify $src $dir/tty.img" /dev/null \
       > "$dir/tty.out"
grep -q 'copy   \[#*  *\] *[0-9]*%' "$dir/tty.out"
grep -q 'copy   \[#\{30\}\] 100%' "$dir/tty.out"
grep -q 'verify \[#\{30\}\] 100%' "$dir/tty.out"
grep -q "full backup of disk0@$id: 1024 of 1024 blocks" "$dir/tty.out"
cmp "$dir/ref.img" "$dir/tty.img"

ctl snapshot destroy "$id"
stop_nbdsnapd
