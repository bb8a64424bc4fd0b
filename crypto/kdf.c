/* HMAC and HKDF over SHA-256 and BLAKE2b. */
#include <string.h>

#include <sodium.h>

#include "crypto/kdf.h"
#include "libbackup/util/util.h"

void bk_hmac_sha256(uint8_t out[BK_SHA256_LEN], const uint8_t *key, size_t key_len,
		    const uint8_t *msg, size_t msg_len)
{
	crypto_auth_hmacsha256_state st;
	crypto_auth_hmacsha256_init(&st, key, key_len);
	crypto_auth_hmacsha256_update(&st, msg, msg_len);
	crypto_auth_hmacsha256_final(&st, out);
	sodium_memzero(&st, sizeof(st));
}

int bk_hkdf_sha256(uint8_t *out, size_t out_len, const uint8_t *ikm, size_t ikm_len,
		   const uint8_t *salt, size_t salt_len, const uint8_t *info, size_t info_len)
{
	static const uint8_t zeros[BK_SHA256_LEN];
	uint8_t prk[BK_SHA256_LEN], t[BK_SHA256_LEN];
	size_t done = 0;
	if (out_len > 255 * BK_SHA256_LEN)
		return bk__error_set(BK_EINVALID, NULL, "hkdf: output too long");
	if (salt == NULL || salt_len == 0) {
		salt = zeros;
		salt_len = sizeof(zeros);
	}
	bk_hmac_sha256(prk, salt, salt_len, ikm, ikm_len);
	for (uint8_t i = 1; done < out_len; i++) {
		crypto_auth_hmacsha256_state st;
		crypto_auth_hmacsha256_init(&st, prk, sizeof(prk));
		if (i > 1)
			crypto_auth_hmacsha256_update(&st, t, sizeof(t));
		crypto_auth_hmacsha256_update(&st, info, info_len);
		crypto_auth_hmacsha256_update(&st, &i, 1);
		crypto_auth_hmacsha256_final(&st, t);
		sodium_memzero(&st, sizeof(st));
		size_t n = out_len - done < sizeof(t) ? out_len - done : sizeof(t);
		memcpy(out + done, t, n);
		done += n;
	}
	sodium_memzero(prk, sizeof(prk));
	sodium_memzero(t, sizeof(t));
	return 0;
}

#define BLAKE2B_BLOCK 128

void bk_hmac_blake2b(uint8_t out[BK_BLAKE2B_LEN], const uint8_t *key, size_t key_len,
		     const uint8_t *msg, size_t msg_len)
{
	uint8_t k[BLAKE2B_BLOCK], pad[BLAKE2B_BLOCK], inner[BK_BLAKE2B_LEN];
	crypto_generichash_blake2b_state st;
	memset(k, 0, sizeof(k));
	if (key_len > BLAKE2B_BLOCK)
		crypto_generichash_blake2b(k, BK_BLAKE2B_LEN, key, key_len, NULL, 0);
	else if (key_len)
		memcpy(k, key, key_len);
	for (int i = 0; i < BLAKE2B_BLOCK; i++)
		pad[i] = k[i] ^ 0x36;
	crypto_generichash_blake2b_init(&st, NULL, 0, BK_BLAKE2B_LEN);
	crypto_generichash_blake2b_update(&st, pad, sizeof(pad));
	crypto_generichash_blake2b_update(&st, msg, msg_len);
	crypto_generichash_blake2b_final(&st, inner, sizeof(inner));
	for (int i = 0; i < BLAKE2B_BLOCK; i++)
		pad[i] = k[i] ^ 0x5c;
	crypto_generichash_blake2b_init(&st, NULL, 0, BK_BLAKE2B_LEN);
	crypto_generichash_blake2b_update(&st, pad, sizeof(pad));
	crypto_generichash_blake2b_update(&st, inner, sizeof(inner));
	crypto_generichash_blake2b_final(&st, out, BK_BLAKE2B_LEN);
	sodium_memzero(k, sizeof(k));
	sodium_memzero(pad, sizeof(pad));
	sodium_memzero(inner, sizeof(inner));
	sodium_memzero(&st, sizeof(st));
}

void bk_noise_hkdf_blake2b(uint8_t out1[BK_BLAKE2B_LEN], uint8_t out2[BK_BLAKE2B_LEN],
			   uint8_t out3[BK_BLAKE2B_LEN], const uint8_t ck[BK_BLAKE2B_LEN],
			   const uint8_t *ikm, size_t ikm_len)
{
	uint8_t temp[BK_BLAKE2B_LEN], buf[BK_BLAKE2B_LEN + 1];
	bk_hmac_blake2b(temp, ck, BK_BLAKE2B_LEN, ikm, ikm_len);
	buf[0] = 0x01;
	bk_hmac_blake2b(out1, temp, sizeof(temp), buf, 1);
	memcpy(buf, out1, BK_BLAKE2B_LEN);
	buf[BK_BLAKE2B_LEN] = 0x02;
	bk_hmac_blake2b(out2, temp, sizeof(temp), buf, sizeof(buf));
	if (out3) {
		memcpy(buf, out2, BK_BLAKE2B_LEN);
		buf[BK_BLAKE2B_LEN] = 0x03;
		bk_hmac_blake2b(out3, temp, sizeof(temp), buf, sizeof(buf));
	}
	sodium_memzero(temp, sizeof(temp));
	sodium_memzero(buf, sizeof(buf));
}
