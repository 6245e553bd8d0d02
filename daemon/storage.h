/* nbdsnap - diff storage files, made by nbdsnapd and passed to the
 * plugin over ctl (SCM_RIGHTS).
 *
 * A snapshot's diff storage is, by default, an unnamed O_TMPFILE in the
 * diff storage directory: no one can open it and it vanishes with the
 * snapshot.  A path given by the user may name a directory (an unnamed
 * file is made in it), a regular file (created if missing) or a block
 * device.  Storage that lies on one of the snapshot's own devices is
 * refused (st_dev / st_rdev, partitions through sysfs): copy-on-write
 * into the device being snapshotted would recurse and corrupt it.
 */

#ifndef NBDSNAPD_STORAGE_H
#define NBDSNAPD_STORAGE_H

#include <glib.h>

/* Open diff storage at @path (NULL: an unnamed file in @dir), refusing
 * storage on any of @devices (struct device_spec).  Returns a
 * read-write descriptor and a description for messages in *@desc, or -1
 * with @error.
 */
int storage_open (const char *path, const char *dir, GPtrArray *devices,
                  char **desc, GError **error);

#endif /* NBDSNAPD_STORAGE_H */
