/* nbdsnap - the plugin's devices, snapshots and tunables. */

#ifndef NBDSNAP_REGISTRY_H
#define NBDSNAP_REGISTRY_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "cbt_map.h"

struct tracker;
struct snapshot;

/**
 * struct engine_params - tunables, set by the plugin's parameters.
 * @cbt: how CBT block sizes are chosen.
 * @chunk_size: copy-on-write chunk size (power of two).
 * @chunk_count_max: the chunk size doubles for a device until at most
 *   this many chunks cover it.
 * @storage_portion: bytes of diff storage reserved ahead by fallocate.
 * @storage_low_water: a low-space event is emitted when less than this
 *   (or a quarter of the limit, if smaller) is left.
 * @image_readonly: image exports refuse writes.
 * @allow_original_over_tcp: originals may be opened over TCP (else unix
 *   sockets and stdin/stdout only).
 * @statedir: directory of the CBT state files, or NULL (no persistence).
 */
struct engine_params {
  struct cbt_map_params cbt;
  uint32_t chunk_size;
  uint64_t chunk_count_max;
  uint64_t storage_portion;
  uint64_t storage_low_water;
  bool image_readonly;
  bool allow_original_over_tcp;
  const char *statedir;
};

#define CHUNK_SIZE_DEFAULT (64 * 1024)
#define CHUNK_COUNT_MAX_DEFAULT (16 * 1024 * 1024)

extern struct engine_params engine_params;

/* NBD connections open now, on every export (atomic). */
extern unsigned nbd_connections;

/* control_lock serialises every control operation (ctl requests, NBD
 * open and close, list_exports) and guards the two registries below,
 * each tracker's @snapshot and each snapshot's membership.  Never taken
 * on the I/O path.
 */
extern pthread_mutex_t control_lock;

/* Devices.  Call with control_lock held. */
int registry_device_add (struct tracker *t, int *err);
struct tracker *registry_device_find (const char *name);
/* The device opened from the same file or block device as @path, if
 * any (checked before opening, since block devices are opened O_EXCL).
 */
struct tracker *registry_device_find_path (const char *path);
int registry_device_remove (const char *name, int *err);
unsigned registry_device_count (void);
struct tracker *registry_device_at (unsigned i);
/* Drop every device (plugin unload). */
void registry_device_clear (void);

/* Snapshots.  Call with control_lock held. */
int registry_snapshot_add (struct snapshot *s, int *err);
struct snapshot *registry_snapshot_find (const uint8_t id[16]);
void registry_snapshot_remove (struct snapshot *s);
unsigned registry_snapshot_count (void);
struct snapshot *registry_snapshot_at (unsigned i);

#endif /* NBDSNAP_REGISTRY_H */
