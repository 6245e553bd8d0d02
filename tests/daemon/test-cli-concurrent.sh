#!/bin/sh
# 50 nbdsnapctl calls at once (create+take+info+destroy on 10 devices,
# list, cbt info) all succeed with correct answers, and the daemon is
# left with no snapshot.
. "$srcdir/functions-daemon.sh"
requires jq
set -e
set -x

args=
for i in $(seq 0 9); do
  truncate -s 4M "$dir/d$i.img"
  args="$args --device d$i:$dir/d$i.img"
done
start_nbdsnapd $args

worker ()
{
  id=$(ctl snapshot create --device "d$1" --take)
  ctl --json snapshot info "$id" > "$dir/info$1"
  jq -e ".state == \"taken\" and .devices[0].name == \"d$1\"" "$dir/info$1"
  ctl snapshot destroy "$id" > "$dir/destroy$1"
  grep -x "destroyed snapshot $id" "$dir/destroy$1"
  echo ok > "$dir/ok$1"
}
pids=
for i in $(seq 0 9); do
  worker $i > "$dir/w$i.log" 2>&1 &
  pids="$pids $!"
done
for i in $(seq 10 29); do
  (ctl --json snapshot list | jq -e '.snapshots | length <= 10' &&
   echo ok > "$dir/ok$i") > "$dir/w$i.log" 2>&1 &
  pids="$pids $!"
done
for i in $(seq 30 49); do
  d=$((i % 10))
  (ctl --json cbt info "d$d" | jq -e ".device == \"d$d\" and .size == 4194304" &&
   echo ok > "$dir/ok$i") > "$dir/w$i.log" 2>&1 &
  pids="$pids $!"
done
# Every call ran to its end (a failed one shows its log).
failed=0
for p in $pids; do
  wait "$p" || failed=$((failed + 1))
done
for i in $(seq 0 49); do
  test -s "$dir/ok$i" || { cat "$dir/w$i.log"; failed=$((failed + 1)); }
done
[ $failed -eq 0 ]
ctl --json snapshot list | jq -e '.snapshots == []'
stop_nbdsnapd
