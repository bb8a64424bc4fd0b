/* Fuzz target: the plaintext message codec, the ERROR body reader and the
 * HELLO checks. A message that decodes must re-encode and decode to the same
 * message. */
#include <stdlib.h>
#include <string.h>

#include "device/device_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t out[BK_PROTO_MSG_MAX];
	bk_proto_msg m, again;
	size_t n;
	int rc = bk_proto_msg_decode(&m, data, size);
	if (rc) {
		if (rc != BK_EFORMAT || m.json != NULL)
			abort();
		return 0;
	}
	rc = bk_proto_msg_encode(out, sizeof(out), &n, &m);
	if (rc == BK_ENOSPACE && m.json) {
		/* Re-encoding may grow a body written tersely ("1E2" -> "100.0"). */
		bk_proto_msg_clear(&m);
		return 0;
	}
	if (rc != 0)
		abort();
	if (bk_proto_msg_decode(&again, out, n) != 0)
		abort();
	if (again.type != m.type || again.id != m.id || again.offset != m.offset ||
	    again.data_len != m.data_len ||
	    (m.data_len && memcmp(again.data, m.data, m.data_len) != 0))
		abort();
	if (m.json && !json_equal(m.json, again.json))
		abort();

	if (m.type == BK_MSG_ERROR) {
		rc = bk_proto_error_decode(m.json);
		if (rc >= 0)
			abort();
	}
	if (m.type == BK_MSG_HELLO) {
		uint32_t v;
		if (bk_proto_hello_select(m.json, 1, 3, &v) == 0 && (v < 1 || v > 3))
			abort();
		if (bk_proto_hello_accept(m.json, 1, 3, &v) == 0 && (v < 1 || v > 3))
			abort();
	}
	bk_proto_msg_clear(&m);
	bk_proto_msg_clear(&again);
	return 0;
}
