/* The virtual robot's IDENTITY_INSTALL handler (see identity_ops.h). */
#include <string.h>
#include <time.h>

#include <sodium.h>

#include <libbackup/identity.h>

#include "crypto/minisign.h"
#include "device/virtual/identity_ops.h"

/* The longest bundle accepted, decoded: an armored certificate of the
 * largest canonical size fits well within it. */
#define BUNDLE_MAX (2 * BK_CERT_MAX)

static const char table_sql[] = "CREATE TABLE IF NOT EXISTS identity ("
                                "  id INTEGER PRIMARY KEY CHECK (id = 1),"
                                "  bundle BLOB NOT NULL, issued INTEGER NOT NULL,"
                                "  installed INTEGER NOT NULL)";

static int db_err(bk_vunit *u, const char *what)
{
	return bk__error_set(BK_ERROR, "unit-db", "unit %s: %s: %s", bk_vunit_serial(u), what,
	                     sqlite3_errmsg(bk_vunit_db(u)));
}

/* The installed bundle's canonical bytes (*out NULL when none; free with
 * bk__free). A unit whose table was never made has none. */
static int stored_get(bk_vunit *u, uint8_t **out, size_t *out_len)
{
	sqlite3 *db = bk_vunit_db(u);
	sqlite3_stmt *st = NULL;
	int rc = 0, s;
	*out = NULL;
	*out_len = 0;
	if (sqlite3_prepare_v2(db,
	                       "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
	                       "name = 'identity'",
	                       -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW) {
		rc = db_err(u, "read the identity");
		goto done;
	}
	if (sqlite3_column_int(st, 0) == 0)
		goto done;
	sqlite3_finalize(st);
	st = NULL;
	if (sqlite3_prepare_v2(db, "SELECT bundle FROM identity WHERE id = 1", -1, &st, NULL) !=
	    SQLITE_OK) {
		rc = db_err(u, "read the identity");
		goto done;
	}
	s = sqlite3_step(st);
	if (s == SQLITE_ROW) {
		const void *b = sqlite3_column_blob(st, 0);
		int n = sqlite3_column_bytes(st, 0);
		if (b == NULL || n <= 0 || n > BUNDLE_MAX) {
			rc = bk__error_set(BK_EFORMAT, "unit-db",
			                   "unit %s: the stored identity bundle is unreadable",
			                   bk_vunit_serial(u));
			goto done;
		}
		if ((*out = bk__malloc((size_t)n)) == NULL) {
			rc = BK_ENOMEM;
			goto done;
		}
		memcpy(*out, b, (size_t)n);
		*out_len = (size_t)n;
	} else if (s != SQLITE_DONE) {
		rc = db_err(u, "read the identity");
	}
done:
	sqlite3_finalize(st);
	return rc;
}

static int stored_put(bk_vunit *u, const bk_identity_cert *b)
{
	sqlite3_stmt *st = NULL;
	int rc = 0;
	if (sqlite3_prepare_v2(bk_vunit_db(u),
	                       "INSERT OR REPLACE INTO identity (id, bundle, issued, installed) "
	                       "VALUES (1, ?1, ?2, ?3)",
	                       -1, &st, NULL) != SQLITE_OK)
		return db_err(u, "store the identity");
	sqlite3_bind_blob(st, 1, b->bytes, (int)b->len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)b->issued);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)time(NULL));
	if (sqlite3_step(st) != SQLITE_DONE)
		rc = db_err(u, "store the identity");
	sqlite3_finalize(st);
	return rc;
}

/* The request's bundle, strictly base64-decoded. */
static int bundle_decode(bk_vunit *u, const json_t *req, uint8_t **out, size_t *out_len)
{
	json_t *jb = json_object_get(req, "bundle");
	const char *text = json_string_value(jb);
	size_t n = json_string_length(jb), got = 0;
	uint8_t *buf = NULL;
	*out = NULL;
	*out_len = 0;
	if (!json_is_string(jb))
		return bk__error_set(BK_EINVALID, "bad-request",
		                     "unit %s: IDENTITY_INSTALL needs \"bundle\" (a base64 string)",
		                     bk_vunit_serial(u));
	if (n == 0 || n / 4 * 3 > BUNDLE_MAX)
		return bk__error_set(BK_EFORMAT, "bad-bundle",
		                     "unit %s: an identity bundle of %zu base64 characters is "
		                     "refused",
		                     bk_vunit_serial(u), n);
	if ((buf = bk__malloc(n / 4 * 3 + 1)) == NULL)
		return BK_ENOMEM;
	/* The strict decoder: the standard alphabet only, '=' only as final
	 * padding, a length that is a multiple of 4. */
	if (bk_minisign__b64_decode(buf, n / 4 * 3 + 1, &got, text, n) != 0 || got == 0) {
		bk__free(buf);
		return bk__error_set(BK_EFORMAT, "bad-base64",
		                     "unit %s: the identity bundle is not valid base64",
		                     bk_vunit_serial(u));
	}
	*out = buf;
	*out_len = got;
	return 0;
}

static int mismatch(bk_vunit *u, const char *what, const char *got, const char *want)
{
	return bk__error_set(BK_EVERIFY, "bundle-mismatch",
	                     "unit %s: the identity bundle is for %s '%s', not this unit's '%s'",
	                     bk_vunit_serial(u), what, got, want);
}

/* Checks the bundle for this unit; *out gets what it says. */
static int bundle_check(bk_vunit *u, const uint8_t *raw, size_t len, bk_identity_cert *out)
{
	bk_identity_cert parsed, unit;
	char *ca = NULL;
	size_t ulen = 0;
	const uint8_t *ub = bk_cert_bytes(bk_vunit_cert(u), &ulen);
	int rc;
	memset(&parsed, 0, sizeof(parsed));
	memset(&unit, 0, sizeof(unit));
	if ((rc = bk_identity_cert_parse(&parsed, raw, len))) {
		bk__error_prefix(rc, "unit %s: identity bundle", bk_vunit_serial(u));
		goto done;
	}
	if ((rc = bk_identity_cert_parse(&unit, ub, ulen)))
		goto done;
	if ((ca = bk_path_join(bk_vunit_dir(u), BK_VUNIT_TRUST_SERVICE)) == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	/* The signature first: nothing an unverified document says is
	 * believed, not even whom it names. */
	rc = bk_identity_bundle_verify(out, raw, len, ca, bk_vunit_serial(u),
	                               parsed.device_id ? parsed.device_id : "", NULL, NULL, &unit);
	if (rc == BK_EVERIFY) {
		if (parsed.subject == NULL || strcmp(parsed.subject, bk_vunit_serial(u)) != 0)
			rc = mismatch(u, "serial", parsed.subject ? parsed.subject : "(none)",
			              bk_vunit_serial(u));
		else
			rc = bk__error_prefix(rc, "unit %s", bk_vunit_serial(u));
		goto done;
	}
	if (rc) {
		bk__error_prefix(rc, "unit %s", bk_vunit_serial(u));
		goto done;
	}
	if (out->model && unit.model && strcmp(out->model, unit.model) != 0)
		rc = mismatch(u, "model", out->model, unit.model);
	else if (out->hw_revision && unit.hw_revision &&
	         strcmp(out->hw_revision, unit.hw_revision) != 0)
		rc = mismatch(u, "hardware revision", out->hw_revision, unit.hw_revision);
	if (rc)
		bk_identity_cert_clear(out);
done:
	bk__free(ca);
	bk_identity_cert_clear(&unit);
	bk_identity_cert_clear(&parsed);
	return rc;
}

static int identity_install(bk_vunit *u, const bk_proto_msg *req, bk_vunit_reply *reply,
                            void *payload)
{
	bk_identity_cert b, old;
	uint8_t *raw = NULL, *have = NULL;
	size_t len = 0, have_len = 0;
	int rc;
	BK_UNUSED(payload);
	memset(&b, 0, sizeof(b));
	memset(&old, 0, sizeof(old));
	if ((rc = bundle_decode(u, req->json, &raw, &len)) || (rc = bundle_check(u, raw, len, &b)))
		goto done;
	if ((rc = stored_get(u, &have, &have_len)))
		goto done;
	bool same = have && have_len == b.len && sodium_memcmp(have, b.bytes, b.len) == 0;
	if (have && !same) {
		if ((rc = bk_identity_cert_parse(&old, have, have_len)))
			goto done;
		if (b.issued < old.issued) {
			rc = bk__error_set(
			    BK_EINCOMPAT, "bundle-older",
			    "unit %s: the identity bundle was issued at %lld, before "
			    "the installed one (%lld)",
			    bk_vunit_serial(u), (long long)b.issued, (long long)old.issued);
			goto done;
		}
	}
	if (!same) {
		if ((rc = bk_vunit_step(u, "identity-install", 0)) || (rc = stored_put(u, &b)) ||
		    (rc = bk_vunit_step(u, "identity-install", 100)))
			goto done;
		bk__log(BK_LOG_INFO, "vdev", "unit %s: identity %s installed (bundle %s)",
		        bk_vunit_serial(u), b.device_id, b.fingerprint);
	}
	reply->json = json_pack("{s:s, s:s, s:s}", "device_id", b.device_id, "serial", b.subject,
	                        "fingerprint", b.fingerprint);
	rc = reply->json ? 0 : bk__error_oom();
done:
	bk_identity_cert_clear(&old);
	bk_identity_cert_clear(&b);
	bk__free(have);
	bk__free(raw);
	return rc;
}

int bk_videntity_install(bk_vunit *u)
{
	char *err = NULL;
	if (u == NULL)
		return bk__error_set(BK_EINVALID, NULL, "identity: no unit");
	if (sqlite3_exec(bk_vunit_db(u), table_sql, NULL, NULL, &err) != SQLITE_OK) {
		int rc =
		    bk__error_set(BK_ERROR, "unit-db", "unit %s: prepare the identity table: %s",
		                  bk_vunit_serial(u), err ? err : "?");
		sqlite3_free(err);
		return rc;
	}
	return bk_vunit_set_handler(u, BK_MSG_IDENTITY_INSTALL, identity_install, NULL);
}

int bk_videntity_info_json(bk_vunit *u, json_t **out)
{
	bk_identity_cert b;
	uint8_t *have = NULL;
	size_t len = 0;
	int rc;
	memset(&b, 0, sizeof(b));
	*out = NULL;
	if ((rc = stored_get(u, &have, &len)))
		goto done;
	if (have == NULL) {
		*out = json_pack("{s:b}", "installed", 0);
	} else {
		if ((rc = bk_identity_cert_parse(&b, have, len))) {
			bk__error_prefix(rc, "unit %s: the stored identity bundle",
			                 bk_vunit_serial(u));
			goto done;
		}
		*out = json_pack("{s:b, s:s?, s:s?, s:s}", "installed", 1, "device_id", b.device_id,
		                 "serial", b.subject, "fingerprint", b.fingerprint);
	}
	rc = *out ? 0 : bk__error_oom();
done:
	bk_identity_cert_clear(&b);
	bk__free(have);
	return rc;
}
