#!/bin/sh
# The API socket from a stock D-Bus tool, and the named D-Bus errors.
#
# 1. dbus-send --peer (the example in nbdsnapd(8), API): the properties
#    and the introspection data, checked against the daemon's own
#    answers.  (gdbus and busctl cannot be used: they expect a message
#    bus; dbus-send cannot build the a{sv} that every method takes.)
# 2. NotFound, InvalidArgument (option types, ranges, unknown options),
#    WrongState and Busy come back with their exact names
#    (org.nbdsnap.Error.*) and one-line messages, through dbus-peer, and
#    a refused call changes nothing.
. "$srcdir/functions-daemon.sh"
requires dbus-send jq
set -e
set -x

truncate -s 8M "$dir/disk0.img"
truncate -s 8M "$dir/disk1.img"
start_nbdsnapd --device "disk0:$dir/disk0.img" --device "disk1:$dir/disk1.img"

# ---- 1. dbus-send, peer-to-peer, as documented.
obj=/org/nbdsnap/Manager1
send ()
{
  dbus-send --peer="unix:path=$api" --print-reply "$obj" "$@"
}

version=$("$NBDSNAPD" --version | sed -n 's/^nbdsnapd //p')
test -n "$version"
ctl --json version > "$dir/version.json"
test "$(jq -r .daemon_version "$dir/version.json")" = "$version"

send org.freedesktop.DBus.Properties.Get \
  string:org.nbdsnap.Manager1 string:Version > "$dir/get"
grep -x "   variant  *string \"$version\"" "$dir/get"

send org.freedesktop.DBus.Properties.GetAll \
  string:org.nbdsnap.Manager1 > "$dir/getall"
cat "$dir/getall"
# Each property name, then its value on the next line.
value ()
{
  grep -A1 -x "  *string \"$1\"" "$dir/getall" | sed -n 2p | sed 's/^ *//'
}
test "$(value Version)" = "variant             string \"$version\""
test "$(value PluginVersion)" = \
  "variant             string \"$(jq -r .plugin_version "$dir/version.json")\""
pid=$(cat "$dir/state/nbdkit.pid")
test "$(value DataPlanePid)" = "variant             int32 $pid"
test "$(value DataPlaneRestarts)" = "variant             uint32 0"
grep -x "  *string \"nbd+unix:///?socket=$sock\"" "$dir/getall"

send org.freedesktop.DBus.Introspectable.Introspect > "$dir/introspect"
grep '<interface name="org.nbdsnap.Manager1">' "$dir/introspect"
grep '<method name="CreateSnapshot">' "$dir/introspect"
grep '<signal name="SnapshotDestroyed">' "$dir/introspect"

# A method through dbus-send: a{ss} is the nearest it can send, and the
# daemon refuses it (the reason nbdsnapd(8) points to nbdsnapctl).
st=0
send org.nbdsnap.Manager1.Version dict:string:string: 2>"$dir/err" || st=$?
test $st -eq 1
grep 'org.freedesktop.DBus.Error.InvalidArgs: .*(a{ss}).*(a{sv})' "$dir/err"

# ---- 2. Named errors.
# api_error METHOD ARGS NAME MESSAGE: the call fails with exactly that.
api_error ()
{
  _st=0
  ./dbus-peer call "unix:path=$api" "$1" "$2" >"$dir/out" 2>"$dir/err" ||
    _st=$?
  cat "$dir/err"
  test $_st -eq 1
  test ! -s "$dir/out"
  test "$(cat "$dir/err")" = "org.nbdsnap.Error.$3: $4"
}

# NotFound: an unknown (well-formed) snapshot id, an unknown device.
none=00000000-0000-4000-8000-000000000000
for m in GetSnapshotInfo TakeSnapshot DestroySnapshot WaitEvent; do
  api_error $m "('$none', @a{sv} {})" NotFound "no snapshot $none"
done
api_error RemoveDevice "('nosuch', @a{sv} {})" NotFound "no device 'nosuch'"
api_error CreateSnapshot "(['nosuch'], @a{sv} {})" NotFound \
  "no device 'nosuch'"
api_error GetCbtInfo "('nosuch', @a{sv} {})" NotFound "no device 'nosuch'"

# InvalidArgument: options of the wrong type or out of range, an
# unknown option (nothing is created: checked at the end).
api_error CreateSnapshot "(['disk1'], {'take': <'yes'>})" InvalidArgument \
  "option 'take' must be a boolean"
api_error CreateSnapshot "(['disk1'], {'diff_storage': <7>})" \
  InvalidArgument "option 'diff_storage' must be a string"
api_error CreateSnapshot "(['disk1'], {'limit': <'1G'>})" InvalidArgument \
  "option 'limit' must be an integer"
api_error CreateSnapshot "(['disk1'], {'limit': <int64 0>})" \
  InvalidArgument \
  "option 'limit' is 0: it must be from 1 to 9223372036854775807"
api_error GetChangedRanges "('disk0', uint32 0, {'snapshot': <true>})" \
  InvalidArgument "option 'snapshot' must be a string"
api_error CreateSnapshot "(['disk1'], {'bogus': <1>})" InvalidArgument \
  "unknown option 'bogus' (options: diff_storage, limit, take)"

# A taken snapshot of disk0.
./dbus-peer call "unix:path=$api" CreateSnapshot \
  "(['disk0'], {'take': <true>})" > "$dir/created"
id=$(sed -n "s/^('\([0-9a-f-]*\)', .*/\1/p" "$dir/created")
grep -F "'state': <'taken'>" "$dir/created"
test ${#id} -eq 36

# WrongState: taking it again.
api_error TakeSnapshot "('$id', @a{sv} {})" WrongState \
  "snapshot $id is already taken"

# Busy: disk0 in a second snapshot (alone or with a free device), and
# removing disk0 while it is in one.
api_error CreateSnapshot "(['disk0'], @a{sv} {})" Busy \
  "device 'disk0' is already in snapshot $id"
api_error CreateSnapshot "(['disk1', 'disk0'], @a{sv} {})" Busy \
  "device 'disk0' is already in snapshot $id"
api_error RemoveDevice "('disk0', @a{sv} {})" Busy \
  "device 'disk0' is in a snapshot"

# Nothing changed: one snapshot, of disk0, taken; both devices attached;
# disk1 (first in the refused create) is free for a snapshot.
ctl --json snapshot list > "$dir/snapshots"
test "$(jq -c '[.snapshots[] | [.id, .state, .devices]]' "$dir/snapshots")" = \
  "[[\"$id\",\"taken\",[\"disk0\"]]]"
test "$(ctl --json device list | jq -c '[.devices[].name] | sort')" = \
  '["disk0","disk1"]'
./dbus-peer call "unix:path=$api" CreateSnapshot "(['disk1'], @a{sv} {})" \
  > "$dir/created1"
grep -F "'state': <'created'>" "$dir/created1"

stop_nbdsnapd
