/* Fuzz target: an age file (binary or armored) read with a fixed X25519
 * identity and a passphrase (scrypt capped at a tiny work factor), header
 * parsing on its own, and header-only re-wrapping. */
#include <stdint.h>
#include <string.h>

#include <libbackup/libbackup.h>

#include "crypto/age.h"

#define FUZZ_IDENTITY "AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bk_age_identities *ids;
	static bk_age_recipient to_r;
	if (ids == NULL) {
		bk_age_identity *id = NULL;
		bk_init();
		if (bk_age_identities_new(&ids) != 0 ||
		    bk_age_identity_parse(&id, FUZZ_IDENTITY, strlen(FUZZ_IDENTITY)) != 0)
			return 0;
		bk_age_identities_add(ids, id);
		bk_age_identities_add_passphrase(ids, "password", 8);
		bk_age_identities_set_max_work_factor(ids, 2);
		bk_age_identity_recipient(&to_r, id);
		bk_age_identity_free(id);
	}
	uint8_t *out = NULL;
	size_t out_len = 0, hl = 0;
	if (bk_age_decrypt_mem(&out, &out_len, data, size, ids, NULL) == 0)
		bk__free(out);
	if (bk_age_header_parse(&hl, data, size, NULL) == 0) {
		bk_age_encrypt_opts to = BK_AGE_ENCRYPT_OPTS_INIT;
		uint8_t *nh = NULL;
		size_t nh_len = 0;
		to.recipients = &to_r;
		to.recipient_count = 1;
		if (bk_age_rewrap_header(&nh, &nh_len, data, hl, ids, &to) == 0)
			bk__free(nh);
	}
	return 0;
}
