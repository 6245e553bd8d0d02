/* nbdsnapctl device list | add | remove */

#include <config.h>

#include <stdio.h>

#include "cli.h"

int
cmd_device_list (struct cli *cli, int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) devices = NULL;
  struct cli_table *t;
  GVariantBuilder b;
  GVariantIter it;
  GVariant *d;

  cli_parse (cli, NULL, &argc, &argv, 0, 0);
  if (!nbdsnap_manager1_call_list_devices_sync (cli_proxy (cli),
                                                cli_no_options (), &devices,
                                                NULL, &error))
    return cli_error (cli, error);
  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&b, "{sv}", "devices", devices);
  if (cli_print_json (cli, g_variant_builder_end (&b)))
    return CLI_OK;

  t = cli_table_new (6, "NAME", "SIZE", "SNAPSHOT", "CONNS", "PATH", "URI");
  g_variant_iter_init (&it, devices);
  while ((d = g_variant_iter_next_value (&it)) != NULL) {
    g_autofree char *size = cli_size (cli_dict_u64 (d, "size"));
    g_autofree char *conns = g_strdup_printf ("%" G_GUINT64_FORMAT,
                                              cli_dict_u64 (d, "connections"));
    const char *snap = cli_dict_str (d, "snapshot");

    cli_table_add (t, cli_dict_str (d, "name"), size, snap[0] ? snap : "-",
                   conns, cli_dict_str (d, "path"), cli_dict_str (d, "uri"));
    g_variant_unref (d);
  }
  cli_table_print (t);
  return CLI_OK;
}

int
cmd_device_add (struct cli *cli, int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) dev = NULL;
  g_autofree char *path = NULL, *size = NULL;

  cli_parse (cli, NULL, &argc, &argv, 2, 2);
  path = cli_absolute_path (argv[1]);
  if (!nbdsnap_manager1_call_add_device_sync (cli_proxy (cli), argv[0], path,
                                              cli_no_options (), &dev, NULL,
                                              &error))
    return cli_error (cli, error);
  if (cli_print_json (cli, g_variant_ref (dev)))
    return CLI_OK;
  size = cli_size (cli_dict_u64 (dev, "size"));
  printf ("added device %s (%s, %s): %s\n", cli_dict_str (dev, "name"), size,
          cli_dict_str (dev, "path"), cli_dict_str (dev, "uri"));
  return CLI_OK;
}

int
cmd_device_remove (struct cli *cli, int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  GVariantBuilder b;

  cli_parse (cli, NULL, &argc, &argv, 1, 1);
  if (!nbdsnap_manager1_call_remove_device_sync (cli_proxy (cli), argv[0],
                                                 cli_no_options (), NULL,
                                                 &error))
    return cli_error (cli, error);
  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&b, "{sv}", "device", g_variant_new_string (argv[0]));
  g_variant_builder_add (&b, "{sv}", "removed", g_variant_new_boolean (TRUE));
  if (!cli_print_json (cli, g_variant_builder_end (&b)))
    printf ("removed device %s\n", argv[0]);
  return CLI_OK;
}
