/* Fuzzes the unit side of the device channel: the input plays the terminal
 * (handshake messages 1 and 3, then transport messages), with the unit's
 * checks of the terminal's certificate (tests/fuzz/fuzz_handshake_common.h). */
#include "tests/fuzz/fuzz_handshake_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const fh_world *w = fh_world_get();
	bk_channel_cfg cfg;
	bk_channel *ch = NULL;
	fh_unit_cfg(&cfg, w);
	int rc = bk_channel_accept(&ch, fh_stream_new(data, size, NULL), 1, &cfg, BK_DEADLINE_NONE);
	if (rc != 0 && rc != BK_EAUTH && rc != BK_EDISCONNECTED)
		abort();
	if (rc == 0) {
		if (bk_channel_peer_cert(ch) == NULL)
			abort();
		fh_drain(ch);
	}
	bk_channel_free(ch);
	return 0;
}
