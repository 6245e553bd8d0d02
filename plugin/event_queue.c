/* nbdsnap - event queue: events from the data plane to ctl clients.
 * See struct event_queue in event_queue.h.
 */

#include <config.h>

#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common.h"
#include "event_queue.h"

struct event_queue event_queue = {
  .lock = PTHREAD_MUTEX_INITIALIZER,
  .efd = -1,
};

int
event_queue_open (struct event_queue *q, int *err)
{
  SCOPED_LOCK (&q->lock);
  if (q->efd >= 0)
    return 0;
  q->efd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (q->efd == -1) {
    *err = errno;
    return -1;
  }
  return 0;
}

void
event_queue_close (struct event_queue *q)
{
  SCOPED_LOCK (&q->lock);
  if (q->efd >= 0)
    close (q->efd);
  q->efd = -1;
  q->count = 0;
}

void
event_queue_push (struct event_queue *q, const struct nbdsnap_ctl_event *ev)
{
  uint64_t one = 1;

  SCOPED_LOCK (&q->lock);
  if (q->count == EVENT_QUEUE_SIZE) {
    q->head = (q->head + 1) % EVENT_QUEUE_SIZE;
    q->count--;
    q->dropped++;
  }
  q->ring[(q->head + q->count) % EVENT_QUEUE_SIZE] = *ev;
  q->count++;
  if (q->efd >= 0 && write (q->efd, &one, sizeof one) == -1) {
    /* EAGAIN: the counter is already non-zero, the reader will wake. */
  }
}

size_t
event_queue_pop (struct event_queue *q, struct nbdsnap_ctl_event *out,
                 size_t max)
{
  uint64_t v;
  size_t n = 0;

  SCOPED_LOCK (&q->lock);
  if (q->efd >= 0 && read (q->efd, &v, sizeof v) == -1) {
    /* EAGAIN: nothing signalled; still drain what is queued. */
  }
  while (n < max && q->count > 0) {
    out[n++] = q->ring[q->head];
    q->head = (q->head + 1) % EVENT_QUEUE_SIZE;
    q->count--;
  }
  if (q->count > 0 && q->efd >= 0) {
    v = 1;
    if (write (q->efd, &v, sizeof v) == -1) {
      /* cannot fail in a way that matters: counter non-zero */
    }
  }
  return n;
}

void
event_emit (uint32_t code, const uint8_t id[16], int error, uint64_t used,
            uint64_t limit, const char *device)
{
  struct nbdsnap_ctl_event ev;

  memset (&ev, 0, sizeof ev);
  memcpy (ev.id, id, 16);
  ev.code = code;
  ev.error = error;
  ev.used = used;
  ev.limit = limit;
  ev.time_ns = realtime_ns ();
  if (device)
    strncpy (ev.device, device, NBDSNAP_NAME_MAX);
  event_queue_push (&event_queue, &ev);
}
