/* aibo-cloudsim: the crypto-dependent parts (certificates, identity bundles,
 * terminal certificates, re-wrapping), on the library's crypto modules. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sim.h"

#define YEAR (365 * 24 * 3600LL)

static void fail(sim_fail *f, int status, const char *code, const char *fmt, const char *detail)
{
	f->status = status;
	f->code = code;
	snprintf(f->message, sizeof(f->message), fmt, detail);
}

static char *in_dir(const char *dir, const char *name)
{
	return bk_path_join(dir, name);
}

int sim_pki_load(sim_pki *pki, const char *dir)
{
	char *p = NULL;
	int rc = 0;
	memset(pki, 0, sizeof(*pki));
	if (dir == NULL)
		return 0;
	p = in_dir(dir, "factory-ca.key.pub");
	if (p && access(p, F_OK) == 0) {
		if ((rc = bk_minisign_pubkey_read(&pki->factory, p)))
			goto done;
		pki->have_factory = true;
	}
	bk__free(p);
	p = in_dir(dir, "service-ca.key");
	if (p && access(p, F_OK) == 0 && (rc = bk_minisign_seckey_read(&pki->service, p, NULL)))
		goto done;
	bk__free(p);
	p = in_dir(dir, "cloud-escrow.identity");
	if (p && access(p, F_OK) == 0) {
		if ((rc = bk_age_identities_new(&pki->escrow)) ||
		    (rc = bk_age_identities_load(pki->escrow, p, 0, NULL, NULL)))
			goto done;
	}
done:
	if (rc)
		fprintf(stderr, "aibo-cloudsim: %s: %s\n", p ? p : dir, bk_error_last()->message);
	bk__free(p);
	return rc;
}

void sim_pki_free(sim_pki *pki)
{
	bk_minisign_seckey_free(pki->service);
	bk_age_identities_free(pki->escrow);
	memset(pki, 0, sizeof(*pki));
}

int sim_unit_cert_check(bk_cert **out, const sim_pki *pki, const uint8_t *data, size_t len,
                        sim_fail *f)
{
	bk_cert *c = NULL;
	*out = NULL;
	if (bk_cert_parse(&c, data, len) != 0) {
		fail(f, 422, "certificate-invalid", "the certificate cannot be read: %s",
		     bk_error_last()->message);
		return -1;
	}
	if (bk_cert_role_get(c) != BK_CERT_ROLE_UNIT) {
		bk_cert_free(c);
		fail(f, 422, "certificate-invalid", "%s", "not a unit certificate");
		return -1;
	}
	if (pki->have_factory &&
	    bk_cert_verify(c, &pki->factory, 1, BK_CERT_ROLE_UNIT, (int64_t)time(NULL)) != 0) {
		fail(f, 422, "certificate-invalid", "the factory certificate does not verify: %s",
		     bk_error_last()->message);
		bk_cert_free(c);
		return -1;
	}
	*out = c;
	return 0;
}

static int copy_cert_bytes(uint8_t **out, size_t *out_len, const bk_cert *c)
{
	size_t n;
	const uint8_t *b = bk_cert_bytes(c, &n);
	*out = bk__malloc(n);
	if (*out == NULL)
		return -1;
	memcpy(*out, b, n);
	*out_len = n;
	return 0;
}

int sim_bundle_issue(uint8_t **out, size_t *out_len, const sim_pki *pki, const bk_cert *unit,
                     const char *device_id, const char *owner, const char *old_serial, sim_fail *f)
{
	bk_cert *b = NULL;
	int rc = -1;
	if (pki->service == NULL) {
		fail(f, 501, "not-implemented", "%s",
		     "no service CA key (service-ca.key) in the PKI folder");
		return -1;
	}
	int64_t now = (int64_t)time(NULL);
	bk_cert_params p = {
	    .role = BK_CERT_ROLE_IDENTITY,
	    .serial = bk_cert_serial(unit),
	    .model = bk_cert_model(unit),
	    .hw_revision = bk_cert_hw_revision(unit),
	    .device_id = device_id,
	    .owner_binding = owner,
	    .old_serial = old_serial,
	    .noise_key = bk_cert_noise_key(unit),
	    .age_key = bk_cert_age_key(unit),
	    .ed25519_key = bk_cert_ed25519_key(unit),
	    .issued = now,
	    .not_before = now - 60,
	    .not_after = now + 10 * YEAR,
	};
	if (bk_cert_issue(&b, &p, pki->service) != 0) {
		fail(f, 500, "internal", "cannot issue the identity bundle: %s",
		     bk_error_last()->message);
		goto done;
	}
	if (copy_cert_bytes(out, out_len, b) != 0) {
		fail(f, 500, "internal", "%s", "out of memory");
		goto done;
	}
	rc = 0;
done:
	bk_cert_free(b);
	return rc;
}

int sim_rewrap(uint8_t **out, size_t *out_len, const sim_pki *pki, const char *path,
               const bk_cert *unit, sim_fail *f)
{
	bk_stream *in = NULL;
	uint8_t *hdr = NULL;
	size_t hdr_len = 0;
	int rc = -1;
	if (pki->escrow == NULL) {
		fail(f, 501, "not-implemented", "%s",
		     "no escrow identity (cloud-escrow.identity) in the PKI folder");
		return -1;
	}
	const uint8_t *age = bk_cert_age_key(unit);
	if (age == NULL) {
		fail(f, 422, "certificate-invalid", "%s", "the certificate has no age recipient");
		return -1;
	}
	if (bk_stream_file_open(&in, path) != 0 ||
	    bk_age_header_read(&hdr, &hdr_len, in, NULL, bk_deadline_in(10000)) != 0) {
		fail(f, 500, "backup-unreadable", "cannot read the backup's header: %s",
		     bk_error_last()->message);
		goto done;
	}
	bk_age_recipient r;
	memcpy(r.public_key, age, sizeof(r.public_key));
	bk_age_encrypt_opts to = BK_AGE_ENCRYPT_OPTS_INIT;
	to.recipients = &r;
	to.recipient_count = 1;
	if (bk_age_rewrap_header(out, out_len, hdr, hdr_len, pki->escrow, &to) != 0) {
		fail(f, 500, "rewrap-failed", "cannot re-wrap the backup: %s",
		     bk_error_last()->message);
		goto done;
	}
	rc = 0;
done:
	bk__free(hdr);
	bk_stream_free(in);
	return rc;
}

int sim_terminal_issue(uint8_t **out, size_t *out_len, const sim_pki *pki, const char *terminal_id,
                       const uint8_t noise[32], const uint8_t age[32], const uint8_t sign[32],
                       sim_fail *f)
{
	bk_cert *c = NULL;
	int rc = -1;
	if (pki->service == NULL) {
		fail(f, 501, "not-implemented", "%s",
		     "no service CA key (service-ca.key) in the PKI folder");
		return -1;
	}
	int64_t now = (int64_t)time(NULL);
	bk_cert_params p = {
	    .role = BK_CERT_ROLE_TERMINAL,
	    .terminal_id = terminal_id,
	    .noise_key = noise,
	    .age_key = age,
	    .ed25519_key = sign,
	    .not_before = now - 60,
	    .not_after = now + YEAR,
	};
	if (bk_cert_issue(&c, &p, pki->service) != 0) {
		fail(f, 422, "request-invalid", "cannot issue the certificate: %s",
		     bk_error_last()->message);
		goto done;
	}
	if (copy_cert_bytes(out, out_len, c) != 0) {
		fail(f, 500, "internal", "%s", "out of memory");
		goto done;
	}
	rc = 0;
done:
	bk_cert_free(c);
	return rc;
}
