#!/usr/bin/env bash
# Persistent CBT (statedir=): a clean shutdown saves each device's map,
# generation and changes number, and the next start loads them; while
# running the saved state is marked in use, so after a kill -9, a device
# size change, or a damaged, truncated or foreign state file (a .cbt
# export, unknown flag bits, non-zero pad, snapshot_id or reserved
# bytes) the device starts a new generation and the log says why.  Also the NAME@UUID.cbt
# export: the cbt-format header and the snapshot's frozen map.
source ${srcdir:-.}/functions.sh
set -e
set -x
requires qemu-io nbdcopy od cmp

state=$dir/state
mkdir $state
truncate -s 16M $dir/disk.img
truncate -s 8M $dir/other.img

# Header fields of a cbt-format file: hex bytes at OFFSET, LENGTH.
field () { od -An -v -tx1 -j "$2" -N "$3" "$1" | tr -d ' \n'; }
flags () { od -An -tu4 -j 36 -N 4 "$1" | tr -d ' '; }
gen () { testctl cbt-info disk0 | kv generation; }
number () { testctl cbt-info disk0 | kv changes_number; }

start () { start_nbdsnap statedir=$state device=disk0:$dir/disk.img \
                          device=other:$dir/other.img "$@"; }

start
g0=$(gen)
[ "$(field $state/disk0.cbt 0 8)" = "$(printf NBDSNCBT | od -An -tx1 | tr -d ' \n')" ]
# In use while running: the clean flag (bit 0) is clear on disk.
[ $(( $(flags $state/disk0.cbt) & 1 )) = 0 ]

# Writes, then two snapshots so the number moves on.
qemu-io -f raw -c 'write -P 1 0 64k' -c 'write -P 2 1M 1' "$(uri disk0)"
id=$(testctl create --tmpfile $dir --limit 16M --device disk0 --take | kv id)
qemu-io -f raw -c 'write -P 3 5M 100k' "$(uri disk0)"

# The .cbt export of the snapshot.
nbdcopy "$(uri disk0@$id.cbt)" $dir/export.cbt
[ "$(stat -c %s $dir/export.cbt)" = $((4096 + 256)) ]
[ "$(field $dir/export.cbt 40 16)" = "${g0//-/}" ]
[ "$(field $dir/export.cbt 64 16)" = "${id//-/}" ]
[ "$(od -An -tu1 -j 56 -N 1 $dir/export.cbt | tr -d ' ')" = 1 ]
[ "$(flags $dir/export.cbt)" = 3 ]              # CLEAN | SNAPSHOT
testctl cbt-map disk0 frozen $dir/frozen.map
cmp <(tail -c 256 $dir/export.cbt) $dir/frozen.map
# Blocks 0 and 16 were written before the snapshot (number 1).
[ "$(od -An -tu1 -j 0 -N 1 $dir/frozen.map | tr -d ' ')" = 1 ]
[ "$(od -An -tu1 -j 16 -N 1 $dir/frozen.map | tr -d ' ')" = 1 ]
fails qemu-io -f raw -c 'write 0 512' "$(uri disk0@$id.cbt)"
testctl destroy $id
fails nbdcopy "$(uri disk0@$id.cbt)" $dir/gone.cbt

testctl cbt-map disk0 active $dir/before.map
n0=$(number)
[ "$n0" = 2 ]

# Clean stop and start: the same history.
stop_nbdsnap
[ $(( $(flags $state/disk0.cbt) & 1 )) = 1 ]
start
[ "$(gen)" = "$g0" ]
[ "$(number)" = "$n0" ]
testctl cbt-map disk0 active $dir/after.map
cmp $dir/before.map $dir/after.map
# Blocks 80-81 (5M + 100k) carry number 2.
[ "$(od -An -tu1 -j 80 -N 1 $dir/after.map | tr -d ' ')" = 2 ]

# A crash: the state says "in use", so a new generation starts.
kill -9 $nbdkit_pid
wait $nbdkit_pid 2>/dev/null || :
start
[ "$(gen)" != "$g0" ]
[ "$(number)" = 1 ]
testctl cbt-map disk0 active $dir/crash.map
cmp $dir/crash.map <(head -c 256 /dev/zero)
grep -q "device disk0: CBT state $state/disk0.cbt: not saved by a clean shutdown" $dir/nbdkit.log
stop_nbdsnap

# Each kind of bad file: new generation, a reason in the log, no crash.
bad_start ()
{
  local g; g=$(field $state/disk0.cbt 40 16)
  : > $dir/nbdkit.log
  start
  [ "$(gen | tr -d -)" != "$g" ]
  [ "$(number)" = 1 ]
  grep "device disk0: CBT state" $dir/nbdkit.log
  grep -q "$1" $dir/nbdkit.log
  stop_nbdsnap
}
# A byte of the map flipped.
printf '\x07' | dd of=$state/disk0.cbt bs=1 seek=$((4096 + 10)) conv=notrunc status=none
bad_start 'map checksum mismatch'
# Truncated.
truncate -s 4100 $state/disk0.cbt
bad_start 'truncated or oversized map'
truncate -s 100 $state/disk0.cbt
bad_start 'truncated header'
# Header damaged.
printf 'X' | dd of=$state/disk0.cbt bs=1 seek=60 conv=notrunc status=none
bad_start 'header checksum mismatch'
# Not ours at all.
head -c 8192 /dev/urandom > $state/disk0.cbt
bad_start 'bad magic'
# Another device's state (8 MiB) under this name.
cp $state/other.cbt $state/disk0.cbt
bad_start 'device size changed from 8388608 to 16777216'
# The device itself grew.
truncate -s 32M $dir/disk.img
bad_start 'device size changed from 16777216 to 33554432'
# A different tracking block size.
start cbt-block-size-min=128K
grep -q 'tracking block size changed from 65536 to 131072' $dir/nbdkit.log
stop_nbdsnap

# A good state still loads after all that.
start
g1=$(gen)
stop_nbdsnap
start
[ "$(gen)" = "$g1" ]

# A snapshot's .cbt export saved as the state file: sound checksums and
# CLEAN, but flags SNAPSHOT too and a snapshot's number, not the active
# one.
id=$(testctl create --tmpfile $dir --limit 16M --device disk0 --take | kv id)
nbdcopy "$(uri disk0@$id.cbt)" $dir/export2.cbt
testctl destroy $id
stop_nbdsnap
[ "$(flags $dir/export2.cbt)" = 3 ]
[ "$(field $dir/export2.cbt 40 16)" = "$(field $state/disk0.cbt 40 16)" ]
cp $dir/export2.cbt $state/disk0.cbt
bad_start 'SNAPSHOT flag set (a snapshot.s .cbt export, not a state file)'

# Header fields changed with the header checksum made right again, so
# that only the field is wrong.  hcrc FILE: CRC-32C of bytes 0-87 with
# bytes 84-87 zero, as 8 hex digits in file order (little-endian).
hcrc ()
{
  local crc=$((0xffffffff)) b i
  for b in $(od -An -v -tu1 -N 84 "$1") 0 0 0 0; do
    crc=$(( crc ^ b ))
    for i in 1 2 3 4 5 6 7 8; do
      crc=$(( (crc >> 1) ^ (crc & 1 ? 0x82f63b78 : 0) ))
    done
  done
  crc=$(( crc ^ 0xffffffff ))
  printf '%02x%02x%02x%02x' $((crc & 255)) $((crc >> 8 & 255)) \
         $((crc >> 16 & 255)) $((crc >> 24 & 255))
}
# poke OFFSET HEX: write byte 0xHEX at OFFSET of the (clean) state file
# and fix the header checksum.
poke ()
{
  [ "$(hcrc $state/disk0.cbt)" = "$(field $state/disk0.cbt 84 4)" ]
  printf "\\x$2" |
    dd of=$state/disk0.cbt bs=1 seek=$1 conv=notrunc status=none
  printf "$(hcrc $state/disk0.cbt | sed 's/../\\x&/g')" |
    dd of=$state/disk0.cbt bs=1 seek=84 conv=notrunc status=none
  [ "$(hcrc $state/disk0.cbt)" = "$(field $state/disk0.cbt 84 4)" ]
}
# Each bad_start leaves a clean state of a new generation.
[ "$(flags $state/disk0.cbt)" = 1 ]
# A flag bit this plugin does not know (bit 2), CLEAN still set.
poke 36 05
[ "$(flags $state/disk0.cbt)" = 5 ]
bad_start 'unknown flag bits set'
# Only the SNAPSHOT flag added to a state file.
poke 36 03
bad_start 'SNAPSHOT flag set'
# A snapshot_id in a state file.
poke 70 42
bad_start 'non-zero snapshot_id'
# A pad byte.
poke 60 01
bad_start 'non-zero pad bytes'
# A reserved byte (not covered by the header checksum).
printf '\x01' | dd of=$state/disk0.cbt bs=1 seek=1000 conv=notrunc status=none
bad_start 'non-zero reserved byte at offset 1000'
printf '\x80' | dd of=$state/disk0.cbt bs=1 seek=4095 conv=notrunc status=none
bad_start 'non-zero reserved byte at offset 4095'

# And a good state loads again.
start
g2=$(gen)
stop_nbdsnap
start
[ "$(gen)" = "$g2" ]
