/* Firmware flashing: bk_fw_flash against the virtual unit over TCP loopback,
 * refusals on both sides, power loss at every step, boot failure and
 * rollback, resuming after a lost connection. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libbackup/firmware.h>

#include "crypto/minisign.h"
#include "device/virtual/fw.h"
#include "device/virtual/pki.h"
#include "testlib.h"
#include "tests/device/helpers.h"

#ifndef FLASH_LONG
#define FLASH_LONG 0
#endif

#define IMAGE_A (640 * 1024)
#define IMAGE_B (384 * 1024)

typedef struct rig {
	lab l;
	char dir[600];
	char fwkey[700], fwpub[700];
	char fw_id[17];
	bk_vunit *u;
	bk_vserver *srv;
	bk_device *dev;
} rig;

static int write_image(const char *path, size_t size, uint32_t seed)
{
	uint8_t *p = malloc(size);
	if (p == NULL)
		return BK_ENOMEM;
	for (size_t i = 0; i < size; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t)(seed >> 16);
	}
	int rc = bk_file_write_atomic(path, p, size, 0644, 0);
	free(p);
	return rc;
}

typedef struct bundle_spec {
	const char *name;
	const char *model;
	const char *key; /* NULL: the lab firmware key */
	const char *version;
	uint32_t counter;
} bundle_spec;

/* Packs <tmp>/<name>.aifw: two images (rootfs, kernel). */
static int make_bundle(rig *r, const bundle_spec *s, char *out, size_t cap)
{
	char a[700], b[700];
	snprintf(a, sizeof(a), "%s", bk_test_path("rootfs.img"));
	snprintf(b, sizeof(b), "%s", bk_test_path("kernel.img"));
	int rc = write_image(a, IMAGE_A, 7);
	if (rc == 0)
		rc = write_image(b, IMAGE_B, 9);
	if (rc)
		return rc;
	const char *models[] = {s->model ? s->model : "ERS-1000", NULL};
	bk_fw_image imgs[] = {{"rootfs.img", a, "rootfs"}, {"kernel.img", b, "kernel"}};
	bk_fw_pack_opts o = BK_FW_PACK_OPTS_INIT;
	o.models = models;
	o.hw_rev_min = "1";
	o.hw_rev_max = "3";
	o.fw_version = s->version ? s->version : "4.0.0";
	o.security_counter = s->counter;
	o.schema_min = 1;
	o.schema_max = 3;
	o.images = imgs;
	o.image_count = 2;
	o.secret_key = s->key ? s->key : r->fwkey;
	snprintf(out, cap, "%s", bk_test_path(s->name));
	return bk_fw_bundle_pack(out, &o);
}

static int rig_serve(rig *r)
{
	bk_device_opts o;
	int rc = bk_vunit_open(&r->u, r->dir);
	if (rc == 0)
		rc = bk_vunit_firmware_enable(r->u);
	if (rc == 0) {
		bk_vfw_set_boot_time(bk_vunit_fw(r->u), 50);
		rc = bk_vserver_new(&r->srv, r->u, "tcp:127.0.0.1:0", false);
	}
	if (rc == 0)
		rc = bk_vserver_start(r->srv);
	lab_opts(&r->l, &o);
	o.timeout_ms = 1000;
	if (rc == 0)
		rc = bk_device_open(&r->dev, bk_vserver_uri(r->srv), &o);
	return rc;
}

/* Stops serving (a power cut when the unit died) and closes the unit;
 * returns what the server returned. */
static int rig_down(rig *r)
{
	bk_device_free(r->dev);
	r->dev = NULL;
	int rc = bk_vserver_stop(r->srv);
	bk_vserver_free(r->srv);
	r->srv = NULL;
	bk_vunit_free(r->u);
	r->u = NULL;
	return rc;
}

static int rig_up(rig *r, const char *name, const char *serial)
{
	bk_minisign_pubkey pk;
	memset(r, 0, sizeof(*r));
	int rc = lab_init(&r->l);
	if (rc == 0)
		rc = lab_unit(&r->l, name, serial, r->dir, sizeof(r->dir));
	snprintf(r->fwkey, sizeof(r->fwkey), "%s/%s", r->l.pki, BK_PKI_FIRMWARE_KEY);
	snprintf(r->fwpub, sizeof(r->fwpub), "%s/%s.pub", r->l.pki, BK_PKI_FIRMWARE_KEY);
	if (rc == 0)
		rc = bk_minisign_pubkey_read(&pk, r->fwpub);
	if (rc == 0)
		bk_minisign_key_id_hex(r->fw_id, pk.key_id);
	if (rc == 0)
		rc = rig_serve(r);
	return rc;
}

static void flash_opts(rig *r, bk_fw_flash_opts *o, bk_fw_flash_result *res)
{
	bk_fw_flash_opts d = BK_FW_FLASH_OPTS_INIT;
	*o = d;
	o->trusted_keys = r->fwpub;
	o->min_battery = 30;
	o->boot_timeout_ms = 1000;
	o->reconnect_timeout_ms = 600;
	o->result = res;
}

static int flash_path(rig *r, const char *path, bk_fw_flash_opts *o)
{
	bk_fw_bundle *b = NULL;
	int rc = bk_fw_bundle_open(&b, path);
	if (rc == 0)
		rc = bk_fw_flash(r->dev, b, o);
	bk_fw_bundle_free(b);
	return rc;
}

/* The unit's running slot and slot states, read from the unit itself. */
static void unit_slots(rig *r, char running[8], char state_b[16], char version_b[16],
                       long long *counter)
{
	json_t *info = NULL;
	running[0] = state_b[0] = version_b[0] = '\0';
	if (bk_vunit_info_json(r->u, &info) != 0)
		return;
	snprintf(running, 8, "%s",
	         json_string_value(json_object_get(json_object_get(info, "firmware"), "slot")));
	json_t *slots = json_object_get(info, "slots");
	for (size_t i = 0; i < json_array_size(slots); i++) {
		json_t *s = json_array_get(slots, i);
		if (strcmp(json_string_value(json_object_get(s, "name")), "B") == 0) {
			snprintf(state_b, 16, "%s", json_string_value(json_object_get(s, "state")));
			snprintf(version_b, 16, "%s",
			         json_string_value(json_object_get(s, "version")));
		}
	}
	json_decref(info);
	sqlite3_stmt *st = NULL;
	*counter = -1;
	if (sqlite3_prepare_v2(bk_vunit_db(r->u), "SELECT security_counter FROM fw_state", -1, &st,
	                       NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		*counter = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
}

static void test_flash_ok(void)
{
	rig r;
	char path[700], run[8], sb[16], vb[16];
	long long ctr;
	bk_fw_flash_opts o;
	bk_fw_flash_result res;
	REQUIRE_OK(rig_up(&r, "ok", "FL-OK"));
	bundle_spec s = {"ok.aifw", NULL, NULL, "4.0.0", 2};
	REQUIRE_OK(make_bundle(&r, &s, path, sizeof(path)));
	flash_opts(&r, &o, &res);
	CHECK_OK(flash_path(&r, path, &o));
	CHECK_STR(res.slot, "B");
	CHECK_STR(res.previous_slot, "A");
	CHECK_STR(res.running_slot, "B");
	CHECK_STR(res.boot_result, "good");
	CHECK_EQ(res.bytes, (uint64_t)(IMAGE_A + IMAGE_B));
	CHECK_EQ(res.sent, (uint64_t)(IMAGE_A + IMAGE_B));
	CHECK_EQ(res.security_counter, 2u);
	/* The unit reports the new firmware after a reconnect. */
	bk_device_info *info = NULL;
	REQUIRE_OK(bk_device_info_get(r.dev, &info, 0));
	CHECK_STR(info->firmware_version, "4.0.0");
	CHECK_EQ(info->security_counter, 2u);
	bk_device_info_free(info);
	unit_slots(&r, run, sb, vb, &ctr);
	CHECK_STR(run, "B");
	CHECK_STR(sb, "active");
	CHECK_EQ(ctr, 2);
	/* The same bundle again: now slot A is written, and the counter stays. */
	s.name = "ok2.aifw";
	s.version = "4.1.0";
	REQUIRE_OK(make_bundle(&r, &s, path, sizeof(path)));
	CHECK_OK(flash_path(&r, path, &o));
	CHECK_STR(res.slot, "A");
	CHECK_STR(res.running_slot, "A");
	/* An older counter than the stored one is now refused by the tool. */
	s.name = "old.aifw";
	s.counter = 1;
	REQUIRE_OK(make_bundle(&r, &s, path, sizeof(path)));
	bundle_spec s3 = {"newer.aifw", NULL, NULL, "5.0.0", 3};
	char p3[700];
	REQUIRE_OK(make_bundle(&r, &s3, p3, sizeof(p3)));
	CHECK_OK(flash_path(&r, p3, &o));
	CHECK_EQ(flash_path(&r, path, &o), BK_EINCOMPAT);
	CHECK_STR(bk_error_last()->reason, "security-counter-rollback");
	CHECK_EQ(rig_down(&r), 0);
}

/* Flips one byte inside the first payload of a bundle file. */
static int tamper_payload(const char *path)
{
	uint8_t *data = NULL, img[64];
	size_t len = 0;
	char a[700];
	snprintf(a, sizeof(a), "%s", bk_test_path("rootfs.img"));
	FILE *f = fopen(a, "rb");
	if (f == NULL || fread(img, 1, sizeof(img), f) != sizeof(img)) {
		if (f)
			fclose(f);
		return BK_EIO;
	}
	fclose(f);
	int rc = bk_file_read(path, 64 << 20, &data, &len);
	if (rc)
		return rc;
	uint8_t *at = memmem(data, len, img, sizeof(img));
	rc = at ? 0 : BK_ENOTFOUND;
	if (rc == 0) {
		at[IMAGE_A / 2] ^= 0x5a;
		rc = bk_file_write_atomic(path, data, len, 0644, 0);
	}
	bk__free(data);
	return rc;
}

static int tamper_manifest(const char *path)
{
	uint8_t *data = NULL;
	size_t len = 0;
	int rc = bk_file_read(path, 64 << 20, &data, &len);
	if (rc)
		return rc;
	const char *needle = "\"version\":\"4.0.0\"";
	uint8_t *at = memmem(data, len, needle, strlen(needle));
	rc = at ? 0 : BK_ENOTFOUND;
	if (rc == 0) {
		at[strlen(needle) - 2] = '9';
		rc = bk_file_write_atomic(path, data, len, 0644, 0);
	}
	bk__free(data);
	return rc;
}

static void test_refusals(void)
{
	rig r;
	char path[700], key[700], run[8], sb[16], vb[16];
	long long ctr;
	bk_fw_flash_opts o;
	bk_fw_flash_result res;
	REQUIRE_OK(rig_up(&r, "refuse", "FL-RF"));
	/* A key nobody trusts. */
	bk_minisign_seckey *sk = NULL;
	REQUIRE_OK(bk_minisign_keygen(&sk));
	snprintf(key, sizeof(key), "%s", bk_test_path("stranger.key"));
	REQUIRE_OK(bk_minisign_seckey_write(key, sk, NULL, 0, 0));
	bk_minisign_seckey_free(sk);
	struct {
		bundle_spec s;
		int tamper; /* 1 payload, 2 manifest, 3 revoked */
		int code, unit_code;
		const char *reason, *unit_reason;
	} cases[] = {
	    {{"tp.aifw", NULL, NULL, NULL, 2},
	     1,
	     BK_EVERIFY,
	     BK_EVERIFY,
	     "payload-digest-mismatch",
	     "payload-digest-mismatch"},
	    {{"tm.aifw", NULL, NULL, NULL, 2},
	     2,
	     BK_EVERIFY,
	     BK_EVERIFY,
	     "bad-signature",
	     "bad-signature"},
	    {{"uk.aifw", NULL, key, NULL, 2},
	     0,
	     BK_EVERIFY,
	     BK_EVERIFY,
	     "unknown-key",
	     "unknown-key"},
	    {{"rk.aifw", NULL, NULL, NULL, 2},
	     3,
	     BK_EVERIFY,
	     BK_EVERIFY,
	     "key-revoked",
	     "key-revoked"},
	    {{"wm.aifw", "ERS-2000", NULL, NULL, 2},
	     0,
	     BK_EINCOMPAT,
	     BK_EINCOMPAT,
	     "wrong-model",
	     "wrong-model"},
	    {{"oc.aifw", NULL, NULL, NULL, 0},
	     0,
	     BK_EINCOMPAT,
	     BK_EINCOMPAT,
	     "security-counter-rollback",
	     "security-counter-rollback"},
	};
	for (size_t i = 0; i < BK_ARRAY_LEN(cases); i++) {
		const char *revoked[] = {r.fw_id, NULL};
		char rk[700];
		snprintf(rk, sizeof(rk), "%s/%s", r.dir, BK_VFW_REVOKED_KEYS);
		REQUIRE_OK(make_bundle(&r, &cases[i].s, path, sizeof(path)));
		if (cases[i].tamper == 1)
			REQUIRE_OK(tamper_payload(path));
		if (cases[i].tamper == 2)
			REQUIRE_OK(tamper_manifest(path));
		if (cases[i].tamper == 3) {
			char line[40];
			snprintf(line, sizeof(line), "%s\n", r.fw_id);
			REQUIRE_OK(bk_file_write_atomic(rk, line, strlen(line), 0644, 0));
		}
		flash_opts(&r, &o, &res);
		if (cases[i].tamper == 3)
			o.revoked_key_ids = revoked;
		/* The tool refuses before a byte goes out. */
		CHECK_EQ(flash_path(&r, path, &o), cases[i].code);
		CHECK_STR(bk_error_last()->reason, cases[i].reason);
		CHECK_EQ(res.sent, 0u);
		/* Sent anyway: the unit refuses. */
		o.skip_terminal_checks = 1;
		o.revoked_key_ids = NULL;
		CHECK_EQ(flash_path(&r, path, &o), cases[i].unit_code);
		CHECK_STR(bk_error_last()->reason, cases[i].unit_reason);
		unit_slots(&r, run, sb, vb, &ctr);
		CHECK_STR(run, "A");
		CHECK(strcmp(sb, "active") != 0 && strcmp(sb, "pending") != 0);
		CHECK_EQ(ctr, 1);
		if (cases[i].tamper == 3)
			remove(rk);
	}
	/* Still a working unit: a good bundle goes in. */
	bundle_spec good = {"good.aifw", NULL, NULL, NULL, 2};
	REQUIRE_OK(make_bundle(&r, &good, path, sizeof(path)));
	flash_opts(&r, &o, &res);
	CHECK_OK(flash_path(&r, path, &o));
	CHECK_STR(res.running_slot, "B");
	/* Battery too low for the tool. */
	REQUIRE_OK(bk_vunit_fault_add(r.u, "battery=10"));
	CHECK_EQ(flash_path(&r, path, &o), BK_EINCOMPAT);
	CHECK_STR(bk_error_last()->reason, "battery-low");
	CHECK_EQ(rig_down(&r), 0);
}

static void test_boot_fail(void)
{
	rig r;
	char path[700], run[8], sb[16], vb[16];
	long long ctr;
	bk_fw_flash_opts o;
	bk_fw_flash_result res;
	REQUIRE_OK(rig_up(&r, "bootfail", "FL-BF"));
	bundle_spec s = {"bf.aifw", NULL, NULL, "4.0.0", 5};
	REQUIRE_OK(make_bundle(&r, &s, path, sizeof(path)));
	REQUIRE_OK(bk_vunit_fault_add(r.u, "boot-fail"));
	flash_opts(&r, &o, &res);
	CHECK_EQ(flash_path(&r, path, &o), BK_EROLLBACK);
	CHECK_STR(bk_error_last()->reason, "firmware-rolled-back");
	CHECK_STR(res.running_slot, "A");
	CHECK_STR(res.boot_result, "rolled-back");
	CHECK_EQ(res.security_counter, 1u);
	unit_slots(&r, run, sb, vb, &ctr);
	CHECK_STR(run, "A");
	CHECK_EQ(ctr, 1);
	CHECK_EQ(rig_down(&r), 0);
	/* Healthy again after a power cycle: the same bundle installs. */
	REQUIRE_OK(rig_serve(&r));
	CHECK_OK(flash_path(&r, path, &o));
	CHECK_STR(res.running_slot, "B");
	CHECK_EQ(res.security_counter, 5u);
	CHECK_EQ(rig_down(&r), 0);
}

static void test_disconnect_resume(void)
{
	rig r;
	char path[700];
	bk_fw_flash_opts o;
	bk_fw_flash_result res;
	REQUIRE_OK(rig_up(&r, "resume", "FL-RS"));
	bundle_spec s = {"rs.aifw", NULL, NULL, "4.0.0", 2};
	REQUIRE_OK(make_bundle(&r, &s, path, sizeof(path)));
	REQUIRE_OK(bk_vunit_fault_add(r.u, "disconnect-after=500000"));
	REQUIRE_OK(bk_device_reconnect(r.dev)); /* faults arm when a session starts */
	flash_opts(&r, &o, &res);
	CHECK_OK(flash_path(&r, path, &o));
	CHECK_EQ(res.resumes, 1u);
	CHECK(res.resume_offset > 0);
	CHECK(res.resume_offset < res.bytes);
	/* Only what the unit did not hold was sent again. */
	CHECK(res.sent <= res.bytes + 64 * 1024 * 8);
	CHECK_STR(res.running_slot, "B");
	CHECK_EQ(rig_down(&r), 0);
}

/* Power lost at `fault`: the unit powers up on a valid slot, and a second
 * flash completes. */
static void power_loss_case(const char *fault, int n)
{
	rig r;
	char path[700], name[32], serial[32], run[8], sb[16], vb[16];
	long long ctr;
	bk_fw_flash_opts o;
	bk_fw_flash_result res;
	snprintf(name, sizeof(name), "pl%d", n);
	snprintf(serial, sizeof(serial), "FL-PL%d", n);
	REQUIRE_OK(rig_up(&r, name, serial));
	bundle_spec s = {"pl.aifw", NULL, NULL, "4.0.0", 2};
	REQUIRE_OK(make_bundle(&r, &s, path, sizeof(path)));
	REQUIRE_OK(bk_vunit_fault_add(r.u, fault));
	flash_opts(&r, &o, &res);
	int rc = flash_path(&r, path, &o);
	CHECK(rc == BK_EDISCONNECTED || rc == BK_ETIMEOUT);
	if (rc != BK_EDISCONNECTED && rc != BK_ETIMEOUT)
		fprintf(stderr, "  %s: flash returned %d (%s)\n", fault, rc,
		        bk_error_last()->message);
	CHECK_EQ(rig_down(&r), BK_EDISCONNECTED);
	CHECK_STR(bk_error_last()->reason, "power-loss");
	/* Power back: a valid slot runs. */
	REQUIRE_OK(rig_serve(&r));
	unit_slots(&r, run, sb, vb, &ctr);
	CHECK_STR(run, "A");
	CHECK(strcmp(sb, "pending") != 0 && strcmp(sb, "active") != 0);
	CHECK_EQ(ctr, 1);
	/* And the flash runs again to its end. */
	CHECK_OK(flash_path(&r, path, &o));
	CHECK_STR(res.running_slot, "B");
	CHECK_STR(res.boot_result, "good");
	CHECK_EQ(res.security_counter, 2u);
	CHECK_EQ(rig_down(&r), 0);
}

static void test_power_loss(void)
{
	static const char *const quick[] = {
	    "power-loss=fw_write:50",
	    "power-loss=fw-finish",
	    "power-loss=fw_activate",
	    "power-loss=boot",
	};
	int n = 0;
	if (FLASH_LONG) {
		for (int p = 10; p <= 100; p += 10) {
			char spec[48];
			snprintf(spec, sizeof(spec), "power-loss=fw_write:%d", p);
			power_loss_case(spec, n++);
		}
	}
	for (size_t i = 0; i < BK_ARRAY_LEN(quick); i++)
		power_loss_case(quick[i], 100 + n++);
}

/* A power loss after activation but before the reboot: the next power-up
 * is the trial boot, and the new slot becomes good. */
static void test_power_loss_before_reboot(void)
{
	rig r;
	char path[700], run[8], sb[16], vb[16];
	long long ctr;
	bk_fw_flash_opts o;
	bk_fw_flash_result res;
	REQUIRE_OK(rig_up(&r, "plr", "FL-PLR"));
	bundle_spec s = {"plr.aifw", NULL, NULL, "4.2.0", 3};
	REQUIRE_OK(make_bundle(&r, &s, path, sizeof(path)));
	REQUIRE_OK(bk_vunit_fault_add(r.u, "power-loss=reboot"));
	flash_opts(&r, &o, &res);
	int rc = flash_path(&r, path, &o);
	CHECK(rc == BK_EDISCONNECTED || rc == BK_ETIMEOUT);
	CHECK_EQ(rig_down(&r), BK_EDISCONNECTED);
	REQUIRE_OK(rig_serve(&r));
	unit_slots(&r, run, sb, vb, &ctr);
	CHECK_STR(run, "B");
	CHECK_STR(vb, "4.2.0");
	CHECK_EQ(ctr, 3);
	CHECK_EQ(rig_down(&r), 0);
}

/* What a progress callback does to a file when a step begins. */
typedef struct meddle {
	const char *step; /* the step that triggers it */
	const char *path; /* the file */
	long at;          /* byte to flip; -1: only touch the file (a new mtime) */
	int done;
} meddle;

static int meddle_cb(const bk_progress *p, void *payload)
{
	meddle *m = payload;
	if (m->done || strcmp(p->step, m->step) != 0)
		return 0;
	m->done = 1;
	FILE *f = fopen(m->path, "r+b");
	if (f == NULL)
		return 0;
	int c = 0;
	if (m->at >= 0 && fseek(f, m->at, SEEK_SET) == 0 && (c = fgetc(f)) != EOF &&
	    fseek(f, m->at, SEEK_SET) == 0)
		fputc(c ^ 0x5a, f);
	else if (m->at < 0 && (c = fgetc(f)) != EOF && fseek(f, 0, SEEK_SET) == 0)
		fputc(c, f); /* the same byte: only the file's times change */
	fclose(f);
	return 0;
}

/* The bundle sent is the bundle verified: a file touched after the check
 * is refused before a byte goes out. */
static void test_bundle_changed(void)
{
	rig r;
	char path[700], run[8], sb[16], vb[16];
	long long ctr;
	bk_fw_flash_opts o;
	bk_fw_flash_result res;
	REQUIRE_OK(rig_up(&r, "changed", "FL-CH"));
	bundle_spec s = {"ch.aifw", NULL, NULL, "4.0.0", 2};
	REQUIRE_OK(make_bundle(&r, &s, path, sizeof(path)));
	meddle m = {"write", path, -1, 0};
	flash_opts(&r, &o, &res);
	o.progress = meddle_cb;
	o.progress_payload = &m;
	CHECK_EQ(flash_path(&r, path, &o), BK_EVERIFY);
	CHECK_STR(bk_error_last()->reason, "bundle-changed");
	CHECK_EQ(m.done, 1);
	CHECK_EQ(res.sent, 0u);
	unit_slots(&r, run, sb, vb, &ctr);
	CHECK_STR(run, "A");
	/* Unchanged since: it installs. */
	o.progress = NULL;
	CHECK_OK(flash_path(&r, path, &o));
	CHECK_STR(res.running_slot, "B");
	CHECK_EQ(rig_down(&r), 0);
}

/* The image checked by FW_FINISH is checked again by the boot: a slot
 * damaged between the activation and the reboot never runs. */
static void test_slot_damaged_before_boot(void)
{
	rig r;
	char path[700], img[700], run[8], sb[16], vb[16];
	long long ctr;
	bk_fw_flash_opts o;
	bk_fw_flash_result res;
	REQUIRE_OK(rig_up(&r, "damaged", "FL-DM"));
	bundle_spec s = {"dm.aifw", NULL, NULL, "4.0.0", 2};
	REQUIRE_OK(make_bundle(&r, &s, path, sizeof(path)));
	snprintf(img, sizeof(img), "%s/%s/B.img", r.dir, BK_VFW_SLOTS_DIR);
	/* A byte of the second payload (kernel.img). */
	meddle m = {"reboot", img, IMAGE_A + IMAGE_B / 3, 0};
	flash_opts(&r, &o, &res);
	o.progress = meddle_cb;
	o.progress_payload = &m;
	CHECK_EQ(flash_path(&r, path, &o), BK_EROLLBACK);
	CHECK_EQ(m.done, 1);
	CHECK_STR(res.running_slot, "A");
	CHECK_STR(res.boot_result, "rolled-back");
	unit_slots(&r, run, sb, vb, &ctr);
	CHECK_STR(run, "A");
	CHECK_EQ(ctr, 1);
	CHECK_EQ(rig_down(&r), 0);
}

BK_RUN_TESTS(BK_TEST(test_flash_ok), BK_TEST(test_refusals), BK_TEST(test_boot_fail),
             BK_TEST(test_disconnect_resume), BK_TEST(test_power_loss),
             BK_TEST(test_power_loss_before_reboot), BK_TEST(test_bundle_changed),
             BK_TEST(test_slot_damaged_before_boot))
