/* crypto/cert: aibo-cert/1 certificates, identity bundles, key files. */
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "crypto/cert.h"
#include "libbackup/util/util.h"
#include "testlib.h"

#define NB 1700000000
#define NA 2000000000

static bool reason_is(const char *r)
{
	const char *got = bk_error_last()->reason;
	if (got == NULL || strcmp(got, r) != 0) {
		fprintf(stderr, "  reason %s, expected %s (%s)\n", got ? got : "(null)", r,
		        bk_error_last()->message);
		return false;
	}
	return true;
}

typedef struct fixture {
	bk_minisign_seckey *factory, *service;
	bk_minisign_pubkey factory_pk, service_pk;
	bk_keyfile *unit_keys, *term_keys;
} fixture;

static int fixture_init(fixture *f)
{
	memset(f, 0, sizeof(*f));
	int rc = bk_minisign_keygen(&f->factory);
	if (rc == 0)
		rc = bk_minisign_keygen(&f->service);
	if (rc == 0)
		rc = bk_keyfile_generate(&f->unit_keys, 1);
	if (rc == 0)
		rc = bk_keyfile_generate(&f->term_keys, 0);
	if (rc == 0) {
		bk_minisign_seckey_pubkey(f->factory, &f->factory_pk);
		bk_minisign_seckey_pubkey(f->service, &f->service_pk);
	}
	return rc;
}

static void fixture_free(fixture *f)
{
	bk_minisign_seckey_free(f->factory);
	bk_minisign_seckey_free(f->service);
	bk_keyfile_free(f->unit_keys);
	bk_keyfile_free(f->term_keys);
}

static bk_cert_params unit_params(const fixture *f)
{
	bk_cert_params p = {0};
	p.role = BK_CERT_ROLE_UNIT;
	p.serial = "ERS1000-0012345";
	p.model = "ERS-1000";
	p.hw_revision = "B2";
	p.noise_key = bk_keyfile_noise_public(f->unit_keys);
	p.age_key = bk_keyfile_age_public(f->unit_keys);
	p.ed25519_key = bk_keyfile_ed25519_public(f->unit_keys);
	p.not_before = NB;
	p.not_after = NA;
	return p;
}

static bk_cert_params terminal_params(const fixture *f)
{
	bk_cert_params p = {0};
	p.role = BK_CERT_ROLE_TERMINAL;
	p.terminal_id = "depot-tokyo-07";
	p.noise_key = bk_keyfile_noise_public(f->term_keys);
	p.ed25519_key = bk_keyfile_ed25519_public(f->term_keys);
	p.not_before = NB;
	p.not_after = NA;
	return p;
}

static void test_unit_issue_parse_verify(void)
{
	fixture f;
	bk_cert *c = NULL, *c2 = NULL, *c3 = NULL;
	char *armor = NULL;
	size_t alen, blen, blen2;
	REQUIRE_OK(fixture_init(&f));
	bk_cert_params p = unit_params(&f);
	REQUIRE_OK(bk_cert_issue(&c, &p, f.factory));

	CHECK_EQ(bk_cert_role_get(c), BK_CERT_ROLE_UNIT);
	CHECK_STR(bk_cert_role_name(bk_cert_role_get(c)), "unit");
	CHECK_STR(bk_cert_serial(c), "ERS1000-0012345");
	CHECK_STR(bk_cert_model(c), "ERS-1000");
	CHECK_STR(bk_cert_hw_revision(c), "B2");
	CHECK(bk_cert_terminal_id(c) == NULL);
	CHECK(bk_cert_device_id(c) == NULL);
	CHECK(memcmp(bk_cert_noise_key(c), bk_keyfile_noise_public(f.unit_keys), 32) == 0);
	CHECK(memcmp(bk_cert_age_key(c), bk_keyfile_age_public(f.unit_keys), 32) == 0);
	CHECK(memcmp(bk_cert_ed25519_key(c), bk_keyfile_ed25519_public(f.unit_keys), 32) == 0);
	CHECK(memcmp(bk_cert_issuer_key_id(c), f.factory_pk.key_id, 8) == 0);
	CHECK_EQ(bk_cert_not_before(c), NB);
	CHECK_EQ(bk_cert_not_after(c), NA);

	CHECK_OK(bk_cert_verify(c, &f.factory_pk, 1, BK_CERT_ROLE_UNIT, NB + 100));
	CHECK_OK(bk_cert_check_noise_key(c, bk_keyfile_noise_public(f.unit_keys)));
	CHECK_OK(bk_cert_check_ed25519_key(c, bk_keyfile_ed25519_public(f.unit_keys)));
	CHECK_OK(bk_cert_check_subject(c, "ERS1000-0012345"));

	/* Armor and binary forms both parse back to the same bytes. */
	REQUIRE_OK(bk_cert_armor(&armor, &alen, c));
	CHECK(strncmp(armor, "-----BEGIN AIBO CERTIFICATE-----\n", 33) == 0);
	CHECK(strstr(armor, "\n-----END AIBO CERTIFICATE-----\n") != NULL);
	REQUIRE_OK(bk_cert_parse(&c2, (const uint8_t *)armor, alen));
	const uint8_t *b1 = bk_cert_bytes(c, &blen);
	const uint8_t *b2 = bk_cert_bytes(c2, &blen2);
	CHECK_EQ(blen, blen2);
	CHECK(memcmp(b1, b2, blen) == 0);
	CHECK(memcmp(b1, "aibo-cert/1", 12) == 0);
	REQUIRE_OK(bk_cert_parse(&c3, b1, blen));
	CHECK_OK(bk_cert_verify(c3, &f.factory_pk, 1, BK_CERT_ROLE_UNIT, NB));
	uint8_t fp1[32], fp2[32];
	bk_cert_fingerprint(c, fp1);
	bk_cert_fingerprint(c3, fp2);
	CHECK(memcmp(fp1, fp2, 32) == 0);

	/* Files. */
	const char *path = bk_test_path("unit.crt");
	CHECK_OK(bk_cert_write(path, c));
	bk_cert_free(c3);
	c3 = NULL;
	CHECK_OK(bk_cert_read(&c3, path));
	CHECK(c3 && bk_cert_verify(c3, &f.factory_pk, 1, BK_CERT_ROLE_UNIT, NB) == 0);

	bk__free(armor);
	bk_cert_free(c);
	bk_cert_free(c2);
	bk_cert_free(c3);
	fixture_free(&f);
}

static void test_terminal_and_identity(void)
{
	fixture f;
	bk_cert *t = NULL, *t2 = NULL, *id = NULL;
	REQUIRE_OK(fixture_init(&f));
	bk_cert_params p = terminal_params(&f);
	REQUIRE_OK(bk_cert_issue(&t, &p, f.service));
	CHECK_STR(bk_cert_terminal_id(t), "depot-tokyo-07");
	CHECK(bk_cert_serial(t) == NULL);
	CHECK(bk_cert_age_key(t) == NULL);
	CHECK_OK(bk_cert_verify(t, &f.service_pk, 1, BK_CERT_ROLE_TERMINAL, NB));
	CHECK_OK(bk_cert_check_subject(t, "depot-tokyo-07"));
	/* With the optional age key. */
	uint8_t age[32];
	memset(age, 7, sizeof(age));
	p.age_key = age;
	REQUIRE_OK(bk_cert_issue(&t2, &p, f.service));
	CHECK(bk_cert_age_key(t2) && memcmp(bk_cert_age_key(t2), age, 32) == 0);

	/* The identity bundle, from the service CA. */
	bk_cert_params ip = {0};
	ip.role = BK_CERT_ROLE_IDENTITY;
	ip.serial = "ERS1000-0099999";
	ip.old_serial = "ERS1000-0012345";
	ip.device_id = "dev-4f9a2c";
	ip.owner_binding = "owner:8812:bind-77";
	ip.ed25519_key = bk_keyfile_ed25519_public(f.unit_keys);
	ip.issued = NB + 5;
	ip.not_before = NB;
	ip.not_after = NB + 86400;
	REQUIRE_OK(bk_cert_issue(&id, &ip, f.service));
	CHECK_STR(bk_cert_role_name(bk_cert_role_get(id)), "identity");
	CHECK_STR(bk_cert_serial(id), "ERS1000-0099999");
	CHECK_STR(bk_cert_old_serial(id), "ERS1000-0012345");
	CHECK_STR(bk_cert_device_id(id), "dev-4f9a2c");
	CHECK_STR(bk_cert_owner_binding(id), "owner:8812:bind-77");
	CHECK_EQ(bk_cert_issued(id), NB + 5);
	CHECK(bk_cert_noise_key(id) == NULL);
	CHECK_OK(bk_cert_verify(id, &f.service_pk, 1, BK_CERT_ROLE_IDENTITY, NB + 10));
	CHECK_OK(bk_cert_check_subject(id, "ERS1000-0099999"));
	CHECK_OK(bk_cert_check_ed25519_key(id, bk_keyfile_ed25519_public(f.unit_keys)));
	CHECK_EQ(bk_cert_check_noise_key(id, bk_keyfile_noise_public(f.unit_keys)), BK_EAUTH);
	CHECK(reason_is("key-mismatch"));

	bk_cert_free(t);
	bk_cert_free(t2);
	bk_cert_free(id);
	fixture_free(&f);
}

static void test_verify_failures(void)
{
	fixture f;
	bk_cert *c = NULL;
	bk_minisign_pubkey cas[2];
	REQUIRE_OK(fixture_init(&f));
	bk_cert_params p = unit_params(&f);
	REQUIRE_OK(bk_cert_issue(&c, &p, f.factory));

	/* Validity bounds are inclusive. */
	CHECK_OK(bk_cert_verify(c, &f.factory_pk, 1, BK_CERT_ROLE_UNIT, NB));
	CHECK_OK(bk_cert_verify(c, &f.factory_pk, 1, BK_CERT_ROLE_UNIT, NA));
	CHECK_EQ(bk_cert_verify(c, &f.factory_pk, 1, BK_CERT_ROLE_UNIT, NA + 1), BK_EAUTH);
	CHECK(reason_is("expired"));
	CHECK_EQ(bk_cert_verify(c, &f.factory_pk, 1, BK_CERT_ROLE_UNIT, NB - 1), BK_EAUTH);
	CHECK(reason_is("not-yet-valid"));

	/* Wrong role. */
	CHECK_EQ(bk_cert_verify(c, &f.factory_pk, 1, BK_CERT_ROLE_TERMINAL, NB), BK_EAUTH);
	CHECK(reason_is("wrong-role"));
	CHECK_EQ(bk_cert_verify(c, &f.factory_pk, 1, BK_CERT_ROLE_IDENTITY, NB), BK_EAUTH);
	CHECK(reason_is("wrong-role"));

	/* Wrong issuer: only the service CA is trusted. */
	CHECK_EQ(bk_cert_verify(c, &f.service_pk, 1, BK_CERT_ROLE_UNIT, NB), BK_EAUTH);
	CHECK(reason_is("unknown-ca"));
	CHECK_EQ(bk_cert_verify(c, NULL, 0, BK_CERT_ROLE_UNIT, NB), BK_EAUTH);
	CHECK(reason_is("unknown-ca"));
	/* Several CAs: the right one is found. */
	cas[0] = f.service_pk;
	cas[1] = f.factory_pk;
	CHECK_OK(bk_cert_verify(c, cas, 2, BK_CERT_ROLE_UNIT, NB));
	/* A key claiming the factory CA's key id. */
	cas[1] = f.service_pk;
	memcpy(cas[1].key_id, f.factory_pk.key_id, 8);
	CHECK_EQ(bk_cert_verify(c, cas, 2, BK_CERT_ROLE_UNIT, NB), BK_EAUTH);
	CHECK(reason_is("bad-signature"));
	/* A forged, expired certificate reports its signature, not its age. */
	CHECK_EQ(bk_cert_verify(c, cas, 2, BK_CERT_ROLE_UNIT, NA + 10), BK_EAUTH);
	CHECK(reason_is("bad-signature"));

	/* Key and subject mismatches. */
	CHECK_EQ(bk_cert_check_noise_key(c, bk_keyfile_noise_public(f.term_keys)), BK_EAUTH);
	CHECK(reason_is("key-mismatch"));
	/* The age key is not the Noise key. */
	CHECK_EQ(bk_cert_check_noise_key(c, bk_keyfile_age_public(f.unit_keys)), BK_EAUTH);
	CHECK_EQ(bk_cert_check_ed25519_key(c, bk_keyfile_ed25519_public(f.term_keys)), BK_EAUTH);
	CHECK_EQ(bk_cert_check_subject(c, "ERS1000-0012346"), BK_EAUTH);
	CHECK(reason_is("subject-mismatch"));
	CHECK_EQ(bk_cert_check_subject(c, "ERS1000-001234"), BK_EAUTH);

	bk_cert_free(c);
	fixture_free(&f);
}

static void test_issue_refuses_bad_params(void)
{
	fixture f;
	bk_cert *c = NULL;
	REQUIRE_OK(fixture_init(&f));
	bk_cert_params p = unit_params(&f);
	p.age_key = NULL; /* a unit needs its age key */
	CHECK_EQ(bk_cert_issue(&c, &p, f.factory), BK_EINVALID);
	CHECK(strstr(bk_error_last()->message, "age key") != NULL);
	p = unit_params(&f);
	p.terminal_id = "x"; /* not for a unit */
	CHECK_EQ(bk_cert_issue(&c, &p, f.factory), BK_EINVALID);
	p = unit_params(&f);
	p.serial = "ERS 1000"; /* space */
	CHECK_EQ(bk_cert_issue(&c, &p, f.factory), BK_EINVALID);
	p = unit_params(&f);
	p.serial = "";
	CHECK_EQ(bk_cert_issue(&c, &p, f.factory), BK_EINVALID);
	char longname[BK_CERT_NAME_MAX + 2];
	memset(longname, 'A', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	p.serial = longname;
	CHECK_EQ(bk_cert_issue(&c, &p, f.factory), BK_EINVALID);
	longname[BK_CERT_NAME_MAX] = '\0';
	CHECK_OK(bk_cert_issue(&c, &p, f.factory));
	bk_cert_free(c);
	c = NULL;
	p = unit_params(&f);
	p.not_after = p.not_before - 1;
	CHECK_EQ(bk_cert_issue(&c, &p, f.factory), BK_EINVALID);
	p.not_before = -5;
	CHECK_EQ(bk_cert_issue(&c, &p, f.factory), BK_EINVALID);
	p = unit_params(&f);
	p.role = (bk_cert_role)9;
	CHECK_EQ(bk_cert_issue(&c, &p, f.factory), BK_EINVALID);
	CHECK(c == NULL);
	fixture_free(&f);
}

/* --- Hand-made documents, signed by the CA, so only the structure is wrong. */

static void put_f(bk_buf *b, uint8_t tag, const void *v, size_t n)
{
	bk_buf_put_u8(b, tag);
	bk_buf_put_u16be(b, (uint16_t)n);
	bk_buf_put(b, v, n);
}

static void put_t(bk_buf *b, uint8_t tag, uint64_t t)
{
	uint8_t v[8];
	bk_put_u64be(v, t);
	put_f(b, tag, v, 8);
}

enum {
	ORDER,
	DUP,
	UNKNOWN,
	MAGIC,
	LONGSTR,
	SPACE,
	KEYLEN,
	ROLE,
	MISSING,
	FORBIDDEN,
	TRAILING,
	BIGTIME,
	BACKWARDS,
	NOSIG,
	SIGLEN,
	VALID
};

static void build(bk_buf *b, const fixture *f, int variant)
{
	uint8_t key[32], role = variant == ROLE ? 4 : 2;
	memset(key, 0x33, sizeof(key));
	bk_buf_put(b, variant == MAGIC ? "aibo-cert/2" : "aibo-cert/1", 12);
	put_f(b, 0x01, &role, 1);
	if (variant == FORBIDDEN)
		put_f(b, 0x02, "ERS", 3);
	if (variant == LONGSTR) {
		char s[BK_CERT_NAME_MAX + 1];
		memset(s, 'x', sizeof(s));
		put_f(b, 0x05, s, sizeof(s));
	} else {
		put_f(b, 0x05, variant == SPACE ? "T 1" : "T-1", 3);
	}
	if (variant == DUP)
		put_f(b, 0x05, "T-2", 3);
	if (variant == ORDER)
		put_f(b, 0x12, key, 32);
	put_f(b, 0x10, key, variant == KEYLEN ? 31 : 32);
	if (variant == UNKNOWN)
		put_f(b, 0x11 + 0x2f, key, 4);
	if (variant != ORDER && variant != MISSING)
		put_f(b, 0x12, key, 32);
	put_t(b, 0x21, variant == BIGTIME ? UINT64_C(1) << 63 : NB);
	put_t(b, 0x22, variant == BACKWARDS ? NB - 1 : NA);
	put_f(b, 0x30, f->service_pk.key_id, 8);
	if (variant == NOSIG)
		return;
	uint8_t sig[64];
	crypto_sign_detached(sig, NULL, b->data, b->len, bk_minisign_seckey_ed25519(f->service));
	put_f(b, 0xff, sig, variant == SIGLEN ? 63 : 64);
	if (variant == TRAILING)
		bk_buf_put_u8(b, 0);
}

static void test_strict_parsing(void)
{
	fixture f;
	bk_cert *c = NULL;
	REQUIRE_OK(fixture_init(&f));
	bk_buf b = BK_BUF_INIT;
	build(&b, &f, VALID);
	REQUIRE_OK(bk_cert_parse(&c, b.data, b.len));
	CHECK_OK(bk_cert_verify(c, &f.service_pk, 1, BK_CERT_ROLE_TERMINAL, NB));
	bk_cert_free(c);
	c = NULL;
	bk_buf_free(&b);
	static const char *names[] = {"order",     "duplicate", "unknown tag", "version",
	                              "long str",  "space",     "key length",  "role",
	                              "missing",   "forbidden", "trailing",    "big time",
	                              "backwards", "no sig",    "sig length"};
	for (int v = ORDER; v < VALID; v++) {
		bk_buf bb = BK_BUF_INIT;
		build(&bb, &f, v);
		int rc = bk_cert_parse(&c, bb.data, bb.len);
		if (rc != BK_EFORMAT)
			fprintf(stderr, "  variant %s: rc %d\n", names[v], rc);
		CHECK_EQ(rc, BK_EFORMAT);
		CHECK(reason_is("malformed-certificate"));
		CHECK(c == NULL);
		bk_buf_free(&bb);
	}
	CHECK_EQ(bk_cert_parse(&c, NULL, 0), BK_EFORMAT);
	CHECK_EQ(bk_cert_parse(&c, (const uint8_t *)"hello", 5), BK_EFORMAT);
	fixture_free(&f);
}

static void test_every_byte_flip_and_cut(void)
{
	fixture f;
	bk_cert *c = NULL, *x = NULL;
	char *armor = NULL;
	size_t len, alen;
	REQUIRE_OK(fixture_init(&f));
	bk_cert_params p = unit_params(&f);
	REQUIRE_OK(bk_cert_issue(&c, &p, f.factory));
	const uint8_t *orig = bk_cert_bytes(c, &len);
	uint8_t *copy = bk__malloc(len + 1);
	REQUIRE(copy != NULL);
	int accepted = 0;
	static const uint8_t masks[] = {0x01, 0x80, 0xff};
	for (size_t i = 0; i < len; i++) {
		for (size_t m = 0; m < sizeof(masks); m++) {
			memcpy(copy, orig, len);
			copy[i] ^= masks[m];
			if (bk_cert_parse(&x, copy, len) == 0 &&
			    bk_cert_verify(x, &f.factory_pk, 1, BK_CERT_ROLE_UNIT, NB) == 0) {
				fprintf(stderr, "  flip at %zu accepted\n", i);
				accepted++;
			}
			bk_cert_free(x);
			x = NULL;
		}
	}
	CHECK_EQ(accepted, 0);
	/* Every truncation, and trailing garbage. */
	for (size_t n = 0; n < len; n++) {
		CHECK_EQ(bk_cert_parse(&x, orig, n), BK_EFORMAT);
	}
	memcpy(copy, orig, len);
	copy[len] = '\n';
	CHECK_EQ(bk_cert_parse(&x, copy, len + 1), BK_EFORMAT);

	/* The armor: every byte changed is refused too. */
	REQUIRE_OK(bk_cert_armor(&armor, &alen, c));
	char *acopy = bk__malloc(alen + 8);
	REQUIRE(acopy != NULL);
	for (size_t i = 0; i < alen; i++) {
		memcpy(acopy, armor, alen);
		acopy[i] ^= 0x01;
		if (bk_cert_parse(&x, (const uint8_t *)acopy, alen) == 0 &&
		    bk_cert_verify(x, &f.factory_pk, 1, BK_CERT_ROLE_UNIT, NB) == 0) {
			fprintf(stderr, "  armor flip at %zu accepted\n", i);
			accepted++;
		}
		bk_cert_free(x);
		x = NULL;
	}
	CHECK_EQ(accepted, 0);
	memcpy(acopy, armor, alen);
	memcpy(acopy + alen, "junk\n", 5);
	CHECK_EQ(bk_cert_parse(&x, (const uint8_t *)acopy, alen + 5), BK_EFORMAT);
	CHECK_EQ(bk_cert_parse(&x, (const uint8_t *)acopy, alen - 1), BK_EFORMAT);

	bk__free(acopy);
	bk__free(armor);
	bk__free(copy);
	bk_cert_free(c);
	fixture_free(&f);
}

/* CA keys come from minisign key files. */
static void test_ca_from_key_files(void)
{
	fixture f;
	bk_minisign_seckey *ca = NULL;
	bk_minisign_pubkey capk;
	bk_cert *c = NULL;
	REQUIRE_OK(fixture_init(&f));
	const char *sec = bk_test_path("factory-ca.key"), *pub = bk_test_path("factory-ca.pub");
	REQUIRE_OK(bk_minisign_seckey_write(sec, f.factory, NULL, 0, 0));
	REQUIRE_OK(bk_minisign_pubkey_write(pub, &f.factory_pk));
	REQUIRE_OK(bk_minisign_seckey_read(&ca, sec, NULL));
	REQUIRE_OK(bk_minisign_pubkey_read(&capk, pub));
	bk_cert_params p = unit_params(&f);
	REQUIRE_OK(bk_cert_issue(&c, &p, ca));
	CHECK_OK(bk_cert_verify(c, &capk, 1, BK_CERT_ROLE_UNIT, NB));
	bk_cert_free(c);
	bk_minisign_seckey_free(ca);
	fixture_free(&f);
}

static void test_keyfile(void)
{
	bk_keyfile *k = NULL, *k2 = NULL;
	char *text = NULL;
	size_t len;
	uint8_t pub[32];
	const char *path = bk_test_path("terminal.key");
	struct stat st;

	REQUIRE_OK(bk_keyfile_generate(&k, 0));
	CHECK(bk_keyfile_age_secret(k) == NULL);
	crypto_scalarmult_base(pub, bk_keyfile_noise_secret(k));
	CHECK(memcmp(pub, bk_keyfile_noise_public(k), 32) == 0);
	CHECK(memcmp(bk_keyfile_ed25519_secret(k) + 32, bk_keyfile_ed25519_public(k), 32) == 0);
	REQUIRE_OK(bk_keyfile_write(path, k));
	REQUIRE(stat(path, &st) == 0);
	CHECK_EQ(st.st_mode & 0777, 0600);
	CHECK_EQ(bk_keyfile_write(path, k), BK_EEXIST);
	REQUIRE_OK(bk_keyfile_read(&k2, path));
	CHECK(memcmp(bk_keyfile_noise_secret(k), bk_keyfile_noise_secret(k2), 32) == 0);
	CHECK(memcmp(bk_keyfile_ed25519_secret(k), bk_keyfile_ed25519_secret(k2), 64) == 0);
	CHECK(bk_keyfile_age_public(k2) == NULL);
	bk_keyfile_free(k2);
	k2 = NULL;

	/* Signing with the file's Ed25519 key verifies with its public key. */
	uint8_t sig[64];
	crypto_sign_detached(sig, NULL, (const uint8_t *)"x", 1, bk_keyfile_ed25519_secret(k));
	CHECK(crypto_sign_verify_detached(sig, (const uint8_t *)"x", 1,
	                                  bk_keyfile_ed25519_public(k)) == 0);

	/* Refused when others can read it. */
	REQUIRE(chmod(path, 0644) == 0);
	CHECK_EQ(bk_keyfile_read(&k2, path), BK_EAUTH);
	CHECK(reason_is("key-file-permissions"));
	CHECK(k2 == NULL);
	REQUIRE(chmod(path, 0604) == 0);
	CHECK_EQ(bk_keyfile_read(&k2, path), BK_EAUTH);
	bk_keyfile_free(k);
	k = NULL;

	/* With an age key (units), from given secrets. */
	uint8_t n[32], e[32], a[32];
	memset(n, 1, 32);
	memset(e, 2, 32);
	memset(a, 3, 32);
	REQUIRE_OK(bk_keyfile_from(&k, n, e, a));
	REQUIRE_OK(bk_keyfile_encode(&text, &len, k));
	CHECK(strncmp(text, "aibo-keys/1\nnoise: AQEB", 23) == 0);
	CHECK(strstr(text, "\ned25519: AgIC") != NULL);
	CHECK(strstr(text, "\nage: AwMD") != NULL);
	REQUIRE_OK(bk_keyfile_parse(&k2, text, len));
	CHECK(memcmp(bk_keyfile_age_secret(k2), a, 32) == 0);
	crypto_scalarmult_base(pub, a);
	CHECK(memcmp(bk_keyfile_age_public(k2), pub, 32) == 0);
	bk_keyfile_free(k2);
	k2 = NULL;

	/* Malformed variants. */
	bk_buf b = BK_BUF_INIT;
	const char *third = strstr(text, "\nage:") + 1;
	size_t upto_age = (size_t)(third - text);
	static const char *bad_tail[] = {"age: AwMD\n",
	                                 "agex AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=\n",
	                                 "age: AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=",
	                                 "age: AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=\nx\n",
	                                 "age: AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=\r\n",
	                                 "noise: AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=\n",
	                                 "\n"};
	for (size_t i = 0; i < BK_ARRAY_LEN(bad_tail); i++) {
		bk_buf_reset(&b);
		bk_buf_put(&b, text, upto_age);
		bk_buf_put_str(&b, bad_tail[i]);
		int rc = bk_keyfile_parse(&k2, (const char *)b.data, b.len);
		if (rc != BK_EFORMAT)
			fprintf(stderr, "  key file tail %zu: rc %d\n", i, rc);
		CHECK_EQ(rc, BK_EFORMAT);
		CHECK(reason_is("malformed-key-file"));
		CHECK(k2 == NULL);
	}
	/* A byte outside the base64 alphabet that libsodium alone would take for '/'. */
	bk_buf_reset(&b);
	bk_buf_put(&b, text, upto_age);
	bk_buf_put_str(&b, "age: AwMDAwMDAw\xbe"
	                   "DAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=\n");
	CHECK_EQ(bk_keyfile_parse(&k2, (const char *)b.data, b.len), BK_EFORMAT);
	bk_buf_reset(&b);
	bk_buf_put(&b, text, upto_age);
	bk_buf_put_str(&b, "age: AwMDAwMDAw/DAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=\n");
	CHECK_OK(bk_keyfile_parse(&k2, (const char *)b.data, b.len));
	bk_keyfile_free(k2);
	k2 = NULL;
	bk_buf_free(&b);
	CHECK_EQ(bk_keyfile_parse(&k2, "aibo-keys/2\n", 12), BK_EFORMAT);
	CHECK_EQ(bk_keyfile_parse(&k2, text + 1, len - 1), BK_EFORMAT);
	/* Every truncation of a valid file fails, except at the optional age line. */
	for (size_t cut = 0; cut < len; cut++) {
		int rc = bk_keyfile_parse(&k2, text, cut);
		if (cut == upto_age) {
			CHECK_OK(rc);
			CHECK(k2 && bk_keyfile_age_secret(k2) == NULL);
		} else {
			CHECK_EQ(rc, BK_EFORMAT);
		}
		bk_keyfile_free(k2);
		k2 = NULL;
	}
	bk_wipe(text, len);
	bk__free(text);
	bk_keyfile_free(k);
}

static void test_alloc_failures(void)
{
	fixture f;
	REQUIRE_OK(fixture_init(&f));
	bk_cert_params p = unit_params(&f);
	int ok = 0;
	for (long n = 1; n < 40 && !ok; n++) {
		bk_cert *c = NULL, *c2 = NULL;
		char *armor = NULL;
		size_t alen;
		bk__alloc_fail_at(n);
		int rc = bk_cert_issue(&c, &p, f.factory);
		if (rc == 0)
			rc = bk_cert_armor(&armor, &alen, c);
		if (rc == 0)
			rc = bk_cert_parse(&c2, (const uint8_t *)armor, alen);
		bk__alloc_fail_at(0);
		if (rc == 0)
			ok = 1;
		else
			CHECK_EQ(rc, BK_ENOMEM);
		bk__free(armor);
		bk_cert_free(c);
		bk_cert_free(c2);
	}
	CHECK(ok);
	fixture_free(&f);
}

BK_RUN_TESTS(BK_TEST(test_unit_issue_parse_verify), BK_TEST(test_terminal_and_identity),
             BK_TEST(test_verify_failures), BK_TEST(test_issue_refuses_bad_params),
             BK_TEST(test_strict_parsing), BK_TEST(test_every_byte_flip_and_cut),
             BK_TEST(test_ca_from_key_files), BK_TEST(test_keyfile), BK_TEST(test_alloc_failures))
