/* libbackup: certificates, identity bundles, the terminal's keys, and the
 * splicing of a cloud re-wrapped age header, as the depot handles them.
 *
 * Certificates are aibo-cert/1 documents (aibo-cert(5)): unit factory
 * certificates, terminal certificates and identity bundles (the document the
 * cloud returns when it moves a unit's identity to a new serial). CA keys are
 * minisign public key files. */
#ifndef LIBBACKUP_IDENTITY_H
#define LIBBACKUP_IDENTITY_H

#include <libbackup/common.h>
#include <libbackup/stream.h>

BK_BEGIN_DECLS

/* What a certificate says. Strings are owned by the struct (NULL when the
 * certificate has no such field); clear with bk_identity_cert_clear(). */
typedef struct bk_identity_cert {
	uint8_t *bytes; /* the canonical binary form */
	size_t len;
	const char *role; /* "unit", "terminal" or "identity" (static) */
	char *subject;    /* the serial (unit, identity) or terminal id */
	char *model;
	char *hw_revision;
	char *device_id;      /* identity bundles */
	char *owner;          /* identity bundles: the owner binding */
	char *old_serial;     /* identity bundles */
	char *age_recipient;  /* "age1...": the recipient backups are re-wrapped to */
	char fingerprint[65]; /* hex BLAKE2b-256 of the canonical bytes */
	char issuer[17];      /* hex key id of the issuing CA */
	int64_t issued;       /* identity bundles; 0 otherwise */
	int64_t not_before;
	int64_t not_after;
} bk_identity_cert;

BK_EXTERN void bk_identity_cert_clear(bk_identity_cert *c);

/* Parses a certificate (armored text or canonical binary). BK_EFORMAT
 * "malformed-certificate" for anything else. */
BK_EXTERN int bk_identity_cert_parse(bk_identity_cert *out, const uint8_t *data, size_t len);
/* The same from a file (BK_ENOTFOUND when missing). */
BK_EXTERN int bk_identity_cert_load(bk_identity_cert *out, const char *path);

/* Checks the role ("unit", "terminal", "identity"), the signature by the CA
 * whose minisign public key is in `ca_path`, and the validity now. Errors
 * are BK_EAUTH with the reason of the failed check ("wrong-role",
 * "unknown-ca", "bad-signature", "not-yet-valid", "expired"). */
BK_EXTERN int bk_identity_cert_verify(const bk_identity_cert *c, const char *ca_path,
                                      const char *role);

/* Checks the identity bundle a reassignment returned: it is an identity
 * document signed by the service CA (`service_ca`, a minisign public key
 * file) and valid now, for `new_serial`, naming `device_id`, and, when they
 * are non-NULL, `owner` and `old_serial`; when `unit` (the replacement's
 * factory certificate) is given, every key the bundle binds must be that
 * unit's. On success *out (may be NULL) gets what the bundle says. A
 * mismatch is BK_EVERIFY "bundle-mismatch"; a bad signature BK_EAUTH. */
BK_EXTERN int bk_identity_bundle_verify(bk_identity_cert *out, const uint8_t *bundle, size_t len,
                                        const char *service_ca, const char *new_serial,
                                        const char *device_id, const char *owner,
                                        const char *old_serial, const bk_identity_cert *unit);

/* --- The terminal's keys ---------------------------------------------------- */

/* The public halves of a terminal key file (aibo-keys/1). */
typedef struct bk_identity_terminal_keys {
	uint8_t noise[32]; /* Noise static X25519 public key */
	uint8_t sign[32];  /* Ed25519 public key */
	uint8_t age[32];   /* age X25519 recipient, when has_age */
	int has_age;
} bk_identity_terminal_keys;

/* Reads the terminal key file at `path` (refused unless mode 0600 or
 * stricter), or creates it with new keys (noise, Ed25519 and age; mode 0600,
 * never replacing a file) when it does not exist. *out_created (may be NULL)
 * says which happened. */
BK_EXTERN int bk_identity_terminal_key_ensure(const char *path, bk_identity_terminal_keys *out,
                                              int *out_created);

/* Checks a terminal certificate against the terminal's keys: role terminal,
 * the same Noise and Ed25519 keys (BK_EAUTH "key-mismatch"), the subject
 * `terminal_id` when non-NULL ("subject-mismatch"), and, when `service_ca`
 * is non-NULL, the service CA's signature and the validity now. */
BK_EXTERN int bk_identity_terminal_cert_check(const bk_identity_cert *cert,
                                              const bk_identity_terminal_keys *keys,
                                              const char *terminal_id, const char *service_ca);

/* Writes a certificate's armored text to `path` atomically (mode 0644). */
BK_EXTERN int bk_identity_cert_save(const char *path, const bk_identity_cert *cert);

/* --- Cloud re-wrapping ------------------------------------------------------ */

/* Checks that `hdr` is exactly one complete age header (format and limits;
 * the MAC cannot be checked without the file key). BK_EFORMAT otherwise. */
BK_EXTERN int bk_identity_age_header_check(const uint8_t *hdr, size_t len);

/* Checks that the file at `path` starts with a complete binary age header;
 * *out_header_len (may be NULL) gets its length, the payload's offset. */
BK_EXTERN int bk_identity_age_file_check(const char *path, uint64_t *out_header_len);

/* A writer for a cloud re-wrap: an age file written into it reaches `next`
 * with its own header replaced by `header` (checked as above) and its payload
 * unchanged, in one pass (only the old header is held in memory). Closing it
 * fails with BK_EFORMAT "header-malformed" when no complete age header was
 * written. With `own_next`, closing or freeing it does `next` too; when this
 * call fails the caller keeps `next`. */
BK_EXTERN int bk_identity_header_swap_new(bk_stream **out, bk_stream *next, int own_next,
                                          const uint8_t *header, size_t header_len);
/* The length of the old header the writer replaced (0 until it has seen it). */
BK_EXTERN uint64_t bk_identity_header_swap_old_len(bk_stream *s);

BK_END_DECLS

#endif
