/* libbackup: version information. */
#ifndef LIBBACKUP_VERSION_H
#define LIBBACKUP_VERSION_H

#include <libbackup/common.h>

BK_BEGIN_DECLS

#define BK_VERSION_MAJOR 0
#define BK_VERSION_MINOR 1
#define BK_VERSION_PATCH 0
#define BK_VERSION_STRING "0.1.0"

/* The version of the library actually linked (may differ from the header). */
BK_EXTERN const char *bk_version(void);

/* One line naming the versions of the libraries libbackup was linked with
 * ("libsodium 1.0.18, libarchive 3.6.2, ..."). */
BK_EXTERN const char *bk_version_dependencies(void);

BK_END_DECLS

#endif
