/* Internal: Bech32 (BIP 173) as age uses it: no overall length limit, data
 * converted between 8-bit bytes and 5-bit groups without padding bits. */
#ifndef BK_CRYPTO_BECH32_H
#define BK_CRYPTO_BECH32_H

#include <stddef.h>
#include <stdint.h>

/* The encoded length of `len` bytes under `hrp`, without the NUL. */
size_t bk_bech32_encoded_len(size_t hrp_len, size_t len);

/* Encodes `data` under `hrp`; the output is upper case when `hrp` is (mixed
 * case is refused). `out_size` must hold the encoded length plus a NUL.
 * Returns 0 or BK_EINVALID. */
int bk_bech32_encode(char *out, size_t out_size, const char *hrp, const uint8_t *data, size_t len);

/* Decodes `s` (`s_len` bytes, all lower or all upper case). The HRP is copied
 * as written into `hrp` (NUL-terminated, at most `hrp_size` - 1 bytes), the
 * data into `data` (at most `data_size` bytes). Returns 0 or BK_EFORMAT
 * (reason "bech32-invalid"). */
int bk_bech32_decode(char *hrp, size_t hrp_size, uint8_t *data, size_t data_size, size_t *out_len,
                     const char *s, size_t s_len);

#endif
