/* nbdsnapctl cbt info | map | changed | mark-dirty */

#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "util.h"

static GVariant *
snapshot_options (struct cli *cli, const char *snapshot)
{
  GVariantBuilder b;

  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  if (snapshot) {
    g_autofree char *id = cli_check_id (cli, snapshot);
    g_variant_builder_add (&b, "{sv}", "snapshot", g_variant_new_string (id));
  }
  return g_variant_builder_end (&b);
}

int
cmd_cbt_info (struct cli *cli, int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) info = NULL;
  g_autofree char *size = NULL, *bs = NULL;

  cli_parse (cli, NULL, &argc, &argv, 1, 1);
  if (!nbdsnap_manager1_call_get_cbt_info_sync (cli_proxy (cli), argv[0],
                                                cli_no_options (), &info,
                                                NULL, &error))
    return cli_error (cli, error);
  if (cli_print_json (cli, g_variant_ref (info)))
    return CLI_OK;
  size = cli_size_long (cli_dict_u64 (info, "size"));
  bs = cli_size_long (cli_dict_u64 (info, "block_size"));
  cli_field ("Device", "%s", cli_dict_str (info, "device"));
  cli_field ("Size", "%s", size);
  cli_field ("Block size", "%s", bs);
  cli_field ("Block count", "%" G_GUINT64_FORMAT,
             cli_dict_u64 (info, "block_count"));
  cli_field ("Generation", "%s", cli_dict_str (info, "generation"));
  cli_field ("Changes number", "%" G_GUINT64_FORMAT,
             cli_dict_u64 (info, "changes_number"));
  if (cli_dict_bool (info, "frozen"))
    cli_field ("Frozen map", "changes number %" G_GUINT64_FORMAT
               ", generation %s", cli_dict_u64 (info, "frozen_number"),
               cli_dict_str (info, "frozen_generation"));
  else
    cli_field ("Frozen map", "none (no snapshot taken)");
  return CLI_OK;
}

int
cmd_cbt_map (struct cli *cli, int argc, char **argv)
{
  static char *snapshot, *output;
  static const GOptionEntry entries[] = {
    { "snapshot", 0, 0, G_OPTION_ARG_STRING, &snapshot,
      "Read the frozen map of this taken snapshot", "ID" },
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &output,
      "Write the map (one byte per block) to FILE", "FILE" },
    { NULL },
  };
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) info = NULL, map = NULL;
  g_autofree char *bs = NULL;
  const guint8 *bytes;
  gsize n;
  FILE *fp;

  cli_parse (cli, entries, &argc, &argv, 1, 1);
  if (output == NULL)
    cli_usage_error (cli, "--output FILE is required");
  if (!nbdsnap_manager1_call_read_cbt_map_sync (cli_proxy (cli), argv[0],
                                                snapshot_options (cli,
                                                                  snapshot),
                                                &info, &map, NULL, &error))
    return cli_error (cli, error);
  bytes = g_variant_get_fixed_array (map, &n, 1);
  fp = strcmp (output, "-") == 0 ? stdout : fopen (output, "w");
  if (fp == NULL)
    return cli_fail (cli, "%s: %s", output, g_strerror (errno));
  if ((n && fwrite (bytes, 1, n, fp) != n) ||
      (fp == stdout ? fflush (fp) : fclose (fp)) == EOF)
    return cli_fail (cli, "%s: %s", output, g_strerror (errno));
  if (fp == stdout)
    return CLI_OK;

  if (cli_print_json (cli, nbdsnap_dict_set (info, "output",
                                             g_variant_new_string (output))))
    return CLI_OK;
  bs = cli_size (cli_dict_u64 (info, "block_size"));
  printf ("wrote the %s map of %s to %s: %" G_GSIZE_FORMAT " blocks of %s, "
          "changes number %" G_GUINT64_FORMAT ", generation %s\n",
          cli_dict_str (info, "map"), argv[0], output, n, bs,
          cli_dict_u64 (info, "changes_number"),
          cli_dict_str (info, "generation"));
  return CLI_OK;
}

int
cmd_cbt_changed (struct cli *cli, int argc, char **argv)
{
  static char *snapshot, *since;
  static const GOptionEntry entries[] = {
    { "since", 0, 0, G_OPTION_ARG_STRING, &since,
      "Blocks changed after snapshot number N (0 to 255)", "N" },
    { "snapshot", 0, 0, G_OPTION_ARG_STRING, &snapshot,
      "Use the frozen map of this taken snapshot", "ID" },
    { NULL },
  };
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) ranges = NULL;
  g_autofree char *id = NULL;
  GVariantBuilder b, rb;
  GVariantIter it;
  guint64 off, len, n;
  char *end;

  cli_parse (cli, entries, &argc, &argv, 1, 1);
  if (since == NULL)
    cli_usage_error (cli, "--since N is required");
  n = g_ascii_strtoull (since, &end, 10);
  if (!g_ascii_isdigit (since[0]) || *end || n > 255)
    cli_usage_error (cli, "--since '%s': expected a changes number from 0 "
                     "to 255", since);
  if (snapshot)
    id = cli_check_id (cli, snapshot);
  if (!nbdsnap_manager1_call_get_changed_ranges_sync
      (cli_proxy (cli), argv[0], n, snapshot_options (cli, snapshot), &ranges,
       NULL, &error))
    return cli_error (cli, error);

  if (cli->json) {
    g_variant_builder_init (&rb, G_VARIANT_TYPE ("aa{sv}"));
    g_variant_iter_init (&it, ranges);
    while (g_variant_iter_next (&it, "(tt)", &off, &len)) {
      g_variant_builder_open (&rb, G_VARIANT_TYPE_VARDICT);
      g_variant_builder_add (&rb, "{sv}", "offset", g_variant_new_uint64 (off));
      g_variant_builder_add (&rb, "{sv}", "length", g_variant_new_uint64 (len));
      g_variant_builder_close (&rb);
    }
    g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add (&b, "{sv}", "device", g_variant_new_string (argv[0]));
    g_variant_builder_add (&b, "{sv}", "since", g_variant_new_uint32 (n));
    g_variant_builder_add (&b, "{sv}", "snapshot",
                           g_variant_new_maybe (G_VARIANT_TYPE_STRING,
                                                id ? g_variant_new_string (id)
                                                : NULL));
    g_variant_builder_add (&b, "{sv}", "ranges", g_variant_builder_end (&rb));
    cli_print_json (cli, g_variant_builder_end (&b));
    return CLI_OK;
  }
  g_variant_iter_init (&it, ranges);
  while (g_variant_iter_next (&it, "(tt)", &off, &len))
    printf ("%" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT "\n", off, len);
  return CLI_OK;
}

int
cmd_cbt_mark_dirty (struct cli *cli, int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  GVariantBuilder rb, jb, b;
  int i;

  cli_parse (cli, NULL, &argc, &argv, 2, -1);
  g_variant_builder_init (&rb, G_VARIANT_TYPE ("a(tt)"));
  g_variant_builder_init (&jb, G_VARIANT_TYPE ("aa{sv}"));
  for (i = 1; i < argc; i++) {
    g_autofree char *off_s = NULL;
    const char *colon = strchr (argv[i], ':');
    guint64 off, len;

    if (colon == NULL)
      cli_usage_error (cli, "'%s': expected OFFSET:LENGTH", argv[i]);
    off_s = g_strndup (argv[i], colon - argv[i]);
    off = cli_parse_size (cli, "offset", off_s);
    len = cli_parse_size (cli, "length", colon + 1);
    if (len == 0)
      cli_usage_error (cli, "'%s': the length must be more than 0", argv[i]);
    g_variant_builder_add (&rb, "(tt)", off, len);
    g_variant_builder_open (&jb, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add (&jb, "{sv}", "offset", g_variant_new_uint64 (off));
    g_variant_builder_add (&jb, "{sv}", "length", g_variant_new_uint64 (len));
    g_variant_builder_close (&jb);
  }
  if (!nbdsnap_manager1_call_mark_dirty_sync (cli_proxy (cli), argv[0],
                                              g_variant_builder_end (&rb),
                                              cli_no_options (), NULL,
                                              &error)) {
    g_variant_builder_clear (&jb);
    return cli_error (cli, error);
  }
  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&b, "{sv}", "device", g_variant_new_string (argv[0]));
  g_variant_builder_add (&b, "{sv}", "ranges", g_variant_builder_end (&jb));
  if (!cli_print_json (cli, g_variant_builder_end (&b)))
    printf ("marked %d range%s of %s as changed\n", argc - 1,
            argc == 2 ? "" : "s", argv[0]);
  return CLI_OK;
}
