/* The private-API client: checking and decoding response bodies. Every field
 * the caller relies on is checked for presence, type and size here, before
 * anything reaches the caller. */
#include <jansson.h>
#include <sodium.h>
#include <string.h>

#include "api_internal.h"

#define STR_MAX 4096

static int bad(const char *fmt, const char *field)
{
	return bk__error_set(BK_EAPI, "api-bad-response", fmt, field);
}

static int load(const uint8_t *body, size_t len, json_t **out)
{
	json_error_t jerr;
	*out = NULL;
	if (body == NULL || len == 0)
		return bk__error_set(BK_EAPI, "api-bad-response", "response body is empty");
	if (len > BK_API_JSON_MAX)
		return bk__error_set(BK_EAPI, "api-bad-response",
		                     "response body too large (%zu bytes)", len);
	json_t *root = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
		return bk__error_set(BK_EAPI, "api-bad-response",
		                     "response is not JSON: %s at line %d", jerr.text, jerr.line);
	if (!json_is_object(root)) {
		json_decref(root);
		return bk__error_set(BK_EAPI, "api-bad-response", "response is not a JSON object");
	}
	*out = root;
	return 0;
}

/* A string field: required (absent or null refused) or optional (absent or
 * null gives NULL). Empty strings and strings longer than STR_MAX are refused. */
static int get_str(json_t *obj, const char *field, bool required, char **out)
{
	*out = NULL;
	json_t *v = json_object_get(obj, field);
	if (v == NULL || json_is_null(v)) {
		if (required)
			return bad("response field '%s' is missing", field);
		return 0;
	}
	if (!json_is_string(v))
		return bad("response field '%s' is not a string", field);
	size_t n = json_string_length(v);
	if (n == 0 || n > STR_MAX)
		return bad("response field '%s' is empty or too long", field);
	const char *s = json_string_value(v);
	if (memchr(s, '\0', n) != NULL)
		return bad("response field '%s' holds a NUL", field);
	*out = bk__strndup(s, n);
	return *out ? 0 : BK_ENOMEM;
}

/* A required identifier field (serial, ticket, backup id). */
static int get_id(json_t *obj, const char *field, char **out)
{
	int rc = get_str(obj, field, true, out);
	if (rc == 0 && !bk_api__id_ok(*out)) {
		bk__free(*out);
		*out = NULL;
		rc = bad("response field '%s' is not a valid identifier", field);
	}
	return rc;
}

static int get_int(json_t *obj, const char *field, bool required, int64_t min, int64_t *out)
{
	json_t *v = json_object_get(obj, field);
	if (v == NULL || json_is_null(v)) {
		if (required)
			return bad("response field '%s' is missing", field);
		return 1; /* absent */
	}
	if (!json_is_integer(v))
		return bad("response field '%s' is not an integer", field);
	json_int_t i = json_integer_value(v);
	if (i < min)
		return bad("response field '%s' is out of range", field);
	*out = (int64_t)i;
	return 0;
}

static int one_of(const char *s, const char *const *set)
{
	for (; *set; set++)
		if (strcmp(s, *set) == 0)
			return 1;
	return 0;
}

static int b64_decode(const char *s, size_t n, size_t max_bytes, const char *field, uint8_t **out,
                      size_t *out_len)
{
	*out = NULL;
	*out_len = 0;
	size_t cap = n / 4 * 3 + 3;
	uint8_t *bin = bk__malloc(cap);
	if (bin == NULL)
		return BK_ENOMEM;
	size_t got = 0;
	const char *end = NULL;
	if (sodium_base642bin(bin, cap, s, n, NULL, &got, &end, sodium_base64_VARIANT_ORIGINAL) !=
	        0 ||
	    end != s + n || got == 0 || got > max_bytes) {
		bk__free(bin);
		return bad("response field '%s' is not valid base64 of an acceptable size", field);
	}
	*out = bin;
	*out_len = got;
	return 0;
}

static int get_b64(json_t *obj, const char *field, size_t max_bytes, uint8_t **out, size_t *out_len)
{
	*out = NULL;
	*out_len = 0;
	json_t *v = json_object_get(obj, field);
	if (v == NULL || json_is_null(v))
		return bad("response field '%s' is missing", field);
	if (!json_is_string(v))
		return bad("response field '%s' is not a string", field);
	return b64_decode(json_string_value(v), json_string_length(v), max_bytes, field, out,
	                  out_len);
}

bool bk_api__id_ok(const char *s)
{
	if (s == NULL)
		return false;
	size_t n = strlen(s);
	if (n == 0 || n > BK_API_ID_MAX || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

void bk_api_unit_clear(bk_api_unit *u)
{
	if (u == NULL)
		return;
	bk__free(u->serial);
	bk__free(u->model);
	bk__free(u->hw_rev);
	bk__free(u->device_id);
	bk__free(u->status);
	bk__free(u->owner);
	bk__free(u->firmware);
	memset(u, 0, sizeof(*u));
}

void bk_api_ticket_clear(bk_api_ticket *t)
{
	if (t == NULL)
		return;
	bk__free(t->ticket);
	bk__free(t->old_serial);
	bk__free(t->new_serial);
	bk__free(t->status);
	bk__free(t->model);
	bk__free(t->outcome);
	memset(t, 0, sizeof(*t));
}

void bk_api_reassignment_clear(bk_api_reassignment *r)
{
	if (r == NULL)
		return;
	bk__free(r->ticket);
	bk__free(r->old_serial);
	bk__free(r->new_serial);
	bk__free(r->device_id);
	bk__free(r->owner);
	bk__free(r->bundle);
	memset(r, 0, sizeof(*r));
}

static void backup_clear(bk_api_backup *b)
{
	bk__free(b->id);
	bk__free(b->serial);
	bk__free(b->created);
	bk__free(b->firmware);
	memset(b, 0, sizeof(*b));
}

void bk_api_backup_list_free(bk_api_backup *list, size_t count)
{
	if (list == NULL)
		return;
	for (size_t i = 0; i < count; i++)
		backup_clear(&list[i]);
	bk__free(list);
}

int bk_api__decode_unit(const uint8_t *body, size_t len, bk_api_unit *out)
{
	static const char *const statuses[] = {"stock", "active", "retired", NULL};
	json_t *root = NULL;
	memset(out, 0, sizeof(*out));
	int rc = load(body, len, &root);
	if (rc)
		goto done;
	if ((rc = get_id(root, "serial", &out->serial)) ||
	    (rc = get_str(root, "model", true, &out->model)) ||
	    (rc = get_str(root, "hw_rev", true, &out->hw_rev)) ||
	    (rc = get_str(root, "device_id", true, &out->device_id)) ||
	    (rc = get_str(root, "status", true, &out->status)) ||
	    (rc = get_str(root, "owner", false, &out->owner)) ||
	    (rc = get_str(root, "firmware", false, &out->firmware)))
		goto done;
	if (!one_of(out->status, statuses)) {
		rc = bad("response field '%s' has an unknown value", "status");
		goto done;
	}
	if (json_object_get(root, "owner") == NULL) {
		rc = bad("response field '%s' is missing", "owner");
		goto done;
	}
done:
	json_decref(root);
	if (rc)
		bk_api_unit_clear(out);
	return rc;
}

int bk_api__decode_ticket(const uint8_t *body, size_t len, bk_api_ticket *out)
{
	static const char *const statuses[] = {"open", "reassigned", "completed", "failed", NULL};
	json_t *root = NULL;
	memset(out, 0, sizeof(*out));
	int rc = load(body, len, &root);
	if (rc)
		goto done;
	if ((rc = get_id(root, "ticket", &out->ticket)) ||
	    (rc = get_id(root, "old_serial", &out->old_serial)) ||
	    (rc = get_str(root, "new_serial", false, &out->new_serial)) ||
	    (rc = get_str(root, "status", true, &out->status)) ||
	    (rc = get_str(root, "model", true, &out->model)) ||
	    (rc = get_str(root, "outcome", false, &out->outcome)))
		goto done;
	if (!one_of(out->status, statuses)) {
		rc = bad("response field '%s' has an unknown value", "status");
		goto done;
	}
	if (out->new_serial != NULL && !bk_api__id_ok(out->new_serial)) {
		rc = bad("response field '%s' is not a valid identifier", "new_serial");
		goto done;
	}
	if (out->new_serial == NULL && strcmp(out->status, "open") != 0) {
		rc = bad("response field '%s' is missing for a reassigned ticket", "new_serial");
		goto done;
	}
done:
	json_decref(root);
	if (rc)
		bk_api_ticket_clear(out);
	return rc;
}

int bk_api__decode_reassignment(const uint8_t *body, size_t len, bk_api_reassignment *out)
{
	json_t *root = NULL;
	memset(out, 0, sizeof(*out));
	int rc = load(body, len, &root);
	if (rc)
		goto done;
	if ((rc = get_id(root, "ticket", &out->ticket)) ||
	    (rc = get_id(root, "old_serial", &out->old_serial)) ||
	    (rc = get_id(root, "new_serial", &out->new_serial)) ||
	    (rc = get_str(root, "device_id", true, &out->device_id)) ||
	    (rc = get_str(root, "owner", false, &out->owner)) ||
	    (rc = get_b64(root, "bundle", 64 << 10, &out->bundle, &out->bundle_len)))
		goto done;
done:
	json_decref(root);
	if (rc)
		bk_api_reassignment_clear(out);
	return rc;
}

int bk_api__decode_backups(const uint8_t *body, size_t len, bk_api_backup **out, size_t *out_count)
{
	json_t *root = NULL;
	bk_api_backup *list = NULL;
	size_t n = 0;
	char *serial = NULL;
	*out = NULL;
	*out_count = 0;
	int rc = load(body, len, &root);
	if (rc)
		goto done;
	if ((rc = get_id(root, "serial", &serial)))
		goto done;
	json_t *arr = json_object_get(root, "backups");
	if (!json_is_array(arr)) {
		rc = bad("response field '%s' is missing or not an array", "backups");
		goto done;
	}
	size_t count = json_array_size(arr);
	if (count > 100000) {
		rc = bad("response field '%s' has too many entries", "backups");
		goto done;
	}
	if (count > 0) {
		list = bk__calloc(count, sizeof(*list));
		if (list == NULL) {
			rc = BK_ENOMEM;
			goto done;
		}
	}
	for (size_t i = 0; i < count; i++) {
		json_t *e = json_array_get(arr, i);
		bk_api_backup *b = &list[i];
		n = i + 1;
		if (!json_is_object(e)) {
			rc = bad("response field '%s' holds a non-object", "backups");
			goto done;
		}
		int64_t size = 0, schema = -1;
		if ((rc = get_id(e, "id", &b->id)) || (rc = get_id(e, "serial", &b->serial)) ||
		    (rc = get_str(e, "created", true, &b->created)) ||
		    (rc = get_str(e, "firmware", false, &b->firmware)) ||
		    (rc = get_int(e, "size", true, 0, &size)) < 0 ||
		    (rc = get_int(e, "schema", false, 0, &schema)) < 0)
			goto done;
		rc = 0;
		int64_t when;
		if (bk_time_parse_rfc3339(b->created, &when) != 0) {
			rc = bad("response field '%s' is not an RFC 3339 time", "created");
			goto done;
		}
		if (strcmp(b->serial, serial) != 0) {
			rc = bad("response field '%s' names another unit", "serial");
			goto done;
		}
		b->size = (uint64_t)size;
		b->schema = schema;
	}
	*out = list;
	*out_count = count;
	list = NULL;
	n = 0;
done:
	bk_api_backup_list_free(list, n);
	bk__free(serial);
	json_decref(root);
	return rc;
}

int bk_api__decode_b64_field(const uint8_t *body, size_t len, const char *field, size_t max_bytes,
                             uint8_t **out, size_t *out_len)
{
	json_t *root = NULL;
	*out = NULL;
	*out_len = 0;
	int rc = load(body, len, &root);
	if (rc == 0)
		rc = get_b64(root, field, max_bytes, out, out_len);
	json_decref(root);
	return rc;
}

int bk_api__decode_events(const uint8_t *body, size_t len, int64_t *out_total)
{
	json_t *root = NULL;
	int64_t accepted = 0, total = 0;
	int rc = load(body, len, &root);
	if (rc)
		goto done;
	if ((rc = get_int(root, "accepted", true, 0, &accepted)) ||
	    (rc = get_int(root, "total", true, 0, &total)))
		goto done;
	if (accepted > total) {
		rc = bad("response field '%s' is smaller than 'accepted'", "total");
		goto done;
	}
	*out_total = total;
done:
	json_decref(root);
	return rc;
}

static void clean_copy(char *dst, size_t size, const char *src, size_t n)
{
	size_t j = 0;
	if (size == 0)
		return;
	for (size_t i = 0; i < n && j + 1 < size; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[j++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
	}
	/* Do not end inside a UTF-8 sequence. */
	while (j > 0 && ((unsigned char)dst[j - 1] & 0xc0) == 0x80)
		j--;
	if (j > 0 && ((unsigned char)dst[j - 1] & 0xc0) == 0xc0)
		j--;
	dst[j] = '\0';
}

void bk_api__decode_error(const uint8_t *body, size_t len, char *code, size_t code_size,
                          char *message, size_t message_size)
{
	json_t *root = NULL;
	if (code_size)
		code[0] = '\0';
	if (message_size)
		message[0] = '\0';
	if (body == NULL || len == 0 || len > BK_API_JSON_MAX)
		return;
	root = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, NULL);
	json_t *err = json_is_object(root) ? json_object_get(root, "error") : NULL;
	json_t *c = json_is_object(err) ? json_object_get(err, "code") : NULL;
	json_t *m = json_is_object(err) ? json_object_get(err, "message") : NULL;
	if (json_is_string(c)) {
		const char *s = json_string_value(c);
		size_t n = json_string_length(c);
		bool ok = n > 0 && n < code_size;
		for (size_t i = 0; ok && i < n; i++)
			ok = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
			     s[i] == '-';
		if (ok)
			clean_copy(code, code_size, s, n);
	}
	if (json_is_string(m))
		clean_copy(message, message_size, json_string_value(m), json_string_length(m));
	json_decref(root);
}
