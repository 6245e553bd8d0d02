#!/bin/sh
# snapshot-ttl (nbdsnapd.conf): a snapshot held longer than its time to
# live is destroyed, with a destroyed event (reason ttl; in wait-event
# and as the SnapshotDestroyed D-Bus signal); its image
# export goes, its device and the original's data are untouched.
# No timing is asserted: a long TTL for the checks on a live snapshot,
# then a short one whose expiry is waited for.
. "$srcdir/functions-daemon.sh"
requires qemu-io nbdcopy
set -e
set -x

truncate -s 8M "$dir/disk0.img"

# A long TTL: the expiry is shown and the snapshot works meanwhile.
cat > "$dir/nbdsnapd.conf" <<EOF
[nbdsnapd]
# Snapshots live 10 minutes.
snapshot-ttl=600
EOF
start_nbdsnapd --config "$dir/nbdsnapd.conf" --device "disk0:$dir/disk0.img"
qemu-io -f raw -c 'write -P 0x41 0 1M' "$(uri disk0)"
id=$(ctl snapshot create --device disk0 --take)
qemu-io -f raw -c 'write -P 0x42 0 64k' "$(uri disk0)"
ctl --json snapshot info "$id" > "$dir/info.json"
created=$(sed -n 's/.*"created": \([0-9]*\).*/\1/p' "$dir/info.json")
expires=$(sed -n 's/.*"expires": \([0-9]*\).*/\1/p' "$dir/info.json")
test $((expires - created)) -eq 600000000
ctl snapshot list | grep -E "^$id  *taken .* [0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8}"
nbdcopy "$(uri "disk0@$id")" "$dir/img"
test "$(head -c 1M "$dir/img" | tr -d A | wc -c)" -eq 0
stop_nbdsnapd
grep "snapshot $id destroyed at shutdown" "$dir/nbdsnapd.log"

# A short TTL: the destroyed event comes, whenever the snapshot expires
# (an event that comes before wait-event asks is kept for it).
cat > "$dir/nbdsnapd.conf" <<EOF
[nbdsnapd]
snapshot-ttl=1.5
EOF
start_nbdsnapd --config "$dir/nbdsnapd.conf" --device "disk0:$dir/disk0.img"
start_monitor
id=$(ctl snapshot create --device disk0 --take)
qemu-io -f raw -c 'write -P 0x43 64k 64k' "$(uri disk0)"
ctl snapshot wait-event "$id" --timeout 60000 > "$dir/event"
grep -E "^destroyed $id( used=[0-9]+ limit=[0-9]+)? reason=ttl$" "$dir/event"
# The D-Bus signal too.
wait_signal "^SnapshotDestroyed ('$id', 'ttl')$"
grep "snapshot $id was held longer than its time to live (1.5 s): destroying it" \
  "$dir/nbdsnapd.log"
ctl --json snapshot list | grep '"snapshots": \[\]'
st=0
ctl snapshot info "$id" 2>"$dir/err" || st=$?
test $st -eq 1
grep "^nbdsnapctl: .*$id" "$dir/err"
st=0
qemu-io -r -f raw -c 'read 0 64k' "$(uri "disk0@$id")" || st=$?
test $st -ne 0

# The original is intact and free for a new snapshot (which expires too).
nbdcopy "$(uri disk0)" "$dir/orig"
test "$(head -c 64k "$dir/orig" | tr -d B | wc -c)" -eq 0
test "$(dd if="$dir/orig" bs=64k skip=1 count=1 | tr -d C | wc -c)" -eq 0
test "$(dd if="$dir/orig" bs=64k skip=2 count=14 | tr -d A | wc -c)" -eq 0
id2=$(ctl snapshot create --device disk0)
ctl snapshot wait-event "$id2" --timeout 60000 > "$dir/event"
grep -E "^destroyed $id2( used=[0-9]+ limit=[0-9]+)? reason=ttl$" "$dir/event"
ctl --json device list | grep '"snapshot": ""'

stop_nbdsnapd
