/* nbdsnap - ctl client: the controller's end of include/nbdsnap/ctl.h. */

#include <config.h>

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ctl_client.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the ctl structs are little-endian"
#endif

struct ctl_client *
ctl_client_connect (const char *path)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  struct ctl_client *c;

  if (strlen (path) >= sizeof addr.sun_path) {
    errno = ENAMETOOLONG;
    return NULL;
  }
  strcpy (addr.sun_path, path);
  c = calloc (1, sizeof *c);
  if (c == NULL)
    return NULL;
  c->buf = malloc (NBDSNAP_CTL_MSG_MAX);
  if (c->buf == NULL)
    goto fail;
  c->fd = socket (AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (c->fd == -1)
    goto fail;
  if (connect (c->fd, (struct sockaddr *) &addr, sizeof addr) == -1) {
    int e = errno;
    close (c->fd);
    errno = e;
    goto fail;
  }
  return c;

 fail:
  {
    int e = errno;
    free (c->buf);
    free (c);
    errno = e;
  }
  return NULL;
}

void
ctl_client_close (struct ctl_client *c)
{
  if (c == NULL)
    return;
  close (c->fd);
  free (c->buf);
  free (c);
}

static int
send_msg (struct ctl_client *c, const void *msg, size_t len,
          const int *fds, size_t nfds)
{
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE (8 * sizeof (int))];
  } control;
  struct iovec iov = { .iov_base = (void *) msg, .iov_len = len };
  struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

  if (nfds > 8) {
    errno = EINVAL;
    return -1;
  }
  if (nfds > 0) {
    struct cmsghdr *cm;
    memset (&control, 0, sizeof control);
    mh.msg_control = control.buf;
    mh.msg_controllen = CMSG_SPACE (nfds * sizeof (int));
    cm = CMSG_FIRSTHDR (&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN (nfds * sizeof (int));
    memcpy (CMSG_DATA (cm), fds, nfds * sizeof (int));
  }
  if (sendmsg (c->fd, &mh, MSG_NOSIGNAL) == -1)
    return -1;
  return 0;
}

/* Receive one datagram into c->buf within @timeout_ms.  Returns its
 * length, or -1 (ETIMEDOUT, ECONNRESET on close).
 */
static ssize_t
recv_msg (struct ctl_client *c, int timeout_ms)
{
  struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
  ssize_t n;
  int r;

  do
    r = poll (&pfd, 1, timeout_ms);
  while (r == -1 && errno == EINTR);
  if (r == -1)
    return -1;
  if (r == 0) {
    errno = ETIMEDOUT;
    return -1;
  }
  n = recv (c->fd, c->buf, NBDSNAP_CTL_MSG_MAX, 0);
  if (n == 0) {
    errno = ECONNRESET;
    return -1;
  }
  return n;
}

/* If c->buf holds an event, queue it and return true. */
static bool
take_event (struct ctl_client *c, size_t n)
{
  const struct nbdsnap_ctl_header *h = (const void *) c->buf;

  if (n < sizeof *h + sizeof (struct nbdsnap_ctl_event) ||
      !(h->flags & NBDSNAP_CTL_FLAG_EVENT))
    return false;
  if (c->nevents == CTL_CLIENT_EVENTS) {
    memmove (c->events, c->events + 1,
             (CTL_CLIENT_EVENTS - 1) * sizeof c->events[0]);
    c->nevents--;
  }
  memcpy (&c->events[c->nevents++], c->buf + sizeof *h,
          sizeof (struct nbdsnap_ctl_event));
  return true;
}

int
ctl_client_call (struct ctl_client *c, uint16_t opcode, const void *body,
                 size_t len, int fd, void *out, size_t out_max,
                 size_t *out_len, char *msg, size_t msglen)
{
  struct nbdsnap_ctl_header *h;
  const struct nbdsnap_ctl_reply *rep;
  size_t total = sizeof *h + len;
  char *req;
  uint64_t cookie = ++c->cookie;
  ssize_t n;

  if (total > NBDSNAP_CTL_MSG_MAX) {
    errno = EMSGSIZE;
    return -1;
  }
  req = malloc (total);
  if (req == NULL)
    return -1;
  h = (void *) req;
  memset (h, 0, sizeof *h);
  h->magic = NBDSNAP_CTL_MAGIC;
  h->version = NBDSNAP_CTL_VERSION;
  h->opcode = opcode;
  h->length = total;
  h->cookie = cookie;
  if (len)
    memcpy (req + sizeof *h, body, len);
  if (send_msg (c, req, total, &fd, fd >= 0 ? 1 : 0) == -1) {
    free (req);
    return -1;
  }
  free (req);

  for (;;) {
    const struct nbdsnap_ctl_header *rh = (const void *) c->buf;

    n = recv_msg (c, -1);
    if (n == -1)
      return -1;
    if (take_event (c, n))
      continue;
    if ((size_t) n < sizeof *rh + sizeof *rep || rh->cookie != cookie ||
        !(rh->flags & NBDSNAP_CTL_FLAG_REPLY))
      continue;                 /* not ours */
    break;
  }
  rep = (const void *) (c->buf + sizeof *h);
  if (rep->error) {
    if (msg && msglen) {
      size_t m = n - sizeof *h - sizeof *rep;
      if (m >= msglen)
        m = msglen - 1;
      memcpy (msg, c->buf + sizeof *h + sizeof *rep, m);
      msg[m] = '\0';
    }
    return rep->error;
  }
  n -= sizeof *h + sizeof *rep;
  if (out_len)
    *out_len = n;
  if (out)
    memcpy (out, c->buf + sizeof *h + sizeof *rep,
            (size_t) n < out_max ? (size_t) n : out_max);
  return 0;
}

int
ctl_client_next_event (struct ctl_client *c, struct nbdsnap_ctl_event *ev,
                       int timeout_ms)
{
  struct timespec start, now;

  clock_gettime (CLOCK_MONOTONIC, &start);
  for (;;) {
    ssize_t n;
    int left = timeout_ms;

    if (c->nevents > 0) {
      *ev = c->events[0];
      memmove (c->events, c->events + 1, --c->nevents * sizeof c->events[0]);
      return 0;
    }
    if (timeout_ms >= 0) {
      clock_gettime (CLOCK_MONOTONIC, &now);
      left = timeout_ms - ((now.tv_sec - start.tv_sec) * 1000 +
                           (now.tv_nsec - start.tv_nsec) / 1000000);
      if (left < 0)
        left = 0;
    }
    n = recv_msg (c, left);
    if (n == -1)
      return -1;
    take_event (c, n);
  }
}

ssize_t
ctl_client_raw (struct ctl_client *c, const void *msg, size_t len,
                const int *fds, size_t nfds, void *reply, size_t reply_max)
{
  ssize_t n;

  if (send_msg (c, msg, len, fds, nfds) == -1)
    return -1;
  for (;;) {
    n = recv_msg (c, 10000);
    if (n == -1)
      return -1;
    if (!take_event (c, n))
      break;
  }
  memcpy (reply, c->buf, (size_t) n < reply_max ? (size_t) n : reply_max);
  return n;
}

const char *
ctl_event_name (uint32_t code)
{
  switch (code) {
  case NBDSNAP_CTL_EVENT_CORRUPTED: return "corrupted";
  case NBDSNAP_CTL_EVENT_LOW_SPACE: return "low-space";
  case NBDSNAP_CTL_EVENT_STORAGE_EXTENDED: return "storage-extended";
  case NBDSNAP_CTL_EVENT_DESTROYED: return "destroyed";
  default: return "unknown";
  }
}
