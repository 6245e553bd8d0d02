/* nbdsnap - image: the point-in-time view of one device of a snapshot.
 * See struct image in image.h; the chunk logic is in diff_area.c.
 */

#include <config.h>

#include <errno.h>
#include <stdlib.h>

#include "common.h"
#include "diff_area.h"
#include "diff_storage.h"
#include "image.h"
#include "snapshot.h"
#include "tracker.h"

struct image *
image_open (struct snapshot *s, struct tracker *t, int *err)
{
  struct image *img;
  struct diff_area *da = snapshot_area_of (s, t);

  if (da == NULL) {
    *err = ENOENT;
    return NULL;
  }
  img = malloc (sizeof *img);
  if (img == NULL) {
    *err = errno;
    return NULL;
  }
  snapshot_get (s);
  img->snapshot = s;
  img->tracker = t;
  img->area = da;
  return img;
}

void
image_close (struct image *img)
{
  if (img == NULL)
    return;
  snapshot_put (img->snapshot);
  free (img);
}

/* Enter the image gate of a healthy snapshot, or fail with EIO. */
static bool
enter (struct image *img, int *err)
{
  if (snapshot_failed (img->snapshot) ||
      !diff_area_image_enter (img->area)) {
    *err = EIO;
    return false;
  }
  /* Corruption may have happened while entering. */
  if (snapshot_failed (img->snapshot)) {
    diff_area_image_leave (img->area);
    *err = EIO;
    return false;
  }
  return true;
}

int
image_pread (struct image *img, void *buf, uint32_t count, uint64_t offset,
             int *err)
{
  int r;

  if (!enter (img, err))
    return -1;
  r = diff_area_image_read (img->area, buf, count, offset, err);
  diff_area_image_leave (img->area);
  return r;
}

int
image_pwrite (struct image *img, const void *buf, uint32_t count,
              uint64_t offset, bool fua, int *err)
{
  int r;

  if (!enter (img, err))
    return -1;
  r = diff_area_image_write (img->area, buf, count, offset, err);
  if (r == 0 && fua)
    r = diff_storage_flush (img->area->storage, err);
  diff_area_image_leave (img->area);
  return r;
}

int
image_zero (struct image *img, uint32_t count, uint64_t offset, bool fua,
            int *err)
{
  int r;

  if (!enter (img, err))
    return -1;
  r = diff_area_image_zero (img->area, count, offset, err);
  if (r == 0 && fua)
    r = diff_storage_flush (img->area->storage, err);
  diff_area_image_leave (img->area);
  return r;
}

int
image_flush (struct image *img, int *err)
{
  int r;

  if (!enter (img, err))
    return -1;
  r = diff_storage_flush (img->area->storage, err);
  diff_area_image_leave (img->area);
  return r;
}
