/* The depot's backups: import into the store and catalog, removal, and the
 * garbage report. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "libbackup/backup/backup_internal.h"
#include "libbackup/backup/store_s3.h"

/* Copies `path` into the locked, fresh `part` (fd), fsynced. */
static int copy_into(int fd, const char *part, const char *path)
{
	bk_stream *in = NULL, *w = NULL;
	int rc = bk_stream_file_open(&in, path);
	if (rc)
		return rc;
	rc = bk_stream_fd_new(&w, fd, 0);
	if (rc == 0)
		rc = bk_stream_copy(w, in, NULL, BK_DEADLINE_NONE);
	if (rc == 0)
		rc = bk_stream_close(w, BK_DEADLINE_NONE);
	else
		bk_stream_free(w);
	w = NULL;
	bk_stream_free(in);
	if (rc == 0 && fsync(fd) != 0)
		rc = bk__error_errno(errno, "%s: fsync", part);
	return rc;
}

static int add_row(bk_catalog *cat, const bk_statement *st, const char *location, uint64_t size)
{
	bk_backup_record r;
	bk_statement_view v;
	char producer[160];
	size_t len = 0;
	bk_statement_get(st, &v);
	memset(&r, 0, sizeof(r));
	snprintf(producer, sizeof(producer), "%s:%s", v.producer_role, v.producer ? v.producer : "");
	r.id = (char *)v.backup_id;
	r.location = (char *)location;
	r.serial = (char *)v.serial;
	r.model = (char *)v.model;
	r.hw_rev = (char *)v.hardware_revision;
	r.fw_version = (char *)v.firmware_version;
	r.schema = (int64_t)v.schema_version;
	r.created = (char *)v.created;
	r.producer = producer;
	r.plaintext_size = v.plaintext_size;
	r.file_size = size;
	r.payload_digest = (char *)v.payload_digest;
	r.manifest_digest = (char *)v.manifest_digest;
	r.statement = (uint8_t *)bk_statement_bytes(st, &len);
	r.statement_len = len;
	return bk_catalog_backup_add(cat, &r);
}

static int payload_matches(const bk_statement *st, const char *path)
{
	bk_payload_digest pd;
	bk_statement_info si;
	int rc = bk_payload_digest_file(path, &pd);
	if (rc)
		return rc;
	bk_statement_info_get(st, &si);
	if (pd.payload_len < si.payload_size)
		return bk__error_set(BK_EVERIFY, "payload-truncated",
				     "%s: payload truncated: %llu of %llu bytes", path,
				     (unsigned long long)pd.payload_len,
				     (unsigned long long)si.payload_size);
	if (pd.payload_len != si.payload_size ||
	    sodium_memcmp(pd.digest, si.payload_digest, BK_BACKUP_DIGEST_LEN) != 0)
		return bk__error_set(BK_EVERIFY, "payload-corrupt",
				     "%s: payload digest does not match the statement", path);
	return 0;
}

int bk_backup_import(const bk_config *cfg, const char *path, bk_backup_report *out)
{
	bk_statement *st = NULL;
	bk_store *store = NULL;
	bk_catalog *cat = NULL;
	bk_backup_record rec;
	char *spath = NULL, *part = NULL, *location = NULL;
	int fd = -1, rc, exists = 0;
	struct stat sb;
	memset(&rec, 0, sizeof(rec));
	if (out)
		memset(out, 0, sizeof(*out));
	if (cfg == NULL || path == NULL)
		return bk__error_set(BK_EINVALID, NULL, "import: missing argument");
	if (stat(path, &sb) != 0)
		return bk__error_errno(errno, "%s", path);
	if (!S_ISREG(sb.st_mode))
		return bk__error_set(BK_EUSER, "not-a-file", "%s: not a backup file", path);
	spath = bk__asprintf("%s" BK_STATEMENT_EXT, path);
	if (spath == NULL)
		return BK_ENOMEM;
	if ((rc = bk_statement_read(&st, spath)) || (rc = bk_statement_verify(st, cfg)) ||
	    (rc = payload_matches(st, path)))
		goto done;
	bk_statement_view v;
	bk_statement_get(st, &v);
	if ((rc = bk_backup_catalog_open(&cat, cfg, 1)) ||
	    (rc = bk_store_open_config(&store, cfg)))
		goto done;
	rc = bk_catalog_backup_get(cat, v.backup_id, &rec);
	if (rc == 0) {
		if (strcmp(rec.payload_digest, v.payload_digest) != 0) {
			rc = bk__error_set(BK_EEXIST, "backup-exists",
					   "backup %s is already in the catalog with another payload",
					   v.backup_id);
			goto done;
		}
		location = bk__strdup(rec.location);
		if (location == NULL)
			rc = BK_ENOMEM;
		goto report;
	}
	if (rc != BK_ENOTFOUND)
		goto done;
	if ((rc = bk_store_exists(store, v.backup_id, &exists)))
		goto done;
	if (exists) {
		/* A file without its row (an interrupted command): keep it if it
		 * is this backup. */
		char *have = NULL;
		if ((rc = bk_store_get_path(store, v.backup_id, &have)))
			goto done;
		rc = payload_matches(st, have);
		bk__free(have);
		if (rc) {
			rc = bk__error_set(BK_EEXIST, "backup-exists",
					   "backup %s: the store holds another file under this id",
					   v.backup_id);
			goto done;
		}
		if ((rc = bk_store_location(store, v.backup_id, &location)))
			goto done;
	} else {
		if ((rc = bk_store_part_path(store, v.backup_id, &part)) ||
		    (rc = bk_backup__create_locked(part, &fd)) || (rc = copy_into(fd, part, path)))
			goto done;
		size_t slen = 0;
		const uint8_t *sbytes = bk_statement_bytes(st, &slen);
		if ((rc = bk_store_put(store, v.backup_id, part, sbytes, slen, &location)))
			goto done;
		close(fd);
		fd = -1;
	}
	bk_backup__hook("before-commit");
	if ((rc = add_row(cat, st, location, (uint64_t)sb.st_size)))
		goto done;
report:
	if (rc == 0 && out) {
		bk_strlcpy(out->id, v.backup_id, sizeof(out->id));
		out->path = bk__strdup(location);
		out->location = bk__strdup(location);
		out->file_size = (uint64_t)sb.st_size;
		out->payload_size = v.payload_size;
		out->plaintext_size = v.plaintext_size;
		bk_strlcpy(out->payload_digest, v.payload_digest, sizeof(out->payload_digest));
		bk_strlcpy(out->manifest_digest, v.manifest_digest, sizeof(out->manifest_digest));
		out->in_catalog = 1;
	}
done:
	if (fd >= 0) {
		unlink(part);
		close(fd);
	}
	bk__free(location);
	bk__free(part);
	bk__free(spath);
	bk_backup_record_clear(&rec);
	bk_catalog_free(cat);
	bk_store_free(store);
	bk_statement_free(st);
	return rc;
}

int bk_backup_remove(const bk_config *cfg, const char *id, bk_backup_report *out)
{
	bk_catalog *cat = NULL;
	bk_store *store = NULL;
	bk_backup_record rec;
	char *loc = NULL;
	int rc;
	memset(&rec, 0, sizeof(rec));
	if (out)
		memset(out, 0, sizeof(*out));
	if (cfg == NULL || id == NULL)
		return bk__error_set(BK_EINVALID, NULL, "remove: missing argument");
	if ((rc = bk_backup_catalog_open(&cat, cfg, 0)) || (rc = bk_catalog_backup_get(cat, id, &rec)))
		goto done;
	if ((rc = bk_catalog_backup_remove(cat, rec.id)))
		goto done;
	if (out) {
		bk_strlcpy(out->id, rec.id, sizeof(out->id));
		out->location = bk__strdup(rec.location);
		out->in_catalog = 0;
	}
	/* The file goes only when it is the store's copy. */
	if ((rc = bk_store_open_config(&store, cfg)) ||
	    (rc = bk_store_location(store, rec.id, &loc)))
		goto done;
	if (strcmp(loc, rec.location) == 0)
		rc = bk_store_remove(store, rec.id);
done:
	bk__free(loc);
	bk_store_free(store);
	bk_backup_record_clear(&rec);
	bk_catalog_free(cat);
	return rc;
}

static int gc_add(bk_backup_gc_item **list, size_t *n, const char *id, const char *name)
{
	bk_backup_gc_item *nl = bk__realloc(*list, (*n + 1) * sizeof(**list));
	if (nl == NULL)
		return BK_ENOMEM;
	*list = nl;
	nl[*n].id = id ? bk__strdup(id) : NULL;
	nl[*n].name = bk__strdup(name);
	(*n)++;
	if ((id && nl[*n - 1].id == NULL) || nl[*n - 1].name == NULL)
		return BK_ENOMEM;
	return 0;
}

static void gc_free(bk_backup_gc_item *list, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		bk__free(list[i].id);
		bk__free(list[i].name);
	}
	bk__free(list);
}

void bk_backup_gc_report_clear(bk_backup_gc_report *r)
{
	if (r == NULL)
		return;
	gc_free(r->orphan_files, r->orphan_file_count);
	gc_free(r->missing_files, r->missing_file_count);
	gc_free(r->removed_parts, r->removed_part_count);
	gc_free(r->busy_parts, r->busy_part_count);
	memset(r, 0, sizeof(*r));
}

int bk_backup_gc(const bk_config *cfg, bk_backup_gc_report *out)
{
	bk_store *store = NULL;
	bk_catalog *cat = NULL;
	bk_store_item *items = NULL;
	bk_backup_record *rows = NULL;
	size_t nitems = 0, nrows = 0;
	int rc;
	if (cfg == NULL || out == NULL)
		return bk__error_set(BK_EINVALID, NULL, "gc: missing argument");
	memset(out, 0, sizeof(*out));
	if ((rc = bk_store_open_config(&store, cfg)) || (rc = bk_store_list(store, &items, &nitems)))
		goto done;
	rc = bk_backup_catalog_open(&cat, cfg, 0);
	if (rc == 0)
		rc = bk_catalog_backup_list(cat, NULL, &rows, &nrows);
	else if (rc == BK_ENOTFOUND)
		rc = 0;
	if (rc)
		goto done;
	for (size_t i = 0; i < nitems && rc == 0; i++) {
		bk_store_item *it = &items[i];
		if (it->kind == BK_STORE_ITEM_PART) {
			int r2 = bk_store_remove_part(store, it->name);
			if (r2 == 0)
				rc = gc_add(&out->removed_parts, &out->removed_part_count, it->id,
					    it->name);
			else if (r2 == BK_EBUSY)
				rc = gc_add(&out->busy_parts, &out->busy_part_count, it->id,
					    it->name);
			else
				rc = r2;
			continue;
		}
		if (it->kind != BK_STORE_ITEM_BACKUP && it->kind != BK_STORE_ITEM_STATEMENT)
			continue;
		bool known = false;
		for (size_t j = 0; it->id && j < nrows && !known; j++)
			known = strcmp(rows[j].id, it->id) == 0;
		if (!known)
			rc = gc_add(&out->orphan_files, &out->orphan_file_count, it->id, it->name);
	}
	for (size_t j = 0; j < nrows && rc == 0; j++) {
		int there = 0;
		if ((rc = bk_store__location_exists(cfg, rows[j].id, rows[j].location, &there)))
			break;
		if (!there)
			rc = gc_add(&out->missing_files, &out->missing_file_count, rows[j].id,
				    rows[j].location);
	}
done:
	if (rc)
		bk_backup_gc_report_clear(out);
	bk_catalog_backup_list_free(rows, nrows);
	bk_store_list_free(items, nitems);
	bk_catalog_free(cat);
	bk_store_free(store);
	return rc;
}
