/* nbdsnap - nbdsnapd's configuration: nbdsnapd.conf(5) and the command
 * line, merged and checked once at startup (immutable afterwards).
 */

#ifndef NBDSNAPD_CONF_H
#define NBDSNAPD_CONF_H

#include <sys/types.h>

#include <glib.h>

#define NBDSNAP_RUNDIR "/run/nbdsnap"
#define NBDSNAPD_DEFAULT_SOCKET NBDSNAP_RUNDIR "/nbdsnapd.sock"
#define NBDSNAPD_DEFAULT_LISTEN "unix:" NBDSNAP_RUNDIR "/nbd.sock"

/**
 * enum tls_mode - nbdkit's --tls.
 * @TLS_OFF: no TLS.
 * @TLS_ON: TLS offered, plain connections allowed.
 * @TLS_REQUIRE: every connection must use TLS.
 */
enum tls_mode { TLS_OFF, TLS_ON, TLS_REQUIRE };

/**
 * struct device_spec - a device to serve: NAME:PATH.
 * @name: export name.
 * @path: absolute path of a regular file or block device.
 */
struct device_spec {
  char *name;
  char *path;
};

struct device_spec *device_spec_new (const char *name, const char *path);
void device_spec_free (struct device_spec *d);
/* Parse NAME:PATH (PATH made absolute).  @what names the source. */
struct device_spec *device_spec_parse (const char *what, const char *s,
                                       GError **error);

/**
 * enum listen_type - kind of NBD listener.
 * @LISTEN_UNIX: unix domain socket.
 * @LISTEN_TCP: TCP socket.
 */
enum listen_type { LISTEN_UNIX, LISTEN_TCP };

/**
 * struct listen_spec - one --listen.
 * @type: unix or tcp.
 * @path: socket path (unix).
 * @host: host to bind (tcp), without brackets.
 * @port: port (tcp), 0 for any free port.
 */
struct listen_spec {
  enum listen_type type;
  char *path;
  char *host;
  guint16 port;
};

/**
 * struct config_options - what the command line gave (NULL: not given).
 * Each field overrides the config file's key of the same name; the
 * repeatable ones replace the file's whole list.
 */
struct config_options {
  char *config_file;
  char **devices;
  char **listen;
  char *tls;
  char *tls_psk;
  char *tls_certificates;
  char *state_dir;
  char *diff_storage_dir;
  char *socket;
  char *nbdkit;
  char *plugin;
  gboolean foreground;
  gboolean system_bus;
  char *log_level;
};

/**
 * struct config - the merged configuration.
 * @config_file: the file read, or NULL if the default one is missing.
 * @devices: struct device_spec, served from the start.
 * @listen: struct listen_spec.
 * @tls: TLS mode; @tls_psk / @tls_certificates: nbdkit's key material.
 * @state_dir: nbdkit's control socket, pid file and persistent state.
 * @diff_storage_dir: where unnamed diff storage files are made.
 * @diff_storage_limit: default diff storage limit of a snapshot.
 * @spare_storage_dirs: where to append storage on low space (NULL: none).
 * @spare_storage_size: limit of each appended spare file.
 * @socket: the API socket.
 * @socket_group: group allowed on the API and NBD unix sockets (or NULL).
 * @socket_gid: its gid, (gid_t) -1 if none.
 * @system_bus: also serve the API on the system bus.
 * @nbdkit, @plugin: what to run.
 * @nbdkit_verbose: run nbdkit with -v.
 * @foreground: do not daemonize; log to stderr.
 * @log_level: G_LOG_LEVEL_* mask of messages to log.
 * @allow_original_over_tcp, @image_readonly: plugin policy.
 * @snapshot_ttl: seconds a snapshot may live, 0 for ever.
 * @pre_take_hook, @post_take_hook: shell commands, or NULL.
 * @hook_timeout: seconds a hook may run.
 * @plugin_params: extra key=value parameters for the plugin.
 */
struct config {
  char *config_file;
  GPtrArray *devices;
  GPtrArray *listen;
  enum tls_mode tls;
  char *tls_psk;
  char *tls_certificates;
  char *state_dir;
  char *diff_storage_dir;
  guint64 diff_storage_limit;
  char **spare_storage_dirs;
  guint64 spare_storage_size;
  char *socket;
  char *socket_group;
  gid_t socket_gid;
  gboolean system_bus;
  char *nbdkit;
  char *plugin;
  gboolean nbdkit_verbose;
  gboolean foreground;
  GLogLevelFlags log_level;
  gboolean allow_original_over_tcp;
  gboolean image_readonly;
  double snapshot_ttl;
  char *pre_take_hook;
  char *post_take_hook;
  double hook_timeout;
  char **plugin_params;
};

/* Read the file, merge @o, check everything.  NULL and @error (one
 * line) on any problem: the caller exits with status 2.
 */
struct config *config_load (const struct config_options *o, GError **error);
void config_free (struct config *c);

const char *tls_mode_name (enum tls_mode m);

#endif /* NBDSNAPD_CONF_H */
