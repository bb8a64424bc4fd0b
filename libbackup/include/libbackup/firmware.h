/* libbackup: signed firmware bundles (*.aifw), see aibo-firmware(5).
 *
 * A bundle is an uncompressed tar archive: manifest.json, its minisign
 * signature manifest.json.minisig, then the payload images the manifest
 * names, in its order. The manifest carries each payload's size and
 * BLAKE2b-512 digest, so a signature over the manifest covers everything.
 *
 * Opening a bundle reads and strictly checks the manifest and the
 * signature entry; bk_fw_bundle_verify() checks the signature against
 * trusted keys, the unit's compatibility and every payload digest. Payload
 * bytes are only handed out (bk_fw_bundle_payloads) once the signature has
 * been verified, and every payload is checked again while it streams. */
#ifndef LIBBACKUP_FIRMWARE_H
#define LIBBACKUP_FIRMWARE_H

#include <libbackup/common.h>
#include <libbackup/progress.h>
#include <libbackup/stream.h>

BK_BEGIN_DECLS

typedef struct bk_fw_bundle bk_fw_bundle;

/* Limits of the format. */
#define BK_FW_MANIFEST_MAX  65536 /* bytes of manifest.json */
#define BK_FW_SIGNATURE_MAX 8192  /* bytes of manifest.json.minisig */
#define BK_FW_MODELS_MAX    32
#define BK_FW_PAYLOADS_MAX  16

/* --- Versions -------------------------------------------------------------- */

/* Checks a version string: MAJOR.MINOR.PATCH with an optional pre-release
 * ("-rc.1"), numbers without leading zeros, no build metadata; at most 64
 * characters. BK_EFORMAT ("bad-version") otherwise. */
BK_EXTERN int bk_fw_version_check(const char *version);
/* Compares two versions by semantic-versioning precedence: *out gets a
 * negative number, 0 or a positive number. BK_EFORMAT if either is invalid. */
BK_EXTERN int bk_fw_version_compare(const char *a, const char *b, int *out);
/* Compares two hardware revisions (dot-separated decimal numbers, "2" or
 * "1.3") numerically, component by component. */
BK_EXTERN int bk_fw_hw_rev_compare(const char *a, const char *b, int *out);

/* --- Opening and reading ---------------------------------------------------- */

/* Opens a bundle: reads and checks its first two entries (the manifest and
 * its signature). Nothing is trusted yet. BK_EFORMAT for a malformed bundle
 * or manifest. */
BK_EXTERN int bk_fw_bundle_open(bk_fw_bundle **out, const char *path);
BK_EXTERN void bk_fw_bundle_free(bk_fw_bundle *b);

BK_EXTERN const char *bk_fw_bundle_path(const bk_fw_bundle *b);
BK_EXTERN const char *bk_fw_bundle_version(const bk_fw_bundle *b);
BK_EXTERN uint32_t bk_fw_bundle_security_counter(const bk_fw_bundle *b);
BK_EXTERN size_t bk_fw_bundle_model_count(const bk_fw_bundle *b);
BK_EXTERN const char *bk_fw_bundle_model(const bk_fw_bundle *b, size_t i);
BK_EXTERN const char *bk_fw_bundle_hw_rev_min(const bk_fw_bundle *b);
BK_EXTERN const char *bk_fw_bundle_hw_rev_max(const bk_fw_bundle *b);
BK_EXTERN int64_t bk_fw_bundle_schema_min(const bk_fw_bundle *b);
BK_EXTERN int64_t bk_fw_bundle_schema_max(const bk_fw_bundle *b);
/* RFC 3339 UTC time. */
BK_EXTERN const char *bk_fw_bundle_created(const bk_fw_bundle *b);
/* The exact bytes of manifest.json and manifest.json.minisig (what a unit
 * is sent in FW_BEGIN). Borrowed. */
BK_EXTERN const uint8_t *bk_fw_bundle_manifest(const bk_fw_bundle *b, size_t *out_len);
BK_EXTERN const uint8_t *bk_fw_bundle_signature(const bk_fw_bundle *b, size_t *out_len);
/* The id (16 upper-case hex digits) of the key that signed the manifest,
 * once bk_fw_bundle_verify() has checked the signature; NULL before. */
BK_EXTERN const char *bk_fw_bundle_key_id(const bk_fw_bundle *b);

/* One payload as the manifest describes it. Strings are borrowed. */
typedef struct bk_fw_payload_info {
	const char *name; /* entry name in the bundle ("rootfs.img") */
	const char *slot; /* target slot role ("rootfs", "kernel") */
	uint64_t size;
	const char *blake2b; /* BLAKE2b-512, 128 lower-case hex digits */
	size_t index;
} bk_fw_payload_info;

BK_EXTERN size_t bk_fw_bundle_payload_count(const bk_fw_bundle *b);
BK_EXTERN int bk_fw_bundle_payload(const bk_fw_bundle *b, size_t i, bk_fw_payload_info *out);
/* Total bytes of all payloads. */
BK_EXTERN uint64_t bk_fw_bundle_payload_bytes(const bk_fw_bundle *b);

/* --- Verification ---------------------------------------------------------- */

/* The unit a bundle is meant for. `model` and `hw_rev` may be NULL (not
 * checked); `schema` < 0 means no memory schema is needed. */
#define BK_FW_UNIT_VERSION 1
typedef struct bk_fw_unit {
	unsigned version;
	const char *model;
	const char *hw_rev;
	uint32_t security_counter; /* the unit's current anti-rollback counter */
	int64_t schema;            /* the memory schema the firmware must hold */
} bk_fw_unit;
#define BK_FW_UNIT_INIT {BK_FW_UNIT_VERSION, NULL, NULL, 0, -1}

#define BK_FW_VERIFY_OPTS_VERSION 1
typedef struct bk_fw_verify_opts {
	unsigned version;
	/* A minisign public key file, or a folder whose *.pub files are all
	 * trusted (several keys coexist during a rotation). Required. */
	const char *trusted_keys;
	/* NULL-terminated list of revoked key ids (hex, any case, leading
	 * zeros optional as minisign prints them); may be NULL. */
	const char *const *revoked_key_ids;
	/* Compatibility checks against this unit when not NULL. */
	const bk_fw_unit *unit;
	/* Only the signature and compatibility, not the payload digests. */
	int skip_payloads;
	bk_progress_cb progress;
	void *progress_payload;
} bk_fw_verify_opts;
#define BK_FW_VERIFY_OPTS_INIT {BK_FW_VERIFY_OPTS_VERSION, NULL, NULL, NULL, 0, NULL, NULL}

/* Verifies, in this order: the signature (BK_EVERIFY with reason
 * "key-revoked", "unknown-key" or "bad-signature"), the unit's compatibility
 * (BK_EINCOMPAT: "wrong-model", "wrong-hw-rev", "security-counter-rollback",
 * "schema-unsupported"), then every payload (BK_EVERIFY:
 * "payload-digest-mismatch", "payload-size-mismatch", "payload-truncated";
 * BK_EFORMAT for missing, extra, reordered or unsafe entries). */
BK_EXTERN int bk_fw_bundle_verify(bk_fw_bundle *b, const bk_fw_verify_opts *opts);

/* Hands each payload, in order, to `cb` as a stream of its bytes. The
 * stream checks the size and digest as it goes: its last read fails with
 * BK_EVERIFY instead of reporting the end when the bytes are not the signed
 * ones (so a consumer that reads to the end never accepts a bad payload;
 * bytes already handed out must be discarded by it). What `cb` leaves unread
 * is read and checked after it returns. A non-zero return from `cb` stops:
 * a negative BK_E* code is returned as is, anything else as BK_ECANCELLED.
 * The signature must have been verified first (BK_EINVALID otherwise). */
typedef int (*bk_fw_payload_cb)(const bk_fw_payload_info *info, bk_stream *data, void *payload);
BK_EXTERN int bk_fw_bundle_payloads(bk_fw_bundle *b, bk_fw_payload_cb cb, void *payload);

/* --- Writing --------------------------------------------------------------- */

typedef struct bk_fw_image {
	const char *name; /* entry name: [A-Za-z0-9._-], 1-64 characters */
	const char *path; /* the image file */
	const char *slot; /* target slot role: [a-z0-9_-], 1-32 characters */
} bk_fw_image;

#define BK_FW_PACK_OPTS_VERSION 1
typedef struct bk_fw_pack_opts {
	unsigned version;
	const char *const *models; /* NULL-terminated, at least one */
	const char *hw_rev_min;
	const char *hw_rev_max;
	const char *fw_version; /* semantic version */
	uint32_t security_counter;
	int64_t schema_min;
	int64_t schema_max;
	const bk_fw_image *images;
	size_t image_count;
	int64_t created;             /* Unix seconds; 0: now */
	const char *secret_key;      /* minisign secret key file (mode 0600) */
	const char *password;        /* NULL for a key stored without one */
	const char *trusted_comment; /* NULL: a default naming the version */
	int exclusive;               /* refuse to replace an existing bundle */
	bk_progress_cb progress;
	void *progress_payload;
} bk_fw_pack_opts;
#define BK_FW_PACK_OPTS_INIT                                                              \
	{BK_FW_PACK_OPTS_VERSION, NULL, NULL, NULL, NULL, 0, 0, 0, NULL, 0, 0, NULL, NULL, \
	 NULL, 0, NULL, NULL}

/* Writes a signed bundle to `path` atomically (path.part, then renamed).
 * The images are read twice: once to hash them for the manifest, once to
 * copy them (and hash them again: an image that changed in between is
 * refused). Memory stays bounded whatever the image sizes. */
BK_EXTERN int bk_fw_bundle_pack(const char *path, const bk_fw_pack_opts *opts);

/* --- Choosing a bundle ------------------------------------------------------- */

/* The lowest version among the bundles (*.aifw) of `dir` that are valid,
 * signed by a trusted, unrevoked key, list `model`, cover `hw_rev` (NULL: any),
 * hold memory schema `schema` (< 0: any) and have a security counter of at
 * least `min_security_counter`; its payloads are verified before it is
 * chosen. Invalid bundles are skipped. *out_path (free with bk_free) gets
 * its path; BK_ENOTFOUND ("no-fitting-firmware") when none fits. */
BK_EXTERN int bk_fw_select(const char *dir, const char *model, const char *hw_rev, int64_t schema,
                           uint32_t min_security_counter, const char *trusted_keys,
                           const char *const *revoked_key_ids, char **out_path);

/* One bundle of a folder, as bk_fw_list() reports it. Strings are owned by
 * the list. */
typedef struct bk_fw_entry {
	char *path;
	int status;    /* 0: valid (and signed, when keys were given); else a BK_E* code */
	char *reason;  /* the failure's reason, or NULL */
	char *message; /* the failure's message, or NULL */
	char *version; /* NULL when the bundle could not be read */
	char *models;  /* comma-separated */
	char *hw_rev_min;
	char *hw_rev_max;
	int64_t schema_min;
	int64_t schema_max;
	uint32_t security_counter;
	uint64_t payload_bytes;
	char *created;
	char *key_id; /* the signing key, when checked */
} bk_fw_entry;

#define BK_FW_LIST_OPTS_VERSION 1
typedef struct bk_fw_list_opts {
	unsigned version;
	const char *model;        /* only bundles listing this model */
	int64_t min_schema;       /* only bundles holding at least this schema (< 0: any) */
	const char *trusted_keys; /* when set, signatures are checked (not payloads) */
	const char *const *revoked_key_ids;
} bk_fw_list_opts;
#define BK_FW_LIST_OPTS_INIT {BK_FW_LIST_OPTS_VERSION, NULL, -1, NULL, NULL}

/* Lists the bundles (*.aifw) of `dir`: readable ones by ascending version,
 * then those that could not be read (status set), by path. Filters apply
 * to readable bundles only. Free with bk_fw_list_free(). */
BK_EXTERN int bk_fw_list(bk_fw_entry **out, size_t *out_count, const char *dir,
                         const bk_fw_list_opts *opts);
BK_EXTERN void bk_fw_list_free(bk_fw_entry *list, size_t count);

/* --- Flashing a unit ----------------------------------------------------------- */

typedef struct bk_device bk_device;

/* What a flash did (filled as far as it got, also on failure). */
typedef struct bk_fw_flash_result {
	char slot[8];          /* the slot written ("B") */
	char previous_slot[8]; /* the slot that ran before ("A") */
	char running_slot[8];  /* the slot the unit runs at the end ("" when unknown) */
	char boot_result[16];  /* "good", "rolled-back", "" when unknown */
	uint64_t bytes;        /* image bytes */
	uint64_t resumed_from; /* the unit's offset at the first FW_BEGIN */
	uint64_t sent;         /* bytes sent by this call */
	unsigned resumes;      /* transfers resumed after a lost connection */
	uint64_t resume_offset; /* the unit's offset at the last resume */
	uint64_t security_counter; /* the unit's stored counter after the boot */
} bk_fw_flash_result;

#define BK_FW_FLASH_OPTS_VERSION 1
typedef struct bk_fw_flash_opts {
	unsigned version;
	/* Trusted firmware keys and revoked key ids, as bk_fw_verify_opts. */
	const char *trusted_keys;
	const char *const *revoked_key_ids;
	/* The unit's battery must be at least this (percent). */
	int min_battery;
	/* How long the unit may take to come back after REBOOT (0: 120000 ms). */
	int64_t boot_timeout_ms;
	/* Lost connections the transfer survives (0: 5), and how long each
	 * reconnection may take (0: 30000 ms). */
	unsigned max_resumes;
	int64_t reconnect_timeout_ms;
	/* Tests only: skip every check on the terminal side (signature,
	 * compatibility, battery) and send the bundle as it is, so that the
	 * unit's own checks can be seen at work. */
	int skip_terminal_checks;
	bk_progress_cb progress;
	void *progress_payload;
	bk_fw_flash_result *result; /* may be NULL */
} bk_fw_flash_opts;
#define BK_FW_FLASH_OPTS_INIT                                                                     \
	{BK_FW_FLASH_OPTS_VERSION, NULL, NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL}

/* Flashes the bundle into the unit's inactive slot (the safe A/B way), with
 * weighted progress steps "write", "verify", "reboot" and "confirm":
 * preflight (battery, the unit is idle, the bundle verified against the
 * trusted keys and the unit: model, hardware revision, security counter,
 * memory schema), FW_BEGIN then the payload bytes by offset from where the
 * unit holds them (a lost connection is reconnected and the transfer
 * resumed from the unit's offset), FW_FINISH (the unit checks signature
 * and digests itself), FW_ACTIVATE for one boot, REBOOT, then reconnects
 * before the boot timeout and reads BOOT_STATUS. Errors: the verification
 * codes of bk_fw_bundle_verify; BK_EINCOMPAT "battery-low"; BK_EBUSY
 * "unit-busy"; BK_EROLLBACK "firmware-rolled-back" when the new firmware
 * failed its boot and the unit went back to the old slot; BK_ETIMEOUT
 * "unit-not-back" when the unit did not come back (its state unknown);
 * the unit's own refusals as it reports them. */
BK_EXTERN int bk_fw_flash(bk_device *dev, bk_fw_bundle *b, const bk_fw_flash_opts *opts);

BK_END_DECLS

#endif
