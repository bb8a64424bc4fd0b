/* The private-API client: settings, the token, and the request engine
 * (libcurl) with its retry, idempotency, tracing and response checks. */
#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <sodium.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <libbackup/version.h>

#include "api_internal.h"

#define DEFAULT_CONNECT_MS 10000
#define DEFAULT_TIMEOUT_MS 60000
#define DEFAULT_BUDGET_MS  30000
#define DEFAULT_ATTEMPTS   7
#define BACKOFF_BASE_MS    250
#define BACKOFF_CAP_MS     8000
#define TOKEN_MAX          4096

struct bk_api {
	CURL *curl;
	char *base;        /* scheme://host[:port][/prefix], no trailing slash */
	char *scheme;      /* "https" or "http" */
	char *auth;        /* "Authorization: Bearer <token>", guarded memory */
	const char *token; /* inside `auth` */
	char *ca_file;
	char *client_cert;
	char *client_key;
	long connect_ms;
	long timeout_ms;
	long budget_ms;
	unsigned max_attempts;
	int trace;
};

/* --- Settings ------------------------------------------------------------------ */

bool bk_api__host_is_loopback(const char *host)
{
	if (host == NULL)
		return false;
	if (strcasecmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0 ||
	    strcmp(host, "::1") == 0)
		return true;
	struct in_addr a4;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	return false;
}

static char *opt_dup(const char *s, int *rc)
{
	if (s == NULL || *s == '\0')
		return NULL;
	char *d = bk__strdup(s);
	if (d == NULL)
		*rc = BK_ENOMEM;
	return d;
}

static int token_check(const char *token)
{
	size_t n = strnlen(token, TOKEN_MAX + 1);
	if (n == 0)
		return bk__error_set(BK_EUSER, "no-token", "api: no token given");
	if (n > TOKEN_MAX)
		return bk__error_set(BK_EUSER, "token-invalid", "api: token longer than %d bytes",
		                     TOKEN_MAX);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)token[i] <= 0x20 || (unsigned char)token[i] >= 0x7f)
			return bk__error_set(
			    BK_EUSER, "token-invalid",
			    "api: token holds a space or a non-printable character");
	return 0;
}

static int parse_url(bk_api *api, const char *url)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *user = NULL, *query = NULL, *full = NULL;
	int rc = 0;
	if (u == NULL) {
		rc = bk__error_oom();
		goto done;
	}
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		rc = bk__error_set(BK_EUSER, "bad-url", "api: '%s' is not a valid URL", url);
		goto done;
	}
	if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
		rc = bk__error_set(BK_EUSER, "bad-url",
		                   "api: the URL must not hold credentials; use the token setting");
		goto done;
	}
	if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK) {
		rc = bk__error_set(BK_EUSER, "bad-url", "api: the URL must not hold a query");
		goto done;
	}
	if (strcasecmp(scheme, "http") == 0) {
		if (!bk_api__host_is_loopback(host)) {
			rc =
			    bk__error_set(BK_EUSER, "insecure-url",
			                  "api: refusing plain http to %s: use https (http is only "
			                  "allowed to a loopback address)",
			                  host);
			goto done;
		}
	} else if (strcasecmp(scheme, "https") != 0) {
		rc = bk__error_set(BK_EUSER, "bad-url", "api: unsupported URL scheme '%s'", scheme);
		goto done;
	}
	curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0);
	if (curl_url_get(u, CURLUPART_URL, &full, 0) != CURLUE_OK) {
		rc = bk__error_set(BK_EUSER, "bad-url", "api: '%s' is not a valid URL", url);
		goto done;
	}
	size_t n = strlen(full);
	while (n > 0 && full[n - 1] == '/')
		n--;
	api->base = bk__strndup(full, n);
	api->scheme = bk__strdup(strcasecmp(scheme, "http") == 0 ? "http" : "https");
	if (api->base == NULL || api->scheme == NULL)
		rc = BK_ENOMEM;
done:
	curl_free(scheme);
	curl_free(host);
	curl_free(user);
	curl_free(query);
	curl_free(full);
	curl_url_cleanup(u);
	return rc;
}

int bk_api_new(bk_api **out, const bk_api_options *opts)
{
	bk_api *api = NULL;
	int rc = 0;
	if (out == NULL || opts == NULL || opts->version < 1)
		return bk__error_set(BK_EINVALID, NULL, "api: missing options");
	*out = NULL;
	if (opts->url == NULL || *opts->url == '\0')
		return bk__error_set(BK_EUSER, "no-url", "api: no service URL given");
	if (opts->token == NULL)
		return bk__error_set(BK_EUSER, "no-token", "api: no token given");
	if ((rc = token_check(opts->token)))
		return rc;
	api = bk__calloc(1, sizeof(*api));
	if (api == NULL)
		return BK_ENOMEM;
	if ((rc = parse_url(api, opts->url)))
		goto done;
	static const char prefix[] = "Authorization: Bearer ";
	size_t tlen = strlen(opts->token);
	api->auth = sodium_malloc(sizeof(prefix) + tlen);
	if (api->auth == NULL) {
		rc = bk__error_oom();
		goto done;
	}
	memcpy(api->auth, prefix, sizeof(prefix) - 1);
	memcpy(api->auth + sizeof(prefix) - 1, opts->token, tlen + 1);
	api->token = api->auth + sizeof(prefix) - 1;
	api->ca_file = opt_dup(opts->ca_file, &rc);
	api->client_cert = opt_dup(opts->client_cert, &rc);
	api->client_key = opt_dup(opts->client_key, &rc);
	if (rc)
		goto done;
	api->connect_ms =
	    opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : DEFAULT_CONNECT_MS;
	api->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
	api->budget_ms = opts->retry_budget_ms != 0 ? opts->retry_budget_ms : DEFAULT_BUDGET_MS;
	api->max_attempts = opts->max_attempts > 0 ? opts->max_attempts : DEFAULT_ATTEMPTS;
	if (api->budget_ms < 0)
		api->max_attempts = 1;
	api->trace = opts->trace;
	api->curl = curl_easy_init();
	if (api->curl == NULL) {
		rc = bk__error_set(BK_ERROR, "curl-init", "api: libcurl failed to initialise");
		goto done;
	}
	*out = api;
	api = NULL;
done:
	bk_api_free(api);
	return rc;
}

void bk_api_free(bk_api *api)
{
	if (api == NULL)
		return;
	if (api->curl)
		curl_easy_cleanup(api->curl);
	sodium_free(api->auth); /* wipes */
	bk__free(api->base);
	bk__free(api->scheme);
	bk__free(api->ca_file);
	bk__free(api->client_cert);
	bk__free(api->client_key);
	bk__free(api);
}

int bk_api_token_from_file(char **out, const char *path)
{
	uint8_t *data = NULL;
	size_t len = 0;
	char *tok = NULL;
	int rc;
	if (out == NULL || path == NULL)
		return bk__error_set(BK_EINVALID, NULL, "api: no token file given");
	*out = NULL;
	if ((rc = bk_file_check_private(path)))
		goto done;
	if ((rc = bk_file_read(path, TOKEN_MAX + 64, &data, &len)))
		goto done;
	size_t a = 0, b = len;
	while (a < b && isspace(data[a]))
		a++;
	while (b > a && isspace(data[b - 1]))
		b--;
	if (a == b) {
		rc = bk__error_set(BK_EAUTH, "token-empty", "%s: the token file is empty", path);
		goto done;
	}
	tok = sodium_malloc(b - a + 1);
	if (tok == NULL) {
		rc = bk__error_oom();
		goto done;
	}
	memcpy(tok, data + a, b - a);
	tok[b - a] = '\0';
	if ((rc = token_check(tok))) {
		rc =
		    bk__error_set(BK_EAUTH, "token-invalid",
		                  "%s: the token holds a space or a non-printable character", path);
		goto done;
	}
	*out = tok;
	tok = NULL;
done:
	if (data) {
		sodium_memzero(data, len);
		bk__free(data);
	}
	bk_api_token_free(tok);
	return rc;
}

void bk_api_token_free(char *token)
{
	sodium_free(token);
}

/* --- Tracing ---------------------------------------------------------------- */

static void trace_lines(const char *mark, const char *data, size_t size)
{
	size_t i = 0;
	while (i < size) {
		size_t j = i;
		while (j < size && data[j] != '\n' && data[j] != '\r')
			j++;
		if (j > i) {
			size_t n = j - i;
			static const char auth[] = "authorization:";
			static const char pauth[] = "proxy-authorization:";
			if ((n >= sizeof(auth) - 1 &&
			     strncasecmp(data + i, auth, sizeof(auth) - 1) == 0) ||
			    (n >= sizeof(pauth) - 1 &&
			     strncasecmp(data + i, pauth, sizeof(pauth) - 1) == 0)) {
				const char *colon = memchr(data + i, ':', n);
				size_t k = (size_t)(colon - (data + i));
				bk__log(BK_LOG_TRACE, "api", "%s %.*s: <redacted>", mark, (int)k,
				        data + i);
			} else {
				if (n > 400)
					n = 400;
				char line[512];
				size_t m = 0;
				for (size_t k = 0; k < n; k++) {
					unsigned char c = (unsigned char)data[i + k];
					line[m++] = (c < 0x20 || c >= 0x7f) ? '.' : (char)c;
				}
				line[m] = '\0';
				bk__log(BK_LOG_TRACE, "api", "%s %s", mark, line);
			}
		}
		i = j + 1;
	}
}

static int debug_cb(CURL *h, curl_infotype type, char *data, size_t size, void *payload)
{
	BK_UNUSED(h);
	BK_UNUSED(payload);
	switch (type) {
	case CURLINFO_TEXT:
		trace_lines("*", data, size);
		break;
	case CURLINFO_HEADER_OUT:
		trace_lines(">", data, size);
		break;
	case CURLINFO_HEADER_IN:
		trace_lines("<", data, size);
		break;
	case CURLINFO_DATA_OUT:
		bk__log(BK_LOG_TRACE, "api", "> [%zu bytes of body]", size);
		break;
	case CURLINFO_DATA_IN:
		bk__log(BK_LOG_TRACE, "api", "< [%zu bytes of body]", size);
		break;
	default:
		break;
	}
	return 0;
}

/* --- One attempt ------------------------------------------------------------- */

typedef struct attempt {
	bk_api *api;
	bk_api_request *req;
	bk_buf *body; /* JSON body, or error body of a download */
	bool too_big;
	long retry_after; /* seconds, -1 when absent */
	char content_type[96];
	bool have_range;
	uint64_t range_first, range_total;
	int64_t content_length;
	/* downloads */
	bool sink_checked; /* the 2xx checks of this attempt were done */
	bool to_sink;      /* body bytes go to the sink */
	uint64_t skip;     /* bytes to drop (a 200 answer to a resume) */
	uint64_t written;  /* bytes given to the sink in this attempt */
	int sink_rc;       /* the sink's error (its message is the last error) */
} attempt;

static size_t header_cb(char *data, size_t size, size_t nmemb, void *payload)
{
	attempt *at = payload;
	size_t n = size * nmemb;
	if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
		/* A new response (after a 1xx): forget the previous headers. */
		at->retry_after = -1;
		at->content_type[0] = '\0';
		at->have_range = false;
		at->content_length = -1;
		return n;
	}
	const char *colon = memchr(data, ':', n);
	if (colon == NULL)
		return n;
	size_t klen = (size_t)(colon - data);
	const char *v = colon + 1;
	size_t vlen = n - klen - 1;
	while (vlen > 0 && (*v == ' ' || *v == '\t')) {
		v++;
		vlen--;
	}
	while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
		vlen--;
	char val[96];
	if (vlen >= sizeof(val))
		vlen = sizeof(val) - 1;
	memcpy(val, v, vlen);
	val[vlen] = '\0';
	if (klen == 11 && strncasecmp(data, "retry-after", klen) == 0) {
		uint64_t s;
		if (bk_parse_u64(val, &s) == 0)
			at->retry_after = s > 3600 ? 3600 : (long)s;
	} else if (klen == 12 && strncasecmp(data, "content-type", klen) == 0) {
		bk_strlcpy(at->content_type, val, sizeof(at->content_type));
	} else if (klen == 14 && strncasecmp(data, "content-length", klen) == 0) {
		uint64_t l;
		if (bk_parse_u64(val, &l) == 0 && l <= INT64_MAX)
			at->content_length = (int64_t)l;
	} else if (klen == 13 && strncasecmp(data, "content-range", klen) == 0) {
		unsigned long long a, b, t;
		char tail;
		if (sscanf(val, "bytes %llu-%llu/%llu%c", &a, &b, &t, &tail) == 3 && a <= b &&
		    b < t) {
			at->have_range = true;
			at->range_first = a;
			at->range_total = t;
		} else if (sscanf(val, "bytes */%llu%c", &t, &tail) == 1) {
			at->have_range = true;
			at->range_first = t;
			at->range_total = t;
		}
	}
	return n;
}

static bool type_is(const char *ct, const char *want)
{
	size_t n = strlen(want);
	return strncasecmp(ct, want, n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* The first body bytes of a download: decides where they go. */
static int sink_begin(attempt *at, long status)
{
	bk_api_request *req = at->req;
	at->sink_checked = true;
	if (status != 200 && status != 206)
		return 0; /* an error body: buffered */
	if (!type_is(at->content_type, "application/octet-stream")) {
		at->sink_rc =
		    bk__error_set(BK_EAPI, "api-bad-response",
		                  "%s: content type '%s' instead of application/octet-stream",
		                  req->call, at->content_type);
		return -1;
	}
	if (status == 206) {
		if (!at->have_range || at->range_first != req->offset) {
			at->sink_rc =
			    bk__error_set(BK_EAPI, "api-bad-response",
			                  "%s: the server resumed at the wrong offset", req->call);
			return -1;
		}
		req->total = at->range_total;
	} else {
		at->skip = req->offset;
		req->total = at->content_length >= 0 ? (uint64_t)at->content_length : UINT64_MAX;
	}
	at->to_sink = true;
	return 0;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *payload)
{
	attempt *at = payload;
	size_t n = size * nmemb;
	if (at->req->sink != NULL) {
		if (!at->sink_checked) {
			long status = 0;
			curl_easy_getinfo(at->api->curl, CURLINFO_RESPONSE_CODE, &status);
			if (sink_begin(at, status) != 0)
				return 0;
		}
		if (at->to_sink) {
			size_t off = 0;
			if (at->skip > 0) {
				off = at->skip < n ? (size_t)at->skip : n;
				at->skip -= off;
			}
			if (n > off) {
				int rc = bk_stream_write(at->req->sink, data + off, n - off,
				                         bk_deadline_in(at->api->timeout_ms));
				if (rc) {
					at->sink_rc = rc;
					return 0;
				}
				at->written += n - off;
				at->req->offset += n - off;
			}
			return n;
		}
		if (at->body->len + n > BK_API_ERROR_BODY_MAX) {
			at->too_big = true;
			return 0;
		}
		return bk_buf_put(at->body, data, n) == 0 ? n : 0;
	}
	if (at->body->len + n > BK_API_JSON_MAX) {
		at->too_big = true;
		return 0;
	}
	return bk_buf_put(at->body, data, n) == 0 ? n : 0;
}

static void slist_wipe_free(struct curl_slist *l)
{
	for (struct curl_slist *p = l; p; p = p->next)
		sodium_memzero(p->data, strlen(p->data));
	curl_slist_free_all(l);
}

static struct curl_slist *add_header(struct curl_slist *l, const char *h, bool *ok)
{
	struct curl_slist *n = curl_slist_append(l, h);
	if (n == NULL) {
		*ok = false;
		return l;
	}
	return n;
}

/* Sets up the handle for one attempt and runs it. */
static CURLcode run_attempt(attempt *at, const char *idem, long *status, char *errbuf)
{
	bk_api *api = at->api;
	bk_api_request *req = at->req;
	CURL *h = api->curl;
	struct curl_slist *hdrs = NULL;
	char *url = NULL;
	char line[256];
	bool ok = true;
	CURLcode cc;

	*status = 0;
	curl_easy_reset(h);
	url = bk__asprintf("%s%s", api->base, req->path);
	if (url == NULL)
		return CURLE_OUT_OF_MEMORY;
	hdrs = add_header(hdrs, api->auth, &ok);
	hdrs = add_header(hdrs,
	                  req->sink ? "Accept: application/octet-stream, application/json"
	                            : "Accept: application/json",
	                  &ok);
	hdrs = add_header(hdrs, "Expect:", &ok);
	if (req->body) {
		hdrs = add_header(hdrs, "Content-Type: application/json", &ok);
	}
	if (idem) {
		snprintf(line, sizeof(line), "Idempotency-Key: %s", idem);
		hdrs = add_header(hdrs, line, &ok);
	}
	if (req->sink && req->offset > 0) {
		snprintf(line, sizeof(line), "Range: bytes=%llu-", (unsigned long long)req->offset);
		hdrs = add_header(hdrs, line, &ok);
	}
	if (!ok) {
		cc = CURLE_OUT_OF_MEMORY;
		goto done;
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, api->scheme);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "aibo-restore/" BK_VERSION_STRING);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, api->connect_ms);
	if (req->sink) {
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME,
		                 api->timeout_ms < 1000 ? 1L : api->timeout_ms / 1000);
	} else {
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, api->timeout_ms);
	}
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (api->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, api->ca_file);
	if (api->client_cert)
		curl_easy_setopt(h, CURLOPT_SSLCERT, api->client_cert);
	if (api->client_key)
		curl_easy_setopt(h, CURLOPT_SSLKEY, api->client_key);
	if (strcmp(req->method, "POST") == 0) {
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body ? req->body : "");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
		                 (curl_off_t)(req->body ? req->body_len : 0));
	} else {
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	}
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, at);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, at);
	if (api->trace && bk__log_enabled(BK_LOG_TRACE)) {
		curl_easy_setopt(h, CURLOPT_VERBOSE, 1L);
		curl_easy_setopt(h, CURLOPT_DEBUGFUNCTION, debug_cb);
	}
	cc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
done:
	/* The handle keeps no pointer to the header list after this. */
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	slist_wipe_free(hdrs);
	bk__free(url);
	return cc;
}

/* --- Retries ---------------------------------------------------------------------- */

long bk_api__backoff_ms(unsigned attempt_no)
{
	if (attempt_no == 0)
		attempt_no = 1;
	uint64_t ceiling = BACKOFF_BASE_MS;
	for (unsigned i = 1; i < attempt_no && ceiling < BACKOFF_CAP_MS; i++)
		ceiling *= 2;
	if (ceiling > BACKOFF_CAP_MS)
		ceiling = BACKOFF_CAP_MS;
	return (long)randombytes_uniform((uint32_t)ceiling + 1);
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0)
		;
}

static void new_key(char out[33])
{
	uint8_t r[16];
	randombytes_buf(r, sizeof(r));
	bk_hex_encode(out, r, sizeof(r));
}

/* The service's message, without the token should it echo it. */
static void redact(bk_api *api, char *msg)
{
	size_t tl = strlen(api->token);
	char *p;
	while (tl > 0 && (p = strstr(msg, api->token)) != NULL)
		memset(p, '*', tl);
}

/* Sets the error for a final HTTP failure. */
static int http_error(bk_api *api, bk_api_request *req, long status, const bk_buf *body)
{
	char code[64], msg[300], what[400];
	bk_api__decode_error(body->data, body->len, code, sizeof(code), msg, sizeof(msg));
	redact(api, msg);
	redact(api, code);
	if (code[0] && msg[0])
		snprintf(what, sizeof(what), "%s: %s", code, msg);
	else if (code[0] || msg[0])
		snprintf(what, sizeof(what), "%s", code[0] ? code : msg);
	else
		snprintf(what, sizeof(what), "no error details");
	switch (status) {
	case 400:
		return bk__error_set(BK_EAPI, "api-bad-request", "%s: 400 %s", req->call, what);
	case 401:
		return bk__error_set(BK_EAUTH, "api-unauthorized",
		                     "%s: 401 %s (check the API token)", req->call, what);
	case 403:
		return bk__error_set(BK_EAUTH, "api-forbidden", "%s: 403 %s", req->call, what);
	case 404:
		return bk__error_set(BK_ENOTFOUND, "api-not-found", "%s: 404 %s", req->call, what);
	case 409:
		return bk__error_set(BK_EAPI, "api-conflict", "%s: 409 %s", req->call, what);
	case 422:
		return bk__error_set(BK_EAPI, "api-unprocessable", "%s: 422 %s", req->call, what);
	case 501:
		return bk__error_set(BK_EAPI, "api-not-implemented", "%s: 501 %s", req->call, what);
	default:
		break;
	}
	if (status == 429 || status >= 500)
		return bk__error_set(BK_EAPI, "api-unavailable", "%s: %ld %s (gave up retrying)",
		                     req->call, status, what);
	return bk__error_set(BK_EAPI, "api-refused", "%s: unexpected status %ld: %s", req->call,
	                     status, what);
}

static bool retryable_status(long status)
{
	return status == 429 || (status >= 500 && status <= 599 && status != 501);
}

/* Sets the error for a final transport failure. */
static int transport_error(bk_api_request *req, CURLcode cc, const char *errbuf)
{
	const char *detail = errbuf[0] ? errbuf : curl_easy_strerror(cc);
	switch (cc) {
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
		return bk__error_set(BK_EAUTH, "tls-verify-failed",
		                     "%s: the server's certificate is not trusted: %s", req->call,
		                     detail);
	case CURLE_SSL_CACERT_BADFILE:
		return bk__error_set(BK_EUSER, "tls-ca-file", "%s: cannot use the CA file: %s",
		                     req->call, detail);
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
		return bk__error_set(BK_EUSER, "tls-client-cert",
		                     "%s: cannot use the client certificate: %s", req->call,
		                     detail);
	case CURLE_OPERATION_TIMEDOUT:
		return bk__error_set(BK_ETIMEOUT, "api-timeout",
		                     "%s: timed out (gave up retrying): %s", req->call, detail);
	default:
		return bk__error_set(BK_EDISCONNECTED, "api-unreachable",
		                     "%s: cannot reach the service (gave up retrying): %s",
		                     req->call, detail);
	}
}

static bool retryable_transport(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_WEIRD_SERVER_REPLY:
		return true;
	default:
		return false;
	}
}

int bk_api__perform(bk_api *api, bk_api_request *req, bk_buf *out)
{
	char key[33];
	const char *idem = NULL;
	bk_buf body = BK_BUF_INIT;
	char errbuf[CURL_ERROR_SIZE];
	int rc = 0;
	if (api == NULL || req == NULL)
		return bk__error_set(BK_EINVALID, NULL, "api: no client");
	if (strcmp(req->method, "POST") == 0) {
		if (req->idempotency_key) {
			size_t n = strlen(req->idempotency_key);
			bool ok = n >= 8 && n <= 128;
			for (size_t i = 0; ok && i < n; i++) {
				char c = req->idempotency_key[i];
				ok = isalnum((unsigned char)c) || c == '.' || c == '_' ||
				     c == ':' || c == '-';
			}
			if (!ok)
				return bk__error_set(BK_EINVALID, "bad-idempotency-key",
				                     "%s: the idempotency key must be 8 to 128 of "
				                     "[A-Za-z0-9._:-]",
				                     req->call);
			idem = req->idempotency_key;
		} else {
			new_key(key);
			idem = key;
		}
	}
	int64_t window = bk_now_ms();
	unsigned failures = 0;
	for (;;) {
		attempt at;
		memset(&at, 0, sizeof(at));
		at.api = api;
		at.req = req;
		at.body = &body;
		at.retry_after = -1;
		at.content_length = -1;
		bk_buf_reset(&body);
		errbuf[0] = '\0';
		long status = 0;
		int64_t t0 = bk_now_ms();
		CURLcode cc = run_attempt(&at, idem, &status, errbuf);
		bk__log(BK_LOG_DEBUG, "api", "%s %s -> %ld (%s, %lld ms)", req->method, req->path,
		        status, cc == CURLE_OK ? "ok" : curl_easy_strerror(cc),
		        (long long)(bk_now_ms() - t0));
		if (cc == CURLE_OUT_OF_MEMORY) {
			rc = bk__error_oom();
			goto done;
		}
		if (at.sink_rc) {
			rc = at.sink_rc; /* the sink's (or the check's) own error */
			goto done;
		}
		if (at.too_big) {
			rc = bk__error_set(BK_EAPI, "api-bad-response",
			                   "%s: response larger than %u bytes", req->call,
			                   req->sink ? BK_API_ERROR_BODY_MAX : BK_API_JSON_MAX);
			goto done;
		}
		bool retry;
		if (cc == CURLE_OK && status >= 200 && status < 300) {
			if (req->sink) {
				if (!at.sink_checked && (rc = sink_begin(&at, status)) != 0) {
					rc = at.sink_rc;
					goto done;
				}
				if (req->total == UINT64_MAX && at.skip == 0)
					req->total =
					    req->offset; /* no length given: the end is the end */
				if (req->total != req->offset) {
					rc = bk__error_set(
					    BK_EAPI, "api-bad-response",
					    "%s: the transfer ended at byte %llu of %llu",
					    req->call, (unsigned long long)req->offset,
					    (unsigned long long)req->total);
					goto done;
				}
				goto done;
			}
			if (!type_is(at.content_type, "application/json")) {
				rc = bk__error_set(
				    BK_EAPI, "api-bad-response",
				    "%s: content type '%s' instead of application/json", req->call,
				    at.content_type);
				goto done;
			}
			if (out) {
				bk_buf tmp = *out;
				*out = body;
				body = tmp;
			}
			goto done;
		}
		if (cc == CURLE_OK && req->sink && status == 416 && at.have_range &&
		    at.range_total == req->offset && req->offset > 0) {
			req->total = req->offset; /* resumed at the very end */
			goto done;
		}
		if (cc == CURLE_OK) {
			retry = retryable_status(status);
		} else {
			retry = retryable_transport(cc);
		}
		if (at.written > 0) {
			/* A download made progress: the rules start over from here. */
			failures = 0;
			window = bk_now_ms();
		}
		failures++;
		long wait = -1;
		if (retry && failures < api->max_attempts && api->budget_ms >= 0) {
			wait = at.retry_after >= 0 ? at.retry_after * 1000
			                           : bk_api__backoff_ms(failures);
			if (bk_now_ms() + wait - window > api->budget_ms) {
				bk__log(BK_LOG_DEBUG, "api",
				        "%s: next wait (%ld ms) passes the retry budget", req->call,
				        wait);
				wait = -1;
			}
		}
		if (wait < 0) {
			rc = cc == CURLE_OK ? http_error(api, req, status, &body)
			                    : transport_error(req, cc, errbuf);
			goto done;
		}
		bk__log(BK_LOG_DEBUG, "api", "%s: attempt %u failed (%ld%s%s), retrying in %ld ms",
		        req->call, failures, status, cc ? ", " : "",
		        cc ? curl_easy_strerror(cc) : "", wait);
		sleep_ms(wait);
	}
done:
	bk_buf_free(&body);
	sodium_memzero(errbuf, sizeof(errbuf));
	return rc;
}
