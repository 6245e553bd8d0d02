/* nbdsnap - the supervisor: runs nbdkit with the nbdsnap plugin.
 * See supervisor.h for the states.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib-unix.h>

#include "error.h"
#include "listener.h"
#include "supervisor.h"

#define READY_TIMEOUT_US (60 * G_USEC_PER_SEC)
#define STOP_TIMEOUT_S 10
#define QUICK_DEATH_US (2 * G_USEC_PER_SEC)

static void child_exited (GPid pid, gint status, gpointer opaque);
static void start_ready_poll (struct supervisor *s);

struct supervisor *
supervisor_new (const struct config *cfg, GPtrArray *listeners,
                struct ctl_link *link, const struct supervisor_ops *ops,
                void *opaque)
{
  struct supervisor *s = g_new0 (struct supervisor, 1);

  s->cfg = cfg;
  s->listeners = listeners;
  s->link = link;
  s->ops = ops;
  s->opaque = opaque;
  s->ctl_path = g_build_filename (cfg->state_dir, "ctl.sock", NULL);
  s->pid_path = g_build_filename (cfg->state_dir, "nbdkit.pid", NULL);
  return s;
}

static void
close_events (struct supervisor *s)
{
  if (s->events_source)
    g_source_remove (s->events_source);
  s->events_source = 0;
  ctl_client_close (s->events);
  s->events = NULL;
}

void
supervisor_free (struct supervisor *s)
{
  if (s == NULL)
    return;
  close_events (s);
  if (s->ready_cancel)
    g_cancellable_cancel (s->ready_cancel);
  g_clear_object (&s->ready_cancel);
  if (s->restart_timer)
    g_source_remove (s->restart_timer);
  if (s->kill_timer)
    g_source_remove (s->kill_timer);
  if (s->child_watch)
    g_source_remove (s->child_watch);
  g_free (s->ctl_path);
  g_free (s->pid_path);
  g_free (s);
}

/* Is @pid an nbdkit process started for the control socket @ctl (its
 * command line holds control=@ctl)?  A pid in a stale pid file may have
 * been reused by any process since, another nbdkit included.
 */
static gboolean
is_nbdkit (pid_t pid, const char *ctl)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/comm", (int) pid);
  g_autofree char *cpath = g_strdup_printf ("/proc/%d/cmdline", (int) pid);
  g_autofree char *comm = NULL, *cmdline = NULL;
  g_autofree char *want = g_strdup_printf ("control=%s", ctl);
  gsize len = 0, i;

  if (!g_file_get_contents (path, &comm, NULL, NULL) ||
      !g_str_has_prefix (comm, "nbdkit") ||
      !g_file_get_contents (cpath, &cmdline, &len, NULL))
    return FALSE;
  for (i = 0; i < len; i += strlen (cmdline + i) + 1)
    if (strcmp (cmdline + i, want) == 0)
      return TRUE;
  return FALSE;
}

void
supervisor_reap_stale (const struct config *cfg)
{
  g_autofree char *pid_path = g_build_filename (cfg->state_dir, "nbdkit.pid",
                                                NULL);
  g_autofree char *ctl = g_build_filename (cfg->state_dir, "ctl.sock", NULL);
  g_autofree char *text = NULL;
  pid_t pid;
  int i;

  if (!g_file_get_contents (pid_path, &text, NULL, NULL))
    return;
  pid = atoi (text);
  if (pid <= 1 || kill (pid, 0) == -1 || !is_nbdkit (pid, ctl)) {
    unlink (pid_path);
    return;
  }
  g_warning ("an nbdkit from an earlier nbdsnapd is still running (pid %d): "
             "stopping it; its snapshots are lost", (int) pid);
  kill (pid, SIGTERM);
  for (i = 0; i < 500 && kill (pid, 0) == 0 && is_nbdkit (pid, ctl); i++)
    g_usleep (10000);
  if (kill (pid, 0) == 0 && is_nbdkit (pid, ctl)) {
    kill (pid, SIGKILL);
    for (i = 0; i < 200 && kill (pid, 0) == 0 && is_nbdkit (pid, ctl); i++)
      g_usleep (10000);
  }
  unlink (pid_path);
}

static char **
build_argv (struct supervisor *s)
{
  const struct config *c = s->cfg;
  GPtrArray *a = g_ptr_array_new ();
  g_autoptr (GPtrArray) devices = s->ops->devices (s->opaque);
  guint i;

  g_ptr_array_add (a, g_strdup (c->nbdkit));
  g_ptr_array_add (a, g_strdup ("--foreground"));
  g_ptr_array_add (a, g_strdup (c->foreground ? "--log=stderr"
                                : "--log=syslog"));
  if (c->nbdkit_verbose)
    g_ptr_array_add (a, g_strdup ("--verbose"));
  if (c->tls != TLS_OFF) {
    g_ptr_array_add (a, g_strdup_printf ("--tls=%s", tls_mode_name (c->tls)));
    if (c->tls_psk)
      g_ptr_array_add (a, g_strdup_printf ("--tls-psk=%s", c->tls_psk));
    else
      g_ptr_array_add (a, g_strdup_printf ("--tls-certificates=%s",
                                           c->tls_certificates));
  }
  g_ptr_array_add (a, g_strdup_printf ("--pidfile=%s", s->pid_path));
  g_ptr_array_add (a, g_strdup (c->plugin));
  g_ptr_array_add (a, g_strdup_printf ("control=%s", s->ctl_path));
  g_ptr_array_add (a, g_strdup_printf ("statedir=%s", c->state_dir));
  g_ptr_array_add (a, g_strdup_printf ("allow-original-over-tcp=%s",
                                       c->allow_original_over_tcp
                                       ? "true" : "false"));
  g_ptr_array_add (a, g_strdup_printf ("image-readonly=%s",
                                       c->image_readonly ? "true" : "false"));
  for (i = 0; c->plugin_params && c->plugin_params[i]; i++)
    g_ptr_array_add (a, g_strdup (c->plugin_params[i]));
  for (i = 0; devices && i < devices->len; i++) {
    const struct device_spec *d = g_ptr_array_index (devices, i);
    g_ptr_array_add (a, g_strdup_printf ("device=%s:%s", d->name, d->path));
  }
  g_ptr_array_add (a, NULL);
  return (char **) g_ptr_array_free (a, FALSE);
}

/* nbdkit's keeper.
 *
 * nbdkit (1.32 as Debian builds it) asks the kernel for SIGTERM when its
 * parent dies (PR_SET_PDEATHSIG), so as our direct child it would stop
 * serving the originals whenever nbdsnapd dies: every client cut off,
 * writes failing until someone restarts us (DESIGN invariant 2 says a
 * dead daemon must not do that).  So we fork a keeper, which forks and
 * execs nbdkit and then only waits: it forwards the stop signals to
 * nbdkit and exits with nbdkit's status (or dies of its signal), so
 * that supervising the keeper is supervising nbdkit.  If nbdsnapd
 * dies, the keeper (which has no death signal) and nbdkit live on, and
 * the next nbdsnapd stops that nbdkit through its pid file
 * (supervisor_reap_stale).  Keeper and nbdkit share a process group
 * (the keeper's pid), which SIGKILL is sent to.  nbdkit's pid reaches
 * us through a pipe.  The keeper is a forked copy of a threaded
 * process: async-signal-safe calls only.
 */
static volatile pid_t keeper_child;

static void
keeper_forward (int sig)
{
  if (keeper_child > 0)
    kill (keeper_child, sig);
}

static void __attribute__ ((noreturn))
keeper_run (pid_t child)
{
  static const int forwarded[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT,
                                   SIGUSR1, SIGUSR2 };
  struct sigaction sa = { .sa_handler = keeper_forward };
  sigset_t set;
  size_t i;
  int status;

  keeper_child = child;
  prctl (PR_SET_NAME, "nbdsnapd-keep", 0, 0, 0);
  for (i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
    sigaction (forwarded[i], &sa, NULL);
  for (;;) {
    if (waitpid (child, &status, 0) == child)
      break;
    if (errno != EINTR)
      _exit (126);
  }
  if (WIFSIGNALED (status)) {
    struct sigaction dfl = { .sa_handler = SIG_DFL };

    sigaction (WTERMSIG (status), &dfl, NULL);
    sigemptyset (&set);
    sigaddset (&set, WTERMSIG (status));
    sigprocmask (SIG_UNBLOCK, &set, NULL);
    kill (getpid (), WTERMSIG (status));
    _exit (128 + WTERMSIG (status));
  }
  _exit (WIFEXITED (status) ? WEXITSTATUS (status) : 126);
}

/* Format @v into @buf (async-signal-safe). */
static void
format_uint (char *buf, unsigned long v)
{
  char tmp[24];
  int n = 0;

  do {
    tmp[n++] = '0' + v % 10;
    v /= 10;
  } while (v);
  while (n)
    *buf++ = tmp[--n];
  *buf = '\0';
}

static gboolean
spawn (struct supervisor *s, GError **error)
{
  g_auto (GStrv) argv = build_argv (s);
  g_auto (GStrv) env = g_get_environ ();
  g_autoptr (GString) names = g_string_new (NULL);
  g_autofree char *cmdline = NULL;
  g_autofree int *fds = NULL;
  char *listen_pid;
  guint nfds = s->listeners->len, i, nenv;
  int devnull, pidpipe[2];
  pid_t pid, keeper;

  env = g_environ_unsetenv (env, "LISTEN_PID");
  env = g_environ_unsetenv (env, "LISTEN_FDS");
  env = g_environ_unsetenv (env, "LISTEN_FDNAMES");
  env = g_environ_unsetenv (env, "NOTIFY_SOCKET");
  fds = g_new (int, nfds);
  for (i = 0; i < nfds; i++) {
    const struct listener *l = g_ptr_array_index (s->listeners, i);
    fds[i] = l->fd;
    g_string_append_printf (names, "%s%s", i ? ":" : "",
                            l->type == LISTEN_UNIX ? "unix" : "tcp");
  }
  {
    char n[16];
    g_snprintf (n, sizeof n, "%u", nfds);
    env = g_environ_setenv (env, "LISTEN_FDS", n, TRUE);
  }
  env = g_environ_setenv (env, "LISTEN_FDNAMES", names->str, TRUE);
  /* LISTEN_PID must be the child's own pid: room for it now, filled in
   * after fork.
   */
  nenv = g_strv_length (env);
  env = g_renew (char *, env, nenv + 2);
  env[nenv] = g_strdup ("LISTEN_PID=00000000000000000000");
  env[nenv + 1] = NULL;
  listen_pid = env[nenv] + strlen ("LISTEN_PID=");

  devnull = open ("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull == -1) {
    g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_FAILED,
                 "/dev/null: %s", g_strerror (errno));
    return FALSE;
  }
  cmdline = g_strjoinv (" ", argv);
  unlink (s->pid_path);
  if (pipe2 (pidpipe, O_CLOEXEC) == -1) {
    int e = errno;
    close (devnull);
    g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_FAILED,
                 "cannot start nbdkit: pipe: %s", g_strerror (e));
    return FALSE;
  }

  pid = fork ();
  if (pid == -1) {
    int e = errno;
    close (devnull);
    close (pidpipe[0]);
    close (pidpipe[1]);
    g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_FAILED,
                 "cannot start nbdkit: fork: %s", g_strerror (e));
    return FALSE;
  }
  if (pid == 0) {
    /* The child: async-signal-safe calls only. */
    struct sigaction sa = { .sa_handler = SIG_DFL };
    sigset_t none;
    int sig;

    sigemptyset (&none);
    sigprocmask (SIG_SETMASK, &none, NULL);
    for (sig = 1; sig < NSIG; sig++)
      if (sig != SIGKILL && sig != SIGSTOP)
        sigaction (sig, &sa, NULL);
    setpgid (0, 0);             /* terminal signals are for nbdsnapd */
    for (i = 0; i < nfds; i++)
      fds[i] = fcntl (fds[i], F_DUPFD_CLOEXEC, 3 + nfds);
    for (i = 0; i < nfds; i++)
      if (fds[i] == -1 || dup2 (fds[i], 3 + i) == -1)
        _exit (126);
    dup2 (devnull, 0);
    if (!s->cfg->foreground) {
      dup2 (devnull, 1);
      dup2 (devnull, 2);
    }
    keeper = fork ();
    if (keeper == -1)
      _exit (126);
    if (keeper == 0) {
      format_uint (listen_pid, (unsigned long) getpid ());
      execve (argv[0], argv, env);
      _exit (127);
    }
    /* The keeper holds nothing of ours (listeners, API and ctl
     * sockets): nbdkit has what it needs.
     */
    if (write (pidpipe[1], &keeper, sizeof keeper) != sizeof keeper)
      _exit (126);
    close_range (3, ~0U, 0);
    keeper_run (keeper);
  }
  close (devnull);
  close (pidpipe[1]);
  {
    ssize_t n;

    do
      n = read (pidpipe[0], &keeper, sizeof keeper);
    while (n == -1 && errno == EINTR);
    close (pidpipe[0]);
    if (n != sizeof keeper)
      keeper = pid;             /* the keeper failed; it exits at once */
  }

  g_message ("started nbdkit (pid %d): %s", (int) keeper, cmdline);
  s->keeper = pid;
  s->pid = keeper;
  s->started_at = g_get_monotonic_time ();
  s->state = SUPERVISOR_STARTING;
  s->child_watch = g_child_watch_add (pid, child_exited, s);
  start_ready_poll (s);
  return TRUE;
}

/* Readiness: connect to the control socket and ask VERSION_INFO. */

struct ready_result {
  struct ctl_client *req;
  struct ctl_client *events;
  struct nbdsnap_ctl_version version;
};

static void
ready_result_free (struct ready_result *r)
{
  ctl_client_close (r->req);
  ctl_client_close (r->events);
  g_free (r);
}

static void
ready_thread (GTask *task, gpointer source, gpointer data,
              GCancellable *cancel)
{
  const char *path = data;
  gint64 deadline = g_get_monotonic_time () + READY_TIMEOUT_US;

  while (!g_cancellable_is_cancelled (cancel)) {
    struct ctl_client *c = ctl_client_connect (path);

    if (c) {
      struct nbdsnap_ctl_version v;
      char msg[NBDSNAP_CTL_ERRMSG_MAX + 1] = "";
      size_t n = 0;
      int r = ctl_client_call (c, NBDSNAP_CTL_VERSION_INFO, NULL, 0, -1, &v,
                               sizeof v, &n, msg, sizeof msg);

      if (r == 0 && n >= sizeof v) {
        struct ctl_client *ev = ctl_client_connect (path);
        if (ev) {
          struct ready_result *res = g_new0 (struct ready_result, 1);
          res->req = c;
          res->events = ev;
          res->version = v;
          g_task_return_pointer (task, res,
                                 (GDestroyNotify) ready_result_free);
          return;
        }
      }
      ctl_client_close (c);
      if (r > 0) {
        g_task_return_new_error (task, NBDSNAP_ERROR, NBDSNAP_ERROR_FAILED,
                                 "the plugin refused VERSION_INFO: %s", msg);
        return;
      }
    }
    if (g_get_monotonic_time () > deadline) {
      g_task_return_new_error (task, NBDSNAP_ERROR, NBDSNAP_ERROR_TIMED_OUT,
                               "nbdkit did not open its control socket %s "
                               "within %d s", path,
                               (int) (READY_TIMEOUT_US / G_USEC_PER_SEC));
      return;
    }
    g_usleep (10000);
  }
  g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_CANCELLED,
                           "cancelled");
}

static gboolean
events_ready (gint fd, GIOCondition cond, gpointer opaque)
{
  struct supervisor *s = opaque;
  struct nbdsnap_ctl_event ev;

  while (s->events && ctl_client_next_event (s->events, &ev, 0) == 0)
    s->ops->event (s->opaque, &ev);
  if (errno != ETIMEDOUT || (cond & (G_IO_HUP | G_IO_ERR))) {
    g_debug ("ctl: the event connection closed");
    s->events_source = 0;
    ctl_client_close (s->events);
    s->events = NULL;
    return G_SOURCE_REMOVE;
  }
  return G_SOURCE_CONTINUE;
}

static void
ready_done (GObject *source, GAsyncResult *res, gpointer opaque)
{
  struct supervisor *s = opaque;
  g_autoptr (GError) error = NULL;
  struct ready_result *r = g_task_propagate_pointer (G_TASK (res), &error);
  gboolean first;

  if (g_cancellable_is_cancelled (g_task_get_cancellable (G_TASK (res)))) {
    if (r)
      ready_result_free (r);    /* that nbdkit is gone already */
    return;
  }
  if (r == NULL) {
    if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
      return;                   /* nbdkit died or we stop: handled there */
    g_warning ("%s: killing nbdkit (pid %d)", error->message, (int) s->pid);
    if (s->keeper > 0)
      kill (-s->keeper, SIGKILL);
    return;
  }
  g_clear_object (&s->ready_cancel);
  if (s->state != SUPERVISOR_STARTING) {
    ready_result_free (r);
    return;
  }
  memcpy (s->plugin_version, r->version.plugin_version,
          sizeof r->version.plugin_version);
  s->plugin_version[sizeof r->version.plugin_version] = '\0';
  s->protocol = r->version.protocol;
  s->events = r->events;
  r->events = NULL;
  s->events_source = g_unix_fd_add (s->events->fd,
                                    G_IO_IN | G_IO_HUP | G_IO_ERR,
                                    events_ready, s);
  ctl_link_up (s->link, r->req);
  r->req = NULL;
  ready_result_free (r);

  s->state = SUPERVISOR_RUNNING;
  first = !s->ever_ready;
  s->ever_ready = TRUE;
  g_message ("nbdkit (pid %d) is ready: plugin %s, ctl protocol %u, "
             "%.1f ms after start", (int) s->pid, s->plugin_version,
             s->protocol,
             (g_get_monotonic_time () - s->started_at) / 1000.0);
  if (s->died_at) {
    s->last_restart_us = g_get_monotonic_time () - s->died_at;
    s->died_at = 0;
    g_message ("data plane restarted: originals served again %.1f ms "
               "after nbdkit died (restart %u)", s->last_restart_us / 1000.0,
               s->restarts);
  }
  s->ops->ready (s->opaque, first);
}

static void
start_ready_poll (struct supervisor *s)
{
  GTask *task;

  g_clear_object (&s->ready_cancel);
  s->ready_cancel = g_cancellable_new ();
  task = g_task_new (NULL, s->ready_cancel, ready_done, s);
  g_task_set_task_data (task, g_strdup (s->ctl_path), g_free);
  g_task_run_in_thread (task, ready_thread);
  g_object_unref (task);
}

static gboolean
restart_now (gpointer opaque)
{
  struct supervisor *s = opaque;
  g_autoptr (GError) error = NULL;

  s->restart_timer = 0;
  if (s->state == SUPERVISOR_STOPPING || s->state == SUPERVISOR_STOPPED)
    return G_SOURCE_REMOVE;
  s->restarts++;
  if (!spawn (s, &error)) {
    g_warning ("%s; trying again in 1 s", error->message);
    s->restart_timer = g_timeout_add_seconds (1, restart_now, s);
  }
  return G_SOURCE_REMOVE;
}

static char *
describe_status (gint status)
{
  if (WIFEXITED (status))
    return g_strdup_printf ("exit status %d", WEXITSTATUS (status));
  if (WIFSIGNALED (status))
    return g_strdup_printf ("signal %d (%s)", WTERMSIG (status),
                            g_strsignal (WTERMSIG (status)));
  return g_strdup_printf ("status 0x%x", status);
}

static void
child_exited (GPid pid, gint status, gpointer opaque)
{
  struct supervisor *s = opaque;
  g_autofree char *how = describe_status (status);
  gint64 lived = g_get_monotonic_time () - s->started_at;
  guint delay_ms = 0;

  g_spawn_close_pid (pid);
  pid = s->pid;                 /* nbdkit's, for the messages */
  s->child_watch = 0;
  s->pid = 0;
  s->keeper = 0;
  if (s->ready_cancel)
    g_cancellable_cancel (s->ready_cancel);
  close_events (s);
  ctl_link_down (s->link);
  s->plugin_version[0] = '\0';

  if (s->state == SUPERVISOR_STOPPING) {
    g_message ("nbdkit (pid %d) stopped: %s", (int) pid, how);
    if (s->kill_timer)
      g_source_remove (s->kill_timer);
    s->kill_timer = 0;
    s->state = SUPERVISOR_STOPPED;
    unlink (s->pid_path);
    s->ops->stopped (s->opaque);
    return;
  }
  if (!s->ever_ready) {
    g_autofree char *why = g_strdup_printf ("nbdkit exited during startup "
                                            "with %s (its messages are "
                                            "above)", how);
    s->state = SUPERVISOR_STOPPED;
    s->ops->failed (s->opaque, why);
    return;
  }

  if (s->died_at == 0)
    s->died_at = g_get_monotonic_time ();
  g_warning ("nbdkit (pid %d) died: %s; restarting it", (int) pid, how);
  s->state = SUPERVISOR_STARTING;
  s->ops->died (s->opaque);

  s->quick_deaths = lived < QUICK_DEATH_US ? s->quick_deaths + 1 : 0;
  if (s->quick_deaths > 3)
    delay_ms = MIN (5000u, 250u << MIN (s->quick_deaths - 4, 5u));
  if (delay_ms) {
    g_warning ("nbdkit died %u times in a row right after starting; "
               "waiting %u ms", s->quick_deaths, delay_ms);
    s->restart_timer = g_timeout_add (delay_ms, restart_now, s);
  }
  else
    restart_now (s);
}

gboolean
supervisor_start (struct supervisor *s, GError **error)
{
  return spawn (s, error);
}

static gboolean
kill_hard (gpointer opaque)
{
  struct supervisor *s = opaque;

  s->kill_timer = 0;
  if (s->keeper > 0) {
    g_warning ("nbdkit (pid %d) did not stop within %d s: killing it",
               (int) s->pid, STOP_TIMEOUT_S);
    kill (-s->keeper, SIGKILL);
  }
  return G_SOURCE_REMOVE;
}

void
supervisor_stop (struct supervisor *s)
{
  if (s->restart_timer)
    g_source_remove (s->restart_timer);
  s->restart_timer = 0;
  if (s->ready_cancel)
    g_cancellable_cancel (s->ready_cancel);
  close_events (s);
  ctl_link_down (s->link);
  if (s->keeper <= 0) {
    s->state = SUPERVISOR_STOPPED;
    s->ops->stopped (s->opaque);
    return;
  }
  s->state = SUPERVISOR_STOPPING;
  kill (s->keeper, SIGTERM);
  s->kill_timer = g_timeout_add_seconds (STOP_TIMEOUT_S, kill_hard, s);
}
