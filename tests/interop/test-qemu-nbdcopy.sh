#!/usr/bin/env bash
# nbdcopy with four connections from an image export of nbdsnapd (which
# advertises multi-conn) while the original is rewritten: to a raw file,
# and into a qcow2 backup target served by qemu-nbd; both equal the
# device as it was at the take (known in advance: the file before the
# daemon started), checked with cmp and qemu-img compare.
. "$srcdir/functions-interop.sh"
requires nbdcopy nbdinfo qemu-img qemu-io qemu-nbd cmp
set -e
set -x

size=$((48 * 1024 * 1024))
head -c $size /dev/urandom > "$dir/disk0.img"
qemu-io -f raw -c 'write -z 16M 4M' "$dir/disk0.img"
cp "$dir/disk0.img" "$dir/ref.img"
start_nbdsnapd --device "disk0:$dir/disk0.img"

id=$(ctl snapshot create --device disk0 --take)
img=$(uri "disk0@$id")
nbdinfo "$img" > "$dir/info"
cat "$dir/info"
grep -q 'can_multi_conn: true' "$dir/info"
grep -q "export-size: $size" "$dir/info"

# Rewrite the whole original (every chunk is copied on write) in the
# background while the copies run.
nbdcopy --connections=4 -- [ nbdkit -r pattern size=$size ] "$(uri disk0)" &
writer=$!

nbdcopy --connections=4 --requests=16 "$img" "$dir/copy.raw"
cmp "$dir/ref.img" "$dir/copy.raw"

# The backup target: a qcow2 file served by qemu-nbd (8 clients).
qemu-img create -q -f qcow2 "$dir/target.qcow2" $size
tsock=$dir/target.sock
qemu-nbd -f qcow2 -e 8 -k "$tsock" "$dir/target.qcow2" 2>> "$dir/qemu-nbd.log" &
qnbd=$!
_kill_qnbd () { [ -z "$qnbd" ] || kill "$qnbd"; }
cleanup_fn _kill_qnbd
wait_until 10 test -S "$tsock"
nbdcopy --connections=4 "$img" "nbd+unix:///?socket=$tsock"
wait $writer
kill $qnbd
st=0
wait $qnbd || st=$?
qnbd=
[ $st -eq 0 ] || [ $st -eq 143 ]
qemu-img check -q "$dir/target.qcow2"
qemu-img compare -f raw -F qcow2 "$dir/ref.img" "$dir/target.qcow2"

# The original holds the new data, the image still the old.
nbdcopy -- [ nbdkit -r pattern size=$size ] "$dir/pattern.raw"
nbdcopy "$(uri disk0)" "$dir/orig-now.raw"
cmp "$dir/pattern.raw" "$dir/orig-now.raw"
rm -f "$dir/copy.raw"
nbdcopy --connections=4 "$img" "$dir/copy.raw"
cmp "$dir/ref.img" "$dir/copy.raw"

ctl snapshot destroy "$id"
stop_nbdsnapd
