/* Certificates, identity bundles, the terminal's keys and the cloud re-wrap
 * header swap, for the depot (libbackup/identity.h). */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sodium.h>

#include <libbackup/identity.h>

#include "crypto/age.h"
#include "crypto/cert.h"
#include "libbackup/util/util.h"

/* The longest age header accepted from the cloud or in a downloaded file. */
#define HEADER_MAX (256u << 10)

void bk_identity_cert_clear(bk_identity_cert *c)
{
	if (c == NULL)
		return;
	bk__free(c->bytes);
	bk__free(c->subject);
	bk__free(c->model);
	bk__free(c->hw_revision);
	bk__free(c->device_id);
	bk__free(c->owner);
	bk__free(c->old_serial);
	bk__free(c->age_recipient);
	memset(c, 0, sizeof(*c));
}

static int dup_opt(char **out, const char *s)
{
	*out = NULL;
	if (s == NULL)
		return 0;
	*out = bk__strdup(s);
	return *out ? 0 : bk__error_oom();
}

/* Fills `out` from a parsed certificate. */
static int describe(bk_identity_cert *out, const bk_cert *cert)
{
	size_t n;
	const uint8_t *b = bk_cert_bytes(cert, &n);
	uint8_t fp[32];
	int rc;
	memset(out, 0, sizeof(*out));
	out->bytes = bk__malloc(n ? n : 1);
	if (out->bytes == NULL) {
		rc = bk__error_oom();
		goto done;
	}
	memcpy(out->bytes, b, n);
	out->len = n;
	out->role = bk_cert_role_name(bk_cert_role_get(cert));
	const char *subject = bk_cert_role_get(cert) == BK_CERT_ROLE_TERMINAL
	                          ? bk_cert_terminal_id(cert)
	                          : bk_cert_serial(cert);
	if ((rc = dup_opt(&out->subject, subject)) ||
	    (rc = dup_opt(&out->model, bk_cert_model(cert))) ||
	    (rc = dup_opt(&out->hw_revision, bk_cert_hw_revision(cert))) ||
	    (rc = dup_opt(&out->device_id, bk_cert_device_id(cert))) ||
	    (rc = dup_opt(&out->owner, bk_cert_owner_binding(cert))) ||
	    (rc = dup_opt(&out->old_serial, bk_cert_old_serial(cert))))
		goto done;
	const uint8_t *age = bk_cert_age_key(cert);
	if (age) {
		bk_age_recipient r;
		memcpy(r.public_key, age, sizeof(r.public_key));
		out->age_recipient = bk__malloc(BK_AGE_RECIPIENT_STR_SIZE);
		if (out->age_recipient == NULL) {
			rc = bk__error_oom();
			goto done;
		}
		bk_age_recipient_format(out->age_recipient, &r);
	}
	bk_cert_fingerprint(cert, fp);
	bk_hex_encode(out->fingerprint, fp, sizeof(fp));
	bk_minisign_key_id_hex(out->issuer, bk_cert_issuer_key_id(cert));
	out->issued = bk_cert_issued(cert);
	out->not_before = bk_cert_not_before(cert);
	out->not_after = bk_cert_not_after(cert);
done:
	if (rc)
		bk_identity_cert_clear(out);
	return rc;
}

int bk_identity_cert_parse(bk_identity_cert *out, const uint8_t *data, size_t len)
{
	bk_cert *cert = NULL;
	if (out == NULL || (data == NULL && len))
		return bk__error_set(BK_EINVALID, NULL, "certificate: missing argument");
	memset(out, 0, sizeof(*out));
	int rc = bk_cert_parse(&cert, data, len);
	if (rc == 0)
		rc = describe(out, cert);
	bk_cert_free(cert);
	return rc;
}

int bk_identity_cert_load(bk_identity_cert *out, const char *path)
{
	bk_cert *cert = NULL;
	if (out == NULL || path == NULL)
		return bk__error_set(BK_EINVALID, NULL, "certificate: no path");
	memset(out, 0, sizeof(*out));
	int rc = bk_cert_read(&cert, path);
	if (rc == 0)
		rc = describe(out, cert);
	bk_cert_free(cert);
	return rc;
}

static int role_of(const char *name, bk_cert_role *out)
{
	static const bk_cert_role roles[] = {BK_CERT_ROLE_UNIT, BK_CERT_ROLE_TERMINAL,
	                                     BK_CERT_ROLE_IDENTITY};
	for (size_t i = 0; name && i < BK_ARRAY_LEN(roles); i++)
		if (strcmp(bk_cert_role_name(roles[i]), name) == 0) {
			*out = roles[i];
			return 0;
		}
	return bk__error_set(BK_EINVALID, NULL, "certificate: unknown role '%s'",
	                     name ? name : "(none)");
}

/* Verifies a parsed certificate against the CA in `ca_path`. */
static int verify_cert(const bk_cert *cert, const char *ca_path, bk_cert_role role)
{
	bk_minisign_pubkey ca;
	int rc = bk_minisign_pubkey_read(&ca, ca_path);
	if (rc)
		return rc;
	return bk_cert_verify(cert, &ca, 1, role, (int64_t)time(NULL));
}

int bk_identity_cert_verify(const bk_identity_cert *c, const char *ca_path, const char *role)
{
	bk_cert *cert = NULL;
	bk_cert_role r = BK_CERT_ROLE_UNIT;
	int rc;
	if (c == NULL || c->bytes == NULL || ca_path == NULL)
		return bk__error_set(BK_EINVALID, NULL, "certificate: missing argument");
	if ((rc = role_of(role, &r)))
		return rc;
	rc = bk_cert_parse(&cert, c->bytes, c->len);
	if (rc == 0)
		rc = verify_cert(cert, ca_path, r);
	bk_cert_free(cert);
	return rc;
}

static int field_check(const char *what, const char *got, const char *want)
{
	if (want == NULL)
		return 0;
	if (got == NULL || strcmp(got, want) != 0)
		return bk__error_set(BK_EVERIFY, "bundle-mismatch",
		                     "identity bundle: %s is '%s', the service said '%s'", what,
		                     got ? got : "(none)", want);
	return 0;
}

static int key_check(const char *what, const uint8_t *bundle_key, const uint8_t *unit_key)
{
	if (bundle_key == NULL)
		return 0;
	if (unit_key == NULL || sodium_memcmp(bundle_key, unit_key, BK_CERT_KEY_LEN) != 0)
		return bk__error_set(BK_EVERIFY, "bundle-mismatch",
		                     "identity bundle: its %s key is not the replacement unit's",
		                     what);
	return 0;
}

int bk_identity_bundle_verify(bk_identity_cert *out, const uint8_t *bundle, size_t len,
                              const char *service_ca, const char *new_serial, const char *device_id,
                              const char *owner, const char *old_serial,
                              const bk_identity_cert *unit)
{
	bk_cert *cert = NULL, *ucert = NULL;
	int rc;
	if (out)
		memset(out, 0, sizeof(*out));
	if (bundle == NULL || service_ca == NULL || new_serial == NULL || device_id == NULL)
		return bk__error_set(BK_EINVALID, NULL, "identity bundle: missing argument");
	if ((rc = bk_cert_parse(&cert, bundle, len))) {
		bk__error_prefix(rc, "identity bundle");
		goto done;
	}
	if ((rc = verify_cert(cert, service_ca, BK_CERT_ROLE_IDENTITY))) {
		bk__error_prefix(rc, "identity bundle");
		goto done;
	}
	if ((rc = field_check("serial", bk_cert_serial(cert), new_serial)) ||
	    (rc = field_check("device id", bk_cert_device_id(cert), device_id)) ||
	    (rc = field_check("owner binding", bk_cert_owner_binding(cert), owner)) ||
	    (rc = field_check("old serial", bk_cert_old_serial(cert), old_serial)))
		goto done;
	if (unit) {
		if ((rc = bk_cert_parse(&ucert, unit->bytes, unit->len)))
			goto done;
		if ((rc = field_check("unit serial", bk_cert_serial(ucert), new_serial)) ||
		    (rc = key_check("Noise", bk_cert_noise_key(cert), bk_cert_noise_key(ucert))) ||
		    (rc = key_check("age", bk_cert_age_key(cert), bk_cert_age_key(ucert))) ||
		    (rc = key_check("Ed25519", bk_cert_ed25519_key(cert),
		                    bk_cert_ed25519_key(ucert))))
			goto done;
	}
	if (out)
		rc = describe(out, cert);
done:
	bk_cert_free(ucert);
	bk_cert_free(cert);
	return rc;
}

/* --- The terminal's keys ---------------------------------------------------- */

int bk_identity_terminal_key_ensure(const char *path, bk_identity_terminal_keys *out,
                                    int *out_created)
{
	bk_keyfile *k = NULL;
	struct stat st;
	int rc, created = 0;
	if (path == NULL || out == NULL)
		return bk__error_set(BK_EINVALID, NULL, "terminal key: missing argument");
	memset(out, 0, sizeof(*out));
	if (out_created)
		*out_created = 0;
	if (lstat(path, &st) != 0) {
		if (errno != ENOENT)
			return bk__error_errno(errno, "%s", path);
		char *dir = bk_path_dirname(path);
		if (dir == NULL)
			return bk__error_oom();
		rc = bk_mkdir_p(dir, 0700);
		bk__free(dir);
		if (rc)
			return rc;
		if ((rc = bk_keyfile_generate(&k, 1)) || (rc = bk_keyfile_write(path, k)))
			goto done;
		created = 1;
	} else if ((rc = bk_keyfile_read(&k, path))) {
		goto done;
	}
	memcpy(out->noise, bk_keyfile_noise_public(k), 32);
	memcpy(out->sign, bk_keyfile_ed25519_public(k), 32);
	if (bk_keyfile_age_public(k)) {
		memcpy(out->age, bk_keyfile_age_public(k), 32);
		out->has_age = 1;
	}
	if (out_created)
		*out_created = created;
done:
	bk_keyfile_free(k);
	return rc;
}

int bk_identity_terminal_cert_check(const bk_identity_cert *c,
                                    const bk_identity_terminal_keys *keys, const char *terminal_id,
                                    const char *service_ca)
{
	bk_cert *cert = NULL;
	int rc;
	if (c == NULL || c->bytes == NULL || keys == NULL)
		return bk__error_set(BK_EINVALID, NULL, "terminal certificate: missing argument");
	if ((rc = bk_cert_parse(&cert, c->bytes, c->len)))
		goto done;
	if (bk_cert_role_get(cert) != BK_CERT_ROLE_TERMINAL) {
		rc = bk__error_set(BK_EAUTH, "wrong-role",
		                   "certificate of %s is a %s certificate, not "
		                   "a terminal certificate",
		                   c->subject ? c->subject : "?", c->role);
		goto done;
	}
	if ((rc = bk_cert_check_noise_key(cert, keys->noise)) ||
	    (rc = bk_cert_check_ed25519_key(cert, keys->sign)))
		goto done;
	if (terminal_id && (rc = bk_cert_check_subject(cert, terminal_id)))
		goto done;
	if (service_ca)
		rc = verify_cert(cert, service_ca, BK_CERT_ROLE_TERMINAL);
done:
	bk_cert_free(cert);
	return rc;
}

int bk_identity_cert_save(const char *path, const bk_identity_cert *c)
{
	bk_cert *cert = NULL;
	if (path == NULL || c == NULL || c->bytes == NULL)
		return bk__error_set(BK_EINVALID, NULL, "certificate: missing argument");
	int rc = bk_cert_parse(&cert, c->bytes, c->len);
	if (rc == 0)
		rc = bk_cert_write(path, cert);
	bk_cert_free(cert);
	return rc;
}

/* --- Cloud re-wrapping ------------------------------------------------------ */

int bk_identity_age_header_check(const uint8_t *hdr, size_t len)
{
	size_t n = 0;
	if (hdr == NULL || len == 0 || len > HEADER_MAX)
		return bk__error_set(BK_EFORMAT, "header-malformed",
		                     "re-wrapped header: %zu bytes is not an age header", len);
	int rc = bk_age_header_parse(&n, hdr, len, NULL);
	if (rc)
		return rc;
	if (n != len)
		return bk__error_set(BK_EFORMAT, "header-malformed",
		                     "re-wrapped header: %zu bytes follow the header", len - n);
	return 0;
}

int bk_identity_age_file_check(const char *path, uint64_t *out_header_len)
{
	bk_stream *in = NULL;
	uint8_t *hdr = NULL;
	size_t len = 0;
	if (out_header_len)
		*out_header_len = 0;
	int rc = bk_stream_file_open(&in, path);
	if (rc == 0)
		rc = bk_age_header_read(&hdr, &len, in, NULL, BK_DEADLINE_NONE);
	if (rc)
		bk__error_prefix(rc, "%s", path);
	else if (out_header_len)
		*out_header_len = len;
	bk__free(hdr);
	bk_stream_free(in);
	return rc;
}

typedef struct swap_stream {
	bk_stream base;
	uint8_t *header; /* the new header */
	size_t header_len;
	bk_buf old; /* the old header while it is being written */
	uint64_t old_len;
	int swapped; /* the new header went out; bytes now pass through */
} swap_stream;

/* The end of the header in `data` (just after the "--- MAC" line), or 0
 * when that line is not complete yet. Stanza bodies are base64, so the
 * first line starting with "---" is the MAC line. */
static size_t header_end(const uint8_t *data, size_t len)
{
	for (size_t i = 0; i + 4 <= len; i++) {
		if ((i == 0 || data[i - 1] == '\n') && memcmp(data + i, "---", 3) == 0) {
			const uint8_t *nl = memchr(data + i, '\n', len - i);
			return nl ? (size_t)(nl - data) + 1 : 0;
		}
	}
	return 0;
}

static int swap_write(bk_stream *s, const void *buf, size_t len, bk_deadline d)
{
	swap_stream *w = (swap_stream *)s;
	if (w->swapped)
		return bk_stream_write(s->next, buf, len, d);
	int rc = bk_buf_put(&w->old, buf, len);
	if (rc)
		return rc;
	/* The header is small: search the whole buffer, so that a "---" split
	 * across writes is found at the start of its line. */
	size_t end = header_end(w->old.data, w->old.len);
	if (end == 0) {
		if (w->old.len > HEADER_MAX)
			return bk__error_set(BK_EFORMAT, "header-malformed",
			                     "backup: no age header in the first %u bytes",
			                     HEADER_MAX);
		return 0;
	}
	size_t n = 0;
	if ((rc = bk_age_header_parse(&n, w->old.data, end, NULL)))
		return bk__error_prefix(rc, "backup");
	if (n != end)
		return bk__error_set(BK_EFORMAT, "header-malformed",
		                     "backup: the age header does not end where expected");
	w->old_len = end;
	w->swapped = 1;
	if ((rc = bk_stream_write(s->next, w->header, w->header_len, d)))
		return rc;
	if (w->old.len > end &&
	    (rc = bk_stream_write(s->next, w->old.data + end, w->old.len - end, d)))
		return rc;
	bk_buf_free(&w->old);
	return 0;
}

static int swap_finish(bk_stream *s, bk_deadline d)
{
	swap_stream *w = (swap_stream *)s;
	BK_UNUSED(d);
	if (!w->swapped)
		return bk__error_set(BK_EFORMAT, "header-malformed",
		                     "backup: ended after %zu bytes, before its age header did",
		                     w->old.len);
	return 0;
}

static void swap_release(bk_stream *s)
{
	swap_stream *w = (swap_stream *)s;
	bk__free(w->header);
	bk_buf_free(&w->old);
	bk__free(w);
}

static const bk_stream_ops swap_ops = {
    .version = BK_STREAM_OPS_VERSION,
    .name = "header-swap",
    .write = swap_write,
    .finish = swap_finish,
    .release = swap_release,
};

int bk_identity_header_swap_new(bk_stream **out, bk_stream *next, int own_next,
                                const uint8_t *header, size_t header_len)
{
	swap_stream *w = NULL;
	int rc;
	if (out == NULL || next == NULL || header == NULL)
		return bk__error_set(BK_EINVALID, NULL, "header swap: missing argument");
	*out = NULL;
	if ((rc = bk_identity_age_header_check(header, header_len)))
		return rc;
	w = bk__calloc(1, sizeof(*w));
	if (w == NULL)
		return bk__error_oom();
	w->header = bk__malloc(header_len);
	if (w->header == NULL) {
		bk__free(w);
		return bk__error_oom();
	}
	memcpy(w->header, header, header_len);
	w->header_len = header_len;
	w->base.ops = &swap_ops;
	w->base.next = next;
	w->base.owns_next = own_next;
	*out = &w->base;
	return 0;
}

uint64_t bk_identity_header_swap_old_len(bk_stream *s)
{
	if (s == NULL || s->ops != &swap_ops)
		return 0;
	return ((swap_stream *)s)->old_len;
}
