/* The depot catalog on SQLite: schema migrations, backups, verifications,
 * re-wrapped restore headers. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include <libbackup/catalog.h>

#include "libbackup/catalog/catalog_internal.h"
#include "libbackup/util/util.h"

#define BUSY_TIMEOUT_MS 15000

/* Each entry moves the schema from version i to i+1. Only ever append. */
static const char *const migrations[] = {
	/* 1: backups, statements, verification results, restore headers. */
	"CREATE TABLE backups ("
	"  id TEXT PRIMARY KEY,"
	"  location TEXT NOT NULL,"
	"  serial TEXT NOT NULL,"
	"  model TEXT NOT NULL,"
	"  hw_rev TEXT NOT NULL DEFAULT '',"
	"  fw_version TEXT NOT NULL,"
	"  schema INTEGER NOT NULL,"
	"  created TEXT NOT NULL,"
	"  producer TEXT NOT NULL DEFAULT '',"
	"  plaintext_size INTEGER NOT NULL,"
	"  file_size INTEGER NOT NULL,"
	"  payload_digest TEXT NOT NULL,"
	"  manifest_digest TEXT NOT NULL,"
	"  statement BLOB NOT NULL,"
	"  added TEXT NOT NULL"
	");"
	"CREATE INDEX backups_serial ON backups(serial, created);"
	"CREATE TABLE verifications ("
	"  id INTEGER PRIMARY KEY,"
	"  backup_id TEXT NOT NULL REFERENCES backups(id) ON DELETE CASCADE,"
	"  at TEXT NOT NULL,"
	"  kind TEXT NOT NULL CHECK (kind IN ('quick', 'full')),"
	"  ok INTEGER NOT NULL,"
	"  reason TEXT,"
	"  message TEXT"
	");"
	"CREATE INDEX verifications_backup ON verifications(backup_id, id);"
	"CREATE TABLE restore_headers ("
	"  backup_id TEXT NOT NULL,"
	"  target_serial TEXT NOT NULL,"
	"  header BLOB NOT NULL,"
	"  created TEXT NOT NULL,"
	"  PRIMARY KEY (backup_id, target_serial)"
	");"
	/* Which backups unfinished work depends on; filled by the job journal. */
	"CREATE TABLE backup_holds ("
	"  backup_id TEXT NOT NULL,"
	"  holder TEXT NOT NULL,"
	"  PRIMARY KEY (backup_id, holder)"
	");",
	/* Identity bundles returned by reassignments (aibo-restore reassign). */
	"CREATE TABLE identity_bundles ("
	"  ticket TEXT PRIMARY KEY,"
	"  old_serial TEXT NOT NULL,"
	"  new_serial TEXT NOT NULL,"
	"  device_id TEXT NOT NULL,"
	"  owner TEXT,"
	"  bundle BLOB NOT NULL,"
	"  received TEXT NOT NULL"
	");"
	"CREATE INDEX identity_bundles_serial ON identity_bundles(new_serial);",
	/* 3: the repair journal (libbackup/job): jobs, their steps, the
	 * hash-chained audit log. */
	"CREATE TABLE jobs ("
	"  id TEXT PRIMARY KEY,"
	"  ticket TEXT NOT NULL,"
	"  source TEXT NOT NULL CHECK (source IN ('device', 'file', 'cloud')),"
	"  source_ref TEXT NOT NULL,"
	"  from_uri TEXT,"
	"  to_uri TEXT NOT NULL,"
	"  firmware_dir TEXT,"
	"  overwrite INTEGER NOT NULL DEFAULT 0,"
	"  state TEXT NOT NULL CHECK (state IN ('running', 'interrupted', 'failed',"
	"    'complete', 'aborted')),"
	"  step TEXT NOT NULL,"
	"  created TEXT NOT NULL,"
	"  updated TEXT NOT NULL,"
	"  holder TEXT NOT NULL DEFAULT '',"
	"  data TEXT NOT NULL DEFAULT '{}',"
	"  error_code INTEGER,"
	"  error_reason TEXT,"
	"  error_message TEXT,"
	"  hint TEXT,"
	"  audit_count INTEGER NOT NULL DEFAULT 0,"
	"  audit_head TEXT NOT NULL,"
	"  report TEXT"
	");"
	"CREATE UNIQUE INDEX jobs_open_ticket ON jobs(ticket)"
	"  WHERE state NOT IN ('complete', 'aborted');"
	"CREATE INDEX jobs_created ON jobs(created);"
	"CREATE TABLE job_steps ("
	"  job_id TEXT NOT NULL REFERENCES jobs(id),"
	"  step TEXT NOT NULL,"
	"  state TEXT NOT NULL CHECK (state IN ('running', 'done', 'skipped', 'failed')),"
	"  attempts INTEGER NOT NULL DEFAULT 0,"
	"  started TEXT NOT NULL,"
	"  finished TEXT,"
	"  begin_ms INTEGER NOT NULL DEFAULT 0,"
	"  seconds REAL NOT NULL DEFAULT 0,"
	"  outcome TEXT,"
	"  PRIMARY KEY (job_id, step)"
	");"
	"CREATE TABLE job_events ("
	"  job_id TEXT NOT NULL REFERENCES jobs(id),"
	"  seq INTEGER NOT NULL,"
	"  time INTEGER NOT NULL,"
	"  step TEXT NOT NULL,"
	"  kind TEXT NOT NULL,"
	"  message TEXT NOT NULL,"
	"  hash TEXT NOT NULL,"
	"  uploaded INTEGER NOT NULL DEFAULT 0,"
	"  PRIMARY KEY (job_id, seq)"
	");",
};

int bk_catalog__sql_error(bk_catalog *cat, int src, const char *what)
{
	int code = BK_ERROR;
	const char *reason = "catalog-error";
	switch (src & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		code = BK_EBUSY;
		reason = "catalog-busy";
		break;
	case SQLITE_FULL:
		code = BK_ENOSPACE;
		reason = "no-space";
		break;
	case SQLITE_NOMEM:
		return bk__error_oom();
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		code = BK_EFORMAT;
		reason = "catalog-corrupt";
		break;
	case SQLITE_CANTOPEN:
	case SQLITE_IOERR:
		code = BK_EIO;
		reason = "catalog-io";
		break;
	case SQLITE_CONSTRAINT:
		code = BK_EEXIST;
		reason = "catalog-constraint";
		break;
	default:
		break;
	}
	return bk__error_set(code, reason, "%s: %s: %s", cat && cat->path ? cat->path : "catalog",
			     what, cat && cat->db ? sqlite3_errmsg(cat->db) : sqlite3_errstr(src));
}

int bk_catalog__exec(bk_catalog *cat, const char *sql, const char *what)
{
	int src = sqlite3_exec(cat->db, sql, NULL, NULL, NULL);
	return src == SQLITE_OK ? 0 : bk_catalog__sql_error(cat, src, what);
}

int bk_catalog__prepare(bk_catalog *cat, sqlite3_stmt **st, const char *sql)
{
	int src = sqlite3_prepare_v2(cat->db, sql, -1, st, NULL);
	return src == SQLITE_OK ? 0 : bk_catalog__sql_error(cat, src, "prepare");
}

int bk_catalog__run(bk_catalog *cat, const char *what, const char *sql, const char *types, ...)
{
	sqlite3_stmt *st = NULL;
	va_list ap;
	int rc = bk_catalog__prepare(cat, &st, sql), i = 1;
	if (rc)
		return rc;
	va_start(ap, types);
	for (const char *t = types; *t; t++, i++) {
		if (*t == 't') {
			sqlite3_bind_text(st, i, va_arg(ap, const char *), -1, SQLITE_TRANSIENT);
		} else {
			int64_t v = va_arg(ap, int64_t);
			if (*t == 'z' && v == 0)
				sqlite3_bind_null(st, i);
			else
				sqlite3_bind_int64(st, i, v);
		}
	}
	va_end(ap);
	int src = sqlite3_step(st);
	sqlite3_finalize(st);
	return src == SQLITE_DONE ? 0 : bk_catalog__sql_error(cat, src, what);
}

int bk_catalog__begin(bk_catalog *cat)
{
	return bk_catalog__exec(cat, "BEGIN IMMEDIATE", "begin");
}

int bk_catalog__commit(bk_catalog *cat)
{
	return bk_catalog__exec(cat, "COMMIT", "commit");
}

void bk_catalog__rollback(bk_catalog *cat)
{
	if (!sqlite3_get_autocommit(cat->db))
		sqlite3_exec(cat->db, "ROLLBACK", NULL, NULL, NULL);
}

void bk_catalog__now(char out[21])
{
	bk_time_rfc3339(out, (int64_t)time(NULL));
}

static int migrate(bk_catalog *cat)
{
	sqlite3_stmt *st = NULL;
	int version = 0, rc;
	rc = bk_catalog__begin(cat);
	if (rc)
		return rc;
	rc = bk_catalog__prepare(cat, &st, "PRAGMA user_version");
	if (rc)
		goto done;
	if (sqlite3_step(st) == SQLITE_ROW)
		version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	st = NULL;
	int latest = (int)BK_ARRAY_LEN(migrations);
	if (version > latest) {
		rc = bk__error_set(BK_EINCOMPAT, "catalog-too-new",
				   "%s: catalog schema %d is newer than this aibo-restore knows (%d)",
				   cat->path, version, latest);
		goto done;
	}
	for (int v = version; v < latest; v++) {
		rc = bk_catalog__exec(cat, migrations[v], "migrate");
		if (rc)
			goto done;
		char sql[64];
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v + 1);
		rc = bk_catalog__exec(cat, sql, "migrate");
		if (rc)
			goto done;
	}
	rc = bk_catalog__commit(cat);
	cat->schema = latest;
done:
	if (rc)
		bk_catalog__rollback(cat);
	return rc;
}

int bk_catalog_open(bk_catalog **out, const char *path)
{
	bk_catalog *cat = NULL;
	char *dir = NULL;
	int rc = 0, src;
	if (out == NULL || path == NULL)
		return bk__error_set(BK_EINVALID, NULL, "catalog: no path");
	*out = NULL;
	cat = bk__calloc(1, sizeof(*cat));
	if (cat == NULL)
		return BK_ENOMEM;
	cat->path = bk__strdup(path);
	dir = bk_path_dirname(path);
	if (cat->path == NULL || dir == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	rc = bk_mkdir_p(dir, 0700);
	if (rc)
		goto done;
	src = sqlite3_open_v2(path, &cat->db,
			      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (src != SQLITE_OK) {
		rc = bk_catalog__sql_error(cat, src, "open");
		goto done;
	}
	sqlite3_busy_timeout(cat->db, BUSY_TIMEOUT_MS);
	sqlite3_extended_result_codes(cat->db, 1);
	rc = bk_catalog__exec(cat, "PRAGMA journal_mode = WAL", "journal mode");
	if (rc)
		goto done;
	rc = bk_catalog__exec(cat, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON",
			      "pragmas");
	if (rc)
		goto done;
	rc = migrate(cat);
done:
	bk__free(dir);
	if (rc) {
		bk_catalog_free(cat);
		return rc;
	}
	*out = cat;
	return 0;
}

void bk_catalog_free(bk_catalog *cat)
{
	if (cat == NULL)
		return;
	if (cat->db)
		sqlite3_close_v2(cat->db);
	bk__free(cat->path);
	bk__free(cat);
}

int bk_catalog_schema_version(bk_catalog *cat)
{
	return cat ? cat->schema : 0;
}

/* --- backups --- */

void bk_backup_record_clear(bk_backup_record *r)
{
	if (r == NULL)
		return;
	char **strs[] = {&r->id,	 &r->location,	     &r->serial,	  &r->model,
			 &r->hw_rev,	 &r->fw_version,     &r->created,	  &r->producer,
			 &r->payload_digest, &r->manifest_digest, &r->added,	  &r->verified,
			 &r->verified_at};
	for (size_t i = 0; i < BK_ARRAY_LEN(strs); i++)
		bk__free(*strs[i]);
	bk__free(r->statement);
	memset(r, 0, sizeof(*r));
}

static int col_str(sqlite3_stmt *st, int i, char **out)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	if (t == NULL) {
		*out = NULL;
		return 0;
	}
	*out = bk__strdup((const char *)t);
	return *out ? 0 : BK_ENOMEM;
}

#define SELECT_BACKUP                                                                              \
	"SELECT b.id, b.location, b.serial, b.model, b.hw_rev, b.fw_version, b.schema, b.created," \
	" b.producer, b.plaintext_size, b.file_size, b.payload_digest, b.manifest_digest,"         \
	" b.statement, b.added,"                                                                   \
	" (SELECT CASE WHEN v.ok THEN v.kind ELSE 'failed' END FROM verifications v"               \
	"   WHERE v.backup_id = b.id ORDER BY v.id DESC LIMIT 1),"                                  \
	" (SELECT v.at FROM verifications v WHERE v.backup_id = b.id ORDER BY v.id DESC LIMIT 1)"  \
	" FROM backups b "

static int row_to_record(sqlite3_stmt *st, bk_backup_record *r)
{
	int rc = 0;
	memset(r, 0, sizeof(*r));
	if ((rc = col_str(st, 0, &r->id)) || (rc = col_str(st, 1, &r->location)) ||
	    (rc = col_str(st, 2, &r->serial)) || (rc = col_str(st, 3, &r->model)) ||
	    (rc = col_str(st, 4, &r->hw_rev)) || (rc = col_str(st, 5, &r->fw_version)) ||
	    (rc = col_str(st, 7, &r->created)) || (rc = col_str(st, 8, &r->producer)) ||
	    (rc = col_str(st, 11, &r->payload_digest)) ||
	    (rc = col_str(st, 12, &r->manifest_digest)) || (rc = col_str(st, 14, &r->added)) ||
	    (rc = col_str(st, 15, &r->verified)) || (rc = col_str(st, 16, &r->verified_at)))
		goto done;
	r->schema = sqlite3_column_int64(st, 6);
	r->plaintext_size = (uint64_t)sqlite3_column_int64(st, 9);
	r->file_size = (uint64_t)sqlite3_column_int64(st, 10);
	int n = sqlite3_column_bytes(st, 13);
	const void *blob = sqlite3_column_blob(st, 13);
	r->statement = bk__malloc((size_t)n + 1);
	if (r->statement == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	if (n > 0)
		memcpy(r->statement, blob, (size_t)n);
	r->statement[n] = '\0';
	r->statement_len = (size_t)n;
done:
	if (rc)
		bk_backup_record_clear(r);
	return rc;
}

int bk_catalog_backup_add(bk_catalog *cat, const bk_backup_record *r)
{
	sqlite3_stmt *st = NULL;
	char now[21];
	int rc, src;
	if (cat == NULL || r == NULL || r->id == NULL || r->location == NULL)
		return bk__error_set(BK_EINVALID, NULL, "catalog: incomplete backup record");
	rc = bk_catalog__begin(cat);
	if (rc)
		return rc;
	/* The same backup at the same place again is fine (a resumed command). */
	rc = bk_catalog__prepare(cat, &st,
				 "SELECT location, payload_digest FROM backups WHERE id = ?1");
	if (rc)
		goto done;
	sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
	src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		const char *loc = (const char *)sqlite3_column_text(st, 0);
		const char *pd = (const char *)sqlite3_column_text(st, 1);
		if (loc && pd && strcmp(loc, r->location) == 0 && r->payload_digest &&
		    strcmp(pd, r->payload_digest) == 0) {
			rc = 0;
		} else {
			rc = bk__error_set(BK_EEXIST, "backup-exists",
					   "backup %s is already in the catalog at %s", r->id,
					   loc ? loc : "?");
		}
		goto done;
	} else if (src != SQLITE_DONE) {
		rc = bk_catalog__sql_error(cat, src, "look up backup");
		goto done;
	}
	sqlite3_finalize(st);
	st = NULL;
	rc = bk_catalog__prepare(
		cat, &st,
		"INSERT INTO backups (id, location, serial, model, hw_rev, fw_version, schema, created,"
		" producer, plaintext_size, file_size, payload_digest, manifest_digest, statement, added)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)");
	if (rc)
		goto done;
	bk_catalog__now(now);
	sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, r->location, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, r->serial ? r->serial : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, r->model ? r->model : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, r->hw_rev ? r->hw_rev : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, r->fw_version ? r->fw_version : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 7, r->schema);
	sqlite3_bind_text(st, 8, r->created ? r->created : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 9, r->producer ? r->producer : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 10, (sqlite3_int64)r->plaintext_size);
	sqlite3_bind_int64(st, 11, (sqlite3_int64)r->file_size);
	sqlite3_bind_text(st, 12, r->payload_digest ? r->payload_digest : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 13, r->manifest_digest ? r->manifest_digest : "", -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 14, r->statement ? (const void *)r->statement : "",
			  (int)r->statement_len, SQLITE_STATIC);
	sqlite3_bind_text(st, 15, now, -1, SQLITE_STATIC);
	src = sqlite3_step(st);
	if (src != SQLITE_DONE) {
		rc = bk_catalog__sql_error(cat, src, "add backup");
		goto done;
	}
	sqlite3_finalize(st);
	st = NULL;
	rc = bk_catalog__commit(cat);
done:
	sqlite3_finalize(st);
	if (rc)
		bk_catalog__rollback(cat);
	else if (!sqlite3_get_autocommit(cat->db))
		rc = bk_catalog__commit(cat);
	return rc;
}

int bk_catalog_backup_get(bk_catalog *cat, const char *id, bk_backup_record *out)
{
	sqlite3_stmt *st = NULL;
	int rc, src;
	memset(out, 0, sizeof(*out));
	if (cat == NULL || id == NULL)
		return bk__error_set(BK_EINVALID, NULL, "catalog: no id");
	size_t idlen = strlen(id);
	if (idlen < 8)
		return bk__error_set(BK_EUSER, "id-too-short",
				     "backup id '%s' is too short (give at least 8 characters)", id);
	rc = bk_catalog__prepare(cat, &st,
				 SELECT_BACKUP "WHERE b.id = ?1 OR substr(b.id, 1, ?2) = ?1 LIMIT 2");
	if (rc)
		return rc;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, (int)idlen);
	src = sqlite3_step(st);
	if (src == SQLITE_DONE) {
		rc = bk__error_set(BK_ENOTFOUND, "backup-not-found", "no backup '%s' in the catalog",
				   id);
		goto done;
	}
	if (src != SQLITE_ROW) {
		rc = bk_catalog__sql_error(cat, src, "look up backup");
		goto done;
	}
	rc = row_to_record(st, out);
	if (rc)
		goto done;
	if (strcmp(out->id, id) != 0 && sqlite3_step(st) == SQLITE_ROW) {
		bk_backup_record_clear(out);
		rc = bk__error_set(BK_EUSER, "id-ambiguous",
				   "backup id prefix '%s' matches several backups", id);
	}
done:
	sqlite3_finalize(st);
	return rc;
}

int bk_catalog_backup_list(bk_catalog *cat, const char *serial, bk_backup_record **out,
			   size_t *out_count)
{
	sqlite3_stmt *st = NULL;
	bk_backup_record *list = NULL;
	size_t n = 0, cap = 0;
	int rc, src;
	*out = NULL;
	*out_count = 0;
	rc = bk_catalog__prepare(cat, &st,
				 SELECT_BACKUP "WHERE ?1 IS NULL OR b.serial = ?1"
					       " ORDER BY b.created DESC, b.id");
	if (rc)
		return rc;
	if (serial)
		sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			bk_backup_record *nl = bk__realloc(list, ncap * sizeof(*nl));
			if (nl == NULL) {
				rc = BK_ENOMEM;
				goto done;
			}
			list = nl;
			cap = ncap;
		}
		rc = row_to_record(st, &list[n]);
		if (rc)
			goto done;
		n++;
	}
	if (src != SQLITE_DONE)
		rc = bk_catalog__sql_error(cat, src, "list backups");
done:
	sqlite3_finalize(st);
	if (rc) {
		bk_catalog_backup_list_free(list, n);
		return rc;
	}
	*out = list;
	*out_count = n;
	return 0;
}

void bk_catalog_backup_list_free(bk_backup_record *list, size_t count)
{
	for (size_t i = 0; i < count; i++)
		bk_backup_record_clear(&list[i]);
	bk__free(list);
}

int bk_catalog_backup_remove(bk_catalog *cat, const char *id)
{
	sqlite3_stmt *st = NULL;
	int rc, src;
	rc = bk_catalog__begin(cat);
	if (rc)
		return rc;
	rc = bk_catalog__prepare(cat, &st, "SELECT holder FROM backup_holds WHERE backup_id = ?1");
	if (rc)
		goto done;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		rc = bk__error_set(BK_EBUSY, "backup-in-use",
				   "backup %s is used by unfinished %s; finish or abort it first", id,
				   (const char *)sqlite3_column_text(st, 0));
		goto done;
	}
	sqlite3_finalize(st);
	st = NULL;
	rc = bk_catalog__prepare(cat, &st, "DELETE FROM backups WHERE id = ?1");
	if (rc)
		goto done;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	src = sqlite3_step(st);
	if (src != SQLITE_DONE) {
		rc = bk_catalog__sql_error(cat, src, "remove backup");
		goto done;
	}
	if (sqlite3_changes(cat->db) == 0) {
		rc = bk__error_set(BK_ENOTFOUND, "backup-not-found", "no backup '%s' in the catalog",
				   id);
		goto done;
	}
	sqlite3_finalize(st);
	st = NULL;
	rc = bk_catalog__exec(cat, "DELETE FROM restore_headers WHERE backup_id NOT IN"
				   " (SELECT id FROM backups)",
			      "remove restore headers");
	if (rc)
		goto done;
	rc = bk_catalog__commit(cat);
done:
	sqlite3_finalize(st);
	if (rc)
		bk_catalog__rollback(cat);
	return rc;
}

static int hold_change(bk_catalog *cat, const char *id, const char *holder, const char *sql,
		       const char *what)
{
	sqlite3_stmt *st = NULL;
	if (cat == NULL || id == NULL || holder == NULL)
		return bk__error_set(BK_EINVALID, NULL, "catalog: no backup or holder");
	int rc = bk_catalog__prepare(cat, &st, sql);
	if (rc)
		return rc;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, holder, -1, SQLITE_STATIC);
	int src = sqlite3_step(st);
	if (src != SQLITE_DONE)
		rc = bk_catalog__sql_error(cat, src, what);
	sqlite3_finalize(st);
	return rc;
}

int bk_catalog_backup_hold(bk_catalog *cat, const char *id, const char *holder)
{
	return hold_change(cat, id, holder,
			   "INSERT OR IGNORE INTO backup_holds (backup_id, holder) VALUES (?1, ?2)",
			   "hold backup");
}

int bk_catalog_backup_release(bk_catalog *cat, const char *id, const char *holder)
{
	return hold_change(cat, id, holder,
			   "DELETE FROM backup_holds WHERE backup_id = ?1 AND holder = ?2",
			   "release backup");
}

int bk_catalog_verification_add(bk_catalog *cat, const char *id, const char *kind, int ok,
				const char *reason, const char *message)
{
	sqlite3_stmt *st = NULL;
	char now[21];
	int rc = bk_catalog__prepare(cat, &st,
				     "INSERT INTO verifications (backup_id, at, kind, ok, reason, message)"
				     " VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
	if (rc)
		return rc;
	bk_catalog__now(now);
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, now, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, kind, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 4, ok ? 1 : 0);
	sqlite3_bind_text(st, 5, reason, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, message, -1, SQLITE_STATIC);
	int src = sqlite3_step(st);
	if (src != SQLITE_DONE) {
		if ((src & 0xff) == SQLITE_CONSTRAINT)
			rc = bk__error_set(BK_ENOTFOUND, "backup-not-found",
					   "no backup '%s' in the catalog", id);
		else
			rc = bk_catalog__sql_error(cat, src, "record verification");
	}
	sqlite3_finalize(st);
	return rc;
}

int bk_catalog_restore_header_put(bk_catalog *cat, const char *backup_id,
				  const char *target_serial, const uint8_t *header, size_t len)
{
	uint8_t *old = NULL;
	size_t old_len = 0;
	sqlite3_stmt *st = NULL;
	char now[21];
	int rc = bk_catalog_restore_header_get(cat, backup_id, target_serial, &old, &old_len);
	if (rc == 0) {
		int same = old_len == len && memcmp(old, header, len) == 0;
		bk__free(old);
		return same ? 0
			    : bk__error_set(BK_EEXIST, "restore-header-exists",
					    "a different re-wrapped header for backup %s and unit %s "
					    "is already recorded",
					    backup_id, target_serial);
	}
	if (rc != BK_ENOTFOUND)
		return rc;
	rc = bk_catalog__prepare(cat, &st,
				 "INSERT INTO restore_headers (backup_id, target_serial, header, created)"
				 " VALUES (?1, ?2, ?3, ?4)");
	if (rc)
		return rc;
	bk_catalog__now(now);
	sqlite3_bind_text(st, 1, backup_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, target_serial, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 3, header, (int)len, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, now, -1, SQLITE_STATIC);
	int src = sqlite3_step(st);
	if (src != SQLITE_DONE)
		rc = bk_catalog__sql_error(cat, src, "record restore header");
	sqlite3_finalize(st);
	return rc;
}

int bk_catalog_restore_header_get(bk_catalog *cat, const char *backup_id,
				  const char *target_serial, uint8_t **out, size_t *out_len)
{
	sqlite3_stmt *st = NULL;
	*out = NULL;
	*out_len = 0;
	int rc = bk_catalog__prepare(cat, &st,
				     "SELECT header FROM restore_headers"
				     " WHERE backup_id = ?1 AND target_serial = ?2");
	if (rc)
		return rc;
	sqlite3_bind_text(st, 1, backup_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, target_serial, -1, SQLITE_STATIC);
	int src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		int n = sqlite3_column_bytes(st, 0);
		*out = bk__malloc((size_t)n + 1);
		if (*out == NULL) {
			rc = BK_ENOMEM;
		} else {
			if (n)
				memcpy(*out, sqlite3_column_blob(st, 0), (size_t)n);
			*out_len = (size_t)n;
		}
	} else if (src == SQLITE_DONE) {
		rc = bk__error_set(BK_ENOTFOUND, "no-restore-header",
				   "no re-wrapped header recorded for backup %s and unit %s", backup_id,
				   target_serial);
	} else {
		rc = bk_catalog__sql_error(cat, src, "look up restore header");
	}
	sqlite3_finalize(st);
	return rc;
}
