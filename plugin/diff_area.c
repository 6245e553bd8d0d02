/* nbdsnap - diff area: copy-on-write state of one device in a snapshot.
 *
 * Design
 * ------
 * A taken snapshot keeps, for each of its devices, the point-in-time
 * data of every chunk the original has overwritten since the take.
 * The chunk (a power of two, 64 KiB by default) is the unit of copy.
 *
 * States (see chunk.h for the machine):
 *   NEW        data only on the original; no memory spent on it
 *   LOADING    being read from the original by a copy-on-write
 *   IN_MEMORY  in the copier's buffer, being written to diff storage
 *   STORED     in diff storage at (file, offset)
 *   ZERO       point-in-time data is all zeroes; nothing stored
 *   FAILED     copy failed; the snapshot is corrupted
 *
 * Chunk table: a radix tree of 64-way interior nodes over 64-chunk
 * leaves, grown on first copy in a leaf.  A NEW chunk usually has no
 * leaf at all, so metadata grows with the chunks copied, not with the
 * device (a leaf is 1 KiB and covers 4 MiB at the default chunk size).
 * Lookups walk the tree with acquire loads and no lock; adding a node
 * or leaf takes @table_lock, once per leaf.
 *
 * Chunk locks: writer-preferring rwlocks, striped by chunk index.  A
 * state change holds the chunk's lock for writing.  Readers of a final
 * state (STORED, ZERO, FAILED) take no lock at all; a reader that sees
 * NEW takes it for reading and reads the original under it.
 *
 * Write path (original; from tracker.c, inside the tracker's gate):
 *   for each chunk of the range: look it up; if final, nothing to do
 *   (the cheap path: a write to a chunk already copied costs a lookup);
 *   else take its lock for writing, and if still NEW read it from the
 *   original (LOADING), keep it as ZERO if it is all zeroes, else
 *   (IN_MEMORY) write it to a fresh diff storage slot (STORED).  If the
 *   read, the allocation or the write fails the chunk goes FAILED, the
 *   snapshot is corrupted, and the caller's write proceeds anyway.
 *
 * Read path (image):
 *   STORED -> diff storage (runs of chunks stored back to back are one
 *   read); ZERO -> zeroes; FAILED -> EIO; NEW -> the original, under the
 *   chunk locks held for reading (a run of NEW chunks is one read, its
 *   locks taken in ascending stripe order so that runs cannot deadlock
 *   with one another; a copy-on-write holds a single lock).  After a
 *   read from the original the snapshot is checked again: once it is
 *   corrupted, writes stop copying and the original can no longer be
 *   trusted to hold the point in time.
 *
 * Write path (image): the chunk is made STORED first (copied from the
 * original if NEW, unless the write covers it whole; a fresh slot of
 * zeroes if ZERO), then the data goes to its slot.  Never to the
 * original.  Failures here fail the image write only: the point in
 * time is still intact.
 *
 * Locking order: chunk locks (ascending stripes) -> storage lock.  The
 * table lock is never held with a chunk lock.
 */

#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "diff_area.h"
#include "diff_storage.h"
#include "snapshot.h"
#include "tracker.h"

/* Chunks read from the original in one go by an image read. */
#define READ_RUN_MAX 64

uint32_t
diff_area_choose_chunk_size (uint64_t size, uint32_t chunk_size,
                             uint64_t chunk_count_max)
{
  uint64_t cs = chunk_size;

  while (DIV_ROUND_UP (size, cs) > chunk_count_max && cs < (1u << 30))
    cs <<= 1;
  return (uint32_t) cs;
}

struct diff_area *
diff_area_create (struct tracker *t, struct snapshot *s,
                  struct diff_storage *ds, uint32_t chunk_size, int *err)
{
  struct diff_area *da;
  pthread_rwlockattr_t attr;
  uint64_t capacity;
  unsigned i;

  if (!IS_POWER_OF_2 (chunk_size)) {
    *err = EINVAL;
    return NULL;
  }
  da = calloc (1, sizeof *da);
  if (da == NULL) {
    *err = errno;
    return NULL;
  }
  da->root = calloc (CHUNK_TABLE_FANOUT, sizeof (void *));
  if (da->root == NULL) {
    *err = errno;
    free (da);
    return NULL;
  }
  da->table_bytes = CHUNK_TABLE_FANOUT * sizeof (void *);
  tracker_get (t);
  da->tracker = t;
  da->snapshot = s;
  da->storage = ds;
  da->size = t->size;
  da->chunk_size = chunk_size;
  da->chunk_shift = __builtin_ctz (chunk_size);
  da->chunk_count = DIV_ROUND_UP (t->size, chunk_size);
  da->height = 1;
  capacity = (uint64_t) CHUNK_TABLE_FANOUT * CHUNK_TABLE_FANOUT;
  while (capacity < da->chunk_count) {
    da->height++;
    capacity *= CHUNK_TABLE_FANOUT;
  }
  pthread_mutex_init (&da->table_lock, NULL);
  pthread_rwlockattr_init (&attr);
  pthread_rwlockattr_setkind_np (&attr,
                                 PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  for (i = 0; i < DIFF_AREA_LOCKS; i++)
    pthread_rwlock_init (&da->locks[i], &attr);
  pthread_rwlockattr_destroy (&attr);
  quiesce_init (&da->images);
  return da;
}

static void
free_table (void **node, unsigned level)
{
  unsigned i;

  if (node == NULL)
    return;
  if (level > 1)
    for (i = 0; i < CHUNK_TABLE_FANOUT; i++)
      free_table (node[i], level - 1);
  else
    for (i = 0; i < CHUNK_TABLE_FANOUT; i++)
      free (node[i]);             /* leaves */
  free (node);
}

void
diff_area_release (struct diff_area *da)
{
  if (da == NULL || da->released)
    return;
  quiesce_close (&da->images);
  free_table (da->root, da->height);
  da->root = NULL;
  da->released = true;
}

void
diff_area_free (struct diff_area *da)
{
  unsigned i;

  if (da == NULL)
    return;
  diff_area_release (da);
  quiesce_destroy (&da->images);
  for (i = 0; i < DIFF_AREA_LOCKS; i++)
    pthread_rwlock_destroy (&da->locks[i]);
  pthread_mutex_destroy (&da->table_lock);
  tracker_put (da->tracker);
  free (da);
}

static inline unsigned
slot_of (uint64_t idx, unsigned level)
{
  return (idx >> (CHUNK_TABLE_BITS * level)) & (CHUNK_TABLE_FANOUT - 1);
}

struct chunk *
diff_area_lookup (struct diff_area *da, uint64_t idx)
{
  void **node = da->root;
  unsigned level;

  if (node == NULL || idx >= da->chunk_count)
    return NULL;
  for (level = da->height; level >= 1; level--) {
    void *next = __atomic_load_n (&node[slot_of (idx, level)],
                                  __ATOMIC_ACQUIRE);
    if (next == NULL)
      return NULL;
    if (level == 1)
      return &((struct chunk *) next)[idx & (CHUNK_TABLE_FANOUT - 1)];
    node = next;
  }
  return NULL;                  /* not reached */
}

/* Look up chunk @idx, adding the nodes and leaf it needs. */
static struct chunk *
table_get (struct diff_area *da, uint64_t idx, int *err)
{
  void **node;
  unsigned level;

  SCOPED_LOCK (&da->table_lock);
  node = da->root;
  for (level = da->height; level >= 1; level--) {
    void **slot = &node[slot_of (idx, level)];
    void *next = __atomic_load_n (slot, __ATOMIC_ACQUIRE);

    if (next == NULL) {
      size_t size = level == 1
        ? CHUNK_TABLE_FANOUT * sizeof (struct chunk)
        : CHUNK_TABLE_FANOUT * sizeof (void *);
      next = calloc (1, size);
      if (next == NULL) {
        *err = ENOMEM;
        return NULL;
      }
      __atomic_add_fetch (&da->table_bytes, size, __ATOMIC_RELAXED);
      __atomic_store_n (slot, next, __ATOMIC_RELEASE);
    }
    if (level == 1)
      return &((struct chunk *) next)[idx & (CHUNK_TABLE_FANOUT - 1)];
    node = next;
  }
  return NULL;                  /* not reached */
}

static inline pthread_rwlock_t *
lock_of (struct diff_area *da, uint64_t idx)
{
  return &da->locks[idx % DIFF_AREA_LOCKS];
}

static inline uint32_t
chunk_len (struct diff_area *da, uint64_t idx)
{
  uint64_t start = idx << da->chunk_shift;
  return (uint32_t) MIN ((uint64_t) da->chunk_size, da->size - start);
}

/* Each thread keeps one copy buffer, grown to the largest chunk it has
 * copied and freed when the thread exits: no allocation per copy.
 */
static pthread_key_t buffer_key;
static pthread_once_t buffer_once = PTHREAD_ONCE_INIT;

struct copy_buffer {
  size_t size;
  char *data;
};

static void
buffer_free (void *p)
{
  struct copy_buffer *b = p;

  if (b) {
    free (b->data);
    free (b);
  }
}

static void
buffer_key_init (void)
{
  pthread_key_create (&buffer_key, buffer_free);
}

static char *
copy_buffer (size_t size, int *err)
{
  struct copy_buffer *b;

  pthread_once (&buffer_once, buffer_key_init);
  b = pthread_getspecific (buffer_key);
  if (b && b->size >= size)
    return b->data;
  if (b == NULL) {
    b = calloc (1, sizeof *b);
    if (b == NULL) {
      *err = ENOMEM;
      return NULL;
    }
    pthread_setspecific (buffer_key, b);
  }
  free (b->data);
  b->size = 0;
  b->data = aligned_alloc (4096, (size + 4095) & ~(size_t) 4095);
  if (b->data == NULL) {
    *err = ENOMEM;
    return NULL;
  }
  b->size = size;
  return b->data;
}

/* Copy NEW chunk @idx from the original to diff storage.  Call with its
 * lock held for writing.  With @allow_zero an all-zero chunk becomes
 * ZERO instead of taking a slot.  On failure returns -1 with *err set
 * and the state left LOADING or IN_MEMORY for the caller to settle.
 */
static int
copy_locked (struct diff_area *da, struct chunk *c, uint64_t idx,
             bool allow_zero, int *err)
{
  uint32_t len = chunk_len (da, idx);
  uint32_t file;
  uint64_t off;
  char *buf;

  buf = copy_buffer (da->chunk_size, err);
  if (buf == NULL)
    return -1;
  chunk_set_state (c, CHUNK_LOADING);
  if (tracker_pread (da->tracker, buf, len, idx << da->chunk_shift,
                     err) == -1)
    return -1;
  if (allow_zero && buffer_is_zero (buf, len)) {
    chunk_set_state (c, CHUNK_ZERO);
    return 0;
  }
  chunk_set_state (c, CHUNK_IN_MEMORY);
  if (diff_storage_alloc (da->storage, da->chunk_size, &file, &off,
                          err) == -1)
    return -1;
  if (diff_storage_pwrite (da->storage, file, buf, len, off, err) == -1)
    return -1;
  c->file = file;
  c->offset = off;
  chunk_set_state (c, CHUNK_STORED);
  __atomic_add_fetch (&da->chunks_copied, 1, __ATOMIC_RELAXED);
  return 0;
}

void
diff_area_cow (struct diff_area *da, uint64_t offset, uint64_t count)
{
  uint64_t idx, last;
  int err;

  if (count == 0 || offset >= da->size)
    return;
  last = (MIN (offset + count, da->size) - 1) >> da->chunk_shift;
  for (idx = offset >> da->chunk_shift; idx <= last; idx++) {
    struct chunk *c = diff_area_lookup (da, idx);

    if (chunk_state_is_final (chunk_state (c)))
      continue;
    if (snapshot_failed (da->snapshot))
      return;                   /* corrupted: stop copying */
    if (c == NULL) {
      c = table_get (da, idx, &err);
      if (c == NULL) {
        snapshot_corrupt (da->snapshot, err, da->tracker->name);
        return;
      }
    }
    pthread_rwlock_wrlock (lock_of (da, idx));
    if (chunk_state (c) == CHUNK_NEW &&
        copy_locked (da, c, idx, true, &err) == -1) {
      chunk_set_state (c, CHUNK_FAILED);
      pthread_rwlock_unlock (lock_of (da, idx));
      snapshot_corrupt (da->snapshot, err, da->tracker->name);
      return;
    }
    pthread_rwlock_unlock (lock_of (da, idx));
  }
}

bool
diff_area_image_enter (struct diff_area *da)
{
  return quiesce_enter (&da->images);
}

void
diff_area_image_leave (struct diff_area *da)
{
  quiesce_leave (&da->images);
}

/* Lock (for reading) the stripes of chunks [idx, idx+n), n <= READ_RUN_MAX,
 * in ascending stripe order.
 */
static void
lock_run (struct diff_area *da, uint64_t idx, unsigned n)
{
  unsigned s = idx % DIFF_AREA_LOCKS, i;

  if (s + n <= DIFF_AREA_LOCKS) {
    for (i = 0; i < n; i++)
      pthread_rwlock_rdlock (&da->locks[s + i]);
  }
  else {
    unsigned wrapped = s + n - DIFF_AREA_LOCKS;
    for (i = 0; i < wrapped; i++)
      pthread_rwlock_rdlock (&da->locks[i]);
    for (i = s; i < DIFF_AREA_LOCKS; i++)
      pthread_rwlock_rdlock (&da->locks[i]);
  }
}

static void
unlock_run (struct diff_area *da, uint64_t idx, unsigned n)
{
  unsigned i;

  for (i = 0; i < n; i++)
    pthread_rwlock_unlock (lock_of (da, idx + i));
}

/* Read from the original the part of [offset, offset+count) that lies in
 * a run of NEW chunks starting at offset's chunk.  Sets *done to the
 * bytes read: 0 if the first chunk is no longer NEW (the caller looks
 * again).
 */
static int
read_new_run (struct diff_area *da, char *buf, uint64_t offset,
              uint32_t count, uint32_t *done, int *err)
{
  uint64_t idx = offset >> da->chunk_shift;
  uint64_t end = offset + count;
  unsigned n = 0, m;
  uint64_t run_end;
  int r = 0;

  /* The candidates, looked at without locks. */
  while (n < READ_RUN_MAX && idx + n < da->chunk_count &&
         ((idx + n) << da->chunk_shift) < end &&
         !chunk_state_is_final (chunk_state (diff_area_lookup (da, idx + n))))
    n++;

  lock_run (da, idx, n);
  for (m = 0; m < n; m++)
    if (chunk_state (diff_area_lookup (da, idx + m)) != CHUNK_NEW)
      break;
  if (m == 0) {
    *done = 0;
    goto out;
  }
  run_end = MIN (end, (idx + m) << da->chunk_shift);
  if (tracker_pread (da->tracker, buf, run_end - offset, offset, err) == -1) {
    r = -1;
    goto out;
  }
  /* Destroy turns copy-on-write off while image reads may still be in
   * flight (they drain afterwards): a write to the original may then
   * have changed what this read got.  The state is set to DESTROYED
   * before copy-on-write goes off, so if it is not DESTROYED now,
   * copy-on-write was on during the whole read and our read locks kept
   * the chunks unchanged.
   */
  if (snapshot_failed (da->snapshot) ||
      __atomic_load_n (&da->snapshot->state, __ATOMIC_SEQ_CST) ==
      SNAPSHOT_DESTROYED) {
    *err = EIO;
    r = -1;
    goto out;
  }
  *done = run_end - offset;
 out:
  unlock_run (da, idx, n);
  return r;
}

int
diff_area_image_read (struct diff_area *da, void *buf, uint32_t count,
                      uint64_t offset, int *err)
{
  char *p = buf;

  while (count > 0) {
    uint64_t idx = offset >> da->chunk_shift;
    uint64_t within = offset - (idx << da->chunk_shift);
    uint32_t n = MIN ((uint64_t) count, chunk_len (da, idx) - within);
    struct chunk *c = diff_area_lookup (da, idx);
    uint32_t state = chunk_state (c);

    switch (state) {
    case CHUNK_STORED: {
      /* Extend over following chunks stored right after this one. */
      uint64_t next = idx + 1;
      uint64_t want = n;
      while (want < count && next < da->chunk_count) {
        struct chunk *d = diff_area_lookup (da, next);
        if (chunk_state (d) != CHUNK_STORED || d->file != c->file ||
            d->offset != c->offset + ((next - idx) << da->chunk_shift))
          break;
        want += MIN ((uint64_t) count - want, (uint64_t) chunk_len (da, next));
        next++;
      }
      if (diff_storage_pread (da->storage, c->file, p, want,
                              c->offset + within, err) == -1)
        return -1;
      n = want;
      break;
    }
    case CHUNK_ZERO:
      memset (p, 0, n);
      break;
    case CHUNK_FAILED:
      *err = EIO;
      return -1;
    default:
      if (read_new_run (da, p, offset, count, &n, err) == -1)
        return -1;
      break;                    /* n == 0: the state changed; look again */
    }
    p += n;
    offset += n;
    count -= n;
  }
  return 0;
}

/* Make chunk @idx STORED so that image data can be written to its slot.
 * @whole: @data covers the whole chunk, so nothing needs copying: a
 * fresh slot is filled with @data and *wrote is set.
 */
static struct chunk *
make_stored (struct diff_area *da, uint64_t idx, bool whole,
             const void *data, bool *wrote, int *err)
{
  struct chunk *c = diff_area_lookup (da, idx);
  uint32_t state = chunk_state (c);
  uint32_t len = chunk_len (da, idx);
  uint32_t file;
  uint64_t off;

  *wrote = false;
  if (state == CHUNK_STORED)
    return c;
  if (state == CHUNK_FAILED) {
    *err = EIO;
    return NULL;
  }
  if (c == NULL && (c = table_get (da, idx, err)) == NULL)
    return NULL;

  pthread_rwlock_wrlock (lock_of (da, idx));
  state = chunk_state (c);
  if (state == CHUNK_NEW && !whole) {
    if (copy_locked (da, c, idx, false, err) == -1) {
      chunk_set_state (c, CHUNK_NEW); /* the original still has it */
      goto fail;
    }
  }
  else if (state == CHUNK_NEW || state == CHUNK_ZERO) {
    /* A fresh slot holding @data (whole) or zeroes. */
    static const char zeroes[65536];
    uint32_t done;

    if (diff_storage_alloc (da->storage, da->chunk_size, &file, &off,
                            err) == -1)
      goto fail;
    if (whole) {
      if (diff_storage_pwrite (da->storage, file, data, len, off, err) == -1)
        goto fail;
      *wrote = true;
    }
    else {
      for (done = 0; done < len; done += MIN (len - done, sizeof zeroes))
        if (diff_storage_pwrite (da->storage, file, zeroes,
                                 MIN (len - done, sizeof zeroes),
                                 off + done, err) == -1)
          goto fail;
    }
    c->file = file;
    c->offset = off;
    chunk_set_state (c, CHUNK_STORED);
    __atomic_add_fetch (&da->chunks_copied, 1, __ATOMIC_RELAXED);
  }
  else if (state == CHUNK_FAILED) {
    *err = EIO;
    goto fail;
  }
  pthread_rwlock_unlock (lock_of (da, idx));
  return c;

 fail:
  pthread_rwlock_unlock (lock_of (da, idx));
  return NULL;
}

int
diff_area_image_write (struct diff_area *da, const void *buf,
                       uint32_t count, uint64_t offset, int *err)
{
  const char *p = buf;
  uint64_t start = offset, total = count;

  while (count > 0) {
    uint64_t idx = offset >> da->chunk_shift;
    uint64_t within = offset - (idx << da->chunk_shift);
    uint32_t len = chunk_len (da, idx);
    uint32_t n = MIN ((uint64_t) count, len - within);
    bool whole = within == 0 && n == len;
    struct chunk *c;
    bool wrote;

    c = make_stored (da, idx, whole, p, &wrote, err);
    if (c == NULL)
      return -1;
    if (!wrote &&
        diff_storage_pwrite (da->storage, c->file, p, n,
                             c->offset + within, err) == -1)
      return -1;
    p += n;
    offset += n;
    count -= n;
  }
  cbt_map_mark_both (da->tracker->cbt, start, total);
  return 0;
}

int
diff_area_image_zero (struct diff_area *da, uint32_t count, uint64_t offset,
                      int *err)
{
  static const char zeroes[65536];
  uint64_t start = offset, total = count;

  while (count > 0) {
    uint64_t idx = offset >> da->chunk_shift;
    uint64_t within = offset - (idx << da->chunk_shift);
    uint32_t len = chunk_len (da, idx);
    uint32_t n = MIN ((uint64_t) count, len - within);

    if (within == 0 && n == len) {
      /* A whole chunk: it simply reads as zeroes from now on. */
      struct chunk *c = diff_area_lookup (da, idx);
      if (c == NULL && (c = table_get (da, idx, err)) == NULL)
        return -1;
      pthread_rwlock_wrlock (lock_of (da, idx));
      if (chunk_state (c) == CHUNK_FAILED) {
        pthread_rwlock_unlock (lock_of (da, idx));
        *err = EIO;
        return -1;
      }
      chunk_set_state (c, CHUNK_ZERO);
      pthread_rwlock_unlock (lock_of (da, idx));
    }
    else {
      bool wrote;
      struct chunk *c = make_stored (da, idx, false, NULL, &wrote, err);
      uint32_t done, k;

      if (c == NULL)
        return -1;
      for (done = 0; done < n; done += k) {
        k = MIN (n - done, (uint32_t) sizeof zeroes);
        if (diff_storage_pwrite (da->storage, c->file, zeroes, k,
                                 c->offset + within + done, err) == -1)
          return -1;
      }
    }
    offset += n;
    count -= n;
  }
  cbt_map_mark_both (da->tracker->cbt, start, total);
  return 0;
}

const char *
chunk_state_name (uint32_t state)
{
  switch (state) {
  case CHUNK_NEW: return "new";
  case CHUNK_LOADING: return "loading";
  case CHUNK_IN_MEMORY: return "in memory";
  case CHUNK_STORED: return "stored";
  case CHUNK_ZERO: return "zero";
  case CHUNK_FAILED: return "failed";
  default: return "invalid";
  }
}
