/* bk_backup_pull: a unit makes a backup of its memory, the terminal streams
 * it into a file, the store and the catalog. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "libbackup/wire/wire_internal.h"

#define BEGIN_TIMEOUT_MS 600000
/* The most a streamed backup may hold before its size is known. */
#define STREAM_LIMIT ((uint64_t)1 << 40)

typedef struct pull_sink {
	int fd;
	const char *part;
	uint64_t size;
	uint64_t total; /* for progress: the size, or an estimate while streaming */
	uint64_t base;  /* offset of this range's start */
	uint64_t bytes; /* delivered, re-sent ones included */
	bk_wire_progress *prog;
	uint64_t *done_so_far;
	/* The payload digest, taken as the bytes arrive in order (a transfer
	 * that resends or skips bytes is hashed again from the file). */
	bk_payload_hasher ph;
	uint64_t hashed;
	bool in_order;
	uint64_t synced; /* bytes whose writeback was started */
} pull_sink;

#define WRITEBACK_STEP ((uint64_t)8 << 20)

static int sink(void *payload, uint64_t offset, const void *data, size_t len)
{
	pull_sink *s = payload;
	size_t put = 0;
	if (offset + len > s->size)
		return bk__error_set(BK_EFORMAT, "unexpected-data",
		                     "the unit sent data past the announced %llu bytes",
		                     (unsigned long long)s->size);
	while (put < len) {
		ssize_t n =
		    pwrite(s->fd, (const uint8_t *)data + put, len - put, (off_t)(offset + put));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return errno == ENOSPC
			           ? bk__error_set(BK_ENOSPACE, "no-space", "%s: disk full",
			                           s->part)
			           : bk__error_errno(n < 0 ? errno : EIO, "%s", s->part);
		put += (size_t)n;
	}
	s->bytes += len;
	if (s->in_order && offset == s->hashed) {
		if (bk_payload_hasher_update(&s->ph, data, len) == 0)
			s->hashed += len;
		else
			s->in_order = false; /* the check from the file names the fault */
		bk_fd_writeback(s->fd, &s->synced, s->hashed, WRITEBACK_STEP);
	} else {
		s->in_order = false;
	}
	uint64_t at = offset + len > *s->done_so_far ? offset + len : *s->done_so_far;
	return bk_wire__progress(s->prog, "transfer", 1, at, at > s->total ? at : s->total, 0);
}

/* Removes the part file of backup `id` in the store or in `dir`, unless a
 * running command holds it (best effort: what stays is a leftover that
 * `backups gc` removes). */
static void drop_part(bk_store *store, const char *dir, const char *id)
{
	char *p = NULL;
	if (store)
		(void)bk_store_part_path(store, id, &p);
	else if (dir)
		p = bk__asprintf("%s/%s" BK_BACKUP_EXT ".part", dir, id);
	if (p && bk_backup__is_locked(p) == 0 && unlink(p) == 0)
		bk__log(BK_LOG_INFO, "backup", "%s: removed, the unit no longer makes it", p);
	bk__free(p);
}

/* The folder a new backup's part file lands in, for the space check. */
static int free_bytes(const char *path, uint64_t *out)
{
	struct statvfs sv;
	char *dir = bk_path_dirname(path);
	if (dir == NULL)
		return bk__error_oom();
	int rc = statvfs(dir, &sv) == 0 ? 0 : bk__error_errno(errno, "%s", dir);
	if (rc == 0)
		*out = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
	bk__free(dir);
	return rc;
}

static int check_statement(const bk_config *cfg, bk_device *dev, const bk_device_info *info,
                           const bk_statement *st, uint64_t size, uint64_t header)
{
	bk_statement_view v;
	int rc = bk_statement_verify(st, cfg);
	if (rc)
		return rc;
	bk_statement_get(st, &v);
	if (strcmp(v.serial, bk_device_serial(dev)) != 0 || strcmp(v.producer_role, "unit") != 0 ||
	    v.producer == NULL || strcmp(v.producer, bk_device_serial(dev)) != 0 ||
	    strcmp(v.certificate_fingerprint, info->cert_fingerprint) != 0 ||
	    strcmp(v.model, bk_device_model(dev)) != 0)
		return bk__error_set(BK_EVERIFY, "statement-mismatch",
		                     "the statement of unit %s is not signed by that unit",
		                     bk_device_serial(dev));
	if (v.payload_size + header != size)
		return bk__error_set(BK_EVERIFY, "statement-mismatch",
		                     "unit %s announces %llu bytes, its statement %llu + header",
		                     bk_device_serial(dev), (unsigned long long)size,
		                     (unsigned long long)v.payload_size);
	return 0;
}

/* Writes `st` beside `path` and renames part into place. */
static int place_file(const char *part, const char *path, const uint8_t *stmt, size_t stmt_len)
{
	char *spath = bk__asprintf("%s" BK_STATEMENT_EXT, path);
	char *dir = bk_path_dirname(path);
	int rc = spath && dir ? 0 : bk__error_oom();
	if (rc == 0)
		rc = bk_file_write_atomic(spath, stmt, stmt_len, 0644, 0);
	if (rc == 0 && renameat2(AT_FDCWD, part, AT_FDCWD, path, RENAME_NOREPLACE) != 0) {
		rc = errno == EEXIST
		         ? bk__error_set(BK_EEXIST, "exists", "%s: refusing to overwrite", path)
		         : bk__error_errno(errno, "%s: rename", path);
		unlink(spath);
	}
	if (rc == 0)
		rc = bk_fsync_dir(dir);
	bk__free(spath);
	bk__free(dir);
	return rc;
}

/* BACKUP_BEGIN, reconnecting after a lost connection; *out the answer. */
static int begin_call(bk_device *dev, const char *body, json_t **out, int64_t reconnect_ms,
                      bk_wire_progress *prog, unsigned *reconnects)
{
	char *reply = NULL;
	int rc;
	*out = NULL;
	for (;;) {
		rc = bk_device_call(dev, BK_DEVICE_BACKUP_BEGIN, body, &reply,
		                    bk_deadline_in(BEGIN_TIMEOUT_MS));
		if (rc == 0 || !bk_wire__retryable(rc))
			break;
		if ((rc = bk_wire__reconnect(dev, bk_deadline_in(reconnect_ms), prog)))
			break;
		(*reconnects)++;
	}
	if (rc == 0 && (*out = json_loads(reply, 0, NULL)) == NULL)
		rc = bk__error_set(BK_EFORMAT, "bad-answer", "unit %s: malformed BACKUP_BEGIN answer",
		                   bk_device_serial(dev));
	bk_free(reply);
	return rc;
}

/* The size, header size and statement of a complete BACKUP_BEGIN answer. */
static int begin_fields(bk_device *dev, const json_t *ans, uint64_t *size, uint64_t *header,
                        const char **stext, size_t *stext_len)
{
	json_t *js = json_object_get(ans, "size"), *jh = json_object_get(ans, "header_size");
	*stext = json_string_value(json_object_get(ans, "statement"));
	*stext_len = json_string_length(json_object_get(ans, "statement"));
	if (*stext == NULL || !json_is_integer(js) || !json_is_integer(jh) ||
	    json_integer_value(js) <= 0 || json_integer_value(jh) <= 0 ||
	    (uint64_t)json_integer_value(js) >= STREAM_LIMIT)
		return bk__error_set(BK_EFORMAT, "bad-answer",
		                     "unit %s: malformed BACKUP_BEGIN answer", bk_device_serial(dev));
	*size = (uint64_t)json_integer_value(js);
	*header = (uint64_t)json_integer_value(jh);
	return 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int bk_backup_pull(const bk_config *cfg, bk_device *dev, const bk_backup_pull_opts *opts,
                   bk_backup_report *out, bk_transfer_stats *stats)
{
	bk_device_info *info = NULL;
	json_t *req = NULL, *ans = NULL, *rcpt = NULL, *dl = NULL;
	char *body = NULL, *reply = NULL, *part = NULL, *dest = NULL, *location = NULL;
	bk_statement *st = NULL;
	bk_store *store = NULL;
	bk_catalog *cat = NULL;
	bk_backup *vb = NULL;
	bk_wire_progress prog;
	bk_transfer_stats tx;
	int fd = -1, rc, placed = 0;
	uint64_t size = 0, header = 0, done = 0;
	const char *id = NULL, *stext = NULL;
	size_t stext_len = 0;

	memset(&tx, 0, sizeof(tx));
	if (out)
		memset(out, 0, sizeof(*out));
	if (stats)
		memset(stats, 0, sizeof(*stats));
	if (cfg == NULL || dev == NULL || opts == NULL || opts->version < 1)
		return bk__error_set(BK_EINVALID, NULL, "backup pull: missing argument");
	if (opts->output && opts->output_dir)
		return bk__error_set(BK_EUSER, "usage",
		                     "give an output file or a folder, not both");
	const char *serial = bk_device_serial(dev);
	bk_wire__progress_init(&prog, opts->progress, opts->progress_payload, serial,
	                       opts->verify ? 3 : 2);
	int64_t reconnect_ms =
	    opts->reconnect_ms > 0 ? opts->reconnect_ms : BK_WIRE_RECONNECT_MS_DEFAULT;

	/* Preflight: the unit, its battery, the recipients. */
	if ((rc = bk_wire__info(dev, &info, reconnect_ms, &prog, &tx.reconnects)))
		goto done;
	int minb = bk_wire__min_battery(cfg, opts->min_battery);
	if (info->battery < minb) {
		rc = bk__error_set(BK_EINCOMPAT, "battery-low",
		                   "unit %s: battery at %d%%, a backup needs at least %d%%", serial,
		                   info->battery, minb);
		goto done;
	}
	uint64_t estimate = 0;
	for (size_t i = 0; i < info->domain_count; i++)
		estimate += info->domains[i].bytes;
	if ((rc = bk_wire__recipients(&rcpt, cfg, opts->recipients, opts->recipient_count,
	                              opts->passphrase, opts->passphrase_payload)))
		goto done;
	if (opts->domain_count) {
		if ((dl = json_array()) == NULL) {
			rc = bk__error_oom();
			goto done;
		}
		for (size_t i = 0; i < opts->domain_count; i++)
			json_array_append_new(dl, json_string(opts->domains[i]));
	}
	if (opts->output) {
		struct stat sb;
		if (lstat(opts->output, &sb) == 0) {
			rc = bk__error_set(BK_EEXIST, "exists", "%s: refusing to overwrite",
			                   opts->output);
			goto done;
		}
	} else if (opts->output_dir == NULL) {
		if ((rc = bk_backup_catalog_open(&cat, cfg, 1)) ||
		    (rc = bk_store_open_config(&store, cfg)))
			goto done;
	}

	/* The unit makes (or still keeps) the backup. */
	if ((rc = bk_wire__progress(&prog, "backup", 0, 0, 0, 1)))
		goto done;
	req = json_pack("{s:O, s:O?, s:b}", "recipients", rcpt, "domains", dl, "stream", 1);
	if (req == NULL || (body = json_dumps(req, JSON_COMPACT)) == NULL) {
		rc = bk__error_oom();
		goto done;
	}
	if ((rc = begin_call(dev, body, &ans, reconnect_ms, &prog, &tx.reconnects)))
		goto done;
	id = json_string_value(json_object_get(ans, "id"));
	if (id == NULL || !bk_backup__valid_id(id)) {
		rc = bk__error_set(BK_EFORMAT, "bad-answer",
		                   "unit %s: malformed BACKUP_BEGIN answer", serial);
		goto done;
	}
	/* A streaming unit sends the bytes while it makes them; the size and
	 * the statement come with a BACKUP_BEGIN after the end of the data. */
	int streaming = json_is_true(json_object_get(ans, "streaming"));
	/* A backup the unit will never finish (its making ended, by a power
	 * cut say): the part an earlier run received of it goes. */
	const char *gone = json_string_value(json_object_get(ans, "replaces"));
	if (gone && bk_backup__valid_id(gone) && strcmp(gone, id) != 0)
		drop_part(store, opts->output_dir, gone);
	if (streaming) {
		size = STREAM_LIMIT;
	} else {
		if ((rc = begin_fields(dev, ans, &size, &header, &stext, &stext_len)))
			goto done;
		if ((rc = bk_statement_parse(&st, stext, stext_len)) ||
		    (rc = check_statement(cfg, dev, info, st, size, header))) {
			bk__error_prefix(rc, "unit %s", serial);
			goto done;
		}
		tx.size = size;
	}

	/* Where it goes. */
	if (opts->output) {
		dest = bk__strdup(opts->output);
	} else if (opts->output_dir) {
		dest = bk__asprintf("%s/%s" BK_BACKUP_EXT, opts->output_dir, id);
	} else {
		bk_backup_record r;
		memset(&r, 0, sizeof(r));
		/* Stored by an earlier run that was stopped before BACKUP_END. */
		if (bk_catalog_backup_get(cat, id, &r) == 0) {
			int exists = 0;
			if (bk_store_exists(store, id, &exists) == 0 && exists) {
				location = bk__strdup(r.location);
				bk_backup_record_clear(&r);
				placed = 1;
				goto finish;
			}
			bk_backup_record_clear(&r);
		}
		int exists = 0;
		if ((rc = bk_store_exists(store, id, &exists)))
			goto done;
		if (exists && (rc = bk_store_remove(store, id)))
			goto done;
		if ((rc = bk_store_part_path(store, id, &part)))
			goto done;
	}
	if (part == NULL && dest == NULL) {
		rc = bk__error_oom();
		goto done;
	}
	if (part == NULL && (part = bk__asprintf("%s.part", dest)) == NULL) {
		rc = bk__error_oom();
		goto done;
	}
	uint64_t avail = 0;
	if ((rc = free_bytes(part, &avail)))
		goto done;
	if (avail < estimate) {
		rc = bk__error_set(BK_ENOSPACE, "no-space",
		                   "%s: %llu bytes free, unit %s needs about %llu", part,
		                   (unsigned long long)avail, serial, (unsigned long long)estimate);
		goto done;
	}
	if ((rc = bk_backup__create_locked(part, &fd)))
		goto done;

	/* The transfer, resumed after every lost connection. */
	bk_device_xfer_opts xo = BK_DEVICE_XFER_OPTS_INIT;
	xo.id = id;
	pull_sink ps = {fd, part, size, streaming ? estimate : size, 0, 0, &prog, &done};
	bk_payload_hasher_init(&ps.ph);
	ps.in_order = true;
	int64_t t0 = now_ms();
	while (done < size) {
		uint64_t got = 0;
		rc = bk_device_read_range(dev, BK_DEVICE_BACKUP_READ, done, size - done, sink, &ps,
		                          &xo, &got);
		done += got;
		if (rc == 0 && streaming)
			break; /* the short answer at the end */
		if (rc == 0 && done < size)
			rc = bk__error_set(BK_EVERIFY, "payload-truncated",
			                   "unit %s ended the backup after %llu of %llu bytes",
			                   serial, (unsigned long long)done,
			                   (unsigned long long)size);
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
	if (streaming) {
		/* The whole file is here: its size and statement. */
		json_t *first = ans;
		ans = NULL;
		rc = begin_call(dev, body, &ans, reconnect_ms, &prog, &tx.reconnects);
		const char *id2 = ans ? json_string_value(json_object_get(ans, "id")) : NULL;
		if (rc == 0 && (id2 == NULL || strcmp(id2, id) != 0 ||
		                json_is_true(json_object_get(ans, "streaming"))))
			rc = bk__error_set(BK_EFORMAT, "bad-answer",
			                   "unit %s: the backup it streamed is gone", serial);
		json_decref(first); /* `id` now points into `ans` */
		id = id2;
		if (rc == 0)
			rc = begin_fields(dev, ans, &size, &header, &stext, &stext_len);
		if (rc == 0 && size != done)
			rc = bk__error_set(BK_EVERIFY, "payload-truncated",
			                   "unit %s streamed %llu bytes and announces %llu", serial,
			                   (unsigned long long)done, (unsigned long long)size);
		if (rc == 0 && (rc = bk_statement_parse(&st, stext, stext_len)) == 0)
			rc = check_statement(cfg, dev, info, st, size, header);
		if (rc) {
			bk__error_prefix(rc, "unit %s", serial);
			goto done;
		}
		tx.size = size;
	}
	if (fsync(fd) != 0) {
		rc = bk__error_errno(errno, "%s: fsync", part);
		goto done;
	}
	/* The file is what the unit signed. */
	bk_payload_digest pd;
	bk_statement_info si;
	memset(&pd, 0, sizeof(pd));
	bk_statement_info_get(st, &si);
	if (ps.in_order && ps.hashed == size) {
		/* Hashed on arrival: the header's format is still checked. */
		uint64_t hlen = 0;
		if ((rc = bk_payload_header_file(part, &hlen)))
			goto done;
		if ((rc = bk_payload_hasher_final(&ps.ph, &pd)))
			goto done;
		if (hlen != pd.header_len)
			pd.header_len = UINT64_MAX; /* a mismatch below */
	} else if ((rc = bk_payload_digest_file(part, &pd))) {
		goto done;
	}
	if (pd.header_len != header || pd.payload_len != si.payload_size ||
	    sodium_memcmp(pd.digest, si.payload_digest, BK_BACKUP_DIGEST_LEN) != 0) {
		rc = bk__error_set(BK_EVERIFY, "payload-corrupt",
		                   "unit %s: the received file does not match its statement",
		                   serial);
		goto done;
	}
	size_t slen = 0;
	const uint8_t *sbytes = bk_statement_bytes(st, &slen);
	if (dest) {
		if ((rc = place_file(part, dest, sbytes, slen)))
			goto done;
		placed = 1;
		location = bk__strdup(dest);
	} else {
		if ((rc = bk_store_put(store, id, part, sbytes, slen, &location)))
			goto done;
		placed = 1;
		bk_backup_record r;
		char producer[160], ph[BK_BACKUP_HEX_DIGEST], mh[BK_BACKUP_HEX_DIGEST];
		bk_backup__record_from(&r, st, location, size, producer, ph, mh);
		if ((rc = bk_catalog_backup_add(cat, &r)))
			goto done;
	}
finish:
	if (location == NULL) {
		rc = bk__error_oom();
		goto done;
	}
	/* The unit may drop its copy now. */
	{
		char *eb = bk__asprintf("{\"id\":\"%s\"}", id);
		if (eb == NULL) {
			rc = bk__error_oom();
			goto done;
		}
		rc = bk_device_call(dev, BK_DEVICE_BACKUP_END, eb, NULL, 0);
		if (rc && bk_wire__retryable(rc) &&
		    bk_wire__reconnect(dev, bk_deadline_in(reconnect_ms), &prog) == 0)
			rc = bk_device_call(dev, BK_DEVICE_BACKUP_END, eb, NULL, 0);
		bk__free(eb);
		/* The backup is safe on the terminal: a unit that keeps its copy
		 * only holds space until the next BACKUP_BEGIN. */
		rc = 0;
	}
	if (out) {
		bk_statement_view v;
		bk_statement_get(st, &v);
		bk_strlcpy(out->id, id, sizeof(out->id));
		out->path = bk__strdup(location);
		out->location = dest ? NULL : bk__strdup(location);
		out->statement_path = dest ? bk__asprintf("%s" BK_STATEMENT_EXT, dest) : NULL;
		out->file_size = size;
		out->header_size = header;
		out->payload_size = v.payload_size;
		out->plaintext_size = v.plaintext_size;
		bk_strlcpy(out->payload_digest, v.payload_digest, sizeof(out->payload_digest));
		bk_strlcpy(out->manifest_digest, v.manifest_digest, sizeof(out->manifest_digest));
		out->in_catalog = dest == NULL;
	}
	if (opts->verify) {
		bk_backup_read_opts ro = BK_BACKUP_READ_OPTS_INIT;
		bk_backup_report vr;
		ro.passphrase = opts->passphrase;
		ro.passphrase_payload = opts->passphrase_payload;
		if ((rc = bk_wire__progress(&prog, "verify", 2, 0, 0, 1)))
			goto done;
		memset(&vr, 0, sizeof(vr));
		rc = bk_backup_open(&vb, cfg, dest ? location : id);
		if (rc == 0)
			rc = bk_backup_verify(vb, &ro, &vr);
		if (rc == 0 && out) {
			out->files = vr.files;
			out->file_bytes = vr.file_bytes;
			out->domains = vr.domains;
			out->recorded = vr.recorded;
		}
		bk_backup_report_clear(&vr);
		if (rc)
			goto done;
	}
	rc = bk_wire__progress(&prog, opts->verify ? "verify" : "transfer", opts->verify ? 2 : 1,
	                       size, size, 1);
done:
	if (fd >= 0) {
		if (!placed && part)
			unlink(part);
		close(fd);
	}
	if (stats)
		*stats = tx;
	bk_backup_free(vb);
	bk_catalog_free(cat);
	bk_store_free(store);
	bk_statement_free(st);
	bk__free(location);
	bk__free(dest);
	bk__free(part);
	bk_free(reply);
	free(body);
	json_decref(ans);
	json_decref(req);
	json_decref(rcpt);
	json_decref(dl);
	bk_device_info_free(info);
	return rc;
}
