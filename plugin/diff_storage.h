/* nbdsnap - diff storage: where copied chunks are kept. */

#ifndef NBDSNAP_DIFF_STORAGE_H
#define NBDSNAP_DIFF_STORAGE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <nbdsnap/ctl.h>

/**
 * struct diff_storage_file - one file or block device of a diff storage.
 * @fd: open read-write; owned (closed with the storage).
 * @is_blockdev: a block device: no fallocate, capacity is its size.
 * @st_dev: st_dev of @fd.
 * @st_ino: st_ino of @fd.
 * @st_rdev: st_rdev of @fd (block devices).
 * @limit: bytes of it the snapshot may use.
 * @used: bytes handed out (from offset 0 up).
 * @allocated: bytes reserved with fallocate (always @limit for block
 *   devices and where fallocate does not work).
 * @tight: its file system had no room for a whole portion: from then on
 *   only what each allocation needs is reserved, and the grower leaves
 *   it alone.
 */
struct diff_storage_file {
  int fd;
  bool is_blockdev;
  dev_t st_dev;
  ino_t st_ino;
  dev_t st_rdev;
  uint64_t limit;
  uint64_t used;
  uint64_t allocated;
  bool tight;
};

/**
 * typedef diff_storage_notify_fn - called when storage runs low.
 * @opaque: as given to diff_storage_create.
 * @used: bytes in use.
 * @limit: byte limit.
 */
typedef void diff_storage_notify_fn (void *opaque, uint64_t used,
                                     uint64_t limit);

/**
 * struct diff_storage - a snapshot's diff storage.
 * @lock: guards allocation: @cur, the files' @used and @allocated, the
 *   totals, @low_sent and appending (@count grows under it).
 * @files: the storage files, in order of use.
 * @count: entries of @files in use (atomic: readers index @files
 *   without the lock; an entry is complete before @count covers it).
 * @cur: the file allocation continues in.
 * @limit: sum of the files' limits.
 * @used: sum of the files' @used.
 * @allocated: sum of the files' @allocated.
 * @portion: bytes reserved ahead by each fallocate.
 * @low_water: a low-space notification is sent when less than this is
 *   left.
 * @low_sent: the notification was sent and not re-armed by an append.
 * @grow_queued: the storage is on the grower's queue.
 * @notify: low-space callback (called without @lock held).
 * @opaque: its argument.
 * @refcount: the snapshot's reference, and the grower's while queued.
 *
 * Allocation hands out chunk-sized slots from offset 0 of the current
 * file up, moving to the next file when one is full; slots are never
 * freed (the whole storage goes with its snapshot).  Regular files are
 * reserved with fallocate a @portion ahead of use by the background
 * grower thread, so that a copy-on-write rarely waits for the
 * filesystem; if the grower falls behind, the allocating thread
 * reserves what it needs itself.  When nothing is left,
 * diff_storage_alloc fails with ENOSPC and the caller corrupts the
 * snapshot.
 */
struct diff_storage {
  pthread_mutex_t lock;
  struct diff_storage_file files[NBDSNAP_MAX_STORAGES];
  unsigned count;
  unsigned cur;
  uint64_t limit;
  uint64_t used;
  uint64_t allocated;
  uint64_t portion;
  uint64_t low_water;
  bool low_sent;
  bool grow_queued;
  diff_storage_notify_fn *notify;
  void *opaque;
  unsigned refcount;
};

#define DIFF_STORAGE_PORTION_DEFAULT (64 * 1024 * 1024)
#define DIFF_STORAGE_LOW_WATER_DEFAULT (128 * 1024 * 1024)

/* Check that @fd can be diff storage: a regular file or block device
 * opened read-write.  Fills *f (limit capped for block devices).
 * Returns 0 or -1 with *err = EBADF or EINVAL.
 */
int diff_storage_check_fd (int fd, uint64_t limit,
                           struct diff_storage_file *f, int *err);

/* A storage of one file.  Takes ownership of @fd on success only. */
struct diff_storage *diff_storage_create (int fd, uint64_t limit,
                                          uint64_t portion,
                                          uint64_t low_water,
                                          diff_storage_notify_fn *notify,
                                          void *opaque, int *err);
void diff_storage_get (struct diff_storage *ds);
void diff_storage_put (struct diff_storage *ds);

/* Add a file.  Takes ownership of @fd on success only.  E2BIG when
 * NBDSNAP_MAX_STORAGES files are in use.
 */
int diff_storage_append (struct diff_storage *ds, int fd, uint64_t limit,
                         int *err);

/* A slot of @size bytes: fills *file and *offset.  -1 with *err =
 * ENOSPC (limit reached or the filesystem is full) on failure.
 */
int diff_storage_alloc (struct diff_storage *ds, uint32_t size,
                        uint32_t *file, uint64_t *offset, int *err);

int diff_storage_pread (struct diff_storage *ds, uint32_t file, void *buf,
                        size_t count, uint64_t offset, int *err);
int diff_storage_pwrite (struct diff_storage *ds, uint32_t file,
                         const void *buf, size_t count, uint64_t offset,
                         int *err);
int diff_storage_flush (struct diff_storage *ds, int *err);

/* Totals, read together. */
void diff_storage_usage (struct diff_storage *ds, uint64_t *used,
                         uint64_t *limit, uint64_t *allocated,
                         unsigned *count);

/* True if @fd's file lies on, or is, the device described by the
 * tracker fields given (so that storage and device would alias).
 */
bool diff_storage_on_device (struct diff_storage *ds, bool dev_is_blockdev,
                             dev_t dev_st_dev, ino_t dev_st_ino,
                             dev_t dev_st_rdev);
bool diff_storage_file_on_device (const struct diff_storage_file *f,
                                  bool dev_is_blockdev, dev_t dev_st_dev,
                                  ino_t dev_st_ino, dev_t dev_st_rdev);

/* The background grower thread.  Without it, allocation reserves
 * synchronously.
 */
int diff_storage_grower_start (int *err);
void diff_storage_grower_stop (void);

#endif /* NBDSNAP_DIFF_STORAGE_H */
