#!/usr/bin/env bash
# Stress and soak through nbdsnapd: two 16 MiB devices, four writer
# connections writing and zeroing tagged blocks at random on the
# originals, 30 (or $STRESS_CYCLES) create/take/destroy cycles of a snapshot of both while
# they write; in each cycle three reader connections per image verify
# every block and 600 random runs against the point-in-time content,
# then keep reading while the snapshot is destroyed under them (their
# reads must fail, nothing may hang or crash, the originals must hold
# exactly what was written).  nbdkit is never restarted; its and
# nbdsnapd's descriptor counts and RSS are stable across the cycles.
# See stress-snapshots.c.
. "$srcdir/functions-interop.sh"
: "${STRESS_SNAPSHOTS:?STRESS_SNAPSHOTS is not set: run the tests with make check}"
set -e -o pipefail
set -x

# STRESS_CYCLES: fewer in a sanitizer build (scripts/check).
cycles=${STRESS_CYCLES:-30}
size=$((16 * 1024 * 1024))
truncate -s $size "$dir/disk0.img" "$dir/disk1.img"
start_nbdsnapd --device "disk0:$dir/disk0.img" --device "disk1:$dir/disk1.img"

"$STRESS_SNAPSHOTS" "$api" "$sock" "$dir/state" "$nbdsnapd_pid" $cycles \
  disk0 disk1 | tee "$dir/stress.out"
grep -q "^stress-snapshots: 2 devices, 4 writers, 3 readers, $cycles cycles" \
  "$dir/stress.out"

# Nothing is left behind: no snapshot, and the diff storage is gone
# (unnamed files in $dir: none is open in nbdkit).
[ "$(ctl snapshot list | wc -l)" -eq 1 ]   # the header only
nk_pid=$(cat "$dir/state/nbdkit.pid")
if ls -l "/proc/$nk_pid/fd" | grep -F "$dir/" | grep -v '\.img$\|\.log$'; then
  echo "$0: nbdkit still holds files in $dir (above)" >&2
  exit 1
fi
stop_nbdsnapd
