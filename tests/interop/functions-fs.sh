# nbdsnap filesystem tests (test-fs-*.sh): the scenario's steps, per
# device, on top of functions-interop.sh.  Source it, then: set -e; set -x.
#
# A device NAME lives in $dir/NAME.img; its original export is attached
# (nbdfuse + loop) and mounted on $dir/orig-NAME, its image on
# $dir/img-NAME.  Recorded states, "SHA256  PATH" lines:
#   $dir/NAME.before    the files at the take
#   $dir/NAME.after     the files of the original after the changes
#   $dir/NAME.imgstate  the files of the image after writes into it
#
# fs_disk NAME TYPE          make the device's file (sized for TYPE)
# fs_prepare NAME TYPE       attach, mkfs, mount, write $FS_FILES files
# fs_freeze NAME             fsfreeze -f (thawed by cleanup on failure)
# fs_reference NAME          copy the (frozen) original: the expected image
# fs_thaw NAME               fsfreeze -u
# fs_change NAME             delete, overwrite (whole and in place), add
# fs_verify_image NAME ID    the image export: block for block the
#                            reference; mounted, the files at the take;
#                            writes into it survive a fresh re-attach and
#                            remount; the original is unchanged by them
# fs_finish NAME             (after destroy) fsck -n the original, then a
#                            fresh attach and mount: the changed state
#                            exactly, nothing written into the image
# fs_one_device TYPE         the whole scenario on one device disk0 with
#                            a TYPE filesystem, from nbdsnapd's start to
#                            its stop: prepare, freeze, take, thaw,
#                            change, verify the image, destroy (then the
#                            image export is gone), finish
#
# Counts of what was verified are printed as "verified: ..." lines.

. "$srcdir/functions-interop.sh"

FS_FILES=${FS_FILES:-200}

fs_disk ()
{
  case $2 in
    ext4) truncate -s 64M "$dir/$1.img" ;;
    # mkfs.xfs refuses filesystems of 300 MB or less.
    xfs) truncate -s 320M "$dir/$1.img" ;;
    *) echo "$0: fs_disk: unknown type $2" >&2; return 1 ;;
  esac
  echo "$2" > "$dir/$1.type"
}

_fs_type ()
{
  cat "$dir/$1.type"
}

_fs_mkfs ()
{
  case $1 in
    ext4) mkfs.ext4 -q -F "$2" ;;
    xfs) mkfs.xfs -q -f "$2" ;;
  esac
}

# The image is a clone of a mounted filesystem: xfs refuses a second
# mount of the same UUID unless told.
_fs_image_opts ()
{
  case $1 in
    xfs) echo nouuid ;;
    *) echo "" ;;
  esac
}

fs_prepare ()
{
  attach_export "$1" "orig-$1"
  echo "$attached_dev" > "$dir/$1.odev"
  _fs_mkfs "$2" "$attached_dev"
  mount_fs "$attached_dev" "$dir/orig-$1"
  populate "$dir/orig-$1/data" "$FS_FILES" "$1"
  checksums "$dir/orig-$1" > "$dir/$1.before"
  test "$(wc -l < "$dir/$1.before")" -eq "$FS_FILES"
}

fs_freeze ()
{
  fsfreeze -f "$dir/orig-$1"
  # A failing test must not leave a frozen filesystem behind: umount
  # (registered earlier, so run later) would hang.
  cleanup_fn _fs_thaw_quiet "$dir/orig-$1"
}

_fs_thaw_quiet ()
{
  fsfreeze -u "$1" 2>/dev/null
  return 0
}

fs_reference ()
{
  nbdcopy "$(uri "$1")" "$dir/$1.ref"
}

fs_thaw ()
{
  fsfreeze -u "$dir/orig-$1"
}

# Of the files at the take: every 4th is deleted, the next is rewritten
# with a new size, the next gets 3000 bytes overwritten in place at an
# odd offset; then $FS_FILES / 4 new files are added.
fs_change ()
{
  _fc_root=$dir/orig-$1
  _fc_n=0
  sed 's/^[0-9a-f]*  //' "$dir/$1.before" > "$dir/$1.names"
  while read -r _fc_f; do
    case $((_fc_n % 4)) in
      0) rm "$_fc_root/$_fc_f" ;;
      1) head -c $((_fc_n * 101 + 7)) /dev/urandom > "$_fc_root/$_fc_f" ;;
      2) head -c 3000 /dev/urandom |
           dd of="$_fc_root/$_fc_f" bs=1 seek=$((_fc_n % 5)) conv=notrunc \
              status=none ;;
    esac
    _fc_n=$((_fc_n + 1))
  done < "$dir/$1.names"
  populate "$_fc_root/data/added" $((FS_FILES / 4)) "$1-added"
  sync -f "$_fc_root"
  checksums "$_fc_root" > "$dir/$1.after"
  # The change is visible: nothing of it may be mistaken for the take.
  if cmp -s "$dir/$1.before" "$dir/$1.after"; then
    echo "$0: fs_change $1 changed nothing" >&2
    return 1
  fi
}

# Attach and mount the image export of NAME in snapshot ID as TAG on
# $dir/img-NAME.
_fs_attach_image ()
{
  attach_export "$1@$2" "img-$1"
  echo "$attached_dev" > "$dir/$1.idev"
  mount_fs "$attached_dev" "$dir/img-$1" "$(_fs_image_opts "$(_fs_type "$1")")"
}

_fs_detach_image ()
{
  umount_fs "$dir/img-$1"
  detach_export "img-$1"
}

fs_verify_image ()
{
  _fv_type=$(_fs_type "$1")

  # Block for block, the image is the frozen original.
  nbdcopy "$(uri "$1@$2")" "$dir/$1.imgcopy"
  cmp "$dir/$1.ref" "$dir/$1.imgcopy"
  _fv_blocks=$(($(stat -c %s "$dir/$1.ref") / 4096))
  echo "verified: $1 image: $_fv_blocks blocks of 4 KiB equal to the take"
  rm -f "$dir/$1.ref" "$dir/$1.imgcopy"

  # Mounted: every file as it was at the take; the original as changed.
  _fs_attach_image "$1" "$2"
  checksums "$dir/img-$1" > "$dir/$1.image"
  diff "$dir/$1.before" "$dir/$1.image"
  checksums "$dir/orig-$1" > "$dir/$1.orignow"
  diff "$dir/$1.after" "$dir/$1.orignow"
  echo "verified: $1 image: $(wc -l < "$dir/$1.before") files equal to the take"

  # Writes into the image: they are there after a fresh attach and
  # remount (no cache of ours in between), and only there.
  populate "$dir/img-$1/data/image-only" 30 "$1-image"
  rm "$dir/img-$1/$(sed -n '2s/^[0-9a-f]*  //p' "$dir/$1.before")"
  checksums "$dir/img-$1" > "$dir/$1.imgstate"
  _fs_detach_image "$1"
  _fs_attach_image "$1" "$2"
  checksums "$dir/img-$1" > "$dir/$1.image"
  diff "$dir/$1.imgstate" "$dir/$1.image"
  echo "verified: $1 image: $(wc -l < "$dir/$1.imgstate") files after writes into it and a remount"
  _fs_detach_image "$1"
  # The image's filesystem is consistent too.
  attach_export "$1@$2" "img-$1"
  fs_check "$_fv_type" "$attached_dev"
  detach_export "img-$1"

  test ! -e "$dir/orig-$1/data/image-only"
  checksums "$dir/orig-$1" > "$dir/$1.orignow"
  diff "$dir/$1.after" "$dir/$1.orignow"
}

fs_finish ()
{
  _ff_type=$(_fs_type "$1")
  umount_fs "$dir/orig-$1"
  detach_export "orig-$1"
  # A fresh attach: nothing cached from before.
  attach_export "$1" "orig-$1"
  fs_check "$_ff_type" "$attached_dev"
  mount_fs "$attached_dev" "$dir/orig-$1"
  test ! -e "$dir/orig-$1/data/image-only"
  checksums "$dir/orig-$1" > "$dir/$1.orignow"
  diff "$dir/$1.after" "$dir/$1.orignow"
  echo "verified: $1 original: fsck clean, $(wc -l < "$dir/$1.after") files as changed, none of the image's"
  umount_fs "$dir/orig-$1"
  detach_export "orig-$1"
}

fs_one_device ()
{
  fs_disk disk0 "$1"
  start_nbdsnapd --device "disk0:$dir/disk0.img"
  fs_prepare disk0 "$1"

  _fo_id=$(ctl snapshot create --device disk0)
  fs_freeze disk0
  fs_reference disk0
  ctl snapshot take "$_fo_id"
  fs_thaw disk0
  ctl --json snapshot info "$_fo_id" | grep '"state": *"taken"'

  fs_change disk0
  fs_verify_image disk0 "$_fo_id"

  ctl snapshot destroy "$_fo_id"
  # The image export is gone with the snapshot.
  if nbdinfo "$(uri "disk0@$_fo_id")" > "$dir/gone" 2>&1; then
    cat "$dir/gone"
    echo "$0: disk0@$_fo_id is still served after destroy" >&2
    exit 1
  fi
  fs_finish disk0
  stop_nbdsnapd
}
