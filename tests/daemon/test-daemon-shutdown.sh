#!/bin/sh
# Clean shutdown on SIGTERM and SIGINT: the snapshots are destroyed,
# nbdkit stops, the sockets go and the CBT is saved, so that the
# generation and the changed blocks survive a restart, also when
# nbdsnapd alone is killed (nbdkit keeps serving the originals until
# the next nbdsnapd stops it cleanly).  An unclean stop
# (nbdsnapd and nbdkit killed with SIGKILL) loses the history: the next
# start makes a new generation.
. "$srcdir/functions-daemon.sh"
requires qemu-io nbdcopy
set -e
set -x

# Has process $1 exited (gone, or a zombie that its new parent has not
# reaped yet)?
gone ()
{
  _s=$(sed -n 's/^State:\t\(.\).*/\1/p' "/proc/$1/status" 2>/dev/null) ||
    _s=
  case "$_s" in ''|Z|X) return 0 ;; esac
  return 1
}

truncate -s 16M "$dir/disk0.img"
start_nbdsnapd --device "disk0:$dir/disk0.img"
nbdkit1=$(cat "$dir/state/nbdkit.pid")
gen=$(ctl --json cbt info disk0 | sed -n 's/.*"generation": "\(.*\)".*/\1/p')
test -n "$gen"

qemu-io -f raw -c 'write -P 0x61 0 1M' "$(uri disk0)"
id=$(ctl snapshot create --device disk0 --take)
# After the take (changes number 2): 2 blocks at 8 MiB.
qemu-io -f raw -c 'write -P 0x62 8M 128k' "$(uri disk0)"
ctl --json cbt info disk0 | grep '"changes_number": 2'
# The diff storage is an unnamed O_TMPFILE in --diff-storage-dir.
ls -l "/proc/$nbdkit1/fd" > "$dir/fds"
grep -E -- "-> $dir/#[0-9]+ \\(deleted\\)" "$dir/fds"

# SIGTERM.
stop_nbdsnapd
grep "snapshot $id destroyed at shutdown" "$dir/nbdsnapd.log"
grep "nbdkit (pid $nbdkit1) stopped: exit status 0" "$dir/nbdsnapd.log"
if ! gone "$nbdkit1"; then
  echo "$0: nbdkit $nbdkit1 is still running" >&2
  exit 1
fi
test ! -e "$dir/state/nbdkit.pid"
test ! -e "$api"
test ! -e "$sock"
test -s "$dir/state/disk0.cbt"
# Every byte written before the take is in the file.
test "$(head -c 1M "$dir/disk0.img" | tr -d a | wc -c)" -eq 0

# Restart: same generation, same number, the same changed blocks.
start_nbdsnapd --device "disk0:$dir/disk0.img"
ctl --json cbt info disk0 > "$dir/cbt.json"
grep "\"generation\": \"$gen\"" "$dir/cbt.json"
grep '"changes_number": 2' "$dir/cbt.json"
ctl cbt changed disk0 --since 1 > "$dir/changed"
test "$(cat "$dir/changed")" = "8388608 131072"
ctl --json snapshot list | grep '"snapshots": \[\]'
if grep 'not saved by a clean shutdown' "$dir/nbdsnapd.log"; then
  exit 1
fi

# SIGINT stops it as cleanly.
nbdkit2=$(cat "$dir/state/nbdkit.pid")
id=$(ctl snapshot create --device disk0 --take)
kill -INT "$nbdsnapd_pid"
st=0
wait "$nbdsnapd_pid" || st=$?
nbdsnapd_pid=
test $st -eq 0
grep "snapshot $id destroyed at shutdown" "$dir/nbdsnapd.log"
grep "nbdkit (pid $nbdkit2) stopped: exit status 0" "$dir/nbdsnapd.log"
start_nbdsnapd --device "disk0:$dir/disk0.img"
ctl --json cbt info disk0 > "$dir/cbt.json"
grep "\"generation\": \"$gen\"" "$dir/cbt.json"
grep '"changes_number": 3' "$dir/cbt.json"

# nbdsnapd killed alone: nbdkit (held by its keeper, since it asks for
# SIGTERM at its parent's death) keeps serving the originals, and
# writes succeed while no daemon runs (invariant 2).  The next nbdsnapd
# stops that nbdkit through its pid file, cleanly, so the CBT is saved:
# same generation, and the changed blocks include the write made
# while the daemon was dead.
nbdkit3=$(cat "$dir/state/nbdkit.pid")
kill -9 "$nbdsnapd_pid"
st=0
wait "$nbdsnapd_pid" || st=$?
test $st -eq 137
nbdsnapd_pid=
sleep 1
kill -0 "$nbdkit3"
qemu-io -f raw -c 'write -P 0x64 3M 64k' "$(uri disk0)"
# (qemu-io exits 1 when the pattern differs; its "read" line comes anyway)
qemu-io -f raw -c 'read -P 0x64 3M 64k' "$(uri disk0)" > /dev/null
start_nbdsnapd --device "disk0:$dir/disk0.img"
if ! gone "$nbdkit3"; then
  echo "$0: the old nbdkit $nbdkit3 is still running" >&2
  exit 1
fi
test "$(cat "$dir/state/nbdkit.pid")" != "$nbdkit3"
ctl --json cbt info disk0 > "$dir/cbt.json"
grep "\"generation\": \"$gen\"" "$dir/cbt.json"
ctl cbt changed disk0 --since 2 > "$dir/changed"
test "$(cat "$dir/changed")" = "3145728 65536"
test "$(dd if="$dir/disk0.img" bs=64k skip=48 count=1 | tr -d d | wc -c)" -eq 0

# Unclean: both killed.  The next start has a new generation.
qemu-io -f raw -c 'write -P 0x63 2M 64k' "$(uri disk0)"
nbdkit4=$(cat "$dir/state/nbdkit.pid")
# nbdkit first: killed before it could hear of its parent's death.
kill -9 "$nbdkit4" "$nbdsnapd_pid"
st=0
wait "$nbdsnapd_pid" || st=$?
test $st -eq 137
nbdsnapd_pid=
for i in $(seq 200); do
  gone "$nbdkit4" && break
  sleep 0.05
done
start_nbdsnapd --device "disk0:$dir/disk0.img"
ctl --json cbt info disk0 > "$dir/cbt.json"
grep '"changes_number": 1' "$dir/cbt.json"
if grep "\"generation\": \"$gen\"" "$dir/cbt.json"; then
  echo "$0: the generation survived an unclean stop" >&2
  exit 1
fi
grep 'not saved by a clean shutdown' "$dir/nbdsnapd.log"
# The data written before the kill is served.
nbdcopy "$(uri disk0)" "$dir/out"
test "$(dd if="$dir/out" bs=64k skip=32 count=1 | tr -d c | wc -c)" -eq 0
test "$(dd if="$dir/out" bs=64k skip=128 count=2 | tr -d b | wc -c)" -eq 0
test "$(dd if="$dir/out" bs=1M count=1 | tr -d a | wc -c)" -eq 0

stop_nbdsnapd
