/* age v1 header: canonical base64, stanza parsing and writing, the header
 * MAC, and header-level operations (unwrap, build, re-wrap). */
#include <string.h>

#include <sodium.h>

#include "crypto/age.h"
#include "crypto/kdf.h"

#define AGE_VERSION_LINE "age-encryption.org/v1"
#define BODY_COLUMNS     64
#define MAC_B64_LEN      43

enum { ST_VERSION = 0, ST_NEXT, ST_BODY, ST_DONE };

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* --- Base64 --------------------------------------------------------------- */

size_t bk_age__b64_len(size_t n)
{
	return (n / 3) * 4 + (n % 3 ? n % 3 + 1 : 0);
}

void bk_age__b64_encode(char *out, const uint8_t *in, size_t n)
{
	size_t o = 0, i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];
		out[o++] = b64_alphabet[(v >> 18) & 63];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = b64_alphabet[(v >> 6) & 63];
		out[o++] = b64_alphabet[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;
		out[o++] = b64_alphabet[(v >> 18) & 63];
		out[o++] = b64_alphabet[(v >> 12) & 63];
	} else if (n - i == 2) {
		uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8);
		out[o++] = b64_alphabet[(v >> 18) & 63];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = b64_alphabet[(v >> 6) & 63];
	}
	out[o] = '\0';
}

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

long bk_age__b64_decode(uint8_t *out, const char *in, size_t len)
{
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t o = 0;
	if (len % 4 == 1)
		return -1;
	for (size_t i = 0; i < len; i++) {
		int v = b64_value(in[i]);
		if (v < 0)
			return -1;
		acc = ((acc << 6) | (uint32_t)v) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	/* Canonical: the unused low bits of the last character are zero. */
	if (bits && (acc & ((1u << bits) - 1)) != 0)
		return -1;
	return (long)o;
}

/* --- Parsing --------------------------------------------------------------- */

static int malformed(const char *fmt, const char *detail)
{
	return bk__error_set(BK_EFORMAT, "header-malformed", fmt, detail);
}

void bk_age__hdr_init(bk_age__hdr *h, const bk_age_decrypt_opts *opts)
{
	memset(h, 0, sizeof(*h));
	h->body.secret = 0;
	h->max_header = opts && opts->max_header ? opts->max_header : 256 * 1024;
	h->max_stanzas = opts && opts->max_stanzas ? opts->max_stanzas : 1024;
	h->max_line = opts && opts->max_line ? opts->max_line : 4096;
	h->max_args = opts && opts->max_args ? opts->max_args : 16;
}

int bk_age__hdr_done(const bk_age__hdr *h)
{
	return h->state == ST_DONE;
}

void bk_age__hdr_free(bk_age__hdr *h)
{
	if (h == NULL)
		return;
	for (size_t i = 0; i < h->count; i++) {
		if (h->st[i].args)
			bk__free(h->st[i].args[0]);
		bk__free(h->st[i].args);
		bk__free(h->st[i].body);
	}
	bk__free(h->st);
	bk_buf_free(&h->body);
	h->st = NULL;
	h->count = h->cap = 0;
}

static int is_vchar_string(const uint8_t *p, size_t n)
{
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (p[i] < 33 || p[i] > 126)
			return 0;
	return 1;
}

/* Starts a stanza from its "-> ..." line. */
static int start_stanza(bk_age__hdr *h, const uint8_t *line, size_t len)
{
	int rc = 0;
	char *copy = NULL;
	char **args = NULL;
	size_t argc = 0;
	if (h->count >= h->max_stanzas) {
		rc = bk__error_set(BK_EFORMAT, "header-malformed",
		                   "age header: more than %zu stanzas", h->max_stanzas);
		goto done;
	}
	/* "->" then " arg" repeated: every argument non-empty printable ASCII. */
	size_t pos = 2;
	if (len == 2) {
		rc = malformed("age header: stanza without a type%s", "");
		goto done;
	}
	copy = bk__malloc(len - 2);
	args = bk__calloc(h->max_args, sizeof(*args));
	if (copy == NULL || args == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	memcpy(copy, line + 3, len - 3);
	copy[len - 3] = '\0';
	while (pos < len) {
		if (line[pos] != ' ') {
			rc = malformed("age header: malformed stanza line%s", "");
			goto done;
		}
		size_t start = pos + 1, end = start;
		while (end < len && line[end] != ' ')
			end++;
		if (!is_vchar_string(line + start, end - start)) {
			rc = malformed("age header: empty or invalid stanza argument%s", "");
			goto done;
		}
		if (argc >= h->max_args) {
			rc = bk__error_set(BK_EFORMAT, "header-malformed",
			                   "age header: more than %zu stanza arguments",
			                   h->max_args);
			goto done;
		}
		args[argc++] = copy + (start - 3);
		if (end < len)
			copy[end - 3] = '\0';
		pos = end;
	}
	if (h->count == h->cap) {
		size_t ncap = h->cap ? h->cap * 2 : 4;
		size_t bytes;
		if (!bk_size_mul(&bytes, ncap, sizeof(*h->st))) {
			rc = bk__error_oom();
			goto done;
		}
		bk_age__stanza *n = bk__realloc(h->st, bytes);
		if (n == NULL) {
			rc = BK_ENOMEM;
			goto done;
		}
		h->st = n;
		h->cap = ncap;
	}
	h->st[h->count].args = args;
	h->st[h->count].argc = argc;
	h->st[h->count].body = NULL;
	h->st[h->count].body_len = 0;
	h->count++;
	args = NULL;
	copy = NULL;
	bk_buf_reset(&h->body);
	h->state = ST_BODY;
done:
	bk__free(copy);
	bk__free(args);
	return rc;
}

static int body_line(bk_age__hdr *h, const uint8_t *line, size_t len)
{
	uint8_t dec[BODY_COLUMNS];
	if (len > BODY_COLUMNS)
		return malformed("age header: stanza body line longer than 64 columns%s", "");
	long n = bk_age__b64_decode(dec, (const char *)line, len);
	if (n < 0)
		return malformed("age header: stanza body is not canonical base64%s", "");
	int rc = bk_buf_put(&h->body, dec, (size_t)n);
	if (rc)
		return rc;
	if (len < BODY_COLUMNS) {
		bk_age__stanza *st = &h->st[h->count - 1];
		/* An empty body still gets an allocation so the stanza owns one. */
		st->body_len = h->body.len;
		st->body = bk_buf_steal(&h->body, NULL);
		if (st->body == NULL) {
			st->body = bk__malloc(1);
			if (st->body == NULL)
				return BK_ENOMEM;
		}
		h->state = ST_NEXT;
	}
	return 0;
}

static int mac_line(bk_age__hdr *h, const uint8_t *line, size_t len)
{
	/* Exactly "--- " and 43 characters of canonical base64 (32 bytes). */
	if (len != 4 + MAC_B64_LEN || line[3] != ' ')
		return malformed("age header: malformed MAC line%s", "");
	long n = bk_age__b64_decode(h->mac, (const char *)line + 4, MAC_B64_LEN);
	if (n != 32)
		return malformed("age header: MAC is not canonical base64%s", "");
	h->mac_input_len = h->len + 3;
	h->state = ST_DONE;
	return 0;
}

int bk_age__hdr_line(bk_age__hdr *h, const uint8_t *line, size_t len)
{
	int rc = 0;
	size_t total;
	if (!bk_size_add(&total, h->len, len + 1) || total > h->max_header)
		return bk__error_set(BK_EFORMAT, "header-malformed",
		                     "age header: longer than %zu bytes", h->max_header);
	if (len > h->max_line)
		return bk__error_set(BK_EFORMAT, "header-malformed",
		                     "age header: line longer than %zu bytes", h->max_line);
	switch (h->state) {
	case ST_VERSION:
		if (len != strlen(AGE_VERSION_LINE) || memcmp(line, AGE_VERSION_LINE, len) != 0)
			rc = malformed("age header: not an age v1 file%s", "");
		else
			h->state = ST_NEXT;
		break;
	case ST_BODY:
		rc = body_line(h, line, len);
		break;
	case ST_NEXT:
		if (len >= 3 && memcmp(line, "---", 3) == 0)
			rc = mac_line(h, line, len);
		else if (len >= 2 && memcmp(line, "->", 2) == 0)
			rc = start_stanza(h, line, len);
		else
			rc = malformed("age header: unexpected line%s", "");
		break;
	default:
		rc = bk__error_set(BK_EINVALID, NULL, "age header: already complete");
	}
	if (rc == 0)
		h->len = total;
	return rc;
}

void bk_age__hdr_mac(uint8_t out[32], const uint8_t file_key[BK_AGE_FILE_KEY_LEN],
                     const uint8_t *raw, size_t len)
{
	uint8_t key[32];
	static const char info[] = "header";
	bk_hkdf_sha256(key, sizeof(key), file_key, BK_AGE_FILE_KEY_LEN, NULL, 0,
	               (const uint8_t *)info, sizeof(info) - 1);
	bk_hmac_sha256(out, key, sizeof(key), raw, len);
	sodium_memzero(key, sizeof(key));
}

int bk_age__hdr_open(uint8_t file_key[BK_AGE_FILE_KEY_LEN], const bk_age__hdr *h,
                     const uint8_t *raw, const bk_age_identities *ids)
{
	uint8_t mac[32];
	if (!bk_age__hdr_done(h))
		return bk__error_set(BK_EINVALID, NULL, "age header: incomplete");
	/* scrypt stanzas must stand alone (a passphrase file cannot also be
	 * readable by others). */
	for (size_t i = 0; i < h->count && h->count > 1; i++)
		if (strcmp(h->st[i].args[0], "scrypt") == 0)
			return malformed("age header: an scrypt stanza must be the only one%s", "");
	int rc = bk_age__unwrap(file_key, ids, h->st, h->count);
	if (rc)
		return rc;
	bk_age__hdr_mac(mac, file_key, raw, h->mac_input_len);
	rc = sodium_memcmp(mac, h->mac, sizeof(mac));
	sodium_memzero(mac, sizeof(mac));
	if (rc != 0) {
		sodium_memzero(file_key, BK_AGE_FILE_KEY_LEN);
		return bk__error_set(BK_EVERIFY, "header-mac",
		                     "age header: MAC does not verify (header altered)");
	}
	return 0;
}

/* --- Header operations on memory ------------------------------------------ */

/* Feeds the lines of `data` until the header is complete. */
static int parse_mem(bk_age__hdr *h, const uint8_t *data, size_t len)
{
	size_t pos = 0;
	while (!bk_age__hdr_done(h)) {
		const uint8_t *nl = pos < len ? memchr(data + pos, '\n', len - pos) : NULL;
		if (nl == NULL)
			return malformed("age header: truncated%s", "");
		int rc = bk_age__hdr_line(h, data + pos, (size_t)(nl - (data + pos)));
		if (rc)
			return rc;
		pos = (size_t)(nl - data) + 1;
	}
	return 0;
}

int bk_age_header_parse(size_t *out_len, const uint8_t *data, size_t len,
                        const bk_age_decrypt_opts *opts)
{
	bk_age__hdr h;
	bk_age__hdr_init(&h, opts);
	*out_len = 0;
	int rc = parse_mem(&h, data, len);
	if (rc == 0)
		*out_len = h.len;
	bk_age__hdr_free(&h);
	return rc;
}

int bk_age_header_unwrap(bk_secret **out_file_key, const uint8_t *hdr, size_t hdr_len,
                         const bk_age_identities *ids, const bk_age_decrypt_opts *opts)
{
	bk_age__hdr h;
	bk_secret *key = NULL;
	bk_age__hdr_init(&h, opts);
	*out_file_key = NULL;
	int rc = bk_secret_new(&key, BK_AGE_FILE_KEY_LEN);
	if (rc)
		goto done;
	rc = parse_mem(&h, hdr, hdr_len);
	if (rc)
		goto done;
	rc = bk_age__hdr_open(bk_secret_data(key), &h, hdr, ids);
	if (rc)
		goto done;
	*out_file_key = key;
	key = NULL;
done:
	bk_secret_free(key);
	bk_age__hdr_free(&h);
	return rc;
}

int bk_age__put_stanza(bk_buf *hdr, const char *args, const uint8_t *body, size_t len)
{
	char line[BODY_COLUMNS + 1];
	int rc = bk_buf_printf(hdr, "-> %s\n", args);
	size_t pos = 0;
	/* 48 bytes per full line; always end with a short line, even empty. */
	for (;;) {
		size_t n = len - pos < 48 ? len - pos : 48;
		if (rc)
			return rc;
		bk_age__b64_encode(line, body + pos, n);
		rc = bk_buf_put_str(hdr, line);
		if (rc == 0)
			rc = bk_buf_put_u8(hdr, '\n');
		pos += n;
		if (n < 48)
			break;
	}
	return rc;
}

int bk_age_header_build(uint8_t **out, size_t *out_len, const bk_secret *file_key,
                        const bk_age_encrypt_opts *to)
{
	bk_buf b = BK_BUF_INIT;
	uint8_t mac[32];
	char mac64[MAC_B64_LEN + 1];
	int rc = 0;
	*out = NULL;
	*out_len = 0;
	if (file_key == NULL || bk_secret_len(file_key) != BK_AGE_FILE_KEY_LEN || to == NULL) {
		rc = bk__error_set(BK_EINVALID, NULL, "age: invalid header arguments");
		goto done;
	}
	const uint8_t *fk = bk_secret_data((bk_secret *)file_key);
	rc = bk_buf_put_str(&b, AGE_VERSION_LINE "\n");
	if (rc == 0)
		rc = bk_age__wrap(&b, fk, to);
	if (rc == 0)
		rc = bk_buf_put_str(&b, "---");
	if (rc)
		goto done;
	bk_age__hdr_mac(mac, fk, b.data, b.len);
	bk_age__b64_encode(mac64, mac, sizeof(mac));
	rc = bk_buf_printf(&b, " %s\n", mac64);
	if (rc)
		goto done;
	*out = bk_buf_steal(&b, out_len);
done:
	bk_buf_free(&b);
	sodium_memzero(mac, sizeof(mac));
	return rc;
}

int bk_age_rewrap_header(uint8_t **out, size_t *out_len, const uint8_t *hdr, size_t hdr_len,
                         const bk_age_identities *ids, const bk_age_encrypt_opts *to)
{
	bk_secret *fk = NULL;
	*out = NULL;
	*out_len = 0;
	int rc = bk_age_header_unwrap(&fk, hdr, hdr_len, ids, NULL);
	if (rc == 0)
		rc = bk_age_header_build(out, out_len, fk, to);
	bk_secret_free(fk);
	return rc;
}
