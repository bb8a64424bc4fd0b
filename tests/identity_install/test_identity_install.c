/* IDENTITY_INSTALL end to end: the device client (device/identity.c) against
 * the virtual robot's handler (device/virtual/identity_ops.c), served in
 * process, and through the aibo-vdev program. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include <libbackup/device.h>
#include <libbackup/libbackup.h>

#include "crypto/cert.h"
#include "device/virtual/identity_ops.h"
#include "device/virtual/pki.h"
#include "device/virtual/unit.h"
#include "libbackup/util/util.h"
#include "testlib.h"

#define SERIAL "AIBO-ID-0001"
#define YEAR   (365 * 24 * 3600LL)

/* --- The lab ------------------------------------------------------------------ */

typedef struct fixture {
	char pki[512];
	char unit[512];
	char term_key[600];
	char term_cert[600];
	char factory_ca[600];
	const char *cas[1];
	bk_cert *unit_cert;
} fixture;

static int fx_init(fixture *f)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->pki, sizeof(f->pki), "%s", bk_test_path("pki"));
	snprintf(f->unit, sizeof(f->unit), "%s", bk_test_path("unit"));
	snprintf(f->term_key, sizeof(f->term_key), "%s/%s", f->pki, BK_PKI_TERMINAL_KEY);
	snprintf(f->term_cert, sizeof(f->term_cert), "%s/%s", f->pki, BK_PKI_TERMINAL_CERT);
	snprintf(f->factory_ca, sizeof(f->factory_ca), "%s/%s.pub", f->pki, BK_PKI_FACTORY_CA);
	f->cas[0] = f->factory_ca;
	int rc = bk_vdev_pki_init(f->pki);
	if (rc)
		return rc;
	bk_vunit_create_opts o = BK_VUNIT_CREATE_OPTS_INIT;
	o.pki_dir = f->pki;
	o.serial = SERIAL;
	o.memory_size = 16 * 1024;
	if ((rc = bk_vunit_create(f->unit, &o)))
		return rc;
	char path[700];
	snprintf(path, sizeof(path), "%s/%s", f->unit, BK_VUNIT_CERT);
	return bk_cert_read(&f->unit_cert, path);
}

static void fx_free(fixture *f)
{
	bk_cert_free(f->unit_cert);
	f->unit_cert = NULL;
}

static void fx_opts(const fixture *f, bk_device_opts *o)
{
	bk_device_opts d = BK_DEVICE_OPTS_INIT;
	*o = d;
	o->terminal_key = f->term_key;
	o->terminal_cert = f->term_cert;
	o->factory_ca = f->cas;
	o->factory_ca_count = 1;
	o->timeout_ms = 5000;
}

/* What a bundle says; zero fields take the good bundle's values. */
typedef struct spec {
	const char *ca_key; /* a key file in the PKI folder (default: the service CA) */
	const bk_minisign_seckey *ca;
	const char *serial;
	const char *model;
	const char *device_id;
	const bk_keyfile *keys; /* default: the unit's own keys */
	int64_t issued_delta;   /* seconds from now */
	int64_t not_after_delta;
} spec;

static int make_bundle(uint8_t **out, size_t *out_len, const fixture *f, const spec *s)
{
	bk_minisign_seckey *ca = NULL;
	bk_cert *b = NULL;
	char path[700];
	int64_t now = (int64_t)time(NULL);
	int rc = 0;
	*out = NULL;
	if (s->ca == NULL) {
		snprintf(path, sizeof(path), "%s/%s", f->pki,
		         s->ca_key ? s->ca_key : BK_PKI_SERVICE_CA);
		if ((rc = bk_minisign_seckey_read(&ca, path, NULL)))
			return rc;
	}
	bk_cert_params p;
	memset(&p, 0, sizeof(p));
	p.role = BK_CERT_ROLE_IDENTITY;
	p.serial = s->serial ? s->serial : SERIAL;
	p.model = s->model ? s->model : bk_cert_model(f->unit_cert);
	p.hw_revision = bk_cert_hw_revision(f->unit_cert);
	p.device_id = s->device_id ? s->device_id : "device-7f3a";
	p.owner_binding = "owner-0042";
	p.old_serial = "AIBO-OLD-0001";
	p.noise_key = s->keys ? bk_keyfile_noise_public(s->keys) : bk_cert_noise_key(f->unit_cert);
	p.age_key = s->keys ? bk_keyfile_age_public(s->keys) : bk_cert_age_key(f->unit_cert);
	p.ed25519_key =
	    s->keys ? bk_keyfile_ed25519_public(s->keys) : bk_cert_ed25519_key(f->unit_cert);
	p.issued = now + s->issued_delta;
	p.not_before = now - 3600;
	p.not_after = s->not_after_delta ? now + s->not_after_delta : now + YEAR;
	if ((rc = bk_cert_issue(&b, &p, s->ca ? s->ca : ca)) == 0) {
		size_t n = 0;
		const uint8_t *bytes = bk_cert_bytes(b, &n);
		if ((*out = malloc(n)) == NULL) {
			rc = BK_ENOMEM;
		} else {
			memcpy(*out, bytes, n);
			*out_len = n;
		}
	}
	bk_cert_free(b);
	bk_minisign_seckey_free(ca);
	return rc;
}

static void bundle_fingerprint(const uint8_t *b, size_t n, char out[65])
{
	uint8_t fp[32];
	crypto_generichash(fp, sizeof(fp), b, n, NULL, 0);
	bk_hex_encode(out, fp, sizeof(fp));
}

/* --- A unit served in process ------------------------------------------------ */

typedef struct session {
	bk_vunit *u;
	bk_device *dev;
	bk_stream *unit_end;
	pthread_t thread;
	int unit_rc;
} session;

static void *serve_main(void *arg)
{
	session *s = arg;
	s->unit_rc = bk_vunit_serve(s->u, s->unit_end, bk_deadline_in(5000));
	s->unit_end = NULL;
	return NULL;
}

/* Powers the unit up (with the identity handler unless `custom` handles
 * IDENTITY_INSTALL itself), adds `fault`, serves one session. */
static int session_open(session *s, const fixture *f, const char *fault, bk_vunit_handler custom,
                        void *payload)
{
	bk_stream *end = NULL;
	bk_device_opts o;
	int rc;
	memset(s, 0, sizeof(*s));
	if ((rc = bk_vunit_open(&s->u, f->unit)))
		return rc;
	rc = custom ? bk_vunit_set_handler(s->u, BK_DEVICE_IDENTITY_INSTALL, custom, payload)
	            : bk_videntity_install(s->u);
	if (rc == 0 && fault)
		rc = bk_vunit_fault_add(s->u, fault);
	if (rc == 0)
		rc = bk_transport_pair_new(&end, &s->unit_end);
	if (rc) {
		bk_vunit_free(s->u);
		s->u = NULL;
		return rc;
	}
	if (pthread_create(&s->thread, NULL, serve_main, s) != 0) {
		bk_stream_free(end);
		bk_stream_free(s->unit_end);
		bk_vunit_free(s->u);
		s->u = NULL;
		return BK_ERROR;
	}
	fx_opts(f, &o);
	rc = bk_device_open_stream(&s->dev, end, &o);
	if (rc) {
		pthread_join(s->thread, NULL);
		bk_vunit_free(s->u);
		s->u = NULL;
	}
	return rc;
}

/* Ends the session and powers the unit off; returns the unit's result. */
static int session_close(session *s)
{
	if (s->u == NULL)
		return BK_EINVALID;
	bk_device_free(s->dev);
	pthread_join(s->thread, NULL);
	bk_vunit_free(s->u);
	s->u = NULL;
	return s->unit_rc;
}

/* INFO's "identity" object, as text (free with free()). */
static char *info_identity(bk_device *dev)
{
	char *reply = NULL, *out = NULL;
	if (bk_device_call(dev, BK_DEVICE_INFO, NULL, &reply, 0) != 0)
		return NULL;
	json_t *a = json_loads(reply, 0, NULL);
	json_t *id = json_object_get(a, "identity");
	if (id)
		out = json_dumps(id, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(a);
	bk_free(reply);
	return out;
}

static char *expected_identity(const char *device_id, const char *fingerprint)
{
	json_t *o = json_pack("{s:b, s:s, s:s, s:s}", "installed", 1, "device_id", device_id,
	                      "serial", SERIAL, "fingerprint", fingerprint);
	char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	return s;
}

#define NOT_INSTALLED "{\"installed\":false}"

/* The identity the unit in `f` reports after a power cycle (free()). */
static char *identity_after_power_cycle(const fixture *f)
{
	bk_vunit *u = NULL;
	json_t *j = NULL;
	char *out = NULL;
	if (bk_vunit_open(&u, f->unit) == 0 && bk_videntity_info_json(u, &j) == 0)
		out = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(j);
	bk_vunit_free(u);
	return out;
}

static bool last_is(int code, const char *reason)
{
	const bk_error *e = bk_error_last();
	if (e->code != code || (reason && strcmp(e->reason, reason) != 0)) {
		fprintf(stderr, "  got %d/%s: %s\n", e->code, e->reason, e->message);
		return false;
	}
	return true;
}

static bool last_mentions(const char *s)
{
	return strstr(bk_error_last()->message, s) != NULL;
}

/* --- Installing ---------------------------------------------------------------- */

static void test_install_info_power_cycle(void)
{
	fixture f;
	session s;
	uint8_t *b = NULL;
	size_t n = 0;
	char fp[65], *ans = NULL, *id = NULL, *want = NULL;
	spec sp = {0};
	REQUIRE_OK(fx_init(&f));
	REQUIRE_OK(make_bundle(&b, &n, &f, &sp));
	bundle_fingerprint(b, n, fp);
	want = expected_identity("device-7f3a", fp);
	REQUIRE_OK(session_open(&s, &f, NULL, NULL, NULL));
	id = info_identity(s.dev);
	CHECK_STR(id, NOT_INSTALLED);
	free(id);
	CHECK_OK(bk_device_identity_install(s.dev, b, n, &ans, 0));
	json_t *a = ans ? json_loads(ans, 0, NULL) : NULL;
	CHECK_STR(json_string_value(json_object_get(a, "device_id")), "device-7f3a");
	CHECK_STR(json_string_value(json_object_get(a, "serial")), SERIAL);
	CHECK_STR(json_string_value(json_object_get(a, "fingerprint")), fp);
	json_decref(a);
	bk_free(ans);
	id = info_identity(s.dev);
	CHECK_STR(id, want);
	free(id);
	/* The library's INFO parser still takes the answer. */
	bk_device_info *info = NULL;
	CHECK_OK(bk_device_info_get(s.dev, &info, 0));
	bk_device_info_free(info);
	CHECK_OK(session_close(&s));

	/* Power cycle: the unit still holds it, also over a new session. */
	id = identity_after_power_cycle(&f);
	CHECK_STR(id, want);
	free(id);
	REQUIRE_OK(session_open(&s, &f, NULL, NULL, NULL));
	id = info_identity(s.dev);
	CHECK_STR(id, want);
	free(id);
	CHECK_OK(session_close(&s));
	free(want);
	free(b);
	fx_free(&f);
}

static void test_install_twice(void)
{
	fixture f;
	session s;
	uint8_t *b = NULL;
	size_t n = 0;
	char fp[65], *a1 = NULL, *a2 = NULL, *a3 = NULL, *armor = NULL, *id = NULL;
	size_t armor_len = 0;
	bk_cert *c = NULL;
	spec sp = {0};
	REQUIRE_OK(fx_init(&f));
	REQUIRE_OK(make_bundle(&b, &n, &f, &sp));
	bundle_fingerprint(b, n, fp);
	REQUIRE_OK(session_open(&s, &f, NULL, NULL, NULL));
	CHECK_OK(bk_device_identity_install(s.dev, b, n, &a1, 0));
	CHECK_OK(bk_device_identity_install(s.dev, b, n, &a2, 0));
	CHECK_STR(a1, a2);
	/* The armored form is the same bundle. */
	REQUIRE_OK(bk_cert_parse(&c, b, n));
	REQUIRE_OK(bk_cert_armor(&armor, &armor_len, c));
	CHECK_OK(bk_device_identity_install(s.dev, (const uint8_t *)armor, armor_len, &a3, 0));
	CHECK_STR(a1, a3);
	/* NULL out_json is fine. */
	CHECK_OK(bk_device_identity_install(s.dev, b, n, NULL, 0));
	char *want = expected_identity("device-7f3a", fp);
	id = info_identity(s.dev);
	CHECK_STR(id, want);
	free(id);
	free(want);
	CHECK_OK(session_close(&s));
	bk_free(a1);
	bk_free(a2);
	bk_free(a3);
	bk__free(armor);
	bk_cert_free(c);
	free(b);
	fx_free(&f);
}

static void test_newer_replaces_older_refused(void)
{
	fixture f;
	session s;
	uint8_t *old = NULL, *nw = NULL;
	size_t on = 0, nn = 0;
	char fp[65], *id = NULL, *want = NULL;
	spec so = {.device_id = "device-old", .issued_delta = -600};
	spec sn = {.device_id = "device-new"};
	REQUIRE_OK(fx_init(&f));
	REQUIRE_OK(make_bundle(&old, &on, &f, &so));
	REQUIRE_OK(make_bundle(&nw, &nn, &f, &sn));
	bundle_fingerprint(nw, nn, fp);
	want = expected_identity("device-new", fp);
	REQUIRE_OK(session_open(&s, &f, NULL, NULL, NULL));
	CHECK_OK(bk_device_identity_install(s.dev, old, on, NULL, 0));
	CHECK_OK(bk_device_identity_install(s.dev, nw, nn, NULL, 0));
	id = info_identity(s.dev);
	CHECK_STR(id, want);
	free(id);
	/* Replaying the older one does not take the identity back. */
	CHECK_EQ(bk_device_identity_install(s.dev, old, on, NULL, 0), BK_EINCOMPAT);
	CHECK(last_is(BK_EINCOMPAT, "bundle-older"));
	CHECK(last_mentions(SERIAL));
	id = info_identity(s.dev);
	CHECK_STR(id, want);
	free(id);
	CHECK_OK(session_close(&s));
	id = identity_after_power_cycle(&f);
	CHECK_STR(id, want);
	free(id);
	free(want);
	free(old);
	free(nw);
	fx_free(&f);
}

/* --- Refusals ------------------------------------------------------------------- */

/* Installs `spec`'s bundle and expects `code`/`reason`, nothing installed
 * and the session still usable. */
static void refused(const fixture *f, session *s, const spec *sp, int code, const char *reason)
{
	uint8_t *b = NULL;
	size_t n = 0;
	char *ans = NULL, *id = NULL;
	REQUIRE_OK(make_bundle(&b, &n, f, sp));
	CHECK_EQ(bk_device_identity_install(s->dev, b, n, &ans, 0), code);
	CHECK(last_is(code, reason));
	CHECK(last_mentions(SERIAL));
	CHECK(ans == NULL);
	CHECK_OK(bk_device_ping(s->dev, NULL, 0));
	id = info_identity(s->dev);
	CHECK_STR(id, NOT_INSTALLED);
	free(id);
	free(b);
}

static void test_refuse_other_serial(void)
{
	fixture f;
	session s;
	spec sp = {.serial = "AIBO-ID-0002"};
	REQUIRE_OK(fx_init(&f));
	REQUIRE_OK(session_open(&s, &f, NULL, NULL, NULL));
	refused(&f, &s, &sp, BK_EVERIFY, "bundle-mismatch");
	CHECK_OK(session_close(&s));
	fx_free(&f);
}

static void test_refuse_other_keys(void)
{
	fixture f;
	session s;
	bk_keyfile *other = NULL;
	REQUIRE_OK(fx_init(&f));
	REQUIRE_OK(bk_keyfile_generate(&other, 1));
	spec sk = {.keys = other};
	spec sm = {.model = "ERS-2000"};
	REQUIRE_OK(session_open(&s, &f, NULL, NULL, NULL));
	refused(&f, &s, &sk, BK_EVERIFY, "bundle-mismatch");
	refused(&f, &s, &sm, BK_EVERIFY, "bundle-mismatch");
	CHECK_OK(session_close(&s));
	bk_keyfile_free(other);
	fx_free(&f);
}

static void test_refuse_unverifiable(void)
{
	fixture f;
	session s;
	bk_minisign_seckey *stranger = NULL;
	uint8_t *b = NULL;
	size_t n = 0;
	REQUIRE_OK(fx_init(&f));
	REQUIRE_OK(bk_minisign_keygen(&stranger));
	spec by_factory = {.ca_key = BK_PKI_FACTORY_CA};
	spec by_stranger = {.ca = stranger};
	spec expired = {.not_after_delta = -60};
	/* Another serial, unsigned: the signature is what is reported. */
	spec both = {.ca = stranger, .serial = "AIBO-ID-0002"};
	REQUIRE_OK(session_open(&s, &f, NULL, NULL, NULL));
	refused(&f, &s, &by_factory, BK_EAUTH, "unknown-ca");
	refused(&f, &s, &by_stranger, BK_EAUTH, "unknown-ca");
	refused(&f, &s, &expired, BK_EAUTH, "expired");
	refused(&f, &s, &both, BK_EAUTH, "unknown-ca");

	/* A damaged signature. */
	spec good = {0};
	REQUIRE_OK(make_bundle(&b, &n, &f, &good));
	b[n - 1] ^= 0x01;
	CHECK_EQ(bk_device_identity_install(s.dev, b, n, NULL, 0), BK_EAUTH);
	CHECK(last_is(BK_EAUTH, "bad-signature"));
	b[n - 1] ^= 0x01;
	/* A field changed after signing. */
	for (size_t i = 0; i + 11 < n; i++)
		if (memcmp(b + i, "device-7f3a", 11) == 0)
			b[i + 10] = 'b';
	CHECK_EQ(bk_device_identity_install(s.dev, b, n, NULL, 0), BK_EAUTH);
	CHECK(last_is(BK_EAUTH, "bad-signature"));
	free(b);

	/* The unit's own factory certificate is no identity bundle. */
	size_t un = 0;
	const uint8_t *ub = bk_cert_bytes(f.unit_cert, &un);
	CHECK_EQ(bk_device_identity_install(s.dev, ub, un, NULL, 0), BK_EAUTH);
	CHECK(last_is(BK_EAUTH, "wrong-role"));
	char *id = info_identity(s.dev);
	CHECK_STR(id, NOT_INSTALLED);
	free(id);
	CHECK_OK(session_close(&s));
	bk_minisign_seckey_free(stranger);
	fx_free(&f);
}

/* Sends a raw IDENTITY_INSTALL body; expects `code`/`reason`. */
static void raw_refused(session *s, const char *body, int code, const char *reason)
{
	char *reply = NULL;
	int rc = bk_device_call(s->dev, BK_DEVICE_IDENTITY_INSTALL, body, &reply, 0);
	if (rc != code)
		fprintf(stderr, "  body %.60s\n", body);
	CHECK_EQ(rc, code);
	CHECK(last_is(code, reason));
	CHECK(last_mentions(SERIAL));
	CHECK(reply == NULL);
	bk_free(reply);
}

static char *body_of(const char *b64)
{
	json_t *o = json_pack("{s:s}", "bundle", b64);
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

static void test_refuse_malformed(void)
{
	fixture f;
	session s;
	uint8_t *b = NULL, junk[300];
	size_t n = 0;
	spec good = {0};
	REQUIRE_OK(fx_init(&f));
	REQUIRE_OK(make_bundle(&b, &n, &f, &good));
	REQUIRE_OK(session_open(&s, &f, NULL, NULL, NULL));

	/* Truncated, garbage, trailing bytes: not a certificate. */
	CHECK_EQ(bk_device_identity_install(s.dev, b, n - 7, NULL, 0), BK_EFORMAT);
	CHECK(last_is(BK_EFORMAT, "malformed-certificate"));
	CHECK(last_mentions(SERIAL));
	CHECK_EQ(bk_device_identity_install(s.dev, b, 12, NULL, 0), BK_EFORMAT);
	CHECK(last_is(BK_EFORMAT, "malformed-certificate"));
	randombytes_buf(junk, sizeof(junk));
	CHECK_EQ(bk_device_identity_install(s.dev, junk, sizeof(junk), NULL, 0), BK_EFORMAT);
	CHECK(last_is(BK_EFORMAT, "malformed-certificate"));
	uint8_t *longer = malloc(n + 1);
	REQUIRE(longer != NULL);
	memcpy(longer, b, n);
	longer[n] = 0;
	CHECK_EQ(bk_device_identity_install(s.dev, longer, n + 1, NULL, 0), BK_EFORMAT);
	free(longer);

	/* Arguments the client refuses itself. */
	CHECK_EQ(bk_device_identity_install(s.dev, NULL, 10, NULL, 0), BK_EINVALID);
	CHECK_EQ(bk_device_identity_install(s.dev, b, 0, NULL, 0), BK_EINVALID);
	CHECK_EQ(bk_device_identity_install(NULL, b, n, NULL, 0), BK_EINVALID);
	uint8_t *huge = calloc(1, 64 * 1024);
	REQUIRE(huge != NULL);
	CHECK_EQ(bk_device_identity_install(s.dev, huge, 64 * 1024, NULL, 0), BK_EINVALID);
	free(huge);

	/* Bodies: the base64 must be strict. */
	size_t enc = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
	char *b64 = malloc(enc + 8), *body = NULL;
	REQUIRE(b64 != NULL);
	sodium_bin2base64(b64, enc, b, n, sodium_base64_VARIANT_ORIGINAL);
	size_t bl = strlen(b64);
	/* Well-formed, it installs (so the refusals below are about the text). */
	body = body_of(b64);
	char *reply = NULL;
	CHECK_OK(bk_device_call(s.dev, BK_DEVICE_IDENTITY_INSTALL, body, &reply, 0));
	CHECK(reply != NULL);
	bk_free(reply);
	free(body);
	static const char bad_chars[] = {'.', '-', '_', ' ', '\n', '*', '=', '\\', (char)0xc3};
	for (size_t k = 0; k < sizeof(bad_chars); k++) {
		char saved = b64[bl / 2];
		b64[bl / 2] = bad_chars[k];
		if ((unsigned char)bad_chars[k] >= 0x80) {
			/* Not valid UTF-8 alone: make it "é" in place of two characters. */
			b64[bl / 2 + 1] = (char)0xa9;
		}
		body = body_of(b64);
		REQUIRE(body != NULL);
		raw_refused(&s, body, BK_EFORMAT, "bad-base64");
		free(body);
		b64[bl / 2] = saved;
		sodium_bin2base64(b64, enc, b, n, sodium_base64_VARIANT_ORIGINAL);
	}
	/* A length that is not a multiple of 4, and a cut padding. */
	b64[bl - 1] = '\0';
	body = body_of(b64);
	raw_refused(&s, body, BK_EFORMAT, "bad-base64");
	free(body);
	/* Whitespace around it. */
	sodium_bin2base64(b64, enc, b, n, sodium_base64_VARIANT_ORIGINAL);
	memmove(b64 + 1, b64, bl + 1);
	b64[0] = ' ';
	body = body_of(b64);
	raw_refused(&s, body, BK_EFORMAT, "bad-base64");
	free(body);
	/* Longer than any bundle. */
	{
		size_t big = 9000,
		       benc = sodium_base64_ENCODED_LEN(big, sodium_base64_VARIANT_ORIGINAL);
		uint8_t *raw = calloc(1, big);
		char *t = malloc(benc);
		REQUIRE(raw != NULL && t != NULL);
		sodium_bin2base64(t, benc, raw, big, sodium_base64_VARIANT_ORIGINAL);
		body = body_of(t);
		raw_refused(&s, body, BK_EFORMAT, "bad-bundle");
		free(body);
		free(t);
		free(raw);
	}
	raw_refused(&s, "{\"bundle\":\"\"}", BK_EFORMAT, "bad-bundle");
	raw_refused(&s, "{\"bundle\":\"====\"}", BK_EFORMAT, "bad-base64");
	raw_refused(&s, "{\"bundle\":7}", BK_EINVALID, "bad-request");
	raw_refused(&s, "{}", BK_EINVALID, "bad-request");
	raw_refused(&s, "{\"bundle\":\"AAAA\"}", BK_EFORMAT, "malformed-certificate");
	free(b64);

	CHECK_OK(bk_device_ping(s.dev, NULL, 0));
	CHECK_OK(session_close(&s));
	free(b);
	fx_free(&f);
}

/* --- Power loss ------------------------------------------------------------------ */

static void test_power_loss(void)
{
	fixture f;
	session s;
	uint8_t *b = NULL;
	size_t n = 0;
	char fp[65], *id = NULL, *want = NULL;
	spec sp = {0};
	REQUIRE_OK(fx_init(&f));
	REQUIRE_OK(make_bundle(&b, &n, &f, &sp));
	bundle_fingerprint(b, n, fp);
	want = expected_identity("device-7f3a", fp);

	/* Dies after checking, before storing: nothing installed. */
	REQUIRE_OK(session_open(&s, &f, "power-loss=identity-install", NULL, NULL));
	CHECK(bk_device_identity_install(s.dev, b, n, NULL, bk_deadline_in(3000)) != 0);
	CHECK(last_is(BK_EDISCONNECTED, NULL) || last_is(BK_ETIMEOUT, NULL));
	CHECK_EQ(session_close(&s), BK_EDISCONNECTED);
	id = identity_after_power_cycle(&f);
	CHECK_STR(id, NOT_INSTALLED);
	free(id);

	/* Dies once stored, before answering: installed; installing again
	 * (the terminal retrying) answers as usual. */
	REQUIRE_OK(session_open(&s, &f, "power-loss=identity-install:100", NULL, NULL));
	CHECK(bk_device_identity_install(s.dev, b, n, NULL, bk_deadline_in(3000)) != 0);
	CHECK_EQ(session_close(&s), BK_EDISCONNECTED);
	id = identity_after_power_cycle(&f);
	CHECK_STR(id, want);
	free(id);
	REQUIRE_OK(session_open(&s, &f, "power-loss=identity-install:100", NULL, NULL));
	CHECK_OK(bk_device_identity_install(s.dev, b, n, NULL, 0));
	CHECK_OK(session_close(&s));
	free(want);
	free(b);
	fx_free(&f);
}

/* --- The client's check of the answer ------------------------------------------ */

typedef struct fake {
	int mode;
	char fingerprint[65];
} fake;

static int fake_install(bk_vunit *u, const bk_proto_msg *req, bk_vunit_reply *reply, void *payload)
{
	fake *fk = payload;
	(void)u;
	(void)req;
	switch (fk->mode) {
	case 0: /* right */
		reply->json = json_pack("{s:s, s:s, s:s}", "device_id", "device-7f3a", "serial",
		                        SERIAL, "fingerprint", fk->fingerprint);
		break;
	case 1: /* no fingerprint */
		reply->json = json_pack("{s:s, s:s}", "device_id", "device-7f3a", "serial", SERIAL);
		break;
	case 2: /* another bundle's fingerprint */
		reply->json = json_pack("{s:s, s:s, s:s}", "device_id", "device-7f3a", "serial",
		                        SERIAL, "fingerprint",
		                        "00000000000000000000000000000000"
		                        "00000000000000000000000000000000");
		break;
	case 3: /* another device id */
		reply->json = json_pack("{s:s, s:s, s:s}", "device_id", "device-0000", "serial",
		                        SERIAL, "fingerprint", fk->fingerprint);
		break;
	case 4: /* upper-case hex */
	{
		char up[65];
		for (int i = 0; i < 65; i++)
			up[i] = (char)(fk->fingerprint[i] >= 'a' ? fk->fingerprint[i] - 32
			                                         : fk->fingerprint[i]);
		reply->json = json_pack("{s:s, s:s, s:s}", "device_id", "device-7f3a", "serial",
		                        SERIAL, "fingerprint", up);
		break;
	}
	default: /* a number for the serial */
		reply->json = json_pack("{s:s, s:i, s:s}", "device_id", "device-7f3a", "serial", 7,
		                        "fingerprint", fk->fingerprint);
		break;
	}
	return reply->json ? 0 : BK_ENOMEM;
}

static void test_client_checks_answer(void)
{
	fixture f;
	session s;
	fake fk;
	uint8_t *b = NULL;
	size_t n = 0;
	char *ans = NULL;
	spec sp = {0};
	REQUIRE_OK(fx_init(&f));
	REQUIRE_OK(make_bundle(&b, &n, &f, &sp));
	memset(&fk, 0, sizeof(fk));
	bundle_fingerprint(b, n, fk.fingerprint);
	REQUIRE_OK(session_open(&s, &f, NULL, fake_install, &fk));
	CHECK_OK(bk_device_identity_install(s.dev, b, n, &ans, 0));
	CHECK(ans != NULL);
	bk_free(ans);
	for (fk.mode = 1; fk.mode <= 5; fk.mode++) {
		ans = NULL;
		CHECK_EQ(bk_device_identity_install(s.dev, b, n, &ans, 0), BK_EFORMAT);
		CHECK(last_is(BK_EFORMAT, "bad-answer"));
		CHECK(ans == NULL);
	}
	CHECK_OK(session_close(&s));
	free(b);
	fx_free(&f);
}

/* --- aibo-vdev serve ------------------------------------------------------------ */

static void test_vdev_serve(void)
{
	const char *vdev = getenv("AIBO_VDEV");
	fixture f;
	bk_device *dev = NULL;
	bk_device_opts o;
	uint8_t *b = NULL;
	size_t n = 0;
	char sock[600], uri[700], line[800], fp[65];
	int pipefd[2];
	spec sp = {0};
	/* tests.cmake points AIBO_VDEV at the program it builds. */
	REQUIRE(vdev != NULL && access(vdev, X_OK) == 0);
	REQUIRE_OK(fx_init(&f));
	REQUIRE_OK(make_bundle(&b, &n, &f, &sp));
	bundle_fingerprint(b, n, fp);
	snprintf(sock, sizeof(sock), "%s", bk_test_path("unit.sock"));
	snprintf(uri, sizeof(uri), "unix:%s", sock);
	REQUIRE(pipe(pipefd) == 0);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		dup2(pipefd[1], 1);
		close(pipefd[0]);
		close(pipefd[1]);
		execl(vdev, "aibo-vdev", "serve", f.unit, "--listen", uri, (char *)NULL);
		_exit(127);
	}
	close(pipefd[1]);
	FILE *out = fdopen(pipefd[0], "r");
	REQUIRE(out != NULL);
	bool listening =
	    fgets(line, sizeof(line), out) != NULL && strncmp(line, "listening on ", 13) == 0;
	CHECK(listening);
	if (listening) {
		fx_opts(&f, &o);
		CHECK_OK(bk_device_open(&dev, uri, &o));
	}
	if (dev) {
		char *ans = NULL, *id = NULL, *want = expected_identity("device-7f3a", fp);
		CHECK_OK(bk_device_identity_install(dev, b, n, &ans, 0));
		bk_free(ans);
		id = info_identity(dev);
		CHECK_STR(id, want);
		free(id);
		bk_device_free(dev);
		dev = NULL;
		/* Restarted, the program reports it again. */
		kill(pid, SIGTERM);
		int status = 0;
		waitpid(pid, &status, 0);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		fclose(out);
		out = NULL;
		REQUIRE(pipe(pipefd) == 0);
		pid = fork();
		REQUIRE(pid >= 0);
		if (pid == 0) {
			dup2(pipefd[1], 1);
			close(pipefd[0]);
			close(pipefd[1]);
			execl(vdev, "aibo-vdev", "serve", f.unit, "--listen", uri, (char *)NULL);
			_exit(127);
		}
		close(pipefd[1]);
		out = fdopen(pipefd[0], "r");
		bool again = out && fgets(line, sizeof(line), out) &&
		             strncmp(line, "listening on ", 13) == 0;
		CHECK(again);
		if (again) {
			CHECK_OK(bk_device_open(&dev, uri, &o));
			id = dev ? info_identity(dev) : NULL;
			CHECK_STR(id, want);
			free(id);
			bk_device_free(dev);
		}
		free(want);
	}
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	if (out)
		fclose(out);
	free(b);
	fx_free(&f);
}

BK_RUN_TESTS(BK_TEST(test_install_info_power_cycle), BK_TEST(test_install_twice),
             BK_TEST(test_newer_replaces_older_refused), BK_TEST(test_refuse_other_serial),
             BK_TEST(test_refuse_other_keys), BK_TEST(test_refuse_unverifiable),
             BK_TEST(test_refuse_malformed), BK_TEST(test_power_loss),
             BK_TEST(test_client_checks_answer), BK_TEST(test_vdev_serve))
