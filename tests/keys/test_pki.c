/* aibo-vdev pki init: the lab's keys, certificates and configuration. */
#include <sys/stat.h>
#include <time.h>

#include <libbackup/libbackup.h>

#include "crypto/age.h"
#include "crypto/cert.h"
#include "crypto/minisign.h"
#include "device/virtual/pki.h"
#include "libbackup/util/util.h"
#include "testlib.h"

static int mode_of(const char *dir, const char *name)
{
	char path[4200];
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (stat(path, &st) != 0)
		return -1;
	return (int)(st.st_mode & 0777);
}

static void test_pki_init(void)
{
	const char *dir = bk_test_path("lab");
	REQUIRE_OK(bk_vdev_pki_init(dir));
	static const char *const secrets[] = {BK_PKI_FACTORY_CA,     BK_PKI_SERVICE_CA,
					      BK_PKI_FIRMWARE_KEY,   BK_PKI_DEPOT_IDENTITY,
					      BK_PKI_ESCROW_IDENTITY, BK_PKI_TERMINAL_KEY,
					      BK_PKI_API_TOKEN};
	for (size_t i = 0; i < BK_ARRAY_LEN(secrets); i++)
		CHECK_EQ(mode_of(dir, secrets[i]), 0600);
	CHECK(mode_of(dir, BK_PKI_FACTORY_CA ".pub") >= 0);
	CHECK(mode_of(dir, BK_PKI_TERMINAL_CERT) >= 0);

	/* The terminal certificate is issued by the service CA, for the terminal
	 * key, and is valid now. */
	char path[4200];
	bk_minisign_pubkey service, factory;
	snprintf(path, sizeof(path), "%s/%s.pub", dir, BK_PKI_SERVICE_CA);
	REQUIRE_OK(bk_minisign_pubkey_read(&service, path));
	snprintf(path, sizeof(path), "%s/%s.pub", dir, BK_PKI_FACTORY_CA);
	REQUIRE_OK(bk_minisign_pubkey_read(&factory, path));
	bk_cert *cert = NULL;
	snprintf(path, sizeof(path), "%s/%s", dir, BK_PKI_TERMINAL_CERT);
	REQUIRE_OK(bk_cert_read(&cert, path));
	CHECK_OK(bk_cert_verify(cert, &service, 1, BK_CERT_ROLE_TERMINAL, (int64_t)time(NULL)));
	CHECK_EQ(bk_cert_verify(cert, &factory, 1, BK_CERT_ROLE_TERMINAL, (int64_t)time(NULL)),
		 BK_EAUTH);
	CHECK_STR(bk_cert_terminal_id(cert), BK_PKI_TERMINAL_ID);
	bk_keyfile *keys = NULL;
	snprintf(path, sizeof(path), "%s/%s", dir, BK_PKI_TERMINAL_KEY);
	REQUIRE_OK(bk_keyfile_read(&keys, path));
	CHECK_OK(bk_cert_check_noise_key(cert, bk_keyfile_noise_public(keys)));
	CHECK_OK(bk_cert_check_ed25519_key(cert, bk_keyfile_ed25519_public(keys)));
	bk_keyfile_free(keys);
	bk_cert_free(cert);

	/* Both identities load; the CA secret keys open without a passphrase. */
	bk_age_identities *ids = NULL;
	REQUIRE_OK(bk_age_identities_new(&ids));
	snprintf(path, sizeof(path), "%s/%s", dir, BK_PKI_DEPOT_IDENTITY);
	CHECK_OK(bk_age_identities_load(ids, path, 0, NULL, NULL));
	snprintf(path, sizeof(path), "%s/%s", dir, BK_PKI_ESCROW_IDENTITY);
	CHECK_OK(bk_age_identities_load(ids, path, 0, NULL, NULL));
	CHECK_EQ(bk_age_identities_count(ids), 2);
	bk_age_identities_free(ids);
	bk_minisign_seckey *sk = NULL;
	snprintf(path, sizeof(path), "%s/%s", dir, BK_PKI_FIRMWARE_KEY);
	CHECK_OK(bk_minisign_seckey_read(&sk, path, NULL));
	bk_minisign_seckey_free(sk);

	/* The configuration loads and points into the lab. */
	bk_config *cfg = NULL;
	bk_config_opts o = BK_CONFIG_OPTS_INIT;
	const char *env[] = {NULL};
	snprintf(path, sizeof(path), "%s/%s", dir, BK_PKI_CONFIG);
	o.file = path;
	o.environ = env;
	REQUIRE_OK(bk_config_load(&cfg, &o));
	char want[4200];
	snprintf(want, sizeof(want), "%s/%s", dir, BK_PKI_TERMINAL_CERT);
	CHECK_STR(bk_config_get(cfg, "depot.terminal_cert"), want);
	snprintf(want, sizeof(want), "%s/%s.pub", dir, BK_PKI_FACTORY_CA);
	CHECK_STR(bk_config_get(cfg, "trust.factory_ca"), want);
	snprintf(want, sizeof(want), "dir:%s/backups", dir);
	CHECK_STR(bk_config_get(cfg, "depot.store"), want);
	snprintf(want, sizeof(want), "%s/%s", dir, BK_PKI_API_TOKEN);
	CHECK_STR(bk_config_get(cfg, "api.token_file"), want);
	bk_config_free(cfg);

	/* Never replaces an existing lab. */
	CHECK_EQ(bk_vdev_pki_init(dir), BK_EEXIST);
}

BK_RUN_TESTS(BK_TEST(test_pki_init))
