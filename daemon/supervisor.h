/* nbdsnap - the supervisor: runs nbdkit with the nbdsnap plugin.
 *
 * States: STOPPED -> STARTING (nbdkit spawned, waiting for its control
 * socket) -> RUNNING (both ctl connections up) -> back to STARTING when
 * nbdkit dies (it is spawned again at once; after several quick deaths
 * in a row with a growing delay, at most 5 s), or STOPPING -> STOPPED on
 * shutdown.
 *
 * nbdkit gets the listeners at fds 3.. with LISTEN_FDS / LISTEN_PID
 * (socket activation: the sockets stay bound while nbdkit restarts), its
 * control socket and pid file in the state directory, and one
 * device=NAME:PATH per device the daemon serves, so that originals are
 * back as soon as it accepts connections.  Readiness is a successful
 * VERSION_INFO on the control socket, polled from a worker thread.
 * Events are read on a second ctl connection from the main loop.
 * Everything here runs in the main thread except that poll.
 */

#ifndef NBDSNAPD_SUPERVISOR_H
#define NBDSNAPD_SUPERVISOR_H

#include <sys/types.h>

#include <gio/gio.h>

#include <nbdsnap/ctl.h>

#include "conf.h"
#include "ctl_link.h"

/**
 * struct supervisor_ops - what the supervisor tells its owner.
 * @devices: the devices to pass now (struct device_spec); not kept.
 * @ready: nbdkit is up; @first on the first start.
 * @died: nbdkit died (not during stop); the ctl link is down already.
 * @failed: nbdkit never came up at the first start: give up.
 * @event: an event from the plugin.
 * @stopped: supervisor_stop finished.
 */
struct supervisor_ops {
  GPtrArray *(*devices) (void *opaque);
  void (*ready) (void *opaque, gboolean first);
  void (*died) (void *opaque);
  void (*failed) (void *opaque, const char *why);
  void (*event) (void *opaque, const struct nbdsnap_ctl_event *ev);
  void (*stopped) (void *opaque);
};

enum supervisor_state {
  SUPERVISOR_STOPPED,
  SUPERVISOR_STARTING,
  SUPERVISOR_RUNNING,
  SUPERVISOR_STOPPING,
};

/**
 * struct supervisor - nbdkit and the ctl connections.
 * @cfg: the configuration.
 * @listeners: struct listener, in LISTEN_FDS order.
 * @link: the request connection (shared with worker threads).
 * @ops, @opaque: the owner.
 * @ctl_path, @pid_path: in the state directory.
 * @state: see above.
 * @pid: nbdkit's pid, 0 if none.
 * @keeper: the pid of nbdkit's keeper (our child, nbdkit's parent, in
 *   nbdkit's process group; see spawn() in supervisor.c), 0 if none.
 * @child_watch: the keeper's GSource id.
 * @started_at: monotonic time of the last spawn.
 * @died_at: monotonic time nbdkit last died (0 once it is back up).
 * @last_restart_us: how long the last restart took, from the death to
 *   the restarted nbdkit being ready (originals served again).
 * @ever_ready: nbdkit came up at least once.
 * @restarts: how many times nbdkit was restarted after dying.
 * @quick_deaths: deaths within 2 s of a spawn, in a row.
 * @restart_timer: pending delayed spawn.
 * @ready_cancel: cancels the readiness poll.
 * @events: the event connection; @events_source its fd watch.
 * @plugin_version: from VERSION_INFO.
 * @protocol: the plugin's ctl protocol version.
 * @kill_timer: SIGKILL after a stop timed out.
 */
struct supervisor {
  const struct config *cfg;
  GPtrArray *listeners;
  struct ctl_link *link;
  const struct supervisor_ops *ops;
  void *opaque;
  char *ctl_path;
  char *pid_path;
  enum supervisor_state state;
  pid_t pid;
  pid_t keeper;
  guint child_watch;
  gint64 started_at;
  gint64 died_at;
  gint64 last_restart_us;
  gboolean ever_ready;
  guint restarts;
  guint quick_deaths;
  guint restart_timer;
  GCancellable *ready_cancel;
  struct ctl_client *events;
  guint events_source;
  char plugin_version[33];
  guint protocol;
  guint kill_timer;
};

struct supervisor *supervisor_new (const struct config *cfg,
                                   GPtrArray *listeners,
                                   struct ctl_link *link,
                                   const struct supervisor_ops *ops,
                                   void *opaque);
void supervisor_free (struct supervisor *s);

/* Stop an nbdkit left over from an earlier nbdsnapd (its pid file). */
void supervisor_reap_stale (const struct config *cfg);

gboolean supervisor_start (struct supervisor *s, GError **error);
/* SIGTERM nbdkit (SIGKILL after 10 s); ops->stopped when it is gone. */
void supervisor_stop (struct supervisor *s);

#endif /* NBDSNAPD_SUPERVISOR_H */
