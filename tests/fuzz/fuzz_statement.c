/* libFuzzer target: the signed statement parser (aibo-backup(5)). */
#include <stddef.h>
#include <stdint.h>

#include <libbackup/backup.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bk_statement *st = NULL;
	if (bk_statement_parse(&st, data, size) == 0) {
		bk_statement_view v;
		size_t len = 0;
		bk_statement_get(st, &v);
		/* A parsed statement is canonical: its bytes are the input. */
		const uint8_t *b = bk_statement_bytes(st, &len);
		if (len != size || (len && b[len - 1] != '\n'))
			__builtin_trap();
		bk_statement_free(st);
	}
	return 0;
}
