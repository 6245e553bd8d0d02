/* nbdsnap - diff area: copy-on-write state of one device in a snapshot. */

#ifndef NBDSNAP_DIFF_AREA_H
#define NBDSNAP_DIFF_AREA_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "chunk.h"
#include "quiesce.h"

struct tracker;
struct snapshot;
struct diff_storage;

/* Chunk locks are striped: chunk i uses locks[i % DIFF_AREA_LOCKS]. */
#define DIFF_AREA_LOCKS 1024

/* Fan-out of the chunk table: 64 slots per node and chunks per leaf. */
#define CHUNK_TABLE_BITS 6
#define CHUNK_TABLE_FANOUT (1u << CHUNK_TABLE_BITS)

/**
 * struct diff_area - the chunks of one device of one snapshot.
 * @tracker: the device (a reference).
 * @snapshot: the snapshot (not a reference: the snapshot owns the diff
 *   area and outlives it).
 * @storage: the snapshot's diff storage.
 * @size: device size in bytes.
 * @chunk_size: bytes per chunk, a power of two.
 * @chunk_shift: log2 (@chunk_size).
 * @chunk_count: chunks covering @size (the last may be short).
 * @height: levels of interior nodes in the chunk table (>= 1).
 * @root: the chunk table's root node (CHUNK_TABLE_FANOUT slots).
 * @table_lock: guards adding nodes and leaves to the table (lookups are
 *   lock-free: slots are published with release stores).
 * @locks: the chunk locks (writer-preferring rwlocks), striped by chunk
 *   index; a state transition takes its chunk's lock for writing.
 * @images: gate for image requests; closed by diff_area_release, so
 *   that the table is freed only when no image request is in flight.
 * @released: diff_area_release has run.
 * @chunks_copied: chunks copied to diff storage (atomic).
 * @table_bytes: memory held by the chunk table (atomic).
 *
 * Lifetime: created by snapshot_take before the pause (so that the pause
 * allocates nothing), attached to the tracker inside it, detached by
 * destroy with the tracker's writes blocked, released (table freed) once
 * image requests have drained, freed with the snapshot.
 */
struct diff_area {
  struct tracker *tracker;
  struct snapshot *snapshot;
  struct diff_storage *storage;
  uint64_t size;
  uint32_t chunk_size;
  unsigned chunk_shift;
  uint64_t chunk_count;
  unsigned height;
  void **root;
  pthread_mutex_t table_lock;
  pthread_rwlock_t locks[DIFF_AREA_LOCKS];
  struct quiesce images;
  bool released;
  uint64_t chunks_copied;
  uint64_t table_bytes;
};

/* The chunk size for a device of @size bytes: @chunk_size, doubled until
 * at most @chunk_count_max chunks cover the device.
 */
uint32_t diff_area_choose_chunk_size (uint64_t size, uint32_t chunk_size,
                                      uint64_t chunk_count_max);

struct diff_area *diff_area_create (struct tracker *t, struct snapshot *s,
                                    struct diff_storage *ds,
                                    uint32_t chunk_size, int *err);
/* Close the image gate, wait for image requests, free the table. */
void diff_area_release (struct diff_area *da);
void diff_area_free (struct diff_area *da);

/* Before the original's [offset, offset+count) changes: copy every
 * chunk of the range still NEW into diff storage.  Never fails: a
 * failure corrupts the snapshot and the write goes ahead.
 */
void diff_area_cow (struct diff_area *da, uint64_t offset, uint64_t count);

/* Image I/O, called between diff_area_image_enter and _leave.  Each
 * returns 0 or -1 with *err set.
 */
bool diff_area_image_enter (struct diff_area *da);
void diff_area_image_leave (struct diff_area *da);
int diff_area_image_read (struct diff_area *da, void *buf, uint32_t count,
                          uint64_t offset, int *err);
int diff_area_image_write (struct diff_area *da, const void *buf,
                           uint32_t count, uint64_t offset, int *err);
int diff_area_image_zero (struct diff_area *da, uint32_t count,
                          uint64_t offset, int *err);

/* The chunk with index @idx, or NULL if none was ever allocated (the
 * chunk is NEW).  Exposed for tests and diagnostics.
 */
struct chunk *diff_area_lookup (struct diff_area *da, uint64_t idx);

#endif /* NBDSNAP_DIFF_AREA_H */
