/* nbdsnap - take hooks. */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "error.h"
#include "hook.h"

/* Log complete lines of @buf (what the hook wrote) and keep the last. */
static void
take_lines (const char *what, GString *buf, GString *last, gboolean flush)
{
  char *nl;

  while ((nl = strchr (buf->str, '\n')) != NULL || (flush && buf->len)) {
    gsize n = nl ? (gsize) (nl - buf->str) : buf->len;
    g_autofree char *line = g_strndup (buf->str, n);

    g_strstrip (line);
    if (line[0]) {
      g_message ("%s hook: %s", what, line);
      g_string_assign (last, line);
      if (last->len > 200)
        g_string_truncate (last, 200);
    }
    g_string_erase (buf, 0, nl ? n + 1 : n);
  }
}

gboolean
hook_run (const char *what, const char *cmd, char **env_add, double timeout,
          GError **error)
{
  g_auto (GStrv) env = g_get_environ ();
  g_autoptr (GString) buf = g_string_new (NULL);
  g_autoptr (GString) last = g_string_new (NULL);
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  sigset_t mask;
  char *argv[] = { (char *) "/bin/sh", (char *) "-c", (char *) cmd, NULL };
  gint64 deadline = g_get_monotonic_time () + (gint64) (timeout * 1e6);
  gboolean eof = FALSE, timed_out = FALSE;
  int pfd[2], r, status = 0;
  pid_t pid;
  size_t i, j;

  /* The hook sees the NBDSNAP_ variables we set, never stale ones
   * that nbdsnapd itself was started with.
   */
  for (i = j = 0; env[i]; i++) {
    if (g_str_has_prefix (env[i], "NBDSNAP_"))
      g_free (env[i]);
    else
      env[j++] = env[i];
  }
  env[j] = NULL;
  for (i = 0; env_add && env_add[i]; i++) {
    const char *eq = strchr (env_add[i], '=');
    g_autofree char *k = g_strndup (env_add[i], eq - env_add[i]);
    env = g_environ_setenv (env, k, eq + 1, TRUE);
  }
  if (pipe2 (pfd, O_CLOEXEC) == -1) {
    g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_FAILED,
                 "%s hook: pipe: %s", what, g_strerror (errno));
    return FALSE;
  }
  posix_spawn_file_actions_init (&fa);
  posix_spawn_file_actions_addopen (&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2 (&fa, pfd[1], 1);
  posix_spawn_file_actions_adddup2 (&fa, pfd[1], 2);
  posix_spawnattr_init (&attr);
  sigemptyset (&mask);
  posix_spawnattr_setsigmask (&attr, &mask);
  sigemptyset (&mask);
  sigaddset (&mask, SIGPIPE);
  sigaddset (&mask, SIGINT);
  sigaddset (&mask, SIGTERM);
  sigaddset (&mask, SIGCHLD);
  posix_spawnattr_setsigdefault (&attr, &mask);
  posix_spawnattr_setpgroup (&attr, 0);
  posix_spawnattr_setflags (&attr, POSIX_SPAWN_SETPGROUP |
                            POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  r = posix_spawn (&pid, argv[0], &fa, &attr, argv, env);
  posix_spawn_file_actions_destroy (&fa);
  posix_spawnattr_destroy (&attr);
  close (pfd[1]);
  if (r != 0) {
    close (pfd[0]);
    g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_HOOK_FAILED,
                 "%s hook: cannot run /bin/sh: %s", what, g_strerror (r));
    return FALSE;
  }
  g_debug ("%s hook: running '%s' (pid %d)", what, cmd, (int) pid);

  /* Collect output until EOF, then the exit status, both by the
   * deadline.
   */
  for (;;) {
    gint64 left = deadline - g_get_monotonic_time ();
    pid_t w;

    if (eof) {
      w = waitpid (pid, &status, WNOHANG);
      if (w == pid)
        break;
      if (w == -1 && errno != EINTR) {
        status = 0;
        break;
      }
    }
    if (left <= 0) {
      timed_out = TRUE;
      break;
    }
    if (!eof) {
      struct pollfd p = { .fd = pfd[0], .events = POLLIN };
      int n = poll (&p, 1, (int) MIN (left / 1000 + 1, 100));
      if (n > 0) {
        char tmp[4096];
        ssize_t k = read (pfd[0], tmp, sizeof tmp);
        if (k > 0) {
          g_string_append_len (buf, tmp, k);
          take_lines (what, buf, last, FALSE);
        }
        else if (k == 0 || (errno != EINTR && errno != EAGAIN))
          eof = TRUE;
      }
    }
    else
      g_usleep (10000);
  }
  close (pfd[0]);
  take_lines (what, buf, last, TRUE);

  if (timed_out) {
    kill (-pid, SIGKILL);
    kill (pid, SIGKILL);
    while (waitpid (pid, &status, 0) == -1 && errno == EINTR)
      ;
    g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_TIMED_OUT,
                 "%s hook timed out after %g s and was killed%s%s", what,
                 timeout, last->len ? ": " : "", last->str);
    return FALSE;
  }
  if (WIFEXITED (status) && WEXITSTATUS (status) == 0)
    return TRUE;
  if (WIFEXITED (status))
    g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_HOOK_FAILED,
                 "%s hook failed with exit status %d%s%s", what,
                 WEXITSTATUS (status), last->len ? ": " : "", last->str);
  else
    g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_HOOK_FAILED,
                 "%s hook was killed by signal %d%s%s", what,
                 WTERMSIG (status), last->len ? ": " : "", last->str);
  return FALSE;
}
