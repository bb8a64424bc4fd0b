/* Framing: a 2-byte big-endian length before each Noise message. */
#include <string.h>

#include "device/device_internal.h"

static const char *stream_name(const bk_stream *s)
{
	return s->ops->name ? s->ops->name : "stream";
}

int bk_frame_encode(uint8_t *out, size_t cap, size_t *out_len, const void *data, size_t len)
{
	if (out == NULL || out_len == NULL || (data == NULL && len > 0))
		return bk__error_set(BK_EINVALID, NULL, "frame: nothing to encode");
	*out_len = 0;
	if (len > BK_FRAME_MAX)
		return bk__error_set(BK_EINVALID, "frame-too-large",
				     "frame: %zu bytes is over the %d-byte limit", len,
				     BK_FRAME_MAX);
	if (cap < BK_FRAME_HEADER_LEN || cap - BK_FRAME_HEADER_LEN < len)
		return bk__error_set(BK_ENOSPACE, "too-large",
				     "frame: %zu bytes do not fit in %zu",
				     len + BK_FRAME_HEADER_LEN, cap);
	bk_put_u16be(out, (uint16_t)len);
	if (len)
		memmove(out + BK_FRAME_HEADER_LEN, data, len);
	*out_len = len + BK_FRAME_HEADER_LEN;
	return 0;
}

int bk_frame_decode(bk_cur *c, const uint8_t **out, size_t *out_len, size_t max)
{
	uint16_t len;
	size_t start = c->pos;
	*out = NULL;
	*out_len = 0;
	if (bk_cur_u16be(c, &len) != 0)
		return bk__error_set(BK_EFORMAT, "frame-truncated",
				     "frame: truncated inside the length");
	if (len > max) {
		c->pos = start;
		return bk__error_set(BK_EFORMAT, "frame-too-large",
				     "frame: %u bytes is over the %zu-byte limit", len, max);
	}
	if (bk_cur_bytes(c, out, len) != 0) {
		size_t left = bk_cur_left(c);
		c->pos = start;
		return bk__error_set(BK_EFORMAT, "frame-truncated",
				     "frame: truncated: %zu of %u bytes", left, len);
	}
	*out_len = len;
	return 0;
}

int bk_frame_write(bk_stream *s, const void *data, size_t len, bk_deadline d)
{
	enum { SMALL = 2048 };
	uint8_t small[SMALL];
	uint8_t *buf = small;
	size_t n = 0;
	int rc;
	if (s == NULL)
		return bk__error_set(BK_EINVALID, NULL, "frame: no stream");
	if (len > BK_FRAME_MAX)
		return bk__error_set(BK_EINVALID, "frame-too-large",
				     "frame: %zu bytes is over the %d-byte limit", len,
				     BK_FRAME_MAX);
	/* Header and payload in one write, so TCP_NODELAY sends one segment. */
	if (len + BK_FRAME_HEADER_LEN > SMALL) {
		buf = bk__malloc(len + BK_FRAME_HEADER_LEN);
		if (buf == NULL)
			return BK_ENOMEM;
	}
	rc = bk_frame_encode(buf, len + BK_FRAME_HEADER_LEN, &n, data, len);
	if (rc)
		goto done;
	rc = bk_stream_write(s, buf, n, d);
done:
	if (buf != small)
		bk__free(buf);
	return rc;
}

#define END_OF_STREAM 1

/* Reads exactly `len` bytes; an early end of stream returns END_OF_STREAM
 * (no error set). `got` says how many arrived. */
static int read_exact(bk_stream *s, uint8_t *buf, size_t len, size_t *got, bk_deadline d)
{
	*got = 0;
	while (*got < len) {
		size_t n;
		int rc = bk_stream_read(s, buf + *got, len - *got, &n, d);
		if (rc)
			return rc;
		if (n == 0)
			return END_OF_STREAM;
		*got += n;
	}
	return 0;
}

int bk_frame_read(bk_stream *s, void *buf, size_t cap, size_t *out_len, bk_deadline d)
{
	uint8_t hdr[BK_FRAME_HEADER_LEN];
	size_t got;
	int rc;
	if (out_len)
		*out_len = 0;
	if (s == NULL || out_len == NULL || (buf == NULL && cap > 0))
		return bk__error_set(BK_EINVALID, NULL, "frame: nothing to read into");
	rc = read_exact(s, hdr, sizeof(hdr), &got, d);
	if (rc == END_OF_STREAM && got == 0)
		return bk__error_set(BK_EDISCONNECTED, "closed", "%s: connection closed by peer",
				     stream_name(s));
	if (rc == END_OF_STREAM)
		return bk__error_set(BK_EDISCONNECTED, "frame-truncated",
				     "%s: connection closed inside a frame header", stream_name(s));
	if (rc)
		return rc;
	size_t len = bk_get_u16be(hdr);
	if (len > cap)
		return bk__error_set(BK_EFORMAT, "frame-too-large",
				     "%s: frame of %zu bytes is over the %zu-byte limit",
				     stream_name(s), len, cap);
	rc = read_exact(s, buf, len, &got, d);
	if (rc == END_OF_STREAM)
		return bk__error_set(BK_EDISCONNECTED, "frame-truncated",
				     "%s: connection closed after %zu of %zu frame bytes",
				     stream_name(s), got, len);
	if (rc)
		return rc;
	*out_len = len;
	return 0;
}
