# nbdsnap shell tests: helpers.  Source it, then: set -e; set -x.
#
# skip REASON...         skip the test (exit 77); a failure (99) instead
#                        under NBDSNAP_NO_SKIP=1, as scripts/check sets it
# requires CMD...        skip unless every command exists
# cleanup_fn CMD ARGS... run at exit, last registered first
# start_nbdsnap ARGS...  start nbdkit with the plugin on $sock, control
#                        socket $ctl, in the test's private dir $dir
# testctl ARGS...        the test ctl client on $ctl
# uri EXPORT             nbd+unix URI of an export
# fails CMD ARGS...      run CMD, which must fail (set -e ignores "! CMD")

: "${PLUGIN:?PLUGIN is not set: run the tests with make check}"
: "${TESTCTL:?TESTCTL is not set: run the tests with make check}"
NBDKIT=${NBDKIT:-nbdkit}

_cleanup_fns=
cleanup_fn ()
{
  _cleanup_fns="$(printf '%q ' "$@"); $_cleanup_fns"
}
_run_cleanup ()
{
  _status=$?
  set +e
  # A test that passed must also leave a nbdkit that exits cleanly.
  if [ $_status -eq 0 ] && [ -n "$nbdkit_pid" ] &&
     kill -0 "$nbdkit_pid" 2>/dev/null; then
    stop_nbdsnap || _status=1
  fi
  if [ $_status -ne 0 ] && [ $_status -ne 77 ] && [ -s "$dir/nbdkit.log" ]; then
    echo "---- nbdkit log"
    cat "$dir/nbdkit.log"
  fi
  eval "$_cleanup_fns"
  exit $_status
}
trap _run_cleanup EXIT
trap 'exit 130' INT TERM

skip ()
{
  if [ "${NBDSNAP_NO_SKIP:-}" = 1 ]; then
    echo "$0: FAIL: cannot run: $* (NBDSNAP_NO_SKIP=1: scripts/setup provides this)" >&2
    exit 99
  fi
  echo "$0: SKIP: $*"
  exit 77
}

requires ()
{
  for _c in "$@"; do
    command -v "$_c" >/dev/null 2>&1 || skip "$_c is not installed"
  done
}

dir=$(mktemp -d "${TMPDIR:-/var/tmp}/nbdsnap-test.XXXXXX")
cleanup_fn rm -rf "$dir"
sock=$dir/nbd.sock
ctl=$dir/ctl.sock

start_nbdsnap ()
{
  rm -f "$dir/nbdkit.pid" "$sock"
  # Foreground in the background: nbdkit's messages go to
  # $dir/nbdkit.log (shown when a test fails).
  if [ -n "$NBDKIT_PRELOAD" ]; then
    # Sanitizer build: reports go to files that stop_nbdsnap checks.
    export ASAN_OPTIONS="detect_leaks=1:exitcode=23:log_path=$dir/sanitizer"
    export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$dir/sanitizer"
  fi
  LD_PRELOAD=${NBDKIT_PRELOAD:-$LD_PRELOAD} \
  "$NBDKIT" -f --log=stderr -U "$sock" -P "$dir/nbdkit.pid" "$PLUGIN" \
    control="$ctl" "$@" 2>> "$dir/nbdkit.log" &
  nbdkit_pid=$!
  _i=0
  while [ ! -s "$dir/nbdkit.pid" ] || [ ! -S "$ctl" ]; do
    _i=$((_i + 1))
    if ! kill -0 $nbdkit_pid 2>/dev/null; then
      echo "$0: nbdkit exited during start" >&2
      cat "$dir/nbdkit.log" >&2
      return 1
    fi
    if [ $_i -gt 200 ]; then
      echo "$0: nbdkit did not start" >&2
      return 1
    fi
    sleep 0.05
  done
  cleanup_fn kill "$nbdkit_pid"
}

testctl ()
{
  "$TESTCTL" "$ctl" "$@"
}

fails ()
{
  if "$@"; then
    echo "$0: expected to fail, but succeeded: $*" >&2
    return 1
  fi
}

uri ()
{
  echo "nbd+unix:///$1?socket=$sock"
}

# The value of KEY in KEY=VALUE lines on stdin.
kv ()
{
  sed -n "s/^$1=//p"
}

# Make a file of SIZE bytes of reproducible pseudo-random data.
random_file ()
{
  head -c "$2" /dev/urandom > "$1"
}

# Stop the nbdkit started by start_nbdsnap, wait until it is gone, and
# fail if it did not exit cleanly (a crash, or a sanitizer report:
# status 23).
stop_nbdsnap ()
{
  kill -0 "$nbdkit_pid" 2>/dev/null || return 0
  # nbdkit does not close connections still open at exit: wait for the
  # clients to go first (up to 5 s).
  for _i in $(seq 100); do
    [ "$(testctl version 2>/dev/null | kv connections)" = 0 ] && break
    sleep 0.05
  done
  kill "$nbdkit_pid" 2>/dev/null || return 0
  _st=0
  if [ -n "$NBDKIT_PRELOAD" ]; then
    # With libasan preloaded into nbdkit, exit can hang in a library
    # destructor after our cleanup and the leak check: 10 s, then kill.
    for _i in $(seq 200); do
      kill -0 "$nbdkit_pid" 2>/dev/null || break
      sleep 0.05
    done
    if kill -0 "$nbdkit_pid" 2>/dev/null; then
      echo "$0: warning: nbdkit hangs at exit under the sanitizer runtime; killed" >&2
      kill -9 "$nbdkit_pid"
      wait "$nbdkit_pid" 2>/dev/null || _st=143
    fi
    if ls "$dir"/sanitizer.* >/dev/null 2>&1; then
      cat "$dir"/sanitizer.* >&2
      echo "$0: nbdkit's sanitizers reported errors (above)" >&2
      return 1
    fi
    [ $_st -eq 143 ] && return 0
  fi
  wait "$nbdkit_pid" || _st=$?
  # 143: killed by SIGTERM before its handler was installed (or by us).
  if [ $_st -ne 0 ] && [ $_st -ne 143 ]; then
    echo "$0: nbdkit exited with status $_st" >&2
    cat "$dir/nbdkit.log" >&2
    return 1
  fi
}
