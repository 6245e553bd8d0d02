/* nbdsnap unit tests - ctl: encoding and decoding of include/nbdsnap/ctl.h
 * messages, every opcode's happy path, and rejection of malformed ones.
 *
 * Requests are encoded here from ctl.h alone and handed to
 * ctl_dispatch(), the server's pure request handler; replies are decoded
 * and their framing checked on every call.  Devices are real temporary
 * files registered with registry_device_add; diff storage is O_TMPFILE.
 *
 * Every rejection is checked for the errno of ctl.h's table and for
 * changing nothing: devices, snapshots, CBT maps (bytes, numbers,
 * generations), storage usage, queued events, open descriptors.  The
 * descriptors that came with a rejected request must be closed.
 *
 * A last suite runs the server thread on a real socket, through the
 * test ctl client: SCM_RIGHTS, oversized datagrams, too many
 * descriptors, events pushed to the client.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <CUnit/CUnit.h>

#include <nbdsnap/ctl.h>

#include "ctl_client.h"
#include "ctl_server.h"
#include "diff_area.h"
#include "diff_storage.h"
#include "event_queue.h"
#include "registry.h"
#include "snapshot.h"
#include "tracker.h"
#include "unit.h"

#define KiB 1024ULL
#define MiB (1024 * KiB)
#define BS (64 * KiB)                   /* CBT block size (defaults) */
#define DEV_SIZE (1 * MiB + 4 * KiB)    /* 17 blocks */
#define DEV_BLOCKS 17

#define HDR (sizeof (struct nbdsnap_ctl_header))
#define REPLY_HEAD (HDR + sizeof (struct nbdsnap_ctl_reply))

static struct tracker *dev0, *dev1;
static char *path0, *path1;

static uint8_t msgbuf[2 * NBDSNAP_CTL_MSG_MAX];
static uint8_t rbuf[NBDSNAP_CTL_MSG_MAX];
static uint64_t cookie = 0x1000;

/* Encoding. */

static size_t
build_hdr (void *buf, uint16_t opcode, size_t length)
{
  struct nbdsnap_ctl_header h = {
    .magic = NBDSNAP_CTL_MAGIC,
    .version = NBDSNAP_CTL_VERSION,
    .opcode = opcode,
    .length = (uint32_t) length,
    .flags = 0,
    .cookie = ++cookie,
  };

  memcpy (buf, &h, sizeof h);
  return length;
}

static size_t
build (uint16_t opcode, const void *body, size_t blen)
{
  build_hdr (msgbuf, opcode, HDR + blen);
  if (blen)
    memcpy (msgbuf + HDR, body, blen);
  return HDR + blen;
}

static struct nbdsnap_ctl_header *
msg_hdr (void)
{
  return (struct nbdsnap_ctl_header *) msgbuf;
}

static void
set_name (char *field, size_t size, const char *name)
{
  memset (field, 0, size);
  memcpy (field, name, MIN (strlen (name), size));
}

/* Decoding. */

/**
 * struct reply_view - a decoded reply (pointing into rbuf).
 * @error: reply.error.
 * @body: the reply body, or the error message.
 * @len: its length.
 */
struct reply_view {
  int error;
  const uint8_t *body;
  size_t len;
};

/* Dispatch @len bytes of @msg and check the reply's framing. */
static int
dispatch (const void *msg, size_t len, const int *fds, size_t nfds,
          struct reply_view *rv)
{
  const struct nbdsnap_ctl_header *h = msg;
  struct nbdsnap_ctl_header rh;
  struct nbdsnap_ctl_reply rr;
  size_t n;

  memset (rbuf, 0xcc, sizeof rbuf);
  n = ctl_dispatch (msg, len, fds, nfds, rbuf);
  CU_ASSERT_FATAL (n >= REPLY_HEAD && n <= NBDSNAP_CTL_MSG_MAX);
  memcpy (&rh, rbuf, sizeof rh);
  memcpy (&rr, rbuf + HDR, sizeof rr);
  CU_ASSERT_EQUAL (rh.magic, NBDSNAP_CTL_MAGIC);
  CU_ASSERT_EQUAL (rh.version, NBDSNAP_CTL_VERSION);
  CU_ASSERT_EQUAL (rh.flags, NBDSNAP_CTL_FLAG_REPLY);
  CU_ASSERT_EQUAL (rh.length, n);
  if (len >= HDR) {
    CU_ASSERT_EQUAL (rh.opcode, h->opcode);
    CU_ASSERT_EQUAL (rh.cookie, h->cookie);
  }
  else {
    CU_ASSERT_EQUAL (rh.opcode, 0);
    CU_ASSERT_EQUAL (rh.cookie, 0);
  }
  CU_ASSERT_EQUAL (rr.pad, 0);
  CU_ASSERT (rr.error >= 0);
  rv->error = rr.error;
  rv->body = rbuf + REPLY_HEAD;
  rv->len = n - REPLY_HEAD;
  if (rr.error) {
    /* A non-empty, NUL-terminated message and nothing else. */
    CU_ASSERT (rv->len >= 2);
    CU_ASSERT_EQUAL (rv->body[rv->len - 1], '\0');
    CU_ASSERT_EQUAL (strlen ((const char *) rv->body), rv->len - 1);
  }
  return rr.error;
}

static int
call_fds (uint16_t opcode, const void *body, size_t blen, const int *fds,
          size_t nfds, struct reply_view *rv)
{
  size_t len = build (opcode, body, blen);

  return dispatch (msgbuf, len, fds, nfds, rv);
}

static int
call (uint16_t opcode, const void *body, size_t blen, struct reply_view *rv)
{
  return call_fds (opcode, body, blen, NULL, 0, rv);
}

/* Call and require success with a reply body of @want bytes. */
static bool
call_ok (uint16_t opcode, const void *body, size_t blen, const int *fds,
         size_t nfds, size_t want, struct reply_view *rv)
{
  int e = call_fds (opcode, body, blen, fds, nfds, rv);

  if (e) {
    fprintf (stderr, "  opcode %u: %s: %s\n", opcode, strerror (e),
             (const char *) rv->body);
    CU_FAIL ("request failed");
    return false;
  }
  CU_ASSERT_EQUAL (rv->len, want);
  return rv->len == want;
}

/* The state a rejected request must leave alone. */

#define MAX_DEVS 8
#define MAX_SNAPS (NBDSNAP_MAX_SNAPSHOTS)

struct dev_state {
  struct tracker *t;
  struct snapshot *snap;
  uint64_t block_count;
  uint8_t number, gen[16];
  bool frozen_valid;
  uint8_t frozen_number, frozen_gen[16];
  uint8_t active[64], frozen[64];
};

struct snap_state {
  struct snapshot *s;
  uint32_t state;
  int error;
  unsigned count;
  uint64_t used, limit, allocated;
  unsigned files;
};

struct state {
  unsigned ndev, nsnap;
  struct dev_state dev[MAX_DEVS];
  struct snap_state snap[MAX_SNAPS];
  unsigned events;
  int fds;
};

static void
capture (struct state *st)
{
  unsigned i;

  memset (st, 0, sizeof *st);
  pthread_mutex_lock (&control_lock);
  st->ndev = registry_device_count ();
  for (i = 0; i < st->ndev && i < MAX_DEVS; i++) {
    struct dev_state *d = &st->dev[i];
    struct tracker *t = registry_device_at (i);
    struct cbt_map *m = t->cbt;

    d->t = t;
    d->snap = t->snapshot;
    d->block_count = m->block_count;
    cbt_map_get_active (m, &d->number, d->gen);
    d->frozen_valid = cbt_map_get_frozen (m, &d->frozen_number,
                                          d->frozen_gen);
    memcpy (d->active, m->active, MIN (m->block_count, 64));
    if (m->frozen)
      memcpy (d->frozen, m->frozen, MIN (m->block_count, 64));
  }
  st->nsnap = registry_snapshot_count ();
  for (i = 0; i < st->nsnap && i < MAX_SNAPS; i++) {
    struct snap_state *p = &st->snap[i];
    struct snapshot *s = registry_snapshot_at (i);

    p->s = s;
    p->state = snapshot_state (s);
    p->error = s->error;
    p->count = s->count;
    diff_storage_usage (s->storage, &p->used, &p->limit, &p->allocated,
                        &p->files);
  }
  pthread_mutex_unlock (&control_lock);
  pthread_mutex_lock (&event_queue.lock);
  st->events = event_queue.count;
  pthread_mutex_unlock (&event_queue.lock);
  st->fds = unit_fd_count ();
}

static bool
same_state (const struct state *a, const struct state *b)
{
  bool ok = true;
  unsigned i;

  if (a->ndev != b->ndev || a->nsnap != b->nsnap) {
    fprintf (stderr, "  devices %u -> %u, snapshots %u -> %u\n",
             a->ndev, b->ndev, a->nsnap, b->nsnap);
    ok = false;
  }
  for (i = 0; i < MAX_DEVS; i++)
    if (memcmp (&a->dev[i], &b->dev[i], sizeof a->dev[i]) != 0) {
      fprintf (stderr, "  device %u changed (CBT or membership)\n", i);
      ok = false;
    }
  for (i = 0; i < MAX_SNAPS; i++)
    if (memcmp (&a->snap[i], &b->snap[i], sizeof a->snap[i]) != 0) {
      fprintf (stderr, "  snapshot %u changed\n", i);
      ok = false;
    }
  if (a->events != b->events) {
    fprintf (stderr, "  events queued %u -> %u\n", a->events, b->events);
    ok = false;
  }
  if (a->fds != b->fds) {
    fprintf (stderr, "  open descriptors %d -> %d\n", a->fds, b->fds);
    ok = false;
  }
  return ok;
}

/* @msg must be refused with @want, change nothing and close @fds. */
static void
reject_raw (const char *what, const void *msg, size_t len, const int *fds,
            size_t nfds, int want)
{
  struct state before, after;
  struct reply_view rv;
  size_t i;
  int e;

  capture (&before);
  e = dispatch (msg, len, fds, nfds, &rv);
  if (e != want)
    fprintf (stderr, "  %s: got %d (%s) \"%s\", expected %d (%s)\n", what,
             e, strerror (e), e ? (const char *) rv.body : "", want,
             strerror (want));
  CU_ASSERT_EQUAL (e, want);
  for (i = 0; i < nfds; i++) {
    if (!unit_fd_is_closed (fds[i]))
      fprintf (stderr, "  %s: descriptor %d left open\n", what, fds[i]);
    CU_ASSERT_TRUE (unit_fd_is_closed (fds[i]));
  }
  capture (&after);
  before.fds -= nfds;
  if (!same_state (&before, &after))
    fprintf (stderr, "  %s: the state changed\n", what);
  CU_ASSERT_TRUE (same_state (&before, &after));
}

static void
reject_fds (const char *what, uint16_t opcode, const void *body, size_t blen,
            const int *fds, size_t nfds, int want)
{
  size_t len = build (opcode, body, blen);

  reject_raw (what, msgbuf, len, fds, nfds, want);
}

static void
reject (const char *what, uint16_t opcode, const void *body, size_t blen,
        int want)
{
  reject_fds (what, opcode, body, blen, NULL, 0, want);
}

/* Descriptors of every kind. */

static int
tmpfile_fd (void)
{
  int fd = unit_tmpfile ();

  CU_ASSERT_FATAL (fd >= 0);
  return fd;
}

static int
pipe_fd (void)
{
  int p[2];

  CU_ASSERT_FATAL (pipe (p) == 0);
  close (p[1]);
  return p[0];
}

static int
readonly_fd (void)
{
  int fd = open (path1, O_RDONLY | O_CLOEXEC);

  CU_ASSERT_FATAL (fd >= 0);
  return fd;
}

static int
socket_fd (void)
{
  int sp[2];

  CU_ASSERT_FATAL (socketpair (AF_UNIX, SOCK_STREAM, 0, sp) == 0);
  close (sp[1]);
  return sp[0];
}

static void
drain_events (void)
{
  struct nbdsnap_ctl_event ev[16];

  while (event_queue_pop (&event_queue, ev, ARRAY_SIZE (ev)) > 0)
    ;
}

/* Pop the queued events; count those with @code for @id. */
static unsigned
count_events (uint32_t code, const uint8_t id[16])
{
  struct nbdsnap_ctl_event ev[EVENT_QUEUE_SIZE];
  size_t n = event_queue_pop (&event_queue, ev, ARRAY_SIZE (ev)), i;
  unsigned k = 0;

  for (i = 0; i < n; i++)
    k += ev[i].code == code && memcmp (ev[i].id, id, 16) == 0;
  return k;
}

/* Snapshot helpers through ctl. */

static bool
snap_create (uint64_t limit, uint8_t id[16])
{
  struct nbdsnap_ctl_snapshot_create req = { .limit = limit };
  struct reply_view rv;
  int fd = tmpfile_fd ();

  if (!call_ok (NBDSNAP_CTL_SNAPSHOT_CREATE, &req, sizeof req, &fd, 1,
                sizeof (struct nbdsnap_ctl_snapshot_id), &rv))
    return false;
  memcpy (id, rv.body, 16);
  return true;
}

static bool
snap_by_id (uint16_t opcode, const uint8_t id[16], size_t want,
            struct reply_view *rv)
{
  struct nbdsnap_ctl_snapshot_id req;

  memcpy (req.id, id, 16);
  return call_ok (opcode, &req, sizeof req, NULL, 0, want, rv);
}

static bool
snap_add (const uint8_t id[16], const char *name)
{
  struct nbdsnap_ctl_snapshot_device req;
  struct reply_view rv;

  memcpy (req.id, id, 16);
  set_name (req.name, sizeof req.name, name);
  return call_ok (NBDSNAP_CTL_SNAPSHOT_ADD_DEVICE, &req, sizeof req, NULL, 0,
                  0, &rv);
}

static bool
snap_destroy (const uint8_t id[16])
{
  struct reply_view rv;

  return snap_by_id (NBDSNAP_CTL_SNAPSHOT_DESTROY, id, 0, &rv);
}

static int
make_device (const char *name, char **path, struct tracker **t)
{
  uint8_t buf[4096];
  uint64_t off;
  int fd, err = 0;

  fd = unit_temp_file (DEV_SIZE, path);
  if (fd < 0)
    return -1;
  for (off = 0; off < DEV_SIZE; off += sizeof buf) {
    memset (buf, (int) (off / sizeof buf), sizeof buf);
    if (pwrite (fd, buf, sizeof buf, off) != sizeof buf) {
      close (fd);
      return -1;
    }
  }
  close (fd);
  *t = tracker_open (name, *path, &engine_params.cbt, &err);
  if (*t == NULL)
    return -1;
  pthread_mutex_lock (&control_lock);
  fd = registry_device_add (*t, &err);
  pthread_mutex_unlock (&control_lock);
  return fd;
}

static int
suite_init (void)
{
  if (make_device ("dev0", &path0, &dev0) == -1 ||
      make_device ("dev1", &path1, &dev1) == -1)
    return 1;
  drain_events ();
  return 0;
}

static int
suite_fini (void)
{
  pthread_mutex_lock (&control_lock);
  snapshot_destroy_all ();
  registry_device_clear ();
  pthread_mutex_unlock (&control_lock);
  drain_events ();
  unlink (path0);
  unlink (path1);
  free (path0);
  free (path1);
  return 0;
}

/* Happy paths. */

static void
test_version (void)
{
  struct nbdsnap_ctl_version v;
  struct reply_view rv;
  unsigned i;

  if (!call_ok (NBDSNAP_CTL_VERSION_INFO, NULL, 0, NULL, 0, sizeof v, &rv))
    return;
  memcpy (&v, rv.body, sizeof v);
  CU_ASSERT_EQUAL (v.protocol, NBDSNAP_CTL_VERSION);
  CU_ASSERT_EQUAL (v.msg_max, NBDSNAP_CTL_MSG_MAX);
  CU_ASSERT_STRING_EQUAL (v.plugin_version, PACKAGE_VERSION);
  for (i = strlen (PACKAGE_VERSION); i < sizeof v.plugin_version; i++)
    CU_ASSERT_EQUAL (v.plugin_version[i], '\0');
}

static void
test_device_list (void)
{
  struct nbdsnap_ctl_device_list_req req = { .start = 0 };
  struct nbdsnap_ctl_device_list l;
  struct nbdsnap_ctl_device d;
  struct reply_view rv;
  static const uint8_t zero[16];

  if (!call_ok (NBDSNAP_CTL_DEVICE_LIST, &req, sizeof req, NULL, 0,
                sizeof l + 2 * sizeof d, &rv))
    return;
  memcpy (&l, rv.body, sizeof l);
  CU_ASSERT_EQUAL (l.total, 2);
  CU_ASSERT_EQUAL (l.count, 2);
  memcpy (&d, rv.body + sizeof l, sizeof d);
  CU_ASSERT_STRING_EQUAL (d.name, "dev0");
  CU_ASSERT_STRING_EQUAL (d.path, path0);
  CU_ASSERT_EQUAL (d.size, DEV_SIZE);
  CU_ASSERT_EQUAL (d.logical_block_size, 1);
  CU_ASSERT (d.physical_block_size >= 512);
  CU_ASSERT_EQUAL (d.flags, 0);
  CU_ASSERT_EQUAL (d.connections, 0);
  CU_ASSERT_EQUAL (memcmp (d.snapshot, zero, 16), 0);
  memcpy (&d, rv.body + sizeof l + sizeof d, sizeof d);
  CU_ASSERT_STRING_EQUAL (d.name, "dev1");
  CU_ASSERT_STRING_EQUAL (d.path, path1);

  /* Paging. */
  req.start = 1;
  if (call_ok (NBDSNAP_CTL_DEVICE_LIST, &req, sizeof req, NULL, 0,
               sizeof l + sizeof d, &rv)) {
    memcpy (&l, rv.body, sizeof l);
    memcpy (&d, rv.body + sizeof l, sizeof d);
    CU_ASSERT_EQUAL (l.total, 2);
    CU_ASSERT_EQUAL (l.count, 1);
    CU_ASSERT_STRING_EQUAL (d.name, "dev1");
  }
  req.start = 2;
  if (call_ok (NBDSNAP_CTL_DEVICE_LIST, &req, sizeof req, NULL, 0, sizeof l,
               &rv)) {
    memcpy (&l, rv.body, sizeof l);
    CU_ASSERT_EQUAL (l.total, 2);
    CU_ASSERT_EQUAL (l.count, 0);
  }
  req.start = UINT32_MAX;
  if (call_ok (NBDSNAP_CTL_DEVICE_LIST, &req, sizeof req, NULL, 0, sizeof l,
               &rv)) {
    memcpy (&l, rv.body, sizeof l);
    CU_ASSERT_EQUAL (l.count, 0);
  }
}

static void
test_device_attach_detach (void)
{
  struct nbdsnap_ctl_device_attach att;
  struct nbdsnap_ctl_name nm;
  struct nbdsnap_ctl_device d;
  struct reply_view rv;
  char *path2 = NULL, *path3 = NULL;
  int fd;

  fd = unit_temp_file (3 * MiB, &path2);
  CU_ASSERT_FATAL (fd >= 0);
  close (fd);
  fd = unit_temp_file (MiB, &path3);
  CU_ASSERT_FATAL (fd >= 0);
  close (fd);

  set_name (att.name, sizeof att.name, "dev2");
  set_name (att.path, sizeof att.path, path2);
  if (call_ok (NBDSNAP_CTL_DEVICE_ATTACH, &att, sizeof att, NULL, 0,
               sizeof d, &rv)) {
    memcpy (&d, rv.body, sizeof d);
    CU_ASSERT_STRING_EQUAL (d.name, "dev2");
    CU_ASSERT_STRING_EQUAL (d.path, path2);
    CU_ASSERT_EQUAL (d.size, 3 * MiB);
    CU_ASSERT_EQUAL (d.flags, 0);
  }
  CU_ASSERT_EQUAL (registry_device_count (), 3);
  CU_ASSERT_PTR_NOT_NULL (registry_device_find ("dev2"));

  /* The same name, or the same file under another name. */
  set_name (att.path, sizeof att.path, path3);
  reject ("attach: name taken", NBDSNAP_CTL_DEVICE_ATTACH, &att, sizeof att,
          EEXIST);
  set_name (att.name, sizeof att.name, "dev3");
  set_name (att.path, sizeof att.path, path2);
  reject ("attach: file taken", NBDSNAP_CTL_DEVICE_ATTACH, &att, sizeof att,
          EEXIST);
  /* Paths that cannot be devices. */
  set_name (att.path, sizeof att.path, "/nonexistent/nbdsnap/disk.img");
  reject ("attach: no such file", NBDSNAP_CTL_DEVICE_ATTACH, &att,
          sizeof att, ENOENT);
  set_name (att.path, sizeof att.path, unit_tmpdir ());
  reject ("attach: a directory", NBDSNAP_CTL_DEVICE_ATTACH, &att,
          sizeof att, EINVAL);
  set_name (att.path, sizeof att.path, "");
  reject ("attach: empty path", NBDSNAP_CTL_DEVICE_ATTACH, &att,
          sizeof att, EINVAL);

  set_name (nm.name, sizeof nm.name, "dev2");
  call_ok (NBDSNAP_CTL_DEVICE_DETACH, &nm, sizeof nm, NULL, 0, 0, &rv);
  CU_ASSERT_EQUAL (registry_device_count (), 2);
  CU_ASSERT_PTR_NULL (registry_device_find ("dev2"));
  reject ("detach twice", NBDSNAP_CTL_DEVICE_DETACH, &nm, sizeof nm, ENOENT);
  set_name (nm.name, sizeof nm.name, "nope");
  reject ("detach unknown", NBDSNAP_CTL_DEVICE_DETACH, &nm, sizeof nm,
          ENOENT);

  unlink (path2);
  unlink (path3);
  free (path2);
  free (path3);
}

static void
test_cbt_info (void)
{
  struct nbdsnap_ctl_name nm;
  struct nbdsnap_ctl_cbt_info info;
  struct reply_view rv;
  uint8_t n, gen[16];

  set_name (nm.name, sizeof nm.name, "dev1");
  if (!call_ok (NBDSNAP_CTL_CBT_INFO, &nm, sizeof nm, NULL, 0, sizeof info,
                &rv))
    return;
  memcpy (&info, rv.body, sizeof info);
  CU_ASSERT_EQUAL (info.device_size, DEV_SIZE);
  CU_ASSERT_EQUAL (info.block_size, BS);
  CU_ASSERT_EQUAL (info.block_count, DEV_BLOCKS);
  cbt_map_get_active (dev1->cbt, &n, gen);
  CU_ASSERT_EQUAL (info.changes_number, n);
  CU_ASSERT_EQUAL (memcmp (info.generation, gen, 16), 0);
  CU_ASSERT_EQUAL (info.frozen_valid, 0);
  CU_ASSERT_EQUAL (info.pad, 0);

  set_name (nm.name, sizeof nm.name, "nope");
  reject ("cbt info: unknown device", NBDSNAP_CTL_CBT_INFO, &nm, sizeof nm,
          ENOENT);
}

/* CBT_READ of @name's map: fills @bytes, returns the count or -errno. */
static int
cbt_read (const char *name, uint32_t map, uint64_t start, uint32_t count,
          uint8_t *bytes, struct nbdsnap_ctl_cbt_data *d)
{
  struct nbdsnap_ctl_cbt_read req = { .map = map, .count = count,
                                      .start = start };
  struct reply_view rv;
  int e;

  set_name (req.name, sizeof req.name, name);
  e = call (NBDSNAP_CTL_CBT_READ, &req, sizeof req, &rv);
  if (e)
    return -e;
  CU_ASSERT_FATAL (rv.len >= sizeof *d);
  memcpy (d, rv.body, sizeof *d);
  CU_ASSERT_EQUAL (rv.len, sizeof *d + d->count);
  CU_ASSERT_EQUAL (d->start, start);
  CU_ASSERT_EQUAL (d->pad[0] | d->pad[1] | d->pad[2], 0);
  memcpy (bytes, rv.body + sizeof *d, d->count);
  return (int) d->count;
}

static void
test_cbt_read (void)
{
  struct nbdsnap_ctl_cbt_read req;
  struct nbdsnap_ctl_cbt_data d;
  struct nbdsnap_ctl_device_attach att;
  struct nbdsnap_ctl_name nm;
  struct reply_view rv;
  uint8_t bytes[64], n, gen[16];
  char *path2 = NULL;
  int err = 0, fd;

  /* A write marks its block; the map reads back as the engine has it. */
  CU_ASSERT_EQUAL (tracker_pwrite (dev0, "x", 1, 3 * BS + 5, false, &err),
                   0);
  cbt_map_get_active (dev0->cbt, &n, gen);
  CU_ASSERT_EQUAL (cbt_read ("dev0", NBDSNAP_CTL_MAP_ACTIVE, 0,
                             NBDSNAP_CBT_READ_MAX, bytes, &d), DEV_BLOCKS);
  CU_ASSERT_EQUAL (bytes[3], n);
  CU_ASSERT_EQUAL (memcmp (bytes, dev0->cbt->active, DEV_BLOCKS), 0);
  CU_ASSERT_EQUAL (d.changes_number, n);
  CU_ASSERT_EQUAL (memcmp (d.generation, gen, 16), 0);

  /* Clipped at the end of the map. */
  CU_ASSERT_EQUAL (cbt_read ("dev0", NBDSNAP_CTL_MAP_ACTIVE, 16, 10, bytes,
                             &d), 1);
  CU_ASSERT_EQUAL (cbt_read ("dev0", NBDSNAP_CTL_MAP_ACTIVE, 3, 1, bytes,
                             &d), 1);
  CU_ASSERT_EQUAL (bytes[0], n);

  /* Bad requests. */
  memset (&req, 0, sizeof req);
  set_name (req.name, sizeof req.name, "dev0");
  req.count = 1;
  req.start = DEV_BLOCKS;
  reject ("cbt read: start past the end", NBDSNAP_CTL_CBT_READ, &req,
          sizeof req, EINVAL);
  req.start = UINT64_MAX;
  reject ("cbt read: start far past the end", NBDSNAP_CTL_CBT_READ, &req,
          sizeof req, EINVAL);
  req.start = 0;
  req.count = 0;
  reject ("cbt read: count 0", NBDSNAP_CTL_CBT_READ, &req, sizeof req,
          EINVAL);
  req.count = NBDSNAP_CBT_READ_MAX + 1;
  reject ("cbt read: count too big", NBDSNAP_CTL_CBT_READ, &req, sizeof req,
          EINVAL);
  req.count = 1;
  req.map = 2;
  reject ("cbt read: unknown map", NBDSNAP_CTL_CBT_READ, &req, sizeof req,
          EINVAL);
  req.map = NBDSNAP_CTL_MAP_ACTIVE;
  set_name (req.name, sizeof req.name, "nope");
  reject ("cbt read: unknown device", NBDSNAP_CTL_CBT_READ, &req,
          sizeof req, ENOENT);

  /* The frozen map of a device never snapshotted. */
  fd = unit_temp_file (DEV_SIZE, &path2);
  CU_ASSERT_FATAL (fd >= 0);
  close (fd);
  set_name (att.name, sizeof att.name, "fresh");
  set_name (att.path, sizeof att.path, path2);
  if (call_ok (NBDSNAP_CTL_DEVICE_ATTACH, &att, sizeof att, NULL, 0,
               sizeof (struct nbdsnap_ctl_device), &rv)) {
    set_name (req.name, sizeof req.name, "fresh");
    req.map = NBDSNAP_CTL_MAP_FROZEN;
    reject ("cbt read: no frozen map", NBDSNAP_CTL_CBT_READ, &req,
            sizeof req, ENODATA);
    set_name (nm.name, sizeof nm.name, "fresh");
    call_ok (NBDSNAP_CTL_DEVICE_DETACH, &nm, sizeof nm, NULL, 0, 0, &rv);
  }
  unlink (path2);
  free (path2);
}

/* A CBT_MARK_DIRTY body with @count ranges. */
static size_t
mark_body (uint8_t *body, const char *name, uint32_t count,
           const struct nbdsnap_ctl_range *ranges, unsigned nranges)
{
  struct nbdsnap_ctl_mark_dirty h;

  set_name (h.name, sizeof h.name, name);
  h.count = count;
  h.pad = 0;
  memcpy (body, &h, sizeof h);
  memcpy (body + sizeof h, ranges, nranges * sizeof *ranges);
  return sizeof h + nranges * sizeof *ranges;
}

static void
test_mark_dirty (void)
{
  static uint8_t body[sizeof (struct nbdsnap_ctl_mark_dirty) +
                      (NBDSNAP_MARK_DIRTY_MAX + 1) *
                      sizeof (struct nbdsnap_ctl_range)];
  struct nbdsnap_ctl_range r[3] = {
    { 0, 1 },                   /* block 0 */
    { 9 * BS - 1, 2 },          /* blocks 8, 9 */
    { DEV_SIZE - 1, 1 },        /* block 16 */
  };
  struct nbdsnap_ctl_mark_dirty *h = (void *) body;
  struct nbdsnap_ctl_cbt_data d;
  struct reply_view rv;
  uint8_t before[64], bytes[64], n, gen[16];
  size_t len;
  unsigned i;

  cbt_map_reset (dev1->cbt);
  cbt_map_get_active (dev1->cbt, &n, gen);
  memcpy (before, dev1->cbt->active, DEV_BLOCKS);
  len = mark_body (body, "dev1", 3, r, 3);
  call_ok (NBDSNAP_CTL_CBT_MARK_DIRTY, body, len, NULL, 0, 0, &rv);
  CU_ASSERT_EQUAL (cbt_read ("dev1", NBDSNAP_CTL_MAP_ACTIVE, 0, 64, bytes,
                             &d), DEV_BLOCKS);
  for (i = 0; i < DEV_BLOCKS; i++) {
    bool marked = i == 0 || i == 8 || i == 9 || i == 16;
    CU_ASSERT_EQUAL (bytes[i], marked ? n : before[i]);
  }

  /* One bad range spoils the request: nothing is marked. */
  cbt_map_reset (dev1->cbt);
  {
    struct nbdsnap_ctl_range bad[2] = { { 2 * BS, 1 }, { 0, 0 } };
    static const struct nbdsnap_ctl_range worse[] = {
      { 0, 0 },                         /* empty */
      { DEV_SIZE, 1 },                  /* at the end */
      { DEV_SIZE - 1, 2 },              /* past the end */
      { 16, UINT64_MAX },               /* wrapping around */
      { UINT64_MAX, 1 },
    };
    for (i = 0; i < ARRAY_SIZE (worse); i++) {
      bad[1] = worse[i];
      len = mark_body (body, "dev1", 2, bad, 2);
      reject ("mark-dirty: bad range", NBDSNAP_CTL_CBT_MARK_DIRTY, body,
              len, EINVAL);
    }
    CU_ASSERT_EQUAL (dev1->cbt->active[2], 0);
  }

  /* Counts and lengths. */
  len = mark_body (body, "dev1", 0, r, 0);
  reject ("mark-dirty: no range", NBDSNAP_CTL_CBT_MARK_DIRTY, body, len,
          EINVAL);
  len = mark_body (body, "dev1", NBDSNAP_MARK_DIRTY_MAX + 1, r, 0);
  memset (body + len, 0, sizeof body - len);
  for (i = 0; i <= NBDSNAP_MARK_DIRTY_MAX; i++)
    memcpy (body + len + i * sizeof r[0], &r[0], sizeof r[0]);
  reject ("mark-dirty: too many ranges", NBDSNAP_CTL_CBT_MARK_DIRTY, body,
          sizeof body, EINVAL);
  len = mark_body (body, "dev1", 3, r, 2);
  reject ("mark-dirty: fewer ranges than counted",
          NBDSNAP_CTL_CBT_MARK_DIRTY, body, len, EBADMSG);
  len = mark_body (body, "dev1", 1, r, 2);
  reject ("mark-dirty: more ranges than counted",
          NBDSNAP_CTL_CBT_MARK_DIRTY, body, len, EBADMSG);
  len = mark_body (body, "dev1", 1, r, 1);
  reject ("mark-dirty: a byte too many", NBDSNAP_CTL_CBT_MARK_DIRTY, body,
          len + 1, EBADMSG);
  len = mark_body (body, "dev1", 1, r, 1);
  h->pad = 1;
  reject ("mark-dirty: non-zero pad", NBDSNAP_CTL_CBT_MARK_DIRTY, body, len,
          EBADMSG);
  len = mark_body (body, "nope", 1, r, 1);
  reject ("mark-dirty: unknown device", NBDSNAP_CTL_CBT_MARK_DIRTY, body,
          len, ENOENT);

  /* The maximum number of ranges is fine. */
  len = mark_body (body, "dev1", NBDSNAP_MARK_DIRTY_MAX, r, 0);
  for (i = 0; i < NBDSNAP_MARK_DIRTY_MAX; i++)
    memcpy (body + len + i * sizeof r[0], &r[i % 3], sizeof r[0]);
  call_ok (NBDSNAP_CTL_CBT_MARK_DIRTY, body,
           len + NBDSNAP_MARK_DIRTY_MAX * sizeof r[0], NULL, 0, 0, &rv);
  CU_ASSERT_EQUAL (dev1->cbt->active[9], n);
}

static void
test_snapshot_lifecycle (void)
{
  struct nbdsnap_ctl_snapshot_info info;
  struct nbdsnap_ctl_snapshot_info_device sd;
  struct nbdsnap_ctl_snapshot_device add;
  struct nbdsnap_ctl_append_storage app;
  struct nbdsnap_ctl_device_list_req lreq = { 0 };
  struct nbdsnap_ctl_device d;
  struct nbdsnap_ctl_collect col;
  struct nbdsnap_ctl_take take;
  struct nbdsnap_ctl_cbt_info cinfo;
  struct nbdsnap_ctl_cbt_data cd;
  struct nbdsnap_ctl_name nm;
  struct reply_view rv;
  uint8_t id[16], id2[16], bytes[64], before, gen0[16], map[64];
  int fds[1], err = 0, storage_fd;
  char c = 'y';

  drain_events ();
  cbt_map_get_active (dev0->cbt, &before, gen0);

  /* Create: the descriptor is kept by the snapshot. */
  {
    struct nbdsnap_ctl_snapshot_create req = { .limit = 16 * MiB };
    storage_fd = tmpfile_fd ();
    if (!call_ok (NBDSNAP_CTL_SNAPSHOT_CREATE, &req, sizeof req,
                  &storage_fd, 1, 16, &rv))
      return;
    memcpy (id, rv.body, 16);
    CU_ASSERT_FALSE (unit_fd_is_closed (storage_fd));
    CU_ASSERT_EQUAL (registry_snapshot_count (), 1);
  }

  /* Collect. */
  if (call_ok (NBDSNAP_CTL_SNAPSHOT_COLLECT, NULL, 0, NULL, 0,
               sizeof col + 16, &rv)) {
    memcpy (&col, rv.body, sizeof col);
    CU_ASSERT_EQUAL (col.count, 1);
    CU_ASSERT_EQUAL (col.pad, 0);
    CU_ASSERT_EQUAL (memcmp (rv.body + sizeof col, id, 16), 0);
  }

  /* Info of a created snapshot. */
  if (snap_by_id (NBDSNAP_CTL_SNAPSHOT_INFO, id, sizeof info, &rv)) {
    memcpy (&info, rv.body, sizeof info);
    CU_ASSERT_EQUAL (memcmp (info.id, id, 16), 0);
    CU_ASSERT_EQUAL (info.state, NBDSNAP_CTL_STATE_CREATED);
    CU_ASSERT_EQUAL (info.error, 0);
    CU_ASSERT_EQUAL (info.pause_ns, 0);
    CU_ASSERT_EQUAL (info.used, 0);
    CU_ASSERT_EQUAL (info.limit, 16 * MiB);
    CU_ASSERT_EQUAL (info.storage_count, 1);
    CU_ASSERT_EQUAL (info.device_count, 0);
  }

  /* Take without a device. */
  {
    struct nbdsnap_ctl_snapshot_id req;
    memcpy (req.id, id, 16);
    reject ("take: no device", NBDSNAP_CTL_SNAPSHOT_TAKE, &req, sizeof req,
            EINVAL);
  }

  /* Add dev0. */
  CU_ASSERT_TRUE (snap_add (id, "dev0"));
  if (snap_by_id (NBDSNAP_CTL_SNAPSHOT_INFO, id, sizeof info + sizeof sd,
                  &rv)) {
    memcpy (&info, rv.body, sizeof info);
    memcpy (&sd, rv.body + sizeof info, sizeof sd);
    CU_ASSERT_EQUAL (info.device_count, 1);
    CU_ASSERT_STRING_EQUAL (sd.name, "dev0");
    CU_ASSERT_EQUAL (sd.chunk_size, engine_params.chunk_size);
    CU_ASSERT_EQUAL (sd.changes_number, 0);
    CU_ASSERT_EQUAL (sd.chunks_copied, 0);
  }
  if (call_ok (NBDSNAP_CTL_DEVICE_LIST, &lreq, sizeof lreq, NULL, 0,
               sizeof (struct nbdsnap_ctl_device_list) + 2 * sizeof d,
               &rv)) {
    memcpy (&d, rv.body + sizeof (struct nbdsnap_ctl_device_list),
            sizeof d);
    CU_ASSERT_STRING_EQUAL (d.name, "dev0");
    CU_ASSERT_EQUAL (memcmp (d.snapshot, id, 16), 0);
  }

  /* dev0 is busy now. */
  set_name (nm.name, sizeof nm.name, "dev0");
  reject ("detach: in a snapshot", NBDSNAP_CTL_DEVICE_DETACH, &nm,
          sizeof nm, EBUSY);
  memcpy (add.id, id, 16);
  set_name (add.name, sizeof add.name, "dev0");
  reject ("add: twice", NBDSNAP_CTL_SNAPSHOT_ADD_DEVICE, &add, sizeof add,
          EBUSY);
  CU_ASSERT_FATAL (snap_create (MiB, id2));
  memcpy (add.id, id2, 16);
  reject ("add: in another snapshot", NBDSNAP_CTL_SNAPSHOT_ADD_DEVICE, &add,
          sizeof add, EBUSY);
  set_name (add.name, sizeof add.name, "nope");
  reject ("add: unknown device", NBDSNAP_CTL_SNAPSHOT_ADD_DEVICE, &add,
          sizeof add, ENOENT);
  memset (add.id, 0x42, 16);
  set_name (add.name, sizeof add.name, "dev1");
  reject ("add: unknown snapshot", NBDSNAP_CTL_SNAPSHOT_ADD_DEVICE, &add,
          sizeof add, ENOENT);

  /* Take. */
  if (snap_by_id (NBDSNAP_CTL_SNAPSHOT_TAKE, id, sizeof take, &rv)) {
    memcpy (&take, rv.body, sizeof take);
    CU_ASSERT (take.pause_ns < 1000000000ULL);
  }
  else
    take.pause_ns = UINT64_MAX;
  set_name (nm.name, sizeof nm.name, "dev0");
  if (call_ok (NBDSNAP_CTL_CBT_INFO, &nm, sizeof nm, NULL, 0, sizeof cinfo,
               &rv)) {
    memcpy (&cinfo, rv.body, sizeof cinfo);
    CU_ASSERT_EQUAL (cinfo.changes_number, before + 1);
    CU_ASSERT_EQUAL (cinfo.frozen_valid, 1);
    CU_ASSERT_EQUAL (cinfo.frozen_number, before);
    CU_ASSERT_EQUAL (memcmp (cinfo.frozen_generation, gen0, 16), 0);
  }
  if (snap_by_id (NBDSNAP_CTL_SNAPSHOT_INFO, id, sizeof info + sizeof sd,
                  &rv)) {
    memcpy (&info, rv.body, sizeof info);
    memcpy (&sd, rv.body + sizeof info, sizeof sd);
    CU_ASSERT_EQUAL (info.state, NBDSNAP_CTL_STATE_TAKEN);
    CU_ASSERT_EQUAL (info.pause_ns, take.pause_ns);
    CU_ASSERT_EQUAL (sd.changes_number, before);
    CU_ASSERT_EQUAL (memcmp (sd.generation, gen0, 16), 0);
  }

  /* What a taken snapshot refuses. */
  {
    struct nbdsnap_ctl_snapshot_id req;
    memcpy (req.id, id, 16);
    reject ("take: twice", NBDSNAP_CTL_SNAPSHOT_TAKE, &req, sizeof req,
            EALREADY);
    memcpy (add.id, id, 16);
    set_name (add.name, sizeof add.name, "dev1");
    reject ("add: after take", NBDSNAP_CTL_SNAPSHOT_ADD_DEVICE, &add,
            sizeof add, EALREADY);
  }

  /* The frozen map reads with the snapshot's number. */
  memcpy (map, dev0->cbt->frozen, DEV_BLOCKS);
  CU_ASSERT_EQUAL (cbt_read ("dev0", NBDSNAP_CTL_MAP_FROZEN, 0, 64, bytes,
                             &cd), DEV_BLOCKS);
  CU_ASSERT_EQUAL (cd.changes_number, before);
  CU_ASSERT_EQUAL (memcmp (bytes, map, DEV_BLOCKS), 0);

  /* mark-dirty while taken marks both maps. */
  {
    static uint8_t body[sizeof (struct nbdsnap_ctl_mark_dirty) +
                        sizeof (struct nbdsnap_ctl_range)];
    struct nbdsnap_ctl_range r = { 7 * BS + 3, 10 };
    size_t len = mark_body (body, "dev0", 1, &r, 1);
    call_ok (NBDSNAP_CTL_CBT_MARK_DIRTY, body, len, NULL, 0, 0, &rv);
    CU_ASSERT_EQUAL (dev0->cbt->active[7], before + 1);
    CU_ASSERT_EQUAL (dev0->cbt->frozen[7], before);
  }

  /* A write copies its chunk: info shows it. */
  CU_ASSERT_EQUAL (tracker_pwrite (dev0, &c, 1, 0, false, &err), 0);
  if (snap_by_id (NBDSNAP_CTL_SNAPSHOT_INFO, id, sizeof info + sizeof sd,
                  &rv)) {
    memcpy (&info, rv.body, sizeof info);
    memcpy (&sd, rv.body + sizeof info, sizeof sd);
    CU_ASSERT_EQUAL (sd.chunks_copied, 1);
    CU_ASSERT_EQUAL (info.used, sd.chunk_size);
    CU_ASSERT (info.allocated >= info.used);
  }

  /* Append storage. */
  drain_events ();
  memcpy (app.id, id, 16);
  app.limit = 8 * MiB;
  fds[0] = tmpfile_fd ();
  if (call_ok (NBDSNAP_CTL_SNAPSHOT_APPEND_STORAGE, &app, sizeof app, fds,
               1, sizeof info, &rv)) {
    memcpy (&info, rv.body, sizeof info);
    CU_ASSERT_EQUAL (memcmp (info.id, id, 16), 0);
    CU_ASSERT_EQUAL (info.state, NBDSNAP_CTL_STATE_TAKEN);
    CU_ASSERT_EQUAL (info.storage_count, 2);
    CU_ASSERT_EQUAL (info.limit, 24 * MiB);
    CU_ASSERT_EQUAL (info.device_count, 0);
    CU_ASSERT_FALSE (unit_fd_is_closed (fds[0]));
  }
  CU_ASSERT_EQUAL (count_events (NBDSNAP_CTL_EVENT_STORAGE_EXTENDED, id), 1);

  /* Append refusals. */
  app.limit = 0;
  fds[0] = tmpfile_fd ();
  reject_fds ("append: zero limit", NBDSNAP_CTL_SNAPSHOT_APPEND_STORAGE,
              &app, sizeof app, fds, 1, EINVAL);
  app.limit = MiB;
  fds[0] = pipe_fd ();
  reject_fds ("append: a pipe", NBDSNAP_CTL_SNAPSHOT_APPEND_STORAGE, &app,
              sizeof app, fds, 1, EBADF);
  fds[0] = readonly_fd ();
  reject_fds ("append: read-only", NBDSNAP_CTL_SNAPSHOT_APPEND_STORAGE, &app,
              sizeof app, fds, 1, EBADF);
  reject ("append: no descriptor", NBDSNAP_CTL_SNAPSHOT_APPEND_STORAGE, &app,
          sizeof app, EBADF);
  fds[0] = open (path0, O_RDWR | O_CLOEXEC);
  CU_ASSERT_FATAL (fds[0] >= 0);
  reject_fds ("append: storage on the device",
              NBDSNAP_CTL_SNAPSHOT_APPEND_STORAGE, &app, sizeof app, fds, 1,
              EXDEV);
  memset (app.id, 0x42, 16);
  fds[0] = tmpfile_fd ();
  reject_fds ("append: unknown snapshot",
              NBDSNAP_CTL_SNAPSHOT_APPEND_STORAGE, &app, sizeof app, fds, 1,
              ENOENT);

  /* Destroy: gone, storage closed, event, device free again. */
  drain_events ();
  CU_ASSERT_TRUE (snap_destroy (id));
  CU_ASSERT_TRUE (unit_fd_is_closed (storage_fd));
  CU_ASSERT_EQUAL (count_events (NBDSNAP_CTL_EVENT_DESTROYED, id), 1);
  CU_ASSERT_PTR_NULL (dev0->snapshot);
  CU_ASSERT_PTR_NULL (dev0->diff_area);
  CU_ASSERT_EQUAL (registry_snapshot_count (), 1);
  {
    struct nbdsnap_ctl_snapshot_id req;
    memcpy (req.id, id, 16);
    reject ("info: destroyed", NBDSNAP_CTL_SNAPSHOT_INFO, &req, sizeof req,
            ENOENT);
    reject ("destroy: twice", NBDSNAP_CTL_SNAPSHOT_DESTROY, &req,
            sizeof req, ENOENT);
    reject ("take: destroyed", NBDSNAP_CTL_SNAPSHOT_TAKE, &req, sizeof req,
            ENOENT);
  }
  /* dev0 can join another snapshot now. */
  CU_ASSERT_TRUE (snap_add (id2, "dev0"));
  CU_ASSERT_TRUE (snap_destroy (id2));
  CU_ASSERT_EQUAL (registry_snapshot_count (), 0);
  drain_events ();
}

/* The diff storage is the device's own file. */
static void
test_exdev (void)
{
  struct nbdsnap_ctl_snapshot_create req = { .limit = MiB };
  struct nbdsnap_ctl_snapshot_device add;
  struct reply_view rv;
  uint8_t id[16];
  int fd = open (path1, O_RDWR | O_CLOEXEC);

  CU_ASSERT_FATAL (fd >= 0);
  if (!call_ok (NBDSNAP_CTL_SNAPSHOT_CREATE, &req, sizeof req, &fd, 1, 16,
                &rv))
    return;
  memcpy (id, rv.body, 16);
  memcpy (add.id, id, 16);
  set_name (add.name, sizeof add.name, "dev1");
  reject ("add: storage on the device", NBDSNAP_CTL_SNAPSHOT_ADD_DEVICE,
          &add, sizeof add, EXDEV);
  CU_ASSERT_PTR_NULL (dev1->snapshot);
  CU_ASSERT_TRUE (snap_destroy (id));
  drain_events ();
}

/* At most NBDSNAP_MAX_SNAPSHOTS snapshots. */
static void
test_too_many_snapshots (void)
{
  static uint8_t ids[NBDSNAP_MAX_SNAPSHOTS][16];
  struct nbdsnap_ctl_snapshot_create req = { .limit = MiB };
  unsigned i;
  int fd;

  for (i = 0; i < NBDSNAP_MAX_SNAPSHOTS; i++)
    CU_ASSERT_FATAL (snap_create (MiB, ids[i]));
  fd = tmpfile_fd ();
  reject_fds ("create: too many snapshots", NBDSNAP_CTL_SNAPSHOT_CREATE,
              &req, sizeof req, &fd, 1, E2BIG);
  for (i = 0; i < NBDSNAP_MAX_SNAPSHOTS; i++)
    CU_ASSERT_TRUE (snap_destroy (ids[i]));
  CU_ASSERT_EQUAL (registry_snapshot_count (), 0);
  drain_events ();
}

/* Malformed messages. */

static void
test_bad_header (void)
{
  struct nbdsnap_ctl_header *h = msg_hdr ();
  int fd;

  /* Truncated. */
  build (NBDSNAP_CTL_VERSION_INFO, NULL, 0);
  reject_raw ("empty message", msgbuf, 0, NULL, 0, EBADMSG);
  reject_raw ("1 byte", msgbuf, 1, NULL, 0, EBADMSG);
  reject_raw ("header less a byte", msgbuf, HDR - 1, NULL, 0, EBADMSG);
  fd = tmpfile_fd ();
  reject_raw ("truncated, with a descriptor", msgbuf, 10, &fd, 1, EBADMSG);

  /* Magic, version, flags. */
  build (NBDSNAP_CTL_VERSION_INFO, NULL, 0);
  h->magic = 0x4e425343;        /* byte-swapped */
  reject_raw ("bad magic", msgbuf, HDR, NULL, 0, EPROTO);
  h->magic = 0;
  fd = pipe_fd ();
  reject_raw ("zero magic, with a descriptor", msgbuf, HDR, &fd, 1, EPROTO);
  build (NBDSNAP_CTL_VERSION_INFO, NULL, 0);
  h->version = 0;
  reject_raw ("version 0", msgbuf, HDR, NULL, 0, EPROTO);
  h->version = NBDSNAP_CTL_VERSION + 1;
  reject_raw ("version 2", msgbuf, HDR, NULL, 0, EPROTO);
  h->version = 0xffff;
  reject_raw ("version 0xffff", msgbuf, HDR, NULL, 0, EPROTO);
  build (NBDSNAP_CTL_VERSION_INFO, NULL, 0);
  h->flags = NBDSNAP_CTL_FLAG_REPLY;
  reject_raw ("reply flag", msgbuf, HDR, NULL, 0, EPROTO);
  h->flags = NBDSNAP_CTL_FLAG_EVENT;
  reject_raw ("event flag", msgbuf, HDR, NULL, 0, EPROTO);
  h->flags = 1u << 31;
  reject_raw ("unknown flag", msgbuf, HDR, NULL, 0, EPROTO);

  /* Length field against the datagram. */
  build (NBDSNAP_CTL_VERSION_INFO, NULL, 0);
  h->length = HDR + 1;
  reject_raw ("length says more", msgbuf, HDR, NULL, 0, EBADMSG);
  build (NBDSNAP_CTL_CBT_INFO, "dev0", 4);
  h->length = HDR;
  reject_raw ("length says less", msgbuf, HDR + 4, NULL, 0, EBADMSG);
  h->length = 0;
  reject_raw ("length 0", msgbuf, HDR + 4, NULL, 0, EBADMSG);
  h->length = UINT32_MAX;
  reject_raw ("length 4G", msgbuf, HDR + 4, NULL, 0, EBADMSG);
}

static void
test_oversize (void)
{
  struct nbdsnap_ctl_header *h = msg_hdr ();
  int fd;

  /* One byte over the limit, with a header that agrees. */
  memset (msgbuf, 0, sizeof msgbuf);
  build_hdr (msgbuf, NBDSNAP_CTL_CBT_MARK_DIRTY, NBDSNAP_CTL_MSG_MAX + 1);
  reject_raw ("64 KiB + 1", msgbuf, NBDSNAP_CTL_MSG_MAX + 1, NULL, 0,
              EMSGSIZE);
  fd = tmpfile_fd ();
  build_hdr (msgbuf, NBDSNAP_CTL_SNAPSHOT_CREATE, sizeof msgbuf);
  reject_raw ("128 KiB, with a descriptor", msgbuf, sizeof msgbuf, &fd, 1,
              EMSGSIZE);
  /* Oversized whatever the header says. */
  build_hdr (msgbuf, NBDSNAP_CTL_VERSION_INFO, HDR);
  reject_raw ("oversized, header says 24", msgbuf, NBDSNAP_CTL_MSG_MAX + 100,
              NULL, 0, EMSGSIZE);
  h->magic = 0;
  reject_raw ("oversized, bad magic", msgbuf, NBDSNAP_CTL_MSG_MAX + 100,
              NULL, 0, EMSGSIZE);
  /* Exactly the limit is not oversized (the body is wrong, though). */
  build_hdr (msgbuf, NBDSNAP_CTL_VERSION_INFO, NBDSNAP_CTL_MSG_MAX);
  reject_raw ("exactly 64 KiB", msgbuf, NBDSNAP_CTL_MSG_MAX, NULL, 0,
              EBADMSG);
}

static void
test_unknown_opcode (void)
{
  static const uint16_t bad[] = {
    0, NBDSNAP_CTL_SNAPSHOT_APPEND_STORAGE + 1, 63, NBDSNAP_CTL_EVENT, 65,
    1000, 0xffff,
  };
  unsigned i;
  int fd;

  for (i = 0; i < ARRAY_SIZE (bad); i++) {
    char what[64];
    snprintf (what, sizeof what, "opcode %u", bad[i]);
    reject (what, bad[i], NULL, 0, EOPNOTSUPP);
    reject (what, bad[i], "abcdefgh", 8, EOPNOTSUPP);
  }
  fd = tmpfile_fd ();
  reject_fds ("unknown opcode with a descriptor", 999, NULL, 0, &fd, 1,
              EOPNOTSUPP);
}

/* Every opcode with a body one byte short and one byte long. */
static void
test_wrong_body_size (void)
{
  static const struct {
    uint16_t opcode;
    size_t body;
    bool takes_fd;
  } ops[] = {
    { NBDSNAP_CTL_VERSION_INFO, 0, false },
    { NBDSNAP_CTL_DEVICE_LIST, sizeof (struct nbdsnap_ctl_device_list_req),
      false },
    { NBDSNAP_CTL_DEVICE_ATTACH, sizeof (struct nbdsnap_ctl_device_attach),
      false },
    { NBDSNAP_CTL_DEVICE_DETACH, sizeof (struct nbdsnap_ctl_name), false },
    { NBDSNAP_CTL_CBT_INFO, sizeof (struct nbdsnap_ctl_name), false },
    { NBDSNAP_CTL_CBT_READ, sizeof (struct nbdsnap_ctl_cbt_read), false },
    { NBDSNAP_CTL_SNAPSHOT_CREATE,
      sizeof (struct nbdsnap_ctl_snapshot_create), true },
    { NBDSNAP_CTL_SNAPSHOT_ADD_DEVICE,
      sizeof (struct nbdsnap_ctl_snapshot_device), false },
    { NBDSNAP_CTL_SNAPSHOT_TAKE, sizeof (struct nbdsnap_ctl_snapshot_id),
      false },
    { NBDSNAP_CTL_SNAPSHOT_DESTROY, sizeof (struct nbdsnap_ctl_snapshot_id),
      false },
    { NBDSNAP_CTL_SNAPSHOT_COLLECT, 0, false },
    { NBDSNAP_CTL_SNAPSHOT_INFO, sizeof (struct nbdsnap_ctl_snapshot_id),
      false },
    { NBDSNAP_CTL_SNAPSHOT_APPEND_STORAGE,
      sizeof (struct nbdsnap_ctl_append_storage), true },
  };
  static uint8_t body[2048];
  unsigned i;
  int fd;

  /* Bodies that would otherwise be valid (names of real devices). */
  memset (body, 0, sizeof body);
  for (i = 0; i < ARRAY_SIZE (ops); i++) {
    char what[64];

    snprintf (what, sizeof what, "opcode %u, body + 1", ops[i].opcode);
    if (ops[i].takes_fd) {
      fd = tmpfile_fd ();
      reject_fds (what, ops[i].opcode, body, ops[i].body + 1, &fd, 1,
                  EBADMSG);
    }
    else
      reject (what, ops[i].opcode, body, ops[i].body + 1, EBADMSG);
    if (ops[i].body == 0)
      continue;
    snprintf (what, sizeof what, "opcode %u, body - 1", ops[i].opcode);
    if (ops[i].takes_fd) {
      fd = tmpfile_fd ();
      reject_fds (what, ops[i].opcode, body, ops[i].body - 1, &fd, 1,
                  EBADMSG);
    }
    else
      reject (what, ops[i].opcode, body, ops[i].body - 1, EBADMSG);
    snprintf (what, sizeof what, "opcode %u, no body", ops[i].opcode);
    reject (what, ops[i].opcode, NULL, 0, EBADMSG);
  }
  /* The variable-length one below its fixed part. */
  reject ("mark-dirty, body 79", NBDSNAP_CTL_CBT_MARK_DIRTY, body,
          sizeof (struct nbdsnap_ctl_mark_dirty) - 1, EBADMSG);
  reject ("mark-dirty, no body", NBDSNAP_CTL_CBT_MARK_DIRTY, NULL, 0,
          EBADMSG);
}

/* Name fields: unterminated, garbage after the NUL, bad characters. */
static void
test_bad_names (void)
{
  static const char *invalid[] = {
    "", "dev 0", "a:b", "../dev0", "dev/0", "dev0\n", "d\xc3\xa9v",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  };
  struct nbdsnap_ctl_name nm;
  struct nbdsnap_ctl_device_attach att;
  struct nbdsnap_ctl_cbt_read rd;
  struct nbdsnap_ctl_snapshot_device sd;
  uint8_t mark[sizeof (struct nbdsnap_ctl_mark_dirty) +
               sizeof (struct nbdsnap_ctl_range)];
  struct nbdsnap_ctl_range r = { 0, 1 };
  unsigned i;

  CU_ASSERT_EQUAL (strlen (invalid[ARRAY_SIZE (invalid) - 1]), 65);

  /* Unterminated: all 72 bytes used. */
  memset (nm.name, 'a', sizeof nm.name);
  reject ("cbt info: unterminated", NBDSNAP_CTL_CBT_INFO, &nm, sizeof nm,
          EBADMSG);
  reject ("detach: unterminated", NBDSNAP_CTL_DEVICE_DETACH, &nm, sizeof nm,
          EBADMSG);
  memset (&rd, 0, sizeof rd);
  rd.count = 1;
  memset (rd.name, 'a', sizeof rd.name);
  reject ("cbt read: unterminated", NBDSNAP_CTL_CBT_READ, &rd, sizeof rd,
          EBADMSG);
  memset (&sd, 0, sizeof sd);
  memset (sd.name, 'a', sizeof sd.name);
  reject ("add device: unterminated", NBDSNAP_CTL_SNAPSHOT_ADD_DEVICE, &sd,
          sizeof sd, EBADMSG);
  mark_body (mark, "dev0", 1, &r, 1);
  memset (mark, 'a', NBDSNAP_NAME_SIZE);
  reject ("mark-dirty: unterminated", NBDSNAP_CTL_CBT_MARK_DIRTY, mark,
          sizeof mark, EBADMSG);
  set_name (att.name, sizeof att.name, "newdev");
  memset (att.path, 'p', sizeof att.path);
  reject ("attach: unterminated path", NBDSNAP_CTL_DEVICE_ATTACH, &att,
          sizeof att, EBADMSG);
  memset (att.name, 'n', sizeof att.name);
  set_name (att.path, sizeof att.path, path0);
  reject ("attach: unterminated name", NBDSNAP_CTL_DEVICE_ATTACH, &att,
          sizeof att, EBADMSG);

  /* A valid name with garbage after its NUL. */
  set_name (nm.name, sizeof nm.name, "dev0");
  nm.name[sizeof nm.name - 1] = 'x';
  reject ("cbt info: garbage after NUL", NBDSNAP_CTL_CBT_INFO, &nm,
          sizeof nm, EBADMSG);
  set_name (nm.name, sizeof nm.name, "dev0");
  nm.name[5] = 1;
  reject ("detach: garbage after NUL", NBDSNAP_CTL_DEVICE_DETACH, &nm,
          sizeof nm, EBADMSG);
  set_name (att.name, sizeof att.name, "newdev");
  set_name (att.path, sizeof att.path, path0);
  att.path[sizeof att.path - 1] = 'z';
  reject ("attach: garbage after the path", NBDSNAP_CTL_DEVICE_ATTACH, &att,
          sizeof att, EBADMSG);

  /* Terminated, but not a name. */
  for (i = 0; i < ARRAY_SIZE (invalid); i++) {
    char what[128];

    snprintf (what, sizeof what, "name '%s'", invalid[i]);
    set_name (nm.name, sizeof nm.name, invalid[i]);
    reject (what, NBDSNAP_CTL_CBT_INFO, &nm, sizeof nm, EINVAL);
    reject (what, NBDSNAP_CTL_DEVICE_DETACH, &nm, sizeof nm, EINVAL);
    set_name (att.name, sizeof att.name, invalid[i]);
    set_name (att.path, sizeof att.path, path0);
    reject (what, NBDSNAP_CTL_DEVICE_ATTACH, &att, sizeof att, EINVAL);
    set_name (rd.name, sizeof rd.name, invalid[i]);
    reject (what, NBDSNAP_CTL_CBT_READ, &rd, sizeof rd, EINVAL);
    mark_body (mark, invalid[i], 1, &r, 1);
    reject (what, NBDSNAP_CTL_CBT_MARK_DIRTY, mark, sizeof mark, EINVAL);
  }
}

static void
test_bad_pad (void)
{
  struct nbdsnap_ctl_device_list_req lr = { .start = 0, .pad = 1 };
  struct nbdsnap_ctl_snapshot_create cr = { .limit = MiB };
  int fd;

  reject ("device list: pad", NBDSNAP_CTL_DEVICE_LIST, &lr, sizeof lr,
          EBADMSG);
  lr.pad = 0x80000000u;
  reject ("device list: pad high bit", NBDSNAP_CTL_DEVICE_LIST, &lr,
          sizeof lr, EBADMSG);
  cr.pad = 1;
  fd = tmpfile_fd ();
  reject_fds ("create: pad", NBDSNAP_CTL_SNAPSHOT_CREATE, &cr, sizeof cr,
              &fd, 1, EBADMSG);
  cr.pad = 0;
  cr.flags = 1;
  fd = tmpfile_fd ();
  reject_fds ("create: flags", NBDSNAP_CTL_SNAPSHOT_CREATE, &cr, sizeof cr,
              &fd, 1, EBADMSG);
  /* (mark-dirty's pad: see the mark-dirty test.) */
}

/* Descriptors: where none belong, missing, too many, of the wrong kind. */
static void
test_bad_fds (void)
{
  struct nbdsnap_ctl_snapshot_create cr = { .limit = MiB };
  struct nbdsnap_ctl_name nm;
  struct nbdsnap_ctl_snapshot_id sid;
  uint8_t mark[sizeof (struct nbdsnap_ctl_mark_dirty) +
               sizeof (struct nbdsnap_ctl_range)];
  struct nbdsnap_ctl_range r = { 0, DEV_SIZE };
  int fds[CTL_FDS_MAX], null;
  uint8_t id[16];
  unsigned i;

  /* Opcodes that take none, each otherwise valid. */
  fds[0] = tmpfile_fd ();
  reject_fds ("version with a descriptor", NBDSNAP_CTL_VERSION_INFO, NULL,
              0, fds, 1, EBADMSG);
  set_name (nm.name, sizeof nm.name, "dev0");
  fds[0] = tmpfile_fd ();
  fds[1] = pipe_fd ();
  reject_fds ("cbt info with two descriptors", NBDSNAP_CTL_CBT_INFO, &nm,
              sizeof nm, fds, 2, EBADMSG);
  cbt_map_reset (dev0->cbt);
  mark_body (mark, "dev0", 1, &r, 1);
  fds[0] = tmpfile_fd ();
  reject_fds ("mark-dirty with a descriptor", NBDSNAP_CTL_CBT_MARK_DIRTY,
              mark, sizeof mark, fds, 1, EBADMSG);
  CU_ASSERT_EQUAL (dev0->cbt->active[0], 0);   /* nothing marked */
  fds[0] = tmpfile_fd ();
  reject_fds ("detach with a descriptor", NBDSNAP_CTL_DEVICE_DETACH, &nm,
              sizeof nm, fds, 1, EBADMSG);
  CU_ASSERT_PTR_NOT_NULL (registry_device_find ("dev0"));

  /* A snapshot is not destroyed by a request that brings a descriptor. */
  CU_ASSERT_FATAL (snap_create (MiB, id));
  memcpy (sid.id, id, 16);
  fds[0] = tmpfile_fd ();
  reject_fds ("destroy with a descriptor", NBDSNAP_CTL_SNAPSHOT_DESTROY,
              &sid, sizeof sid, fds, 1, EBADMSG);
  CU_ASSERT_PTR_NOT_NULL (registry_snapshot_find (id));

  /* Missing. */
  reject ("create without a descriptor", NBDSNAP_CTL_SNAPSHOT_CREATE, &cr,
          sizeof cr, EBADF);

  /* Too many. */
  for (i = 0; i < CTL_FDS_MAX; i++)
    fds[i] = tmpfile_fd ();
  reject_fds ("create with 8 descriptors", NBDSNAP_CTL_SNAPSHOT_CREATE, &cr,
              sizeof cr, fds, CTL_FDS_MAX, EBADMSG);
  fds[0] = tmpfile_fd ();
  fds[1] = tmpfile_fd ();
  reject_fds ("create with 2 descriptors", NBDSNAP_CTL_SNAPSHOT_CREATE, &cr,
              sizeof cr, fds, 2, EBADMSG);

  /* The wrong kind. */
  fds[0] = pipe_fd ();
  reject_fds ("create with a pipe", NBDSNAP_CTL_SNAPSHOT_CREATE, &cr,
              sizeof cr, fds, 1, EBADF);
  fds[0] = readonly_fd ();
  reject_fds ("create with a read-only file", NBDSNAP_CTL_SNAPSHOT_CREATE,
              &cr, sizeof cr, fds, 1, EBADF);
  fds[0] = socket_fd ();
  reject_fds ("create with a socket", NBDSNAP_CTL_SNAPSHOT_CREATE, &cr,
              sizeof cr, fds, 1, EBADF);
  null = open ("/dev/null", O_RDWR | O_CLOEXEC);
  CU_ASSERT_FATAL (null >= 0);
  fds[0] = null;
  reject_fds ("create with /dev/null", NBDSNAP_CTL_SNAPSHOT_CREATE, &cr,
              sizeof cr, fds, 1, EBADF);
  fds[0] = open (unit_tmpdir (), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  CU_ASSERT_FATAL (fds[0] >= 0);
  reject_fds ("create with a directory", NBDSNAP_CTL_SNAPSHOT_CREATE, &cr,
              sizeof cr, fds, 1, EBADF);

  /* A good descriptor, but a zero limit. */
  cr.limit = 0;
  fds[0] = tmpfile_fd ();
  reject_fds ("create with limit 0", NBDSNAP_CTL_SNAPSHOT_CREATE, &cr,
              sizeof cr, fds, 1, EINVAL);

  CU_ASSERT_TRUE (snap_destroy (id));
  drain_events ();
}

/* Over the socket: the server thread, SCM_RIGHTS, events. */

static char *sock_path;

static int
socket_init (void)
{
  char msg[256];
  int err = 0;

  if (asprintf (&sock_path, "%s/nbdsnap-unit-ctl-%d.sock", unit_tmpdir (),
                (int) getpid ()) == -1)
    return 1;
  if (event_queue_open (&event_queue, &err) == -1 ||
      ctl_server_listen (sock_path, msg, sizeof msg, &err) == -1) {
    fprintf (stderr, "socket suite: %s\n", msg);
    return 1;
  }
  return ctl_server_start (&err) == -1;
}

static int
socket_fini (void)
{
  ctl_server_stop ();
  event_queue_close (&event_queue);
  if (sock_path)
    unlink (sock_path);
  free (sock_path);
  return 0;
}

/* Wait up to 5 s for this process to hold @want descriptors. */
static int
wait_fd_count (int want)
{
  int n = unit_fd_count (), waited;

  for (waited = 0; n != want && waited < 5000; waited += 10) {
    unit_sleep_ms (10);
    n = unit_fd_count ();
  }
  return n;
}

/* Both suites share the devices: the last one frees them. */
static int
suite_fini_all (void)
{
  socket_fini ();
  return suite_fini ();
}

static void
test_socket_roundtrip (void)
{
  struct ctl_client *c = ctl_client_connect (sock_path);
  struct nbdsnap_ctl_version v;
  struct nbdsnap_ctl_snapshot_create cr = { .limit = 4 * MiB };
  struct nbdsnap_ctl_snapshot_device add;
  struct nbdsnap_ctl_snapshot_id sid;
  struct nbdsnap_ctl_take take;
  struct nbdsnap_ctl_name nm;
  struct nbdsnap_ctl_event ev;
  struct stat st;
  char msg[NBDSNAP_CTL_ERRMSG_MAX];
  uint8_t id[16];
  size_t len = 0;
  int fd, baseline;

  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_EQUAL (stat (sock_path, &st), 0);
  CU_ASSERT_TRUE (S_ISSOCK (st.st_mode));
  CU_ASSERT_EQUAL (st.st_mode & 0777, 0600);

  CU_ASSERT_EQUAL (ctl_client_call (c, NBDSNAP_CTL_VERSION_INFO, NULL, 0,
                                    -1, &v, sizeof v, &len, msg,
                                    sizeof msg), 0);
  CU_ASSERT_EQUAL (len, sizeof v);
  CU_ASSERT_EQUAL (v.protocol, NBDSNAP_CTL_VERSION);
  baseline = unit_fd_count ();  /* the server has accepted us now */

  /* An error comes back with its message. */
  set_name (nm.name, sizeof nm.name, "nope");
  msg[0] = '\0';
  CU_ASSERT_EQUAL (ctl_client_call (c, NBDSNAP_CTL_CBT_INFO, &nm, sizeof nm,
                                    -1, NULL, 0, NULL, msg, sizeof msg),
                   ENOENT);
  CU_ASSERT_PTR_NOT_NULL (strstr (msg, "nope"));

  /* Diff storage over SCM_RIGHTS: the plugin keeps its own copy. */
  fd = tmpfile_fd ();
  CU_ASSERT_EQUAL (ctl_client_call (c, NBDSNAP_CTL_SNAPSHOT_CREATE, &cr,
                                    sizeof cr, fd, id, sizeof id, &len, msg,
                                    sizeof msg), 0);
  CU_ASSERT_EQUAL (len, 16);
  close (fd);
  CU_ASSERT_EQUAL (unit_fd_count (), baseline + 1);
  memcpy (add.id, id, 16);
  set_name (add.name, sizeof add.name, "dev1");
  CU_ASSERT_EQUAL (ctl_client_call (c, NBDSNAP_CTL_SNAPSHOT_ADD_DEVICE, &add,
                                    sizeof add, -1, NULL, 0, NULL, msg,
                                    sizeof msg), 0);
  memcpy (sid.id, id, 16);
  CU_ASSERT_EQUAL (ctl_client_call (c, NBDSNAP_CTL_SNAPSHOT_TAKE, &sid,
                                    sizeof sid, -1, &take, sizeof take, &len,
                                    msg, sizeof msg), 0);
  CU_ASSERT_EQUAL (len, sizeof take);

  /* Destroy: the storage descriptor goes, the event is pushed. */
  CU_ASSERT_EQUAL (ctl_client_call (c, NBDSNAP_CTL_SNAPSHOT_DESTROY, &sid,
                                    sizeof sid, -1, NULL, 0, NULL, msg,
                                    sizeof msg), 0);
  CU_ASSERT_EQUAL (unit_fd_count (), baseline);
  memset (&ev, 0, sizeof ev);
  CU_ASSERT_EQUAL (ctl_client_next_event (c, &ev, 5000), 0);
  CU_ASSERT_EQUAL (ev.code, NBDSNAP_CTL_EVENT_DESTROYED);
  CU_ASSERT_EQUAL (memcmp (ev.id, id, 16), 0);
  ctl_client_close (c);
  /* The server lets go of its end too. */
  CU_ASSERT_EQUAL (wait_fd_count (baseline - 2), baseline - 2);
}

/* Send @len bytes with @nfds descriptors; receive the reply. */
static ssize_t
raw_exchange (int sock, const void *msg, size_t len, const int *fds,
              size_t nfds, void *reply)
{
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE (16 * sizeof (int))];
  } control;
  struct iovec iov = { .iov_base = (void *) msg, .iov_len = len };
  struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
  struct timeval tv = { .tv_sec = 10 };

  if (nfds > 0) {
    struct cmsghdr *cm;
    memset (&control, 0, sizeof control);
    mh.msg_control = control.buf;
    mh.msg_controllen = CMSG_SPACE (nfds * sizeof (int));
    cm = CMSG_FIRSTHDR (&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN (nfds * sizeof (int));
    memcpy (CMSG_DATA (cm), fds, nfds * sizeof (int));
  }
  setsockopt (sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (sendmsg (sock, &mh, MSG_NOSIGNAL) == -1)
    return -1;
  return recv (sock, reply, NBDSNAP_CTL_MSG_MAX, 0);
}

static int
reply_error (const void *reply, ssize_t n)
{
  struct nbdsnap_ctl_reply rr;

  if (n < (ssize_t) REPLY_HEAD)
    return -1;
  memcpy (&rr, (const char *) reply + HDR, sizeof rr);
  return rr.error;
}

static void
test_socket_malformed (void)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  struct nbdsnap_ctl_header h;
  int sock, fds[12], baseline;
  static uint8_t big[NBDSNAP_CTL_MSG_MAX + 4096];
  unsigned i;
  ssize_t n;

  sock = socket (AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  CU_ASSERT_FATAL (sock >= 0);
  strcpy (addr.sun_path, sock_path);
  CU_ASSERT_FATAL (connect (sock, (struct sockaddr *) &addr,
                            sizeof addr) == 0);
  build_hdr (&h, NBDSNAP_CTL_VERSION_INFO, HDR);
  n = raw_exchange (sock, &h, HDR, NULL, 0, rbuf);
  CU_ASSERT_EQUAL (reply_error (rbuf, n), 0);
  baseline = unit_fd_count ();  /* the server has accepted us now */

  /* A datagram larger than the limit: refused, not truncated into
   * something valid.
   */
  memset (big, 0, sizeof big);
  build_hdr (big, NBDSNAP_CTL_VERSION_INFO, sizeof big);
  n = raw_exchange (sock, big, sizeof big, NULL, 0, rbuf);
  CU_ASSERT_EQUAL (reply_error (rbuf, n), EMSGSIZE);
  build_hdr (big, NBDSNAP_CTL_VERSION_INFO, HDR);
  n = raw_exchange (sock, big, NBDSNAP_CTL_MSG_MAX + 1, NULL, 0, rbuf);
  CU_ASSERT_EQUAL (reply_error (rbuf, n), EMSGSIZE);

  /* Truncated. */
  n = raw_exchange (sock, big, 10, NULL, 0, rbuf);
  CU_ASSERT_EQUAL (reply_error (rbuf, n), EBADMSG);

  /* Empty: a datagram of no bytes is a malformed message too, not the
   * end of the connection.
   */
  n = raw_exchange (sock, big, 0, NULL, 0, rbuf);
  CU_ASSERT_EQUAL (reply_error (rbuf, n), EBADMSG);

  /* More descriptors than the server takes: all refused and closed. */
  build_hdr (&h, NBDSNAP_CTL_VERSION_INFO, HDR);
  for (i = 0; i < ARRAY_SIZE (fds); i++)
    fds[i] = tmpfile_fd ();
  n = raw_exchange (sock, &h, HDR, fds, ARRAY_SIZE (fds), rbuf);
  CU_ASSERT_EQUAL (reply_error (rbuf, n), EBADMSG);
  for (i = 0; i < ARRAY_SIZE (fds); i++)
    close (fds[i]);
  CU_ASSERT_EQUAL (unit_fd_count (), baseline);

  /* One descriptor where none belongs. */
  fds[0] = tmpfile_fd ();
  n = raw_exchange (sock, &h, HDR, fds, 1, rbuf);
  CU_ASSERT_EQUAL (reply_error (rbuf, n), EBADMSG);
  close (fds[0]);
  CU_ASSERT_EQUAL (unit_fd_count (), baseline);

  /* The connection still works. */
  build_hdr (&h, NBDSNAP_CTL_VERSION_INFO, HDR);
  n = raw_exchange (sock, &h, HDR, NULL, 0, rbuf);
  CU_ASSERT_EQUAL (reply_error (rbuf, n), 0);
  CU_ASSERT_EQUAL (n, REPLY_HEAD + sizeof (struct nbdsnap_ctl_version));
  close (sock);
  CU_ASSERT_EQUAL (wait_fd_count (baseline - 2), baseline - 2);
}

/* The server notices a client that closes, or shuts down its sending
 * side, and lets go of its end (the server runs in this process, so
 * its descriptors are counted here).
 */
static void
test_socket_close (void)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  struct nbdsnap_ctl_header h;
  int base, how, sock;
  ssize_t n;

  strcpy (addr.sun_path, sock_path);
  for (how = 0; how < 2; how++) {
    base = unit_fd_count ();
    sock = socket (AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    CU_ASSERT_FATAL (sock >= 0);
    CU_ASSERT_FATAL (connect (sock, (struct sockaddr *) &addr,
                              sizeof addr) == 0);
    build_hdr (&h, NBDSNAP_CTL_VERSION_INFO, HDR);
    n = raw_exchange (sock, &h, HDR, NULL, 0, rbuf);
    CU_ASSERT_EQUAL (reply_error (rbuf, n), 0);
    CU_ASSERT_EQUAL (unit_fd_count (), base + 2);       /* both ends */
    if (how == 0) {
      close (sock);
      CU_ASSERT_EQUAL (wait_fd_count (base), base);
    }
    else {
      CU_ASSERT_EQUAL (shutdown (sock, SHUT_WR), 0);
      CU_ASSERT_EQUAL (wait_fd_count (base + 1), base + 1);
      /* The server closed its end: we see the end of the stream. */
      CU_ASSERT_EQUAL (recv (sock, rbuf, sizeof rbuf, 0), 0);
      close (sock);
    }
  }
}

static CU_TestInfo dispatch_tests[] = {
  { "version", test_version },
  { "device list", test_device_list },
  { "device attach and detach", test_device_attach_detach },
  { "cbt info", test_cbt_info },
  { "cbt read", test_cbt_read },
  { "cbt mark-dirty", test_mark_dirty },
  { "snapshot create, add, take, info, collect, append, destroy",
    test_snapshot_lifecycle },
  { "diff storage on the device: EXDEV", test_exdev },
  { "too many snapshots: E2BIG", test_too_many_snapshots },
  { "malformed: header", test_bad_header },
  { "malformed: oversize", test_oversize },
  { "malformed: unknown opcode", test_unknown_opcode },
  { "malformed: wrong body size", test_wrong_body_size },
  { "malformed: names", test_bad_names },
  { "malformed: non-zero pad", test_bad_pad },
  { "malformed: descriptors", test_bad_fds },
  CU_TEST_INFO_NULL,
};

static CU_TestInfo socket_tests[] = {
  { "round trip with SCM_RIGHTS and events", test_socket_roundtrip },
  { "malformed datagrams", test_socket_malformed },
  { "close and half-close", test_socket_close },
  CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
  { "ctl_dispatch", suite_init, NULL, NULL, NULL, dispatch_tests },
  { "ctl server socket", socket_init, suite_fini_all, NULL, NULL,
    socket_tests },
  CU_SUITE_INFO_NULL,
};

int
main (void)
{
  return unit_run ("test-ctl", suites);
}
