/* nbdsnap - snapshot: a set of devices frozen at one point in time.
 * See struct snapshot in snapshot.h for take and destroy.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include <nbdkit-plugin.h>

#include "common.h"
#include "diff_area.h"
#include "diff_storage.h"
#include "event_queue.h"
#include "registry.h"
#include "snapshot.h"
#include "tracker.h"

static void
low_space (void *opaque, uint64_t used, uint64_t limit)
{
  struct snapshot *s = opaque;

  nbdkit_debug ("snapshot %s: diff storage low: %" PRIu64 " of %" PRIu64
                " bytes used", s->id_str, used, limit);
  event_emit (NBDSNAP_CTL_EVENT_LOW_SPACE, s->id, 0, used, limit, NULL);
}

struct snapshot *
snapshot_create (int fd, uint64_t limit, int *err)
{
  struct snapshot *s;

  if (registry_snapshot_count () >= NBDSNAP_MAX_SNAPSHOTS) {
    *err = E2BIG;
    return NULL;
  }
  s = calloc (1, sizeof *s);
  if (s == NULL) {
    *err = errno;
    return NULL;
  }
  uuid_generate (s->id);
  uuid_unparse_lower (s->id, s->id_str);
  s->state = SNAPSHOT_CREATED;
  s->refcount = 1;
  s->storage = diff_storage_create (fd, limit, engine_params.storage_portion,
                                    engine_params.storage_low_water,
                                    low_space, s, err);
  if (s->storage == NULL) {
    free (s);
    return NULL;
  }
  registry_snapshot_add (s, err); /* cannot fail: room checked above */
  return s;
}

int
snapshot_add_device (struct snapshot *s, struct tracker *t, int *err)
{
  if (snapshot_state (s) != SNAPSHOT_CREATED) {
    *err = EALREADY;
    return -1;
  }
  if (t->snapshot) {
    *err = EBUSY;
    return -1;
  }
  if (s->count >= NBDSNAP_MAX_DEVICES) {
    *err = E2BIG;
    return -1;
  }
  if (diff_storage_on_device (s->storage, t->is_blockdev, t->st_dev,
                              t->st_ino, t->st_rdev)) {
    *err = EXDEV;
    return -1;
  }
  tracker_get (t);
  t->snapshot = s;
  s->devices[s->count++] = t;
  return 0;
}

int
snapshot_take (struct snapshot *s, uint64_t *pause_ns, int *err)
{
  uint64_t t0, t1;
  unsigned i;

  if (snapshot_state (s) != SNAPSHOT_CREATED) {
    *err = EALREADY;
    return -1;
  }
  if (s->count == 0) {
    *err = EINVAL;
    return -1;
  }

  /* Everything that can fail or allocate, before the pause. */
  for (i = 0; i < s->count; i++) {
    struct tracker *t = s->devices[i];
    uint32_t cs = diff_area_choose_chunk_size (t->size,
                                               engine_params.chunk_size,
                                               engine_params.chunk_count_max);
    if (cbt_map_prepare_frozen (t->cbt, err) == -1)
      goto fail_areas;
    s->areas[i] = diff_area_create (t, s, s->storage, cs, err);
    if (s->areas[i] == NULL)
      goto fail_areas;
  }

  t0 = monotonic_ns ();
  for (i = 0; i < s->count; i++)
    quiesce_block (&s->devices[i]->writes);
  for (i = 0; i < s->count; i++) {
    struct tracker *t = s->devices[i];
    cbt_map_switch (t->cbt);
    cbt_map_get_frozen (t->cbt, &s->numbers[i], s->generations[i]);
    __atomic_store_n (&t->diff_area, s->areas[i], __ATOMIC_RELEASE);
  }
  __atomic_store_n (&s->state, SNAPSHOT_TAKEN, __ATOMIC_RELEASE);
  t1 = monotonic_ns ();
  for (i = 0; i < s->count; i++)
    quiesce_unblock (&s->devices[i]->writes);

  s->pause_ns = t1 - t0;
  *pause_ns = s->pause_ns;
  nbdkit_debug ("snapshot %s taken: %u device(s), pause %" PRIu64 " us",
                s->id_str, s->count, s->pause_ns / 1000);
  return 0;

 fail_areas:
  for (i = 0; i < s->count; i++) {
    diff_area_free (s->areas[i]);
    s->areas[i] = NULL;
  }
  return -1;
}

int
snapshot_destroy (struct snapshot *s, int *err)
{
  uint64_t used, limit, allocated;
  unsigned i, nfiles;
  bool taken = snapshot_state (s) == SNAPSHOT_TAKEN;

  __atomic_store_n (&s->state, SNAPSHOT_DESTROYED, __ATOMIC_SEQ_CST);
  registry_snapshot_remove (s);

  if (taken) {
    /* Copy-on-write off: no write may be inside the diff area. */
    for (i = 0; i < s->count; i++) {
      struct tracker *t = s->devices[i];
      quiesce_block (&t->writes);
      __atomic_store_n (&t->diff_area, NULL, __ATOMIC_RELEASE);
      quiesce_unblock (&t->writes);
    }
    /* Image requests in flight finish; later ones get EIO. */
    for (i = 0; i < s->count; i++)
      diff_area_release (s->areas[i]);
  }
  for (i = 0; i < s->count; i++)
    s->devices[i]->snapshot = NULL;

  diff_storage_usage (s->storage, &used, &limit, &allocated, &nfiles);
  diff_storage_put (s->storage);
  s->storage = NULL;
  nbdkit_debug ("snapshot %s destroyed", s->id_str);
  event_emit (NBDSNAP_CTL_EVENT_DESTROYED, s->id, 0, used, limit, NULL);
  snapshot_put (s);
  return 0;
}

int
snapshot_append_storage (struct snapshot *s, int fd, uint64_t limit,
                         int *err)
{
  struct diff_storage_file f;
  uint64_t used, total, allocated;
  unsigned i, nfiles;

  if (snapshot_failed (s)) {
    *err = EALREADY;
    return -1;
  }
  if (diff_storage_check_fd (fd, limit, &f, err) == -1)
    return -1;
  for (i = 0; i < s->count; i++) {
    struct tracker *t = s->devices[i];
    if (diff_storage_file_on_device (&f, t->is_blockdev, t->st_dev,
                                     t->st_ino, t->st_rdev)) {
      *err = EXDEV;
      return -1;
    }
  }
  if (diff_storage_append (s->storage, fd, limit, err) == -1)
    return -1;
  diff_storage_usage (s->storage, &used, &total, &allocated, &nfiles);
  event_emit (NBDSNAP_CTL_EVENT_STORAGE_EXTENDED, s->id, 0, used, total,
              NULL);
  return 0;
}

void
snapshot_destroy_all (void)
{
  int err;

  while (registry_snapshot_count () > 0)
    snapshot_destroy (registry_snapshot_at (0), &err);
}

void
snapshot_get (struct snapshot *s)
{
  __atomic_add_fetch (&s->refcount, 1, __ATOMIC_RELAXED);
}

void
snapshot_put (struct snapshot *s)
{
  unsigned i;

  if (s == NULL || __atomic_sub_fetch (&s->refcount, 1, __ATOMIC_ACQ_REL) > 0)
    return;
  for (i = 0; i < s->count; i++) {
    diff_area_free (s->areas[i]);
    tracker_put (s->devices[i]);
  }
  diff_storage_put (s->storage);
  free (s);
}

struct diff_area *
snapshot_area_of (struct snapshot *s, struct tracker *t)
{
  unsigned i;

  if (snapshot_state (s) != SNAPSHOT_TAKEN)
    return NULL;
  for (i = 0; i < s->count; i++)
    if (s->devices[i] == t)
      return s->areas[i];
  return NULL;
}

uint32_t
snapshot_ctl_state (struct snapshot *s)
{
  if (snapshot_state (s) == SNAPSHOT_CREATED)
    return NBDSNAP_CTL_STATE_CREATED;
  return snapshot_failed (s) ? NBDSNAP_CTL_STATE_CORRUPTED
    : NBDSNAP_CTL_STATE_TAKEN;
}

void
snapshot_corrupt (struct snapshot *s, int err, const char *device)
{
  int expected = 0;
  uint64_t used = 0, limit = 0, allocated;
  unsigned nfiles;

  if (err == 0)
    err = EIO;
  if (!__atomic_compare_exchange_n (&s->error, &expected, err, false,
                                    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
    return;                     /* already corrupted */
  if (s->storage)
    diff_storage_usage (s->storage, &used, &limit, &allocated, &nfiles);
  nbdkit_error ("snapshot %s corrupted: device %s: %s; image I/O fails "
                "from now on, the original is unaffected",
                s->id_str, device, strerror (err));
  event_emit (NBDSNAP_CTL_EVENT_CORRUPTED, s->id, err, used, limit, device);
}
