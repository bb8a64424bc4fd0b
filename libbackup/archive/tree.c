/* Walking a memory folder (<root>/<domain>/<rel>) safely: file descriptors
 * relative to the root, no symbolic link ever followed. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <locale.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "libbackup/archive/archive.h"
#include "libbackup/util/util.h"

#define HASH_BUF (512 * 1024)

void bk_archive__utf8_enter(bk_archive_locale *l)
{
	l->mine = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
	l->prev = l->mine ? uselocale(l->mine) : (locale_t)0;
}

void bk_archive__utf8_leave(bk_archive_locale *l)
{
	if (l->mine) {
		uselocale(l->prev);
		freelocale(l->mine);
		l->mine = (locale_t)0;
	}
}

int bk_archive__hash_fd(int fd, const char *what, uint64_t *out_size,
                        uint8_t digest[BK_ARCHIVE_DIGEST_LEN], const uint8_t *check_key,
                        uint8_t *check)
{
	crypto_generichash_state st;
	crypto_onetimeauth_state ck;
	uint64_t total = 0;
	int rc = 0;
	uint8_t *buf = bk__malloc(HASH_BUF);
	if (buf == NULL)
		return BK_ENOMEM;
	crypto_generichash_init(&st, NULL, 0, BK_ARCHIVE_DIGEST_LEN);
	if (check_key)
		crypto_onetimeauth_init(&ck, check_key);
	for (;;) {
		ssize_t n = read(fd, buf, HASH_BUF);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = bk__error_errno(errno, "%s: read", what);
			goto done;
		}
		if (n == 0)
			break;
		crypto_generichash_update(&st, buf, (size_t)n);
		if (check_key)
			crypto_onetimeauth_update(&ck, buf, (size_t)n);
		total += (uint64_t)n;
	}
	crypto_generichash_final(&st, digest, BK_ARCHIVE_DIGEST_LEN);
	if (check_key)
		crypto_onetimeauth_final(&ck, check);
	*out_size = total;
done:
	if (check_key)
		sodium_memzero(&ck, sizeof(ck));
	bk__free(buf);
	return rc;
}

int bk_archive__open_dir(int dirfd, const char *rel, size_t len, bool create, int *out_fd)
{
	int rc = 0;
	int cur = dup(dirfd);
	*out_fd = -1;
	if (cur < 0)
		return bk__error_errno(errno, "dup");
	size_t pos = 0;
	while (pos < len) {
		const char *p = rel + pos;
		const char *slash = memchr(p, '/', len - pos);
		size_t n = slash ? (size_t)(slash - p) : len - pos;
		char name[NAME_MAX + 1];
		if (n == 0 || n > NAME_MAX) {
			rc = bk__error_set(BK_EFORMAT, "archive-unsafe-path",
			                   "%.*s: bad path component", (int)len, rel);
			goto done;
		}
		memcpy(name, p, n);
		name[n] = '\0';
		int next = openat(cur, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0 && errno == ENOENT && create) {
			if (mkdirat(cur, name, 0755) != 0 && errno != EEXIST) {
				rc = bk__error_errno(errno, "%.*s: mkdir", (int)(pos + n), rel);
				goto done;
			}
			next = openat(cur, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		}
		if (next < 0) {
			if (errno == ENOTDIR || errno == ELOOP)
				rc = bk__error_set(create ? BK_EFORMAT : BK_ERROR,
				                   create ? "archive-duplicate" : "source-changed",
				                   "%.*s: not a folder", (int)(pos + n), rel);
			else
				rc = bk__error_errno(errno, "%.*s", (int)(pos + n), rel);
			goto done;
		}
		close(cur);
		cur = next;
		pos += n + (slash ? 1 : 0);
	}
	*out_fd = cur;
	cur = -1;
done:
	if (cur >= 0)
		close(cur);
	return rc;
}

typedef struct scan {
	bk_manifest *m;
	const bk_archive_limits *limits;
	bool defer; /* record sizes now, hash later (hash_entries) */
	const uint8_t *check_key;
	uint64_t count;
	uint64_t bytes;
	char path[PATH_MAX];
} scan;

static int scan_file(scan *s, int dirfd, const char *name, size_t plen)
{
	int rc, domain;
	uint64_t size;
	uint8_t digest[BK_ARCHIVE_DIGEST_LEN];
	uint8_t check[BK_ARCHIVE_CHECK_LEN] = {0};
	struct stat st;
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return bk__error_errno(errno, "%s", s->path);
	if (fstat(fd, &st) != 0) {
		rc = bk__error_errno(errno, "%s", s->path);
		goto done;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = bk__error_set(BK_EFORMAT, "tree-unsafe-file",
		                   "%s: not a regular file (only files and folders are archived)",
		                   s->path);
		goto done;
	}
	if ((rc = bk_archive__check_path(s->path, s->limits->max_path, &domain)))
		goto done;
	if (s->limits->max_entries && ++s->count > s->limits->max_entries) {
		rc = bk__error_set(BK_ENOSPACE, "limit-exceeded",
		                   "%s: more than %llu files in the memory", s->path,
		                   (unsigned long long)s->limits->max_entries);
		goto done;
	}
	if (s->defer) {
		size = (uint64_t)st.st_size;
		memset(digest, 0, sizeof(digest));
	} else if ((rc = bk_archive__hash_fd(fd, s->path, &size, digest, s->check_key, check))) {
		goto done;
	}
	if (size != (uint64_t)st.st_size) {
		rc = bk__error_set(BK_ERROR, "source-changed", "%s: changed while being read",
		                   s->path);
		goto done;
	}
	s->bytes += size;
	if (s->limits->max_total_bytes && s->bytes > s->limits->max_total_bytes) {
		rc = bk__error_set(BK_ENOSPACE, "limit-exceeded",
		                   "%s: the memory holds more than %llu bytes", s->path,
		                   (unsigned long long)s->limits->max_total_bytes);
		goto done;
	}
	rc = bk_manifest_add(s->m, s->path, size, (uint32_t)(st.st_mode & 0777),
	                     (int64_t)st.st_mtim.tv_sec, digest);
	if (rc == 0)
		memcpy(bk_archive__entry_mut(s->m, bk_manifest_count(s->m) - 1)->check, check,
		       sizeof(check));
done:
	BK_UNUSED(plen);
	close(fd);
	return rc;
}

/* Scans the folder open as `fd` whose path (relative to the root) is
 * s->path[0..plen). Takes ownership of `fd`. */
static int scan_dir(scan *s, int fd, size_t plen, int depth)
{
	int rc = 0;
	DIR *d = fdopendir(fd);
	if (d == NULL) {
		rc = bk__error_errno(errno, "%s", s->path);
		close(fd);
		return rc;
	}
	if (depth > 256) {
		rc = bk__error_set(BK_ENOSPACE, "limit-exceeded", "%s: folders nested too deep",
		                   s->path);
		goto done;
	}
	for (;;) {
		errno = 0;
		struct dirent *de = readdir(d);
		if (de == NULL) {
			if (errno)
				rc = bk__error_errno(errno, "%s", s->path);
			break;
		}
		const char *name = de->d_name;
		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			continue;
		size_t nlen = strlen(name);
		if (plen + 1 + nlen + 1 > sizeof(s->path)) {
			rc = bk__error_set(BK_ENOSPACE, "limit-exceeded", "%s/%s: path too long",
			                   s->path, name);
			break;
		}
		s->path[plen] = '/';
		memcpy(s->path + plen + 1, name, nlen + 1);
		size_t clen = plen + 1 + nlen;
		struct stat st;
		if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
			rc = bk__error_errno(errno, "%s", s->path);
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			int sub =
			    openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0) {
				rc = bk__error_errno(errno, "%s", s->path);
				break;
			}
			rc = scan_dir(s, sub, clen, depth + 1);
		} else if (S_ISREG(st.st_mode)) {
			rc = scan_file(s, dirfd(d), name, clen);
		} else {
			rc = bk__error_set(BK_EFORMAT, "tree-unsafe-file",
			                   "%s: %s (only regular files and folders are archived)",
			                   s->path,
			                   S_ISLNK(st.st_mode) ? "symbolic link" : "special file");
		}
		s->path[plen] = '\0';
		if (rc)
			break;
	}
done:
	closedir(d);
	return rc;
}

/* --- Hashing the files of a walked folder on several threads --- */

typedef struct hasher {
	bk_manifest *m;
	int rootfd;
	const uint8_t *check_key;
	size_t count;
	pthread_mutex_t mu;
	size_t next;  /* the next entry to take */
	bool failed;  /* stop taking entries */
	size_t err_at; /* the failed entry with the lowest index */
	bk_archive_err err;
} hasher;

static int changed_while_hashed(const char *path, const char *how)
{
	return bk__error_set(BK_ERROR, "source-changed",
	                     "%s: %s since the folder was read; the memory changed during the backup",
	                     path, how);
}

/* Hashes one recorded entry, checking it is still the file the walk saw. */
static int hash_entry(int rootfd, bk_manifest_entry *e, const uint8_t *check_key)
{
	int rc, pfd = -1, fd = -1;
	const char *base = strrchr(e->path, '/') + 1;
	struct stat st;
	uint64_t size = 0;
	if ((rc = bk_archive__open_dir(rootfd, e->path, (size_t)(base - 1 - e->path), false, &pfd)))
		goto done;
	fd = openat(pfd, base, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		rc = errno == ENOENT || errno == ELOOP ? changed_while_hashed(e->path, "removed or replaced")
		                                       : bk__error_errno(errno, "%s", e->path);
		goto done;
	}
	if (fstat(fd, &st) != 0) {
		rc = bk__error_errno(errno, "%s", e->path);
		goto done;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != e->size) {
		rc = changed_while_hashed(e->path, "replaced or resized");
		goto done;
	}
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	if ((rc = bk_archive__hash_fd(fd, e->path, &size, e->digest, check_key, e->check)))
		goto done;
	if (size != e->size)
		rc = changed_while_hashed(e->path, "resized");
done:
	if (fd >= 0)
		close(fd);
	if (pfd >= 0)
		close(pfd);
	return rc;
}

static void *hash_worker(void *arg)
{
	hasher *h = arg;
	for (;;) {
		pthread_mutex_lock(&h->mu);
		size_t i = h->next++;
		bool stop = h->failed || i >= h->count;
		pthread_mutex_unlock(&h->mu);
		if (stop)
			break;
		int rc = hash_entry(h->rootfd, bk_archive__entry_mut(h->m, i), h->check_key);
		if (rc) {
			pthread_mutex_lock(&h->mu);
			/* Report the first file in walking order, whichever thread
			 * got there first. */
			if (!h->failed || i < h->err_at) {
				bk_archive__err_keep(&h->err, rc);
				h->err_at = i;
			}
			h->failed = true;
			pthread_mutex_unlock(&h->mu);
			break;
		}
	}
	return NULL;
}

/* Hashes every entry of `m` (recorded by a deferred walk) on `threads`
 * threads, this one included. */
static int hash_entries(bk_manifest *m, int rootfd, int threads, const uint8_t *check_key)
{
	hasher h;
	pthread_t tid[BK_ARCHIVE_MAX_THREADS];
	int started = 0;
	memset(&h, 0, sizeof(h));
	h.m = m;
	h.rootfd = rootfd;
	h.check_key = check_key;
	h.count = bk_manifest_count(m);
	if (pthread_mutex_init(&h.mu, NULL) != 0)
		return bk__error_set(BK_ERROR, NULL, "hash: cannot create a mutex");
	if (threads > BK_ARCHIVE_MAX_THREADS)
		threads = BK_ARCHIVE_MAX_THREADS;
	/* Fewer threads than asked for is only slower. */
	while (started < threads - 1 && (size_t)started + 1 < h.count &&
	       pthread_create(&tid[started], NULL, hash_worker, &h) == 0)
		started++;
	hash_worker(&h);
	for (int i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	pthread_mutex_destroy(&h.mu);
	return h.failed ? bk_archive__err_raise(&h.err) : 0;
}

int bk_archive__scan(bk_manifest **out, const char *root, unsigned domains,
                     const bk_manifest_info *info, const bk_archive_limits *limits, int threads,
                     const uint8_t *check_key)
{
	int rc;
	int rootfd = -1;
	DIR *d = NULL;
	scan *s = NULL;
	bk_manifest *m = NULL;
	unsigned present = 0;
	*out = NULL;
	if (domains == 0)
		domains = BK_DOMAINS_ALL;
	rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return bk__error_errno(errno, "%s", root);
	int fd2 = dup(rootfd);
	if (fd2 < 0 || (d = fdopendir(fd2)) == NULL) {
		rc = bk__error_errno(errno, "%s", root);
		if (fd2 >= 0)
			close(fd2);
		goto done;
	}
	s = bk__calloc(1, sizeof(*s));
	if (s == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	s->limits = limits;
	s->defer = threads > 1;
	s->check_key = check_key;
	/* First the domains present, so that empty ones are declared. */
	for (;;) {
		errno = 0;
		struct dirent *de = readdir(d);
		if (de == NULL) {
			if (errno) {
				rc = bk__error_errno(errno, "%s", root);
				goto done;
			}
			break;
		}
		const char *name = de->d_name;
		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
		    strncmp(name, ".staging-", 9) == 0)
			continue;
		int dom = bk_domain_lookup(name, strlen(name));
		struct stat st;
		if (dom < 0) {
			rc = bk__error_set(BK_EFORMAT, "unknown-domain",
			                   "%s/%s: not a memory domain", root, name);
			goto done;
		}
		if (fstatat(rootfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
			rc = bk__error_errno(errno, "%s/%s", root, name);
			goto done;
		}
		if (!S_ISDIR(st.st_mode)) {
			rc = bk__error_set(BK_EFORMAT, "tree-unsafe-file",
			                   "%s/%s: a domain must be a folder", root, name);
			goto done;
		}
		present |= BK_DOMAIN_BIT(dom);
	}
	if ((rc = bk_manifest_new(&m, info, present & domains)))
		goto done;
	s->m = m;
	for (int dom = 0; dom < BK_DOMAIN_COUNT; dom++) {
		if (!(present & domains & BK_DOMAIN_BIT(dom)))
			continue;
		const char *name = bk_domain_name(dom);
		size_t plen = strlen(name);
		memcpy(s->path, name, plen + 1);
		int sub = openat(rootfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0) {
			rc = bk__error_errno(errno, "%s/%s", root, name);
			goto done;
		}
		if ((rc = scan_dir(s, sub, plen, 0))) {
			bk__error_prefix(rc, "%s", root);
			goto done;
		}
	}
	if (s->defer && (rc = hash_entries(m, rootfd, threads, check_key))) {
		bk__error_prefix(rc, "%s", root);
		goto done;
	}
	*out = m;
	m = NULL;
	rc = 0;
done:
	bk_manifest_free(m);
	bk__free(s);
	if (d)
		closedir(d);
	if (rootfd >= 0)
		close(rootfd);
	return rc;
}

int bk_archive__auto_threads(void)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	return cpus < 2 ? 2 : cpus > 4 ? 4 : (int)cpus;
}

int bk_tree_digests(const char *root, bk_domain_digests *out)
{
	bk_manifest *m = NULL;
	bk_archive_limits limits = {0};
	memset(out, 0, sizeof(*out));
	if (root == NULL)
		return bk__error_set(BK_EINVALID, NULL, "tree digests: no folder");
	int rc = bk_archive__scan(&m, root, 0, NULL, &limits, bk_archive__auto_threads(), NULL);
	if (rc == 0)
		rc = bk_manifest_finish(m, &limits);
	if (rc == 0)
		*out = *bk_manifest_domains(m);
	bk_manifest_free(m);
	return rc;
}

int bk_archive__remove_tree(int parent, const char *name)
{
	int rc = 0;
	struct stat st;
	if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return errno == ENOENT ? 0 : bk__error_errno(errno, "%s", name);
	if (!S_ISDIR(st.st_mode)) {
		if (unlinkat(parent, name, 0) != 0 && errno != ENOENT)
			return bk__error_errno(errno, "%s: remove", name);
		return 0;
	}
	int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return bk__error_errno(errno, "%s", name);
	DIR *d = fdopendir(fd);
	if (d == NULL) {
		rc = bk__error_errno(errno, "%s", name);
		close(fd);
		return rc;
	}
	/* Removing while reading a folder may hide entries: read it again
	 * until a pass finds nothing. */
	for (bool again = true; again && rc == 0;) {
		again = false;
		rewinddir(d);
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			again = true;
			int r = bk_archive__remove_tree(dirfd(d), de->d_name);
			if (r && rc == 0)
				rc = r;
		}
	}
	closedir(d);
	if (unlinkat(parent, name, AT_REMOVEDIR) != 0 && errno != ENOENT && rc == 0)
		rc = bk__error_errno(errno, "%s: remove", name);
	return rc;
}
