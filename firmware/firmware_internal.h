/* Internal: the firmware module (bundle format, manifest, verification).
 * For the modules above it (libbackup core, the device-side flash
 * procedure). */
#ifndef BK_FIRMWARE_INTERNAL_H
#define BK_FIRMWARE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <libbackup/firmware.h>

#include "libbackup/util/util.h"

#define BK_FW_FORMAT         "aibo-firmware/1"
#define BK_FW_MANIFEST_NAME  "manifest.json"
#define BK_FW_SIGNATURE_NAME "manifest.json.minisig"
#define BK_FW_DIGEST_LEN     64
#define BK_FW_NAME_MAX       64
#define BK_FW_SLOT_MAX       32
#define BK_FW_MODEL_MAX      64
#define BK_FW_VERSION_MAX    64
#define BK_FW_HW_REV_MAX     32
/* 1 TiB: larger than any image, small enough for every size computation. */
#define BK_FW_PAYLOAD_SIZE_MAX ((uint64_t)1 << 40)

typedef struct bk_fw_payload {
	char *name;
	char *slot;
	uint64_t size;
	uint8_t digest[BK_FW_DIGEST_LEN];
	char hex[2 * BK_FW_DIGEST_LEN + 1];
} bk_fw_payload;

typedef struct bk_fw_manifest {
	char **models; /* NULL-terminated */
	size_t model_count;
	char *hw_rev_min;
	char *hw_rev_max;
	char *version;
	uint32_t security_counter;
	int64_t schema_min;
	int64_t schema_max;
	bk_fw_payload *payloads;
	size_t payload_count;
	char created[21];
} bk_fw_manifest;

/* Parses manifest.json strictly: exactly the known fields, each checked,
 * and the bytes must be the canonical encoding (bk_fw__manifest_encode) of
 * what they hold. BK_EFORMAT ("bad-manifest") otherwise. */
int bk_fw__manifest_parse(bk_fw_manifest **out, const uint8_t *data, size_t len);
/* The canonical encoding: compact JSON, keys sorted, ASCII, one final
 * newline. Checks every field as the parser does. */
int bk_fw__manifest_encode(const bk_fw_manifest *m, bk_buf *out);
void bk_fw__manifest_free(bk_fw_manifest *m);

/* Field checks shared by the parser and the writer. */
int bk_fw__check_payload_name(const char *name);
int bk_fw__check_slot(const char *slot);
int bk_fw__check_model(const char *model);
int bk_fw__check_hw_rev(const char *rev);

/* Opens a bundle held in memory (borrowed; must outlive the bundle). */
int bk_fw__bundle_open_mem(bk_fw_bundle **out, const void *data, size_t len);
/* Reads every payload and checks names, order, sizes and digests, without
 * the signature (for the fuzz targets and tests). */
int bk_fw__bundle_check_payloads(bk_fw_bundle *b);
const bk_fw_manifest *bk_fw__bundle_manifest(const bk_fw_bundle *b);

/* Signatures (minisign-compatible). Signs `msg` with the secret key file,
 * appending the signature file's text to `sig`. */
int bk_fw__sign(bk_buf *sig, const uint8_t *msg, size_t len, const char *secret_key,
                const char *password, const char *trusted_comment);
/* Verifies `sig` over `msg` with the keys in `trusted` (a .pub file or a
 * folder of them), refusing the revoked key ids. On success `key_id` gets
 * the signer's id (16 upper-case hex digits). BK_EVERIFY with "key-revoked",
 * "unknown-key" or "bad-signature"; BK_EFORMAT for a malformed signature. */
int bk_fw__sig_verify(const uint8_t *msg, size_t len, const uint8_t *sig, size_t sig_len,
                      const char *trusted, const char *const *revoked, char key_id[17]);

#endif
