/* nbdsnap - ctl server: the plugin's end of include/nbdsnap/ctl.h.
 *
 * One thread polls the listening socket, the connected clients and the
 * event queue.  Each datagram is validated completely (header, exact
 * body length, zero padding, terminated names, descriptors) before any
 * object is touched, so a bad message gets an error reply and changes
 * nothing.  Requests run one at a time under control_lock; events are
 * sent to every client without blocking (a client whose socket is full
 * loses the event, which is logged).
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include <nbdkit-plugin.h>

#include <nbdsnap/ctl.h>

#include "cbt_store.h"
#include "common.h"
#include "ctl_server.h"
#include "diff_area.h"
#include "diff_storage.h"
#include "event_queue.h"
#include "registry.h"
#include "snapshot.h"
#include "tracker.h"

/* Reply under construction. */
struct reply {
  char *buf;                    /* NBDSNAP_CTL_MSG_MAX bytes */
  size_t len;                   /* body bytes written after the reply head */
  char msg[NBDSNAP_CTL_ERRMSG_MAX];
};

#define REPLY_HEAD (sizeof (struct nbdsnap_ctl_header) + \
                    sizeof (struct nbdsnap_ctl_reply))
#define REPLY_BODY_MAX (NBDSNAP_CTL_MSG_MAX - REPLY_HEAD)

static void *
reply_body (struct reply *r, size_t size)
{
  void *p;

  if (r->len + size > REPLY_BODY_MAX)
    return NULL;
  p = r->buf + REPLY_HEAD + r->len;
  memset (p, 0, size);
  r->len += size;
  return p;
}

static int __attribute__ ((format (printf, 3, 4)))
fail (struct reply *r, int err, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (r->msg, sizeof r->msg, fmt, ap);
  va_end (ap);
  return err;
}

/* A NUL-padded name field: terminated, valid characters, zero after. */
static bool
field_name (const char *field, size_t size, const char **name)
{
  size_t n = strnlen (field, size), i;

  if (n == size)
    return false;
  for (i = n; i < size; i++)
    if (field[i])
      return false;
  *name = field;
  return true;
}

static void
put_name (char *field, size_t size, const char *name)
{
  memset (field, 0, size);
  strncpy (field, name, size - 1);
}

/* Request context handed to each handler. */
struct request {
  const void *body;
  size_t len;
  int fd;                       /* the descriptor, or -1 */
  bool fd_kept;                 /* the handler took ownership */
};

typedef int handler_fn (struct request *q, struct reply *r);

static int
find_device (const char *field, struct tracker **t, struct reply *r)
{
  const char *name;

  if (!field_name (field, NBDSNAP_NAME_SIZE, &name))
    return fail (r, EBADMSG, "malformed device name field");
  if (!name_is_valid (name, strlen (name)))
    return fail (r, EINVAL, "invalid device name '%s'", name);
  *t = registry_device_find (name);
  if (*t == NULL)
    return fail (r, ENOENT, "no device '%s'", name);
  return 0;
}

static int
find_snapshot (const uint8_t id[16], struct snapshot **s, struct reply *r)
{
  *s = registry_snapshot_find (id);
  if (*s == NULL) {
    char str[37];
    uuid_unparse_lower (id, str);
    return fail (r, ENOENT, "no snapshot %s", str);
  }
  return 0;
}

static int
h_version (struct request *q, struct reply *r)
{
  struct nbdsnap_ctl_version *v = reply_body (r, sizeof *v);

  v->protocol = NBDSNAP_CTL_VERSION;
  v->msg_max = NBDSNAP_CTL_MSG_MAX;
  put_name (v->plugin_version, sizeof v->plugin_version, PACKAGE_VERSION);
  v->connections = __atomic_load_n (&nbd_connections, __ATOMIC_RELAXED);
  return 0;
}

static void
fill_device (struct nbdsnap_ctl_device *d, struct tracker *t)
{
  put_name (d->name, sizeof d->name, t->name);
  put_name (d->path, sizeof d->path, t->path);
  d->size = t->size;
  d->logical_block_size = t->logical_block_size;
  d->physical_block_size = t->physical_block_size;
  d->flags = t->is_blockdev ? NBDSNAP_CTL_DEVICE_BLOCKDEV : 0;
  d->connections = __atomic_load_n (&t->connections, __ATOMIC_RELAXED);
  if (t->snapshot)
    memcpy (d->snapshot, t->snapshot->id, 16);
}

static int
h_device_list (struct request *q, struct reply *r)
{
  const struct nbdsnap_ctl_device_list_req *req = q->body;
  struct nbdsnap_ctl_device_list *l;
  unsigned i, total = registry_device_count ();

  if (req->pad)
    return fail (r, EBADMSG, "non-zero padding");
  l = reply_body (r, sizeof *l);
  l->total = total;
  for (i = req->start; i < total && l->count < NBDSNAP_DEVICE_LIST_MAX; i++) {
    fill_device (reply_body (r, sizeof (struct nbdsnap_ctl_device)),
                 registry_device_at (i));
    l->count++;
  }
  return 0;
}

static int
h_device_attach (struct request *q, struct reply *r)
{
  const struct nbdsnap_ctl_device_attach *req = q->body;
  const char *name, *path;
  struct tracker *t;
  int err;

  if (!field_name (req->name, sizeof req->name, &name) ||
      !field_name (req->path, sizeof req->path, &path))
    return fail (r, EBADMSG, "malformed name or path field");
  if (!name_is_valid (name, strlen (name)))
    return fail (r, EINVAL, "invalid device name '%s'", name);
  if (path[0] != '/')
    return fail (r, EINVAL, "path '%s' is not absolute", path);
  if (registry_device_find (name))
    return fail (r, EEXIST, "device '%s' already exists", name);
  if ((t = registry_device_find_path (path)) != NULL)
    return fail (r, EEXIST, "%s is already attached as '%s'", path,
                 t->name);
  t = tracker_open (name, path, &engine_params.cbt, &err);
  if (t == NULL)
    return fail (r, err, "%s: %s", path,
                 err == EINVAL ? "not a regular file or block device"
                 : strerror (err));
  if (engine_params.statedir &&
      cbt_store_open (engine_params.statedir, t, &err) == -1) {
    tracker_put (t);
    return fail (r, err, "cannot write CBT state in %s: %s",
                 engine_params.statedir, strerror (err));
  }
  if (registry_device_add (t, &err) == -1) {
    tracker_put (t);
    if (err == EEXIST)
      return fail (r, err, "%s is already attached", path);
    return fail (r, err, "too many devices");
  }
  fill_device (reply_body (r, sizeof (struct nbdsnap_ctl_device)), t);
  nbdkit_debug ("device %s attached: %s", name, path);
  return 0;
}

static int
h_device_detach (struct request *q, struct reply *r)
{
  const struct nbdsnap_ctl_name *req = q->body;
  struct tracker *t;
  int e, err;

  if ((e = find_device (req->name, &t, r)) != 0)
    return e;
  if (t->snapshot || __atomic_load_n (&t->connections, __ATOMIC_ACQUIRE))
    return fail (r, EBUSY, "device '%s' is %s", t->name,
                 t->snapshot ? "in a snapshot" : "in use by clients");
  /* No client, no write: the map is final.  Save it clean. */
  if (engine_params.statedir &&
      cbt_store_save (engine_params.statedir, t, true, &err) == -1)
    return fail (r, err, "cannot save the CBT state of '%s': %s", t->name,
                 strerror (err));
  if (registry_device_remove (t->name, &err) == -1)
    return fail (r, err, "cannot detach '%s': %s", t->name, strerror (err));
  return 0;
}

static int
h_cbt_info (struct request *q, struct reply *r)
{
  const struct nbdsnap_ctl_name *req = q->body;
  struct nbdsnap_ctl_cbt_info *info;
  struct tracker *t;
  int e;

  if ((e = find_device (req->name, &t, r)) != 0)
    return e;
  info = reply_body (r, sizeof *info);
  info->device_size = t->size;
  info->block_count = t->cbt->block_count;
  info->block_size = t->cbt->block_size;
  cbt_map_get_active (t->cbt, &info->changes_number, info->generation);
  info->frozen_valid = cbt_map_get_frozen (t->cbt, &info->frozen_number,
                                           info->frozen_generation);
  return 0;
}

static int
h_cbt_read (struct request *q, struct reply *r)
{
  const struct nbdsnap_ctl_cbt_read *req = q->body;
  struct nbdsnap_ctl_cbt_data *d;
  struct tracker *t;
  int64_t n;
  int e, err;
  uint8_t number, gen[16];
  void *bytes;

  if ((e = find_device (req->name, &t, r)) != 0)
    return e;
  if (req->map != NBDSNAP_CTL_MAP_ACTIVE && req->map != NBDSNAP_CTL_MAP_FROZEN)
    return fail (r, EINVAL, "unknown map %" PRIu32, req->map);
  if (req->count == 0 || req->count > NBDSNAP_CBT_READ_MAX)
    return fail (r, EINVAL, "count must be 1..%d", NBDSNAP_CBT_READ_MAX);
  d = reply_body (r, sizeof *d);
  bytes = reply_body (r, req->count);
  n = cbt_map_read (t->cbt, req->map == NBDSNAP_CTL_MAP_FROZEN, req->start,
                    req->count, bytes, &number, gen, &err);
  if (n < 0) {
    if (err == ENODATA)
      return fail (r, err, "device '%s' has no frozen map (no snapshot "
                   "was taken)", t->name);
    return fail (r, err, "block %" PRIu64 " is past the end of the map "
                 "(%" PRIu64 " blocks)", req->start, t->cbt->block_count);
  }
  r->len -= req->count - n;
  d->start = req->start;
  d->count = n;
  d->changes_number = number;
  memcpy (d->generation, gen, 16);
  return 0;
}

static int
h_cbt_mark_dirty (struct request *q, struct reply *r)
{
  const struct nbdsnap_ctl_mark_dirty *req = q->body;
  const struct nbdsnap_ctl_range *ranges =
    (const void *) ((const char *) q->body + sizeof *req);
  struct tracker *t;
  uint32_t i;
  bool both;
  int e;

  if (req->pad)
    return fail (r, EBADMSG, "non-zero padding");
  if (req->count == 0 || req->count > NBDSNAP_MARK_DIRTY_MAX)
    return fail (r, EINVAL, "range count must be 1..%d",
                 NBDSNAP_MARK_DIRTY_MAX);
  if (q->len != sizeof *req + (size_t) req->count * sizeof *ranges)
    return fail (r, EBADMSG, "length does not match %" PRIu32 " ranges",
                 req->count);
  if ((e = find_device (req->name, &t, r)) != 0)
    return e;
  for (i = 0; i < req->count; i++) {
    uint64_t off = ranges[i].offset, len = ranges[i].length;
    if (len == 0 || off >= t->size || len > t->size - off)
      return fail (r, EINVAL, "range %" PRIu64 ":%" PRIu64 " is empty or "
                   "outside device '%s' (%" PRIu64 " bytes)",
                   off, len, t->name, t->size);
  }
  both = t->snapshot && snapshot_state (t->snapshot) == SNAPSHOT_TAKEN;
  for (i = 0; i < req->count; i++) {
    if (both)
      cbt_map_mark_both (t->cbt, ranges[i].offset, ranges[i].length);
    else
      cbt_map_mark (t->cbt, ranges[i].offset, ranges[i].length);
  }
  return 0;
}

static int
h_snapshot_create (struct request *q, struct reply *r)
{
  const struct nbdsnap_ctl_snapshot_create *req = q->body;
  struct nbdsnap_ctl_snapshot_id *id;
  struct snapshot *s;
  int err;

  if (req->flags || req->pad)
    return fail (r, EBADMSG, "non-zero flags or padding");
  if (req->limit == 0)
    return fail (r, EINVAL, "diff storage limit must be more than 0");
  s = snapshot_create (q->fd, req->limit, &err);
  if (s == NULL) {
    if (err == EBADF)
      return fail (r, err, "diff storage must be a regular file or block "
                   "device opened read-write");
    if (err == E2BIG)
      return fail (r, err, "too many snapshots (at most %d)",
                   NBDSNAP_MAX_SNAPSHOTS);
    return fail (r, err, "cannot create snapshot: %s", strerror (err));
  }
  q->fd_kept = true;
  id = reply_body (r, sizeof *id);
  memcpy (id->id, s->id, 16);
  nbdkit_debug ("snapshot %s created, diff storage limit %" PRIu64,
                s->id_str, req->limit);
  return 0;
}

static int
h_snapshot_add_device (struct request *q, struct reply *r)
{
  const struct nbdsnap_ctl_snapshot_device *req = q->body;
  struct snapshot *s;
  struct tracker *t;
  int e, err;

  /* The name field first: a malformed body is EBADMSG whatever the id. */
  if ((e = find_device (req->name, &t, r)) != 0 ||
      (e = find_snapshot (req->id, &s, r)) != 0)
    return e;
  if (snapshot_add_device (s, t, &err) == -1) {
    switch (err) {
    case EALREADY:
      return fail (r, err, "snapshot %s is already taken", s->id_str);
    case EBUSY:
      return fail (r, err, "device '%s' is already in snapshot %s",
                   t->name, t->snapshot->id_str);
    case EXDEV:
      return fail (r, err, "the diff storage of snapshot %s lies on device "
                   "'%s'", s->id_str, t->name);
    default:
      return fail (r, err, "too many devices in snapshot %s", s->id_str);
    }
  }
  return 0;
}

static int
h_snapshot_take (struct request *q, struct reply *r)
{
  const struct nbdsnap_ctl_snapshot_id *req = q->body;
  struct nbdsnap_ctl_take *take;
  struct snapshot *s;
  uint64_t pause;
  int e, err;

  if ((e = find_snapshot (req->id, &s, r)) != 0)
    return e;
  if (snapshot_take (s, &pause, &err) == -1) {
    if (err == EALREADY)
      return fail (r, err, "snapshot %s is already taken", s->id_str);
    if (err == EINVAL)
      return fail (r, err, "snapshot %s has no device", s->id_str);
    return fail (r, err, "cannot take snapshot %s: %s", s->id_str,
                 strerror (err));
  }
  take = reply_body (r, sizeof *take);
  take->pause_ns = pause;
  return 0;
}

static int
h_snapshot_destroy (struct request *q, struct reply *r)
{
  const struct nbdsnap_ctl_snapshot_id *req = q->body;
  struct snapshot *s;
  int e, err;

  if ((e = find_snapshot (req->id, &s, r)) != 0)
    return e;
  snapshot_destroy (s, &err);
  return 0;
}

static int
h_snapshot_collect (struct request *q, struct reply *r)
{
  struct nbdsnap_ctl_collect *c = reply_body (r, sizeof *c);
  unsigned i;

  for (i = 0; i < registry_snapshot_count (); i++) {
    struct nbdsnap_ctl_snapshot_id *id = reply_body (r, sizeof *id);
    memcpy (id->id, registry_snapshot_at (i)->id, 16);
    c->count++;
  }
  return 0;
}

static void
fill_info (struct nbdsnap_ctl_snapshot_info *info, struct snapshot *s)
{
  memcpy (info->id, s->id, 16);
  info->state = snapshot_ctl_state (s);
  info->error = __atomic_load_n (&s->error, __ATOMIC_RELAXED);
  info->pause_ns = s->pause_ns;
  diff_storage_usage (s->storage, &info->used, &info->limit,
                      &info->allocated, &info->storage_count);
}

static int
h_snapshot_info (struct request *q, struct reply *r)
{
  const struct nbdsnap_ctl_snapshot_id *req = q->body;
  struct nbdsnap_ctl_snapshot_info *info;
  struct snapshot *s;
  unsigned i;
  int e;

  if ((e = find_snapshot (req->id, &s, r)) != 0)
    return e;
  info = reply_body (r, sizeof *info);
  fill_info (info, s);
  for (i = 0; i < s->count; i++) {
    struct nbdsnap_ctl_snapshot_info_device *d;
    struct diff_area *da = s->areas[i];

    d = reply_body (r, sizeof *d);
    if (d == NULL)
      break;                    /* cannot happen: 256 * 104 fits */
    put_name (d->name, sizeof d->name, s->devices[i]->name);
    d->chunk_size = da ? da->chunk_size
      : diff_area_choose_chunk_size (s->devices[i]->size,
                                     engine_params.chunk_size,
                                     engine_params.chunk_count_max);
    if (snapshot_state (s) == SNAPSHOT_TAKEN) {
      d->changes_number = s->numbers[i];
      memcpy (d->generation, s->generations[i], 16);
    }
    d->chunks_copied = da ? __atomic_load_n (&da->chunks_copied,
                                             __ATOMIC_RELAXED) : 0;
    info->device_count++;
  }
  return 0;
}

static int
h_snapshot_append_storage (struct request *q, struct reply *r)
{
  const struct nbdsnap_ctl_append_storage *req = q->body;
  struct snapshot *s;
  int e, err;

  if ((e = find_snapshot (req->id, &s, r)) != 0)
    return e;
  if (req->limit == 0)
    return fail (r, EINVAL, "diff storage limit must be more than 0");
  if (snapshot_append_storage (s, q->fd, req->limit, &err) == -1) {
    switch (err) {
    case EALREADY:
      return fail (r, err, "snapshot %s is corrupted", s->id_str);
    case EBADF:
      return fail (r, err, "diff storage must be a regular file or block "
                   "device opened read-write");
    case EXDEV:
      return fail (r, err, "the new diff storage lies on a device of "
                   "snapshot %s", s->id_str);
    case E2BIG:
      return fail (r, err, "snapshot %s has %d storage files already",
                   s->id_str, NBDSNAP_MAX_STORAGES);
    default:
      return fail (r, err, "cannot append storage: %s", strerror (err));
    }
  }
  q->fd_kept = true;
  fill_info (reply_body (r, sizeof (struct nbdsnap_ctl_snapshot_info)), s);
  return 0;
}

/**
 * struct command - one row of the dispatch table.
 * @opcode: enum nbdsnap_ctl_opcode.
 * @name: for messages.
 * @body: exact body size, or the minimum if @variable.
 * @variable: the body may be longer (the handler checks the length).
 * @takes_fd: exactly one descriptor must come with it.
 * @fn: the handler.
 */
struct command {
  uint16_t opcode;
  const char *name;
  size_t body;
  bool variable;
  bool takes_fd;
  handler_fn *fn;
};

static const struct command commands[] = {
  { NBDSNAP_CTL_VERSION_INFO, "version", 0, false, false, h_version },
  { NBDSNAP_CTL_DEVICE_LIST, "device list",
    sizeof (struct nbdsnap_ctl_device_list_req), false, false,
    h_device_list },
  { NBDSNAP_CTL_DEVICE_ATTACH, "device attach",
    sizeof (struct nbdsnap_ctl_device_attach), false, false,
    h_device_attach },
  { NBDSNAP_CTL_DEVICE_DETACH, "device detach",
    sizeof (struct nbdsnap_ctl_name), false, false, h_device_detach },
  { NBDSNAP_CTL_CBT_INFO, "cbt info",
    sizeof (struct nbdsnap_ctl_name), false, false, h_cbt_info },
  { NBDSNAP_CTL_CBT_READ, "cbt read",
    sizeof (struct nbdsnap_ctl_cbt_read), false, false, h_cbt_read },
  { NBDSNAP_CTL_CBT_MARK_DIRTY, "cbt mark-dirty",
    sizeof (struct nbdsnap_ctl_mark_dirty), true, false, h_cbt_mark_dirty },
  { NBDSNAP_CTL_SNAPSHOT_CREATE, "snapshot create",
    sizeof (struct nbdsnap_ctl_snapshot_create), false, true,
    h_snapshot_create },
  { NBDSNAP_CTL_SNAPSHOT_ADD_DEVICE, "snapshot add-device",
    sizeof (struct nbdsnap_ctl_snapshot_device), false, false,
    h_snapshot_add_device },
  { NBDSNAP_CTL_SNAPSHOT_TAKE, "snapshot take",
    sizeof (struct nbdsnap_ctl_snapshot_id), false, false, h_snapshot_take },
  { NBDSNAP_CTL_SNAPSHOT_DESTROY, "snapshot destroy",
    sizeof (struct nbdsnap_ctl_snapshot_id), false, false,
    h_snapshot_destroy },
  { NBDSNAP_CTL_SNAPSHOT_COLLECT, "snapshot collect", 0, false, false,
    h_snapshot_collect },
  { NBDSNAP_CTL_SNAPSHOT_INFO, "snapshot info",
    sizeof (struct nbdsnap_ctl_snapshot_id), false, false, h_snapshot_info },
  { NBDSNAP_CTL_SNAPSHOT_APPEND_STORAGE, "snapshot append-storage",
    sizeof (struct nbdsnap_ctl_append_storage), false, true,
    h_snapshot_append_storage },
};

static int
validate_and_run (const void *msg, size_t len, const int *fds, size_t nfds,
                  struct reply *r, struct request *q)
{
  const struct nbdsnap_ctl_header *h = msg;
  const struct command *cmd = NULL;
  size_t i, body;

  if (len > NBDSNAP_CTL_MSG_MAX)
    return fail (r, EMSGSIZE, "message of %zu bytes is longer than %d",
                 len, NBDSNAP_CTL_MSG_MAX);
  if (len < sizeof *h)
    return fail (r, EBADMSG, "message of %zu bytes is shorter than the "
                 "header", len);
  if (h->magic != NBDSNAP_CTL_MAGIC)
    return fail (r, EPROTO, "bad magic 0x%08" PRIx32, h->magic);
  if (h->version != NBDSNAP_CTL_VERSION)
    return fail (r, EPROTO, "protocol version %u is not supported (this "
                 "plugin speaks %d)", h->version, NBDSNAP_CTL_VERSION);
  if (h->flags != 0)
    return fail (r, EPROTO, "flags 0x%" PRIx32 " are not valid in a "
                 "request", h->flags);
  if (h->length != len)
    return fail (r, EBADMSG, "header length %" PRIu32 " but %zu bytes "
                 "received", h->length, len);
  for (i = 0; i < ARRAY_SIZE (commands); i++)
    if (commands[i].opcode == h->opcode)
      cmd = &commands[i];
  if (cmd == NULL)
    return fail (r, EOPNOTSUPP, "unknown opcode %u", h->opcode);

  body = len - sizeof *h;
  if (cmd->variable ? body < cmd->body : body != cmd->body)
    return fail (r, EBADMSG, "%s: body of %zu bytes, expected %s%zu",
                 cmd->name, body, cmd->variable ? "at least " : "",
                 cmd->body);
  if (cmd->takes_fd) {
    if (nfds == 0)
      return fail (r, EBADF, "%s: no diff storage descriptor was passed",
                   cmd->name);
    if (nfds > 1)
      return fail (r, EBADMSG, "%s: %zu descriptors passed, expected 1",
                   cmd->name, nfds);
    q->fd = fds[0];
  }
  else if (nfds > 0)
    return fail (r, EBADMSG, "%s takes no descriptor", cmd->name);

  q->body = (const char *) msg + sizeof *h;
  q->len = body;
  return cmd->fn (q, r);
}

/* Start a reply to @msg: header with its opcode and cookie if it has
 * a header at all.
 */
static void
reply_header (const void *msg, size_t len, void *reply_buf)
{
  const struct nbdsnap_ctl_header *h = msg;
  struct nbdsnap_ctl_header *rh = reply_buf;

  memset (rh, 0, sizeof *rh);
  rh->magic = NBDSNAP_CTL_MAGIC;
  rh->version = NBDSNAP_CTL_VERSION;
  rh->flags = NBDSNAP_CTL_FLAG_REPLY;
  if (len >= sizeof *h) {
    rh->opcode = h->opcode;
    rh->cookie = h->cookie;
  }
}

size_t
ctl_error_reply (const void *msg, size_t len, int err, const char *text,
                 void *reply_buf)
{
  struct nbdsnap_ctl_header *rh = reply_buf;
  struct nbdsnap_ctl_reply *rr = (void *) ((char *) reply_buf + sizeof *rh);
  size_t n = strlen (text) + 1;

  reply_header (msg, len, reply_buf);
  rr->error = err;
  rr->pad = 0;
  memcpy ((char *) reply_buf + REPLY_HEAD, text, n);
  rh->length = REPLY_HEAD + n;
  return rh->length;
}

size_t
ctl_dispatch (const void *msg, size_t len, const int *fds, size_t nfds,
              void *reply_buf)
{
  struct nbdsnap_ctl_header *rh = reply_buf;
  struct nbdsnap_ctl_reply *rr;
  struct request q = { .fd = -1 };
  struct reply r = { .buf = reply_buf };
  int err;
  size_t i;

  /* The cookie is echoed even in an error reply, when there is one. */
  reply_header (msg, len, reply_buf);

  pthread_mutex_lock (&control_lock);
  err = validate_and_run (msg, len, fds, nfds, &r, &q);
  pthread_mutex_unlock (&control_lock);

  for (i = 0; i < nfds; i++)
    if (!(q.fd_kept && fds[i] == q.fd))
      close (fds[i]);

  rr = (void *) ((char *) reply_buf + sizeof *rh);
  rr->error = err;
  rr->pad = 0;
  if (err) {
    size_t n = strlen (r.msg) + 1;
    memcpy ((char *) reply_buf + REPLY_HEAD, r.msg, n);
    r.len = n;
    nbdkit_debug ("ctl: opcode %u: %s", rh->opcode, r.msg);
  }
  rh->length = REPLY_HEAD + r.len;
  return rh->length;
}

/* The server thread. */

static int listen_fd = -1;
static int stop_fd = -1;
static pthread_t server_thread;
static bool server_running;

int
ctl_server_listen (const char *path, char *msg, size_t msglen, int *err)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  struct stat st;
  mode_t old;
  int fd;

  if (strlen (path) >= sizeof addr.sun_path) {
    snprintf (msg, msglen, "control=%s: path too long", path);
    *err = ENAMETOOLONG;
    return -1;
  }
  strcpy (addr.sun_path, path);

  if (lstat (path, &st) == 0) {
    int probe;

    if (!S_ISSOCK (st.st_mode)) {
      snprintf (msg, msglen, "control=%s: exists and is not a socket", path);
      *err = EEXIST;
      return -1;
    }
    probe = socket (AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (probe >= 0 &&
        connect (probe, (struct sockaddr *) &addr, sizeof addr) == 0) {
      close (probe);
      snprintf (msg, msglen, "control=%s: another process is listening "
                "on it", path);
      *err = EADDRINUSE;
      return -1;
    }
    if (probe >= 0)
      close (probe);
    unlink (path);              /* stale */
  }

  fd = socket (AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd == -1) {
    *err = errno;
    snprintf (msg, msglen, "control=%s: socket: %s", path, strerror (errno));
    return -1;
  }
  old = umask (0177);           /* socket file mode 0600 */
  if (bind (fd, (struct sockaddr *) &addr, sizeof addr) == -1) {
    *err = errno;
    umask (old);
    snprintf (msg, msglen, "control=%s: bind: %s", path, strerror (errno));
    close (fd);
    return -1;
  }
  umask (old);
  if (chmod (path, 0600) == -1 || listen (fd, 16) == -1) {
    *err = errno;
    snprintf (msg, msglen, "control=%s: %s", path, strerror (errno));
    close (fd);
    unlink (path);
    return -1;
  }
  listen_fd = fd;
  return 0;
}

struct client {
  int fd;
};

static struct client clients[CTL_CLIENTS_MAX];
static unsigned nclients;

static void
client_drop (unsigned i)
{
  close (clients[i].fd);
  clients[i] = clients[--nclients];
}

static void
accept_client (void)
{
  struct ucred cred;
  socklen_t len = sizeof cred;
  struct timeval tv = { .tv_sec = 5 };
  int fd;

  fd = accept4 (listen_fd, NULL, NULL, SOCK_CLOEXEC);
  if (fd == -1)
    return;
  if (getsockopt (fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1 ||
      (cred.uid != 0 && cred.uid != geteuid ())) {
    nbdkit_error ("ctl: refused a client with uid %d",
                  len == sizeof cred ? (int) cred.uid : -1);
    close (fd);
    return;
  }
  if (nclients >= CTL_CLIENTS_MAX) {
    nbdkit_error ("ctl: refused a client: %d are connected already",
                  CTL_CLIENTS_MAX);
    close (fd);
    return;
  }
  /* A client that stops reading must not stall the server for long. */
  setsockopt (fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  clients[nclients++].fd = fd;
}

/* Receive one datagram and answer it.  Returns false if the client is
 * gone (or misbehaving so badly that it must go).
 */
static bool
serve_client (int fd, char *in, char *out)
{
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE (CTL_FDS_MAX * sizeof (int))];
  } control;
  struct iovec iov = { .iov_base = in, .iov_len = NBDSNAP_CTL_MSG_MAX + 1 };
  struct msghdr mh = {
    .msg_iov = &iov, .msg_iovlen = 1,
    .msg_control = control.buf, .msg_controllen = sizeof control.buf,
  };
  int fds[CTL_FDS_MAX];
  size_t nfds = 0, rlen;
  struct cmsghdr *cm;
  ssize_t n;

  n = recvmsg (fd, &mh, MSG_CMSG_CLOEXEC | MSG_TRUNC | MSG_DONTWAIT);
  if (n == -1)
    return errno == EAGAIN || errno == EINTR;
  if (n == 0) {
    /* An orderly close, or an empty datagram (malformed: it gets an
     * error reply).  Only a close shuts the peer's side down.
     */
    struct pollfd hup = { .fd = fd, .events = POLLRDHUP };
    if (poll (&hup, 1, 0) != 0)
      return false;
  }

  for (cm = CMSG_FIRSTHDR (&mh); cm; cm = CMSG_NXTHDR (&mh, cm)) {
    if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
      size_t k = (cm->cmsg_len - CMSG_LEN (0)) / sizeof (int), j;
      const int *p = (const int *) CMSG_DATA (cm);
      for (j = 0; j < k; j++) {
        if (nfds < CTL_FDS_MAX)
          fds[nfds++] = p[j];
        else
          close (p[j]);
      }
    }
  }
  if (mh.msg_flags & MSG_CTRUNC) {
    /* Too many descriptors: whatever arrived is refused. */
    size_t i;
    for (i = 0; i < nfds; i++)
      close (fds[i]);
    rlen = ctl_error_reply (in, (size_t) n, EBADMSG,
                            "more than 8 descriptors passed", out);
  }
  else
    rlen = ctl_dispatch (in, (size_t) n, fds, nfds, out);
  if (send (fd, out, rlen, MSG_NOSIGNAL) == -1) {
    nbdkit_debug ("ctl: send reply: %m");
    return false;
  }
  return true;
}

static void
send_events (char *out)
{
  struct nbdsnap_ctl_event evs[16];
  size_t n, i;
  unsigned c;

  /* With no client connected the events stay queued (the oldest are
   * dropped when it is full) for the next client, e.g. a restarted
   * daemon.
   */
  while (nclients > 0 &&
         (n = event_queue_pop (&event_queue, evs, ARRAY_SIZE (evs))) > 0) {
    for (i = 0; i < n; i++) {
      struct nbdsnap_ctl_header *h = (void *) out;

      memset (h, 0, sizeof *h);
      h->magic = NBDSNAP_CTL_MAGIC;
      h->version = NBDSNAP_CTL_VERSION;
      h->opcode = NBDSNAP_CTL_EVENT;
      h->flags = NBDSNAP_CTL_FLAG_EVENT;
      h->length = sizeof *h + sizeof evs[i];
      memcpy (out + sizeof *h, &evs[i], sizeof evs[i]);
      for (c = 0; c < nclients; c++)
        if (send (clients[c].fd, out, h->length,
                  MSG_NOSIGNAL | MSG_DONTWAIT) == -1)
          nbdkit_debug ("ctl: event %u lost for a client: %m",
                        evs[i].code);
    }
  }
}

static void *
server_main (void *arg)
{
  char *in = malloc (NBDSNAP_CTL_MSG_MAX + 1);
  char *out = malloc (NBDSNAP_CTL_MSG_MAX);

  if (in == NULL || out == NULL) {
    nbdkit_error ("ctl: out of memory; the control socket is not served");
    free (in);
    free (out);
    return NULL;
  }
  for (;;) {
    struct pollfd pfd[CTL_CLIENTS_MAX + 3];
    unsigned i, n = 0, base;

    pfd[n++] = (struct pollfd) { .fd = stop_fd, .events = POLLIN };
    /* Events wait in the queue while nobody listens: no busy loop. */
    pfd[n++] = (struct pollfd) { .fd = nclients ? event_queue.efd : -1,
                                 .events = POLLIN };
    pfd[n++] = (struct pollfd) { .fd = listen_fd, .events = POLLIN };
    base = n;
    for (i = 0; i < nclients; i++)
      pfd[n++] = (struct pollfd) { .fd = clients[i].fd, .events = POLLIN };

    if (poll (pfd, n, -1) == -1) {
      if (errno == EINTR)
        continue;
      nbdkit_error ("ctl: poll: %m");
      break;
    }
    if (pfd[0].revents)
      break;
    if (pfd[2].revents & POLLIN)
      accept_client ();
    /* Also when a client arrives: queued events go to it. */
    if (pfd[1].revents || pfd[2].revents)
      send_events (out);
    /* Walk backwards: client_drop moves the last client into slot i. */
    for (i = n - base; i-- > 0;) {
      if (pfd[base + i].revents == 0)
        continue;
      if ((pfd[base + i].revents & POLLIN) &&
          serve_client (clients[i].fd, in, out))
        continue;
      if (pfd[base + i].revents & (POLLIN | POLLHUP | POLLERR))
        client_drop (i);
    }
  }
  while (nclients > 0)
    client_drop (nclients - 1);
  free (in);
  free (out);
  return NULL;
}

int
ctl_server_start (int *err)
{
  int r;

  if (listen_fd == -1 || server_running)
    return 0;
  stop_fd = eventfd (0, EFD_CLOEXEC);
  if (stop_fd == -1) {
    *err = errno;
    return -1;
  }
  r = pthread_create (&server_thread, NULL, server_main, NULL);
  if (r != 0) {
    *err = r;
    close (stop_fd);
    stop_fd = -1;
    return -1;
  }
  server_running = true;
  return 0;
}

void
ctl_server_stop (void)
{
  uint64_t one = 1;

  if (server_running) {
    if (write (stop_fd, &one, sizeof one) == -1)
      nbdkit_debug ("ctl: cannot wake the server thread: %m");
    pthread_join (server_thread, NULL);
    server_running = false;
  }
  if (stop_fd >= 0)
    close (stop_fd);
  stop_fd = -1;
  if (listen_fd >= 0)
    close (listen_fd);
  listen_fd = -1;
}
