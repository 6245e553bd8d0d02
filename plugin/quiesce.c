/* nbdsnap - a gate that can stop new requests and drain those in flight.
 * See struct quiesce in quiesce.h.
 */

#include <config.h>

#include "common.h"
#include "quiesce.h"

void
quiesce_init (struct quiesce *q)
{
  q->inflight = 0;
  q->blocked = 0;
  q->closed = 0;
  pthread_mutex_init (&q->lock, NULL);
  pthread_cond_init (&q->cond, NULL);
}

void
quiesce_destroy (struct quiesce *q)
{
  pthread_cond_destroy (&q->cond);
  pthread_mutex_destroy (&q->lock);
}

bool
quiesce_enter (struct quiesce *q)
{
  for (;;) {
    __atomic_add_fetch (&q->inflight, 1, __ATOMIC_SEQ_CST);
    if (!__atomic_load_n (&q->blocked, __ATOMIC_SEQ_CST) &&
        !__atomic_load_n (&q->closed, __ATOMIC_SEQ_CST))
      return true;

    /* Slow path: back out, then wait for the gate to open. */
    quiesce_leave (q);
    pthread_mutex_lock (&q->lock);
    while (__atomic_load_n (&q->blocked, __ATOMIC_SEQ_CST) &&
           !__atomic_load_n (&q->closed, __ATOMIC_SEQ_CST))
      pthread_cond_wait (&q->cond, &q->lock);
    pthread_mutex_unlock (&q->lock);
    if (__atomic_load_n (&q->closed, __ATOMIC_SEQ_CST))
      return false;
  }
}

void
quiesce_leave (struct quiesce *q)
{
  if (__atomic_sub_fetch (&q->inflight, 1, __ATOMIC_SEQ_CST) == 0 &&
      (__atomic_load_n (&q->blocked, __ATOMIC_SEQ_CST) ||
       __atomic_load_n (&q->closed, __ATOMIC_SEQ_CST))) {
    pthread_mutex_lock (&q->lock);
    pthread_cond_broadcast (&q->cond);
    pthread_mutex_unlock (&q->lock);
  }
}

static void
drain (struct quiesce *q)
{
  pthread_mutex_lock (&q->lock);
  while (__atomic_load_n (&q->inflight, __ATOMIC_SEQ_CST) > 0)
    pthread_cond_wait (&q->cond, &q->lock);
  pthread_mutex_unlock (&q->lock);
}

void
quiesce_block (struct quiesce *q)
{
  __atomic_store_n (&q->blocked, 1, __ATOMIC_SEQ_CST);
  drain (q);
}

void
quiesce_unblock (struct quiesce *q)
{
  pthread_mutex_lock (&q->lock);
  __atomic_store_n (&q->blocked, 0, __ATOMIC_SEQ_CST);
  pthread_cond_broadcast (&q->cond);
  pthread_mutex_unlock (&q->lock);
}

void
quiesce_close (struct quiesce *q)
{
  pthread_mutex_lock (&q->lock);
  __atomic_store_n (&q->closed, 1, __ATOMIC_SEQ_CST);
  pthread_cond_broadcast (&q->cond);
  pthread_mutex_unlock (&q->lock);
  drain (q);
}
