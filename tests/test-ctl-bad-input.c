/* Invariant 7 on the ctl socket: malformed, truncated, oversized or
 * unknown messages, wrong descriptors, invalid values and requests the
 * state forbids all get the documented error reply, the plugin stays
 * up, and nothing changes (devices, snapshots, CBT maps).  Clients of
 * another uid are refused.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <uuid/uuid.h>

#include "harness.h"

static struct server srv;
static struct ctl_client *ctl;
static char msgbuf[NBDSNAP_CTL_MSG_MAX + 4096];
static unsigned checks;

static size_t
make_msg (uint16_t opcode, const void *body, size_t len)
{
  struct nbdsnap_ctl_header *h = (void *) msgbuf;

  memset (h, 0, sizeof *h);
  h->magic = NBDSNAP_CTL_MAGIC;
  h->version = NBDSNAP_CTL_VERSION;
  h->opcode = opcode;
  h->cookie = 0x1234;
  h->length = sizeof *h + len;
  if (len)
    memcpy (msgbuf + sizeof *h, body, len);
  return sizeof *h + len;
}

/* Send msgbuf[0..len) (with @fds) raw; the reply must be error @want. */
static void
expect_raw (const char *what, size_t len, const int *fds, size_t nfds,
            int want)
{
  static char reply[NBDSNAP_CTL_MSG_MAX];
  struct nbdsnap_ctl_header *h = (void *) reply;
  struct nbdsnap_ctl_reply *r = (void *) (reply + sizeof *h);
  ssize_t n;

  n = ctl_client_raw (ctl, msgbuf, len, fds, nfds, reply, sizeof reply);
  if (n < (ssize_t) (sizeof *h + sizeof *r))
    die ("%s: no proper reply (%zd): %m", what, n);
  CHECK (h->magic == NBDSNAP_CTL_MAGIC);
  CHECK (h->flags == NBDSNAP_CTL_FLAG_REPLY);
  CHECK ((size_t) n == h->length);
  if (r->error != want)
    die ("%s: error %d (%s), expected %d (%s)", what, r->error,
         r->error ? reply + sizeof *h + sizeof *r : "", want,
         strerror (want));
  if (want) {
    const char *text = reply + sizeof *h + sizeof *r;
    CHECK ((size_t) n > sizeof *h + sizeof *r + 1);
    CHECK (reply[n - 1] == '\0' && strlen (text) > 0);
    fprintf (stderr, "%s -> %s: %s\n", what, strerror (want), text);
  }
  checks++;
}

static void
expect_msg (const char *what, uint16_t opcode, const void *body, size_t len,
            int want)
{
  expect_raw (what, make_msg (opcode, body, len), NULL, 0, want);
}

/* Everything observable, to compare before and after. */
struct state {
  char devices[4096];
  char snapshots[4096];
  uint8_t map[256];
};

static void
get_state (struct state *st)
{
  static char out[NBDSNAP_CTL_MSG_MAX];
  struct nbdsnap_ctl_device_list_req lr = { 0 };
  struct nbdsnap_ctl_cbt_read cr;
  size_t n, i;

  memset (st, 0, sizeof *st);
  CHECK (ctl_client_call (ctl, NBDSNAP_CTL_DEVICE_LIST, &lr, sizeof lr, -1,
                          out, sizeof out, &n, NULL, 0) == 0);
  {
    struct nbdsnap_ctl_device_list *l = (void *) out;
    struct nbdsnap_ctl_device *d = (void *) (out + sizeof *l);
    for (i = 0; i < l->count; i++) {
      char s[37];
      uuid_unparse_lower (d[i].snapshot, s);
      snprintf (st->devices + strlen (st->devices),
                sizeof st->devices - strlen (st->devices), "%s:%s:%s;",
                d[i].name, d[i].path, s);
    }
  }
  CHECK (ctl_client_call (ctl, NBDSNAP_CTL_SNAPSHOT_COLLECT, NULL, 0, -1,
                          out, sizeof out, &n, NULL, 0) == 0);
  {
    struct nbdsnap_ctl_collect *c = (void *) out;
    for (i = 0; i < c->count; i++) {
      static char info[NBDSNAP_CTL_MSG_MAX];
      struct nbdsnap_ctl_snapshot_info *si = (void *) info;
      char s[37];
      size_t m;
      CHECK (ctl_client_call (ctl, NBDSNAP_CTL_SNAPSHOT_INFO,
                              out + sizeof *c + 16 * i, 16, -1, info,
                              sizeof info, &m, NULL, 0) == 0);
      uuid_unparse_lower (si->id, s);
      snprintf (st->snapshots + strlen (st->snapshots),
                sizeof st->snapshots - strlen (st->snapshots),
                "%s:%u:%u:%" PRIu64 ";", s, si->state, si->device_count,
                si->limit);
    }
  }
  memset (&cr, 0, sizeof cr);
  strcpy (cr.name, "disk0");
  cr.count = 256;
  CHECK (ctl_client_call (ctl, NBDSNAP_CTL_CBT_READ, &cr, sizeof cr, -1, out,
                          sizeof out, &n, NULL, 0) == 0);
  memcpy (st->map, out + sizeof (struct nbdsnap_ctl_cbt_data), 256);
}

static void
expect_unchanged (const struct state *before, const char *after_what)
{
  struct state now;

  get_state (&now);
  if (strcmp (before->devices, now.devices) != 0 ||
      strcmp (before->snapshots, now.snapshots) != 0 ||
      memcmp (before->map, now.map, sizeof now.map) != 0)
    die ("state changed after %s:\n  devices %s -> %s\n  snapshots %s -> %s",
         after_what, before->devices, now.devices, before->snapshots,
         now.snapshots);
}

static bool
fd_is_closed_by_peer (int rd)
{
  char c;
  int fl = fcntl (rd, F_GETFL);
  ssize_t n;

  fcntl (rd, F_SETFL, fl | O_NONBLOCK);
  n = read (rd, &c, 1);
  return n == 0;                /* EOF: no writer left anywhere */
}

int
main (void)
{
  struct nbdsnap_ctl_name name;
  struct nbdsnap_ctl_snapshot_create cr = { .limit = 1 << 20 };
  struct nbdsnap_ctl_snapshot_device sd;
  struct nbdsnap_ctl_snapshot_id sid;
  struct nbdsnap_ctl_device_attach at;
  struct nbdsnap_ctl_cbt_read rd;
  struct state before;
  const char *devs[] = { "disk0" };
  char dev0[512], dev1[512], id_str[37], path0[400];
  uint8_t id[16], id2[16];
  struct nbd_handle *h;
  int p[2], fds[9], i, fd;
  size_t len;

  test_dir (&srv, "ctlbad");
  snprintf (path0, sizeof path0, "%s", make_file (&srv, "d0.img", 16 << 20));
  snprintf (dev0, sizeof dev0, "device=disk0:%s", path0);
  snprintf (dev1, sizeof dev1, "device=disk1:%s",
            make_file (&srv, "d1.img", 16 << 20));
  server_start (&srv, (const char *[]) { dev0, dev1, NULL });
  ctl = ctl_open (&srv);

  /* A snapshot of disk1 in state taken, to test state rules against. */
  devs[0] = "disk1";
  snap_create (ctl, &srv, 64 << 20, devs, 1, true, id, id_str, NULL);
  get_state (&before);

  /* Framing. */
  make_msg (NBDSNAP_CTL_VERSION_INFO, NULL, 0);
  expect_raw ("truncated header", 10, NULL, 0, EBADMSG);
  ((struct nbdsnap_ctl_header *) msgbuf)->magic = 0xdeadbeef;
  expect_raw ("bad magic", sizeof (struct nbdsnap_ctl_header), NULL, 0,
              EPROTO);
  len = make_msg (NBDSNAP_CTL_VERSION_INFO, NULL, 0);
  ((struct nbdsnap_ctl_header *) msgbuf)->version = 2;
  expect_raw ("version 2", len, NULL, 0, EPROTO);
  len = make_msg (NBDSNAP_CTL_VERSION_INFO, NULL, 0);
  ((struct nbdsnap_ctl_header *) msgbuf)->flags = NBDSNAP_CTL_FLAG_REPLY;
  expect_raw ("reply flag in a request", len, NULL, 0, EPROTO);
  len = make_msg (NBDSNAP_CTL_VERSION_INFO, NULL, 0);
  ((struct nbdsnap_ctl_header *) msgbuf)->length = 100;
  expect_raw ("length mismatch", len, NULL, 0, EBADMSG);
  expect_msg ("unknown opcode", 999, NULL, 0, EOPNOTSUPP);
  expect_msg ("event opcode as a request", NBDSNAP_CTL_EVENT, NULL, 0,
              EOPNOTSUPP);
  memset (msgbuf + 24, 0, NBDSNAP_CTL_MSG_MAX + 100);
  len = make_msg (NBDSNAP_CTL_VERSION_INFO, msgbuf + 24,
                  NBDSNAP_CTL_MSG_MAX + 100);
  expect_raw ("oversized", len, NULL, 0, EMSGSIZE);

  /* Wrong body sizes for every opcode. */
  {
    static const struct { uint16_t op; size_t size; } ops[] = {
      { NBDSNAP_CTL_VERSION_INFO, 0 },
      { NBDSNAP_CTL_DEVICE_LIST, sizeof (struct nbdsnap_ctl_device_list_req) },
      { NBDSNAP_CTL_DEVICE_ATTACH, sizeof (struct nbdsnap_ctl_device_attach) },
      { NBDSNAP_CTL_DEVICE_DETACH, sizeof (struct nbdsnap_ctl_name) },
      { NBDSNAP_CTL_CBT_INFO, sizeof (struct nbdsnap_ctl_name) },
      { NBDSNAP_CTL_CBT_READ, sizeof (struct nbdsnap_ctl_cbt_read) },
      { NBDSNAP_CTL_SNAPSHOT_ADD_DEVICE,
        sizeof (struct nbdsnap_ctl_snapshot_device) },
      { NBDSNAP_CTL_SNAPSHOT_TAKE, 16 },
      { NBDSNAP_CTL_SNAPSHOT_DESTROY, 16 },
      { NBDSNAP_CTL_SNAPSHOT_COLLECT, 0 },
      { NBDSNAP_CTL_SNAPSHOT_INFO, 16 },
    };
    static char zero[2048];
    size_t k;
    for (k = 0; k < sizeof ops / sizeof ops[0]; k++) {
      char what[64];
      snprintf (what, sizeof what, "opcode %u body +1", ops[k].op);
      expect_msg (what, ops[k].op, zero, ops[k].size + 1, EBADMSG);
      if (ops[k].size > 0) {
        snprintf (what, sizeof what, "opcode %u body -1", ops[k].op);
        expect_msg (what, ops[k].op, zero, ops[k].size - 1, EBADMSG);
      }
    }
    expect_msg ("mark-dirty short", NBDSNAP_CTL_CBT_MARK_DIRTY, zero, 10,
                EBADMSG);
  }

  /* Names. */
  memset (&name, 'a', sizeof name);
  expect_msg ("unterminated name", NBDSNAP_CTL_CBT_INFO, &name, sizeof name,
              EBADMSG);
  memset (&name, 0, sizeof name);
  strcpy (name.name, "disk0");
  name.name[40] = 'x';
  expect_msg ("garbage after the name", NBDSNAP_CTL_CBT_INFO, &name,
              sizeof name, EBADMSG);
  memset (&name, 0, sizeof name);
  strcpy (name.name, "../etc");
  expect_msg ("name with a slash", NBDSNAP_CTL_CBT_INFO, &name, sizeof name,
              EINVAL);
  memset (&name, 0, sizeof name);
  expect_msg ("empty name", NBDSNAP_CTL_CBT_INFO, &name, sizeof name,
              EINVAL);
  strcpy (name.name, "nosuch");
  expect_msg ("unknown device", NBDSNAP_CTL_CBT_INFO, &name, sizeof name,
              ENOENT);
  expect_msg ("detach unknown", NBDSNAP_CTL_DEVICE_DETACH, &name,
              sizeof name, ENOENT);

  /* Values. */
  memset (&rd, 0, sizeof rd);
  strcpy (rd.name, "disk0");
  expect_msg ("cbt read of 0 bytes", NBDSNAP_CTL_CBT_READ, &rd, sizeof rd,
              EINVAL);
  rd.count = NBDSNAP_CBT_READ_MAX + 1;
  expect_msg ("cbt read too large", NBDSNAP_CTL_CBT_READ, &rd, sizeof rd,
              EINVAL);
  rd.count = 1;
  rd.map = 7;
  expect_msg ("cbt read of map 7", NBDSNAP_CTL_CBT_READ, &rd, sizeof rd,
              EINVAL);
  rd.map = NBDSNAP_CTL_MAP_FROZEN;
  expect_msg ("frozen map never taken", NBDSNAP_CTL_CBT_READ, &rd,
              sizeof rd, ENODATA);
  rd.map = 0;
  rd.start = 1000000;
  expect_msg ("cbt read past the end", NBDSNAP_CTL_CBT_READ, &rd, sizeof rd,
              EINVAL);
  {
    char body[sizeof (struct nbdsnap_ctl_mark_dirty) +
              2 * sizeof (struct nbdsnap_ctl_range)];
    struct nbdsnap_ctl_mark_dirty *md = (void *) body;
    struct nbdsnap_ctl_range *r = (void *) (body + sizeof *md);
    memset (body, 0, sizeof body);
    strcpy (md->name, "disk0");
    md->count = 2;
    r[0].offset = 0;
    r[0].length = 4096;                  /* valid: must not be applied */
    r[1].offset = (16 << 20) - 10;
    r[1].length = 11;                    /* one byte past the end */
    expect_msg ("mark-dirty past the end", NBDSNAP_CTL_CBT_MARK_DIRTY, body,
                sizeof body, EINVAL);
    r[1].length = 0;
    expect_msg ("mark-dirty empty range", NBDSNAP_CTL_CBT_MARK_DIRTY, body,
                sizeof body, EINVAL);
    r[1].offset = UINT64_MAX - 5;
    r[1].length = 10;
    expect_msg ("mark-dirty overflowing range", NBDSNAP_CTL_CBT_MARK_DIRTY,
                body, sizeof body, EINVAL);
    md->count = 3;
    expect_msg ("mark-dirty count mismatch", NBDSNAP_CTL_CBT_MARK_DIRTY, body,
                sizeof body, EBADMSG);
    md->count = 0;
    expect_msg ("mark-dirty no ranges", NBDSNAP_CTL_CBT_MARK_DIRTY, body,
                sizeof (struct nbdsnap_ctl_mark_dirty), EINVAL);
    md->count = 2;
    md->pad = 1;
    expect_msg ("mark-dirty padding", NBDSNAP_CTL_CBT_MARK_DIRTY, body,
                sizeof body, EBADMSG);
  }

  /* Descriptors. */
  CHECK (pipe (p) == 0);
  len = make_msg (NBDSNAP_CTL_VERSION_INFO, NULL, 0);
  expect_raw ("descriptor with version", len, &p[1], 1, EBADMSG);
  close (p[1]);
  CHECK (fd_is_closed_by_peer (p[0]));
  close (p[0]);
  expect_msg ("create without a descriptor", NBDSNAP_CTL_SNAPSHOT_CREATE,
              &cr, sizeof cr, EBADF);
  CHECK (pipe (p) == 0);
  len = make_msg (NBDSNAP_CTL_SNAPSHOT_CREATE, &cr, sizeof cr);
  expect_raw ("create with a pipe", len, &p[1], 1, EBADF);
  close (p[1]);
  CHECK (fd_is_closed_by_peer (p[0]));
  close (p[0]);
  fd = open (path0, O_RDONLY);
  CHECK (fd >= 0);
  expect_raw ("create with a read-only file", len, &fd, 1, EBADF);
  close (fd);
  fd = open (srv.dir, O_RDWR | O_TMPFILE, 0600);
  CHECK (fd >= 0);
  for (i = 0; i < 2; i++)
    fds[i] = fd;
  expect_raw ("create with two descriptors", len, fds, 2, EBADMSG);
  for (i = 0; i < 9; i++)
    fds[i] = fd;
  {
    /* More than the plugin takes at once: sent by hand. */
    union { struct cmsghdr h; char b[CMSG_SPACE (9 * sizeof (int))]; } cm;
    struct iovec iov = { .iov_base = msgbuf, .iov_len = len };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
                         .msg_control = cm.b, .msg_controllen = sizeof cm.b };
    struct cmsghdr *c = CMSG_FIRSTHDR (&mh);
    static char reply[4096];
    ssize_t n;
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN (9 * sizeof (int));
    memcpy (CMSG_DATA (c), fds, 9 * sizeof (int));
    CHECK (sendmsg (ctl->fd, &mh, 0) == (ssize_t) len);
    n = recv (ctl->fd, reply, sizeof reply, 0);
    CHECK (n >= 32);
    CHECK (((struct nbdsnap_ctl_reply *) (reply + 24))->error == EBADMSG);
    checks++;
  }
  cr.limit = 0;
  len = make_msg (NBDSNAP_CTL_SNAPSHOT_CREATE, &cr, sizeof cr);
  expect_raw ("create with limit 0", len, &fd, 1, EINVAL);
  cr.limit = 1 << 20;
  cr.flags = 1;
  len = make_msg (NBDSNAP_CTL_SNAPSHOT_CREATE, &cr, sizeof cr);
  expect_raw ("create with flags", len, &fd, 1, EBADMSG);
  cr.flags = 0;
  close (fd);

  /* State rules. */
  memcpy (sid.id, id, 16);
  expect_msg ("take twice", NBDSNAP_CTL_SNAPSHOT_TAKE, &sid, sizeof sid,
              EALREADY);
  memset (&sd, 0, sizeof sd);
  memcpy (sd.id, id, 16);
  strcpy (sd.name, "disk0");
  expect_msg ("add a device after take", NBDSNAP_CTL_SNAPSHOT_ADD_DEVICE,
              &sd, sizeof sd, EALREADY);
  memset (sid.id, 0x55, 16);
  expect_msg ("unknown snapshot", NBDSNAP_CTL_SNAPSHOT_INFO, &sid,
              sizeof sid, ENOENT);
  expect_msg ("destroy unknown snapshot", NBDSNAP_CTL_SNAPSHOT_DESTROY, &sid,
              sizeof sid, ENOENT);
  memset (&name, 0, sizeof name);
  strcpy (name.name, "disk1");
  expect_msg ("detach a device in a snapshot", NBDSNAP_CTL_DEVICE_DETACH,
              &name, sizeof name, EBUSY);
  h = nbd_open_export (&srv, "disk0");
  strcpy (name.name, "disk0");
  expect_msg ("detach a device with a client", NBDSNAP_CTL_DEVICE_DETACH,
              &name, sizeof name, EBUSY);
  nbd_close (h);
  memset (&at, 0, sizeof at);
  strcpy (at.name, "disk0");
  strcpy (at.path, path0);
  expect_msg ("attach an existing name", NBDSNAP_CTL_DEVICE_ATTACH, &at,
              sizeof at, EEXIST);
  strcpy (at.name, "other");
  expect_msg ("attach the same file again", NBDSNAP_CTL_DEVICE_ATTACH, &at,
              sizeof at, EEXIST);
  memset (at.path, 0, sizeof at.path);
  strcpy (at.path, "/dev/null");
  expect_msg ("attach /dev/null", NBDSNAP_CTL_DEVICE_ATTACH, &at, sizeof at,
              EINVAL);
  memset (at.path, 0, sizeof at.path);
  strcpy (at.path, "/nonexistent/disk");
  expect_msg ("attach a missing file", NBDSNAP_CTL_DEVICE_ATTACH, &at,
              sizeof at, ENOENT);
  expect_unchanged (&before, "the bad requests");

  /* A second snapshot may not take disk1 (EBUSY), and storage that is
   * the device itself is refused (EXDEV); both leave it created, empty.
   */
  fd = open (path0, O_RDWR);
  CHECK (fd >= 0);
  {
    char out[64];
    size_t n;
    CHECK (ctl_client_call (ctl, NBDSNAP_CTL_SNAPSHOT_CREATE, &cr, sizeof cr,
                            fd, out, sizeof out, &n, NULL, 0) == 0);
    memcpy (id2, out, 16);
  }
  close (fd);
  memcpy (sd.id, id2, 16);
  strcpy (sd.name, "disk1");
  expect_msg ("device in another snapshot", NBDSNAP_CTL_SNAPSHOT_ADD_DEVICE,
              &sd, sizeof sd, EBUSY);
  strcpy (sd.name, "disk0");
  expect_msg ("storage on the device", NBDSNAP_CTL_SNAPSHOT_ADD_DEVICE, &sd,
              sizeof sd, EXDEV);
  memcpy (sid.id, id2, 16);
  expect_msg ("take without devices", NBDSNAP_CTL_SNAPSHOT_TAKE, &sid,
              sizeof sid, EINVAL);
  snap_destroy (ctl, id2);
  expect_unchanged (&before, "the refused snapshot");

  /* A client that dies mid-conversation, a zero-length datagram: the
   * plugin carries on.
   */
  {
    struct ctl_client *c2 = ctl_open (&srv);
    CHECK (send (c2->fd, msgbuf, 0, 0) == 0);
    ctl_client_close (c2);
    c2 = ctl_open (&srv);
    CHECK (send (c2->fd, msgbuf, 10, 0) == 10);
    ctl_client_close (c2);
  }

  /* Another uid: the socket is mode 0600, so connecting is refused; and
   * even with the mode opened up, the plugin's SO_PEERCRED check drops
   * the client without an answer.
   */
  {
    struct stat st;
    pid_t pid;
    int status;

    CHECK (stat (srv.ctl, &st) == 0);
    CHECK ((st.st_mode & 0777) == 0600);
    CHECK (chmod (srv.dir, 0755) == 0);
    for (i = 0; i < 2; i++) {
      if (i == 1)
        CHECK (chmod (srv.ctl, 0666) == 0);
      pid = fork ();
      CHECK (pid >= 0);
      if (pid == 0) {
        struct ctl_client *c3;
        char out[64];
        if (setgid (65534) == -1 || setuid (65534) == -1)
          _exit (10);
        c3 = ctl_client_connect (srv.ctl);
        if (c3 == NULL)
          _exit (errno == EACCES ? 20 : 11);
        alarm (10);
        if (ctl_client_call (c3, NBDSNAP_CTL_VERSION_INFO, NULL, 0, -1, out,
                             sizeof out, NULL, NULL, 0) == -1)
          _exit (21);           /* dropped by the plugin */
        _exit (12);             /* answered: wrong */
      }
      CHECK (waitpid (pid, &status, 0) == pid && WIFEXITED (status));
      if (WEXITSTATUS (status) != (i == 0 ? 20 : 21))
        die ("uid 65534 client, socket mode %s: exit %d", i ? "0666" : "0600",
             WEXITSTATUS (status));
      checks++;
    }
    CHECK (chmod (srv.ctl, 0600) == 0);
  }

  expect_unchanged (&before, "everything");
  /* Still serving NBD and ctl. */
  h = nbd_open_export (&srv, "disk0");
  nbd_close (h);
  printf ("%u bad ctl inputs refused with the documented errors; nothing "
          "changed\n", checks);
  ctl_client_close (ctl);
  server_stop (&srv);
  return 0;
}
