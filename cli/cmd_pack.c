/* aibo-restore pack: a depot-made backup of a memory folder. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <libbackup/backup.h>

#include "cli.h"

json_t *cli_backup_report_json(const bk_backup_report *r);

/* The JSON form of a backup report, shared by the backup commands. */
json_t *cli_backup_report_json(const bk_backup_report *r)
{
	json_t *o = json_object();
	if (r->id[0])
		json_object_set_new(o, "id", json_string(r->id));
	if (r->path)
		json_object_set_new(o, "file", json_string(r->path));
	if (r->location)
		json_object_set_new(o, "location", json_string(r->location));
	if (r->statement_path)
		json_object_set_new(o, "statement", json_string(r->statement_path));
	if (r->file_size)
		json_object_set_new(o, "file_size", json_integer((json_int_t)r->file_size));
	if (r->header_size)
		json_object_set_new(o, "header_size", json_integer((json_int_t)r->header_size));
	if (r->payload_size)
		json_object_set_new(o, "payload_size", json_integer((json_int_t)r->payload_size));
	if (r->plaintext_size)
		json_object_set_new(o, "plaintext_size",
				    json_integer((json_int_t)r->plaintext_size));
	if (r->files || r->file_bytes) {
		json_object_set_new(o, "files", json_integer((json_int_t)r->files));
		json_object_set_new(o, "file_bytes", json_integer((json_int_t)r->file_bytes));
	}
	if (r->payload_digest[0])
		json_object_set_new(o, "payload_blake2b", json_string(r->payload_digest));
	if (r->manifest_digest[0])
		json_object_set_new(o, "manifest_blake2b", json_string(r->manifest_digest));
	if (r->domains) {
		json_t *d = json_array();
		for (unsigned i = 0; bk_backup_domain_name(i); i++)
			if (r->domains & (1u << i))
				json_array_append_new(d, json_string(bk_backup_domain_name(i)));
		json_object_set_new(o, "domains", d);
	}
	json_object_set_new(o, "in_catalog", json_boolean(r->in_catalog));
	return o;
}

static int parse_u64(cli_ctx *ctx, const char *opt, const char *v, uint64_t *out)
{
	char *end = NULL;
	errno = 0;
	unsigned long long n = v ? strtoull(v, &end, 10) : 0;
	if (v == NULL || v[0] == '\0' || v[0] == '-' || *end || errno)
		return cli_error(ctx, BK_EUSER, "bad-option-value", "--%s needs a number, not '%s'",
				 opt, v ? v : "");
	*out = n;
	return 0;
}

static int run(cli_ctx *ctx)
{
	bk_config *cfg;
	bk_backup_report rep;
	bk_backup_pack_opts o = BK_BACKUP_PACK_OPTS_INIT;
	const char *const *rcpt = NULL;
	int rc = cli_config(ctx, &cfg);
	if (rc)
		return rc;
	o.serial = cli_value(ctx, "serial");
	o.model = cli_value(ctx, "model");
	o.firmware_version = cli_value(ctx, "fw-version");
	o.hardware_revision = cli_value(ctx, "hw-rev");
	o.output = cli_value(ctx, "output");
	if (o.serial == NULL || o.model == NULL || o.firmware_version == NULL)
		return cli_error(ctx, BK_EUSER, "missing-option",
				 "pack needs --serial, --model and --fw-version");
	if (cli_value(ctx, "schema") &&
	    (rc = parse_u64(ctx, "schema", cli_value(ctx, "schema"), &o.schema_version)))
		return rc;
	o.recipient_count = (size_t)cli_values(ctx, "recipient", &rcpt);
	o.recipients = rcpt;
	o.passphrase = cli_passphrase_cb;
	o.passphrase_payload = ctx;
	o.progress = cli_progress_cb;
	o.progress_payload = ctx;
	rc = bk_backup_pack(cfg, ctx->argv[0], &o, &rep);
	if (rc)
		return rc;
	cli_print(ctx, "packed %s: %s (%" PRIu64 " files, %" PRIu64 " bytes -> %" PRIu64
		       " bytes)\n",
		  rep.id, rep.path, rep.files, rep.file_bytes, rep.file_size);
	json_t *j = cli_backup_report_json(&rep);
	const char *k;
	json_t *v;
	json_object_foreach(j, k, v) cli_set(ctx, k, json_incref(v));
	json_decref(j);
	bk_backup_report_clear(&rep);
	return 0;
}

static const cli_opt opts[] = {
	{"output", 'o', "FILE", "write FILE and FILE.statement instead of the store and catalog"},
	{"recipient", 'r', "RECIPIENT",
	 "encrypt to this age recipient (repeatable; default: the depot identity and "
	 "backup.escrow_recipients)"},
	{"serial", 0, "SERIAL", "the unit's serial number (required)"},
	{"model", 0, "MODEL", "the unit's model (required)"},
	{"fw-version", 0, "VERSION", "the firmware version the memory comes from (required)"},
	{"schema", 0, "N", "the memory schema version (default 1)"},
	{"hw-rev", 0, "REV", "the unit's hardware revision"},
	{"passphrase-file", 0, "FILE", "passphrase of a protected depot identity"},
	{0},
};

const cli_command cmd_pack = {
	.name = "pack",
	.args = "DIR",
	.summary = "pack a memory folder into a backup signed by this terminal",
	.opts = opts,
	.min_args = 1,
	.max_args = 1,
	.run = run,
};
