/* Writing a memory archive: manifest first, then every file, as a
 * zstd-compressed pax tar on a bk_stream. */
#include <errno.h>
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

#define COPY_BUF (256 * 1024)

typedef struct wctx {
	bk_stream *out;
	bk_deadline deadline;
	int rc;
} wctx;

static la_ssize_t on_write(struct archive *a, void *data, const void *buf, size_t len)
{
	wctx *c = data;
	if (c->out == NULL)
		return -1;
	int rc = bk_stream_write(c->out, buf, len, c->deadline);
	if (rc) {
		c->rc = rc;
		archive_set_error(a, EIO, "output stream failed");
		return -1;
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

/* Streams one file, re-hashing it and checking it against its entry. */
static int write_file(struct archive *a, const wctx *c, struct archive_entry *ae, int rootfd,
                      const bk_manifest_entry *e, uint8_t *buf, uint64_t *done,
                      bk_progress_tracker *prog)
{
	int rc, pfd = -1, fd = -1;
	char *tarpath = NULL;
	crypto_generichash_state st;
	uint8_t digest[BK_ARCHIVE_DIGEST_LEN];
	const char *base = strrchr(e->path, '/') + 1;
	struct stat sb;

	if ((rc = bk_archive__open_dir(rootfd, e->path, (size_t)(base - 1 - e->path), false, &pfd)))
		goto done;
	fd = openat(pfd, base, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		rc = errno == ENOENT ? changed(e->path, "removed")
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
	tarpath = bk__asprintf("domains/%s", e->path);
	if (tarpath == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
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
	int ar = archive_write_header(a, ae);
	if (ar != ARCHIVE_OK && ar != ARCHIVE_WARN) {
		rc = archive_fail(a, c, e->path);
		goto done;
	}
	crypto_generichash_init(&st, NULL, 0, BK_ARCHIVE_DIGEST_LEN);
	uint64_t left = e->size;
	while (left > 0) {
		size_t want = left < COPY_BUF ? (size_t)left : COPY_BUF;
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
		crypto_generichash_update(&st, buf, (size_t)n);
		if ((rc = write_data(a, c, buf, (size_t)n, e->path)))
			goto done;
		left -= (uint64_t)n;
		*done += (uint64_t)n;
		if ((rc = bk_progress_update(prog, *done, false)))
			goto done;
	}
	ssize_t extra;
	do
		extra = read(fd, buf, 1);
	while (extra < 0 && errno == EINTR);
	if (extra != 0) {
		rc = extra > 0 ? changed(e->path, "grew") : bk__error_errno(errno, "%s", e->path);
		goto done;
	}
	crypto_generichash_final(&st, digest, BK_ARCHIVE_DIGEST_LEN);
	if (sodium_memcmp(digest, e->digest, BK_ARCHIVE_DIGEST_LEN) != 0) {
		rc = changed(e->path, "was modified");
		goto done;
	}
	if (archive_write_finish_entry(a) != ARCHIVE_OK)
		rc = archive_fail(a, c, e->path);
done:
	bk__free(tarpath);
	if (fd >= 0)
		close(fd);
	if (pfd >= 0)
		close(pfd);
	return rc;
}

static const bk_progress_step write_steps[] = {
    {"hash", 1.0},
    {"archive", 1.0},
};

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
	uint64_t done_bytes = 0;
	bk_archive_locale loc = {0};

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
	bk_progress_init(&prog, opts->progress, opts->progress_payload, src_dir, write_steps,
	                 BK_ARRAY_LEN(write_steps));

	/* Pass 1: hash every file into the manifest. */
	if ((rc = bk_progress_step_begin(&prog, "hash", 0)))
		goto done;
	if ((rc = bk_archive__scan(&m, src_dir, opts->domains, &opts->info, &opts->limits)))
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
	buf = bk__malloc(COPY_BUF);
	if (buf == NULL) {
		rc = BK_ENOMEM;
		goto done;
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
	    archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK) {
		rc =
		    bk__error_set(BK_ERROR, "archive-write", "%s: cannot set up the archive: %s",
		                  src_dir, archive_error_string(a) ? archive_error_string(a) : "?");
		goto done;
	}
	if (opts->threads > 0) {
		char th[16];
		snprintf(th, sizeof(th), "%d", opts->threads);
		/* Older libarchive builds do not know the option: then one thread. */
		(void)archive_write_set_filter_option(a, "zstd", "threads", th);
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
	for (size_t i = 0; i < bk_manifest_count(m); i++) {
		rc = write_file(a, &c, ae, rootfd, bk_manifest_entry_at(m, i), buf, &done_bytes,
		                &prog);
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
	if ((rc = bk_progress_update(&prog, done_bytes, true)))
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
	bk__free(buf);
	bk__free(json);
	bk_manifest_free(m);
	if (rootfd >= 0)
		close(rootfd);
	return rc;
}
