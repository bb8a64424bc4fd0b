/* Firmware bundles: manifest parsing, versions, pack/open/verify, every
 * refusal reason, payload streams, selection and listing, allocation
 * failures. */
#include <archive.h>
#include <archive_entry.h>
#include <ctype.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libbackup/firmware.h>
#include <libbackup/libbackup.h>

#include "crypto/minisign.h"
#include "firmware/firmware_internal.h"
#include "libbackup/util/util.h"
#include "testlib.h"

#define MiB (1024 * 1024)

/* --- Helpers ----------------------------------------------------------------- */

static char *tpath(const char *name)
{
	char *p = strdup(bk_test_path(name));
	if (p == NULL)
		abort();
	return p;
}

/* Writes <dir>/<name>.key and <dir>/<name>.pub; the key id into `id`. */
static int make_key(const char *dir, const char *name, char id[17])
{
	bk_minisign_seckey *sk = NULL;
	bk_minisign_pubkey pk;
	char path[4096];
	int rc = bk_mkdir_p(dir, 0700);
	if (rc == 0)
		rc = bk_minisign_keygen(&sk);
	if (rc == 0) {
		snprintf(path, sizeof(path), "%s/%s.key", dir, name);
		rc = bk_minisign_seckey_write(path, sk, NULL, 0, 0);
	}
	if (rc == 0) {
		bk_minisign_seckey_pubkey(sk, &pk);
		bk_minisign_key_id_hex(id, pk.key_id);
		snprintf(path, sizeof(path), "%s/%s.pub", dir, name);
		rc = bk_minisign_pubkey_write(path, &pk);
	}
	bk_minisign_seckey_free(sk);
	return rc;
}

static int write_image(const char *path, size_t size, uint32_t seed)
{
	uint8_t *d = malloc(size ? size : 1);
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < size; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		d[i] = (uint8_t)x;
	}
	int rc = bk_file_write_atomic(path, d, size, 0644, 0);
	free(d);
	return rc;
}

static uint8_t *slurp(const char *path, size_t *len)
{
	uint8_t *d = NULL;
	if (bk_file_read(path, (size_t)1 << 30, &d, len) != 0)
		return NULL;
	return d;
}

static int spit(const char *path, const uint8_t *d, size_t len)
{
	unlink(path);
	return bk_file_write_atomic(path, d, len, 0644, 0);
}

typedef struct fixture {
	char *keys; /* folder with a.key/a.pub, b.key/b.pub */
	char *a_key, *a_pub, *b_key;
	char a_id[17], b_id[17];
	char *img[3];
} fixture;

static fixture fx;

static int fixture_setup(void)
{
	memset(&fx, 0, sizeof(fx));
	fx.keys = tpath("keys");
	fx.a_key = tpath("keys/a.key");
	fx.a_pub = tpath("keys/a.pub");
	fx.b_key = tpath("keys/b.key");
	if (make_key(fx.keys, "a", fx.a_id) || make_key(fx.keys, "b", fx.b_id))
		return -1;
	static const size_t sizes[] = {3 * MiB + 17, 1 * MiB, 4096};
	for (int i = 0; i < 3; i++) {
		char name[32];
		snprintf(name, sizeof(name), "img%d.bin", i);
		fx.img[i] = tpath(name);
		if (write_image(fx.img[i], sizes[i], (uint32_t)i + 1))
			return -1;
	}
	return 0;
}

static void fixture_free(void)
{
	free(fx.keys);
	free(fx.a_key);
	free(fx.a_pub);
	free(fx.b_key);
	for (int i = 0; i < 3; i++)
		free(fx.img[i]);
}

static const char *const models_default[] = {"ERS-1000", "ERS-1000J", NULL};

typedef struct spec {
	const char *version;
	uint32_t counter;
	int64_t schema_min, schema_max;
	const char *const *models;
	const char *hw_min, *hw_max;
	int images; /* 1..3 */
	const char *key;
} spec;

static spec spec_default(void)
{
	spec s = {"1.2.0", 5, 1, 3, models_default, "1", "2.5", 1, NULL};
	return s;
}

static int pack(const char *path, const spec *s)
{
	static const char *const names[] = {"rootfs.img", "kernel.img", "data.img"};
	static const char *const slots[] = {"rootfs", "kernel", "data"};
	bk_fw_image images[3];
	bk_fw_pack_opts o = BK_FW_PACK_OPTS_INIT;
	for (int i = 0; i < s->images; i++) {
		images[i].name = names[i];
		images[i].path = fx.img[i];
		images[i].slot = slots[i];
	}
	o.models = s->models;
	o.hw_rev_min = s->hw_min;
	o.hw_rev_max = s->hw_max;
	o.fw_version = s->version;
	o.security_counter = s->counter;
	o.schema_min = s->schema_min;
	o.schema_max = s->schema_max;
	o.images = images;
	o.image_count = (size_t)s->images;
	o.created = 1795000000;
	o.secret_key = s->key ? s->key : fx.a_key;
	return bk_fw_bundle_pack(path, &o);
}

/* Opens and fully verifies against key a (or `keys`); returns the code. */
static int open_verify(const char *path, const char *keys, const char *const *revoked,
                       const bk_fw_unit *unit)
{
	bk_fw_bundle *b = NULL;
	bk_fw_verify_opts vo = BK_FW_VERIFY_OPTS_INIT;
	vo.trusted_keys = keys ? keys : fx.a_pub;
	vo.revoked_key_ids = revoked;
	vo.unit = unit;
	int rc = bk_fw_bundle_open(&b, path);
	if (rc == 0)
		rc = bk_fw_bundle_verify(b, &vo);
	bk_fw_bundle_free(b);
	return rc;
}

#define CHECK_FAILS(expr, code, why)                                                               \
	do {                                                                                       \
		int rcx_ = (expr);                                                                 \
		CHECK_EQ(rcx_, code);                                                              \
		if (rcx_ != 0)                                                                     \
			CHECK_STR(bk_error_last()->reason, why);                                   \
	} while (0)

/* --- Versions and manifest ------------------------------------------------------ */

static int vcmp(const char *a, const char *b)
{
	int c = 99;
	if (bk_fw_version_compare(a, b, &c) != 0)
		return 99;
	return c;
}

static void test_semver(void)
{
	static const char *const valid[] = {
	    "0.0.0",          "1.2.3",          "10.20.30",
	    "1.0.0-alpha",    "1.0.0-alpha.1",  "1.0.0-0.3.7",
	    "1.0.0-x.7.z.92", "1.0.0-x-y-z.--", "99999999999999999999.0.0"};
	static const char *const invalid[] = {
	    "",
	    "1",
	    "1.2",
	    "1.2.3.4",
	    "01.2.3",
	    "1.02.3",
	    "1.2.03",
	    "v1.2.3",
	    "1.2.3-",
	    "1.2.3-01",
	    "1.2.3-a..b",
	    "1.2.3+build",
	    "1.2.3-a+b",
	    " 1.2.3",
	    "1.2.3 ",
	    "1.2.3-Ω",
	    "-1.2.3",
	    "1.2.-3",
	    "1.2.3-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
	for (size_t i = 0; i < BK_ARRAY_LEN(valid); i++) {
		CHECK_OK(bk_fw_version_check(valid[i]));
	}
	for (size_t i = 0; i < BK_ARRAY_LEN(invalid); i++) {
		int rc = bk_fw_version_check(invalid[i]);
		if (rc != BK_EFORMAT)
			fprintf(stderr, "  accepted '%s'\n", invalid[i]);
		CHECK_EQ(rc, BK_EFORMAT);
	}
	CHECK_STR(bk_error_last()->reason, "bad-version");
	/* The precedence chain of semver.org, item 11. */
	static const char *const chain[] = {"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta",
	                                    "1.0.0-beta",  "1.0.0-beta.2",  "1.0.0-beta.11",
	                                    "1.0.0-rc.1",  "1.0.0",         "1.0.1",
	                                    "1.1.0",       "2.0.0",         "2.0.10",
	                                    "10.0.0"};
	for (size_t i = 0; i < BK_ARRAY_LEN(chain); i++) {
		CHECK_EQ(vcmp(chain[i], chain[i]), 0);
		for (size_t j = i + 1; j < BK_ARRAY_LEN(chain); j++) {
			CHECK_EQ(vcmp(chain[i], chain[j]), -1);
			CHECK_EQ(vcmp(chain[j], chain[i]), 1);
		}
	}
	CHECK_EQ(vcmp("1.0.0-2", "1.0.0-10"), -1);  /* numeric, not text */
	CHECK_EQ(vcmp("1.0.0-10", "1.0.0-1a"), -1); /* numeric before alphanumeric */
	CHECK_EQ(vcmp("1.0.0-a", "1.0.0-a.0"), -1);
	CHECK_EQ(vcmp("99999999999999999999.0.0", "9999999999999999999.0.0"), 1);
	CHECK_EQ(vcmp("1.2.3", "1.2"), 99);
	/* Hardware revisions. */
	int c = 5;
	CHECK_OK(bk_fw_hw_rev_compare("1", "1.0", &c));
	CHECK_EQ(c, 0);
	CHECK_OK(bk_fw_hw_rev_compare("1.9", "1.10", &c));
	CHECK_EQ(c, -1);
	CHECK_OK(bk_fw_hw_rev_compare("10", "9.9", &c));
	CHECK_EQ(c, 1);
	CHECK_EQ(bk_fw_hw_rev_compare("1.", "1", &c), BK_EFORMAT);
	CHECK_EQ(bk_fw_hw_rev_compare("01", "1", &c), BK_EFORMAT);
	CHECK_EQ(bk_fw_hw_rev_compare("a", "1", &c), BK_EFORMAT);
}

static const char canonical[] =
    "{\"created\":\"2026-11-28T16:11:56Z\",\"format\":\"aibo-firmware/1\",\"hw_rev\":"
    "{\"max\":\"3\",\"min\":\"1\"},\"models\":[\"ERS-1000\"],\"payloads\":[{\"blake2b\":\""
    "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000\",\"name\":\"rootfs.img\",\"size\":10,"
    "\"slot\":\"rootfs\"}],\"schema\":{\"max\":3,\"min\":1},\"security_counter\":4,"
    "\"version\":\"3.1.0-rc.2\"}\n";

/* Replaces the first `from` in the canonical manifest and parses it. */
static int parse_variant(const char *from, const char *to)
{
	char buf[4096];
	const char *at = strstr(canonical, from);
	if (at == NULL)
		return 1000;
	snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(at - canonical), canonical, to,
	         at + strlen(from));
	bk_fw_manifest *m = NULL;
	int rc = bk_fw__manifest_parse(&m, (const uint8_t *)buf, strlen(buf));
	bk_fw__manifest_free(m);
	return rc;
}

static void test_manifest(void)
{
	bk_fw_manifest *m = NULL;
	REQUIRE_OK(bk_fw__manifest_parse(&m, (const uint8_t *)canonical, strlen(canonical)));
	CHECK_STR(m->version, "3.1.0-rc.2");
	CHECK_EQ(m->security_counter, 4);
	CHECK_EQ(m->model_count, 1);
	CHECK_STR(m->models[0], "ERS-1000");
	CHECK_EQ(m->payload_count, 1);
	CHECK_EQ(m->payloads[0].size, 10);
	CHECK_STR(m->hw_rev_max, "3");
	CHECK_EQ(m->schema_max, 3);
	/* Encoding gives back the same bytes. */
	bk_buf out = BK_BUF_INIT;
	CHECK_OK(bk_fw__manifest_encode(m, &out));
	CHECK(out.len == strlen(canonical) && memcmp(out.data, canonical, out.len) == 0);
	bk_buf_free(&out);
	bk_fw__manifest_free(m);

	CHECK_EQ(parse_variant("}\n", "}"), BK_EFORMAT); /* no final newline */
	CHECK_STR(bk_error_last()->reason, "manifest-not-canonical");
	CHECK_EQ(parse_variant("\"format\":", " \"format\":"), BK_EFORMAT);
	CHECK_STR(bk_error_last()->reason, "manifest-not-canonical");
	CHECK_EQ(parse_variant("{\"created\"", "{\"zzz\":1,\"created\""), BK_EFORMAT);
	CHECK_STR(bk_error_last()->reason, "bad-manifest");
	CHECK_EQ(parse_variant("\"created\":\"2026-11-28T16:11:56Z\",", ""), BK_EFORMAT);
	CHECK_EQ(parse_variant("{\"created\"", "{\"format\":\"x\",\"created\""), BK_EFORMAT);
	CHECK_EQ(parse_variant("aibo-firmware/1", "aibo-firmware/2"), BK_EFORMAT);
	CHECK_STR(bk_error_last()->reason, "bad-manifest-format");
	CHECK_EQ(parse_variant("3.1.0-rc.2", "3.1"), BK_EFORMAT);
	CHECK_STR(bk_error_last()->reason, "bad-version");
	CHECK_EQ(parse_variant("rootfs.img", "../etc/x"), BK_EFORMAT);
	CHECK_STR(bk_error_last()->reason, "unsafe-name");
	CHECK_EQ(parse_variant("rootfs.img", "manifest.json"), BK_EFORMAT);
	CHECK_EQ(parse_variant("\"size\":10", "\"size\":-1"), BK_EFORMAT);
	CHECK_EQ(parse_variant("\"size\":10", "\"size\":1.5"), BK_EFORMAT);
	CHECK_EQ(parse_variant("\"security_counter\":4", "\"security_counter\":4294967296"),
	         BK_EFORMAT);
	CHECK_EQ(parse_variant("\"max\":3,\"min\":1}", "\"max\":0,\"min\":1}"), BK_EFORMAT);
	CHECK_EQ(parse_variant("\"max\":\"3\"", "\"max\":\"0\""), BK_EFORMAT);
	CHECK_EQ(parse_variant("2026-11-28T16", "2026-02-30T16"), BK_EFORMAT);
	CHECK_EQ(parse_variant("[\"ERS-1000\"]", "[]"), BK_EFORMAT);
	CHECK_EQ(parse_variant("[\"ERS-1000\"]", "[\"ERS-1000\",\"ERS-1000\"]"), BK_EFORMAT);
	CHECK_EQ(parse_variant("\"blake2b\":\"00", "\"blake2b\":\"0"), BK_EFORMAT);
	CHECK_EQ(parse_variant("\"blake2b\":\"00", "\"blake2b\":\"AA"), BK_EFORMAT);
	/* Duplicate keys are refused by the JSON parser itself. */
	CHECK_EQ(parse_variant("\"security_counter\":4,",
	                       "\"security_counter\":4,\"security_counter\":4,"),
	         BK_EFORMAT);
	CHECK_EQ(parse_variant("{\"created\"", "[{\"created\""), BK_EFORMAT);
	/* Size cap. */
	size_t big = BK_FW_MANIFEST_MAX + 1;
	uint8_t *junk = calloc(1, big);
	REQUIRE(junk != NULL);
	CHECK_EQ(bk_fw__manifest_parse(&m, junk, big), BK_EFORMAT);
	CHECK_STR(bk_error_last()->reason, "manifest-too-large");
	free(junk);
}

/* --- Round trips --------------------------------------------------------------- */

typedef struct collect {
	crypto_generichash_state h[3];
	uint64_t bytes[3];
	size_t calls;
	int stop_at; /* return 1 at this call (1-based), 0: never */
} collect;

static int collect_cb(const bk_fw_payload_info *info, bk_stream *data, void *payload)
{
	collect *c = payload;
	uint8_t buf[10000];
	c->calls++;
	if (c->stop_at && (int)c->calls == c->stop_at)
		return 1;
	uint64_t size = 0;
	if (bk_stream_ctrl(data, BK_STREAM_CTRL_SIZE, &size) != 0 || size != info->size)
		return BK_ERROR;
	crypto_generichash_init(&c->h[info->index], NULL, 0, 64);
	for (;;) {
		size_t n;
		int rc = bk_stream_read(data, buf, sizeof(buf), &n, BK_DEADLINE_NONE);
		if (rc)
			return rc;
		if (n == 0)
			return 0;
		crypto_generichash_update(&c->h[info->index], buf, n);
		c->bytes[info->index] += n;
	}
}

static void file_digest(const char *path, uint8_t out[64])
{
	size_t len;
	uint8_t *d = slurp(path, &len);
	crypto_generichash(out, 64, d, len, NULL, 0);
	free(d);
}

static void round_trip(int images, int key_folder)
{
	REQUIRE(fixture_setup() == 0);
	const char *keys = key_folder ? fx.keys : fx.a_pub;
	char *path = tpath("fw.aifw");
	spec s = spec_default();
	s.images = images;
	bk_fw_bundle *b = NULL;
	REQUIRE_OK(pack(path, &s));
	struct stat st;
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0644);
	CHECK(access(bk_test_path("fw.aifw.part"), F_OK) != 0);
	REQUIRE_OK(bk_fw_bundle_open(&b, path));
	CHECK_STR(bk_fw_bundle_version(b), "1.2.0");
	CHECK_EQ(bk_fw_bundle_security_counter(b), 5);
	CHECK_EQ(bk_fw_bundle_model_count(b), 2);
	CHECK_STR(bk_fw_bundle_model(b, 1), "ERS-1000J");
	CHECK(bk_fw_bundle_model(b, 2) == NULL);
	CHECK_STR(bk_fw_bundle_hw_rev_min(b), "1");
	CHECK_STR(bk_fw_bundle_hw_rev_max(b), "2.5");
	CHECK_EQ(bk_fw_bundle_schema_min(b), 1);
	CHECK_EQ(bk_fw_bundle_schema_max(b), 3);
	CHECK_STR(bk_fw_bundle_created(b), "2026-11-18T11:06:40Z");
	CHECK_EQ(bk_fw_bundle_payload_count(b), (size_t)images);
	CHECK(bk_fw_bundle_key_id(b) == NULL);
	bk_fw_payload_info info;
	CHECK_OK(bk_fw_bundle_payload(b, 0, &info));
	CHECK_STR(info.name, "rootfs.img");
	CHECK_STR(info.slot, "rootfs");
	CHECK_EQ(info.size, 3 * MiB + 17);
	CHECK_EQ(bk_fw_bundle_payload(b, (size_t)images, &info), BK_EINVALID);
	size_t ml, sl;
	const uint8_t *man = bk_fw_bundle_manifest(b, &ml);
	const uint8_t *sig = bk_fw_bundle_signature(b, &sl);
	CHECK(ml > 100 && man[ml - 1] == '\n');
	CHECK(sl > 100 && memcmp(sig, "untrusted comment: ", 19) == 0);
	/* Payloads are not handed out before the signature is checked. */
	collect c;
	memset(&c, 0, sizeof(c));
	CHECK_EQ(bk_fw_bundle_payloads(b, collect_cb, &c), BK_EINVALID);
	CHECK_STR(bk_error_last()->reason, "bundle-unverified");
	bk_fw_verify_opts vo = BK_FW_VERIFY_OPTS_INIT;
	vo.trusted_keys = keys;
	bk_fw_unit unit = BK_FW_UNIT_INIT;
	unit.model = "ERS-1000J";
	unit.hw_rev = "2.5";
	unit.security_counter = 5;
	unit.schema = 3;
	vo.unit = &unit;
	REQUIRE_OK(bk_fw_bundle_verify(b, &vo));
	CHECK_STR(bk_fw_bundle_key_id(b), fx.a_id);
	/* The streamed bytes are the images. */
	CHECK_OK(bk_fw_bundle_payloads(b, collect_cb, &c));
	CHECK_EQ(c.calls, (size_t)images);
	for (int i = 0; i < images; i++) {
		uint8_t got[64], want[64];
		crypto_generichash_final(&c.h[i], got, 64);
		file_digest(fx.img[i], want);
		CHECK(memcmp(got, want, 64) == 0);
		CHECK_OK(bk_fw_bundle_payload(b, (size_t)i, &info));
		char hex[129];
		bk_hex_encode(hex, want, 64);
		CHECK_STR(info.blake2b, hex);
	}
	/* A callback that stops cancels. */
	memset(&c, 0, sizeof(c));
	c.stop_at = images;
	CHECK_FAILS(bk_fw_bundle_payloads(b, collect_cb, &c), BK_ECANCELLED, "cancelled");
	bk_fw_bundle_free(b);
	/* An existing bundle is kept when exclusive; replaced otherwise. */
	bk_fw_pack_opts o = BK_FW_PACK_OPTS_INIT;
	bk_fw_image im = {"rootfs.img", fx.img[2], "rootfs"};
	o.models = models_default;
	o.hw_rev_min = "1";
	o.hw_rev_max = "1";
	o.fw_version = "9.9.9";
	o.images = &im;
	o.image_count = 1;
	o.secret_key = fx.a_key;
	o.exclusive = 1;
	CHECK_EQ(bk_fw_bundle_pack(path, &o), BK_EEXIST);
	REQUIRE_OK(bk_fw_bundle_open(&b, path));
	CHECK_STR(bk_fw_bundle_version(b), "1.2.0");
	bk_fw_bundle_free(b);
	free(path);
	fixture_free();
}

static void test_round_trip_one(void)
{
	round_trip(1, 0);
}

static void test_round_trip_several_key_folder(void)
{
	/* Two keys in the folder: a signs; b is the rotation key. */
	round_trip(3, 1);
}

static void test_pack_refuses(void)
{
	REQUIRE(fixture_setup() == 0);
	char *path = tpath("bad.aifw");
	spec s = spec_default();
	s.version = "1.2";
	CHECK_FAILS(pack(path, &s), BK_EFORMAT, "bad-version");
	s = spec_default();
	s.hw_min = "3";
	CHECK_EQ(pack(path, &s), BK_EFORMAT);
	s = spec_default();
	static const char *const none[] = {NULL};
	s.models = none;
	CHECK_EQ(pack(path, &s), BK_EFORMAT);
	s = spec_default();
	s.key = fx.a_pub; /* not a secret key */
	CHECK(pack(path, &s) != 0);
	/* A key readable by others is refused. */
	chmod(fx.a_key, 0644);
	s = spec_default();
	CHECK_EQ(pack(path, &s), BK_EAUTH);
	chmod(fx.a_key, 0600);
	bk_fw_pack_opts o = BK_FW_PACK_OPTS_INIT;
	bk_fw_image im = {"../up", fx.img[2], "rootfs"};
	o.models = models_default;
	o.hw_rev_min = o.hw_rev_max = "1";
	o.fw_version = "1.0.0";
	o.images = &im;
	o.image_count = 1;
	o.secret_key = fx.a_key;
	CHECK_FAILS(bk_fw_bundle_pack(path, &o), BK_EFORMAT, "unsafe-name");
	im.name = "x.img";
	im.path = "/nonexistent/image";
	CHECK_EQ(bk_fw_bundle_pack(path, &o), BK_ENOTFOUND);
	CHECK(access(path, F_OK) != 0);
	CHECK(access(bk_test_path("bad.aifw.part"), F_OK) != 0);
	free(path);
	fixture_free();
}

/* --- Integrity and signature ------------------------------------------------------ */

static void test_tampered(void)
{
	REQUIRE(fixture_setup() == 0);
	char *path = tpath("fw.aifw"), *bad = tpath("bad.aifw");
	spec s = spec_default();
	s.images = 2;
	REQUIRE_OK(pack(path, &s));
	CHECK_OK(open_verify(path, NULL, NULL, NULL));
	size_t len, ilen;
	uint8_t *d = slurp(path, &len), *img = slurp(fx.img[1], &ilen);
	REQUIRE(d != NULL && img != NULL);
	/* A flipped byte in the second payload. */
	uint8_t *at = memmem(d, len, img, 4096);
	REQUIRE(at != NULL);
	at[ilen / 2] ^= 1;
	REQUIRE_OK(spit(bad, d, len));
	CHECK_FAILS(open_verify(bad, NULL, NULL, NULL), BK_EVERIFY, "payload-digest-mismatch");
	at[ilen / 2] ^= 1;
	/* The manifest, changed in a way that stays canonical. */
	uint8_t *v = memmem(d, len, "\"version\":\"1.2.0\"", 17);
	REQUIRE(v != NULL);
	v[15] = '1';
	REQUIRE_OK(spit(bad, d, len));
	CHECK_FAILS(open_verify(bad, NULL, NULL, NULL), BK_EVERIFY, "bad-signature");
	v[15] = '0';
	/* The signature itself, damaged: one base64 character of the signature line. */
	uint8_t *sl = memmem(d, len, "\nRU", 3);
	REQUIRE(sl != NULL);
	sl[40] = sl[40] == 'A' ? 'B' : 'A';
	REQUIRE_OK(spit(bad, d, len));
	CHECK_FAILS(open_verify(bad, NULL, NULL, NULL), BK_EVERIFY, "bad-signature");
	free(d);
	free(img);
	/* Truncated in the middle of the first payload. */
	d = slurp(path, &len);
	REQUIRE_OK(spit(bad, d, len / 2));
	CHECK_FAILS(open_verify(bad, NULL, NULL, NULL), BK_EVERIFY, "payload-truncated");
	/* Cut at many points: a clean error whenever a signed byte is missing
	 * (cutting only the archive's end padding loses nothing). */
	size_t ilen2;
	uint8_t *img2 = slurp(fx.img[1], &ilen2);
	uint8_t *last = memmem(d, len, img2, 4096);
	REQUIRE(last != NULL);
	size_t data_end = (size_t)(last - d) + ilen2;
	free(img2);
	for (size_t cut = 0; cut < len; cut += cut < 8192 ? 257 : 300007) {
		REQUIRE_OK(spit(bad, d, cut));
		int rc = open_verify(bad, NULL, NULL, NULL);
		if (cut < data_end && rc != BK_EFORMAT && rc != BK_EVERIFY)
			fprintf(stderr, "  cut %zu: %d %s\n", cut, rc, bk_error_last()->message);
		CHECK(cut >= data_end || rc == BK_EFORMAT || rc == BK_EVERIFY);
	}
	REQUIRE_OK(spit(bad, d, data_end - 1));
	CHECK_FAILS(open_verify(bad, NULL, NULL, NULL), BK_EVERIFY, "payload-truncated");
	free(d);
	free(path);
	free(bad);
	fixture_free();
}

static void test_keys(void)
{
	REQUIRE(fixture_setup() == 0);
	char *path = tpath("fw.aifw"), *other = tpath("other");
	char other_id[17];
	REQUIRE_OK(make_key(other, "c", other_id));
	spec s = spec_default();
	REQUIRE_OK(pack(path, &s));
	char *c_pub = tpath("other/c.pub");
	CHECK_FAILS(open_verify(path, c_pub, NULL, NULL), BK_EVERIFY, "unknown-key");
	CHECK(strstr(bk_error_last()->message, fx.a_id) != NULL);
	/* Revoked, whatever the case of the id. */
	char lower[17];
	for (int i = 0; i < 17; i++)
		lower[i] = (char)tolower((unsigned char)fx.a_id[i]);
	const char *const revoked[] = {"0000000000000000", lower, NULL};
	CHECK_FAILS(open_verify(path, fx.keys, revoked, NULL), BK_EVERIFY, "key-revoked");
	/* As minisign prints it, without leading zeros. */
	char padded[18] = "0";
	memcpy(padded + 1, fx.a_id, 17);
	const char *const revoked_padded[] = {padded, NULL};
	CHECK_FAILS(open_verify(path, fx.keys, revoked_padded, NULL), BK_EVERIFY, "key-revoked");
	const char *const revoked_b[] = {fx.b_id, NULL};
	CHECK_OK(open_verify(path, fx.keys, revoked_b, NULL));
	/* Signed with b: trusted through the folder, not through a.pub. */
	s.key = fx.b_key;
	REQUIRE_OK(pack(path, &s));
	CHECK_OK(open_verify(path, fx.keys, NULL, NULL));
	CHECK_FAILS(open_verify(path, fx.a_pub, NULL, NULL), BK_EVERIFY, "unknown-key");
	/* No keys at all. */
	CHECK_EQ(open_verify(path, bk_test_path("nokeys"), NULL, NULL), BK_ENOTFOUND);
	REQUIRE_OK(bk_mkdir_p(bk_test_path("empty"), 0700));
	CHECK_FAILS(open_verify(path, bk_test_path("empty"), NULL, NULL), BK_ENOTFOUND,
	            "no-trusted-keys");
	free(c_pub);
	free(path);
	free(other);
	fixture_free();
}

static void test_compat(void)
{
	REQUIRE(fixture_setup() == 0);
	char *path = tpath("fw.aifw");
	spec s = spec_default(); /* models ERS-1000(J), hw 1..2.5, counter 5, schema 1..3 */
	REQUIRE_OK(pack(path, &s));
	bk_fw_unit u = BK_FW_UNIT_INIT;
	u.model = "ERS-1000";
	u.hw_rev = "1.0";
	u.security_counter = 5;
	u.schema = 1;
	CHECK_OK(open_verify(path, NULL, NULL, &u));
	u.model = "ERS-2000";
	CHECK_FAILS(open_verify(path, NULL, NULL, &u), BK_EINCOMPAT, "wrong-model");
	u.model = "ERS-1000";
	u.hw_rev = "2.6";
	CHECK_FAILS(open_verify(path, NULL, NULL, &u), BK_EINCOMPAT, "wrong-hw-rev");
	u.hw_rev = "0.9";
	CHECK_FAILS(open_verify(path, NULL, NULL, &u), BK_EINCOMPAT, "wrong-hw-rev");
	u.hw_rev = "2.5";
	u.security_counter = 6;
	CHECK_FAILS(open_verify(path, NULL, NULL, &u), BK_EINCOMPAT, "security-counter-rollback");
	u.security_counter = 0;
	u.schema = 4;
	CHECK_FAILS(open_verify(path, NULL, NULL, &u), BK_EINCOMPAT, "schema-unsupported");
	u.schema = 0;
	CHECK_FAILS(open_verify(path, NULL, NULL, &u), BK_EINCOMPAT, "schema-unsupported");
	u.schema = -1;
	CHECK_OK(open_verify(path, NULL, NULL, &u));
	free(path);
	fixture_free();
}

/* --- Entries ------------------------------------------------------------------- */

typedef struct entry {
	char name[128];
	uint8_t *data;
	size_t len;
} entry;

/* Reads the entries of a (small) tar. */
static size_t read_entries(const char *path, entry *out, size_t max)
{
	struct archive *a = archive_read_new();
	struct archive_entry *e;
	size_t n = 0;
	archive_read_support_format_tar(a);
	if (archive_read_open_filename(a, path, 65536) != ARCHIVE_OK)
		return 0;
	while (n < max && archive_read_next_header(a, &e) == ARCHIVE_OK) {
		snprintf(out[n].name, sizeof(out[n].name), "%s", archive_entry_pathname(e));
		out[n].len = (size_t)archive_entry_size(e);
		out[n].data = malloc(out[n].len + 1);
		archive_read_data(a, out[n].data, out[n].len);
		n++;
	}
	archive_read_free(a);
	return n;
}

enum { KIND_FILE, KIND_SYMLINK, KIND_HARDLINK, KIND_DIR };

/* Writes a tar of the entries at `order` (indexes, -1 ends), optionally one
 * extra entry of `kind` named `extra` at the end, and a filter. */
static int write_entries(const char *path, const entry *ents, const int *order, const char *extra,
                         int kind, int gzip)
{
	struct archive *a = archive_write_new();
	archive_write_set_format_pax_restricted(a);
	if (gzip)
		archive_write_add_filter_gzip(a);
	unlink(path);
	if (archive_write_open_filename(a, path) != ARCHIVE_OK)
		return -1;
	for (int i = 0;; i++) {
		int last = order[i] < 0;
		if (last && extra == NULL)
			break;
		struct archive_entry *e = archive_entry_new();
		const entry *src = last ? &ents[2] : &ents[order[i]];
		archive_entry_set_pathname(e, last ? extra : src->name);
		archive_entry_set_perm(e, 0644);
		if (last && kind == KIND_SYMLINK) {
			archive_entry_set_filetype(e, AE_IFLNK);
			archive_entry_set_symlink(e, "rootfs.img");
		} else if (last && kind == KIND_HARDLINK) {
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_hardlink(e, "rootfs.img");
		} else if (last && kind == KIND_DIR) {
			archive_entry_set_filetype(e, AE_IFDIR);
		} else {
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_size(e, (la_int64_t)src->len);
		}
		archive_write_header(a, e);
		if (archive_entry_filetype(e) == AE_IFREG && archive_entry_hardlink(e) == NULL)
			archive_write_data(a, src->data, src->len);
		archive_entry_free(e);
		if (last)
			break;
	}
	archive_write_close(a);
	archive_write_free(a);
	return 0;
}

static void test_entries(void)
{
	REQUIRE(fixture_setup() == 0);
	char *path = tpath("fw.aifw"), *bad = tpath("bad.aifw");
	spec s = spec_default();
	s.images = 3;
	REQUIRE_OK(pack(path, &s));
	entry ents[8];
	memset(ents, 0, sizeof(ents));
	size_t n = read_entries(path, ents, 8);
	REQUIRE(n == 5);
	CHECK_STR(ents[0].name, "manifest.json");
	CHECK_STR(ents[1].name, "manifest.json.minisig");
	CHECK_STR(ents[2].name, "rootfs.img");
	/* Rewritten as is (by another tar writer): still valid. */
	static const int same[] = {0, 1, 2, 3, 4, -1};
	REQUIRE(write_entries(bad, ents, same, NULL, 0, 0) == 0);
	CHECK_OK(open_verify(bad, NULL, NULL, NULL));
	static const struct {
		int order[8];
		const char *extra;
		int kind;
		int gzip;
		int open_fails;
		int code;
		const char *reason;
	} cases[] = {
	    {{0, 1, 2, 3, 4, -1}, "extra.bin", KIND_FILE, 0, 0, BK_EFORMAT, "unexpected-entry"},
	    {{0, 1, 2, 3, -1}, NULL, 0, 0, 0, BK_EFORMAT, "missing-entry"},
	    {{0, 1, 2, 4, 3, -1}, NULL, 0, 0, 0, BK_EFORMAT, "entry-out-of-order"},
	    {{0, 1, 2, 2, 3, 4, -1}, NULL, 0, 0, 0, BK_EFORMAT, "duplicate-entry"},
	    {{0, 1, 2, 3, 4, 2, -1}, NULL, 0, 0, 0, BK_EFORMAT, "duplicate-entry"},
	    {{0, 1, 2, 3, 4, 0, -1}, NULL, 0, 0, 0, BK_EFORMAT, "duplicate-entry"},
	    {{0, 1, 2, 3, 4, -1}, "kernel.img", KIND_SYMLINK, 0, 0, BK_EFORMAT, "link-entry"},
	    {{0, 1, 2, 3, 4, -1}, "x.img", KIND_HARDLINK, 0, 0, BK_EFORMAT, "link-entry"},
	    {{0, 1, 2, 3, 4, -1}, "../evil", KIND_FILE, 0, 0, BK_EFORMAT, "unsafe-name"},
	    {{0, 1, 2, 3, 4, -1}, "sub", KIND_DIR, 0, 0, BK_EFORMAT, "not-regular-file"},
	    {{1, 0, 2, 3, 4, -1}, NULL, 0, 0, 1, BK_EFORMAT, "manifest-not-first"},
	    {{0, 2, 3, 4, -1}, NULL, 0, 0, 1, BK_EFORMAT, "signature-missing"},
	    {{0, -1}, NULL, 0, 0, 1, BK_EFORMAT, "signature-missing"},
	    {{0, 1, 2, 3, 4, -1}, NULL, 0, 1, 1, BK_EFORMAT, "bad-archive"},
	};
	for (size_t i = 0; i < BK_ARRAY_LEN(cases); i++) {
		REQUIRE(write_entries(bad, ents, cases[i].order, cases[i].extra, cases[i].kind,
		                      cases[i].gzip) == 0);
		bk_fw_bundle *b = NULL;
		int rc = bk_fw_bundle_open(&b, bad);
		bk_fw_bundle_free(b);
		CHECK_EQ(rc != 0, cases[i].open_fails);
		rc = open_verify(bad, NULL, NULL, NULL);
		if (rc != cases[i].code || strcmp(bk_error_last()->reason, cases[i].reason) != 0)
			fprintf(stderr, "  case %zu: %d %s (%s)\n", i, rc, bk_error_last()->reason,
			        bk_error_last()->message);
		CHECK_FAILS(rc, cases[i].code, cases[i].reason);
	}
	/* A payload whose size differs from the manifest's. */
	ents[3].len -= 1;
	REQUIRE(write_entries(bad, ents, same, NULL, 0, 0) == 0);
	CHECK_FAILS(open_verify(bad, NULL, NULL, NULL), BK_EVERIFY, "payload-size-mismatch");
	/* Not a tar at all; an empty file. */
	REQUIRE_OK(spit(bad, (const uint8_t *)"hello, this is not a tar archive", 32));
	bk_fw_bundle *b = NULL;
	CHECK_EQ(bk_fw_bundle_open(&b, bad), BK_EFORMAT);
	REQUIRE_OK(spit(bad, (const uint8_t *)"", 0));
	CHECK_EQ(bk_fw_bundle_open(&b, bad), BK_EFORMAT);
	CHECK(b == NULL);
	CHECK_EQ(bk_fw_bundle_open(&b, bk_test_path("missing.aifw")), BK_ENOTFOUND);
	for (size_t i = 0; i < n; i++)
		free(ents[i].data);
	free(path);
	free(bad);
	fixture_free();
}

/* --- Selection and listing ------------------------------------------------------ */

static void test_select(void)
{
	REQUIRE(fixture_setup() == 0);
	char *dir = tpath("repo"), *other = tpath("other"), *out = NULL;
	char other_id[17], p[4096];
	REQUIRE_OK(bk_mkdir_p(dir, 0755));
	REQUIRE_OK(make_key(other, "c", other_id));
	static const char *const ers2000[] = {"ERS-2000", NULL};
	static const struct {
		const char *file, *version;
		uint32_t counter;
		int64_t smin, smax;
		int other_model, other_key, corrupt;
	} bundles[] = {
	    {"a.aifw", "1.0.0", 3, 1, 2, 0, 0, 0}, {"b.aifw", "1.2.0", 4, 1, 3, 0, 0, 0},
	    {"c.aifw", "2.0.0", 6, 2, 4, 0, 0, 0}, {"d.aifw", "2.0.0-rc.1", 6, 2, 4, 0, 0, 0},
	    {"e.aifw", "0.9.0", 9, 0, 9, 1, 0, 0}, /* another model */
	    {"f.aifw", "0.5.0", 9, 0, 9, 0, 0, 1}, /* fits, but corrupt */
	    {"g.aifw", "0.1.0", 9, 0, 9, 0, 1, 0}, /* signed by an unknown key */
	};
	for (size_t i = 0; i < BK_ARRAY_LEN(bundles); i++) {
		spec s = spec_default();
		s.version = bundles[i].version;
		s.counter = bundles[i].counter;
		s.schema_min = bundles[i].smin;
		s.schema_max = bundles[i].smax;
		s.images = 1 + (int)(i % 2);
		if (bundles[i].other_model)
			s.models = ers2000;
		if (bundles[i].other_key) {
			snprintf(p, sizeof(p), "%s/c.key", other);
			s.key = p;
		}
		char *path = bk_path_join(dir, bundles[i].file);
		REQUIRE_OK(pack(path, &s));
		if (bundles[i].corrupt) {
			size_t len;
			uint8_t *d = slurp(path, &len);
			size_t ilen;
			uint8_t *img = slurp(fx.img[1], &ilen);
			uint8_t *at = memmem(d, len, img, 4096); /* the second payload */
			REQUIRE(at != NULL);
			at[5000] ^= 0x55;
			free(img);
			spit(path, d, len);
			free(d);
		}
		bk__free(path);
	}
	snprintf(p, sizeof(p), "%s/junk.aifw", dir);
	REQUIRE_OK(spit(p, (const uint8_t *)"junk", 4));
	snprintf(p, sizeof(p), "%s/ignored.txt", dir);
	REQUIRE_OK(spit(p, (const uint8_t *)"junk", 4));

	/* Lowest fitting: f (0.5.0) is corrupt, so a (1.0.0). */
	REQUIRE_OK(bk_fw_select(dir, "ERS-1000", "2", 2, 0, fx.a_pub, NULL, &out));
	CHECK(strstr(out, "/a.aifw") != NULL);
	bk_free(out);
	out = NULL;
	/* Schema 3: b (1.2.0). Schema 4: the release candidate before 2.0.0. */
	REQUIRE_OK(bk_fw_select(dir, "ERS-1000", "2", 3, 0, fx.a_pub, NULL, &out));
	CHECK(strstr(out, "/b.aifw") != NULL);
	bk_free(out);
	out = NULL;
	REQUIRE_OK(bk_fw_select(dir, "ERS-1000", NULL, 4, 0, fx.a_pub, NULL, &out));
	CHECK(strstr(out, "/d.aifw") != NULL);
	bk_free(out);
	out = NULL;
	/* Anti-rollback: counter at least 4 skips a. */
	REQUIRE_OK(bk_fw_select(dir, "ERS-1000", "1", 2, 4, fx.a_pub, NULL, &out));
	CHECK(strstr(out, "/b.aifw") != NULL);
	bk_free(out);
	out = NULL;
	/* The other model; the other key (then g is the lowest). */
	REQUIRE_OK(bk_fw_select(dir, "ERS-2000", "1", 5, 0, fx.a_pub, NULL, &out));
	CHECK(strstr(out, "/e.aifw") != NULL);
	bk_free(out);
	out = NULL;
	snprintf(p, sizeof(p), "%s/c.pub", other);
	REQUIRE_OK(bk_fw_select(dir, "ERS-1000", "1", 2, 0, p, NULL, &out));
	CHECK(strstr(out, "/g.aifw") != NULL);
	bk_free(out);
	out = NULL;
	/* Nothing fits. */
	CHECK_FAILS(bk_fw_select(dir, "ERS-1000", "9", 2, 0, fx.a_pub, NULL, &out), BK_ENOTFOUND,
	            "no-fitting-firmware");
	CHECK_FAILS(bk_fw_select(dir, "ERS-1000", "1", 2, 7, fx.a_pub, NULL, &out), BK_ENOTFOUND,
	            "no-fitting-firmware");
	const char *const revoked[] = {fx.a_id, NULL};
	CHECK_FAILS(bk_fw_select(dir, "ERS-1000", "1", 2, 0, fx.a_pub, revoked, &out), BK_ENOTFOUND,
	            "no-fitting-firmware");
	CHECK(out == NULL);
	CHECK_EQ(bk_fw_select(bk_test_path("nodir"), "ERS-1000", "1", 2, 0, fx.a_pub, NULL, &out),
	         BK_ENOTFOUND);

	/* Listing: readable ones by version, then the unreadable one. */
	bk_fw_entry *list = NULL;
	size_t count = 0;
	REQUIRE_OK(bk_fw_list(&list, &count, dir, NULL));
	REQUIRE(count == 8);
	static const char *const order[] = {"0.1.0", "0.5.0",      "0.9.0", "1.0.0",
	                                    "1.2.0", "2.0.0-rc.1", "2.0.0"};
	for (size_t i = 0; i < 7; i++) {
		CHECK_STR(list[i].version, order[i]);
		CHECK_EQ(list[i].status, 0);
	}
	CHECK(list[7].version == NULL);
	CHECK_EQ(list[7].status, BK_EFORMAT);
	CHECK(strstr(list[7].path, "junk.aifw") != NULL);
	CHECK_STR(list[3].models, "ERS-1000,ERS-1000J");
	CHECK_EQ(list[3].schema_max, 2);
	CHECK_EQ(list[3].security_counter, 3);
	bk_fw_list_free(list, count);
	bk_fw_list_opts lo = BK_FW_LIST_OPTS_INIT;
	lo.model = "ERS-1000";
	lo.min_schema = 4;
	lo.trusted_keys = fx.a_pub;
	REQUIRE_OK(bk_fw_list(&list, &count, dir, &lo));
	REQUIRE(count == 5); /* f, g, d, c, and junk */
	CHECK_STR(list[0].version, "0.1.0");
	CHECK_EQ(list[0].status, BK_EVERIFY);
	CHECK_STR(list[0].reason, "unknown-key");
	CHECK_STR(list[1].version, "0.5.0");
	CHECK_EQ(list[1].status, 0); /* listing checks signatures, not payloads */
	CHECK_STR(list[1].key_id, fx.a_id);
	CHECK_STR(list[2].version, "2.0.0-rc.1");
	CHECK_STR(list[3].version, "2.0.0");
	bk_fw_list_free(list, count);
	free(dir);
	free(other);
	fixture_free();
}

/* --- Allocation failures ------------------------------------------------------- */

static void test_alloc_failures(void)
{
	REQUIRE(fixture_setup() == 0);
	char *path = tpath("small.aifw");
	bk_fw_pack_opts o = BK_FW_PACK_OPTS_INIT;
	bk_fw_image im[2] = {{"a.img", fx.img[2], "rootfs"}, {"b.img", fx.img[2], "kernel"}};
	o.models = models_default;
	o.hw_rev_min = o.hw_rev_max = "1";
	o.fw_version = "1.0.0";
	o.images = im;
	o.image_count = 2;
	o.secret_key = fx.a_key;
	REQUIRE_OK(bk_fw_bundle_pack(path, &o));
	int ok = 0;
	long n;
	for (n = 1; n < 500 && !ok; n++) {
		bk_fw_bundle *b = NULL;
		bk_fw_verify_opts vo = BK_FW_VERIFY_OPTS_INIT;
		vo.trusted_keys = fx.keys;
		bk__alloc_fail_at(n);
		int rc = bk_fw_bundle_open(&b, path);
		if (rc == 0)
			rc = bk_fw_bundle_verify(b, &vo);
		bk_fw_bundle_free(b);
		bk__alloc_fail_at(0);
		if (rc == 0)
			ok = 1;
		else if (rc != BK_ENOMEM)
			fprintf(stderr, "  fail at %ld: %d %s\n", n, rc, bk_error_last()->message);
		CHECK(rc == 0 || rc == BK_ENOMEM);
	}
	CHECK(ok);
	CHECK(n > 5);
	/* Packing too: success or a clean failure, never a half-written bundle. */
	char *out = tpath("packed.aifw");
	ok = 0;
	for (n = 1; n < 500 && !ok; n++) {
		bk__alloc_fail_at(n);
		int rc = bk_fw_bundle_pack(out, &o);
		bk__alloc_fail_at(0);
		if (rc == 0) {
			ok = 1;
		} else if (access(out, F_OK) == 0) {
			/* Failing after the rename (making it durable) leaves
			 * the whole bundle, never a part of one. */
			CHECK_OK(open_verify(out, NULL, NULL, NULL));
			unlink(out);
		}
		CHECK(access(bk_test_path("packed.aifw.part"), F_OK) != 0);
		CHECK(rc == 0 || rc == BK_ENOMEM);
	}
	CHECK(ok);
	CHECK_OK(open_verify(out, NULL, NULL, NULL));
	free(out);
	free(path);
	fixture_free();
}

BK_RUN_TESTS(BK_TEST(test_semver), BK_TEST(test_manifest), BK_TEST(test_round_trip_one),
             BK_TEST(test_round_trip_several_key_folder), BK_TEST(test_pack_refuses),
             BK_TEST(test_tampered), BK_TEST(test_keys), BK_TEST(test_compat),
             BK_TEST(test_entries), BK_TEST(test_select), BK_TEST(test_alloc_failures))
