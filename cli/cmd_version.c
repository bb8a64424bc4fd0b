/* aibo-restore version */
#include "cli.h"

static int run(cli_ctx *ctx)
{
	cli_print(ctx, "aibo-restore %s\n", bk_version());
	if (ctx->verbose || cli_flag(ctx, "dependencies"))
		cli_print(ctx, "%s\n", bk_version_dependencies());
	cli_set(ctx, "aibo_restore", json_string(BK_VERSION_STRING));
	cli_set(ctx, "libbackup", json_string(bk_version()));
	cli_set(ctx, "dependencies", json_string(bk_version_dependencies()));
	return 0;
}

static const cli_opt opts[] = {
	{"dependencies", 0, NULL, "also print the versions of the libraries in use"},
	{0},
};

const cli_command cmd_version = {
	.name = "version",
	.args = "",
	.summary = "print the version of aibo-restore and its libraries",
	.opts = opts,
	.min_args = 0,
	.max_args = 0,
	.run = run,
};
