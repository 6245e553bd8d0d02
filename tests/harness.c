/* nbdsnap tests - harness: see harness.h. */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include "harness.h"

static struct server *current;

void
die (const char *fmt, ...)
{
  va_list ap;

  fprintf (stderr, "FAIL: ");
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fprintf (stderr, "\n");
  if (current && current->pid > 0)
    kill (current->pid, SIGTERM);
  exit (1);
}

uint64_t
now_ns (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000u + ts.tv_nsec;
}

void
test_dir (struct server *s, const char *name)
{
  const char *tmp = getenv ("TMPDIR");

  memset (s, 0, sizeof *s);
  snprintf (s->dir, sizeof s->dir, "%s/nbdsnap-%s-XXXXXX",
            tmp ? tmp : "/var/tmp", name);
  if (mkdtemp (s->dir) == NULL)
    die ("mkdtemp: %m");
  snprintf (s->sock, sizeof s->sock, "%s/nbd.sock", s->dir);
  snprintf (s->ctl, sizeof s->ctl, "%s/ctl.sock", s->dir);
  current = s;
}

void
server_start (struct server *s, const char *const *args)
{
  const char *nbdkit = getenv ("NBDKIT") ? getenv ("NBDKIT") : "nbdkit";
  const char *plugin = getenv ("PLUGIN");
  char pidfile[300], ctlarg[320];
  const char *argv[64];
  size_t n = 0, i;
  int tries;

  if (plugin == NULL)
    die ("PLUGIN is not set (run the tests with make check)");
  snprintf (pidfile, sizeof pidfile, "%s/nbdkit.pid", s->dir);
  snprintf (ctlarg, sizeof ctlarg, "control=%s", s->ctl);
  unlink (pidfile);
  argv[n++] = nbdkit;
  argv[n++] = "-f";
  argv[n++] = "--exit-with-parent";
  argv[n++] = "-U";
  argv[n++] = s->sock;
  argv[n++] = "-P";
  argv[n++] = pidfile;
  if (getenv ("NBDSNAP_TEST_VERBOSE"))
    argv[n++] = "-v";
  argv[n++] = plugin;
  argv[n++] = ctlarg;
  for (i = 0; args && args[i] && n < 62; i++)
    argv[n++] = args[i];
  argv[n] = NULL;

  s->pid = fork ();
  if (s->pid == -1)
    die ("fork: %m");
  if (s->pid == 0) {
    /* A sanitizer build of the plugin needs its runtime preloaded. */
    const char *preload = getenv ("NBDKIT_PRELOAD");
    if (preload && *preload) {
      char opts[600];
      setenv ("LD_PRELOAD", preload, 1);
      /* Reports go to files that server_kill checks. */
      snprintf (opts, sizeof opts, "detect_leaks=1:exitcode=23:"
                "log_path=%s/sanitizer", s->dir);
      setenv ("ASAN_OPTIONS", opts, 1);
      snprintf (opts, sizeof opts, "halt_on_error=1:print_stacktrace=1:"
                "log_path=%s/sanitizer", s->dir);
      setenv ("UBSAN_OPTIONS", opts, 1);
    }
    execvp (nbdkit, (char **) argv);
    perror (nbdkit);
    _exit (127);
  }
  for (tries = 0; tries < 300; tries++) {
    int status;
    if (access (pidfile, F_OK) == 0 && access (s->ctl, F_OK) == 0)
      return;
    if (waitpid (s->pid, &status, WNOHANG) == s->pid) {
      s->pid = 0;
      die ("nbdkit exited during start (status %d)", status);
    }
    usleep (20000);
  }
  die ("nbdkit did not start within 6 seconds");
}

/* Wait (up to 5 s) until no NBD connection is open: nbdkit does not
 * close connections still open at exit, so stopping it earlier would
 * leave their handles (and sanitizer leak reports) behind.
 */
static void
wait_no_connections (struct server *s)
{
  struct ctl_client *c = ctl_client_connect (s->ctl);
  struct nbdsnap_ctl_version v;
  int i;

  if (c == NULL)
    return;
  for (i = 0; i < 500; i++) {
    memset (&v, 0, sizeof v);
    if (ctl_client_call (c, NBDSNAP_CTL_VERSION_INFO, NULL, 0, -1, &v,
                         sizeof v, NULL, NULL, 0) != 0 ||
        v.connections == 0)
      break;
    usleep (10000);
  }
  ctl_client_close (c);
}

/* Fail on any sanitizer report nbdkit wrote. */
static void
check_sanitizer_reports (struct server *s)
{
  char cmd[600];

  snprintf (cmd, sizeof cmd, "set -- '%s'/sanitizer.*; [ ! -e \"$1\" ] || "
            "{ cat '%s'/sanitizer.* >&2; exit 1; }", s->dir, s->dir);
  if (system (cmd) != 0)
    die ("nbdkit's sanitizers reported errors (above)");
}

void
server_kill (struct server *s)
{
  const char *preload = getenv ("NBDKIT_PRELOAD");
  bool sanitizers = preload && *preload;
  int status, i;

  if (s->pid > 0) {
    wait_no_connections (s);
    kill (s->pid, SIGTERM);
    /* With libasan preloaded into the (uninstrumented) nbdkit, exit can
     * hang in a library destructor after our cleanup and the leak check
     * have run: give it 10 s, then kill it.  Never without sanitizers.
     */
    for (i = 0; sanitizers && i < 1000; i++) {
      if (waitpid (s->pid, &status, WNOHANG) == s->pid)
        goto reaped;
      usleep (10000);
    }
    if (sanitizers) {
      fprintf (stderr, "warning: nbdkit hangs at exit under the sanitizer "
               "runtime; killed\n");
      kill (s->pid, SIGKILL);
      waitpid (s->pid, &status, 0);
      s->pid = 0;
      check_sanitizer_reports (s);
      return;
    }
    if (waitpid (s->pid, &status, 0) == s->pid) {
    reaped:
      if (sanitizers)
        check_sanitizer_reports (s);
      s->pid = 0;
      if (WIFSIGNALED (status) && WTERMSIG (status) != SIGTERM)
        die ("nbdkit died of signal %d", WTERMSIG (status));
      if (WIFEXITED (status) && WEXITSTATUS (status) != 0)
        die ("nbdkit exited with status %d%s", WEXITSTATUS (status),
             WEXITSTATUS (status) == 23 ? " (sanitizer report)" : "");
    }
    s->pid = 0;
  }
}

void
server_stop (struct server *s)
{
  char cmd[400];

  server_kill (s);
  if (s->dir[0] && !getenv ("NBDSNAP_TEST_KEEP")) {
    snprintf (cmd, sizeof cmd, "rm -rf '%s'", s->dir);
    if (system (cmd) != 0)
      fprintf (stderr, "warning: could not remove %s\n", s->dir);
  }
  current = NULL;
}

struct nbd_handle *
nbd_try_export (struct server *s, const char *export, char *msg,
                size_t msglen)
{
  struct nbd_handle *h = nbd_create ();

  if (h == NULL)
    die ("nbd_create: %s", nbd_get_error ());
  if (nbd_set_export_name (h, export) == -1 ||
      nbd_connect_unix (h, s->sock) == -1) {
    if (msg)
      snprintf (msg, msglen, "%s", nbd_get_error ());
    nbd_close (h);
    return NULL;
  }
  return h;
}

struct nbd_handle *
nbd_open_export (struct server *s, const char *export)
{
  char msg[512];
  struct nbd_handle *h = nbd_try_export (s, export, msg, sizeof msg);

  if (h == NULL)
    die ("connect to %s: %s", export, msg);
  return h;
}

char *
make_file (struct server *s, const char *name, uint64_t size)
{
  static char path[400];
  int fd;

  snprintf (path, sizeof path, "%s/%s", s->dir, name);
  fd = open (path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd == -1 || ftruncate (fd, size) == -1)
    die ("%s: %m", path);
  close (fd);
  return path;
}

struct ctl_client *
ctl_open (struct server *s)
{
  struct ctl_client *c = ctl_client_connect (s->ctl);

  if (c == NULL)
    die ("ctl connect %s: %m", s->ctl);
  return c;
}

static size_t
ctl_ok (struct ctl_client *c, uint16_t op, const void *body, size_t len,
        int fd, void *out, size_t out_max)
{
  char msg[NBDSNAP_CTL_ERRMSG_MAX + 1];
  size_t n = 0;
  int r = ctl_client_call (c, op, body, len, fd, out, out_max, &n, msg,
                           sizeof msg);

  if (r == -1)
    die ("ctl opcode %u: %m", op);
  if (r > 0)
    die ("ctl opcode %u: %s: %s", op, strerror (r), msg);
  return n;
}

void
ctl_expect_error (struct ctl_client *c, uint16_t op, const void *body,
                  size_t len, int fd, int want)
{
  char msg[NBDSNAP_CTL_ERRMSG_MAX + 1];
  int r = ctl_client_call (c, op, body, len, fd, NULL, 0, NULL, msg,
                           sizeof msg);

  if (r != want)
    die ("ctl opcode %u: expected error %s, got %d (%s)", op,
         strerror (want), r, r > 0 ? msg : "");
}

void
snap_create (struct ctl_client *c, struct server *s, uint64_t limit,
             const char *const *devices, size_t n, bool take,
             uint8_t id[16], char id_str[37], uint64_t *pause_ns)
{
  struct nbdsnap_ctl_snapshot_create req = { .limit = limit };
  struct nbdsnap_ctl_snapshot_id sid;
  size_t i;
  int fd;

  fd = open (s->dir, O_RDWR | O_TMPFILE | O_CLOEXEC, 0600);
  if (fd == -1)
    die ("O_TMPFILE in %s: %m", s->dir);
  ctl_ok (c, NBDSNAP_CTL_SNAPSHOT_CREATE, &req, sizeof req, fd, &sid,
          sizeof sid);
  close (fd);
  memcpy (id, sid.id, 16);
  uuid_unparse_lower (id, id_str);
  for (i = 0; i < n; i++) {
    struct nbdsnap_ctl_snapshot_device d;
    memset (&d, 0, sizeof d);
    memcpy (d.id, id, 16);
    strncpy (d.name, devices[i], NBDSNAP_NAME_MAX);
    ctl_ok (c, NBDSNAP_CTL_SNAPSHOT_ADD_DEVICE, &d, sizeof d, -1, NULL, 0);
  }
  if (take) {
    struct nbdsnap_ctl_take t;
    ctl_ok (c, NBDSNAP_CTL_SNAPSHOT_TAKE, &sid, sizeof sid, -1, &t,
            sizeof t);
    if (pause_ns)
      *pause_ns = t.pause_ns;
  }
}

void
snap_destroy (struct ctl_client *c, const uint8_t id[16])
{
  struct nbdsnap_ctl_snapshot_id sid;

  memcpy (sid.id, id, 16);
  ctl_ok (c, NBDSNAP_CTL_SNAPSHOT_DESTROY, &sid, sizeof sid, -1, NULL, 0);
}

void
snap_info (struct ctl_client *c, const uint8_t id[16],
           struct nbdsnap_ctl_snapshot_info *info,
           struct nbdsnap_ctl_snapshot_info_device *devs, size_t max)
{
  static char out[NBDSNAP_CTL_MSG_MAX];
  struct nbdsnap_ctl_snapshot_id sid;
  size_t n, k;

  memcpy (sid.id, id, 16);
  n = ctl_ok (c, NBDSNAP_CTL_SNAPSHOT_INFO, &sid, sizeof sid, -1, out,
              sizeof out);
  CHECK (n >= sizeof *info);
  memcpy (info, out, sizeof *info);
  k = info->device_count < max ? info->device_count : max;
  if (devs && k)
    memcpy (devs, out + sizeof *info, k * sizeof *devs);
}

uint64_t
rng_next (uint64_t *state)
{
  uint64_t z = (*state += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

void
rng_fill (uint64_t *state, void *buf, size_t len)
{
  unsigned char *p = buf;

  while (len >= 8) {
    uint64_t v = rng_next (state);
    memcpy (p, &v, 8);
    p += 8;
    len -= 8;
  }
  if (len) {
    uint64_t v = rng_next (state);
    memcpy (p, &v, len);
  }
}

uint64_t
compare_blocks (const char *what, const unsigned char *got,
                const unsigned char *want, uint64_t offset, uint64_t len)
{
  uint64_t bad = 0, pos;

  for (pos = 0; pos < len; pos += 4096) {
    uint64_t n = len - pos < 4096 ? len - pos : 4096;
    if (memcmp (got + pos, want + pos, n) != 0) {
      if (bad < 5)
        fprintf (stderr, "%s: block at offset %" PRIu64 " differs\n",
                 what, offset + pos);
      bad++;
    }
  }
  return bad;
}

void
nbd_read_all (struct nbd_handle *h, void *buf, uint64_t size)
{
  uint64_t off;

  for (off = 0; off < size; off += 4 << 20) {
    uint64_t n = size - off < (4 << 20) ? size - off : (4 << 20);
    if (nbd_pread (h, (char *) buf + off, n, off, 0) == -1)
      die ("pread %" PRIu64 "+%" PRIu64 ": %s", off, n, nbd_get_error ());
  }
}
