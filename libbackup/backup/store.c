/* Backup stores: the interface and the `dir:PATH` backend (`s3://` is in
 * store_s3.c). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "libbackup/backup/backup_internal.h"
#include "libbackup/backup/store_s3.h"

#define SUFFIX      BK_BACKUP_EXT
#define STMT_SUFFIX BK_BACKUP_EXT BK_STATEMENT_EXT

typedef struct dir_store {
	bk_store base;
	char *dir; /* absolute */
} dir_store;

static int bad_id(const char *id)
{
	return bk__error_set(BK_EUSER, "backup-id-invalid", "'%.64s' is not a backup id (a UUID)",
			     id ? id : "");
}

static char *in_dir(dir_store *d, const char *id, const char *suffix)
{
	return bk__asprintf("%s/%s%s", d->dir, id, suffix);
}

static int dir_part_path(bk_store *s, const char *id, char **out)
{
	*out = in_dir((dir_store *)s, id, SUFFIX ".part");
	return *out ? 0 : BK_ENOMEM;
}

static int dir_location(bk_store *s, const char *id, char **out)
{
	*out = in_dir((dir_store *)s, id, SUFFIX);
	return *out ? 0 : BK_ENOMEM;
}

static int dir_put(bk_store *s, const char *id, const char *part, const uint8_t *stmt, size_t len,
		   char **out_location)
{
	dir_store *d = (dir_store *)s;
	char *final = NULL, *spath = NULL;
	int rc = 0;
	*out_location = NULL;
	final = in_dir(d, id, SUFFIX);
	spath = in_dir(d, id, STMT_SUFFIX);
	if (final == NULL || spath == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	/* The statement first: a file under its final name always has one. */
	if ((rc = bk_file_write_atomic(spath, stmt, len, 0600, 0)))
		goto done;
	bk_backup__hook("before-rename");
	if (renameat2(AT_FDCWD, part, AT_FDCWD, final, RENAME_NOREPLACE) != 0) {
		if (errno == EEXIST)
			rc = bk__error_set(BK_EEXIST, "backup-exists", "%s: already in the store",
					   final);
		else
			rc = bk__error_errno(errno, "%s: rename into place", final);
		goto done;
	}
	if ((rc = bk_fsync_dir(d->dir)))
		goto done;
	*out_location = final;
	final = NULL;
done:
	bk__free(final);
	bk__free(spath);
	return rc;
}

static int dir_get_path(bk_store *s, const char *id, char **out)
{
	struct stat st;
	char *p = in_dir((dir_store *)s, id, SUFFIX);
	*out = NULL;
	if (p == NULL)
		return BK_ENOMEM;
	if (lstat(p, &st) != 0 || !S_ISREG(st.st_mode)) {
		int rc = bk__error_set(BK_ENOTFOUND, "backup-not-found", "%s: not in the store", p);
		bk__free(p);
		return rc;
	}
	*out = p;
	return 0;
}

static int dir_exists(bk_store *s, const char *id, int *out)
{
	struct stat st;
	char *p = in_dir((dir_store *)s, id, SUFFIX);
	if (p == NULL)
		return BK_ENOMEM;
	*out = lstat(p, &st) == 0;
	bk__free(p);
	return 0;
}

static int unlink_quiet(const char *p)
{
	if (unlink(p) != 0 && errno != ENOENT)
		return bk__error_errno(errno, "%s: remove", p);
	return 0;
}

static int dir_remove(bk_store *s, const char *id)
{
	dir_store *d = (dir_store *)s;
	char *f = in_dir(d, id, SUFFIX), *st = in_dir(d, id, STMT_SUFFIX);
	int rc = f && st ? 0 : BK_ENOMEM;
	if (rc == 0)
		rc = unlink_quiet(f);
	if (rc == 0)
		rc = unlink_quiet(st);
	if (rc == 0)
		rc = bk_fsync_dir(d->dir);
	bk__free(f);
	bk__free(st);
	return rc;
}

static bool ends_with(const char *s, const char *suffix, size_t *stem)
{
	size_t n = strlen(s), k = strlen(suffix);
	if (n < k || strcmp(s + n - k, suffix) != 0)
		return false;
	*stem = n - k;
	return true;
}

static int classify(const char *name, int *kind, char id[37])
{
	size_t stem = 0;
	id[0] = '\0';
	*kind = BK_STORE_ITEM_OTHER;
	if (ends_with(name, ".part", &stem))
		*kind = BK_STORE_ITEM_PART;
	else if (ends_with(name, STMT_SUFFIX, &stem))
		*kind = BK_STORE_ITEM_STATEMENT;
	else if (ends_with(name, SUFFIX, &stem))
		*kind = BK_STORE_ITEM_BACKUP;
	else
		return 0;
	if (stem >= 36) {
		memcpy(id, name, 36);
		id[36] = '\0';
		if (!bk_backup__valid_id(id))
			id[0] = '\0';
	}
	return 0;
}

static int cmp_items(const void *a, const void *b)
{
	return strcmp(((const bk_store_item *)a)->name, ((const bk_store_item *)b)->name);
}

static int dir_list(bk_store *s, bk_store_item **out, size_t *out_count)
{
	dir_store *d = (dir_store *)s;
	bk_store_item *items = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	*out = NULL;
	*out_count = 0;
	DIR *dir = opendir(d->dir);
	if (dir == NULL)
		return bk__error_errno(errno, "%s: list", d->dir);
	struct dirent *e;
	while ((e = readdir(dir)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		int kind;
		char id[37];
		classify(e->d_name, &kind, id);
		char *path = bk__asprintf("%s/%s", d->dir, e->d_name);
		if (path == NULL) {
			rc = BK_ENOMEM;
			goto done;
		}
		struct stat st;
		if (lstat(path, &st) != 0) {
			bk__free(path);
			continue; /* gone meanwhile */
		}
		if (kind == BK_STORE_ITEM_STATEMENT) {
			/* Only listed when its file is missing. */
			char *f = bk__asprintf("%s/%s" SUFFIX, d->dir, id);
			struct stat fs;
			int has_file = f && id[0] && lstat(f, &fs) == 0;
			bk__free(f);
			if (has_file) {
				bk__free(path);
				continue;
			}
		}
		if (n == cap) {
			size_t ncap = cap ? 2 * cap : 16;
			bk_store_item *ni = bk__realloc(items, ncap * sizeof(*ni));
			if (ni == NULL) {
				bk__free(path);
				rc = BK_ENOMEM;
				goto done;
			}
			items = ni;
			cap = ncap;
		}
		bk_store_item *it = &items[n];
		memset(it, 0, sizeof(*it));
		it->kind = kind;
		it->size = (uint64_t)st.st_size;
		it->name = bk__strdup(e->d_name);
		it->id = id[0] ? bk__strdup(id) : NULL;
		n++;
		if (it->name == NULL || (id[0] && it->id == NULL)) {
			bk__free(path);
			rc = BK_ENOMEM;
			goto done;
		}
		if (kind == BK_STORE_ITEM_PART) {
			int held = bk_backup__is_locked(path);
			it->in_use = held > 0;
		}
		bk__free(path);
	}
	if (n > 1)
		qsort(items, n, sizeof(*items), cmp_items);
done:
	closedir(dir);
	if (rc) {
		bk_store_list_free(items, n);
		return rc;
	}
	*out = items;
	*out_count = n;
	return 0;
}

static int dir_remove_part(bk_store *s, const char *name)
{
	dir_store *d = (dir_store *)s;
	size_t stem;
	if (strchr(name, '/') || name[0] == '.' || !ends_with(name, ".part", &stem))
		return bk__error_set(BK_EINVALID, NULL, "%s: not a part file of the store", name);
	char *p = bk__asprintf("%s/%s", d->dir, name);
	if (p == NULL)
		return BK_ENOMEM;
	int rc = 0;
	int held = bk_backup__is_locked(p);
	if (held < 0)
		rc = held;
	else if (held)
		rc = bk__error_set(BK_EBUSY, "part-in-use", "%s: another command is writing it", p);
	else
		rc = unlink_quiet(p);
	bk__free(p);
	return rc;
}

static void dir_release(bk_store *s)
{
	dir_store *d = (dir_store *)s;
	bk__free(d->dir);
}

static const bk_store_ops dir_ops = {
	.scheme = "dir",
	.part_path = dir_part_path,
	.put = dir_put,
	.location = dir_location,
	.get_path = dir_get_path,
	.exists = dir_exists,
	.remove = dir_remove,
	.list = dir_list,
	.remove_part = dir_remove_part,
	.release = dir_release,
};

/* --- The interface --- */

static char *state_path(const char *name);
static int open_s3(bk_store **out, const char *spec, const bk_config *cfg);

static int open_spec(bk_store **out, const char *spec, const bk_config *cfg)
{
	dir_store *d = NULL;
	char *abs = NULL;
	int rc;
	if (out == NULL || spec == NULL)
		return bk__error_set(BK_EINVALID, NULL, "store: no specification");
	*out = NULL;
	if (strncmp(spec, "s3://", 5) == 0)
		return open_s3(out, spec, cfg);
	if (strncmp(spec, "dir:", 4) != 0 || spec[4] == '\0')
		return bk__error_set(BK_EUSER, "store-invalid",
				     "store '%s': expected dir:PATH or s3://BUCKET/PREFIX", spec);
	if ((rc = bk_mkdir_p(spec + 4, 0700)))
		return rc;
	abs = realpath(spec + 4, NULL);
	if (abs == NULL)
		return bk__error_errno(errno, "%s: resolve", spec + 4);
	d = bk__calloc(1, sizeof(*d));
	if (d == NULL) {
		free(abs);
		return BK_ENOMEM;
	}
	d->base.ops = &dir_ops;
	d->dir = bk__strdup(abs);
	d->base.spec = bk__asprintf("dir:%s", abs);
	free(abs);
	if (d->dir == NULL || d->base.spec == NULL) {
		bk_store_free(&d->base);
		return BK_ENOMEM;
	}
	*out = &d->base;
	return 0;
}

int bk_store_open(bk_store **out, const char *spec)
{
	return open_spec(out, spec, NULL);
}

/* The local folder of an S3 store: its part files and downloads. */
static int open_s3(bk_store **out, const char *spec, const bk_config *cfg)
{
	char *base = state_path("s3-cache"), *cache = NULL;
	if (base == NULL)
		return bk_error_last()->code == BK_EUSER ? BK_EUSER : BK_ENOMEM;
	cache = bk__asprintf("%s/%s", base, spec + 5);
	bk__free(base);
	if (cache == NULL)
		return BK_ENOMEM;
	for (char *p = cache + strlen(cache) - strlen(spec + 5); *p; p++)
		if (*p == '/' || *p == '.')
			*p = '_';
	int rc = bk_store__s3_open(out, spec, cfg, cache);
	bk__free(cache);
	return rc;
}

static char *state_path(const char *name)
{
	const char *xdg = getenv("XDG_STATE_HOME");
	const char *home = getenv("HOME");
	if (xdg && xdg[0] == '/')
		return bk__asprintf("%s/aibo-restore/%s", xdg, name);
	if (home && home[0])
		return bk__asprintf("%s/.local/state/aibo-restore/%s", home, name);
	bk__error_set(BK_EUSER, "config-missing", "no depot folder: set %s in the configuration",
		      strcmp(name, "depot.db") == 0 ? "depot.db" : "depot.store");
	return NULL;
}

int bk_store_open_config(bk_store **out, const bk_config *cfg)
{
	const char *spec = cfg ? bk_config_get(cfg, "depot.store") : NULL;
	if (spec && spec[0])
		return open_spec(out, spec, cfg);
	char *dir = state_path("backups");
	if (dir == NULL)
		return bk_error_last()->code == BK_EUSER ? BK_EUSER : BK_ENOMEM;
	char *s = bk__asprintf("dir:%s", dir);
	bk__free(dir);
	if (s == NULL)
		return BK_ENOMEM;
	int rc = bk_store_open(out, s);
	bk__free(s);
	return rc;
}

int bk_backup_catalog_open(bk_catalog **out, const bk_config *cfg, int create)
{
	const char *db = cfg ? bk_config_get(cfg, "depot.db") : NULL;
	char *def = NULL;
	int rc;
	*out = NULL;
	if (db == NULL || db[0] == '\0') {
		def = state_path("depot.db");
		if (def == NULL)
			return bk_error_last()->code == BK_EUSER ? BK_EUSER : BK_ENOMEM;
		db = def;
	}
	if (!create && access(db, F_OK) != 0) {
		rc = bk__error_set(BK_ENOTFOUND, "catalog-missing", "%s: no catalog", db);
		goto done;
	}
	rc = bk_catalog_open(out, db);
done:
	bk__free(def);
	return rc;
}

void bk_store_free(bk_store *s)
{
	if (s == NULL)
		return;
	if (s->ops && s->ops->release)
		s->ops->release(s);
	bk__free(s->spec);
	bk__free(s);
}

const char *bk_store_spec(const bk_store *s)
{
	return s ? s->spec : NULL;
}

#define CHECK_ID(s, id)                                                                            \
	do {                                                                                       \
		if ((s) == NULL)                                                                   \
			return bk__error_set(BK_EINVALID, NULL, "store: no store");                \
		if (!bk_backup__valid_id(id))                                                      \
			return bad_id(id);                                                         \
	} while (0)

int bk_store_part_path(bk_store *s, const char *id, char **out)
{
	*out = NULL;
	CHECK_ID(s, id);
	return s->ops->part_path(s, id, out);
}

int bk_store_put(bk_store *s, const char *id, const char *part, const uint8_t *statement,
		 size_t statement_len, char **out_location)
{
	*out_location = NULL;
	CHECK_ID(s, id);
	if (part == NULL || statement == NULL)
		return bk__error_set(BK_EINVALID, NULL, "store: nothing to put");
	return s->ops->put(s, id, part, statement, statement_len, out_location);
}

int bk_store_location(bk_store *s, const char *id, char **out)
{
	*out = NULL;
	CHECK_ID(s, id);
	return s->ops->location(s, id, out);
}

int bk_store_get_path(bk_store *s, const char *id, char **out)
{
	*out = NULL;
	CHECK_ID(s, id);
	return s->ops->get_path(s, id, out);
}

int bk_store_open_reader(bk_store *s, const char *id, bk_stream **out)
{
	char *p = NULL;
	*out = NULL;
	int rc = bk_store_get_path(s, id, &p);
	if (rc == 0)
		rc = bk_stream_file_open(out, p);
	bk__free(p);
	return rc;
}

int bk_store_exists(bk_store *s, const char *id, int *out)
{
	*out = 0;
	CHECK_ID(s, id);
	return s->ops->exists(s, id, out);
}

int bk_store_remove(bk_store *s, const char *id)
{
	CHECK_ID(s, id);
	return s->ops->remove(s, id);
}

int bk_store_list(bk_store *s, bk_store_item **out, size_t *out_count)
{
	if (s == NULL)
		return bk__error_set(BK_EINVALID, NULL, "store: no store");
	return s->ops->list(s, out, out_count);
}

void bk_store_list_free(bk_store_item *items, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		bk__free(items[i].name);
		bk__free(items[i].id);
	}
	bk__free(items);
}

int bk_store_remove_part(bk_store *s, const char *name)
{
	if (s == NULL || name == NULL)
		return bk__error_set(BK_EINVALID, NULL, "store: no store");
	return s->ops->remove_part(s, name);
}

/* --- Catalog locations --- */

/* The store spec of an object location ("s3://B/P/<id>.aibk" -> "s3://B/P"). */
static char *location_spec(const char *id, const char *location)
{
	char *tail = bk__asprintf("/%s" SUFFIX, id);
	char *spec = NULL;
	if (tail == NULL)
		return NULL;
	size_t n = strlen(location), k = strlen(tail);
	if (n > k + 5 && strcmp(location + n - k, tail) == 0)
		spec = bk__strndup(location, n - k);
	else
		bk__error_set(BK_EUSER, "store-invalid", "catalog location '%.200s' does not name %s",
			      location, id);
	bk__free(tail);
	return spec;
}

int bk_store__fetch_location(const bk_config *cfg, const char *id, const char *location,
			     char **out)
{
	bk_store *s = NULL;
	char *spec = NULL;
	int rc = 0;
	*out = NULL;
	if (strncmp(location, "s3://", 5) != 0) {
		*out = bk__strdup(location);
		return *out ? 0 : BK_ENOMEM;
	}
	if ((spec = location_spec(id, location)) == NULL)
		return bk_error_last()->code == BK_EUSER ? BK_EUSER : BK_ENOMEM;
	if ((rc = open_spec(&s, spec, cfg)) == 0)
		rc = bk_store_get_path(s, id, out);
	bk_store_free(s);
	bk__free(spec);
	return rc;
}

int bk_store__location_exists(const bk_config *cfg, const char *id, const char *location,
			      int *out)
{
	bk_store *s = NULL;
	char *spec = NULL;
	struct stat sb;
	int rc = 0;
	*out = 0;
	if (strncmp(location, "s3://", 5) != 0) {
		*out = lstat(location, &sb) == 0;
		return 0;
	}
	if ((spec = location_spec(id, location)) == NULL)
		return bk_error_last()->code == BK_EUSER ? BK_EUSER : BK_ENOMEM;
	if ((rc = open_spec(&s, spec, cfg)) == 0)
		rc = bk_store_exists(s, id, out);
	bk_store_free(s);
	bk__free(spec);
	return rc;
}
