/* Firmware signatures: the one place the firmware module signs and checks
 * minisign signatures, and loads the trusted keys. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "crypto/minisign.h"
#include "firmware/firmware_internal.h"

/* Most keys a trusted-keys folder may hold. */
#define TRUSTED_KEYS_MAX 64

int bk_fw__sign(bk_buf *sig, const uint8_t *msg, size_t len, const char *secret_key,
                const char *password, const char *trusted_comment)
{
	bk_minisign_seckey *sk = NULL;
	char *text = NULL;
	size_t text_len = 0;
	int rc = bk_minisign_seckey_read(&sk, secret_key, password);
	if (rc)
		goto done;
	rc = bk_minisign_sign_buf(&text, &text_len, sk, msg, len, trusted_comment,
	                          "signature of an aibo-restore firmware manifest");
	if (rc)
		goto done;
	rc = bk_buf_put(sig, text, text_len);
done:
	bk__free(text);
	bk_minisign_seckey_free(sk);
	return rc;
}

static int has_pub_suffix(const char *name)
{
	size_t n = strlen(name);
	return n > 4 && name[0] != '.' && strcmp(name + n - 4, ".pub") == 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Loads the key file, or every *.pub of the folder (in name order). */
static int load_keys(bk_minisign_pubkey **out, size_t *out_count, const char *trusted)
{
	bk_minisign_pubkey *keys = NULL;
	char **names = NULL;
	size_t count = 0, n_names = 0;
	char *path = NULL;
	DIR *d = NULL;
	struct stat st;
	int rc = 0;
	*out = NULL;
	*out_count = 0;
	if (stat(trusted, &st) != 0) {
		rc = bk__error_errno(errno, "trusted keys %s", trusted);
		goto done;
	}
	if (!S_ISDIR(st.st_mode)) {
		keys = bk__calloc(1, sizeof(*keys));
		if (keys == NULL) {
			rc = BK_ENOMEM;
			goto done;
		}
		if ((rc = bk_minisign_pubkey_read(keys, trusted)))
			goto done;
		count = 1;
		goto found;
	}
	d = opendir(trusted);
	if (d == NULL) {
		rc = bk__error_errno(errno, "trusted keys %s", trusted);
		goto done;
	}
	names = bk__calloc(TRUSTED_KEYS_MAX, sizeof(char *));
	if (names == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (!has_pub_suffix(e->d_name))
			continue;
		if (n_names == TRUSTED_KEYS_MAX) {
			rc = bk__error_set(BK_ENOSPACE, "too-many-keys",
			                   "trusted keys %s: more than %d key files", trusted,
			                   TRUSTED_KEYS_MAX);
			goto done;
		}
		if ((names[n_names] = bk__strdup(e->d_name)) == NULL) {
			rc = BK_ENOMEM;
			goto done;
		}
		n_names++;
	}
	if (n_names == 0) {
		rc = bk__error_set(BK_ENOTFOUND, "no-trusted-keys",
		                   "trusted keys %s: no *.pub key file in the folder", trusted);
		goto done;
	}
	qsort(names, n_names, sizeof(char *), cmp_names);
	keys = bk__calloc(n_names, sizeof(*keys));
	if (keys == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	for (size_t i = 0; i < n_names; i++) {
		bk__free(path);
		if ((path = bk_path_join(trusted, names[i])) == NULL) {
			rc = BK_ENOMEM;
			goto done;
		}
		if ((rc = bk_minisign_pubkey_read(&keys[count], path)))
			goto done;
		count++;
	}
found:
	*out = keys;
	*out_count = count;
	keys = NULL;
done:
	if (d)
		closedir(d);
	for (size_t i = 0; names && i < n_names; i++)
		bk__free(names[i]);
	bk__free(names);
	bk__free(path);
	bk__free(keys);
	return rc;
}

/* Key ids compare as minisign shows them, without leading zeros and in
 * either case ("6CF7727929D668F3", "06cf...": minisign drops the zeros). */
static int same_key_id(const char *a, const char *b)
{
	while (*a == '0')
		a++;
	while (*b == '0')
		b++;
	return strcasecmp(a, b) == 0;
}

int bk_fw__sig_verify(const uint8_t *msg, size_t len, const uint8_t *sig_text, size_t sig_len,
                      const char *trusted, const char *const *revoked, char key_id[17])
{
	bk_minisign_sig *sig = NULL;
	bk_minisign_pubkey *keys = NULL;
	const bk_minisign_pubkey *pk;
	size_t count = 0;
	char id[17];
	int rc;
	key_id[0] = '\0';
	rc = bk_minisign_sig_parse(&sig, (const char *)sig_text, sig_len);
	if (rc)
		goto done;
	bk_minisign_key_id_hex(id, bk_minisign_sig_key_id(sig));
	for (size_t i = 0; revoked && revoked[i]; i++) {
		if (same_key_id(revoked[i], id)) {
			rc = bk__error_set(BK_EVERIFY, "key-revoked",
			                   "manifest signed by key %s, which is revoked", id);
			goto done;
		}
	}
	if ((rc = load_keys(&keys, &count, trusted)))
		goto done;
	pk = bk_minisign_find_key(sig, keys, count);
	if (pk == NULL) {
		rc = bk__error_set(BK_EVERIFY, "unknown-key",
		                   "manifest signed by key %s, which is not among the trusted keys "
		                   "in %s",
		                   id, trusted);
		goto done;
	}
	if (!bk_minisign_sig_prehashed(sig)) {
		rc = bk__error_set(BK_EVERIFY, "legacy-signature",
		                   "manifest signature by key %s is a legacy (not prehashed) "
		                   "signature, refused",
		                   id);
		goto done;
	}
	rc = bk_minisign_verify_buf(sig, pk, msg, len);
	if (rc) {
		if (rc == BK_EVERIFY)
			rc = bk__error_set(BK_EVERIFY, "bad-signature",
			                   "manifest signature by key %s does not verify (%s)", id,
			                   bk_error_last()->reason);
		goto done;
	}
	memcpy(key_id, id, sizeof(id));
done:
	bk__free(keys);
	bk_minisign_sig_free(sig);
	return rc;
}
