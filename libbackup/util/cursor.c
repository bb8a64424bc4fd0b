/* Bounds-checked reading cursor and growing buffer. */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "util.h"

static int need(bk_cur *c, size_t n)
{
	if (c->pos > c->len || c->len - c->pos < n)
		return bk__error_set(BK_EFORMAT, "truncated",
				     "input truncated: %zu bytes needed at offset %zu, %zu left", n,
				     c->pos, c->pos > c->len ? 0 : c->len - c->pos);
	return 0;
}

int bk_cur_u8(bk_cur *c, uint8_t *v)
{
	int rc = need(c, 1);
	if (rc == 0)
		*v = c->p[c->pos++];
	return rc;
}

int bk_cur_u16be(bk_cur *c, uint16_t *v)
{
	int rc = need(c, 2);
	if (rc == 0) {
		*v = bk_get_u16be(c->p + c->pos);
		c->pos += 2;
	}
	return rc;
}

int bk_cur_u16le(bk_cur *c, uint16_t *v)
{
	int rc = need(c, 2);
	if (rc == 0) {
		*v = (uint16_t)(c->p[c->pos] | (c->p[c->pos + 1] << 8));
		c->pos += 2;
	}
	return rc;
}

int bk_cur_u32be(bk_cur *c, uint32_t *v)
{
	int rc = need(c, 4);
	if (rc == 0) {
		*v = bk_get_u32be(c->p + c->pos);
		c->pos += 4;
	}
	return rc;
}

int bk_cur_u32le(bk_cur *c, uint32_t *v)
{
	int rc = need(c, 4);
	if (rc == 0) {
		const uint8_t *p = c->p + c->pos;
		*v = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
		     ((uint32_t)p[3] << 24);
		c->pos += 4;
	}
	return rc;
}

int bk_cur_u64be(bk_cur *c, uint64_t *v)
{
	int rc = need(c, 8);
	if (rc == 0) {
		*v = bk_get_u64be(c->p + c->pos);
		c->pos += 8;
	}
	return rc;
}

int bk_cur_u64le(bk_cur *c, uint64_t *v)
{
	int rc = need(c, 8);
	if (rc == 0) {
		uint64_t x = 0;
		for (int i = 7; i >= 0; i--)
			x = (x << 8) | c->p[c->pos + (size_t)i];
		*v = x;
		c->pos += 8;
	}
	return rc;
}

int bk_cur_bytes(bk_cur *c, const uint8_t **out, size_t n)
{
	int rc = need(c, n);
	if (rc == 0) {
		*out = c->p + c->pos;
		c->pos += n;
	}
	return rc;
}

int bk_cur_copy(bk_cur *c, void *dst, size_t n)
{
	int rc = need(c, n);
	if (rc == 0) {
		if (n)
			memcpy(dst, c->p + c->pos, n);
		c->pos += n;
	}
	return rc;
}

int bk_cur_skip(bk_cur *c, size_t n)
{
	int rc = need(c, n);
	if (rc == 0)
		c->pos += n;
	return rc;
}

static int str_of(bk_cur *c, size_t start, size_t n, const uint8_t **out, size_t *out_len,
		  size_t max)
{
	if (n > max) {
		c->pos = start;
		return bk__error_set(BK_EFORMAT, "too-long",
				     "length-prefixed field of %zu bytes exceeds the limit of %zu", n,
				     max);
	}
	int rc = bk_cur_bytes(c, out, n);
	if (rc != 0) {
		c->pos = start;
		return rc;
	}
	*out_len = n;
	return 0;
}

int bk_cur_str8(bk_cur *c, const uint8_t **out, size_t *out_len, size_t max)
{
	size_t start = c->pos;
	uint8_t n;
	int rc = bk_cur_u8(c, &n);
	return rc ? rc : str_of(c, start, n, out, out_len, max);
}

int bk_cur_str16be(bk_cur *c, const uint8_t **out, size_t *out_len, size_t max)
{
	size_t start = c->pos;
	uint16_t n;
	int rc = bk_cur_u16be(c, &n);
	return rc ? rc : str_of(c, start, n, out, out_len, max);
}

int bk_cur_str32be(bk_cur *c, const uint8_t **out, size_t *out_len, size_t max)
{
	size_t start = c->pos;
	uint32_t n;
	int rc = bk_cur_u32be(c, &n);
	return rc ? rc : str_of(c, start, n, out, out_len, max);
}

void bk_cur_rest(bk_cur *c, const uint8_t **out, size_t *out_len)
{
	*out = c->p + c->pos;
	*out_len = bk_cur_left(c);
	c->pos = c->len;
}

/* --- bk_buf --- */

int bk_buf_reserve(bk_buf *b, size_t extra)
{
	size_t want;
	if (!bk_size_add(&want, b->len, extra))
		return bk__error_oom();
	if (want + 1 <= b->cap) /* keep room for a terminating NUL */
		return 0;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < want + 1) {
		if (!bk_size_mul(&cap, cap, 2))
			return bk__error_oom();
	}
	uint8_t *p;
	if (b->secret) {
		p = bk__malloc(cap);
		if (p == NULL)
			return BK_ENOMEM;
		if (b->len)
			memcpy(p, b->data, b->len);
		if (b->data) {
			sodium_memzero(b->data, b->cap);
			bk__free(b->data);
		}
	} else {
		p = bk__realloc(b->data, cap);
		if (p == NULL)
			return BK_ENOMEM;
	}
	b->data = p;
	b->cap = cap;
	return 0;
}

int bk_buf_put(bk_buf *b, const void *p, size_t n)
{
	int rc = bk_buf_reserve(b, n);
	if (rc)
		return rc;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

int bk_buf_put_u8(bk_buf *b, uint8_t v)
{
	return bk_buf_put(b, &v, 1);
}

int bk_buf_put_u16be(bk_buf *b, uint16_t v)
{
	uint8_t t[2];
	bk_put_u16be(t, v);
	return bk_buf_put(b, t, 2);
}

int bk_buf_put_u32be(bk_buf *b, uint32_t v)
{
	uint8_t t[4];
	bk_put_u32be(t, v);
	return bk_buf_put(b, t, 4);
}

int bk_buf_put_u64be(bk_buf *b, uint64_t v)
{
	uint8_t t[8];
	bk_put_u64be(t, v);
	return bk_buf_put(b, t, 8);
}

int bk_buf_put_u32le(bk_buf *b, uint32_t v)
{
	uint8_t t[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
	return bk_buf_put(b, t, 4);
}

int bk_buf_put_u64le(bk_buf *b, uint64_t v)
{
	uint8_t t[8];
	bk_put_u64le(t, v);
	return bk_buf_put(b, t, 8);
}

int bk_buf_put_str(bk_buf *b, const char *s)
{
	return bk_buf_put(b, s, strlen(s));
}

int bk_buf_printf(bk_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return bk__error_set(BK_EINVALID, NULL, "bad format string");
	int rc = bk_buf_reserve(b, (size_t)n + 1);
	if (rc)
		return rc;
	va_start(ap, fmt);
	vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

int bk_buf_cstr(bk_buf *b)
{
	int rc = bk_buf_reserve(b, 1);
	if (rc)
		return rc;
	b->data[b->len] = '\0';
	return 0;
}

void bk_buf_reset(bk_buf *b)
{
	if (b->secret && b->data)
		sodium_memzero(b->data, b->cap);
	b->len = 0;
}

void bk_buf_free(bk_buf *b)
{
	if (b->data && b->secret)
		sodium_memzero(b->data, b->cap);
	bk__free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

uint8_t *bk_buf_steal(bk_buf *b, size_t *out_len)
{
	uint8_t *d = b->data;
	if (out_len)
		*out_len = b->len;
	b->data = NULL;
	b->len = b->cap = 0;
	return d;
}
