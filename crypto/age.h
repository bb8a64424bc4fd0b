/* Internal: age v1 (age-encryption.org/v1) on libsodium.
 *
 * Files: a text header (version line, recipient stanzas, header MAC) followed
 * by the payload (16-byte nonce, then STREAM chunks of 64 KiB sealed with
 * ChaCha20-Poly1305). Recipients: X25519 ("age1...") and scrypt passphrases.
 * Binary and ASCII-armored files are read; either is written.
 *
 * Failure reasons (bk_error_last()->reason) and their codes:
 *   "armor-malformed"      BK_EFORMAT  the ASCII armor is invalid
 *   "header-malformed"     BK_EFORMAT  the header breaks the format rules or a
 *                                      limit (size, stanzas, lines, arguments,
 *                                      scrypt work factor, low-order share)
 *   "no-identity-matched"  BK_EAUTH    no identity given opens any stanza
 *   "header-mac"           BK_EVERIFY  the header MAC does not verify
 *   "payload-corrupt"      BK_EVERIFY  a payload chunk fails to authenticate,
 *                                      or data follows the final chunk
 *   "payload-truncated"    BK_EVERIFY  the payload ends before its final chunk */
#ifndef BK_CRYPTO_AGE_H
#define BK_CRYPTO_AGE_H

#include <stddef.h>
#include <stdint.h>

#include <libbackup/stream.h>

#include "libbackup/util/util.h"

#define BK_AGE_FILE_KEY_LEN    16
#define BK_AGE_PAYLOAD_KEY_LEN 32
#define BK_AGE_NONCE_LEN       16
#define BK_AGE_TAG_LEN         16
#define BK_AGE_CHUNK_SIZE      65536
#define BK_AGE_ENC_CHUNK_SIZE  (BK_AGE_CHUNK_SIZE + BK_AGE_TAG_LEN)
#define BK_AGE_X25519_LEN      32
/* "age1" + 52 + 6 checksum characters, and a NUL. */
#define BK_AGE_RECIPIENT_STR_SIZE 63
/* "AGE-SECRET-KEY-1" + 52 + 6, and a NUL. */
#define BK_AGE_IDENTITY_STR_SIZE 75

#define BK_AGE_SCRYPT_DEFAULT_LOG2_N     18 /* when encrypting */
#define BK_AGE_SCRYPT_MAX_LOG2_N_DEFAULT 22 /* accepted when decrypting */

/* Armor modes when reading. */
enum {
	BK_AGE_ARMOR_AUTO = 0, /* armored when the first non-blank byte is '-' */
	BK_AGE_ARMOR_NO = 1,
	BK_AGE_ARMOR_YES = 2,
};

/* --- Recipients and identities ------------------------------------------- */

typedef struct bk_age_recipient {
	uint8_t public_key[BK_AGE_X25519_LEN]; /* X25519 */
} bk_age_recipient;

/* "age1..." (lower case) into a recipient; BK_EFORMAT "recipient-invalid". */
int bk_age_recipient_parse(bk_age_recipient *out, const char *text);
/* Writes "age1..." and a NUL into `out` (BK_AGE_RECIPIENT_STR_SIZE bytes). */
void bk_age_recipient_format(char out[BK_AGE_RECIPIENT_STR_SIZE], const bk_age_recipient *r);

/* An X25519 identity; its secret key lives in guarded memory. */
typedef struct bk_age_identity bk_age_identity;

int bk_age_identity_generate(bk_age_identity **out);
/* "AGE-SECRET-KEY-1..." (upper case, `len` bytes) into an identity;
 * BK_EFORMAT "identity-invalid". The message never repeats the text. */
int bk_age_identity_parse(bk_age_identity **out, const char *text, size_t len);
/* The identity as "AGE-SECRET-KEY-1..." text (NUL-terminated) in a secret. */
int bk_age_identity_format(bk_secret **out, const bk_age_identity *id);
/* A complete identity file ("# created: ...", "# public key: age1...", the
 * key), as age-keygen writes it, NUL-terminated, in a secret. */
int bk_age_identity_file_format(bk_secret **out, const bk_age_identity *id, int64_t created);
void bk_age_identity_recipient(bk_age_recipient *out, const bk_age_identity *id);
int bk_age_identity_dup(bk_age_identity **out, const bk_age_identity *id);
void bk_age_identity_free(bk_age_identity *id);

/* A set of identities tried when decrypting: X25519 identities and/or
 * passphrases (for scrypt stanzas), in the order added. */
typedef struct bk_age_identities bk_age_identities;

int bk_age_identities_new(bk_age_identities **out);
/* Adds a copy of `id`. */
int bk_age_identities_add(bk_age_identities *set, const bk_age_identity *id);
/* Adds a copy of a passphrase. */
int bk_age_identities_add_passphrase(bk_age_identities *set, const void *pass, size_t len);
/* The largest scrypt work factor (log2 N) accepted; default 22, at most 30. */
int bk_age_identities_set_max_work_factor(bk_age_identities *set, int log2_n);
size_t bk_age_identities_count(const bk_age_identities *set);
/* The X25519 identity at position `i` (borrowed), or BK_ENOTFOUND when that
 * entry is a passphrase or `i` is out of range. */
int bk_age_identities_get(const bk_age_identities *set, size_t i, const bk_age_identity **out);
void bk_age_identities_free(bk_age_identities *set);

/* Asks for a passphrase (for an encrypted identity file); returns 0 and the
 * passphrase in a new secret, or a negative code (BK_ECANCELLED...). */
typedef int (*bk_age_passphrase_cb)(bk_secret **out, const char *prompt, void *payload);

/* Adds every identity of an identity file's text: one "AGE-SECRET-KEY-1..."
 * per line, lines starting with '#' and blank lines ignored, LF or CRLF.
 * `what` names the source in messages. At least one identity is required. */
int bk_age_identities_parse_file(bk_age_identities *set, const uint8_t *text, size_t len,
                                 const char *what);

enum {
	BK_AGE_LOAD_ALLOW_SHARED = 1, /* skip the "mode 0600" check */
};
/* Reads an identity file (at most 1 MiB). A file that is itself an age file
 * (binary or armored, as `age -p` writes it) is decrypted with the passphrase
 * `cb` supplies, and its plaintext read as an identity file. Unless
 * BK_AGE_LOAD_ALLOW_SHARED, a group- or world-accessible file is refused. */
int bk_age_identities_load(bk_age_identities *set, const char *path, unsigned flags,
                           bk_age_passphrase_cb cb, void *payload);

/* --- Encryption ----------------------------------------------------------- */

typedef struct bk_age_encrypt_opts {
	unsigned version;
	const bk_age_recipient *recipients; /* X25519 recipients */
	size_t recipient_count;
	const void *passphrase; /* instead of recipients: one scrypt stanza */
	size_t passphrase_len;
	int scrypt_log2_n; /* 0: BK_AGE_SCRYPT_DEFAULT_LOG2_N */
	int armor;         /* write ASCII armor */
} bk_age_encrypt_opts;
#define BK_AGE_ENCRYPT_OPTS_VERSION 1
#define BK_AGE_ENCRYPT_OPTS_INIT                                                                   \
	{                                                                                          \
		BK_AGE_ENCRYPT_OPTS_VERSION, NULL, 0, NULL, 0, 0, 0                                \
	}

/* An encrypting writer: what is written to it is encrypted to the
 * recipients and written to `next` (header first, then the payload), ending
 * when the stream is closed. Holds one chunk and the header in memory. With
 * `own_next`, closing or freeing the writer does `next` too; when this call
 * fails the caller keeps `next`. */
int bk_age_encrypt_new(bk_stream **out, bk_stream *next, int own_next,
                       const bk_age_encrypt_opts *opts);

/* --- Decryption ----------------------------------------------------------- */

typedef struct bk_age_decrypt_opts {
	unsigned version;
	int armor;          /* BK_AGE_ARMOR_* */
	size_t max_header;  /* 0: 256 KiB */
	size_t max_stanzas; /* 0: 1024 */
	size_t max_line;    /* stanza argument line, 0: 4096 */
	size_t max_args;    /* 0: 16 */
} bk_age_decrypt_opts;
#define BK_AGE_DECRYPT_OPTS_VERSION 1
#define BK_AGE_DECRYPT_OPTS_INIT                                                                   \
	{                                                                                          \
		BK_AGE_DECRYPT_OPTS_VERSION, BK_AGE_ARMOR_AUTO, 0, 0, 0, 0                         \
	}

/* A decrypting reader over `src`: reads and checks the header now (armor,
 * format, identities, MAC, nonce), then each read returns verified
 * plaintext. A read reports payload corruption or truncation as an error;
 * the end of the stream (0 bytes) is only returned once the final chunk has
 * verified and nothing follows it (so the plaintext of a final chunk is
 * released before trailing data is detected). No plaintext of a chunk is
 * released before its tag verifies. Memory: one chunk plus the header. With
 * `own_src`, the reader owns `src` once this call succeeds; when it fails
 * the caller keeps `src`. */
int bk_age_decrypt_new(bk_stream **out, bk_stream *src, int own_src, const bk_age_identities *ids,
                       const bk_age_decrypt_opts *opts, bk_deadline d);
/* The length of the header read by a decrypting reader: the payload (nonce
 * and chunks) starts at this offset of the (de-armored) file. */
uint64_t bk_age_decrypt_header_len(bk_stream *dec);

/* Decrypts a whole file in memory into a new buffer (bk__free; plaintext is
 * not wiped). For small files: identity files, tests. */
int bk_age_decrypt_mem(uint8_t **out, size_t *out_len, const uint8_t *in, size_t in_len,
                       const bk_age_identities *ids, const bk_age_decrypt_opts *opts);

/* --- Headers, re-wrapping, random access ------------------------------------ */

/* Reads a binary age header from `in` without reading past it; `*out`
 * (bk__free) receives exactly the header bytes, whose length is the payload
 * offset. */
int bk_age_header_read(uint8_t **out, size_t *out_len, bk_stream *in,
                       const bk_age_decrypt_opts *opts, bk_deadline d);

/* Checks a header held in memory (format and limits, not the MAC): returns
 * in `*out_len` the header's length when `data` starts with a complete
 * header (the rest is payload). */
int bk_age_header_parse(size_t *out_len, const uint8_t *data, size_t len,
                        const bk_age_decrypt_opts *opts);

/* Unwraps the file key of a header with `ids` and verifies the header MAC. */
int bk_age_header_unwrap(bk_secret **out_file_key, const uint8_t *hdr, size_t hdr_len,
                         const bk_age_identities *ids, const bk_age_decrypt_opts *opts);

/* A new header carrying `file_key` to the recipients of `to` (new stanzas,
 * new MAC). `*out` is freed with bk__free. `to->armor` is ignored. */
int bk_age_header_build(uint8_t **out, size_t *out_len, const bk_secret *file_key,
                        const bk_age_encrypt_opts *to);

/* Re-wrap a header in memory: unwrap with `ids`, verify the MAC, build a new
 * header for `to`. The payload that follows the old header stays valid
 * after the new one. */
int bk_age_rewrap_header(uint8_t **out, size_t *out_len, const uint8_t *hdr, size_t hdr_len,
                         const bk_age_identities *ids, const bk_age_encrypt_opts *to);

/* Re-wrap a file: reads `in` (binary or armored), writes to `out` a new
 * header for `to` (armored when `to->armor`), then the payload bytes
 * unchanged. The payload is not decrypted. Header lengths are returned
 * when the pointers are non-NULL. */
int bk_age_rewrap(bk_stream *out, bk_stream *in, const bk_age_identities *ids,
                  const bk_age_encrypt_opts *to, uint64_t *out_old_header_len,
                  uint64_t *out_new_header_len, bk_deadline d);

/* payload key = HKDF-SHA256(ikm = file key, salt = nonce, info "payload"). */
int bk_age_payload_key(bk_secret **out, const bk_secret *file_key,
                       const uint8_t nonce[BK_AGE_NONCE_LEN]);

/* Offset of chunk `index` from the start of the payload (after the nonce). */
static inline uint64_t bk_age_chunk_offset(uint64_t index)
{
	return BK_AGE_NONCE_LEN + index * (uint64_t)BK_AGE_ENC_CHUNK_SIZE;
}

/* Decrypts and verifies one stored chunk (`in_len` bytes, at most
 * BK_AGE_ENC_CHUNK_SIZE) as chunk `index`, final when `last`; `out` receives
 * in_len - 16 bytes. A final chunk may be empty only as chunk 0. Returns 0 or
 * BK_EVERIFY ("payload-corrupt"). */
int bk_age_chunk_open(uint8_t *out, const bk_secret *payload_key, uint64_t index, int last,
                      const uint8_t *in, size_t in_len);
/* Seals one chunk (at most BK_AGE_CHUNK_SIZE bytes) into `out`
 * (in_len + 16 bytes). */
int bk_age_chunk_seal(uint8_t *out, const bk_secret *payload_key, uint64_t index, int last,
                      const uint8_t *in, size_t in_len);

/* --- Internal helpers shared by the age files ------------------------------ */

/* Canonical base64 (standard alphabet) without padding. */
size_t bk_age__b64_len(size_t n);
void bk_age__b64_encode(char *out, const uint8_t *in, size_t n);
/* Strict: no padding, no whitespace, canonical trailing bits. Returns the
 * decoded length or -1. `out` holds at least len * 3 / 4 bytes. */
long bk_age__b64_decode(uint8_t *out, const char *in, size_t len);

/* One parsed stanza: argument 0 is the type. */
typedef struct bk_age__stanza {
	char **args;
	size_t argc;
	uint8_t *body;
	size_t body_len;
} bk_age__stanza;

/* Tries each identity of `ids` (in order) on every stanza: 0 with the file
 * key, BK_EAUTH "no-identity-matched", or BK_EFORMAT "header-malformed" when
 * a stanza of a type an identity handles is malformed (the unwrap must not
 * continue). */
int bk_age__unwrap(uint8_t file_key[BK_AGE_FILE_KEY_LEN], const bk_age_identities *ids,
                   const bk_age__stanza *st, size_t count);
/* Appends the stanzas that wrap `file_key` for `to` to the header text. */
int bk_age__wrap(bk_buf *hdr, const uint8_t file_key[BK_AGE_FILE_KEY_LEN],
                 const bk_age_encrypt_opts *to);
/* Appends one stanza: "-> " `args` "\n", then the body in 64-column lines
 * ending with a short (possibly empty) line. */
int bk_age__put_stanza(bk_buf *hdr, const char *args, const uint8_t *body, size_t len);

/* The incremental header parser: fed one line at a time. */
typedef struct bk_age__hdr {
	bk_age__stanza *st;
	size_t count;
	size_t cap;
	uint8_t mac[32];
	size_t mac_input_len; /* header bytes covered by the MAC (through "---") */
	size_t len;           /* header bytes fed so far, newlines included */
	int state;
	bk_buf body;
	size_t max_header;
	size_t max_stanzas;
	size_t max_line;
	size_t max_args;
} bk_age__hdr;

void bk_age__hdr_init(bk_age__hdr *h, const bk_age_decrypt_opts *opts);
/* Feeds one line without its '\n' (`len` bytes). 0 or BK_EFORMAT
 * "header-malformed"; bk_age__hdr_done() says when the MAC line was read. */
int bk_age__hdr_line(bk_age__hdr *h, const uint8_t *line, size_t len);
int bk_age__hdr_done(const bk_age__hdr *h);
/* Unwraps the file key with `ids` and verifies the MAC over `raw` (the
 * header bytes fed to `h`). */
int bk_age__hdr_open(uint8_t file_key[BK_AGE_FILE_KEY_LEN], const bk_age__hdr *h,
                     const uint8_t *raw, const bk_age_identities *ids);
void bk_age__hdr_free(bk_age__hdr *h);
/* The header MAC of `raw` (the bytes through "---") under `file_key`. */
void bk_age__hdr_mac(uint8_t out[32], const uint8_t file_key[BK_AGE_FILE_KEY_LEN],
                     const uint8_t *raw, size_t len);

#endif
