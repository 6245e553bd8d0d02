/* nbdsnap - small helpers shared by nbdsnapd and nbdsnapctl. */

#include <config.h>

#include <errno.h>
#include <string.h>
#include <uuid/uuid.h>

#include "error.h"
#include "util.h"

gboolean
nbdsnap_name_is_valid (const char *name)
{
  size_t i, n = strlen (name);

  if (n == 0 || n > 64)
    return FALSE;
  for (i = 0; i < n; i++) {
    char c = name[i];
    if (!g_ascii_isalnum (c) && c != '.' && c != '_' && c != '-')
      return FALSE;
  }
  return TRUE;
}

gboolean
nbdsnap_parse_size (const char *what, const char *s, guint64 *out,
                    GError **error)
{
  guint64 v = 0;
  unsigned shift = 0;
  const char *p = s;

  if (!g_ascii_isdigit (*p))
    goto bad;
  for (; g_ascii_isdigit (*p); p++) {
    unsigned d = *p - '0';
    if (v > (G_MAXUINT64 - d) / 10)
      goto big;
    v = v * 10 + d;
  }
  switch (*p) {
  case '\0': break;
  case 'K': case 'k': shift = 10; p++; break;
  case 'M': case 'm': shift = 20; p++; break;
  case 'G': case 'g': shift = 30; p++; break;
  case 'T': case 't': shift = 40; p++; break;
  default: goto bad;
  }
  if (*p != '\0')
    goto bad;
  if (shift && v > (G_MAXUINT64 >> shift))
    goto big;
  *out = v << shift;
  return TRUE;

 bad:
  g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_INVALID_ARGUMENT,
               "%s '%s' is not a size (a number of bytes with an optional "
               "K, M, G or T suffix)", what, s);
  return FALSE;
 big:
  g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_INVALID_ARGUMENT,
               "%s '%s' is too large", what, s);
  return FALSE;
}

char *
nbdsnap_format_size (guint64 bytes)
{
  static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB",
                                       "EiB" };
  double v = bytes;
  unsigned i = 0;

  if (bytes < 1024)
    return g_strdup_printf ("%" G_GUINT64_FORMAT " B", bytes);
  v /= 1024;
  while (v >= 1024 && i + 1 < G_N_ELEMENTS (units)) {
    v /= 1024;
    i++;
  }
  return g_strdup_printf ("%.1f %s", v, units[i]);
}

const char *
nbdsnap_errno_name (int err)
{
  static const struct { int err; const char *name; } names[] = {
    { EPERM, "EPERM" }, { ENOENT, "ENOENT" }, { EIO, "EIO" },
    { E2BIG, "E2BIG" }, { EBADF, "EBADF" }, { ENOMEM, "ENOMEM" },
    { EACCES, "EACCES" }, { EBUSY, "EBUSY" }, { EEXIST, "EEXIST" },
    { EXDEV, "EXDEV" }, { ENODEV, "ENODEV" }, { ENOTDIR, "ENOTDIR" },
    { EISDIR, "EISDIR" }, { EINVAL, "EINVAL" }, { EFBIG, "EFBIG" },
    { ENOSPC, "ENOSPC" }, { EROFS, "EROFS" }, { EPIPE, "EPIPE" },
    { ENAMETOOLONG, "ENAMETOOLONG" }, { ENODATA, "ENODATA" },
    { EPROTO, "EPROTO" }, { EBADMSG, "EBADMSG" }, { EMSGSIZE, "EMSGSIZE" },
    { EOPNOTSUPP, "EOPNOTSUPP" }, { ETIMEDOUT, "ETIMEDOUT" },
    { EALREADY, "EALREADY" }, { ESTALE, "ESTALE" }, { EDQUOT, "EDQUOT" },
    { ECONNRESET, "ECONNRESET" }, { ECANCELED, "ECANCELED" },
  };
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (names); i++)
    if (names[i].err == err)
      return names[i].name;
  return NULL;
}

gboolean
nbdsnap_parse_uuid (const char *s, guint8 *uuid)
{
  uuid_t u;

  if (strlen (s) != 36 || uuid_parse (s, u) == -1)
    return FALSE;
  if (uuid)
    memcpy (uuid, u, 16);
  return TRUE;
}

GVariant *
nbdsnap_dict_set (GVariant *dict, const char *key, GVariant *value)
{
  GVariantBuilder b;
  GVariantIter it;
  const char *k;
  GVariant *v;
  gboolean done = FALSE;

  g_variant_ref_sink (value);
  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  if (dict) {
    g_variant_iter_init (&it, dict);
    while (g_variant_iter_next (&it, "{&sv}", &k, &v)) {
      if (strcmp (k, key) == 0) {
        g_variant_builder_add (&b, "{sv}", k, value);
        done = TRUE;
      }
      else
        g_variant_builder_add (&b, "{sv}", k, v);
      g_variant_unref (v);
    }
  }
  if (!done)
    g_variant_builder_add (&b, "{sv}", key, value);
  g_variant_unref (value);
  return g_variant_builder_end (&b);
}
