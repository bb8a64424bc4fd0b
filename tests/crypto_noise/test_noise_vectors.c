/* Noise test vectors (cacophony, as shipped with noise-c): every vector of
 * the 25519_ChaChaPoly_BLAKE2b suite is run with both roles in this process;
 * each handshake and transport message must match byte for byte as written by
 * its sender and decrypt to the payload at its receiver. The last line printed
 * is "N passed, N failed, N skipped", one count per vector. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <libbackup/libbackup.h>

#include "crypto/noise.h"
#include "libbackup/util/util.h"
#include "testlib.h"

#define SUITE   "_25519_ChaChaPoly_BLAKE2b"
#define VECTORS "tests/vectors/noise/noise-25519-chachapoly-blake2b.json"

static int fail(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(const char *name, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "  %s: ", name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (%s)\n", bk_error_last()->message ? bk_error_last()->message : "");
	return -1;
}

/* A hex field of the vector: 0 when absent (*len = 0, *out = NULL). */
static int field(json_t *v, const char *key, uint8_t **out, size_t *len)
{
	*out = NULL;
	*len = 0;
	json_t *j = json_object_get(v, key);
	if (j == NULL)
		return 0;
	const char *hex = json_string_value(j);
	if (hex == NULL || strlen(hex) % 2)
		return -1;
	*len = strlen(hex) / 2;
	*out = malloc(*len ? *len : 1);
	if (*out == NULL || bk_hex_decode(*out, *len, hex) != 0)
		return -1;
	return 0;
}

typedef struct side {
	uint8_t *prologue, *s, *e, *rs;
	size_t prologue_len, s_len, e_len, rs_len;
} side;

static void side_free(side *sd)
{
	free(sd->prologue);
	free(sd->s);
	free(sd->e);
	free(sd->rs);
}

static int side_load(json_t *v, const char *prefix, side *sd)
{
	char key[64];
	memset(sd, 0, sizeof(*sd));
	snprintf(key, sizeof(key), "%s_prologue", prefix);
	if (field(v, key, &sd->prologue, &sd->prologue_len))
		return -1;
	snprintf(key, sizeof(key), "%s_static", prefix);
	if (field(v, key, &sd->s, &sd->s_len) || (sd->s && sd->s_len != 32))
		return -1;
	snprintf(key, sizeof(key), "%s_ephemeral", prefix);
	if (field(v, key, &sd->e, &sd->e_len) || (sd->e && sd->e_len != 32))
		return -1;
	snprintf(key, sizeof(key), "%s_remote_static", prefix);
	if (field(v, key, &sd->rs, &sd->rs_len) || (sd->rs && sd->rs_len != 32))
		return -1;
	return 0;
}

static int side_start(bk_noise_handshake **hs, const char *name, bool initiator, side *sd)
{
	if (bk_noise_handshake_new(hs, name, initiator, sd->prologue, sd->prologue_len) != 0)
		return fail(name, "handshake_new");
	if (sd->s && bk_noise_handshake_set_local_static(*hs, sd->s) != 0)
		return fail(name, "set_local_static");
	if (sd->rs && bk_noise_handshake_set_remote_static(*hs, sd->rs) != 0)
		return fail(name, "set_remote_static");
	if (sd->e && bk_noise__handshake_set_ephemeral(*hs, sd->e) != 0)
		return fail(name, "set_ephemeral");
	return 0;
}

/* Runs one vector; 0 when every check held. */
static int run_vector(json_t *v, const char *name)
{
	int rc = -1;
	side is = {0}, rs = {0};
	bk_noise_handshake *init = NULL, *resp = NULL;
	bk_noise_cipher *i_send = NULL, *i_recv = NULL, *r_send = NULL, *r_recv = NULL;
	uint8_t *payload = NULL, *ct = NULL, *hh = NULL;
	size_t payload_len, ct_len, hh_len;
	uint8_t buf[BK_NOISE_MAX_MSG], plain[BK_NOISE_MAX_MSG];
	size_t n;

	if (side_load(v, "init", &is) || side_load(v, "resp", &rs)) {
		fail(name, "bad key fields");
		goto done;
	}
	if (field(v, "handshake_hash", &hh, &hh_len) || (hh && hh_len != BK_NOISE_HASH_LEN)) {
		fail(name, "bad handshake_hash");
		goto done;
	}
	if (side_start(&init, name, true, &is) || side_start(&resp, name, false, &rs))
		goto done;
	json_t *msgs = json_object_get(v, "messages");
	if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
		fail(name, "no messages");
		goto done;
	}
	/* One-way patterns (a single-letter name) only ever send from the initiator. */
	bool one_way = strlen(name) - strlen("Noise_") - strlen(SUITE) == 1;
	size_t handshake_msgs = 0;
	for (size_t i = 0; i < json_array_size(msgs); i++) {
		json_t *m = json_array_get(msgs, i);
		free(payload);
		free(ct);
		payload = ct = NULL;
		if (field(m, "payload", &payload, &payload_len) ||
		    field(m, "ciphertext", &ct, &ct_len) || ct == NULL) {
			fail(name, "message %zu: bad fields", i);
			goto done;
		}
		bool from_init = one_way || i % 2 == 0;
		bk_noise_handshake *snd = from_init ? init : resp, *rcv = from_init ? resp : init;
		if (!bk_noise_handshake_is_finished(snd)) {
			handshake_msgs++;
			if (!bk_noise_handshake_is_my_turn(snd) ||
			    bk_noise_handshake_is_my_turn(rcv)) {
				fail(name, "message %zu: turn mismatch", i);
				goto done;
			}
			if (bk_noise_handshake_write_message(snd, payload, payload_len, buf,
			                                     sizeof(buf), &n) != 0) {
				fail(name, "message %zu: write", i);
				goto done;
			}
			if (n != ct_len || memcmp(buf, ct, n) != 0) {
				fail(name, "message %zu: handshake ciphertext differs", i);
				goto done;
			}
			if (bk_noise_handshake_read_message(rcv, ct, ct_len, plain, sizeof(plain),
			                                    &n) != 0) {
				fail(name, "message %zu: read", i);
				goto done;
			}
			if (n != payload_len || (n && memcmp(plain, payload, n) != 0)) {
				fail(name, "message %zu: handshake payload differs", i);
				goto done;
			}
			if (bk_noise_handshake_is_finished(init) !=
			    bk_noise_handshake_is_finished(resp)) {
				fail(name, "message %zu: only one side finished", i);
				goto done;
			}
			continue;
		}
		if (i_send == NULL && i_recv == NULL) {
			uint8_t h1[BK_NOISE_HASH_LEN], h2[BK_NOISE_HASH_LEN];
			if (bk_noise_handshake_hash(init, h1) ||
			    bk_noise_handshake_hash(resp, h2) || memcmp(h1, h2, sizeof(h1)) != 0) {
				fail(name, "handshake hashes differ");
				goto done;
			}
			if (hh && memcmp(h1, hh, sizeof(h1)) != 0) {
				fail(name, "handshake hash differs from the vector");
				goto done;
			}
			if (bk_noise_handshake_split(init, &i_send, &i_recv) ||
			    bk_noise_handshake_split(resp, &r_send, &r_recv)) {
				fail(name, "split");
				goto done;
			}
			if (one_way && (i_recv != NULL || r_send != NULL)) {
				fail(name, "one-way split gave a reverse cipher");
				goto done;
			}
		}
		bk_noise_cipher *enc = from_init ? i_send : r_send;
		bk_noise_cipher *dec = from_init ? r_recv : i_recv;
		if (enc == NULL || dec == NULL ||
		    bk_noise_cipher_encrypt(enc, NULL, 0, payload, payload_len, buf) != 0) {
			fail(name, "message %zu: transport encrypt", i);
			goto done;
		}
		if (payload_len + BK_NOISE_TAG_LEN != ct_len || memcmp(buf, ct, ct_len) != 0) {
			fail(name, "message %zu: transport ciphertext differs", i);
			goto done;
		}
		if (bk_noise_cipher_decrypt(dec, NULL, 0, ct, ct_len, plain) != 0 ||
		    (payload_len && memcmp(plain, payload, payload_len) != 0)) {
			fail(name, "message %zu: transport decrypt", i);
			goto done;
		}
	}
	if (!bk_noise_handshake_is_finished(init) || handshake_msgs == 0) {
		fail(name, "vector ends before the handshake does");
		goto done;
	}
	rc = 0;
done:
	free(payload);
	free(ct);
	free(hh);
	side_free(&is);
	side_free(&rs);
	bk_noise_cipher_free(i_send);
	bk_noise_cipher_free(i_recv);
	bk_noise_cipher_free(r_send);
	bk_noise_cipher_free(r_recv);
	bk_noise_handshake_free(init);
	bk_noise_handshake_free(resp);
	return rc;
}

static const char *const ALL_PATTERNS[] = {"NN", "NK", "NX", "KN", "KK", "KX", "XN", "XK",
                                           "XX", "IN", "IK", "IX", "N",  "K",  "X"};

int main(void)
{
	int passed = 0, failed = 0, other_suite = 0;
	bool covered[BK_ARRAY_LEN(ALL_PATTERNS)] = {false};
	char path[4096];
	json_error_t jerr;
	if (bk_init() != 0)
		return 1;
	snprintf(path, sizeof(path), "%s/%s", bk_test_source_dir(), VECTORS);
	json_t *root = json_load_file(path, 0, &jerr);
	json_t *vectors = json_object_get(root, "vectors");
	if (!json_is_array(vectors)) {
		fprintf(stderr, "%s: %s\n", path, root ? "no vectors array" : jerr.text);
		printf("0 passed, 1 failed, 0 skipped\n");
		json_decref(root);
		return 1;
	}
	for (size_t i = 0; i < json_array_size(vectors); i++) {
		json_t *v = json_array_get(vectors, i);
		const char *name = json_string_value(json_object_get(v, "name"));
		if (name == NULL) {
			name = json_string_value(json_object_get(v, "protocol_name"));
		}
		if (name == NULL) {
			printf("FAIL vector %zu: no name\n", i);
			failed++;
			continue;
		}
		size_t nl = strlen(name);
		if (nl < strlen(SUITE) || strcmp(name + nl - strlen(SUITE), SUITE) != 0) {
			other_suite++; /* not ours: not counted */
			continue;
		}
		bk_error_clear();
		if (run_vector(v, name) == 0) {
			printf("ok   %s\n", name);
			passed++;
			const char *pat = json_string_value(json_object_get(v, "pattern"));
			for (size_t p = 0; pat && p < BK_ARRAY_LEN(ALL_PATTERNS); p++)
				if (strcmp(pat, ALL_PATTERNS[p]) == 0)
					covered[p] = true;
		} else {
			printf("FAIL %s\n", name);
			failed++;
		}
	}
	json_decref(root);
	int missing = 0;
	for (size_t p = 0; p < BK_ARRAY_LEN(ALL_PATTERNS); p++) {
		if (!covered[p]) {
			fprintf(stderr, "no passing vector for pattern %s\n", ALL_PATTERNS[p]);
			missing++;
		}
	}
	if (other_suite)
		printf("(%d vectors for other suites not counted)\n", other_suite);
	printf("%d passed, %d failed, 0 skipped\n", passed, failed);
	bk_shutdown();
	return failed || missing || passed == 0 ? 1 : 0;
}
