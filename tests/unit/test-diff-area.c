/* nbdsnap unit tests - chunk and diff_area: copy-on-write.
 *
 * Every test works on a real device file, a real O_TMPFILE diff storage
 * and a snapshot taken through snapshot_take.  The device content is
 * made of 512-byte sectors, each tagged with its index and a generation
 * (0 is the point in time; writes after the take carry 1, 2, ...), the
 * rest of the sector a pseudo-random pattern of both, so that any byte
 * read can be checked against what it must be.  Some chunks are all
 * zeroes (holes) at the take.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/CUnit.h>

#include "chunk.h"
#include "diff_area.h"
#include "diff_storage.h"
#include "event_queue.h"
#include "image.h"
#include "registry.h"
#include "snapshot.h"
#include "tracker.h"
#include "unit.h"

#define KiB 1024ULL
#define MiB (1024 * KiB)
#define SECTOR 512
#define TAG_MAGIC 0x54434553u   /* "SECT" */

/* The model value of a sector zeroed or trimmed after the take. */
#define GEN_ZEROED UINT32_MAX

/**
 * struct fixture - a device in a taken snapshot.
 * @path: the device file.
 * @fd: the test's own descriptor of it (to check the original).
 * @size: device size (a multiple of SECTOR).
 * @cs: chunk size.
 * @t: the tracker.
 * @s: the snapshot (taken).
 * @da: the device's diff area.
 * @model: per sector, what the original holds now: 0 the point in
 *   time, GEN_ZEROED zeroes, else the generation written.
 */
struct fixture {
  char *path;
  int fd;
  uint64_t size;
  uint32_t cs;
  struct tracker *t;
  struct snapshot *s;
  struct diff_area *da;
  uint32_t *model;
};

/* Chunks that hold only zeroes at the take. */
static bool
zero_chunk (uint64_t idx)
{
  return idx % 7 == 2;
}

static void
fill_sector (uint8_t *p, uint64_t idx, uint32_t gen)
{
  uint32_t magic = TAG_MAGIC;
  uint64_t s = ((idx + 1) * 0x9e3779b97f4a7c15ULL) ^ ((uint64_t) gen << 40)
    ^ 0x5a5a5a5aULL;
  unsigned i;

  s |= 1;
  memcpy (p, &magic, 4);
  memcpy (p + 4, &gen, 4);
  memcpy (p + 8, &idx, 8);
  for (i = 16; i < SECTOR; i += 8) {
    uint64_t x = unit_rand (&s);
    memcpy (p + i, &x, 8);
  }
}

/* What sector @idx holds at the point in time. */
static void
pit_sector (const struct fixture *f, uint8_t *p, uint64_t idx)
{
  if (zero_chunk ((idx * SECTOR) / f->cs))
    memset (p, 0, SECTOR);
  else
    fill_sector (p, idx, 0);
}

/* What sector @idx of the original must hold now. */
static void
now_sector (const struct fixture *f, uint8_t *p, uint64_t idx)
{
  uint32_t g = __atomic_load_n (&f->model[idx], __ATOMIC_RELAXED);

  if (g == 0)
    pit_sector (f, p, idx);
  else if (g == GEN_ZEROED)
    memset (p, 0, SECTOR);
  else
    fill_sector (p, idx, g);
}

/* Fill @buf with the expected bytes [off, off+len). */
static void
expect (const struct fixture *f, bool now, uint8_t *buf, uint64_t off,
        size_t len)
{
  uint8_t sec[SECTOR];

  while (len > 0) {
    uint64_t idx = off / SECTOR;
    size_t within = off % SECTOR;
    size_t n = MIN (len, SECTOR - within);

    if (now)
      now_sector (f, sec, idx);
    else
      pit_sector (f, sec, idx);
    memcpy (buf, sec + within, n);
    buf += n;
    off += n;
    len -= n;
  }
}

static pthread_mutex_t report_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned reports;

/* Compare @got with @exp ([off, off+len) of the device); report the
 * first mismatch.  Returns true if equal.  Thread-safe.
 */
static bool
same (const char *what, const uint8_t *got, const uint8_t *exp,
      uint64_t off, size_t len)
{
  size_t i;

  if (memcmp (got, exp, len) == 0)
    return true;
  for (i = 0; i < len && got[i] == exp[i]; i++)
    ;
  pthread_mutex_lock (&report_lock);
  if (reports++ < 10) {
    uint64_t at = off + i, sec = at / SECTOR;
    size_t head = (size_t) (sec * SECTOR - off);
    uint32_t magic = 0, gen = 0;
    uint64_t idx = 0;

    if (sec * SECTOR >= off && head + 16 <= len) {
      memcpy (&magic, got + head, 4);
      memcpy (&gen, got + head + 4, 4);
      memcpy (&idx, got + head + 8, 8);
    }
    fprintf (stderr, "  %s: mismatch at byte %" PRIu64 " (sector %" PRIu64
             "): got 0x%02x, expected 0x%02x; sector tag magic 0x%08x "
             "gen %u index %" PRIu64 "\n",
             what, at, sec, got[i], exp[i], magic, gen, idx);
  }
  pthread_mutex_unlock (&report_lock);
  return false;
}

/* Make the device, open it, take a snapshot of it. */
static bool
fixture_setup (struct fixture *f, uint64_t size, uint32_t cs, uint64_t limit)
{
  uint8_t *buf;
  uint64_t off;
  uint64_t pause;
  int sfd, err = 0;

  memset (f, 0, sizeof *f);
  f->size = size;
  f->cs = cs;
  f->fd = unit_temp_file (size, &f->path);
  CU_ASSERT_FATAL (f->fd >= 0);
  f->model = calloc (size / SECTOR, sizeof *f->model);
  CU_ASSERT_FATAL (f->model != NULL);

  /* The point in time; zero chunks stay holes. */
  buf = malloc (cs);
  CU_ASSERT_FATAL (buf != NULL);
  for (off = 0; off < size; off += cs) {
    size_t n = MIN ((uint64_t) cs, size - off);
    if (zero_chunk (off / cs))
      continue;
    expect (f, false, buf, off, n);
    CU_ASSERT_FATAL (pwrite (f->fd, buf, n, off) == (ssize_t) n);
  }
  free (buf);

  f->t = tracker_open ("da-dev", f->path, &engine_params.cbt, &err);
  CU_ASSERT_FATAL (f->t != NULL);

  engine_params.chunk_size = cs;
  engine_params.storage_portion = 4 * MiB;
  sfd = unit_tmpfile ();
  CU_ASSERT_FATAL (sfd >= 0);
  pthread_mutex_lock (&control_lock);
  f->s = snapshot_create (sfd, limit, &err);
  if (f->s) {
    CU_ASSERT_EQUAL (snapshot_add_device (f->s, f->t, &err), 0);
    CU_ASSERT_EQUAL (snapshot_take (f->s, &pause, &err), 0);
  }
  pthread_mutex_unlock (&control_lock);
  CU_ASSERT_FATAL (f->s != NULL);
  CU_ASSERT_EQUAL_FATAL (snapshot_state (f->s), SNAPSHOT_TAKEN);
  f->da = snapshot_area_of (f->s, f->t);
  CU_ASSERT_FATAL (f->da != NULL);
  CU_ASSERT_EQUAL (f->da->chunk_size, cs);
  CU_ASSERT_PTR_EQUAL (f->t->diff_area, f->da);
  return true;
}

static void
drain_events (void)
{
  struct nbdsnap_ctl_event ev[16];

  while (event_queue_pop (&event_queue, ev, ARRAY_SIZE (ev)) > 0)
    ;
}

static void
fixture_teardown (struct fixture *f)
{
  int err;

  if (f->s) {
    pthread_mutex_lock (&control_lock);
    snapshot_destroy (f->s, &err);
    pthread_mutex_unlock (&control_lock);
  }
  tracker_put (f->t);
  close (f->fd);
  unlink (f->path);
  free (f->path);
  free (f->model);
  drain_events ();
}

static uint32_t
state_of (struct fixture *f, uint64_t idx)
{
  return chunk_state (diff_area_lookup (f->da, idx));
}

/* Write generation @gen over sectors [first, first+n) of the original
 * through the tracker, and record it in the model.
 */
static int
write_sectors (struct fixture *f, uint64_t first, uint32_t n, uint32_t gen)
{
  uint8_t *buf = calloc (n, SECTOR);
  uint32_t i;
  int r, err = 0;

  if (buf == NULL)
    return -1;
  for (i = 0; i < n; i++)
    fill_sector (buf + (size_t) i * SECTOR, first + i, gen);
  r = tracker_pwrite (f->t, buf, n * SECTOR, first * SECTOR, false, &err);
  if (r == 0)
    for (i = 0; i < n; i++)
      __atomic_store_n (&f->model[first + i], gen, __ATOMIC_RELAXED);
  free (buf);
  return r;
}

/* The whole image equals the point in time; the original equals the
 * model.  Returns mismatches.
 */
static unsigned
check_all (struct fixture *f)
{
  uint8_t *got = malloc (MiB), *exp = malloc (MiB);
  unsigned bad = 0;
  uint64_t off;
  int err = 0;

  CU_ASSERT_FATAL (got != NULL && exp != NULL);
  for (off = 0; off < f->size; off += MiB) {
    size_t n = MIN (MiB, f->size - off);

    memset (got, 0xa5, n);
    if (diff_area_image_read (f->da, got, n, off, &err) == -1) {
      fprintf (stderr, "  image read at %" PRIu64 ": %s\n", off,
               strerror (err));
      bad++;
    }
    expect (f, false, exp, off, n);
    bad += !same ("image", got, exp, off, n);

    CU_ASSERT_FATAL (pread (f->fd, got, n, off) == (ssize_t) n);
    expect (f, true, exp, off, n);
    bad += !same ("original", got, exp, off, n);
  }
  free (got);
  free (exp);
  return bad;
}

/* Image I/O through the diff area, inside its gate. */
static int
img_read (struct fixture *f, void *buf, uint32_t count, uint64_t off)
{
  int r, err = 0;

  if (!diff_area_image_enter (f->da))
    return -1;
  r = diff_area_image_read (f->da, buf, count, off, &err);
  diff_area_image_leave (f->da);
  return r == 0 ? 0 : -err;
}

static void
test_chunk_size (void)
{
  CU_ASSERT_EQUAL (diff_area_choose_chunk_size (1 * MiB, 65536, 1024),
                   65536);
  CU_ASSERT_EQUAL (diff_area_choose_chunk_size (64 * MiB, 65536, 1024),
                   65536);
  CU_ASSERT_EQUAL (diff_area_choose_chunk_size (64 * MiB + 1, 65536, 1024),
                   131072);
  CU_ASSERT_EQUAL (diff_area_choose_chunk_size (1024 * MiB, 4096, 1024),
                   1 * MiB);
  CU_ASSERT_STRING_EQUAL (chunk_state_name (CHUNK_NEW), "new");
  CU_ASSERT_STRING_EQUAL (chunk_state_name (CHUNK_LOADING), "loading");
  CU_ASSERT_STRING_EQUAL (chunk_state_name (CHUNK_IN_MEMORY), "in memory");
  CU_ASSERT_STRING_EQUAL (chunk_state_name (CHUNK_STORED), "stored");
  CU_ASSERT_STRING_EQUAL (chunk_state_name (CHUNK_ZERO), "zero");
  CU_ASSERT_STRING_EQUAL (chunk_state_name (CHUNK_FAILED), "failed");
  CU_ASSERT_STRING_EQUAL (chunk_state_name (99), "invalid");
  CU_ASSERT_FALSE (chunk_state_is_final (CHUNK_NEW));
  CU_ASSERT_FALSE (chunk_state_is_final (CHUNK_LOADING));
  CU_ASSERT_FALSE (chunk_state_is_final (CHUNK_IN_MEMORY));
  CU_ASSERT_TRUE (chunk_state_is_final (CHUNK_STORED));
  CU_ASSERT_TRUE (chunk_state_is_final (CHUNK_ZERO));
  CU_ASSERT_TRUE (chunk_state_is_final (CHUNK_FAILED));
  CU_ASSERT_EQUAL (chunk_state (NULL), CHUNK_NEW);
}

/* 64 KiB chunks over 1 MiB + 4 KiB: 17 chunks, the last 4 KiB long.
 * Chunks 2, 9 and 16 are zero at the take.
 */
#define ST_CS (64 * KiB)
#define ST_SIZE (1 * MiB + 4 * KiB)
#define ST_CHUNKS 17
#define SPC (ST_CS / SECTOR)    /* sectors per chunk */

/* The diff storage slot of chunk @idx holds @exp (chunk_len bytes). */
static bool
slot_holds (struct fixture *f, uint64_t idx, const uint8_t *exp, size_t len)
{
  struct chunk *c = diff_area_lookup (f->da, idx);
  uint8_t *got = malloc (len);
  bool ok;
  int err = 0;

  CU_ASSERT_FATAL (got != NULL);
  ok = c != NULL && chunk_state (c) == CHUNK_STORED &&
    diff_storage_pread (f->da->storage, c->file, got, len, c->offset,
                        &err) == 0 &&
    same ("slot", got, exp, idx * f->cs, len);
  free (got);
  return ok;
}

static uint64_t
storage_used (struct fixture *f)
{
  uint64_t used, limit, allocated;
  unsigned count;

  diff_storage_usage (f->da->storage, &used, &limit, &allocated, &count);
  return used;
}

static void
test_states_original_writes (void)
{
  struct fixture f;
  uint8_t *exp = malloc (ST_CS), *got = malloc (ST_CS);
  uint64_t i, root_bytes;
  struct chunk *c3;
  int err = 0;

  CU_ASSERT_FATAL (exp != NULL && got != NULL);
  fixture_setup (&f, ST_SIZE, ST_CS, 64 * MiB);
  CU_ASSERT_EQUAL (f.da->chunk_count, ST_CHUNKS);

  /* After take: every chunk NEW, nothing allocated but the root. */
  root_bytes = f.da->table_bytes;
  CU_ASSERT_EQUAL (root_bytes, CHUNK_TABLE_FANOUT * sizeof (void *));
  for (i = 0; i < ST_CHUNKS; i++)
    CU_ASSERT_PTR_NULL (diff_area_lookup (f.da, i));
  CU_ASSERT_PTR_NULL (diff_area_lookup (f.da, ST_CHUNKS));
  CU_ASSERT_PTR_NULL (diff_area_lookup (f.da, UINT64_MAX));
  CU_ASSERT_EQUAL (f.da->chunks_copied, 0);
  CU_ASSERT_EQUAL (storage_used (&f), 0);

  /* A small write inside chunk 3: NEW -> STORED in the first slot. */
  CU_ASSERT_EQUAL (write_sectors (&f, 3 * SPC + 7, 1, 1), 0);
  c3 = diff_area_lookup (f.da, 3);
  CU_ASSERT_FATAL (c3 != NULL);
  CU_ASSERT_EQUAL (chunk_state (c3), CHUNK_STORED);
  CU_ASSERT_EQUAL (c3->file, 0);
  CU_ASSERT_EQUAL (c3->offset, 0);
  expect (&f, false, exp, 3 * ST_CS, ST_CS);
  CU_ASSERT_TRUE (slot_holds (&f, 3, exp, ST_CS));
  CU_ASSERT_EQUAL (f.da->chunks_copied, 1);
  CU_ASSERT_EQUAL (storage_used (&f), ST_CS);
  CU_ASSERT_EQUAL (state_of (&f, 2), CHUNK_NEW);
  CU_ASSERT_EQUAL (state_of (&f, 4), CHUNK_NEW);
  CU_ASSERT (f.da->table_bytes > root_bytes);   /* a leaf (and nodes) */

  /* Writing a chunk already copied costs nothing more. */
  CU_ASSERT_EQUAL (write_sectors (&f, 3 * SPC, SPC, 2), 0);
  CU_ASSERT_EQUAL (chunk_state (c3), CHUNK_STORED);
  CU_ASSERT_EQUAL (c3->offset, 0);
  CU_ASSERT_EQUAL (f.da->chunks_copied, 1);
  CU_ASSERT_EQUAL (storage_used (&f), ST_CS);
  CU_ASSERT_TRUE (slot_holds (&f, 3, exp, ST_CS));

  /* A write across the boundary of chunks 5 and 6 copies both. */
  CU_ASSERT_EQUAL (write_sectors (&f, 6 * SPC - 1, 2, 3), 0);
  CU_ASSERT_EQUAL (state_of (&f, 5), CHUNK_STORED);
  CU_ASSERT_EQUAL (state_of (&f, 6), CHUNK_STORED);
  CU_ASSERT_EQUAL (diff_area_lookup (f.da, 5)->offset, 1 * ST_CS);
  CU_ASSERT_EQUAL (diff_area_lookup (f.da, 6)->offset, 2 * ST_CS);
  expect (&f, false, exp, 5 * ST_CS, ST_CS);
  CU_ASSERT_TRUE (slot_holds (&f, 5, exp, ST_CS));
  expect (&f, false, exp, 6 * ST_CS, ST_CS);
  CU_ASSERT_TRUE (slot_holds (&f, 6, exp, ST_CS));
  CU_ASSERT_EQUAL (state_of (&f, 4), CHUNK_NEW);
  CU_ASSERT_EQUAL (state_of (&f, 7), CHUNK_NEW);
  CU_ASSERT_EQUAL (f.da->chunks_copied, 3);

  /* A chunk of zeroes becomes ZERO: no slot. */
  CU_ASSERT_EQUAL (write_sectors (&f, 2 * SPC + 3, 5, 4), 0);
  CU_ASSERT_EQUAL (state_of (&f, 2), CHUNK_ZERO);
  CU_ASSERT_EQUAL (f.da->chunks_copied, 3);
  CU_ASSERT_EQUAL (storage_used (&f), 3 * ST_CS);

  /* Write-zeroes and trims copy first, as writes do. */
  CU_ASSERT_EQUAL (tracker_zero (f.t, ST_CS, 7 * ST_CS, true, false, false,
                                 &err), 0);
  for (i = 7 * SPC; i < 8 * SPC; i++)
    f.model[i] = GEN_ZEROED;
  CU_ASSERT_EQUAL (state_of (&f, 7), CHUNK_STORED);
  CU_ASSERT_EQUAL (tracker_zero (f.t, 3 * SECTOR, 8 * ST_CS + SECTOR, false,
                                 false, false, &err), 0);
  for (i = 8 * SPC + 1; i < 8 * SPC + 4; i++)
    f.model[i] = GEN_ZEROED;
  CU_ASSERT_EQUAL (state_of (&f, 8), CHUNK_STORED);
  CU_ASSERT_EQUAL (tracker_trim (f.t, ST_CS + 4 * KiB, 15 * ST_CS, false,
                                 &err), 0);
  for (i = 15 * SPC; i < ST_SIZE / SECTOR; i++)
    f.model[i] = GEN_ZEROED;
  CU_ASSERT_EQUAL (state_of (&f, 15), CHUNK_STORED);
  CU_ASSERT_EQUAL (state_of (&f, 16), CHUNK_ZERO); /* short, and zero */
  CU_ASSERT_EQUAL (f.da->chunks_copied, 6);

  /* Chunks no write touched are still NEW. */
  CU_ASSERT_EQUAL (state_of (&f, 14), CHUNK_NEW);
  CU_ASSERT_EQUAL (state_of (&f, 0), CHUNK_NEW);

  /* The image reads the point in time everywhere; the original has
   * every write.
   */
  CU_ASSERT_EQUAL (check_all (&f), 0);

  /* Unaligned image reads across chunk boundaries and chunk kinds
   * (stored 5, 6 / new 4 / zero 2 / stored 3).
   */
  {
    uint8_t *b1 = malloc (5 * ST_CS), *b2 = malloc (5 * ST_CS);
    static const uint64_t offs[] = { 2 * ST_CS - 1, 4 * ST_CS + 17,
                                     ST_SIZE - 5000, 1 };
    unsigned k;

    CU_ASSERT_FATAL (b1 && b2);
    for (k = 0; k < ARRAY_SIZE (offs); k++) {
      size_t n = MIN (5 * ST_CS - 333, ST_SIZE - offs[k]);
      CU_ASSERT_EQUAL (img_read (&f, b1, n, offs[k]), 0);
      expect (&f, false, b2, offs[k], n);
      CU_ASSERT_TRUE (same ("image", b1, b2, offs[k], n));
    }
    free (b1);
    free (b2);
  }

  fixture_teardown (&f);
  free (exp);
  free (got);
}

/* Image writes and zeroes: the chunk is made STORED (or ZERO), the data
 * goes to diff storage, never to the original; both CBT maps are marked.
 */
static void
test_states_image_writes (void)
{
  struct fixture f;
  uint8_t *buf = malloc (ST_CS), *exp = malloc (ST_CS);
  uint8_t *img = malloc (ST_SIZE), *orig = malloc (ST_SIZE);
  uint8_t *got = malloc (ST_SIZE);
  uint8_t anum, fnum, gen[16];
  uint64_t copied;
  int err = 0;

  CU_ASSERT_FATAL (buf && exp && img && orig && got);
  fixture_setup (&f, ST_SIZE, ST_CS, 64 * MiB);
  expect (&f, false, img, 0, ST_SIZE);      /* model of the image */
  memcpy (orig, img, ST_SIZE);              /* model of the original */
  cbt_map_get_active (f.t->cbt, &anum, gen);
  CU_ASSERT_TRUE (cbt_map_get_frozen (f.t->cbt, &fnum, gen));
  CU_ASSERT_EQUAL (anum, fnum + 1);

  /* Partial write into NEW chunk 10: copied first, then written. */
  memset (buf, 'a', 1000);
  CU_ASSERT_EQUAL (diff_area_image_write (f.da, buf, 1000,
                                          10 * ST_CS + 300, &err), 0);
  memset (img + 10 * ST_CS + 300, 'a', 1000);
  CU_ASSERT_EQUAL (state_of (&f, 10), CHUNK_STORED);
  CU_ASSERT_TRUE (slot_holds (&f, 10, img + 10 * ST_CS, ST_CS));
  CU_ASSERT_EQUAL (f.da->chunks_copied, 1);

  /* A whole chunk into NEW chunk 11: a fresh slot, nothing read. */
  memset (buf, 'b', ST_CS);
  CU_ASSERT_EQUAL (diff_area_image_write (f.da, buf, ST_CS, 11 * ST_CS,
                                          &err), 0);
  memset (img + 11 * ST_CS, 'b', ST_CS);
  CU_ASSERT_EQUAL (state_of (&f, 11), CHUNK_STORED);
  CU_ASSERT_TRUE (slot_holds (&f, 11, img + 11 * ST_CS, ST_CS));

  /* Partial write into zero chunk 9 (NEW on a hole -> copied). */
  memset (buf, 'c', 10);
  CU_ASSERT_EQUAL (diff_area_image_write (f.da, buf, 10, 9 * ST_CS + 5,
                                          &err), 0);
  memset (img + 9 * ST_CS + 5, 'c', 10);
  CU_ASSERT_EQUAL (state_of (&f, 9), CHUNK_STORED);
  CU_ASSERT_TRUE (slot_holds (&f, 9, img + 9 * ST_CS, ST_CS));

  /* ZERO -> STORED: chunk 2 made ZERO by an original write, then a
   * partial image write: a slot of zeroes with the data in it.
   */
  CU_ASSERT_EQUAL (write_sectors (&f, 2 * SPC, 1, 1), 0);
  fill_sector (orig + 2 * ST_CS, 2 * SPC, 1);
  CU_ASSERT_EQUAL (state_of (&f, 2), CHUNK_ZERO);
  memset (buf, 'd', 3000);
  copied = f.da->chunks_copied;
  CU_ASSERT_EQUAL (diff_area_image_write (f.da, buf, 3000, 2 * ST_CS + 9000,
                                          &err), 0);
  memset (img + 2 * ST_CS + 9000, 'd', 3000);
  CU_ASSERT_EQUAL (state_of (&f, 2), CHUNK_STORED);
  CU_ASSERT_TRUE (slot_holds (&f, 2, img + 2 * ST_CS, ST_CS));
  CU_ASSERT_EQUAL (f.da->chunks_copied, copied + 1);

  /* Whole-chunk image zero of NEW chunk 12: ZERO, no slot; a later
   * original write does not copy it.
   */
  copied = f.da->chunks_copied;
  CU_ASSERT_EQUAL (diff_area_image_zero (f.da, ST_CS, 12 * ST_CS, &err), 0);
  memset (img + 12 * ST_CS, 0, ST_CS);
  CU_ASSERT_EQUAL (state_of (&f, 12), CHUNK_ZERO);
  CU_ASSERT_EQUAL (write_sectors (&f, 12 * SPC + 1, 2, 1), 0);
  fill_sector (orig + 12 * ST_CS + SECTOR, 12 * SPC + 1, 1);
  fill_sector (orig + 12 * ST_CS + 2 * SECTOR, 12 * SPC + 2, 1);
  CU_ASSERT_EQUAL (state_of (&f, 12), CHUNK_ZERO);
  CU_ASSERT_EQUAL (f.da->chunks_copied, copied);

  /* Partial image zero of NEW chunk 13: STORED with the zeroes in it. */
  CU_ASSERT_EQUAL (diff_area_image_zero (f.da, 7000, 13 * ST_CS + 100,
                                         &err), 0);
  memset (img + 13 * ST_CS + 100, 0, 7000);
  CU_ASSERT_EQUAL (state_of (&f, 13), CHUNK_STORED);
  CU_ASSERT_TRUE (slot_holds (&f, 13, img + 13 * ST_CS, ST_CS));

  /* Whole-chunk zero of STORED chunk 10: ZERO. */
  CU_ASSERT_EQUAL (diff_area_image_zero (f.da, ST_CS, 10 * ST_CS, &err), 0);
  memset (img + 10 * ST_CS, 0, ST_CS);
  CU_ASSERT_EQUAL (state_of (&f, 10), CHUNK_ZERO);

  /* An image write across chunks 14 (NEW), 15 (NEW) and into the short
   * last chunk 16, to the very end.
   */
  {
    size_t n = ST_SIZE - (14 * ST_CS + 1);
    uint8_t *w = malloc (n);
    CU_ASSERT_FATAL (w != NULL);
    memset (w, 'e', n);
    CU_ASSERT_EQUAL (diff_area_image_write (f.da, w, n, 14 * ST_CS + 1,
                                            &err), 0);
    memset (img + 14 * ST_CS + 1, 'e', n);
    free (w);
    CU_ASSERT_EQUAL (state_of (&f, 14), CHUNK_STORED);
    CU_ASSERT_EQUAL (state_of (&f, 15), CHUNK_STORED);
    CU_ASSERT_EQUAL (state_of (&f, 16), CHUNK_STORED);
  }

  /* The image reads back what was written over the point in time. */
  memset (got, 0x5a, ST_SIZE);
  CU_ASSERT_EQUAL (img_read (&f, got, ST_SIZE, 0), 0);
  CU_ASSERT_TRUE (same ("image", got, img, 0, ST_SIZE));

  /* Invariant 3: the original has only the original's own writes. */
  CU_ASSERT_FATAL (pread (f.fd, got, ST_SIZE, 0) == (ssize_t) ST_SIZE);
  CU_ASSERT_TRUE (same ("original", got, orig, 0, ST_SIZE));

  /* Image writes marked both maps: active with the active number,
   * frozen with the snapshot's.  (CBT blocks are 64 KiB = chunks.)
   */
  CU_ASSERT_EQUAL (f.t->cbt->block_size, ST_CS);
  {
    static const unsigned wrote[] = { 2, 9, 10, 11, 12, 13, 14, 15, 16 };
    unsigned k;
    for (k = 0; k < ARRAY_SIZE (wrote); k++) {
      CU_ASSERT_EQUAL (f.t->cbt->active[wrote[k]], anum);
      CU_ASSERT_EQUAL (f.t->cbt->frozen[wrote[k]], fnum);
    }
    /* Chunk 0 was never written: unmarked in both. */
    CU_ASSERT_EQUAL (f.t->cbt->active[0], 0);
    CU_ASSERT_EQUAL (f.t->cbt->frozen[0], 0);
  }

  fixture_teardown (&f);
  free (buf);
  free (exp);
  free (img);
  free (orig);
  free (got);
}

/* The per-chunk lock serialises copy-on-write against image reads. */
struct locked_op {
  struct fixture *f;
  uint64_t idx;
  int done;                     /* atomic */
  int result;
  uint8_t *buf;
};

static void *
cow_writer (void *arg)
{
  struct locked_op *op = arg;

  op->result = write_sectors (op->f, op->idx * SPC + 3, 1, 9);
  __atomic_store_n (&op->done, 1, __ATOMIC_SEQ_CST);
  return NULL;
}

static void *
image_reader (void *arg)
{
  struct locked_op *op = arg;

  op->result = img_read (op->f, op->buf, ST_CS, op->idx * ST_CS);
  __atomic_store_n (&op->done, 1, __ATOMIC_SEQ_CST);
  return NULL;
}

static void
test_chunk_lock (void)
{
  struct fixture f;
  struct locked_op op = { .f = &f, .idx = 4 };
  uint8_t *exp = malloc (ST_CS), *got = malloc (ST_CS);
  pthread_rwlock_t *lock;
  pthread_t th;

  CU_ASSERT_FATAL (exp && got);
  fixture_setup (&f, ST_SIZE, ST_CS, 64 * MiB);
  expect (&f, false, exp, 4 * ST_CS, ST_CS);

  /* An image reader holds chunk 4's lock: a write to the original
   * waits, and the original is not changed under the reader.
   */
  lock = &f.da->locks[4 % DIFF_AREA_LOCKS];
  pthread_rwlock_rdlock (lock);
  CU_ASSERT_EQUAL_FATAL (pthread_create (&th, NULL, cow_writer, &op), 0);
  unit_sleep_ms (200);
  CU_ASSERT_EQUAL (__atomic_load_n (&op.done, __ATOMIC_SEQ_CST), 0);
  CU_ASSERT_EQUAL (state_of (&f, 4), CHUNK_NEW);
  CU_ASSERT_FATAL (pread (f.fd, got, ST_CS, 4 * ST_CS) == (ssize_t) ST_CS);
  CU_ASSERT_TRUE (same ("original under read lock", got, exp, 4 * ST_CS,
                        ST_CS));
  pthread_rwlock_unlock (lock);
  pthread_join (th, NULL);
  CU_ASSERT_EQUAL (op.result, 0);
  CU_ASSERT_EQUAL (state_of (&f, 4), CHUNK_STORED);
  CU_ASSERT_TRUE (slot_holds (&f, 4, exp, ST_CS));

  /* A copy-on-write holds chunk 5's lock: an image read of it waits,
   * then reads the point in time.
   */
  op = (struct locked_op) { .f = &f, .idx = 5, .buf = got };
  expect (&f, false, exp, 5 * ST_CS, ST_CS);
  lock = &f.da->locks[5 % DIFF_AREA_LOCKS];
  pthread_rwlock_wrlock (lock);
  CU_ASSERT_EQUAL_FATAL (pthread_create (&th, NULL, image_reader, &op), 0);
  unit_sleep_ms (200);
  CU_ASSERT_EQUAL (__atomic_load_n (&op.done, __ATOMIC_SEQ_CST), 0);
  pthread_rwlock_unlock (lock);
  pthread_join (th, NULL);
  CU_ASSERT_EQUAL (op.result, 0);
  CU_ASSERT_TRUE (same ("image after lock", got, exp, 5 * ST_CS, ST_CS));

  CU_ASSERT_EQUAL (check_all (&f), 0);
  fixture_teardown (&f);
  free (exp);
  free (got);
}

/* Concurrent copy-on-write against image reads. */

#define WRITERS 2
#define READERS 2
#define STRIPE_SECTORS 49       /* 24.5 KiB: writes straddle chunks */

struct stress {
  struct fixture *f;
  unsigned writes;              /* per writer */
  int writers_left;             /* atomic */
  uint64_t reads;               /* atomic */
  uint64_t bad;                 /* atomic: wrong data or errors */
  uint8_t *touched;             /* per chunk: written (atomic bytes) */
};

struct worker {
  struct stress *st;
  unsigned id;
  pthread_t th;
};

static void *
writer_main (void *arg)
{
  struct worker *w = arg;
  struct stress *st = w->st;
  struct fixture *f = st->f;
  uint64_t sectors = f->size / SECTOR;
  uint64_t stripes = DIV_ROUND_UP (sectors, STRIPE_SECTORS);
  uint64_t rnd = 0x1234567ULL * (w->id + 1);
  uint32_t gen = w->id + 1;     /* writers' generations never collide */
  unsigned i;

  for (i = 0; i < st->writes; i++) {
    uint64_t stripe = (unit_rand (&rnd) % (stripes / WRITERS)) * WRITERS
      + w->id;
    uint64_t first = stripe * STRIPE_SECTORS, end, s, c;
    uint32_t n, op = unit_rand (&rnd) % 8;
    int r, err = 0;

    if (first >= sectors)
      continue;
    end = MIN (first + STRIPE_SECTORS, sectors);
    first += unit_rand (&rnd) % (end - first);
    n = 1 + unit_rand (&rnd) % (end - first);

    if (op == 0) {              /* write zeroes */
      r = tracker_zero (f->t, n * SECTOR, first * SECTOR,
                        unit_rand (&rnd) & 1, false, false, &err);
      if (r == 0)
        for (s = first; s < first + n; s++)
          __atomic_store_n (&f->model[s], GEN_ZEROED, __ATOMIC_RELAXED);
    }
    else if (op == 1) {         /* trim (punches: reads as zeroes) */
      r = tracker_trim (f->t, n * SECTOR, first * SECTOR, false, &err);
      if (r == 0)
        for (s = first; s < first + n; s++)
          __atomic_store_n (&f->model[s], GEN_ZEROED, __ATOMIC_RELAXED);
    }
    else {
      gen += WRITERS;
      r = write_sectors (f, first, n, gen);
    }
    if (r != 0)
      __atomic_add_fetch (&st->bad, 1, __ATOMIC_SEQ_CST);
    for (c = first * SECTOR / f->cs; c <= ((first + n) * SECTOR - 1) / f->cs;
         c++)
      __atomic_store_n (&st->touched[c], 1, __ATOMIC_RELAXED);
  }
  __atomic_sub_fetch (&st->writers_left, 1, __ATOMIC_SEQ_CST);
  return NULL;
}

static void *
reader_main (void *arg)
{
  struct worker *w = arg;
  struct stress *st = w->st;
  struct fixture *f = st->f;
  size_t max = 1 * MiB;
  uint8_t *got = malloc (max), *exp = malloc (max);
  uint64_t rnd = 0xfeedbeefULL * (w->id + 7), reads = 0;
  struct image *img = NULL;
  int err = 0;

  if (got == NULL || exp == NULL) {
    __atomic_add_fetch (&st->bad, 1, __ATOMIC_SEQ_CST);
    goto out;
  }
  /* Reader 0 goes through the image object, the others straight to the
   * diff area.
   */
  if (w->id == 0) {
    pthread_mutex_lock (&control_lock);
    img = image_open (f->s, f->t, &err);
    pthread_mutex_unlock (&control_lock);
    if (img == NULL) {
      __atomic_add_fetch (&st->bad, 1, __ATOMIC_SEQ_CST);
      goto out;
    }
  }
  while (__atomic_load_n (&st->writers_left, __ATOMIC_SEQ_CST) > 0 ||
         reads < 50) {
    uint64_t off = unit_rand (&rnd) % f->size;
    size_t len = unit_rand (&rnd) % 8 == 0 ? max : 256 * KiB;
    int r;

    len = 1 + unit_rand (&rnd) % len;
    len = MIN (len, f->size - off);
    memset (got, 0xa5, len);
    if (img)
      r = image_pread (img, got, len, off, &err);
    else
      r = img_read (f, got, len, off);
    expect (f, false, exp, off, len);
    if (r != 0 || !same ("concurrent image read", got, exp, off, len))
      __atomic_add_fetch (&st->bad, 1, __ATOMIC_SEQ_CST);
    reads++;
  }
  __atomic_add_fetch (&st->reads, reads, __ATOMIC_SEQ_CST);
 out:
  if (img) {
    pthread_mutex_lock (&control_lock);
    image_close (img);
    pthread_mutex_unlock (&control_lock);
  }
  free (got);
  free (exp);
  return NULL;
}

static void
stress (uint64_t size, uint32_t cs, unsigned writes)
{
  struct fixture f;
  struct stress st = { .f = &f, .writes = writes, .writers_left = WRITERS };
  struct worker w[WRITERS + READERS];
  uint64_t i, expect_copied = 0, untouched_new = 0, untouched = 0;
  unsigned k, wrong_state = 0;

  fixture_setup (&f, size, cs, 1024 * MiB);
  st.touched = calloc (f.da->chunk_count, 1);
  CU_ASSERT_FATAL (st.touched != NULL);

  for (k = 0; k < WRITERS + READERS; k++) {
    w[k].st = &st;
    w[k].id = k < WRITERS ? k : k - WRITERS;
    CU_ASSERT_EQUAL_FATAL (pthread_create (&w[k].th, NULL,
                                           k < WRITERS ? writer_main
                                           : reader_main, &w[k]), 0);
  }
  for (k = 0; k < WRITERS + READERS; k++)
    pthread_join (w[k].th, NULL);

  CU_ASSERT_EQUAL (st.bad, 0);
  CU_ASSERT (st.reads >= READERS * 50);
  CU_ASSERT_FALSE (snapshot_failed (f.s));

  /* Everything, block by block, after the storm. */
  CU_ASSERT_EQUAL (check_all (&f), 0);

  /* Chunks written are copied (or ZERO); the others are still NEW. */
  for (i = 0; i < f.da->chunk_count; i++) {
    uint32_t s = state_of (&f, i);
    if (st.touched[i]) {
      uint32_t want = zero_chunk (i) ? CHUNK_ZERO : CHUNK_STORED;
      if (s != want) {
        if (wrong_state++ < 5)
          fprintf (stderr, "  chunk %" PRIu64 ": %s, expected %s\n", i,
                   chunk_state_name (s), chunk_state_name (want));
      }
      expect_copied += !zero_chunk (i);
    }
    else {
      untouched++;
      untouched_new += s == CHUNK_NEW;
    }
  }
  CU_ASSERT_EQUAL (wrong_state, 0);
  CU_ASSERT_EQUAL (untouched_new, untouched);
  CU_ASSERT (untouched > 0);    /* the tail stripe is never written */
  CU_ASSERT_EQUAL (f.da->chunks_copied, expect_copied);
  CU_ASSERT_EQUAL (storage_used (&f), expect_copied * cs);
  fprintf (stderr, "  %u writes, %" PRIu64 " reads, %" PRIu64 " of %"
           PRIu64 " chunks copied\n", WRITERS * writes, st.reads,
           expect_copied, f.da->chunk_count);

  free (st.touched);
  fixture_teardown (&f);
}

/* 64 KiB chunks, 8 MiB + 3 sectors. */
static void
test_concurrent_64k (void)
{
  stress (8 * MiB + 3 * SECTOR, 64 * KiB, 1500);
}

/* 4 KiB chunks: 2,049 chunks, so image reads' lock runs wrap around
 * the 1,024 lock stripes.
 */
static void
test_concurrent_4k (void)
{
  stress (8 * MiB + 3 * SECTOR, 4 * KiB, 1500);
}

/* Destroy: copy-on-write stops, open images get EIO, the original
 * works on.
 */
static void
test_destroy (void)
{
  struct fixture f;
  struct image *img;
  uint8_t buf[SECTOR];
  uint64_t before;
  int err = 0;

  fixture_setup (&f, ST_SIZE, ST_CS, 64 * MiB);
  pthread_mutex_lock (&control_lock);
  img = image_open (f.s, f.t, &err);
  pthread_mutex_unlock (&control_lock);
  CU_ASSERT_FATAL (img != NULL);
  CU_ASSERT_EQUAL (image_pread (img, buf, SECTOR, 0, &err), 0);
  CU_ASSERT_EQUAL (write_sectors (&f, 0, 1, 1), 0);
  CU_ASSERT_EQUAL (state_of (&f, 0), CHUNK_STORED);

  before = registry_snapshot_count ();
  pthread_mutex_lock (&control_lock);
  CU_ASSERT_EQUAL (snapshot_destroy (f.s, &err), 0);
  pthread_mutex_unlock (&control_lock);
  CU_ASSERT_EQUAL (registry_snapshot_count (), before - 1);
  CU_ASSERT_PTR_NULL (f.t->diff_area);
  CU_ASSERT_PTR_NULL (f.t->snapshot);

  err = 0;
  CU_ASSERT_EQUAL (image_pread (img, buf, SECTOR, 0, &err), -1);
  CU_ASSERT_EQUAL (err, EIO);
  err = 0;
  CU_ASSERT_EQUAL (image_pwrite (img, buf, SECTOR, 0, false, &err), -1);
  CU_ASSERT_EQUAL (err, EIO);

  /* The original keeps working, with no copy-on-write. */
  CU_ASSERT_EQUAL (write_sectors (&f, SPC, 4, 2), 0);
  CU_ASSERT_FATAL (pread (f.fd, buf, SECTOR, ST_CS) == SECTOR);
  {
    uint8_t exp[SECTOR];
    fill_sector (exp, SPC, 2);
    CU_ASSERT_EQUAL (memcmp (buf, exp, SECTOR), 0);
  }

  pthread_mutex_lock (&control_lock);
  image_close (img);            /* the last reference: freed here */
  pthread_mutex_unlock (&control_lock);
  f.s = NULL;
  fixture_teardown (&f);
}

static int
suite_init (void)
{
  drain_events ();
  return 0;
}

static int
suite_fini (void)
{
  drain_events ();
  /* Every test destroyed its snapshot. */
  return registry_snapshot_count () != 0;
}

static CU_TestInfo tests[] = {
  { "chunk size and state names", test_chunk_size },
  { "state transitions: original writes", test_states_original_writes },
  { "state transitions: image writes and zeroes",
    test_states_image_writes },
  { "chunk lock: COW against image reads", test_chunk_lock },
  { "concurrent COW against image reads, 64K chunks",
    test_concurrent_64k },
  { "concurrent COW against image reads, 4K chunks", test_concurrent_4k },
  { "destroy with an open image", test_destroy },
  CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
  { "diff_area", suite_init, suite_fini, NULL, NULL, tests },
  CU_SUITE_INFO_NULL,
};

int
main (void)
{
  return unit_run ("test-diff-area", suites);
}
