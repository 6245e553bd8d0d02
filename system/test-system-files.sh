#!/bin/sh
# The systemd unit and the example configuration, with the real daemon:
# - nbdsnapd.service passes systemd-analyze verify (ExecStart pointed at
#   the built nbdsnapd, which is not installed yet);
# - nbdsnapd accepts the example nbdsnapd.conf, and the unit's
#   Type=notify holds: under it, nbdsnapd --foreground sends READY=1 on
#   $NOTIFY_SOCKET once the API and the NBD socket answer, and
#   STOPPING=1 on SIGTERM, then exits 0.
. "$srcdir/../tests/functions.sh"
requires systemd-analyze python3 nbdinfo
set -e
set -x

: "${NBDSNAPD:?}" "${NBDSNAPCTL:?}" "${NBDKIT:?}" "${PLUGIN:?}"

# The unit, checked by systemd itself.
grep -q '^Type=notify$' nbdsnapd.service
grep -q '^ExecStart=/.*/nbdsnapd --foreground$' nbdsnapd.service
! grep -n '@[a-zA-Z_]*@' nbdsnapd.service nbdsnapd.conf
sed "s|^ExecStart=[^ ]*|ExecStart=$NBDSNAPD|" nbdsnapd.service \
  > "$dir/nbdsnapd.service"
systemd-analyze verify --man=no "$dir/nbdsnapd.service" > "$dir/verify.log" 2>&1 || {
  cat "$dir/verify.log"; exit 1; }
cat "$dir/verify.log"
# Warnings about this unit's lines count as failures.
! grep 'nbdsnapd.service:' "$dir/verify.log"

# A notify socket, as systemd's: one datagram per line in $dir/notify.
cat > "$dir/notify.py" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a") as out:
    while True:
        msg = s.recv(4096).decode()
        out.write(msg.replace("\n", " ") + "\n")
        out.flush()
        if "STOPPING=1" in msg:
            break
PY
: > "$dir/notify"
python3 "$dir/notify.py" "$dir/notify.sock" "$dir/notify" &
notify_pid=$!
cleanup_fn kill "$notify_pid"
i=0
until [ -S "$dir/notify.sock" ]; do
  i=$((i + 1)); [ $i -lt 300 ]; sleep 0.05
done

# The example file, as installed, with the test's paths on the command
# line (they override the file).
truncate -s 4M "$dir/disk0.img"
api=$dir/api.sock
mkdir "$dir/state"
LD_PRELOAD=${NBDKIT_PRELOAD:-$LD_PRELOAD} \
NOTIFY_SOCKET=$dir/notify.sock "$NBDSNAPD" --foreground \
  --config nbdsnapd.conf --socket "$api" --state-dir "$dir/state" \
  --listen "unix:$sock" --nbdkit "$NBDKIT" --plugin "$PLUGIN" \
  --device "disk0:$dir/disk0.img" 2> "$dir/nbdsnapd.log" &
pid=$!
cleanup_fn kill -9 "$pid"
i=0
until grep -q 'READY=1' "$dir/notify"; do
  i=$((i + 1))
  if [ $i -gt 600 ] || ! kill -0 "$pid"; then
    cat "$dir/nbdsnapd.log"; exit 1
  fi
  sleep 0.05
done
# Ready means ready: the API and the original export answer now.
"$NBDSNAPCTL" --socket "$api" version
nbdinfo --size "$(uri disk0)" | grep -x 4194304
grep -q 'READY=1' "$dir/notify"
! grep -q 'STOPPING=1' "$dir/notify"

kill -TERM "$pid"
status=0
wait "$pid" || status=$?
cat "$dir/nbdsnapd.log"
[ $status -eq 0 ]
wait "$notify_pid"
cat "$dir/notify"
[ "$(grep -c . "$dir/notify")" -eq 2 ]
sed -n 1p "$dir/notify" | grep -x 'READY=1'
sed -n 2p "$dir/notify" | grep -x 'STOPPING=1'
