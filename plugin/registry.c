/* nbdsnap - the plugin's devices, snapshots and tunables.
 *
 * Both registries are small arrays (at most NBDSNAP_MAX_DEVICES and
 * NBDSNAP_MAX_SNAPSHOTS entries) searched linearly under control_lock:
 * they are used when a connection opens and by ctl requests, never per
 * I/O request.
 */

#include <config.h>

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include <nbdsnap/ctl.h>

#include "common.h"
#include "registry.h"
#include "snapshot.h"
#include "tracker.h"

struct engine_params engine_params = {
  .cbt = {
    .block_size_min = CBT_BLOCK_SIZE_MIN_DEFAULT,
    .block_size_max = CBT_BLOCK_SIZE_MAX_DEFAULT,
    .block_count_max = CBT_BLOCK_COUNT_MAX_DEFAULT,
  },
  .chunk_size = CHUNK_SIZE_DEFAULT,
  .chunk_count_max = CHUNK_COUNT_MAX_DEFAULT,
  .storage_portion = 64 * 1024 * 1024,
  .storage_low_water = 128 * 1024 * 1024,
  .image_readonly = false,
  .allow_original_over_tcp = false,
};

pthread_mutex_t control_lock = PTHREAD_MUTEX_INITIALIZER;

unsigned nbd_connections;

static struct tracker *devices[NBDSNAP_MAX_DEVICES];
static unsigned ndevices;
static struct snapshot *snapshots[NBDSNAP_MAX_SNAPSHOTS];
static unsigned nsnapshots;

int
registry_device_add (struct tracker *t, int *err)
{
  unsigned i;

  for (i = 0; i < ndevices; i++) {
    struct tracker *o = devices[i];
    if (strcmp (o->name, t->name) == 0 ||
        (o->is_blockdev == t->is_blockdev &&
         (t->is_blockdev ? o->st_rdev == t->st_rdev
          : (o->st_dev == t->st_dev && o->st_ino == t->st_ino)))) {
      *err = EEXIST;
      return -1;
    }
  }
  if (ndevices >= NBDSNAP_MAX_DEVICES) {
    *err = E2BIG;
    return -1;
  }
  devices[ndevices++] = t;
  return 0;
}

struct tracker *
registry_device_find (const char *name)
{
  unsigned i;

  for (i = 0; i < ndevices; i++)
    if (strcmp (devices[i]->name, name) == 0)
      return devices[i];
  return NULL;
}

struct tracker *
registry_device_find_path (const char *path)
{
  struct stat st;
  unsigned i;

  if (stat (path, &st) == -1)
    return NULL;
  for (i = 0; i < ndevices; i++) {
    struct tracker *t = devices[i];
    if (S_ISBLK (st.st_mode) ? (t->is_blockdev && t->st_rdev == st.st_rdev)
        : (!t->is_blockdev && t->st_dev == st.st_dev &&
           t->st_ino == st.st_ino))
      return t;
  }
  return NULL;
}

int
registry_device_remove (const char *name, int *err)
{
  unsigned i;

  for (i = 0; i < ndevices; i++) {
    struct tracker *t = devices[i];
    if (strcmp (t->name, name) != 0)
      continue;
    if (t->snapshot ||
        __atomic_load_n (&t->connections, __ATOMIC_ACQUIRE) > 0) {
      *err = EBUSY;
      return -1;
    }
    memmove (&devices[i], &devices[i + 1],
             (ndevices - i - 1) * sizeof devices[0]);
    ndevices--;
    tracker_put (t);
    return 0;
  }
  *err = ENOENT;
  return -1;
}

unsigned
registry_device_count (void)
{
  return ndevices;
}

struct tracker *
registry_device_at (unsigned i)
{
  return i < ndevices ? devices[i] : NULL;
}

void
registry_device_clear (void)
{
  while (ndevices > 0)
    tracker_put (devices[--ndevices]);
}

int
registry_snapshot_add (struct snapshot *s, int *err)
{
  if (nsnapshots >= NBDSNAP_MAX_SNAPSHOTS) {
    *err = E2BIG;
    return -1;
  }
  snapshots[nsnapshots++] = s;
  return 0;
}

struct snapshot *
registry_snapshot_find (const uint8_t id[16])
{
  unsigned i;

  for (i = 0; i < nsnapshots; i++)
    if (memcmp (snapshots[i]->id, id, 16) == 0)
      return snapshots[i];
  return NULL;
}

void
registry_snapshot_remove (struct snapshot *s)
{
  unsigned i;

  for (i = 0; i < nsnapshots; i++) {
    if (snapshots[i] == s) {
      memmove (&snapshots[i], &snapshots[i + 1],
               (nsnapshots - i - 1) * sizeof snapshots[0]);
      nsnapshots--;
      return;
    }
  }
}

unsigned
registry_snapshot_count (void)
{
  return nsnapshots;
}

struct snapshot *
registry_snapshot_at (unsigned i)
{
  return i < nsnapshots ? snapshots[i] : NULL;
}
