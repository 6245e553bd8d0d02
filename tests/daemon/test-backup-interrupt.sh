#!/usr/bin/env bash
# An interrupted backup (kill -9 mid-copy) can be rerun and ends with a
# correct backup.  The source is slowed down by an nbdkit proxy with the
# delay filter, so that the kill lands while the copy runs.
#  - A full backup killed: no state file is left; the rerun with
#    --incremental says so and makes a full backup.
#  - An incremental backup killed: the state file says "incomplete"; a
#    rerun, against a later snapshot of the same generation, stays
#    incremental from the old base and copies every block changed since
#    it.
#  - Through a proxy that hides multi-conn, a backup uses one
#    connection whatever --connections says (and four without it).
. "$srcdir/functions-backup.sh"
set -e
set -x

# Random data throughout.
backup_disk $((32 * 1024 * 1024)) 1M:32:0
start_nbdsnapd --device "disk0:$dir/disk0.img"

# The slow proxy: every read of the source waits $1.
slow=$dir/slow.sock
start_proxy ()
{
  start_server "$slow" "$dir/proxy.pid" "$dir/proxy.log" \
    nbdkit -f -U "$slow" -P "$dir/proxy.pid" --filter=delay nbd \
           socket="$sock" dynamic-export=true rdelay="$1"
}
# Run a backup through the proxy in the background; once "$@" holds,
# kill it with SIGKILL (it must still be running).
interrupted_backup ()
{
  local opts=$1 pid st=0
  shift
  "$NBDSNAPCTL" backup $opts --connections 1 \
    "nbd+unix:///disk0@$id?socket=$slow" "$backup" > /dev/null 2>&1 &
  pid=$!
  until "$@"; do
    kill -0 $pid
    sleep 0.05
  done
  kill -9 $pid
  wait $pid || st=$?
  [ $st = 137 ]
}
allocated () { [ -e "$backup" ] && [ "$(stat -c %b "$backup")" -gt 0 ]; }
no_state_and_allocated () { [ ! -e "$state" ] && allocated; }
incomplete () { [ -s "$state" ] && grep -q '"complete": false' "$state"; }

# 1. A full backup over an older complete one, killed once data has
# reached the backup: the old state file is gone.
qemu-io -f raw -c "write -P 0x77 0 1M" "$(uri disk0)" > /dev/null
take
ctl backup "$src" "$backup" > /dev/null
[ "$(jv complete "$state")" = true ]
ctl snapshot destroy "$id"
qemu-io -f raw -c "write -P 0x78 0 1M" "$(uri disk0)" > /dev/null
take
start_proxy 500ms
interrupted_backup "" no_state_and_allocated
if cmp -s "$dir/ref.img" "$backup"; then exit 1; fi
[ ! -e "$state" ]
ctl --json backup --incremental "$src" "$backup" > "$dir/out.json" \
    2> "$dir/err"
grep -q "no state file $state: making a full backup" "$dir/err"
[ "$(jv mode "$dir/out.json")" = full ]
cmp "$dir/ref.img" "$backup"
ctl snapshot destroy "$id"

# 2. An incremental backup of 40 scattered blocks, killed.
args=()
for i in $(seq 0 39); do
  args+=(-c "write -P $((i + 1)) $((i * 7 * bs + 100)) 1000")
done
qemu-io -f raw "${args[@]}" "$(uri disk0)" > /dev/null
take
number2=$(changes_number)
stop_server
start_proxy 300ms
interrupted_backup --incremental incomplete
[ "$(jv complete "$state")" = false ]
[ "$(jv changes_number "$state")" = 2 ]
[ "$(jv target_changes_number "$state")" = "$number2" ]
[ "$(jv target_snapshot_id "$state")" = "$id" ]
stop_server

# The rerun, against a later snapshot: 10 more blocks changed.
ctl snapshot destroy "$id"
args=()
for i in $(seq 0 9); do
  args+=(-c "write -P 0xaa $(((i * 7 + 3) * bs)) $bs")
done
qemu-io -f raw "${args[@]}" "$(uri disk0)" > /dev/null
take
ctl --json backup --incremental "$src" "$backup" > "$dir/out.json" \
    2> "$dir/err"
grep -q "resuming an interrupted incremental backup from changes number 2" \
     "$dir/err"
[ "$(jv mode "$dir/out.json")" = incremental ]
[ "$(jv resumed "$dir/out.json")" = true ]
[ "$(jv base_changes_number "$dir/out.json")" = 2 ]
[ "$(jv blocks "$dir/out.json")" = 50 ]
cmp "$dir/ref.img" "$backup"
[ "$(jv complete "$state")" = true ]
[ "$(jv snapshot_id "$state")" = "$id" ]

# And the next one is an ordinary incremental backup.
ctl snapshot destroy "$id"
qemu-io -f raw -c "write -P 0x55 0 1" "$(uri disk0)" > /dev/null
take
ctl --json backup --incremental --verify "$src" "$backup" > "$dir/out.json"
[ "$(jv resumed "$dir/out.json")" = false ]
[ "$(jv blocks "$dir/out.json")" = 1 ]
cmp "$dir/ref.img" "$backup"

# 3. A source without multi-conn (a proxy that hides it) gets one
# connection whatever --connections says, and the backup is still
# right; the image export itself (multi-conn) gets the four asked for.
start_server "$slow" "$dir/proxy.pid" "$dir/proxy.log" \
  nbdkit -f -U "$slow" -P "$dir/proxy.pid" --filter=multi-conn nbd \
         socket="$sock" dynamic-export=true multi-conn-mode=disable
nbdinfo "nbd+unix:///disk0@$id?socket=$slow" | grep -q 'can_multi_conn: false'
ctl --json backup --connections 4 "nbd+unix:///disk0@$id?socket=$slow" \
    "$dir/one.img" > "$dir/out.json"
[ "$(jv connections "$dir/out.json")" = 1 ]
cmp "$dir/ref.img" "$dir/one.img"
stop_server
ctl --json backup --connections 4 "$src" "$dir/four.img" > "$dir/out.json"
[ "$(jv connections "$dir/out.json")" = 4 ]
cmp "$dir/ref.img" "$dir/four.img"
ctl snapshot destroy "$id"
stop_nbdsnapd
