/* nbdsnap stress and soak: several writer connections write tagged
 * blocks at random on the originals while create/take/destroy cycles
 * run through nbdsnapctl; several reader connections verify every
 * block of each image against the point-in-time content, then keep
 * reading while the snapshot is destroyed under them.
 *
 *   stress-snapshots API-SOCKET NBD-SOCKET STATE-DIR DAEMON-PID
 *                    CYCLES DEVICE...
 *
 * nbdsnapctl is $NBDSNAPCTL.  Every device must already be served by
 * the daemon; its whole content is rewritten here first.
 *
 * Tags: block B of device D written with generation G holds 512 64-bit
 * words, a magic, D, B, G, then a pseudo-random sequence seeded by
 * (D, B, G); generation 0 is a zeroed block (write-zeroes).  Each
 * writer owns the blocks of a set of 12-block stripes of one device
 * (so stripes straddle COW chunks), and records what each block holds.
 * A take holds the writers off (a writer-preferring rwlock around each
 * write) while the block state is copied: that copy is what the images
 * must read.
 *
 * Checks: every read of an image matches the copy; no write to an
 * original ever fails; reads that start after destroy returned fail;
 * the originals hold exactly the recorded state after each destroy;
 * nbdkit is never restarted; nbdkit's and nbdsnapd's descriptor counts
 * are equal after the warm-up cycle and after the last one, and their
 * RSS grows at most 2x + 32 MiB (not checked in a sanitizer build, where
 * freed memory is quarantined; the numbers are printed either way).
 * A watchdog fails the run if anything hangs.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include <libnbd.h>

#define BS 4096
#define WORDS (BS / 8)
#define STRIPE 12               /* blocks; 48 KiB, not a power of two */
#define MAGIC UINT64_C (0x6e62647374726573)
#define MAX_DEVS 8
#define WRITERS_PER_DEV 2
#define READERS 3
#define RANDOM_READS 200        /* per reader per cycle, 1..16 blocks */
#define PASS_RUN 64             /* blocks per read in a full pass */
#define WATCHDOG_S 900
#define RSS_GROWTH_KB 16384   /* allowed from the warm-up cycle to the end */

/**
 * struct dev - one original device
 * @name: export name of the original
 * @nblocks: size in BS blocks
 * @gen: generation each block holds now (writers write their own
 *       stripes; read by the controller under the take lock)
 * @frozen: generation each block held at the take of the current
 *          snapshot (written under the take lock, read by readers)
 */
struct dev {
  const char *name;
  uint64_t nblocks;
  uint32_t *gen;
  uint32_t *frozen;
};

static struct dev devs[MAX_DEVS];
static int ndevs;
static const char *api, *nbdsock, *ctlprog;

/* Held for reading around each write, for writing around a take and
 * around the check of the originals.
 */
static pthread_rwlock_t take_lock;
static atomic_uint next_gen = 2;
static atomic_int stop_writers;
static atomic_int failed;
static atomic_uint_fast64_t blocks_written, blocks_zeroed;
static atomic_uint_fast64_t blocks_verified, original_verified;
static atomic_uint_fast64_t destroy_errors_seen;

/* The current snapshot and its destroy, for the readers. */
static char snap_id[256];
static atomic_int destroy_started, destroy_done;
static atomic_int readers_in_destroy_mode;

static void
fail (const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  fprintf (stderr, "stress-snapshots: FAIL: ");
  vfprintf (stderr, fmt, ap);
  fprintf (stderr, "\n");
  va_end (ap);
  failed = 1;
}

static void
die (const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  fprintf (stderr, "stress-snapshots: error: ");
  vfprintf (stderr, fmt, ap);
  fprintf (stderr, "\n");
  va_end (ap);
  exit (EXIT_FAILURE);
}

static void
watchdog (int sig)
{
  static const char msg[] = "stress-snapshots: FAIL: watchdog: hung\n";

  if (write (2, msg, sizeof msg - 1) < 0)
    _exit (2);
  _exit (2);
}

static uint64_t
xorshift (uint64_t *s)
{
  uint64_t x = *s;

  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

static void
fill_block (void *buf, int d, uint64_t blk, uint32_t gen)
{
  uint64_t w[WORDS];
  uint64_t s;
  size_t i;

  if (gen == 0) {
    memset (buf, 0, BS);
    return;
  }
  w[0] = MAGIC;
  w[1] = d;
  w[2] = blk;
  w[3] = gen;
  s = (((uint64_t) d << 56) ^ (blk << 24) ^ gen) * UINT64_C (0x9e3779b97f4a7c15)
    | 1;
  for (i = 4; i < WORDS; i++)
    w[i] = xorshift (&s);
  memcpy (buf, w, BS);
}

/* Compare one block read back with what generation GEN writes. */
static int
check_block (const char *what, const void *buf, int d, uint64_t blk,
             uint32_t gen)
{
  char want[BS];
  uint64_t got[4];

  fill_block (want, d, blk, gen);
  if (memcmp (buf, want, BS) == 0)
    return 0;
  memcpy (got, buf, sizeof got);
  fail ("%s: %s block %" PRIu64 ": expected generation %" PRIu32
        ", read a block tagged magic=%" PRIx64 " dev=%" PRIu64
        " block=%" PRIu64 " gen=%" PRIu64,
        what, devs[d].name, blk, gen, got[0], got[1], got[2], got[3]);
  return -1;
}

static struct nbd_handle *
connect_export (const char *name)
{
  struct nbd_handle *h = nbd_create ();

  if (h == NULL)
    die ("nbd_create: %s", nbd_get_error ());
  if (nbd_set_export_name (h, name) == -1 ||
      nbd_connect_unix (h, nbdsock) == -1)
    die ("connect %s: %s", name, nbd_get_error ());
  return h;
}

static void
disconnect (struct nbd_handle *h)
{
  nbd_shutdown (h, 0);
  nbd_close (h);
}

/* Run nbdsnapctl --socket API ARGS (NULL-terminated, at most 28); its
 * first output line into OUT.
 */
static int
run_ctlv (char *out, size_t outlen, const char *const *args)
{
  const char *argv[32];
  int argc = 0, p[2], st;
  pid_t pid;
  ssize_t n;
  size_t got = 0;
  char buf[256];

  argv[argc++] = ctlprog;
  argv[argc++] = "--socket";
  argv[argc++] = api;
  while (*args && argc < 31)
    argv[argc++] = *args++;
  argv[argc] = NULL;

  if (pipe (p) == -1)
    die ("pipe: %m");
  pid = fork ();
  if (pid == -1)
    die ("fork: %m");
  if (pid == 0) {
    dup2 (p[1], 1);
    close (p[0]);
    close (p[1]);
    execvp (argv[0], (char **) argv);
    _exit (127);
  }
  close (p[1]);
  while ((n = read (p[0], buf + got, sizeof buf - 1 - got)) > 0)
    got += n;
  close (p[0]);
  buf[got] = '\0';
  buf[strcspn (buf, "\n")] = '\0';
  if (waitpid (pid, &st, 0) == -1)
    die ("waitpid: %m");
  if (out)
    snprintf (out, outlen, "%s", buf);
  if (!WIFEXITED (st) || WEXITSTATUS (st) != 0) {
    fprintf (stderr, "stress-snapshots: nbdsnapctl %s %s failed (status %d)\n",
             argv[3], argv[4] ? argv[4] : "", st);
    return -1;
  }
  return 0;
}

static int
run_ctl (char *out, size_t outlen, ...)
{
  const char *args[29];
  int n = 0;
  va_list ap;

  va_start (ap, outlen);
  while (n < 28 && (args[n] = va_arg (ap, const char *)) != NULL)
    n++;
  va_end (ap);
  args[n] = NULL;
  return run_ctlv (out, outlen, args);
}

/* --- writers --- */

struct writer {
  pthread_t thread;
  int d;                        /* device */
  int slot, nslots;             /* owns stripes s with s % nslots == slot */
  uint64_t seed;
};

static void *
writer_run (void *arg)
{
  struct writer *w = arg;
  struct dev *dev = &devs[w->d];
  struct nbd_handle *h = connect_export (dev->name);
  uint64_t nstripes = dev->nblocks / STRIPE;
  uint64_t owned = (nstripes - w->slot + w->nslots - 1) / w->nslots;
  static __thread char buf[STRIPE * BS];

  while (!stop_writers && !failed) {
    uint64_t r = xorshift (&w->seed);
    uint64_t stripe = (r % owned) * w->nslots + w->slot;
    uint64_t first = stripe * STRIPE + (r >> 20) % STRIPE;
    uint64_t last = stripe * STRIPE + STRIPE;
    uint64_t n = 1 + (r >> 32) % (last - first), i;
    int zero = (r >> 48) % 16 == 0;
    uint32_t gen = zero ? 0 : atomic_fetch_add (&next_gen, 1);
    int rc;

    pthread_rwlock_rdlock (&take_lock);
    if (zero)
      rc = nbd_zero (h, n * BS, first * BS, 0);
    else {
      for (i = 0; i < n; i++)
        fill_block (buf + i * BS, w->d, first + i, gen);
      rc = nbd_pwrite (h, buf, n * BS, first * BS, 0);
    }
    if (rc == -1)
      fail ("write to original %s at block %" PRIu64 ": %s",
            dev->name, first, nbd_get_error ());
    else
      for (i = 0; i < n; i++)
        dev->gen[first + i] = gen;
    pthread_rwlock_unlock (&take_lock);
    if (zero)
      blocks_zeroed += n;
    else
      blocks_written += n;
  }
  disconnect (h);
  return NULL;
}

/* --- readers --- */

struct reader {
  pthread_t thread;
  int index;
  uint64_t seed;
  struct nbd_handle *h[MAX_DEVS];
  pthread_barrier_t *verified;  /* waited on after the verify phase */
};

static int
read_and_check (struct reader *rd, int d, uint64_t first, uint64_t n)
{
  static __thread char buf[PASS_RUN * BS];
  uint64_t i;

  if (nbd_pread (rd->h[d], buf, n * BS, first * BS, 0) == -1) {
    fail ("read of image %s@%s at block %" PRIu64 ": %s",
          devs[d].name, snap_id, first, nbd_get_error ());
    return -1;
  }
  for (i = 0; i < n; i++)
    if (check_block ("image", buf + i * BS, d, first + i,
                     devs[d].frozen[first + i]) == -1)
      return -1;
  blocks_verified += n;
  return 0;
}

static void *
reader_run (void *arg)
{
  struct reader *rd = arg;
  static __thread char buf[16 * BS];
  char name[512];
  uint64_t b, n;
  int d, k, reported;

  for (d = 0; d < ndevs; d++) {
    snprintf (name, sizeof name, "%s@%s", devs[d].name, snap_id);
    rd->h[d] = connect_export (name);
    if (rd->index == 0 && !nbd_can_multi_conn (rd->h[d]))
      fail ("image %s does not advertise multi-conn", name);
  }

  /* Every block of every image, split among the readers. */
  for (d = 0; d < ndevs && !failed; d++)
    for (b = rd->index * PASS_RUN; b < devs[d].nblocks && !failed;
         b += READERS * PASS_RUN) {
      n = devs[d].nblocks - b < PASS_RUN ? devs[d].nblocks - b : PASS_RUN;
      read_and_check (rd, d, b, n);
    }
  /* Random runs anywhere. */
  for (k = 0; k < RANDOM_READS && !failed; k++) {
    uint64_t r = xorshift (&rd->seed);

    d = r % ndevs;
    b = (r >> 8) % devs[d].nblocks;
    n = 1 + (r >> 40) % 16;
    if (b + n > devs[d].nblocks)
      n = devs[d].nblocks - b;
    read_and_check (rd, d, b, n);
  }
  pthread_barrier_wait (rd->verified);

  /* Destroy under the reader: keep reading until reads fail.  A read
   * may succeed (and must be right) until destroy returns; after that
   * every read must fail.
   */
  atomic_fetch_add (&readers_in_destroy_mode, 1);
  reported = 0;
  while (!failed) {
    uint64_t r = xorshift (&rd->seed);
    int after = destroy_done;

    d = r % ndevs;
    b = (r >> 8) % (devs[d].nblocks - 16);
    n = 1 + (r >> 40) % 16;
    if (nbd_pread (rd->h[d], buf, n * BS, b * BS, 0) == -1) {
      if (!destroy_started) {
        fail ("image read failed before destroy: %s", nbd_get_error ());
        break;
      }
      if (!reported) {
        destroy_errors_seen++;
        reported = 1;
      }
      if (destroy_done)
        break;
      continue;
    }
    if (after) {
      fail ("image %s@%s: a read after destroy succeeded",
            devs[d].name, snap_id);
      break;
    }
    for (uint64_t i = 0; i < n; i++)
      if (check_block ("image during destroy", buf + i * BS, d, b + i,
                       devs[d].frozen[b + i]) == -1)
        break;
  }
  /* One more on every connection: all of them must fail now. */
  for (d = 0; d < ndevs && !failed; d++)
    if (nbd_pread (rd->h[d], buf, BS, 0, 0) != -1)
      fail ("image %s@%s: readable after destroy", devs[d].name, snap_id);
  for (d = 0; d < ndevs; d++)
    nbd_close (rd->h[d]);
  return NULL;
}

/* --- the originals --- */

static void
check_originals (const char *when)
{
  char *buf = malloc (PASS_RUN * BS);
  uint64_t b, n, i;
  int d;

  if (buf == NULL)
    die ("malloc: %m");
  for (d = 0; d < ndevs; d++) {
    struct nbd_handle *h = connect_export (devs[d].name);

    for (b = 0; b < devs[d].nblocks && !failed; b += n) {
      n = devs[d].nblocks - b < PASS_RUN ? devs[d].nblocks - b : PASS_RUN;
      if (nbd_pread (h, buf, n * BS, b * BS, 0) == -1) {
        fail ("%s: read of original %s: %s", when, devs[d].name,
              nbd_get_error ());
        break;
      }
      for (i = 0; i < n; i++)
        if (check_block (when, buf + i * BS, d, b + i,
                         devs[d].gen[b + i]) == -1)
          break;
      original_verified += n;
    }
    disconnect (h);
  }
  free (buf);
}

static void
initialise (void)
{
  char *buf = malloc (PASS_RUN * BS);
  uint64_t b, n, i;
  int d;

  if (buf == NULL)
    die ("malloc: %m");
  for (d = 0; d < ndevs; d++) {
    struct nbd_handle *h = connect_export (devs[d].name);
    int64_t size = nbd_get_size (h);

    if (size < (int64_t) (4 * STRIPE * BS))
      die ("%s: size %" PRIi64 " is too small", devs[d].name, size);
    if (!nbd_can_multi_conn (h))
      fail ("original %s does not advertise multi-conn", devs[d].name);
    devs[d].nblocks = size / BS;
    devs[d].gen = calloc (devs[d].nblocks, sizeof (uint32_t));
    devs[d].frozen = calloc (devs[d].nblocks, sizeof (uint32_t));
    if (devs[d].gen == NULL || devs[d].frozen == NULL)
      die ("calloc: %m");
    for (b = 0; b < devs[d].nblocks; b += n) {
      n = devs[d].nblocks - b < PASS_RUN ? devs[d].nblocks - b : PASS_RUN;
      for (i = 0; i < n; i++) {
        fill_block (buf + i * BS, d, b + i, 1);
        devs[d].gen[b + i] = 1;
      }
      if (nbd_pwrite (h, buf, n * BS, b * BS, 0) == -1)
        die ("initial write of %s: %s", devs[d].name, nbd_get_error ());
    }
    if (nbd_flush (h, 0) == -1)
      die ("flush %s: %s", devs[d].name, nbd_get_error ());
    disconnect (h);
  }
  free (buf);
}

/* --- resources --- */

struct usage {
  long fds;
  long rss_kb;
};

static long
count_fds (pid_t pid)
{
  char path[64];
  DIR *dp;
  struct dirent *e;
  long n = 0;

  snprintf (path, sizeof path, "/proc/%d/fd", (int) pid);
  dp = opendir (path);
  if (dp == NULL)
    die ("%s: %m", path);
  while ((e = readdir (dp)) != NULL)
    if (e->d_name[0] != '.')
      n++;
  closedir (dp);
  return n;
}

static long
rss_kb (pid_t pid)
{
  char path[64], line[256];
  FILE *fp;
  long kb = -1;

  snprintf (path, sizeof path, "/proc/%d/status", (int) pid);
  fp = fopen (path, "r");
  if (fp == NULL)
    die ("%s: %m", path);
  while (fgets (line, sizeof line, fp))
    if (sscanf (line, "VmRSS: %ld kB", &kb) == 1)
      break;
  fclose (fp);
  return kb;
}

static struct usage
usage_of (pid_t pid)
{
  struct usage u;

  u.fds = count_fds (pid);
  u.rss_kb = rss_kb (pid);
  return u;
}

static pid_t
read_pid (const char *file)
{
  FILE *fp = fopen (file, "r");
  int pid;

  if (fp == NULL)
    die ("%s: %m", file);
  if (fscanf (fp, "%d", &pid) != 1)
    die ("%s: no pid", file);
  fclose (fp);
  return pid;
}

/* Descriptor counts settle once closed connections are reaped: wait
 * (bounded) until a count equals WANT, or else until it stays put.
 */
static struct usage
settled_usage (pid_t pid, long want)
{
  struct usage u = usage_of (pid), prev;
  int i, same = 0;

  for (i = 0; i < 100; i++) {
    if (want >= 0 && u.fds == want)
      return u;
    if (want < 0 && same >= 5)
      return u;
    usleep (100000);
    prev = u;
    u = usage_of (pid);
    same = u.fds == prev.fds ? same + 1 : 0;
  }
  return u;
}

/* --- main --- */

int
main (int argc, char *argv[])
{
  struct writer writers[MAX_DEVS * WRITERS_PER_DEV];
  struct reader readers[READERS];
  pthread_rwlockattr_t attr;
  pthread_barrier_t verified;
  char pidfile[4096];
  struct usage nk_warm = { 0, 0 }, nd_warm = { 0, 0 }, nk, nd;
  pid_t daemon_pid, nbdkit_pid;
  int cycles, c, d, i, nwriters = 0, sanitized;
  struct timespec t0, t1;

  if (argc < 7)
    die ("usage: stress-snapshots API NBD-SOCKET STATE-DIR DAEMON-PID "
         "CYCLES DEVICE...");
  api = argv[1];
  nbdsock = argv[2];
  snprintf (pidfile, sizeof pidfile, "%s/nbdkit.pid", argv[3]);
  daemon_pid = atoi (argv[4]);
  cycles = atoi (argv[5]);
  ctlprog = getenv ("NBDSNAPCTL");
  if (ctlprog == NULL || cycles < 2)
    die ("NBDSNAPCTL must be set and CYCLES at least 2");
  for (i = 6; i < argc && ndevs < MAX_DEVS; i++)
    devs[ndevs++].name = argv[i];
  sanitized = getenv ("NBDKIT_PRELOAD") && *getenv ("NBDKIT_PRELOAD");

  signal (SIGALRM, watchdog);
  alarm (WATCHDOG_S);
  clock_gettime (CLOCK_MONOTONIC, &t0);

  pthread_rwlockattr_init (&attr);
  pthread_rwlockattr_setkind_np (&attr,
                                 PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init (&take_lock, &attr);

  initialise ();
  nbdkit_pid = read_pid (pidfile);

  for (d = 0; d < ndevs; d++)
    for (i = 0; i < WRITERS_PER_DEV; i++) {
      struct writer *w = &writers[nwriters];

      w->d = d;
      w->slot = i;
      w->nslots = WRITERS_PER_DEV;
      w->seed = UINT64_C (0x2545f4914f6cdd1d) * (nwriters + 1);
      if (pthread_create (&w->thread, NULL, writer_run, w) != 0)
        die ("pthread_create: %m");
      nwriters++;
    }

  for (c = 1; c <= cycles && !failed; c++) {
    const char *cargs[2 * MAX_DEVS + 8];
    int n = 0;

    /* Create while the writers write. */
    cargs[n++] = "snapshot";
    cargs[n++] = "create";
    for (d = 0; d < ndevs; d++) {
      cargs[n++] = "--device";
      cargs[n++] = devs[d].name;
    }
    cargs[n++] = "--limit";
    cargs[n++] = "1G";
    cargs[n] = NULL;
    if (run_ctlv (snap_id, sizeof snap_id, cargs) == -1) {
      fail ("cycle %d: snapshot create", c);
      break;
    }

    /* Take with the writers held off: the copy is the image. */
    pthread_rwlock_wrlock (&take_lock);
    for (d = 0; d < ndevs; d++)
      memcpy (devs[d].frozen, devs[d].gen,
              devs[d].nblocks * sizeof (uint32_t));
    if (run_ctl (NULL, 0, "snapshot", "take", snap_id, NULL) == -1)
      fail ("cycle %d: snapshot take %s", c, snap_id);
    pthread_rwlock_unlock (&take_lock);
    if (failed)
      break;

    destroy_started = destroy_done = readers_in_destroy_mode = 0;
    pthread_barrier_init (&verified, NULL, READERS + 1);
    for (i = 0; i < READERS; i++) {
      readers[i].index = i;
      readers[i].seed = UINT64_C (0x9e3779b97f4a7c15) * (c * READERS + i + 1);
      readers[i].verified = &verified;
      if (pthread_create (&readers[i].thread, NULL, reader_run,
                          &readers[i]) != 0)
        die ("pthread_create: %m");
    }
    pthread_barrier_wait (&verified);
    /* Destroy once every reader is reading. */
    while (readers_in_destroy_mode < READERS)
      usleep (1000);
    usleep (20000);
    destroy_started = 1;
    if (run_ctl (NULL, 0, "snapshot", "destroy", snap_id, NULL) == -1)
      fail ("cycle %d: snapshot destroy %s", c, snap_id);
    destroy_done = 1;
    for (i = 0; i < READERS; i++)
      pthread_join (readers[i].thread, NULL);
    pthread_barrier_destroy (&verified);

    /* The originals are intact (writers held off meanwhile). */
    pthread_rwlock_wrlock (&take_lock);
    check_originals ("original after destroy");
    pthread_rwlock_unlock (&take_lock);

    if (read_pid (pidfile) != nbdkit_pid)
      fail ("cycle %d: nbdkit was restarted (pid %d, then %d)", c,
            (int) nbdkit_pid, (int) read_pid (pidfile));
    if (c == 1) {
      nk_warm = settled_usage (nbdkit_pid, -1);
      nd_warm = settled_usage (daemon_pid, -1);
      printf ("stress-snapshots: after warm-up cycle: nbdkit fds=%ld "
              "rss=%ld kB, nbdsnapd fds=%ld rss=%ld kB\n",
              nk_warm.fds, nk_warm.rss_kb, nd_warm.fds, nd_warm.rss_kb);
    }
    fflush (stdout);
  }

  stop_writers = 1;
  for (i = 0; i < nwriters; i++)
    pthread_join (writers[i].thread, NULL);
  if (failed)
    die ("failed in cycle %d", c);

  /* The writers' connections are gone now: the warm-up numbers had
   * them.  Reconnect the same number of idle clients to compare.
   */
  {
    struct nbd_handle *idle[MAX_DEVS * WRITERS_PER_DEV];

    for (i = 0; i < nwriters; i++)
      idle[i] = connect_export (devs[writers[i].d].name);
    nk = settled_usage (nbdkit_pid, nk_warm.fds);
    nd = settled_usage (daemon_pid, nd_warm.fds);
    for (i = 0; i < nwriters; i++)
      disconnect (idle[i]);
  }
  check_originals ("original at the end");

  clock_gettime (CLOCK_MONOTONIC, &t1);
  printf ("stress-snapshots: after cycle %d: nbdkit fds=%ld rss=%ld kB, "
          "nbdsnapd fds=%ld rss=%ld kB\n",
          cycles, nk.fds, nk.rss_kb, nd.fds, nd.rss_kb);
  printf ("stress-snapshots: %d devices, %d writers, %d readers, "
          "%d cycles in %.1f s: blocks written %" PRIuFAST64
          ", zeroed %" PRIuFAST64 ", image blocks verified %" PRIuFAST64
          ", original blocks verified %" PRIuFAST64
          ", readers cut off by destroy %" PRIuFAST64 "\n",
          ndevs, nwriters, READERS, cycles,
          (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9,
          (uint_fast64_t) blocks_written, (uint_fast64_t) blocks_zeroed,
          (uint_fast64_t) blocks_verified, (uint_fast64_t) original_verified,
          (uint_fast64_t) destroy_errors_seen);

  if (nk.fds != nk_warm.fds)
    fail ("nbdkit descriptors: %ld after the warm-up cycle, %ld at the end",
          nk_warm.fds, nk.fds);
  if (nd.fds != nd_warm.fds)
    fail ("nbdsnapd descriptors: %ld after the warm-up cycle, %ld at the end",
          nd_warm.fds, nd.fds);
  if (!sanitized) {
    if (nk.rss_kb > nk_warm.rss_kb + RSS_GROWTH_KB)
      fail ("nbdkit RSS grew from %ld kB to %ld kB", nk_warm.rss_kb,
            nk.rss_kb);
    if (nd.rss_kb > nd_warm.rss_kb + RSS_GROWTH_KB)
      fail ("nbdsnapd RSS grew from %ld kB to %ld kB", nd_warm.rss_kb,
            nd.rss_kb);
  }
  if (destroy_errors_seen != (uint_fast64_t) READERS * cycles)
    fail ("%" PRIuFAST64 " of %d readers saw their image fail at destroy",
          (uint_fast64_t) destroy_errors_seen, READERS * cycles);
  for (d = 0; d < ndevs; d++) {
    free (devs[d].gen);
    free (devs[d].frozen);
  }
  pthread_rwlock_destroy (&take_lock);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
