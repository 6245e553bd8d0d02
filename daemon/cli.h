/* nbdsnapctl - the command-line client of nbdsnapd.
 *
 * Each command is one row of the table in nbdsnapctl.c and one function
 * (cmd_*.c); a command parses its options with cli_parse(), calls the
 * daemon through cli_proxy() and prints with the helpers below, which
 * give human output or, with --json, one JSON document with stable keys.
 * To add a command, write its function in a file of its own and add a
 * row to the table.
 */

#ifndef NBDSNAPCTL_CLI_H
#define NBDSNAPCTL_CLI_H

#include <gio/gio.h>

#include "nbdsnap-generated.h"

/* Exit statuses. */
#define CLI_OK 0
#define CLI_FAILED 1
#define CLI_USAGE 2

struct cli;

/**
 * struct cli_command - one row of the command table.
 * @group: first word ("device", "cbt", "snapshot"), or NULL.
 * @name: the command (second word, or the only one).
 * @args: positional arguments and required options, for --help.
 * @summary: one line for the command list and --help.
 * @run: the command; returns an exit status.
 */
struct cli_command {
  const char *group;
  const char *name;
  const char *args;
  const char *summary;
  int (*run) (struct cli *cli, int argc, char **argv);
};

/**
 * struct cli - the state of one nbdsnapctl run.
 * @socket: the daemon's API socket.
 * @json: --json was given.
 * @cmd: the command running.
 * @conn: the connection, once made.
 * @proxy: the manager proxy, once made.
 */
struct cli {
  char *socket;
  gboolean json;
  const struct cli_command *cmd;
  GDBusConnection *conn;
  NbdsnapManager1 *proxy;
};

/* Parse the command's options (@entries, may be NULL) and the common
 * ones (--socket, --json, --help).  Leaves the positional arguments in
 * *@argc / *@argv (without the program name); exits with CLI_USAGE if
 * there are fewer than @min or more than @max (-1: any number).
 */
void cli_parse (struct cli *cli, const GOptionEntry *entries, int *argc,
                char ***argv, int min, int max);

/* A usage error: one line on stderr, exit CLI_USAGE. */
void cli_usage_error (struct cli *cli, const char *fmt, ...)
  G_GNUC_PRINTF (2, 3) G_GNUC_NORETURN;

/* The proxy; exits with CLI_FAILED and a clear message if the daemon
 * cannot be reached.
 */
NbdsnapManager1 *cli_proxy (struct cli *cli);

/* Report a failed call or local failure; returns CLI_FAILED. */
int cli_error (struct cli *cli, const GError *error);
int cli_fail (struct cli *cli, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

/* An empty a{sv} for options. */
GVariant *cli_no_options (void);

/* Argument parsers; each exits with CLI_USAGE on bad input. */
guint64 cli_parse_size (struct cli *cli, const char *what, const char *s);
char *cli_check_id (struct cli *cli, const char *s);
char *cli_absolute_path (const char *path);

/* Output. */

/* With --json: print @v (sunk) as JSON.  a{sv} become objects, arrays
 * arrays, maybe types null.  Returns TRUE if it printed (json mode).
 */
gboolean cli_print_json (struct cli *cli, GVariant *v);
/* Print @v as JSON regardless of mode. */
void cli_json_write (GVariant *v);

/* "8.0 MiB (8388608 bytes)" or "512 B" (free with g_free). */
char *cli_size_long (guint64 bytes);
/* "8.0 MiB" */
char *cli_size (guint64 bytes);
/* A local time from microseconds since the epoch, "never" for 0. */
char *cli_time (gint64 us, const char *zero);

/* "Label:   value" lines, aligned. */
void cli_field (const char *label, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

/* Simple aligned tables. */
struct cli_table;
struct cli_table *cli_table_new (guint ncols, ...);
void cli_table_add (struct cli_table *t, ...);
void cli_table_print (struct cli_table *t);

/* Lookups in an a{sv} with defaults. */
const char *cli_dict_str (GVariant *dict, const char *key);
guint64 cli_dict_u64 (GVariant *dict, const char *key);
gint64 cli_dict_i64 (GVariant *dict, const char *key);
gboolean cli_dict_bool (GVariant *dict, const char *key);

/* The commands. */
int cmd_version (struct cli *cli, int argc, char **argv);
int cmd_device_list (struct cli *cli, int argc, char **argv);
int cmd_device_add (struct cli *cli, int argc, char **argv);
int cmd_device_remove (struct cli *cli, int argc, char **argv);
int cmd_cbt_info (struct cli *cli, int argc, char **argv);
int cmd_cbt_map (struct cli *cli, int argc, char **argv);
int cmd_cbt_changed (struct cli *cli, int argc, char **argv);
int cmd_cbt_mark_dirty (struct cli *cli, int argc, char **argv);
int cmd_snapshot_create (struct cli *cli, int argc, char **argv);
int cmd_snapshot_take (struct cli *cli, int argc, char **argv);
int cmd_snapshot_destroy (struct cli *cli, int argc, char **argv);
int cmd_snapshot_list (struct cli *cli, int argc, char **argv);
int cmd_snapshot_info (struct cli *cli, int argc, char **argv);
int cmd_snapshot_append_storage (struct cli *cli, int argc, char **argv);
int cmd_snapshot_wait_event (struct cli *cli, int argc, char **argv);

#endif /* NBDSNAPCTL_CLI_H */
