#!/bin/sh
# Bad command line options and bad configuration files: one clear line
# on stderr, exit status 2, and nothing started (no state directory, no
# sockets, no nbdkit).  Then a complete, valid configuration file is
# accepted and used.
. "$srcdir/functions-daemon.sh"
requires qemu-io pgrep
set -e
set -x

truncate -s 4M "$dir/disk0.img"
truncate -s 4M "$dir/disk1.img"
conf=$dir/bad.conf
base="--foreground --socket $dir/bad-api.sock --state-dir $dir/bad-state \
--listen unix:$dir/bad-nbd.sock --nbdkit $NBDKIT --plugin $PLUGIN"

# bad EXPECTED-MESSAGE-REGEX ARGS...: nbdsnapd ARGS must fail as said.
bad ()
{
  _want=$1
  shift
  _st=0
  # shellcheck disable=SC2086
  "$NBDSNAPD" $base "$@" > "$dir/out" 2> "$dir/err" || _st=$?
  cat "$dir/err"
  test $_st -eq 2
  test ! -s "$dir/out"
  test "$(grep -c . "$dir/err")" -eq 1
  grep -E "^nbdsnapd: $_want" "$dir/err"
  # Nothing was started.
  test ! -e "$dir/bad-state"
  test ! -e "$dir/bad-api.sock"
  test ! -e "$dir/bad-nbd.sock"
  if pgrep -f -- "control=$dir/bad-state/" > /dev/null; then
    echo "$0: an nbdkit was started" >&2
    exit 1
  fi
}
# badconf EXPECTED LINES...: a config file of LINES must fail as said.
badconf ()
{
  _want=$1
  shift
  printf '%s\n' "$@" > "$conf"
  bad "$_want" --config "$conf"
}

# Command line.
bad "Unknown option --bogus" --bogus
bad "unexpected argument 'extra'" extra
bad "--listen 'udp:x': expected unix:PATH or tcp:HOST:PORT" --listen udp:x
bad "--listen 'tcp:localhost': expected unix:PATH or tcp:HOST:PORT" \
  --listen tcp:localhost
bad "--listen 'tcp:127.0.0.1:99999': bad port '99999' \\(0 to 65535\\)" \
  --listen tcp:127.0.0.1:99999
bad "--listen 'tcp:300.1.1.1:10809': bad host '300.1.1.1'" \
  --listen tcp:300.1.1.1:10809
bad "tls 'maybe': expected off, on or require" --tls maybe
bad "tls require needs exactly one of tls-psk FILE and tls-certificates DIR" \
  --tls require
bad "tls-psk $dir/none.psk: No such file or directory" \
  --tls require --tls-psk "$dir/none.psk"
bad "--device 'disk0': expected NAME:PATH" --device disk0
bad "--device 'bad/name:$dir/disk0.img': the name must be 1 to 64 of" \
  --device "bad/name:$dir/disk0.img"
bad "--device 'disk0:$dir/none.img': $dir/none.img: No such file or directory" \
  --device "disk0:$dir/none.img"
bad "--device 'disk0:$dir/disk1.img': the name is given twice" \
  --device "disk0:$dir/disk0.img" --device "disk0:$dir/disk1.img"
bad "--device 'disk1:$dir': $dir is not a regular file or block device" \
  --device "disk1:$dir"
bad "plugin $dir/none.so: no such file" --plugin "$dir/none.so"
bad "nbdkit $dir/none: not an executable program" --nbdkit "$dir/none"
bad "log-level 'loud': expected error, warning, info or debug" \
  --log-level loud
bad "diff-storage-dir $dir/none: No such file or directory" \
  --diff-storage-dir "$dir/none"
bad "diff-storage-dir $dir/disk0.img: not a directory" \
  --diff-storage-dir "$dir/disk0.img"
bad "config file $dir/none.conf: No such file or directory" \
  --config "$dir/none.conf"

# Configuration files.
badconf "$conf: unknown key 'colour' in \\[nbdsnapd\\]" \
  '[nbdsnapd]' 'colour=blue'
badconf "$conf: unknown group \\[daemon\\]" '[daemon]' 'tls=off'
badconf "$conf: unknown key 'device' in \\[plugin\\]" \
  '[plugin]' "device=disk0:$dir/disk0.img"
badconf "config file $conf: .*not a key-value pair" '[nbdsnapd]' 'tls off'
badconf "$conf: diff-storage-limit '12X' is not a size" \
  '[nbdsnapd]' 'diff-storage-limit=12X'
badconf "$conf: diff-storage-limit=0: must be more than 0" \
  '[nbdsnapd]' 'diff-storage-limit=0'
badconf "$conf: spare-storage-size '-1M' is not a size" \
  '[nbdsnapd]' 'spare-storage-size=-1M'
badconf "$conf: \\[plugin\\] chunk-size 'big' is not a size" \
  '[plugin]' 'chunk-size=big'
badconf "$conf: image-readonly=perhaps: expected true or false" \
  '[nbdsnapd]' 'image-readonly=perhaps'
badconf "$conf: snapshot-ttl=-1: expected a number of seconds" \
  '[nbdsnapd]' 'snapshot-ttl=-1'
badconf "$conf: hook-timeout=0: expected a number of seconds more than 0" \
  '[nbdsnapd]' 'hook-timeout=0'
badconf "$conf: listen 'tcp:127.0.0.1:x': bad port 'x'" \
  '[nbdsnapd]' 'listen=tcp:127.0.0.1:x'
badconf "$conf: device 'disk9:$dir/none.img': $dir/none.img: No such file" \
  '[nbdsnapd]' "device=disk9:$dir/none.img"
badconf "spare-storage-dirs: $dir/none: No such file or directory" \
  '[nbdsnapd]' "spare-storage-dirs=$dir/none"
badconf "socket-group 'no-such-group-here': no such group" \
  '[nbdsnapd]' 'socket-group=no-such-group-here'
# A bad list in the file is an error even when the command line
# replaces it.
printf '[nbdsnapd]\nlisten=udp:x\n' > "$conf"
bad "$conf: listen 'udp:x': expected unix:PATH or tcp:HOST:PORT" \
  --config "$conf" --listen "unix:$dir/bad-nbd.sock"

# A complete configuration file (every key of nbdsnapd.conf(5) that
# this test can use), accepted and applied.
mkdir "$dir/diff" "$dir/spare"
cat > "$dir/nbdsnapd.conf" <<EOF
# nbdsnapd.conf: an example.
[nbdsnapd]
device=disk0:$dir/disk0.img;disk1:$dir/disk1.img;
listen=unix:$dir/unused.sock;
tls=off
diff-storage-dir=$dir/diff
diff-storage-limit=3M
spare-storage-dirs=$dir/spare;
spare-storage-size=1M
system-bus=false
nbdkit-verbose=false
log-level=debug
allow-original-over-tcp=false
image-readonly=true
snapshot-ttl=0
pre-take-hook=
post-take-hook=
hook-timeout=10

[plugin]
chunk-size=128K
storage-portion=1M
EOF
# (start_nbdsnapd's --listen, --state-dir ... replace the file's.)
start_nbdsnapd --config "$dir/nbdsnapd.conf"
test ! -e "$dir/unused.sock"
ctl device list > "$dir/devices"
grep "^disk0 .*$dir/disk0.img" "$dir/devices"
grep "^disk1 .*$dir/disk1.img" "$dir/devices"
id=$(ctl snapshot create --device disk0 --device disk1 --take)
ctl --json snapshot info "$id" > "$dir/info.json"
grep '"limit": 3145728' "$dir/info.json"
grep '"chunk_size": 131072' "$dir/info.json"
ls -l "/proc/$(cat "$dir/state/nbdkit.pid")/fd" > "$dir/fds"
# start_nbdsnapd's --diff-storage-dir $dir overrides the file's.
grep -E -- "-> $dir/#[0-9]+ \\(deleted\\)" "$dir/fds"
if grep -F -- "-> $dir/diff/" "$dir/fds"; then
  exit 1
fi
# image-readonly=true: the image refuses writes.
st=0
qemu-io -f raw -c 'write 0 64k' "$(uri "disk0@$id")" > "$dir/out" 2>&1 ||
  st=$?
cat "$dir/out"
test $st -ne 0
grep 'Could not open image: Permission denied' "$dir/out"
# (qemu-io exits 1 when the pattern differs; its "read" line comes anyway)
qemu-io -r -f raw -c 'read -P 0 0 64k' "$(uri "disk0@$id")" > /dev/null
ctl snapshot destroy "$id"
stop_nbdsnapd
