/* nbdsnap - diff storage files. */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "conf.h"
#include "error.h"
#include "storage.h"

/* The sysfs directory of a block device, or NULL. */
static char *
sysfs_dir (dev_t dev)
{
  char path[64], *r;

  g_snprintf (path, sizeof path, "/sys/dev/block/%u:%u", major (dev),
              minor (dev));
  r = realpath (path, NULL);
  if (r == NULL)
    return NULL;
  /* realpath's memory is malloc'd; hand back a GLib string. */
  {
    char *g = g_strdup (r);
    free (r);
    return g;
  }
}

/* The same block device, or one a partition of the other? */
static gboolean
blk_related (dev_t a, dev_t b)
{
  g_autofree char *pa = NULL, *pb = NULL, *pa_slash = NULL, *pb_slash = NULL;

  if (a == b)
    return TRUE;
  if (major (a) == 0 || major (b) == 0)
    return FALSE;               /* anonymous devices: no sysfs */
  pa = sysfs_dir (a);
  pb = sysfs_dir (b);
  if (pa == NULL || pb == NULL)
    return FALSE;
  pa_slash = g_strconcat (pa, "/", NULL);
  pb_slash = g_strconcat (pb, "/", NULL);
  return g_str_has_prefix (pa, pb_slash) || g_str_has_prefix (pb, pa_slash);
}

/* Does storage with stat @st lie on device @d? */
static gboolean
on_device (const struct stat *st, const struct device_spec *d)
{
  struct stat ds;

  if (stat (d->path, &ds) == -1)
    return FALSE;
  if (S_ISBLK (st->st_mode)) {
    if (S_ISBLK (ds.st_mode))
      return blk_related (st->st_rdev, ds.st_rdev);
    /* The device is a file on a filesystem on this block device. */
    return blk_related (st->st_rdev, ds.st_dev);
  }
  if (S_ISBLK (ds.st_mode))
    return blk_related (st->st_dev, ds.st_rdev);
  return st->st_dev == ds.st_dev && st->st_ino == ds.st_ino;
}

static gboolean
check_devices (const struct stat *st, const char *desc, GPtrArray *devices,
               GError **error)
{
  guint i;

  for (i = 0; devices && i < devices->len; i++) {
    const struct device_spec *d = g_ptr_array_index (devices, i);
    if (on_device (st, d)) {
      g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_CROSS_DEVICE,
                   "diff storage %s lies on device '%s' (%s), which is in "
                   "the snapshot", desc, d->name, d->path);
      return FALSE;
    }
  }
  return TRUE;
}

static int
open_tmpfile (const char *dir, GError **error)
{
  int fd = open (dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

  if (fd == -1 && (errno == EOPNOTSUPP || errno == EISDIR)) {
    /* No O_TMPFILE on this filesystem: a named file, unlinked at once. */
    g_autofree char *tmpl = g_build_filename (dir, "nbdsnap-diff.XXXXXX",
                                              NULL);
    fd = g_mkstemp_full (tmpl, O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
      unlink (tmpl);
  }
  if (fd == -1)
    g_set_error (error, NBDSNAP_ERROR, nbdsnap_error_from_errno (errno),
                 "cannot make diff storage in %s: %s", dir,
                 g_strerror (errno));
  return fd;
}

int
storage_open (const char *path, const char *dir, GPtrArray *devices,
              char **desc, GError **error)
{
  g_autofree char *d = NULL;
  struct stat st;
  gboolean created = FALSE;
  int fd, sr, se;

  if (path == NULL)
    path = dir;
  if (!g_path_is_absolute (path)) {
    g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_INVALID_ARGUMENT,
                 "diff storage path '%s' is not absolute", path);
    return -1;
  }

  sr = stat (path, &st);
  se = errno;
  if (sr == 0 && S_ISDIR (st.st_mode)) {
    d = g_strdup_printf ("in %s", path);
    if (!check_devices (&st, d, devices, error))
      return -1;
    fd = open_tmpfile (path, error);
    if (fd == -1)
      return -1;
    g_free (d);
    d = g_strdup_printf ("(an unnamed file in %s)", path);
  }
  else if (sr == -1 && se == ENOENT) {
    /* A new regular file: check its directory's filesystem first. */
    g_autofree char *parent = g_path_get_dirname (path);
    struct stat ps;

    d = g_strdup (path);
    if (stat (parent, &ps) == -1) {
      g_set_error (error, NBDSNAP_ERROR, nbdsnap_error_from_errno (errno),
                   "diff storage %s: %s", path, g_strerror (errno));
      return -1;
    }
    ps.st_ino = 0;              /* a new file is no existing device file */
    if (!check_devices (&ps, path, devices, error))
      return -1;
    fd = open (path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd == -1) {
      g_set_error (error, NBDSNAP_ERROR, nbdsnap_error_from_errno (errno),
                   "diff storage %s: %s", path, g_strerror (errno));
      return -1;
    }
    created = TRUE;
  }
  else if (sr == -1) {
    g_set_error (error, NBDSNAP_ERROR, nbdsnap_error_from_errno (se),
                 "diff storage %s: %s", path, g_strerror (se));
    return -1;
  }
  else if (S_ISREG (st.st_mode) || S_ISBLK (st.st_mode)) {
    d = g_strdup (path);
    if (!check_devices (&st, path, devices, error))
      return -1;
    fd = open (path, O_RDWR | O_CLOEXEC |
               (S_ISBLK (st.st_mode) ? O_EXCL : 0));
    if (fd == -1) {
      g_set_error (error, NBDSNAP_ERROR, nbdsnap_error_from_errno (errno),
                   "diff storage %s: %s", path, g_strerror (errno));
      return -1;
    }
  }
  else {
    g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_BAD_STORAGE,
                 "diff storage %s: not a directory, regular file or block "
                 "device", path);
    return -1;
  }

  /* The descriptor is what counts: check it again. */
  if (fstat (fd, &st) == -1 || !check_devices (&st, d, devices, error)) {
    if (error && *error == NULL)
      g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_BAD_STORAGE,
                   "diff storage %s: fstat: %s", d, g_strerror (errno));
    close (fd);
    if (created)
      unlink (path);
    return -1;
  }
  if (desc)
    *desc = g_steal_pointer (&d);
  return fd;
}
