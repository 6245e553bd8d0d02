/* nbdsnap - where the API is served. */

#include <config.h>

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "api_server.h"
#include "error.h"
#include "manager.h"

/**
 * struct api_server - the API's endpoints.
 * @skeleton: the exported object.
 * @server: the peer-to-peer server on @path.
 * @observer: checks peers.
 * @gid: the allowed group, (gid_t) -1 for none.
 * @connections: live peer connections.
 * @owner_id: the system bus name, 0 if not used.
 */
struct api_server {
  GDBusInterfaceSkeleton *skeleton;
  GDBusServer *server;
  GDBusAuthObserver *observer;
  char *path;
  gid_t gid;
  GPtrArray *connections;
  guint owner_id;
  GDBusConnection *bus;
};

/* Is @gid among the groups of process @pid? */
static gboolean
pid_in_group (pid_t pid, gid_t gid)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/status", (int) pid);
  g_autofree char *text = NULL;
  g_auto (GStrv) lines = NULL;
  size_t i;

  if (!g_file_get_contents (path, &text, NULL, NULL))
    return FALSE;
  lines = g_strsplit (text, "\n", -1);
  for (i = 0; lines[i]; i++) {
    g_auto (GStrv) words = NULL;
    size_t j;

    if (!g_str_has_prefix (lines[i], "Groups:"))
      continue;
    words = g_strsplit_set (lines[i] + 7, " \t", -1);
    for (j = 0; words[j]; j++)
      if (words[j][0] && (gid_t) g_ascii_strtoull (words[j], NULL, 10) == gid)
        return TRUE;
  }
  return FALSE;
}

static gboolean
allow_mechanism (GDBusAuthObserver *observer, const char *mechanism,
                 gpointer opaque)
{
  return g_strcmp0 (mechanism, "EXTERNAL") == 0;
}

static gboolean
authorize_peer (GDBusAuthObserver *observer, GIOStream *stream,
                GCredentials *creds, gpointer opaque)
{
  struct api_server *a = opaque;
  const struct ucred *uc;
  uid_t uid;

  if (creds == NULL) {
    g_warning ("API: refused a client without credentials");
    return FALSE;
  }
  uc = g_credentials_get_native (creds, G_CREDENTIALS_TYPE_LINUX_UCRED);
  if (uc == NULL) {
    g_warning ("API: refused a client: no unix credentials");
    return FALSE;
  }
  uid = uc->uid;
  if (uid == 0 || uid == geteuid ())
    return TRUE;
  if (a->gid != (gid_t) -1 &&
      (uc->gid == a->gid || pid_in_group (uc->pid, a->gid)))
    return TRUE;
  g_warning ("API: refused a client with uid %u (pid %d): only root%s may "
             "use nbdsnapd", (unsigned) uid, (int) uc->pid,
             a->gid != (gid_t) -1 ? " and the socket group" : "");
  return FALSE;
}

static void
connection_closed (GDBusConnection *conn, gboolean remote, GError *error,
                   gpointer opaque)
{
  struct api_server *a = opaque;

  g_dbus_interface_skeleton_unexport_from_connection (a->skeleton, conn);
  g_ptr_array_remove (a->connections, conn);
}

static gboolean
new_connection (GDBusServer *server, GDBusConnection *conn, gpointer opaque)
{
  struct api_server *a = opaque;
  g_autoptr (GError) error = NULL;

  if (!g_dbus_interface_skeleton_export (a->skeleton, conn,
                                         NBDSNAPD_OBJECT_PATH, &error)) {
    g_warning ("API: cannot export the manager: %s", error->message);
    return FALSE;
  }
  g_ptr_array_add (a->connections, g_object_ref (conn));
  g_signal_connect (conn, "closed", G_CALLBACK (connection_closed), a);
  return TRUE;
}

static void
bus_acquired (GDBusConnection *conn, const char *name, gpointer opaque)
{
  struct api_server *a = opaque;
  g_autoptr (GError) error = NULL;

  a->bus = g_object_ref (conn);
  if (!g_dbus_interface_skeleton_export (a->skeleton, conn,
                                         NBDSNAPD_OBJECT_PATH, &error))
    g_warning ("system bus: cannot export the manager: %s", error->message);
}

static void
name_acquired (GDBusConnection *conn, const char *name, gpointer opaque)
{
  g_message ("system bus: serving %s", name);
}

static void
name_lost (GDBusConnection *conn, const char *name, gpointer opaque)
{
  g_warning ("system bus: %s %s", conn ? "lost the name" :
             "cannot connect; not serving", name);
}

/* Remove a stale socket; refuse if another nbdsnapd listens there. */
static gboolean
clear_socket (const char *path, GError **error)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  struct stat st;
  int fd;

  if (lstat (path, &st) == -1)
    return TRUE;
  if (!S_ISSOCK (st.st_mode)) {
    g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_EXISTS,
                 "socket %s: exists and is not a socket", path);
    return FALSE;
  }
  g_strlcpy (addr.sun_path, path, sizeof addr.sun_path);
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 && connect (fd, (struct sockaddr *) &addr, sizeof addr) == 0) {
    close (fd);
    g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_BUSY,
                 "socket %s: another nbdsnapd is running", path);
    return FALSE;
  }
  if (fd >= 0)
    close (fd);
  unlink (path);
  return TRUE;
}

struct api_server *
api_server_new (GDBusInterfaceSkeleton *skeleton, const char *path,
                gid_t gid, gboolean system_bus, GError **error)
{
  struct api_server *a = g_new0 (struct api_server, 1);
  g_autofree char *escaped = NULL, *address = NULL, *guid = NULL;
  g_autofree char *dir = g_path_get_dirname (path);
  mode_t old;

  a->skeleton = g_object_ref (skeleton);
  a->path = g_strdup (path);
  a->gid = gid;
  a->connections = g_ptr_array_new_with_free_func (g_object_unref);

  if (g_mkdir_with_parents (dir, 0755) == -1) {
    g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_FAILED,
                 "socket %s: cannot make %s: %s", path, dir,
                 g_strerror (errno));
    goto fail;
  }
  if (!clear_socket (path, error))
    goto fail;
  escaped = g_dbus_address_escape_value (path);
  address = g_strdup_printf ("unix:path=%s", escaped);
  guid = g_dbus_generate_guid ();
  a->observer = g_dbus_auth_observer_new ();
  g_signal_connect (a->observer, "allow-mechanism",
                    G_CALLBACK (allow_mechanism), a);
  g_signal_connect (a->observer, "authorize-authenticated-peer",
                    G_CALLBACK (authorize_peer), a);
  old = umask (0117);
  a->server = g_dbus_server_new_sync (address, G_DBUS_SERVER_FLAGS_NONE,
                                      guid, a->observer, NULL, error);
  umask (old);
  if (a->server == NULL) {
    g_prefix_error (error, "socket %s: ", path);
    goto fail;
  }
  if (gid != (gid_t) -1 && chown (path, geteuid (), gid) == -1)
    g_warning ("socket %s: cannot give it to group %u: %s", path,
               (unsigned) gid, g_strerror (errno));
  if (chmod (path, 0660) == -1)
    g_warning ("socket %s: chmod: %s", path, g_strerror (errno));
  g_signal_connect (a->server, "new-connection", G_CALLBACK (new_connection),
                    a);
  g_dbus_server_start (a->server);
  g_message ("API: serving on %s", path);

  if (system_bus)
    a->owner_id = g_bus_own_name (G_BUS_TYPE_SYSTEM, NBDSNAPD_BUS_NAME,
                                  G_BUS_NAME_OWNER_FLAGS_NONE, bus_acquired,
                                  name_acquired, name_lost, a, NULL);
  return a;

 fail:
  api_server_free (a);
  return NULL;
}

void
api_server_flush (struct api_server *a)
{
  guint i;

  if (a == NULL)
    return;
  for (i = 0; i < a->connections->len; i++)
    g_dbus_connection_flush_sync (g_ptr_array_index (a->connections, i),
                                  NULL, NULL);
  if (a->bus)
    g_dbus_connection_flush_sync (a->bus, NULL, NULL);
}

void
api_server_free (struct api_server *a)
{
  if (a == NULL)
    return;
  if (a->owner_id)
    g_bus_unown_name (a->owner_id);
  if (a->server) {
    g_dbus_server_stop (a->server);
    unlink (a->path);
    g_object_unref (a->server);
  }
  while (a->connections->len > 0) {
    GDBusConnection *c = g_ptr_array_index (a->connections, 0);
    g_signal_handlers_disconnect_by_data (c, a);
    g_dbus_interface_skeleton_unexport_from_connection (a->skeleton, c);
    g_dbus_connection_close_sync (c, NULL, NULL);
    g_ptr_array_remove_index (a->connections, 0);
  }
  g_ptr_array_unref (a->connections);
  if (a->bus) {
    g_dbus_interface_skeleton_unexport_from_connection (a->skeleton, a->bus);
    g_object_unref (a->bus);
  }
  g_clear_object (&a->observer);
  g_object_unref (a->skeleton);
  g_free (a->path);
  g_free (a);
}
