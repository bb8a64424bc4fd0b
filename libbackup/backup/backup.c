/* Backup files: pack, open, inspect, verify, extract, re-wrap. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "libbackup/archive/archive.h"
#include "libbackup/backup/backup_internal.h"
#include "libbackup/backup/store_s3.h"

#define COPY_BUF (256 * 1024)

struct bk_backup {
	const bk_config *cfg;
	char *path;
	bk_statement *st;
	bk_error st_err;
	char st_msg[512];
	char *catalog_id;
};

/* --- Small helpers --- */

/* Keeps the last error across calls that may set another one. */
typedef struct saved_error {
	int code;
	const char *reason;
	char message[1024];
} saved_error;

static void error_save(saved_error *s)
{
	const bk_error *e = bk_error_last();
	s->code = e->code;
	s->reason = e->reason;
	bk_strlcpy(s->message, e->message ? e->message : "", sizeof(s->message));
}

static int error_restore(const saved_error *s)
{
	return bk__error_set(s->code, s->reason, "%s", s->message);
}

void bk_backup_report_clear(bk_backup_report *r)
{
	if (r == NULL)
		return;
	bk__free(r->path);
	bk__free(r->location);
	bk__free(r->statement_path);
	memset(r, 0, sizeof(*r));
}

const char *bk_backup_domain_name(unsigned i)
{
	return i < BK_DOMAIN_COUNT ? bk_domain_name((int)i) : NULL;
}

static void limits_from_config(const bk_config *cfg, bk_archive_limits *l)
{
	bk_archive_limits def = BK_ARCHIVE_LIMITS_DEFAULT;
	uint64_t v;
	*l = def;
	if (cfg == NULL)
		return;
	if (bk_config_get_u64(cfg, "limits.max_entries", &v) == 0)
		l->max_entries = v;
	if (bk_config_get_u64(cfg, "limits.max_bytes", &v) == 0)
		l->max_total_bytes = v;
	if (bk_config_get_u64(cfg, "limits.max_path", &v) == 0)
		l->max_path = (size_t)v;
	bk_error_clear();
}

typedef struct pass_bridge {
	bk_passphrase_cb cb;
	void *payload;
} pass_bridge;

static int ask_passphrase(bk_secret **out, const char *prompt, void *payload)
{
	pass_bridge *b = payload;
	char buf[1024];
	size_t n = 0;
	*out = NULL;
	if (b->cb == NULL)
		return bk__error_set(BK_EAUTH, "passphrase-required",
				     "the identity file is passphrase-protected and no passphrase "
				     "was given");
	int rc = b->cb(buf, sizeof(buf), &n, prompt, b->payload);
	if (rc == 0 && n > sizeof(buf))
		rc = bk__error_set(BK_EINVALID, NULL, "passphrase too long");
	if (rc == 0)
		rc = bk_secret_from(out, buf, n);
	sodium_memzero(buf, sizeof(buf));
	return rc;
}

static int load_identities(bk_age_identities **out, const bk_config *cfg, const char *path,
			   bk_passphrase_cb cb, void *payload)
{
	pass_bridge bridge = {cb, payload};
	*out = NULL;
	if (path == NULL && cfg)
		path = bk_config_get(cfg, "depot.identity");
	if (path == NULL || path[0] == '\0')
		return bk__error_set(BK_EUSER, "no-identity",
				     "no identity: give -i FILE or set identity in [depot]");
	int rc = bk_age_identities_new(out);
	if (rc == 0)
		rc = bk_age_identities_load(*out, path, 0, ask_passphrase, &bridge);
	if (rc) {
		bk_age_identities_free(*out);
		*out = NULL;
	}
	return rc;
}

/* Parses "age1..." recipients into a new array. */
static int parse_recipients(bk_age_recipient **out, size_t *count, const char *const *list,
			    size_t n)
{
	*out = NULL;
	*count = 0;
	if (n == 0)
		return 0;
	bk_age_recipient *r = bk__calloc(n, sizeof(*r));
	if (r == NULL)
		return BK_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		int rc = bk_age_recipient_parse(&r[i], list[i]);
		if (rc) {
			bk__free(r);
			return bk__error_set(BK_EUSER, "recipient-invalid",
					     "'%.80s' is not an age recipient (age1...)", list[i]);
		}
	}
	*out = r;
	*count = n;
	return 0;
}

/* The depot identity's recipients and backup.escrow_recipients. */
static int default_recipients(bk_age_recipient **out, size_t *count, const bk_config *cfg,
			      bk_passphrase_cb cb, void *payload)
{
	bk_age_identities *ids = NULL;
	bk_age_recipient *r = NULL;
	size_t n = 0, cap = 0;
	char *escrow = NULL;
	int rc = 0;
	*out = NULL;
	*count = 0;
	const char *idpath = bk_config_get(cfg, "depot.identity");
	if (idpath && idpath[0]) {
		if ((rc = load_identities(&ids, cfg, idpath, cb, payload)))
			goto done;
	}
	const char *esc = bk_config_get(cfg, "backup.escrow_recipients");
	size_t nids = ids ? bk_age_identities_count(ids) : 0;
	cap = nids + (esc ? strlen(esc) / 8 + 1 : 0) + 1;
	r = bk__calloc(cap, sizeof(*r));
	if (r == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	for (size_t i = 0; i < nids; i++) {
		const bk_age_identity *id;
		if (bk_age_identities_get(ids, i, &id) == 0)
			bk_age_identity_recipient(&r[n++], id);
	}
	if (esc && esc[0]) {
		escrow = bk__strdup(esc);
		if (escrow == NULL) {
			rc = BK_ENOMEM;
			goto done;
		}
		char *p = escrow;
		while (p && *p) {
			char *comma = strchr(p, ',');
			if (comma)
				*comma = '\0';
			while (*p == ' ' || *p == '\t')
				p++;
			size_t l = strlen(p);
			while (l && (p[l - 1] == ' ' || p[l - 1] == '\t'))
				p[--l] = '\0';
			if (l) {
				if (n == cap) {
					rc = bk__error_set(BK_EUSER, "recipient-invalid",
							   "backup.escrow_recipients: too many");
					goto done;
				}
				if (bk_age_recipient_parse(&r[n], p) != 0) {
					rc = bk__error_set(BK_EUSER, "recipient-invalid",
							   "backup.escrow_recipients: '%.80s' is not "
							   "an age recipient",
							   p);
					goto done;
				}
				n++;
			}
			p = comma ? comma + 1 : NULL;
		}
	}
	if (n == 0) {
		rc = bk__error_set(BK_EUSER, "no-recipients",
				   "no recipients: give -r RECIPIENT or set identity in [depot]");
		goto done;
	}
	*out = r;
	*count = n;
	r = NULL;
done:
	bk__free(escrow);
	bk__free(r);
	bk_age_identities_free(ids);
	return rc;
}

static void hex32(char out[BK_BACKUP_HEX_DIGEST], const uint8_t d[BK_BACKUP_DIGEST_LEN])
{
	bk_hex_encode(out, d, BK_BACKUP_DIGEST_LEN);
}

static unsigned manifest_domains(const bk_manifest *m)
{
	unsigned set = 0;
	for (int d = 0; d < BK_DOMAIN_COUNT; d++)
		if (bk_manifest_domains(m)->d[d].present)
			set |= BK_DOMAIN_BIT(d);
	return set;
}

void bk_backup__record_from(bk_backup_record *r, const bk_statement *st, const char *location,
			uint64_t file_size, char producer[160], char ph[BK_BACKUP_HEX_DIGEST],
			char mh[BK_BACKUP_HEX_DIGEST])
{
	bk_statement_view v;
	size_t len = 0;
	bk_statement_get(st, &v);
	memset(r, 0, sizeof(*r));
	r->id = (char *)v.backup_id;
	r->location = (char *)location;
	r->serial = (char *)v.serial;
	r->model = (char *)v.model;
	r->hw_rev = (char *)v.hardware_revision;
	r->fw_version = (char *)v.firmware_version;
	r->schema = (int64_t)v.schema_version;
	r->created = (char *)v.created;
	snprintf(producer, 160, "%s:%s", v.producer_role, v.producer ? v.producer : "");
	r->producer = producer;
	r->plaintext_size = v.plaintext_size;
	r->file_size = file_size;
	bk_strlcpy(ph, v.payload_digest, BK_BACKUP_HEX_DIGEST);
	bk_strlcpy(mh, v.manifest_digest, BK_BACKUP_HEX_DIGEST);
	r->payload_digest = ph;
	r->manifest_digest = mh;
	r->statement = (uint8_t *)bk_statement_bytes(st, &len);
	r->statement_len = len;
}

static int catalog_add(const bk_config *cfg, bk_catalog *cat, const bk_statement *st,
		       const char *location, uint64_t file_size)
{
	bk_backup_record r;
	char producer[160], ph[BK_BACKUP_HEX_DIGEST], mh[BK_BACKUP_HEX_DIGEST];
	(void)cfg;
	bk_backup__record_from(&r, st, location, file_size, producer, ph, mh);
	return bk_catalog_backup_add(cat, &r);
}

/* The payload and the manifest against what the statement says. */
static int check_statement(const bk_statement *st, const bk_payload_digest *pd,
			   const bk_manifest *m, int have_plaintext, uint64_t plaintext)
{
	bk_statement_info si;
	bk_statement_info_get(st, &si);
	if (!pd->done)
		return bk__error_set(BK_ERROR, "payload-digest", "payload digest not computed");
	if (pd->payload_len < si.payload_size)
		return bk__error_set(BK_EVERIFY, "payload-truncated",
				     "payload truncated: %llu of %llu bytes",
				     (unsigned long long)pd->payload_len,
				     (unsigned long long)si.payload_size);
	if (pd->payload_len != si.payload_size ||
	    sodium_memcmp(pd->digest, si.payload_digest, BK_BACKUP_DIGEST_LEN) != 0)
		return bk__error_set(BK_EVERIFY, "payload-corrupt",
				     "payload digest does not match the statement");
	if (have_plaintext && plaintext != si.plaintext_size)
		return bk__error_set(BK_EVERIFY, "statement-mismatch",
				     "memory archive is %llu bytes, the statement says %llu",
				     (unsigned long long)plaintext,
				     (unsigned long long)si.plaintext_size);
	if (m == NULL)
		return 0;
	uint8_t md[BK_ARCHIVE_DIGEST_LEN];
	if (!bk_manifest_raw_digest(m, md) ||
	    sodium_memcmp(md, si.manifest_digest, BK_BACKUP_DIGEST_LEN) != 0)
		return bk__error_set(BK_EVERIFY, "statement-mismatch",
				     "manifest digest does not match the statement");
	const char *hw = bk_manifest_hardware_revision(m);
	if (strcmp(bk_manifest_backup_id(m), si.backup_id) != 0 ||
	    strcmp(bk_manifest_serial(m), si.serial) != 0 ||
	    strcmp(bk_manifest_model(m), si.model) != 0 ||
	    strcmp(hw ? hw : "", si.hardware_revision) != 0 ||
	    strcmp(bk_manifest_firmware_version(m), si.firmware_version) != 0 ||
	    bk_manifest_schema_version(m) != si.schema_version ||
	    bk_manifest_created(m) != si.created)
		return bk__error_set(BK_EVERIFY, "statement-mismatch",
				     "manifest and statement describe different backups");
	return 0;
}

/* --- Pack --- */

static int fsync_fd(int fd, const char *path)
{
	if (fsync(fd) != 0)
		return bk__error_errno(errno, "%s: fsync", path);
	return 0;
}

/* Writes the backup into `part` (already created and locked as `fd`). */
static int write_backup(const char *part, int fd, const char *dir, const bk_config *cfg,
			const bk_archive_write_opts *wo, const bk_age_encrypt_opts *eo,
			bk_manifest **out_m, bk_archive_stats *stats, bk_payload_digest *pd)
{
	bk_stream *fdw = NULL, *aw = NULL, *hw = NULL, *enc = NULL;
	(void)cfg;
	int rc = bk_stream_fd_new(&fdw, fd, 0);
	if (rc)
		return rc;
	/* The file is written on its own thread: a disk that makes write(2)
	 * wait then holds up neither the encryption nor the compression. */
	if ((rc = bk_archive__async_writer_new(&aw, fdw, 1, BK_ARCHIVE_ASYNC_WRITEBACK))) {
		bk_stream_free(fdw);
		return rc;
	}
	if ((rc = bk_payload_hash_writer(&hw, aw, 1, pd))) {
		bk_stream_free(aw);
		return rc;
	}
	if ((rc = bk_age_encrypt_new(&enc, hw, 1, eo))) {
		bk_stream_free(hw);
		return rc;
	}
	rc = bk_archive_write(enc, dir, wo, out_m, stats);
	if (rc) {
		bk_stream_free(enc);
		return rc;
	}
	rc = bk_stream_close(enc, BK_DEADLINE_NONE);
	if (rc == 0)
		rc = fsync_fd(fd, part);
	return rc;
}

int bk_backup_pack(const bk_config *cfg, const char *dir, const bk_backup_pack_opts *opts,
		   bk_backup_report *out)
{
	bk_keyfile *key = NULL;
	bk_cert *cert = NULL;
	bk_age_recipient *rcpt = NULL;
	size_t nrcpt = 0;
	bk_store *store = NULL;
	bk_catalog *cat = NULL;
	bk_manifest *m = NULL;
	bk_statement *st = NULL;
	uint8_t *stmt = NULL;
	size_t stmt_len = 0;
	char *part = NULL, *spath = NULL, *location = NULL, *outdir = NULL;
	int fd = -1, placed = 0;
	char id[37];
	bk_payload_digest pd;
	bk_archive_stats stats;
	int rc;

	if (out)
		memset(out, 0, sizeof(*out));
	if (cfg == NULL || dir == NULL || opts == NULL || opts->version < 1)
		return bk__error_set(BK_EINVALID, NULL, "pack: missing argument");
	if (opts->serial == NULL || opts->model == NULL || opts->firmware_version == NULL)
		return bk__error_set(BK_EUSER, "usage",
				     "pack needs --serial, --model and --fw-version");
	struct stat sb;
	if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
		return bk__error_set(BK_ENOTFOUND, "not-found", "%s: no such memory folder", dir);
	/* The producer: the terminal's key and certificate. */
	const char *kpath = bk_config_get(cfg, "depot.terminal_key");
	const char *cpath = bk_config_get(cfg, "depot.terminal_cert");
	if (kpath == NULL || cpath == NULL)
		return bk__error_set(BK_EUSER, "config-missing",
				     "pack signs with the terminal key: set terminal_key and "
				     "terminal_cert in [depot]");
	if ((rc = bk_keyfile_read(&key, kpath)) || (rc = bk_cert_read(&cert, cpath)))
		goto done;
	if (bk_cert_role_get(cert) != BK_CERT_ROLE_TERMINAL) {
		rc = bk__error_set(BK_EUSER, "wrong-role", "%s: not a terminal certificate", cpath);
		goto done;
	}
	if ((rc = bk_cert_check_ed25519_key(cert, bk_keyfile_ed25519_public(key)))) {
		bk__error_prefix(rc, "%s does not belong to %s", cpath, kpath);
		goto done;
	}
	if (opts->recipient_count)
		rc = parse_recipients(&rcpt, &nrcpt, opts->recipients, opts->recipient_count);
	else
		rc = default_recipients(&rcpt, &nrcpt, cfg, opts->passphrase,
					opts->passphrase_payload);
	if (rc)
		goto done;

	/* Where the file goes. */
	bk_backup__new_id(id);
	if (opts->output) {
		if (lstat(opts->output, &sb) == 0) {
			rc = bk__error_set(BK_EEXIST, "exists", "%s: refusing to overwrite",
					   opts->output);
			goto done;
		}
		part = bk__asprintf("%s.part", opts->output);
		spath = bk__asprintf("%s" BK_STATEMENT_EXT, opts->output);
		outdir = bk_path_dirname(opts->output);
		if (part == NULL || spath == NULL || outdir == NULL) {
			rc = BK_ENOMEM;
			goto done;
		}
	} else {
		if ((rc = bk_backup_catalog_open(&cat, cfg, 1)) ||
		    (rc = bk_store_open_config(&store, cfg)) ||
		    (rc = bk_store_part_path(store, id, &part)))
			goto done;
	}
	if ((rc = bk_backup__create_locked(part, &fd)))
		goto done;

	bk_archive_write_opts wo = BK_ARCHIVE_WRITE_OPTS_INIT;
	wo.info.serial = opts->serial;
	wo.info.model = opts->model;
	wo.info.hardware_revision = opts->hardware_revision ? opts->hardware_revision : "";
	wo.info.firmware_version = opts->firmware_version;
	wo.info.schema_version = opts->schema_version;
	wo.info.backup_id = id;
	wo.info.created = (int64_t)time(NULL);
	uint64_t level = 3;
	if (bk_config_get_u64(cfg, "backup.compression_level", &level) != 0)
		level = 3;
	wo.compression_level = level >= 1 && level <= 19 ? (int)level : 3;
	limits_from_config(cfg, &wo.limits);
	/* Hashing, reading, compressing and encrypting overlap on worker
	 * threads; the output stream chain below is only used by one of them
	 * at a time. */
	wo.threads = bk_archive__auto_threads();
	wo.progress = opts->progress;
	wo.progress_payload = opts->progress_payload;
	bk_age_encrypt_opts eo = BK_AGE_ENCRYPT_OPTS_INIT;
	eo.recipients = rcpt;
	eo.recipient_count = nrcpt;
	if ((rc = write_backup(part, fd, dir, cfg, &wo, &eo, &m, &stats, &pd)))
		goto done;

	/* The statement. */
	bk_statement_info si;
	memset(&si, 0, sizeof(si));
	si.backup_id = id;
	si.serial = opts->serial;
	si.model = opts->model;
	si.hardware_revision = wo.info.hardware_revision;
	si.firmware_version = opts->firmware_version;
	si.schema_version = opts->schema_version;
	si.created = wo.info.created;
	si.plaintext_size = stats.compressed_bytes;
	si.payload_size = pd.payload_len;
	memcpy(si.payload_digest, pd.digest, BK_BACKUP_DIGEST_LEN);
	if (!bk_manifest_raw_digest(m, si.manifest_digest)) {
		rc = bk__error_set(BK_ERROR, "manifest-digest", "pack: no manifest digest");
		goto done;
	}
	if ((rc = bk_statement_sign(&stmt, &stmt_len, &si, cert, bk_keyfile_ed25519_secret(key))))
		goto done;
	if ((rc = bk_statement_parse(&st, stmt, stmt_len)))
		goto done;
	const char *sca = bk_config_get(cfg, "trust.service_ca");
	if (sca && sca[0] && (rc = bk_statement_verify(st, cfg)))
		goto done;

	/* Into place: statement, file, folder; then the catalog. */
	if (opts->output) {
		if ((rc = bk_file_write_atomic(spath, stmt, stmt_len, 0644, 0)))
			goto done;
		bk_backup__hook("before-rename");
		if (renameat2(AT_FDCWD, part, AT_FDCWD, opts->output, RENAME_NOREPLACE) != 0) {
			rc = errno == EEXIST ? bk__error_set(BK_EEXIST, "exists",
							     "%s: refusing to overwrite",
							     opts->output)
					     : bk__error_errno(errno, "%s: rename", opts->output);
			unlink(spath);
			goto done;
		}
		placed = 1;
		if ((rc = bk_fsync_dir(outdir)))
			goto done;
		location = bk__strdup(opts->output);
		if (location == NULL) {
			rc = BK_ENOMEM;
			goto done;
		}
	} else {
		if ((rc = bk_store_put(store, id, part, stmt, stmt_len, &location)))
			goto done;
		placed = 1;
		bk_backup__hook("before-commit");
		if ((rc = catalog_add(cfg, cat, st, location, pd.header_len + pd.payload_len))) {
			saved_error e;
			error_save(&e);
			bk_store_remove(store, id);
			error_restore(&e);
			goto done;
		}
	}
	if (out) {
		bk_strlcpy(out->id, id, sizeof(out->id));
		out->path = bk__strdup(location);
		out->location = opts->output ? NULL : bk__strdup(location);
		out->statement_path = opts->output ? bk__strdup(spath) : NULL;
		out->file_size = pd.header_len + pd.payload_len;
		out->header_size = pd.header_len;
		out->payload_size = pd.payload_len;
		out->plaintext_size = stats.compressed_bytes;
		out->files = stats.files;
		out->file_bytes = stats.file_bytes;
		hex32(out->payload_digest, pd.digest);
		hex32(out->manifest_digest, si.manifest_digest);
		out->domains = manifest_domains(m);
		out->in_catalog = opts->output == NULL;
	}
done:
	if (fd >= 0) {
		if (!placed)
			unlink(part);
		close(fd);
	}
	bk__free(location);
	bk__free(outdir);
	bk__free(spath);
	bk__free(part);
	bk__free(stmt);
	bk_statement_free(st);
	bk_manifest_free(m);
	bk_catalog_free(cat);
	bk_store_free(store);
	bk__free(rcpt);
	bk_cert_free(cert);
	bk_keyfile_free(key);
	return rc;
}

/* --- Opening --- */

static void keep_statement_error(bk_backup *b)
{
	const bk_error *e = bk_error_last();
	b->st_err.code = e->code;
	b->st_err.reason = e->reason;
	bk_strlcpy(b->st_msg, e->message ? e->message : "", sizeof(b->st_msg));
	b->st_err.message = b->st_msg;
}

static bool looks_like_id(const char *s)
{
	size_t n = strlen(s);
	if (n < 8 || n > 36)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') || s[i] == '-'))
			return false;
	return true;
}

int bk_backup_open(bk_backup **out, const bk_config *cfg, const char *what)
{
	bk_backup *b = NULL;
	bk_catalog *cat = NULL;
	bk_backup_record rec;
	char *spath = NULL, *real = NULL;
	struct stat sb;
	int rc = 0;
	memset(&rec, 0, sizeof(rec));
	if (out == NULL || what == NULL)
		return bk__error_set(BK_EINVALID, NULL, "backup: nothing to open");
	*out = NULL;
	b = bk__calloc(1, sizeof(*b));
	if (b == NULL)
		return BK_ENOMEM;
	b->cfg = cfg;
	if (stat(what, &sb) == 0) {
		if (!S_ISREG(sb.st_mode)) {
			rc = bk__error_set(BK_EUSER, "not-a-file", "%s: not a backup file", what);
			goto done;
		}
		b->path = bk__strdup(what);
		spath = bk__asprintf("%s" BK_STATEMENT_EXT, what);
		if (b->path == NULL || spath == NULL) {
			rc = BK_ENOMEM;
			goto done;
		}
		if (bk_statement_read(&b->st, spath) != 0)
			keep_statement_error(b);
		/* Is this the catalog's copy? */
		if (b->st && bk_backup_catalog_open(&cat, cfg, 0) == 0) {
			bk_statement_view v;
			bk_statement_get(b->st, &v);
			real = realpath(what, NULL);
			if (real && bk_catalog_backup_get(cat, v.backup_id, &rec) == 0 &&
			    strcmp(rec.location, real) == 0) {
				b->catalog_id = bk__strdup(rec.id);
				if (b->catalog_id == NULL) {
					rc = BK_ENOMEM;
					goto done;
				}
			}
		}
		bk_error_clear();
	} else if (strchr(what, '/') == NULL && looks_like_id(what)) {
		rc = bk_backup_catalog_open(&cat, cfg, 0);
		if (rc == 0)
			rc = bk_catalog_backup_get(cat, what, &rec);
		if (rc == BK_ENOTFOUND)
			rc = bk__error_set(BK_ENOTFOUND, "backup-not-found",
					   "no backup file or catalog backup '%s'", what);
		if (rc)
			goto done;
		/* A file, or a download from the object store the row names. */
		if ((rc = bk_store__fetch_location(cfg, rec.id, rec.location, &b->path)))
			goto done;
		if (stat(b->path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
			rc = bk__error_set(BK_ENOTFOUND, "backup-file-missing",
					   "backup %s: its file %s is missing", rec.id, rec.location);
			goto done;
		}
		b->catalog_id = bk__strdup(rec.id);
		if (b->path == NULL || b->catalog_id == NULL) {
			rc = BK_ENOMEM;
			goto done;
		}
		if (bk_statement_parse(&b->st, rec.statement, rec.statement_len) != 0)
			keep_statement_error(b);
		bk_error_clear();
	} else {
		rc = bk__error_set(BK_ENOTFOUND, "backup-not-found",
				   "no backup file or catalog backup '%s'", what);
		goto done;
	}
	*out = b;
	b = NULL;
done:
	free(real);
	bk__free(spath);
	bk_backup_record_clear(&rec);
	bk_catalog_free(cat);
	bk_backup_free(b);
	return rc;
}

void bk_backup_free(bk_backup *b)
{
	if (b == NULL)
		return;
	bk_statement_free(b->st);
	bk__free(b->path);
	bk__free(b->catalog_id);
	bk__free(b);
}

const char *bk_backup_path(const bk_backup *b)
{
	return b ? b->path : NULL;
}

const bk_statement *bk_backup_statement(const bk_backup *b)
{
	return b ? b->st : NULL;
}

const bk_error *bk_backup_statement_error(const bk_backup *b)
{
	return b && b->st == NULL ? &b->st_err : NULL;
}

const char *bk_backup_catalog_id(const bk_backup *b)
{
	return b ? b->catalog_id : NULL;
}

/* The statement, verified; its absence or failure is the error. */
static int require_statement(bk_backup *b)
{
	if (b->st == NULL) {
		if (b->st_err.code == 0)
			return bk__error_set(BK_EVERIFY, "statement-missing", "%s: no statement",
					     b->path);
		return bk__error_set(b->st_err.code, b->st_err.reason, "%s", b->st_msg);
	}
	return bk_statement_verify(b->st, b->cfg);
}

/* --- Inspect --- */

int bk_backup_inspect(bk_backup *b, bk_backup_inspection *out)
{
	bk_stream *f = NULL;
	uint8_t *hdr = NULL;
	size_t hdr_len = 0;
	struct stat sb;
	bk_age_decrypt_opts dopts = BK_AGE_DECRYPT_OPTS_INIT;
	dopts.armor = BK_AGE_ARMOR_NO;
	int rc;
	if (b == NULL || out == NULL)
		return bk__error_set(BK_EINVALID, NULL, "inspect: missing argument");
	memset(out, 0, sizeof(*out));
	if (stat(b->path, &sb) != 0)
		return bk__error_errno(errno, "%s", b->path);
	out->file_size = (uint64_t)sb.st_size;
	if ((rc = bk_stream_file_open(&f, b->path)))
		return rc;
	rc = bk_age_header_read(&hdr, &hdr_len, f, &dopts, BK_DEADLINE_NONE);
	bk_stream_free(f);
	if (rc)
		return bk__error_prefix(rc, "%s", b->path);
	out->header_size = hdr_len;
	for (size_t pos = 0; pos < hdr_len;) {
		const uint8_t *nl = memchr(hdr + pos, '\n', hdr_len - pos);
		size_t end = nl ? (size_t)(nl - hdr) : hdr_len;
		if (end - pos > 3 && memcmp(hdr + pos, "-> ", 3) == 0) {
			if (out->stanza_count < BK_BACKUP_INSPECT_STANZAS) {
				size_t s = pos + 3, e = s;
				while (e < end && hdr[e] != ' ')
					e++;
				size_t n = e - s < 31 ? e - s : 31;
				memcpy(out->stanza_types[out->stanza_count], hdr + s, n);
				out->stanza_types[out->stanza_count][n] = '\0';
			}
			out->stanza_count++;
		}
		pos = end + 1;
	}
	bk__free(hdr);
	out->statement_present = b->st != NULL || strcmp(b->st_err.reason ? b->st_err.reason : "",
							 "statement-missing") != 0;
	out->statement_parsed = b->st != NULL;
	if (b->st) {
		bk_statement_view v;
		bk_statement_get(b->st, &v);
		out->payload_size_matches = out->file_size - out->header_size == v.payload_size;
		rc = bk_statement_verify(b->st, b->cfg);
		out->statement_valid = rc == 0;
	} else {
		rc = require_statement(b);
	}
	if (rc) {
		bk_strlcpy(out->statement_error_reason, bk_error_last()->reason,
			   sizeof(out->statement_error_reason));
		bk_strlcpy(out->statement_error, bk_error_last()->message,
			   sizeof(out->statement_error));
	}
	bk_error_clear();
	return 0;
}

/* --- Reading the payload --- */

/* Decrypts the backup into `dest` (NULL: verify only) and checks it
 * against the statement. */
static int read_backup(bk_backup *b, const bk_backup_read_opts *o, const char *dest,
		       unsigned domains, bk_backup_report *r)
{
	bk_age_identities *ids = NULL;
	bk_stream *f = NULL, *h = NULL, *dec = NULL;
	bk_manifest *m = NULL;
	uint8_t *hdr = NULL, *buf = NULL;
	size_t hdr_len = 0;
	bk_payload_digest pd;
	bk_archive_stats stats;
	bk_age_decrypt_opts dopts = BK_AGE_DECRYPT_OPTS_INIT;
	dopts.armor = BK_AGE_ARMOR_NO;
	int rc;

	if ((rc = load_identities(&ids, b->cfg, o->identity, o->passphrase,
				  o->passphrase_payload)))
		goto done;
	if ((rc = bk_stream_file_open(&f, b->path)))
		goto done;
	rc = bk_age_header_read(&hdr, &hdr_len, f, &dopts, BK_DEADLINE_NONE);
	bk_stream_free(f);
	f = NULL;
	if (rc)
		goto done;
	if ((rc = bk_stream_file_open(&f, b->path)))
		goto done;
	if ((rc = bk_payload_hash_reader(&h, f, 1, hdr_len, &pd)))
		goto done;
	f = NULL;
	if ((rc = bk_age_decrypt_new(&dec, h, 1, ids, &dopts, BK_DEADLINE_NONE)))
		goto done;
	h = NULL;
	/* Reading the file, its payload digest and the decryption run on a
	 * thread of their own, ahead of decompression and the entry digests. */
	bk_stream *ahead = NULL;
	if ((rc = bk_archive__async_reader_new(&ahead, dec, 1)))
		goto done;
	dec = ahead;
	bk_archive_read_opts ro = BK_ARCHIVE_READ_OPTS_INIT;
	ro.dest_dir = dest;
	ro.domains = domains;
	limits_from_config(b->cfg, &ro.limits);
	ro.progress = o->progress;
	ro.progress_payload = o->progress_payload;
	if ((rc = bk_archive_read(dec, &ro, &m, &stats)))
		goto done;
	/* The rest of the payload: the final chunk must verify. */
	buf = bk__malloc(BK_AGE_CHUNK_SIZE);
	if (buf == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	for (;;) {
		size_t n = 0;
		if ((rc = bk_stream_read(dec, buf, BK_AGE_CHUNK_SIZE, &n, BK_DEADLINE_NONE)))
			goto done;
		if (n == 0)
			break;
	}
	if ((rc = check_statement(b->st, &pd, m, 1, dec->bytes_in)))
		goto done;
	if (r) {
		r->header_size = hdr_len;
		r->payload_size = pd.payload_len;
		r->file_size = hdr_len + pd.payload_len;
		r->plaintext_size = dec->bytes_in;
		r->files = bk_manifest_count(m);
		r->file_bytes = bk_manifest_total_bytes(m);
		hex32(r->payload_digest, pd.digest);
		uint8_t md[BK_ARCHIVE_DIGEST_LEN];
		if (bk_manifest_raw_digest(m, md))
			hex32(r->manifest_digest, md);
		r->domains = dest && domains ? domains : manifest_domains(m);
	}
done:
	if (rc == BK_EVERIFY && hdr_len && strcmp(bk_error_last()->reason, "payload-corrupt") == 0) {
		/* A cut inside a chunk looks like a corrupt final chunk to age; the
		 * signed statement tells the two apart. */
		struct stat sb;
		bk_statement_info si;
		bk_statement_info_get(b->st, &si);
		if (stat(b->path, &sb) == 0 && (uint64_t)sb.st_size >= hdr_len &&
		    (uint64_t)sb.st_size - hdr_len < si.payload_size)
			rc = bk__error_set(BK_EVERIFY, "payload-truncated",
					   "payload truncated: %llu of %llu bytes",
					   (unsigned long long)((uint64_t)sb.st_size - hdr_len),
					   (unsigned long long)si.payload_size);
	}
	bk__free(buf);
	bk__free(hdr);
	bk_manifest_free(m);
	bk_stream_free(dec);
	bk_stream_free(h);
	bk_stream_free(f);
	bk_age_identities_free(ids);
	return rc;
}

static int quick_check(bk_backup *b, bk_backup_report *r)
{
	bk_payload_digest pd;
	int rc = bk_payload_digest_file(b->path, &pd);
	if (rc == 0)
		rc = check_statement(b->st, &pd, NULL, 0, 0);
	if (rc == 0 && r) {
		bk_statement_view v;
		bk_statement_get(b->st, &v);
		r->header_size = pd.header_len;
		r->payload_size = pd.payload_len;
		r->file_size = pd.header_len + pd.payload_len;
		r->plaintext_size = v.plaintext_size;
		hex32(r->payload_digest, pd.digest);
		bk_strlcpy(r->manifest_digest, v.manifest_digest, sizeof(r->manifest_digest));
	}
	return rc;
}

static void report_start(bk_backup *b, bk_backup_report *r)
{
	memset(r, 0, sizeof(*r));
	if (b->st) {
		bk_statement_view v;
		bk_statement_get(b->st, &v);
		bk_strlcpy(r->id, v.backup_id, sizeof(r->id));
	}
	r->path = bk__strdup(b->path);
	r->in_catalog = b->catalog_id != NULL;
}

int bk_backup_verify(bk_backup *b, const bk_backup_read_opts *opts, bk_backup_report *out)
{
	bk_backup_read_opts def = BK_BACKUP_READ_OPTS_INIT;
	bk_backup_report local;
	bk_backup_report *r = out ? out : &local;
	int rc;
	if (b == NULL)
		return bk__error_set(BK_EINVALID, NULL, "verify: no backup");
	if (opts == NULL)
		opts = &def;
	report_start(b, r);
	rc = require_statement(b);
	if (rc == 0)
		rc = opts->quick ? quick_check(b, r) : read_backup(b, opts, NULL, 0, r);
	if (rc)
		bk__error_prefix(rc, "%s", b->path);
	/* Record the outcome, keeping the error. The identity missing is not
	 * an outcome of the backup. */
	int identity_problem = rc == BK_EAUTH || rc == BK_EUSER || rc == BK_ENOMEM ||
			       rc == BK_ECANCELLED;
	if (b->catalog_id && !identity_problem) {
		saved_error e;
		bk_catalog *cat = NULL;
		error_save(&e);
		if (bk_backup_catalog_open(&cat, b->cfg, 0) == 0 &&
		    bk_catalog_verification_add(cat, b->catalog_id, opts->quick ? "quick" : "full",
						rc == 0, rc ? e.reason : NULL,
						rc ? e.message : NULL) == 0)
			r->recorded = 1;
		bk_catalog_free(cat);
		error_restore(&e);
	}
	if (out == NULL)
		bk_backup_report_clear(&local);
	return rc;
}

/* --- Extract --- */

static int domains_from_names(unsigned *out, const char *const *names, size_t n)
{
	*out = 0;
	for (size_t i = 0; i < n; i++) {
		int d = bk_domain_lookup(names[i], strlen(names[i]));
		if (d < 0)
			return bk__error_set(BK_EUSER, "unknown-domain",
					     "'%.64s' is not a memory domain (personality, memories, "
					     "map, photos, settings, logs)",
					     names[i]);
		*out |= BK_DOMAIN_BIT(d);
	}
	return 0;
}

/* Makes `dir` or takes an existing empty one; *made says which. */
static int prepare_dir(const char *dir, int *made)
{
	*made = 0;
	char *parent = bk_path_dirname(dir);
	if (parent == NULL)
		return BK_ENOMEM;
	int rc = bk_mkdir_p(parent, 0755);
	bk__free(parent);
	if (rc)
		return rc;
	if (mkdir(dir, 0700) == 0) {
		*made = 1;
		return 0;
	}
	if (errno != EEXIST)
		return bk__error_errno(errno, "%s: create", dir);
	struct stat sb;
	if (lstat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
		return bk__error_set(BK_EEXIST, "exists", "%s: exists and is not a folder", dir);
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return bk__error_errno(errno, "%s: open", dir);
	DIR *d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return bk__error_errno(errno, "%s: open", dir);
	}
	struct dirent *e;
	int empty = 1;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			empty = 0;
	closedir(d);
	if (!empty)
		return bk__error_set(BK_EEXIST, "destination-not-empty",
				     "%s: not empty; extract into a new or empty folder", dir);
	return 0;
}

int bk_backup_extract(bk_backup *b, const char *dir, const bk_backup_read_opts *opts,
		      bk_backup_report *out)
{
	bk_backup_read_opts def = BK_BACKUP_READ_OPTS_INIT;
	bk_backup_report local;
	bk_backup_report *r = out ? out : &local;
	char *stage = NULL;
	char stage_name[64];
	int dirfd = -1, made = 0, staged = 0, rc;
	unsigned domains = 0;
	if (b == NULL || dir == NULL)
		return bk__error_set(BK_EINVALID, NULL, "extract: missing argument");
	if (opts == NULL)
		opts = &def;
	report_start(b, r);
	if ((rc = domains_from_names(&domains, opts->domains, opts->domain_count)))
		goto done;
	if ((rc = require_statement(b)))
		goto done;
	if ((rc = prepare_dir(dir, &made)))
		goto done;
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dirfd < 0) {
		rc = bk__error_errno(errno, "%s: open", dir);
		goto done;
	}
	uint8_t rnd[8];
	char hex[17];
	randombytes_buf(rnd, sizeof(rnd));
	bk_hex_encode(hex, rnd, sizeof(rnd));
	snprintf(stage_name, sizeof(stage_name), ".extract-%s", hex);
	if (mkdirat(dirfd, stage_name, 0700) != 0) {
		rc = bk__error_errno(errno, "%s/%s: create", dir, stage_name);
		goto done;
	}
	staged = 1;
	stage = bk__asprintf("%s/%s", dir, stage_name);
	if (stage == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	if ((rc = read_backup(b, opts, stage, domains, r)))
		goto done;
	/* Every check passed: the domains into place. */
	for (int d = 0; d < BK_DOMAIN_COUNT; d++) {
		if (!(r->domains & BK_DOMAIN_BIT(d)))
			continue;
		char from[128];
		snprintf(from, sizeof(from), "%s/%s", stage_name, bk_domain_name(d));
		struct stat sb;
		if (fstatat(dirfd, from, &sb, AT_SYMLINK_NOFOLLOW) != 0)
			continue;
		if (renameat2(dirfd, from, dirfd, bk_domain_name(d), RENAME_NOREPLACE) != 0) {
			rc = bk__error_errno(errno, "%s/%s: move into place", dir,
					     bk_domain_name(d));
			goto done;
		}
	}
	if (fsync(dirfd) != 0) {
		rc = bk__error_errno(errno, "%s: fsync", dir);
		goto done;
	}
done:
	if (dirfd >= 0) {
		if (staged) {
			saved_error e;
			error_save(&e);
			int rm = bk_archive__remove_tree(dirfd, stage_name);
			if (rc == 0 && rm)
				rc = rm;
			else
				error_restore(&e);
		}
		if (rc) {
			/* Nothing left behind: domains moved before a failure go too. */
			saved_error e;
			error_save(&e);
			for (int d = 0; made && d < BK_DOMAIN_COUNT; d++)
				bk_archive__remove_tree(dirfd, bk_domain_name(d));
			error_restore(&e);
		}
		close(dirfd);
	}
	if (rc && made)
		rmdir(dir);
	bk__free(stage);
	if (rc)
		bk__error_prefix(rc, "%s", b->path);
	if (out == NULL)
		bk_backup_report_clear(&local);
	return rc;
}

/* --- Re-wrap --- */

int bk_backup_rewrap(bk_backup *b, const char *output, const char *const *recipients,
		     size_t recipient_count, const bk_backup_read_opts *opts, bk_backup_report *out)
{
	bk_backup_read_opts def = BK_BACKUP_READ_OPTS_INIT;
	bk_backup_report local;
	bk_backup_report *r = out ? out : &local;
	bk_age_identities *ids = NULL;
	bk_age_recipient *rcpt = NULL;
	size_t nrcpt = 0;
	bk_stream *in = NULL, *atomic = NULL, *hw = NULL;
	char *spath = NULL;
	bk_payload_digest pd;
	uint64_t old_len = 0, new_len = 0;
	struct stat sb;
	int rc, stmt_written = 0;
	if (b == NULL || output == NULL)
		return bk__error_set(BK_EINVALID, NULL, "rewrap: missing argument");
	if (opts == NULL)
		opts = &def;
	report_start(b, r);
	if (recipient_count == 0) {
		rc = bk__error_set(BK_EUSER, "no-recipients", "rewrap needs -r RECIPIENT");
		goto done;
	}
	if ((rc = parse_recipients(&rcpt, &nrcpt, recipients, recipient_count)))
		goto done;
	if ((rc = require_statement(b)))
		goto done;
	if (lstat(output, &sb) == 0) {
		rc = bk__error_set(BK_EEXIST, "exists", "%s: refusing to overwrite", output);
		goto done;
	}
	spath = bk__asprintf("%s" BK_STATEMENT_EXT, output);
	if (spath == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	if ((rc = load_identities(&ids, b->cfg, opts->identity, opts->passphrase,
				  opts->passphrase_payload)))
		goto done;
	if ((rc = bk_stream_file_open(&in, b->path)))
		goto done;
	if ((rc = bk_stream_atomic_new(&atomic, output, 0600, 1)))
		goto done;
	if ((rc = bk_payload_hash_writer(&hw, atomic, 1, &pd)))
		goto done;
	atomic = NULL;
	bk_age_encrypt_opts to = BK_AGE_ENCRYPT_OPTS_INIT;
	to.recipients = rcpt;
	to.recipient_count = nrcpt;
	if ((rc = bk_age_rewrap(hw, in, ids, &to, &old_len, &new_len, BK_DEADLINE_NONE)))
		goto done;
	if ((rc = bk_payload_hash_writer_done(hw)))
		goto done;
	if ((rc = check_statement(b->st, &pd, NULL, 0, 0)))
		goto done;
	size_t slen = 0;
	const uint8_t *sbytes = bk_statement_bytes(b->st, &slen);
	if ((rc = bk_file_write_atomic(spath, sbytes, slen, 0644, 0)))
		goto done;
	stmt_written = 1;
	rc = bk_stream_close(hw, BK_DEADLINE_NONE);
	hw = NULL;
	if (rc)
		goto done;
	bk__free(r->path);
	r->path = bk__strdup(output);
	r->statement_path = bk__strdup(spath);
	r->header_size = new_len;
	r->payload_size = pd.payload_len;
	r->file_size = new_len + pd.payload_len;
	hex32(r->payload_digest, pd.digest);
done:
	if (rc && stmt_written)
		unlink(spath);
	bk_stream_free(hw);
	bk_stream_free(atomic);
	bk_stream_free(in);
	bk_age_identities_free(ids);
	bk__free(rcpt);
	bk__free(spath);
	if (out == NULL)
		bk_backup_report_clear(&local);
	return rc;
}
