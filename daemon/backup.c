/* nbdsnapctl backup - full and incremental backup of a snapshot image
 * over NBD.  See docs/backup.md.
 *
 * Inputs: SOURCE, the URI of an image export NAME@UUID, and its
 * companion NAME@UUID.cbt (the same URI with ".cbt" added to the export
 * name: the cbt-format header and the snapshot's frozen map).  Output:
 * DEST, a raw file or an NBD export, and a state file (the "sidecar",
 * DEST.nbdsnap.json or --state FILE) that says which snapshot DEST
 * holds.
 *
 * Plan.  Read the CBT export and check it (checksums, size, snapshot
 * id).  Decide full or incremental: incremental needs --incremental and
 * a state file of the same device, generation, size and block size, for
 * a snapshot not newer than this one.  The work is a list of units
 * (byte ranges of at most UNIT_MAX): every block for a full backup, the
 * blocks whose byte is greater than the state file's changes number for
 * an incremental one.  Worker threads, one per source connection, take
 * units in order; per unit: block status (base:allocation) on the
 * source, zero extents become holes in DEST, data extents are read and
 * scanned for zero runs (ZERO_GRAIN), which also become holes; the
 * rest is written.  Holes in DEST: nothing to do when DEST is known to
 * read as zero (new, or truncated for a full backup), else a punched
 * hole (file) or NBD_CMD_WRITE_ZEROES that may trim (NBD).
 *
 * Safety (the argument in full is in docs/backup.md).  The state file
 * is the only claim about DEST's content, and it is only ever replaced
 * atomically (temporary file, fsync, rename, fsync of the directory):
 *  - before a full backup writes anything, the state file is removed
 *    (unlink, fsync of the directory);
 *  - before an incremental backup from base B to snapshot T writes
 *    anything, the state file becomes "incomplete, base B, target T";
 *  - only after the data is flushed (fsync, NBD_CMD_FLUSH on every
 *    connection) and, with --verify, compared, is the state file
 *    written "complete, snapshot T".
 * Within one generation a block's byte never decreases from one
 * snapshot to the next, so an incremental run from B to any snapshot
 * T2 not older than T rewrites every block that the interrupted run
 * may have touched; hence a rerun after a kill at any point ends with
 * DEST equal to the snapshot.
 */

#include <config.h>

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libnbd.h>

#include <nbdsnap/cbt-format.h>

#include "backup.h"
#include "crc32c.h"
#include "util.h"

/* Bytes per NBD request (and per unit of work). */
#define UNIT_MAX (2u * 1024 * 1024)
/* Zero detection in data read: runs of this many zero bytes, aligned,
 * become holes.
 */
#define ZERO_GRAIN 65536u
#define MAX_CONNECTIONS 16
/* The CBT export is at most this big (the header, then 64 Mi blocks). */
#define CBT_EXPORT_MAX (NBDSNAP_CBT_HEADER_SIZE + (UINT64_C (1) << 26))
#define STATE_FORMAT "nbdsnap-backup-state"
#define STATE_VERSION 1

static gboolean opt_incremental, opt_verify;
static gint opt_connections;
static char *opt_state;

static const GOptionEntry backup_entries[] = {
  { "incremental", 'i', 0, G_OPTION_ARG_NONE, &opt_incremental,
    "Copy only the blocks changed since the backup that the state file "
    "records (a full copy, with a message, when that is not possible)",
    NULL },
  { "verify", 0, 0, G_OPTION_ARG_NONE, &opt_verify,
    "Then reread source and DEST and compare a checksum of every block",
    NULL },
  { "connections", 'C', 0, G_OPTION_ARG_INT, &opt_connections,
    "NBD connections to the source (default 4; 1 if it has no "
    "multi-conn)", "N" },
  { "state", 0, 0, G_OPTION_ARG_FILENAME, &opt_state,
    "The backup's state file (default DEST.nbdsnap.json; required when "
    "DEST is an NBD URI)", "FILE" },
  { NULL },
};

static bool
is_nbd_uri (const char *s)
{
  return g_str_has_prefix (s, "nbd://") || g_str_has_prefix (s, "nbds://") ||
    g_str_has_prefix (s, "nbd+unix://") ||
    g_str_has_prefix (s, "nbds+unix://") ||
    g_str_has_prefix (s, "nbd+vsock://") ||
    g_str_has_prefix (s, "nbds+vsock://");
}

/* Connect to @uri; NULL and *@err on failure. */
static struct nbd_handle *
connect_uri (const char *what, const char *uri, bool block_status,
             char **err)
{
  struct nbd_handle *h = nbd_create ();

  if (h == NULL) {
    *err = g_strdup_printf ("%s: %s", what, nbd_get_error ());
    return NULL;
  }
  /* tls-psk-file=FILE in the query names a local file. */
  if (nbd_set_uri_allow_local_file (h, true) == -1 ||
      (block_status &&
       nbd_add_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1) ||
      nbd_connect_uri (h, uri) == -1) {
    *err = g_strdup_printf ("%s %s: %s", what, uri, nbd_get_error ());
    nbd_close (h);
    return NULL;
  }
  return h;
}

/**
 * struct source - the snapshot image and its CBT.
 * @uri: the image export's URI.
 * @cbt_uri: the URI of its .cbt companion.
 * @export: the export name, NAME@UUID.
 * @device: NAME.
 * @id: UUID, the snapshot id.
 * @size: bytes of the image.
 * @block_size: bytes per CBT block.
 * @block_count: CBT blocks.
 * @generation: the map's generation (a UUID string).
 * @number: the snapshot's changes number.
 * @map: the frozen map, @block_count bytes.
 * @multi_conn: the image export advertises multi-conn.
 * @block_status: the image export answers base:allocation queries.
 */
struct source {
  const char *uri;
  char *cbt_uri;
  char *export;
  char device[65];
  char id[37];
  uint64_t size;
  uint32_t block_size;
  uint64_t block_count;
  char generation[37];
  unsigned number;
  uint8_t *map;
  bool multi_conn;
  bool block_status;
};

static void
source_clear (struct source *s)
{
  g_free (s->cbt_uri);
  free (s->export);
  g_free (s->map);
}

/* NAME@UUID from the first connection. */
static bool
source_parse_export (struct source *s, struct nbd_handle *h, char **err)
{
  const char *at;
  size_t len;

  s->export = nbd_get_export_name (h);
  if (s->export == NULL) {
    *err = g_strdup_printf ("source: %s", nbd_get_error ());
    return false;
  }
  at = strchr (s->export, '@');
  if (g_str_has_suffix (s->export, ".cbt")) {
    *err = g_strdup_printf ("source export '%s' is a CBT export: give the "
                            "image export NAME@UUID", s->export);
    return false;
  }
  if (at == NULL || !nbdsnap_parse_uuid (at + 1, NULL) ||
      strlen (at + 1) != 36) {
    *err = g_strdup_printf ("source export '%s' is not a snapshot image "
                            "(NAME@UUID)", s->export);
    return false;
  }
  len = at - s->export;
  if (len == 0 || len >= sizeof s->device) {
    *err = g_strdup_printf ("source export '%s' is not a snapshot image "
                            "(NAME@UUID)", s->export);
    return false;
  }
  memcpy (s->device, s->export, len);
  s->device[len] = '\0';
  if (!nbdsnap_name_is_valid (s->device)) {
    *err = g_strdup_printf ("source export '%s' is not a snapshot image "
                            "(NAME@UUID)", s->export);
    return false;
  }
  g_strlcpy (s->id, at + 1, sizeof s->id);
  for (char *p = s->id; *p; p++)
    *p = g_ascii_tolower (*p);
  return true;
}

static void
uuid_unparse16 (const uint8_t u[16], char out[37])
{
  snprintf (out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
            "%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3], u[4], u[5],
            u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

/* Read and check the .cbt companion export. */
static bool
source_read_cbt (struct source *s, char **err)
{
  struct nbd_handle *h;
  struct nbdsnap_cbt_header hdr;
  g_autofree uint8_t *buf = NULL;
  uint8_t want_id[16];
  char id[37];
  int64_t len;
  uint64_t off, count, bs;
  uint32_t crc;
  bool ok = false;

  s->cbt_uri = g_strdup_printf ("%.*s.cbt%s",
                                (int) strcspn (s->uri, "?#"), s->uri,
                                s->uri + strcspn (s->uri, "?#"));
  h = connect_uri ("CBT export", s->cbt_uri, false, err);
  if (h == NULL)
    return false;
  len = nbd_get_size (h);
  if (len < NBDSNAP_CBT_HEADER_SIZE || (uint64_t) len > CBT_EXPORT_MAX) {
    *err = g_strdup_printf ("CBT export %s: %" PRIi64 " bytes is not a "
                            "cbt-format header and map", s->cbt_uri, len);
    goto out;
  }
  buf = g_malloc (len);
  for (off = 0; off < (uint64_t) len; off += count) {
    count = MIN ((uint64_t) len - off, (uint64_t) UNIT_MAX);
    if (nbd_pread (h, buf + off, count, off, 0) == -1) {
      *err = g_strdup_printf ("CBT export %s: %s", s->cbt_uri,
                              nbd_get_error ());
      goto out;
    }
  }
  memcpy (&hdr, buf, sizeof hdr);
  crc = le32toh (hdr.header_crc32c);
  ((struct nbdsnap_cbt_header *) buf)->header_crc32c = 0;
  bs = le32toh (hdr.block_size);
  if (memcmp (hdr.magic, NBDSNAP_CBT_MAGIC, 8) != 0 ||
      le32toh (hdr.version) != NBDSNAP_CBT_VERSION ||
      le32toh (hdr.header_size) != NBDSNAP_CBT_HEADER_SIZE) {
    *err = g_strdup_printf ("CBT export %s: not a cbt-format map of version "
                            "%d", s->cbt_uri, NBDSNAP_CBT_VERSION);
    goto out;
  }
  if (crc32c (0, buf, sizeof hdr) != crc) {
    *err = g_strdup_printf ("CBT export %s: bad header checksum",
                            s->cbt_uri);
    goto out;
  }
  s->size = le64toh (hdr.device_size);
  s->block_count = le64toh (hdr.block_count);
  if (!(le32toh (hdr.flags) & NBDSNAP_CBT_FLAG_SNAPSHOT) ||
      bs == 0 || (bs & (bs - 1)) != 0 ||
      s->block_count != (uint64_t) len - NBDSNAP_CBT_HEADER_SIZE ||
      s->block_count != (s->size + bs - 1) / bs ||
      hdr.changes_number == 0) {
    *err = g_strdup_printf ("CBT export %s: inconsistent header (flags, "
                            "block size, block count or changes number)",
                            s->cbt_uri);
    goto out;
  }
  if (crc32c (0, buf + NBDSNAP_CBT_HEADER_SIZE, s->block_count) !=
      le32toh (hdr.map_crc32c)) {
    *err = g_strdup_printf ("CBT export %s: bad map checksum (did the map "
                            "change while it was read?)", s->cbt_uri);
    goto out;
  }
  nbdsnap_parse_uuid (s->id, want_id);
  if (memcmp (hdr.snapshot_id, want_id, 16) != 0) {
    uuid_unparse16 (hdr.snapshot_id, id);
    *err = g_strdup_printf ("CBT export %s is the map of snapshot %s, not %s",
                            s->cbt_uri, id, s->id);
    goto out;
  }
  s->block_size = bs;
  s->number = hdr.changes_number;
  uuid_unparse16 (hdr.generation, s->generation);
  s->map = g_malloc (s->block_count);
  memcpy (s->map, buf + NBDSNAP_CBT_HEADER_SIZE, s->block_count);
  ok = true;
 out:
  nbd_close (h);
  return ok;
}

/**
 * struct state - the content of the state file.
 * @complete: DEST holds exactly snapshot @snapshot_id (number
 *   @changes_number); else a run from base @changes_number to
 *   @target_number was interrupted.
 * @device: the device's name.
 * @generation: the CBT generation.
 * @changes_number: the snapshot's number (complete) or the base's.
 * @snapshot_id: that snapshot's id.
 * @size: bytes of the device.
 * @block_size: bytes per CBT block.
 * @target_number: incomplete: the interrupted run's snapshot number.
 * @target_id: incomplete: the interrupted run's snapshot id.
 */
struct state {
  bool complete;
  char device[65];
  char generation[37];
  unsigned changes_number;
  char snapshot_id[37];
  uint64_t size;
  uint32_t block_size;
  unsigned target_number;
  char target_id[37];
};

/* The state file is a flat JSON object of strings, unsigned integers,
 * booleans and nulls, in the form state_write makes; no escapes are
 * needed for what it holds, and any other content is "damaged".
 */
static const char *
skip_ws (const char *p)
{
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
    p++;
  return p;
}

static char *
json_string (const char **pp)
{
  const char *p = *pp, *start;

  if (*p != '"')
    return NULL;
  start = ++p;
  while (*p && *p != '"') {
    if ((unsigned char) *p < 0x20 || *p == '\\')
      return NULL;
    p++;
  }
  if (*p != '"')
    return NULL;
  *pp = p + 1;
  return g_strndup (start, p - start);
}

static GHashTable *
json_flat_parse (const char *text, char **why)
{
  g_autoptr (GHashTable) t =
    g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                           (GDestroyNotify) g_variant_unref);
  const char *p = skip_ws (text);

  if (*p++ != '{')
    goto bad;
  p = skip_ws (p);
  if (*p == '}')
    p++;
  else
    for (;;) {
      g_autofree char *key = json_string (&p);
      GVariant *v;

      if (key == NULL)
        goto bad;
      p = skip_ws (p);
      if (*p++ != ':')
        goto bad;
      p = skip_ws (p);
      if (*p == '"') {
        char *s = json_string (&p);
        if (s == NULL)
          goto bad;
        v = g_variant_new_take_string (s);
      }
      else if (*p >= '0' && *p <= '9') {
        guint64 n = 0;

        while (*p >= '0' && *p <= '9') {
          if (n > (G_MAXUINT64 - 9) / 10)
            goto bad;
          n = n * 10 + (*p++ - '0');
        }
        v = g_variant_new_uint64 (n);
      }
      else if (strncmp (p, "true", 4) == 0 || strncmp (p, "false", 5) == 0) {
        v = g_variant_new_boolean (*p == 't');
        p += *p == 't' ? 4 : 5;
      }
      else if (strncmp (p, "null", 4) == 0) {
        v = g_variant_new_maybe (G_VARIANT_TYPE_STRING, NULL);
        p += 4;
      }
      else
        goto bad;
      if (g_hash_table_contains (t, key)) {
        g_variant_unref (g_variant_ref_sink (v));
        goto bad;
      }
      g_hash_table_insert (t, g_steal_pointer (&key), g_variant_ref_sink (v));
      p = skip_ws (p);
      if (*p == ',') {
        p = skip_ws (p + 1);
        continue;
      }
      if (*p++ != '}')
        goto bad;
      break;
    }
  if (*skip_ws (p) != '\0')
    goto bad;
  return g_steal_pointer (&t);
 bad:
  *why = g_strdup ("not a JSON object of the expected form");
  return NULL;
}

static bool
get_str (GHashTable *t, const char *key, char *out, size_t len, char **why)
{
  GVariant *v = g_hash_table_lookup (t, key);

  if (v == NULL || !g_variant_is_of_type (v, G_VARIANT_TYPE_STRING) ||
      strlen (g_variant_get_string (v, NULL)) >= len) {
    *why = g_strdup_printf ("no valid \"%s\"", key);
    return false;
  }
  g_strlcpy (out, g_variant_get_string (v, NULL), len);
  return true;
}

static bool
get_u64 (GHashTable *t, const char *key, uint64_t max, uint64_t *out,
         char **why)
{
  GVariant *v = g_hash_table_lookup (t, key);

  if (v == NULL || !g_variant_is_of_type (v, G_VARIANT_TYPE_UINT64) ||
      g_variant_get_uint64 (v) > max) {
    *why = g_strdup_printf ("no valid \"%s\"", key);
    return false;
  }
  *out = g_variant_get_uint64 (v);
  return true;
}

/* 1: loaded; 0: there is no state file; -1: it is unusable (*@why). */
static int
state_load (const char *path, struct state *st, char **why)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GHashTable) t = NULL;
  g_autofree char *text = NULL;
  char format[64];
  uint64_t v, bs;
  GVariant *c;
  gsize len;

  memset (st, 0, sizeof *st);
  if (!g_file_get_contents (path, &text, &len, &error)) {
    if (g_error_matches (error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
      return 0;
    *why = g_strdup (error->message);
    return -1;
  }
  if (strlen (text) != len) {
    *why = g_strdup ("not a JSON object of the expected form");
    return -1;
  }
  t = json_flat_parse (text, why);
  if (t == NULL)
    return -1;
  if (!get_str (t, "format", format, sizeof format, why))
    return -1;
  if (strcmp (format, STATE_FORMAT) != 0) {
    *why = g_strdup_printf ("format is not \"%s\"", STATE_FORMAT);
    return -1;
  }
  if (!get_u64 (t, "version", G_MAXUINT64, &v, why))
    return -1;
  if (v != STATE_VERSION) {
    *why = g_strdup_printf ("version %" PRIu64 " is not %d", v,
                            STATE_VERSION);
    return -1;
  }
  c = g_hash_table_lookup (t, "complete");
  if (c == NULL || !g_variant_is_of_type (c, G_VARIANT_TYPE_BOOLEAN)) {
    *why = g_strdup ("no valid \"complete\"");
    return -1;
  }
  st->complete = g_variant_get_boolean (c);
  if (!get_str (t, "device", st->device, sizeof st->device, why) ||
      !get_str (t, "generation", st->generation, sizeof st->generation,
                why) ||
      !get_str (t, "snapshot_id", st->snapshot_id, sizeof st->snapshot_id,
                why) ||
      !get_u64 (t, "size", G_MAXUINT64, &st->size, why) ||
      !get_u64 (t, "block_size", UINT32_MAX, &bs, why) ||
      !get_u64 (t, "changes_number", 255, &v, why))
    return -1;
  st->changes_number = v;
  st->block_size = bs;
  if (!st->complete) {
    if (!get_u64 (t, "target_changes_number", 255, &v, why) ||
        !get_str (t, "target_snapshot_id", st->target_id,
                  sizeof st->target_id, why))
      return -1;
    st->target_number = v;
  }
  if (!nbdsnap_parse_uuid (st->generation, NULL) ||
      !nbdsnap_parse_uuid (st->snapshot_id, NULL) ||
      (!st->complete && !nbdsnap_parse_uuid (st->target_id, NULL)) ||
      !nbdsnap_name_is_valid (st->device) || st->changes_number == 0) {
    *why = g_strdup ("bad device, generation, snapshot id or changes number");
    return -1;
  }
  return 1;
}

static bool
fsync_dir_of (const char *path, char **err)
{
  g_autofree char *d = g_path_get_dirname (path);
  int fd = open (d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

  if (fd == -1 || fsync (fd) == -1) {
    *err = g_strdup_printf ("fsync %s: %s", d, g_strerror (errno));
    if (fd >= 0)
      close (fd);
    return false;
  }
  close (fd);
  return true;
}

/* Replace the state file atomically: temporary file, fsync, rename,
 * fsync of the directory.
 */
static bool
state_write (const char *path, const struct state *st, char **err)
{
  g_autofree char *tmp = g_strdup_printf ("%s.tmp.%ld", path,
                                          (long) getpid ());
  g_autoptr (GString) s = g_string_new (NULL);
  g_autoptr (GDateTime) now = g_date_time_new_now_utc ();
  g_autofree char *when = g_date_time_format (now, "%Y-%m-%dT%H:%M:%SZ");
  size_t done = 0;
  int fd;

  g_string_append_printf (s, "{\n  \"format\": \"%s\",\n  \"version\": %d,\n"
                          "  \"complete\": %s,\n  \"device\": \"%s\",\n"
                          "  \"generation\": \"%s\",\n"
                          "  \"changes_number\": %u,\n"
                          "  \"snapshot_id\": \"%s\",\n"
                          "  \"size\": %" PRIu64 ",\n"
                          "  \"block_size\": %" PRIu32 ",\n",
                          STATE_FORMAT, STATE_VERSION,
                          st->complete ? "true" : "false", st->device,
                          st->generation, st->changes_number,
                          st->snapshot_id, st->size, st->block_size);
  if (!st->complete)
    g_string_append_printf (s, "  \"target_changes_number\": %u,\n"
                            "  \"target_snapshot_id\": \"%s\",\n",
                            st->target_number, st->target_id);
  g_string_append_printf (s, "  \"time\": \"%s\"\n}\n", when);

  fd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd == -1) {
    *err = g_strdup_printf ("state file %s: %s", tmp, g_strerror (errno));
    return false;
  }
  while (done < s->len) {
    ssize_t r = write (fd, s->str + done, s->len - done);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      goto fail;
    }
    done += r;
  }
  if (fsync (fd) == -1)
    goto fail;
  if (close (fd) == -1) {
    fd = -1;
    goto fail;
  }
  fd = -1;
  if (rename (tmp, path) == -1)
    goto fail;
  return fsync_dir_of (path, err);
 fail:
  *err = g_strdup_printf ("state file %s: %s", path, g_strerror (errno));
  if (fd >= 0)
    close (fd);
  unlink (tmp);
  return false;
}

/* Remove the state file durably (unlink, fsync of the directory). */
static bool
state_remove (const char *path, char **err)
{
  if (unlink (path) == -1) {
    if (errno == ENOENT)
      return true;
    *err = g_strdup_printf ("state file %s: %s", path, g_strerror (errno));
    return false;
  }
  return fsync_dir_of (path, err);
}

/**
 * struct dest - where the backup goes.
 * @name: DEST as given.
 * @nbd: DEST is an NBD URI.
 * @fd: the file (raw file or block device), else -1.
 * @regular: @fd is a regular file.
 * @created: this run created the file.
 * @known_zero: every byte of DEST reads as zero now: holes need no work.
 * @size: bytes of DEST.
 * @h: NBD connections.
 * @nh: how many.
 * @can_zero: the NBD DEST has NBD_CMD_WRITE_ZEROES.
 */
struct dest {
  const char *name;
  bool nbd;
  int fd;
  bool regular;
  bool created;
  bool known_zero;
  uint64_t size;
  struct nbd_handle *h[MAX_CONNECTIONS];
  int nh;
  bool can_zero;
};

static bool
dest_open (struct dest *d, int connections, char **err)
{
  struct stat st;
  int i;

  if (d->nbd) {
    d->h[0] = connect_uri ("DEST", d->name, false, err);
    if (d->h[0] == NULL)
      return false;
    d->nh = 1;
    if (nbd_is_read_only (d->h[0]) == 1) {
      *err = g_strdup_printf ("DEST %s is read-only", d->name);
      return false;
    }
    d->size = nbd_get_size (d->h[0]);
    d->can_zero = nbd_can_zero (d->h[0]) == 1;
    if (nbd_can_multi_conn (d->h[0]) == 1)
      for (i = 1; i < connections; i++) {
        d->h[i] = connect_uri ("DEST", d->name, false, err);
        if (d->h[i] == NULL)
          return false;
        d->nh++;
      }
    return true;
  }

  /* A missing file is created by dest_prepare, once the checks pass. */
  d->fd = open (d->name, O_RDWR | O_CLOEXEC);
  if (d->fd == -1 && errno == ENOENT) {
    g_autofree char *dir = g_path_get_dirname (d->name);

    if (access (dir, W_OK | X_OK) == -1) {
      *err = g_strdup_printf ("DEST %s: cannot create it: %s: %s", d->name,
                              dir, g_strerror (errno));
      return false;
    }
    d->created = d->regular = true;
    return true;
  }
  if (d->fd == -1 || fstat (d->fd, &st) == -1) {
    *err = g_strdup_printf ("DEST %s: %s", d->name, g_strerror (errno));
    return false;
  }
  if (S_ISREG (st.st_mode)) {
    d->regular = true;
    d->size = st.st_size;
  }
  else if (S_ISBLK (st.st_mode)) {
    if (ioctl (d->fd, BLKGETSIZE64, &d->size) == -1) {
      *err = g_strdup_printf ("DEST %s: BLKGETSIZE64: %s", d->name,
                              g_strerror (errno));
      return false;
    }
  }
  else {
    *err = g_strdup_printf ("DEST %s is not a regular file, a block device "
                            "or an NBD URI", d->name);
    return false;
  }
  return true;
}

static bool
dest_close (struct dest *d, char **err)
{
  bool ok = true;
  int i;

  for (i = 0; i < d->nh; i++) {
    if (d->h[i] && nbd_shutdown (d->h[i], 0) == -1 && ok && err) {
      *err = g_strdup_printf ("DEST %s: %s", d->name, nbd_get_error ());
      ok = false;
    }
    nbd_close (d->h[i]);
    d->h[i] = NULL;
  }
  d->nh = 0;
  if (d->fd >= 0 && close (d->fd) == -1 && ok && err) {
    *err = g_strdup_printf ("DEST %s: %s", d->name, g_strerror (errno));
    ok = false;
  }
  d->fd = -1;
  return ok;
}

/* Can DEST hold the device?  (A raw file is resized to fit.) */
static bool
dest_check_size (const struct dest *d, uint64_t size, char **err)
{
  if (!d->nbd && d->regular)
    return true;
  if (d->nbd ? d->size != size : d->size < size) {
    *err = g_strdup_printf ("DEST %s is %" PRIu64 " bytes; the source is %"
                            PRIu64 " bytes%s", d->name, d->size, size,
                            d->nbd ? ": make them the same size" : "");
    return false;
  }
  return true;
}

/* Make DEST ready: create a missing file, and for a full backup of a
 * regular file start from all zeroes at the device's size (so that
 * holes need no work and stay holes).
 */
static bool
dest_prepare (struct dest *d, uint64_t size, bool full, char **err)
{
  if (d->nbd || !d->regular)
    return true;
  if (d->created) {
    d->fd = open (d->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (d->fd == -1) {
      *err = g_strdup_printf ("DEST %s: %s", d->name, g_strerror (errno));
      return false;
    }
  }
  if (full || d->created) {
    if (ftruncate (d->fd, 0) == -1 || ftruncate (d->fd, size) == -1) {
      *err = g_strdup_printf ("DEST %s: truncate: %s", d->name,
                              g_strerror (errno));
      return false;
    }
    d->size = size;
    d->known_zero = true;
  }
  return true;
}

static bool
dest_flush (struct dest *d, char **err)
{
  int i;

  for (i = 0; i < d->nh; i++)
    if (nbd_can_flush (d->h[i]) == 1 && nbd_flush (d->h[i], 0) == -1) {
      *err = g_strdup_printf ("DEST %s: flush: %s", d->name,
                              nbd_get_error ());
      return false;
    }
  if (d->fd >= 0) {
    if (fsync (d->fd) == -1) {
      *err = g_strdup_printf ("DEST %s: fsync: %s", d->name,
                              g_strerror (errno));
      return false;
    }
    if (d->created && !fsync_dir_of (d->name, err))
      return false;
  }
  return true;
}

/* A unit of work: a byte range of the device. */
struct unit {
  uint64_t offset;
  uint64_t length;
};

/**
 * struct job - the copy (or the verify pass) shared by the workers.
 * @src: the source.
 * @dst: the destination.
 * @sh: source connections, one per worker.
 * @n: workers.
 * @units: the work, in device order.
 * @verify: this is the verify pass.
 * @next: the next unit to take (atomic).
 * @done: bytes of units finished (atomic).
 * @total: bytes of all units.
 * @read, @written, @zeroed: bytes read from the source, written as data
 *   and made holes (atomic).
 * @mismatches: verify: units that differ (atomic).
 * @first_mismatch: verify: the lowest offset that differs (under @lock).
 * @finished: workers that returned (atomic).
 * @failed: a worker failed; the others stop (atomic).
 * @lock: guards @error and @first_mismatch.
 * @error: the first error.
 */
struct job {
  struct source *src;
  struct dest *dst;
  struct nbd_handle *sh[MAX_CONNECTIONS];
  int n;
  GArray *units;
  bool verify;
  guint next;
  guint64 done;
  guint64 total;
  guint64 read;
  guint64 written;
  guint64 zeroed;
  guint64 mismatches;
  uint64_t first_mismatch;
  gint finished;
  gint failed;
  pthread_mutex_t lock;
  char *error;
};

struct worker {
  struct job *job;
  int index;
  pthread_t thread;
  char *buf;
  char *buf2;
};

static void
job_fail (struct job *job, char *msg)
{
  pthread_mutex_lock (&job->lock);
  if (job->error == NULL)
    job->error = msg;
  else
    g_free (msg);
  pthread_mutex_unlock (&job->lock);
  g_atomic_int_set (&job->failed, 1);
}

static const char zeroes[UNIT_MAX];

static bool
dest_write (struct worker *w, const void *buf, uint64_t len, uint64_t off,
            char **err)
{
  struct dest *d = w->job->dst;
  size_t done = 0;

  if (d->nbd) {
    if (nbd_pwrite (d->h[w->index % d->nh], buf, len, off, 0) == -1) {
      *err = g_strdup_printf ("DEST %s: write at %" PRIu64 ": %s", d->name,
                              off, nbd_get_error ());
      return false;
    }
    return true;
  }
  while (done < len) {
    ssize_t r = pwrite (d->fd, (const char *) buf + done, len - done,
                        off + done);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      *err = g_strdup_printf ("DEST %s: write at %" PRIu64 ": %s", d->name,
                              off + done, g_strerror (errno));
      return false;
    }
    done += r;
  }
  return true;
}

/* Make [off, off + len) of DEST read as zero, as a hole where it can. */
static bool
dest_zero (struct worker *w, uint64_t len, uint64_t off, char **err)
{
  struct dest *d = w->job->dst;

  __atomic_add_fetch (&w->job->zeroed, len, __ATOMIC_RELAXED);
  if (d->known_zero || len == 0)
    return true;
  if (d->nbd && d->can_zero) {
    if (nbd_zero (d->h[w->index % d->nh], len, off, 0) == -1) {
      *err = g_strdup_printf ("DEST %s: write zeroes at %" PRIu64 ": %s",
                              d->name, off, nbd_get_error ());
      return false;
    }
    return true;
  }
  if (!d->nbd) {
    if (fallocate (d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                   off, len) == 0)
      return true;
    if (errno != EOPNOTSUPP && errno != ENOSYS) {
      *err = g_strdup_printf ("DEST %s: punch hole at %" PRIu64 ": %s",
                              d->name, off, g_strerror (errno));
      return false;
    }
    if (fallocate (d->fd, FALLOC_FL_ZERO_RANGE, off, len) == 0)
      return true;
  }
  while (len > 0) {
    uint64_t n = MIN (len, (uint64_t) UNIT_MAX);
    if (!dest_write (w, zeroes, n, off, err))
      return false;
    off += n;
    len -= n;
  }
  return true;
}

static bool
is_zero (const char *buf, size_t len)
{
  return len == 0 || (buf[0] == 0 && memcmp (buf, buf + 1, len - 1) == 0);
}

/* Data read at [off, off + len) in @buf: zero runs of whole ZERO_GRAIN
 * pieces become holes, the rest is written.
 */
static bool
write_data (struct worker *w, const char *buf, uint64_t len, uint64_t off,
            char **err)
{
  uint64_t pos = 0, run = 0;
  bool run_zero = false;

  while (pos < len) {
    uint64_t piece = MIN (len - pos, ZERO_GRAIN - (off + pos) % ZERO_GRAIN);
    bool z = piece == ZERO_GRAIN && is_zero (buf + pos, piece);

    if (pos > run && z != run_zero) {
      if (run_zero ? !dest_zero (w, pos - run, off + run, err)
          : !dest_write (w, buf + run, pos - run, off + run, err))
        return false;
      if (!run_zero)
        __atomic_add_fetch (&w->job->written, pos - run, __ATOMIC_RELAXED);
      run = pos;
    }
    run_zero = z;
    pos += piece;
  }
  if (run_zero)
    return dest_zero (w, len - run, off + run, err);
  __atomic_add_fetch (&w->job->written, len - run, __ATOMIC_RELAXED);
  return dest_write (w, buf + run, len - run, off + run, err);
}

/* Extents of one block status reply, clipped to the unit. */
struct extents {
  uint64_t start, end;
  uint64_t covered;
  GArray *a;                    /* struct unit, with length | zero flag */
  GArray *zero;                 /* bool per entry of @a */
};

static int
extent_cb (void *opaque, const char *context, uint64_t offset,
           uint32_t *entries, size_t n, int *error)
{
  struct extents *e = opaque;
  size_t i;

  if (strcmp (context, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0)
    return 0;
  for (i = 0; i + 1 < n && offset < e->end; i += 2) {
    struct unit u = { offset, MIN ((uint64_t) entries[i], e->end - offset) };
    bool z = entries[i + 1] & LIBNBD_STATE_ZERO;

    if (u.length == 0)
      break;
    g_array_append_val (e->a, u);
    g_array_append_val (e->zero, z);
    offset += u.length;
  }
  e->covered = offset;
  return 0;
}

static bool
copy_unit (struct worker *w, const struct unit *u, char **err)
{
  struct job *job = w->job;
  struct nbd_handle *sh = job->sh[w->index];
  g_autoptr (GArray) a = g_array_new (FALSE, FALSE, sizeof (struct unit));
  g_autoptr (GArray) zero = g_array_new (FALSE, FALSE, sizeof (bool));
  uint64_t end = u->offset + u->length;
  guint i;

  if (job->src->block_status) {
    struct extents e = { u->offset, end, u->offset, a, zero };

    while (e.covered < end) {
      uint64_t at = e.covered;
      if (nbd_block_status (sh, end - at, at,
                            (nbd_extent_callback) { .callback = extent_cb,
                                                    .user_data = &e }, 0)
          == -1) {
        *err = g_strdup_printf ("source: block status at %" PRIu64 ": %s",
                                at, nbd_get_error ());
        return false;
      }
      if (e.covered <= at) {
        *err = g_strdup_printf ("source: block status at %" PRIu64
                                ": no progress", at);
        return false;
      }
    }
  }
  else {
    bool z = false;
    g_array_append_val (a, *u);
    g_array_append_val (zero, z);
  }

  for (i = 0; i < a->len; i++) {
    const struct unit *x = &g_array_index (a, struct unit, i);

    if (g_array_index (zero, bool, i)) {
      if (!dest_zero (w, x->length, x->offset, err))
        return false;
      continue;
    }
    if (nbd_pread (sh, w->buf, x->length, x->offset, 0) == -1) {
      *err = g_strdup_printf ("source: read at %" PRIu64 ": %s", x->offset,
                              nbd_get_error ());
      return false;
    }
    __atomic_add_fetch (&job->read, x->length, __ATOMIC_RELAXED);
    if (!write_data (w, w->buf, x->length, x->offset, err))
      return false;
  }
  return true;
}

static bool
dest_read (struct worker *w, char *buf, uint64_t len, uint64_t off,
           char **err)
{
  struct dest *d = w->job->dst;
  size_t done = 0;

  if (d->nbd) {
    if (nbd_pread (d->h[w->index % d->nh], buf, len, off, 0) == -1) {
      *err = g_strdup_printf ("DEST %s: read at %" PRIu64 ": %s", d->name,
                              off, nbd_get_error ());
      return false;
    }
    return true;
  }
  while (done < len) {
    ssize_t r = pread (d->fd, buf + done, len - done, off + done);
    if (r <= 0) {
      if (r == -1 && errno == EINTR)
        continue;
      *err = g_strdup_printf ("DEST %s: read at %" PRIu64 ": %s", d->name,
                              off + done, r == 0 ? "end of file"
                              : g_strerror (errno));
      return false;
    }
    done += r;
  }
  return true;
}

/* Verify: the SHA-256 of the unit in the source and in DEST. */
static bool
verify_unit (struct worker *w, const struct unit *u, char **err)
{
  struct job *job = w->job;
  g_autoptr (GChecksum) a = g_checksum_new (G_CHECKSUM_SHA256);
  g_autoptr (GChecksum) b = g_checksum_new (G_CHECKSUM_SHA256);

  if (nbd_pread (job->sh[w->index], w->buf, u->length, u->offset, 0) == -1) {
    *err = g_strdup_printf ("source: read at %" PRIu64 ": %s", u->offset,
                            nbd_get_error ());
    return false;
  }
  __atomic_add_fetch (&job->read, u->length, __ATOMIC_RELAXED);
  if (!dest_read (w, w->buf2, u->length, u->offset, err))
    return false;
  g_checksum_update (a, (const guchar *) w->buf, u->length);
  g_checksum_update (b, (const guchar *) w->buf2, u->length);
  if (strcmp (g_checksum_get_string (a), g_checksum_get_string (b)) != 0) {
    __atomic_add_fetch (&job->mismatches, 1, __ATOMIC_RELAXED);
    pthread_mutex_lock (&job->lock);
    if (u->offset < job->first_mismatch)
      job->first_mismatch = u->offset;
    pthread_mutex_unlock (&job->lock);
  }
  return true;
}

static void *
worker_run (void *opaque)
{
  struct worker *w = opaque;
  struct job *job = w->job;

  while (!g_atomic_int_get (&job->failed)) {
    guint i = __atomic_fetch_add (&job->next, 1, __ATOMIC_RELAXED);
    const struct unit *u;
    char *err = NULL;

    if (i >= job->units->len)
      break;
    u = &g_array_index (job->units, struct unit, i);
    if (!(job->verify ? verify_unit (w, u, &err) : copy_unit (w, u, &err))) {
      job_fail (job, err);
      break;
    }
    __atomic_add_fetch (&job->done, u->length, __ATOMIC_RELAXED);
  }
  g_atomic_int_inc (&job->finished);
  return NULL;
}

static void
progress_draw (const char *what, guint64 done, guint64 total, gint64 t0)
{
  double secs = (g_get_monotonic_time () - t0) / 1e6;
  g_autofree char *rate = nbdsnap_format_size (secs > 0 ? done / secs : 0);
  int pct = total ? (int) (done * 100 / total) : 100;
  char bar[31];

  memset (bar, ' ', 30);
  memset (bar, '#', pct * 30 / 100);
  bar[30] = '\0';
  fprintf (stderr, "\r%-6s [%s] %3d%% %s/s \033[K", what, bar, pct, rate);
}

/* Run the workers over @job->units; with @progress, draw a bar on
 * stderr meanwhile.  Returns false with *@err on failure.
 */
static bool
job_run (struct job *job, bool progress, char **err)
{
  struct worker w[MAX_CONNECTIONS];
  gint64 t0 = g_get_monotonic_time ();
  int i, started = 0;
  guint j;

  job->next = 0;
  job->done = 0;
  job->total = 0;
  job->finished = 0;
  job->failed = 0;
  for (j = 0; j < job->units->len; j++)
    job->total += g_array_index (job->units, struct unit, j).length;
  for (i = 0; i < job->n; i++) {
    int e;

    w[i] = (struct worker) { .job = job, .index = i,
                             .buf = g_malloc (UNIT_MAX),
                             .buf2 = job->verify ? g_malloc (UNIT_MAX)
                             : NULL };
    e = pthread_create (&w[i].thread, NULL, worker_run, &w[i]);
    if (e != 0) {
      job_fail (job, g_strdup_printf ("pthread_create: %s", g_strerror (e)));
      g_free (w[i].buf);
      g_free (w[i].buf2);
      break;
    }
    started++;
  }
  while (g_atomic_int_get (&job->finished) < started) {
    if (progress)
      progress_draw (job->verify ? "verify" : "copy",
                     __atomic_load_n (&job->done, __ATOMIC_RELAXED),
                     job->total, t0);
    g_usleep (progress ? 200000 : 20000);
  }
  for (i = 0; i < started; i++) {
    pthread_join (w[i].thread, NULL);
    g_free (w[i].buf);
    g_free (w[i].buf2);
  }
  if (progress) {
    progress_draw (job->verify ? "verify" : "copy", job->done, job->total,
                   t0);
    fprintf (stderr, "\r\033[K");
  }
  if (job->error) {
    *err = g_steal_pointer (&job->error);
    return false;
  }
  return true;
}

/* The units: the selected blocks, runs of them cut at UNIT_MAX. */
static GArray *
units_build (const struct source *s, bool full, unsigned base,
             uint64_t *blocks)
{
  GArray *a = g_array_new (FALSE, FALSE, sizeof (struct unit));
  uint64_t i = 0, j;

  *blocks = 0;
  while (i < s->block_count) {
    uint64_t start, end;

    if (!full && s->map[i] <= base) {
      i++;
      continue;
    }
    for (j = i + 1; j < s->block_count && (full || s->map[j] > base); j++)
      ;
    *blocks += j - i;
    start = i * s->block_size;
    end = MIN (j * s->block_size, s->size);
    while (start < end) {
      struct unit u = { start, MIN (end - start, (uint64_t) UNIT_MAX) };
      g_array_append_val (a, u);
      start += u.length;
    }
    i = j;
  }
  return a;
}

/* Full or incremental?  Returns the reason for a full backup when
 * --incremental was asked for, else NULL (and *@base is set).
 */
static char *
choose_mode (const struct source *s, const struct dest *d,
             const char *state_path, int loaded, const struct state *st,
             const char *why, unsigned *base)
{
  if (loaded == 0)
    return g_strdup_printf ("no state file %s", state_path);
  if (loaded < 0)
    return g_strdup_printf ("state file %s is unusable: %s", state_path,
                            why);
  if (strcmp (st->device, s->device) != 0)
    return g_strdup_printf ("state file %s is for device %s, the source is "
                            "device %s", state_path, st->device, s->device);
  if (strcmp (st->generation, s->generation) != 0)
    return g_strdup_printf ("the CBT generation differs (backup %s, source "
                            "%s): the changes since the backup are not "
                            "known", st->generation, s->generation);
  if (st->size != s->size)
    return g_strdup_printf ("the size differs (backup %" PRIu64 ", source %"
                            PRIu64 " bytes)", st->size, s->size);
  if (st->block_size != s->block_size)
    return g_strdup_printf ("the CBT block size differs (backup %" PRIu32
                            ", source %" PRIu32 ")", st->block_size,
                            s->block_size);
  if (d->created)
    return g_strdup_printf ("DEST %s did not exist", d->name);
  if (!d->nbd && d->regular && d->size != s->size)
    return g_strdup_printf ("DEST %s is %" PRIu64 " bytes, not %" PRIu64,
                            d->name, d->size, s->size);
  if (st->complete && st->changes_number > s->number)
    return g_strdup_printf ("the backup is of a later snapshot (changes "
                            "number %u) than the source (%u)",
                            st->changes_number, s->number);
  if (!st->complete && st->target_number > s->number)
    return g_strdup_printf ("an interrupted backup went to a later snapshot "
                            "(changes number %u) than the source (%u)",
                            st->target_number, s->number);
  *base = st->changes_number;
  return NULL;
}

int
cmd_backup (struct cli *cli, int argc, char **argv)
{
  struct source src = { 0 };
  struct dest dst = { .fd = -1 };
  struct job job = { .src = &src, .dst = &dst,
                     .lock = PTHREAD_MUTEX_INITIALIZER };
  struct state st, next;
  g_autofree char *err = NULL, *why = NULL, *reason = NULL;
  g_autofree char *state_path = NULL;
  g_autoptr (GArray) verify_units = NULL;
  bool progress;
  bool full = true, resumed = false;
  unsigned base = 0;
  uint64_t blocks = 0;
  guint64 copy_read;
  gint64 t0 = g_get_monotonic_time ();
  double secs;
  int loaded, i, n, status = CLI_FAILED;

  opt_incremental = opt_verify = FALSE;
  opt_connections = 4;
  opt_state = NULL;
  cli_parse (cli, backup_entries, &argc, &argv, 2, 2);
  progress = isatty (STDERR_FILENO);
  if (opt_connections < 1 || opt_connections > MAX_CONNECTIONS)
    cli_usage_error (cli, "--connections %d: give 1 to %d", opt_connections,
                     MAX_CONNECTIONS);
  if (!is_nbd_uri (argv[0]))
    cli_usage_error (cli, "SOURCE '%s' is not an NBD URI (nbd://, nbds://, "
                     "nbd+unix://)", argv[0]);
  src.uri = argv[0];
  dst.name = argv[1];
  dst.nbd = is_nbd_uri (argv[1]);
  if (opt_state)
    state_path = g_steal_pointer (&opt_state);
  else if (dst.nbd)
    cli_usage_error (cli, "DEST is an NBD URI: give --state FILE (where the "
                     "backup's state is kept)");
  else
    state_path = g_strdup_printf ("%s.nbdsnap.json", dst.name);

  /* The source: the image, its CBT, then more connections. */
  job.sh[0] = connect_uri ("source", src.uri, true, &err);
  if (job.sh[0] == NULL)
    goto out;
  job.n = 1;
  if (!source_parse_export (&src, job.sh[0], &err))
    goto out;
  src.block_status = nbd_can_meta_context
    (job.sh[0], LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
  src.multi_conn = nbd_can_multi_conn (job.sh[0]) == 1;
  if (!source_read_cbt (&src, &err))
    goto out;
  if ((uint64_t) nbd_get_size (job.sh[0]) != src.size) {
    err = g_strdup_printf ("source %s is %" PRIi64 " bytes, its CBT map "
                           "says %" PRIu64, src.export,
                           nbd_get_size (job.sh[0]), src.size);
    goto out;
  }
  n = src.multi_conn ? opt_connections : 1;
  for (i = 1; i < n; i++) {
    job.sh[i] = connect_uri ("source", src.uri, true, &err);
    if (job.sh[i] == NULL)
      goto out;
    job.n++;
  }

  if (!dest_open (&dst, job.n, &err) ||
      !dest_check_size (&dst, src.size, &err))
    goto out;

  /* Full or incremental. */
  loaded = state_load (state_path, &st, &why);
  if (opt_incremental) {
    reason = choose_mode (&src, &dst, state_path, loaded, &st, why, &base);
    full = reason != NULL;
    if (full)
      fprintf (stderr, "nbdsnapctl: backup: %s: making a full backup\n",
               reason);
    else if (!st.complete) {
      resumed = true;
      fprintf (stderr, "nbdsnapctl: backup: resuming an interrupted "
               "incremental backup from changes number %u\n", base);
    }
  }

  /* Say what DEST is about to hold before writing any of it. */
  if (full) {
    if (!state_remove (state_path, &err))
      goto out;
  }
  else {
    next = st;
    next.complete = false;
    next.target_number = src.number;
    g_strlcpy (next.target_id, src.id, sizeof next.target_id);
    if (!state_write (state_path, &next, &err))
      goto out;
  }
  if (!dest_prepare (&dst, src.size, full, &err))
    goto out;

  job.units = units_build (&src, full, base, &blocks);
  if (!job_run (&job, progress, &err))
    goto out;
  if (!dest_flush (&dst, &err))
    goto out;
  copy_read = job.read;

  if (opt_verify) {
    verify_units = units_build (&src, true, 0, &(uint64_t) { 0 });
    g_array_unref (job.units);
    job.units = g_steal_pointer (&verify_units);
    job.verify = true;
    job.first_mismatch = UINT64_MAX;
    if (!job_run (&job, progress, &err))
      goto out;
    if (job.mismatches) {
      g_autofree char *rm_err = NULL;

      /* DEST is damaged outside what the state file describes: an
       * "incomplete" state left here would make the next incremental
       * run resume and keep the damage, so no state file at all.
       */
      if (state_remove (state_path, &rm_err))
        err = g_strdup_printf ("verify: %" G_GUINT64_FORMAT " units of DEST "
                               "%s differ from the source, the first at "
                               "offset %" PRIu64 "; the state file %s is "
                               "removed (the next backup is a full one)",
                               job.mismatches, dst.name, job.first_mismatch,
                               state_path);
      else
        err = g_strdup_printf ("verify: %" G_GUINT64_FORMAT " units of DEST "
                               "%s differ from the source, the first at "
                               "offset %" PRIu64 "; removing the state file "
                               "failed: %s (remove it before the next "
                               "backup)", job.mismatches, dst.name,
                               job.first_mismatch, rm_err);
      goto out;
    }
  }

  /* The data is safe: record what DEST holds. */
  memset (&next, 0, sizeof next);
  next.complete = true;
  g_strlcpy (next.device, src.device, sizeof next.device);
  g_strlcpy (next.generation, src.generation, sizeof next.generation);
  next.changes_number = src.number;
  g_strlcpy (next.snapshot_id, src.id, sizeof next.snapshot_id);
  next.size = src.size;
  next.block_size = src.block_size;
  if (!state_write (state_path, &next, &err))
    goto out;
  if (!dest_close (&dst, &err))
    goto out;
  secs = (g_get_monotonic_time () - t0) / 1e6;

  if (cli->json) {
    GVariantBuilder b;

    g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
#define ADD(k, v) g_variant_builder_add (&b, "{sv}", k, v)
    ADD ("mode", g_variant_new_string (full ? "full" : "incremental"));
    ADD ("reason", g_variant_new_maybe (G_VARIANT_TYPE_STRING, reason ?
                                        g_variant_new_string (reason)
                                        : NULL));
    ADD ("resumed", g_variant_new_boolean (resumed));
    ADD ("source", g_variant_new_string (src.export));
    ADD ("device", g_variant_new_string (src.device));
    ADD ("snapshot_id", g_variant_new_string (src.id));
    ADD ("generation", g_variant_new_string (src.generation));
    ADD ("changes_number", g_variant_new_uint64 (src.number));
    ADD ("base_changes_number",
         g_variant_new_maybe (G_VARIANT_TYPE_UINT64, full ? NULL
                              : g_variant_new_uint64 (base)));
    ADD ("size", g_variant_new_uint64 (src.size));
    ADD ("block_size", g_variant_new_uint64 (src.block_size));
    ADD ("block_count", g_variant_new_uint64 (src.block_count));
    ADD ("blocks", g_variant_new_uint64 (blocks));
    ADD ("bytes", g_variant_new_uint64 (job.verify ? 0 : job.total));
    ADD ("bytes_read", g_variant_new_uint64 (copy_read));
    ADD ("bytes_written", g_variant_new_uint64 (job.written));
    ADD ("bytes_zeroed", g_variant_new_uint64 (job.zeroed));
    ADD ("connections", g_variant_new_uint64 (job.n));
    ADD ("verified", g_variant_new_boolean (opt_verify));
    ADD ("seconds", g_variant_new_double (secs));
    ADD ("state", g_variant_new_string (state_path));
#undef ADD
    cli_json_write (g_variant_builder_end (&b));
  }
  else {
    g_autofree char *written = nbdsnap_format_size (job.written);
    g_autofree char *zeroed = nbdsnap_format_size (job.zeroed);

    printf ("%s backup of %s: %" PRIu64 " of %" PRIu64 " blocks, %s "
            "written, %s holes, in %.2f s%s\n",
            full ? "full" : "incremental", src.export, blocks,
            src.block_count, written, zeroed, secs,
            opt_verify ? ", verified" : "");
  }
  status = CLI_OK;

 out:
  if (job.units)
    g_array_unref (job.units);
  for (i = 0; i < job.n; i++) {
    if (job.sh[i])
      nbd_shutdown (job.sh[i], 0);
    nbd_close (job.sh[i]);
  }
  dest_close (&dst, NULL);
  source_clear (&src);
  if (status != CLI_OK)
    return cli_fail (cli, "backup: %s", err);
  return status;
}
