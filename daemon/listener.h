/* nbdsnap - the NBD listeners that nbdsnapd binds and hands to nbdkit
 * by socket activation (LISTEN_FDS), so that they outlive nbdkit:
 * clients that connect while nbdkit restarts wait in the backlog.
 */

#ifndef NBDSNAPD_LISTENER_H
#define NBDSNAPD_LISTENER_H

#include <sys/types.h>

#include <glib.h>

#include "conf.h"

/**
 * struct listener - one bound, listening socket.
 * @type: unix or tcp.
 * @fd: the socket (close-on-exec; nbdkit gets a copy at 3, 4, ...).
 * @path: socket path (unix).
 * @host: host as given (tcp); @port: the bound port (the real one when 0
 *   was asked for).
 * @uri_host: the host to put in URIs (the machine's name for a wildcard
 *   address, brackets around IPv6 addresses).
 */
struct listener {
  enum listen_type type;
  int fd;
  char *path;
  char *host;
  guint16 port;
  char *uri_host;
};

/* Bind @spec.  Unix sockets get mode 0660 and group @gid if it is not
 * (gid_t) -1; a stale socket file is replaced, a live one is an error.
 */
struct listener *listener_bind (const struct listen_spec *spec, gid_t gid,
                                GError **error);
/* Close and unlink the socket file. */
void listener_free (struct listener *l);

/* The NBD URI of @export on @l ("" for none: the listener alone). */
char *listener_uri (const struct listener *l, const char *export,
                    enum tls_mode tls);

/* "unix:PATH" or "tcp:HOST:PORT" */
char *listener_address (const struct listener *l);

#endif /* NBDSNAPD_LISTENER_H */
