/* nbdsnap - what nbdsnapd remembers about a snapshot.
 *
 * The plugin holds the snapshot itself; the daemon keeps a record per
 * snapshot for what the plugin does not know: when it was made, its
 * time to live, the events that no WaitEvent() collected yet and the
 * callers waiting for one, and whether it was lost with a dead nbdkit.
 *
 * States: ACTIVE (the plugin has it) -> DESTROYED (a tombstone kept for
 * a minute so that waiters can collect the destroyed event), or ACTIVE
 * -> LOST (nbdkit died; kept until DestroySnapshot or its TTL).  Main
 * thread only.
 */

#ifndef NBDSNAPD_SNAPSHOT_RECORD_H
#define NBDSNAPD_SNAPSHOT_RECORD_H

#include <gio/gio.h>

#define RECORD_EVENTS_MAX 64

enum record_state {
  RECORD_ACTIVE,
  RECORD_LOST,
  RECORD_DESTROYED,
};

/**
 * struct snapshot_record - nbdsnapd's view of one snapshot.
 * @id: UUID string.
 * @state: see above.
 * @devices: device names (NULL-terminated), empty if unknown.
 * @created: g_get_real_time () at create, 0 if unknown (adopted).
 * @expires: real time when the TTL destroys it, 0 for never.
 * @ttl_source: the TTL timer.
 * @forget_source: removes a tombstone.
 * @destroy_reason: why the next destroyed event happens (static string).
 * @taking: a take is in progress.
 * @spare_count: spare storage files appended so far.
 * @spare_pending: a spare append is in progress.
 * @events: GVariant a{sv} events not yet collected, oldest first.
 * @waiters: struct record_waiter, waiting for the next event.
 * @owner: opaque pointer for callbacks (the daemon).
 */
struct snapshot_record {
  char id[37];
  enum record_state state;
  char **devices;
  gint64 created;
  gint64 expires;
  guint ttl_source;
  guint forget_source;
  const char *destroy_reason;
  gboolean taking;
  guint spare_count;
  gboolean spare_pending;
  GQueue events;
  GList *waiters;
  void *owner;
};

/**
 * typedef record_deliver_fn - hand @event (a{sv}) to a waiter, or fail
 * the waiter with @error if @event is NULL.
 */
typedef void record_deliver_fn (GDBusMethodInvocation *inv, GVariant *event,
                                const GError *error);

struct snapshot_record *snapshot_record_new (const char *id,
                                             const char *const *devices,
                                             void *owner);
/* Fails remaining waiters with NotFound. */
void snapshot_record_free (struct snapshot_record *r,
                           record_deliver_fn *deliver);

/* An event: to every waiter, or queued if none waits. */
void snapshot_record_push (struct snapshot_record *r, GVariant *event,
                           record_deliver_fn *deliver);
/* The oldest queued event (transfer full), or NULL. */
GVariant *snapshot_record_pop (struct snapshot_record *r);
/* Wait for an event; @timeout_ms < 0 waits for ever. */
void snapshot_record_wait (struct snapshot_record *r,
                           GDBusMethodInvocation *inv, int timeout_ms,
                           record_deliver_fn *deliver);

/* An event dictionary.  @device, @error_name, @reason may be NULL. */
GVariant *snapshot_event_new (const char *id, const char *event,
                              gint64 time_us, const char *device,
                              const char *error_name, guint64 used,
                              guint64 limit, const char *reason);

const char *record_state_name (enum record_state s);

#endif /* NBDSNAPD_SNAPSHOT_RECORD_H */
