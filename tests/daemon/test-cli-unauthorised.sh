#!/bin/sh
# A uid that is neither root nor in the socket group is refused on the
# API socket with one clear message (exit 1), and nothing changes.
. "$srcdir/functions-daemon.sh"
requires setpriv
set -e
set -x

truncate -s 8M "$dir/disk0.img"
start_nbdsnapd --device "disk0:$dir/disk0.img"
ctl --json device list > "$dir/before"

nobody ()
{
  setpriv --reuid=65534 --regid=65534 --clear-groups "$NBDSNAPCTL" \
    --socket "$api" "$@"
}

# Let nobody reach the socket file: the daemon's own check refuses.
chmod 755 "$dir"
chmod 666 "$api"
for cmd in "device remove disk0" "snapshot create --device disk0 --take" \
           "device list"; do
  st=0
  nobody $cmd 2>"$dir/err" >"$dir/out" || st=$?
  test $st -eq 1
  grep -x "nbdsnapctl: cannot connect to nbdsnapd at $api: access denied (only root and the socket group may use nbdsnapd)" "$dir/err"
  test ! -s "$dir/out"
done
# --json: the same message as an error document.
st=0
nobody --json device remove disk0 >"$dir/out" 2>/dev/null || st=$?
test $st -eq 1
grep '"message": "cannot connect to nbdsnapd at .*: access denied' "$dir/out"
grep 'refused a client with uid 65534' "$dir/nbdsnapd.log"

# The socket's own mode (0660, root's group) refuses too.
chmod 660 "$api"
st=0
nobody version 2>"$dir/err" || st=$?
test $st -eq 1
grep "^nbdsnapctl: cannot connect to nbdsnapd at $api: .*Permission denied (only root and the socket group may use nbdsnapd)" "$dir/err"

# Nothing changed.
ctl --json device list > "$dir/after"
cmp "$dir/before" "$dir/after"
ctl --json snapshot list | grep '"snapshots": \[\]'
stop_nbdsnapd
