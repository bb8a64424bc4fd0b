/* Fuzz target: the memory archive reader in verify-only mode. */
#include <stddef.h>
#include <stdint.h>

#include "libbackup/archive/archive.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bk_stream *in = NULL;
	bk_archive_read_opts opts = BK_ARCHIVE_READ_OPTS_INIT;
	opts.limits.max_entries = 10000;
	opts.limits.max_total_bytes = 64 << 20;
	opts.limits.max_manifest_bytes = 1 << 20;
	if (bk_stream_mem_reader(&in, data, size) != 0)
		return 0;
	(void)bk_archive_read(in, &opts, NULL, NULL);
	bk_stream_free(in);
	return 0;
}
