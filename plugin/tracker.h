/* nbdsnap - tracker: one original device. */

#ifndef NBDSNAP_TRACKER_H
#define NBDSNAP_TRACKER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cbt_map.h"
#include "common.h"
#include "quiesce.h"

struct diff_area;
struct snapshot;

/**
 * struct tracker - an original device and everything its writes touch.
 * @name: device name ([A-Za-z0-9._-]{1,64}), the original's export name.
 * @path: path it was opened from.
 * @fd: open read-write (block devices O_EXCL).
 * @size: bytes.
 * @logical_block_size: 1 for regular files, else the device's.
 * @physical_block_size: st_blksize for files, else the device's.
 * @is_blockdev: a block device, not a regular file.
 * @st_dev: st_dev of @fd (the filesystem holding a regular file).
 * @st_ino: st_ino of @fd.
 * @st_rdev: st_rdev of @fd (the device number of a block device).
 * @no_punch: fallocate punch-hole is known not to work (atomic).
 * @no_zero_range: fallocate zero-range is known not to work (atomic).
 * @cbt: change block tracking.
 * @writes: quiesce gate every write, zero and trim passes; take blocks it.
 * @diff_area: copy-on-write state while a snapshot is taken, else NULL
 *   (atomic; set and cleared only with @writes blocked).
 * @snapshot: the snapshot the device is in, or NULL (control lock).
 * @connections: NBD connections on the original export (atomic).
 * @refcount: references: the registry's and one per open image (atomic).
 *
 * Write path (as blksnap's tracker_submit_bio): enter @writes, mark the
 * active CBT map, copy the chunks about to change if a snapshot is
 * taken (never failing the write for it), write, leave @writes.
 *
 * Lifetime: created by tracker_open (plugin start or ctl attach), listed
 * in the registry, freed by the last tracker_put after detach.
 */
struct tracker {
  char name[NBDSNAP_NAME_BUF];
  char *path;
  int fd;
  uint64_t size;
  uint32_t logical_block_size;
  uint32_t physical_block_size;
  bool is_blockdev;
  dev_t st_dev;
  ino_t st_ino;
  dev_t st_rdev;
  int no_punch;
  int no_zero_range;
  struct cbt_map *cbt;
  struct quiesce writes;
  struct diff_area *diff_area;
  struct snapshot *snapshot;
  unsigned connections;
  unsigned refcount;
};

/* Open @path as device @name.  Returns NULL with *err set. */
struct tracker *tracker_open (const char *name, const char *path,
                              const struct cbt_map_params *params,
                              int *err);
void tracker_get (struct tracker *t);
void tracker_put (struct tracker *t);

/* I/O on the original.  Each returns 0 or -1 with *err set. */
int tracker_pread (struct tracker *t, void *buf, uint32_t count,
                   uint64_t offset, int *err);
int tracker_pwrite (struct tracker *t, const void *buf, uint32_t count,
                    uint64_t offset, bool fua, int *err);
int tracker_zero (struct tracker *t, uint32_t count, uint64_t offset,
                  bool may_trim, bool fast, bool fua, int *err);
int tracker_trim (struct tracker *t, uint32_t count, uint64_t offset,
                  bool fua, int *err);
int tracker_flush (struct tracker *t, int *err);

/* True if fast zeroing can work (fallocate support is not known bad). */
bool tracker_can_fast_zero (struct tracker *t);

/* Holes: for regular files, whether [offset, offset+count) starts with
 * data.  Fills *data and *len with the first extent.  -1 on error.
 */
int tracker_extent (struct tracker *t, uint64_t offset, uint64_t count,
                    bool *data, uint64_t *len, int *err);

#endif /* NBDSNAP_TRACKER_H */
