#!/bin/sh
# make install, then the installed nbdsnapd with no --plugin and no
# --nbdkit: it finds the plugin where make install put it and serves
# an original whose every byte reads back, and the installed
# nbdsnapctl talks to it.  The install goes to DESTDIR=$dir/root; a
# private mount namespace (unshare -m) puts $dir/root$prefix over
# $prefix for the daemon alone, so nothing outside the test changes.
. "$srcdir/../tests/functions.sh"
requires unshare mount nbdcopy nbdinfo cmp
set -e
set -x

: "${TOP_BUILDDIR:?}" "${PREFIX:?}" "${SBINDIR:?}" "${BINDIR:?}" "${MAKE:=make}"
[ "$(id -u)" -eq 0 ] || skip "needs root (a private mount namespace)"
[ -d "$PREFIX" ] || skip "the prefix $PREFIX does not exist (make distcheck checks before it installs)"

root=$dir/root
if ! $MAKE -C "$TOP_BUILDDIR" install DESTDIR="$root" > "$dir/install.log" 2>&1; then
  tail -30 "$dir/install.log"
  exit 1
fi
for f in "$SBINDIR/nbdsnapd" "$BINDIR/nbdsnapctl"; do
  test -x "$root$f"
done

# The built-in defaults the installed daemon will use.
"$root$SBINDIR/nbdsnapd" --help > "$dir/help"
plugin=$(sed -n 's/.*--plugin=PATH .*(default \(.*\))$/\1/p' "$dir/help")
nbdkit=$(sed -n 's/.*--nbdkit=PATH .*(default \(.*\))$/\1/p' "$dir/help")
case "$plugin" in "$PREFIX"/*) ;; *) echo "plugin default '$plugin' is not under $PREFIX"; exit 1 ;; esac
test -f "$root$plugin"
test -x "$nbdkit"

head -c 4M /dev/urandom > "$dir/disk0.img"
cp "$dir/disk0.img" "$dir/ref.img"
mkdir "$dir/state"
api=$dir/api.sock
LD_PRELOAD=${NBDKIT_PRELOAD:-$LD_PRELOAD} \
unshare -m sh -c 'mount --bind "$1" "$2" && shift 2 && exec "$@"' sh \
  "$root$PREFIX" "$PREFIX" \
  "$SBINDIR/nbdsnapd" --foreground --socket "$api" --state-dir "$dir/state" \
  --diff-storage-dir "$dir" --listen "unix:$sock" \
  --device "disk0:$dir/disk0.img" 2> "$dir/nbdsnapd.log" &
pid=$!
cleanup_fn kill -9 "$pid"
i=0
until [ -S "$api" ]; do
  i=$((i + 1))
  if [ $i -gt 300 ] || ! kill -0 "$pid"; then
    cat "$dir/nbdsnapd.log"; exit 1
  fi
  sleep 0.05
done
cat "$dir/nbdsnapd.log"
# nbdkit was started with the installed plugin.
grep -F "started nbdkit (pid" "$dir/nbdsnapd.log" | grep -F " $plugin "

ctl () { "$root$BINDIR/nbdsnapctl" --socket "$api" "$@"; }
ctl version > "$dir/version"
grep -E '^data plane: nbdkit pid [1-9][0-9]*, plugin [0-9]' "$dir/version"
ctl device list | grep "^disk0 "
nbdinfo --size "$(uri disk0)" | grep -x 4194304
nbdcopy "$(uri disk0)" "$dir/read.img"
cmp "$dir/ref.img" "$dir/read.img"
# And a snapshot through the installed pair.
id=$(ctl snapshot create --device disk0 --take)
nbdcopy "$(uri "disk0@$id")" "$dir/image.img"
cmp "$dir/ref.img" "$dir/image.img"
ctl snapshot destroy "$id"

kill -TERM "$pid"
st=0
wait "$pid" || st=$?
[ $st -eq 0 ]
grep "nbdsnapd: info: stopped" "$dir/nbdsnapd.log"
