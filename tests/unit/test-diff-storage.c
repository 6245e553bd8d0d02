/* nbdsnap unit tests - diff_storage: allocation, growth, limit, and a
 * snapshot whose storage runs out (corrupted; the original unaffected).
 *
 * Storage files are real O_TMPFILEs in $TMPDIR (or /var/tmp).
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/fs.h>

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
#define SZ (64 * 1024)          /* slot size used throughout */

static int
new_tmpfile (void)
{
  int fd = unit_tmpfile ();

  CU_ASSERT_FATAL (fd >= 0);
  return fd;
}

static struct diff_storage *
new_storage (uint64_t limit, uint64_t portion, uint64_t low_water,
             diff_storage_notify_fn *notify, void *opaque)
{
  int err = 0, fd = new_tmpfile ();
  struct diff_storage *ds = diff_storage_create (fd, limit, portion,
                                                 low_water, notify, opaque,
                                                 &err);

  CU_ASSERT_PTR_NOT_NULL_FATAL (ds);
  return ds;
}

static void
usage (struct diff_storage *ds, uint64_t *used, uint64_t *limit,
       uint64_t *allocated, unsigned *count)
{
  uint64_t u, l, a;
  unsigned c;

  diff_storage_usage (ds, &u, &l, &a, &c);
  if (used) *used = u;
  if (limit) *limit = l;
  if (allocated) *allocated = a;
  if (count) *count = c;
}

static void
test_check_fd (void)
{
  struct diff_storage_file f;
  struct stat st;
  int err, fd, p[2], sp[2], ro, wo, null;
  char *path = NULL;

  err = 0;
  CU_ASSERT_EQUAL (diff_storage_check_fd (-1, SZ, &f, &err), -1);
  CU_ASSERT_EQUAL (err, EBADF);
  CU_ASSERT_EQUAL (f.fd, -1);

  /* A descriptor that is not open. */
  fd = new_tmpfile ();
  close (fd);
  err = 0;
  CU_ASSERT_EQUAL (diff_storage_check_fd (fd, SZ, &f, &err), -1);
  CU_ASSERT_EQUAL (err, EBADF);

  /* Pipes: neither end is read-write. */
  CU_ASSERT_FATAL (pipe (p) == 0);
  err = 0;
  CU_ASSERT_EQUAL (diff_storage_check_fd (p[0], SZ, &f, &err), -1);
  CU_ASSERT_EQUAL (err, EBADF);
  err = 0;
  CU_ASSERT_EQUAL (diff_storage_check_fd (p[1], SZ, &f, &err), -1);
  CU_ASSERT_EQUAL (err, EBADF);
  close (p[0]);
  close (p[1]);

  /* A socket is read-write but not a file. */
  CU_ASSERT_FATAL (socketpair (AF_UNIX, SOCK_STREAM, 0, sp) == 0);
  err = 0;
  CU_ASSERT_EQUAL (diff_storage_check_fd (sp[0], SZ, &f, &err), -1);
  CU_ASSERT_EQUAL (err, EBADF);
  close (sp[0]);
  close (sp[1]);

  /* Nor is a character device. */
  null = open ("/dev/null", O_RDWR);
  CU_ASSERT_FATAL (null >= 0);
  err = 0;
  CU_ASSERT_EQUAL (diff_storage_check_fd (null, SZ, &f, &err), -1);
  CU_ASSERT_EQUAL (err, EBADF);
  close (null);

  /* A regular file opened read-only or write-only. */
  fd = unit_temp_file (0, &path);
  CU_ASSERT_FATAL (fd >= 0);
  ro = open (path, O_RDONLY);
  wo = open (path, O_WRONLY);
  CU_ASSERT_FATAL (ro >= 0 && wo >= 0);
  err = 0;
  CU_ASSERT_EQUAL (diff_storage_check_fd (ro, SZ, &f, &err), -1);
  CU_ASSERT_EQUAL (err, EBADF);
  err = 0;
  CU_ASSERT_EQUAL (diff_storage_check_fd (wo, SZ, &f, &err), -1);
  CU_ASSERT_EQUAL (err, EBADF);

  /* Read-write, but no room allowed. */
  err = 0;
  CU_ASSERT_EQUAL (diff_storage_check_fd (fd, 0, &f, &err), -1);
  CU_ASSERT_EQUAL (err, EINVAL);

  /* Good. */
  CU_ASSERT_EQUAL (diff_storage_check_fd (fd, 5 * SZ, &f, &err), 0);
  CU_ASSERT_FATAL (fstat (fd, &st) == 0);
  CU_ASSERT_EQUAL (f.fd, fd);
  CU_ASSERT_FALSE (f.is_blockdev);
  CU_ASSERT_EQUAL (f.st_dev, st.st_dev);
  CU_ASSERT_EQUAL (f.st_ino, st.st_ino);
  CU_ASSERT_EQUAL (f.limit, 5 * SZ);
  CU_ASSERT_EQUAL (f.used, 0);
  CU_ASSERT_EQUAL (f.allocated, 0);

  /* Checking takes nothing: all of them are still open. */
  CU_ASSERT_FALSE (unit_fd_is_closed (fd));
  CU_ASSERT_FALSE (unit_fd_is_closed (ro));
  CU_ASSERT_FALSE (unit_fd_is_closed (wo));
  close (ro);
  close (wo);
  close (fd);
  unlink (path);
  free (path);
}

static void
test_create_ownership (void)
{
  struct diff_storage *ds;
  int err, fd, p[2];

  /* Failure: the descriptor stays the caller's. */
  CU_ASSERT_FATAL (pipe (p) == 0);
  err = 0;
  ds = diff_storage_create (p[1], SZ, 0, 0, NULL, NULL, &err);
  CU_ASSERT_PTR_NULL (ds);
  CU_ASSERT_EQUAL (err, EBADF);
  CU_ASSERT_FALSE (unit_fd_is_closed (p[1]));
  close (p[0]);
  close (p[1]);

  fd = new_tmpfile ();
  err = 0;
  ds = diff_storage_create (fd, 0, 0, 0, NULL, NULL, &err);
  CU_ASSERT_PTR_NULL (ds);
  CU_ASSERT_EQUAL (err, EINVAL);
  CU_ASSERT_FALSE (unit_fd_is_closed (fd));

  /* Success: the storage owns it and closes it with the last put. */
  ds = diff_storage_create (fd, 4 * SZ, 0, 0, NULL, NULL, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL (ds);
  CU_ASSERT_EQUAL (ds->portion, DIFF_STORAGE_PORTION_DEFAULT);
  diff_storage_get (ds);
  diff_storage_put (ds);
  CU_ASSERT_FALSE (unit_fd_is_closed (fd));
  diff_storage_put (ds);
  CU_ASSERT_TRUE (unit_fd_is_closed (fd));
  diff_storage_put (NULL);      /* harmless */
}

/* Slots are handed out from offset 0 of each file up, file after file;
 * a file with less than a slot left is skipped.
 */
static void
test_alloc_order (void)
{
  static const struct { uint32_t file; uint64_t offset; } want[] = {
    { 0, 0 }, { 0, SZ },                        /* file 0: 2.5 slots */
    { 1, 0 }, { 1, SZ }, { 1, 2 * SZ },         /* file 1: 3 slots */
    { 2, 0 },                                   /* file 2: 1 slot */
  };
  struct diff_storage *ds = new_storage (2 * SZ + SZ / 2, SZ, 0, NULL, NULL);
  uint64_t used, limit, allocated, off;
  uint32_t file;
  unsigned count, i;
  uint8_t buf[SZ], got[SZ];
  int err = 0, fd3;

  CU_ASSERT_EQUAL (diff_storage_append (ds, new_tmpfile (), 3 * SZ, &err), 0);
  CU_ASSERT_EQUAL (diff_storage_append (ds, new_tmpfile (), 1 * SZ, &err), 0);
  usage (ds, &used, &limit, &allocated, &count);
  CU_ASSERT_EQUAL (count, 3);
  CU_ASSERT_EQUAL (limit, 6 * SZ + SZ / 2);
  CU_ASSERT_EQUAL (used, 0);

  for (i = 0; i < ARRAY_SIZE (want); i++) {
    file = 99;
    off = 99;
    CU_ASSERT_EQUAL (diff_storage_alloc (ds, SZ, &file, &off, &err), 0);
    CU_ASSERT_EQUAL (file, want[i].file);
    CU_ASSERT_EQUAL (off, want[i].offset);
    /* Each slot holds its own data. */
    memset (buf, 'A' + i, sizeof buf);
    CU_ASSERT_EQUAL (diff_storage_pwrite (ds, file, buf, SZ, off, &err), 0);
  }
  usage (ds, &used, &limit, &allocated, &count);
  CU_ASSERT_EQUAL (used, 6 * SZ);

  /* Full (half a slot left in file 0 does not count). */
  err = 0;
  CU_ASSERT_EQUAL (diff_storage_alloc (ds, SZ, &file, &off, &err), -1);
  CU_ASSERT_EQUAL (err, ENOSPC);

  /* Appending makes room again: the new file is used next. */
  fd3 = new_tmpfile ();
  CU_ASSERT_EQUAL (diff_storage_append (ds, fd3, 2 * SZ, &err), 0);
  CU_ASSERT_EQUAL (diff_storage_alloc (ds, SZ, &file, &off, &err), 0);
  CU_ASSERT_EQUAL (file, 3);
  CU_ASSERT_EQUAL (off, 0);
  memset (buf, 'Z', sizeof buf);
  CU_ASSERT_EQUAL (diff_storage_pwrite (ds, file, buf, SZ, off, &err), 0);

  /* Everything reads back from where it went. */
  for (i = 0; i < ARRAY_SIZE (want); i++) {
    memset (buf, 'A' + i, sizeof buf);
    CU_ASSERT_EQUAL (diff_storage_pread (ds, want[i].file, got, SZ,
                                         want[i].offset, &err), 0);
    CU_ASSERT_EQUAL (memcmp (got, buf, SZ), 0);
  }
  CU_ASSERT_EQUAL (pread (fd3, got, SZ, 0), SZ);
  CU_ASSERT_EQUAL (got[0], 'Z');
  CU_ASSERT_EQUAL (got[SZ - 1], 'Z');

  /* A file index that does not exist is EIO, not a crash; so is a read
   * past what was written.
   */
  err = 0;
  CU_ASSERT_EQUAL (diff_storage_pread (ds, 4, got, 1, 0, &err), -1);
  CU_ASSERT_EQUAL (err, EIO);
  err = 0;
  CU_ASSERT_EQUAL (diff_storage_pwrite (ds, UINT32_MAX, got, 1, 0, &err), -1);
  CU_ASSERT_EQUAL (err, EIO);
  err = 0;
  CU_ASSERT_EQUAL (diff_storage_pread (ds, 2, got, 1, 10 * SZ, &err), -1);
  CU_ASSERT_EQUAL (err, EIO);
  CU_ASSERT_EQUAL (diff_storage_flush (ds, &err), 0);

  diff_storage_put (ds);
  CU_ASSERT_TRUE (unit_fd_is_closed (fd3));
}

static void
test_append_limits (void)
{
  struct diff_storage *ds = new_storage (SZ, SZ, 0, NULL, NULL);
  unsigned i, count;
  int err = 0, fd, p[2];
  uint64_t limit;

  /* A bad descriptor is refused and stays the caller's. */
  CU_ASSERT_FATAL (pipe (p) == 0);
  err = 0;
  CU_ASSERT_EQUAL (diff_storage_append (ds, p[0], SZ, &err), -1);
  CU_ASSERT_EQUAL (err, EBADF);
  CU_ASSERT_FALSE (unit_fd_is_closed (p[0]));
  close (p[0]);
  close (p[1]);
  fd = new_tmpfile ();
  err = 0;
  CU_ASSERT_EQUAL (diff_storage_append (ds, fd, 0, &err), -1);
  CU_ASSERT_EQUAL (err, EINVAL);
  CU_ASSERT_FALSE (unit_fd_is_closed (fd));

  /* Up to NBDSNAP_MAX_STORAGES files. */
  for (i = 1; i < NBDSNAP_MAX_STORAGES; i++)
    CU_ASSERT_EQUAL (diff_storage_append (ds, new_tmpfile (), SZ, &err), 0);
  err = 0;
  CU_ASSERT_EQUAL (diff_storage_append (ds, fd, SZ, &err), -1);
  CU_ASSERT_EQUAL (err, E2BIG);
  CU_ASSERT_FALSE (unit_fd_is_closed (fd));
  close (fd);
  usage (ds, NULL, &limit, NULL, &count);
  CU_ASSERT_EQUAL (count, NBDSNAP_MAX_STORAGES);
  CU_ASSERT_EQUAL (limit, (uint64_t) NBDSNAP_MAX_STORAGES * SZ);
  diff_storage_put (ds);
}

/* The limit: exactly floor (limit / slot) slots, then ENOSPC, again
 * and again, with nothing changed.
 */
static void
test_limit (void)
{
  struct diff_storage *ds = new_storage (3 * SZ + SZ / 2, SZ, 0, NULL, NULL);
  uint64_t used, allocated, off;
  uint32_t file;
  unsigned i;
  int err = 0;

  for (i = 0; i < 3; i++) {
    CU_ASSERT_EQUAL (diff_storage_alloc (ds, SZ, &file, &off, &err), 0);
    CU_ASSERT_EQUAL (off, (uint64_t) i * SZ);
  }
  /* A smaller slot still fits in what is left... */
  CU_ASSERT_EQUAL (diff_storage_alloc (ds, SZ / 2, &file, &off, &err), 0);
  CU_ASSERT_EQUAL (off, 3 * SZ);
  usage (ds, &used, NULL, &allocated, NULL);
  CU_ASSERT_EQUAL (used, 3 * SZ + SZ / 2);
  CU_ASSERT_EQUAL (allocated, 3 * SZ + SZ / 2);
  /* ...then nothing does, again and again, with nothing changed. */
  for (i = 0; i < 3; i++) {
    err = 0;
    CU_ASSERT_EQUAL (diff_storage_alloc (ds, SZ, &file, &off, &err), -1);
    CU_ASSERT_EQUAL (err, ENOSPC);
    err = 0;
    CU_ASSERT_EQUAL (diff_storage_alloc (ds, 1, &file, &off, &err), -1);
    CU_ASSERT_EQUAL (err, ENOSPC);
  }
  usage (ds, &used, NULL, &allocated, NULL);
  CU_ASSERT_EQUAL (used, 3 * SZ + SZ / 2);
  CU_ASSERT_EQUAL (allocated, 3 * SZ + SZ / 2);
  diff_storage_put (ds);

  /* A slot larger than the whole limit never fits. */
  ds = new_storage (SZ - 1, SZ, 0, NULL, NULL);
  err = 0;
  CU_ASSERT_EQUAL (diff_storage_alloc (ds, SZ, &file, &off, &err), -1);
  CU_ASSERT_EQUAL (err, ENOSPC);
  usage (ds, &used, NULL, &allocated, NULL);
  CU_ASSERT_EQUAL (used, 0);
  CU_ASSERT_EQUAL (allocated, 0);
  diff_storage_put (ds);
}

/* Bytes the file holds on disk (fallocate'd or written). */
static uint64_t
disk_bytes (int fd, uint64_t *size)
{
  struct stat st;

  CU_ASSERT_FATAL (fstat (fd, &st) == 0);
  *size = st.st_size;
  return (uint64_t) st.st_blocks * 512;
}

/* Without the grower: the allocating thread reserves a portion at a
 * time, when it needs it, never past the limit.
 */
static void
test_growth_sync (void)
{
  const uint64_t portion = 1 * MiB, limit = 8 * MiB + SZ / 2;
  struct diff_storage *ds = new_storage (limit, portion, 0, NULL, NULL);
  int fd = ds->files[0].fd, err = 0;
  uint64_t used, allocated, size, off;
  uint32_t file;
  unsigned i, slots = 8 * MiB / SZ;

  usage (ds, &used, NULL, &allocated, NULL);
  CU_ASSERT_EQUAL (allocated, 0);
  CU_ASSERT_EQUAL (disk_bytes (fd, &size), 0);
  CU_ASSERT_EQUAL (size, 0);

  for (i = 0; i < slots; i++) {
    CU_ASSERT_EQUAL (diff_storage_alloc (ds, SZ, &file, &off, &err), 0);
    CU_ASSERT_EQUAL (off, (uint64_t) i * SZ);
    usage (ds, &used, NULL, &allocated, NULL);
    /* Whole portions, just enough for what is used. */
    CU_ASSERT_EQUAL (allocated, DIV_ROUND_UP (used, portion) * portion);
    if (i == 0) {
      CU_ASSERT (disk_bytes (fd, &size) >= portion);
      CU_ASSERT_EQUAL (size, portion);
    }
    CU_ASSERT_FALSE (ds->grow_queued);
  }
  CU_ASSERT (disk_bytes (fd, &size) >= 8 * MiB);
  CU_ASSERT_EQUAL (size, 8 * MiB);

  /* Half a slot is left: reserving it stops at the limit, and the file
   * never grows past it.
   */
  CU_ASSERT_EQUAL (diff_storage_alloc (ds, SZ / 2, &file, &off, &err), 0);
  CU_ASSERT_EQUAL (off, 8 * MiB);
  usage (ds, &used, NULL, &allocated, NULL);
  CU_ASSERT_EQUAL (used, limit);
  CU_ASSERT_EQUAL (allocated, limit);
  err = 0;
  CU_ASSERT_EQUAL (diff_storage_alloc (ds, SZ, &file, &off, &err), -1);
  CU_ASSERT_EQUAL (err, ENOSPC);
  usage (ds, &used, NULL, &allocated, NULL);
  CU_ASSERT_EQUAL (allocated, limit);
  disk_bytes (fd, &size);
  CU_ASSERT_EQUAL (size, limit);
  diff_storage_put (ds);
}

/* With the grower: once less than half a portion is reserved ahead, the
 * next portion is reserved in the background, before it is needed.
 */
static void
test_growth_background (void)
{
  const uint64_t portion = 1 * MiB, limit = 3 * MiB;
  struct diff_storage *ds;
  uint64_t used, allocated, size, off;
  uint32_t file;
  unsigned i, waited;
  int fd, err = 0;

  CU_ASSERT_EQUAL_FATAL (diff_storage_grower_start (&err), 0);
  CU_ASSERT_EQUAL (diff_storage_grower_start (&err), 0); /* idempotent */
  ds = new_storage (limit, portion, 0, NULL, NULL);
  fd = ds->files[0].fd;

  /* 8 slots (512 KiB) of the first portion: half of it is left, no
   * growth yet.
   */
  for (i = 0; i < 8; i++)
    CU_ASSERT_EQUAL (diff_storage_alloc (ds, SZ, &file, &off, &err), 0);
  unit_sleep_ms (50);
  usage (ds, &used, NULL, &allocated, NULL);
  CU_ASSERT_EQUAL (allocated, portion);

  /* The 9th leaves less than half a portion ahead: the grower reserves
   * the next one.
   */
  CU_ASSERT_EQUAL (diff_storage_alloc (ds, SZ, &file, &off, &err), 0);
  for (waited = 0; waited < 5000; waited += 10) {
    usage (ds, &used, NULL, &allocated, NULL);
    if (allocated >= 2 * portion &&
        !__atomic_load_n (&ds->grow_queued, __ATOMIC_SEQ_CST) &&
        __atomic_load_n (&ds->refcount, __ATOMIC_SEQ_CST) == 1)
      break;
    unit_sleep_ms (10);
  }
  CU_ASSERT_EQUAL (allocated, 2 * portion);
  CU_ASSERT_EQUAL (used, 9 * SZ);
  CU_ASSERT (disk_bytes (fd, &size) >= 2 * portion);
  CU_ASSERT_EQUAL (size, 2 * portion);
  /* The grower let go of its reference. */
  CU_ASSERT_EQUAL (__atomic_load_n (&ds->refcount, __ATOMIC_SEQ_CST), 1);

  /* Use it all: the grower never reserves past the limit. */
  while (diff_storage_alloc (ds, SZ, &file, &off, &err) == 0)
    ;
  CU_ASSERT_EQUAL (err, ENOSPC);
  for (waited = 0; waited < 5000; waited += 10) {
    if (!__atomic_load_n (&ds->grow_queued, __ATOMIC_SEQ_CST) &&
        __atomic_load_n (&ds->refcount, __ATOMIC_SEQ_CST) == 1)
      break;
    unit_sleep_ms (10);
  }
  usage (ds, &used, NULL, &allocated, NULL);
  CU_ASSERT_EQUAL (used, limit);
  CU_ASSERT_EQUAL (allocated, limit);
  disk_bytes (fd, &size);
  CU_ASSERT_EQUAL (size, limit);

  diff_storage_grower_stop ();
  diff_storage_grower_stop ();  /* idempotent */
  diff_storage_put (ds);
}

/* The low-space notification: once when less than min (low water,
 * limit / 4) is left, re-armed by an append.
 */
struct low_calls {
  unsigned n;
  uint64_t used, limit;
};

static void
on_low (void *opaque, uint64_t used, uint64_t limit)
{
  struct low_calls *c = opaque;

  c->n++;
  c->used = used;
  c->limit = limit;
}

static void
test_low_space (void)
{
  struct low_calls calls = { 0 };
  struct diff_storage *ds = new_storage (10 * SZ, SZ, 2 * SZ, on_low,
                                         &calls);
  uint64_t off;
  uint32_t file;
  unsigned i;
  int err = 0;

  for (i = 0; i < 8; i++)
    CU_ASSERT_EQUAL (diff_storage_alloc (ds, SZ, &file, &off, &err), 0);
  CU_ASSERT_EQUAL (calls.n, 0);             /* 2 slots left: not low */
  CU_ASSERT_EQUAL (diff_storage_alloc (ds, SZ, &file, &off, &err), 0);
  CU_ASSERT_EQUAL (calls.n, 1);             /* 1 left */
  CU_ASSERT_EQUAL (calls.used, 9 * SZ);
  CU_ASSERT_EQUAL (calls.limit, 10 * SZ);
  CU_ASSERT_EQUAL (diff_storage_alloc (ds, SZ, &file, &off, &err), 0);
  CU_ASSERT_EQUAL (calls.n, 1);             /* not again */

  /* Appending re-arms it. */
  CU_ASSERT_EQUAL (diff_storage_append (ds, new_tmpfile (), 10 * SZ, &err),
                   0);
  for (i = 0; i < 8; i++)
    CU_ASSERT_EQUAL (diff_storage_alloc (ds, SZ, &file, &off, &err), 0);
  CU_ASSERT_EQUAL (calls.n, 1);
  CU_ASSERT_EQUAL (diff_storage_alloc (ds, SZ, &file, &off, &err), 0);
  CU_ASSERT_EQUAL (calls.n, 2);
  CU_ASSERT_EQUAL (calls.used, 19 * SZ);
  CU_ASSERT_EQUAL (calls.limit, 20 * SZ);
  diff_storage_put (ds);

  /* A small storage uses a quarter of its limit as the mark. */
  calls.n = 0;
  ds = new_storage (8 * SZ, SZ, 100 * MiB, on_low, &calls);
  for (i = 0; i < 6; i++)
    CU_ASSERT_EQUAL (diff_storage_alloc (ds, SZ, &file, &off, &err), 0);
  CU_ASSERT_EQUAL (calls.n, 0);             /* 2 of 8 left: a quarter */
  CU_ASSERT_EQUAL (diff_storage_alloc (ds, SZ, &file, &off, &err), 0);
  CU_ASSERT_EQUAL (calls.n, 1);
  diff_storage_put (ds);
}

static void
test_on_device (void)
{
  struct diff_storage *ds;
  struct stat dev, other;
  char *path = NULL;
  int fd, ofd, err = 0;

  fd = unit_temp_file (SZ, &path);
  CU_ASSERT_FATAL (fd >= 0);
  CU_ASSERT_FATAL (fstat (fd, &dev) == 0);
  ofd = new_tmpfile ();
  CU_ASSERT_FATAL (fstat (ofd, &other) == 0);

  /* Storage in another file: no alias. */
  ds = diff_storage_create (ofd, SZ, 0, 0, NULL, NULL, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL (ds);
  CU_ASSERT_FALSE (diff_storage_on_device (ds, false, dev.st_dev, dev.st_ino,
                                           0));
  /* ...unless the device is the block device the file system is on. */
  CU_ASSERT_TRUE (diff_storage_on_device (ds, true, 0, 0, other.st_dev));
  /* The storage is the device file itself (appended). */
  CU_ASSERT_EQUAL (diff_storage_append (ds, fd, SZ, &err), 0);
  CU_ASSERT_TRUE (diff_storage_on_device (ds, false, dev.st_dev, dev.st_ino,
                                          0));
  diff_storage_put (ds);
  unlink (path);
  free (path);
}

/* A snapshot whose diff storage runs out. */

#define DEV_CHUNKS 16
#define DEV_SIZE (DEV_CHUNKS * SZ)

static void
fill_chunk (uint8_t *buf, unsigned idx, unsigned gen)
{
  unsigned i;

  for (i = 0; i < SZ; i += 8) {
    uint32_t w[2] = { (gen << 24) | idx, i };
    memcpy (buf + i, w, 8);
  }
}

static void
drain_events (void)
{
  struct nbdsnap_ctl_event ev[16];

  while (event_queue_pop (&event_queue, ev, ARRAY_SIZE (ev)) > 0)
    ;
}

/* Pop every event; count those of @code for snapshot @id, keep the
 * last of them in *last.
 */
static unsigned
events_of (const uint8_t id[16], uint32_t code,
           struct nbdsnap_ctl_event *last, struct nbdsnap_ctl_event *all,
           size_t *nall)
{
  unsigned n = 0;
  size_t i;

  for (i = 0; i < *nall; i++)
    if (all[i].code == code && memcmp (all[i].id, id, 16) == 0) {
      n++;
      *last = all[i];
    }
  return n;
}

struct snap_fixture {
  char *path;
  int fd;
  struct tracker *t;
  struct snapshot *s;
};

static void
snap_setup (struct snap_fixture *f, int storage_fd, uint64_t limit)
{
  uint8_t buf[SZ];
  uint64_t pause;
  unsigned i;
  int err = 0;

  memset (f, 0, sizeof *f);
  f->fd = unit_temp_file (DEV_SIZE, &f->path);
  CU_ASSERT_FATAL (f->fd >= 0);
  for (i = 0; i < DEV_CHUNKS; i++) {
    fill_chunk (buf, i, 0);
    CU_ASSERT_FATAL (pwrite (f->fd, buf, SZ, (uint64_t) i * SZ) == SZ);
  }
  f->t = tracker_open ("ds-dev", f->path, &engine_params.cbt, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL (f->t);
  engine_params.chunk_size = SZ;
  engine_params.storage_portion = SZ;
  drain_events ();

  pthread_mutex_lock (&control_lock);
  f->s = snapshot_create (storage_fd, limit, &err);
  if (f->s) {
    CU_ASSERT_EQUAL (snapshot_add_device (f->s, f->t, &err), 0);
    CU_ASSERT_EQUAL (snapshot_take (f->s, &pause, &err), 0);
  }
  pthread_mutex_unlock (&control_lock);
  CU_ASSERT_PTR_NOT_NULL_FATAL (f->s);
  CU_ASSERT_EQUAL_FATAL (snapshot_state (f->s), SNAPSHOT_TAKEN);
}

static void
snap_teardown (struct snap_fixture *f)
{
  struct nbdsnap_ctl_event ev[EVENT_QUEUE_SIZE], last;
  size_t n;
  uint8_t id[16];
  int err;

  memcpy (id, f->s->id, 16);
  drain_events ();
  pthread_mutex_lock (&control_lock);
  CU_ASSERT_EQUAL (snapshot_destroy (f->s, &err), 0);
  pthread_mutex_unlock (&control_lock);
  n = event_queue_pop (&event_queue, ev, ARRAY_SIZE (ev));
  CU_ASSERT_EQUAL (events_of (id, NBDSNAP_CTL_EVENT_DESTROYED, &last, ev,
                              &n), 1);
  tracker_put (f->t);
  close (f->fd);
  unlink (f->path);
  free (f->path);
}

/* Write every chunk of the original with generation @gen; all writes
 * must succeed.  Returns failures.
 */
static unsigned
write_all (struct snap_fixture *f, unsigned gen)
{
  uint8_t buf[SZ];
  unsigned i, bad = 0;
  int err;

  for (i = 0; i < DEV_CHUNKS; i++) {
    fill_chunk (buf, i, gen);
    /* In two halves: the first copies the chunk (or fails to), the
     * second finds it final; the second with FUA on odd chunks.
     */
    if (tracker_pwrite (f->t, buf, SZ / 2, (uint64_t) i * SZ, false,
                        &err) == -1 ||
        tracker_pwrite (f->t, buf + SZ / 2, SZ / 2,
                        (uint64_t) i * SZ + SZ / 2, i & 1, &err) == -1) {
      fprintf (stderr, "  write chunk %u: %s\n", i, strerror (err));
      bad++;
    }
  }
  return bad;
}

/* The original holds generation @gen everywhere.  Returns bad chunks. */
static unsigned
check_original (struct snap_fixture *f, unsigned gen)
{
  uint8_t buf[SZ], exp[SZ];
  unsigned i, bad = 0;
  int err;

  for (i = 0; i < DEV_CHUNKS; i++) {
    fill_chunk (exp, i, gen);
    if (tracker_pread (f->t, buf, SZ, (uint64_t) i * SZ, &err) == -1 ||
        memcmp (buf, exp, SZ) != 0)
      bad++;
    if (pread (f->fd, buf, SZ, (uint64_t) i * SZ) != SZ ||
        memcmp (buf, exp, SZ) != 0)
      bad++;
  }
  return bad;
}

static void
test_enospc_corrupts (void)
{
  struct snap_fixture f;
  struct nbdsnap_ctl_event ev[EVENT_QUEUE_SIZE], last;
  struct diff_area *da;
  struct image *img;
  uint8_t buf[SZ], exp[SZ];
  unsigned errors, i;
  size_t n;
  int err = 0, fd;

  snap_setup (&f, new_tmpfile (), 3 * SZ);
  da = snapshot_area_of (f.s, f.t);
  CU_ASSERT_PTR_NOT_NULL_FATAL (da);
  pthread_mutex_lock (&control_lock);
  img = image_open (f.s, f.t, &err);
  pthread_mutex_unlock (&control_lock);
  CU_ASSERT_PTR_NOT_NULL_FATAL (img);

  /* Before it fills up, the image reads the point in time. */
  CU_ASSERT_EQUAL (image_pread (img, buf, SZ, 5 * SZ, &err), 0);
  fill_chunk (exp, 5, 0);
  CU_ASSERT_EQUAL (memcmp (buf, exp, SZ), 0);

  /* Overwrite the whole device: room for three chunks only.  Every
   * write succeeds.
   */
  errors = unit_error_count ();
  CU_ASSERT_EQUAL (write_all (&f, 1), 0);
  CU_ASSERT_EQUAL (check_original (&f, 1), 0);

  /* The snapshot is corrupted with ENOSPC, logged once. */
  CU_ASSERT_TRUE (snapshot_failed (f.s));
  CU_ASSERT_EQUAL (f.s->error, ENOSPC);
  CU_ASSERT_EQUAL (snapshot_ctl_state (f.s), NBDSNAP_CTL_STATE_CORRUPTED);
  CU_ASSERT_EQUAL (unit_error_count (), errors + 1);

  /* Three chunks stored, the fourth failed; copying stopped there. */
  for (i = 0; i < DEV_CHUNKS; i++) {
    uint32_t want = i < 3 ? CHUNK_STORED : i == 3 ? CHUNK_FAILED : CHUNK_NEW;
    CU_ASSERT_EQUAL (chunk_state (diff_area_lookup (da, i)), want);
  }
  CU_ASSERT_EQUAL (da->chunks_copied, 3);

  /* Events: low space on the way, then corrupted with the device. */
  n = event_queue_pop (&event_queue, ev, ARRAY_SIZE (ev));
  CU_ASSERT_EQUAL (events_of (f.s->id, NBDSNAP_CTL_EVENT_LOW_SPACE, &last,
                              ev, &n), 1);
  CU_ASSERT_EQUAL (last.limit, 3 * SZ);
  CU_ASSERT_EQUAL (events_of (f.s->id, NBDSNAP_CTL_EVENT_CORRUPTED, &last,
                              ev, &n), 1);
  CU_ASSERT_EQUAL (last.error, ENOSPC);
  CU_ASSERT_STRING_EQUAL (last.device, "ds-dev");
  CU_ASSERT_EQUAL (last.used, 3 * SZ);
  CU_ASSERT_EQUAL (last.limit, 3 * SZ);
  CU_ASSERT (last.time_ns > 0);

  /* Image I/O fails with EIO from now on, stored chunks included. */
  err = 0;
  CU_ASSERT_EQUAL (image_pread (img, buf, SZ, 0, &err), -1);
  CU_ASSERT_EQUAL (err, EIO);
  err = 0;
  CU_ASSERT_EQUAL (image_pread (img, buf, SZ, 10 * SZ, &err), -1);
  CU_ASSERT_EQUAL (err, EIO);
  err = 0;
  CU_ASSERT_EQUAL (image_pwrite (img, buf, SZ, 10 * SZ, false, &err), -1);
  CU_ASSERT_EQUAL (err, EIO);
  err = 0;
  CU_ASSERT_EQUAL (image_zero (img, SZ, 0, false, &err), -1);
  CU_ASSERT_EQUAL (err, EIO);
  err = 0;
  CU_ASSERT_EQUAL (image_flush (img, &err), -1);
  CU_ASSERT_EQUAL (err, EIO);
  /* Below the image object too: the original can no longer be trusted
   * for NEW chunks, a FAILED chunk is EIO.
   */
  err = 0;
  CU_ASSERT_EQUAL (diff_area_image_read (da, buf, SZ, 10 * SZ, &err), -1);
  CU_ASSERT_EQUAL (err, EIO);
  err = 0;
  CU_ASSERT_EQUAL (diff_area_image_read (da, buf, 1, 3 * SZ + 7, &err), -1);
  CU_ASSERT_EQUAL (err, EIO);

  /* The original keeps working, with no more copying or logging. */
  CU_ASSERT_EQUAL (write_all (&f, 2), 0);
  CU_ASSERT_EQUAL (check_original (&f, 2), 0);
  CU_ASSERT_EQUAL (unit_error_count (), errors + 1);
  CU_ASSERT_EQUAL (f.s->error, ENOSPC);
  CU_ASSERT_EQUAL (da->chunks_copied, 3);
  n = event_queue_pop (&event_queue, ev, ARRAY_SIZE (ev));
  CU_ASSERT_EQUAL (events_of (f.s->id, NBDSNAP_CTL_EVENT_CORRUPTED, &last,
                              ev, &n), 0);

  /* No more storage can be appended to a corrupted snapshot. */
  fd = new_tmpfile ();
  err = 0;
  pthread_mutex_lock (&control_lock);
  CU_ASSERT_EQUAL (snapshot_append_storage (f.s, fd, SZ, &err), -1);
  pthread_mutex_unlock (&control_lock);
  CU_ASSERT_EQUAL (err, EALREADY);
  CU_ASSERT_FALSE (unit_fd_is_closed (fd));
  close (fd);

  pthread_mutex_lock (&control_lock);
  image_close (img);
  pthread_mutex_unlock (&control_lock);
  snap_teardown (&f);
}

/* Appending storage before it runs out keeps the snapshot healthy. */
static void
test_append_in_time (void)
{
  struct snap_fixture f;
  struct nbdsnap_ctl_event ev[EVENT_QUEUE_SIZE], last;
  struct diff_area *da;
  uint8_t buf[SZ], exp[SZ];
  size_t n;
  unsigned i;
  int err = 0;

  snap_setup (&f, new_tmpfile (), 3 * SZ);
  da = snapshot_area_of (f.s, f.t);
  CU_ASSERT_PTR_NOT_NULL_FATAL (da);
  pthread_mutex_lock (&control_lock);
  CU_ASSERT_EQUAL (snapshot_append_storage (f.s, new_tmpfile (), 13 * SZ,
                                            &err), 0);
  pthread_mutex_unlock (&control_lock);
  n = event_queue_pop (&event_queue, ev, ARRAY_SIZE (ev));
  CU_ASSERT_EQUAL (events_of (f.s->id, NBDSNAP_CTL_EVENT_STORAGE_EXTENDED,
                              &last, ev, &n), 1);
  CU_ASSERT_EQUAL (last.limit, 16 * SZ);

  CU_ASSERT_EQUAL (write_all (&f, 1), 0);
  CU_ASSERT_FALSE (snapshot_failed (f.s));
  CU_ASSERT_EQUAL (da->chunks_copied, DEV_CHUNKS);
  for (i = 0; i < DEV_CHUNKS; i++) {
    struct chunk *c = diff_area_lookup (da, i);
    CU_ASSERT_EQUAL (chunk_state (c), CHUNK_STORED);
    if (c) {
      CU_ASSERT_EQUAL (c->file, i < 3 ? 0 : 1);
      CU_ASSERT_EQUAL (c->offset, (uint64_t) (i < 3 ? i : i - 3) * SZ);
    }
    CU_ASSERT_EQUAL (diff_area_image_read (da, buf, SZ, (uint64_t) i * SZ,
                                           &err), 0);
    fill_chunk (exp, i, 0);
    CU_ASSERT_EQUAL (memcmp (buf, exp, SZ), 0);
  }
  CU_ASSERT_EQUAL (check_original (&f, 1), 0);
  snap_teardown (&f);
}

/* A diff storage I/O error (here: the file made immutable, so that
 * fallocate and write fail with EPERM) corrupts the snapshot with that
 * error; the original is unaffected.
 */
static void
test_io_error_corrupts (void)
{
  struct snap_fixture f;
  int sfd = new_tmpfile (), mine = dup (sfd), flags = 0, r;
  unsigned i;

  CU_ASSERT_FATAL (mine >= 0);
  snap_setup (&f, sfd, 8 * SZ);
  r = ioctl (mine, FS_IOC_GETFLAGS, &flags);
  if (r == 0) {
    flags |= FS_IMMUTABLE_FL;
    r = ioctl (mine, FS_IOC_SETFLAGS, &flags);
  }
  if (r == -1) {
    /* Not root, or a file system without the flag: nothing to test. */
    fprintf (stderr, "  immutable flag not available (%s): skipped\n",
             strerror (errno));
    CU_ASSERT (errno == EPERM || errno == ENOTTY || errno == EOPNOTSUPP ||
               errno == EINVAL);
  }
  else {
    CU_ASSERT_EQUAL (write_all (&f, 1), 0);
    CU_ASSERT_EQUAL (check_original (&f, 1), 0);
    CU_ASSERT_TRUE (snapshot_failed (f.s));
    CU_ASSERT_EQUAL (f.s->error, EPERM);
    for (i = 0; i < DEV_CHUNKS; i++)
      CU_ASSERT_EQUAL (chunk_state (diff_area_lookup (f.t->diff_area, i)),
                       i == 0 ? CHUNK_FAILED : CHUNK_NEW);
    flags &= ~FS_IMMUTABLE_FL;
    CU_ASSERT_EQUAL (ioctl (mine, FS_IOC_SETFLAGS, &flags), 0);
  }
  close (mine);
  snap_teardown (&f);
}

static int
suite_fini (void)
{
  diff_storage_grower_stop ();
  drain_events ();
  return registry_snapshot_count () != 0;
}

static CU_TestInfo tests[] = {
  { "descriptor checks", test_check_fd },
  { "create: descriptor ownership", test_create_ownership },
  { "allocation order across appended files", test_alloc_order },
  { "append: bad descriptors, too many files", test_append_limits },
  { "limit -> ENOSPC", test_limit },
  { "growth by fallocate, no grower thread", test_growth_sync },
  { "growth by fallocate, grower thread", test_growth_background },
  { "low-space notification", test_low_space },
  { "storage on a device", test_on_device },
  { "ENOSPC -> corrupted, the original unaffected", test_enospc_corrupts },
  { "append before running out", test_append_in_time },
  { "I/O error -> corrupted, the original unaffected",
    test_io_error_corrupts },
  CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
  { "diff_storage", NULL, suite_fini, NULL, NULL, tests },
  CU_SUITE_INFO_NULL,
};

int
main (void)
{
  return unit_run ("test-diff-storage", suites);
}
