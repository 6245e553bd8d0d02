/* nbdsnap - the errors of the public API and their D-Bus names.
 *
 * One enum, mapped to D-Bus error names in one table (error.c), so that
 * a GError raised in nbdsnapd arrives in nbdsnapctl (or any D-Bus
 * client) as org.nbdsnap.Error.<Name> and back as the same code.
 */

#ifndef NBDSNAP_ERROR_H
#define NBDSNAP_ERROR_H

#include <glib.h>

#define NBDSNAP_ERROR (nbdsnap_error_quark ())

/**
 * enum NbdsnapError - kinds of failure.
 * @NBDSNAP_ERROR_FAILED: anything else (Failed).
 * @NBDSNAP_ERROR_INVALID_ARGUMENT: bad name, size, range, option (EINVAL).
 * @NBDSNAP_ERROR_NOT_FOUND: no such device or snapshot (ENOENT).
 * @NBDSNAP_ERROR_EXISTS: the name or file is attached already (EEXIST).
 * @NBDSNAP_ERROR_BUSY: the device is in a snapshot or in use (EBUSY).
 * @NBDSNAP_ERROR_WRONG_STATE: the snapshot's state forbids it (EALREADY).
 * @NBDSNAP_ERROR_CROSS_DEVICE: diff storage on a snapshot device (EXDEV).
 * @NBDSNAP_ERROR_TOO_MANY: too many devices, snapshots, files (E2BIG).
 * @NBDSNAP_ERROR_NO_DATA: no frozen CBT map (ENODATA).
 * @NBDSNAP_ERROR_NO_SPACE: diff storage is full (ENOSPC).
 * @NBDSNAP_ERROR_IO: an I/O error (EIO).
 * @NBDSNAP_ERROR_ACCESS_DENIED: the caller may not do this (EACCES).
 * @NBDSNAP_ERROR_TIMED_OUT: a hook or a wait ran out of time (ETIMEDOUT).
 * @NBDSNAP_ERROR_HOOK_FAILED: the pre-take hook failed.
 * @NBDSNAP_ERROR_DATA_PLANE_DOWN: nbdkit is not running (restarting).
 * @NBDSNAP_ERROR_LOST: the snapshot was lost with the data plane (ESTALE).
 * @NBDSNAP_ERROR_BAD_STORAGE: not a regular file, directory or block
 *   device that can be opened read-write (EBADF).
 */
typedef enum {
  NBDSNAP_ERROR_FAILED,
  NBDSNAP_ERROR_INVALID_ARGUMENT,
  NBDSNAP_ERROR_NOT_FOUND,
  NBDSNAP_ERROR_EXISTS,
  NBDSNAP_ERROR_BUSY,
  NBDSNAP_ERROR_WRONG_STATE,
  NBDSNAP_ERROR_CROSS_DEVICE,
  NBDSNAP_ERROR_TOO_MANY,
  NBDSNAP_ERROR_NO_DATA,
  NBDSNAP_ERROR_NO_SPACE,
  NBDSNAP_ERROR_IO,
  NBDSNAP_ERROR_ACCESS_DENIED,
  NBDSNAP_ERROR_TIMED_OUT,
  NBDSNAP_ERROR_HOOK_FAILED,
  NBDSNAP_ERROR_DATA_PLANE_DOWN,
  NBDSNAP_ERROR_LOST,
  NBDSNAP_ERROR_BAD_STORAGE,
} NbdsnapError;

#define NBDSNAP_ERROR_N (NBDSNAP_ERROR_BAD_STORAGE + 1)

GQuark nbdsnap_error_quark (void);

/* The code for a ctl or system errno. */
NbdsnapError nbdsnap_error_from_errno (int err);

/* The errno name that stands for a code ("EBUSY"), or NULL (Failed). */
const char *nbdsnap_error_errno_name (NbdsnapError code);

/* "org.nbdsnap.Error.Busy" */
const char *nbdsnap_error_dbus_name (NbdsnapError code);

#endif /* NBDSNAP_ERROR_H */
