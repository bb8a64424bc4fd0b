/* Logging through the application's callback. */
#include <stdio.h>

#include "util.h"

static bk_log_cb log_cb;
static void *log_payload;
static int log_max = BK_LOG_WARNING;

void bk_log_set_handler(bk_log_cb cb, int max_level, void *payload)
{
	log_cb = cb;
	log_payload = payload;
	log_max = max_level;
}

bool bk__log_enabled(int level)
{
	return log_cb != NULL && level <= log_max;
}

void bk__log(int level, const char *domain, const char *fmt, ...)
{
	if (!bk__log_enabled(level))
		return;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_cb(level, domain, msg, log_payload);
}
