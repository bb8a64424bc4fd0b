/* libbackup: backup files (aibo-backup(5)).
 *
 * A backup is an age v1 file whose payload is the memory archive, and beside
 * it a signed statement (`<file>.statement`) naming the backup, the unit it
 * belongs to, the digests of the age payload and of the manifest, and the
 * producer's certificate and signature. Depots keep backups in a store
 * (`dir:PATH` for now) and list them in the catalog.
 *
 * Operations read their keys, trust anchors, store and catalog from a
 * configuration (aibo-restore.conf(5)): depot.db, depot.store,
 * depot.identity, depot.terminal_key, depot.terminal_cert,
 * trust.factory_ca, trust.service_ca, backup.escrow_recipients,
 * backup.compression_level and limits.*.
 *
 * Failure reasons (bk_error_last()->reason) callers can act on:
 *   "statement-missing"    BK_EVERIFY  no statement beside the file
 *   "statement-invalid"    BK_EVERIFY  malformed, untrusted or badly signed
 *   "statement-mismatch"   BK_EVERIFY  the file is not what the statement says
 *   "payload-corrupt"      BK_EVERIFY  a chunk or the payload digest is wrong
 *   "payload-truncated"    BK_EVERIFY  the payload ends early
 *   "header-mac"           BK_EVERIFY  the age header was altered
 *   "no-identity-matched"  BK_EAUTH    no identity opens the file
 *   "archive-*"            BK_EFORMAT  a hostile or malformed memory archive
 *   "entry-*"              BK_EVERIFY  an entry's size or digest is wrong
 *   "limit-exceeded"       BK_ENOSPACE the archive is over a configured limit
 *   "backup-not-found"     BK_ENOTFOUND neither a file nor a catalog id */
#ifndef LIBBACKUP_BACKUP_H
#define LIBBACKUP_BACKUP_H

#include <libbackup/common.h>
#include <libbackup/catalog.h>
#include <libbackup/config.h>
#include <libbackup/errors.h>
#include <libbackup/keys.h>
#include <libbackup/progress.h>
#include <libbackup/stream.h>

BK_BEGIN_DECLS

#define BK_BACKUP_EXT           ".aibk"
#define BK_STATEMENT_EXT        ".statement"
#define BK_STATEMENT_FORMAT     "aibo-statement/1"
#define BK_STATEMENT_MAX        16384
#define BK_BACKUP_HEX_DIGEST    65 /* 64 hex digits and a NUL */

/* --- Statements --------------------------------------------------------------- */

typedef struct bk_statement bk_statement;

/* What a statement says; strings are borrowed from the statement. */
typedef struct bk_statement_view {
	const char *backup_id;
	const char *serial;
	const char *model;
	const char *hardware_revision;
	const char *firmware_version;
	uint64_t schema_version;
	const char *created;           /* RFC 3339 */
	int64_t created_unix;
	uint64_t plaintext_size;       /* bytes of the memory archive (age plaintext) */
	uint64_t payload_size;         /* bytes of the age payload (after the header) */
	const char *payload_digest;    /* hex BLAKE2b-256 of the age payload */
	const char *manifest_digest;   /* hex BLAKE2b-256 of MANIFEST.json */
	const char *producer_role;     /* "unit" or "terminal" */
	const char *producer;          /* the certificate's serial or terminal id */
	const char *certificate_fingerprint; /* hex BLAKE2b-256 of the certificate */
} bk_statement_view;

/* Strict parser: exactly the canonical form aibo-backup(5) describes
 * (BK_EVERIFY "statement-invalid" otherwise). Checks no signature. */
BK_EXTERN int bk_statement_parse(bk_statement **out, const void *data, size_t len);
BK_EXTERN int bk_statement_read(bk_statement **out, const char *path);
BK_EXTERN void bk_statement_free(bk_statement *st);
BK_EXTERN void bk_statement_get(const bk_statement *st, bk_statement_view *out);
/* The statement's bytes as parsed (borrowed). */
BK_EXTERN const uint8_t *bk_statement_bytes(const bk_statement *st, size_t *out_len);
/* Checks the producer's certificate against the configured CA (factory CA
 * for units, service CA for terminals) at the statement's creation time, the
 * signature with the certificate's Ed25519 key, and for a unit that the
 * statement's serial is the certificate's. BK_EVERIFY "statement-invalid". */
BK_EXTERN int bk_statement_verify(const bk_statement *st, const bk_config *cfg);

/* --- Stores ------------------------------------------------------------------- */

/* Where a depot keeps backup files: `<id>.aibk` and `<id>.aibk.statement`. */
typedef struct bk_store bk_store;

/* "dir:PATH" (the folder is made when missing). */
BK_EXTERN int bk_store_open(bk_store **out, const char *spec);
/* The configured store (depot.store; default dir:$XDG_STATE_HOME/aibo-restore/backups). */
BK_EXTERN int bk_store_open_config(bk_store **out, const bk_config *cfg);
BK_EXTERN void bk_store_free(bk_store *s);
/* The store's specification ("dir:/abs/path"). */
BK_EXTERN const char *bk_store_spec(const bk_store *s);
/* A local path where a new backup `id` is written before bk_store_put()
 * (on the store's own file system for `dir:`). Free with bk_free(). */
BK_EXTERN int bk_store_part_path(bk_store *s, const char *id, char **out);
/* Stores the finished, fsynced local file `part` (renamed or copied) and its
 * statement, durably; an existing `id` is refused (BK_EEXIST). The
 * location (bk_free()) is what the catalog records. */
BK_EXTERN int bk_store_put(bk_store *s, const char *id, const char *part, const uint8_t *statement,
			   size_t statement_len, char **out_location);
/* The location of `id` (whether or not it exists). */
BK_EXTERN int bk_store_location(bk_store *s, const char *id, char **out);
/* A local path to read `id` from (BK_ENOTFOUND when it is not there). */
BK_EXTERN int bk_store_get_path(bk_store *s, const char *id, char **out);
BK_EXTERN int bk_store_open_reader(bk_store *s, const char *id, bk_stream **out);
BK_EXTERN int bk_store_exists(bk_store *s, const char *id, int *out);
/* Removes the file and its statement (missing ones are fine). */
BK_EXTERN int bk_store_remove(bk_store *s, const char *id);

enum {
	BK_STORE_ITEM_BACKUP = 1,    /* <id>.aibk (with or without its statement) */
	BK_STORE_ITEM_STATEMENT = 2, /* a statement without its file */
	BK_STORE_ITEM_PART = 3,      /* an unfinished *.part file */
	BK_STORE_ITEM_OTHER = 4,     /* anything else */
};
typedef struct bk_store_item {
	int kind;
	char *name;   /* the entry's name in the store */
	char *id;     /* the backup id (NULL for OTHER) */
	uint64_t size;
	int in_use;   /* a *.part a running command still writes */
} bk_store_item;
BK_EXTERN int bk_store_list(bk_store *s, bk_store_item **out, size_t *out_count);
BK_EXTERN void bk_store_list_free(bk_store_item *items, size_t count);
/* Removes a *.part leftover that no running command holds (BK_EBUSY). */
BK_EXTERN int bk_store_remove_part(bk_store *s, const char *name);

/* --- Backups ------------------------------------------------------------------ */

/* The configured catalog (depot.db; default $XDG_STATE_HOME/aibo-restore/depot.db).
 * Without `create`, a missing database is BK_ENOTFOUND. */
BK_EXTERN int bk_backup_catalog_open(bk_catalog **out, const bk_config *cfg, int create);

/* What an operation did (fields it does not know stay 0 / NULL). */
typedef struct bk_backup_report {
	char id[40];
	char *path;               /* the file read or written */
	char *location;           /* the store location (pack/import into the store) */
	char *statement_path;     /* the statement written (-o) */
	uint64_t file_size;
	uint64_t header_size;
	uint64_t payload_size;
	uint64_t plaintext_size;
	uint64_t files;           /* manifest entries */
	uint64_t file_bytes;      /* their content */
	char payload_digest[BK_BACKUP_HEX_DIGEST];
	char manifest_digest[BK_BACKUP_HEX_DIGEST];
	unsigned domains;         /* bit i: domain i of bk_backup_domain_name() */
	int in_catalog;           /* the backup is in the catalog */
	int recorded;             /* a verification result was recorded */
} bk_backup_report;
BK_EXTERN void bk_backup_report_clear(bk_backup_report *r);

/* "logs", "map", "memories", "personality", "photos", "settings" for
 * 0..5; NULL past them. */
BK_EXTERN const char *bk_backup_domain_name(unsigned i);

#define BK_BACKUP_PACK_OPTS_VERSION 1
typedef struct bk_backup_pack_opts {
	unsigned version;
	const char *serial;
	const char *model;
	const char *hardware_revision; /* NULL: "" */
	const char *firmware_version;
	uint64_t schema_version;
	/* "age1..." recipients; none: the depot identity's recipients and
	 * backup.escrow_recipients */
	const char *const *recipients;
	size_t recipient_count;
	/* Write this file (and FILE.statement) instead of the store + catalog. */
	const char *output;
	bk_passphrase_cb passphrase; /* for a protected depot identity */
	void *passphrase_payload;
	bk_progress_cb progress;
	void *progress_payload;
} bk_backup_pack_opts;
#define BK_BACKUP_PACK_OPTS_INIT {BK_BACKUP_PACK_OPTS_VERSION, NULL, NULL, NULL, NULL, 1, NULL, 0, NULL, NULL, NULL, NULL, NULL}

/* Packs the memory folder `dir` (<dir>/<domain>/...) into a backup signed
 * with the terminal key: into `output`, or into the store and the catalog
 * (file *.part, fsync, rename, fsync folder, then the catalog commit). */
BK_EXTERN int bk_backup_pack(const bk_config *cfg, const char *dir, const bk_backup_pack_opts *opts,
			     bk_backup_report *out);

/* An opened backup: a file path (its statement beside it) or a catalog id
 * (or a unique prefix of at least 8 characters). */
typedef struct bk_backup bk_backup;
BK_EXTERN int bk_backup_open(bk_backup **out, const bk_config *cfg, const char *path_or_id);
BK_EXTERN void bk_backup_free(bk_backup *b);
BK_EXTERN const char *bk_backup_path(const bk_backup *b);
/* The statement, or NULL when missing or malformed (bk_backup_statement_error()
 * then says why). */
BK_EXTERN const bk_statement *bk_backup_statement(const bk_backup *b);
BK_EXTERN const bk_error *bk_backup_statement_error(const bk_backup *b);
/* The catalog id when this file is the catalog's copy of the backup. */
BK_EXTERN const char *bk_backup_catalog_id(const bk_backup *b);

/* What `inspect` shows; needs no key. */
#define BK_BACKUP_INSPECT_STANZAS 16
typedef struct bk_backup_inspection {
	uint64_t file_size;
	uint64_t header_size;
	size_t stanza_count;
	char stanza_types[BK_BACKUP_INSPECT_STANZAS][32]; /* the first ones */
	int statement_present;
	int statement_parsed;
	int statement_valid;      /* signature and certificate verify */
	int payload_size_matches; /* the file's payload size is the statement's */
	char statement_error_reason[64];
	char statement_error[512];
} bk_backup_inspection;
BK_EXTERN int bk_backup_inspect(bk_backup *b, bk_backup_inspection *out);

#define BK_BACKUP_READ_OPTS_VERSION 1
typedef struct bk_backup_read_opts {
	unsigned version;
	int quick;                    /* verify: statement and payload digest only */
	const char *identity;         /* identity file; NULL: depot.identity */
	bk_passphrase_cb passphrase;  /* for a protected identity file */
	void *passphrase_payload;
	const char *const *domains;   /* extract: only these domains */
	size_t domain_count;
	bk_progress_cb progress;
	void *progress_payload;
} bk_backup_read_opts;
#define BK_BACKUP_READ_OPTS_INIT {BK_BACKUP_READ_OPTS_VERSION, 0, NULL, NULL, NULL, NULL, 0, NULL, NULL}

/* Verifies the statement, then (unless quick) decrypts, authenticates every
 * chunk and checks the manifest and every entry's digest, writing nothing.
 * The result is recorded in the catalog when the backup is in it. */
BK_EXTERN int bk_backup_verify(bk_backup *b, const bk_backup_read_opts *opts, bk_backup_report *out);

/* Creates `dir` (or takes an empty one), decrypts into a staging folder
 * inside it and moves the domains into place only once every check passed;
 * on failure nothing is left (a folder it made is removed). */
BK_EXTERN int bk_backup_extract(bk_backup *b, const char *dir, const bk_backup_read_opts *opts,
				bk_backup_report *out);

/* Writes `output` (never replacing a file) with a new age header for
 * `recipients` and the same payload bytes; copies the statement, which stays
 * valid. `opts` gives the identity that opens the file. */
BK_EXTERN int bk_backup_rewrap(bk_backup *b, const char *output, const char *const *recipients,
			       size_t recipient_count, const bk_backup_read_opts *opts,
			       bk_backup_report *out);

/* Checks the file and its statement (quick verification) and copies both
 * into the store and the catalog. Importing the same backup again is fine. */
BK_EXTERN int bk_backup_import(const bk_config *cfg, const char *path, bk_backup_report *out);

/* Removes a backup from the catalog (refused, BK_EBUSY, while unfinished
 * work holds it), then its file and statement from the store. */
BK_EXTERN int bk_backup_remove(const bk_config *cfg, const char *id, bk_backup_report *out);

typedef struct bk_backup_gc_item {
	char *id;
	char *name; /* the store entry or the catalog location */
} bk_backup_gc_item;
typedef struct bk_backup_gc_report {
	bk_backup_gc_item *orphan_files; /* in the store, not in the catalog */
	size_t orphan_file_count;
	bk_backup_gc_item *missing_files; /* in the catalog, not in the store */
	size_t missing_file_count;
	bk_backup_gc_item *removed_parts; /* *.part leftovers removed */
	size_t removed_part_count;
	bk_backup_gc_item *busy_parts;    /* *.part files still being written */
	size_t busy_part_count;
} bk_backup_gc_report;
/* Reports orphans both ways and removes only *.part leftovers. */
BK_EXTERN int bk_backup_gc(const bk_config *cfg, bk_backup_gc_report *out);
BK_EXTERN void bk_backup_gc_report_clear(bk_backup_gc_report *r);

BK_END_DECLS

#endif
