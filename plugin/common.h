/* nbdsnap - small helpers shared by the plugin's objects.
 *
 * nbdkit's own common/ directory is internal to nbdkit, so the few
 * helpers we need (cleanup attributes, scoped locks, checked arithmetic,
 * name validation, clocks) are written here.
 */

#ifndef NBDSNAP_COMMON_H
#define NBDSNAP_COMMON_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if !defined (__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "nbdsnap's ctl and on-disk structs are little-endian; port the codecs first"
#endif

/* Bytes to hold a device name and its NUL. */
#define NBDSNAP_NAME_BUF 65

#define ARRAY_SIZE(a) (sizeof (a) / sizeof ((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define IS_POWER_OF_2(x) ((x) != 0 && ((x) & ((x) - 1)) == 0)
#define DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))

static inline void
cleanup_free_fn (void *ptr)
{
  free (*(void **) ptr);
}
#define CLEANUP_FREE __attribute__ ((cleanup (cleanup_free_fn)))

static inline void
cleanup_unlock_fn (pthread_mutex_t **m)
{
  if (*m)
    pthread_mutex_unlock (*m);
}
#define SCOPED_LOCK_CAT2(a, b) a##b
#define SCOPED_LOCK_CAT(a, b) SCOPED_LOCK_CAT2 (a, b)
/* Lock @m until the end of the enclosing scope. */
#define SCOPED_LOCK(m)                                                   \
  __attribute__ ((cleanup (cleanup_unlock_fn), unused))                  \
  pthread_mutex_t *SCOPED_LOCK_CAT (scoped_lock_, __LINE__) = (m);       \
  pthread_mutex_lock (SCOPED_LOCK_CAT (scoped_lock_, __LINE__))

static inline uint64_t
monotonic_ns (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000u + ts.tv_nsec;
}

static inline uint64_t
realtime_ns (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_REALTIME, &ts);
  return (uint64_t) ts.tv_sec * 1000000000u + ts.tv_nsec;
}

/* A device name: [A-Za-z0-9._-]{1,64}.  @len is the number of bytes of
 * @s to consider (the name may not be NUL-terminated in a message).
 */
static inline bool
name_is_valid (const char *s, size_t len)
{
  size_t i;

  if (len == 0 || len > 64)
    return false;
  for (i = 0; i < len; i++) {
    char c = s[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
      return false;
  }
  return true;
}

/* Full pread/pwrite: loop over short transfers, EINTR.  Reading past
 * the end of a file is an error (EIO), never silently short.
 */
int full_pread (int fd, void *buf, size_t count, uint64_t offset);
int full_pwrite (int fd, const void *buf, size_t count, uint64_t offset);

/* True if the whole buffer is zero. */
bool buffer_is_zero (const void *buf, size_t len);

#endif /* NBDSNAP_COMMON_H */
