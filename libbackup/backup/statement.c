/* Signed statements (aibo-statement/1): canonical JSON, strictly parsed,
 * signed with the producer's Ed25519 key. */
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

#include "libbackup/backup/backup_internal.h"

#define STR_MAX  128
#define SKEW_MAX 86400 /* a statement may be dated at most a day ahead */

struct bk_statement {
	uint8_t *bytes;
	size_t len;
	char backup_id[37];
	char serial[STR_MAX + 1];
	char model[STR_MAX + 1];
	char hw_revision[STR_MAX + 1];
	char fw_version[STR_MAX + 1];
	uint64_t schema;
	char created[21];
	int64_t created_unix;
	uint64_t plaintext_size;
	uint64_t payload_size;
	uint8_t payload_digest[BK_BACKUP_DIGEST_LEN];
	uint8_t manifest_digest[BK_BACKUP_DIGEST_LEN];
	char payload_hex[BK_BACKUP_HEX_DIGEST];
	char manifest_hex[BK_BACKUP_HEX_DIGEST];
	char fingerprint_hex[BK_BACKUP_HEX_DIGEST];
	bk_cert *cert;
	uint8_t signature[crypto_sign_BYTES];
};

static int invalid(const char *fmt, const char *detail)
{
	return bk__error_set(BK_EVERIFY, "statement-invalid", fmt, detail);
}

static bool valid_text(const char *s, bool may_be_empty)
{
	size_t n = strlen(s);
	if (n > STR_MAX || (n == 0 && !may_be_empty))
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
			return false;
	}
	return true;
}

/* The canonical encoding: keys in byte-wise order, no white space, strings
 * without escapes, integers in decimal. `sig` NULL: the signed bytes. */
static int encode(bk_buf *b, const bk_statement_info *in, const uint8_t *cert, size_t cert_len,
		  const uint8_t *sig)
{
	char created[21], ph[BK_BACKUP_HEX_DIGEST], mh[BK_BACKUP_HEX_DIGEST];
	char *cert64 = NULL;
	char sig64[sodium_base64_ENCODED_LEN(crypto_sign_BYTES, sodium_base64_VARIANT_ORIGINAL)];
	size_t c64 = sodium_base64_ENCODED_LEN(cert_len, sodium_base64_VARIANT_ORIGINAL);
	int rc;
	cert64 = bk__malloc(c64);
	if (cert64 == NULL)
		return BK_ENOMEM;
	sodium_bin2base64(cert64, c64, cert, cert_len, sodium_base64_VARIANT_ORIGINAL);
	bk_time_rfc3339(created, in->created);
	bk_hex_encode(ph, in->payload_digest, BK_BACKUP_DIGEST_LEN);
	bk_hex_encode(mh, in->manifest_digest, BK_BACKUP_DIGEST_LEN);
	rc = bk_buf_printf(b,
			   "{\"backup_id\":\"%s\",\"certificate\":\"%s\",\"created\":\"%s\","
			   "\"firmware_version\":\"%s\",\"format\":\"" BK_STATEMENT_FORMAT "\","
			   "\"hardware_revision\":\"%s\",\"manifest_blake2b\":\"%s\",\"model\":\"%s\","
			   "\"payload_blake2b\":\"%s\",\"payload_size\":%llu,\"plaintext_size\":%llu,"
			   "\"schema_version\":%llu,\"serial\":\"%s\"",
			   in->backup_id, cert64, created, in->firmware_version,
			   in->hardware_revision ? in->hardware_revision : "", mh, in->model, ph,
			   (unsigned long long)in->payload_size,
			   (unsigned long long)in->plaintext_size,
			   (unsigned long long)in->schema_version, in->serial);
	if (rc == 0 && sig) {
		sodium_bin2base64(sig64, sizeof(sig64), sig, crypto_sign_BYTES,
				  sodium_base64_VARIANT_ORIGINAL);
		rc = bk_buf_printf(b, ",\"signature\":\"%s\"}\n", sig64);
	} else if (rc == 0) {
		rc = bk_buf_put_str(b, "}");
	}
	bk__free(cert64);
	return rc;
}

static int check_info(const bk_statement_info *in)
{
	if (in->backup_id == NULL || !bk_backup__valid_id(in->backup_id))
		return invalid("statement: backup id is not a lower-case UUID%s", "");
	const char *names[] = {"serial", "model", "firmware_version", "hardware_revision"};
	const char *vals[] = {in->serial, in->model, in->firmware_version,
			      in->hardware_revision ? in->hardware_revision : ""};
	for (size_t i = 0; i < BK_ARRAY_LEN(names); i++)
		if (vals[i] == NULL || !valid_text(vals[i], i == 3))
			return invalid("statement: %s is missing, too long or not printable ASCII",
				       names[i]);
	if (in->created <= 0 || in->created > (int64_t)253402300799)
		return invalid("statement: creation time out of range%s", "");
	if (in->schema_version > INT64_MAX || in->plaintext_size > INT64_MAX ||
	    in->payload_size > INT64_MAX)
		return invalid("statement: a number is out of range%s", "");
	return 0;
}

int bk_statement_sign(uint8_t **out, size_t *out_len, const bk_statement_info *info,
		      const bk_cert *producer, const uint8_t ed25519_sk[64])
{
	bk_buf b = BK_BUF_INIT;
	uint8_t sig[crypto_sign_BYTES];
	size_t cert_len = 0;
	const uint8_t *cert;
	int rc;
	*out = NULL;
	*out_len = 0;
	if (info == NULL || producer == NULL || ed25519_sk == NULL)
		return bk__error_set(BK_EINVALID, NULL, "statement: nothing to sign");
	if ((rc = check_info(info))) {
		char msg[256];
		bk_strlcpy(msg, bk_error_last()->message, sizeof(msg));
		return bk__error_set(BK_EINVALID, "statement-invalid", "%s", msg);
	}
	bk_cert_role role = bk_cert_role_get(producer);
	if (role != BK_CERT_ROLE_UNIT && role != BK_CERT_ROLE_TERMINAL)
		return bk__error_set(BK_EINVALID, "wrong-role",
				     "statement: the producer must be a unit or a terminal");
	if ((rc = bk_cert_check_ed25519_key(producer, ed25519_sk + 32)))
		return rc;
	cert = bk_cert_bytes(producer, &cert_len);
	if ((rc = encode(&b, info, cert, cert_len, NULL)))
		goto done;
	crypto_sign_detached(sig, NULL, b.data, b.len, ed25519_sk);
	bk_buf_reset(&b);
	if ((rc = encode(&b, info, cert, cert_len, sig)))
		goto done;
	*out = bk_buf_steal(&b, out_len);
done:
	bk_buf_free(&b);
	return rc;
}

/* --- Parsing --- */

static const char *const keys[] = {
	"backup_id",	    "certificate",  "created",	      "firmware_version", "format",
	"hardware_revision", "manifest_blake2b", "model",   "payload_blake2b", "payload_size",
	"plaintext_size",    "schema_version", "serial",   "signature",
};

static int get_str(json_t *o, const char *key, char *dst, size_t cap, bool may_be_empty)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_string(v))
		return invalid("statement: '%s' missing or not a string", key);
	const char *s = json_string_value(v);
	if (strlen(s) != json_string_length(v) || strlen(s) >= cap ||
	    !valid_text(s, may_be_empty))
		return invalid("statement: '%s' is too long or not printable ASCII", key);
	memcpy(dst, s, strlen(s) + 1);
	return 0;
}

static int get_u64(json_t *o, const char *key, uint64_t *out)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return invalid("statement: '%s' missing or not a non-negative integer", key);
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int get_hex(json_t *o, const char *key, uint8_t out[BK_BACKUP_DIGEST_LEN])
{
	json_t *v = json_object_get(o, key);
	const char *s = json_is_string(v) ? json_string_value(v) : NULL;
	if (s == NULL || strlen(s) != 2 * BK_BACKUP_DIGEST_LEN)
		return invalid("statement: '%s' is not a 64-digit hex digest", key);
	for (const char *p = s; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return invalid("statement: '%s' is not lower-case hex", key);
	if (bk_hex_decode(out, BK_BACKUP_DIGEST_LEN, s))
		return invalid("statement: '%s' is not a 64-digit hex digest", key);
	return 0;
}

/* Strict base64 (standard alphabet, padded): decoded into a new buffer. */
static int get_b64(json_t *o, const char *key, uint8_t **out, size_t *out_len, size_t max)
{
	json_t *v = json_object_get(o, key);
	const char *s = json_is_string(v) ? json_string_value(v) : NULL;
	size_t n = s ? strlen(s) : 0;
	*out = NULL;
	if (s == NULL || n == 0 || n > 4 * ((max + 2) / 3))
		return invalid("statement: '%s' missing or not base64 of the right size", key);
	uint8_t *buf = bk__malloc(n);
	if (buf == NULL)
		return BK_ENOMEM;
	size_t len = 0;
	const char *end = NULL;
	if (sodium_base642bin(buf, n, s, n, NULL, &len, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    end != s + n || len > max) {
		bk__free(buf);
		return invalid("statement: '%s' is not canonical base64", key);
	}
	*out = buf;
	*out_len = len;
	return 0;
}

int bk_statement_parse(bk_statement **out, const void *data, size_t len)
{
	bk_statement *st = NULL;
	json_t *root = NULL;
	json_error_t jerr;
	uint8_t *cert = NULL, *sig = NULL;
	size_t cert_len = 0, sig_len = 0;
	bk_buf again = BK_BUF_INIT;
	char format[32];
	int rc = 0;
	if (out == NULL || (data == NULL && len > 0))
		return bk__error_set(BK_EINVALID, NULL, "statement: nothing to parse");
	*out = NULL;
	if (len == 0 || len > BK_STATEMENT_MAX)
		return invalid("statement: empty or larger than the limit%s", "");
	root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL || !json_is_object(root)) {
		rc = invalid("statement: not a JSON object%s", "");
		goto done;
	}
	if (json_object_size(root) != BK_ARRAY_LEN(keys)) {
		rc = invalid("statement: unexpected or missing fields%s", "");
		goto done;
	}
	for (size_t i = 0; i < BK_ARRAY_LEN(keys); i++)
		if (json_object_get(root, keys[i]) == NULL) {
			rc = invalid("statement: no '%s'", keys[i]);
			goto done;
		}
	st = bk__calloc(1, sizeof(*st));
	if (st == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	if ((rc = get_str(root, "format", format, sizeof(format), false)))
		goto done;
	if (strcmp(format, BK_STATEMENT_FORMAT) != 0) {
		rc = invalid("statement: format is not " BK_STATEMENT_FORMAT "%s", "");
		goto done;
	}
	if ((rc = get_str(root, "backup_id", st->backup_id, sizeof(st->backup_id), false)) ||
	    (rc = get_str(root, "serial", st->serial, sizeof(st->serial), false)) ||
	    (rc = get_str(root, "model", st->model, sizeof(st->model), false)) ||
	    (rc = get_str(root, "hardware_revision", st->hw_revision, sizeof(st->hw_revision),
			  true)) ||
	    (rc = get_str(root, "firmware_version", st->fw_version, sizeof(st->fw_version),
			  false)) ||
	    (rc = get_str(root, "created", st->created, sizeof(st->created), false)) ||
	    (rc = get_u64(root, "schema_version", &st->schema)) ||
	    (rc = get_u64(root, "plaintext_size", &st->plaintext_size)) ||
	    (rc = get_u64(root, "payload_size", &st->payload_size)) ||
	    (rc = get_hex(root, "payload_blake2b", st->payload_digest)) ||
	    (rc = get_hex(root, "manifest_blake2b", st->manifest_digest)) ||
	    (rc = get_b64(root, "certificate", &cert, &cert_len, BK_CERT_MAX)) ||
	    (rc = get_b64(root, "signature", &sig, &sig_len, crypto_sign_BYTES)))
		goto done;
	if (!bk_backup__valid_id(st->backup_id)) {
		rc = invalid("statement: backup id is not a lower-case UUID%s", "");
		goto done;
	}
	if (bk_time_parse_rfc3339(st->created, &st->created_unix) != 0) {
		rc = invalid("statement: 'created' is not an RFC 3339 UTC time%s", "");
		goto done;
	}
	if (sig_len != crypto_sign_BYTES) {
		rc = invalid("statement: the signature is not 64 bytes%s", "");
		goto done;
	}
	memcpy(st->signature, sig, sig_len);
	rc = bk_cert_parse(&st->cert, cert, cert_len);
	if (rc == BK_ENOMEM)
		goto done;
	if (rc != 0) {
		rc = invalid("statement: the producer's certificate is malformed%s", "");
		goto done;
	}
	/* Canonical: encoding what was read gives back exactly the input. */
	bk_statement_info info;
	bk_statement_info_get(st, &info);
	if ((rc = check_info(&info)))
		goto done;
	if ((rc = encode(&again, &info, cert, cert_len, st->signature)))
		goto done;
	if (again.len != len || memcmp(again.data, data, len) != 0) {
		rc = invalid("statement: not in canonical form%s", "");
		goto done;
	}
	st->bytes = bk_buf_steal(&again, &st->len);
	bk_hex_encode(st->payload_hex, st->payload_digest, BK_BACKUP_DIGEST_LEN);
	bk_hex_encode(st->manifest_hex, st->manifest_digest, BK_BACKUP_DIGEST_LEN);
	uint8_t fp[32];
	bk_cert_fingerprint(st->cert, fp);
	bk_hex_encode(st->fingerprint_hex, fp, sizeof(fp));
	*out = st;
	st = NULL;
done:
	bk_buf_free(&again);
	bk__free(cert);
	bk__free(sig);
	json_decref(root);
	bk_statement_free(st);
	return rc;
}

int bk_statement_read(bk_statement **out, const char *path)
{
	uint8_t *data = NULL;
	size_t len = 0;
	*out = NULL;
	int rc = bk_file_read(path, BK_STATEMENT_MAX, &data, &len);
	if (rc == BK_ENOTFOUND)
		return bk__error_set(BK_EVERIFY, "statement-missing", "%s: no statement", path);
	if (rc == BK_ENOSPACE)
		rc = invalid("statement: larger than the limit%s", "");
	if (rc == 0)
		rc = bk_statement_parse(out, data, len);
	bk__free(data);
	if (rc)
		bk__error_prefix(rc, "%s", path);
	return rc;
}

void bk_statement_free(bk_statement *st)
{
	if (st == NULL)
		return;
	bk_cert_free(st->cert);
	bk__free(st->bytes);
	bk__free(st);
}

void bk_statement_info_get(const bk_statement *st, bk_statement_info *out)
{
	memset(out, 0, sizeof(*out));
	out->backup_id = st->backup_id;
	out->serial = st->serial;
	out->model = st->model;
	out->hardware_revision = st->hw_revision;
	out->firmware_version = st->fw_version;
	out->schema_version = st->schema;
	out->created = st->created_unix;
	out->plaintext_size = st->plaintext_size;
	out->payload_size = st->payload_size;
	memcpy(out->payload_digest, st->payload_digest, BK_BACKUP_DIGEST_LEN);
	memcpy(out->manifest_digest, st->manifest_digest, BK_BACKUP_DIGEST_LEN);
}

const bk_cert *bk_statement_cert(const bk_statement *st)
{
	return st ? st->cert : NULL;
}

void bk_statement_get(const bk_statement *st, bk_statement_view *out)
{
	memset(out, 0, sizeof(*out));
	if (st == NULL)
		return;
	out->backup_id = st->backup_id;
	out->serial = st->serial;
	out->model = st->model;
	out->hardware_revision = st->hw_revision;
	out->firmware_version = st->fw_version;
	out->schema_version = st->schema;
	out->created = st->created;
	out->created_unix = st->created_unix;
	out->plaintext_size = st->plaintext_size;
	out->payload_size = st->payload_size;
	out->payload_digest = st->payload_hex;
	out->manifest_digest = st->manifest_hex;
	bk_cert_role role = bk_cert_role_get(st->cert);
	out->producer_role = bk_cert_role_name(role);
	out->producer = role == BK_CERT_ROLE_TERMINAL ? bk_cert_terminal_id(st->cert)
						      : bk_cert_serial(st->cert);
	out->certificate_fingerprint = st->fingerprint_hex;
}

const uint8_t *bk_statement_bytes(const bk_statement *st, size_t *out_len)
{
	*out_len = st ? st->len : 0;
	return st ? st->bytes : NULL;
}

/* --- Verification --- */

/* Turns a lower-level failure into "statement-invalid", keeping its message. */
static int wrap_failure(const char *what)
{
	char msg[512];
	bk_strlcpy(msg, bk_error_last()->message ? bk_error_last()->message : "failed", sizeof(msg));
	return bk__error_set(BK_EVERIFY, "statement-invalid", "statement: %s: %s", what, msg);
}

int bk_statement_verify_keys(const bk_statement *st, const bk_minisign_pubkey *factory_cas,
			     size_t nfactory, const bk_minisign_pubkey *service_cas,
			     size_t nservice, int64_t now)
{
	bk_buf msg = BK_BUF_INIT;
	size_t cert_len = 0;
	int rc;
	if (st == NULL)
		return bk__error_set(BK_EINVALID, NULL, "statement: nothing to verify");
	bk_cert_role role = bk_cert_role_get(st->cert);
	const bk_minisign_pubkey *cas = role == BK_CERT_ROLE_UNIT ? factory_cas : service_cas;
	size_t ncas = role == BK_CERT_ROLE_UNIT ? nfactory : nservice;
	if (role != BK_CERT_ROLE_UNIT && role != BK_CERT_ROLE_TERMINAL)
		return invalid("statement: the producer is neither a unit nor a terminal%s", "");
	if (ncas == 0)
		return invalid("statement: no %s configured to check the producer",
			       role == BK_CERT_ROLE_UNIT ? "factory CA (trust.factory_ca)"
							 : "service CA (trust.service_ca)");
	if (st->created_unix > now + SKEW_MAX)
		return invalid("statement: dated in the future%s", "");
	/* Backups outlive certificates: the certificate must have been valid
	 * when the statement was made. */
	if (bk_cert_verify(st->cert, cas, ncas, role, st->created_unix) != 0)
		return wrap_failure("producer certificate");
	if (role == BK_CERT_ROLE_UNIT && bk_cert_check_subject(st->cert, st->serial) != 0)
		return invalid("statement: serial %s is not the producing unit's", st->serial);
	bk_statement_info info;
	bk_statement_info_get(st, &info);
	const uint8_t *cert = bk_cert_bytes(st->cert, &cert_len);
	if ((rc = encode(&msg, &info, cert, cert_len, NULL)))
		goto done;
	const uint8_t *pk = bk_cert_ed25519_key(st->cert);
	if (pk == NULL || crypto_sign_verify_detached(st->signature, msg.data, msg.len, pk) != 0)
		rc = invalid("statement: the signature does not verify%s", "");
done:
	bk_buf_free(&msg);
	return rc;
}

int bk_backup__load_cas(const bk_config *cfg, const char *key, bk_minisign_pubkey *out,
			size_t *out_count)
{
	*out_count = 0;
	const char *path = cfg ? bk_config_get(cfg, key) : NULL;
	if (path == NULL || path[0] == '\0')
		return 0;
	int rc = bk_minisign_pubkey_read(out, path);
	if (rc)
		return bk__error_prefix(rc, "%s", key);
	*out_count = 1;
	return 0;
}

int bk_statement_verify(const bk_statement *st, const bk_config *cfg)
{
	bk_minisign_pubkey f, s;
	size_t nf = 0, ns = 0;
	int rc;
	if (st == NULL)
		return bk__error_set(BK_EINVALID, NULL, "statement: nothing to verify");
	if ((rc = bk_backup__load_cas(cfg, "trust.factory_ca", &f, &nf)) ||
	    (rc = bk_backup__load_cas(cfg, "trust.service_ca", &s, &ns)))
		return rc;
	return bk_statement_verify_keys(st, &f, nf, &s, ns, (int64_t)time(NULL));
}
