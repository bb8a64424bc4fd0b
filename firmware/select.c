/* Choosing a firmware bundle from a folder, and listing a folder. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "firmware/firmware_internal.h"

#define BUNDLES_MAX 4096

static int has_aifw_suffix(const char *name)
{
	size_t n = strlen(name);
	return n > 5 && name[0] != '.' && strcmp(name + n - 5, ".aifw") == 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The paths of the folder's regular *.aifw files, sorted. */
static int scan_dir(char ***out, size_t *out_count, const char *dir)
{
	DIR *d = NULL;
	char **paths = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	*out = NULL;
	*out_count = 0;
	d = opendir(dir);
	if (d == NULL) {
		rc = bk__error_errno(errno, "firmware folder %s", dir);
		goto done;
	}
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		struct stat st;
		char *path;
		if (!has_aifw_suffix(e->d_name))
			continue;
		if ((path = bk_path_join(dir, e->d_name)) == NULL) {
			rc = BK_ENOMEM;
			goto done;
		}
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
			bk__free(path);
			continue;
		}
		if (n == cap) {
			if (cap == BUNDLES_MAX) {
				bk__free(path);
				rc = bk__error_set(BK_ENOSPACE, "too-many-bundles",
				                   "firmware folder %s: more than %d bundles", dir,
				                   BUNDLES_MAX);
				goto done;
			}
			size_t ncap = cap ? 2 * cap : 16;
			char **np = bk__realloc(paths, ncap * sizeof(char *));
			if (np == NULL) {
				bk__free(path);
				rc = BK_ENOMEM;
				goto done;
			}
			paths = np;
			cap = ncap;
		}
		paths[n++] = path;
	}
	if (n > 1)
		qsort(paths, n, sizeof(char *), cmp_str);
	*out = paths;
	*out_count = n;
	paths = NULL;
	n = 0;
done:
	for (size_t i = 0; i < n; i++)
		bk__free(paths[i]);
	bk__free(paths);
	if (d)
		closedir(d);
	return rc;
}

static void free_paths(char **paths, size_t n)
{
	for (size_t i = 0; paths && i < n; i++)
		bk__free(paths[i]);
	bk__free(paths);
}

typedef struct candidate {
	char *path;    /* borrowed from the scan */
	char *version; /* owned */
} candidate;

static int cmp_candidate(const void *pa, const void *pb)
{
	const candidate *a = pa, *b = pb;
	int c = 0;
	bk_fw_version_compare(a->version, b->version, &c);
	return c ? c : strcmp(a->path, b->path);
}

int bk_fw_select(const char *dir, const char *model, const char *hw_rev, int64_t schema,
                 uint32_t min_security_counter, const char *trusted_keys,
                 const char *const *revoked_key_ids, char **out_path)
{
	char **paths = NULL;
	size_t n = 0, nc = 0, invalid = 0;
	candidate *cands = NULL;
	bk_fw_bundle *b = NULL;
	bk_fw_unit unit = BK_FW_UNIT_INIT;
	bk_fw_verify_opts vo = BK_FW_VERIFY_OPTS_INIT;
	int rc;
	if (out_path == NULL || dir == NULL || trusted_keys == NULL)
		return bk__error_set(BK_EINVALID, NULL,
		                     "bk_fw_select: folder and trusted keys needed");
	*out_path = NULL;
	unit.model = model;
	unit.hw_rev = hw_rev;
	unit.schema = schema;
	unit.security_counter = min_security_counter;
	vo.trusted_keys = trusted_keys;
	vo.revoked_key_ids = revoked_key_ids;
	vo.unit = &unit;
	if ((rc = scan_dir(&paths, &n, dir)))
		goto done;
	if (n > 0 && (cands = bk__calloc(n, sizeof(*cands))) == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	/* Signature and fit first (cheap), payloads only for the one chosen. */
	vo.skip_payloads = 1;
	for (size_t i = 0; i < n; i++) {
		rc = bk_fw_bundle_open(&b, paths[i]);
		if (rc == 0)
			rc = bk_fw_bundle_verify(b, &vo);
		if (rc == BK_ENOMEM || rc == BK_EINVALID)
			goto done; /* not the bundle's fault */
		if (rc == 0) {
			cands[nc].path = paths[i];
			if ((cands[nc].version = bk__strdup(bk_fw_bundle_version(b))) == NULL) {
				rc = BK_ENOMEM;
				goto done;
			}
			nc++;
		} else if (rc != BK_EINCOMPAT) {
			bk__log(BK_LOG_INFO, "firmware", "skipping %s: %s", paths[i],
			        bk_error_last()->message);
			invalid++;
		}
		bk_fw_bundle_free(b);
		b = NULL;
	}
	if (nc > 1)
		qsort(cands, nc, sizeof(*cands), cmp_candidate);
	vo.skip_payloads = 0;
	for (size_t i = 0; i < nc; i++) {
		rc = bk_fw_bundle_open(&b, cands[i].path);
		if (rc == 0)
			rc = bk_fw_bundle_verify(b, &vo);
		bk_fw_bundle_free(b);
		b = NULL;
		if (rc == BK_ENOMEM || rc == BK_EINVALID)
			goto done;
		if (rc == 0) {
			if ((*out_path = bk__strdup(cands[i].path)) == NULL)
				rc = BK_ENOMEM;
			goto done;
		}
		bk__log(BK_LOG_INFO, "firmware", "skipping %s: %s", cands[i].path,
		        bk_error_last()->message);
		invalid++;
	}
	rc = bk__error_set(BK_ENOTFOUND, "no-fitting-firmware",
	                   "%s: no valid firmware bundle fits model %s, hardware revision %s, "
	                   "schema %lld (%zu bundles, %zu invalid)",
	                   dir, model ? model : "any", hw_rev ? hw_rev : "any", (long long)schema,
	                   n, invalid);
done:
	bk_fw_bundle_free(b);
	for (size_t i = 0; cands && i < nc; i++)
		bk__free(cands[i].version);
	bk__free(cands);
	free_paths(paths, n);
	return rc;
}

/* --- Listing ------------------------------------------------------------------- */

static void entry_clear(bk_fw_entry *e)
{
	bk__free(e->path);
	bk__free(e->reason);
	bk__free(e->message);
	bk__free(e->version);
	bk__free(e->models);
	bk__free(e->hw_rev_min);
	bk__free(e->hw_rev_max);
	bk__free(e->created);
	bk__free(e->key_id);
	memset(e, 0, sizeof(*e));
}

void bk_fw_list_free(bk_fw_entry *list, size_t count)
{
	for (size_t i = 0; list && i < count; i++)
		entry_clear(&list[i]);
	bk__free(list);
}

static int set_failure(bk_fw_entry *e, int code)
{
	const bk_error *err = bk_error_last();
	e->status = code;
	e->reason = bk__strdup(err->reason ? err->reason : bk_error_code_name(code));
	e->message = bk__strdup(err->message ? err->message : "");
	return e->reason && e->message ? 0 : BK_ENOMEM;
}

static int fill_entry(bk_fw_entry *e, const bk_fw_bundle *b)
{
	bk_buf models = BK_BUF_INIT;
	int rc = 0;
	for (size_t i = 0; i < bk_fw_bundle_model_count(b); i++)
		if ((rc = bk_buf_printf(&models, "%s%s", i ? "," : "", bk_fw_bundle_model(b, i))))
			goto done;
	if ((rc = bk_buf_cstr(&models)))
		goto done;
	e->models = (char *)bk_buf_steal(&models, NULL);
	e->version = bk__strdup(bk_fw_bundle_version(b));
	e->hw_rev_min = bk__strdup(bk_fw_bundle_hw_rev_min(b));
	e->hw_rev_max = bk__strdup(bk_fw_bundle_hw_rev_max(b));
	e->created = bk__strdup(bk_fw_bundle_created(b));
	e->schema_min = bk_fw_bundle_schema_min(b);
	e->schema_max = bk_fw_bundle_schema_max(b);
	e->security_counter = bk_fw_bundle_security_counter(b);
	e->payload_bytes = bk_fw_bundle_payload_bytes(b);
	if (!e->models || !e->version || !e->hw_rev_min || !e->hw_rev_max || !e->created)
		rc = BK_ENOMEM;
done:
	bk_buf_free(&models);
	return rc;
}

static int cmp_entry(const void *pa, const void *pb)
{
	const bk_fw_entry *a = pa, *b = pb;
	if ((a->version == NULL) != (b->version == NULL))
		return a->version == NULL ? 1 : -1;
	int c = 0;
	if (a->version)
		bk_fw_version_compare(a->version, b->version, &c);
	return c ? c : strcmp(a->path, b->path);
}

static int lists_model(const bk_fw_bundle *b, const char *model)
{
	for (size_t i = 0; i < bk_fw_bundle_model_count(b); i++)
		if (strcmp(bk_fw_bundle_model(b, i), model) == 0)
			return 1;
	return 0;
}

int bk_fw_list(bk_fw_entry **out, size_t *out_count, const char *dir, const bk_fw_list_opts *opts)
{
	bk_fw_list_opts defaults = BK_FW_LIST_OPTS_INIT;
	char **paths = NULL;
	size_t n = 0, count = 0;
	bk_fw_entry *list = NULL;
	bk_fw_bundle *b = NULL;
	int rc = 0;
	if (out == NULL || out_count == NULL || dir == NULL)
		return bk__error_set(BK_EINVALID, NULL, "bk_fw_list: NULL argument");
	*out = NULL;
	*out_count = 0;
	if (opts == NULL)
		opts = &defaults;
	if ((rc = scan_dir(&paths, &n, dir)))
		goto done;
	if (n > 0 && (list = bk__calloc(n, sizeof(*list))) == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		bk_fw_entry *e = &list[count];
		int r = bk_fw_bundle_open(&b, paths[i]);
		if (r == BK_ENOMEM) {
			rc = r;
			goto done;
		}
		if (r == 0 &&
		    ((opts->model && !lists_model(b, opts->model)) ||
		     (opts->min_schema >= 0 && bk_fw_bundle_schema_max(b) < opts->min_schema))) {
			bk_fw_bundle_free(b);
			b = NULL;
			continue;
		}
		count++;
		e->path = paths[i];
		paths[i] = NULL;
		if (r) {
			if ((rc = set_failure(e, r)))
				goto done;
			continue;
		}
		if ((rc = fill_entry(e, b)))
			goto done;
		if (opts->trusted_keys) {
			bk_fw_verify_opts vo = BK_FW_VERIFY_OPTS_INIT;
			vo.trusted_keys = opts->trusted_keys;
			vo.revoked_key_ids = opts->revoked_key_ids;
			vo.skip_payloads = 1;
			r = bk_fw_bundle_verify(b, &vo);
			if (r == BK_ENOMEM) {
				rc = r;
				goto done;
			}
			if (r) {
				if ((rc = set_failure(e, r)))
					goto done;
			} else if ((e->key_id = bk__strdup(bk_fw_bundle_key_id(b))) == NULL) {
				rc = BK_ENOMEM;
				goto done;
			}
		}
		bk_fw_bundle_free(b);
		b = NULL;
	}
	if (count > 1)
		qsort(list, count, sizeof(*list), cmp_entry);
	*out = list;
	*out_count = count;
	list = NULL;
done:
	bk_fw_bundle_free(b);
	bk_fw_list_free(list, count);
	free_paths(paths, n);
	return rc;
}
