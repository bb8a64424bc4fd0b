/* Internal: HMAC and HKDF on libsodium (which has no HKDF in 1.0.18).
 * SHA-256 flavours per RFC 2104 / RFC 5869 (age); BLAKE2b flavours as the
 * Noise specification defines them (HMAC with a 128-byte block, HKDF
 * producing two or three 64-byte outputs). */
#ifndef BK_CRYPTO_KDF_H
#define BK_CRYPTO_KDF_H

#include <stddef.h>
#include <stdint.h>

#define BK_SHA256_LEN 32
#define BK_BLAKE2B_LEN 64

void bk_hmac_sha256(uint8_t out[BK_SHA256_LEN], const uint8_t *key, size_t key_len,
		    const uint8_t *msg, size_t msg_len);
/* HKDF-SHA256 (RFC 5869): extract with `salt` (NULL/0: zeros), expand with
 * `info` to `out_len` bytes (at most 255 * 32). Returns 0 or BK_EINVALID. */
int bk_hkdf_sha256(uint8_t *out, size_t out_len, const uint8_t *ikm, size_t ikm_len,
		   const uint8_t *salt, size_t salt_len, const uint8_t *info, size_t info_len);

void bk_hmac_blake2b(uint8_t out[BK_BLAKE2B_LEN], const uint8_t *key, size_t key_len,
		     const uint8_t *msg, size_t msg_len);
/* Noise's HKDF(chaining_key, input_key_material, num_outputs): writes 2 or 3
 * outputs of 64 bytes each (out3 may be NULL). */
void bk_noise_hkdf_blake2b(uint8_t out1[BK_BLAKE2B_LEN], uint8_t out2[BK_BLAKE2B_LEN],
			   uint8_t out3[BK_BLAKE2B_LEN], const uint8_t ck[BK_BLAKE2B_LEN],
			   const uint8_t *ikm, size_t ikm_len);

#endif
