#!/bin/sh
# The API socket is made mode 0660, owned by root and its group (root's,
# or the socket-group).  A uid that is neither root nor in the socket
# group is refused on it with one clear message (exit 1), and nothing
# changes; with socket-group set, a non-root member of that group (as
# its primary or a supplementary group) is let in.
. "$srcdir/functions-daemon.sh"
requires setpriv stat getent jq
set -e
set -x

[ "$(id -u)" -eq 0 ] || skip "needs root (setpriv, socket owners)"

truncate -s 8M "$dir/disk0.img"
start_nbdsnapd --device "disk0:$dir/disk0.img"
# The mode and owners the daemon made (no socket-group: root's group).
test "$(stat -c '%a %U %G' "$api")" = "660 root root"
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

# socket-group: an existing group (setpriv sets nobody's groups, so no
# user or group needs to be made).
grp=
for g in daemon bin sys adm; do
  if getent group "$g" >/dev/null; then
    grp=$g
    break
  fi
done
[ -n "$grp" ] || skip "no group daemon, bin, sys or adm for socket-group"
gid=$(getent group "$grp" | cut -d: -f3)
test "$gid" -ne 0 && test "$gid" -ne 65534
printf '[nbdsnapd]\nsocket-group = %s\n' "$grp" > "$dir/nbdsnapd.conf"
log0=$(wc -l < "$dir/nbdsnapd.log")
start_nbdsnapd --config "$dir/nbdsnapd.conf" --device "disk0:$dir/disk0.img"
test "$(stat -c '%a %U %G' "$api")" = "660 root $grp"
chmod 755 "$dir"
version=$("$NBDSNAPD" --version | sed -n 's/^nbdsnapd //p')
test -n "$version"

# member SETPRIV-ARGS... -- CTL-ARGS...: nbdsnapctl as uid 65534.
member ()
{
  _args=
  while [ "$1" != -- ]; do
    _args="$_args $1"
    shift
  done
  shift
  setpriv --reuid=65534 $_args "$NBDSNAPCTL" --socket "$api" "$@"
}

# A supplementary member, then a primary one: let in, and served.
for ids in "--regid=65534 --groups=$gid" "--regid=$gid --clear-groups"; do
  member $ids -- --json version > "$dir/out"
  test "$(jq -r .daemon_version "$dir/out")" = "$version"
  member $ids -- --json device list > "$dir/list"
  cmp "$dir/before" "$dir/list"
  member $ids -- --json snapshot create --device disk0 --take > "$dir/snap"
  id=$(jq -r .id "$dir/snap")
  test "$(jq -r .state "$dir/snap")" = taken
  member $ids -- snapshot destroy "$id"
  ctl --json snapshot list | grep '"snapshots": \[\]'
done
tail -n +$((log0 + 1)) "$dir/nbdsnapd.log" > "$dir/log2"
grep -F "API: serving on $api" "$dir/log2"
fails grep "refused a client" "$dir/log2"

# Not a member: the socket's mode refuses ...
st=0
member --regid=65534 --clear-groups -- version 2>"$dir/err" >"$dir/out" ||
  st=$?
test $st -eq 1
grep -x "nbdsnapctl: cannot connect to nbdsnapd at $api: .*Permission denied (only root and the socket group may use nbdsnapd)" "$dir/err"
test ! -s "$dir/out"
# ... and so does the daemon's own check, when the file lets it through.
chmod 666 "$api"
st=0
member --regid=65534 --clear-groups -- device remove disk0 \
  2>"$dir/err" >"$dir/out" || st=$?
test $st -eq 1
grep -x "nbdsnapctl: cannot connect to nbdsnapd at $api: access denied (only root and the socket group may use nbdsnapd)" "$dir/err"
test ! -s "$dir/out"
grep "refused a client with uid 65534 (pid [0-9]*): only root and the socket group may use nbdsnapd" "$dir/nbdsnapd.log"
ctl --json device list > "$dir/after"
cmp "$dir/before" "$dir/after"
stop_nbdsnapd
