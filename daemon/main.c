/* nbdsnapd - the nbdsnap control daemon.  See nbdsnapd(8).
 *
 * Options, logging, daemonizing and signals; everything else is in the
 * daemon library (daemon.c and friends).
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include <glib-unix.h>

#include "conf.h"
#include "daemon.h"

static struct config_options opts;
static gboolean show_version;
static GLogLevelFlags log_mask = G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL |
  G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO;
static gboolean use_syslog;
static int ready_pipe = -1;

static const GOptionEntry entries[] = {
  { "config", 'c', 0, G_OPTION_ARG_FILENAME, &opts.config_file,
    "Configuration file (default " NBDSNAPD_CONF ")", "FILE" },
  { "device", 'd', 0, G_OPTION_ARG_STRING_ARRAY, &opts.devices,
    "Serve device PATH as NAME (repeatable)", "NAME:PATH" },
  { "listen", 'l', 0, G_OPTION_ARG_STRING_ARRAY, &opts.listen,
    "NBD listener (repeatable)", "unix:PATH|tcp:HOST:PORT" },
  { "tls", 0, 0, G_OPTION_ARG_STRING, &opts.tls, "TLS for NBD",
    "off|on|require" },
  { "tls-psk", 0, 0, G_OPTION_ARG_FILENAME, &opts.tls_psk,
    "TLS pre-shared keys (psktool format)", "FILE" },
  { "tls-certificates", 0, 0, G_OPTION_ARG_FILENAME, &opts.tls_certificates,
    "TLS X.509 certificates directory", "DIR" },
  { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &opts.state_dir,
    "State directory", "DIR" },
  { "diff-storage-dir", 0, 0, G_OPTION_ARG_FILENAME, &opts.diff_storage_dir,
    "Where unnamed diff storage files are made", "DIR" },
  { "socket", 's', 0, G_OPTION_ARG_FILENAME, &opts.socket,
    "API socket (default " NBDSNAPD_DEFAULT_SOCKET ")", "PATH" },
  { "nbdkit", 0, 0, G_OPTION_ARG_FILENAME, &opts.nbdkit,
    "nbdkit program (default " NBDKIT_PATH ")", "PATH" },
  { "plugin", 0, 0, G_OPTION_ARG_FILENAME, &opts.plugin,
    "nbdsnap plugin (default " NBDSNAP_PLUGIN_PATH ")", "PATH" },
  { "system-bus", 0, 0, G_OPTION_ARG_NONE, &opts.system_bus,
    "Also serve the API on the system bus", NULL },
  { "foreground", 'f', 0, G_OPTION_ARG_NONE, &opts.foreground,
    "Do not daemonize; log to stderr", NULL },
  { "log-level", 0, 0, G_OPTION_ARG_STRING, &opts.log_level,
    "Log level", "error|warning|info|debug" },
  { "version", 'V', 0, G_OPTION_ARG_NONE, &show_version,
    "Print the version and exit", NULL },
  { NULL },
};

static GLogWriterOutput
log_writer (GLogLevelFlags level, const GLogField *fields, gsize n,
            gpointer opaque)
{
  const char *msg = NULL, *name;
  gsize i;
  int prio;

  if (!(level & log_mask))
    return G_LOG_WRITER_HANDLED;
  for (i = 0; i < n; i++)
    if (strcmp (fields[i].key, "MESSAGE") == 0)
      msg = fields[i].value;
  if (msg == NULL)
    return G_LOG_WRITER_UNHANDLED;
  if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL)) {
    name = "error";
    prio = LOG_ERR;
  }
  else if (level & G_LOG_LEVEL_WARNING) {
    name = "warning";
    prio = LOG_WARNING;
  }
  else if (level & G_LOG_LEVEL_DEBUG) {
    name = "debug";
    prio = LOG_DEBUG;
  }
  else {
    name = "info";
    prio = LOG_INFO;
  }
  if (use_syslog)
    syslog (prio, "%s", msg);
  else
    fprintf (stderr, "nbdsnapd: %s: %s\n", name, msg);
  return G_LOG_WRITER_HANDLED;
}

/* sd_notify(3) without libsystemd. */
static void
notify (const char *state)
{
  const char *path = g_getenv ("NOTIFY_SOCKET");
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  socklen_t len;
  int fd;

  if (path == NULL || path[0] == '\0' ||
      strlen (path) >= sizeof addr.sun_path)
    return;
  strcpy (addr.sun_path, path);
  if (addr.sun_path[0] == '@')
    addr.sun_path[0] = '\0';
  len = offsetof (struct sockaddr_un, sun_path) + strlen (path);
  fd = socket (AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd == -1)
    return;
  if (sendto (fd, state, strlen (state), MSG_NOSIGNAL,
              (struct sockaddr *) &addr, len) == -1)
    g_debug ("sd_notify: %s", g_strerror (errno));
  close (fd);
}

static void
on_ready (struct daemon *d, gboolean ok)
{
  char status = ok ? 0 : (char) d->exit_status;

  if (ok)
    notify ("READY=1");
  if (ready_pipe >= 0) {
    if (write (ready_pipe, &status, 1) == -1)
      g_debug ("ready pipe: %s", g_strerror (errno));
    close (ready_pipe);
    ready_pipe = -1;
    if (ok) {
      /* The parent has gone: stop writing to its terminal. */
      int fd = open ("/dev/null", O_RDWR);
      if (fd >= 0) {
        dup2 (fd, 0);
        dup2 (fd, 1);
        dup2 (fd, 2);
        if (fd > 2)
          close (fd);
      }
    }
  }
}

/* Fork into the background; the parent exits when the child is ready
 * (status 0) or has failed (its status).
 */
static void
daemonize (void)
{
  int p[2];
  pid_t pid;

  if (pipe2 (p, O_CLOEXEC) == -1) {
    fprintf (stderr, "nbdsnapd: pipe: %s\n", strerror (errno));
    exit (1);
  }
  pid = fork ();
  if (pid == -1) {
    fprintf (stderr, "nbdsnapd: fork: %s\n", strerror (errno));
    exit (1);
  }
  if (pid > 0) {
    char status = 1;
    close (p[1]);
    if (read (p[0], &status, 1) != 1)
      status = 1;
    _exit (status);
  }
  close (p[0]);
  ready_pipe = p[1];
  setsid ();
  if (chdir ("/") == -1)
    exit (1);
  openlog ("nbdsnapd", LOG_PID, LOG_DAEMON);
  use_syslog = TRUE;
}

static gboolean
on_signal (gpointer opaque)
{
  daemon_shutdown (opaque);
  return G_SOURCE_CONTINUE;
}

int
main (int argc, char **argv)
{
  g_autoptr (GOptionContext) ctx = NULL;
  g_autoptr (GError) error = NULL;
  struct config *cfg;
  struct daemon *d;
  guint sigterm, sigint;
  int status;

  setlocale (LC_ALL, "");
  ctx = g_option_context_new ("- the nbdsnap control daemon");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_set_description (ctx, "Command line options override the "
                                    "configuration file; see nbdsnapd(8) "
                                    "and nbdsnapd.conf(5).");
  if (!g_option_context_parse (ctx, &argc, &argv, &error)) {
    fprintf (stderr, "nbdsnapd: %s (see nbdsnapd --help)\n", error->message);
    return 2;
  }
  if (show_version) {
    printf ("nbdsnapd %s\n", PACKAGE_VERSION);
    return 0;
  }
  if (argc > 1) {
    fprintf (stderr, "nbdsnapd: unexpected argument '%s' (see nbdsnapd "
             "--help)\n", argv[1]);
    return 2;
  }
  cfg = config_load (&opts, &error);
  if (cfg == NULL) {
    fprintf (stderr, "nbdsnapd: %s\n", error->message);
    return 2;
  }
  log_mask = cfg->log_level;
  g_log_set_writer_func (log_writer, NULL, NULL);
  signal (SIGPIPE, SIG_IGN);
  if (!cfg->foreground)
    daemonize ();

  d = daemon_new (cfg);
  d->ready_fn = on_ready;
  if (!daemon_start (d, &error)) {
    g_critical ("%s", error->message);
    d->exit_status = 1;
    on_ready (d, FALSE);
    daemon_free (d);
    return 1;
  }
  sigterm = g_unix_signal_add (SIGTERM, on_signal, d);
  sigint = g_unix_signal_add (SIGINT, on_signal, d);
  g_main_loop_run (d->loop);
  notify ("STOPPING=1");

  g_source_remove (sigint);
  g_source_remove (sigterm);
  status = d->exit_status;
  daemon_free (d);
  g_message ("stopped");
  return status;
}
