/* Helpers shared by the memory archive tests. */
#include "helpers.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <archive.h>
#include <archive_entry.h>
#include <sodium.h>

#include <libbackup/libbackup.h>

#include "libbackup/util/util.h"

int t_put(const char *root, const char *rel, const void *data, size_t len)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	char *dir = bk_path_dirname(path);
	if (dir == NULL || bk_mkdir_p(dir, 0755) != 0) {
		bk__free(dir);
		return -1;
	}
	bk__free(dir);
	FILE *f = fopen(path, "wb");
	if (f == NULL)
		return -1;
	int ok = len == 0 || fwrite(data, 1, len, f) == len;
	return fclose(f) == 0 && ok ? 0 : -1;
}

int t_write(const char *src, const bk_archive_write_opts *opts, uint8_t **out, size_t *out_len,
            bk_manifest **out_m, bk_archive_stats *stats)
{
	bk_stream *w = NULL;
	*out = NULL;
	*out_len = 0;
	int rc = bk_stream_mem_writer(&w, 0);
	if (rc)
		return rc;
	rc = bk_archive_write(w, src, opts, out_m, stats);
	if (rc == 0) {
		size_t len;
		const uint8_t *d = bk_stream_mem_data(w, &len);
		*out = malloc(len ? len : 1);
		memcpy(*out, d, len);
		*out_len = len;
	}
	bk_stream_free(w);
	return rc;
}

int t_read(const uint8_t *data, size_t len, const char *dest, unsigned domains, bk_manifest **out_m)
{
	bk_stream *r = NULL;
	bk_archive_read_opts opts = BK_ARCHIVE_READ_OPTS_INIT;
	opts.dest_dir = dest;
	opts.domains = domains;
	opts.no_sync = t_no_sync;
	int rc = bk_stream_mem_reader(&r, data, len);
	if (rc)
		return rc;
	rc = bk_archive_read(r, &opts, out_m, NULL);
	bk_stream_free(r);
	return rc;
}

bool t_no_sync = true;

static char *list_buf;
static size_t list_len, list_cap;
static size_t list_base;

static int list_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)flag;
	(void)ftw;
	char line[4200];
	int n =
	    snprintf(line, sizeof(line), "%s %o %lld\n", path + list_base, (unsigned)st->st_mode,
	             S_ISDIR(st->st_mode) ? 0LL : (long long)st->st_size);
	if (list_len + (size_t)n + 1 > list_cap) {
		list_cap = (list_cap + (size_t)n + 1) * 2;
		list_buf = realloc(list_buf, list_cap);
	}
	memcpy(list_buf + list_len, line, (size_t)n + 1);
	list_len += (size_t)n;
	return 0;
}

static int cmp_lines(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

char *t_listing(const char *dir)
{
	list_buf = NULL;
	list_len = list_cap = 0;
	list_base = strlen(dir);
	if (nftw(dir, list_one, 16, FTW_PHYS) != 0) {
		free(list_buf);
		return strdup("(nftw failed)");
	}
	if (list_buf == NULL)
		return strdup("");
	/* nftw's order is the file system's: sort the lines. */
	size_t count = 0;
	for (size_t i = 0; i < list_len; i++)
		count += list_buf[i] == '\n';
	char **lines = calloc(count + 1, sizeof(char *));
	size_t k = 0;
	for (char *p = list_buf; *p; p = strchr(p, '\n') + 1)
		lines[k++] = p;
	for (size_t i = 0; i < list_len; i++)
		if (list_buf[i] == '\n')
			list_buf[i] = '\0';
	qsort(lines, count, sizeof(char *), cmp_lines);
	char *out = malloc(list_len + 2);
	size_t o = 0;
	for (size_t i = 0; i < count; i++) {
		size_t n = strlen(lines[i]);
		memcpy(out + o, lines[i], n);
		o += n;
		out[o++] = '\n';
	}
	out[o] = '\0';
	free(lines);
	free(list_buf);
	list_buf = NULL;
	return out;
}

typedef struct grow {
	uint8_t *p;
	size_t len, cap;
} grow;

static la_ssize_t grow_write(struct archive *a, void *data, const void *buf, size_t len)
{
	(void)a;
	grow *g = data;
	if (g->len + len > g->cap) {
		g->cap = (g->len + len) * 2;
		g->p = realloc(g->p, g->cap);
	}
	memcpy(g->p + g->len, buf, len);
	g->len += len;
	return (la_ssize_t)len;
}

static void add_manifest(struct archive *a, struct archive_entry *ae, const char *manifest)
{
	archive_entry_clear(ae);
	archive_entry_set_pathname(ae, BK_MANIFEST_NAME);
	archive_entry_set_filetype(ae, AE_IFREG);
	archive_entry_set_perm(ae, 0644);
	archive_entry_set_size(ae, (la_int64_t)strlen(manifest));
	archive_write_header(a, ae);
	archive_write_data(a, manifest, strlen(manifest));
}

uint8_t *t_tar(const char *manifest, size_t manifest_at, const t_ent *ents, size_t n,
               size_t *out_len)
{
	grow g = {0};
	struct archive *a = archive_write_new();
	struct archive_entry *ae = archive_entry_new();
	archive_write_set_format_pax_restricted(a);
	archive_write_add_filter_zstd(a);
	archive_write_set_bytes_in_last_block(a, 1);
	archive_write_open2(a, &g, NULL, grow_write, NULL, NULL);
	for (size_t i = 0; i <= n; i++) {
		if (manifest && i == manifest_at)
			add_manifest(a, ae, manifest);
		if (i == n)
			break;
		const t_ent *e = &ents[i];
		archive_entry_clear(ae);
		archive_entry_set_pathname(ae, e->path);
		archive_entry_set_perm(ae, 0644);
		if (e->type == 0) {
			archive_entry_set_filetype(ae, AE_IFREG);
			archive_entry_set_hardlink(ae, e->link);
			archive_entry_set_size(ae, 0);
		} else {
			archive_entry_set_filetype(ae, (unsigned)e->type);
			if (e->type == AE_IFLNK)
				archive_entry_set_symlink(ae, e->link);
			if (e->type == AE_IFCHR)
				archive_entry_set_rdev(ae, 0x0103);
		}
		size_t dlen = e->data ? strlen(e->data) : 0;
		if (e->type == AE_IFREG)
			archive_entry_set_size(ae, e->size >= 0 ? e->size : (la_int64_t)dlen);
		if (archive_write_header(a, ae) < ARCHIVE_WARN)
			fprintf(stderr, "t_tar: %s: %s\n", e->path, archive_error_string(a));
		if (e->type == AE_IFREG && dlen)
			archive_write_data(a, e->data, dlen);
	}
	archive_write_close(a);
	archive_write_free(a);
	archive_entry_free(ae);
	*out_len = g.len;
	return g.p;
}

char *t_manifest(const char *const *pairs, size_t n)
{
	bk_manifest *m = NULL;
	bk_manifest_info info = {.serial = "S1", .model = "ERS-1000"};
	char *json = NULL, *out = NULL;
	size_t len;
	if (bk_manifest_new(&m, &info, 0) != 0)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		uint8_t d[32];
		const char *data = pairs[2 * i + 1];
		crypto_generichash(d, 32, (const uint8_t *)data, strlen(data), NULL, 0);
		if (bk_manifest_add(m, pairs[2 * i], strlen(data), 0644, 1000, d) != 0)
			goto done;
	}
	bk_archive_limits unlimited = {0};
	if (bk_manifest_finish(m, &unlimited) != 0 || bk_manifest_encode(m, &json, &len) != 0)
		goto done;
	out = strdup(json);
done:
	bk__free(json);
	bk_manifest_free(m);
	return out;
}
