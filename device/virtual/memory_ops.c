/* The virtual robot's backup and restore handlers (see memory_ops.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "crypto/age.h"
#include "crypto/bech32.h"
#include "device/virtual/memory_ops.h"
#include "libbackup/archive/archive.h"
#include "libbackup/backup/backup_internal.h"

#define MAX_RECIPIENTS 16
#define BACKUP_DIR     "backup"
#define RESTORE_DIR    "restore"
#define INCOMING       "restore/incoming.age"
#define STATEMENT      "restore/statement"
#define MEMORY_NEW     "memory.new"

#define READ_WAIT_S 10

#define RX_RANGES    64
#define RX_SAVE_STEP ((uint64_t)1 << 20)

struct bk_vmemops {
	bk_vunit *u;
	struct backup_job *job; /* the backup being made, if any */
	char id[40]; /* the backup whose file `fd` holds */
	int fd;
	uint64_t size;
	/* The restore being received: the bytes held without a gap from 0
	 * (recorded in unit.db every RX_SAVE_STEP bytes, so a power-up resumes
	 * from at most that much earlier), and the pieces past a gap (writes
	 * may arrive out of order when a request is lost). */
	bool rx_loaded;
	uint64_t rx_size; /* the staging's size (0: read it from unit.db) */
	int rx_fd;        /* the staging file, open for writing (-1: not yet) */
	uint64_t rx_prefix;
	uint64_t rx_saved;
	size_t rx_n;
	struct {
		uint64_t a, b;
	} rx[RX_RANGES];
};

/* --- Small helpers ------------------------------------------------------------- */

static char *unit_path(bk_vunit *u, const char *rel)
{
	return bk_path_join(bk_vunit_dir(u), rel);
}

static int db_err(bk_vunit *u, const char *what)
{
	return bk__error_set(BK_ERROR, "unit-db", "unit %s: %s: %s", bk_vunit_serial(u), what,
	                     sqlite3_errmsg(bk_vunit_db(u)));
}

/* The staging row `kind` as JSON (*out NULL when there is none). */
static int row_get(bk_vunit *u, const char *kind, json_t **out)
{
	sqlite3_stmt *st = NULL;
	int rc = 0, s;
	*out = NULL;
	if (sqlite3_prepare_v2(bk_vunit_db(u), "SELECT meta FROM staging WHERE kind = ?1", -1, &st,
	                       NULL) != SQLITE_OK)
		return db_err(u, "read staging");
	sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
	s = sqlite3_step(st);
	if (s == SQLITE_ROW) {
		*out = json_loads((const char *)sqlite3_column_text(st, 0), 0, NULL);
		if (*out == NULL)
			rc = bk__error_set(BK_EFORMAT, "unit-db", "unit: staging row %s unreadable",
			                   kind);
	} else if (s != SQLITE_DONE) {
		rc = db_err(u, "read staging");
	}
	sqlite3_finalize(st);
	return rc;
}

static int row_put(bk_vunit *u, const char *kind, const json_t *meta, uint64_t bytes)
{
	sqlite3_stmt *st = NULL;
	char *text = json_dumps(meta, JSON_COMPACT);
	int rc = 0;
	if (text == NULL)
		return bk__error_oom();
	if (sqlite3_prepare_v2(bk_vunit_db(u),
	                       "INSERT OR REPLACE INTO staging (kind, meta, bytes, updated) "
	                       "VALUES (?1, ?2, ?3, ?4)",
	                       -1, &st, NULL) != SQLITE_OK) {
		rc = db_err(u, "write staging");
		goto done;
	}
	sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)bytes);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)time(NULL));
	if (sqlite3_step(st) != SQLITE_DONE)
		rc = db_err(u, "write staging");
done:
	sqlite3_finalize(st);
	free(text);
	return rc;
}

static int row_del(bk_vunit *u, const char *kind)
{
	sqlite3_stmt *st = NULL;
	int rc = 0;
	if (sqlite3_prepare_v2(bk_vunit_db(u), "DELETE FROM staging WHERE kind = ?1", -1, &st,
	                       NULL) != SQLITE_OK)
		return db_err(u, "clear staging");
	sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		rc = db_err(u, "clear staging");
	sqlite3_finalize(st);
	return rc;
}

/* Removes <unit>/<rel> and everything below it (missing is fine). */
static int remove_in_unit(bk_vunit *u, const char *rel)
{
	int dfd = open(bk_vunit_dir(u), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return bk__error_errno(errno, "%s", bk_vunit_dir(u));
	int rc = bk_archive__remove_tree(dfd, rel);
	close(dfd);
	return rc;
}

static const char *jstr(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static int juint(const json_t *o, const char *k, uint64_t *out)
{
	json_t *v = json_object_get(o, k);
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return bk__error_set(BK_EINVALID, "bad-request",
		                     "request: \"%s\" must be a "
		                     "non-negative integer",
		                     k);
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

/* The running firmware's version and schema range, and the unit's model. */
typedef struct unit_facts {
	json_t *info;
	const char *serial, *model, *hw, *fw_version;
	uint64_t schema, schema_min, schema_max;
} unit_facts;

static int facts_get(bk_vunit *u, unit_facts *f)
{
	memset(f, 0, sizeof(*f));
	int rc = bk_vunit_info_json(u, &f->info);
	if (rc)
		return rc;
	json_t *fw = json_object_get(f->info, "firmware");
	f->serial = jstr(f->info, "serial");
	f->model = jstr(f->info, "model");
	f->hw = jstr(f->info, "hw_revision");
	f->fw_version = jstr(fw, "version");
	f->schema = (uint64_t)json_integer_value(
	    json_object_get(json_object_get(f->info, "memory"), "schema"));
	f->schema_min = (uint64_t)json_integer_value(json_object_get(fw, "schema_min"));
	f->schema_max = (uint64_t)json_integer_value(json_object_get(fw, "schema_max"));
	if (!f->serial || !f->model || !f->hw || !f->fw_version) {
		json_decref(f->info);
		f->info = NULL;
		return bk__error_set(BK_ERROR, "unit-state", "unit: incomplete state");
	}
	return 0;
}

/* The unit's age identity as a decryption set. */
static int unit_identities(bk_vunit *u, bk_age_identities **out)
{
	const bk_keyfile *k = bk_vunit_keys(u);
	const uint8_t *sk = bk_keyfile_age_secret(k);
	bk_age_identities *set = NULL;
	bk_age_identity *id = NULL;
	char text[BK_AGE_IDENTITY_STR_SIZE + 8];
	int rc;
	*out = NULL;
	if (sk == NULL)
		return bk__error_set(BK_EAUTH, "no-age-key", "unit %s has no age key",
		                     bk_vunit_serial(u));
	rc = bk_bech32_encode(text, sizeof(text), "age-secret-key-", sk, BK_AGE_X25519_LEN);
	if (rc == 0) {
		for (size_t i = 0; text[i]; i++)
			text[i] = (char)toupper((unsigned char)text[i]);
		rc = bk_age_identity_parse(&id, text, strlen(text));
	}
	sodium_memzero(text, sizeof(text));
	if (rc == 0)
		rc = bk_age_identities_new(&set);
	if (rc == 0)
		rc = bk_age_identities_add(set, id);
	bk_age_identity_free(id);
	if (rc) {
		bk_age_identities_free(set);
		return rc;
	}
	*out = set;
	return 0;
}

/* --- Backups -------------------------------------------------------------------- */

/* A backup being produced in a thread of its own, so BACKUP_READ can send
 * the first bytes while the rest is still being archived and encrypted. The
 * session thread starts it, waits on it, and finishes it (rename, unit.db);
 * the producing thread touches neither unit.db nor the unit's state. */
typedef struct backup_job {
	pthread_t thread;
	bool joined; /* no thread to join (not started, or joined) */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* Guarded by `lock`. */
	uint64_t produced;
	bool finished;
	bool cancel;
	int rc;
	int err_code;
	char err_reason[48];
	char err_msg[256];
	/* Set before the thread starts. */
	bk_vmemops *m;
	unit_facts f;
	bk_age_recipient rcpt[MAX_RECIPIENTS];
	size_t nrcpt;
	unsigned domains;
	char id[40];
	json_t *request;
	char *dir, *part, *final;
	int wfd, rfd;
	const bk_cert *cert;
	const uint8_t *ed_sk;
	/* Valid once finished with rc 0. */
	uint8_t *stmt;
	size_t stmt_len;
	uint64_t size, header;
} backup_job;

static void close_backup(bk_vmemops *m)
{
	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
	m->id[0] = '\0';
	m->size = 0;
}

/* Counts the bytes that reached the file and wakes waiting readers. */
typedef struct count_stream {
	bk_stream base;
	backup_job *job;
} count_stream;

static int count_write(bk_stream *s, const void *buf, size_t len, bk_deadline d)
{
	count_stream *c = (count_stream *)s;
	int rc = bk_stream_write(s->next, buf, len, d);
	pthread_mutex_lock(&c->job->lock);
	if (rc == 0)
		c->job->produced += len;
	bool cancel = c->job->cancel;
	pthread_cond_broadcast(&c->job->cond);
	pthread_mutex_unlock(&c->job->lock);
	if (rc == 0 && cancel)
		rc = bk__error_set(BK_ECANCELLED, "cancelled", "backup cancelled");
	return rc;
}

static void count_release(bk_stream *s)
{
	bk__free(s);
}

static const bk_stream_ops count_ops = {
    .version = BK_STREAM_OPS_VERSION,
    .name = "count",
    .write = count_write,
    .release = count_release,
};

/* Produces the file `job->part` and its statement (in the job's thread). */
static int produce_backup(backup_job *job)
{
	bk_stream *fdw = NULL, *cnt = NULL, *hw = NULL, *enc = NULL;
	bk_manifest *man = NULL;
	bk_archive_stats stats;
	bk_payload_digest pd;
	unit_facts *f = &job->f;
	int rc;
	memset(&pd, 0, sizeof(pd));
	if ((rc = bk_stream_fd_new(&fdw, job->wfd, 0)))
		goto done;
	count_stream *c = bk__calloc(1, sizeof(*c));
	if (c == NULL) {
		rc = bk__error_oom();
		goto done;
	}
	c->base.ops = &count_ops;
	c->base.next = fdw;
	c->base.owns_next = 1;
	c->job = job;
	cnt = &c->base;
	fdw = NULL;
	if ((rc = bk_payload_hash_writer(&hw, cnt, 1, &pd)))
		goto done;
	cnt = NULL;
	bk_age_encrypt_opts eo = BK_AGE_ENCRYPT_OPTS_INIT;
	eo.recipients = job->rcpt;
	eo.recipient_count = job->nrcpt;
	if ((rc = bk_age_encrypt_new(&enc, hw, 1, &eo)))
		goto done;
	hw = NULL;
	bk_archive_write_opts wo = BK_ARCHIVE_WRITE_OPTS_INIT;
	wo.info.serial = f->serial;
	wo.info.model = f->model;
	wo.info.hardware_revision = f->hw;
	wo.info.firmware_version = f->fw_version;
	wo.info.schema_version = f->schema;
	wo.info.backup_id = job->id;
	wo.info.created = (int64_t)time(NULL);
	wo.domains = job->domains;
	/* Like a terminal's pack: hashing, reading, compressing and encrypting
	 * overlap (the chain below is used by one thread at a time). */
	wo.threads = bk_archive__auto_threads();
	if ((rc = bk_archive_write(enc, bk_vunit_memory_dir(job->m->u), &wo, &man, &stats)))
		goto done;
	rc = bk_stream_close(enc, BK_DEADLINE_NONE);
	enc = NULL;
	if (rc)
		goto done;
	if (fsync(job->wfd) != 0) {
		rc = bk__error_errno(errno, "%s: fsync", job->part);
		goto done;
	}
	bk_statement_info si;
	memset(&si, 0, sizeof(si));
	si.backup_id = job->id;
	si.serial = f->serial;
	si.model = f->model;
	si.hardware_revision = f->hw;
	si.firmware_version = f->fw_version;
	si.schema_version = f->schema;
	si.created = wo.info.created;
	si.plaintext_size = stats.compressed_bytes;
	si.payload_size = pd.payload_len;
	memcpy(si.payload_digest, pd.digest, sizeof(si.payload_digest));
	if (!bk_manifest_raw_digest(man, si.manifest_digest)) {
		rc = bk__error_set(BK_ERROR, "manifest-digest", "unit: no manifest digest");
		goto done;
	}
	rc = bk_statement_sign(&job->stmt, &job->stmt_len, &si, job->cert, job->ed_sk);
	if (rc)
		goto done;
	job->size = pd.header_len + pd.payload_len;
	job->header = pd.header_len;
done:
	bk_stream_free(enc);
	bk_stream_free(hw);
	bk_stream_free(cnt);
	bk_stream_free(fdw);
	bk_manifest_free(man);
	return rc;
}

static void *job_main(void *arg)
{
	backup_job *job = arg;
	int rc = produce_backup(job);
	const bk_error *e = bk_error_last();
	pthread_mutex_lock(&job->lock);
	job->rc = rc;
	if (rc) {
		job->err_code = e->code ? e->code : rc;
		bk_strlcpy(job->err_reason, e->reason ? e->reason : "", sizeof(job->err_reason));
		bk_strlcpy(job->err_msg, e->message ? e->message : "backup failed",
		           sizeof(job->err_msg));
	}
	job->finished = true;
	pthread_cond_broadcast(&job->cond);
	pthread_mutex_unlock(&job->lock);
	bk_error_clear();
	return NULL;
}

/* Raises the producing thread's error in this thread. */
static int job_error(backup_job *job)
{
	return bk__error_set(job->err_code, job->err_reason[0] ? job->err_reason : NULL, "%s",
	                     job->err_msg);
}

/* Stops (when still running), joins and frees the job; removes its part
 * file unless it was finished. */
static void job_drop(bk_vmemops *m)
{
	backup_job *job = m->job;
	if (job == NULL)
		return;
	if (!job->joined) {
		pthread_mutex_lock(&job->lock);
		job->cancel = true;
		pthread_mutex_unlock(&job->lock);
		pthread_join(job->thread, NULL);
	}
	if (job->wfd >= 0)
		close(job->wfd);
	if (job->rfd >= 0)
		close(job->rfd);
	if (job->part)
		unlink(job->part);
	pthread_cond_destroy(&job->cond);
	pthread_mutex_destroy(&job->lock);
	json_decref(job->request);
	json_decref(job->f.info);
	bk__free(job->stmt);
	bk__free(job->dir);
	bk__free(job->part);
	bk__free(job->final);
	bk__free(job);
	m->job = NULL;
}

/* A finished job becomes the kept backup: renamed into place and recorded
 * in unit.db, its file open for BACKUP_READ. */
static int job_finish(bk_vmemops *m)
{
	backup_job *job = m->job;
	json_t *meta = NULL;
	int rc;
	pthread_join(job->thread, NULL);
	job->joined = true;
	if (job->rc) {
		rc = job_error(job);
		goto done;
	}
	if (rename(job->part, job->final) != 0) {
		rc = bk__error_errno(errno, "%s", job->final);
		goto done;
	}
	bk__free(job->part);
	job->part = NULL;
	if ((rc = bk_fsync_dir(job->dir)))
		goto done;
	meta = json_pack("{s:s, s:O, s:I, s:I, s:s%}", "id", job->id, "request", job->request,
	                 "size", (json_int_t)job->size, "header_size", (json_int_t)job->header,
	                 "statement", (const char *)job->stmt, job->stmt_len);
	if (meta == NULL) {
		rc = bk__error_oom();
		goto done;
	}
	if ((rc = row_put(m->u, "backup", meta, job->size)) || (rc = row_del(m->u, "making")))
		goto done;
	close_backup(m);
	m->fd = job->rfd;
	job->rfd = -1;
	bk_strlcpy(m->id, job->id, sizeof(m->id));
	m->size = job->size;
done:
	json_decref(meta);
	job_drop(m);
	return rc;
}

/* Starts producing backup `id` for `request` in a new thread. */
static int job_start(bk_vmemops *m, const bk_age_recipient *rcpt, size_t nrcpt, unsigned domains,
                     const char *id, json_t *request)
{
	bk_vunit *u = m->u;
	backup_job *job = bk__calloc(1, sizeof(*job));
	int rc = 0;
	if (job == NULL)
		return bk__error_oom();
	job->joined = true;
	job->wfd = job->rfd = -1;
	job->m = m;
	pthread_mutex_init(&job->lock, NULL);
	pthread_cond_init(&job->cond, NULL);
	m->job = job; /* job_drop cleans up from here on */
	memcpy(job->rcpt, rcpt, nrcpt * sizeof(*rcpt));
	job->nrcpt = nrcpt;
	job->domains = domains;
	bk_strlcpy(job->id, id, sizeof(job->id));
	job->request = json_incref(request);
	job->cert = bk_vunit_cert(u);
	job->ed_sk = bk_keyfile_ed25519_secret(bk_vunit_keys(u));
	if ((rc = facts_get(u, &job->f)))
		goto done;
	job->dir = unit_path(u, BACKUP_DIR);
	job->part = job->dir ? bk__asprintf("%s/%s.aibk.part", job->dir, id) : NULL;
	job->final = job->dir ? bk__asprintf("%s/%s.aibk", job->dir, id) : NULL;
	if (job->part == NULL || job->final == NULL) {
		rc = bk__error_oom();
		goto done;
	}
	if ((rc = bk_mkdir_p(job->dir, 0700)))
		goto done;
	job->wfd = open(job->part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (job->wfd >= 0)
		job->rfd = open(job->part, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (job->wfd < 0 || job->rfd < 0) {
		rc = bk__error_errno(errno, "%s", job->part);
		goto done;
	}
	if (pthread_create(&job->thread, NULL, job_main, job) != 0) {
		rc = bk__error_set(BK_ERROR, "thread", "unit %s: cannot start the backup",
		                   bk_vunit_serial(u));
		goto done;
	}
	job->joined = false;
done:
	if (rc)
		job_drop(m);
	return rc;
}

/* Waits until the job has produced `end` bytes or finished, at most
 * READ_WAIT_S seconds. */
static void job_wait(backup_job *job, uint64_t end, uint64_t *produced, bool *finished)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += READ_WAIT_S;
	pthread_mutex_lock(&job->lock);
	while (job->produced < end && !job->finished)
		if (pthread_cond_timedwait(&job->cond, &job->lock, &ts) == ETIMEDOUT)
			break;
	*produced = job->produced;
	*finished = job->finished;
	pthread_mutex_unlock(&job->lock);
}

/* Answers the kept backup (a finished one). */
static int answer_kept(json_t *row, bk_vunit_reply *reply, bool resumed)
{
	reply->json = json_pack("{s:O, s:O, s:O, s:O, s:b}", "id", json_object_get(row, "id"),
	                        "size", json_object_get(row, "size"), "header_size",
	                        json_object_get(row, "header_size"), "statement",
	                        json_object_get(row, "statement"), "resumed", resumed);
	return reply->json ? 0 : bk__error_oom();
}

static int backup_begin(bk_vunit *u, const bk_proto_msg *req, bk_vunit_reply *reply, void *payload)
{
	bk_vmemops *m = payload;
	json_t *rl = json_object_get(req->json, "recipients");
	json_t *dl = json_object_get(req->json, "domains");
	json_t *old = NULL, *norm = NULL;
	bk_age_recipient rcpt[MAX_RECIPIENTS];
	size_t nrcpt = 0, i;
	unsigned domains = 0;
	bool stream = json_is_true(json_object_get(req->json, "stream"));
	char id[37];
	int rc = 0;
	json_t *v;
	if (!json_is_array(rl) || json_array_size(rl) == 0 || json_array_size(rl) > MAX_RECIPIENTS)
		return bk__error_set(BK_EINVALID, "bad-request",
		                     "BACKUP_BEGIN needs 1 to %d recipients", MAX_RECIPIENTS);
	json_array_foreach(rl, i, v)
	{
		if (!json_is_string(v) ||
		    bk_age_recipient_parse(&rcpt[nrcpt], json_string_value(v)))
			return bk__error_set(BK_EINVALID, "bad-recipient",
			                     "BACKUP_BEGIN: recipient %zu is not an age recipient",
			                     i);
		nrcpt++;
	}
	if (dl != NULL && !json_is_null(dl)) {
		if (!json_is_array(dl))
			return bk__error_set(BK_EINVALID, "bad-request",
			                     "BACKUP_BEGIN: \"domains\" must be a list");
		json_array_foreach(dl, i, v)
		{
			int d = json_is_string(v)
			            ? bk_domain_lookup(json_string_value(v), json_string_length(v))
			            : -1;
			if (d < 0)
				return bk__error_set(BK_EINVALID, "unknown-domain",
				                     "BACKUP_BEGIN: domain %zu is unknown", i);
			domains |= BK_DOMAIN_BIT(d);
		}
	}
	if ((rc = bk_vunit_step(u, "backup-begin", 0)))
		return rc;
	norm = json_pack("{s:O, s:i}", "recipients", rl, "domains", (int)domains);
	if (norm == NULL)
		return bk__error_oom();
	/* The backup being made for the same request: answered again while it
	 * is made (streaming), kept once it is done. */
	if (m->job && json_equal(m->job->request, norm)) {
		uint64_t produced = 0;
		bool finished = false;
		job_wait(m->job, 0, &produced, &finished);
		if (!finished && stream) {
			reply->json = json_pack("{s:s, s:b, s:b}", "id", m->job->id, "streaming", 1,
			                        "resumed", 1);
			rc = reply->json ? 0 : bk__error_oom();
			goto done;
		}
		if (!finished)
			job_wait(m->job, UINT64_MAX, &produced, &finished);
		if ((rc = job_finish(m)))
			goto done;
	}
	/* A kept backup made for the same request is answered again. */
	if ((rc = row_get(u, "backup", &old)))
		goto done;
	if (old && json_equal(json_object_get(old, "request"), norm)) {
		char *p = bk__asprintf("%s/%s/%s.aibk", bk_vunit_dir(u), BACKUP_DIR,
		                       jstr(old, "id") ? jstr(old, "id") : "");
		struct stat sb;
		int ok = p && stat(p, &sb) == 0;
		bk__free(p);
		if (ok) {
			rc = answer_kept(old, reply, true);
			goto done;
		}
	}
	/* Otherwise a new one replaces what was kept. A backup whose making
	 * ended unfinished (a power cut, another request) is named in the
	 * answer, so that a terminal that received part of it can drop what it
	 * holds. */
	char abandoned[37] = "";
	json_t *making = NULL;
	if ((rc = row_get(u, "making", &making)) == 0 && making &&
	    jstr(making, "id") && bk_backup__valid_id(jstr(making, "id")))
		bk_strlcpy(abandoned, jstr(making, "id"), sizeof(abandoned));
	json_decref(making);
	if (rc)
		goto done;
	job_drop(m);
	close_backup(m);
	if ((rc = remove_in_unit(u, BACKUP_DIR)) || (rc = row_del(u, "backup")))
		goto done;
	bk_backup__new_id(id);
	json_t *mk = json_pack("{s:s}", "id", id);
	rc = mk ? row_put(u, "making", mk, 0) : bk__error_oom();
	json_decref(mk);
	if (rc || (rc = job_start(m, rcpt, nrcpt, domains, id, norm)))
		goto done;
	if (stream) {
		/* The size and the statement come with the BACKUP_BEGIN that
		 * follows the end of the data. */
		reply->json = json_pack("{s:s, s:b, s:b}", "id", id, "streaming", 1, "resumed", 0);
		if (reply->json && abandoned[0])
			json_object_set_new(reply->json, "replaces", json_string(abandoned));
		rc = reply->json ? 0 : bk__error_oom();
		goto done;
	}
	uint64_t produced = 0;
	bool finished = false;
	while (!finished)
		job_wait(m->job, UINT64_MAX, &produced, &finished);
	if ((rc = job_finish(m)))
		goto done;
	json_decref(old);
	old = NULL;
	if ((rc = row_get(u, "backup", &old)))
		goto done;
	rc = old ? answer_kept(old, reply, false)
	         : bk__error_set(BK_ERROR, "unit-db", "unit %s: backup not recorded",
	                         bk_vunit_serial(u));
done:
	json_decref(norm);
	json_decref(old);
	return rc;
}

static int open_backup(bk_vmemops *m, const char *id)
{
	json_t *row = NULL;
	int rc;
	if (m->fd >= 0 && strcmp(m->id, id) == 0)
		return 0;
	close_backup(m);
	if ((rc = row_get(m->u, "backup", &row)))
		return rc;
	if (row == NULL || jstr(row, "id") == NULL || strcmp(jstr(row, "id"), id) != 0) {
		json_decref(row);
		return bk__error_set(BK_ENOTFOUND, "no-such-backup",
		                     "unit %s keeps no backup %.40s", bk_vunit_serial(m->u), id);
	}
	json_decref(row);
	char *p = bk__asprintf("%s/%s/%s.aibk", bk_vunit_dir(m->u), BACKUP_DIR, id);
	if (p == NULL)
		return bk__error_oom();
	m->fd = open(p, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	if (m->fd < 0 || fstat(m->fd, &sb) != 0) {
		rc = bk__error_errno(errno, "%s", p);
		bk__free(p);
		close_backup(m);
		return rc;
	}
	bk__free(p);
	bk_strlcpy(m->id, id, sizeof(m->id));
	m->size = (uint64_t)sb.st_size;
	return 0;
}

static int read_at(int fd, uint8_t *buf, size_t len, uint64_t off, const char *id)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = pread(fd, buf + got, len - got, (off_t)(off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return bk__error_errno(n < 0 ? errno : EIO, "unit: read backup %s", id);
		got += (size_t)n;
	}
	return 0;
}

static int backup_read(bk_vunit *u, const bk_proto_msg *req, bk_vunit_reply *reply, void *payload)
{
	bk_vmemops *m = payload;
	const char *id = jstr(req->json, "id");
	uint64_t off = 0, len = 0;
	int rc;
	if (id == NULL)
		return bk__error_set(BK_EINVALID, "bad-request", "BACKUP_READ needs an id");
	if ((rc = juint(req->json, "offset", &off)) || (rc = juint(req->json, "len", &len)))
		return rc;
	if (len > BK_PROTO_DATA_MAX)
		len = BK_PROTO_DATA_MAX;
	/* The backup being made: wait for its bytes. */
	if (m->job && strcmp(m->job->id, id) == 0) {
		uint64_t produced = 0;
		bool finished = false;
		job_wait(m->job, off + len, &produced, &finished);
		if (finished) {
			if ((rc = job_finish(m)))
				return rc;
		} else if (produced < off + len) {
			return bk__error_set(BK_EBUSY, "backup-in-progress",
			                     "unit %s: the backup has not reached %llu bytes yet",
			                     bk_vunit_serial(u), (unsigned long long)(off + len));
		} else {
			if ((rc = bk_vunit_step(u, "backup-read", 0)))
				return rc;
			if ((rc = read_at(m->job->rfd, reply->data, (size_t)len, off, id)))
				return rc;
			reply->is_data = true;
			reply->offset = off;
			reply->data_len = (size_t)len;
			return 0;
		}
	}
	if ((rc = open_backup(m, id)))
		return rc;
	if (off >= m->size)
		len = 0;
	else if (len > m->size - off)
		len = m->size - off;
	unsigned pct = m->size ? (unsigned)((off + len) * 100 / m->size) : 100;
	if ((rc = bk_vunit_step(u, "backup-read", pct)))
		return rc;
	if ((rc = read_at(m->fd, reply->data, (size_t)len, off, id)))
		return rc;
	reply->is_data = true;
	reply->offset = off;
	reply->data_len = (size_t)len;
	return 0;
}

static int backup_end(bk_vunit *u, const bk_proto_msg *req, bk_vunit_reply *reply, void *payload)
{
	bk_vmemops *m = payload;
	json_t *row = NULL;
	const char *id = jstr(req->json, "id");
	int rc;
	BK_UNUSED(reply);
	if (id == NULL)
		return bk__error_set(BK_EINVALID, "bad-request", "BACKUP_END needs an id");
	if (m->job && strcmp(m->job->id, id) == 0) {
		job_drop(m);
		return remove_in_unit(u, BACKUP_DIR);
	}
	if ((rc = row_get(u, "backup", &row)))
		return rc;
	if (row && jstr(row, "id") && strcmp(jstr(row, "id"), id) == 0) {
		close_backup(m);
		rc = remove_in_unit(u, BACKUP_DIR);
		if (rc == 0)
			rc = row_del(u, "backup");
	}
	json_decref(row);
	return rc;
}

/* --- Restores ------------------------------------------------------------------- */

/* The bytes received without a gap (loaded from unit.db after a power-up). */
static int incoming_size(bk_vmemops *m, uint64_t *out)
{
	if (!m->rx_loaded) {
		sqlite3_stmt *st = NULL;
		m->rx_prefix = 0;
		if (sqlite3_prepare_v2(bk_vunit_db(m->u),
		                       "SELECT bytes FROM staging WHERE kind = 'restore'", -1, &st,
		                       NULL) != SQLITE_OK)
			return db_err(m->u, "read staging");
		if (sqlite3_step(st) == SQLITE_ROW)
			m->rx_prefix = (uint64_t)sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
		m->rx_saved = m->rx_prefix;
		m->rx_n = 0;
		m->rx_loaded = true;
	}
	*out = m->rx_prefix;
	return 0;
}

static int save_prefix(bk_vmemops *m)
{
	sqlite3_stmt *st = NULL;
	int rc = 0;
	if (sqlite3_prepare_v2(bk_vunit_db(m->u),
	                       "UPDATE staging SET bytes = ?1, updated = ?2 WHERE kind = 'restore'",
	                       -1, &st, NULL) != SQLITE_OK)
		return db_err(m->u, "write staging");
	sqlite3_bind_int64(st, 1, (sqlite3_int64)m->rx_prefix);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)time(NULL));
	if (sqlite3_step(st) != SQLITE_DONE)
		rc = db_err(m->u, "write staging");
	sqlite3_finalize(st);
	if (rc == 0)
		m->rx_saved = m->rx_prefix;
	return rc;
}

/* Records [a, b) as received; BK_EBUSY when too many pieces wait past a gap. */
static int rx_add(bk_vmemops *m, uint64_t a, uint64_t b)
{
	if (b <= m->rx_prefix)
		return 0;
	if (a > m->rx_prefix) {
		if (m->rx_n == RX_RANGES)
			return bk__error_set(BK_EBUSY, "restore-window",
			                     "unit %s: too many writes past a gap at %llu",
			                     bk_vunit_serial(m->u),
			                     (unsigned long long)m->rx_prefix);
		m->rx[m->rx_n].a = a;
		m->rx[m->rx_n].b = b;
		m->rx_n++;
		return 0;
	}
	m->rx_prefix = b;
	/* Pieces that now touch the prefix join it. */
	for (bool grew = true; grew;) {
		grew = false;
		for (size_t i = 0; i < m->rx_n; i++) {
			if (m->rx[i].a <= m->rx_prefix) {
				if (m->rx[i].b > m->rx_prefix)
					m->rx_prefix = m->rx[i].b;
				m->rx[i] = m->rx[--m->rx_n];
				grew = true;
				break;
			}
		}
	}
	return 0;
}

/* Forgets the cached staging size and closes the staging file. */
static void rx_drop(bk_vmemops *m)
{
	if (m->rx_fd >= 0)
		close(m->rx_fd);
	m->rx_fd = -1;
	m->rx_size = 0;
}

static int restore_reset(bk_vmemops *m, bk_vunit *u)
{
	rx_drop(m);
	m->rx_loaded = true;
	m->rx_prefix = m->rx_saved = 0;
	m->rx_n = 0;
	int rc = remove_in_unit(u, RESTORE_DIR);
	if (rc == 0)
		rc = remove_in_unit(u, MEMORY_NEW);
	if (rc == 0)
		rc = row_del(u, "restore");
	return rc;
}

/* Whether the unit can take a backup that the statement describes. */
static int check_compatible(bk_vunit *u, const bk_statement *st)
{
	unit_facts f;
	bk_statement_view v;
	int rc = facts_get(u, &f);
	if (rc)
		return rc;
	bk_statement_get(st, &v);
	if (strcmp(v.model, f.model) != 0)
		rc = bk__error_set(BK_EINCOMPAT, "model-mismatch",
		                   "unit %s is a %s; the backup is for a %s", f.serial, f.model,
		                   v.model);
	else if (v.schema_version < f.schema_min || v.schema_version > f.schema_max)
		rc = bk__error_set(BK_EINCOMPAT, "schema-unsupported",
		                   "unit %s runs firmware %s holding memory schemas %llu-%llu; the "
		                   "backup needs a firmware holding schema %llu",
		                   f.serial, f.fw_version, (unsigned long long)f.schema_min,
		                   (unsigned long long)f.schema_max,
		                   (unsigned long long)v.schema_version);
	json_decref(f.info);
	return rc;
}

static int restore_begin(bk_vunit *u, const bk_proto_msg *req, bk_vunit_reply *reply, void *payload)
{
	const char *text = jstr(req->json, "statement");
	json_t *row = NULL, *meta = NULL;
	bk_statement *st = NULL;
	bk_vmemops *m = payload;
	uint64_t size = 0, have = 0;
	char *p = NULL;
	int rc;
	if ((rc = juint(req->json, "size", &size)))
		return rc;
	if (text == NULL)
		return bk__error_set(BK_EINVALID, "bad-request", "RESTORE_BEGIN needs a statement");
	json_t *hd = json_object_get(req->json, "header_digest");
	if (hd && !(json_is_string(hd) && json_string_length(hd) == 64 &&
	            strspn(json_string_value(hd), "0123456789abcdef") == 64))
		return bk__error_set(BK_EINVALID, "bad-request",
		                     "RESTORE_BEGIN: \"header_digest\" must be 64 hex digits");
	size_t tlen = json_string_length(json_object_get(req->json, "statement"));
	if ((rc = bk_statement_parse(&st, text, tlen)))
		goto done;
	if ((rc = check_compatible(u, st)))
		goto done;
	if (size == 0 || size > ((uint64_t)1 << 40)) {
		rc = bk__error_set(BK_EINVALID, "bad-size", "RESTORE_BEGIN: bad size");
		goto done;
	}
	if ((rc = row_get(u, "restore", &row)))
		goto done;
	uint64_t rsize = 0;
	const char *rhd = row ? jstr(row, "header_digest") : NULL;
	const char *qhd = json_string_value(hd);
	if (row && juint(row, "size", &rsize) == 0 && rsize == size && jstr(row, "statement") &&
	    strcmp(jstr(row, "statement"), text) == 0 &&
	    ((rhd == NULL && qhd == NULL) || (rhd && qhd && strcmp(rhd, qhd) == 0))) {
		if ((rc = incoming_size(m, &have)))
			goto done;
	} else {
		if ((rc = restore_reset(m, u)))
			goto done;
		if ((p = unit_path(u, RESTORE_DIR)) == NULL) {
			rc = bk__error_oom();
			goto done;
		}
		if ((rc = bk_mkdir_p(p, 0700)))
			goto done;
		bk__free(p);
		if ((p = unit_path(u, INCOMING)) == NULL) {
			rc = bk__error_oom();
			goto done;
		}
		if ((rc = bk_file_write_atomic(p, "", 0, 0600, 0)))
			goto done;
		meta = json_pack("{s:I, s:s, s:s?}", "size", (json_int_t)size, "statement", text,
		                 "header_digest", qhd);
		if (meta == NULL) {
			rc = bk__error_oom();
			goto done;
		}
		if ((rc = row_put(u, "restore", meta, 0)))
			goto done;
	}
	reply->json =
	    json_pack("{s:I, s:I}", "size", (json_int_t)size, "received", (json_int_t)have);
	rc = reply->json ? 0 : bk__error_oom();
done:
	bk__free(p);
	json_decref(row);
	json_decref(meta);
	bk_statement_free(st);
	return rc;
}

static int active_size(bk_vunit *u, uint64_t *out)
{
	json_t *row = NULL;
	int rc = row_get(u, "restore", &row);
	if (rc == 0 && row == NULL)
		rc = bk__error_set(BK_EINVALID, "no-restore", "unit %s: no restore in progress",
		                   bk_vunit_serial(u));
	if (rc == 0)
		rc = juint(row, "size", out);
	json_decref(row);
	return rc;
}

static int restore_write(bk_vunit *u, const bk_proto_msg *req, bk_vunit_reply *reply, void *payload)
{
	bk_vmemops *m = payload;
	uint64_t size = 0, have = 0;
	char *p = NULL;
	int fd = -1, rc;
	BK_UNUSED(reply);
	if (m->rx_size == 0 && (rc = active_size(u, &m->rx_size)))
		return rc;
	size = m->rx_size;
	if ((rc = incoming_size(m, &have)))
		return rc;
	if (req->offset + req->data_len > size)
		return bk__error_set(BK_EINVALID, "restore-overflow",
		                     "RESTORE_WRITE past the announced %llu bytes",
		                     (unsigned long long)size);
	uint64_t end = req->offset + req->data_len;
	if ((rc = bk_vunit_step(u, "restore-write", (unsigned)(end * 100 / size))))
		return rc;
	if ((p = unit_path(u, INCOMING)) == NULL)
		return bk__error_oom();
	if (m->rx_fd < 0)
		m->rx_fd = open(p, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	fd = m->rx_fd;
	if (fd < 0) {
		rc = bk__error_errno(errno, "%s", p);
		goto done;
	}
	size_t put = 0;
	while (put < req->data_len) {
		ssize_t n =
		    pwrite(fd, req->data + put, req->data_len - put, (off_t)(req->offset + put));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = bk__error_errno(n < 0 ? errno : EIO, "%s", p);
			goto done;
		}
		put += (size_t)n;
	}
	if ((rc = rx_add(m, req->offset, end)))
		goto done;
	if (m->rx_prefix - m->rx_saved >= RX_SAVE_STEP || m->rx_prefix == size)
		rc = save_prefix(m);
done:
	bk__free(p);
	return rc;
}

static int restore_status(bk_vunit *u, const bk_proto_msg *req, bk_vunit_reply *reply,
                          void *payload)
{
	json_t *row = NULL;
	uint64_t have = 0, size = 0;
	BK_UNUSED(req);
	int rc = row_get(u, "restore", &row);
	if (rc == 0 && row)
		rc = juint(row, "size", &size);
	if (rc == 0 && row)
		rc = incoming_size(payload, &have);
	if (rc == 0) {
		reply->json = json_pack("{s:b, s:I, s:I, s:s?, s:s?}", "active", row != NULL,
		                        "size", (json_int_t)size, "received", (json_int_t)have,
		                        "statement", row ? jstr(row, "statement") : NULL,
		                        "header_digest", row ? jstr(row, "header_digest") : NULL);
		rc = reply->json ? 0 : bk__error_oom();
	}
	json_decref(row);
	return rc;
}

/* Loads the unit's trust anchors for statements. */
static int load_cas(bk_vunit *u, bk_minisign_pubkey *factory, size_t *nf,
                    bk_minisign_pubkey *service, size_t *ns)
{
	char *p = unit_path(u, BK_VUNIT_TRUST_FACTORY);
	int rc = 0;
	*nf = *ns = 0;
	if (p == NULL)
		return bk__error_oom();
	if (access(p, F_OK) == 0) {
		if ((rc = bk_minisign_pubkey_read(factory, p)) == 0)
			*nf = 1;
	}
	bk__free(p);
	if (rc)
		return rc;
	if ((p = unit_path(u, BK_VUNIT_TRUST_SERVICE)) == NULL)
		return bk__error_oom();
	if (access(p, F_OK) == 0) {
		if ((rc = bk_minisign_pubkey_read(service, p)) == 0)
			*ns = 1;
	}
	bk__free(p);
	return rc;
}

/* Reads what is left of `s` to its end (so that a read filter below sees
 * every byte, and bytes after the archive are still authenticated). */
static int drain(bk_stream *s)
{
	uint8_t buf[16384];
	for (;;) {
		size_t n = 0;
		int rc = bk_stream_read(s, buf, sizeof(buf), &n, BK_DEADLINE_NONE);
		if (rc || n == 0)
			return rc;
	}
}

/* Decrypts and checks the staged file into <unit>/memory.new. */
static int stage_memory(bk_vunit *u, const bk_statement *st, bk_manifest **out_man)
{
	bk_age_identities *ids = NULL;
	bk_stream *in = NULL, *dec = NULL;
	bk_manifest *man = NULL;
	bk_statement_info si;
	bk_payload_digest pd;
	char *inc = unit_path(u, INCOMING), *dest = unit_path(u, MEMORY_NEW);
	int rc;
	bk_statement_info_get(st, &si);
	if (inc == NULL || dest == NULL) {
		rc = bk__error_oom();
		goto done;
	}
	memset(&pd, 0, sizeof(pd));
	if ((rc = unit_identities(u, &ids)))
		goto done;
	if ((rc = remove_in_unit(u, MEMORY_NEW)) || (rc = bk_mkdir_p(dest, 0700)))
		goto done;
	/* One pass over the file: the payload digest is taken as the bytes go
	 * to the decryptor, and checked before anything leaves the staging. */
	uint64_t hdr_len = 0;
	bk_stream *file = NULL;
	if ((rc = bk_payload_header_file(inc, &hdr_len)) || (rc = bk_stream_file_open(&file, inc)))
		goto done;
	if ((rc = bk_payload_hash_reader(&in, file, 1, hdr_len, &pd))) {
		bk_stream_free(file);
		goto done;
	}
	bk_age_decrypt_opts dopts = BK_AGE_DECRYPT_OPTS_INIT;
	if ((rc = bk_age_decrypt_new(&dec, in, 1, ids, &dopts, BK_DEADLINE_NONE)))
		goto done;
	in = NULL;
	/* Decryption and the payload digest ahead, on a thread of their own. */
	bk_stream *ahead = NULL;
	if ((rc = bk_archive__async_reader_new(&ahead, dec, 1)))
		goto done;
	dec = ahead;
	bk_archive_read_opts ro = BK_ARCHIVE_READ_OPTS_INIT;
	ro.dest_dir = dest;
	if ((rc = bk_archive_read(dec, &ro, &man, NULL)) || (rc = drain(dec)))
		goto done;
	if (!pd.done || pd.payload_len != si.payload_size ||
	    sodium_memcmp(pd.digest, si.payload_digest, BK_BACKUP_DIGEST_LEN) != 0) {
		rc = bk__error_set(BK_EVERIFY, "payload-corrupt",
		                   "unit %s: the received payload does not match the statement",
		                   bk_vunit_serial(u));
		goto done;
	}
	uint8_t md[BK_ARCHIVE_DIGEST_LEN];
	if (!bk_manifest_raw_digest(man, md) ||
	    sodium_memcmp(md, si.manifest_digest, sizeof(md)) != 0 ||
	    strcmp(bk_manifest_backup_id(man), si.backup_id) != 0 ||
	    strcmp(bk_manifest_serial(man), si.serial) != 0 ||
	    strcmp(bk_manifest_model(man), si.model) != 0 ||
	    bk_manifest_schema_version(man) != si.schema_version) {
		rc = bk__error_set(BK_EVERIFY, "statement-mismatch",
		                   "unit %s: the manifest is not the one the statement names",
		                   bk_vunit_serial(u));
		goto done;
	}
	*out_man = man;
	man = NULL;
done:
	if (rc && dest)
		remove_in_unit(u, MEMORY_NEW);
	bk_manifest_free(man);
	bk_stream_free(dec);
	bk_stream_free(in);
	bk_age_identities_free(ids);
	bk__free(inc);
	bk__free(dest);
	return rc;
}

static int set_memory_schema(bk_vunit *u, uint64_t schema)
{
	sqlite3_stmt *st = NULL;
	int rc = 0;
	if (sqlite3_prepare_v2(bk_vunit_db(u), "UPDATE unit SET memory_schema = ?1 WHERE id = 1",
	                       -1, &st, NULL) != SQLITE_OK)
		return db_err(u, "update the memory schema");
	sqlite3_bind_int64(st, 1, (sqlite3_int64)schema);
	if (sqlite3_step(st) != SQLITE_DONE)
		rc = db_err(u, "update the memory schema");
	sqlite3_finalize(st);
	return rc;
}

/* After the swap (or at power-up after a lost one): records the schema when
 * the memory is the committed one, and removes what is left over. */
static int finish_swap(bk_vunit *u, bk_domain_digests *out_have, bool *out_known)
{
	json_t *sw = NULL;
	bk_domain_digests want, have;
	if (out_known)
		*out_known = false;
	uint64_t schema = 0;
	int rc = row_get(u, "restore-swap", &sw);
	if (rc)
		return rc;
	if (sw) {
		if ((rc = bk_domain_digests_from_json(json_object_get(sw, "domains"), &want)) ||
		    (rc = juint(sw, "schema", &schema)) ||
		    (rc = bk_tree_digests(bk_vunit_memory_dir(u), &have)))
			goto done;
		if (out_have) {
			*out_have = have;
			*out_known = true;
		}
		if (bk_domain_digests_equal(&want, &have)) {
			if ((rc = set_memory_schema(u, schema)) || (rc = row_del(u, "restore")) ||
			    (rc = remove_in_unit(u, RESTORE_DIR)))
				goto done;
		}
	}
	if ((rc = remove_in_unit(u, MEMORY_NEW)))
		goto done;
	if (sw)
		rc = row_del(u, "restore-swap");
done:
	json_decref(sw);
	return rc;
}

static int restore_commit(bk_vunit *u, const bk_proto_msg *req, bk_vunit_reply *reply,
                          void *payload)
{
	json_t *row = NULL, *sw = NULL, *dj = NULL;
	bk_statement *st = NULL;
	bk_manifest *man = NULL;
	bk_minisign_pubkey fca, sca;
	size_t nf = 0, ns = 0;
	uint64_t size = 0, have = 0;
	char *mem_new = NULL;
	int rc;
	BK_UNUSED(req);
	if ((rc = row_get(u, "restore", &row)))
		return rc;
	if (row == NULL)
		return bk__error_set(BK_EINVALID, "no-restore", "unit %s: no restore in progress",
		                     bk_vunit_serial(u));
	if ((rc = juint(row, "size", &size)) || (rc = incoming_size(payload, &have)))
		goto done;
	if (have != size) {
		rc = bk__error_set(BK_EINVALID, "restore-incomplete",
		                   "unit %s: received %llu of %llu bytes", bk_vunit_serial(u),
		                   (unsigned long long)have, (unsigned long long)size);
		goto done;
	}
	if ((rc = bk_vunit_step(u, "restore-commit", 0)))
		goto done;
	const char *text = jstr(row, "statement");
	if ((rc = bk_statement_parse(&st, text, strlen(text))))
		goto done;
	if ((rc = check_compatible(u, st)))
		goto done;
	if ((rc = load_cas(u, &fca, &nf, &sca, &ns)))
		goto done;
	if ((rc = bk_statement_verify_keys(st, &fca, nf, &sca, ns, (int64_t)time(NULL)))) {
		bk__error_prefix(rc, "unit %s", bk_vunit_serial(u));
		goto done;
	}
	if ((rc = stage_memory(u, st, &man)))
		goto done;
	if ((rc = bk_domain_digests_to_json(bk_manifest_domains(man), &dj)))
		goto done;
	sw = json_pack("{s:O, s:I}", "domains", dj, "schema",
	               (json_int_t)bk_manifest_schema_version(man));
	if (sw == NULL) {
		rc = bk__error_oom();
		goto done;
	}
	if ((rc = row_put(u, "restore-swap", sw, 0)))
		goto done;
	if ((rc = bk_vunit_step(u, "restore-commit", 50)))
		goto done;
	if ((mem_new = unit_path(u, MEMORY_NEW)) == NULL) {
		rc = bk__error_oom();
		goto done;
	}
	if (renameat2(AT_FDCWD, mem_new, AT_FDCWD, bk_vunit_memory_dir(u), RENAME_EXCHANGE) != 0) {
		rc = bk__error_errno(errno, "unit %s: swap the memory", bk_vunit_serial(u));
		goto done;
	}
	if ((rc = bk_fsync_dir(bk_vunit_dir(u))))
		goto done;
	if ((rc = bk_vunit_step(u, "restore-commit", 100)))
		goto done;
	/* finish_swap reads the new memory's digests: they are the answer. */
	bk_domain_digests now;
	bool known = false;
	if ((rc = finish_swap(u, &now, &known)))
		goto done;
	rx_drop((bk_vmemops *)payload);
	((bk_vmemops *)payload)->rx_loaded = false;
	json_t *nj = NULL;
	if ((!known && (rc = bk_tree_digests(bk_vunit_memory_dir(u), &now))) ||
	    (rc = bk_domain_digests_to_json(&now, &nj)))
		goto done;
	uint8_t md[BK_ARCHIVE_DIGEST_LEN];
	char mdhex[2 * BK_ARCHIVE_DIGEST_LEN + 1];
	if (!bk_manifest_raw_digest(man, md)) {
		json_decref(nj);
		rc = bk__error_set(BK_ERROR, "manifest-digest", "unit: no manifest digest");
		goto done;
	}
	bk_hex_encode(mdhex, md, sizeof(md));
	reply->json = json_pack("{s:o, s:I, s:s}", "domains", nj, "schema",
	                        (json_int_t)bk_manifest_schema_version(man), "manifest_digest",
	                        mdhex);
	rc = reply->json ? 0 : bk__error_oom();
done:
	bk__free(mem_new);
	json_decref(dj);
	json_decref(sw);
	json_decref(row);
	bk_manifest_free(man);
	bk_statement_free(st);
	return rc;
}

static int restore_abort(bk_vunit *u, const bk_proto_msg *req, bk_vunit_reply *reply, void *payload)
{
	BK_UNUSED(req);
	BK_UNUSED(reply);
	return restore_reset(payload, u);
}

/* --- Installing ------------------------------------------------------------------ */

int bk_vmemops_install(bk_vmemops **out, bk_vunit *u)
{
	bk_vmemops *m;
	int rc;
	if (out == NULL || u == NULL)
		return bk__error_set(BK_EINVALID, NULL, "memops: no unit");
	*out = NULL;
	/* Power-up: a swap that was cut short is finished or undone. */
	if ((rc = finish_swap(u, NULL, NULL)))
		return rc;
	m = bk__calloc(1, sizeof(*m));
	if (m == NULL)
		return bk__error_oom();
	m->u = u;
	m->fd = -1;
	m->rx_fd = -1;
	static const struct {
		uint8_t type;
		bk_vunit_handler fn;
	} table[] = {
	    {BK_MSG_BACKUP_BEGIN, backup_begin},     {BK_MSG_BACKUP_READ, backup_read},
	    {BK_MSG_BACKUP_END, backup_end},         {BK_MSG_RESTORE_BEGIN, restore_begin},
	    {BK_MSG_RESTORE_WRITE, restore_write},   {BK_MSG_RESTORE_STATUS, restore_status},
	    {BK_MSG_RESTORE_COMMIT, restore_commit}, {BK_MSG_RESTORE_ABORT, restore_abort},
	};
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		if ((rc = bk_vunit_set_handler(u, table[i].type, table[i].fn, m))) {
			bk_vmemops_free(m);
			return rc;
		}
	}
	*out = m;
	return 0;
}

void bk_vmemops_free(bk_vmemops *m)
{
	if (m == NULL)
		return;
	job_drop(m);
	close_backup(m);
	rx_drop(m);
	bk__free(m);
}

int bk_vmemops_provision(const char *unit_dir, const char *pki_dir)
{
	bk_minisign_pubkey pk;
	char *src = bk_path_join(pki_dir, "factory-ca.key.pub");
	char *dst = bk_path_join(unit_dir, BK_VUNIT_TRUST_FACTORY);
	int rc = src && dst ? 0 : bk__error_oom();
	if (rc == 0)
		rc = bk_minisign_pubkey_read(&pk, src);
	if (rc == 0)
		rc = bk_minisign_pubkey_write(dst, &pk);
	bk__free(src);
	bk__free(dst);
	return rc;
}
