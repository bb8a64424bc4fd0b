/* Backup stores: the `s3://BUCKET/PREFIX` backend (S3-compatible object storage).
 *
 * Objects are `PREFIX<id>.aibk` and `PREFIX<id>.aibk.statement`, addressed
 * path-style (ENDPOINT/BUCKET/KEY) and signed by libcurl's AWS SigV4 with an
 * `x-amz-content-sha256` header of our own. A backup is written to a local
 * part file, then uploaded: small files with one PUT, larger ones as a
 * multipart upload whose progress is journalled beside the part file
 * (`<part>.upload`), so a second put of the same id resumes it (the server's
 * ListParts answer is preferred; the journal serves servers without it).
 *
 * Reads take one of two paths:
 * - bk_store__s3_open_reader() streams: ranged GETs whose bodies are read
 *   as they arrive through a bounded buffer, resumed with a Range request
 *   after a cut connection. For readers that go through a backup once from
 *   its start (verify, extract, inspect, payload digests).
 * - get_path downloads into the local cache (`<id>.aibk.dl`, renamed when
 *   whole), resuming with Range after a cut connection and, in a later
 *   command, after a killed one. A restore needs this: it sends the payload
 *   to the unit by offset, from wherever the unit's RESTORE_STATUS says it
 *   stopped, again after every reconnection, so it needs random access to a
 *   file that stays put for the whole job (and for `resume` later). */
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "libbackup/backup/backup_internal.h"
#include "libbackup/backup/store_s3.h"

#define SUFFIX        BK_BACKUP_EXT
#define STMT_SUFFIX   BK_BACKUP_EXT BK_STATEMENT_EXT
#define PART_SIZE     (8u * 1024 * 1024)
#define ERRBODY_MAX   65536
#define LIST_MAX_BODY (16u * 1024 * 1024)
#define MAX_PARTS     10000

typedef struct s3_store {
	bk_store base;
	char *endpoint; /* scheme://host[:port], no trailing slash */
	char *region;
	char *bucket;
	char *prefix; /* "" or ending in '/' */
	char *access_key;
	bk_secret *secret_key; /* NUL-terminated */
	char *cache;
	uint64_t part_size;
	unsigned list_page; /* max-keys (0: the server's default) */
} s3_store;

/* --- small helpers --- */

static const char *setting(const bk_config *cfg, const char *key, const char *env)
{
	const char *v = cfg ? bk_config_get(cfg, key) : NULL;
	if (v && v[0])
		return v;
	v = env ? getenv(env) : NULL;
	return v && v[0] ? v : NULL;
}

static int url_encode(bk_buf *b, const char *s, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		int rc;
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/'))
			rc = bk_buf_put_u8(b, c);
		else
			rc = bk_buf_printf(b, "%%%c%c", hex[c >> 4], hex[c & 15]);
		if (rc)
			return rc;
	}
	return 0;
}

/* The text of the first <tag>...</tag> at or after `*pos` in `body`
 * (NUL-terminated), unescaping the XML entities S3 uses; NULL when absent.
 * `*pos` moves past the element. */
static char *xml_take(const char *body, size_t len, size_t *pos, const char *tag)
{
	char open[64], close[64];
	if (*pos >= len)
		return NULL;
	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	const char *a = strstr(body + *pos, open);
	if (a == NULL)
		return NULL;
	a += strlen(open);
	const char *e = strstr(a, close);
	if (e == NULL)
		return NULL;
	*pos = (size_t)(e - body) + strlen(close);
	char *out = bk__malloc((size_t)(e - a) + 1);
	if (out == NULL)
		return NULL;
	size_t n = 0;
	while (a < e) {
		static const struct {
			const char *ent;
			char c;
		} ents[] = {{"&quot;", '"'}, {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'},
			    {"&apos;", '\''}, {"&#34;", '"'}, {"&#39;", '\''}};
		bool hit = false;
		if (*a == '&') {
			for (size_t i = 0; i < BK_ARRAY_LEN(ents); i++) {
				size_t el = strlen(ents[i].ent);
				if ((size_t)(e - a) >= el && memcmp(a, ents[i].ent, el) == 0) {
					out[n++] = ents[i].c;
					a += el;
					hit = true;
					break;
				}
			}
		}
		if (!hit)
			out[n++] = *a++;
	}
	out[n] = '\0';
	return out;
}

static void strip_quotes(char *s)
{
	size_t n = 0;
	for (char *p = s; *p; p++)
		if (*p != '"')
			s[n++] = *p;
	s[n] = '\0';
}

/* --- requests --- */

typedef struct s3_req {
	const char *method;  /* GET PUT POST DELETE HEAD */
	const char *key;     /* full object key, or NULL for the bucket */
	const char *query;   /* encoded, sorted query string, or NULL */
	const uint8_t *body; /* request body (PUT, POST) */
	size_t body_len;
	FILE *out_file;      /* GET: a 2xx body goes here */
	bk_buf *out_buf;     /* otherwise here (when not NULL) */
	size_t out_max;
	uint64_t range_from; /* GET: from this offset (0: whole object) */
	/* GET: a 2xx body goes to this sink instead (it may return
	 * CURL_WRITEFUNC_PAUSE, or 0 to abort the transfer) */
	size_t (*sink)(void *arg, const char *data, size_t n);
	void *sink_arg;
	/* results */
	long status;
	char etag[128];
	char err_code[64];
	uint64_t length;     /* Content-Length of the answer */
} s3_req;

typedef struct io_ctx {
	s3_req *r;
	CURL *curl;
	size_t upos;
	bk_buf err;
	int file_failed;
} io_ctx;

static size_t on_read(char *buf, size_t size, size_t nitems, void *p)
{
	io_ctx *io = p;
	size_t want = size * nitems, left = io->r->body_len - io->upos;
	if (want > left)
		want = left;
	if (want)
		memcpy(buf, io->r->body + io->upos, want);
	io->upos += want;
	return want;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *p)
{
	io_ctx *io = p;
	size_t n = size * nmemb;
	long code = 0;
	curl_easy_getinfo(io->curl, CURLINFO_RESPONSE_CODE, &code);
	if (code >= 300) {
		if (io->err.len + n <= ERRBODY_MAX && bk_buf_put(&io->err, data, n))
			return 0;
		return n;
	}
	if (io->r->sink)
		return io->r->sink(io->r->sink_arg, data, n);
	if (io->r->out_file) {
		if (fwrite(data, 1, n, io->r->out_file) != n) {
			io->file_failed = errno ? errno : EIO;
			return 0;
		}
		return n;
	}
	if (io->r->out_buf) {
		if (io->r->out_buf->len + n > io->r->out_max || bk_buf_put(io->r->out_buf, data, n))
			return 0;
	}
	return n;
}

static size_t on_header(char *data, size_t size, size_t nitems, void *p)
{
	io_ctx *io = p;
	size_t n = size * nitems;
	if (n > 5 && strncasecmp(data, "etag:", 5) == 0) {
		size_t i = 5, j = 0;
		while (i < n && (data[i] == ' ' || data[i] == '\t'))
			i++;
		while (i < n && data[i] != '\r' && data[i] != '\n' && j + 1 < sizeof(io->r->etag))
			io->r->etag[j++] = data[i++];
		io->r->etag[j] = '\0';
		strip_quotes(io->r->etag);
	}
	return n;
}

/* The state of one request being prepared or run. */
typedef struct s3_xfer {
	CURL *curl;
	struct curl_slist *hdrs;
	bk_buf url;
	io_ctx io;
	char sigv4[128];
	char range[64];
} s3_xfer;

static void xfer_clear(s3_xfer *x)
{
	bk_buf_free(&x->io.err);
	curl_slist_free_all(x->hdrs);
	curl_easy_cleanup(x->curl);
	bk_buf_free(&x->url);
	memset(x, 0, sizeof(*x));
}

/* Makes the easy handle of request `r` in `x` (cleared first): the URL, the
 * SigV4 signature and the callbacks. `x` must not move until it is cleared. */
static int xfer_prepare(s3_store *s, s3_req *r, s3_xfer *x)
{
	char line[160], hash_hex[65];
	uint8_t hash[crypto_hash_sha256_BYTES];
	int rc = 0;
	memset(x, 0, sizeof(*x));
	x->io.r = r;
	r->status = 0;
	r->etag[0] = r->err_code[0] = '\0';
	r->length = 0;

	if ((rc = bk_buf_printf(&x->url, "%s/", s->endpoint)) ||
	    (rc = url_encode(&x->url, s->bucket, false)))
		return rc;
	if (r->key &&
	    ((rc = bk_buf_put_u8(&x->url, '/')) || (rc = url_encode(&x->url, r->key, true))))
		return rc;
	if (r->query && r->query[0] && (rc = bk_buf_printf(&x->url, "?%s", r->query)))
		return rc;
	if ((rc = bk_buf_cstr(&x->url)))
		return rc;

	CURL *curl = x->curl = curl_easy_init();
	if (curl == NULL)
		return BK_ENOMEM;
	x->io.curl = curl;
	crypto_hash_sha256(hash, r->body ? r->body : (const uint8_t *)"", r->body_len);
	bk_hex_encode(hash_hex, hash, sizeof(hash));
	snprintf(line, sizeof(line), "x-amz-content-sha256: %s", hash_hex);
	if ((x->hdrs = curl_slist_append(NULL, line)) == NULL)
		return BK_ENOMEM;
	snprintf(x->sigv4, sizeof(x->sigv4), "aws:amz:%s:s3", s->region);
	curl_easy_setopt(curl, CURLOPT_URL, (const char *)x->url.data);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_AWS_SIGV4, x->sigv4);
	curl_easy_setopt(curl, CURLOPT_USERNAME, s->access_key);
	curl_easy_setopt(curl, CURLOPT_PASSWORD, (const char *)bk_secret_data(s->secret_key));
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, x->hdrs);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 15L);
	curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 60L);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &x->io);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, &x->io);
	if (strcmp(r->method, "PUT") == 0) {
		curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(curl, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(curl, CURLOPT_READDATA, &x->io);
		curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->body_len);
	} else if (strcmp(r->method, "POST") == 0) {
		curl_easy_setopt(curl, CURLOPT_POST, 1L);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, r->body ? (const char *)r->body : "");
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
	} else if (strcmp(r->method, "HEAD") == 0) {
		curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
	} else if (strcmp(r->method, "DELETE") == 0) {
		curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "DELETE");
	} else if (r->range_from > 0) {
		snprintf(x->range, sizeof(x->range), "%llu-", (unsigned long long)r->range_from);
		curl_easy_setopt(curl, CURLOPT_RANGE, x->range);
	}
	return 0;
}

/* After a transfer of `x` ended with `cc`: the answer's status, length and
 * error code in its request, or the transport failure as the error. */
static int xfer_result(s3_store *s, s3_xfer *x, CURLcode cc)
{
	s3_req *r = x->io.r;
	curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &r->status);
	curl_off_t cl = -1;
	curl_easy_getinfo(x->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
	r->length = cl > 0 ? (uint64_t)cl : 0;
	if (x->io.file_failed)
		return bk__error_errno(x->io.file_failed, "s3 %s %s: write the download", r->method,
				       r->key ? r->key : s->bucket);
	if (cc != CURLE_OK) {
		int code = cc == CURLE_OPERATION_TIMEDOUT ? BK_ETIMEOUT : BK_EAPI;
		return bk__error_set(code, cc == CURLE_OPERATION_TIMEDOUT ? "s3-timeout" : "s3-unreachable",
				     "s3 %s %s/%s: %s", r->method, s->endpoint, s->bucket,
				     curl_easy_strerror(cc));
	}
	if (r->status >= 300 && x->io.err.len) {
		size_t pos = 0;
		if (bk_buf_cstr(&x->io.err) == 0) {
			char *code = xml_take((const char *)x->io.err.data, x->io.err.len, &pos, "Code");
			if (code) {
				bk_strlcpy(r->err_code, code, sizeof(r->err_code));
				bk__free(code);
			}
		}
	}
	return 0;
}

static int s3_do(s3_store *s, s3_req *r)
{
	s3_xfer x;
	int rc = xfer_prepare(s, r, &x);
	if (rc == 0)
		rc = xfer_result(s, &x, curl_easy_perform(x.curl));
	xfer_clear(&x);
	return rc;
}

/* Turns a non-2xx answer into an error. */
static int s3_fail(s3_store *s, const s3_req *r, const char *what)
{
	const char *code = r->err_code[0] ? r->err_code : "no error code";
	if (r->status == 401 || r->status == 403)
		return bk__error_set(BK_EAUTH, "s3-auth-refused",
				     "s3 %s %s: refused with %ld %s (check store.s3_access_key and "
				     "store.s3_secret_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
				     what, s->bucket, r->status, code);
	if (r->status == 404)
		return bk__error_set(BK_ENOTFOUND, "s3-not-found", "s3 %s %s: not found (%s)", what,
				     s->bucket, code);
	return bk__error_set(BK_EAPI, r->status >= 500 ? "s3-unavailable" : "s3-refused",
			     "s3 %s %s: server answered %ld %s", what, s->bucket, r->status, code);
}

/* Runs a request, retrying 5xx answers and transport failures twice. */
static int s3_call(s3_store *s, s3_req *r, const char *what)
{
	int rc = 0;
	for (int attempt = 0; attempt < 3; attempt++) {
		if (attempt)
			usleep(200000u * (unsigned)attempt);
		if (r->out_buf)
			bk_buf_reset(r->out_buf);
		if (r->out_file && (fflush(r->out_file) != 0 || ftruncate(fileno(r->out_file), 0) != 0 ||
				    fseeko(r->out_file, 0, SEEK_SET) != 0))
			return bk__error_errno(errno, "s3 %s: reset the download", what);
		rc = s3_do(s, r);
		if (rc == BK_EAPI || (rc == 0 && r->status >= 500))
			continue;
		break;
	}
	if (rc)
		return rc;
	if (r->status < 200 || r->status >= 300)
		return s3_fail(s, r, what);
	return 0;
}

static char *obj_key(s3_store *s, const char *id, const char *suffix)
{
	return bk__asprintf("%s%s%s", s->prefix, id, suffix);
}

/* --- operations --- */

static char *cache_file(s3_store *s, const char *id, const char *suffix)
{
	return bk__asprintf("%s/%s%s", s->cache, id, suffix);
}

static int s3_part_path(bk_store *st, const char *id, char **out)
{
	*out = cache_file((s3_store *)st, id, SUFFIX ".part");
	return *out ? 0 : BK_ENOMEM;
}

static int s3_location(bk_store *st, const char *id, char **out)
{
	s3_store *s = (s3_store *)st;
	*out = bk__asprintf("s3://%s/%s%s" SUFFIX, s->bucket, s->prefix, id);
	return *out ? 0 : BK_ENOMEM;
}

/* Whether `key` exists, and its size and ETag (each may be NULL). */
static int head_object_etag(s3_store *s, const char *key, int *exists, uint64_t *size, char *etag,
			    size_t etag_size)
{
	s3_req r;
	memset(&r, 0, sizeof(r));
	r.method = "HEAD";
	r.key = key;
	int rc = s3_do(s, &r);
	if (rc)
		return rc;
	if (r.status == 404) {
		*exists = 0;
		return 0;
	}
	if (r.status < 200 || r.status >= 300)
		return s3_fail(s, &r, "HEAD");
	*exists = 1;
	if (size)
		*size = r.length;
	if (etag)
		bk_strlcpy(etag, r.etag, etag_size);
	return 0;
}

static int head_object(s3_store *s, const char *key, int *exists, uint64_t *size)
{
	return head_object_etag(s, key, exists, size, NULL, 0);
}

static int put_bytes(s3_store *s, const char *key, const char *query, const uint8_t *data,
		     size_t len, char *etag, size_t etag_size)
{
	s3_req r;
	memset(&r, 0, sizeof(r));
	r.method = "PUT";
	r.key = key;
	r.query = query;
	r.body = data;
	r.body_len = len;
	int rc = s3_call(s, &r, query ? "upload part" : "PUT");
	if (rc == 0 && etag)
		bk_strlcpy(etag, r.etag, etag_size);
	return rc;
}

static int read_at(int fd, uint8_t *buf, size_t len, uint64_t off, const char *path)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = pread(fd, buf + got, len - got, (off_t)(off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return bk__error_errno(errno, "%s: read", path);
		if (n == 0)
			return bk__error_set(BK_ERROR, "file-changed", "%s: shorter than expected", path);
		got += (size_t)n;
	}
	return 0;
}

typedef struct part_etags {
	char (*etag)[128]; /* index n-1: part n's ETag, "" when not uploaded */
	size_t count;
} part_etags;

/* Reads the journal `<part>.upload`: "upload-id\n" then "N ETAG\n" lines. */
static int journal_read(const char *jpath, char **upload_id, part_etags *pe)
{
	uint8_t *data = NULL;
	size_t len = 0;
	*upload_id = NULL;
	int rc = bk_file_read(jpath, 1u << 20, &data, &len);
	if (rc) {
		bk_error_clear();
		return 0;
	}
	char *text = bk__strndup((const char *)data, len);
	bk__free(data);
	if (text == NULL)
		return BK_ENOMEM;
	char *save = NULL, *line = strtok_r(text, "\n", &save);
	if (line && line[0] && strlen(line) < 256) {
		*upload_id = bk__strdup(line);
		if (*upload_id == NULL)
			rc = BK_ENOMEM;
		while (rc == 0 && (line = strtok_r(NULL, "\n", &save)) != NULL) {
			char *sp = strchr(line, ' ');
			uint64_t n = 0;
			if (sp == NULL)
				continue;
			*sp = '\0';
			if (bk_parse_u64(line, &n) || n == 0 || n > pe->count)
				continue;
			bk_strlcpy(pe->etag[n - 1], sp + 1, sizeof(pe->etag[0]));
		}
	}
	bk__free(text);
	return rc;
}

static int journal_append(const char *jpath, const char *line)
{
	int fd = open(jpath, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return bk__error_errno(errno, "%s: open", jpath);
	size_t n = strlen(line);
	int rc = 0;
	if (write(fd, line, n) != (ssize_t)n || fsync(fd) != 0)
		rc = bk__error_errno(errno ? errno : EIO, "%s: write", jpath);
	close(fd);
	return rc;
}

/* Asks the server which parts of `upload_id` it holds (ListParts). Returns
 * 1 when it answered (`pe` replaced by its view), 0 when the server does not
 * list parts, BK_ENOTFOUND when the upload is gone. */
static int list_parts(s3_store *s, const char *key, const char *upload_id, part_etags *pe)
{
	bk_buf q = {0}, body = {0};
	s3_req r;
	int rc;
	memset(&r, 0, sizeof(r));
	if ((rc = bk_buf_put_str(&q, "uploadId=")) || (rc = url_encode(&q, upload_id, false)) ||
	    (rc = bk_buf_cstr(&q)))
		goto done;
	r.method = "GET";
	r.key = key;
	r.query = (const char *)q.data;
	r.out_buf = &body;
	r.out_max = LIST_MAX_BODY;
	if ((rc = s3_do(s, &r)))
		goto done;
	if (r.status == 404 && strcmp(r.err_code, "NoSuchUpload") == 0) {
		rc = BK_ENOTFOUND;
		goto done;
	}
	if (r.status == 401 || r.status == 403) {
		rc = s3_fail(s, &r, "list parts");
		goto done;
	}
	if (r.status < 200 || r.status >= 300) {
		rc = 0; /* not supported here: the journal decides */
		goto done;
	}
	if ((rc = bk_buf_cstr(&body)))
		goto done;
	for (size_t i = 0; i < pe->count; i++)
		pe->etag[i][0] = '\0';
	size_t pos = 0;
	for (;;) {
		char *part = xml_take((const char *)body.data, body.len, &pos, "Part");
		if (part == NULL)
			break;
		size_t p2 = 0, plen = strlen(part);
		char *num = xml_take(part, plen, &p2, "PartNumber");
		p2 = 0;
		char *et = xml_take(part, plen, &p2, "ETag");
		uint64_t n = 0;
		if (num && et && bk_parse_u64(num, &n) == 0 && n >= 1 && n <= pe->count) {
			strip_quotes(et);
			bk_strlcpy(pe->etag[n - 1], et, sizeof(pe->etag[0]));
		}
		bk__free(num);
		bk__free(et);
		bk__free(part);
	}
	rc = 1;
done:
	bk_buf_free(&q);
	bk_buf_free(&body);
	return rc;
}

static int multipart_put(s3_store *s, const char *key, const char *part, int fd, uint64_t size)
{
	part_etags pe = {0};
	char *jpath = NULL, *upload_id = NULL;
	uint8_t *chunk = NULL;
	bk_buf q = {0}, body = {0}, xml = {0};
	int rc = 0;
	uint64_t nparts = (size + s->part_size - 1) / s->part_size;
	if (nparts > MAX_PARTS) {
		return bk__error_set(BK_ENOSPACE, "s3-too-large", "%s: too large for %u parts of %llu bytes",
				     part, MAX_PARTS, (unsigned long long)s->part_size);
	}
	pe.count = (size_t)nparts;
	pe.etag = bk__calloc(pe.count, sizeof(pe.etag[0]));
	jpath = bk__asprintf("%s.upload", part);
	chunk = bk__malloc((size_t)s->part_size);
	if (pe.etag == NULL || jpath == NULL || chunk == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	if ((rc = journal_read(jpath, &upload_id, &pe)))
		goto done;
	if (upload_id) {
		int lr = list_parts(s, key, upload_id, &pe);
		if (lr == BK_ENOTFOUND) {
			bk_error_clear();
			bk__free(upload_id);
			upload_id = NULL;
			unlink(jpath);
		} else if (lr < 0) {
			rc = lr;
			goto done;
		}
	}
	if (upload_id == NULL) {
		s3_req r;
		memset(&r, 0, sizeof(r));
		for (size_t i = 0; i < pe.count; i++)
			pe.etag[i][0] = '\0';
		r.method = "POST";
		r.key = key;
		r.query = "uploads=";
		r.out_buf = &body;
		r.out_max = ERRBODY_MAX;
		if ((rc = s3_call(s, &r, "start upload")) || (rc = bk_buf_cstr(&body)))
			goto done;
		size_t pos = 0;
		upload_id = xml_take((const char *)body.data, body.len, &pos, "UploadId");
		if (upload_id == NULL || upload_id[0] == '\0' || strchr(upload_id, '\n')) {
			rc = bk__error_set(BK_EAPI, "s3-bad-answer", "s3 start upload %s: no upload id",
					   key);
			goto done;
		}
		char *line = bk__asprintf("%s\n", upload_id);
		if (line == NULL) {
			rc = BK_ENOMEM;
			goto done;
		}
		unlink(jpath);
		rc = journal_append(jpath, line);
		bk__free(line);
		if (rc)
			goto done;
	}
	for (uint64_t n = 1; n <= nparts; n++) {
		if (pe.etag[n - 1][0])
			continue; /* the server has it */
		uint64_t off = (n - 1) * s->part_size;
		size_t len = (size_t)(size - off < s->part_size ? size - off : s->part_size);
		char etag[128], line[200];
		if ((rc = read_at(fd, chunk, len, off, part)))
			goto done;
		bk_buf_reset(&q);
		if ((rc = bk_buf_printf(&q, "partNumber=%llu&uploadId=", (unsigned long long)n)) ||
		    (rc = url_encode(&q, upload_id, false)) || (rc = bk_buf_cstr(&q)))
			goto done;
		if ((rc = put_bytes(s, key, (const char *)q.data, chunk, len, etag, sizeof(etag))))
			goto done;
		if (etag[0] == '\0') {
			rc = bk__error_set(BK_EAPI, "s3-bad-answer", "s3 upload part %llu of %s: no ETag",
					   (unsigned long long)n, key);
			goto done;
		}
		bk_strlcpy(pe.etag[n - 1], etag, sizeof(pe.etag[0]));
		snprintf(line, sizeof(line), "%llu %s\n", (unsigned long long)n, etag);
		if ((rc = journal_append(jpath, line)))
			goto done;
		bk_backup__hook("s3-part-uploaded");
	}
	if ((rc = bk_buf_put_str(&xml, "<CompleteMultipartUpload>")))
		goto done;
	for (uint64_t n = 1; n <= nparts; n++)
		if ((rc = bk_buf_printf(&xml, "<Part><PartNumber>%llu</PartNumber><ETag>\"%s\"</ETag></Part>",
					(unsigned long long)n, pe.etag[n - 1])))
			goto done;
	if ((rc = bk_buf_put_str(&xml, "</CompleteMultipartUpload>")))
		goto done;
	bk_buf_reset(&q);
	if ((rc = bk_buf_put_str(&q, "uploadId=")) || (rc = url_encode(&q, upload_id, false)) ||
	    (rc = bk_buf_cstr(&q)))
		goto done;
	s3_req r;
	memset(&r, 0, sizeof(r));
	r.method = "POST";
	r.key = key;
	r.query = (const char *)q.data;
	r.body = xml.data;
	r.body_len = xml.len;
	r.out_buf = &body;
	r.out_max = ERRBODY_MAX;
	bk_buf_reset(&body);
	if ((rc = s3_call(s, &r, "complete upload")) || (rc = bk_buf_cstr(&body)))
		goto done;
	/* S3 may answer 200 with an error document. */
	size_t pos = 0;
	char *err = xml_take((const char *)body.data, body.len, &pos, "Code");
	if (err) {
		rc = bk__error_set(BK_EAPI, "s3-refused", "s3 complete upload %s: %s", key, err);
		bk__free(err);
		goto done;
	}
	unlink(jpath);
done:
	bk_buf_free(&q);
	bk_buf_free(&body);
	bk_buf_free(&xml);
	bk__free(chunk);
	bk__free(upload_id);
	bk__free(jpath);
	bk__free(pe.etag);
	return rc;
}

static int s3_put(bk_store *st, const char *id, const char *part, const uint8_t *stmt, size_t len,
		  char **out_location)
{
	s3_store *s = (s3_store *)st;
	char *key = obj_key(s, id, SUFFIX), *skey = obj_key(s, id, STMT_SUFFIX);
	uint8_t *data = NULL;
	int fd = -1, rc = 0, exists = 0;
	struct stat sb;
	*out_location = NULL;
	if (key == NULL || skey == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	if ((rc = head_object(s, key, &exists, NULL)))
		goto done;
	if (exists) {
		rc = bk__error_set(BK_EEXIST, "backup-exists", "s3://%s/%s: already in the store",
				   s->bucket, key);
		goto done;
	}
	fd = open(part, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 || fstat(fd, &sb) != 0) {
		rc = bk__error_errno(errno, "%s: open", part);
		goto done;
	}
	/* The statement first: an object under its final name always has one. */
	if ((rc = put_bytes(s, skey, NULL, stmt, len, NULL, 0)))
		goto done;
	bk_backup__hook("before-rename");
	if ((uint64_t)sb.st_size <= s->part_size) {
		size_t n = (size_t)sb.st_size;
		data = bk__malloc(n ? n : 1);
		if (data == NULL) {
			rc = BK_ENOMEM;
			goto done;
		}
		if ((rc = read_at(fd, data, n, 0, part)) ||
		    (rc = put_bytes(s, key, NULL, data, n, NULL, 0)))
			goto done;
	} else if ((rc = multipart_put(s, key, part, fd, (uint64_t)sb.st_size))) {
		goto done;
	}
	if ((rc = s3_location(st, id, out_location)))
		goto done;
	unlink(part); /* the store holds it now */
done:
	if (fd >= 0)
		close(fd);
	bk__free(data);
	bk__free(key);
	bk__free(skey);
	return rc;
}

/* How often a read resumes after a cut connection or a 5xx answer without
 * getting a byte further, and the pause before the n-th such attempt. */
#define RESUME_TRIES 5
static unsigned resume_pause_ms(unsigned n)
{
	return n == 0 ? 0 : 100u << (n < 5 ? n : 5);
}

/* Downloads `key` into `path`, resuming `path.dl` when one is there (left by
 * an interrupted command) and, within this call, after a cut connection:
 * every attempt asks for the bytes from the end of `path.dl` on. */
static int download(s3_store *s, const char *key, const char *path)
{
	char *dl = bk__asprintf("%s.dl", path);
	FILE *f = NULL;
	int rc = 0;
	struct stat sb;
	uint64_t last = UINT64_MAX;
	unsigned stuck = 0;
	if (dl == NULL)
		return BK_ENOMEM;
	f = fopen(dl, "ab");
	if (f == NULL) {
		rc = bk__error_errno(errno, "%s: open", dl);
		goto done;
	}
	for (;;) {
		if (fflush(f) != 0 || fstat(fileno(f), &sb) != 0) {
			rc = bk__error_errno(errno, "%s: write", dl);
			goto done;
		}
		uint64_t have = (uint64_t)sb.st_size;
		stuck = have == last ? stuck + 1 : 0;
		last = have;
		if (stuck >= RESUME_TRIES)
			goto done; /* rc: the last failure */
		usleep(1000u * resume_pause_ms(stuck));
		s3_req r;
		memset(&r, 0, sizeof(r));
		r.method = "GET";
		r.key = key;
		r.out_file = f;
		r.range_from = have;
		rc = s3_do(s, &r);
		if (rc == BK_EAPI || rc == BK_ETIMEOUT || (rc == 0 && r.status >= 500)) {
			if (rc == 0)
				rc = s3_fail(s, &r, "GET");
			continue; /* cut or unavailable: resume from what arrived */
		}
		if (rc)
			goto done;
		if ((r.status == 416 || r.status == 200) && r.range_from > 0) {
			/* 416: already whole, or the object changed; 200: the server
			 * sent everything. Either way the body must replace the file. */
			r.range_from = 0;
			if ((rc = s3_call(s, &r, "GET")))
				goto done;
		} else if (r.status < 200 || r.status >= 300) {
			rc = s3_fail(s, &r, "GET");
			goto done;
		}
		break;
	}
	if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
		rc = bk__error_errno(errno, "%s: write", dl);
		goto done;
	}
	fclose(f);
	f = NULL;
	if (rename(dl, path) != 0)
		rc = bk__error_errno(errno, "%s: rename", path);
done:
	if (f)
		fclose(f);
	if (rc && rc != BK_EAPI && rc != BK_ETIMEOUT)
		unlink(dl); /* keep a partial download only for a transport failure */
	bk__free(dl);
	return rc;
}

static int s3_get_path(bk_store *st, const char *id, char **out)
{
	s3_store *s = (s3_store *)st;
	char *key = obj_key(s, id, SUFFIX), *skey = obj_key(s, id, STMT_SUFFIX);
	char *path = cache_file(s, id, SUFFIX), *spath = cache_file(s, id, STMT_SUFFIX);
	int rc = 0, exists = 0;
	uint64_t size = 0;
	struct stat sb;
	*out = NULL;
	if (key == NULL || skey == NULL || path == NULL || spath == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	if ((rc = head_object(s, key, &exists, &size)))
		goto done;
	if (!exists) {
		rc = bk__error_set(BK_ENOTFOUND, "backup-not-found", "s3://%s/%s: not in the store",
				   s->bucket, key);
		goto done;
	}
	if (lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != size) {
		unlink(path);
		if ((rc = download(s, key, path)))
			goto done;
	}
	unlink(spath);
	if ((rc = download(s, skey, spath))) {
		if (rc != BK_ENOTFOUND)
			goto done;
		bk_error_clear(); /* a backup without its statement is reported by the reader */
		rc = 0;
	}
	*out = path;
	path = NULL;
done:
	bk__free(key);
	bk__free(skey);
	bk__free(path);
	bk__free(spath);
	return rc;
}

static int s3_exists(bk_store *st, const char *id, int *out)
{
	s3_store *s = (s3_store *)st;
	char *key = obj_key(s, id, SUFFIX);
	if (key == NULL)
		return BK_ENOMEM;
	int rc = head_object(s, key, out, NULL);
	bk__free(key);
	return rc;
}

static int delete_object(s3_store *s, const char *key)
{
	s3_req r;
	memset(&r, 0, sizeof(r));
	r.method = "DELETE";
	r.key = key;
	int rc = s3_call(s, &r, "DELETE");
	if (rc == BK_ENOTFOUND) {
		bk_error_clear();
		rc = 0;
	}
	return rc;
}

static int s3_remove(bk_store *st, const char *id)
{
	s3_store *s = (s3_store *)st;
	char *key = obj_key(s, id, SUFFIX), *skey = obj_key(s, id, STMT_SUFFIX);
	char *c1 = cache_file(s, id, SUFFIX), *c2 = cache_file(s, id, STMT_SUFFIX);
	int rc = key && skey && c1 && c2 ? 0 : BK_ENOMEM;
	if (rc == 0)
		rc = delete_object(s, key);
	if (rc == 0)
		rc = delete_object(s, skey);
	if (rc == 0) {
		unlink(c1);
		unlink(c2);
	}
	bk__free(key);
	bk__free(skey);
	bk__free(c1);
	bk__free(c2);
	return rc;
}

static int unlink_quiet(const char *p)
{
	if (unlink(p) != 0 && errno != ENOENT)
		return bk__error_errno(errno, "%s: remove", p);
	return 0;
}

static bool ends_with(const char *str, const char *suffix, size_t *stem)
{
	size_t n = strlen(str), k = strlen(suffix);
	if (n < k || strcmp(str + n - k, suffix) != 0)
		return false;
	*stem = n - k;
	return true;
}

static void classify(const char *name, int *kind, char id[37])
{
	size_t stem = 0;
	id[0] = '\0';
	*kind = BK_STORE_ITEM_OTHER;
	if (ends_with(name, ".part", &stem))
		*kind = BK_STORE_ITEM_PART;
	else if (ends_with(name, STMT_SUFFIX, &stem))
		*kind = BK_STORE_ITEM_STATEMENT;
	else if (ends_with(name, SUFFIX, &stem))
		*kind = BK_STORE_ITEM_BACKUP;
	else
		return;
	if (stem >= 36) {
		memcpy(id, name, 36);
		id[36] = '\0';
		if (!bk_backup__valid_id(id))
			id[0] = '\0';
	}
}

typedef struct raw_obj {
	char *name;
	uint64_t size;
} raw_obj;

static int raw_add(raw_obj **v, size_t *n, size_t *cap, const char *name, uint64_t size)
{
	if (*n == *cap) {
		size_t nc = *cap ? 2 * *cap : 32;
		raw_obj *nv = bk__realloc(*v, nc * sizeof(*nv));
		if (nv == NULL)
			return BK_ENOMEM;
		*v = nv;
		*cap = nc;
	}
	(*v)[*n].name = bk__strdup(name);
	(*v)[*n].size = size;
	if ((*v)[*n].name == NULL)
		return BK_ENOMEM;
	(*n)++;
	return 0;
}

static int cmp_items(const void *a, const void *b)
{
	return strcmp(((const bk_store_item *)a)->name, ((const bk_store_item *)b)->name);
}

/* Unfinished uploads are local part files: they are listed as PART items. */
static int list_local_parts(s3_store *s, bk_store_item **items, size_t *n)
{
	DIR *dir = opendir(s->cache);
	struct dirent *e;
	int rc = 0;
	if (dir == NULL)
		return 0;
	while ((e = readdir(dir)) != NULL) {
		size_t stem;
		int kind;
		char id[37];
		if (e->d_name[0] == '.' || !ends_with(e->d_name, ".part", &stem))
			continue;
		char *path = bk__asprintf("%s/%s", s->cache, e->d_name);
		struct stat sb;
		if (path == NULL) {
			rc = BK_ENOMEM;
			break;
		}
		if (lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
			bk__free(path);
			continue;
		}
		bk_store_item *ni = bk__realloc(*items, (*n + 1) * sizeof(*ni));
		if (ni == NULL) {
			bk__free(path);
			rc = BK_ENOMEM;
			break;
		}
		*items = ni;
		classify(e->d_name, &kind, id);
		bk_store_item *it = &ni[(*n)++];
		memset(it, 0, sizeof(*it));
		it->kind = BK_STORE_ITEM_PART;
		it->size = (uint64_t)sb.st_size;
		it->name = bk__strdup(e->d_name);
		it->id = id[0] ? bk__strdup(id) : NULL;
		it->in_use = bk_backup__is_locked(path) > 0;
		bk__free(path);
		if (it->name == NULL || (id[0] && it->id == NULL)) {
			rc = BK_ENOMEM;
			break;
		}
	}
	closedir(dir);
	return rc;
}

static int s3_list(bk_store *st, bk_store_item **out, size_t *out_count)
{
	s3_store *s = (s3_store *)st;
	raw_obj *objs = NULL;
	size_t nobj = 0, cap = 0, n = 0;
	bk_store_item *items = NULL;
	bk_buf q = {0}, body = {0};
	char *token = NULL;
	int rc = 0;
	*out = NULL;
	*out_count = 0;
	size_t plen = strlen(s->prefix);
	for (int page = 0; page < 100000; page++) {
		bk_buf_reset(&q);
		/* Parameters in canonical (sorted) order. */
		if (token && ((rc = bk_buf_put_str(&q, "continuation-token=")) ||
			      (rc = url_encode(&q, token, false)) || (rc = bk_buf_put_u8(&q, '&'))))
			goto done;
		if ((rc = bk_buf_put_str(&q, "list-type=2")) ||
		    (s->list_page && (rc = bk_buf_printf(&q, "&max-keys=%u", s->list_page))) ||
		    (rc = bk_buf_put_str(&q, "&prefix=")) || (rc = url_encode(&q, s->prefix, false)) ||
		    (rc = bk_buf_cstr(&q)))
			goto done;
		s3_req r;
		memset(&r, 0, sizeof(r));
		r.method = "GET";
		r.query = (const char *)q.data;
		r.out_buf = &body;
		r.out_max = LIST_MAX_BODY;
		if ((rc = s3_call(s, &r, "list")) || (rc = bk_buf_cstr(&body)))
			goto done;
		size_t pos = 0;
		for (;;) {
			char *c = xml_take((const char *)body.data, body.len, &pos, "Contents");
			if (c == NULL)
				break;
			size_t p2 = 0, cl = strlen(c);
			char *k = xml_take(c, cl, &p2, "Key");
			p2 = 0;
			char *sz = xml_take(c, cl, &p2, "Size");
			uint64_t size = 0;
			if (sz)
				bk_parse_u64(sz, &size);
			if (k && strncmp(k, s->prefix, plen) == 0 && strchr(k + plen, '/') == NULL &&
			    k[plen])
				rc = raw_add(&objs, &nobj, &cap, k + plen, size);
			bk__free(k);
			bk__free(sz);
			bk__free(c);
			if (rc)
				goto done;
		}
		pos = 0;
		char *trunc = xml_take((const char *)body.data, body.len, &pos, "IsTruncated");
		bool more = trunc && strcmp(trunc, "true") == 0;
		bk__free(trunc);
		bk__free(token);
		token = NULL;
		if (!more)
			break;
		pos = 0;
		token = xml_take((const char *)body.data, body.len, &pos, "NextContinuationToken");
		if (token == NULL || token[0] == '\0') {
			rc = bk__error_set(BK_EAPI, "s3-bad-answer",
					   "s3 list %s: truncated answer without a continuation token",
					   s->bucket);
			goto done;
		}
	}
	items = bk__calloc(nobj ? nobj : 1, sizeof(*items));
	if (items == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	for (size_t i = 0; i < nobj; i++) {
		int kind;
		char id[37];
		classify(objs[i].name, &kind, id);
		if (kind == BK_STORE_ITEM_STATEMENT && id[0]) {
			bool has_file = false;
			char want[64];
			snprintf(want, sizeof(want), "%s" SUFFIX, id);
			for (size_t j = 0; j < nobj && !has_file; j++)
				has_file = strcmp(objs[j].name, want) == 0;
			if (has_file)
				continue;
		}
		bk_store_item *it = &items[n++];
		it->kind = kind;
		it->size = objs[i].size;
		it->name = bk__strdup(objs[i].name);
		it->id = id[0] ? bk__strdup(id) : NULL;
		if (it->name == NULL || (id[0] && it->id == NULL)) {
			rc = BK_ENOMEM;
			goto done;
		}
	}
	if ((rc = list_local_parts(s, &items, &n)))
		goto done;
	if (n > 1)
		qsort(items, n, sizeof(*items), cmp_items);
done:
	for (size_t i = 0; i < nobj; i++)
		bk__free(objs[i].name);
	bk__free(objs);
	bk__free(token);
	bk_buf_free(&q);
	bk_buf_free(&body);
	if (rc) {
		bk_store_list_free(items, n);
		return rc;
	}
	*out = items;
	*out_count = n;
	return 0;
}

static int s3_remove_part(bk_store *st, const char *name)
{
	s3_store *s = (s3_store *)st;
	size_t stem;
	int kind, rc = 0;
	char id[37];
	char *p = NULL, *jpath = NULL, *upload_id = NULL, *key = NULL;
	bk_buf q = {0};
	part_etags none = {0};
	if (strchr(name, '/') || name[0] == '.' || !ends_with(name, ".part", &stem))
		return bk__error_set(BK_EINVALID, NULL, "%s: not a part file of the store", name);
	p = bk__asprintf("%s/%s", s->cache, name);
	jpath = bk__asprintf("%s/%s.upload", s->cache, name);
	if (p == NULL || jpath == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	int held = bk_backup__is_locked(p);
	if (held < 0) {
		rc = held;
		goto done;
	}
	if (held) {
		rc = bk__error_set(BK_EBUSY, "part-in-use", "%s: another command is writing it", p);
		goto done;
	}
	/* Abandon the server's half of an interrupted multipart upload. */
	classify(name, &kind, id);
	if ((rc = journal_read(jpath, &upload_id, &none)))
		goto done;
	if (upload_id && id[0]) {
		key = obj_key(s, id, SUFFIX);
		if (key == NULL || bk_buf_put_str(&q, "uploadId=") || url_encode(&q, upload_id, false) ||
		    bk_buf_cstr(&q)) {
			rc = BK_ENOMEM;
			goto done;
		}
		s3_req r;
		memset(&r, 0, sizeof(r));
		r.method = "DELETE";
		r.key = key;
		r.query = (const char *)q.data;
		if ((rc = s3_do(s, &r)))
			goto done;
		if (r.status == 401 || r.status == 403) {
			rc = s3_fail(s, &r, "abort upload");
			goto done;
		}
		/* Other answers (gone, or not supported) leave nothing to do. */
	}
	if ((rc = unlink_quiet(p)) || (rc = unlink_quiet(jpath)))
		goto done;
done:
	bk_buf_free(&q);
	bk__free(key);
	bk__free(upload_id);
	bk__free(jpath);
	bk__free(p);
	return rc;
}

static void s3_release(bk_store *st)
{
	s3_store *s = (s3_store *)st;
	bk__free(s->endpoint);
	bk__free(s->region);
	bk__free(s->bucket);
	bk__free(s->prefix);
	bk__free(s->access_key);
	bk_secret_free(s->secret_key);
	bk__free(s->cache);
}

static const bk_store_ops s3_ops = {
	.scheme = "s3",
	.part_path = s3_part_path,
	.put = s3_put,
	.location = s3_location,
	.get_path = s3_get_path,
	.exists = s3_exists,
	.remove = s3_remove,
	.list = s3_list,
	.remove_part = s3_remove_part,
	.release = s3_release,
};

/* --- Streaming reads --- */

/* A reader of one object: a ranged GET whose body is taken from libcurl as
 * it arrives into a bounded buffer (the transfer pauses while the buffer is
 * full), and, after a cut connection or a 5xx answer, a new GET for the
 * bytes from the first one not yet received. Every answer must carry the
 * ETag the object had when the reader was opened. */
#define READER_BUF (256u * 1024)
#define READER_BUF_MAX (4u * 1024 * 1024)

typedef struct s3_reader {
	bk_stream base;
	s3_store *s;
	int own_store;
	char *key;
	uint64_t size;  /* the object's, from HEAD */
	char etag[128]; /* the object's, from HEAD */
	uint64_t pos;   /* offset of the next byte the transfer delivers */
	uint8_t *buf;
	size_t cap, head, len; /* buffered bytes: buf[head .. head + len) */
	/* the transfer */
	CURLM *multi;
	s3_xfer x;
	s3_req req;
	bool active, paused, checked;
	uint64_t skip; /* bytes of a 200 answer before `pos` to drop */
	int sink_error; /* set by the sink: the answer is not the object's */
	unsigned stuck; /* attempts in a row that delivered nothing */
	uint64_t stuck_at;
	uint64_t requests, pauses; /* counted for tests */
} s3_reader;

static size_t reader_sink(void *arg, const char *data, size_t n)
{
	s3_reader *rd = arg;
	if (!rd->checked) {
		/* The first bytes of an answer: is it the object we started with? */
		if (rd->etag[0] && rd->req.etag[0] && strcmp(rd->etag, rd->req.etag) != 0) {
			rd->sink_error = 1;
			return 0;
		}
		long code = 0;
		curl_easy_getinfo(rd->x.curl, CURLINFO_RESPONSE_CODE, &code);
		rd->skip = code == 200 ? rd->req.range_from : 0;
		rd->checked = true;
	}
	size_t drop = rd->skip < n ? (size_t)rd->skip : n;
	rd->skip -= drop;
	data += drop;
	n -= drop;
	if (n == 0)
		return drop;
	if (rd->pos + n > rd->size) {
		rd->sink_error = 2;
		return 0;
	}
	if (rd->cap - rd->head - rd->len < n && rd->head) {
		memmove(rd->buf, rd->buf + rd->head, rd->len);
		rd->head = 0;
	}
	if (rd->cap - rd->len < n) {
		if (rd->len) {
			/* libcurl delivers the whole chunk again after a pause,
			 * so a callback that pauses consumes nothing */
			rd->skip += drop;
			rd->paused = true;
			rd->pauses++;
			return CURL_WRITEFUNC_PAUSE;
		}
		if (n > READER_BUF_MAX) {
			rd->sink_error = 4;
			return 0;
		}
		uint8_t *nb = bk__realloc(rd->buf, n);
		if (nb == NULL) {
			rd->sink_error = 3;
			return 0;
		}
		rd->buf = nb;
		rd->cap = n;
	}
	memcpy(rd->buf + rd->head + rd->len, data, n);
	rd->len += n;
	rd->pos += n;
	return drop + n;
}

static void reader_stop(s3_reader *rd)
{
	if (rd->x.curl && rd->multi)
		curl_multi_remove_handle(rd->multi, rd->x.curl);
	xfer_clear(&rd->x);
	rd->active = rd->paused = false;
}

static int reader_start(s3_reader *rd)
{
	int rc;
	memset(&rd->req, 0, sizeof(rd->req));
	rd->req.method = "GET";
	rd->req.key = rd->key;
	rd->req.range_from = rd->pos;
	rd->req.sink = reader_sink;
	rd->req.sink_arg = rd;
	rd->checked = false;
	rd->skip = 0;
	rd->sink_error = 0;
	if ((rc = xfer_prepare(rd->s, &rd->req, &rd->x))) {
		xfer_clear(&rd->x);
		return rc;
	}
	if (curl_multi_add_handle(rd->multi, rd->x.curl) != CURLM_OK) {
		xfer_clear(&rd->x);
		return bk__error_set(BK_ERROR, NULL, "s3 GET %s: cannot start the transfer", rd->key);
	}
	rd->active = true;
	rd->requests++;
	return 0;
}

/* A finished transfer: 0 when the reader may go on (a resumable failure
 * starts the next attempt on the next read), or the error. */
static int reader_finished(s3_reader *rd, CURLcode cc)
{
	s3_store *s = rd->s;
	int rc = xfer_result(s, &rd->x, cc);
	int sink_error = rd->sink_error;
	s3_req r = rd->req;
	reader_stop(rd);
	if (sink_error == 1)
		return bk__error_set(BK_ERROR, "s3-object-changed",
				     "s3://%s/%s: the object changed while it was read (etag %s, "
				     "then %s)",
				     s->bucket, rd->key, rd->etag, r.etag);
	if (sink_error == 2)
		return bk__error_set(BK_ERROR, "s3-object-changed",
				     "s3://%s/%s: more bytes than the object's %llu", s->bucket,
				     rd->key, (unsigned long long)rd->size);
	if (sink_error == 3)
		return BK_ENOMEM;
	if (sink_error == 4)
		return bk__error_set(BK_EAPI, "s3-bad-answer", "s3 GET %s: a chunk over %u bytes",
				     rd->key, READER_BUF_MAX);
	if (rc == 0 && r.status >= 200 && r.status < 300) {
		if (rd->pos == rd->size)
			return 0;
		/* A short answer without a transport error: ask for the rest. */
		rc = bk__error_set(BK_EAPI, "s3-unreachable", "s3 GET %s: answer ended at %llu of %llu",
				   rd->key, (unsigned long long)rd->pos, (unsigned long long)rd->size);
	} else if (rc == 0 && r.status >= 500) {
		rc = s3_fail(s, &r, "GET");
	} else if (rc == 0 && r.status == 412) {
		return bk__error_set(BK_ERROR, "s3-object-changed",
				     "s3://%s/%s: the object changed while it was read", s->bucket,
				     rd->key);
	} else if (rc == 0) {
		return s3_fail(s, &r, "GET");
	}
	if (rc != BK_EAPI && rc != BK_ETIMEOUT)
		return rc;
	/* Resumable: the next read asks again from `pos`, unless attempts
	 * keep failing at the same place. */
	rd->stuck = rd->pos == rd->stuck_at ? rd->stuck + 1 : 1;
	rd->stuck_at = rd->pos;
	if (rd->stuck >= RESUME_TRIES)
		return rc;
	bk_error_clear();
	return 0;
}

static int reader_read(bk_stream *st, void *buf, size_t len, size_t *out_n, bk_deadline d)
{
	s3_reader *rd = (s3_reader *)st;
	int rc = 0;
	*out_n = 0;
	for (;;) {
		if (rd->len) {
			size_t k = len < rd->len ? len : rd->len;
			memcpy(buf, rd->buf + rd->head, k);
			rd->head += k;
			rd->len -= k;
			if (rd->len == 0)
				rd->head = 0;
			*out_n = k;
			if (rd->paused && rd->active) {
				/* Room again: libcurl delivers what it holds from
				 * inside this call, and may pause again. */
				rd->paused = false;
				curl_easy_pause(rd->x.curl, CURLPAUSE_CONT);
			}
			return 0;
		}
		if (len == 0 || (rd->pos == rd->size && !rd->active))
			return 0;
		if (!rd->active) {
			int left = bk_deadline_left(d);
			unsigned pause = resume_pause_ms(rd->stuck);
			if (left >= 0 && (unsigned)left < pause)
				return bk__error_set(BK_ETIMEOUT, "s3-timeout", "s3 GET %s: timed out",
						     rd->key);
			usleep(1000u * pause);
			if ((rc = reader_start(rd)))
				return rc;
		}
		int running = 0;
		if (curl_multi_perform(rd->multi, &running) != CURLM_OK)
			return bk__error_set(BK_ERROR, NULL, "s3 GET %s: transfer failed", rd->key);
		CURLMsg *m;
		int queued;
		while ((m = curl_multi_info_read(rd->multi, &queued)) != NULL) {
			if (m->msg == CURLMSG_DONE && rd->active && m->easy_handle == rd->x.curl &&
			    (rc = reader_finished(rd, m->data.result)))
				return rc;
		}
		if (rd->len || !rd->active)
			continue;
		int left = bk_deadline_left(d);
		if (left == 0)
			return bk__error_set(BK_ETIMEOUT, "s3-timeout", "s3 GET %s: timed out", rd->key);
		if (curl_multi_poll(rd->multi, NULL, 0, left < 0 || left > 1000 ? 1000 : left, NULL) !=
		    CURLM_OK)
			return bk__error_set(BK_ERROR, NULL, "s3 GET %s: transfer failed", rd->key);
	}
}

static int reader_ctrl(bk_stream *st, int op, void *arg)
{
	s3_reader *rd = (s3_reader *)st;
	if (op == BK_STREAM_CTRL_SIZE && arg) {
		*(uint64_t *)arg = rd->size;
		return 0;
	}
	return BK_EINVALID;
}

static void reader_release(bk_stream *st)
{
	s3_reader *rd = (s3_reader *)st;
	reader_stop(rd);
	if (rd->multi)
		curl_multi_cleanup(rd->multi);
	bk__free(rd->buf);
	bk__free(rd->key);
	if (rd->own_store)
		bk_store_free(&rd->s->base);
	bk__free(rd);
}

static const bk_stream_ops reader_ops = {
	.version = BK_STREAM_OPS_VERSION,
	.name = "s3-object",
	.read = reader_read,
	.release = reader_release,
	.ctrl = reader_ctrl,
};

int bk_store__s3_open_reader(bk_stream **out, bk_store *st, int own_store, const char *id)
{
	s3_reader *rd = NULL;
	int rc = 0, exists = 0;
	*out = NULL;
	if (st == NULL || st->ops != &s3_ops || !bk_backup__valid_id(id)) {
		rc = bk__error_set(BK_EINVALID, NULL, "s3 reader: not an s3 store or not a backup id");
		goto done;
	}
	rd = bk__calloc(1, sizeof(*rd));
	if (rd == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	rd->base.ops = &reader_ops;
	rd->s = (s3_store *)st;
	rd->own_store = own_store;
	own_store = 0;
	rd->key = obj_key(rd->s, id, SUFFIX);
	rd->cap = READER_BUF;
	rd->buf = bk__malloc(rd->cap);
	rd->multi = curl_multi_init();
	if (rd->key == NULL || rd->buf == NULL || rd->multi == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	if ((rc = head_object_etag(rd->s, rd->key, &exists, &rd->size, rd->etag, sizeof(rd->etag))))
		goto done;
	if (!exists) {
		rc = bk__error_set(BK_ENOTFOUND, "backup-not-found", "s3://%s/%s: not in the store",
				   rd->s->bucket, rd->key);
		goto done;
	}
	*out = &rd->base;
	rd = NULL;
done:
	if (rd)
		reader_release(&rd->base);
	if (own_store && st)
		bk_store_free(st);
	return rc;
}

void bk_store__s3_reader_stats(bk_stream *st, uint64_t *requests, uint64_t *pauses)
{
	s3_reader *rd = st && st->ops == &reader_ops ? (s3_reader *)st : NULL;
	*requests = rd ? rd->requests : 0;
	*pauses = rd ? rd->pauses : 0;
}

static bool is_loopback(const char *host, size_t n)
{
	return (n == 9 && strncmp(host, "localhost", 9) == 0) ||
	       (n >= 4 && strncmp(host, "127.", 4) == 0) || (n == 5 && strncmp(host, "[::1]", 5) == 0);
}

static int check_endpoint(const char *ep)
{
	const char *host;
	bool http = false;
	if (strncmp(ep, "https://", 8) == 0)
		host = ep + 8;
	else if (strncmp(ep, "http://", 7) == 0) {
		host = ep + 7;
		http = true;
	} else
		return bk__error_set(BK_EUSER, "store-invalid",
				     "store.s3_endpoint '%.200s': expected http:// or https://", ep);
	size_t n = strcspn(host, "/?#");
	const char *colon = host[0] == '[' ? strstr(host, "]:") : strchr(host, ':');
	if (colon && colon[host[0] == '[' ? 2 : 1] == '\0')
		n = 0; /* an empty port */
	if (n == 0 || host[n] != '\0' || strchr(ep, '@'))
		return bk__error_set(BK_EUSER, "store-invalid",
				     "store.s3_endpoint '%.200s': expected scheme://host[:port]", ep);
	if (http) {
		size_t hn = host[0] == '[' ? strcspn(host, "]") + 1 : strcspn(host, ":");
		if (!is_loopback(host, hn))
			return bk__error_set(BK_EUSER, "store-insecure",
					     "store.s3_endpoint '%.200s': plain http is only allowed "
					     "to a loopback address; use https",
					     ep);
	}
	return 0;
}

static bool valid_bucket(const char *b, size_t n)
{
	if (n < 3 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = b[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
			return false;
	}
	return true;
}

int bk_store__s3_open(bk_store **out, const char *spec, const bk_config *cfg, const char *cache)
{
	s3_store *s = NULL;
	int rc = 0;
	*out = NULL;
	const char *rest = spec + 5;
	size_t bl = strcspn(rest, "/");
	const char *pfx = rest[bl] == '/' ? rest + bl + 1 : "";
	size_t pl = strlen(pfx);
	while (pl && pfx[pl - 1] == '/')
		pl--;
	if (!valid_bucket(rest, bl) || strstr(pfx, "//") || strstr(pfx, "..") ||
	    strchr(pfx, '\\'))
		return bk__error_set(BK_EUSER, "store-invalid",
				     "store '%.200s': expected s3://BUCKET[/PREFIX]", spec);
	const char *ep = setting(cfg, "store.s3_endpoint", "AWS_ENDPOINT_URL");
	const char *region = setting(cfg, "store.s3_region", "AWS_REGION");
	const char *ak = setting(cfg, "store.s3_access_key", "AWS_ACCESS_KEY_ID");
	const char *sk = setting(cfg, "store.s3_secret_key", "AWS_SECRET_ACCESS_KEY");
	if (ep == NULL)
		return bk__error_set(BK_EUSER, "config-missing",
				     "store %.200s: no endpoint (set store.s3_endpoint or "
				     "AWS_ENDPOINT_URL)",
				     spec);
	if (ak == NULL || sk == NULL)
		return bk__error_set(BK_EUSER, "config-missing",
				     "store %.200s: no credentials (set store.s3_access_key and "
				     "store.s3_secret_key, or AWS_ACCESS_KEY_ID and "
				     "AWS_SECRET_ACCESS_KEY)",
				     spec);
	if (region == NULL)
		region = "us-east-1";
	if (strspn(region, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(region) ||
	    strlen(region) > 40 || region[0] == '\0')
		return bk__error_set(BK_EUSER, "store-invalid", "store.s3_region '%.64s': not a region",
				     region);
	if (strchr(ak, ':') || strchr(ak, '\n'))
		return bk__error_set(BK_EUSER, "store-invalid", "store.s3_access_key: malformed");
	if ((rc = check_endpoint(ep)))
		return rc;
	if ((rc = bk_mkdir_p(cache, 0700)))
		return rc;
	s = bk__calloc(1, sizeof(*s));
	if (s == NULL)
		return BK_ENOMEM;
	s->base.ops = &s3_ops;
	s->part_size = PART_SIZE;
	const char *ps = getenv("AIBO_RESTORE_S3_PART_SIZE"); /* tests: smaller parts */
	uint64_t v = 0;
	if (ps && bk_parse_size(ps, &v) == 0 && v >= 5u * 1024 * 1024 && v <= (1ull << 32))
		s->part_size = v;
	const char *lp = getenv("AIBO_RESTORE_S3_LIST_PAGE"); /* tests: short pages */
	if (lp && bk_parse_u64(lp, &v) == 0 && v >= 1 && v <= 1000)
		s->list_page = (unsigned)v;
	size_t el = strlen(ep);
	while (el && ep[el - 1] == '/')
		el--;
	s->endpoint = bk__strndup(ep, el);
	s->region = bk__strdup(region);
	s->bucket = bk__strndup(rest, bl);
	s->prefix = pl ? bk__asprintf("%.*s/", (int)pl, pfx) : bk__strdup("");
	s->access_key = bk__strdup(ak);
	s->cache = bk__strdup(cache);
	s->base.spec = pl ? bk__asprintf("s3://%.*s/%.*s", (int)bl, rest, (int)pl, pfx)
			  : bk__asprintf("s3://%.*s", (int)bl, rest);
	if (s->endpoint == NULL || s->region == NULL || s->bucket == NULL || s->prefix == NULL ||
	    s->access_key == NULL || s->cache == NULL || s->base.spec == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	if ((rc = bk_secret_from(&s->secret_key, sk, strlen(sk) + 1)))
		goto done;
	*out = &s->base;
	s = NULL;
done:
	if (s)
		bk_store_free(&s->base);
	return rc;
}
