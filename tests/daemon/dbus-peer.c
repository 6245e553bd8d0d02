/* dbus-peer - a D-Bus client of nbdsnapd's API socket, peer-to-peer
 * (no message bus), for the tests.  gdbus(1) cannot do this: its
 * --address connections expect a bus.
 *
 * dbus-peer monitor ADDRESS
 *   Subscribes to every signal of org.nbdsnap.Manager1, prints "ready"
 *   once subscribed (after a round trip to the daemon), then one line
 *   per signal: "NAME ARGS" (ARGS as g_variant_print() prints the
 *   tuple), flushed at once.  When the daemon closes the connection it
 *   prints "closed" and exits 0.
 *
 * dbus-peer call ADDRESS METHOD ARGS
 *   Calls org.nbdsnap.Manager1.METHOD with ARGS, a GVariant tuple in
 *   text form (e.g. "('disk0', @a{sv} {})").  Prints the reply tuple
 *   and exits 0, or prints "ERROR-NAME: MESSAGE" on stderr and exits 1.
 *
 * ADDRESS is a D-Bus address, e.g. unix:path=/run/nbdsnap/nbdsnapd.sock.
 * Exit 2 on usage errors, 1 if the connection fails.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gio/gio.h>

#define OBJECT_PATH "/org/nbdsnap/Manager1"
#define INTERFACE "org.nbdsnap.Manager1"

static GMainLoop *loop;

static GDBusConnection *
connect_peer (const char *address)
{
  g_autoptr (GError) error = NULL;
  GDBusConnection *conn;

  conn = g_dbus_connection_new_for_address_sync
    (address, G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT, NULL, NULL,
     &error);
  if (conn == NULL) {
    fprintf (stderr, "dbus-peer: %s: %s\n", address, error->message);
    exit (1);
  }
  return conn;
}

static void
on_signal (GDBusConnection *conn, const char *sender, const char *path,
           const char *iface, const char *name, GVariant *params,
           gpointer opaque)
{
  g_autofree char *args = g_variant_print (params, FALSE);

  printf ("%s %s\n", name, args);
  fflush (stdout);
}

static void
on_closed (GDBusConnection *conn, gboolean remote, GError *error,
           gpointer opaque)
{
  printf ("closed\n");
  fflush (stdout);
  g_main_loop_quit (loop);
}

static int
monitor (const char *address)
{
  g_autoptr (GDBusConnection) conn = connect_peer (address);
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = NULL;
  guint sub;

  /* A connection the daemon closes must not end the process. */
  g_dbus_connection_set_exit_on_close (conn, FALSE);
  g_signal_connect (conn, "closed", G_CALLBACK (on_closed), NULL);
  sub = g_dbus_connection_signal_subscribe (conn, NULL, INTERFACE, NULL,
                                            OBJECT_PATH, NULL,
                                            G_DBUS_SIGNAL_FLAGS_NONE,
                                            on_signal, NULL, NULL);
  /* The daemon has our connection once it answers a call. */
  reply = g_dbus_connection_call_sync (conn, NULL, OBJECT_PATH, INTERFACE,
                                       "Version",
                                       g_variant_new_parsed ("(@a{sv} {},)"),
                                       NULL, G_DBUS_CALL_FLAGS_NONE, -1, NULL,
                                       &error);
  if (reply == NULL) {
    fprintf (stderr, "dbus-peer: Version: %s\n", error->message);
    return 1;
  }
  printf ("ready\n");
  fflush (stdout);

  loop = g_main_loop_new (NULL, FALSE);
  g_main_loop_run (loop);
  g_main_loop_unref (loop);
  g_dbus_connection_signal_unsubscribe (conn, sub);
  return 0;
}

static int
call (const char *address, const char *method, const char *text)
{
  g_autoptr (GDBusConnection) conn = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) args = NULL, reply = NULL;
  g_autofree char *out = NULL, *remote = NULL;

  args = g_variant_parse (NULL, text, NULL, NULL, &error);
  if (args == NULL || !g_variant_is_of_type (args, G_VARIANT_TYPE_TUPLE)) {
    fprintf (stderr, "dbus-peer: '%s': expected a GVariant tuple%s%s\n", text,
             error ? ": " : "", error ? error->message : "");
    return 2;
  }
  conn = connect_peer (address);
  reply = g_dbus_connection_call_sync (conn, NULL, OBJECT_PATH, INTERFACE,
                                       method, args, NULL,
                                       G_DBUS_CALL_FLAGS_NONE, -1, NULL,
                                       &error);
  if (reply == NULL) {
    remote = g_dbus_error_get_remote_error (error);
    g_dbus_error_strip_remote_error (error);
    fprintf (stderr, "%s: %s\n", remote ? remote : "(local)",
             error->message);
    return 1;
  }
  out = g_variant_print (reply, FALSE);
  printf ("%s\n", out);
  return 0;
}

int
main (int argc, char **argv)
{
  if (argc == 3 && strcmp (argv[1], "monitor") == 0)
    return monitor (argv[2]);
  if (argc == 5 && strcmp (argv[1], "call") == 0)
    return call (argv[2], argv[3], argv[4]);
  fprintf (stderr, "usage: dbus-peer monitor ADDRESS\n"
           "       dbus-peer call ADDRESS METHOD ARGS\n");
  return 2;
}
