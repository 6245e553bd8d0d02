/* nbdsnap - helpers shared by the plugin's objects. */

#include <config.h>

#include <errno.h>
#include <unistd.h>

#include "common.h"

int
full_pread (int fd, void *buf, size_t count, uint64_t offset)
{
  char *p = buf;

  while (count > 0) {
    ssize_t r = pread (fd, p, count, offset);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    if (r == 0) {
      errno = EIO;              /* unexpected end of file */
      return -1;
    }
    p += r;
    count -= r;
    offset += r;
  }
  return 0;
}

int
full_pwrite (int fd, const void *buf, size_t count, uint64_t offset)
{
  const char *p = buf;

  while (count > 0) {
    ssize_t r = pwrite (fd, p, count, offset);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    p += r;
    count -= r;
    offset += r;
  }
  return 0;
}

bool
buffer_is_zero (const void *buf, size_t len)
{
  const unsigned char *p = buf;
  size_t i;

  /* Check the first 16 bytes byte by byte, then compare the buffer
   * with itself shifted by 16: memcmp is vectorised and this touches
   * each cache line at most twice.
   */
  for (i = 0; i < 16 && i < len; i++)
    if (p[i])
      return false;
  if (len <= 16)
    return true;
  return memcmp (p, p + 16, len - 16) == 0;
}
