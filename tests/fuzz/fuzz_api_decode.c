/* Fuzz target: the private-API response decoders. The first byte picks the
 * decoder; the rest is the response body. */
#include <stddef.h>
#include <stdint.h>

#include "libbackup/api/api_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t which = data[0] % 7;
	const uint8_t *body = data + 1;
	size_t len = size - 1;
	switch (which) {
	case 0: {
		bk_api_unit u;
		if (bk_api__decode_unit(body, len, &u) == 0)
			bk_api_unit_clear(&u);
		break;
	}
	case 1: {
		bk_api_ticket t;
		if (bk_api__decode_ticket(body, len, &t) == 0)
			bk_api_ticket_clear(&t);
		break;
	}
	case 2: {
		bk_api_reassignment r;
		if (bk_api__decode_reassignment(body, len, &r) == 0)
			bk_api_reassignment_clear(&r);
		break;
	}
	case 3: {
		bk_api_backup *list = NULL;
		size_t n = 0;
		if (bk_api__decode_backups(body, len, &list, &n) == 0)
			bk_api_backup_list_free(list, n);
		break;
	}
	case 4: {
		uint8_t *b = NULL;
		size_t n = 0;
		if (bk_api__decode_b64_field(body, len, "header", 65536, &b, &n) == 0)
			bk__free(b);
		break;
	}
	case 5: {
		int64_t total;
		bk_api__decode_events(body, len, &total);
		break;
	}
	default: {
		char code[64], msg[300];
		bk_api__decode_error(body, len, code, sizeof(code), msg, sizeof(msg));
		break;
	}
	}
	return 0;
}
