/* Invariant 4 (CBT): after known writes, the maps mark exactly their
 * blocks with the right numbers: writes, zeroes and trims on the
 * original mark the active map; writes to an image and mark-dirty mark
 * both maps; the frozen map of the next snapshot shows, by bytes > N,
 * exactly the blocks changed since snapshot N.  Random writes then
 * check the rule for many ranges, and 255 takes check the generation
 * reset: the 255th snapshot keeps exact changes under the old
 * generation, the active map starts a new generation at number 1.
 */

#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define BLOCK (64 * 1024)
#define NBLOCKS 256
#define DISK_SIZE ((uint64_t) BLOCK * NBLOCKS)

static struct server srv;
static struct ctl_client *ctl;

static void
read_map (bool frozen, uint8_t map[NBLOCKS], uint8_t *number,
          uint8_t gen[16])
{
  static char out[NBDSNAP_CTL_MSG_MAX];
  struct nbdsnap_ctl_cbt_read req;
  struct nbdsnap_ctl_cbt_data *d = (void *) out;
  char msg[300];
  size_t n;
  int r;

  memset (&req, 0, sizeof req);
  strcpy (req.name, "disk0");
  req.map = frozen ? NBDSNAP_CTL_MAP_FROZEN : NBDSNAP_CTL_MAP_ACTIVE;
  req.count = NBDSNAP_CBT_READ_MAX;
  r = ctl_client_call (ctl, NBDSNAP_CTL_CBT_READ, &req, sizeof req, -1, out,
                       sizeof out, &n, msg, sizeof msg);
  if (r != 0)
    die ("cbt read: %d %s", r, r > 0 ? msg : "");
  CHECK (d->count == NBLOCKS && n == sizeof *d + NBLOCKS);
  memcpy (map, out + sizeof *d, NBLOCKS);
  if (number)
    *number = d->changes_number;
  if (gen)
    memcpy (gen, d->generation, 16);
}

static void
cbt_info (struct nbdsnap_ctl_cbt_info *info)
{
  struct nbdsnap_ctl_name req;
  char msg[300];
  int r;

  memset (&req, 0, sizeof req);
  strcpy (req.name, "disk0");
  r = ctl_client_call (ctl, NBDSNAP_CTL_CBT_INFO, &req, sizeof req, -1, info,
                       sizeof *info, NULL, msg, sizeof msg);
  if (r != 0)
    die ("cbt info: %d", r);
}

static void
expect_map (const char *what, bool frozen, const uint8_t want[NBLOCKS])
{
  uint8_t got[NBLOCKS];
  unsigned b, bad = 0;

  read_map (frozen, got, NULL, NULL);
  for (b = 0; b < NBLOCKS; b++) {
    if (got[b] != want[b]) {
      if (bad++ < 8)
        fprintf (stderr, "%s: block %u is %u, expected %u\n", what, b,
                 got[b], want[b]);
    }
  }
  if (bad)
    die ("%s: %u blocks marked wrong", what, bad);
}

/* The blocks touching [off, off+len) in @map get @n. */
static void
model_mark (uint8_t map[NBLOCKS], uint64_t off, uint64_t len, uint8_t n)
{
  uint64_t b;

  for (b = off / BLOCK; b <= (off + len - 1) / BLOCK; b++)
    map[b] = n;
}

static void
mark_dirty (uint64_t off, uint64_t len)
{
  char body[sizeof (struct nbdsnap_ctl_mark_dirty) +
            sizeof (struct nbdsnap_ctl_range)];
  struct nbdsnap_ctl_mark_dirty *req = (void *) body;
  struct nbdsnap_ctl_range *r = (void *) (body + sizeof *req);
  char msg[300];

  memset (body, 0, sizeof body);
  strcpy (req->name, "disk0");
  req->count = 1;
  r->offset = off;
  r->length = len;
  if (ctl_client_call (ctl, NBDSNAP_CTL_CBT_MARK_DIRTY, body, sizeof body,
                       -1, NULL, 0, NULL, msg, sizeof msg) != 0)
    die ("mark-dirty: %s", msg);
}

int
main (void)
{
  const char *devs[] = { "disk0" };
  uint8_t active[NBLOCKS], frozen[NBLOCKS], id[16], gen0[16], gen[16];
  struct nbdsnap_ctl_snapshot_info info;
  struct nbdsnap_ctl_snapshot_info_device dev;
  struct nbdsnap_ctl_cbt_info ci;
  char id_str[37], devarg[512], export[128];
  static char buf[4 * BLOCK];
  struct nbd_handle *h, *img;
  uint64_t rng = 7;
  uint8_t number;
  unsigned i, takes;

  test_dir (&srv, "cbt");
  snprintf (devarg, sizeof devarg, "device=disk0:%s",
            make_file (&srv, "disk0.img", DISK_SIZE));
  server_start (&srv, (const char *[]) { devarg, NULL });
  ctl = ctl_open (&srv);
  h = nbd_open_export (&srv, "disk0");

  cbt_info (&ci);
  CHECK (ci.block_size == BLOCK && ci.block_count == NBLOCKS);
  CHECK (ci.device_size == DISK_SIZE);
  CHECK (ci.changes_number == 1 && !ci.frozen_valid);
  memcpy (gen0, ci.generation, 16);
  memset (active, 0, sizeof active);
  expect_map ("fresh active map", false, active);

  /* Known writes of every kind, before any snapshot: number 1. */
  memset (buf, 0xab, sizeof buf);
  CHECK (nbd_pwrite (h, buf, 1, 0, 0) == 0);                  /* block 0 */
  CHECK (nbd_pwrite (h, buf, 2, BLOCK - 1, 0) == 0);          /* 0 and 1 */
  CHECK (nbd_pwrite (h, buf, BLOCK, 10 * BLOCK, 0) == 0);     /* 10 */
  CHECK (nbd_zero (h, 3 * BLOCK, 20 * BLOCK + 100, 0) == 0);  /* 20-23 */
  CHECK (nbd_trim (h, 1, 100 * BLOCK, 0) == 0);               /* 100 */
  CHECK (nbd_pwrite (h, buf, 1, DISK_SIZE - 1, LIBNBD_CMD_FLAG_FUA) == 0);
  model_mark (active, 0, 1, 1);
  model_mark (active, BLOCK - 1, 2, 1);
  model_mark (active, 10 * BLOCK, BLOCK, 1);
  model_mark (active, 20 * BLOCK + 100, 3 * BLOCK, 1);
  model_mark (active, 100 * BLOCK, 1, 1);
  model_mark (active, DISK_SIZE - 1, 1, 1);
  expect_map ("active map after writes", false, active);

  /* Snapshot 1: the frozen copy is the active map; number 1, 2 active. */
  snap_create (ctl, &srv, 1ull << 30, devs, 1, true, id, id_str, NULL);
  snap_info (ctl, id, &info, &dev, 1);
  CHECK (dev.changes_number == 1);
  CHECK (memcmp (dev.generation, gen0, 16) == 0);
  memcpy (frozen, active, sizeof active);
  expect_map ("frozen map of snapshot 1", true, frozen);
  cbt_info (&ci);
  CHECK (ci.changes_number == 2 && ci.frozen_valid && ci.frozen_number == 1);

  /* After the take: an original write marks the active map only; an
   * image write and mark-dirty mark both (frozen with number 1).
   */
  CHECK (nbd_pwrite (h, buf, BLOCK, 5 * BLOCK + 10, 0) == 0);  /* 5, 6 */
  model_mark (active, 5 * BLOCK + 10, BLOCK, 2);
  snprintf (export, sizeof export, "disk0@%s", id_str);
  img = nbd_open_export (&srv, export);
  CHECK (nbd_pwrite (img, buf, 100, 30 * BLOCK + 5, 0) == 0);  /* 30 */
  CHECK (nbd_zero (img, BLOCK, 31 * BLOCK, 0) == 0);           /* 31 */
  nbd_close (img);
  model_mark (active, 30 * BLOCK + 5, 100, 2);
  model_mark (frozen, 30 * BLOCK + 5, 100, 1);
  model_mark (active, 31 * BLOCK, BLOCK, 2);
  model_mark (frozen, 31 * BLOCK, BLOCK, 1);
  mark_dirty (40 * BLOCK + 1, 2 * BLOCK);                       /* 40-42 */
  model_mark (active, 40 * BLOCK + 1, 2 * BLOCK, 2);
  model_mark (frozen, 40 * BLOCK + 1, 2 * BLOCK, 1);
  expect_map ("active map after snapshot 1", false, active);
  expect_map ("frozen map of snapshot 1 after image writes", true, frozen);
  snap_destroy (ctl, id);

  /* Snapshot 2: changed since snapshot 1 = bytes > 1. */
  snap_create (ctl, &srv, 1ull << 30, devs, 1, true, id, id_str, NULL);
  snap_info (ctl, id, &info, &dev, 1);
  CHECK (dev.changes_number == 2);
  memcpy (frozen, active, sizeof active);
  expect_map ("frozen map of snapshot 2", true, frozen);
  {
    static const unsigned changed[] = { 5, 6, 30, 31, 40, 41, 42 };
    unsigned k = 0, b;
    for (b = 0; b < NBLOCKS; b++) {
      bool want = k < sizeof changed / sizeof changed[0] && changed[k] == b;
      if ((frozen[b] > 1) != want)
        die ("block %u: changed since snapshot 1 is %d, expected %d", b,
             frozen[b] > 1, want);
      if (want)
        k++;
    }
  }
  snap_destroy (ctl, id);

  /* Random writes after each of several snapshots: exactly their
   * blocks are > N in the next snapshot's map.
   */
  for (i = 0; i < 20; i++) {
    uint8_t before[NBLOCKS], n_prev;
    unsigned j, b;

    snap_create (ctl, &srv, 1ull << 30, devs, 1, true, id, id_str, NULL);
    snap_info (ctl, id, &info, &dev, 1);
    n_prev = dev.changes_number;
    memcpy (before, active, sizeof active);
    memset (active, 0, sizeof active);      /* which blocks we touch */
    for (j = 0; j < 1 + i % 5; j++) {
      uint64_t off = rng_next (&rng) % DISK_SIZE;
      uint64_t len = 1 + rng_next (&rng) % sizeof buf;
      if (off + len > DISK_SIZE)
        len = DISK_SIZE - off;
      switch (rng_next (&rng) % 3) {
      case 0: CHECK (nbd_pwrite (h, buf, len, off, 0) == 0); break;
      case 1: CHECK (nbd_zero (h, len, off, 0) == 0); break;
      default: CHECK (nbd_trim (h, len, off, 0) == 0); break;
      }
      model_mark (active, off, len, 1);
    }
    snap_destroy (ctl, id);
    snap_create (ctl, &srv, 1ull << 30, devs, 1, true, id, id_str, NULL);
    read_map (true, frozen, &number, NULL);
    for (b = 0; b < NBLOCKS; b++) {
      if (active[b] && frozen[b] <= n_prev)
        die ("round %u: block %u was written after snapshot %u but its "
             "byte is %u", i, b, n_prev, frozen[b]);
      if (!active[b] && frozen[b] > n_prev)
        die ("round %u: block %u was not written after snapshot %u but "
             "its byte is %u", i, b, n_prev, frozen[b]);
      if (!active[b] && frozen[b] != before[b])
        die ("round %u: block %u changed from %u to %u without a write",
             i, b, before[b], frozen[b]);
    }
    memcpy (active, frozen, sizeof active);
    snap_destroy (ctl, id);
  }

  /* The reset: take until the snapshot numbered 255. */
  cbt_info (&ci);
  CHECK (memcmp (ci.generation, gen0, 16) == 0);
  takes = 0;
  while (ci.changes_number < 255) {
    snap_create (ctl, &srv, 1ull << 30, devs, 1, true, id, id_str, NULL);
    snap_destroy (ctl, id);
    cbt_info (&ci);
    takes++;
    CHECK (takes < 300);
  }
  read_map (false, active, &number, gen);
  CHECK (number == 255 && memcmp (gen, gen0, 16) == 0);
  CHECK (nbd_pwrite (h, buf, 1, 77 * BLOCK, 0) == 0);
  active[77] = 255;

  snap_create (ctl, &srv, 1ull << 30, devs, 1, true, id, id_str, NULL);
  snap_info (ctl, id, &info, &dev, 1);
  CHECK (dev.changes_number == 255);
  CHECK (memcmp (dev.generation, gen0, 16) == 0);
  read_map (true, frozen, &number, gen);
  CHECK (number == 255 && memcmp (gen, gen0, 16) == 0);
  if (memcmp (frozen, active, sizeof active) != 0)
    die ("the 255th snapshot's map is not the active map at its take");
  cbt_info (&ci);
  CHECK (ci.changes_number == 1);
  CHECK (memcmp (ci.generation, gen0, 16) != 0);
  memset (active, 0, sizeof active);
  expect_map ("active map after the reset", false, active);
  CHECK (nbd_pwrite (h, buf, 1, 3 * BLOCK, 0) == 0);
  active[3] = 1;
  expect_map ("active map of the new generation", false, active);
  snap_destroy (ctl, id);

  snap_create (ctl, &srv, 1ull << 30, devs, 1, true, id, id_str, NULL);
  snap_info (ctl, id, &info, &dev, 1);
  CHECK (dev.changes_number == 1);
  CHECK (memcmp (dev.generation, ci.generation, 16) == 0);
  snap_destroy (ctl, id);

  printf ("CBT exact after known writes, 20 random rounds and the reset "
          "at snapshot 255 (%u takes)\n", takes + 24);
  nbd_close (h);
  ctl_client_close (ctl);
  server_stop (&srv);
  return 0;
}
