/* nbdsnap - snapshot: a set of devices frozen at one point in time. */

#ifndef NBDSNAP_SNAPSHOT_H
#define NBDSNAP_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>

#include <nbdsnap/ctl.h>

struct tracker;
struct diff_area;
struct diff_storage;

/**
 * enum snapshot_state - life of a snapshot (corrupted is taken + error).
 * @SNAPSHOT_CREATED: devices can be added.
 * @SNAPSHOT_TAKEN: copy-on-write is on, images are served.
 * @SNAPSHOT_DESTROYED: gone from the registry; kept alive only by image
 *   connections still open, which get EIO.
 */
enum snapshot_state {
  SNAPSHOT_CREATED = 1,
  SNAPSHOT_TAKEN = 2,
  SNAPSHOT_DESTROYED = 4,
};

/**
 * struct snapshot - devices frozen together, with one diff storage.
 * @id: UUID (libuuid).
 * @id_str: @id in text, as in export names.
 * @state: enum snapshot_state (atomic).
 * @error: 0, or the errno that corrupted the snapshot (atomic; the first
 *   failure wins).
 * @pause_ns: how long the take held writes.
 * @count: devices in the snapshot.
 * @devices: the devices (references).
 * @areas: their diff areas (made at take).
 * @numbers: the changes number each device's writes carried up to the
 *   take (the snapshot's number for that device).
 * @generations: the CBT generation of each device's frozen map.
 * @storage: the diff storage (a reference).
 * @refcount: the registry's reference and one per open image.
 *
 * Take (snapshot_take): the diff areas and frozen maps are allocated
 * first; then, for every device in turn, new writes are blocked and
 * writes in flight drained (quiesce_block); with all of them quiet, CBT
 * switches and copy-on-write is switched on; the state becomes TAKEN
 * (which publishes the images); writes go again.  No fsync in the pause:
 * images read the original through the same page cache, so a write that
 * completed before the take is part of the point in time.
 *
 * Destroy: state DESTROYED, copy-on-write off (again with writes
 * blocked for a moment), image gates closed and drained, diff areas
 * released, storage put (an O_TMPFILE disappears here), devices freed.
 */
struct snapshot {
  uint8_t id[NBDSNAP_UUID_SIZE];
  char id_str[37];
  uint32_t state;
  int error;
  uint64_t pause_ns;
  unsigned count;
  struct tracker *devices[NBDSNAP_MAX_DEVICES];
  struct diff_area *areas[NBDSNAP_MAX_DEVICES];
  uint8_t numbers[NBDSNAP_MAX_DEVICES];
  uint8_t generations[NBDSNAP_MAX_DEVICES][16];
  struct diff_storage *storage;
  unsigned refcount;
};

/* Control operations: call with control_lock held.  Each returns 0 (or
 * the object) or -1 (NULL) with *err set, and changes nothing on
 * failure.
 */
struct snapshot *snapshot_create (int fd, uint64_t limit, int *err);
int snapshot_add_device (struct snapshot *s, struct tracker *t, int *err);
int snapshot_take (struct snapshot *s, uint64_t *pause_ns, int *err);
int snapshot_destroy (struct snapshot *s, int *err);
int snapshot_append_storage (struct snapshot *s, int fd, uint64_t limit,
                             int *err);
/* Destroy every snapshot (plugin cleanup). */
void snapshot_destroy_all (void);

void snapshot_get (struct snapshot *s);
void snapshot_put (struct snapshot *s);

/* The diff area of device @t in @s (taken snapshots), else NULL. */
struct diff_area *snapshot_area_of (struct snapshot *s, struct tracker *t);

/* The state as the ctl protocol names it. */
uint32_t snapshot_ctl_state (struct snapshot *s);

/* I/O path. */
static inline bool
snapshot_failed (struct snapshot *s)
{
  return __atomic_load_n (&s->error, __ATOMIC_SEQ_CST) != 0;
}

static inline uint32_t
snapshot_state (struct snapshot *s)
{
  return __atomic_load_n (&s->state, __ATOMIC_ACQUIRE);
}

/* Mark the snapshot corrupted with @err (first failure wins), log it and
 * emit the event.  Safe from any thread, never blocks for long.
 */
void snapshot_corrupt (struct snapshot *s, int err, const char *device);

#endif /* NBDSNAP_SNAPSHOT_H */
