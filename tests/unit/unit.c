/* nbdsnap unit tests - helpers shared by the test programs. */

#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "unit.h"

int
unit_run (const char *program, CU_SuiteInfo *suites)
{
  unsigned failures, tests_failed, suites_failed, tests_run;

  if (CU_initialize_registry () != CUE_SUCCESS) {
    fprintf (stderr, "%s: CU_initialize_registry: %s\n", program,
             CU_get_error_msg ());
    return 1;
  }
  if (CU_register_suites (suites) != CUE_SUCCESS) {
    fprintf (stderr, "%s: CU_register_suites: %s\n", program,
             CU_get_error_msg ());
    CU_cleanup_registry ();
    return 1;
  }
  CU_basic_set_mode (CU_BRM_VERBOSE);
  CU_basic_run_tests ();
  failures = CU_get_number_of_failures ();
  tests_failed = CU_get_number_of_tests_failed ();
  suites_failed = CU_get_number_of_suites_failed ();
  tests_run = CU_get_number_of_tests_run ();
  CU_cleanup_registry ();
  printf ("\n%s: %u tests run, %u failed, %u assertion failures, "
          "%u suites failed\n", program, tests_run, tests_failed,
          failures, suites_failed);
  return failures || tests_failed || suites_failed || tests_run == 0;
}

const char *
unit_tmpdir (void)
{
  const char *d = getenv ("TMPDIR");

  return d && *d ? d : "/var/tmp";
}

int
unit_temp_file (uint64_t size, char **path)
{
  char *p;
  int fd;

  if (asprintf (&p, "%s/nbdsnap-unit-XXXXXX", unit_tmpdir ()) == -1)
    return -1;
  fd = mkostemp (p, O_CLOEXEC);
  if (fd == -1) {
    free (p);
    return -1;
  }
  if (ftruncate (fd, size) == -1) {
    close (fd);
    unlink (p);
    free (p);
    return -1;
  }
  *path = p;
  return fd;
}

int
unit_tmpfile (void)
{
  int fd = open (unit_tmpdir (), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

  if (fd == -1 && (errno == EOPNOTSUPP || errno == EISDIR)) {
    /* No O_TMPFILE on this filesystem: the same thing by hand. */
    char *p;

    fd = unit_temp_file (0, &p);
    if (fd >= 0) {
      unlink (p);
      free (p);
    }
  }
  return fd;
}

bool
unit_fd_is_closed (int fd)
{
  return fcntl (fd, F_GETFD) == -1 && errno == EBADF;
}

int
unit_fd_count (void)
{
  DIR *d = opendir ("/proc/self/fd");
  struct dirent *e;
  int n = 0;

  if (d == NULL)
    return -1;
  while ((e = readdir (d)) != NULL)
    if (e->d_name[0] != '.')
      n++;
  closedir (d);
  return n - 1;                 /* the directory's own descriptor */
}

void
unit_sleep_ms (unsigned ms)
{
  struct timespec ts = { .tv_sec = ms / 1000,
                         .tv_nsec = (long) (ms % 1000) * 1000000 };

  while (nanosleep (&ts, &ts) == -1 && errno == EINTR)
    ;
}
