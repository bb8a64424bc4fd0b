/* Fuzz target: the frame reader (over a stream and over a cursor). The first
 * two bytes choose the caller's limit; the rest is the wire. */
#include <stdlib.h>
#include <string.h>

#include "device/device_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[BK_FRAME_MAX];
	static uint8_t again[BK_FRAME_MAX + BK_FRAME_HEADER_LEN];
	size_t cap = BK_FRAME_MAX;
	if (size >= 2) {
		cap = bk_get_u16be(data);
		data += 2;
		size -= 2;
	}

	/* From a stream, until the end or an error. */
	bk_stream *s = NULL;
	if (bk_stream_mem_reader(&s, data, size) != 0)
		return 0;
	size_t consumed = 0;
	for (;;) {
		size_t n = 0;
		int rc = bk_frame_read(s, buf, cap, &n, BK_DEADLINE_NONE);
		if (rc) {
			if (rc != BK_EDISCONNECTED && rc != BK_EFORMAT)
				abort();
			break;
		}
		if (n > cap)
			abort();
		consumed += n + BK_FRAME_HEADER_LEN;
	}
	bk_stream_free(s);

	/* From a cursor: the same frames, and each re-encodes to its bytes. */
	bk_cur c;
	size_t decoded = 0;
	bk_cur_init(&c, data, size);
	for (;;) {
		const uint8_t *p;
		size_t n, m, start = c.pos;
		if (bk_frame_decode(&c, &p, &n, cap) != 0) {
			if (c.pos != start)
				abort();
			break;
		}
		if (bk_frame_encode(again, sizeof(again), &m, p, n) != 0 ||
		    m != n + BK_FRAME_HEADER_LEN || memcmp(again, data + start, m) != 0)
			abort();
		decoded += m;
	}
	if (decoded != consumed)
		abort();
	return 0;
}
