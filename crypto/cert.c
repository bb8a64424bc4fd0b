/* aibo-cert/1 certificates and identity bundles, and aibo-keys/1 key files
 * (see cert.h and aibo-cert(5)). */
#include <string.h>

#include <sodium.h>

#include "crypto/cert.h"
#include "libbackup/util/util.h"

#define MAGIC         "aibo-cert/1"
#define MAGIC_LEN     12 /* with its NUL */
#define ARMOR_BEGIN   "-----BEGIN AIBO CERTIFICATE-----"
#define ARMOR_END     "-----END AIBO CERTIFICATE-----"
#define ARMOR_LINE    64
#define TAG_SIGNATURE 0xff

/* Field indices (bits of the presence mask) and their wire tags. */
enum {
	F_ROLE,
	F_SERIAL,
	F_MODEL,
	F_HWREV,
	F_TERMINAL,
	F_DEVICE,
	F_OWNER,
	F_OLD_SERIAL,
	F_NOISE,
	F_AGE,
	F_ED25519,
	F_ISSUED,
	F_NOT_BEFORE,
	F_NOT_AFTER,
	F_ISSUER,
	F_COUNT
};

enum { K_ROLE, K_STR, K_KEY, K_TIME, K_KEYID };

typedef struct field_def {
	uint8_t tag;
	uint8_t kind;
	uint16_t min;
	uint16_t max;
	const char *name;
} field_def;

static const field_def fields[F_COUNT] = {
    [F_ROLE] = {0x01, K_ROLE, 1, 1, "role"},
    [F_SERIAL] = {0x02, K_STR, 1, BK_CERT_NAME_MAX, "serial"},
    [F_MODEL] = {0x03, K_STR, 1, BK_CERT_NAME_MAX, "model"},
    [F_HWREV] = {0x04, K_STR, 1, BK_CERT_NAME_MAX, "hardware revision"},
    [F_TERMINAL] = {0x05, K_STR, 1, BK_CERT_NAME_MAX, "terminal id"},
    [F_DEVICE] = {0x06, K_STR, 1, BK_CERT_ID_MAX, "device id"},
    [F_OWNER] = {0x07, K_STR, 1, BK_CERT_ID_MAX, "owner binding"},
    [F_OLD_SERIAL] = {0x08, K_STR, 1, BK_CERT_NAME_MAX, "old serial"},
    [F_NOISE] = {0x10, K_KEY, 32, 32, "noise key"},
    [F_AGE] = {0x11, K_KEY, 32, 32, "age key"},
    [F_ED25519] = {0x12, K_KEY, 32, 32, "ed25519 key"},
    [F_ISSUED] = {0x20, K_TIME, 8, 8, "issued"},
    [F_NOT_BEFORE] = {0x21, K_TIME, 8, 8, "not-before"},
    [F_NOT_AFTER] = {0x22, K_TIME, 8, 8, "not-after"},
    [F_ISSUER] = {0x30, K_KEYID, 8, 8, "issuer key id"},
};

#define B(f)       (1u << (f))
#define COMMON_REQ (B(F_ROLE) | B(F_NOT_BEFORE) | B(F_NOT_AFTER) | B(F_ISSUER))

typedef struct role_rule {
	const char *name;
	unsigned required;
	unsigned optional;
} role_rule;

static const role_rule rules[] = {
    [BK_CERT_ROLE_UNIT] = {"unit",
                           COMMON_REQ | B(F_SERIAL) | B(F_MODEL) | B(F_HWREV) | B(F_NOISE) |
                               B(F_AGE) | B(F_ED25519),
                           0},
    [BK_CERT_ROLE_TERMINAL] = {"terminal", COMMON_REQ | B(F_TERMINAL) | B(F_NOISE) | B(F_ED25519),
                               B(F_AGE)},
    [BK_CERT_ROLE_IDENTITY] = {"identity",
                               COMMON_REQ | B(F_SERIAL) | B(F_DEVICE) | B(F_OWNER) | B(F_ISSUED),
                               B(F_MODEL) | B(F_HWREV) | B(F_OLD_SERIAL) | B(F_NOISE) | B(F_AGE) |
                                   B(F_ED25519)},
};

struct bk_cert {
	bk_cert_role role;
	unsigned present;
	char str[F_COUNT][BK_CERT_ID_MAX + 1]; /* used by the string fields */
	uint8_t key[F_COUNT][BK_CERT_KEY_LEN]; /* used by the key fields */
	int64_t time[F_COUNT];                 /* used by the time fields */
	uint8_t issuer[BK_MINISIGN_KEYID_LEN];
	uint8_t sig[BK_CERT_SIG_LEN];
	uint8_t *bytes;
	size_t len;
	size_t signed_len;
};

static int malformed(const char *fmt, const char *arg)
{
	return bk__error_set(BK_EFORMAT, "malformed-certificate", "certificate: %s%s", fmt,
	                     arg ? arg : "");
}

static bool name_ok(const uint8_t *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7e)
			return false;
	return true;
}

/* --- Binary form ------------------------------------------------------------ */

static int parse_binary(bk_cert **out, const uint8_t *data, size_t len)
{
	bk_cert *c = NULL;
	bk_cur cur;
	const uint8_t *magic;
	int rc = 0;
	int last = -1;
	bool signed_ = false;

	*out = NULL;
	if (len > BK_CERT_MAX) {
		rc = malformed("larger than the size limit", NULL);
		goto done;
	}
	bk_cur_init(&cur, data, len);
	if (bk_cur_bytes(&cur, &magic, MAGIC_LEN) != 0 || memcmp(magic, MAGIC, MAGIC_LEN) != 0) {
		rc = malformed("not an aibo-cert/1 document", NULL);
		goto done;
	}
	c = bk__calloc(1, sizeof(*c));
	if (c == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	while (bk_cur_left(&cur) > 0) {
		uint8_t tag;
		const uint8_t *val;
		size_t vlen;
		size_t field_start = cur.pos;
		if (bk_cur_u8(&cur, &tag) != 0 ||
		    bk_cur_str16be(&cur, &val, &vlen, BK_CERT_MAX) != 0) {
			rc = malformed("truncated field", NULL);
			goto done;
		}
		if (tag == TAG_SIGNATURE) {
			if (vlen != BK_CERT_SIG_LEN) {
				rc = malformed("signature of the wrong length", NULL);
				goto done;
			}
			if (bk_cur_left(&cur) != 0) {
				rc = malformed("trailing bytes after the signature", NULL);
				goto done;
			}
			memcpy(c->sig, val, BK_CERT_SIG_LEN);
			c->signed_len = field_start;
			signed_ = true;
			break;
		}
		int f;
		for (f = 0; f < F_COUNT; f++)
			if (fields[f].tag == tag)
				break;
		if (f == F_COUNT) {
			rc = malformed("unknown field", NULL);
			goto done;
		}
		if (f <= last) {
			rc = malformed("duplicate or out-of-order field: ", fields[f].name);
			goto done;
		}
		last = f;
		if (vlen < fields[f].min || vlen > fields[f].max) {
			rc = malformed("field of the wrong length: ", fields[f].name);
			goto done;
		}
		switch (fields[f].kind) {
		case K_ROLE:
			if (val[0] < BK_CERT_ROLE_UNIT || val[0] > BK_CERT_ROLE_IDENTITY) {
				rc = malformed("unknown role", NULL);
				goto done;
			}
			c->role = (bk_cert_role)val[0];
			break;
		case K_STR:
			if (!name_ok(val, vlen)) {
				rc = malformed("not printable ASCII without spaces: ",
				               fields[f].name);
				goto done;
			}
			memcpy(c->str[f], val, vlen);
			c->str[f][vlen] = '\0';
			break;
		case K_KEY:
			memcpy(c->key[f], val, BK_CERT_KEY_LEN);
			break;
		case K_TIME: {
			uint64_t t = bk_get_u64be(val);
			if (t > (uint64_t)INT64_MAX) {
				rc = malformed("time out of range: ", fields[f].name);
				goto done;
			}
			c->time[f] = (int64_t)t;
			break;
		}
		case K_KEYID:
			memcpy(c->issuer, val, BK_MINISIGN_KEYID_LEN);
			break;
		}
		c->present |= B(f);
	}
	if (!signed_) {
		rc = malformed("no signature", NULL);
		goto done;
	}
	if (!(c->present & B(F_ROLE))) {
		rc = malformed("no role", NULL);
		goto done;
	}
	const role_rule *r = &rules[c->role];
	if ((c->present & r->required) != r->required) {
		for (int f = 0; f < F_COUNT; f++)
			if ((r->required & B(f)) && !(c->present & B(f))) {
				rc = malformed("missing field: ", fields[f].name);
				goto done;
			}
	}
	if (c->present & ~(r->required | r->optional)) {
		for (int f = 0; f < F_COUNT; f++)
			if ((c->present & ~(r->required | r->optional)) & B(f)) {
				rc = malformed("field not allowed for this role: ", fields[f].name);
				goto done;
			}
	}
	if (c->time[F_NOT_BEFORE] > c->time[F_NOT_AFTER]) {
		rc = malformed("not-before is after not-after", NULL);
		goto done;
	}
	c->bytes = bk__malloc(len);
	if (c->bytes == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	memcpy(c->bytes, data, len);
	c->len = len;
	*out = c;
	c = NULL;
done:
	bk_cert_free(c);
	return rc;
}

/* --- Armor ------------------------------------------------------------------- */

static int next_line(const uint8_t *text, size_t len, size_t *pos, const uint8_t **line,
                     size_t *line_len, bool *had_nl)
{
	if (*pos >= len)
		return -1;
	const uint8_t *start = text + *pos;
	const uint8_t *nl = memchr(start, '\n', len - *pos);
	size_t n = nl ? (size_t)(nl - start) : len - *pos;
	*pos += n + (nl ? 1 : 0);
	*line = start;
	*line_len = n;
	*had_nl = nl != NULL;
	return 0;
}

static bool line_is(const uint8_t *l, size_t n, const char *s)
{
	return n == strlen(s) && memcmp(l, s, n) == 0;
}

static int parse_armor(bk_cert **out, const uint8_t *data, size_t len)
{
	char b64[(BK_CERT_MAX / 3 + 1) * 4 + 1];
	uint8_t bin[BK_CERT_MAX];
	size_t pos = 0, blen = 0, binlen = 0, n;
	const uint8_t *l;
	bool nl, last_short = false, ended = false;

	*out = NULL;
	if (next_line(data, len, &pos, &l, &n, &nl) != 0 || !line_is(l, n, ARMOR_BEGIN) || !nl)
		return malformed("armor does not begin with " ARMOR_BEGIN, NULL);
	while (next_line(data, len, &pos, &l, &n, &nl) == 0) {
		if (line_is(l, n, ARMOR_END)) {
			if (!nl)
				return malformed("armor end line has no newline", NULL);
			ended = true;
			break;
		}
		if (!nl || n == 0 || n > ARMOR_LINE || last_short)
			return malformed("armor lines are not 64-column base64", NULL);
		if (n < ARMOR_LINE)
			last_short = true;
		if (blen + n >= sizeof(b64))
			return malformed("larger than the size limit", NULL);
		memcpy(b64 + blen, l, n);
		blen += n;
	}
	if (!ended)
		return malformed("armor has no end line", NULL);
	if (pos != len)
		return malformed("text after the armor", NULL);
	if (bk_minisign__b64_decode(bin, sizeof(bin), &binlen, b64, blen) != 0)
		return malformed("armor is not valid base64", NULL);
	return parse_binary(out, bin, binlen);
}

int bk_cert_parse(bk_cert **out, const uint8_t *data, size_t len)
{
	if (out == NULL || (data == NULL && len))
		return bk__error_set(BK_EINVALID, NULL, "certificate: no input");
	*out = NULL;
	if (data == NULL)
		return malformed("empty", NULL);
	if (len >= strlen(ARMOR_BEGIN) && memcmp(data, ARMOR_BEGIN, strlen(ARMOR_BEGIN)) == 0)
		return parse_armor(out, data, len);
	return parse_binary(out, data, len);
}

int bk_cert_read(bk_cert **out, const char *path)
{
	uint8_t *data = NULL;
	size_t len = 0;
	int rc;
	if (out == NULL || path == NULL)
		return bk__error_set(BK_EINVALID, NULL, "certificate: no path");
	*out = NULL;
	rc = bk_file_read(path, 2 * BK_CERT_MAX, &data, &len);
	if (rc == 0)
		rc = bk_cert_parse(out, data, len);
	if (rc)
		bk__error_prefix(rc, "%s", path);
	bk__free(data);
	return rc;
}

void bk_cert_free(bk_cert *cert)
{
	if (cert == NULL)
		return;
	bk__free(cert->bytes);
	bk__free(cert);
}

int bk_cert_dup(bk_cert **out, const bk_cert *cert)
{
	if (out == NULL || cert == NULL)
		return bk__error_set(BK_EINVALID, NULL, "certificate: nothing to copy");
	return parse_binary(out, cert->bytes, cert->len);
}

const uint8_t *bk_cert_bytes(const bk_cert *cert, size_t *out_len)
{
	if (out_len)
		*out_len = cert->len;
	return cert->bytes;
}

int bk_cert_armor(char **out, size_t *out_len, const bk_cert *cert)
{
	bk_buf b = BK_BUF_INIT;
	char *b64 = NULL;
	size_t enc;
	int rc;
	if (out == NULL || cert == NULL)
		return bk__error_set(BK_EINVALID, NULL, "certificate: nothing to armor");
	*out = NULL;
	enc = sodium_base64_ENCODED_LEN(cert->len, sodium_base64_VARIANT_ORIGINAL);
	b64 = bk__malloc(enc);
	if (b64 == NULL)
		return BK_ENOMEM;
	sodium_bin2base64(b64, enc, cert->bytes, cert->len, sodium_base64_VARIANT_ORIGINAL);
	size_t blen = strlen(b64);
	rc = bk_buf_put_str(&b, ARMOR_BEGIN "\n");
	for (size_t i = 0; rc == 0 && i < blen; i += ARMOR_LINE) {
		size_t n = blen - i < ARMOR_LINE ? blen - i : ARMOR_LINE;
		rc = bk_buf_put(&b, b64 + i, n);
		if (rc == 0)
			rc = bk_buf_put_u8(&b, '\n');
	}
	if (rc == 0)
		rc = bk_buf_put_str(&b, ARMOR_END "\n");
	if (rc == 0)
		rc = bk_buf_cstr(&b);
	if (rc == 0)
		*out = (char *)bk_buf_steal(&b, out_len);
	bk_buf_free(&b);
	bk__free(b64);
	return rc;
}

int bk_cert_write(const char *path, const bk_cert *cert)
{
	char *text = NULL;
	size_t len = 0;
	int rc = bk_cert_armor(&text, &len, cert);
	if (rc == 0)
		rc = bk_file_write_atomic(path, text, len, 0644, 0);
	bk__free(text);
	return rc;
}

/* --- Issuing ------------------------------------------------------------------ */

static int put_field(bk_buf *b, int f, const void *val, size_t len)
{
	int rc = bk_buf_put_u8(b, fields[f].tag);
	if (rc == 0)
		rc = bk_buf_put_u16be(b, (uint16_t)len);
	if (rc == 0)
		rc = bk_buf_put(b, val, len);
	return rc;
}

static int put_str(bk_buf *b, int f, const char *s)
{
	if (s == NULL)
		return 0;
	size_t n = strlen(s);
	if (n < 1 || n > fields[f].max || !name_ok((const uint8_t *)s, n))
		return bk__error_set(BK_EINVALID, "bad-certificate-field",
		                     "certificate: %s must be 1 to %u printable characters "
		                     "without spaces",
		                     fields[f].name, (unsigned)fields[f].max);
	return put_field(b, f, s, n);
}

static int put_time(bk_buf *b, int f, int64_t t)
{
	uint8_t v[8];
	if (t < 0)
		return bk__error_set(BK_EINVALID, "bad-certificate-field",
		                     "certificate: %s is negative", fields[f].name);
	bk_put_u64be(v, (uint64_t)t);
	return put_field(b, f, v, sizeof(v));
}

int bk_cert_issue(bk_cert **out, const bk_cert_params *p, const bk_minisign_seckey *ca)
{
	bk_buf b = BK_BUF_INIT;
	bk_minisign_pubkey capk;
	uint8_t sig[BK_CERT_SIG_LEN];
	uint8_t role;
	int rc = 0;

	if (out == NULL || p == NULL || ca == NULL)
		return bk__error_set(BK_EINVALID, NULL, "certificate: nothing to issue");
	*out = NULL;
	if (p->role < BK_CERT_ROLE_UNIT || p->role > BK_CERT_ROLE_IDENTITY)
		return bk__error_set(BK_EINVALID, "bad-certificate-field",
		                     "certificate: unknown role %d", (int)p->role);
	role = (uint8_t)p->role;
	bk_minisign_seckey_pubkey(ca, &capk);
	rc = bk_buf_put(&b, MAGIC, MAGIC_LEN);
	if (rc == 0)
		rc = put_field(&b, F_ROLE, &role, 1);
	if (rc == 0)
		rc = put_str(&b, F_SERIAL, p->serial);
	if (rc == 0)
		rc = put_str(&b, F_MODEL, p->model);
	if (rc == 0)
		rc = put_str(&b, F_HWREV, p->hw_revision);
	if (rc == 0)
		rc = put_str(&b, F_TERMINAL, p->terminal_id);
	if (rc == 0)
		rc = put_str(&b, F_DEVICE, p->device_id);
	if (rc == 0)
		rc = put_str(&b, F_OWNER, p->owner_binding);
	if (rc == 0)
		rc = put_str(&b, F_OLD_SERIAL, p->old_serial);
	if (rc == 0 && p->noise_key)
		rc = put_field(&b, F_NOISE, p->noise_key, BK_CERT_KEY_LEN);
	if (rc == 0 && p->age_key)
		rc = put_field(&b, F_AGE, p->age_key, BK_CERT_KEY_LEN);
	if (rc == 0 && p->ed25519_key)
		rc = put_field(&b, F_ED25519, p->ed25519_key, BK_CERT_KEY_LEN);
	if (rc == 0 && p->role == BK_CERT_ROLE_IDENTITY)
		rc = put_time(&b, F_ISSUED, p->issued);
	if (rc == 0)
		rc = put_time(&b, F_NOT_BEFORE, p->not_before);
	if (rc == 0)
		rc = put_time(&b, F_NOT_AFTER, p->not_after);
	if (rc == 0)
		rc = put_field(&b, F_ISSUER, capk.key_id, BK_MINISIGN_KEYID_LEN);
	if (rc)
		goto done;
	crypto_sign_detached(sig, NULL, b.data, b.len, bk_minisign_seckey_ed25519(ca));
	rc = bk_buf_put_u8(&b, TAG_SIGNATURE);
	if (rc == 0)
		rc = bk_buf_put_u16be(&b, BK_CERT_SIG_LEN);
	if (rc == 0)
		rc = bk_buf_put(&b, sig, sizeof(sig));
	if (rc)
		goto done;
	/* The issued document must pass the strict parser (role rules, validity). */
	rc = parse_binary(out, b.data, b.len);
	if (rc == BK_EFORMAT) {
		char msg[256];
		bk_strlcpy(msg, bk_error_last()->message, sizeof(msg));
		rc = bk__error_set(BK_EINVALID, "bad-certificate-field", "cannot issue: %s", msg);
	}
done:
	bk_buf_free(&b);
	return rc;
}

/* --- Checks ------------------------------------------------------------------- */

static const char *subject_of(const bk_cert *c)
{
	if (c->role == BK_CERT_ROLE_TERMINAL)
		return c->str[F_TERMINAL];
	return c->str[F_SERIAL];
}

int bk_cert_verify(const bk_cert *c, const bk_minisign_pubkey *cas, size_t ncas, bk_cert_role role,
                   int64_t now)
{
	const bk_minisign_pubkey *ca = NULL;
	char hex[17];
	if (c == NULL || (cas == NULL && ncas))
		return bk__error_set(BK_EINVALID, NULL, "certificate: nothing to verify");
	if (c->role != role)
		return bk__error_set(
		    BK_EAUTH, "wrong-role", "certificate of %s: a %s certificate, not a %s one",
		    subject_of(c), bk_cert_role_name(c->role), bk_cert_role_name(role));
	for (size_t i = 0; i < ncas; i++)
		if (memcmp(cas[i].key_id, c->issuer, BK_MINISIGN_KEYID_LEN) == 0) {
			ca = &cas[i];
			break;
		}
	bk_minisign_key_id_hex(hex, c->issuer);
	if (ca == NULL)
		return bk__error_set(BK_EAUTH, "unknown-ca",
		                     "certificate of %s: issued by unknown CA key %s",
		                     subject_of(c), hex);
	if (crypto_sign_verify_detached(c->sig, c->bytes, c->signed_len, ca->pk) != 0)
		return bk__error_set(BK_EAUTH, "bad-signature",
		                     "certificate of %s: signature by CA key %s does not verify",
		                     subject_of(c), hex);
	if (now < c->time[F_NOT_BEFORE])
		return bk__error_set(BK_EAUTH, "not-yet-valid",
		                     "certificate of %s: not valid before %lld (now %lld)",
		                     subject_of(c), (long long)c->time[F_NOT_BEFORE],
		                     (long long)now);
	if (now > c->time[F_NOT_AFTER])
		return bk__error_set(BK_EAUTH, "expired",
		                     "certificate of %s: expired at %lld (now %lld)", subject_of(c),
		                     (long long)c->time[F_NOT_AFTER], (long long)now);
	return 0;
}

static int check_key(const bk_cert *c, int f, const uint8_t *key)
{
	if (c == NULL || key == NULL)
		return bk__error_set(BK_EINVALID, NULL, "certificate: no key to compare");
	if (!(c->present & B(f)) || sodium_memcmp(c->key[f], key, BK_CERT_KEY_LEN) != 0)
		return bk__error_set(BK_EAUTH, "key-mismatch",
		                     "certificate of %s: %s is not the peer's key", subject_of(c),
		                     fields[f].name);
	return 0;
}

int bk_cert_check_noise_key(const bk_cert *c, const uint8_t key[BK_CERT_KEY_LEN])
{
	return check_key(c, F_NOISE, key);
}

int bk_cert_check_ed25519_key(const bk_cert *c, const uint8_t key[BK_CERT_KEY_LEN])
{
	return check_key(c, F_ED25519, key);
}

int bk_cert_check_subject(const bk_cert *c, const char *id)
{
	if (c == NULL || id == NULL)
		return bk__error_set(BK_EINVALID, NULL, "certificate: no subject to compare");
	if (strcmp(subject_of(c), id) != 0)
		return bk__error_set(BK_EAUTH, "subject-mismatch",
		                     "certificate: issued to %s, expected %s", subject_of(c), id);
	return 0;
}

/* --- Accessors ------------------------------------------------------------------ */

bk_cert_role bk_cert_role_get(const bk_cert *c)
{
	return c->role;
}

const char *bk_cert_role_name(bk_cert_role role)
{
	if (role < BK_CERT_ROLE_UNIT || role > BK_CERT_ROLE_IDENTITY)
		return "unknown";
	return rules[role].name;
}

static const char *str_of(const bk_cert *c, int f)
{
	return (c->present & B(f)) ? c->str[f] : NULL;
}

static const uint8_t *key_of(const bk_cert *c, int f)
{
	return (c->present & B(f)) ? c->key[f] : NULL;
}

const char *bk_cert_serial(const bk_cert *c)
{
	return str_of(c, F_SERIAL);
}
const char *bk_cert_model(const bk_cert *c)
{
	return str_of(c, F_MODEL);
}
const char *bk_cert_hw_revision(const bk_cert *c)
{
	return str_of(c, F_HWREV);
}
const char *bk_cert_terminal_id(const bk_cert *c)
{
	return str_of(c, F_TERMINAL);
}
const char *bk_cert_device_id(const bk_cert *c)
{
	return str_of(c, F_DEVICE);
}
const char *bk_cert_owner_binding(const bk_cert *c)
{
	return str_of(c, F_OWNER);
}
const char *bk_cert_old_serial(const bk_cert *c)
{
	return str_of(c, F_OLD_SERIAL);
}
const uint8_t *bk_cert_noise_key(const bk_cert *c)
{
	return key_of(c, F_NOISE);
}
const uint8_t *bk_cert_age_key(const bk_cert *c)
{
	return key_of(c, F_AGE);
}
const uint8_t *bk_cert_ed25519_key(const bk_cert *c)
{
	return key_of(c, F_ED25519);
}
int64_t bk_cert_issued(const bk_cert *c)
{
	return c->time[F_ISSUED];
}
int64_t bk_cert_not_before(const bk_cert *c)
{
	return c->time[F_NOT_BEFORE];
}
int64_t bk_cert_not_after(const bk_cert *c)
{
	return c->time[F_NOT_AFTER];
}
const uint8_t *bk_cert_issuer_key_id(const bk_cert *c)
{
	return c->issuer;
}

void bk_cert_fingerprint(const bk_cert *c, uint8_t out[32])
{
	crypto_generichash(out, 32, c->bytes, c->len, NULL, 0);
}

/* --- Key files ------------------------------------------------------------------- */

#define KEYFILE_HEADER "aibo-keys/1"
#define KEYFILE_MAX    4096

struct bk_keyfile {
	bk_secret *noise_sk; /* 32 */
	bk_secret *ed_sk;    /* 64: seed || public key */
	bk_secret *age_sk;   /* 32, or NULL */
	uint8_t noise_pk[32];
	uint8_t ed_pk[32];
	uint8_t age_pk[32];
};

void bk_keyfile_free(bk_keyfile *k)
{
	if (k == NULL)
		return;
	bk_secret_free(k->noise_sk);
	bk_secret_free(k->ed_sk);
	bk_secret_free(k->age_sk);
	bk__free(k);
}

/* Fills in a key file from the secrets already in noise_sk, the seed in the
 * first half of ed_sk and age_sk. */
static void keyfile_derive(bk_keyfile *k)
{
	uint8_t seed[32];
	memcpy(seed, bk_secret_data(k->ed_sk), 32);
	crypto_sign_seed_keypair(k->ed_pk, bk_secret_data(k->ed_sk), seed);
	sodium_memzero(seed, sizeof(seed));
	crypto_scalarmult_base(k->noise_pk, bk_secret_data(k->noise_sk));
	if (k->age_sk)
		crypto_scalarmult_base(k->age_pk, bk_secret_data(k->age_sk));
}

static int keyfile_alloc(bk_keyfile **out, int with_age)
{
	int rc;
	bk_keyfile *k = bk__calloc(1, sizeof(*k));
	if (k == NULL)
		return BK_ENOMEM;
	rc = bk_secret_new(&k->noise_sk, 32);
	if (rc == 0)
		rc = bk_secret_new(&k->ed_sk, 64);
	if (rc == 0 && with_age)
		rc = bk_secret_new(&k->age_sk, 32);
	if (rc) {
		bk_keyfile_free(k);
		return rc;
	}
	*out = k;
	return 0;
}

int bk_keyfile_generate(bk_keyfile **out, int with_age)
{
	bk_keyfile *k = NULL;
	if (out == NULL)
		return bk__error_set(BK_EINVALID, NULL, "key file: no output");
	*out = NULL;
	int rc = keyfile_alloc(&k, with_age);
	if (rc)
		return rc;
	randombytes_buf(bk_secret_data(k->noise_sk), 32);
	randombytes_buf(bk_secret_data(k->ed_sk), 32);
	if (k->age_sk)
		randombytes_buf(bk_secret_data(k->age_sk), 32);
	keyfile_derive(k);
	*out = k;
	return 0;
}

int bk_keyfile_from(bk_keyfile **out, const uint8_t noise_sk[32], const uint8_t ed25519_seed[32],
                    const uint8_t *age_sk)
{
	bk_keyfile *k = NULL;
	if (out == NULL || noise_sk == NULL || ed25519_seed == NULL)
		return bk__error_set(BK_EINVALID, NULL, "key file: no keys");
	*out = NULL;
	int rc = keyfile_alloc(&k, age_sk != NULL);
	if (rc)
		return rc;
	memcpy(bk_secret_data(k->noise_sk), noise_sk, 32);
	memcpy(bk_secret_data(k->ed_sk), ed25519_seed, 32);
	if (age_sk)
		memcpy(bk_secret_data(k->age_sk), age_sk, 32);
	keyfile_derive(k);
	*out = k;
	return 0;
}

static int malformed_keyfile(const char *why)
{
	return bk__error_set(BK_EFORMAT, "malformed-key-file", "key file: %s", why);
}

/* Reads the line "<name>: <base64 of 32 bytes>\n" into dst. */
static int keyfile_field(const uint8_t *text, size_t len, size_t *pos, const char *name,
                         uint8_t dst[32])
{
	const uint8_t *l;
	size_t n, nl_len = strlen(name), got = 0;
	bool nl;
	if (next_line(text, len, pos, &l, &n, &nl) != 0 || !nl)
		return malformed_keyfile("truncated");
	if (n < nl_len + 2 || memcmp(l, name, nl_len) != 0 || l[nl_len] != ':' ||
	    l[nl_len + 1] != ' ')
		return bk__error_set(BK_EFORMAT, "malformed-key-file",
		                     "key file: expected the %s line", name);
	const char *b64 = (const char *)l + nl_len + 2;
	size_t blen = n - nl_len - 2;
	if (bk_minisign__b64_decode(dst, 32, &got, b64, blen) != 0 || got != 32)
		return bk__error_set(BK_EFORMAT, "malformed-key-file",
		                     "key file: the %s key is not base64 of 32 bytes", name);
	return 0;
}

int bk_keyfile_parse(bk_keyfile **out, const char *text, size_t len)
{
	const uint8_t *t = (const uint8_t *)text;
	const uint8_t *l;
	size_t n, pos = 0;
	bool nl;
	bk_keyfile *k = NULL;
	int rc;

	if (out == NULL || (text == NULL && len))
		return bk__error_set(BK_EINVALID, NULL, "key file: no input");
	*out = NULL;
	if (text == NULL || len > KEYFILE_MAX)
		return malformed_keyfile("empty or too large");
	if (next_line(t, len, &pos, &l, &n, &nl) != 0 || !nl || !line_is(l, n, KEYFILE_HEADER))
		return malformed_keyfile("does not begin with " KEYFILE_HEADER);
	/* Decide about the optional age line before allocating. */
	rc = keyfile_alloc(&k, 0);
	if (rc)
		return rc;
	rc = keyfile_field(t, len, &pos, "noise", bk_secret_data(k->noise_sk));
	if (rc == 0)
		rc = keyfile_field(t, len, &pos, "ed25519", bk_secret_data(k->ed_sk));
	if (rc)
		goto done;
	if (pos < len) {
		rc = bk_secret_new(&k->age_sk, 32);
		if (rc == 0)
			rc = keyfile_field(t, len, &pos, "age", bk_secret_data(k->age_sk));
		if (rc)
			goto done;
	}
	if (pos != len) {
		rc = malformed_keyfile("unexpected text after the keys");
		goto done;
	}
	keyfile_derive(k);
	*out = k;
	k = NULL;
done:
	bk_keyfile_free(k);
	return rc;
}

static int put_b64_line(bk_buf *b, const char *name, const uint8_t *key)
{
	char enc[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
	sodium_bin2base64(enc, sizeof(enc), key, 32, sodium_base64_VARIANT_ORIGINAL);
	int rc = bk_buf_printf(b, "%s: %s\n", name, enc);
	sodium_memzero(enc, sizeof(enc));
	return rc;
}

int bk_keyfile_encode(char **out, size_t *out_len, const bk_keyfile *k)
{
	bk_buf b = BK_BUF_INIT;
	int rc;
	b.secret = 1;
	if (out == NULL || k == NULL)
		return bk__error_set(BK_EINVALID, NULL, "key file: nothing to encode");
	*out = NULL;
	rc = bk_buf_put_str(&b, KEYFILE_HEADER "\n");
	if (rc == 0)
		rc = put_b64_line(&b, "noise", bk_secret_data(k->noise_sk));
	if (rc == 0)
		rc = put_b64_line(&b, "ed25519", bk_secret_data(k->ed_sk));
	if (rc == 0 && k->age_sk)
		rc = put_b64_line(&b, "age", bk_secret_data(k->age_sk));
	if (rc == 0)
		rc = bk_buf_cstr(&b);
	if (rc == 0)
		*out = (char *)bk_buf_steal(&b, out_len);
	bk_buf_free(&b);
	return rc;
}

int bk_keyfile_read(bk_keyfile **out, const char *path)
{
	uint8_t *data = NULL;
	size_t len = 0;
	int rc;
	if (out == NULL || path == NULL)
		return bk__error_set(BK_EINVALID, NULL, "key file: no path");
	*out = NULL;
	rc = bk_file_check_private(path);
	if (rc)
		goto done;
	rc = bk_file_read(path, KEYFILE_MAX, &data, &len);
	if (rc)
		goto done;
	rc = bk_keyfile_parse(out, (const char *)data, len);
	if (rc)
		bk__error_prefix(rc, "%s", path);
done:
	if (data) {
		sodium_memzero(data, len);
		bk__free(data);
	}
	return rc;
}

int bk_keyfile_write(const char *path, const bk_keyfile *k)
{
	char *text = NULL;
	size_t len = 0;
	int rc = bk_keyfile_encode(&text, &len, k);
	if (rc == 0)
		rc = bk_file_write_atomic(path, text, len, 0600, 1);
	if (text) {
		sodium_memzero(text, len);
		bk__free(text);
	}
	return rc;
}

const uint8_t *bk_keyfile_noise_secret(const bk_keyfile *k)
{
	return bk_secret_data(k->noise_sk);
}
const uint8_t *bk_keyfile_noise_public(const bk_keyfile *k)
{
	return k->noise_pk;
}
const uint8_t *bk_keyfile_ed25519_secret(const bk_keyfile *k)
{
	return bk_secret_data(k->ed_sk);
}
const uint8_t *bk_keyfile_ed25519_public(const bk_keyfile *k)
{
	return k->ed_pk;
}
const uint8_t *bk_keyfile_age_secret(const bk_keyfile *k)
{
	return k->age_sk ? bk_secret_data(k->age_sk) : NULL;
}
const uint8_t *bk_keyfile_age_public(const bk_keyfile *k)
{
	return k->age_sk ? k->age_pk : NULL;
}
