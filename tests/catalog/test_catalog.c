/* The SQLite catalog: migrations, backups, verifications, restore headers,
 * holds, concurrency between processes. */
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libbackup/libbackup.h>

#include "libbackup/catalog/catalog_internal.h"
#include "libbackup/util/util.h"
#include "testlib.h"

static bk_backup_record sample(const char *id, const char *serial, const char *created)
{
	bk_backup_record r;
	memset(&r, 0, sizeof(r));
	r.id = (char *)id;
	r.location = (char *)"/depot/backups/x.aibk";
	r.serial = (char *)serial;
	r.model = (char *)"ERS-1000";
	r.hw_rev = (char *)"1";
	r.fw_version = (char *)"3.0.0";
	r.schema = 2;
	r.created = (char *)created;
	r.producer = (char *)"unit S1";
	r.plaintext_size = 1234;
	r.file_size = 1500;
	r.payload_digest = (char *)"aa";
	r.manifest_digest = (char *)"bb";
	r.statement = (uint8_t *)"statement-bytes";
	r.statement_len = 15;
	return r;
}

static void test_open_migrate(void)
{
	bk_catalog *cat = NULL;
	const char *path = bk_test_path("state/sub/depot.db");
	REQUIRE_OK(bk_catalog_open(&cat, path));
	int latest = bk_catalog_schema_version(cat);
	CHECK(latest >= 1);
	sqlite3_stmt *uv;
	REQUIRE(sqlite3_prepare_v2(cat->db, "PRAGMA user_version", -1, &uv, NULL) == SQLITE_OK);
	REQUIRE(sqlite3_step(uv) == SQLITE_ROW);
	CHECK_EQ(sqlite3_column_int(uv, 0), latest);
	sqlite3_finalize(uv);
	bk_catalog_free(cat);
	/* Reopening keeps the version; WAL is on. */
	REQUIRE_OK(bk_catalog_open(&cat, path));
	CHECK_EQ(bk_catalog_schema_version(cat), latest);
	sqlite3_stmt *st;
	REQUIRE(sqlite3_prepare_v2(cat->db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK);
	REQUIRE(sqlite3_step(st) == SQLITE_ROW);
	CHECK_STR((const char *)sqlite3_column_text(st, 0), "wal");
	sqlite3_finalize(st);
	/* A newer schema is refused. */
	REQUIRE(sqlite3_exec(cat->db, "PRAGMA user_version = 99", NULL, NULL, NULL) == SQLITE_OK);
	bk_catalog_free(cat);
	CHECK_EQ(bk_catalog_open(&cat, path), BK_EINCOMPAT);
	CHECK_STR(bk_error_last()->reason, "catalog-too-new");
	/* Not a database. */
	const char *junk = bk_test_path("junk.db");
	REQUIRE_OK(bk_file_write_atomic(junk, "this is not sqlite, not at all, no no no", 40, 0600, 0));
	CHECK(bk_catalog_open(&cat, junk) != 0);
	CHECK(cat == NULL);
}

static void test_backups(void)
{
	bk_catalog *cat = NULL;
	REQUIRE_OK(bk_catalog_open(&cat, bk_test_path("depot.db")));
	bk_backup_record a = sample("0b7e1c3a-0000-4000-8000-000000000001", "S1", "2026-01-01T00:00:00Z");
	bk_backup_record b = sample("0b7e1c3a-0000-4000-8000-000000000002", "S2", "2026-02-01T00:00:00Z");
	REQUIRE_OK(bk_catalog_backup_add(cat, &a));
	REQUIRE_OK(bk_catalog_backup_add(cat, &b));
	/* Adding the same again is a no-op; a conflicting one is refused. */
	CHECK_OK(bk_catalog_backup_add(cat, &a));
	bk_backup_record c = a;
	c.location = (char *)"/elsewhere.aibk";
	CHECK_EQ(bk_catalog_backup_add(cat, &c), BK_EEXIST);
	bk_backup_record *list = NULL;
	size_t n = 0;
	REQUIRE_OK(bk_catalog_backup_list(cat, NULL, &list, &n));
	REQUIRE(n == 2);
	CHECK_STR(list[0].serial, "S2"); /* newest first */
	CHECK_EQ(list[1].statement_len, 15);
	CHECK(memcmp(list[1].statement, "statement-bytes", 15) == 0);
	CHECK(list[0].verified == NULL);
	bk_catalog_backup_list_free(list, n);
	REQUIRE_OK(bk_catalog_backup_list(cat, "S1", &list, &n));
	CHECK_EQ(n, 1);
	bk_catalog_backup_list_free(list, n);
	/* Get by id and by prefix; ambiguous and short prefixes refused. */
	bk_backup_record r;
	REQUIRE_OK(bk_catalog_backup_get(cat, a.id, &r));
	CHECK_STR(r.model, "ERS-1000");
	CHECK_EQ(r.plaintext_size, 1234);
	bk_backup_record_clear(&r);
	CHECK_EQ(bk_catalog_backup_get(cat, "0b7e1c3a-0000-4000-8000-00000000000", &r), BK_EUSER);
	CHECK_STR(bk_error_last()->reason, "id-ambiguous");
	CHECK_EQ(bk_catalog_backup_get(cat, "0b7e", &r), BK_EUSER);
	CHECK_EQ(bk_catalog_backup_get(cat, "ffffffff-ffff", &r), BK_ENOTFOUND);
	/* Verifications: the latest one is reported. */
	CHECK_OK(bk_catalog_verification_add(cat, a.id, "quick", 1, NULL, NULL));
	CHECK_OK(bk_catalog_verification_add(cat, a.id, "full", 0, "payload-corrupt", "bad chunk"));
	REQUIRE_OK(bk_catalog_backup_get(cat, a.id, &r));
	CHECK_STR(r.verified, "failed");
	bk_backup_record_clear(&r);
	CHECK_OK(bk_catalog_verification_add(cat, a.id, "full", 1, NULL, NULL));
	REQUIRE_OK(bk_catalog_backup_get(cat, a.id, &r));
	CHECK_STR(r.verified, "full");
	bk_backup_record_clear(&r);
	CHECK_EQ(bk_catalog_verification_add(cat, "nope-nope-nope", "full", 1, NULL, NULL),
		 BK_ENOTFOUND);
	/* Holds block removal. */
	REQUIRE(sqlite3_exec(cat->db,
			     "INSERT INTO backup_holds VALUES ('0b7e1c3a-0000-4000-8000-000000000002',"
			     " 'job 7')",
			     NULL, NULL, NULL) == SQLITE_OK);
	CHECK_EQ(bk_catalog_backup_remove(cat, b.id), BK_EBUSY);
	CHECK(strstr(bk_error_last()->message, "job 7") != NULL);
	CHECK_OK(bk_catalog_backup_remove(cat, a.id));
	CHECK_EQ(bk_catalog_backup_remove(cat, a.id), BK_ENOTFOUND);
	REQUIRE_OK(bk_catalog_backup_list(cat, NULL, &list, &n));
	CHECK_EQ(n, 1);
	bk_catalog_backup_list_free(list, n);
	bk_catalog_free(cat);
}

static void test_restore_headers(void)
{
	bk_catalog *cat = NULL;
	REQUIRE_OK(bk_catalog_open(&cat, bk_test_path("depot.db")));
	uint8_t *h = NULL;
	size_t hl;
	CHECK_EQ(bk_catalog_restore_header_get(cat, "B", "S9", &h, &hl), BK_ENOTFOUND);
	REQUIRE_OK(bk_catalog_restore_header_put(cat, "B", "S9", (const uint8_t *)"hdr1", 4));
	CHECK_OK(bk_catalog_restore_header_put(cat, "B", "S9", (const uint8_t *)"hdr1", 4));
	CHECK_EQ(bk_catalog_restore_header_put(cat, "B", "S9", (const uint8_t *)"hdr2", 4), BK_EEXIST);
	REQUIRE_OK(bk_catalog_restore_header_get(cat, "B", "S9", &h, &hl));
	CHECK(hl == 4 && memcmp(h, "hdr1", 4) == 0);
	bk_free(h);
	bk_catalog_free(cat);
}

/* Two processes adding backups at the same time: both land. */
static void test_concurrent_processes(void)
{
	const char *path = bk_test_path("shared.db");
	bk_catalog *cat = NULL;
	REQUIRE_OK(bk_catalog_open(&cat, path));
	bk_catalog_free(cat);
	pid_t kids[2];
	for (int k = 0; k < 2; k++) {
		kids[k] = fork();
		REQUIRE(kids[k] >= 0);
		if (kids[k] == 0) {
			bk_catalog *c = NULL;
			if (bk_catalog_open(&c, path) != 0)
				_exit(2);
			for (int i = 0; i < 50; i++) {
				char id[64];
				snprintf(id, sizeof(id), "%08d-proc%d-backup", i, k);
				bk_backup_record r = sample(id, k ? "P1" : "P0", "2026-03-01T00:00:00Z");
				if (bk_catalog_backup_add(c, &r) != 0) {
					fprintf(stderr, "child %d: %s\n", k, bk_error_last()->message);
					_exit(1);
				}
			}
			bk_catalog_free(c);
			_exit(0);
		}
	}
	for (int k = 0; k < 2; k++) {
		int st;
		waitpid(kids[k], &st, 0);
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	REQUIRE_OK(bk_catalog_open(&cat, path));
	bk_backup_record *list = NULL;
	size_t n = 0;
	REQUIRE_OK(bk_catalog_backup_list(cat, NULL, &list, &n));
	CHECK_EQ(n, 100);
	bk_catalog_backup_list_free(list, n);
	bk_catalog_free(cat);
}

static void test_alloc_failures(void)
{
	const char *path = bk_test_path("alloc.db");
	bk_catalog *cat = NULL;
	REQUIRE_OK(bk_catalog_open(&cat, path));
	bk_backup_record a = sample("0b7e1c3a-0000-4000-8000-00000000000a", "S1", "2026-01-01T00:00:00Z");
	REQUIRE_OK(bk_catalog_backup_add(cat, &a));
	bk_catalog_free(cat);
	int ok = 0;
	for (long n = 1; n < 100 && !ok; n++) {
		bk__alloc_fail_at(n);
		int rc = bk_catalog_open(&cat, path);
		bk_backup_record *list = NULL;
		size_t count = 0;
		if (rc == 0)
			rc = bk_catalog_backup_list(cat, NULL, &list, &count);
		bk__alloc_fail_at(0);
		if (rc == 0) {
			ok = 1;
			CHECK_EQ(count, 1);
		} else {
			CHECK_EQ(rc, BK_ENOMEM);
		}
		bk_catalog_backup_list_free(list, count);
		bk_catalog_free(cat);
		cat = NULL;
	}
	CHECK(ok);
}

BK_RUN_TESTS(BK_TEST(test_open_migrate), BK_TEST(test_backups), BK_TEST(test_restore_headers),
	     BK_TEST(test_concurrent_processes), BK_TEST(test_alloc_failures))
