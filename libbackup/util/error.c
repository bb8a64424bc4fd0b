/* Error codes and the thread-local last error. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

#define MSG_MAX 1024

typedef struct error_state {
	bk_error pub;
	char message[MSG_MAX];
	char scratch[MSG_MAX];
} error_state;

static _Thread_local error_state tls_error;

static const struct {
	int code;
	const char *name;
	const char *text;
} codes[] = {
	{BK_OK, "ok", "success"},
	{BK_ERROR, "error", "failure"},
	{BK_EINVALID, "invalid-argument", "invalid argument"},
	{BK_ENOMEM, "out-of-memory", "out of memory"},
	{BK_ENOTFOUND, "not-found", "not found"},
	{BK_EVERIFY, "verify-failed", "verification failed"},
	{BK_EINCOMPAT, "incompatible", "incompatible"},
	{BK_EAUTH, "auth-failed", "authentication failed"},
	{BK_ETIMEOUT, "timeout", "timed out"},
	{BK_EDISCONNECTED, "disconnected", "disconnected"},
	{BK_EBUSY, "busy", "busy"},
	{BK_ENOSPACE, "no-space", "not enough space"},
	{BK_EAPI, "api-error", "private API error"},
	{BK_ECANCELLED, "cancelled", "cancelled"},
	{BK_EUSER, "usage", "usage error"},
	{BK_EIO, "io-error", "input/output error"},
	{BK_EEXIST, "exists", "already exists"},
	{BK_EROLLBACK, "rolled-back", "firmware rolled back"},
	{BK_EFORMAT, "malformed", "malformed input"},
};

const char *bk_strerror(int code)
{
	for (size_t i = 0; i < BK_ARRAY_LEN(codes); i++)
		if (codes[i].code == code)
			return codes[i].text;
	return "unknown error";
}

const char *bk_error_code_name(int code)
{
	for (size_t i = 0; i < BK_ARRAY_LEN(codes); i++)
		if (codes[i].code == code)
			return codes[i].name;
	return "error";
}

const bk_error *bk_error_last(void)
{
	error_state *st = &tls_error;
	if (st->pub.message == NULL) {
		st->pub.code = BK_OK;
		st->pub.reason = "ok";
		st->pub.message = "";
	}
	return &st->pub;
}

void bk_error_clear(void)
{
	tls_error.pub.code = BK_OK;
	tls_error.pub.reason = "ok";
	tls_error.message[0] = '\0';
	tls_error.pub.message = tls_error.message;
}

int bk__error_setv(int code, const char *reason, const char *fmt, va_list ap)
{
	error_state *st = &tls_error;
	vsnprintf(st->message, sizeof(st->message), fmt, ap);
	st->pub.code = code;
	st->pub.reason = reason ? reason : bk_error_code_name(code);
	st->pub.message = st->message;
	return code;
}

int bk__error_set(int code, const char *reason, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	bk__error_setv(code, reason, fmt, ap);
	va_end(ap);
	return code;
}

int bk__error_prefix(int code, const char *fmt, ...)
{
	error_state *st = &tls_error;
	char prefix[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	if (st->pub.message == NULL || st->pub.code != code || st->pub.message != st->message) {
		/* No matching message recorded: name the code after the prefix. */
		const char *reason = st->pub.code == code && st->pub.reason ? st->pub.reason
									    : bk_error_code_name(code);
		const char *old = st->pub.code == code && st->pub.message ? st->pub.message
									   : bk_strerror(code);
		snprintf(st->scratch, sizeof(st->scratch), "%s: %s", prefix, old);
		st->pub.reason = reason;
	} else {
		snprintf(st->scratch, sizeof(st->scratch), "%s: %s", prefix, st->message);
	}
	memcpy(st->message, st->scratch, sizeof(st->message));
	st->pub.code = code;
	st->pub.message = st->message;
	return code;
}

int bk__error_oom(void)
{
	error_state *st = &tls_error;
	st->pub.code = BK_ENOMEM;
	st->pub.reason = "out-of-memory";
	st->pub.message = "out of memory";
	return BK_ENOMEM;
}

int bk__error_errno(int err, const char *fmt, ...)
{
	error_state *st = &tls_error;
	int code = BK_EIO;
	const char *reason = "io-error";
	switch (err) {
	case ENOENT:
	case ENOTDIR:
		code = BK_ENOTFOUND;
		reason = "not-found";
		break;
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		code = BK_ENOSPACE;
		reason = "no-space";
		break;
	case EEXIST:
		code = BK_EEXIST;
		reason = "exists";
		break;
	case EACCES:
	case EPERM:
		reason = "permission-denied";
		break;
	case ENOMEM:
		return bk__error_oom();
	default:
		break;
	}
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(st->scratch, sizeof(st->scratch), fmt, ap);
	va_end(ap);
	char ebuf[128];
	const char *etext = strerror_r(err, ebuf, sizeof(ebuf));
	return bk__error_set(code, reason, "%s: %s", st->scratch, etext);
}
