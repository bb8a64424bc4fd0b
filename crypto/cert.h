/* Internal: aibo-cert/1 certificates, identity bundles and device key files
 * (the reference is aibo-cert(5)).
 *
 * A certificate is a canonical binary document:
 *   "aibo-cert/1" 0x00, then fields as tag (u8) || length (u16 big-endian) ||
 *   value, tags strictly increasing, ending with the signature field (tag
 *   0xff, 64 bytes): Ed25519, by the CA named by the issuer key id, over every
 *   byte before the signature field. Each role has its required, optional and
 *   forbidden fields; anything else (unknown tag, duplicate, wrong length,
 *   trailing bytes) is refused. Files hold it in a PEM-like armor:
 *   "-----BEGIN AIBO CERTIFICATE-----", base64 in lines of 64, "-----END ...".
 *
 * The same document with role "identity" is the identity bundle the cloud
 * issues when it moves a unit's identity to a new serial.
 *
 * CA keys are minisign Ed25519 key pairs (crypto/minisign.h); the issuer key
 * id is the CA key's minisign key id. */
#ifndef BK_CRYPTO_CERT_H
#define BK_CRYPTO_CERT_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/minisign.h"

#define BK_CERT_KEY_LEN 32
#define BK_CERT_SIG_LEN 64
#define BK_CERT_MAX     4096
/* Longest subject strings (printable ASCII without spaces). */
#define BK_CERT_NAME_MAX 64
#define BK_CERT_ID_MAX   128

typedef enum bk_cert_role {
	BK_CERT_ROLE_UNIT = 1,
	BK_CERT_ROLE_TERMINAL = 2,
	BK_CERT_ROLE_IDENTITY = 3,
} bk_cert_role;

/* What a certificate says, for bk_cert_issue(). Strings and keys that a role
 * does not use must be NULL; a key pointer points to 32 bytes. */
typedef struct bk_cert_params {
	bk_cert_role role;
	/* unit: serial, model, hw_revision (required); identity: serial (the new
	 * serial, required), model and hw_revision (optional) */
	const char *serial;
	const char *model;
	const char *hw_revision;
	/* terminal: required */
	const char *terminal_id;
	/* identity: device_id, owner_binding (required), old_serial (optional) */
	const char *device_id;
	const char *owner_binding;
	const char *old_serial;
	/* unit: all three required; terminal: noise and ed25519 required, age
	 * optional; identity: each optional (the replacement unit's keys the
	 * identity is bound to) */
	const uint8_t *noise_key;
	const uint8_t *age_key;
	const uint8_t *ed25519_key;
	/* identity: when the cloud issued it (unix seconds, required) */
	int64_t issued;
	/* every role: validity, unix seconds, not_before <= not_after */
	int64_t not_before;
	int64_t not_after;
} bk_cert_params;

typedef struct bk_cert bk_cert;

/* Issues and signs a certificate with the CA's secret key. */
int bk_cert_issue(bk_cert **out, const bk_cert_params *params, const bk_minisign_seckey *ca);
/* Parses the armored text or the canonical binary form (BK_EFORMAT
 * "malformed-certificate" for anything not strictly canonical). */
int bk_cert_parse(bk_cert **out, const uint8_t *data, size_t len);
int bk_cert_read(bk_cert **out, const char *path);
void bk_cert_free(bk_cert *cert);
/* A copy (for owners that outlive the original). */
int bk_cert_dup(bk_cert **out, const bk_cert *cert);

/* The canonical bytes (borrowed, live as long as the certificate). */
const uint8_t *bk_cert_bytes(const bk_cert *cert, size_t *out_len);
/* The armored text (NUL-terminated; free with bk__free). */
int bk_cert_armor(char **out, size_t *out_len, const bk_cert *cert);
/* Writes the armored text to `path` atomically (mode 0644). */
int bk_cert_write(const char *path, const bk_cert *cert);

/* Checks, in this order: the role (BK_EAUTH "wrong-role"), that one of `cas`
 * has the issuer key id ("unknown-ca"), the CA's signature ("bad-signature"),
 * and the validity at `now` ("not-yet-valid", "expired"). */
int bk_cert_verify(const bk_cert *cert, const bk_minisign_pubkey *cas, size_t ncas,
                   bk_cert_role role, int64_t now);
/* BK_EAUTH "key-mismatch" unless the certificate's Noise static key is `key`. */
int bk_cert_check_noise_key(const bk_cert *cert, const uint8_t key[BK_CERT_KEY_LEN]);
/* BK_EAUTH "key-mismatch" unless the certificate's Ed25519 key is `key`. */
int bk_cert_check_ed25519_key(const bk_cert *cert, const uint8_t key[BK_CERT_KEY_LEN]);
/* BK_EAUTH "subject-mismatch" unless the subject is `id` (the serial for
 * units and identity bundles, the terminal id for terminals). */
int bk_cert_check_subject(const bk_cert *cert, const char *id);

/* Accessors: strings and keys are NULL when the certificate has none. */
bk_cert_role bk_cert_role_get(const bk_cert *cert);
const char *bk_cert_role_name(bk_cert_role role);
const char *bk_cert_serial(const bk_cert *cert);
const char *bk_cert_model(const bk_cert *cert);
const char *bk_cert_hw_revision(const bk_cert *cert);
const char *bk_cert_terminal_id(const bk_cert *cert);
const char *bk_cert_device_id(const bk_cert *cert);
const char *bk_cert_owner_binding(const bk_cert *cert);
const char *bk_cert_old_serial(const bk_cert *cert);
const uint8_t *bk_cert_noise_key(const bk_cert *cert);
const uint8_t *bk_cert_age_key(const bk_cert *cert);
const uint8_t *bk_cert_ed25519_key(const bk_cert *cert);
int64_t bk_cert_issued(const bk_cert *cert);
int64_t bk_cert_not_before(const bk_cert *cert);
int64_t bk_cert_not_after(const bk_cert *cert);
const uint8_t *bk_cert_issuer_key_id(const bk_cert *cert);
/* BLAKE2b-256 of the canonical bytes. */
void bk_cert_fingerprint(const bk_cert *cert, uint8_t out[32]);

/* --- Device key files ("aibo-keys/1") --------------------------------------
 * A terminal's (or unit's) secret keys, mode 0600:
 *   aibo-keys/1
 *   noise: <base64 of the X25519 secret key>
 *   ed25519: <base64 of the Ed25519 seed>
 *   age: <base64 of the X25519 secret key>        (optional)
 * exactly in this order, each line ending in "\n", nothing else. */

typedef struct bk_keyfile bk_keyfile;

/* New random keys; with `with_age`, an age X25519 key too. */
int bk_keyfile_generate(bk_keyfile **out, int with_age);
/* From given secrets (age_sk may be NULL). */
int bk_keyfile_from(bk_keyfile **out, const uint8_t noise_sk[32], const uint8_t ed25519_seed[32],
                    const uint8_t *age_sk);
/* BK_EFORMAT "malformed-key-file" for anything but the exact format. */
int bk_keyfile_parse(bk_keyfile **out, const char *text, size_t len);
/* The file text (free with bk_wipe + bk__free). */
int bk_keyfile_encode(char **out, size_t *out_len, const bk_keyfile *k);
/* Refuses a file readable by group or others (BK_EAUTH). */
int bk_keyfile_read(bk_keyfile **out, const char *path);
/* Creates the file with mode 0600, never replacing one. */
int bk_keyfile_write(const char *path, const bk_keyfile *k);
void bk_keyfile_free(bk_keyfile *k);
/* Secrets (in secret memory) and their public halves, 32 bytes each except
 * the Ed25519 secret key (64 bytes: seed || public key). Age: NULL if absent. */
const uint8_t *bk_keyfile_noise_secret(const bk_keyfile *k);
const uint8_t *bk_keyfile_noise_public(const bk_keyfile *k);
const uint8_t *bk_keyfile_ed25519_secret(const bk_keyfile *k);
const uint8_t *bk_keyfile_ed25519_public(const bk_keyfile *k);
const uint8_t *bk_keyfile_age_secret(const bk_keyfile *k);
const uint8_t *bk_keyfile_age_public(const bk_keyfile *k);

#endif
