/* Fuzzes the initiator of Noise_XX: the input plays the responder (message 2,
 * then transport messages; see tests/crypto_noise/fuzz_common.h). */
#include "tests/crypto_noise/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t msg[BK_NOISE_MAX_MSG], payload[BK_NOISE_MAX_MSG];
	bk_noise_handshake *hs;
	bk_noise_cipher *send = NULL, *recv = NULL;
	const uint8_t *f;
	size_t flen, n;
	bk_cur cur;
	if (bk_init() != 0)
		abort();
	bk_cur_init(&cur, data, size);
	hs = fuzz_noise_side(true);
	if (bk_noise_handshake_write_message(hs, NULL, 0, msg, sizeof(msg), &n) != 0)
		abort();
	if (bk_cur_str16be(&cur, &f, &flen, BK_NOISE_MAX_MSG) != 0)
		goto done;
	int rc = bk_noise_handshake_read_message(hs, f, flen, payload, sizeof(payload), &n);
	fuzz_noise_expect(rc);
	if (rc != 0)
		goto done;
	if (bk_noise_handshake_remote_static(hs) == NULL || n > flen)
		abort();
	if (bk_noise_handshake_write_message(hs, (const uint8_t *)"cert", 4, msg, sizeof(msg),
	                                     &n) != 0 ||
	    !bk_noise_handshake_is_finished(hs) || bk_noise_handshake_split(hs, &send, &recv) != 0)
		abort();
	fuzz_noise_transport(&cur, recv);
done:
	bk_noise_cipher_free(send);
	bk_noise_cipher_free(recv);
	bk_noise_handshake_free(hs);
	return 0;
}
