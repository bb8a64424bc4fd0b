/* Device test helpers (see helpers.h). */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "device/virtual/pki.h"
#include "libbackup/util/util.h"
#include "testlib.h"
#include "tests/device/helpers.h"

int lab_init(lab *l)
{
	struct stat st;
	memset(l, 0, sizeof(*l));
	snprintf(l->pki, sizeof(l->pki), "%s", bk_test_path("pki"));
	snprintf(l->terminal_key, sizeof(l->terminal_key), "%s/%s", l->pki, BK_PKI_TERMINAL_KEY);
	snprintf(l->terminal_cert, sizeof(l->terminal_cert), "%s/%s", l->pki, BK_PKI_TERMINAL_CERT);
	snprintf(l->factory_ca, sizeof(l->factory_ca), "%s/%s.pub", l->pki, BK_PKI_FACTORY_CA);
	l->cas[0] = l->factory_ca;
	if (stat(l->factory_ca, &st) == 0)
		return 0;
	return bk_vdev_pki_init(l->pki);
}

void lab_opts(const lab *l, bk_device_opts *o)
{
	bk_device_opts d = BK_DEVICE_OPTS_INIT;
	*o = d;
	o->terminal_key = l->terminal_key;
	o->terminal_cert = l->terminal_cert;
	o->factory_ca = l->cas;
	o->factory_ca_count = 1;
	o->timeout_ms = 5000;
}

int lab_unit(const lab *l, const char *name, const char *serial, char *out_dir, size_t cap)
{
	bk_vunit_create_opts o = BK_VUNIT_CREATE_OPTS_INIT;
	o.pki_dir = l->pki;
	o.serial = serial;
	o.memory_size = 64 * 1024;
	snprintf(out_dir, cap, "%s", bk_test_path(name));
	return bk_vunit_create(out_dir, &o);
}

int lab_issue(bk_cert **out, const lab *l, const char *ca_key, bk_cert_role role,
              const char *subject, const bk_keyfile *keys, int64_t not_before, int64_t not_after)
{
	bk_minisign_seckey *ca = NULL;
	char path[700];
	bk_cert_params p;
	int rc;
	snprintf(path, sizeof(path), "%s/%s", l->pki, ca_key);
	rc = bk_minisign_seckey_read(&ca, path, NULL);
	if (rc)
		return rc;
	memset(&p, 0, sizeof(p));
	p.role = role;
	if (role == BK_CERT_ROLE_UNIT) {
		p.serial = subject;
		p.model = "ERS-1000";
		p.hw_revision = "1";
		p.age_key = bk_keyfile_age_public(keys);
	} else {
		p.terminal_id = subject;
	}
	p.noise_key = bk_keyfile_noise_public(keys);
	p.ed25519_key = bk_keyfile_ed25519_public(keys);
	p.not_before = not_before;
	p.not_after = not_after;
	rc = bk_cert_issue(out, &p, ca);
	bk_minisign_seckey_free(ca);
	return rc;
}

int lab_terminal(const lab *l, const char *name, const char *ca_key, bk_cert_role role,
                 int64_t not_before, int64_t not_after, bool other_key, char *key_path,
                 char *cert_path, size_t cap)
{
	bk_keyfile *keys = NULL, *other = NULL;
	bk_cert *cert = NULL;
	char kname[128], cname[128];
	int rc;
	snprintf(kname, sizeof(kname), "%s.key", name);
	snprintf(cname, sizeof(cname), "%s.cert", name);
	snprintf(key_path, cap, "%s", bk_test_path(kname));
	snprintf(cert_path, cap, "%s", bk_test_path(cname));
	rc = bk_keyfile_generate(&keys, 1);
	if (rc == 0 && other_key)
		rc = bk_keyfile_generate(&other, 1);
	if (rc == 0)
		rc = lab_issue(&cert, l, ca_key, role, role == BK_CERT_ROLE_UNIT ? "UNIT-X" : name,
		               other ? other : keys, not_before, not_after);
	if (rc == 0)
		rc = bk_keyfile_write(key_path, keys);
	if (rc == 0)
		rc = bk_cert_write(cert_path, cert);
	bk_cert_free(cert);
	bk_keyfile_free(keys);
	bk_keyfile_free(other);
	return rc;
}

static void *inproc_main(void *arg)
{
	inproc *ip = arg;
	ip->rc = bk_vunit_serve(ip->unit, ip->unit_end, bk_deadline_in(5000));
	ip->unit_end = NULL;
	if (ip->rc) {
		snprintf(ip->reason, sizeof(ip->reason), "%s", bk_error_last()->reason);
		snprintf(ip->message, sizeof(ip->message), "%s", bk_error_last()->message);
	}
	return NULL;
}

int inproc_start(inproc *ip, bk_vunit *u, bk_stream **client_end)
{
	memset(ip, 0, sizeof(*ip));
	ip->unit = u;
	int rc = bk_transport_pair_new(client_end, &ip->unit_end);
	if (rc)
		return rc;
	if (pthread_create(&ip->thread, NULL, inproc_main, ip) != 0) {
		bk_stream_free(*client_end);
		bk_stream_free(ip->unit_end);
		return BK_ERROR;
	}
	return 0;
}

int inproc_join(inproc *ip)
{
	pthread_join(ip->thread, NULL);
	return ip->rc;
}
