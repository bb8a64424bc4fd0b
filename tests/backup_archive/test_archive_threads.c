/* The memory archive writer with worker threads: same bytes as the
 * single-threaded writer, changes during the backup refused, failures of the
 * output stream, cancellation and allocation failures handled cleanly. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include <libbackup/libbackup.h>

#include "helpers.h"
#include "libbackup/archive/archive.h"
#include "libbackup/util/util.h"
#include "testlib.h"

#define BIG_FILES 12
#define BIG_SIZE  (1024 * 1024 + 333)

static const char *reason(void)
{
	const char *r = bk_error_last()->reason;
	return r ? r : "";
}

/* Files larger than the queues between the threads, small ones, empty ones
 * and nesting: `src` gets BIG_FILES files of BIG_SIZE bytes named
 * photos/big-NN.raw. */
static void make_tree(const char *src)
{
	uint8_t *buf = malloc(BIG_SIZE);
	REQUIRE(buf != NULL);
	for (int i = 0; i < BIG_FILES; i++) {
		char rel[64];
		snprintf(rel, sizeof(rel), "photos/big-%02d.raw", i);
		/* Half compressible, half noise. */
		memset(buf, 'a' + i, BIG_SIZE / 2);
		randombytes_buf(buf + BIG_SIZE / 2, BIG_SIZE - BIG_SIZE / 2);
		CHECK(t_put(src, rel, buf, BIG_SIZE) == 0);
	}
	free(buf);
	for (int i = 0; i < 300; i++) {
		char rel[64], data[64];
		snprintf(rel, sizeof(rel), "memories/d%d/item-%03d.json", i % 7, i);
		int n = snprintf(data, sizeof(data), "{\"item\":%d}", i * 31);
		CHECK(t_put(src, rel, data, (size_t)(i % 9 == 0 ? 0 : n)) == 0);
	}
	CHECK(t_put(src, "settings/empty", "", 0) == 0);
}

static void fixed_info(bk_archive_write_opts *wo)
{
	wo->info.serial = "ERS1-0042";
	wo->info.model = "ERS-1000";
	wo->info.backup_id = "0b7f6c1e-3a52-4d7e-9c1a-5e2f8d9a7b31";
	wo->info.created = 1767225600;
}

/* The threaded writer produces exactly the bytes of the single-threaded one,
 * and they read back to the same tree. */
static void test_same_bytes(void)
{
	char src[1024];
	snprintf(src, sizeof(src), "%s", bk_test_path("src"));
	make_tree(src);
	uint8_t *one = NULL, *many = NULL;
	size_t one_len = 0, many_len = 0;
	bk_archive_stats s1, s2;
	bk_manifest *m1 = NULL, *m2 = NULL;
	bk_archive_write_opts wo = BK_ARCHIVE_WRITE_OPTS_INIT;
	fixed_info(&wo);
	REQUIRE_OK(t_write(src, &wo, &one, &one_len, &m1, &s1));
	for (int threads = 1; threads <= 3; threads += 2) {
		wo.threads = threads;
		REQUIRE_OK(t_write(src, &wo, &many, &many_len, &m2, &s2));
		CHECK_EQ(many_len, one_len);
		CHECK(many_len == one_len && memcmp(one, many, one_len) == 0);
		CHECK_EQ(s2.compressed_bytes, many_len);
		CHECK_EQ(s2.tar_bytes, s1.tar_bytes);
		CHECK_EQ(s2.files, BIG_FILES + 301);
		CHECK(bk_domain_digests_equal(bk_manifest_domains(m1), bk_manifest_domains(m2)));
		bk_manifest_free(m2);
		m2 = NULL;
		free(many);
		many = NULL;
	}
	bk_domain_digests dd;
	CHECK_OK(bk_tree_digests(src, &dd));
	CHECK(bk_domain_digests_equal(&dd, bk_manifest_domains(m1)));
	CHECK_OK(t_read(one, one_len, bk_test_path("dest"), 0, NULL));
	CHECK_OK(bk_tree_digests(bk_test_path("dest"), &dd));
	CHECK(bk_domain_digests_equal(&dd, bk_manifest_domains(m1)));
	bk_manifest_free(m1);
	free(one);
}

/* --- Changes during the backup --- */

typedef struct changer {
	const char *src;
	const char *rel;
	int how; /* 0: rewrite in place, same size and times; 1: remove; 2: grow */
	bool at_start; /* when the archive step begins, else once streaming */
	int calls;
} changer;

static void change_file(const changer *c)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", c->src, c->rel);
	if (c->how == 1) {
		CHECK(unlink(path) == 0);
		return;
	}
	struct stat st;
	REQUIRE(stat(path, &st) == 0);
	int fd = open(path, O_WRONLY);
	REQUIRE(fd >= 0);
	if (c->how == 0) {
		/* One byte flipped in the middle; size and modification time
		 * restored, so only the content tells. */
		uint8_t b = 0;
		int rfd = open(path, O_RDONLY);
		CHECK(rfd >= 0 && pread(rfd, &b, 1, st.st_size / 2) == 1);
		close(rfd);
		b ^= 0x20;
		CHECK(pwrite(fd, &b, 1, st.st_size / 2) == 1);
		struct timespec ts[2] = {st.st_atim, st.st_mtim};
		CHECK(futimens(fd, ts) == 0);
	} else {
		CHECK(pwrite(fd, "more", 4, st.st_size) == 4);
	}
	close(fd);
}

/* At the start of the archive step, before any file is read again. */
static int change_cb(const bk_progress *p, void *payload)
{
	changer *c = payload;
	if (strcmp(p->step, "archive") == 0 && c->at_start && c->calls == 0) {
		c->calls++;
		change_file(c);
	}
	return 0;
}

/* A filter on the output stream: calls a hook at its first write and then
 * sleeps `delay_us` at every write (a slow disk or network). */
typedef struct hook_stream {
	bk_stream base;
	void (*hook)(void *arg);
	void *arg;
	unsigned delay_us;
	unsigned writes;
} hook_stream;

static int hook_write(bk_stream *s, const void *buf, size_t len, bk_deadline d)
{
	hook_stream *h = (hook_stream *)s;
	if (h->writes++ == 0 && h->hook)
		h->hook(h->arg);
	if (h->delay_us)
		usleep(h->delay_us);
	return bk_stream_write(s->next, buf, len, d);
}

static void hook_release(bk_stream *s)
{
	free(s);
}

static const bk_stream_ops hook_ops = {
    .version = BK_STREAM_OPS_VERSION,
    .name = "test-hook",
    .write = hook_write,
    .release = hook_release,
};

/* Archives `src` through a hook stream into memory; only the status. */
static int write_hooked(const char *src, const bk_archive_write_opts *wo, void (*hook)(void *),
                        void *arg, unsigned delay_us)
{
	bk_stream *mem = NULL;
	hook_stream *h = calloc(1, sizeof(*h));
	if (h == NULL || bk_stream_mem_writer(&mem, 0) != 0) {
		free(h);
		return -12345;
	}
	h->base.ops = &hook_ops;
	h->base.next = mem;
	h->base.owns_next = 1;
	h->hook = hook;
	h->arg = arg;
	h->delay_us = delay_us;
	int rc = bk_archive_write(&h->base, src, wo, NULL, NULL);
	bk_stream_free(&h->base);
	return rc;
}

/* At the first bytes out: the reader thread is then at most a few MiB ahead
 * of the compressor, far from the last big files. */
static void change_hook(void *arg)
{
	changer *c = arg;
	if (!c->at_start && c->calls == 0) {
		c->calls++;
		change_file(c);
	}
}

static void test_source_changed(void)
{
	const struct {
		const char *rel;
		int how;
		bool at_start;
	} cases[] = {
	    /* The last big file, changed once the reader has been running. */
	    {"photos/big-11.raw", 0, false},
	    {"photos/big-11.raw", 1, false},
	    {"photos/big-10.raw", 2, false},
	    /* Changed before the reader starts. */
	    {"memories/d3/item-010.json", 0, true},
	    {"memories/d3/item-010.json", 1, true},
	};
	char src[1024];
	snprintf(src, sizeof(src), "%s", bk_test_path("src"));
	for (size_t i = 0; i < BK_ARRAY_LEN(cases); i++) {
		/* The single-threaded writer only for changes made before the
		 * archive step (backup_archive covers it otherwise). */
		for (int threads = cases[i].at_start ? 0 : 2; threads <= 2; threads += 2) {
			make_tree(src);
			changer c = {src, cases[i].rel, cases[i].how, cases[i].at_start, 0};
			bk_archive_write_opts wo = BK_ARCHIVE_WRITE_OPTS_INIT;
			wo.threads = threads;
			wo.progress = change_cb;
			wo.progress_payload = &c;
			int rc = write_hooked(src, &wo, change_hook, &c, 0);
			CHECK_EQ(c.calls, 1);
			CHECK_EQ(rc, BK_ERROR);
			CHECK_STR(reason(), "source-changed");
			if (strstr(bk_error_last()->message, cases[i].rel) == NULL) {
				fprintf(stderr, "  case %zu, %d threads: %s\n", i, threads,
				        bk_error_last()->message);
				bk_test_failures++;
			}
		}
	}
}

/* --- Failures of the output stream, on the output thread --- */

static void test_output_failure(void)
{
	char src[1024];
	snprintf(src, sizeof(src), "%s", bk_test_path("src"));
	make_tree(src);
	uint8_t *data = NULL;
	size_t len = 0;
	bk_archive_write_opts wo = BK_ARCHIVE_WRITE_OPTS_INIT;
	/* The same id and time every run: the same bytes, so the last cut
	 * falls on the last byte. */
	fixed_info(&wo);
	REQUIRE_OK(t_write(src, &wo, &data, &len, NULL, NULL));
	free(data);
	uint64_t cuts[] = {0, 1, 4096, 300000, len / 2, len - 1};
	for (size_t i = 0; i < BK_ARRAY_LEN(cuts); i++) {
		bk_stream *mem = NULL, *cut = NULL;
		REQUIRE_OK(bk_stream_mem_writer(&mem, 0));
		REQUIRE_OK(bk_stream_cut_new(&cut, mem, 1, cuts[i], BK_EDISCONNECTED));
		wo.threads = 2;
		bk_manifest *m = NULL;
		int rc = bk_archive_write(cut, src, &wo, &m, NULL);
		if (rc != BK_EDISCONNECTED) {
			fprintf(stderr, "  cut at %llu of %zu: %d\n", (unsigned long long)cuts[i], len,
			        rc);
			bk_test_failures++;
		}
		CHECK(m == NULL);
		bk_manifest_free(m);
		/* Nothing past the cut, nothing written after the return. */
		size_t got = 0;
		(void)bk_stream_mem_data(mem, &got);
		CHECK(got <= cuts[i]);
		usleep(1000);
		size_t later = 0;
		(void)bk_stream_mem_data(mem, &later);
		CHECK_EQ(later, got);
		bk_stream_free(cut);
	}
	/* A full output: the size limit of a memory stream. */
	bk_stream *small = NULL;
	REQUIRE_OK(bk_stream_mem_writer(&small, 100000));
	CHECK_EQ(bk_archive_write(small, src, &wo, NULL, NULL), BK_ENOSPACE);
	bk_stream_free(small);
}

/* Cancels at the first report with bytes done: the slow output makes sure
 * one comes while the threads run. */
static int cancel_cb(const bk_progress *p, void *payload)
{
	int *calls = payload;
	return strcmp(p->step, "archive") == 0 && p->done > 0 && ++*calls >= 1;
}

static void test_cancel(void)
{
	char src[1024];
	snprintf(src, sizeof(src), "%s", bk_test_path("src"));
	make_tree(src);
	int calls = 0;
	bk_archive_write_opts wo = BK_ARCHIVE_WRITE_OPTS_INIT;
	wo.threads = 3;
	wo.progress = cancel_cb;
	wo.progress_payload = &calls;
	CHECK_EQ(write_hooked(src, &wo, NULL, NULL, 30000), BK_ECANCELLED);
	CHECK_EQ(calls, 1);
}

/* Every allocation failing in turn: BK_ENOMEM or success, nothing leaked,
 * and threads always joined (ASan/LSan in the sanitizer build). */
static void test_alloc_failures(void)
{
	char src[1024];
	snprintf(src, sizeof(src), "%s", bk_test_path("src"));
	CHECK(t_put(src, "memories/a.json", "{\"a\":1}", 7) == 0);
	CHECK(t_put(src, "memories/b/c.json", "{\"c\":2}", 7) == 0);
	CHECK(t_put(src, "photos/p.raw", "raw", 3) == 0);
	int rc = -1;
	long n;
	for (n = 1; n < 2000 && rc != 0; n++) {
		bk_stream *w = NULL;
		REQUIRE_OK(bk_stream_mem_writer(&w, 0));
		bk_archive_write_opts wo = BK_ARCHIVE_WRITE_OPTS_INIT;
		wo.threads = 2;
		bk__alloc_fail_at(n);
		rc = bk_archive_write(w, src, &wo, NULL, NULL);
		bk__alloc_fail_at(0);
		bk_stream_free(w);
		if (rc != 0 && rc != BK_ENOMEM) {
			fprintf(stderr, "  alloc %ld: %d %s\n", n, rc, bk_error_last()->message);
			bk_test_failures++;
		}
	}
	CHECK_EQ(rc, 0);
	CHECK(n > 5);
}

/* The writing thread below the encryption in a pack. */
static void test_async_writer(void)
{
	uint8_t *data = malloc(3 << 20);
	REQUIRE(data != NULL);
	randombytes_buf(data, 3 << 20);
	/* Everything arrives, in order, whatever the sizes written. */
	bk_stream *mem = NULL, *aw = NULL;
	REQUIRE_OK(bk_stream_mem_writer(&mem, 0));
	REQUIRE_OK(bk_archive__async_writer_new(&aw, mem, 0, BK_ARCHIVE_ASYNC_WRITEBACK));
	size_t off = 0, step = 1;
	while (off < (3u << 20)) {
		size_t n = step < (3u << 20) - off ? step : (3u << 20) - off;
		REQUIRE_OK(bk_stream_write(aw, data + off, n, BK_DEADLINE_NONE));
		off += n;
		step = step * 7 + 3;
	}
	CHECK_OK(bk_stream_close(aw, BK_DEADLINE_NONE));
	size_t got = 0;
	const uint8_t *d = bk_stream_mem_data(mem, &got);
	CHECK_EQ(got, 3u << 20);
	CHECK(got == (3u << 20) && memcmp(d, data, got) == 0);
	bk_stream_free(mem);
	/* A failure below reaches the writer, with its code and message, from
	 * a later write or from closing; nothing is written past it. */
	for (int at_close = 0; at_close < 2; at_close++) {
		bk_stream *cut = NULL;
		REQUIRE_OK(bk_stream_mem_writer(&mem, 0));
		REQUIRE_OK(bk_stream_cut_new(&cut, mem, 1, at_close ? (2u << 20) + 5 : 1000,
		                             BK_EDISCONNECTED));
		REQUIRE_OK(bk_archive__async_writer_new(&aw, cut, 1, 0));
		int rc = 0;
		size_t chunk = at_close ? 64 * 1024 : 4096;
		for (off = 0; off < (3u << 20) && rc == 0; off += chunk)
			rc = bk_stream_write(aw, data + off, chunk, BK_DEADLINE_NONE);
		if (rc == 0)
			rc = bk_stream_close(aw, BK_DEADLINE_NONE);
		else
			bk_stream_free(aw);
		CHECK_EQ(rc, BK_EDISCONNECTED);
		if (!at_close)
			CHECK(off < (3u << 20));
	}
	/* Abandoned without closing: the thread stops, nothing leaks. */
	REQUIRE_OK(bk_stream_mem_writer(&mem, 0));
	REQUIRE_OK(bk_archive__async_writer_new(&aw, mem, 1, 0));
	CHECK_OK(bk_stream_write(aw, data, 1 << 20, BK_DEADLINE_NONE));
	bk_stream_free(aw);
	free(data);
}

static void test_bad_options(void)
{
	char src[1024];
	snprintf(src, sizeof(src), "%s", bk_test_path("src"));
	CHECK(t_put(src, "memories/a.json", "{}", 2) == 0);
	bk_archive_write_opts wo = BK_ARCHIVE_WRITE_OPTS_INIT;
	wo.threads = -1;
	uint8_t *data = NULL;
	size_t len = 0;
	CHECK_EQ(t_write(src, &wo, &data, &len, NULL, NULL), BK_EINVALID);
	/* More threads than the cap, or than files: still one archive. */
	wo.threads = 1000;
	CHECK_OK(t_write(src, &wo, &data, &len, NULL, NULL));
	CHECK_OK(t_read(data, len, NULL, 0, NULL));
	free(data);
}

BK_RUN_TESTS(BK_TEST(test_same_bytes), BK_TEST(test_source_changed), BK_TEST(test_output_failure),
             BK_TEST(test_cancel), BK_TEST(test_alloc_failures), BK_TEST(test_async_writer),
             BK_TEST(test_bad_options))
