/* The memory archive: manifest, domain digests, writer and reader, hostile
 * archives, truncation and allocation failures. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <sodium.h>

#include <libbackup/libbackup.h>

#include "helpers.h"
#include "libbackup/archive/archive.h"
#include "libbackup/util/util.h"
#include "testlib.h"

static const char *reason(void)
{
	const char *r = bk_error_last()->reason;
	return r ? r : "";
}

static bool exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

/* A small memory folder with several domains, nesting, an empty file and a
 * Unicode name. */
static void small_tree(const char *root)
{
	CHECK(t_put(root, "memories/people/alice.json", "{\"name\":\"alice\"}", 16) == 0);
	CHECK(t_put(root, "memories/people/bob.json", "{\"name\":\"bob\"}", 14) == 0);
	CHECK(t_put(root, "memories/tricks.json", "[1,2,3]", 7) == 0);
	CHECK(t_put(root, "personality/state.bin", "\x01\x02\x03\x00\x05", 5) == 0);
	CHECK(t_put(root, "photos/2026/caf\xc3\xa9 \xe7\x8c\xab.jpg", "JPEG", 4) == 0);
	CHECK(t_put(root, "settings/empty", "", 0) == 0);
	CHECK(mkdir(bk_test_path("src/logs"), 0755) == 0 || errno == EEXIST);
}

static void test_domain_lookup(void)
{
	unsigned set;
	CHECK_STR(bk_domain_name(BK_DOMAIN_MEMORIES), "memories");
	CHECK(bk_domain_name(BK_DOMAIN_COUNT) == NULL);
	CHECK_EQ(bk_domain_lookup("photos", 6), BK_DOMAIN_PHOTOS);
	CHECK_EQ(bk_domain_lookup("photo", 5), -1);
	CHECK_OK(bk_domain_set_parse("map,logs", &set));
	CHECK_EQ(set, BK_DOMAIN_BIT(BK_DOMAIN_MAP) | BK_DOMAIN_BIT(BK_DOMAIN_LOGS));
	CHECK_EQ(bk_domain_set_parse("map,cloud", &set), BK_EUSER);
}

/* The domain digest is computed exactly as documented: over the path
 * relative to the domain folder, in byte-wise order. */
static void test_domain_digest_definition(void)
{
	char root[1024];
	snprintf(root, sizeof(root), "%s", bk_test_path("src"));
	/* "a.txt" sorts before "a/b" byte-wise ('.' < '/'), unlike a per-folder walk. */
	CHECK(t_put(root, "map/a/b", "xy", 2) == 0);
	CHECK(t_put(root, "map/a.txt", "hello", 5) == 0);
	bk_domain_digests dd;
	REQUIRE_OK(bk_tree_digests(root, &dd));
	CHECK(dd.d[BK_DOMAIN_MAP].present);
	CHECK(!dd.d[BK_DOMAIN_LOGS].present);
	CHECK_EQ(dd.d[BK_DOMAIN_MAP].items, 2);
	CHECK_EQ(dd.d[BK_DOMAIN_MAP].bytes, 7);

	crypto_generichash_state st;
	uint8_t h1[32], h2[32], want[32];
	crypto_generichash(h1, 32, (const uint8_t *)"hello", 5, NULL, 0);
	crypto_generichash(h2, 32, (const uint8_t *)"xy", 2, NULL, 0);
	crypto_generichash_init(&st, NULL, 0, 32);
	const uint8_t sz5[8] = {0, 0, 0, 0, 0, 0, 0, 5}, sz2[8] = {0, 0, 0, 0, 0, 0, 0, 2};
	crypto_generichash_update(&st, (const uint8_t *)"a.txt", 6); /* with its NUL */
	crypto_generichash_update(&st, sz5, 8);
	crypto_generichash_update(&st, h1, 32);
	crypto_generichash_update(&st, (const uint8_t *)"a/b", 4);
	crypto_generichash_update(&st, sz2, 8);
	crypto_generichash_update(&st, h2, 32);
	crypto_generichash_final(&st, want, 32);
	CHECK(memcmp(dd.d[BK_DOMAIN_MAP].digest, want, 32) == 0);

	/* The empty input for a domain without files. */
	CHECK(mkdir(bk_test_path("src/logs"), 0755) == 0);
	REQUIRE_OK(bk_tree_digests(root, &dd));
	crypto_generichash(want, 32, NULL, 0, NULL, 0);
	CHECK(dd.d[BK_DOMAIN_LOGS].present);
	CHECK_EQ(dd.d[BK_DOMAIN_LOGS].items, 0);
	CHECK(memcmp(dd.d[BK_DOMAIN_LOGS].digest, want, 32) == 0);

	/* JSON form, both ways. */
	json_t *j = NULL;
	bk_domain_digests back;
	REQUIRE_OK(bk_domain_digests_to_json(&dd, &j));
	CHECK_EQ(json_object_size(j), 2);
	CHECK_EQ(json_integer_value(json_object_get(json_object_get(j, "map"), "items")), 2);
	CHECK_OK(bk_domain_digests_from_json(j, &back));
	CHECK(bk_domain_digests_equal(&dd, &back));
	json_object_set_new(j, "cloud", json_object());
	CHECK_EQ(bk_domain_digests_from_json(j, &back), BK_EFORMAT);
	json_decref(j);
}

static void test_tree_refuses_links_and_unknown(void)
{
	char root[1024];
	snprintf(root, sizeof(root), "%s", bk_test_path("src"));
	bk_domain_digests dd;
	CHECK(t_put(root, "memories/a", "a", 1) == 0);
	CHECK(symlink("/etc/passwd", bk_test_path("src/memories/link")) == 0);
	CHECK_EQ(bk_tree_digests(root, &dd), BK_EFORMAT);
	CHECK_STR(reason(), "tree-unsafe-file");
	CHECK(strstr(bk_error_last()->message, "memories/link") != NULL);
	CHECK(unlink(bk_test_path("src/memories/link")) == 0);
	CHECK(mkfifo(bk_test_path("src/memories/fifo"), 0600) == 0);
	CHECK_EQ(bk_tree_digests(root, &dd), BK_EFORMAT);
	CHECK_STR(reason(), "tree-unsafe-file");
	CHECK(unlink(bk_test_path("src/memories/fifo")) == 0);
	CHECK(t_put(root, "cloud/x", "x", 1) == 0);
	CHECK_EQ(bk_tree_digests(root, &dd), BK_EFORMAT);
	CHECK_STR(reason(), "unknown-domain");

	/* The writer refuses the same with the same errors. */
	uint8_t *data = NULL;
	size_t len;
	CHECK_EQ(t_write(root, NULL, &data, &len, NULL, NULL), BK_EFORMAT);
	CHECK_STR(reason(), "unknown-domain");
	free(data);
}

static void test_manifest_roundtrip(void)
{
	bk_manifest *m = NULL, *p = NULL;
	bk_manifest_info info = {
	    .serial = "ERS1-0042",
	    .model = "ERS-1000",
	    .hardware_revision = "B",
	    .firmware_version = "5.2.1",
	    .schema_version = 7,
	    .backup_id = "0f8fad5b-d9cb-469f-a165-70867728950e",
	    .created = 1790000000,
	};
	uint8_t d[32] = {1, 2, 3};
	char *json = NULL;
	size_t len;
	REQUIRE_OK(bk_manifest_new(&m, &info, BK_DOMAIN_BIT(BK_DOMAIN_LOGS)));
	CHECK_OK(bk_manifest_add(m, "memories/z", 10, 0600, 5, d));
	CHECK_OK(bk_manifest_add(m, "memories/a/b", 3, 0644, -5, d));
	CHECK_EQ(bk_manifest_add(m, "memories/../x", 1, 0644, 0, d), BK_EFORMAT);
	CHECK_EQ(bk_manifest_add(m, "cloud/x", 1, 0644, 0, d), BK_EFORMAT);
	CHECK_EQ(bk_manifest_add(m, "memories", 1, 0644, 0, d), BK_EFORMAT);
	REQUIRE_OK(bk_manifest_finish(m, NULL));
	REQUIRE_OK(bk_manifest_encode(m, &json, &len));
	REQUIRE_OK(bk_manifest_parse(&p, json, len, NULL));
	CHECK_STR(bk_manifest_backup_id(p), info.backup_id);
	CHECK_STR(bk_manifest_serial(p), "ERS1-0042");
	CHECK_STR(bk_manifest_model(p), "ERS-1000");
	CHECK_STR(bk_manifest_hardware_revision(p), "B");
	CHECK_STR(bk_manifest_firmware_version(p), "5.2.1");
	CHECK_EQ(bk_manifest_schema_version(p), 7);
	CHECK_EQ(bk_manifest_created(p), 1790000000);
	CHECK(strstr(json, "\"created\":\"2026-09-21T") != NULL);
	CHECK(strstr(json, "\"format\":\"aibo-memory/1\"") != NULL);
	REQUIRE(bk_manifest_count(p) == 2);
	CHECK_STR(bk_manifest_entry_at(p, 0)->path, "memories/a/b");
	CHECK_STR(bk_manifest_entry_at(p, 0)->rel, "a/b");
	CHECK_EQ(bk_manifest_entry_at(p, 0)->mtime, -5);
	CHECK_EQ(bk_manifest_entry_at(p, 1)->mode, 0600);
	CHECK(bk_manifest_find(p, "memories/z") == bk_manifest_entry_at(p, 1));
	CHECK(bk_manifest_find(p, "memories/a") == NULL);
	CHECK(bk_domain_digests_equal(bk_manifest_domains(m), bk_manifest_domains(p)));
	CHECK(bk_manifest_domains(p)->d[BK_DOMAIN_LOGS].present);
	uint8_t r1[32], r2[32];
	CHECK(bk_manifest_raw_digest(m, r1) && bk_manifest_raw_digest(p, r2));
	CHECK(memcmp(r1, r2, 32) == 0);

	/* Random ids are UUID v4. */
	bk_manifest *q = NULL;
	REQUIRE_OK(bk_manifest_new(&q, NULL, 0));
	CHECK_EQ(strlen(bk_manifest_backup_id(q)), 36);
	CHECK_EQ(bk_manifest_backup_id(q)[14], '4');
	CHECK(strcmp(bk_manifest_backup_id(q), info.backup_id) != 0);
	bk_manifest_free(q);

	/* A file cannot be a folder of another one, nor be listed twice. */
	REQUIRE_OK(bk_manifest_new(&q, NULL, 0));
	CHECK_OK(bk_manifest_add(q, "map/a", 1, 0644, 0, d));
	CHECK_OK(bk_manifest_add(q, "map/a/b", 1, 0644, 0, d));
	CHECK_EQ(bk_manifest_finish(q, NULL), BK_EFORMAT);
	CHECK_STR(reason(), "manifest-duplicate");
	bk_manifest_free(q);
	REQUIRE_OK(bk_manifest_new(&q, NULL, 0));
	CHECK_OK(bk_manifest_add(q, "map/a", 1, 0644, 0, d));
	CHECK_OK(bk_manifest_add(q, "map/a", 1, 0644, 0, d));
	CHECK_EQ(bk_manifest_finish(q, NULL), BK_EFORMAT);
	CHECK_STR(reason(), "manifest-duplicate");
	bk_manifest_free(q);

	bk__free(json);
	bk_manifest_free(m);
	bk_manifest_free(p);
}

/* Replaces the first occurrence of `from` with `to` in `s` (a fresh string). */
static char *replace(const char *s, const char *from, const char *to)
{
	const char *at = strstr(s, from);
	if (at == NULL)
		return NULL;
	size_t n = strlen(s) - strlen(from) + strlen(to) + 1;
	char *out = malloc(n);
	snprintf(out, n, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
	return out;
}

static void expect_parse(const char *json, int code, const char *why)
{
	bk_manifest *m = NULL;
	int rc = json ? bk_manifest_parse(&m, json, strlen(json), NULL) : BK_ERROR;
	if (rc != code || strcmp(reason(), why) != 0) {
		fprintf(stderr, "  parse of variant expected %d %s, got %d %s (%s)\n", code, why,
		        rc, reason(), bk_error_last()->message);
		bk_test_failures++;
	}
	CHECK(m == NULL);
}

static void test_manifest_parse_strict(void)
{
	const char *pairs[] = {"memories/a", "alpha", "memories/b", "beta", "map/m", "x"};
	char *good = t_manifest(pairs, 3);
	REQUIRE(good != NULL);
	bk_manifest *m = NULL;
	REQUIRE_OK(bk_manifest_parse(&m, good, strlen(good), NULL));
	bk_manifest_free(m);

	struct {
		const char *from, *to;
		int code;
		const char *why;
	} cases[] = {
	    {"aibo-memory/1", "aibo-memory/2", BK_EFORMAT, "manifest-format"},
	    {"\"format\":", "\"format\":1,\"formatx\":", BK_EFORMAT, "manifest-format"},
	    {"{\"backup_id\"", "{\"extra\":1,\"backup_id\"", BK_EFORMAT, "manifest-invalid"},
	    {"{\"backup_id\"", "{\"serial\":\"x\",\"backup_id\"", BK_EFORMAT,
	     "manifest-invalid"}, /* duplicate key */
	    {"\"path\":\"memories/b\"", "\"path\":\"memories/a\"", BK_EFORMAT,
	     "manifest-duplicate"},
	    {"\"path\":\"memories/b\"", "\"path\":\"memories/../b\"", BK_EFORMAT,
	     "archive-unsafe-path"},
	    {"\"path\":\"memories/b\"", "\"path\":\"/memories/b\"", BK_EFORMAT,
	     "archive-unsafe-path"},
	    {"\"path\":\"map/m\"", "\"path\":\"cloud/m\"", BK_EFORMAT, "unknown-domain"},
	    {"\"map\":{", "\"cloud\":{\"items\":0,\"bytes\":0,\"digest\":\"00\"},\"map\":{",
	     BK_EFORMAT, "unknown-domain"},
	    {"\"size\":5", "\"size\":\"5\"", BK_EFORMAT, "manifest-invalid"},
	    {"\"size\":5", "\"size\":-5", BK_EFORMAT, "manifest-invalid"},
	    {"\"size\":5", "\"size\":5.0", BK_EFORMAT, "manifest-invalid"},
	    {"\"mode\":420", "\"mode\":4095", BK_EFORMAT, "manifest-invalid"},
	    {",\"size\":5}", "}", BK_EFORMAT, "manifest-invalid"},
	    {"\"entries\":[", "\"entries\":{},\"x\":[", BK_EFORMAT, "manifest-invalid"},
	    {"\"schema_version\":0", "\"schema_version\":null", BK_EFORMAT, "manifest-invalid"},
	    {"\"created\":\"", "\"created\":\"x", BK_EFORMAT, "manifest-invalid"},
	    {"\"items\":2", "\"items\":3", BK_EFORMAT, "manifest-inconsistent"},
	    {"\"bytes\":9", "\"bytes\":10", BK_EFORMAT, "manifest-inconsistent"},
	    {"\"size\":5", "\"size\":6", BK_EFORMAT, "manifest-inconsistent"},
	    {"\"backup_id\":\"", "\"backup_id\":\"X", BK_EFORMAT, "manifest-invalid"},
	};
	for (size_t i = 0; i < BK_ARRAY_LEN(cases); i++) {
		char *v = replace(good, cases[i].from, cases[i].to);
		if (v == NULL) {
			fprintf(stderr, "  case %zu: '%s' not in the manifest\n", i, cases[i].from);
			bk_test_failures++;
			continue;
		}
		expect_parse(v, cases[i].code, cases[i].why);
		free(v);
	}
	/* Digest hex: upper case, short, not hex. */
	const char *dig = strstr(good, "\"digest\":\"") + 10;
	char *v = strdup(good);
	size_t at = (size_t)(dig - good);
	v[at] = (char)((v[at] >= 'a' && v[at] <= 'f') ? v[at] - 32 : 'G');
	expect_parse(v, BK_EFORMAT, "manifest-invalid");
	free(v);
	v = replace(good, dig - 10, "\"digest\":\"0\",\"x\":\"");
	expect_parse(v, BK_EFORMAT, "manifest-invalid");
	free(v);
	expect_parse("[]", BK_EFORMAT, "manifest-invalid");
	expect_parse("{\"format\":\"aibo-memory/1\"", BK_EFORMAT, "manifest-invalid");
	expect_parse("", BK_EFORMAT, "manifest-invalid");

	/* Limits. */
	bk_archive_limits lim = BK_ARCHIVE_LIMITS_DEFAULT;
	lim.max_entries = 2;
	CHECK_EQ(bk_manifest_parse(&m, good, strlen(good), &lim), BK_ENOSPACE);
	CHECK_STR(reason(), "limit-exceeded");
	lim = (bk_archive_limits)BK_ARCHIVE_LIMITS_DEFAULT;
	lim.max_total_bytes = 9;
	CHECK_EQ(bk_manifest_parse(&m, good, strlen(good), &lim), BK_ENOSPACE);
	lim = (bk_archive_limits)BK_ARCHIVE_LIMITS_DEFAULT;
	lim.max_path = 9;
	CHECK_EQ(bk_manifest_parse(&m, good, strlen(good), &lim), BK_ENOSPACE);
	lim = (bk_archive_limits)BK_ARCHIVE_LIMITS_DEFAULT;
	lim.max_manifest_bytes = 100;
	CHECK_EQ(bk_manifest_parse(&m, good, strlen(good), &lim), BK_ENOSPACE);
	CHECK(m == NULL);
	free(good);
}

/* Writes `src`, reads it back into `dest`, and checks that the digests of
 * source, manifest and extracted tree agree. Returns the manifest. */
static bk_manifest *roundtrip(const char *src, const char *dest, const bk_archive_write_opts *wo)
{
	uint8_t *data = NULL;
	size_t len;
	bk_manifest *wm = NULL, *rm = NULL;
	bk_archive_stats ws;
	bk_domain_digests src_d, dst_d;
	int rc = t_write(src, wo, &data, &len, &wm, &ws);
	if (rc) {
		fprintf(stderr, "  write: %s\n", bk_error_last()->message);
		bk_test_failures++;
		return NULL;
	}
	CHECK_EQ(ws.compressed_bytes, len);
	CHECK_EQ(ws.entries, bk_manifest_count(wm) + 1);
	CHECK(ws.tar_bytes >= 512 * ws.entries);
	CHECK_OK(t_read(data, len, NULL, 0, &rm)); /* verify only */
	bk_manifest_free(rm);
	rm = NULL;
	rc = t_read(data, len, dest, 0, &rm);
	if (rc) {
		fprintf(stderr, "  read: %s\n", bk_error_last()->message);
		bk_test_failures++;
	} else {
		CHECK_OK(bk_tree_digests(src, &src_d));
		CHECK_OK(bk_tree_digests(dest, &dst_d));
		CHECK(bk_domain_digests_equal(&src_d, bk_manifest_domains(wm)));
		CHECK(bk_domain_digests_equal(&src_d, bk_manifest_domains(rm)));
		CHECK(bk_domain_digests_equal(&src_d, &dst_d));
		CHECK_STR(bk_manifest_backup_id(rm), bk_manifest_backup_id(wm));
	}
	free(data);
	bk_manifest_free(wm);
	return rm;
}

static void test_roundtrip_empty(void)
{
	char src[1024];
	snprintf(src, sizeof(src), "%s", bk_test_path("src"));
	CHECK(mkdir(src, 0755) == 0);
	bk_manifest *m = roundtrip(src, bk_test_path("dest"), NULL);
	REQUIRE(m != NULL);
	CHECK_EQ(bk_manifest_count(m), 0);
	for (int d = 0; d < BK_DOMAIN_COUNT; d++)
		CHECK(!bk_manifest_domains(m)->d[d].present);
	bk_manifest_free(m);
	/* Empty domains survive as empty folders. */
	CHECK(mkdir(bk_test_path("src/logs"), 0755) == 0);
	CHECK(mkdir(bk_test_path("src/map"), 0755) == 0);
	m = roundtrip(src, bk_test_path("dest2"), NULL);
	REQUIRE(m != NULL);
	CHECK(bk_manifest_domains(m)->d[BK_DOMAIN_LOGS].present);
	CHECK_EQ(bk_manifest_domains(m)->d[BK_DOMAIN_LOGS].items, 0);
	CHECK(exists(bk_test_path("dest2/map")));
	bk_manifest_free(m);
	char *l = t_listing(bk_test_path("dest2"));
	CHECK(strstr(l, ".staging") == NULL);
	free(l);
}

static void test_roundtrip_one(void)
{
	char src[1024];
	snprintf(src, sizeof(src), "%s", bk_test_path("src"));
	CHECK(t_put(src, "personality/core.json", "{\"mood\":\"happy\"}", 16) == 0);
	CHECK(chmod(bk_test_path("src/personality/core.json"), 0640) == 0);
	bk_archive_write_opts wo = BK_ARCHIVE_WRITE_OPTS_INIT;
	wo.info.serial = "ERS1-0001";
	wo.info.model = "ERS-1000";
	wo.compression_level = 19;
	wo.threads = 2;
	t_no_sync = false; /* this one goes through the durable commit */
	bk_manifest *m = roundtrip(src, bk_test_path("dest"), &wo);
	t_no_sync = true;
	REQUIRE(m != NULL);
	CHECK_EQ(bk_manifest_count(m), 1);
	CHECK_STR(bk_manifest_serial(m), "ERS1-0001");
	struct stat st, st2;
	CHECK(stat(bk_test_path("dest/personality/core.json"), &st) == 0);
	CHECK(stat(bk_test_path("src/personality/core.json"), &st2) == 0);
	CHECK_EQ(st.st_mode & 0777, 0640);
	CHECK_EQ(st.st_mtime, st2.st_mtime);
	CHECK_EQ(st.st_size, 16);
	bk_manifest_free(m);
}

static void test_roundtrip_many(void)
{
	char src[1024];
	snprintf(src, sizeof(src), "%s", bk_test_path("src"));
	char rel[256];
	small_tree(src);
	for (int i = 0; i < 2000; i++) {
		snprintf(rel, sizeof(rel), "%s/d%02d/item-%04d.bin",
		         bk_domain_name(i % BK_DOMAIN_COUNT), i % 17, i);
		char data[64];
		int n = snprintf(data, sizeof(data), "content of %d", i * 7919);
		CHECK(t_put(src, rel, data, (size_t)(i % 5 == 0 ? 0 : n)) == 0);
	}
	/* Larger than every buffer. */
	size_t big = 700 * 1024 + 13;
	uint8_t *buf = malloc(big);
	randombytes_buf(buf, big);
	CHECK(t_put(src, "map/floor.bin", buf, big) == 0);
	free(buf);
	bk_manifest *m = roundtrip(src, bk_test_path("dest"), NULL);
	REQUIRE(m != NULL);
	CHECK_EQ(bk_manifest_count(m), 2007);
	CHECK(exists(bk_test_path("dest/photos/2026/caf\xc3\xa9 \xe7\x8c\xab.jpg")));
	CHECK(exists(bk_test_path("dest/settings/empty")));
	bk_manifest_free(m);
}

/* Only some domains installed; an existing domain replaced, others kept. */
static void test_selected_domains(void)
{
	char src[1024];
	snprintf(src, sizeof(src), "%s", bk_test_path("src"));
	char dest[1024];
	snprintf(dest, sizeof(dest), "%s", bk_test_path("dest"));
	uint8_t *data = NULL;
	size_t len;
	small_tree(src);
	CHECK(t_put(dest, "memories/old.json", "old", 3) == 0);
	CHECK(t_put(dest, "map/keep.bin", "keep", 4) == 0);
	REQUIRE_OK(t_write(src, NULL, &data, &len, NULL, NULL));
	unsigned set = BK_DOMAIN_BIT(BK_DOMAIN_MEMORIES) | BK_DOMAIN_BIT(BK_DOMAIN_SETTINGS);
	CHECK_OK(t_read(data, len, dest, set, NULL));
	CHECK(!exists(bk_test_path("dest/memories/old.json")));
	CHECK(exists(bk_test_path("dest/memories/people/alice.json")));
	CHECK(exists(bk_test_path("dest/settings/empty")));
	CHECK(exists(bk_test_path("dest/map/keep.bin")));
	CHECK(!exists(bk_test_path("dest/photos")));
	char *l = t_listing(dest);
	CHECK(strstr(l, ".staging") == NULL);
	free(l);
	/* A domain the backup does not hold. */
	CHECK_EQ(t_read(data, len, dest, BK_DOMAIN_BIT(BK_DOMAIN_MAP), NULL), BK_ENOTFOUND);
	CHECK(exists(bk_test_path("dest/map/keep.bin")));
	/* The writer's own domain selection. */
	bk_archive_write_opts wo = BK_ARCHIVE_WRITE_OPTS_INIT;
	bk_manifest *m = NULL;
	uint8_t *d2 = NULL;
	wo.domains = BK_DOMAIN_BIT(BK_DOMAIN_PHOTOS);
	REQUIRE_OK(t_write(src, &wo, &d2, &len, &m, NULL));
	CHECK_EQ(bk_manifest_count(m), 1);
	CHECK(!bk_manifest_domains(m)->d[BK_DOMAIN_MEMORIES].present);
	bk_manifest_free(m);
	free(d2);
	free(data);
}

static int changer_calls;
static int change_during_archive(const bk_progress *p, void *payload)
{
	if (strcmp(p->step, "archive") == 0 && changer_calls++ == 0)
		t_put((const char *)payload, "memories/tricks.json", "[9,9,9]", 7);
	return 0;
}

static int cancel_at_archive(const bk_progress *p, void *payload)
{
	(void)payload;
	return strcmp(p->step, "archive") == 0;
}

static void test_write_source_changed(void)
{
	char src[1024];
	snprintf(src, sizeof(src), "%s", bk_test_path("src"));
	uint8_t *data = NULL;
	size_t len;
	small_tree(src);
	bk_archive_write_opts wo = BK_ARCHIVE_WRITE_OPTS_INIT;
	wo.progress = change_during_archive;
	wo.progress_payload = (void *)src;
	changer_calls = 0;
	CHECK_EQ(t_write(src, &wo, &data, &len, NULL, NULL), BK_ERROR);
	CHECK_STR(reason(), "source-changed");
	CHECK(strstr(bk_error_last()->message, "memories/tricks.json") != NULL);
	CHECK(changer_calls > 0);
	wo.progress = cancel_at_archive;
	CHECK_EQ(t_write(src, &wo, &data, &len, NULL, NULL), BK_ECANCELLED);
	CHECK(data == NULL);
}

/* --- Hostile archives --- */

typedef struct hostile {
	const char *name;
	const char *const *pairs; /* manifest files */
	size_t npairs;
	t_ent ents[4];
	size_t nents;
	size_t manifest_at;
	int code;
	const char *why;
} hostile;

static const char *const one[] = {"memories/a", "alpha"};
static const char *const two[] = {"memories/a", "alpha", "memories/b", "beta"};

static void test_hostile_archives(void)
{
	const hostile cases[] = {
	    {"dotdot",
	     one,
	     1,
	     {{"domains/memories/a", AE_IFREG, "alpha", NULL, -1},
	      {"../x", AE_IFREG, "evil", NULL, -1}},
	     2,
	     0,
	     BK_EFORMAT,
	     "archive-unsafe-path"},
	    {"dotdot inside",
	     one,
	     1,
	     {{"domains/memories/../../../x", AE_IFREG, "evil", NULL, -1}},
	     1,
	     0,
	     BK_EFORMAT,
	     "archive-unsafe-path"},
	    {"absolute",
	     one,
	     1,
	     {{"/etc/x", AE_IFREG, "evil", NULL, -1}},
	     1,
	     0,
	     BK_EFORMAT,
	     "archive-unsafe-path"},
	    {"symlink",
	     one,
	     1,
	     {{"domains/memories/a", AE_IFLNK, NULL, "/etc/passwd", -1}},
	     1,
	     0,
	     BK_EFORMAT,
	     "archive-link"},
	    {"hard link",
	     one,
	     1,
	     {{"domains/memories/a", AE_IFREG, "alpha", NULL, -1},
	      {"domains/memories/b", 0, NULL, "domains/memories/a", -1}},
	     2,
	     0,
	     BK_EFORMAT,
	     "archive-link"},
	    {"device",
	     one,
	     1,
	     {{"domains/memories/a", AE_IFCHR, NULL, NULL, -1}},
	     1,
	     0,
	     BK_EFORMAT,
	     "archive-special-file"},
	    {"fifo",
	     one,
	     1,
	     {{"domains/memories/a", AE_IFIFO, NULL, NULL, -1}},
	     1,
	     0,
	     BK_EFORMAT,
	     "archive-special-file"},
	    {"duplicate",
	     one,
	     1,
	     {{"domains/memories/a", AE_IFREG, "alpha", NULL, -1},
	      {"domains/memories/a", AE_IFREG, "alpha", NULL, -1}},
	     2,
	     0,
	     BK_EFORMAT,
	     "archive-duplicate"},
	    {"second manifest",
	     one,
	     1,
	     {{"domains/memories/a", AE_IFREG, "alpha", NULL, -1},
	      {"MANIFEST.json", AE_IFREG, "{}", NULL, -1}},
	     2,
	     0,
	     BK_EFORMAT,
	     "archive-duplicate"},
	    {"undeclared",
	     one,
	     1,
	     {{"domains/memories/a", AE_IFREG, "alpha", NULL, -1},
	      {"domains/memories/b", AE_IFREG, "beta", NULL, -1}},
	     2,
	     0,
	     BK_EFORMAT,
	     "archive-undeclared-entry"},
	    {"outside domains",
	     one,
	     1,
	     {{"domains/memories/a", AE_IFREG, "alpha", NULL, -1},
	      {"notes.txt", AE_IFREG, "x", NULL, -1}},
	     2,
	     0,
	     BK_EFORMAT,
	     "archive-undeclared-entry"},
	    {"undeclared domain folder",
	     one,
	     1,
	     {{"domains/map/", AE_IFDIR, NULL, NULL, -1}},
	     1,
	     0,
	     BK_EFORMAT,
	     "archive-undeclared-entry"},
	    {"missing",
	     two,
	     2,
	     {{"domains/memories/a", AE_IFREG, "alpha", NULL, -1}},
	     1,
	     0,
	     BK_EFORMAT,
	     "archive-missing-entry"},
	    {"size mismatch",
	     one,
	     1,
	     {{"domains/memories/a", AE_IFREG, "alphaX", NULL, -1}},
	     1,
	     0,
	     BK_EVERIFY,
	     "entry-size-mismatch"},
	    {"digest mismatch",
	     one,
	     1,
	     {{"domains/memories/a", AE_IFREG, "alphX", NULL, -1}},
	     1,
	     0,
	     BK_EVERIFY,
	     "entry-digest-mismatch"},
	    {"control character",
	     one,
	     1,
	     {{"domains/memories/a\nb", AE_IFREG, "x", NULL, -1}},
	     1,
	     0,
	     BK_EFORMAT,
	     "archive-unsafe-path"},
	    {"not UTF-8",
	     one,
	     1,
	     {{"domains/memories/\xff\xfe", AE_IFREG, "x", NULL, -1}},
	     1,
	     0,
	     BK_EFORMAT,
	     "archive-unsafe-path"},
	    {"manifest not first",
	     one,
	     1,
	     {{"domains/memories/a", AE_IFREG, "alpha", NULL, -1}},
	     1,
	     1,
	     BK_EFORMAT,
	     "manifest-not-first"},
	    {"no manifest",
	     one,
	     0,
	     {{"domains/memories/a", AE_IFREG, "alpha", NULL, -1}},
	     1,
	     9,
	     BK_EFORMAT,
	     "manifest-not-first"},
	};
	char parent[1024];
	snprintf(parent, sizeof(parent), "%s", bk_test_path("parent"));
	char dest[1024];
	snprintf(dest, sizeof(dest), "%s", bk_test_path("parent/dest"));
	CHECK(t_put(dest, "memories/a", "original", 8) == 0);
	char *before = t_listing(parent);
	for (size_t i = 0; i < BK_ARRAY_LEN(cases); i++) {
		const hostile *h = &cases[i];
		char *manifest = t_manifest(h->pairs, h->npairs ? h->npairs : 1);
		size_t len;
		uint8_t *tar =
		    t_tar(h->npairs ? manifest : NULL, h->manifest_at, h->ents, h->nents, &len);
		for (int mode = 0; mode < 2; mode++) {
			int rc = t_read(tar, len, mode ? dest : NULL, 0, NULL);
			if (rc != h->code || strcmp(reason(), h->why) != 0) {
				fprintf(stderr, "  %s (%s): expected %d %s, got %d %s: %s\n",
				        h->name, mode ? "extract" : "verify", h->code, h->why, rc,
				        reason(), bk_error_last()->message);
				bk_test_failures++;
			}
		}
		char *after = t_listing(parent);
		if (strcmp(before, after) != 0) {
			fprintf(stderr, "  %s: the destination changed:\n%s---\n%s", h->name,
			        before, after);
			bk_test_failures++;
		}
		free(after);
		free(tar);
		free(manifest);
	}
	free(before);
	CHECK(!exists(bk_test_path("x")));
}

/* A raw (uncompressed) tar is refused: the payload is zstd. */
static void test_uncompressed_refused(void)
{
	struct archive *a = archive_write_new();
	char buf[20480];
	size_t used = 0;
	archive_write_set_format_pax_restricted(a);
	archive_write_open_memory(a, buf, sizeof(buf), &used);
	struct archive_entry *ae = archive_entry_new();
	archive_entry_set_pathname(ae, BK_MANIFEST_NAME);
	archive_entry_set_filetype(ae, AE_IFREG);
	archive_entry_set_size(ae, 2);
	archive_write_header(a, ae);
	archive_write_data(a, "{}", 2);
	archive_write_close(a);
	archive_write_free(a);
	archive_entry_free(ae);
	CHECK_EQ(t_read((uint8_t *)buf, used, NULL, 0, NULL), BK_EFORMAT);
	CHECK_STR(reason(), "archive-corrupt");
	const uint8_t junk[] = "this is not an archive at all";
	CHECK_EQ(t_read(junk, sizeof(junk), NULL, 0, NULL), BK_EFORMAT);
}

/* A manifest declaring 10 TB: over the limit, and over the free space. */
static void test_huge_manifest(void)
{
	bk_manifest *m = NULL;
	char *json = NULL;
	size_t mlen, len;
	uint8_t d[32] = {0};
	REQUIRE_OK(bk_manifest_new(&m, NULL, 0));
	REQUIRE_OK(bk_manifest_add(m, "photos/huge.raw", 10ULL << 40, 0644, 0, d));
	bk_archive_limits unlimited = {0};
	REQUIRE_OK(bk_manifest_finish(m, &unlimited));
	REQUIRE_OK(bk_manifest_encode(m, &json, &mlen));
	uint8_t *tar = t_tar(json, 0, NULL, 0, &len);
	char parent[1024];
	snprintf(parent, sizeof(parent), "%s", bk_test_path("parent"));
	char dest[1024];
	snprintf(dest, sizeof(dest), "%s", bk_test_path("parent/dest"));
	CHECK(mkdir(parent, 0755) == 0);
	char *before = t_listing(parent);
	CHECK_EQ(t_read(tar, len, dest, 0, NULL), BK_ENOSPACE);
	CHECK_STR(reason(), "limit-exceeded");
	bk_stream *r = NULL;
	bk_archive_read_opts ro = BK_ARCHIVE_READ_OPTS_INIT;
	ro.dest_dir = dest;
	ro.no_sync = true;
	ro.limits.max_total_bytes = 0;
	REQUIRE_OK(bk_stream_mem_reader(&r, tar, len));
	CHECK_EQ(bk_archive_read(r, &ro, NULL, NULL), BK_ENOSPACE);
	CHECK_STR(reason(), "no-space");
	bk_stream_free(r);
	char *after = t_listing(parent);
	/* At most the (empty) destination folder itself was made. */
	CHECK(strstr(after, ".staging") == NULL);
	CHECK(strstr(after, "huge") == NULL);
	free(before);
	free(after);
	free(tar);
	bk__free(json);
	bk_manifest_free(m);
}

static void test_truncation(void)
{
	char src[1024];
	snprintf(src, sizeof(src), "%s", bk_test_path("src"));
	uint8_t *data = NULL;
	size_t len;
	small_tree(src);
	uint8_t noise[40000];
	randombytes_buf(noise, sizeof(noise));
	CHECK(t_put(src, "map/noise.bin", noise, sizeof(noise)) == 0);
	REQUIRE_OK(t_write(src, NULL, &data, &len, NULL, NULL));
	REQUIRE(len > 100);
	CHECK(mkdir(bk_test_path("parent"), 0755) == 0);
	char dest[1024];
	snprintf(dest, sizeof(dest), "%s", bk_test_path("parent/dest"));
	size_t cuts[] = {0, 1, 4, 17, 100, len / 4, len / 2, len - 100, len - 9, len - 4, len - 1};
	for (size_t i = 0; i < BK_ARRAY_LEN(cuts); i++) {
		for (int mode = 0; mode < 2; mode++) {
			int rc = t_read(data, cuts[i], mode ? dest : NULL, 0, NULL);
			if (getenv("BK_TEST_VERBOSE"))
				fprintf(stderr, "  cut %zu/%zu: %d %s\n", cuts[i], len, rc,
				        bk_error_last()->message);
			if (rc == 0) {
				fprintf(stderr, "  cut at %zu of %zu accepted\n", cuts[i], len);
				bk_test_failures++;
			}
		}
		CHECK(!exists(bk_test_path("parent/dest/memories")));
	}
	char *l = t_listing(bk_test_path("parent"));
	CHECK(strstr(l, ".staging") == NULL);
	free(l);
	/* The cut filter reporting a disconnect keeps its error. */
	bk_stream *mem = NULL, *cut = NULL;
	REQUIRE_OK(bk_stream_mem_reader(&mem, data, len));
	REQUIRE_OK(bk_stream_cut_new(&cut, mem, 1, len / 2, BK_EDISCONNECTED));
	bk_archive_read_opts ro = BK_ARCHIVE_READ_OPTS_INIT;
	CHECK_EQ(bk_archive_read(cut, &ro, NULL, NULL), BK_EDISCONNECTED);
	bk_stream_free(cut);
	/* Flipped bytes anywhere: an error or (rarely) a harmless change, never
	 * a crash, and nothing outside the destination. */
	for (size_t i = 0; i < len; i += len / 97 + 1) {
		data[i] ^= 0x5a;
		(void)t_read(data, len, dest, 0, NULL);
		data[i] ^= 0x5a;
	}
	l = t_listing(bk_test_path("parent"));
	CHECK(strstr(l, ".staging") == NULL);
	free(l);
	/* The whole archive still reads. */
	CHECK_OK(t_read(data, len, dest, 0, NULL));
	free(data);
}

static void test_alloc_failures(void)
{
	char src[1024];
	snprintf(src, sizeof(src), "%s", bk_test_path("src"));
	uint8_t *data = NULL;
	size_t len;
	small_tree(src);
	REQUIRE_OK(t_write(src, NULL, &data, &len, NULL, NULL));
	CHECK(mkdir(bk_test_path("parent"), 0755) == 0);
	char dest[1024];
	snprintf(dest, sizeof(dest), "%s", bk_test_path("parent/dest"));
	int rc = -1;
	long n;
	for (n = 1; n < 2000 && rc != 0; n++) {
		bk_stream *r = NULL;
		REQUIRE_OK(bk_stream_mem_reader(&r, data, len));
		bk_archive_read_opts ro = BK_ARCHIVE_READ_OPTS_INIT;
		ro.dest_dir = dest;
		ro.no_sync = true;
		bk_manifest *m = NULL;
		bk__alloc_fail_at(n);
		rc = bk_archive_read(r, &ro, &m, NULL);
		bk__alloc_fail_at(0);
		bk_stream_free(r);
		if (rc != 0) {
			if (rc != BK_ENOMEM) {
				fprintf(stderr, "  alloc %ld: %d %s\n", n, rc,
				        bk_error_last()->message);
				bk_test_failures++;
			}
			CHECK(m == NULL);
			CHECK(!exists(bk_test_path("parent/dest/memories")));
		}
		bk_manifest_free(m);
	}
	CHECK_EQ(rc, 0);
	CHECK(n > 5);
	/* The writer too. */
	rc = -1;
	for (n = 1; n < 2000 && rc != 0; n++) {
		bk_stream *w = NULL;
		REQUIRE_OK(bk_stream_mem_writer(&w, 0));
		bk__alloc_fail_at(n);
		rc = bk_archive_write(w, src, NULL, NULL, NULL);
		bk__alloc_fail_at(0);
		bk_stream_free(w);
		if (rc != 0 && rc != BK_ENOMEM) {
			fprintf(stderr, "  write alloc %ld: %d %s\n", n, rc,
			        bk_error_last()->message);
			bk_test_failures++;
		}
	}
	CHECK_EQ(rc, 0);
	free(data);
}

BK_RUN_TESTS(BK_TEST(test_domain_lookup), BK_TEST(test_domain_digest_definition),
             BK_TEST(test_tree_refuses_links_and_unknown), BK_TEST(test_manifest_roundtrip),
             BK_TEST(test_manifest_parse_strict), BK_TEST(test_roundtrip_empty),
             BK_TEST(test_roundtrip_one), BK_TEST(test_roundtrip_many),
             BK_TEST(test_selected_domains), BK_TEST(test_write_source_changed),
             BK_TEST(test_hostile_archives), BK_TEST(test_uncompressed_refused),
             BK_TEST(test_huge_manifest), BK_TEST(test_truncation), BK_TEST(test_alloc_failures))
