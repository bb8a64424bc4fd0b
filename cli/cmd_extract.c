/* aibo-restore extract: decrypt a backup's memory into a new folder. */
#include <inttypes.h>
#include <string.h>

#include <libbackup/backup.h>

#include "cli.h"

json_t *cli_backup_report_json(const bk_backup_report *r);

static int run(cli_ctx *ctx)
{
	bk_config *cfg;
	bk_backup *b = NULL;
	bk_backup_report rep;
	bk_backup_read_opts o = BK_BACKUP_READ_OPTS_INIT;
	const char *const *domains = NULL;
	const char *dir = cli_value(ctx, "directory");
	int rc = cli_config(ctx, &cfg);
	if (rc)
		return rc;
	if (dir == NULL)
		return cli_error(ctx, BK_EUSER, "missing-option", "extract needs -C DIR");
	o.identity = cli_value(ctx, "identity");
	o.passphrase = cli_passphrase_cb;
	o.passphrase_payload = ctx;
	o.progress = cli_progress_cb;
	o.progress_payload = ctx;
	o.domain_count = (size_t)cli_values(ctx, "domain", &domains);
	o.domains = domains;
	if ((rc = bk_backup_open(&b, cfg, ctx->argv[0])))
		return rc;
	rc = bk_backup_extract(b, dir, &o, &rep);
	json_t *j = cli_backup_report_json(&rep);
	const char *k;
	json_t *v;
	json_object_foreach(j, k, v) cli_set(ctx, k, json_incref(v));
	json_decref(j);
	cli_set(ctx, "directory", json_string(dir));
	if (rc == 0)
		cli_print(ctx, "extracted %s into %s (%" PRIu64 " files, %" PRIu64 " bytes)\n",
			  rep.id, dir, rep.files, rep.file_bytes);
	bk_backup_report_clear(&rep);
	bk_backup_free(b);
	return rc;
}

static const cli_opt opts[] = {
	{"identity", 'i', "FILE", "identity file to decrypt with (default: the depot identity)"},
	{"directory", 'C', "DIR", "extract into DIR, a new or empty folder (required)"},
	{"domain", 0, "DOMAIN", "extract only this domain (repeatable)"},
	{"passphrase-file", 0, "FILE", "passphrase of a protected identity file"},
	{0},
};

const cli_command cmd_extract = {
	.name = "extract",
	.args = "FILE|ID",
	.summary = "decrypt a backup's memory into a new folder, after every check passed",
	.opts = opts,
	.min_args = 1,
	.max_args = 1,
	.run = run,
};
