/* Helpers shared by the memory archive tests. */
#ifndef BK_TEST_ARCHIVE_HELPERS_H
#define BK_TEST_ARCHIVE_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "libbackup/archive/archive.h"

/* Writes <root>/<rel> (parents made). Returns 0 or -1. */
int t_put(const char *root, const char *rel, const void *data, size_t len);
/* Archives `src` into a malloc'd buffer (free with free()). */
int t_write(const char *src, const bk_archive_write_opts *opts, uint8_t **out, size_t *out_len,
            bk_manifest **out_m, bk_archive_stats *stats);
/* Whether t_read skips flushing to disk (default true: tests are short-lived). */
extern bool t_no_sync;
/* Reads an archive from memory into `dest` (NULL: verify only). */
int t_read(const uint8_t *data, size_t len, const char *dest, unsigned domains,
           bk_manifest **out_m);
/* A sorted listing of every path below `dir` with sizes, malloc'd. */
char *t_listing(const char *dir);

/* Hostile archives built with libarchive directly. */
typedef struct t_ent {
	const char *path;
	int type;         /* AE_IFREG, AE_IFDIR, AE_IFLNK, AE_IFCHR, AE_IFIFO */
	const char *data; /* regular files */
	const char *link; /* symlink target, or hard link target when type is 0 */
	long long size;   /* declared size, -1: strlen(data) */
} t_ent;
/* A zstd pax tar of `ents`; the manifest `manifest` (if not NULL) is put at
 * index `manifest_at`. malloc'd. */
uint8_t *t_tar(const char *manifest, size_t manifest_at, const t_ent *ents, size_t n,
               size_t *out_len);
/* An encoded manifest listing `n` files given as path/content pairs (paths
 * relative to domains/). malloc'd, NUL-terminated. */
char *t_manifest(const char *const *pairs, size_t n);

#endif
