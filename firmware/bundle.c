/* Firmware bundles: reading (strict entry checks, streamed payload
 * digests), verification, and writing. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "firmware/firmware_internal.h"

#define CHUNK 65536

struct bk_fw_bundle {
	char *path;         /* NULL for a bundle in memory */
	const uint8_t *mem; /* borrowed */
	size_t mem_len;
	uint8_t *manifest;
	size_t manifest_len;
	uint8_t *sig;
	size_t sig_len;
	bk_fw_manifest *m;
	uint64_t payload_bytes;
	int sig_ok;
	char key_id[17];
};

static const char *bundle_name(const bk_fw_bundle *b)
{
	return b->path ? b->path : "bundle";
}

/* --- Reading entries ------------------------------------------------------------ */

static int archive_fail(const bk_fw_bundle *b, struct archive *a, int code, const char *reason,
                        const char *what)
{
	const char *msg = archive_error_string(a);
	return bk__error_set(code, reason, "%s: %s: %s", bundle_name(b), what,
	                     msg ? msg : "unreadable archive");
}

static int format_ok(struct archive *a)
{
	int f = archive_format(a);
	return f == ARCHIVE_FORMAT_TAR_USTAR || f == ARCHIVE_FORMAT_TAR_PAX_INTERCHANGE ||
	       f == ARCHIVE_FORMAT_TAR_PAX_RESTRICTED;
}

static int unsafe_name(const char *name)
{
	return name == NULL || name[0] == '\0' || name[0] == '/' || name[0] == '.' ||
	       strchr(name, '/') != NULL || strchr(name, '\\') != NULL;
}

/* Where an entry is expected: 0 the manifest, 1 the signature, 2 + i payload i,
 * 2 + payload_count the end. */
static int expected_name(const bk_fw_bundle *b, size_t pos, const char **out)
{
	if (pos == 0)
		*out = BK_FW_MANIFEST_NAME;
	else if (pos == 1)
		*out = BK_FW_SIGNATURE_NAME;
	else if (b->m && pos - 2 < b->m->payload_count)
		*out = b->m->payloads[pos - 2].name;
	else
		*out = NULL;
	return 0;
}

/* Explains why entry `name` at position `pos` is not the expected one. */
static int misplaced(const bk_fw_bundle *b, size_t pos, const char *name)
{
	const char *bn = bundle_name(b);
	if (unsafe_name(name))
		return bk__error_set(BK_EFORMAT, "unsafe-name", "%s: entry %zu has an unsafe name",
		                     bn, pos + 1);
	if (pos == 0)
		return bk__error_set(BK_EFORMAT, "manifest-not-first",
		                     "%s: the first entry is '%.64s', not " BK_FW_MANIFEST_NAME, bn,
		                     name);
	if (pos == 1)
		return bk__error_set(BK_EFORMAT, "signature-missing",
		                     "%s: the second entry is '%.64s', not " BK_FW_SIGNATURE_NAME,
		                     bn, name);
	if (strcmp(name, BK_FW_MANIFEST_NAME) == 0 || strcmp(name, BK_FW_SIGNATURE_NAME) == 0)
		return bk__error_set(BK_EFORMAT, "duplicate-entry", "%s: '%s' appears twice", bn,
		                     name);
	for (size_t i = 0; i < b->m->payload_count; i++) {
		if (strcmp(name, b->m->payloads[i].name) != 0)
			continue;
		if (i + 2 < pos)
			return bk__error_set(BK_EFORMAT, "duplicate-entry",
			                     "%s: payload '%s' appears twice", bn, name);
		return bk__error_set(BK_EFORMAT, "entry-out-of-order",
		                     "%s: payload '%s' is entry %zu, the manifest puts it at %zu",
		                     bn, name, pos + 1, i + 3);
	}
	return bk__error_set(BK_EFORMAT, "unexpected-entry",
	                     "%s: entry '%.64s' is not named by the manifest", bn, name);
}

/* Reads the next entry header and checks it is the one expected at `pos`
 * (NULL entry out at the expected end). */
static int next_entry(const bk_fw_bundle *b, struct archive *a, size_t pos,
                      struct archive_entry **out)
{
	const char *want, *name;
	struct archive_entry *e;
	*out = NULL;
	expected_name(b, pos, &want);
	int r = archive_read_next_header(a, &e);
	if (r == ARCHIVE_EOF) {
		if (want == NULL)
			return 0;
		if (pos < 2)
			return bk__error_set(BK_EFORMAT,
			                     pos == 0 ? "manifest-missing" : "signature-missing",
			                     "%s: ends before %s", bundle_name(b), want);
		return bk__error_set(BK_EFORMAT, "missing-entry", "%s: ends before payload '%s'",
		                     bundle_name(b), want);
	}
	if (r != ARCHIVE_OK) {
		if (pos >= 2 && r == ARCHIVE_FATAL)
			return archive_fail(b, a, BK_EVERIFY, "payload-truncated",
			                    "reading an entry");
		return archive_fail(b, a, BK_EFORMAT, "bad-archive", "reading an entry");
	}
	if (!format_ok(a))
		return bk__error_set(BK_EFORMAT, "bad-archive",
		                     "%s: not a ustar or pax tar archive (%s)", bundle_name(b),
		                     archive_format_name(a) ? archive_format_name(a) : "unknown");
	if (archive_filter_count(a) != 1)
		return bk__error_set(BK_EFORMAT, "bad-archive", "%s: compressed, bundles are not",
		                     bundle_name(b));
	name = archive_entry_pathname(e);
	if (archive_entry_hardlink(e) != NULL || archive_entry_symlink(e) != NULL ||
	    archive_entry_filetype(e) == AE_IFLNK)
		return bk__error_set(BK_EFORMAT, "link-entry", "%s: entry %zu is a link",
		                     bundle_name(b), pos + 1);
	if (archive_entry_filetype(e) != AE_IFREG || archive_entry_sparse_count(e) != 0 ||
	    !archive_entry_size_is_set(e) || archive_entry_size(e) < 0)
		return bk__error_set(BK_EFORMAT, "not-regular-file",
		                     "%s: entry %zu is not a plain regular file", bundle_name(b),
		                     pos + 1);
	if (want == NULL) {
		if (unsafe_name(name))
			return misplaced(b, pos, name);
		if (b->m && pos >= 2)
			return misplaced(b, pos, name);
		return bk__error_set(BK_EFORMAT, "unexpected-entry", "%s: extra entry",
		                     bundle_name(b));
	}
	if (name == NULL || strcmp(name, want) != 0)
		return misplaced(b, pos, name);
	*out = e;
	return 0;
}

/* Reads a small entry (the manifest or the signature) whole. */
static int read_small(const bk_fw_bundle *b, struct archive *a, struct archive_entry *e, size_t max,
                      const char *too_large, uint8_t **out, size_t *out_len)
{
	int64_t size = archive_entry_size(e);
	uint8_t *data = NULL;
	size_t got = 0;
	int rc = 0;
	*out = NULL;
	if (size > (int64_t)max) {
		rc =
		    bk__error_set(BK_EFORMAT, too_large, "%s: %s is %lld bytes, over the %zu limit",
		                  bundle_name(b), archive_entry_pathname(e), (long long)size, max);
		goto done;
	}
	data = bk__malloc((size_t)size + 1);
	if (data == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	while (got < (size_t)size) {
		la_ssize_t n = archive_read_data(a, data + got, (size_t)size - got);
		if (n < 0) {
			rc = archive_fail(b, a, BK_EFORMAT, "truncated", "reading the manifest");
			goto done;
		}
		if (n == 0) {
			rc = bk__error_set(BK_EFORMAT, "truncated", "%s: %s truncated",
			                   bundle_name(b), archive_entry_pathname(e));
			goto done;
		}
		got += (size_t)n;
	}
	data[got] = 0;
	*out = data;
	*out_len = got;
	data = NULL;
done:
	bk__free(data);
	return rc;
}

/* Opens the archive and reads the manifest and the signature. The first
 * time they are kept; later they must be byte for byte the same (the file
 * must not change between verification and use). */
static int reader_open(bk_fw_bundle *b, struct archive **out)
{
	struct archive *a = NULL;
	struct archive_entry *e;
	uint8_t *man = NULL, *sig = NULL;
	size_t man_len = 0, sig_len = 0;
	int rc = 0;
	*out = NULL;
	a = archive_read_new();
	if (a == NULL) {
		rc = bk__error_oom();
		goto done;
	}
	if (archive_read_support_format_tar(a) != ARCHIVE_OK) {
		rc = archive_fail(b, a, BK_ERROR, "archive-error", "setting up the reader");
		goto done;
	}
	int r = b->path ? archive_read_open_filename(a, b->path, CHUNK)
	                : archive_read_open_memory(a, b->mem, b->mem_len);
	if (r != ARCHIVE_OK) {
		/* The format is recognised while opening: only a file that
		 * cannot be opened is an operating-system error. */
		int err = archive_errno(a);
		rc = b->path && err > 0 && err != EILSEQ
		         ? bk__error_errno(err, "%s", b->path)
		         : archive_fail(b, a, BK_EFORMAT, "bad-archive", "opening");
		goto done;
	}
	if ((rc = next_entry(b, a, 0, &e)) ||
	    (rc = read_small(b, a, e, BK_FW_MANIFEST_MAX, "manifest-too-large", &man, &man_len)) ||
	    (rc = next_entry(b, a, 1, &e)) ||
	    (rc = read_small(b, a, e, BK_FW_SIGNATURE_MAX, "signature-too-large", &sig, &sig_len)))
		goto done;
	if (b->manifest == NULL) {
		b->manifest = man;
		b->manifest_len = man_len;
		b->sig = sig;
		b->sig_len = sig_len;
		man = sig = NULL;
	} else if (man_len != b->manifest_len || memcmp(man, b->manifest, man_len) != 0 ||
	           sig_len != b->sig_len || memcmp(sig, b->sig, sig_len) != 0) {
		rc = bk__error_set(BK_EVERIFY, "bundle-changed",
		                   "%s: the manifest changed since the bundle was opened",
		                   bundle_name(b));
		goto done;
	}
	*out = a;
	a = NULL;
done:
	bk__free(man);
	bk__free(sig);
	if (a)
		archive_read_free(a);
	return rc;
}

static int bundle_init(bk_fw_bundle *b)
{
	struct archive *a = NULL;
	int rc = reader_open(b, &a);
	if (rc)
		goto done;
	if ((rc = bk_fw__manifest_parse(&b->m, b->manifest, b->manifest_len))) {
		rc = bk__error_prefix(rc, "%s", bundle_name(b));
		goto done;
	}
	for (size_t i = 0; i < b->m->payload_count; i++)
		b->payload_bytes += b->m->payloads[i].size; /* each at most 2^40, 16 of them */
done:
	if (a)
		archive_read_free(a);
	return rc;
}

int bk_fw_bundle_open(bk_fw_bundle **out, const char *path)
{
	bk_fw_bundle *b = NULL;
	int rc = 0;
	if (out == NULL || path == NULL)
		return bk__error_set(BK_EINVALID, NULL, "bk_fw_bundle_open: NULL argument");
	*out = NULL;
	b = bk__calloc(1, sizeof(*b));
	if (b == NULL || (b->path = bk__strdup(path)) == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	if ((rc = bundle_init(b)))
		goto done;
	*out = b;
	b = NULL;
done:
	bk_fw_bundle_free(b);
	return rc;
}

int bk_fw__bundle_open_mem(bk_fw_bundle **out, const void *data, size_t len)
{
	bk_fw_bundle *b = NULL;
	int rc = 0;
	*out = NULL;
	b = bk__calloc(1, sizeof(*b));
	if (b == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	b->mem = data;
	b->mem_len = len;
	if ((rc = bundle_init(b)))
		goto done;
	*out = b;
	b = NULL;
done:
	bk_fw_bundle_free(b);
	return rc;
}

void bk_fw_bundle_free(bk_fw_bundle *b)
{
	if (b == NULL)
		return;
	bk__free(b->path);
	bk__free(b->manifest);
	bk__free(b->sig);
	bk_fw__manifest_free(b->m);
	bk__free(b);
}

/* --- Accessors ---------------------------------------------------------------- */

const bk_fw_manifest *bk_fw__bundle_manifest(const bk_fw_bundle *b)
{
	return b ? b->m : NULL;
}
const char *bk_fw_bundle_path(const bk_fw_bundle *b)
{
	return b ? b->path : NULL;
}
const char *bk_fw_bundle_version(const bk_fw_bundle *b)
{
	return b ? b->m->version : NULL;
}
uint32_t bk_fw_bundle_security_counter(const bk_fw_bundle *b)
{
	return b ? b->m->security_counter : 0;
}
size_t bk_fw_bundle_model_count(const bk_fw_bundle *b)
{
	return b ? b->m->model_count : 0;
}
const char *bk_fw_bundle_model(const bk_fw_bundle *b, size_t i)
{
	return b && i < b->m->model_count ? b->m->models[i] : NULL;
}
const char *bk_fw_bundle_hw_rev_min(const bk_fw_bundle *b)
{
	return b ? b->m->hw_rev_min : NULL;
}
const char *bk_fw_bundle_hw_rev_max(const bk_fw_bundle *b)
{
	return b ? b->m->hw_rev_max : NULL;
}
int64_t bk_fw_bundle_schema_min(const bk_fw_bundle *b)
{
	return b ? b->m->schema_min : -1;
}
int64_t bk_fw_bundle_schema_max(const bk_fw_bundle *b)
{
	return b ? b->m->schema_max : -1;
}
const char *bk_fw_bundle_created(const bk_fw_bundle *b)
{
	return b ? b->m->created : NULL;
}
const uint8_t *bk_fw_bundle_manifest(const bk_fw_bundle *b, size_t *out_len)
{
	*out_len = b ? b->manifest_len : 0;
	return b ? b->manifest : NULL;
}
const uint8_t *bk_fw_bundle_signature(const bk_fw_bundle *b, size_t *out_len)
{
	*out_len = b ? b->sig_len : 0;
	return b ? b->sig : NULL;
}
const char *bk_fw_bundle_key_id(const bk_fw_bundle *b)
{
	return b && b->sig_ok ? b->key_id : NULL;
}
size_t bk_fw_bundle_payload_count(const bk_fw_bundle *b)
{
	return b ? b->m->payload_count : 0;
}
uint64_t bk_fw_bundle_payload_bytes(const bk_fw_bundle *b)
{
	return b ? b->payload_bytes : 0;
}

static void payload_info(const bk_fw_bundle *b, size_t i, bk_fw_payload_info *out)
{
	const bk_fw_payload *p = &b->m->payloads[i];
	out->name = p->name;
	out->slot = p->slot;
	out->size = p->size;
	out->blake2b = p->hex;
	out->index = i;
}

int bk_fw_bundle_payload(const bk_fw_bundle *b, size_t i, bk_fw_payload_info *out)
{
	if (b == NULL || out == NULL || i >= b->m->payload_count)
		return bk__error_set(BK_EINVALID, NULL, "bk_fw_bundle_payload: no payload %zu", i);
	payload_info(b, i, out);
	return 0;
}

/* --- Payload streams ------------------------------------------------------------- */

typedef struct payload_stream {
	bk_stream base;
	const bk_fw_bundle *b;
	struct archive *a;
	const bk_fw_payload *p;
	crypto_generichash_state h;
	uint64_t done;
	int state; /* 0 reading, 1 checked, -1 failed */
} payload_stream;

static int payload_read(bk_stream *s, void *buf, size_t len, size_t *out_n, bk_deadline d)
{
	payload_stream *ps = (payload_stream *)s;
	uint8_t digest[BK_FW_DIGEST_LEN];
	BK_UNUSED(d);
	*out_n = 0;
	if (ps->state < 0)
		return bk__error_set(BK_EVERIFY, "payload-failed",
		                     "%s: payload '%s' already failed", bundle_name(ps->b),
		                     ps->p->name);
	if (ps->state == 1)
		return 0;
	if (ps->done == ps->p->size) {
		crypto_generichash_final(&ps->h, digest, sizeof(digest));
		if (sodium_memcmp(digest, ps->p->digest, sizeof(digest)) != 0) {
			ps->state = -1;
			return bk__error_set(
			    BK_EVERIFY, "payload-digest-mismatch",
			    "%s: payload '%s' does not match its BLAKE2b-512 digest",
			    bundle_name(ps->b), ps->p->name);
		}
		ps->state = 1;
		return 0;
	}
	uint64_t left = ps->p->size - ps->done;
	if (len > left)
		len = (size_t)left;
	la_ssize_t n = archive_read_data(ps->a, buf, len);
	if (n <= 0) {
		ps->state = -1;
		if (n == 0)
			return bk__error_set(BK_EVERIFY, "payload-truncated",
			                     "%s: payload '%s' truncated after %llu of %llu bytes",
			                     bundle_name(ps->b), ps->p->name,
			                     (unsigned long long)ps->done,
			                     (unsigned long long)ps->p->size);
		return bk__error_set(
		    BK_EVERIFY, "payload-truncated",
		    "%s: payload '%s' unreadable after %llu of %llu bytes: %s", bundle_name(ps->b),
		    ps->p->name, (unsigned long long)ps->done, (unsigned long long)ps->p->size,
		    archive_error_string(ps->a) ? archive_error_string(ps->a) : "read error");
	}
	crypto_generichash_update(&ps->h, buf, (unsigned long long)n);
	ps->done += (uint64_t)n;
	*out_n = (size_t)n;
	return 0;
}

static int payload_ctrl(bk_stream *s, int op, void *arg)
{
	payload_stream *ps = (payload_stream *)s;
	if (op == BK_STREAM_CTRL_SIZE) {
		*(uint64_t *)arg = ps->p->size;
		return 0;
	}
	return BK_EINVALID;
}

static const bk_stream_ops payload_ops = {
    .version = BK_STREAM_OPS_VERSION,
    .name = "firmware-payload",
    .read = payload_read,
    .ctrl = payload_ctrl,
};

/* Streams every payload through `cb` (may be NULL), checking each. */
static int payloads_run(bk_fw_bundle *b, bk_fw_payload_cb cb, void *cb_payload,
                        bk_progress_tracker *progress)
{
	struct archive *a = NULL;
	struct archive_entry *e;
	uint8_t *buf = NULL;
	uint64_t total_done = 0;
	int rc = reader_open(b, &a);
	if (rc)
		goto done;
	buf = bk__malloc(CHUNK);
	if (buf == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	for (size_t i = 0; i < b->m->payload_count; i++) {
		const bk_fw_payload *p = &b->m->payloads[i];
		if ((rc = next_entry(b, a, i + 2, &e)))
			goto done;
		if ((uint64_t)archive_entry_size(e) != p->size) {
			rc =
			    bk__error_set(BK_EVERIFY, "payload-size-mismatch",
			                  "%s: payload '%s' is %lld bytes, the manifest says %llu",
			                  bundle_name(b), p->name, (long long)archive_entry_size(e),
			                  (unsigned long long)p->size);
			goto done;
		}
		payload_stream ps;
		memset(&ps, 0, sizeof(ps));
		ps.base.ops = &payload_ops;
		ps.b = b;
		ps.a = a;
		ps.p = p;
		crypto_generichash_init(&ps.h, NULL, 0, BK_FW_DIGEST_LEN);
		if (cb) {
			bk_fw_payload_info info;
			payload_info(b, i, &info);
			int r = cb(&info, &ps.base, cb_payload);
			if (r) {
				rc = r < 0 ? r
				           : bk__error_set(BK_ECANCELLED, "cancelled",
				                           "%s: stopped at payload '%s'",
				                           bundle_name(b), p->name);
				goto done;
			}
		}
		for (;;) {
			size_t n;
			if ((rc = bk_stream_read(&ps.base, buf, CHUNK, &n, BK_DEADLINE_NONE)))
				goto done;
			if (n == 0)
				break;
			total_done += n;
			if (progress && (rc = bk_progress_update(progress, total_done, false)))
				goto done;
		}
	}
	if ((rc = next_entry(b, a, b->m->payload_count + 2, &e)))
		goto done;
	if (progress)
		rc = bk_progress_update(progress, b->payload_bytes, true);
done:
	bk__free(buf);
	if (a)
		archive_read_free(a);
	return rc;
}

int bk_fw__bundle_check_payloads(bk_fw_bundle *b)
{
	return payloads_run(b, NULL, NULL, NULL);
}

int bk_fw_bundle_payloads(bk_fw_bundle *b, bk_fw_payload_cb cb, void *payload)
{
	if (b == NULL)
		return bk__error_set(BK_EINVALID, NULL, "bk_fw_bundle_payloads: NULL bundle");
	if (!b->sig_ok)
		return bk__error_set(BK_EINVALID, "bundle-unverified",
		                     "%s: the signature must be verified before payloads are read",
		                     bundle_name(b));
	return payloads_run(b, cb, payload, NULL);
}

/* --- Verification --------------------------------------------------------------- */

static int check_unit(const bk_fw_bundle *b, const bk_fw_unit *u)
{
	const bk_fw_manifest *m = b->m;
	const char *bn = bundle_name(b);
	int c1, c2, rc;
	if (u->model) {
		size_t i = 0;
		while (i < m->model_count && strcmp(m->models[i], u->model) != 0)
			i++;
		if (i == m->model_count)
			return bk__error_set(BK_EINCOMPAT, "wrong-model",
			                     "%s: firmware %s is not for model %.64s", bn,
			                     m->version, u->model);
	}
	if (u->hw_rev) {
		if ((rc = bk_fw_hw_rev_compare(m->hw_rev_min, u->hw_rev, &c1)) ||
		    (rc = bk_fw_hw_rev_compare(u->hw_rev, m->hw_rev_max, &c2)))
			return bk__error_set(BK_EINVALID, "bad-hw-rev",
			                     "unit hardware revision '%.32s' is malformed",
			                     u->hw_rev);
		if (c1 > 0 || c2 > 0)
			return bk__error_set(
			    BK_EINCOMPAT, "wrong-hw-rev",
			    "%s: firmware %s supports hardware revisions %s to %s, "
			    "not %s",
			    bn, m->version, m->hw_rev_min, m->hw_rev_max, u->hw_rev);
	}
	if (m->security_counter < u->security_counter)
		return bk__error_set(BK_EINCOMPAT, "security-counter-rollback",
		                     "%s: firmware %s has security counter %u, below the unit's %u",
		                     bn, m->version, m->security_counter, u->security_counter);
	if (u->schema >= 0 && (u->schema < m->schema_min || u->schema > m->schema_max))
		return bk__error_set(BK_EINCOMPAT, "schema-unsupported",
		                     "%s: firmware %s holds memory schemas %lld to %lld, not %lld",
		                     bn, m->version, (long long)m->schema_min,
		                     (long long)m->schema_max, (long long)u->schema);
	return 0;
}

int bk_fw_bundle_verify(bk_fw_bundle *b, const bk_fw_verify_opts *opts)
{
	static const bk_progress_step steps[] = {{"verify", 1.0}};
	bk_progress_tracker progress;
	int rc;
	if (b == NULL || opts == NULL || opts->version < 1 || opts->trusted_keys == NULL)
		return bk__error_set(
		    BK_EINVALID, NULL,
		    "bk_fw_bundle_verify: bundle, options and trusted keys needed");
	b->sig_ok = 0;
	rc = bk_fw__sig_verify(b->manifest, b->manifest_len, b->sig, b->sig_len, opts->trusted_keys,
	                       opts->revoked_key_ids, b->key_id);
	if (rc)
		return bk__error_prefix(rc, "%s", bundle_name(b));
	b->sig_ok = 1;
	if (opts->unit && (rc = check_unit(b, opts->unit))) {
		b->sig_ok = 0; /* payloads of an unfitting bundle are not handed out */
		return rc;
	}
	if (opts->skip_payloads)
		return 0;
	bk_progress_init(&progress, opts->progress, opts->progress_payload, bundle_name(b), steps,
	                 BK_ARRAY_LEN(steps));
	if (opts->progress && (rc = bk_progress_step_begin(&progress, "verify", b->payload_bytes)))
		return rc;
	rc = payloads_run(b, NULL, NULL, opts->progress ? &progress : NULL);
	if (rc)
		b->sig_ok = 0; /* a bundle that failed is not handed out */
	return rc;
}

/* --- Writing ------------------------------------------------------------------- */

typedef struct writer_ctx {
	bk_stream *out;
	int rc; /* first error of the output stream */
} writer_ctx;

static la_ssize_t writer_cb(struct archive *a, void *client, const void *buf, size_t len)
{
	writer_ctx *w = client;
	if (w->rc == 0)
		w->rc = bk_stream_write(w->out, buf, len, BK_DEADLINE_NONE);
	if (w->rc) {
		archive_set_error(a, EIO, "write failed");
		return -1;
	}
	return (la_ssize_t)len;
}

static int write_fail(struct archive *a, const writer_ctx *w, const char *path)
{
	if (w->rc)
		return w->rc; /* the stream's own error is already set */
	const char *msg = archive_error_string(a);
	return bk__error_set(BK_ERROR, "archive-error", "%s: writing the archive: %s", path,
	                     msg ? msg : "failed");
}

static int write_header(struct archive *a, const writer_ctx *w, const char *path, const char *name,
                        uint64_t size, int64_t mtime)
{
	struct archive_entry *e = archive_entry_new();
	int rc = 0;
	if (e == NULL)
		return bk__error_oom();
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_size(e, (la_int64_t)size);
	archive_entry_set_mtime(e, (time_t)mtime, 0);
	if (archive_write_header(a, e) != ARCHIVE_OK)
		rc = write_fail(a, w, path);
	archive_entry_free(e);
	return rc;
}

static int write_data(struct archive *a, const writer_ctx *w, const char *path, const void *data,
                      size_t len)
{
	const uint8_t *p = data;
	while (len > 0) {
		la_ssize_t n = archive_write_data(a, p, len);
		if (n <= 0)
			return write_fail(a, w, path);
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Hashes a file: its size and BLAKE2b-512. */
static int hash_image(const char *path, uint8_t digest[BK_FW_DIGEST_LEN], uint64_t *out_size,
                      bk_progress_tracker *progress, uint64_t *done, uint8_t *buf)
{
	bk_stream *in = NULL;
	crypto_generichash_state h;
	uint64_t size = 0;
	int rc = bk_stream_file_open(&in, path);
	if (rc)
		goto done;
	crypto_generichash_init(&h, NULL, 0, BK_FW_DIGEST_LEN);
	for (;;) {
		size_t n;
		if ((rc = bk_stream_read(in, buf, CHUNK, &n, BK_DEADLINE_NONE)))
			goto done;
		if (n == 0)
			break;
		crypto_generichash_update(&h, buf, n);
		size += n;
		*done += n;
		if (size > BK_FW_PAYLOAD_SIZE_MAX) {
			rc = bk__error_set(BK_ENOSPACE, "image-too-large", "%s: over 1 TiB", path);
			goto done;
		}
		if (progress && (rc = bk_progress_update(progress, *done, false)))
			goto done;
	}
	crypto_generichash_final(&h, digest, BK_FW_DIGEST_LEN);
	*out_size = size;
done:
	bk_stream_free(in);
	return rc;
}

static int copy_image(struct archive *a, const writer_ctx *w, const char *out_path,
                      const bk_fw_payload *p, const char *path, int64_t mtime,
                      bk_progress_tracker *progress, uint64_t *done, uint8_t *buf)
{
	bk_stream *in = NULL;
	crypto_generichash_state h;
	uint8_t digest[BK_FW_DIGEST_LEN];
	uint64_t size = 0;
	int rc = bk_stream_file_open(&in, path);
	if (rc || (rc = write_header(a, w, out_path, p->name, p->size, mtime)))
		goto done;
	crypto_generichash_init(&h, NULL, 0, BK_FW_DIGEST_LEN);
	for (;;) {
		size_t n;
		if ((rc = bk_stream_read(in, buf, CHUNK, &n, BK_DEADLINE_NONE)))
			goto done;
		if (n == 0)
			break;
		if (size + n > p->size)
			break;
		crypto_generichash_update(&h, buf, n);
		if ((rc = write_data(a, w, out_path, buf, n)))
			goto done;
		size += n;
		*done += n;
		if (progress && (rc = bk_progress_update(progress, *done, false)))
			goto done;
	}
	crypto_generichash_final(&h, digest, sizeof(digest));
	if (size != p->size || sodium_memcmp(digest, p->digest, sizeof(digest)) != 0)
		rc = bk__error_set(BK_EVERIFY, "image-changed",
		                   "%s: changed while the bundle was being written", path);
done:
	bk_stream_free(in);
	return rc;
}

int bk_fw_bundle_pack(const char *path, const bk_fw_pack_opts *opts)
{
	static const bk_progress_step steps[] = {{"hash", 0.5}, {"write", 0.5}};
	bk_fw_manifest m;
	bk_buf canon = BK_BUF_INIT, sig = BK_BUF_INIT;
	bk_stream *out = NULL;
	struct archive *a = NULL;
	writer_ctx w = {NULL, 0};
	bk_progress_tracker progress, *pt = NULL;
	uint8_t *buf = NULL;
	char *comment = NULL;
	uint64_t total = 0, done_bytes = 0;
	int rc = 0;
	memset(&m, 0, sizeof(m));
	if (path == NULL || opts == NULL || opts->version < 1 || opts->models == NULL ||
	    opts->images == NULL || opts->secret_key == NULL)
		return bk__error_set(BK_EINVALID, NULL,
		                     "bk_fw_bundle_pack: path, models, images and key needed");
	if (opts->image_count == 0 || opts->image_count > BK_FW_PAYLOADS_MAX)
		return bk__error_set(BK_EINVALID, NULL, "bk_fw_bundle_pack: 1 to %d images",
		                     BK_FW_PAYLOADS_MAX);
	/* The manifest borrows the caller's strings; only `payloads` is ours. */
	m.models = (char **)opts->models;
	while (m.models[m.model_count] && m.model_count <= BK_FW_MODELS_MAX)
		m.model_count++;
	m.hw_rev_min = (char *)opts->hw_rev_min;
	m.hw_rev_max = (char *)opts->hw_rev_max;
	m.version = (char *)opts->fw_version;
	m.security_counter = opts->security_counter;
	m.schema_min = opts->schema_min;
	m.schema_max = opts->schema_max;
	bk_time_rfc3339(m.created, opts->created ? opts->created : (int64_t)time(NULL));
	m.payloads = bk__calloc(opts->image_count, sizeof(bk_fw_payload));
	buf = bk__malloc(CHUNK);
	if (m.payloads == NULL || buf == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	m.payload_count = opts->image_count;
	for (size_t i = 0; i < opts->image_count; i++) {
		m.payloads[i].name = (char *)opts->images[i].name;
		m.payloads[i].slot = (char *)opts->images[i].slot;
		if (opts->images[i].path == NULL) {
			rc = bk__error_set(BK_EINVALID, NULL,
			                   "bk_fw_bundle_pack: image %zu has no path", i);
			goto done;
		}
	}
	if (opts->progress) {
		bk_progress_init(&progress, opts->progress, opts->progress_payload, path, steps,
		                 BK_ARRAY_LEN(steps));
		pt = &progress;
		if ((rc = bk_progress_step_begin(pt, "hash", 0)))
			goto done;
	}
	/* Pass 1: sizes and digests for the manifest. */
	for (size_t i = 0; i < m.payload_count; i++) {
		bk_fw_payload *p = &m.payloads[i];
		if ((rc = hash_image(opts->images[i].path, p->digest, &p->size, pt, &done_bytes,
		                     buf)))
			goto done;
		bk_hex_encode(p->hex, p->digest, BK_FW_DIGEST_LEN);
		total += p->size;
	}
	if ((rc = bk_fw__manifest_encode(&m, &canon)))
		goto done;
	if (opts->trusted_comment == NULL) {
		int64_t t;
		bk_time_parse_rfc3339(m.created, &t);
		comment = bk__asprintf("timestamp:%lld\tfile:" BK_FW_MANIFEST_NAME "\tversion:%s",
		                       (long long)t, m.version);
		if (comment == NULL) {
			rc = BK_ENOMEM;
			goto done;
		}
	}
	if ((rc = bk_fw__sign(&sig, canon.data, canon.len, opts->secret_key, opts->password,
	                      comment ? comment : opts->trusted_comment)))
		goto done;
	/* Pass 2: the archive. */
	if ((rc = bk_stream_atomic_new(&out, path, 0644, opts->exclusive)))
		goto done;
	w.out = out;
	a = archive_write_new();
	if (a == NULL) {
		rc = bk__error_oom();
		goto done;
	}
	if (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
	    archive_write_add_filter_none(a) != ARCHIVE_OK ||
	    archive_write_open2(a, &w, NULL, writer_cb, NULL, NULL) != ARCHIVE_OK) {
		rc = write_fail(a, &w, path);
		goto done;
	}
	int64_t mtime;
	bk_time_parse_rfc3339(m.created, &mtime);
	if (pt && (rc = bk_progress_step_begin(pt, "write", total)))
		goto done;
	done_bytes = 0;
	if ((rc = write_header(a, &w, path, BK_FW_MANIFEST_NAME, canon.len, mtime)) ||
	    (rc = write_data(a, &w, path, canon.data, canon.len)) ||
	    (rc = write_header(a, &w, path, BK_FW_SIGNATURE_NAME, sig.len, mtime)) ||
	    (rc = write_data(a, &w, path, sig.data, sig.len)))
		goto done;
	for (size_t i = 0; i < m.payload_count; i++)
		if ((rc = copy_image(a, &w, path, &m.payloads[i], opts->images[i].path, mtime, pt,
		                     &done_bytes, buf)))
			goto done;
	if (archive_write_close(a) != ARCHIVE_OK) {
		rc = write_fail(a, &w, path);
		goto done;
	}
	rc = bk_stream_close(out, BK_DEADLINE_NONE);
	out = NULL;
	if (rc == 0 && pt)
		rc = bk_progress_update(pt, total, true);
done:
	if (a) {
		if (rc)
			w.rc = w.rc ? w.rc : BK_ECANCELLED; /* abandon: write nothing more */
		archive_write_free(a);
	}
	bk_stream_free(out);
	bk__free(comment);
	bk_buf_free(&sig);
	bk_buf_free(&canon);
	bk__free(buf);
	bk__free(m.payloads);
	return rc;
}
