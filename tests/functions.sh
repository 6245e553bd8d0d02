# nbdsnap shell tests: helpers.  Source it, then: set -e; set -x.
#
# requires CMD...        skip (exit 77) unless every command exists
# cleanup_fn CMD ARGS... run at exit, last registered first
# start_nbdsnap ARGS...  start nbdkit with the plugin on $sock, control
#                        socket $ctl, in the test's private dir $dir
# testctl ARGS...        the test ctl client on $ctl
# uri EXPORT             nbd+unix URI of an export

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
  if [ $_status -ne 0 ] && [ $_status -ne 77 ] && [ -s "$dir/nbdkit.log" ]; then
    echo "---- nbdkit log"
    cat "$dir/nbdkit.log"
  fi
  eval "$_cleanup_fns"
  exit $_status
}
trap _run_cleanup EXIT
trap 'exit 130' INT TERM

requires ()
{
  for _c in "$@"; do
    if ! command -v "$_c" >/dev/null 2>&1; then
      echo "$0: SKIP: $_c is not installed"
      exit 77
    fi
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

# Stop the nbdkit started by start_nbdsnap and wait until it is gone.
stop_nbdsnap ()
{
  kill "$nbdkit_pid" 2>/dev/null || return 0
  _i=0
  while kill -0 "$nbdkit_pid" 2>/dev/null; do
    _i=$((_i + 1))
    if [ $_i -gt 200 ]; then
      echo "$0: nbdkit $nbdkit_pid did not stop" >&2
      return 1
    fi
    sleep 0.05
  done
}
