/* Internal: Ed25519 signatures in the minisign formats.
 *
 * Key files are two lines: "untrusted comment: ..." and base64 of
 *   public key: "Ed" || key id (8) || Ed25519 public key (32)
 *   secret key: "Ed" || KDF ("Sc" scrypt, or 0,0 none) || "B2" || salt (32) ||
 *               opslimit (u64le) || memlimit (u64le) ||
 *               [key id (8) || Ed25519 secret key (64) || BLAKE2b-256 checksum (32)]
 *               where the bracketed part is XORed with scrypt(passphrase) output
 *               when the KDF is "Sc"; the checksum covers "Ed" || key id || secret.
 * Signature files are four lines:
 *   untrusted comment: <free text>
 *   base64("ED" || key id || Ed25519(BLAKE2b-512(message)))   (or legacy "Ed": the
 *                                                              message signed as is)
 *   trusted comment: <text>
 *   base64(Ed25519(signature || trusted comment text))
 * The key id is shown as minisign does: 16 upper-case hex digits of the id read
 * as a little-endian 64-bit number. */
#ifndef BK_CRYPTO_MINISIGN_H
#define BK_CRYPTO_MINISIGN_H

#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#include <libbackup/stream.h>

#define BK_MINISIGN_KEYID_LEN 8
#define BK_MINISIGN_PK_LEN    32
#define BK_MINISIGN_SIG_LEN   64
#define BK_MINISIGN_HASH_LEN  64
/* Longest comment lines accepted (bytes after the prefix). */
#define BK_MINISIGN_COMMENT_MAX         1024
#define BK_MINISIGN_TRUSTED_COMMENT_MAX 8192
/* Largest key or signature file read. */
#define BK_MINISIGN_FILE_MAX 16384
/* Strongest scrypt parameters accepted when reading an encrypted secret key
 * (minisign itself writes 2^25 and 1 GiB). */
#define BK_MINISIGN_OPSLIMIT_MAX (UINT64_C(1) << 26)
#define BK_MINISIGN_MEMLIMIT_MAX (UINT64_C(1) << 30)
/* Legacy ("Ed") signatures need the whole message in memory: files larger than
 * this are refused for them. */
#define BK_MINISIGN_LEGACY_MAX ((size_t)1 << 30)

typedef struct bk_minisign_pubkey {
	uint8_t key_id[BK_MINISIGN_KEYID_LEN];
	uint8_t pk[BK_MINISIGN_PK_LEN];
} bk_minisign_pubkey;

/* A secret key: key id, public key, and the 64-byte Ed25519 secret key in
 * secret memory. */
typedef struct bk_minisign_seckey bk_minisign_seckey;

/* A parsed signature file. */
typedef struct bk_minisign_sig bk_minisign_sig;

/* --- Keys ---------------------------------------------------------------- */

/* A new random key pair with a random key id. */
int bk_minisign_keygen(bk_minisign_seckey **out);
void bk_minisign_seckey_free(bk_minisign_seckey *sk);
/* The public half (key id and public key). */
void bk_minisign_seckey_pubkey(const bk_minisign_seckey *sk, bk_minisign_pubkey *out);
/* The 64-byte Ed25519 secret key (seed || public key), borrowed. */
const uint8_t *bk_minisign_seckey_ed25519(const bk_minisign_seckey *sk);

/* Key id as minisign prints it ("6CF7727929D668F3"). */
void bk_minisign_key_id_hex(char out[17], const uint8_t key_id[BK_MINISIGN_KEYID_LEN]);

/* Parses a public key: a key file (comment line, base64 line, optional final
 * newline) or the bare base64 string. BK_EFORMAT "malformed-key" otherwise. */
int bk_minisign_pubkey_parse(bk_minisign_pubkey *out, const char *text, size_t len);
/* The public key file text (NUL-terminated; free with bk__free). */
int bk_minisign_pubkey_encode(char **out, size_t *out_len, const bk_minisign_pubkey *pk);
/* The bare base64 form (as minisign -P takes it), into out (57 bytes). */
void bk_minisign_pubkey_base64(char out[57], const bk_minisign_pubkey *pk);
int bk_minisign_pubkey_read(bk_minisign_pubkey *out, const char *path);
/* Writes a public key file (mode 0644, refuses to replace an existing file). */
int bk_minisign_pubkey_write(const char *path, const bk_minisign_pubkey *pk);

/* Parses a secret key file. An encrypted key needs `passphrase` (BK_EAUTH
 * "passphrase-required" without it, "wrong-passphrase" when it does not
 * open the key); it is ignored for an unencrypted key. */
int bk_minisign_seckey_parse(bk_minisign_seckey **out, const char *text, size_t len,
                             const char *passphrase);
/* The secret key file text. With a passphrase the key is encrypted with scrypt
 * at `opslimit`/`memlimit` (0, 0: minisign's defaults); without, it is
 * written unencrypted like `minisign -W`. Free with bk_wipe + bk__free. */
int bk_minisign_seckey_encode(char **out, size_t *out_len, const bk_minisign_seckey *sk,
                              const char *passphrase, uint64_t opslimit, uint64_t memlimit);
/* Reads a secret key file; refuses one readable by group or others (BK_EAUTH). */
int bk_minisign_seckey_read(bk_minisign_seckey **out, const char *path, const char *passphrase);
/* Writes a secret key file, mode 0600, never replacing an existing file. */
int bk_minisign_seckey_write(const char *path, const bk_minisign_seckey *sk, const char *passphrase,
                             uint64_t opslimit, uint64_t memlimit);

/* --- Signing ------------------------------------------------------------- */

/* Streaming BLAKE2b-512 prehash, as the "ED" algorithm uses. */
typedef struct bk_minisign_hasher {
	crypto_generichash_state st;
} bk_minisign_hasher;

void bk_minisign_hash_init(bk_minisign_hasher *h);
void bk_minisign_hash_update(bk_minisign_hasher *h, const void *data, size_t len);
void bk_minisign_hash_final(bk_minisign_hasher *h, uint8_t out[BK_MINISIGN_HASH_LEN]);
/* The prehash of everything read from `in` (until its end). */
int bk_minisign_hash_stream(uint8_t out[BK_MINISIGN_HASH_LEN], bk_stream *in);
int bk_minisign_hash_file(uint8_t out[BK_MINISIGN_HASH_LEN], const char *path);

/* Signs a prehash ("ED"). `trusted_comment` (NULL: "timestamp:<now>\thashed")
 * is one line without CR/LF; `untrusted_comment` NULL gives a default. The
 * result is the signature file text (NUL-terminated; free with bk__free). */
int bk_minisign_sign_hash(char **out, size_t *out_len, const bk_minisign_seckey *sk,
                          const uint8_t hash[BK_MINISIGN_HASH_LEN], const char *trusted_comment,
                          const char *untrusted_comment);
int bk_minisign_sign_buf(char **out, size_t *out_len, const bk_minisign_seckey *sk, const void *msg,
                         size_t len, const char *trusted_comment, const char *untrusted_comment);
/* Signs a file with a streaming prehash; the default trusted comment is
 * "timestamp:<now>\tfile:<base name>\thashed", like minisign's. */
int bk_minisign_sign_file(char **out, size_t *out_len, const bk_minisign_seckey *sk,
                          const char *path, const char *trusted_comment,
                          const char *untrusted_comment);
/* Legacy "Ed" signature of the message itself (for compatibility tests and
 * old verifiers; new signatures should be prehashed). */
int bk_minisign_sign_buf_legacy(char **out, size_t *out_len, const bk_minisign_seckey *sk,
                                const void *msg, size_t len, const char *trusted_comment,
                                const char *untrusted_comment);

/* --- Verification -------------------------------------------------------- */

/* Parses a signature file (BK_EFORMAT "malformed-signature"). */
int bk_minisign_sig_parse(bk_minisign_sig **out, const char *text, size_t len);
int bk_minisign_sig_read(bk_minisign_sig **out, const char *path);
void bk_minisign_sig_free(bk_minisign_sig *sig);
const uint8_t *bk_minisign_sig_key_id(const bk_minisign_sig *sig);
/* 1 for "ED" (prehashed), 0 for legacy "Ed". */
int bk_minisign_sig_prehashed(const bk_minisign_sig *sig);
/* The trusted comment (meaningful only once a verification succeeded). */
const char *bk_minisign_sig_trusted_comment(const bk_minisign_sig *sig);
const char *bk_minisign_sig_untrusted_comment(const bk_minisign_sig *sig);

/* Verifies a signature over a message. Failures, in the order checked:
 * BK_EVERIFY "wrong-key-id" (signed by another key), "bad-signature",
 * "bad-trusted-comment" (the global signature does not cover the trusted
 * comment). */
int bk_minisign_verify_buf(const bk_minisign_sig *sig, const bk_minisign_pubkey *pk,
                           const void *msg, size_t len);
/* Verifies with a prehash computed by the caller; a legacy signature cannot be
 * checked this way (BK_EVERIFY "legacy-needs-message"). */
int bk_minisign_verify_hash(const bk_minisign_sig *sig, const bk_minisign_pubkey *pk,
                            const uint8_t hash[BK_MINISIGN_HASH_LEN]);
/* Verifies a file, streaming for "ED" signatures. */
int bk_minisign_verify_file(const bk_minisign_sig *sig, const bk_minisign_pubkey *pk,
                            const char *path);
/* The key among `keys` whose id the signature names, or NULL (and the
 * BK_EVERIFY "wrong-key-id" error set). */
const bk_minisign_pubkey *bk_minisign_find_key(const bk_minisign_sig *sig,
                                               const bk_minisign_pubkey *keys, size_t count);
/* All in memory: parses `sig_text`, verifies `msg` against the key among
 * `keys` named by the signature and, on success, hands over a copy of the
 * trusted comment (free with bk__free; `out_trusted` may be NULL). */
int bk_minisign_verify_mem(char **out_trusted, const bk_minisign_pubkey *keys, size_t count,
                           const void *msg, size_t len, const char *sig_text, size_t sig_len);

/* Within crypto/: strict base64 (standard alphabet, padded, canonical, no
 * other characters) of at most `max` bytes. Returns 0 or -1 (sets no error). */
int bk_minisign__b64_decode(uint8_t *out, size_t max, size_t *out_len, const char *s, size_t len);

#endif
