/* aibo-restore verify: check a backup quickly (statement and payload digest)
 * or fully (decrypt, every chunk, the manifest, every entry). */
#include <inttypes.h>
#include <string.h>

#include <libbackup/backup.h>

#include "cli.h"

json_t *cli_backup_report_json(const bk_backup_report *r);

static void set_report(cli_ctx *ctx, const bk_backup_report *r)
{
	json_t *j = cli_backup_report_json(r);
	const char *k;
	json_t *v;
	json_object_foreach(j, k, v) cli_set(ctx, k, json_incref(v));
	json_decref(j);
}

static int run(cli_ctx *ctx)
{
	bk_config *cfg;
	bk_backup *b = NULL;
	bk_backup_report rep;
	bk_backup_read_opts o = BK_BACKUP_READ_OPTS_INIT;
	int rc = cli_config(ctx, &cfg);
	if (rc)
		return rc;
	o.quick = cli_flag(ctx, "quick");
	o.identity = cli_value(ctx, "identity");
	o.passphrase = cli_passphrase_cb;
	o.passphrase_payload = ctx;
	o.progress = cli_progress_cb;
	o.progress_payload = ctx;
	if (o.quick && o.identity)
		return cli_error(ctx, BK_EUSER, "usage", "--quick needs no identity (-i)");
	if ((rc = bk_backup_open(&b, cfg, ctx->argv[0])))
		return rc;
	rc = bk_backup_verify(b, &o, &rep);
	cli_set(ctx, "kind", json_string(o.quick ? "quick" : "full"));
	cli_set(ctx, "ok", json_boolean(rc == 0));
	set_report(ctx, &rep);
	cli_set(ctx, "recorded", json_boolean(rep.recorded));
	if (rc == 0) {
		if (o.quick)
			cli_print(ctx, "%s: OK (quick: statement and payload digest)\n", rep.path);
		else
			cli_print(ctx, "%s: OK (full: %" PRIu64 " files, %" PRIu64 " bytes)\n",
				  rep.path, rep.files, rep.file_bytes);
	}
	bk_backup_report_clear(&rep);
	bk_backup_free(b);
	return rc;
}

static const cli_opt opts[] = {
	{"quick", 0, NULL, "check the statement and the payload digest only (no key)"},
	{"identity", 'i', "FILE", "identity file to decrypt with (default: the depot identity)"},
	{"passphrase-file", 0, "FILE", "passphrase of a protected identity file"},
	{0},
};

const cli_command cmd_verify = {
	.name = "verify",
	.args = "FILE|ID",
	.summary = "verify a backup: its statement, payload, manifest and every entry",
	.opts = opts,
	.min_args = 1,
	.max_args = 1,
	.run = run,
};
