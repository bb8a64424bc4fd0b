/* Writing a memory archive: manifest first, then every file, as a
 * zstd-compressed pax tar on a bk_stream. */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <sodium.h>

#include "libbackup/archive/archive.h"
#include "libbackup/util/util.h"

#define COPY_BUF   (256 * 1024)
#define RING_SLOTS 8
/* libarchive hands its output over in blocks of this size. */
#define BLOCK_SIZE (64 * 1024)

enum { SLOT_DATA = 1, SLOT_END };

typedef struct wctx {
	bk_stream *out;
	bk_deadline deadline;
	int rc;
	bk_archive_ring *ring; /* output thread's queue (NULL: write `out` here) */
	bk_archive_slot *cur;  /* the slot being filled */
} wctx;

/* The error kept by a stopped queue, raised on this thread. */
static int ring_error(bk_archive_ring *r, const char *what)
{
	bk_archive_err e;
	if (bk_archive__ring_failed(r, &e))
		return bk_archive__err_raise(&e);
	return bk__error_set(BK_ERROR, NULL, "%s: stopped early", what);
}

static la_ssize_t on_write(struct archive *a, void *data, const void *buf, size_t len)
{
	wctx *c = data;
	if (c->out == NULL)
		return -1;
	if (c->ring == NULL) {
		int rc = bk_stream_write(c->out, buf, len, c->deadline);
		if (rc) {
			c->rc = rc;
			archive_set_error(a, EIO, "output stream failed");
			return -1;
		}
		return (la_ssize_t)len;
	}
	const uint8_t *p = buf;
	size_t left = len, cap = bk_archive__ring_cap(c->ring);
	while (left > 0) {
		if (c->cur == NULL && (c->cur = bk_archive__ring_acquire(c->ring)) == NULL) {
			c->rc = ring_error(c->ring, "output");
			archive_set_error(a, EIO, "output stream failed");
			return -1;
		}
		size_t k = cap - c->cur->len < left ? cap - c->cur->len : left;
		memcpy(c->cur->buf + c->cur->len, p, k);
		c->cur->len += k;
		p += k;
		left -= k;
		if (c->cur->len == cap) {
			bk_archive__ring_publish(c->ring);
			c->cur = NULL;
		}
	}
	return (la_ssize_t)len;
}

static int on_close(struct archive *a, void *data)
{
	BK_UNUSED(a);
	BK_UNUSED(data);
	return ARCHIVE_OK;
}

/* The error of a failed libarchive call: the stream's own error when the
 * stream failed, otherwise libarchive's message. */
static int archive_fail(struct archive *a, const wctx *c, const char *what)
{
	if (c->rc)
		return c->rc;
	return bk__error_set(BK_ERROR, "archive-write", "%s: %s", what,
	                     archive_error_string(a) ? archive_error_string(a)
	                                             : "libarchive error");
}

static int write_data(struct archive *a, const wctx *c, const void *buf, size_t len,
                      const char *what)
{
	while (len > 0) {
		la_ssize_t n = archive_write_data(a, buf, len);
		if (n <= 0)
			return archive_fail(a, c, what);
		buf = (const uint8_t *)buf + n;
		len -= (size_t)n;
	}
	return 0;
}

static int changed(const char *path, const char *how)
{
	return bk__error_set(BK_ERROR, "source-changed",
	                     "%s: %s since it was hashed; the memory changed during the backup",
	                     path, how);
}

/* --- Reading the files ---
 *
 * read_entry() reads one file into buffers it gets from `get` and hands
 * over with `put`: straight into the archive on the calling thread, or
 * through a queue from the reader thread. */

typedef struct sink {
	/* A buffer of *cap bytes; NULL when the consumer stopped. */
	uint8_t *(*get)(void *ctx, size_t *cap);
	/* Hands over `len` bytes of the last buffer (SLOT_DATA), or says the
	 * file is complete and checked (SLOT_END). */
	int (*put)(void *ctx, size_t len, int kind);
	void *ctx;
} sink;

/* Reads one file, checking that it still is what the first pass hashed.
 * Rather than hashing it again with BLAKE2b, the content is checked with the
 * Poly1305 tag the first pass computed under a random key that never leaves
 * this process: a change made by anyone who does not know the key goes
 * unnoticed with probability below 2^-75 for a file of 4 GiB (Poly1305's
 * bound on differing messages), at a tenth of the cost.
 * Returns 0, a negative error, or 1 when the consumer stopped. */
static int read_entry(int rootfd, const bk_manifest_entry *e, const uint8_t *check_key,
                      const sink *k)
{
	int rc, pfd = -1, fd = -1;
	crypto_onetimeauth_state st;
	uint8_t tag[BK_ARCHIVE_CHECK_LEN];
	const char *base = strrchr(e->path, '/') + 1;
	struct stat sb;

	if ((rc = bk_archive__open_dir(rootfd, e->path, (size_t)(base - 1 - e->path), false, &pfd)))
		goto done;
	fd = openat(pfd, base, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		rc = errno == ENOENT || errno == ELOOP ? changed(e->path, "removed or replaced")
		                                       : bk__error_errno(errno, "%s", e->path);
		goto done;
	}
	if (fstat(fd, &sb) != 0) {
		rc = bk__error_errno(errno, "%s", e->path);
		goto done;
	}
	if (!S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != e->size) {
		rc = changed(e->path, "replaced or resized");
		goto done;
	}
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	crypto_onetimeauth_init(&st, check_key);
	uint64_t left = e->size;
	while (left > 0) {
		size_t cap = 0;
		uint8_t *buf = k->get(k->ctx, &cap);
		if (buf == NULL) {
			rc = 1;
			goto done;
		}
		size_t want = left < cap ? (size_t)left : cap;
		ssize_t n = read(fd, buf, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = bk__error_errno(errno, "%s: read", e->path);
			goto done;
		}
		if (n == 0) {
			rc = changed(e->path, "shrank");
			goto done;
		}
		crypto_onetimeauth_update(&st, buf, (size_t)n);
		left -= (uint64_t)n;
		if ((rc = k->put(k->ctx, (size_t)n, SLOT_DATA)))
			goto done;
	}
	uint8_t one;
	ssize_t extra;
	do
		extra = read(fd, &one, 1);
	while (extra < 0 && errno == EINTR);
	if (extra != 0) {
		rc = extra > 0 ? changed(e->path, "grew") : bk__error_errno(errno, "%s", e->path);
		goto done;
	}
	crypto_onetimeauth_final(&st, tag);
	if (sodium_memcmp(tag, e->check, BK_ARCHIVE_CHECK_LEN) != 0) {
		rc = changed(e->path, "was modified");
		goto done;
	}
	if (k->get(k->ctx, &(size_t){0}) == NULL) {
		rc = 1;
		goto done;
	}
	rc = k->put(k->ctx, 0, SLOT_END);
done:
	sodium_memzero(&st, sizeof(st));
	if (fd >= 0)
		close(fd);
	if (pfd >= 0)
		close(pfd);
	return rc;
}

/* Writing: the state of the calling thread. */
typedef struct wjob {
	struct archive *a;
	wctx *c;
	const bk_manifest_entry *e;
	uint8_t *buf;
	const uint8_t *check_key;
	uint64_t done;
	bk_progress_tracker *prog;
} wjob;

/* The sink of the single-threaded writer: straight into the archive. */
static uint8_t *direct_get(void *ctx, size_t *cap)
{
	wjob *j = ctx;
	*cap = COPY_BUF;
	return j->buf;
}

static int direct_put(void *ctx, size_t len, int kind)
{
	wjob *j = ctx;
	if (kind != SLOT_DATA)
		return 0;
	int rc = write_data(j->a, j->c, j->buf, len, j->e->path);
	if (rc == 0) {
		j->done += len;
		rc = bk_progress_update(j->prog, j->done, false);
	}
	return rc;
}

/* The reader thread: reads and re-hashes every file, in order, into a queue. */
typedef struct reader {
	bk_archive_ring *ring;
	const bk_manifest *m;
	int rootfd;
	const uint8_t *check_key;
} reader;

static uint8_t *ring_get(void *ctx, size_t *cap)
{
	reader *r = ctx;
	bk_archive_slot *s = bk_archive__ring_acquire(r->ring);
	*cap = bk_archive__ring_cap(r->ring);
	return s ? s->buf : NULL;
}

static int ring_put(void *ctx, size_t len, int kind)
{
	reader *r = ctx;
	/* The slot acquired last: acquire returns the same one until it is
	 * published. */
	bk_archive_slot *s = bk_archive__ring_acquire(r->ring);
	if (s == NULL)
		return 1;
	s->len = len;
	s->kind = kind;
	bk_archive__ring_publish(r->ring);
	return 0;
}

static void *reader_main(void *arg)
{
	reader *r = arg;
	sink k = {ring_get, ring_put, r};
	for (size_t i = 0; i < bk_manifest_count(r->m); i++) {
		int rc = read_entry(r->rootfd, bk_manifest_entry_at(r->m, i), r->check_key, &k);
		if (rc > 0)
			return NULL;
		if (rc < 0) {
			bk_archive_err e;
			bk_archive__err_keep(&e, rc);
			bk_archive__ring_stop(r->ring, &e);
			return NULL;
		}
	}
	bk_archive__ring_close(r->ring);
	return NULL;
}

/* The output thread: writes the compressed archive to the stream. */
typedef struct writer {
	bk_archive_ring *ring;
	bk_stream *out;
	bk_deadline deadline;
} writer;

static void *writer_main(void *arg)
{
	writer *w = arg;
	bk_archive_slot *s;
	while ((s = bk_archive__ring_peek(w->ring)) != NULL) {
		int rc = bk_stream_write(w->out, s->buf, s->len, w->deadline);
		if (rc) {
			bk_archive_err e;
			bk_archive__err_keep(&e, rc);
			bk_archive__ring_stop(w->ring, &e);
			break;
		}
		bk_archive__ring_release(w->ring);
	}
	return NULL;
}

/* Writes one entry's header and content (from the reader thread's queue
 * `in`, or read here when it is NULL). */
static int write_entry(wjob *j, struct archive_entry *ae, int rootfd, bk_archive_ring *in)
{
	int rc;
	const bk_manifest_entry *e = j->e;
	char *tarpath = bk__asprintf("domains/%s", e->path);
	if (tarpath == NULL)
		return BK_ENOMEM;
	archive_entry_clear(ae);
	archive_entry_set_pathname(ae, tarpath);
	archive_entry_set_filetype(ae, AE_IFREG);
	archive_entry_set_perm(ae, (__LA_MODE_T)e->mode);
	archive_entry_set_size(ae, (la_int64_t)e->size);
	archive_entry_set_mtime(ae, (time_t)e->mtime, 0);
	archive_entry_set_uid(ae, 0);
	archive_entry_set_gid(ae, 0);
	/* A warning is a path libarchive could not convert (no UTF-8 locale):
	 * it then stores the bytes as they are, which is what we want. */
	int ar = archive_write_header(j->a, ae);
	if (ar != ARCHIVE_OK && ar != ARCHIVE_WARN) {
		rc = archive_fail(j->a, j->c, e->path);
		goto done;
	}
	if (in == NULL) {
		sink k = {direct_get, direct_put, j};
		rc = read_entry(rootfd, e, j->check_key, &k);
		if (rc)
			goto done;
	} else {
		for (;;) {
			bk_archive_slot *s = bk_archive__ring_peek(in);
			if (s == NULL) {
				rc = ring_error(in, e->path);
				goto done;
			}
			if (s->kind == SLOT_END) {
				bk_archive__ring_release(in);
				break;
			}
			rc = write_data(j->a, j->c, s->buf, s->len, e->path);
			j->done += s->len;
			bk_archive__ring_release(in);
			if (rc == 0)
				rc = bk_progress_update(j->prog, j->done, false);
			if (rc)
				goto done;
		}
	}
	rc = archive_write_finish_entry(j->a) == ARCHIVE_OK ? 0 : archive_fail(j->a, j->c, e->path);
done:
	bk__free(tarpath);
	return rc;
}

static const bk_progress_step write_steps[] = {
    {"hash", 1.0},
    {"archive", 1.0},
};

/* Stops and joins the worker threads (a no-op for those not started). */
static void stop_workers(bk_archive_ring *in, pthread_t *rt, bool *rt_on, bk_archive_ring *outq,
                         pthread_t *wt, bool *wt_on)
{
	if (*rt_on) {
		bk_archive__ring_stop(in, NULL);
		pthread_join(*rt, NULL);
		*rt_on = false;
	}
	if (*wt_on) {
		bk_archive__ring_stop(outq, NULL);
		pthread_join(*wt, NULL);
		*wt_on = false;
	}
}

int bk_archive_write(bk_stream *out, const char *src_dir, const bk_archive_write_opts *opts,
                     bk_manifest **out_manifest, bk_archive_stats *out_stats)
{
	int rc;
	bk_archive_write_opts defaults = BK_ARCHIVE_WRITE_OPTS_INIT;
	bk_manifest *m = NULL;
	char *json = NULL;
	size_t json_len = 0;
	struct archive *a = NULL;
	struct archive_entry *ae = NULL;
	uint8_t *buf = NULL;
	int rootfd = -1;
	bool opened = false;
	wctx c = {0};
	bk_progress_tracker prog;
	bk_archive_locale loc = {0};
	bk_archive_ring *inq = NULL, *outq = NULL;
	reader rd = {0};
	writer wr = {0};
	pthread_t rt, wt;
	bool rt_on = false, wt_on = false;
	wjob j = {0};
	uint8_t check_key[BK_ARCHIVE_CHECK_KEY];

	if (out_manifest)
		*out_manifest = NULL;
	if (out_stats)
		memset(out_stats, 0, sizeof(*out_stats));
	if (out == NULL || src_dir == NULL)
		return bk__error_set(BK_EINVALID, NULL, "archive write: missing argument");
	if (opts == NULL)
		opts = &defaults;
	if (opts->version != BK_ARCHIVE_WRITE_OPTS_VERSION)
		return bk__error_set(BK_EINVALID, NULL, "archive write: unknown options version");
	if (opts->threads < 0)
		return bk__error_set(BK_EINVALID, NULL, "archive write: negative thread count");
	bk_progress_init(&prog, opts->progress, opts->progress_payload, src_dir, write_steps,
	                 BK_ARRAY_LEN(write_steps));
	crypto_onetimeauth_keygen(check_key);

	/* Pass 1: hash every file into the manifest. */
	if ((rc = bk_progress_step_begin(&prog, "hash", 0)))
		goto done;
	if ((rc = bk_archive__scan(&m, src_dir, opts->domains, &opts->info, &opts->limits,
	                           opts->threads, check_key)))
		goto done;
	if ((rc = bk_manifest_finish(m, &opts->limits)))
		goto done;
	if ((rc = bk_manifest_encode(m, &json, &json_len)))
		goto done;
	if (opts->limits.max_manifest_bytes && json_len > opts->limits.max_manifest_bytes) {
		rc = bk__error_set(BK_ENOSPACE, "limit-exceeded",
		                   "%s: manifest of %zu bytes, more than the limit of %zu", src_dir,
		                   json_len, opts->limits.max_manifest_bytes);
		goto done;
	}

	/* Pass 2: stream the archive. */
	if ((rc = bk_progress_step_begin(&prog, "archive", bk_manifest_total_bytes(m))))
		goto done;
	rootfd = open(src_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0) {
		rc = bk__error_errno(errno, "%s", src_dir);
		goto done;
	}
	if (opts->threads > 0) {
		if ((rc = bk_archive__ring_new(&inq, RING_SLOTS, COPY_BUF)) ||
		    (rc = bk_archive__ring_new(&outq, RING_SLOTS, COPY_BUF)))
			goto done;
	} else {
		buf = bk__malloc(COPY_BUF);
		if (buf == NULL) {
			rc = BK_ENOMEM;
			goto done;
		}
	}
	bk_archive__utf8_enter(&loc);
	a = archive_write_new();
	ae = archive_entry_new();
	if (a == NULL || ae == NULL) {
		rc = bk__error_oom();
		goto done;
	}
	c.out = out;
	c.deadline = opts->deadline;
	char level[16];
	snprintf(level, sizeof(level), "%d",
	         opts->compression_level > 0 ? opts->compression_level : 3);
	if (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
	    archive_write_add_filter_zstd(a) != ARCHIVE_OK ||
	    archive_write_set_filter_option(a, "zstd", "compression-level", level) != ARCHIVE_OK ||
	    archive_write_set_bytes_per_block(a, BLOCK_SIZE) != ARCHIVE_OK ||
	    archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK) {
		rc =
		    bk__error_set(BK_ERROR, "archive-write", "%s: cannot set up the archive: %s",
		                  src_dir, archive_error_string(a) ? archive_error_string(a) : "?");
		goto done;
	}
	if (outq) {
		wr.ring = outq;
		wr.out = out;
		wr.deadline = opts->deadline;
		if (pthread_create(&wt, NULL, writer_main, &wr) != 0) {
			rc = bk__error_set(BK_ERROR, NULL, "%s: cannot start the output thread",
			                   src_dir);
			goto done;
		}
		wt_on = true;
		c.ring = outq;
	}
	if (archive_write_open2(a, &c, NULL, on_write, on_close, NULL) != ARCHIVE_OK) {
		rc = archive_fail(a, &c, src_dir);
		goto done;
	}
	opened = true;

	archive_entry_set_pathname(ae, BK_MANIFEST_NAME);
	archive_entry_set_filetype(ae, AE_IFREG);
	archive_entry_set_perm(ae, 0644);
	archive_entry_set_size(ae, (la_int64_t)json_len);
	archive_entry_set_mtime(ae, (time_t)bk_manifest_created(m), 0);
	archive_entry_set_uid(ae, 0);
	archive_entry_set_gid(ae, 0);
	if (archive_write_header(a, ae) != ARCHIVE_OK) {
		rc = archive_fail(a, &c, BK_MANIFEST_NAME);
		goto done;
	}
	if ((rc = write_data(a, &c, json, json_len, BK_MANIFEST_NAME)))
		goto done;
	/* The reader starts once the manifest is out: from here on, a file
	 * must match its manifest entry. */
	if (inq) {
		rd.ring = inq;
		rd.m = m;
		rd.rootfd = rootfd;
		rd.check_key = check_key;
		if (pthread_create(&rt, NULL, reader_main, &rd) != 0) {
			rc = bk__error_set(BK_ERROR, NULL, "%s: cannot start the reader thread",
			                   src_dir);
			goto done;
		}
		rt_on = true;
	}
	j.a = a;
	j.c = &c;
	j.buf = buf;
	j.check_key = check_key;
	j.prog = &prog;
	for (size_t i = 0; i < bk_manifest_count(m); i++) {
		j.e = bk_manifest_entry_at(m, i);
		rc = write_entry(&j, ae, rootfd, inq);
		if (rc) {
			if (bk_error_last()->reason == NULL ||
			    strcmp(bk_error_last()->reason, "source-changed") != 0)
				bk__error_prefix(rc, "%s", src_dir);
			goto done;
		}
	}
	opened = false;
	if (archive_write_close(a) != ARCHIVE_OK) {
		rc = archive_fail(a, &c, src_dir);
		goto done;
	}
	if (outq) {
		/* The last partial block, then wait for the output thread. */
		if (c.cur && c.cur->len)
			bk_archive__ring_publish(outq);
		c.cur = NULL;
		bk_archive__ring_close(outq);
		pthread_join(wt, NULL);
		wt_on = false;
		if (bk_archive__ring_failed(outq, NULL)) {
			rc = ring_error(outq, src_dir);
			goto done;
		}
	}
	if ((rc = bk_progress_update(&prog, j.done, true)))
		goto done;
	if (out_stats) {
		out_stats->tar_bytes = (uint64_t)archive_filter_bytes(a, 0);
		out_stats->compressed_bytes = (uint64_t)archive_filter_bytes(a, -1);
		out_stats->entries = bk_manifest_count(m) + 1;
		out_stats->files = bk_manifest_count(m);
		out_stats->file_bytes = bk_manifest_total_bytes(m);
	}
	if (out_manifest) {
		*out_manifest = m;
		m = NULL;
	}
	rc = 0;
done:
	/* Stop the threads before anything they use goes away; the output
	 * thread writes nothing more once its queue is stopped. */
	stop_workers(inq, &rt, &rt_on, outq, &wt, &wt_on);
	if (a) {
		/* A failed archive must not flush anything more to the stream: the
		 * callback refuses once `out` is cleared. Closing (rather than
		 * archive_write_fail) lets libarchive 3.6 release its buffers. */
		if (opened) {
			c.out = NULL;
			(void)archive_write_close(a);
		}
		archive_write_free(a);
	}
	archive_entry_free(ae);
	bk_archive__utf8_leave(&loc);
	bk_archive__ring_free(inq);
	bk_archive__ring_free(outq);
	sodium_memzero(check_key, sizeof(check_key));
	bk__free(buf);
	bk__free(json);
	bk_manifest_free(m);
	if (rootfd >= 0)
		close(rootfd);
	return rc;
}
