/* nbdsnap - org.nbdsnap.Manager1, the public API object of nbdsnapd.
 * See manager.h for the threading; every handler ends in a reply: the
 * tuple of the method's out arguments (what the gdbus-codegen
 * nbdsnap_manager1_complete_<method>() would send) or an error.
 */

#include <config.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include "dataplane.h"
#include "error.h"
#include "manager.h"
#include "storage.h"
#include "util.h"

struct _NbdsnapdManager {
  NbdsnapManager1Skeleton parent;
  struct daemon *d;
};

static void manager_iface_init (NbdsnapManager1Iface *iface);

G_DEFINE_TYPE_WITH_CODE (NbdsnapdManager, nbdsnapd_manager,
                         NBDSNAP_TYPE_MANAGER1_SKELETON,
                         G_IMPLEMENT_INTERFACE (NBDSNAP_TYPE_MANAGER1,
                                                manager_iface_init))

static void
nbdsnapd_manager_init (NbdsnapdManager *m)
{
}

static void
nbdsnapd_manager_class_init (NbdsnapdManagerClass *klass)
{
}

NbdsnapdManager *
nbdsnapd_manager_new (struct daemon *d)
{
  NbdsnapdManager *m = g_object_new (NBDSNAPD_TYPE_MANAGER, NULL);

  nbdsnap_error_quark ();       /* register the D-Bus error names */
  m->d = d;
  return m;
}

/* Errors. */

static void
return_error (GDBusMethodInvocation *inv, const GError *error)
{
  if (error->domain == NBDSNAP_ERROR)
    g_dbus_method_invocation_return_gerror (inv, error);
  else
    g_dbus_method_invocation_return_error_literal (inv, NBDSNAP_ERROR,
                                                   NBDSNAP_ERROR_FAILED,
                                                   error->message);
}

static void G_GNUC_PRINTF (3, 4)
return_invalid (GDBusMethodInvocation *inv, NbdsnapError code,
                const char *fmt, ...)
{
  g_autofree char *msg = NULL;
  va_list ap;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_dbus_method_invocation_return_error_literal (inv, NBDSNAP_ERROR, code,
                                                 msg);
}

/* Entries of an a{sv} builder. */

static void
dict_add (GVariantBuilder *b, const char *key, GVariant *value)
{
  g_variant_builder_add (b, "{sv}", key, value);
}

/* dict_add_T (b, key, x): an entry of GVariant type T. */
#define DEFINE_DICT_ADD(T, ctype)                                       \
  static void                                                           \
  dict_add_##T (GVariantBuilder *b, const char *key, ctype x)           \
  {                                                                     \
    dict_add (b, key, g_variant_new_##T (x));                           \
  }
DEFINE_DICT_ADD (string, const char *)
DEFINE_DICT_ADD (uint32, guint32)
DEFINE_DICT_ADD (uint64, guint64)
DEFINE_DICT_ADD (int64, gint64)
DEFINE_DICT_ADD (boolean, gboolean)

/* Common checks: not stopping, only @known options. */
static gboolean
begin (NbdsnapdManager *m, GDBusMethodInvocation *inv, GVariant *options,
       const char *const *known)
{
  GVariantIter it;
  const char *key;
  GVariant *value;

  if (m->d->stopping) {
    return_invalid (inv, NBDSNAP_ERROR_FAILED, "nbdsnapd is stopping");
    return FALSE;
  }
  g_variant_iter_init (&it, options);
  while (g_variant_iter_next (&it, "{&sv}", &key, &value)) {
    gboolean ok = known && g_strv_contains (known, key);
    g_variant_unref (value);
    if (!ok) {
      g_autofree char *list = known ? g_strjoinv (", ", (char **) known)
        : g_strdup ("none");
      return_invalid (inv, NBDSNAP_ERROR_INVALID_ARGUMENT,
                      "unknown option '%s' (options: %s)", key, list);
      return FALSE;
    }
  }
  return TRUE;
}

/* Option @key of @options, NULL in *@out if absent.  FALSE (answered
 * with InvalidArgument) if it is there with another type than @type,
 * which @what names for the message.
 */
static gboolean
opt_lookup (GDBusMethodInvocation *inv, GVariant *options, const char *key,
            const GVariantType *type, const char *what, GVariant **out)
{
  *out = g_variant_lookup_value (options, key, NULL);
  if (*out == NULL || g_variant_is_of_type (*out, type))
    return TRUE;
  return_invalid (inv, NBDSNAP_ERROR_INVALID_ARGUMENT,
                  "option '%s' must be %s", key, what);
  g_clear_pointer (out, g_variant_unref);
  return FALSE;
}

static gboolean
opt_string (GDBusMethodInvocation *inv, GVariant *options, const char *key,
            char **out)
{
  g_autoptr (GVariant) v = NULL;

  *out = NULL;
  if (!opt_lookup (inv, options, key, G_VARIANT_TYPE_STRING, "a string", &v))
    return FALSE;
  if (v)
    *out = g_variant_dup_string (v, NULL);
  return TRUE;
}

static gboolean
opt_int (GDBusMethodInvocation *inv, GVariant *options, const char *key,
         gint64 min, gint64 max, gint64 *out)
{
  g_autoptr (GVariant) v = g_variant_lookup_value (options, key, NULL);
  gint64 x;

  if (v == NULL)
    return TRUE;
  if (g_variant_is_of_type (v, G_VARIANT_TYPE_UINT64)) {
    guint64 u = g_variant_get_uint64 (v);
    x = u > G_MAXINT64 ? G_MAXINT64 : (gint64) u;
  }
  else if (g_variant_is_of_type (v, G_VARIANT_TYPE_INT64))
    x = g_variant_get_int64 (v);
  else if (g_variant_is_of_type (v, G_VARIANT_TYPE_UINT32))
    x = g_variant_get_uint32 (v);
  else if (g_variant_is_of_type (v, G_VARIANT_TYPE_INT32))
    x = g_variant_get_int32 (v);
  else {
    return_invalid (inv, NBDSNAP_ERROR_INVALID_ARGUMENT,
                    "option '%s' must be an integer", key);
    return FALSE;
  }
  if (x < min || x > max) {
    return_invalid (inv, NBDSNAP_ERROR_INVALID_ARGUMENT,
                    "option '%s' is %" G_GINT64_FORMAT ": it must be from %"
                    G_GINT64_FORMAT " to %" G_GINT64_FORMAT, key, x, min,
                    max);
    return FALSE;
  }
  *out = x;
  return TRUE;
}

static gboolean
opt_bool (GDBusMethodInvocation *inv, GVariant *options, const char *key,
          gboolean *out)
{
  g_autoptr (GVariant) v = NULL;

  *out = FALSE;
  if (!opt_lookup (inv, options, key, G_VARIANT_TYPE_BOOLEAN, "a boolean",
                   &v))
    return FALSE;
  if (v)
    *out = g_variant_get_boolean (v);
  return TRUE;
}

static gboolean
arg_name (GDBusMethodInvocation *inv, const char *name)
{
  if (nbdsnap_name_is_valid (name))
    return TRUE;
  return_invalid (inv, NBDSNAP_ERROR_INVALID_ARGUMENT,
                  "invalid device name '%s': a name is 1 to 64 of "
                  "[A-Za-z0-9._-]", name);
  return FALSE;
}

static gboolean
arg_id (GDBusMethodInvocation *inv, const char *s, guint8 id[16])
{
  if (nbdsnap_parse_uuid (s, id))
    return TRUE;
  return_invalid (inv, NBDSNAP_ERROR_INVALID_ARGUMENT,
                  "'%s' is not a snapshot id (a UUID)", s);
  return FALSE;
}

static gboolean
arg_path (GDBusMethodInvocation *inv, const char *what, const char *path)
{
  if (path[0] && g_path_is_absolute (path))
    return TRUE;
  return_invalid (inv, NBDSNAP_ERROR_INVALID_ARGUMENT,
                  "%s '%s' is not an absolute path", what, path);
  return FALSE;
}

/* Jobs: a worker thread, then the main thread. */

/**
 * struct job_args - the arguments of any method, copied for the worker.
 * @name, @path: strings (device name, storage path, ...).
 * @id: snapshot id (@has_id).
 * @names: device names.
 * @size: a size (limit) or number (since).
 * @flag: a boolean option (take).
 * @value: a GVariant argument (ranges).
 */
struct job_args {
  char *name;
  char *path;
  guint8 id[16];
  gboolean has_id;
  char **names;
  guint64 size;
  gboolean flag;
  GVariant *value;
};

static void
job_args_free (struct job_args *a)
{
  g_free (a->name);
  g_free (a->path);
  g_strfreev (a->names);
  if (a->value)
    g_variant_unref (a->value);
  g_free (a);
}

typedef GVariant *(*job_fn) (struct daemon *d, struct job_args *a,
                             GError **error);
typedef void (*job_done_fn) (NbdsnapdManager *m, GDBusMethodInvocation *inv,
                             struct job_args *a, GVariant *result,
                             const GError *error);

/**
 * struct job - one method's work.
 * @m: the manager (a reference).
 * @inv: the call (a reference).
 * @fn: worker part; @done: main thread part.
 * @args: the arguments.
 * @result: what @fn returned (sunk), or NULL with @error.
 */
struct job {
  NbdsnapdManager *m;
  GDBusMethodInvocation *inv;
  job_fn fn;
  job_done_fn done;
  struct job_args *args;
  GVariant *result;
  GError *error;
};

static void
job_free (struct job *j)
{
  g_object_unref (j->m);
  g_object_unref (j->inv);
  job_args_free (j->args);
  if (j->result)
    g_variant_unref (j->result);
  g_clear_error (&j->error);
  g_free (j);
}

static void
job_thread (GTask *task, gpointer source, gpointer data, GCancellable *c)
{
  struct job *j = data;

  j->result = j->fn (j->m->d, j->args, &j->error);
  if (j->result)
    g_variant_ref_sink (j->result);
  else if (j->error == NULL)
    g_set_error (&j->error, NBDSNAP_ERROR, NBDSNAP_ERROR_FAILED,
                 "internal error: no result");
  g_task_return_boolean (task, TRUE);
}

static void
job_complete (GObject *source, GAsyncResult *res, gpointer opaque)
{
  struct job *j = g_task_get_task_data (G_TASK (res));

  j->done (j->m, j->inv, j->args, j->result, j->error);
}

static void
run_job (NbdsnapdManager *m, GDBusMethodInvocation *inv, struct job_args *a,
         job_fn fn, job_done_fn done)
{
  struct job *j = g_new0 (struct job, 1);
  GTask *task;

  j->m = g_object_ref (m);
  j->inv = g_object_ref (inv);
  j->fn = fn;
  j->done = done;
  j->args = a;
  task = g_task_new (m, NULL, job_complete, NULL);
  g_task_set_task_data (task, j, (GDestroyNotify) job_free);
  g_task_run_in_thread (task, job_thread);
  g_object_unref (task);
}

/* If the job failed (@result NULL), answer with @error: TRUE. */
static gboolean
job_failed (GDBusMethodInvocation *inv, GVariant *result,
            const GError *error)
{
  if (result != NULL)
    return FALSE;
  return_error (inv, error);
  return TRUE;
}

/* job_done_fn of a method with one out argument: @result is it. */
static void
reply_out_arg (NbdsnapdManager *m, GDBusMethodInvocation *inv,
               struct job_args *a, GVariant *result, const GError *error)
{
  if (!job_failed (inv, result, error))
    g_dbus_method_invocation_return_value (inv,
                                           g_variant_new_tuple (&result, 1));
}

/* job_done_fn where @result is the whole reply: the tuple of the
 * method's out arguments, "()" if it has none.
 */
static void
reply_tuple (NbdsnapdManager *m, GDBusMethodInvocation *inv,
             struct job_args *a, GVariant *result, const GError *error)
{
  if (!job_failed (inv, result, error))
    g_dbus_method_invocation_return_value (inv, result);
}

/* The start of a method on one device: begin(), then the name
 * @device.  The job's arguments with the name, or NULL if the call
 * was answered.
 */
static struct job_args *
begin_device (NbdsnapdManager *m, GDBusMethodInvocation *inv,
              GVariant *options, const char *const *known,
              const char *device)
{
  struct job_args *a;

  if (!begin (m, inv, options, known) || !arg_name (inv, device))
    return NULL;
  a = g_new0 (struct job_args, 1);
  a->name = g_strdup (device);
  return a;
}

/* The start of a method on one snapshot: begin(), then the id @id
 * into @uuid.  FALSE if the call was answered.
 */
static gboolean
begin_snapshot (NbdsnapdManager *m, GDBusMethodInvocation *inv,
                GVariant *options, const char *const *known, const char *id,
                guint8 uuid[16])
{
  return begin (m, inv, options, known) && arg_id (inv, id, uuid);
}

/* The job's arguments for the snapshot @uuid. */
static struct job_args *
snapshot_args (const guint8 uuid[16])
{
  struct job_args *a = g_new0 (struct job_args, 1);

  memcpy (a->id, uuid, 16);
  a->has_id = TRUE;
  return a;
}

/* Background work without a call. */

struct bg {
  struct daemon *d;
  manager_bg_fn fn;
  manager_bg_done_fn done;
  gpointer data;
  GDestroyNotify free_data;
  GError *error;
};

static void
bg_free (struct bg *b)
{
  if (b->free_data)
    b->free_data (b->data);
  g_clear_error (&b->error);
  g_free (b);
}

static void
bg_thread (GTask *task, gpointer source, gpointer data, GCancellable *c)
{
  struct bg *b = data;

  b->fn (b->d, b->data, &b->error);
  g_task_return_boolean (task, TRUE);
}

static void
bg_complete (GObject *source, GAsyncResult *res, gpointer opaque)
{
  struct bg *b = g_task_get_task_data (G_TASK (res));

  if (b->done)
    b->done (b->d, b->data, b->error);
}

void
nbdsnapd_manager_run_background (struct daemon *d, manager_bg_fn fn,
                                 manager_bg_done_fn done, gpointer data,
                                 GDestroyNotify free_data)
{
  struct bg *b = g_new0 (struct bg, 1);
  GTask *task;

  b->d = d;
  b->fn = fn;
  b->done = done;
  b->data = data;
  b->free_data = free_data;
  task = g_task_new (NULL, NULL, bg_complete, NULL);
  g_task_set_task_data (task, b, (GDestroyNotify) bg_free);
  g_task_run_in_thread (task, bg_thread);
  g_object_unref (task);
}

/* Add created / expires of the record of @id to @dict (a{sv}). */
static GVariant *
add_record_times (struct daemon *d, GVariant *dict, const char *id)
{
  struct snapshot_record *r = daemon_find_record (d, id);
  g_autoptr (GVariant) with = NULL;

  with = g_variant_ref_sink (nbdsnap_dict_set (dict, "created",
                                               g_variant_new_int64
                                               (r ? r->created : 0)));
  return nbdsnap_dict_set (with, "expires",
                           g_variant_new_int64 (r ? r->expires : 0));
}

/* Version */

static gboolean
handle_version (NbdsnapManager1 *obj, GDBusMethodInvocation *inv,
                GVariant *options)
{
  NbdsnapdManager *m = NBDSNAPD_MANAGER (obj);
  struct daemon *d = m->d;
  GVariantBuilder b, ls;
  guint i;

  if (!begin (m, inv, options, NULL))
    return TRUE;
  g_variant_builder_init (&ls, G_VARIANT_TYPE ("aa{sv}"));
  for (i = 0; i < d->listeners->len; i++) {
    const struct listener *l = g_ptr_array_index (d->listeners, i);
    g_autofree char *addr = listener_address (l);
    g_autofree char *uri = listener_uri (l, "", d->cfg->tls);

    g_variant_builder_open (&ls, G_VARIANT_TYPE_VARDICT);
    dict_add_string (&ls, "type", l->type == LISTEN_UNIX ? "unix" : "tcp");
    dict_add_string (&ls, "address", addr);
    dict_add_string (&ls, "uri", uri);
    if (l->type == LISTEN_TCP)
      dict_add_uint32 (&ls, "port", l->port);
    dict_add_boolean (&ls, "originals", l->type == LISTEN_UNIX ||
                      d->cfg->allow_original_over_tcp);
    g_variant_builder_close (&ls);
  }
  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  dict_add_string (&b, "daemon_version", PACKAGE_VERSION);
  dict_add_string (&b, "plugin_version", d->sup->plugin_version);
  dict_add_uint32 (&b, "protocol", d->sup->protocol);
  dict_add (&b, "nbdkit_pid",
            g_variant_new_int32 (d->sup->state == SUPERVISOR_RUNNING
                                 ? d->sup->pid : 0));
  dict_add_uint32 (&b, "restarts", d->sup->restarts);
  dict_add_string (&b, "tls", tls_mode_name (d->cfg->tls));
  dict_add (&b, "listeners", g_variant_builder_end (&ls));
  nbdsnap_manager1_complete_version (obj, inv, g_variant_builder_end (&b));
  return TRUE;
}

/* ListDevices */

static GVariant *
list_devices_thread (struct daemon *d, struct job_args *a, GError **error)
{
  g_autoptr (GArray) devs = dp_device_list (d, error);
  GVariantBuilder b;
  guint i;

  if (devs == NULL)
    return NULL;
  g_variant_builder_init (&b, G_VARIANT_TYPE ("aa{sv}"));
  for (i = 0; i < devs->len; i++)
    g_variant_builder_add_value (&b, dp_device_dict (d, &g_array_index
                                                     (devs, struct
                                                      nbdsnap_ctl_device, i)));
  return g_variant_builder_end (&b);
}

static gboolean
handle_list_devices (NbdsnapManager1 *obj, GDBusMethodInvocation *inv,
                     GVariant *options)
{
  NbdsnapdManager *m = NBDSNAPD_MANAGER (obj);

  if (begin (m, inv, options, NULL))
    run_job (m, inv, g_new0 (struct job_args, 1), list_devices_thread,
             reply_out_arg);
  return TRUE;
}

/* AddDevice */

static GVariant *
add_device_thread (struct daemon *d, struct job_args *a, GError **error)
{
  struct nbdsnap_ctl_device_attach req;
  struct nbdsnap_ctl_device dev;

  if (strlen (a->path) >= sizeof req.path) {
    g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_INVALID_ARGUMENT,
                 "path '%s' is too long", a->path);
    return NULL;
  }
  dp_put_name (req.name, sizeof req.name, a->name);
  dp_put_name (req.path, sizeof req.path, a->path);
  if (ctl_link_call (d->link, NBDSNAP_CTL_DEVICE_ATTACH, &req, sizeof req, -1,
                     &dev, sizeof dev, NULL, error) < 0)
    return NULL;
  g_message ("device %s attached: %s, %" G_GUINT64_FORMAT " bytes", dev.name,
             dev.path, dev.size);
  return dp_device_dict (d, &dev);
}

static void
add_device_done (NbdsnapdManager *m, GDBusMethodInvocation *inv,
                 struct job_args *a, GVariant *result, const GError *error)
{
  const char *path;

  if (result != NULL) {
    if (!g_variant_lookup (result, "path", "&s", &path))
      path = a->path;
    daemon_device_added (m->d, a->name, path);
  }
  reply_out_arg (m, inv, a, result, error);
}

static gboolean
handle_add_device (NbdsnapManager1 *obj, GDBusMethodInvocation *inv,
                   const char *name, const char *path, GVariant *options)
{
  NbdsnapdManager *m = NBDSNAPD_MANAGER (obj);
  struct job_args *a = begin_device (m, inv, options, NULL, name);

  if (a == NULL)
    return TRUE;
  if (!arg_path (inv, "device path", path)) {
    job_args_free (a);
    return TRUE;
  }
  a->path = g_strdup (path);
  run_job (m, inv, a, add_device_thread, add_device_done);
  return TRUE;
}

/* RemoveDevice */

static GVariant *
remove_device_thread (struct daemon *d, struct job_args *a, GError **error)
{
  struct nbdsnap_ctl_name req;

  dp_put_name (req.name, sizeof req.name, a->name);
  if (ctl_link_call (d->link, NBDSNAP_CTL_DEVICE_DETACH, &req, sizeof req, -1,
                     NULL, 0, NULL, error) < 0)
    return NULL;
  g_message ("device %s detached", a->name);
  return g_variant_new ("()");
}

static void
remove_device_done (NbdsnapdManager *m, GDBusMethodInvocation *inv,
                    struct job_args *a, GVariant *result, const GError *error)
{
  if (result != NULL)
    daemon_device_removed (m->d, a->name);
  reply_tuple (m, inv, a, result, error);
}

static gboolean
handle_remove_device (NbdsnapManager1 *obj, GDBusMethodInvocation *inv,
                      const char *name, GVariant *options)
{
  NbdsnapdManager *m = NBDSNAPD_MANAGER (obj);
  struct job_args *a = begin_device (m, inv, options, NULL, name);

  if (a)
    run_job (m, inv, a, remove_device_thread, remove_device_done);
  return TRUE;
}

/* GetCbtInfo */

static GVariant *
cbt_info_thread (struct daemon *d, struct job_args *a, GError **error)
{
  struct nbdsnap_ctl_name req;
  struct nbdsnap_ctl_cbt_info info;
  GVariantBuilder b;
  char gen[37], fgen[37] = "";

  dp_put_name (req.name, sizeof req.name, a->name);
  if (ctl_link_call (d->link, NBDSNAP_CTL_CBT_INFO, &req, sizeof req, -1,
                     &info, sizeof info, NULL, error) < 0)
    return NULL;
  dp_uuid_string (info.generation, gen);
  if (info.frozen_valid)
    dp_uuid_string (info.frozen_generation, fgen);
  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  dict_add_string (&b, "device", a->name);
  dict_add_uint64 (&b, "size", info.device_size);
  dict_add_uint32 (&b, "block_size", info.block_size);
  dict_add_uint64 (&b, "block_count", info.block_count);
  dict_add_string (&b, "generation", gen);
  dict_add_uint32 (&b, "changes_number", info.changes_number);
  dict_add_boolean (&b, "frozen", info.frozen_valid);
  dict_add_uint32 (&b, "frozen_number", info.frozen_number);
  dict_add_string (&b, "frozen_generation", fgen);
  return g_variant_builder_end (&b);
}

static gboolean
handle_get_cbt_info (NbdsnapManager1 *obj, GDBusMethodInvocation *inv,
                     const char *device, GVariant *options)
{
  NbdsnapdManager *m = NBDSNAPD_MANAGER (obj);
  struct job_args *a = begin_device (m, inv, options, NULL, device);

  if (a)
    run_job (m, inv, a, cbt_info_thread, reply_out_arg);
  return TRUE;
}

/* ReadCbtMap and GetChangedRanges */

static const char *const snapshot_option[] = { "snapshot", NULL };

/* The snapshot option into @a; FALSE if it was answered. */
static gboolean
snapshot_opt (GDBusMethodInvocation *inv, GVariant *options,
              struct job_args *a)
{
  g_autofree char *s = NULL;

  if (!opt_string (inv, options, "snapshot", &s))
    return FALSE;
  if (s && !arg_id (inv, s, a->id))
    return FALSE;
  a->has_id = s != NULL;
  return TRUE;
}

static GVariant *
read_map_thread (struct daemon *d, struct job_args *a, GError **error)
{
  struct nbdsnap_ctl_cbt_info cbt;
  guint8 number = 0, gen[16] = { 0 };
  g_autoptr (GByteArray) map = NULL;
  GVariantBuilder b;
  char gs[37];

  map = dp_read_map (d, a->name, a->has_id ? a->id : NULL, &cbt, &number,
                     gen, error);
  if (map == NULL)
    return NULL;
  dp_uuid_string (gen, gs);
  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  dict_add_string (&b, "device", a->name);
  dict_add_string (&b, "map", a->has_id ? "frozen" : "active");
  dict_add_uint32 (&b, "block_size", cbt.block_size);
  dict_add_uint64 (&b, "block_count", map->len);
  dict_add_uint32 (&b, "changes_number", number);
  dict_add_string (&b, "generation", gs);
  /* The whole reply: (info, map). */
  return g_variant_new ("(a{sv}@ay)", &b,
                        g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE,
                                                   map->data, map->len, 1));
}

static gboolean
handle_read_cbt_map (NbdsnapManager1 *obj, GDBusMethodInvocation *inv,
                     const char *device, GVariant *options)
{
  NbdsnapdManager *m = NBDSNAPD_MANAGER (obj);
  struct job_args *a = begin_device (m, inv, options, snapshot_option,
                                     device);

  if (a == NULL)
    return TRUE;
  if (!snapshot_opt (inv, options, a)) {
    job_args_free (a);
    return TRUE;
  }
  run_job (m, inv, a, read_map_thread, reply_tuple);
  return TRUE;
}

static GVariant *
changed_thread (struct daemon *d, struct job_args *a, GError **error)
{
  struct nbdsnap_ctl_cbt_info cbt;
  guint8 number = 0, gen[16];
  g_autoptr (GByteArray) map = NULL;
  GVariantBuilder b;
  guint64 i, bs;

  map = dp_read_map (d, a->name, a->has_id ? a->id : NULL, &cbt, &number,
                     gen, error);
  if (map == NULL)
    return NULL;
  bs = cbt.block_size;
  g_variant_builder_init (&b, G_VARIANT_TYPE ("a(tt)"));
  for (i = 0; i < map->len; i++) {
    guint64 first = i, offset, end;

    if (map->data[i] <= a->size)
      continue;
    while (i + 1 < map->len && map->data[i + 1] > a->size)
      i++;
    offset = first * bs;
    end = MIN ((i + 1) * bs, cbt.device_size);
    if (end > offset)
      g_variant_builder_add (&b, "(tt)", offset, end - offset);
  }
  return g_variant_builder_end (&b);
}

static gboolean
handle_get_changed_ranges (NbdsnapManager1 *obj, GDBusMethodInvocation *inv,
                           const char *device, guint since, GVariant *options)
{
  NbdsnapdManager *m = NBDSNAPD_MANAGER (obj);
  struct job_args *a = begin_device (m, inv, options, snapshot_option,
                                     device);

  if (a == NULL)
    return TRUE;
  if (since > 255) {
    return_invalid (inv, NBDSNAP_ERROR_INVALID_ARGUMENT,
                    "changes number %u is out of range (0 to 255)", since);
    job_args_free (a);
    return TRUE;
  }
  a->size = since;
  if (!snapshot_opt (inv, options, a)) {
    job_args_free (a);
    return TRUE;
  }
  run_job (m, inv, a, changed_thread, reply_out_arg);
  return TRUE;
}

/* MarkDirty */

static GVariant *
mark_dirty_thread (struct daemon *d, struct job_args *a, GError **error)
{
  gsize n = g_variant_n_children (a->value), i;
  gsize len = sizeof (struct nbdsnap_ctl_mark_dirty) +
    n * sizeof (struct nbdsnap_ctl_range);
  g_autofree char *body = g_malloc0 (len);
  struct nbdsnap_ctl_mark_dirty *req = (void *) body;
  struct nbdsnap_ctl_range *r = (void *) (body + sizeof *req);

  dp_put_name (req->name, sizeof req->name, a->name);
  req->count = n;
  for (i = 0; i < n; i++)
    g_variant_get_child (a->value, i, "(tt)", &r[i].offset, &r[i].length);
  if (ctl_link_call (d->link, NBDSNAP_CTL_CBT_MARK_DIRTY, body, len, -1,
                     NULL, 0, NULL, error) < 0)
    return NULL;
  return g_variant_new ("()");
}

static gboolean
handle_mark_dirty (NbdsnapManager1 *obj, GDBusMethodInvocation *inv,
                   const char *device, GVariant *ranges, GVariant *options)
{
  NbdsnapdManager *m = NBDSNAPD_MANAGER (obj);
  gsize n = g_variant_n_children (ranges);
  struct job_args *a = begin_device (m, inv, options, NULL, device);

  if (a == NULL)
    return TRUE;
  if (n == 0 || n > NBDSNAP_MARK_DIRTY_MAX) {
    return_invalid (inv, NBDSNAP_ERROR_INVALID_ARGUMENT,
                    "%zu ranges: give 1 to %d", (size_t) n,
                    NBDSNAP_MARK_DIRTY_MAX);
    job_args_free (a);
    return TRUE;
  }
  a->value = g_variant_ref (ranges);
  run_job (m, inv, a, mark_dirty_thread, reply_tuple);
  return TRUE;
}

/* CreateSnapshot */

static GVariant *
create_thread (struct daemon *d, struct job_args *a, GError **error)
{
  struct nbdsnap_ctl_snapshot_create req = { 0 };
  struct nbdsnap_ctl_snapshot_id id;
  g_autoptr (GArray) devs = NULL;
  g_autoptr (GPtrArray) specs = NULL;
  g_autofree char *desc = NULL, *names = NULL;
  GVariantBuilder b;
  guint64 pause = 0;
  char sid[37];
  gssize r;
  guint i, j;
  int fd;

  if ((devs = dp_device_list (d, error)) == NULL ||
      (specs = dp_device_specs (devs, (const char *const *) a->names,
                                error)) == NULL)
    return NULL;
  for (i = 0; a->names[i]; i++)
    for (j = 0; j < devs->len; j++) {
      const struct nbdsnap_ctl_device *dev =
        &g_array_index (devs, struct nbdsnap_ctl_device, j);
      if (strcmp (dev->name, a->names[i]) == 0 &&
          !uuid_is_null (dev->snapshot)) {
        char other[37];
        dp_uuid_string (dev->snapshot, other);
        g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_BUSY,
                     "device '%s' is already in snapshot %s", dev->name,
                     other);
        return NULL;
      }
    }

  fd = storage_open (a->path, d->cfg->diff_storage_dir, specs, &desc, error);
  if (fd == -1)
    return NULL;
  req.limit = a->size ? a->size : d->cfg->diff_storage_limit;
  r = ctl_link_call (d->link, NBDSNAP_CTL_SNAPSHOT_CREATE, &req, sizeof req,
                     fd, &id, sizeof id, NULL, error);
  close (fd);
  if (r < 0)
    return NULL;
  dp_uuid_string (id.id, sid);

  for (i = 0; a->names[i]; i++) {
    struct nbdsnap_ctl_snapshot_device add;

    memcpy (add.id, id.id, 16);
    dp_put_name (add.name, sizeof add.name, a->names[i]);
    if (ctl_link_call (d->link, NBDSNAP_CTL_SNAPSHOT_ADD_DEVICE, &add,
                       sizeof add, -1, NULL, 0, NULL, error) < 0)
      goto fail_destroy;
  }
  names = g_strjoinv (" ", a->names);
  g_message ("snapshot %s created: devices %s, diff storage %s, limit %"
             G_GUINT64_FORMAT " bytes", sid, names, desc, req.limit);
  if (a->flag && !dp_take (d, id.id, specs, &pause, error))
    goto fail_destroy;

  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  dict_add_string (&b, "id", sid);
  dict_add_string (&b, "state", a->flag ? "taken" : "created");
  if (a->flag)
    dict_add_uint64 (&b, "take_pause_us", pause / 1000);
  /* The whole reply: (id, result). */
  return g_variant_new ("(s@a{sv})", sid, g_variant_builder_end (&b));

 fail_destroy:
  {
    g_autoptr (GError) e = NULL;
    if (!dp_destroy (d, id.id, &e))
      g_warning ("snapshot %s: cannot destroy it after a failed create: %s",
                 sid, e->message);
  }
  g_prefix_error (error, "no snapshot was created: ");
  return NULL;
}

static void
create_done (NbdsnapdManager *m, GDBusMethodInvocation *inv,
             struct job_args *a, GVariant *result, const GError *error)
{
  const char *id;

  if (result != NULL) {
    g_variant_get_child (result, 0, "&s", &id);
    daemon_add_record (m->d, id, (const char *const *) a->names);
  }
  reply_tuple (m, inv, a, result, error);
}

static gboolean
handle_create_snapshot (NbdsnapManager1 *obj, GDBusMethodInvocation *inv,
                        const char *const *devices, GVariant *options)
{
  static const char *const known[] = { "diff_storage", "limit", "take",
                                       NULL };
  NbdsnapdManager *m = NBDSNAPD_MANAGER (obj);
  struct job_args *a;
  gint64 limit = 0;
  size_t i, j, n = g_strv_length ((char **) devices);

  if (!begin (m, inv, options, known))
    return TRUE;
  if (n == 0) {
    return_invalid (inv, NBDSNAP_ERROR_INVALID_ARGUMENT,
                    "a snapshot needs at least one device");
    return TRUE;
  }
  if (n > NBDSNAP_MAX_DEVICES) {
    return_invalid (inv, NBDSNAP_ERROR_TOO_MANY,
                    "%zu devices: a snapshot holds at most %d", n,
                    NBDSNAP_MAX_DEVICES);
    return TRUE;
  }
  for (i = 0; i < n; i++) {
    if (!arg_name (inv, devices[i]))
      return TRUE;
    for (j = 0; j < i; j++)
      if (strcmp (devices[i], devices[j]) == 0) {
        return_invalid (inv, NBDSNAP_ERROR_INVALID_ARGUMENT,
                        "device '%s' is given twice", devices[i]);
        return TRUE;
      }
  }
  a = g_new0 (struct job_args, 1);
  a->names = g_strdupv ((char **) devices);
  if (!opt_string (inv, options, "diff_storage", &a->path) ||
      (a->path && !arg_path (inv, "diff storage", a->path)) ||
      !opt_int (inv, options, "limit", 1, G_MAXINT64, &limit) ||
      !opt_bool (inv, options, "take", &a->flag)) {
    job_args_free (a);
    return TRUE;
  }
  a->size = limit;
  run_job (m, inv, a, create_thread, create_done);
  return TRUE;
}

/* TakeSnapshot */

static GVariant *
take_thread (struct daemon *d, struct job_args *a, GError **error)
{
  g_autofree struct nbdsnap_ctl_snapshot_info *info = NULL;
  g_autoptr (GArray) devs = NULL;
  g_autoptr (GPtrArray) specs = NULL;
  g_auto (GStrv) names = NULL;
  GVariantBuilder b;
  guint64 pause = 0;
  char sid[37];

  dp_uuid_string (a->id, sid);
  if ((info = dp_snapshot_info (d, a->id, error)) == NULL)
    return NULL;
  if (info->state != NBDSNAP_CTL_STATE_CREATED) {
    g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_WRONG_STATE,
                 "snapshot %s is already taken", sid);
    return NULL;
  }
  if (info->device_count == 0) {
    g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_INVALID_ARGUMENT,
                 "snapshot %s has no device", sid);
    return NULL;
  }
  names = dp_snapshot_devices (info);
  if ((devs = dp_device_list (d, error)) == NULL ||
      (specs = dp_device_specs (devs, (const char *const *) names,
                                error)) == NULL)
    return NULL;
  if (!dp_take (d, a->id, specs, &pause, error))
    return NULL;
  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  dict_add_string (&b, "id", sid);
  dict_add_string (&b, "state", "taken");
  dict_add_uint64 (&b, "take_pause_us", pause / 1000);
  return g_variant_builder_end (&b);
}

static void
take_done (NbdsnapdManager *m, GDBusMethodInvocation *inv,
           struct job_args *a, GVariant *result, const GError *error)
{
  char sid[37];
  struct snapshot_record *r;

  dp_uuid_string (a->id, sid);
  r = daemon_find_record (m->d, sid);
  if (r)
    r->taking = FALSE;
  reply_out_arg (m, inv, a, result, error);
}

static gboolean
check_not_lost (GDBusMethodInvocation *inv, struct snapshot_record *r)
{
  if (r && r->state == RECORD_LOST) {
    return_invalid (inv, NBDSNAP_ERROR_LOST, "snapshot %s was lost when the "
                    "data plane restarted; destroy it to forget it", r->id);
    return FALSE;
  }
  if (r && r->state == RECORD_DESTROYED) {
    return_invalid (inv, NBDSNAP_ERROR_NOT_FOUND, "no snapshot %s (it was "
                    "destroyed)", r->id);
    return FALSE;
  }
  return TRUE;
}

static gboolean
handle_take_snapshot (NbdsnapManager1 *obj, GDBusMethodInvocation *inv,
                      const char *id, GVariant *options)
{
  NbdsnapdManager *m = NBDSNAPD_MANAGER (obj);
  struct snapshot_record *r;
  guint8 uuid[16];

  if (!begin_snapshot (m, inv, options, NULL, id, uuid))
    return TRUE;
  r = daemon_find_record (m->d, id);
  if (!check_not_lost (inv, r))
    return TRUE;
  if (r && r->taking) {
    return_invalid (inv, NBDSNAP_ERROR_WRONG_STATE,
                    "a take of snapshot %s is in progress", id);
    return TRUE;
  }
  if (r)
    r->taking = TRUE;
  run_job (m, inv, snapshot_args (uuid), take_thread, take_done);
  return TRUE;
}

/* DestroySnapshot */

static GVariant *
destroy_thread (struct daemon *d, struct job_args *a, GError **error)
{
  char sid[37];

  if (!dp_destroy (d, a->id, error))
    return NULL;
  dp_uuid_string (a->id, sid);
  g_message ("snapshot %s destroyed on request", sid);
  return g_variant_new ("()");
}

static void
destroy_done (NbdsnapdManager *m, GDBusMethodInvocation *inv,
              struct job_args *a, GVariant *result, const GError *error)
{
  char sid[37];
  struct snapshot_record *r;

  if (result == NULL) {
    dp_uuid_string (a->id, sid);
    r = daemon_find_record (m->d, sid);
    if (r && r->state == RECORD_ACTIVE)
      r->destroy_reason = NULL;
  }
  reply_tuple (m, inv, a, result, error);
}

static gboolean
handle_destroy_snapshot (NbdsnapManager1 *obj, GDBusMethodInvocation *inv,
                         const char *id, GVariant *options)
{
  NbdsnapdManager *m = NBDSNAPD_MANAGER (obj);
  struct snapshot_record *r;
  guint8 uuid[16];

  if (!begin_snapshot (m, inv, options, NULL, id, uuid))
    return TRUE;
  r = daemon_find_record (m->d, id);
  if (r && r->state == RECORD_LOST) {
    g_message ("snapshot %s (lost) forgotten", id);
    daemon_forget_record (m->d, r);
    nbdsnap_manager1_complete_destroy_snapshot (obj, inv);
    return TRUE;
  }
  if (!check_not_lost (inv, r))
    return TRUE;
  if (r)
    r->destroy_reason = "request";
  run_job (m, inv, snapshot_args (uuid), destroy_thread, destroy_done);
  return TRUE;
}

/* ListSnapshots */

/* The entries of a snapshot in ListSnapshots (all but the times). */
static void
dict_add_snapshot (GVariantBuilder *b, const char *id, const char *state,
                   const char *const *devices, guint64 used, guint64 limit)
{
  dict_add_string (b, "id", id);
  dict_add_string (b, "state", state);
  dict_add (b, "devices", g_variant_new_strv (devices, -1));
  dict_add_uint64 (b, "used", used);
  dict_add_uint64 (b, "limit", limit);
}

static GVariant *
list_snapshots_thread (struct daemon *d, struct job_args *a, GError **error)
{
  g_autoptr (GArray) ids = dp_collect (d, error);
  GVariantBuilder b;
  guint i;

  if (ids == NULL)
    return NULL;
  g_variant_builder_init (&b, G_VARIANT_TYPE ("aa{sv}"));
  for (i = 0; i < ids->len; i++) {
    const guint8 *id = (const guint8 *) ids->data + 16 * i;
    g_autofree struct nbdsnap_ctl_snapshot_info *info = NULL;
    g_autoptr (GError) e = NULL;
    g_auto (GStrv) names = NULL;
    char sid[37];

    info = dp_snapshot_info (d, id, &e);
    if (info == NULL) {
      if (g_error_matches (e, NBDSNAP_ERROR, NBDSNAP_ERROR_NOT_FOUND))
        continue;               /* destroyed meanwhile */
      g_propagate_error (error, g_steal_pointer (&e));
      g_variant_builder_clear (&b);
      return NULL;
    }
    dp_uuid_string (id, sid);
    names = dp_snapshot_devices (info);
    g_variant_builder_open (&b, G_VARIANT_TYPE_VARDICT);
    dict_add_snapshot (&b, sid, dp_state_name (info->state),
                       (const char *const *) names, info->used, info->limit);
    g_variant_builder_close (&b);
  }
  return g_variant_builder_end (&b);
}

static void
list_snapshots_done (NbdsnapdManager *m, GDBusMethodInvocation *inv,
                     struct job_args *a, GVariant *result,
                     const GError *error)
{
  struct daemon *d = m->d;
  GVariantBuilder b;
  GVariantIter it;
  GVariant *dict;
  guint i;

  if (job_failed (inv, result, error))
    return;
  g_variant_builder_init (&b, G_VARIANT_TYPE ("aa{sv}"));
  g_variant_iter_init (&it, result);
  while ((dict = g_variant_iter_next_value (&it)) != NULL) {
    const char *id;
    g_variant_lookup (dict, "id", "&s", &id);
    g_variant_builder_add_value (&b, add_record_times (d, dict, id));
    g_variant_unref (dict);
  }
  for (i = 0; i < d->records->len; i++) {
    struct snapshot_record *r = g_ptr_array_index (d->records, i);
    GVariantBuilder lb;

    if (r->state != RECORD_LOST)
      continue;
    g_variant_builder_init (&lb, G_VARIANT_TYPE_VARDICT);
    dict_add_snapshot (&lb, r->id, "lost", (const char *const *) r->devices,
                       0, 0);
    dict_add_int64 (&lb, "created", r->created);
    dict_add_int64 (&lb, "expires", r->expires);
    g_variant_builder_add_value (&b, g_variant_builder_end (&lb));
  }
  nbdsnap_manager1_complete_list_snapshots (NBDSNAP_MANAGER1 (m), inv,
                                            g_variant_builder_end (&b));
}

static gboolean
handle_list_snapshots (NbdsnapManager1 *obj, GDBusMethodInvocation *inv,
                       GVariant *options)
{
  NbdsnapdManager *m = NBDSNAPD_MANAGER (obj);

  if (begin (m, inv, options, NULL))
    run_job (m, inv, g_new0 (struct job_args, 1), list_snapshots_thread,
             list_snapshots_done);
  return TRUE;
}

/* GetSnapshotInfo */

static GVariant *
lost_info (struct snapshot_record *r)
{
  GVariantBuilder b, devs, st;
  size_t i;

  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  dict_add_string (&b, "id", r->id);
  dict_add_string (&b, "state", "lost");
  dict_add_string (&b, "error", "");
  dict_add_uint64 (&b, "take_pause_us", 0);
  g_variant_builder_init (&st, G_VARIANT_TYPE_VARDICT);
  dict_add_uint64 (&st, "used", 0);
  dict_add_uint64 (&st, "limit", 0);
  dict_add_uint64 (&st, "allocated", 0);
  dict_add_uint32 (&st, "files", 0);
  dict_add (&b, "diff_storage", g_variant_builder_end (&st));
  g_variant_builder_init (&devs, G_VARIANT_TYPE ("aa{sv}"));
  for (i = 0; r->devices[i]; i++) {
    g_variant_builder_open (&devs, G_VARIANT_TYPE_VARDICT);
    dict_add_string (&devs, "name", r->devices[i]);
    dict_add_string (&devs, "export", "");
    dict_add_string (&devs, "uri", "");
    dict_add (&devs, "uris", g_variant_new_strv (NULL, 0));
    dict_add_uint32 (&devs, "changes_number", 0);
    g_variant_builder_close (&devs);
  }
  dict_add (&b, "devices", g_variant_builder_end (&devs));
  dict_add_int64 (&b, "created", r->created);
  dict_add_int64 (&b, "expires", r->expires);
  return g_variant_builder_end (&b);
}

static GVariant *
info_thread (struct daemon *d, struct job_args *a, GError **error)
{
  g_autofree struct nbdsnap_ctl_snapshot_info *info =
    dp_snapshot_info (d, a->id, error);

  return info ? dp_snapshot_info_dict (d, info) : NULL;
}

static void
info_done (NbdsnapdManager *m, GDBusMethodInvocation *inv,
           struct job_args *a, GVariant *result, const GError *error)
{
  char sid[37];

  if (job_failed (inv, result, error))
    return;
  dp_uuid_string (a->id, sid);
  nbdsnap_manager1_complete_get_snapshot_info
    (NBDSNAP_MANAGER1 (m), inv, add_record_times (m->d, result, sid));
}

static gboolean
handle_get_snapshot_info (NbdsnapManager1 *obj, GDBusMethodInvocation *inv,
                          const char *id, GVariant *options)
{
  NbdsnapdManager *m = NBDSNAPD_MANAGER (obj);
  struct snapshot_record *r;
  guint8 uuid[16];

  if (!begin_snapshot (m, inv, options, NULL, id, uuid))
    return TRUE;
  r = daemon_find_record (m->d, id);
  if (r && r->state == RECORD_LOST) {
    nbdsnap_manager1_complete_get_snapshot_info (obj, inv, lost_info (r));
    return TRUE;
  }
  run_job (m, inv, snapshot_args (uuid), info_thread, info_done);
  return TRUE;
}

/* AppendStorage */

static GVariant *
append_thread (struct daemon *d, struct job_args *a, GError **error)
{
  struct nbdsnap_ctl_snapshot_info out;

  if (!dp_append_storage (d, a->id, a->path, a->size, &out, error))
    return NULL;
  return dp_storage_dict (&out);
}

static gboolean
handle_append_storage (NbdsnapManager1 *obj, GDBusMethodInvocation *inv,
                       const char *id, const char *path, GVariant *options)
{
  static const char *const known[] = { "limit", NULL };
  NbdsnapdManager *m = NBDSNAPD_MANAGER (obj);
  struct job_args *a;
  guint8 uuid[16];
  gint64 limit = 0;

  if (!begin_snapshot (m, inv, options, known, id, uuid) ||
      !arg_path (inv, "diff storage", path) ||
      !check_not_lost (inv, daemon_find_record (m->d, id)) ||
      !opt_int (inv, options, "limit", 1, G_MAXINT64, &limit))
    return TRUE;
  a = snapshot_args (uuid);
  a->path = g_strdup (path);
  a->size = limit;
  run_job (m, inv, a, append_thread, reply_out_arg);
  return TRUE;
}

/* WaitEvent */

void
nbdsnapd_manager_deliver_event (GDBusMethodInvocation *inv, GVariant *event,
                                const GError *error)
{
  if (event)
    nbdsnap_manager1_complete_wait_event (NULL, inv, event);
  else
    return_error (inv, error);
}

static gboolean
handle_wait_event (NbdsnapManager1 *obj, GDBusMethodInvocation *inv,
                   const char *id, GVariant *options)
{
  static const char *const known[] = { "timeout_ms", NULL };
  NbdsnapdManager *m = NBDSNAPD_MANAGER (obj);
  struct snapshot_record *r;
  g_autoptr (GVariant) ev = NULL;
  gint64 timeout = -1;
  guint8 uuid[16];

  if (!begin (m, inv, options, known) || !arg_id (inv, id, uuid) ||
      !opt_int (inv, options, "timeout_ms", -1, G_MAXINT32, &timeout))
    return TRUE;
  r = daemon_find_record (m->d, id);
  if (r == NULL) {
    return_invalid (inv, NBDSNAP_ERROR_NOT_FOUND, "no snapshot %s", id);
    return TRUE;
  }
  ev = snapshot_record_pop (r);
  if (ev) {
    nbdsnap_manager1_complete_wait_event (obj, inv, ev);
    return TRUE;
  }
  if (r->state == RECORD_DESTROYED) {
    return_invalid (inv, NBDSNAP_ERROR_NOT_FOUND, "no snapshot %s (it was "
                    "destroyed and its events were collected)", id);
    return TRUE;
  }
  if (r->state == RECORD_LOST) {
    return_invalid (inv, NBDSNAP_ERROR_LOST, "snapshot %s was lost when the "
                    "data plane restarted: no more events will come", id);
    return TRUE;
  }
  snapshot_record_wait (r, inv, (int) timeout,
                        nbdsnapd_manager_deliver_event);
  return TRUE;
}

static void
manager_iface_init (NbdsnapManager1Iface *iface)
{
  iface->handle_version = handle_version;
  iface->handle_list_devices = handle_list_devices;
  iface->handle_add_device = handle_add_device;
  iface->handle_remove_device = handle_remove_device;
  iface->handle_get_cbt_info = handle_get_cbt_info;
  iface->handle_read_cbt_map = handle_read_cbt_map;
  iface->handle_get_changed_ranges = handle_get_changed_ranges;
  iface->handle_mark_dirty = handle_mark_dirty;
  iface->handle_create_snapshot = handle_create_snapshot;
  iface->handle_take_snapshot = handle_take_snapshot;
  iface->handle_destroy_snapshot = handle_destroy_snapshot;
  iface->handle_list_snapshots = handle_list_snapshots;
  iface->handle_get_snapshot_info = handle_get_snapshot_info;
  iface->handle_append_storage = handle_append_storage;
  iface->handle_wait_event = handle_wait_event;
}
