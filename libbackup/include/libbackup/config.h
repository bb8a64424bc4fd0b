/* libbackup: the aibo-restore configuration.
 *
 * Values come, later ones winning, from /etc/aibo-restore/config, then
 * $XDG_CONFIG_HOME/aibo-restore/config (or ~/.config/...), then AIBO_RESTORE_*
 * environment variables (AIBO_RESTORE_<SECTION>_<KEY>, upper-case), then
 * what the caller sets (command-line flags). An explicit file (the `file`
 * option, or AIBO_RESTORE_CONFIG) replaces the two files. Keys are named
 * "section.key". See aibo-restore.conf(5). */
#ifndef LIBBACKUP_CONFIG_H
#define LIBBACKUP_CONFIG_H

#include <libbackup/common.h>

BK_BEGIN_DECLS

typedef struct bk_config bk_config;

#define BK_CONFIG_OPTS_VERSION 1
typedef struct bk_config_opts {
	unsigned version;
	const char *file;            /* explicit file replacing the default ones */
	const char *system_file;     /* NULL: /etc/aibo-restore/config */
	const char *user_file;       /* NULL: from XDG_CONFIG_HOME or HOME */
	const char *const *environ;  /* NULL: the process environment */
} bk_config_opts;
#define BK_CONFIG_OPTS_INIT {BK_CONFIG_OPTS_VERSION, NULL, NULL, NULL, NULL}

/* Loads the configuration. A malformed line or an unknown key is BK_EUSER
 * with the file and line in the message. */
BK_EXTERN int bk_config_load(bk_config **out, const bk_config_opts *opts);
/* An empty configuration (only the defaults). */
BK_EXTERN int bk_config_new(bk_config **out);
BK_EXTERN void bk_config_free(bk_config *cfg);

/* Sets a value with its origin ("--db", a file:line...). Paths in `value`
 * are taken relative to the current folder. */
BK_EXTERN int bk_config_set(bk_config *cfg, const char *key, const char *value, const char *origin);

/* The effective value of a key, or NULL when unset and without a default. */
BK_EXTERN const char *bk_config_get(const bk_config *cfg, const char *key);
/* Where the effective value came from: "default", "FILE:LINE", "env NAME",
 * or the origin given to bk_config_set(). */
BK_EXTERN const char *bk_config_origin(const bk_config *cfg, const char *key);
BK_EXTERN int bk_config_get_u64(const bk_config *cfg, const char *key, uint64_t *out);
BK_EXTERN int bk_config_get_bool(const bk_config *cfg, const char *key, int *out);
/* Whether a key holds a secret (never to be printed). */
BK_EXTERN int bk_config_is_secret(const char *key);

/* Iterates over every key that has a value (defaults included), sorted. */
BK_EXTERN size_t bk_config_count(const bk_config *cfg);
BK_EXTERN int bk_config_entry(const bk_config *cfg, size_t i, const char **key, const char **value,
			      const char **origin);

BK_END_DECLS

#endif
