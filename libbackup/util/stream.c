/* The stream base and the basic implementations: file, atomic file, fd,
 * memory, and the cut filter. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

int64_t bk_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bk_deadline bk_deadline_in(int64_t ms)
{
	if (ms < 0)
		return BK_DEADLINE_NONE;
	int64_t now = bk_now_ms();
	if (ms > INT64_MAX - now)
		return BK_DEADLINE_NONE;
	return now + ms;
}

int bk_deadline_left(bk_deadline d)
{
	if (d == BK_DEADLINE_NONE)
		return -1;
	int64_t left = d - bk_now_ms();
	if (left <= 0)
		return 0;
	return left > INT32_MAX ? INT32_MAX : (int)left;
}

/* --- Base --- */

static int unusable(bk_stream *s)
{
	return bk__error_set(BK_EINVALID, "stream-failed", "%s: stream already failed",
			     s->ops->name ? s->ops->name : "stream");
}

int bk_stream_read(bk_stream *s, void *buf, size_t len, size_t *out_n, bk_deadline d)
{
	*out_n = 0;
	if (s == NULL || s->ops->read == NULL)
		return bk__error_set(BK_EINVALID, NULL, "stream cannot be read");
	if (s->failed)
		return unusable(s);
	if (len == 0)
		return 0;
	int rc = s->ops->read(s, buf, len, out_n, d);
	if (rc == 0)
		s->bytes_in += *out_n;
	return rc;
}

int bk_stream_read_full(bk_stream *s, void *buf, size_t len, bk_deadline d)
{
	size_t got = 0;
	while (got < len) {
		size_t n;
		int rc = bk_stream_read(s, (uint8_t *)buf + got, len - got, &n, d);
		if (rc)
			return rc;
		if (n == 0)
			return bk__error_set(BK_EFORMAT, "truncated",
					     "%s: truncated: %zu of %zu bytes",
					     s->ops->name ? s->ops->name : "stream", got, len);
		got += n;
	}
	return 0;
}

int bk_stream_write(bk_stream *s, const void *buf, size_t len, bk_deadline d)
{
	if (s == NULL || s->ops->write == NULL)
		return bk__error_set(BK_EINVALID, NULL, "stream cannot be written");
	if (s->failed)
		return unusable(s);
	if (len == 0)
		return 0;
	int rc = s->ops->write(s, buf, len, d);
	if (rc)
		s->failed = 1;
	else
		s->bytes_out += len;
	return rc;
}

int bk_stream_flush(bk_stream *s, bk_deadline d)
{
	if (s == NULL)
		return BK_EINVALID;
	if (s->failed)
		return unusable(s);
	if (s->ops->flush)
		return s->ops->flush(s, d);
	return s->next ? bk_stream_flush(s->next, d) : 0;
}

int bk_stream_ctrl(bk_stream *s, int op, void *arg)
{
	if (s == NULL)
		return BK_EINVALID;
	if (s->ops->ctrl) {
		int rc = s->ops->ctrl(s, op, arg);
		if (rc != BK_EINVALID)
			return rc;
	}
	if (s->next)
		return bk_stream_ctrl(s->next, op, arg);
	return BK_EINVALID;
}

int bk_stream_copy(bk_stream *out, bk_stream *in, uint64_t *out_n, bk_deadline d)
{
	enum { CHUNK = 65536 };
	uint8_t *buf = bk__malloc(CHUNK);
	uint64_t total = 0;
	int rc = 0;
	if (buf == NULL)
		return BK_ENOMEM;
	for (;;) {
		size_t n;
		rc = bk_stream_read(in, buf, CHUNK, &n, d);
		if (rc || n == 0)
			break;
		rc = bk_stream_write(out, buf, n, d);
		if (rc)
			break;
		total += n;
	}
	bk__free(buf);
	if (out_n)
		*out_n = total;
	return rc;
}

int bk_stream_close(bk_stream *s, bk_deadline d)
{
	if (s == NULL)
		return 0;
	int rc = 0;
	if (s->failed)
		rc = unusable(s);
	else if (s->ops->finish)
		rc = s->ops->finish(s, d);
	bk_stream *next = s->owns_next ? s->next : NULL;
	if (rc == 0 && next) {
		rc = bk_stream_close(next, d);
		next = NULL;
	}
	if (s->ops->release)
		s->ops->release(s);
	bk_stream_free(next);
	return rc;
}

void bk_stream_free(bk_stream *s)
{
	if (s == NULL)
		return;
	bk_stream *next = s->owns_next ? s->next : NULL;
	if (s->ops->release)
		s->ops->release(s);
	bk_stream_free(next);
}

/* --- fd stream (also the file reader) --- */

typedef struct fd_stream {
	bk_stream base;
	int fd;
	int own;
	int pollable;
	int socket;
} fd_stream;

static int wait_fd(int fd, short events, bk_deadline d, const char *what)
{
	for (;;) {
		struct pollfd p = {.fd = fd, .events = events};
		int left = bk_deadline_left(d);
		if (left == 0 && d != BK_DEADLINE_NONE) {
			/* Still poll once without waiting: data may be there. */
			int r = poll(&p, 1, 0);
			if (r > 0)
				return 0;
			return bk__error_set(BK_ETIMEOUT, "timeout", "%s: timed out", what);
		}
		int r = poll(&p, 1, left);
		if (r > 0)
			return 0;
		if (r == 0)
			continue; /* deadline checked at the top */
		if (errno != EINTR)
			return bk__error_errno(errno, "%s: poll", what);
	}
}

static int fd_read(bk_stream *s, void *buf, size_t len, size_t *out_n, bk_deadline d)
{
	fd_stream *f = (fd_stream *)s;
	for (;;) {
		ssize_t n = read(f->fd, buf, len);
		if (n >= 0) {
			*out_n = (size_t)n;
			return 0;
		}
		if (errno == EINTR)
			continue;
		if ((errno == EAGAIN || errno == EWOULDBLOCK) && f->pollable) {
			int rc = wait_fd(f->fd, POLLIN, d, "read");
			if (rc)
				return rc;
			continue;
		}
		if (errno == ECONNRESET)
			return bk__error_set(BK_EDISCONNECTED, "disconnected",
					     "connection reset by peer");
		return bk__error_errno(errno, "read");
	}
}

static int fd_write(bk_stream *s, const void *buf, size_t len, bk_deadline d)
{
	fd_stream *f = (fd_stream *)s;
	const uint8_t *p = buf;
	while (len > 0) {
		/* send(MSG_NOSIGNAL) on sockets: a closed peer is an error, not a
		 * SIGPIPE. */
		ssize_t n = f->socket ? send(f->fd, p, len, MSG_NOSIGNAL) : write(f->fd, p, len);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && f->pollable) {
			int rc = wait_fd(f->fd, POLLOUT, d, "write");
			if (rc)
				return rc;
			continue;
		}
		if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
			return bk__error_set(BK_EDISCONNECTED, "disconnected",
					     "connection closed by peer");
		return bk__error_errno(n < 0 ? errno : EIO, "write");
	}
	return 0;
}

static int fd_ctrl(bk_stream *s, int op, void *arg)
{
	fd_stream *f = (fd_stream *)s;
	if (op == BK_STREAM_CTRL_FD) {
		*(int *)arg = f->fd;
		return 0;
	}
	if (op == BK_STREAM_CTRL_SHUTDOWN_WR)
		return shutdown(f->fd, SHUT_WR) == 0 ? 0 : bk__error_errno(errno, "shutdown");
	if (op == BK_STREAM_CTRL_SIZE) {
		struct stat st;
		if (fstat(f->fd, &st) != 0 || !S_ISREG(st.st_mode))
			return BK_EINVALID;
		*(uint64_t *)arg = (uint64_t)st.st_size;
		return 0;
	}
	return BK_EINVALID;
}

static void fd_release(bk_stream *s)
{
	fd_stream *f = (fd_stream *)s;
	if (f->own && f->fd >= 0)
		close(f->fd);
	bk__free(f);
}

static const bk_stream_ops fd_ops = {
	.version = BK_STREAM_OPS_VERSION,
	.name = "fd",
	.read = fd_read,
	.write = fd_write,
	.release = fd_release,
	.ctrl = fd_ctrl,
};

static const bk_stream_ops file_ops = {
	.version = BK_STREAM_OPS_VERSION,
	.name = "file",
	.read = fd_read,
	.release = fd_release,
	.ctrl = fd_ctrl,
};

int bk_stream_fd_new(bk_stream **out, int fd, int own)
{
	*out = NULL;
	fd_stream *f = bk__calloc(1, sizeof(*f));
	if (f == NULL)
		return BK_ENOMEM;
	f->base.ops = &fd_ops;
	f->fd = fd;
	f->own = own;
	struct stat st;
	if (fstat(fd, &st) == 0 && !S_ISREG(st.st_mode)) {
		f->socket = S_ISSOCK(st.st_mode);
		int fl = fcntl(fd, F_GETFL);
		if (fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0)
			f->pollable = 1;
	}
	*out = &f->base;
	return 0;
}

int bk_stream_file_open(bk_stream **out, const char *path)
{
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return bk__error_errno(errno, "%s", path);
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		close(fd);
		return bk__error_set(BK_EUSER, "is-a-directory", "%s: is a directory", path);
	}
	fd_stream *f = bk__calloc(1, sizeof(*f));
	if (f == NULL) {
		close(fd);
		return BK_ENOMEM;
	}
	f->base.ops = &file_ops;
	f->fd = fd;
	f->own = 1;
	*out = &f->base;
	return 0;
}

/* --- Atomic file writer --- */

static _Thread_local int atomic_fail_before_rename;

void bk__atomic_fail_before_rename(int on)
{
	atomic_fail_before_rename = on;
}

typedef struct atomic_stream {
	bk_stream base;
	int fd;
	char *path;
	char *part;
	int exclusive;
	int done;
} atomic_stream;

static int atomic_write(bk_stream *s, const void *buf, size_t len, bk_deadline d)
{
	atomic_stream *a = (atomic_stream *)s;
	BK_UNUSED(d);
	const uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = write(a->fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return bk__error_errno(n < 0 ? errno : EIO, "%s", a->part);
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int atomic_finish(bk_stream *s, bk_deadline d)
{
	atomic_stream *a = (atomic_stream *)s;
	BK_UNUSED(d);
	int rc = 0;
	/* Everything that can fail for lack of memory happens before the
	 * rename, so a reported failure always means the old file is intact. */
	char *dir = bk_path_dirname(a->path);
	if (dir == NULL)
		return BK_ENOMEM;
	if (fsync(a->fd) != 0) {
		rc = bk__error_errno(errno, "%s: fsync", a->part);
		goto done;
	}
	if (close(a->fd) != 0) {
		a->fd = -1;
		rc = bk__error_errno(errno, "%s: close", a->part);
		goto done;
	}
	a->fd = -1;
	if (atomic_fail_before_rename) {
		rc = bk__error_set(BK_ECANCELLED, "interrupted", "%s: interrupted before rename",
				   a->path);
		goto done;
	}
	if (a->exclusive) {
		/* link(2) fails if the target exists, so a racing writer never
		 * loses its file. */
		if (link(a->part, a->path) != 0) {
			rc = bk__error_errno(errno, "%s", a->path);
			goto done;
		}
		unlink(a->part);
	} else if (rename(a->part, a->path) != 0) {
		rc = bk__error_errno(errno, "%s: rename", a->path);
		goto done;
	}
	a->done = 1;
	rc = bk_fsync_dir(dir);
done:
	bk__free(dir);
	return rc;
}

static void atomic_release(bk_stream *s)
{
	atomic_stream *a = (atomic_stream *)s;
	if (a->fd >= 0)
		close(a->fd);
	if (!a->done && a->part)
		unlink(a->part);
	bk__free(a->path);
	bk__free(a->part);
	bk__free(a);
}

static const bk_stream_ops atomic_ops = {
	.version = BK_STREAM_OPS_VERSION,
	.name = "atomic-file",
	.write = atomic_write,
	.finish = atomic_finish,
	.release = atomic_release,
};

int bk_stream_atomic_new(bk_stream **out, const char *path, unsigned mode, int exclusive)
{
	*out = NULL;
	struct stat st;
	if (exclusive && lstat(path, &st) == 0)
		return bk__error_set(BK_EEXIST, "exists", "%s: already exists, refusing to overwrite",
				     path);
	atomic_stream *a = bk__calloc(1, sizeof(*a));
	if (a == NULL)
		return BK_ENOMEM;
	a->base.ops = &atomic_ops;
	a->fd = -1;
	a->exclusive = exclusive;
	a->path = bk__strdup(path);
	a->part = bk__asprintf("%s.part", path);
	if (a->path == NULL || a->part == NULL) {
		atomic_release(&a->base);
		return BK_ENOMEM;
	}
	/* A stale .part of an earlier, interrupted writer is replaced. */
	if (lstat(a->part, &st) == 0 && S_ISREG(st.st_mode))
		unlink(a->part);
	a->fd = open(a->part, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
	if (a->fd < 0) {
		int rc = bk__error_errno(errno, "%s", a->part);
		bk__free(a->part);
		a->part = NULL;
		atomic_release(&a->base);
		return rc;
	}
	if (fchmod(a->fd, (mode_t)mode) != 0) {
		int rc = bk__error_errno(errno, "%s: chmod", a->part);
		atomic_release(&a->base);
		return rc;
	}
	*out = &a->base;
	return 0;
}

/* --- Memory streams --- */

typedef struct mem_stream {
	bk_stream base;
	const uint8_t *rdata;
	size_t rlen, rpos;
	bk_buf w;
	size_t max;
} mem_stream;

static int mem_read(bk_stream *s, void *buf, size_t len, size_t *out_n, bk_deadline d)
{
	mem_stream *m = (mem_stream *)s;
	BK_UNUSED(d);
	size_t n = m->rlen - m->rpos;
	if (n > len)
		n = len;
	if (n)
		memcpy(buf, m->rdata + m->rpos, n);
	m->rpos += n;
	*out_n = n;
	return 0;
}

static int mem_write(bk_stream *s, const void *buf, size_t len, bk_deadline d)
{
	mem_stream *m = (mem_stream *)s;
	BK_UNUSED(d);
	if (m->max && (len > m->max || m->w.len > m->max - len))
		return bk__error_set(BK_ENOSPACE, "too-large", "memory stream: over %zu bytes",
				     m->max);
	return bk_buf_put(&m->w, buf, len);
}

static int mem_ctrl(bk_stream *s, int op, void *arg)
{
	mem_stream *m = (mem_stream *)s;
	if (op == BK_STREAM_CTRL_SIZE && m->rdata) {
		*(uint64_t *)arg = m->rlen;
		return 0;
	}
	return BK_EINVALID;
}

static void mem_release(bk_stream *s)
{
	mem_stream *m = (mem_stream *)s;
	bk_buf_free(&m->w);
	bk__free(m);
}

static const bk_stream_ops mem_reader_ops = {
	.version = BK_STREAM_OPS_VERSION,
	.name = "memory",
	.read = mem_read,
	.release = mem_release,
	.ctrl = mem_ctrl,
};

static const bk_stream_ops mem_writer_ops = {
	.version = BK_STREAM_OPS_VERSION,
	.name = "memory",
	.write = mem_write,
	.release = mem_release,
};

int bk_stream_mem_reader(bk_stream **out, const void *data, size_t len)
{
	*out = NULL;
	mem_stream *m = bk__calloc(1, sizeof(*m));
	if (m == NULL)
		return BK_ENOMEM;
	m->base.ops = &mem_reader_ops;
	m->rdata = data;
	m->rlen = len;
	*out = &m->base;
	return 0;
}

int bk_stream_mem_writer(bk_stream **out, size_t max)
{
	*out = NULL;
	mem_stream *m = bk__calloc(1, sizeof(*m));
	if (m == NULL)
		return BK_ENOMEM;
	m->base.ops = &mem_writer_ops;
	m->max = max;
	*out = &m->base;
	return 0;
}

const uint8_t *bk_stream_mem_data(bk_stream *s, size_t *out_len)
{
	if (s == NULL || s->ops != &mem_writer_ops) {
		if (out_len)
			*out_len = 0;
		return NULL;
	}
	mem_stream *m = (mem_stream *)s;
	if (out_len)
		*out_len = m->w.len;
	return m->w.data;
}

/* --- Cut filter --- */

typedef struct cut_stream {
	bk_stream base;
	uint64_t left;
	int code;
} cut_stream;

static int cut_error(cut_stream *c)
{
	if (c->code == BK_ETIMEOUT)
		return bk__error_set(BK_ETIMEOUT, "timeout", "stream stalled (fault injected)");
	return bk__error_set(c->code, "cut", "stream cut (fault injected)");
}

static int cut_read(bk_stream *s, void *buf, size_t len, size_t *out_n, bk_deadline d)
{
	cut_stream *c = (cut_stream *)s;
	if (c->left == 0) {
		*out_n = 0;
		return c->code ? cut_error(c) : 0;
	}
	if (len > c->left)
		len = (size_t)c->left;
	int rc = bk_stream_read(s->next, buf, len, out_n, d);
	if (rc == 0)
		c->left -= *out_n;
	return rc;
}

static int cut_write(bk_stream *s, const void *buf, size_t len, bk_deadline d)
{
	cut_stream *c = (cut_stream *)s;
	size_t n = len > c->left ? (size_t)c->left : len;
	int rc = n ? bk_stream_write(s->next, buf, n, d) : 0;
	if (rc)
		return rc;
	c->left -= n;
	if (n < len)
		return cut_error(c->code ? c : &(cut_stream){.code = BK_EDISCONNECTED});
	return 0;
}

static void cut_release(bk_stream *s)
{
	bk__free(s);
}

static const bk_stream_ops cut_ops = {
	.version = BK_STREAM_OPS_VERSION,
	.name = "cut",
	.read = cut_read,
	.write = cut_write,
	.release = cut_release,
};

int bk_stream_cut_new(bk_stream **out, bk_stream *next, int own_next, uint64_t limit, int code)
{
	*out = NULL;
	cut_stream *c = bk__calloc(1, sizeof(*c));
	if (c == NULL)
		return BK_ENOMEM;
	c->base.ops = &cut_ops;
	c->base.next = next;
	c->base.owns_next = own_next;
	c->left = limit;
	c->code = code;
	*out = &c->base;
	return 0;
}
