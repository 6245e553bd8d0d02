/* nbdsnap - chunk: the unit of copy-on-write. */

#ifndef NBDSNAP_CHUNK_H
#define NBDSNAP_CHUNK_H

#include <stdint.h>

/**
 * enum chunk_state - where the point-in-time data of a chunk is.
 * @CHUNK_NEW: still (only) on the original; nothing copied.  A chunk with
 *   no struct chunk allocated is NEW.
 * @CHUNK_LOADING: a copy-on-write is reading it from the original.
 * @CHUNK_IN_MEMORY: read into the copier's buffer, being written to diff
 *   storage.
 * @CHUNK_STORED: in diff storage at (@file, @offset).
 * @CHUNK_ZERO: the point-in-time data is all zeroes; nothing is stored.
 * @CHUNK_FAILED: the copy failed; the snapshot is corrupted.
 *
 * Transitions, each made holding the chunk's lock for writing:
 *
 *   NEW -> LOADING -> IN_MEMORY -> STORED      copy-on-write
 *                 \            \-> FAILED      diff storage full or failed
 *                  \-> ZERO                    the chunk held only zeroes
 *                   \-> FAILED                 original unreadable
 *   NEW -> ZERO                                image write-zeroes, whole chunk
 *   ZERO -> STORED                             image write into a zero chunk
 *
 * STORED, ZERO and FAILED are final for copy-on-write: once there, a
 * write to the original costs one lock-free lookup.  Readers that see
 * a final state read without the lock; readers that see NEW (or a
 * transient state) take the lock for reading, look again, and read the
 * original under it, so the copy-on-write (which takes it for writing)
 * cannot overwrite the original underneath them.
 */
enum chunk_state {
  CHUNK_NEW = 0,
  CHUNK_LOADING,
  CHUNK_IN_MEMORY,
  CHUNK_STORED,
  CHUNK_ZERO,
  CHUNK_FAILED,
};

/**
 * struct chunk - the copy-on-write state of one chunk.
 * @state: enum chunk_state (atomic; written with release, read with
 *   acquire, so @file and @offset are valid when STORED is seen).
 * @file: index of the diff storage file holding it.
 * @offset: byte offset in that file.
 *
 * Chunks live in the leaves of the diff area's chunk table, 64 to a
 * leaf, allocated when the first chunk of a leaf is copied.  They are
 * freed only with the diff area.
 */
struct chunk {
  uint32_t state;
  uint32_t file;
  uint64_t offset;
};

static inline uint32_t
chunk_state (const struct chunk *c)
{
  return c ? __atomic_load_n (&c->state, __ATOMIC_ACQUIRE) : CHUNK_NEW;
}

static inline void
chunk_set_state (struct chunk *c, uint32_t state)
{
  __atomic_store_n (&c->state, state, __ATOMIC_RELEASE);
}

static inline int
chunk_state_is_final (uint32_t state)
{
  return state == CHUNK_STORED || state == CHUNK_ZERO ||
    state == CHUNK_FAILED;
}

const char *chunk_state_name (uint32_t state);

#endif /* NBDSNAP_CHUNK_H */
