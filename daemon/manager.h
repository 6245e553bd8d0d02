/* nbdsnap - org.nbdsnap.Manager1: the public API object of nbdsnapd.
 *
 * A subclass of the skeleton that gdbus-codegen makes from
 * org.nbdsnap.Manager1.xml.  Each handler checks its arguments in the
 * main thread, runs the blocking part (ctl requests, hooks, storage
 * files) in a worker thread with g_task_run_in_thread, and completes
 * the call back in the main thread, where it also updates the daemon's
 * records.
 */

#ifndef NBDSNAPD_MANAGER_H
#define NBDSNAPD_MANAGER_H

#include "daemon.h"
#include "nbdsnap-generated.h"

#define NBDSNAPD_OBJECT_PATH "/org/nbdsnap/Manager1"
#define NBDSNAPD_BUS_NAME "org.nbdsnap.Manager1"

#define NBDSNAPD_TYPE_MANAGER (nbdsnapd_manager_get_type ())
G_DECLARE_FINAL_TYPE (NbdsnapdManager, nbdsnapd_manager, NBDSNAPD, MANAGER,
                      NbdsnapManager1Skeleton)

NbdsnapdManager *nbdsnapd_manager_new (struct daemon *d);

/* Complete a WaitEvent() call (record_deliver_fn). */
void nbdsnapd_manager_deliver_event (GDBusMethodInvocation *inv,
                                     GVariant *event, const GError *error);

/* Run @fn (worker thread) and then @done (main thread), with no D-Bus
 * call: policy actions such as the TTL.
 */
typedef gboolean (*manager_bg_fn) (struct daemon *d, gpointer data,
                                   GError **error);
typedef void (*manager_bg_done_fn) (struct daemon *d, gpointer data,
                                    const GError *error);
void nbdsnapd_manager_run_background (struct daemon *d, manager_bg_fn fn,
                                      manager_bg_done_fn done, gpointer data,
                                      GDestroyNotify free_data);

#endif /* NBDSNAPD_MANAGER_H */
