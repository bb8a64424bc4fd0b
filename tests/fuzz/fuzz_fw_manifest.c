/* Fuzz target: the firmware manifest parser. Whatever it accepts must
 * encode back to exactly the same bytes, and its version must compare
 * equal to itself. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libbackup/libbackup.h>

#include "firmware/firmware_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bk_fw_manifest *m = NULL;
	bk_buf out = BK_BUF_INIT;
	static int initialised;
	if (!initialised) {
		bk_init();
		initialised = 1;
	}
	if (bk_fw__manifest_parse(&m, data, size) == 0) {
		int c = 1;
		if (bk_fw__manifest_encode(m, &out) != 0 || out.len != size ||
		    memcmp(out.data, data, size) != 0)
			abort();
		if (bk_fw_version_compare(m->version, m->version, &c) != 0 || c != 0)
			abort();
	}
	bk_buf_free(&out);
	bk_fw__manifest_free(m);
	return 0;
}
