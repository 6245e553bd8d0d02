/* nbdsnap - image: the point-in-time view of one device of a snapshot. */

#ifndef NBDSNAP_IMAGE_H
#define NBDSNAP_IMAGE_H

#include <stdbool.h>
#include <stdint.h>

struct snapshot;
struct tracker;
struct diff_area;

/**
 * struct image - one open image export NAME@UUID.
 * @snapshot: the snapshot (a reference, kept until the connection
 *   closes, so that a destroyed snapshot's image fails cleanly).
 * @tracker: the device.
 * @area: the device's diff area in @snapshot.
 *
 * Every request checks the snapshot (corrupted -> EIO) and passes the
 * diff area's image gate (closed by destroy -> EIO), then reads or
 * writes through the diff area.  Writes never reach the original.
 */
struct image {
  struct snapshot *snapshot;
  struct tracker *tracker;
  struct diff_area *area;
};

/* Open device @t of taken snapshot @s.  Call with control_lock held.
 * Returns NULL with *err = ENOENT if @t is not in @s or @s is not taken.
 */
struct image *image_open (struct snapshot *s, struct tracker *t, int *err);
void image_close (struct image *img);

int image_pread (struct image *img, void *buf, uint32_t count,
                 uint64_t offset, int *err);
int image_pwrite (struct image *img, const void *buf, uint32_t count,
                  uint64_t offset, bool fua, int *err);
int image_zero (struct image *img, uint32_t count, uint64_t offset,
                bool fua, int *err);
int image_flush (struct image *img, int *err);

#endif /* NBDSNAP_IMAGE_H */
