/* The USB transport against the simulated unit of usb_echo_server, through
 * libusb's real Linux backend: run under umockdev's preload with the
 * server's UMOCKDEV_DIR (see run_usb_echo.sh). BK_USB_SERIAL names the
 * unit's serial, BK_USB_SERVER_PID the server (SIGUSR1 makes the unit drop
 * off the bus for a while). */
#include <pthread.h>
#include <sys/wait.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "device/usb.h"
#include "testlib.h"

#define VID BK_USB_DEFAULT_VID
#define PID BK_USB_DEFAULT_PID

static const char *serial(void)
{
	const char *s = getenv("BK_USB_SERIAL");
	return s ? s : "VIRTUAL-0001";
}

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
}

/* Writes `n` bytes and reads them back. */
static int echo(bk_stream *s, size_t n, uint32_t seed)
{
	uint8_t *out = malloc(n ? n : 1), *in = malloc(n ? n : 1);
	int rc = -1;
	if (out == NULL || in == NULL)
		goto done;
	fill(out, n, seed);
	rc = bk_stream_write(s, out, n, bk_deadline_in(10000));
	if (rc == 0)
		rc = bk_stream_read_full(s, in, n, bk_deadline_in(10000));
	if (rc == 0 && memcmp(in, out, n) != 0) {
		fprintf(stderr, "  echo of %zu bytes came back different\n", n);
		rc = -1;
	}
done:
	free(out);
	free(in);
	return rc;
}

static bool listed(const char *want_serial, const char *want_path)
{
	bk_usb_unit *units = NULL;
	size_t n = 0;
	bool found = false;
	if (bk_usb_list(&units, &n, VID, PID) != 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (strcmp(units[i].serial, want_serial) == 0 &&
		    (want_path == NULL || strcmp(units[i].path, want_path) == 0))
			found = true;
	bk_usb_list_free(units);
	return found;
}

static void test_list(void)
{
	bk_usb_unit *units = NULL;
	size_t n = 0;
	REQUIRE_OK(bk_usb_list(&units, &n, VID, PID));
	CHECK_EQ(n, 1);
	if (n == 1) {
		CHECK_STR(units[0].serial, serial());
		CHECK_STR(units[0].path, "1-2");
		CHECK_EQ(units[0].bus, 1);
		CHECK_EQ(units[0].address, 2);
		CHECK_EQ(units[0].vid, VID);
		CHECK_EQ(units[0].pid, PID);
	}
	bk_usb_list_free(units);
	/* Another USB ID lists nothing. */
	REQUIRE_OK(bk_usb_list(&units, &n, VID, PID + 1));
	CHECK_EQ(n, 0);
	CHECK(units == NULL);
	bk_usb_list_free(units);
}

static void test_not_found(void)
{
	bk_stream *s = NULL;
	CHECK_EQ(bk_usb_open(&s, "NO-SUCH-UNIT", VID, PID, bk_deadline_in(5000)), BK_ENOTFOUND);
	CHECK_STR(bk_error_last()->reason, "usb-not-found");
	CHECK(s == NULL);
	CHECK_EQ(bk_usb_open(&s, "usb:1-9", VID, PID, bk_deadline_in(5000)), BK_ENOTFOUND);
	CHECK_EQ(bk_usb_open(&s, "usb:2-2", VID, PID, bk_deadline_in(5000)), BK_ENOTFOUND);
	/* The right serial under another USB ID is not the unit. */
	CHECK_EQ(bk_usb_open(&s, serial(), VID, PID + 1, bk_deadline_in(5000)), BK_ENOTFOUND);
	CHECK_EQ(bk_usb_open(&s, "bad serial!", VID, PID, bk_deadline_in(5000)), BK_EUSER);
	CHECK_EQ(bk_usb_open(&s, "tcp:localhost", VID, PID, bk_deadline_in(5000)), BK_EUSER);
	CHECK(s == NULL);
}

static void test_echo_sizes(void)
{
	char spec[160];
	snprintf(spec, sizeof(spec), "usb:%s", serial());
	bk_stream *s = NULL;
	REQUIRE_OK(bk_usb_open(&s, spec, VID, PID, bk_deadline_in(5000)));
	static const size_t sizes[] = {1, 511, 512, 513, 1024, 4096, 65535, 65536, 65537, 200000};
	for (size_t i = 0; i < BK_ARRAY_LEN(sizes); i++) {
		int rc = echo(s, sizes[i], (uint32_t)i + 1);
		if (rc)
			fprintf(stderr, "  size %zu: %s\n", sizes[i], bk_error_last()->message);
		CHECK_EQ(rc, 0);
	}
	/* Writing nothing sends nothing: nothing comes back. */
	uint8_t b[16];
	size_t n = 99;
	CHECK_OK(bk_stream_write(s, b, 0, bk_deadline_in(1000)));
	CHECK_EQ(bk_stream_read(s, b, sizeof(b), &n, bk_deadline_in(200)), BK_ETIMEOUT);
	CHECK_EQ(n, 0);
	/* Small reads are served from what one transfer brought. */
	uint8_t out[100], in[100];
	fill(out, sizeof(out), 77);
	CHECK_OK(bk_stream_write(s, out, sizeof(out), bk_deadline_in(5000)));
	for (size_t got = 0; got < sizeof(in);) {
		int rc = bk_stream_read(s, in + got, 7, &n, bk_deadline_in(5000));
		CHECK_EQ(rc, 0);
		if (rc || n == 0)
			break;
		got += n;
	}
	CHECK(memcmp(in, out, sizeof(in)) == 0);
	CHECK_OK(bk_stream_close(s, bk_deadline_in(1000)));
}

static void test_echo_port_spec(void)
{
	bk_stream *s = NULL;
	REQUIRE_OK(bk_usb_open(&s, "1-2", VID, PID, bk_deadline_in(5000)));
	CHECK_OK(echo(s, 4096, 9));
	bk_stream_free(s);
	s = NULL;
	REQUIRE_OK(bk_usb_open(&s, "usb:1-2", VID, PID, bk_deadline_in(5000)));
	CHECK_OK(echo(s, 513, 10));
	bk_stream_free(s);
}

typedef struct writer_job {
	bk_stream *s;
	const uint8_t *data;
	size_t len;
	int rc;
} writer_job;

static void *writer_main(void *arg)
{
	writer_job *j = arg;
	j->rc = 0;
	for (size_t off = 0; off < j->len && j->rc == 0; off += BK_USB_CHUNK_MAX) {
		size_t n = j->len - off < BK_USB_CHUNK_MAX ? j->len - off : BK_USB_CHUNK_MAX;
		j->rc = bk_stream_write(j->s, j->data + off, n, bk_deadline_in(30000));
	}
	return NULL;
}

/* 8 MiB out while another thread reads them back; prints the rate. */
static void test_echo_8mib(void)
{
	enum { TOTAL = 8 << 20 };
	uint8_t *out = malloc(TOTAL), *in = malloc(TOTAL);
	bk_stream *s = NULL;
	REQUIRE(out && in);
	fill(out, TOTAL, 8);
	int rc = bk_usb_open(&s, serial(), VID, PID, bk_deadline_in(5000));
	CHECK_EQ(rc, 0);
	if (rc == 0) {
		writer_job job = {.s = s, .data = out, .len = TOTAL};
		pthread_t t;
		int64_t t0 = bk_now_ms();
		REQUIRE(pthread_create(&t, NULL, writer_main, &job) == 0);
		rc = bk_stream_read_full(s, in, TOTAL, bk_deadline_in(60000));
		pthread_join(t, NULL);
		int64_t ms = bk_now_ms() - t0;
		CHECK_EQ(job.rc, 0);
		CHECK_EQ(rc, 0);
		CHECK(memcmp(in, out, TOTAL) == 0);
		printf("  8 MiB echoed in %lld ms: %.1f MB/s each way\n", (long long)ms,
		       ms > 0 ? (double)TOTAL / 1e6 / ((double)ms / 1000.0) : 0.0);
		/* Round trips of 64 KiB, one at a time. */
		t0 = bk_now_ms();
		for (int i = 0; i < 32; i++)
			CHECK_OK(echo(s, 65536, 100 + (uint32_t)i));
		ms = bk_now_ms() - t0;
		printf("  32 round trips of 64 KiB in %lld ms: %.1f MB/s each way\n", (long long)ms,
		       ms > 0 ? 32.0 * 65536 / 1e6 / ((double)ms / 1000.0) : 0.0);
	}
	bk_stream_free(s);
	free(out);
	free(in);
}

static void test_read_deadline(void)
{
	bk_stream *s = NULL;
	REQUIRE_OK(bk_usb_open(&s, serial(), VID, PID, bk_deadline_in(5000)));
	uint8_t b[64];
	size_t n = 5;
	int64_t t0 = bk_now_ms();
	CHECK_EQ(bk_stream_read(s, b, sizeof(b), &n, bk_deadline_in(300)), BK_ETIMEOUT);
	int64_t ms = bk_now_ms() - t0;
	CHECK_STR(bk_error_last()->reason, "timeout");
	CHECK(ms >= 250);
	CHECK(ms < 3000);
	/* A large read times out the same way. */
	uint8_t *big = malloc(1 << 20);
	REQUIRE(big);
	CHECK_EQ(bk_stream_read(s, big, 1 << 20, &n, bk_deadline_in(200)), BK_ETIMEOUT);
	/* A deadline already passed fails at once. */
	t0 = bk_now_ms();
	CHECK_EQ(bk_stream_read(s, b, sizeof(b), &n, bk_deadline_in(0)), BK_ETIMEOUT);
	CHECK(bk_now_ms() - t0 < 1000);
	free(big);
	/* The stream still works after the timeouts. */
	CHECK_OK(echo(s, 1000, 5));
	bk_stream_free(s);
}

static void test_busy(void)
{
	bk_stream *a = NULL, *b = NULL;
	REQUIRE_OK(bk_usb_open(&a, serial(), VID, PID, bk_deadline_in(5000)));
	CHECK_EQ(bk_usb_open(&b, serial(), VID, PID, bk_deadline_in(5000)), BK_EBUSY);
	CHECK_STR(bk_error_last()->reason, "usb-busy");
	CHECK(b == NULL);
	CHECK_EQ(bk_usb_open(&b, "1-2", VID, PID, bk_deadline_in(5000)), BK_EBUSY);
	/* Listing still sees the busy unit and its serial. */
	CHECK(listed(serial(), "1-2"));
	CHECK_OK(echo(a, 3000, 6));
	bk_stream_free(a);
	/* Once released, the next host gets a fresh session. */
	REQUIRE_OK(bk_usb_open(&b, serial(), VID, PID, bk_deadline_in(5000)));
	CHECK_OK(echo(b, 3000, 7));
	bk_stream_free(b);
}

/* A host killed while it holds the interface ends its session: the next
 * host gets the unit. */
static void test_killed_host(void)
{
	int p[2];
	REQUIRE(pipe(p) == 0);
	pid_t child = fork();
	REQUIRE(child >= 0);
	if (child == 0) {
		close(p[0]);
		bk_stream *s = NULL;
		char ok = bk_usb_open(&s, serial(), VID, PID, bk_deadline_in(5000)) == 0 &&
		                  echo(s, 100, 21) == 0
		              ? 'y'
		              : 'n';
		if (write(p[1], &ok, 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(p[1]);
	char ok = 0;
	CHECK(read(p[0], &ok, 1) == 1);
	close(p[0]);
	CHECK_EQ(ok, 'y');
	/* While the child holds it, the unit is busy. */
	bk_stream *s = NULL;
	CHECK_EQ(bk_usb_open(&s, serial(), VID, PID, bk_deadline_in(5000)), BK_EBUSY);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	int rc = BK_EBUSY;
	for (int64_t end = bk_now_ms() + 3000; rc == BK_EBUSY && bk_now_ms() < end;) {
		rc = bk_usb_open(&s, serial(), VID, PID, bk_deadline_in(5000));
		if (rc == BK_EBUSY)
			usleep(20000);
	}
	REQUIRE_OK(rc);
	CHECK_OK(echo(s, 5000, 22));
	bk_stream_free(s);
}

static void test_gone_and_back(void)
{
	const char *pid_s = getenv("BK_USB_SERVER_PID");
	REQUIRE(pid_s != NULL);
	pid_t server = (pid_t)atol(pid_s);
	bk_stream *s = NULL;
	REQUIRE_OK(bk_usb_open(&s, serial(), VID, PID, bk_deadline_in(5000)));
	CHECK_OK(echo(s, 100, 11));

	REQUIRE(kill(server, SIGUSR1) == 0);
	/* The unit drops off the bus... */
	bool vanished = false;
	for (int64_t end = bk_now_ms() + 3000; bk_now_ms() < end;) {
		if (!listed(serial(), NULL)) {
			vanished = true;
			break;
		}
		usleep(20000);
	}
	CHECK(vanished);
	/* ...the open handle is dead... */
	uint8_t b[16];
	size_t n;
	CHECK_EQ(bk_stream_read(s, b, sizeof(b), &n, bk_deadline_in(2000)), BK_EDISCONNECTED);
	CHECK_STR(bk_error_last()->reason, "usb-disconnected");
	CHECK_EQ(bk_stream_write(s, b, sizeof(b), bk_deadline_in(2000)), BK_EDISCONNECTED);
	bk_stream_free(s);
	s = NULL;
	/* ...opening it is not possible while it is away... */
	if (vanished)
		CHECK_EQ(bk_usb_open(&s, serial(), VID, PID, bk_deadline_in(2000)), BK_ENOTFOUND);
	/* ...and the wait finds it again once it is back. */
	CHECK_EQ(bk_usb_wait("NO-SUCH-UNIT", VID, PID, bk_deadline_in(300)), BK_ETIMEOUT);
	CHECK_STR(bk_error_last()->reason, "usb-wait-timeout");
	int64_t t0 = bk_now_ms();
	CHECK_OK(bk_usb_wait(serial(), VID, PID, bk_deadline_in(10000)));
	printf("  unit back after %lld ms of waiting\n", (long long)(bk_now_ms() - t0));
	CHECK_OK(bk_usb_wait("usb:1-2", VID, PID, bk_deadline_in(2000)));
	REQUIRE_OK(bk_usb_open(&s, serial(), VID, PID, bk_deadline_in(5000)));
	CHECK_OK(echo(s, 70000, 12));
	bk_stream_free(s);
}

BK_RUN_TESTS(BK_TEST(test_list), BK_TEST(test_not_found), BK_TEST(test_echo_sizes),
             BK_TEST(test_echo_port_spec), BK_TEST(test_echo_8mib), BK_TEST(test_read_deadline),
             BK_TEST(test_busy), BK_TEST(test_killed_host), BK_TEST(test_gone_and_back))
