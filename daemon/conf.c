/* nbdsnap - nbdsnapd's configuration.
 *
 * The file is a GKeyFile with two groups: [nbdsnapd] (the keys of
 * nbdsnapd.conf(5), most of them also command line options) and
 * [plugin] (extra parameters passed to the nbdsnap plugin).  Unknown
 * groups and keys are errors, so that a typo never goes unnoticed.
 * Every value is checked here, before anything starts.
 */

#include <config.h>

#include <errno.h>
#include <grp.h>
#include <netdb.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "conf.h"
#include "error.h"
#include "paths.h"
#include "util.h"

#define GROUP "nbdsnapd"
#define PLUGIN_GROUP "plugin"

static const char *const main_keys[] = {
  "device", "listen", "tls", "tls-psk", "tls-certificates", "state-dir",
  "diff-storage-dir", "diff-storage-limit", "spare-storage-dirs",
  "spare-storage-size", "socket", "socket-group", "system-bus", "nbdkit",
  "plugin", "nbdkit-verbose", "log-level", "allow-original-over-tcp",
  "image-readonly", "snapshot-ttl", "pre-take-hook", "post-take-hook",
  "hook-timeout", NULL,
};

/* Plugin parameters that may be given in [plugin], and whether each is
 * a size (else a boolean).  device, control and statedir belong to
 * nbdsnapd.
 */
static const struct { const char *key; gboolean size; } plugin_keys[] = {
  { "chunk-size", TRUE }, { "chunk-count-max", TRUE },
  { "cbt-block-size-min", TRUE }, { "cbt-block-size-max", TRUE },
  { "cbt-block-count-max", TRUE }, { "storage-portion", TRUE },
  { "storage-low-water", TRUE },
};

static void
set_error (GError **error, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

static void
set_error (GError **error, const char *fmt, ...)
{
  va_list ap;

  if (error == NULL || *error != NULL)
    return;
  va_start (ap, fmt);
  *error = g_error_new_valist (NBDSNAP_ERROR, NBDSNAP_ERROR_INVALID_ARGUMENT,
                               fmt, ap);
  va_end (ap);
}

struct device_spec *
device_spec_new (const char *name, const char *path)
{
  struct device_spec *d = g_new0 (struct device_spec, 1);

  d->name = g_strdup (name);
  d->path = g_strdup (path);
  return d;
}

void
device_spec_free (struct device_spec *d)
{
  if (d == NULL)
    return;
  g_free (d->name);
  g_free (d->path);
  g_free (d);
}

struct device_spec *
device_spec_parse (const char *what, const char *s, GError **error)
{
  const char *colon = strchr (s, ':');
  g_autofree char *name = NULL, *path = NULL;
  struct stat st;

  if (colon == NULL || colon == s || colon[1] == '\0') {
    set_error (error, "%s '%s': expected NAME:PATH", what, s);
    return NULL;
  }
  name = g_strndup (s, colon - s);
  if (!nbdsnap_name_is_valid (name)) {
    set_error (error, "%s '%s': the name must be 1 to 64 of [A-Za-z0-9._-]",
               what, s);
    return NULL;
  }
  path = g_canonicalize_filename (colon + 1, NULL);
  if (stat (path, &st) == -1) {
    set_error (error, "%s '%s': %s: %s", what, s, path, g_strerror (errno));
    return NULL;
  }
  if (!S_ISREG (st.st_mode) && !S_ISBLK (st.st_mode)) {
    set_error (error, "%s '%s': %s is not a regular file or block device",
               what, s, path);
    return NULL;
  }
  return device_spec_new (name, path);
}

static void
listen_spec_free (struct listen_spec *l)
{
  g_free (l->path);
  g_free (l->host);
  g_free (l);
}

/* The host of a TCP listener must resolve to an address to bind: an IP
 * address, a name, or empty / "*" for every address.
 */
static gboolean
check_host (const char *what, const char *s, const char *host,
            GError **error)
{
  struct addrinfo hints = {
    .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
    .ai_flags = AI_PASSIVE,
  };
  struct addrinfo *res = NULL;
  int r;

  if (host[0] == '\0' || strcmp (host, "*") == 0)
    return TRUE;
  r = getaddrinfo (host, NULL, &hints, &res);
  if (r != 0) {
    set_error (error, "%s '%s': bad host '%s': %s", what, s, host,
               r == EAI_SYSTEM ? g_strerror (errno) : gai_strerror (r));
    return FALSE;
  }
  freeaddrinfo (res);
  return TRUE;
}

static struct listen_spec *
listen_spec_parse (const char *what, const char *s, GError **error)
{
  struct listen_spec *l = g_new0 (struct listen_spec, 1);
  struct sockaddr_un sun;

  if (g_str_has_prefix (s, "unix:")) {
    l->type = LISTEN_UNIX;
    if (s[5] == '\0')
      goto bad;
    l->path = g_canonicalize_filename (s + 5, NULL);
    if (strlen (l->path) >= sizeof sun.sun_path) {
      set_error (error, "%s '%s': the socket path is too long (at most %zu "
                 "bytes)", what, s, sizeof sun.sun_path - 1);
      listen_spec_free (l);
      return NULL;
    }
    return l;
  }
  if (g_str_has_prefix (s, "tcp:")) {
    const char *hp = s + 4, *colon = strrchr (hp, ':');
    guint64 port;
    char *end;

    l->type = LISTEN_TCP;
    if (colon == NULL || colon == hp || colon[1] == '\0')
      goto bad;
    if (hp[0] == '[') {
      if (colon[-1] != ']' || colon - hp < 3)
        goto bad;
      l->host = g_strndup (hp + 1, colon - hp - 2);
    }
    else
      l->host = g_strndup (hp, colon - hp);
    port = g_ascii_strtoull (colon + 1, &end, 10);
    if (*end != '\0' || !g_ascii_isdigit (colon[1]) || port > 65535) {
      set_error (error, "%s '%s': bad port '%s' (0 to 65535)", what, s,
                 colon + 1);
      listen_spec_free (l);
      return NULL;
    }
    l->port = port;
    if (!check_host (what, s, l->host, error)) {
      listen_spec_free (l);
      return NULL;
    }
    return l;
  }
 bad:
  set_error (error, "%s '%s': expected unix:PATH or tcp:HOST:PORT", what, s);
  listen_spec_free (l);
  return NULL;
}

const char *
tls_mode_name (enum tls_mode m)
{
  switch (m) {
  case TLS_ON: return "on";
  case TLS_REQUIRE: return "require";
  default: return "off";
  }
}

/* The file's value of a string key, or NULL. */
static char *
file_string (GKeyFile *kf, const char *key)
{
  if (kf == NULL || !g_key_file_has_key (kf, GROUP, key, NULL))
    return NULL;
  return g_key_file_get_string (kf, GROUP, key, NULL);
}

/* Command line value if given, else the file's, else @def. */
static char *
pick (const char *opt, GKeyFile *kf, const char *key, const char *def)
{
  char *v;

  if (opt)
    return g_strdup (opt);
  v = file_string (kf, key);
  if (v)
    return v;
  return g_strdup (def);
}

static gboolean
file_bool (GKeyFile *kf, const char *file, const char *key, gboolean def,
           gboolean *out, GError **error)
{
  g_autofree char *v = file_string (kf, key);

  *out = def;
  if (v == NULL)
    return TRUE;
  if (g_ascii_strcasecmp (v, "true") == 0 || strcmp (v, "1") == 0 ||
      g_ascii_strcasecmp (v, "yes") == 0)
    *out = TRUE;
  else if (g_ascii_strcasecmp (v, "false") == 0 || strcmp (v, "0") == 0 ||
           g_ascii_strcasecmp (v, "no") == 0)
    *out = FALSE;
  else {
    set_error (error, "%s: %s=%s: expected true or false", file, key, v);
    return FALSE;
  }
  return TRUE;
}

static gboolean
file_size (GKeyFile *kf, const char *file, const char *key, guint64 def,
           guint64 *out, GError **error)
{
  g_autofree char *v = file_string (kf, key);
  g_autofree char *what = NULL;

  *out = def;
  if (v == NULL)
    return TRUE;
  what = g_strdup_printf ("%s: %s", file, key);
  if (!nbdsnap_parse_size (what, v, out, error))
    return FALSE;
  if (*out == 0) {
    set_error (error, "%s: %s=%s: must be more than 0", file, key, v);
    return FALSE;
  }
  return TRUE;
}

static gboolean
file_seconds (GKeyFile *kf, const char *file, const char *key, double def,
              gboolean zero_ok, double *out, GError **error)
{
  g_autofree char *v = file_string (kf, key);
  char *end;

  *out = def;
  if (v == NULL)
    return TRUE;
  *out = g_ascii_strtod (v, &end);
  if (end == v || *end != '\0' || *out < 0 || *out > 1e9 ||
      (!zero_ok && *out == 0)) {
    set_error (error, "%s: %s=%s: expected a number of seconds%s", file, key,
               v, zero_ok ? "" : " more than 0");
    return FALSE;
  }
  return TRUE;
}

static gboolean
check_keys (GKeyFile *kf, const char *file, GError **error)
{
  g_auto (GStrv) groups = g_key_file_get_groups (kf, NULL);
  size_t i, j, k;

  for (i = 0; groups[i]; i++) {
    g_auto (GStrv) keys = NULL;

    if (strcmp (groups[i], GROUP) != 0 &&
        strcmp (groups[i], PLUGIN_GROUP) != 0) {
      set_error (error, "%s: unknown group [%s] (groups are [%s] and [%s])",
                 file, groups[i], GROUP, PLUGIN_GROUP);
      return FALSE;
    }
    keys = g_key_file_get_keys (kf, groups[i], NULL, NULL);
    for (j = 0; keys[j]; j++) {
      gboolean known = FALSE;

      if (strcmp (groups[i], GROUP) == 0)
        known = g_strv_contains (main_keys, keys[j]);
      else
        for (k = 0; k < G_N_ELEMENTS (plugin_keys); k++)
          known |= strcmp (plugin_keys[k].key, keys[j]) == 0;
      if (!known) {
        set_error (error, "%s: unknown key '%s' in [%s]", file, keys[j],
                   groups[i]);
        return FALSE;
      }
    }
  }
  return TRUE;
}

static gboolean
load_plugin_params (struct config *c, GKeyFile *kf, const char *file,
                    GError **error)
{
  g_autoptr (GPtrArray) params = g_ptr_array_new ();
  size_t i;

  for (i = 0; kf && i < G_N_ELEMENTS (plugin_keys); i++) {
    g_autofree char *v = NULL, *what = NULL;
    guint64 dummy;

    if (!g_key_file_has_key (kf, PLUGIN_GROUP, plugin_keys[i].key, NULL))
      continue;
    v = g_key_file_get_string (kf, PLUGIN_GROUP, plugin_keys[i].key, NULL);
    what = g_strdup_printf ("%s: [%s] %s", file, PLUGIN_GROUP,
                            plugin_keys[i].key);
    if (v == NULL || !nbdsnap_parse_size (what, v, &dummy, error)) {
      if (v == NULL)
        set_error (error, "%s: no value", what);
      return FALSE;
    }
    g_ptr_array_add (params, g_strdup_printf ("%s=%s", plugin_keys[i].key,
                                              v));
  }
  g_ptr_array_add (params, NULL);
  c->plugin_params = (char **) g_ptr_array_steal (params, NULL);
  return TRUE;
}

static gboolean
load_devices (struct config *c, const struct config_options *o,
              GKeyFile *kf, const char *file, GError **error)
{
  g_auto (GStrv) from_file = NULL;
  char **list = o->devices;
  const char *what = "--device";
  size_t i, j;

  if (kf && g_key_file_has_key (kf, GROUP, "device", NULL)) {
    from_file = g_key_file_get_string_list (kf, GROUP, "device", NULL, NULL);
    if (list) {
      /* Overridden, but a bad value is still an error. */
      g_autofree char *w = g_strdup_printf ("%s: device", file);
      for (i = 0; from_file && from_file[i]; i++) {
        struct device_spec *d = device_spec_parse (w, g_strstrip
                                                   (from_file[i]), error);
        if (d == NULL)
          return FALSE;
        device_spec_free (d);
      }
      g_clear_pointer (&from_file, g_strfreev);
    }
    else {
      list = from_file;
      what = "device";
    }
  }
  for (i = 0; list && list[i]; i++) {
    g_autofree char *w = g_strdup_printf ("%s%s%s", list == from_file ? file
                                          : "", list == from_file ? ": " : "",
                                          what);
    struct device_spec *d = device_spec_parse (w, g_strstrip (list[i]), error);

    if (d == NULL)
      return FALSE;
    for (j = 0; j < c->devices->len; j++) {
      struct device_spec *e = g_ptr_array_index (c->devices, j);
      if (strcmp (e->name, d->name) == 0 || strcmp (e->path, d->path) == 0) {
        set_error (error, "%s '%s': the %s is given twice", w, list[i],
                   strcmp (e->name, d->name) == 0 ? "name" : "path");
        device_spec_free (d);
        return FALSE;
      }
    }
    g_ptr_array_add (c->devices, d);
  }
  return TRUE;
}

static gboolean
load_listen (struct config *c, const struct config_options *o,
             GKeyFile *kf, const char *file, GError **error)
{
  g_auto (GStrv) from_file = NULL;
  char **list = o->listen;
  size_t i;

  if (kf && g_key_file_has_key (kf, GROUP, "listen", NULL)) {
    from_file = g_key_file_get_string_list (kf, GROUP, "listen", NULL, NULL);
    if (list) {
      /* Overridden, but a bad value is still an error. */
      g_autofree char *w = g_strdup_printf ("%s: listen", file);
      for (i = 0; from_file && from_file[i]; i++) {
        struct listen_spec *l = listen_spec_parse (w, g_strstrip
                                                   (from_file[i]), error);
        if (l == NULL)
          return FALSE;
        listen_spec_free (l);
      }
      g_clear_pointer (&from_file, g_strfreev);
    }
    else
      list = from_file;
  }
  for (i = 0; list && list[i]; i++) {
    g_autofree char *w = list == from_file
      ? g_strdup_printf ("%s: listen", file) : g_strdup ("--listen");
    struct listen_spec *l = listen_spec_parse (w, g_strstrip (list[i]), error);

    if (l == NULL)
      return FALSE;
    g_ptr_array_add (c->listen, l);
  }
  if (c->listen->len == 0) {
    struct listen_spec *l = listen_spec_parse ("default listener",
                                               NBDSNAPD_DEFAULT_LISTEN, error);
    if (l == NULL)
      return FALSE;
    g_ptr_array_add (c->listen, l);
  }
  return TRUE;
}

static gboolean
check_dir (const char *what, const char *path, GError **error)
{
  struct stat st;

  if (stat (path, &st) == -1) {
    set_error (error, "%s %s: %s", what, path, g_strerror (errno));
    return FALSE;
  }
  if (!S_ISDIR (st.st_mode)) {
    set_error (error, "%s %s: not a directory", what, path);
    return FALSE;
  }
  return TRUE;
}

static char *
absolute (char *path)
{
  char *r;

  if (path == NULL)
    return NULL;
  r = g_canonicalize_filename (path, NULL);
  g_free (path);
  return r;
}

struct config *
config_load (const struct config_options *o, GError **error)
{
  struct config *c = g_new0 (struct config, 1);
  g_autoptr (GKeyFile) kf = NULL;
  g_autofree char *tls = NULL, *level = NULL, *group = NULL;
  const char *file;
  GError *err = NULL;

  c->devices = g_ptr_array_new_with_free_func ((GDestroyNotify)
                                               device_spec_free);
  c->listen = g_ptr_array_new_with_free_func ((GDestroyNotify)
                                              listen_spec_free);
  c->socket_gid = (gid_t) -1;

  /* The file: the default one may be missing, a named one may not. */
  file = o->config_file ? o->config_file : NBDSNAPD_CONF;
  kf = g_key_file_new ();
  if (!g_key_file_load_from_file (kf, file, G_KEY_FILE_NONE, &err)) {
    if (o->config_file == NULL &&
        g_error_matches (err, G_FILE_ERROR, G_FILE_ERROR_NOENT)) {
      g_clear_error (&err);
      g_clear_pointer (&kf, g_key_file_unref);
    }
    else {
      set_error (error, "config file %s: %s", file, err->message);
      g_error_free (err);
      goto fail;
    }
  }
  else
    c->config_file = g_strdup (file);
  if (kf && !check_keys (kf, file, error))
    goto fail;

  if (!load_devices (c, o, kf, file, error) ||
      !load_listen (c, o, kf, file, error) ||
      !load_plugin_params (c, kf, file, error))
    goto fail;

  tls = pick (o->tls, kf, "tls", "off");
  if (strcmp (tls, "off") == 0)
    c->tls = TLS_OFF;
  else if (strcmp (tls, "on") == 0)
    c->tls = TLS_ON;
  else if (strcmp (tls, "require") == 0)
    c->tls = TLS_REQUIRE;
  else {
    set_error (error, "tls '%s': expected off, on or require", tls);
    goto fail;
  }
  c->tls_psk = absolute (pick (o->tls_psk, kf, "tls-psk", NULL));
  c->tls_certificates = absolute (pick (o->tls_certificates, kf,
                                        "tls-certificates", NULL));
  if (c->tls != TLS_OFF) {
    if (!c->tls_psk == !c->tls_certificates) {
      set_error (error, "tls %s needs exactly one of tls-psk FILE and "
                 "tls-certificates DIR", tls);
      goto fail;
    }
    if (c->tls_psk && access (c->tls_psk, R_OK) == -1) {
      set_error (error, "tls-psk %s: %s", c->tls_psk, g_strerror (errno));
      goto fail;
    }
    if (c->tls_certificates &&
        !check_dir ("tls-certificates", c->tls_certificates, error))
      goto fail;
  }

  c->state_dir = absolute (pick (o->state_dir, kf, "state-dir",
                                 NBDSNAP_STATEDIR));
  c->diff_storage_dir = absolute (pick (o->diff_storage_dir, kf,
                                        "diff-storage-dir", NULL));
  if (c->diff_storage_dir &&
      !check_dir ("diff-storage-dir", c->diff_storage_dir, error))
    goto fail;
  if (!file_size (kf, file, "diff-storage-limit", 1ull << 30,
                  &c->diff_storage_limit, error) ||
      !file_size (kf, file, "spare-storage-size", 1ull << 30,
                  &c->spare_storage_size, error))
    goto fail;
  if (kf && g_key_file_has_key (kf, GROUP, "spare-storage-dirs", NULL)) {
    size_t i;
    c->spare_storage_dirs = g_key_file_get_string_list (kf, GROUP,
                                                        "spare-storage-dirs",
                                                        NULL, NULL);
    for (i = 0; c->spare_storage_dirs && c->spare_storage_dirs[i]; i++) {
      c->spare_storage_dirs[i] = absolute (c->spare_storage_dirs[i]);
      if (!check_dir ("spare-storage-dirs:", c->spare_storage_dirs[i], error))
        goto fail;
    }
    if (c->spare_storage_dirs && c->spare_storage_dirs[0] == NULL)
      g_clear_pointer (&c->spare_storage_dirs, g_strfreev);
  }

  c->socket = absolute (pick (o->socket, kf, "socket",
                              NBDSNAPD_DEFAULT_SOCKET));
  {
    struct sockaddr_un sun;
    if (strlen (c->socket) >= sizeof sun.sun_path) {
      set_error (error, "socket %s: the path is too long", c->socket);
      goto fail;
    }
  }
  group = pick (NULL, kf, "socket-group", NULL);
  if (group && group[0]) {
    struct group *gr = getgrnam (group);
    if (gr == NULL) {
      set_error (error, "socket-group '%s': no such group", group);
      goto fail;
    }
    c->socket_group = g_strdup (group);
    c->socket_gid = gr->gr_gid;
  }

  if (!file_bool (kf, file, "system-bus", FALSE, &c->system_bus, error))
    goto fail;
  if (o->system_bus)
    c->system_bus = TRUE;
  c->foreground = o->foreground;

  c->nbdkit = pick (o->nbdkit, kf, "nbdkit", NBDKIT_PATH);
  if (!g_path_is_absolute (c->nbdkit)) {
    char *p = g_find_program_in_path (c->nbdkit);
    if (p) {
      g_free (c->nbdkit);
      c->nbdkit = p;
    }
  }
  if (!g_file_test (c->nbdkit, G_FILE_TEST_IS_EXECUTABLE) ||
      g_file_test (c->nbdkit, G_FILE_TEST_IS_DIR)) {
    set_error (error, "nbdkit %s: not an executable program", c->nbdkit);
    goto fail;
  }
  c->plugin = absolute (pick (o->plugin, kf, "plugin", NBDSNAP_PLUGIN_PATH));
  if (!g_file_test (c->plugin, G_FILE_TEST_IS_REGULAR)) {
    set_error (error, "plugin %s: no such file (give --plugin PATH)",
               c->plugin);
    goto fail;
  }
  if (!file_bool (kf, file, "nbdkit-verbose", FALSE, &c->nbdkit_verbose,
                  error))
    goto fail;

  level = pick (o->log_level, kf, "log-level", "info");
  if (strcmp (level, "error") == 0)
    c->log_level = G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL;
  else if (strcmp (level, "warning") == 0)
    c->log_level = G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL |
      G_LOG_LEVEL_WARNING;
  else if (strcmp (level, "info") == 0)
    c->log_level = G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL |
      G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO;
  else if (strcmp (level, "debug") == 0)
    c->log_level = G_LOG_LEVEL_MASK;
  else {
    set_error (error, "log-level '%s': expected error, warning, info or "
               "debug", level);
    goto fail;
  }

  if (!file_bool (kf, file, "allow-original-over-tcp", FALSE,
                  &c->allow_original_over_tcp, error) ||
      !file_bool (kf, file, "image-readonly", FALSE, &c->image_readonly,
                  error) ||
      !file_seconds (kf, file, "snapshot-ttl", 0, TRUE, &c->snapshot_ttl,
                     error) ||
      !file_seconds (kf, file, "hook-timeout", 30, FALSE, &c->hook_timeout,
                     error))
    goto fail;
  c->pre_take_hook = pick (NULL, kf, "pre-take-hook", NULL);
  c->post_take_hook = pick (NULL, kf, "post-take-hook", NULL);
  if (c->pre_take_hook && c->pre_take_hook[0] == '\0')
    g_clear_pointer (&c->pre_take_hook, g_free);
  if (c->post_take_hook && c->post_take_hook[0] == '\0')
    g_clear_pointer (&c->post_take_hook, g_free);
  return c;

 fail:
  config_free (c);
  return NULL;
}

void
config_free (struct config *c)
{
  if (c == NULL)
    return;
  g_free (c->config_file);
  g_ptr_array_unref (c->devices);
  g_ptr_array_unref (c->listen);
  g_free (c->tls_psk);
  g_free (c->tls_certificates);
  g_free (c->state_dir);
  g_free (c->diff_storage_dir);
  g_strfreev (c->spare_storage_dirs);
  g_free (c->socket);
  g_free (c->socket_group);
  g_free (c->nbdkit);
  g_free (c->plugin);
  g_free (c->pre_take_hook);
  g_free (c->post_take_hook);
  g_strfreev (c->plugin_params);
  g_free (c);
}
