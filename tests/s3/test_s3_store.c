/* The s3:// store against s3rver behind a SigV4-checking front (servers.sh):
 * put, get, list with continuation, multipart uploads, ranged downloads
 * resumed from a partial file, an upload resumed after its writer was
 * killed, refused credentials, and endpoint and spec checks; the streaming
 * reader (bounded buffer, resumed after a cut, a changed object refused). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libbackup/libbackup.h>

#include "libbackup/backup/backup_internal.h"
#include "libbackup/backup/store_s3.h"
#include "tests/lib/testlib.h"

static char srv_dir[4096];
static char endpoint[256];

static void stop_servers(void)
{
	if (srv_dir[0]) {
		bk_test_system("bash '%s' stop '%s'", getenv("BK_S3_SERVERS"), srv_dir);
		bk_test_system("rm -rf '%s'", srv_dir);
	}
}

/* Starts the servers once; the test fails (never skips) without them. */
static int servers(void)
{
	if (endpoint[0])
		return 0;
	const char *script = getenv("BK_S3_SERVERS");
	if (script == NULL) {
		fprintf(stderr, "  BK_S3_SERVERS is not set (run through ctest)\n");
		return -1;
	}
	snprintf(srv_dir, sizeof(srv_dir), "/tmp/bk-s3-test-%ld", (long)getpid());
	atexit(stop_servers);
	if (bk_test_system("bash '%s' start '%s'", script, srv_dir) != 0) {
		fprintf(stderr, "  the S3 test servers could not start (see above)\n");
		return -1;
	}
	char path[4200];
	snprintf(path, sizeof(path), "%s/endpoint", srv_dir);
	FILE *f = fopen(path, "r");
	if (f == NULL || fgets(endpoint, sizeof(endpoint), f) == NULL) {
		if (f)
			fclose(f);
		return -1;
	}
	fclose(f);
	endpoint[strcspn(endpoint, "\n")] = '\0';
	char state[4200];
	snprintf(state, sizeof(state), "%s/state", srv_dir);
	setenv("XDG_STATE_HOME", state, 1);
	setenv("AWS_ENDPOINT_URL", endpoint, 1);
	setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);
	unsetenv("AWS_REGION");
	return 0;
}

/* How many lines of the front's log contain both `a` and `b`. */
static int log_count(const char *a, const char *b)
{
	char path[4200], line[4096];
	int n = 0;
	snprintf(path, sizeof(path), "%s/front.log", srv_dir);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, a) && (b == NULL || strstr(line, b)))
			n++;
	fclose(f);
	return n;
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

/* Writes `n` bytes of pattern `seed` to the store's part path for `id`. */
static int make_part(bk_store *s, const char *id, size_t n, uint32_t seed, uint8_t **out_data)
{
	char *part = NULL;
	uint8_t *d = malloc(n ? n : 1);
	int rc = bk_store_part_path(s, id, &part);
	if (rc == 0 && d) {
		fill(d, n, seed);
		FILE *f = fopen(part, "wb");
		rc = f && fwrite(d, 1, n, f) == n ? 0 : -1;
		if (f)
			fclose(f);
	}
	bk_free(part);
	if (rc || d == NULL) {
		free(d);
		return -1;
	}
	*out_data = d;
	return 0;
}

static int file_equals(const char *path, const uint8_t *d, size_t n)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return 0;
	uint8_t *b = malloc(n + 1);
	size_t got = b ? fread(b, 1, n + 1, f) : 0;
	fclose(f);
	int eq = b && got == n && memcmp(b, d, n) == 0;
	free(b);
	return eq;
}

static const uint8_t STMT[] = "a statement\n";

static void t_spec_and_endpoint_checks(void)
{
	bk_store *s = NULL;
	REQUIRE(servers() == 0);
	CHECK_EQ(bk_store_open(&s, "s3://B/x"), BK_EUSER); /* bucket names are lower-case */
	CHECK_STR(bk_error_last()->reason, "store-invalid");
	CHECK_EQ(bk_store_open(&s, "s3://depot-bk/a/../b"), BK_EUSER);
	setenv("AWS_ENDPOINT_URL", "http://s3.example.com", 1);
	CHECK_EQ(bk_store_open(&s, "s3://depot-bk/p"), BK_EUSER);
	CHECK_STR(bk_error_last()->reason, "store-insecure");
	setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:", 1);
	CHECK_EQ(bk_store_open(&s, "s3://depot-bk/p"), BK_EUSER);
	CHECK_STR(bk_error_last()->reason, "store-invalid");
	setenv("AWS_ENDPOINT_URL", "https://s3.example.com", 1);
	CHECK_OK(bk_store_open(&s, "s3://depot-bk/p/"));
	CHECK_STR(bk_store_spec(s), "s3://depot-bk/p");
	bk_store_free(s);
	s = NULL;
	setenv("AWS_ENDPOINT_URL", endpoint, 1);
	unsetenv("AWS_SECRET_ACCESS_KEY");
	CHECK_EQ(bk_store_open(&s, "s3://depot-bk/p"), BK_EUSER);
	CHECK_STR(bk_error_last()->reason, "config-missing");
	setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);

	/* The configuration wins over the variables; the secret is a secret. */
	bk_config *cfg = NULL;
	REQUIRE_OK(bk_config_new(&cfg));
	CHECK(bk_config_is_secret("store.s3_secret_key"));
	CHECK(!bk_config_is_secret("store.s3_access_key"));
	CHECK_OK(bk_config_set(cfg, "depot.store", "s3://depot-bk/cfg", "test"));
	CHECK_OK(bk_config_set(cfg, "store.s3_endpoint", "http://10.0.0.1:9000", "test"));
	CHECK_EQ(bk_store_open_config(&s, cfg), BK_EUSER);
	CHECK_STR(bk_error_last()->reason, "store-insecure");
	CHECK_OK(bk_config_set(cfg, "store.s3_endpoint", endpoint, "test"));
	CHECK_OK(bk_config_set(cfg, "store.s3_secret_key", "not-the-secret", "test"));
	REQUIRE_OK(bk_store_open_config(&s, cfg));
	int there = 0;
	CHECK_EQ(bk_store_exists(s, "00000000-0000-4000-8000-000000000000", &there), BK_EAUTH);
	bk_store_free(s);
	bk_config_free(cfg);
}

static void t_put_get_list_remove(void)
{
	bk_store *s = NULL;
	uint8_t *d[3] = {NULL, NULL, NULL};
	const char *ids[3] = {"11111111-1111-4111-8111-111111111111",
			      "22222222-2222-4222-8222-222222222222",
			      "33333333-3333-4333-8333-333333333333"};
	char *loc = NULL, *path = NULL;
	bk_store_item *items = NULL;
	size_t n = 0;
	REQUIRE(servers() == 0);
	REQUIRE_OK(bk_store_open(&s, "s3://depot-bk/small"));
	for (int i = 0; i < 3; i++) {
		REQUIRE(make_part(s, ids[i], 1000 + 77 * (size_t)i, (uint32_t)i + 1, &d[i]) == 0);
		CHECK(bk_store_put(s, ids[i], "/nonexistent/part", STMT, sizeof(STMT) - 1, &loc) != 0);
		CHECK(loc == NULL);
	}
	/* A part that cannot be read stores nothing. */
	int there = 1;
	CHECK_OK(bk_store_exists(s, ids[0], &there));
	CHECK_EQ(there, 0);
	for (int i = 0; i < 3; i++) {
		char *part = NULL;
		REQUIRE_OK(bk_store_part_path(s, ids[i], &part));
		CHECK_OK(bk_store_put(s, ids[i], part, STMT, sizeof(STMT) - 1, &loc));
		CHECK(access(part, F_OK) != 0); /* consumed */
		bk_free(part);
		if (i == 0)
			CHECK_STR(loc, "s3://depot-bk/small/11111111-1111-4111-8111-111111111111.aibk");
		bk_free(loc);
		loc = NULL;
	}
	CHECK_EQ(log_count("PUT /depot-bk/small/11111111", "?"), 0); /* simple PUTs */
	CHECK_OK(bk_store_exists(s, ids[1], &there));
	CHECK_EQ(there, 1);
	/* An existing id is refused. */
	uint8_t *again = NULL;
	REQUIRE(make_part(s, ids[1], 10, 9, &again) == 0);
	char *part1 = NULL;
	REQUIRE_OK(bk_store_part_path(s, ids[1], &part1));
	CHECK_EQ(bk_store_put(s, ids[1], part1, STMT, sizeof(STMT) - 1, &loc), BK_EEXIST);
	unlink(part1);
	bk_free(part1);
	free(again);

	/* Get: a local copy with its statement beside it; a stream reader. */
	REQUIRE_OK(bk_store_get_path(s, ids[2], &path));
	CHECK(file_equals(path, d[2], 1154));
	char spath[4200];
	snprintf(spath, sizeof(spath), "%s" BK_STATEMENT_EXT, path);
	CHECK(file_equals(spath, STMT, sizeof(STMT) - 1));
	bk_stream *r = NULL;
	REQUIRE_OK(bk_store_open_reader(s, ids[1], &r));
	uint8_t buf[2000];
	CHECK_OK(bk_stream_read_full(r, buf, 1077, BK_DEADLINE_NONE));
	CHECK(memcmp(buf, d[1], 1077) == 0);
	size_t got = 9;
	CHECK_OK(bk_stream_read(r, buf, sizeof(buf), &got, BK_DEADLINE_NONE));
	CHECK_EQ(got, 0);
	bk_stream_free(r);
	CHECK_EQ(bk_store_get_path(s, "44444444-4444-4444-8444-444444444444", &loc), BK_ENOTFOUND);

	/* List in pages of 2: three backups, statements folded into them. */
	setenv("AIBO_RESTORE_S3_LIST_PAGE", "2", 1);
	bk_store *paged = NULL;
	REQUIRE_OK(bk_store_open(&paged, "s3://depot-bk/small"));
	unsetenv("AIBO_RESTORE_S3_LIST_PAGE");
	int before = log_count("list-type=2", "continuation-token=");
	CHECK_OK(bk_store_list(paged, &items, &n));
	CHECK(log_count("list-type=2", "continuation-token=") >= before + 2);
	CHECK_EQ(n, 3);
	for (size_t i = 0; i < n && i < 3; i++) {
		CHECK_EQ(items[i].kind, BK_STORE_ITEM_BACKUP);
		CHECK_STR(items[i].id, ids[i]);
	}
	if (n == 3)
		CHECK_EQ(items[0].size, 1000);
	bk_store_list_free(items, n);
	items = NULL;

	/* Remove: both objects and the cached copy go. */
	CHECK_OK(bk_store_remove(paged, ids[2]));
	CHECK_OK(bk_store_exists(s, ids[2], &there));
	CHECK_EQ(there, 0);
	CHECK(access(path, F_OK) != 0);
	CHECK_OK(bk_store_remove(s, ids[2])); /* already gone: fine */
	CHECK_OK(bk_store_list(s, &items, &n));
	CHECK_EQ(n, 2);
	bk_store_list_free(items, n);
	bk_store_free(paged);
	bk_free(path);
	for (int i = 0; i < 3; i++)
		free(d[i]);
	bk_store_free(s);
}

#define BIG (11u * 1024 * 1024 + 12345)

static void t_multipart_and_ranged_resume(void)
{
	bk_store *s = NULL;
	uint8_t *d = NULL;
	char *part = NULL, *loc = NULL, *path = NULL;
	const char *id = "55555555-5555-4555-8555-555555555555";
	REQUIRE(servers() == 0);
	setenv("AIBO_RESTORE_S3_PART_SIZE", "5M", 1);
	REQUIRE_OK(bk_store_open(&s, "s3://depot-bk/big"));
	unsetenv("AIBO_RESTORE_S3_PART_SIZE");
	REQUIRE(make_part(s, id, BIG, 42, &d) == 0);
	REQUIRE_OK(bk_store_part_path(s, id, &part));
	CHECK_OK(bk_store_put(s, id, part, STMT, sizeof(STMT) - 1, &loc));
	CHECK_EQ(log_count("POST /depot-bk/big/55555555", "?uploads="), 1);
	CHECK_EQ(log_count("PUT /depot-bk/big/55555555", "partNumber="), 3);
	CHECK_EQ(log_count("POST /depot-bk/big/55555555", "?uploadId="), 1);
	char journal[4200];
	snprintf(journal, sizeof(journal), "%s.upload", part);
	CHECK(access(journal, F_OK) != 0);

	REQUIRE_OK(bk_store_get_path(s, id, &path));
	CHECK(file_equals(path, d, BIG));
	/* A download cut after 3 MiB resumes with a ranged request. */
	char dl[4200];
	snprintf(dl, sizeof(dl), "%s.dl", path);
	unlink(path);
	FILE *f = fopen(dl, "wb");
	REQUIRE(f != NULL);
	CHECK(fwrite(d, 1, 3u << 20, f) == 3u << 20);
	fclose(f);
	bk_free(path);
	path = NULL;
	REQUIRE_OK(bk_store_get_path(s, id, &path));
	CHECK(file_equals(path, d, BIG));
	CHECK_EQ(log_count("GET /depot-bk/big/55555555-5555-4555-8555-555555555555.aibk 206",
			   "range=bytes=3145728-"),
		 1);
	CHECK(access(dl, F_OK) != 0);
	bk_free(path);
	bk_free(loc);
	bk_free(part);
	free(d);
	bk_store_free(s);
}

static void t_upload_resumed_after_kill(void)
{
	bk_store *s = NULL;
	uint8_t *d = NULL;
	char *part = NULL, *loc = NULL, *path = NULL;
	const char *id = "66666666-6666-4666-8666-666666666666";
	char ctl[4200], stalled[4200];
	REQUIRE(servers() == 0);
	setenv("AIBO_RESTORE_S3_PART_SIZE", "5M", 1);
	REQUIRE_OK(bk_store_open(&s, "s3://depot-bk/resume"));
	unsetenv("AIBO_RESTORE_S3_PART_SIZE");
	REQUIRE(make_part(s, id, BIG, 7, &d) == 0);
	REQUIRE_OK(bk_store_part_path(s, id, &part));
	snprintf(ctl, sizeof(ctl), "%s/ctl", srv_dir);
	snprintf(stalled, sizeof(stalled), "%s/ctl.stalled", srv_dir);
	unlink(stalled);
	FILE *f = fopen(ctl, "w");
	REQUIRE(f != NULL);
	fputs("2\n", f);
	fclose(f);

	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		char *l = NULL;
		int rc = bk_store_put(s, id, part, STMT, sizeof(STMT) - 1, &l);
		_exit(rc == 0 ? 0 : 3);
	}
	int waited = 0;
	while (access(stalled, F_OK) != 0 && waited < 300) {
		usleep(50000);
		waited++;
	}
	CHECK(access(stalled, F_OK) == 0);
	kill(pid, SIGKILL);
	int status = 0;
	waitpid(pid, &status, 0);
	CHECK(WIFSIGNALED(status));
	CHECK_EQ(log_count("PUT /depot-bk/resume/66666666", "partNumber=1&"), 1);
	int there = 1;
	CHECK_OK(bk_store_exists(s, id, &there));
	CHECK_EQ(there, 0);

	/* The same put again continues the upload: part 1 is not sent again. */
	CHECK_OK(bk_store_put(s, id, part, STMT, sizeof(STMT) - 1, &loc));
	CHECK_EQ(log_count("POST /depot-bk/resume/66666666", "?uploads="), 1);
	CHECK_EQ(log_count("GET /depot-bk/resume/66666666", "?uploadId="), 1); /* ListParts */
	CHECK_EQ(log_count("PUT /depot-bk/resume/66666666", "partNumber=1&"), 1);
	CHECK_EQ(log_count("PUT /depot-bk/resume/66666666", "partNumber=3&"), 1);
	REQUIRE_OK(bk_store_get_path(s, id, &path));
	CHECK(file_equals(path, d, BIG));
	bk_free(path);
	bk_free(loc);
	bk_free(part);
	free(d);
	bk_store_free(s);
}

static void t_wrong_credentials(void)
{
	bk_store *s = NULL;
	bk_store_item *items = NULL;
	size_t n = 0;
	REQUIRE(servers() == 0);
	setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret", 1);
	REQUIRE_OK(bk_store_open(&s, "s3://depot-bk/small"));
	CHECK_EQ(bk_store_list(s, &items, &n), BK_EAUTH);
	CHECK_STR(bk_error_last()->reason, "s3-auth-refused");
	CHECK(strstr(bk_error_last()->message, "SignatureDoesNotMatch") != NULL);
	CHECK(strstr(bk_error_last()->message, "wrong-secret") == NULL);
	bk_store_free(s);
	setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);
	setenv("AWS_ACCESS_KEY_ID", "SOMEONE", 1);
	REQUIRE_OK(bk_store_open(&s, "s3://depot-bk/small"));
	CHECK_EQ(bk_store_list(s, &items, &n), BK_EAUTH);
	CHECK(strstr(bk_error_last()->message, "InvalidAccessKeyId") != NULL);
	bk_store_free(s);
	setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
}

/* Tells the front what to do to the next backup download ("cut N", "stall N"). */
static void get_ctl(const char *what)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/getctl", srv_dir);
	FILE *f = fopen(path, "w");
	if (f) {
		fputs(what, f);
		fclose(f);
	}
}

/* Reads `r` to its end in reads of `step` bytes into `out` (at most `max`). */
static int read_all(bk_stream *r, uint8_t *out, size_t max, size_t step, size_t *got,
		    bk_deadline d)
{
	*got = 0;
	for (;;) {
		size_t n = 0, want = max - *got < step ? max - *got : step;
		int rc = bk_stream_read(r, out + *got, want, &n, d);
		if (rc)
			return rc;
		if (n == 0)
			return 0;
		*got += n;
		if (*got == max) {
			uint8_t extra;
			rc = bk_stream_read(r, &extra, 1, &n, d);
			return rc ? rc : n ? -1 : 0;
		}
	}
}

#define STREAMED (3u * 1024 * 1024 + 777)

static void t_streaming_reader(void)
{
	bk_store *s = NULL;
	bk_stream *r = NULL;
	uint8_t *d = NULL, *d2 = NULL, *got = NULL;
	char *part = NULL, *loc = NULL;
	const char *id = "77777777-7777-4777-8777-777777777777";
	uint64_t requests = 0, pauses = 0, size = 0;
	size_t n = 0;
	REQUIRE(servers() == 0);
	REQUIRE_OK(bk_store_open(&s, "s3://depot-bk/stream"));
	REQUIRE(make_part(s, id, STREAMED, 7, &d) == 0);
	REQUIRE_OK(bk_store_part_path(s, id, &part));
	REQUIRE_OK(bk_store_put(s, id, part, STMT, sizeof(STMT) - 1, &loc));
	got = malloc(STREAMED);
	REQUIRE(got != NULL);

	/* Read slowly in small pieces: one GET, paused while the buffer is full. */
	REQUIRE_OK(bk_store__s3_open_reader(&r, s, 0, id));
	CHECK_OK(bk_stream_ctrl(r, BK_STREAM_CTRL_SIZE, &size));
	CHECK_EQ(size, STREAMED);
	CHECK_OK(read_all(r, got, STREAMED, 4000, &n, bk_deadline_in(30000)));
	CHECK_EQ(n, STREAMED);
	CHECK(memcmp(got, d, STREAMED) == 0);
	bk_store__s3_reader_stats(r, &requests, &pauses);
	CHECK_EQ(requests, 1);
	CHECK(pauses > 0); /* the object is 12 times the buffer */
	CHECK_EQ(r->bytes_in, STREAMED);
	bk_stream_free(r);
	r = NULL;
	/* Nothing was written to the local cache. */
	char cached[4200];
	snprintf(cached, sizeof(cached), "%s/state/aibo-restore/s3-cache/depot-bk_stream/%s.aibk",
		 srv_dir, id);
	CHECK(access(cached, F_OK) != 0);

	/* A connection cut after 1000000 bytes: resumed with a Range request. */
	int ranged = log_count("/depot-bk/stream/77777777", "range=bytes=1000000-");
	get_ctl("cut 1000000");
	REQUIRE_OK(bk_store__s3_open_reader(&r, s, 0, id));
	memset(got, 0, STREAMED);
	CHECK_OK(read_all(r, got, STREAMED, 65536, &n, bk_deadline_in(30000)));
	CHECK_EQ(n, STREAMED);
	CHECK(memcmp(got, d, STREAMED) == 0);
	bk_store__s3_reader_stats(r, &requests, &pauses);
	CHECK_EQ(requests, 2);
	CHECK_EQ(log_count("GET /depot-bk/stream/77777777-7777-4777-8777-777777777777.aibk 206",
			   "range=bytes=1000000-"),
		 ranged + 1);
	bk_stream_free(r);
	r = NULL;

	/* A stalled answer times out at the caller's deadline. */
	get_ctl("stall 100000");
	REQUIRE_OK(bk_store__s3_open_reader(&r, s, 0, id));
	int64_t t0 = bk_now_ms();
	CHECK_EQ(read_all(r, got, STREAMED, 65536, &n, bk_deadline_in(1500)), BK_ETIMEOUT);
	CHECK_STR(bk_error_last()->reason, "s3-timeout");
	CHECK_EQ(n, 100000);
	CHECK(bk_now_ms() - t0 < 5000);
	bk_stream_free(r);
	r = NULL;

	/* The object replaced during a read (after a cut): refused. */
	get_ctl("cut 500000");
	REQUIRE_OK(bk_store__s3_open_reader(&r, s, 0, id));
	CHECK_OK(bk_stream_read_full(r, got, 100, BK_DEADLINE_NONE));
	CHECK_OK(bk_store_remove(s, id));
	REQUIRE(make_part(s, id, STREAMED, 8, &d2) == 0);
	bk_free(loc);
	loc = NULL;
	CHECK_OK(bk_store_put(s, id, part, STMT, sizeof(STMT) - 1, &loc));
	CHECK_EQ(read_all(r, got, STREAMED, 65536, &n, bk_deadline_in(30000)), BK_ERROR);
	CHECK_STR(bk_error_last()->reason, "s3-object-changed");
	bk_stream_free(r);
	r = NULL;

	/* Missing, refused, not an s3 store; an owned store is freed with it. */
	CHECK_EQ(bk_store__s3_open_reader(&r, s, 0, "88888888-8888-4888-8888-888888888888"),
		 BK_ENOTFOUND);
	CHECK(r == NULL);
	bk_store *own = NULL;
	REQUIRE_OK(bk_store_open(&own, "s3://depot-bk/stream"));
	REQUIRE_OK(bk_store__s3_open_reader(&r, own, 1, id));
	CHECK_OK(bk_stream_read_full(r, got, 10, BK_DEADLINE_NONE));
	CHECK(memcmp(got, d2, 10) == 0);
	bk_stream_free(r);
	r = NULL;
	setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret", 1);
	REQUIRE_OK(bk_store_open(&own, "s3://depot-bk/stream"));
	setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);
	CHECK_EQ(bk_store__s3_open_reader(&r, own, 1, id), BK_EAUTH);
	CHECK_STR(bk_error_last()->reason, "s3-auth-refused");
	bk_store *dir = NULL;
	char dpath[4200];
	snprintf(dpath, sizeof(dpath), "dir:%s/dirstore", srv_dir);
	REQUIRE_OK(bk_store_open(&dir, dpath));
	CHECK_EQ(bk_store__s3_open_reader(&r, dir, 0, id), BK_EINVALID);
	bk_store_free(dir);

	bk_free(loc);
	bk_free(part);
	free(got);
	free(d);
	free(d2);
	bk_store_free(s);
}

BK_RUN_TESTS(BK_TEST(t_spec_and_endpoint_checks), BK_TEST(t_put_get_list_remove),
	     BK_TEST(t_multipart_and_ranged_resume), BK_TEST(t_upload_resumed_after_kill),
	     BK_TEST(t_wrong_credentials), BK_TEST(t_streaming_reader))
