/* nbdsnap-testctl - a small ctl client for the tests.
 *
 * Drives the plugin's control socket directly (nbdsnapctl talks to the
 * daemon instead).  Output is "key=value" lines, easy to parse in shell.
 *
 *   nbdsnap-testctl SOCKET COMMAND [ARGS...]
 *
 *   version
 *   device-list
 *   device-attach NAME PATH
 *   device-detach NAME
 *   cbt-info NAME
 *   cbt-map NAME active|frozen OUTFILE
 *   mark-dirty NAME OFFSET:LENGTH...
 *   create (--storage PATH | --tmpfile DIR) --limit SIZE [--device NAME]...
 *          [--take]
 *   add-device ID NAME
 *   take ID
 *   destroy ID
 *   collect
 *   info ID
 *   append-storage ID (--storage PATH | --tmpfile DIR) --limit SIZE
 *   wait-event [--timeout MS] [--code NAME]
 *
 * Exit status: 0 ok, 1 the plugin refused (errno name and message on
 * stderr), 2 usage, 3 transport failure.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include <nbdsnap/ctl.h>

#include "ctl_client.h"

static struct ctl_client *c;

static const char *
errno_name (int e)
{
  static const struct { int e; const char *n; } t[] = {
    { EPROTO, "EPROTO" }, { EMSGSIZE, "EMSGSIZE" }, { EBADMSG, "EBADMSG" },
    { EOPNOTSUPP, "EOPNOTSUPP" }, { EINVAL, "EINVAL" }, { EBADF, "EBADF" },
    { ENOENT, "ENOENT" }, { EEXIST, "EEXIST" }, { EBUSY, "EBUSY" },
    { EALREADY, "EALREADY" }, { EXDEV, "EXDEV" }, { E2BIG, "E2BIG" },
    { ENODATA, "ENODATA" }, { ENOSPC, "ENOSPC" }, { EIO, "EIO" },
    { EACCES, "EACCES" }, { ENOMEM, "ENOMEM" },
  };
  size_t i;

  for (i = 0; i < sizeof t / sizeof t[0]; i++)
    if (t[i].e == e)
      return t[i].n;
  return "E?";
}

static void __attribute__ ((noreturn))
usage (void)
{
  fprintf (stderr, "usage: nbdsnap-testctl SOCKET COMMAND [ARGS...] "
           "(see the source for the commands)\n");
  exit (2);
}

/* Call, and exit on any failure. */
static size_t
call (uint16_t op, const void *body, size_t len, int fd, void *out,
      size_t out_max)
{
  char msg[NBDSNAP_CTL_ERRMSG_MAX + 1];
  size_t n = 0;
  int r;

  r = ctl_client_call (c, op, body, len, fd, out, out_max, &n, msg,
                       sizeof msg);
  if (r == -1) {
    perror ("nbdsnap-testctl: ctl");
    exit (3);
  }
  if (r > 0) {
    fprintf (stderr, "nbdsnap-testctl: %s: %s\n", errno_name (r), msg);
    exit (1);
  }
  return n;
}

static uint64_t
parse_size (const char *s)
{
  char *end;
  uint64_t v;

  errno = 0;
  v = strtoull (s, &end, 10);
  if (errno || end == s)
    usage ();
  switch (*end) {
  case 'K': case 'k': v <<= 10; end++; break;
  case 'M': case 'm': v <<= 20; end++; break;
  case 'G': case 'g': v <<= 30; end++; break;
  case 'T': case 't': v <<= 40; end++; break;
  }
  if (*end)
    usage ();
  return v;
}

static void
parse_id (const char *s, uint8_t id[16])
{
  if (uuid_parse (s, id) == -1) {
    fprintf (stderr, "nbdsnap-testctl: '%s' is not a UUID\n", s);
    exit (2);
  }
}

static void
put_name (char *field, size_t size, const char *name)
{
  memset (field, 0, size);
  if (strlen (name) >= size) {
    fprintf (stderr, "nbdsnap-testctl: name too long\n");
    exit (2);
  }
  strcpy (field, name);
}

static void
print_uuid (const char *key, const uint8_t id[16])
{
  char s[37];

  uuid_unparse_lower (id, s);
  printf ("%s=%s\n", key, s);
}

static int
open_storage (const char *storage, const char *tmpdir)
{
  int fd;

  if (storage)
    fd = open (storage, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  else if (tmpdir)
    fd = open (tmpdir, O_RDWR | O_TMPFILE | O_CLOEXEC, 0600);
  else
    usage ();
  if (fd == -1) {
    perror (storage ? storage : tmpdir);
    exit (1);
  }
  return fd;
}

static void
cmd_version (void)
{
  struct nbdsnap_ctl_version v;

  call (NBDSNAP_CTL_VERSION_INFO, NULL, 0, -1, &v, sizeof v);
  printf ("protocol=%" PRIu32 "\nmsg_max=%" PRIu32 "\nplugin_version=%.32s\n"
          "connections=%" PRIu32 "\n",
          v.protocol, v.msg_max, v.plugin_version, v.connections);
}

static void
cmd_device_list (void)
{
  struct nbdsnap_ctl_device_list_req req = { 0 };
  static char out[NBDSNAP_CTL_MSG_MAX];
  uint32_t total;

  do {
    struct nbdsnap_ctl_device_list *l = (void *) out;
    struct nbdsnap_ctl_device *d = (void *) (out + sizeof *l);
    uint32_t i;

    call (NBDSNAP_CTL_DEVICE_LIST, &req, sizeof req, -1, out, sizeof out);
    total = l->total;
    for (i = 0; i < l->count; i++) {
      char s[37];
      uuid_unparse_lower (d[i].snapshot, s);
      printf ("%s %s %" PRIu64 " %s %" PRIu32 "\n", d[i].name, d[i].path,
              d[i].size, uuid_is_null (d[i].snapshot) ? "-" : s,
              d[i].connections);
    }
    if (l->count == 0)
      break;
    req.start += l->count;
  } while (req.start < total);
}

static void
cmd_attach (int argc, char **argv)
{
  struct nbdsnap_ctl_device_attach req;
  struct nbdsnap_ctl_device d;

  if (argc != 2)
    usage ();
  put_name (req.name, sizeof req.name, argv[0]);
  put_name (req.path, sizeof req.path, argv[1]);
  call (NBDSNAP_CTL_DEVICE_ATTACH, &req, sizeof req, -1, &d, sizeof d);
  printf ("name=%s\nsize=%" PRIu64 "\n", d.name, d.size);
}

static void
cmd_name_only (uint16_t op, int argc, char **argv)
{
  struct nbdsnap_ctl_name req;

  if (argc != 1)
    usage ();
  put_name (req.name, sizeof req.name, argv[0]);
  call (op, &req, sizeof req, -1, NULL, 0);
}

static void
cmd_cbt_info (int argc, char **argv)
{
  struct nbdsnap_ctl_name req;
  struct nbdsnap_ctl_cbt_info info;

  if (argc != 1)
    usage ();
  put_name (req.name, sizeof req.name, argv[0]);
  call (NBDSNAP_CTL_CBT_INFO, &req, sizeof req, -1, &info, sizeof info);
  printf ("size=%" PRIu64 "\nblock_size=%" PRIu32 "\nblock_count=%" PRIu64
          "\nchanges_number=%u\n", info.device_size, info.block_size,
          info.block_count, info.changes_number);
  print_uuid ("generation", info.generation);
  printf ("frozen_valid=%u\nfrozen_number=%u\n", info.frozen_valid,
          info.frozen_number);
  print_uuid ("frozen_generation", info.frozen_generation);
}

static void
cmd_cbt_map (int argc, char **argv)
{
  struct nbdsnap_ctl_cbt_read req;
  static char out[NBDSNAP_CTL_MSG_MAX];
  struct nbdsnap_ctl_cbt_data *d = (void *) out;
  FILE *fp;

  if (argc != 3)
    usage ();
  memset (&req, 0, sizeof req);
  put_name (req.name, sizeof req.name, argv[0]);
  if (strcmp (argv[1], "active") == 0)
    req.map = NBDSNAP_CTL_MAP_ACTIVE;
  else if (strcmp (argv[1], "frozen") == 0)
    req.map = NBDSNAP_CTL_MAP_FROZEN;
  else
    usage ();
  req.count = NBDSNAP_CBT_READ_MAX;
  fp = fopen (argv[2], "w");
  if (fp == NULL) {
    perror (argv[2]);
    exit (1);
  }
  for (;;) {
    char msg[NBDSNAP_CTL_ERRMSG_MAX + 1];
    size_t n;
    int r = ctl_client_call (c, NBDSNAP_CTL_CBT_READ, &req, sizeof req, -1,
                             out, sizeof out, &n, msg, sizeof msg);
    if (r == EINVAL && req.start > 0)
      break;                    /* past the end */
    if (r != 0) {
      fprintf (stderr, "nbdsnap-testctl: %s: %s\n",
               r > 0 ? errno_name (r) : "transport", r > 0 ? msg : "");
      exit (r > 0 ? 1 : 3);
    }
    if (fwrite (out + sizeof *d, 1, d->count, fp) != d->count) {
      perror (argv[2]);
      exit (1);
    }
    if (req.start == 0) {
      printf ("changes_number=%u\n", d->changes_number);
      print_uuid ("generation", d->generation);
    }
    req.start += d->count;
    if (d->count < req.count)
      break;
  }
  if (fclose (fp) == EOF) {
    perror (argv[2]);
    exit (1);
  }
}

static void
cmd_mark_dirty (int argc, char **argv)
{
  static char body[NBDSNAP_CTL_MSG_MAX];
  struct nbdsnap_ctl_mark_dirty *req = (void *) body;
  struct nbdsnap_ctl_range *r = (void *) (body + sizeof *req);
  int i;

  if (argc < 2 || argc - 1 > NBDSNAP_MARK_DIRTY_MAX)
    usage ();
  memset (req, 0, sizeof *req);
  put_name (req->name, sizeof req->name, argv[0]);
  for (i = 1; i < argc; i++) {
    char *colon = strchr (argv[i], ':');
    if (colon == NULL)
      usage ();
    *colon = '\0';
    r[i - 1].offset = parse_size (argv[i]);
    r[i - 1].length = parse_size (colon + 1);
  }
  req->count = argc - 1;
  call (NBDSNAP_CTL_CBT_MARK_DIRTY, body,
        sizeof *req + req->count * sizeof *r, -1, NULL, 0);
}

static void
add_device (const uint8_t id[16], const char *name)
{
  struct nbdsnap_ctl_snapshot_device req;

  memcpy (req.id, id, 16);
  put_name (req.name, sizeof req.name, name);
  call (NBDSNAP_CTL_SNAPSHOT_ADD_DEVICE, &req, sizeof req, -1, NULL, 0);
}

static void
take (const uint8_t id[16])
{
  struct nbdsnap_ctl_snapshot_id req;
  struct nbdsnap_ctl_take t;

  memcpy (req.id, id, 16);
  call (NBDSNAP_CTL_SNAPSHOT_TAKE, &req, sizeof req, -1, &t, sizeof t);
  printf ("pause_ns=%" PRIu64 "\n", t.pause_ns);
}

static void
cmd_create (int argc, char **argv)
{
  struct nbdsnap_ctl_snapshot_create req = { 0 };
  struct nbdsnap_ctl_snapshot_id id;
  const char *storage = NULL, *tmpdir = NULL, *devs[NBDSNAP_MAX_DEVICES];
  int i, ndevs = 0, fd;
  bool do_take = false;

  for (i = 0; i < argc; i++) {
    if (strcmp (argv[i], "--storage") == 0 && i + 1 < argc)
      storage = argv[++i];
    else if (strcmp (argv[i], "--tmpfile") == 0 && i + 1 < argc)
      tmpdir = argv[++i];
    else if (strcmp (argv[i], "--limit") == 0 && i + 1 < argc)
      req.limit = parse_size (argv[++i]);
    else if (strcmp (argv[i], "--device") == 0 && i + 1 < argc &&
             ndevs < NBDSNAP_MAX_DEVICES)
      devs[ndevs++] = argv[++i];
    else if (strcmp (argv[i], "--take") == 0)
      do_take = true;
    else
      usage ();
  }
  fd = open_storage (storage, tmpdir);
  call (NBDSNAP_CTL_SNAPSHOT_CREATE, &req, sizeof req, fd, &id, sizeof id);
  close (fd);
  print_uuid ("id", id.id);
  fflush (stdout);
  for (i = 0; i < ndevs; i++)
    add_device (id.id, devs[i]);
  if (do_take)
    take (id.id);
}

static void
cmd_id_only (uint16_t op, int argc, char **argv)
{
  struct nbdsnap_ctl_snapshot_id req;

  if (argc != 1)
    usage ();
  parse_id (argv[0], req.id);
  if (op == NBDSNAP_CTL_SNAPSHOT_TAKE)
    take (req.id);
  else
    call (op, &req, sizeof req, -1, NULL, 0);
}

static const char *
state_name (uint32_t s)
{
  switch (s) {
  case NBDSNAP_CTL_STATE_CREATED: return "created";
  case NBDSNAP_CTL_STATE_TAKEN: return "taken";
  case NBDSNAP_CTL_STATE_CORRUPTED: return "corrupted";
  default: return "unknown";
  }
}

static void
cmd_info (int argc, char **argv)
{
  struct nbdsnap_ctl_snapshot_id req;
  static char out[NBDSNAP_CTL_MSG_MAX];
  struct nbdsnap_ctl_snapshot_info *info = (void *) out;
  struct nbdsnap_ctl_snapshot_info_device *d = (void *) (out + sizeof *info);
  uint32_t i;

  if (argc != 1)
    usage ();
  parse_id (argv[0], req.id);
  call (NBDSNAP_CTL_SNAPSHOT_INFO, &req, sizeof req, -1, out, sizeof out);
  print_uuid ("id", info->id);
  printf ("state=%s\nerror=%s\npause_ns=%" PRIu64 "\nused=%" PRIu64
          "\nlimit=%" PRIu64 "\nallocated=%" PRIu64 "\nstorage_count=%"
          PRIu32 "\ndevice_count=%" PRIu32 "\n",
          state_name (info->state),
          info->error ? errno_name (info->error) : "none", info->pause_ns,
          info->used, info->limit, info->allocated, info->storage_count,
          info->device_count);
  for (i = 0; i < info->device_count; i++) {
    char s[37];
    uuid_unparse_lower (d[i].generation, s);
    printf ("device.%" PRIu32 "=%s chunk_size=%" PRIu32 " changes_number=%u"
            " chunks_copied=%" PRIu64 " generation=%s\n", i, d[i].name,
            d[i].chunk_size, d[i].changes_number, d[i].chunks_copied, s);
  }
}

static void
cmd_collect (void)
{
  static char out[NBDSNAP_CTL_MSG_MAX];
  struct nbdsnap_ctl_collect *col = (void *) out;
  struct nbdsnap_ctl_snapshot_id *ids = (void *) (out + sizeof *col);
  uint32_t i;

  call (NBDSNAP_CTL_SNAPSHOT_COLLECT, NULL, 0, -1, out, sizeof out);
  for (i = 0; i < col->count; i++) {
    char s[37];
    uuid_unparse_lower (ids[i].id, s);
    printf ("%s\n", s);
  }
}

static void
cmd_append (int argc, char **argv)
{
  struct nbdsnap_ctl_append_storage req = { .limit = 0 };
  struct nbdsnap_ctl_snapshot_info info;
  const char *storage = NULL, *tmpdir = NULL;
  int i, fd;

  if (argc < 1)
    usage ();
  parse_id (argv[0], req.id);
  for (i = 1; i < argc; i++) {
    if (strcmp (argv[i], "--storage") == 0 && i + 1 < argc)
      storage = argv[++i];
    else if (strcmp (argv[i], "--tmpfile") == 0 && i + 1 < argc)
      tmpdir = argv[++i];
    else if (strcmp (argv[i], "--limit") == 0 && i + 1 < argc)
      req.limit = parse_size (argv[++i]);
    else
      usage ();
  }
  fd = open_storage (storage, tmpdir);
  call (NBDSNAP_CTL_SNAPSHOT_APPEND_STORAGE, &req, sizeof req, fd, &info,
        sizeof info);
  close (fd);
  printf ("used=%" PRIu64 "\nlimit=%" PRIu64 "\nstorage_count=%" PRIu32 "\n",
          info.used, info.limit, info.storage_count);
}

static void
cmd_wait_event (int argc, char **argv)
{
  struct nbdsnap_ctl_event ev;
  int timeout = -1, i;
  const char *code = NULL;

  for (i = 0; i < argc; i++) {
    if (strcmp (argv[i], "--timeout") == 0 && i + 1 < argc)
      timeout = atoi (argv[++i]);
    else if (strcmp (argv[i], "--code") == 0 && i + 1 < argc)
      code = argv[++i];
    else
      usage ();
  }
  for (;;) {
    if (ctl_client_next_event (c, &ev, timeout) == -1) {
      if (errno == ETIMEDOUT) {
        fprintf (stderr, "nbdsnap-testctl: no event within %d ms\n",
                 timeout);
        exit (1);
      }
      perror ("nbdsnap-testctl: ctl");
      exit (3);
    }
    if (code == NULL || strcmp (code, ctl_event_name (ev.code)) == 0)
      break;
  }
  printf ("event=%s\n", ctl_event_name (ev.code));
  print_uuid ("id", ev.id);
  printf ("error=%s\nused=%" PRIu64 "\nlimit=%" PRIu64 "\ndevice=%s\n",
          ev.error ? errno_name (ev.error) : "none", ev.used, ev.limit,
          ev.device);
}

int
main (int argc, char **argv)
{
  const char *cmd;

  if (argc < 3)
    usage ();
  c = ctl_client_connect (argv[1]);
  if (c == NULL) {
    fprintf (stderr, "nbdsnap-testctl: %s: %s\n", argv[1], strerror (errno));
    exit (3);
  }
  cmd = argv[2];
  argc -= 3;
  argv += 3;

  if (strcmp (cmd, "version") == 0) cmd_version ();
  else if (strcmp (cmd, "device-list") == 0) cmd_device_list ();
  else if (strcmp (cmd, "device-attach") == 0) cmd_attach (argc, argv);
  else if (strcmp (cmd, "device-detach") == 0)
    cmd_name_only (NBDSNAP_CTL_DEVICE_DETACH, argc, argv);
  else if (strcmp (cmd, "cbt-info") == 0) cmd_cbt_info (argc, argv);
  else if (strcmp (cmd, "cbt-map") == 0) cmd_cbt_map (argc, argv);
  else if (strcmp (cmd, "mark-dirty") == 0) cmd_mark_dirty (argc, argv);
  else if (strcmp (cmd, "create") == 0) cmd_create (argc, argv);
  else if (strcmp (cmd, "add-device") == 0) {
    uint8_t id[16];
    if (argc != 2)
      usage ();
    parse_id (argv[0], id);
    add_device (id, argv[1]);
  }
  else if (strcmp (cmd, "take") == 0)
    cmd_id_only (NBDSNAP_CTL_SNAPSHOT_TAKE, argc, argv);
  else if (strcmp (cmd, "destroy") == 0)
    cmd_id_only (NBDSNAP_CTL_SNAPSHOT_DESTROY, argc, argv);
  else if (strcmp (cmd, "collect") == 0) cmd_collect ();
  else if (strcmp (cmd, "info") == 0) cmd_info (argc, argv);
  else if (strcmp (cmd, "append-storage") == 0) cmd_append (argc, argv);
  else if (strcmp (cmd, "wait-event") == 0) cmd_wait_event (argc, argv);
  else
    usage ();
  ctl_client_close (c);
  return 0;
}
