/* Fuzzes the terminal side of the device channel: the input plays the unit
 * (handshake message 2 with its certificate, then transport messages), with
 * the terminal's checks of the unit's certificate and serial
 * (tests/fuzz/fuzz_handshake_common.h). */
#include "tests/fuzz/fuzz_handshake_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const fh_world *w = fh_world_get();
	bk_channel_cfg cfg;
	bk_channel *ch = NULL;
	fh_terminal_cfg(&cfg, w);
	int rc =
	    bk_channel_connect(&ch, fh_stream_new(data, size, NULL), 1, &cfg, BK_DEADLINE_NONE);
	if (rc != 0 && rc != BK_EAUTH && rc != BK_EDISCONNECTED)
		abort();
	if (rc == 0) {
		if (strcmp(bk_cert_serial(bk_channel_peer_cert(ch)), FH_SERIAL) != 0)
			abort();
		fh_drain(ch);
	}
	bk_channel_free(ch);
	return 0;
}
