/* Internal: the `s3://BUCKET/PREFIX` store backend (store_s3.c). */
#ifndef LIBBACKUP_BACKUP_STORE_S3_H
#define LIBBACKUP_BACKUP_STORE_S3_H

#include <libbackup/backup.h>
#include <libbackup/config.h>

/* Opens `spec` ("s3://BUCKET[/PREFIX]") with the endpoint, region and
 * credentials from `cfg` (store.s3_*; may be NULL) or the AWS_* variables.
 * `cache` is a local folder for part files and downloads. */
int bk_store__s3_open(bk_store **out, const char *spec, const bk_config *cfg, const char *cache);

/* For the catalog's rows, whatever store they name (the rows record the
 * location string): a local path to read backup `id` at `location` from
 * (the location itself for a file; for an `s3://` location, a download
 * through that bucket with `cfg`'s credentials), and whether it is there. */
int bk_store__fetch_location(const bk_config *cfg, const char *id, const char *location,
			     char **out);
int bk_store__location_exists(const bk_config *cfg, const char *id, const char *location,
			      int *out);

#endif
