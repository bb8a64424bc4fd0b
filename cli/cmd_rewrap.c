/* aibo-restore rewrap: a new age header for other recipients, the payload
 * bytes unchanged. */
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
	const char *const *rcpt = NULL;
	const char *out = cli_value(ctx, "output");
	int rc = cli_config(ctx, &cfg);
	if (rc)
		return rc;
	int n = cli_values(ctx, "recipient", &rcpt);
	if (out == NULL || n == 0)
		return cli_error(ctx, BK_EUSER, "missing-option", "rewrap needs -r RECIPIENT and -o OUT");
	o.identity = cli_value(ctx, "identity");
	o.passphrase = cli_passphrase_cb;
	o.passphrase_payload = ctx;
	if ((rc = bk_backup_open(&b, cfg, ctx->argv[0])))
		return rc;
	rc = bk_backup_rewrap(b, out, rcpt, (size_t)n, &o, &rep);
	if (rc == 0) {
		json_t *j = cli_backup_report_json(&rep);
		const char *k;
		json_t *v;
		json_object_foreach(j, k, v) cli_set(ctx, k, json_incref(v));
		json_decref(j);
		cli_set(ctx, "recipients", json_integer(n));
		cli_print(ctx, "re-wrapped %s to %d recipient%s: %s\n", rep.id, n, n == 1 ? "" : "s",
			  out);
	}
	bk_backup_report_clear(&rep);
	bk_backup_free(b);
	return rc;
}

static const cli_opt opts[] = {
	{"identity", 'i', "FILE", "identity file that opens the backup (default: the depot identity)"},
	{"recipient", 'r', "RECIPIENT", "the new age recipient (repeatable, required)"},
	{"output", 'o', "OUT", "write the re-wrapped file to OUT and its statement to OUT.statement"},
	{"passphrase-file", 0, "FILE", "passphrase of a protected identity file"},
	{0},
};

const cli_command cmd_rewrap = {
	.name = "rewrap",
	.args = "FILE|ID",
	.summary = "re-wrap a backup's file key to new recipients (payload unchanged)",
	.opts = opts,
	.min_args = 1,
	.max_args = 1,
	.run = run,
};
