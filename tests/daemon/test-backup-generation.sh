#!/usr/bin/env bash
# When the CBT history is lost, an incremental backup becomes a full one
# and says why: at the 256th snapshot (the 255th is still incremental:
# changes numbers run 1..255, then a new generation starts) and after
# an unclean stop (nbdsnapd and nbdkit killed with SIGKILL).  Each
# backup equals the image as read right after its take.
. "$srcdir/functions-backup.sh"
set -e
set -x

backup_disk $((16 * 1024 * 1024)) 1M:2:1
start_nbdsnapd --device "disk0:$dir/disk0.img"

incremental ()
{
  ctl --json backup --incremental "$src" "$backup" > "$dir/out.json" \
      2> "$dir/err"
  same_blocks "$dir/ref.img" "$backup"
}

take
[ "$(changes_number)" = 1 ]
incremental
[ "$(jv mode "$dir/out.json")" = full ]
gen=$(jv generation "$dir/out.json")

# Snapshots 2..254, with writes along the way, then the 255th.
for i in $(seq 2 254); do
  ctl snapshot destroy "$id" > /dev/null
  case $i in
    50) qemu-io -f raw -c "write -P 0x50 0 64k" "$(uri disk0)" > /dev/null ;;
    200) qemu-io -f raw -c "write -P 0xc8 1M 128k" "$(uri disk0)" > /dev/null ;;
  esac
  id=$(ctl snapshot create --device disk0 --take)
done
[ "$(changes_number)" = 254 ]
ctl snapshot destroy "$id"
qemu-io -f raw -c "write -P 0xff $((size - 64 * 1024)) 64k" "$(uri disk0)" \
        > /dev/null
take
[ "$(changes_number)" = 255 ]
incremental
[ "$(jv mode "$dir/out.json")" = incremental ]
[ "$(jv generation "$dir/out.json")" = "$gen" ]
[ "$(jv base_changes_number "$dir/out.json")" = 1 ]
[ "$(jv blocks "$dir/out.json")" = 4 ]

# The 256th: a new generation, number 1; the backup is a full one.
ctl snapshot destroy "$id"
qemu-io -f raw -c "write -P 0x11 8M 64k" "$(uri disk0)" > /dev/null
take
[ "$(changes_number)" = 1 ]
incremental
[ "$(jv mode "$dir/out.json")" = full ]
gen2=$(jv generation "$dir/out.json")
[ "$gen2" != "$gen" ]
grep -q "^nbdsnapctl: backup: the CBT generation differs (backup $gen, source $gen2): .*making a full backup" "$dir/err"
[ "$(jv blocks "$dir/out.json")" = $((size / bs)) ]
[ "$(jv changes_number "$backup.nbdsnap.json")" = 1 ]
[ "$(jv generation "$backup.nbdsnap.json")" = "$gen2" ]

# Incremental again in the new generation.
ctl snapshot destroy "$id"
qemu-io -f raw -c "write -P 0x12 9M 64k" "$(uri disk0)" > /dev/null
take
incremental
[ "$(jv mode "$dir/out.json")" = incremental ]
[ "$(jv blocks "$dir/out.json")" = 1 ]
ctl snapshot destroy "$id"

# An unclean stop: the history is lost, the next backup is a full one.
qemu-io -f raw -c "write -P 0x13 10M 64k" "$(uri disk0)" > /dev/null
nbdkit_pid_was=$(cat "$dir/state/nbdkit.pid")
kill -9 "$nbdsnapd_pid" "$nbdkit_pid_was"
st=0
wait "$nbdsnapd_pid" || st=$?
[ $st = 137 ]
nbdsnapd_pid=
for i in $(seq 200); do
  kill -0 "$nbdkit_pid_was" 2>/dev/null || break
  sleep 0.05
done
start_nbdsnapd --device "disk0:$dir/disk0.img"
take
incremental
[ "$(jv mode "$dir/out.json")" = full ]
gen3=$(jv generation "$dir/out.json")
[ "$gen3" != "$gen2" ]
grep -q "^nbdsnapctl: backup: the CBT generation differs (backup $gen2, source $gen3)" "$dir/err"
# The write before the kill is in the backup.
[ "$(dd if="$backup" bs=64k skip=160 count=1 status=none | tr -d '\023' |
     wc -c)" = 0 ]

ctl snapshot destroy "$id"
stop_nbdsnapd
