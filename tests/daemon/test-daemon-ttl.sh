#!/bin/sh
# snapshot-ttl (nbdsnapd.conf): a snapshot held longer than its time to
# live is destroyed, with a destroyed event (reason ttl) and the
# SnapshotDestroyed signal; its image export goes, its device and the
# original's data are untouched.  A snapshot destroyed before its TTL
# is not touched again.
. "$srcdir/functions-daemon.sh"
requires qemu-io nbdcopy
set -e
set -x

truncate -s 8M "$dir/disk0.img"
truncate -s 8M "$dir/disk1.img"
cat > "$dir/nbdsnapd.conf" <<EOF
[nbdsnapd]
# Snapshots live 8 seconds (long enough for the checks before it expires,
# even on a loaded machine).
snapshot-ttl=8
EOF
start_nbdsnapd --config "$dir/nbdsnapd.conf" \
  --device "disk0:$dir/disk0.img" --device "disk1:$dir/disk1.img"

qemu-io -f raw -c 'write -P 0x41 0 1M' "$(uri disk0)"
id=$(ctl snapshot create --device disk0 --take)
# Another snapshot, destroyed before its time.
id1=$(ctl snapshot create --device disk1)
ctl snapshot destroy "$id1"
qemu-io -f raw -c 'write -P 0x42 0 64k' "$(uri disk0)"

# The expiry is shown.
ctl --json snapshot info "$id" > "$dir/info.json"
created=$(sed -n 's/.*"created": \([0-9]*\).*/\1/p' "$dir/info.json")
expires=$(sed -n 's/.*"expires": \([0-9]*\).*/\1/p' "$dir/info.json")
test $((expires - created)) -eq 8000000
ctl snapshot list | grep "^$id  *taken .* [0-9][0-9]:[0-9][0-9]"
# Until it expires, the image serves the point in time.
nbdcopy "$(uri "disk0@$id")" "$dir/img"
test "$(head -c 1M "$dir/img" | tr -d A | wc -c)" -eq 0

# The destroyed event comes (after 8 s; wait for up to 60).
ctl snapshot wait-event "$id" --timeout 60000 > "$dir/event"
grep -E "^destroyed $id( used=[0-9]+ limit=[0-9]+)? reason=ttl$" "$dir/event"
grep "snapshot $id was held longer than its time to live (8 s): destroying it" \
  "$dir/nbdsnapd.log"
ctl --json snapshot list | grep '"snapshots": \[\]'
st=0
ctl snapshot info "$id" 2>"$dir/err" || st=$?
test $st -eq 1
grep "^nbdsnapctl: .*$id" "$dir/err"
st=0
qemu-io -r -f raw -c 'read 0 64k' "$(uri "disk0@$id")" || st=$?
test $st -ne 0
# The early-destroyed one got no TTL destroy.
if grep "snapshot $id1 was held longer" "$dir/nbdsnapd.log"; then
  exit 1
fi

# The original is intact and free for a new snapshot.
nbdcopy "$(uri disk0)" "$dir/orig"
test "$(head -c 64k "$dir/orig" | tr -d B | wc -c)" -eq 0
test "$(dd if="$dir/orig" bs=64k skip=1 count=15 | tr -d A | wc -c)" -eq 0
id2=$(ctl snapshot create --device disk0 --take)
ctl snapshot destroy "$id2"

stop_nbdsnapd
