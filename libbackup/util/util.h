/* Internal: the shared utilities every module uses. Not installed. */
#ifndef BK_UTIL_H
#define BK_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <libbackup/errors.h>
#include <libbackup/log.h>
#include <libbackup/progress.h>
#include <libbackup/stream.h>

#define BK_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define BK_UNUSED(x) ((void)(x))
#define BK_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* --- Errors --------------------------------------------------------------- */

/* Sets the thread's last error and returns `code`. `reason` may be NULL (the
 * code's default name is used); it must be a string literal. */
int bk__error_set(int code, const char *reason, const char *fmt, ...) BK_PRINTF(3, 4);
int bk__error_setv(int code, const char *reason, const char *fmt, va_list ap);
/* Prepends "<context>: " to the last error's message, keeping code and reason;
 * returns the code. Used to name the file or device an error is about. */
int bk__error_prefix(int code, const char *fmt, ...) BK_PRINTF(2, 3);
/* Sets the out-of-memory error (allocates nothing) and returns BK_ENOMEM. */
int bk__error_oom(void);
/* Sets an error from errno, appending strerror: ENOENT -> BK_ENOTFOUND,
 * ENOSPC/EDQUOT -> BK_ENOSPACE, EEXIST -> BK_EEXIST, anything else BK_EIO
 * (reason "permission-denied" for EACCES/EPERM). */
int bk__error_errno(int err, const char *fmt, ...) BK_PRINTF(2, 3);

/* --- Allocation ----------------------------------------------------------- */

/* All allocations go through these so tests can fail the Nth one. On failure
 * they set the out-of-memory error and return NULL. */
void *bk__malloc(size_t n);
void *bk__calloc(size_t count, size_t size);
void *bk__realloc(void *p, size_t n);
void bk__free(void *p);
char *bk__strdup(const char *s);
char *bk__strndup(const char *s, size_t n);
char *bk__asprintf(const char *fmt, ...) BK_PRINTF(1, 2);

/* Test hook: make the allocation numbered `n` (1-based, counted from this
 * call, on this thread) and every later one fail; 0 disables. */
void bk__alloc_fail_at(long n);
/* Allocations attempted on this thread since the last bk__alloc_fail_at(). */
long bk__alloc_count(void);

/* --- Overflow-checked sizes ---------------------------------------------- */

static inline bool bk_size_add(size_t *out, size_t a, size_t b)
{
	return !__builtin_add_overflow(a, b, out);
}
static inline bool bk_size_mul(size_t *out, size_t a, size_t b)
{
	return !__builtin_mul_overflow(a, b, out);
}
static inline bool bk_u64_add(uint64_t *out, uint64_t a, uint64_t b)
{
	return !__builtin_add_overflow(a, b, out);
}

/* --- Bounds-checked reading cursor --------------------------------------- */

typedef struct bk_cur {
	const uint8_t *p;
	size_t len;
	size_t pos;
} bk_cur;

static inline void bk_cur_init(bk_cur *c, const void *p, size_t len)
{
	c->p = (const uint8_t *)p;
	c->len = len;
	c->pos = 0;
}
static inline size_t bk_cur_left(const bk_cur *c)
{
	return c->len - c->pos;
}
/* Each returns 0, or BK_EFORMAT (with reason "truncated") when fewer bytes are
 * left than needed; the cursor does not move on failure. */
int bk_cur_u8(bk_cur *c, uint8_t *v);
int bk_cur_u16be(bk_cur *c, uint16_t *v);
int bk_cur_u16le(bk_cur *c, uint16_t *v);
int bk_cur_u32be(bk_cur *c, uint32_t *v);
int bk_cur_u32le(bk_cur *c, uint32_t *v);
int bk_cur_u64be(bk_cur *c, uint64_t *v);
int bk_cur_u64le(bk_cur *c, uint64_t *v);
/* Borrows `n` bytes at the cursor. */
int bk_cur_bytes(bk_cur *c, const uint8_t **out, size_t n);
/* Copies `n` bytes into `dst`. */
int bk_cur_copy(bk_cur *c, void *dst, size_t n);
int bk_cur_skip(bk_cur *c, size_t n);
/* A length-prefixed string (u8, u16be or u32be length), borrowed; at most
 * `max` bytes. */
int bk_cur_str8(bk_cur *c, const uint8_t **out, size_t *out_len, size_t max);
int bk_cur_str16be(bk_cur *c, const uint8_t **out, size_t *out_len, size_t max);
int bk_cur_str32be(bk_cur *c, const uint8_t **out, size_t *out_len, size_t max);
/* The rest of the input, borrowed. */
void bk_cur_rest(bk_cur *c, const uint8_t **out, size_t *out_len);

/* --- Growing byte buffer ---------------------------------------------------- */

typedef struct bk_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
	int secret; /* wipe on growth and free */
} bk_buf;

#define BK_BUF_INIT {NULL, 0, 0, 0}

int bk_buf_reserve(bk_buf *b, size_t extra);
int bk_buf_put(bk_buf *b, const void *p, size_t n);
int bk_buf_put_u8(bk_buf *b, uint8_t v);
int bk_buf_put_u16be(bk_buf *b, uint16_t v);
int bk_buf_put_u32be(bk_buf *b, uint32_t v);
int bk_buf_put_u64be(bk_buf *b, uint64_t v);
int bk_buf_put_u32le(bk_buf *b, uint32_t v);
int bk_buf_put_u64le(bk_buf *b, uint64_t v);
int bk_buf_put_str(bk_buf *b, const char *s);
int bk_buf_printf(bk_buf *b, const char *fmt, ...) BK_PRINTF(2, 3);
/* Makes data a NUL-terminated string (the NUL is not counted in len). */
int bk_buf_cstr(bk_buf *b);
void bk_buf_reset(bk_buf *b);
void bk_buf_free(bk_buf *b);
/* Hands the data over to the caller (who frees it with bk__free). */
uint8_t *bk_buf_steal(bk_buf *b, size_t *out_len);

static inline void bk_put_u16be(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}
static inline void bk_put_u32be(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}
static inline void bk_put_u64be(uint8_t *p, uint64_t v)
{
	bk_put_u32be(p, (uint32_t)(v >> 32));
	bk_put_u32be(p + 4, (uint32_t)v);
}
static inline void bk_put_u64le(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t bk_get_u16be(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t bk_get_u32be(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t bk_get_u64be(const uint8_t *p)
{
	return ((uint64_t)bk_get_u32be(p) << 32) | bk_get_u32be(p + 4);
}

/* --- Secrets -------------------------------------------------------------- */

/* Secret bytes in guarded sodium_malloc memory, wiped when freed. */
typedef struct bk_secret bk_secret;
int bk_secret_new(bk_secret **out, size_t len);
int bk_secret_from(bk_secret **out, const void *data, size_t len);
uint8_t *bk_secret_data(bk_secret *s);
size_t bk_secret_len(const bk_secret *s);
/* Makes the memory read-only (or writable again) until the next call. */
int bk_secret_lock(bk_secret *s);
int bk_secret_unlock(bk_secret *s);
void bk_secret_free(bk_secret *s);
/* Wipes `n` bytes (never optimised away). */
void bk_wipe(void *p, size_t n);
/* Constant-time comparison: 0 when equal. */
int bk_ct_compare(const void *a, const void *b, size_t n);

/* --- Text helpers --------------------------------------------------------- */

/* Lower-case hex of `n` bytes into `out` (2n+1 bytes). */
void bk_hex_encode(char *out, const uint8_t *in, size_t n);
/* Exactly 2n hex digits into n bytes; BK_EFORMAT otherwise. */
int bk_hex_decode(uint8_t *out, size_t n, const char *hex);
/* Checked string to number: the whole string must be a number in range. */
int bk_parse_u64(const char *s, uint64_t *out);
int bk_parse_i64(const char *s, int64_t *out);
/* A size with an optional K, M, G or T suffix (powers of 1024). */
int bk_parse_size(const char *s, uint64_t *out);
/* Copies at most dst_size-1 bytes and terminates; returns false on truncation. */
bool bk_strlcpy(char *dst, const char *src, size_t dst_size);
/* RFC 3339 UTC time ("2026-11-28T16:11:56Z") into out (21 bytes). */
void bk_time_rfc3339(char out[21], int64_t unix_seconds);
int bk_time_parse_rfc3339(const char *s, int64_t *out);

/* --- Files ---------------------------------------------------------------- */

/* Reads a whole file of at most `max` bytes (BK_ENOSPACE past it). The data
 * gets a NUL after it (not counted); free with bk__free. */
int bk_file_read(const char *path, size_t max, uint8_t **out, size_t *out_len);
/* Writes a whole file atomically (see bk_stream_atomic_new). */
int bk_file_write_atomic(const char *path, const void *data, size_t len, unsigned mode, int exclusive);
/* Makes a directory entry change durable. */
int bk_fsync_dir(const char *dir);
/* Starts the writeback of what `fd` holds beyond *synced once `written`
 * passes it by `step` bytes (a hint: the final fsync then finds little
 * left to write); advances *synced. */
void bk_fd_writeback(int fd, uint64_t *synced, uint64_t written, uint64_t step);
/* The folder part of a path ("." when none); free with bk__free. */
char *bk_path_dirname(const char *path);
/* `base`/`rel` unless `rel` is absolute; free with bk__free. */
char *bk_path_join(const char *base, const char *rel);
/* Creates a folder and its parents with `mode`; existing ones are fine. */
int bk_mkdir_p(const char *path, unsigned mode);
/* Refuses a key or token file that is group- or world-accessible, or not a
 * regular file, with a message saying how to fix it (BK_EAUTH). */
int bk_file_check_private(const char *path);

/* Test hook: the atomic writer stops just before its rename (as if killed),
 * on this thread, while set. */
void bk__atomic_fail_before_rename(int on);

/* --- Logging ------------------------------------------------------------- */

void bk__log(int level, const char *domain, const char *fmt, ...) BK_PRINTF(3, 4);
bool bk__log_enabled(int level);

/* --- Progress ------------------------------------------------------------- */

typedef struct bk_progress_step {
	const char *name;
	double weight;
} bk_progress_step;

/* Tracks weighted steps and reports through a callback. */
typedef struct bk_progress_tracker {
	bk_progress_cb cb;
	void *payload;
	const char *subject;
	const bk_progress_step *steps;
	unsigned count;
	unsigned current;
	uint64_t total;
	int64_t started_ms;
	int64_t last_report_ms;
	uint64_t last_done;
} bk_progress_tracker;

void bk_progress_init(bk_progress_tracker *t, bk_progress_cb cb, void *payload,
		      const char *subject, const bk_progress_step *steps, unsigned count);
/* Moves to the named step with `total` units to do (reports once). */
int bk_progress_step_begin(bk_progress_tracker *t, const char *name, uint64_t total);
/* Reports `done` units of the current step; rate-limited unless `force`.
 * Returns BK_ECANCELLED when the callback asked to stop. */
int bk_progress_update(bk_progress_tracker *t, uint64_t done, bool force);

#endif
