/* nbdsnap - event queue: events from the data plane to ctl clients. */

#ifndef NBDSNAP_EVENT_QUEUE_H
#define NBDSNAP_EVENT_QUEUE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <nbdsnap/ctl.h>

#define EVENT_QUEUE_SIZE 256

/**
 * struct event_queue - a bounded FIFO of events, with a wake-up fd.
 * @lock: guards @ring, @head, @count and @dropped.
 * @ring: the events.
 * @head: index of the oldest event.
 * @count: events queued.
 * @dropped: events lost because the queue was full (the oldest go).
 * @efd: eventfd, readable while events are queued (-1 if none was made:
 *   then the queue just fills).
 *
 * Pushing never blocks on anything but @lock, so the I/O path can emit
 * (a corrupted or low-space event) without waiting for a ctl client.
 * The ctl thread polls @efd and sends what it pops to every client.
 */
struct event_queue {
  pthread_mutex_t lock;
  struct nbdsnap_ctl_event ring[EVENT_QUEUE_SIZE];
  unsigned head;
  unsigned count;
  uint64_t dropped;
  int efd;
};

/* The plugin's queue. */
extern struct event_queue event_queue;

/* Create the eventfd.  Returns 0 or -1 with *err set. */
int event_queue_open (struct event_queue *q, int *err);
void event_queue_close (struct event_queue *q);

void event_queue_push (struct event_queue *q,
                       const struct nbdsnap_ctl_event *ev);

/* Pop up to @max events into @out; returns how many. */
size_t event_queue_pop (struct event_queue *q, struct nbdsnap_ctl_event *out,
                        size_t max);

/* Fill and push an event. */
void event_emit (uint32_t code, const uint8_t id[16], int error,
                 uint64_t used, uint64_t limit, const char *device);

#endif /* NBDSNAP_EVENT_QUEUE_H */
