/* libbackup: byte streams.
 *
 * Every data path is a chain of streams: a filter (encryption, hashing, fault
 * injection) sits on top of another stream and forwards to it. A stream is
 * either read or written, not both, except transports, which do both.
 *
 * Deadlines are absolute times on the monotonic clock in milliseconds
 * (bk_deadline_in()); BK_DEADLINE_NONE waits forever. A call that passes its
 * deadline fails with BK_ETIMEOUT. */
#ifndef LIBBACKUP_STREAM_H
#define LIBBACKUP_STREAM_H

#include <libbackup/common.h>

BK_BEGIN_DECLS

typedef int64_t bk_deadline;
#define BK_DEADLINE_NONE INT64_MAX

/* Milliseconds on the monotonic clock. */
BK_EXTERN int64_t bk_now_ms(void);
/* The deadline `ms` milliseconds from now (negative: none). */
BK_EXTERN bk_deadline bk_deadline_in(int64_t ms);
/* Milliseconds left until `d` (0 when passed; INT32_MAX-capped; -1 for none). */
BK_EXTERN int bk_deadline_left(bk_deadline d);

typedef struct bk_stream bk_stream;

#define BK_STREAM_OPS_VERSION 1

/* The operations of a stream implementation. Fields are only ever appended;
 * `version` says which are present. Any operation may be NULL. */
typedef struct bk_stream_ops {
	unsigned version;
	const char *name;
	/* Reads up to `len` bytes; *out_n = 0 only at the end of the stream. */
	int (*read)(bk_stream *s, void *buf, size_t len, size_t *out_n, bk_deadline d);
	/* Writes all `len` bytes or fails. */
	int (*write)(bk_stream *s, const void *buf, size_t len, bk_deadline d);
	int (*flush)(bk_stream *s, bk_deadline d);
	/* Completes the stream (writes trailers, commits files). Called once by
	 * bk_stream_close() before `release`; not called by bk_stream_free(). */
	int (*finish)(bk_stream *s, bk_deadline d);
	/* Releases the implementation's resources (and the stream's memory). An
	 * unfinished written stream is abandoned: atomic files are removed. */
	void (*release)(bk_stream *s);
	/* Optional controls (BK_STREAM_CTRL_*); BK_EINVALID when unsupported. */
	int (*ctrl)(bk_stream *s, int op, void *arg);
} bk_stream_ops;

/* The base every stream implementation embeds as its first member. */
struct bk_stream {
	const bk_stream_ops *ops;
	bk_stream *next;     /* the stream below a filter, or NULL */
	int owns_next;       /* closing or freeing this one also does `next` */
	int failed;          /* a write or finish failed: the stream is unusable */
	uint64_t bytes_in;   /* bytes returned by read */
	uint64_t bytes_out;  /* bytes accepted by write */
};

/* Controls. */
enum {
	BK_STREAM_CTRL_FD = 1,        /* arg: int *: the file descriptor below */
	BK_STREAM_CTRL_SHUTDOWN_WR,   /* half-close a transport's writing side */
	BK_STREAM_CTRL_SIZE,          /* arg: uint64_t *: total size, if known */
};

BK_EXTERN int bk_stream_read(bk_stream *s, void *buf, size_t len, size_t *out_n, bk_deadline d);
/* Reads exactly `len` bytes; an early end is BK_EFORMAT ("truncated"). */
BK_EXTERN int bk_stream_read_full(bk_stream *s, void *buf, size_t len, bk_deadline d);
BK_EXTERN int bk_stream_write(bk_stream *s, const void *buf, size_t len, bk_deadline d);
BK_EXTERN int bk_stream_flush(bk_stream *s, bk_deadline d);
BK_EXTERN int bk_stream_ctrl(bk_stream *s, int op, void *arg);
/* Copies everything from `in` to `out`; *out_n (may be NULL) gets the count. */
BK_EXTERN int bk_stream_copy(bk_stream *out, bk_stream *in, uint64_t *out_n, bk_deadline d);
/* Finishes and frees the stream (and `next`, when owned). Returns the first
 * error of finishing. NULL is a no-op. */
BK_EXTERN int bk_stream_close(bk_stream *s, bk_deadline d);
/* Frees without finishing: abandons the work. NULL is a no-op. */
BK_EXTERN void bk_stream_free(bk_stream *s);

/* --- Implementations ------------------------------------------------------ */

/* Reads a file. */
BK_EXTERN int bk_stream_file_open(bk_stream **out, const char *path);
/* Writes `path` atomically: into `path.part` (created O_EXCL|O_NOFOLLOW with
 * `mode`, replacing a stale `.part`), which bk_stream_close() fsyncs, renames
 * onto `path` and makes durable by fsyncing the folder. bk_stream_free()
 * removes the `.part`; the old `path`, if any, is never touched before the
 * rename. With `exclusive`, an existing `path` is refused (BK_EEXIST). */
BK_EXTERN int bk_stream_atomic_new(bk_stream **out, const char *path, unsigned mode, int exclusive);
/* Reads and writes a file descriptor, honouring deadlines with poll(2) (the
 * descriptor is put in non-blocking mode). With `own`, it is closed on release. */
BK_EXTERN int bk_stream_fd_new(bk_stream **out, int fd, int own);
/* Reads a borrowed memory buffer, which must outlive the stream. */
BK_EXTERN int bk_stream_mem_reader(bk_stream **out, const void *data, size_t len);
/* Collects what is written into a growing buffer; `max` (0: no limit) caps
 * it, writing past it is BK_ENOSPACE. */
BK_EXTERN int bk_stream_mem_writer(bk_stream **out, size_t max);
/* The bytes collected so far by a memory writer (borrowed). */
BK_EXTERN const uint8_t *bk_stream_mem_data(bk_stream *s, size_t *out_len);

/* A filter that stops passing bytes after `limit` bytes have crossed it, and
 * then fails with `code` (for example BK_EDISCONNECTED) or, with code 0,
 * reports an early end of stream. Used to test every cut point. */
BK_EXTERN int bk_stream_cut_new(bk_stream **out, bk_stream *next, int own_next, uint64_t limit, int code);

BK_END_DECLS

#endif
