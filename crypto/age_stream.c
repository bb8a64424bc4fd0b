/* age v1 payload: the STREAM construction, ASCII armor, the encrypting
 * writer, the decrypting reader and re-wrapping. */
#include <string.h>

#include <sodium.h>

#include "crypto/age.h"
#include "crypto/kdf.h"

#define RAW_BUF              16384
#define ARMOR_HEADER         "-----BEGIN AGE ENCRYPTED FILE-----"
#define ARMOR_FOOTER         "-----END AGE ENCRYPTED FILE-----"
#define ARMOR_COLUMNS        64
#define ARMOR_BYTES_PER_LINE 48
#define ARMOR_LINE_MAX       80
#define ARMOR_MAX_WHITESPACE 1024

/* --- Chunks ------------------------------------------------------------------ */

static void chunk_nonce(uint8_t nonce[12], uint64_t index, int last)
{
	memset(nonce, 0, 12);
	bk_put_u64be(nonce + 3, index);
	nonce[11] = last ? 1 : 0;
}

int bk_age_payload_key(bk_secret **out, const bk_secret *file_key,
                       const uint8_t nonce[BK_AGE_NONCE_LEN])
{
	static const char info[] = "payload";
	*out = NULL;
	if (file_key == NULL || bk_secret_len(file_key) != BK_AGE_FILE_KEY_LEN)
		return bk__error_set(BK_EINVALID, NULL, "age: invalid file key");
	int rc = bk_secret_new(out, BK_AGE_PAYLOAD_KEY_LEN);
	if (rc)
		return rc;
	rc = bk_hkdf_sha256(bk_secret_data(*out), BK_AGE_PAYLOAD_KEY_LEN,
	                    bk_secret_data((bk_secret *)file_key), BK_AGE_FILE_KEY_LEN, nonce,
	                    BK_AGE_NONCE_LEN, (const uint8_t *)info, sizeof(info) - 1);
	if (rc) {
		bk_secret_free(*out);
		*out = NULL;
	}
	return rc;
}

/* 0, or 1 when the chunk does not authenticate (no error set). */
static int chunk_try_open(uint8_t *out, const bk_secret *key, uint64_t index, int last,
                          const uint8_t *in, size_t in_len)
{
	uint8_t nonce[12];
	unsigned long long n = 0;
	chunk_nonce(nonce, index, last);
	if (in_len < BK_AGE_TAG_LEN || in_len > BK_AGE_ENC_CHUNK_SIZE)
		return 1;
	return crypto_aead_chacha20poly1305_ietf_decrypt(out, &n, NULL, in, in_len, NULL, 0, nonce,
	                                                 bk_secret_data((bk_secret *)key))
	           ? 1
	           : 0;
}

int bk_age_chunk_open(uint8_t *out, const bk_secret *payload_key, uint64_t index, int last,
                      const uint8_t *in, size_t in_len)
{
	if (payload_key == NULL || bk_secret_len(payload_key) != BK_AGE_PAYLOAD_KEY_LEN)
		return bk__error_set(BK_EINVALID, NULL, "age: invalid payload key");
	if (in_len < BK_AGE_TAG_LEN || in_len > BK_AGE_ENC_CHUNK_SIZE)
		return bk__error_set(BK_EVERIFY, "payload-corrupt",
		                     "age payload: chunk %llu has an invalid size (%zu bytes)",
		                     (unsigned long long)index, in_len);
	if (!last && in_len != BK_AGE_ENC_CHUNK_SIZE)
		return bk__error_set(BK_EVERIFY, "payload-corrupt",
		                     "age payload: chunk %llu is short but not final",
		                     (unsigned long long)index);
	if (last && index > 0 && in_len == BK_AGE_TAG_LEN)
		return bk__error_set(BK_EVERIFY, "payload-corrupt",
		                     "age payload: final chunk %llu is empty",
		                     (unsigned long long)index);
	if (chunk_try_open(out, payload_key, index, last, in, in_len))
		return bk__error_set(BK_EVERIFY, "payload-corrupt",
		                     "age payload: chunk %llu does not authenticate",
		                     (unsigned long long)index);
	return 0;
}

int bk_age_chunk_seal(uint8_t *out, const bk_secret *payload_key, uint64_t index, int last,
                      const uint8_t *in, size_t in_len)
{
	uint8_t nonce[12];
	unsigned long long n = 0;
	if (payload_key == NULL || bk_secret_len(payload_key) != BK_AGE_PAYLOAD_KEY_LEN ||
	    in_len > BK_AGE_CHUNK_SIZE)
		return bk__error_set(BK_EINVALID, NULL, "age: invalid chunk arguments");
	chunk_nonce(nonce, index, last);
	crypto_aead_chacha20poly1305_ietf_encrypt(out, &n, in, in_len, NULL, 0, NULL, nonce,
	                                          bk_secret_data((bk_secret *)payload_key));
	return 0;
}

/* --- Input: raw bytes, optionally de-armored ------------------------------------ */

typedef struct age_src {
	bk_stream *raw;
	uint8_t *buf;
	size_t cap, pos, len;
	int eof;
	int armored;
	int a_started, a_done, a_trailing_bad;
	uint8_t line[ARMOR_BYTES_PER_LINE];
	size_t lpos, llen;
	bk_deadline d;
} age_src;

static int armor_bad(const char *why)
{
	return bk__error_set(BK_EFORMAT, "armor-malformed", "age armor: %s", why);
}

static int is_space(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int src_init(age_src *s, bk_stream *raw, size_t cap, int armor, bk_deadline d)
{
	memset(s, 0, sizeof(*s));
	s->raw = raw;
	s->cap = cap;
	s->d = d;
	s->buf = bk__malloc(cap);
	if (s->buf == NULL)
		return BK_ENOMEM;
	s->armored = armor == BK_AGE_ARMOR_YES;
	return 0;
}

static void src_free(age_src *s)
{
	bk__free(s->buf);
	s->buf = NULL;
	sodium_memzero(s->line, sizeof(s->line));
}

static int raw_fill(age_src *s)
{
	if (s->pos < s->len || s->eof)
		return 0;
	size_t n = 0;
	int rc = bk_stream_read(s->raw, s->buf, s->cap, &n, s->d);
	if (rc)
		return rc;
	s->pos = 0;
	s->len = n;
	if (n == 0)
		s->eof = 1;
	return 0;
}

/* *c = the next byte or -1 at the end. */
static int raw_getc(age_src *s, int *c)
{
	int rc = raw_fill(s);
	if (rc)
		return rc;
	*c = s->pos < s->len ? s->buf[s->pos++] : -1;
	return 0;
}

/* Detects armor (first non-blank byte '-') without consuming anything. */
static int src_detect(age_src *s)
{
	int rc = raw_fill(s);
	if (rc)
		return rc;
	for (size_t i = s->pos; i < s->len; i++) {
		if (!is_space(s->buf[i])) {
			s->armored = s->buf[i] == '-';
			return 0;
		}
	}
	s->armored = s->len > 0;
	return 0;
}

/* One armor line without "\n" or "\r\n". *eof: nothing left at all. */
static int armor_getline(age_src *s, char line[ARMOR_LINE_MAX], size_t *n, int *eof)
{
	int c;
	*n = 0;
	*eof = 0;
	for (;;) {
		int rc = raw_getc(s, &c);
		if (rc)
			return rc;
		if (c < 0) {
			*eof = *n == 0;
			break;
		}
		if (c == '\n')
			break;
		if (*n == ARMOR_LINE_MAX)
			return armor_bad("line too long");
		line[(*n)++] = (char)c;
	}
	if (*n && line[*n - 1] == '\r')
		(*n)--;
	return 0;
}

static int line_is(const char *line, size_t n, const char *want)
{
	return n == strlen(want) && memcmp(line, want, n) == 0;
}

/* Only a little whitespace may follow the end line. */
static int armor_drain(age_src *s)
{
	size_t seen = 0;
	for (;;) {
		int c;
		int rc = raw_getc(s, &c);
		if (rc)
			return rc;
		if (c < 0)
			return 0;
		if (!is_space((uint8_t)c))
			return armor_bad("data after the end line");
		if (++seen >= ARMOR_MAX_WHITESPACE)
			return armor_bad("too much whitespace after the end line");
	}
}

/* Strict padded base64 of one armor line. */
static long b64_padded(uint8_t *out, const char *in, size_t n)
{
	size_t pad = 0;
	if (n % 4 != 0)
		return -1;
	while (pad < 2 && pad < n && in[n - 1 - pad] == '=')
		pad++;
	return bk_age__b64_decode(out, in, n - pad);
}

static int armor_next(age_src *s)
{
	char line[ARMOR_LINE_MAX];
	size_t n;
	int eof, rc;
	if (!s->a_started) {
		size_t ws = 0;
		for (;;) {
			rc = raw_fill(s);
			if (rc)
				return rc;
			if (s->pos == s->len || !is_space(s->buf[s->pos]))
				break;
			s->pos++;
			if (++ws > ARMOR_MAX_WHITESPACE)
				return armor_bad("too much whitespace before the begin line");
		}
		rc = armor_getline(s, line, &n, &eof);
		if (rc)
			return rc;
		if (!line_is(line, n, ARMOR_HEADER))
			return armor_bad("missing or invalid begin line");
		s->a_started = 1;
	}
	rc = armor_getline(s, line, &n, &eof);
	if (rc)
		return rc;
	if (eof)
		return armor_bad("missing end line");
	if (line_is(line, n, ARMOR_FOOTER)) {
		s->a_done = 1;
		return armor_drain(s);
	}
	if (n == 0)
		return armor_bad("empty line");
	if (n > ARMOR_COLUMNS)
		return armor_bad("line longer than 64 columns");
	long m = b64_padded(s->line, line, n);
	if (m < 0)
		return armor_bad("invalid or non-canonical base64");
	if (m < ARMOR_BYTES_PER_LINE) {
		rc = armor_getline(s, line, &n, &eof);
		if (rc)
			return rc;
		if (eof || !line_is(line, n, ARMOR_FOOTER))
			return armor_bad("short line not followed by the end line");
		s->a_done = 1;
		/* Go's reader hands out the last line before reporting what
		 * follows the end line; so do we. */
		if (armor_drain(s))
			s->a_trailing_bad = 1;
	}
	s->lpos = 0;
	s->llen = (size_t)m;
	return 0;
}

/* Up to `len` bytes of the (de-armored) file; *n = 0 only at its end. */
static int src_read(age_src *s, uint8_t *buf, size_t len, size_t *n)
{
	*n = 0;
	if (!s->armored) {
		if (s->pos == s->len && !s->eof && len >= s->cap) {
			int rc = bk_stream_read(s->raw, buf, len, n, s->d);
			if (rc == 0 && *n == 0)
				s->eof = 1;
			return rc;
		}
		int rc = raw_fill(s);
		if (rc)
			return rc;
		size_t k = s->len - s->pos < len ? s->len - s->pos : len;
		if (k)
			memcpy(buf, s->buf + s->pos, k);
		s->pos += k;
		*n = k;
		return 0;
	}
	while (s->lpos == s->llen) {
		if (s->a_trailing_bad)
			return armor_bad("data after the end line");
		if (s->a_done)
			return 0;
		int rc = armor_next(s);
		if (rc)
			return rc;
	}
	size_t k = s->llen - s->lpos < len ? s->llen - s->lpos : len;
	memcpy(buf, s->line + s->lpos, k);
	s->lpos += k;
	*n = k;
	return 0;
}

static int src_read_full(age_src *s, uint8_t *buf, size_t len, size_t *got)
{
	*got = 0;
	while (*got < len) {
		size_t n;
		int rc = src_read(s, buf + *got, len - *got, &n);
		if (rc)
			return rc;
		if (n == 0)
			break;
		*got += n;
	}
	return 0;
}

/* Reads and parses the header into `h`, its bytes into `raw`. */
static int read_header(age_src *s, bk_age__hdr *h, bk_buf *raw)
{
	while (!bk_age__hdr_done(h)) {
		size_t start = raw->len;
		for (;;) {
			uint8_t c;
			size_t n;
			int rc = src_read(s, &c, 1, &n);
			if (rc)
				return rc;
			if (n == 0)
				return bk__error_set(BK_EFORMAT, "header-malformed",
				                     raw->len ? "age header: truncated"
				                              : "age header: empty file");
			if (c == '\n')
				break;
			if (raw->len - start >= h->max_line || raw->len >= h->max_header)
				return bk__error_set(BK_EFORMAT, "header-malformed",
				                     "age header: line or header too long");
			rc = bk_buf_put_u8(raw, c);
			if (rc)
				return rc;
		}
		/* An empty first line: no bytes were stored yet (data is NULL). */
		int rc = bk_age__hdr_line(h, raw->data ? raw->data + start : (const uint8_t *)"",
		                          raw->len - start);
		if (rc == 0)
			rc = bk_buf_put_u8(raw, '\n');
		if (rc)
			return rc;
	}
	return 0;
}

/* --- Decrypting reader ----------------------------------------------------------- */

enum { DEC_RUN = 0, DEC_LAST, DEC_END };

typedef struct age_dec {
	bk_stream base;
	age_src src;
	bk_secret *pkey;
	uint64_t index;
	uint8_t *ct;
	uint8_t *pt;
	size_t pt_pos, pt_len;
	int state;
	int err;
	const char *err_reason;
	uint64_t header_len;
} age_dec;

static int dec_fail(age_dec *x, int rc)
{
	x->err = rc;
	x->err_reason = bk_error_last()->reason;
	return rc;
}

static int payload_bad(age_dec *x, const char *reason, const char *why)
{
	return dec_fail(x, bk__error_set(BK_EVERIFY, reason, "age payload: %s (chunk %llu)", why,
	                                 (unsigned long long)x->index));
}

static int next_chunk(age_dec *x)
{
	size_t n = 0;
	int rc = src_read_full(&x->src, x->ct, BK_AGE_ENC_CHUNK_SIZE, &n);
	if (rc)
		return dec_fail(x, rc);
	if (n == BK_AGE_ENC_CHUNK_SIZE) {
		/* A full chunk: normally not the last one, but a full final
		 * chunk is allowed. */
		if (chunk_try_open(x->pt, x->pkey, x->index, 0, x->ct, n) == 0) {
			x->pt_len = BK_AGE_CHUNK_SIZE;
		} else if (chunk_try_open(x->pt, x->pkey, x->index, 1, x->ct, n) == 0) {
			x->pt_len = BK_AGE_CHUNK_SIZE;
			x->state = DEC_LAST;
		} else {
			return payload_bad(x, "payload-corrupt", "chunk does not authenticate");
		}
	} else {
		if (n == 0)
			return payload_bad(x, "payload-truncated", "ends before the final chunk");
		if (n < BK_AGE_TAG_LEN)
			return payload_bad(x, "payload-truncated", "chunk cut short");
		if (n == BK_AGE_TAG_LEN && x->index > 0)
			return payload_bad(x, "payload-corrupt", "final chunk is empty");
		if (chunk_try_open(x->pt, x->pkey, x->index, 1, x->ct, n) != 0)
			return payload_bad(x, "payload-corrupt",
			                   "final chunk does not authenticate (altered or cut)");
		x->pt_len = n - BK_AGE_TAG_LEN;
		x->state = DEC_LAST;
	}
	x->pt_pos = 0;
	x->index++;
	return 0;
}

static int dec_read(bk_stream *st, void *buf, size_t len, size_t *out_n, bk_deadline d)
{
	age_dec *x = (age_dec *)st;
	*out_n = 0;
	if (x->err)
		return bk__error_set(x->err, x->err_reason,
		                     "age: reading after an earlier failure");
	x->src.d = d;
	while (x->pt_pos == x->pt_len) {
		if (x->state == DEC_END)
			return 0;
		if (x->state == DEC_LAST) {
			uint8_t c;
			size_t n = 0;
			int rc = src_read(&x->src, &c, 1, &n);
			if (rc)
				return dec_fail(x, rc);
			if (n)
				return payload_bad(x, "payload-corrupt",
				                   "data after the final chunk");
			x->state = DEC_END;
			return 0;
		}
		int rc = next_chunk(x);
		if (rc)
			return rc;
	}
	size_t k = x->pt_len - x->pt_pos < len ? x->pt_len - x->pt_pos : len;
	memcpy(buf, x->pt + x->pt_pos, k);
	x->pt_pos += k;
	*out_n = k;
	return 0;
}

static void dec_release(bk_stream *st)
{
	age_dec *x = (age_dec *)st;
	src_free(&x->src);
	bk_secret_free(x->pkey);
	bk__free(x->ct);
	if (x->pt) {
		sodium_memzero(x->pt, BK_AGE_CHUNK_SIZE);
		bk__free(x->pt);
	}
	bk__free(x);
}

static const bk_stream_ops dec_ops = {
    .version = BK_STREAM_OPS_VERSION,
    .name = "age-decrypt",
    .read = dec_read,
    .release = dec_release,
};

uint64_t bk_age_decrypt_header_len(bk_stream *dec)
{
	if (dec == NULL || dec->ops != &dec_ops)
		return 0;
	return ((age_dec *)dec)->header_len;
}

/* Reads the header, unwraps the file key and reads the nonce: the payload
 * key into `*out_key` (or, with `out_file_key`, the file key instead and
 * the nonce is not read). */
static int open_header(age_src *s, const bk_age_identities *ids, const bk_age_decrypt_opts *opts,
                       bk_buf *raw, bk_secret **out_pkey, bk_secret **out_file_key)
{
	bk_age__hdr h;
	bk_secret *fk = NULL;
	uint8_t nonce[BK_AGE_NONCE_LEN];
	int rc;
	bk_age__hdr_init(&h, opts);
	if (!opts || opts->armor == BK_AGE_ARMOR_AUTO) {
		rc = src_detect(s);
		if (rc)
			goto done;
	}
	rc = read_header(s, &h, raw);
	if (rc)
		goto done;
	rc = bk_secret_new(&fk, BK_AGE_FILE_KEY_LEN);
	if (rc)
		goto done;
	rc = bk_age__hdr_open(bk_secret_data(fk), &h, raw->data, ids);
	if (rc)
		goto done;
	if (out_file_key) {
		*out_file_key = fk;
		fk = NULL;
		goto done;
	}
	size_t got = 0;
	rc = src_read_full(s, nonce, sizeof(nonce), &got);
	if (rc)
		goto done;
	if (got != sizeof(nonce)) {
		rc =
		    bk__error_set(BK_EFORMAT, "header-malformed",
		                  "age: file ends inside the payload nonce (%zu of 16 bytes)", got);
		goto done;
	}
	rc = bk_age_payload_key(out_pkey, fk, nonce);
done:
	bk_secret_free(fk);
	bk_age__hdr_free(&h);
	return rc;
}

int bk_age_decrypt_new(bk_stream **out, bk_stream *src, int own_src, const bk_age_identities *ids,
                       const bk_age_decrypt_opts *opts, bk_deadline d)
{
	age_dec *x = NULL;
	bk_buf raw = BK_BUF_INIT;
	int rc = 0;
	*out = NULL;
	if (src == NULL || ids == NULL)
		return bk__error_set(BK_EINVALID, NULL, "age: no source or identities");
	x = bk__calloc(1, sizeof(*x));
	if (x == NULL)
		return BK_ENOMEM;
	x->base.ops = &dec_ops;
	rc = src_init(&x->src, src, RAW_BUF, opts ? opts->armor : BK_AGE_ARMOR_AUTO, d);
	if (rc)
		goto done;
	x->ct = bk__malloc(BK_AGE_ENC_CHUNK_SIZE);
	x->pt = bk__malloc(BK_AGE_CHUNK_SIZE);
	if (x->ct == NULL || x->pt == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	rc = open_header(&x->src, ids, opts, &raw, &x->pkey, NULL);
	if (rc)
		goto done;
	x->header_len = raw.len;
	x->base.next = src;
	x->base.owns_next = own_src;
	*out = &x->base;
	x = NULL;
done:
	bk_buf_free(&raw);
	if (x)
		dec_release(&x->base);
	return rc;
}

int bk_age_decrypt_mem(uint8_t **out, size_t *out_len, const uint8_t *in, size_t in_len,
                       const bk_age_identities *ids, const bk_age_decrypt_opts *opts)
{
	bk_stream *mem = NULL, *dec = NULL;
	bk_buf b = BK_BUF_INIT;
	int rc;
	*out = NULL;
	*out_len = 0;
	rc = bk_stream_mem_reader(&mem, in, in_len);
	if (rc)
		goto done;
	rc = bk_age_decrypt_new(&dec, mem, 1, ids, opts, BK_DEADLINE_NONE);
	if (rc)
		goto done;
	mem = NULL;
	for (;;) {
		size_t n = 0;
		rc = bk_buf_reserve(&b, BK_AGE_CHUNK_SIZE);
		if (rc == 0)
			rc = bk_stream_read(dec, b.data + b.len, b.cap - b.len, &n,
			                    BK_DEADLINE_NONE);
		if (rc || n == 0)
			break;
		b.len += n;
	}
	if (rc)
		goto done;
	if (b.data == NULL) {
		rc = bk_buf_reserve(&b, 1);
		if (rc)
			goto done;
	}
	*out = bk_buf_steal(&b, out_len);
done:
	if (b.data)
		sodium_memzero(b.data, b.cap);
	bk_buf_free(&b);
	bk_stream_free(dec);
	bk_stream_free(mem);
	return rc;
}

/* --- Armor writer -------------------------------------------------------------------- */

#define ARMOR_OUT_LINES 128

typedef struct armor_w {
	bk_stream base;
	uint8_t pending[ARMOR_BYTES_PER_LINE];
	size_t npending;
	int begun;
	char *out;
	size_t out_len;
} armor_w;

static int armor_flush_out(armor_w *a, bk_deadline d)
{
	int rc = 0;
	if (a->out_len)
		rc = bk_stream_write(a->base.next, a->out, a->out_len, d);
	a->out_len = 0;
	return rc;
}

static int armor_put_line(armor_w *a, const uint8_t *p, size_t n, bk_deadline d)
{
	char *o = a->out + a->out_len;
	bk_age__b64_encode(o, p, n);
	size_t len = bk_age__b64_len(n);
	while (len % 4)
		o[len++] = '=';
	o[len++] = '\n';
	a->out_len += len;
	if (a->out_len + ARMOR_COLUMNS + 2 > ARMOR_OUT_LINES * (ARMOR_COLUMNS + 1))
		return armor_flush_out(a, d);
	return 0;
}

static int armor_begin(armor_w *a)
{
	if (!a->begun) {
		memcpy(a->out, ARMOR_HEADER "\n", sizeof(ARMOR_HEADER));
		a->out_len = sizeof(ARMOR_HEADER);
		a->begun = 1;
	}
	return 0;
}

static int armor_write(bk_stream *st, const void *buf, size_t len, bk_deadline d)
{
	armor_w *a = (armor_w *)st;
	const uint8_t *p = buf;
	armor_begin(a);
	while (len) {
		if (a->npending == 0 && len >= ARMOR_BYTES_PER_LINE) {
			int rc = armor_put_line(a, p, ARMOR_BYTES_PER_LINE, d);
			if (rc)
				return rc;
			p += ARMOR_BYTES_PER_LINE;
			len -= ARMOR_BYTES_PER_LINE;
			continue;
		}
		size_t k = ARMOR_BYTES_PER_LINE - a->npending;
		if (k > len)
			k = len;
		memcpy(a->pending + a->npending, p, k);
		a->npending += k;
		p += k;
		len -= k;
		if (a->npending == ARMOR_BYTES_PER_LINE) {
			a->npending = 0;
			int rc = armor_put_line(a, a->pending, ARMOR_BYTES_PER_LINE, d);
			if (rc)
				return rc;
		}
	}
	return 0;
}

static int armor_finish(bk_stream *st, bk_deadline d)
{
	armor_w *a = (armor_w *)st;
	int rc = 0;
	armor_begin(a);
	if (a->npending)
		rc = armor_put_line(a, a->pending, a->npending, d);
	if (rc == 0) {
		memcpy(a->out + a->out_len, ARMOR_FOOTER "\n", sizeof(ARMOR_FOOTER));
		a->out_len += sizeof(ARMOR_FOOTER);
		rc = armor_flush_out(a, d);
	}
	return rc;
}

static void armor_release(bk_stream *st)
{
	armor_w *a = (armor_w *)st;
	bk__free(a->out);
	bk__free(a);
}

static const bk_stream_ops armor_w_ops = {
    .version = BK_STREAM_OPS_VERSION,
    .name = "age-armor",
    .write = armor_write,
    .finish = armor_finish,
    .release = armor_release,
};

static int armor_writer_new(bk_stream **out, bk_stream *next, int own_next)
{
	*out = NULL;
	armor_w *a = bk__calloc(1, sizeof(*a));
	if (a == NULL)
		return BK_ENOMEM;
	a->out = bk__malloc(ARMOR_OUT_LINES * (ARMOR_COLUMNS + 1));
	if (a->out == NULL) {
		bk__free(a);
		return BK_ENOMEM;
	}
	a->base.ops = &armor_w_ops;
	a->base.next = next;
	a->base.owns_next = own_next;
	*out = &a->base;
	return 0;
}

/* --- Encrypting writer --------------------------------------------------------------- */

typedef struct age_enc {
	bk_stream base;
	uint8_t *hdr; /* header and nonce, until sent */
	size_t hdr_len;
	bk_secret *pkey;
	uint64_t index;
	uint8_t *pt;
	size_t pt_len;
	uint8_t *ct;
} age_enc;

static int enc_send_header(age_enc *e, bk_deadline d)
{
	if (e->hdr == NULL)
		return 0;
	int rc = bk_stream_write(e->base.next, e->hdr, e->hdr_len, d);
	bk__free(e->hdr);
	e->hdr = NULL;
	return rc;
}

static int enc_seal(age_enc *e, int last, bk_deadline d)
{
	bk_age_chunk_seal(e->ct, e->pkey, e->index, last, e->pt, e->pt_len);
	int rc = bk_stream_write(e->base.next, e->ct, e->pt_len + BK_AGE_TAG_LEN, d);
	e->index++;
	e->pt_len = 0;
	return rc;
}

static int enc_write(bk_stream *st, const void *buf, size_t len, bk_deadline d)
{
	age_enc *e = (age_enc *)st;
	const uint8_t *p = buf;
	int rc = enc_send_header(e, d);
	while (rc == 0 && len) {
		/* A full chunk is sealed only once more data shows it is not
		 * the last one. */
		if (e->pt_len == BK_AGE_CHUNK_SIZE) {
			rc = enc_seal(e, 0, d);
			if (rc)
				break;
		}
		size_t k = BK_AGE_CHUNK_SIZE - e->pt_len;
		if (k > len)
			k = len;
		memcpy(e->pt + e->pt_len, p, k);
		e->pt_len += k;
		p += k;
		len -= k;
	}
	return rc;
}

static int enc_finish(bk_stream *st, bk_deadline d)
{
	age_enc *e = (age_enc *)st;
	int rc = enc_send_header(e, d);
	if (rc == 0)
		rc = enc_seal(e, 1, d);
	return rc;
}

static void enc_release(bk_stream *st)
{
	age_enc *e = (age_enc *)st;
	bk__free(e->hdr);
	bk_secret_free(e->pkey);
	if (e->pt) {
		sodium_memzero(e->pt, BK_AGE_CHUNK_SIZE);
		bk__free(e->pt);
	}
	bk__free(e->ct);
	bk__free(e);
}

static const bk_stream_ops enc_ops = {
    .version = BK_STREAM_OPS_VERSION,
    .name = "age-encrypt",
    .write = enc_write,
    .finish = enc_finish,
    .release = enc_release,
};

int bk_age_encrypt_new(bk_stream **out, bk_stream *next, int own_next,
                       const bk_age_encrypt_opts *opts)
{
	age_enc *e = NULL;
	bk_secret *fk = NULL;
	bk_stream *armor = NULL;
	uint8_t nonce[BK_AGE_NONCE_LEN];
	uint8_t *hdr = NULL;
	size_t hdr_len = 0;
	int rc = 0;
	*out = NULL;
	if (next == NULL || opts == NULL || opts->version < 1)
		return bk__error_set(BK_EINVALID, NULL, "age: no output or options");
	e = bk__calloc(1, sizeof(*e));
	if (e == NULL)
		return BK_ENOMEM;
	e->base.ops = &enc_ops;
	e->pt = bk__malloc(BK_AGE_CHUNK_SIZE);
	e->ct = bk__malloc(BK_AGE_ENC_CHUNK_SIZE);
	if (e->pt == NULL || e->ct == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	rc = bk_secret_new(&fk, BK_AGE_FILE_KEY_LEN);
	if (rc)
		goto done;
	randombytes_buf(bk_secret_data(fk), BK_AGE_FILE_KEY_LEN);
	rc = bk_age_header_build(&hdr, &hdr_len, fk, opts);
	if (rc)
		goto done;
	e->hdr = bk__realloc(hdr, hdr_len + BK_AGE_NONCE_LEN);
	if (e->hdr == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	hdr = NULL;
	randombytes_buf(nonce, sizeof(nonce));
	memcpy(e->hdr + hdr_len, nonce, sizeof(nonce));
	e->hdr_len = hdr_len + BK_AGE_NONCE_LEN;
	rc = bk_age_payload_key(&e->pkey, fk, nonce);
	if (rc)
		goto done;
	if (opts->armor) {
		rc = armor_writer_new(&armor, next, own_next);
		if (rc)
			goto done;
		e->base.next = armor;
		e->base.owns_next = 1;
	} else {
		e->base.next = next;
		e->base.owns_next = own_next;
	}
	*out = &e->base;
	e = NULL;
done:
	bk__free(hdr);
	bk_secret_free(fk);
	if (e)
		enc_release(&e->base);
	return rc;
}

/* --- Headers on streams, re-wrapping ---------------------------------------------------- */

int bk_age_header_read(uint8_t **out, size_t *out_len, bk_stream *in,
                       const bk_age_decrypt_opts *opts, bk_deadline d)
{
	age_src s;
	bk_age__hdr h;
	bk_buf raw = BK_BUF_INIT;
	*out = NULL;
	*out_len = 0;
	bk_age__hdr_init(&h, opts);
	/* One byte at a time: nothing after the header is consumed. */
	int rc = src_init(&s, in, 1, BK_AGE_ARMOR_NO, d);
	if (rc == 0)
		rc = read_header(&s, &h, &raw);
	if (rc == 0)
		*out = bk_buf_steal(&raw, out_len);
	bk_buf_free(&raw);
	bk_age__hdr_free(&h);
	src_free(&s);
	return rc;
}

int bk_age_rewrap(bk_stream *out, bk_stream *in, const bk_age_identities *ids,
                  const bk_age_encrypt_opts *to, uint64_t *out_old_header_len,
                  uint64_t *out_new_header_len, bk_deadline d)
{
	age_src s;
	bk_buf raw = BK_BUF_INIT;
	bk_secret *fk = NULL;
	uint8_t *hdr = NULL, *buf = NULL;
	size_t hdr_len = 0;
	bk_stream *armor = NULL, *dst = out;
	int rc;
	if (out == NULL || in == NULL || to == NULL)
		return bk__error_set(BK_EINVALID, NULL, "age rewrap: missing argument");
	rc = src_init(&s, in, RAW_BUF, BK_AGE_ARMOR_AUTO, d);
	if (rc)
		goto done;
	rc = open_header(&s, ids, NULL, &raw, NULL, &fk);
	if (rc)
		goto done;
	rc = bk_age_header_build(&hdr, &hdr_len, fk, to);
	if (rc)
		goto done;
	buf = bk__malloc(BK_AGE_ENC_CHUNK_SIZE);
	if (buf == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	if (to->armor) {
		rc = armor_writer_new(&armor, out, 0);
		if (rc)
			goto done;
		dst = armor;
	}
	rc = bk_stream_write(dst, hdr, hdr_len, d);
	while (rc == 0) {
		size_t n = 0;
		rc = src_read(&s, buf, BK_AGE_ENC_CHUNK_SIZE, &n);
		if (rc || n == 0)
			break;
		rc = bk_stream_write(dst, buf, n, d);
	}
	if (rc == 0 && armor) {
		rc = bk_stream_close(armor, d);
		armor = NULL;
	}
	if (rc)
		goto done;
	if (out_old_header_len)
		*out_old_header_len = raw.len;
	if (out_new_header_len)
		*out_new_header_len = hdr_len;
done:
	bk_stream_free(armor);
	bk__free(buf);
	bk__free(hdr);
	bk_secret_free(fk);
	bk_buf_free(&raw);
	src_free(&s);
	return rc;
}
