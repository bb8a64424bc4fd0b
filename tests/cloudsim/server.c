/* aibo-cloudsim: the HTTP server (libmicrohttpd, one internal thread, so the
 * handlers never run concurrently), the calls of openapi.yaml, idempotency
 * and fault injection. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sim.h"

#define BODY_MAX (1u << 20)

typedef struct server {
	const sim_config *cfg;
	sqlite3 *db;
	sim_pki pki;
	sim_fault faults[32];
	size_t nfaults;
	long requests;
	long faults_fired;
	long replays;
	FILE *record;
} server;

/* Per-request state (libmicrohttpd's connection class pointer). */
typedef struct request {
	bk_buf body;
	bool too_big;
	bool counted;
} request;

/* The answer being built. */
typedef struct reply {
	int status;
	json_t *json;            /* body (owned) */
	const char *retry_after; /* header value, or NULL */
	bool drop;               /* close without answering */
} reply;

/* --- Helpers --------------------------------------------------------------------- */

static void set_error(reply *r, int status, const char *code, const char *fmt, ...) BK_PRINTF(4, 5);
static void set_error(reply *r, int status, const char *code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_decref(r->json);
	r->status = status;
	r->json = json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", msg);
}

static void set_fail(reply *r, const sim_fail *f)
{
	set_error(r, f->status, f->code, "%s", f->message);
}

static bool id_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > 64 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static json_t *str_or_null(const unsigned char *s)
{
	return s ? json_string((const char *)s) : json_null();
}

static json_t *b64_json(const uint8_t *data, size_t len)
{
	size_t n = sodium_base64_encoded_len(len, sodium_base64_VARIANT_ORIGINAL);
	char *s = malloc(n);
	if (s == NULL)
		return NULL;
	sodium_bin2base64(s, n, data, len, sodium_base64_VARIANT_ORIGINAL);
	json_t *j = json_string(s);
	free(s);
	return j;
}

/* A base64 string field of the request, decoded (malloc'd). */
static int body_b64(json_t *o, const char *field, size_t max, uint8_t **out, size_t *out_len)
{
	json_t *v = json_object_get(o, field);
	*out = NULL;
	if (!json_is_string(v))
		return -1;
	size_t n = json_string_length(v);
	uint8_t *bin = malloc(n / 4 * 3 + 3);
	const char *end = NULL;
	if (bin == NULL)
		return -1;
	if (sodium_base642bin(bin, n / 4 * 3 + 3, json_string_value(v), n, NULL, out_len, &end,
	                      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    end != json_string_value(v) + n || *out_len == 0 || *out_len > max) {
		free(bin);
		return -1;
	}
	*out = bin;
	return 0;
}

static const char *body_id(json_t *o, const char *field)
{
	const char *s = json_string_value(json_object_get(o, field));
	return id_ok(s) ? s : NULL;
}

static sqlite3_stmt *prep(server *s, const char *sql)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
		fprintf(stderr, "aibo-cloudsim: sql: %s\n", sqlite3_errmsg(s->db));
		return NULL;
	}
	return st;
}

static json_t *unit_json(server *s, const char *serial)
{
	sqlite3_stmt *st =
	    prep(s, "SELECT serial, model, hw_rev, device_id, status, owner, firmware"
	            " FROM units WHERE serial = ?");
	json_t *j = NULL;
	if (st == NULL)
		return NULL;
	sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o}", "serial",
		              (const char *)sqlite3_column_text(st, 0), "model",
		              (const char *)sqlite3_column_text(st, 1), "hw_rev",
		              (const char *)sqlite3_column_text(st, 2), "device_id",
		              (const char *)sqlite3_column_text(st, 3), "status",
		              (const char *)sqlite3_column_text(st, 4), "owner",
		              str_or_null(sqlite3_column_text(st, 5)), "firmware",
		              str_or_null(sqlite3_column_text(st, 6)));
	sqlite3_finalize(st);
	return j;
}

static json_t *ticket_json(server *s, const char *ticket)
{
	sqlite3_stmt *st =
	    prep(s, "SELECT t.ticket, t.old_serial, t.new_serial, t.status, u.model,"
	            " t.outcome FROM tickets t JOIN units u ON u.serial = t.old_serial"
	            " WHERE t.ticket = ?");
	json_t *j = NULL;
	if (st == NULL)
		return NULL;
	sqlite3_bind_text(st, 1, ticket, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		j = json_pack("{s:s, s:s, s:o, s:s, s:s, s:o}", "ticket",
		              (const char *)sqlite3_column_text(st, 0), "old_serial",
		              (const char *)sqlite3_column_text(st, 1), "new_serial",
		              str_or_null(sqlite3_column_text(st, 2)), "status",
		              (const char *)sqlite3_column_text(st, 3), "model",
		              (const char *)sqlite3_column_text(st, 4), "outcome",
		              str_or_null(sqlite3_column_text(st, 5)));
	sqlite3_finalize(st);
	return j;
}

static bool exec_ok(server *s, const char *sql)
{
	return sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK;
}

/* --- Calls ---------------------------------------------------------------------- */

static void get_unit(server *s, const char *serial, reply *r)
{
	json_t *j = unit_json(s, serial);
	if (j == NULL)
		return set_error(r, 404, "unit-not-found", "no unit with serial %s", serial);
	r->status = 200;
	r->json = j;
}

static void get_ticket(server *s, const char *ticket, reply *r)
{
	json_t *j = ticket_json(s, ticket);
	if (j == NULL)
		return set_error(r, 404, "ticket-not-found", "no repair ticket %s", ticket);
	r->status = 200;
	r->json = j;
}

static void list_backups(server *s, const char *serial, reply *r)
{
	json_t *u = unit_json(s, serial);
	if (u == NULL)
		return set_error(r, 404, "unit-not-found", "no unit with serial %s", serial);
	json_decref(u);
	sqlite3_stmt *st = prep(s, "SELECT id, serial, created, size, firmware, schema FROM backups"
	                           " WHERE serial = ? ORDER BY created DESC, id");
	json_t *arr = json_array();
	if (st == NULL || arr == NULL) {
		sqlite3_finalize(st);
		json_decref(arr);
		return set_error(r, 500, "internal", "database failure");
	}
	sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW) {
		json_t *e = json_pack("{s:s, s:s, s:s, s:I, s:o, s:o}", "id",
		                      (const char *)sqlite3_column_text(st, 0), "serial",
		                      (const char *)sqlite3_column_text(st, 1), "created",
		                      (const char *)sqlite3_column_text(st, 2), "size",
		                      (json_int_t)sqlite3_column_int64(st, 3), "firmware",
		                      str_or_null(sqlite3_column_text(st, 4)), "schema",
		                      sqlite3_column_type(st, 5) == SQLITE_NULL
		                          ? json_null()
		                          : json_integer(sqlite3_column_int64(st, 5)));
		json_array_append_new(arr, e);
	}
	sqlite3_finalize(st);
	r->status = 200;
	r->json = json_pack("{s:s, s:o}", "serial", serial, "backups", arr);
}

/* The paths of a backup (malloc'd), or a 404. */
static int backup_paths(server *s, const char *id, char **path, char **statement, reply *r)
{
	sqlite3_stmt *st = prep(s, "SELECT path, statement_path FROM backups WHERE id = ?");
	*path = *statement = NULL;
	if (st == NULL) {
		set_error(r, 500, "internal", "database failure");
		return -1;
	}
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		*path = strdup((const char *)sqlite3_column_text(st, 0));
		*statement = strdup((const char *)sqlite3_column_text(st, 1));
	}
	sqlite3_finalize(st);
	if (*path == NULL || *statement == NULL) {
		free(*path);
		free(*statement);
		*path = *statement = NULL;
		set_error(r, 404, "backup-not-found", "no backup %s", id);
		return -1;
	}
	return 0;
}

static void get_statement(server *s, const char *id, reply *r)
{
	char *path, *spath;
	uint8_t *data = NULL;
	size_t len = 0;
	if (backup_paths(s, id, &path, &spath, r))
		return;
	if (bk_file_read(spath, 64 << 10, &data, &len) != 0 || len == 0) {
		set_error(r, 500, "statement-unreadable",
		          "the statement of backup %s cannot be read", id);
	} else {
		r->status = 200;
		r->json =
		    json_pack("{s:s, s:o}", "backup_id", id, "statement", b64_json(data, len));
	}
	bk__free(data);
	free(path);
	free(spath);
}

/* The registered certificate of a unit (malloc'd bytes), or NULL. */
static uint8_t *unit_cert(server *s, const char *serial, size_t *len)
{
	sqlite3_stmt *st = prep(s, "SELECT cert FROM units WHERE serial = ?");
	uint8_t *out = NULL;
	if (st == NULL)
		return NULL;
	sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		*len = (size_t)sqlite3_column_bytes(st, 0);
		out = malloc(*len ? *len : 1);
		if (out)
			memcpy(out, sqlite3_column_blob(st, 0), *len);
	}
	sqlite3_finalize(st);
	return out;
}

/* Checks a presented unit certificate: it verifies, and it is the one
 * registered for its serial (which must be `serial` when given). */
static int presented_cert(server *s, json_t *body, const char *serial, bk_cert **out, reply *r)
{
	uint8_t *raw = NULL, *reg = NULL;
	size_t raw_len = 0, reg_len = 0;
	sim_fail f;
	int rc = -1;
	*out = NULL;
	if (body_b64(body, "certificate", BK_CERT_MAX * 2, &raw, &raw_len) != 0) {
		set_error(r, 400, "bad-request", "'certificate' must be base64 of a certificate");
		goto done;
	}
	if (sim_unit_cert_check(out, &s->pki, raw, raw_len, &f) != 0) {
		set_fail(r, &f);
		goto done;
	}
	const char *cs = bk_cert_serial(*out);
	if (serial && strcmp(cs, serial) != 0) {
		set_error(r, 422, "certificate-mismatch", "the certificate is for %s, not %s", cs,
		          serial);
		goto done;
	}
	reg = unit_cert(s, cs, &reg_len);
	if (reg == NULL) {
		set_error(r, 404, "unit-not-found", "no unit with serial %s", cs);
		goto done;
	}
	size_t n;
	const uint8_t *canon = bk_cert_bytes(*out, &n);
	if (n != reg_len || memcmp(canon, reg, n) != 0) {
		set_error(r, 422, "certificate-mismatch",
		          "the certificate is not the factory certificate registered for %s", cs);
		goto done;
	}
	rc = 0;
done:
	if (rc) {
		bk_cert_free(*out);
		*out = NULL;
	}
	free(raw);
	free(reg);
	return rc;
}

static void reassign(server *s, const char *ticket, json_t *body, reply *r)
{
	bk_cert *cert = NULL;
	uint8_t *bundle = NULL;
	size_t bundle_len = 0;
	sqlite3_stmt *st = NULL;
	char *old_serial = NULL, *status = NULL, *cur_new = NULL;
	char *old_model = NULL, *device_id = NULL, *owner = NULL, *old_status = NULL;
	sim_fail f;
	const char *new_serial = body_id(body, "new_serial");
	if (new_serial == NULL)
		return set_error(r, 400, "bad-request", "'new_serial' is missing or not a serial");
	st = prep(
	    s,
	    "SELECT t.old_serial, t.status, t.new_serial, u.model, u.device_id, u.owner,"
	    " u.status FROM tickets t JOIN units u ON u.serial = t.old_serial WHERE t.ticket = ?");
	if (st == NULL)
		return set_error(r, 500, "internal", "database failure");
	sqlite3_bind_text(st, 1, ticket, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		return set_error(r, 404, "ticket-not-found", "no repair ticket %s", ticket);
	}
#define COL(i)                                                                                     \
	(sqlite3_column_text(st, i) ? strdup((const char *)sqlite3_column_text(st, i)) : NULL)
	old_serial = COL(0);
	status = COL(1);
	cur_new = COL(2);
	old_model = COL(3);
	device_id = COL(4);
	owner = COL(5);
	old_status = COL(6);
#undef COL
	sqlite3_finalize(st);
	st = NULL;
	if (strcmp(status, "open") != 0) {
		if (strcmp(status, "reassigned") == 0)
			set_error(r, 409, "ticket-reassigned",
			          "ticket %s was already reassigned to %s", ticket,
			          cur_new ? cur_new : "?");
		else
			set_error(r, 409, "ticket-closed", "ticket %s is %s", ticket, status);
		goto done;
	}
	if (strcmp(new_serial, old_serial) == 0) {
		set_error(r, 422, "serial-mismatch", "the replacement cannot be the old unit %s",
		          old_serial);
		goto done;
	}
	if (strcmp(old_status, "active") != 0 || owner == NULL) {
		set_error(r, 409, "unit-not-active", "the old unit %s is not bound to an owner",
		          old_serial);
		goto done;
	}
	json_t *nu = unit_json(s, new_serial);
	if (nu == NULL) {
		set_error(r, 404, "unit-not-found", "no unit with serial %s", new_serial);
		goto done;
	}
	bool bound = !json_is_null(json_object_get(nu, "owner")) ||
	             strcmp(json_string_value(json_object_get(nu, "status")), "stock") != 0;
	bool same_model = strcmp(json_string_value(json_object_get(nu, "model")), old_model) == 0;
	json_decref(nu);
	if (bound) {
		set_error(r, 409, "unit-bound", "unit %s is not a stock unit (bound or retired)",
		          new_serial);
		goto done;
	}
	if (!same_model) {
		set_error(r, 422, "model-mismatch", "unit %s is not a %s", new_serial, old_model);
		goto done;
	}
	if (presented_cert(s, body, new_serial, &cert, r) != 0)
		goto done;
	if (sim_bundle_issue(&bundle, &bundle_len, &s->pki, cert, device_id, owner, old_serial,
	                     &f)) {
		set_fail(r, &f);
		goto done;
	}
	st = prep(s, "UPDATE units SET status = 'retired', owner = NULL WHERE serial = ?1;");
	bool ok = st != NULL;
	if (ok) {
		sqlite3_bind_text(st, 1, old_serial, -1, SQLITE_STATIC);
		ok = sqlite3_step(st) == SQLITE_DONE;
		sqlite3_finalize(st);
	}
	st = ok ? prep(s, "UPDATE units SET status = 'active', owner = ?2, device_id = ?3"
	                  " WHERE serial = ?1")
	        : NULL;
	if (st) {
		sqlite3_bind_text(st, 1, new_serial, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, owner, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, device_id, -1, SQLITE_STATIC);
		ok = sqlite3_step(st) == SQLITE_DONE;
		sqlite3_finalize(st);
	}
	st =
	    ok ? prep(s,
	              "UPDATE tickets SET status = 'reassigned', new_serial = ?2 WHERE ticket = ?1")
	       : NULL;
	if (st) {
		sqlite3_bind_text(st, 1, ticket, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, new_serial, -1, SQLITE_STATIC);
		ok = sqlite3_step(st) == SQLITE_DONE;
		sqlite3_finalize(st);
	}
	st = ok ? prep(s, "INSERT INTO reassignments(ticket, new_serial, at) VALUES (?1, ?2, ?3)")
	        : NULL;
	if (st) {
		sqlite3_bind_text(st, 1, ticket, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, new_serial, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, (sqlite3_int64)time(NULL));
		ok = sqlite3_step(st) == SQLITE_DONE;
		sqlite3_finalize(st);
	}
	st = NULL;
	if (!ok) {
		set_error(r, 500, "internal", "database failure");
		goto done;
	}
	r->status = 200;
	r->json = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "ticket", ticket, "old_serial",
	                    old_serial, "new_serial", new_serial, "device_id", device_id, "owner",
	                    owner, "bundle", b64_json(bundle, bundle_len));
done:
	bk__free(bundle);
	bk_cert_free(cert);
	free(old_serial);
	free(status);
	free(cur_new);
	free(old_model);
	free(device_id);
	free(owner);
	free(old_status);
}

static void rewrap(server *s, const char *id, json_t *body, reply *r)
{
	char *path = NULL, *spath = NULL;
	bk_cert *cert = NULL;
	uint8_t *hdr = NULL;
	size_t hdr_len = 0;
	sim_fail f;
	if (!json_is_string(json_object_get(body, "certificate")))
		return set_error(r, 400, "bad-request", "'certificate' is missing");
	if (backup_paths(s, id, &path, &spath, r))
		return;
	if (presented_cert(s, body, NULL, &cert, r) != 0)
		goto done;
	if (sim_rewrap(&hdr, &hdr_len, &s->pki, path, cert, &f) != 0) {
		set_fail(r, &f);
		goto done;
	}
	r->status = 200;
	r->json = json_pack("{s:s, s:o}", "backup_id", id, "header", b64_json(hdr, hdr_len));
done:
	bk__free(hdr);
	bk_cert_free(cert);
	free(path);
	free(spath);
}

static void enroll(server *s, json_t *body, reply *r)
{
	uint8_t *k[3] = {NULL, NULL, NULL};
	size_t kl[3] = {0, 0, 0};
	static const char *const names[3] = {"noise_public_key", "age_recipient",
	                                     "signing_public_key"};
	uint8_t *cert = NULL;
	size_t cert_len = 0;
	sim_fail f;
	const char *tid = body_id(body, "terminal_id");
	if (tid == NULL)
		return set_error(r, 400, "bad-request", "'terminal_id' is missing or invalid");
	for (int i = 0; i < 3; i++) {
		if (body_b64(body, names[i], 32, &k[i], &kl[i]) != 0 || kl[i] != 32) {
			set_error(r, 400, "bad-request", "'%s' must be base64 of 32 bytes",
			          names[i]);
			goto done;
		}
	}
	uint8_t keys[96];
	memcpy(keys, k[0], 32);
	memcpy(keys + 32, k[1], 32);
	memcpy(keys + 64, k[2], 32);
	sqlite3_stmt *st = prep(s, "SELECT keys FROM terminals WHERE terminal_id = ?");
	if (st) {
		sqlite3_bind_text(st, 1, tid, -1, SQLITE_STATIC);
		bool clash = sqlite3_step(st) == SQLITE_ROW &&
		             (sqlite3_column_bytes(st, 0) != 96 ||
		              memcmp(sqlite3_column_blob(st, 0), keys, 96) != 0);
		sqlite3_finalize(st);
		if (clash) {
			set_error(r, 409, "terminal-enrolled",
			          "terminal %s is enrolled with other keys", tid);
			goto done;
		}
	}
	if (sim_terminal_issue(&cert, &cert_len, &s->pki, tid, k[0], k[1], k[2], &f) != 0) {
		set_fail(r, &f);
		goto done;
	}
	st = prep(s, "INSERT OR REPLACE INTO terminals(terminal_id, keys) VALUES (?, ?)");
	if (st) {
		sqlite3_bind_text(st, 1, tid, -1, SQLITE_STATIC);
		sqlite3_bind_blob(st, 2, keys, 96, SQLITE_STATIC);
		sqlite3_step(st);
		sqlite3_finalize(st);
	}
	r->status = 200;
	r->json =
	    json_pack("{s:s, s:o}", "terminal_id", tid, "certificate", b64_json(cert, cert_len));
done:
	bk__free(cert);
	for (int i = 0; i < 3; i++)
		free(k[i]);
}

/* The ticket's status, malloc'd, or NULL (404 set). */
static char *ticket_status(server *s, const char *ticket, char **new_serial, reply *r)
{
	sqlite3_stmt *st = prep(s, "SELECT status, new_serial FROM tickets WHERE ticket = ?");
	char *out = NULL;
	if (new_serial)
		*new_serial = NULL;
	if (st) {
		sqlite3_bind_text(st, 1, ticket, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW) {
			out = strdup((const char *)sqlite3_column_text(st, 0));
			if (new_serial && sqlite3_column_text(st, 1))
				*new_serial = strdup((const char *)sqlite3_column_text(st, 1));
		}
		sqlite3_finalize(st);
	}
	if (out == NULL)
		set_error(r, 404, "ticket-not-found", "no repair ticket %s", ticket);
	return out;
}

static bool time_ok(const char *t)
{
	int64_t v;
	return t && strlen(t) == 20 && bk_time_parse_rfc3339(t, &v) == 0;
}

static void events(server *s, const char *ticket, json_t *body, reply *r)
{
	json_t *arr = json_object_get(body, "events");
	size_t n = json_array_size(arr);
	if (!json_is_array(arr) || n == 0 || n > 1000)
		return set_error(r, 400, "bad-request", "'events' must hold 1 to 1000 events");
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_array_get(arr, i);
		json_t *seq = json_object_get(e, "seq"), *hash = json_object_get(e, "hash");
		const char *kind = json_string_value(json_object_get(e, "kind"));
		if (!json_is_object(e) || !json_is_integer(seq) || json_integer_value(seq) < 0 ||
		    !time_ok(json_string_value(json_object_get(e, "time"))) || kind == NULL ||
		    *kind == '\0' || strlen(kind) > 64 ||
		    !json_is_string(json_object_get(e, "message")) ||
		    (hash && (!json_is_string(hash) || json_string_length(hash) != 64)))
			return set_error(r, 400, "bad-request", "event %zu is malformed", i);
	}
	char *status = ticket_status(s, ticket, NULL, r);
	if (status == NULL)
		return;
	bool closed = strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0;
	free(status);
	if (closed)
		return set_error(r, 409, "ticket-closed", "ticket %s is closed", ticket);
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_array_get(arr, i);
		char *text = json_dumps(e, JSON_COMPACT);
		sqlite3_stmt *st =
		    prep(s, "INSERT INTO events(ticket, seq, body) VALUES (?, ?, ?)");
		if (st && text) {
			sqlite3_bind_text(st, 1, ticket, -1, SQLITE_STATIC);
			sqlite3_bind_int64(st, 2, json_integer_value(json_object_get(e, "seq")));
			sqlite3_bind_text(st, 3, text, -1, SQLITE_STATIC);
			sqlite3_step(st);
		}
		sqlite3_finalize(st);
		free(text);
	}
	json_int_t total = 0;
	sqlite3_stmt *st = prep(s, "SELECT count(*) FROM events WHERE ticket = ?");
	if (st) {
		sqlite3_bind_text(st, 1, ticket, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW)
			total = sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
	}
	r->status = 200;
	r->json = json_pack("{s:s, s:I, s:I}", "ticket", ticket, "accepted", (json_int_t)n, "total",
	                    total);
}

static void complete(server *s, const char *ticket, json_t *body, reply *r)
{
	const char *new_serial = body_id(body, "new_serial");
	const char *outcome = json_string_value(json_object_get(body, "outcome"));
	json_t *summary = json_object_get(body, "summary");
	char *cur_new = NULL;
	if (new_serial == NULL || outcome == NULL ||
	    (strcmp(outcome, "success") != 0 && strcmp(outcome, "failed") != 0) ||
	    (summary && !json_is_string(summary)))
		return set_error(r, 400, "bad-request",
		                 "'new_serial' and 'outcome' (success or failed) are required");
	char *status = ticket_status(s, ticket, &cur_new, r);
	if (status == NULL)
		return;
	if (strcmp(status, "open") == 0) {
		set_error(r, 409, "ticket-not-reassigned", "ticket %s has not been reassigned",
		          ticket);
	} else if (strcmp(status, "reassigned") != 0) {
		set_error(r, 409, "ticket-closed", "ticket %s is already %s", ticket, status);
	} else if (cur_new == NULL || strcmp(cur_new, new_serial) != 0) {
		set_error(r, 422, "serial-mismatch", "ticket %s was reassigned to %s, not %s",
		          ticket, cur_new ? cur_new : "?", new_serial);
	} else {
		sqlite3_stmt *st =
		    prep(s, "UPDATE tickets SET status = ?2, outcome = ?3, summary = ?4"
		            " WHERE ticket = ?1");
		if (st) {
			bool ok = strcmp(outcome, "success") == 0;
			sqlite3_bind_text(st, 1, ticket, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 2, ok ? "completed" : "failed", -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 3, outcome, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 4, json_string_value(summary), -1, SQLITE_STATIC);
			sqlite3_step(st);
			sqlite3_finalize(st);
		}
		r->status = 200;
		r->json = ticket_json(s, ticket);
	}
	free(status);
	free(cur_new);
}

/* --- Content downloads ---------------------------------------------------------- */

typedef struct content_reader {
	int fd;
	uint64_t base;  /* file offset of the response's first byte */
	uint64_t limit; /* bytes to send before failing */
} content_reader;

static ssize_t content_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	content_reader *cr = cls;
	if (cr->limit == 0)
		return MHD_CONTENT_READER_END_WITH_ERROR;
	if (max > cr->limit)
		max = (size_t)cr->limit;
	ssize_t n = pread(cr->fd, buf, max, (off_t)(cr->base + pos));
	if (n <= 0)
		return MHD_CONTENT_READER_END_WITH_ERROR;
	cr->limit -= (uint64_t)n;
	return n;
}

static void content_free(void *cls)
{
	content_reader *cr = cls;
	close(cr->fd);
	free(cr);
}

/* --- Dispatch ------------------------------------------------------------------- */

static sim_fault *fault_take(server *s, int kind, const char *call)
{
	for (size_t i = 0; i < s->nfaults; i++) {
		sim_fault *f = &s->faults[i];
		if (f->kind == kind && f->count > 0 &&
		    (f->call[0] == '\0' || strcmp(f->call, call) == 0)) {
			f->count--;
			s->faults_fired++;
			return f;
		}
	}
	return NULL;
}

static bool auth_ok(const char *hdr, const char *token)
{
	static const char prefix[] = "Bearer ";
	if (hdr == NULL || token == NULL || strncmp(hdr, prefix, sizeof(prefix) - 1) != 0)
		return false;
	hdr += sizeof(prefix) - 1;
	size_t n = strlen(token);
	return strlen(hdr) == n && sodium_memcmp(hdr, token, n) == 0;
}

static void record(server *s, const char *method, const char *url, const reply *r)
{
	if (s->record == NULL || r->json == NULL)
		return;
	json_t *e = json_pack("{s:s, s:s, s:i, s:O}", "method", method, "path", url, "status",
	                      r->status, "body", r->json);
	char *text = json_dumps(e, JSON_COMPACT);
	if (text) {
		fprintf(s->record, "%s\n", text);
		fflush(s->record);
	}
	free(text);
	json_decref(e);
}

static enum MHD_Result send_reply(server *s, struct MHD_Connection *conn, const char *method,
                                  const char *url, reply *r)
{
	if (r->json == NULL)
		set_error(r, 500, "internal", "out of memory");
	record(s, method, url, r);
	char *text = json_dumps(r->json, JSON_COMPACT);
	if (text == NULL)
		return MHD_NO;
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
	if (resp == NULL) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "application/json");
	if (r->retry_after)
		MHD_add_response_header(resp, "Retry-After", r->retry_after);
	enum MHD_Result ret = MHD_queue_response(conn, (unsigned)r->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* Splits "/v1/a/b/c" at '/' into segments (pointers into `buf`); returns
 * the count, or max + 1 when there are more. */
static size_t split(char *buf, char **seg, size_t max)
{
	size_t n = 0;
	char *p = buf;
	if (*p != '/')
		return 0;
	p++;
	for (;;) {
		if (n == max)
			return max + 1;
		seg[n++] = p;
		char *q = strchr(p, '/');
		if (q == NULL)
			return n;
		*q = '\0';
		p = q + 1;
	}
}

/* Which call a request is (the names the fault specs use), or NULL. */
static const char *call_name(const char *method, char **seg, size_t n)
{
	bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
	if (n < 2 || strcmp(seg[0], "v1") != 0)
		return NULL;
	if (strcmp(seg[1], "units") == 0 && n == 3 && get)
		return "unit";
	if (strcmp(seg[1], "units") == 0 && n == 4 && get && strcmp(seg[3], "backups") == 0)
		return "backups";
	if (strcmp(seg[1], "repairs") == 0 && n == 3 && get)
		return "ticket";
	if (strcmp(seg[1], "repairs") == 0 && n == 4 && post) {
		if (strcmp(seg[3], "reassign") == 0)
			return "reassign";
		if (strcmp(seg[3], "events") == 0)
			return "events";
		if (strcmp(seg[3], "complete") == 0)
			return "complete";
	}
	if (strcmp(seg[1], "backups") == 0 && n == 4 && get) {
		if (strcmp(seg[3], "content") == 0)
			return "content";
		if (strcmp(seg[3], "statement") == 0)
			return "statement";
	}
	if (strcmp(seg[1], "backups") == 0 && n == 4 && post && strcmp(seg[3], "rewrap") == 0)
		return "rewrap";
	if (strcmp(seg[1], "terminals") == 0 && n == 3 && post && strcmp(seg[2], "enroll") == 0)
		return "enroll";
	return NULL;
}

static enum MHD_Result stats(server *s, struct MHD_Connection *conn, const char *method,
                             const char *url)
{
	reply r = {0};
	json_t *re = json_object();
	sqlite3_stmt *st = prep(s, "SELECT ticket, count(*) FROM reassignments GROUP BY ticket");
	while (st && re && sqlite3_step(st) == SQLITE_ROW)
		json_object_set_new(re, (const char *)sqlite3_column_text(st, 0),
		                    json_integer(sqlite3_column_int64(st, 1)));
	sqlite3_finalize(st);
	r.status = 200;
	r.json = json_pack("{s:o, s:I, s:I, s:I}", "reassignments", re, "requests",
	                   (json_int_t)s->requests, "faults_fired", (json_int_t)s->faults_fired,
	                   "replays", (json_int_t)s->replays);
	enum MHD_Result ret = send_reply(s, conn, method, url, &r);
	json_decref(r.json);
	return ret;
}

static enum MHD_Result content(server *s, struct MHD_Connection *conn, const char *id,
                               const char *method, const char *url)
{
	reply r = {0};
	char *path = NULL, *spath = NULL;
	struct MHD_Response *resp = NULL;
	enum MHD_Result ret;
	if (backup_paths(s, id, &path, &spath, &r))
		goto error;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	if (fd < 0 || fstat(fd, &sb) != 0) {
		if (fd >= 0)
			close(fd);
		set_error(&r, 500, "backup-unreadable", "backup %s cannot be read", id);
		goto error;
	}
	uint64_t size = (uint64_t)sb.st_size, first = 0;
	const char *range = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Range");
	if (range) {
		char *end = NULL;
		if (strncmp(range, "bytes=", 6) != 0 || range[6] < '0' || range[6] > '9') {
			close(fd);
			set_error(&r, 400, "bad-range", "only 'bytes=FIRST-' ranges are served");
			goto error;
		}
		errno = 0;
		first = strtoull(range + 6, &end, 10);
		if (errno || *end != '-') {
			close(fd);
			set_error(&r, 400, "bad-range", "only 'bytes=FIRST-' ranges are served");
			goto error;
		}
		if (first >= size) {
			close(fd);
			set_error(&r, 416, "range-not-satisfiable", "the backup has %llu bytes",
			          (unsigned long long)size);
			char cr[64];
			snprintf(cr, sizeof(cr), "bytes */%llu", (unsigned long long)size);
			record(s, method, url, &r);
			char *text = json_dumps(r.json, JSON_COMPACT);
			resp = text ? MHD_create_response_from_buffer(strlen(text), text,
			                                              MHD_RESPMEM_MUST_FREE)
			            : NULL;
			if (resp == NULL) {
				free(text);
				ret = MHD_NO;
				goto done;
			}
			MHD_add_response_header(resp, "Content-Type", "application/json");
			MHD_add_response_header(resp, "Content-Range", cr);
			ret = MHD_queue_response(conn, 416, resp);
			goto done;
		}
	}
	sim_fault *cut = fault_take(s, FAULT_CUT_CONTENT, "content");
	if (cut) {
		content_reader *cr = malloc(sizeof(*cr));
		if (cr == NULL) {
			close(fd);
			ret = MHD_NO;
			goto done;
		}
		cr->fd = fd;
		cr->base = first;
		cr->limit = (uint64_t)cut->arg;
		resp = MHD_create_response_from_callback(size - first, 64 << 10, content_read, cr,
		                                         content_free);
		if (resp == NULL)
			content_free(cr);
	} else {
		resp = MHD_create_response_from_fd_at_offset64(size - first, fd, first);
		if (resp == NULL)
			close(fd);
	}
	if (resp == NULL) {
		ret = MHD_NO;
		goto done;
	}
	MHD_add_response_header(resp, "Content-Type", "application/octet-stream");
	MHD_add_response_header(resp, "Accept-Ranges", "bytes");
	if (range) {
		char cr[96];
		snprintf(cr, sizeof(cr), "bytes %llu-%llu/%llu", (unsigned long long)first,
		         (unsigned long long)(size - 1), (unsigned long long)size);
		MHD_add_response_header(resp, "Content-Range", cr);
	}
	ret = MHD_queue_response(conn, range ? 206 : 200, resp);
	goto done;
error:
	ret = send_reply(s, conn, method, url, &r);
done:
	if (resp)
		MHD_destroy_response(resp);
	json_decref(r.json);
	free(path);
	free(spath);
	return ret;
}

/* The idempotency key's stored answer: 1 replayed (r filled), 0 none, or a
 * 422 when the key came with another request. */
static int idem_lookup(server *s, const char *key, const uint8_t hash[32], reply *r)
{
	sqlite3_stmt *st = prep(s, "SELECT request, status, body FROM idempotency WHERE key = ?");
	int found = 0;
	if (st == NULL)
		return 0;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		if (sqlite3_column_bytes(st, 0) != 32 ||
		    memcmp(sqlite3_column_blob(st, 0), hash, 32) != 0) {
			set_error(r, 422, "idempotency-key-reused",
			          "the idempotency key was used for another request");
		} else {
			r->status = sqlite3_column_int(st, 1);
			r->json = json_loads((const char *)sqlite3_column_text(st, 2), 0, NULL);
			s->replays++;
		}
		found = 1;
	}
	sqlite3_finalize(st);
	return found;
}

static bool idem_store(server *s, const char *key, const uint8_t hash[32], const reply *r)
{
	char *text = json_dumps(r->json, JSON_COMPACT);
	sqlite3_stmt *st = text ? prep(s, "INSERT INTO idempotency(key, request, status, body)"
	                                  " VALUES (?, ?, ?, ?)")
	                        : NULL;
	bool ok = false;
	if (st) {
		sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
		sqlite3_bind_blob(st, 2, hash, 32, SQLITE_STATIC);
		sqlite3_bind_int(st, 3, r->status);
		sqlite3_bind_text(st, 4, text, -1, SQLITE_STATIC);
		ok = sqlite3_step(st) == SQLITE_DONE;
	}
	sqlite3_finalize(st);
	free(text);
	return ok;
}

static bool key_ok(const char *k)
{
	size_t n = k ? strlen(k) : 0;
	if (n < 8 || n > 128)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = k[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == ':' || c == '-'))
			return false;
	}
	return true;
}

/* A mutating call: parse the body, handle the idempotency key, apply inside a
 * transaction, store the answer. */
static void mutate(server *s, struct MHD_Connection *conn, const char *call, const char *url,
                   char **seg, request *rq, reply *r)
{
	const char *key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Idempotency-Key");
	uint8_t hash[32];
	json_t *body = NULL;
	if (!key_ok(key))
		return set_error(
		    r, 400, "idempotency-key-required",
		    "an Idempotency-Key header (8 to 128 of A-Za-z0-9._:-) is required");
	const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
	if (ct == NULL || strncasecmp(ct, "application/json", 16) != 0)
		return set_error(r, 400, "bad-request", "the body must be application/json");
	body = json_loadb((const char *)rq->body.data, rq->body.len, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(body)) {
		json_decref(body);
		return set_error(r, 400, "bad-request", "the body is not a JSON object");
	}
	crypto_generichash_state h;
	crypto_generichash_init(&h, NULL, 0, sizeof(hash));
	crypto_generichash_update(&h, (const uint8_t *)url, strlen(url) + 1);
	crypto_generichash_update(&h, rq->body.data ? rq->body.data : (const uint8_t *)"",
	                          rq->body.len);
	crypto_generichash_final(&h, hash, sizeof(hash));
	if (!exec_ok(s, "BEGIN IMMEDIATE")) {
		json_decref(body);
		return set_error(r, 500, "internal", "database busy");
	}
	if (idem_lookup(s, key, hash, r)) {
		exec_ok(s, "ROLLBACK");
		json_decref(body);
		return;
	}
	if (strcmp(call, "reassign") == 0)
		reassign(s, seg[2], body, r);
	else if (strcmp(call, "rewrap") == 0)
		rewrap(s, seg[2], body, r);
	else if (strcmp(call, "enroll") == 0)
		enroll(s, body, r);
	else if (strcmp(call, "events") == 0)
		events(s, seg[2], body, r);
	else
		complete(s, seg[2], body, r);
	json_decref(body);
	if (r->json && r->status == 200) {
		if (!idem_store(s, key, hash, r) || !exec_ok(s, "COMMIT")) {
			exec_ok(s, "ROLLBACK");
			return set_error(r, 500, "internal", "database failure");
		}
		if (fault_take(s, FAULT_DROP_AFTER_APPLY, call))
			r->drop = true;
	} else {
		exec_ok(s, "ROLLBACK");
	}
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_size, void **con_cls)
{
	server *s = cls;
	request *rq = *con_cls;
	BK_UNUSED(version);
	if (rq == NULL) {
		rq = calloc(1, sizeof(*rq));
		if (rq == NULL)
			return MHD_NO;
		*con_cls = rq;
		return MHD_YES;
	}
	if (*upload_size > 0) {
		if (rq->body.len + *upload_size > BODY_MAX)
			rq->too_big = true;
		else if (bk_buf_put(&rq->body, upload_data, *upload_size) != 0)
			return MHD_NO;
		*upload_size = 0;
		return MHD_YES;
	}
	if (strcmp(url, "/_sim/stats") == 0 && strcmp(method, "GET") == 0)
		return stats(s, conn, method, url);
	s->requests++;

	reply r = {0};
	char pathbuf[512];
	char *seg[5];
	enum MHD_Result ret;
	bk_strlcpy(pathbuf, url, sizeof(pathbuf));
	size_t n = split(pathbuf, seg, 4);
	const char *call = n <= 4 ? call_name(method, seg, n) : NULL;
	char retry[24];

	sim_fault *f = fault_take(s, FAULT_LATENCY, call ? call : "?");
	if (f) {
		struct timespec ts = {f->arg / 1000, (f->arg % 1000) * 1000000L};
		nanosleep(&ts, NULL);
	}
	if (call == NULL) {
		set_error(&r, 404, "no-such-call", "%s %s is not a call of this API", method, url);
		goto answer;
	}
	if ((f = fault_take(s, FAULT_429, call)) != NULL) {
		snprintf(retry, sizeof(retry), "%ld", f->arg);
		r.retry_after = retry;
		set_error(&r, 429, "rate-limited", "too many requests; retry after %ld s", f->arg);
		goto answer;
	}
	if (fault_take(s, FAULT_500, call)) {
		set_error(&r, 500, "internal", "simulated failure");
		goto answer;
	}
	const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
	bool full = auth_ok(auth, s->cfg->token);
	bool read_only = !full && auth_ok(auth, s->cfg->read_token);
	if (!full && !read_only) {
		set_error(&r, 401, "unauthorized", "missing or unknown bearer token");
		goto answer;
	}
	if (rq->too_big) {
		set_error(&r, 413, "too-large", "the body is larger than %u bytes", BODY_MAX);
		goto answer;
	}
	if (n >= 3 && !id_ok(seg[2]) && strcmp(call, "enroll") != 0) {
		set_error(&r, 400, "bad-request", "'%s' is not a valid identifier", seg[2]);
		goto answer;
	}
	if (strcmp(method, "POST") == 0) {
		if (read_only) {
			set_error(&r, 403, "forbidden", "this token may only read");
			goto answer;
		}
		mutate(s, conn, call, url, seg, rq, &r);
		if (r.drop) {
			json_decref(r.json);
			return MHD_NO; /* applied, then the connection is closed unanswered */
		}
	} else if (strcmp(call, "unit") == 0) {
		get_unit(s, seg[2], &r);
	} else if (strcmp(call, "ticket") == 0) {
		get_ticket(s, seg[2], &r);
	} else if (strcmp(call, "backups") == 0) {
		list_backups(s, seg[2], &r);
	} else if (strcmp(call, "statement") == 0) {
		get_statement(s, seg[2], &r);
	} else {
		return content(s, conn, seg[2], method, url);
	}
answer:
	ret = send_reply(s, conn, method, url, &r);
	json_decref(r.json);
	return ret;
}

static void request_done(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
	BK_UNUSED(cls);
	BK_UNUSED(conn);
	BK_UNUSED(toe);
	request *rq = *con_cls;
	if (rq) {
		bk_buf_free(&rq->body);
		free(rq);
		*con_cls = NULL;
	}
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	BK_UNUSED(cls);
	if (getenv("AIBO_CLOUDSIM_DEBUG")) {
		fputs("aibo-cloudsim: ", stderr);
		vfprintf(stderr, fmt, ap);
	}
}

int sim_fault_parse(sim_fault *out, const char *spec)
{
	char kind[32], rest[64];
	memset(out, 0, sizeof(*out));
	const char *eq = strchr(spec, '=');
	if (eq == NULL || (size_t)(eq - spec) >= sizeof(kind) || strlen(eq + 1) >= sizeof(rest))
		return -1;
	memcpy(kind, spec, (size_t)(eq - spec));
	kind[eq - spec] = '\0';
	strcpy(rest, eq + 1);
	char *colon = strchr(rest, ':');
	char *tail = NULL;
	if (colon) {
		*colon = '\0';
		tail = colon + 1;
	}
	uint64_t v = 0, t = 0;
	static const char *const calls[] = {"unit",    "ticket",    "reassign", "backups",
	                                    "content", "statement", "rewrap",   "enroll",
	                                    "events",  "complete",  NULL};
	if (strcmp(kind, "drop-after-apply") == 0) {
		out->kind = FAULT_DROP_AFTER_APPLY;
		out->count = 1;
		if (tail && (bk_parse_u64(tail, &t) != 0 || t == 0 || t > 1000000))
			return -1;
		if (tail)
			out->count = (long)t;
		bk_strlcpy(out->call, rest, sizeof(out->call));
	} else {
		if (bk_parse_u64(rest, &v) != 0 || v > 100000000)
			return -1;
		if (strcmp(kind, "500") == 0) {
			out->kind = FAULT_500;
			out->count = (long)v;
			if (tail)
				bk_strlcpy(out->call, tail, sizeof(out->call));
		} else if (strcmp(kind, "429") == 0) {
			out->kind = FAULT_429;
			out->count = (long)v;
			out->arg = 1;
			if (tail && (bk_parse_u64(tail, &t) != 0 || t > 3600))
				return -1;
			if (tail)
				out->arg = (long)t;
		} else if (strcmp(kind, "latency") == 0 || strcmp(kind, "cut-content") == 0) {
			out->kind = kind[0] == 'l' ? FAULT_LATENCY : FAULT_CUT_CONTENT;
			out->arg = (long)v;
			out->count = 1;
			if (tail && (bk_parse_u64(tail, &t) != 0 || t == 0 || t > 1000000))
				return -1;
			if (tail)
				out->count = (long)t;
		} else {
			return -1;
		}
	}
	if (out->kind == FAULT_DROP_AFTER_APPLY || out->call[0]) {
		bool known = false;
		for (size_t i = 0; calls[i]; i++)
			known = known || strcmp(calls[i], out->call) == 0;
		if (!known)
			return -1;
	}
	return 0;
}

static int parse_listen(const char *listen, struct sockaddr_storage *ss, bool *v6)
{
	char host[128];
	const char *colon = strrchr(listen, ':');
	uint64_t port;
	memset(ss, 0, sizeof(*ss));
	if (colon == NULL || (size_t)(colon - listen) >= sizeof(host) ||
	    bk_parse_u64(colon + 1, &port) != 0 || port > 65535)
		return -1;
	memcpy(host, listen, (size_t)(colon - listen));
	host[colon - listen] = '\0';
	if (host[0] == '[') {
		size_t n = strlen(host);
		if (n < 3 || host[n - 1] != ']')
			return -1;
		host[n - 1] = '\0';
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		*v6 = true;
		return inet_pton(AF_INET6, host + 1, &a->sin6_addr) == 1 ? 0 : -1;
	}
	struct sockaddr_in *a = (struct sockaddr_in *)ss;
	a->sin_family = AF_INET;
	a->sin_port = htons((uint16_t)port);
	*v6 = false;
	return inet_pton(AF_INET, host, &a->sin_addr) == 1 ? 0 : -1;
}

int sim_serve(const sim_config *cfg)
{
	server s;
	struct sockaddr_storage ss;
	bool v6 = false;
	uint8_t *cert = NULL, *key = NULL;
	size_t cert_len = 0, key_len = 0;
	struct MHD_Daemon *d = NULL;
	int rc = 1;
	memset(&s, 0, sizeof(s));
	s.cfg = cfg;
	memcpy(s.faults, cfg->faults, sizeof(s.faults));
	s.nfaults = cfg->nfaults;
	if (parse_listen(cfg->listen, &ss, &v6) != 0) {
		fprintf(stderr, "aibo-cloudsim: --listen: '%s' is not ADDRESS:PORT\n", cfg->listen);
		return 2;
	}
	if (sim_db_open(&s.db, cfg->db_path) != 0 || sim_pki_load(&s.pki, cfg->pki_dir) != 0)
		goto done;
	if (cfg->record && (s.record = fopen(cfg->record, "a")) == NULL) {
		fprintf(stderr, "aibo-cloudsim: %s: %s\n", cfg->record, strerror(errno));
		goto done;
	}
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	if (v6)
		flags |= MHD_USE_IPv6;
	if (cfg->tls_cert) {
		if (bk_file_read(cfg->tls_cert, 1 << 20, &cert, &cert_len) != 0 ||
		    bk_file_read(cfg->tls_key, 1 << 20, &key, &key_len) != 0) {
			fprintf(stderr, "aibo-cloudsim: %s\n", bk_error_last()->message);
			goto done;
		}
		flags |= MHD_USE_TLS;
	}
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (cfg->tls_cert)
		d = MHD_start_daemon(flags, 0, NULL, NULL, handle, &s, MHD_OPTION_SOCK_ADDR, &ss,
		                     MHD_OPTION_NOTIFY_COMPLETED, request_done, &s,
		                     MHD_OPTION_EXTERNAL_LOGGER, mhd_log, &s,
		                     MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_HTTPS_MEM_KEY,
		                     key, MHD_OPTION_HTTPS_MEM_CERT, cert, MHD_OPTION_END);
	else
		d = MHD_start_daemon(flags, 0, NULL, NULL, handle, &s, MHD_OPTION_SOCK_ADDR, &ss,
		                     MHD_OPTION_NOTIFY_COMPLETED, request_done, &s,
		                     MHD_OPTION_EXTERNAL_LOGGER, mhd_log, &s,
		                     MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
	if (d == NULL) {
		fprintf(stderr, "aibo-cloudsim: cannot listen on %s\n", cfg->listen);
		goto done;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	char host[128];
	bk_strlcpy(host, cfg->listen, sizeof(host));
	*strrchr(host, ':') = '\0';
	printf("listening on %s://%s:%u\n", cfg->tls_cert ? "https" : "http", host,
	       info ? (unsigned)info->port : 0u);
	fflush(stdout);
	int sig = 0;
	sigwait(&set, &sig);
	MHD_stop_daemon(d);
	rc = 0;
done:
	if (s.record)
		fclose(s.record);
	sim_pki_free(&s.pki);
	sqlite3_close(s.db);
	if (key) {
		sodium_memzero(key, key_len);
		bk__free(key);
	}
	bk__free(cert);
	return rc;
}
