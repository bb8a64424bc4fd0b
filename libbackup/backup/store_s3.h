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

/* A stream reading backup `id` of the s3 store `s` from its start, as it
 * arrives: memory stays bounded (a 256 KiB buffer), a cut connection or a
 * 5xx answer is resumed with a Range request for the bytes not yet read,
 * and an object that changes meanwhile (another ETag) is an error
 * ("s3-object-changed"). BK_ENOTFOUND when it is not there. With
 * `own_store`, the stream owns `s` (also on failure); otherwise `s` must
 * outlive it. BK_STREAM_CTRL_SIZE gives the object's size. */
int bk_store__s3_open_reader(bk_stream **out, bk_store *s, int own_store, const char *id);
/* For tests: how many GET requests a reader has made, and how often its
 * full buffer paused the transfer. */
void bk_store__s3_reader_stats(bk_stream *reader, uint64_t *requests, uint64_t *pauses);

#endif
