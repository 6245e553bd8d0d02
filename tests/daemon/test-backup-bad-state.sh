#!/usr/bin/env bash
# Bad state, at the daemon level.  A damaged, truncated or mismatched
# CBT state file in nbdsnapd's state directory: the data plane starts a
# new generation and logs why, nothing crashes, and the next incremental
# backup is a full one (a clean restart, the control, keeps it
# incremental).  A damaged, truncated or foreign backup state file
# (DEST.nbdsnap.json): a full backup and why.  Bad command lines: exit
# 2 (usage) or 1, a one-line message, and the backup and its state file
# unchanged.
. "$srcdir/functions-backup.sh"
set -e
set -x

backup_disk $((16 * 1024 * 1024)) 1M:2:1
truncate -s 8M "$dir/other.img"
devices=(--device "disk0:$dir/disk0.img" --device "other:$dir/other.img")
start_nbdsnapd "${devices[@]}"

gen () { ctl --json cbt info disk0 | sed -n 's/.*"generation": "\(.*\)".*/\1/p'; }
# Write, take, back up incrementally (mode $1), compare, destroy.
round ()
{
  qemu-io -f raw -c "write -P $((RANDOM % 255 + 1)) $((RANDOM % 200))k 70k" \
          "$(uri disk0)" > /dev/null
  take
  ctl --json backup --incremental "$src" "$backup" > "$dir/out.json" \
      2> "$dir/err"
  [ "$(jv mode "$dir/out.json")" = "$1" ]
  cmp "$dir/ref.img" "$backup"
  ctl snapshot destroy "$id" > /dev/null
}
# Stop cleanly, run "$@" on the stopped state, start again.
restart ()
{
  stop_nbdsnapd
  "$@"
  start_nbdsnapd "${devices[@]}"
}

# Overwrite bytes at OFFSET of FILE with the printf format BYTES.
poke () { printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }

round full
round incremental

# The control: a clean restart keeps the history.
g=$(gen)
restart :
[ "$(gen)" = "$g" ]
round incremental

# A damaged map.
restart poke "$dir/state/disk0.cbt" 4106 '\x7f'
[ "$(gen)" != "$g" ]
grep -q "device disk0: CBT state $dir/state/disk0.cbt: map checksum mismatch" \
     "$dir/nbdsnapd.log"
round full
grep -q "the CBT generation differs" "$dir/err"
round incremental

# A damaged header.
g=$(gen)
restart poke "$dir/state/disk0.cbt" 2 XX
[ "$(gen)" != "$g" ]
round full
round incremental

# A truncated file.
g=$(gen)
restart truncate -s 4200 "$dir/state/disk0.cbt"
[ "$(gen)" != "$g" ]
grep -q "device disk0: CBT state $dir/state/disk0.cbt: truncated or oversized map" \
     "$dir/nbdsnapd.log"
round full
round incremental

# Another device's state file.
g=$(gen)
restart cp "$dir/state/other.cbt" "$dir/state/disk0.cbt"
[ "$(gen)" != "$g" ]
round full
ctl device list | grep -q "^other "
round incremental

# An empty file.
g=$(gen)
restart truncate -s 0 "$dir/state/disk0.cbt"
[ "$(gen)" != "$g" ]
round full

# The backup's own state file: damaged, truncated, another device's.
round incremental
printf '{"format": "nbdsnap-backup-state", "version": 1, "complete": tr' \
       > "$state"
round full
grep -q "state file $state is unusable: not a JSON object" "$dir/err"
round incremental
sed -i 's/"version": 1/"version": 9/' "$state"
round full
grep -q "state file $state is unusable: version 9 is not 1" "$dir/err"
sed -i 's/"device": "disk0"/"device": "other"/' "$state"
round full
grep -q "state file $state is for device other, the source is device disk0" \
     "$dir/err"
: > "$state"
round full
head -c 5000 /dev/urandom > "$state"
round full
round incremental

# Bad command lines change nothing.
take
cp "$backup" "$dir/before.img"
cp "$state" "$dir/before.json"
fails ()
{
  local want=$1 st=0
  shift
  ctl backup "$@" > "$dir/out" 2> "$dir/err" || st=$?
  [ $st = "$want" ]
  [ "$(grep -c '^nbdsnapctl: ' "$dir/err")" = 1 ]
  [ ! -s "$dir/out" ]
}
fails 2
fails 2 "$src"
fails 2 "$src" "$backup" extra
fails 2 --connections 0 "$src" "$backup"
fails 2 --connections 99 "$src" "$backup"
fails 2 --bogus "$src" "$backup"
fails 2 "$dir/disk0.img" "$backup"
fails 2 "$src" "nbd+unix:///x?socket=$dir/none.sock"
fails 1 "$(uri disk0)" "$backup"
grep -q "is not a snapshot image (NAME@UUID)" "$dir/err"
fails 1 "$(uri "disk0@$id.cbt")" "$backup"
grep -q "is a CBT export: give the image export NAME@UUID" "$dir/err"
fails 1 "$(uri disk0@00000000-0000-0000-0000-000000000000)" "$backup"
fails 1 --incremental "$src" "$dir/nodir/backup.img"
fails 1 "$src" "$dir"
cmp "$dir/before.img" "$backup"
cmp "$dir/before.json" "$state"
ctl snapshot destroy "$id"

stop_nbdsnapd
