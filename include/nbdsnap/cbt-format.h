/* nbdsnap - the CBT map format: on disk and on the wire.
 *
 * One format serves two purposes:
 *
 *  - the plugin's state file STATEDIR/NAME.cbt, which keeps a device's
 *    active CBT map, generation and changes number across restarts;
 *  - the content of the read-only export NAME@UUID.cbt, the frozen map
 *    of snapshot UUID, which a backup server reads over NBD beside the
 *    image NAME@UUID.
 *
 * Layout: struct nbdsnap_cbt_header, zero bytes up to header_size, then
 * block_count map bytes (byte i: the changes number of the last epoch
 * that wrote tracking block i, 0 if none; block i covers bytes
 * [i * block_size, (i + 1) * block_size) of the device).  All integers
 * are little-endian.  Checksums are CRC-32C (Castagnoli, as in iSCSI and
 * ext4: reflected polynomial 0x82f63b78, initial value and final xor
 * 0xffffffff).
 *
 * A state file is trusted only if every check holds: magic, version,
 * header_size, header_crc32c, a file size of exactly header_size +
 * block_count, map_crc32c, the CLEAN flag (set only by a clean
 * shutdown; while the plugin runs the file on disk has it clear, so a
 * crash leaves it clear), no other flag (neither SNAPSHOT nor an unknown
 * bit), snapshot_id, pad and the reserved bytes all zero, device_size
 * equal to the device's size now, and block_size equal to the one the
 * plugin's parameters choose.
 * Otherwise the plugin logs why and starts a new generation, so that the
 * next backup is a full one.
 *
 * Evolution: fields are only ever added in what is now reserved space
 * (which must be zero), with a new flag saying they are there.
 */

#ifndef NBDSNAP_CBT_FORMAT_H
#define NBDSNAP_CBT_FORMAT_H

#include <stdint.h>

#define NBDSNAP_CBT_MAGIC        "NBDSNCBT"
#define NBDSNAP_CBT_VERSION      1
#define NBDSNAP_CBT_HEADER_SIZE  4096

/* The state was written by a clean shutdown (state files). */
#define NBDSNAP_CBT_FLAG_CLEAN     (1u << 0)
/* The map is a snapshot's frozen map (NAME@UUID.cbt exports). */
#define NBDSNAP_CBT_FLAG_SNAPSHOT  (1u << 1)

/**
 * struct nbdsnap_cbt_header - starts a state file and a .cbt export.
 * @magic: NBDSNAP_CBT_MAGIC, without a NUL.
 * @version: NBDSNAP_CBT_VERSION.
 * @header_size: bytes before the map (NBDSNAP_CBT_HEADER_SIZE).
 * @device_size: bytes of the device the map covers.
 * @block_count: map bytes that follow the header.
 * @block_size: bytes per tracking block, a power of two.
 * @flags: NBDSNAP_CBT_FLAG_*.
 * @generation: UUID of the map's history; a backup may be incremental
 *   only against a backup of the same generation.
 * @changes_number: state file: the active number (what a write records
 *   next).  .cbt export: the snapshot's number; blocks with a byte
 *   greater than the number of an earlier snapshot of the same
 *   generation changed since that snapshot.
 * @pad: zero.
 * @snapshot_id: .cbt export: the snapshot's UUID; state file: zero.
 * @map_crc32c: CRC-32C of the block_count map bytes.
 * @header_crc32c: CRC-32C of this struct with this field zero.
 */
struct nbdsnap_cbt_header {
  uint8_t magic[8];
  uint32_t version;
  uint32_t header_size;
  uint64_t device_size;
  uint64_t block_count;
  uint32_t block_size;
  uint32_t flags;
  uint8_t generation[16];
  uint8_t changes_number;
  uint8_t pad[7];
  uint8_t snapshot_id[16];
  uint32_t map_crc32c;
  uint32_t header_crc32c;
};
_Static_assert (sizeof (struct nbdsnap_cbt_header) == 88, "cbt header size");

#endif /* NBDSNAP_CBT_FORMAT_H */
