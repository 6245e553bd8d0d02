/* nbdsnap - ctl server: the plugin's end of include/nbdsnap/ctl.h. */

#ifndef NBDSNAP_CTL_SERVER_H
#define NBDSNAP_CTL_SERVER_H

#include <stddef.h>

/* Largest number of ctl clients connected at once. */
#define CTL_CLIENTS_MAX 16

/* Descriptors accepted with one message (more are closed, EBADMSG). */
#define CTL_FDS_MAX 8

/* Create the listening socket at @path (mode 0600).  A stale socket
 * nobody listens on is replaced; a live one or another file is an error.
 * Returns 0 or -1 with *err set and a message in @msg.
 */
int ctl_server_listen (const char *path, char *msg, size_t msglen, int *err);

/* Start and stop the server thread. */
int ctl_server_start (int *err);
void ctl_server_stop (void);

/* Handle one request: @msg and @len are the datagram as received (@len
 * may exceed NBDSNAP_CTL_MSG_MAX, then it is refused), @fds the @nfds
 * descriptors that came with it.  Every descriptor not kept by the
 * request is closed.  Writes the reply into @reply (NBDSNAP_CTL_MSG_MAX
 * bytes) and returns its length.  Takes control_lock.
 */
size_t ctl_dispatch (const void *msg, size_t len, const int *fds,
                     size_t nfds, void *reply);

/* An error reply to @msg (@len bytes) without running it. */
size_t ctl_error_reply (const void *msg, size_t len, int err,
                        const char *text, void *reply);

#endif /* NBDSNAP_CTL_SERVER_H */
