/* libbackup: the depot catalog, an SQLite database (WAL) holding the backups
 * a terminal knows of, their statements and verification results. Later
 * schema versions add the repair journal. Every connection is one
 * bk_catalog; use one per thread. */
#ifndef LIBBACKUP_CATALOG_H
#define LIBBACKUP_CATALOG_H

#include <libbackup/common.h>

BK_BEGIN_DECLS

typedef struct bk_catalog bk_catalog;

/* Opens (creating it and its folder if needed) and migrates the database.
 * A database from a newer aibo-restore is refused (BK_EINCOMPAT). */
BK_EXTERN int bk_catalog_open(bk_catalog **out, const char *path);
BK_EXTERN void bk_catalog_free(bk_catalog *cat);
/* The schema version the database is at. */
BK_EXTERN int bk_catalog_schema_version(bk_catalog *cat);

/* One backup as the catalog knows it. Strings are owned by the record. */
typedef struct bk_backup_record {
	char *id;              /* backup id (UUID) */
	char *location;        /* a path, or an s3:// URL */
	char *serial;
	char *model;
	char *hw_rev;
	char *fw_version;
	int64_t schema;
	char *created;         /* RFC 3339, from the statement */
	char *producer;        /* the certificate subject that signed it */
	uint64_t plaintext_size;
	uint64_t file_size;
	char *payload_digest;  /* hex BLAKE2b-256 of every byte after the age header */
	char *manifest_digest; /* hex BLAKE2b-256 of MANIFEST.json */
	uint8_t *statement;    /* the signed statement, as stored beside the file */
	size_t statement_len;
	char *added;           /* RFC 3339, when the catalog learned of it */
	char *verified;        /* last verification: "full", "quick", "failed" or NULL */
	char *verified_at;
} bk_backup_record;

BK_EXTERN void bk_backup_record_clear(bk_backup_record *r);

/* Adds a backup; an existing id is BK_EEXIST unless the location and digests
 * are the same (then nothing changes and 0 is returned). */
BK_EXTERN int bk_catalog_backup_add(bk_catalog *cat, const bk_backup_record *r);
/* Finds a backup by id, or by a unique id prefix of at least 8 characters. */
BK_EXTERN int bk_catalog_backup_get(bk_catalog *cat, const char *id, bk_backup_record *out);
/* Lists backups, newest first; `serial` (may be NULL) filters. The caller
 * frees with bk_catalog_backup_list_free(). */
BK_EXTERN int bk_catalog_backup_list(bk_catalog *cat, const char *serial, bk_backup_record **out,
				     size_t *out_count);
BK_EXTERN void bk_catalog_backup_list_free(bk_backup_record *list, size_t count);
/* Removes the catalog row (and its verification results). A backup that an
 * unfinished job uses is BK_EBUSY. The file itself is the caller's. */
BK_EXTERN int bk_catalog_backup_remove(bk_catalog *cat, const char *id);

/* Marks a backup as used by unfinished work (`holder` names it, for
 * example "job:<id>"); held backups cannot be removed. Holding twice is
 * fine. */
BK_EXTERN int bk_catalog_backup_hold(bk_catalog *cat, const char *id, const char *holder);
/* Releases a hold (a missing one is fine). */
BK_EXTERN int bk_catalog_backup_release(bk_catalog *cat, const char *id, const char *holder);

/* Records a verification result: kind "quick" or "full"; ok or not, with the
 * failure's reason and message. */
BK_EXTERN int bk_catalog_verification_add(bk_catalog *cat, const char *id, const char *kind, int ok,
					  const char *reason, const char *message);

/* Stores (once) the re-wrapped age header sent to a unit for a backup, so a
 * resumed restore sends the same bytes. Storing a different header for the
 * same pair is BK_EEXIST. */
BK_EXTERN int bk_catalog_restore_header_put(bk_catalog *cat, const char *backup_id,
					    const char *target_serial, const uint8_t *header,
					    size_t len);
/* The stored header (caller frees with bk_free()), or BK_ENOTFOUND. */
BK_EXTERN int bk_catalog_restore_header_get(bk_catalog *cat, const char *backup_id,
					    const char *target_serial, uint8_t **out, size_t *out_len);

/* The identity bundle a reassignment returned (aibo-cert(5), role
 * "identity", signed by the service CA), kept per ticket until the repair
 * installs it on the replacement unit. Strings are owned by the record. */
typedef struct bk_identity_record {
	char *ticket;
	char *old_serial;
	char *new_serial;
	char *device_id;
	char *owner;     /* NULL when the service named none */
	uint8_t *bundle; /* the bundle's canonical bytes */
	size_t bundle_len;
	char *received;  /* RFC 3339, when it was stored */
} bk_identity_record;

BK_EXTERN void bk_identity_record_clear(bk_identity_record *r);
/* Stores a verified bundle for its ticket; a later one for the same ticket
 * replaces it (storing the same bundle again changes nothing). */
BK_EXTERN int bk_catalog_identity_put(bk_catalog *cat, const bk_identity_record *r);
/* The stored bundle of `ticket`, or BK_ENOTFOUND ("identity-not-found"). */
BK_EXTERN int bk_catalog_identity_get(bk_catalog *cat, const char *ticket, bk_identity_record *out);

BK_END_DECLS

#endif
