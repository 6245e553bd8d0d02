/* nbdsnap - blocking operations on the data plane (worker threads). */

#include <config.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include "dataplane.h"
#include "error.h"
#include "hook.h"
#include "storage.h"
#include "util.h"

void
dp_put_name (char *field, size_t size, const char *name)
{
  memset (field, 0, size);
  g_strlcpy (field, name, size);
}

void
dp_uuid_string (const guint8 id[16], char out[37])
{
  uuid_unparse_lower (id, out);
}

GArray *
dp_device_list (struct daemon *d, GError **error)
{
  g_autoptr (GArray) devs = g_array_new (FALSE, TRUE,
                                         sizeof (struct nbdsnap_ctl_device));
  g_autofree char *out = g_malloc (NBDSNAP_CTL_MSG_MAX);
  struct nbdsnap_ctl_device_list_req req = { 0 };
  struct nbdsnap_ctl_device_list *l = (void *) out;

  for (;;) {
    if (ctl_link_call (d->link, NBDSNAP_CTL_DEVICE_LIST, &req, sizeof req, -1,
                       out, NBDSNAP_CTL_MSG_MAX, NULL, error) < 0)
      return NULL;
    g_array_append_vals (devs, out + sizeof *l, l->count);
    req.start += l->count;
    if (l->count == 0 || req.start >= l->total)
      break;
  }
  return g_steal_pointer (&devs);
}

GPtrArray *
dp_device_specs (GArray *devs, const char *const *names, GError **error)
{
  g_autoptr (GPtrArray) specs =
    g_ptr_array_new_with_free_func ((GDestroyNotify) device_spec_free);
  size_t i;
  guint j;

  for (i = 0; names && names[i]; i++) {
    const struct nbdsnap_ctl_device *found = NULL;

    for (j = 0; j < devs->len; j++) {
      const struct nbdsnap_ctl_device *dev =
        &g_array_index (devs, struct nbdsnap_ctl_device, j);
      if (strcmp (dev->name, names[i]) == 0)
        found = dev;
    }
    if (found == NULL) {
      g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_NOT_FOUND,
                   "no device '%s'", names[i]);
      return NULL;
    }
    g_ptr_array_add (specs, device_spec_new (found->name, found->path));
  }
  return g_steal_pointer (&specs);
}

static void
add_uris (GVariantBuilder *b, struct daemon *d, const char *export,
          gboolean original)
{
  g_auto (GStrv) uris = daemon_export_uris (d, export, original);

  g_variant_builder_add (b, "{sv}", "export", g_variant_new_string (export));
  g_variant_builder_add (b, "{sv}", "uri",
                         g_variant_new_string (uris[0] ? uris[0] : ""));
  g_variant_builder_add (b, "{sv}", "uris",
                         g_variant_new_strv ((const char *const *) uris, -1));
}

GVariant *
dp_device_dict (struct daemon *d, const struct nbdsnap_ctl_device *dev)
{
  GVariantBuilder b;
  char snap[37] = "";

  if (!uuid_is_null (dev->snapshot))
    dp_uuid_string (dev->snapshot, snap);
  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&b, "{sv}", "name", g_variant_new_string (dev->name));
  g_variant_builder_add (&b, "{sv}", "path", g_variant_new_string (dev->path));
  g_variant_builder_add (&b, "{sv}", "size", g_variant_new_uint64 (dev->size));
  g_variant_builder_add (&b, "{sv}", "logical_block_size",
                         g_variant_new_uint32 (dev->logical_block_size));
  g_variant_builder_add (&b, "{sv}", "physical_block_size",
                         g_variant_new_uint32 (dev->physical_block_size));
  g_variant_builder_add (&b, "{sv}", "blockdev",
                         g_variant_new_boolean (dev->flags &
                                                NBDSNAP_CTL_DEVICE_BLOCKDEV));
  g_variant_builder_add (&b, "{sv}", "connections",
                         g_variant_new_uint32 (dev->connections));
  g_variant_builder_add (&b, "{sv}", "snapshot", g_variant_new_string (snap));
  add_uris (&b, d, dev->name, TRUE);
  return g_variant_builder_end (&b);
}

struct nbdsnap_ctl_snapshot_info *
dp_snapshot_info (struct daemon *d, const guint8 id[16], GError **error)
{
  struct nbdsnap_ctl_snapshot_id req;
  char *out = g_malloc0 (NBDSNAP_CTL_MSG_MAX);

  memcpy (req.id, id, 16);
  if (ctl_link_call (d->link, NBDSNAP_CTL_SNAPSHOT_INFO, &req, sizeof req, -1,
                     out, NBDSNAP_CTL_MSG_MAX, NULL, error) < 0) {
    g_free (out);
    return NULL;
  }
  return (struct nbdsnap_ctl_snapshot_info *) out;
}

const char *
dp_state_name (guint32 state)
{
  switch (state) {
  case NBDSNAP_CTL_STATE_CREATED: return "created";
  case NBDSNAP_CTL_STATE_TAKEN: return "taken";
  case NBDSNAP_CTL_STATE_CORRUPTED: return "corrupted";
  default: return "unknown";
  }
}

char **
dp_snapshot_devices (const struct nbdsnap_ctl_snapshot_info *info)
{
  const struct nbdsnap_ctl_snapshot_info_device *dev = (const void *) (info + 1);
  char **names = g_new0 (char *, info->device_count + 1);
  guint32 i;

  for (i = 0; i < info->device_count; i++)
    names[i] = g_strndup (dev[i].name, NBDSNAP_NAME_SIZE);
  return names;
}

GVariant *
dp_storage_dict (const struct nbdsnap_ctl_snapshot_info *info)
{
  GVariantBuilder b;

  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&b, "{sv}", "used", g_variant_new_uint64 (info->used));
  g_variant_builder_add (&b, "{sv}", "limit",
                         g_variant_new_uint64 (info->limit));
  g_variant_builder_add (&b, "{sv}", "allocated",
                         g_variant_new_uint64 (info->allocated));
  g_variant_builder_add (&b, "{sv}", "files",
                         g_variant_new_uint32 (info->storage_count));
  return g_variant_builder_end (&b);
}

GVariant *
dp_snapshot_info_dict (struct daemon *d,
                       const struct nbdsnap_ctl_snapshot_info *info)
{
  const struct nbdsnap_ctl_snapshot_info_device *dev = (const void *) (info + 1);
  const char *err = info->error ? nbdsnap_errno_name (info->error) : "";
  GVariantBuilder b, devs;
  char id[37];
  guint32 i;

  dp_uuid_string (info->id, id);
  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&b, "{sv}", "id", g_variant_new_string (id));
  g_variant_builder_add (&b, "{sv}", "state",
                         g_variant_new_string (dp_state_name (info->state)));
  g_variant_builder_add (&b, "{sv}", "error",
                         g_variant_new_string (err ? err : "EIO"));
  g_variant_builder_add (&b, "{sv}", "take_pause_us",
                         g_variant_new_uint64 (info->pause_ns / 1000));
  g_variant_builder_add (&b, "{sv}", "diff_storage", dp_storage_dict (info));

  g_variant_builder_init (&devs, G_VARIANT_TYPE ("aa{sv}"));
  for (i = 0; i < info->device_count; i++) {
    g_autofree char *name = g_strndup (dev[i].name, NBDSNAP_NAME_SIZE);
    g_autofree char *export = g_strdup_printf ("%s@%s", name, id);
    char gen[37] = "";

    if (!uuid_is_null (dev[i].generation))
      dp_uuid_string (dev[i].generation, gen);
    g_variant_builder_open (&devs, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add (&devs, "{sv}", "name", g_variant_new_string (name));
    if (info->state == NBDSNAP_CTL_STATE_CREATED) {
      /* No image yet. */
      g_variant_builder_add (&devs, "{sv}", "export",
                             g_variant_new_string (""));
      g_variant_builder_add (&devs, "{sv}", "uri", g_variant_new_string (""));
      g_variant_builder_add (&devs, "{sv}", "uris",
                             g_variant_new_strv (NULL, 0));
    }
    else
      add_uris (&devs, d, export, FALSE);
    g_variant_builder_add (&devs, "{sv}", "changes_number",
                           g_variant_new_uint32 (dev[i].changes_number));
    g_variant_builder_add (&devs, "{sv}", "chunk_size",
                           g_variant_new_uint32 (dev[i].chunk_size));
    g_variant_builder_add (&devs, "{sv}", "chunks_copied",
                           g_variant_new_uint64 (dev[i].chunks_copied));
    g_variant_builder_add (&devs, "{sv}", "generation",
                           g_variant_new_string (gen));
    g_variant_builder_close (&devs);
  }
  g_variant_builder_add (&b, "{sv}", "devices", g_variant_builder_end (&devs));
  return g_variant_builder_end (&b);
}

GArray *
dp_collect (struct daemon *d, GError **error)
{
  g_autofree char *out = g_malloc (NBDSNAP_CTL_MSG_MAX);
  struct nbdsnap_ctl_collect *c = (void *) out;
  GArray *ids;

  if (ctl_link_call (d->link, NBDSNAP_CTL_SNAPSHOT_COLLECT, NULL, 0, -1, out,
                     NBDSNAP_CTL_MSG_MAX, NULL, error) < 0)
    return NULL;
  ids = g_array_sized_new (FALSE, FALSE, 16, c->count);
  g_array_append_vals (ids, out + sizeof *c, c->count);
  return ids;
}

gboolean
dp_destroy (struct daemon *d, const guint8 id[16], GError **error)
{
  struct nbdsnap_ctl_snapshot_id req;

  memcpy (req.id, id, 16);
  return ctl_link_call (d->link, NBDSNAP_CTL_SNAPSHOT_DESTROY, &req,
                        sizeof req, -1, NULL, 0, NULL, error) >= 0;
}

static char **
hook_env (const char *hook, const char *id, GPtrArray *specs,
          const char *result)
{
  GPtrArray *env = g_ptr_array_new ();
  g_autoptr (GString) names = g_string_new (NULL);
  g_autoptr (GString) paths = g_string_new (NULL);
  guint i;

  for (i = 0; specs && i < specs->len; i++) {
    const struct device_spec *s = g_ptr_array_index (specs, i);
    g_string_append_printf (names, "%s%s", i ? " " : "", s->name);
    g_string_append_printf (paths, "%s%s", i ? " " : "", s->path);
  }
  g_ptr_array_add (env, g_strdup_printf ("NBDSNAP_HOOK=%s", hook));
  g_ptr_array_add (env, g_strdup_printf ("NBDSNAP_SNAPSHOT_ID=%s", id));
  g_ptr_array_add (env, g_strdup_printf ("NBDSNAP_DEVICES=%s", names->str));
  g_ptr_array_add (env, g_strdup_printf ("NBDSNAP_DEVICE_PATHS=%s",
                                         paths->str));
  if (result)
    g_ptr_array_add (env, g_strdup_printf ("NBDSNAP_TAKE_RESULT=%s", result));
  g_ptr_array_add (env, NULL);
  return (char **) g_ptr_array_free (env, FALSE);
}

gboolean
dp_take (struct daemon *d, const guint8 id[16], GPtrArray *specs,
         guint64 *pause_ns, GError **error)
{
  const struct config *c = d->cfg;
  struct nbdsnap_ctl_snapshot_id req;
  struct nbdsnap_ctl_take take = { 0 };
  g_autoptr (GError) err = NULL;
  gboolean ok;
  char sid[37];

  dp_uuid_string (id, sid);
  if (c->pre_take_hook) {
    g_auto (GStrv) env = hook_env ("pre-take", sid, specs, NULL);
    if (!hook_run ("pre-take", c->pre_take_hook, env, c->hook_timeout,
                   &err)) {
      g_warning ("snapshot %s: take aborted: %s", sid, err->message);
      /* The pre-take hook may have done part of its work (frozen one
       * filesystem of two, or timed out after the freeze): the
       * post-take hook undoes it, told that the take was aborted.
       */
      if (c->post_take_hook) {
        g_auto (GStrv) penv = hook_env ("post-take", sid, specs, "aborted");
        g_autoptr (GError) perr = NULL;
        if (!hook_run ("post-take", c->post_take_hook, penv, c->hook_timeout,
                       &perr))
          g_warning ("snapshot %s: %s (after the aborted take)", sid,
                     perr->message);
      }
      g_set_error (error, NBDSNAP_ERROR, err->code, "%s; snapshot %s was not "
                   "taken", err->message, sid);
      return FALSE;
    }
  }
  memcpy (req.id, id, 16);
  ok = ctl_link_call (d->link, NBDSNAP_CTL_SNAPSHOT_TAKE, &req, sizeof req,
                      -1, &take, sizeof take, NULL, &err) >= 0;
  if (ok)
    g_message ("snapshot %s taken: writes paused %.3f ms", sid,
               take.pause_ns / 1e6);
  if (c->post_take_hook && (ok || c->pre_take_hook)) {
    g_auto (GStrv) env = hook_env ("post-take", sid, specs,
                                   ok ? "ok" : "failed");
    g_autoptr (GError) perr = NULL;
    if (!hook_run ("post-take", c->post_take_hook, env, c->hook_timeout,
                   &perr))
      g_warning ("snapshot %s: %s (the take itself %s)", sid, perr->message,
                 ok ? "succeeded" : "failed");
  }
  if (!ok) {
    g_propagate_error (error, g_steal_pointer (&err));
    return FALSE;
  }
  *pause_ns = take.pause_ns;
  return TRUE;
}

gboolean
dp_append_storage (struct daemon *d, const guint8 id[16], const char *path,
                   guint64 limit, struct nbdsnap_ctl_snapshot_info *out,
                   GError **error)
{
  g_autofree struct nbdsnap_ctl_snapshot_info *info = NULL;
  g_autoptr (GArray) devs = NULL;
  g_autoptr (GPtrArray) specs = NULL;
  g_auto (GStrv) names = NULL;
  g_autofree char *desc = NULL;
  struct nbdsnap_ctl_append_storage req = { .limit = limit };
  gboolean ok;
  int fd;

  if ((info = dp_snapshot_info (d, id, error)) == NULL ||
      (devs = dp_device_list (d, error)) == NULL)
    return FALSE;
  names = dp_snapshot_devices (info);
  if ((specs = dp_device_specs (devs, (const char *const *) names,
                                error)) == NULL)
    return FALSE;
  fd = storage_open (path, d->cfg->diff_storage_dir, specs, &desc, error);
  if (fd == -1)
    return FALSE;
  memcpy (req.id, id, 16);
  if (req.limit == 0)
    req.limit = d->cfg->spare_storage_size;
  ok = ctl_link_call (d->link, NBDSNAP_CTL_SNAPSHOT_APPEND_STORAGE, &req,
                      sizeof req, fd, out, sizeof *out, NULL, error) >= 0;
  close (fd);
  if (ok) {
    char sid[37];
    dp_uuid_string (id, sid);
    g_message ("snapshot %s: appended diff storage %s: limit now %"
               G_GUINT64_FORMAT " bytes", sid, desc, out->limit);
  }
  return ok;
}

GByteArray *
dp_read_map (struct daemon *d, const char *device, const guint8 *snapshot,
             struct nbdsnap_ctl_cbt_info *cbt, guint8 *number,
             guint8 generation[16], GError **error)
{
  g_autoptr (GByteArray) map = g_byte_array_new ();
  g_autofree char *out = g_malloc (NBDSNAP_CTL_MSG_MAX);
  struct nbdsnap_ctl_cbt_data *data = (void *) out;
  struct nbdsnap_ctl_name nreq;
  struct nbdsnap_ctl_cbt_read req;

  dp_put_name (nreq.name, sizeof nreq.name, device);
  if (ctl_link_call (d->link, NBDSNAP_CTL_CBT_INFO, &nreq, sizeof nreq, -1,
                     cbt, sizeof *cbt, NULL, error) < 0)
    return NULL;

  if (snapshot) {
    g_autoptr (GArray) devs = dp_device_list (d, error);
    g_autofree struct nbdsnap_ctl_snapshot_info *info = NULL;
    char sid[37];
    guint i;
    gboolean in = FALSE;

    if (devs == NULL)
      return NULL;
    dp_uuid_string (snapshot, sid);
    if ((info = dp_snapshot_info (d, snapshot, error)) == NULL)
      return NULL;
    for (i = 0; i < devs->len; i++) {
      const struct nbdsnap_ctl_device *dev =
        &g_array_index (devs, struct nbdsnap_ctl_device, i);
      if (strcmp (dev->name, device) == 0 &&
          memcmp (dev->snapshot, snapshot, 16) == 0)
        in = TRUE;
    }
    if (!in) {
      g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_NOT_FOUND,
                   "device '%s' is not in snapshot %s", device, sid);
      return NULL;
    }
    if (info->state == NBDSNAP_CTL_STATE_CREATED) {
      g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_WRONG_STATE,
                   "snapshot %s is not taken: it has no frozen map yet", sid);
      return NULL;
    }
  }

  memset (&req, 0, sizeof req);
  dp_put_name (req.name, sizeof req.name, device);
  req.map = snapshot ? NBDSNAP_CTL_MAP_FROZEN : NBDSNAP_CTL_MAP_ACTIVE;
  req.count = NBDSNAP_CBT_READ_MAX;
  while (req.start < cbt->block_count) {
    if (ctl_link_call (d->link, NBDSNAP_CTL_CBT_READ, &req, sizeof req, -1,
                       out, NBDSNAP_CTL_MSG_MAX, NULL, error) < 0)
      return NULL;
    if (req.start == 0) {
      *number = data->changes_number;
      memcpy (generation, data->generation, 16);
    }
    if (data->count == 0)
      break;
    g_byte_array_append (map, (guint8 *) out + sizeof *data, data->count);
    req.start += data->count;
  }
  return g_steal_pointer (&map);
}
