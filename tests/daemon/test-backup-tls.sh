#!/usr/bin/env bash
# nbdsnapctl backup over TLS-PSK (nbdsnapd --tls require --tls-psk):
# a full backup and incremental ones with writes in between, over
# nbds:// (TCP) and nbds+unix://, each equal to the image as read right
# after the take; without TLS or with a wrong key the backup fails
# clearly and leaves the backup and its state file alone.
. "$srcdir/functions-backup.sh"
requires psktool
set -e
set -x

backup_disk $((32 * 1024 * 1024)) 1M:4:2

mkdir "$dir/tls" "$dir/bad"
psk=$dir/tls/keys.psk
psktool -u alice -p "$psk" > /dev/null
psktool -u alice -p "$dir/bad/keys.psk" > /dev/null
chmod 600 "$psk"

start_nbdsnapd_tcp --tls require --tls-psk "$psk" \
                   --device "disk0:$dir/disk0.img"

# qemu-io on the original over the unix socket, with TLS.
qio ()
{
  qemu-io --object "tls-creds-psk,id=tls0,endpoint=client,dir=$dir/tls,username=alice" \
    --image-opts "driver=nbd,server.type=unix,server.path=$sock,export=disk0,tls-creds=tls0" \
    "$@" > /dev/null
}
# libnbd takes the PSK username from the URI's user part.
q="tls-psk-file=$psk"
snapshot_uri () { echo "nbds://alice@127.0.0.1:$port/disk0@$1?$q"; }

qio -c "write -P 1 0 100k"
take
ctl --json backup "$src" "$backup" > "$dir/out.json"
[ "$(jv mode "$dir/out.json")" = full ]
same_blocks "$dir/ref.img" "$backup"

# Incremental over TCP.
ctl snapshot destroy "$id"
qio -c "write -P 2 5M 200k" -c "write -P 3 $((size - 1000)) 1000"
take
ctl --json backup --incremental "$src" "$backup" > "$dir/out.json"
[ "$(jv mode "$dir/out.json")" = incremental ]
[ "$(jv blocks "$dir/out.json")" = 5 ]        # 4 at 5M, the last one
same_blocks "$dir/ref.img" "$backup"

# Incremental over nbds+unix.
ctl snapshot destroy "$id"
qio -c "write -P 4 64k 64k" -c "write -z 20M 1M"
take
ctl --json backup --incremental --verify \
    "nbds+unix://alice@/disk0@$id?socket=$sock&$q" "$backup" > "$dir/out.json"
[ "$(jv mode "$dir/out.json")" = incremental ]
[ "$(jv blocks "$dir/out.json")" = 17 ]
same_blocks "$dir/ref.img" "$backup"

# Without TLS, or with another key: refused, nothing changes.
cp "$backup" "$dir/before.img"
cp "$backup.nbdsnap.json" "$dir/before.json"
st=0
ctl backup --incremental "nbd://127.0.0.1:$port/disk0@$id" "$backup" \
    2> "$dir/err" || st=$?
[ $st = 1 ]
grep -q "^nbdsnapctl: backup: source nbd://127.0.0.1:$port/disk0@$id: " \
     "$dir/err"
st=0
ctl backup --incremental \
    "nbds://alice@127.0.0.1:$port/disk0@$id?tls-psk-file=$dir/bad/keys.psk" \
    "$backup" 2> "$dir/err" || st=$?
[ $st = 1 ]
grep -q "^nbdsnapctl: backup: source nbds://" "$dir/err"
cmp "$dir/before.img" "$backup"
cmp "$dir/before.json" "$backup.nbdsnap.json"

ctl snapshot destroy "$id"
stop_nbdsnapd
