/* nbdsnap - CRC-32C (Castagnoli), the checksum of
 * include/nbdsnap/cbt-format.h: reflected polynomial 0x82f63b78, initial
 * value and final xor 0xffffffff.  Used by the plugin (state files, .cbt
 * exports) and by nbdsnapctl backup (reading .cbt exports).
 */

#ifndef NBDSNAP_CRC32C_H
#define NBDSNAP_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32C of @len bytes, continuing from @crc (start with 0). */
uint32_t crc32c (uint32_t crc, const void *buf, size_t len);

#endif
