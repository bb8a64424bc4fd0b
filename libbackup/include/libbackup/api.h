/* libbackup: the client of the vendor's private service API (HTTPS, bearer
 * token, JSON), described by libbackup/api/openapi.yaml.
 *
 * One bk_api is one configured client; use one per thread. Every call checks
 * the whole response (status, content type, size, required fields and their
 * types) before returning anything.
 *
 * Transport security: TLS peer and host verification are always on. An
 * `http://` URL is refused (BK_EUSER, reason "insecure-url") unless its host
 * is a loopback address (127.0.0.0/8, ::1, localhost). Redirects are never
 * followed.
 *
 * Retries: a call is retried on connection failures, timeouts, 429 and 5xx
 * (except 501) with exponential backoff and full jitter, waiting the server's
 * `Retry-After` (seconds) when it sends one, for at most `max_attempts`
 * attempts and never starting a wait that would end past `retry_budget_ms`
 * after the call began. Other 4xx answers are never retried.
 *
 * Idempotency: every mutating call (POST) sends an `Idempotency-Key`. Pass a
 * key derived from the job (for example "<job id>:reassign") so that a call
 * repeated after a crash is recognised by the service; with NULL the client
 * generates one for the call and reuses it on each of its retries.
 *
 * Errors (the code, then bk_error_last()->reason):
 *   404                         BK_ENOTFOUND  "api-not-found"
 *   401 / 403                   BK_EAUTH      "api-unauthorized" / "api-forbidden"
 *   400 / 409 / 422             BK_EAPI       "api-bad-request" / "api-conflict" /
 *                                             "api-unprocessable"
 *   other 4xx                   BK_EAPI       "api-refused"
 *   501                         BK_EAPI       "api-not-implemented"
 *   5xx or 429 after retries    BK_EAPI       "api-unavailable"
 *   no connection after retries BK_EDISCONNECTED "api-unreachable"
 *   TLS peer not trusted        BK_EAUTH      "tls-verify-failed"
 *   malformed response          BK_EAPI       "api-bad-response"
 * The message names the call and carries the service's own error code and
 * message ("reassign ticket T-1: 409 unit-bound: unit S2 is bound to an
 * owner"). The token never appears in an error, a log line or any output;
 * request traces (BK_LOG_TRACE, domain "api") show the Authorization header
 * as "<redacted>". */
#ifndef LIBBACKUP_API_H
#define LIBBACKUP_API_H

#include <libbackup/common.h>
#include <libbackup/config.h>
#include <libbackup/stream.h>

BK_BEGIN_DECLS

typedef struct bk_api bk_api;

#define BK_API_OPTIONS_VERSION 1
typedef struct bk_api_options {
	unsigned version;
	const char *url;         /* base URL: "https://api.example/" (a path prefix is kept) */
	const char *token;       /* bearer token; copied into locked memory by bk_api_new() */
	const char *ca_file;     /* PEM CA bundle to trust; NULL: the system's */
	const char *client_cert; /* PEM client certificate (optional, mutual TLS) */
	const char *client_key;  /* its PEM private key */
	long connect_timeout_ms; /* per attempt; 0: 10 000 */
	long timeout_ms;         /* whole attempt of a JSON call, and the longest a
	                          * download may stall; 0: 60 000 */
	long retry_budget_ms;    /* no retry wait ends later than this after the call
	                          * began; 0: 30 000; negative: no retries */
	unsigned max_attempts;   /* attempts per call, first included; 0: 7 */
	int trace;               /* log every HTTP exchange at BK_LOG_TRACE */
} bk_api_options;
#define BK_API_OPTIONS_INIT                                                                        \
	{                                                                                          \
		BK_API_OPTIONS_VERSION, NULL, NULL, NULL, NULL, NULL, 0, 0, 0, 0, 0                \
	}

/* Creates a client; nothing is sent yet. `opts->url` and `opts->token` are
 * required (BK_EUSER "no-url" / "no-token"); an http:// URL to a host that is
 * not loopback is BK_EUSER "insecure-url". */
BK_EXTERN int bk_api_new(bk_api **out, const bk_api_options *opts);
BK_EXTERN void bk_api_free(bk_api *api);

/* A client from the configuration's [api] section (aibo-restore.conf(5)):
 * api.url; the token from api.token (or AIBO_RESTORE_API_TOKEN, which the
 * configuration maps onto it), else api.token_file (which must be private);
 * api.ca_file, api.client_cert with api.client_key, api.connect_timeout and
 * api.timeout (seconds) and api.retries. `trace` as in bk_api_options. */
BK_EXTERN int bk_api_new_config(bk_api **out, const bk_config *cfg, int trace);

/* Reads the token from a file that only its owner may read (see
 * bk_file_check_private: a group- or world-readable file is BK_EAUTH with the
 * chmod to run). Surrounding white space is removed; an empty file is
 * BK_EAUTH "token-empty". The token is NUL-terminated, in guarded memory, and
 * must be released with bk_api_token_free(). */
BK_EXTERN int bk_api_token_from_file(char **out, const char *path);
/* Wipes and frees a token from bk_api_token_from_file(). NULL is a no-op. */
BK_EXTERN void bk_api_token_free(char *token);

/* --- Results (strings and bytes are owned by the struct) ------------------ */

typedef struct bk_api_unit {
	char *serial;
	char *model;
	char *hw_rev;
	char *device_id;
	char *status;   /* "stock", "active" or "retired" */
	char *owner;    /* NULL when not bound to an owner */
	char *firmware; /* NULL when the service does not know it */
} bk_api_unit;
BK_EXTERN void bk_api_unit_clear(bk_api_unit *u);

typedef struct bk_api_ticket {
	char *ticket;
	char *old_serial;
	char *new_serial; /* NULL until reassigned */
	char *status;     /* "open", "reassigned", "completed" or "failed" */
	char *model;
	char *outcome; /* NULL until completed */
} bk_api_ticket;
BK_EXTERN void bk_api_ticket_clear(bk_api_ticket *t);

typedef struct bk_api_reassignment {
	char *ticket;
	char *old_serial;
	char *new_serial;
	char *device_id;
	char *owner;     /* may be NULL */
	uint8_t *bundle; /* the identity bundle (aibo-cert/1, signed by the service CA) */
	size_t bundle_len;
} bk_api_reassignment;
BK_EXTERN void bk_api_reassignment_clear(bk_api_reassignment *r);

typedef struct bk_api_backup {
	char *id;
	char *serial;
	char *created;  /* RFC 3339 */
	uint64_t size;  /* bytes of the age file */
	char *firmware; /* may be NULL */
	int64_t schema; /* memory schema version; -1 when unknown */
} bk_api_backup;
/* Frees a list from bk_api_backups_list(). */
BK_EXTERN void bk_api_backup_list_free(bk_api_backup *list, size_t count);

/* One entry of a repair job's audit log, for bk_api_ticket_events(). */
typedef struct bk_api_event {
	int64_t seq;         /* position in the job's log, from 0 */
	int64_t time;        /* Unix seconds */
	const char *kind;    /* "step-begin", "step-done", "error"... */
	const char *message; /* one line; never a secret */
	const char *hash;    /* hex chain hash after this entry (64 digits), or NULL */
} bk_api_event;

/* --- Calls ----------------------------------------------------------------- */

/* GET /v1/units/{serial}. */
BK_EXTERN int bk_api_unit_get(bk_api *api, const char *serial, bk_api_unit *out);

/* GET /v1/repairs/{ticket}. */
BK_EXTERN int bk_api_ticket_get(bk_api *api, const char *ticket, bk_api_ticket *out);

/* POST /v1/repairs/{ticket}/reassign: moves the old unit's identity to
 * `new_serial`, presenting the replacement's factory certificate. A repeat
 * with the same idempotency key returns the first answer again. */
BK_EXTERN int bk_api_reassign(bk_api *api, const char *ticket, const char *new_serial,
                              const uint8_t *cert, size_t cert_len, const char *idempotency_key,
                              bk_api_reassignment *out);

/* GET /v1/units/{serial}/backups, newest first. */
BK_EXTERN int bk_api_backups_list(bk_api *api, const char *serial, bk_api_backup **out,
                                  size_t *out_count);

/* GET /v1/backups/{id}/statement: the statement bytes (caller frees with bk_free()). */
BK_EXTERN int bk_api_backup_statement(bk_api *api, const char *id, uint8_t **out, size_t *out_len);

/* GET /v1/backups/{id}/content: writes the file into `out`, starting at byte
 * `offset` of the file (0, or what an earlier interrupted download already
 * wrote). A transfer cut off midway is resumed with an HTTP Range request
 * (within the retry rules); the bytes written to `out` are exactly the
 * file's from `offset` on. *out_total (may be NULL) gets the file's size. */
BK_EXTERN int bk_api_backup_download(bk_api *api, const char *id, uint64_t offset, bk_stream *out,
                                     uint64_t *out_total);

/* POST /v1/backups/{id}/rewrap: a new age header for the backup whose only
 * recipient is the one in the unit certificate `cert` (caller frees the
 * header with bk_free()). */
BK_EXTERN int bk_api_backup_rewrap(bk_api *api, const char *id, const uint8_t *cert,
                                   size_t cert_len, const char *idempotency_key, uint8_t **out,
                                   size_t *out_len);

/* POST /v1/terminals/enroll: a terminal certificate for `terminal_id` and its
 * three public keys (32 bytes each: Noise X25519, age X25519, Ed25519); the
 * caller frees it with bk_free(). */
BK_EXTERN int bk_api_terminal_enroll(bk_api *api, const char *terminal_id,
                                     const uint8_t noise_pk[32], const uint8_t age_pk[32],
                                     const uint8_t sign_pk[32], const char *idempotency_key,
                                     uint8_t **out, size_t *out_len);

/* POST /v1/repairs/{ticket}/events: appends `count` (1..1000) audit entries.
 * *out_total (may be NULL) gets how many the ticket now holds. */
BK_EXTERN int bk_api_ticket_events(bk_api *api, const char *ticket, const bk_api_event *events,
                                   size_t count, const char *idempotency_key, int64_t *out_total);

/* POST /v1/repairs/{ticket}/complete: closes the ticket; `success` non-zero
 * for a repair that ended well; `summary` (may be NULL) is one short text.
 * `out` (may be NULL) gets the closed ticket. */
BK_EXTERN int bk_api_ticket_complete(bk_api *api, const char *ticket, const char *new_serial,
                                     int success, const char *summary, const char *idempotency_key,
                                     bk_api_ticket *out);

BK_END_DECLS

#endif
