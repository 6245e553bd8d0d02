/* nbdsnap - default paths, from configure (see daemon/Makefile.am). */

#ifndef NBDSNAP_PATHS_H
#define NBDSNAP_PATHS_H

#ifndef NBDSNAPD_CONF
#define NBDSNAPD_CONF "/etc/nbdsnap/nbdsnapd.conf"
#endif
#ifndef NBDSNAP_STATEDIR
#define NBDSNAP_STATEDIR "/var/lib/nbdsnap"
#endif
#ifndef NBDKIT_PATH
#define NBDKIT_PATH "nbdkit"
#endif
#ifndef NBDSNAP_PLUGIN_PATH
#define NBDSNAP_PLUGIN_PATH "/usr/lib/x86_64-linux-gnu/nbdkit/plugins/nbdkit-nbdsnap-plugin.so"
#endif

#endif /* NBDSNAP_PATHS_H */
