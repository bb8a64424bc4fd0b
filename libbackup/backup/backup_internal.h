/* Internal: backup files, statements and stores, for the modules that make
 * or consume backups (the repair job, the virtual robot). The reference is
 * aibo-backup(5). */
#ifndef BK_BACKUP_INTERNAL_H
#define BK_BACKUP_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <sodium.h>

#include <libbackup/backup.h>

#include "crypto/age.h"
#include "crypto/cert.h"
#include "crypto/minisign.h"
#include "libbackup/util/util.h"

#define BK_BACKUP_DIGEST_LEN 32

/* --- Statements --- */

/* What a producer signs. Strings: printable ASCII without '"' or '\\',
 * 1..128 bytes (hardware_revision may be empty); backup_id a lower-case
 * UUID. */
typedef struct bk_statement_info {
	const char *backup_id;
	const char *serial;
	const char *model;
	const char *hardware_revision;
	const char *firmware_version;
	uint64_t schema_version;
	int64_t created; /* unix seconds */
	uint64_t plaintext_size;
	uint64_t payload_size;
	uint8_t payload_digest[BK_BACKUP_DIGEST_LEN];
	uint8_t manifest_digest[BK_BACKUP_DIGEST_LEN];
} bk_statement_info;

/* Signs a statement with the producer's Ed25519 secret key (64 bytes: seed ||
 * public key), which must be the certificate's key. `*out` (bk__free) holds
 * the statement file's bytes (canonical JSON and a newline). */
int bk_statement_sign(uint8_t **out, size_t *out_len, const bk_statement_info *info,
		      const bk_cert *producer, const uint8_t ed25519_sk[64]);
/* Verifies against CA public keys (see bk_statement_verify()); `now` bounds
 * the creation time (a statement from more than a day ahead is refused). */
int bk_statement_verify_keys(const bk_statement *st, const bk_minisign_pubkey *factory_cas,
			     size_t nfactory, const bk_minisign_pubkey *service_cas,
			     size_t nservice, int64_t now);
/* The parsed fields (digests raw) and the producer's certificate. */
void bk_statement_info_get(const bk_statement *st, bk_statement_info *out);
const bk_cert *bk_statement_cert(const bk_statement *st);

/* --- Payload digests --- */

typedef struct bk_payload_digest {
	bool done;
	uint64_t header_len;
	uint64_t payload_len;
	uint8_t digest[BK_BACKUP_DIGEST_LEN];
} bk_payload_digest;

/* The payload digest of bytes fed in order from the start of a file: the
 * header is recognised by its MAC line (check its format apart, see
 * bk_payload_header_file). */
typedef struct bk_payload_hasher {
	crypto_generichash_state h;
	bool in_payload;
	uint64_t header_len;
	uint8_t line[8]; /* the first bytes of the current header line */
	size_t line_len;
	uint64_t payload;
} bk_payload_hasher;

void bk_payload_hasher_init(bk_payload_hasher *ph);
int bk_payload_hasher_update(bk_payload_hasher *ph, const void *buf, size_t len);
int bk_payload_hasher_final(bk_payload_hasher *ph, bk_payload_digest *res);

/* A write filter over `next` that passes every byte on and hashes, with
 * BLAKE2b-256, every byte after the binary age header at its start. `*res`
 * is filled when the stream is finished and must outlive it. */
int bk_payload_hash_writer(bk_stream **out, bk_stream *next, int own_next, bk_payload_digest *res);
/* Completes the digest of a writer now (before closing it, so the result
 * can be checked before the file is committed). */
int bk_payload_hash_writer_done(bk_stream *w);
/* A read filter over `src` hashing every byte after the first `skip`; `*res`
 * is filled once `src` reports its end, and must outlive the filter. */
int bk_payload_hash_reader(bk_stream **out, bk_stream *src, int own_src, uint64_t skip,
			   bk_payload_digest *res);
/* Hashes a whole backup file's payload (the header is checked for format). */
int bk_payload_digest_file(const char *path, bk_payload_digest *res);
/* Reads and checks the age header of a backup file; *out_len its length. */
int bk_payload_header_file(const char *path, uint64_t *out_len);

/* --- Stores --- */

typedef struct bk_store_ops {
	const char *scheme;
	int (*part_path)(bk_store *s, const char *id, char **out);
	int (*put)(bk_store *s, const char *id, const char *part, const uint8_t *stmt, size_t len,
		   char **out_location);
	int (*location)(bk_store *s, const char *id, char **out);
	int (*get_path)(bk_store *s, const char *id, char **out);
	int (*exists)(bk_store *s, const char *id, int *out);
	int (*remove)(bk_store *s, const char *id);
	int (*list)(bk_store *s, bk_store_item **out, size_t *out_count);
	int (*remove_part)(bk_store *s, const char *name);
	void (*release)(bk_store *s);
} bk_store_ops;

struct bk_store {
	const bk_store_ops *ops;
	char *spec;
};

/* A lower-case UUID (what backup ids are). */
bool bk_backup__valid_id(const char *s);
void bk_backup__new_id(char out[37]);

/* Creates `path` (O_EXCL, O_NOFOLLOW, mode 0600) and takes an exclusive
 * lock on it, replacing a stale `path` that no one holds; BK_EBUSY when
 * another command holds it. */
int bk_backup__create_locked(const char *path, int *out_fd);
/* Whether another process holds the lock on `path` (1), or not (0). */
int bk_backup__is_locked(const char *path);

/* Test hook: called at "before-rename" (the file is written and fsynced)
 * and "before-commit" (the file is in place, the catalog row not yet
 * committed) of a pack, on this thread, while set. */
typedef void (*bk_backup_hook_fn)(const char *stage);
void bk_backup__set_hook(bk_backup_hook_fn fn);
void bk_backup__hook(const char *stage);

/* Loads CA keys from a configured file (NULL key or missing: count 0). */
int bk_backup__load_cas(const bk_config *cfg, const char *key, bk_minisign_pubkey *out,
			size_t *out_count);

/* Fills a catalog record from a statement (strings borrowed from it and
 * from the caller's buffers `producer`, `ph` and `mh`). */
void bk_backup__record_from(bk_backup_record *r, const bk_statement *st, const char *location,
                            uint64_t file_size, char producer[160], char ph[BK_BACKUP_HEX_DIGEST],
                            char mh[BK_BACKUP_HEX_DIGEST]);

#endif
