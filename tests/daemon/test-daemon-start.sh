#!/bin/sh
# nbdsnapd starts, serves its device to NBD clients and nbdsnapctl,
# and stops cleanly on SIGTERM.
. "$srcdir/functions-daemon.sh"
requires qemu-io qemu-img
set -e
set -x

truncate -s 16M "$dir/disk0.img"
start_nbdsnapd --device "disk0:$dir/disk0.img"

ctl version | grep '^nbdsnapd '
ctl device list | grep "^disk0 .*$dir/disk0.img"
ctl --json device list > "$dir/devices.json"
grep '"name": *"disk0"' "$dir/devices.json"

# A write through the original export reaches the file.
qemu-io -f raw -c 'write -P 0x5a 0 1M' "$(uri disk0)"
head -c 1M "$dir/disk0.img" | od -An -tx1 | sort -u | grep -qx ' 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a'

stop_nbdsnapd
# The API socket is gone with the daemon.
st=0
ctl version 2>"$dir/err" || st=$?
test $st -eq 1
grep -q '^nbdsnapctl: cannot connect .*is nbdsnapd running' "$dir/err"
