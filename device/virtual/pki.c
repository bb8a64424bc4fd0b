/* The lab PKI: CAs, firmware key, depot and escrow identities, the terminal's
 * key and certificate, and a ready aibo-restore configuration. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sodium.h>

#include "crypto/age.h"
#include "crypto/cert.h"
#include "crypto/minisign.h"
#include "device/virtual/pki.h"
#include "libbackup/util/util.h"

#define YEAR (365 * 24 * 3600)

static const char *const all_files[] = {
	BK_PKI_FACTORY_CA,	   BK_PKI_FACTORY_CA ".pub",  BK_PKI_SERVICE_CA,
	BK_PKI_SERVICE_CA ".pub",  BK_PKI_FIRMWARE_KEY,	      BK_PKI_FIRMWARE_KEY ".pub",
	BK_PKI_DEPOT_IDENTITY,	   BK_PKI_ESCROW_IDENTITY,    BK_PKI_TERMINAL_KEY,
	BK_PKI_TERMINAL_CERT,	   BK_PKI_API_TOKEN,	      BK_PKI_CONFIG,
};

static char *in_dir(const char *dir, const char *name)
{
	return bk__asprintf("%s/%s", dir, name);
}

/* A minisign key pair NAME and NAME.pub; the secret stays with the caller
 * when `out` is given. */
static int make_signing_key(const char *dir, const char *name, bk_minisign_seckey **out)
{
	bk_minisign_seckey *sk = NULL;
	bk_minisign_pubkey pk;
	char *path = in_dir(dir, name), *pub = NULL;
	int rc = path ? 0 : BK_ENOMEM;
	if (rc == 0)
		rc = bk_minisign_keygen(&sk);
	if (rc == 0)
		rc = bk_minisign_seckey_write(path, sk, NULL, 0, 0);
	if (rc == 0) {
		bk_minisign_seckey_pubkey(sk, &pk);
		pub = bk__asprintf("%s.pub", path);
		rc = pub ? bk_minisign_pubkey_write(pub, &pk) : BK_ENOMEM;
	}
	if (rc == 0 && out) {
		*out = sk;
		sk = NULL;
	}
	bk_minisign_seckey_free(sk);
	bk__free(path);
	bk__free(pub);
	return rc;
}

static int make_identity(const char *dir, const char *name)
{
	bk_age_identity *id = NULL;
	bk_secret *text = NULL;
	char *path = in_dir(dir, name);
	int rc = path ? bk_age_identity_generate(&id) : BK_ENOMEM;
	if (rc == 0)
		rc = bk_age_identity_file_format(&text, id, (int64_t)time(NULL));
	if (rc == 0)
		rc = bk_file_write_atomic(path, bk_secret_data(text),
					  strlen((const char *)bk_secret_data(text)), 0600, 1);
	bk_secret_free(text);
	bk_age_identity_free(id);
	bk__free(path);
	return rc;
}

static int make_terminal(const char *dir, const bk_minisign_seckey *service_ca)
{
	bk_keyfile *keys = NULL;
	bk_cert *cert = NULL;
	char *kpath = in_dir(dir, BK_PKI_TERMINAL_KEY);
	char *cpath = in_dir(dir, BK_PKI_TERMINAL_CERT);
	int rc = kpath && cpath ? bk_keyfile_generate(&keys, 0) : BK_ENOMEM;
	if (rc == 0)
		rc = bk_keyfile_write(kpath, keys);
	if (rc == 0) {
		int64_t now = (int64_t)time(NULL);
		bk_cert_params p;
		memset(&p, 0, sizeof(p));
		p.role = BK_CERT_ROLE_TERMINAL;
		p.terminal_id = BK_PKI_TERMINAL_ID;
		p.noise_key = bk_keyfile_noise_public(keys);
		p.ed25519_key = bk_keyfile_ed25519_public(keys);
		p.not_before = now - 3600;
		p.not_after = now + 5 * YEAR;
		rc = bk_cert_issue(&cert, &p, service_ca);
	}
	if (rc == 0)
		rc = bk_cert_write(cpath, cert);
	bk_cert_free(cert);
	bk_keyfile_free(keys);
	bk__free(kpath);
	bk__free(cpath);
	return rc;
}

static int make_token(const char *dir)
{
	uint8_t raw[24];
	char text[64];
	char *path = in_dir(dir, BK_PKI_API_TOKEN);
	if (path == NULL)
		return BK_ENOMEM;
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2base64(text, sizeof(text), raw, sizeof(raw), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	size_t len = strlen(text);
	text[len++] = '\n';
	int rc = bk_file_write_atomic(path, text, len, 0600, 1);
	sodium_memzero(raw, sizeof(raw));
	sodium_memzero(text, sizeof(text));
	bk__free(path);
	return rc;
}

static const char config_text[] =
	"# aibo-restore configuration for the lab in this folder (aibo-vdev pki init).\n"
	"# Relative paths are relative to this folder.\n"
	"\n"
	"[depot]\n"
	"db = depot.db\n"
	"store = dir:backups\n"
	"identity = " BK_PKI_DEPOT_IDENTITY "\n"
	"terminal_key = " BK_PKI_TERMINAL_KEY "\n"
	"terminal_cert = " BK_PKI_TERMINAL_CERT "\n"
	"terminal_id = " BK_PKI_TERMINAL_ID "\n"
	"\n"
	"[trust]\n"
	"factory_ca = " BK_PKI_FACTORY_CA ".pub\n"
	"service_ca = " BK_PKI_SERVICE_CA ".pub\n"
	"firmware_keys = " BK_PKI_FIRMWARE_KEY ".pub\n"
	"\n"
	"[firmware]\n"
	"dir = firmware\n"
	"\n"
	"[api]\n"
	"# url is set where the simulator runs (AIBO_RESTORE_API_URL).\n"
	"token_file = " BK_PKI_API_TOKEN "\n";

int bk_vdev_pki_init(const char *dir)
{
	bk_minisign_seckey *factory = NULL, *service = NULL;
	char *path = NULL;
	int rc = bk_mkdir_p(dir, 0700);
	if (rc)
		return rc;
	for (size_t i = 0; i < BK_ARRAY_LEN(all_files); i++) {
		struct stat st;
		path = in_dir(dir, all_files[i]);
		if (path == NULL)
			return BK_ENOMEM;
		int exists = lstat(path, &st) == 0;
		bk__free(path);
		path = NULL;
		if (exists)
			return bk__error_set(BK_EEXIST, "exists",
					     "%s/%s: already exists; pki init never replaces keys", dir,
					     all_files[i]);
	}
	rc = make_signing_key(dir, BK_PKI_FACTORY_CA, &factory);
	if (rc == 0)
		rc = make_signing_key(dir, BK_PKI_SERVICE_CA, &service);
	if (rc == 0)
		rc = make_signing_key(dir, BK_PKI_FIRMWARE_KEY, NULL);
	if (rc == 0)
		rc = make_identity(dir, BK_PKI_DEPOT_IDENTITY);
	if (rc == 0)
		rc = make_identity(dir, BK_PKI_ESCROW_IDENTITY);
	if (rc == 0)
		rc = make_terminal(dir, service);
	if (rc == 0)
		rc = make_token(dir);
	if (rc == 0) {
		path = in_dir(dir, BK_PKI_CONFIG);
		rc = path ? bk_file_write_atomic(path, config_text, strlen(config_text), 0600, 1)
			  : BK_ENOMEM;
	}
	bk__free(path);
	bk_minisign_seckey_free(factory);
	bk_minisign_seckey_free(service);
	return rc;
}
