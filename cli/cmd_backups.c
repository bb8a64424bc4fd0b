/* aibo-restore backups: the depot's catalog of backups and its store. */
#include <inttypes.h>
#include <string.h>

#include <libbackup/backup.h>

#include "cli.h"

json_t *cli_backup_report_json(const bk_backup_report *r);
json_t *cli_statement_json(const bk_statement *st);
void cli_statement_print(cli_ctx *ctx, const bk_statement *st);

static json_t *record_json(const bk_backup_record *r)
{
	json_t *o = json_object();
	json_object_set_new(o, "id", json_string(r->id));
	json_object_set_new(o, "location", json_string(r->location));
	json_object_set_new(o, "serial", json_string(r->serial));
	json_object_set_new(o, "model", json_string(r->model));
	json_object_set_new(o, "hardware_revision", json_string(r->hw_rev ? r->hw_rev : ""));
	json_object_set_new(o, "firmware_version", json_string(r->fw_version));
	json_object_set_new(o, "schema_version", json_integer((json_int_t)r->schema));
	json_object_set_new(o, "created", json_string(r->created));
	json_object_set_new(o, "producer", json_string(r->producer ? r->producer : ""));
	json_object_set_new(o, "plaintext_size", json_integer((json_int_t)r->plaintext_size));
	json_object_set_new(o, "file_size", json_integer((json_int_t)r->file_size));
	json_object_set_new(o, "payload_blake2b", json_string(r->payload_digest));
	json_object_set_new(o, "manifest_blake2b", json_string(r->manifest_digest));
	json_object_set_new(o, "added", json_string(r->added ? r->added : ""));
	json_object_set_new(o, "verified", r->verified ? json_string(r->verified) : json_null());
	json_object_set_new(o, "verified_at",
			    r->verified_at ? json_string(r->verified_at) : json_null());
	return o;
}

static int list_run(cli_ctx *ctx)
{
	bk_config *cfg;
	bk_catalog *cat = NULL;
	bk_backup_record *rows = NULL;
	size_t n = 0;
	int rc = cli_config(ctx, &cfg);
	if (rc)
		return rc;
	rc = bk_backup_catalog_open(&cat, cfg, 0);
	if (rc == 0)
		rc = bk_catalog_backup_list(cat, cli_value(ctx, "serial"), &rows, &n);
	else if (rc == BK_ENOTFOUND)
		rc = 0; /* no catalog yet: no backups */
	if (rc) {
		bk_catalog_free(cat);
		return rc;
	}
	json_t *arr = json_array();
	if (n)
		cli_print(ctx, "%-36s  %-16s  %-10s  %-20s  %12s  %s\n", "ID", "SERIAL", "MODEL",
			  "CREATED", "SIZE", "VERIFIED");
	for (size_t i = 0; i < n; i++) {
		json_array_append_new(arr, record_json(&rows[i]));
		cli_print(ctx, "%-36s  %-16s  %-10s  %-20s  %12" PRIu64 "  %s\n", rows[i].id,
			  rows[i].serial, rows[i].model, rows[i].created, rows[i].file_size,
			  rows[i].verified ? rows[i].verified : "-");
	}
	cli_set(ctx, "backups", arr);
	cli_set(ctx, "count", json_integer((json_int_t)n));
	bk_catalog_backup_list_free(rows, n);
	bk_catalog_free(cat);
	return 0;
}

static int show_run(cli_ctx *ctx)
{
	bk_config *cfg;
	bk_catalog *cat = NULL;
	bk_backup_record r;
	bk_statement *st = NULL;
	int rc = cli_config(ctx, &cfg);
	if (rc)
		return rc;
	memset(&r, 0, sizeof(r));
	rc = bk_backup_catalog_open(&cat, cfg, 0);
	if (rc == BK_ENOTFOUND)
		return cli_error(ctx, BK_ENOTFOUND, "backup-not-found", "no backup '%s' in the catalog",
				 ctx->argv[0]);
	if (rc == 0)
		rc = bk_catalog_backup_get(cat, ctx->argv[0], &r);
	if (rc) {
		bk_catalog_free(cat);
		return rc;
	}
	json_t *o = record_json(&r);
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v) cli_set(ctx, k, json_incref(v));
	json_decref(o);
	cli_print(ctx, "location:          %s\n", r.location);
	cli_print(ctx, "added:             %s\n", r.added ? r.added : "");
	cli_print(ctx, "verified:          %s%s%s\n", r.verified ? r.verified : "never",
		  r.verified_at ? " at " : "", r.verified_at ? r.verified_at : "");
	if (bk_statement_parse(&st, r.statement, r.statement_len) == 0) {
		int valid = bk_statement_verify(st, cfg) == 0;
		json_t *sj = cli_statement_json(st);
		json_object_set_new(sj, "valid", json_boolean(valid));
		if (!valid)
			json_object_set_new(sj, "error", json_string(bk_error_last()->message));
		cli_set(ctx, "statement", sj);
		cli_statement_print(ctx, st);
		cli_print(ctx, "statement:         %s\n",
			  valid ? "signature and certificate verify" : bk_error_last()->message);
	}
	bk_statement_free(st);
	bk_backup_record_clear(&r);
	bk_catalog_free(cat);
	return 0;
}

static int import_run(cli_ctx *ctx)
{
	bk_config *cfg;
	bk_backup_report rep;
	int rc = cli_config(ctx, &cfg);
	if (rc)
		return rc;
	if ((rc = bk_backup_import(cfg, ctx->argv[0], &rep)))
		return rc;
	json_t *j = cli_backup_report_json(&rep);
	const char *k;
	json_t *v;
	json_object_foreach(j, k, v) cli_set(ctx, k, json_incref(v));
	json_decref(j);
	cli_print(ctx, "imported %s: %s\n", rep.id, rep.location);
	bk_backup_report_clear(&rep);
	return 0;
}

static int rm_run(cli_ctx *ctx)
{
	bk_config *cfg;
	bk_backup_report rep;
	int rc = cli_config(ctx, &cfg);
	if (rc)
		return rc;
	if (!cli_flag(ctx, "yes"))
		return cli_error(ctx, BK_EUSER, "confirmation-required",
				 "backups rm deletes the backup file: add --yes to confirm");
	if ((rc = bk_backup_remove(cfg, ctx->argv[0], &rep)))
		return rc;
	cli_set(ctx, "id", json_string(rep.id));
	cli_set(ctx, "removed", json_true());
	cli_set(ctx, "location", json_string(rep.location ? rep.location : ""));
	cli_print(ctx, "removed %s\n", rep.id);
	bk_backup_report_clear(&rep);
	return 0;
}

static json_t *gc_list(cli_ctx *ctx, const char *title, const bk_backup_gc_item *it, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_object();
		json_object_set_new(o, "id", it[i].id ? json_string(it[i].id) : json_null());
		json_object_set_new(o, "name", json_string(it[i].name));
		json_array_append_new(a, o);
		cli_print(ctx, "%s: %s\n", title, it[i].name);
	}
	return a;
}

static int gc_run(cli_ctx *ctx)
{
	bk_config *cfg;
	bk_backup_gc_report g;
	int rc = cli_config(ctx, &cfg);
	if (rc)
		return rc;
	if ((rc = bk_backup_gc(cfg, &g)))
		return rc;
	cli_set(ctx, "orphan_files",
		gc_list(ctx, "not in the catalog", g.orphan_files, g.orphan_file_count));
	cli_set(ctx, "missing_files",
		gc_list(ctx, "file missing", g.missing_files, g.missing_file_count));
	cli_set(ctx, "removed_parts",
		gc_list(ctx, "removed leftover", g.removed_parts, g.removed_part_count));
	cli_set(ctx, "busy_parts", gc_list(ctx, "still being written", g.busy_parts,
					   g.busy_part_count));
	if (!g.orphan_file_count && !g.missing_file_count && !g.removed_part_count &&
	    !g.busy_part_count)
		cli_print(ctx, "store and catalog agree\n");
	bk_backup_gc_report_clear(&g);
	return 0;
}

static const cli_opt list_opts[] = {
	{"serial", 0, "SERIAL", "only this unit's backups"},
	{0},
};
static const cli_opt no_opts[] = {
	{0},
};
static const cli_opt rm_opts[] = {
	{"yes", 'y', NULL, "really remove the backup and its file"},
	{0},
};

const cli_command cmd_backups_list = {
	.name = "backups list",
	.args = "",
	.summary = "list the backups in the catalog, newest first",
	.opts = list_opts,
	.min_args = 0,
	.max_args = 0,
	.run = list_run,
};

const cli_command cmd_backups_show = {
	.name = "backups show",
	.args = "ID",
	.summary = "show a catalog backup, its statement and last verification",
	.opts = no_opts,
	.min_args = 1,
	.max_args = 1,
	.run = show_run,
};

const cli_command cmd_backups_import = {
	.name = "backups import",
	.args = "FILE",
	.summary = "check a backup file and its statement and add them to the store and catalog",
	.opts = no_opts,
	.min_args = 1,
	.max_args = 1,
	.run = import_run,
};

const cli_command cmd_backups_rm = {
	.name = "backups rm",
	.args = "ID",
	.summary = "remove a backup from the catalog and the store (needs --yes)",
	.opts = rm_opts,
	.min_args = 1,
	.max_args = 1,
	.run = rm_run,
};

const cli_command cmd_backups_gc = {
	.name = "backups gc",
	.args = "",
	.summary = "report files without catalog rows and rows without files; remove *.part leftovers",
	.opts = no_opts,
	.min_args = 0,
	.max_args = 0,
	.run = gc_run,
};
