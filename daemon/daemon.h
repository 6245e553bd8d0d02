/* nbdsnap - nbdsnapd's core: what the daemon is made of and how its
 * parts meet.
 *
 * Threads: everything in struct daemon belongs to the main thread
 * (GLib main loop) except @cfg and @listeners, which are immutable once
 * started, and @link, which has its own lock.  Worker threads (the
 * GTasks that D-Bus methods start) use only those three and what the
 * method handed them.
 */

#ifndef NBDSNAPD_DAEMON_H
#define NBDSNAPD_DAEMON_H

#include <gio/gio.h>

#include "conf.h"
#include "ctl_link.h"
#include "listener.h"
#include "snapshot_record.h"
#include "supervisor.h"

struct api_server;
typedef struct _NbdsnapdManager NbdsnapdManager;

/**
 * struct daemon - nbdsnapd.
 * @cfg: the configuration.
 * @listeners: struct listener, bound once, handed to every nbdkit.
 * @devices: struct device_spec: the devices to serve, passed to every
 *   nbdkit (the configured ones plus those added through the API).
 * @link: the ctl request connection.
 * @sup: the supervisor of nbdkit.
 * @records: struct snapshot_record, oldest first.
 * @lost: ids of snapshots lost since nbdkit last came up.
 * @manager: the org.nbdsnap.Manager1 object.
 * @api: where it is served.
 * @loop: the main loop.
 * @stopping: shutdown began; methods are refused.
 * @exit_status: what main() returns.
 * @ready_fn: called once when the daemon is ready (or failed to get
 *   there, with @exit_status set), e.g. to release a waiting parent.
 */
struct daemon {
  struct config *cfg;
  GPtrArray *listeners;
  GPtrArray *devices;
  struct ctl_link *link;
  struct supervisor *sup;
  GPtrArray *records;
  GPtrArray *lost;
  NbdsnapdManager *manager;
  struct api_server *api;
  GMainLoop *loop;
  gboolean stopping;
  int exit_status;
  int lock_fd;            /* state-dir/nbdsnapd.lock, flock()ed */
  void (*ready_fn) (struct daemon *d, gboolean ok);
};

/* Takes @cfg. */
struct daemon *daemon_new (struct config *cfg);
void daemon_free (struct daemon *d);

/* Bind the listeners and start nbdkit; the API comes up when nbdkit is
 * ready.  FALSE with @error if that cannot even begin.
 */
gboolean daemon_start (struct daemon *d, GError **error);
/* Clean shutdown: destroy the snapshots, stop nbdkit, quit the loop. */
void daemon_shutdown (struct daemon *d);

/* The export URIs of @export (NULL for the listener alone): originals
 * are on unix listeners only unless allow-original-over-tcp.  Safe in
 * any thread.
 */
char **daemon_export_uris (const struct daemon *d, const char *export,
                           gboolean original);

/* Records. */
struct snapshot_record *daemon_find_record (struct daemon *d,
                                            const char *id);
struct snapshot_record *daemon_add_record (struct daemon *d, const char *id,
                                           const char *const *devices);
void daemon_forget_record (struct daemon *d, struct snapshot_record *r);

/* Device list bookkeeping after AddDevice / RemoveDevice. */
void daemon_device_added (struct daemon *d, const char *name,
                          const char *path);
void daemon_device_removed (struct daemon *d, const char *name);

/* Update the D-Bus properties from the supervisor's state. */
void daemon_update_properties (struct daemon *d);

#endif /* NBDSNAPD_DAEMON_H */
