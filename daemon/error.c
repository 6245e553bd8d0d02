/* nbdsnap - the errors of the public API and their D-Bus names. */

#include <config.h>

#include <errno.h>

#include <gio/gio.h>

#include "error.h"

/**
 * struct error_row - one error kind.
 * @code: the enum value (rows are in enum order).
 * @dbus_name: its D-Bus error name.
 * @err: the errno that stands for it, 0 for none.
 * @err_name: that errno's name.
 */
struct error_row {
  NbdsnapError code;
  const char *dbus_name;
  int err;
  const char *err_name;
};

static const struct error_row errors[] = {
  { NBDSNAP_ERROR_FAILED, "org.nbdsnap.Error.Failed", 0, NULL },
  { NBDSNAP_ERROR_INVALID_ARGUMENT, "org.nbdsnap.Error.InvalidArgument",
    EINVAL, "EINVAL" },
  { NBDSNAP_ERROR_NOT_FOUND, "org.nbdsnap.Error.NotFound", ENOENT, "ENOENT" },
  { NBDSNAP_ERROR_EXISTS, "org.nbdsnap.Error.Exists", EEXIST, "EEXIST" },
  { NBDSNAP_ERROR_BUSY, "org.nbdsnap.Error.Busy", EBUSY, "EBUSY" },
  { NBDSNAP_ERROR_WRONG_STATE, "org.nbdsnap.Error.WrongState", EALREADY,
    "EALREADY" },
  { NBDSNAP_ERROR_CROSS_DEVICE, "org.nbdsnap.Error.CrossDevice", EXDEV,
    "EXDEV" },
  { NBDSNAP_ERROR_TOO_MANY, "org.nbdsnap.Error.TooMany", E2BIG, "E2BIG" },
  { NBDSNAP_ERROR_NO_DATA, "org.nbdsnap.Error.NoData", ENODATA, "ENODATA" },
  { NBDSNAP_ERROR_NO_SPACE, "org.nbdsnap.Error.NoSpace", ENOSPC, "ENOSPC" },
  { NBDSNAP_ERROR_IO, "org.nbdsnap.Error.IOError", EIO, "EIO" },
  { NBDSNAP_ERROR_ACCESS_DENIED, "org.nbdsnap.Error.AccessDenied", EACCES,
    "EACCES" },
  { NBDSNAP_ERROR_TIMED_OUT, "org.nbdsnap.Error.TimedOut", ETIMEDOUT,
    "ETIMEDOUT" },
  { NBDSNAP_ERROR_HOOK_FAILED, "org.nbdsnap.Error.HookFailed", 0, NULL },
  { NBDSNAP_ERROR_DATA_PLANE_DOWN, "org.nbdsnap.Error.DataPlaneDown", 0,
    NULL },
  { NBDSNAP_ERROR_LOST, "org.nbdsnap.Error.Lost", ESTALE, "ESTALE" },
  { NBDSNAP_ERROR_BAD_STORAGE, "org.nbdsnap.Error.BadStorage", EBADF,
    "EBADF" },
};
G_STATIC_ASSERT (G_N_ELEMENTS (errors) == NBDSNAP_ERROR_N);

/* errnos that are not the main errno of any row. */
static const struct { int err; NbdsnapError code; } aliases[] = {
  { EPERM, NBDSNAP_ERROR_ACCESS_DENIED },
  { EDQUOT, NBDSNAP_ERROR_NO_SPACE },
  { ENODEV, NBDSNAP_ERROR_NOT_FOUND },
  { ENOTDIR, NBDSNAP_ERROR_INVALID_ARGUMENT },
  { EISDIR, NBDSNAP_ERROR_BAD_STORAGE },
  { ENAMETOOLONG, NBDSNAP_ERROR_INVALID_ARGUMENT },
  { EROFS, NBDSNAP_ERROR_BAD_STORAGE },
};

GQuark
nbdsnap_error_quark (void)
{
  static GDBusErrorEntry entries[NBDSNAP_ERROR_N];
  static gsize filled = 0;
  static gsize quark = 0;

  if (g_once_init_enter (&filled)) {
    gsize i;
    for (i = 0; i < NBDSNAP_ERROR_N; i++) {
      g_assert (errors[i].code == (NbdsnapError) i);
      entries[i].error_code = errors[i].code;
      entries[i].dbus_error_name = errors[i].dbus_name;
    }
    g_once_init_leave (&filled, 1);
  }
  g_dbus_error_register_error_domain ("nbdsnap-error-quark", &quark,
                                      entries, NBDSNAP_ERROR_N);
  return (GQuark) quark;
}

NbdsnapError
nbdsnap_error_from_errno (int err)
{
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (errors); i++)
    if (errors[i].err && errors[i].err == err)
      return errors[i].code;
  for (i = 0; i < G_N_ELEMENTS (aliases); i++)
    if (aliases[i].err == err)
      return aliases[i].code;
  return NBDSNAP_ERROR_FAILED;
}

const char *
nbdsnap_error_errno_name (NbdsnapError code)
{
  return (unsigned) code < NBDSNAP_ERROR_N ? errors[code].err_name : NULL;
}

const char *
nbdsnap_error_dbus_name (NbdsnapError code)
{
  return (unsigned) code < NBDSNAP_ERROR_N ? errors[code].dbus_name
    : errors[0].dbus_name;
}
