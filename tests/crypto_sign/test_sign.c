/* crypto/minisign: keys, signing, verification and their failures. */
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "crypto/minisign.h"
#include "libbackup/util/util.h"
#include "testlib.h"

/* Made by minisign 0.11: `minisign -G -W`, then
 * `minisign -S -m hello.txt -t 'tc here'` over "hello\n". */
static const char vec_pub[] = "untrusted comment: minisign public key 6CF7727929D668F3\n"
                              "RWTzaNYpeXL3bImrG/9YOhHRVsNbq7AfiwxLrHRYEQr65/0PkfEMS+vP\n";
static const char vec_sec[] =
    "untrusted comment: minisign encrypted secret key\n"
    "RWQAAEIyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA82jWKXly92xM"
    "RQyjQE1HM00DmFgfnsHWWzhtUxyDFbbSoUSSBRxVtYmrG/9YOhHRVsNbq7AfiwxLrHRYEQr65/0PkfEMS+vP"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
static const char vec_sig[] =
    "untrusted comment: signature from minisign secret key\n"
    "RUTzaNYpeXL3bG1nhOteqZcfHK3ZcpnnGF3eT8vWr/zGwCYpNeIUuTv5kznF/k6pkxLR0ofOa4MZKaaqEA2F7sKp+"
    "1yF8pIg0Qc=\n"
    "trusted comment: tc here\n"
    "vK16vyR3c8LhEYr357SSXw2dOWgOdr78nmvlDq7UG07REiH4VxfAqytuDw2QHggpbN9ynAe0awLl5iu8e9bjAg==\n";

static const char msg[] = "the memory of a small robot dog";

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

/* Verifies a signature text over a buffer with one key. */
static int verify_text(const bk_minisign_pubkey *pk, const void *m, size_t len, const char *text)
{
	bk_minisign_sig *sig = NULL;
	int rc = bk_minisign_sig_parse(&sig, text, strlen(text));
	if (rc == 0)
		rc = bk_minisign_verify_buf(sig, pk, m, len);
	bk_minisign_sig_free(sig);
	return rc;
}

static void test_minisign_vector(void)
{
	bk_minisign_pubkey pk, pk2;
	bk_minisign_seckey *sk = NULL;
	char hex[17];
	REQUIRE_OK(bk_minisign_pubkey_parse(&pk, vec_pub, strlen(vec_pub)));
	bk_minisign_key_id_hex(hex, pk.key_id);
	CHECK_STR(hex, "6CF7727929D668F3");
	CHECK_OK(verify_text(&pk, "hello\n", 6, vec_sig));
	CHECK_EQ(verify_text(&pk, "hello!", 6, vec_sig), BK_EVERIFY);
	CHECK(reason_is("bad-signature"));
	/* The bare base64 form, as `minisign -P` takes it. */
	const char *bare = strchr(vec_pub, '\n') + 1;
	REQUIRE_OK(bk_minisign_pubkey_parse(&pk2, bare, strlen(bare) - 1));
	CHECK(memcmp(&pk, &pk2, sizeof(pk)) == 0);
	/* An unencrypted key as minisign -W writes it (zero checksum). */
	REQUIRE_OK(bk_minisign_seckey_parse(&sk, vec_sec, strlen(vec_sec), NULL));
	bk_minisign_seckey_pubkey(sk, &pk2);
	CHECK(memcmp(&pk, &pk2, sizeof(pk)) == 0);
	bk_minisign_seckey_free(sk);
}

static void test_round_trip(void)
{
	bk_minisign_seckey *sk = NULL, *sk2 = NULL;
	bk_minisign_pubkey pk, pk2;
	char *text = NULL, *sig = NULL, *tc = NULL;
	size_t len = 0, slen = 0;
	REQUIRE_OK(bk_minisign_keygen(&sk));
	bk_minisign_seckey_pubkey(sk, &pk);

	CHECK_OK(bk_minisign_pubkey_encode(&text, &len, &pk));
	CHECK_EQ(len, strlen(text));
	CHECK_OK(bk_minisign_pubkey_parse(&pk2, text, len));
	CHECK(memcmp(&pk, &pk2, sizeof(pk)) == 0);
	bk__free(text);

	CHECK_OK(bk_minisign_seckey_encode(&text, &len, sk, NULL, 0, 0));
	CHECK_OK(bk_minisign_seckey_parse(&sk2, text, len, "ignored"));
	bk__free(text);
	REQUIRE(sk2 != NULL);
	CHECK(memcmp(bk_minisign_seckey_ed25519(sk), bk_minisign_seckey_ed25519(sk2), 64) == 0);

	/* Signed by the reloaded key, verified with the first one's public key. */
	REQUIRE_OK(bk_minisign_sign_buf(&sig, &slen, sk2, msg, sizeof(msg), "version 1.2.3", NULL));
	CHECK_EQ(slen, strlen(sig));
	CHECK_OK(bk_minisign_verify_mem(&tc, &pk, 1, msg, sizeof(msg), sig, slen));
	CHECK_STR(tc, "version 1.2.3");
	bk__free(tc);

	/* The signature lines are as minisign writes them. */
	bk_minisign_sig *s = NULL;
	REQUIRE_OK(bk_minisign_sig_parse(&s, sig, slen));
	CHECK(bk_minisign_sig_prehashed(s));
	CHECK(memcmp(bk_minisign_sig_key_id(s), pk.key_id, 8) == 0);
	CHECK_STR(bk_minisign_sig_untrusted_comment(s), "signature from aibo-restore secret key");
	uint8_t hash[64];
	crypto_generichash(hash, sizeof(hash), (const uint8_t *)msg, sizeof(msg), NULL, 0);
	CHECK_OK(bk_minisign_verify_hash(s, &pk, hash));
	hash[0] ^= 1;
	CHECK_EQ(bk_minisign_verify_hash(s, &pk, hash), BK_EVERIFY);
	bk_minisign_sig_free(s);

	/* Default trusted comment. */
	bk__free(sig);
	REQUIRE_OK(bk_minisign_sign_buf(&sig, &slen, sk, msg, sizeof(msg), NULL, "note"));
	CHECK(strstr(sig, "\ntrusted comment: timestamp:") != NULL);
	CHECK(strncmp(sig, "untrusted comment: note\n", 24) == 0);
	CHECK_OK(verify_text(&pk, msg, sizeof(msg), sig));

	/* A trusted comment must be one line. */
	char *bad = NULL;
	CHECK_EQ(bk_minisign_sign_buf(&bad, &slen, sk, msg, sizeof(msg), "two\nlines", NULL),
	         BK_EINVALID);
	CHECK(bad == NULL);

	bk__free(sig);
	bk_minisign_seckey_free(sk);
	bk_minisign_seckey_free(sk2);
}

static void test_encrypted_key(void)
{
	bk_minisign_seckey *sk = NULL, *sk2 = NULL;
	char *text = NULL;
	size_t len = 0;
	REQUIRE_OK(bk_minisign_keygen(&sk));
	REQUIRE_OK(bk_minisign_seckey_encode(&text, &len, sk, "correct horse", 1 << 15, 1 << 24));
	CHECK(strncmp(text, "untrusted comment: minisign encrypted secret key\nRWRTY0Iy", 56) == 0);

	CHECK_EQ(bk_minisign_seckey_parse(&sk2, text, len, NULL), BK_EAUTH);
	CHECK(reason_is("passphrase-required"));
	CHECK_EQ(bk_minisign_seckey_parse(&sk2, text, len, "wrong horse"), BK_EAUTH);
	CHECK(reason_is("wrong-passphrase"));
	CHECK(sk2 == NULL);
	REQUIRE_OK(bk_minisign_seckey_parse(&sk2, text, len, "correct horse"));
	CHECK(memcmp(bk_minisign_seckey_ed25519(sk), bk_minisign_seckey_ed25519(sk2), 64) == 0);
	bk_wipe(text, len);
	bk__free(text);

	/* Limits beyond what a reader accepts are refused before any work. */
	CHECK_EQ(bk_minisign_seckey_encode(&text, &len, sk, "x", UINT64_C(1) << 40, 1 << 24),
	         BK_EINVALID);
	bk_minisign_seckey_free(sk);
	bk_minisign_seckey_free(sk2);
}

static void test_wrong_key_id(void)
{
	bk_minisign_seckey *a = NULL, *b = NULL;
	bk_minisign_pubkey pa, pb, keys[2];
	char *sig = NULL;
	size_t len;
	REQUIRE_OK(bk_minisign_keygen(&a));
	REQUIRE_OK(bk_minisign_keygen(&b));
	bk_minisign_seckey_pubkey(a, &pa);
	bk_minisign_seckey_pubkey(b, &pb);
	REQUIRE_OK(bk_minisign_sign_buf(&sig, &len, a, msg, sizeof(msg), "t", NULL));
	CHECK_EQ(verify_text(&pb, msg, sizeof(msg), sig), BK_EVERIFY);
	CHECK(reason_is("wrong-key-id"));
	CHECK_EQ(bk_minisign_verify_mem(NULL, &pb, 1, msg, sizeof(msg), sig, len), BK_EVERIFY);
	CHECK(reason_is("wrong-key-id"));
	/* With both trusted, the right one is picked. */
	keys[0] = pb;
	keys[1] = pa;
	CHECK_OK(bk_minisign_verify_mem(NULL, keys, 2, msg, sizeof(msg), sig, len));

	/* Same key id, other key: the signature itself fails. */
	memcpy(pb.key_id, pa.key_id, 8);
	CHECK_EQ(verify_text(&pb, msg, sizeof(msg), sig), BK_EVERIFY);
	CHECK(reason_is("bad-signature"));
	bk__free(sig);
	bk_minisign_seckey_free(a);
	bk_minisign_seckey_free(b);
}

/* Replaces the first occurrence of `from` in `s` by `to` (same length). */
static void patch(char *s, const char *from, const char *to)
{
	char *p = strstr(s, from);
	if (p)
		memcpy(p, to, strlen(to));
	CHECK(p != NULL);
}

static void test_bad_signature_and_comment(void)
{
	bk_minisign_seckey *sk = NULL;
	bk_minisign_pubkey pk;
	char *sig = NULL;
	size_t len;
	char m[sizeof(msg)];
	REQUIRE_OK(bk_minisign_keygen(&sk));
	bk_minisign_seckey_pubkey(sk, &pk);
	REQUIRE_OK(bk_minisign_sign_buf(&sig, &len, sk, msg, sizeof(msg), "security 7", NULL));

	/* Every flipped message byte. */
	for (size_t i = 0; i < sizeof(msg); i++) {
		memcpy(m, msg, sizeof(m));
		m[i] ^= 0x20;
		CHECK_EQ(verify_text(&pk, m, sizeof(m), sig), BK_EVERIFY);
	}
	CHECK(reason_is("bad-signature"));
	/* Truncated message. */
	CHECK_EQ(verify_text(&pk, msg, sizeof(msg) - 1, sig), BK_EVERIFY);

	/* Changed trusted comment. */
	char *copy = bk__strdup(sig);
	patch(copy, "security 7", "security 9");
	CHECK_EQ(verify_text(&pk, msg, sizeof(msg), copy), BK_EVERIFY);
	CHECK(reason_is("bad-trusted-comment"));
	bk__free(copy);

	/* Changed global signature: flip one base64 digit of the last line. */
	copy = bk__strdup(sig);
	char *last = strrchr(copy, '\n');
	*last = '\0';
	last = strrchr(copy, '\n') + 1;
	*strchr(copy, '\0') = '\n';
	last[10] = last[10] == 'A' ? 'B' : 'A';
	CHECK_EQ(verify_text(&pk, msg, sizeof(msg), copy), BK_EVERIFY);
	CHECK(reason_is("bad-trusted-comment"));
	bk__free(copy);

	/* Changed signature bytes (second line). */
	copy = bk__strdup(sig);
	char *l2 = strchr(copy, '\n') + 1;
	l2[30] = l2[30] == 'A' ? 'B' : 'A';
	CHECK_EQ(verify_text(&pk, msg, sizeof(msg), copy), BK_EVERIFY);
	CHECK(reason_is("bad-signature"));
	/* The untrusted comment is free to change. */
	bk__free(copy);
	copy = bk__strdup(sig);
	patch(copy, "signature from", "SIGNATURE FROM");
	CHECK_OK(verify_text(&pk, msg, sizeof(msg), copy));
	bk__free(copy);
	bk__free(sig);
	bk_minisign_seckey_free(sk);
}

static void test_legacy(void)
{
	bk_minisign_seckey *sk = NULL;
	bk_minisign_pubkey pk;
	bk_minisign_sig *s = NULL;
	char *sig = NULL;
	size_t len;
	uint8_t hash[64] = {0};
	REQUIRE_OK(bk_minisign_keygen(&sk));
	bk_minisign_seckey_pubkey(sk, &pk);
	REQUIRE_OK(bk_minisign_sign_buf_legacy(&sig, &len, sk, msg, sizeof(msg), "old", NULL));
	REQUIRE_OK(bk_minisign_sig_parse(&s, sig, len));
	CHECK(!bk_minisign_sig_prehashed(s));
	CHECK_OK(bk_minisign_verify_buf(s, &pk, msg, sizeof(msg)));
	CHECK_EQ(bk_minisign_verify_buf(s, &pk, msg, sizeof(msg) - 1), BK_EVERIFY);
	CHECK(reason_is("bad-signature"));
	CHECK_EQ(bk_minisign_verify_hash(s, &pk, hash), BK_EVERIFY);
	CHECK(reason_is("legacy-needs-message"));

	const char *path = bk_test_path("legacy.bin");
	REQUIRE_OK(bk_file_write_atomic(path, msg, sizeof(msg), 0644, 0));
	CHECK_OK(bk_minisign_verify_file(s, &pk, path));
	REQUIRE_OK(bk_file_write_atomic(path, msg, sizeof(msg) - 2, 0644, 0));
	CHECK_EQ(bk_minisign_verify_file(s, &pk, path), BK_EVERIFY);
	/* An "ED" signature with the same bytes is not interchangeable. */
	char *copy = bk__strdup(sig);
	bk_minisign_sig *s2 = NULL;
	copy[strlen("untrusted comment: signature from aibo-restore secret key\n") + 1] = 'U';
	CHECK_OK(bk_minisign_sig_parse(&s2, copy, len));
	if (s2)
		CHECK_EQ(bk_minisign_verify_buf(s2, &pk, msg, sizeof(msg)), BK_EVERIFY);
	bk_minisign_sig_free(s2);
	bk__free(copy);
	bk_minisign_sig_free(s);
	bk__free(sig);
	bk_minisign_seckey_free(sk);
}

static void test_file_streaming(void)
{
	bk_minisign_seckey *sk = NULL;
	bk_minisign_pubkey pk;
	bk_minisign_sig *s = NULL;
	char *sig = NULL;
	size_t len, n = 300000;
	uint8_t *big = bk__malloc(n);
	REQUIRE(big != NULL);
	for (size_t i = 0; i < n; i++)
		big[i] = (uint8_t)(i * 7 + (i >> 9));
	const char *path = bk_test_path("payload.img");
	REQUIRE_OK(bk_file_write_atomic(path, big, n, 0644, 0));
	REQUIRE_OK(bk_minisign_keygen(&sk));
	bk_minisign_seckey_pubkey(sk, &pk);
	REQUIRE_OK(bk_minisign_sign_file(&sig, &len, sk, path, NULL, NULL));
	CHECK(strstr(sig, "\tfile:payload.img\thashed\n") != NULL);
	REQUIRE_OK(bk_minisign_sig_parse(&s, sig, len));
	CHECK_OK(bk_minisign_verify_file(s, &pk, path));
	/* The same signature checks the bytes in memory. */
	CHECK_OK(bk_minisign_verify_buf(s, &pk, big, n));
	big[n - 1] ^= 1;
	CHECK_EQ(bk_minisign_verify_buf(s, &pk, big, n), BK_EVERIFY);
	REQUIRE_OK(bk_file_write_atomic(path, big, n, 0644, 0));
	CHECK_EQ(bk_minisign_verify_file(s, &pk, path), BK_EVERIFY);
	CHECK(reason_is("bad-signature"));
	CHECK_EQ(bk_minisign_verify_file(s, &pk, bk_test_path("missing")), BK_ENOTFOUND);
	bk_minisign_sig_free(s);
	bk__free(sig);
	bk__free(big);
	bk_minisign_seckey_free(sk);
}

static void test_malformed_signature(void)
{
	static const char *bad[] = {
	    "",
	    "untrusted comment: x\n",
	    /* three lines */
	    "untrusted comment: x\nRUQAAAAAAAAAAAAA\ntrusted comment: y\n",
	    /* missing prefixes */
	    "comment: x\n%s\ntrusted comment: y\n%s\n",
	    "untrusted comment: x\n%s\ncomment: y\n%s\n",
	    /* extra line */
	    "untrusted comment: x\n%s\ntrusted comment: y\n%s\n\n",
	    "untrusted comment: x\n%s\ntrusted comment: y\n%s\nmore\n",
	    /* bad base64 */
	    "untrusted comment: x\n%s!\ntrusted comment: y\n%s\n",
	    "untrusted comment: x\n%s\ntrusted comment: y\n%sAAAA\n",
	    "untrusted comment: x\n\ntrusted comment: y\n%s\n",
	    /* control character in a comment */
	    "untrusted comment: x\n%s\ntrusted comment: y\x01z\n%s\n",
	};
	uint8_t blob[74], gsig[64];
	char b1[120], b2[100], text[512];
	memset(blob, 0x11, sizeof(blob));
	memcpy(blob, "ED", 2);
	memset(gsig, 0x22, sizeof(gsig));
	sodium_bin2base64(b1, sizeof(b1), blob, sizeof(blob), sodium_base64_VARIANT_ORIGINAL);
	sodium_bin2base64(b2, sizeof(b2), gsig, sizeof(gsig), sodium_base64_VARIANT_ORIGINAL);
	/* The template itself parses (and fails only verification). */
	bk_minisign_sig *s = NULL;
	snprintf(text, sizeof(text), "untrusted comment: x\n%s\ntrusted comment: y\n%s\n", b1, b2);
	CHECK_OK(bk_minisign_sig_parse(&s, text, strlen(text)));
	bk_minisign_sig_free(s);
	s = NULL;
	/* CRLF line ends are fine, as are a missing final newline. */
	snprintf(text, sizeof(text), "untrusted comment: x\r\n%s\r\ntrusted comment: y\r\n%s", b1,
	         b2);
	CHECK_OK(bk_minisign_sig_parse(&s, text, strlen(text)));
	bk_minisign_sig_free(s);
	s = NULL;
	for (size_t i = 0; i < BK_ARRAY_LEN(bad); i++) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
		snprintf(text, sizeof(text), bad[i], b1, b2);
#pragma GCC diagnostic pop
		int rc = bk_minisign_sig_parse(&s, text, strlen(text));
		if (rc != BK_EFORMAT)
			fprintf(stderr, "  case %zu parsed (rc %d)\n", i, rc);
		CHECK_EQ(rc, BK_EFORMAT);
		CHECK(reason_is("malformed-signature"));
		CHECK(s == NULL);
	}
	/* Unknown algorithm. */
	memcpy(blob, "XX", 2);
	sodium_bin2base64(b1, sizeof(b1), blob, sizeof(blob), sodium_base64_VARIANT_ORIGINAL);
	snprintf(text, sizeof(text), "untrusted comment: x\n%s\ntrusted comment: y\n%s\n", b1, b2);
	CHECK_EQ(bk_minisign_sig_parse(&s, text, strlen(text)), BK_EFORMAT);
	/* A NUL byte. */
	CHECK_EQ(bk_minisign_sig_parse(&s, "untrusted comment: \0x\n", 22), BK_EFORMAT);
	/* Trusted comment over the limit. */
	bk_buf b = BK_BUF_INIT;
	REQUIRE_OK(bk_buf_printf(&b, "untrusted comment: x\n%s\ntrusted comment: ", b1));
	for (int i = 0; i <= BK_MINISIGN_TRUSTED_COMMENT_MAX; i++)
		bk_buf_put_u8(&b, 'a');
	bk_buf_printf(&b, "\n%s\n", b2);
	memcpy(blob, "ED", 2);
	CHECK_EQ(bk_minisign_sig_parse(&s, (const char *)b.data, b.len), BK_EFORMAT);
	bk_buf_free(&b);
}

static void test_malformed_key(void)
{
	bk_minisign_pubkey pk;
	bk_minisign_seckey *sk = NULL, *sk2 = NULL;
	char *text = NULL;
	size_t len;
	static const char *badpub[] = {
	    "",
	    "untrusted comment: x\n",
	    "untrusted comment: x\nRWTzaNYpeXL3bImrG/9YOhHRVsNbq7AfiwxLrHRYEQr65/0PkfEMS+v\n",
	    "untrusted comment: x\nRWTzaNYpeXL3bImrG/9YOhHRVsNbq7AfiwxLrHRYEQr65/0PkfEMS+vPAA==\n",
	    "untrusted comment: x\nRWTzaNYpeXL3bImrG/9YOhHRVsNbq7AfiwxLrHRYEQr65/0PkfEMS+vP\nx\n",
	    "comment: x\nRWTzaNYpeXL3bImrG/9YOhHRVsNbq7AfiwxLrHRYEQr65/0PkfEMS+vP\n",
	    /* a byte outside the base64 alphabet (libsodium alone reads it as '/') */
	    "untrusted comment: x\nRWTzaNYpeXL3bImrG\xbe"
	    "9YOhHRVsNbq7AfiwxLrHRYEQr65/0PkfEMS+vP\n",
	    /* "Ec" instead of "Ed" */
	    "untrusted comment: x\nRWPzaNYpeXL3bImrG/9YOhHRVsNbq7AfiwxLrHRYEQr65/0PkfEMS+vP\n",
	};
	for (size_t i = 0; i < BK_ARRAY_LEN(badpub); i++) {
		int rc = bk_minisign_pubkey_parse(&pk, badpub[i], strlen(badpub[i]));
		if (rc != BK_EFORMAT)
			fprintf(stderr, "  public key case %zu: rc %d\n", i, rc);
		CHECK_EQ(rc, BK_EFORMAT);
		CHECK(reason_is("malformed-key"));
	}

	/* Secret keys: decode, damage one field, re-encode. */
	REQUIRE_OK(bk_minisign_keygen(&sk));
	REQUIRE_OK(bk_minisign_seckey_encode(&text, &len, sk, NULL, 0, 0));
	const char *b64 = strchr(text, '\n') + 1;
	uint8_t blob[158];
	size_t got = 0;
	REQUIRE(sodium_base642bin(blob, sizeof(blob), b64, strlen(b64) - 1, NULL, &got, NULL,
	                          sodium_base64_VARIANT_ORIGINAL) == 0 &&
	        got == sizeof(blob));
	struct {
		size_t off;
		const char *what;
	} damage[] = {
	    {0, "signature algorithm"}, {3, "kdf algorithm"}, {4, "checksum algorithm"},
	    {54, "key id (checksum)"},  {70, "secret seed"},  {100, "public half"},
	    {140, "checksum"},
	};
	for (size_t i = 0; i < BK_ARRAY_LEN(damage); i++) {
		uint8_t copy[158];
		char line[300];
		memcpy(copy, blob, sizeof(copy));
		copy[damage[i].off] ^= 0x01;
		bk_buf b = BK_BUF_INIT;
		sodium_bin2base64(line, sizeof(line), copy, sizeof(copy),
		                  sodium_base64_VARIANT_ORIGINAL);
		bk_buf_printf(&b, "untrusted comment: k\n%s\n", line);
		int rc = bk_minisign_seckey_parse(&sk2, (const char *)b.data, b.len, NULL);
		if (rc != BK_EFORMAT)
			fprintf(stderr, "  damaged %s: rc %d\n", damage[i].what, rc);
		CHECK_EQ(rc, BK_EFORMAT);
		CHECK(reason_is("malformed-key"));
		CHECK(sk2 == NULL);
		bk_buf_free(&b);
	}
	/* A zero checksum (as minisign -W writes) skips the checksum, but the
	 * public half must still match the seed. */
	{
		uint8_t copy[158];
		char line[300];
		memcpy(copy, blob, sizeof(copy));
		memset(copy + 126, 0, 32);
		bk_buf zb = BK_BUF_INIT;
		sodium_bin2base64(line, sizeof(line), copy, sizeof(copy),
		                  sodium_base64_VARIANT_ORIGINAL);
		bk_buf_printf(&zb, "untrusted comment: k\n%s\n", line);
		CHECK_OK(bk_minisign_seckey_parse(&sk2, (const char *)zb.data, zb.len, NULL));
		bk_minisign_seckey_free(sk2);
		sk2 = NULL;
		copy[100] ^= 1;
		bk_buf_reset(&zb);
		sodium_bin2base64(line, sizeof(line), copy, sizeof(copy),
		                  sodium_base64_VARIANT_ORIGINAL);
		bk_buf_printf(&zb, "untrusted comment: k\n%s\n", line);
		CHECK_EQ(bk_minisign_seckey_parse(&sk2, (const char *)zb.data, zb.len, NULL),
		         BK_EFORMAT);
		CHECK(reason_is("malformed-key"));
		bk_buf_free(&zb);
	}
	/* Truncated and extra text. */
	CHECK_EQ(bk_minisign_seckey_parse(&sk2, text, len - 10, NULL), BK_EFORMAT);
	bk_buf b = BK_BUF_INIT;
	bk_buf_printf(&b, "%sextra\n", text);
	CHECK_EQ(bk_minisign_seckey_parse(&sk2, (const char *)b.data, b.len, NULL), BK_EFORMAT);
	bk_buf_free(&b);
	/* A public key is not a secret key. */
	CHECK_EQ(bk_minisign_seckey_parse(&sk2, vec_pub, strlen(vec_pub), NULL), BK_EFORMAT);
	bk_wipe(text, len);
	bk__free(text);
	bk_minisign_seckey_free(sk);
}

static void test_key_files(void)
{
	bk_minisign_seckey *sk = NULL, *sk2 = NULL;
	bk_minisign_pubkey pk, pk2;
	const char *sec = bk_test_path("ca.key");
	const char *pub = bk_test_path("ca.pub");
	struct stat st;
	REQUIRE_OK(bk_minisign_keygen(&sk));
	bk_minisign_seckey_pubkey(sk, &pk);
	REQUIRE_OK(bk_minisign_seckey_write(sec, sk, NULL, 0, 0));
	REQUIRE_OK(bk_minisign_pubkey_write(pub, &pk));
	REQUIRE(stat(sec, &st) == 0);
	CHECK_EQ(st.st_mode & 0777, 0600);
	/* Never replaced. */
	CHECK_EQ(bk_minisign_seckey_write(sec, sk, NULL, 0, 0), BK_EEXIST);
	CHECK_EQ(bk_minisign_pubkey_write(pub, &pk), BK_EEXIST);

	CHECK_OK(bk_minisign_pubkey_read(&pk2, pub));
	CHECK(memcmp(&pk, &pk2, sizeof(pk)) == 0);
	CHECK_OK(bk_minisign_seckey_read(&sk2, sec, NULL));
	bk_minisign_seckey_free(sk2);
	sk2 = NULL;

	/* A secret key readable by others is refused. */
	REQUIRE(chmod(sec, 0644) == 0);
	CHECK_EQ(bk_minisign_seckey_read(&sk2, sec, NULL), BK_EAUTH);
	CHECK(reason_is("key-file-permissions"));
	CHECK(strstr(bk_error_last()->message, "chmod 600") != NULL);
	CHECK(sk2 == NULL);
	REQUIRE(chmod(sec, 0640) == 0);
	CHECK_EQ(bk_minisign_seckey_read(&sk2, sec, NULL), BK_EAUTH);
	REQUIRE(chmod(sec, 0600) == 0);
	CHECK_OK(bk_minisign_seckey_read(&sk2, sec, NULL));
	bk_minisign_seckey_free(sk2);
	sk2 = NULL;
	CHECK_EQ(bk_minisign_seckey_read(&sk2, bk_test_path("nope.key"), NULL), BK_ENOTFOUND);

	/* Encrypted file. */
	const char *enc = bk_test_path("enc.key");
	REQUIRE_OK(bk_minisign_seckey_write(enc, sk, "pw", 1 << 15, 1 << 24));
	CHECK_EQ(bk_minisign_seckey_read(&sk2, enc, "pw2"), BK_EAUTH);
	CHECK_OK(bk_minisign_seckey_read(&sk2, enc, "pw"));
	bk_minisign_seckey_free(sk2);
	bk_minisign_seckey_free(sk);
}

/* Every allocation failure ends in a clean error, never a crash or a leak. */
static void test_alloc_failures(void)
{
	bk_minisign_seckey *sk = NULL;
	bk_minisign_pubkey pk;
	char *keytext = NULL;
	size_t keylen;
	REQUIRE_OK(bk_minisign_keygen(&sk));
	bk_minisign_seckey_pubkey(sk, &pk);
	REQUIRE_OK(bk_minisign_seckey_encode(&keytext, &keylen, sk, NULL, 0, 0));
	int ok = 0;
	for (long n = 1; n < 60 && !ok; n++) {
		bk_minisign_seckey *k2 = NULL;
		char *sig = NULL, *tc = NULL;
		size_t len;
		bk__alloc_fail_at(n);
		int rc = bk_minisign_seckey_parse(&k2, keytext, keylen, NULL);
		if (rc == 0)
			rc = bk_minisign_sign_buf(&sig, &len, k2, msg, sizeof(msg), NULL, NULL);
		if (rc == 0)
			rc = bk_minisign_verify_mem(&tc, &pk, 1, msg, sizeof(msg), sig, len);
		bk__alloc_fail_at(0);
		if (rc == 0)
			ok = 1;
		else
			CHECK_EQ(rc, BK_ENOMEM);
		bk__free(tc);
		bk__free(sig);
		bk_minisign_seckey_free(k2);
	}
	CHECK(ok);
	bk_wipe(keytext, keylen);
	bk__free(keytext);
	bk_minisign_seckey_free(sk);
}

BK_RUN_TESTS(BK_TEST(test_minisign_vector), BK_TEST(test_round_trip), BK_TEST(test_encrypted_key),
             BK_TEST(test_wrong_key_id), BK_TEST(test_bad_signature_and_comment),
             BK_TEST(test_legacy), BK_TEST(test_file_streaming), BK_TEST(test_malformed_signature),
             BK_TEST(test_malformed_key), BK_TEST(test_key_files), BK_TEST(test_alloc_failures))
