/* nbdsnap - change block tracking map.
 *
 * See struct cbt_map in cbt_map.h for the algorithm.  Marking runs on
 * every write to a device, so it is a few byte stores with no lock; the
 * byte is stored only if it differs, so rewriting a hot block does not
 * dirty the map's cache line again and again.
 */

#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "cbt_map.h"

uint32_t
cbt_map_choose_block_size (const struct cbt_map_params *params, uint64_t size)
{
  uint64_t bs = params->block_size_min;

  while (DIV_ROUND_UP (size, bs) > params->block_count_max &&
         bs < params->block_size_max)
    bs <<= 1;
  return (uint32_t) bs;
}

struct cbt_map *
cbt_map_create (uint64_t size, const struct cbt_map_params *params, int *err)
{
  struct cbt_map *map;

  map = calloc (1, sizeof *map);
  if (map == NULL) {
    *err = errno;
    return NULL;
  }
  map->device_size = size;
  map->block_size = cbt_map_choose_block_size (params, size);
  map->block_shift = __builtin_ctz (map->block_size);
  map->block_count = DIV_ROUND_UP (size, map->block_size);
  if (map->block_count == 0)
    map->block_count = 1;       /* an empty device still has a map */
  map->active = calloc (map->block_count, 1);
  if (map->active == NULL) {
    *err = errno;
    free (map);
    return NULL;
  }
  map->changes_number = 1;
  uuid_generate (map->generation);
  pthread_mutex_init (&map->lock, NULL);
  return map;
}

int
cbt_map_prepare_frozen (struct cbt_map *map, int *err)
{
  uint8_t *p;

  SCOPED_LOCK (&map->lock);
  if (map->frozen)
    return 0;
  p = calloc (map->block_count, 1);
  if (p == NULL) {
    *err = errno;
    return -1;
  }
  map->frozen = p;
  return 0;
}

void
cbt_map_destroy (struct cbt_map *map)
{
  if (map == NULL)
    return;
  pthread_mutex_destroy (&map->lock);
  free (map->active);
  free (map->frozen);
  free (map);
}

static void
mark_range (uint8_t *bytes, uint64_t first, uint64_t last, uint8_t number)
{
  uint64_t b;

  for (b = first; b <= last; b++) {
    if (__atomic_load_n (&bytes[b], __ATOMIC_RELAXED) != number)
      __atomic_store_n (&bytes[b], number, __ATOMIC_RELAXED);
  }
}

/* The blocks [*first, *last] touching [offset, offset+length), clamped
 * to the map.  False if the range is empty.
 */
static bool
block_range (const struct cbt_map *map, uint64_t offset, uint64_t length,
             uint64_t *first, uint64_t *last)
{
  uint64_t end;

  if (length == 0 || offset >= map->device_size)
    return false;
  end = offset + length;
  if (end > map->device_size || end < offset)
    end = map->device_size;
  *first = offset >> map->block_shift;
  *last = (end - 1) >> map->block_shift;
  return true;
}

void
cbt_map_mark (struct cbt_map *map, uint64_t offset, uint64_t length)
{
  uint64_t first, last;

  if (block_range (map, offset, length, &first, &last))
    mark_range (map->active, first, last,
                __atomic_load_n (&map->changes_number, __ATOMIC_ACQUIRE));
}

void
cbt_map_mark_both (struct cbt_map *map, uint64_t offset, uint64_t length)
{
  uint64_t first, last;

  if (!block_range (map, offset, length, &first, &last))
    return;
  mark_range (map->active, first, last,
              __atomic_load_n (&map->changes_number, __ATOMIC_ACQUIRE));

  SCOPED_LOCK (&map->lock);
  if (map->frozen_valid)
    mark_range (map->frozen, first, last, map->frozen_number);
}

uint8_t
cbt_map_switch (struct cbt_map *map)
{
  uint8_t number;

  SCOPED_LOCK (&map->lock);
  number = map->changes_number;
  if (map->frozen)
    memcpy (map->frozen, map->active, map->block_count);
  map->frozen_valid = map->frozen != NULL;
  map->frozen_number = number;
  memcpy (map->frozen_generation, map->generation, 16);

  if (number == 255) {
    memset (map->active, 0, map->block_count);
    uuid_generate (map->generation);
    __atomic_store_n (&map->changes_number, 1, __ATOMIC_RELEASE);
  }
  else
    __atomic_store_n (&map->changes_number, number + 1, __ATOMIC_RELEASE);
  return number;
}

void
cbt_map_reset (struct cbt_map *map)
{
  SCOPED_LOCK (&map->lock);
  memset (map->active, 0, map->block_count);
  if (map->frozen)
    memset (map->frozen, 0, map->block_count);
  map->frozen_valid = false;
  map->frozen_number = 0;
  uuid_generate (map->generation);
  __atomic_store_n (&map->changes_number, 1, __ATOMIC_RELEASE);
}

int64_t
cbt_map_read (struct cbt_map *map, bool frozen, uint64_t start,
              uint32_t count, uint8_t *buf, uint8_t *number,
              uint8_t generation[16], int *err)
{
  uint64_t n;

  SCOPED_LOCK (&map->lock);
  if (frozen && !map->frozen_valid) {
    *err = ENODATA;
    return -1;
  }
  if (start >= map->block_count) {
    *err = EINVAL;
    return -1;
  }
  n = MIN ((uint64_t) count, map->block_count - start);
  memcpy (buf, (frozen ? map->frozen : map->active) + start, n);
  if (frozen) {
    *number = map->frozen_number;
    memcpy (generation, map->frozen_generation, 16);
  }
  else {
    *number = map->changes_number;
    memcpy (generation, map->generation, 16);
  }
  return (int64_t) n;
}

void
cbt_map_get_active (struct cbt_map *map, uint8_t *number,
                    uint8_t generation[16])
{
  SCOPED_LOCK (&map->lock);
  *number = map->changes_number;
  memcpy (generation, map->generation, 16);
}

bool
cbt_map_get_frozen (struct cbt_map *map, uint8_t *number,
                    uint8_t generation[16])
{
  SCOPED_LOCK (&map->lock);
  *number = map->frozen_number;
  memcpy (generation, map->frozen_generation, 16);
  return map->frozen_valid;
}

void
cbt_map_load (struct cbt_map *map, const uint8_t *bytes, uint8_t number,
              const uint8_t generation[16])
{
  SCOPED_LOCK (&map->lock);
  memcpy (map->active, bytes, map->block_count);
  memcpy (map->generation, generation, 16);
  map->frozen_valid = false;
  __atomic_store_n (&map->changes_number, number, __ATOMIC_RELEASE);
}

void
cbt_map_copy_active (struct cbt_map *map, uint8_t *bytes, uint8_t *number,
                     uint8_t generation[16])
{
  SCOPED_LOCK (&map->lock);
  memcpy (bytes, map->active, map->block_count);
  *number = map->changes_number;
  memcpy (generation, map->generation, 16);
}
