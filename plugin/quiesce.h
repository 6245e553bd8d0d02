/* nbdsnap - a gate that can stop new requests and drain those in flight. */

#ifndef NBDSNAP_QUIESCE_H
#define NBDSNAP_QUIESCE_H

#include <pthread.h>
#include <stdbool.h>

/**
 * struct quiesce - counts requests in flight; can block new ones.
 * @inflight: requests between quiesce_enter and quiesce_leave (atomic).
 * @blocked: set while quiesce_block holds the gate (atomic).
 * @closed: set for good by quiesce_close: enter fails from then on.
 * @lock: guards the sleeping on @cond (the counters are atomics).
 * @cond: signalled when @inflight drops to 0 with the gate blocked,
 *   and when the gate opens again.
 *
 * The fast path (gate open) is one atomic increment and one load on
 * enter and one decrement and load on leave: no lock.  Both sides use
 * sequentially consistent atomics (a Dekker pair: the requester
 * increments then reads @blocked, the blocker sets @blocked then reads
 * @inflight), so either the request sees the gate shut or the blocker
 * waits for it.
 *
 * The tracker uses it for the take pause (blocked writers wait); the
 * image for destroy (closed: requests fail, destroy waits for those in
 * flight before the diff area is freed).
 */
struct quiesce {
  unsigned inflight;
  int blocked;
  int closed;
  pthread_mutex_t lock;
  pthread_cond_t cond;
};

void quiesce_init (struct quiesce *q);
void quiesce_destroy (struct quiesce *q);

/* Enter the gate.  If blocked, wait until it opens.  Returns false
 * (without entering) if the gate is closed for good.
 */
bool quiesce_enter (struct quiesce *q);

/* Leave the gate. */
void quiesce_leave (struct quiesce *q);

/* Shut the gate and wait until nothing is in flight. */
void quiesce_block (struct quiesce *q);

/* Open it again. */
void quiesce_unblock (struct quiesce *q);

/* Shut the gate for good and wait until nothing is in flight: every
 * later quiesce_enter returns false.  Waiters blocked by quiesce_block
 * are woken and fail too.
 */
void quiesce_close (struct quiesce *q);

#endif /* NBDSNAP_QUIESCE_H */
