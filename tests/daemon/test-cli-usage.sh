#!/bin/sh
# Usage errors exit 2 with one line naming the command and the fault;
# --help works on every command (exit 0); with no daemon every command
# that needs one fails with one clear message and exit 1 (--json: an
# error document).
. "$srcdir/functions-daemon.sh"
set -e
set -x

commands="version|device list|device add|device remove|cbt info|cbt map|cbt changed|cbt mark-dirty|snapshot create|snapshot take|snapshot destroy|snapshot list|snapshot info|snapshot append-storage|snapshot wait-event"
IFS='|'
for c in $commands; do
  IFS=' '
  "$NBDSNAPCTL" $c --help > "$dir/help"
  grep "^  nbdsnapctl \[OPTION…\] $c" "$dir/help"
  grep -- '--socket=PATH' "$dir/help"
  grep -- '--json' "$dir/help"
  IFS='|'
done
IFS=' '
"$NBDSNAPCTL" --help | grep '^  snapshot wait-event'
"$NBDSNAPCTL" snapshot --help | grep '^  snapshot create'

# usage TEXT ARGS...: exit 2, nothing on stdout, one line on stderr
# that contains TEXT.
usage ()
{
  _text=$1
  shift
  st=0
  "$NBDSNAPCTL" --socket "$api" "$@" 2>"$dir/err" >"$dir/out" || st=$?
  test $st -eq 2
  test "$(grep -c '^nbdsnapctl: ' "$dir/err")" -eq 1
  grep -F -- "$_text" "$dir/err"
  test ! -s "$dir/out"
}
usage 'no command given'
usage "unknown command 'bogus'" bogus
usage 'device: which command?' device
usage "unknown command 'device bogus'" device bogus
usage 'missing argument (usage: nbdsnapctl device add NAME PATH)' device add disk0
usage "unexpected argument 'c'" device add a b c
usage 'device remove: Unknown option --bogus' device remove disk0 --bogus
usage 'missing argument (usage: nbdsnapctl cbt info DEVICE)' cbt info
usage '--output FILE is required' cbt map disk0
usage '--since N is required' cbt changed disk0
usage "--since '256': expected a changes number from 0 to 255" \
  cbt changed disk0 --since 256
usage "--since '-1': expected" cbt changed disk0 --since -1
usage "'not-a-uuid' is not a snapshot id" \
  cbt changed disk0 --since 1 --snapshot not-a-uuid
usage 'missing argument' cbt mark-dirty disk0
usage "'5': expected OFFSET:LENGTH" cbt mark-dirty disk0 5
usage "'0:0': the length must be more than 0" cbt mark-dirty disk0 0:0
usage "offset '1X' is not a size" cbt mark-dirty disk0 1X:1
usage 'give at least one --device NAME' snapshot create
usage '--limit must be more than 0' snapshot create --device disk0 --limit 0
usage "--limit '1Q' is not a size" snapshot create --device disk0 --limit 1Q
usage "--limit '-5' is not a size" snapshot create --device disk0 --limit -5
usage "--limit '99999999999T' is too large" \
  snapshot create --device disk0 --limit 99999999999T
usage 'missing argument (usage: nbdsnapctl snapshot take ID)' snapshot take
usage "'not-a-uuid' is not a snapshot id (a UUID)" snapshot take not-a-uuid
usage "'1234' is not a snapshot id" snapshot info 1234
usage "unexpected argument 'b'" snapshot destroy a b
usage 'missing argument' \
  snapshot append-storage 11111111-2222-3333-4444-555555555555
usage '--limit must be more than 0' snapshot append-storage \
  11111111-2222-3333-4444-555555555555 /tmp --limit 0
usage '--timeout -5: expected milliseconds (0 or more)' \
  snapshot wait-event 11111111-2222-3333-4444-555555555555 --timeout -5
usage '--timeout' \
  snapshot wait-event 11111111-2222-3333-4444-555555555555 --timeout abc
grep "^nbdsnapctl: snapshot wait-event: .*(see 'nbdsnapctl snapshot wait-event --help')" "$dir/err"

# No daemon: exit 1, one message.
id=11111111-2222-3333-4444-555555555555
truncate -s 1M "$dir/x.img"
for c in "version" "device list" "device add d $dir/x.img" "device remove d" \
         "cbt info d" "cbt map d --output $dir/map" "cbt changed d --since 0" \
         "cbt mark-dirty d 0:1" "snapshot create --device d" \
         "snapshot take $id" "snapshot destroy $id" "snapshot list" \
         "snapshot info $id" "snapshot append-storage $id $dir" \
         "snapshot wait-event $id --timeout 10"; do
  st=0
  ctl $c 2>"$dir/err" >"$dir/out" || st=$?
  test $st -eq 1
  grep -x "nbdsnapctl: cannot connect to nbdsnapd at $api: .* (is nbdsnapd running?)" "$dir/err"
  test "$(grep -c '^nbdsnapctl: ' "$dir/err")" -eq 1
  test ! -s "$dir/out"
  st=0
  ctl --json $c >"$dir/out" 2>/dev/null || st=$?
  test $st -eq 1
  grep '"name": "org.nbdsnap.Error.Failed"' "$dir/out"
  grep '"message": "cannot connect to nbdsnapd' "$dir/out"
done
test ! -e "$dir/map"
