/* nbdsnap - tracker: one original device.
 *
 * The original's I/O path.  Reads go straight to the file.  Writes,
 * zeroes and trims pass the tracker's quiesce gate (which take shuts
 * for its pause), mark the active CBT map, give the snapshot's diff
 * area the chance to copy the chunks about to change, then change the
 * file.  A failure of the copy never fails the write: diff_area_cow
 * marks the snapshot corrupted and returns, and the write goes ahead
 * (the original comes first).
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <linux/fs.h>
#include <linux/falloc.h>

#include "common.h"
#include "diff_area.h"
#include "tracker.h"

/* -D nbdsnap.write_delay_ms=N: hold each write to an original for N ms
 * between marking CBT and writing the data, so that tests can have a
 * write provably in flight (e.g. across a take).  0 (off) by default;
 * costs one load per write.
 */
__attribute__ ((visibility ("default"))) int nbdsnap_debug_write_delay_ms;

struct tracker *
tracker_open (const char *name, const char *path,
              const struct cbt_map_params *params, int *err)
{
  struct tracker *t;
  struct stat st;
  int flags = O_RDWR | O_CLOEXEC;

  if (!name_is_valid (name, strlen (name))) {
    *err = EINVAL;
    return NULL;
  }
  if (stat (path, &st) == -1) {
    *err = errno;
    return NULL;
  }
  if (S_ISBLK (st.st_mode))
    flags |= O_EXCL;
  else if (!S_ISREG (st.st_mode)) {
    *err = EINVAL;              /* not a regular file or block device */
    return NULL;
  }

  t = calloc (1, sizeof *t);
  if (t == NULL) {
    *err = errno;
    return NULL;
  }
  strcpy (t->name, name);
  t->path = strdup (path);
  if (t->path == NULL) {
    *err = errno;
    goto fail_free;
  }
  t->fd = open (path, flags);
  if (t->fd == -1) {
    *err = errno;
    goto fail_path;
  }
  if (fstat (t->fd, &st) == -1) {
    *err = errno;
    goto fail_close;
  }
  t->st_dev = st.st_dev;
  t->st_ino = st.st_ino;
  t->st_rdev = st.st_rdev;
  if (S_ISBLK (st.st_mode)) {
    int lbs = 512;
    unsigned int pbs = 4096;

    t->is_blockdev = true;
    if (ioctl (t->fd, BLKGETSIZE64, &t->size) == -1) {
      *err = errno;
      goto fail_close;
    }
    if (ioctl (t->fd, BLKSSZGET, &lbs) == -1)
      lbs = 512;
    if (ioctl (t->fd, BLKPBSZGET, &pbs) == -1)
      pbs = 4096;
    t->logical_block_size = lbs;
    t->physical_block_size = pbs;
  }
  else if (S_ISREG (st.st_mode)) {
    t->size = st.st_size;
    t->logical_block_size = 1;
    t->physical_block_size = st.st_blksize > 0 ? st.st_blksize : 4096;
  }
  else {
    *err = EINVAL;
    goto fail_close;
  }

  t->cbt = cbt_map_create (t->size, params, err);
  if (t->cbt == NULL)
    goto fail_close;
  quiesce_init (&t->writes);
  t->refcount = 1;
  return t;

 fail_close:
  close (t->fd);
 fail_path:
  free (t->path);
 fail_free:
  free (t);
  return NULL;
}

void
tracker_get (struct tracker *t)
{
  __atomic_add_fetch (&t->refcount, 1, __ATOMIC_RELAXED);
}

void
tracker_put (struct tracker *t)
{
  if (t == NULL || __atomic_sub_fetch (&t->refcount, 1, __ATOMIC_ACQ_REL) > 0)
    return;
  quiesce_destroy (&t->writes);
  cbt_map_destroy (t->cbt);
  close (t->fd);
  free (t->path);
  free (t);
}

int
tracker_pread (struct tracker *t, void *buf, uint32_t count,
               uint64_t offset, int *err)
{
  if (full_pread (t->fd, buf, count, offset) == -1) {
    *err = errno;
    return -1;
  }
  return 0;
}

/* Before the data of [offset, offset+count) changes: mark CBT, copy the
 * chunks for the snapshot if one is taken.  Called inside the gate.
 */
static void
before_change (struct tracker *t, uint64_t offset, uint64_t count)
{
  struct diff_area *da;

  cbt_map_mark (t->cbt, offset, count);
  da = __atomic_load_n (&t->diff_area, __ATOMIC_ACQUIRE);
  if (da)
    diff_area_cow (da, offset, count);
}

static int
sync_data (struct tracker *t, int *err)
{
  if (fdatasync (t->fd) == -1) {
    *err = errno;
    return -1;
  }
  return 0;
}

int
tracker_pwrite (struct tracker *t, const void *buf, uint32_t count,
                uint64_t offset, bool fua, int *err)
{
  int r = 0;

  quiesce_enter (&t->writes);
  before_change (t, offset, count);
  if (nbdsnap_debug_write_delay_ms > 0) {
    struct timespec ts = {
      .tv_sec = nbdsnap_debug_write_delay_ms / 1000,
      .tv_nsec = (nbdsnap_debug_write_delay_ms % 1000) * 1000000L,
    };
    nanosleep (&ts, NULL);
  }
#ifdef HAVE_PWRITEV2
  if (fua) {
    const char *p = buf;
    while (count > 0) {
      struct iovec iov = { .iov_base = (void *) p, .iov_len = count };
      ssize_t n = pwritev2 (t->fd, &iov, 1, offset, RWF_DSYNC);
      if (n == -1) {
        if (errno == EINTR)
          continue;
        *err = errno;
        r = -1;
        break;
      }
      p += n;
      count -= n;
      offset += n;
    }
    quiesce_leave (&t->writes);
    return r;
  }
#endif
  if (full_pwrite (t->fd, buf, count, offset) == -1) {
    *err = errno;
    r = -1;
  }
  else if (fua)
    r = sync_data (t, err);
  quiesce_leave (&t->writes);
  return r;
}

/* Write zeroes the slow way, in bounded pieces. */
static int
write_zeroes (struct tracker *t, uint32_t count, uint64_t offset, int *err)
{
  static const char zeroes[65536];

  while (count > 0) {
    uint32_t n = MIN (count, (uint32_t) sizeof zeroes);
    if (full_pwrite (t->fd, zeroes, n, offset) == -1) {
      *err = errno;
      return -1;
    }
    count -= n;
    offset += n;
  }
  return 0;
}

static bool
unsupported (int e)
{
  return e == EOPNOTSUPP || e == ENOSYS || e == EINVAL || e == ENODEV;
}

int
tracker_zero (struct tracker *t, uint32_t count, uint64_t offset,
              bool may_trim, bool fast, bool fua, int *err)
{
  int r = -1;

  quiesce_enter (&t->writes);
  before_change (t, offset, count);

  /* A hole reads as zeroes in a regular file, so punching is zeroing
   * when the client allows trimming.
   */
  if (may_trim && !t->is_blockdev &&
      !__atomic_load_n (&t->no_punch, __ATOMIC_RELAXED)) {
    if (fallocate (t->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                   offset, count) == 0) {
      r = 0;
      goto out;
    }
    if (!unsupported (errno)) {
      *err = errno;
      goto out;
    }
    __atomic_store_n (&t->no_punch, 1, __ATOMIC_RELAXED);
  }
  if (!__atomic_load_n (&t->no_zero_range, __ATOMIC_RELAXED)) {
    if (fallocate (t->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                   offset, count) == 0) {
      r = 0;
      goto out;
    }
    if (!unsupported (errno)) {
      *err = errno;
      goto out;
    }
    __atomic_store_n (&t->no_zero_range, 1, __ATOMIC_RELAXED);
  }
  if (t->is_blockdev) {
    uint64_t range[2] = { offset, count };
    if (ioctl (t->fd, BLKZEROOUT, range) == 0) {
      r = 0;
      goto out;
    }
  }
  if (fast) {
    *err = ENOTSUP;
    goto out;
  }
  r = write_zeroes (t, count, offset, err);

 out:
  if (r == 0 && fua)
    r = sync_data (t, err);
  quiesce_leave (&t->writes);
  return r;
}

int
tracker_trim (struct tracker *t, uint32_t count, uint64_t offset,
              bool fua, int *err)
{
  int r = 0;

  quiesce_enter (&t->writes);
  before_change (t, offset, count);
  if (t->is_blockdev) {
    uint64_t range[2] = { offset, count };
    /* Discard is advisory: a device that cannot discard keeps its data. */
    if (ioctl (t->fd, BLKDISCARD, range) == -1 && !unsupported (errno)) {
      *err = errno;
      r = -1;
    }
  }
  else if (!__atomic_load_n (&t->no_punch, __ATOMIC_RELAXED)) {
    if (fallocate (t->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                   offset, count) == -1) {
      if (unsupported (errno))
        __atomic_store_n (&t->no_punch, 1, __ATOMIC_RELAXED);
      else {
        *err = errno;
        r = -1;
      }
    }
  }
  if (r == 0 && fua)
    r = sync_data (t, err);
  quiesce_leave (&t->writes);
  return r;
}

int
tracker_flush (struct tracker *t, int *err)
{
  return sync_data (t, err);
}

bool
tracker_can_fast_zero (struct tracker *t)
{
  return !__atomic_load_n (&t->no_zero_range, __ATOMIC_RELAXED) ||
    (!t->is_blockdev && !__atomic_load_n (&t->no_punch, __ATOMIC_RELAXED));
}

int
tracker_extent (struct tracker *t, uint64_t offset, uint64_t count,
                bool *data, uint64_t *len, int *err)
{
  off_t pos;

  if (t->is_blockdev) {
    *data = true;
    *len = count;
    return 0;
  }
  pos = lseek (t->fd, offset, SEEK_DATA);
  if (pos == -1) {
    if (errno == ENXIO) {       /* only a hole up to the end */
      *data = false;
      *len = count;
      return 0;
    }
    if (errno == EINVAL || errno == EOPNOTSUPP) { /* no SEEK_DATA here */
      *data = true;
      *len = count;
      return 0;
    }
    *err = errno;
    return -1;
  }
  if ((uint64_t) pos > offset) {
    *data = false;
    *len = MIN ((uint64_t) pos - offset, count);
    return 0;
  }
  pos = lseek (t->fd, offset, SEEK_HOLE);
  if (pos == -1) {
    *err = errno;
    return -1;
  }
  *data = true;
  *len = MIN ((uint64_t) pos - offset, count);
  return 0;
}
