/* bk-test-lab: the lab for the backup tests and the benchmark.
 *   bk-test-lab pki DIR                     the lab PKI and configuration
 *   bk-test-lab memgen DIR SIZE SEED        a deterministic memory folder
 *   bk-test-lab sign PKIDIR FILE MANIFEST PLAINTEXT_SIZE
 *       writes FILE.statement for an age file made by other tools, signed
 *       with the lab terminal key, from its MANIFEST.json and the size of
 *       its memory archive */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libbackup/libbackup.h>

#include "device/virtual/memgen.h"
#include "device/virtual/pki.h"
#include "libbackup/archive/archive.h"
#include "libbackup/backup/backup_internal.h"

static int fail(const char *what)
{
	fprintf(stderr, "bk-test-lab: %s: %s\n", what, bk_error_last()->message);
	return 1;
}

static int sign(const char *pki, const char *file, const char *manifest, const char *size)
{
	char kpath[4096], cpath[4096], spath[4096];
	bk_keyfile *key = NULL;
	bk_cert *cert = NULL;
	bk_manifest *m = NULL;
	uint8_t *mdata = NULL, *stmt = NULL;
	size_t mlen = 0, slen = 0;
	bk_payload_digest pd;
	bk_archive_limits none = {0, 0, 0, 0};
	uint64_t plain = 0;
	snprintf(kpath, sizeof(kpath), "%s/%s", pki, BK_PKI_TERMINAL_KEY);
	snprintf(cpath, sizeof(cpath), "%s/%s", pki, BK_PKI_TERMINAL_CERT);
	snprintf(spath, sizeof(spath), "%s.statement", file);
	if (bk_parse_u64(size, &plain) != 0)
		return fail("size");
	if (bk_keyfile_read(&key, kpath) || bk_cert_read(&cert, cpath))
		return fail("terminal key");
	if (bk_file_read(manifest, (size_t)1 << 28, &mdata, &mlen) ||
	    bk_manifest_parse(&m, mdata, mlen, &none))
		return fail(manifest);
	if (bk_payload_digest_file(file, &pd))
		return fail(file);
	bk_statement_info si;
	memset(&si, 0, sizeof(si));
	si.backup_id = bk_manifest_backup_id(m);
	si.serial = bk_manifest_serial(m);
	si.model = bk_manifest_model(m);
	si.hardware_revision = bk_manifest_hardware_revision(m);
	si.firmware_version = bk_manifest_firmware_version(m);
	si.schema_version = bk_manifest_schema_version(m);
	si.created = bk_manifest_created(m);
	si.plaintext_size = plain;
	si.payload_size = pd.payload_len;
	memcpy(si.payload_digest, pd.digest, sizeof(si.payload_digest));
	bk_manifest_raw_digest(m, si.manifest_digest);
	if (bk_statement_sign(&stmt, &slen, &si, cert, bk_keyfile_ed25519_secret(key)) ||
	    bk_file_write_atomic(spath, stmt, slen, 0644, 0))
		return fail("sign");
	bk__free(stmt);
	bk__free(mdata);
	bk_manifest_free(m);
	bk_cert_free(cert);
	bk_keyfile_free(key);
	return 0;
}

int main(int argc, char **argv)
{
	if (bk_init() != 0)
		return 1;
	int rc = 2;
	if (argc == 3 && strcmp(argv[1], "pki") == 0)
		rc = bk_vdev_pki_init(argv[2]) ? fail(argv[2]) : 0;
	else if (argc == 5 && strcmp(argv[1], "memgen") == 0) {
		uint64_t size = 0, seed = 0;
		if (bk_parse_size(argv[3], &size) || bk_parse_u64(argv[4], &seed))
			rc = fail("size or seed");
		else
			rc = bk_vdev_memgen(argv[2], size, seed) ? fail(argv[2]) : 0;
	} else if (argc == 6 && strcmp(argv[1], "sign") == 0)
		rc = sign(argv[2], argv[3], argv[4], argv[5]);
	else
		fprintf(stderr, "usage: bk-test-lab pki DIR | memgen DIR SIZE SEED | "
				"sign PKIDIR FILE MANIFEST PLAINTEXT_SIZE\n");
	bk_shutdown();
	return rc;
}
