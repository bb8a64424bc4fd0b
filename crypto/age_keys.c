/* age identities and recipients: X25519 and scrypt stanzas, Bech32 key
 * text, identity files. */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "crypto/age.h"
#include "crypto/bech32.h"
#include "crypto/kdf.h"

#define X25519_INFO       "age-encryption.org/v1/X25519"
#define SCRYPT_LABEL      "age-encryption.org/v1/scrypt"
#define SCRYPT_SALT_LEN   16
#define WRAPPED_LEN       (BK_AGE_FILE_KEY_LEN + BK_AGE_TAG_LEN)
#define IDENTITY_FILE_MAX (1024 * 1024)

struct bk_age_identity {
	bk_secret *secret; /* 32-byte X25519 scalar */
	uint8_t public_key[BK_AGE_X25519_LEN];
};

typedef struct id_entry {
	bk_age_identity *x25519; /* or NULL for a passphrase */
	bk_secret *passphrase;
} id_entry;

struct bk_age_identities {
	id_entry *v;
	size_t count;
	int max_log2_n;
};

/* --- Recipients ------------------------------------------------------------- */

int bk_age_recipient_parse(bk_age_recipient *out, const char *text)
{
	char hrp[8];
	uint8_t data[40];
	size_t n = 0;
	memset(out, 0, sizeof(*out));
	if (text == NULL)
		return bk__error_set(BK_EINVALID, NULL, "age recipient: none given");
	int rc = bk_bech32_decode(hrp, sizeof(hrp), data, sizeof(data), &n, text, strlen(text));
	if (rc || strcmp(hrp, "age") != 0 || n != BK_AGE_X25519_LEN)
		return bk__error_set(BK_EFORMAT, "recipient-invalid",
		                     "age recipient: not an X25519 recipient (age1...)");
	memcpy(out->public_key, data, BK_AGE_X25519_LEN);
	return 0;
}

void bk_age_recipient_format(char out[BK_AGE_RECIPIENT_STR_SIZE], const bk_age_recipient *r)
{
	bk_bech32_encode(out, BK_AGE_RECIPIENT_STR_SIZE, "age", r->public_key, BK_AGE_X25519_LEN);
}

/* --- Identities --------------------------------------------------------------- */

static int identity_from_scalar(bk_age_identity **out, const uint8_t scalar[32])
{
	int rc = 0;
	bk_age_identity *id = bk__calloc(1, sizeof(*id));
	if (id == NULL)
		return BK_ENOMEM;
	rc = bk_secret_from(&id->secret, scalar, 32);
	if (rc)
		goto done;
	crypto_scalarmult_base(id->public_key, bk_secret_data(id->secret));
	*out = id;
	id = NULL;
done:
	bk_age_identity_free(id);
	return rc;
}

int bk_age_identity_generate(bk_age_identity **out)
{
	uint8_t k[32];
	*out = NULL;
	randombytes_buf(k, sizeof(k));
	int rc = identity_from_scalar(out, k);
	sodium_memzero(k, sizeof(k));
	return rc;
}

int bk_age_identity_parse(bk_age_identity **out, const char *text, size_t len)
{
	char hrp[24];
	uint8_t data[40];
	size_t n = 0;
	int rc;
	*out = NULL;
	rc = bk_bech32_decode(hrp, sizeof(hrp), data, sizeof(data), &n, text, len);
	if (rc || strcmp(hrp, "AGE-SECRET-KEY-") != 0 || n != 32) {
		rc = bk__error_set(BK_EFORMAT, "identity-invalid",
		                   "age identity: not an X25519 identity (AGE-SECRET-KEY-1...)");
		goto done;
	}
	rc = identity_from_scalar(out, data);
done:
	sodium_memzero(data, sizeof(data));
	return rc;
}

int bk_age_identity_format(bk_secret **out, const bk_age_identity *id)
{
	*out = NULL;
	if (id == NULL)
		return bk__error_set(BK_EINVALID, NULL, "age identity: none given");
	int rc = bk_secret_new(out, BK_AGE_IDENTITY_STR_SIZE);
	if (rc)
		return rc;
	bk_bech32_encode((char *)bk_secret_data(*out), BK_AGE_IDENTITY_STR_SIZE, "AGE-SECRET-KEY-",
	                 bk_secret_data(id->secret), 32);
	return 0;
}

int bk_age_identity_file_format(bk_secret **out, const bk_age_identity *id, int64_t created)
{
	char when[21], recip[BK_AGE_RECIPIENT_STR_SIZE];
	bk_secret *key = NULL;
	bk_age_recipient r;
	*out = NULL;
	int rc = bk_age_identity_format(&key, id);
	if (rc)
		return rc;
	bk_time_rfc3339(when, created);
	bk_age_identity_recipient(&r, id);
	bk_age_recipient_format(recip, &r);
	/* "# created: " 11 + 20 + 1, "# public key: " 14 + 62 + 1, key 74 + 1. */
	size_t cap = 32 + 77 + 75 + 1;
	rc = bk_secret_new(out, cap);
	if (rc == 0) {
		char *p = (char *)bk_secret_data(*out);
		int n = snprintf(p, cap, "# created: %s\n# public key: %s\n%s\n", when, recip,
		                 (const char *)bk_secret_data(key));
		if (n < 0 || (size_t)n >= cap) {
			bk_secret_free(*out);
			*out = NULL;
			rc = bk__error_set(BK_ERROR, NULL, "age identity: file text too long");
		}
	}
	bk_secret_free(key);
	return rc;
}

void bk_age_identity_recipient(bk_age_recipient *out, const bk_age_identity *id)
{
	memcpy(out->public_key, id->public_key, BK_AGE_X25519_LEN);
}

int bk_age_identity_dup(bk_age_identity **out, const bk_age_identity *id)
{
	*out = NULL;
	if (id == NULL)
		return bk__error_set(BK_EINVALID, NULL, "age identity: none given");
	return identity_from_scalar(out, bk_secret_data(id->secret));
}

void bk_age_identity_free(bk_age_identity *id)
{
	if (id == NULL)
		return;
	bk_secret_free(id->secret);
	bk__free(id);
}

/* --- Identity sets ------------------------------------------------------------ */

int bk_age_identities_new(bk_age_identities **out)
{
	*out = bk__calloc(1, sizeof(**out));
	if (*out == NULL)
		return BK_ENOMEM;
	(*out)->max_log2_n = BK_AGE_SCRYPT_MAX_LOG2_N_DEFAULT;
	return 0;
}

static int push_entry(bk_age_identities *set, id_entry e)
{
	size_t bytes;
	if (!bk_size_mul(&bytes, set->count + 1, sizeof(*set->v)))
		return bk__error_oom();
	id_entry *n = bk__realloc(set->v, bytes);
	if (n == NULL)
		return BK_ENOMEM;
	set->v = n;
	set->v[set->count++] = e;
	return 0;
}

int bk_age_identities_add(bk_age_identities *set, const bk_age_identity *id)
{
	id_entry e = {NULL, NULL};
	if (set == NULL || id == NULL)
		return bk__error_set(BK_EINVALID, NULL, "age identities: nothing to add");
	int rc = bk_age_identity_dup(&e.x25519, id);
	if (rc == 0)
		rc = push_entry(set, e);
	if (rc)
		bk_age_identity_free(e.x25519);
	return rc;
}

int bk_age_identities_add_passphrase(bk_age_identities *set, const void *pass, size_t len)
{
	id_entry e = {NULL, NULL};
	if (set == NULL || (pass == NULL && len))
		return bk__error_set(BK_EINVALID, NULL, "age identities: nothing to add");
	int rc = bk_secret_from(&e.passphrase, pass, len);
	if (rc == 0)
		rc = push_entry(set, e);
	if (rc)
		bk_secret_free(e.passphrase);
	return rc;
}

int bk_age_identities_set_max_work_factor(bk_age_identities *set, int log2_n)
{
	if (set == NULL || log2_n < 1 || log2_n > 30)
		return bk__error_set(BK_EINVALID, NULL, "age: scrypt work factor must be 1..30");
	set->max_log2_n = log2_n;
	return 0;
}

size_t bk_age_identities_count(const bk_age_identities *set)
{
	return set ? set->count : 0;
}

int bk_age_identities_get(const bk_age_identities *set, size_t i, const bk_age_identity **out)
{
	*out = NULL;
	if (set == NULL || i >= set->count || set->v[i].x25519 == NULL)
		return bk__error_set(BK_ENOTFOUND, NULL,
		                     "age identities: no X25519 identity at %zu", i);
	*out = set->v[i].x25519;
	return 0;
}

void bk_age_identities_free(bk_age_identities *set)
{
	if (set == NULL)
		return;
	for (size_t i = 0; i < set->count; i++) {
		bk_age_identity_free(set->v[i].x25519);
		bk_secret_free(set->v[i].passphrase);
	}
	bk__free(set->v);
	bk__free(set);
}

/* --- Stanzas ------------------------------------------------------------------- */

static int stanza_bad(const char *why)
{
	return bk__error_set(BK_EFORMAT, "header-malformed", "age header: %s", why);
}

enum { UNWRAP_OK = 0, UNWRAP_NO = 1 };

static const uint8_t zero_nonce[12];

/* Opens a wrapped file key: UNWRAP_OK, UNWRAP_NO (wrong key) or an error
 * when the body has the wrong size. */
static int open_body(uint8_t file_key[BK_AGE_FILE_KEY_LEN], const uint8_t key[32],
                     const bk_age__stanza *st, const char *what)
{
	if (st->body_len != WRAPPED_LEN)
		return bk__error_set(BK_EFORMAT, "header-malformed",
		                     "age header: %s stanza body is %zu bytes, not %d", what,
		                     st->body_len, WRAPPED_LEN);
	unsigned long long n = 0;
	if (crypto_aead_chacha20poly1305_ietf_decrypt(file_key, &n, NULL, st->body, st->body_len,
	                                              NULL, 0, zero_nonce, key) != 0)
		return UNWRAP_NO;
	return UNWRAP_OK;
}

static int unwrap_x25519(uint8_t file_key[BK_AGE_FILE_KEY_LEN], const bk_age_identity *id,
                         const bk_age__stanza *st)
{
	uint8_t share[BK_AGE_X25519_LEN + 2], shared[32], salt[64], key[32];
	int rc;
	if (strcmp(st->args[0], "X25519") != 0)
		return UNWRAP_NO;
	if (st->argc != 2)
		return stanza_bad("X25519 stanza must have exactly one argument");
	size_t alen = strlen(st->args[1]);
	if (alen != 43 || bk_age__b64_decode(share, st->args[1], alen) != BK_AGE_X25519_LEN)
		return stanza_bad("X25519 share is not 32 bytes of canonical base64");
	if (st->body_len != WRAPPED_LEN)
		return stanza_bad("X25519 stanza body is not a wrapped 16-byte file key");
	if (crypto_scalarmult(shared, bk_secret_data(id->secret), share) != 0) {
		rc = stanza_bad("X25519 share is a low-order point (all-zero shared secret)");
		goto done;
	}
	memcpy(salt, share, 32);
	memcpy(salt + 32, id->public_key, 32);
	rc = bk_hkdf_sha256(key, sizeof(key), shared, sizeof(shared), salt, sizeof(salt),
	                    (const uint8_t *)X25519_INFO, strlen(X25519_INFO));
	if (rc == 0)
		rc = open_body(file_key, key, st, "X25519");
done:
	sodium_memzero(shared, sizeof(shared));
	sodium_memzero(key, sizeof(key));
	return rc;
}

static int is_decimal(const char *s)
{
	if (s[0] < '1' || s[0] > '9')
		return 0;
	for (size_t i = 1; s[i]; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

static int scrypt_key(uint8_t key[32], const bk_secret *pass, const uint8_t salt[16], int log2_n)
{
	uint8_t full[sizeof(SCRYPT_LABEL) - 1 + SCRYPT_SALT_LEN];
	memcpy(full, SCRYPT_LABEL, sizeof(SCRYPT_LABEL) - 1);
	memcpy(full + sizeof(SCRYPT_LABEL) - 1, salt, SCRYPT_SALT_LEN);
	if (crypto_pwhash_scryptsalsa208sha256_ll(bk_secret_data((bk_secret *)pass),
	                                          bk_secret_len(pass), full, sizeof(full),
	                                          (uint64_t)1 << log2_n, 8, 1, key, 32) != 0)
		return bk__error_set(BK_ENOMEM, "scrypt-failed",
		                     "age: scrypt with work factor 2^%d failed (out of memory?)",
		                     log2_n);
	return 0;
}

static int unwrap_scrypt(uint8_t file_key[BK_AGE_FILE_KEY_LEN], const bk_secret *pass,
                         int max_log2_n, const bk_age__stanza *st)
{
	uint8_t salt[SCRYPT_SALT_LEN + 2], key[32];
	if (strcmp(st->args[0], "scrypt") != 0)
		return UNWRAP_NO;
	if (st->argc != 3)
		return stanza_bad("scrypt stanza must have a salt and a work factor");
	size_t slen = strlen(st->args[1]);
	if (slen != 22 || bk_age__b64_decode(salt, st->args[1], slen) != SCRYPT_SALT_LEN)
		return stanza_bad("scrypt salt is not 16 bytes of canonical base64");
	if (!is_decimal(st->args[2]) || strlen(st->args[2]) > 2)
		return stanza_bad("scrypt work factor is not a decimal number");
	int log2_n = 0;
	for (const char *p = st->args[2]; *p; p++)
		log2_n = log2_n * 10 + (*p - '0');
	if (log2_n > max_log2_n)
		return bk__error_set(BK_EFORMAT, "header-malformed",
		                     "age header: scrypt work factor 2^%d over the limit 2^%d",
		                     log2_n, max_log2_n);
	if (st->body_len != WRAPPED_LEN)
		return stanza_bad("scrypt stanza body is not a wrapped 16-byte file key");
	int rc = scrypt_key(key, pass, salt, log2_n);
	if (rc == 0)
		rc = open_body(file_key, key, st, "scrypt");
	sodium_memzero(key, sizeof(key));
	return rc;
}

int bk_age__unwrap(uint8_t file_key[BK_AGE_FILE_KEY_LEN], const bk_age_identities *ids,
                   const bk_age__stanza *st, size_t count)
{
	if (ids == NULL)
		return bk__error_set(BK_EINVALID, NULL, "age: no identities given");
	for (size_t i = 0; i < ids->count; i++) {
		for (size_t j = 0; j < count; j++) {
			int rc = ids->v[i].x25519
			             ? unwrap_x25519(file_key, ids->v[i].x25519, &st[j])
			             : unwrap_scrypt(file_key, ids->v[i].passphrase,
			                             ids->max_log2_n, &st[j]);
			if (rc == UNWRAP_OK)
				return 0;
			if (rc < 0) {
				sodium_memzero(file_key, BK_AGE_FILE_KEY_LEN);
				return rc;
			}
		}
	}
	sodium_memzero(file_key, BK_AGE_FILE_KEY_LEN);
	return bk__error_set(BK_EAUTH, "no-identity-matched",
	                     "age: no identity matches any of the file's %zu recipient stanzas",
	                     count);
}

static int seal_body(uint8_t body[WRAPPED_LEN], const uint8_t key[32],
                     const uint8_t file_key[BK_AGE_FILE_KEY_LEN])
{
	unsigned long long n = 0;
	crypto_aead_chacha20poly1305_ietf_encrypt(body, &n, file_key, BK_AGE_FILE_KEY_LEN, NULL, 0,
	                                          NULL, zero_nonce, key);
	return 0;
}

static int wrap_x25519(bk_buf *hdr, const uint8_t file_key[BK_AGE_FILE_KEY_LEN],
                       const bk_age_recipient *r)
{
	uint8_t eph[32], share[32], shared[32], salt[64], key[32], body[WRAPPED_LEN];
	char args[8 + 44];
	int rc = 0;
	randombytes_buf(eph, sizeof(eph));
	crypto_scalarmult_base(share, eph);
	if (crypto_scalarmult(shared, eph, r->public_key) != 0) {
		rc = bk__error_set(BK_EINVALID, "recipient-invalid",
		                   "age: recipient key is a low-order point");
		goto done;
	}
	memcpy(salt, share, 32);
	memcpy(salt + 32, r->public_key, 32);
	rc = bk_hkdf_sha256(key, sizeof(key), shared, sizeof(shared), salt, sizeof(salt),
	                    (const uint8_t *)X25519_INFO, strlen(X25519_INFO));
	if (rc)
		goto done;
	seal_body(body, key, file_key);
	memcpy(args, "X25519 ", 7);
	bk_age__b64_encode(args + 7, share, sizeof(share));
	rc = bk_age__put_stanza(hdr, args, body, sizeof(body));
done:
	sodium_memzero(eph, sizeof(eph));
	sodium_memzero(shared, sizeof(shared));
	sodium_memzero(key, sizeof(key));
	return rc;
}

static int wrap_scrypt(bk_buf *hdr, const uint8_t file_key[BK_AGE_FILE_KEY_LEN], const void *pass,
                       size_t pass_len, int log2_n)
{
	uint8_t salt[SCRYPT_SALT_LEN], key[32], body[WRAPPED_LEN];
	char args[64], salt64[24];
	bk_secret *p = NULL;
	int rc = bk_secret_from(&p, pass, pass_len);
	if (rc)
		goto done;
	randombytes_buf(salt, sizeof(salt));
	rc = scrypt_key(key, p, salt, log2_n);
	if (rc)
		goto done;
	seal_body(body, key, file_key);
	bk_age__b64_encode(salt64, salt, sizeof(salt));
	snprintf(args, sizeof(args), "scrypt %s %d", salt64, log2_n);
	rc = bk_age__put_stanza(hdr, args, body, sizeof(body));
done:
	sodium_memzero(key, sizeof(key));
	bk_secret_free(p);
	return rc;
}

int bk_age__wrap(bk_buf *hdr, const uint8_t file_key[BK_AGE_FILE_KEY_LEN],
                 const bk_age_encrypt_opts *to)
{
	if (to->passphrase != NULL) {
		int log2_n = to->scrypt_log2_n ? to->scrypt_log2_n : BK_AGE_SCRYPT_DEFAULT_LOG2_N;
		if (to->recipient_count)
			return bk__error_set(
			    BK_EINVALID, NULL,
			    "age: a passphrase cannot be combined with recipients");
		if (log2_n < 1 || log2_n > 30)
			return bk__error_set(BK_EINVALID, NULL,
			                     "age: scrypt work factor must be 1..30");
		return wrap_scrypt(hdr, file_key, to->passphrase, to->passphrase_len, log2_n);
	}
	if (to->recipient_count == 0 || to->recipients == NULL)
		return bk__error_set(BK_EINVALID, NULL, "age: no recipients given");
	for (size_t i = 0; i < to->recipient_count; i++) {
		int rc = wrap_x25519(hdr, file_key, &to->recipients[i]);
		if (rc)
			return rc;
	}
	return 0;
}

/* --- Identity files ----------------------------------------------------------- */

int bk_age_identities_parse_file(bk_age_identities *set, const uint8_t *text, size_t len,
                                 const char *what)
{
	size_t pos = 0, line_no = 0, added = 0;
	int rc = 0;
	if (set == NULL || (text == NULL && len))
		return bk__error_set(BK_EINVALID, NULL, "age identities: nothing to parse");
	size_t start = set->count;
	if (what == NULL)
		what = "identity file";
	while (pos < len) {
		const uint8_t *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - text) : len;
		size_t n = end - pos;
		line_no++;
		if (n && text[pos + n - 1] == '\r')
			n--;
		if (n > 0 && text[pos] != '#') {
			bk_age_identity *id = NULL;
			rc = bk_age_identity_parse(&id, (const char *)text + pos, n);
			if (rc == BK_ENOMEM)
				goto done;
			if (rc) {
				rc = bk__error_set(BK_EFORMAT, "identity-invalid",
				                   "%s: line %zu is not an age identity", what,
				                   line_no);
				goto done;
			}
			id_entry e = {id, NULL};
			rc = push_entry(set, e);
			if (rc) {
				bk_age_identity_free(id);
				goto done;
			}
			added++;
		}
		pos = end + 1;
	}
	if (added == 0)
		rc = bk__error_set(BK_EFORMAT, "identity-invalid", "%s: no identities found", what);
done:
	if (rc) {
		/* All or nothing: drop what this file added. */
		while (set->count > start)
			bk_age_identity_free(set->v[--set->count].x25519);
	}
	return rc;
}

static int read_secret_file(bk_buf *b, const char *path)
{
	bk_stream *f = NULL;
	int rc = bk_stream_file_open(&f, path);
	if (rc)
		return rc;
	for (;;) {
		size_t n = 0;
		rc = bk_buf_reserve(b, 4096);
		if (rc)
			break;
		rc = bk_stream_read(f, b->data + b->len, b->cap - b->len, &n, BK_DEADLINE_NONE);
		if (rc || n == 0)
			break;
		b->len += n;
		if (b->len > IDENTITY_FILE_MAX) {
			rc = bk__error_set(BK_ENOSPACE, "too-large",
			                   "%s: identity file larger than %d bytes", path,
			                   IDENTITY_FILE_MAX);
			break;
		}
	}
	bk_stream_free(f);
	return rc;
}

static int looks_encrypted(const uint8_t *p, size_t n)
{
	static const char v1[] = "age-encryption.org/v1\n";
	static const char armor[] = "-----BEGIN AGE ENCRYPTED FILE-----";
	size_t i = 0;
	if (n >= sizeof(v1) - 1 && memcmp(p, v1, sizeof(v1) - 1) == 0)
		return 1;
	while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
		i++;
	return n - i >= sizeof(armor) - 1 && memcmp(p + i, armor, sizeof(armor) - 1) == 0;
}

int bk_age_identities_load(bk_age_identities *set, const char *path, unsigned flags,
                           bk_age_passphrase_cb cb, void *payload)
{
	bk_buf raw = BK_BUF_INIT;
	bk_age_identities *pass_set = NULL;
	bk_secret *pass = NULL;
	uint8_t *plain = NULL;
	size_t plain_len = 0;
	int rc = 0;
	raw.secret = 1;
	if (set == NULL || path == NULL)
		return bk__error_set(BK_EINVALID, NULL, "age identities: no file given");
	if (!(flags & BK_AGE_LOAD_ALLOW_SHARED)) {
		rc = bk_file_check_private(path);
		if (rc)
			goto done;
	}
	rc = read_secret_file(&raw, path);
	if (rc)
		goto done;
	if (!looks_encrypted(raw.data, raw.len)) {
		rc = bk_age_identities_parse_file(set, raw.data, raw.len, path);
		goto done;
	}
	if (cb == NULL) {
		rc = bk__error_set(BK_EAUTH, "passphrase-required",
		                   "%s: identity file is passphrase-protected", path);
		goto done;
	}
	rc = cb(&pass, "passphrase for the identity file", payload);
	if (rc)
		goto done;
	rc = bk_age_identities_new(&pass_set);
	if (rc == 0)
		rc = bk_age_identities_add_passphrase(pass_set, bk_secret_data(pass),
		                                      bk_secret_len(pass));
	if (rc == 0)
		rc = bk_age_decrypt_mem(&plain, &plain_len, raw.data, raw.len, pass_set, NULL);
	if (rc) {
		bk__error_prefix(rc, "%s", path);
		goto done;
	}
	rc = bk_age_identities_parse_file(set, plain, plain_len, path);
done:
	if (plain) {
		sodium_memzero(plain, plain_len);
		bk__free(plain);
	}
	bk_secret_free(pass);
	bk_age_identities_free(pass_set);
	bk_buf_free(&raw);
	return rc;
}
