/* Fuzz target: the memory archive's manifest parser. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "libbackup/archive/archive.h"
#include "libbackup/util/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bk_manifest *m = NULL;
	bk_archive_limits limits = BK_ARCHIVE_LIMITS_DEFAULT;
	limits.max_entries = 10000;
	if (bk_manifest_parse(&m, data, size, &limits) == 0) {
		/* A parsed manifest encodes and parses again to the same digests. */
		char *json = NULL;
		size_t len;
		bk_manifest *again = NULL;
		if (bk_manifest_encode(m, &json, &len) != 0 ||
		    bk_manifest_parse(&again, json, len, &limits) != 0 ||
		    !bk_domain_digests_equal(bk_manifest_domains(m), bk_manifest_domains(again)))
			abort();
		bk_manifest_free(again);
		bk__free(json);
	}
	bk_manifest_free(m);
	return 0;
}
