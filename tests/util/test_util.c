/* Tests of libbackup/util: errors, allocation, cursor, buffers, streams,
 * deadlines, secrets, text helpers, atomic files, progress. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libbackup/libbackup.h>

#include "libbackup/util/util.h"
#include "testlib.h"

static void test_errors(void)
{
	CHECK_EQ(bk__error_set(BK_EVERIFY, "payload-corrupt", "chunk %d: bad tag", 3), BK_EVERIFY);
	CHECK_EQ(bk_error_last()->code, BK_EVERIFY);
	CHECK_STR(bk_error_last()->reason, "payload-corrupt");
	CHECK_STR(bk_error_last()->message, "chunk 3: bad tag");
	CHECK_EQ(bk__error_prefix(BK_EVERIFY, "%s", "backup.aibk"), BK_EVERIFY);
	CHECK_STR(bk_error_last()->message, "backup.aibk: chunk 3: bad tag");
	CHECK_STR(bk_error_last()->reason, "payload-corrupt");
	/* A code without a default reason gets its name. */
	bk__error_set(BK_EBUSY, NULL, "locked");
	CHECK_STR(bk_error_last()->reason, "busy");
	CHECK_EQ(bk__error_errno(ENOENT, "%s", "/nope"), BK_ENOTFOUND);
	CHECK(strstr(bk_error_last()->message, "/nope: ") == bk_error_last()->message);
	CHECK_EQ(bk__error_errno(ENOSPC, "x"), BK_ENOSPACE);
	CHECK_EQ(bk__error_errno(EACCES, "x"), BK_EIO);
	CHECK_STR(bk_error_last()->reason, "permission-denied");
	CHECK_EQ(bk__error_oom(), BK_ENOMEM);
	CHECK_STR(bk_error_last()->message, "out of memory");
	CHECK_STR(bk_strerror(BK_EROLLBACK), "firmware rolled back");
	CHECK_STR(bk_error_code_name(BK_ENOSPACE), "no-space");
	bk_error_clear();
	CHECK_EQ(bk_error_last()->code, 0);
}

static void *thread_error(void *arg)
{
	(void)arg;
	bk__error_set(BK_EAUTH, "other-thread", "from the other thread");
	return NULL;
}

static void test_error_thread_local(void)
{
	bk__error_set(BK_EAPI, "mine", "mine");
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, thread_error, NULL) == 0);
	pthread_join(t, NULL);
	CHECK_STR(bk_error_last()->reason, "mine");
}

static void test_alloc_fail(void)
{
	bk__alloc_fail_at(3);
	void *a = bk__malloc(10), *b = bk__malloc(10), *c = bk__malloc(10);
	CHECK(a != NULL);
	CHECK(b != NULL);
	CHECK(c == NULL);
	CHECK_EQ(bk_error_last()->code, BK_ENOMEM);
	CHECK_EQ(bk__alloc_count(), 3);
	bk__alloc_fail_at(0);
	bk__free(a);
	bk__free(b);
	CHECK(bk__calloc(SIZE_MAX / 2, 4) == NULL); /* overflow */
	char *s = bk__asprintf("%s-%d", "x", 42);
	CHECK_STR(s, "x-42");
	bk__free(s);
}

/* Builds a buffer through many small steps; fails cleanly at every N. */
static int build_buffer(bk_buf *b)
{
	for (int i = 0; i < 100; i++) {
		int rc = bk_buf_printf(b, "line %d\n", i);
		if (rc)
			return rc;
	}
	return 0;
}

static void test_alloc_fail_loop(void)
{
	int succeeded = 0;
	for (long n = 1; n < 100 && !succeeded; n++) {
		bk_buf b = BK_BUF_INIT;
		bk__alloc_fail_at(n);
		int rc = build_buffer(&b);
		bk__alloc_fail_at(0);
		if (rc == 0)
			succeeded = 1;
		else
			CHECK_EQ(rc, BK_ENOMEM);
		bk_buf_free(&b);
	}
	CHECK(succeeded);
}

static void test_cursor(void)
{
	const uint8_t data[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09,
				0x00, 0x03, 'a', 'b', 'c', 0x05, 'x'};
	bk_cur c;
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	uint64_t u64;
	bk_cur_init(&c, data, sizeof(data));
	REQUIRE_OK(bk_cur_u8(&c, &u8));
	CHECK_EQ(u8, 1);
	REQUIRE_OK(bk_cur_u16be(&c, &u16));
	CHECK_EQ(u16, 0x0203);
	REQUIRE_OK(bk_cur_u16le(&c, &u16));
	CHECK_EQ(u16, 0x0504);
	bk_cur_init(&c, data, sizeof(data));
	REQUIRE_OK(bk_cur_u32be(&c, &u32));
	CHECK_EQ(u32, 0x01020304);
	REQUIRE_OK(bk_cur_u32le(&c, &u32));
	CHECK_EQ(u32, 0x08070605);
	bk_cur_init(&c, data, sizeof(data));
	REQUIRE_OK(bk_cur_u64be(&c, &u64));
	CHECK(u64 == 0x0102030405060708ULL);
	bk_cur_init(&c, data, sizeof(data));
	REQUIRE_OK(bk_cur_u64le(&c, &u64));
	CHECK(u64 == 0x0807060504030201ULL);
	REQUIRE_OK(bk_cur_skip(&c, 1));
	const uint8_t *s;
	size_t sl;
	REQUIRE_OK(bk_cur_str16be(&c, &s, &sl, 10));
	CHECK_EQ(sl, 3);
	CHECK(memcmp(s, "abc", 3) == 0);
	/* Overrun: length 5 with one byte left; the cursor does not move. */
	size_t pos = c.pos;
	CHECK_EQ(bk_cur_str8(&c, &s, &sl, 10), BK_EFORMAT);
	CHECK_STR(bk_error_last()->reason, "truncated");
	CHECK_EQ(c.pos, pos);
	/* Over the caller's limit. */
	bk_cur_init(&c, data + 9, 5);
	CHECK_EQ(bk_cur_str16be(&c, &s, &sl, 2), BK_EFORMAT);
	CHECK_STR(bk_error_last()->reason, "too-long");
	CHECK_EQ(c.pos, 0);
	/* Every reader refuses to run past the end. */
	bk_cur_init(&c, data, 0);
	CHECK_EQ(bk_cur_u8(&c, &u8), BK_EFORMAT);
	CHECK_EQ(bk_cur_u16be(&c, &u16), BK_EFORMAT);
	CHECK_EQ(bk_cur_u32be(&c, &u32), BK_EFORMAT);
	CHECK_EQ(bk_cur_u64be(&c, &u64), BK_EFORMAT);
	CHECK_EQ(bk_cur_bytes(&c, &s, 1), BK_EFORMAT);
	uint8_t tmp[4];
	bk_cur_init(&c, data, 3);
	CHECK_EQ(bk_cur_copy(&c, tmp, 4), BK_EFORMAT);
	CHECK_EQ(bk_cur_u32le(&c, &u32), BK_EFORMAT);
	CHECK_EQ(bk_cur_u64le(&c, &u64), BK_EFORMAT);
	REQUIRE_OK(bk_cur_copy(&c, tmp, 3));
	CHECK_EQ(bk_cur_left(&c), 0);
}

static void test_buf(void)
{
	bk_buf b = BK_BUF_INIT;
	REQUIRE_OK(bk_buf_put_u8(&b, 1));
	REQUIRE_OK(bk_buf_put_u16be(&b, 0x0203));
	REQUIRE_OK(bk_buf_put_u32be(&b, 0x04050607));
	REQUIRE_OK(bk_buf_put_u64be(&b, 0x08090a0b0c0d0e0fULL));
	REQUIRE_OK(bk_buf_put_u32le(&b, 0x13121110));
	REQUIRE_OK(bk_buf_put_u64le(&b, 0x1b1a191817161514ULL));
	CHECK_EQ(b.len, 27);
	for (size_t i = 0; i < 27; i++)
		CHECK_EQ(b.data[i], i + 1);
	bk_buf_reset(&b);
	REQUIRE_OK(bk_buf_printf(&b, "%s=%d", "n", 7));
	REQUIRE_OK(bk_buf_cstr(&b));
	CHECK_STR((char *)b.data, "n=7");
	size_t n;
	uint8_t *d = bk_buf_steal(&b, &n);
	CHECK_EQ(n, 3);
	CHECK(b.data == NULL);
	bk__free(d);
	bk_buf secret = BK_BUF_INIT;
	secret.secret = 1;
	for (int i = 0; i < 1000; i++)
		REQUIRE_OK(bk_buf_put(&secret, "k", 1));
	CHECK_EQ(secret.len, 1000);
	bk_buf_free(&secret);
}

static void test_text(void)
{
	char hex[9];
	uint8_t bytes[4] = {0xde, 0xad, 0xbe, 0xef}, back[4];
	bk_hex_encode(hex, bytes, 4);
	CHECK_STR(hex, "deadbeef");
	REQUIRE_OK(bk_hex_decode(back, 4, "DEADbeef"));
	CHECK(memcmp(back, bytes, 4) == 0);
	CHECK_EQ(bk_hex_decode(back, 4, "deadbee"), BK_EFORMAT);
	CHECK_EQ(bk_hex_decode(back, 4, "deadbeeg"), BK_EFORMAT);
	uint64_t u;
	REQUIRE_OK(bk_parse_u64("18446744073709551615", &u));
	CHECK(u == UINT64_MAX);
	CHECK_EQ(bk_parse_u64("18446744073709551616", &u), BK_EUSER);
	CHECK_EQ(bk_parse_u64("12a", &u), BK_EUSER);
	CHECK_EQ(bk_parse_u64("", &u), BK_EUSER);
	CHECK_EQ(bk_parse_u64("-1", &u), BK_EUSER);
	int64_t i;
	REQUIRE_OK(bk_parse_i64("-42", &i));
	CHECK_EQ(i, -42);
	REQUIRE_OK(bk_parse_i64("-9223372036854775808", &i));
	CHECK(i == INT64_MIN);
	CHECK_EQ(bk_parse_i64("9223372036854775808", &i), BK_EUSER);
	REQUIRE_OK(bk_parse_size("16M", &u));
	CHECK(u == 16u << 20);
	REQUIRE_OK(bk_parse_size("3k", &u));
	CHECK_EQ(u, 3072);
	REQUIRE_OK(bk_parse_size("100", &u));
	CHECK_EQ(u, 100);
	CHECK_EQ(bk_parse_size("M", &u), BK_EUSER);
	CHECK_EQ(bk_parse_size("99999999999T", &u), BK_EUSER);
	char small[4];
	CHECK(!bk_strlcpy(small, "abcdef", sizeof(small)));
	CHECK_STR(small, "abc");
	char t[21];
	bk_time_rfc3339(t, 1796000000);
	int64_t back_t;
	REQUIRE_OK(bk_time_parse_rfc3339(t, &back_t));
	CHECK_EQ(back_t, 1796000000);
	CHECK_EQ(bk_time_parse_rfc3339("2026-11-28 16:00:00", &back_t), BK_EFORMAT);
}

static void test_secret(void)
{
	bk_secret *s = NULL;
	REQUIRE_OK(bk_secret_from(&s, "key material", 12));
	CHECK_EQ(bk_secret_len(s), 12);
	CHECK(memcmp(bk_secret_data(s), "key material", 12) == 0);
	CHECK_OK(bk_secret_lock(s));
	CHECK_OK(bk_secret_unlock(s));
	bk_secret_data(s)[0] = 'K';
	bk_secret_free(s);
	bk_secret_free(NULL);
	CHECK_EQ(bk_ct_compare("abc", "abc", 3), 0);
	CHECK(bk_ct_compare("abc", "abd", 3) != 0);
	bk__alloc_fail_at(1);
	CHECK_EQ(bk_secret_new(&s, 32), BK_ENOMEM);
	bk__alloc_fail_at(0);
	CHECK(s == NULL);
}

static void test_mem_streams(void)
{
	bk_stream *r = NULL, *w = NULL;
	uint8_t data[100000];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7);
	REQUIRE_OK(bk_stream_mem_reader(&r, data, sizeof(data)));
	REQUIRE_OK(bk_stream_mem_writer(&w, 0));
	uint64_t n;
	REQUIRE_OK(bk_stream_copy(w, r, &n, BK_DEADLINE_NONE));
	CHECK_EQ(n, sizeof(data));
	size_t len;
	const uint8_t *got = bk_stream_mem_data(w, &len);
	CHECK_EQ(len, sizeof(data));
	CHECK(memcmp(got, data, len) == 0);
	CHECK_EQ(w->bytes_out, sizeof(data));
	CHECK_EQ(r->bytes_in, sizeof(data));
	uint64_t size = 0;
	CHECK_OK(bk_stream_ctrl(r, BK_STREAM_CTRL_SIZE, &size));
	CHECK_EQ(size, sizeof(data));
	bk_stream_free(r);
	CHECK_OK(bk_stream_close(w, BK_DEADLINE_NONE));
	/* A capped writer. */
	REQUIRE_OK(bk_stream_mem_writer(&w, 10));
	CHECK_OK(bk_stream_write(w, data, 10, BK_DEADLINE_NONE));
	CHECK_EQ(bk_stream_write(w, data, 1, BK_DEADLINE_NONE), BK_ENOSPACE);
	/* A failed stream stays failed. */
	CHECK_EQ(bk_stream_write(w, data, 1, BK_DEADLINE_NONE), BK_EINVALID);
	CHECK(bk_stream_close(w, BK_DEADLINE_NONE) != 0);
	/* read_full reports truncation. */
	REQUIRE_OK(bk_stream_mem_reader(&r, data, 5));
	uint8_t buf[10];
	CHECK_EQ(bk_stream_read_full(r, buf, 10, BK_DEADLINE_NONE), BK_EFORMAT);
	CHECK_STR(bk_error_last()->reason, "truncated");
	bk_stream_free(r);
}

static void test_cut_filter(void)
{
	uint8_t data[1000];
	memset(data, 'a', sizeof(data));
	/* Cut at every K while reading: exactly K bytes come through. */
	for (uint64_t k = 0; k <= sizeof(data); k += 97) {
		bk_stream *r = NULL, *cut = NULL, *w = NULL;
		REQUIRE_OK(bk_stream_mem_reader(&r, data, sizeof(data)));
		REQUIRE_OK(bk_stream_cut_new(&cut, r, 1, k, BK_EDISCONNECTED));
		REQUIRE_OK(bk_stream_mem_writer(&w, 0));
		uint64_t n = 0;
		int rc = bk_stream_copy(w, cut, &n, BK_DEADLINE_NONE);
		CHECK_EQ(rc, BK_EDISCONNECTED);
		CHECK_EQ(n, k);
		bk_stream_free(cut); /* frees r too */
		bk_stream_free(w);
	}
	/* Writing past the cut fails after exactly K bytes reached the sink. */
	bk_stream *w = NULL, *cut = NULL;
	REQUIRE_OK(bk_stream_mem_writer(&w, 0));
	REQUIRE_OK(bk_stream_cut_new(&cut, w, 0, 300, 0));
	CHECK_OK(bk_stream_write(cut, data, 200, BK_DEADLINE_NONE));
	CHECK_EQ(bk_stream_write(cut, data, 200, BK_DEADLINE_NONE), BK_EDISCONNECTED);
	size_t len;
	bk_stream_mem_data(w, &len);
	CHECK_EQ(len, 300);
	bk_stream_free(cut);
	bk_stream_free(w);
}

static void test_fd_stream_deadline(void)
{
	int sv[2];
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	bk_stream *a = NULL, *b = NULL;
	REQUIRE_OK(bk_stream_fd_new(&a, sv[0], 1));
	REQUIRE_OK(bk_stream_fd_new(&b, sv[1], 1));
	uint8_t buf[16];
	size_t n;
	int64_t t0 = bk_now_ms();
	CHECK_EQ(bk_stream_read(a, buf, sizeof(buf), &n, bk_deadline_in(150)), BK_ETIMEOUT);
	int64_t waited = bk_now_ms() - t0;
	CHECK(waited >= 140);
	CHECK(waited < 2000);
	CHECK_OK(bk_stream_write(b, "hello", 5, bk_deadline_in(1000)));
	CHECK_OK(bk_stream_read_full(a, buf, 5, bk_deadline_in(1000)));
	CHECK(memcmp(buf, "hello", 5) == 0);
	int fd = -1;
	CHECK_OK(bk_stream_ctrl(a, BK_STREAM_CTRL_FD, &fd));
	CHECK_EQ(fd, sv[0]);
	/* The peer goes away: end of stream, then a write error. */
	bk_stream_free(b);
	CHECK_OK(bk_stream_read(a, buf, sizeof(buf), &n, bk_deadline_in(1000)));
	CHECK_EQ(n, 0);
	/* No SIGPIPE handler is installed: the stream must not raise it. */
	CHECK_EQ(bk_stream_write(a, "x", 1, bk_deadline_in(1000)), BK_EDISCONNECTED);
	bk_stream_free(a);
	/* Deadline helpers. */
	CHECK_EQ(bk_deadline_left(BK_DEADLINE_NONE), -1);
	CHECK_EQ(bk_deadline_left(bk_now_ms() - 5), 0);
	CHECK(bk_deadline_in(-1) == BK_DEADLINE_NONE);
}

static void test_atomic_file(void)
{
	const char *path = bk_test_path("state.json");
	char part[4200];
	snprintf(part, sizeof(part), "%s.part", path);
	REQUIRE_OK(bk_file_write_atomic(path, "old", 3, 0600, 0));
	/* Interrupted before the rename: the old file is intact, no .part left
	 * under the final name (the .part itself is removed on abandon). */
	bk__atomic_fail_before_rename(1);
	CHECK_EQ(bk_file_write_atomic(path, "new", 3, 0600, 0), BK_ECANCELLED);
	bk__atomic_fail_before_rename(0);
	uint8_t *data = NULL;
	size_t len;
	REQUIRE_OK(bk_file_read(path, 100, &data, &len));
	CHECK_EQ(len, 3);
	CHECK(memcmp(data, "old", 3) == 0);
	bk__free(data);
	CHECK(access(part, F_OK) != 0);
	/* Abandoned stream: nothing changes. */
	bk_stream *s = NULL;
	REQUIRE_OK(bk_stream_atomic_new(&s, path, 0600, 0));
	CHECK_OK(bk_stream_write(s, "partial", 7, BK_DEADLINE_NONE));
	CHECK(access(part, F_OK) == 0);
	bk_stream_free(s);
	CHECK(access(part, F_OK) != 0);
	REQUIRE_OK(bk_file_read(path, 100, &data, &len));
	CHECK(memcmp(data, "old", 3) == 0);
	bk__free(data);
	/* A stale .part from a killed writer is replaced. */
	REQUIRE_OK(bk_file_write_atomic(part, "stale", 5, 0600, 0));
	REQUIRE_OK(bk_file_write_atomic(path, "new", 3, 0640, 0));
	REQUIRE_OK(bk_file_read(path, 100, &data, &len));
	CHECK(len == 3 && memcmp(data, "new", 3) == 0);
	bk__free(data);
	struct stat st;
	REQUIRE(stat(path, &st) == 0);
	CHECK_EQ(st.st_mode & 0777, 0640);
	/* Exclusive refuses to replace. */
	CHECK_EQ(bk_file_write_atomic(path, "x", 1, 0600, 1), BK_EEXIST);
	/* Too large a file for the reader's cap. */
	CHECK_EQ(bk_file_read(path, 2, &data, &len), BK_ENOSPACE);
	CHECK_EQ(bk_file_read(bk_test_path("missing"), 2, &data, &len), BK_ENOTFOUND);
	/* Writing into a missing folder fails cleanly. */
	CHECK_EQ(bk_file_write_atomic(bk_test_path("no/such/file"), "x", 1, 0600, 0), BK_ENOTFOUND);
}

static void test_files(void)
{
	char *d = bk_path_dirname("/a/b/c");
	CHECK_STR(d, "/a/b");
	bk__free(d);
	d = bk_path_dirname("c");
	CHECK_STR(d, ".");
	bk__free(d);
	d = bk_path_join("/etc", "x");
	CHECK_STR(d, "/etc/x");
	bk__free(d);
	d = bk_path_join("/etc/", "/abs");
	CHECK_STR(d, "/abs");
	bk__free(d);
	REQUIRE_OK(bk_mkdir_p(bk_test_path("x/y/z"), 0700));
	CHECK_OK(bk_mkdir_p(bk_test_path("x/y/z"), 0700));
	REQUIRE_OK(bk_file_write_atomic(bk_test_path("x/file"), "k", 1, 0600, 0));
	CHECK_EQ(bk_mkdir_p(bk_test_path("x/file"), 0700), BK_EEXIST);
	CHECK_OK(bk_file_check_private(bk_test_path("x/file")));
	chmod(bk_test_path("x/file"), 0644);
	CHECK_EQ(bk_file_check_private(bk_test_path("x/file")), BK_EAUTH);
	CHECK(strstr(bk_error_last()->message, "chmod 600") != NULL);
	CHECK_EQ(bk_file_check_private(bk_test_path("x")), BK_EAUTH);
}

static int progress_calls;
static double last_fraction;

static int on_progress(const bk_progress *p, void *payload)
{
	(void)payload;
	progress_calls++;
	last_fraction = p->fraction;
	return p->done >= 500 && strcmp(p->step, "verify") == 0;
}

static void test_progress(void)
{
	static const bk_progress_step steps[] = {{"write", 3}, {"verify", 1}};
	bk_progress_tracker t;
	bk_progress_init(&t, on_progress, NULL, "unit", steps, 2);
	REQUIRE_OK(bk_progress_step_begin(&t, "write", 1000));
	CHECK_OK(bk_progress_update(&t, 1000, true));
	CHECK(last_fraction > 0.74 && last_fraction < 0.76);
	REQUIRE_OK(bk_progress_step_begin(&t, "verify", 1000));
	CHECK_OK(bk_progress_update(&t, 100, true));
	CHECK_EQ(bk_progress_update(&t, 600, true), BK_ECANCELLED);
	CHECK_EQ(bk_progress_step_begin(&t, "nope", 1), BK_EINVALID);
	CHECK(progress_calls >= 4);
}

static void test_version(void)
{
	CHECK_STR(bk_version(), BK_VERSION_STRING);
	CHECK(strstr(bk_version_dependencies(), "libsodium") != NULL);
}

BK_RUN_TESTS(BK_TEST(test_errors), BK_TEST(test_error_thread_local), BK_TEST(test_alloc_fail),
	     BK_TEST(test_alloc_fail_loop), BK_TEST(test_cursor), BK_TEST(test_buf),
	     BK_TEST(test_text), BK_TEST(test_secret), BK_TEST(test_mem_streams),
	     BK_TEST(test_cut_filter), BK_TEST(test_fd_stream_deadline),
	     BK_TEST(test_atomic_file), BK_TEST(test_files), BK_TEST(test_progress),
	     BK_TEST(test_version))
