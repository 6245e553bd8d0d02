#!/bin/sh
# With a TCP listener (default config), an original export is refused
# over TCP while it is served on the unix listener, and the image
# export of a taken snapshot is served over TCP with the point-in-time
# data; snapshot info and version show the TCP URIs.  With
# allow-original-over-tcp=true the original is served over TCP too.
. "$srcdir/functions-daemon.sh"
requires nbdinfo nbdcopy qemu-img qemu-io shuf
set -e
set -x

random_file "$dir/ref0" 4M
cp "$dir/ref0" "$dir/disk0.img"
for try in 1 2 3 4 5 6 7 8; do
  port=$(shuf -i 20000-60000 -n 1)
  if start_nbdsnapd --listen "tcp:127.0.0.1:$port" \
                    --device "disk0:$dir/disk0.img"; then
    break
  fi
  [ $try -lt 8 ]
done
ctl version > "$dir/version"
grep "^listener: nbd://127.0.0.1:$port/\? (images only)$" "$dir/version"

id=$(ctl snapshot create --device disk0 --take)
qemu-io -f raw -c 'write -P 0x77 0 1M' "$(uri disk0)"

# The original: refused over TCP, served on unix.
fails nbdinfo --size "nbd://127.0.0.1:$port/disk0"
fails qemu-img info -f raw "nbd://127.0.0.1:$port/disk0"
nbdinfo --size "$(uri disk0)" | grep -x 4194304
# Not listed to TCP clients either.
nbdinfo --list "nbd://127.0.0.1:$port/" > "$dir/list"
grep "disk0@$id" "$dir/list"
fails grep '^export="disk0":' "$dir/list"

# The image over TCP: the data of the take.
ctl snapshot info "$id" | grep -x "    nbd://127.0.0.1:$port/disk0@$id"
qemu-img info -f raw "nbd://127.0.0.1:$port/disk0@$id" | grep 'virtual size: 4 MiB'
nbdcopy "nbd://127.0.0.1:$port/disk0@$id" "$dir/image"
cmp "$dir/ref0" "$dir/image"
ctl snapshot destroy "$id"
stop_nbdsnapd

# With allow-original-over-tcp=true (config), the original is served,
# listed and writable over TCP too.
printf '[nbdsnapd]\nallow-original-over-tcp=true\n' > "$dir/nbdsnapd.conf"
start_nbdsnapd --config "$dir/nbdsnapd.conf" \
  --listen "tcp:127.0.0.1:$port" --device "disk0:$dir/disk0.img"
ctl version |
  grep "^listener: nbd://127.0.0.1:$port/\\? (originals and images)$"
nbdinfo --list "nbd://127.0.0.1:$port/" | grep '^export="disk0":'
qemu-io -f raw -c 'write -P 0x78 1M 1M' "nbd://127.0.0.1:$port/disk0"
nbdcopy "nbd://127.0.0.1:$port/disk0" "$dir/orig"
# (qemu-io exits 1 when a pattern differs)
qemu-io -f raw -c 'read -P 0x77 0 1M' -c 'read -P 0x78 1M 1M' "$dir/orig" \
  > /dev/null
cmp "$dir/orig" "$dir/disk0.img"
stop_nbdsnapd
