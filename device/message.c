/* The plaintext message codec: type (u8), request id (u32be), body. Control
 * bodies are JSON objects, data bodies a u64be offset and bytes. */
#include <stdio.h>
#include <string.h>

#include "device/device_internal.h"

static const struct {
	uint8_t type;
	const char *name;
	int body;
} types[] = {
	{BK_MSG_HELLO, "HELLO", BK_PROTO_BODY_JSON},
	{BK_MSG_PING, "PING", BK_PROTO_BODY_JSON},
	{BK_MSG_INFO, "INFO", BK_PROTO_BODY_JSON},
	{BK_MSG_BACKUP_BEGIN, "BACKUP_BEGIN", BK_PROTO_BODY_JSON},
	{BK_MSG_BACKUP_READ, "BACKUP_READ", BK_PROTO_BODY_JSON},
	{BK_MSG_BACKUP_END, "BACKUP_END", BK_PROTO_BODY_JSON},
	{BK_MSG_RESTORE_BEGIN, "RESTORE_BEGIN", BK_PROTO_BODY_JSON},
	{BK_MSG_RESTORE_WRITE, "RESTORE_WRITE", BK_PROTO_BODY_DATA},
	{BK_MSG_RESTORE_STATUS, "RESTORE_STATUS", BK_PROTO_BODY_JSON},
	{BK_MSG_RESTORE_COMMIT, "RESTORE_COMMIT", BK_PROTO_BODY_JSON},
	{BK_MSG_RESTORE_ABORT, "RESTORE_ABORT", BK_PROTO_BODY_JSON},
	{BK_MSG_FW_BEGIN, "FW_BEGIN", BK_PROTO_BODY_JSON},
	{BK_MSG_FW_WRITE, "FW_WRITE", BK_PROTO_BODY_DATA},
	{BK_MSG_FW_FINISH, "FW_FINISH", BK_PROTO_BODY_JSON},
	{BK_MSG_FW_ACTIVATE, "FW_ACTIVATE", BK_PROTO_BODY_JSON},
	{BK_MSG_REBOOT, "REBOOT", BK_PROTO_BODY_JSON},
	{BK_MSG_BOOT_STATUS, "BOOT_STATUS", BK_PROTO_BODY_JSON},
	{BK_MSG_IDENTITY_INSTALL, "IDENTITY_INSTALL", BK_PROTO_BODY_JSON},
	{BK_MSG_OK, "OK", BK_PROTO_BODY_JSON},
	{BK_MSG_DATA, "DATA", BK_PROTO_BODY_DATA},
	{BK_MSG_ERROR, "ERROR", BK_PROTO_BODY_JSON},
};

const char *bk_proto_type_name(uint8_t type)
{
	for (size_t i = 0; i < BK_ARRAY_LEN(types); i++)
		if (types[i].type == type)
			return types[i].name;
	return NULL;
}

int bk_proto_type_body(uint8_t type)
{
	for (size_t i = 0; i < BK_ARRAY_LEN(types); i++)
		if (types[i].type == type)
			return types[i].body;
	return BK_PROTO_BODY_UNKNOWN;
}

bool bk_proto_type_is_response(uint8_t type)
{
	return type == BK_MSG_OK || type == BK_MSG_DATA || type == BK_MSG_ERROR;
}

uint8_t bk_proto_type_from_name(const char *name)
{
	for (size_t i = 0; name && i < BK_ARRAY_LEN(types); i++)
		if (strcmp(types[i].name, name) == 0)
			return types[i].type;
	return 0;
}

/* --- Messages --- */

int bk_proto_msg_encode(uint8_t *out, size_t cap, size_t *out_len, const bk_proto_msg *m)
{
	if (out_len)
		*out_len = 0;
	if (out == NULL || out_len == NULL || m == NULL)
		return bk__error_set(BK_EINVALID, NULL, "message: nothing to encode");
	int body = bk_proto_type_body(m->type);
	if (body == BK_PROTO_BODY_UNKNOWN)
		return bk__error_set(BK_EINVALID, "unknown-message-type",
				     "message: unknown type 0x%02x", m->type);
	const char *name = bk_proto_type_name(m->type);
	size_t limit = cap < BK_PROTO_MSG_MAX ? cap : BK_PROTO_MSG_MAX;
	if (limit < BK_PROTO_HEADER_LEN)
		return bk__error_set(BK_ENOSPACE, "message-too-large",
				     "%s: no room for the message header", name);
	size_t room = limit - BK_PROTO_HEADER_LEN;
	size_t n = 0;
	out[0] = m->type;
	bk_put_u32be(out + 1, m->id);
	if (body == BK_PROTO_BODY_JSON) {
		if (m->json != NULL) {
			if (!json_is_object(m->json))
				return bk__error_set(BK_EINVALID, "json-not-object",
						     "%s: the body must be a JSON object", name);
			n = json_dumpb(m->json, (char *)out + BK_PROTO_HEADER_LEN, room,
				       JSON_COMPACT);
			if (n == 0)
				return bk__error_set(BK_EINVALID, "bad-json",
						     "%s: the body cannot be encoded as JSON",
						     name);
			if (n > room)
				return bk__error_set(BK_ENOSPACE, "message-too-large",
						     "%s: JSON body of %zu bytes is over the "
						     "%zu-byte limit",
						     name, n, room);
		}
	} else {
		if (m->data == NULL && m->data_len > 0)
			return bk__error_set(BK_EINVALID, NULL, "%s: no data given", name);
		if (room < BK_PROTO_DATA_HEADER_LEN ||
		    m->data_len > room - BK_PROTO_DATA_HEADER_LEN)
			return bk__error_set(BK_ENOSPACE, "message-too-large",
					     "%s: %zu data bytes are over the %zu-byte limit", name,
					     m->data_len,
					     room < BK_PROTO_DATA_HEADER_LEN
						     ? 0
						     : room - BK_PROTO_DATA_HEADER_LEN);
		if (m->offset > (uint64_t)INT64_MAX - m->data_len)
			return bk__error_set(BK_EINVALID, "bad-offset",
					     "%s: offset %llu is out of range", name,
					     (unsigned long long)m->offset);
		bk_put_u64be(out + BK_PROTO_HEADER_LEN, m->offset);
		if (m->data_len)
			memcpy(out + BK_PROTO_HEADER_LEN + BK_PROTO_DATA_HEADER_LEN, m->data,
			       m->data_len);
		n = BK_PROTO_DATA_HEADER_LEN + m->data_len;
	}
	*out_len = BK_PROTO_HEADER_LEN + n;
	return 0;
}

int bk_proto_msg_decode(bk_proto_msg *out, const uint8_t *buf, size_t len)
{
	bk_cur c;
	const uint8_t *body;
	size_t body_len;
	int rc = 0;
	if (out == NULL || (buf == NULL && len > 0))
		return bk__error_set(BK_EINVALID, NULL, "message: nothing to decode");
	memset(out, 0, sizeof(*out));
	bk_cur_init(&c, buf, len);
	if (bk_cur_u8(&c, &out->type) != 0 || bk_cur_u32be(&c, &out->id) != 0)
		return bk__error_set(BK_EFORMAT, "message-truncated",
				     "message: %zu bytes, shorter than the %d-byte header", len,
				     BK_PROTO_HEADER_LEN);
	const char *name = bk_proto_type_name(out->type);
	if (name == NULL)
		return bk__error_set(BK_EFORMAT, "unknown-message-type",
				     "message %u: unknown type 0x%02x", out->id, out->type);
	if (len > BK_PROTO_MSG_MAX)
		return bk__error_set(BK_EFORMAT, "message-too-large",
				     "%s %u: %zu bytes is over the %d-byte limit", name, out->id,
				     len, BK_PROTO_MSG_MAX);
	if (bk_proto_type_body(out->type) == BK_PROTO_BODY_DATA) {
		if (bk_cur_u64be(&c, &out->offset) != 0)
			return bk__error_set(BK_EFORMAT, "data-truncated",
					     "%s %u: body too short for the offset", name, out->id);
		bk_cur_rest(&c, &body, &body_len);
		if (out->offset > (uint64_t)INT64_MAX - body_len)
			return bk__error_set(BK_EFORMAT, "bad-offset",
					     "%s %u: offset %llu is out of range", name, out->id,
					     (unsigned long long)out->offset);
		out->data = body;
		out->data_len = body_len;
		return 0;
	}
	bk_cur_rest(&c, &body, &body_len);
	if (body_len == 0) {
		out->json = json_object();
		if (out->json == NULL)
			rc = bk__error_oom();
		goto done;
	}
	json_error_t jerr;
	out->json = json_loadb((const char *)body, body_len, JSON_REJECT_DUPLICATES, &jerr);
	if (out->json == NULL) {
		/* jerr.text may quote the input: give only the position. */
		rc = bk__error_set(BK_EFORMAT, "bad-json", "%s %u: invalid JSON body at byte %d",
				   name, out->id, jerr.position);
		goto done;
	}
	if (!json_is_object(out->json)) {
		rc = bk__error_set(BK_EFORMAT, "json-not-object",
				   "%s %u: the JSON body is not an object", name, out->id);
		goto done;
	}
done:
	if (rc) {
		json_decref(out->json);
		out->json = NULL;
	}
	return rc;
}

void bk_proto_msg_clear(bk_proto_msg *m)
{
	if (m == NULL)
		return;
	json_decref(m->json);
	memset(m, 0, sizeof(*m));
}

/* --- Errors --- */

#define REASON_MAX 63
#define MESSAGE_MAX 480

/* A reason is 1-63 characters of [a-z0-9-]. */
static bool valid_reason(const char *r)
{
	size_t n = 0;
	if (r == NULL || *r == '\0')
		return false;
	for (; r[n]; n++) {
		char ch = r[n];
		if (n >= REASON_MAX)
			return false;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-'))
			return false;
	}
	return true;
}

/* Length of the valid UTF-8 sequence at `p` (at most `left` bytes), 0 if
 * there is none. */
static size_t utf8_len(const uint8_t *p, size_t left)
{
	uint32_t cp;
	size_t n;
	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		n = 2;
		cp = p[0] & 0x1f;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 3;
		cp = p[0] & 0x0f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	if (left < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* Copies `in` into `out` as one line of valid UTF-8: control characters become
 * spaces, invalid bytes '?', cut (at a character boundary) to fit. */
static void clean_line(char *out, size_t out_size, const char *in)
{
	const uint8_t *p = (const uint8_t *)in;
	size_t left = strlen(in), o = 0;
	while (left > 0) {
		size_t n = utf8_len(p, left);
		if (n == 0 || (n == 1 && (*p < 0x20 || *p == 0x7f))) {
			if (o + 1 >= out_size)
				break;
			out[o++] = n == 0 ? '?' : ' ';
			n = n ? n : 1;
		} else {
			if (o + n >= out_size)
				break;
			memcpy(out + o, p, n);
			o += n;
		}
		p += n;
		left -= n;
	}
	out[o] = '\0';
}

int bk_proto_error_code(const char *name)
{
	if (name == NULL)
		return 0;
	/* Codes are only appended, so walk down until the names run out. */
	for (int code = BK_ERROR; code >= -64; code--) {
		const char *n = bk_error_code_name(code);
		if (code != BK_ERROR && strcmp(n, "error") == 0)
			break;
		if (strcmp(n, name) == 0)
			return code;
	}
	return 0;
}

int bk_proto_error_encode(json_t **out, int code, const char *reason, const char *message)
{
	char line[MESSAGE_MAX];
	if (out == NULL)
		return bk__error_set(BK_EINVALID, NULL, "error body: no output given");
	*out = NULL;
	if (code >= 0)
		return bk__error_set(BK_EINVALID, NULL, "error body: %d is not an error code",
				     code);
	if (!valid_reason(reason))
		reason = bk_error_code_name(code);
	clean_line(line, sizeof(line), message ? message : bk_strerror(code));
	json_t *j = json_pack("{s:s, s:s, s:s}", "code", bk_error_code_name(code), "reason",
			      reason, "message", line);
	if (j == NULL)
		return bk__error_oom();
	*out = j;
	return 0;
}

int bk_proto_error_from_last(json_t **out)
{
	const bk_error *e = bk_error_last();
	int code = e->code < 0 ? e->code : BK_ERROR;
	return bk_proto_error_encode(out, code, e->reason, e->message);
}

int bk_proto_error_decode(const json_t *body)
{
	/* The peer's reason lives here until this thread decodes the next error
	 * body, which also replaces the last error pointing at it. */
	static _Thread_local char remote_reason[REASON_MAX + 1];
	char line[MESSAGE_MAX];
	const char *code_name = NULL, *reason = NULL, *message = NULL;
	if (!json_is_object(body))
		return bk__error_set(BK_EFORMAT, "bad-error-body",
				     "error body: not a JSON object");
	code_name = json_string_value(json_object_get(body, "code"));
	if (code_name == NULL)
		return bk__error_set(BK_EFORMAT, "bad-error-body",
				     "error body: no \"code\" string");
	json_t *r = json_object_get(body, "reason");
	json_t *m = json_object_get(body, "message");
	if ((r && !json_is_string(r)) || (m && !json_is_string(m)))
		return bk__error_set(BK_EFORMAT, "bad-error-body",
				     "error body: \"reason\" and \"message\" must be strings");
	reason = json_string_value(r);
	message = json_string_value(m);
	int code = bk_proto_error_code(code_name);
	if (code >= 0)
		code = BK_ERROR; /* unknown, or "ok" in an error */
	const char *use_reason = bk_error_code_name(code);
	if (valid_reason(reason)) {
		bk_strlcpy(remote_reason, reason, sizeof(remote_reason));
		use_reason = remote_reason;
	}
	clean_line(line, sizeof(line), message ? message : bk_strerror(code));
	return bk__error_set(code, use_reason, "%s", line);
}

/* --- HELLO --- */

static int check_protocol(const json_t *body, const char *what)
{
	if (!json_is_object(body))
		return bk__error_set(BK_EFORMAT, "bad-hello", "%s: not a JSON object", what);
	const char *p = json_string_value(json_object_get(body, "protocol"));
	if (p == NULL)
		return bk__error_set(BK_EFORMAT, "bad-hello", "%s: no \"protocol\" string", what);
	if (strcmp(p, BK_PROTO_NAME) != 0)
		return bk__error_set(BK_EINCOMPAT, "wrong-protocol",
				     "%s: the peer speaks another protocol", what);
	return 0;
}

int bk_proto_hello_offer(json_t **out)
{
	if (out == NULL)
		return bk__error_set(BK_EINVALID, NULL, "hello: no output given");
	*out = json_pack("{s:s, s:[i]}", "protocol", BK_PROTO_NAME, "versions",
			 (int)BK_PROTO_VERSION);
	return *out ? 0 : bk__error_oom();
}

int bk_proto_hello_select(const json_t *offer, uint32_t min, uint32_t max, uint32_t *out_version)
{
	if (out_version == NULL)
		return bk__error_set(BK_EINVALID, NULL, "hello: no output given");
	*out_version = 0;
	int rc = check_protocol(offer, "hello");
	if (rc)
		return rc;
	json_t *list = json_object_get(offer, "versions");
	size_t count = json_array_size(list);
	if (!json_is_array(list) || count == 0 || count > 64)
		return bk__error_set(BK_EFORMAT, "bad-hello",
				     "hello: \"versions\" must list 1 to 64 versions");
	uint32_t best = 0;
	for (size_t i = 0; i < count; i++) {
		json_t *v = json_array_get(list, i);
		json_int_t n = json_integer_value(v);
		if (!json_is_integer(v) || n < 1 || n > UINT32_MAX)
			return bk__error_set(BK_EFORMAT, "bad-hello",
					     "hello: a version is not a positive integer");
		if ((uint32_t)n >= min && (uint32_t)n <= max && (uint32_t)n > best)
			best = (uint32_t)n;
	}
	if (best == 0)
		return bk__error_set(BK_EINCOMPAT, "no-common-version",
				     "hello: no offered protocol version in %u..%u", min, max);
	*out_version = best;
	return 0;
}

int bk_proto_hello_answer(json_t **out, uint32_t version)
{
	if (out == NULL)
		return bk__error_set(BK_EINVALID, NULL, "hello: no output given");
	*out = json_pack("{s:s, s:I}", "protocol", BK_PROTO_NAME, "version", (json_int_t)version);
	return *out ? 0 : bk__error_oom();
}

int bk_proto_hello_accept(const json_t *answer, uint32_t min, uint32_t max, uint32_t *out_version)
{
	if (out_version == NULL)
		return bk__error_set(BK_EINVALID, NULL, "hello: no output given");
	*out_version = 0;
	int rc = check_protocol(answer, "hello answer");
	if (rc)
		return rc;
	json_t *v = json_object_get(answer, "version");
	if (!json_is_integer(v))
		return bk__error_set(BK_EFORMAT, "bad-hello",
				     "hello answer: no \"version\" integer");
	json_int_t n = json_integer_value(v);
	if (n < (json_int_t)min || n > (json_int_t)max)
		return bk__error_set(BK_EINCOMPAT, "no-common-version",
				     "hello answer: version %lld is not one offered (%u..%u)",
				     (long long)n, min, max);
	*out_version = (uint32_t)n;
	return 0;
}
