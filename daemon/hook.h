/* nbdsnap - take hooks: shell commands run around the quiesce.
 *
 * A hook runs as /bin/sh -c COMMAND in a process group of its own, with
 * stdin from /dev/null and its output (stdout and stderr) logged by
 * nbdsnapd.  Its environment is nbdsnapd's plus what the caller adds;
 * for the take hooks (dp_take in dataplane.c):
 *
 *   NBDSNAP_HOOK          pre-take or post-take
 *   NBDSNAP_SNAPSHOT_ID   the snapshot's UUID
 *   NBDSNAP_DEVICES       its device names, separated by spaces
 *   NBDSNAP_DEVICE_PATHS  their paths, in the same order
 *   NBDSNAP_TAKE_RESULT   post-take only: ok, failed (the take failed)
 *                         or aborted (the pre-take hook failed)
 *
 * When the timeout passes, the whole process group is killed (SIGKILL).
 * Blocking: call it from a worker thread.
 */

#ifndef NBDSNAPD_HOOK_H
#define NBDSNAPD_HOOK_H

#include <glib.h>

/* Run @cmd.  TRUE if it exited with status 0 in time; else @error is
 * NBDSNAP_ERROR_HOOK_FAILED or NBDSNAP_ERROR_TIMED_OUT with a message
 * that names @what and ends with the hook's last line of output.
 */
gboolean hook_run (const char *what, const char *cmd, char **env_add,
                   double timeout, GError **error);

#endif /* NBDSNAPD_HOOK_H */
