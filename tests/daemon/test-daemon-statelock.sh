#!/bin/sh
# A second nbdsnapd on a state directory in use is refused with one
# clear message, and the running daemon, its nbdkit and its snapshots
# are untouched.
. "$srcdir/functions-daemon.sh"
requires qemu-io nbdcopy cmp
set -e
set -x

truncate -s 8M "$dir/disk0.img"
start_nbdsnapd --device "disk0:$dir/disk0.img"
qemu-io -f raw -c 'write -P 0x11 0 1M' "$(uri disk0)"
id=$(ctl snapshot create --device disk0 --take)
nbdkit=$(cat "$dir/state/nbdkit.pid")
qemu-io -f raw -c 'write -P 0x22 0 1M' "$(uri disk0)"

st=0
"$NBDSNAPD" --foreground --socket "$dir/api2.sock" \
  --state-dir "$dir/state" --listen "unix:$dir/nbd2.sock" \
  --nbdkit "$NBDKIT" --plugin "$PLUGIN" \
  --device "disk1:$dir/disk0.img" 2> "$dir/err2" || st=$?
cat "$dir/err2"
test $st -eq 1
grep -q "state-dir $dir/state is in use by another nbdsnapd (pid $nbdsnapd_pid)" "$dir/err2"
test ! -e "$dir/api2.sock"
test ! -e "$dir/nbd2.sock"

# Same nbdkit, same snapshot, the image still reads the old data.
test "$(cat "$dir/state/nbdkit.pid")" = "$nbdkit"
kill -0 "$nbdkit"
ctl snapshot info "$id" | grep -q 'State: *taken'
nbdcopy "$(uri "disk0@$id")" "$dir/image.img"
head -c 1M /dev/zero | tr '\0' '\021' > "$dir/expect"
cmp -n 1048576 "$dir/image.img" "$dir/expect"

# Once the first daemon has stopped, the state directory is free.
stop_nbdsnapd
start_nbdsnapd --device "disk0:$dir/disk0.img"
ctl device list | grep -q '^disk0 '
stop_nbdsnapd
