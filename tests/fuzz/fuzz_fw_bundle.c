/* Fuzz target: the firmware bundle reader (entries, manifest, payload
 * sizes and digests; signatures are not checked here). */
#include <stdint.h>
#include <stdlib.h>

#include <libbackup/libbackup.h>

#include "firmware/firmware_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bk_fw_bundle *b = NULL;
	static int initialised;
	if (!initialised) {
		bk_init();
		initialised = 1;
	}
	if (bk_fw__bundle_open_mem(&b, data, size) == 0) {
		size_t len;
		if (bk_fw_bundle_manifest(b, &len) == NULL || len == 0)
			abort();
		int rc = bk_fw__bundle_check_payloads(b);
		if (rc != 0 && rc != BK_EFORMAT && rc != BK_EVERIFY && rc != BK_ENOMEM)
			abort();
	}
	bk_fw_bundle_free(b);
	return 0;
}
