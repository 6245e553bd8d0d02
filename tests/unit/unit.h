/* nbdsnap unit tests - helpers shared by the test programs. */

#ifndef NBDSNAP_UNIT_H
#define NBDSNAP_UNIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <CUnit/CUnit.h>

/* Run the suites (a CU_SUITE_INFO_NULL-terminated array) with the basic
 * interface.  Returns the exit status for main: 0 if every test passed,
 * 1 if an assertion, a test or a suite failed.
 */
int unit_run (const char *program, CU_SuiteInfo *suites);

/* The directory temporary files go in: $TMPDIR, else /var/tmp. */
const char *unit_tmpdir (void);

/* A new regular file of @size bytes in unit_tmpdir (), opened
 * read-write; its path (malloc'd) in *path.  Returns the fd or -1.
 */
int unit_temp_file (uint64_t size, char **path);

/* An unnamed O_TMPFILE in unit_tmpdir (), opened read-write: diff
 * storage as the daemon makes it.  Returns the fd or -1.
 */
int unit_tmpfile (void);

/* True if @fd is not an open descriptor (fcntl F_GETFD fails, EBADF). */
bool unit_fd_is_closed (int fd);

/* Number of open descriptors of this process (from /proc/self/fd). */
int unit_fd_count (void);

/* nbdkit_error calls so far (nbdkit-shim.c). */
unsigned unit_error_count (void);

/* A small, fast, deterministic PRNG (xorshift64*), one state per user
 * so that threads do not share it.
 */
static inline uint64_t
unit_rand (uint64_t *state)
{
  uint64_t x = *state;

  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * 0x2545f4914f6cdd1dULL;
}

/* Sleep @ms milliseconds. */
void unit_sleep_ms (unsigned ms);

#endif /* NBDSNAP_UNIT_H */
