/* libbackup: logging through an application-installed callback. */
#ifndef LIBBACKUP_LOG_H
#define LIBBACKUP_LOG_H

#include <libbackup/common.h>

BK_BEGIN_DECLS

typedef enum bk_log_level {
	BK_LOG_ERROR = 0,
	BK_LOG_WARNING = 1,
	BK_LOG_INFO = 2,
	BK_LOG_DEBUG = 3,
	BK_LOG_TRACE = 4,
} bk_log_level;

/* `domain` names the module ("device", "api"); `msg` is one line without a
 * trailing newline. Never called with a secret in `msg`. */
typedef void (*bk_log_cb)(int level, const char *domain, const char *msg, void *payload);

/* Installs the handler (NULL: discard) and the most verbose level passed to
 * it. Call once, during initialisation, before other threads use the library. */
BK_EXTERN void bk_log_set_handler(bk_log_cb cb, int max_level, void *payload);

BK_END_DECLS

#endif
