/* nbdsnap - NBD listeners bound by nbdsnapd. */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "error.h"
#include "listener.h"

static gboolean
bind_unix (struct listener *l, gid_t gid, GError **error)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  struct stat st;
  mode_t old;
  int fd;

  g_strlcpy (addr.sun_path, l->path, sizeof addr.sun_path);
  if (lstat (l->path, &st) == 0) {
    int probe;

    if (!S_ISSOCK (st.st_mode)) {
      g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_EXISTS,
                   "listen unix:%s: exists and is not a socket", l->path);
      return FALSE;
    }
    probe = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe >= 0 &&
        connect (probe, (struct sockaddr *) &addr, sizeof addr) == 0) {
      close (probe);
      g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_BUSY,
                   "listen unix:%s: another server is listening on it",
                   l->path);
      return FALSE;
    }
    if (probe >= 0)
      close (probe);
    unlink (l->path);
  }

  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd == -1)
    goto fail_errno;
  old = umask (0117);
  if (bind (fd, (struct sockaddr *) &addr, sizeof addr) == -1) {
    int e = errno;
    umask (old);
    close (fd);
    errno = e;
    goto fail_errno;
  }
  umask (old);
  if (gid != (gid_t) -1 && chown (l->path, geteuid (), gid) == -1)
    g_warning ("listen unix:%s: cannot give the socket to group %u: %s",
               l->path, (unsigned) gid, g_strerror (errno));
  if (chmod (l->path, 0660) == -1 || listen (fd, 128) == -1) {
    int e = errno;
    close (fd);
    unlink (l->path);
    errno = e;
    goto fail_errno;
  }
  l->fd = fd;
  return TRUE;

 fail_errno:
  g_set_error (error, NBDSNAP_ERROR, nbdsnap_error_from_errno (errno),
               "listen unix:%s: %s", l->path, g_strerror (errno));
  return FALSE;
}

static gboolean
is_wildcard (const char *host)
{
  return host[0] == '\0' || strcmp (host, "0.0.0.0") == 0 ||
    strcmp (host, "::") == 0 || strcmp (host, "*") == 0;
}

static gboolean
bind_tcp (struct listener *l, GError **error)
{
  struct addrinfo hints = {
    .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
    .ai_flags = AI_PASSIVE | AI_NUMERICSERV,
  };
  struct addrinfo *res = NULL, *ai;
  char port[8];
  const char *host = strcmp (l->host, "*") == 0 ? NULL : l->host;
  int r, e = 0, fd = -1;

  g_snprintf (port, sizeof port, "%u", l->port);
  r = getaddrinfo (host && host[0] ? host : NULL, port, &hints, &res);
  if (r != 0) {
    g_set_error (error, NBDSNAP_ERROR, NBDSNAP_ERROR_INVALID_ARGUMENT,
                 "listen tcp:%s:%u: %s", l->host, l->port, gai_strerror (r));
    return FALSE;
  }
  for (ai = res; ai; ai = ai->ai_next) {
    int one = 1;

    fd = socket (ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                 ai->ai_protocol);
    if (fd == -1) {
      e = errno;
      continue;
    }
    setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind (fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen (fd, 128) == 0)
      break;
    e = errno;
    close (fd);
    fd = -1;
  }
  freeaddrinfo (res);
  if (fd == -1) {
    g_set_error (error, NBDSNAP_ERROR, nbdsnap_error_from_errno (e),
                 "listen tcp:%s:%u: %s", l->host, l->port, g_strerror (e));
    return FALSE;
  }
  {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char hostbuf[NI_MAXHOST], servbuf[NI_MAXSERV];

    if (getsockname (fd, (struct sockaddr *) &ss, &len) == 0 &&
        getnameinfo ((struct sockaddr *) &ss, len, hostbuf, sizeof hostbuf,
                     servbuf, sizeof servbuf,
                     NI_NUMERICHOST | NI_NUMERICSERV) == 0)
      l->port = atoi (servbuf);
    if (is_wildcard (l->host))
      l->uri_host = g_strdup (g_get_host_name ());
    else if (strchr (l->host, ':'))
      l->uri_host = g_strdup_printf ("[%s]", l->host);
    else
      l->uri_host = g_strdup (l->host);
  }
  l->fd = fd;
  return TRUE;
}

struct listener *
listener_bind (const struct listen_spec *spec, gid_t gid, GError **error)
{
  struct listener *l = g_new0 (struct listener, 1);

  l->type = spec->type;
  l->fd = -1;
  l->port = spec->port;
  l->path = g_strdup (spec->path);
  l->host = g_strdup (spec->host);
  if (l->type == LISTEN_UNIX ? !bind_unix (l, gid, error)
      : !bind_tcp (l, error)) {
    listener_free (l);
    return NULL;
  }
  return l;
}

void
listener_free (struct listener *l)
{
  if (l == NULL)
    return;
  if (l->fd >= 0) {
    close (l->fd);
    if (l->type == LISTEN_UNIX)
      unlink (l->path);
  }
  g_free (l->path);
  g_free (l->host);
  g_free (l->uri_host);
  g_free (l);
}

char *
listener_uri (const struct listener *l, const char *export, enum tls_mode tls)
{
  if (l->type == LISTEN_UNIX)
    return g_strdup_printf ("%s:///%s?socket=%s",
                            tls == TLS_REQUIRE ? "nbds+unix" : "nbd+unix",
                            export, l->path);
  return g_strdup_printf ("%s://%s:%u/%s", tls == TLS_OFF ? "nbd" : "nbds",
                          l->uri_host, l->port, export);
}

char *
listener_address (const struct listener *l)
{
  if (l->type == LISTEN_UNIX)
    return g_strdup_printf ("unix:%s", l->path);
  if (strchr (l->host, ':'))
    return g_strdup_printf ("tcp:[%s]:%u", l->host, l->port);
  return g_strdup_printf ("tcp:%s:%u", l->host, l->port);
}
