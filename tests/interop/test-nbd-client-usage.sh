#!/usr/bin/env bash
# scripts/nbd-attach refuses bad input with one clear line and exit
# status 2 (usage) or 1 (error), before it touches any device: unknown
# options, missing values, bad names, exclusive options, a socket that is
# not there, an export nbdsnapd does not serve (over unix and TCP), and a
# host without the nbd kernel module.  Runs everywhere (no /dev/nbdN
# needed); test-nbd-client.sh attaches for real.
. "$srcdir/../daemon/functions-daemon.sh"
requires nbd-client nbdinfo
set -e
set -x

attach=$srcdir/../../scripts/nbd-attach

# bad STATUS MESSAGE ARGS...: exit STATUS, stderr one line holding MESSAGE,
# nothing on stdout.
bad ()
{
  _want=$1
  _msg=$2
  shift 2
  _st=0
  "$attach" "$@" > "$dir/out" 2> "$dir/err" || _st=$?
  cat "$dir/err"
  test $_st -eq "$_want"
  test "$(wc -l < "$dir/err")" -eq 1
  grep -qF -- "$_msg" "$dir/err"
  test ! -s "$dir/out"
}

bad 2 'missing EXPORT'
bad 2 'unknown option --bogus' --bogus disk0
bad 2 '--socket needs a value' --socket
bad 2 '--socket needs a value' --socket= disk0
bad 2 'too many arguments' a /dev/nbd0 c
bad 2 'not an export name' 'disk0/x'
bad 2 'not an export name' 'disk 0'
bad 2 '--socket and --host are exclusive' --socket /x --host h disk0
bad 2 '--port needs --host' --port 10809 disk0
bad 2 '--port x: not a number' --host h --port x disk0
bad 2 '--block-size 100: expected 512, 1024, 2048 or 4096' --block-size 100 disk0
bad 2 '--cert and --key go together' --host h --cacert /etc/hostname --cert /etc/hostname disk0
bad 2 'TLS options need --cacert' --host h --tls-hostname x disk0
bad 2 '/dev/sda: expected a device /dev/nbdN' disk0 /dev/sda
bad 2 '--detach takes one device' --detach
bad 2 '/dev/loop0: expected a device /dev/nbdN' --detach /dev/loop0
bad 1 "$dir/none.sock: no such socket" --socket "$dir/none.sock" disk0
"$attach" --help | grep -q '^usage: nbd-attach'

truncate -s 16M "$dir/disk0.img"
for try in 1 2 3 4 5 6 7 8; do
  port=$((20000 + RANDOM % 40000))
  if start_nbdsnapd --listen "tcp:127.0.0.1:$port" \
                    --device "disk0:$dir/disk0.img"; then
    break
  fi
  [ $try -lt 8 ]
done
id=$(ctl snapshot create --device disk0 --take)

bad 1 "disk9@$id: no such export at $sock" --socket "$sock" "disk9@$id"
# Originals are not served over TCP.
bad 1 "disk0: no such export at 127.0.0.1:$port" --host 127.0.0.1 --port "$port" disk0
if [ ! -e /sys/module/nbd ] && ! modinfo nbd >/dev/null 2>&1; then
  # Here the export is fine and only the kernel is missing.
  bad 1 'the nbd kernel module is not available' --socket "$sock" "disk0@$id"
  bad 1 'the nbd kernel module is not available' --host 127.0.0.1 --port "$port" "disk0@$id"
fi

ctl snapshot destroy "$id"
stop_nbdsnapd
