/* Backup pull and restore push in-process: a lab, two virtual units served
 * on loopback in threads of this process, the library calls, and the unit's
 * handlers' refusals. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include <libbackup/identity.h>
#include <libbackup/libbackup.h>
#include <libbackup/transfer.h>

#include "crypto/age.h"
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

static int serve_on(served *s, const char *name, const char *listen)
{
	memset(s, 0, sizeof(*s));
	int rc = bk_vunit_open(&s->unit, bk_test_path(name));
	if (rc == 0)
		rc = bk_vmemops_install(&s->ops, s->unit);
	if (rc == 0)
		rc = bk_vserver_new(&s->server, s->unit, listen, false);
	if (rc == 0)
		rc = bk_vserver_start(s->server);
	return rc;
}

static int serve(served *s, const char *name)
{
	return serve_on(s, name, "tcp:127.0.0.1:0");
}

static void unserve(served *s)
{
	bk_vserver_free(s->server);
	bk_vunit_free(s->unit);
	bk_vmemops_free(s->ops);
}

static int open_dev_serial(const bk_config *cfg, const served *s, const char *serial,
                           bk_device **out)
{
	bk_device_opts o = BK_DEVICE_OPTS_INIT;
	o.serial = serial;
	const char *ca[1] = {bk_config_get(cfg, "trust.factory_ca")};
	o.terminal_key = bk_config_get(cfg, "depot.terminal_key");
	o.terminal_cert = bk_config_get(cfg, "depot.terminal_cert");
	o.factory_ca = ca;
	o.factory_ca_count = 1;
	o.timeout_ms = 20000;
	return bk_device_open(out, bk_vserver_uri(s->server), &o);
}

static int open_dev(const bk_config *cfg, const served *s, bk_device **out)
{
	return open_dev_serial(cfg, s, NULL, out);
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


/* A bk_device_source over a file held in memory. */
static int mem_source(void *payload, uint64_t offset, void *buf, size_t len)
{
	memcpy(buf, (const uint8_t *)payload + offset, len);
	return 0;
}

/* A progress callback that stops a restore just before its commit. */
static int stop_at_commit(const bk_progress *p, void *payload)
{
	(void)payload;
	return p->step && strcmp(p->step, "commit") == 0;
}

/* --- Sealed restores --------------------------------------------------------- */

/* Copies a file (a statement beside a backup). */
static int copy_file(const char *from, const char *to)
{
	uint8_t *data = NULL;
	size_t len = 0;
	int rc = bk_file_read(from, (size_t)1 << 30, &data, &len);
	if (rc == 0)
		rc = bk_file_write_atomic(to, data, len, 0644, 0);
	bk__free(data);
	return rc;
}

/* What the cloud does with its escrow key: `src` (opened by the depot
 * identity) gets a new header for `rcpt` only, the payload and the statement
 * stay as they are; written to `dst` and `dst`.statement. */
static int seal_to(const bk_config *cfg, const char *src, const char *dst, const char *rcpt)
{
	bk_age_identities *ids = NULL;
	uint8_t *data = NULL, *hdr = NULL, *whole = NULL;
	size_t len = 0, hl = 0, nl = 0;
	bk_age_recipient r;
	bk_age_decrypt_opts dopts = BK_AGE_DECRYPT_OPTS_INIT;
	bk_age_encrypt_opts eo = BK_AGE_ENCRYPT_OPTS_INIT;
	char sfrom[600], sto[600];
	int rc = bk_age_recipient_parse(&r, rcpt);
	if (rc == 0)
		rc = bk_age_identities_new(&ids);
	if (rc == 0)
		rc = bk_age_identities_load(ids, bk_config_get(cfg, "depot.identity"), 0, NULL,
		                            NULL);
	if (rc == 0)
		rc = bk_file_read(src, (size_t)1 << 30, &data, &len);
	if (rc == 0)
		rc = bk_age_header_parse(&hl, data, len, &dopts);
	eo.recipients = &r;
	eo.recipient_count = 1;
	if (rc == 0)
		rc = bk_age_rewrap_header(&hdr, &nl, data, hl, ids, &eo);
	if (rc == 0 && (whole = bk__malloc(nl + len - hl)) == NULL)
		rc = BK_ENOMEM;
	if (rc == 0) {
		memcpy(whole, hdr, nl);
		memcpy(whole + nl, data + hl, len - hl);
		rc = bk_file_write_atomic(dst, whole, nl + len - hl, 0644, 0);
	}
	snprintf(sfrom, sizeof(sfrom), "%s.statement", src);
	snprintf(sto, sizeof(sto), "%s.statement", dst);
	if (rc == 0)
		rc = copy_file(sfrom, sto);
	bk__free(whole);
	bk__free(hdr);
	bk__free(data);
	bk_age_identities_free(ids);
	return rc;
}

/* XORs one byte of `path` at `offset`. */
static int flip_byte(const char *path, uint64_t offset)
{
	FILE *f = fopen(path, "r+b");
	if (f == NULL)
		return -1;
	int c = fseek(f, (long)offset, SEEK_SET) == 0 ? fgetc(f) : EOF;
	int rc = c == EOF || fseek(f, (long)offset, SEEK_SET) != 0 ||
	                 fputc(c ^ 0x5a, f) == EOF
	             ? -1
	             : 0;
	return fclose(f) == 0 ? rc : -1;
}

static uint64_t header_len_of(const char *path)
{
	uint64_t hl = 0;
	return bk_identity_age_file_check(path, &hl) == 0 ? hl : 0;
}

static uint64_t file_size(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

/* The unit's certified age recipient, as INFO gives it. */
static int unit_recipient(bk_device *d, char *out, size_t cap)
{
	bk_device_info *info = NULL;
	int rc = bk_device_info_get(d, &info, 0);
	if (rc == 0 && info->age_recipient == NULL)
		rc = BK_ENOTFOUND;
	if (rc == 0)
		snprintf(out, cap, "%s", info->age_recipient);
	bk_device_info_free(info);
	return rc;
}

/* A cloud backup re-wrapped to the replacement unit goes byte for byte; the
 * unit's commit names the statement's manifest and its memory equals the
 * source's. Sealed to another key, or with a damaged payload, the unit
 * refuses at commit and keeps its memory. */
static void test_sealed(void)
{
	bk_config *cfg = NULL;
	char pki[512], rb[128], rcpt_c[128];
	served a, b, c;
	bk_device *da = NULL, *db = NULL, *dc = NULL;
	bk_backup_report rep;
	bk_restore_report rr;
	memset(&rr, 0, sizeof(rr));
	memset(&rep, 0, sizeof(rep));
	REQUIRE_OK(lab(&cfg, pki, sizeof(pki)));
	REQUIRE_OK(make_unit(pki, "a", "SEAL-A", 1 << 20, false));
	REQUIRE_OK(make_unit(pki, "b", "SEAL-B", 0, true));
	REQUIRE_OK(make_unit(pki, "c", "SEAL-C", 64 << 10, false));
	REQUIRE_OK(serve(&a, "a"));
	REQUIRE_OK(serve(&b, "b"));
	REQUIRE_OK(serve(&c, "c"));
	CHECK_OK(open_dev(cfg, &a, &da));
	CHECK_OK(open_dev(cfg, &b, &db));
	CHECK_OK(open_dev(cfg, &c, &dc));
	if (da == NULL || db == NULL || dc == NULL)
		goto done;
	bk_backup_pull_opts po = BK_BACKUP_PULL_OPTS_INIT;
	po.output = bk_test_path("src.aibk");
	REQUIRE_OK(bk_backup_pull(cfg, da, &po, &rep, NULL));
	REQUIRE_OK(unit_recipient(db, rb, sizeof(rb)));
	REQUIRE_OK(unit_recipient(dc, rcpt_c, sizeof(rcpt_c)));
	const char *sealed_b = bk_test_path("sealed-b.aibk");
	REQUIRE_OK(seal_to(cfg, bk_test_path("src.aibk"), sealed_b, rb));
	uint64_t fsize = file_size(sealed_b);
	CHECK(fsize > 0 && header_len_of(sealed_b) > 0);
	char *src_d = domains_of("a");

	/* The depot identity cannot open it: only sealed mode can send it. */
	bk_restore_push_opts ro = BK_RESTORE_PUSH_OPTS_INIT;
	CHECK_EQ(bk_restore_push(cfg, db, sealed_b, &ro, &rr), BK_EAUTH);
	CHECK_STR(bk_error_last()->reason, "no-identity-matched");
	bk_restore_report_clear(&rr);

	/* Sealed: byte for byte, the unit's digests are the source's. */
	ro.sealed = 1;
	CHECK_OK(bk_restore_push(cfg, db, sealed_b, &ro, &rr));
	CHECK(rr.digests_match);
	CHECK_EQ(rr.stats.size, fsize);
	CHECK_EQ(rr.stats.bytes, fsize);
	CHECK_STR(rr.from_serial, "SEAL-A");
	CHECK(rr.domains_json != NULL && strstr(rr.domains_json, "personality") != NULL);
	char *b_d = domains_of("b");
	CHECK_STR(src_d, b_d);
	free(b_d);
	bk_restore_report_clear(&rr);

	/* Once committed, a sealed memory cannot be recognised: a second push
	 * is refused like any memory the unit holds. */
	CHECK_EQ(bk_restore_push(cfg, db, sealed_b, &ro, &rr), BK_EEXIST);
	CHECK_STR(bk_error_last()->reason, "unit-has-memory");
	bk_restore_report_clear(&rr);

	/* Sealed to another unit's key: C cannot open it; its memory stays. */
	char *c_before = domains_of("c");
	ro.overwrite = 1;
	int rc = bk_restore_push(cfg, dc, sealed_b, &ro, &rr);
	CHECK_EQ(rc, BK_EAUTH);
	CHECK_STR(bk_error_last()->reason, "no-identity-matched");
	CHECK(!rr.digests_match);
	bk_restore_report_clear(&rr);
	char *c_after = domains_of("c");
	CHECK_STR(c_before, c_after);
	free(c_after);
	struct stat sb;
	CHECK(stat(bk_test_path("c/memory.new"), &sb) != 0);

	/* Sealed to C, one payload byte changed: refused, memory unchanged. */
	const char *sealed_c = bk_test_path("sealed-c.aibk");
	REQUIRE_OK(seal_to(cfg, bk_test_path("src.aibk"), sealed_c, rcpt_c));
	REQUIRE_OK(flip_byte(sealed_c, header_len_of(sealed_c) + 1000));
	CHECK_EQ(bk_restore_push(cfg, dc, sealed_c, &ro, &rr), BK_EVERIFY);
	CHECK_STR(bk_error_last()->reason, "payload-corrupt");
	bk_restore_report_clear(&rr);
	c_after = domains_of("c");
	CHECK_STR(c_before, c_after);
	free(c_after);
	CHECK(stat(bk_test_path("c/memory.new"), &sb) != 0);

	/* A file that is not the size its statement names is refused before
	 * any byte is sent. */
	REQUIRE_OK(seal_to(cfg, bk_test_path("src.aibk"), sealed_c, rcpt_c));
	REQUIRE_OK(truncate(sealed_c, (off_t)(file_size(sealed_c) - 1)));
	CHECK_EQ(bk_restore_push(cfg, dc, sealed_c, &ro, &rr), BK_EVERIFY);
	CHECK_STR(bk_error_last()->reason, "payload-truncated");
	CHECK_EQ(rr.stats.bytes, 0);
	bk_restore_report_clear(&rr);

	/* Whole again: C (holding a memory) without overwrite is refused, but
	 * a run stopped after the transfer may commit without it. */
	REQUIRE_OK(seal_to(cfg, bk_test_path("src.aibk"), sealed_c, rcpt_c));
	ro.overwrite = 0;
	CHECK_EQ(bk_restore_push(cfg, dc, sealed_c, &ro, &rr), BK_EEXIST);
	CHECK_STR(bk_error_last()->reason, "unit-has-memory");
	bk_restore_report_clear(&rr);
	/* A run with overwrite, stopped between the transfer and the commit. */
	ro.overwrite = 1;
	ro.progress = stop_at_commit;
	CHECK_EQ(bk_restore_push(cfg, dc, sealed_c, &ro, &rr), BK_ECANCELLED);
	CHECK_EQ(rr.stats.bytes, fsize);
	bk_restore_report_clear(&rr);
	c_after = domains_of("c");
	CHECK_STR(c_before, c_after);
	free(c_after);
	ro.overwrite = 0;
	ro.progress = NULL;
	CHECK_OK(bk_restore_push(cfg, dc, sealed_c, &ro, &rr));
	CHECK(rr.digests_match && rr.resumed);
	CHECK_EQ(rr.stats.bytes, 0);
	bk_restore_report_clear(&rr);
	c_after = domains_of("c");
	CHECK_STR(src_d, c_after);
	free(c_after);
	free(c_before);
	free(src_d);
done:
	bk_backup_report_clear(&rep);
	bk_device_free(da);
	bk_device_free(db);
	bk_device_free(dc);
	unserve(&a);
	unserve(&b);
	unserve(&c);
	bk_config_free(cfg);
}

/* A sealed transfer cut by lost connections, and one stopped half way by
 * the terminal, continue from the unit's offset. */
static void test_sealed_resume(void)
{
	bk_config *cfg = NULL;
	char pki[512], rd[128];
	served a, d;
	bk_device *da = NULL, *dd = NULL;
	bk_backup_report rep;
	bk_restore_report rr;
	memset(&rr, 0, sizeof(rr));
	memset(&rep, 0, sizeof(rep));
	REQUIRE_OK(lab(&cfg, pki, sizeof(pki)));
	REQUIRE_OK(make_unit(pki, "a", "SEAL-RA", 2 << 20, false));
	REQUIRE_OK(make_unit(pki, "d", "SEAL-RD", 0, true));
	REQUIRE_OK(serve(&a, "a"));
	REQUIRE_OK(serve(&d, "d"));
	CHECK_OK(open_dev(cfg, &a, &da));
	CHECK_OK(open_dev(cfg, &d, &dd));
	if (da == NULL || dd == NULL)
		goto done;
	bk_backup_pull_opts po = BK_BACKUP_PULL_OPTS_INIT;
	po.output = bk_test_path("src.aibk");
	REQUIRE_OK(bk_backup_pull(cfg, da, &po, &rep, NULL));
	REQUIRE_OK(unit_recipient(dd, rd, sizeof(rd)));
	const char *sealed = bk_test_path("sealed.aibk");
	REQUIRE_OK(seal_to(cfg, bk_test_path("src.aibk"), sealed, rd));
	uint64_t fsize = file_size(sealed);
	char *src_d = domains_of("a");

	/* The terminal stopped after the first half. */
	{
		bk_statement *st = NULL;
		uint8_t *file = NULL;
		size_t flen = 0, slen = 0;
		char sp[600];
		snprintf(sp, sizeof(sp), "%s.statement", sealed);
		REQUIRE_OK(bk_statement_read(&st, sp));
		REQUIRE_OK(bk_file_read(sealed, (size_t)1 << 30, &file, &flen));
		const uint8_t *sb_ = bk_statement_bytes(st, &slen);
		uint8_t hd[crypto_generichash_BYTES];
		char hdx[2 * crypto_generichash_BYTES + 1];
		crypto_generichash(hd, sizeof(hd), file, header_len_of(sealed), NULL, 0);
		bk_hex_encode(hdx, hd, sizeof(hd));
		json_t *req = json_pack("{s:I, s:s%, s:s}", "size", (json_int_t)flen, "statement",
		                        (const char *)sb_, slen, "header_digest", hdx);
		char *body = json_dumps(req, JSON_COMPACT);
		CHECK_OK(bk_device_call(dd, BK_DEVICE_RESTORE_BEGIN, body, NULL, 0));
		bk_device_xfer_opts xo = BK_DEVICE_XFER_OPTS_INIT;
		uint64_t got = 0;
		CHECK_OK(bk_device_write_range(dd, BK_DEVICE_RESTORE_WRITE, 0, flen / 2, mem_source,
		                               file, &xo, &got));
		CHECK_EQ(got, flen / 2);
		free(body);
		json_decref(req);
		bk__free(file);
		bk_statement_free(st);
	}
	/* ...and the unit drops the connection once more on the way (a fault
	 * is taken by the next session). */
	CHECK_OK(bk_vunit_fault_add(d.unit, "disconnect-after=300000"));
	CHECK_OK(bk_device_reconnect(dd));
	bk_restore_push_opts ro = BK_RESTORE_PUSH_OPTS_INIT;
	ro.sealed = 1;
	ro.reconnect_ms = 20000;
	CHECK_OK(bk_restore_push(cfg, dd, sealed, &ro, &rr));
	CHECK(rr.digests_match);
	CHECK(rr.resumed);
	CHECK_EQ(rr.stats.start, fsize / 2);
	CHECK(rr.stats.reconnects >= 1);
	CHECK(rr.stats.bytes >= fsize - fsize / 2);
	char *d_d = domains_of("d");
	CHECK_STR(src_d, d_d);
	free(d_d);
	free(src_d);
	struct stat sb;
	CHECK(stat(bk_test_path("d/restore"), &sb) != 0);
done:
	bk_restore_report_clear(&rr);
	bk_backup_report_clear(&rep);
	bk_device_free(da);
	bk_device_free(dd);
	unserve(&a);
	unserve(&d);
	bk_config_free(cfg);
}

/* --- Serials ------------------------------------------------------------------ */

/* A handle opened for one serial refuses another unit; a unit that answers
 * on the same address after a lost connection must be the same unit. */
static void test_serial_mismatch(void)
{
	bk_config *cfg = NULL;
	char pki[512], sock[600];
	served a, b;
	bk_device *d = NULL;
	bk_backup_report rep;
	bk_restore_report rr;
	memset(&rr, 0, sizeof(rr));
	memset(&rep, 0, sizeof(rep));
	memset(&b, 0, sizeof(b));
	REQUIRE_OK(lab(&cfg, pki, sizeof(pki)));
	REQUIRE_OK(make_unit(pki, "a", "SER-A", 64 << 10, false));
	REQUIRE_OK(make_unit(pki, "b", "SER-B", 64 << 10, false));
	snprintf(sock, sizeof(sock), "unix:%s", bk_test_path("unit.sock"));
	REQUIRE_OK(serve_on(&a, "a", sock));
	CHECK_EQ(open_dev_serial(cfg, &a, "SER-B", &d), BK_EAUTH);
	CHECK_STR(bk_error_last()->reason, "serial-mismatch");
	CHECK(d == NULL);
	CHECK_OK(open_dev_serial(cfg, &a, "SER-A", &d));
	if (d) {
		/* Make a backup of A to restore later. */
		bk_backup_pull_opts po = BK_BACKUP_PULL_OPTS_INIT;
		po.output = bk_test_path("a.aibk");
		CHECK_OK(bk_backup_pull(cfg, d, &po, &rep, NULL));
		bk_backup_report_clear(&rep);
	}
	char *b_before = domains_of("b");
	/* A goes away; B answers on its address. */
	unserve(&a);
	REQUIRE_OK(serve_on(&b, "b", sock));
	if (d) {
		bk_backup_pull_opts po = BK_BACKUP_PULL_OPTS_INIT;
		po.output = bk_test_path("b.aibk");
		po.reconnect_ms = 3000;
		CHECK_EQ(bk_backup_pull(cfg, d, &po, &rep, NULL), BK_EAUTH);
		CHECK_STR(bk_error_last()->reason, "serial-mismatch");
		struct stat sb;
		CHECK(stat(bk_test_path("b.aibk"), &sb) != 0);
		CHECK(stat(bk_test_path("b.aibk.part"), &sb) != 0);
		bk_backup_report_clear(&rep);
		bk_restore_push_opts ro = BK_RESTORE_PUSH_OPTS_INIT;
		ro.overwrite = 1;
		ro.reconnect_ms = 3000;
		CHECK_EQ(bk_restore_push(cfg, d, bk_test_path("a.aibk"), &ro, &rr), BK_EAUTH);
		CHECK_STR(bk_error_last()->reason, "serial-mismatch");
		bk_restore_report_clear(&rr);
	}
	char *b_after = domains_of("b");
	CHECK_STR(b_before, b_after);
	free(b_before);
	free(b_after);
	bk_device_free(d);
	unserve(&b);
	bk_config_free(cfg);
}

/* The unit streams a backup while it makes it; a lost connection in the
 * middle continues the same backup; a terminal that does not ask for
 * streaming gets the whole answer at once. */
static void test_stream_pull(void)
{
	bk_config *cfg = NULL;
	char pki[512];
	served a;
	bk_device *d = NULL;
	bk_backup_report rep;
	bk_transfer_stats st;
	memset(&rep, 0, sizeof(rep));
	REQUIRE_OK(lab(&cfg, pki, sizeof(pki)));
	REQUIRE_OK(make_unit(pki, "a", "STREAM-A", 2 << 20, false));
	REQUIRE_OK(serve(&a, "a"));
	CHECK_OK(bk_vunit_fault_add(a.unit, "disconnect-after=700000"));
	CHECK_OK(open_dev(cfg, &a, &d));
	if (d) {
		bk_backup_pull_opts po = BK_BACKUP_PULL_OPTS_INIT;
		po.output = bk_test_path("s.aibk");
		po.verify = 1;
		po.reconnect_ms = 20000;
		CHECK_OK(bk_backup_pull(cfg, d, &po, &rep, &st));
		CHECK(st.reconnects >= 1);
		CHECK_EQ(st.size, file_size(bk_test_path("s.aibk")));
		CHECK(rep.files > 0);
		bk_backup_report_clear(&rep);
		struct stat sb;
		CHECK(stat(bk_test_path("a/backup"), &sb) != 0);
		char rcpt[128], *reply = NULL, body[300];
		REQUIRE_OK(unit_recipient(d, rcpt, sizeof(rcpt)));
		snprintf(body, sizeof(body), "{\"recipients\":[\"%s\"]}", rcpt);
		CHECK_OK(bk_device_call(d, BK_DEVICE_BACKUP_BEGIN, body, &reply, 0));
		CHECK(reply && strstr(reply, "\"statement\"") && strstr(reply, "\"size\"") &&
		      !strstr(reply, "streaming"));
		bk_free(reply);
	}
	bk_device_free(d);
	unserve(&a);
	bk_config_free(cfg);
}

BK_RUN_TESTS(BK_TEST(test_roundtrip_1m), BK_TEST(test_roundtrip_empty), BK_TEST(test_unit_refusals),
             BK_TEST(test_sealed), BK_TEST(test_sealed_resume), BK_TEST(test_serial_mismatch),
             BK_TEST(test_stream_pull))
