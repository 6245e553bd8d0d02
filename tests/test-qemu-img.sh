#!/usr/bin/env bash
# QEMU tools on image exports: qemu-img convert to raw and to qcow2
# while qemu-io hammers the original, qemu-img compare against a copy
# made at the take, qemu-img map/info on the exports.
source ${srcdir:-.}/functions.sh
set -e
set -x
requires qemu-img qemu-io

random_file $dir/disk.img $((64 << 20))
# Some zero areas too.
qemu-io -f raw -c 'write -z 8M 8M' -c 'write -z 40M 1M' $dir/disk.img
start_nbdsnap device=disk0:$dir/disk.img
# The reference: the device as it is now, read through the original
# export (quiet: no writers yet).
qemu-img convert -f raw -O raw "$(uri disk0)" $dir/ref.img
id=$(testctl create --tmpfile $dir --limit 256M --device disk0 --take | kv id)
img=$(uri disk0@$id)

# Hammer the original with random writes while converting.
(
  set +x
  i=0
  while [ ! -e $dir/stop ]; do
    args=()
    for k in $(seq 20); do
      off=$(( (RANDOM * 32768 + RANDOM) % (64 << 20) ))
      len=$(( 1 + RANDOM % 131072 ))
      [ $((off + len)) -le $((64 << 20)) ] || len=$(( (64 << 20) - off ))
      args+=(-c "write -P $((i % 250 + 1)) $off $len")
      i=$((i + 1))
    done
    qemu-io -f raw "${args[@]}" "$(uri disk0)"
  done > $dir/hammer.log
) &
hammer=$!
cleanup_fn touch $dir/stop

qemu-img convert -f raw -O raw "$img" $dir/backup.raw
qemu-img convert -f raw -O qcow2 "$img" $dir/backup.qcow2
touch $dir/stop
wait $hammer
grep -c '^wrote' $dir/hammer.log
[ "$(grep -c '^wrote' $dir/hammer.log)" -gt 10 ]

qemu-img compare -f raw -F raw $dir/backup.raw $dir/ref.img
qemu-img compare -f qcow2 -F raw $dir/backup.qcow2 $dir/ref.img
qemu-img compare -f raw -F raw "$img" $dir/ref.img
# ...and the original really did change.
fails qemu-img compare -q -f raw -F raw "$(uri disk0)" $dir/ref.img

qemu-img info -f raw "$img" | grep -q 'virtual size: 64 MiB'
qemu-img map -f raw --output=json "$(uri disk0)" > $dir/map.json
grep -q '"data": true' $dir/map.json
testctl info $id | grep -x 'state=taken'
testctl destroy $id
