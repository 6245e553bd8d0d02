#!/usr/bin/env bash
# Exports and parameters: list_exports lists originals and images with
# descriptions; unknown exports are refused at handshake with a clear
# message; originals are refused over TCP unless allowed; bad
# parameters are refused at startup naming the key.
source ${srcdir:-.}/functions.sh
set -e
set -x
requires nbdinfo qemu-img

truncate -s 8M $dir/a.img
truncate -s 4M $dir/b.img
start_nbdsnap device=a:$dir/a.img device=b:$dir/b.img
id=$(testctl create --tmpfile $dir --limit 8M --device a --take | kv id)

nbdinfo --list --json "nbd+unix:///?socket=$sock" > $dir/list
cat $dir/list
grep -q '"export-name": "a"' $dir/list
grep -q '"export-name": "b"' $dir/list
grep -q "\"export-name\": \"a@$id\"" $dir/list
grep -q "\"export-name\": \"a@$id.cbt\"" $dir/list
grep -q '"description": "nbdsnap original device a' $dir/list
grep -q "\"description\": \"nbdsnap snapshot image of a at snapshot $id\"" $dir/list
# b is in no snapshot: no image of it.
fails grep -q "\"export-name\": \"b@" $dir/list

# Sizes and flags.
[ "$(nbdinfo --size "$(uri a@$id)")" = 8388608 ]
[ "$(nbdinfo --size "$(uri b)")" = 4194304 ]
nbdinfo --json "$(uri a)" > $dir/a.json
grep -q '"can_multi_conn": true' $dir/a.json
grep -q '"can_trim": true' $dir/a.json
grep -q '"can_zero": true' $dir/a.json
grep -q '"can_fua": true' $dir/a.json
grep -q '"can_flush": true' $dir/a.json
nbdinfo --json "$(uri a@$id)" > $dir/img.json
grep -q '"can_multi_conn": true' $dir/img.json

# Unknown exports, malformed names, a device not in the snapshot,
# no export name with two devices.
for e in nope "a@$(uuidgen 2>/dev/null || echo 00000000-0000-0000-0000-000000000000)" \
         "b@$id" "a@notauuid" "a@" "bad%20name"; do
  fails nbdinfo "nbd+unix:///$e?socket=$sock" > $dir/out 2>&1
  cat $dir/out
  grep -q 'No such file or directory' $dir/out
done
fails nbdinfo "nbd+unix:///?socket=$sock" > $dir/out 2>&1
cat $dir/out

# The server logs why, naming the export and the exports there are.
grep -q "unknown export 'nope' (devices: a, b; images are NAME@UUID)" $dir/nbdkit.log
grep -q "unknown export 'b@$id': device b is not in snapshot $id" $dir/nbdkit.log
grep -q "unknown export 'a@notauuid'" $dir/nbdkit.log
grep -q "no export name given; exports are devices (a, b)" $dir/nbdkit.log

# Originals over TCP: refused by default, images served.
port=
for try in $(seq 1 20); do
  p=$((20000 + RANDOM % 20000))
  if LD_PRELOAD=${NBDKIT_PRELOAD:-$LD_PRELOAD} "$NBDKIT" -i 127.0.0.1 -p $p -P $dir/tcp.pid "$PLUGIN" \
       device=c:$dir/b.img 2> $dir/tcp.err; then
    port=$p
    break
  fi
done
[ -n "$port" ]
cleanup_fn kill "$(cat $dir/tcp.pid)"
sleep 0.3
fails nbdinfo "nbd://127.0.0.1:$port/c" > $dir/out 2>&1
cat $dir/out
kill "$(cat $dir/tcp.pid)"
sleep 0.5

for try in $(seq 1 20); do
  p=$((20000 + RANDOM % 20000))
  if LD_PRELOAD=${NBDKIT_PRELOAD:-$LD_PRELOAD} "$NBDKIT" -i 127.0.0.1 -p $p -P $dir/tcp.pid "$PLUGIN" \
       device=c:$dir/b.img allow-original-over-tcp=true 2> $dir/tcp.err; then
    port=$p
    break
  fi
done
sleep 0.3
[ "$(nbdinfo --size "nbd://127.0.0.1:$port/c")" = 4194304 ]
kill "$(cat $dir/tcp.pid)"

# Bad parameters: refused at startup with a message naming the key.
# With libasan preloaded, nbdkit 1.32 hangs in exit() (glibc's locale
# lock, in p11-kit's destructor) once an error message has gone through
# strerror; nbdkit's own file plugin does the same.  There the refusal
# is checked by its message and nbdkit is killed after 20 s.
bad_timeout=
[ -z "$NBDKIT_PRELOAD" ] || bad_timeout="timeout -s KILL 20"
bad ()
{
  fails $bad_timeout env LD_PRELOAD=${NBDKIT_PRELOAD:-$LD_PRELOAD} "$NBDKIT" -s "$PLUGIN" "$@" < /dev/null > /dev/null 2> $dir/err
  cat $dir/err
  grep -q '^nbdkit: error: ' $dir/err
}
bad device=a:$dir/a.img chunk-size=3
grep -q 'chunk-size' $dir/err
bad device=a:$dir/a.img chunk-size=1G
grep -q 'chunk-size=1G: must be a power of two' $dir/err
bad device=a:$dir/a.img cbt-block-size-min=1M cbt-block-size-max=64K
grep -q 'cbt-block-size-min' $dir/err
bad device=a:$dir/a.img image-readonly=maybe
grep -q -i 'maybe' $dir/err
bad device=a:$dir/a.img frobnicate=1
grep -q "unknown parameter 'frobnicate'" $dir/err
bad 'device=bad name:'$dir/a.img
grep -q 'device=bad name' $dir/err
bad device=a
grep -q 'device=a: expected NAME:PATH' $dir/err
bad device=a:$dir/a.img device=a:$dir/b.img
grep -q 'given twice' $dir/err
bad device=a:$dir/a.img device=b:$dir/a.img
grep -q 'given twice' $dir/err
bad device=a:$dir/missing.img
grep -q 'missing.img' $dir/err
bad device=a:/dev/null
grep -q 'not a regular file or block device' $dir/err
bad statedir=$dir/a.img device=a:$dir/a.img
grep -q 'statedir' $dir/err
bad
grep -q 'no device=NAME:PATH given' $dir/err
# The magic key: a bare NAME:PATH is a device.
LD_PRELOAD=${NBDKIT_PRELOAD:-$LD_PRELOAD} "$NBDKIT" -s "$PLUGIN" a:$dir/a.img < /dev/null > /dev/null

# --help and --dump-plugin describe the parameters.
LD_PRELOAD=${NBDKIT_PRELOAD:-$LD_PRELOAD} "$NBDKIT" "$PLUGIN" --help > $dir/help
for k in device control statedir chunk-size chunk-count-max \
         cbt-block-size-min cbt-block-size-max cbt-block-count-max \
         storage-portion storage-low-water image-readonly \
         allow-original-over-tcp; do
  grep -q "^$k=" $dir/help
done
LD_PRELOAD=${NBDKIT_PRELOAD:-$LD_PRELOAD} "$NBDKIT" "$PLUGIN" --dump-plugin | grep -q '^nbdsnap_ctl_protocol=1$'
