/* apicli-lab DIR: the lab for the API command tests. Makes DIR with
 * bk_vdev_pki_init (CAs, escrow identity, terminal, token, config), then
 * factory certificates and age identities of units OLD1, NEW1, BOUND1
 * (model ERS-1000) and OTHER1 (ERS-2000), and ROGUE1.cert, a unit
 * certificate signed by a CA the lab does not trust. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include <libbackup/backup.h>
#include <libbackup/libbackup.h>

#include "crypto/age.h"
#include "crypto/cert.h"
#include "device/virtual/pki.h"
#include "libbackup/util/util.h"

static int make_unit(const char *dir, const char *serial, const char *model,
                     const bk_minisign_seckey *ca)
{
	char path[4096];
	bk_age_identity *id = NULL;
	bk_secret *text = NULL;
	bk_cert *cert = NULL;
	bk_age_recipient r;
	uint8_t noise[32], sign[32];
	int64_t now = (int64_t)time(NULL);
	int rc = bk_age_identity_generate(&id);
	if (rc)
		goto done;
	bk_age_identity_recipient(&r, id);
	randombytes_buf(noise, sizeof(noise));
	randombytes_buf(sign, sizeof(sign));
	bk_cert_params p;
	memset(&p, 0, sizeof(p));
	p.role = BK_CERT_ROLE_UNIT;
	p.serial = serial;
	p.model = model;
	p.hw_revision = "1";
	p.noise_key = noise;
	p.age_key = r.public_key;
	p.ed25519_key = sign;
	p.not_before = now - 3600;
	p.not_after = now + 86400;
	if ((rc = bk_cert_issue(&cert, &p, ca)))
		goto done;
	snprintf(path, sizeof(path), "%s/%s.cert", dir, serial);
	if ((rc = bk_cert_write(path, cert)))
		goto done;
	if ((rc = bk_age_identity_file_format(&text, id, now)))
		goto done;
	snprintf(path, sizeof(path), "%s/%s.identity", dir, serial);
	rc = bk_file_write_atomic(path, bk_secret_data(text), strlen((char *)bk_secret_data(text)),
	                          0600, 1);
done:
	bk_secret_free(text);
	bk_cert_free(cert);
	bk_age_identity_free(id);
	return rc;
}

/* A depot-made backup of OLD1 (signed by the lab terminal) encrypted to the
 * cloud's escrow key: DIR/old1.aibk and DIR/old1.aibk.statement. */
static int make_backup(const char *dir)
{
	char path[4096], mem[4096];
	bk_config *cfg = NULL;
	bk_backup_report rep;
	char *escrow = NULL;
	uint8_t data[5000];
	int rc;
	memset(&rep, 0, sizeof(rep));
	static const char *const files[] = {"personality/state.json", "memories/day1.bin",
	                                    "settings/owner.json"};
	for (size_t i = 0; i < BK_ARRAY_LEN(files); i++) {
		snprintf(path, sizeof(path), "%s/memory/%s", dir, files[i]);
		char *d = bk_path_dirname(path);
		rc = d ? bk_mkdir_p(d, 0700) : BK_ENOMEM;
		bk__free(d);
		randombytes_buf(data, sizeof(data));
		if (rc == 0)
			rc = bk_file_write_atomic(path, data, sizeof(data) - i * 1000, 0600, 0);
		if (rc)
			return rc;
	}
	snprintf(path, sizeof(path), "%s/%s", dir, BK_PKI_ESCROW_IDENTITY);
	if ((rc = bk_keys_identity_recipients(path, NULL, NULL, &escrow)))
		return rc;
	char *nl = strchr(escrow, '\n');
	if (nl)
		*nl = '\0';
	bk_config_opts co = BK_CONFIG_OPTS_INIT;
	snprintf(path, sizeof(path), "%s/%s", dir, BK_PKI_CONFIG);
	co.file = path;
	const char *const env[] = {NULL};
	co.environ = env;
	if ((rc = bk_config_load(&cfg, &co)))
		goto done;
	const char *const rcpt[] = {escrow};
	bk_backup_pack_opts po = BK_BACKUP_PACK_OPTS_INIT;
	po.serial = "OLD1";
	po.model = "ERS-1000";
	po.hardware_revision = "1";
	po.firmware_version = "3.1.0";
	po.schema_version = 2;
	po.recipients = rcpt;
	po.recipient_count = 1;
	snprintf(mem, sizeof(mem), "%s/old1.aibk", dir);
	po.output = mem;
	snprintf(path, sizeof(path), "%s/memory", dir);
	rc = bk_backup_pack(cfg, path, &po, &rep);
done:
	bk_backup_report_clear(&rep);
	bk_config_free(cfg);
	bk_free(escrow);
	return rc;
}

int main(int argc, char **argv)
{
	bk_minisign_seckey *factory = NULL, *rogue = NULL;
	char path[4096];
	int rc;
	if (argc != 2) {
		fprintf(stderr, "usage: apicli-lab DIR\n");
		return 2;
	}
	if (bk_init() != 0)
		return 1;
	const char *dir = argv[1];
	if ((rc = bk_vdev_pki_init(dir)))
		goto done;
	snprintf(path, sizeof(path), "%s/%s", dir, BK_PKI_FACTORY_CA);
	if ((rc = bk_minisign_seckey_read(&factory, path, NULL)))
		goto done;
	if ((rc = make_unit(dir, "OLD1", "ERS-1000", factory)) ||
	    (rc = make_unit(dir, "NEW1", "ERS-1000", factory)) ||
	    (rc = make_unit(dir, "NEW2", "ERS-1000", factory)) ||
	    (rc = make_unit(dir, "BOUND1", "ERS-1000", factory)) ||
	    (rc = make_unit(dir, "OTHER1", "ERS-2000", factory)))
		goto done;
	if ((rc = bk_minisign_keygen(&rogue)) || (rc = make_unit(dir, "ROGUE1", "ERS-1000", rogue)))
		goto done;
	rc = make_backup(dir);
done:
	if (rc)
		fprintf(stderr, "apicli-lab: %s\n", bk_error_last()->message);
	bk_minisign_seckey_free(factory);
	bk_minisign_seckey_free(rogue);
	bk_shutdown();
	return rc ? 1 : 0;
}
