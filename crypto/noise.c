/* The Noise Protocol Framework (revision 34), suite 25519_ChaChaPoly_BLAKE2b. */
#include <string.h>

#include <sodium.h>

#include "crypto/kdf.h"
#include "crypto/noise.h"
#include "libbackup/util/util.h"

#define DHLEN      32
#define HASHLEN    64
#define MAX_MSGS   4
#define MAX_TOKENS 8
#define NONCE_MAX  UINT64_MAX /* reserved: never used for a message */

static const char SUITE[] = "_25519_ChaChaPoly_BLAKE2b";

/* --- Patterns --------------------------------------------------------------- */

enum { TK_END = 0, TK_E, TK_S, TK_EE, TK_ES, TK_SE, TK_SS, TK_PSK };

typedef struct pattern_def {
	const char *name;
	bool pre_init_s; /* "-> s" before the handshake */
	bool pre_resp_s; /* "<- s" before the handshake */
	uint8_t nmsgs;
	uint8_t msgs[3][6];
} pattern_def;

/* Section 7.4 (interactive) and 7.2 (one-way) of the specification. */
static const pattern_def PATTERNS[] = {
    {"N", false, true, 1, {{TK_E, TK_ES}}},
    {"K", true, true, 1, {{TK_E, TK_ES, TK_SS}}},
    {"X", false, true, 1, {{TK_E, TK_ES, TK_S, TK_SS}}},
    {"NN", false, false, 2, {{TK_E}, {TK_E, TK_EE}}},
    {"NK", false, true, 2, {{TK_E, TK_ES}, {TK_E, TK_EE}}},
    {"NX", false, false, 2, {{TK_E}, {TK_E, TK_EE, TK_S, TK_ES}}},
    {"KN", true, false, 2, {{TK_E}, {TK_E, TK_EE, TK_SE}}},
    {"KK", true, true, 2, {{TK_E, TK_ES, TK_SS}, {TK_E, TK_EE, TK_SE}}},
    {"KX", true, false, 2, {{TK_E}, {TK_E, TK_EE, TK_SE, TK_S, TK_ES}}},
    {"XN", false, false, 3, {{TK_E}, {TK_E, TK_EE}, {TK_S, TK_SE}}},
    {"XK", false, true, 3, {{TK_E, TK_ES}, {TK_E, TK_EE}, {TK_S, TK_SE}}},
    {"XX", false, false, 3, {{TK_E}, {TK_E, TK_EE, TK_S, TK_ES}, {TK_S, TK_SE}}},
    {"IN", false, false, 2, {{TK_E, TK_S}, {TK_E, TK_EE, TK_SE}}},
    {"IK", false, true, 2, {{TK_E, TK_ES, TK_S, TK_SS}, {TK_E, TK_EE, TK_SE}}},
    {"IX", false, false, 2, {{TK_E, TK_S}, {TK_E, TK_EE, TK_SE, TK_S, TK_ES}}},
};

/* --- State ------------------------------------------------------------------ */

/* Everything secret, in one sodium_malloc block. */
typedef struct hs_keys {
	uint8_t s[DHLEN];    /* local static secret */
	uint8_t e[DHLEN];    /* local ephemeral secret */
	uint8_t ck[HASHLEN]; /* chaining key */
	uint8_t k[DHLEN];    /* handshake cipher key */
	uint8_t psk[DHLEN];
} hs_keys;

enum { ST_NEW, ST_RUNNING, ST_DONE, ST_SPLIT, ST_FAILED };

struct bk_noise_handshake {
	bk_secret *mem;
	hs_keys *key; /* inside mem */
	uint8_t h[HASHLEN];
	uint64_t n;
	bool has_k;
	uint8_t s_pub[DHLEN], e_pub[DHLEN], rs[DHLEN], re[DHLEN];
	bool has_s, has_e, fixed_e, has_rs, has_re, has_psk;
	bool initiator, one_way, psk_mode, pre_init_s, pre_resp_s;
	uint8_t msgs[MAX_MSGS][MAX_TOKENS];
	unsigned nmsgs;
	unsigned msg_index;
	int state;
};

struct bk_noise_cipher {
	bk_secret *mem;
	uint8_t *k; /* inside mem */
	uint64_t n;
};

/* --- Helpers ------------------------------------------------------------------ */

static void make_nonce(uint8_t nonce[12], uint64_t n)
{
	memset(nonce, 0, 4);
	bk_put_u64le(nonce + 4, n);
}

int bk_noise_public_key(uint8_t pub[BK_NOISE_KEY_LEN], const uint8_t secret[BK_NOISE_KEY_LEN])
{
	if (pub == NULL || secret == NULL)
		return bk__error_set(BK_EINVALID, NULL, "noise: no key given");
	if (crypto_scalarmult_base(pub, secret) != 0)
		return bk__error_set(BK_EINVALID, "bad-key", "noise: unusable x25519 secret key");
	return 0;
}

int bk_noise_keygen(uint8_t pub[BK_NOISE_KEY_LEN], uint8_t secret[BK_NOISE_KEY_LEN])
{
	if (pub == NULL || secret == NULL)
		return bk__error_set(BK_EINVALID, NULL, "noise: no key output");
	randombytes_buf(secret, BK_NOISE_KEY_LEN);
	return bk_noise_public_key(pub, secret);
}

static int dh(uint8_t out[DHLEN], const uint8_t secret[DHLEN], const uint8_t pub[DHLEN])
{
	if (crypto_scalarmult(out, secret, pub) != 0)
		return bk__error_set(BK_EVERIFY, "low-order-point",
		                     "noise: peer key gives an all-zero diffie-hellman result");
	return 0;
}

/* --- SymmetricState ------------------------------------------------------------ */

static void mix_hash(bk_noise_handshake *hs, const uint8_t *data, size_t len)
{
	crypto_generichash_blake2b_state st;
	crypto_generichash_blake2b_init(&st, NULL, 0, HASHLEN);
	crypto_generichash_blake2b_update(&st, hs->h, HASHLEN);
	crypto_generichash_blake2b_update(&st, data, len);
	crypto_generichash_blake2b_final(&st, hs->h, HASHLEN);
}

static void mix_key(bk_noise_handshake *hs, const uint8_t *ikm, size_t len)
{
	uint8_t ck[HASHLEN], tk[HASHLEN];
	bk_noise_hkdf_blake2b(ck, tk, NULL, hs->key->ck, ikm, len);
	memcpy(hs->key->ck, ck, HASHLEN);
	memcpy(hs->key->k, tk, DHLEN);
	hs->n = 0;
	hs->has_k = true;
	sodium_memzero(ck, sizeof(ck));
	sodium_memzero(tk, sizeof(tk));
}

static void mix_key_and_hash(bk_noise_handshake *hs, const uint8_t *ikm, size_t len)
{
	uint8_t ck[HASHLEN], th[HASHLEN], tk[HASHLEN];
	bk_noise_hkdf_blake2b(ck, th, tk, hs->key->ck, ikm, len);
	memcpy(hs->key->ck, ck, HASHLEN);
	mix_hash(hs, th, HASHLEN);
	memcpy(hs->key->k, tk, DHLEN);
	hs->n = 0;
	hs->has_k = true;
	sodium_memzero(ck, sizeof(ck));
	sodium_memzero(th, sizeof(th));
	sodium_memzero(tk, sizeof(tk));
}

/* Mixes the DH of `secret` and `pub` into the chaining key. */
static int mix_dh(bk_noise_handshake *hs, const uint8_t *secret, const uint8_t *pub)
{
	uint8_t shared[DHLEN];
	int rc = dh(shared, secret, pub);
	if (rc == 0)
		mix_key(hs, shared, sizeof(shared));
	sodium_memzero(shared, sizeof(shared));
	return rc;
}

/* Writes len (+16 when keyed) bytes to out. */
static int encrypt_and_hash(bk_noise_handshake *hs, const uint8_t *pt, size_t len, uint8_t *out,
                            size_t *out_len)
{
	if (!hs->has_k) {
		if (len)
			memcpy(out, pt, len);
		*out_len = len;
	} else {
		uint8_t nonce[12];
		unsigned long long clen = 0;
		if (hs->n == NONCE_MAX)
			return bk__error_set(BK_ERROR, "nonce-exhausted",
			                     "noise: handshake cipher nonce exhausted");
		make_nonce(nonce, hs->n);
		crypto_aead_chacha20poly1305_ietf_encrypt(out, &clen, pt, len, hs->h, HASHLEN, NULL,
		                                          nonce, hs->key->k);
		hs->n++;
		*out_len = (size_t)clen;
	}
	mix_hash(hs, out, *out_len);
	return 0;
}

/* Reads len bytes of ct into out (len - 16 when keyed). */
static int decrypt_and_hash(bk_noise_handshake *hs, const uint8_t *ct, size_t len, uint8_t *out)
{
	if (!hs->has_k) {
		if (len)
			memmove(out, ct, len);
		mix_hash(hs, out, len);
		return 0;
	}
	uint8_t nonce[12], new_h[HASHLEN];
	crypto_generichash_blake2b_state st;
	if (hs->n == NONCE_MAX)
		return bk__error_set(BK_ERROR, "nonce-exhausted",
		                     "noise: handshake cipher nonce exhausted");
	/* The new h covers the ciphertext; compute it before `out` may overwrite it. */
	crypto_generichash_blake2b_init(&st, NULL, 0, HASHLEN);
	crypto_generichash_blake2b_update(&st, hs->h, HASHLEN);
	crypto_generichash_blake2b_update(&st, ct, len);
	crypto_generichash_blake2b_final(&st, new_h, HASHLEN);
	make_nonce(nonce, hs->n);
	if (len < BK_NOISE_TAG_LEN ||
	    crypto_aead_chacha20poly1305_ietf_decrypt(out, NULL, NULL, ct, len, hs->h, HASHLEN,
	                                              nonce, hs->key->k) != 0)
		return bk__error_set(BK_EVERIFY, "handshake-auth",
		                     "noise: handshake message failed authentication");
	hs->n++;
	memcpy(hs->h, new_h, HASHLEN);
	return 0;
}

/* --- HandshakeState ------------------------------------------------------------ */

/* Parses "Noise_<pattern>_25519_ChaChaPoly_BLAKE2b" into hs->msgs. */
static int parse_protocol(bk_noise_handshake *hs, const char *protocol)
{
	size_t len = strlen(protocol);
	if (len < 6 || memcmp(protocol, "Noise_", 6) != 0)
		return bk__error_set(BK_EINVALID, "noise-protocol-name",
		                     "noise: '%.80s' is not a noise protocol name", protocol);
	const char *pat = protocol + 6;
	const char *us = strchr(pat, '_');
	if (us == NULL || us == pat)
		return bk__error_set(BK_EINVALID, "noise-protocol-name",
		                     "noise: '%.80s' is not a noise protocol name", protocol);
	if (strcmp(us, SUITE) != 0)
		return bk__error_set(
		    BK_EINCOMPAT, "noise-unsupported",
		    "noise: unsupported suite in '%.80s' (only 25519_ChaChaPoly_BLAKE2b)",
		    protocol);
	size_t base_len = 0;
	while (pat + base_len < us && pat[base_len] >= 'A' && pat[base_len] <= 'Z')
		base_len++;
	const pattern_def *def = NULL;
	for (size_t i = 0; i < BK_ARRAY_LEN(PATTERNS); i++)
		if (strlen(PATTERNS[i].name) == base_len &&
		    memcmp(PATTERNS[i].name, pat, base_len) == 0)
			def = &PATTERNS[i];
	if (def == NULL)
		return bk__error_set(BK_EINCOMPAT, "noise-unsupported",
		                     "noise: unsupported handshake pattern in '%.80s'", protocol);
	memset(hs->msgs, TK_END, sizeof(hs->msgs));
	for (unsigned m = 0; m < def->nmsgs; m++)
		memcpy(hs->msgs[m], def->msgs[m], sizeof(def->msgs[m]));
	hs->nmsgs = def->nmsgs;
	hs->one_way = def->nmsgs == 1 && strlen(def->name) == 1;
	hs->pre_init_s = def->pre_init_s;
	hs->pre_resp_s = def->pre_resp_s;

	/* Modifiers: "psk<N>" joined by '+'. */
	const char *p = pat + base_len;
	bool seen[MAX_MSGS + 1] = {false};
	while (p < us) {
		unsigned pos;
		if (us - p < 4 || memcmp(p, "psk", 3) != 0 || p[3] < '0' || p[3] > '9')
			goto unsupported;
		pos = (unsigned)(p[3] - '0');
		p += 4;
		if (p < us && *p != '+')
			goto unsupported;
		if (p < us)
			p++;
		if (p == us && p[-1] == '+')
			goto unsupported;
		if (pos > hs->nmsgs || seen[pos])
			goto unsupported;
		seen[pos] = true;
		unsigned m = pos == 0 ? 0 : pos - 1;
		uint8_t *toks = hs->msgs[m];
		unsigned count = 0;
		while (count < MAX_TOKENS && toks[count] != TK_END)
			count++;
		if (count + 1 >= MAX_TOKENS)
			goto unsupported;
		if (pos == 0) {
			memmove(toks + 1, toks, count);
			toks[0] = TK_PSK;
		} else {
			toks[count] = TK_PSK;
		}
		hs->psk_mode = true;
	}
	return 0;
unsupported:
	return bk__error_set(BK_EINCOMPAT, "noise-unsupported",
	                     "noise: unsupported pattern modifier in '%.80s'", protocol);
}

int bk_noise_handshake_new(bk_noise_handshake **out, const char *protocol, bool initiator,
                           const uint8_t *prologue, size_t prologue_len)
{
	int rc = 0;
	bk_noise_handshake *hs = NULL;
	if (out == NULL || protocol == NULL || (prologue == NULL && prologue_len > 0)) {
		rc = bk__error_set(BK_EINVALID, NULL, "noise: missing handshake argument");
		goto done;
	}
	*out = NULL;
	hs = bk__calloc(1, sizeof(*hs));
	if (hs == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	hs->initiator = initiator;
	if ((rc = parse_protocol(hs, protocol)) != 0)
		goto done;
	if ((rc = bk_secret_new(&hs->mem, sizeof(hs_keys))) != 0)
		goto done;
	hs->key = (hs_keys *)bk_secret_data(hs->mem);

	/* InitializeSymmetric(protocol_name), then MixHash(prologue). */
	size_t nlen = strlen(protocol);
	if (nlen <= HASHLEN) {
		memset(hs->h, 0, HASHLEN);
		memcpy(hs->h, protocol, nlen);
	} else {
		crypto_generichash_blake2b(hs->h, HASHLEN, (const uint8_t *)protocol, nlen, NULL,
		                           0);
	}
	memcpy(hs->key->ck, hs->h, HASHLEN);
	mix_hash(hs, prologue, prologue_len);
	hs->state = ST_NEW;
	*out = hs;
	hs = NULL;
done:
	bk_noise_handshake_free(hs);
	return rc;
}

void bk_noise_handshake_free(bk_noise_handshake *hs)
{
	if (hs == NULL)
		return;
	bk_secret_free(hs->mem); /* wipes every key */
	sodium_memzero(hs, sizeof(*hs));
	bk__free(hs);
}

static int check_new(bk_noise_handshake *hs, const void *key)
{
	if (hs == NULL || key == NULL)
		return bk__error_set(BK_EINVALID, NULL, "noise: missing handshake argument");
	if (hs->state != ST_NEW)
		return bk__error_set(BK_EINVALID, "out-of-order",
		                     "noise: keys must be set before the first handshake message");
	return 0;
}

int bk_noise_handshake_set_local_static(bk_noise_handshake *hs,
                                        const uint8_t secret[BK_NOISE_KEY_LEN])
{
	int rc = check_new(hs, secret);
	if (rc != 0)
		return rc;
	if ((rc = bk_noise_public_key(hs->s_pub, secret)) != 0)
		return rc;
	memcpy(hs->key->s, secret, DHLEN);
	hs->has_s = true;
	return 0;
}

int bk_noise_handshake_set_remote_static(bk_noise_handshake *hs,
                                         const uint8_t pub[BK_NOISE_KEY_LEN])
{
	int rc = check_new(hs, pub);
	if (rc != 0)
		return rc;
	if (!(hs->initiator ? hs->pre_resp_s : hs->pre_init_s))
		return bk__error_set(BK_EINVALID, "static-not-used",
		                     "noise: this pattern does not take the peer's static key in "
		                     "advance");
	memcpy(hs->rs, pub, DHLEN);
	hs->has_rs = true;
	return 0;
}

int bk_noise_handshake_set_psk(bk_noise_handshake *hs, const uint8_t psk[BK_NOISE_KEY_LEN])
{
	int rc = check_new(hs, psk);
	if (rc != 0)
		return rc;
	if (!hs->psk_mode)
		return bk__error_set(BK_EINVALID, "psk-not-used",
		                     "noise: this pattern takes no pre-shared key");
	memcpy(hs->key->psk, psk, DHLEN);
	hs->has_psk = true;
	return 0;
}

int bk_noise__handshake_set_ephemeral(bk_noise_handshake *hs,
                                      const uint8_t secret[BK_NOISE_KEY_LEN])
{
	if (hs == NULL || secret == NULL)
		return bk__error_set(BK_EINVALID, NULL, "noise: missing handshake argument");
	if (hs->has_e || hs->state > ST_RUNNING)
		return bk__error_set(BK_EINVALID, "out-of-order",
		                     "noise: ephemeral key already in use");
	int rc = bk_noise_public_key(hs->e_pub, secret);
	if (rc != 0)
		return rc;
	memcpy(hs->key->e, secret, DHLEN);
	hs->fixed_e = true;
	return 0;
}

/* Whether the token list of every message uses our static key, the peer's. */
static void key_needs(const bk_noise_handshake *hs, bool *local_s, bool *remote_s)
{
	*local_s = hs->initiator ? hs->pre_init_s : hs->pre_resp_s;
	*remote_s = false;
	for (unsigned m = 0; m < hs->nmsgs; m++) {
		bool mine = (m % 2 == 0) == hs->initiator;
		for (const uint8_t *t = hs->msgs[m]; t < hs->msgs[m] + MAX_TOKENS && *t; t++) {
			switch (*t) {
			case TK_S:
				if (mine)
					*local_s = true;
				break;
			case TK_ES:
				*(hs->initiator ? remote_s : local_s) = true;
				break;
			case TK_SE:
				*(hs->initiator ? local_s : remote_s) = true;
				break;
			case TK_SS:
				*local_s = *remote_s = true;
				break;
			default:
				break;
			}
		}
	}
}

/* Checks the keys and mixes the pre-messages in, before the first message. */
static int start(bk_noise_handshake *hs)
{
	bool need_s, need_rs;
	key_needs(hs, &need_s, &need_rs);
	if (need_s && !hs->has_s)
		return bk__error_set(BK_EINVALID, "missing-key",
		                     "noise: this pattern needs our static key");
	bool rs_preset = hs->initiator ? hs->pre_resp_s : hs->pre_init_s;
	if (rs_preset && !hs->has_rs)
		return bk__error_set(BK_EINVALID, "missing-key",
		                     "noise: this pattern needs the peer's static key in advance");
	if (hs->psk_mode && !hs->has_psk)
		return bk__error_set(BK_EINVALID, "missing-key",
		                     "noise: this pattern needs a pre-shared key");
	if (hs->pre_init_s)
		mix_hash(hs, hs->initiator ? hs->s_pub : hs->rs, DHLEN);
	if (hs->pre_resp_s)
		mix_hash(hs, hs->initiator ? hs->rs : hs->s_pub, DHLEN);
	hs->state = ST_RUNNING;
	return 0;
}

bool bk_noise_handshake_is_my_turn(const bk_noise_handshake *hs)
{
	return hs && hs->state <= ST_RUNNING && hs->msg_index < hs->nmsgs &&
	       (hs->msg_index % 2 == 0) == hs->initiator;
}

bool bk_noise_handshake_is_finished(const bk_noise_handshake *hs)
{
	return hs && (hs->state == ST_DONE || hs->state == ST_SPLIT);
}

bool bk_noise_handshake_is_initiator(const bk_noise_handshake *hs)
{
	return hs && hs->initiator;
}

const uint8_t *bk_noise_handshake_remote_static(const bk_noise_handshake *hs)
{
	return hs && hs->has_rs ? hs->rs : NULL;
}

const uint8_t *bk_noise_handshake_local_static(const bk_noise_handshake *hs)
{
	return hs && hs->has_s ? hs->s_pub : NULL;
}

/* Bytes the token part of the current message takes, and whether the payload
 * is encrypted (a key exists by the end of the tokens). */
static size_t tokens_len(const bk_noise_handshake *hs, bool *keyed)
{
	bool k = hs->has_k;
	size_t n = 0;
	const uint8_t *toks = hs->msgs[hs->msg_index];
	for (unsigned i = 0; i < MAX_TOKENS && toks[i]; i++) {
		switch (toks[i]) {
		case TK_E:
			n += DHLEN;
			if (hs->psk_mode)
				k = true;
			break;
		case TK_S:
			n += DHLEN + (k ? BK_NOISE_TAG_LEN : 0);
			break;
		default: /* DH tokens and psk all key the cipher */
			k = true;
			break;
		}
	}
	*keyed = k;
	return n;
}

size_t bk_noise_handshake_message_len(const bk_noise_handshake *hs, size_t payload_len)
{
	bool keyed;
	if (!bk_noise_handshake_is_my_turn(hs))
		return 0;
	return tokens_len(hs, &keyed) + payload_len + (keyed ? BK_NOISE_TAG_LEN : 0);
}

static int check_turn(bk_noise_handshake *hs, bool writing)
{
	if (hs->state == ST_FAILED)
		return bk__error_set(BK_EINVALID, "handshake-failed",
		                     "noise: the handshake already failed");
	if (hs->state >= ST_DONE)
		return bk__error_set(BK_EINVALID, "out-of-order",
		                     "noise: the handshake is already finished");
	if (bk_noise_handshake_is_my_turn(hs) != writing)
		return bk__error_set(BK_EINVALID, "out-of-order",
		                     writing ? "noise: cannot write, the peer's message is due"
		                             : "noise: cannot read, our message is due");
	if (hs->state == ST_NEW)
		return start(hs);
	return 0;
}

/* One DH token, from our side. */
static int process_dh(bk_noise_handshake *hs, uint8_t tok)
{
	hs_keys *k = hs->key;
	switch (tok) {
	case TK_EE:
		return mix_dh(hs, k->e, hs->re);
	case TK_ES:
		return hs->initiator ? mix_dh(hs, k->e, hs->rs) : mix_dh(hs, k->s, hs->re);
	case TK_SE:
		return hs->initiator ? mix_dh(hs, k->s, hs->re) : mix_dh(hs, k->e, hs->rs);
	case TK_SS:
		return mix_dh(hs, k->s, hs->rs);
	case TK_PSK:
		mix_key_and_hash(hs, k->psk, DHLEN);
		return 0;
	default:
		return bk__error_set(BK_ERROR, NULL, "noise: bad pattern token");
	}
}

static void advance(bk_noise_handshake *hs)
{
	hs->msg_index++;
	if (hs->msg_index == hs->nmsgs)
		hs->state = ST_DONE;
}

int bk_noise_handshake_write_message(bk_noise_handshake *hs, const uint8_t *payload,
                                     size_t payload_len, uint8_t *out, size_t cap, size_t *out_len)
{
	int rc = 0;
	bool keyed;
	size_t pos = 0, n, need = 0;
	bool fatal = false; /* set once the state starts to change */
	if (hs == NULL || out == NULL || out_len == NULL || (payload == NULL && payload_len)) {
		rc = bk__error_set(BK_EINVALID, NULL, "noise: missing handshake argument");
		goto done;
	}
	*out_len = 0;
	if ((rc = check_turn(hs, true)) != 0)
		goto done;
	need = tokens_len(hs, &keyed);
	if (payload_len > BK_NOISE_MAX_MSG ||
	    need + payload_len + (keyed ? BK_NOISE_TAG_LEN : 0) > BK_NOISE_MAX_MSG) {
		rc = bk__error_set(BK_EINVALID, "message-too-large",
		                   "noise: handshake message over %d bytes", BK_NOISE_MAX_MSG);
		goto done;
	}
	need += payload_len + (keyed ? BK_NOISE_TAG_LEN : 0);
	if (cap < need) {
		rc = bk__error_set(BK_ENOSPACE, "buffer-too-small",
		                   "noise: handshake message needs %zu bytes, buffer holds %zu",
		                   need, cap);
		goto done;
	}
	fatal = true;
	const uint8_t *toks = hs->msgs[hs->msg_index];
	for (unsigned i = 0; i < MAX_TOKENS && toks[i]; i++) {
		switch (toks[i]) {
		case TK_E:
			if (!hs->fixed_e) {
				randombytes_buf(hs->key->e, DHLEN);
				if ((rc = bk_noise_public_key(hs->e_pub, hs->key->e)) != 0)
					goto done;
			}
			hs->has_e = true;
			memcpy(out + pos, hs->e_pub, DHLEN);
			pos += DHLEN;
			mix_hash(hs, hs->e_pub, DHLEN);
			if (hs->psk_mode)
				mix_key(hs, hs->e_pub, DHLEN);
			break;
		case TK_S:
			if ((rc = encrypt_and_hash(hs, hs->s_pub, DHLEN, out + pos, &n)) != 0)
				goto done;
			pos += n;
			break;
		default:
			if ((rc = process_dh(hs, toks[i])) != 0)
				goto done;
			break;
		}
	}
	if ((rc = encrypt_and_hash(hs, payload, payload_len, out + pos, &n)) != 0)
		goto done;
	pos += n;
	*out_len = pos;
	advance(hs);
done:
	if (rc != 0 && fatal) {
		/* Noise: an error ends the handshake. */
		hs->state = ST_FAILED;
		sodium_memzero(out, cap < need ? cap : need);
	}
	return rc;
}

int bk_noise_handshake_read_message(bk_noise_handshake *hs, const uint8_t *msg, size_t len,
                                    uint8_t *payload_out, size_t cap, size_t *payload_len)
{
	int rc = 0;
	bool keyed;
	bk_cur cur;
	const uint8_t *p;
	size_t n, need, plen;
	uint8_t none[1];
	bool fatal = false; /* a bad message ends the handshake */
	if (hs == NULL || payload_len == NULL || (msg == NULL && len) ||
	    (payload_out == NULL && cap)) {
		rc = bk__error_set(BK_EINVALID, NULL, "noise: missing handshake argument");
		goto done;
	}
	*payload_len = 0;
	if ((rc = check_turn(hs, false)) != 0)
		goto done;
	fatal = true;
	if (len > BK_NOISE_MAX_MSG) {
		rc = bk__error_set(BK_EFORMAT, "message-too-large",
		                   "noise: handshake message of %zu bytes, over %d", len,
		                   BK_NOISE_MAX_MSG);
		goto done;
	}
	need = tokens_len(hs, &keyed) + (keyed ? BK_NOISE_TAG_LEN : 0);
	if (len < need) {
		rc = bk__error_set(BK_EFORMAT, "handshake-truncated",
		                   "noise: handshake message of %zu bytes, at least %zu expected",
		                   len, need);
		goto done;
	}
	plen = len - need;
	if (cap < plen) {
		fatal = false; /* nothing changed yet: the caller may retry */
		rc = bk__error_set(BK_ENOSPACE, "buffer-too-small",
		                   "noise: handshake payload of %zu bytes, buffer holds %zu", plen,
		                   cap);
		goto done;
	}
	bk_cur_init(&cur, msg, len);
	const uint8_t *toks = hs->msgs[hs->msg_index];
	for (unsigned i = 0; i < MAX_TOKENS && toks[i]; i++) {
		switch (toks[i]) {
		case TK_E:
			if ((rc = bk_cur_copy(&cur, hs->re, DHLEN)) != 0)
				goto done;
			hs->has_re = true;
			mix_hash(hs, hs->re, DHLEN);
			if (hs->psk_mode)
				mix_key(hs, hs->re, DHLEN);
			break;
		case TK_S: {
			uint8_t tmp[DHLEN + BK_NOISE_TAG_LEN];
			n = DHLEN + (hs->has_k ? BK_NOISE_TAG_LEN : 0);
			if ((rc = bk_cur_bytes(&cur, &p, n)) != 0)
				goto done;
			if ((rc = decrypt_and_hash(hs, p, n, tmp)) != 0)
				goto done;
			memcpy(hs->rs, tmp, DHLEN);
			hs->has_rs = true;
			break;
		}
		default:
			if ((rc = process_dh(hs, toks[i])) != 0)
				goto done;
			break;
		}
	}
	bk_cur_rest(&cur, &p, &n);
	if ((rc = decrypt_and_hash(hs, p, n, payload_out ? payload_out : none)) != 0)
		goto done;
	*payload_len = plen;
	advance(hs);
done:
	if (rc != 0 && fatal)
		hs->state = ST_FAILED;
	return rc;
}

int bk_noise_handshake_hash(const bk_noise_handshake *hs, uint8_t out[BK_NOISE_HASH_LEN])
{
	if (hs == NULL || out == NULL)
		return bk__error_set(BK_EINVALID, NULL, "noise: missing handshake argument");
	if (!bk_noise_handshake_is_finished(hs))
		return bk__error_set(BK_EINVALID, "out-of-order",
		                     "noise: the handshake is not finished");
	memcpy(out, hs->h, HASHLEN);
	return 0;
}

/* --- CipherState ---------------------------------------------------------------- */

static int cipher_new(bk_noise_cipher **out, const uint8_t key[DHLEN])
{
	int rc = 0;
	bk_noise_cipher *cs = bk__calloc(1, sizeof(*cs));
	if (cs == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	if ((rc = bk_secret_from(&cs->mem, key, DHLEN)) != 0)
		goto done;
	cs->k = bk_secret_data(cs->mem);
	*out = cs;
	cs = NULL;
done:
	bk_noise_cipher_free(cs);
	return rc;
}

void bk_noise_cipher_free(bk_noise_cipher *cs)
{
	if (cs == NULL)
		return;
	bk_secret_free(cs->mem);
	sodium_memzero(cs, sizeof(*cs));
	bk__free(cs);
}

int bk_noise_handshake_split(bk_noise_handshake *hs, bk_noise_cipher **send, bk_noise_cipher **recv)
{
	int rc = 0;
	uint8_t k1[HASHLEN], k2[HASHLEN];
	bk_noise_cipher *c1 = NULL, *c2 = NULL;
	if (hs == NULL || send == NULL || recv == NULL) {
		rc = bk__error_set(BK_EINVALID, NULL, "noise: missing split argument");
		goto done;
	}
	*send = *recv = NULL;
	if (hs->state != ST_DONE) {
		rc = bk__error_set(BK_EINVALID, "out-of-order",
		                   hs->state == ST_SPLIT ? "noise: the handshake was already split"
		                                         : "noise: the handshake is not finished");
		goto done;
	}
	bk_noise_hkdf_blake2b(k1, k2, NULL, hs->key->ck, NULL, 0);
	if ((rc = cipher_new(&c1, k1)) != 0)
		goto done;
	if (!hs->one_way && (rc = cipher_new(&c2, k2)) != 0)
		goto done;
	if (hs->initiator) {
		*send = c1;
		*recv = c2;
	} else {
		*send = c2;
		*recv = c1;
	}
	c1 = c2 = NULL;
	/* Only h stays: the chaining key and ephemeral secrets are done with. */
	sodium_memzero(hs->key->ck, HASHLEN);
	sodium_memzero(hs->key->k, DHLEN);
	sodium_memzero(hs->key->e, DHLEN);
	sodium_memzero(hs->key->psk, DHLEN);
	hs->has_k = false;
	hs->state = ST_SPLIT;
done:
	bk_noise_cipher_free(c1);
	bk_noise_cipher_free(c2);
	sodium_memzero(k1, sizeof(k1));
	sodium_memzero(k2, sizeof(k2));
	return rc;
}

int bk_noise_cipher_encrypt(bk_noise_cipher *cs, const uint8_t *ad, size_t adlen,
                            const uint8_t *plaintext, size_t len, uint8_t *out)
{
	uint8_t nonce[12];
	if (cs == NULL || out == NULL || (plaintext == NULL && len) || (ad == NULL && adlen))
		return bk__error_set(BK_EINVALID, NULL, "noise: missing cipher argument");
	if (len > BK_NOISE_MAX_PAYLOAD)
		return bk__error_set(BK_EINVALID, "message-too-large",
		                     "noise: transport payload of %zu bytes, over %d", len,
		                     BK_NOISE_MAX_PAYLOAD);
	if (cs->n == NONCE_MAX)
		return bk__error_set(BK_ERROR, "nonce-exhausted",
		                     "noise: transport nonce exhausted, a new handshake is needed");
	make_nonce(nonce, cs->n);
	crypto_aead_chacha20poly1305_ietf_encrypt(out, NULL, plaintext, len, ad, adlen, NULL, nonce,
	                                          cs->k);
	cs->n++;
	return 0;
}

int bk_noise_cipher_decrypt(bk_noise_cipher *cs, const uint8_t *ad, size_t adlen,
                            const uint8_t *ciphertext, size_t len, uint8_t *out)
{
	uint8_t nonce[12], none[1];
	if (cs == NULL || ciphertext == NULL || (out == NULL && len > BK_NOISE_TAG_LEN) ||
	    (ad == NULL && adlen))
		return bk__error_set(BK_EINVALID, NULL, "noise: missing cipher argument");
	if (len > BK_NOISE_MAX_MSG)
		return bk__error_set(BK_EFORMAT, "message-too-large",
		                     "noise: transport message of %zu bytes, over %d", len,
		                     BK_NOISE_MAX_MSG);
	if (len < BK_NOISE_TAG_LEN)
		return bk__error_set(BK_EFORMAT, "frame-truncated",
		                     "noise: transport message of %zu bytes, shorter than a tag",
		                     len);
	if (cs->n == NONCE_MAX)
		return bk__error_set(BK_ERROR, "nonce-exhausted",
		                     "noise: transport nonce exhausted, a new handshake is needed");
	make_nonce(nonce, cs->n);
	if (crypto_aead_chacha20poly1305_ietf_decrypt(out ? out : none, NULL, NULL, ciphertext, len,
	                                              ad, adlen, nonce, cs->k) != 0)
		return bk__error_set(BK_EVERIFY, "frame-auth",
		                     "noise: transport message failed authentication");
	cs->n++;
	return 0;
}

int bk_noise_cipher_rekey(bk_noise_cipher *cs)
{
	uint8_t nonce[12], zeros[DHLEN] = {0}, buf[DHLEN + BK_NOISE_TAG_LEN];
	if (cs == NULL)
		return bk__error_set(BK_EINVALID, NULL, "noise: missing cipher argument");
	make_nonce(nonce, NONCE_MAX);
	crypto_aead_chacha20poly1305_ietf_encrypt(buf, NULL, zeros, DHLEN, NULL, 0, NULL, nonce,
	                                          cs->k);
	memcpy(cs->k, buf, DHLEN);
	sodium_memzero(buf, sizeof(buf));
	return 0;
}

uint64_t bk_noise_cipher_nonce(const bk_noise_cipher *cs)
{
	return cs ? cs->n : 0;
}

void bk_noise__cipher_set_nonce(bk_noise_cipher *cs, uint64_t n)
{
	if (cs)
		cs->n = n;
}
