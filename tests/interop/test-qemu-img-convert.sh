#!/usr/bin/env bash
# qemu-img on an image export of nbdsnapd while qemu-io hammers the
# original: convert to raw and to qcow2, compare the export and both
# conversions against a reference copy of the device made right before
# the take (no writes run then); the original did change meanwhile.
. "$srcdir/functions-interop.sh"
requires qemu-img qemu-io cmp
set -e
set -x

size=$((64 * 1024 * 1024))
head -c $size /dev/urandom > "$dir/disk0.img"
# Zeroed areas too (holes in the qcow2 conversion).
qemu-io -f raw -c 'write -z 8M 8M' -c 'write -z 40M 1M' "$dir/disk0.img"
# The reference: the device before anything is served or written.
cp "$dir/disk0.img" "$dir/ref.img"
start_nbdsnapd --device "disk0:$dir/disk0.img"

id=$(ctl snapshot create --device disk0 --take)
img=$(uri "disk0@$id")

# Random writes on the original until told to stop; each qemu-io run
# must succeed (a failed write to the original fails the test).
(
  set +x
  i=0
  while [ ! -e "$dir/stop" ]; do
    args=()
    for k in $(seq 20); do
      off=$(( (RANDOM * 32768 + RANDOM) % size ))
      len=$(( 1 + RANDOM % 131072 ))
      [ $((off + len)) -le $size ] || len=$((size - off))
      args+=(-c "write -P $((i % 250 + 1)) $off $len")
      i=$((i + 1))
    done
    if ! qemu-io -f raw "${args[@]}" "$(uri disk0)" > "$dir/hammer.out" 2>&1 ||
       grep -q 'failed\|error' "$dir/hammer.out"; then
      cat "$dir/hammer.out"
      exit 1
    fi
    echo $i > "$dir/hammer.count.new"
    mv "$dir/hammer.count.new" "$dir/hammer.count"
  done
) &
hammer=$!
cleanup_fn touch "$dir/stop"
# The writes are under way before the reads start.
for i in $(seq 300); do
  [ -e "$dir/hammer.count" ] && break
  kill -0 $hammer
  sleep 0.1
done
before=$(cat "$dir/hammer.count")

qemu-img convert -p -f raw -O raw "$img" "$dir/backup.raw" < /dev/null
qemu-img convert -f raw -O qcow2 "$img" "$dir/backup.qcow2"
qemu-img compare -f raw -F raw "$dir/ref.img" "$img"
cmp "$dir/ref.img" "$dir/backup.raw"
qemu-img compare -f raw -F qcow2 "$dir/ref.img" "$dir/backup.qcow2"
qemu-img check -q "$dir/backup.qcow2"
# The zeroed 8M area stayed unallocated in the qcow2 file.
qemu-img map --output=json -f qcow2 "$dir/backup.qcow2" |
  grep '"start": 8388608, "length": 8388608,.*"data": false'
# ... and went on while they ran.
during=$(cat "$dir/hammer.count")
[ "$during" -gt "$before" ]

touch "$dir/stop"
wait $hammer
writes=$(cat "$dir/hammer.count")
[ "$writes" -ge 20 ]
# The original did change: qemu-img compare exits 1 on a difference.
st=0
qemu-img compare -q -f raw -F raw "$dir/ref.img" "$(uri disk0)" || st=$?
[ $st -eq 1 ]
# And the image still reads the take, after all those writes.
qemu-img compare -f raw -F raw "$dir/ref.img" "$img"
echo "$0: $writes writes on the original, $((during - before)) of them during the conversions"

ctl snapshot destroy "$id"
stop_nbdsnapd
