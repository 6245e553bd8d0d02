#!/bin/sh
# device add / remove and their refusals; snapshot create (--take,
# --limit, --diff-storage, and the refusals: unknown device, device in
# another snapshot, storage on a snapshot device), take, list, info
# (human: sizes and export URIs; --json: the key set of DESIGN §4),
# append-storage, destroy, unknown snapshot.  Refusals change nothing.
. "$srcdir/functions-daemon.sh"
requires jq
set -e
set -x

truncate -s 16M "$dir/disk0.img"
truncate -s 8M "$dir/disk1.img"
start_nbdsnapd --device "disk0:$dir/disk0.img"

fails1 ()
{
  st=0
  ctl "$@" 2>"$dir/err" >"$dir/out" || st=$?
  test $st -eq 1
  test "$(grep -c '^nbdsnapctl: ' "$dir/err")" -eq 1
  test ! -s "$dir/out"
}

# device add: relative paths are resolved by nbdsnapctl; the API itself
# refuses them.
(cd "$dir" && ctl device add disk1 disk1.img) |
  grep -x "added device disk1 (8.0 MiB, $dir/disk1.img): nbd+unix:///disk1?socket=$sock"
./dbus-peer call "unix:path=$api" AddDevice "('disk2', 'disk1.img', @a{sv} {})" 2>"$dir/err" && false
grep -x "org.nbdsnap.Error.InvalidArgument: device path 'disk1.img' is not an absolute path" "$dir/err"
ctl --json device list > "$dir/devs"
fails1 device add disk0 "$dir/disk1.img"
grep -x "nbdsnapctl: device 'disk0' already exists" "$dir/err"
fails1 device add disk9 "$dir/disk0.img"
grep -x "nbdsnapctl: $dir/disk0.img is already attached as 'disk0'" "$dir/err"
fails1 device add bad:name "$dir/disk1.img"
fails1 device add disk9 "$dir/nonexistent"
fails1 device remove nosuch
ctl --json device list | cmp - "$dir/devs"

# snapshot create refusals.
fails1 snapshot create --device nosuch
fails1 snapshot create --device disk0 --device disk0
fails1 snapshot create --device disk0 --diff-storage "$dir/disk0.img"
grep "^nbdsnapctl: diff storage $dir/disk0.img lies on device 'disk0'" "$dir/err"
ctl --json snapshot list | grep '"snapshots": \[\]'

id=$(ctl snapshot create --device disk0 --device disk1 --limit 3M --diff-storage "$dir" --take)
fails1 snapshot create --device disk1
grep -x "nbdsnapctl: device 'disk1' is already in snapshot $id" "$dir/err"
fails1 device remove disk1
fails1 snapshot take "$id"
ctl snapshot list | grep "^$id  *taken  *disk0,disk1  *0 B of 3.0 MiB  *never$"

ctl snapshot info "$id" > "$dir/info"
grep -x "State:           taken" "$dir/info"
grep -x "Diff storage:    0 B used of 3.0 MiB (1 file)" "$dir/info"
grep -x "    nbd+unix:///disk0@$id?socket=$sock" "$dir/info"
grep -x "    nbd+unix:///disk1@$id?socket=$sock" "$dir/info"
ctl --json snapshot info "$id" > "$dir/ij"
for k in id state error take_pause_us diff_storage devices; do
  jq -e "has(\"$k\")" "$dir/ij"
done
jq -e '.diff_storage | has("used") and has("limit")' "$dir/ij"
jq -e '.error == null and .state == "taken" and .diff_storage.limit == 3145728' "$dir/ij"
test "$(jq -c '[.devices[] | [.name, .export, .uri, .changes_number]]' "$dir/ij")" = \
  "[[\"disk0\",\"disk0@$id\",\"nbd+unix:///disk0@$id?socket=$sock\",1],[\"disk1\",\"disk1@$id\",\"nbd+unix:///disk1@$id?socket=$sock\",1]]"

# append-storage: 2 MiB more; storage on a snapshot device refused.
fails1 snapshot append-storage "$id" "$dir/disk1.img"
ctl snapshot append-storage "$id" "$dir" --limit 2M |
  grep -x "diff storage of $id: 0 B used of 5.0 MiB in 2 files"
ctl --json snapshot info "$id" | jq -e '.diff_storage.limit == 5242880'
ctl snapshot wait-event "$id" --timeout 60000 | grep "^storage-extended $id"

ctl snapshot destroy "$id" | grep -x "destroyed snapshot $id"
fails1 snapshot info "$id"
fails1 snapshot destroy "$id"
fails1 snapshot take 11111111-2222-3333-4444-555555555555
grep -x "nbdsnapctl: no snapshot 11111111-2222-3333-4444-555555555555" "$dir/err"
ctl device remove disk1 | grep -x 'removed device disk1'
ctl --json device list | jq -e '[.devices[].name] == ["disk0"]'
stop_nbdsnapd
