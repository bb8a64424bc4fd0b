/* The repair journal in the catalog database: job rows, step rows and the
 * hash-chained audit log. Every change of a job is one transaction, so a
 * crash leaves either the old or the new state. */
#include <sodium.h>
#include <string.h>
#include <time.h>

#include "libbackup/catalog/catalog_internal.h"
#include "libbackup/job/job_internal.h"
#include "libbackup/util/util.h"

static const char *const step_names[BK_JOB_STEPS] = {
    "preflight", "backup", "firmware", "reassign", "restore", "identity", "verify", "complete",
};

const char *bk_job_step_name(unsigned i)
{
	return i < BK_JOB_STEPS ? step_names[i] : NULL;
}

unsigned bk_job_step_count(void)
{
	return BK_JOB_STEPS;
}

int bk_job__db(bk_catalog **out, const bk_config *cfg)
{
	return bk_backup_catalog_open(out, cfg, 1);
}

const char *bk_job__db_path(bk_catalog *cat)
{
	return cat->path;
}

static char *col_dup(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return t ? bk__strdup((const char *)t) : NULL;
}

static void col_copy(sqlite3_stmt *st, int i, char *out, size_t cap)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	bk_strlcpy(out, t ? (const char *)t : "", cap);
}

void bk_job__row_clear(bk_job_row *r)
{
	if (r == NULL)
		return;
	bk__free(r->ticket);
	bk__free(r->source_ref);
	bk__free(r->from_uri);
	bk__free(r->to_uri);
	bk__free(r->firmware_dir);
	bk__free(r->holder);
	json_decref(r->data);
	bk__free(r->error_reason);
	bk__free(r->error_message);
	bk__free(r->hint);
	bk__free(r->report);
	memset(r, 0, sizeof(*r));
}

/* --- The audit chain ------------------------------------------------------------------ */

static void genesis(const char *id, uint8_t out[32])
{
	static const char tag[] = "aibo-restore/audit/1";
	crypto_generichash_state h;
	crypto_generichash_init(&h, NULL, 0, 32);
	crypto_generichash_update(&h, (const uint8_t *)tag, sizeof(tag));
	crypto_generichash_update(&h, (const uint8_t *)id, strlen(id));
	crypto_generichash_final(&h, out, 32);
}

static void be64(uint8_t out[8], uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		out[i] = (uint8_t)v;
}

/* hash_n = BLAKE2b-256(hash_{n-1} || seq || time || step NUL kind NUL message) */
static void chain(const uint8_t prev[32], int64_t seq, int64_t t, const char *step,
                  const char *kind, const char *message, uint8_t out[32])
{
	crypto_generichash_state h;
	uint8_t n[16];
	be64(n, (uint64_t)seq);
	be64(n + 8, (uint64_t)t);
	crypto_generichash_init(&h, NULL, 0, 32);
	crypto_generichash_update(&h, prev, 32);
	crypto_generichash_update(&h, n, sizeof(n));
	crypto_generichash_update(&h, (const uint8_t *)step, strlen(step) + 1);
	crypto_generichash_update(&h, (const uint8_t *)kind, strlen(kind) + 1);
	crypto_generichash_update(&h, (const uint8_t *)message, strlen(message));
	crypto_generichash_final(&h, out, 32);
}

/* Inside a transaction: appends one event after the job's audit head. */
static int append_event(bk_catalog *cat, const char *id, const char *step, const char *kind,
                        const char *message)
{
	sqlite3_stmt *st = NULL;
	uint8_t prev[32], h[32];
	char hex[BK_JOB_HASH_HEX];
	int64_t seq = 0;
	int rc = bk_catalog__prepare(cat, &st,
	                             "SELECT audit_count, audit_head FROM jobs WHERE id = ?1");
	if (rc)
		return rc;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		return bk__error_set(BK_ENOTFOUND, "job-not-found", "job %s: not in the journal", id);
	}
	seq = sqlite3_column_int64(st, 0);
	const char *head = (const char *)sqlite3_column_text(st, 1);
	rc = head && strlen(head) == 64 ? bk_hex_decode(prev, 32, head) : -1;
	sqlite3_finalize(st);
	st = NULL;
	if (rc != 0)
		return bk__error_set(BK_EVERIFY, "audit-broken", "job %s: the audit head is malformed",
		                     id);
	int64_t t = (int64_t)time(NULL);
	if (message == NULL)
		message = "";
	chain(prev, seq, t, step, kind, message, h);
	bk_hex_encode(hex, h, 32);
	rc = bk_catalog__run(cat, "append an audit event",
	                     "INSERT INTO job_events (job_id, seq, time, step, kind, message, "
	                     "hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	                     "tiitttt", id, seq, t, step, kind, message, hex);
	if (rc == 0)
		rc = bk_catalog__run(cat, "update the audit head",
		                     "UPDATE jobs SET audit_count = ?2, audit_head = ?3 WHERE id = ?1",
		                     "tit", id, seq + 1, hex);
	return rc;
}

/* Commits the transaction when `rc` is 0, else rolls it back; returns the
 * outcome. */
static int end_tx(bk_catalog *cat, int rc)
{
	if (rc == 0)
		rc = bk_catalog__commit(cat);
	if (rc)
		bk_catalog__rollback(cat);
	return rc;
}

int bk_job__event(bk_catalog *cat, const char *id, const char *step, const char *kind,
                  const char *message)
{
	int rc = bk_catalog__begin(cat);
	if (rc)
		return rc;
	return end_tx(cat, append_event(cat, id, step, kind, message));
}

int bk_job_audit_verify(const bk_config *cfg, const char *id, size_t *out_count)
{
	bk_catalog *cat = NULL;
	sqlite3_stmt *st = NULL;
	uint8_t h[32], stored[32];
	int64_t expect = 0, count = 0;
	char head[BK_JOB_HASH_HEX] = "";
	int rc;
	if (out_count)
		*out_count = 0;
	if (cfg == NULL || id == NULL)
		return bk__error_set(BK_EINVALID, NULL, "job: missing argument");
	if ((rc = bk_backup_catalog_open(&cat, cfg, 0)))
		return rc;
	if ((rc = bk_catalog__prepare(cat, &st,
	                              "SELECT audit_count, audit_head FROM jobs WHERE id = ?1")))
		goto done;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_ROW) {
		rc = bk__error_set(BK_ENOTFOUND, "job-not-found", "job %s: not in the journal", id);
		goto done;
	}
	count = sqlite3_column_int64(st, 0);
	col_copy(st, 1, head, sizeof(head));
	sqlite3_finalize(st);
	st = NULL;
	genesis(id, h);
	if ((rc = bk_catalog__prepare(cat, &st,
	                              "SELECT seq, time, step, kind, message, hash FROM job_events "
	                              "WHERE job_id = ?1 ORDER BY seq")))
		goto done;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	int s;
	while ((s = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t seq = sqlite3_column_int64(st, 0);
		const char *step = (const char *)sqlite3_column_text(st, 2);
		const char *kind = (const char *)sqlite3_column_text(st, 3);
		const char *msg = (const char *)sqlite3_column_text(st, 4);
		const char *hash = (const char *)sqlite3_column_text(st, 5);
		if (seq != expect) {
			rc = bk__error_set(BK_EVERIFY, "audit-broken",
			                   "job %s: audit event %lld is missing (found %lld next)", id,
			                   (long long)expect, (long long)seq);
			goto done;
		}
		chain(h, seq, sqlite3_column_int64(st, 1), step ? step : "", kind ? kind : "",
		      msg ? msg : "", h);
		if (hash == NULL || strlen(hash) != 64 || bk_hex_decode(stored, 32, hash) != 0 ||
		    sodium_memcmp(stored, h, 32) != 0) {
			rc = bk__error_set(BK_EVERIFY, "audit-broken",
			                   "job %s: audit event %lld was edited, moved or removed "
			                   "(its hash does not follow from the events before it)",
			                   id, (long long)seq);
			goto done;
		}
		expect++;
	}
	if (s != SQLITE_DONE) {
		rc = bk_catalog__sql_error(cat, s, "read the audit log");
		goto done;
	}
	char hex[BK_JOB_HASH_HEX];
	bk_hex_encode(hex, h, 32);
	if (expect != count || (count > 0 && strcmp(hex, head) != 0)) {
		rc = bk__error_set(BK_EVERIFY, "audit-broken",
		                   "job %s: the audit log holds %lld events but the job recorded "
		                   "%lld (events after %lld were removed)",
		                   id, (long long)expect, (long long)count, (long long)expect - 1);
		goto done;
	}
	if (out_count)
		*out_count = (size_t)expect;
done:
	sqlite3_finalize(st);
	bk_catalog_free(cat);
	return rc;
}

/* --- Rows ----------------------------------------------------------------------------- */

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void now_text(char out[24])
{
	char t[21];
	bk_catalog__now(t);
	bk_strlcpy(out, t, 24);
}

int bk_job__create(bk_catalog *cat, const bk_job_row *r)
{
	uint8_t g[32];
	char head[BK_JOB_HASH_HEX], now[24], msg[512];
	json_t *empty = r->data ? NULL : json_object();
	char *data = json_dumps(r->data ? r->data : empty, JSON_COMPACT);
	int rc;
	json_decref(empty);
	if (data == NULL)
		return bk__error_oom();
	genesis(r->id, g);
	bk_hex_encode(head, g, 32);
	now_text(now);
	if ((rc = bk_catalog__begin(cat)))
		goto out;
	rc = bk_catalog__run(cat, "create the job",
	                     "INSERT INTO jobs (id, ticket, source, source_ref, from_uri, "
	                     "to_uri, firmware_dir, overwrite, state, step, created, updated, "
	                     "data, audit_head) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, "
	                     "'running', 'preflight', ?9, ?9, ?10, ?11)",
	                     "tttttttittt", r->id, r->ticket, r->source, r->source_ref, r->from_uri,
	                     r->to_uri, r->firmware_dir, (int64_t)(r->overwrite ? 1 : 0), now, data,
	                     head);
	if (rc == BK_EEXIST) /* the unique index of open jobs per ticket */
		rc = bk__error_set(BK_EBUSY, "ticket-has-job",
		                   "ticket %s already has an unfinished job", r->ticket);
	snprintf(msg, sizeof(msg), "job for ticket %s: %s %s -> %s", r->ticket, r->source,
	         r->source_ref, r->to_uri);
	if (rc == 0)
		rc = append_event(cat, r->id, "preflight", "job-created", msg);
	rc = end_tx(cat, rc);
out:
	free(data);
	return rc;
}

int bk_job__find_open(bk_catalog *cat, const char *ticket, char id[BK_JOB_ID_SIZE])
{
	sqlite3_stmt *st = NULL;
	int rc = bk_catalog__prepare(cat, &st,
	                             "SELECT id FROM jobs WHERE ticket = ?1 AND state NOT IN "
	                             "('complete', 'aborted')");
	if (rc)
		return rc;
	sqlite3_bind_text(st, 1, ticket, -1, SQLITE_STATIC);
	int s = sqlite3_step(st);
	if (s == SQLITE_ROW)
		col_copy(st, 0, id, BK_JOB_ID_SIZE);
	else if (s == SQLITE_DONE)
		rc = BK_ENOTFOUND;
	else
		rc = bk_catalog__sql_error(cat, s, "find the ticket's job");
	sqlite3_finalize(st);
	return rc;
}

int bk_job__load(bk_catalog *cat, const char *id, bk_job_row *out)
{
	sqlite3_stmt *st = NULL;
	int rc;
	memset(out, 0, sizeof(*out));
	rc = bk_catalog__prepare(cat, &st,
	                         "SELECT id, ticket, source, source_ref, from_uri, to_uri, "
	                         "firmware_dir, overwrite, state, step, created, updated, holder, "
	                         "data, error_code, error_reason, error_message, hint, audit_count, "
	                         "audit_head, report FROM jobs WHERE id = ?1");
	if (rc)
		return rc;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	int s = sqlite3_step(st);
	if (s == SQLITE_DONE) {
		rc = bk__error_set(BK_ENOTFOUND, "job-not-found", "job %s: not in the journal", id);
		goto done;
	}
	if (s != SQLITE_ROW) {
		rc = bk_catalog__sql_error(cat, s, "read the job");
		goto done;
	}
	col_copy(st, 0, out->id, sizeof(out->id));
	out->ticket = col_dup(st, 1);
	col_copy(st, 2, out->source, sizeof(out->source));
	out->source_ref = col_dup(st, 3);
	out->from_uri = col_dup(st, 4);
	out->to_uri = col_dup(st, 5);
	out->firmware_dir = col_dup(st, 6);
	out->overwrite = sqlite3_column_int(st, 7);
	col_copy(st, 8, out->state, sizeof(out->state));
	col_copy(st, 9, out->step, sizeof(out->step));
	col_copy(st, 10, out->created, sizeof(out->created));
	col_copy(st, 11, out->updated, sizeof(out->updated));
	out->holder = col_dup(st, 12);
	const char *d = (const char *)sqlite3_column_text(st, 13);
	out->data = d ? json_loads(d, 0, NULL) : json_object();
	out->error_code = sqlite3_column_int(st, 14);
	out->error_reason = col_dup(st, 15);
	out->error_message = col_dup(st, 16);
	out->hint = col_dup(st, 17);
	out->audit_count = sqlite3_column_int64(st, 18);
	col_copy(st, 19, out->audit_head, sizeof(out->audit_head));
	out->report = col_dup(st, 20);
	/* A text column that is there but did not copy: out of memory. */
	static const int text_cols[] = {1, 3, 4, 5, 6, 12, 15, 16, 17, 20};
	char *const copies[] = {out->ticket,       out->source_ref,    out->from_uri,
	                        out->to_uri,       out->firmware_dir,  out->holder,
	                        out->error_reason, out->error_message, out->hint,
	                        out->report};
	for (size_t i = 0; i < BK_ARRAY_LEN(text_cols); i++)
		if (copies[i] == NULL && sqlite3_column_type(st, text_cols[i]) != SQLITE_NULL) {
			rc = bk__error_oom();
			goto done;
		}
	if (out->ticket == NULL || out->source_ref == NULL || out->to_uri == NULL ||
	    !json_is_object(out->data))
		rc = bk__error_set(BK_EFORMAT, "job-corrupt", "job %s: its journal row is damaged",
		                   id);
done:
	sqlite3_finalize(st);
	if (rc)
		bk_job__row_clear(out);
	return rc;
}

/* --- Changes -------------------------------------------------------------------------- */

int bk_job__step_begin(bk_catalog *cat, const char *id, const char *step, const char *holder,
                       const char *message)
{
	char now[24];
	int rc;
	now_text(now);
	if ((rc = bk_catalog__begin(cat)))
		return rc;
	rc = bk_catalog__run(cat, "record the step",
	                     "INSERT INTO job_steps (job_id, step, state, attempts, started, "
	                     "begin_ms) VALUES (?1, ?2, 'running', 1, ?3, ?4) ON CONFLICT "
	                     "(job_id, step) DO UPDATE SET state = 'running', attempts = "
	                     "attempts + 1, finished = NULL, begin_ms = ?4",
	                     "ttti", id, step, now, wall_ms());
	if (rc == 0)
		rc = bk_catalog__run(cat, "update the job",
		                     "UPDATE jobs SET state = 'running', step = ?2, updated = ?3, "
		                     "holder = ?4, error_code = NULL, error_reason = NULL, "
		                     "error_message = NULL, hint = NULL WHERE id = ?1",
		                     "tttt", id, step, now, holder ? holder : "");
	if (rc == 0)
		rc = append_event(cat, id, step, "step-begin", message);
	return end_tx(cat, rc);
}

int bk_job__step_end(bk_catalog *cat, const char *id, const char *step, const char *state,
                     const json_t *outcome, const json_t *data, const char *next,
                     const char *message)
{
	char now[24];
	char *otext = outcome ? json_dumps(outcome, JSON_COMPACT) : NULL;
	char *dtext = data ? json_dumps(data, JSON_COMPACT) : NULL;
	int rc = (outcome && !otext) || (data && !dtext) ? bk__error_oom() : 0;
	if (rc)
		goto out;
	now_text(now);
	if ((rc = bk_catalog__begin(cat)))
		goto out;
	/* seconds: the time of every attempt, added up. */
	rc = bk_catalog__run(cat, "record the step",
	                     "UPDATE job_steps SET state = ?3, finished = ?4, outcome = ?5, "
	                     "seconds = seconds + MAX(0, ?6 - begin_ms) / 1000.0 WHERE job_id "
	                     "= ?1 AND step = ?2",
	                     "ttttti", id, step, state, now, otext, wall_ms());
	if (rc == 0)
		rc = bk_catalog__run(cat, "update the job",
		                     "UPDATE jobs SET step = ?2, updated = ?3, data = COALESCE(?4, "
		                     "data) WHERE id = ?1",
		                     "tttt", id, next, now, dtext);
	if (rc == 0)
		rc = append_event(cat, id, step,
		                  strcmp(state, "skipped") == 0 ? "step-skipped" : "step-done",
		                  message);
	rc = end_tx(cat, rc);
out:
	free(otext);
	free(dtext);
	return rc;
}

int bk_job__stop(bk_catalog *cat, const char *id, const char *state, int code, const char *reason,
                 const char *message, const char *hint, const char *kind, const char *event)
{
	sqlite3_stmt *st = NULL;
	char now[24], step[16] = "";
	int rc;
	now_text(now);
	if ((rc = bk_catalog__begin(cat)))
		return rc;
	rc = bk_catalog__run(cat, "update the job",
	                     "UPDATE jobs SET state = ?2, updated = ?3, holder = '', "
	                     "error_code = ?4, error_reason = ?5, error_message = ?6, hint = "
	                     "?7 WHERE id = ?1",
	                     "tttzttt", id, state, now, (int64_t)code, reason, message, hint);
	if (rc == 0 && code)
		rc = bk_catalog__run(cat, "record the step",
		                     "UPDATE job_steps SET state = 'failed', finished = ?2 WHERE "
		                     "job_id = ?1 AND state = 'running'",
		                     "tt", id, now);
	if (rc == 0 && (rc = bk_catalog__prepare(cat, &st, "SELECT step FROM jobs WHERE id = ?1")) == 0) {
		sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW)
			col_copy(st, 0, step, sizeof(step));
		sqlite3_finalize(st);
	}
	if (rc == 0)
		rc = append_event(cat, id, step, kind, event);
	return end_tx(cat, rc);
}

int bk_job__save_report(bk_catalog *cat, const char *id, const char *report)
{
	return bk_catalog__run(cat, "save the report", "UPDATE jobs SET report = ?2 WHERE id = ?1",
	                       "tt", id, report);
}

/* --- Reading the log ---------------------------------------------------------------- */

static int events_query(bk_catalog *cat, const char *id, int pending, json_t **out)
{
	sqlite3_stmt *st = NULL;
	json_t *arr = json_array();
	int rc = arr ? 0 : bk__error_oom();
	*out = NULL;
	if (rc)
		return rc;
	rc = bk_catalog__prepare(cat, &st,
	                         pending ? "SELECT seq, time, step, kind, message, hash FROM "
	                                   "job_events WHERE job_id = ?1 AND uploaded = 0 ORDER BY "
	                                   "seq"
	                                 : "SELECT seq, time, step, kind, message, hash FROM "
	                                   "job_events WHERE job_id = ?1 ORDER BY seq");
	if (rc)
		goto done;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	int s;
	while ((s = sqlite3_step(st)) == SQLITE_ROW) {
		json_t *e = json_pack(
		    "{s:I, s:I, s:s, s:s, s:s, s:s}", "seq", (json_int_t)sqlite3_column_int64(st, 0),
		    "time", (json_int_t)sqlite3_column_int64(st, 1), "step",
		    (const char *)sqlite3_column_text(st, 2), "kind",
		    (const char *)sqlite3_column_text(st, 3), "message",
		    (const char *)sqlite3_column_text(st, 4), "hash",
		    (const char *)sqlite3_column_text(st, 5));
		if (e == NULL || json_array_append_new(arr, e) != 0) {
			rc = bk__error_oom();
			goto done;
		}
	}
	if (s != SQLITE_DONE) {
		rc = bk_catalog__sql_error(cat, s, "read the audit log");
		goto done;
	}
	*out = arr;
	arr = NULL;
done:
	sqlite3_finalize(st);
	json_decref(arr);
	return rc;
}

int bk_job__events_pending(bk_catalog *cat, const char *id, json_t **out)
{
	return events_query(cat, id, 1, out);
}

int bk_job__events_all(bk_catalog *cat, const char *id, json_t **out)
{
	return events_query(cat, id, 0, out);
}

int bk_job__events_mark_uploaded(bk_catalog *cat, const char *id, int64_t upto_seq)
{
	return bk_catalog__run(cat, "mark events uploaded",
	                       "UPDATE job_events SET uploaded = 1 WHERE job_id = ?1 AND seq <= ?2",
	                       "ti", id, upto_seq);
}

int bk_job__steps_all(bk_catalog *cat, const char *id, json_t **out)
{
	sqlite3_stmt *st = NULL;
	json_t *arr = json_array();
	int rc = arr ? 0 : bk__error_oom();
	*out = NULL;
	if (rc)
		return rc;
	rc = bk_catalog__prepare(cat, &st,
	                         "SELECT step, state, attempts, started, finished, seconds, outcome "
	                         "FROM job_steps WHERE job_id = ?1");
	if (rc)
		goto done;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	json_t *rows = json_object();
	int s;
	while ((s = sqlite3_step(st)) == SQLITE_ROW) {
		const char *o = (const char *)sqlite3_column_text(st, 6);
		json_t *oj = o ? json_loads(o, 0, NULL) : NULL;
		const char *fin = (const char *)sqlite3_column_text(st, 4);
		json_t *r = json_pack("{s:s, s:s, s:i, s:s, s:o, s:f, s:o}", "name",
		                      (const char *)sqlite3_column_text(st, 0), "state",
		                      (const char *)sqlite3_column_text(st, 1), "attempts",
		                      sqlite3_column_int(st, 2), "started",
		                      (const char *)sqlite3_column_text(st, 3), "finished",
		                      fin ? json_string(fin) : json_null(), "seconds",
		                      sqlite3_column_double(st, 5), "outcome",
		                      oj ? oj : json_null());
		if (r == NULL || rows == NULL ||
		    json_object_set_new(rows, (const char *)sqlite3_column_text(st, 0), r) != 0) {
			json_decref(rows);
			rc = bk__error_oom();
			goto done;
		}
	}
	if (s != SQLITE_DONE) {
		json_decref(rows);
		rc = bk_catalog__sql_error(cat, s, "read the steps");
		goto done;
	}
	/* In the job's order, every step listed. */
	for (unsigned i = 0; i < BK_JOB_STEPS; i++) {
		json_t *r = json_object_get(rows, step_names[i]);
		if (r)
			json_incref(r);
		else
			r = json_pack("{s:s, s:s, s:i, s:n, s:n, s:f, s:n}", "name", step_names[i],
			              "state", "pending", "attempts", 0, "started", "finished",
			              "seconds", 0.0, "outcome");
		if (r == NULL || json_array_append_new(arr, r) != 0) {
			json_decref(rows);
			rc = bk__error_oom();
			goto done;
		}
	}
	json_decref(rows);
	*out = arr;
	arr = NULL;
done:
	sqlite3_finalize(st);
	json_decref(arr);
	return rc;
}

int bk_job__list(bk_catalog *cat, json_t **out)
{
	sqlite3_stmt *st = NULL;
	json_t *arr = json_array();
	int rc = arr ? 0 : bk__error_oom();
	*out = NULL;
	if (rc)
		return rc;
	rc = bk_catalog__prepare(cat, &st,
	                         "SELECT id, ticket, state, step, source, created, updated, "
	                         "json_extract(data, '$.old_serial'), json_extract(data, "
	                         "'$.new_serial') FROM jobs ORDER BY created DESC, id DESC");
	if (rc)
		goto done;
	int s;
	while ((s = sqlite3_step(st)) == SQLITE_ROW) {
		const char *o = (const char *)sqlite3_column_text(st, 7);
		const char *n = (const char *)sqlite3_column_text(st, 8);
		json_t *r = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "id",
		                      (const char *)sqlite3_column_text(st, 0), "ticket",
		                      (const char *)sqlite3_column_text(st, 1), "state",
		                      (const char *)sqlite3_column_text(st, 2), "step",
		                      (const char *)sqlite3_column_text(st, 3), "source",
		                      (const char *)sqlite3_column_text(st, 4), "created",
		                      (const char *)sqlite3_column_text(st, 5), "updated",
		                      (const char *)sqlite3_column_text(st, 6), "old_serial",
		                      o ? o : "", "new_serial", n ? n : "");
		if (r == NULL || json_array_append_new(arr, r) != 0) {
			rc = bk__error_oom();
			goto done;
		}
	}
	if (s != SQLITE_DONE) {
		rc = bk_catalog__sql_error(cat, s, "list the jobs");
		goto done;
	}
	*out = arr;
	arr = NULL;
done:
	sqlite3_finalize(st);
	json_decref(arr);
	return rc;
}

int bk_job__set_uris(bk_catalog *cat, const char *id, const char *from_uri, const char *to_uri)
{
	char msg[600];
	int rc = bk_catalog__begin(cat);
	if (rc)
		return rc;
	rc = bk_catalog__run(cat, "update the job",
	                     "UPDATE jobs SET from_uri = COALESCE(?2, from_uri), to_uri = "
	                     "COALESCE(?3, to_uri) WHERE id = ?1",
	                     "ttt", id, from_uri, to_uri);
	snprintf(msg, sizeof(msg), "units now at: old %s, replacement %s",
	         from_uri ? from_uri : "(unchanged)", to_uri ? to_uri : "(unchanged)");
	if (rc == 0)
		rc = append_event(cat, id, "preflight", "job-addresses", msg);
	return end_tx(cat, rc);
}
