/* Unit tests for the age module: Bech32 and key text, round trips at chunk
 * boundaries, truncation and bit flips, identities, scrypt limits, low-order
 * shares, allocation failures, random access, re-wrapping. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include <libbackup/libbackup.h>

#include "crypto/age.h"
#include "crypto/bech32.h"
#include "testlib.h"

#define KNOWN_IDENTITY  "AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0"
#define KNOWN_RECIPIENT "age1xmwwc06ly3ee5rytxm9mflaz2u56jjj36s0mypdrwsvlul66mv4q47ryef"

static const char *reason(void)
{
	const char *r = bk_error_last()->reason;
	return r ? r : "(none)";
}

/* Encrypts `len` bytes of `plain` into a new buffer. */
static int encrypt_buf(uint8_t **out, size_t *out_len, const uint8_t *plain, size_t len,
                       const bk_age_encrypt_opts *o)
{
	bk_stream *mem = NULL, *enc = NULL;
	int rc = bk_stream_mem_writer(&mem, 0);
	if (rc == 0)
		rc = bk_age_encrypt_new(&enc, mem, 0, o);
	/* Write in odd pieces to cross chunk boundaries in every way. */
	for (size_t pos = 0; rc == 0 && pos < len;) {
		size_t n = len - pos < 7777 ? len - pos : 7777;
		rc = bk_stream_write(enc, plain + pos, n, BK_DEADLINE_NONE);
		pos += n;
	}
	if (rc == 0) {
		rc = bk_stream_close(enc, BK_DEADLINE_NONE);
		enc = NULL;
	}
	if (rc == 0) {
		size_t n;
		const uint8_t *d = bk_stream_mem_data(mem, &n);
		*out = malloc(n + 1);
		memcpy(*out, d, n);
		*out_len = n;
	}
	bk_stream_free(enc);
	bk_stream_free(mem);
	return rc;
}

typedef struct keys {
	bk_age_identity *id;
	bk_age_recipient r;
	bk_age_identities *ids;
	bk_age_encrypt_opts to;
} keys;

static void keys_make(keys *k)
{
	memset(k, 0, sizeof(*k));
	bk_age_identity_generate(&k->id);
	bk_age_identity_recipient(&k->r, k->id);
	bk_age_identities_new(&k->ids);
	bk_age_identities_add(k->ids, k->id);
	k->to = (bk_age_encrypt_opts)BK_AGE_ENCRYPT_OPTS_INIT;
	k->to.recipients = &k->r;
	k->to.recipient_count = 1;
}

static void keys_free(keys *k)
{
	bk_age_identity_free(k->id);
	bk_age_identities_free(k->ids);
}

static uint8_t *random_bytes(size_t n)
{
	uint8_t *p = malloc(n + 1);
	randombytes_buf(p, n);
	return p;
}

/* --- Bech32 and key text --------------------------------------------------- */

static void test_bech32_vectors(void)
{
	char hrp[16];
	uint8_t data[64];
	size_t n;
	/* BIP 173 valid strings (empty data). */
	CHECK_OK(bk_bech32_decode(hrp, sizeof(hrp), data, sizeof(data), &n, "A12UEL5L", 8));
	CHECK_STR(hrp, "A");
	CHECK_OK(bk_bech32_decode(hrp, sizeof(hrp), data, sizeof(data), &n, "a12uel5l", 8));
	/* Mixed case, bad checksum, no separator. */
	CHECK_EQ(bk_bech32_decode(hrp, sizeof(hrp), data, sizeof(data), &n, "A12uEL5L", 8),
	         BK_EFORMAT);
	CHECK_EQ(bk_bech32_decode(hrp, sizeof(hrp), data, sizeof(data), &n, "a12uel5m", 8),
	         BK_EFORMAT);
	CHECK_EQ(bk_bech32_decode(hrp, sizeof(hrp), data, sizeof(data), &n, "pzry9x0s0muk", 12),
	         BK_EFORMAT);
	/* Round trip beyond the 90-character BIP 173 limit. */
	uint8_t big[64];
	char enc[200];
	randombytes_buf(big, sizeof(big));
	CHECK_OK(bk_bech32_encode(enc, sizeof(enc), "age", big, sizeof(big)));
	CHECK(strlen(enc) > 90);
	CHECK_OK(bk_bech32_decode(hrp, sizeof(hrp), data, sizeof(data), &n, enc, strlen(enc)));
	CHECK_EQ(n, sizeof(big));
	CHECK(memcmp(data, big, sizeof(big)) == 0);
}

static void test_key_text(void)
{
	bk_age_identity *id = NULL;
	bk_secret *text = NULL;
	bk_age_recipient r, r2;
	char rs[BK_AGE_RECIPIENT_STR_SIZE];
	REQUIRE_OK(bk_age_identity_parse(&id, KNOWN_IDENTITY, strlen(KNOWN_IDENTITY)));
	bk_age_identity_recipient(&r, id);
	bk_age_recipient_format(rs, &r);
	CHECK_STR(rs, KNOWN_RECIPIENT);
	CHECK_OK(bk_age_recipient_parse(&r2, KNOWN_RECIPIENT));
	CHECK(memcmp(r.public_key, r2.public_key, 32) == 0);
	CHECK_OK(bk_age_identity_format(&text, id));
	CHECK_STR((const char *)bk_secret_data(text), KNOWN_IDENTITY);
	bk_secret_free(text);
	bk_age_identity_free(id);
	/* Identities are upper case only, recipients lower case only. */
	char lower[128];
	snprintf(lower, sizeof(lower), "%s", KNOWN_IDENTITY);
	for (char *p = lower; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	CHECK_EQ(bk_age_identity_parse(&id, lower, strlen(lower)), BK_EFORMAT);
	CHECK(strstr(bk_error_last()->message, "EGTZ") == NULL);
	CHECK_EQ(bk_age_recipient_parse(
	             &r2, "AGE1XMWWC06LY3EE5RYTXM9MFLAZ2U56JJJ36S0MYPDRWSVLUL66MV4Q47RYEF"),
	         BK_EFORMAT);
	CHECK_EQ(bk_age_recipient_parse(
	             &r2, "age1xmwwc06ly3ee5rytxm9mflaz2u56jjj36s0mypdrwsvlul66mv4q47ryeg"),
	         BK_EFORMAT);
	/* A generated identity survives format and parse. */
	bk_age_identity *g = NULL, *g2 = NULL;
	REQUIRE_OK(bk_age_identity_generate(&g));
	REQUIRE_OK(bk_age_identity_format(&text, g));
	const char *t = (const char *)bk_secret_data(text);
	CHECK_OK(bk_age_identity_parse(&g2, t, strlen(t)));
	bk_age_identity_recipient(&r, g);
	if (g2) {
		bk_age_identity_recipient(&r2, g2);
		CHECK(memcmp(r.public_key, r2.public_key, 32) == 0);
	}
	bk_secret_free(text);
	bk_age_identity_free(g);
	bk_age_identity_free(g2);
}

static void test_identity_file(void)
{
	bk_age_identities *set = NULL;
	const char *text = "# created: 2026-01-01T00:00:00Z\r\n# public key: " KNOWN_RECIPIENT
	                   "\r\n\r\n" KNOWN_IDENTITY "\r\n";
	REQUIRE_OK(bk_age_identities_new(&set));
	CHECK_OK(bk_age_identities_parse_file(set, (const uint8_t *)text, strlen(text), "t"));
	CHECK_EQ(bk_age_identities_count(set), 1);
	/* A bad line: the error names the line, never its text; nothing added. */
	const char *bad = KNOWN_IDENTITY "\n  " KNOWN_IDENTITY "\n";
	CHECK_EQ(bk_age_identities_parse_file(set, (const uint8_t *)bad, strlen(bad), "t"),
	         BK_EFORMAT);
	CHECK(strstr(bk_error_last()->message, "line 2") != NULL);
	CHECK(strstr(bk_error_last()->message, "EGTZ") == NULL);
	CHECK_EQ(bk_age_identities_count(set), 1);
	CHECK_EQ(bk_age_identities_parse_file(set, (const uint8_t *)"# only\n", 7, "t"),
	         BK_EFORMAT);
	bk_age_identities_free(set);

	/* Written by us, loaded back; group-readable files refused. */
	bk_age_identity *id = NULL;
	bk_secret *file = NULL;
	REQUIRE_OK(bk_age_identity_generate(&id));
	REQUIRE_OK(bk_age_identity_file_format(&file, id, 1700000000));
	const char *ft = (const char *)bk_secret_data(file);
	CHECK(strncmp(ft, "# created: 2023-11-14T22:13:20Z\n# public key: age1", 50) == 0);
	const char *path = bk_test_path("id.txt");
	REQUIRE_OK(bk_file_write_atomic(path, ft, strlen(ft), 0600, 1));
	REQUIRE_OK(bk_age_identities_new(&set));
	CHECK_OK(bk_age_identities_load(set, path, 0, NULL, NULL));
	CHECK_EQ(bk_age_identities_count(set), 1);
	const bk_age_identity *got = NULL;
	CHECK_OK(bk_age_identities_get(set, 0, &got));
	bk_age_identities_free(set);
	bk_test_system("chmod 640 '%s'", path);
	REQUIRE_OK(bk_age_identities_new(&set));
	CHECK_EQ(bk_age_identities_load(set, path, 0, NULL, NULL), BK_EAUTH);
	CHECK_OK(bk_age_identities_load(set, path, BK_AGE_LOAD_ALLOW_SHARED, NULL, NULL));
	bk_age_identities_free(set);
	bk_secret_free(file);
	bk_age_identity_free(id);
}

static int test_pass_cb(bk_secret **out, const char *prompt, void *payload)
{
	(void)prompt;
	return bk_secret_from(out, payload, strlen(payload));
}

static void test_encrypted_identity_file(void)
{
	bk_age_identity *id = NULL;
	bk_secret *file = NULL;
	bk_age_identities *set = NULL;
	uint8_t *ct = NULL;
	size_t ct_len = 0;
	REQUIRE_OK(bk_age_identity_generate(&id));
	REQUIRE_OK(bk_age_identity_file_format(&file, id, 0));
	bk_age_encrypt_opts o = BK_AGE_ENCRYPT_OPTS_INIT;
	o.passphrase = "correct horse";
	o.passphrase_len = 13;
	o.scrypt_log2_n = 10;
	o.armor = 1;
	const char *ft = (const char *)bk_secret_data(file);
	REQUIRE_OK(encrypt_buf(&ct, &ct_len, (const uint8_t *)ft, strlen(ft), &o));
	const char *path = bk_test_path("id.age");
	REQUIRE_OK(bk_file_write_atomic(path, ct, ct_len, 0600, 1));
	REQUIRE_OK(bk_age_identities_new(&set));
	CHECK_EQ(bk_age_identities_load(set, path, 0, NULL, NULL), BK_EAUTH);
	CHECK_EQ(bk_age_identities_load(set, path, 0, test_pass_cb, "wrong"), BK_EAUTH);
	CHECK_STR(reason(), "no-identity-matched");
	CHECK_OK(bk_age_identities_load(set, path, 0, test_pass_cb, "correct horse"));
	CHECK_EQ(bk_age_identities_count(set), 1);
	bk_age_identities_free(set);
	free(ct);
	bk_secret_free(file);
	bk_age_identity_free(id);
}

/* --- Round trips ------------------------------------------------------------- */

static int decrypt_buf(uint8_t **out, size_t *out_len, const uint8_t *in, size_t len,
                       const bk_age_identities *ids)
{
	return bk_age_decrypt_mem(out, out_len, in, len, ids, NULL);
}

static void round_trip(size_t size, int armor)
{
	keys k;
	uint8_t *plain = random_bytes(size), *ct = NULL, *back = NULL;
	size_t ct_len = 0, back_len = 0;
	keys_make(&k);
	k.to.armor = armor;
	CHECK_OK(encrypt_buf(&ct, &ct_len, plain, size, &k.to));
	if (ct && !armor) {
		size_t hl = 0;
		CHECK_OK(bk_age_header_parse(&hl, ct, ct_len, NULL));
		size_t chunks = size ? (size + BK_AGE_CHUNK_SIZE - 1) / BK_AGE_CHUNK_SIZE : 1;
		CHECK_EQ(ct_len, hl + BK_AGE_NONCE_LEN + size + chunks * BK_AGE_TAG_LEN);
	}
	if (ct) {
		CHECK_OK(decrypt_buf(&back, &back_len, ct, ct_len, k.ids));
		CHECK_EQ(back_len, size);
		CHECK(back != NULL && memcmp(back, plain, size) == 0);
	}
	bk__free(back);
	free(ct);
	free(plain);
	keys_free(&k);
}

static void test_round_trip_boundaries(void)
{
	static const size_t sizes[] = {0,
	                               1,
	                               BK_AGE_CHUNK_SIZE - 1,
	                               BK_AGE_CHUNK_SIZE,
	                               BK_AGE_CHUNK_SIZE + 1,
	                               2 * BK_AGE_CHUNK_SIZE,
	                               2 * BK_AGE_CHUNK_SIZE + 1,
	                               3 * BK_AGE_CHUNK_SIZE - 1};
	for (size_t i = 0; i < BK_ARRAY_LEN(sizes); i++) {
		round_trip(sizes[i], 0);
		round_trip(sizes[i], 1);
	}
}

static void test_multiple_recipients_and_passphrase(void)
{
	keys a, b;
	uint8_t *ct = NULL, *back = NULL;
	size_t ct_len, back_len;
	keys_make(&a);
	keys_make(&b);
	bk_age_recipient rs[2] = {a.r, b.r};
	bk_age_encrypt_opts o = BK_AGE_ENCRYPT_OPTS_INIT;
	o.recipients = rs;
	o.recipient_count = 2;
	REQUIRE_OK(encrypt_buf(&ct, &ct_len, (const uint8_t *)"hello", 5, &o));
	CHECK_OK(decrypt_buf(&back, &back_len, ct, ct_len, a.ids));
	bk__free(back);
	back = NULL;
	CHECK_OK(decrypt_buf(&back, &back_len, ct, ct_len, b.ids));
	CHECK(back_len == 5 && memcmp(back, "hello", 5) == 0);
	bk__free(back);
	free(ct);
	/* Passphrase: right, wrong, and not combinable with recipients. */
	bk_age_encrypt_opts p = BK_AGE_ENCRYPT_OPTS_INIT;
	p.passphrase = "pw";
	p.passphrase_len = 2;
	p.scrypt_log2_n = 10;
	REQUIRE_OK(encrypt_buf(&ct, &ct_len, (const uint8_t *)"hello", 5, &p));
	bk_age_identities *ids = NULL;
	REQUIRE_OK(bk_age_identities_new(&ids));
	bk_age_identities_add_passphrase(ids, "nope", 4);
	back = NULL;
	CHECK_EQ(decrypt_buf(&back, &back_len, ct, ct_len, ids), BK_EAUTH);
	bk_age_identities_add_passphrase(ids, "pw", 2);
	CHECK_OK(decrypt_buf(&back, &back_len, ct, ct_len, ids));
	bk__free(back);
	bk_age_identities_free(ids);
	free(ct);
	p.recipients = rs;
	p.recipient_count = 1;
	bk_stream *mem = NULL, *enc = NULL;
	REQUIRE_OK(bk_stream_mem_writer(&mem, 0));
	CHECK_EQ(bk_age_encrypt_new(&enc, mem, 1, &p), BK_EINVALID);
	bk_stream_free(mem);
	keys_free(&a);
	keys_free(&b);
}

static void test_wrong_identity(void)
{
	keys a, b;
	uint8_t *ct = NULL, *back = NULL;
	size_t ct_len, back_len;
	keys_make(&a);
	keys_make(&b);
	REQUIRE_OK(encrypt_buf(&ct, &ct_len, (const uint8_t *)"secret", 6, &a.to));
	CHECK_EQ(decrypt_buf(&back, &back_len, ct, ct_len, b.ids), BK_EAUTH);
	CHECK_STR(reason(), "no-identity-matched");
	CHECK(back == NULL);
	free(ct);
	keys_free(&a);
	keys_free(&b);
}

/* --- Damage ----------------------------------------------------------------------- */

static void test_truncation_every_boundary(void)
{
	keys k;
	size_t size = 3 * BK_AGE_CHUNK_SIZE + 100, ct_len = 0, hl = 0;
	uint8_t *plain = random_bytes(size), *ct = NULL;
	keys_make(&k);
	REQUIRE_OK(encrypt_buf(&ct, &ct_len, plain, size, &k.to));
	REQUIRE_OK(bk_age_header_parse(&hl, ct, ct_len, NULL));
	for (uint64_t i = 0; i <= 3; i++) {
		size_t cut = hl + (size_t)bk_age_chunk_offset(i);
		uint8_t *back = NULL;
		size_t back_len = 0;
		CHECK_EQ(decrypt_buf(&back, &back_len, ct, cut, k.ids), BK_EVERIFY);
		CHECK_STR(reason(), "payload-truncated");
		/* One byte more or less than the boundary is never accepted. */
		CHECK_EQ(decrypt_buf(&back, &back_len, ct, cut + 1, k.ids), BK_EVERIFY);
		CHECK_EQ(decrypt_buf(&back, &back_len, ct, cut - 1, k.ids),
		         i == 0 ? BK_EFORMAT : BK_EVERIFY);
	}
	/* Inside the header and the nonce: header failures. */
	uint8_t *back = NULL;
	size_t back_len;
	CHECK_EQ(decrypt_buf(&back, &back_len, ct, hl / 2, k.ids), BK_EFORMAT);
	CHECK_STR(reason(), "header-malformed");
	CHECK_EQ(decrypt_buf(&back, &back_len, ct, hl + 8, k.ids), BK_EFORMAT);
	/* Trailing data after the final chunk. */
	uint8_t *longer = malloc(ct_len + 1);
	memcpy(longer, ct, ct_len);
	longer[ct_len] = 0;
	CHECK_EQ(decrypt_buf(&back, &back_len, longer, ct_len + 1, k.ids), BK_EVERIFY);
	CHECK_STR(reason(), "payload-corrupt");
	CHECK_OK(decrypt_buf(&back, &back_len, longer, ct_len, k.ids));
	bk__free(back);
	free(longer);
	free(ct);
	free(plain);
	keys_free(&k);
}

/* A stream read that stops at every failure must never release plaintext of
 * a damaged chunk. */
static void test_flipped_bits(void)
{
	keys k;
	size_t size = 2 * BK_AGE_CHUNK_SIZE + 10, ct_len = 0, hl = 0;
	uint8_t *plain = random_bytes(size), *ct = NULL;
	keys_make(&k);
	REQUIRE_OK(encrypt_buf(&ct, &ct_len, plain, size, &k.to));
	REQUIRE_OK(bk_age_header_parse(&hl, ct, ct_len, NULL));
	/* Positions: version line, stanza body, MAC, nonce, every chunk's
	 * first byte and tag, the last byte. */
	size_t pos[] = {0,
	                30,
	                hl - 10,
	                hl + 3,
	                hl + 16,
	                hl + 16 + BK_AGE_ENC_CHUNK_SIZE - 1,
	                hl + 16 + BK_AGE_ENC_CHUNK_SIZE,
	                ct_len - 1};
	for (size_t i = 0; i < BK_ARRAY_LEN(pos); i++) {
		for (int bit = 0; bit < 8; bit += 7) {
			uint8_t *back = NULL;
			size_t back_len = 0;
			ct[pos[i]] ^= (uint8_t)(1 << bit);
			int rc = decrypt_buf(&back, &back_len, ct, ct_len, k.ids);
			ct[pos[i]] ^= (uint8_t)(1 << bit);
			CHECK(rc != 0);
			CHECK(back == NULL);
			if (pos[i] >= hl)
				CHECK(strncmp(reason(), "payload-corrupt", 15) == 0);
			else
				CHECK(strcmp(reason(), "header-mac") == 0 ||
				      strcmp(reason(), "header-malformed") == 0 ||
				      strcmp(reason(), "no-identity-matched") == 0);
		}
	}
	/* Damage in chunk 1: exactly chunk 0 is released by the stream. */
	ct[hl + 16 + BK_AGE_ENC_CHUNK_SIZE + 5] ^= 1;
	bk_stream *mem = NULL, *dec = NULL;
	REQUIRE_OK(bk_stream_mem_reader(&mem, ct, ct_len));
	REQUIRE_OK(bk_age_decrypt_new(&dec, mem, 1, k.ids, NULL, BK_DEADLINE_NONE));
	CHECK_EQ(bk_age_decrypt_header_len(dec), hl);
	uint8_t *buf = malloc(size);
	size_t got = 0, n = 0;
	int rc;
	while ((rc = bk_stream_read(dec, buf + got, size - got, &n, BK_DEADLINE_NONE)) == 0 && n)
		got += n;
	CHECK_EQ(rc, BK_EVERIFY);
	CHECK_EQ(got, BK_AGE_CHUNK_SIZE);
	CHECK(memcmp(buf, plain, got) == 0);
	/* The failure sticks. */
	CHECK_EQ(bk_stream_read(dec, buf, 10, &n, BK_DEADLINE_NONE), BK_EVERIFY);
	bk_stream_free(dec);
	free(buf);
	free(ct);
	free(plain);
	keys_free(&k);
}

/* --- scrypt and X25519 checks --------------------------------------------------------- */

static void test_scrypt_work_factor_cap(void)
{
	uint8_t *ct = NULL, *back = NULL;
	size_t ct_len, back_len;
	bk_age_encrypt_opts p = BK_AGE_ENCRYPT_OPTS_INIT;
	p.passphrase = "pw";
	p.passphrase_len = 2;
	p.scrypt_log2_n = 12;
	REQUIRE_OK(encrypt_buf(&ct, &ct_len, (const uint8_t *)"x", 1, &p));
	CHECK(memmem(ct, ct_len, " 12\n", 4) != NULL);
	bk_age_identities *ids = NULL;
	REQUIRE_OK(bk_age_identities_new(&ids));
	bk_age_identities_add_passphrase(ids, "pw", 2);
	CHECK_OK(bk_age_identities_set_max_work_factor(ids, 11));
	CHECK_EQ(decrypt_buf(&back, &back_len, ct, ct_len, ids), BK_EFORMAT);
	CHECK_STR(reason(), "header-malformed");
	CHECK(strstr(bk_error_last()->message, "2^12") != NULL);
	CHECK_OK(bk_age_identities_set_max_work_factor(ids, 12));
	CHECK_OK(decrypt_buf(&back, &back_len, ct, ct_len, ids));
	CHECK_EQ(bk_age_identities_set_max_work_factor(ids, 31), BK_EINVALID);
	bk__free(back);
	bk_age_identities_free(ids);
	free(ct);
}

/* Writes a header with one X25519 stanza whose share is `share`, MAC'd with
 * a random file key (the MAC is never reached). */
static void low_order_header(bk_buf *b, const uint8_t share[32])
{
	char s64[44], args[64];
	uint8_t body[32] = {0};
	bk_age__b64_encode(s64, share, 32);
	snprintf(args, sizeof(args), "X25519 %s", s64);
	bk_buf_put_str(b, "age-encryption.org/v1\n");
	bk_age__put_stanza(b, args, body, sizeof(body));
	bk_buf_put_str(b, "--- AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n");
	for (int i = 0; i < 16 + 32; i++)
		bk_buf_put_u8(b, 0);
}

static void test_low_order_share(void)
{
	/* The identity (zero) point and a point of order 8. */
	static const uint8_t points[2][32] = {
	    {0}, {0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3,
	          0xfa, 0xf1, 0x9f, 0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32,
	          0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00}};
	keys k;
	keys_make(&k);
	for (int i = 0; i < 2; i++) {
		bk_buf b = BK_BUF_INIT;
		uint8_t *back = NULL;
		size_t back_len;
		low_order_header(&b, points[i]);
		CHECK_EQ(decrypt_buf(&back, &back_len, b.data, b.len, k.ids), BK_EFORMAT);
		CHECK_STR(reason(), "header-malformed");
		CHECK(strstr(bk_error_last()->message, "low-order") != NULL);
		bk_buf_free(&b);
		/* Encrypting to a low-order recipient is refused. */
		bk_age_encrypt_opts o = BK_AGE_ENCRYPT_OPTS_INIT;
		bk_age_recipient r;
		memcpy(r.public_key, points[i], 32);
		o.recipients = &r;
		o.recipient_count = 1;
		bk_stream *mem = NULL, *enc = NULL;
		REQUIRE_OK(bk_stream_mem_writer(&mem, 0));
		CHECK(bk_age_encrypt_new(&enc, mem, 0, &o) != 0);
		bk_stream_free(enc);
		bk_stream_free(mem);
	}
	keys_free(&k);
}

static void test_header_limits(void)
{
	keys k;
	bk_buf b = BK_BUF_INIT;
	keys_make(&k);
	bk_buf_put_str(&b, "age-encryption.org/v1\n");
	for (int i = 0; i < 40; i++)
		bk_buf_put_str(&b, "-> grease a b c\n\n");
	bk_buf_put_str(&b, "--- AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n");
	size_t hl = 0;
	bk_age_decrypt_opts o = BK_AGE_DECRYPT_OPTS_INIT;
	CHECK_OK(bk_age_header_parse(&hl, b.data, b.len, &o));
	CHECK_EQ(hl, b.len);
	o.max_stanzas = 39;
	CHECK_EQ(bk_age_header_parse(&hl, b.data, b.len, &o), BK_EFORMAT);
	o = (bk_age_decrypt_opts)BK_AGE_DECRYPT_OPTS_INIT;
	o.max_header = b.len - 1;
	CHECK_EQ(bk_age_header_parse(&hl, b.data, b.len, &o), BK_EFORMAT);
	o = (bk_age_decrypt_opts)BK_AGE_DECRYPT_OPTS_INIT;
	o.max_args = 3;
	CHECK_EQ(bk_age_header_parse(&hl, b.data, b.len, &o), BK_EFORMAT);
	o.max_args = 4;
	o.max_line = 10;
	CHECK_EQ(bk_age_header_parse(&hl, b.data, b.len, &o), BK_EFORMAT);
	CHECK_STR(reason(), "header-malformed");
	bk_buf_free(&b);
	keys_free(&k);
}

/* --- Allocation failures ---------------------------------------------------------------- */

static void alloc_loop(const uint8_t *ct, size_t ct_len, const bk_age_identities *ids,
                       const uint8_t *plain, size_t size)
{
	int ok = 0;
	long n = 1;
	for (; n < 10000 && !ok; n++) {
		uint8_t *back = NULL;
		size_t back_len = 0;
		bk__alloc_fail_at(n);
		int rc = decrypt_buf(&back, &back_len, ct, ct_len, ids);
		bk__alloc_fail_at(0);
		if (rc == 0) {
			ok = 1;
			CHECK(back_len == size && memcmp(back, plain, size) == 0);
		} else {
			CHECK_EQ(rc, BK_ENOMEM);
			CHECK(back == NULL);
		}
		bk__free(back);
	}
	CHECK(ok);
	CHECK(n > 5); /* the loop really failed several allocations */
}

static void test_alloc_failures_decrypt(void)
{
	keys k;
	size_t size = BK_AGE_CHUNK_SIZE + 333, ct_len;
	uint8_t *plain = random_bytes(size), *ct = NULL;
	keys_make(&k);
	k.to.armor = 1;
	REQUIRE_OK(encrypt_buf(&ct, &ct_len, plain, size, &k.to));
	alloc_loop(ct, ct_len, k.ids, plain, size);
	free(ct);
	k.to.armor = 0;
	REQUIRE_OK(encrypt_buf(&ct, &ct_len, plain, size, &k.to));
	alloc_loop(ct, ct_len, k.ids, plain, size);
	/* Encryption too: a clean error or a file that decrypts. */
	int ok = 0;
	for (long n = 1; n < 1000 && !ok; n++) {
		uint8_t *ct2 = NULL;
		size_t ct2_len = 0;
		bk__alloc_fail_at(n);
		int rc = encrypt_buf(&ct2, &ct2_len, plain, 100, &k.to);
		bk__alloc_fail_at(0);
		if (rc == 0) {
			uint8_t *back = NULL;
			size_t back_len = 0;
			ok = 1;
			CHECK_OK(decrypt_buf(&back, &back_len, ct2, ct2_len, k.ids));
			bk__free(back);
		} else {
			CHECK_EQ(rc, BK_ENOMEM);
		}
		free(ct2);
	}
	CHECK(ok);
	free(ct);
	free(plain);
	keys_free(&k);
}

/* --- Random access, headers, re-wrap ------------------------------------------------------ */

static void test_random_access(void)
{
	keys k;
	size_t size = 3 * BK_AGE_CHUNK_SIZE + 77, ct_len, hl = 0;
	uint8_t *plain = random_bytes(size), *ct = NULL;
	bk_secret *fk = NULL, *pk = NULL;
	keys_make(&k);
	REQUIRE_OK(encrypt_buf(&ct, &ct_len, plain, size, &k.to));
	REQUIRE_OK(bk_age_header_parse(&hl, ct, ct_len, NULL));
	REQUIRE_OK(bk_age_header_unwrap(&fk, ct, hl, k.ids, NULL));
	REQUIRE_OK(bk_age_payload_key(&pk, fk, ct + hl));
	const uint8_t *payload = ct + hl;
	size_t payload_len = ct_len - hl;
	uint8_t *out = malloc(BK_AGE_CHUNK_SIZE);
	/* Out of order: 2, 0, 3, 1. */
	static const uint64_t order[] = {2, 0, 3, 1};
	for (size_t i = 0; i < 4; i++) {
		uint64_t idx = order[i];
		size_t off = (size_t)bk_age_chunk_offset(idx);
		size_t len = payload_len - off < BK_AGE_ENC_CHUNK_SIZE ? payload_len - off
		                                                       : BK_AGE_ENC_CHUNK_SIZE;
		int last = idx == 3;
		CHECK_OK(bk_age_chunk_open(out, pk, idx, last, payload + off, len));
		CHECK(memcmp(out, plain + idx * BK_AGE_CHUNK_SIZE, len - BK_AGE_TAG_LEN) == 0);
		/* Wrong index or wrong final flag fail. */
		CHECK_EQ(bk_age_chunk_open(out, pk, idx + 1, last, payload + off, len), BK_EVERIFY);
		if (last)
			CHECK_EQ(bk_age_chunk_open(out, pk, idx, 0, payload + off, len),
			         BK_EVERIFY);
		else
			CHECK_EQ(bk_age_chunk_open(out, pk, idx, 1, payload + off, len),
			         BK_EVERIFY);
	}
	/* Seal and open agree. */
	uint8_t sealed[20 + BK_AGE_TAG_LEN], opened[20];
	CHECK_OK(bk_age_chunk_seal(sealed, pk, 9, 1, plain, 20));
	CHECK_OK(bk_age_chunk_open(opened, pk, 9, 1, sealed, sizeof(sealed)));
	CHECK(memcmp(opened, plain, 20) == 0);
	free(out);
	bk_secret_free(pk);
	bk_secret_free(fk);
	free(ct);
	free(plain);
	keys_free(&k);
}

static void test_rewrap(void)
{
	keys a, b;
	size_t size = BK_AGE_CHUNK_SIZE * 2 + 5, ct_len, hl = 0;
	uint8_t *plain = random_bytes(size), *ct = NULL, *back = NULL;
	size_t back_len;
	keys_make(&a);
	keys_make(&b);
	REQUIRE_OK(encrypt_buf(&ct, &ct_len, plain, size, &a.to));
	REQUIRE_OK(bk_age_header_parse(&hl, ct, ct_len, NULL));

	/* Stream re-wrap. */
	bk_stream *in = NULL, *out = NULL;
	uint64_t old_len = 0, new_len = 0;
	REQUIRE_OK(bk_stream_mem_reader(&in, ct, ct_len));
	REQUIRE_OK(bk_stream_mem_writer(&out, 0));
	CHECK_OK(bk_age_rewrap(out, in, a.ids, &b.to, &old_len, &new_len, BK_DEADLINE_NONE));
	CHECK_EQ(old_len, hl);
	size_t rw_len;
	const uint8_t *rw = bk_stream_mem_data(out, &rw_len);
	CHECK_EQ(rw_len - new_len, ct_len - hl);
	CHECK(memcmp(rw + new_len, ct + hl, ct_len - hl) == 0);
	CHECK_OK(decrypt_buf(&back, &back_len, rw, rw_len, b.ids));
	CHECK(back_len == size && memcmp(back, plain, size) == 0);
	bk__free(back);
	back = NULL;
	CHECK_EQ(decrypt_buf(&back, &back_len, rw, rw_len, a.ids), BK_EAUTH);
	bk_stream_free(out);
	bk_stream_free(in);
	/* Re-wrapping needs a matching identity. */
	REQUIRE_OK(bk_stream_mem_reader(&in, ct, ct_len));
	REQUIRE_OK(bk_stream_mem_writer(&out, 0));
	CHECK_EQ(bk_age_rewrap(out, in, b.ids, &a.to, NULL, NULL, BK_DEADLINE_NONE), BK_EAUTH);
	bk_stream_free(out);
	bk_stream_free(in);

	/* Header-only re-wrap, and header_read stops right after the header. */
	uint8_t *hdr = NULL, *nh = NULL;
	size_t hdr_len = 0, nh_len = 0;
	REQUIRE_OK(bk_stream_mem_reader(&in, ct, ct_len));
	CHECK_OK(bk_age_header_read(&hdr, &hdr_len, in, NULL, BK_DEADLINE_NONE));
	CHECK_EQ(hdr_len, hl);
	uint8_t next[4];
	CHECK_OK(bk_stream_read_full(in, next, 4, BK_DEADLINE_NONE));
	CHECK(memcmp(next, ct + hl, 4) == 0);
	bk_stream_free(in);
	CHECK_OK(bk_age_rewrap_header(&nh, &nh_len, hdr, hdr_len, a.ids, &b.to));
	uint8_t *joined = malloc(nh_len + ct_len - hl);
	memcpy(joined, nh, nh_len);
	memcpy(joined + nh_len, ct + hl, ct_len - hl);
	CHECK_OK(decrypt_buf(&back, &back_len, joined, nh_len + ct_len - hl, b.ids));
	CHECK(back_len == size && memcmp(back, plain, size) == 0);
	bk__free(back);
	/* A header whose MAC fails is not re-wrapped. */
	hdr[hdr_len - 5] ^= 1;
	bk__free(nh);
	nh = NULL;
	CHECK(bk_age_rewrap_header(&nh, &nh_len, hdr, hdr_len, a.ids, &b.to) != 0);
	free(joined);
	bk__free(nh);
	bk__free(hdr);
	free(ct);
	free(plain);
	keys_free(&a);
	keys_free(&b);
}

BK_RUN_TESTS(BK_TEST(test_bech32_vectors), BK_TEST(test_key_text), BK_TEST(test_identity_file),
             BK_TEST(test_encrypted_identity_file), BK_TEST(test_round_trip_boundaries),
             BK_TEST(test_multiple_recipients_and_passphrase), BK_TEST(test_wrong_identity),
             BK_TEST(test_truncation_every_boundary), BK_TEST(test_flipped_bits),
             BK_TEST(test_scrypt_work_factor_cap), BK_TEST(test_low_order_share),
             BK_TEST(test_header_limits), BK_TEST(test_alloc_failures_decrypt),
             BK_TEST(test_random_access), BK_TEST(test_rewrap))
