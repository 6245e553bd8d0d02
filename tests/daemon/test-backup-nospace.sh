#!/usr/bin/env bash
# A backup whose DEST file system fills up fails with one clear message
# (exit 1) and leaves no state file that could be trusted; once there is
# room, the rerun ends with a correct backup.  DEST is on a small tmpfs
# (mounted by the test, root only): 8 MiB for a device with 12 MiB of
# data, then remounted with room to spare.
#  - A full backup: no state file at all after the failure; the rerun
#    with --incremental says so and makes a full backup.
#  - An incremental backup that runs out of room: its state file says
#    "incomplete"; the rerun resumes and the backup equals the take.
. "$srcdir/functions-backup.sh"
requires mount umount mountpoint
set -e
set -x

[ "$(id -u)" -eq 0 ] || skip "needs root (mounts a tmpfs)"
M=$((1024 * 1024))
backup_disk $((32 * M)) 1M:12:4
start_nbdsnapd --device "disk0:$dir/disk0.img"

small=$dir/small
mkdir "$small"
mount -t tmpfs -o size=8m nbdsnap-test "$small"
_umount_small () { ! mountpoint -q "$small" || umount "$small"; }
cleanup_fn _umount_small
backup=$small/backup.img
state=$backup.nbdsnap.json

# nospace_backup ARGS...: the backup fails, exit 1, one message naming
# DEST and the lack of space, nothing on stdout.
nospace_backup ()
{
  local st=0
  ctl backup "$@" "$src" "$backup" > "$dir/out" 2> "$dir/err" || st=$?
  cat "$dir/err"
  [ $st -eq 1 ]
  [ ! -s "$dir/out" ]
  [ "$(grep -c '^nbdsnapctl: ' "$dir/err")" -eq 1 ]
  grep -q "^nbdsnapctl: .*$backup.*No space left on device" "$dir/err"
}

# rerun_with_room MODE MESSAGE: room again; backup --incremental says
# MESSAGE, runs as MODE and ends with a correct, complete backup.
rerun_with_room ()
{
  mount -o remount,size=64m "$small"
  ctl --json backup --incremental "$src" "$backup" > "$dir/out.json" \
      2> "$dir/err"
  grep -q "$2" "$dir/err"
  [ "$(jv mode "$dir/out.json")" = "$1" ]
  cmp "$dir/ref.img" "$backup"
  [ "$(jv complete "$state")" = true ]
}

# 1. A full backup into 8 MiB.
take
nospace_backup
[ ! -e "$state" ]
rerun_with_room full "no state file $state: making a full backup"

# 2. An incremental backup of 10 MiB of new data, with 4 MiB free.
ctl snapshot destroy "$id"
qemu-io -f raw -c "write -P 0x5a $((20 * M)) $((10 * M))" "$(uri disk0)" \
  > /dev/null
take
used=$(df --output=used -B1 "$small" | tail -1)
mount -o remount,size=$((used + 4 * M)) "$small"
nospace_backup --incremental
[ "$(jv complete "$state")" = false ]
rerun_with_room incremental "resuming an interrupted incremental backup"
ctl snapshot destroy "$id"
stop_nbdsnapd
