/* Internal: the Noise Protocol Framework (revision 34) for the suite
 * 25519_ChaChaPoly_BLAKE2b, on libsodium.
 *
 * A handshake is driven by a general pattern engine that knows the 15
 * fundamental patterns (NN NK NX KN KK KX XN XK XX IN IK IX, one-way N K X)
 * and the pskN modifiers ("Noise_XXpsk3_...", "Noise_NNpsk0+psk2_..."; one
 * 32-byte PSK serves every psk token). Usage:
 *
 *   bk_noise_handshake_new(&hs, "Noise_XX_25519_ChaChaPoly_BLAKE2b", true,
 *                          prologue, prologue_len);
 *   bk_noise_handshake_set_local_static(hs, secret);   // keys first ...
 *   while (!bk_noise_handshake_is_finished(hs))         // ... then messages
 *           bk_noise_handshake_is_my_turn(hs) ? write_message(...) : read_message(...);
 *   bk_noise_handshake_split(hs, &send, &recv);
 *   bk_noise_cipher_encrypt(send, ...); bk_noise_cipher_decrypt(recv, ...);
 *
 * Keys (static, PSK, remote static) must be set before the first message is
 * written or read; setting one later is BK_EINVALID. Writing when the peer is
 * due to send, reading when we are due, or any call after a failed read is
 * BK_EINVALID (reason "out-of-order" / "handshake-failed"): a handshake that
 * failed is dead and must be freed.
 *
 * Every Noise message (handshake or transport) is at most 65535 bytes. All
 * key material lives in sodium_malloc memory, wiped when freed; the chaining
 * key and handshake cipher key are wiped at split. Encryption and decryption
 * of transport messages allocate nothing and may work in place. */
#ifndef BK_CRYPTO_NOISE_H
#define BK_CRYPTO_NOISE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BK_NOISE_KEY_LEN     32    /* X25519 keys, PSK, cipher keys */
#define BK_NOISE_HASH_LEN    64    /* BLAKE2b-512 handshake hash */
#define BK_NOISE_TAG_LEN     16    /* Poly1305 tag */
#define BK_NOISE_MAX_MSG     65535 /* largest Noise message */
#define BK_NOISE_MAX_PAYLOAD (BK_NOISE_MAX_MSG - BK_NOISE_TAG_LEN)

typedef struct bk_noise_handshake bk_noise_handshake;
typedef struct bk_noise_cipher bk_noise_cipher;

/* --- Keys ----------------------------------------------------------------- */

/* A fresh X25519 key pair (secret from the system RNG). */
int bk_noise_keygen(uint8_t pub[BK_NOISE_KEY_LEN], uint8_t secret[BK_NOISE_KEY_LEN]);
/* The public key of an X25519 secret key. */
int bk_noise_public_key(uint8_t pub[BK_NOISE_KEY_LEN], const uint8_t secret[BK_NOISE_KEY_LEN]);

/* --- Handshake ------------------------------------------------------------ */

/* Starts a handshake for `protocol` ("Noise_<pattern>_25519_ChaChaPoly_BLAKE2b").
 * Another suite or an unknown pattern/modifier is BK_EINCOMPAT (reason
 * "noise-unsupported"); a string that is not a Noise protocol name is
 * BK_EINVALID. The prologue (may be NULL when its length is 0) is mixed in
 * now and must be identical on both sides, or the handshake fails. */
int bk_noise_handshake_new(bk_noise_handshake **out, const char *protocol, bool initiator,
                           const uint8_t *prologue, size_t prologue_len);
void bk_noise_handshake_free(bk_noise_handshake *hs);

/* Our static key pair, from its secret half (the public half is derived). */
int bk_noise_handshake_set_local_static(bk_noise_handshake *hs,
                                        const uint8_t secret[BK_NOISE_KEY_LEN]);
/* The peer's static public key known in advance (the K and I initiators of
 * *K patterns, responders of K* patterns). Setting one the pattern does not
 * use as a pre-message is BK_EINVALID. */
int bk_noise_handshake_set_remote_static(bk_noise_handshake *hs,
                                         const uint8_t pub[BK_NOISE_KEY_LEN]);
/* The pre-shared key of a pskN pattern (BK_EINVALID for other patterns). */
int bk_noise_handshake_set_psk(bk_noise_handshake *hs, const uint8_t psk[BK_NOISE_KEY_LEN]);

/* Writes our next handshake message carrying `payload` into `out` (`cap`
 * bytes; payload and out must not overlap). BK_ENOSPACE ("buffer-too-small")
 * when `cap` cannot hold it, BK_EINVALID ("message-too-large") past 65535
 * bytes; neither changes the state. */
int bk_noise_handshake_write_message(bk_noise_handshake *hs, const uint8_t *payload,
                                     size_t payload_len, uint8_t *out, size_t cap, size_t *out_len);
/* Reads the peer's next handshake message and writes its payload into
 * `payload_out` (`cap` bytes). Errors: BK_EFORMAT ("handshake-truncated",
 * "message-too-large"), BK_EVERIFY ("handshake-auth" for a failed AEAD check,
 * "low-order-point" for an all-zero DH result); these end the handshake.
 * BK_ENOSPACE ("buffer-too-small") leaves the state unchanged. */
int bk_noise_handshake_read_message(bk_noise_handshake *hs, const uint8_t *msg, size_t len,
                                    uint8_t *payload_out, size_t cap, size_t *payload_len);

/* Size of our next handshake message for a payload of `payload_len` bytes
 * (0 when it is not our turn). */
size_t bk_noise_handshake_message_len(const bk_noise_handshake *hs, size_t payload_len);
bool bk_noise_handshake_is_my_turn(const bk_noise_handshake *hs);
bool bk_noise_handshake_is_finished(const bk_noise_handshake *hs);
bool bk_noise_handshake_is_initiator(const bk_noise_handshake *hs);
/* The peer's static public key once known (received or preset), else NULL.
 * Borrowed: lives as long as `hs`. */
const uint8_t *bk_noise_handshake_remote_static(const bk_noise_handshake *hs);
/* Our static public key, or NULL when none was set. */
const uint8_t *bk_noise_handshake_local_static(const bk_noise_handshake *hs);
/* The handshake hash h (channel binding); BK_EINVALID before the handshake
 * is finished. */
int bk_noise_handshake_hash(const bk_noise_handshake *hs, uint8_t out[BK_NOISE_HASH_LEN]);
/* Derives the transport ciphers once the handshake is finished (once only).
 * Both outputs belong to the caller. For one-way patterns (N, K, X) the
 * initiator gets only `send` and the responder only `recv`; the other is
 * set to NULL. */
int bk_noise_handshake_split(bk_noise_handshake *hs, bk_noise_cipher **send,
                             bk_noise_cipher **recv);

/* --- Transport ------------------------------------------------------------ */

/* Encrypts `len` bytes (len + 16 <= 65535) with associated data `ad` (may be
 * NULL when adlen is 0) into `out`, which receives len + 16 bytes; `out` may
 * equal `plaintext`. BK_ERROR ("nonce-exhausted") once 2^64-1 messages were
 * sent: rekeying does not reset it, a new handshake is needed. */
int bk_noise_cipher_encrypt(bk_noise_cipher *cs, const uint8_t *ad, size_t adlen,
                            const uint8_t *plaintext, size_t len, uint8_t *out);
/* Decrypts a `len`-byte transport message into `out` (len - 16 bytes; may
 * equal `ciphertext`). BK_EVERIFY ("frame-auth") when it does not
 * authenticate (the nonce does not advance), BK_EFORMAT ("frame-truncated"
 * or "message-too-large") for a bad length. */
int bk_noise_cipher_decrypt(bk_noise_cipher *cs, const uint8_t *ad, size_t adlen,
                            const uint8_t *ciphertext, size_t len, uint8_t *out);
/* Noise's Rekey(): the key becomes ENCRYPT(k, 2^64-1, "", zeros)[0..32). */
int bk_noise_cipher_rekey(bk_noise_cipher *cs);
/* The next nonce the cipher will use. */
uint64_t bk_noise_cipher_nonce(const bk_noise_cipher *cs);
void bk_noise_cipher_free(bk_noise_cipher *cs);

/* --- Test hooks ------------------------------------------------------------ */

/* Uses `secret` as our ephemeral key instead of a random one (test vectors).
 * Must be called before our "e" token is written. */
int bk_noise__handshake_set_ephemeral(bk_noise_handshake *hs,
                                      const uint8_t secret[BK_NOISE_KEY_LEN]);
/* Sets the cipher's next nonce (exhaustion tests). */
void bk_noise__cipher_set_nonce(bk_noise_cipher *cs, uint64_t n);

#endif
