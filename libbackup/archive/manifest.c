/* The memory archive's manifest (MANIFEST.json) and the domain digests. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

#include "libbackup/archive/archive.h"
#include "libbackup/util/util.h"

#define FIELD_MAX 256

struct bk_manifest {
	char backup_id[37];
	char *serial;
	char *model;
	char *hardware_revision;
	char *firmware_version;
	uint64_t schema_version;
	int64_t created;
	bk_manifest_entry *entries;
	size_t count;
	size_t cap;
	unsigned declared;
	bk_domain_digests domains;
	uint64_t total_bytes;
	uint8_t raw_digest[BK_ARCHIVE_DIGEST_LEN];
	bool has_raw;
	bool finished;
};

static const char *const domain_names[BK_DOMAIN_COUNT] = {
    "logs", "map", "memories", "personality", "photos", "settings",
};

static const bk_archive_limits default_limits = BK_ARCHIVE_LIMITS_DEFAULT;

/* --- Domains --- */

const char *bk_domain_name(int domain)
{
	if (domain < 0 || domain >= BK_DOMAIN_COUNT)
		return NULL;
	return domain_names[domain];
}

int bk_domain_lookup(const char *name, size_t len)
{
	for (int i = 0; i < BK_DOMAIN_COUNT; i++)
		if (strlen(domain_names[i]) == len && memcmp(domain_names[i], name, len) == 0)
			return i;
	return -1;
}

int bk_domain_set_parse(const char *list, unsigned *out)
{
	unsigned set = 0;
	const char *p = list;
	*out = 0;
	if (list == NULL || *list == '\0')
		return bk__error_set(BK_EUSER, "unknown-domain", "empty domain list");
	for (;;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		int d = bk_domain_lookup(p, len);
		if (d < 0)
			return bk__error_set(BK_EUSER, "unknown-domain", "unknown domain '%.*s'",
			                     (int)(len > 64 ? 64 : len), p);
		set |= BK_DOMAIN_BIT(d);
		if (end == NULL)
			break;
		p = end + 1;
	}
	*out = set;
	return 0;
}

bool bk_domain_digests_equal(const bk_domain_digests *a, const bk_domain_digests *b)
{
	for (int i = 0; i < BK_DOMAIN_COUNT; i++) {
		const bk_domain_digest *x = &a->d[i], *y = &b->d[i];
		if (x->present != y->present)
			return false;
		if (!x->present)
			continue;
		if (x->items != y->items || x->bytes != y->bytes ||
		    sodium_memcmp(x->digest, y->digest, BK_ARCHIVE_DIGEST_LEN) != 0)
			return false;
	}
	return true;
}

int bk_domain_digests_to_json(const bk_domain_digests *d, json_t **out)
{
	int rc = BK_ENOMEM;
	json_t *root = json_object();
	*out = NULL;
	if (root == NULL)
		return bk__error_oom();
	for (int i = 0; i < BK_DOMAIN_COUNT; i++) {
		if (!d->d[i].present)
			continue;
		char hex[2 * BK_ARCHIVE_DIGEST_LEN + 1];
		bk_hex_encode(hex, d->d[i].digest, BK_ARCHIVE_DIGEST_LEN);
		json_t *o = json_pack("{s:I,s:I,s:s}", "items", (json_int_t)d->d[i].items, "bytes",
		                      (json_int_t)d->d[i].bytes, "digest", hex);
		if (o == NULL || json_object_set_new(root, domain_names[i], o) != 0) {
			rc = bk__error_oom();
			goto done;
		}
	}
	*out = root;
	root = NULL;
	rc = 0;
done:
	json_decref(root);
	return rc;
}

/* A lower-case hex digest of exactly 32 bytes. */
static bool parse_digest(const json_t *v, uint8_t out[BK_ARCHIVE_DIGEST_LEN])
{
	if (!json_is_string(v) || json_string_length(v) != 2 * BK_ARCHIVE_DIGEST_LEN)
		return false;
	const char *s = json_string_value(v);
	for (size_t i = 0; i < 2 * BK_ARCHIVE_DIGEST_LEN; i++) {
		char c = s[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return bk_hex_decode(out, BK_ARCHIVE_DIGEST_LEN, s) == 0;
}

static bool parse_count(const json_t *v, uint64_t *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return false;
	*out = (uint64_t)json_integer_value(v);
	return true;
}

/* Parses one {"items","bytes","digest"} object. */
static int parse_domain_obj(const json_t *o, const char *name, bk_domain_digest *out)
{
	const char *key;
	json_t *v;
	int seen = 0;
	if (!json_is_object(o))
		return bk__error_set(BK_EFORMAT, "manifest-invalid", "domain %s: not an object",
		                     name);
	json_object_foreach((json_t *)o, key, v)
	{
		if (strcmp(key, "items") == 0 && parse_count(v, &out->items))
			seen |= 1;
		else if (strcmp(key, "bytes") == 0 && parse_count(v, &out->bytes))
			seen |= 2;
		else if (strcmp(key, "digest") == 0 && parse_digest(v, out->digest))
			seen |= 4;
		else
			return bk__error_set(BK_EFORMAT, "manifest-invalid",
			                     "domain %s: unknown or malformed field '%.64s'", name,
			                     key);
	}
	if (seen != 7)
		return bk__error_set(BK_EFORMAT, "manifest-invalid",
		                     "domain %s: items, bytes and digest are required", name);
	out->present = true;
	return 0;
}

int bk_domain_digests_from_json(const json_t *j, bk_domain_digests *out)
{
	const char *key;
	json_t *v;
	memset(out, 0, sizeof(*out));
	if (!json_is_object(j))
		return bk__error_set(BK_EFORMAT, "manifest-invalid", "domains: not an object");
	json_object_foreach((json_t *)j, key, v)
	{
		int d = bk_domain_lookup(key, strlen(key));
		if (d < 0)
			return bk__error_set(BK_EFORMAT, "unknown-domain", "unknown domain '%.64s'",
			                     key);
		int rc = parse_domain_obj(v, key, &out->d[d]);
		if (rc)
			return rc;
	}
	return 0;
}

/* --- Paths --- */

/* Well-formed UTF-8 (no overlong forms, surrogates or values past U+10FFFF). */
bool bk_archive__valid_utf8(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;
	while (i < len) {
		unsigned char c = s[i];
		size_t n;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			n = 1, cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			n = 2, cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			n = 3, cp = c & 0x07;
		} else {
			return false;
		}
		if (len - i <= n)
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n + 1;
	}
	return true;
}

int bk_archive__check_path(const char *path, size_t max_path, int *out_domain)
{
	size_t len = strlen(path);
	*out_domain = -1;
	/* Before any message prints the path. */
	if (!bk_archive__valid_utf8(path, len))
		return bk__error_set(BK_EFORMAT, "archive-unsafe-path",
		                     "a path is not valid UTF-8");
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)path[i];
		if (c < 0x20 || c == 0x7f || c == '\\')
			return bk__error_set(BK_EFORMAT, "archive-unsafe-path",
			                     "a path has a control character or backslash");
	}
	if (max_path && len > max_path)
		return bk__error_set(BK_ENOSPACE, "limit-exceeded",
		                     "a path is longer than %zu bytes", max_path);
	if (len == 0 || path[0] == '/')
		return bk__error_set(BK_EFORMAT, "archive-unsafe-path",
		                     "'%.200s': absolute or empty path", path);
	const char *p = path;
	int comp = 0;
	for (;;) {
		const char *end = strchr(p, '/');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return bk__error_set(BK_EFORMAT, "archive-unsafe-path",
			                     "'%.200s': empty, '.' or '..' path component", path);
		if (comp == 0) {
			*out_domain = bk_domain_lookup(p, n);
			if (*out_domain < 0)
				return bk__error_set(BK_EFORMAT, "unknown-domain",
				                     "'%.200s': unknown domain '%.*s'", path,
				                     (int)(n > 64 ? 64 : n), p);
		}
		comp++;
		if (end == NULL)
			break;
		p = end + 1;
	}
	if (comp < 2)
		return bk__error_set(BK_EFORMAT, "archive-unsafe-path",
		                     "'%.200s': not a path inside a domain", path);
	return 0;
}

/* --- Building --- */

static void random_uuid(char out[37])
{
	uint8_t b[16];
	randombytes_buf(b, sizeof(b));
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	char hex[33];
	bk_hex_encode(hex, b, sizeof(b));
	snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
}

static bool valid_uuid(const char *s)
{
	if (strlen(s) != 36)
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

static bool valid_field(const char *s)
{
	size_t n = strlen(s);
	if (n > FIELD_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20)
			return false;
	return true;
}

static int set_field(char **dst, const char *v, const char *what)
{
	if (v == NULL)
		v = "";
	if (!valid_field(v))
		return bk__error_set(BK_EINVALID, "manifest-invalid",
		                     "manifest %s: longer than %d bytes or has control characters",
		                     what, FIELD_MAX);
	*dst = bk__strdup(v);
	return *dst ? 0 : BK_ENOMEM;
}

void bk_manifest_free(bk_manifest *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->count; i++)
		bk__free(m->entries[i].path);
	bk__free(m->entries);
	bk__free(m->serial);
	bk__free(m->model);
	bk__free(m->hardware_revision);
	bk__free(m->firmware_version);
	bk__free(m);
}

int bk_manifest_new(bk_manifest **out, const bk_manifest_info *info, unsigned domains)
{
	int rc;
	bk_manifest_info none = {0};
	bk_manifest *m = bk__calloc(1, sizeof(*m));
	*out = NULL;
	if (m == NULL)
		return BK_ENOMEM;
	if (info == NULL)
		info = &none;
	if (info->backup_id) {
		if (!valid_uuid(info->backup_id)) {
			rc = bk__error_set(BK_EINVALID, "manifest-invalid",
			                   "backup id '%.40s' is not a lower-case UUID",
			                   info->backup_id);
			goto done;
		}
		memcpy(m->backup_id, info->backup_id, 37);
	} else {
		random_uuid(m->backup_id);
	}
	if ((rc = set_field(&m->serial, info->serial, "serial")) ||
	    (rc = set_field(&m->model, info->model, "model")) ||
	    (rc = set_field(&m->hardware_revision, info->hardware_revision, "hardware revision")) ||
	    (rc = set_field(&m->firmware_version, info->firmware_version, "firmware version")))
		goto done;
	m->schema_version = info->schema_version;
	m->created = info->created ? info->created : (int64_t)time(NULL);
	m->declared = domains & BK_DOMAINS_ALL;
	*out = m;
	m = NULL;
	rc = 0;
done:
	bk_manifest_free(m);
	return rc;
}

static int add_entry(bk_manifest *m, char *path_owned, int domain, uint64_t size, uint32_t mode,
                     int64_t mtime, const uint8_t digest[BK_ARCHIVE_DIGEST_LEN])
{
	if (m->count == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 64, bytes;
		if (!bk_size_mul(&bytes, cap, sizeof(*m->entries))) {
			bk__free(path_owned);
			return bk__error_oom();
		}
		bk_manifest_entry *e = bk__realloc(m->entries, bytes);
		if (e == NULL) {
			bk__free(path_owned);
			return BK_ENOMEM;
		}
		m->entries = e;
		m->cap = cap;
	}
	bk_manifest_entry *e = &m->entries[m->count++];
	e->path = path_owned;
	e->rel = strchr(path_owned, '/') + 1;
	e->domain = domain;
	e->size = size;
	e->mode = mode;
	e->mtime = mtime;
	memcpy(e->digest, digest, BK_ARCHIVE_DIGEST_LEN);
	memset(e->check, 0, sizeof(e->check));
	m->declared |= BK_DOMAIN_BIT(domain);
	m->finished = false;
	return 0;
}

int bk_manifest_add(bk_manifest *m, const char *path, uint64_t size, uint32_t mode, int64_t mtime,
                    const uint8_t digest[BK_ARCHIVE_DIGEST_LEN])
{
	int domain;
	if (m == NULL || path == NULL || digest == NULL)
		return bk__error_set(BK_EINVALID, NULL, "manifest add: missing argument");
	int rc = bk_archive__check_path(path, 0, &domain);
	if (rc)
		return rc;
	if (size > INT64_MAX || mode > 0777)
		return bk__error_set(BK_EINVALID, "manifest-invalid",
		                     "%.200s: size or mode out of range", path);
	char *p = bk__strdup(path);
	if (p == NULL)
		return BK_ENOMEM;
	return add_entry(m, p, domain, size, mode, mtime, digest);
}

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const bk_manifest_entry *)a)->path, ((const bk_manifest_entry *)b)->path);
}

/* Index of the entry whose path is exactly the `len` bytes at `path`, or -1. */
static long find_n(const bk_manifest *m, const char *path, size_t len)
{
	size_t lo = 0, hi = m->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const char *e = m->entries[mid].path;
		int c = strncmp(e, path, len);
		if (c == 0)
			c = e[len] == '\0' ? 0 : 1;
		if (c == 0)
			return (long)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

int bk_manifest_finish(bk_manifest *m, const bk_archive_limits *limits)
{
	if (m == NULL)
		return bk__error_set(BK_EINVALID, NULL, "manifest finish: no manifest");
	if (limits == NULL)
		limits = &default_limits;
	if (limits->max_entries && m->count > limits->max_entries)
		return bk__error_set(BK_ENOSPACE, "limit-exceeded",
		                     "manifest: %zu entries, more than the limit of %llu", m->count,
		                     (unsigned long long)limits->max_entries);
	if (m->count > 1)
		qsort(m->entries, m->count, sizeof(*m->entries), cmp_entry);
	uint64_t total = 0;
	for (size_t i = 0; i < m->count; i++) {
		const bk_manifest_entry *e = &m->entries[i];
		if (limits->max_path && strlen(e->path) > limits->max_path)
			return bk__error_set(BK_ENOSPACE, "limit-exceeded",
			                     "%.80s...: path longer than %zu bytes", e->path,
			                     limits->max_path);
		if (i > 0 && strcmp(m->entries[i - 1].path, e->path) == 0)
			return bk__error_set(BK_EFORMAT, "manifest-duplicate",
			                     "%.200s: listed twice in the manifest", e->path);
		if (!bk_u64_add(&total, total, e->size) ||
		    (limits->max_total_bytes && total > limits->max_total_bytes))
			return bk__error_set(BK_ENOSPACE, "limit-exceeded",
			                     "manifest: more than %llu bytes of files",
			                     (unsigned long long)limits->max_total_bytes);
		/* A file cannot also be a folder of another file. */
		for (const char *s = strchr(e->rel, '/'); s; s = strchr(s + 1, '/'))
			if (find_n(m, e->path, (size_t)(s - e->path)) >= 0)
				return bk__error_set(BK_EFORMAT, "manifest-duplicate",
				                     "%.200s: a parent of it is also a file",
				                     e->path);
	}
	m->total_bytes = total;

	crypto_generichash_state st[BK_DOMAIN_COUNT];
	memset(&m->domains, 0, sizeof(m->domains));
	for (int d = 0; d < BK_DOMAIN_COUNT; d++) {
		crypto_generichash_init(&st[d], NULL, 0, BK_ARCHIVE_DIGEST_LEN);
		m->domains.d[d].present = (m->declared & BK_DOMAIN_BIT(d)) != 0;
	}
	for (size_t i = 0; i < m->count; i++) {
		const bk_manifest_entry *e = &m->entries[i];
		uint8_t sz[8];
		bk_put_u64be(sz, e->size);
		crypto_generichash_update(&st[e->domain], (const uint8_t *)e->rel,
		                          strlen(e->rel) + 1);
		crypto_generichash_update(&st[e->domain], sz, sizeof(sz));
		crypto_generichash_update(&st[e->domain], e->digest, BK_ARCHIVE_DIGEST_LEN);
		m->domains.d[e->domain].items++;
		m->domains.d[e->domain].bytes += e->size;
	}
	for (int d = 0; d < BK_DOMAIN_COUNT; d++)
		crypto_generichash_final(&st[d], m->domains.d[d].digest, BK_ARCHIVE_DIGEST_LEN);
	m->finished = true;
	return 0;
}

/* --- Encoding --- */

int bk_manifest_encode(bk_manifest *m, char **out, size_t *out_len)
{
	int rc = BK_ENOMEM;
	json_t *root = NULL, *entries = NULL, *domains = NULL;
	char *text = NULL;
	*out = NULL;
	*out_len = 0;
	if (m == NULL || !m->finished)
		return bk__error_set(BK_EINVALID, NULL, "manifest encode: manifest not finished");
	char created[21];
	bk_time_rfc3339(created, m->created);
	entries = json_array();
	if (entries == NULL)
		goto oom;
	for (size_t i = 0; i < m->count; i++) {
		const bk_manifest_entry *e = &m->entries[i];
		char hex[2 * BK_ARCHIVE_DIGEST_LEN + 1];
		bk_hex_encode(hex, e->digest, BK_ARCHIVE_DIGEST_LEN);
		json_t *o =
		    json_pack("{s:s,s:I,s:i,s:I,s:s}", "path", e->path, "size", (json_int_t)e->size,
		              "mode", (int)e->mode, "mtime", (json_int_t)e->mtime, "digest", hex);
		if (o == NULL || json_array_append_new(entries, o) != 0)
			goto oom;
	}
	rc = bk_domain_digests_to_json(&m->domains, &domains);
	if (rc)
		goto done;
	rc = BK_ENOMEM;
	root = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:s,s:o,s:o}", "format", BK_MANIFEST_FORMAT,
	                 "backup_id", m->backup_id, "serial", m->serial, "model", m->model,
	                 "hardware_revision", m->hardware_revision, "firmware_version",
	                 m->firmware_version, "schema_version", (json_int_t)m->schema_version,
	                 "created", created, "domains", domains, "entries", entries);
	domains = entries = NULL; /* stolen by "o", even on failure */
	if (root == NULL)
		goto oom;
	text = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
	if (text == NULL)
		goto oom;
	size_t len = strlen(text);
	*out = bk__malloc(len + 2);
	if (*out == NULL)
		goto done;
	memcpy(*out, text, len);
	(*out)[len++] = '\n';
	(*out)[len] = '\0';
	*out_len = len;
	crypto_generichash(m->raw_digest, BK_ARCHIVE_DIGEST_LEN, (const uint8_t *)*out, len, NULL,
	                   0);
	m->has_raw = true;
	rc = 0;
	goto done;
oom:
	rc = bk__error_oom();
done:
	free(text);
	json_decref(root);
	json_decref(entries);
	json_decref(domains);
	return rc;
}

/* --- Parsing --- */

#define BAD(...) bk__error_set(BK_EFORMAT, "manifest-invalid", __VA_ARGS__)

static int get_string(json_t *root, const char *key, char **dst)
{
	json_t *v = json_object_get(root, key);
	if (!json_is_string(v) || json_string_length(v) > FIELD_MAX ||
	    !valid_field(json_string_value(v)))
		return BAD("manifest: '%s' missing, not a string, or malformed", key);
	*dst = bk__strdup(json_string_value(v));
	return *dst ? 0 : BK_ENOMEM;
}

static int parse_entry(bk_manifest *m, json_t *o, size_t index, const bk_archive_limits *limits)
{
	const char *key;
	json_t *v;
	const char *path = NULL;
	uint64_t size = 0, mode = 0;
	int64_t mtime = 0;
	uint8_t digest[BK_ARCHIVE_DIGEST_LEN];
	int seen = 0, domain;
	if (!json_is_object(o))
		return BAD("manifest entry %zu: not an object", index);
	json_object_foreach(o, key, v)
	{
		if (strcmp(key, "path") == 0 && json_is_string(v))
			path = json_string_value(v), seen |= 1;
		else if (strcmp(key, "size") == 0 && parse_count(v, &size))
			seen |= 2;
		else if (strcmp(key, "mode") == 0 && parse_count(v, &mode) && mode <= 0777)
			seen |= 4;
		else if (strcmp(key, "mtime") == 0 && json_is_integer(v))
			mtime = json_integer_value(v), seen |= 8;
		else if (strcmp(key, "digest") == 0 && parse_digest(v, digest))
			seen |= 16;
		else
			return BAD("manifest entry %zu: unknown or malformed field '%.64s'", index,
			           key);
	}
	if (seen != 31)
		return BAD("manifest entry %zu: path, size, mode, mtime and digest are required",
		           index);
	if (strlen(path) != json_string_length(v = json_object_get(o, "path")))
		return BAD("manifest entry %zu: NUL in path", index);
	int rc = bk_archive__check_path(path, limits->max_path, &domain);
	if (rc)
		return bk__error_prefix(rc, "manifest entry %zu", index);
	if (!(m->declared & BK_DOMAIN_BIT(domain)))
		return bk__error_set(BK_EFORMAT, "manifest-inconsistent",
		                     "manifest entry %.200s: domain not declared", path);
	if (limits->max_total_bytes && size > limits->max_total_bytes)
		return bk__error_set(
		    BK_ENOSPACE, "limit-exceeded",
		    "manifest entry %.200s: %llu bytes, more than the limit of %llu", path,
		    (unsigned long long)size, (unsigned long long)limits->max_total_bytes);
	if (size > INT64_MAX)
		return BAD("manifest entry %.200s: size out of range", path);
	char *p = bk__strdup(path);
	if (p == NULL)
		return BK_ENOMEM;
	return add_entry(m, p, domain, size, (uint32_t)mode, mtime, digest);
}

static const char *const top_keys[] = {
    "format",           "backup_id",      "serial",  "model",   "hardware_revision",
    "firmware_version", "schema_version", "created", "domains", "entries",
};

int bk_manifest_parse(bk_manifest **out, const void *data, size_t len,
                      const bk_archive_limits *limits)
{
	int rc;
	json_error_t jerr;
	json_t *root = NULL, *v;
	bk_manifest *m = NULL;
	bk_domain_digests declared;
	const char *key;
	*out = NULL;
	if (limits == NULL)
		limits = &default_limits;
	if (limits->max_manifest_bytes && len > limits->max_manifest_bytes)
		return bk__error_set(BK_ENOSPACE, "limit-exceeded",
		                     "manifest: %zu bytes, more than the limit of %zu", len,
		                     limits->max_manifest_bytes);
	root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		rc = BAD("manifest: not valid JSON: %s (line %d)", jerr.text, jerr.line);
		goto done;
	}
	if (!json_is_object(root)) {
		rc = BAD("manifest: not a JSON object");
		goto done;
	}
	v = json_object_get(root, "format");
	if (!json_is_string(v) || strcmp(json_string_value(v), BK_MANIFEST_FORMAT) != 0) {
		rc = bk__error_set(BK_EFORMAT, "manifest-format",
		                   "manifest: unknown format (expected %s)", BK_MANIFEST_FORMAT);
		goto done;
	}
	json_object_foreach(root, key, v)
	{
		bool known = false;
		for (size_t i = 0; i < BK_ARRAY_LEN(top_keys); i++)
			known = known || strcmp(key, top_keys[i]) == 0;
		if (!known) {
			rc = BAD("manifest: unknown field '%.64s'", key);
			goto done;
		}
	}
	m = bk__calloc(1, sizeof(*m));
	if (m == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	v = json_object_get(root, "backup_id");
	if (!json_is_string(v) || !valid_uuid(json_string_value(v))) {
		rc = BAD("manifest: 'backup_id' missing or not a lower-case UUID");
		goto done;
	}
	memcpy(m->backup_id, json_string_value(v), 37);
	if ((rc = get_string(root, "serial", &m->serial)) ||
	    (rc = get_string(root, "model", &m->model)) ||
	    (rc = get_string(root, "hardware_revision", &m->hardware_revision)) ||
	    (rc = get_string(root, "firmware_version", &m->firmware_version)))
		goto done;
	if (!parse_count(json_object_get(root, "schema_version"), &m->schema_version)) {
		rc = BAD("manifest: 'schema_version' missing or not a non-negative integer");
		goto done;
	}
	v = json_object_get(root, "created");
	if (!json_is_string(v) || bk_time_parse_rfc3339(json_string_value(v), &m->created) != 0) {
		rc = BAD("manifest: 'created' missing or not an RFC 3339 UTC time");
		goto done;
	}
	v = json_object_get(root, "domains");
	if (v == NULL) {
		rc = BAD("manifest: 'domains' missing");
		goto done;
	}
	if ((rc = bk_domain_digests_from_json(v, &declared)))
		goto done;
	for (int d = 0; d < BK_DOMAIN_COUNT; d++)
		if (declared.d[d].present)
			m->declared |= BK_DOMAIN_BIT(d);
	v = json_object_get(root, "entries");
	if (!json_is_array(v)) {
		rc = BAD("manifest: 'entries' missing or not an array");
		goto done;
	}
	if (limits->max_entries && json_array_size(v) > limits->max_entries) {
		rc = bk__error_set(BK_ENOSPACE, "limit-exceeded",
		                   "manifest: %zu entries, more than the limit of %llu",
		                   json_array_size(v), (unsigned long long)limits->max_entries);
		goto done;
	}
	for (size_t i = 0; i < json_array_size(v); i++)
		if ((rc = parse_entry(m, json_array_get(v, i), i, limits)))
			goto done;
	if ((rc = bk_manifest_finish(m, limits)))
		goto done;
	for (int d = 0; d < BK_DOMAIN_COUNT; d++) {
		const bk_domain_digest *x = &declared.d[d], *y = &m->domains.d[d];
		if (!x->present)
			continue;
		if (x->items != y->items || x->bytes != y->bytes ||
		    sodium_memcmp(x->digest, y->digest, BK_ARCHIVE_DIGEST_LEN) != 0) {
			rc = bk__error_set(BK_EFORMAT, "manifest-inconsistent",
			                   "manifest: domain %s totals or digest do not match its "
			                   "entries",
			                   domain_names[d]);
			goto done;
		}
	}
	crypto_generichash(m->raw_digest, BK_ARCHIVE_DIGEST_LEN, data, len, NULL, 0);
	m->has_raw = true;
	*out = m;
	m = NULL;
	rc = 0;
done:
	json_decref(root);
	bk_manifest_free(m);
	return rc;
}

/* --- Accessors --- */

const char *bk_manifest_backup_id(const bk_manifest *m)
{
	return m->backup_id;
}
const char *bk_manifest_serial(const bk_manifest *m)
{
	return m->serial;
}
const char *bk_manifest_model(const bk_manifest *m)
{
	return m->model;
}
const char *bk_manifest_hardware_revision(const bk_manifest *m)
{
	return m->hardware_revision;
}
const char *bk_manifest_firmware_version(const bk_manifest *m)
{
	return m->firmware_version;
}
uint64_t bk_manifest_schema_version(const bk_manifest *m)
{
	return m->schema_version;
}
int64_t bk_manifest_created(const bk_manifest *m)
{
	return m->created;
}
size_t bk_manifest_count(const bk_manifest *m)
{
	return m->count;
}
bk_manifest_entry *bk_archive__entry_mut(bk_manifest *m, size_t i)
{
	return m && i < m->count ? &m->entries[i] : NULL;
}

const bk_manifest_entry *bk_manifest_entry_at(const bk_manifest *m, size_t i)
{
	return i < m->count ? &m->entries[i] : NULL;
}
const bk_manifest_entry *bk_manifest_find(const bk_manifest *m, const char *path)
{
	long i = find_n(m, path, strlen(path));
	return i < 0 ? NULL : &m->entries[i];
}
const bk_domain_digests *bk_manifest_domains(const bk_manifest *m)
{
	return &m->domains;
}
bool bk_manifest_raw_digest(const bk_manifest *m, uint8_t out[BK_ARCHIVE_DIGEST_LEN])
{
	if (!m->has_raw)
		return false;
	memcpy(out, m->raw_digest, BK_ARCHIVE_DIGEST_LEN);
	return true;
}
uint64_t bk_manifest_total_bytes(const bk_manifest *m)
{
	return m->total_bytes;
}
