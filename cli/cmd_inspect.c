/* aibo-restore inspect: what a backup file says about itself, without a key. */
#include <inttypes.h>
#include <string.h>

#include <libbackup/backup.h>

#include "cli.h"

json_t *cli_statement_json(const bk_statement *st);
void cli_statement_print(cli_ctx *ctx, const bk_statement *st);

/* The statement's fields as JSON, shared by inspect and backups show. */
json_t *cli_statement_json(const bk_statement *st)
{
	bk_statement_view v;
	bk_statement_get(st, &v);
	json_t *o = json_object();
	json_object_set_new(o, "backup_id", json_string(v.backup_id));
	json_object_set_new(o, "serial", json_string(v.serial));
	json_object_set_new(o, "model", json_string(v.model));
	json_object_set_new(o, "hardware_revision", json_string(v.hardware_revision));
	json_object_set_new(o, "firmware_version", json_string(v.firmware_version));
	json_object_set_new(o, "schema_version", json_integer((json_int_t)v.schema_version));
	json_object_set_new(o, "created", json_string(v.created));
	json_object_set_new(o, "plaintext_size", json_integer((json_int_t)v.plaintext_size));
	json_object_set_new(o, "payload_size", json_integer((json_int_t)v.payload_size));
	json_object_set_new(o, "payload_blake2b", json_string(v.payload_digest));
	json_object_set_new(o, "manifest_blake2b", json_string(v.manifest_digest));
	json_object_set_new(o, "producer_role", json_string(v.producer_role));
	json_object_set_new(o, "producer", json_string(v.producer ? v.producer : ""));
	json_object_set_new(o, "certificate_blake2b", json_string(v.certificate_fingerprint));
	return o;
}

void cli_statement_print(cli_ctx *ctx, const bk_statement *st)
{
	bk_statement_view v;
	bk_statement_get(st, &v);
	cli_print(ctx, "backup id:         %s\n", v.backup_id);
	cli_print(ctx, "serial:            %s\n", v.serial);
	cli_print(ctx, "model:             %s\n", v.model);
	cli_print(ctx, "hardware revision: %s\n", v.hardware_revision);
	cli_print(ctx, "firmware version:  %s\n", v.firmware_version);
	cli_print(ctx, "schema version:    %" PRIu64 "\n", v.schema_version);
	cli_print(ctx, "created:           %s\n", v.created);
	cli_print(ctx, "plaintext size:    %" PRIu64 "\n", v.plaintext_size);
	cli_print(ctx, "payload size:      %" PRIu64 "\n", v.payload_size);
	cli_print(ctx, "payload blake2b:   %s\n", v.payload_digest);
	cli_print(ctx, "manifest blake2b:  %s\n", v.manifest_digest);
	cli_print(ctx, "producer:          %s %s\n", v.producer_role, v.producer ? v.producer : "");
}

static int run(cli_ctx *ctx)
{
	bk_config *cfg;
	bk_backup *b = NULL;
	bk_backup_inspection in;
	int rc = cli_config(ctx, &cfg);
	if (rc)
		return rc;
	if ((rc = bk_backup_open(&b, cfg, ctx->argv[0])))
		return rc;
	rc = bk_backup_inspect(b, &in);
	if (rc) {
		bk_backup_free(b);
		return rc;
	}
	const bk_statement *st = bk_backup_statement(b);
	cli_print(ctx, "file:              %s (%" PRIu64 " bytes)\n", bk_backup_path(b), in.file_size);
	cli_print(ctx, "age header:        %" PRIu64 " bytes, %zu stanza%s:", in.header_size,
		  in.stanza_count, in.stanza_count == 1 ? "" : "s");
	json_t *types = json_array();
	for (size_t i = 0; i < in.stanza_count && i < BK_BACKUP_INSPECT_STANZAS; i++) {
		cli_print(ctx, " %s", in.stanza_types[i]);
		json_array_append_new(types, json_string(in.stanza_types[i]));
	}
	cli_print(ctx, "\n");
	cli_set(ctx, "file", json_string(bk_backup_path(b)));
	cli_set(ctx, "file_size", json_integer((json_int_t)in.file_size));
	json_t *hdr = json_object();
	json_object_set_new(hdr, "size", json_integer((json_int_t)in.header_size));
	json_object_set_new(hdr, "stanzas", json_integer((json_int_t)in.stanza_count));
	json_object_set_new(hdr, "stanza_types", types);
	cli_set(ctx, "header", hdr);
	if (bk_backup_catalog_id(b))
		cli_set(ctx, "catalog_id", json_string(bk_backup_catalog_id(b)));
	json_t *sj = st ? cli_statement_json(st) : json_object();
	json_object_set_new(sj, "present", json_boolean(in.statement_present));
	json_object_set_new(sj, "valid", json_boolean(in.statement_valid));
	if (st)
		json_object_set_new(sj, "payload_size_matches",
				    json_boolean(in.payload_size_matches));
	if (!in.statement_valid) {
		json_object_set_new(sj, "error_code", json_string(in.statement_error_reason));
		json_object_set_new(sj, "error", json_string(in.statement_error));
	}
	cli_set(ctx, "statement", sj);
	if (st)
		cli_statement_print(ctx, st);
	if (in.statement_valid)
		cli_print(ctx, "statement:         signature and certificate verify%s\n",
			  in.payload_size_matches ? "" : " (payload size differs!)");
	else
		cli_print(ctx, "statement:         %s: %s\n",
			  in.statement_present ? "INVALID" : "missing", in.statement_error);
	bk_backup_free(b);
	return 0;
}

static const cli_opt opts[] = {
	{0},
};

const cli_command cmd_inspect = {
	.name = "inspect",
	.args = "FILE|ID",
	.summary = "show a backup's age header and statement (no key needed)",
	.opts = opts,
	.min_args = 1,
	.max_args = 1,
	.run = run,
};
