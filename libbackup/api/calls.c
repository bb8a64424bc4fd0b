/* The private-API client: one function per call of openapi.yaml. */
#include <jansson.h>
#include <sodium.h>
#include <string.h>

#include "api_internal.h"

#define STATEMENT_MAX (64u << 10)
#define HEADER_MAX    (64u << 10)
#define CERT_MAX      (16u << 10)

static int check_id(const char *call, const char *kind, const char *id)
{
	if (bk_api__id_ok(id))
		return 0;
	return bk__error_set(BK_EUSER, "bad-identifier",
	                     "%s: '%s' is not a valid %s (1 to %d of A-Z a-z 0-9 . _ -)", call,
	                     id ? id : "(none)", kind, BK_API_ID_MAX);
}

/* base64 of `len` bytes as a jansson string (NULL on failure, error set). */
static json_t *b64_json(const uint8_t *data, size_t len)
{
	size_t n = sodium_base64_encoded_len(len, sodium_base64_VARIANT_ORIGINAL);
	char *s = bk__malloc(n);
	if (s == NULL)
		return NULL;
	sodium_bin2base64(s, n, data, len, sodium_base64_VARIANT_ORIGINAL);
	json_t *j = json_string(s);
	bk__free(s);
	if (j == NULL)
		bk__error_oom();
	return j;
}

/* Serialises `obj` (taking its reference) as the request body. */
static int set_body(bk_api_request *req, json_t *obj, char **owned)
{
	*owned = NULL;
	if (obj == NULL)
		return bk__error_oom();
	char *text = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(obj);
	if (text == NULL)
		return bk__error_oom();
	*owned = text;
	req->body = text;
	req->body_len = strlen(text);
	return 0;
}

/* A GET returning JSON into `body`. */
static int get_json(bk_api *api, const char *call, const char *path, bk_buf *body)
{
	bk_api_request req = {.call = call, .method = "GET", .path = path};
	return bk_api__perform(api, &req, body);
}

/* Adds the call's name to a decoder's error. */
static int decoded(int rc, const char *call)
{
	return rc && rc != BK_ENOMEM ? bk__error_prefix(rc, "%s", call) : rc;
}

int bk_api_unit_get(bk_api *api, const char *serial, bk_api_unit *out)
{
	char call[128], path[128];
	bk_buf body = BK_BUF_INIT;
	int rc;
	if (out == NULL)
		return bk__error_set(BK_EINVALID, NULL, "api: no output");
	memset(out, 0, sizeof(*out));
	snprintf(call, sizeof(call), "get unit %.64s", serial ? serial : "");
	if ((rc = check_id(call, "serial", serial)))
		goto done;
	snprintf(path, sizeof(path), "/v1/units/%s", serial);
	if ((rc = get_json(api, call, path, &body)))
		goto done;
	rc = decoded(bk_api__decode_unit(body.data, body.len, out), call);
	if (rc == 0 && strcmp(out->serial, serial) != 0) {
		bk_api_unit_clear(out);
		rc = bk__error_set(BK_EAPI, "api-bad-response",
		                   "%s: the answer is about another unit", call);
	}
done:
	bk_buf_free(&body);
	return rc;
}

int bk_api_ticket_get(bk_api *api, const char *ticket, bk_api_ticket *out)
{
	char call[128], path[128];
	bk_buf body = BK_BUF_INIT;
	int rc;
	if (out == NULL)
		return bk__error_set(BK_EINVALID, NULL, "api: no output");
	memset(out, 0, sizeof(*out));
	snprintf(call, sizeof(call), "get ticket %.64s", ticket ? ticket : "");
	if ((rc = check_id(call, "ticket", ticket)))
		goto done;
	snprintf(path, sizeof(path), "/v1/repairs/%s", ticket);
	if ((rc = get_json(api, call, path, &body)))
		goto done;
	rc = decoded(bk_api__decode_ticket(body.data, body.len, out), call);
	if (rc == 0 && strcmp(out->ticket, ticket) != 0) {
		bk_api_ticket_clear(out);
		rc = bk__error_set(BK_EAPI, "api-bad-response",
		                   "%s: the answer is about another ticket", call);
	}
done:
	bk_buf_free(&body);
	return rc;
}

int bk_api_reassign(bk_api *api, const char *ticket, const char *new_serial, const uint8_t *cert,
                    size_t cert_len, const char *idempotency_key, bk_api_reassignment *out)
{
	char call[160], path[128];
	bk_buf body = BK_BUF_INIT;
	char *text = NULL;
	int rc;
	if (out == NULL)
		return bk__error_set(BK_EINVALID, NULL, "api: no output");
	memset(out, 0, sizeof(*out));
	snprintf(call, sizeof(call), "reassign ticket %.64s", ticket ? ticket : "");
	if ((rc = check_id(call, "ticket", ticket)) || (rc = check_id(call, "serial", new_serial)))
		goto done;
	if (cert == NULL || cert_len == 0 || cert_len > CERT_MAX) {
		rc = bk__error_set(BK_EINVALID, NULL, "%s: no certificate, or one too large", call);
		goto done;
	}
	snprintf(path, sizeof(path), "/v1/repairs/%s/reassign", ticket);
	json_t *c = b64_json(cert, cert_len);
	if (c == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	bk_api_request req = {
	    .call = call, .method = "POST", .path = path, .idempotency_key = idempotency_key};
	if ((rc = set_body(
	         &req, json_pack("{s:s, s:o}", "new_serial", new_serial, "certificate", c), &text)))
		goto done;
	if ((rc = bk_api__perform(api, &req, &body)))
		goto done;
	rc = decoded(bk_api__decode_reassignment(body.data, body.len, out), call);
	if (rc == 0 &&
	    (strcmp(out->ticket, ticket) != 0 || strcmp(out->new_serial, new_serial) != 0)) {
		bk_api_reassignment_clear(out);
		rc = bk__error_set(BK_EAPI, "api-bad-response",
		                   "%s: the answer names another ticket or serial", call);
	}
done:
	free(text);
	bk_buf_free(&body);
	return rc;
}

int bk_api_backups_list(bk_api *api, const char *serial, bk_api_backup **out, size_t *out_count)
{
	char call[128], path[128];
	bk_buf body = BK_BUF_INIT;
	int rc;
	if (out == NULL || out_count == NULL)
		return bk__error_set(BK_EINVALID, NULL, "api: no output");
	*out = NULL;
	*out_count = 0;
	snprintf(call, sizeof(call), "list backups of unit %.64s", serial ? serial : "");
	if ((rc = check_id(call, "serial", serial)))
		goto done;
	snprintf(path, sizeof(path), "/v1/units/%s/backups", serial);
	if ((rc = get_json(api, call, path, &body)))
		goto done;
	rc = decoded(bk_api__decode_backups(body.data, body.len, out, out_count), call);
	if (rc == 0 && *out_count > 0 && strcmp((*out)[0].serial, serial) != 0) {
		bk_api_backup_list_free(*out, *out_count);
		*out = NULL;
		*out_count = 0;
		rc = bk__error_set(BK_EAPI, "api-bad-response",
		                   "%s: the answer is about another unit", call);
	}
done:
	bk_buf_free(&body);
	return rc;
}

int bk_api_backup_statement(bk_api *api, const char *id, uint8_t **out, size_t *out_len)
{
	char call[128], path[128];
	bk_buf body = BK_BUF_INIT;
	int rc;
	if (out == NULL || out_len == NULL)
		return bk__error_set(BK_EINVALID, NULL, "api: no output");
	*out = NULL;
	*out_len = 0;
	snprintf(call, sizeof(call), "get statement of backup %.64s", id ? id : "");
	if ((rc = check_id(call, "backup id", id)))
		goto done;
	snprintf(path, sizeof(path), "/v1/backups/%s/statement", id);
	if ((rc = get_json(api, call, path, &body)))
		goto done;
	rc = decoded(
	    bk_api__decode_b64_field(body.data, body.len, "statement", STATEMENT_MAX, out, out_len),
	    call);
done:
	bk_buf_free(&body);
	return rc;
}

int bk_api_backup_download(bk_api *api, const char *id, uint64_t offset, bk_stream *out,
                           uint64_t *out_total)
{
	char call[128], path[128];
	int rc;
	if (out == NULL)
		return bk__error_set(BK_EINVALID, NULL, "api: no output stream");
	snprintf(call, sizeof(call), "download backup %.64s", id ? id : "");
	if ((rc = check_id(call, "backup id", id)))
		return rc;
	snprintf(path, sizeof(path), "/v1/backups/%s/content", id);
	bk_api_request req = {
	    .call = call, .method = "GET", .path = path, .sink = out, .offset = offset};
	if ((rc = bk_api__perform(api, &req, NULL)))
		return rc;
	if (out_total)
		*out_total = req.total;
	return 0;
}

int bk_api_backup_rewrap(bk_api *api, const char *id, const uint8_t *cert, size_t cert_len,
                         const char *idempotency_key, uint8_t **out, size_t *out_len)
{
	char call[128], path[128];
	bk_buf body = BK_BUF_INIT;
	char *text = NULL;
	int rc;
	if (out == NULL || out_len == NULL)
		return bk__error_set(BK_EINVALID, NULL, "api: no output");
	*out = NULL;
	*out_len = 0;
	snprintf(call, sizeof(call), "rewrap backup %.64s", id ? id : "");
	if ((rc = check_id(call, "backup id", id)))
		goto done;
	if (cert == NULL || cert_len == 0 || cert_len > CERT_MAX) {
		rc = bk__error_set(BK_EINVALID, NULL, "%s: no certificate, or one too large", call);
		goto done;
	}
	snprintf(path, sizeof(path), "/v1/backups/%s/rewrap", id);
	json_t *c = b64_json(cert, cert_len);
	if (c == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	bk_api_request req = {
	    .call = call, .method = "POST", .path = path, .idempotency_key = idempotency_key};
	if ((rc = set_body(&req, json_pack("{s:o}", "certificate", c), &text)))
		goto done;
	if ((rc = bk_api__perform(api, &req, &body)))
		goto done;
	rc = decoded(
	    bk_api__decode_b64_field(body.data, body.len, "header", HEADER_MAX, out, out_len),
	    call);
done:
	free(text);
	bk_buf_free(&body);
	return rc;
}

int bk_api_terminal_enroll(bk_api *api, const char *terminal_id, const uint8_t noise_pk[32],
                           const uint8_t age_pk[32], const uint8_t sign_pk[32],
                           const char *idempotency_key, uint8_t **out, size_t *out_len)
{
	char call[128];
	bk_buf body = BK_BUF_INIT;
	char *text = NULL;
	int rc;
	if (out == NULL || out_len == NULL || noise_pk == NULL || age_pk == NULL || sign_pk == NULL)
		return bk__error_set(BK_EINVALID, NULL, "api: missing argument");
	*out = NULL;
	*out_len = 0;
	snprintf(call, sizeof(call), "enroll terminal %.64s", terminal_id ? terminal_id : "");
	if ((rc = check_id(call, "terminal id", terminal_id)))
		goto done;
	json_t *n = b64_json(noise_pk, 32), *a = b64_json(age_pk, 32), *s = b64_json(sign_pk, 32);
	if (n == NULL || a == NULL || s == NULL) {
		json_decref(n);
		json_decref(a);
		json_decref(s);
		rc = BK_ENOMEM;
		goto done;
	}
	bk_api_request req = {.call = call,
	                      .method = "POST",
	                      .path = "/v1/terminals/enroll",
	                      .idempotency_key = idempotency_key};
	if ((rc = set_body(&req,
	                   json_pack("{s:s, s:o, s:o, s:o}", "terminal_id", terminal_id,
	                             "noise_public_key", n, "age_recipient", a,
	                             "signing_public_key", s),
	                   &text)))
		goto done;
	if ((rc = bk_api__perform(api, &req, &body)))
		goto done;
	rc = decoded(
	    bk_api__decode_b64_field(body.data, body.len, "certificate", CERT_MAX, out, out_len),
	    call);
done:
	free(text);
	bk_buf_free(&body);
	return rc;
}

int bk_api_ticket_events(bk_api *api, const char *ticket, const bk_api_event *events, size_t count,
                         const char *idempotency_key, int64_t *out_total)
{
	char call[128], path[128];
	bk_buf body = BK_BUF_INIT;
	char *text = NULL;
	json_t *arr = NULL;
	int rc;
	snprintf(call, sizeof(call), "post events of ticket %.64s", ticket ? ticket : "");
	if ((rc = check_id(call, "ticket", ticket)))
		goto done;
	if (events == NULL || count == 0 || count > 1000) {
		rc = bk__error_set(BK_EINVALID, NULL, "%s: 1 to 1000 events are needed", call);
		goto done;
	}
	snprintf(path, sizeof(path), "/v1/repairs/%s/events", ticket);
	arr = json_array();
	if (arr == NULL) {
		rc = bk__error_oom();
		goto done;
	}
	for (size_t i = 0; i < count; i++) {
		const bk_api_event *e = &events[i];
		char when[21];
		if (e->seq < 0 || e->kind == NULL || *e->kind == '\0' || e->message == NULL ||
		    (e->hash != NULL && strlen(e->hash) != 64)) {
			rc = bk__error_set(BK_EINVALID, NULL, "%s: event %zu is incomplete", call,
			                   i);
			goto done;
		}
		bk_time_rfc3339(when, e->time);
		json_t *o = json_pack("{s:I, s:s, s:s, s:s}", "seq", (json_int_t)e->seq, "time",
		                      when, "kind", e->kind, "message", e->message);
		if (o && e->hash && json_object_set_new(o, "hash", json_string(e->hash)) != 0) {
			json_decref(o);
			o = NULL;
		}
		if (o == NULL || json_array_append_new(arr, o) != 0) {
			rc = bk__error_set(BK_EINVALID, NULL,
			                   "%s: event %zu cannot be encoded (text must be UTF-8)",
			                   call, i);
			goto done;
		}
	}
	bk_api_request req = {
	    .call = call, .method = "POST", .path = path, .idempotency_key = idempotency_key};
	rc = set_body(&req, json_pack("{s:O}", "events", arr), &text);
	if (rc)
		goto done;
	if ((rc = bk_api__perform(api, &req, &body)))
		goto done;
	int64_t total = 0;
	rc = decoded(bk_api__decode_events(body.data, body.len, &total), call);
	if (rc == 0 && out_total)
		*out_total = total;
done:
	json_decref(arr);
	free(text);
	bk_buf_free(&body);
	return rc;
}

int bk_api_ticket_complete(bk_api *api, const char *ticket, const char *new_serial, int success,
                           const char *summary, const char *idempotency_key, bk_api_ticket *out)
{
	char call[128], path[128];
	bk_buf body = BK_BUF_INIT;
	char *text = NULL;
	bk_api_ticket t;
	int rc;
	memset(&t, 0, sizeof(t));
	if (out)
		memset(out, 0, sizeof(*out));
	snprintf(call, sizeof(call), "complete ticket %.64s", ticket ? ticket : "");
	if ((rc = check_id(call, "ticket", ticket)) || (rc = check_id(call, "serial", new_serial)))
		goto done;
	snprintf(path, sizeof(path), "/v1/repairs/%s/complete", ticket);
	json_t *o = json_pack("{s:s, s:s}", "new_serial", new_serial, "outcome",
	                      success ? "success" : "failed");
	if (o && summary && json_object_set_new(o, "summary", json_string(summary)) != 0) {
		json_decref(o);
		rc = bk__error_set(BK_EINVALID, NULL, "%s: the summary must be UTF-8", call);
		goto done;
	}
	bk_api_request req = {
	    .call = call, .method = "POST", .path = path, .idempotency_key = idempotency_key};
	if ((rc = set_body(&req, o, &text)))
		goto done;
	if ((rc = bk_api__perform(api, &req, &body)))
		goto done;
	if ((rc = decoded(bk_api__decode_ticket(body.data, body.len, &t), call)))
		goto done;
	if (strcmp(t.ticket, ticket) != 0) {
		rc = bk__error_set(BK_EAPI, "api-bad-response",
		                   "%s: the answer is about another ticket", call);
		goto done;
	}
	if (out) {
		*out = t;
		memset(&t, 0, sizeof(t));
	}
done:
	bk_api_ticket_clear(&t);
	free(text);
	bk_buf_free(&body);
	return rc;
}
