/* nbdsnapctl snapshot create | take | destroy | list | info |
 * append-storage | wait-event
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "util.h"

int
cmd_snapshot_create (struct cli *cli, int argc, char **argv)
{
  static char **devices, *storage, *limit;
  static gboolean take;
  static const GOptionEntry entries[] = {
    { "device", 'd', 0, G_OPTION_ARG_STRING_ARRAY, &devices,
      "A device of the snapshot (repeatable, at least one)", "NAME" },
    { "diff-storage", 0, 0, G_OPTION_ARG_FILENAME, &storage,
      "Diff storage: a directory (an unnamed file in it), a file or a "
      "block device", "PATH" },
    { "limit", 0, 0, G_OPTION_ARG_STRING, &limit,
      "Diff storage limit (K, M, G, T suffixes)", "SIZE" },
    { "take", 0, 0, G_OPTION_ARG_NONE, &take, "Take it at once", NULL },
    { NULL },
  };
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) result = NULL;
  g_autofree char *id = NULL;
  GVariantBuilder o;

  cli_parse (cli, entries, &argc, &argv, 0, 0);
  if (devices == NULL || devices[0] == NULL)
    cli_usage_error (cli, "give at least one --device NAME");
  g_variant_builder_init (&o, G_VARIANT_TYPE_VARDICT);
  if (storage) {
    g_autofree char *p = cli_absolute_path (storage);
    g_variant_builder_add (&o, "{sv}", "diff_storage", g_variant_new_string (p));
  }
  if (limit) {
    guint64 v = cli_parse_size (cli, "--limit", limit);
    if (v == 0)
      cli_usage_error (cli, "--limit must be more than 0");
    g_variant_builder_add (&o, "{sv}", "limit", g_variant_new_uint64 (v));
  }
  if (take)
    g_variant_builder_add (&o, "{sv}", "take", g_variant_new_boolean (TRUE));
  if (!nbdsnap_manager1_call_create_snapshot_sync
      (cli_proxy (cli), (const char *const *) devices,
       g_variant_builder_end (&o), &id, &result, NULL, &error))
    return cli_error (cli, error);
  if (!cli_print_json (cli, g_variant_ref (result)))
    printf ("%s\n", id);
  return CLI_OK;
}

int
cmd_snapshot_take (struct cli *cli, int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) result = NULL;
  g_autofree char *id = NULL;

  cli_parse (cli, NULL, &argc, &argv, 1, 1);
  id = cli_check_id (cli, argv[0]);
  if (!nbdsnap_manager1_call_take_snapshot_sync (cli_proxy (cli), id,
                                                 cli_no_options (), &result,
                                                 NULL, &error))
    return cli_error (cli, error);
  if (!cli_print_json (cli, g_variant_ref (result)))
    printf ("took snapshot %s: writes paused %" G_GUINT64_FORMAT " us\n", id,
            cli_dict_u64 (result, "take_pause_us"));
  return CLI_OK;
}

int
cmd_snapshot_destroy (struct cli *cli, int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *id = NULL;
  GVariantBuilder b;

  cli_parse (cli, NULL, &argc, &argv, 1, 1);
  id = cli_check_id (cli, argv[0]);
  if (!nbdsnap_manager1_call_destroy_snapshot_sync (cli_proxy (cli), id,
                                                    cli_no_options (), NULL,
                                                    &error))
    return cli_error (cli, error);
  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&b, "{sv}", "id", g_variant_new_string (id));
  g_variant_builder_add (&b, "{sv}", "destroyed", g_variant_new_boolean (TRUE));
  if (!cli_print_json (cli, g_variant_builder_end (&b)))
    printf ("destroyed snapshot %s\n", id);
  return CLI_OK;
}

int
cmd_snapshot_list (struct cli *cli, int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) list = NULL;
  struct cli_table *t;
  GVariantBuilder b;
  GVariantIter it;
  GVariant *s;

  cli_parse (cli, NULL, &argc, &argv, 0, 0);
  if (!nbdsnap_manager1_call_list_snapshots_sync (cli_proxy (cli),
                                                  cli_no_options (), &list,
                                                  NULL, &error))
    return cli_error (cli, error);
  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&b, "{sv}", "snapshots", list);
  if (cli_print_json (cli, g_variant_builder_end (&b)))
    return CLI_OK;

  t = cli_table_new (5, "ID", "STATE", "DEVICES", "DIFF STORAGE", "EXPIRES");
  g_variant_iter_init (&it, list);
  while ((s = g_variant_iter_next_value (&it)) != NULL) {
    g_autofree const char **devs = NULL;
    g_autofree char *joined = NULL, *used = NULL, *limit = NULL;
    g_autofree char *storage = NULL, *expires = NULL;

    g_variant_lookup (s, "devices", "^a&s", &devs);
    joined = devs ? g_strjoinv (",", (char **) devs) : g_strdup ("");
    used = cli_size (cli_dict_u64 (s, "used"));
    limit = cli_size (cli_dict_u64 (s, "limit"));
    storage = g_strdup_printf ("%s of %s", used, limit);
    expires = cli_time (cli_dict_i64 (s, "expires"), "never");
    cli_table_add (t, cli_dict_str (s, "id"), cli_dict_str (s, "state"),
                   joined, storage, expires);
    g_variant_unref (s);
  }
  cli_table_print (t);
  return CLI_OK;
}

/* The JSON of snapshot info: error as null when there is none. */
static GVariant *
info_json (GVariant *info)
{
  const char *err = cli_dict_str (info, "error");

  return nbdsnap_dict_set (info, "error", g_variant_new_maybe
                           (G_VARIANT_TYPE_STRING,
                            err[0] ? g_variant_new_string (err) : NULL));
}

int
cmd_snapshot_info (struct cli *cli, int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) info = NULL, storage = NULL, devices = NULL;
  g_autofree char *id = NULL, *used = NULL, *limit = NULL;
  g_autofree char *created = NULL, *expires = NULL;
  const char *err;
  GVariantIter it;
  GVariant *d;

  cli_parse (cli, NULL, &argc, &argv, 1, 1);
  id = cli_check_id (cli, argv[0]);
  if (!nbdsnap_manager1_call_get_snapshot_info_sync (cli_proxy (cli), id,
                                                     cli_no_options (), &info,
                                                     NULL, &error))
    return cli_error (cli, error);
  if (cli_print_json (cli, info_json (info)))
    return CLI_OK;

  storage = g_variant_lookup_value (info, "diff_storage",
                                    G_VARIANT_TYPE_VARDICT);
  devices = g_variant_lookup_value (info, "devices", G_VARIANT_TYPE ("aa{sv}"));
  err = cli_dict_str (info, "error");
  used = cli_size (storage ? cli_dict_u64 (storage, "used") : 0);
  limit = cli_size (storage ? cli_dict_u64 (storage, "limit") : 0);
  created = cli_time (cli_dict_i64 (info, "created"), "unknown");
  expires = cli_time (cli_dict_i64 (info, "expires"), "never");
  cli_field ("Snapshot", "%s", cli_dict_str (info, "id"));
  cli_field ("State", "%s", cli_dict_str (info, "state"));
  cli_field ("Error", "%s", err[0] ? err : "none");
  cli_field ("Take pause", "%" G_GUINT64_FORMAT " us",
             cli_dict_u64 (info, "take_pause_us"));
  cli_field ("Diff storage", "%s used of %s (%" G_GUINT64_FORMAT " file%s)",
             used, limit, storage ? cli_dict_u64 (storage, "files") : 0,
             storage && cli_dict_u64 (storage, "files") == 1 ? "" : "s");
  cli_field ("Created", "%s", created);
  cli_field ("Expires", "%s", expires);
  printf ("Devices:\n");
  if (devices) {
    g_variant_iter_init (&it, devices);
    while ((d = g_variant_iter_next_value (&it)) != NULL) {
      g_autofree const char **uris = NULL;
      size_t i;

      printf ("  %s: changes number %" G_GUINT64_FORMAT ", %"
              G_GUINT64_FORMAT " chunks copied\n", cli_dict_str (d, "name"),
              cli_dict_u64 (d, "changes_number"),
              cli_dict_u64 (d, "chunks_copied"));
      if (cli_dict_str (d, "export")[0])
        printf ("    export %s\n", cli_dict_str (d, "export"));
      g_variant_lookup (d, "uris", "^a&s", &uris);
      for (i = 0; uris && uris[i]; i++)
        printf ("    %s\n", uris[i]);
      g_variant_unref (d);
    }
  }
  return CLI_OK;
}

int
cmd_snapshot_append_storage (struct cli *cli, int argc, char **argv)
{
  static char *limit;
  static const GOptionEntry entries[] = {
    { "limit", 0, 0, G_OPTION_ARG_STRING, &limit,
      "Bytes of the new storage to use (K, M, G, T suffixes)", "SIZE" },
    { NULL },
  };
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) storage = NULL;
  g_autofree char *id = NULL, *path = NULL, *used = NULL, *lim = NULL;
  GVariantBuilder o;

  cli_parse (cli, entries, &argc, &argv, 2, 2);
  id = cli_check_id (cli, argv[0]);
  path = cli_absolute_path (argv[1]);
  g_variant_builder_init (&o, G_VARIANT_TYPE_VARDICT);
  if (limit) {
    guint64 v = cli_parse_size (cli, "--limit", limit);
    if (v == 0)
      cli_usage_error (cli, "--limit must be more than 0");
    g_variant_builder_add (&o, "{sv}", "limit", g_variant_new_uint64 (v));
  }
  if (!nbdsnap_manager1_call_append_storage_sync (cli_proxy (cli), id, path,
                                                  g_variant_builder_end (&o),
                                                  &storage, NULL, &error))
    return cli_error (cli, error);
  g_variant_builder_init (&o, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&o, "{sv}", "id", g_variant_new_string (id));
  g_variant_builder_add (&o, "{sv}", "diff_storage", storage);
  if (cli_print_json (cli, g_variant_builder_end (&o)))
    return CLI_OK;
  used = cli_size (cli_dict_u64 (storage, "used"));
  lim = cli_size (cli_dict_u64 (storage, "limit"));
  printf ("diff storage of %s: %s used of %s in %" G_GUINT64_FORMAT " files\n",
          id, used, lim, cli_dict_u64 (storage, "files"));
  return CLI_OK;
}

int
cmd_snapshot_wait_event (struct cli *cli, int argc, char **argv)
{
  static int timeout = -1;
  static const GOptionEntry entries[] = {
    { "timeout", 't', 0, G_OPTION_ARG_INT, &timeout,
      "Give up after MS milliseconds (default: wait for ever)", "MS" },
    { NULL },
  };
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) ev = NULL;
  g_autofree char *id = NULL;
  GVariantBuilder o;
  const char *s;

  cli_parse (cli, entries, &argc, &argv, 1, 1);
  id = cli_check_id (cli, argv[0]);
  if (timeout < -1)
    cli_usage_error (cli, "--timeout %d: expected milliseconds (0 or more)",
                     timeout);
  g_variant_builder_init (&o, G_VARIANT_TYPE_VARDICT);
  if (timeout >= 0)
    g_variant_builder_add (&o, "{sv}", "timeout_ms",
                           g_variant_new_int32 (timeout));
  if (!nbdsnap_manager1_call_wait_event_sync (cli_proxy (cli), id,
                                              g_variant_builder_end (&o), &ev,
                                              NULL, &error))
    return cli_error (cli, error);

  if (cli->json) {
    static const char *const nullable[] = { "error", "device", "reason" };
    g_autoptr (GVariant) out = g_variant_ref (ev);
    size_t i;

    for (i = 0; i < G_N_ELEMENTS (nullable); i++) {
      GVariant *next;
      s = cli_dict_str (out, nullable[i]);
      next = nbdsnap_dict_set (out, nullable[i], g_variant_new_maybe
                               (G_VARIANT_TYPE_STRING,
                                s[0] ? g_variant_new_string (s) : NULL));
      g_variant_unref (out);
      out = g_variant_ref_sink (next);
    }
    cli_print_json (cli, g_variant_ref (out));
    return CLI_OK;
  }
  printf ("%s %s", cli_dict_str (ev, "event"), cli_dict_str (ev, "id"));
  if ((s = cli_dict_str (ev, "device"))[0])
    printf (" device=%s", s);
  if ((s = cli_dict_str (ev, "error"))[0])
    printf (" error=%s", s);
  if (cli_dict_u64 (ev, "limit"))
    printf (" used=%" G_GUINT64_FORMAT " limit=%" G_GUINT64_FORMAT,
            cli_dict_u64 (ev, "used"), cli_dict_u64 (ev, "limit"));
  if ((s = cli_dict_str (ev, "reason"))[0])
    printf (" reason=%s", s);
  printf ("\n");
  return CLI_OK;
}
