/* nbdsnap - small helpers shared by nbdsnapd and nbdsnapctl. */

#ifndef NBDSNAP_UTIL_H
#define NBDSNAP_UTIL_H

#include <glib.h>

/* [A-Za-z0-9._-]{1,64}, as DESIGN §2 says. */
gboolean nbdsnap_name_is_valid (const char *name);

/* A decimal byte count with an optional K, M, G or T suffix (powers of
 * 1024).  Anything else, or an overflow, is an error naming @what.
 */
gboolean nbdsnap_parse_size (const char *what, const char *s, guint64 *out,
                             GError **error);

/* "8.0 MiB", "512 B".  Free with g_free. */
char *nbdsnap_format_size (guint64 bytes);

/* "EBUSY" for EBUSY, or NULL for an errno without a name here. */
const char *nbdsnap_errno_name (int err);

/* A UUID in its 36-character form?  Fills @uuid (16 bytes) if given. */
gboolean nbdsnap_parse_uuid (const char *s, guint8 *uuid);

/* A copy of the a{sv} @dict with @key set to @value (floating values
 * are consumed): replaced where it is, or added at the end.  Keeps the
 * order of the keys, unlike GVariantDict.  Returns a floating a{sv}.
 */
GVariant *nbdsnap_dict_set (GVariant *dict, const char *key,
                            GVariant *value);

#endif /* NBDSNAP_UTIL_H */
