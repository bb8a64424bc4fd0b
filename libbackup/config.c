/* The configuration loader: INI files, environment, flags. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libbackup/config.h>

#include "util/util.h"

extern char **environ;

typedef enum key_type {
	T_STRING,
	T_PATH,   /* relative to the file that sets it */
	T_STORE,  /* dir:PATH (PATH relative) or s3://... */
	T_U64,
	T_BOOL,
	T_LIST,   /* comma-separated */
	T_SECRET, /* never printed */
} key_type;

typedef struct key_def {
	const char *key;      /* "section.key"; "section.*" allows any key */
	key_type type;
	const char *def;      /* default, or NULL */
} key_def;

/* Every key the tool knows. Later features append theirs here and to
 * aibo-restore.conf(5). */
static const key_def keys[] = {
	{"depot.db", T_PATH, NULL},
	{"depot.store", T_STORE, NULL},
	{"depot.identity", T_PATH, NULL},
	{"depot.terminal_key", T_PATH, NULL},
	{"depot.terminal_cert", T_PATH, NULL},
	{"depot.terminal_id", T_STRING, NULL},
	{"trust.factory_ca", T_PATH, NULL},
	{"trust.service_ca", T_PATH, NULL},
	{"trust.firmware_keys", T_PATH, NULL},
	{"trust.revoked_keys", T_LIST, ""},
	{"backup.escrow_recipients", T_LIST, ""},
	{"backup.compression_level", T_U64, "3"},
	{"backup.min_battery", T_U64, "20"},
	{"limits.max_entries", T_U64, "1000000"},
	{"limits.max_bytes", T_U64, "68719476736"},
	{"limits.max_path", T_U64, "1024"},
	{"api.url", T_STRING, NULL},
	{"api.token", T_SECRET, NULL},
	{"api.token_file", T_PATH, NULL},
	{"api.ca_file", T_PATH, NULL},
	{"api.client_cert", T_PATH, NULL},
	{"api.client_key", T_PATH, NULL},
	{"api.connect_timeout", T_U64, "10"},
	{"api.timeout", T_U64, "60"},
	{"api.retries", T_U64, "6"},
	{"usb.vid_pid", T_STRING, "1209:0001"},
	{"device.timeout", T_U64, "30"},
	{"firmware.dir", T_PATH, NULL},
	{"firmware.min_battery", T_U64, "30"},
	{"devices.*", T_STRING, NULL},
	{"store.s3_endpoint", T_STRING, NULL},
	{"store.s3_region", T_STRING, NULL},
	{"store.s3_access_key", T_STRING, NULL},
	{"store.s3_secret_key", T_SECRET, NULL},
};

typedef struct entry {
	char *key;
	char *value;
	char *origin;
} entry;

struct bk_config {
	entry *v;
	size_t n, cap;
};

static const key_def *find_def(const char *key)
{
	const char *dot = strchr(key, '.');
	if (dot == NULL || dot == key || dot[1] == '\0')
		return NULL;
	for (size_t i = 0; i < BK_ARRAY_LEN(keys); i++) {
		const char *k = keys[i].key;
		size_t kl = strlen(k);
		if (kl >= 2 && k[kl - 1] == '*') {
			if (strncmp(k, key, kl - 1) == 0 && strchr(dot + 1, '.') == NULL)
				return &keys[i];
		} else if (strcmp(k, key) == 0) {
			return &keys[i];
		}
	}
	return NULL;
}

int bk_config_is_secret(const char *key)
{
	const key_def *d = find_def(key);
	return d && d->type == T_SECRET;
}

static entry *find_entry(const bk_config *cfg, const char *key)
{
	for (size_t i = 0; i < cfg->n; i++)
		if (strcmp(cfg->v[i].key, key) == 0)
			return &cfg->v[i];
	return NULL;
}

static int put(bk_config *cfg, const char *key, const char *value, const char *origin)
{
	entry *e = find_entry(cfg, key);
	char *v = bk__strdup(value);
	char *o = bk__strdup(origin);
	if (v == NULL || o == NULL) {
		bk__free(v);
		bk__free(o);
		return BK_ENOMEM;
	}
	if (e == NULL) {
		if (cfg->n == cfg->cap) {
			size_t cap = cfg->cap ? cfg->cap * 2 : 32;
			entry *nv = bk__realloc(cfg->v, cap * sizeof(*nv));
			if (nv == NULL) {
				bk__free(v);
				bk__free(o);
				return BK_ENOMEM;
			}
			cfg->v = nv;
			cfg->cap = cap;
		}
		char *k = bk__strdup(key);
		if (k == NULL) {
			bk__free(v);
			bk__free(o);
			return BK_ENOMEM;
		}
		e = &cfg->v[cfg->n++];
		e->key = k;
		e->value = NULL;
		e->origin = NULL;
	}
	if (e->value && bk_config_is_secret(key))
		bk_wipe(e->value, strlen(e->value));
	bk__free(e->value);
	bk__free(e->origin);
	e->value = v;
	e->origin = o;
	return 0;
}

/* Resolves a path value against `base` (a folder; NULL: as given). */
static char *resolve(const key_def *d, const char *value, const char *base)
{
	if (base == NULL || value[0] == '\0')
		return bk__strdup(value);
	if (d->type == T_PATH) {
		if (value[0] == '~' && value[1] == '/' && getenv("HOME"))
			return bk__asprintf("%s%s", getenv("HOME"), value + 1);
		return bk_path_join(base, value);
	}
	if (d->type == T_STORE && strncmp(value, "dir:", 4) == 0) {
		char *p = bk_path_join(base, value + 4);
		if (p == NULL)
			return NULL;
		char *r = bk__asprintf("dir:%s", p);
		bk__free(p);
		return r;
	}
	return bk__strdup(value);
}

static int check_value(const key_def *d, const char *key, const char *value, const char *origin)
{
	uint64_t u;
	switch (d->type) {
	case T_U64:
		if (bk_parse_u64(value, &u) != 0)
			return bk__error_set(BK_EUSER, "config-invalid",
					     "%s: %s: expected a number, got '%s'", origin, key, value);
		break;
	case T_BOOL:
		if (strcmp(value, "true") && strcmp(value, "false") && strcmp(value, "yes") &&
		    strcmp(value, "no") && strcmp(value, "1") && strcmp(value, "0"))
			return bk__error_set(BK_EUSER, "config-invalid",
					     "%s: %s: expected true or false, got '%s'", origin, key,
					     value);
		break;
	case T_STORE:
		if (strncmp(value, "dir:", 4) != 0 && strncmp(value, "s3://", 5) != 0)
			return bk__error_set(BK_EUSER, "config-invalid",
					     "%s: %s: expected dir:PATH or s3://BUCKET/PREFIX, got '%s'",
					     origin, key, value);
		break;
	default:
		break;
	}
	return 0;
}

static int set_from(bk_config *cfg, const char *key, const char *value, const char *origin,
		    const char *base)
{
	const key_def *d = find_def(key);
	if (d == NULL)
		return bk__error_set(BK_EUSER, "config-unknown-key", "%s: unknown key '%s'", origin,
				     key);
	int rc = check_value(d, key, value, origin);
	if (rc)
		return rc;
	char *v = resolve(d, value, base);
	if (v == NULL)
		return BK_ENOMEM;
	rc = put(cfg, key, v, origin);
	if (d->type == T_SECRET)
		bk_wipe(v, strlen(v));
	bk__free(v);
	return rc;
}

int bk_config_set(bk_config *cfg, const char *key, const char *value, const char *origin)
{
	if (cfg == NULL || key == NULL || value == NULL)
		return bk__error_set(BK_EINVALID, NULL, "config: bad argument");
	return set_from(cfg, key, value, origin ? origin : "caller", NULL);
}

static char *trim(char *s)
{
	while (*s && isspace((unsigned char)*s))
		s++;
	char *e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

static int load_file(bk_config *cfg, const char *path, int must_exist)
{
	uint8_t *data = NULL;
	size_t len = 0;
	char *dir = NULL;
	char section[128] = "";
	int rc = bk_file_read(path, 1 << 20, &data, &len);
	if (rc == BK_ENOTFOUND && !must_exist) {
		bk_error_clear();
		return 0;
	}
	if (rc)
		return rc;
	if (memchr(data, '\0', len)) {
		rc = bk__error_set(BK_EUSER, "config-malformed", "%s: contains a NUL byte", path);
		goto done;
	}
	dir = bk_path_dirname(path);
	if (dir == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	char *line = (char *)data;
	unsigned lineno = 0;
	while (line) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		lineno++;
		char *s = trim(line);
		char origin[4200];
		snprintf(origin, sizeof(origin), "%s:%u", path, lineno);
		if (*s == '\0' || *s == '#' || *s == ';') {
			/* blank or comment */
		} else if (*s == '[') {
			char *end = strchr(s, ']');
			if (end == NULL || trim(end + 1)[0] != '\0' || end == s + 1) {
				rc = bk__error_set(BK_EUSER, "config-malformed",
						   "%s: malformed section header", origin);
				goto done;
			}
			*end = '\0';
			char *name = trim(s + 1);
			for (char *c = name; *c; c++)
				if (!(isalnum((unsigned char)*c) || *c == '_' || *c == '-')) {
					rc = bk__error_set(BK_EUSER, "config-malformed",
							   "%s: bad section name '%s'", origin, name);
					goto done;
				}
			if (!bk_strlcpy(section, name, sizeof(section))) {
				rc = bk__error_set(BK_EUSER, "config-malformed",
						   "%s: section name too long", origin);
				goto done;
			}
		} else {
			char *eq = strchr(s, '=');
			if (eq == NULL) {
				rc = bk__error_set(BK_EUSER, "config-malformed",
						   "%s: expected 'key = value'", origin);
				goto done;
			}
			*eq = '\0';
			char *k = trim(s);
			char *v = trim(eq + 1);
			if (section[0] == '\0') {
				rc = bk__error_set(BK_EUSER, "config-malformed",
						   "%s: '%s' outside any [section]", origin, k);
				goto done;
			}
			if (*k == '\0') {
				rc = bk__error_set(BK_EUSER, "config-malformed", "%s: empty key",
						   origin);
				goto done;
			}
			char full[300];
			if ((size_t)snprintf(full, sizeof(full), "%s.%s", section, k) >= sizeof(full)) {
				rc = bk__error_set(BK_EUSER, "config-malformed", "%s: key too long",
						   origin);
				goto done;
			}
			rc = set_from(cfg, full, v, origin, dir);
			if (rc)
				goto done;
		}
		line = nl ? nl + 1 : NULL;
	}
done:
	if (data) {
		bk_wipe(data, len);
		bk__free(data);
	}
	bk__free(dir);
	return rc;
}

/* AIBO_RESTORE_<SECTION>_<KEY> for every known key (not wildcards). */
static int load_env(bk_config *cfg, const char *const *env)
{
	for (size_t i = 0; i < BK_ARRAY_LEN(keys); i++) {
		const char *k = keys[i].key;
		if (strchr(k, '*'))
			continue;
		char name[128] = "AIBO_RESTORE_";
		size_t p = strlen(name);
		for (const char *c = k; *c && p + 1 < sizeof(name); c++)
			name[p++] = *c == '.' ? '_' : (char)toupper((unsigned char)*c);
		name[p] = '\0';
		size_t nl = strlen(name);
		for (const char *const *e = env; e && *e; e++) {
			if (strncmp(*e, name, nl) == 0 && (*e)[nl] == '=') {
				char origin[160];
				snprintf(origin, sizeof(origin), "env %s", name);
				int rc = set_from(cfg, k, *e + nl + 1, origin, NULL);
				if (rc)
					return rc;
			}
		}
	}
	return 0;
}

static const char *env_get(const char *const *env, const char *name)
{
	size_t nl = strlen(name);
	for (const char *const *e = env; e && *e; e++)
		if (strncmp(*e, name, nl) == 0 && (*e)[nl] == '=')
			return *e + nl + 1;
	return NULL;
}

int bk_config_new(bk_config **out)
{
	*out = bk__calloc(1, sizeof(bk_config));
	return *out ? 0 : BK_ENOMEM;
}

int bk_config_load(bk_config **out, const bk_config_opts *opts)
{
	bk_config_opts def = BK_CONFIG_OPTS_INIT;
	bk_config *cfg = NULL;
	char *user = NULL;
	int rc;
	if (out == NULL)
		return bk__error_set(BK_EINVALID, NULL, "config: no output");
	*out = NULL;
	if (opts == NULL)
		opts = &def;
	const char *const *env = opts->environ ? opts->environ : (const char *const *)environ;
	rc = bk_config_new(&cfg);
	if (rc)
		return rc;
	const char *explicit_file = opts->file ? opts->file : env_get(env, "AIBO_RESTORE_CONFIG");
	if (explicit_file && explicit_file[0]) {
		rc = load_file(cfg, explicit_file, 1);
		if (rc)
			goto done;
	} else {
		rc = load_file(cfg, opts->system_file ? opts->system_file : "/etc/aibo-restore/config",
			       0);
		if (rc)
			goto done;
		if (opts->user_file) {
			user = bk__strdup(opts->user_file);
		} else {
			const char *xdg = env_get(env, "XDG_CONFIG_HOME");
			const char *home = env_get(env, "HOME");
			if (xdg && xdg[0] == '/')
				user = bk__asprintf("%s/aibo-restore/config", xdg);
			else if (home && home[0])
				user = bk__asprintf("%s/.config/aibo-restore/config", home);
		}
		if (user) {
			rc = load_file(cfg, user, 0);
			if (rc)
				goto done;
		}
	}
	rc = load_env(cfg, env);
done:
	bk__free(user);
	if (rc) {
		bk_config_free(cfg);
		return rc;
	}
	*out = cfg;
	return 0;
}

void bk_config_free(bk_config *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < cfg->n; i++) {
		if (cfg->v[i].value && bk_config_is_secret(cfg->v[i].key))
			bk_wipe(cfg->v[i].value, strlen(cfg->v[i].value));
		bk__free(cfg->v[i].key);
		bk__free(cfg->v[i].value);
		bk__free(cfg->v[i].origin);
	}
	bk__free(cfg->v);
	bk__free(cfg);
}

const char *bk_config_get(const bk_config *cfg, const char *key)
{
	if (cfg == NULL || key == NULL)
		return NULL;
	const entry *e = find_entry(cfg, key);
	if (e)
		return e->value;
	const key_def *d = find_def(key);
	return d ? d->def : NULL;
}

const char *bk_config_origin(const bk_config *cfg, const char *key)
{
	if (cfg == NULL || key == NULL)
		return NULL;
	const entry *e = find_entry(cfg, key);
	if (e)
		return e->origin;
	const key_def *d = find_def(key);
	return d && d->def ? "default" : NULL;
}

int bk_config_get_u64(const bk_config *cfg, const char *key, uint64_t *out)
{
	const char *v = bk_config_get(cfg, key);
	if (v == NULL)
		return bk__error_set(BK_ENOTFOUND, "config-missing", "configuration: %s is not set",
				     key);
	if (bk_parse_u64(v, out) != 0)
		return bk__error_set(BK_EUSER, "config-invalid", "%s: %s: not a number",
				     bk_config_origin(cfg, key), key);
	return 0;
}

int bk_config_get_bool(const bk_config *cfg, const char *key, int *out)
{
	const char *v = bk_config_get(cfg, key);
	if (v == NULL)
		return bk__error_set(BK_ENOTFOUND, "config-missing", "configuration: %s is not set",
				     key);
	*out = strcmp(v, "true") == 0 || strcmp(v, "yes") == 0 || strcmp(v, "1") == 0;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

size_t bk_config_count(const bk_config *cfg)
{
	if (cfg == NULL)
		return 0;
	size_t n = cfg->n;
	for (size_t i = 0; i < BK_ARRAY_LEN(keys); i++)
		if (keys[i].def && find_entry(cfg, keys[i].key) == NULL)
			n++;
	return n;
}

int bk_config_entry(const bk_config *cfg, size_t i, const char **key, const char **value,
		    const char **origin)
{
	/* Collect the names, sort, pick the i-th. Small: a few dozen keys. */
	size_t n = bk_config_count(cfg);
	if (i >= n)
		return bk__error_set(BK_ENOTFOUND, NULL, "config: no entry %zu", i);
	const char **names = bk__calloc(n, sizeof(*names));
	if (names == NULL)
		return BK_ENOMEM;
	size_t k = 0;
	for (size_t j = 0; j < cfg->n; j++)
		names[k++] = cfg->v[j].key;
	for (size_t j = 0; j < BK_ARRAY_LEN(keys); j++)
		if (keys[j].def && find_entry(cfg, keys[j].key) == NULL)
			names[k++] = keys[j].key;
	qsort(names, n, sizeof(*names), cmp_str);
	const char *name = names[i];
	bk__free(names);
	*key = name;
	*value = bk_config_get(cfg, name);
	*origin = bk_config_origin(cfg, name);
	return 0;
}
