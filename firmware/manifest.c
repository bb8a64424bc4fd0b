/* The firmware manifest (manifest.json): strict parsing, canonical
 * encoding, semantic versions and hardware revisions. */
#include <jansson.h>
#include <string.h>

#include "firmware/firmware_internal.h"

/* --- Versions --------------------------------------------------------------- */

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int is_alnum_dash(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
}

/* A run of digits without a leading zero; returns its length or 0. */
static size_t numeric_ident(const char *p)
{
	size_t n = 0;
	while (is_digit(p[n]))
		n++;
	if (n == 0 || (n > 1 && p[0] == '0'))
		return 0;
	return n;
}

static int bad_version(const char *v)
{
	return bk__error_set(BK_EFORMAT, "bad-version",
	                     "'%.64s' is not a version (MAJOR.MINOR.PATCH[-PRERELEASE])",
	                     v ? v : "");
}

int bk_fw_version_check(const char *v)
{
	if (v == NULL || strlen(v) > BK_FW_VERSION_MAX)
		return bad_version(v);
	const char *p = v;
	for (int i = 0; i < 3; i++) {
		size_t n = numeric_ident(p);
		if (n == 0)
			return bad_version(v);
		p += n;
		if (i < 2) {
			if (*p != '.')
				return bad_version(v);
			p++;
		}
	}
	if (*p == '\0')
		return 0;
	if (*p != '-')
		return bad_version(v);
	p++;
	for (;;) {
		size_t n = 0, digits = 0;
		while (is_alnum_dash(p[n])) {
			if (is_digit(p[n]))
				digits++;
			n++;
		}
		if (n == 0)
			return bad_version(v);
		if (digits == n && n > 1 && p[0] == '0')
			return bad_version(v); /* numeric identifiers have no leading zero */
		p += n;
		if (*p == '\0')
			return 0;
		if (*p != '.')
			return bad_version(v);
		p++;
	}
}

/* Compares two digit runs without leading zeros by value. */
static int cmp_numeric(const char *a, size_t an, const char *b, size_t bn)
{
	if (an != bn)
		return an < bn ? -1 : 1;
	int c = memcmp(a, b, an);
	return c < 0 ? -1 : c > 0;
}

static size_t ident_len(const char *p)
{
	size_t n = 0;
	while (p[n] != '\0' && p[n] != '.' && p[n] != '-')
		n++;
	return n;
}

static size_t pre_ident_len(const char *p)
{
	size_t n = 0;
	while (p[n] != '\0' && p[n] != '.')
		n++;
	return n;
}

static int all_digits(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!is_digit(p[i]))
			return 0;
	return 1;
}

int bk_fw_version_compare(const char *a, const char *b, int *out)
{
	int rc;
	*out = 0;
	if ((rc = bk_fw_version_check(a)) || (rc = bk_fw_version_check(b)))
		return rc;
	/* MAJOR.MINOR.PATCH, numerically. */
	for (int i = 0; i < 3; i++) {
		size_t an = ident_len(a), bn = ident_len(b);
		int c = cmp_numeric(a, an, b, bn);
		if (c) {
			*out = c;
			return 0;
		}
		a += an;
		b += bn;
		if (i < 2) {
			a++;
			b++;
		}
	}
	/* A pre-release has lower precedence than the release. */
	if (*a == '\0' || *b == '\0') {
		*out = (*a == '\0') - (*b == '\0'); /* the release is the greater */
		return 0;
	}
	a++;
	b++;
	for (;;) {
		if (*a == '\0' || *b == '\0') {
			/* More identifiers win when all before are equal. */
			*out = (*a != '\0') - (*b != '\0');
			return 0;
		}
		size_t an = pre_ident_len(a), bn = pre_ident_len(b);
		int anum = all_digits(a, an), bnum = all_digits(b, bn);
		int c;
		if (anum && bnum) {
			c = cmp_numeric(a, an, b, bn);
		} else if (anum != bnum) {
			c = anum ? -1 : 1; /* numeric identifiers sort first */
		} else {
			size_t n = an < bn ? an : bn;
			c = memcmp(a, b, n);
			c = c < 0 ? -1 : c > 0;
			if (c == 0 && an != bn)
				c = an < bn ? -1 : 1;
		}
		if (c) {
			*out = c;
			return 0;
		}
		a += an;
		b += bn;
		if (*a == '.')
			a++;
		if (*b == '.')
			b++;
	}
}

/* --- Hardware revisions, names ---------------------------------------------- */

int bk_fw__check_hw_rev(const char *rev)
{
	const char *p = rev;
	if (rev == NULL || strlen(rev) > BK_FW_HW_REV_MAX)
		goto bad;
	for (;;) {
		size_t n = numeric_ident(p);
		if (n == 0)
			goto bad;
		p += n;
		if (*p == '\0')
			return 0;
		if (*p != '.')
			goto bad;
		p++;
	}
bad:
	return bk__error_set(BK_EFORMAT, "bad-hw-rev",
	                     "'%.32s' is not a hardware revision (numbers separated by dots)",
	                     rev ? rev : "");
}

int bk_fw_hw_rev_compare(const char *a, const char *b, int *out)
{
	int rc;
	*out = 0;
	if ((rc = bk_fw__check_hw_rev(a)) || (rc = bk_fw__check_hw_rev(b)))
		return rc;
	/* Missing components count as zero: "1" equals "1.0". */
	while (*a != '\0' || *b != '\0') {
		size_t an = ident_len(a), bn = ident_len(b);
		int c = cmp_numeric(an ? a : "0", an ? an : 1, bn ? b : "0", bn ? bn : 1);
		if (c) {
			*out = c;
			return 0;
		}
		a += an;
		b += bn;
		if (*a == '.')
			a++;
		if (*b == '.')
			b++;
	}
	return 0;
}

static int check_charset(const char *s, size_t max, const char *extra_ok, int upper_ok)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > max)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (is_digit(c) || (c >= 'a' && c <= 'z') || (upper_ok && c >= 'A' && c <= 'Z') ||
		    strchr(extra_ok, c) != NULL)
			continue;
		return -1;
	}
	return 0;
}

int bk_fw__check_payload_name(const char *name)
{
	if (check_charset(name, BK_FW_NAME_MAX, "._-", 1) != 0 || name[0] == '.' ||
	    strcmp(name, BK_FW_MANIFEST_NAME) == 0 || strcmp(name, BK_FW_SIGNATURE_NAME) == 0)
		return bk__error_set(
		    BK_EFORMAT, "unsafe-name",
		    "'%.64s' is not a payload name ([A-Za-z0-9._-], 1-%d characters, "
		    "not starting with a dot, not a manifest name)",
		    name ? name : "", BK_FW_NAME_MAX);
	return 0;
}

int bk_fw__check_slot(const char *slot)
{
	if (check_charset(slot, BK_FW_SLOT_MAX, "_-", 0) != 0)
		return bk__error_set(BK_EFORMAT, "bad-slot",
		                     "'%.32s' is not a slot role ([a-z0-9_-], 1-%d characters)",
		                     slot ? slot : "", BK_FW_SLOT_MAX);
	return 0;
}

int bk_fw__check_model(const char *model)
{
	if (check_charset(model, BK_FW_MODEL_MAX, "._-", 1) != 0)
		return bk__error_set(
		    BK_EFORMAT, "bad-model",
		    "'%.64s' is not a model name ([A-Za-z0-9._-], 1-%d characters)",
		    model ? model : "", BK_FW_MODEL_MAX);
	return 0;
}

/* --- Manifest ---------------------------------------------------------------- */

void bk_fw__manifest_free(bk_fw_manifest *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; m->models && i < m->model_count; i++)
		bk__free(m->models[i]);
	bk__free(m->models);
	bk__free(m->hw_rev_min);
	bk__free(m->hw_rev_max);
	bk__free(m->version);
	for (size_t i = 0; m->payloads && i < m->payload_count; i++) {
		bk__free(m->payloads[i].name);
		bk__free(m->payloads[i].slot);
	}
	bk__free(m->payloads);
	bk__free(m);
}

#define SCHEMA_MAX ((int64_t)1 << 53)

static int bad(const char *what)
{
	return bk__error_set(BK_EFORMAT, "bad-manifest", "manifest: %s", what);
}

/* Every field, whether parsed or about to be written. */
static int check_manifest(const bk_fw_manifest *m)
{
	int rc, c;
	if (m->model_count == 0 || m->model_count > BK_FW_MODELS_MAX)
		return bad("models: between 1 and 32 needed");
	for (size_t i = 0; i < m->model_count; i++) {
		if ((rc = bk_fw__check_model(m->models[i])))
			return bk__error_prefix(rc, "manifest");
		for (size_t j = 0; j < i; j++)
			if (strcmp(m->models[i], m->models[j]) == 0)
				return bad("models: listed twice");
	}
	if ((rc = bk_fw_hw_rev_compare(m->hw_rev_min, m->hw_rev_max, &c)))
		return bk__error_prefix(rc, "manifest");
	if (c > 0)
		return bad("hw_rev: min above max");
	if ((rc = bk_fw_version_check(m->version)))
		return bk__error_prefix(rc, "manifest");
	if (m->schema_min < 0 || m->schema_max > SCHEMA_MAX || m->schema_min > m->schema_max)
		return bad("schema: needs 0 <= min <= max");
	if (m->payload_count == 0 || m->payload_count > BK_FW_PAYLOADS_MAX)
		return bad("payloads: between 1 and 16 needed");
	for (size_t i = 0; i < m->payload_count; i++) {
		const bk_fw_payload *p = &m->payloads[i];
		if ((rc = bk_fw__check_payload_name(p->name)) || (rc = bk_fw__check_slot(p->slot)))
			return bk__error_prefix(rc, "manifest");
		if (p->size > BK_FW_PAYLOAD_SIZE_MAX)
			return bad("payloads: size over 1 TiB");
		for (size_t j = 0; j < i; j++) {
			if (strcmp(p->name, m->payloads[j].name) == 0)
				return bad("payloads: a name listed twice");
			if (strcmp(p->slot, m->payloads[j].slot) == 0)
				return bad("payloads: a slot role listed twice");
		}
	}
	int64_t t;
	char again[21];
	if (bk_time_parse_rfc3339(m->created, &t) != 0)
		return bad("created: not an RFC 3339 UTC time");
	bk_time_rfc3339(again, t);
	if (strcmp(again, m->created) != 0)
		return bad("created: not a valid time");
	return 0;
}

static int get_string(json_t *obj, const char *key, const char **out)
{
	json_t *v = json_object_get(obj, key);
	if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
		return bk__error_set(BK_EFORMAT, "bad-manifest", "manifest: '%s' must be a string",
		                     key);
	*out = json_string_value(v);
	return 0;
}

static int get_int(json_t *obj, const char *key, json_int_t min, json_int_t max, json_int_t *out)
{
	json_t *v = json_object_get(obj, key);
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
		return bk__error_set(BK_EFORMAT, "bad-manifest",
		                     "manifest: '%s' must be an integer from %lld to %lld", key,
		                     (long long)min, (long long)max);
	*out = json_integer_value(v);
	return 0;
}

static int get_range(json_t *root, const char *key, json_t **out)
{
	json_t *v = json_object_get(root, key);
	if (!json_is_object(v) || json_object_size(v) != 2 || !json_object_get(v, "min") ||
	    !json_object_get(v, "max"))
		return bk__error_set(BK_EFORMAT, "bad-manifest",
		                     "manifest: '%s' must be an object with exactly min and max",
		                     key);
	*out = v;
	return 0;
}

static int dup_str(char **out, const char *s)
{
	*out = bk__strdup(s);
	return *out ? 0 : BK_ENOMEM;
}

static int decode(bk_fw_manifest *m, json_t *root)
{
	static const char *const keys[] = {"created",  "format", "hw_rev",           "models",
	                                   "payloads", "schema", "security_counter", "version"};
	const char *s;
	json_int_t n;
	json_t *range, *arr;
	int rc;
	if (!json_is_object(root))
		return bad("not a JSON object");
	for (size_t i = 0; i < BK_ARRAY_LEN(keys); i++)
		if (json_object_get(root, keys[i]) == NULL)
			return bk__error_set(BK_EFORMAT, "bad-manifest", "manifest: '%s' missing",
			                     keys[i]);
	if (json_object_size(root) != BK_ARRAY_LEN(keys))
		return bad("unknown fields");
	if ((rc = get_string(root, "format", &s)))
		return rc;
	if (strcmp(s, BK_FW_FORMAT) != 0)
		return bk__error_set(BK_EFORMAT, "bad-manifest-format",
		                     "manifest: format '%.32s' is not " BK_FW_FORMAT, s);
	arr = json_object_get(root, "models");
	if (!json_is_array(arr) || json_array_size(arr) == 0 ||
	    json_array_size(arr) > BK_FW_MODELS_MAX)
		return bad("models: an array of 1 to 32 names needed");
	m->models = bk__calloc(json_array_size(arr) + 1, sizeof(char *));
	if (m->models == NULL)
		return BK_ENOMEM;
	for (size_t i = 0; i < json_array_size(arr); i++) {
		json_t *v = json_array_get(arr, i);
		if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
			return bad("models: names must be strings");
		if ((rc = dup_str(&m->models[i], json_string_value(v))))
			return rc;
		m->model_count++;
	}
	if ((rc = get_range(root, "hw_rev", &range)) || (rc = get_string(range, "min", &s)) ||
	    (rc = dup_str(&m->hw_rev_min, s)) || (rc = get_string(range, "max", &s)) ||
	    (rc = dup_str(&m->hw_rev_max, s)))
		return rc;
	if ((rc = get_string(root, "version", &s)) || (rc = dup_str(&m->version, s)))
		return rc;
	if ((rc = get_int(root, "security_counter", 0, UINT32_MAX, &n)))
		return rc;
	m->security_counter = (uint32_t)n;
	if ((rc = get_range(root, "schema", &range)) ||
	    (rc = get_int(range, "min", 0, SCHEMA_MAX, &n)))
		return rc;
	m->schema_min = n;
	if ((rc = get_int(range, "max", 0, SCHEMA_MAX, &n)))
		return rc;
	m->schema_max = n;
	arr = json_object_get(root, "payloads");
	if (!json_is_array(arr) || json_array_size(arr) == 0 ||
	    json_array_size(arr) > BK_FW_PAYLOADS_MAX)
		return bad("payloads: an array of 1 to 16 objects needed");
	m->payloads = bk__calloc(json_array_size(arr), sizeof(bk_fw_payload));
	if (m->payloads == NULL)
		return BK_ENOMEM;
	for (size_t i = 0; i < json_array_size(arr); i++) {
		json_t *v = json_array_get(arr, i);
		bk_fw_payload *p = &m->payloads[i];
		if (!json_is_object(v) || json_object_size(v) != 4)
			return bad(
			    "payloads: objects with exactly name, size, blake2b and slot needed");
		m->payload_count++;
		if ((rc = get_string(v, "name", &s)) || (rc = dup_str(&p->name, s)) ||
		    (rc = get_string(v, "slot", &s)) || (rc = dup_str(&p->slot, s)) ||
		    (rc = get_int(v, "size", 0, (json_int_t)BK_FW_PAYLOAD_SIZE_MAX, &n)))
			return rc;
		p->size = (uint64_t)n;
		if ((rc = get_string(v, "blake2b", &s)))
			return rc;
		if (strlen(s) != 2 * BK_FW_DIGEST_LEN ||
		    bk_hex_decode(p->digest, BK_FW_DIGEST_LEN, s))
			return bad("payloads: blake2b must be 128 hex digits");
		bk_hex_encode(p->hex, p->digest, BK_FW_DIGEST_LEN);
	}
	if ((rc = get_string(root, "created", &s)))
		return rc;
	if (!bk_strlcpy(m->created, s, sizeof(m->created)))
		return bad("created: not an RFC 3339 UTC time");
	return check_manifest(m);
}

int bk_fw__manifest_parse(bk_fw_manifest **out, const uint8_t *data, size_t len)
{
	bk_fw_manifest *m = NULL;
	json_t *root = NULL;
	bk_buf canon = BK_BUF_INIT;
	json_error_t jerr;
	int rc = 0;
	*out = NULL;
	if (len > BK_FW_MANIFEST_MAX) {
		rc = bk__error_set(BK_EFORMAT, "manifest-too-large",
		                   "manifest: %zu bytes, over the %d-byte limit", len,
		                   BK_FW_MANIFEST_MAX);
		goto done;
	}
	root = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		rc = bk__error_set(BK_EFORMAT, "bad-manifest", "manifest: not JSON: %s (line %d)",
		                   jerr.text, jerr.line);
		goto done;
	}
	m = bk__calloc(1, sizeof(*m));
	if (m == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	if ((rc = decode(m, root)))
		goto done;
	/* What is signed is what is read: only the canonical form is accepted. */
	if ((rc = bk_fw__manifest_encode(m, &canon)))
		goto done;
	if (canon.len != len || memcmp(canon.data, data, len) != 0) {
		rc = bk__error_set(BK_EFORMAT, "manifest-not-canonical",
		                   "manifest: not in canonical form (compact, sorted keys, "
		                   "one final newline)");
		goto done;
	}
	*out = m;
	m = NULL;
done:
	bk_buf_free(&canon);
	json_decref(root);
	bk_fw__manifest_free(m);
	return rc;
}

static int set_new(json_t *obj, const char *key, json_t *v)
{
	/* json_object_set_new releases `v` even when it fails. */
	return v == NULL || json_object_set_new(obj, key, v) != 0 ? -1 : 0;
}

int bk_fw__manifest_encode(const bk_fw_manifest *m, bk_buf *out)
{
	json_t *root = NULL, *arr, *obj;
	char *text = NULL;
	int rc = check_manifest(m);
	if (rc)
		goto done;
	rc = BK_ENOMEM;
	root = json_object();
	if (root == NULL || set_new(root, "format", json_string(BK_FW_FORMAT)) ||
	    set_new(root, "version", json_string(m->version)) ||
	    set_new(root, "security_counter", json_integer(m->security_counter)) ||
	    set_new(root, "created", json_string(m->created)))
		goto oom;
	if (set_new(root, "models", arr = json_array()))
		goto oom;
	for (size_t i = 0; i < m->model_count; i++)
		if (json_array_append_new(arr, json_string(m->models[i])) != 0)
			goto oom;
	if (set_new(root, "hw_rev", obj = json_object()) ||
	    set_new(obj, "min", json_string(m->hw_rev_min)) ||
	    set_new(obj, "max", json_string(m->hw_rev_max)))
		goto oom;
	if (set_new(root, "schema", obj = json_object()) ||
	    set_new(obj, "min", json_integer(m->schema_min)) ||
	    set_new(obj, "max", json_integer(m->schema_max)))
		goto oom;
	if (set_new(root, "payloads", arr = json_array()))
		goto oom;
	for (size_t i = 0; i < m->payload_count; i++) {
		const bk_fw_payload *p = &m->payloads[i];
		char hex[2 * BK_FW_DIGEST_LEN + 1];
		bk_hex_encode(hex, p->digest, BK_FW_DIGEST_LEN);
		obj = json_object();
		if (obj == NULL || json_array_append_new(arr, obj) != 0 ||
		    set_new(obj, "name", json_string(p->name)) ||
		    set_new(obj, "size", json_integer((json_int_t)p->size)) ||
		    set_new(obj, "blake2b", json_string(hex)) ||
		    set_new(obj, "slot", json_string(p->slot)))
			goto oom;
	}
	text = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
	if (text == NULL)
		goto oom;
	bk_buf_reset(out);
	if ((rc = bk_buf_put_str(out, text)) || (rc = bk_buf_put_u8(out, '\n')))
		goto done;
	rc = 0;
	goto done;
oom:
	rc = bk__error_oom();
done:
	free(text);
	json_decref(root);
	return rc;
}
