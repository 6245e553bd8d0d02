#!/bin/sh
# Events through D-Bus signals on the API socket (dbus-peer, a
# peer-to-peer client) and through snapshot wait-event: an overflow of
# the diff storage (Corrupted, ENOSPC; the original keeps every byte),
# a destroy (SnapshotDestroyed, reason request) and the destroy at
# shutdown (reason shutdown, before the daemon closes the connection).
. "$srcdir/functions-daemon.sh"
requires qemu-io nbdcopy
set -e
set -x

random_file "$dir/ref0" 8M
truncate -s 8M "$dir/disk0.img"
start_nbdsnapd --device "disk0:$dir/disk0.img"
nbdcopy "$dir/ref0" "$(uri disk0)"

start_monitor

# No event yet: wait-event times out (exit 1, one message).
id=$(ctl snapshot create --device disk0 --limit 256K --take)
st=0
ctl snapshot wait-event "$id" --timeout 50 2>"$dir/err" || st=$?
test $st -eq 1
grep "^nbdsnapctl: no event for snapshot $id within 50 ms" "$dir/err"

# 4 MiB of new data over 256 KiB of diff storage: corrupted.
qemu-io -f raw -c 'write -P 0x11 0 4M' "$(uri disk0)"
wait_signal "^Corrupted ('$id', 'disk0', 'ENOSPC')$"
# wait-event: the events in order, low-space (used, limit) first.
ctl snapshot wait-event "$id" --timeout 60000 > "$dir/ev"
grep -x "low-space $id used=262144 limit=262144" "$dir/ev"
grep "^LowSpace ('$id', 262144, 262144)$" "$dir/signals"
ctl snapshot wait-event "$id" --timeout 60000 > "$dir/ev"
grep "^corrupted $id device=disk0 error=ENOSPC" "$dir/ev"
ctl --json snapshot info "$id" > "$dir/info"
grep '"state": "corrupted"' "$dir/info"
grep '"error": "ENOSPC"' "$dir/info"
# The original holds every byte written.
head -c 4M /dev/zero | tr '\0' '\021' | dd of="$dir/ref0" conv=notrunc
nbdcopy "$(uri disk0)" "$dir/now"
cmp "$dir/ref0" "$dir/now"

ctl snapshot destroy "$id"
wait_signal "^SnapshotDestroyed ('$id', 'request')$"
ctl --json snapshot wait-event "$id" --timeout 60000 > "$dir/ev"
grep '"event": "destroyed"' "$dir/ev"
grep '"reason": "request"' "$dir/ev"

# Shutdown destroys the snapshots, then closes the connection.
id2=$(ctl snapshot create --device disk0)
stop_nbdsnapd
wait_signal '^closed$'
grep -n . "$dir/signals" > "$dir/numbered"
d=$(grep "SnapshotDestroyed ('$id2', 'shutdown')" "$dir/numbered" | cut -d: -f1)
c=$(grep ':closed$' "$dir/numbered" | cut -d: -f1)
test "$d" -lt "$c"
