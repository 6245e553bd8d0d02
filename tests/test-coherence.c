/* Invariant 5 (coherence): a write that completed before the take is in
 * every image of the snapshot; a write that started after the take is
 * in none; and because the take is coherent across devices, what each
 * writer sees included is a prefix of its own sequence of writes, even
 * though the writer alternates between the two devices.
 *
 * Several writers run while the snapshot of two devices is taken, many
 * times over.  Writer w's k-th write goes to device k % 2, block
 * w * SLOTS + k / 2, with content naming (w, k, round); every block
 * starts as zeroes.  For each take the times each write started and
 * completed are compared with the take's start and end.
 */

#include <config.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define WRITERS 4
#define SLOTS 2048               /* blocks per writer per device */
#define BLOCK 4096
#define DISK_SIZE ((uint64_t) WRITERS * SLOTS * BLOCK)
#define ROUNDS 8

static struct server srv;
static volatile int stop;
static unsigned round_no;

struct record {
  uint64_t started, completed;
};

struct writer {
  pthread_t thread;
  unsigned id;
  struct nbd_handle *h[2];
  struct record rec[2 * SLOTS];
  unsigned count;
};

static void
tag (unsigned char *buf, unsigned w, unsigned k, unsigned r)
{
  uint64_t seed = ((uint64_t) r << 48) | ((uint64_t) w << 32) | k | 1;
  rng_fill (&seed, buf, BLOCK);
}

static void *
writer_main (void *arg)
{
  struct writer *w = arg;
  unsigned char buf[BLOCK];
  unsigned k;

  for (k = 0; k < 2 * SLOTS && !stop; k++) {
    uint64_t off = ((uint64_t) w->id * SLOTS + k / 2) * BLOCK;
    tag (buf, w->id, k, round_no);
    w->rec[k].started = now_ns ();
    if (nbd_pwrite (w->h[k % 2], buf, BLOCK, off, 0) == -1)
      die ("writer %u: pwrite: %s", w->id, nbd_get_error ());
    w->rec[k].completed = now_ns ();
    /* A little pacing so that the take lands in the middle. */
    if (k % 64 == 63)
      usleep (500);
  }
  w->count = k;
  return NULL;
}

int
main (void)
{
  static struct writer writers[WRITERS];
  const char *devs[] = { "d0", "d1" };
  char dev0[512], dev1[512];
  unsigned char *img[2], want[BLOCK];
  uint64_t total_in = 0, total_out = 0, total_window = 0, max_pause = 0;
  struct ctl_client *ctl;
  unsigned r, i, d;

  test_dir (&srv, "coherence");
  snprintf (dev0, sizeof dev0, "device=d0:%s",
            make_file (&srv, "d0.img", DISK_SIZE));
  snprintf (dev1, sizeof dev1, "device=d1:%s",
            make_file (&srv, "d1.img", DISK_SIZE));
  server_start (&srv, (const char *[]) { dev0, dev1, NULL });
  ctl = ctl_open (&srv);
  img[0] = malloc (DISK_SIZE);
  img[1] = malloc (DISK_SIZE);
  CHECK (img[0] && img[1]);

  for (r = 0; r < ROUNDS; r++) {
    struct nbd_handle *zh;
    char id_str[37], name[128];
    uint8_t id[16];
    uint64_t t0, t1, pause;

    /* Zero both devices. */
    for (d = 0; d < 2; d++) {
      zh = nbd_open_export (&srv, devs[d]);
      if (nbd_zero (zh, DISK_SIZE, 0, LIBNBD_CMD_FLAG_NO_HOLE) == -1)
        die ("zero: %s", nbd_get_error ());
      nbd_close (zh);
    }
    round_no = r + 1;
    stop = 0;
    for (i = 0; i < WRITERS; i++) {
      writers[i].id = i;
      writers[i].count = 0;
      writers[i].h[0] = nbd_open_export (&srv, "d0");
      writers[i].h[1] = nbd_open_export (&srv, "d1");
      CHECK (pthread_create (&writers[i].thread, NULL, writer_main,
                             &writers[i]) == 0);
    }
    usleep (20000 + 10000 * r);
    t0 = now_ns ();
    snap_create (ctl, &srv, 1ull << 30, devs, 2, true, id, id_str, &pause);
    t1 = now_ns ();
    usleep (20000);
    stop = 1;
    for (i = 0; i < WRITERS; i++) {
      pthread_join (writers[i].thread, NULL);
      nbd_close (writers[i].h[0]);
      nbd_close (writers[i].h[1]);
    }
    if (pause > max_pause)
      max_pause = pause;

    for (d = 0; d < 2; d++) {
      struct nbd_handle *h;
      snprintf (name, sizeof name, "%s@%s", devs[d], id_str);
      h = nbd_open_export (&srv, name);
      nbd_read_all (h, img[d], DISK_SIZE);
      nbd_close (h);
    }

    for (i = 0; i < WRITERS; i++) {
      struct writer *w = &writers[i];
      bool ended = false;       /* a write was missing: prefix ended */
      unsigned k;

      for (k = 0; k < 2 * SLOTS; k++) {
        const unsigned char *got =
          img[k % 2] + ((uint64_t) w->id * SLOTS + k / 2) * BLOCK;
        bool in;

        if (k < w->count) {
          tag (want, w->id, k, round_no);
          in = memcmp (got, want, BLOCK) == 0;
        }
        else
          in = false;
        if (!in) {
          static const unsigned char zero[BLOCK];
          if (memcmp (got, zero, BLOCK) != 0)
            die ("round %u writer %u write %u: the image block holds "
                 "neither the write nor zeroes", r, i, k);
        }
        if (k >= w->count)
          continue;
        if (w->rec[k].completed < t0 && !in)
          die ("round %u writer %u write %u completed before the take "
               "but is not in image %s", r, i, k, devs[k % 2]);
        if (w->rec[k].started > t1 && in)
          die ("round %u writer %u write %u started after the take but "
               "is in image %s", r, i, k, devs[k % 2]);
        if (in && ended)
          die ("round %u writer %u: write %u is in the snapshot but an "
               "earlier one is not: the take was not coherent", r, i, k);
        if (!in)
          ended = true;
        if (in)
          total_in++;
        else
          total_out++;
        if (w->rec[k].completed >= t0 && w->rec[k].started <= t1)
          total_window++;
      }
    }
    snap_destroy (ctl, id);
  }
  if (total_in == 0 || total_out == 0)
    die ("the takes never fell between writes (in %" PRIu64 ", out %"
         PRIu64 "): the test proves nothing", total_in, total_out);
  printf ("%u takes of 2 devices with %u writers: %" PRIu64 " writes in, %"
          PRIu64 " out, %" PRIu64 " overlapping a take; max pause %" PRIu64
          " us\n", ROUNDS, WRITERS, total_in, total_out, total_window,
          max_pause / 1000);
  ctl_client_close (ctl);
  server_stop (&srv);
  free (img[0]);
  free (img[1]);
  return 0;
}
