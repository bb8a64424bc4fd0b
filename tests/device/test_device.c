/* The device channel, the device client and the virtual robot's core: every
 * command over TCP, Unix and in-process transports, handshake refusals,
 * windowed transfers, faults, restarts and busy units. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "crypto/noise.h"
#include "device/channel.h"
#include "libbackup/archive/archive.h"
#include "libbackup/util/util.h"
#include "testlib.h"
#include "tests/device/helpers.h"

#define NOW ((int64_t)time(NULL))
#define DAY (24 * 3600)

static int reason_is(const char *r)
{
	const char *got = bk_error_last()->reason;
	if (got && strcmp(got, r) == 0)
		return 1;
	fprintf(stderr, "  reason '%s' (wanted '%s'): %s\n", got ? got : "(null)", r,
	        bk_error_last()->message);
	return 0;
}

/* Checks INFO against the unit folder's own digests. */
static void check_info(bk_device *dev, const char *unit_dir, const char *serial)
{
	bk_device_info *info = NULL;
	bk_domain_digests dd;
	char mem[700];
	REQUIRE_OK(bk_device_info_get(dev, &info, 0));
	CHECK_STR(info->serial, serial);
	CHECK_STR(info->model, "ERS-1000");
	CHECK_STR(info->hw_revision, "1");
	CHECK_STR(info->state, "idle");
	CHECK_EQ(info->battery, 100);
	CHECK_STR(info->cert_status, "valid");
	CHECK(strncmp(info->age_recipient, "age1", 4) == 0);
	CHECK_STR(info->firmware_version, "3.0.0");
	CHECK_EQ(info->security_counter, 1);
	CHECK_EQ(info->schema_min, 1);
	CHECK_EQ(info->schema_max, 2);
	CHECK_EQ(info->memory_schema, 2);
	REQUIRE(info->slot_count == 2);
	CHECK_STR(info->slots[0].name, "A");
	CHECK(info->slots[0].running);
	CHECK_STR(info->slots[1].state, "empty");
	CHECK(!info->slots[1].running);
	snprintf(mem, sizeof(mem), "%s/memory", unit_dir);
	REQUIRE_OK(bk_tree_digests(mem, &dd));
	CHECK_EQ(info->domain_count, BK_DOMAIN_COUNT);
	for (size_t i = 0; i < info->domain_count; i++) {
		int d = bk_domain_lookup(info->domains[i].name, strlen(info->domains[i].name));
		char hex[65];
		REQUIRE(d >= 0);
		bk_hex_encode(hex, dd.d[d].digest, 32);
		CHECK_STR(info->domains[i].digest, hex);
		CHECK_EQ(info->domains[i].items, dd.d[d].items);
		CHECK_EQ(info->domains[i].bytes, dd.d[d].bytes);
	}
	CHECK(strstr(info->json, "\"verified_by\":\"terminal\"") != NULL);
	bk_device_info_free(info);
}

static void exercise(bk_device *dev, const char *unit_dir, const char *serial)
{
	int64_t rtt = -1;
	char *reply = NULL;
	CHECK_OK(bk_device_ping(dev, &rtt, 0));
	CHECK(rtt >= 0);
	check_info(dev, unit_dir, serial);
	CHECK_OK(bk_device_call(dev, BK_DEVICE_INFO, "{}", &reply, 0));
	CHECK(reply && strstr(reply, serial) != NULL);
	bk_free(reply);
	CHECK_STR(bk_device_serial(dev), serial);
	CHECK_STR(bk_device_model(dev), "ERS-1000");
	/* A command the core does not know is a clean error, not a hang. */
	CHECK_EQ(bk_device_call(dev, BK_DEVICE_BOOT_STATUS, NULL, NULL, 0), BK_EINCOMPAT);
	CHECK(reason_is("unsupported-command"));
	CHECK(bk_device_connected(dev));
	CHECK_OK(bk_device_ping(dev, NULL, 0));
}

/* --- Commands over each transport ------------------------------------------------- */

static void serve_uri(const char *listen)
{
	lab l;
	char dir[600];
	bk_vunit *u = NULL;
	bk_vserver *srv = NULL;
	bk_device *dev = NULL;
	bk_device_opts o;
	REQUIRE_OK(lab_init(&l));
	REQUIRE_OK(lab_unit(&l, "u1", "AIBO-T1", dir, sizeof(dir)));
	REQUIRE_OK(bk_vunit_open(&u, dir));
	REQUIRE_OK(bk_vserver_new(&srv, u, listen, false));
	REQUIRE_OK(bk_vserver_start(srv));
	lab_opts(&l, &o);
	CHECK_OK(bk_device_open(&dev, bk_vserver_uri(srv), &o));
	if (dev) {
		exercise(dev, dir, "AIBO-T1");
		CHECK_STR(bk_device_get_uri(dev), bk_vserver_uri(srv));
	}
	bk_device_free(dev);
	/* Several clients in turn. */
	for (int i = 0; i < 3; i++) {
		dev = NULL;
		CHECK_OK(bk_device_open(&dev, bk_vserver_uri(srv), &o));
		CHECK_OK(bk_device_ping(dev, NULL, 0));
		bk_device_free(dev);
	}
	/* The serial asked for is checked. */
	o.serial = "AIBO-T1";
	dev = NULL;
	CHECK_OK(bk_device_open(&dev, bk_vserver_uri(srv), &o));
	bk_device_free(dev);
	CHECK_OK(bk_vserver_stop(srv));
	bk_vserver_free(srv);
	bk_vunit_free(u);
}

static void test_commands_tcp(void)
{
	serve_uri("tcp:127.0.0.1:0");
}

static void test_commands_unix_uri(void)
{
	char uri[600];
	snprintf(uri, sizeof(uri), "unix:%s", bk_test_path("u.sock"));
	serve_uri(uri);
}

static void test_commands_inproc(void)
{
	lab l;
	char dir[600];
	bk_vunit *u = NULL;
	bk_device *dev = NULL;
	bk_device_opts o;
	bk_stream *end = NULL;
	inproc ip;
	REQUIRE_OK(lab_init(&l));
	REQUIRE_OK(lab_unit(&l, "u1", "AIBO-P1", dir, sizeof(dir)));
	REQUIRE_OK(bk_vunit_open(&u, dir));
	REQUIRE_OK(inproc_start(&ip, u, &end));
	lab_opts(&l, &o);
	CHECK_OK(bk_device_open_stream(&dev, end, &o));
	if (dev)
		exercise(dev, dir, "AIBO-P1");
	CHECK_EQ(bk_device_reconnect(dev), BK_EINVALID);
	bk_device_free(dev);
	CHECK_OK(inproc_join(&ip));
	bk_vunit_free(u);
}

/* --- Windowed transfers --------------------------------------------------------------- */

#define BLOB_LEN (700 * 1024 + 123)

typedef struct blob {
	uint8_t *data;
	size_t len;
	unsigned reads;
} blob;

static uint8_t blob_byte(uint64_t i)
{
	return (uint8_t)((i * 2654435761u) >> 13);
}

/* BACKUP_READ served from a generated blob: {"offset", "len"} -> DATA. */
static int h_read(bk_vunit *u, const bk_proto_msg *req, bk_vunit_reply *reply, void *payload)
{
	blob *b = payload;
	json_t *o = json_object_get(req->json, "offset"), *n = json_object_get(req->json, "len");
	BK_UNUSED(u);
	if (!json_is_integer(o) || !json_is_integer(n) || json_integer_value(o) < 0 ||
	    json_integer_value(n) < 0 || json_integer_value(n) > BK_PROTO_DATA_MAX)
		return bk__error_set(BK_EINVALID, "bad-request", "bad read request");
	uint64_t off = (uint64_t)json_integer_value(o), len = (uint64_t)json_integer_value(n);
	if (off > b->len)
		off = b->len;
	if (len > b->len - off)
		len = b->len - off;
	for (uint64_t i = 0; i < len; i++)
		reply->data[i] = blob_byte(off + i);
	reply->is_data = true;
	reply->offset = (uint64_t)json_integer_value(o);
	reply->data_len = (size_t)len;
	b->reads++;
	return 0;
}

/* RESTORE_WRITE into a buffer. */
static int h_write(bk_vunit *u, const bk_proto_msg *req, bk_vunit_reply *reply, void *payload)
{
	blob *b = payload;
	BK_UNUSED(u);
	BK_UNUSED(reply);
	if (req->offset + req->data_len > b->len)
		return bk__error_set(BK_ENOSPACE, "too-large", "write past the end");
	memcpy(b->data + req->offset, req->data, req->data_len);
	return 0;
}

typedef struct sink_state {
	uint8_t *buf;
	size_t cap;
	uint64_t base;
	int bad;
} sink_state;

static int sink(void *payload, uint64_t offset, const void *data, size_t len)
{
	sink_state *s = payload;
	if (offset < s->base || offset - s->base + len > s->cap) {
		s->bad++;
		return BK_EINVALID;
	}
	memcpy(s->buf + (offset - s->base), data, len);
	return 0;
}

static int source(void *payload, uint64_t offset, void *buf, size_t len)
{
	BK_UNUSED(payload);
	for (size_t i = 0; i < len; i++)
		((uint8_t *)buf)[i] = blob_byte(offset + i) ^ 0x5a;
	return 0;
}

static void test_windowed_transfers(void)
{
	lab l;
	char dir[600];
	bk_vunit *u = NULL;
	bk_vserver *srv = NULL;
	bk_device *dev = NULL;
	bk_device_opts o;
	blob rb = {NULL, BLOB_LEN, 0}, wb = {NULL, BLOB_LEN, 0};
	sink_state ss = {0};
	uint64_t done = 0;
	REQUIRE_OK(lab_init(&l));
	REQUIRE_OK(lab_unit(&l, "u1", "AIBO-W1", dir, sizeof(dir)));
	REQUIRE_OK(bk_vunit_open(&u, dir));
	wb.data = calloc(1, BLOB_LEN);
	ss.buf = calloc(1, BLOB_LEN + 1000);
	ss.cap = BLOB_LEN + 1000;
	REQUIRE(wb.data && ss.buf);
	REQUIRE_OK(bk_vunit_set_handler(u, BK_MSG_BACKUP_READ, h_read, &rb));
	REQUIRE_OK(bk_vunit_set_handler(u, BK_MSG_RESTORE_WRITE, h_write, &wb));
	CHECK_EQ(bk_vunit_set_handler(u, BK_MSG_HELLO, h_read, &rb), BK_EINVALID);
	REQUIRE_OK(bk_vserver_new(&srv, u, "tcp:127.0.0.1:0", false));
	REQUIRE_OK(bk_vserver_start(srv));
	lab_opts(&l, &o);
	o.window = 12;
	REQUIRE_OK(bk_device_open(&dev, bk_vserver_uri(srv), &o));

	/* Read more than there is: the short answer ends the data. */
	bk_device_xfer_opts xo = BK_DEVICE_XFER_OPTS_INIT;
	xo.id = "blob";
	CHECK_OK(bk_device_read_range(dev, BK_DEVICE_BACKUP_READ, 0, BLOB_LEN + 1000, sink, &ss,
	                              &xo, &done));
	CHECK_EQ(done, BLOB_LEN);
	CHECK_EQ(ss.bad, 0);
	int same = 1;
	for (size_t i = 0; i < BLOB_LEN; i++)
		if (ss.buf[i] != blob_byte(i)) {
			same = 0;
			break;
		}
	CHECK(same);
	/* A middle range with small chunks. */
	memset(ss.buf, 0, ss.cap);
	ss.base = 1000;
	xo.chunk = 1000;
	CHECK_OK(
	    bk_device_read_range(dev, BK_DEVICE_BACKUP_READ, 1000, 50000, sink, &ss, &xo, &done));
	CHECK_EQ(done, 50000);
	CHECK(ss.buf[0] == blob_byte(1000) && ss.buf[49999] == blob_byte(50999));

	/* Writes. */
	xo.chunk = 0;
	CHECK_OK(bk_device_write_range(dev, BK_DEVICE_RESTORE_WRITE, 0, BLOB_LEN, source, NULL, &xo,
	                               &done));
	CHECK_EQ(done, BLOB_LEN);
	same = 1;
	for (size_t i = 0; i < BLOB_LEN; i++)
		if (wb.data[i] != (uint8_t)(blob_byte(i) ^ 0x5a)) {
			same = 0;
			break;
		}
	CHECK(same);
	/* A write the unit refuses: the transfer stops with the unit's error. */
	CHECK_EQ(bk_device_write_range(dev, BK_DEVICE_RESTORE_WRITE, BLOB_LEN - 10, 100, source,
	                               NULL, &xo, &done),
	         BK_ENOSPACE);
	CHECK(reason_is("too-large"));
	CHECK(bk_device_connected(dev));
	/* Wrong request kinds are programming errors. */
	CHECK_EQ(bk_device_write_range(dev, BK_DEVICE_INFO, 0, 10, source, NULL, NULL, &done),
	         BK_EINVALID);
	CHECK_EQ(bk_device_read_range(dev, BK_DEVICE_RESTORE_WRITE, 0, 10, sink, &ss, NULL, &done),
	         BK_EINVALID);
	CHECK_OK(bk_device_ping(dev, NULL, 0));
	bk_device_free(dev);
	bk_vserver_free(srv);
	bk_vunit_free(u);
	free(wb.data);
	free(ss.buf);
}

/* Windowing pays off: with a rate-limited unit answering in turn, a window
 * of requests keeps the link busy. Checked indirectly: many requests and
 * the right bytes; and the window bound is respected. */
static void test_window_limits(void)
{
	lab l;
	bk_device_opts o;
	bk_device *dev = NULL;
	REQUIRE_OK(lab_init(&l));
	lab_opts(&l, &o);
	o.window = 65;
	CHECK_EQ(bk_device_open(&dev, "tcp:127.0.0.1:1", &o), BK_EUSER);
	CHECK(reason_is("bad-window"));
	o.window = 0;
	CHECK_EQ(bk_device_open(&dev, "tcp:", &o), BK_EUSER);
	CHECK_EQ(bk_device_open(&dev, "tcp:127.0.0.1:1", &o), BK_EDISCONNECTED);
	CHECK(reason_is("connection-refused"));
	o.terminal_key = NULL;
	CHECK_EQ(bk_device_open(&dev, "tcp:127.0.0.1:1", &o), BK_EUSER);
	CHECK(dev == NULL);
}

/* --- Handshake refusals ---------------------------------------------------------------- */

/* What both sides of an in-process session said. */
typedef struct outcome {
	int rc, unit_rc;
	char reason[64], unit_reason[64], message[512];
} outcome;

/* Opens a session to unit folder `dir` in process, with options `o`. */
static void open_inproc(const char *dir, const bk_device_opts *o, outcome *out)
{
	bk_vunit *u = NULL;
	bk_device *dev = NULL;
	bk_stream *end = NULL;
	inproc ip;
	memset(out, 0, sizeof(*out));
	out->rc = bk_vunit_open(&u, dir);
	if (out->rc == 0)
		out->rc = inproc_start(&ip, u, &end);
	if (out->rc == 0) {
		out->rc = bk_device_open_stream(&dev, end, o);
		snprintf(out->reason, sizeof(out->reason), "%s", bk_error_last()->reason);
		snprintf(out->message, sizeof(out->message), "%s", bk_error_last()->message);
		bk_device_free(dev);
		out->unit_rc = inproc_join(&ip);
		snprintf(out->unit_reason, sizeof(out->unit_reason), "%s", ip.reason);
	}
	bk_vunit_free(u);
}

static void replace_unit_cert(const lab *l, const char *dir, const char *ca, bk_cert_role role,
                              const char *subject, bool other_key, int64_t nb, int64_t na)
{
	char path[700];
	bk_keyfile *keys = NULL, *other = NULL;
	bk_cert *cert = NULL;
	snprintf(path, sizeof(path), "%s/%s", dir, BK_VUNIT_KEYS);
	REQUIRE_OK(bk_keyfile_read(&keys, path));
	if (other_key)
		REQUIRE_OK(bk_keyfile_generate(&other, 1));
	REQUIRE_OK(lab_issue(&cert, l, ca, role, subject, other ? other : keys, nb, na));
	snprintf(path, sizeof(path), "%s/%s", dir, BK_VUNIT_CERT);
	CHECK_OK(bk_cert_write(path, cert));
	bk_cert_free(cert);
	bk_keyfile_free(keys);
	bk_keyfile_free(other);
}

static void test_refusals_of_the_unit(void)
{
	static const struct {
		const char *ca;
		bk_cert_role role;
		const char *subject;
		bool other_key;
		int64_t nb, na;
		const char *serial;
		const char *reason;
	} cases[] = {
	    {"service-ca.key", BK_CERT_ROLE_UNIT, "AIBO-R1", false, -DAY, DAY, NULL, "unknown-ca"},
	    {"factory-ca.key", BK_CERT_ROLE_TERMINAL, "AIBO-R1", false, -DAY, DAY, NULL,
	     "wrong-role"},
	    {"factory-ca.key", BK_CERT_ROLE_UNIT, "AIBO-R1", false, -2 * DAY, -DAY, NULL,
	     "expired"},
	    {"factory-ca.key", BK_CERT_ROLE_UNIT, "AIBO-R1", false, DAY, 2 * DAY, NULL,
	     "not-yet-valid"},
	    {"factory-ca.key", BK_CERT_ROLE_UNIT, "AIBO-R1", true, -DAY, DAY, NULL, "key-mismatch"},
	    {"factory-ca.key", BK_CERT_ROLE_UNIT, "AIBO-R1", false, -DAY, DAY, "AIBO-OTHER",
	     "serial-mismatch"},
	    {"factory-ca.key", BK_CERT_ROLE_UNIT, "AIBO-R1", false, -DAY, DAY, "AIBO-R1", NULL},
	};
	lab l;
	char dir[600];
	bk_device_opts o;
	outcome oc;
	REQUIRE_OK(lab_init(&l));
	REQUIRE_OK(lab_unit(&l, "u1", "AIBO-R1", dir, sizeof(dir)));
	for (size_t i = 0; i < BK_ARRAY_LEN(cases); i++) {
		replace_unit_cert(&l, dir, cases[i].ca, cases[i].role, cases[i].subject,
		                  cases[i].other_key, NOW + cases[i].nb, NOW + cases[i].na);
		lab_opts(&l, &o);
		o.serial = cases[i].serial;
		open_inproc(dir, &o, &oc);
		if (cases[i].reason == NULL) {
			CHECK_EQ(oc.rc, 0);
			continue;
		}
		CHECK_EQ(oc.rc, BK_EAUTH);
		if (strcmp(oc.reason, cases[i].reason) != 0) {
			fprintf(stderr, "  case %zu: reason '%s', wanted '%s'\n", i, oc.reason,
			        cases[i].reason);
			bk_test_failures++;
		}
		/* The message names the cause for a person too. */
		CHECK(strstr(oc.message, "handshake refused") != NULL);
		/* The unit saw the terminal hang up. */
		CHECK(oc.unit_rc == BK_EDISCONNECTED || oc.unit_rc == 0);
	}
}

static void test_refusals_of_the_terminal(void)
{
	static const struct {
		const char *ca;
		bk_cert_role role;
		int64_t nb, na;
		bool other_key;
		bool no_cert;
		const char *reason;
	} cases[] = {
	    {"factory-ca.key", BK_CERT_ROLE_TERMINAL, -DAY, DAY, false, false, "unknown-ca"},
	    {"service-ca.key", BK_CERT_ROLE_UNIT, -DAY, DAY, false, false, "wrong-role"},
	    {"service-ca.key", BK_CERT_ROLE_TERMINAL, -2 * DAY, -DAY, false, false, "expired"},
	    {"service-ca.key", BK_CERT_ROLE_TERMINAL, DAY, 2 * DAY, false, false, "not-yet-valid"},
	    {"service-ca.key", BK_CERT_ROLE_TERMINAL, -DAY, DAY, true, false, "key-mismatch"},
	    {"service-ca.key", BK_CERT_ROLE_TERMINAL, -DAY, DAY, false, true, "no-certificate"},
	    {"service-ca.key", BK_CERT_ROLE_TERMINAL, -DAY, DAY, false, false, NULL},
	};
	lab l;
	char dir[600], key[600], cert[600], name[32];
	bk_device_opts o;
	outcome oc;
	REQUIRE_OK(lab_init(&l));
	REQUIRE_OK(lab_unit(&l, "u1", "AIBO-R2", dir, sizeof(dir)));
	for (size_t i = 0; i < BK_ARRAY_LEN(cases); i++) {
		snprintf(name, sizeof(name), "term%zu", i);
		REQUIRE_OK(lab_terminal(&l, name, cases[i].ca, cases[i].role, NOW + cases[i].nb,
		                        NOW + cases[i].na, cases[i].other_key, key, cert,
		                        sizeof(key)));
		lab_opts(&l, &o);
		o.terminal_key = key;
		o.terminal_cert = cases[i].no_cert ? NULL : cert;
		open_inproc(dir, &o, &oc);
		if (cases[i].reason == NULL) {
			CHECK_EQ(oc.rc, 0);
			CHECK_EQ(oc.unit_rc, 0);
			continue;
		}
		/* Both sides: BK_EAUTH naming the cause. */
		CHECK_EQ(oc.rc, BK_EAUTH);
		CHECK_EQ(oc.unit_rc, BK_EAUTH);
		if (strcmp(oc.unit_reason, cases[i].reason) != 0 ||
		    strcmp(oc.reason, cases[i].reason) != 0) {
			fprintf(stderr, "  case %zu: unit '%s', terminal '%s', wanted '%s'\n", i,
			        oc.unit_reason, oc.reason, cases[i].reason);
			bk_test_failures++;
		}
	}
}

/* A raw unit that speaks the first half of the handshake by hand. */
typedef struct raw_unit {
	bk_stream *s;
	int mode; /* 0: garbage as message 2; 1: garbage certificate */
} raw_unit;

static void *raw_unit_main(void *arg)
{
	raw_unit *r = arg;
	uint8_t buf[BK_FRAME_MAX], payload[4096];
	size_t n = 0, pl = 0;
	bk_noise_handshake *hs = NULL;
	uint8_t pub[32], sec[32];
	if (bk_frame_read(r->s, buf, sizeof(buf), &n, bk_deadline_in(5000)) != 0)
		goto done;
	if (r->mode == 0) {
		randombytes_buf(buf, 200);
		(void)bk_frame_write(r->s, buf, 200, bk_deadline_in(5000));
	} else {
		bk_noise_keygen(pub, sec);
		if (bk_noise_handshake_new(&hs, BK_CHANNEL_PROTOCOL, false,
		                           (const uint8_t *)BK_CHANNEL_PROLOGUE,
		                           strlen(BK_CHANNEL_PROLOGUE)) != 0 ||
		    bk_noise_handshake_set_local_static(hs, sec) != 0 ||
		    bk_noise_handshake_read_message(hs, buf, n, payload, sizeof(payload), &pl) != 0)
			goto done;
		memcpy(payload, "aibo-cert/1\0garbage garbage garbage", 35);
		if (bk_noise_handshake_write_message(hs, payload, 35, buf, sizeof(buf), &n) == 0)
			(void)bk_frame_write(r->s, buf, n, bk_deadline_in(5000));
	}
	/* Wait for the terminal to hang up. */
	(void)bk_frame_read(r->s, buf, sizeof(buf), &n, bk_deadline_in(5000));
done:
	bk_noise_handshake_free(hs);
	sodium_memzero(sec, sizeof(sec));
	return NULL;
}

static void test_refusal_garbage(void)
{
	lab l;
	bk_device_opts o;
	REQUIRE_OK(lab_init(&l));
	lab_opts(&l, &o);
	for (int mode = 0; mode < 2; mode++) {
		bk_stream *a = NULL;
		raw_unit r = {NULL, mode};
		pthread_t t;
		bk_device *dev = NULL;
		REQUIRE_OK(bk_transport_pair_new(&a, &r.s));
		REQUIRE(pthread_create(&t, NULL, raw_unit_main, &r) == 0);
		CHECK_EQ(bk_device_open_stream(&dev, a, &o), BK_EAUTH);
		CHECK(reason_is(mode == 0 ? "bad-handshake" : "bad-certificate"));
		CHECK(strstr(bk_error_last()->message, "garbage") != NULL ||
		      strstr(bk_error_last()->message, "not a valid Noise") != NULL);
		pthread_join(t, NULL);
		bk_stream_free(r.s);
	}
}

/* The unit refuses every command before the handshake completed. */
static void test_no_command_before_handshake(void)
{
	lab l;
	char dir[600];
	bk_vunit *u = NULL;
	uint8_t msg[256], buf[BK_FRAME_MAX];
	size_t n = 0;
	REQUIRE_OK(lab_init(&l));
	REQUIRE_OK(lab_unit(&l, "u1", "AIBO-H1", dir, sizeof(dir)));
	REQUIRE_OK(bk_vunit_open(&u, dir));
	bk_proto_msg info = {.type = BK_MSG_INFO, .id = 1};
	REQUIRE_OK(bk_proto_msg_encode(msg, sizeof(msg), &n, &info));

	/* 1. A command in the clear as the first frame. */
	{
		bk_stream *end = NULL;
		inproc ip;
		size_t got = 0;
		REQUIRE_OK(inproc_start(&ip, u, &end));
		CHECK_OK(bk_frame_write(end, msg, n, bk_deadline_in(2000)));
		CHECK_EQ(bk_frame_read(end, buf, sizeof(buf), &got, bk_deadline_in(5000)),
		         BK_EDISCONNECTED);
		CHECK_EQ(inproc_join(&ip), BK_EAUTH);
		CHECK_STR(ip.reason, "bad-handshake");
		bk_stream_free(end);
	}
	/* 2. A long command padded to look like message 1 carries a payload. */
	{
		bk_stream *end = NULL;
		inproc ip;
		size_t got = 0;
		uint8_t big[100];
		memset(big, 0, sizeof(big));
		memcpy(big, msg, n);
		REQUIRE_OK(inproc_start(&ip, u, &end));
		CHECK_OK(bk_frame_write(end, big, sizeof(big), bk_deadline_in(2000)));
		/* The unit does not answer with message 2 nor anything else. */
		CHECK_EQ(bk_frame_read(end, buf, sizeof(buf), &got, bk_deadline_in(5000)),
		         BK_EDISCONNECTED);
		CHECK_EQ(inproc_join(&ip), BK_EAUTH);
		CHECK_STR(ip.reason, "bad-handshake");
		bk_stream_free(end);
	}
	/* 3. A valid message 1, then a command in the clear instead of message 3. */
	{
		bk_stream *end = NULL;
		inproc ip;
		bk_noise_handshake *hs = NULL;
		uint8_t pub[32], sec[32], pl[4096];
		size_t got = 0, pln = 0;
		REQUIRE_OK(inproc_start(&ip, u, &end));
		bk_noise_keygen(pub, sec);
		REQUIRE_OK(bk_noise_handshake_new(&hs, BK_CHANNEL_PROTOCOL, true,
		                                  (const uint8_t *)BK_CHANNEL_PROLOGUE,
		                                  strlen(BK_CHANNEL_PROLOGUE)));
		REQUIRE_OK(bk_noise_handshake_set_local_static(hs, sec));
		REQUIRE_OK(bk_noise_handshake_write_message(hs, NULL, 0, buf, sizeof(buf), &got));
		CHECK_OK(bk_frame_write(end, buf, got, bk_deadline_in(2000)));
		CHECK_OK(bk_frame_read(end, buf, sizeof(buf), &got, bk_deadline_in(5000)));
		CHECK_OK(bk_noise_handshake_read_message(hs, buf, got, pl, sizeof(pl), &pln));
		CHECK(pln > 0); /* the unit's certificate */
		CHECK_OK(bk_frame_write(end, msg, n, bk_deadline_in(2000)));
		CHECK_EQ(bk_frame_read(end, buf, sizeof(buf), &got, bk_deadline_in(5000)),
		         BK_EDISCONNECTED);
		CHECK_EQ(inproc_join(&ip), BK_EAUTH);
		CHECK_STR(ip.reason, "bad-handshake");
		bk_noise_handshake_free(hs);
		bk_stream_free(end);
		sodium_memzero(sec, sizeof(sec));
	}
	/* 4. After the handshake, HELLO comes first. */
	{
		bk_stream *end = NULL;
		inproc ip;
		bk_channel *ch = NULL;
		bk_keyfile *keys = NULL;
		bk_cert *cert = NULL;
		bk_minisign_pubkey ca;
		bk_channel_cfg cfg;
		bk_proto_msg ans;
		REQUIRE_OK(bk_keyfile_read(&keys, l.terminal_key));
		REQUIRE_OK(bk_cert_read(&cert, l.terminal_cert));
		REQUIRE_OK(bk_minisign_pubkey_read(&ca, l.factory_ca));
		memset(&cfg, 0, sizeof(cfg));
		cfg.noise_secret = bk_keyfile_noise_secret(keys);
		cfg.cert = cert;
		cfg.cas = &ca;
		cfg.ncas = 1;
		REQUIRE_OK(inproc_start(&ip, u, &end));
		CHECK_OK(bk_channel_connect(&ch, end, 1, &cfg, bk_deadline_in(5000)));
		CHECK_OK(bk_channel_send(ch, &info, bk_deadline_in(2000)));
		CHECK_OK(bk_channel_recv(ch, &ans, bk_deadline_in(5000)));
		CHECK_EQ(ans.type, BK_MSG_ERROR);
		CHECK_EQ(ans.id, 1);
		CHECK_EQ(bk_proto_error_decode(ans.json), BK_EINVALID);
		CHECK(reason_is("hello-required"));
		bk_proto_msg_clear(&ans);
		bk_channel_free(ch);
		CHECK_OK(inproc_join(&ip));
		bk_cert_free(cert);
		bk_keyfile_free(keys);
	}
	bk_vunit_free(u);
}

/* --- Faults ---------------------------------------------------------------------------- */

typedef struct served {
	lab l;
	char dir[600];
	bk_vunit *u;
	bk_vserver *srv;
	bk_device_opts o;
	blob rb;
} served;

static int serve_with(served *s, const char *serial, const char *const *faults)
{
	static unsigned n;
	char name[32];
	int rc = lab_init(&s->l);
	snprintf(name, sizeof(name), "unit%u", ++n);
	if (rc == 0)
		rc = lab_unit(&s->l, name, serial, s->dir, sizeof(s->dir));
	if (rc == 0)
		rc = bk_vunit_open(&s->u, s->dir);
	for (size_t i = 0; rc == 0 && faults && faults[i]; i++)
		rc = bk_vunit_fault_add(s->u, faults[i]);
	s->rb.len = BLOB_LEN;
	if (rc == 0)
		rc = bk_vunit_set_handler(s->u, BK_MSG_BACKUP_READ, h_read, &s->rb);
	if (rc == 0)
		rc = bk_vserver_new(&s->srv, s->u, "tcp:127.0.0.1:0", false);
	if (rc == 0)
		rc = bk_vserver_start(s->srv);
	lab_opts(&s->l, &s->o);
	return rc;
}

static void served_free(served *s)
{
	bk_vserver_free(s->srv);
	bk_vunit_free(s->u);
}

static void test_fault_specs(void)
{
	static const char *const good[] = {
	    "disconnect-after=4096",
	    "disconnect-after=1M,repeat",
	    "stall=3",
	    "corrupt-frame=2",
	    "rate=100K",
	    "battery=15",
	    "busy",
	    "refuse-handshake",
	    "power-loss=info",
	    "power-loss=restore-write:50",
	};
	static const char *const bad[] = {
	    "",
	    "stall",
	    "stall=0",
	    "stall=x",
	    "battery=101",
	    "busy=1",
	    "rate=0",
	    "nope=1",
	    "power-loss=",
	    "power-loss=Info",
	    "power-loss=info:101",
	    "stall=1,again",
	};
	lab l;
	char dir[600];
	bk_vunit *u = NULL;
	REQUIRE_OK(lab_init(&l));
	REQUIRE_OK(lab_unit(&l, "u1", "AIBO-F0", dir, sizeof(dir)));
	REQUIRE_OK(bk_vunit_open(&u, dir));
	for (size_t i = 0; i < BK_ARRAY_LEN(good); i++)
		CHECK_OK(bk_vunit_fault_add(u, good[i]));
	for (size_t i = 0; i < BK_ARRAY_LEN(bad); i++) {
		CHECK_EQ(bk_vunit_fault_add(u, bad[i]), BK_EUSER);
		CHECK(reason_is("bad-fault"));
	}
	bk_vunit_free(u);
}

static void test_fault_disconnect(void)
{
	/* During the handshake, right after it (HELLO), and during a transfer. */
	static const char *const specs[] = {"disconnect-after=60", "disconnect-after=700",
	                                    "disconnect-after=300000"};
	for (size_t i = 0; i < BK_ARRAY_LEN(specs); i++) {
		served s = {0};
		const char *faults[] = {specs[i], NULL};
		bk_device *dev = NULL;
		REQUIRE_OK(serve_with(&s, "AIBO-F1", faults));
		int rc = bk_device_open(&dev, bk_vserver_uri(s.srv), &s.o);
		if (i < 2) {
			CHECK_EQ(rc, BK_EDISCONNECTED);
			CHECK(dev == NULL);
			/* The fault fired once: the next session works. */
			CHECK_OK(bk_device_open(&dev, bk_vserver_uri(s.srv), &s.o));
			CHECK_OK(bk_device_ping(dev, NULL, 0));
		} else {
			sink_state ss = {0};
			uint64_t done = 0, more = 0;
			ss.buf = calloc(1, BLOB_LEN);
			ss.cap = BLOB_LEN;
			REQUIRE_OK(rc);
			rc = bk_device_read_range(dev, BK_DEVICE_BACKUP_READ, 0, BLOB_LEN, sink,
			                          &ss, NULL, &done);
			CHECK_EQ(rc, BK_EDISCONNECTED);
			/* What arrived before the cut depends on the kernel (a reset may
			 * drop received bytes); never more than what crossed the cut. */
			CHECK(done < 300000);
			CHECK(!bk_device_connected(dev));
			CHECK_EQ(bk_device_ping(dev, NULL, 0), BK_EDISCONNECTED);
			/* Resume where it stopped. */
			CHECK_OK(bk_device_reconnect(dev));
			CHECK_OK(bk_device_read_range(dev, BK_DEVICE_BACKUP_READ, done,
			                              BLOB_LEN - done, sink, &ss, NULL, &more));
			CHECK_EQ(done + more, BLOB_LEN);
			int same = 1;
			for (size_t k = 0; k < BLOB_LEN; k++)
				if (ss.buf[k] != blob_byte(k)) {
					same = 0;
					break;
				}
			CHECK(same);
			free(ss.buf);
		}
		bk_device_free(dev);
		served_free(&s);
	}
}

static void test_fault_stall(void)
{
	served s = {0};
	const char *faults[] = {"stall=2", NULL};
	bk_device *dev = NULL;
	REQUIRE_OK(serve_with(&s, "AIBO-F2", faults));
	REQUIRE_OK(bk_device_open(&dev, bk_vserver_uri(s.srv), &s.o));
	CHECK_OK(bk_device_ping(dev, NULL, 0));
	int64_t t0 = bk_now_ms();
	CHECK_EQ(bk_device_ping(dev, NULL, bk_deadline_in(300)), BK_ETIMEOUT);
	int64_t took = bk_now_ms() - t0;
	CHECK(took >= 250 && took < 3000);
	/* The session stays usable; the late answer never comes. */
	CHECK(bk_device_connected(dev));
	check_info(dev, s.dir, "AIBO-F2");
	/* A stalled transfer keeps its per-request deadline too. */
	bk_device_free(dev);
	dev = NULL;
	REQUIRE_OK(bk_vunit_fault_add(s.u, "stall=3"));
	REQUIRE_OK(bk_device_open(&dev, bk_vserver_uri(s.srv), &s.o));
	sink_state ss = {0};
	uint64_t done = 0;
	ss.buf = calloc(1, BLOB_LEN);
	ss.cap = BLOB_LEN;
	bk_device_xfer_opts xo = BK_DEVICE_XFER_OPTS_INIT;
	xo.request_timeout_ms = 300;
	t0 = bk_now_ms();
	CHECK_EQ(
	    bk_device_read_range(dev, BK_DEVICE_BACKUP_READ, 0, BLOB_LEN, sink, &ss, &xo, &done),
	    BK_ETIMEOUT);
	CHECK(bk_now_ms() - t0 < 3000);
	CHECK_EQ(done, 2 * BK_PROTO_DATA_MAX); /* the two answered before the stalled one */
	free(ss.buf);
	bk_device_free(dev);
	served_free(&s);
}

static void test_fault_corrupt_frame(void)
{
	served s = {0};
	const char *faults[] = {"corrupt-frame=3", "corrupt-frame=1", NULL};
	bk_device *dev = NULL;
	REQUIRE_OK(serve_with(&s, "AIBO-F3", faults));
	REQUIRE_OK(bk_device_open(&dev, bk_vserver_uri(s.srv), &s.o));
	/* Frame 1 is message 2, frame 2 the HELLO answer, frame 3 the PING answer. */
	CHECK_EQ(bk_device_ping(dev, NULL, 0), BK_EDISCONNECTED);
	CHECK(reason_is("frame-auth"));
	CHECK(!bk_device_connected(dev));
	CHECK_EQ(bk_device_ping(dev, NULL, 0), BK_EDISCONNECTED);
	CHECK(reason_is("not-connected"));
	/* The next session gets its message 2 corrupted: the handshake fails. */
	CHECK_EQ(bk_device_reconnect(dev), BK_EAUTH);
	CHECK(reason_is("bad-handshake"));
	/* Then all is well. */
	CHECK_OK(bk_device_reconnect(dev));
	CHECK_OK(bk_device_ping(dev, NULL, 0));
	bk_device_free(dev);
	served_free(&s);
}

static void test_fault_misc(void)
{
	served s = {0};
	const char *faults[] = {"battery=15", "rate=200K", NULL};
	bk_device *dev = NULL;
	bk_device_info *info = NULL;
	REQUIRE_OK(serve_with(&s, "AIBO-F4", faults));
	/* The rate limit runs from the session's first byte, so the bound is
	 * on the whole session: at least 150 KB at 200 KiB/s. */
	int64_t t0 = bk_now_ms();
	REQUIRE_OK(bk_device_open(&dev, bk_vserver_uri(s.srv), &s.o));
	REQUIRE_OK(bk_device_info_get(dev, &info, 0));
	CHECK_EQ(info->battery, 15);
	bk_device_info_free(info);
	sink_state ss = {0};
	uint64_t done = 0;
	ss.buf = calloc(1, 150000);
	ss.cap = 150000;
	CHECK_OK(
	    bk_device_read_range(dev, BK_DEVICE_BACKUP_READ, 0, 150000, sink, &ss, NULL, &done));
	int64_t took = bk_now_ms() - t0;
	CHECK_EQ(done, 150000);
	/* 150 KB at 200 KB/s, less the last tenth-of-a-second piece the limiter
	 * sends without waiting: 0.65 s at the least. */
	CHECK(took >= 550);
	free(ss.buf);
	bk_device_free(dev);
	served_free(&s);

	/* refuse-handshake and busy faults. */
	const char *f2[] = {"refuse-handshake", NULL};
	memset(&s, 0, sizeof(s));
	REQUIRE_OK(serve_with(&s, "AIBO-F5", f2));
	CHECK_EQ(bk_device_open(&dev, bk_vserver_uri(s.srv), &s.o), BK_EAUTH);
	CHECK(reason_is("handshake-refused"));
	bk_vunit_faults_clear(s.u);
	CHECK_OK(bk_vunit_fault_add(s.u, "busy"));
	CHECK_EQ(bk_device_open(&dev, bk_vserver_uri(s.srv), &s.o), BK_EBUSY);
	CHECK(reason_is("busy"));
	bk_vunit_faults_clear(s.u);
	CHECK_OK(bk_device_open(&dev, bk_vserver_uri(s.srv), &s.o));
	bk_device_free(dev);
	served_free(&s);
}

static void test_fault_power_loss(void)
{
	served s = {0};
	const char *faults[] = {"power-loss=info", NULL};
	bk_device *dev = NULL;
	bk_device_info *info = NULL;
	REQUIRE_OK(serve_with(&s, "AIBO-F6", faults));
	REQUIRE_OK(bk_device_open(&dev, bk_vserver_uri(s.srv), &s.o));
	CHECK_OK(bk_device_ping(dev, NULL, 0));
	CHECK_EQ(bk_device_info_get(dev, &info, 0), BK_EDISCONNECTED);
	CHECK(info == NULL);
	/* The server stops by itself, reporting the step. */
	for (int i = 0; i < 100 && !bk_vunit_dead(s.u); i++)
		usleep(20000);
	CHECK(bk_vunit_dead(s.u));
	CHECK_STR(bk_vunit_death_step(s.u), "info");
	CHECK_EQ(bk_vserver_stop(s.srv), BK_EDISCONNECTED);
	CHECK(reason_is("power-loss"));
	bk_device_free(dev);
	bk_vserver_free(s.srv);
	s.srv = NULL;
	/* Power cycle: the unit comes back, volatile data is gone. */
	char vpath[700];
	snprintf(vpath, sizeof(vpath), "%s/volatile/partial", s.dir);
	CHECK_OK(bk_file_write_atomic(vpath, "x", 1, 0600, 0));
	bk_vunit_free(s.u);
	s.u = NULL;
	REQUIRE_OK(bk_vunit_open(&s.u, s.dir));
	struct stat st;
	CHECK(stat(vpath, &st) != 0);
	CHECK(!bk_vunit_dead(s.u));
	REQUIRE_OK(bk_vserver_new(&s.srv, s.u, "tcp:127.0.0.1:0", false));
	REQUIRE_OK(bk_vserver_start(s.srv));
	dev = NULL;
	CHECK_OK(bk_device_open(&dev, bk_vserver_uri(s.srv), &s.o));
	if (dev)
		check_info(dev, s.dir, "AIBO-F6");
	bk_device_free(dev);
	served_free(&s);
}

/* A unit restarted under the same address: the old session is gone, a
 * reconnect reaches the new one. */
static void test_restarted_unit(void)
{
	lab l;
	char dir[600], uri[600];
	bk_vunit *u = NULL;
	bk_vserver *srv = NULL;
	bk_device *dev = NULL;
	bk_device_opts o;
	REQUIRE_OK(lab_init(&l));
	REQUIRE_OK(lab_unit(&l, "u1", "AIBO-S1", dir, sizeof(dir)));
	snprintf(uri, sizeof(uri), "unix:%s", bk_test_path("r.sock"));
	REQUIRE_OK(bk_vunit_open(&u, dir));
	REQUIRE_OK(bk_vserver_new(&srv, u, uri, false));
	REQUIRE_OK(bk_vserver_start(srv));
	lab_opts(&l, &o);
	REQUIRE_OK(bk_device_open(&dev, uri, &o));
	CHECK_OK(bk_device_ping(dev, NULL, 0));
	bk_vserver_free(srv);
	bk_vunit_free(u);
	CHECK_EQ(bk_device_ping(dev, NULL, bk_deadline_in(2000)), BK_EDISCONNECTED);
	CHECK_EQ(bk_device_reconnect(dev), BK_ENOTFOUND); /* nothing there now */
	REQUIRE_OK(bk_vunit_open(&u, dir));
	REQUIRE_OK(bk_vserver_new(&srv, u, uri, false));
	REQUIRE_OK(bk_vserver_start(srv));
	CHECK_OK(bk_device_reconnect(dev));
	CHECK_OK(bk_device_ping(dev, NULL, 0));
	bk_device_free(dev);
	bk_vserver_free(srv);
	bk_vunit_free(u);
}

static void test_busy_unit(void)
{
	served s = {0};
	bk_device *a = NULL, *b = NULL;
	REQUIRE_OK(serve_with(&s, "AIBO-B1", NULL));
	REQUIRE_OK(bk_device_open(&a, bk_vserver_uri(s.srv), &s.o));
	CHECK_EQ(bk_device_open(&b, bk_vserver_uri(s.srv), &s.o), BK_EBUSY);
	CHECK(reason_is("busy"));
	CHECK(strstr(bk_error_last()->message, "busy") != NULL);
	CHECK_OK(bk_device_ping(a, NULL, 0));
	bk_device_free(a);
	/* Once the first terminal left, the unit is free again. */
	int rc = BK_EBUSY;
	for (int i = 0; i < 50 && rc == BK_EBUSY; i++) {
		rc = bk_device_open(&b, bk_vserver_uri(s.srv), &s.o);
		if (rc == BK_EBUSY)
			usleep(20000);
	}
	CHECK_EQ(rc, 0);
	bk_device_free(b);
	served_free(&s);
}

/* Separate handles in separate threads. */
typedef struct worker {
	const char *uri;
	bk_device_opts o;
	const char *serial;
	int failures;
} worker;

static void *worker_main(void *arg)
{
	worker *w = arg;
	for (int i = 0; i < 5; i++) {
		bk_device *dev = NULL;
		bk_device_info *info = NULL;
		if (bk_device_open(&dev, w->uri, &w->o) != 0 ||
		    bk_device_info_get(dev, &info, 0) != 0 || strcmp(info->serial, w->serial) != 0)
			w->failures++;
		bk_device_info_free(info);
		bk_device_free(dev);
	}
	return NULL;
}

static void test_threads(void)
{
	lab l;
	char d1[600], d2[600];
	bk_vunit *u1 = NULL, *u2 = NULL;
	bk_vserver *s1 = NULL, *s2 = NULL;
	pthread_t t1, t2;
	REQUIRE_OK(lab_init(&l));
	REQUIRE_OK(lab_unit(&l, "u1", "AIBO-M1", d1, sizeof(d1)));
	REQUIRE_OK(lab_unit(&l, "u2", "AIBO-M2", d2, sizeof(d2)));
	REQUIRE_OK(bk_vunit_open(&u1, d1));
	REQUIRE_OK(bk_vunit_open(&u2, d2));
	REQUIRE_OK(bk_vserver_new(&s1, u1, "tcp:127.0.0.1:0", false));
	REQUIRE_OK(bk_vserver_new(&s2, u2, "tcp:127.0.0.1:0", false));
	REQUIRE_OK(bk_vserver_start(s1));
	REQUIRE_OK(bk_vserver_start(s2));
	worker w1 = {bk_vserver_uri(s1), {0}, "AIBO-M1", 0};
	worker w2 = {bk_vserver_uri(s2), {0}, "AIBO-M2", 0};
	lab_opts(&l, &w1.o);
	lab_opts(&l, &w2.o);
	REQUIRE(pthread_create(&t1, NULL, worker_main, &w1) == 0);
	REQUIRE(pthread_create(&t2, NULL, worker_main, &w2) == 0);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	CHECK_EQ(w1.failures, 0);
	CHECK_EQ(w2.failures, 0);
	bk_vserver_free(s1);
	bk_vserver_free(s2);
	bk_vunit_free(u1);
	bk_vunit_free(u2);
}

static void test_create_and_digest(void)
{
	lab l;
	char dir[600], dir2[600];
	json_t *a = NULL, *b = NULL;
	bk_vunit_create_opts o = BK_VUNIT_CREATE_OPTS_INIT;
	REQUIRE_OK(lab_init(&l));
	REQUIRE_OK(lab_unit(&l, "u1", "AIBO-C1", dir, sizeof(dir)));
	/* Same seed and size: same memory, same digests. */
	o.pki_dir = l.pki;
	o.serial = "AIBO-C2";
	o.memory_size = 64 * 1024;
	snprintf(dir2, sizeof(dir2), "%s", bk_test_path("u2"));
	REQUIRE_OK(bk_vunit_create(dir2, &o));
	REQUIRE_OK(bk_vunit_digest_json(dir, &a));
	REQUIRE_OK(bk_vunit_digest_json(dir2, &b));
	CHECK_STR(json_string_value(json_object_get(a, "serial")), "AIBO-C1");
	CHECK(json_equal(json_object_get(a, "domains"), json_object_get(b, "domains")));
	CHECK_EQ(json_object_size(json_object_get(a, "domains")), 6);
	json_decref(a);
	json_decref(b);
	/* Refusals: existing folder, bad serial, missing PKI. */
	CHECK_EQ(bk_vunit_create(dir2, &o), BK_EEXIST);
	o.serial = "1-2";
	CHECK_EQ(bk_vunit_create(bk_test_path("u3"), &o), BK_EUSER);
	o.serial = "AIBO-C3";
	o.pki_dir = bk_test_path("nowhere");
	CHECK_EQ(bk_vunit_create(bk_test_path("u3"), &o), BK_ENOTFOUND);
	/* A fresh unit has empty domains. */
	o.pki_dir = l.pki;
	o.fresh = true;
	REQUIRE_OK(bk_vunit_create(bk_test_path("u4"), &o));
	REQUIRE_OK(bk_vunit_digest_json(bk_test_path("u4"), &a));
	json_t *p = json_object_get(json_object_get(a, "domains"), "personality");
	CHECK(p && json_integer_value(json_object_get(p, "items")) == 0);
	json_decref(a);
	CHECK_EQ(bk_vunit_digest_json(bk_test_path("nowhere"), &a), BK_ENOTFOUND);
}

BK_RUN_TESTS(BK_TEST(test_commands_tcp), BK_TEST(test_commands_unix_uri),
             BK_TEST(test_commands_inproc), BK_TEST(test_windowed_transfers),
             BK_TEST(test_window_limits), BK_TEST(test_refusals_of_the_unit),
             BK_TEST(test_refusals_of_the_terminal), BK_TEST(test_refusal_garbage),
             BK_TEST(test_no_command_before_handshake), BK_TEST(test_fault_specs),
             BK_TEST(test_fault_disconnect), BK_TEST(test_fault_stall),
             BK_TEST(test_fault_corrupt_frame), BK_TEST(test_fault_misc),
             BK_TEST(test_fault_power_loss), BK_TEST(test_restarted_unit), BK_TEST(test_busy_unit),
             BK_TEST(test_threads), BK_TEST(test_create_and_digest))
