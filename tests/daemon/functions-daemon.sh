# nbdsnap daemon tests: helpers on top of ../functions.sh.
# Source it, then: set -e; set -x.
#
# start_nbdsnapd ARGS...  start nbdsnapd in the foreground (in the
#                         background) with its API socket $api, NBD
#                         listener unix:$sock, state in $dir/state and
#                         unnamed diff storage in $dir; extra ARGS are
#                         passed on (e.g. --device NAME:PATH)
# stop_nbdsnapd           SIGTERM, wait, fail unless it exited 0 (and,
#                         in a sanitizer build, without reports)
# ctl ARGS...             nbdsnapctl on $api
# start_monitor           ./dbus-peer monitor on $api in the background:
#                         every D-Bus signal as a line in $dir/signals
# wait_signal REGEX       until a line of $dir/signals matches (60 s at
#                         most; on failure, show them)
# Also from ../functions.sh: requires, cleanup_fn, $dir, $sock, uri, kv.

: "${NBDSNAPD:?NBDSNAPD is not set: run the tests with make check}"
: "${NBDSNAPCTL:?NBDSNAPCTL is not set: run the tests with make check}"
. "$srcdir/../functions.sh"

api=$dir/api.sock
nbdsnapd_pid=

ctl ()
{
  "$NBDSNAPCTL" --socket "$api" "$@"
}

start_nbdsnapd ()
{
  mkdir -p "$dir/state"
  rm -f "$api"
  if [ -n "$NBDKIT_PRELOAD" ]; then
    # (asan.supp: a bug in nbdkit's own TLS code, see there.)
    export ASAN_OPTIONS="detect_leaks=1:exitcode=23:log_path=$dir/sanitizer:suppressions=$(cd "$srcdir/.." && pwd)/asan.supp"
    export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$dir/sanitizer"
  fi
  # nbdkit inherits the preload (it runs the ASan-built plugin).
  LD_PRELOAD=${NBDKIT_PRELOAD:-$LD_PRELOAD} \
  "$NBDSNAPD" --foreground --log-level=debug \
    --socket "$api" --state-dir "$dir/state" --diff-storage-dir "$dir" \
    --listen "unix:$sock" --nbdkit "$NBDKIT" --plugin "$PLUGIN" \
    "$@" 2>> "$dir/nbdsnapd.log" &
  nbdsnapd_pid=$!
  cleanup_fn _kill_nbdsnapd
  _i=0
  until [ -S "$api" ] && ctl version >/dev/null 2>&1; do
    _i=$((_i + 1))
    if ! kill -0 "$nbdsnapd_pid" 2>/dev/null; then
      echo "$0: nbdsnapd exited during start" >&2
      cat "$dir/nbdsnapd.log" >&2
      nbdsnapd_pid=
      return 1
    fi
    if [ $_i -gt 300 ]; then
      echo "$0: nbdsnapd did not start in 15 s" >&2
      cat "$dir/nbdsnapd.log" >&2
      return 1
    fi
    sleep 0.05
  done
}

_kill_nbdsnapd ()
{
  if [ -n "$nbdsnapd_pid" ] && kill -0 "$nbdsnapd_pid" 2>/dev/null; then
    kill -9 "$nbdsnapd_pid"
  fi
  # An nbdkit left behind by a killed daemon.
  if [ -s "$dir/state/nbdkit.pid" ]; then
    kill -9 "$(cat "$dir/state/nbdkit.pid")" 2>/dev/null
  fi
  return 0
}

stop_nbdsnapd ()
{
  [ -n "$nbdsnapd_pid" ] || return 0
  # A client that has just gone (nbdfuse after its unmount) is still
  # being torn down inside nbdkit for a moment; nbdkit 1.32 stopped then
  # leaves that connection unfreed, which LeakSanitizer reports.  In a
  # sanitizer build, give nbdkit up to 10 s to close such connections.
  if [ -n "$NBDKIT_PRELOAD" ]; then
    _sn_i=0
    while ss -xH 2>/dev/null | grep -qF " $sock " && [ $_sn_i -lt 100 ]; do
      _sn_i=$((_sn_i + 1))
      sleep 0.1
    done
  fi
  kill -TERM "$nbdsnapd_pid"
  _st=0
  wait "$nbdsnapd_pid" || _st=$?
  nbdsnapd_pid=
  if [ -n "$NBDKIT_PRELOAD" ] && ls "$dir"/sanitizer.* >/dev/null 2>&1; then
    cat "$dir"/sanitizer.* >&2
    echo "$0: sanitizers reported errors (above)" >&2
    return 1
  fi
  if [ $_st -ne 0 ]; then
    echo "$0: nbdsnapd exited with status $_st" >&2
    cat "$dir/nbdsnapd.log" >&2
    return 1
  fi
}

# Show the daemon's log when a test fails.
_daemon_log_on_failure ()
{
  if [ "$_status" -ne 0 ] && [ "$_status" -ne 77 ] && [ -s "$dir/nbdsnapd.log" ]; then
    echo "---- nbdsnapd log"
    tail -n 200 "$dir/nbdsnapd.log"
  fi
}
cleanup_fn _daemon_log_on_failure

start_monitor ()
{
  ./dbus-peer monitor "unix:path=$api" > "$dir/signals" 2>&1 &
  _monitor_pid=$!
  cleanup_fn kill "$_monitor_pid"
  wait_signal '^ready$'
}

wait_signal ()
{
  for _w in $(seq 1200); do
    grep -q "$1" "$dir/signals" && return 0
    kill -0 "$_monitor_pid" 2>/dev/null || break
    sleep 0.05
  done
  cat "$dir/signals"
  return 1
}
