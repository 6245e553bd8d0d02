/* nbdsnapctl backup - full and incremental backup of a snapshot image
 * over NBD.  See docs/backup.md.
 */

#ifndef NBDSNAPCTL_BACKUP_H
#define NBDSNAPCTL_BACKUP_H

#include "cli.h"

/* nbdsnapctl backup [--incremental] [--verify] [--connections N]
 *                   [--state FILE] SOURCE DEST
 * Needs no daemon: SOURCE is an image export URI, DEST a raw file or an
 * NBD URI.  Returns an exit status (CLI_OK, CLI_FAILED, CLI_USAGE).
 */
int cmd_backup (struct cli *cli, int argc, char **argv);

#endif /* NBDSNAPCTL_BACKUP_H */
