#!/bin/sh
# The system bus policy org.nbdsnap.Manager1.conf, on a private bus
# with the default policy of the system bus (deny owning names and
# sending method calls unless a policy allows it):
# - nbdsnapd --system-bus (root) owns org.nbdsnap.Manager1, and root
#   calls its methods and reads its properties;
# - another user (nobody) may neither call the methods nor read the
#   properties nor own the name, but may introspect;
# - with the commented group example enabled, a member of that group
#   may call it.
. "$srcdir/../tests/functions.sh"
requires dbus-daemon gdbus setpriv xmllint
set -e
set -x

: "${NBDSNAPD:?}" "${NBDSNAPCTL:?}" "${NBDKIT:?}" "${PLUGIN:?}"
[ "$(id -u)" -eq 0 ]
# Absolute: dbus-daemon reads a relative <include> against the
# directory of the configuration file, not ours.
policy=$(cd "$srcdir" && pwd)/org.nbdsnap.Manager1.conf
xmllint --noout "$policy"
group=$(id -gn nobody)
# nobody must reach the bus socket in $dir.
chmod 0755 "$dir"

# The group example, uncommented for $group.
sed -e "/^  <!--\$/,/^  -->\$/{ /<policy group=\|<allow send_destination\|<\/policy>/!d; s/group=\"backup\"/group=\"$group\"/; }" \
  "$policy" > "$dir/group.conf"
xmllint --noout "$dir/group.conf"
grep -q "<policy group=\"$group\">" "$dir/group.conf"

# Like /usr/share/dbus-1/system.conf, on a private socket.
bus_conf ()
{
  cat <<XML
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$dir/bus.sock</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <include>$1</include>
</busconfig>
XML
}

bus_pid=
start_bus ()
{
  rm -f "$dir/bus.sock"
  bus_conf "$1" > "$dir/bus.conf"
  dbus-daemon --config-file="$dir/bus.conf" --nofork 2> "$dir/bus.log" &
  bus_pid=$!
  cleanup_fn kill "$bus_pid"
  i=0
  until [ -S "$dir/bus.sock" ]; do
    i=$((i + 1))
    if [ $i -ge 300 ] || ! kill -0 "$bus_pid" 2>/dev/null; then
      echo "$0: dbus-daemon did not start" >&2
      cat "$dir/bus.log" >&2
      return 1
    fi
    sleep 0.05
  done
}
stop_bus ()
{
  kill "$bus_pid"
  wait "$bus_pid" || :
}
export DBUS_SYSTEM_BUS_ADDRESS="unix:path=$dir/bus.sock"

api=$dir/api.sock
mkdir "$dir/state"
: > "$dir/empty.conf"
: > "$dir/nbdsnapd.log"
nbdsnapd_pid=
start_daemon ()
{
  rm -f "$api"
  cat "$dir/nbdsnapd.log" >> "$dir/nbdsnapd.old.log"
  : > "$dir/nbdsnapd.log"
  LD_PRELOAD=${NBDKIT_PRELOAD:-$LD_PRELOAD} \
  "$NBDSNAPD" --foreground --config "$dir/empty.conf" --system-bus \
    --socket "$api" --state-dir "$dir/state" --listen "unix:$sock" \
    --nbdkit "$NBDKIT" --plugin "$PLUGIN" 2>> "$dir/nbdsnapd.log" &
  nbdsnapd_pid=$!
  cleanup_fn kill -9 "$nbdsnapd_pid"
  i=0
  until grep -q 'system bus: serving org.nbdsnap.Manager1' \
          "$dir/nbdsnapd.log"; do
    i=$((i + 1))
    if [ $i -gt 600 ] || ! kill -0 "$nbdsnapd_pid"; then
      cat "$dir/nbdsnapd.log"; exit 1
    fi
    sleep 0.05
  done
}
stop_daemon ()
{
  kill -TERM "$nbdsnapd_pid"
  wait "$nbdsnapd_pid"
}

call ()                         # call [setpriv options --] METHOD ARGS
{
  gdbus call --system --dest org.nbdsnap.Manager1 \
    --object-path /org/nbdsnap/Manager1 --method "$@"
}
as_nobody ()
{
  setpriv --reuid=nobody --regid="$group" --clear-groups "$@"
}

start_bus "$policy"
start_daemon

# Root: methods and properties.
call org.nbdsnap.Manager1.Version '{}' > "$dir/out"
grep "'daemon_version': <'" "$dir/out"
call org.freedesktop.DBus.Properties.Get org.nbdsnap.Manager1 Version \
  > "$dir/out"
grep "<'" "$dir/out"

# Anyone else: refused by the bus, whatever the method.
for m in "org.nbdsnap.Manager1.Version {}" \
         "org.nbdsnap.Manager1.ListSnapshots {}" \
         "org.nbdsnap.Manager1.CreateSnapshot ['x'] {}" \
         "org.freedesktop.DBus.Properties.Get org.nbdsnap.Manager1 Version"; do
  # shellcheck disable=SC2086
  if as_nobody gdbus call --system --dest org.nbdsnap.Manager1 \
       --object-path /org/nbdsnap/Manager1 --method $m > "$dir/out" 2>&1; then
    cat "$dir/out"; exit 1
  fi
  cat "$dir/out"
  grep -q 'org.freedesktop.DBus.Error.AccessDenied' "$dir/out"
done
# ... but may introspect.
as_nobody gdbus introspect --system --dest org.nbdsnap.Manager1 \
  --object-path /org/nbdsnap/Manager1 > "$dir/out"
grep -q 'interface org.nbdsnap.Manager1' "$dir/out"
# ... and may not own the name (a queued request is refused too).
if as_nobody gdbus call --system --dest org.freedesktop.DBus \
     --object-path /org/freedesktop/DBus \
     --method org.freedesktop.DBus.RequestName org.nbdsnap.Manager1 4 \
     > "$dir/out" 2>&1; then
  cat "$dir/out"; exit 1
fi
grep -q 'org.freedesktop.DBus.Error.AccessDenied' "$dir/out"
# Nothing was created for the refused caller.
call org.nbdsnap.Manager1.ListSnapshots '{}' | grep -x '(@aa{sv} \[\],)'
stop_daemon
stop_bus

# The group example: a member of the group may call.
start_bus "$dir/group.conf"
start_daemon
as_nobody gdbus call --system --dest org.nbdsnap.Manager1 \
  --object-path /org/nbdsnap/Manager1 \
  --method org.nbdsnap.Manager1.Version '{}' > "$dir/out"
grep "'daemon_version': <'" "$dir/out"
# Still not a user outside the group.
if setpriv --reuid=nobody --regid=daemon --clear-groups gdbus call --system \
     --dest org.nbdsnap.Manager1 --object-path /org/nbdsnap/Manager1 \
     --method org.nbdsnap.Manager1.Version '{}' > "$dir/out" 2>&1; then
  cat "$dir/out"; exit 1
fi
grep -q 'org.freedesktop.DBus.Error.AccessDenied' "$dir/out"
stop_daemon
stop_bus
