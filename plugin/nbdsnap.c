/* nbdsnap - nbdkit plugin: the data plane.
 *
 * This file only routes nbdkit's callbacks to the objects: tracker
 * (originals), image (snapshot images), snapshot and the ctl server.
 * See docs/nbdkit-nbdsnap-plugin.pod for the parameters and
 * docs/architecture.md for the whole picture.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <uuid/uuid.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <nbdsnap/cbt-format.h>
#include <nbdsnap/ctl.h>

#include "cbt_store.h"
#include "common.h"
#include "ctl_server.h"
#include "diff_area.h"
#include "diff_storage.h"
#include "event_queue.h"
#include "image.h"
#include "registry.h"
#include "snapshot.h"
#include "tracker.h"

/* device= parameters, opened in .config_complete. */
struct device_param {
  char name[NBDSNAP_NAME_BUF];
  char *path;
};
static struct device_param *device_params;
static size_t ndevice_params;

static char *control_path;
static char *statedir;
static bool control_listening;

static void
nbdsnap_unload (void)
{
  size_t i;

  for (i = 0; i < ndevice_params; i++)
    free (device_params[i].path);
  free (device_params);
  free (control_path);
  free (statedir);
}

/* nbdkit's parsers say what is wrong with the value; say which key. */
static int64_t
parse_size (const char *key, const char *value)
{
  int64_t v = nbdkit_parse_size (value);

  if (v == -1)
    nbdkit_error ("%s=%s: not a valid size", key, value);
  return v;
}

/* A size that must be a power of two within [min, max]. */
static int
parse_pow2 (const char *key, const char *value, uint64_t min, uint64_t max,
            uint64_t *out)
{
  int64_t v = parse_size (key, value);

  if (v == -1)
    return -1;
  if ((uint64_t) v < min || (uint64_t) v > max || !IS_POWER_OF_2 (v)) {
    nbdkit_error ("%s=%s: must be a power of two from %" PRIu64
                  " to %" PRIu64, key, value, min, max);
    return -1;
  }
  *out = v;
  return 0;
}

static int
parse_positive_size (const char *key, const char *value, uint64_t *out)
{
  int64_t v = parse_size (key, value);

  if (v == -1)
    return -1;
  if (v == 0) {
    nbdkit_error ("%s=%s: must be more than 0", key, value);
    return -1;
  }
  *out = v;
  return 0;
}

static int
parse_bool (const char *key, const char *value, bool *out)
{
  int r = nbdkit_parse_bool (value);

  if (r == -1) {
    nbdkit_error ("%s=%s: not a boolean (use true or false)", key, value);
    return -1;
  }
  *out = r;
  return 0;
}

static int
add_device_param (const char *value)
{
  const char *colon = strchr (value, ':');
  struct device_param *p;
  size_t len, i;

  if (colon == NULL || colon[1] == '\0') {
    nbdkit_error ("device=%s: expected NAME:PATH", value);
    return -1;
  }
  len = colon - value;
  if (!name_is_valid (value, len)) {
    nbdkit_error ("device=%s: the name must be 1 to 64 of "
                  "[A-Za-z0-9._-]", value);
    return -1;
  }
  for (i = 0; i < ndevice_params; i++) {
    if (strlen (device_params[i].name) == len &&
        memcmp (device_params[i].name, value, len) == 0) {
      nbdkit_error ("device=%s: the name is given twice", value);
      return -1;
    }
  }
  if (ndevice_params >= NBDSNAP_MAX_DEVICES) {
    nbdkit_error ("device=%s: at most %d devices", value,
                  NBDSNAP_MAX_DEVICES);
    return -1;
  }
  p = realloc (device_params, (ndevice_params + 1) * sizeof *p);
  if (p == NULL) {
    nbdkit_error ("realloc: %m");
    return -1;
  }
  device_params = p;
  p = &device_params[ndevice_params];
  memcpy (p->name, value, len);
  p->name[len] = '\0';
  /* realpath(3), not nbdkit_realpath: one message naming the key.  (It
   * also keeps clear of a hang at exit seen when nbdkit 1.32 runs with
   * libasan preloaded and nbdkit_realpath has failed.)
   */
  p->path = realpath (colon + 1, NULL);
  if (p->path == NULL) {
    nbdkit_error ("device=%s: %s", value, strerror (errno));
    return -1;
  }
  ndevice_params++;
  return 0;
}

static int
nbdsnap_config (const char *key, const char *value)
{
  struct engine_params *e = &engine_params;
  uint64_t v;

  if (strcmp (key, "device") == 0)
    return add_device_param (value);
  if (strcmp (key, "control") == 0) {
    /* Absolute: nbdkit changes directory when it forks. */
    free (control_path);
    control_path = nbdkit_absolute_path (value);
    if (control_path == NULL) {
      nbdkit_error ("control=%s: cannot make the path absolute", value);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "statedir") == 0) {
    free (statedir);
    statedir = realpath (value, NULL);
    if (statedir == NULL) {
      nbdkit_error ("statedir=%s: %s", value, strerror (errno));
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "chunk-size") == 0) {
    if (parse_pow2 (key, value, 4096, 64 * 1024 * 1024, &v) == -1)
      return -1;
    e->chunk_size = v;
    return 0;
  }
  if (strcmp (key, "chunk-count-max") == 0)
    return parse_positive_size (key, value, &e->chunk_count_max);
  if (strcmp (key, "cbt-block-size-min") == 0) {
    if (parse_pow2 (key, value, 512, 1u << 30, &v) == -1)
      return -1;
    e->cbt.block_size_min = v;
    return 0;
  }
  if (strcmp (key, "cbt-block-size-max") == 0) {
    if (parse_pow2 (key, value, 512, 1u << 30, &v) == -1)
      return -1;
    e->cbt.block_size_max = v;
    return 0;
  }
  if (strcmp (key, "cbt-block-count-max") == 0)
    return parse_positive_size (key, value, &e->cbt.block_count_max);
  if (strcmp (key, "storage-portion") == 0)
    return parse_positive_size (key, value, &e->storage_portion);
  if (strcmp (key, "storage-low-water") == 0) {
    int64_t s = parse_size (key, value);
    if (s == -1)
      return -1;
    e->storage_low_water = s;
    return 0;
  }
  if (strcmp (key, "image-readonly") == 0)
    return parse_bool (key, value, &e->image_readonly);
  if (strcmp (key, "allow-original-over-tcp") == 0)
    return parse_bool (key, value, &e->allow_original_over_tcp);

  nbdkit_error ("unknown parameter '%s'", key);
  return -1;
}

static int
nbdsnap_config_complete (void)
{
  struct engine_params *e = &engine_params;
  size_t i;
  int err;

  if (ndevice_params == 0 && control_path == NULL) {
    nbdkit_error ("no device=NAME:PATH given (and no control=SOCKET to "
                  "attach devices later)");
    return -1;
  }
  if (e->cbt.block_size_min > e->cbt.block_size_max) {
    nbdkit_error ("cbt-block-size-min (%" PRIu32 ") is larger than "
                  "cbt-block-size-max (%" PRIu32 ")",
                  e->cbt.block_size_min, e->cbt.block_size_max);
    return -1;
  }
  if (statedir) {
    struct stat st;
    if (stat (statedir, &st) == -1 || !S_ISDIR (st.st_mode)) {
      nbdkit_error ("statedir=%s: not a directory", statedir);
      return -1;
    }
    if (access (statedir, W_OK) == -1) {
      nbdkit_error ("statedir=%s: not writable: %m", statedir);
      return -1;
    }
    e->statedir = statedir;
  }

  SCOPED_LOCK (&control_lock);
  for (i = 0; i < ndevice_params; i++) {
    struct device_param *p = &device_params[i];
    struct tracker *t = registry_device_find_path (p->path);

    if (t) {
      nbdkit_error ("device=%s:%s: this file is given twice (also as %s)",
                    p->name, p->path, t->name);
      return -1;
    }
    t = tracker_open (p->name, p->path, &e->cbt, &err);
    if (t == NULL) {
      nbdkit_error ("device=%s:%s: %s%s", p->name, p->path, strerror (err),
                    err == EINVAL ? " (not a regular file or block device)"
                    : err == EBUSY ? " (block device in use, opened O_EXCL)"
                    : "");
      return -1;
    }
    if (statedir && cbt_store_open (statedir, t, &err) == -1) {
      tracker_put (t);
      return -1;
    }
    if (registry_device_add (t, &err) == -1) {
      nbdkit_error ("device=%s:%s: %s", p->name, p->path,
                    err == EEXIST ? "this file is given twice"
                    : strerror (err));
      tracker_put (t);
      return -1;
    }
    nbdkit_debug ("device %s: %s, %" PRIu64 " bytes, CBT block %" PRIu32,
                  t->name, t->path, t->size, t->cbt->block_size);
  }
  return 0;
}

#define nbdsnap_config_help \
  "device=NAME:PATH          (required, repeatable) Serve file or block device\n" \
  "                          PATH as export NAME.\n" \
  "control=SOCKET            Control socket for nbdsnapd (mode 0600).\n" \
  "statedir=DIR              Keep CBT state across restarts in DIR.\n" \
  "chunk-size=SIZE           Copy-on-write chunk size (default 64K).\n" \
  "chunk-count-max=N         Chunks per device at most (default 16M).\n" \
  "cbt-block-size-min=SIZE   Smallest CBT block (default 64K).\n" \
  "cbt-block-size-max=SIZE   Largest CBT block (default 64M).\n" \
  "cbt-block-count-max=N     CBT blocks per device at most (default 2M).\n" \
  "storage-portion=SIZE      Diff storage reserved ahead (default 64M).\n" \
  "storage-low-water=SIZE    Low-space event threshold (default 128M).\n" \
  "image-readonly=BOOL       Refuse writes to snapshot images.\n" \
  "allow-original-over-tcp=BOOL  Serve originals over TCP too."

static void
nbdsnap_dump_plugin (void)
{
  printf ("nbdsnap_ctl_protocol=%d\n", NBDSNAP_CTL_VERSION);
  printf ("nbdsnap_chunk_size_default=%d\n", CHUNK_SIZE_DEFAULT);
  printf ("nbdsnap_cbt_block_size_min_default=%d\n",
          CBT_BLOCK_SIZE_MIN_DEFAULT);
  printf ("nbdsnap_cbt_block_size_max_default=%d\n",
          CBT_BLOCK_SIZE_MAX_DEFAULT);
  printf ("nbdsnap_cbt_block_count_max_default=%d\n",
          CBT_BLOCK_COUNT_MAX_DEFAULT);
  printf ("nbdsnap_max_devices=%d\n", NBDSNAP_MAX_DEVICES);
  printf ("nbdsnap_max_snapshots=%d\n", NBDSNAP_MAX_SNAPSHOTS);
}

static int
nbdsnap_get_ready (void)
{
  char msg[256];
  int err;

  if (control_path) {
    if (ctl_server_listen (control_path, msg, sizeof msg, &err) == -1) {
      nbdkit_error ("%s", msg);
      return -1;
    }
    control_listening = true;
  }
  return 0;
}

static int
nbdsnap_after_fork (void)
{
  int err;

  if (event_queue_open (&event_queue, &err) == -1 ||
      diff_storage_grower_start (&err) == -1 ||
      ctl_server_start (&err) == -1) {
    nbdkit_error ("cannot start background threads: %s", strerror (err));
    return -1;
  }
  return 0;
}

static void
nbdsnap_cleanup (void)
{
  ctl_server_stop ();
  if (control_listening)
    unlink (control_path);
  pthread_mutex_lock (&control_lock);
  snapshot_destroy_all ();
  /* Every connection is closed: the maps are final.  Save them clean. */
  if (statedir) {
    unsigned i;
    int err;
    for (i = 0; i < registry_device_count (); i++)
      cbt_store_save (statedir, registry_device_at (i), true, &err);
  }
  registry_device_clear ();
  pthread_mutex_unlock (&control_lock);
  diff_storage_grower_stop ();
  event_queue_close (&event_queue);
}

/* Export names: NAME (original), NAME@UUID (image) or NAME@UUID.cbt
 * (the image's frozen CBT map, read-only).
 */
struct export_name {
  char device[NBDSNAP_NAME_BUF];
  bool image;
  bool cbt;
  uint8_t id[16];
};

static int
parse_export_name (const char *s, struct export_name *e)
{
  const char *at = strchr (s, '@');
  size_t len = at ? (size_t) (at - s) : strlen (s);
  char uuid[37];

  memset (e, 0, sizeof *e);
  if (!name_is_valid (s, len))
    return -1;
  memcpy (e->device, s, len);
  if (at == NULL)
    return 0;
  if (strlen (at + 1) == 40 && strcmp (at + 37, ".cbt") == 0)
    e->cbt = true;
  else if (strlen (at + 1) != 36)
    return -1;
  memcpy (uuid, at + 1, 36);
  uuid[36] = '\0';
  if (uuid_parse (uuid, e->id) == -1)
    return -1;
  e->image = true;
  return 0;
}

static bool
peer_is_tcp (void)
{
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;

  if (nbdkit_peer_name ((struct sockaddr *) &ss, &len) == -1)
    return false;               /* not a socket: -s, a pipe */
  return ss.ss_family == AF_INET || ss.ss_family == AF_INET6;
}

/**
 * struct handle - one NBD connection.
 * @tracker: the device (original exports), else NULL.
 * @image: the image (image and .cbt exports), else NULL.
 * @cbt: the export is NAME@UUID.cbt.
 * @readonly: the connection is read-only.
 */
struct handle {
  struct tracker *tracker;
  struct image *image;
  bool cbt;
  bool readonly;
};

static void
list_names_hint (char *buf, size_t len)
{
  unsigned i, n = registry_device_count ();
  size_t used = 0;

  buf[0] = '\0';
  for (i = 0; i < n && used + 2 < len; i++) {
    int k = snprintf (buf + used, len - used, "%s%s", i ? ", " : "",
                      registry_device_at (i)->name);
    if (k < 0)
      break;
    used += k;
  }
}

static void *
nbdsnap_open (int readonly)
{
  const char *name = nbdkit_export_name ();
  struct export_name en;
  struct handle *h;
  struct tracker *t;
  char hint[256];
  int err;

  SCOPED_LOCK (&control_lock);
  if (name == NULL || name[0] == '\0') {
    list_names_hint (hint, sizeof hint);
    nbdkit_error ("no export name given; exports are devices (%s) and "
                  "their snapshot images NAME@UUID", hint);
    nbdkit_set_error (ENOENT);
    return NULL;
  }
  if (parse_export_name (name, &en) == -1 ||
      (t = registry_device_find (en.device)) == NULL) {
    list_names_hint (hint, sizeof hint);
    nbdkit_error ("unknown export '%s' (devices: %s; images are "
                  "NAME@UUID)", name, hint);
    nbdkit_set_error (ENOENT);
    return NULL;
  }
  h = calloc (1, sizeof *h);
  if (h == NULL) {
    nbdkit_error ("calloc: %m");
    return NULL;
  }
  h->readonly = readonly;

  if (!en.image) {
    if (!engine_params.allow_original_over_tcp && peer_is_tcp ()) {
      nbdkit_error ("export '%s' is an original device: it is served on "
                    "unix sockets only (allow-original-over-tcp=false)",
                    name);
      nbdkit_set_error (EACCES);
      free (h);
      return NULL;
    }
    tracker_get (t);
    __atomic_add_fetch (&t->connections, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch (&nbd_connections, 1, __ATOMIC_RELAXED);
    h->tracker = t;
    return h;
  }

  {
    struct snapshot *s = registry_snapshot_find (en.id);
    if (s == NULL || snapshot_state (s) != SNAPSHOT_TAKEN) {
      nbdkit_error ("unknown export '%s': no taken snapshot %s",
                    name, strchr (name, '@') + 1);
      nbdkit_set_error (ENOENT);
      free (h);
      return NULL;
    }
    h->image = image_open (s, t, &err);
    if (h->image == NULL) {
      nbdkit_error ("unknown export '%s': device %s is not in snapshot %s",
                    name, t->name, s->id_str);
      nbdkit_set_error (ENOENT);
      free (h);
      return NULL;
    }
    h->cbt = en.cbt;
  }
  __atomic_add_fetch (&nbd_connections, 1, __ATOMIC_RELAXED);
  return h;
}

static void
nbdsnap_close (void *handle)
{
  struct handle *h = handle;

  SCOPED_LOCK (&control_lock);
  __atomic_sub_fetch (&nbd_connections, 1, __ATOMIC_RELAXED);
  if (h->tracker) {
    __atomic_sub_fetch (&h->tracker->connections, 1, __ATOMIC_RELAXED);
    tracker_put (h->tracker);
  }
  image_close (h->image);
  free (h);
}

static struct tracker *
handle_tracker (struct handle *h)
{
  return h->tracker ? h->tracker : h->image->tracker;
}

static const char *
nbdsnap_export_description (void *handle)
{
  struct handle *h = handle;
  struct tracker *t = handle_tracker (h);

  if (h->tracker)
    return nbdkit_printf_intern ("nbdsnap original device %s (%s)",
                                 t->name, t->path);
  return nbdkit_printf_intern ("nbdsnap %s of %s at snapshot %s%s",
                               h->cbt ? "CBT map" : "snapshot image",
                               t->name, h->image->snapshot->id_str,
                               snapshot_failed (h->image->snapshot)
                               ? " (corrupted)" : "");
}

static int
nbdsnap_list_exports (int readonly, int is_tls,
                      struct nbdkit_exports *exports)
{
  unsigned i, j;
  /* Originals that this client could not open are not listed. */
  bool originals = engine_params.allow_original_over_tcp || !peer_is_tcp ();

  SCOPED_LOCK (&control_lock);
  for (i = 0; originals && i < registry_device_count (); i++) {
    struct tracker *t = registry_device_at (i);
    const char *desc = nbdkit_printf_intern ("nbdsnap original device %s (%s)",
                                       t->name, t->path);
    if (desc == NULL || nbdkit_add_export (exports, t->name, desc) == -1)
      return -1;
  }
  for (i = 0; i < registry_snapshot_count (); i++) {
    struct snapshot *s = registry_snapshot_at (i);
    if (snapshot_state (s) != SNAPSHOT_TAKEN)
      continue;
    for (j = 0; j < s->count; j++) {
      const char *n = nbdkit_printf_intern ("%s@%s", s->devices[j]->name,
                                            s->id_str);
      const char *d = nbdkit_printf_intern ("nbdsnap snapshot image of %s "
                                            "at snapshot %s%s",
                                            s->devices[j]->name, s->id_str,
                                            snapshot_failed (s)
                                            ? " (corrupted)" : "");
      if (n == NULL || d == NULL || nbdkit_add_export (exports, n, d) == -1)
        return -1;
      n = nbdkit_printf_intern ("%s@%s.cbt", s->devices[j]->name, s->id_str);
      d = nbdkit_printf_intern ("nbdsnap CBT map of %s at snapshot %s",
                                s->devices[j]->name, s->id_str);
      if (n == NULL || d == NULL || nbdkit_add_export (exports, n, d) == -1)
        return -1;
    }
  }
  return 0;
}

static const char *
nbdsnap_default_export (int readonly, int is_tls)
{
  SCOPED_LOCK (&control_lock);
  if (registry_device_count () == 1 &&
      (engine_params.allow_original_over_tcp || !peer_is_tcp ()))
    return nbdkit_strdup_intern (registry_device_at (0)->name);
  return "";
}

static int64_t
nbdsnap_get_size (void *handle)
{
  struct handle *h = handle;
  struct tracker *t = handle_tracker (h);

  if (h->cbt)
    return NBDSNAP_CBT_HEADER_SIZE + t->cbt->block_count;
  return t->size;
}

/* The content of NAME@UUID.cbt: the cbt-format header of the snapshot's
 * frozen map, then the map.  Built on each read (the map can still
 * change: writes to the image mark it).
 */
static int
cbt_export_pread (struct handle *h, char *buf, uint32_t count,
                  uint64_t offset, int *err)
{
  struct tracker *t = h->image->tracker;
  struct snapshot *s = h->image->snapshot;
  uint64_t nblocks = t->cbt->block_count, end = offset + count;
  uint8_t number, gen[16];
  uint8_t *map;
  int r = -1;

  map = malloc (nblocks);
  if (map == NULL) {
    *err = ENOMEM;
    return -1;
  }
  if (!diff_area_image_enter (h->image->area)) {
    *err = EIO;
    goto out;
  }
  if (cbt_map_read (t->cbt, true, 0, nblocks, map, &number, gen,
                    err) != (int64_t) nblocks) {
    *err = EIO;
    goto leave;
  }
  memset (buf, 0, count);
  if (offset < NBDSNAP_CBT_HEADER_SIZE) {
    struct nbdsnap_cbt_header hdr;
    uint64_t n;

    cbt_header_fill (&hdr, t->size, t->cbt->block_size, nblocks,
                     NBDSNAP_CBT_FLAG_SNAPSHOT | NBDSNAP_CBT_FLAG_CLEAN,
                     gen, number, s->id, map);
    if (offset < sizeof hdr) {
      n = MIN ((uint64_t) sizeof hdr - offset, (uint64_t) count);
      memcpy (buf, (char *) &hdr + offset, n);
    }
  }
  if (end > NBDSNAP_CBT_HEADER_SIZE) {
    uint64_t from = MAX (offset, (uint64_t) NBDSNAP_CBT_HEADER_SIZE);
    memcpy (buf + (from - offset), map + (from - NBDSNAP_CBT_HEADER_SIZE),
            end - from);
  }
  r = 0;
 leave:
  diff_area_image_leave (h->image->area);
 out:
  free (map);
  return r;
}

static int
nbdsnap_block_size (void *handle, uint32_t *minimum, uint32_t *preferred,
                    uint32_t *maximum)
{
  struct tracker *t = handle_tracker (handle);

  *minimum = ((struct handle *) handle)->tracker ? t->logical_block_size : 1;
  *preferred = MAX (t->physical_block_size, 4096u);
  *maximum = 0xffffffff;
  return 0;
}

static int
nbdsnap_can_write (void *handle)
{
  struct handle *h = handle;

  return h->tracker ? 1 : !h->cbt && !engine_params.image_readonly;
}

static int
nbdsnap_can_flush (void *handle)
{
  return 1;
}

static int
nbdsnap_can_fua (void *handle)
{
  return NBDKIT_FUA_NATIVE;
}

static int
nbdsnap_can_zero (void *handle)
{
  return !((struct handle *) handle)->cbt;
}

static int
nbdsnap_can_trim (void *handle)
{
  return ((struct handle *) handle)->tracker != NULL;
}

static int
nbdsnap_can_fast_zero (void *handle)
{
  struct handle *h = handle;

  return h->tracker ? tracker_can_fast_zero (h->tracker) : 0;
}

static int
nbdsnap_can_extents (void *handle)
{
  struct handle *h = handle;

  return h->tracker && !h->tracker->is_blockdev;
}

static int
nbdsnap_can_multi_conn (void *handle)
{
  /* Every connection to an export shares one descriptor (originals) or
   * one diff area (images), so a flush on any of them covers all.
   */
  return 1;
}

static int
nbdsnap_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
               uint32_t flags)
{
  struct handle *h = handle;
  int err;

  if (h->tracker) {
    if (tracker_pread (h->tracker, buf, count, offset, &err) == 0)
      return 0;
    nbdkit_error ("pread: %s: %s", h->tracker->name, strerror (err));
  }
  else if (h->cbt) {
    if (cbt_export_pread (h, buf, count, offset, &err) == 0)
      return 0;
  }
  else if (image_pread (h->image, buf, count, offset, &err) == 0)
    return 0;
  errno = err;
  return -1;
}

static int
nbdsnap_pwrite (void *handle, const void *buf, uint32_t count,
                uint64_t offset, uint32_t flags)
{
  struct handle *h = handle;
  bool fua = flags & NBDKIT_FLAG_FUA;
  int err;

  if (h->tracker) {
    if (tracker_pwrite (h->tracker, buf, count, offset, fua, &err) == 0)
      return 0;
    nbdkit_error ("pwrite: %s: %s", h->tracker->name, strerror (err));
  }
  else if (image_pwrite (h->image, buf, count, offset, fua, &err) == 0)
    return 0;
  errno = err;
  return -1;
}

static int
nbdsnap_zero (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  struct handle *h = handle;
  bool fua = flags & NBDKIT_FLAG_FUA;
  int err;

  if (h->tracker) {
    if (tracker_zero (h->tracker, count, offset,
                      flags & NBDKIT_FLAG_MAY_TRIM,
                      flags & NBDKIT_FLAG_FAST_ZERO, fua, &err) == 0)
      return 0;
    if (err != ENOTSUP)
      nbdkit_error ("zero: %s: %s", h->tracker->name, strerror (err));
  }
  else {
    if (flags & NBDKIT_FLAG_FAST_ZERO)
      err = ENOTSUP;
    else if (image_zero (h->image, count, offset, fua, &err) == 0)
      return 0;
  }
  errno = err;
  return -1;
}

static int
nbdsnap_trim (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  struct handle *h = handle;
  int err;

  if (tracker_trim (h->tracker, count, offset, flags & NBDKIT_FLAG_FUA,
                    &err) == 0)
    return 0;
  nbdkit_error ("trim: %s: %s", h->tracker->name, strerror (err));
  errno = err;
  return -1;
}

static int
nbdsnap_flush (void *handle, uint32_t flags)
{
  struct handle *h = handle;
  int err;

  if (h->tracker ? tracker_flush (h->tracker, &err)
      : image_flush (h->image, &err)) {
    errno = err;
    return -1;
  }
  return 0;
}

static int
nbdsnap_extents (void *handle, uint32_t count, uint64_t offset,
                 uint32_t flags, struct nbdkit_extents *extents)
{
  struct handle *h = handle;
  uint64_t end = offset + count;
  int err;

  while (offset < end) {
    bool data;
    uint64_t len;

    if (tracker_extent (h->tracker, offset, end - offset, &data, &len,
                        &err) == -1) {
      nbdkit_error ("extents: %s: %s", h->tracker->name, strerror (err));
      errno = err;
      return -1;
    }
    if (nbdkit_add_extent (extents, offset, len,
                           data ? 0
                           : NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO) == -1)
      return -1;
    offset += len;
    if (flags & NBDKIT_FLAG_REQ_ONE)
      break;
  }
  return 0;
}

static struct nbdkit_plugin plugin = {
  .name = "nbdsnap",
  .longname = "nbdsnap snapshots and change block tracking",
  .version = PACKAGE_VERSION,
  .description = "Serves block devices with point-in-time snapshot images "
                 "and change block tracking",
  .unload = nbdsnap_unload,
  .config = nbdsnap_config,
  .config_complete = nbdsnap_config_complete,
  .config_help = nbdsnap_config_help,
  .magic_config_key = "device",
  .dump_plugin = nbdsnap_dump_plugin,
  .get_ready = nbdsnap_get_ready,
  .after_fork = nbdsnap_after_fork,
  .cleanup = nbdsnap_cleanup,
  .list_exports = nbdsnap_list_exports,
  .default_export = nbdsnap_default_export,
  .open = nbdsnap_open,
  .close = nbdsnap_close,
  .export_description = nbdsnap_export_description,
  .get_size = nbdsnap_get_size,
  .block_size = nbdsnap_block_size,
  .can_write = nbdsnap_can_write,
  .can_flush = nbdsnap_can_flush,
  .can_fua = nbdsnap_can_fua,
  .can_trim = nbdsnap_can_trim,
  .can_zero = nbdsnap_can_zero,
  .can_fast_zero = nbdsnap_can_fast_zero,
  .can_extents = nbdsnap_can_extents,
  .can_multi_conn = nbdsnap_can_multi_conn,
  .pread = nbdsnap_pread,
  .pwrite = nbdsnap_pwrite,
  .zero = nbdsnap_zero,
  .trim = nbdsnap_trim,
  .flush = nbdsnap_flush,
  .extents = nbdsnap_extents,
  .errno_is_preserved = 1,
};

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL
NBDKIT_REGISTER_PLUGIN (plugin)
