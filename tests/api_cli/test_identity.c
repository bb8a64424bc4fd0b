/* libbackup/identity.c and the catalog's identity bundles: the header swap
 * writer at every write size, bundle verification, terminal keys, and the
 * identity_bundles table. */
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sodium.h>

#include <libbackup/catalog.h>
#include <libbackup/identity.h>
#include <libbackup/libbackup.h>

#include "crypto/age.h"
#include "crypto/cert.h"
#include "libbackup/util/util.h"
#include "testlib.h"

/* An age file to `a` in memory, and a header re-wrapped to `b`. */
typedef struct fixture {
	bk_age_identity *a, *b;
	uint8_t *file, *hdr, *plain;
	size_t file_len, hdr_len, old_hdr_len, plain_len;
} fixture;

static void fixture_make(fixture *f)
{
	bk_stream *mem = NULL, *enc = NULL;
	bk_age_identities *ids = NULL;
	bk_age_recipient rb, ra;
	memset(f, 0, sizeof(*f));
	REQUIRE_OK(bk_age_identity_generate(&f->a));
	REQUIRE_OK(bk_age_identity_generate(&f->b));
	bk_age_identity_recipient(&ra, f->a);
	bk_age_identity_recipient(&rb, f->b);
	f->plain_len = 150000;
	f->plain = bk__malloc(f->plain_len);
	randombytes_buf(f->plain, f->plain_len);
	bk_age_encrypt_opts eo = BK_AGE_ENCRYPT_OPTS_INIT;
	eo.recipients = &ra;
	eo.recipient_count = 1;
	REQUIRE_OK(bk_stream_mem_writer(&mem, 0));
	REQUIRE_OK(bk_age_encrypt_new(&enc, mem, 0, &eo));
	REQUIRE_OK(bk_stream_write(enc, f->plain, f->plain_len, BK_DEADLINE_NONE));
	REQUIRE_OK(bk_stream_close(enc, BK_DEADLINE_NONE));
	const uint8_t *d = bk_stream_mem_data(mem, &f->file_len);
	f->file = bk__malloc(f->file_len);
	memcpy(f->file, d, f->file_len);
	bk_stream_free(mem);
	REQUIRE_OK(bk_age_header_parse(&f->old_hdr_len, f->file, f->file_len, NULL));
	REQUIRE_OK(bk_age_identities_new(&ids));
	REQUIRE_OK(bk_age_identities_add(ids, f->a));
	eo.recipients = &rb;
	REQUIRE_OK(bk_age_rewrap_header(&f->hdr, &f->hdr_len, f->file, f->old_hdr_len, ids, &eo));
	bk_age_identities_free(ids);
}

static void fixture_free(fixture *f)
{
	bk_age_identity_free(f->a);
	bk_age_identity_free(f->b);
	bk__free(f->file);
	bk__free(f->hdr);
	bk__free(f->plain);
}

static void test_header_swap(void)
{
	fixture f;
	fixture_make(&f);
	CHECK_OK(bk_identity_age_header_check(f.hdr, f.hdr_len));
	CHECK_EQ(bk_identity_age_header_check(f.file, f.file_len), BK_EFORMAT);
	static const size_t sizes[] = {1, 3, 17, 64, 1000, 65536, 0};
	for (size_t si = 0; si < BK_ARRAY_LEN(sizes); si++) {
		bk_stream *mem = NULL, *swap = NULL;
		size_t step = sizes[si] ? sizes[si] : f.file_len;
		REQUIRE_OK(bk_stream_mem_writer(&mem, 0));
		REQUIRE_OK(bk_identity_header_swap_new(&swap, mem, 0, f.hdr, f.hdr_len));
		for (size_t off = 0; off < f.file_len; off += step) {
			size_t n = f.file_len - off < step ? f.file_len - off : step;
			REQUIRE_OK(bk_stream_write(swap, f.file + off, n, BK_DEADLINE_NONE));
		}
		CHECK_EQ(bk_identity_header_swap_old_len(swap), f.old_hdr_len);
		REQUIRE_OK(bk_stream_close(swap, BK_DEADLINE_NONE));
		size_t len;
		const uint8_t *out = bk_stream_mem_data(mem, &len);
		REQUIRE(len == f.file_len - f.old_hdr_len + f.hdr_len);
		CHECK(memcmp(out, f.hdr, f.hdr_len) == 0);
		CHECK(memcmp(out + f.hdr_len, f.file + f.old_hdr_len, f.file_len - f.old_hdr_len) ==
		      0);
		/* The new recipient opens it; the old one no longer does. */
		bk_age_identities *ids = NULL;
		uint8_t *plain = NULL;
		size_t plain_len = 0;
		REQUIRE_OK(bk_age_identities_new(&ids));
		REQUIRE_OK(bk_age_identities_add(ids, f.b));
		CHECK_OK(bk_age_decrypt_mem(&plain, &plain_len, out, len, ids, NULL));
		CHECK(plain_len == f.plain_len && memcmp(plain, f.plain, f.plain_len) == 0);
		bk__free(plain);
		bk_age_identities_free(ids);
		REQUIRE_OK(bk_age_identities_new(&ids));
		REQUIRE_OK(bk_age_identities_add(ids, f.a));
		plain = NULL;
		CHECK_EQ(bk_age_decrypt_mem(&plain, &plain_len, out, len, ids, NULL), BK_EAUTH);
		bk__free(plain);
		bk_age_identities_free(ids);
		bk_stream_free(mem);
	}
	/* A stream that ends inside the header: close fails, nothing passed on. */
	for (size_t cut = 0; cut < f.old_hdr_len; cut += 7) {
		bk_stream *mem = NULL, *swap = NULL;
		REQUIRE_OK(bk_stream_mem_writer(&mem, 0));
		REQUIRE_OK(bk_identity_header_swap_new(&swap, mem, 1, f.hdr, f.hdr_len));
		int rc = cut ? bk_stream_write(swap, f.file, cut, BK_DEADLINE_NONE) : 0;
		if (rc == 0)
			rc = bk_stream_close(swap, BK_DEADLINE_NONE);
		else
			bk_stream_free(swap);
		CHECK_EQ(rc, BK_EFORMAT);
	}
	/* Not an age file. */
	bk_stream *mem = NULL, *swap = NULL;
	REQUIRE_OK(bk_stream_mem_writer(&mem, 0));
	REQUIRE_OK(bk_identity_header_swap_new(&swap, mem, 1, f.hdr, f.hdr_len));
	CHECK_EQ(bk_stream_write(swap, "not age\n--- x\nrest", 19, BK_DEADLINE_NONE), BK_EFORMAT);
	bk_stream_free(swap);
	/* A bad new header is refused up front. */
	REQUIRE_OK(bk_stream_mem_writer(&mem, 0));
	CHECK_EQ(bk_identity_header_swap_new(&swap, mem, 1, f.hdr, f.hdr_len - 1), BK_EFORMAT);
	CHECK(swap == NULL);
	bk_stream_free(mem);
	fixture_free(&f);
}

static void issue_unit(bk_cert **c, const bk_minisign_seckey *ca, const char *serial, int64_t now)
{
	uint8_t n[32], a[32], s[32];
	randombytes_buf(n, 32);
	randombytes_buf(a, 32);
	randombytes_buf(s, 32);
	bk_cert_params p = {.role = BK_CERT_ROLE_UNIT,
	                    .serial = serial,
	                    .model = "ERS-1000",
	                    .hw_revision = "1",
	                    .noise_key = n,
	                    .age_key = a,
	                    .ed25519_key = s,
	                    .not_before = now - 60,
	                    .not_after = now + 3600};
	CHECK_OK(bk_cert_issue(c, &p, ca));
}

static void test_bundle_verify(void)
{
	bk_minisign_seckey *service = NULL, *rogue = NULL, *factory = NULL;
	bk_minisign_pubkey pub;
	bk_cert *unit = NULL, *other = NULL, *bundle = NULL, *bad = NULL;
	bk_identity_cert ucert = {0}, ocert = {0}, info = {0};
	int64_t now = (int64_t)time(NULL);
	const char *ca_path = bk_test_path("service-ca.pub");
	REQUIRE_OK(bk_minisign_keygen(&service));
	REQUIRE_OK(bk_minisign_keygen(&rogue));
	REQUIRE_OK(bk_minisign_keygen(&factory));
	bk_minisign_seckey_pubkey(service, &pub);
	REQUIRE_OK(bk_minisign_pubkey_write(ca_path, &pub));
	issue_unit(&unit, factory, "NEW1", now);
	issue_unit(&other, factory, "NEW1", now);
	REQUIRE(unit != NULL && other != NULL);
	size_t n;
	const uint8_t *b = bk_cert_bytes(unit, &n);
	REQUIRE_OK(bk_identity_cert_parse(&ucert, b, n));
	CHECK_STR(ucert.role, "unit");
	CHECK_STR(ucert.subject, "NEW1");
	CHECK(ucert.age_recipient != NULL && strncmp(ucert.age_recipient, "age1", 4) == 0);
	b = bk_cert_bytes(other, &n);
	REQUIRE_OK(bk_identity_cert_parse(&ocert, b, n));
	bk_cert_params p = {.role = BK_CERT_ROLE_IDENTITY,
	                    .serial = "NEW1",
	                    .device_id = "dev-9",
	                    .owner_binding = "owner-1",
	                    .old_serial = "OLD1",
	                    .noise_key = bk_cert_noise_key(unit),
	                    .age_key = bk_cert_age_key(unit),
	                    .ed25519_key = bk_cert_ed25519_key(unit),
	                    .issued = now,
	                    .not_before = now - 60,
	                    .not_after = now + 3600};
	REQUIRE_OK(bk_cert_issue(&bundle, &p, service));
	REQUIRE_OK(bk_cert_issue(&bad, &p, rogue));
	const uint8_t *bb = bk_cert_bytes(bundle, &n);
	CHECK_OK(bk_identity_bundle_verify(&info, bb, n, ca_path, "NEW1", "dev-9", "owner-1",
	                                   "OLD1", &ucert));
	CHECK_STR(info.device_id, "dev-9");
	CHECK_STR(info.role, "identity");
	bk_identity_cert_clear(&info);
	CHECK_EQ(bk_identity_bundle_verify(NULL, bb, n, ca_path, "NEW2", "dev-9", NULL, NULL, NULL),
	         BK_EVERIFY);
	CHECK_STR(bk_error_last()->reason, "bundle-mismatch");
	CHECK_EQ(bk_identity_bundle_verify(NULL, bb, n, ca_path, "NEW1", "dev-8", NULL, NULL, NULL),
	         BK_EVERIFY);
	CHECK_EQ(
	    bk_identity_bundle_verify(NULL, bb, n, ca_path, "NEW1", "dev-9", "owner-2", NULL, NULL),
	    BK_EVERIFY);
	/* Bound to another unit's keys. */
	CHECK_EQ(
	    bk_identity_bundle_verify(NULL, bb, n, ca_path, "NEW1", "dev-9", NULL, NULL, &ocert),
	    BK_EVERIFY);
	/* Signed by a CA that is not the service's. */
	const uint8_t *rb = bk_cert_bytes(bad, &n);
	CHECK_EQ(bk_identity_bundle_verify(NULL, rb, n, ca_path, "NEW1", "dev-9", NULL, NULL, NULL),
	         BK_EAUTH);
	CHECK_STR(bk_error_last()->reason, "unknown-ca");
	/* A unit certificate is not a bundle. */
	b = bk_cert_bytes(unit, &n);
	CHECK_EQ(bk_identity_bundle_verify(NULL, b, n, ca_path, "NEW1", "dev-9", NULL, NULL, NULL),
	         BK_EAUTH);
	uint8_t junk[40] = {0};
	CHECK_EQ(bk_identity_bundle_verify(NULL, junk, sizeof(junk), ca_path, "NEW1", "dev-9", NULL,
	                                   NULL, NULL),
	         BK_EFORMAT);
	bk_identity_cert_clear(&ucert);
	bk_identity_cert_clear(&ocert);
	bk_cert_free(unit);
	bk_cert_free(other);
	bk_cert_free(bundle);
	bk_cert_free(bad);
	bk_minisign_seckey_free(service);
	bk_minisign_seckey_free(rogue);
	bk_minisign_seckey_free(factory);
}

static void test_terminal_keys(void)
{
	bk_identity_terminal_keys k1, k2;
	struct stat st;
	int created = -1;
	const char *path = bk_test_path("sub/terminal.key");
	REQUIRE_OK(bk_identity_terminal_key_ensure(path, &k1, &created));
	CHECK_EQ(created, 1);
	CHECK(k1.has_age);
	REQUIRE(stat(path, &st) == 0);
	CHECK_EQ(st.st_mode & 0777, 0600);
	REQUIRE_OK(bk_identity_terminal_key_ensure(path, &k2, &created));
	CHECK_EQ(created, 0);
	CHECK(memcmp(&k1, &k2, sizeof(k1)) == 0);
	REQUIRE(chmod(path, 0644) == 0);
	CHECK_EQ(bk_identity_terminal_key_ensure(path, &k2, &created), BK_EAUTH);
	CHECK(strstr(bk_error_last()->message, "chmod") != NULL);
}

static void test_catalog_identity(void)
{
	bk_catalog *cat = NULL;
	bk_identity_record got = {0};
	uint8_t b1[] = "bundle-one", b2[] = "bundle-two";
	REQUIRE_OK(bk_catalog_open(&cat, bk_test_path("depot.db")));
	CHECK_EQ(bk_catalog_identity_get(cat, "T-1", &got), BK_ENOTFOUND);
	bk_identity_record r = {.ticket = "T-1",
	                        .old_serial = "OLD1",
	                        .new_serial = "NEW1",
	                        .device_id = "dev-1",
	                        .owner = NULL,
	                        .bundle = b1,
	                        .bundle_len = sizeof(b1)};
	REQUIRE_OK(bk_catalog_identity_put(cat, &r));
	REQUIRE_OK(bk_catalog_identity_put(cat, &r));
	REQUIRE_OK(bk_catalog_identity_get(cat, "T-1", &got));
	CHECK_STR(got.new_serial, "NEW1");
	CHECK(got.owner == NULL);
	CHECK(got.bundle_len == sizeof(b1) && memcmp(got.bundle, b1, sizeof(b1)) == 0);
	CHECK(got.received != NULL);
	bk_identity_record_clear(&got);
	r.bundle = b2;
	r.owner = "owner-1";
	REQUIRE_OK(bk_catalog_identity_put(cat, &r));
	REQUIRE_OK(bk_catalog_identity_get(cat, "T-1", &got));
	CHECK(memcmp(got.bundle, b2, sizeof(b2)) == 0);
	CHECK_STR(got.owner, "owner-1");
	bk_identity_record_clear(&got);
	r.bundle_len = 0;
	CHECK_EQ(bk_catalog_identity_put(cat, &r), BK_EINVALID);
	bk_catalog_free(cat);
}

BK_RUN_TESTS(BK_TEST(test_header_swap), BK_TEST(test_bundle_verify), BK_TEST(test_terminal_keys),
             BK_TEST(test_catalog_identity))
