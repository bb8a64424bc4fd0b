/* aibo-restore help [COMMAND] */
#include <string.h>

#include "cli.h"

static int run(cli_ctx *ctx)
{
	if (ctx->argc > 0) {
		/* "help backups list" or "help backups" */
		char name[128];
		snprintf(name, sizeof(name), "%s%s%s", ctx->argv[0], ctx->argc > 1 ? " " : "",
			 ctx->argc > 1 ? ctx->argv[1] : "");
		for (const cli_command *const *c = cli_commands; *c; c++) {
			if (strcmp((*c)->name, name) == 0) {
				if (ctx->json) {
					cli_set(ctx, "command", json_string((*c)->name));
					cli_set(ctx, "summary", json_string((*c)->summary));
				} else {
					cli_usage(stdout, *c);
				}
				return 0;
			}
		}
		size_t l = strlen(ctx->argv[0]);
		bool any = false;
		for (const cli_command *const *c = cli_commands; *c; c++) {
			if (strncmp((*c)->name, ctx->argv[0], l) == 0 && (*c)->name[l] == ' ') {
				cli_print(ctx, "  %-22s %s\n", (*c)->name, (*c)->summary);
				any = true;
			}
		}
		if (any)
			return 0;
		return cli_error(ctx, BK_EUSER, "unknown-command", "unknown command '%s'", name);
	}
	json_t *list = json_array();
	cli_print(ctx, "usage: aibo-restore [GLOBAL OPTIONS] COMMAND [OPTIONS] [ARGS]\n\n"
		       "Moves a robot companion's memory and identity onto a replacement unit.\n\n"
		       "commands:\n");
	for (const cli_command *const *c = cli_commands; *c; c++) {
		cli_print(ctx, "  %-22s %s\n", (*c)->name, (*c)->summary);
		json_t *o = json_object();
		json_object_set_new(o, "name", json_string((*c)->name));
		json_object_set_new(o, "summary", json_string((*c)->summary));
		json_array_append_new(list, o);
	}
	cli_print(ctx, "\nglobal options:\n"
		       "  --json                 one JSON object on stdout, errors included\n"
		       "  -v, --verbose          more diagnostics on stderr (repeatable)\n"
		       "  -q, --quiet            only errors on stderr\n"
		       "  --config FILE          read FILE instead of the default config files\n"
		       "  --db FILE              use FILE as the catalog and journal database\n"
		       "  --progress=MODE        auto, tty, json or none\n"
		       "  --no-color             no colours in terminal output\n"
		       "  --version              print the version\n"
		       "\n'aibo-restore COMMAND --help' describes a command; see aibo-restore(1).\n");
	cli_set(ctx, "commands", list);
	return 0;
}

static const cli_opt opts[] = {{0}};

const cli_command cmd_help = {
	.name = "help",
	.args = "[COMMAND]",
	.summary = "list the commands, or describe one",
	.opts = opts,
	.min_args = 0,
	.max_args = 2,
	.run = run,
};
