/* aibo-restore cloud-backups, cloud-backup fetch, cloud-backup rewrap: a
 * unit's backups kept by the cloud (encrypted to the cloud's escrow key). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <libbackup/backup.h>

#include "api_common.h"

/* --- cloud-backups SERIAL ------------------------------------------------- */

static int run_list(cli_ctx *ctx)
{
	bk_api *api = NULL;
	bk_api_backup *list = NULL;
	size_t n = 0;
	const char *serial = ctx->argv[0];
	int rc = cli_api_open(ctx, &api);
	if (rc)
		return rc;
	rc = bk_api_backups_list(api, serial, &list, &n);
	if (rc) {
		rc = cli_api_fail(ctx, rc);
		goto done;
	}
	json_t *arr = json_array();
	if (n == 0)
		cli_print(ctx, "no cloud backups of %s\n", serial);
	else
		cli_print(ctx, "%-38s %-21s %12s %-10s %s\n", "ID", "CREATED", "SIZE", "FIRMWARE",
		          "SCHEMA");
	for (size_t i = 0; i < n; i++) {
		const bk_api_backup *b = &list[i];
		char schema[24];
		if (b->schema >= 0)
			snprintf(schema, sizeof(schema), "%lld", (long long)b->schema);
		else
			snprintf(schema, sizeof(schema), "-");
		cli_print(ctx, "%-38s %-21s %12llu %-10s %s\n", b->id, b->created,
		          (unsigned long long)b->size, b->firmware ? b->firmware : "-", schema);
		json_t *o = json_object();
		json_object_set_new(o, "id", json_string(b->id));
		json_object_set_new(o, "serial", json_string(b->serial));
		json_object_set_new(o, "created", json_string(b->created));
		json_object_set_new(o, "size", json_integer((json_int_t)b->size));
		json_object_set_new(o, "firmware",
		                    b->firmware ? json_string(b->firmware) : json_null());
		json_object_set_new(o, "schema",
		                    b->schema >= 0 ? json_integer(b->schema) : json_null());
		json_array_append_new(arr, o);
	}
	cli_set(ctx, "serial", json_string(serial));
	cli_set(ctx, "backups", arr);
done:
	bk_api_backup_list_free(list, n);
	bk_api_free(api);
	return rc;
}

static const cli_opt list_opts[] = {
    {0},
};

const cli_command cmd_cloud_backups = {
    .name = "cloud-backups",
    .args = "SERIAL",
    .summary = "list a unit's backups kept by the cloud",
    .opts = list_opts,
    .min_args = 1,
    .max_args = 1,
    .run = run_list,
};

/* --- Shared --------------------------------------------------------------- */

/* Fetches the statement of backup `id` and writes it to `path` atomically. */
static int save_statement(cli_ctx *ctx, bk_api *api, const char *id, const char *path, bool force)
{
	uint8_t *st = NULL;
	size_t len = 0;
	bk_stream *out = NULL;
	int rc = bk_api_backup_statement(api, id, &st, &len);
	if (rc) {
		rc = cli_api_fail(ctx, rc);
		goto done;
	}
	if ((rc = bk_stream_atomic_new(&out, path, 0644, !force)))
		goto done;
	if ((rc = bk_stream_write(out, st, len, BK_DEADLINE_NONE)))
		goto done;
	rc = bk_stream_close(out, BK_DEADLINE_NONE);
	out = NULL;
	if (rc == 0)
		cli_set(ctx, "statement_size", json_integer((json_int_t)len));
done:
	bk_stream_free(out);
	bk_free(st);
	return rc;
}

static int statement_path(cli_ctx *ctx, char *buf, size_t cap, const char *file)
{
	int n = snprintf(buf, cap, "%s.statement", file);
	if (n < 0 || (size_t)n >= cap)
		return cli_error(ctx, BK_EUSER, "path-too-long", "%s: path too long", file);
	return 0;
}

/* Refuses to start when an output exists and --force is not given, so that
 * nothing is fetched in vain. */
static int outputs_free(cli_ctx *ctx, const char *file, const char *statement, bool force)
{
	if (force)
		return 0;
	const char *const paths[] = {file, statement};
	for (int i = 0; i < 2; i++)
		if (access(paths[i], F_OK) == 0)
			return cli_error(ctx, BK_EEXIST, "file-exists",
			                 "%s: already exists; use --force to replace it", paths[i]);
	return 0;
}

/* Quick verification of what was written: the statement's signature and
 * certificate (against the configured CAs) and the payload's size and
 * digest. On failure both files are removed: nothing unverified is left. */
static int verify_written(cli_ctx *ctx, const char *file, const char *stpath)
{
	bk_config *cfg;
	bk_backup *b = NULL;
	bk_backup_report rep;
	bk_backup_read_opts o = BK_BACKUP_READ_OPTS_INIT;
	memset(&rep, 0, sizeof(rep));
	o.quick = 1;
	int rc = cli_config(ctx, &cfg);
	if (rc == 0)
		rc = bk_backup_open(&b, cfg, file);
	if (rc == 0)
		rc = bk_backup_verify(b, &o, &rep);
	bk_backup_report_clear(&rep);
	bk_backup_free(b);
	if (rc) {
		const bk_error *e = bk_error_last();
		int code = e->code == rc ? rc : BK_EVERIFY;
		rc = cli_error(ctx, code, e->code == rc && e->reason ? e->reason : "verify-failed",
		               "%s: %s (removed)", file,
		               e->code == rc && e->message ? e->message : "does not verify");
		unlink(file);
		unlink(stpath);
		return rc;
	}
	cli_set(ctx, "statement_verified", json_true());
	return 0;
}

/* --- cloud-backup fetch ID -o FILE ---------------------------------------- */

static int run_fetch(cli_ctx *ctx)
{
	const char *id = ctx->argv[0];
	const char *file = cli_value(ctx, "output");
	bool force = cli_flag(ctx, "force");
	char stpath[4200], part[4200];
	bk_api *api = NULL;
	bk_stream *out = NULL;
	uint64_t total = 0, hdr_len = 0;
	int rc;
	if (file == NULL)
		return cli_error(ctx, BK_EUSER, "missing-output",
		                 "cloud-backup fetch needs -o FILE");
	if ((rc = statement_path(ctx, stpath, sizeof(stpath), file)))
		return rc;
	snprintf(part, sizeof(part), "%s.part", file);
	if ((rc = outputs_free(ctx, file, stpath, force)))
		return rc;
	if ((rc = cli_api_open(ctx, &api)))
		return rc;
	if ((rc = bk_stream_atomic_new(&out, file, 0644, !force)))
		goto done;
	rc = bk_api_backup_download(api, id, 0, out, &total);
	if (rc) {
		rc = cli_api_fail(ctx, rc);
		goto done;
	}
	if (out->bytes_out != total) {
		rc = cli_error(ctx, BK_EVERIFY, "download-incomplete",
		               "backup %s: received %llu bytes of %llu", id,
		               (unsigned long long)out->bytes_out, (unsigned long long)total);
		goto done;
	}
	/* The content must be an age file before it takes the name. */
	if ((rc = bk_stream_flush(out, BK_DEADLINE_NONE)) ||
	    (rc = bk_identity_age_file_check(part, &hdr_len)))
		goto done;
	if ((rc = save_statement(ctx, api, id, stpath, force)))
		goto done;
	rc = bk_stream_close(out, BK_DEADLINE_NONE);
	out = NULL;
	if (rc) {
		unlink(stpath);
		goto done;
	}
	if ((rc = verify_written(ctx, file, stpath)))
		goto done;
	cli_set(ctx, "backup_id", json_string(id));
	cli_set(ctx, "file", json_string(file));
	cli_set(ctx, "size", json_integer((json_int_t)total));
	cli_set(ctx, "header_size", json_integer((json_int_t)hdr_len));
	cli_set(ctx, "statement_file", json_string(stpath));
	cli_print(ctx,
	          "%s: %llu bytes (backup %s)\n%s: statement (signature and payload digest "
	          "verified)\n",
	          file, (unsigned long long)total, id, stpath);
done:
	bk_stream_free(out);
	bk_api_free(api);
	return rc;
}

static const cli_opt fetch_opts[] = {
    {"output", 'o', "FILE", "write the backup to FILE and its statement to FILE.statement"},
    {"force", 'f', NULL, "replace existing files"},
    {0},
};

const cli_command cmd_cloud_backup_fetch = {
    .name = "cloud-backup fetch",
    .args = "ID",
    .summary = "download a cloud backup (still encrypted to the cloud) and its statement",
    .opts = fetch_opts,
    .min_args = 1,
    .max_args = 1,
    .run = run_fetch,
};

/* --- cloud-backup rewrap ID --for-cert FILE -o FILE ------------------------ */

static int run_rewrap(cli_ctx *ctx)
{
	const char *id = ctx->argv[0];
	const char *file = cli_value(ctx, "output");
	const char *cert_path = cli_value(ctx, "for-cert");
	const char *device = cli_value(ctx, "for");
	bool force = cli_flag(ctx, "force");
	bk_identity_cert unit = {0};
	bk_api *api = NULL;
	bk_stream *out = NULL, *swap = NULL;
	uint8_t *hdr = NULL;
	size_t hdr_len = 0;
	uint64_t total = 0, old_len = 0;
	char stpath[4200], idem[129], fp16[17];
	int rc;
	if (file == NULL)
		return cli_error(ctx, BK_EUSER, "missing-output",
		                 "cloud-backup rewrap needs -o FILE");
	if ((cert_path == NULL) == (device == NULL))
		return cli_error(ctx, BK_EUSER, "missing-option",
		                 "cloud-backup rewrap needs the unit: --for DEVICE or --for-cert FILE");
	if ((rc = statement_path(ctx, stpath, sizeof(stpath), file)))
		return rc;
	if ((rc = outputs_free(ctx, file, stpath, force)))
		return rc;
	if (device)
		rc = cli_api_unit_from_device(ctx, device, NULL, &unit);
	else
		rc = cli_api_unit_cert(ctx, cert_path, NULL, &unit);
	if (rc)
		return rc;
	if (unit.age_recipient == NULL) {
		rc = cli_error(ctx, BK_EVERIFY, "no-age-recipient",
		               "%s: the certificate names no age recipient", cert_path);
		goto done;
	}
	memcpy(fp16, unit.fingerprint, 16);
	fp16[16] = '\0';
	cli_api_idem_key(idem, "rewrap", id, fp16);
	if ((rc = cli_api_open(ctx, &api)))
		goto done;
	rc = bk_api_backup_rewrap(api, id, unit.bytes, unit.len, idem, &hdr, &hdr_len);
	if (rc) {
		rc = cli_api_fail(ctx, rc);
		goto done;
	}
	if ((rc = bk_stream_atomic_new(&out, file, 0644, !force)))
		goto done;
	if ((rc = bk_identity_header_swap_new(&swap, out, 1, hdr, hdr_len)))
		goto done;
	out = NULL;
	rc = bk_api_backup_download(api, id, 0, swap, &total);
	if (rc) {
		rc = cli_api_fail(ctx, rc);
		goto done;
	}
	if (swap->bytes_out != total) {
		rc = cli_error(ctx, BK_EVERIFY, "download-incomplete",
		               "backup %s: received %llu bytes of %llu", id,
		               (unsigned long long)swap->bytes_out, (unsigned long long)total);
		goto done;
	}
	old_len = bk_identity_header_swap_old_len(swap);
	/* The payload is unchanged, so the backup's statement still holds. */
	if ((rc = save_statement(ctx, api, id, stpath, force)))
		goto done;
	rc = bk_stream_close(swap, BK_DEADLINE_NONE);
	swap = NULL;
	if (rc) {
		unlink(stpath);
		goto done;
	}
	if ((rc = verify_written(ctx, file, stpath)))
		goto done;
	uint64_t size = total - old_len + hdr_len;
	cli_set(ctx, "backup_id", json_string(id));
	cli_set(ctx, "file", json_string(file));
	cli_set(ctx, "serial", json_string(unit.subject));
	cli_set(ctx, "recipient", json_string(unit.age_recipient));
	cli_set(ctx, "size", json_integer((json_int_t)size));
	cli_set(ctx, "payload_size", json_integer((json_int_t)(total - old_len)));
	cli_set(ctx, "header_size", json_integer((json_int_t)hdr_len));
	cli_set(ctx, "statement_file", json_string(stpath));
	cli_print(ctx,
	          "%s: backup %s re-wrapped by the cloud for %s (%s), %llu bytes\n%s: statement\n",
	          file, id, unit.subject, unit.age_recipient, (unsigned long long)size, stpath);
done:
	bk_stream_free(swap);
	bk_stream_free(out);
	bk_free(hdr);
	bk_identity_cert_clear(&unit);
	bk_api_free(api);
	return rc;
}

static const cli_opt rewrap_opts[] = {
    {"for", 0, "DEVICE", "the target unit (its certificate from the verified handshake)"},
    {"for-cert", 0, "FILE", "the target unit's factory certificate"},
    {"output", 'o', "FILE", "write the re-wrapped backup to FILE (statement: FILE.statement)"},
    {"force", 'f', NULL, "replace existing files"},
    {0},
};

const cli_command cmd_cloud_backup_rewrap = {
    .name = "cloud-backup rewrap",
    .args = "ID",
    .summary = "have the cloud re-wrap a cloud backup to a unit's key, and download it",
    .opts = rewrap_opts,
    .min_args = 1,
    .max_args = 1,
    .run = run_rewrap,
};
