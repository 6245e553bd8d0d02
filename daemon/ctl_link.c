/* nbdsnap - nbdsnapd's request connection to the plugin. */

#include <config.h>

#include <errno.h>

#include "ctl_link.h"
#include "error.h"

struct ctl_link *
ctl_link_new (void)
{
  struct ctl_link *l = g_new0 (struct ctl_link, 1);

  g_mutex_init (&l->lock);
  g_cond_init (&l->cond);
  l->wait_us = 5 * G_USEC_PER_SEC;
  return l;
}

void
ctl_link_free (struct ctl_link *l)
{
  if (l == NULL)
    return;
  ctl_link_down (l);
  g_mutex_clear (&l->lock);
  g_cond_clear (&l->cond);
  g_free (l);
}

void
ctl_link_up (struct ctl_link *l, struct ctl_client *c)
{
  g_mutex_lock (&l->lock);
  ctl_client_close (l->client);
  l->client = c;
  l->up = TRUE;
  g_cond_broadcast (&l->cond);
  g_mutex_unlock (&l->lock);
}

void
ctl_link_down (struct ctl_link *l)
{
  g_mutex_lock (&l->lock);
  ctl_client_close (l->client);
  l->client = NULL;
  l->up = FALSE;
  g_mutex_unlock (&l->lock);
}

gssize
ctl_link_call (struct ctl_link *l, uint16_t opcode, const void *body,
               size_t len, int fd, void *out, size_t out_max, int *perr,
               GError **error)
{
  char msg[NBDSNAP_CTL_ERRMSG_MAX + 1];
  gint64 deadline;
  size_t n = 0;
  int r, e;

  if (perr)
    *perr = 0;
  g_mutex_lock (&l->lock);
  deadline = g_get_monotonic_time () + l->wait_us;
  while (!l->up) {
    if (!g_cond_wait_until (&l->cond, &l->lock, deadline)) {
      g_mutex_unlock (&l->lock);
      g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_DATA_PLANE_DOWN,
                   "the data plane (nbdkit) is not running");
      return -1;
    }
  }
  msg[0] = '\0';
  r = ctl_client_call (l->client, opcode, body, len, fd, out, out_max, &n,
                       msg, sizeof msg);
  e = errno;
  g_mutex_unlock (&l->lock);

  if (r == -1) {
    g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_DATA_PLANE_DOWN,
                 "lost the connection to the data plane (nbdkit): %s",
                 g_strerror (e));
    return -1;
  }
  if (r > 0) {
    if (perr)
      *perr = r;
    g_set_error (error, NBDSNAP_ERROR, nbdsnap_error_from_errno (r), "%s",
                 msg[0] ? msg : g_strerror (r));
    return -1;
  }
  return n;
}
