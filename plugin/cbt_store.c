/* nbdsnap - cbt store: a device's CBT state across restarts.
 *
 * The state file STATEDIR/NAME.cbt has the format of
 * include/nbdsnap/cbt-format.h.  At start the plugin loads it (if it is
 * sound and clean) and at once rewrites it with the CLEAN flag clear:
 * from then on, what is on disk says "in use", so a crash, a kill -9 or
 * a power cut leaves a state that the next start refuses, and the
 * device starts a new generation (the next backup is a full one).  A
 * clean shutdown saves the map with CLEAN set.  Every write of the file
 * is atomic: a temporary file in the same directory, fsync, rename over
 * the old one, fsync of the directory.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include <nbdkit-plugin.h>

#include "cbt_store.h"
#include "common.h"
#include "crc32c.h"
#include "tracker.h"

void
cbt_header_fill (struct nbdsnap_cbt_header *h, uint64_t device_size,
                 uint32_t block_size, uint64_t block_count, uint32_t flags,
                 const uint8_t generation[16], uint8_t changes_number,
                 const uint8_t snapshot_id[16], const uint8_t *map)
{
  memset (h, 0, sizeof *h);
  memcpy (h->magic, NBDSNAP_CBT_MAGIC, 8);
  h->version = NBDSNAP_CBT_VERSION;
  h->header_size = NBDSNAP_CBT_HEADER_SIZE;
  h->device_size = device_size;
  h->block_count = block_count;
  h->block_size = block_size;
  h->flags = flags;
  memcpy (h->generation, generation, 16);
  h->changes_number = changes_number;
  if (snapshot_id)
    memcpy (h->snapshot_id, snapshot_id, 16);
  h->map_crc32c = crc32c (0, map, block_count);
  h->header_crc32c = crc32c (0, h, sizeof *h);
}

const char *
cbt_header_check (const struct nbdsnap_cbt_header *h)
{
  struct nbdsnap_cbt_header copy = *h;
  size_t i;

  if (memcmp (h->magic, NBDSNAP_CBT_MAGIC, 8) != 0)
    return "not a CBT state file (bad magic)";
  if (h->version != NBDSNAP_CBT_VERSION)
    return "unknown format version";
  if (h->header_size != NBDSNAP_CBT_HEADER_SIZE)
    return "bad header size";
  copy.header_crc32c = 0;
  if (crc32c (0, &copy, sizeof copy) != h->header_crc32c)
    return "header checksum mismatch (damaged)";
  if (h->flags & ~(uint32_t) (NBDSNAP_CBT_FLAG_CLEAN |
                              NBDSNAP_CBT_FLAG_SNAPSHOT))
    return "unknown flag bits set";
  for (i = 0; i < sizeof h->pad; i++)
    if (h->pad[i] != 0)
      return "non-zero pad bytes";
  if (h->block_size < 512 || !IS_POWER_OF_2 (h->block_size) ||
      h->block_count != (h->device_size
                         ? DIV_ROUND_UP (h->device_size, h->block_size) : 1))
    return "inconsistent block size and count";
  if (h->changes_number == 0)
    return "changes number 0";
  return NULL;
}

static void
state_path (char *buf, size_t len, const char *statedir, const char *name,
            const char *suffix)
{
  snprintf (buf, len, "%s/%s.cbt%s", statedir, name, suffix);
}

/* Read and validate; returns the reason it cannot be trusted, or NULL
 * with the map loaded into @map and header into @h.
 */
static const char *
read_state (const char *path, struct tracker *t, uint8_t *map,
            struct nbdsnap_cbt_header *h, bool *missing)
{
  static char reason[128];
  static const uint8_t zero_id[16];
  uint8_t block[NBDSNAP_CBT_HEADER_SIZE];
  struct stat st;
  const char *why = NULL;
  size_t i;
  int fd;

  *missing = false;
  fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd == -1) {
    if (errno == ENOENT) {
      *missing = true;
      return "no saved state";
    }
    snprintf (reason, sizeof reason, "cannot open: %s", strerror (errno));
    return reason;
  }
  if (fstat (fd, &st) == -1 || !S_ISREG (st.st_mode)) {
    why = "not a regular file";
    goto out;
  }
  if ((uint64_t) st.st_size < NBDSNAP_CBT_HEADER_SIZE ||
      full_pread (fd, block, sizeof block, 0) == -1) {
    why = "truncated header";
    goto out;
  }
  memcpy (h, block, sizeof *h);
  if ((why = cbt_header_check (h)) != NULL)
    goto out;
  /* A .cbt export saved as a state file: its number is a snapshot's,
   * not the active one, so it must not be loaded.
   */
  if (h->flags & NBDSNAP_CBT_FLAG_SNAPSHOT) {
    why = "SNAPSHOT flag set (a snapshot's .cbt export, not a state file)";
    goto out;
  }
  if (memcmp (h->snapshot_id, zero_id, sizeof zero_id) != 0) {
    why = "non-zero snapshot_id";
    goto out;
  }
  for (i = sizeof *h; i < sizeof block; i++)
    if (block[i] != 0) {
      snprintf (reason, sizeof reason,
                "non-zero reserved byte at offset %zu", i);
      why = reason;
      goto out;
    }
  if ((uint64_t) st.st_size != NBDSNAP_CBT_HEADER_SIZE + h->block_count) {
    why = "truncated or oversized map";
    goto out;
  }
  if (!(h->flags & NBDSNAP_CBT_FLAG_CLEAN)) {
    why = "not saved by a clean shutdown (crash, kill or power loss)";
    goto out;
  }
  if (h->device_size != t->size) {
    snprintf (reason, sizeof reason, "device size changed from %" PRIu64
              " to %" PRIu64, h->device_size, t->size);
    why = reason;
    goto out;
  }
  if (h->block_size != t->cbt->block_size) {
    snprintf (reason, sizeof reason, "tracking block size changed from %"
              PRIu32 " to %" PRIu32, h->block_size, t->cbt->block_size);
    why = reason;
    goto out;
  }
  if (full_pread (fd, map, h->block_count, NBDSNAP_CBT_HEADER_SIZE) == -1) {
    why = "cannot read the map";
    goto out;
  }
  if (crc32c (0, map, h->block_count) != h->map_crc32c) {
    why = "map checksum mismatch (damaged)";
    goto out;
  }
 out:
  close (fd);
  return why;
}

int
cbt_store_open (const char *statedir, struct tracker *t, int *err)
{
  struct nbdsnap_cbt_header h;
  char path[4096];
  const char *why;
  uint8_t *map;
  bool missing;

  state_path (path, sizeof path, statedir, t->name, "");
  map = malloc (t->cbt->block_count);
  if (map == NULL) {
    *err = errno;
    return -1;
  }
  why = read_state (path, t, map, &h, &missing);
  if (why == NULL) {
    char gen[37];
    cbt_map_load (t->cbt, map, h.changes_number, h.generation);
    uuid_unparse_lower (h.generation, gen);
    nbdkit_debug ("device %s: CBT state loaded: generation %s, changes "
                  "number %u", t->name, gen, h.changes_number);
  }
  else if (!missing)
    nbdkit_error ("device %s: CBT state %s: %s; starting a new generation "
                  "(the next backup must be a full one)", t->name, path, why);
  free (map);
  return cbt_store_save (statedir, t, false, err);
}

int
cbt_store_save (const char *statedir, struct tracker *t, bool clean,
                int *err)
{
  struct nbdsnap_cbt_header h;
  char path[4096], tmp[4096];
  static const char zeroes[NBDSNAP_CBT_HEADER_SIZE];
  uint8_t number, gen[16];
  uint8_t *map;
  int fd, dfd;

  map = malloc (t->cbt->block_count);
  if (map == NULL) {
    *err = errno;
    return -1;
  }
  cbt_map_copy_active (t->cbt, map, &number, gen);
  cbt_header_fill (&h, t->size, t->cbt->block_size, t->cbt->block_count,
                   clean ? NBDSNAP_CBT_FLAG_CLEAN : 0, gen, number, NULL,
                   map);

  state_path (path, sizeof path, statedir, t->name, "");
  state_path (tmp, sizeof tmp, statedir, t->name, ".tmp");
  fd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd == -1)
    goto fail;
  if (full_pwrite (fd, zeroes, sizeof zeroes, 0) == -1 ||
      full_pwrite (fd, &h, sizeof h, 0) == -1 ||
      full_pwrite (fd, map, t->cbt->block_count,
                   NBDSNAP_CBT_HEADER_SIZE) == -1 ||
      fsync (fd) == -1) {
    int e = errno;
    close (fd);
    unlink (tmp);
    errno = e;
    goto fail;
  }
  if (close (fd) == -1 || rename (tmp, path) == -1) {
    int e = errno;
    unlink (tmp);
    errno = e;
    goto fail;
  }
  dfd = open (statedir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync (dfd);
    close (dfd);
  }
  free (map);
  return 0;

 fail:
  *err = errno;
  nbdkit_error ("device %s: cannot save CBT state %s: %m", t->name, path);
  free (map);
  return -1;
}
