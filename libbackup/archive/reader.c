/* Reading a memory archive: every entry is checked against the manifest while
 * streaming; files go into a staging folder inside the destination and the
 * domains are moved into place only once everything checked. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <sodium.h>

#include "libbackup/archive/archive.h"
#include "libbackup/util/util.h"

#define IN_BUF   (64 * 1024)
#define DATA_BUF (256 * 1024)

typedef struct rctx {
	bk_stream *in;
	bk_deadline deadline;
	int rc;
	uint8_t *buf;
} rctx;

static la_ssize_t on_read(struct archive *a, void *data, const void **buf)
{
	rctx *c = data;
	size_t n = 0;
	int rc = bk_stream_read(c->in, c->buf, IN_BUF, &n, c->deadline);
	if (rc) {
		c->rc = rc;
		archive_set_error(a, EIO, "input stream failed");
		return -1;
	}
	*buf = c->buf;
	return (la_ssize_t)n;
}

typedef struct reader {
	struct archive *a;
	rctx c;
	const bk_archive_read_opts *opts;
	bk_manifest *m;
	uint8_t *seen;
	uint8_t *data;
	unsigned install; /* domains written (0 in verify-only mode) */
	int destfd;
	int stagefd;
	char stage_name[64];
	bool staged;
	uint64_t done;
	uint64_t dirs;
	bk_progress_tracker prog;
	bk_archive_stats stats;
} reader;

/* A libarchive failure: the stream's own error when it failed, otherwise
 * the archive is corrupt or truncated. */
static int archive_fail(reader *r, const char *what)
{
	if (r->c.rc)
		return r->c.rc;
	const char *msg = archive_error_string(r->a);
	return bk__error_set(BK_EFORMAT, "archive-corrupt", "%s: %s", what,
	                     msg ? msg : "corrupt or truncated archive");
}

static int unsafe(const char *path, const char *why)
{
	return bk__error_set(BK_EFORMAT, "archive-unsafe-path", "%s: %s", path, why);
}

/* Absolute paths, empty, "." and ".." components anywhere. */
static int check_tar_path(const char *path, size_t max_path)
{
	/* First, so that no message below prints such a path. */
	for (const char *q = path; *q; q++)
		if ((unsigned char)*q < 0x20 || *q == 0x7f || *q == '\\')
			return bk__error_set(BK_EFORMAT, "archive-unsafe-path",
			                     "archive: an entry has a control character or "
			                     "backslash in its path");
	if (max_path && strlen(path) > max_path + 9)
		return bk__error_set(BK_ENOSPACE, "limit-exceeded",
		                     "archive: an entry's path is longer than %zu bytes", max_path);
	if (!bk_archive__valid_utf8(path, strlen(path)))
		return bk__error_set(BK_EFORMAT, "archive-unsafe-path",
		                     "archive: an entry's path is not valid UTF-8");
	if (path[0] == '\0' || path[0] == '/')
		return unsafe(path, "absolute or empty path");
	const char *p = path;
	for (;;) {
		const char *end = strchr(p, '/');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return unsafe(path, "'.' or '..' path component");
		if (n == 0 && end != NULL)
			return unsafe(path, "empty path component");
		if (end == NULL)
			break;
		p = end + 1;
	}
	return 0;
}

static int read_manifest(reader *r)
{
	int rc;
	struct archive_entry *ae;
	uint8_t *json = NULL;
	int ar = archive_read_next_header(r->a, &ae);
	if (ar == ARCHIVE_EOF)
		return bk__error_set(BK_EFORMAT, "manifest-not-first", "archive: empty, no %s",
		                     BK_MANIFEST_NAME);
	if (ar != ARCHIVE_OK)
		return archive_fail(r, "archive");
	if (archive_filter_code(r->a, 0) != ARCHIVE_FILTER_ZSTD)
		return bk__error_set(BK_EFORMAT, "archive-corrupt", "archive: not zstd-compressed");
	const char *path = archive_entry_pathname(ae);
	if (path == NULL || strcmp(path, BK_MANIFEST_NAME) != 0 ||
	    archive_entry_filetype(ae) != AE_IFREG || archive_entry_hardlink(ae) != NULL)
		return bk__error_set(BK_EFORMAT, "manifest-not-first",
		                     "archive: the first entry is '%s', not %s", path ? path : "?",
		                     BK_MANIFEST_NAME);
	la_int64_t size = archive_entry_size(ae);
	size_t max = r->opts->limits.max_manifest_bytes;
	if (!archive_entry_size_is_set(ae) || size < 0 || (max && (uint64_t)size > max))
		return bk__error_set(BK_ENOSPACE, "limit-exceeded",
		                     "archive: %s of %lld bytes, more than the limit of %zu",
		                     BK_MANIFEST_NAME, (long long)size, max);
	json = bk__malloc((size_t)size + 1);
	if (json == NULL)
		return BK_ENOMEM;
	size_t got = 0;
	for (;;) {
		la_ssize_t n = archive_read_data(r->a, json + got, (size_t)size + 1 - got);
		if (n < 0) {
			rc = archive_fail(r, BK_MANIFEST_NAME);
			goto done;
		}
		if (n == 0)
			break;
		got += (size_t)n;
		if (got > (size_t)size) {
			rc = bk__error_set(BK_EFORMAT, "archive-corrupt",
			                   "%s: longer than declared", BK_MANIFEST_NAME);
			goto done;
		}
	}
	if (got != (size_t)size) {
		rc =
		    bk__error_set(BK_EFORMAT, "archive-corrupt", "%s: truncated", BK_MANIFEST_NAME);
		goto done;
	}
	rc = bk_manifest_parse(&r->m, json, got, &r->opts->limits);
	r->stats.entries++;
done:
	bk__free(json);
	return rc;
}

static int check_space(reader *r)
{
	struct statvfs sv;
	if (fstatvfs(r->destfd, &sv) != 0)
		return bk__error_errno(errno, "%s: statvfs", r->opts->dest_dir);
	uint64_t block = sv.f_frsize ? sv.f_frsize : 4096, need = 0, files = 0;
	for (size_t i = 0; i < bk_manifest_count(r->m); i++) {
		const bk_manifest_entry *e = bk_manifest_entry_at(r->m, i);
		if (!(r->install & BK_DOMAIN_BIT(e->domain)))
			continue;
		uint64_t blocks = e->size / block + (e->size % block ? 1 : 0);
		if (blocks > UINT64_MAX / block || !bk_u64_add(&need, need, blocks * block))
			need = UINT64_MAX;
		files++;
	}
	uint64_t avail = (uint64_t)sv.f_bavail;
	avail = avail > UINT64_MAX / sv.f_frsize ? UINT64_MAX : avail * sv.f_frsize;
	if (need > avail)
		return bk__error_set(
		    BK_ENOSPACE, "no-space", "%s: the memory needs %llu bytes, %llu are free",
		    r->opts->dest_dir, (unsigned long long)need, (unsigned long long)avail);
	if (sv.f_files != 0 && files > (uint64_t)sv.f_favail)
		return bk__error_set(BK_ENOSPACE, "no-space",
		                     "%s: the memory needs %llu files, %llu inodes are free",
		                     r->opts->dest_dir, (unsigned long long)files,
		                     (unsigned long long)sv.f_favail);
	return 0;
}

static int prepare_dest(reader *r)
{
	int rc;
	const char *dest = r->opts->dest_dir;
	if ((rc = bk_mkdir_p(dest, 0700)))
		return rc;
	r->destfd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (r->destfd < 0)
		return bk__error_errno(errno, "%s", dest);
	if (!r->opts->skip_space_check && (rc = check_space(r)))
		return rc;
	snprintf(r->stage_name, sizeof(r->stage_name), ".staging-%s", bk_manifest_backup_id(r->m));
	/* A staging folder left by an interrupted restore of the same backup. */
	if ((rc = bk_archive__remove_tree(r->destfd, r->stage_name)))
		return rc;
	if (mkdirat(r->destfd, r->stage_name, 0700) != 0)
		return bk__error_errno(errno, "%s/%s", dest, r->stage_name);
	r->staged = true;
	r->stagefd =
	    openat(r->destfd, r->stage_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (r->stagefd < 0)
		return bk__error_errno(errno, "%s/%s", dest, r->stage_name);
	for (int d = 0; d < BK_DOMAIN_COUNT; d++)
		if ((r->install & BK_DOMAIN_BIT(d)) &&
		    mkdirat(r->stagefd, bk_domain_name(d), 0755) != 0)
			return bk__error_errno(errno, "%s/%s/%s", dest, r->stage_name,
			                       bk_domain_name(d));
	return 0;
}

static int read_dir_entry(reader *r, struct archive_entry *ae, const char *path)
{
	char rel[PATH_MAX];
	size_t len = strlen(path);
	int domain;
	BK_UNUSED(ae);
	if (len > 0 && path[len - 1] == '/')
		len--;
	if (len == 7 && memcmp(path, "domains", 7) == 0)
		return 0;
	if (len <= 8 || memcmp(path, "domains/", 8) != 0 || len - 8 >= sizeof(rel))
		return bk__error_set(BK_EFORMAT, "archive-undeclared-entry",
		                     "%s: folder outside domains/", path);
	memcpy(rel, path + 8, len - 8);
	rel[len - 8] = '\0';
	if (r->opts->limits.max_entries && ++r->dirs > r->opts->limits.max_entries)
		return bk__error_set(BK_ENOSPACE, "limit-exceeded", "archive: too many folders");
	int rc;
	if (strchr(rel, '/') == NULL) {
		domain = bk_domain_lookup(rel, strlen(rel));
		if (domain < 0)
			return bk__error_set(BK_EFORMAT, "archive-undeclared-entry",
			                     "%s: not a memory domain", path);
	} else if ((rc = bk_archive__check_path(rel, r->opts->limits.max_path, &domain))) {
		return bk__error_prefix(rc, "archive");
	}
	if (!bk_manifest_domains(r->m)->d[domain].present)
		return bk__error_set(BK_EFORMAT, "archive-undeclared-entry",
		                     "%s: domain not in the manifest", path);
	if (!(r->install & BK_DOMAIN_BIT(domain)))
		return 0;
	int fd;
	if ((rc = bk_archive__open_dir(r->stagefd, rel, strlen(rel), true, &fd)))
		return bk__error_prefix(rc, "archive");
	close(fd);
	return 0;
}

static int read_file_entry(reader *r, struct archive_entry *ae, const char *path)
{
	int rc, domain, pfd = -1, fd = -1;
	crypto_generichash_state st;
	uint8_t digest[BK_ARCHIVE_DIGEST_LEN];
	if (strncmp(path, "domains/", 8) != 0)
		return bk__error_set(BK_EFORMAT,
		                     strcmp(path, BK_MANIFEST_NAME) == 0
		                         ? "archive-duplicate"
		                         : "archive-undeclared-entry",
		                     "%s: entry outside domains/", path);
	const char *rel = path + 8;
	if ((rc = bk_archive__check_path(rel, r->opts->limits.max_path, &domain)))
		return bk__error_prefix(rc, "archive");
	const bk_manifest_entry *e = bk_manifest_find(r->m, rel);
	if (e == NULL)
		return bk__error_set(BK_EFORMAT, "archive-undeclared-entry",
		                     "%s: not in the manifest", path);
	size_t index = (size_t)(e - bk_manifest_entry_at(r->m, 0));
	if (r->seen[index])
		return bk__error_set(BK_EFORMAT, "archive-duplicate", "%s: appears twice", path);
	r->seen[index] = 1;
	if (!archive_entry_size_is_set(ae) || archive_entry_size(ae) < 0 ||
	    (uint64_t)archive_entry_size(ae) != e->size)
		return bk__error_set(
		    BK_EVERIFY, "entry-size-mismatch", "%s: %lld bytes, the manifest says %llu",
		    path, (long long)archive_entry_size(ae), (unsigned long long)e->size);
	bool to_disk = (r->install & BK_DOMAIN_BIT(domain)) != 0;
	if (to_disk) {
		const char *base = strrchr(rel, '/') + 1;
		if ((rc = bk_archive__open_dir(r->stagefd, rel, (size_t)(base - 1 - rel), true,
		                               &pfd)))
			goto done;
		fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0) {
			rc = errno == EEXIST ? bk__error_set(BK_EFORMAT, "archive-duplicate",
			                                     "%s: appears twice", path)
			                     : bk__error_errno(errno, "%s", path);
			goto done;
		}
	}
	crypto_generichash_init(&st, NULL, 0, BK_ARCHIVE_DIGEST_LEN);
	uint64_t total = 0;
	for (;;) {
		la_ssize_t n = archive_read_data(r->a, r->data, DATA_BUF);
		if (n < 0) {
			rc = archive_fail(r, path);
			goto done;
		}
		if (n == 0)
			break;
		total += (uint64_t)n;
		if (total > e->size) {
			rc = bk__error_set(BK_EVERIFY, "entry-size-mismatch",
			                   "%s: longer than the manifest says", path);
			goto done;
		}
		crypto_generichash_update(&st, r->data, (size_t)n);
		for (la_ssize_t off = 0; to_disk && off < n;) {
			ssize_t w = write(fd, r->data + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				rc = bk__error_errno(w < 0 ? errno : EIO, "%s: write", path);
				goto done;
			}
			off += w;
		}
		r->done += (uint64_t)n;
		if ((rc = bk_progress_update(&r->prog, r->done, false)))
			goto done;
	}
	if (total != e->size) {
		rc = bk__error_set(BK_EVERIFY, "entry-size-mismatch",
		                   "%s: %llu bytes, the manifest says %llu", path,
		                   (unsigned long long)total, (unsigned long long)e->size);
		goto done;
	}
	crypto_generichash_final(&st, digest, BK_ARCHIVE_DIGEST_LEN);
	if (sodium_memcmp(digest, e->digest, BK_ARCHIVE_DIGEST_LEN) != 0) {
		rc = bk__error_set(BK_EVERIFY, "entry-digest-mismatch",
		                   "%s: content does not match its BLAKE2b-256 digest", path);
		goto done;
	}
	if (to_disk) {
		struct timespec ts[2] = {{.tv_sec = (time_t)e->mtime},
		                         {.tv_sec = (time_t)e->mtime}};
		if (fchmod(fd, (mode_t)e->mode) != 0 || futimens(fd, ts) != 0) {
			rc = bk__error_errno(errno, "%s", path);
			goto done;
		}
	}
	r->stats.files++;
	r->stats.file_bytes += total;
	rc = 0;
done:
	if (fd >= 0 && close(fd) != 0 && rc == 0)
		rc = bk__error_errno(errno, "%s: close", path);
	if (pfd >= 0)
		close(pfd);
	return rc;
}

static int read_entries(reader *r)
{
	int rc;
	struct archive_entry *ae;
	for (;;) {
		int ar = archive_read_next_header(r->a, &ae);
		if (ar == ARCHIVE_EOF)
			break;
		/* A warning is about charset conversion: the path is checked below. */
		if (ar != ARCHIVE_OK && ar != ARCHIVE_WARN)
			return archive_fail(r, "archive");
		r->stats.entries++;
		const char *path = archive_entry_pathname(ae);
		if (path == NULL)
			return bk__error_set(BK_EFORMAT, "archive-corrupt",
			                     "archive: entry %llu has no path",
			                     (unsigned long long)r->stats.entries);
		if ((rc = check_tar_path(path, r->opts->limits.max_path)))
			return rc;
		mode_t type = archive_entry_filetype(ae);
		if (archive_entry_hardlink(ae) != NULL || type == AE_IFLNK)
			return bk__error_set(BK_EFORMAT, "archive-link",
			                     "%s: links are not allowed", path);
		if (type != AE_IFREG && type != AE_IFDIR)
			return bk__error_set(BK_EFORMAT, "archive-special-file",
			                     "%s: not a regular file or folder", path);
		rc = type == AE_IFDIR ? read_dir_entry(r, ae, path) : read_file_entry(r, ae, path);
		if (rc)
			return rc;
	}
	for (size_t i = 0; i < bk_manifest_count(r->m); i++)
		if (!r->seen[i])
			return bk__error_set(BK_EFORMAT, "archive-missing-entry",
			                     "domains/%s: in the manifest but not in the archive",
			                     bk_manifest_entry_at(r->m, i)->path);
	return 0;
}

/* Moves each staged domain into place, replacing an existing one. */
static int commit(reader *r)
{
	const char *dest = r->opts->dest_dir;
	if (!r->opts->no_sync && syncfs(r->stagefd) != 0)
		return bk__error_errno(errno, "%s: sync", dest);
	for (int d = 0; d < BK_DOMAIN_COUNT; d++) {
		if (!(r->install & BK_DOMAIN_BIT(d)))
			continue;
		const char *name = bk_domain_name(d);
		if (renameat2(r->stagefd, name, r->destfd, name, RENAME_NOREPLACE) == 0)
			continue;
		if (errno == EEXIST &&
		    renameat2(r->stagefd, name, r->destfd, name, RENAME_EXCHANGE) == 0)
			continue; /* the old domain is now in the staging folder */
		if (errno != EINVAL && errno != ENOSYS)
			return bk__error_errno(errno, "%s/%s: move into place", dest, name);
		/* No renameat2 on this file system: move the old one away first. */
		char old[32];
		snprintf(old, sizeof(old), "%s.old", name);
		if (renameat(r->destfd, name, r->stagefd, old) != 0 && errno != ENOENT)
			return bk__error_errno(errno, "%s/%s: move away", dest, name);
		if (renameat(r->stagefd, name, r->destfd, name) != 0)
			return bk__error_errno(errno, "%s/%s: move into place", dest, name);
	}
	if (!r->opts->no_sync && fsync(r->destfd) != 0)
		return bk__error_errno(errno, "%s: fsync", dest);
	return 0;
}

static const bk_progress_step read_steps[] = {
    {"read", 1.0},
};

int bk_archive_read(bk_stream *in, const bk_archive_read_opts *opts, bk_manifest **out_manifest,
                    bk_archive_stats *out_stats)
{
	int rc;
	bk_archive_read_opts defaults = BK_ARCHIVE_READ_OPTS_INIT;
	reader r;
	bk_archive_locale loc = {0};
	memset(&r, 0, sizeof(r));
	r.destfd = r.stagefd = -1;
	if (out_manifest)
		*out_manifest = NULL;
	if (out_stats)
		memset(out_stats, 0, sizeof(*out_stats));
	if (in == NULL)
		return bk__error_set(BK_EINVALID, NULL, "archive read: no stream");
	if (opts == NULL)
		opts = &defaults;
	if (opts->version != BK_ARCHIVE_READ_OPTS_VERSION)
		return bk__error_set(BK_EINVALID, NULL, "archive read: unknown options version");
	r.opts = opts;
	r.c.in = in;
	r.c.deadline = opts->deadline;
	bk_progress_init(&r.prog, opts->progress, opts->progress_payload,
	                 opts->dest_dir ? opts->dest_dir : "archive", read_steps,
	                 BK_ARRAY_LEN(read_steps));
	r.c.buf = bk__malloc(IN_BUF);
	r.data = bk__malloc(DATA_BUF);
	if (r.c.buf == NULL || r.data == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	bk_archive__utf8_enter(&loc);
	r.a = archive_read_new();
	if (r.a == NULL) {
		rc = bk__error_oom();
		goto done;
	}
	if (archive_read_support_filter_zstd(r.a) != ARCHIVE_OK ||
	    archive_read_support_format_tar(r.a) != ARCHIVE_OK) {
		rc = bk__error_set(BK_ERROR, "archive-read", "archive: cannot set up the reader");
		goto done;
	}
	if (archive_read_open(r.a, &r.c, NULL, on_read, NULL) != ARCHIVE_OK) {
		rc = archive_fail(&r, "archive");
		goto done;
	}
	if ((rc = read_manifest(&r)))
		goto done;
	unsigned declared = 0;
	for (int d = 0; d < BK_DOMAIN_COUNT; d++)
		if (bk_manifest_domains(r.m)->d[d].present)
			declared |= BK_DOMAIN_BIT(d);
	if (opts->dest_dir) {
		r.install = opts->domains ? opts->domains & BK_DOMAINS_ALL : declared;
		if (r.install & ~declared) {
			for (int d = 0; d < BK_DOMAIN_COUNT; d++)
				if (r.install & ~declared & BK_DOMAIN_BIT(d)) {
					rc = bk__error_set(BK_ENOTFOUND, "domain-not-in-archive",
					                   "archive: no domain '%s' in this backup",
					                   bk_domain_name(d));
					goto done;
				}
		}
	}
	r.seen = bk__calloc(bk_manifest_count(r.m) ? bk_manifest_count(r.m) : 1, 1);
	if (r.seen == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	if ((rc = bk_progress_step_begin(&r.prog, "read", bk_manifest_total_bytes(r.m))))
		goto done;
	if (opts->dest_dir && (rc = prepare_dest(&r)))
		goto done;
	if ((rc = read_entries(&r)))
		goto done;
	if ((rc = bk_progress_update(&r.prog, r.done, true)))
		goto done;
	if (opts->dest_dir && (rc = commit(&r)))
		goto done;
	r.stats.tar_bytes = (uint64_t)archive_filter_bytes(r.a, 0);
	r.stats.compressed_bytes = (uint64_t)archive_filter_bytes(r.a, -1);
	if (out_stats)
		*out_stats = r.stats;
	if (out_manifest) {
		*out_manifest = r.m;
		r.m = NULL;
	}
	rc = 0;
done:
	if (r.staged) {
		close(r.stagefd);
		r.stagefd = -1;
		int rm = bk_archive__remove_tree(r.destfd, r.stage_name);
		if (rm && rc == 0)
			rc = rm;
	}
	if (r.stagefd >= 0)
		close(r.stagefd);
	if (r.destfd >= 0)
		close(r.destfd);
	if (r.a)
		archive_read_free(r.a);
	bk_archive__utf8_leave(&loc);
	bk__free(r.seen);
	bk__free(r.data);
	bk__free(r.c.buf);
	bk_manifest_free(r.m);
	return rc;
}
