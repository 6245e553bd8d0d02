/* nbdsnap - ctl client: the controller's end of include/nbdsnap/ctl.h.
 *
 * Plain libc, blocking.  Used by the test ctl client and by nbdsnapd
 * (from a worker thread).
 */

#ifndef NBDSNAP_CTL_CLIENT_H
#define NBDSNAP_CTL_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <nbdsnap/ctl.h>

#define CTL_CLIENT_EVENTS 64

/**
 * struct ctl_client - a connection to the plugin's control socket.
 * @fd: the SOCK_SEQPACKET socket.
 * @cookie: last cookie used.
 * @events: events that arrived while waiting for replies, oldest first.
 * @nevents: how many.
 * @buf: receive buffer (NBDSNAP_CTL_MSG_MAX bytes).
 */
struct ctl_client {
  int fd;
  uint64_t cookie;
  struct nbdsnap_ctl_event events[CTL_CLIENT_EVENTS];
  unsigned nevents;
  char *buf;
};

/* Connect.  Returns NULL with errno set. */
struct ctl_client *ctl_client_connect (const char *path);
void ctl_client_close (struct ctl_client *c);

/* Send a request (with @fd as SCM_RIGHTS if >= 0) and wait for its
 * reply.  Returns 0 and copies up to @out_max reply body bytes to @out
 * (*out_len = the body length); a positive errno from the plugin with
 * its message in @msg; or -1 with errno set on a transport failure.
 */
int ctl_client_call (struct ctl_client *c, uint16_t opcode,
                     const void *body, size_t len, int fd,
                     void *out, size_t out_max, size_t *out_len,
                     char *msg, size_t msglen);

/* The next event (queued or arriving within @timeout_ms, -1 = forever).
 * Returns 0, or -1 with errno = ETIMEDOUT or a transport error.
 */
int ctl_client_next_event (struct ctl_client *c,
                           struct nbdsnap_ctl_event *ev, int timeout_ms);

/* Send raw bytes (tests of malformed messages) and receive the next
 * reply datagram whole.  Returns its length or -1.
 */
ssize_t ctl_client_raw (struct ctl_client *c, const void *msg, size_t len,
                        const int *fds, size_t nfds, void *reply,
                        size_t reply_max);

const char *ctl_event_name (uint32_t code);

#endif /* NBDSNAP_CTL_CLIENT_H */
