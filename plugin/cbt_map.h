/* nbdsnap - change block tracking map. */

#ifndef NBDSNAP_CBT_MAP_H
#define NBDSNAP_CBT_MAP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <uuid/uuid.h>

/**
 * struct cbt_map - which tracking blocks of a device changed, and when.
 * @device_size: bytes covered by the map.
 * @block_size: bytes per tracking block, a power of two.
 * @block_shift: log2 (@block_size).
 * @block_count: bytes in each map (one per block).
 * @active: the map that writes to the original mark.
 * @frozen: the copy made at the last take (NULL before the first take).
 * @changes_number: the active number (1..255): what a write records now.
 * @generation: UUID naming the history of @active.
 * @frozen_valid: @frozen holds a take's copy.
 * @frozen_number: the number the snapshot that froze @frozen recorded.
 * @frozen_generation: the generation @frozen belongs to.
 * @lock: serialises cbt_map_switch, cbt_map_reset and readers of the
 *   header fields (number, generations) against each other.
 *
 * Algorithm (blksnap's): each map byte holds the changes number of the
 * last epoch that wrote the block.  A take copies @active to @frozen,
 * gives the snapshot number A (@changes_number) and makes A+1 active;
 * blocks whose byte is greater than N changed since snapshot N of the
 * same generation.  When the number would pass 255 the active map is
 * cleared, a new generation starts and the number restarts at 1; the
 * frozen copy keeps the old generation and its number 255, so the
 * snapshot being taken still carries exact changes, and the next one
 * forces a full backup by its new generation.
 *
 * Marking is lock-free: byte stores of the active number.  The number
 * changes only in cbt_map_switch, which the tracker calls with writes
 * quiesced, so a write never records a number of the wrong epoch.
 *
 * Lifetime: created with the tracker, destroyed with it.
 */
struct cbt_map {
  uint64_t device_size;
  uint32_t block_size;
  unsigned block_shift;
  uint64_t block_count;
  uint8_t *active;
  uint8_t *frozen;
  uint8_t changes_number;       /* atomic */
  uint8_t generation[16];
  bool frozen_valid;
  uint8_t frozen_number;
  uint8_t frozen_generation[16];
  pthread_mutex_t lock;
};

/**
 * struct cbt_map_params - how the tracking block size is chosen.
 * @block_size_min: smallest block size (power of two, >= 512).
 * @block_size_max: largest block size (power of two).
 * @block_count_max: the block size grows from @block_size_min until the
 *   block count is at most this, but never past @block_size_max.
 */
struct cbt_map_params {
  uint32_t block_size_min;
  uint32_t block_size_max;
  uint64_t block_count_max;
};

#define CBT_BLOCK_SIZE_MIN_DEFAULT (64 * 1024)
#define CBT_BLOCK_SIZE_MAX_DEFAULT (64 * 1024 * 1024)
#define CBT_BLOCK_COUNT_MAX_DEFAULT (2 * 1024 * 1024)

/* The block size these parameters give a device of @size bytes. */
uint32_t cbt_map_choose_block_size (const struct cbt_map_params *params,
                                    uint64_t size);

/* Allocate the frozen copy, so that cbt_map_switch (inside the take
 * pause) never allocates.  Returns 0 or -1 with *err set.
 */
int cbt_map_prepare_frozen (struct cbt_map *map, int *err);

struct cbt_map *cbt_map_create (uint64_t size,
                                const struct cbt_map_params *params,
                                int *err);
void cbt_map_destroy (struct cbt_map *map);

/* Mark [offset, offset+length) in the active map with the active number. */
void cbt_map_mark (struct cbt_map *map, uint64_t offset, uint64_t length);

/* Mark the active map as cbt_map_mark does, and the frozen map (if any)
 * with the frozen number: used by writes to an image and by mark-dirty.
 */
void cbt_map_mark_both (struct cbt_map *map, uint64_t offset,
                        uint64_t length);

/* Take: freeze a copy and advance the number (see struct cbt_map).
 * Call with writes quiesced.  Returns the number the snapshot records.
 */
uint8_t cbt_map_switch (struct cbt_map *map);

/* Start a new generation: both maps cleared, number 1, new UUID. */
void cbt_map_reset (struct cbt_map *map);

/* Copy up to @count bytes of a map from block @start into @buf.
 * @frozen selects the frozen map.  Returns bytes copied, or -1 with
 * *err = EINVAL (start past the end) or ENODATA (no frozen map).
 * *number and @generation receive that map's number and generation.
 */
int64_t cbt_map_read (struct cbt_map *map, bool frozen, uint64_t start,
                      uint32_t count, uint8_t *buf, uint8_t *number,
                      uint8_t generation[16], int *err);

/* Replace the active map, number and generation (loading saved state);
 * the frozen map is dropped.  Call before the device is served.
 */
void cbt_map_load (struct cbt_map *map, const uint8_t *bytes,
                   uint8_t number, const uint8_t generation[16]);

/* Copy the whole active map with its number and generation. */
void cbt_map_copy_active (struct cbt_map *map, uint8_t *bytes,
                          uint8_t *number, uint8_t generation[16]);

/* The active number and generation, read consistently. */
void cbt_map_get_active (struct cbt_map *map, uint8_t *number,
                         uint8_t generation[16]);

/* The frozen map's validity, number and generation. */
bool cbt_map_get_frozen (struct cbt_map *map, uint8_t *number,
                         uint8_t generation[16]);

#endif /* NBDSNAP_CBT_MAP_H */
