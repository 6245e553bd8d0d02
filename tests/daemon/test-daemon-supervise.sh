#!/bin/sh
# nbdkit killed with SIGKILL: nbdsnapd restarts it at once, the
# originals are served again with every block intact, and the snapshot
# that died with nbdkit is reported lost (wait-event, the SnapshotLost
# and DataPlaneRestarted D-Bus signals on a private system bus,
# snapshot list, snapshot info) and can only be forgotten.  The restart time is in the
# daemon's log (measured, never asserted on).
. "$srcdir/functions-daemon.sh"
requires nbdcopy qemu-io split sha256sum dbus-daemon gdbus
set -e
set -x

bs=65536
# One checksum per 64 KiB block: "BLOCK SUM" lines.
block_sums ()
{
  split -b $bs --filter='sha256sum' "$1" | awk '{ print NR - 1, $1 }'
}

# A private system bus, for the signals (nbdsnapd --system-bus; GIO
# finds it through DBUS_SYSTEM_BUS_ADDRESS).
cat > "$dir/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$dir/bus.sock</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
EOF
dbus-daemon --config-file="$dir/bus.conf" --nofork 2>"$dir/bus.log" &
bus_pid=$!
cleanup_fn kill "$bus_pid"
export DBUS_SYSTEM_BUS_ADDRESS="unix:path=$dir/bus.sock"
for i in $(seq 300); do
  [ -S "$dir/bus.sock" ] && break
  sleep 0.05
done

random_file "$dir/ref0" 16M
random_file "$dir/ref1" 8M
truncate -s 16M "$dir/disk0.img"
truncate -s 8M "$dir/disk1.img"
start_nbdsnapd --device "disk0:$dir/disk0.img" --device "disk1:$dir/disk1.img" \
  --system-bus
pid1=$(cat "$dir/state/nbdkit.pid")
# The signals.  gdbus monitor has subscribed once it reports the owner.
gdbus monitor --system --dest org.nbdsnap.Manager1 > "$dir/signals" 2>&1 &
monitor_pid=$!
cleanup_fn kill "$monitor_pid"
for i in $(seq 600); do
  grep -q 'org.nbdsnap.Manager1 is owned by' "$dir/signals" && break
  sleep 0.05
done
grep 'org.nbdsnap.Manager1 is owned by' "$dir/signals"

# Known data, written through the original exports.
nbdcopy "$dir/ref0" "$(uri disk0)"
nbdcopy "$dir/ref1" "$(uri disk1)"

# A taken snapshot, and writes after the take (copy-on-write): the
# originals now hold ref* with these patterns on top.
id=$(ctl snapshot create --device disk0 --device disk1 --take)
qemu-io -f raw -c 'write -P 0xa5 4M 1M' -c 'write -P 0x3c 15M 64k' \
  "$(uri disk0)"
qemu-io -f raw -c 'write -P 0x5a 100k 200k' "$(uri disk1)"
pattern ()
{
  head -c "$2" /dev/zero | tr '\0' "\\$1"
}
pattern 245 1M | dd of="$dir/ref0" bs=1k seek=4096 conv=notrunc
pattern 074 64k | dd of="$dir/ref0" bs=1k seek=15360 conv=notrunc
pattern 132 200k | dd of="$dir/ref1" bs=1k seek=100 conv=notrunc
ctl snapshot list | grep "^$id  *taken "

kill -9 "$pid1"

# The lost event is queued on the snapshot.
ctl snapshot wait-event "$id" --timeout 20000 > "$dir/event"
grep -x "lost $id reason=data-plane" "$dir/event"
# The signals: SnapshotLost, then DataPlaneRestarted with the new pid and
# the lost snapshots.
for i in $(seq 600); do
  grep -q 'DataPlaneRestarted' "$dir/signals" && break
  sleep 0.05
done
cat "$dir/signals"
grep -x "/org/nbdsnap/Manager1: org.nbdsnap.Manager1.SnapshotLost ('$id',)" \
  "$dir/signals"
grep -E "^/org/nbdsnap/Manager1: org.nbdsnap.Manager1.DataPlaneRestarted \\([0-9]+, \\['$id'\\]\\)$" \
  "$dir/signals"

# nbdkit is back under a new pid (the pid file is rewritten by nbdkit).
for i in $(seq 300); do
  pid2=$(cat "$dir/state/nbdkit.pid" 2>/dev/null) || pid2=
  [ -n "$pid2" ] && [ "$pid2" != "$pid1" ] && break
  sleep 0.05
done
test -n "$pid2"
test "$pid2" != "$pid1"
kill -0 "$pid2"
grep "DataPlaneRestarted ($pid2, \\['$id'\\])" "$dir/signals"
ctl --json version > "$dir/version.json"
grep '"restarts": 1' "$dir/version.json"
grep "\"nbdkit_pid\": $pid2" "$dir/version.json"

# Every block of every original is what was written before the kill.
nbdcopy "$(uri disk0)" "$dir/out0"
nbdcopy "$(uri disk1)" "$dir/out1"
block_sums "$dir/ref0" > "$dir/ref0.sums"
block_sums "$dir/out0" > "$dir/out0.sums"
block_sums "$dir/ref1" > "$dir/ref1.sums"
block_sums "$dir/out1" > "$dir/out1.sums"
test "$(wc -l < "$dir/ref0.sums")" -eq 256
test "$(wc -l < "$dir/ref1.sums")" -eq 128
diff "$dir/ref0.sums" "$dir/out0.sums"
diff "$dir/ref1.sums" "$dir/out1.sums"
# And the files behind them.
cmp "$dir/ref0" "$dir/disk0.img"
cmp "$dir/ref1" "$dir/disk1.img"

# The lost snapshot is listed as lost, its image export is gone.
ctl snapshot list > "$dir/list"
grep "^$id  *lost  *disk0,disk1 " "$dir/list"
ctl --json snapshot list > "$dir/list.json"
grep '"state": "lost"' "$dir/list.json"
ctl --json snapshot info "$id" > "$dir/info.json"
grep '"state": "lost"' "$dir/info.json"
st=0
qemu-io -r -f raw -c 'read 0 64k' "$(uri "disk0@$id")" 2>"$dir/err" || st=$?
test $st -ne 0
# It cannot be taken again; its devices are free for a new snapshot.
st=0
ctl snapshot take "$id" 2>"$dir/err" || st=$?
test $st -eq 1
grep "snapshot $id was lost" "$dir/err"
ctl device list | grep '^disk0 '
id2=$(ctl snapshot create --device disk0 --take)
qemu-io -f raw -c 'write -P 0x11 0 64k' "$(uri disk0)"
nbdcopy "$(uri "disk0@$id2")" "$dir/img0"
cmp "$dir/ref0" "$dir/img0"
ctl snapshot destroy "$id2"

# Destroying the lost snapshot forgets it.
ctl snapshot destroy "$id"
ctl --json snapshot list > "$dir/list.json"
if grep "$id" "$dir/list.json"; then exit 1; fi

# The restart was measured and logged.
grep 'data plane restarted: originals served again .* ms after nbdkit died' \
  "$dir/nbdsnapd.log"

stop_nbdsnapd
