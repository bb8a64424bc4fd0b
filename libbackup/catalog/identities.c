/* The catalog's identity bundles: what each reassignment returned, kept so
 * that the repair can install it on the unit (catalog.h). */
#include <string.h>

#include <sqlite3.h>

#include <libbackup/catalog.h>

#include "libbackup/catalog/catalog_internal.h"
#include "libbackup/util/util.h"

#define BUNDLE_MAX (64u << 10)

void bk_identity_record_clear(bk_identity_record *r)
{
	if (r == NULL)
		return;
	bk__free(r->ticket);
	bk__free(r->old_serial);
	bk__free(r->new_serial);
	bk__free(r->device_id);
	bk__free(r->owner);
	bk__free(r->bundle);
	bk__free(r->received);
	memset(r, 0, sizeof(*r));
}

int bk_catalog_identity_put(bk_catalog *cat, const bk_identity_record *r)
{
	sqlite3_stmt *st = NULL;
	char now[21];
	int rc;
	if (cat == NULL || r == NULL || r->ticket == NULL || r->old_serial == NULL ||
	    r->new_serial == NULL || r->device_id == NULL || r->bundle == NULL ||
	    r->bundle_len == 0 || r->bundle_len > BUNDLE_MAX)
		return bk__error_set(BK_EINVALID, NULL, "catalog: incomplete identity record");
	rc = bk_catalog__prepare(
	    cat, &st,
	    "INSERT INTO identity_bundles"
	    " (ticket, old_serial, new_serial, device_id, owner, bundle, received)"
	    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
	    " ON CONFLICT (ticket) DO UPDATE SET old_serial = excluded.old_serial,"
	    " new_serial = excluded.new_serial, device_id = excluded.device_id,"
	    " owner = excluded.owner, bundle = excluded.bundle, received = excluded.received"
	    " WHERE bundle IS NOT excluded.bundle OR new_serial IS NOT excluded.new_serial");
	if (rc)
		return rc;
	bk_catalog__now(now);
	sqlite3_bind_text(st, 1, r->ticket, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, r->old_serial, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, r->new_serial, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, r->device_id, -1, SQLITE_STATIC);
	if (r->owner)
		sqlite3_bind_text(st, 5, r->owner, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 5);
	sqlite3_bind_blob(st, 6, r->bundle, (int)r->bundle_len, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, now, -1, SQLITE_STATIC);
	int src = sqlite3_step(st);
	if (src != SQLITE_DONE)
		rc = bk_catalog__sql_error(cat, src, "record identity bundle");
	sqlite3_finalize(st);
	return rc;
}

static int col_dup(sqlite3_stmt *st, int i, char **out)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	*out = NULL;
	if (t == NULL)
		return 0;
	*out = bk__strdup((const char *)t);
	return *out ? 0 : bk__error_oom();
}

int bk_catalog_identity_get(bk_catalog *cat, const char *ticket, bk_identity_record *out)
{
	sqlite3_stmt *st = NULL;
	int rc;
	if (cat == NULL || ticket == NULL || out == NULL)
		return bk__error_set(BK_EINVALID, NULL, "catalog: missing argument");
	memset(out, 0, sizeof(*out));
	rc = bk_catalog__prepare(cat, &st,
	                         "SELECT ticket, old_serial, new_serial, device_id, owner, bundle,"
	                         " received FROM identity_bundles WHERE ticket = ?1");
	if (rc)
		return rc;
	sqlite3_bind_text(st, 1, ticket, -1, SQLITE_STATIC);
	int src = sqlite3_step(st);
	if (src == SQLITE_DONE) {
		rc = bk__error_set(BK_ENOTFOUND, "identity-not-found",
		                   "no identity bundle for ticket %s in the catalog", ticket);
		goto done;
	}
	if (src != SQLITE_ROW) {
		rc = bk_catalog__sql_error(cat, src, "read identity bundle");
		goto done;
	}
	if ((rc = col_dup(st, 0, &out->ticket)) || (rc = col_dup(st, 1, &out->old_serial)) ||
	    (rc = col_dup(st, 2, &out->new_serial)) || (rc = col_dup(st, 3, &out->device_id)) ||
	    (rc = col_dup(st, 4, &out->owner)) || (rc = col_dup(st, 6, &out->received)))
		goto done;
	int n = sqlite3_column_bytes(st, 5);
	out->bundle = bk__malloc(n > 0 ? (size_t)n : 1);
	if (out->bundle == NULL) {
		rc = bk__error_oom();
		goto done;
	}
	if (n > 0)
		memcpy(out->bundle, sqlite3_column_blob(st, 5), (size_t)n);
	out->bundle_len = (size_t)n;
done:
	sqlite3_finalize(st);
	if (rc)
		bk_identity_record_clear(out);
	return rc;
}
