/* aibo-restore config show */
#include <string.h>

#include "cli.h"

static int run(cli_ctx *ctx)
{
	bk_config *cfg;
	int rc = cli_config(ctx, &cfg);
	if (rc)
		return rc;
	json_t *values = json_object();
	size_t n = bk_config_count(cfg);
	for (size_t i = 0; i < n; i++) {
		const char *k, *v, *o;
		rc = bk_config_entry(cfg, i, &k, &v, &o);
		if (rc) {
			json_decref(values);
			return rc;
		}
		const char *shown = bk_config_is_secret(k) ? "(redacted)" : v;
		cli_print(ctx, "%-28s = %-40s # %s\n", k, shown, o);
		json_t *e = json_object();
		json_object_set_new(e, "value", json_string(shown));
		json_object_set_new(e, "origin", json_string(o));
		json_object_set_new(values, k, e);
	}
	cli_set(ctx, "config", values);
	return 0;
}

static const cli_opt opts[] = {{0}};

const cli_command cmd_config_show = {
	.name = "config show",
	.args = "",
	.summary = "print the effective configuration and where each value came from",
	.opts = opts,
	.min_args = 0,
	.max_args = 0,
	.run = run,
};
