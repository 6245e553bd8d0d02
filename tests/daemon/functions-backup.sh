# nbdsnap backup tests (test-backup-*.sh): helpers on top of
# functions-daemon.sh.  Source it, then: set -e; set -x.  Skips (77)
# without qemu-io, nbdcopy and cmp, which every backup test uses.
#
# Sets bs (the CBT block size, 65536), backup ($dir/backup.img) and
# state (its state file, $backup.nbdsnap.json).
#
# backup_disk SIZE [BS:COUNT:SEEK]...
#                         $dir/disk0.img, SIZE bytes (also $size), a
#                         hole but for random data written by dd with
#                         bs=BS count=COUNT seek=SEEK for each argument
# start_nbdsnapd_tcp ARGS...
#                         start_nbdsnapd ARGS with a TCP listener too, on
#                         127.0.0.1:$port, a free port (up to 8 random
#                         tries; the choice needs no bash $RANDOM)
# jv KEY FILE             the value of KEY in the flat JSON of FILE
#                         (strings unquoted)
# same_blocks A B         both are $size bytes and every block of A
#                         equals the same block of B (on a difference,
#                         list the blocks that differ)
# take                    create and take a snapshot of disk0: $id, its
#                         image export's URI $src (snapshot_uri $id), and
#                         $dir/ref.img, a copy of disk0.img made just
#                         before the take (the tests write nothing
#                         meanwhile): what every backup of $id must
#                         hold; the image export, read whole right
#                         after the take, must equal it
# snapshot_uri ID         the URI take uses: nbd+unix to disk0@ID (a test
#                         may redefine it, e.g. for TCP or TLS)
# changes_number          the changes number of snapshot $id
# start_server SOCK PIDFILE LOG CMD...
#                         CMD (an NBD server) in the background, stderr
#                         to LOG, as $server_pid (killed at exit); ready
#                         once SOCK is a socket and, unless PIDFILE is
#                         "", PIDFILE is not empty (10 s at most)
# stop_server             SIGTERM, wait; fail unless it died of SIGTERM

. "$srcdir/functions-daemon.sh"
requires qemu-io nbdcopy cmp

bs=65536
backup=$dir/backup.img
state=$backup.nbdsnap.json

backup_disk ()
{
  size=$1
  shift
  truncate -s "$size" "$dir/disk0.img"
  for _bd in "$@"; do
    _bd_bs=${_bd%%:*}
    _bd_rest=${_bd#*:}
    dd if=/dev/urandom of="$dir/disk0.img" bs="$_bd_bs" count="${_bd_rest%%:*}" \
       seek="${_bd_rest#*:}" conv=notrunc status=none
  done
}

# A random number 0..65535, from /dev/urandom (dash has no $RANDOM).
_random16 ()
{
  od -An -N2 -tu2 /dev/urandom | tr -d ' \n'
}

start_nbdsnapd_tcp ()
{
  for _try in 1 2 3 4 5 6 7 8; do
    port=$((20000 + $(_random16) % 40000))
    if start_nbdsnapd --listen "tcp:127.0.0.1:$port" "$@"; then
      return 0
    fi
  done
  echo "$0: nbdsnapd did not start with a TCP listener in 8 tries" >&2
  return 1
}

jv () { sed -n "s/^  \"$1\": //p" "$2" | sed 's/,$//; s/^"//; s/"$//'; }

same_blocks ()
{
  [ "$(stat -c %s "$1")" = "$size" ] && [ "$(stat -c %s "$2")" = "$size" ]
  if ! cmp -s "$1" "$2"; then
    cmp -l "$1" "$2" | awk -v bs=$bs '{ print "block", int(($1 - 1) / bs) }' |
      uniq | head -20
    return 1
  fi
}

snapshot_uri () { uri "disk0@$1"; }

take ()
{
  rm -f "$dir/ref.img" "$dir/image.img"
  cp --sparse=always "$dir/disk0.img" "$dir/ref.img"
  id=$(ctl snapshot create --device disk0 --take)
  src=$(snapshot_uri "$id")
  nbdcopy "$src" "$dir/image.img"
  cmp "$dir/ref.img" "$dir/image.img"
  rm -f "$dir/image.img"
}

changes_number ()
{
  ctl --json snapshot info "$id" |
    sed -n 's/.*"changes_number": \([0-9]*\).*/\1/p'
}

server_pid=
_server_cleanup=
start_server ()
{
  _ss_sock=$1
  _ss_pidfile=$2
  _ss_log=$3
  shift 3
  rm -f "$_ss_sock" ${_ss_pidfile:+"$_ss_pidfile"}
  "$@" 2>> "$_ss_log" &
  server_pid=$!
  if [ -z "$_server_cleanup" ]; then
    cleanup_fn _kill_server
    _server_cleanup=1
  fi
  for _ss_i in $(seq 200); do
    if [ -S "$_ss_sock" ] &&
       { [ -z "$_ss_pidfile" ] || [ -s "$_ss_pidfile" ]; }; then
      return 0
    fi
    sleep 0.05
  done
  return 1
}

stop_server ()
{
  kill "$server_pid"
  wait "$server_pid" || [ $? = 143 ]
  server_pid=
}

_kill_server () { [ -z "$server_pid" ] || kill "$server_pid"; }
