/* Noise handshake and transport: round trips, tampering, misuse, limits and
 * allocation failures. */
#include <string.h>

#include <sodium.h>

#include <libbackup/libbackup.h>

#include "crypto/noise.h"
#include "libbackup/util/util.h"
#include "testlib.h"

#define XX       "Noise_XX_25519_ChaChaPoly_BLAKE2b"
#define PROLOGUE "aibo-restore/1"

typedef struct peer {
	bk_noise_handshake *hs;
	bk_noise_cipher *send, *recv;
	uint8_t s[32], s_pub[32];
} peer;

static void peer_free(peer *p)
{
	bk_noise_cipher_free(p->send);
	bk_noise_cipher_free(p->recv);
	bk_noise_handshake_free(p->hs);
	memset(p, 0, sizeof(*p));
}

/* Makes a side with a fresh static key. */
static int peer_new(peer *p, const char *proto, bool initiator, const char *prologue)
{
	memset(p, 0, sizeof(*p));
	int rc = bk_noise_keygen(p->s_pub, p->s);
	if (rc == 0)
		rc = bk_noise_handshake_new(&p->hs, proto, initiator, (const uint8_t *)prologue,
		                            strlen(prologue));
	if (rc == 0)
		rc = bk_noise_handshake_set_local_static(p->hs, p->s);
	return rc;
}

/* One handshake message from a to b, with a payload; checks it arrives. */
static int hop(peer *a, peer *b, const char *payload)
{
	uint8_t msg[BK_NOISE_MAX_MSG], got[BK_NOISE_MAX_MSG];
	size_t n, m, plen = strlen(payload);
	size_t want = bk_noise_handshake_message_len(a->hs, plen);
	int rc = bk_noise_handshake_write_message(a->hs, (const uint8_t *)payload, plen, msg,
	                                          sizeof(msg), &n);
	if (rc != 0)
		return rc;
	if (n != want)
		return -100;
	rc = bk_noise_handshake_read_message(b->hs, msg, n, got, sizeof(got), &m);
	if (rc != 0)
		return rc;
	if (m != plen || memcmp(got, payload, plen) != 0)
		return -101;
	return 0;
}

static int split_both(peer *i, peer *r)
{
	int rc = bk_noise_handshake_split(i->hs, &i->send, &i->recv);
	if (rc == 0)
		rc = bk_noise_handshake_split(r->hs, &r->send, &r->recv);
	return rc;
}

/* A transport message from a to b, encrypted and decrypted in place. */
static int frame(bk_noise_cipher *enc, bk_noise_cipher *dec, const char *text)
{
	uint8_t buf[256];
	size_t len = strlen(text);
	memcpy(buf, text, len);
	int rc = bk_noise_cipher_encrypt(enc, (const uint8_t *)"ad", 2, buf, len, buf);
	if (rc != 0)
		return rc;
	if (len > 0 && memcmp(buf, text, len) == 0)
		return -102; /* not encrypted */
	rc = bk_noise_cipher_decrypt(dec, (const uint8_t *)"ad", 2, buf, len + 16, buf);
	if (rc != 0)
		return rc;
	return memcmp(buf, text, len) == 0 ? 0 : -103;
}

static void test_xx_round_trip(void)
{
	peer i, r;
	uint8_t hi[64], hr[64];
	REQUIRE_OK(peer_new(&i, XX, true, PROLOGUE));
	REQUIRE_OK(peer_new(&r, XX, false, PROLOGUE));
	CHECK(bk_noise_handshake_is_my_turn(i.hs));
	CHECK(!bk_noise_handshake_is_my_turn(r.hs));
	CHECK_EQ(bk_noise_handshake_message_len(i.hs, 5), 32 + 5);
	CHECK(bk_noise_handshake_remote_static(r.hs) == NULL);
	CHECK_OK(hop(&i, &r, "hello"));
	CHECK_EQ(bk_noise_handshake_message_len(r.hs, 3), 32 + 48 + 3 + 16);
	CHECK_OK(hop(&r, &i, "unit certificate"));
	/* The initiator learnt the responder's static key from message 2. */
	REQUIRE(bk_noise_handshake_remote_static(i.hs) != NULL);
	CHECK(memcmp(bk_noise_handshake_remote_static(i.hs), r.s_pub, 32) == 0);
	CHECK(!bk_noise_handshake_is_finished(i.hs));
	CHECK_OK(hop(&i, &r, "terminal certificate"));
	REQUIRE(bk_noise_handshake_is_finished(i.hs) && bk_noise_handshake_is_finished(r.hs));
	REQUIRE(bk_noise_handshake_remote_static(r.hs) != NULL);
	CHECK(memcmp(bk_noise_handshake_remote_static(r.hs), i.s_pub, 32) == 0);
	CHECK(memcmp(bk_noise_handshake_local_static(i.hs), i.s_pub, 32) == 0);
	CHECK_OK(bk_noise_handshake_hash(i.hs, hi));
	CHECK_OK(bk_noise_handshake_hash(r.hs, hr));
	CHECK(memcmp(hi, hr, 64) == 0);
	REQUIRE_OK(split_both(&i, &r));
	REQUIRE(i.send && i.recv && r.send && r.recv);
	CHECK_OK(frame(i.send, r.recv, "INFO"));
	CHECK_OK(frame(r.send, i.recv, "{\"serial\":\"X\"}"));
	CHECK_OK(frame(i.send, r.recv, ""));
	CHECK_EQ(bk_noise_cipher_nonce(i.send), 2);
	CHECK_EQ(bk_noise_cipher_nonce(r.recv), 2);
	/* Rekey on both ends keeps them in step; on one end only it breaks. */
	CHECK_OK(bk_noise_cipher_rekey(i.send));
	CHECK_OK(bk_noise_cipher_rekey(r.recv));
	CHECK_OK(frame(i.send, r.recv, "after rekey"));
	CHECK_OK(bk_noise_cipher_rekey(r.send));
	CHECK_EQ(frame(r.send, i.recv, "one-sided"), BK_EVERIFY);
	/* Hash still readable after split. */
	CHECK_OK(bk_noise_handshake_hash(i.hs, hi));
	CHECK(memcmp(hi, hr, 64) == 0);
	peer_free(&i);
	peer_free(&r);
}

static void test_xx_large_payloads(void)
{
	peer i, r;
	static uint8_t big[BK_NOISE_MAX_MSG], msg[BK_NOISE_MAX_MSG], got[BK_NOISE_MAX_MSG];
	size_t n, m;
	REQUIRE_OK(peer_new(&i, XX, true, PROLOGUE));
	REQUIRE_OK(peer_new(&r, XX, false, PROLOGUE));
	randombytes_buf(big, sizeof(big));
	/* Message 1 carries e (32) + payload: the largest payload fits exactly. */
	REQUIRE_OK(bk_noise_handshake_write_message(i.hs, big, BK_NOISE_MAX_MSG - 32, msg,
	                                            sizeof(msg), &n));
	CHECK_EQ(n, BK_NOISE_MAX_MSG);
	REQUIRE_OK(bk_noise_handshake_read_message(r.hs, msg, n, got, sizeof(got), &m));
	CHECK_EQ(m, BK_NOISE_MAX_MSG - 32);
	CHECK(memcmp(got, big, m) == 0);
	/* One byte more for message 2 is refused without harm. */
	size_t max2 = BK_NOISE_MAX_MSG - 32 - 48 - 16;
	CHECK_EQ(bk_noise_handshake_write_message(r.hs, big, max2 + 1, msg, sizeof(msg), &n),
	         BK_EINVALID);
	CHECK_STR(bk_error_last()->reason, "message-too-large");
	REQUIRE_OK(bk_noise_handshake_write_message(r.hs, big, max2, msg, sizeof(msg), &n));
	CHECK_EQ(n, BK_NOISE_MAX_MSG);
	REQUIRE_OK(bk_noise_handshake_read_message(i.hs, msg, n, got, sizeof(got), &m));
	CHECK_EQ(m, max2);
	CHECK(memcmp(got, big, m) == 0);
	CHECK_OK(hop(&i, &r, ""));
	REQUIRE_OK(split_both(&i, &r));
	/* Transport: 65535 - 16 is the largest payload. */
	REQUIRE_OK(bk_noise_cipher_encrypt(i.send, NULL, 0, big, BK_NOISE_MAX_PAYLOAD, msg));
	REQUIRE_OK(bk_noise_cipher_decrypt(r.recv, NULL, 0, msg, BK_NOISE_MAX_MSG, got));
	CHECK(memcmp(got, big, BK_NOISE_MAX_PAYLOAD) == 0);
	CHECK_EQ(bk_noise_cipher_encrypt(i.send, NULL, 0, big, BK_NOISE_MAX_PAYLOAD + 1, msg),
	         BK_EINVALID);
	CHECK_EQ(bk_noise_cipher_decrypt(r.recv, NULL, 0, msg, BK_NOISE_MAX_MSG + 1, got),
	         BK_EFORMAT);
	CHECK_EQ(bk_noise_cipher_decrypt(r.recv, NULL, 0, msg, 15, got), BK_EFORMAT);
	CHECK_STR(bk_error_last()->reason, "frame-truncated");
	peer_free(&i);
	peer_free(&r);
}

static void test_buffer_too_small(void)
{
	peer i, r;
	uint8_t msg[256], got[256];
	size_t n, m;
	REQUIRE_OK(peer_new(&i, XX, true, PROLOGUE));
	REQUIRE_OK(peer_new(&r, XX, false, PROLOGUE));
	CHECK_EQ(bk_noise_handshake_write_message(i.hs, (const uint8_t *)"abc", 3, msg, 34, &n),
	         BK_ENOSPACE);
	CHECK_STR(bk_error_last()->reason, "buffer-too-small");
	REQUIRE_OK(bk_noise_handshake_write_message(i.hs, (const uint8_t *)"abc", 3, msg, 35, &n));
	CHECK_EQ(bk_noise_handshake_read_message(r.hs, msg, n, got, 2, &m), BK_ENOSPACE);
	/* The state did not move: the same message reads with a big enough buffer. */
	REQUIRE_OK(bk_noise_handshake_read_message(r.hs, msg, n, got, 3, &m));
	CHECK_EQ(m, 3);
	CHECK_OK(hop(&r, &i, ""));
	CHECK_OK(hop(&i, &r, ""));
	peer_free(&i);
	peer_free(&r);
}

static void test_tampered_handshake(void)
{
	uint8_t msg[512], got[512];
	size_t n, m;
	/* Every byte of message 2 is covered: flipping any one of them fails it. */
	for (size_t pos = 0; pos < 32 + 48 + 4 + 16; pos += 7) {
		peer i, r;
		REQUIRE_OK(peer_new(&i, XX, true, PROLOGUE));
		REQUIRE_OK(peer_new(&r, XX, false, PROLOGUE));
		REQUIRE_OK(hop(&i, &r, ""));
		REQUIRE_OK(bk_noise_handshake_write_message(r.hs, (const uint8_t *)"cert", 4, msg,
		                                            sizeof(msg), &n));
		REQUIRE(pos < n);
		msg[pos] ^= 0x01;
		int rc = bk_noise_handshake_read_message(i.hs, msg, n, got, sizeof(got), &m);
		/* A flipped ephemeral key may land on a low-order point; both are BK_EVERIFY. */
		CHECK_EQ(rc, BK_EVERIFY);
		/* The handshake is dead now. */
		CHECK_EQ(bk_noise_handshake_write_message(i.hs, NULL, 0, msg, sizeof(msg), &n),
		         BK_EINVALID);
		CHECK_STR(bk_error_last()->reason, "handshake-failed");
		CHECK(!bk_noise_handshake_is_finished(i.hs));
		peer_free(&i);
		peer_free(&r);
	}
	/* Message 1 is not authenticated by itself: a flipped ephemeral key makes the
	 * initiator reject message 2. */
	{
		peer i, r;
		REQUIRE_OK(peer_new(&i, XX, true, PROLOGUE));
		REQUIRE_OK(peer_new(&r, XX, false, PROLOGUE));
		REQUIRE_OK(bk_noise_handshake_write_message(i.hs, NULL, 0, msg, sizeof(msg), &n));
		msg[5] ^= 0x80;
		REQUIRE_OK(bk_noise_handshake_read_message(r.hs, msg, n, got, sizeof(got), &m));
		CHECK_EQ(hop(&r, &i, "x"), BK_EVERIFY);
		peer_free(&i);
		peer_free(&r);
	}
	/* A truncated message 2 is a format error. */
	{
		peer i, r;
		REQUIRE_OK(peer_new(&i, XX, true, PROLOGUE));
		REQUIRE_OK(peer_new(&r, XX, false, PROLOGUE));
		REQUIRE_OK(hop(&i, &r, ""));
		REQUIRE_OK(bk_noise_handshake_write_message(r.hs, NULL, 0, msg, sizeof(msg), &n));
		CHECK_EQ(bk_noise_handshake_read_message(i.hs, msg, n - 1, got, sizeof(got), &m),
		         BK_EFORMAT);
		CHECK_STR(bk_error_last()->reason, "handshake-truncated");
		peer_free(&i);
		peer_free(&r);
	}
}

static void test_tampered_transport(void)
{
	peer i, r;
	uint8_t buf[64], got[64];
	REQUIRE_OK(peer_new(&i, XX, true, PROLOGUE));
	REQUIRE_OK(peer_new(&r, XX, false, PROLOGUE));
	REQUIRE_OK(hop(&i, &r, ""));
	REQUIRE_OK(hop(&r, &i, ""));
	REQUIRE_OK(hop(&i, &r, ""));
	REQUIRE_OK(split_both(&i, &r));
	REQUIRE_OK(bk_noise_cipher_encrypt(i.send, NULL, 0, (const uint8_t *)"PING", 4, buf));
	buf[2] ^= 0x40;
	CHECK_EQ(bk_noise_cipher_decrypt(r.recv, NULL, 0, buf, 20, got), BK_EVERIFY);
	CHECK_STR(bk_error_last()->reason, "frame-auth");
	CHECK_EQ(bk_noise_cipher_nonce(r.recv), 0); /* a failed frame does not use a nonce */
	buf[2] ^= 0x40;
	/* Wrong associated data fails too; the genuine frame then decrypts. */
	CHECK_EQ(bk_noise_cipher_decrypt(r.recv, (const uint8_t *)"x", 1, buf, 20, got),
	         BK_EVERIFY);
	CHECK_OK(bk_noise_cipher_decrypt(r.recv, NULL, 0, buf, 20, got));
	CHECK(memcmp(got, "PING", 4) == 0);
	/* A replayed frame no longer authenticates. */
	CHECK_EQ(bk_noise_cipher_decrypt(r.recv, NULL, 0, buf, 20, got), BK_EVERIFY);
	/* A frame from the wrong direction does not either. */
	REQUIRE_OK(bk_noise_cipher_encrypt(i.send, NULL, 0, (const uint8_t *)"PONG", 4, buf));
	CHECK_EQ(bk_noise_cipher_decrypt(i.recv, NULL, 0, buf, 20, got), BK_EVERIFY);
	peer_free(&i);
	peer_free(&r);
}

static void test_wrong_prologue(void)
{
	peer i, r;
	REQUIRE_OK(peer_new(&i, XX, true, PROLOGUE));
	REQUIRE_OK(peer_new(&r, XX, false, "aibo-restore/2"));
	CHECK_OK(hop(&i, &r, ""));
	CHECK_EQ(hop(&r, &i, ""), BK_EVERIFY);
	CHECK_STR(bk_error_last()->reason, "handshake-auth");
	peer_free(&i);
	peer_free(&r);
}

static void test_nonce_exhaustion(void)
{
	peer i, r;
	uint8_t buf[64], got[64], ct[64];
	REQUIRE_OK(peer_new(&i, XX, true, PROLOGUE));
	REQUIRE_OK(peer_new(&r, XX, false, PROLOGUE));
	REQUIRE_OK(hop(&i, &r, ""));
	REQUIRE_OK(hop(&r, &i, ""));
	REQUIRE_OK(hop(&i, &r, ""));
	REQUIRE_OK(split_both(&i, &r));
	bk_noise__cipher_set_nonce(i.send, UINT64_MAX - 2);
	bk_noise__cipher_set_nonce(r.recv, UINT64_MAX - 2);
	CHECK_OK(frame(i.send, r.recv, "n-2"));
	/* 2^64-2 is the last usable nonce. */
	REQUIRE_OK(bk_noise_cipher_encrypt(i.send, NULL, 0, (const uint8_t *)"last", 4, ct));
	CHECK_EQ(bk_noise_cipher_nonce(i.send), UINT64_MAX);
	CHECK_EQ(bk_noise_cipher_encrypt(i.send, NULL, 0, (const uint8_t *)"more", 4, buf),
	         BK_ERROR);
	CHECK_STR(bk_error_last()->reason, "nonce-exhausted");
	CHECK_EQ(bk_noise_cipher_nonce(i.send), UINT64_MAX);
	/* Rekeying does not give nonces back. */
	CHECK_OK(bk_noise_cipher_rekey(i.send));
	CHECK_EQ(bk_noise_cipher_encrypt(i.send, NULL, 0, (const uint8_t *)"more", 4, buf),
	         BK_ERROR);
	CHECK_OK(bk_noise_cipher_decrypt(r.recv, NULL, 0, ct, 20, got));
	CHECK(memcmp(got, "last", 4) == 0);
	CHECK_EQ(bk_noise_cipher_decrypt(r.recv, NULL, 0, ct, 20, got), BK_ERROR);
	CHECK_STR(bk_error_last()->reason, "nonce-exhausted");
	peer_free(&i);
	peer_free(&r);
}

static void test_misuse(void)
{
	peer i, r;
	uint8_t msg[512] = {0}, got[512], h[64], key[32] = {1};
	size_t n, m;
	bk_noise_cipher *a = NULL, *b = NULL;
	REQUIRE_OK(peer_new(&i, XX, true, PROLOGUE));
	REQUIRE_OK(peer_new(&r, XX, false, PROLOGUE));
	/* The responder cannot speak first, the initiator cannot listen first. */
	CHECK_EQ(bk_noise_handshake_write_message(r.hs, NULL, 0, msg, sizeof(msg), &n),
	         BK_EINVALID);
	CHECK_STR(bk_error_last()->reason, "out-of-order");
	CHECK_EQ(bk_noise_handshake_read_message(i.hs, msg, 32, got, sizeof(got), &m), BK_EINVALID);
	CHECK_STR(bk_error_last()->reason, "out-of-order");
	CHECK_EQ(bk_noise_handshake_split(i.hs, &a, &b), BK_EINVALID);
	CHECK(a == NULL && b == NULL);
	CHECK_EQ(bk_noise_handshake_hash(i.hs, h), BK_EINVALID);
	/* XX takes no pre-known remote key and no PSK. */
	CHECK_EQ(bk_noise_handshake_set_remote_static(i.hs, key), BK_EINVALID);
	CHECK_EQ(bk_noise_handshake_set_psk(i.hs, key), BK_EINVALID);
	REQUIRE_OK(bk_noise_handshake_write_message(i.hs, NULL, 0, msg, sizeof(msg), &n));
	/* Writing twice in a row, or changing keys once started, is refused. */
	CHECK_EQ(bk_noise_handshake_write_message(i.hs, NULL, 0, msg + 100, 100, &m), BK_EINVALID);
	CHECK_EQ(bk_noise_handshake_set_local_static(i.hs, key), BK_EINVALID);
	CHECK_EQ(bk_noise__handshake_set_ephemeral(i.hs, key), BK_EINVALID);
	REQUIRE_OK(bk_noise_handshake_read_message(r.hs, msg, n, got, sizeof(got), &m));
	CHECK_EQ(bk_noise_handshake_read_message(r.hs, msg, n, got, sizeof(got), &m), BK_EINVALID);
	REQUIRE_OK(hop(&r, &i, ""));
	REQUIRE_OK(hop(&i, &r, ""));
	/* Finished: no more handshake messages; split once only. */
	CHECK_EQ(bk_noise_handshake_write_message(i.hs, NULL, 0, msg, sizeof(msg), &n),
	         BK_EINVALID);
	CHECK_EQ(bk_noise_handshake_read_message(r.hs, msg, 48, got, sizeof(got), &m), BK_EINVALID);
	CHECK_EQ(bk_noise_handshake_message_len(i.hs, 0), 0);
	REQUIRE_OK(split_both(&i, &r));
	CHECK_EQ(bk_noise_handshake_split(i.hs, &a, &b), BK_EINVALID);
	CHECK(a == NULL && b == NULL);
	/* NULL handles. */
	CHECK_EQ(bk_noise_cipher_encrypt(NULL, NULL, 0, msg, 1, got), BK_EINVALID);
	CHECK_EQ(bk_noise_handshake_write_message(NULL, NULL, 0, msg, 1, &n), BK_EINVALID);
	bk_noise_handshake_free(NULL);
	bk_noise_cipher_free(NULL);
	peer_free(&i);
	peer_free(&r);

	/* A responder without a static key cannot run XX. */
	bk_noise_handshake *hs = NULL, *hi = NULL;
	REQUIRE_OK(bk_noise_handshake_new(&hi, XX, true, NULL, 0));
	REQUIRE_OK(bk_noise_handshake_set_local_static(hi, key));
	REQUIRE_OK(bk_noise_handshake_new(&hs, XX, false, NULL, 0));
	REQUIRE_OK(bk_noise_handshake_write_message(hi, NULL, 0, msg, sizeof(msg), &n));
	CHECK_EQ(bk_noise_handshake_read_message(hs, msg, n, got, sizeof(got), &m), BK_EINVALID);
	CHECK_STR(bk_error_last()->reason, "missing-key");
	bk_noise_handshake_free(hs);
	bk_noise_handshake_free(hi);
	/* An IK initiator needs the responder's key in advance. */
	REQUIRE_OK(bk_noise_handshake_new(&hs, "Noise_IK_25519_ChaChaPoly_BLAKE2b", true, NULL, 0));
	CHECK_OK(bk_noise_handshake_set_local_static(hs, key));
	CHECK_EQ(bk_noise_handshake_write_message(hs, NULL, 0, msg, sizeof(msg), &n), BK_EINVALID);
	CHECK_STR(bk_error_last()->reason, "missing-key");
	bk_noise_handshake_free(hs);
}

static void test_protocol_names(void)
{
	static const struct {
		const char *name;
		int rc;
	} cases[] = {
	    {"Noise_XX_25519_ChaChaPoly_BLAKE2b", 0},
	    {"Noise_N_25519_ChaChaPoly_BLAKE2b", 0},
	    {"Noise_IK_25519_ChaChaPoly_BLAKE2b", 0},
	    {"Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b", 0},
	    {"Noise_NNpsk0+psk2_25519_ChaChaPoly_BLAKE2b", 0},
	    {"Noise_XX_25519_ChaChaPoly_SHA256", BK_EINCOMPAT},
	    {"Noise_XX_25519_AESGCM_BLAKE2b", BK_EINCOMPAT},
	    {"Noise_XX_448_ChaChaPoly_BLAKE2b", BK_EINCOMPAT},
	    {"Noise_XX_25519_ChaChaPoly_BLAKE2b_", BK_EINCOMPAT},
	    {"Noise_XY_25519_ChaChaPoly_BLAKE2b", BK_EINCOMPAT},
	    {"Noise_XXfallback_25519_ChaChaPoly_BLAKE2b", BK_EINCOMPAT},
	    {"Noise_XXpsk4_25519_ChaChaPoly_BLAKE2b", BK_EINCOMPAT},
	    {"Noise_NNpsk0+psk0_25519_ChaChaPoly_BLAKE2b", BK_EINCOMPAT},
	    {"Noise_NNpsk0+_25519_ChaChaPoly_BLAKE2b", BK_EINCOMPAT},
	    {"Noise_xx_25519_ChaChaPoly_BLAKE2b", BK_EINCOMPAT},
	    {"Noise__25519_ChaChaPoly_BLAKE2b", BK_EINVALID},
	    {"NoiseXX", BK_EINVALID},
	    {"", BK_EINVALID},
	};
	for (size_t k = 0; k < BK_ARRAY_LEN(cases); k++) {
		bk_noise_handshake *hs = NULL;
		int rc = bk_noise_handshake_new(&hs, cases[k].name, true, NULL, 0);
		if (rc != cases[k].rc)
			fprintf(stderr, "  %s: %d\n", cases[k].name, rc);
		CHECK_EQ(rc, cases[k].rc);
		CHECK((rc == 0) == (hs != NULL));
		bk_noise_handshake_free(hs);
	}
	CHECK_EQ(bk_noise_handshake_new(NULL, XX, true, NULL, 0), BK_EINVALID);
}

/* Every fundamental pattern, with random keys, both directions after split. */
static void test_all_patterns(void)
{
	static const char *const pats[] = {
	    "NN", "NK", "NX", "KN", "KK", "KX",     "XN",     "XK",     "XX",          "IN",
	    "IK", "IX", "N",  "K",  "X",  "NNpsk0", "XXpsk3", "IKpsk2", "NNpsk0+psk2", "Npsk0"};
	for (size_t k = 0; k < BK_ARRAY_LEN(pats); k++) {
		char name[80];
		peer i, r;
		uint8_t psk[32];
		snprintf(name, sizeof(name), "Noise_%s_25519_ChaChaPoly_BLAKE2b", pats[k]);
		REQUIRE_OK(peer_new(&i, name, true, "p"));
		REQUIRE_OK(peer_new(&r, name, false, "p"));
		const char *base = pats[k];
		size_t blen = strspn(base, "NKXI");
		bool one_way = blen == 1;
		/* Pre-known keys: responder's for *K and one-way, initiator's for K*. */
		if (base[blen - 1] == 'K' || one_way)
			CHECK_OK(bk_noise_handshake_set_remote_static(i.hs, r.s_pub));
		if (base[0] == 'K')
			CHECK_OK(bk_noise_handshake_set_remote_static(r.hs, i.s_pub));
		if (strstr(base, "psk")) {
			randombytes_buf(psk, sizeof(psk));
			CHECK_OK(bk_noise_handshake_set_psk(i.hs, psk));
			CHECK_OK(bk_noise_handshake_set_psk(r.hs, psk));
		}
		int turns = 0;
		while (!bk_noise_handshake_is_finished(i.hs) && turns < 5) {
			bool ifirst = bk_noise_handshake_is_my_turn(i.hs);
			int rc = ifirst ? hop(&i, &r, "payload") : hop(&r, &i, "payload");
			if (rc != 0)
				fprintf(stderr, "  %s: message %d: %d\n", name, turns, rc);
			REQUIRE_OK(rc);
			turns++;
		}
		CHECK(bk_noise_handshake_is_finished(r.hs));
		/* Whoever had a static key, the other side knows it now. */
		if (base[0] != 'N')
			CHECK(bk_noise_handshake_remote_static(r.hs) &&
			      memcmp(bk_noise_handshake_remote_static(r.hs), i.s_pub, 32) == 0);
		if (one_way || base[blen - 1] != 'N')
			CHECK(bk_noise_handshake_remote_static(i.hs) &&
			      memcmp(bk_noise_handshake_remote_static(i.hs), r.s_pub, 32) == 0);
		REQUIRE_OK(split_both(&i, &r));
		CHECK_OK(frame(i.send, r.recv, "to responder"));
		if (one_way)
			CHECK(i.recv == NULL && r.send == NULL);
		else
			CHECK_OK(frame(r.send, i.recv, "to initiator"));
		peer_free(&i);
		peer_free(&r);
	}
}

static void test_psk_mismatch(void)
{
	peer i, r;
	uint8_t p1[32], p2[32];
	randombytes_buf(p1, 32);
	memcpy(p2, p1, 32);
	p2[31] ^= 1;
	REQUIRE_OK(peer_new(&i, "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b", true, ""));
	REQUIRE_OK(peer_new(&r, "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b", false, ""));
	CHECK_OK(bk_noise_handshake_set_psk(i.hs, p1));
	CHECK_OK(bk_noise_handshake_set_psk(r.hs, p2));
	CHECK_OK(hop(&i, &r, ""));
	CHECK_OK(hop(&r, &i, ""));
	CHECK_EQ(hop(&i, &r, ""), BK_EVERIFY);
	peer_free(&i);
	peer_free(&r);
	/* A psk pattern without a PSK refuses to start. */
	REQUIRE_OK(peer_new(&i, "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2b", true, ""));
	CHECK_EQ(hop(&i, &i, ""), BK_EINVALID);
	CHECK_STR(bk_error_last()->reason, "missing-key");
	peer_free(&i);
}

/* Noise_KKpsk0_25519_ChaChaPoly_BLAKE2b from the cacophony vectors (MIT):
 * checks the psk0 modifier byte for byte, both roles. */
static void test_psk_vector_kkpsk0(void)
{
	static const char *const msgs[][2] = {
	    {"4c756477696720766f6e204d69736573",
	     "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c794487521fc73d6357e877a7"
	     "e9f84d5ec31a067fbf444d51ab71de409278f5857fb3"},
	    {"4d757272617920526f746862617264",
	     "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f14480884308dc2259e85ee1469235"
	     "4eaaf1eb3054054e738e46fe7f8a73e02e871c732c"},
	    {"462e20412e20486179656b", "9505ef116d0a22648bd4fbb58cf08cfac297917e3bfccf17eff842"},
	    {"4361726c204d656e676572", "28ef5ad914f57f499c5bd3171ea0f5911787e3eae0edc7ac56c003"},
	    {"4a65616e2d426170746973746520536179",
	     "896265d3ae0eecdb6bf340ad1c70c5347bfab494e08a475f86ddba09d3c7b768fe"},
	    {"457567656e2042f6686d20766f6e2042617765726b",
	     "35fb4019719e1a545360fba324db5456214935a221e12c2e16d5d8bfdc7342669f21e54cc6"},
	};
	uint8_t psk[32], is[32], ie[32], irs[32], rs[32], re[32], rrs[32];
	REQUIRE_OK(bk_hex_decode(
	    psk, 32, "54686973206973206d7920417573747269616e20706572737065637469766521"));
	REQUIRE_OK(bk_hex_decode(
	    is, 32, "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1"));
	REQUIRE_OK(bk_hex_decode(
	    ie, 32, "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a"));
	REQUIRE_OK(bk_hex_decode(
	    irs, 32, "31e0303fd6418d2f8c0e78b91f22e8caed0fbe48656dcf4767e4834f701b8f62"));
	REQUIRE_OK(bk_hex_decode(
	    rs, 32, "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893"));
	REQUIRE_OK(bk_hex_decode(
	    re, 32, "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b"));
	REQUIRE_OK(bk_hex_decode(
	    rrs, 32, "6bc3822a2aa7f4e6981d6538692b3cdf3e6df9eea6ed269eb41d93c22757b75a"));
	const char *name = "Noise_KKpsk0_25519_ChaChaPoly_BLAKE2b";
	const uint8_t *prologue = (const uint8_t *)"John Galt";
	bk_noise_handshake *i = NULL, *r = NULL;
	bk_noise_cipher *c[4] = {NULL, NULL, NULL, NULL};
	REQUIRE_OK(bk_noise_handshake_new(&i, name, true, prologue, 9));
	REQUIRE_OK(bk_noise_handshake_new(&r, name, false, prologue, 9));
	CHECK_OK(bk_noise_handshake_set_psk(i, psk));
	CHECK_OK(bk_noise_handshake_set_local_static(i, is));
	CHECK_OK(bk_noise__handshake_set_ephemeral(i, ie));
	CHECK_OK(bk_noise_handshake_set_remote_static(i, irs));
	CHECK_OK(bk_noise_handshake_set_psk(r, psk));
	CHECK_OK(bk_noise_handshake_set_local_static(r, rs));
	CHECK_OK(bk_noise__handshake_set_ephemeral(r, re));
	CHECK_OK(bk_noise_handshake_set_remote_static(r, rrs));
	for (size_t k = 0; k < BK_ARRAY_LEN(msgs); k++) {
		uint8_t pl[64], ct[128], out[128], got[128];
		size_t pl_len = strlen(msgs[k][0]) / 2, ct_len = strlen(msgs[k][1]) / 2, n, m;
		REQUIRE_OK(bk_hex_decode(pl, pl_len, msgs[k][0]));
		REQUIRE_OK(bk_hex_decode(ct, ct_len, msgs[k][1]));
		bool from_i = k % 2 == 0;
		if (k < 2) {
			REQUIRE_OK(bk_noise_handshake_write_message(from_i ? i : r, pl, pl_len, out,
			                                            sizeof(out), &n));
			CHECK(n == ct_len && memcmp(out, ct, n) == 0);
			REQUIRE_OK(bk_noise_handshake_read_message(from_i ? r : i, ct, ct_len, got,
			                                           sizeof(got), &m));
		} else {
			if (k == 2) {
				REQUIRE_OK(bk_noise_handshake_split(i, &c[0], &c[1]));
				REQUIRE_OK(bk_noise_handshake_split(r, &c[2], &c[3]));
			}
			REQUIRE_OK(bk_noise_cipher_encrypt(from_i ? c[0] : c[2], NULL, 0, pl,
			                                   pl_len, out));
			CHECK(memcmp(out, ct, ct_len) == 0);
			REQUIRE_OK(bk_noise_cipher_decrypt(from_i ? c[3] : c[1], NULL, 0, ct,
			                                   ct_len, got));
			m = ct_len - 16;
		}
		CHECK(m == pl_len && memcmp(got, pl, m) == 0);
	}
	for (int k = 0; k < 4; k++)
		bk_noise_cipher_free(c[k]);
	bk_noise_handshake_free(i);
	bk_noise_handshake_free(r);
}

/* An all-zero or low-order ephemeral key from the peer is refused. */
static void test_low_order_point(void)
{
	/* 0 and a point of order 8 on Curve25519. */
	static const char *const points[] = {
	    "0000000000000000000000000000000000000000000000000000000000000000",
	    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
	};
	for (size_t k = 0; k < BK_ARRAY_LEN(points); k++) {
		peer r;
		uint8_t msg[32], out[256];
		size_t n, m;
		REQUIRE_OK(bk_hex_decode(msg, 32, points[k]));
		REQUIRE_OK(peer_new(&r, XX, false, PROLOGUE));
		REQUIRE_OK(bk_noise_handshake_read_message(r.hs, msg, 32, out, sizeof(out), &m));
		CHECK_EQ(bk_noise_handshake_write_message(r.hs, NULL, 0, out, sizeof(out), &n),
		         BK_EVERIFY);
		CHECK_STR(bk_error_last()->reason, "low-order-point");
		peer_free(&r);
	}
}

/* Runs a whole XX handshake and one frame each way; returns 0 or the first error. */
static int xx_session(const uint8_t si[32], const uint8_t sr[32])
{
	int rc;
	bk_noise_handshake *i = NULL, *r = NULL;
	bk_noise_cipher *is = NULL, *ir = NULL, *rs = NULL, *rr = NULL;
	uint8_t msg[256], got[256];
	size_t n, m;
	if ((rc = bk_noise_handshake_new(&i, XX, true, (const uint8_t *)"p", 1)) != 0)
		goto done;
	if ((rc = bk_noise_handshake_new(&r, XX, false, (const uint8_t *)"p", 1)) != 0)
		goto done;
	if ((rc = bk_noise_handshake_set_local_static(i, si)) != 0 ||
	    (rc = bk_noise_handshake_set_local_static(r, sr)) != 0)
		goto done;
	for (int k = 0; k < 3; k++) {
		bk_noise_handshake *a = k % 2 ? r : i, *b = k % 2 ? i : r;
		if ((rc = bk_noise_handshake_write_message(a, (const uint8_t *)"pl", 2, msg,
		                                           sizeof(msg), &n)) != 0 ||
		    (rc = bk_noise_handshake_read_message(b, msg, n, got, sizeof(got), &m)) != 0)
			goto done;
	}
	if ((rc = bk_noise_handshake_split(i, &is, &ir)) != 0 ||
	    (rc = bk_noise_handshake_split(r, &rs, &rr)) != 0)
		goto done;
	if ((rc = bk_noise_cipher_encrypt(is, NULL, 0, (const uint8_t *)"a", 1, msg)) != 0 ||
	    (rc = bk_noise_cipher_decrypt(rr, NULL, 0, msg, 17, got)) != 0 ||
	    (rc = bk_noise_cipher_encrypt(rs, NULL, 0, (const uint8_t *)"b", 1, msg)) != 0 ||
	    (rc = bk_noise_cipher_decrypt(ir, NULL, 0, msg, 17, got)) != 0)
		goto done;
done:
	bk_noise_cipher_free(is);
	bk_noise_cipher_free(ir);
	bk_noise_cipher_free(rs);
	bk_noise_cipher_free(rr);
	bk_noise_handshake_free(i);
	bk_noise_handshake_free(r);
	return rc;
}

static void test_alloc_failures(void)
{
	uint8_t si[32], sr[32], pub[32];
	REQUIRE_OK(bk_noise_keygen(pub, si));
	REQUIRE_OK(bk_noise_keygen(pub, sr));
	int failures = 0;
	for (long n = 1; n < 200; n++) {
		bk__alloc_fail_at(n);
		int rc = xx_session(si, sr);
		long used = bk__alloc_count();
		bk__alloc_fail_at(0);
		if (rc == 0) {
			CHECK(used < n); /* succeeded only once no allocation was failed */
			break;
		}
		CHECK_EQ(rc, BK_ENOMEM);
		failures++;
	}
	CHECK(failures >= 6); /* two handshakes and four ciphers allocate */
	CHECK_OK(xx_session(si, sr));
}

BK_RUN_TESTS(BK_TEST(test_xx_round_trip), BK_TEST(test_xx_large_payloads),
             BK_TEST(test_buffer_too_small), BK_TEST(test_tampered_handshake),
             BK_TEST(test_tampered_transport), BK_TEST(test_wrong_prologue),
             BK_TEST(test_nonce_exhaustion), BK_TEST(test_misuse), BK_TEST(test_protocol_names),
             BK_TEST(test_all_patterns), BK_TEST(test_psk_mismatch),
             BK_TEST(test_psk_vector_kkpsk0), BK_TEST(test_low_order_point),
             BK_TEST(test_alloc_failures))
