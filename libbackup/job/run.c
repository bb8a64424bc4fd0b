/* The repair job's steps and the loop that runs them (see job.h). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include <libbackup/api.h>
#include <libbackup/backup.h>
#include <libbackup/device.h>
#include <libbackup/firmware.h>
#include <libbackup/identity.h>
#include <libbackup/transfer.h>

#include "libbackup/job/job_internal.h"
#include "libbackup/util/util.h"

#define MAX_REVOKED 32
/* Space kept free beyond the backup's size when pulling. */
#define SPACE_MARGIN (64ull << 20)

typedef struct job_ctx {
	const bk_config *cfg;
	const bk_job_opts *opts;
	bk_catalog *cat;
	bk_job_row row;
	bk_job_lock *job_lock, *from_lock, *to_lock;
	bk_device *from, *to;
	bk_api *api;
	char holder[160];
	char hold_name[BK_JOB_ID_SIZE + 8];
	json_t *outcome; /* the current step's outcome */
	const char *skip; /* the current step was skipped: why */
} job_ctx;

/* --- Small helpers ------------------------------------------------------------------- */

static const char *dstr(job_ctx *c, const char *key)
{
	return json_string_value(json_object_get(c->row.data, key));
}

static int64_t dint(job_ctx *c, const char *key)
{
	return json_integer_value(json_object_get(c->row.data, key));
}

static int dset(job_ctx *c, const char *key, json_t *v)
{
	if (v == NULL || json_object_set_new(c->row.data, key, v) != 0)
		return bk__error_oom();
	return 0;
}

static int dset_str(job_ctx *c, const char *key, const char *s)
{
	return dset(c, key, s ? json_string(s) : json_null());
}

static int oset(job_ctx *c, const char *key, json_t *v)
{
	if (v == NULL || json_object_set_new(c->outcome, key, v) != 0)
		return bk__error_oom();
	return 0;
}

static int min_battery(const bk_config *cfg, const char *key, int def)
{
	uint64_t v = (uint64_t)def;
	if (bk_config_get(cfg, key) && bk_config_get_u64(cfg, key, &v) != 0)
		v = (uint64_t)def;
	return v > 100 ? 100 : (int)v;
}

/* trust.revoked_keys: comma- or space-separated key ids, in `buf`. */
static void revoked_list(const bk_config *cfg, char *buf, size_t cap,
                         const char *out[MAX_REVOKED + 1])
{
	const char *rev = bk_config_get(cfg, "trust.revoked_keys");
	size_t n = 0;
	bk_strlcpy(buf, rev ? rev : "", cap);
	for (char *s = buf; *s && n < MAX_REVOKED;) {
		s += strspn(s, ", \t");
		size_t len = strcspn(s, ", \t");
		if (len == 0)
			break;
		out[n++] = s;
		s += len;
		if (*s)
			*s++ = '\0';
	}
	out[n] = NULL;
}

/* The folder of the job's own files, beside the database. */
static char *job_dir(job_ctx *c)
{
	const char *db = bk_job__db_path(c->cat);
	const char *slash = strrchr(db, '/');
	return slash ? bk__asprintf("%.*s/jobs/%s", (int)(slash - db), db, c->row.id)
	             : bk__asprintf("jobs/%s", c->row.id);
}

static int domains_of(const bk_device_info *info, json_t **out)
{
	json_t *o = json_object();
	if (o == NULL)
		return bk__error_oom();
	for (size_t i = 0; i < info->domain_count; i++)
		if (json_object_set_new(o, info->domains[i].name,
		                        json_string(info->domains[i].digest)) != 0) {
			json_decref(o);
			return bk__error_oom();
		}
	*out = o;
	return 0;
}

static bool holds_memory(const bk_device_info *info)
{
	for (size_t i = 0; i < info->domain_count; i++)
		if (info->domains[i].items > 0)
			return true;
	return false;
}

/* The step-level progress report; a non-zero answer cancels. */
static int progress_step(job_ctx *c, unsigned index)
{
	if (c->opts->progress == NULL)
		return 0;
	char subject[BK_JOB_ID_SIZE + 24];
	snprintf(subject, sizeof(subject), "%s", c->row.id);
	bk_progress p = {BK_PROGRESS_VERSION, subject, bk_job_step_name(index), index, BK_JOB_STEPS,
	                 0, 0, (double)index / BK_JOB_STEPS, 0};
	if (c->opts->progress(&p, c->opts->progress_payload) != 0)
		return bk__error_set(BK_ECANCELLED, "cancelled", "job %s: cancelled", c->row.id);
	return 0;
}

static void emit(job_ctx *c, const char *step, const char *kind, const char *message)
{
	if (c->opts->event)
		c->opts->event(c->row.id, step, kind, message, c->opts->event_payload);
}

/* --- Units and the service ---------------------------------------------------------- */

/* Opens (once) the unit the job calls `which` ("from" or "to"); a serial the
 * job already knows must answer, and the unit is locked for the job. */
static int need_unit(job_ctx *c, bool to, bk_device **out)
{
	bk_device **dev = to ? &c->to : &c->from;
	bk_job_lock **lock = to ? &c->to_lock : &c->from_lock;
	const char *uri = to ? c->row.to_uri : c->row.from_uri;
	const char *serial = dstr(c, to ? "new_serial" : "old_serial");
	int rc;
	if (*dev && bk_device_connected(*dev)) {
		*out = *dev;
		return 0;
	}
	if (*dev) {
		bk_device_free(*dev);
		*dev = NULL;
	}
	if (uri == NULL)
		return bk__error_set(BK_EINVALID, NULL, "job %s: no address for the %s unit",
		                     c->row.id, to ? "replacement" : "old");
	if ((rc = bk_device_open_config(dev, c->cfg, uri, serial))) {
		bk__error_prefix(rc, "%s unit at %s", to ? "replacement" : "old", uri);
		return rc;
	}
	bk_device *other = to ? c->from : c->to;
	if (other && strcmp(bk_device_serial(other), bk_device_serial(*dev)) == 0) {
		rc = bk__error_set(BK_EUSER, "same-unit",
		                   "the replacement is unit %s itself, the unit the memory comes "
		                   "from",
		                   bk_device_serial(*dev));
		bk_device_free(*dev);
		*dev = NULL;
		return rc;
	}
	if (*lock == NULL &&
	    (rc = bk_job__lock(c->cat, "unit", bk_device_serial(*dev), c->row.id, lock))) {
		bk_device_free(*dev);
		*dev = NULL;
		return rc;
	}
	*out = *dev;
	return 0;
}

static int need_api(job_ctx *c, bk_api **out)
{
	int rc = c->api ? 0 : bk_api_new_config(&c->api, c->cfg, 0);
	*out = c->api;
	return rc;
}

static void idem_key(job_ctx *c, char out[129], const char *what)
{
	snprintf(out, 129, "repair:%s:%s", c->row.id, what);
}

/* --- preflight ----------------------------------------------------------------------- */

/* What the memory is: serial, model, schema, from its source. */
static int source_facts(job_ctx *c)
{
	bk_device *from = NULL;
	bk_device_info *info = NULL;
	bk_backup *b = NULL;
	bk_statement *stp = NULL;
	uint8_t *sbytes = NULL;
	size_t slen = 0;
	bk_statement_view v;
	int rc = 0;
	if (strcmp(c->row.source, "device") == 0) {
		if ((rc = need_unit(c, false, &from)) || (rc = bk_device_info_get(from, &info, 0)))
			goto done;
		json_t *dom = NULL;
		if ((rc = domains_of(info, &dom)) || (rc = dset(c, "old_domains", dom)))
			goto done;
		uint64_t bytes = 0;
		for (size_t i = 0; i < info->domain_count; i++)
			bytes += info->domains[i].bytes;
		int minb = min_battery(c->cfg, "backup.min_battery", 20);
		if (info->battery < minb) {
			rc = bk__error_set(BK_EINCOMPAT, "battery-low",
			                   "old unit %s: battery at %d%%, a backup needs at least %d%%",
			                   info->serial, info->battery, minb);
			goto done;
		}
		/* Room for the backup in a folder store. */
		bk_store *store = NULL;
		if ((rc = bk_store_open_config(&store, c->cfg)))
			goto done;
		const char *spec = bk_store_spec(store);
		struct statvfs sv;
		if (strncmp(spec, "dir:", 4) == 0 && statvfs(spec + 4, &sv) == 0 &&
		    (uint64_t)sv.f_bavail * sv.f_frsize < bytes + SPACE_MARGIN) {
			rc = bk__error_set(BK_ENOSPACE, "no-space",
			                   "%s: %llu MiB free, the backup of unit %s needs up to "
			                   "%llu MiB",
			                   spec + 4,
			                   (unsigned long long)((uint64_t)sv.f_bavail * sv.f_frsize >>
			                                        20),
			                   info->serial,
			                   (unsigned long long)((bytes + SPACE_MARGIN) >> 20));
		}
		bk_store_free(store);
		if (rc)
			goto done;
		if ((rc = dset_str(c, "old_serial", info->serial)) ||
		    (rc = dset_str(c, "model", info->model)) ||
		    (rc = dset_str(c, "hw_revision", info->hw_revision)) ||
		    (rc = dset(c, "schema", json_integer((json_int_t)info->memory_schema))) ||
		    (rc = dset_str(c, "old_firmware", info->firmware_version)) ||
		    (rc = dset(c, "memory_bytes", json_integer((json_int_t)bytes))))
			goto done;
		goto done;
	}
	const bk_statement *st = NULL;
	if (strcmp(c->row.source, "file") == 0) {
		if ((rc = bk_backup_open(&b, c->cfg, c->row.source_ref)))
			goto done;
		st = bk_backup_statement(b);
		if (st == NULL) {
			const bk_error *e = bk_backup_statement_error(b);
			rc = bk__error_set(BK_EVERIFY, "statement-missing", "%s: %s", bk_backup_path(b),
			                   e && e->message ? e->message : "no valid statement");
			goto done;
		}
	} else {
		bk_api *api;
		if ((rc = need_api(c, &api)) ||
		    (rc = bk_api_backup_statement(api, c->row.source_ref, &sbytes, &slen)) ||
		    (rc = bk_statement_parse(&stp, sbytes, slen)))
			goto done;
		st = stp;
	}
	if ((rc = bk_statement_verify(st, c->cfg))) {
		bk__error_prefix(rc, "backup %s", c->row.source_ref);
		goto done;
	}
	bk_statement_get(st, &v);
	if ((rc = dset_str(c, "old_serial", v.serial)) || (rc = dset_str(c, "model", v.model)) ||
	    (rc = dset_str(c, "hw_revision", v.hardware_revision)) ||
	    (rc = dset(c, "schema", json_integer((json_int_t)v.schema_version))) ||
	    (rc = dset_str(c, "old_firmware", v.firmware_version)) ||
	    (rc = dset_str(c, "backup_id", v.backup_id)) ||
	    (rc = dset_str(c, "payload_digest", v.payload_digest)) ||
	    (rc = dset_str(c, "manifest_digest", v.manifest_digest)) ||
	    (rc = dset(c, "memory_bytes", json_integer((json_int_t)v.plaintext_size))))
		goto done;
done:
	bk_free(sbytes);
	bk_statement_free(stp);
	bk_backup_free(b);
	bk_device_info_free(info);
	return rc;
}

static int step_preflight(job_ctx *c)
{
	bk_device *to = NULL;
	bk_device_info *info = NULL;
	bk_api *api = NULL;
	bk_api_ticket t = {0};
	char *fw = NULL;
	int rc;
	if ((rc = source_facts(c)))
		goto done;
	const char *old_serial = dstr(c, "old_serial");
	const char *model = dstr(c, "model");
	int64_t schema = dint(c, "schema");
	/* The ticket. */
	if ((rc = need_api(c, &api)) || (rc = bk_api_ticket_get(api, c->row.ticket, &t)))
		goto done;
	if (strcmp(t.old_serial, old_serial) != 0) {
		rc = bk__error_set(BK_EVERIFY, "ticket-mismatch",
		                   "ticket %s is for unit %s, but the memory comes from unit %s",
		                   c->row.ticket, t.old_serial, old_serial);
		goto done;
	}
	if (t.model && strcmp(t.model, model) != 0) {
		rc = bk__error_set(BK_EINCOMPAT, "model-mismatch",
		                   "ticket %s is for a %s; the memory is a %s's", c->row.ticket,
		                   t.model, model);
		goto done;
	}
	/* The replacement. */
	if ((rc = need_unit(c, true, &to)) || (rc = bk_device_info_get(to, &info, 0)))
		goto done;
	bool reassigned = strcmp(t.status, "reassigned") == 0 && t.new_serial &&
	                  strcmp(t.new_serial, info->serial) == 0;
	if (strcmp(t.status, "open") != 0 && !reassigned) {
		rc = bk__error_set(BK_EUSER, "ticket-not-open",
		                   "ticket %s is %s%s%s; a repair needs an open ticket", c->row.ticket,
		                   t.status, t.new_serial ? " to unit " : "",
		                   t.new_serial ? t.new_serial : "");
		goto done;
	}
	if (strcmp(info->serial, old_serial) == 0) {
		rc = bk__error_set(BK_EUSER, "same-unit",
		                   "the replacement is unit %s itself, the unit the memory comes from",
		                   old_serial);
		goto done;
	}
	if (strcmp(info->model, model) != 0) {
		rc = bk__error_set(BK_EINCOMPAT, "model-mismatch",
		                   "replacement %s is a %s; the memory is a %s's", info->serial,
		                   info->model, model);
		goto done;
	}
	if (holds_memory(info) && !c->row.overwrite) {
		rc = bk__error_set(BK_EEXIST, "unit-has-memory",
		                   "replacement %s already holds a memory; the repair would replace "
		                   "it (--overwrite)",
		                   info->serial);
		goto done;
	}
	bool flash = (uint64_t)schema < info->schema_min || (uint64_t)schema > info->schema_max;
	int minb = min_battery(c->cfg, "backup.min_battery", 20);
	if (flash) {
		int f = min_battery(c->cfg, "firmware.min_battery", 30);
		minb = f > minb ? f : minb;
	}
	if (info->battery < minb) {
		rc = bk__error_set(BK_EINCOMPAT, "battery-low",
		                   "replacement %s: battery at %d%%, the repair needs at least %d%%",
		                   info->serial, info->battery, minb);
		goto done;
	}
	if (flash) {
		const char *dir = c->row.firmware_dir ? c->row.firmware_dir
		                                      : bk_config_get(c->cfg, "firmware.dir");
		const char *keys = bk_config_get(c->cfg, "trust.firmware_keys");
		const char *revoked[MAX_REVOKED + 1];
		char rbuf[1024];
		if (dir == NULL) {
			rc = bk__error_set(BK_EUSER, "no-firmware-dir",
			                   "replacement %s runs firmware %s (memory schemas %llu-%llu) "
			                   "and the memory needs schema %lld: give --firmware-dir or "
			                   "set firmware.dir",
			                   info->serial, info->firmware_version,
			                   (unsigned long long)info->schema_min,
			                   (unsigned long long)info->schema_max, (long long)schema);
			goto done;
		}
		if (keys == NULL) {
			rc = bk__error_set(BK_EUSER, "no-firmware-keys",
			                   "no trusted firmware keys: set trust.firmware_keys");
			goto done;
		}
		revoked_list(c->cfg, rbuf, sizeof(rbuf), revoked);
		rc = bk_fw_select(dir, model, info->hw_revision, schema,
		                  (uint32_t)info->security_counter, keys, revoked, &fw);
		if (rc) {
			bk__error_prefix(rc, "replacement %s needs a firmware holding memory schema %lld",
			                 info->serial, (long long)schema);
			goto done;
		}
	}
	if ((rc = dset_str(c, "new_serial", info->serial)) ||
	    (rc = dset_str(c, "new_model", info->model)) ||
	    (rc = dset_str(c, "new_firmware_before", info->firmware_version)) ||
	    (rc = dset(c, "firmware_needed", json_boolean(flash))) ||
	    (rc = dset_str(c, "firmware_bundle", fw)))
		goto done;
	rc = oset(c, "ticket_status", json_string(t.status));
	if (rc == 0)
		rc = oset(c, "firmware_needed", json_boolean(flash));
done:
	bk_free(fw);
	bk_api_ticket_clear(&t);
	bk_device_info_free(info);
	return rc;
}

/* --- backup -------------------------------------------------------------------------- */

static int hold_backup(job_ctx *c, const char *id)
{
	int rc = bk_catalog_backup_hold(c->cat, id, c->hold_name);
	if (rc == 0)
		rc = dset_str(c, "held_backup", id);
	return rc;
}

static int backup_from_device(job_ctx *c)
{
	bk_device *from = NULL;
	bk_backup_report rep;
	bk_transfer_stats stats;
	bk_backup_pull_opts o = BK_BACKUP_PULL_OPTS_INIT;
	int rc;
	memset(&rep, 0, sizeof(rep));
	if ((rc = need_unit(c, false, &from)))
		return rc;
	o.verify = 1;
	o.passphrase = c->opts->passphrase;
	o.passphrase_payload = c->opts->passphrase_payload;
	o.progress = c->opts->progress;
	o.progress_payload = c->opts->progress_payload;
	o.reconnect_ms = c->opts->reconnect_ms;
	if ((rc = bk_backup_pull(c->cfg, from, &o, &rep, &stats)))
		goto done;
	if ((rc = dset_str(c, "backup_id", rep.id)) || (rc = dset_str(c, "backup_ref", rep.id)) ||
	    (rc = dset_str(c, "payload_digest", rep.payload_digest)) ||
	    (rc = dset_str(c, "manifest_digest", rep.manifest_digest)) ||
	    (rc = hold_backup(c, rep.id)))
		goto done;
	rc = oset(c, "bytes", json_integer((json_int_t)rep.file_size));
	if (rc == 0)
		rc = oset(c, "reconnects", json_integer((json_int_t)stats.reconnects));
done:
	bk_backup_report_clear(&rep);
	return rc;
}

static int backup_from_file(job_ctx *c)
{
	bk_backup *b = NULL;
	bk_backup_report rep;
	bk_backup_read_opts o = BK_BACKUP_READ_OPTS_INIT;
	int rc;
	memset(&rep, 0, sizeof(rep));
	if ((rc = bk_backup_open(&b, c->cfg, c->row.source_ref)))
		goto done;
	o.passphrase = c->opts->passphrase;
	o.passphrase_payload = c->opts->passphrase_payload;
	o.progress = c->opts->progress;
	o.progress_payload = c->opts->progress_payload;
	if ((rc = bk_backup_verify(b, &o, &rep))) {
		bk__error_prefix(rc, "%s", bk_backup_path(b));
		goto done;
	}
	if (strcmp(rep.id, dstr(c, "backup_id")) != 0) {
		rc = bk__error_set(BK_EVERIFY, "backup-changed",
		                   "%s: the backup is %s, but preflight checked %s", bk_backup_path(b),
		                   rep.id, dstr(c, "backup_id"));
		goto done;
	}
	const char *cid = bk_backup_catalog_id(b);
	if ((rc = dset_str(c, "backup_ref", cid ? cid : bk_backup_path(b))))
		goto done;
	if (cid && (rc = hold_backup(c, cid)))
		goto done;
	rc = oset(c, "bytes", json_integer((json_int_t)rep.file_size));
done:
	bk_backup_report_clear(&rep);
	bk_backup_free(b);
	return rc;
}

/* Downloads the cloud backup into DIR/cloud.aibk, resuming a partial one. */
static int cloud_download(job_ctx *c, bk_api *api, const char *path, uint64_t *out_size)
{
	char *part = bk__asprintf("%s.part", path);
	bk_stream *out = NULL;
	struct stat sb;
	int fd = -1, rc = part ? 0 : bk__error_oom();
	if (rc)
		return rc;
	if (stat(path, &sb) == 0) {
		*out_size = (uint64_t)sb.st_size;
		goto done;
	}
	fd = open(part, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0 || fstat(fd, &sb) != 0) {
		rc = bk__error_errno(errno, "%s", part);
		goto done;
	}
	uint64_t have = (uint64_t)sb.st_size, total = 0;
	if ((rc = bk_stream_fd_new(&out, fd, 1)))
		goto done;
	fd = -1;
	if ((rc = bk_api_backup_download(api, c->row.source_ref, have, out, &total)) ||
	    (rc = bk_stream_flush(out, BK_DEADLINE_NONE)))
		goto done;
	if (have + out->bytes_out != total) {
		rc = bk__error_set(BK_EDISCONNECTED, "download-incomplete",
		                   "cloud backup %s: %llu of %llu bytes", c->row.source_ref,
		                   (unsigned long long)(have + out->bytes_out),
		                   (unsigned long long)total);
		goto done;
	}
	int ofd = -1;
	if (bk_stream_ctrl(out, BK_STREAM_CTRL_FD, &ofd) == 0 && ofd >= 0 && fsync(ofd) != 0) {
		rc = bk__error_errno(errno, "%s: fsync", part);
		goto done;
	}
	if ((rc = bk_identity_age_file_check(part, NULL)))
		goto done;
	if (rename(part, path) != 0) {
		rc = bk__error_errno(errno, "%s", path);
		goto done;
	}
	*out_size = total;
done:
	if (fd >= 0)
		close(fd);
	bk_stream_free(out);
	bk__free(part);
	return rc;
}

static int backup_from_cloud(job_ctx *c)
{
	bk_api *api = NULL;
	bk_device *to = NULL;
	bk_stream *in = NULL, *out = NULL, *swap = NULL;
	uint8_t *stmt = NULL, *hdr = NULL;
	size_t slen = 0, hlen = 0;
	uint64_t size = 0;
	char *dir = job_dir(c), *src = NULL, *sealed = NULL, *stpath = NULL, *sealed_st = NULL;
	int rc = dir ? 0 : bk__error_oom();
	if (rc)
		return rc;
	src = bk__asprintf("%s/cloud.aibk", dir);
	sealed = bk__asprintf("%s/sealed.aibk", dir);
	stpath = bk__asprintf("%s/cloud.aibk.statement", dir);
	sealed_st = bk__asprintf("%s/sealed.aibk.statement", dir);
	if (!src || !sealed || !stpath || !sealed_st) {
		rc = bk__error_oom();
		goto done;
	}
	if ((rc = bk_mkdir_p(dir, 0700)) || (rc = need_api(c, &api)))
		goto done;
	/* The cloud backup as the service keeps it, with its statement. */
	if ((rc = bk_api_backup_statement(api, c->row.source_ref, &stmt, &slen)) ||
	    (rc = bk_file_write_atomic(stpath, stmt, slen, 0644, 0)) ||
	    (rc = cloud_download(c, api, src, &size)))
		goto done;
	/* Its header re-wrapped by the service to the replacement only. */
	const uint8_t *cert = NULL;
	size_t cert_len = 0;
	char idem[129];
	idem_key(c, idem, "rewrap");
	if ((rc = need_unit(c, true, &to)) || (rc = bk_device_certificate(to, &cert, &cert_len)) ||
	    (rc = bk_api_backup_rewrap(api, c->row.source_ref, cert, cert_len, idem, &hdr, &hlen)))
		goto done;
	if ((rc = bk_stream_file_open(&in, src)) ||
	    (rc = bk_stream_atomic_new(&out, sealed, 0644, 0)) ||
	    (rc = bk_identity_header_swap_new(&swap, out, 1, hdr, hlen)))
		goto done;
	out = NULL;
	if ((rc = bk_stream_copy(swap, in, NULL, BK_DEADLINE_NONE)) ||
	    (rc = bk_file_write_atomic(sealed_st, stmt, slen, 0644, 0)))
		goto done;
	rc = bk_stream_close(swap, BK_DEADLINE_NONE);
	swap = NULL;
	if (rc)
		goto done;
	if ((rc = dset_str(c, "backup_ref", sealed)) || (rc = dset_str(c, "cloud_file", src)) ||
	    (rc = dset(c, "sealed", json_true())))
		goto done;
	rc = oset(c, "bytes", json_integer((json_int_t)size));
done:
	bk_stream_free(swap);
	bk_stream_free(out);
	bk_stream_free(in);
	bk_free(stmt);
	bk_free(hdr);
	bk__free(dir);
	bk__free(src);
	bk__free(sealed);
	bk__free(stpath);
	bk__free(sealed_st);
	return rc;
}

static int step_backup(job_ctx *c)
{
	if (strcmp(c->row.source, "device") == 0)
		return backup_from_device(c);
	if (strcmp(c->row.source, "file") == 0)
		return backup_from_file(c);
	return backup_from_cloud(c);
}

/* --- firmware ------------------------------------------------------------------------ */

static int step_firmware(job_ctx *c)
{
	bk_device *to = NULL;
	bk_device_info *info = NULL;
	bk_fw_bundle *b = NULL;
	bk_fw_flash_result res;
	const char *revoked[MAX_REVOKED + 1];
	char rbuf[1024];
	int64_t schema = dint(c, "schema");
	int rc;
	memset(&res, 0, sizeof(res));
	if (!json_is_true(json_object_get(c->row.data, "firmware_needed"))) {
		c->skip = "the replacement's firmware holds the memory's schema";
		return 0;
	}
	if ((rc = need_unit(c, true, &to)) || (rc = bk_device_info_get(to, &info, 0)))
		goto done;
	if ((uint64_t)schema >= info->schema_min && (uint64_t)schema <= info->schema_max) {
		/* Flashed before an interruption. */
		rc = dset_str(c, "new_firmware_after", info->firmware_version);
		if (rc == 0)
			rc = oset(c, "already", json_true());
		goto done;
	}
	revoked_list(c->cfg, rbuf, sizeof(rbuf), revoked);
	bk_fw_flash_opts o = BK_FW_FLASH_OPTS_INIT;
	o.trusted_keys = bk_config_get(c->cfg, "trust.firmware_keys");
	o.revoked_key_ids = revoked;
	o.min_battery = min_battery(c->cfg, "firmware.min_battery", 30);
	o.progress = c->opts->progress;
	o.progress_payload = c->opts->progress_payload;
	o.reconnect_timeout_ms = c->opts->reconnect_ms;
	o.result = &res;
	if ((rc = bk_fw_bundle_open(&b, dstr(c, "firmware_bundle"))) ||
	    (rc = bk_fw_flash(to, b, &o)))
		goto done;
	bk_device_info_free(info);
	info = NULL;
	if ((rc = need_unit(c, true, &to)) || (rc = bk_device_info_get(to, &info, 0)))
		goto done;
	if ((uint64_t)schema < info->schema_min || (uint64_t)schema > info->schema_max) {
		rc = bk__error_set(BK_EINCOMPAT, "schema-unsupported",
		                   "replacement %s runs firmware %s after the flash, which does not "
		                   "hold memory schema %lld",
		                   info->serial, info->firmware_version, (long long)schema);
		goto done;
	}
	if ((rc = dset_str(c, "new_firmware_after", info->firmware_version)) ||
	    (rc = oset(c, "version", json_string(bk_fw_bundle_version(b)))) ||
	    (rc = oset(c, "slot", json_string(res.slot))) ||
	    (rc = oset(c, "bytes", json_integer((json_int_t)res.bytes))) ||
	    (rc = oset(c, "resumed_from", json_integer((json_int_t)res.resumed_from))))
		goto done;
done:
	bk_fw_bundle_free(b);
	bk_device_info_free(info);
	return rc;
}

/* --- reassign ------------------------------------------------------------------------ */

static int step_reassign(job_ctx *c)
{
	bk_device *to = NULL;
	bk_api *api = NULL;
	bk_api_reassignment ra = {0};
	bk_identity_cert unit = {0}, bundle = {0};
	const uint8_t *cert = NULL;
	size_t cert_len = 0;
	char idem[129];
	const char *service_ca = bk_config_get(c->cfg, "trust.service_ca");
	const char *new_serial = dstr(c, "new_serial");
	int rc;
	if (service_ca == NULL)
		return bk__error_set(BK_EUSER, "no-service-ca",
		                     "set service_ca in [trust]: the identity bundle must be "
		                     "verified against the service CA");
	idem_key(c, idem, "reassign");
	if ((rc = need_unit(c, true, &to)) || (rc = bk_device_certificate(to, &cert, &cert_len)) ||
	    (rc = bk_identity_cert_parse(&unit, cert, cert_len)) || (rc = need_api(c, &api)) ||
	    (rc = bk_api_reassign(api, c->row.ticket, new_serial, cert, cert_len, idem, &ra)))
		goto done;
	if (strcmp(ra.ticket, c->row.ticket) != 0 || strcmp(ra.new_serial, new_serial) != 0 ||
	    strcmp(ra.old_serial, dstr(c, "old_serial")) != 0) {
		rc = bk__error_set(BK_EAPI, "api-bad-response",
		                   "reassign ticket %s: the service answered for ticket %s, %s -> %s",
		                   c->row.ticket, ra.ticket, ra.old_serial, ra.new_serial);
		goto done;
	}
	if ((rc = bk_identity_bundle_verify(&bundle, ra.bundle, ra.bundle_len, service_ca,
	                                    new_serial, ra.device_id, ra.owner, ra.old_serial,
	                                    &unit))) {
		bk__error_prefix(rc, "the identity bundle of ticket %s is refused", c->row.ticket);
		goto done;
	}
	bk_identity_record rec = {.ticket = ra.ticket,
	                          .old_serial = ra.old_serial,
	                          .new_serial = ra.new_serial,
	                          .device_id = ra.device_id,
	                          .owner = ra.owner,
	                          .bundle = bundle.bytes,
	                          .bundle_len = bundle.len};
	if ((rc = bk_catalog_identity_put(c->cat, &rec)))
		goto done;
	size_t b64len = sodium_base64_encoded_len(bundle.len, sodium_base64_VARIANT_ORIGINAL);
	char *b64 = bk__malloc(b64len);
	if (b64 == NULL) {
		rc = bk__error_oom();
		goto done;
	}
	sodium_bin2base64(b64, b64len, bundle.bytes, bundle.len, sodium_base64_VARIANT_ORIGINAL);
	rc = dset_str(c, "bundle", b64);
	bk__free(b64);
	if (rc || (rc = dset_str(c, "device_id", ra.device_id)) ||
	    (rc = dset_str(c, "owner", ra.owner)) ||
	    (rc = dset_str(c, "bundle_fingerprint", bundle.fingerprint)))
		goto done;
	if ((rc = oset(c, "device_id", json_string(ra.device_id))) ||
	    (rc = oset(c, "idempotency_key", json_string(idem))))
		goto done;
done:
	bk_api_reassignment_clear(&ra);
	bk_identity_cert_clear(&bundle);
	bk_identity_cert_clear(&unit);
	return rc;
}

/* --- restore ------------------------------------------------------------------------- */

static int step_restore(job_ctx *c)
{
	bk_device *to = NULL;
	bk_restore_report rep;
	bk_restore_push_opts o = BK_RESTORE_PUSH_OPTS_INIT;
	int rc;
	memset(&rep, 0, sizeof(rep));
	if ((rc = need_unit(c, true, &to)))
		return rc;
	o.passphrase = c->opts->passphrase;
	o.passphrase_payload = c->opts->passphrase_payload;
	/* Preflight found the replacement empty, or the technician allowed
	 * replacing its memory; a memory seen now is this job's own. */
	o.overwrite = 1;
	o.progress = c->opts->progress;
	o.progress_payload = c->opts->progress_payload;
	o.reconnect_ms = c->opts->reconnect_ms;
	o.sealed = json_is_true(json_object_get(c->row.data, "sealed"));
	if ((rc = bk_restore_push(c->cfg, to, dstr(c, "backup_ref"), &o, &rep)))
		goto done;
	json_t *d = rep.domains_json ? json_loads(rep.domains_json, 0, NULL) : NULL;
	json_t *dom = json_object_get(d, "domains");
	if (dom == NULL)
		dom = d;
	if (!json_is_object(dom)) {
		json_decref(d);
		rc = bk__error_set(BK_EFORMAT, "bad-answer",
		                   "replacement %s: no domain digests after the restore",
		                   bk_device_serial(to));
		goto done;
	}
	/* Kept as name -> digest, as INFO gives them. */
	json_t *flat = json_object();
	const char *name;
	json_t *v;
	json_object_foreach(dom, name, v)
	{
		json_t *dg = json_is_object(v) ? json_object_get(v, "digest") : v;
		if (!json_is_string(dg) || flat == NULL ||
		    json_object_set(flat, name, dg) != 0) {
			json_decref(flat);
			flat = NULL;
			break;
		}
	}
	json_decref(d);
	if (flat == NULL) {
		rc = bk__error_set(BK_EFORMAT, "bad-answer",
		                   "replacement %s: malformed domain digests after the restore",
		                   bk_device_serial(to));
		goto done;
	}
	if ((rc = dset(c, "restored_domains", flat)) ||
	    (rc = oset(c, "resumed", json_boolean(rep.resumed))) ||
	    (rc = oset(c, "bytes", json_integer((json_int_t)rep.stats.size))) ||
	    (rc = oset(c, "sent", json_integer((json_int_t)rep.stats.bytes))) ||
	    (rc = oset(c, "reconnects", json_integer((json_int_t)rep.stats.reconnects))) ||
	    (rc = oset(c, "digests_match", json_boolean(rep.digests_match))))
		goto done;
	if (!rep.digests_match)
		rc = bk__error_set(BK_EVERIFY, "digest-mismatch",
		                   "replacement %s reports memory digests other than the backup's",
		                   bk_device_serial(to));
done:
	bk_restore_report_clear(&rep);
	return rc;
}

/* --- identity ------------------------------------------------------------------------ */

static int bundle_bytes(job_ctx *c, uint8_t **out, size_t *out_len)
{
	const char *b64 = dstr(c, "bundle");
	size_t cap = b64 ? strlen(b64) : 0, n = 0;
	uint8_t *buf = cap ? bk__malloc(cap) : NULL;
	if (buf == NULL)
		return b64 ? bk__error_oom()
		           : bk__error_set(BK_EFORMAT, "job-corrupt", "job %s: no identity bundle",
		                           c->row.id);
	if (sodium_base642bin(buf, cap, b64, strlen(b64), NULL, &n, NULL,
	                      sodium_base64_VARIANT_ORIGINAL) != 0) {
		bk__free(buf);
		return bk__error_set(BK_EFORMAT, "job-corrupt", "job %s: the bundle is damaged",
		                     c->row.id);
	}
	*out = buf;
	*out_len = n;
	return 0;
}

static int step_identity(job_ctx *c)
{
	bk_device *to = NULL;
	uint8_t *bundle = NULL;
	size_t len = 0;
	char *reply = NULL;
	int rc;
	if ((rc = bundle_bytes(c, &bundle, &len)) || (rc = need_unit(c, true, &to)) ||
	    (rc = bk_device_identity_install(to, bundle, len, &reply, 0)))
		goto done;
	json_t *r = json_loads(reply, 0, NULL);
	const char *dev_id = json_string_value(json_object_get(r, "device_id"));
	if (dev_id == NULL || strcmp(dev_id, dstr(c, "device_id")) != 0) {
		rc = bk__error_set(BK_EVERIFY, "identity-mismatch",
		                   "replacement %s installed device id %s, the service assigned %s",
		                   bk_device_serial(to), dev_id ? dev_id : "(none)",
		                   dstr(c, "device_id"));
	} else {
		rc = oset(c, "device_id", json_string(dev_id));
	}
	json_decref(r);
done:
	bk_free(reply);
	bk__free(bundle);
	return rc;
}

/* --- verify -------------------------------------------------------------------------- */

static int step_verify(job_ctx *c)
{
	bk_device *to = NULL;
	bk_device_info *info = NULL;
	json_t *now = NULL, *a = NULL;
	int rc;
	if ((rc = need_unit(c, true, &to)) || (rc = bk_device_info_get(to, &info, 0)) ||
	    (rc = domains_of(info, &now)))
		goto done;
	json_t *expect = json_object_get(c->row.data, "restored_domains");
	json_t *old = json_object_get(c->row.data, "old_domains");
	bool digests = json_is_object(expect) && json_equal(now, expect);
	/* From a unit: the old unit's own digests, as read at preflight. */
	bool old_ok = old == NULL || json_equal(now, old);
	a = json_loads(info->json, 0, NULL);
	json_t *id = json_object_get(a, "identity");
	const char *dev_id = json_string_value(json_object_get(id, "device_id"));
	const char *id_serial = json_string_value(json_object_get(id, "serial"));
	bool identity = json_is_true(json_object_get(id, "installed")) && dev_id &&
	                strcmp(dev_id, dstr(c, "device_id")) == 0 && id_serial &&
	                strcmp(id_serial, dstr(c, "new_serial")) == 0;
	if ((rc = dset_str(c, "new_firmware_after", info->firmware_version)) ||
	    (rc = oset(c, "digests_match", json_boolean(digests && old_ok))) ||
	    (rc = oset(c, "identity", json_boolean(identity))) || (rc = oset(c, "domains", now)))
		goto done;
	now = NULL;
	if (!digests || !old_ok) {
		rc = bk__error_set(BK_EVERIFY, "digest-mismatch",
		                   "replacement %s: its memory digests differ from the %s",
		                   info->serial, !digests ? "backup's manifest" : "old unit's");
		goto done;
	}
	if (!identity)
		rc = bk__error_set(BK_EVERIFY, "identity-mismatch",
		                   "replacement %s does not report the installed identity %s",
		                   info->serial, dstr(c, "device_id"));
done:
	json_decref(a);
	json_decref(now);
	bk_device_info_free(info);
	return rc;
}

/* --- complete ------------------------------------------------------------------------ */

static int upload_events(job_ctx *c, bk_api *api, size_t *out_n)
{
	json_t *ev = NULL;
	bk_api_event *list = NULL;
	int rc = bk_job__events_pending(c->cat, c->row.id, &ev);
	size_t n = rc ? 0 : json_array_size(ev);
	*out_n = 0;
	for (size_t first = 0; rc == 0 && first < n; first += 1000) {
		size_t count = n - first < 1000 ? n - first : 1000;
		bk__free(list);
		list = bk__calloc(count, sizeof(*list));
		if (list == NULL) {
			rc = bk__error_oom();
			break;
		}
		for (size_t i = 0; i < count; i++) {
			json_t *e = json_array_get(ev, first + i);
			list[i].seq = json_integer_value(json_object_get(e, "seq"));
			list[i].time = json_integer_value(json_object_get(e, "time"));
			list[i].kind = json_string_value(json_object_get(e, "kind"));
			list[i].message = json_string_value(json_object_get(e, "message"));
			list[i].hash = json_string_value(json_object_get(e, "hash"));
		}
		char what[64], idem[129];
		snprintf(what, sizeof(what), "events:%lld", (long long)list[0].seq);
		idem_key(c, idem, what);
		if ((rc = bk_api_ticket_events(api, c->row.ticket, list, count, idem, NULL)) == 0)
			rc = bk_job__events_mark_uploaded(c->cat, c->row.id, list[count - 1].seq);
		if (rc == 0)
			*out_n += count;
	}
	bk__free(list);
	json_decref(ev);
	return rc;
}

static int step_complete(job_ctx *c)
{
	bk_api *api = NULL;
	size_t n = 0;
	char idem[129], summary[256];
	bk_api_ticket t = {0};
	int rc;
	/* Completed by an earlier run that was cut off before it recorded it:
	 * the ticket takes no more events, and nothing is left to do there. */
	if ((rc = need_api(c, &api)) || (rc = bk_api_ticket_get(api, c->row.ticket, &t)))
		return rc;
	bool closed = strcmp(t.status, "completed") == 0 && t.new_serial &&
	              strcmp(t.new_serial, dstr(c, "new_serial")) == 0;
	bk_api_ticket_clear(&t);
	if (!closed) {
		if ((rc = upload_events(c, api, &n)))
			return rc;
		snprintf(summary, sizeof(summary),
		         "memory of %s restored onto %s and verified (job %s)", dstr(c, "old_serial"),
		         dstr(c, "new_serial"), c->row.id);
		idem_key(c, idem, "complete");
		if ((rc = bk_api_ticket_complete(api, c->row.ticket, dstr(c, "new_serial"), 1,
		                                 summary, idem, NULL)))
			return rc;
	} else if ((rc = oset(c, "already", json_true()))) {
		return rc;
	}
	const char *held = dstr(c, "held_backup");
	if (held && (rc = bk_catalog_backup_release(c->cat, held, c->hold_name)))
		return rc;
	return oset(c, "events_uploaded", json_integer((json_int_t)n));
}

/* --- The loop ------------------------------------------------------------------------ */

typedef int (*step_fn)(job_ctx *c);
static const step_fn steps[BK_JOB_STEPS] = {
    step_preflight, step_backup,   step_firmware, step_reassign,
    step_restore,   step_identity, step_verify,   step_complete,
};

static int step_index(const char *name)
{
	for (unsigned i = 0; i < BK_JOB_STEPS; i++)
		if (strcmp(bk_job_step_name(i), name) == 0)
			return (int)i;
	return -1;
}

/* What the technician can do after a stop with `rc` / `reason`. */
static void hint_for(job_ctx *c, int rc, const char *reason, char *out, size_t cap)
{
	const char *what;
	reason = reason ? reason : "";
	switch (rc) {
	case BK_EDISCONNECTED:
	case BK_ETIMEOUT:
		what = "check the units' power and connections";
		break;
	case BK_ECANCELLED:
		what = "nothing is lost";
		break;
	case BK_EBUSY:
		what = "wait for the other process, or stop it";
		break;
	case BK_EINCOMPAT:
		what = strcmp(reason, "battery-low") == 0
		           ? "charge the unit named above"
		           : "use a replacement of the same model with a firmware that can hold "
		             "the memory";
		break;
	case BK_ENOTFOUND:
		what = strcmp(reason, "no-fitting-firmware") == 0
		           ? "put a signed firmware bundle that holds the memory's schema into the "
		             "firmware folder (--firmware-dir or firmware.dir)"
		           : "check the names and addresses given";
		break;
	case BK_EAUTH:
		what = strcmp(reason, "serial-mismatch") == 0
		           ? "connect the unit the job recorded, or give its new address with "
		             "--from/--to"
		           : "check the trust settings ([trust], [depot]) and the unit's "
		             "certificate";
		break;
	case BK_EAPI:
		what = "check the private API ([api]) and the ticket's state";
		break;
	case BK_ENOSPACE:
		what = "free disk space";
		break;
	case BK_EEXIST:
		what = "if the replacement's memory may be replaced, run repair again with "
		       "--overwrite (after aborting this job)";
		break;
	case BK_EVERIFY:
		what = "do not use this backup or unit until it is checked; abort the job with "
		       "'aibo-restore job abort' if it cannot go on";
		break;
	default:
		what = "correct the cause named above";
		break;
	}
	snprintf(out, cap, "%s; then run: aibo-restore resume %s", what, c->row.id);
}

static bool transient(int rc)
{
	return rc == BK_EDISCONNECTED || rc == BK_ETIMEOUT || rc == BK_ECANCELLED ||
	       rc == BK_EBUSY || rc == BK_EIO;
}

static int stop_failed(job_ctx *c, const char *step, int rc)
{
	const bk_error *e = bk_error_last();
	char msg[1200], hint[512];
	/* Reasons are static strings: the pointer outlives the calls below. */
	const char *reason = e->code == rc && e->reason ? e->reason : bk_error_code_name(rc);
	snprintf(msg, sizeof(msg), "step %s: %s", step,
	         e->message && e->message[0] ? e->message : bk_strerror(rc));
	hint_for(c, rc, reason, hint, sizeof(hint));
	/* The service unreachable or answering 5xx after every retry is not a
	 * refusal: the job waits for it like for a unit. */
	bool api_down = rc == BK_EAPI && strcmp(reason, "api-unavailable") == 0;
	const char *state = transient(rc) || api_down ? "interrupted" : "failed";
	bk_job__stop(c->cat, c->row.id, state, rc, reason, msg, hint, "step-failed", msg);
	bk_strlcpy(c->row.state, state, sizeof(c->row.state));
	bk_strlcpy(c->row.step, step, sizeof(c->row.step));
	emit(c, step, "step-failed", msg);
	return bk__error_set(rc, reason, "%s", msg);
}

static int finish(job_ctx *c)
{
	json_t *rep = NULL;
	char *text = NULL;
	int rc = bk_job__stop(c->cat, c->row.id, "complete", 0, NULL, NULL, NULL, "job-complete",
	                      "the repair is complete");
	if (rc)
		return rc;
	bk_job_row fresh;
	if ((rc = bk_job__load(c->cat, c->row.id, &fresh)))
		return rc;
	rc = bk_job__report_build(c->cat, &fresh, &rep);
	if (rc == 0 && (text = json_dumps(rep, JSON_COMPACT)) == NULL)
		rc = bk__error_oom();
	if (rc == 0)
		rc = bk_job__save_report(c->cat, c->row.id, text);
	if (rc == 0) {
		char *dir = job_dir(c), *path = dir ? bk__asprintf("%s/report.json", dir) : NULL;
		rc = path ? bk_mkdir_p(dir, 0700) : bk__error_oom();
		if (rc == 0)
			rc = bk_file_write_atomic(path, text, strlen(text), 0644, 0);
		bk__free(path);
		bk__free(dir);
	}
	bk_strlcpy(c->row.state, "complete", sizeof(c->row.state));
	emit(c, "complete", "job-complete", "the repair is complete");
	free(text);
	json_decref(rep);
	bk_job__row_clear(&fresh);
	return rc;
}

static int run_steps(job_ctx *c)
{
	int i = step_index(c->row.step);
	int rc = 0;
	if (i < 0)
		return bk__error_set(BK_EFORMAT, "job-corrupt", "job %s: unknown step '%s'",
		                     c->row.id, c->row.step);
	for (; i < BK_JOB_STEPS; i++) {
		const char *name = bk_job_step_name((unsigned)i);
		char msg[256];
		if ((rc = progress_step(c, (unsigned)i)))
			return stop_failed(c, name, rc);
		snprintf(msg, sizeof(msg), "%s begins (%s)", name, c->holder);
		if ((rc = bk_job__step_begin(c->cat, c->row.id, name, c->holder, msg)))
			return rc;
		bk_strlcpy(c->row.step, name, sizeof(c->row.step));
		bk_strlcpy(c->row.state, "running", sizeof(c->row.state));
		emit(c, name, "step-begin", msg);
		json_decref(c->outcome);
		c->outcome = json_object();
		c->skip = NULL;
		if (c->outcome == NULL)
			return bk__error_oom();
		bk_error_clear();
		rc = steps[i](c);
		if (rc)
			return stop_failed(c, name, rc);
		const char *next = i + 1 < BK_JOB_STEPS ? bk_job_step_name((unsigned)i + 1) : name;
		if (c->skip)
			snprintf(msg, sizeof(msg), "%s skipped: %s", name, c->skip);
		else
			snprintf(msg, sizeof(msg), "%s done", name);
		if ((rc = bk_job__step_end(c->cat, c->row.id, name, c->skip ? "skipped" : "done",
		                           c->outcome, c->row.data, next, msg)))
			return rc;
		emit(c, name, c->skip ? "step-skipped" : "step-done", msg);
		if (c->opts->stop_after && strcmp(c->opts->stop_after, name) == 0)
			return bk__error_set(BK_ECANCELLED, "stopped",
			                     "job %s: stopped after step %s (test)", c->row.id, name);
	}
	return finish(c);
}

static void ctx_clear(job_ctx *c)
{
	bk_device_free(c->from);
	bk_device_free(c->to);
	bk_api_free(c->api);
	bk_job__unlock(c->from_lock);
	bk_job__unlock(c->to_lock);
	bk_job__unlock(c->job_lock);
	json_decref(c->outcome);
	bk_job__row_clear(&c->row);
}

static void result_fill(job_ctx *c, bk_job_result *out)
{
	if (out == NULL)
		return;
	bk_strlcpy(out->id, c->row.id, sizeof(out->id));
	bk_strlcpy(out->state, c->row.state, sizeof(out->state));
	bk_strlcpy(out->step, c->row.step, sizeof(out->step));
	bk_job_row fresh;
	if (bk_job__load(c->cat, c->row.id, &fresh) == 0) {
		bk_strlcpy(out->state, fresh.state, sizeof(out->state));
		if (fresh.hint)
			out->hint = bk__strdup(fresh.hint);
		json_t *rep = NULL;
		if (bk_job__report_build(c->cat, &fresh, &rep) == 0) {
			char *t = json_dumps(rep, JSON_COMPACT);
			out->report_json = t ? bk__strdup(t) : NULL;
			free(t);
		}
		json_decref(rep);
		bk_job__row_clear(&fresh);
	}
}

void bk_job_result_clear(bk_job_result *r)
{
	if (r == NULL)
		return;
	bk__free(r->report_json);
	bk__free(r->hint);
	memset(r, 0, sizeof(*r));
}

/* Runs the loaded job with the ticket's lock held by the caller. */
static int run_job(job_ctx *c, bk_job_result *out)
{
	int rc;
	bk_job__whoami(c->holder, sizeof(c->holder));
	snprintf(c->hold_name, sizeof(c->hold_name), "job:%s", c->row.id);
	if ((rc = bk_job__lock(c->cat, "job", c->row.id, c->row.id, &c->job_lock)))
		return rc;
	/* Units that came back at another address. */
	const char *nf = c->opts->new_from, *nt = c->opts->new_to;
	if ((nf && c->row.from_uri && strcmp(nf, c->row.from_uri) != 0) ||
	    (nt && strcmp(nt, c->row.to_uri) != 0)) {
		if (nf && strcmp(c->row.source, "device") != 0)
			return bk__error_set(BK_EUSER, "usage",
			                     "job %s restores from a %s, not from a unit: --from does "
			                     "not apply",
			                     c->row.id, c->row.source);
		if ((rc = bk_job__set_uris(c->cat, c->row.id, nf, nt)))
			return rc;
		if (nf) {
			bk__free(c->row.from_uri);
			c->row.from_uri = bk__strdup(nf);
		}
		if (nt) {
			bk__free(c->row.to_uri);
			c->row.to_uri = bk__strdup(nt);
		}
		if ((nf && !c->row.from_uri) || (nt && !c->row.to_uri))
			return bk__error_oom();
	}
	rc = run_steps(c);
	/* The error of a failed step survives the bookkeeping below (reasons
	 * are static strings). */
	const char *reason = NULL;
	char message[1200] = "";
	if (rc) {
		const bk_error *e = bk_error_last();
		reason = e->code == rc ? e->reason : NULL;
		bk_strlcpy(message, e->code == rc && e->message ? e->message : bk_strerror(rc),
		           sizeof(message));
	}
	result_fill(c, out);
	if (rc)
		bk__error_set(rc, reason, "%s", message);
	return rc;
}

static int check_opts(const bk_config *cfg, const bk_job_opts *o)
{
	if (cfg == NULL || o == NULL || o->version < 1)
		return bk__error_set(BK_EINVALID, NULL, "job: missing argument");
	return 0;
}

static int new_id(char out[BK_JOB_ID_SIZE])
{
	uint8_t r[8];
	randombytes_buf(r, sizeof(r));
	out[0] = 'J';
	out[1] = '-';
	bk_hex_encode(out + 2, r, sizeof(r));
	return 0;
}

static const char *source_name(bk_job_source s)
{
	switch (s) {
	case BK_JOB_FROM_DEVICE: return "device";
	case BK_JOB_FROM_FILE: return "file";
	case BK_JOB_FROM_CLOUD: return "cloud";
	}
	return NULL;
}

int bk_job_repair(const bk_config *cfg, const bk_job_opts *opts, bk_job_result *out)
{
	job_ctx c;
	bk_job_lock *ticket_lock = NULL;
	char id[BK_JOB_ID_SIZE];
	int rc;
	memset(&c, 0, sizeof(c));
	if (out)
		memset(out, 0, sizeof(*out));
	if ((rc = check_opts(cfg, opts)))
		return rc;
	const char *src = source_name(opts->source);
	if (opts->ticket == NULL || opts->ticket[0] == '\0' || src == NULL || opts->from == NULL ||
	    opts->to == NULL)
		return bk__error_set(BK_EUSER, "usage",
		                     "a repair needs a ticket, a source (a unit, a backup file or a "
		                     "cloud backup) and the replacement");
	if ((opts->source == BK_JOB_FROM_DEVICE && (rc = bk_device_uri_check(opts->from))) ||
	    (rc = bk_device_uri_check(opts->to)))
		return rc;
	if (opts->source == BK_JOB_FROM_DEVICE && strcmp(opts->from, opts->to) == 0)
		return bk__error_set(BK_EUSER, "same-unit",
		                     "--from and --to name the same unit (%s): the replacement must "
		                     "be another unit",
		                     opts->to);
	c.cfg = cfg;
	c.opts = opts;
	if ((rc = bk_job__db(&c.cat, cfg)))
		return rc;
	if ((rc = bk_job__lock(c.cat, "ticket", opts->ticket, NULL, &ticket_lock)))
		goto done;
	rc = bk_job__find_open(c.cat, opts->ticket, id);
	if (rc == 0) {
		if ((rc = bk_job__load(c.cat, id, &c.row)))
			goto done;
		bool same = strcmp(c.row.source, src) == 0 &&
		            (opts->source == BK_JOB_FROM_DEVICE ||
		             strcmp(c.row.source_ref, opts->from) == 0);
		if (!same) {
			rc = bk__error_set(BK_EUSER, "job-mismatch",
			                   "ticket %s has the unfinished job %s, which restores from "
			                   "%s %s: resume it or abort it first",
			                   opts->ticket, id, c.row.source, c.row.source_ref);
			goto done;
		}
		/* The same repair again: continue it, at the addresses given now. */
		bk_job_opts o2 = *opts;
		o2.new_from = opts->source == BK_JOB_FROM_DEVICE ? opts->from : NULL;
		o2.new_to = opts->to;
		c.opts = &o2;
		if (out)
			out->resumed = 1;
		bk_job__event(c.cat, id, c.row.step, "job-resumed", "repair run again for the ticket");
		rc = run_job(&c, out);
		if (out)
			out->resumed = 1;
		c.opts = opts;
		goto done;
	}
	if (rc != BK_ENOTFOUND)
		goto done;
	bk_error_clear();
	new_id(c.row.id);
	c.row.ticket = bk__strdup(opts->ticket);
	bk_strlcpy(c.row.source, src, sizeof(c.row.source));
	c.row.source_ref = bk__strdup(opts->from);
	c.row.from_uri = opts->source == BK_JOB_FROM_DEVICE ? bk__strdup(opts->from) : NULL;
	c.row.to_uri = bk__strdup(opts->to);
	c.row.firmware_dir = opts->firmware_dir ? bk__strdup(opts->firmware_dir) : NULL;
	c.row.overwrite = opts->overwrite;
	c.row.data = json_object();
	bk_strlcpy(c.row.state, "running", sizeof(c.row.state));
	bk_strlcpy(c.row.step, "preflight", sizeof(c.row.step));
	if (!c.row.ticket || !c.row.source_ref || !c.row.to_uri || !c.row.data ||
	    (opts->source == BK_JOB_FROM_DEVICE && !c.row.from_uri) ||
	    (opts->firmware_dir && !c.row.firmware_dir)) {
		rc = bk__error_oom();
		goto done;
	}
	if ((rc = bk_job__create(c.cat, &c.row)))
		goto done;
	emit(&c, "preflight", "job-created", c.row.id);
	rc = run_job(&c, out);
done:
	if (rc && out && out->id[0] == '\0' && c.row.id[0])
		bk_strlcpy(out->id, c.row.id, sizeof(out->id));
	ctx_clear(&c);
	bk_job__unlock(ticket_lock);
	bk_catalog_free(c.cat);
	return rc;
}

int bk_job_resume(const bk_config *cfg, const char *id, const bk_job_opts *opts,
                  bk_job_result *out)
{
	job_ctx c;
	bk_job_lock *ticket_lock = NULL;
	int rc;
	memset(&c, 0, sizeof(c));
	if (out)
		memset(out, 0, sizeof(*out));
	if ((rc = check_opts(cfg, opts)))
		return rc;
	if (id == NULL)
		return bk__error_set(BK_EINVALID, NULL, "job: missing argument");
	if ((opts->new_from && (rc = bk_device_uri_check(opts->new_from))) ||
	    (opts->new_to && (rc = bk_device_uri_check(opts->new_to))))
		return rc;
	c.cfg = cfg;
	c.opts = opts;
	if ((rc = bk_backup_catalog_open(&c.cat, cfg, 0)))
		return rc;
	if ((rc = bk_job__load(c.cat, id, &c.row)))
		goto done;
	if (strcmp(c.row.state, "complete") == 0 || strcmp(c.row.state, "aborted") == 0) {
		rc = bk__error_set(BK_EUSER, "job-finished", "job %s is %s; there is nothing to resume",
		                   id, c.row.state);
		if (out) {
			bk_strlcpy(out->id, c.row.id, sizeof(out->id));
			bk_strlcpy(out->state, c.row.state, sizeof(out->state));
			bk_strlcpy(out->step, c.row.step, sizeof(out->step));
		}
		goto done;
	}
	if ((rc = bk_job__lock(c.cat, "ticket", c.row.ticket, c.row.id, &ticket_lock)))
		goto done;
	if (out)
		out->resumed = 1;
	bk_job__event(c.cat, id, c.row.step, "job-resumed", "resume");
	rc = run_job(&c, out);
	if (out)
		out->resumed = 1;
done:
	ctx_clear(&c);
	bk_job__unlock(ticket_lock);
	bk_catalog_free(c.cat);
	return rc;
}

int bk_job_abort(const bk_config *cfg, const char *id, int64_t wait_ms, bk_job_result *out)
{
	job_ctx c;
	bk_job_opts o = BK_JOB_OPTS_INIT;
	int rc;
	memset(&c, 0, sizeof(c));
	if (out)
		memset(out, 0, sizeof(*out));
	if (cfg == NULL || id == NULL)
		return bk__error_set(BK_EINVALID, NULL, "job: missing argument");
	c.cfg = cfg;
	c.opts = &o;
	if ((rc = bk_backup_catalog_open(&c.cat, cfg, 0)))
		return rc;
	if ((rc = bk_job__load(c.cat, id, &c.row)))
		goto done;
	if (strcmp(c.row.state, "complete") == 0 || strcmp(c.row.state, "aborted") == 0) {
		rc = bk__error_set(BK_EUSER, "job-finished", "job %s is already %s", id, c.row.state);
		goto done;
	}
	/* A live process runs it: ask it to stop, as Ctrl-C would. */
	char holder[160];
	pid_t pid = 0;
	if (bk_job__lock_held(c.cat, "job", id, holder, sizeof(holder), &pid)) {
		char me[160];
		bk_job__whoami(me, sizeof(me));
		const char *host = strstr(holder, " on "), *myhost = strstr(me, " on ");
		if (pid > 0 && host && myhost && strcmp(host, myhost) == 0)
			kill(pid, SIGINT);
		int64_t until = bk_now_ms() + (wait_ms > 0 ? wait_ms : 30000);
		while (bk_job__lock_held(c.cat, "job", id, NULL, 0, NULL) && bk_now_ms() < until) {
			struct timespec ts = {0, 100 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
	}
	if ((rc = bk_job__lock(c.cat, "job", id, id, &c.job_lock)))
		goto done;
	char who[160], msg[256];
	bk_job__whoami(who, sizeof(who));
	snprintf(msg, sizeof(msg), "aborted by %s at step %s; nothing was deleted", who,
	         c.row.step);
	snprintf(c.hold_name, sizeof(c.hold_name), "job:%s", c.row.id);
	const char *held = dstr(&c, "held_backup");
	if (held && (rc = bk_catalog_backup_release(c.cat, held, c.hold_name)))
		goto done;
	if ((rc = bk_job__stop(c.cat, id, "aborted", 0, NULL, NULL, NULL, "job-aborted", msg)))
		goto done;
	bk_strlcpy(c.row.state, "aborted", sizeof(c.row.state));
	result_fill(&c, out);
	if (out && out->report_json)
		bk_job__save_report(c.cat, id, out->report_json);
done:
	ctx_clear(&c);
	bk_catalog_free(c.cat);
	return rc;
}
