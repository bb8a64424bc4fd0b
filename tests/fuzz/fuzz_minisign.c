/* Fuzz target "minisign": the public key, secret key and signature parsers,
 * and verification of whatever parses. Secret keys are parsed without a
 * passphrase, so an encrypted one stops before its (costly) scrypt. */
#include <stdint.h>
#include <string.h>

#include <sodium.h>

#include "crypto/minisign.h"
#include "libbackup/util/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t msg[] = "hello\n";
	const char *text = (const char *)data;
	bk_minisign_pubkey pk;
	bk_minisign_seckey *sk = NULL;
	bk_minisign_sig *sig = NULL;

	if (sodium_init() < 0) /* idempotent; fuzzer binaries have no bk_init() */
		return 0;

	if (bk_minisign_pubkey_parse(&pk, text, size) == 0) {
		char *out = NULL;
		size_t len = 0;
		bk_minisign_pubkey again;
		/* What parses re-encodes to something that parses the same. */
		if (bk_minisign_pubkey_encode(&out, &len, &pk) == 0 &&
		    (bk_minisign_pubkey_parse(&again, out, len) != 0 ||
		     memcmp(&again, &pk, sizeof(pk)) != 0))
			__builtin_trap();
		bk__free(out);
	} else {
		memset(&pk, 0x5a, sizeof(pk));
	}
	if (bk_minisign_seckey_parse(&sk, text, size, NULL) == 0) {
		bk_minisign_pubkey own;
		char *s = NULL;
		size_t len = 0;
		bk_minisign_seckey_pubkey(sk, &own);
		/* A parsed secret key signs what its public key verifies. */
		if (bk_minisign_sign_buf(&s, &len, sk, msg, sizeof(msg), "t", NULL) == 0 &&
		    bk_minisign_verify_mem(NULL, &own, 1, msg, sizeof(msg), s, len) != 0)
			__builtin_trap();
		bk__free(s);
		bk_minisign_seckey_free(sk);
	}
	if (bk_minisign_sig_parse(&sig, text, size) == 0) {
		/* Against the key id it names, so the signature checks run. */
		memcpy(pk.key_id, bk_minisign_sig_key_id(sig), sizeof(pk.key_id));
		(void)bk_minisign_verify_buf(sig, &pk, msg, sizeof(msg));
		(void)bk_minisign_verify_buf(sig, &pk, data, size);
		bk_minisign_sig_free(sig);
	}
	return 0;
}
