/* nbdsnap - diff storage: where copied chunks are kept.
 *
 * See struct diff_storage in diff_storage.h.  Slots are handed out
 * under the storage lock: allocation happens once per copied chunk
 * (after a read of the chunk from the original), never on the plain
 * read or write path, so this lock is not per request.
 *
 * The grower thread: allocation queues the storage when less than half
 * a portion is reserved ahead of use; the grower takes storages off its
 * queue one at a time and fallocates the next portion of the current
 * file outside the storage lock (reserving twice is harmless, so it
 * does not matter if an allocating thread reserved the same range
 * meanwhile).
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/fs.h>

#include "common.h"
#include "diff_storage.h"

int
diff_storage_check_fd (int fd, uint64_t limit, struct diff_storage_file *f,
                       int *err)
{
  struct stat st;
  int fl;

  memset (f, 0, sizeof *f);
  f->fd = -1;
  if (fd < 0 || fstat (fd, &st) == -1) {
    *err = EBADF;
    return -1;
  }
  fl = fcntl (fd, F_GETFL);
  if (fl == -1 || (fl & O_ACCMODE) != O_RDWR) {
    *err = EBADF;
    return -1;
  }
  if (S_ISBLK (st.st_mode)) {
    uint64_t size;
    if (ioctl (fd, BLKGETSIZE64, &size) == -1) {
      *err = EBADF;
      return -1;
    }
    f->is_blockdev = true;
    if (limit > size)
      limit = size;
  }
  else if (!S_ISREG (st.st_mode)) {
    *err = EBADF;
    return -1;
  }
  if (limit == 0) {
    *err = EINVAL;
    return -1;
  }
  f->fd = fd;
  f->st_dev = st.st_dev;
  f->st_ino = st.st_ino;
  f->st_rdev = st.st_rdev;
  f->limit = limit;
  f->used = 0;
  f->allocated = f->is_blockdev ? limit : 0;
  return 0;
}

struct diff_storage *
diff_storage_create (int fd, uint64_t limit, uint64_t portion,
                     uint64_t low_water, diff_storage_notify_fn *notify,
                     void *opaque, int *err)
{
  struct diff_storage *ds;

  ds = calloc (1, sizeof *ds);
  if (ds == NULL) {
    *err = errno;
    return NULL;
  }
  if (diff_storage_check_fd (fd, limit, &ds->files[0], err) == -1) {
    free (ds);
    return NULL;
  }
  pthread_mutex_init (&ds->lock, NULL);
  ds->count = 1;
  ds->limit = ds->files[0].limit;
  ds->allocated = ds->files[0].allocated;
  ds->portion = portion ? portion : DIFF_STORAGE_PORTION_DEFAULT;
  ds->low_water = low_water;
  ds->notify = notify;
  ds->opaque = opaque;
  ds->refcount = 1;
  return ds;
}

void
diff_storage_get (struct diff_storage *ds)
{
  __atomic_add_fetch (&ds->refcount, 1, __ATOMIC_RELAXED);
}

void
diff_storage_put (struct diff_storage *ds)
{
  unsigned i;

  if (ds == NULL || __atomic_sub_fetch (&ds->refcount, 1, __ATOMIC_ACQ_REL) > 0)
    return;
  for (i = 0; i < ds->count; i++)
    close (ds->files[i].fd);
  pthread_mutex_destroy (&ds->lock);
  free (ds);
}

/* Less than the low-water mark left?  Call with the lock held; returns
 * true if the caller must notify (after unlocking).
 */
static bool
check_low (struct diff_storage *ds)
{
  uint64_t low = MIN (ds->low_water, ds->limit / 4);

  if (ds->low_sent || ds->limit - ds->used >= low)
    return false;
  ds->low_sent = true;
  return true;
}

int
diff_storage_append (struct diff_storage *ds, int fd, uint64_t limit,
                     int *err)
{
  struct diff_storage_file f;

  if (diff_storage_check_fd (fd, limit, &f, err) == -1)
    return -1;

  SCOPED_LOCK (&ds->lock);
  if (ds->count >= NBDSNAP_MAX_STORAGES) {
    *err = E2BIG;
    return -1;
  }
  ds->files[ds->count] = f;
  __atomic_store_n (&ds->count, ds->count + 1, __ATOMIC_RELEASE);
  ds->limit += f.limit;
  ds->allocated += f.allocated;
  /* Re-arm the low-space notification if there is room again. */
  if (ds->limit - ds->used >= MIN (ds->low_water, ds->limit / 4))
    ds->low_sent = false;
  return 0;
}

/* Reserve [f->allocated, f->allocated + want) of a regular file, or
 * at least @need bytes of it when its file system has no room for
 * @want (the file is then "tight").  Call with the lock held.  A file
 * system that cannot fallocate is treated as fully reserved (writes
 * will allocate).
 */
static int
reserve_locked (struct diff_storage *ds, struct diff_storage_file *f,
                uint64_t need, uint64_t want, int *err)
{
  uint64_t len = MIN (f->tight ? need : want, f->limit - f->allocated);

  if (len == 0)
    return 0;
  if (fallocate (f->fd, 0, f->allocated, len) == -1) {
    if (errno == EOPNOTSUPP || errno == ENOSYS) {
      ds->allocated += f->limit - f->allocated;
      f->allocated = f->limit;
      return 0;
    }
    if (errno != ENOSPC || need >= len) {
      *err = errno;
      return -1;
    }
    /* No room for a portion: use what the file system still has. */
    f->tight = true;
    len = need;
    if (fallocate (f->fd, 0, f->allocated, len) == -1) {
      *err = errno;
      return -1;
    }
  }
  f->allocated += len;
  ds->allocated += len;
  return 0;
}

static void grower_queue (struct diff_storage *ds);

int
diff_storage_alloc (struct diff_storage *ds, uint32_t size, uint32_t *file,
                    uint64_t *offset, int *err)
{
  struct diff_storage_file *f = NULL;
  bool notify, grow;
  uint64_t used, limit;

  pthread_mutex_lock (&ds->lock);
  while (ds->cur < ds->count) {
    f = &ds->files[ds->cur];
    if (f->limit - f->used >= size)
      break;
    ds->cur++;
    f = NULL;
  }
  if (f == NULL) {
    pthread_mutex_unlock (&ds->lock);
    *err = ENOSPC;
    return -1;
  }
  if (f->used + size > f->allocated &&
      reserve_locked (ds, f, f->used + size - f->allocated,
                      MAX ((uint64_t) size, ds->portion), err) == -1) {
    pthread_mutex_unlock (&ds->lock);
    return -1;
  }
  *file = ds->cur;
  *offset = f->used;
  f->used += size;
  ds->used += size;
  grow = f->allocated < f->limit && !f->tight &&
    f->allocated - f->used < ds->portion / 2 && !ds->grow_queued;
  if (grow)
    ds->grow_queued = true;
  notify = check_low (ds);
  used = ds->used;
  limit = ds->limit;
  pthread_mutex_unlock (&ds->lock);

  if (grow)
    grower_queue (ds);
  if (notify && ds->notify)
    ds->notify (ds->opaque, used, limit);
  return 0;
}

int
diff_storage_pread (struct diff_storage *ds, uint32_t file, void *buf,
                    size_t count, uint64_t offset, int *err)
{
  if (file >= __atomic_load_n (&ds->count, __ATOMIC_ACQUIRE)) {
    *err = EIO;
    return -1;
  }
  if (full_pread (ds->files[file].fd, buf, count, offset) == -1) {
    *err = errno;
    return -1;
  }
  return 0;
}

int
diff_storage_pwrite (struct diff_storage *ds, uint32_t file,
                     const void *buf, size_t count, uint64_t offset,
                     int *err)
{
  if (file >= __atomic_load_n (&ds->count, __ATOMIC_ACQUIRE)) {
    *err = EIO;
    return -1;
  }
  if (full_pwrite (ds->files[file].fd, buf, count, offset) == -1) {
    *err = errno;
    return -1;
  }
  return 0;
}

int
diff_storage_flush (struct diff_storage *ds, int *err)
{
  unsigned i, n = __atomic_load_n (&ds->count, __ATOMIC_ACQUIRE);

  for (i = 0; i < n; i++) {
    if (fdatasync (ds->files[i].fd) == -1) {
      *err = errno;
      return -1;
    }
  }
  return 0;
}

void
diff_storage_usage (struct diff_storage *ds, uint64_t *used,
                    uint64_t *limit, uint64_t *allocated, unsigned *count)
{
  SCOPED_LOCK (&ds->lock);
  *used = ds->used;
  *limit = ds->limit;
  *allocated = ds->allocated;
  *count = ds->count;
}

bool
diff_storage_file_on_device (const struct diff_storage_file *f,
                             bool dev_is_blockdev, dev_t dev_st_dev,
                             ino_t dev_st_ino, dev_t dev_st_rdev)
{
  if (dev_is_blockdev) {
    /* The same block device, or a file on a filesystem on it. */
    if (f->is_blockdev)
      return f->st_rdev == dev_st_rdev;
    return f->st_dev == dev_st_rdev;
  }
  /* A regular file device: only the very same file aliases it. */
  return !f->is_blockdev && f->st_dev == dev_st_dev &&
    f->st_ino == dev_st_ino;
}

bool
diff_storage_on_device (struct diff_storage *ds, bool dev_is_blockdev,
                        dev_t dev_st_dev, ino_t dev_st_ino,
                        dev_t dev_st_rdev)
{
  unsigned i;

  SCOPED_LOCK (&ds->lock);
  for (i = 0; i < ds->count; i++)
    if (diff_storage_file_on_device (&ds->files[i], dev_is_blockdev,
                                     dev_st_dev, dev_st_ino, dev_st_rdev))
      return true;
  return false;
}

/* The grower. */

#define GROWER_QUEUE_MAX (NBDSNAP_MAX_SNAPSHOTS + 1)

/* grower_lock guards the grower's queue and its running flag. */
static pthread_mutex_t grower_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t grower_cond = PTHREAD_COND_INITIALIZER;
static struct diff_storage *grower_q[GROWER_QUEUE_MAX];
static unsigned grower_n;
static bool grower_running, grower_stop;
static pthread_t grower_thread;

static void
grow_once (struct diff_storage *ds)
{
  struct diff_storage_file *f;
  uint64_t start, len;
  int fd;

  pthread_mutex_lock (&ds->lock);
  ds->grow_queued = false;
  if (ds->cur >= ds->count) {
    pthread_mutex_unlock (&ds->lock);
    return;
  }
  f = &ds->files[ds->cur];
  fd = f->fd;
  start = f->allocated;
  len = MIN (ds->portion, f->limit - f->allocated);
  pthread_mutex_unlock (&ds->lock);
  if (len == 0)
    return;

  if (fallocate (fd, 0, start, len) == -1)
    return;     /* allocation will reserve or fail synchronously */

  pthread_mutex_lock (&ds->lock);
  if (start + len > f->allocated) {
    ds->allocated += start + len - f->allocated;
    f->allocated = start + len;
  }
  pthread_mutex_unlock (&ds->lock);
}

static void *
grower_main (void *arg)
{
  pthread_mutex_lock (&grower_lock);
  for (;;) {
    struct diff_storage *ds;

    while (grower_n == 0 && !grower_stop)
      pthread_cond_wait (&grower_cond, &grower_lock);
    if (grower_stop)
      break;
    ds = grower_q[0];
    memmove (grower_q, grower_q + 1, --grower_n * sizeof grower_q[0]);
    pthread_mutex_unlock (&grower_lock);
    grow_once (ds);
    diff_storage_put (ds);
    pthread_mutex_lock (&grower_lock);
  }
  pthread_mutex_unlock (&grower_lock);
  return NULL;
}

static void
grower_queue (struct diff_storage *ds)
{
  pthread_mutex_lock (&grower_lock);
  if (grower_running && !grower_stop && grower_n < GROWER_QUEUE_MAX) {
    diff_storage_get (ds);
    grower_q[grower_n++] = ds;
    pthread_cond_signal (&grower_cond);
    pthread_mutex_unlock (&grower_lock);
    return;
  }
  pthread_mutex_unlock (&grower_lock);
  /* No grower: the next allocation that needs room reserves it. */
  pthread_mutex_lock (&ds->lock);
  ds->grow_queued = false;
  pthread_mutex_unlock (&ds->lock);
}

int
diff_storage_grower_start (int *err)
{
  int r;

  SCOPED_LOCK (&grower_lock);
  if (grower_running)
    return 0;
  grower_stop = false;
  r = pthread_create (&grower_thread, NULL, grower_main, NULL);
  if (r != 0) {
    *err = r;
    return -1;
  }
  grower_running = true;
  return 0;
}

void
diff_storage_grower_stop (void)
{
  unsigned i;

  pthread_mutex_lock (&grower_lock);
  if (!grower_running) {
    pthread_mutex_unlock (&grower_lock);
    return;
  }
  grower_stop = true;
  pthread_cond_signal (&grower_cond);
  pthread_mutex_unlock (&grower_lock);
  pthread_join (grower_thread, NULL);

  pthread_mutex_lock (&grower_lock);
  for (i = 0; i < grower_n; i++)
    diff_storage_put (grower_q[i]);
  grower_n = 0;
  grower_running = false;
  pthread_mutex_unlock (&grower_lock);
}
