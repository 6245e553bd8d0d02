/* nbdsnap - nbdsnapd's request connection to the plugin's ctl socket.
 *
 * Worker threads call the plugin through it one request at a time
 * (ctl_client is blocking and not thread-safe); the supervisor brings it
 * up when nbdkit is ready and down when nbdkit dies.  A call made while
 * it is down waits a little for nbdkit to come back, then fails with
 * NBDSNAP_ERROR_DATA_PLANE_DOWN.  Events travel on a second connection
 * (see supervisor.c); the ones that arrive here are dropped.
 */

#ifndef NBDSNAPD_CTL_LINK_H
#define NBDSNAPD_CTL_LINK_H

#include <stddef.h>
#include <stdint.h>

#include <glib.h>

#include <nbdsnap/ctl.h>

#include "ctl_client.h"

/**
 * struct ctl_link - the request connection.
 * @lock: guards @client and @up, and serialises calls.
 * @cond: signalled when the link comes up.
 * @client: the connection, NULL while down.
 * @up: a connection to a ready nbdkit is there.
 * @wait_us: how long a call waits for the link to come up.
 */
struct ctl_link {
  GMutex lock;
  GCond cond;
  struct ctl_client *client;
  gboolean up;
  gint64 wait_us;
};

struct ctl_link *ctl_link_new (void);
void ctl_link_free (struct ctl_link *l);

/* Take @c (connected to a ready nbdkit) as the connection. */
void ctl_link_up (struct ctl_link *l, struct ctl_client *c);
/* Drop the connection. */
void ctl_link_down (struct ctl_link *l);

/* One request.  On a plugin error, @error gets the plugin's message and
 * the code for its errno (and *@perr the errno, if @perr).  Returns the
 * reply body length, or -1.
 */
gssize ctl_link_call (struct ctl_link *l, uint16_t opcode, const void *body,
                      size_t len, int fd, void *out, size_t out_max,
                      int *perr, GError **error);

#endif /* NBDSNAPD_CTL_LINK_H */
