/* Backup files: statements, pack/verify/extract round trips, re-wrap,
 * hostile and damaged files, the store, the catalog and interrupted packs. */
#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include <libbackup/libbackup.h>
#include <libbackup/backup.h>

#include "crypto/age.h"
#include "crypto/cert.h"
#include "device/virtual/memgen.h"
#include "device/virtual/pki.h"
#include "libbackup/archive/archive.h"
#include "libbackup/backup/backup_internal.h"
#include "testlib.h"

/* --- The lab --- */

static char lab[4096];
static bk_config *cfg;

static int lab_setup(void)
{
	static const char *const no_env[] = {NULL};
	bk_config_opts o = BK_CONFIG_OPTS_INIT;
	char file[4200];
	bk_strlcpy(lab, bk_test_path("lab"), sizeof(lab));
	if (bk_vdev_pki_init(lab) != 0)
		return -1;
	snprintf(file, sizeof(file), "%s/%s", lab, BK_PKI_CONFIG);
	o.file = file;
	o.environ = no_env;
	bk_config_free(cfg);
	cfg = NULL;
	return bk_config_load(&cfg, &o);
}

static void lab_teardown(void)
{
	bk_config_free(cfg);
	cfg = NULL;
}

static const char *lab_file(const char *name)
{
	static char buf[4][4200];
	static int slot;
	char *p = buf[slot++ % 4];
	snprintf(p, 4200, "%s/%s", lab, name);
	return p;
}

static int put(const char *root, const char *rel, const void *data, size_t len)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	char *dir = bk_path_dirname(path);
	int rc = dir ? bk_mkdir_p(dir, 0755) : -1;
	bk__free(dir);
	if (rc)
		return rc;
	FILE *f = fopen(path, "wb");
	if (f == NULL)
		return -1;
	size_t n = len ? fwrite(data, 1, len, f) : 0;
	fclose(f);
	return n == len ? 0 : -1;
}

static int pack_to(const char *src, const char *out)
{
	bk_backup_pack_opts o = BK_BACKUP_PACK_OPTS_INIT;
	bk_backup_report r;
	o.serial = "ERS1-0042";
	o.model = "ERS-1000";
	o.hardware_revision = "B";
	o.firmware_version = "4.2.0";
	o.schema_version = 3;
	o.output = out;
	int rc = bk_backup_pack(cfg, src, &o, &r);
	if (rc == 0)
		bk_backup_report_clear(&r);
	return rc;
}

static int verify_path(const char *path, int quick, const char *identity)
{
	bk_backup *b = NULL;
	bk_backup_read_opts o = BK_BACKUP_READ_OPTS_INIT;
	o.quick = quick;
	o.identity = identity;
	int rc = bk_backup_open(&b, cfg, path);
	if (rc)
		return rc;
	rc = bk_backup_verify(b, &o, NULL);
	bk_backup_free(b);
	return rc;
}

static int extract_path(const char *path, const char *dir, const char *identity)
{
	bk_backup *b = NULL;
	bk_backup_read_opts o = BK_BACKUP_READ_OPTS_INIT;
	o.identity = identity;
	int rc = bk_backup_open(&b, cfg, path);
	if (rc)
		return rc;
	rc = bk_backup_extract(b, dir, &o, NULL);
	bk_backup_free(b);
	return rc;
}

static bool same_tree(const char *a, const char *b)
{
	bk_domain_digests da, db;
	if (bk_tree_digests(a, &da) != 0 || bk_tree_digests(b, &db) != 0)
		return false;
	return bk_domain_digests_equal(&da, &db);
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static bool exists(const char *p)
{
	struct stat st;
	return lstat(p, &st) == 0;
}

static int copy_with(const char *from, const char *to, const uint8_t *data, size_t len)
{
	char s_from[4200], s_to[4200];
	uint8_t *st = NULL;
	size_t st_len = 0;
	snprintf(s_from, sizeof(s_from), "%s.statement", from);
	snprintf(s_to, sizeof(s_to), "%s.statement", to);
	unlink(to);
	unlink(s_to);
	if (bk_file_write_atomic(to, data, len, 0600, 0))
		return -1;
	if (bk_file_read(s_from, 1 << 20, &st, &st_len))
		return -1;
	int rc = bk_file_write_atomic(s_to, st, st_len, 0644, 0);
	bk__free(st);
	return rc;
}

/* --- Statements --- */

static void make_info(bk_statement_info *si, const char *serial)
{
	memset(si, 0, sizeof(*si));
	si->backup_id = "0c3f2a58-7d41-4c1e-9a0b-3e5f6a7b8c9d";
	si->serial = serial;
	si->model = "ERS-1000";
	si->hardware_revision = "";
	si->firmware_version = "4.2.0";
	si->schema_version = 3;
	si->created = (int64_t)time(NULL);
	si->plaintext_size = 1234;
	si->payload_size = 1300;
	memset(si->payload_digest, 0xab, sizeof(si->payload_digest));
	memset(si->manifest_digest, 0xcd, sizeof(si->manifest_digest));
}

static void test_statement_terminal(void)
{
	bk_keyfile *key = NULL;
	bk_cert *cert = NULL;
	bk_statement *st = NULL;
	uint8_t *s = NULL;
	size_t len = 0;
	bk_statement_info si;
	REQUIRE(lab_setup() == 0);
	REQUIRE_OK(bk_keyfile_read(&key, lab_file(BK_PKI_TERMINAL_KEY)));
	REQUIRE_OK(bk_cert_read(&cert, lab_file(BK_PKI_TERMINAL_CERT)));
	make_info(&si, "ERS1-0042");
	REQUIRE_OK(bk_statement_sign(&s, &len, &si, cert, bk_keyfile_ed25519_secret(key)));
	CHECK(s[len - 1] == '\n');
	CHECK(memcmp(s, "{\"backup_id\":", 13) == 0);
	REQUIRE_OK(bk_statement_parse(&st, s, len));
	CHECK_OK(bk_statement_verify(st, cfg));
	bk_statement_view v;
	bk_statement_get(st, &v);
	CHECK_STR(v.serial, "ERS1-0042");
	CHECK_STR(v.producer_role, "terminal");
	CHECK_STR(v.producer, BK_PKI_TERMINAL_ID);
	CHECK_EQ(v.schema_version, 3);
	CHECK_EQ(v.payload_size, 1300);
	size_t blen;
	const uint8_t *b = bk_statement_bytes(st, &blen);
	CHECK(blen == len && memcmp(b, s, len) == 0);
	bk_statement_free(st);
	st = NULL;

	/* Not canonical: white space, no newline, key order, escapes. */
	uint8_t *alt = malloc(len + 8);
	memcpy(alt, s, len);
	CHECK(bk_statement_parse(&st, alt, len - 1) == BK_EVERIFY);
	CHECK_STR(bk_error_last()->reason, "statement-invalid");
	alt[len - 1] = ' ';
	alt[len] = '\n';
	CHECK(bk_statement_parse(&st, alt, len + 1) == BK_EVERIFY);
	memcpy(alt, "{ \"backup_id\":", 14);
	memcpy(alt + 14, s + 13, len - 13);
	CHECK(bk_statement_parse(&st, alt, len + 1) == BK_EVERIFY);
	char *sv = strstr((char *)s, "\"serial\":\"ERS1-0042\"");
	REQUIRE(sv != NULL);
	/* A flipped bit in a signed field parses but does not verify. */
	memcpy(alt, s, len);
	alt[(uint8_t *)sv - s + 15] ^= 0x01; /* ERS1-0042 -> ERS1-0043 */
	REQUIRE_OK(bk_statement_parse(&st, alt, len));
	CHECK(bk_statement_verify(st, cfg) == BK_EVERIFY);
	CHECK_STR(bk_error_last()->reason, "statement-invalid");
	bk_statement_free(st);
	st = NULL;
	/* An unknown key and a duplicate key. */
	char extra[] = "{\"a\":1}\n";
	CHECK(bk_statement_parse(&st, extra, strlen(extra)) == BK_EVERIFY);
	free(alt);

	/* Without the service CA, a terminal statement cannot be trusted. */
	REQUIRE_OK(bk_statement_parse(&st, s, len));
	REQUIRE_OK(bk_config_set(cfg, "trust.service_ca", lab_file("factory-ca.key.pub"), "test"));
	CHECK(bk_statement_verify(st, cfg) == BK_EVERIFY);
	bk_statement_free(st);
	bk__free(s);
	bk_cert_free(cert);
	bk_keyfile_free(key);
	lab_teardown();
}

static void test_statement_unit(void)
{
	bk_minisign_seckey *factory = NULL;
	bk_keyfile *key = NULL;
	bk_cert *cert = NULL;
	bk_statement *st = NULL;
	uint8_t *s = NULL;
	size_t len = 0;
	bk_statement_info si;
	REQUIRE(lab_setup() == 0);
	REQUIRE_OK(bk_minisign_seckey_read(&factory, lab_file(BK_PKI_FACTORY_CA), NULL));
	REQUIRE_OK(bk_keyfile_generate(&key, 1));
	bk_cert_params p;
	memset(&p, 0, sizeof(p));
	p.role = BK_CERT_ROLE_UNIT;
	p.serial = "ERS1-0007";
	p.model = "ERS-1000";
	p.hw_revision = "B";
	p.noise_key = bk_keyfile_noise_public(key);
	p.age_key = bk_keyfile_age_public(key);
	p.ed25519_key = bk_keyfile_ed25519_public(key);
	p.not_before = (int64_t)time(NULL) - 60;
	p.not_after = (int64_t)time(NULL) + 3600;
	REQUIRE_OK(bk_cert_issue(&cert, &p, factory));
	make_info(&si, "ERS1-0007");
	REQUIRE_OK(bk_statement_sign(&s, &len, &si, cert, bk_keyfile_ed25519_secret(key)));
	REQUIRE_OK(bk_statement_parse(&st, s, len));
	CHECK_OK(bk_statement_verify(st, cfg));
	bk_statement_free(st);
	st = NULL;
	bk__free(s);
	/* A unit may only speak for itself. */
	make_info(&si, "ERS1-0008");
	REQUIRE_OK(bk_statement_sign(&s, &len, &si, cert, bk_keyfile_ed25519_secret(key)));
	REQUIRE_OK(bk_statement_parse(&st, s, len));
	CHECK(bk_statement_verify(st, cfg) == BK_EVERIFY);
	bk_statement_free(st);
	st = NULL;
	bk__free(s);
	/* Signed before the certificate was valid. */
	make_info(&si, "ERS1-0007");
	si.created = p.not_before - 10;
	REQUIRE_OK(bk_statement_sign(&s, &len, &si, cert, bk_keyfile_ed25519_secret(key)));
	REQUIRE_OK(bk_statement_parse(&st, s, len));
	CHECK(bk_statement_verify(st, cfg) == BK_EVERIFY);
	CHECK(strstr(bk_error_last()->message, "certificate") != NULL);
	bk_statement_free(st);
	bk__free(s);
	/* Another key than the certificate's cannot sign. */
	bk_keyfile *other = NULL;
	REQUIRE_OK(bk_keyfile_generate(&other, 0));
	CHECK(bk_statement_sign(&s, &len, &si, cert, bk_keyfile_ed25519_secret(other)) != 0);
	bk_keyfile_free(other);
	bk_cert_free(cert);
	bk_keyfile_free(key);
	bk_minisign_seckey_free(factory);
	lab_teardown();
}

/* --- Round trips --- */

static void roundtrip(const char *src, const char *name)
{
	char file[4200], out[4200];
	snprintf(file, sizeof(file), "%s/%s.aibk", bk_test_tmpdir(), name);
	snprintf(out, sizeof(out), "%s/%s-out", bk_test_tmpdir(), name);
	REQUIRE_OK(pack_to(src, file));
	CHECK(exists(file));
	CHECK_OK(verify_path(file, 1, NULL));
	CHECK_OK(verify_path(file, 0, NULL));
	CHECK_OK(extract_path(file, out, NULL));
	CHECK(same_tree(src, out));
	/* Only the domains: no staging folder left. */
	DIR *d = opendir(out);
	REQUIRE(d != NULL);
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		CHECK(e->d_name[0] != '.' || !strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."));
	closedir(d);
}

static void test_roundtrip_empty(void)
{
	REQUIRE(lab_setup() == 0);
	const char *src = bk_test_path("empty");
	REQUIRE_OK(bk_vdev_memgen(src, 0, 1));
	roundtrip(src, "empty");
	lab_teardown();
}

static void test_roundtrip_one(void)
{
	REQUIRE(lab_setup() == 0);
	const char *src = bk_test_path("one");
	REQUIRE(put(src, "personality/state.json", "{\"mood\":\"happy\"}", 16) == 0);
	roundtrip(src, "one");
	lab_teardown();
}

static void test_roundtrip_many(void)
{
	REQUIRE(lab_setup() == 0);
	const char *src = bk_test_path("many");
	REQUIRE_OK(bk_vdev_memgen(src, 400 * 1024, 7));
	roundtrip(src, "many");
	lab_teardown();
}

static void test_roundtrip_unicode_and_empty_files(void)
{
	REQUIRE(lab_setup() == 0);
	const char *src = bk_test_path("uni");
	REQUIRE(put(src, "memories/people/Zoë.json", "{}", 2) == 0);
	REQUIRE(put(src, "memories/people/太郎.json", "{\"n\":1}", 7) == 0);
	REQUIRE(put(src, "photos/empty.jpg", "", 0) == 0);
	REQUIRE(put(src, "settings/empty", "", 0) == 0);
	REQUIRE(put(src, "map/🐕/room.bin", "xyz", 3) == 0);
	roundtrip(src, "uni");
	lab_teardown();
}

static void test_extract_domains_and_refusals(void)
{
	char file[4200], out[4200];
	REQUIRE(lab_setup() == 0);
	const char *src = bk_test_path("src");
	REQUIRE_OK(bk_vdev_memgen(src, 100 * 1024, 3));
	snprintf(file, sizeof(file), "%s/d.aibk", bk_test_tmpdir());
	REQUIRE_OK(pack_to(src, file));
	snprintf(out, sizeof(out), "%s/part-out", bk_test_tmpdir());
	bk_backup *b = NULL;
	bk_backup_read_opts o = BK_BACKUP_READ_OPTS_INIT;
	const char *doms[] = {"photos", "settings"};
	o.domains = doms;
	o.domain_count = 2;
	REQUIRE_OK(bk_backup_open(&b, cfg, file));
	CHECK_OK(bk_backup_extract(b, out, &o, NULL));
	CHECK_EQ(count_entries(out), 2);
	/* A non-empty destination is refused and left alone. */
	CHECK(bk_backup_extract(b, out, &o, NULL) == BK_EEXIST);
	CHECK_EQ(count_entries(out), 2);
	/* An unknown domain. */
	const char *bad[] = {"secrets"};
	o.domains = bad;
	o.domain_count = 1;
	snprintf(out, sizeof(out), "%s/bad-out", bk_test_tmpdir());
	CHECK(bk_backup_extract(b, out, &o, NULL) == BK_EUSER);
	CHECK(!exists(out));
	bk_backup_free(b);
	/* Refuses to overwrite on pack. */
	CHECK(pack_to(src, file) == BK_EEXIST);
	lab_teardown();
}

static void test_rewrap(void)
{
	char file[4200], re[4200], out[4200], idpath[4200];
	bk_age_identity *id = NULL;
	bk_secret *text = NULL;
	bk_age_recipient r;
	char rs[BK_AGE_RECIPIENT_STR_SIZE];
	REQUIRE(lab_setup() == 0);
	const char *src = bk_test_path("src");
	REQUIRE_OK(bk_vdev_memgen(src, 200 * 1024, 5));
	snprintf(file, sizeof(file), "%s/orig.aibk", bk_test_tmpdir());
	snprintf(re, sizeof(re), "%s/re.aibk", bk_test_tmpdir());
	snprintf(idpath, sizeof(idpath), "%s/new.identity", bk_test_tmpdir());
	REQUIRE_OK(pack_to(src, file));
	REQUIRE_OK(bk_age_identity_generate(&id));
	REQUIRE_OK(bk_age_identity_file_format(&text, id, 0));
	REQUIRE_OK(bk_file_write_atomic(idpath, bk_secret_data(text),
					strlen((char *)bk_secret_data(text)), 0600, 1));
	bk_age_identity_recipient(&r, id);
	bk_age_recipient_format(rs, &r);
	const char *rcpt[] = {rs};
	bk_backup *b = NULL;
	REQUIRE_OK(bk_backup_open(&b, cfg, file));
	bk_backup_report rep;
	REQUIRE_OK(bk_backup_rewrap(b, re, rcpt, 1, NULL, &rep));
	bk_backup_report_clear(&rep);
	/* Never over an existing file. */
	CHECK(bk_backup_rewrap(b, re, rcpt, 1, NULL, NULL) == BK_EEXIST);
	bk_backup_free(b);
	/* The payload bytes are identical. */
	bk_payload_digest a, c;
	REQUIRE_OK(bk_payload_digest_file(file, &a));
	REQUIRE_OK(bk_payload_digest_file(re, &c));
	CHECK(a.payload_len == c.payload_len && memcmp(a.digest, c.digest, 32) == 0);
	CHECK_OK(verify_path(re, 1, NULL));
	CHECK_OK(verify_path(re, 0, idpath));
	/* The old identity no longer opens it. */
	CHECK(verify_path(re, 0, NULL) == BK_EAUTH);
	CHECK_STR(bk_error_last()->reason, "no-identity-matched");
	snprintf(out, sizeof(out), "%s/old-out", bk_test_tmpdir());
	CHECK(extract_path(re, out, NULL) == BK_EAUTH);
	CHECK(!exists(out));
	snprintf(out, sizeof(out), "%s/new-out", bk_test_tmpdir());
	CHECK_OK(extract_path(re, out, idpath));
	CHECK(same_tree(src, out));
	bk_secret_free(text);
	bk_age_identity_free(id);
	lab_teardown();
}

/* --- Damaged and hostile files --- */

typedef struct damaged {
	char orig[4200];
	char bad[4200];
	char out[4200];
	uint8_t *data;
	size_t len;
	uint64_t header;
} damaged;

static int damaged_setup(damaged *d, size_t size)
{
	memset(d, 0, sizeof(*d));
	if (lab_setup() != 0)
		return -1;
	const char *src = bk_test_path("src");
	uint8_t *noise = malloc(size);
	randombytes_buf(noise, size);
	int rc = put(src, "photos/big.jpg", noise, size);
	free(noise);
	if (rc)
		return -1;
	snprintf(d->orig, sizeof(d->orig), "%s/orig.aibk", bk_test_tmpdir());
	snprintf(d->bad, sizeof(d->bad), "%s/bad.aibk", bk_test_tmpdir());
	snprintf(d->out, sizeof(d->out), "%s/out", bk_test_tmpdir());
	if (pack_to(src, d->orig) || bk_file_read(d->orig, 1 << 26, &d->data, &d->len))
		return -1;
	bk_payload_digest pd;
	if (bk_payload_digest_file(d->orig, &pd))
		return -1;
	d->header = pd.header_len;
	return 0;
}

/* The damaged copy fails full verification with `code`/`reason`, quick
 * verification with `qcode` (0: passes), and extraction leaves nothing. */
static void expect_failure(damaged *d, const uint8_t *data, size_t len, int code,
			   const char *reason, int qcode, const char *what)
{
	if (copy_with(d->orig, d->bad, data, len) != 0) {
		fprintf(stderr, "  %s: cannot write the damaged copy\n", what);
		bk_test_failures++;
		return;
	}
	int rc = verify_path(d->bad, 0, NULL);
	if (rc != code || (reason && strcmp(bk_error_last()->reason, reason) != 0)) {
		fprintf(stderr, "  %s: full verify gave %d (%s: %s), wanted %d (%s)\n", what, rc,
			bk_error_last()->reason, bk_error_last()->message, code,
			reason ? reason : "-");
		bk_test_failures++;
	}
	rc = verify_path(d->bad, 1, NULL);
	if (rc != qcode) {
		fprintf(stderr, "  %s: quick verify gave %d (%s), wanted %d\n", what, rc,
			bk_error_last()->message, qcode);
		bk_test_failures++;
	}
	int before = count_entries(bk_test_tmpdir());
	rc = extract_path(d->bad, d->out, NULL);
	if (rc != code || exists(d->out) || count_entries(bk_test_tmpdir()) != before) {
		fprintf(stderr, "  %s: extract gave %d, left output: %d\n", what, rc,
			exists(d->out));
		bk_test_failures++;
	}
}

/* The payload digest taken as bytes arrive (in pieces of any size) is the
 * digest of the file; a header never ended, or too long, is refused. */
static void test_payload_hasher(void)
{
	char file[4200];
	uint8_t *data = NULL;
	size_t len = 0;
	REQUIRE(lab_setup() == 0);
	const char *src = bk_test_path("src");
	REQUIRE_OK(bk_vdev_memgen(src, 300 * 1024, 9));
	snprintf(file, sizeof(file), "%s/h.aibk", bk_test_tmpdir());
	REQUIRE_OK(pack_to(src, file));
	REQUIRE_OK(bk_file_read(file, 64u << 20, &data, &len));
	bk_payload_digest want, got;
	uint64_t hlen = 0;
	REQUIRE_OK(bk_payload_digest_file(file, &want));
	REQUIRE_OK(bk_payload_header_file(file, &hlen));
	CHECK_EQ(hlen, want.header_len);
	const size_t steps[] = {1, 7, 64, 4093, 65536, 1u << 20};
	for (size_t k = 0; k < BK_ARRAY_LEN(steps); k++) {
		bk_payload_hasher ph;
		bk_payload_hasher_init(&ph);
		/* Pieces of varying size, so that the header ends inside one. */
		for (size_t off = 0, i = 0; off < len; i++) {
			size_t n = steps[k] + (i % 3);
			if (n > len - off)
				n = len - off;
			REQUIRE_OK(bk_payload_hasher_update(&ph, data + off, n));
			off += n;
		}
		memset(&got, 0, sizeof(got));
		CHECK_OK(bk_payload_hasher_final(&ph, &got));
		CHECK_EQ(got.header_len, want.header_len);
		CHECK_EQ(got.payload_len, want.payload_len);
		CHECK(memcmp(got.digest, want.digest, sizeof(got.digest)) == 0);
	}
	/* The header alone, its MAC line cut: no digest. */
	bk_payload_hasher ph;
	bk_payload_hasher_init(&ph);
	CHECK_OK(bk_payload_hasher_update(&ph, data, (size_t)want.header_len - 2));
	CHECK_EQ(bk_payload_hasher_final(&ph, &got), BK_EFORMAT);
	CHECK_STR(bk_error_last()->reason, "header-malformed");
	/* A "header" of 300 KiB without a MAC line: refused while it streams. */
	uint8_t *junk = malloc(300 * 1024);
	REQUIRE(junk != NULL);
	memset(junk, 'a', 300 * 1024);
	bk_payload_hasher_init(&ph);
	CHECK_EQ(bk_payload_hasher_update(&ph, junk, 300 * 1024), BK_EFORMAT);
	CHECK_STR(bk_error_last()->reason, "header-malformed");
	/* Not an age file: the format check from the file says so. */
	snprintf(file, sizeof(file), "%s/junk.aibk", bk_test_tmpdir());
	REQUIRE_OK(bk_file_write_atomic(file, junk, 4096, 0600, 0));
	CHECK(bk_payload_header_file(file, &hlen) != 0);
	free(junk);
	bk__free(data);
}

static void test_truncation(void)
{
	damaged d;
	REQUIRE(damaged_setup(&d, 5 * 65536 + 1000) == 0);
	uint64_t payload = d.len - d.header;
	uint64_t chunks = (payload - BK_AGE_NONCE_LEN + BK_AGE_ENC_CHUNK_SIZE - 1) /
			  BK_AGE_ENC_CHUNK_SIZE;
	REQUIRE(chunks >= 4);
	/* At every chunk boundary (the nonce end included). */
	for (uint64_t k = 0; k < chunks; k++) {
		size_t cut = (size_t)(d.header + bk_age_chunk_offset(k));
		char what[64];
		snprintf(what, sizeof(what), "cut at chunk %llu", (unsigned long long)k);
		expect_failure(&d, d.data, cut, BK_EVERIFY, "payload-truncated", BK_EVERIFY, what);
	}
	/* At random offsets, inside the header too. */
	for (int i = 0; i < 12; i++) {
		size_t cut = (size_t)randombytes_uniform((uint32_t)d.len - 1) + 1;
		if (i == 0)
			cut = (size_t)d.header / 2;
		char what[64];
		snprintf(what, sizeof(what), "cut at %zu", cut);
		if (cut < d.header)
			expect_failure(&d, d.data, cut, BK_EFORMAT, "header-malformed", BK_EFORMAT,
				       what);
		else
			expect_failure(&d, d.data, cut, BK_EVERIFY, "payload-truncated",
				       BK_EVERIFY, what);
	}
	/* The full check names truncation precisely. */
	size_t cut = (size_t)(d.header + bk_age_chunk_offset(2));
	REQUIRE(copy_with(d.orig, d.bad, d.data, cut) == 0);
	CHECK(verify_path(d.bad, 0, NULL) == BK_EVERIFY);
	CHECK_STR(bk_error_last()->reason, "payload-truncated");
	CHECK(verify_path(d.bad, 1, NULL) == BK_EVERIFY);
	CHECK_STR(bk_error_last()->reason, "payload-truncated");
	bk__free(d.data);
	lab_teardown();
}

static void test_flipped_bits(void)
{
	damaged d;
	REQUIRE(damaged_setup(&d, 3 * 65536) == 0);
	uint8_t *c = malloc(d.len);
	/* The header MAC. */
	memcpy(c, d.data, d.len);
	c[d.header - 10] ^= 0x01;
	c[d.header - 10] = c[d.header - 10] == 'A' ? 'B' : 'A';
	expect_failure(&d, c, d.len, BK_EVERIFY, "header-mac", 0, "header mac");
	/* A payload byte in each region: nonce, first chunk, last chunk. */
	size_t spots[] = {(size_t)d.header + 3, (size_t)d.header + 100, d.len - 5};
	for (size_t i = 0; i < BK_ARRAY_LEN(spots); i++) {
		memcpy(c, d.data, d.len);
		c[spots[i]] ^= 0x20;
		expect_failure(&d, c, d.len, BK_EVERIFY, "payload-corrupt", BK_EVERIFY, "payload");
	}
	/* Swapped chunks (same size: chunks 0 and 1). */
	memcpy(c, d.data, d.len);
	size_t o0 = (size_t)(d.header + bk_age_chunk_offset(0));
	size_t o1 = (size_t)(d.header + bk_age_chunk_offset(1));
	memcpy(c + o0, d.data + o1, BK_AGE_ENC_CHUNK_SIZE);
	memcpy(c + o1, d.data + o0, BK_AGE_ENC_CHUNK_SIZE);
	expect_failure(&d, c, d.len, BK_EVERIFY, "payload-corrupt", BK_EVERIFY, "swapped");
	/* Data after the final chunk. */
	uint8_t *longer = malloc(d.len + 16);
	memcpy(longer, d.data, d.len);
	memset(longer + d.len, 0, 16);
	expect_failure(&d, longer, d.len + 16, BK_EVERIFY, "payload-corrupt", BK_EVERIFY,
		       "trailing");
	free(longer);
	/* The statement. */
	REQUIRE(copy_with(d.orig, d.bad, d.data, d.len) == 0);
	char sp[4200];
	uint8_t *st = NULL;
	size_t st_len = 0;
	snprintf(sp, sizeof(sp), "%s.statement", d.bad);
	REQUIRE_OK(bk_file_read(sp, 1 << 20, &st, &st_len));
	char *pd = strstr((char *)st, "\"payload_blake2b\":\"");
	REQUIRE(pd != NULL);
	pd[20] = pd[20] == '0' ? '1' : '0';
	REQUIRE_OK(bk_file_write_atomic(sp, st, st_len, 0644, 0));
	CHECK(verify_path(d.bad, 1, NULL) == BK_EVERIFY);
	CHECK_STR(bk_error_last()->reason, "statement-invalid");
	CHECK(verify_path(d.bad, 0, NULL) == BK_EVERIFY);
	CHECK_STR(bk_error_last()->reason, "statement-invalid");
	CHECK(extract_path(d.bad, d.out, NULL) == BK_EVERIFY);
	CHECK(!exists(d.out));
	st[3] = 'X'; /* not even parsable */
	REQUIRE_OK(bk_file_write_atomic(sp, st, st_len, 0644, 0));
	CHECK(verify_path(d.bad, 1, NULL) == BK_EVERIFY);
	CHECK_STR(bk_error_last()->reason, "statement-invalid");
	unlink(sp);
	CHECK(verify_path(d.bad, 1, NULL) == BK_EVERIFY);
	CHECK_STR(bk_error_last()->reason, "statement-missing");
	bk__free(st);

	/* A statement signed by the terminal over the right payload but
	 * another manifest digest: the full check catches the manifest. */
	bk_statement *orig = NULL;
	bk_keyfile *key = NULL;
	bk_cert *cert = NULL;
	char osp[4200];
	snprintf(osp, sizeof(osp), "%s.statement", d.orig);
	REQUIRE_OK(bk_statement_read(&orig, osp));
	REQUIRE_OK(bk_keyfile_read(&key, lab_file(BK_PKI_TERMINAL_KEY)));
	REQUIRE_OK(bk_cert_read(&cert, lab_file(BK_PKI_TERMINAL_CERT)));
	bk_statement_info si;
	bk_statement_info_get(orig, &si);
	si.manifest_digest[0] ^= 1;
	uint8_t *ns = NULL;
	size_t ns_len = 0;
	REQUIRE_OK(bk_statement_sign(&ns, &ns_len, &si, cert, bk_keyfile_ed25519_secret(key)));
	REQUIRE_OK(bk_file_write_atomic(sp, ns, ns_len, 0644, 0));
	CHECK_OK(verify_path(d.bad, 1, NULL));
	CHECK(verify_path(d.bad, 0, NULL) == BK_EVERIFY);
	CHECK_STR(bk_error_last()->reason, "statement-mismatch");
	CHECK(extract_path(d.bad, d.out, NULL) == BK_EVERIFY);
	CHECK(!exists(d.out));
	bk__free(ns);
	bk_cert_free(cert);
	bk_keyfile_free(key);
	bk_statement_free(orig);
	free(c);
	bk__free(d.data);
	lab_teardown();
}

static void test_wrong_identity(void)
{
	damaged d;
	REQUIRE(damaged_setup(&d, 1000) == 0);
	CHECK(verify_path(d.orig, 0, lab_file(BK_PKI_ESCROW_IDENTITY)) == BK_EAUTH);
	CHECK_STR(bk_error_last()->reason, "no-identity-matched");
	CHECK(extract_path(d.orig, d.out, lab_file(BK_PKI_ESCROW_IDENTITY)) == BK_EAUTH);
	CHECK(!exists(d.out));
	bk__free(d.data);
	lab_teardown();
}

/* --- Store and catalog --- */

static int pack_store(const char *src, char id[40])
{
	bk_backup_pack_opts o = BK_BACKUP_PACK_OPTS_INIT;
	bk_backup_report r;
	o.serial = "ERS1-0042";
	o.model = "ERS-1000";
	o.firmware_version = "4.2.0";
	int rc = bk_backup_pack(cfg, src, &o, &r);
	if (rc == 0) {
		if (id)
			bk_strlcpy(id, r.id, 40);
		bk_backup_report_clear(&r);
	}
	return rc;
}

static size_t catalog_count(void)
{
	bk_catalog *cat = NULL;
	bk_backup_record *rows = NULL;
	size_t n = 0;
	if (bk_backup_catalog_open(&cat, cfg, 1) != 0)
		return (size_t)-1;
	if (bk_catalog_backup_list(cat, NULL, &rows, &n) != 0)
		n = (size_t)-1;
	bk_catalog_backup_list_free(rows, n == (size_t)-1 ? 0 : n);
	bk_catalog_free(cat);
	return n;
}

static void test_store_and_catalog(void)
{
	char id[40];
	REQUIRE(lab_setup() == 0);
	const char *src = bk_test_path("src");
	REQUIRE_OK(bk_vdev_memgen(src, 50 * 1024, 9));
	REQUIRE_OK(pack_store(src, id));
	CHECK_EQ(catalog_count(), 1);
	/* By id and by prefix. */
	bk_backup *b = NULL;
	char prefix[9];
	memcpy(prefix, id, 8);
	prefix[8] = '\0';
	REQUIRE_OK(bk_backup_open(&b, cfg, prefix));
	CHECK_STR(bk_backup_catalog_id(b), id);
	bk_backup_report rep;
	CHECK_OK(bk_backup_verify(b, NULL, &rep));
	CHECK(rep.recorded);
	bk_backup_report_clear(&rep);
	bk_backup_free(b);
	b = NULL;
	CHECK(bk_backup_open(&b, cfg, "0123") == BK_ENOTFOUND);
	/* The verification is in the catalog. */
	bk_catalog *cat = NULL;
	bk_backup_record r;
	REQUIRE_OK(bk_backup_catalog_open(&cat, cfg, 0));
	REQUIRE_OK(bk_catalog_backup_get(cat, id, &r));
	CHECK_STR(r.verified, "full");
	/* The store path opens as the catalog's copy too. */
	REQUIRE_OK(bk_backup_open(&b, cfg, r.location));
	CHECK_STR(bk_backup_catalog_id(b), id);
	bk_backup_free(b);
	/* Held backups stay. */
	REQUIRE_OK(bk_catalog_backup_hold(cat, id, "job:test"));
	CHECK(bk_backup_remove(cfg, id, NULL) == BK_EBUSY);
	CHECK(exists(r.location));
	REQUIRE_OK(bk_catalog_backup_release(cat, id, "job:test"));
	/* gc: a stale part, an orphan file, a missing file. */
	char stale[4200], orphan[4200];
	snprintf(stale, sizeof(stale), "%s/backups/11111111-2222-4333-8444-555555555555.aibk.part",
		 lab);
	snprintf(orphan, sizeof(orphan), "%s/backups/66666666-7777-4888-8999-000000000000.aibk",
		 lab);
	REQUIRE(put("/", stale, "x", 1) == 0);
	REQUIRE(put("/", orphan, "y", 1) == 0);
	bk_backup_gc_report g;
	REQUIRE_OK(bk_backup_gc(cfg, &g));
	CHECK_EQ(g.removed_part_count, 1);
	CHECK_EQ(g.orphan_file_count, 1);
	CHECK_EQ(g.missing_file_count, 0);
	CHECK(!exists(stale));
	CHECK(exists(orphan));
	bk_backup_gc_report_clear(&g);
	/* A part someone holds stays. */
	int fd = -1;
	REQUIRE_OK(bk_backup__create_locked(stale, &fd));
	REQUIRE_OK(bk_backup_gc(cfg, &g));
	CHECK_EQ(g.busy_part_count, 1);
	CHECK(exists(stale));
	bk_backup_gc_report_clear(&g);
	CHECK(bk_backup__create_locked(stale, &fd) == BK_EBUSY || true);
	close(fd);
	unlink(stale);
	unlink(orphan);
	/* Remove: row and files. */
	CHECK_OK(bk_backup_remove(cfg, id, NULL));
	CHECK(!exists(r.location));
	CHECK_EQ(catalog_count(), 0);
	CHECK(bk_backup_remove(cfg, id, NULL) == BK_ENOTFOUND);
	bk_backup_record_clear(&r);
	bk_catalog_free(cat);
	lab_teardown();
}

static void test_import(void)
{
	char file[4200];
	REQUIRE(lab_setup() == 0);
	const char *src = bk_test_path("src");
	REQUIRE_OK(bk_vdev_memgen(src, 30 * 1024, 11));
	snprintf(file, sizeof(file), "%s/x.aibk", bk_test_tmpdir());
	REQUIRE_OK(pack_to(src, file));
	bk_backup_report r;
	REQUIRE_OK(bk_backup_import(cfg, file, &r));
	CHECK(r.in_catalog);
	CHECK(exists(r.location));
	bk_backup_report_clear(&r);
	CHECK_OK(bk_backup_import(cfg, file, NULL)); /* again: fine */
	CHECK_EQ(catalog_count(), 1);
	lab_teardown();
}

/* Interrupted packs: the child dies at a stage; nothing is listed after. */
static const char *kill_stage;
static void kill_at(const char *stage)
{
	if (kill_stage && strcmp(stage, kill_stage) == 0)
		raise(SIGKILL);
}

static void interrupted(const char *stage)
{
	REQUIRE(lab_setup() == 0);
	const char *src = bk_test_path("src");
	REQUIRE_OK(bk_vdev_memgen(src, 100 * 1024, 13));
	fflush(NULL);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		kill_stage = stage;
		bk_backup__set_hook(kill_at);
		pack_store(src, NULL);
		_exit(0);
	}
	int status = 0;
	waitpid(pid, &status, 0);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	CHECK_EQ(catalog_count(), 0);
	/* No backup under its final name without a row... */
	bk_store *store = NULL;
	bk_store_item *items = NULL;
	size_t n = 0;
	REQUIRE_OK(bk_store_open_config(&store, cfg));
	REQUIRE_OK(bk_store_list(store, &items, &n));
	int finals = 0, parts = 0;
	for (size_t i = 0; i < n; i++) {
		finals += items[i].kind == BK_STORE_ITEM_BACKUP;
		parts += items[i].kind == BK_STORE_ITEM_PART;
	}
	if (strcmp(stage, "before-rename") == 0) {
		CHECK_EQ(finals, 0);
		CHECK(parts >= 1);
	} else {
		CHECK_EQ(finals, 1); /* whole, unlisted: gc reports it */
	}
	bk_store_list_free(items, n);
	bk_store_free(store);
	/* gc cleans the leftovers, then a new pack works. */
	bk_backup_gc_report g;
	REQUIRE_OK(bk_backup_gc(cfg, &g));
	if (strcmp(stage, "before-rename") == 0)
		CHECK(g.removed_part_count >= 1);
	else
		CHECK_EQ(g.orphan_file_count, 1);
	bk_backup_gc_report_clear(&g);
	CHECK_OK(pack_store(src, NULL));
	CHECK_EQ(catalog_count(), 1);
	lab_teardown();
}

static void test_interrupted_before_rename(void)
{
	interrupted("before-rename");
}

static void test_interrupted_before_commit(void)
{
	interrupted("before-commit");
}

BK_RUN_TESTS(BK_TEST(test_statement_terminal), BK_TEST(test_statement_unit),
	     BK_TEST(test_roundtrip_empty), BK_TEST(test_roundtrip_one),
	     BK_TEST(test_roundtrip_many), BK_TEST(test_roundtrip_unicode_and_empty_files),
	     BK_TEST(test_extract_domains_and_refusals), BK_TEST(test_rewrap), BK_TEST(test_payload_hasher),
	     BK_TEST(test_truncation), BK_TEST(test_flipped_bits), BK_TEST(test_wrong_identity),
	     BK_TEST(test_store_and_catalog), BK_TEST(test_import),
	     BK_TEST(test_interrupted_before_rename), BK_TEST(test_interrupted_before_commit))
