#!/bin/sh
# cbt info (the --json key set of DESIGN §4), cbt changed exact ranges
# after known writes (active map, and --snapshot frozen maps), cbt map
# --output (and --snapshot), cbt mark-dirty, and their errors.
. "$srcdir/functions-daemon.sh"
requires qemu-io jq od
set -e
set -x

truncate -s 16M "$dir/disk0.img"
start_nbdsnapd --device "disk0:$dir/disk0.img"

ctl --json cbt info disk0 > "$dir/info"
test "$(jq -c '[keys[]] | sort' "$dir/info")" = \
  '["block_count","block_size","changes_number","device","frozen","frozen_generation","frozen_number","generation","size"]'
test "$(jq -r '.size, .block_size, .block_count, .changes_number' "$dir/info" | tr '\n' ' ')" = \
  '16777216 65536 256 1 '
gen=$(jq -r .generation "$dir/info")
ctl cbt info disk0 | grep -x "Block size:      64.0 KiB (65536 bytes)"
ctl cbt info disk0 | grep -x "Generation:      $gen"

# Known writes in epoch 1: block 0, blocks 16-17, the last block.
qemu-io -f raw -c 'write -P 1 0 4k' -c 'write -P 2 1048570 100k' \
  -c 'write -P 3 16777215 1' "$(uri disk0)"
ctl cbt changed disk0 --since 0 > "$dir/changed"
printf '0 65536\n983040 196608\n16711680 65536\n' | cmp - "$dir/changed"
ctl cbt changed disk0 --since 1 | cmp - /dev/null

s1=$(ctl snapshot create --device disk0 --take)
# Epoch 2: block 5, and mark-dirty of block 100.
qemu-io -f raw -c 'write -P 4 327680 65536' "$(uri disk0)"
ctl cbt mark-dirty disk0 6553600:1 | grep -x 'marked 1 range of disk0 as changed'
ctl snapshot destroy "$s1"
s2=$(ctl snapshot create --device disk0 --take)
ctl cbt changed disk0 --since 1 --snapshot "$s2" > "$dir/changed"
printf '327680 65536\n6553600 65536\n' | cmp - "$dir/changed"
ctl cbt changed disk0 --since 0 --snapshot "$s2" > "$dir/changed"
printf '0 65536\n327680 65536\n983040 196608\n6553600 65536\n16711680 65536\n' | cmp - "$dir/changed"
ctl --json cbt changed disk0 --since 1 --snapshot "$s2" > "$dir/cj"
test "$(jq -c '.ranges' "$dir/cj")" = \
  '[{"offset":327680,"length":65536},{"offset":6553600,"length":65536}]'
test "$(jq -r '.snapshot' "$dir/cj")" = "$s2"

# The frozen map of s2: bytes 1 (blocks 0, 15-17, 255), 2 (5, 100).
ctl cbt map disk0 --snapshot "$s2" --output "$dir/map" | grep "256 blocks of 64.0 KiB"
test "$(stat -c %s "$dir/map")" -eq 256
od -An -tu1 -v -w1 "$dir/map" | awk '$1 != 0 { print NR - 1, $1 }' > "$dir/bytes"
printf '0 1\n5 2\n15 1\n16 1\n17 1\n100 2\n255 1\n' | cmp - "$dir/bytes"
ctl --json cbt map disk0 --output "$dir/amap" > "$dir/mj"
test "$(jq -r '.map, .changes_number, .output' "$dir/mj" | tr '\n' ' ')" = \
  "active 3 $dir/amap "
test "$(ctl --json cbt info disk0 | jq -r '.changes_number, .frozen_number' | tr '\n' ' ')" = '3 2 '

# Errors: exit 1, one message, nothing marked.
cp "$dir/amap" "$dir/amap.before"
for bad in "cbt info nosuch" "cbt mark-dirty disk0 16M:1" \
           "cbt mark-dirty disk0 0:1 16M:1" "cbt mark-dirty nosuch 0:1" \
           "cbt changed disk0 --since 0 --snapshot 11111111-2222-3333-4444-555555555555" \
           "cbt map disk0 --snapshot 11111111-2222-3333-4444-555555555555 --output $dir/m2"; do
  st=0
  ctl $bad 2>"$dir/err" >"$dir/out" || st=$?
  test $st -eq 1
  test "$(grep -c '^nbdsnapctl: ' "$dir/err")" -eq 1
done
test ! -e "$dir/m2"
ctl cbt map disk0 --output "$dir/amap"
cmp "$dir/amap.before" "$dir/amap"
ctl snapshot destroy "$s2"
stop_nbdsnapd
