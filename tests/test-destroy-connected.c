/* Invariant 6: destroy frees the diff storage and removes the image
 * exports; connected image clients get errors, not a hang or a crash.
 *
 * Image readers (several connections) read in a loop and check every
 * read against the point in time, and a writer overwrites the original
 * (so copy-on-write runs), while the snapshot is destroyed.  Each
 * reader must then see its requests fail with EIO promptly; new
 * connections to the image are refused; the diff storage descriptor is
 * gone from nbdkit; the original holds exactly what was written.
 * Repeated for several rounds.
 */

#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define DISK_SIZE (32u << 20)
#define READERS 4
#define ROUNDS 5

static struct server srv;
static char export_image[128];
static unsigned char *at_take, *shadow;
/* destroying: set before the destroy request; destroyed: after it. */
static volatile int destroying, destroyed, stop_writer;

struct reader {
  pthread_t thread;
  unsigned id;
  struct nbd_handle *h;
  uint64_t reads_before, errors_after;
  int last_errno;
  volatile int done;
};

static void *
reader_main (void *arg)
{
  struct reader *r = arg;
  uint64_t rng = 99 + r->id;
  unsigned char *buf = malloc (1 << 20);

  CHECK (buf);
  for (;;) {
    uint64_t off = rng_next (&rng) % DISK_SIZE;
    uint64_t len = 1 + rng_next (&rng) % (1 << 20);
    int was_destroyed = destroyed;

    if (off + len > DISK_SIZE)
      len = DISK_SIZE - off;
    if (nbd_pread (r->h, buf, len, off, 0) == -1) {
      r->last_errno = nbd_get_errno ();
      if (!destroying)
        die ("reader %u: read failed before destroy: %s", r->id,
             nbd_get_error ());
      /* Errors from now on, every time. */
      if (++r->errors_after >= 5)
        break;
      continue;
    }
    if (was_destroyed) {
      /* A read that started after destroy returned must fail. */
      die ("reader %u: a read after destroy succeeded", r->id);
    }
    if (memcmp (buf, at_take + off, len) != 0)
      die ("reader %u: read %" PRIu64 "+%" PRIu64 " differs from the point "
           "in time", r->id, off, len);
    r->reads_before++;
  }
  free (buf);
  r->done = 1;
  return NULL;
}

static void *
writer_main (void *arg)
{
  struct nbd_handle *h = nbd_open_export (&srv, "disk0");
  uint64_t rng = 5;
  unsigned char buf[65536];

  while (!stop_writer) {
    uint64_t off = rng_next (&rng) % (DISK_SIZE - sizeof buf);
    uint64_t len = 1 + rng_next (&rng) % sizeof buf;
    rng_fill (&rng, buf, len);
    if (nbd_pwrite (h, buf, len, off, 0) == -1)
      die ("original write failed: %s", nbd_get_error ());
    memcpy (shadow + off, buf, len);
  }
  nbd_close (h);
  return NULL;
}

/* Descriptors of nbdkit that are deleted files in the test directory:
 * the O_TMPFILE diff storage.
 */
static unsigned
count_storage_fds (void)
{
  char path[64], link[PATH_MAX + 1];
  struct dirent *d;
  unsigned n = 0;
  DIR *dir;

  snprintf (path, sizeof path, "/proc/%d/fd", (int) srv.pid);
  dir = opendir (path);
  CHECK (dir);
  while ((d = readdir (dir)) != NULL) {
    char p[400];
    ssize_t k;
    snprintf (p, sizeof p, "%s/%s", path, d->d_name);
    k = readlink (p, link, sizeof link - 1);
    if (k <= 0)
      continue;
    link[k] = '\0';
    if (strncmp (link, srv.dir, strlen (srv.dir)) == 0 &&
        strstr (link, "(deleted)"))
      n++;
  }
  closedir (dir);
  return n;
}

int
main (void)
{
  static struct reader readers[READERS];
  const char *devs[] = { "disk0" };
  char devarg[512], id_str[37], msg[512];
  struct ctl_client *ctl;
  uint64_t rng = 3, total_reads = 0;
  unsigned char *buf;
  pthread_t writer;
  unsigned round, i;
  uint8_t id[16];
  int fd;

  test_dir (&srv, "destroy");
  at_take = malloc (DISK_SIZE);
  shadow = malloc (DISK_SIZE);
  buf = malloc (DISK_SIZE);
  CHECK (at_take && shadow && buf);
  rng_fill (&rng, shadow, DISK_SIZE);
  snprintf (devarg, sizeof devarg, "device=disk0:%s",
            make_file (&srv, "disk0.img", 0));
  fd = open (strchr (devarg, ':') + 1, O_WRONLY);
  CHECK (fd >= 0 && pwrite (fd, shadow, DISK_SIZE, 0) == DISK_SIZE);
  close (fd);
  server_start (&srv, (const char *[]) { devarg, NULL });
  ctl = ctl_open (&srv);

  for (round = 0; round < ROUNDS; round++) {
    struct timespec deadline;

    memcpy (at_take, shadow, DISK_SIZE);
    snap_create (ctl, &srv, 1ull << 30, devs, 1, true, id, id_str, NULL);
    snprintf (export_image, sizeof export_image, "disk0@%s", id_str);
    CHECK (count_storage_fds () == 1);
    destroying = destroyed = 0;
    stop_writer = 0;
    for (i = 0; i < READERS; i++) {
      memset (&readers[i], 0, sizeof readers[i]);
      readers[i].id = i;
      readers[i].h = nbd_open_export (&srv, export_image);
      CHECK (pthread_create (&readers[i].thread, NULL, reader_main,
                             &readers[i]) == 0);
    }
    CHECK (pthread_create (&writer, NULL, writer_main, NULL) == 0);
    usleep (150000);

    destroying = 1;
    snap_destroy (ctl, id);
    destroyed = 1;

    /* Readers must finish (5 failures each) within 10 seconds. */
    clock_gettime (CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    for (i = 0; i < READERS; i++) {
      if (pthread_timedjoin_np (readers[i].thread, NULL, &deadline) != 0)
        die ("round %u: reader %u hangs after destroy", round, i);
      if (readers[i].last_errno != EIO)
        die ("round %u: reader %u got errno %d after destroy, not EIO",
             round, i, readers[i].last_errno);
      total_reads += readers[i].reads_before;
      nbd_close (readers[i].h);
    }
    stop_writer = 1;
    pthread_join (writer, NULL);

    if (count_storage_fds () != 0)
      die ("round %u: the diff storage is still open after destroy", round);
    if (nbd_try_export (&srv, export_image, msg, sizeof msg) != NULL)
      die ("round %u: the image export is still served", round);
  }

  /* The original has exactly what the writer wrote. */
  {
    struct nbd_handle *h = nbd_open_export (&srv, "disk0");
    uint64_t bad;
    nbd_read_all (h, buf, DISK_SIZE);
    bad = compare_blocks ("original", buf, shadow, 0, DISK_SIZE);
    if (bad)
      die ("%" PRIu64 " original blocks differ from what was written", bad);
    nbd_close (h);
  }
  if (total_reads == 0)
    die ("no image read completed before destroy: the test proves nothing");
  printf ("%u rounds: %" PRIu64 " image reads verified before destroy, "
          "every reader failed with EIO after it\n", ROUNDS, total_reads);
  ctl_client_close (ctl);
  server_stop (&srv);
  free (at_take);
  free (shadow);
  free (buf);
  return 0;
}
