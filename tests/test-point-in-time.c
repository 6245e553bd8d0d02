/* Invariant 1 (point in time): an image reads exactly what its device
 * held at the take, whatever is written, zeroed or trimmed on the
 * original afterwards, from many concurrent connections, across chunk
 * and block boundaries.
 *
 * The disk has an odd size (the last chunk is short), random content
 * with all-zero chunks and holes among it.  After the take, writer
 * connections write, zero and trim random unaligned ranges on the
 * original (each in its own stripes, so a shadow copy models the
 * original exactly), while reader connections read random ranges of
 * the image and compare them with the content at the take.  Then every
 * block of the image and of the original is compared with its model.
 */

#include <config.h>

#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/falloc.h>

#include "harness.h"

#define DISK_SIZE ((48u << 20) + 5000)   /* not a multiple of the chunk */
#define CHUNK (64 * 1024)
#define STRIPE (1u << 20)
#define WRITERS 4
#define READERS 8
#define WRITER_OPS 300
#define READER_OPS 400
#define DIV(x) (((x) + STRIPE - 1) / STRIPE)
#define DIV_ROUND(x, d) (((x) + (d) - 1) / (d))

static struct server srv;
static char export_image[128];
static unsigned char *at_take;   /* content at the take */
static unsigned char *shadow;    /* the original now */
static uint64_t mismatches;      /* atomic */

struct worker {
  pthread_t thread;
  unsigned id;
};

static void *
writer (void *arg)
{
  struct worker *w = arg;
  struct nbd_handle *h = nbd_open_export (&srv, "disk0");
  uint64_t rng = 1000 + w->id;
  unsigned char *buf = malloc (256 * 1024);
  unsigned i;

  CHECK (buf);
  for (i = 0; i < WRITER_OPS; i++) {
    /* A stripe this writer owns, and a range inside it. */
    uint64_t nstripes = DIV (DISK_SIZE);
    uint64_t s = (rng_next (&rng) % ((nstripes + WRITERS - 1 - w->id) /
                                     WRITERS)) * WRITERS + w->id;
    uint64_t start = s * STRIPE;
    uint64_t end = start + STRIPE < DISK_SIZE ? start + STRIPE : DISK_SIZE;
    uint64_t off = start + rng_next (&rng) % (end - start);
    uint64_t len = 1 + rng_next (&rng) % (256 * 1024);
    unsigned op = rng_next (&rng) % 10;

    if (off + len > end)
      len = end - off;
    if (op < 6) {
      rng_fill (&rng, buf, len);
      if (nbd_pwrite (h, buf, len, off, 0) == -1)
        die ("pwrite: %s", nbd_get_error ());
      memcpy (shadow + off, buf, len);
    }
    else if (op < 8) {
      uint32_t flags = (op & 1) ? LIBNBD_CMD_FLAG_NO_HOLE : 0;
      if (nbd_zero (h, len, off, flags) == -1)
        die ("zero: %s", nbd_get_error ());
      memset (shadow + off, 0, len);
    }
    else {
      /* After a trim the content is the server's business: learn it. */
      if (nbd_trim (h, len, off, 0) == -1)
        die ("trim: %s", nbd_get_error ());
      if (nbd_pread (h, shadow + off, len, off, 0) == -1)
        die ("pread after trim: %s", nbd_get_error ());
    }
  }
  free (buf);
  nbd_shutdown (h, 0);
  nbd_close (h);
  return NULL;
}

static void *
reader (void *arg)
{
  struct worker *w = arg;
  struct nbd_handle *h = nbd_open_export (&srv, export_image);
  uint64_t rng = 5000 + w->id;
  unsigned char *buf = malloc (512 * 1024);
  unsigned i;

  CHECK (buf);
  for (i = 0; i < READER_OPS; i++) {
    uint64_t off = rng_next (&rng) % DISK_SIZE;
    uint64_t len = 1 + rng_next (&rng) % (512 * 1024);

    if (off + len > DISK_SIZE)
      len = DISK_SIZE - off;
    if (nbd_pread (h, buf, len, off, 0) == -1)
      die ("image pread %" PRIu64 "+%" PRIu64 ": %s", off, len,
           nbd_get_error ());
    if (memcmp (buf, at_take + off, len) != 0) {
      fprintf (stderr, "reader %u: image range %" PRIu64 "+%" PRIu64
               " differs from the point in time\n", w->id, off, len);
      __atomic_add_fetch (&mismatches, 1, __ATOMIC_RELAXED);
    }
  }
  free (buf);
  nbd_shutdown (h, 0);
  nbd_close (h);
  return NULL;
}

int
main (void)
{
  struct worker writers[WRITERS], readers[READERS];
  struct nbdsnap_ctl_snapshot_info info;
  struct nbdsnap_ctl_snapshot_info_device dev;
  const char *devs[] = { "disk0" };
  char id_str[37], devarg[512];
  uint8_t id[16];
  uint64_t rng = 42, c, bad;
  unsigned char *buf;
  struct ctl_client *ctl;
  struct nbd_handle *h;
  unsigned i;
  int fd;

  test_dir (&srv, "pit");
  at_take = malloc (DISK_SIZE);
  shadow = malloc (DISK_SIZE);
  buf = malloc (DISK_SIZE);
  CHECK (at_take && shadow && buf);

  /* Random content, every 7th chunk zero, every 11th a hole. */
  rng_fill (&rng, at_take, DISK_SIZE);
  for (c = 0; c * CHUNK < DISK_SIZE; c++) {
    uint64_t n = DISK_SIZE - c * CHUNK < CHUNK ? DISK_SIZE - c * CHUNK : CHUNK;
    if (c % 7 == 3 || c % 11 == 5)
      memset (at_take + c * CHUNK, 0, n);
  }
  snprintf (devarg, sizeof devarg, "device=disk0:%s",
            make_file (&srv, "disk0.img", 0));
  fd = open (strchr (devarg, ':') + 1, O_WRONLY);
  CHECK (fd >= 0);
  CHECK (pwrite (fd, at_take, DISK_SIZE, 0) == DISK_SIZE);
  for (c = 5; c * CHUNK < DISK_SIZE; c += 11)
    CHECK (fallocate (fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      c * CHUNK, CHUNK) == 0);
  close (fd);
  memcpy (shadow, at_take, DISK_SIZE);

  server_start (&srv, (const char *[]) { devarg, "chunk-size=64K", NULL });
  ctl = ctl_open (&srv);
  snap_create (ctl, &srv, 1ull << 30, devs, 1, true, id, id_str, NULL);
  snprintf (export_image, sizeof export_image, "disk0@%s", id_str);

  for (i = 0; i < WRITERS; i++) {
    writers[i].id = i;
    CHECK (pthread_create (&writers[i].thread, NULL, writer,
                           &writers[i]) == 0);
  }
  for (i = 0; i < READERS; i++) {
    readers[i].id = i;
    CHECK (pthread_create (&readers[i].thread, NULL, reader,
                           &readers[i]) == 0);
  }
  for (i = 0; i < WRITERS; i++)
    pthread_join (writers[i].thread, NULL);
  for (i = 0; i < READERS; i++)
    pthread_join (readers[i].thread, NULL);
  if (mismatches)
    die ("%" PRIu64 " concurrent image reads differed from the point in "
         "time", mismatches);

  /* Every block of the image, then of the original. */
  h = nbd_open_export (&srv, export_image);
  CHECK (nbd_get_size (h) == DISK_SIZE);
  nbd_read_all (h, buf, DISK_SIZE);
  bad = compare_blocks ("image", buf, at_take, 0, DISK_SIZE);
  if (bad)
    die ("%" PRIu64 " image blocks differ from the point in time", bad);
  nbd_close (h);

  h = nbd_open_export (&srv, "disk0");
  nbd_read_all (h, buf, DISK_SIZE);
  bad = compare_blocks ("original", buf, shadow, 0, DISK_SIZE);
  if (bad)
    die ("%" PRIu64 " original blocks differ from what was written", bad);
  nbd_close (h);
  if (memcmp (shadow, at_take, DISK_SIZE) == 0)
    die ("the writers changed nothing: the test proves nothing");

  snap_info (ctl, id, &info, &dev, 1);
  CHECK (info.state == NBDSNAP_CTL_STATE_TAKEN && info.error == 0);
  CHECK (dev.chunks_copied > 0);
  printf ("verified %u image blocks and %u original blocks; %" PRIu64
          " chunks copied, %" PRIu64 " bytes of diff storage\n",
          (unsigned) DIV_ROUND (DISK_SIZE, 4096),
          (unsigned) DIV_ROUND (DISK_SIZE, 4096), dev.chunks_copied,
          info.used);
  snap_destroy (ctl, id);
  ctl_client_close (ctl);
  server_stop (&srv);
  free (at_take);
  free (shadow);
  free (buf);
  return 0;
}
