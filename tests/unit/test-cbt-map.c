/* nbdsnap unit tests - cbt_map: change block tracking.
 *
 * Each test keeps a model of what every byte of the active and frozen
 * maps must hold (DESIGN §2) and compares the whole map with it.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include <CUnit/CUnit.h>

#include "cbt_map.h"
#include "tracker.h"
#include "unit.h"

#define KiB 1024ULL
#define MiB (1024 * KiB)
#define GiB (1024 * MiB)
#define TiB (1024 * GiB)

static const struct cbt_map_params defaults = {
  .block_size_min = CBT_BLOCK_SIZE_MIN_DEFAULT,
  .block_size_max = CBT_BLOCK_SIZE_MAX_DEFAULT,
  .block_count_max = CBT_BLOCK_COUNT_MAX_DEFAULT,
};

/* 11 blocks of 64 KiB, the last one short (1000 bytes). */
#define BS (64 * KiB)
#define NBLOCKS 11
#define DEV_SIZE (10 * BS + 1000)

static struct cbt_map *
new_map (uint64_t size)
{
  int err = 0;
  struct cbt_map *m = cbt_map_create (size, &defaults, &err);

  CU_ASSERT_PTR_NOT_NULL (m);
  CU_ASSERT_EQUAL (err, 0);
  return m;
}

/* Mismatching bytes between @map (active or frozen) and @model. */
static unsigned
diff_map (struct cbt_map *m, bool frozen, const uint8_t *model)
{
  const uint8_t *bytes = frozen ? m->frozen : m->active;
  unsigned bad = 0;
  uint64_t i;

  if (bytes == NULL)
    return (unsigned) m->block_count;
  for (i = 0; i < m->block_count; i++)
    if (bytes[i] != model[i]) {
      if (bad < 5)
        fprintf (stderr, "  %s map block %" PRIu64 ": %u, expected %u\n",
                 frozen ? "frozen" : "active", i, bytes[i], model[i]);
      bad++;
    }
  return bad;
}

static uint8_t
active_number (struct cbt_map *m)
{
  uint8_t n, gen[16];

  cbt_map_get_active (m, &n, gen);
  return n;
}

static void
test_block_size (void)
{
  struct cbt_map_params p = defaults;

  /* Smallest block size while the count stays within 2,097,152. */
  CU_ASSERT_EQUAL (cbt_map_choose_block_size (&p, 0), 64 * KiB);
  CU_ASSERT_EQUAL (cbt_map_choose_block_size (&p, 1), 64 * KiB);
  CU_ASSERT_EQUAL (cbt_map_choose_block_size (&p, 128 * GiB), 64 * KiB);
  CU_ASSERT_EQUAL (cbt_map_choose_block_size (&p, 128 * GiB + 1), 128 * KiB);
  CU_ASSERT_EQUAL (cbt_map_choose_block_size (&p, 256 * GiB), 128 * KiB);
  CU_ASSERT_EQUAL (cbt_map_choose_block_size (&p, 1 * TiB), 512 * KiB);
  /* Never above 64 MiB, whatever the count. */
  CU_ASSERT_EQUAL (cbt_map_choose_block_size (&p, 128 * TiB), 64 * MiB);
  CU_ASSERT_EQUAL (cbt_map_choose_block_size (&p, 1024 * TiB), 64 * MiB);

  p.block_size_min = 4096;
  p.block_size_max = 16384;
  p.block_count_max = 10;
  CU_ASSERT_EQUAL (cbt_map_choose_block_size (&p, 40960), 4096);
  CU_ASSERT_EQUAL (cbt_map_choose_block_size (&p, 40961), 8192);
  CU_ASSERT_EQUAL (cbt_map_choose_block_size (&p, 1 * MiB), 16384);
}

static void
test_create (void)
{
  struct cbt_map *m = new_map (DEV_SIZE), *m2;
  uint8_t zero[NBLOCKS] = { 0 }, n, gen[16];
  int err = 0;

  CU_ASSERT_FATAL (m != NULL);
  CU_ASSERT_EQUAL (m->device_size, DEV_SIZE);
  CU_ASSERT_EQUAL (m->block_size, BS);
  CU_ASSERT_EQUAL (1u << m->block_shift, BS);
  CU_ASSERT_EQUAL (m->block_count, NBLOCKS);
  CU_ASSERT_EQUAL (diff_map (m, false, zero), 0);
  CU_ASSERT_PTR_NULL (m->frozen);
  CU_ASSERT_FALSE (m->frozen_valid);
  cbt_map_get_active (m, &n, gen);
  CU_ASSERT_EQUAL (n, 1);
  CU_ASSERT_FALSE (uuid_is_null (gen));
  CU_ASSERT_FALSE (cbt_map_get_frozen (m, &n, gen));

  /* Each map has a generation of its own. */
  m2 = new_map (DEV_SIZE);
  CU_ASSERT_FATAL (m2 != NULL);
  CU_ASSERT_NOT_EQUAL (memcmp (m->generation, m2->generation, 16), 0);
  cbt_map_destroy (m2);

  /* prepare_frozen allocates once and is idempotent. */
  CU_ASSERT_EQUAL (cbt_map_prepare_frozen (m, &err), 0);
  CU_ASSERT_PTR_NOT_NULL (m->frozen);
  {
    uint8_t *f = m->frozen;
    CU_ASSERT_EQUAL (cbt_map_prepare_frozen (m, &err), 0);
    CU_ASSERT_PTR_EQUAL (m->frozen, f);
  }
  CU_ASSERT_FALSE (m->frozen_valid); /* allocated is not taken */
  cbt_map_destroy (m);

  /* An empty device still has a one-byte map. */
  m = new_map (0);
  CU_ASSERT_FATAL (m != NULL);
  CU_ASSERT_EQUAL (m->block_count, 1);
  cbt_map_mark (m, 0, 4096);
  CU_ASSERT_EQUAL (m->active[0], 0);
  cbt_map_destroy (m);

  cbt_map_destroy (NULL);       /* harmless */
}

static void
test_mark_boundaries (void)
{
  struct cbt_map *m = new_map (DEV_SIZE);
  uint8_t model[NBLOCKS] = { 0 };

  CU_ASSERT_FATAL (m != NULL);

  /* Two bytes straddling the boundary of blocks 0 and 1. */
  cbt_map_mark (m, BS - 1, 2);
  model[0] = model[1] = 1;
  CU_ASSERT_EQUAL (diff_map (m, false, model), 0);

  /* Exactly block 3: neither neighbour. */
  cbt_map_mark (m, 3 * BS, BS);
  model[3] = 1;
  CU_ASSERT_EQUAL (diff_map (m, false, model), 0);

  /* The last byte of block 5 and the first of block 7 only. */
  cbt_map_mark (m, 6 * BS - 1, 1);
  cbt_map_mark (m, 7 * BS, 1);
  model[5] = model[7] = 1;
  CU_ASSERT_EQUAL (diff_map (m, false, model), 0);

  /* Zero length marks nothing. */
  cbt_map_mark (m, 9 * BS, 0);
  CU_ASSERT_EQUAL (diff_map (m, false, model), 0);

  /* A range over several blocks, unaligned at both ends. */
  cbt_map_switch (m);           /* number 2 */
  cbt_map_mark (m, 2 * BS + 100, 3 * BS);
  model[2] = model[3] = model[4] = model[5] = 2;
  CU_ASSERT_EQUAL (diff_map (m, false, model), 0);

  /* Rewriting a block records the newest number. */
  cbt_map_switch (m);           /* number 3 */
  cbt_map_mark (m, 0, 1);
  model[0] = 3;
  CU_ASSERT_EQUAL (diff_map (m, false, model), 0);
  cbt_map_destroy (m);
}

static void
test_mark_bounds (void)
{
  struct cbt_map *m = new_map (DEV_SIZE);
  uint8_t model[NBLOCKS] = { 0 };
  uint8_t buf[2 * NBLOCKS], n, gen[16];
  int err;

  CU_ASSERT_FATAL (m != NULL);

  /* At or past the end: nothing. */
  cbt_map_mark (m, DEV_SIZE, 1);
  cbt_map_mark (m, DEV_SIZE + BS, BS);
  cbt_map_mark (m, UINT64_MAX, 1);
  cbt_map_mark_both (m, DEV_SIZE, 4096);
  CU_ASSERT_EQUAL (diff_map (m, false, model), 0);

  /* The last, short block. */
  cbt_map_mark (m, DEV_SIZE - 1, 1);
  model[NBLOCKS - 1] = 1;
  CU_ASSERT_EQUAL (diff_map (m, false, model), 0);

  /* A range running past the end is clamped to the map. */
  memset (model, 0, sizeof model);
  cbt_map_reset (m);
  cbt_map_mark (m, 9 * BS + 10, 10 * BS);
  model[9] = model[10] = 1;
  CU_ASSERT_EQUAL (diff_map (m, false, model), 0);

  /* offset + length overflowing 64 bits is clamped too. */
  memset (model, 0, sizeof model);
  cbt_map_reset (m);
  cbt_map_mark (m, 8 * BS, UINT64_MAX);
  model[8] = model[9] = model[10] = 1;
  CU_ASSERT_EQUAL (diff_map (m, false, model), 0);

  /* Reading the map: clipped at the end, EINVAL past it, ENODATA for a
   * frozen map that does not exist.
   */
  memset (buf, 0xee, sizeof buf);
  CU_ASSERT_EQUAL (cbt_map_read (m, false, 0, sizeof buf, buf, &n, gen,
                                 &err), NBLOCKS);
  CU_ASSERT_EQUAL (memcmp (buf, model, NBLOCKS), 0);
  CU_ASSERT_EQUAL (buf[NBLOCKS], 0xee); /* nothing past the count */
  CU_ASSERT_EQUAL (n, 1);
  CU_ASSERT_EQUAL (memcmp (gen, m->generation, 16), 0);

  CU_ASSERT_EQUAL (cbt_map_read (m, false, 9, 1, buf, &n, gen, &err), 1);
  CU_ASSERT_EQUAL (buf[0], 1);
  CU_ASSERT_EQUAL (cbt_map_read (m, false, 10, 100, buf, &n, gen, &err), 1);

  err = 0;
  CU_ASSERT_EQUAL (cbt_map_read (m, false, NBLOCKS, 1, buf, &n, gen, &err),
                   -1);
  CU_ASSERT_EQUAL (err, EINVAL);
  err = 0;
  CU_ASSERT_EQUAL (cbt_map_read (m, false, UINT64_MAX, 1, buf, &n, gen,
                                 &err), -1);
  CU_ASSERT_EQUAL (err, EINVAL);
  err = 0;
  CU_ASSERT_EQUAL (cbt_map_read (m, true, 0, 1, buf, &n, gen, &err), -1);
  CU_ASSERT_EQUAL (err, ENODATA);
  cbt_map_destroy (m);
}

static void
test_switch (void)
{
  struct cbt_map *m = new_map (DEV_SIZE);
  uint8_t active[NBLOCKS] = { 0 }, frozen[NBLOCKS];
  uint8_t gen0[16], gen[16], n, buf[NBLOCKS];
  int err = 0;

  CU_ASSERT_FATAL (m != NULL);
  CU_ASSERT_EQUAL_FATAL (cbt_map_prepare_frozen (m, &err), 0);
  memcpy (gen0, m->generation, 16);

  /* Epoch 1. */
  cbt_map_mark (m, 0, 1);
  cbt_map_mark (m, 4 * BS, 2 * BS);
  active[0] = active[4] = active[5] = 1;

  /* Take: the snapshot records 1, the frozen copy is the active map,
   * writes now record 2.
   */
  CU_ASSERT_EQUAL (cbt_map_switch (m), 1);
  memcpy (frozen, active, NBLOCKS);
  CU_ASSERT_EQUAL (active_number (m), 2);
  CU_ASSERT_EQUAL (diff_map (m, true, frozen), 0);
  CU_ASSERT_EQUAL (diff_map (m, false, active), 0);
  CU_ASSERT_TRUE (cbt_map_get_frozen (m, &n, gen));
  CU_ASSERT_EQUAL (n, 1);
  CU_ASSERT_EQUAL (memcmp (gen, gen0, 16), 0);
  CU_ASSERT_EQUAL (memcmp (m->generation, gen0, 16), 0); /* same history */

  /* Epoch 2: only the active map changes. */
  cbt_map_mark (m, 4 * BS + 5, 1);
  cbt_map_mark (m, 8 * BS, 1);
  active[4] = active[8] = 2;
  CU_ASSERT_EQUAL (diff_map (m, false, active), 0);
  CU_ASSERT_EQUAL (diff_map (m, true, frozen), 0);

  /* The frozen map reads back with its own number and generation. */
  CU_ASSERT_EQUAL (cbt_map_read (m, true, 0, NBLOCKS, buf, &n, gen, &err),
                   NBLOCKS);
  CU_ASSERT_EQUAL (memcmp (buf, frozen, NBLOCKS), 0);
  CU_ASSERT_EQUAL (n, 1);
  CU_ASSERT_EQUAL (memcmp (gen, gen0, 16), 0);
  CU_ASSERT_EQUAL (cbt_map_read (m, false, 0, NBLOCKS, buf, &n, gen, &err),
                   NBLOCKS);
  CU_ASSERT_EQUAL (memcmp (buf, active, NBLOCKS), 0);
  CU_ASSERT_EQUAL (n, 2);

  /* Second take: blocks > 1 in its map changed since snapshot 1. */
  CU_ASSERT_EQUAL (cbt_map_switch (m), 2);
  memcpy (frozen, active, NBLOCKS);
  CU_ASSERT_EQUAL (diff_map (m, true, frozen), 0);
  CU_ASSERT_EQUAL (active_number (m), 3);
  {
    unsigned i, changed = 0;
    for (i = 0; i < NBLOCKS; i++)
      if (m->frozen[i] > 1)
        changed |= 1u << i;
    CU_ASSERT_EQUAL (changed, (1u << 4) | (1u << 8));
  }
  cbt_map_destroy (m);
}

/* Without a frozen copy prepared, a switch still advances the number
 * but publishes no frozen map.
 */
static void
test_switch_unprepared (void)
{
  struct cbt_map *m = new_map (DEV_SIZE);
  uint8_t n, gen[16], buf[1];
  int err = 0;

  CU_ASSERT_FATAL (m != NULL);
  CU_ASSERT_EQUAL (cbt_map_switch (m), 1);
  CU_ASSERT_EQUAL (active_number (m), 2);
  CU_ASSERT_FALSE (cbt_map_get_frozen (m, &n, gen));
  CU_ASSERT_EQUAL (cbt_map_read (m, true, 0, 1, buf, &n, gen, &err), -1);
  CU_ASSERT_EQUAL (err, ENODATA);
  cbt_map_mark_both (m, 0, 1);  /* no frozen map: active only, no crash */
  CU_ASSERT_EQUAL (m->active[0], 2);
  cbt_map_destroy (m);
}

static void
test_wrap_255 (void)
{
  struct cbt_map *m = new_map (DEV_SIZE);
  uint8_t active[NBLOCKS] = { 0 }, frozen[NBLOCKS] = { 0 };
  uint8_t gen_old[16], gen_new[16], gen[16], n;
  unsigned i;
  int err = 0;

  CU_ASSERT_FATAL (m != NULL);
  CU_ASSERT_EQUAL_FATAL (cbt_map_prepare_frozen (m, &err), 0);
  memcpy (gen_old, m->generation, 16);

  /* Epochs 1..254, marking block (epoch % 10) each time. */
  for (i = 1; i <= 254; i++) {
    cbt_map_mark (m, (uint64_t) (i % 10) * BS, 1);
    active[i % 10] = i;
    CU_ASSERT_EQUAL (cbt_map_switch (m), i);
  }
  CU_ASSERT_EQUAL (active_number (m), 255);
  CU_ASSERT_EQUAL (memcmp (m->generation, gen_old, 16), 0);
  CU_ASSERT_EQUAL (diff_map (m, false, active), 0);

  /* Epoch 255 writes block 10, then the take that passes 255. */
  cbt_map_mark (m, 10 * BS, 1);
  active[10] = 255;
  CU_ASSERT_EQUAL (cbt_map_switch (m), 255);

  /* The snapshot keeps exact changes in the old generation... */
  memcpy (frozen, active, NBLOCKS);
  CU_ASSERT_EQUAL (diff_map (m, true, frozen), 0);
  CU_ASSERT_TRUE (cbt_map_get_frozen (m, &n, gen));
  CU_ASSERT_EQUAL (n, 255);
  CU_ASSERT_EQUAL (memcmp (gen, gen_old, 16), 0);

  /* ...while the active map starts a new history at 1, cleared. */
  memset (active, 0, sizeof active);
  cbt_map_get_active (m, &n, gen_new);
  CU_ASSERT_EQUAL (n, 1);
  CU_ASSERT_NOT_EQUAL (memcmp (gen_new, gen_old, 16), 0);
  CU_ASSERT_FALSE (uuid_is_null (gen_new));
  CU_ASSERT_EQUAL (diff_map (m, false, active), 0);

  /* The next epoch and take are in the new generation. */
  cbt_map_mark (m, 3 * BS, 1);
  active[3] = 1;
  CU_ASSERT_EQUAL (diff_map (m, false, active), 0);
  CU_ASSERT_EQUAL (cbt_map_switch (m), 1);
  CU_ASSERT_TRUE (cbt_map_get_frozen (m, &n, gen));
  CU_ASSERT_EQUAL (n, 1);
  CU_ASSERT_EQUAL (memcmp (gen, gen_new, 16), 0);
  CU_ASSERT_EQUAL (diff_map (m, true, active), 0);
  CU_ASSERT_EQUAL (active_number (m), 2);
  cbt_map_destroy (m);
}

static void
test_reset (void)
{
  struct cbt_map *m = new_map (DEV_SIZE);
  uint8_t zero[NBLOCKS] = { 0 }, gen_old[16], n, gen[16];
  int err = 0;

  CU_ASSERT_FATAL (m != NULL);
  CU_ASSERT_EQUAL_FATAL (cbt_map_prepare_frozen (m, &err), 0);
  cbt_map_mark (m, 0, DEV_SIZE);
  cbt_map_switch (m);
  cbt_map_mark (m, 0, DEV_SIZE);
  memcpy (gen_old, m->generation, 16);

  cbt_map_reset (m);
  CU_ASSERT_EQUAL (diff_map (m, false, zero), 0);
  CU_ASSERT_EQUAL (diff_map (m, true, zero), 0);
  CU_ASSERT_FALSE (cbt_map_get_frozen (m, &n, gen));
  cbt_map_get_active (m, &n, gen);
  CU_ASSERT_EQUAL (n, 1);
  CU_ASSERT_NOT_EQUAL (memcmp (gen, gen_old, 16), 0);
  cbt_map_destroy (m);
}

static void
test_mark_both (void)
{
  struct cbt_map *m = new_map (DEV_SIZE);
  uint8_t active[NBLOCKS] = { 0 }, frozen[NBLOCKS];
  int err = 0;

  CU_ASSERT_FATAL (m != NULL);
  CU_ASSERT_EQUAL_FATAL (cbt_map_prepare_frozen (m, &err), 0);

  /* Before any take: only the active map exists to mark. */
  cbt_map_mark_both (m, 0, 1);
  active[0] = 1;
  CU_ASSERT_EQUAL (diff_map (m, false, active), 0);
  CU_ASSERT_FALSE (m->frozen_valid);

  cbt_map_mark (m, 2 * BS, 1);
  active[2] = 1;
  CU_ASSERT_EQUAL (cbt_map_switch (m), 1);    /* snapshot 1 */
  memcpy (frozen, active, NBLOCKS);
  CU_ASSERT_EQUAL (cbt_map_switch (m), 2);    /* snapshot 2 */
  memcpy (frozen, active, NBLOCKS);

  /* An image write of snapshot 2 across blocks 5..6 marks the active
   * map with 3 and the frozen map with 2 (the next backup based on
   * snapshot 1 must reread them, and so must one based on 2).
   */
  cbt_map_mark_both (m, 6 * BS - 10, 20);
  active[5] = active[6] = 3;
  frozen[5] = frozen[6] = 2;
  CU_ASSERT_EQUAL (diff_map (m, false, active), 0);
  CU_ASSERT_EQUAL (diff_map (m, true, frozen), 0);

  /* A plain write marks the active map only. */
  cbt_map_mark (m, 9 * BS, 1);
  active[9] = 3;
  CU_ASSERT_EQUAL (diff_map (m, false, active), 0);
  CU_ASSERT_EQUAL (diff_map (m, true, frozen), 0);

  /* Marking both past the end is clamped in both maps. */
  cbt_map_mark_both (m, 10 * BS + 999, 1000);
  active[10] = 3;
  frozen[10] = 2;
  CU_ASSERT_EQUAL (diff_map (m, false, active), 0);
  CU_ASSERT_EQUAL (diff_map (m, true, frozen), 0);
  cbt_map_destroy (m);
}

/* mark-dirty by byte ranges (what CBT_MARK_DIRTY does with a map): a
 * set of ranges marks exactly the blocks they touch, and, while a
 * snapshot is taken, the frozen map too.
 */
static void
test_mark_dirty_ranges (void)
{
  static const struct { uint64_t off, len; } ranges[] = {
    { 1, 1 },                           /* block 0 */
    { 2 * BS - 1, BS + 2 },             /* blocks 1, 2, 3 */
    { 7 * BS, BS },                     /* block 7 */
    { 10 * BS, 1000 },                  /* block 10, to the end */
  };
  struct cbt_map *m = new_map (DEV_SIZE);
  uint8_t active[NBLOCKS] = { 0 }, frozen[NBLOCKS] = { 0 };
  unsigned i;
  int err = 0;

  CU_ASSERT_FATAL (m != NULL);
  for (i = 0; i < ARRAY_SIZE (ranges); i++)
    cbt_map_mark (m, ranges[i].off, ranges[i].len);
  active[0] = active[1] = active[2] = active[3] = active[7] = 1;
  active[10] = 1;
  CU_ASSERT_EQUAL (diff_map (m, false, active), 0);

  CU_ASSERT_EQUAL_FATAL (cbt_map_prepare_frozen (m, &err), 0);
  CU_ASSERT_EQUAL (cbt_map_switch (m), 1);
  memcpy (frozen, active, NBLOCKS);
  cbt_map_mark_both (m, 4 * BS, 2 * BS + 1);  /* blocks 4, 5, 6 */
  active[4] = active[5] = active[6] = 2;
  frozen[4] = frozen[5] = frozen[6] = 1;
  CU_ASSERT_EQUAL (diff_map (m, false, active), 0);
  CU_ASSERT_EQUAL (diff_map (m, true, frozen), 0);
  cbt_map_destroy (m);
}

/* Writes, write-zeroes and trims on the original all mark the active
 * map: exactly the blocks they touch.
 */
static void
test_tracker_marks (void)
{
  struct tracker *t;
  uint8_t model[16] = { 0 };
  char *path = NULL, buf[8192];
  int fd, err = 0;

  fd = unit_temp_file (16 * BS, &path);
  CU_ASSERT_FATAL (fd >= 0);
  close (fd);
  t = tracker_open ("cbt-dev", path, &defaults, &err);
  CU_ASSERT_FATAL (t != NULL);
  CU_ASSERT_EQUAL (t->cbt->block_count, 16);

  memset (buf, 'x', sizeof buf);
  CU_ASSERT_EQUAL (tracker_pwrite (t, buf, 8192, BS - 4096, false, &err), 0);
  model[0] = model[1] = 1;
  CU_ASSERT_EQUAL (diff_map (t->cbt, false, model), 0);

  CU_ASSERT_EQUAL (tracker_pwrite (t, buf, 1, 5 * BS, true, &err), 0);
  model[5] = 1;
  CU_ASSERT_EQUAL (diff_map (t->cbt, false, model), 0);

  CU_ASSERT_EQUAL (tracker_zero (t, BS, 8 * BS + 1, false, false, false,
                                 &err), 0);
  model[8] = model[9] = 1;
  CU_ASSERT_EQUAL (diff_map (t->cbt, false, model), 0);

  CU_ASSERT_EQUAL (tracker_zero (t, 4096, 11 * BS, true, false, false,
                                 &err), 0);
  model[11] = 1;
  CU_ASSERT_EQUAL (diff_map (t->cbt, false, model), 0);

  CU_ASSERT_EQUAL (tracker_trim (t, 2 * BS, 13 * BS, false, &err), 0);
  model[13] = model[14] = 1;
  CU_ASSERT_EQUAL (diff_map (t->cbt, false, model), 0);

  /* Reads mark nothing. */
  CU_ASSERT_EQUAL (tracker_pread (t, buf, sizeof buf, 3 * BS, &err), 0);
  CU_ASSERT_EQUAL (diff_map (t->cbt, false, model), 0);

  /* The data went where it should. */
  CU_ASSERT_EQUAL (tracker_pread (t, buf, 8192, BS - 4096, &err), 0);
  CU_ASSERT_EQUAL (buf[0], 'x');
  CU_ASSERT_EQUAL (buf[8191], 'x');
  CU_ASSERT_EQUAL (tracker_pread (t, buf, 1, 8 * BS + 1, &err), 0);
  CU_ASSERT_EQUAL (buf[0], 0);

  tracker_put (t);
  unlink (path);
  free (path);
}

static CU_TestInfo tests[] = {
  { "block size choice", test_block_size },
  { "create", test_create },
  { "marking across block boundaries", test_mark_boundaries },
  { "bounds", test_mark_bounds },
  { "switch", test_switch },
  { "switch without a frozen copy", test_switch_unprepared },
  { "the 255 reset", test_wrap_255 },
  { "reset", test_reset },
  { "marking both maps", test_mark_both },
  { "mark-dirty ranges", test_mark_dirty_ranges },
  { "writes, zeroes and trims mark the active map", test_tracker_marks },
  CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
  { "cbt_map", NULL, NULL, NULL, NULL, tests },
  CU_SUITE_INFO_NULL,
};

int
main (void)
{
  return unit_run ("test-cbt-map", suites);
}
