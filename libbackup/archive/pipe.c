/* Worker threads of the archive writer: errors carried between threads and
 * bounded single-producer, single-consumer queues of buffers. */
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "libbackup/archive/archive.h"
#include "libbackup/util/util.h"

void bk_archive__err_keep(bk_archive_err *e, int code)
{
	const bk_error *last = bk_error_last();
	e->code = code;
	e->reason = last->code == code ? last->reason : NULL;
	bk_strlcpy(e->message, last->code == code && last->message ? last->message : "worker failed",
	           sizeof(e->message));
}

int bk_archive__err_raise(const bk_archive_err *e)
{
	if (e->code == BK_ENOMEM && (e->reason == NULL || strcmp(e->reason, "out-of-memory") == 0))
		return bk__error_oom();
	return bk__error_set(e->code, e->reason, "%s", e->message);
}

struct bk_archive_ring {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bk_archive_slot *slots;
	unsigned count;
	size_t cap;
	uint64_t head; /* slots published */
	uint64_t tail; /* slots released */
	bool closed;
	bool stopped;
	bool failed;
	bk_archive_err err;
};

void bk_archive__ring_free(bk_archive_ring *r)
{
	if (r == NULL)
		return;
	for (unsigned i = 0; i < r->count; i++)
		bk__free(r->slots[i].buf);
	bk__free(r->slots);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	bk__free(r);
}

int bk_archive__ring_new(bk_archive_ring **out, unsigned count, size_t cap)
{
	*out = NULL;
	if (count == 0 || cap == 0)
		return bk__error_set(BK_EINVALID, NULL, "queue: no slots");
	bk_archive_ring *r = bk__calloc(1, sizeof(*r));
	if (r == NULL)
		return BK_ENOMEM;
	if (pthread_mutex_init(&r->mu, NULL) != 0) {
		bk__free(r);
		return bk__error_set(BK_ERROR, NULL, "queue: cannot create a mutex");
	}
	if (pthread_cond_init(&r->cv, NULL) != 0) {
		pthread_mutex_destroy(&r->mu);
		bk__free(r);
		return bk__error_set(BK_ERROR, NULL, "queue: cannot create a condition variable");
	}
	r->cap = cap;
	r->slots = bk__calloc(count, sizeof(*r->slots));
	if (r->slots == NULL) {
		bk_archive__ring_free(r);
		return BK_ENOMEM;
	}
	r->count = count;
	for (unsigned i = 0; i < count; i++) {
		r->slots[i].buf = bk__malloc(cap);
		if (r->slots[i].buf == NULL) {
			bk_archive__ring_free(r);
			return BK_ENOMEM;
		}
	}
	*out = r;
	return 0;
}

bk_archive_slot *bk_archive__ring_acquire(bk_archive_ring *r)
{
	bk_archive_slot *s = NULL;
	pthread_mutex_lock(&r->mu);
	while (!r->stopped && r->head - r->tail == r->count)
		pthread_cond_wait(&r->cv, &r->mu);
	if (!r->stopped) {
		s = &r->slots[r->head % r->count];
		s->len = 0;
		s->kind = 0;
		s->deadline = BK_DEADLINE_NONE;
	}
	pthread_mutex_unlock(&r->mu);
	return s;
}

void bk_archive__ring_publish(bk_archive_ring *r)
{
	pthread_mutex_lock(&r->mu);
	r->head++;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

void bk_archive__ring_close(bk_archive_ring *r)
{
	pthread_mutex_lock(&r->mu);
	r->closed = true;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

bk_archive_slot *bk_archive__ring_peek(bk_archive_ring *r)
{
	bk_archive_slot *s = NULL;
	pthread_mutex_lock(&r->mu);
	while (!r->stopped && !r->closed && r->head == r->tail)
		pthread_cond_wait(&r->cv, &r->mu);
	if (!r->stopped && r->head != r->tail)
		s = &r->slots[r->tail % r->count];
	pthread_mutex_unlock(&r->mu);
	return s;
}

void bk_archive__ring_release(bk_archive_ring *r)
{
	pthread_mutex_lock(&r->mu);
	r->tail++;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

void bk_archive__ring_stop(bk_archive_ring *r, const bk_archive_err *err)
{
	pthread_mutex_lock(&r->mu);
	if (err && !r->failed) {
		r->err = *err;
		r->failed = true;
	}
	r->stopped = true;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

bool bk_archive__ring_failed(bk_archive_ring *r, bk_archive_err *out)
{
	pthread_mutex_lock(&r->mu);
	bool failed = r->failed;
	if (failed && out)
		*out = r->err;
	pthread_mutex_unlock(&r->mu);
	return failed;
}

size_t bk_archive__ring_cap(const bk_archive_ring *r)
{
	return r->cap;
}

/* --- A write filter that writes on its own thread --- */

typedef struct async_w {
	bk_stream base;
	bk_archive_ring *ring;
	bk_archive_slot *cur;
	pthread_t tid;
	bool running;
	int fd;           /* the file below for writeback, or -1 */
	uint64_t written; /* bytes written to `next` */
	uint64_t synced;  /* bytes whose writeback was started */
} async_w;

#define WRITEBACK_STEP (8u << 20)

static void *async_main(void *arg)
{
	async_w *w = arg;
	bk_archive_slot *s;
	while ((s = bk_archive__ring_peek(w->ring)) != NULL) {
		int rc = bk_stream_write(w->base.next, s->buf, s->len, s->deadline);
		if (rc) {
			bk_archive_err e;
			bk_archive__err_keep(&e, rc);
			bk_archive__ring_stop(w->ring, &e);
			break;
		}
		w->written += s->len;
		bk_fd_writeback(w->fd, &w->synced, w->written, WRITEBACK_STEP);
		bk_archive__ring_release(w->ring);
	}
	return NULL;
}

static int async_failed(async_w *w)
{
	bk_archive_err e;
	if (bk_archive__ring_failed(w->ring, &e))
		return bk_archive__err_raise(&e);
	return bk__error_set(BK_ERROR, NULL, "output thread stopped");
}

static int async_write(bk_stream *st, const void *buf, size_t len, bk_deadline d)
{
	async_w *w = (async_w *)st;
	const uint8_t *p = buf;
	size_t cap = bk_archive__ring_cap(w->ring);
	while (len > 0) {
		if (w->cur == NULL && (w->cur = bk_archive__ring_acquire(w->ring)) == NULL)
			return async_failed(w);
		size_t k = cap - w->cur->len < len ? cap - w->cur->len : len;
		memcpy(w->cur->buf + w->cur->len, p, k);
		w->cur->len += k;
		/* Deadlines are absolute: the slot carries the latest one. */
		w->cur->deadline = d;
		p += k;
		len -= k;
		if (w->cur->len == cap) {
			w->cur = NULL;
			bk_archive__ring_publish(w->ring);
		}
	}
	return 0;
}

static int async_finish(bk_stream *st, bk_deadline d)
{
	async_w *w = (async_w *)st;
	(void)d;
	if (w->cur && w->cur->len)
		bk_archive__ring_publish(w->ring);
	w->cur = NULL;
	bk_archive__ring_close(w->ring);
	pthread_join(w->tid, NULL);
	w->running = false;
	if (bk_archive__ring_failed(w->ring, NULL))
		return async_failed(w);
	return 0;
}

static void async_release(bk_stream *st)
{
	async_w *w = (async_w *)st;
	if (w->running) {
		bk_archive__ring_stop(w->ring, NULL);
		pthread_join(w->tid, NULL);
	}
	bk_archive__ring_free(w->ring);
	bk__free(w);
}

static const bk_stream_ops async_ops = {
    .version = BK_STREAM_OPS_VERSION,
    .name = "async-writer",
    .write = async_write,
    .finish = async_finish,
    .release = async_release,
};

int bk_archive__async_writer_new(bk_stream **out, bk_stream *next, int own_next, unsigned flags)
{
	*out = NULL;
	if (next == NULL)
		return bk__error_set(BK_EINVALID, NULL, "async writer: no stream");
	async_w *w = bk__calloc(1, sizeof(*w));
	if (w == NULL)
		return BK_ENOMEM;
	int rc = bk_archive__ring_new(&w->ring, 8, 256 * 1024);
	if (rc) {
		bk__free(w);
		return rc;
	}
	w->base.ops = &async_ops;
	w->base.next = next;
	w->fd = -1;
	if (flags & BK_ARCHIVE_ASYNC_WRITEBACK) {
		int fd = -1;
		struct stat st;
		if (bk_stream_ctrl(next, BK_STREAM_CTRL_FD, &fd) == 0 && fd >= 0 &&
		    fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
			w->fd = fd;
			off_t pos = lseek(fd, 0, SEEK_CUR);
			w->written = w->synced = pos > 0 ? (uint64_t)pos : 0;
		}
	}
	if (pthread_create(&w->tid, NULL, async_main, w) != 0) {
		bk_archive__ring_free(w->ring);
		bk__free(w);
		return bk__error_set(BK_ERROR, NULL, "async writer: cannot start a thread");
	}
	w->running = true;
	/* Owned only once nothing can fail: on failure the caller keeps it. */
	w->base.owns_next = own_next;
	*out = &w->base;
	return 0;
}

/* --- A read filter that reads ahead on its own thread --- */

typedef struct async_r {
	bk_stream base;
	bk_archive_ring *ring;
	bk_archive_slot *cur; /* the slot being handed out */
	size_t pos;           /* in `cur` */
	pthread_t tid;
	bool running;
	bool ended;   /* the end was seen (the thread has stopped) */
	bool failed;  /* set by the thread before it closes the queue */
	bk_archive_err err;
} async_r;

static void *async_read_main(void *arg)
{
	async_r *r = arg;
	bk_archive_slot *s;
	while ((s = bk_archive__ring_acquire(r->ring)) != NULL) {
		size_t cap = bk_archive__ring_cap(r->ring);
		/* Fill the slot, so that the consumer wakes once per slot. */
		while (s->len < cap) {
			size_t n = 0;
			int rc = bk_stream_read(r->base.next, s->buf + s->len, cap - s->len, &n,
			                        BK_DEADLINE_NONE);
			if (rc) {
				/* What was read before the failure is still handed
				 * out, in order; then the failure. */
				bk_archive__err_keep(&r->err, rc);
				r->failed = true;
				if (s->len)
					bk_archive__ring_publish(r->ring);
				bk_archive__ring_close(r->ring);
				return NULL;
			}
			if (n == 0)
				break;
			s->len += n;
		}
		bool end = s->len < cap; /* the loop stopped on a read of 0 */
		if (s->len)
			bk_archive__ring_publish(r->ring);
		if (end) {
			bk_archive__ring_close(r->ring);
			break;
		}
	}
	return NULL;
}

static void async_read_join(async_r *r)
{
	if (r->running) {
		pthread_join(r->tid, NULL);
		r->running = false;
	}
}

static int async_read(bk_stream *st, void *buf, size_t len, size_t *out_n, bk_deadline d)
{
	async_r *r = (async_r *)st;
	(void)d;
	*out_n = 0;
	if (len == 0 || r->ended)
		return 0;
	if (r->cur == NULL) {
		r->cur = bk_archive__ring_peek(r->ring);
		r->pos = 0;
		if (r->cur == NULL) {
			async_read_join(r);
			if (r->failed)
				return bk_archive__err_raise(&r->err);
			r->ended = true;
			return 0;
		}
	}
	size_t k = r->cur->len - r->pos < len ? r->cur->len - r->pos : len;
	memcpy(buf, r->cur->buf + r->pos, k);
	r->pos += k;
	if (r->pos == r->cur->len) {
		r->cur = NULL;
		bk_archive__ring_release(r->ring);
	}
	*out_n = k;
	return 0;
}

/* The stream below is being read by the thread: nothing is passed down. */
static int async_read_ctrl(bk_stream *st, int op, void *arg)
{
	(void)st;
	(void)op;
	(void)arg;
	return BK_ERROR;
}

static void async_read_release(bk_stream *st)
{
	async_r *r = (async_r *)st;
	if (r->running) {
		bk_archive__ring_stop(r->ring, NULL);
		async_read_join(r);
	}
	bk_archive__ring_free(r->ring);
	bk__free(r);
}

static const bk_stream_ops async_read_ops = {
    .version = BK_STREAM_OPS_VERSION,
    .name = "read-ahead",
    .read = async_read,
    .ctrl = async_read_ctrl,
    .release = async_read_release,
};

int bk_archive__async_reader_new(bk_stream **out, bk_stream *src, int own_src)
{
	*out = NULL;
	if (src == NULL)
		return bk__error_set(BK_EINVALID, NULL, "read-ahead: no stream");
	async_r *r = bk__calloc(1, sizeof(*r));
	if (r == NULL)
		return BK_ENOMEM;
	int rc = bk_archive__ring_new(&r->ring, 8, 256 * 1024);
	if (rc) {
		bk__free(r);
		return rc;
	}
	r->base.ops = &async_read_ops;
	r->base.next = src;
	if (pthread_create(&r->tid, NULL, async_read_main, r) != 0) {
		bk_archive__ring_free(r->ring);
		bk__free(r);
		return bk__error_set(BK_ERROR, NULL, "read-ahead: cannot start a thread");
	}
	r->running = true;
	/* Owned only once nothing can fail: on failure the caller keeps it. */
	r->base.owns_next = own_src;
	*out = &r->base;
	return 0;
}
