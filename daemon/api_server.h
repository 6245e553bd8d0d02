/* nbdsnap - where the API is served: peer-to-peer D-Bus on the API
 * socket (mode 0660, owner root, the configured group), and the system
 * bus if configured.
 *
 * Peers on the socket authenticate with EXTERNAL only; their
 * credentials (GCredentials) must be root, nbdsnapd's own uid, or a
 * member of the socket group (primary or supplementary group of the
 * peer process).  Everyone else is refused during authentication, and
 * the refusal is logged.  On the system bus the bus policy
 * (org.nbdsnap.Manager1.conf) decides.
 */

#ifndef NBDSNAPD_API_SERVER_H
#define NBDSNAPD_API_SERVER_H

#include <sys/types.h>

#include <gio/gio.h>

struct api_server;

struct api_server *api_server_new (GDBusInterfaceSkeleton *skeleton,
                                   const char *path, gid_t gid,
                                   gboolean system_bus, GError **error);
/* Push out pending signals (before shutdown). */
void api_server_flush (struct api_server *a);
/* Stop serving, close the connections, remove the socket. */
void api_server_free (struct api_server *a);

#endif /* NBDSNAPD_API_SERVER_H */
