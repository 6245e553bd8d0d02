/* nbdsnap - cbt store: a device's CBT state across restarts. */

#ifndef NBDSNAP_CBT_STORE_H
#define NBDSNAP_CBT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nbdsnap/cbt-format.h>

struct tracker;

/* Fill a header for @map bytes (block_count of them) with the given
 * fields, computing both checksums.
 */
void cbt_header_fill (struct nbdsnap_cbt_header *h, uint64_t device_size,
                      uint32_t block_size, uint64_t block_count,
                      uint32_t flags, const uint8_t generation[16],
                      uint8_t changes_number, const uint8_t snapshot_id[16],
                      const uint8_t *map);

/* Check a header read from somewhere.  Returns NULL if it is sound
 * (magic, version, header size, header checksum, no unknown flag bits,
 * zero pad, block size and count, changes number), else why not.  The
 * checks that only a state file needs (no SNAPSHOT flag, zero
 * snapshot_id, zero reserved bytes, file size, CLEAN...) are
 * cbt_store_open's.
 */
const char *cbt_header_check (const struct nbdsnap_cbt_header *h);

/* Load STATEDIR/NAME.cbt into the tracker's active map if every check of
 * cbt-format.h holds; otherwise keep the fresh generation the tracker
 * was created with and log why.  Then write the state back marked in
 * use.  Returns 0, or -1 with *err set if the state cannot be written
 * (the statedir is unusable).
 */
int cbt_store_open (const char *statedir, struct tracker *t, int *err);

/* Save the active map atomically (temporary file, fsync, rename, fsync
 * of the directory), CLEAN if @clean.  Call with no writes in flight
 * for a consistent map.  Returns 0 or -1 with *err set.
 */
int cbt_store_save (const char *statedir, struct tracker *t, bool clean,
                    int *err);

#endif /* NBDSNAP_CBT_STORE_H */
