/* libbackup: key generation and key files, as the command line needs them.
 *
 * Depot identities are age X25519 identity files (`AGE-SECRET-KEY-1...`,
 * optionally protected with a passphrase the way `age -p` protects a file).
 * Signing keys are minisign-compatible Ed25519 key pairs. Secret files are
 * created with mode 0600 and never replace an existing file; reading one that
 * is group- or world-accessible fails (BK_EAUTH, reason "key-file-permissions")
 * with a message saying how to fix it. */
#ifndef LIBBACKUP_KEYS_H
#define LIBBACKUP_KEYS_H

#include <libbackup/common.h>

BK_BEGIN_DECLS

/* Supplies a passphrase: writes at most `cap` bytes into `buf` and the
 * length into *out_len; returns 0, or a negative BK_E* code to give up. */
typedef int (*bk_passphrase_cb)(char *buf, size_t cap, size_t *out_len, const char *prompt,
				void *payload);

/* Writes a new depot identity to `path`. With a passphrase (`pass`, `len` >
 * 0) the identity file is encrypted to it (an age file with one scrypt
 * stanza). *out_recipient (may be NULL) gets the "age1..." recipient; free it
 * with bk_free(). */
BK_EXTERN int bk_keys_identity_generate(const char *path, const char *pass, size_t len,
					char **out_recipient);

/* The recipients ("age1...", one per identity, newline-separated) of an
 * identity file; an encrypted one asks `cb` for its passphrase. */
BK_EXTERN int bk_keys_identity_recipients(const char *path, bk_passphrase_cb cb, void *payload,
					  char **out_recipients);

/* Writes a new signing key: the secret key to `path` (optionally encrypted
 * with a passphrase, like minisign's) and the public key to `path`.pub.
 * *out_key_id (may be NULL) gets the key id as minisign prints it, and
 * *out_public (may be NULL) the public key in base64; free with bk_free(). */
BK_EXTERN int bk_keys_signing_generate(const char *path, const char *pass, size_t len,
				       char **out_key_id, char **out_public);

/* Fails unless `path` is a regular file that only its owner can access. */
BK_EXTERN int bk_keys_check_private(const char *path);

BK_END_DECLS

#endif
