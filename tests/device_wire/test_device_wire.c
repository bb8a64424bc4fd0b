/* Device URIs, socket transports, framing, the message codec and the channel's framing. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

#include "crypto/cert.h"
#include "crypto/minisign.h"
#include "device/channel.h"
#include "device/device_internal.h"

static uint8_t pattern(size_t i)
{
	return (uint8_t)(i * 31 + (i >> 8) + 7);
}

static uint8_t *pattern_buf(size_t n)
{
	uint8_t *b = malloc(n ? n : 1);
	for (size_t i = 0; b && i < n; i++)
		b[i] = pattern(i);
	return b;
}

static bool reason_is(const char *r)
{
	return strcmp(bk_error_last()->reason, r) == 0;
}

/* --- URIs --- */

static void uri_valid(void)
{
	static const struct {
		const char *in, *canon;
		int kind;
	} cases[] = {
		{"usb:ERS1000-0001234", "usb:ERS1000-0001234", BK_URI_USB_SERIAL},
		{"usb:A", "usb:A", BK_URI_USB_SERIAL},
		{"usb:sn_1.2-x", "usb:sn_1.2-x", BK_URI_USB_SERIAL},
		{"usb:1-2", "usb:1-2", BK_URI_USB_PORT},
		{"usb:3-1.4", "usb:3-1.4", BK_URI_USB_PORT},
		{"usb:003-01.4", "usb:3-1.4", BK_URI_USB_PORT},
		{"usb:255-1.2.3.4.5.6.7", "usb:255-1.2.3.4.5.6.7", BK_URI_USB_PORT},
		{"tcp:127.0.0.1", "tcp:127.0.0.1:7450", BK_URI_TCP},
		{"tcp:127.0.0.1:9000", "tcp:127.0.0.1:9000", BK_URI_TCP},
		{"tcp:unit-7.lab:65535", "tcp:unit-7.lab:65535", BK_URI_TCP},
		{"tcp:localhost:0", "tcp:localhost:0", BK_URI_TCP},
		{"tcp:[::1]", "tcp:[::1]:7450", BK_URI_TCP},
		{"tcp:[::1]:7450", "tcp:[::1]:7450", BK_URI_TCP},
		{"tcp:[fe80::1:2]:80", "tcp:[fe80::1:2]:80", BK_URI_TCP},
		{"tcp:[::ffff:10.0.0.1]:1", "tcp:[::ffff:10.0.0.1]:1", BK_URI_TCP},
		{"unix:/run/aibo/unit.sock", "unix:/run/aibo/unit.sock", BK_URI_UNIX},
		{"unix:rel.sock", "unix:rel.sock", BK_URI_UNIX},
		{"unix:/a b:c", "unix:/a b:c", BK_URI_UNIX},
	};
	for (size_t i = 0; i < BK_ARRAY_LEN(cases); i++) {
		bk_device_uri u, again;
		char s[BK_URI_STRING_MAX], s2[BK_URI_STRING_MAX];
		REQUIRE_OK(bk_device_uri_parse(&u, cases[i].in));
		CHECK_EQ(u.kind, cases[i].kind);
		REQUIRE_OK(bk_device_uri_format(&u, s, sizeof(s)));
		CHECK_STR(s, cases[i].canon);
		/* The canonical form parses back to the same thing. */
		REQUIRE_OK(bk_device_uri_parse(&again, s));
		REQUIRE_OK(bk_device_uri_format(&again, s2, sizeof(s2)));
		CHECK_STR(s2, s);
	}
	bk_device_uri u;
	REQUIRE_OK(bk_device_uri_parse(&u, "usb:3-1.4"));
	CHECK_EQ(u.bus, 3);
	CHECK_EQ(u.port_count, 2);
	CHECK_EQ(u.ports[0], 1);
	CHECK_EQ(u.ports[1], 4);
	REQUIRE_OK(bk_device_uri_parse(&u, "tcp:[::1]:99"));
	CHECK_STR(u.host, "::1");
	CHECK_EQ(u.port, 99);
	REQUIRE_OK(bk_device_uri_parse(&u, "tcp:host"));
	CHECK_EQ(u.port, BK_DEVICE_TCP_PORT);

	/* Longest forms still fit BK_URI_STRING_MAX. */
	char host[300], in[320], s[BK_URI_STRING_MAX];
	memset(host, 'a', 63);
	host[63] = '.';
	memset(host + 64, 'b', 63);
	host[127] = '.';
	memset(host + 128, 'c', 63);
	host[191] = '.';
	memset(host + 192, 'd', 61);
	host[253] = '\0';
	snprintf(in, sizeof(in), "tcp:%s:65535", host);
	REQUIRE_OK(bk_device_uri_parse(&u, in));
	REQUIRE_OK(bk_device_uri_format(&u, s, sizeof(s)));
	CHECK_STR(s, in);
	/* Too small an output buffer. */
	CHECK_EQ(bk_device_uri_format(&u, s, 10), BK_ENOSPACE);
	bk_device_uri zero = {0};
	CHECK_EQ(bk_device_uri_format(&zero, s, sizeof(s)), BK_EINVALID);
}

static void uri_invalid(void)
{
	char long_serial[200], long_path[200], long_label[100];
	memset(long_serial, 'S', sizeof(long_serial));
	memcpy(long_serial, "usb:", 4);
	long_serial[4 + 127] = '\0';
	memset(long_path, 'p', sizeof(long_path));
	memcpy(long_path, "unix:/", 6);
	long_path[5 + 108] = '\0';
	memset(long_label, 'x', sizeof(long_label));
	memcpy(long_label, "tcp:", 4);
	long_label[4 + 64] = '\0';
	const char *bad[] = {
		"", "usb", "usb:", "tcp:", "unix:", "http://unit", "TCP:host", "usb:0-1",
		"usb:1-0", "usb:256-1", "usb:1-256", "usb:1-1.2.3.4.5.6.7.8", "usb:1-2.",
		"usb:has space", "usb:1-2-3", "usb:1--2", "usb:1-.2", "usb:1-99999", "usb:a/b",
		"usb:é", long_serial, "tcp:host:", "tcp::7450",
		"tcp:host:65536", "tcp:host:12a", "tcp:host:-1", "tcp:host:123456", "tcp:::1",
		"tcp:fe80::1:7450", "tcp:[::1", "tcp:[::1]x", "tcp:[::1]:", "tcp:[zz]:1",
		"tcp:[]:1", "tcp:-bad", "tcp:bad-", "tcp:a..b", "tcp:.a", "tcp:a_b",
		"tcp:a b", long_label, long_path, "unix:a\nb", " tcp:host", "tcp:host ",
	};
	for (size_t i = 0; i < BK_ARRAY_LEN(bad); i++) {
		bk_device_uri u;
		memset(&u, 0xAA, sizeof(u));
		int rc = bk_device_uri_parse(&u, bad[i]);
		if (rc != BK_EUSER)
			fprintf(stderr, "  accepted or wrong code for \"%s\": %d\n", bad[i], rc);
		CHECK_EQ(rc, BK_EUSER);
		CHECK(reason_is("bad-device-uri"));
		/* The message names the URI (up to its first 200 bytes). */
		char head[40];
		snprintf(head, sizeof(head), "%.30s", bad[i]);
		CHECK(strstr(bk_error_last()->message, head) != NULL);
		CHECK_EQ(u.kind, 0);
	}
	CHECK_EQ(bk_device_uri_parse(NULL, "tcp:x"), BK_EINVALID);
}

/* --- Transports --- */

typedef struct server_job {
	bk_listener *l;
	size_t size; /* bytes to receive, check, then send back */
	int rc;
	int content_ok;
	/* peer-close test: bytes of a frame to send before closing */
	const uint8_t *partial;
	size_t partial_len;
} server_job;

static void *echo_server(void *arg)
{
	server_job *j = arg;
	bk_stream *s = NULL;
	uint8_t *buf = NULL;
	j->rc = bk_listener_accept(j->l, &s, bk_deadline_in(10000));
	if (j->rc)
		goto done;
	buf = malloc(j->size ? j->size : 1);
	j->rc = bk_stream_read_full(s, buf, j->size, bk_deadline_in(20000));
	if (j->rc)
		goto done;
	j->content_ok = 1;
	for (size_t i = 0; i < j->size; i++)
		if (buf[i] != pattern(i))
			j->content_ok = 0;
	j->rc = bk_stream_write(s, buf, j->size, bk_deadline_in(20000));
	if (j->rc)
		goto done;
	/* Then frames: echo until the client hangs up. */
	for (;;) {
		size_t n;
		int rc = bk_frame_read(s, buf, j->size, &n, bk_deadline_in(20000));
		if (rc == BK_EDISCONNECTED && reason_is("closed"))
			break;
		if (rc) {
			j->rc = rc;
			goto done;
		}
		j->rc = bk_frame_write(s, buf, n, bk_deadline_in(20000));
		if (j->rc)
			goto done;
	}
done:
	free(buf);
	bk_stream_free(s);
	return NULL;
}

static void round_trip(const char *uri_text, size_t size)
{
	bk_device_uri uri;
	bk_listener *l = NULL;
	bk_stream *c = NULL;
	pthread_t th;
	server_job job = {.size = size};
	uint8_t *data = pattern_buf(size), *back = malloc(size);
	uint8_t *frame = malloc(BK_FRAME_MAX);
	REQUIRE(data && back && frame);
	REQUIRE_OK(bk_device_uri_parse(&uri, uri_text));
	REQUIRE_OK(bk_listener_new(&l, &uri));
	job.l = l;
	REQUIRE(pthread_create(&th, NULL, echo_server, &job) == 0);
	CHECK_OK(bk_transport_connect(&c, bk_listener_uri(l), bk_deadline_in(5000)));
	if (c) {
		CHECK_OK(bk_stream_write(c, data, size, bk_deadline_in(20000)));
		CHECK_OK(bk_stream_read_full(c, back, size, bk_deadline_in(20000)));
		CHECK(memcmp(data, back, size) == 0);
		/* Frames up to the size the server can hold. */
		size_t sizes[] = {0, 1, 1000, BK_FRAME_MAX};
		for (size_t i = 0; i < BK_ARRAY_LEN(sizes); i++) {
			size_t n = sizes[i], got = 0;
			if (n > size)
				continue;
			CHECK_OK(bk_frame_write(c, data, n, bk_deadline_in(5000)));
			CHECK_OK(bk_frame_read(c, frame, BK_FRAME_MAX, &got, bk_deadline_in(5000)));
			CHECK_EQ(got, n);
			CHECK(memcmp(frame, data, n) == 0);
		}
		bk_stream_free(c);
	}
	pthread_join(th, NULL);
	CHECK_OK(job.rc);
	CHECK(job.content_ok);
	bk_listener_free(l);
	free(data);
	free(back);
	free(frame);
}

static void tcp_round_trips(void)
{
	round_trip("tcp:127.0.0.1:0", 1);
	round_trip("tcp:127.0.0.1:0", 64 * 1024);
	round_trip("tcp:127.0.0.1:0", 8 * 1024 * 1024);
}

static void unix_round_trips(void)
{
	char uri[300];
	snprintf(uri, sizeof(uri), "unix:%s", bk_test_path("unit.sock"));
	round_trip(uri, 1);
	round_trip(uri, 64 * 1024);
	round_trip(uri, 8 * 1024 * 1024);
	/* The listener removed its socket file. */
	struct stat st;
	CHECK(lstat(bk_test_path("unit.sock"), &st) != 0 && errno == ENOENT);
}

static void tcp_listener_reports_port(void)
{
	bk_device_uri uri;
	bk_listener *l = NULL;
	char s[BK_URI_STRING_MAX];
	REQUIRE_OK(bk_device_uri_parse(&uri, "tcp:127.0.0.1:0"));
	REQUIRE_OK(bk_listener_new(&l, &uri));
	const bk_device_uri *b = bk_listener_uri(l);
	CHECK_EQ(b->kind, BK_URI_TCP);
	CHECK(b->port != 0);
	CHECK_STR(b->host, "127.0.0.1");
	REQUIRE_OK(bk_device_uri_format(b, s, sizeof(s)));
	CHECK(strncmp(s, "tcp:127.0.0.1:", 14) == 0);
	CHECK(bk_listener_fd(l) >= 0);
	/* The same port again is busy. */
	bk_listener *l2 = NULL;
	CHECK_EQ(bk_listener_new(&l2, b), BK_EBUSY);
	CHECK(l2 == NULL);
	/* Accepting with nobody connecting times out. */
	bk_stream *s2 = NULL;
	int64_t t0 = bk_now_ms();
	CHECK_EQ(bk_listener_accept(l, &s2, bk_deadline_in(100)), BK_ETIMEOUT);
	CHECK(bk_now_ms() - t0 >= 90);
	bk_listener_free(l);
	/* A usb: URI is not a socket. */
	REQUIRE_OK(bk_device_uri_parse(&uri, "usb:1-2"));
	CHECK_EQ(bk_listener_new(&l, &uri), BK_EINVALID);
	CHECK_EQ(bk_transport_connect(&s2, &uri, bk_deadline_in(100)), BK_EINVALID);
}

static void connect_closed_port(void)
{
	bk_device_uri uri, closed;
	bk_listener *l = NULL;
	bk_stream *s = NULL;
	REQUIRE_OK(bk_device_uri_parse(&uri, "tcp:127.0.0.1:0"));
	REQUIRE_OK(bk_listener_new(&l, &uri));
	closed = *bk_listener_uri(l);
	bk_listener_free(l);
	int64_t t0 = bk_now_ms();
	CHECK_EQ(bk_transport_connect(&s, &closed, bk_deadline_in(5000)), BK_EDISCONNECTED);
	CHECK(reason_is("connection-refused"));
	CHECK(strstr(bk_error_last()->message, "tcp:127.0.0.1:") != NULL);
	CHECK(bk_now_ms() - t0 < 2000);
	CHECK(s == NULL);

	/* An unresolvable host name. */
	REQUIRE_OK(bk_device_uri_parse(&uri, "tcp:no-such-host.invalid"));
	CHECK_EQ(bk_transport_connect(&s, &uri, bk_deadline_in(5000)), BK_ENOTFOUND);
	CHECK(reason_is("unknown-host"));
}

static void unix_socket_files(void)
{
	char text[300];
	const char *path = bk_test_path("stale.sock");
	bk_device_uri uri;
	bk_stream *s = NULL;
	bk_listener *l = NULL, *l2 = NULL;
	snprintf(text, sizeof(text), "unix:%s", path);
	REQUIRE_OK(bk_device_uri_parse(&uri, text));

	/* Nothing there. */
	CHECK_EQ(bk_transport_connect(&s, &uri, bk_deadline_in(1000)), BK_ENOTFOUND);
	CHECK(reason_is("no-such-socket"));

	/* A stale socket file (its program died): refused, then replaced. */
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	bk_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
	REQUIRE(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	close(fd);
	CHECK_EQ(bk_transport_connect(&s, &uri, bk_deadline_in(1000)), BK_EDISCONNECTED);
	CHECK(reason_is("connection-refused"));
	REQUIRE_OK(bk_listener_new(&l, &uri));

	/* A live one is not taken over. */
	CHECK_EQ(bk_listener_new(&l2, &uri), BK_EBUSY);
	CHECK(reason_is("address-in-use"));
	bk_listener_free(l);
	struct stat st;
	CHECK(lstat(path, &st) != 0);

	/* Anything but a socket is never removed. */
	const char *file = bk_test_path("not-a-socket");
	FILE *f = fopen(file, "w");
	REQUIRE(f != NULL);
	fputs("keep me\n", f);
	fclose(f);
	snprintf(text, sizeof(text), "unix:%s", file);
	REQUIRE_OK(bk_device_uri_parse(&uri, text));
	CHECK_EQ(bk_listener_new(&l, &uri), BK_EEXIST);
	CHECK(lstat(file, &st) == 0 && S_ISREG(st.st_mode));
}

static void read_deadline(void)
{
	bk_device_uri uri;
	bk_listener *l = NULL;
	bk_stream *c = NULL, *srv = NULL;
	uint8_t buf[16];
	size_t n = 99;
	REQUIRE_OK(bk_device_uri_parse(&uri, "tcp:127.0.0.1:0"));
	REQUIRE_OK(bk_listener_new(&l, &uri));
	CHECK_OK(bk_transport_connect(&c, bk_listener_uri(l), bk_deadline_in(2000)));
	CHECK_OK(bk_listener_accept(l, &srv, bk_deadline_in(2000)));
	if (c && srv) {
		int64_t t0 = bk_now_ms();
		CHECK_EQ(bk_stream_read(c, buf, sizeof(buf), &n, bk_deadline_in(200)), BK_ETIMEOUT);
		int64_t took = bk_now_ms() - t0;
		CHECK(took >= 190 && took < 1500);
		CHECK_EQ(n, 0);
		CHECK(reason_is("timeout"));
		/* A frame that never finishes arriving also times out. */
		CHECK_OK(bk_stream_write(srv, "\x00\x05" "ab", 4, bk_deadline_in(1000)));
		t0 = bk_now_ms();
		CHECK_EQ(bk_frame_read(c, buf, sizeof(buf), &n, bk_deadline_in(150)), BK_ETIMEOUT);
		took = bk_now_ms() - t0;
		CHECK(took >= 140 && took < 1500);
		/* A deadline already passed still returns data that is there. */
		CHECK_OK(bk_stream_write(srv, "xyz", 3, bk_deadline_in(1000)));
		usleep(50000);
		CHECK_OK(bk_stream_read(c, buf, sizeof(buf), &n, bk_deadline_in(0)));
		CHECK(n >= 1);
	}
	bk_stream_free(c);
	bk_stream_free(srv);
	bk_listener_free(l);
}

static void peer_close_mid_frame(void)
{
	uint8_t buf[256];
	size_t n;
	bk_stream *a = NULL, *b = NULL;

	/* Inside the payload. */
	REQUIRE_OK(bk_transport_pair_new(&a, &b));
	CHECK_OK(bk_stream_write(a, "\x00\x64" "0123456789", 12, bk_deadline_in(1000)));
	bk_stream_free(a);
	CHECK_EQ(bk_frame_read(b, buf, sizeof(buf), &n, bk_deadline_in(1000)), BK_EDISCONNECTED);
	CHECK(reason_is("frame-truncated"));
	CHECK_EQ(n, 0);
	bk_stream_free(b);

	/* Inside the header. */
	REQUIRE_OK(bk_transport_pair_new(&a, &b));
	CHECK_OK(bk_stream_write(a, "\x00", 1, bk_deadline_in(1000)));
	bk_stream_free(a);
	CHECK_EQ(bk_frame_read(b, buf, sizeof(buf), &n, bk_deadline_in(1000)), BK_EDISCONNECTED);
	CHECK(reason_is("frame-truncated"));
	bk_stream_free(b);

	/* Between frames: a clean hang-up. */
	REQUIRE_OK(bk_transport_pair_new(&a, &b));
	CHECK_OK(bk_frame_write(a, "hi", 2, bk_deadline_in(1000)));
	bk_stream_free(a);
	CHECK_OK(bk_frame_read(b, buf, sizeof(buf), &n, bk_deadline_in(1000)));
	CHECK_EQ(n, 2);
	CHECK_EQ(bk_frame_read(b, buf, sizeof(buf), &n, bk_deadline_in(1000)), BK_EDISCONNECTED);
	CHECK(reason_is("closed"));
	bk_stream_free(b);

	/* Writing to a closed peer is an error, not SIGPIPE (left at its
	 * default, which would kill this test). */
	signal(SIGPIPE, SIG_DFL);
	REQUIRE_OK(bk_transport_pair_new(&a, &b));
	bk_stream_free(b);
	CHECK_EQ(bk_frame_write(a, "x", 1, bk_deadline_in(1000)), BK_EDISCONNECTED);
	bk_stream_free(a);
}

static void tcp_peer_close(void)
{
	bk_device_uri uri;
	bk_listener *l = NULL;
	bk_stream *c = NULL, *srv = NULL;
	uint8_t buf[256];
	size_t n;
	signal(SIGPIPE, SIG_DFL);
	REQUIRE_OK(bk_device_uri_parse(&uri, "tcp:127.0.0.1:0"));
	REQUIRE_OK(bk_listener_new(&l, &uri));
	REQUIRE_OK(bk_transport_connect(&c, bk_listener_uri(l), bk_deadline_in(2000)));
	REQUIRE_OK(bk_listener_accept(l, &srv, bk_deadline_in(2000)));
	CHECK_OK(bk_stream_write(srv, "\x01\x00" "abc", 5, bk_deadline_in(1000)));
	bk_stream_free(srv);
	CHECK_EQ(bk_frame_read(c, buf, sizeof(buf), &n, bk_deadline_in(2000)), BK_EDISCONNECTED);
	CHECK(reason_is("frame-truncated"));
	/* Keep writing into the closed connection: the kernel answers with a
	 * reset, reported as a disconnection. */
	uint8_t *chunk = calloc(1, 65536);
	int rc = 0;
	for (int i = 0; i < 200 && rc == 0; i++)
		rc = bk_stream_write(c, chunk, 65536, bk_deadline_in(2000));
	CHECK_EQ(rc, BK_EDISCONNECTED);
	free(chunk);
	bk_stream_free(c);
	bk_listener_free(l);
}

/* --- In-process pair across threads --- */

typedef struct unit_job {
	bk_stream *s;
	int rc;
	int served;
} unit_job;

/* A tiny unit: answers each request with OK {"echo": type} or, for
 * RESTORE_WRITE, OK {"received": offset + len}; stops at the hang-up. */
static void *unit_thread(void *arg)
{
	unit_job *j = arg;
	uint8_t *in = malloc(BK_FRAME_MAX), *out = malloc(BK_FRAME_MAX);
	for (;;) {
		size_t n, m;
		bk_proto_msg req, resp = {0};
		int rc = bk_frame_read(j->s, in, BK_FRAME_MAX, &n, bk_deadline_in(10000));
		if (rc == BK_EDISCONNECTED && reason_is("closed"))
			break;
		if (rc) {
			j->rc = rc;
			break;
		}
		rc = bk_proto_msg_decode(&req, in, n);
		if (rc) {
			j->rc = rc;
			break;
		}
		resp.type = BK_MSG_OK;
		resp.id = req.id;
		if (req.type == BK_MSG_RESTORE_WRITE)
			resp.json = json_pack("{s:I}", "received",
					      (json_int_t)(req.offset + req.data_len));
		else
			resp.json = json_pack("{s:i}", "echo", req.type);
		rc = bk_proto_msg_encode(out, BK_PROTO_MSG_MAX, &m, &resp);
		if (rc == 0)
			rc = bk_frame_write(j->s, out, m, bk_deadline_in(10000));
		json_decref(resp.json);
		bk_proto_msg_clear(&req);
		if (rc) {
			j->rc = rc;
			break;
		}
		j->served++;
	}
	free(in);
	free(out);
	return NULL;
}

static void pair_two_threads(void)
{
	bk_stream *a = NULL, *b = NULL;
	pthread_t th;
	REQUIRE_OK(bk_transport_pair_new(&a, &b));
	unit_job job = {.s = b};
	REQUIRE(pthread_create(&th, NULL, unit_thread, &job) == 0);
	uint8_t *buf = malloc(BK_FRAME_MAX), *data = pattern_buf(BK_PROTO_DATA_MAX);
	int requests = 0;
	uint64_t offset = 0;
	for (int i = 0; i < 300; i++) {
		bk_proto_msg req = {.id = 1000u + (uint32_t)i}, resp;
		size_t n;
		if (i % 3 == 0) {
			req.type = BK_MSG_RESTORE_WRITE;
			req.offset = offset;
			req.data = data;
			req.data_len = (size_t)(i * 217) % BK_PROTO_DATA_MAX;
			offset += req.data_len;
		} else {
			req.type = i % 3 == 1 ? BK_MSG_PING : BK_MSG_RESTORE_STATUS;
		}
		CHECK_OK(bk_proto_msg_encode(buf, BK_FRAME_MAX, &n, &req));
		CHECK_OK(bk_frame_write(a, buf, n, bk_deadline_in(10000)));
		int rc = bk_frame_read(a, buf, BK_FRAME_MAX, &n, bk_deadline_in(10000));
		CHECK_OK(rc);
		if (rc)
			break;
		REQUIRE_OK(bk_proto_msg_decode(&resp, buf, n));
		CHECK_EQ(resp.type, BK_MSG_OK);
		CHECK_EQ(resp.id, req.id);
		if (req.type == BK_MSG_RESTORE_WRITE)
			CHECK_EQ(json_integer_value(json_object_get(resp.json, "received")),
				 (long long)offset);
		else
			CHECK_EQ(json_integer_value(json_object_get(resp.json, "echo")), req.type);
		bk_proto_msg_clear(&resp);
		requests++;
	}
	bk_stream_free(a);
	pthread_join(th, NULL);
	CHECK_OK(job.rc);
	CHECK_EQ(job.served, requests);
	CHECK_EQ(requests, 300);
	bk_stream_free(b);
	free(buf);
	free(data);
}

/* --- Framing --- */

static void frame_codec(void)
{
	uint8_t *out = malloc(BK_FRAME_MAX + 2), *data = pattern_buf(BK_FRAME_MAX + 1);
	size_t n;
	REQUIRE(out && data);
	CHECK_OK(bk_frame_encode(out, 2, &n, NULL, 0));
	CHECK_EQ(n, 2);
	CHECK(out[0] == 0 && out[1] == 0);
	CHECK_OK(bk_frame_encode(out, 3, &n, data, 1));
	CHECK(n == 3 && out[0] == 0 && out[1] == 1 && out[2] == data[0]);
	CHECK_OK(bk_frame_encode(out, BK_FRAME_MAX + 2, &n, data, BK_FRAME_MAX));
	CHECK(n == BK_FRAME_MAX + 2 && out[0] == 0xff && out[1] == 0xff);
	CHECK(memcmp(out + 2, data, BK_FRAME_MAX) == 0);

	bk_cur c;
	const uint8_t *p;
	size_t len;
	bk_cur_init(&c, out, n);
	CHECK_OK(bk_frame_decode(&c, &p, &len, BK_FRAME_MAX));
	CHECK(len == BK_FRAME_MAX && p == out + 2 && bk_cur_left(&c) == 0);
	/* Over the caller's limit. */
	bk_cur_init(&c, out, n);
	CHECK_EQ(bk_frame_decode(&c, &p, &len, 1000), BK_EFORMAT);
	CHECK(reason_is("frame-too-large"));
	CHECK_EQ(c.pos, 0);
	/* Truncated payload and header: the cursor does not move. */
	bk_cur_init(&c, out, n - 1);
	CHECK_EQ(bk_frame_decode(&c, &p, &len, BK_FRAME_MAX), BK_EFORMAT);
	CHECK(reason_is("frame-truncated"));
	CHECK_EQ(c.pos, 0);
	bk_cur_init(&c, out, 1);
	CHECK_EQ(bk_frame_decode(&c, &p, &len, BK_FRAME_MAX), BK_EFORMAT);
	CHECK_EQ(c.pos, 0);

	CHECK_EQ(bk_frame_encode(out, BK_FRAME_MAX + 2, &n, data, BK_FRAME_MAX + 1), BK_EINVALID);
	CHECK_EQ(bk_frame_encode(out, 10, &n, data, 9), BK_ENOSPACE);

	/* Over a stream: 0, 1 and the maximum, then a frame over the limit. */
	bk_stream *w = NULL, *r = NULL;
	REQUIRE_OK(bk_stream_mem_writer(&w, 0));
	CHECK_OK(bk_frame_write(w, data, 0, BK_DEADLINE_NONE));
	CHECK_OK(bk_frame_write(w, data, 1, BK_DEADLINE_NONE));
	CHECK_OK(bk_frame_write(w, data, BK_FRAME_MAX, BK_DEADLINE_NONE));
	CHECK_OK(bk_frame_write(w, data, 300, BK_DEADLINE_NONE));
	CHECK_EQ(bk_frame_write(w, data, BK_FRAME_MAX + 1, BK_DEADLINE_NONE), BK_EINVALID);
	size_t total;
	const uint8_t *bytes = bk_stream_mem_data(w, &total);
	CHECK_EQ(total, 2 + 0 + 2 + 1 + 2 + BK_FRAME_MAX + 2 + 300);
	REQUIRE_OK(bk_stream_mem_reader(&r, bytes, total));
	CHECK_OK(bk_frame_read(r, out, BK_FRAME_MAX, &n, BK_DEADLINE_NONE));
	CHECK_EQ(n, 0);
	CHECK_OK(bk_frame_read(r, out, BK_FRAME_MAX, &n, BK_DEADLINE_NONE));
	CHECK(n == 1 && out[0] == data[0]);
	CHECK_OK(bk_frame_read(r, out, BK_FRAME_MAX, &n, BK_DEADLINE_NONE));
	CHECK(n == BK_FRAME_MAX && memcmp(out, data, n) == 0);
	CHECK_EQ(bk_frame_read(r, out, 299, &n, BK_DEADLINE_NONE), BK_EFORMAT);
	CHECK(reason_is("frame-too-large"));
	CHECK_EQ(n, 0);
	bk_stream_free(r);

	/* A lower layer's error passes through unchanged. */
	bk_stream *cut = NULL;
	REQUIRE_OK(bk_stream_mem_reader(&r, bytes, total));
	REQUIRE_OK(bk_stream_cut_new(&cut, r, 1, 4, BK_ETIMEOUT));
	CHECK_OK(bk_frame_read(cut, out, BK_FRAME_MAX, &n, BK_DEADLINE_NONE));
	CHECK_EQ(bk_frame_read(cut, out, BK_FRAME_MAX, &n, BK_DEADLINE_NONE), BK_ETIMEOUT);
	bk_stream_free(cut);
	bk_stream_free(w);

	/* Every allocation failing in the large-frame writer is clean. */
	for (long k = 1; k < 10; k++) {
		REQUIRE_OK(bk_stream_mem_writer(&w, 0));
		bk__alloc_fail_at(k);
		int rc = bk_frame_write(w, data, 5000, BK_DEADLINE_NONE);
		bk__alloc_fail_at(0);
		CHECK(rc == 0 || rc == BK_ENOMEM);
		bk_stream_free(w);
		if (rc == 0)
			break;
	}
	free(out);
	free(data);
}

/* --- Message codec --- */

static void message_types(void)
{
	static const struct {
		const char *name;
		uint8_t type;
	} wire[] = {
		{"HELLO", 0x01}, {"PING", 0x02}, {"INFO", 0x10}, {"BACKUP_BEGIN", 0x20},
		{"BACKUP_READ", 0x21}, {"BACKUP_END", 0x22}, {"RESTORE_BEGIN", 0x30},
		{"RESTORE_WRITE", 0x31}, {"RESTORE_STATUS", 0x32}, {"RESTORE_COMMIT", 0x33},
		{"RESTORE_ABORT", 0x34}, {"FW_BEGIN", 0x40}, {"FW_WRITE", 0x41},
		{"FW_FINISH", 0x42}, {"FW_ACTIVATE", 0x43}, {"REBOOT", 0x50},
		{"BOOT_STATUS", 0x51}, {"IDENTITY_INSTALL", 0x60}, {"OK", 0x80}, {"DATA", 0x81},
		{"ERROR", 0x82},
	};
	int known = 0;
	for (unsigned t = 0; t < 256; t++)
		if (bk_proto_type_name((uint8_t)t))
			known++;
	CHECK_EQ(known, (int)BK_ARRAY_LEN(wire));
	for (size_t i = 0; i < BK_ARRAY_LEN(wire); i++) {
		CHECK_STR(bk_proto_type_name(wire[i].type), wire[i].name);
		CHECK_EQ(bk_proto_type_from_name(wire[i].name), wire[i].type);
	}
	CHECK_EQ(bk_proto_type_body(BK_MSG_RESTORE_WRITE), BK_PROTO_BODY_DATA);
	CHECK_EQ(bk_proto_type_body(BK_MSG_FW_WRITE), BK_PROTO_BODY_DATA);
	CHECK_EQ(bk_proto_type_body(BK_MSG_DATA), BK_PROTO_BODY_DATA);
	CHECK_EQ(bk_proto_type_body(BK_MSG_BACKUP_READ), BK_PROTO_BODY_JSON);
	CHECK_EQ(bk_proto_type_body(0x00), BK_PROTO_BODY_UNKNOWN);
	CHECK(bk_proto_type_is_response(BK_MSG_ERROR) && !bk_proto_type_is_response(BK_MSG_PING));
	CHECK(bk_proto_type_name(0xff) == NULL);
	CHECK_EQ(bk_proto_type_from_name("NOPE"), 0);
	CHECK_EQ(BK_PROTO_MSG_MAX, 65519);
	CHECK_EQ(BK_PROTO_BODY_MAX, 65514);
	CHECK_EQ(BK_PROTO_DATA_MAX, 65506);
}

static void message_round_trips(void)
{
	uint8_t *buf = malloc(BK_PROTO_MSG_MAX), *data = pattern_buf(BK_PROTO_DATA_MAX + 1);
	REQUIRE(buf && data);
	for (unsigned t = 0; t < 256; t++) {
		uint8_t type = (uint8_t)t;
		if (bk_proto_type_name(type) == NULL) {
			bk_proto_msg m = {.type = type};
			size_t n;
			CHECK_EQ(bk_proto_msg_encode(buf, BK_PROTO_MSG_MAX, &n, &m), BK_EINVALID);
			continue;
		}
		bk_proto_msg m = {.type = type, .id = 0xdeadbe00u + t}, d;
		size_t n;
		if (bk_proto_type_body(type) == BK_PROTO_BODY_DATA) {
			size_t sizes[] = {0, 1, 4096, BK_PROTO_DATA_MAX};
			for (size_t i = 0; i < BK_ARRAY_LEN(sizes); i++) {
				m.offset = 0x0123456789abULL + i;
				m.data = data;
				m.data_len = sizes[i];
				REQUIRE_OK(bk_proto_msg_encode(buf, BK_PROTO_MSG_MAX, &n, &m));
				CHECK_EQ(n, BK_PROTO_HEADER_LEN + 8 + sizes[i]);
				CHECK_EQ(buf[0], type);
				REQUIRE_OK(bk_proto_msg_decode(&d, buf, n));
				CHECK_EQ(d.type, type);
				CHECK_EQ(d.id, m.id);
				CHECK(d.offset == m.offset);
				CHECK_EQ(d.data_len, sizes[i]);
				CHECK(d.json == NULL);
				CHECK(sizes[i] == 0 || memcmp(d.data, data, sizes[i]) == 0);
				bk_proto_msg_clear(&d);
			}
			m.data_len = BK_PROTO_DATA_MAX + 1;
			CHECK_EQ(bk_proto_msg_encode(buf, BK_PROTO_MSG_MAX, &n, &m), BK_ENOSPACE);
			CHECK(reason_is("message-too-large"));
			m.data_len = 10;
			m.offset = (uint64_t)INT64_MAX - 5;
			CHECK_EQ(bk_proto_msg_encode(buf, BK_PROTO_MSG_MAX, &n, &m), BK_EINVALID);
			CHECK(reason_is("bad-offset"));
			continue;
		}
		/* JSON: an empty body decodes as {}. */
		REQUIRE_OK(bk_proto_msg_encode(buf, BK_PROTO_MSG_MAX, &n, &m));
		CHECK_EQ(n, BK_PROTO_HEADER_LEN);
		REQUIRE_OK(bk_proto_msg_decode(&d, buf, n));
		CHECK(json_is_object(d.json) && json_object_size(d.json) == 0);
		CHECK_EQ(d.id, m.id);
		bk_proto_msg_clear(&d);
		m.json = json_pack("{s:s, s:I, s:[i,b,n], s:{s:f}}", "name", "ü-unit", "size",
				   (json_int_t)1 << 40, "list", 1, 1, "obj", "x", 1.5);
		REQUIRE(m.json != NULL);
		REQUIRE_OK(bk_proto_msg_encode(buf, BK_PROTO_MSG_MAX, &n, &m));
		REQUIRE_OK(bk_proto_msg_decode(&d, buf, n));
		CHECK_EQ(d.type, type);
		CHECK_EQ(d.id, m.id);
		CHECK(json_equal(d.json, m.json));
		bk_proto_msg_clear(&d);
		CHECK(d.json == NULL);
		json_decref(m.json);
	}

	/* The largest JSON body fits; one more byte does not. */
	size_t fill = BK_PROTO_BODY_MAX - strlen("{\"s\":\"\"}");
	char *s = malloc(fill + 2);
	memset(s, 'a', fill + 1);
	s[fill] = '\0';
	bk_proto_msg m = {.type = BK_MSG_OK, .id = 7, .json = json_pack("{s:s}", "s", s)}, d;
	size_t n;
	CHECK_OK(bk_proto_msg_encode(buf, BK_PROTO_MSG_MAX, &n, &m));
	CHECK_EQ(n, BK_PROTO_MSG_MAX);
	CHECK_OK(bk_proto_msg_decode(&d, buf, n));
	bk_proto_msg_clear(&d);
	/* A smaller caller buffer is honoured. */
	CHECK_EQ(bk_proto_msg_encode(buf, 100, &n, &m), BK_ENOSPACE);
	json_decref(m.json);
	s[fill] = 'a';
	s[fill + 1] = '\0';
	m.json = json_pack("{s:s}", "s", s);
	CHECK_EQ(bk_proto_msg_encode(buf, BK_PROTO_MSG_MAX, &n, &m), BK_ENOSPACE);
	CHECK(reason_is("message-too-large"));
	json_decref(m.json);
	/* Only objects. */
	m.json = json_pack("[i]", 1);
	CHECK_EQ(bk_proto_msg_encode(buf, BK_PROTO_MSG_MAX, &n, &m), BK_EINVALID);
	json_decref(m.json);
	free(s);
	free(buf);
	free(data);
}

static int decode_raw(const void *bytes, size_t len, bk_proto_msg *d)
{
	int rc = bk_proto_msg_decode(d, bytes, len);
	if (rc)
		CHECK(d->json == NULL);
	bk_proto_msg_clear(d);
	return rc;
}

static void message_malformed(void)
{
	bk_proto_msg d;
	static const uint8_t hdr[] = {BK_MSG_PING, 0, 0, 0, 9};
	for (size_t len = 0; len < BK_PROTO_HEADER_LEN; len++) {
		CHECK_EQ(decode_raw(hdr, len, &d), BK_EFORMAT);
		CHECK(reason_is("message-truncated"));
	}
	CHECK_EQ(decode_raw(hdr, 5, &d), 0);

	/* Unknown types still report the request id. */
	static const uint8_t unknown[] = {0x7f, 0, 0, 1, 2, '{', '}'};
	CHECK_EQ(bk_proto_msg_decode(&d, unknown, sizeof(unknown)), BK_EFORMAT);
	CHECK(reason_is("unknown-message-type"));
	CHECK_EQ(d.type, 0x7f);
	CHECK_EQ(d.id, 0x102);
	bk_proto_msg_clear(&d);

	/* Too long. */
	uint8_t *big = calloc(1, BK_PROTO_MSG_MAX + 1);
	big[0] = BK_MSG_DATA;
	CHECK_EQ(decode_raw(big, BK_PROTO_MSG_MAX, &d), 0);
	CHECK_EQ(decode_raw(big, BK_PROTO_MSG_MAX + 1, &d), BK_EFORMAT);
	CHECK(reason_is("message-too-large"));
	free(big);

	/* JSON bodies. */
	static const char *bad_json[] = {
		"[1]", "1", "\"s\"", "null", "nul", "{", "{\"a\":1}x", "{\"a\":1,\"a\":2}",
		"{\"a\":\"\\u0000\"}", "{\"a\":\"\xff\"}",
	};
	for (size_t i = 0; i < BK_ARRAY_LEN(bad_json); i++) {
		uint8_t buf[64] = {BK_MSG_INFO, 0, 0, 0, 1};
		size_t n = strlen(bad_json[i]);
		memcpy(buf + 5, bad_json[i], n);
		int rc = bk_proto_msg_decode(&d, buf, 5 + n);
		CHECK_EQ(rc, BK_EFORMAT);
		CHECK(reason_is("bad-json") || reason_is("json-not-object"));
		CHECK(d.json == NULL);
		CHECK_EQ(d.id, 1);
		bk_proto_msg_clear(&d);
	}
	{
		uint8_t buf[16] = {BK_MSG_OK, 0, 0, 0, 1, '[', ']'};
		CHECK_EQ(decode_raw(buf, 7, &d), BK_EFORMAT);
		CHECK(reason_is("json-not-object"));
	}

	/* Data bodies. */
	uint8_t data[5 + 8 + 4] = {BK_MSG_FW_WRITE, 0, 0, 0, 3};
	for (size_t len = 5; len < 13; len++) {
		CHECK_EQ(decode_raw(data, len, &d), BK_EFORMAT);
		CHECK(reason_is("data-truncated"));
	}
	CHECK_EQ(decode_raw(data, 13, &d), 0);
	memset(data + 5, 0xff, 8); /* offset 2^64-1 */
	CHECK_EQ(decode_raw(data, sizeof(data), &d), BK_EFORMAT);
	CHECK(reason_is("bad-offset"));
	bk_put_u64be(data + 5, (uint64_t)INT64_MAX); /* ends past INT64_MAX */
	CHECK_EQ(decode_raw(data, sizeof(data), &d), BK_EFORMAT);
	CHECK_EQ(decode_raw(data, 13, &d), 0); /* empty at the very end is fine */
	bk_put_u64be(data + 5, (uint64_t)INT64_MAX - 4);
	CHECK_EQ(decode_raw(data, sizeof(data), &d), 0);
}

static void error_mapping(void)
{
	uint8_t buf[1024];
	for (int code = BK_ERROR; code >= BK_EFORMAT; code--) {
		json_t *body = NULL;
		bk_proto_msg m = {.type = BK_MSG_ERROR, .id = 42}, d;
		size_t n;
		REQUIRE_OK(bk_proto_error_encode(&body, code, "unit-said-so", "slot b: too small"));
		CHECK_STR(json_string_value(json_object_get(body, "code")),
			  bk_error_code_name(code));
		m.json = body;
		REQUIRE_OK(bk_proto_msg_encode(buf, sizeof(buf), &n, &m));
		json_decref(body);
		REQUIRE_OK(bk_proto_msg_decode(&d, buf, n));
		bk_error_clear();
		CHECK_EQ(bk_proto_error_decode(d.json), code);
		CHECK_EQ(bk_error_last()->code, code);
		CHECK_STR(bk_error_last()->reason, "unit-said-so");
		CHECK_STR(bk_error_last()->message, "slot b: too small");
		bk_proto_msg_clear(&d);
		CHECK_EQ(bk_proto_error_code(bk_error_code_name(code)), code);
	}
	CHECK_EQ(bk_proto_error_code("busy"), BK_EBUSY);
	CHECK_EQ(bk_proto_error_code("no-such-code"), 0);
	CHECK_EQ(bk_proto_error_code("ok"), 0);

	json_t *body = NULL;
	CHECK_EQ(bk_proto_error_encode(&body, 0, NULL, NULL), BK_EINVALID);
	/* Defaults and cleaning: a bad reason becomes the code's name, control
	 * characters and broken UTF-8 never travel. */
	REQUIRE_OK(bk_proto_error_encode(&body, BK_EBUSY, "Not A Reason", "line1\nline2 \xff ü"));
	CHECK_STR(json_string_value(json_object_get(body, "reason")), "busy");
	CHECK_STR(json_string_value(json_object_get(body, "message")), "line1 line2 ? ü");
	json_decref(body);
	REQUIRE_OK(bk_proto_error_encode(&body, BK_ETIMEOUT, NULL, NULL));
	CHECK_STR(json_string_value(json_object_get(body, "reason")), "timeout");
	CHECK_STR(json_string_value(json_object_get(body, "message")), "timed out");
	json_decref(body);

	/* The last error, as a unit would send it. */
	bk__error_set(BK_EINCOMPAT, "schema-too-new", "memory schema 7 is newer than 5");
	REQUIRE_OK(bk_proto_error_from_last(&body));
	bk_error_clear();
	CHECK_EQ(bk_proto_error_decode(body), BK_EINCOMPAT);
	CHECK_STR(bk_error_last()->reason, "schema-too-new");
	CHECK_STR(bk_error_last()->message, "memory schema 7 is newer than 5");
	json_decref(body);

	/* What a peer may send. */
	body = json_pack("{s:s, s:s, s:s}", "code", "from-the-future", "reason", "odd", "message",
			 "esc\x1b[31mape");
	CHECK_EQ(bk_proto_error_decode(body), BK_ERROR);
	CHECK_STR(bk_error_last()->reason, "odd");
	CHECK_STR(bk_error_last()->message, "esc [31mape");
	json_decref(body);
	body = json_pack("{s:s}", "code", "ok");
	CHECK_EQ(bk_proto_error_decode(body), BK_ERROR);
	json_decref(body);
	body = json_pack("{s:s, s:s}", "code", "busy", "reason", "Bad/Reason");
	CHECK_EQ(bk_proto_error_decode(body), BK_EBUSY);
	CHECK_STR(bk_error_last()->reason, "busy");
	CHECK_STR(bk_error_last()->message, "busy");
	json_decref(body);
	const char *malformed[] = {"{}", "{\"code\": 5}", "{\"code\": \"busy\", \"reason\": 1}",
				   "{\"code\": \"busy\", \"message\": []}", "[]"};
	for (size_t i = 0; i < BK_ARRAY_LEN(malformed); i++) {
		body = json_loads(malformed[i], JSON_DECODE_ANY, NULL);
		REQUIRE(body != NULL);
		CHECK_EQ(bk_proto_error_decode(body), BK_EFORMAT);
		CHECK(reason_is("bad-error-body"));
		json_decref(body);
	}
	CHECK_EQ(bk_proto_error_decode(NULL), BK_EFORMAT);
}

static void hello_negotiation(void)
{
	json_t *offer = NULL, *answer = NULL;
	uint32_t v = 0, w = 0;
	REQUIRE_OK(bk_proto_hello_offer(&offer));
	CHECK_OK(bk_proto_hello_select(offer, 1, 1, &v));
	CHECK_EQ(v, BK_PROTO_VERSION);
	REQUIRE_OK(bk_proto_hello_answer(&answer, v));
	CHECK_OK(bk_proto_hello_accept(answer, 1, 1, &w));
	CHECK_EQ(w, v);
	CHECK_EQ(bk_proto_hello_accept(answer, 2, 3, &w), BK_EINCOMPAT);
	json_decref(offer);
	json_decref(answer);

	offer = json_pack("{s:s, s:[i,i,i]}", "protocol", "aibo-restore", "versions", 3, 1, 2);
	CHECK_OK(bk_proto_hello_select(offer, 1, 2, &v));
	CHECK_EQ(v, 2);
	CHECK_EQ(bk_proto_hello_select(offer, 4, 9, &v), BK_EINCOMPAT);
	CHECK(reason_is("no-common-version"));
	json_decref(offer);

	const char *bad[] = {"{}", "{\"protocol\": \"aibo-restore\"}",
			     "{\"protocol\": \"aibo-restore\", \"versions\": []}",
			     "{\"protocol\": \"aibo-restore\", \"versions\": [0]}",
			     "{\"protocol\": \"aibo-restore\", \"versions\": [\"1\"]}",
			     "{\"protocol\": \"aibo-restore\", \"versions\": [4294967296]}"};
	for (size_t i = 0; i < BK_ARRAY_LEN(bad); i++) {
		offer = json_loads(bad[i], 0, NULL);
		REQUIRE(offer != NULL);
		CHECK_EQ(bk_proto_hello_select(offer, 1, 1, &v), BK_EFORMAT);
		json_decref(offer);
	}
	offer = json_pack("{s:s, s:[i]}", "protocol", "other", "versions", 1);
	CHECK_EQ(bk_proto_hello_select(offer, 1, 1, &v), BK_EINCOMPAT);
	CHECK(reason_is("wrong-protocol"));
	json_decref(offer);
}

static void alloc_failures(void)
{
	bk_device_uri uri;
	char text[300];
	snprintf(text, sizeof(text), "unix:%s", bk_test_path("alloc.sock"));
	for (long k = 1; k < 20; k++) {
		bk_stream *a = NULL, *b = NULL;
		bk__alloc_fail_at(k);
		int rc = bk_transport_pair_new(&a, &b);
		bk__alloc_fail_at(0);
		CHECK(rc == 0 || rc == BK_ENOMEM);
		CHECK(rc != 0 || (a && b));
		CHECK(rc == 0 || (a == NULL && b == NULL));
		bk_stream_free(a);
		bk_stream_free(b);
		if (rc == 0)
			break;
	}
	const char *uris[] = {"tcp:127.0.0.1:0", text};
	for (size_t i = 0; i < BK_ARRAY_LEN(uris); i++) {
		REQUIRE_OK(bk_device_uri_parse(&uri, uris[i]));
		for (long k = 1; k < 20; k++) {
			bk_listener *l = NULL;
			bk_stream *c = NULL;
			bk__alloc_fail_at(k);
			int rc = bk_listener_new(&l, &uri);
			if (rc == 0)
				rc = bk_transport_connect(&c, bk_listener_uri(l),
							  bk_deadline_in(1000));
			bk__alloc_fail_at(0);
			CHECK(rc == 0 || rc == BK_ENOMEM);
			bk_stream_free(c);
			bk_listener_free(l);
			if (rc == 0)
				break;
		}
	}
}

/* --- The channel's framing: read-ahead, partial frames, ends of stream --- */

/* Two CAs, a unit and a terminal, certified. */
typedef struct lab {
	bk_minisign_seckey *factory_sk, *service_sk;
	bk_minisign_pubkey factory_pk, service_pk;
	bk_keyfile *unit_keys, *term_keys;
	bk_cert *unit_cert, *term_cert;
} lab;

static int lab_party(lab *l, bk_cert_role role)
{
	bool unit = role == BK_CERT_ROLE_UNIT;
	bk_keyfile **keys = unit ? &l->unit_keys : &l->term_keys;
	bk_cert_params c;
	int rc = bk_keyfile_generate(keys, unit);
	if (rc)
		return rc;
	memset(&c, 0, sizeof(c));
	c.role = role;
	c.noise_key = bk_keyfile_noise_public(*keys);
	c.ed25519_key = bk_keyfile_ed25519_public(*keys);
	c.not_before = (int64_t)time(NULL) - 60;
	c.not_after = (int64_t)time(NULL) + 3600;
	if (unit) {
		c.serial = "WIRE-1";
		c.model = "ERS-1000";
		c.hw_revision = "1";
		c.age_key = bk_keyfile_age_public(*keys);
		return bk_cert_issue(&l->unit_cert, &c, l->factory_sk);
	}
	c.terminal_id = "wire-terminal";
	return bk_cert_issue(&l->term_cert, &c, l->service_sk);
}

static int lab_new(lab *l)
{
	int rc;
	memset(l, 0, sizeof(*l));
	if ((rc = bk_minisign_keygen(&l->factory_sk)) || (rc = bk_minisign_keygen(&l->service_sk)))
		return rc;
	bk_minisign_seckey_pubkey(l->factory_sk, &l->factory_pk);
	bk_minisign_seckey_pubkey(l->service_sk, &l->service_pk);
	if ((rc = lab_party(l, BK_CERT_ROLE_UNIT)) || (rc = lab_party(l, BK_CERT_ROLE_TERMINAL)))
		return rc;
	return 0;
}

static void lab_free(lab *l)
{
	bk_keyfile_free(l->unit_keys);
	bk_keyfile_free(l->term_keys);
	bk_cert_free(l->unit_cert);
	bk_cert_free(l->term_cert);
	bk_minisign_seckey_free(l->factory_sk);
	bk_minisign_seckey_free(l->service_sk);
}

/* A filter that hands out at most `piece` bytes per read and times out on
 * every third read without reading: frames arrive in scraps, with
 * deadlines passing in the middle of them. */
typedef struct trickle {
	bk_stream base;
	size_t piece;
	unsigned calls;
	bool armed; /* time out now and then (set once the handshake is done) */
} trickle;

static int trickle_read(bk_stream *s, void *buf, size_t len, size_t *out_n, bk_deadline d)
{
	trickle *t = (trickle *)s;
	*out_n = 0;
	if (t->armed && ++t->calls % 3 == 0)
		return bk__error_set(BK_ETIMEOUT, "timeout", "trickle: timed out");
	return bk_stream_read(s->next, buf, len < t->piece ? len : t->piece, out_n, d);
}

static int trickle_write(bk_stream *s, const void *buf, size_t len, bk_deadline d)
{
	return bk_stream_write(s->next, buf, len, d);
}

static void trickle_release(bk_stream *s)
{
	free(s);
}

static const bk_stream_ops trickle_ops = {
	.version = BK_STREAM_OPS_VERSION,
	.name = "trickle",
	.read = trickle_read,
	.write = trickle_write,
	.release = trickle_release,
};

static bk_stream *trickle_new(bk_stream *next, size_t piece)
{
	trickle *t = calloc(1, sizeof(*t));
	t->base.ops = &trickle_ops;
	t->base.next = next;
	t->base.owns_next = 1;
	t->piece = piece;
	return &t->base;
}

/* The messages the terminal sends: DATA of many sizes, full-size ones
 * included, with a PING now and then. */
#define CH_MSGS 48

static size_t ch_msg_size(int i)
{
	static const size_t sizes[] = {0, 1, 13, 4000, BK_PROTO_DATA_MAX, 65000, 777, 2};
	return sizes[i % 8];
}

static bool ch_msg_is_ping(int i)
{
	return i % 5 == 4;
}

typedef struct ch_job {
	lab *lab;
	bk_stream *transport;
	trickle *trickle; /* the filter on `transport`, or NULL */
	int rc;
	int received;  /* messages that arrived intact */
	int timeouts;  /* BK_ETIMEOUT seen by the receiver */
	int end_rc;    /* what the receive after the last message said */
	char end_reason[64];
} ch_job;

/* The unit: accepts, receives CH_MSGS messages (retrying after timeouts),
 * checks each, answers OK, then reads once more to see how the stream ends. */
static void *ch_unit(void *arg)
{
	ch_job *j = arg;
	bk_channel *ch = NULL;
	bk_channel_cfg cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.noise_secret = bk_keyfile_noise_secret(j->lab->unit_keys);
	cfg.cert = j->lab->unit_cert;
	cfg.cas = &j->lab->service_pk;
	cfg.ncas = 1;
	j->rc = bk_channel_accept(&ch, j->transport, 1, &cfg, bk_deadline_in(20000));
	if (j->rc)
		return NULL;
	if (j->trickle)
		j->trickle->armed = true;
	for (int i = 0; i < CH_MSGS;) {
		bk_proto_msg m;
		int rc = bk_channel_recv(ch, &m, bk_deadline_in(20000));
		if (rc == BK_ETIMEOUT) {
			j->timeouts++;
			continue;
		}
		if (rc) {
			j->rc = rc;
			break;
		}
		bool ok = m.id == (uint32_t)i + 1;
		if (ch_msg_is_ping(i)) {
			json_t *n = json_object_get(m.json, "n");
			ok = ok && m.type == BK_MSG_PING && json_integer_value(n) == i;
		} else {
			size_t len = ch_msg_size(i);
			ok = ok && m.type == BK_MSG_DATA && m.offset == (uint64_t)i << 20 &&
			     m.data_len == len;
			for (size_t k = 0; ok && k < len; k++)
				ok = m.data[k] == pattern(k + (size_t)i);
		}
		bk_proto_msg_clear(&m);
		if (ok)
			j->received++;
		i++;
	}
	if (j->rc == 0) {
		bk_proto_msg ok = {.type = BK_MSG_OK, .id = 99};
		j->rc = bk_channel_send(ch, &ok, bk_deadline_in(20000));
	}
	for (;;) {
		bk_proto_msg m;
		j->end_rc = bk_channel_recv(ch, &m, bk_deadline_in(20000));
		bk_proto_msg_clear(&m);
		if (j->end_rc != BK_ETIMEOUT)
			break;
	}
	bk_strlcpy(j->end_reason, bk_error_last()->reason ? bk_error_last()->reason : "",
		   sizeof(j->end_reason));
	bk_channel_free(ch);
	return NULL;
}

/* The terminal side of one run: `piece` 0 reads the unit's transport as it
 * is, else in scraps of that size with timeouts between them. With
 * `cut_mid_frame`, the terminal ends with 3 bytes of a frame before hanging
 * up. */
static void channel_run(size_t piece, bool cut_mid_frame)
{
	lab l;
	bk_stream *a = NULL, *b = NULL;
	bk_channel *ch = NULL;
	pthread_t t;
	ch_job j;
	uint8_t *data = pattern_buf(BK_PROTO_DATA_MAX + CH_MSGS);
	REQUIRE_OK(lab_new(&l));
	REQUIRE_OK(bk_transport_pair_new(&a, &b));
	memset(&j, 0, sizeof(j));
	j.lab = &l;
	j.transport = piece ? trickle_new(b, piece) : b;
	j.trickle = piece ? (trickle *)j.transport : NULL;
	pthread_create(&t, NULL, ch_unit, &j);
	bk_channel_cfg cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.noise_secret = bk_keyfile_noise_secret(l.term_keys);
	cfg.cert = l.term_cert;
	cfg.cas = &l.factory_pk;
	cfg.ncas = 1;
	CHECK_OK(bk_channel_connect(&ch, a, 0, &cfg, bk_deadline_in(20000)));
	for (int i = 0; ch && i < CH_MSGS; i++) {
		bk_proto_msg m = {.id = (uint32_t)i + 1};
		if (ch_msg_is_ping(i)) {
			m.type = BK_MSG_PING;
			m.json = json_pack("{s:i}", "n", i);
		} else {
			m.type = BK_MSG_DATA;
			m.offset = (uint64_t)i << 20;
			m.data = data + i;
			m.data_len = ch_msg_size(i);
		}
		CHECK_OK(bk_channel_send(ch, &m, bk_deadline_in(20000)));
		json_decref(m.json);
	}
	if (ch) {
		bk_proto_msg ans;
		CHECK_OK(bk_channel_recv(ch, &ans, bk_deadline_in(20000)));
		CHECK_EQ(ans.type, BK_MSG_OK);
		CHECK_EQ(ans.id, 99);
		bk_proto_msg_clear(&ans);
		CHECK_EQ(bk_channel_frames_sent(ch), 2 + CH_MSGS);
	}
	if (cut_mid_frame) {
		const uint8_t part[3] = {0x01, 0x00, 0xaa}; /* says 256 bytes, brings 1 */
		CHECK_OK(bk_stream_write(a, part, sizeof(part), bk_deadline_in(5000)));
	}
	bk_channel_free(ch);
	bk_stream_free(a); /* the unit reads the end of the stream */
	pthread_join(t, NULL);
	CHECK_OK(j.rc);
	CHECK_EQ(j.received, CH_MSGS);
	if (piece)
		CHECK(j.timeouts > 0);
	CHECK_EQ(j.end_rc, BK_EDISCONNECTED);
	CHECK_STR(j.end_reason, cut_mid_frame ? "frame-truncated" : "closed");
	free(data);
	lab_free(&l);
}

/* Bursts of frames of every size are read in large pieces and handed out
 * one by one, intact. */
static void channel_read_ahead(void)
{
	channel_run(0, false);
}

/* Frames that arrive in scraps, with deadlines passing inside a frame, are
 * completed by the next receive: the stream never goes out of step; a peer
 * hanging up inside a frame after a burst is "frame-truncated". */
static void channel_partial_frames(void)
{
	channel_run(7, true);
	channel_run(4099, false);
}

BK_RUN_TESTS(BK_TEST(uri_valid), BK_TEST(uri_invalid), BK_TEST(tcp_round_trips),
	     BK_TEST(unix_round_trips), BK_TEST(tcp_listener_reports_port),
	     BK_TEST(connect_closed_port), BK_TEST(unix_socket_files), BK_TEST(read_deadline),
	     BK_TEST(peer_close_mid_frame), BK_TEST(tcp_peer_close), BK_TEST(pair_two_threads),
	     BK_TEST(frame_codec), BK_TEST(message_types), BK_TEST(message_round_trips),
	     BK_TEST(message_malformed), BK_TEST(error_mapping), BK_TEST(hello_negotiation),
	     BK_TEST(alloc_failures), BK_TEST(channel_read_ahead), BK_TEST(channel_partial_frames))
