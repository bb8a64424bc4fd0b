/* Payload digests (BLAKE2b-256 over every byte after the age header), backup
 * ids, locked part files and the test hook. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <sodium.h>

#include "libbackup/backup/backup_internal.h"

#define HEADER_MAX (256 * 1024)

/* --- Incremental --- */

void bk_payload_hasher_init(bk_payload_hasher *ph)
{
	memset(ph, 0, sizeof(*ph));
	crypto_generichash_init(&ph->h, NULL, 0, BK_BACKUP_DIGEST_LEN);
}

/* Feeds header bytes until the MAC line ("--- ...\n") ends; returns how many
 * of `n` bytes belong to the header. */
static size_t header_bytes(bk_payload_hasher *ph, const uint8_t *p, size_t n)
{
	size_t i = 0;
	while (i < n && !ph->in_payload) {
		uint8_t c = p[i++];
		ph->header_len++;
		if (c == '\n') {
			if (ph->line_len >= 4 && memcmp(ph->line, "--- ", 4) == 0)
				ph->in_payload = true;
			ph->line_len = 0;
		} else if (ph->line_len < sizeof(ph->line)) {
			ph->line[ph->line_len++] = c;
		}
	}
	return i;
}

int bk_payload_hasher_update(bk_payload_hasher *ph, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	size_t h = ph->in_payload ? 0 : header_bytes(ph, p, len);
	if (!ph->in_payload && ph->header_len > HEADER_MAX)
		return bk__error_set(BK_EFORMAT, "header-malformed",
				     "age header: longer than %d bytes", HEADER_MAX);
	if (h < len) {
		crypto_generichash_update(&ph->h, p + h, len - h);
		ph->payload += len - h;
	}
	return 0;
}

int bk_payload_hasher_final(bk_payload_hasher *ph, bk_payload_digest *res)
{
	if (!ph->in_payload)
		return bk__error_set(BK_EFORMAT, "header-malformed",
				     "age header: incomplete (no MAC line)");
	crypto_generichash_final(&ph->h, res->digest, BK_BACKUP_DIGEST_LEN);
	res->header_len = ph->header_len;
	res->payload_len = ph->payload;
	res->done = true;
	return 0;
}

/* --- Writer --- */

typedef struct hash_w {
	bk_stream base;
	bk_payload_hasher ph;
	bk_payload_digest *res;
} hash_w;

static int hw_write(bk_stream *st, const void *buf, size_t len, bk_deadline d)
{
	hash_w *w = (hash_w *)st;
	int rc = bk_payload_hasher_update(&w->ph, buf, len);
	return rc ? rc : bk_stream_write(st->next, buf, len, d);
}

static int hw_finish(bk_stream *st, bk_deadline d)
{
	hash_w *w = (hash_w *)st;
	(void)d;
	if (w->res->done)
		return 0;
	return bk_payload_hasher_final(&w->ph, w->res);
}

static void hw_release(bk_stream *st)
{
	bk__free(st);
}

static const bk_stream_ops hw_ops = {
	.version = BK_STREAM_OPS_VERSION,
	.name = "payload-digest",
	.write = hw_write,
	.finish = hw_finish,
	.release = hw_release,
};

int bk_payload_hash_writer(bk_stream **out, bk_stream *next, int own_next, bk_payload_digest *res)
{
	*out = NULL;
	if (next == NULL || res == NULL)
		return bk__error_set(BK_EINVALID, NULL, "payload digest: no stream");
	hash_w *w = bk__calloc(1, sizeof(*w));
	if (w == NULL)
		return BK_ENOMEM;
	memset(res, 0, sizeof(*res));
	w->base.ops = &hw_ops;
	w->base.next = next;
	w->base.owns_next = own_next;
	w->res = res;
	bk_payload_hasher_init(&w->ph);
	*out = &w->base;
	return 0;
}

/* --- Reader --- */

typedef struct hash_r {
	bk_stream base;
	crypto_generichash_state h;
	bk_payload_digest *res;
	uint64_t skip;
	uint64_t pos;
} hash_r;

static int hr_read(bk_stream *st, void *buf, size_t len, size_t *out_n, bk_deadline d)
{
	hash_r *r = (hash_r *)st;
	int rc = bk_stream_read(st->next, buf, len, out_n, d);
	if (rc)
		return rc;
	size_t n = *out_n;
	if (n == 0) {
		if (!r->res->done) {
			crypto_generichash_final(&r->h, r->res->digest, BK_BACKUP_DIGEST_LEN);
			r->res->header_len = r->skip;
			r->res->payload_len = r->pos > r->skip ? r->pos - r->skip : 0;
			r->res->done = true;
		}
		return 0;
	}
	size_t off = 0;
	if (r->pos < r->skip)
		off = r->skip - r->pos < n ? (size_t)(r->skip - r->pos) : n;
	if (off < n)
		crypto_generichash_update(&r->h, (const uint8_t *)buf + off, n - off);
	r->pos += n;
	return 0;
}

static void hr_release(bk_stream *st)
{
	bk__free(st);
}

static const bk_stream_ops hr_ops = {
	.version = BK_STREAM_OPS_VERSION,
	.name = "payload-digest",
	.read = hr_read,
	.release = hr_release,
};

int bk_payload_hash_writer_done(bk_stream *w)
{
	if (w == NULL || w->ops != &hw_ops)
		return bk__error_set(BK_EINVALID, NULL, "payload digest: not a digest writer");
	return hw_finish(w, BK_DEADLINE_NONE);
}

int bk_payload_hash_reader(bk_stream **out, bk_stream *src, int own_src, uint64_t skip,
			   bk_payload_digest *res)
{
	*out = NULL;
	if (src == NULL || res == NULL)
		return bk__error_set(BK_EINVALID, NULL, "payload digest: no stream");
	hash_r *r = bk__calloc(1, sizeof(*r));
	if (r == NULL)
		return BK_ENOMEM;
	memset(res, 0, sizeof(*res));
	r->base.ops = &hr_ops;
	r->base.next = src;
	r->base.owns_next = own_src;
	r->res = res;
	r->skip = skip;
	crypto_generichash_init(&r->h, NULL, 0, BK_BACKUP_DIGEST_LEN);
	*out = &r->base;
	return 0;
}

int bk_payload_digest_file(const char *path, bk_payload_digest *res)
{
	bk_stream *f = NULL, *h = NULL;
	uint8_t *hdr = NULL, *buf = NULL;
	size_t hdr_len = 0;
	bk_age_decrypt_opts dopts = BK_AGE_DECRYPT_OPTS_INIT;
	memset(res, 0, sizeof(*res));
	int rc = bk_stream_file_open(&f, path);
	if (rc)
		return rc;
	rc = bk_age_header_read(&hdr, &hdr_len, f, &dopts, BK_DEADLINE_NONE);
	if (rc) {
		bk__error_prefix(rc, "%s", path);
		goto done;
	}
	rc = bk_payload_hash_reader(&h, f, 1, 0, res);
	if (rc)
		goto done;
	f = NULL;
	buf = bk__malloc(BK_AGE_ENC_CHUNK_SIZE);
	if (buf == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	for (;;) {
		size_t n = 0;
		rc = bk_stream_read(h, buf, BK_AGE_ENC_CHUNK_SIZE, &n, BK_DEADLINE_NONE);
		if (rc || n == 0)
			break;
	}
	res->header_len = hdr_len;
done:
	bk__free(buf);
	bk__free(hdr);
	bk_stream_free(h);
	bk_stream_free(f);
	return rc;
}

int bk_payload_header_file(const char *path, uint64_t *out_len)
{
	bk_stream *f = NULL;
	uint8_t *hdr = NULL;
	size_t hdr_len = 0;
	bk_age_decrypt_opts dopts = BK_AGE_DECRYPT_OPTS_INIT;
	int rc = bk_stream_file_open(&f, path);
	if (rc)
		return rc;
	rc = bk_age_header_read(&hdr, &hdr_len, f, &dopts, BK_DEADLINE_NONE);
	if (rc)
		bk__error_prefix(rc, "%s", path);
	else
		*out_len = hdr_len;
	bk__free(hdr);
	bk_stream_free(f);
	return rc;
}

/* --- Ids --- */

bool bk_backup__valid_id(const char *s)
{
	if (s == NULL || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		char c = s[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
			return false;
		}
	}
	return true;
}

void bk_backup__new_id(char out[37])
{
	uint8_t b[16];
	char hex[33];
	randombytes_buf(b, sizeof(b));
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	bk_hex_encode(hex, b, sizeof(b));
	memcpy(out, hex, 8);
	out[8] = '-';
	memcpy(out + 9, hex + 8, 4);
	out[13] = '-';
	memcpy(out + 14, hex + 12, 4);
	out[18] = '-';
	memcpy(out + 19, hex + 16, 4);
	out[23] = '-';
	memcpy(out + 24, hex + 20, 12);
	out[36] = '\0';
}

/* --- Locked part files --- */

int bk_backup__create_locked(const char *path, int *out_fd)
{
	*out_fd = -1;
	for (int attempt = 0; attempt < 2; attempt++) {
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0) {
			if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
				int e = errno;
				close(fd);
				unlink(path);
				return bk__error_errno(e, "%s: lock", path);
			}
			*out_fd = fd;
			return 0;
		}
		if (errno != EEXIST)
			return bk__error_errno(errno, "%s: create", path);
		int held = bk_backup__is_locked(path);
		if (held < 0)
			return held;
		if (held)
			return bk__error_set(BK_EBUSY, "part-in-use",
					     "%s: another command is writing it", path);
		if (unlink(path) != 0 && errno != ENOENT)
			return bk__error_errno(errno, "%s: remove stale file", path);
	}
	return bk__error_set(BK_EBUSY, "part-in-use", "%s: another command is writing it", path);
}

int bk_backup__is_locked(const char *path)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		return bk__error_errno(errno, "%s: open", path);
	}
	int held = 0;
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		if (errno != EWOULDBLOCK) {
			int e = errno;
			close(fd);
			return bk__error_errno(e, "%s: lock", path);
		}
		held = 1;
	}
	close(fd);
	return held;
}

/* --- Test hook --- */

static _Thread_local bk_backup_hook_fn hook;

void bk_backup__set_hook(bk_backup_hook_fn fn)
{
	hook = fn;
}

void bk_backup__hook(const char *stage)
{
	if (hook)
		hook(stage);
}
