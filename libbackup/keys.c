/* Key generation and key files for the command line. */
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include <libbackup/keys.h>

#include "crypto/age.h"
#include "crypto/minisign.h"
#include "libbackup/util/util.h"

int bk_keys_check_private(const char *path)
{
	if (path == NULL)
		return bk__error_set(BK_EINVALID, NULL, "no key file given");
	return bk_file_check_private(path);
}

/* Writes `text` to `path` (mode 0600, never replacing), encrypted to the
 * passphrase when one is given. */
static int write_secret_file(const char *path, const uint8_t *text, size_t text_len,
			     const char *pass, size_t pass_len)
{
	if (pass == NULL || pass_len == 0)
		return bk_file_write_atomic(path, text, text_len, 0600, 1);
	bk_stream *file = NULL, *enc = NULL;
	bk_age_encrypt_opts o = BK_AGE_ENCRYPT_OPTS_INIT;
	o.passphrase = pass;
	o.passphrase_len = pass_len;
	int rc = bk_stream_atomic_new(&file, path, 0600, 1);
	if (rc)
		return rc;
	rc = bk_age_encrypt_new(&enc, file, 1, &o);
	if (rc) {
		bk_stream_free(file);
		return rc;
	}
	rc = bk_stream_write(enc, text, text_len, BK_DEADLINE_NONE);
	if (rc) {
		bk_stream_free(enc);
		return rc;
	}
	return bk_stream_close(enc, BK_DEADLINE_NONE);
}

int bk_keys_identity_generate(const char *path, const char *pass, size_t len, char **out_recipient)
{
	bk_age_identity *id = NULL;
	bk_secret *text = NULL;
	bk_age_recipient r;
	char rs[BK_AGE_RECIPIENT_STR_SIZE];
	int rc;
	if (out_recipient)
		*out_recipient = NULL;
	if (path == NULL)
		return bk__error_set(BK_EINVALID, NULL, "no identity file given");
	rc = bk_age_identity_generate(&id);
	if (rc)
		goto done;
	rc = bk_age_identity_file_format(&text, id, (int64_t)time(NULL));
	if (rc)
		goto done;
	rc = write_secret_file(path, bk_secret_data(text), strlen((const char *)bk_secret_data(text)),
			       pass, len);
	if (rc)
		goto done;
	bk_age_identity_recipient(&r, id);
	bk_age_recipient_format(rs, &r);
	if (out_recipient) {
		*out_recipient = bk__strdup(rs);
		if (*out_recipient == NULL)
			rc = BK_ENOMEM;
	}
done:
	bk_secret_free(text);
	bk_age_identity_free(id);
	return rc;
}

typedef struct pass_bridge {
	bk_passphrase_cb cb;
	void *payload;
} pass_bridge;

/* Adapts the public passphrase callback to the age module's. */
static int ask_passphrase(bk_secret **out, const char *prompt, void *payload)
{
	pass_bridge *b = payload;
	char buf[1024];
	size_t n = 0;
	*out = NULL;
	if (b->cb == NULL)
		return bk__error_set(BK_EAUTH, "passphrase-required",
				     "the identity file is passphrase-protected and no passphrase "
				     "was given");
	int rc = b->cb(buf, sizeof(buf), &n, prompt, b->payload);
	if (rc == 0 && n > sizeof(buf))
		rc = bk__error_set(BK_EINVALID, NULL, "passphrase too long");
	if (rc == 0)
		rc = bk_secret_from(out, buf, n);
	sodium_memzero(buf, sizeof(buf));
	return rc;
}

int bk_keys_identity_recipients(const char *path, bk_passphrase_cb cb, void *payload,
				char **out_recipients)
{
	bk_age_identities *set = NULL;
	bk_buf b = BK_BUF_INIT;
	pass_bridge bridge = {cb, payload};
	*out_recipients = NULL;
	int rc = bk_age_identities_new(&set);
	if (rc)
		return rc;
	rc = bk_age_identities_load(set, path, 0, ask_passphrase, &bridge);
	for (size_t i = 0; rc == 0 && i < bk_age_identities_count(set); i++) {
		const bk_age_identity *id;
		if (bk_age_identities_get(set, i, &id) != 0)
			continue;
		bk_age_recipient r;
		char rs[BK_AGE_RECIPIENT_STR_SIZE];
		bk_age_identity_recipient(&r, id);
		bk_age_recipient_format(rs, &r);
		rc = bk_buf_printf(&b, "%s%s", b.len ? "\n" : "", rs);
	}
	if (rc == 0 && b.len == 0)
		rc = bk__error_set(BK_EFORMAT, "identity-invalid", "%s: no X25519 identity in it",
				   path);
	if (rc == 0)
		rc = bk_buf_cstr(&b);
	if (rc == 0)
		*out_recipients = (char *)bk_buf_steal(&b, NULL);
	bk_buf_free(&b);
	bk_age_identities_free(set);
	return rc;
}

int bk_keys_signing_generate(const char *path, const char *pass, size_t len, char **out_key_id,
			     char **out_public)
{
	bk_minisign_seckey *sk = NULL;
	bk_minisign_pubkey pk;
	char *pub = NULL, *pass_z = NULL;
	char id[17], b64[57];
	int rc;
	if (out_key_id)
		*out_key_id = NULL;
	if (out_public)
		*out_public = NULL;
	if (path == NULL)
		return bk__error_set(BK_EINVALID, NULL, "no key file given");
	pub = bk__asprintf("%s.pub", path);
	if (pub == NULL)
		return BK_ENOMEM;
	if (pass && len) {
		pass_z = sodium_malloc(len + 1);
		if (pass_z == NULL) {
			rc = bk__error_oom();
			goto done;
		}
		memcpy(pass_z, pass, len);
		pass_z[len] = '\0';
	}
	rc = bk_minisign_keygen(&sk);
	if (rc)
		goto done;
	bk_minisign_seckey_pubkey(sk, &pk);
	/* The public key first: a failure leaves no orphan secret key. */
	rc = bk_minisign_pubkey_write(pub, &pk);
	if (rc)
		goto done;
	rc = bk_minisign_seckey_write(path, sk, pass_z, 0, 0);
	if (rc) {
		unlink(pub);
		goto done;
	}
	bk_minisign_key_id_hex(id, pk.key_id);
	bk_minisign_pubkey_base64(b64, &pk);
	if (out_key_id && (*out_key_id = bk__strdup(id)) == NULL)
		rc = BK_ENOMEM;
	if (rc == 0 && out_public && (*out_public = bk__strdup(b64)) == NULL)
		rc = BK_ENOMEM;
done:
	if (pass_z)
		sodium_free(pass_z);
	bk_minisign_seckey_free(sk);
	bk__free(pub);
	return rc;
}
