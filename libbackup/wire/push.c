/* bk_restore_push: re-wrap a backup to a unit's certified age key and stream
 * it to the unit, which checks and commits it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include <libbackup/identity.h>

#include "libbackup/wire/wire_internal.h"

#define COMMIT_TIMEOUT_MS 600000

void bk_restore_report_clear(bk_restore_report *r)
{
	if (r == NULL)
		return;
	bk__free(r->domains_json);
	memset(r, 0, sizeof(*r));
}

typedef struct push_src {
	int fd;
	const char *path;
	const uint8_t *hdr;
	uint64_t hdr_len;
	uint64_t old_hdr_len;
	uint64_t size;
	uint64_t bytes;
	uint64_t *done;
	bk_wire_progress *prog;
} push_src;

static int source(void *payload, uint64_t offset, void *buf, size_t len)
{
	push_src *s = payload;
	uint8_t *p = buf;
	size_t got = 0;
	if (offset + len > s->size)
		return bk__error_set(BK_EINVALID, NULL, "restore: read past the end");
	if (offset < s->hdr_len) {
		size_t n =
		    (size_t)(s->hdr_len - offset) < len ? (size_t)(s->hdr_len - offset) : len;
		memcpy(p, s->hdr + offset, n);
		got = n;
	}
	while (got < len) {
		uint64_t at = offset + got - s->hdr_len + s->old_hdr_len;
		ssize_t n = pread(s->fd, p + got, len - got, (off_t)at);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n == 0 ? bk__error_set(BK_EVERIFY, "payload-truncated",
			                              "%s: shorter than its statement", s->path)
			              : bk__error_errno(errno, "%s", s->path);
		got += (size_t)n;
	}
	s->bytes += len;
	uint64_t at = offset + len > *s->done ? offset + len : *s->done;
	return bk_wire__progress(s->prog, "transfer", 0, at, s->size, 0);
}

/* The domain digests INFO reported. */
static int info_digests(const bk_device_info *info, bk_domain_digests *out)
{
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < info->domain_count; i++) {
		const bk_device_domain *d = &info->domains[i];
		int k = bk_domain_lookup(d->name, strlen(d->name));
		if (k < 0 || strlen(d->digest) != 64 ||
		    bk_hex_decode(out->d[k].digest, 32, d->digest) != 0)
			return bk__error_set(BK_EFORMAT, "bad-info",
			                     "unit reports a bad domain %.32s", d->name);
		out->d[k].present = true;
		out->d[k].items = d->items;
		out->d[k].bytes = d->bytes;
	}
	return 0;
}

static bool holds_memory(const bk_device_info *info)
{
	for (size_t i = 0; i < info->domain_count; i++)
		if (info->domains[i].items > 0)
			return true;
	return false;
}

/* Reads the old header and the manifest; re-wraps (or takes the kept
 * re-wrapped header). */
static int prepare(const bk_config *cfg, bk_backup *b, const bk_statement *st,
                   const bk_restore_push_opts *opts, const bk_device_info *info, const char *serial,
                   bk_manifest **out_man, uint8_t **out_hdr, size_t *out_hdr_len,
                   uint64_t *out_old_len)
{
	bk_age_identities *ids = NULL;
	bk_stream *in = NULL, *dec = NULL;
	bk_catalog *cat = NULL;
	uint8_t *old = NULL;
	size_t old_len = 0;
	bk_statement_view v;
	bk_statement_info si;
	bk_age_decrypt_opts dopts = BK_AGE_DECRYPT_OPTS_INIT;
	int rc;
	bk_statement_get(st, &v);
	bk_statement_info_get(st, &si);
	if ((rc = bk_wire__load_identities(&ids, cfg, opts->identity, opts->passphrase,
	                                   opts->passphrase_payload)))
		goto done;
	/* The manifest, from the start of the payload only. */
	if ((rc = bk_stream_file_open(&in, bk_backup_path(b))))
		goto done;
	if ((rc = bk_age_decrypt_new(&dec, in, 1, ids, &dopts, BK_DEADLINE_NONE))) {
		bk__error_prefix(rc, "%s", bk_backup_path(b));
		goto done;
	}
	in = NULL;
	if ((rc = bk_wire__manifest_peek(out_man, dec)))
		goto done;
	uint8_t md[BK_ARCHIVE_DIGEST_LEN];
	if (!bk_manifest_raw_digest(*out_man, md) ||
	    sodium_memcmp(md, si.manifest_digest, sizeof(md)) != 0 ||
	    strcmp(bk_manifest_backup_id(*out_man), v.backup_id) != 0) {
		rc = bk__error_set(BK_EVERIFY, "statement-mismatch",
		                   "%s: the manifest is not the one its statement names",
		                   bk_backup_path(b));
		goto done;
	}
	/* The header as stored. */
	if ((rc = bk_stream_file_open(&in, bk_backup_path(b))) ||
	    (rc = bk_age_header_read(&old, &old_len, in, &dopts, BK_DEADLINE_NONE)))
		goto done;
	struct stat sb;
	if (stat(bk_backup_path(b), &sb) != 0 || (uint64_t)sb.st_size != old_len + v.payload_size) {
		rc = bk__error_set(BK_EVERIFY, "payload-truncated",
		                   "%s: the payload is not the %llu bytes its statement names",
		                   bk_backup_path(b), (unsigned long long)v.payload_size);
		goto done;
	}
	*out_old_len = old_len;
	/* The header for this unit: kept from an earlier attempt, or new. */
	if ((rc = bk_backup_catalog_open(&cat, cfg, 1)))
		goto done;
	rc = bk_catalog_restore_header_get(cat, v.backup_id, serial, out_hdr, out_hdr_len);
	if (rc != BK_ENOTFOUND)
		goto done;
	bk_error_clear();
	bk_age_recipient r;
	if (info->age_recipient == NULL || bk_age_recipient_parse(&r, info->age_recipient) != 0) {
		rc = bk__error_set(BK_EAUTH, "no-age-key",
		                   "unit %s: its certificate carries no age recipient", serial);
		goto done;
	}
	bk_age_encrypt_opts eo = BK_AGE_ENCRYPT_OPTS_INIT;
	eo.recipients = &r;
	eo.recipient_count = 1;
	if ((rc = bk_age_rewrap_header(out_hdr, out_hdr_len, old, old_len, ids, &eo))) {
		bk__error_prefix(rc, "%s", bk_backup_path(b));
		goto done;
	}
	rc = bk_catalog_restore_header_put(cat, v.backup_id, serial, *out_hdr, *out_hdr_len);
done:
	if (rc) {
		bk_manifest_free(*out_man);
		*out_man = NULL;
		bk__free(*out_hdr);
		*out_hdr = NULL;
	}
	bk_catalog_free(cat);
	bk__free(old);
	bk_stream_free(dec);
	bk_stream_free(in);
	bk_age_identities_free(ids);
	return rc;
}

/* A sealed file: already encrypted to the unit, sent as it is. Checks that
 * it starts with a complete age header and that the payload after it has
 * the size the statement names; *out_size gets the file's size. */
static int sealed_check(const bk_backup *b, const bk_statement_view *v, uint64_t *out_size,
                        uint8_t **out_hdr, size_t *out_hdr_len)
{
	uint64_t hl = 0;
	struct stat sb;
	bk_stream *in = NULL;
	bk_age_decrypt_opts dopts = BK_AGE_DECRYPT_OPTS_INIT;
	int rc = bk_identity_age_file_check(bk_backup_path(b), &hl);
	if (rc == 0 && (rc = bk_stream_file_open(&in, bk_backup_path(b))) == 0)
		rc = bk_age_header_read(out_hdr, out_hdr_len, in, &dopts, BK_DEADLINE_NONE);
	bk_stream_free(in);
	if (rc == 0 && *out_hdr_len != hl)
		rc = bk__error_set(BK_EFORMAT, "bad-header", "age header of unclear length");
	if (rc)
		return bk__error_prefix(rc, "%s", bk_backup_path(b));
	if (stat(bk_backup_path(b), &sb) != 0)
		return bk__error_errno(errno, "%s", bk_backup_path(b));
	if ((uint64_t)sb.st_size < hl || (uint64_t)sb.st_size - hl != v->payload_size)
		return bk__error_set(BK_EVERIFY, "payload-truncated",
		                     "%s: the payload is not the %llu bytes its statement names",
		                     bk_backup_path(b), (unsigned long long)v->payload_size);
	*out_size = (uint64_t)sb.st_size;
	return 0;
}

/* Whether the unit holds a whole staging of this very file (a run that
 * stopped between the transfer and the commit): RESTORE_STATUS with the same
 * statement, header and size, and every byte received. */
static int staged_whole(bk_device *dev, const bk_statement *st, uint64_t size,
                        const char *header_digest, int *out)
{
	size_t slen = 0;
	const uint8_t *s = bk_statement_bytes(st, &slen);
	char *reply = NULL;
	*out = 0;
	int rc = bk_device_call(dev, BK_DEVICE_RESTORE_STATUS, NULL, &reply, 0);
	if (rc)
		return rc;
	json_t *a = json_loads(reply, 0, NULL);
	json_t *jst = json_object_get(a, "statement");
	json_t *jsz = json_object_get(a, "size"), *jrx = json_object_get(a, "received");
	if (json_is_true(json_object_get(a, "active")) && json_is_string(jst) &&
	    json_string_length(jst) == slen && memcmp(json_string_value(jst), s, slen) == 0 &&
	    json_is_integer(jsz) && (uint64_t)json_integer_value(jsz) == size &&
	    json_is_integer(jrx) && (uint64_t)json_integer_value(jrx) == size &&
	    json_string_value(json_object_get(a, "header_digest")) &&
	    strcmp(json_string_value(json_object_get(a, "header_digest")), header_digest) == 0)
		*out = 1;
	json_decref(a);
	bk_free(reply);
	return 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* RESTORE_BEGIN: returns the bytes the unit already holds. `header_digest`
 * names the header sent (the unit keeps a staging only for the same one: a
 * new re-wrap of the same backup starts over). */
static int begin(bk_device *dev, uint64_t size, const bk_statement *st,
                 const char *header_digest, uint64_t *received)
{
	size_t slen = 0;
	const uint8_t *s = bk_statement_bytes(st, &slen);
	json_t *req = json_pack("{s:I, s:s%, s:s}", "size", (json_int_t)size, "statement",
	                        (const char *)s, slen, "header_digest", header_digest);
	char *body = req ? json_dumps(req, JSON_COMPACT) : NULL, *reply = NULL;
	int rc = body ? 0 : bk__error_oom();
	if (rc == 0)
		rc = bk_device_call(dev, BK_DEVICE_RESTORE_BEGIN, body, &reply, 0);
	if (rc == 0) {
		json_t *a = json_loads(reply, 0, NULL);
		json_t *r = json_object_get(a, "received");
		if (!json_is_integer(r) || json_integer_value(r) < 0 ||
		    (uint64_t)json_integer_value(r) > size)
			rc = bk__error_set(BK_EFORMAT, "bad-answer",
			                   "unit %s: malformed RESTORE_BEGIN answer",
			                   bk_device_serial(dev));
		else
			*received = (uint64_t)json_integer_value(r);
		json_decref(a);
	}
	bk_free(reply);
	free(body);
	json_decref(req);
	return rc;
}

/* RESTORE_COMMIT; the unit's digests in *out, the manifest digest it names
 * in md (*has_md 0 when the answer names none). */
static int commit(bk_device *dev, bk_domain_digests *out, char **out_json,
                  uint8_t md[BK_ARCHIVE_DIGEST_LEN], int *has_md)
{
	char *reply = NULL;
	*has_md = 0;
	int rc = bk_device_call(dev, BK_DEVICE_RESTORE_COMMIT, NULL, &reply,
	                        bk_deadline_in(COMMIT_TIMEOUT_MS));
	if (rc == 0) {
		json_t *a = json_loads(reply, 0, NULL);
		json_t *d = json_object_get(a, "domains");
		rc = d ? bk_domain_digests_from_json(d, out)
		       : bk__error_set(BK_EFORMAT, "bad-answer", "unit %s: malformed commit answer",
		                       bk_device_serial(dev));
		const char *mh = json_string_value(json_object_get(a, "manifest_digest"));
		if (rc == 0 && mh && strlen(mh) == 2 * BK_ARCHIVE_DIGEST_LEN &&
		    bk_hex_decode(md, BK_ARCHIVE_DIGEST_LEN, mh) == 0)
			*has_md = 1;
		if (rc == 0) {
			char *s = json_dumps(d, JSON_COMPACT);
			*out_json = s ? bk__strdup(s) : NULL;
			free(s);
			if (*out_json == NULL)
				rc = bk__error_oom();
		}
		json_decref(a);
	}
	bk_free(reply);
	return rc;
}

/* After a sealed commit: the manifest the unit names must be the statement's,
 * and the memory the unit reports now (INFO) the one it reported at commit. */
static int sealed_compare(bk_device *dev, const bk_statement *st, const bk_domain_digests *unit_d,
                          const uint8_t unit_md[BK_ARCHIVE_DIGEST_LEN], int has_md,
                          bk_restore_report *out, char **unit_json)
{
	bk_statement_info si;
	bk_device_info *info = NULL;
	bk_domain_digests now;
	const char *serial = bk_device_serial(dev);
	bk_statement_info_get(st, &si);
	int md_match = has_md && sodium_memcmp(unit_md, si.manifest_digest,
	                                       BK_ARCHIVE_DIGEST_LEN) == 0;
	if (out) {
		out->domains_json = *unit_json;
		*unit_json = NULL;
		out->digests_match = md_match;
	}
	if (!has_md)
		return bk__error_set(BK_EVERIFY, "digest-mismatch",
		                     "unit %s does not name the manifest it committed", serial);
	if (!md_match)
		return bk__error_set(BK_EVERIFY, "digest-mismatch",
		                     "unit %s committed a manifest other than the backup's statement "
		                     "names",
		                     serial);
	int rc = bk_device_info_get(dev, &info, 0);
	if (rc == 0)
		rc = info_digests(info, &now);
	if (rc == 0 && !bk_domain_digests_equal(&now, unit_d)) {
		if (out)
			out->digests_match = 0;
		rc = bk__error_set(BK_EVERIFY, "digest-mismatch",
		                   "unit %s reports memory digests other than those of its commit",
		                   serial);
	}
	bk_device_info_free(info);
	return rc;
}

int bk_restore_push(const bk_config *cfg, bk_device *dev, const char *backup,
                    const bk_restore_push_opts *opts, bk_restore_report *out)
{
	bk_backup *b = NULL;
	bk_device_info *info = NULL;
	bk_manifest *man = NULL;
	uint8_t *hdr = NULL;
	size_t hdr_len = 0;
	uint64_t old_len = 0, received = 0, done = 0, size = 0;
	uint8_t unit_md[BK_ARCHIVE_DIGEST_LEN];
	int has_md = 0;
	char *unit_json = NULL;
	bk_domain_digests unit_d;
	bk_wire_progress prog;
	bk_transfer_stats tx;
	bk_statement_view v;
	int fd = -1, rc;

	memset(&tx, 0, sizeof(tx));
	if (out)
		memset(out, 0, sizeof(*out));
	if (cfg == NULL || dev == NULL || backup == NULL || opts == NULL || opts->version < 1)
		return bk__error_set(BK_EINVALID, NULL, "restore: missing argument");
	const char *serial = bk_device_serial(dev);
	bk_wire__progress_init(&prog, opts->progress, opts->progress_payload, serial, 2);
	int64_t reconnect_ms =
	    opts->reconnect_ms > 0 ? opts->reconnect_ms : BK_WIRE_RECONNECT_MS_DEFAULT;

	/* The backup and its statement. */
	if ((rc = bk_backup_open(&b, cfg, backup)))
		goto done;
	const bk_statement *st = bk_backup_statement(b);
	if (st == NULL) {
		const bk_error *e = bk_backup_statement_error(b);
		rc = bk__error_set(BK_EVERIFY, "statement-missing", "%s: %s", bk_backup_path(b),
		                   e && e->message ? e->message : "no valid statement");
		goto done;
	}
	if ((rc = bk_statement_verify(st, cfg))) {
		bk__error_prefix(rc, "%s", bk_backup_path(b));
		goto done;
	}
	bk_statement_get(st, &v);

	/* The unit. */
	if ((rc = bk_wire__info(dev, &info, reconnect_ms, &prog, &tx.reconnects)))
		goto done;
	if (strcmp(info->cert_status, "valid") != 0) {
		rc = bk__error_set(BK_EAUTH, "certificate-inconsistent",
		                   "unit %s reports a certificate other than the one it presented",
		                   serial);
		goto done;
	}
	if (strcmp(v.model, bk_device_model(dev)) != 0) {
		rc = bk__error_set(BK_EINCOMPAT, "model-mismatch",
		                   "unit %s is a %s; the backup is for a %s", serial,
		                   bk_device_model(dev), v.model);
		goto done;
	}
	if (v.schema_version < info->schema_min || v.schema_version > info->schema_max) {
		rc = bk__error_set(
		    BK_EINCOMPAT, "schema-unsupported",
		    "unit %s runs firmware %s holding memory schemas %llu-%llu; the "
		    "backup needs a firmware holding schema %llu",
		    serial, info->firmware_version, (unsigned long long)info->schema_min,
		    (unsigned long long)info->schema_max, (unsigned long long)v.schema_version);
		goto done;
	}
	int minb = bk_wire__min_battery(cfg, opts->min_battery);
	if (info->battery < minb) {
		rc = bk__error_set(BK_EINCOMPAT, "battery-low",
		                   "unit %s: battery at %d%%, a restore needs at least %d%%",
		                   serial, info->battery, minb);
		goto done;
	}
	if (opts->sealed) {
		if ((rc = sealed_check(b, &v, &size, &hdr, &hdr_len)))
			goto done;
		old_len = hdr_len; /* the header goes as it is */
	} else {
		if ((rc = prepare(cfg, b, st, opts, info, serial, &man, &hdr, &hdr_len, &old_len)))
			goto done;
		size = hdr_len + v.payload_size;
	}
	char hdr_hex[2 * crypto_generichash_BYTES + 1];
	{
		uint8_t hd[crypto_generichash_BYTES];
		crypto_generichash(hd, sizeof(hd), hdr, hdr_len, NULL, 0);
		bk_hex_encode(hdr_hex, hd, sizeof(hd));
	}
	if (out) {
		bk_strlcpy(out->backup_id, v.backup_id, sizeof(out->backup_id));
		bk_strlcpy(out->serial, serial, sizeof(out->serial));
		bk_strlcpy(out->from_serial, v.serial, sizeof(out->from_serial));
		out->schema = v.schema_version;
	}
	/* Already done (a command stopped after the commit)? */
	bk_domain_digests have;
	if ((rc = info_digests(info, &have)))
		goto done;
	if (man && bk_manifest_count(man) > 0 &&
	    bk_domain_digests_equal(&have, bk_manifest_domains(man))) {
		json_t *j = NULL;
		unit_d = have;
		if ((rc = bk_domain_digests_to_json(&have, &j)))
			goto done;
		char *s = json_dumps(j, JSON_COMPACT);
		json_decref(j);
		unit_json = s ? bk__strdup(s) : NULL;
		free(s);
		goto compare;
	}
	/* A sealed file's manifest is unknown here: a unit that holds a memory
	 * takes it only with `overwrite`, or when a stopped run left this very
	 * file whole in its staging (that run was allowed to replace it). */
	int staged = 0;
	if (holds_memory(info) && !opts->overwrite && opts->sealed &&
	    (rc = staged_whole(dev, st, size, hdr_hex, &staged)))
		goto done;
	if (holds_memory(info) && !opts->overwrite && !staged) {
		rc = bk__error_set(BK_EEXIST, "unit-has-memory",
		                   "unit %s already holds a memory; restoring would replace it "
		                   "(--overwrite)",
		                   serial);
		goto done;
	}

	/* The transfer. */
	tx.size = size;
	fd = open(bk_backup_path(b), O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = bk__error_errno(errno, "%s", bk_backup_path(b));
		goto done;
	}
	push_src ps = {fd, bk_backup_path(b), hdr, hdr_len, old_len, size, 0, &done, &prog};
	bk_device_xfer_opts xo = BK_DEVICE_XFER_OPTS_INIT;
	int64_t t0 = now_ms();
	bool first = true;
	for (;;) {
		rc = begin(dev, size, st, hdr_hex, &received);
		if (rc == 0) {
			if (first) {
				tx.start = received;
				if (out)
					out->resumed = received > 0;
				first = false;
			}
			done = received;
			uint64_t got = 0;
			if (done < size)
				rc = bk_device_write_range(dev, BK_DEVICE_RESTORE_WRITE, done,
				                           size - done, source, &ps, &xo, &got);
			done += got;
		}
		if (rc == 0 || !bk_wire__retryable(rc))
			break;
		if ((rc = bk_wire__reconnect(dev, bk_deadline_in(reconnect_ms), &prog)))
			break;
		tx.reconnects++;
	}
	tx.bytes = ps.bytes;
	tx.seconds = (double)(now_ms() - t0) / 1000.0;
	if (rc)
		goto done;

	/* The unit checks and commits; a lost connection during the commit is
	 * resolved by asking what the unit holds. */
	if ((rc = bk_wire__progress(&prog, "commit", 1, 0, 0, 1)))
		goto done;
	for (int attempt = 0;; attempt++) {
		rc = commit(dev, &unit_d, &unit_json, unit_md, &has_md);
		if (rc == 0 || !bk_wire__retryable(rc) || attempt >= 3)
			break;
		if ((rc = bk_wire__reconnect(dev, bk_deadline_in(reconnect_ms), &prog)))
			break;
		tx.reconnects++;
		bk_device_info_free(info);
		info = NULL;
		if ((rc = bk_device_info_get(dev, &info, 0)) || (rc = info_digests(info, &have)))
			break;
		if (man && bk_domain_digests_equal(&have, bk_manifest_domains(man))) {
			json_t *j = NULL;
			unit_d = have;
			if ((rc = bk_domain_digests_to_json(&have, &j)))
				break;
			char *s = json_dumps(j, JSON_COMPACT);
			json_decref(j);
			unit_json = s ? bk__strdup(s) : NULL;
			free(s);
			break;
		}
		/* Not committed: the staging is still whole after a power loss. */
		if ((rc = begin(dev, size, st, hdr_hex, &received)))
			break;
		if (received != size && opts->sealed) {
			/* The staging is gone: committed, most likely, but a sealed
			 * memory cannot be recognised by its digests. */
			rc = bk__error_set(BK_EDISCONNECTED, "restore-interrupted",
			                   "unit %s: the connection was lost during the commit and "
			                   "its outcome is unknown; run the command again with "
			                   "--overwrite",
			                   serial);
			break;
		}
		if (received != size) {
			rc = bk__error_set(BK_EDISCONNECTED, "restore-interrupted",
			                   "unit %s lost part of the restore (%llu of %llu bytes); "
			                   "run the command again",
			                   serial, (unsigned long long)received,
			                   (unsigned long long)size);
			break;
		}
	}
	if (rc)
		goto done;
compare:
	if (unit_json == NULL) {
		rc = bk__error_oom();
		goto done;
	}
	if (opts->sealed) {
		if ((rc = sealed_compare(dev, st, &unit_d, unit_md, has_md, out, &unit_json)))
			goto done;
		rc = bk_wire__progress(&prog, "commit", 1, 1, 1, 1);
		goto done;
	}
	if (out) {
		out->domains_json = unit_json;
		unit_json = NULL;
		out->digests_match = bk_domain_digests_equal(&unit_d, bk_manifest_domains(man));
	}
	if (!bk_domain_digests_equal(&unit_d, bk_manifest_domains(man))) {
		rc = bk__error_set(BK_EVERIFY, "digest-mismatch",
		                   "unit %s reports memory digests that differ from the backup's "
		                   "manifest",
		                   serial);
		goto done;
	}
	rc = bk_wire__progress(&prog, "commit", 1, 1, 1, 1);
done:
	if (out)
		out->stats = tx;
	if (fd >= 0)
		close(fd);
	bk__free(unit_json);
	bk__free(hdr);
	bk_manifest_free(man);
	bk_device_info_free(info);
	bk_backup_free(b);
	return rc;
}
