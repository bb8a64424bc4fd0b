/* Backup pull and restore push in-process: a lab, two virtual units served
 * on loopback in threads of this process, the library calls, and the unit's
 * handlers' refusals. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include <libbackup/libbackup.h>
#include <libbackup/transfer.h>

#include "device/virtual/memory_ops.h"
#include "device/virtual/pki.h"
#include "device/virtual/server.h"
#include "device/virtual/unit.h"
#include "tests/lib/testlib.h"

typedef struct served {
	bk_vunit *unit;
	bk_vmemops *ops;
	bk_vserver *server;
} served;

static int make_unit(const char *pki, const char *name, const char *serial, uint64_t size,
                     bool fresh)
{
	bk_vunit_create_opts o = BK_VUNIT_CREATE_OPTS_INIT;
	o.pki_dir = pki;
	o.serial = serial;
	o.memory_size = size;
	o.fresh = fresh;
	int rc = bk_vunit_create(bk_test_path(name), &o);
	return rc ? rc : bk_vmemops_provision(bk_test_path(name), pki);
}

static int serve(served *s, const char *name)
{
	memset(s, 0, sizeof(*s));
	int rc = bk_vunit_open(&s->unit, bk_test_path(name));
	if (rc == 0)
		rc = bk_vmemops_install(&s->ops, s->unit);
	if (rc == 0)
		rc = bk_vserver_new(&s->server, s->unit, "tcp:127.0.0.1:0", false);
	if (rc == 0)
		rc = bk_vserver_start(s->server);
	return rc;
}

static void unserve(served *s)
{
	bk_vserver_free(s->server);
	bk_vunit_free(s->unit);
	bk_vmemops_free(s->ops);
}

static int open_dev(const bk_config *cfg, const served *s, bk_device **out)
{
	bk_device_opts o = BK_DEVICE_OPTS_INIT;
	const char *ca[1] = {bk_config_get(cfg, "trust.factory_ca")};
	o.terminal_key = bk_config_get(cfg, "depot.terminal_key");
	o.terminal_cert = bk_config_get(cfg, "depot.terminal_cert");
	o.factory_ca = ca;
	o.factory_ca_count = 1;
	o.timeout_ms = 20000;
	return bk_device_open(out, bk_vserver_uri(s->server), &o);
}

static char *domains_of(const char *name)
{
	json_t *j = NULL;
	if (bk_vunit_digest_json(bk_test_path(name), &j) != 0)
		return NULL;
	char *s = json_dumps(json_object_get(j, "domains"), JSON_SORT_KEYS | JSON_COMPACT);
	json_decref(j);
	return s;
}

static int lab(bk_config **cfg, char *pki, size_t cap)
{
	snprintf(pki, cap, "%s", bk_test_path("pki"));
	int rc = bk_vdev_pki_init(pki);
	if (rc)
		return rc;
	char conf[600];
	snprintf(conf, sizeof(conf), "%s/" BK_PKI_CONFIG, pki);
	bk_config_opts o = BK_CONFIG_OPTS_INIT;
	o.file = conf;
	return bk_config_load(cfg, &o);
}

static void roundtrip(uint64_t size)
{
	bk_config *cfg = NULL;
	char pki[512];
	served a, b;
	bk_device *da = NULL, *db = NULL;
	bk_backup_report rep;
	bk_transfer_stats st;
	bk_restore_report rr;
	memset(&rr, 0, sizeof(rr));
	REQUIRE_OK(lab(&cfg, pki, sizeof(pki)));
	REQUIRE_OK(make_unit(pki, "a", "WIRE-A", size, size == 0));
	REQUIRE_OK(make_unit(pki, "b", "WIRE-B", 0, true));
	REQUIRE_OK(serve(&a, "a"));
	REQUIRE_OK(serve(&b, "b"));
	CHECK_OK(open_dev(cfg, &a, &da));
	CHECK_OK(open_dev(cfg, &b, &db));
	if (da && db) {
		bk_backup_pull_opts po = BK_BACKUP_PULL_OPTS_INIT;
		po.output = bk_test_path("pulled.aibk");
		CHECK_OK(bk_backup_pull(cfg, da, &po, &rep, &st));
		CHECK(st.size > 0 && st.bytes == st.size && st.reconnects == 0);
		CHECK_EQ(rep.file_size, st.size);
		struct stat sb;
		CHECK(stat(bk_test_path("pulled.aibk.statement"), &sb) == 0);
		CHECK(stat(bk_test_path("pulled.aibk.part"), &sb) != 0);
		/* The unit dropped its copy once the file was stored. */
		CHECK(stat(bk_test_path("a/backup"), &sb) != 0);
		bk_restore_push_opts ro = BK_RESTORE_PUSH_OPTS_INIT;
		CHECK_OK(bk_restore_push(cfg, db, bk_test_path("pulled.aibk"), &ro, &rr));
		CHECK(rr.digests_match);
		CHECK_STR(rr.from_serial, "WIRE-A");
		CHECK_EQ(rr.stats.start, 0);
		char *da_ = domains_of("a"), *db_ = domains_of("b");
		CHECK_STR(da_, db_);
		free(da_);
		free(db_);
		CHECK(stat(bk_test_path("b/restore"), &sb) != 0);
		CHECK(stat(bk_test_path("b/memory.new"), &sb) != 0);
		bk_backup_report_clear(&rep);
	}
	bk_restore_report_clear(&rr);
	bk_device_free(da);
	bk_device_free(db);
	unserve(&a);
	unserve(&b);
	bk_config_free(cfg);
}

static void test_roundtrip_1m(void)
{
	roundtrip((uint64_t)1 << 20);
}

static void test_roundtrip_empty(void)
{
	roundtrip(0);
}

/* The unit's handlers refuse what does not fit, and change nothing. */
static void test_unit_refusals(void)
{
	bk_config *cfg = NULL;
	char pki[512];
	served a;
	bk_device *d = NULL;
	REQUIRE_OK(lab(&cfg, pki, sizeof(pki)));
	REQUIRE_OK(make_unit(pki, "a", "WIRE-R", 64 << 10, false));
	char *before = domains_of("a");
	REQUIRE_OK(serve(&a, "a"));
	CHECK_OK(open_dev(cfg, &a, &d));
	if (d) {
		CHECK_EQ(bk_device_call(d, BK_DEVICE_RESTORE_COMMIT, NULL, NULL, 0), BK_EINVALID);
		CHECK_STR(bk_error_last()->reason, "no-restore");
		CHECK_EQ(bk_device_call(d, BK_DEVICE_BACKUP_READ,
		                        "{\"id\":\"00000000-0000-4000-8000-000000000000\","
		                        "\"offset\":0,\"len\":10}",
		                        NULL, 0),
		         BK_ENOTFOUND);
		CHECK_EQ(bk_device_call(d, BK_DEVICE_BACKUP_BEGIN, "{\"recipients\":[]}", NULL, 0),
		         BK_EINVALID);
		CHECK_EQ(bk_device_call(d, BK_DEVICE_RESTORE_BEGIN,
		                        "{\"size\":10,\"statement\":\"not a statement\"}", NULL, 0),
		         BK_EVERIFY);
		char *reply = NULL;
		CHECK_OK(bk_device_call(d, BK_DEVICE_RESTORE_STATUS, NULL, &reply, 0));
		CHECK(reply && strstr(reply, "\"active\":false"));
		bk_free(reply);
	}
	char *after = domains_of("a");
	CHECK_STR(before, after);
	free(before);
	free(after);
	bk_device_free(d);
	unserve(&a);
	bk_config_free(cfg);
}

BK_RUN_TESTS(BK_TEST(test_roundtrip_1m), BK_TEST(test_roundtrip_empty), BK_TEST(test_unit_refusals))
