/* nbdsnapctl version */

#include <config.h>

#include <stdio.h>

#include "cli.h"

int
cmd_version (struct cli *cli, int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) info = NULL;
  g_autoptr (GVariant) listeners = NULL;
  GVariantBuilder b;
  GVariantIter it;
  GVariant *l;

  cli_parse (cli, NULL, &argc, &argv, 0, 0);
  if (!nbdsnap_manager1_call_version_sync (cli_proxy (cli), cli_no_options (),
                                           &info, NULL, &error))
    return cli_error (cli, error);

  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&b, "{sv}", "client_version",
                         g_variant_new_string (PACKAGE_VERSION));
  {
    GVariantIter i;
    const char *k;
    GVariant *v;
    g_variant_iter_init (&i, info);
    while (g_variant_iter_next (&i, "{&sv}", &k, &v)) {
      g_variant_builder_add (&b, "{sv}", k, v);
      g_variant_unref (v);
    }
  }
  if (cli_print_json (cli, g_variant_builder_end (&b)))
    return CLI_OK;

  printf ("nbdsnapctl %s\n", PACKAGE_VERSION);
  printf ("nbdsnapd %s\n", cli_dict_str (info, "daemon_version"));
  if (cli_dict_i64 (info, "nbdkit_pid") > 0)
    printf ("data plane: nbdkit pid %" G_GINT64_FORMAT ", plugin %s, ctl "
            "protocol %" G_GUINT64_FORMAT ", restarted %" G_GUINT64_FORMAT
            " times\n", cli_dict_i64 (info, "nbdkit_pid"),
            cli_dict_str (info, "plugin_version"),
            cli_dict_u64 (info, "protocol"), cli_dict_u64 (info, "restarts"));
  else
    printf ("data plane: not running (restarted %" G_GUINT64_FORMAT
            " times)\n", cli_dict_u64 (info, "restarts"));
  printf ("TLS: %s\n", cli_dict_str (info, "tls"));
  listeners = g_variant_lookup_value (info, "listeners",
                                      G_VARIANT_TYPE ("aa{sv}"));
  if (listeners) {
    g_variant_iter_init (&it, listeners);
    while ((l = g_variant_iter_next_value (&it)) != NULL) {
      printf ("listener: %s (%s)\n", cli_dict_str (l, "uri"),
              cli_dict_bool (l, "originals") ? "originals and images"
              : "images only");
      g_variant_unref (l);
    }
  }
  return CLI_OK;
}
