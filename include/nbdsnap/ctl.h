/* nbdsnap - private control protocol between nbdsnapd and the plugin.
 *
 * This header is the contract between the control plane (nbdsnapd, the
 * test ctl client) and the data plane (nbdkit-nbdsnap-plugin.so), as
 * include/uapi/linux/blksnap.h is between blksnap and its users.
 *
 * Transport: a SOCK_SEQPACKET unix socket (the plugin's control=SOCKET,
 * created mode 0600; the peer's uid is checked with SO_PEERCRED and must
 * be root or the plugin's own uid).  One datagram is one message.  File
 * descriptors (diff storage) travel with the message as SCM_RIGHTS.
 *
 * Every message starts with struct nbdsnap_ctl_header.  All integers
 * are little-endian, all structs have explicit padding (pad fields must
 * be zero) and a static size.  Names are NUL-padded to
 * NBDSNAP_NAME_SIZE; a name fills at most NBDSNAP_NAME_MAX bytes and
 * matches [A-Za-z0-9._-]{1,64}.  UUIDs are the 16 raw bytes of libuuid.
 *
 * A request carries flags == 0 and a cookie of the client's choice.  The
 * reply carries the same opcode and cookie, NBDSNAP_CTL_FLAG_REPLY, then
 * struct nbdsnap_ctl_reply.  If reply.error is 0 the opcode's reply body
 * follows; otherwise a NUL-terminated human readable message follows
 * (at most NBDSNAP_CTL_ERRMSG_MAX bytes) and the request changed nothing.
 *
 * Events (NBDSNAP_CTL_FLAG_EVENT, opcode NBDSNAP_CTL_EVENT, cookie 0) are
 * pushed to every connected client at any time, also between a request
 * and its reply: clients match replies by cookie.
 *
 * Evolution: new commands get new opcodes and new reply fields go at the
 * end of a reply body (the length says how much is there); the meaning of
 * an existing field never changes.  NBDSNAP_CTL_VERSION is raised only
 * for an incompatible change; a request with another version is refused
 * with EPROTO.
 *
 * Errors, one errno per kind of failure, used by every command:
 *   EPROTO      bad magic, version or flags in the header
 *   EMSGSIZE    message longer than NBDSNAP_CTL_MSG_MAX
 *   EBADMSG     truncated or malformed body (length, non-zero pad,
 *               unterminated name, descriptors where none belong)
 *   EOPNOTSUPP  unknown opcode
 *   EINVAL      well formed but an invalid value (name characters,
 *               range outside the device, zero limit, ...)
 *   EBADF       a descriptor is missing or is not a regular file or
 *               block device opened read-write
 *   ENOENT      no such device or snapshot
 *   EEXIST      a device with that name or path is already attached
 *   EBUSY       the device is in a snapshot (or has clients, on detach)
 *   EALREADY    the snapshot's state does not allow it (take twice,
 *               add a device after take)
 *   EXDEV       diff storage lies on one of the snapshot's devices
 *   E2BIG       too many devices, snapshots or storage files
 *   ENODATA     the device has no frozen CBT map (no snapshot taken)
 *   ENOSPC, EIO as reported by diff storage
 */

#ifndef NBDSNAP_CTL_H
#define NBDSNAP_CTL_H

#include <stdint.h>

#define NBDSNAP_CTL_MAGIC        0x4353424eu /* "NBSC" little-endian */
#define NBDSNAP_CTL_VERSION      1
#define NBDSNAP_CTL_MSG_MAX      65536
#define NBDSNAP_CTL_ERRMSG_MAX   256
#define NBDSNAP_CTL_MAX_FDS      1
#define NBDSNAP_NAME_MAX         64
#define NBDSNAP_NAME_SIZE        72 /* NBDSNAP_NAME_MAX + NUL, 8-aligned */
#define NBDSNAP_PATH_SIZE        1024
#define NBDSNAP_UUID_SIZE        16
#define NBDSNAP_MAX_DEVICES      256
#define NBDSNAP_MAX_SNAPSHOTS    64
#define NBDSNAP_MAX_STORAGES     16
#define NBDSNAP_CBT_READ_MAX     32768 /* map bytes per CBT_READ */
#define NBDSNAP_MARK_DIRTY_MAX   1024  /* ranges per CBT_MARK_DIRTY */

/**
 * enum nbdsnap_ctl_opcode - the commands.
 * @NBDSNAP_CTL_VERSION_INFO: protocol and plugin version.
 * @NBDSNAP_CTL_DEVICE_LIST: every attached device.
 * @NBDSNAP_CTL_DEVICE_ATTACH: open and serve a new device.
 * @NBDSNAP_CTL_DEVICE_DETACH: stop serving a device.
 * @NBDSNAP_CTL_CBT_INFO: a device's CBT parameters.
 * @NBDSNAP_CTL_CBT_READ: part of the active or frozen CBT map.
 * @NBDSNAP_CTL_CBT_MARK_DIRTY: mark byte ranges as changed.
 * @NBDSNAP_CTL_SNAPSHOT_CREATE: a new snapshot with its diff storage.
 * @NBDSNAP_CTL_SNAPSHOT_ADD_DEVICE: add a device to a created snapshot.
 * @NBDSNAP_CTL_SNAPSHOT_TAKE: take the snapshot.
 * @NBDSNAP_CTL_SNAPSHOT_DESTROY: destroy a snapshot.
 * @NBDSNAP_CTL_SNAPSHOT_COLLECT: the ids of every snapshot.
 * @NBDSNAP_CTL_SNAPSHOT_INFO: state and usage of a snapshot.
 * @NBDSNAP_CTL_SNAPSHOT_APPEND_STORAGE: add diff storage to a snapshot.
 * @NBDSNAP_CTL_EVENT: an event pushed by the plugin (never a request).
 */
enum nbdsnap_ctl_opcode {
  NBDSNAP_CTL_VERSION_INFO = 1,
  NBDSNAP_CTL_DEVICE_LIST = 2,
  NBDSNAP_CTL_DEVICE_ATTACH = 3,
  NBDSNAP_CTL_DEVICE_DETACH = 4,
  NBDSNAP_CTL_CBT_INFO = 5,
  NBDSNAP_CTL_CBT_READ = 6,
  NBDSNAP_CTL_CBT_MARK_DIRTY = 7,
  NBDSNAP_CTL_SNAPSHOT_CREATE = 8,
  NBDSNAP_CTL_SNAPSHOT_ADD_DEVICE = 9,
  NBDSNAP_CTL_SNAPSHOT_TAKE = 10,
  NBDSNAP_CTL_SNAPSHOT_DESTROY = 11,
  NBDSNAP_CTL_SNAPSHOT_COLLECT = 12,
  NBDSNAP_CTL_SNAPSHOT_INFO = 13,
  NBDSNAP_CTL_SNAPSHOT_APPEND_STORAGE = 14,
  NBDSNAP_CTL_EVENT = 64,
};

#define NBDSNAP_CTL_FLAG_REPLY   (1u << 0)
#define NBDSNAP_CTL_FLAG_EVENT   (1u << 1)

/**
 * struct nbdsnap_ctl_header - starts every message.
 * @magic: NBDSNAP_CTL_MAGIC.
 * @version: NBDSNAP_CTL_VERSION.
 * @opcode: enum nbdsnap_ctl_opcode.
 * @length: length of the whole message in bytes, header included.
 * @flags: 0 in requests; NBDSNAP_CTL_FLAG_REPLY or _EVENT from the plugin.
 * @cookie: chosen by the client, echoed in the reply; 0 in events.
 */
struct nbdsnap_ctl_header {
  uint32_t magic;
  uint16_t version;
  uint16_t opcode;
  uint32_t length;
  uint32_t flags;
  uint64_t cookie;
};
_Static_assert (sizeof (struct nbdsnap_ctl_header) == 24, "header size");

/**
 * struct nbdsnap_ctl_reply - follows the header of every reply.
 * @error: 0 on success, else a positive errno (see the table above).
 * @pad: zero.
 *
 * On error a NUL-terminated message follows; on success the opcode's
 * reply body.
 */
struct nbdsnap_ctl_reply {
  int32_t error;
  uint32_t pad;
};
_Static_assert (sizeof (struct nbdsnap_ctl_reply) == 8, "reply size");

/* Requests that name only a device or only a snapshot. */

/**
 * struct nbdsnap_ctl_name - body of requests that name one device.
 * @name: device name, NUL-padded.
 */
struct nbdsnap_ctl_name {
  char name[NBDSNAP_NAME_SIZE];
};
_Static_assert (sizeof (struct nbdsnap_ctl_name) == 72, "name size");

/**
 * struct nbdsnap_ctl_snapshot_id - body of requests that name a snapshot.
 * @id: snapshot UUID.
 */
struct nbdsnap_ctl_snapshot_id {
  uint8_t id[NBDSNAP_UUID_SIZE];
};
_Static_assert (sizeof (struct nbdsnap_ctl_snapshot_id) == 16, "id size");

/* NBDSNAP_CTL_VERSION_INFO: no request body.
 * Returns struct nbdsnap_ctl_version.
 */

/**
 * struct nbdsnap_ctl_version - reply to NBDSNAP_CTL_VERSION_INFO.
 * @protocol: NBDSNAP_CTL_VERSION of the plugin.
 * @msg_max: largest message the plugin accepts.
 * @plugin_version: the plugin's version string, NUL-padded.
 * @connections: NBD connections open now, on every export.
 * @pad: zero.
 */
struct nbdsnap_ctl_version {
  uint32_t protocol;
  uint32_t msg_max;
  char plugin_version[32];
  uint32_t connections;
  uint32_t pad;
};
_Static_assert (sizeof (struct nbdsnap_ctl_version) == 48, "version size");

/**
 * struct nbdsnap_ctl_device - one device, in DEVICE_LIST and ATTACH replies.
 * @name: device name.
 * @path: the path it was opened from, NUL-terminated (may be truncated).
 * @size: size in bytes.
 * @logical_block_size: smallest addressable unit (1 for regular files).
 * @physical_block_size: preferred I/O unit.
 * @flags: NBDSNAP_CTL_DEVICE_BLOCKDEV.
 * @connections: NBD connections now open on the original export.
 * @snapshot: the snapshot the device is in, or all zeroes.
 */
struct nbdsnap_ctl_device {
  char name[NBDSNAP_NAME_SIZE];
  char path[NBDSNAP_PATH_SIZE];
  uint64_t size;
  uint32_t logical_block_size;
  uint32_t physical_block_size;
  uint32_t flags;
  uint32_t connections;
  uint8_t snapshot[NBDSNAP_UUID_SIZE];
};
_Static_assert (sizeof (struct nbdsnap_ctl_device) == 1136, "device size");

#define NBDSNAP_CTL_DEVICE_BLOCKDEV (1u << 0)

/* NBDSNAP_CTL_DEVICE_LIST: body struct nbdsnap_ctl_device_list_req.
 * Returns struct nbdsnap_ctl_device_list followed by count devices, at
 * most NBDSNAP_DEVICE_LIST_MAX from index start on (so that a reply fits
 * in NBDSNAP_CTL_MSG_MAX); ask again from start + count while it is less
 * than total.
 */
#define NBDSNAP_DEVICE_LIST_MAX 32

/**
 * struct nbdsnap_ctl_device_list_req - body of DEVICE_LIST.
 * @start: index of the first device wanted (0 for the first).
 * @pad: zero.
 */
struct nbdsnap_ctl_device_list_req {
  uint32_t start;
  uint32_t pad;
};
_Static_assert (sizeof (struct nbdsnap_ctl_device_list_req) == 8, "dlr");

/**
 * struct nbdsnap_ctl_device_list - reply head of DEVICE_LIST.
 * @total: number of devices attached.
 * @count: number of struct nbdsnap_ctl_device that follow.
 */
struct nbdsnap_ctl_device_list {
  uint32_t total;
  uint32_t count;
};
_Static_assert (sizeof (struct nbdsnap_ctl_device_list) == 8, "dl size");

/**
 * struct nbdsnap_ctl_device_attach - body of DEVICE_ATTACH.
 * @name: name of the new device.
 * @path: regular file or block device, NUL-terminated.
 *
 * The plugin opens @path read-write (block devices O_EXCL) and serves it
 * as export @name.  Returns struct nbdsnap_ctl_device.  EEXIST if the
 * name or the file is already attached, errno of open(2) otherwise.
 */
struct nbdsnap_ctl_device_attach {
  char name[NBDSNAP_NAME_SIZE];
  char path[NBDSNAP_PATH_SIZE];
};
_Static_assert (sizeof (struct nbdsnap_ctl_device_attach) == 1096, "attach");

/* NBDSNAP_CTL_DEVICE_DETACH: body struct nbdsnap_ctl_name.
 * EBUSY if the device is in a snapshot or clients are connected.
 * Returns nothing.
 */

/* NBDSNAP_CTL_CBT_INFO: body struct nbdsnap_ctl_name.
 * Returns struct nbdsnap_ctl_cbt_info.
 */

/**
 * struct nbdsnap_ctl_cbt_info - reply to CBT_INFO.
 * @device_size: bytes.
 * @block_count: number of tracking blocks (bytes in the map).
 * @block_size: bytes per tracking block, a power of two.
 * @changes_number: the active number, the one a write now records.
 * @frozen_valid: 1 if a frozen map exists (a snapshot was taken).
 * @frozen_number: the number of the snapshot that froze it.
 * @pad: zero.
 * @generation: UUID of the active map's generation.
 * @frozen_generation: UUID of the frozen map's generation.
 */
struct nbdsnap_ctl_cbt_info {
  uint64_t device_size;
  uint64_t block_count;
  uint32_t block_size;
  uint8_t changes_number;
  uint8_t frozen_valid;
  uint8_t frozen_number;
  uint8_t pad;
  uint8_t generation[NBDSNAP_UUID_SIZE];
  uint8_t frozen_generation[NBDSNAP_UUID_SIZE];
};
_Static_assert (sizeof (struct nbdsnap_ctl_cbt_info) == 56, "cbt info");

#define NBDSNAP_CTL_MAP_ACTIVE 0
#define NBDSNAP_CTL_MAP_FROZEN 1

/**
 * struct nbdsnap_ctl_cbt_read - body of CBT_READ.
 * @name: device.
 * @map: NBDSNAP_CTL_MAP_ACTIVE or NBDSNAP_CTL_MAP_FROZEN.
 * @count: map bytes wanted, 1..NBDSNAP_CBT_READ_MAX.
 * @start: index of the first block.
 *
 * Returns struct nbdsnap_ctl_cbt_data followed by the map bytes (fewer
 * than asked at the end of the map).  EINVAL if @start is past the end,
 * ENODATA for the frozen map of a device never snapshotted.
 */
struct nbdsnap_ctl_cbt_read {
  char name[NBDSNAP_NAME_SIZE];
  uint32_t map;
  uint32_t count;
  uint64_t start;
};
_Static_assert (sizeof (struct nbdsnap_ctl_cbt_read) == 88, "cbt read");

/**
 * struct nbdsnap_ctl_cbt_data - reply head of CBT_READ.
 * @start: index of the first block returned.
 * @count: number of map bytes that follow.
 * @changes_number: number of the map's epoch (active or frozen).
 * @pad: zero.
 * @generation: generation of the map read.
 */
struct nbdsnap_ctl_cbt_data {
  uint64_t start;
  uint32_t count;
  uint8_t changes_number;
  uint8_t pad[3];
  uint8_t generation[NBDSNAP_UUID_SIZE];
};
_Static_assert (sizeof (struct nbdsnap_ctl_cbt_data) == 32, "cbt data");

/**
 * struct nbdsnap_ctl_range - a byte range.
 * @offset: first byte.
 * @length: bytes, at least 1.
 */
struct nbdsnap_ctl_range {
  uint64_t offset;
  uint64_t length;
};
_Static_assert (sizeof (struct nbdsnap_ctl_range) == 16, "range");

/**
 * struct nbdsnap_ctl_mark_dirty - body of CBT_MARK_DIRTY.
 * @name: device.
 * @count: ranges that follow, 1..NBDSNAP_MARK_DIRTY_MAX.
 * @pad: zero.
 *
 * Marks every block touching a range with the active number and, if the
 * device is in a taken snapshot, the frozen map with the snapshot's
 * number (as a write to the image does).  EINVAL (and nothing marked) if
 * any range is empty or ends past the device.  Returns nothing.
 */
struct nbdsnap_ctl_mark_dirty {
  char name[NBDSNAP_NAME_SIZE];
  uint32_t count;
  uint32_t pad;
  /* struct nbdsnap_ctl_range ranges[count]; */
};
_Static_assert (sizeof (struct nbdsnap_ctl_mark_dirty) == 80, "mark dirty");

/**
 * struct nbdsnap_ctl_snapshot_create - body of SNAPSHOT_CREATE.
 * @limit: bytes of the passed diff storage the snapshot may use (>0).
 * @flags: zero.
 * @pad: zero.
 *
 * One descriptor travels as SCM_RIGHTS: the diff storage, a regular file
 * (usually an unnamed O_TMPFILE) or a block device, open read-write.  A
 * block device's @limit is capped at its size.  Returns struct
 * nbdsnap_ctl_snapshot_id with the new snapshot's UUID (state created).
 */
struct nbdsnap_ctl_snapshot_create {
  uint64_t limit;
  uint32_t flags;
  uint32_t pad;
};
_Static_assert (sizeof (struct nbdsnap_ctl_snapshot_create) == 16, "create");

/**
 * struct nbdsnap_ctl_snapshot_device - body of SNAPSHOT_ADD_DEVICE.
 * @id: snapshot.
 * @name: device to add.
 *
 * EBUSY if the device is in a snapshot already, EALREADY if the snapshot
 * is taken, EXDEV if the diff storage lies on the device.  Returns
 * nothing.
 */
struct nbdsnap_ctl_snapshot_device {
  uint8_t id[NBDSNAP_UUID_SIZE];
  char name[NBDSNAP_NAME_SIZE];
};
_Static_assert (sizeof (struct nbdsnap_ctl_snapshot_device) == 88, "sdev");

/* NBDSNAP_CTL_SNAPSHOT_TAKE: body struct nbdsnap_ctl_snapshot_id.
 * Blocks new writes on all the snapshot's devices, waits for writes in
 * flight, switches CBT, enables copy-on-write, publishes the image
 * exports and lets writes go.  EINVAL if the snapshot has no device,
 * EALREADY if it is not in state created.  Returns struct
 * nbdsnap_ctl_take.
 */

/**
 * struct nbdsnap_ctl_take - reply to SNAPSHOT_TAKE.
 * @pause_ns: how long writes were held, in nanoseconds.
 */
struct nbdsnap_ctl_take {
  uint64_t pause_ns;
};
_Static_assert (sizeof (struct nbdsnap_ctl_take) == 8, "take");

/* NBDSNAP_CTL_SNAPSHOT_DESTROY: body struct nbdsnap_ctl_snapshot_id.
 * Removes the image exports (connected image clients get EIO from then
 * on), stops copy-on-write, releases the diff storage and emits
 * NBDSNAP_CTL_EVENT_DESTROYED.  Returns nothing.
 */

/* NBDSNAP_CTL_SNAPSHOT_COLLECT: no request body.
 * Returns struct nbdsnap_ctl_collect followed by count UUIDs.
 */

/**
 * struct nbdsnap_ctl_collect - reply head of SNAPSHOT_COLLECT.
 * @count: number of 16-byte snapshot ids that follow.
 * @pad: zero.
 */
struct nbdsnap_ctl_collect {
  uint32_t count;
  uint32_t pad;
};
_Static_assert (sizeof (struct nbdsnap_ctl_collect) == 8, "collect");

/**
 * enum nbdsnap_ctl_snapshot_state - life of a snapshot.
 * @NBDSNAP_CTL_STATE_CREATED: devices can be added; not taken yet.
 * @NBDSNAP_CTL_STATE_TAKEN: images are served.
 * @NBDSNAP_CTL_STATE_CORRUPTED: diff storage failed; image I/O fails.
 */
enum nbdsnap_ctl_snapshot_state {
  NBDSNAP_CTL_STATE_CREATED = 1,
  NBDSNAP_CTL_STATE_TAKEN = 2,
  NBDSNAP_CTL_STATE_CORRUPTED = 3,
};

/* NBDSNAP_CTL_SNAPSHOT_INFO: body struct nbdsnap_ctl_snapshot_id.
 * Returns struct nbdsnap_ctl_snapshot_info followed by device_count
 * struct nbdsnap_ctl_snapshot_info_device.
 */

/**
 * struct nbdsnap_ctl_snapshot_info - reply head of SNAPSHOT_INFO.
 * @id: snapshot.
 * @state: enum nbdsnap_ctl_snapshot_state.
 * @error: 0, or the errno that corrupted the snapshot.
 * @pause_ns: take pause, 0 before take.
 * @used: diff storage bytes in use.
 * @limit: diff storage byte limit (sum over storage files).
 * @allocated: diff storage bytes reserved with fallocate so far.
 * @storage_count: number of diff storage files.
 * @device_count: number of struct nbdsnap_ctl_snapshot_info_device that
 *   follow.
 */
struct nbdsnap_ctl_snapshot_info {
  uint8_t id[NBDSNAP_UUID_SIZE];
  uint32_t state;
  int32_t error;
  uint64_t pause_ns;
  uint64_t used;
  uint64_t limit;
  uint64_t allocated;
  uint32_t storage_count;
  uint32_t device_count;
};
_Static_assert (sizeof (struct nbdsnap_ctl_snapshot_info) == 64, "info");

/**
 * struct nbdsnap_ctl_snapshot_info_device - one device of a snapshot.
 * @name: device.
 * @chunk_size: copy-on-write unit in bytes.
 * @changes_number: the number its writes carried up to the take (0 before
 *   take).
 * @pad: zero.
 * @chunks_copied: chunks copied to diff storage so far.
 * @generation: CBT generation of the snapshot's frozen map.
 */
struct nbdsnap_ctl_snapshot_info_device {
  char name[NBDSNAP_NAME_SIZE];
  uint32_t chunk_size;
  uint8_t changes_number;
  uint8_t pad[3];
  uint64_t chunks_copied;
  uint8_t generation[NBDSNAP_UUID_SIZE];
};
_Static_assert (sizeof (struct nbdsnap_ctl_snapshot_info_device) == 104,
                "info device");

/**
 * struct nbdsnap_ctl_append_storage - body of SNAPSHOT_APPEND_STORAGE.
 * @id: snapshot.
 * @limit: bytes of the new storage the snapshot may use (>0).
 *
 * One descriptor travels as SCM_RIGHTS, as for SNAPSHOT_CREATE.  The
 * snapshot may be created or taken (not corrupted).  Emits
 * NBDSNAP_CTL_EVENT_STORAGE_EXTENDED.  Returns struct
 * nbdsnap_ctl_snapshot_info with device_count 0.
 */
struct nbdsnap_ctl_append_storage {
  uint8_t id[NBDSNAP_UUID_SIZE];
  uint64_t limit;
};
_Static_assert (sizeof (struct nbdsnap_ctl_append_storage) == 24, "append");

/**
 * enum nbdsnap_ctl_event_code - what happened.
 * @NBDSNAP_CTL_EVENT_CORRUPTED: diff storage could not hold a chunk or
 *   failed; @device and @error say where and why.  Image I/O fails with
 *   EIO from now on; the original keeps working.
 * @NBDSNAP_CTL_EVENT_LOW_SPACE: less than the low-water mark of diff
 *   storage is left; @used and @limit say how much.  Append storage now.
 * @NBDSNAP_CTL_EVENT_STORAGE_EXTENDED: storage was appended; @limit is the
 *   new limit.
 * @NBDSNAP_CTL_EVENT_DESTROYED: the snapshot is gone.
 */
enum nbdsnap_ctl_event_code {
  NBDSNAP_CTL_EVENT_CORRUPTED = 1,
  NBDSNAP_CTL_EVENT_LOW_SPACE = 2,
  NBDSNAP_CTL_EVENT_STORAGE_EXTENDED = 3,
  NBDSNAP_CTL_EVENT_DESTROYED = 4,
};

/**
 * struct nbdsnap_ctl_event - body of NBDSNAP_CTL_EVENT messages.
 * @id: snapshot.
 * @code: enum nbdsnap_ctl_event_code.
 * @error: errno for CORRUPTED, else 0.
 * @used: diff storage bytes in use.
 * @limit: diff storage byte limit.
 * @time_ns: CLOCK_REALTIME when it happened.
 * @device: device concerned (CORRUPTED), else empty.
 */
struct nbdsnap_ctl_event {
  uint8_t id[NBDSNAP_UUID_SIZE];
  uint32_t code;
  int32_t error;
  uint64_t used;
  uint64_t limit;
  uint64_t time_ns;
  char device[NBDSNAP_NAME_SIZE];
};
_Static_assert (sizeof (struct nbdsnap_ctl_event) == 120, "event");

#endif /* NBDSNAP_CTL_H */
