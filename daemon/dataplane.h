/* nbdsnap - blocking operations on the data plane, built from ctl
 * requests: what a D-Bus method or a policy decision needs done.  Call
 * from worker threads only; they touch nothing of struct daemon but the
 * immutable parts (see daemon.h).
 */

#ifndef NBDSNAPD_DATAPLANE_H
#define NBDSNAPD_DATAPLANE_H

#include <glib.h>

#include <nbdsnap/ctl.h>

#include "daemon.h"

/* Every attached device (struct nbdsnap_ctl_device). */
GArray *dp_device_list (struct daemon *d, GError **error);
/* The device specs of @names from @devs; NotFound names the missing. */
GPtrArray *dp_device_specs (GArray *devs, const char *const *names,
                            GError **error);
/* Dictionary of one device, keys as in ListDevices(). */
GVariant *dp_device_dict (struct daemon *d,
                          const struct nbdsnap_ctl_device *dev);

/* SNAPSHOT_INFO; the reply (head and devices) in a new buffer. */
struct nbdsnap_ctl_snapshot_info *dp_snapshot_info (struct daemon *d,
                                                    const guint8 id[16],
                                                    GError **error);
/* Dictionary as in GetSnapshotInfo(). */
GVariant *dp_snapshot_info_dict (struct daemon *d,
                                 const struct nbdsnap_ctl_snapshot_info *info);
GVariant *dp_storage_dict (const struct nbdsnap_ctl_snapshot_info *info);
const char *dp_state_name (guint32 state);
/* Device names of a snapshot (NULL-terminated). */
char **dp_snapshot_devices (const struct nbdsnap_ctl_snapshot_info *info);

/* Ids of every snapshot (16-byte elements). */
GArray *dp_collect (struct daemon *d, GError **error);
gboolean dp_destroy (struct daemon *d, const guint8 id[16], GError **error);

/* Pre-take hook, TAKE, post-take hook.  @specs: the devices.
 *
 * A pre-take hook that fails or times out aborts the take before the
 * quiesce: nothing is asked of the plugin, the snapshot stays created
 * (not taken; a create --take destroys it), the post-take hook still
 * runs with NBDSNAP_TAKE_RESULT=aborted so that it can undo what the
 * pre-take hook did, and @error names the hook and its status (exit
 * status, signal or timeout, and its last line of output).  The
 * post-take hook's own failure is logged only: the take is done.
 */
gboolean dp_take (struct daemon *d, const guint8 id[16], GPtrArray *specs,
                  guint64 *pause_ns, GError **error);

/* A new diff storage at @path (NULL: default directory) appended to
 * snapshot @id with @limit (0: the default).  Returns the INFO head.
 */
gboolean dp_append_storage (struct daemon *d, const guint8 id[16],
                            const char *path, guint64 limit,
                            struct nbdsnap_ctl_snapshot_info *out,
                            GError **error);

/* The whole CBT map of @device: active, or frozen if @snapshot.  Checks
 * that the device is in that taken snapshot.  @cbt gets CBT_INFO.
 */
GByteArray *dp_read_map (struct daemon *d, const char *device,
                         const guint8 *snapshot,
                         struct nbdsnap_ctl_cbt_info *cbt,
                         guint8 *number, guint8 generation[16],
                         GError **error);

void dp_put_name (char *field, size_t size, const char *name);
void dp_uuid_string (const guint8 id[16], char out[37]);

#endif /* NBDSNAPD_DATAPLANE_H */
