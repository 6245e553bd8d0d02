/* nbdsnap tests - start the real nbdkit with the real plugin, connect
 * real clients (libnbd) and the ctl client, model block contents.
 */

#ifndef NBDSNAP_TEST_HARNESS_H
#define NBDSNAP_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <libnbd.h>

#include <nbdsnap/ctl.h>

#include "ctl_client.h"

/**
 * struct server - one nbdkit process serving the nbdsnap plugin.
 * @pid: nbdkit's pid.
 * @dir: a private temporary directory (sockets, disks, storage).
 * @sock: the NBD unix socket.
 * @ctl: the plugin's control socket.
 */
struct server {
  pid_t pid;
  char dir[256];
  char sock[300];
  char ctl[300];
};

void die (const char *fmt, ...)
  __attribute__ ((noreturn, format (printf, 1, 2)));
#define CHECK(cond) \
  do { if (!(cond)) die ("%s:%d: check failed: %s", __FILE__, __LINE__, \
                         #cond); } while (0)

/* A temporary directory for a test (removed by server_stop). */
void test_dir (struct server *s, const char *name);

/* Start nbdkit -f -U SOCK --exit-with-parent PLUGIN control=CTL ARGS...
 * (NULL-terminated).  Waits until the server is ready.
 */
void server_start (struct server *s, const char *const *args);
void server_stop (struct server *s);
/* Stop nbdkit only (keep the directory). */
void server_kill (struct server *s);

/* Connect to an export; dies on failure. */
struct nbd_handle *nbd_open_export (struct server *s, const char *export);
/* Try to connect; NULL (and the error in *msg, if given) on failure. */
struct nbd_handle *nbd_try_export (struct server *s, const char *export,
                                   char *msg, size_t msglen);

/* Make a file of @size bytes in the test directory; returns its path
 * (static buffer per call: copy it).
 */
char *make_file (struct server *s, const char *name, uint64_t size);

/* ctl helpers: each dies on failure. */
struct ctl_client *ctl_open (struct server *s);
/* Create a snapshot (O_TMPFILE storage in the test dir, @limit bytes)
 * of the @n devices, take it if @take.  Fills @id and @id_str.
 */
void snap_create (struct ctl_client *c, struct server *s, uint64_t limit,
                  const char *const *devices, size_t n, bool take,
                  uint8_t id[16], char id_str[37], uint64_t *pause_ns);
void snap_destroy (struct ctl_client *c, const uint8_t id[16]);
void snap_info (struct ctl_client *c, const uint8_t id[16],
                struct nbdsnap_ctl_snapshot_info *info,
                struct nbdsnap_ctl_snapshot_info_device *devs, size_t max);
/* A ctl call expected to fail with @want; dies otherwise. */
void ctl_expect_error (struct ctl_client *c, uint16_t op, const void *body,
                       size_t len, int fd, int want);

/* Deterministic pseudo-random numbers (splitmix64). */
uint64_t rng_next (uint64_t *state);
void rng_fill (uint64_t *state, void *buf, size_t len);

/* Compare @len bytes at @offset of @got and @want in 4 KiB blocks;
 * print the first few mismatching blocks.  Returns mismatching blocks.
 */
uint64_t compare_blocks (const char *what, const unsigned char *got,
                         const unsigned char *want, uint64_t offset,
                         uint64_t len);

/* Read a whole export into @buf in pieces. */
void nbd_read_all (struct nbd_handle *h, void *buf, uint64_t size);

uint64_t now_ns (void);

#endif /* NBDSNAP_TEST_HARNESS_H */
