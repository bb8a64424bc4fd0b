/* Ed25519 signatures and keys in the minisign formats (see minisign.h). */
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "crypto/minisign.h"
#include "libbackup/util/util.h"

#define COMMENT_PREFIX "untrusted comment: "
#define TRUSTED_PREFIX "trusted comment: "
#define SALT_LEN       32
#define SK_LEN         64
#define CHK_LEN        32
/* key id || secret key || checksum: the part scrypt's output is XORed with. */
#define KEYNUM_SK_LEN (BK_MINISIGN_KEYID_LEN + SK_LEN + CHK_LEN)
#define PK_BLOB_LEN   (2 + BK_MINISIGN_KEYID_LEN + BK_MINISIGN_PK_LEN)
#define SK_BLOB_LEN   (2 + 2 + 2 + SALT_LEN + 8 + 8 + KEYNUM_SK_LEN)
#define SIG_BLOB_LEN  (2 + BK_MINISIGN_KEYID_LEN + BK_MINISIGN_SIG_LEN)

struct bk_minisign_seckey {
	uint8_t key_id[BK_MINISIGN_KEYID_LEN];
	uint8_t pk[BK_MINISIGN_PK_LEN];
	bk_secret *sk; /* 64 bytes: seed || public key */
};

struct bk_minisign_sig {
	uint8_t alg[2];
	uint8_t key_id[BK_MINISIGN_KEYID_LEN];
	uint8_t sig[BK_MINISIGN_SIG_LEN];
	uint8_t global_sig[BK_MINISIGN_SIG_LEN];
	char *trusted;
	size_t trusted_len;
	char *untrusted;
};

/* --- Text helpers --------------------------------------------------------- */

/* Splits the next line off `text` at *pos: the line without its "\n" (and a
 * "\r" before it). Returns 0, or -1 at the end of the text. A last line
 * without "\n" is returned too. */
static int next_line(const char *text, size_t len, size_t *pos, const char **line, size_t *line_len)
{
	if (*pos >= len)
		return -1;
	const char *start = text + *pos;
	const char *nl = memchr(start, '\n', len - *pos);
	size_t n = nl ? (size_t)(nl - start) : len - *pos;
	*pos += n + (nl ? 1 : 0);
	if (n > 0 && start[n - 1] == '\r')
		n--;
	*line = start;
	*line_len = n;
	return 0;
}

/* A comment's text: no control characters but tab. */
static bool comment_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return false;
	}
	return true;
}

static bool has_prefix(const char *s, size_t n, const char *prefix)
{
	size_t pl = strlen(prefix);
	return n >= pl && memcmp(s, prefix, pl) == 0;
}

int bk_minisign__b64_decode(uint8_t *out, size_t max, size_t *out_len, const char *s, size_t len)
{
	const char *end = NULL;
	*out_len = 0;
	if (len == 0 || len % 4 != 0)
		return -1;
	/* libsodium's decoder alone lets some bytes outside the alphabet through. */
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '+' || c == '/' || (c == '=' && i + 2 >= len)))
			return -1;
	}
	if (sodium_base642bin(out, max, s, len, NULL, out_len, &end,
	                      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    end != s + len) {
		*out_len = 0;
		return -1;
	}
	return 0;
}

/* Decodes strict base64 of exactly `want` bytes. Returns 0 or -1. */
static int b64_decode(uint8_t *out, size_t want, const char *s, size_t len)
{
	size_t got = 0;
	if (bk_minisign__b64_decode(out, want, &got, s, len) != 0 || got != want)
		return -1;
	return 0;
}

/* Appends base64 of `n` bytes to `b`. */
static int b64_put(bk_buf *b, const uint8_t *in, size_t n)
{
	size_t enc = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
	int rc = bk_buf_reserve(b, enc);
	if (rc)
		return rc;
	sodium_bin2base64((char *)b->data + b->len, enc, in, n, sodium_base64_VARIANT_ORIGINAL);
	b->len += enc - 1;
	return 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	uint8_t acc = 0;
	for (size_t i = 0; i < n; i++)
		acc |= p[i];
	return acc == 0;
}

void bk_minisign_key_id_hex(char out[17], const uint8_t key_id[BK_MINISIGN_KEYID_LEN])
{
	static const char digits[] = "0123456789ABCDEF";
	for (int i = 0; i < BK_MINISIGN_KEYID_LEN; i++) {
		uint8_t b = key_id[BK_MINISIGN_KEYID_LEN - 1 - i];
		out[2 * i] = digits[b >> 4];
		out[2 * i + 1] = digits[b & 15];
	}
	out[16] = '\0';
}

/* --- Keys ----------------------------------------------------------------- */

static int seckey_alloc(bk_minisign_seckey **out)
{
	bk_minisign_seckey *k = bk__calloc(1, sizeof(*k));
	if (k == NULL)
		return BK_ENOMEM;
	int rc = bk_secret_new(&k->sk, SK_LEN);
	if (rc) {
		bk__free(k);
		return rc;
	}
	*out = k;
	return 0;
}

int bk_minisign_keygen(bk_minisign_seckey **out)
{
	bk_minisign_seckey *k = NULL;
	if (out == NULL)
		return bk__error_set(BK_EINVALID, NULL, "minisign keygen: no output");
	*out = NULL;
	int rc = seckey_alloc(&k);
	if (rc)
		return rc;
	crypto_sign_keypair(k->pk, bk_secret_data(k->sk));
	randombytes_buf(k->key_id, sizeof(k->key_id));
	*out = k;
	return 0;
}

void bk_minisign_seckey_free(bk_minisign_seckey *sk)
{
	if (sk == NULL)
		return;
	bk_secret_free(sk->sk);
	bk__free(sk);
}

void bk_minisign_seckey_pubkey(const bk_minisign_seckey *sk, bk_minisign_pubkey *out)
{
	memcpy(out->key_id, sk->key_id, sizeof(out->key_id));
	memcpy(out->pk, sk->pk, sizeof(out->pk));
}

const uint8_t *bk_minisign_seckey_ed25519(const bk_minisign_seckey *sk)
{
	return bk_secret_data(sk->sk);
}

static int pubkey_from_b64(bk_minisign_pubkey *out, const char *s, size_t n)
{
	uint8_t blob[PK_BLOB_LEN];
	if (b64_decode(blob, sizeof(blob), s, n) != 0)
		return bk__error_set(BK_EFORMAT, "malformed-key",
		                     "public key: not the base64 of a minisign public key");
	if (memcmp(blob, "Ed", 2) != 0)
		return bk__error_set(BK_EFORMAT, "malformed-key",
		                     "public key: unsupported algorithm (not Ed25519)");
	memcpy(out->key_id, blob + 2, BK_MINISIGN_KEYID_LEN);
	memcpy(out->pk, blob + 2 + BK_MINISIGN_KEYID_LEN, BK_MINISIGN_PK_LEN);
	return 0;
}

int bk_minisign_pubkey_parse(bk_minisign_pubkey *out, const char *text, size_t len)
{
	const char *l1, *l2, *extra;
	size_t n1, n2, nx, pos = 0;
	if (out == NULL || (text == NULL && len))
		return bk__error_set(BK_EINVALID, NULL, "public key: no input");
	if (text == NULL || next_line(text, len, &pos, &l1, &n1) != 0)
		return bk__error_set(BK_EFORMAT, "malformed-key", "public key: empty");
	if (memchr(text, '\0', len) != NULL)
		return bk__error_set(BK_EFORMAT, "malformed-key",
		                     "public key: contains a NUL byte");
	if (next_line(text, len, &pos, &l2, &n2) != 0) {
		/* A bare base64 key. */
		return pubkey_from_b64(out, l1, n1);
	}
	if (next_line(text, len, &pos, &extra, &nx) == 0)
		return bk__error_set(BK_EFORMAT, "malformed-key",
		                     "public key: unexpected text after the key");
	if (!has_prefix(l1, n1, COMMENT_PREFIX) ||
	    n1 - strlen(COMMENT_PREFIX) > BK_MINISIGN_COMMENT_MAX || !comment_ok(l1, n1))
		return bk__error_set(BK_EFORMAT, "malformed-key",
		                     "public key: first line is not an untrusted comment");
	return pubkey_from_b64(out, l2, n2);
}

void bk_minisign_pubkey_base64(char out[57], const bk_minisign_pubkey *pk)
{
	uint8_t blob[PK_BLOB_LEN];
	memcpy(blob, "Ed", 2);
	memcpy(blob + 2, pk->key_id, BK_MINISIGN_KEYID_LEN);
	memcpy(blob + 2 + BK_MINISIGN_KEYID_LEN, pk->pk, BK_MINISIGN_PK_LEN);
	sodium_bin2base64(out, 57, blob, sizeof(blob), sodium_base64_VARIANT_ORIGINAL);
}

int bk_minisign_pubkey_encode(char **out, size_t *out_len, const bk_minisign_pubkey *pk)
{
	bk_buf b = BK_BUF_INIT;
	char hex[17], b64[57];
	int rc;
	if (out == NULL || pk == NULL)
		return bk__error_set(BK_EINVALID, NULL, "public key: no input");
	*out = NULL;
	bk_minisign_key_id_hex(hex, pk->key_id);
	bk_minisign_pubkey_base64(b64, pk);
	rc = bk_buf_printf(&b, COMMENT_PREFIX "minisign public key %s\n%s\n", hex, b64);
	if (rc == 0)
		rc = bk_buf_cstr(&b);
	if (rc == 0)
		*out = (char *)bk_buf_steal(&b, out_len);
	bk_buf_free(&b);
	return rc;
}

int bk_minisign_pubkey_read(bk_minisign_pubkey *out, const char *path)
{
	uint8_t *data = NULL;
	size_t len = 0;
	int rc = bk_file_read(path, BK_MINISIGN_FILE_MAX, &data, &len);
	if (rc)
		goto done;
	rc = bk_minisign_pubkey_parse(out, (const char *)data, len);
	if (rc)
		bk__error_prefix(rc, "%s", path);
done:
	bk__free(data);
	return rc;
}

int bk_minisign_pubkey_write(const char *path, const bk_minisign_pubkey *pk)
{
	char *text = NULL;
	size_t len = 0;
	int rc = bk_minisign_pubkey_encode(&text, &len, pk);
	if (rc == 0)
		rc = bk_file_write_atomic(path, text, len, 0644, 1);
	bk__free(text);
	return rc;
}

static void seckey_checksum(uint8_t chk[CHK_LEN], const uint8_t key_id[BK_MINISIGN_KEYID_LEN],
                            const uint8_t *sk)
{
	crypto_generichash_state st;
	crypto_generichash_init(&st, NULL, 0, CHK_LEN);
	crypto_generichash_update(&st, (const uint8_t *)"Ed", 2);
	crypto_generichash_update(&st, key_id, BK_MINISIGN_KEYID_LEN);
	crypto_generichash_update(&st, sk, SK_LEN);
	crypto_generichash_final(&st, chk, CHK_LEN);
	sodium_memzero(&st, sizeof(st));
}

/* XORs `buf` with scrypt(passphrase, salt) at the given limits. */
static int kdf_xor(uint8_t *buf, size_t len, const char *passphrase, const uint8_t *salt,
                   uint64_t opslimit, uint64_t memlimit)
{
	uint8_t *stream = NULL;
	int rc = 0;
	stream = sodium_malloc(len);
	if (stream == NULL)
		return bk__error_oom();
	if (crypto_pwhash_scryptsalsa208sha256(stream, len, passphrase, strlen(passphrase), salt,
	                                       (unsigned long long)opslimit,
	                                       (size_t)memlimit) != 0) {
		rc = bk__error_set(BK_ENOMEM, "kdf-failed",
		                   "secret key: scrypt failed (memory limit %llu bytes)",
		                   (unsigned long long)memlimit);
		goto done;
	}
	for (size_t i = 0; i < len; i++)
		buf[i] ^= stream[i];
done:
	sodium_free(stream);
	return rc;
}

int bk_minisign_seckey_parse(bk_minisign_seckey **out, const char *text, size_t len,
                             const char *passphrase)
{
	uint8_t blob[SK_BLOB_LEN];
	uint8_t chk[CHK_LEN], pk[BK_MINISIGN_PK_LEN];
	const char *l1 = NULL, *l2 = NULL, *lx;
	size_t n1 = 0, n2 = 0, nx, pos = 0;
	bk_minisign_seckey *k = NULL;
	int rc = 0;
	bk_cur cur;
	const uint8_t *alg, *kdf, *chkalg, *salt, *keynum_sk;
	uint64_t opslimit = 0, memlimit = 0;

	if (out == NULL || (text == NULL && len))
		return bk__error_set(BK_EINVALID, NULL, "secret key: no input");
	*out = NULL;
	if (text == NULL || memchr(text, '\0', len) != NULL ||
	    next_line(text, len, &pos, &l1, &n1) != 0 ||
	    next_line(text, len, &pos, &l2, &n2) != 0 ||
	    next_line(text, len, &pos, &lx, &nx) == 0) {
		rc = bk__error_set(BK_EFORMAT, "malformed-key",
		                   "secret key: not a two-line minisign key file");
		goto done;
	}
	if (!has_prefix(l1, n1, COMMENT_PREFIX) ||
	    n1 - strlen(COMMENT_PREFIX) > BK_MINISIGN_COMMENT_MAX || !comment_ok(l1, n1)) {
		rc = bk__error_set(BK_EFORMAT, "malformed-key",
		                   "secret key: first line is not an untrusted comment");
		goto done;
	}
	if (b64_decode(blob, sizeof(blob), l2, n2) != 0) {
		rc = bk__error_set(BK_EFORMAT, "malformed-key",
		                   "secret key: not the base64 of a minisign secret key");
		goto done;
	}
	bk_cur_init(&cur, blob, sizeof(blob));
	/* The blob has exactly the right length, so these cannot fail. */
	bk_cur_bytes(&cur, &alg, 2);
	bk_cur_bytes(&cur, &kdf, 2);
	bk_cur_bytes(&cur, &chkalg, 2);
	bk_cur_bytes(&cur, &salt, SALT_LEN);
	bk_cur_u64le(&cur, &opslimit);
	bk_cur_u64le(&cur, &memlimit);
	bk_cur_bytes(&cur, &keynum_sk, KEYNUM_SK_LEN);
	if (memcmp(alg, "Ed", 2) != 0 || memcmp(chkalg, "B2", 2) != 0) {
		rc = bk__error_set(BK_EFORMAT, "malformed-key",
		                   "secret key: unsupported signature or checksum algorithm");
		goto done;
	}
	bool encrypted;
	if (memcmp(kdf, "Sc", 2) == 0) {
		encrypted = true;
	} else if (kdf[0] == 0 && kdf[1] == 0) {
		encrypted = false;
	} else {
		rc = bk__error_set(BK_EFORMAT, "malformed-key",
		                   "secret key: unsupported key derivation algorithm");
		goto done;
	}
	if (encrypted) {
		if (passphrase == NULL) {
			rc = bk__error_set(BK_EAUTH, "passphrase-required",
			                   "secret key: encrypted, a passphrase is needed");
			goto done;
		}
		if (opslimit > BK_MINISIGN_OPSLIMIT_MAX || memlimit > BK_MINISIGN_MEMLIMIT_MAX ||
		    opslimit < crypto_pwhash_scryptsalsa208sha256_OPSLIMIT_MIN ||
		    memlimit < crypto_pwhash_scryptsalsa208sha256_MEMLIMIT_MIN) {
			rc = bk__error_set(BK_EFORMAT, "malformed-key",
			                   "secret key: scrypt limits out of range (%llu, %llu)",
			                   (unsigned long long)opslimit,
			                   (unsigned long long)memlimit);
			goto done;
		}
		rc = kdf_xor(blob + (SK_BLOB_LEN - KEYNUM_SK_LEN), KEYNUM_SK_LEN, passphrase, salt,
		             opslimit, memlimit);
		if (rc)
			goto done;
	}
	const uint8_t *key_id = keynum_sk;
	const uint8_t *sk = keynum_sk + BK_MINISIGN_KEYID_LEN;
	const uint8_t *file_chk = sk + SK_LEN;
	/* minisign -W leaves the checksum of an unencrypted key zero. */
	if (encrypted || !all_zero(file_chk, CHK_LEN)) {
		seckey_checksum(chk, key_id, sk);
		if (sodium_memcmp(chk, file_chk, CHK_LEN) != 0) {
			if (encrypted)
				rc = bk__error_set(BK_EAUTH, "wrong-passphrase",
				                   "secret key: wrong passphrase");
			else
				rc = bk__error_set(BK_EFORMAT, "malformed-key",
				                   "secret key: checksum mismatch");
			goto done;
		}
	}
	/* The secret key holds its public half: it must be the one its seed gives. */
	crypto_sign_ed25519_sk_to_pk(pk, sk);
	{
		uint8_t seed_pk[crypto_sign_PUBLICKEYBYTES], seed_sk[crypto_sign_SECRETKEYBYTES];
		crypto_sign_seed_keypair(seed_pk, seed_sk, sk);
		int same = sodium_memcmp(seed_pk, pk, sizeof(pk));
		sodium_memzero(seed_sk, sizeof(seed_sk));
		if (same != 0) {
			rc = bk__error_set(BK_EFORMAT, "malformed-key",
			                   "secret key: public key does not match the secret");
			goto done;
		}
	}
	rc = seckey_alloc(&k);
	if (rc)
		goto done;
	memcpy(k->key_id, key_id, BK_MINISIGN_KEYID_LEN);
	memcpy(k->pk, pk, sizeof(pk));
	memcpy(bk_secret_data(k->sk), sk, SK_LEN);
	*out = k;
	k = NULL;
done:
	sodium_memzero(blob, sizeof(blob));
	sodium_memzero(chk, sizeof(chk));
	bk_minisign_seckey_free(k);
	return rc;
}

int bk_minisign_seckey_encode(char **out, size_t *out_len, const bk_minisign_seckey *sk,
                              const char *passphrase, uint64_t opslimit, uint64_t memlimit)
{
	uint8_t blob[SK_BLOB_LEN];
	uint8_t *p = blob;
	bk_buf b = BK_BUF_INIT;
	int rc = 0;
	b.secret = 1;
	if (out == NULL || sk == NULL)
		return bk__error_set(BK_EINVALID, NULL, "secret key: no input");
	*out = NULL;
	memset(blob, 0, sizeof(blob));
	memcpy(p, "Ed", 2);
	p += 2;
	if (passphrase) {
		if (opslimit == 0 && memlimit == 0) {
			opslimit = crypto_pwhash_scryptsalsa208sha256_OPSLIMIT_SENSITIVE;
			memlimit = crypto_pwhash_scryptsalsa208sha256_MEMLIMIT_SENSITIVE;
		}
		if (opslimit > BK_MINISIGN_OPSLIMIT_MAX || memlimit > BK_MINISIGN_MEMLIMIT_MAX ||
		    opslimit < crypto_pwhash_scryptsalsa208sha256_OPSLIMIT_MIN ||
		    memlimit < crypto_pwhash_scryptsalsa208sha256_MEMLIMIT_MIN) {
			rc = bk__error_set(BK_EINVALID, NULL,
			                   "secret key: scrypt limits out of range");
			goto done;
		}
		memcpy(p, "Sc", 2);
	}
	p += 2;
	memcpy(p, "B2", 2);
	p += 2;
	uint8_t *salt = p;
	if (passphrase) {
		randombytes_buf(salt, SALT_LEN);
		bk_put_u64le(p + SALT_LEN, opslimit);
		bk_put_u64le(p + SALT_LEN + 8, memlimit);
	}
	p += SALT_LEN + 16;
	memcpy(p, sk->key_id, BK_MINISIGN_KEYID_LEN);
	memcpy(p + BK_MINISIGN_KEYID_LEN, bk_secret_data(sk->sk), SK_LEN);
	seckey_checksum(p + BK_MINISIGN_KEYID_LEN + SK_LEN, sk->key_id, bk_secret_data(sk->sk));
	if (passphrase) {
		rc = kdf_xor(p, KEYNUM_SK_LEN, passphrase, salt, opslimit, memlimit);
		if (rc)
			goto done;
	}
	rc = bk_buf_put_str(&b, passphrase ? COMMENT_PREFIX "minisign encrypted secret key\n"
	                                   : COMMENT_PREFIX "minisign secret key\n");
	if (rc == 0)
		rc = b64_put(&b, blob, sizeof(blob));
	if (rc == 0)
		rc = bk_buf_put_u8(&b, '\n');
	if (rc == 0)
		rc = bk_buf_cstr(&b);
	if (rc)
		goto done;
	*out = (char *)bk_buf_steal(&b, out_len);
done:
	sodium_memzero(blob, sizeof(blob));
	bk_buf_free(&b);
	return rc;
}

int bk_minisign_seckey_read(bk_minisign_seckey **out, const char *path, const char *passphrase)
{
	uint8_t *data = NULL;
	size_t len = 0;
	int rc;
	if (out == NULL || path == NULL)
		return bk__error_set(BK_EINVALID, NULL, "secret key: no path");
	*out = NULL;
	rc = bk_file_check_private(path);
	if (rc)
		goto done;
	rc = bk_file_read(path, BK_MINISIGN_FILE_MAX, &data, &len);
	if (rc)
		goto done;
	rc = bk_minisign_seckey_parse(out, (const char *)data, len, passphrase);
	if (rc)
		bk__error_prefix(rc, "%s", path);
done:
	if (data) {
		sodium_memzero(data, len);
		bk__free(data);
	}
	return rc;
}

int bk_minisign_seckey_write(const char *path, const bk_minisign_seckey *sk, const char *passphrase,
                             uint64_t opslimit, uint64_t memlimit)
{
	char *text = NULL;
	size_t len = 0;
	int rc = bk_minisign_seckey_encode(&text, &len, sk, passphrase, opslimit, memlimit);
	if (rc == 0)
		rc = bk_file_write_atomic(path, text, len, 0600, 1);
	if (text) {
		sodium_memzero(text, len);
		bk__free(text);
	}
	return rc;
}

/* --- Hashing -------------------------------------------------------------- */

void bk_minisign_hash_init(bk_minisign_hasher *h)
{
	crypto_generichash_init(&h->st, NULL, 0, BK_MINISIGN_HASH_LEN);
}

void bk_minisign_hash_update(bk_minisign_hasher *h, const void *data, size_t len)
{
	crypto_generichash_update(&h->st, data, len);
}

void bk_minisign_hash_final(bk_minisign_hasher *h, uint8_t out[BK_MINISIGN_HASH_LEN])
{
	crypto_generichash_final(&h->st, out, BK_MINISIGN_HASH_LEN);
}

int bk_minisign_hash_stream(uint8_t out[BK_MINISIGN_HASH_LEN], bk_stream *in)
{
	bk_minisign_hasher h;
	uint8_t *buf = NULL;
	const size_t cap = 65536;
	int rc = 0;
	buf = bk__malloc(cap);
	if (buf == NULL)
		return BK_ENOMEM;
	bk_minisign_hash_init(&h);
	for (;;) {
		size_t n = 0;
		rc = bk_stream_read(in, buf, cap, &n, BK_DEADLINE_NONE);
		if (rc)
			goto done;
		if (n == 0)
			break;
		bk_minisign_hash_update(&h, buf, n);
	}
	bk_minisign_hash_final(&h, out);
done:
	bk__free(buf);
	return rc;
}

int bk_minisign_hash_file(uint8_t out[BK_MINISIGN_HASH_LEN], const char *path)
{
	bk_stream *in = NULL;
	int rc = bk_stream_file_open(&in, path);
	if (rc)
		return rc;
	rc = bk_minisign_hash_stream(out, in);
	if (rc)
		bk__error_prefix(rc, "%s", path);
	bk_stream_free(in);
	return rc;
}

/* --- Signing -------------------------------------------------------------- */

static int check_comment_arg(const char *c, size_t max, const char *what)
{
	size_t n = strlen(c);
	if (n > max || !comment_ok(c, n))
		return bk__error_set(BK_EINVALID, "bad-comment",
		                     "%s: must be one line of at most %zu bytes", what, max);
	return 0;
}

/* Writes the signature file for an already computed signature. */
static int sign_finish(char **out, size_t *out_len, const bk_minisign_seckey *sk, const char *alg,
                       const uint8_t sig[BK_MINISIGN_SIG_LEN], const char *trusted,
                       const char *untrusted)
{
	bk_buf b = BK_BUF_INIT, signed_part = BK_BUF_INIT;
	uint8_t blob[SIG_BLOB_LEN], global[BK_MINISIGN_SIG_LEN];
	int rc;
	*out = NULL;
	rc = check_comment_arg(trusted, BK_MINISIGN_TRUSTED_COMMENT_MAX, "trusted comment");
	if (rc == 0 && untrusted)
		rc = check_comment_arg(untrusted, BK_MINISIGN_COMMENT_MAX, "untrusted comment");
	if (rc)
		goto done;
	memcpy(blob, alg, 2);
	memcpy(blob + 2, sk->key_id, BK_MINISIGN_KEYID_LEN);
	memcpy(blob + 2 + BK_MINISIGN_KEYID_LEN, sig, BK_MINISIGN_SIG_LEN);
	rc = bk_buf_put(&signed_part, sig, BK_MINISIGN_SIG_LEN);
	if (rc == 0)
		rc = bk_buf_put_str(&signed_part, trusted);
	if (rc)
		goto done;
	crypto_sign_detached(global, NULL, signed_part.data, signed_part.len,
	                     bk_secret_data(sk->sk));
	rc = bk_buf_printf(&b, COMMENT_PREFIX "%s\n",
	                   untrusted ? untrusted : "signature from aibo-restore secret key");
	if (rc == 0)
		rc = b64_put(&b, blob, sizeof(blob));
	if (rc == 0)
		rc = bk_buf_printf(&b, "\n" TRUSTED_PREFIX "%s\n", trusted);
	if (rc == 0)
		rc = b64_put(&b, global, sizeof(global));
	if (rc == 0)
		rc = bk_buf_put_u8(&b, '\n');
	if (rc == 0)
		rc = bk_buf_cstr(&b);
	if (rc)
		goto done;
	*out = (char *)bk_buf_steal(&b, out_len);
done:
	bk_buf_free(&signed_part);
	bk_buf_free(&b);
	return rc;
}

static char *default_trusted(const char *file)
{
	long long now = (long long)time(NULL);
	if (file) {
		const char *base = strrchr(file, '/');
		base = base ? base + 1 : file;
		if (comment_ok(base, strlen(base)) && strlen(base) < 1024)
			return bk__asprintf("timestamp:%lld\tfile:%s\thashed", now, base);
	}
	return bk__asprintf("timestamp:%lld\thashed", now);
}

int bk_minisign_sign_hash(char **out, size_t *out_len, const bk_minisign_seckey *sk,
                          const uint8_t hash[BK_MINISIGN_HASH_LEN], const char *trusted_comment,
                          const char *untrusted_comment)
{
	uint8_t sig[BK_MINISIGN_SIG_LEN];
	char *tc = NULL;
	int rc;
	if (out == NULL || sk == NULL || hash == NULL)
		return bk__error_set(BK_EINVALID, NULL, "sign: no input");
	*out = NULL;
	if (trusted_comment == NULL) {
		tc = default_trusted(NULL);
		if (tc == NULL)
			return BK_ENOMEM;
		trusted_comment = tc;
	}
	crypto_sign_detached(sig, NULL, hash, BK_MINISIGN_HASH_LEN, bk_secret_data(sk->sk));
	rc = sign_finish(out, out_len, sk, "ED", sig, trusted_comment, untrusted_comment);
	bk__free(tc);
	return rc;
}

int bk_minisign_sign_buf(char **out, size_t *out_len, const bk_minisign_seckey *sk, const void *msg,
                         size_t len, const char *trusted_comment, const char *untrusted_comment)
{
	uint8_t hash[BK_MINISIGN_HASH_LEN];
	if (msg == NULL && len)
		return bk__error_set(BK_EINVALID, NULL, "sign: no message");
	crypto_generichash(hash, sizeof(hash), msg, len, NULL, 0);
	return bk_minisign_sign_hash(out, out_len, sk, hash, trusted_comment, untrusted_comment);
}

int bk_minisign_sign_file(char **out, size_t *out_len, const bk_minisign_seckey *sk,
                          const char *path, const char *trusted_comment,
                          const char *untrusted_comment)
{
	uint8_t hash[BK_MINISIGN_HASH_LEN];
	char *tc = NULL;
	int rc;
	if (out == NULL || sk == NULL || path == NULL)
		return bk__error_set(BK_EINVALID, NULL, "sign: no input");
	*out = NULL;
	rc = bk_minisign_hash_file(hash, path);
	if (rc)
		goto done;
	if (trusted_comment == NULL) {
		tc = default_trusted(path);
		if (tc == NULL) {
			rc = BK_ENOMEM;
			goto done;
		}
		trusted_comment = tc;
	}
	rc = bk_minisign_sign_hash(out, out_len, sk, hash, trusted_comment, untrusted_comment);
done:
	bk__free(tc);
	return rc;
}

int bk_minisign_sign_buf_legacy(char **out, size_t *out_len, const bk_minisign_seckey *sk,
                                const void *msg, size_t len, const char *trusted_comment,
                                const char *untrusted_comment)
{
	uint8_t sig[BK_MINISIGN_SIG_LEN];
	char *tc = NULL;
	int rc;
	if (out == NULL || sk == NULL || (msg == NULL && len))
		return bk__error_set(BK_EINVALID, NULL, "sign: no input");
	*out = NULL;
	if (trusted_comment == NULL) {
		long long now = (long long)time(NULL);
		tc = bk__asprintf("timestamp:%lld", now);
		if (tc == NULL)
			return BK_ENOMEM;
		trusted_comment = tc;
	}
	crypto_sign_detached(sig, NULL, msg, len, bk_secret_data(sk->sk));
	rc = sign_finish(out, out_len, sk, "Ed", sig, trusted_comment, untrusted_comment);
	bk__free(tc);
	return rc;
}

/* --- Signature files ------------------------------------------------------- */

static int malformed_sig(const char *why)
{
	return bk__error_set(BK_EFORMAT, "malformed-signature", "signature: %s", why);
}

int bk_minisign_sig_parse(bk_minisign_sig **out, const char *text, size_t len)
{
	const char *l[4], *lx;
	size_t n[4], nx, pos = 0;
	uint8_t blob[SIG_BLOB_LEN];
	bk_minisign_sig *s = NULL;
	int rc = 0;
	const size_t up = strlen(COMMENT_PREFIX), tp = strlen(TRUSTED_PREFIX);

	if (out == NULL || (text == NULL && len))
		return bk__error_set(BK_EINVALID, NULL, "signature: no input");
	*out = NULL;
	if (text == NULL || memchr(text, '\0', len) != NULL) {
		rc = malformed_sig("empty or binary");
		goto done;
	}
	for (int i = 0; i < 4; i++) {
		if (next_line(text, len, &pos, &l[i], &n[i]) != 0) {
			rc = malformed_sig("fewer than four lines");
			goto done;
		}
	}
	if (next_line(text, len, &pos, &lx, &nx) == 0) {
		rc = malformed_sig("unexpected text after the fourth line");
		goto done;
	}
	if (!has_prefix(l[0], n[0], COMMENT_PREFIX) || n[0] - up > BK_MINISIGN_COMMENT_MAX ||
	    !comment_ok(l[0], n[0])) {
		rc = malformed_sig("first line is not an untrusted comment");
		goto done;
	}
	if (!has_prefix(l[2], n[2], TRUSTED_PREFIX) ||
	    n[2] - tp > BK_MINISIGN_TRUSTED_COMMENT_MAX || !comment_ok(l[2], n[2])) {
		rc = malformed_sig("third line is not a trusted comment");
		goto done;
	}
	if (b64_decode(blob, sizeof(blob), l[1], n[1]) != 0) {
		rc = malformed_sig("second line is not the base64 of a signature");
		goto done;
	}
	if (memcmp(blob, "ED", 2) != 0 && memcmp(blob, "Ed", 2) != 0) {
		rc = malformed_sig("unsupported signature algorithm");
		goto done;
	}
	s = bk__calloc(1, sizeof(*s));
	if (s == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	if (b64_decode(s->global_sig, sizeof(s->global_sig), l[3], n[3]) != 0) {
		rc = malformed_sig("fourth line is not the base64 of a signature");
		goto done;
	}
	memcpy(s->alg, blob, 2);
	memcpy(s->key_id, blob + 2, BK_MINISIGN_KEYID_LEN);
	memcpy(s->sig, blob + 2 + BK_MINISIGN_KEYID_LEN, BK_MINISIGN_SIG_LEN);
	s->trusted_len = n[2] - tp;
	s->trusted = bk__strndup(l[2] + tp, s->trusted_len);
	s->untrusted = bk__strndup(l[0] + up, n[0] - up);
	if (s->trusted == NULL || s->untrusted == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	*out = s;
	s = NULL;
done:
	bk_minisign_sig_free(s);
	return rc;
}

int bk_minisign_sig_read(bk_minisign_sig **out, const char *path)
{
	uint8_t *data = NULL;
	size_t len = 0;
	int rc;
	if (out == NULL)
		return bk__error_set(BK_EINVALID, NULL, "signature: no output");
	*out = NULL;
	rc =
	    bk_file_read(path, BK_MINISIGN_FILE_MAX + BK_MINISIGN_TRUSTED_COMMENT_MAX, &data, &len);
	if (rc)
		goto done;
	rc = bk_minisign_sig_parse(out, (const char *)data, len);
	if (rc)
		bk__error_prefix(rc, "%s", path);
done:
	bk__free(data);
	return rc;
}

void bk_minisign_sig_free(bk_minisign_sig *sig)
{
	if (sig == NULL)
		return;
	bk__free(sig->trusted);
	bk__free(sig->untrusted);
	bk__free(sig);
}

const uint8_t *bk_minisign_sig_key_id(const bk_minisign_sig *sig)
{
	return sig->key_id;
}

int bk_minisign_sig_prehashed(const bk_minisign_sig *sig)
{
	return sig->alg[1] == 'D';
}

const char *bk_minisign_sig_trusted_comment(const bk_minisign_sig *sig)
{
	return sig->trusted;
}

const char *bk_minisign_sig_untrusted_comment(const bk_minisign_sig *sig)
{
	return sig->untrusted;
}

/* --- Verification ----------------------------------------------------------- */

static int check_key_id(const bk_minisign_sig *sig, const bk_minisign_pubkey *pk)
{
	if (memcmp(sig->key_id, pk->key_id, BK_MINISIGN_KEYID_LEN) != 0) {
		char want[17], got[17];
		bk_minisign_key_id_hex(got, sig->key_id);
		bk_minisign_key_id_hex(want, pk->key_id);
		return bk__error_set(BK_EVERIFY, "wrong-key-id",
		                     "signature: made by key %s, not by key %s", got, want);
	}
	return 0;
}

/* Checks the global signature over signature || trusted comment. */
static int check_global(const bk_minisign_sig *sig, const bk_minisign_pubkey *pk)
{
	bk_buf b = BK_BUF_INIT;
	int rc = bk_buf_put(&b, sig->sig, BK_MINISIGN_SIG_LEN);
	if (rc == 0)
		rc = bk_buf_put(&b, sig->trusted, sig->trusted_len);
	if (rc == 0 && crypto_sign_verify_detached(sig->global_sig, b.data, b.len, pk->pk) != 0)
		rc = bk__error_set(BK_EVERIFY, "bad-trusted-comment",
		                   "signature: the trusted comment is not signed by key");
	bk_buf_free(&b);
	return rc;
}

static int bad_signature(void)
{
	return bk__error_set(BK_EVERIFY, "bad-signature", "signature: does not match the data");
}

int bk_minisign_verify_hash(const bk_minisign_sig *sig, const bk_minisign_pubkey *pk,
                            const uint8_t hash[BK_MINISIGN_HASH_LEN])
{
	if (sig == NULL || pk == NULL || hash == NULL)
		return bk__error_set(BK_EINVALID, NULL, "verify: no input");
	int rc = check_key_id(sig, pk);
	if (rc)
		return rc;
	if (!bk_minisign_sig_prehashed(sig))
		return bk__error_set(BK_EVERIFY, "legacy-needs-message",
		                     "signature: legacy signature needs the whole message");
	if (crypto_sign_verify_detached(sig->sig, hash, BK_MINISIGN_HASH_LEN, pk->pk) != 0)
		return bad_signature();
	return check_global(sig, pk);
}

int bk_minisign_verify_buf(const bk_minisign_sig *sig, const bk_minisign_pubkey *pk,
                           const void *msg, size_t len)
{
	uint8_t hash[BK_MINISIGN_HASH_LEN];
	if (sig == NULL || pk == NULL || (msg == NULL && len))
		return bk__error_set(BK_EINVALID, NULL, "verify: no input");
	if (bk_minisign_sig_prehashed(sig)) {
		crypto_generichash(hash, sizeof(hash), msg, len, NULL, 0);
		return bk_minisign_verify_hash(sig, pk, hash);
	}
	int rc = check_key_id(sig, pk);
	if (rc)
		return rc;
	if (crypto_sign_verify_detached(sig->sig, msg, len, pk->pk) != 0)
		return bad_signature();
	return check_global(sig, pk);
}

int bk_minisign_verify_file(const bk_minisign_sig *sig, const bk_minisign_pubkey *pk,
                            const char *path)
{
	uint8_t hash[BK_MINISIGN_HASH_LEN];
	uint8_t *data = NULL;
	size_t len = 0;
	int rc;
	if (sig == NULL || pk == NULL || path == NULL)
		return bk__error_set(BK_EINVALID, NULL, "verify: no input");
	rc = check_key_id(sig, pk);
	if (rc)
		goto done;
	if (bk_minisign_sig_prehashed(sig)) {
		rc = bk_minisign_hash_file(hash, path);
		if (rc == 0)
			rc = bk_minisign_verify_hash(sig, pk, hash);
	} else {
		rc = bk_file_read(path, BK_MINISIGN_LEGACY_MAX, &data, &len);
		if (rc == 0)
			rc = bk_minisign_verify_buf(sig, pk, data, len);
	}
	if (rc)
		bk__error_prefix(rc, "%s", path);
done:
	bk__free(data);
	return rc;
}

const bk_minisign_pubkey *bk_minisign_find_key(const bk_minisign_sig *sig,
                                               const bk_minisign_pubkey *keys, size_t count)
{
	char got[17];
	for (size_t i = 0; sig && keys && i < count; i++)
		if (memcmp(keys[i].key_id, sig->key_id, BK_MINISIGN_KEYID_LEN) == 0)
			return &keys[i];
	if (sig == NULL)
		bk__error_set(BK_EINVALID, NULL, "verify: no signature");
	else {
		bk_minisign_key_id_hex(got, sig->key_id);
		bk__error_set(BK_EVERIFY, "wrong-key-id",
		              "signature: made by key %s, which is not a trusted key", got);
	}
	return NULL;
}

int bk_minisign_verify_mem(char **out_trusted, const bk_minisign_pubkey *keys, size_t count,
                           const void *msg, size_t len, const char *sig_text, size_t sig_len)
{
	bk_minisign_sig *sig = NULL;
	const bk_minisign_pubkey *pk;
	int rc;
	if (out_trusted)
		*out_trusted = NULL;
	rc = bk_minisign_sig_parse(&sig, sig_text, sig_len);
	if (rc)
		goto done;
	pk = bk_minisign_find_key(sig, keys, count);
	if (pk == NULL) {
		rc = bk_error_last()->code;
		goto done;
	}
	rc = bk_minisign_verify_buf(sig, pk, msg, len);
	if (rc)
		goto done;
	if (out_trusted) {
		*out_trusted = bk__strdup(sig->trusted);
		if (*out_trusted == NULL)
			rc = BK_ENOMEM;
	}
done:
	bk_minisign_sig_free(sig);
	return rc;
}
