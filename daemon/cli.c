/* nbdsnapctl - shared parts of the commands: options, the connection to
 * nbdsnapd, errors and argument parsing.
 */

#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gio/gunixsocketaddress.h>

#include "cli.h"
#include "error.h"
#include "util.h"

static char *opt_socket;
static gboolean opt_json;

static const GOptionEntry common_entries[] = {
  { "socket", 0, 0, G_OPTION_ARG_FILENAME, &opt_socket,
    "nbdsnapd's API socket", "PATH" },
  { "json", 0, 0, G_OPTION_ARG_NONE, &opt_json,
    "Output JSON (stable keys, see nbdsnapctl(1))", NULL },
  { NULL },
};

static char *
command_name (const struct cli *cli)
{
  if (cli->cmd == NULL)
    return g_strdup ("nbdsnapctl");
  if (cli->cmd->group)
    return g_strdup_printf ("%s %s", cli->cmd->group, cli->cmd->name);
  return g_strdup (cli->cmd->name);
}

void
cli_usage_error (struct cli *cli, const char *fmt, ...)
{
  g_autofree char *name = command_name (cli);
  g_autofree char *msg = NULL;
  va_list ap;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  fprintf (stderr, "nbdsnapctl: %s: %s (see 'nbdsnapctl %s --help')\n",
           name, msg, name);
  /* exit() skips the g_autofree cleanups: free them (leak checkers). */
  g_clear_pointer (&msg, g_free);
  g_clear_pointer (&name, g_free);
  exit (CLI_USAGE);
}

void
cli_parse (struct cli *cli, const GOptionEntry *entries, int *argc,
           char ***argv, int min, int max)
{
  g_autofree char *name = command_name (cli);
  g_autofree char *param = g_strdup_printf ("%s%s%s", name,
                                            cli->cmd->args[0] ? " " : "",
                                            cli->cmd->args);
  g_autoptr (GOptionContext) ctx = g_option_context_new (param);
  g_autoptr (GError) error = NULL;
  int n;

  g_option_context_set_summary (ctx, cli->cmd->summary);
  /* The command's options, then those of every command: --help shows
   * them all.
   */
  if (entries)
    g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_add_main_entries (ctx, common_entries, NULL);
  opt_socket = NULL;
  opt_json = FALSE;
  if (!g_option_context_parse (ctx, argc, argv, &error))
    cli_usage_error (cli, "%s", error->message);
  if (opt_socket) {
    g_free (cli->socket);
    cli->socket = opt_socket;
  }
  cli->json |= opt_json;

  /* Drop the program name; "--" ends the options. */
  (*argc)--;
  (*argv)++;
  if (*argc > 0 && strcmp ((*argv)[0], "--") == 0) {
    (*argc)--;
    (*argv)++;
  }
  n = *argc;
  if (n < min || (max >= 0 && n > max)) {
    if (n > 0 && (*argv)[0][0] == '-' && max >= 0 && n > max)
      cli_usage_error (cli, "unknown option '%s'", (*argv)[0]);
    if (max >= 0 && n > max)
      cli_usage_error (cli, "unexpected argument '%s' (usage: nbdsnapctl %s)",
                       (*argv)[max], param);
    cli_usage_error (cli, "missing argument (usage: nbdsnapctl %s)", param);
  }
}

/* "cannot connect" on stderr (and with --json, as an error document on
 * stdout), exit CLI_FAILED.  Frees @why.
 */
static G_GNUC_NORETURN void
connect_failed (struct cli *cli, char *why, const char *hint)
{
  char *msg = g_strdup_printf ("cannot connect to nbdsnapd at %s: %s%s",
                               cli->socket, why, hint);
  GVariantBuilder b, eb;

  fprintf (stderr, "nbdsnapctl: %s\n", msg);
  if (cli->json) {
    g_variant_builder_init (&eb, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add (&eb, "{sv}", "name",
                           g_variant_new_string ("org.nbdsnap.Error.Failed"));
    g_variant_builder_add (&eb, "{sv}", "code",
                           g_variant_new_maybe (G_VARIANT_TYPE_STRING, NULL));
    g_variant_builder_add (&eb, "{sv}", "message", g_variant_new_string (msg));
    g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add (&b, "{sv}", "error", g_variant_builder_end (&eb));
    cli_json_write (g_variant_builder_end (&b));
  }
  g_free (msg);
  g_free (why);
  exit (CLI_FAILED);
}

/* Connect to the API socket.  A unix socket whose listen queue is full
 * (many clients at once: GDBusServer listens with a short backlog)
 * refuses with EAGAIN at once; that is a busy daemon, not an error, so
 * try again for a while, backing off from 1 ms to 100 ms.
 */
static GSocketConnection *
connect_api (GSocketClient *client, GSocketAddress *addr, GError **error)
{
  const gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;
  gulong delay_us = 1000;
  GSocketConnection *stream;

  for (;;) {
    GError *e = NULL;

    stream = g_socket_client_connect (client, G_SOCKET_CONNECTABLE (addr),
                                      NULL, &e);
    if (stream != NULL)
      return stream;
    if (!g_error_matches (e, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK) ||
        g_get_monotonic_time () >= deadline) {
      g_propagate_error (error, e);
      return NULL;
    }
    g_error_free (e);
    g_usleep (delay_us);
    delay_us = MIN (delay_us * 2, 100000);
  }
}

#define ACCESS_HINT " (only root and the socket group may use nbdsnapd)"

NbdsnapManager1 *
cli_proxy (struct cli *cli)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GSocketClient) client = NULL;
  g_autoptr (GSocketAddress) addr = NULL;
  g_autoptr (GSocketConnection) stream = NULL;
  char *why;
  const char *hint = "";

  if (cli->proxy)
    return cli->proxy;
  nbdsnap_error_quark ();

  /* Connect the socket first, then authenticate on it: a failure to
   * connect (no daemon, no access to the socket file) and a refusal by
   * the daemon (its peer check closes the connection during the
   * handshake) are told apart.
   */
  client = g_socket_client_new ();
  addr = g_unix_socket_address_new (cli->socket);
  stream = connect_api (client, addr, &error);
  if (stream == NULL) {
    if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND) ||
        g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED))
      hint = " (is nbdsnapd running?)";
    else if (g_error_matches (error, G_IO_ERROR,
                              G_IO_ERROR_PERMISSION_DENIED))
      hint = ACCESS_HINT;
    why = g_strdup (error->message);
    goto fail;
  }
  cli->conn = g_dbus_connection_new_sync
    (G_IO_STREAM (stream), NULL,
     G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT, NULL, NULL, &error);
  if (cli->conn == NULL) {
    /* GLib's message ("Unexpected lack of content...") says nothing
     * useful to a user here.
     */
    g_debug ("authentication: %s", error->message);
    why = g_strdup ("access denied");
    hint = ACCESS_HINT;
    goto fail;
  }
  cli->proxy = nbdsnap_manager1_proxy_new_sync
    (cli->conn, G_DBUS_PROXY_FLAGS_DO_NOT_LOAD_PROPERTIES |
     G_DBUS_PROXY_FLAGS_DO_NOT_CONNECT_SIGNALS, NULL,
     "/org/nbdsnap/Manager1", NULL, &error);
  if (cli->proxy == NULL) {
    fprintf (stderr, "nbdsnapctl: %s\n", error->message);
    exit (CLI_FAILED);
  }
  /* Takes with hooks and wait-event may take long: no client timeout. */
  g_dbus_proxy_set_default_timeout (G_DBUS_PROXY (cli->proxy), G_MAXINT);
  return cli->proxy;

 fail:
  /* exit() skips the g_auto cleanups: free them (leak checkers). */
  g_clear_error (&error);
  g_clear_object (&stream);
  g_clear_object (&addr);
  g_clear_object (&client);
  connect_failed (cli, why, hint);
}

int
cli_error (struct cli *cli, const GError *error)
{
  g_autoptr (GError) e = g_error_copy (error);
  g_autofree char *remote = g_dbus_error_get_remote_error (error);
  g_autofree char *msg = NULL;
  const char *code = NULL;
  const char *name = remote;

  g_dbus_error_strip_remote_error (e);
  if (e->domain == NBDSNAP_ERROR) {
    code = nbdsnap_error_errno_name (e->code);
    name = nbdsnap_error_dbus_name (e->code);
  }
  if (g_error_matches (e, G_DBUS_ERROR, G_DBUS_ERROR_NO_REPLY) ||
      g_error_matches (e, G_IO_ERROR, G_IO_ERROR_CLOSED))
    msg = g_strdup_printf ("nbdsnapd went away: %s", e->message);
  else
    msg = g_strdup (e->message);
  fprintf (stderr, "nbdsnapctl: %s\n", msg);
  if (cli->json) {
    GVariantBuilder b, eb;

    g_variant_builder_init (&eb, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add (&eb, "{sv}", "name", g_variant_new_string
                           (name ? name : "org.nbdsnap.Error.Failed"));
    g_variant_builder_add (&eb, "{sv}", "code",
                           g_variant_new_maybe (G_VARIANT_TYPE_STRING,
                                                code ?
                                                g_variant_new_string (code)
                                                : NULL));
    g_variant_builder_add (&eb, "{sv}", "message", g_variant_new_string (msg));
    g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add (&b, "{sv}", "error", g_variant_builder_end (&eb));
    cli_json_write (g_variant_builder_end (&b));
  }
  return CLI_FAILED;
}

int
cli_fail (struct cli *cli, const char *fmt, ...)
{
  g_autoptr (GError) e = NULL;
  va_list ap;

  va_start (ap, fmt);
  e = g_error_new_valist (NBDSNAP_ERROR, NBDSNAP_ERROR_FAILED, fmt, ap);
  va_end (ap);
  return cli_error (cli, e);
}

GVariant *
cli_no_options (void)
{
  return g_variant_new_array (G_VARIANT_TYPE ("{sv}"), NULL, 0);
}

guint64
cli_parse_size (struct cli *cli, const char *what, const char *s)
{
  g_autoptr (GError) error = NULL;
  guint64 v;

  if (!nbdsnap_parse_size (what, s, &v, &error))
    cli_usage_error (cli, "%s", error->message);
  return v;
}

char *
cli_check_id (struct cli *cli, const char *s)
{
  if (!nbdsnap_parse_uuid (s, NULL))
    cli_usage_error (cli, "'%s' is not a snapshot id (a UUID)", s);
  return g_ascii_strdown (s, -1);
}

char *
cli_absolute_path (const char *path)
{
  return g_canonicalize_filename (path, NULL);
}
