/* aibo-restore: argument parsing, dispatch, output and exit codes. */
#include <getopt.h>
#include <locale.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

enum {
	G_JSON = 1000,
	G_CONFIG,
	G_DB,
	G_PROGRESS,
	G_NO_COLOR,
	G_HELP,
	G_VERSION,
	G_VERBOSE,
	G_QUIET,
	G_CMD_BASE = 2000,
};

static const struct option global_long[] = {
	{"json", no_argument, NULL, G_JSON},
	{"config", required_argument, NULL, G_CONFIG},
	{"db", required_argument, NULL, G_DB},
	{"progress", required_argument, NULL, G_PROGRESS},
	{"no-color", no_argument, NULL, G_NO_COLOR},
	{"help", no_argument, NULL, G_HELP},
	{"version", no_argument, NULL, G_VERSION},
	{"verbose", no_argument, NULL, G_VERBOSE},
	{"quiet", no_argument, NULL, G_QUIET},
};
#define N_GLOBAL (sizeof(global_long) / sizeof(global_long[0]))

int cli_exit_code(int bk_code)
{
	switch (bk_code) {
	case BK_OK: return 0;
	case BK_EUSER: return 2;
	case BK_ENOTFOUND: return 3;
	case BK_EVERIFY: return 4;
	case BK_EINCOMPAT: return 5;
	case BK_EDISCONNECTED:
	case BK_ETIMEOUT: return 6;
	case BK_EAUTH: return 7;
	case BK_EAPI: return 8;
	case BK_EBUSY: return 9;
	case BK_ENOSPACE: return 10;
	case BK_ECANCELLED: return 11;
	case BK_EROLLBACK: return 12;
	default: return 1;
	}
}

int cli_error(cli_ctx *ctx, int code, const char *reason, const char *fmt, ...)
{
	va_list ap;
	ctx->err_code = code;
	snprintf(ctx->err_reason, sizeof(ctx->err_reason), "%s",
		 reason ? reason : bk_error_code_name(code));
	va_start(ap, fmt);
	vsnprintf(ctx->err_message, sizeof(ctx->err_message), fmt, ap);
	va_end(ap);
	return code;
}

static int opt_index(const cli_ctx *ctx, const char *name)
{
	if (ctx->opts == NULL)
		return -1;
	for (int i = 0; ctx->opts[i].name; i++)
		if (strcmp(ctx->opts[i].name, name) == 0)
			return i;
	return -1;
}

bool cli_flag(const cli_ctx *ctx, const char *name)
{
	int i = opt_index(ctx, name);
	return i >= 0 && ctx->vals[i].count > 0;
}

const char *cli_value(const cli_ctx *ctx, const char *name)
{
	int i = opt_index(ctx, name);
	if (i < 0 || ctx->vals[i].count == 0)
		return NULL;
	int n = ctx->vals[i].count < CLI_MAX_VALUES ? ctx->vals[i].count : CLI_MAX_VALUES;
	return ctx->vals[i].values[n - 1];
}

int cli_values(const cli_ctx *ctx, const char *name, const char *const **out)
{
	int i = opt_index(ctx, name);
	if (i < 0 || ctx->vals[i].count == 0) {
		*out = NULL;
		return 0;
	}
	*out = ctx->vals[i].values;
	return ctx->vals[i].count < CLI_MAX_VALUES ? ctx->vals[i].count : CLI_MAX_VALUES;
}

void cli_print(cli_ctx *ctx, const char *fmt, ...)
{
	if (ctx->json)
		return;
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
}

void cli_set(cli_ctx *ctx, const char *key, json_t *v)
{
	if (ctx->out == NULL)
		ctx->out = json_object();
	json_object_set_new(ctx->out, key, v ? v : json_null());
}

int cli_config(cli_ctx *ctx, bk_config **out)
{
	if (ctx->cfg == NULL) {
		bk_config_opts o = BK_CONFIG_OPTS_INIT;
		o.file = ctx->config_file;
		int rc = bk_config_load(&ctx->cfg, &o);
		if (rc)
			return rc;
		if (ctx->db) {
			rc = bk_config_set(ctx->cfg, "depot.db", ctx->db, "--db");
			if (rc)
				return rc;
		}
	}
	*out = ctx->cfg;
	return 0;
}

static void usage_line(FILE *f, const cli_command *cmd)
{
	fprintf(f, "usage: aibo-restore %s%s%s%s\n", cmd->name, cmd->opts && cmd->opts[0].name ? " [OPTIONS]" : "",
		cmd->args && cmd->args[0] ? " " : "", cmd->args ? cmd->args : "");
}

void cli_usage(FILE *f, const cli_command *cmd)
{
	usage_line(f, cmd);
	fprintf(f, "\n%s\n", cmd->summary);
	if (cmd->opts && cmd->opts[0].name) {
		fprintf(f, "\noptions:\n");
		for (const cli_opt *o = cmd->opts; o->name; o++) {
			char left[80];
			if (o->short_name)
				snprintf(left, sizeof(left), "-%c, --%s%s%s", o->short_name, o->name,
					 o->arg ? " " : "", o->arg ? o->arg : "");
			else
				snprintf(left, sizeof(left), "    --%s%s%s", o->name, o->arg ? " " : "",
					 o->arg ? o->arg : "");
			fprintf(f, "  %-30s %s\n", left, o->help);
		}
	}
	fprintf(f, "\nglobal options: --json, -v, -q, --config FILE, --db FILE,\n"
		   "  --progress=auto|tty|json|none, --no-color (see aibo-restore(1))\n");
}

static void print_error(cli_ctx *ctx, int code)
{
	const char *reason = ctx->err_code ? ctx->err_reason : bk_error_last()->reason;
	const char *msg = ctx->err_code ? ctx->err_message : bk_error_last()->message;
	if (bk_error_last()->code != code && !ctx->err_code) {
		reason = bk_error_code_name(code);
		msg = bk_strerror(code);
	}
	if (msg == NULL || msg[0] == '\0')
		msg = bk_strerror(code);
	if (reason == NULL || reason[0] == '\0')
		reason = bk_error_code_name(code);
	if (ctx->json) {
		json_t *o = json_object();
		json_object_set_new(o, "version", json_integer(1));
		json_t *e = json_object();
		json_object_set_new(e, "code", json_string(reason));
		json_object_set_new(e, "message", json_string(msg));
		json_object_set_new(e, "exit", json_integer(cli_exit_code(code)));
		json_object_set_new(o, "error", e);
		/* A partial result (what was done before the failure) travels along. */
		if (ctx->out) {
			const char *k;
			json_t *v;
			json_object_foreach(ctx->out, k, v)
			{
				if (strcmp(k, "version") && strcmp(k, "error"))
					json_object_set(o, k, v);
			}
		}
		char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
		if (s) {
			puts(s);
			free(s);
		}
		json_decref(o);
	}
	fprintf(stderr, "aibo-restore: %s\n", msg);
}

static void print_result(cli_ctx *ctx)
{
	if (!ctx->json)
		return;
	json_t *o = json_object();
	json_object_set_new(o, "version", json_integer(1));
	if (ctx->out)
		json_object_update(o, ctx->out);
	char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
	if (s) {
		puts(s);
		free(s);
	}
	json_decref(o);
}

static int usage_error(cli_ctx *ctx, const cli_command *cmd, const char *reason, const char *fmt,
		       ...) __attribute__((format(printf, 4, 5)));
static int usage_error(cli_ctx *ctx, const cli_command *cmd, const char *reason, const char *fmt,
		       ...)
{
	va_list ap;
	ctx->err_code = BK_EUSER;
	snprintf(ctx->err_reason, sizeof(ctx->err_reason), "%s", reason);
	va_start(ap, fmt);
	vsnprintf(ctx->err_message, sizeof(ctx->err_message), fmt, ap);
	va_end(ap);
	if (cmd && !ctx->json) {
		size_t l = strlen(ctx->err_message);
		snprintf(ctx->err_message + l, sizeof(ctx->err_message) - l,
			 " (see 'aibo-restore %s --help')", cmd->name);
	}
	return BK_EUSER;
}

static int set_progress(cli_ctx *ctx, const char *v)
{
	if (strcmp(v, "auto") == 0)
		ctx->progress = CLI_PROGRESS_AUTO;
	else if (strcmp(v, "tty") == 0)
		ctx->progress = CLI_PROGRESS_TTY;
	else if (strcmp(v, "json") == 0)
		ctx->progress = CLI_PROGRESS_JSON;
	else if (strcmp(v, "none") == 0)
		ctx->progress = CLI_PROGRESS_NONE;
	else
		return -1;
	return 0;
}

/* Handles a global option; returns 0, 1 for --help, 2 for --version, or a
 * BK_EUSER error. */
static int global_opt(cli_ctx *ctx, int c, const char *arg, const cli_command *cmd)
{
	switch (c) {
	case G_JSON: ctx->json = true; return 0;
	case G_CONFIG: ctx->config_file = arg; return 0;
	case G_DB: ctx->db = arg; return 0;
	case G_NO_COLOR: ctx->no_color = true; return 0;
	case 'v':
	case G_VERBOSE: ctx->verbose++; return 0;
	case 'q':
	case G_QUIET: ctx->quiet = true; return 0;
	case 'h':
	case G_HELP: return 1;
	case G_VERSION: return 2;
	case G_PROGRESS:
		if (set_progress(ctx, arg) != 0)
			return usage_error(ctx, cmd, "bad-option-value",
					   "--progress must be auto, tty, json or none, not '%s'", arg);
		return 0;
	default: return BK_EUSER;
	}
}

static const cli_command *find_command(int argc, char **argv, int *words)
{
	const cli_command *best = NULL;
	*words = 0;
	for (const cli_command *const *c = cli_commands; *c; c++) {
		const char *name = (*c)->name;
		const char *sp = strchr(name, ' ');
		if (sp == NULL) {
			if (argc >= 1 && strcmp(argv[0], name) == 0 && *words < 1) {
				best = *c;
				*words = 1;
			}
		} else if (argc >= 2 && strncmp(argv[0], name, (size_t)(sp - name)) == 0 &&
			   argv[0][sp - name] == '\0' && strcmp(argv[1], sp + 1) == 0) {
			best = *c;
			*words = 2;
		}
	}
	return best;
}

/* Whether some command is named "<word> ..." (a command group). */
static bool is_group(const char *word)
{
	size_t wl = strlen(word);
	for (const cli_command *const *c = cli_commands; *c; c++)
		if (strncmp((*c)->name, word, wl) == 0 && (*c)->name[wl] == ' ')
			return true;
	return false;
}

static void log_to_stderr(int level, const char *domain, const char *msg, void *payload)
{
	static const char *names[] = {"error", "warning", "info", "debug", "trace"};
	(void)payload;
	fprintf(stderr, "aibo-restore: %s: %s: %s\n", names[level < 0 ? 0 : level > 4 ? 4 : level],
		domain, msg);
}

static int parse_command_args(cli_ctx *ctx, const cli_command *cmd, int argc, char **argv)
{
	struct option longs[N_GLOBAL + CLI_MAX_OPTS + 1];
	char shorts[3 * CLI_MAX_OPTS + 8] = "+:vqh"; /* '+' replaced below */
	size_t n = 0, sp = strlen(shorts);
	memset(longs, 0, sizeof(longs));
	shorts[0] = '-'; /* keep positional arguments in order, with permutation */
	/* The command's own options first: a command option named like a
	 * global one (firmware pack --version) is the command's. */
	int nopts = 0;
	for (const cli_opt *o = cmd->opts; o && o->name; o++, nopts++) {
		longs[n].name = o->name;
		longs[n].has_arg = o->arg ? required_argument : no_argument;
		longs[n].val = G_CMD_BASE + nopts;
		n++;
		if (o->short_name) {
			shorts[sp++] = (char)o->short_name;
			if (o->arg)
				shorts[sp++] = ':';
		}
	}
	for (size_t i = 0; i < N_GLOBAL; i++) {
		bool shadowed = false;
		for (int k = 0; k < nopts; k++)
			if (strcmp(cmd->opts[k].name, global_long[i].name) == 0)
				shadowed = true;
		if (!shadowed)
			longs[n++] = global_long[i];
	}
	shorts[sp] = '\0';
	ctx->opts = cmd->opts;
	ctx->argv = calloc((size_t)argc + 1, sizeof(char *));
	if (ctx->argv == NULL)
		return cli_error(ctx, BK_ENOMEM, "out-of-memory", "out of memory");
	ctx->argc = 0;
	/* 0, not 1: glibc then starts afresh, forgetting the '+' ordering of
	 * the global parse, so options may follow positional arguments. */
	optind = 0;
	opterr = 0;
	int c, li;
	while ((c = getopt_long(argc, argv, shorts, longs, &li)) != -1) {
		if (c == 1) { /* a positional argument, in order */
			ctx->argv[ctx->argc++] = optarg;
			continue;
		}
		if (c == '?') {
			if (optopt && optopt < 256)
				return usage_error(ctx, cmd, "unknown-option", "unknown option '-%c'", optopt);
			return usage_error(ctx, cmd, "unknown-option", "unknown option '%s'",
					   argv[optind - 1]);
		}
		if (c == ':')
			return usage_error(ctx, cmd, "missing-argument", "option '%s' needs an argument",
					   argv[optind - 1]);
		if (c >= G_CMD_BASE) {
			cli_optval *v = &ctx->vals[c - G_CMD_BASE];
			if (v->count < CLI_MAX_VALUES)
				v->values[v->count] = optarg;
			v->count++;
			continue;
		}
		/* A short option of the command. */
		int found = -1;
		for (int i = 0; i < nopts; i++)
			if (cmd->opts[i].short_name == c)
				found = i;
		if (found >= 0) {
			cli_optval *v = &ctx->vals[found];
			if (v->count < CLI_MAX_VALUES)
				v->values[v->count] = optarg;
			v->count++;
			continue;
		}
		int g = global_opt(ctx, c, optarg, cmd);
		if (g == 1) {
			cli_usage(stdout, cmd);
			return 1;
		}
		if (g == 2)
			continue;
		if (g < 0)
			return g;
	}
	/* After "--", getopt leaves the rest in argv[optind..]. */
	for (int i = optind; i < argc; i++)
		ctx->argv[ctx->argc++] = argv[i];
	if (ctx->argc < cmd->min_args)
		return usage_error(ctx, cmd, "missing-argument", "%s: missing argument%s%s", cmd->name,
				   cmd->args ? ": " : "", cmd->args ? cmd->args : "");
	if (cmd->max_args >= 0 && ctx->argc > cmd->max_args)
		return usage_error(ctx, cmd, "extra-argument", "%s: unexpected argument '%s'", cmd->name,
				   ctx->argv[cmd->max_args]);
	return 0;
}

int main(int argc, char **argv)
{
	cli_ctx ctx;
	int rc = 0, words = 0;
	const cli_command *cmd = NULL;
	memset(&ctx, 0, sizeof(ctx));
	setlocale(LC_CTYPE, "");

	/* Global options before the command. */
	optind = 1;
	opterr = 0;
	int c, li;
	bool want_help = false, want_version = false;
	while ((c = getopt_long(argc, argv, "+:vqh", global_long, &li)) != -1) {
		if (c == '?') {
			rc = usage_error(&ctx, NULL, "unknown-option", "unknown option '%s'",
					 argv[optind - 1]);
			goto out;
		}
		if (c == ':') {
			rc = usage_error(&ctx, NULL, "missing-argument", "option '%s' needs an argument",
					 argv[optind - 1]);
			goto out;
		}
		int g = global_opt(&ctx, c, optarg, NULL);
		if (g == 1)
			want_help = true;
		else if (g == 2)
			want_version = true;
		else if (g < 0) {
			rc = g;
			goto out;
		}
	}
	/* The command may still be followed by --json etc.; peek for it so that
	 * an unknown command reports in the requested form. */
	for (int i = optind; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strcmp(argv[i], "--json") == 0)
			ctx.json = true;
	}
	if (bk_init() != 0) {
		rc = BK_ERROR;
		goto out;
	}
	if (want_version && optind >= argc) {
		argv[optind - 1] = "version";
		optind--;
	}
	if (optind >= argc) {
		if (want_help) {
			argv[optind - 1] = "help";
			optind--;
		} else {
			rc = usage_error(&ctx, NULL, "missing-command",
					 "no command given (try 'aibo-restore help')");
			goto out;
		}
	}
	cmd = find_command(argc - optind, argv + optind, &words);
	if (cmd == NULL) {
		if (is_group(argv[optind]))
			rc = usage_error(&ctx, NULL, "unknown-command",
					 "'%s' needs a subcommand (try 'aibo-restore help %s')",
					 argv[optind], argv[optind]);
		else
			rc = usage_error(&ctx, NULL, "unknown-command",
					 "unknown command '%s' (try 'aibo-restore help')", argv[optind]);
		goto out;
	}
	ctx.command = cmd->name;
	/* The command sees its name as argv[0] and everything after it. */
	{
		int base = optind + words - 1;
		rc = parse_command_args(&ctx, cmd, argc - base, argv + base);
		if (rc == 1) {
			rc = 0;
			goto done;
		}
		if (rc)
			goto out;
	}
	if (want_help) {
		cli_usage(stdout, cmd);
		goto done;
	}
	if (ctx.verbose > 0)
		bk_log_set_handler(log_to_stderr, BK_LOG_WARNING + ctx.verbose, NULL);
	else if (!ctx.quiet)
		bk_log_set_handler(log_to_stderr, BK_LOG_WARNING, NULL);
	cli_signals_install();
	rc = cmd->run(&ctx);
out:
	if (rc < 0) {
		print_error(&ctx, ctx.err_code ? ctx.err_code : rc);
		rc = cli_exit_code(ctx.err_code ? ctx.err_code : rc);
	} else if (rc == 0) {
		print_result(&ctx);
	}
done:
	fflush(stdout);
	json_decref(ctx.out);
	bk_config_free(ctx.cfg);
	free(ctx.argv);
	bk_shutdown();
	return rc;
}
