/* nbdsnap unit tests - the nbdkit functions the engine calls.
 *
 * The engine (plugin/libnbdsnap-engine.la) logs with nbdkit_error and
 * nbdkit_debug, which the nbdkit server provides to a loaded plugin.
 * The unit tests link the engine without nbdkit, so these print to
 * stderr instead.  nbdkit_error also counts its calls, so that a test
 * can check that a failure was reported (unit_error_count).  Like
 * nbdkit's, they preserve errno.
 */

#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include <nbdkit-plugin.h>

#include "unit.h"

static unsigned error_count;

unsigned
unit_error_count (void)
{
  return __atomic_load_n (&error_count, __ATOMIC_SEQ_CST);
}

static void
print (const char *prefix, const char *fmt, va_list args)
{
  int saved = errno;

  flockfile (stderr);
  fputs (prefix, stderr);
  errno = saved;                /* for %m */
  vfprintf (stderr, fmt, args);
  fputc ('\n', stderr);
  funlockfile (stderr);
  errno = saved;
}

void
nbdkit_verror (const char *fmt, va_list args)
{
  __atomic_add_fetch (&error_count, 1, __ATOMIC_SEQ_CST);
  print ("nbdsnap: error: ", fmt, args);
}

void
nbdkit_error (const char *fmt, ...)
{
  va_list args;

  va_start (args, fmt);
  nbdkit_verror (fmt, args);
  va_end (args);
}

void
nbdkit_vdebug (const char *fmt, va_list args)
{
  print ("nbdsnap: debug: ", fmt, args);
}

void
nbdkit_debug (const char *fmt, ...)
{
  va_list args;

  va_start (args, fmt);
  nbdkit_vdebug (fmt, args);
  va_end (args);
}
