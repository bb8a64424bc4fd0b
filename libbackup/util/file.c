/* Files: whole-file reads, atomic writes, folders, private-file checks. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

int bk_file_read(const char *path, size_t max, uint8_t **out, size_t *out_len)
{
	int rc = 0;
	int fd = -1;
	bk_buf b = BK_BUF_INIT;
	*out = NULL;
	if (out_len)
		*out_len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = bk__error_errno(errno, "%s", path);
		goto done;
	}
	for (;;) {
		rc = bk_buf_reserve(&b, 65536);
		if (rc)
			goto done;
		ssize_t n = read(fd, b.data + b.len, b.cap - b.len - 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = bk__error_errno(errno, "%s", path);
			goto done;
		}
		if (n == 0)
			break;
		b.len += (size_t)n;
		if (b.len > max) {
			rc = bk__error_set(BK_ENOSPACE, "too-large", "%s: larger than %zu bytes", path,
					   max);
			goto done;
		}
	}
	rc = bk_buf_cstr(&b);
	if (rc)
		goto done;
	*out = bk_buf_steal(&b, out_len);
done:
	if (fd >= 0)
		close(fd);
	bk_buf_free(&b);
	return rc;
}

int bk_file_write_atomic(const char *path, const void *data, size_t len, unsigned mode, int exclusive)
{
	bk_stream *s = NULL;
	int rc = bk_stream_atomic_new(&s, path, mode, exclusive);
	if (rc)
		return rc;
	rc = bk_stream_write(s, data, len, BK_DEADLINE_NONE);
	if (rc) {
		bk_stream_free(s);
		return rc;
	}
	return bk_stream_close(s, BK_DEADLINE_NONE);
}

int bk_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return bk__error_errno(errno, "%s", dir);
	int rc = 0;
	if (fsync(fd) != 0 && errno != EINVAL)
		rc = bk__error_errno(errno, "%s: fsync", dir);
	close(fd);
	return rc;
}

char *bk_path_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (slash == NULL)
		return bk__strdup(".");
	if (slash == path)
		return bk__strdup("/");
	return bk__strndup(path, (size_t)(slash - path));
}

char *bk_path_join(const char *base, const char *rel)
{
	if (rel[0] == '/' || base == NULL || base[0] == '\0')
		return bk__strdup(rel);
	size_t bl = strlen(base);
	if (bl > 0 && base[bl - 1] == '/')
		return bk__asprintf("%s%s", base, rel);
	return bk__asprintf("%s/%s", base, rel);
}

int bk_mkdir_p(const char *path, unsigned mode)
{
	char *tmp = bk__strdup(path);
	if (tmp == NULL)
		return BK_ENOMEM;
	int rc = 0;
	for (char *p = tmp + 1;; p++) {
		if (*p == '/' || *p == '\0') {
			char saved = *p;
			*p = '\0';
			if (mkdir(tmp, (mode_t)mode) != 0 && errno != EEXIST) {
				rc = bk__error_errno(errno, "%s", tmp);
				break;
			}
			*p = saved;
			if (saved == '\0')
				break;
		}
	}
	if (rc == 0) {
		struct stat st;
		if (stat(path, &st) != 0)
			rc = bk__error_errno(errno, "%s", path);
		else if (!S_ISDIR(st.st_mode))
			rc = bk__error_set(BK_EEXIST, "not-a-directory", "%s: not a directory", path);
	}
	bk__free(tmp);
	return rc;
}

int bk_file_check_private(const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return bk__error_errno(errno, "%s", path);
	if (!S_ISREG(st.st_mode))
		return bk__error_set(BK_EAUTH, "not-a-file", "%s: not a regular file", path);
	if (st.st_mode & (S_IRWXG | S_IRWXO))
		return bk__error_set(BK_EAUTH, "key-file-permissions",
				     "%s: readable by others (mode %04o); run 'chmod 600 %s'", path,
				     (unsigned)(st.st_mode & 07777), path);
	return 0;
}

void bk_fd_writeback(int fd, uint64_t *synced, uint64_t written, uint64_t step)
{
	if (fd < 0 || written < *synced || written - *synced < step)
		return;
	/* Only a hint: a file system without it writes back later. */
	(void)sync_file_range(fd, (off64_t)*synced, (off64_t)(written - *synced),
	                      SYNC_FILE_RANGE_WRITE);
	*synced = written;
}
