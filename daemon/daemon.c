/* nbdsnap - nbdsnapd's core: listeners, supervisor, records, events,
 * policy (TTL, spare storage) and shutdown.  Main thread only; see
 * daemon.h.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include "api_server.h"
#include "dataplane.h"
#include "error.h"
#include "manager.h"
#include "util.h"

#define TOMBSTONE_SECONDS 60

static GPtrArray *
sup_devices (void *opaque)
{
  struct daemon *d = opaque;
  GPtrArray *a = g_ptr_array_new ();
  guint i;

  for (i = 0; i < d->devices->len; i++)
    g_ptr_array_add (a, g_ptr_array_index (d->devices, i));
  return a;
}

void
daemon_update_properties (struct daemon *d)
{
  NbdsnapManager1 *m = NBDSNAP_MANAGER1 (d->manager);
  g_autoptr (GPtrArray) uris = g_ptr_array_new_with_free_func (g_free);
  guint i;

  for (i = 0; i < d->listeners->len; i++)
    g_ptr_array_add (uris, listener_uri (g_ptr_array_index (d->listeners, i),
                                         "", d->cfg->tls));
  g_ptr_array_add (uris, NULL);
  nbdsnap_manager1_set_version (m, PACKAGE_VERSION);
  nbdsnap_manager1_set_plugin_version (m, d->sup->plugin_version);
  nbdsnap_manager1_set_data_plane_pid (m, d->sup->state == SUPERVISOR_RUNNING
                                       ? d->sup->pid : 0);
  nbdsnap_manager1_set_data_plane_restarts (m, d->sup->restarts);
  nbdsnap_manager1_set_listeners (m, (const char *const *) uris->pdata);
}

static void
sup_ready (void *opaque, gboolean first)
{
  struct daemon *d = opaque;
  g_autoptr (GError) error = NULL;

  daemon_update_properties (d);
  if (!first) {
    g_ptr_array_add (d->lost, NULL);
    nbdsnap_manager1_emit_data_plane_restarted (NBDSNAP_MANAGER1 (d->manager),
                                                d->sup->pid,
                                                (const char *const *)
                                                d->lost->pdata);
    g_ptr_array_set_size (d->lost, 0);
    return;
  }
  d->api = api_server_new (G_DBUS_INTERFACE_SKELETON (d->manager),
                           d->cfg->socket, d->cfg->socket_gid,
                           d->cfg->system_bus, &error);
  if (d->api == NULL) {
    g_critical ("%s", error->message);
    d->exit_status = 1;
    if (d->ready_fn)
      d->ready_fn (d, FALSE);
    daemon_shutdown (d);
    return;
  }
  g_message ("nbdsnapd %s is ready", PACKAGE_VERSION);
  if (d->ready_fn)
    d->ready_fn (d, TRUE);
}

static void
sup_died (void *opaque)
{
  struct daemon *d = opaque;
  guint i;

  for (i = 0; i < d->records->len; i++) {
    struct snapshot_record *r = g_ptr_array_index (d->records, i);

    if (r->state != RECORD_ACTIVE)
      continue;
    r->state = RECORD_LOST;
    r->taking = FALSE;
    g_warning ("snapshot %s is lost with the data plane", r->id);
    g_ptr_array_add (d->lost, g_strdup (r->id));
    nbdsnap_manager1_emit_snapshot_lost (NBDSNAP_MANAGER1 (d->manager), r->id);
    snapshot_record_push (r, snapshot_event_new (r->id, "lost",
                                                 g_get_real_time (), NULL,
                                                 NULL, 0, 0, "data-plane"),
                          nbdsnapd_manager_deliver_event);
  }
  daemon_update_properties (d);
}

static void
sup_failed (void *opaque, const char *why)
{
  struct daemon *d = opaque;

  g_critical ("cannot start the data plane: %s", why);
  d->exit_status = 1;
  if (d->ready_fn)
    d->ready_fn (d, FALSE);
  daemon_shutdown (d);
}

static void
sup_stopped (void *opaque)
{
  struct daemon *d = opaque;

  g_main_loop_quit (d->loop);
}

/* Spare storage on low space. */

struct spare_job {
  guint8 id[16];
  char *dir;
  guint64 limit;
};

static void
spare_job_free (struct spare_job *j)
{
  g_free (j->dir);
  g_free (j);
}

static gboolean
spare_thread (struct daemon *d, gpointer data, GError **error)
{
  struct spare_job *j = data;
  struct nbdsnap_ctl_snapshot_info out;

  return dp_append_storage (d, j->id, j->dir, j->limit, &out, error);
}

static void
spare_done (struct daemon *d, gpointer data, const GError *error)
{
  struct spare_job *j = data;
  struct snapshot_record *r;
  char sid[37];

  dp_uuid_string (j->id, sid);
  r = daemon_find_record (d, sid);
  if (r) {
    r->spare_pending = FALSE;
    if (error == NULL)
      r->spare_count++;
  }
  if (error)
    g_warning ("snapshot %s: cannot append spare storage in %s: %s", sid,
               j->dir, error->message);
}

static void
low_space (struct daemon *d, struct snapshot_record *r,
           const struct nbdsnap_ctl_event *ev)
{
  char **dirs = d->cfg->spare_storage_dirs;
  struct spare_job *j;

  if (dirs == NULL) {
    g_warning ("snapshot %s: diff storage is low: %" G_GUINT64_FORMAT
               " of %" G_GUINT64_FORMAT " bytes used and no spare storage "
               "is configured; append some with 'nbdsnapctl snapshot "
               "append-storage %s PATH' or the snapshot will be corrupted",
               r->id, ev->used, ev->limit, r->id);
    return;
  }
  if (r->spare_pending)
    return;
  if (r->spare_count + 1 >= NBDSNAP_MAX_STORAGES) {
    g_warning ("snapshot %s: diff storage is low and it has %d storage "
               "files already", r->id, NBDSNAP_MAX_STORAGES);
    return;
  }
  g_message ("snapshot %s: diff storage is low (%" G_GUINT64_FORMAT " of %"
             G_GUINT64_FORMAT " bytes used): appending spare storage",
             r->id, ev->used, ev->limit);
  j = g_new0 (struct spare_job, 1);
  memcpy (j->id, ev->id, 16);
  j->dir = g_strdup (dirs[r->spare_count % g_strv_length (dirs)]);
  j->limit = d->cfg->spare_storage_size;
  r->spare_pending = TRUE;
  nbdsnapd_manager_run_background (d, spare_thread, spare_done, j,
                                   (GDestroyNotify) spare_job_free);
}

/* Events. */

static gboolean
forget_tombstone (gpointer opaque)
{
  struct snapshot_record *r = opaque;

  r->forget_source = 0;
  daemon_forget_record (r->owner, r);
  return G_SOURCE_REMOVE;
}

static void
mark_destroyed (struct daemon *d, struct snapshot_record *r,
                const char *reason, guint64 used, guint64 limit)
{
  GVariant *ev;

  r->state = RECORD_DESTROYED;
  r->taking = FALSE;
  if (r->ttl_source)
    g_source_remove (r->ttl_source);
  r->ttl_source = 0;
  nbdsnap_manager1_emit_snapshot_destroyed (NBDSNAP_MANAGER1 (d->manager),
                                            r->id, reason);
  ev = snapshot_event_new (r->id, "destroyed", g_get_real_time (), NULL,
                           NULL, used, limit, reason);
  snapshot_record_push (r, ev, nbdsnapd_manager_deliver_event);
  r->forget_source = g_timeout_add_seconds (TOMBSTONE_SECONDS,
                                            forget_tombstone, r);
}

static void
sup_event (void *opaque, const struct nbdsnap_ctl_event *ev)
{
  struct daemon *d = opaque;
  NbdsnapManager1 *m = NBDSNAP_MANAGER1 (d->manager);
  const char *kind = ctl_event_name (ev->code);
  const char *err = ev->error ? nbdsnap_errno_name (ev->error) : NULL;
  g_autofree char *device = g_strndup (ev->device, sizeof ev->device);
  struct snapshot_record *r;
  char id[37];

  dp_uuid_string (ev->id, id);
  if (ev->error && err == NULL)
    err = "EIO";
  g_debug ("event %s: snapshot %s", kind, id);
  r = daemon_find_record (d, id);

  if (ev->code == NBDSNAP_CTL_EVENT_DESTROYED) {
    const char *reason = r && r->destroy_reason ? r->destroy_reason
      : d->stopping ? "shutdown" : "request";
    if (r == NULL) {
      /* A snapshot the daemon never reported (a failed create). */
      nbdsnap_manager1_emit_snapshot_destroyed (m, id, reason);
      return;
    }
    if (r->state == RECORD_DESTROYED)
      return;                   /* reported already */
    mark_destroyed (d, r, reason, ev->used, ev->limit);
    return;
  }
  if (r == NULL)
    r = daemon_add_record (d, id, NULL);  /* made by another ctl client */
  if (r->state != RECORD_ACTIVE)
    return;

  switch (ev->code) {
  case NBDSNAP_CTL_EVENT_CORRUPTED:
    g_warning ("snapshot %s is corrupted: device %s: %s; its images fail "
               "from now on, the original devices keep working; destroy it",
               id, device, err ? err : "?");
    nbdsnap_manager1_emit_corrupted (m, id, device, err ? err : "EIO");
    break;
  case NBDSNAP_CTL_EVENT_LOW_SPACE:
    nbdsnap_manager1_emit_low_space (m, id, ev->used, ev->limit);
    low_space (d, r, ev);
    break;
  case NBDSNAP_CTL_EVENT_STORAGE_EXTENDED:
    g_message ("snapshot %s: diff storage extended to %" G_GUINT64_FORMAT
               " bytes", id, ev->limit);
    nbdsnap_manager1_emit_storage_extended (m, id, ev->used, ev->limit);
    break;
  default:
    g_warning ("snapshot %s: unknown event %u", id, ev->code);
    return;
  }
  snapshot_record_push (r, snapshot_event_new (id, kind, ev->time_ns / 1000,
                                               device, err, ev->used,
                                               ev->limit, NULL),
                        nbdsnapd_manager_deliver_event);
}

static const struct supervisor_ops sup_ops = {
  .devices = sup_devices,
  .ready = sup_ready,
  .died = sup_died,
  .failed = sup_failed,
  .event = sup_event,
  .stopped = sup_stopped,
};

/* TTL. */

static gboolean
ttl_thread (struct daemon *d, gpointer data, GError **error)
{
  guint8 id[16];

  nbdsnap_parse_uuid (data, id);
  return dp_destroy (d, id, error);
}

static void
ttl_done (struct daemon *d, gpointer data, const GError *error)
{
  struct snapshot_record *r = daemon_find_record (d, data);

  if (error) {
    g_warning ("snapshot %s: cannot destroy it at the end of its time to "
               "live: %s", (char *) data, error->message);
    if (r && r->state == RECORD_ACTIVE)
      r->destroy_reason = NULL;
  }
}

static gboolean
ttl_expired (gpointer opaque)
{
  struct snapshot_record *r = opaque;
  struct daemon *d = r->owner;

  r->ttl_source = 0;
  if (r->state == RECORD_LOST) {
    g_message ("snapshot %s (lost) reached its time to live: forgotten",
               r->id);
    daemon_forget_record (d, r);
    return G_SOURCE_REMOVE;
  }
  if (r->state != RECORD_ACTIVE || d->stopping)
    return G_SOURCE_REMOVE;
  g_message ("snapshot %s was held longer than its time to live (%g s): "
             "destroying it", r->id, d->cfg->snapshot_ttl);
  r->destroy_reason = "ttl";
  nbdsnapd_manager_run_background (d, ttl_thread, ttl_done,
                                   g_strdup (r->id), g_free);
  return G_SOURCE_REMOVE;
}

/* Records. */

struct snapshot_record *
daemon_find_record (struct daemon *d, const char *id)
{
  guint i;

  for (i = 0; i < d->records->len; i++) {
    struct snapshot_record *r = g_ptr_array_index (d->records, i);
    if (strcmp (r->id, id) == 0)
      return r;
  }
  return NULL;
}

struct snapshot_record *
daemon_add_record (struct daemon *d, const char *id,
                   const char *const *devices)
{
  struct snapshot_record *r = daemon_find_record (d, id);

  if (r == NULL) {
    r = snapshot_record_new (id, devices, d);
    g_ptr_array_add (d->records, r);
  }
  else if (devices) {
    g_strfreev (r->devices);
    r->devices = g_strdupv ((char **) devices);
  }
  if (devices && r->created == 0) {
    r->created = g_get_real_time ();
    if (d->cfg->snapshot_ttl > 0) {
      guint ms = (guint) MIN (d->cfg->snapshot_ttl * 1000, G_MAXUINT);
      r->expires = r->created + (gint64) ms * 1000;
      r->ttl_source = g_timeout_add (ms, ttl_expired, r);
    }
  }
  return r;
}

void
daemon_forget_record (struct daemon *d, struct snapshot_record *r)
{
  g_ptr_array_remove (d->records, r);
  snapshot_record_free (r, nbdsnapd_manager_deliver_event);
}

void
daemon_device_added (struct daemon *d, const char *name, const char *path)
{
  guint i;

  for (i = 0; i < d->devices->len; i++) {
    struct device_spec *s = g_ptr_array_index (d->devices, i);
    if (strcmp (s->name, name) == 0)
      return;
  }
  g_ptr_array_add (d->devices, device_spec_new (name, path));
}

void
daemon_device_removed (struct daemon *d, const char *name)
{
  guint i;

  for (i = 0; i < d->devices->len; i++) {
    struct device_spec *s = g_ptr_array_index (d->devices, i);
    if (strcmp (s->name, name) == 0) {
      g_ptr_array_remove_index (d->devices, i);
      return;
    }
  }
}

char **
daemon_export_uris (const struct daemon *d, const char *export,
                    gboolean original)
{
  GPtrArray *a = g_ptr_array_new ();
  guint i;

  for (i = 0; i < d->listeners->len; i++) {
    const struct listener *l = g_ptr_array_index (d->listeners, i);
    if (original && l->type == LISTEN_TCP &&
        !d->cfg->allow_original_over_tcp)
      continue;
    g_ptr_array_add (a, listener_uri (l, export ? export : "", d->cfg->tls));
  }
  g_ptr_array_add (a, NULL);
  return (char **) g_ptr_array_free (a, FALSE);
}

/* Life. */

struct daemon *
daemon_new (struct config *cfg)
{
  struct daemon *d = g_new0 (struct daemon, 1);
  guint i;

  d->cfg = cfg;
  d->lock_fd = -1;
  if (cfg->diff_storage_dir == NULL)
    cfg->diff_storage_dir = g_strdup (cfg->state_dir);
  d->listeners = g_ptr_array_new_with_free_func ((GDestroyNotify)
                                                 listener_free);
  d->devices = g_ptr_array_new_with_free_func ((GDestroyNotify)
                                               device_spec_free);
  for (i = 0; i < cfg->devices->len; i++) {
    const struct device_spec *s = g_ptr_array_index (cfg->devices, i);
    g_ptr_array_add (d->devices, device_spec_new (s->name, s->path));
  }
  d->records = g_ptr_array_new ();
  d->lost = g_ptr_array_new_with_free_func (g_free);
  d->link = ctl_link_new ();
  d->loop = g_main_loop_new (NULL, FALSE);
  d->manager = nbdsnapd_manager_new (d);
  d->sup = supervisor_new (cfg, d->listeners, d->link, &sup_ops, d);
  return d;
}

void
daemon_free (struct daemon *d)
{
  guint i;

  if (d == NULL)
    return;
  api_server_free (d->api);
  supervisor_free (d->sup);
  for (i = 0; i < d->records->len; i++)
    snapshot_record_free (g_ptr_array_index (d->records, i),
                          nbdsnapd_manager_deliver_event);
  g_ptr_array_unref (d->records);
  g_ptr_array_unref (d->lost);
  g_object_unref (d->manager);
  ctl_link_free (d->link);
  g_ptr_array_unref (d->listeners);
  g_ptr_array_unref (d->devices);
  g_main_loop_unref (d->loop);
  if (d->lock_fd >= 0)
    close (d->lock_fd);
  config_free (d->cfg);
  g_free (d);
}

/* One daemon per state directory: a second one would take the first
 * one's nbdkit for a stale one and stop it, losing its snapshots.  The
 * lock is an flock() on state-dir/nbdsnapd.lock, held while the daemon
 * runs (close-on-exec, so nbdkit does not hold it), with the holder's
 * pid in the file for the message.
 */
static gboolean
lock_state_dir (struct daemon *d, GError **error)
{
  const struct config *c = d->cfg;
  g_autofree char *path = g_build_filename (c->state_dir, "nbdsnapd.lock",
                                            NULL);
  char buf[32];
  ssize_t n;
  int fd;

  fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd == -1) {
    g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_FAILED,
                 "state-dir %s: %s: %s", c->state_dir, path,
                 g_strerror (errno));
    return FALSE;
  }
  if (flock (fd, LOCK_EX | LOCK_NB) == -1) {
    int e = errno;

    n = pread (fd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    g_strchomp (buf);
    close (fd);
    if (e == EWOULDBLOCK)
      g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_BUSY,
                   "state-dir %s is in use by another nbdsnapd%s%s%s",
                   c->state_dir, buf[0] ? " (pid " : "", buf,
                   buf[0] ? ")" : "");
    else
      g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_FAILED,
                   "state-dir %s: lock %s: %s", c->state_dir, path,
                   g_strerror (e));
    return FALSE;
  }
  n = snprintf (buf, sizeof buf, "%d\n", (int) getpid ());
  if (ftruncate (fd, 0) == -1 || pwrite (fd, buf, n, 0) != n)
    g_warning ("state-dir %s: cannot write %s: %s", c->state_dir, path,
               g_strerror (errno));
  d->lock_fd = fd;
  return TRUE;
}

gboolean
daemon_start (struct daemon *d, GError **error)
{
  const struct config *c = d->cfg;
  guint i;

  if (g_mkdir_with_parents (c->state_dir, 0700) == -1) {
    g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_FAILED,
                 "state-dir %s: %s", c->state_dir, g_strerror (errno));
    return FALSE;
  }
  if (!lock_state_dir (d, error))
    return FALSE;
  supervisor_reap_stale (c);
  for (i = 0; i < c->listen->len; i++) {
    const struct listen_spec *s = g_ptr_array_index (c->listen, i);
    struct listener *l;

    if (s->type == LISTEN_UNIX) {
      g_autofree char *dir = g_path_get_dirname (s->path);
      g_mkdir_with_parents (dir, 0755);
    }
    l = listener_bind (s, c->socket_gid, error);
    if (l == NULL)
      return FALSE;
    g_ptr_array_add (d->listeners, l);
    {
      g_autofree char *addr = listener_address (l);
      g_message ("NBD: listening on %s%s", addr,
                 l->type == LISTEN_TCP && !c->allow_original_over_tcp
                 ? " (images only)" : "");
    }
  }
  daemon_update_properties (d);
  return supervisor_start (d->sup, error);
}

/* Shutdown: destroy every snapshot, then stop nbdkit. */

static gboolean
destroy_all_thread (struct daemon *d, gpointer data, GError **error)
{
  GPtrArray *done = data;
  g_autoptr (GArray) ids = dp_collect (d, error);
  guint i;

  if (ids == NULL)
    return FALSE;
  for (i = 0; i < ids->len; i++) {
    const guint8 *id = (const guint8 *) ids->data + 16 * i;
    g_autoptr (GError) e = NULL;
    char sid[37];

    dp_uuid_string (id, sid);
    if (dp_destroy (d, id, &e)) {
      g_message ("snapshot %s destroyed at shutdown", sid);
      g_ptr_array_add (done, g_strdup (sid));
    }
    else
      g_warning ("snapshot %s: cannot destroy it: %s", sid, e->message);
  }
  return TRUE;
}

static void
destroy_all_done (struct daemon *d, gpointer data, const GError *error)
{
  GPtrArray *done = data;
  guint i;

  if (error)
    g_warning ("cannot destroy the snapshots at shutdown: %s",
               error->message);
  for (i = 0; i < done->len; i++) {
    struct snapshot_record *r = daemon_find_record (d, done->pdata[i]);
    if (r && r->state == RECORD_ACTIVE)
      mark_destroyed (d, r, "shutdown", 0, 0);
  }
  api_server_flush (d->api);
  api_server_free (d->api);
  d->api = NULL;
  supervisor_stop (d->sup);
}

void
daemon_shutdown (struct daemon *d)
{
  if (d->stopping)
    return;
  d->stopping = TRUE;
  g_message ("stopping");
  if (d->sup->state != SUPERVISOR_RUNNING) {
    api_server_free (d->api);
    d->api = NULL;
    supervisor_stop (d->sup);
    return;
  }
  nbdsnapd_manager_run_background (d, destroy_all_thread, destroy_all_done,
                                   g_ptr_array_new_with_free_func (g_free),
                                   (GDestroyNotify) g_ptr_array_unref);
}
