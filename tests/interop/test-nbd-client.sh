#!/usr/bin/env bash
# scripts/nbd-attach with the kernel's NBD client: an image export of
# nbdsnapd attached to /dev/nbdN over the daemon's unix socket (and over
# TCP on a second device) reads, block for block, what the image export
# reads through libnbd (nbdcopy) and what the disk held at the take,
# while the original has been overwritten; the device is read-only; the
# ext4 on it mounts read-only with every file of the take; detach lets
# the device go.
#
# Skips (77) only where /dev/nbd0 is missing and the nbd kernel module
# cannot be loaded, even under NBDSNAP_NO_SKIP=1: the one skip that
# scripts/check allows, as no script can add a kernel module.
. "$srcdir/../daemon/functions-daemon.sh"
requires nbd-client nbdinfo nbdcopy mkfs.ext4 split sha256sum cmp blockdev mountpoint
set -e
set -x

if [ ! -e /dev/nbd0 ] && modprobe nbd 2>/dev/null; then
  for i in $(seq 50); do
    [ -e /dev/nbd0 ] && break
    sleep 0.1
  done
fi
if [ ! -b /dev/nbd0 ]; then
  echo "$0: SKIP: /dev/nbd0 is missing (the nbd kernel module is not available here)"
  exit 77
fi

attach=$srcdir/../../scripts/nbd-attach
size=$((32 * 1024 * 1024))
bs=65536

# ext4 with 60 files, made in a plain file (mkfs.ext4 -d: no mount).
mkdir "$dir/files"
for i in $(seq 60); do
  head -c $((i * 7919 % 300000 + 1)) /dev/urandom > "$dir/files/f$i"
done
(cd "$dir/files" && sha256sum f* > "$dir/files.sums")
mkfs.ext4 -q -F -d "$dir/files" "$dir/disk0.img" $((size / 1024))k
test "$(stat -c %s "$dir/disk0.img")" -eq $size
cp "$dir/disk0.img" "$dir/take.img"

for try in 1 2 3 4 5 6 7 8; do
  port=$((20000 + RANDOM % 40000))
  if start_nbdsnapd --listen "tcp:127.0.0.1:$port" \
                    --device "disk0:$dir/disk0.img"; then
    break
  fi
  [ $try -lt 8 ]
done

id=$(ctl snapshot create --device disk0 --take)
# The original is overwritten entirely after the take.
head -c $size /dev/urandom > "$dir/new.img"
nbdcopy "$dir/new.img" "$(uri disk0)"
cmp "$dir/new.img" "$dir/disk0.img"

# Every block's checksum, in order.
block_sums ()
{
  split -b $bs --filter=sha256sum "$1"
}
nbdcopy "$(uri "disk0@$id")" "$dir/image.raw"
block_sums "$dir/image.raw" > "$dir/image.sums"
block_sums "$dir/take.img" > "$dir/take.sums"
diff "$dir/take.sums" "$dir/image.sums"
test "$(wc -l < "$dir/image.sums")" -eq $((size / bs))

_detach ()
{
  if [ -e "/sys/block/${1#/dev/}/pid" ]; then
    "$attach" --detach "$1"
  fi
  return 0
}

_umount ()
{
  if mountpoint -q "$1"; then
    umount "$1"
  fi
}

check_device ()
{
  _dev=$1
  test "$(blockdev --getsize64 "$_dev")" -eq $size
  block_sums "$_dev" > "$dir/dev.sums"
  diff "$dir/image.sums" "$dir/dev.sums"
  echo "verified: $_dev: $(wc -l < "$dir/dev.sums") blocks of 64 KiB equal to the image and to the take"
  # Read-only: the kernel refuses writes.
  if dd if=/dev/zero of="$_dev" bs=4096 count=1 oflag=direct status=none \
       2> "$dir/dd.err"; then
    echo "$0: a write to the read-only $_dev succeeded" >&2
    exit 1
  fi
  cat "$dir/dd.err"
  mkdir -p "$dir/mnt"
  mount -o ro,noload "$_dev" "$dir/mnt"
  cleanup_fn _umount "$dir/mnt"
  (cd "$dir/mnt" && sha256sum f*) > "$dir/mnt.sums"
  umount "$dir/mnt"
  diff "$dir/files.sums" "$dir/mnt.sums"
  echo "verified: $_dev: ext4 mounted read-only, $(wc -l < "$dir/mnt.sums") files of the take"
}

# Over the unix socket, on the first free device.
dev=$("$attach" --socket "$sock" "disk0@$id")
cleanup_fn _detach "$dev"
case $dev in /dev/nbd[0-9]*) ;; *) exit 1 ;; esac
check_device "$dev"
"$attach" --detach "$dev"
test ! -e "/sys/block/${dev#/dev/}/pid"
st=0
nbd-client -c "$dev" || st=$?
test $st -eq 1

# Over TCP, on a device named on the command line.
if [ -b /dev/nbd1 ] && [ ! -e /sys/block/nbd1/pid ]; then
  dev=$("$attach" --host 127.0.0.1 --port "$port" "disk0@$id" /dev/nbd1)
  cleanup_fn _detach "$dev"
  test "$dev" = /dev/nbd1
  check_device "$dev"
  "$attach" --detach "$dev"
  test ! -e /sys/block/nbd1/pid
fi

ctl snapshot destroy "$id"
stop_nbdsnapd
