#!/bin/sh
# Pre- and post-take hooks (nbdsnapd.conf pre-take-hook, post-take-hook,
# hook-timeout): they run around the quiesce with the snapshot id and
# devices in their environment; a pre-take hook that fails or times out
# aborts the take cleanly: the snapshot stays created (not taken), the
# post-take hook is told NBDSNAP_TAKE_RESULT=aborted, and the error
# names the hook and its status; NBDSNAP_ variables of the daemon's own
# environment are not passed on.
. "$srcdir/functions-daemon.sh"
requires qemu-io nbdcopy
set -e
set -x

truncate -s 8M "$dir/disk0.img"
truncate -s 4M "$dir/disk1.img"

# The hooks: what the pre-take hook does is chosen by $dir/mode.
cat > "$dir/pre-hook" <<EOF
#!/bin/sh
# (a sanitizer build's preload is for nbdkit, not for these tools)
unset LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS
env | grep '^NBDSNAP_' | sort > "$dir/pre.env"
case "\$(cat "$dir/mode")" in
ok)
  # An application flushing its data before the take: in the image.
  qemu-io -f raw -c 'write -P 0x71 0 64k' "$(uri disk0)" >/dev/null
  echo "pre-take hook flushed"
  exit 0 ;;
fail)
  echo "cannot freeze the database"
  exit 3 ;;
hang)
  echo "freezing..."
  echo \$\$ > "$dir/hang.pid"
  exec sleep 60 ;;
esac
EOF
cat > "$dir/post-hook" <<EOF
#!/bin/sh
unset LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS
env | grep '^NBDSNAP_' | sort > "$dir/post.env"
# After the take: in no image.
if [ "\$NBDSNAP_TAKE_RESULT" = ok ]; then
  qemu-io -f raw -c 'write -P 0x72 64k 64k' "$(uri disk0)" >/dev/null
fi
EOF
chmod +x "$dir/pre-hook" "$dir/post-hook"

# The timeout is long enough for qemu-io on a loaded machine; the
# timeout case below runs with a short one.
cat > "$dir/nbdsnapd.conf" <<EOF
[nbdsnapd]
device=disk0:$dir/disk0.img;disk1:$dir/disk1.img;
pre-take-hook=$dir/pre-hook
post-take-hook=$dir/post-hook
hook-timeout=120
EOF
# NBDSNAP_ variables in the daemon's own environment do not reach the
# hooks: they see only what nbdsnapd sets (checked below).
NBDSNAP_TAKE_RESULT=stale NBDSNAP_HOOK=stale \
  start_nbdsnapd --config "$dir/nbdsnapd.conf"
ctl device list | grep '^disk1 '

# Success.
echo ok > "$dir/mode"
id=$(ctl snapshot create --device disk0 --device disk1)
ctl snapshot take "$id"
ctl snapshot info "$id" | grep '^State: *taken'
cat > "$dir/expected.env" <<EOF
NBDSNAP_DEVICES=disk0 disk1
NBDSNAP_DEVICE_PATHS=$dir/disk0.img $dir/disk1.img
NBDSNAP_HOOK=pre-take
NBDSNAP_SNAPSHOT_ID=$id
EOF
diff "$dir/expected.env" "$dir/pre.env"
cat > "$dir/expected.env" <<EOF
NBDSNAP_DEVICES=disk0 disk1
NBDSNAP_DEVICE_PATHS=$dir/disk0.img $dir/disk1.img
NBDSNAP_HOOK=post-take
NBDSNAP_SNAPSHOT_ID=$id
NBDSNAP_TAKE_RESULT=ok
EOF
diff "$dir/expected.env" "$dir/post.env"
grep 'pre-take hook: pre-take hook flushed' "$dir/nbdsnapd.log"
# The pre-take hook's write is in the image, the post-take hook's is not.
nbdcopy "$(uri "disk0@$id")" "$dir/img"
test "$(head -c 64k "$dir/img" | tr -d q | wc -c)" -eq 0
test "$(dd if="$dir/img" bs=64k skip=1 count=1 | tr -d '\0' | wc -c)" -eq 0
test "$(dd if="$dir/disk0.img" bs=64k skip=1 count=1 | tr -d r | wc -c)" -eq 0
ctl snapshot destroy "$id"

# Failure: the take is refused, the snapshot stays created.
echo fail > "$dir/mode"
rm -f "$dir/post.env"
id=$(ctl snapshot create --device disk0)
st=0
ctl snapshot take "$id" 2>"$dir/err" || st=$?
test $st -eq 1
test "$(grep -c "^nbdsnapctl:" "$dir/err")" -eq 1
grep "^nbdsnapctl: pre-take hook failed with exit status 3: cannot freeze the database; snapshot $id was not taken" "$dir/err"
ctl --json snapshot info "$id" | grep '"state": "created"'
grep '^NBDSNAP_TAKE_RESULT=aborted$' "$dir/post.env"
grep '^NBDSNAP_HOOK=post-take$' "$dir/post.env"
# Once the hook works again, the same snapshot is taken.
echo ok > "$dir/mode"
ctl snapshot take "$id"
ctl --json snapshot info "$id" | grep '"state": "taken"'
ctl snapshot destroy "$id"

# create --take with a failing hook: no snapshot is left behind.
echo fail > "$dir/mode"
st=0
ctl snapshot create --device disk0 --take 2>"$dir/err" || st=$?
test $st -eq 1
grep '^nbdsnapctl: no snapshot was created: pre-take hook failed with exit status 3' "$dir/err"
ctl --json snapshot list | grep '"snapshots": \[\]'
ctl device list | grep '^disk0 '
ctl --json device list > "$dir/devices.json"
if grep '"snapshot": "[0-9a-f]' "$dir/devices.json"; then
  exit 1
fi

# Timeout (a short one now): the hook is killed, the take is refused.
stop_nbdsnapd
sed -i 's/^hook-timeout=.*/hook-timeout=5/' "$dir/nbdsnapd.conf"
start_nbdsnapd --config "$dir/nbdsnapd.conf"
echo hang > "$dir/mode"
rm -f "$dir/post.env"
id=$(ctl snapshot create --device disk0)
st=0
ctl snapshot take "$id" 2>"$dir/err" || st=$?
test $st -eq 1
grep "^nbdsnapctl: pre-take hook timed out after 5 s and was killed: freezing...; snapshot $id was not taken" "$dir/err"
ctl --json snapshot info "$id" | grep '"state": "created"'
grep '^NBDSNAP_TAKE_RESULT=aborted$' "$dir/post.env"
# The hook was killed (SIGKILL to its process group): gone, or a zombie
# waiting for its new parent to reap it.
hang=$(cat "$dir/hang.pid")
for i in $(seq 100); do
  state=$(sed -n 's/^State:\t\(.\).*/\1/p' "/proc/$hang/status" 2>/dev/null) ||
    state=
  case "$state" in ''|Z|X) break ;; esac
  sleep 0.05
done
case "$state" in
''|Z|X) ;;
*) echo "$0: the timed-out hook (pid $hang) is still running" >&2; exit 1 ;;
esac
ctl snapshot destroy "$id"

stop_nbdsnapd
