/* nbdsnap - what nbdsnapd remembers about a snapshot. */

#include <config.h>

#include <string.h>

#include "error.h"
#include "snapshot_record.h"

/**
 * struct record_waiter - a WaitEvent() in progress.
 * @record: the record waited on.
 * @inv: the call to complete.
 * @timeout_source: fails the call when the timeout passes, or 0.
 * @timeout_ms: for the message.
 * @deliver: how to complete it.
 */
struct record_waiter {
  struct snapshot_record *record;
  GDBusMethodInvocation *inv;
  guint timeout_source;
  int timeout_ms;
  record_deliver_fn *deliver;
};

struct snapshot_record *
snapshot_record_new (const char *id, const char *const *devices,
                     void *owner)
{
  struct snapshot_record *r = g_new0 (struct snapshot_record, 1);
  static const char *const none[] = { NULL };

  g_strlcpy (r->id, id, sizeof r->id);
  r->state = RECORD_ACTIVE;
  r->devices = g_strdupv ((char **) (devices ? devices : none));
  g_queue_init (&r->events);
  r->owner = owner;
  return r;
}

static void
waiter_free (struct record_waiter *w)
{
  if (w->timeout_source)
    g_source_remove (w->timeout_source);
  g_object_unref (w->inv);
  g_free (w);
}

void
snapshot_record_free (struct snapshot_record *r, record_deliver_fn *deliver)
{
  GList *l;

  if (r == NULL)
    return;
  for (l = r->waiters; l; l = l->next) {
    struct record_waiter *w = l->data;
    g_autoptr (GError) e = g_error_new (NBDSNAP_ERROR,
                                        NBDSNAP_ERROR_NOT_FOUND,
                                        "snapshot %s is gone", r->id);
    w->deliver (w->inv, NULL, e);
    waiter_free (w);
  }
  g_list_free (r->waiters);
  if (r->ttl_source)
    g_source_remove (r->ttl_source);
  if (r->forget_source)
    g_source_remove (r->forget_source);
  g_queue_clear_full (&r->events, (GDestroyNotify) g_variant_unref);
  g_strfreev (r->devices);
  g_free (r);
}

void
snapshot_record_push (struct snapshot_record *r, GVariant *event,
                      record_deliver_fn *deliver)
{
  GList *l;

  g_variant_ref_sink (event);
  if (r->waiters) {
    for (l = r->waiters; l; l = l->next) {
      struct record_waiter *w = l->data;
      w->deliver (w->inv, event, NULL);
      waiter_free (w);
    }
    g_list_free (r->waiters);
    r->waiters = NULL;
    g_variant_unref (event);
    return;
  }
  if (g_queue_get_length (&r->events) >= RECORD_EVENTS_MAX)
    g_variant_unref (g_queue_pop_head (&r->events));
  g_queue_push_tail (&r->events, event);
}

GVariant *
snapshot_record_pop (struct snapshot_record *r)
{
  return g_queue_pop_head (&r->events);
}

static gboolean
waiter_timeout (gpointer opaque)
{
  struct record_waiter *w = opaque;
  struct snapshot_record *r = w->record;
  g_autoptr (GError) e = g_error_new (NBDSNAP_ERROR, NBDSNAP_ERROR_TIMED_OUT,
                                      "no event for snapshot %s within %d ms",
                                      r->id, w->timeout_ms);

  w->timeout_source = 0;
  r->waiters = g_list_remove (r->waiters, w);
  w->deliver (w->inv, NULL, e);
  waiter_free (w);
  return G_SOURCE_REMOVE;
}

void
snapshot_record_wait (struct snapshot_record *r, GDBusMethodInvocation *inv,
                      int timeout_ms, record_deliver_fn *deliver)
{
  struct record_waiter *w = g_new0 (struct record_waiter, 1);

  w->record = r;
  w->inv = g_object_ref (inv);
  w->deliver = deliver;
  w->timeout_ms = timeout_ms;
  if (timeout_ms >= 0)
    w->timeout_source = g_timeout_add (timeout_ms, waiter_timeout, w);
  r->waiters = g_list_append (r->waiters, w);
}

GVariant *
snapshot_event_new (const char *id, const char *event, gint64 time_us,
                    const char *device, const char *error_name,
                    guint64 used, guint64 limit, const char *reason)
{
  GVariantBuilder b;

  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&b, "{sv}", "id", g_variant_new_string (id));
  g_variant_builder_add (&b, "{sv}", "event", g_variant_new_string (event));
  g_variant_builder_add (&b, "{sv}", "time", g_variant_new_int64 (time_us));
  g_variant_builder_add (&b, "{sv}", "device",
                         g_variant_new_string (device ? device : ""));
  g_variant_builder_add (&b, "{sv}", "error",
                         g_variant_new_string (error_name ? error_name : ""));
  g_variant_builder_add (&b, "{sv}", "used", g_variant_new_uint64 (used));
  g_variant_builder_add (&b, "{sv}", "limit", g_variant_new_uint64 (limit));
  g_variant_builder_add (&b, "{sv}", "reason",
                         g_variant_new_string (reason ? reason : ""));
  return g_variant_builder_end (&b);
}

const char *
record_state_name (enum record_state s)
{
  switch (s) {
  case RECORD_ACTIVE: return "active";
  case RECORD_LOST: return "lost";
  default: return "destroyed";
  }
}
