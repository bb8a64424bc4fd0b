/* libbackup: moving memories between units and the depot.
 *
 * bk_backup_pull() asks a unit to make a backup of its memory (the unit
 * archives and encrypts it itself and signs a statement with its own key)
 * and streams the file to the terminal: into the store and the catalog, or
 * into a given file. bk_restore_push() sends a backup to a (replacement)
 * unit: the file key is re-wrapped to the age recipient of the unit's
 * verified factory certificate, the new header and the unchanged payload
 * are streamed, and the unit decrypts, checks and commits. Neither needs,
 * or writes, the plaintext on the terminal.
 *
 * Both resume: after a lost connection they reconnect (with backoff, up to
 * `reconnect_ms`) and continue from the last byte the other side holds; a
 * command that was killed, run again, continues the unit-side work (the
 * unit keeps its backup until it was stored; a restore resumes from
 * RESTORE_STATUS with the same re-wrapped header, kept in the catalog).
 * Use one bk_device per thread; several pulls or pushes may run at once on
 * separate handles.
 *
 * Failure reasons (bk_error_last()->reason) callers can act on:
 *   "battery-low"          BK_EINCOMPAT  the unit's battery is under the minimum
 *   "no-space"             BK_ENOSPACE   the destination lacks the unit's estimate
 *   "statement-invalid"    BK_EVERIFY    the unit's statement does not verify
 *   "statement-mismatch"   BK_EVERIFY    the statement is not about this unit
 *   "payload-corrupt"      BK_EVERIFY    the received file differs from its statement
 *   "model-mismatch"       BK_EINCOMPAT  the backup belongs to another model
 *   "schema-unsupported"   BK_EINCOMPAT  the unit's firmware cannot hold the schema
 *   "unit-has-memory"      BK_EEXIST     the unit holds a memory (see `overwrite`)
 *   "no-identity-matched"  BK_EAUTH      the identity does not open the backup
 *   "digest-mismatch"      BK_EVERIFY    the unit's digests differ from the manifest */
#ifndef LIBBACKUP_TRANSFER_H
#define LIBBACKUP_TRANSFER_H

#include <libbackup/backup.h>
#include <libbackup/common.h>
#include <libbackup/config.h>
#include <libbackup/device.h>
#include <libbackup/keys.h>
#include <libbackup/progress.h>

BK_BEGIN_DECLS

/* What crossed the wire. */
typedef struct bk_transfer_stats {
	uint64_t size;       /* bytes of the file */
	uint64_t start;      /* the offset the transfer started at (resume) */
	uint64_t bytes;      /* bytes that crossed, re-sent ones included */
	unsigned reconnects; /* sessions re-opened after a lost connection */
	double seconds;      /* wall time of the transfer */
} bk_transfer_stats;

#define BK_BACKUP_PULL_OPTS_VERSION 1

typedef struct bk_backup_pull_opts {
	unsigned version;
	/* "age1..." recipients; none: the depot identity's recipients and
	 * backup.escrow_recipients. */
	const char *const *recipients;
	size_t recipient_count;
	/* Write this file and FILE.statement (never replacing one)... */
	const char *output;
	/* ...or DIR/<id>.aibk and its statement; neither: the store + catalog. */
	const char *output_dir;
	/* Domains to back up (names); none: all. */
	const char *const *domains;
	size_t domain_count;
	/* Run the full check with the depot identity afterwards. */
	int verify;
	bk_passphrase_cb passphrase; /* for a protected depot identity */
	void *passphrase_payload;
	bk_progress_cb progress; /* subject: the unit's serial */
	void *progress_payload;
	/* How long to keep reconnecting after a lost connection (0: 60000 ms). */
	int64_t reconnect_ms;
	/* Lowest battery level accepted, percent (0: backup.min_battery or 20). */
	int min_battery;
} bk_backup_pull_opts;

#define BK_BACKUP_PULL_OPTS_INIT                                                                   \
	{                                                                                          \
		BK_BACKUP_PULL_OPTS_VERSION, NULL, 0, NULL, NULL, NULL, 0, 0, NULL, NULL, NULL,    \
		    NULL, 0, 0                                                                     \
	}

/* Backs up the unit `dev` is connected to (see above). `out` (may be NULL;
 * clear with bk_backup_report_clear) tells what was written; `stats` (may
 * be NULL) what crossed the wire. */
BK_EXTERN int bk_backup_pull(const bk_config *cfg, bk_device *dev, const bk_backup_pull_opts *opts,
                             bk_backup_report *out, bk_transfer_stats *stats);

#define BK_RESTORE_PUSH_OPTS_VERSION 1

typedef struct bk_restore_push_opts {
	unsigned version;
	const char *identity; /* identity file that opens the backup; NULL: depot.identity */
	bk_passphrase_cb passphrase;
	void *passphrase_payload;
	int overwrite;           /* replace a memory the unit already holds */
	bk_progress_cb progress; /* subject: the unit's serial */
	void *progress_payload;
	int64_t reconnect_ms; /* 0: 60000 */
	int min_battery;      /* 0: backup.min_battery or 20 */
	/* The file is already encrypted to this unit (a cloud backup the
	 * service re-wrapped for it): it is sent byte for byte, the terminal
	 * opens nothing, and the unit's commit answer must name the manifest
	 * digest of the statement; its digests are reported as the unit gives
	 * them. `identity` is not used. */
	int sealed;
} bk_restore_push_opts;

#define BK_RESTORE_PUSH_OPTS_INIT                                                                  \
	{                                                                                          \
		BK_RESTORE_PUSH_OPTS_VERSION, NULL, NULL, NULL, 0, NULL, NULL, 0, 0, 0             \
	}

/* What a restore did. */
typedef struct bk_restore_report {
	char backup_id[40];
	char serial[72];      /* the unit restored */
	char from_serial[72]; /* the unit the backup came from */
	uint64_t schema;
	int resumed;        /* the unit already held part of the file */
	int digests_match;  /* the unit's digests equal the manifest's */
	char *domains_json; /* the digests the unit reported (JSON object) */
	bk_transfer_stats stats;
} bk_restore_report;

BK_EXTERN void bk_restore_report_clear(bk_restore_report *r);

/* Restores `backup` (a file path or a catalog id) onto the unit `dev` is
 * connected to (see above). */
BK_EXTERN int bk_restore_push(const bk_config *cfg, bk_device *dev, const char *backup,
                              const bk_restore_push_opts *opts, bk_restore_report *out);

BK_END_DECLS

#endif
