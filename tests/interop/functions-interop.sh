# nbdsnap interop tests: helpers on top of ../daemon/functions-daemon.sh
# (which brings ../functions.sh).  Source it, then: set -e; set -x.
#
# Everything from functions-daemon.sh: start_nbdsnapd, stop_nbdsnapd, ctl,
# $api; and from functions.sh: requires, cleanup_fn, $dir, $sock, uri, kv.
#
# wait_until SECONDS CMD...   run CMD every 0.1 s until it succeeds; fail
#                             after SECONDS
# attach_export EXPORT TAG [NBDFUSE-OPTS...]
#                             nbdfuse the export on $dir/fuse-TAG (the file
#                             $dir/fuse-TAG/nbd) and put a loop device on
#                             it; sets $attached_dev (/dev/loopN).  Cleanup
#                             is registered (loop first, then FUSE).
# detach_export TAG           losetup -d, fusermount3 -u, wait for nbdfuse
#                             to exit; idempotent
# mount_fs DEV DIR [MOUNT-OPTS]
#                             mount DEV on DIR (made if missing); umount is
#                             registered for cleanup
# umount_fs DIR               umount if mounted; idempotent; bounded (120 s)
# populate DIR COUNT SEED     COUNT files of mixed sizes (1 byte .. 1 MiB)
#                             under DIR (in subdirectories), fsynced
# checksums DIR               "SHA256  RELATIVE-PATH" of every regular file
#                             under DIR, sorted by path, on stdout
# fs_check TYPE DEV           read-only fsck (e2fsck -fn / xfs_repair -n);
#                             fails on any problem
#
# need_loop_and_fuse          root, /dev/loop-control and /dev/fuse (made
#                             with modprobe or mknod if missing), or fail
#                             with a clear message; attach_export calls it.
#                             Not a skip: CI has them.

. "$srcdir/../daemon/functions-daemon.sh"

wait_until ()
{
  _wu_limit=$(($1 * 10))
  shift
  _wu_i=0
  until "$@"; do
    _wu_i=$((_wu_i + 1))
    if [ $_wu_i -gt $_wu_limit ]; then
      echo "$0: timed out waiting for: $*" >&2
      return 1
    fi
    sleep 0.1
  done
}

# Root, loop devices and FUSE: set up what can be, fail loudly otherwise.
need_loop_and_fuse ()
{
  if [ "$(id -u)" -ne 0 ]; then
    echo "$0: error: the interop tests must run as root (loop devices, mount)" >&2
    exit 1
  fi
  if [ ! -e /dev/loop-control ]; then
    modprobe loop 2>/dev/null ||
      mknod -m 660 /dev/loop-control c 10 237
  fi
  if [ ! -e /dev/fuse ]; then
    modprobe fuse 2>/dev/null ||
      mknod -m 666 /dev/fuse c 10 229
  fi
  if [ ! -c /dev/loop-control ] || [ ! -c /dev/fuse ]; then
    echo "$0: error: /dev/loop-control or /dev/fuse is missing (run scripts/setup)" >&2
    exit 1
  fi
}

attached_dev=

attach_export ()
{
  _ae_export=$1
  _ae_tag=$2
  shift 2
  _ae_mp=$dir/fuse-$_ae_tag
  need_loop_and_fuse
  mkdir -p "$_ae_mp"
  rm -f "$_ae_mp.pid" "$_ae_mp.loop"
  nbdfuse -P "$_ae_mp.pid" "$@" "$_ae_mp" "$(uri "$_ae_export")" \
    2>> "$dir/nbdfuse-$_ae_tag.log" &
  echo $! > "$_ae_mp.fusepid"
  cleanup_fn detach_export "$_ae_tag"
  _ae_i=0
  until [ -s "$_ae_mp.pid" ] && [ -f "$_ae_mp/nbd" ]; do
    _ae_i=$((_ae_i + 1))
    if ! kill -0 "$(cat "$_ae_mp.fusepid")" 2>/dev/null ||
       [ $_ae_i -gt 300 ]; then
      echo "$0: nbdfuse of $_ae_export did not start" >&2
      cat "$dir/nbdfuse-$_ae_tag.log" >&2
      return 1
    fi
    sleep 0.1
  done
  attached_dev=$(losetup -f --show "$_ae_mp/nbd")
  echo "$attached_dev" > "$_ae_mp.loop"
  # The first use of a fresh loop device must not race its set-up.
  wait_until 10 test -b "$attached_dev"
}

detach_export ()
{
  _de_mp=$dir/fuse-$1
  if [ -s "$_de_mp.loop" ]; then
    _de_dev=$(cat "$_de_mp.loop")
    # Only our own loop device: it still has our FUSE file behind it.
    if losetup -n -O BACK-FILE "$_de_dev" 2>/dev/null | grep -qF "$_de_mp/nbd"; then
      losetup -d "$_de_dev"
    fi
    rm -f "$_de_mp.loop"
  fi
  if [ -s "$_de_mp.fusepid" ]; then
    _de_pid=$(cat "$_de_mp.fusepid")
    if _is_mounted "$_de_mp"; then
      # The loop device lets go of the file asynchronously.
      wait_until 30 fusermount3 -u "$_de_mp" 2>/dev/null ||
        fusermount3 -u -z "$_de_mp"
    fi
    # nbdfuse exits once unmounted; one that does not is killed.
    if ! wait_until 30 _pid_gone "$_de_pid"; then
      kill -9 "$_de_pid" 2>/dev/null
    fi
    rm -f "$_de_mp.fusepid" "$_de_mp.pid"
  fi
  return 0
}

# Also true of a FUSE mount whose server died (where mountpoint(1),
# which stats the directory, fails).
_is_mounted ()
{
  _im_path=$(readlink -f "$(dirname "$1")")/$(basename "$1")
  awk -v d="$_im_path" '$2 == d { found = 1 } END { exit !found }' \
    /proc/self/mounts
}

_pid_gone ()
{
  ! kill -0 "$1" 2>/dev/null
}

mount_fs ()
{
  mkdir -p "$2"
  if [ -n "$3" ]; then
    mount -o "$3" "$1" "$2"
  else
    mount "$1" "$2"
  fi
  cleanup_fn umount_fs "$2"
}

# Bounded: an umount that hangs (a data plane that no longer answers)
# is freed by killing the test's nbdfuse processes, which fails every
# pending request; the umount then finishes, and this fails.
umount_fs ()
{
  _is_mounted "$1" || return 0
  umount "$1" &
  _um_pid=$!
  if ! wait_until 120 _pid_gone "$_um_pid"; then
    echo "$0: umount $1 hangs: killing this test's nbdfuse processes" >&2
    for _um_f in "$dir"/fuse-*.fusepid; do
      [ -s "$_um_f" ] && kill -9 "$(cat "$_um_f")" 2>/dev/null
    done
    wait "$_um_pid"
    return 1
  fi
  wait "$_um_pid"
}

# Sizes cycle through small, odd and large ones so that files land in
# inline data, single blocks, extents and indirect blocks.
populate ()
{
  _po_dir=$1
  _po_count=$2
  _po_seed=$3
  _po_i=0
  while [ $_po_i -lt "$_po_count" ]; do
    _po_sub=$_po_dir/d$((_po_i % 7))
    mkdir -p "$_po_sub"
    case $((_po_i % 6)) in
      0) _po_size=1 ;;
      1) _po_size=$((_po_i * 37 + 100)) ;;
      2) _po_size=4096 ;;
      3) _po_size=$((_po_i * 523 % 65536 + 4097)) ;;
      4) _po_size=$((128 * 1024 + _po_i)) ;;
      5) _po_size=$((1024 * 1024 - _po_i)) ;;
    esac
    head -c "$_po_size" /dev/urandom > "$_po_sub/f-$_po_seed-$_po_i"
    _po_i=$((_po_i + 1))
  done
  sync -f "$_po_dir"
}

checksums ()
{
  (cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum)
}

fs_check ()
{
  case $1 in
    ext4) e2fsck -fn "$2" ;;
    xfs) xfs_repair -n "$2" ;;
    *) echo "$0: fs_check: unknown type $1" >&2; return 1 ;;
  esac
}
