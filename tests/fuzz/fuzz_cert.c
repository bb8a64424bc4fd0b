/* Fuzz target "cert": the aibo-cert/1 parser (armored and binary) and the
 * aibo-keys/1 key file parser. */
#include <stdint.h>
#include <string.h>

#include <sodium.h>

#include "crypto/cert.h"
#include "libbackup/util/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bk_cert *c = NULL, *again = NULL;
	bk_keyfile *k = NULL;

	if (sodium_init() < 0) /* idempotent; fuzzer binaries have no bk_init() */
		return 0;

	if (bk_cert_parse(&c, data, size) == 0) {
		char *armor = NULL;
		size_t alen = 0, len = 0, len2 = 0;
		bk_minisign_pubkey ca;
		/* What parses is canonical: the armor round trip gives the same bytes. */
		if (bk_cert_armor(&armor, &alen, c) == 0) {
			if (bk_cert_parse(&again, (const uint8_t *)armor, alen) != 0)
				__builtin_trap();
			const uint8_t *a = bk_cert_bytes(c, &len);
			const uint8_t *b = bk_cert_bytes(again, &len2);
			if (len != len2 || memcmp(a, b, len) != 0)
				__builtin_trap();
		}
		memset(&ca, 0x42, sizeof(ca));
		memcpy(ca.key_id, bk_cert_issuer_key_id(c), sizeof(ca.key_id));
		(void)bk_cert_verify(c, &ca, 1, bk_cert_role_get(c), bk_cert_not_before(c));
		(void)bk_cert_check_subject(c, "x");
		bk__free(armor);
		bk_cert_free(again);
		bk_cert_free(c);
	}
	if (bk_keyfile_parse(&k, (const char *)data, size) == 0) {
		char *text = NULL;
		size_t len = 0;
		if (bk_keyfile_encode(&text, &len, k) == 0 &&
		    (len != size || memcmp(text, data, size) != 0))
			__builtin_trap();
		bk__free(text);
		bk_keyfile_free(k);
	}
	return 0;
}
