/* Shared by the Noise fuzz targets: the fixed keys of both sides of an XX
 * handshake and the input format. An input is a sequence of frames, each a
 * 2-byte big-endian length and that many bytes: the peer's handshake
 * messages in order, then transport messages. */
#ifndef BK_TESTS_CRYPTO_NOISE_FUZZ_COMMON_H
#define BK_TESTS_CRYPTO_NOISE_FUZZ_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libbackup/libbackup.h>

#include "crypto/noise.h"
#include "libbackup/util/util.h"

#define FUZZ_NOISE_PROTOCOL "Noise_XX_25519_ChaChaPoly_BLAKE2b"
#define FUZZ_NOISE_PROLOGUE "aibo-restore/1"

/* Static and ephemeral secrets: initiator 0x11/0x12, responder 0x21/0x22. */
static inline void fuzz_noise_key(uint8_t out[32], uint8_t v)
{
	memset(out, v, 32);
}

static inline bk_noise_handshake *fuzz_noise_side(bool initiator)
{
	bk_noise_handshake *hs = NULL;
	uint8_t s[32], e[32];
	fuzz_noise_key(s, initiator ? 0x11 : 0x21);
	fuzz_noise_key(e, initiator ? 0x12 : 0x22);
	if (bk_noise_handshake_new(&hs, FUZZ_NOISE_PROTOCOL, initiator,
	                           (const uint8_t *)FUZZ_NOISE_PROLOGUE,
	                           strlen(FUZZ_NOISE_PROLOGUE)) != 0 ||
	    bk_noise_handshake_set_local_static(hs, s) != 0 ||
	    bk_noise__handshake_set_ephemeral(hs, e) != 0)
		abort();
	return hs;
}

/* The library may only fail a read with these codes. */
static inline void fuzz_noise_expect(int rc)
{
	if (rc != 0 && rc != BK_EVERIFY && rc != BK_EFORMAT)
		abort();
}

/* Decrypts every remaining frame with `recv`; a frame that does not
 * authenticate stops the session. */
static inline void fuzz_noise_transport(bk_cur *cur, bk_noise_cipher *recv)
{
	static uint8_t plain[BK_NOISE_MAX_MSG];
	const uint8_t *f;
	size_t flen;
	while (bk_cur_str16be(cur, &f, &flen, BK_NOISE_MAX_MSG) == 0) {
		int rc = bk_noise_cipher_decrypt(recv, NULL, 0, f, flen, plain);
		fuzz_noise_expect(rc);
		if (rc != 0)
			break;
	}
}

#endif
