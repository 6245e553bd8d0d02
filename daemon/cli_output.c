/* nbdsnapctl - output helpers: JSON from GVariant, human formatting. */

#include <config.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "util.h"

static void
json_string (GString *out, const char *s)
{
  const unsigned char *p;

  g_string_append_c (out, '"');
  for (p = (const unsigned char *) s; *p; p++) {
    switch (*p) {
    case '"': g_string_append (out, "\\\""); break;
    case '\\': g_string_append (out, "\\\\"); break;
    case '\n': g_string_append (out, "\\n"); break;
    case '\t': g_string_append (out, "\\t"); break;
    case '\r': g_string_append (out, "\\r"); break;
    default:
      if (*p < 0x20)
        g_string_append_printf (out, "\\u%04x", *p);
      else
        g_string_append_c (out, *p);
    }
  }
  g_string_append_c (out, '"');
}

static void
indent (GString *out, int level)
{
  g_string_append_c (out, '\n');
  while (level-- > 0)
    g_string_append (out, "  ");
}

static void
json_value (GString *out, GVariant *v, int level)
{
  const GVariantType *t = g_variant_get_type (v);

  if (g_variant_type_is_variant (t)) {
    g_autoptr (GVariant) inner = g_variant_get_variant (v);
    json_value (out, inner, level);
  }
  else if (g_variant_type_is_maybe (t)) {
    g_autoptr (GVariant) inner = g_variant_get_maybe (v);
    if (inner)
      json_value (out, inner, level);
    else
      g_string_append (out, "null");
  }
  else if (g_variant_type_is_subtype_of (t, G_VARIANT_TYPE ("a{s*}"))) {
    gsize i, n = g_variant_n_children (v);

    g_string_append_c (out, '{');
    for (i = 0; i < n; i++) {
      g_autoptr (GVariant) entry = g_variant_get_child_value (v, i);
      g_autoptr (GVariant) key = g_variant_get_child_value (entry, 0);
      g_autoptr (GVariant) val = g_variant_get_child_value (entry, 1);

      if (i)
        g_string_append_c (out, ',');
      indent (out, level + 1);
      json_string (out, g_variant_get_string (key, NULL));
      g_string_append (out, ": ");
      json_value (out, val, level + 1);
    }
    if (n)
      indent (out, level);
    g_string_append_c (out, '}');
  }
  else if (g_variant_type_is_array (t) || g_variant_type_is_tuple (t)) {
    gsize i, n = g_variant_n_children (v);

    g_string_append_c (out, '[');
    for (i = 0; i < n; i++) {
      g_autoptr (GVariant) c = g_variant_get_child_value (v, i);
      if (i)
        g_string_append_c (out, ',');
      indent (out, level + 1);
      json_value (out, c, level + 1);
    }
    if (n)
      indent (out, level);
    g_string_append_c (out, ']');
  }
  else if (g_variant_is_of_type (v, G_VARIANT_TYPE_STRING) ||
           g_variant_is_of_type (v, G_VARIANT_TYPE_OBJECT_PATH))
    json_string (out, g_variant_get_string (v, NULL));
  else if (g_variant_is_of_type (v, G_VARIANT_TYPE_BOOLEAN))
    g_string_append (out, g_variant_get_boolean (v) ? "true" : "false");
  else if (g_variant_is_of_type (v, G_VARIANT_TYPE_BYTE))
    g_string_append_printf (out, "%u", g_variant_get_byte (v));
  else if (g_variant_is_of_type (v, G_VARIANT_TYPE_INT32))
    g_string_append_printf (out, "%d", g_variant_get_int32 (v));
  else if (g_variant_is_of_type (v, G_VARIANT_TYPE_UINT32))
    g_string_append_printf (out, "%u", g_variant_get_uint32 (v));
  else if (g_variant_is_of_type (v, G_VARIANT_TYPE_INT64))
    g_string_append_printf (out, "%" G_GINT64_FORMAT, g_variant_get_int64 (v));
  else if (g_variant_is_of_type (v, G_VARIANT_TYPE_UINT64))
    g_string_append_printf (out, "%" G_GUINT64_FORMAT,
                            g_variant_get_uint64 (v));
  else if (g_variant_is_of_type (v, G_VARIANT_TYPE_DOUBLE))
    g_string_append_printf (out, "%g", g_variant_get_double (v));
  else {
    g_autofree char *s = g_variant_print (v, FALSE);
    json_string (out, s);
  }
}

void
cli_json_write (GVariant *v)
{
  g_autoptr (GString) out = g_string_new (NULL);

  g_variant_ref_sink (v);
  json_value (out, v, 0);
  g_variant_unref (v);
  printf ("%s\n", out->str);
  fflush (stdout);
}

gboolean
cli_print_json (struct cli *cli, GVariant *v)
{
  if (!cli->json) {
    g_variant_unref (g_variant_ref_sink (v));
    return FALSE;
  }
  cli_json_write (v);
  return TRUE;
}

char *
cli_size (guint64 bytes)
{
  return nbdsnap_format_size (bytes);
}

char *
cli_size_long (guint64 bytes)
{
  g_autofree char *s = nbdsnap_format_size (bytes);

  if (bytes < 1024)
    return g_steal_pointer (&s);
  return g_strdup_printf ("%s (%" G_GUINT64_FORMAT " bytes)", s, bytes);
}

char *
cli_time (gint64 us, const char *zero)
{
  g_autoptr (GDateTime) t = NULL;

  if (us == 0)
    return g_strdup (zero);
  t = g_date_time_new_from_unix_local (us / G_USEC_PER_SEC);
  return t ? g_date_time_format (t, "%Y-%m-%d %H:%M:%S %z") : g_strdup ("?");
}

void
cli_field (const char *label, const char *fmt, ...)
{
  g_autofree char *value = NULL;
  g_autofree char *l = g_strdup_printf ("%s:", label);
  va_list ap;

  va_start (ap, fmt);
  value = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  printf ("%-16s %s\n", l, value);
}

/**
 * struct cli_table - rows of strings printed in aligned columns.
 * @ncols: columns.
 * @cells: all cells, row after row (the first row is the header).
 */
struct cli_table {
  guint ncols;
  GPtrArray *cells;
};

struct cli_table *
cli_table_new (guint ncols, ...)
{
  struct cli_table *t = g_new0 (struct cli_table, 1);
  va_list ap;
  guint i;

  t->ncols = ncols;
  t->cells = g_ptr_array_new_with_free_func (g_free);
  va_start (ap, ncols);
  for (i = 0; i < ncols; i++)
    g_ptr_array_add (t->cells, g_strdup (va_arg (ap, const char *)));
  va_end (ap);
  return t;
}

void
cli_table_add (struct cli_table *t, ...)
{
  va_list ap;
  guint i;

  va_start (ap, t);
  for (i = 0; i < t->ncols; i++)
    g_ptr_array_add (t->cells, g_strdup (va_arg (ap, const char *)));
  va_end (ap);
}

void
cli_table_print (struct cli_table *t)
{
  g_autofree gsize *w = g_new0 (gsize, t->ncols);
  guint i;

  for (i = 0; i < t->cells->len; i++)
    w[i % t->ncols] = MAX (w[i % t->ncols],
                           strlen (g_ptr_array_index (t->cells, i)));
  for (i = 0; i < t->cells->len; i++) {
    const char *c = g_ptr_array_index (t->cells, i);
    gboolean last = i % t->ncols == t->ncols - 1;
    if (last)
      printf ("%s\n", c);
    else
      printf ("%-*s  ", (int) w[i % t->ncols], c);
  }
  g_ptr_array_unref (t->cells);
  g_free (t);
}

const char *
cli_dict_str (GVariant *dict, const char *key)
{
  const char *s;

  if (g_variant_lookup (dict, key, "&s", &s))
    return s;
  return "";
}

guint64
cli_dict_u64 (GVariant *dict, const char *key)
{
  g_autoptr (GVariant) v = g_variant_lookup_value (dict, key, NULL);

  if (v == NULL)
    return 0;
  if (g_variant_is_of_type (v, G_VARIANT_TYPE_UINT64))
    return g_variant_get_uint64 (v);
  if (g_variant_is_of_type (v, G_VARIANT_TYPE_UINT32))
    return g_variant_get_uint32 (v);
  if (g_variant_is_of_type (v, G_VARIANT_TYPE_INT64))
    return g_variant_get_int64 (v);
  if (g_variant_is_of_type (v, G_VARIANT_TYPE_INT32))
    return g_variant_get_int32 (v);
  return 0;
}

gint64
cli_dict_i64 (GVariant *dict, const char *key)
{
  return (gint64) cli_dict_u64 (dict, key);
}

gboolean
cli_dict_bool (GVariant *dict, const char *key)
{
  gboolean b;

  return g_variant_lookup (dict, key, "b", &b) && b;
}
