/* Internal: the private-API client's pieces shared between its files and
 * with its tests and fuzz targets. Not installed. */
#ifndef BK_API_INTERNAL_H
#define BK_API_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libbackup/api.h>

#include "libbackup/util/util.h"

/* The largest JSON response body accepted. */
#define BK_API_JSON_MAX (1u << 20)
/* The largest error body kept from a non-JSON call (downloads). */
#define BK_API_ERROR_BODY_MAX (64u << 10)
/* Identifiers (serials, tickets, backup ids) that may appear in a path. */
#define BK_API_ID_MAX 64

/* --- Response decoders (api/decode.c) --------------------------------------
 * Each takes a response body (any bytes) and fills `out`, or fails with
 * BK_EAPI "api-bad-response" naming the field at fault; on failure `out` is
 * left empty. They are the fuzz targets' entry points. */
int bk_api__decode_unit(const uint8_t *body, size_t len, bk_api_unit *out);
int bk_api__decode_ticket(const uint8_t *body, size_t len, bk_api_ticket *out);
int bk_api__decode_reassignment(const uint8_t *body, size_t len, bk_api_reassignment *out);
int bk_api__decode_backups(const uint8_t *body, size_t len, bk_api_backup **out, size_t *out_count);
/* A response object's base64 field `field` (1..max_bytes once decoded). */
int bk_api__decode_b64_field(const uint8_t *body, size_t len, const char *field, size_t max_bytes,
                             uint8_t **out, size_t *out_len);
int bk_api__decode_events(const uint8_t *body, size_t len, int64_t *out_total);
/* The service's error object: `code` (empty when the body is not an error
 * object) and `message`, cleaned of control characters, truncated to fit. */
void bk_api__decode_error(const uint8_t *body, size_t len, char *code, size_t code_size,
                          char *message, size_t message_size);

/* Whether `s` may be used as a path segment: 1..64 of [A-Za-z0-9._-], not
 * "." or "..". */
bool bk_api__id_ok(const char *s);
/* Whether a URL host (as libcurl gives it, IPv6 in brackets) is loopback. */
bool bk_api__host_is_loopback(const char *host);
/* The delay before retry number `attempt` (1-based): full jitter over
 * min(cap, base * 2^(attempt-1)) milliseconds. */
long bk_api__backoff_ms(unsigned attempt);

/* --- The request engine (api/client.c) ------------------------------------ */

typedef struct bk_api_request {
	const char *call;   /* names the call in messages: "reassign ticket T-1" */
	const char *method; /* "GET" or "POST" */
	const char *path;   /* "/v1/..." (identifiers already checked) */
	const char *body;   /* JSON request body for POST, or NULL */
	size_t body_len;
	const char *idempotency_key; /* POST: the caller's key, or NULL for a fresh one */
	/* Downloads: the sink and where in the file it stands. */
	bk_stream *sink;
	uint64_t offset;
	uint64_t total; /* out: the file's size */
} bk_api_request;

/* Runs a call with the retry rules; for a JSON call, `out` gets the checked
 * 2xx body (application/json, at most BK_API_JSON_MAX bytes). */
int bk_api__perform(bk_api *api, bk_api_request *req, bk_buf *out);

#endif
