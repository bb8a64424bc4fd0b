/* libbackup: error codes and the thread-local last error. */
#ifndef LIBBACKUP_ERRORS_H
#define LIBBACKUP_ERRORS_H

#include <libbackup/common.h>

BK_BEGIN_DECLS

/* Every function that can fail returns 0 or one of these negative codes.
 * Codes are stable: they are never renumbered, new ones are only appended. */
enum {
	BK_OK = 0,
	BK_ERROR = -1,         /* anything not covered below */
	BK_EINVALID = -2,      /* programming error: bad argument, NULL handle */
	BK_ENOMEM = -3,        /* out of memory */
	BK_ENOTFOUND = -4,     /* file, device, backup, ticket... does not exist */
	BK_EVERIFY = -5,       /* signature, MAC, digest or certificate check failed */
	BK_EINCOMPAT = -6,     /* model, firmware, schema or anti-rollback mismatch */
	BK_EAUTH = -7,         /* authentication or authorisation refused */
	BK_ETIMEOUT = -8,      /* a deadline passed */
	BK_EDISCONNECTED = -9, /* the peer went away */
	BK_EBUSY = -10,        /* locked by someone else */
	BK_ENOSPACE = -11,     /* not enough space, or a configured limit exceeded */
	BK_EAPI = -12,         /* the private API answered with an error */
	BK_ECANCELLED = -13,   /* cancelled by the caller; the work is resumable */
	BK_EUSER = -14,        /* the user asked for something impossible (usage) */
	BK_EIO = -15,          /* an operating-system input/output error */
	BK_EEXIST = -16,       /* refusing to overwrite something that exists */
	BK_EROLLBACK = -17,    /* the unit rolled its firmware back */
	BK_EFORMAT = -18,      /* malformed input: not the format it claims to be */
};

/* The last error of the calling thread. `reason` is a short, stable,
 * lower-case, dash-separated cause ("payload-truncated"), finer than the code;
 * `message` is one human-readable line naming what failed and why. Both stay
 * valid until the next failing library call on the same thread. */
typedef struct bk_error {
	int code;
	const char *reason;
	const char *message;
} bk_error;

BK_EXTERN const bk_error *bk_error_last(void);

/* Clears the calling thread's last error. */
BK_EXTERN void bk_error_clear(void);

/* A static English description of a code ("verification failed"). */
BK_EXTERN const char *bk_strerror(int code);

/* The default reason string of a code ("verify-failed"), used when a failure
 * carries no finer cause. */
BK_EXTERN const char *bk_error_code_name(int code);

BK_END_DECLS

#endif
