/* aibo-restore: the command table, option parsing and output helpers shared by
 * the cmd_*.c files. Only <libbackup/...> headers and jansson are used. */
#ifndef AIBO_CLI_H
#define AIBO_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>

#include <libbackup/libbackup.h>

#define CLI_MAX_OPTS 32
#define CLI_MAX_VALUES 64

/* One option a command declares; it produces the parser and --help. */
typedef struct cli_opt {
	const char *name;     /* long name, without "--" */
	int short_name;       /* 0: none */
	const char *arg;      /* argument name ("FILE"), NULL for a flag */
	const char *help;
} cli_opt;

/* What the parser found for one declared option. */
typedef struct cli_optval {
	int count;
	const char *values[CLI_MAX_VALUES]; /* every argument given, in order */
} cli_optval;

typedef enum cli_progress_mode {
	CLI_PROGRESS_AUTO,
	CLI_PROGRESS_TTY,
	CLI_PROGRESS_JSON,
	CLI_PROGRESS_NONE,
} cli_progress_mode;

typedef struct cli_ctx {
	const char *command;
	bool json;
	int verbose;
	bool quiet;
	bool no_color;
	const char *config_file;
	const char *db;
	cli_progress_mode progress;
	bk_config *cfg;        /* loaded before the command runs (cli_config()) */
	json_t *out;           /* the JSON result object the command fills */
	/* An error set by the command itself (otherwise bk_error_last()). */
	int err_code;
	char err_reason[64];
	char err_message[1024];
	/* Parsed arguments. */
	const cli_opt *opts;
	cli_optval vals[CLI_MAX_OPTS];
	int argc;              /* positional arguments */
	char **argv;
} cli_ctx;

typedef struct cli_command {
	const char *name;      /* may be two words: "backups list" */
	const char *args;      /* positional synopsis: "FILE [FILE...]" */
	const char *summary;
	const cli_opt *opts;   /* terminated by {0} */
	int min_args, max_args; /* max -1: any */
	int (*run)(cli_ctx *ctx);
} cli_command;

/* The commands, one per cmd_*.c, listed in commands.c. */
extern const cli_command *const cli_commands[];

/* Option values. */
bool cli_flag(const cli_ctx *ctx, const char *name);
const char *cli_value(const cli_ctx *ctx, const char *name); /* last one, or NULL */
int cli_values(const cli_ctx *ctx, const char *name, const char *const **out);

/* Records a command-level error and returns `code`. */
int cli_error(cli_ctx *ctx, int code, const char *reason, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Loads the configuration (once) with the global options applied. */
int cli_config(cli_ctx *ctx, bk_config **out);

/* The exit status for a libbackup code (aibo-restore(1), EXIT STATUS). */
int cli_exit_code(int bk_code);

/* Text output goes to stdout unless --json; these help with both. */
void cli_print(cli_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Adds a member to the JSON result (steals `v`). */
void cli_set(cli_ctx *ctx, const char *key, json_t *v);

/* SIGINT/SIGTERM set a flag that cancels long work cleanly (resumable). */
void cli_signals_install(void);
int cli_cancelled(void);

/* The progress callback for library calls: bars on a terminal, JSON lines
 * with --progress=json (both on stderr); returns non-zero once cancelled.
 * `payload` is the cli_ctx. */
int cli_progress_cb(const bk_progress *p, void *payload);

/* A passphrase from the command's --passphrase-file option, then
 * AIBO_RESTORE_PASSPHRASE, then a prompt on the terminal (twice with
 * `confirm`). Never from an argument. The caller wipes `buf`. */
int cli_passphrase(cli_ctx *ctx, char *buf, size_t cap, size_t *out_len, const char *prompt,
		   bool confirm);
/* The same as a bk_passphrase_cb (payload: the cli_ctx). */
int cli_passphrase_cb(char *buf, size_t cap, size_t *out_len, const char *prompt, void *payload);

/* A DEVICE argument: a URI (usb:, tcp:, unix:) or a name from the [devices]
 * section; *out_uri is borrowed from `arg` or the configuration. */
int cli_device_resolve(cli_ctx *ctx, const char *arg, const char **out_uri);
/* Opens an authenticated session with the terminal key, certificate and
 * factory CA of the configuration. */
int cli_device_open(cli_ctx *ctx, const char *uri, bk_device **out);
/* The configured USB vendor and product id (usb.vid_pid). */
int cli_device_usb_ids(cli_ctx *ctx, uint16_t *vid, uint16_t *pid);

/* The command's --reconnect-timeout SECONDS (1 to 86400) in ms into *out
 * (0 when not given: the library's default). */
int cli_reconnect_ms(cli_ctx *ctx, int64_t *out);

/* Prints a command's --help. */
void cli_usage(FILE *f, const cli_command *cmd);

#endif
