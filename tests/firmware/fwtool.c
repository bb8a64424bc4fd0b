/* A small driver of the firmware API for the script tests:
 *   fwtool keygen SECKEY PUBKEY
 *   fwtool pack OUT SECKEY VERSION IMAGE...
 *   fwtool verify BUNDLE TRUSTED_KEYS
 * Failures print "<reason>: <message>" on stderr and exit 1. */
#include <libgen.h>
#include <stdio.h>
#include <string.h>

#include <libbackup/firmware.h>
#include <libbackup/libbackup.h>

#include "crypto/minisign.h"

static int fail(void)
{
	fprintf(stderr, "%s: %s\n", bk_error_last()->reason, bk_error_last()->message);
	return 1;
}

int main(int argc, char **argv)
{
	if (bk_init() != 0)
		return fail();
	if (argc == 4 && strcmp(argv[1], "keygen") == 0) {
		bk_minisign_seckey *sk = NULL;
		bk_minisign_pubkey pk;
		if (bk_minisign_keygen(&sk) || bk_minisign_seckey_write(argv[2], sk, NULL, 0, 0))
			return fail();
		bk_minisign_seckey_pubkey(sk, &pk);
		bk_minisign_seckey_free(sk);
		return bk_minisign_pubkey_write(argv[3], &pk) ? fail() : 0;
	}
	if (argc >= 6 && argc <= 21 && strcmp(argv[1], "pack") == 0) {
		static const char *const models[] = {"ERS-1000", NULL};
		static const char *const slots[] = {"rootfs", "kernel", "data", "aux"};
		bk_fw_image images[16];
		bk_fw_pack_opts o = BK_FW_PACK_OPTS_INIT;
		for (int i = 5; i < argc; i++) {
			images[i - 5].path = argv[i];
			images[i - 5].name = basename(argv[i]);
			images[i - 5].slot = slots[(i - 5) % 4];
		}
		o.models = models;
		o.hw_rev_min = "1";
		o.hw_rev_max = "3";
		o.fw_version = argv[4];
		o.security_counter = 2;
		o.schema_min = 1;
		o.schema_max = 4;
		o.images = images;
		o.image_count = (size_t)(argc - 5);
		o.secret_key = argv[3];
		return bk_fw_bundle_pack(argv[2], &o) ? fail() : 0;
	}
	if (argc == 4 && strcmp(argv[1], "verify") == 0) {
		bk_fw_bundle *b = NULL;
		bk_fw_verify_opts vo = BK_FW_VERIFY_OPTS_INIT;
		vo.trusted_keys = argv[3];
		if (bk_fw_bundle_open(&b, argv[2]) || bk_fw_bundle_verify(b, &vo)) {
			bk_fw_bundle_free(b);
			return fail();
		}
		printf("ok %s %s\n", bk_fw_bundle_version(b), bk_fw_bundle_key_id(b));
		bk_fw_bundle_free(b);
		return 0;
	}
	fprintf(stderr, "usage: fwtool keygen|pack|verify ...\n");
	return 2;
}
