/* Internal: helpers shared by the backup pull and the restore push. */
#ifndef BK_WIRE_INTERNAL_H
#define BK_WIRE_INTERNAL_H

#include <libbackup/transfer.h>

#include "crypto/age.h"
#include "libbackup/archive/archive.h"
#include "libbackup/backup/backup_internal.h"
#include "libbackup/util/util.h"

#define BK_WIRE_RECONNECT_MS_DEFAULT 60000
#define BK_WIRE_MIN_BATTERY_DEFAULT  20

/* A progress reporter for one transfer. */
typedef struct bk_wire_progress {
	bk_progress_cb cb;
	void *payload;
	const char *subject;
	unsigned step_count;
	int64_t started_ms;
	int64_t last_ms;
} bk_wire_progress;

void bk_wire__progress_init(bk_wire_progress *p, bk_progress_cb cb, void *payload,
                            const char *subject, unsigned steps);
/* Reports; returns BK_ECANCELLED when the callback asks to stop. With
 * `force` 0 calls are spaced at least 100 ms apart (except the last). */
int bk_wire__progress(bk_wire_progress *p, const char *step, unsigned index, uint64_t done,
                      uint64_t total, int force);

/* Identities from `path` (NULL: depot.identity). */
int bk_wire__load_identities(bk_age_identities **out, const bk_config *cfg, const char *path,
                             bk_passphrase_cb cb, void *payload);
/* The recipients to encrypt to: `list`, or the depot identity's recipients
 * and backup.escrow_recipients; as a JSON array of "age1..." strings. */
int bk_wire__recipients(json_t **out, const bk_config *cfg, const char *const *list, size_t n,
                        bk_passphrase_cb cb, void *payload);

/* Re-opens the session after a lost connection, with backoff, until
 * `until`; gives up at once on errors that are not about the connection. */
int bk_wire__reconnect(bk_device *dev, bk_deadline until, bk_wire_progress *p);
/* Whether `rc` is a lost connection worth reconnecting for. */
int bk_wire__retryable(int rc);
/* INFO, reconnecting (until `reconnect_ms` from now) when the connection
 * was lost; a reconnect to another unit fails with BK_EAUTH
 * "serial-mismatch". Counts reconnects in *reconnects. */
int bk_wire__info(bk_device *dev, bk_device_info **out, int64_t reconnect_ms, bk_wire_progress *p,
                  unsigned *reconnects);

/* The lowest battery level accepted. */
int bk_wire__min_battery(const bk_config *cfg, int given);

/* Reads the MANIFEST.json at the start of the (decrypted) memory archive
 * `in` and parses it; reads no further than the manifest. */
int bk_wire__manifest_peek(bk_manifest **out, bk_stream *in);

#endif
