/* nbdsnapctl - command-line client of nbdsnapd.  See nbdsnapctl(1).
 *
 * The command table: one row per command, dispatched by its one or two
 * words.  A new command (e.g. "backup", in backup.c) is one more row.
 */

#include <config.h>

#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backup.h"
#include "cli.h"
#include "conf.h"

static const struct cli_command commands[] = {
  { NULL, "version", "", "Versions of nbdsnapctl, nbdsnapd and the data plane",
    cmd_version },
  { "device", "list", "", "List the devices", cmd_device_list },
  { "device", "add", "NAME PATH", "Attach a file or block device as NAME",
    cmd_device_add },
  { "device", "remove", "NAME", "Detach a device", cmd_device_remove },
  { "cbt", "info", "DEVICE",
    "Block size, block count, size, generation, changes number",
    cmd_cbt_info },
  { "cbt", "map", "DEVICE --output FILE",
    "Write the raw CBT map, one byte per block", cmd_cbt_map },
  { "cbt", "changed", "DEVICE --since N",
    "Changed byte ranges since snapshot number N, \"OFFSET LENGTH\" lines",
    cmd_cbt_changed },
  { "cbt", "mark-dirty", "DEVICE OFFSET:LENGTH...",
    "Mark byte ranges as changed", cmd_cbt_mark_dirty },
  { "snapshot", "create", "--device NAME...",
    "Create a snapshot; prints its id", cmd_snapshot_create },
  { "snapshot", "take", "ID", "Take a snapshot", cmd_snapshot_take },
  { "snapshot", "destroy", "ID", "Destroy a snapshot", cmd_snapshot_destroy },
  { "snapshot", "list", "", "List the snapshots", cmd_snapshot_list },
  { "snapshot", "info", "ID", "State, diff storage and exports of a snapshot",
    cmd_snapshot_info },
  { "snapshot", "append-storage", "ID PATH",
    "Add diff storage to a snapshot", cmd_snapshot_append_storage },
  { "snapshot", "wait-event", "ID",
    "Wait for the next event of a snapshot", cmd_snapshot_wait_event },
  { NULL, "backup", "SOURCE DEST",
    "Full or incremental backup of an image export (no daemon needed)",
    cmd_backup },
};

static void
list_commands (FILE *fp, const char *group)
{
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (commands); i++) {
    const struct cli_command *c = &commands[i];
    g_autofree char *words = NULL;

    if (group && g_strcmp0 (c->group, group) != 0)
      continue;
    words = c->group ? g_strdup_printf ("%s %s", c->group, c->name)
      : g_strdup (c->name);
    fprintf (fp, "  %-26s %s\n", words, c->summary);
  }
}

static void
help (FILE *fp, const char *group)
{
  fprintf (fp, "Usage: nbdsnapctl [--socket PATH] [--json] COMMAND "
           "[ARGS...]\n\nCommands%s%s:\n", group ? " of " : "",
           group ? group : "");
  list_commands (fp, group);
  fprintf (fp, "\nEvery command takes --socket PATH (default %s), --json "
           "and --help.\nExit status: 0 ok, 1 error, 2 usage.  See "
           "nbdsnapctl(1).\n", NBDSNAPD_DEFAULT_SOCKET);
}

static gboolean
is_group (const char *word)
{
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (commands); i++)
    if (g_strcmp0 (commands[i].group, word) == 0)
      return TRUE;
  return FALSE;
}

static G_GNUC_NORETURN void
usage (const char *fmt, const char *arg)
{
  fprintf (stderr, "nbdsnapctl: ");
  fprintf (stderr, fmt, arg);
  fprintf (stderr, " (see 'nbdsnapctl --help')\n");
  exit (CLI_USAGE);
}

int
main (int argc, char **argv)
{
  struct cli cli = { .socket = g_strdup (NBDSNAPD_DEFAULT_SOCKET) };
  const struct cli_command *cmd = NULL;
  int i = 1, words, status;
  size_t k;
  char **cargv;

  setlocale (LC_ALL, "");
  g_set_prgname ("nbdsnapctl");

  /* Options before the command. */
  for (; i < argc && argv[i][0] == '-'; i++) {
    if (strcmp (argv[i], "--json") == 0)
      cli.json = TRUE;
    else if (strcmp (argv[i], "--socket") == 0 && i + 1 < argc) {
      g_free (cli.socket);
      cli.socket = g_strdup (argv[++i]);
    }
    else if (g_str_has_prefix (argv[i], "--socket=")) {
      g_free (cli.socket);
      cli.socket = g_strdup (argv[i] + 9);
    }
    else if (strcmp (argv[i], "--help") == 0 || strcmp (argv[i], "-h") == 0) {
      help (stdout, NULL);
      g_free (cli.socket);
      return CLI_OK;
    }
    else if (strcmp (argv[i], "--version") == 0) {
      printf ("nbdsnapctl %s\n", PACKAGE_VERSION);
      g_free (cli.socket);
      return CLI_OK;
    }
    else
      usage ("unknown option '%s'", argv[i]);
  }
  if (i >= argc)
    usage ("%s", "no command given");

  if (is_group (argv[i])) {
    const char *group = argv[i];

    if (i + 1 >= argc || argv[i + 1][0] == '-') {
      if (i + 1 < argc && (strcmp (argv[i + 1], "--help") == 0 ||
                           strcmp (argv[i + 1], "-h") == 0)) {
        help (stdout, group);
        g_free (cli.socket);
        return CLI_OK;
      }
      fprintf (stderr, "nbdsnapctl: %s: which command?\n", group);
      help (stderr, group);
      g_free (cli.socket);
      return CLI_USAGE;
    }
    for (k = 0; k < G_N_ELEMENTS (commands); k++)
      if (g_strcmp0 (commands[k].group, group) == 0 &&
          strcmp (commands[k].name, argv[i + 1]) == 0)
        cmd = &commands[k];
    if (cmd == NULL) {
      fprintf (stderr, "nbdsnapctl: unknown command '%s %s' (see "
               "'nbdsnapctl %s --help')\n", group, argv[i + 1], group);
      g_free (cli.socket);
      return CLI_USAGE;
    }
    words = 2;
  }
  else {
    for (k = 0; k < G_N_ELEMENTS (commands); k++)
      if (commands[k].group == NULL && strcmp (commands[k].name, argv[i]) == 0)
        cmd = &commands[k];
    if (cmd == NULL)
      usage ("unknown command '%s'", argv[i]);
    words = 1;
  }

  /* The command sees "nbdsnapctl ARGS..." */
  cargv = g_new0 (char *, argc - i - words + 2);
  cargv[0] = argv[0];
  for (k = 0; k < (size_t) (argc - i - words); k++)
    cargv[k + 1] = argv[i + words + k];
  cli.cmd = cmd;
  status = cmd->run (&cli, argc - i - words + 1, cargv);
  g_free (cargv);
  g_clear_object (&cli.proxy);
  g_clear_object (&cli.conn);
  g_free (cli.socket);
  return status;
}
