#!/bin/sh
# A TCP listener with TLS-PSK (--tls require --tls-psk FILE): libnbd
# clients (nbdinfo, nbdcopy) with the key read an image export with the
# right content; a plain-text client and a client with a wrong key are
# refused; the original export is not served over TCP by default.
. "$srcdir/functions-daemon.sh"
requires psktool nbdinfo nbdcopy
set -e
set -x

psktool -u alice -p "$dir/keys.psk" > /dev/null
psktool -u alice -p "$dir/wrong.psk" > /dev/null
random_file "$dir/ref0" 8M
cp "$dir/ref0" "$dir/disk0.img"
# Port 0: the daemon binds a free port and reports it.
start_nbdsnapd --device "disk0:$dir/disk0.img" --listen tcp:127.0.0.1:0 \
  --tls require --tls-psk "$dir/keys.psk"
ctl --json version > "$dir/version.json"
port=$(sed -n 's/.*"port": \([0-9]*\).*/\1/p' "$dir/version.json")
test "$port" -gt 0
grep '"tls": "require"' "$dir/version.json"

# nbdkit applies --tls to every listener: the unix one needs TLS too.
unix_tls="nbds+unix://alice@/disk0?socket=$sock&tls-psk-file=$dir/keys.psk"
# Take a snapshot, then overwrite the first 2 MiB of the original.
id=$(ctl snapshot create --device disk0 --take)
head -c 2M /dev/zero | tr '\0' w > "$dir/w2m"
nbdcopy "$dir/w2m" "$unix_tls"
# snapshot info gives the TLS URI of the image on the TCP listener.
ctl --json snapshot info "$id" > "$dir/info.json"
grep "\"nbds://[^\"]*:$port/disk0@$id\"" "$dir/info.json"

tls_uri ()
{
  echo "nbds://alice@127.0.0.1:$port/$1?tls-psk-file=$2"
}

# With the key: the image, with the content of the take.
nbdinfo "$(tls_uri "disk0@$id" "$dir/keys.psk")" > "$dir/nbdinfo"
grep -E "size: *8388608" "$dir/nbdinfo"
nbdinfo --list "$(tls_uri "" "$dir/keys.psk")" > "$dir/list"
grep "^export=\"disk0@$id\":$" "$dir/list"
nbdcopy "$(tls_uri "disk0@$id" "$dir/keys.psk")" "$dir/img"
cmp "$dir/ref0" "$dir/img"

# Plain text under require: refused.
st=0
nbdinfo "nbd://127.0.0.1:$port/disk0@$id" > "$dir/out" 2>&1 || st=$?
cat "$dir/out"
test $st -ne 0
# (the server answers NBD_REP_ERR_TLS_REQD, which libnbd calls ENOTSUP)
grep 'opt_go request: Operation not supported' "$dir/out"
st=0
nbdcopy "nbd://127.0.0.1:$port/disk0@$id" "$dir/img2" 2>"$dir/err" || st=$?
test $st -ne 0
# A wrong key: refused.
st=0
nbdinfo "$(tls_uri "disk0@$id" "$dir/wrong.psk")" > "$dir/out" 2>&1 || st=$?
cat "$dir/out"
test $st -ne 0
grep 'gnutls_handshake' "$dir/out"
# The original is not served over TCP, even with TLS.
st=0
nbdinfo "$(tls_uri disk0 "$dir/keys.psk")" > "$dir/out" 2>&1 || st=$?
cat "$dir/out"
test $st -ne 0
grep "export 'disk0' is an original device: it is served on unix sockets only" \
  "$dir/nbdsnapd.log"
# ... nor listed there.
if grep '^export="disk0":$' "$dir/list"; then
  exit 1
fi
# On the unix listener the original is there, with the new data; plain
# text is refused there too.
nbdcopy "$unix_tls" "$dir/orig"
nbdinfo --list "nbds+unix://alice@/?socket=$sock&tls-psk-file=$dir/keys.psk" \
  > "$dir/list"
grep '^export="disk0":$' "$dir/list"
grep "^export=\"disk0@$id\":$" "$dir/list"
test "$(head -c 2M "$dir/orig" | tr -d w | wc -c)" -eq 0
cmp -i 2M "$dir/ref0" "$dir/orig"
st=0
nbdinfo "$(uri disk0)" > "$dir/out" 2>&1 || st=$?
test $st -ne 0

ctl snapshot destroy "$id"
stop_nbdsnapd
