/* libbackup: the umbrella header. */
#ifndef LIBBACKUP_LIBBACKUP_H
#define LIBBACKUP_LIBBACKUP_H

#include <libbackup/common.h>
#include <libbackup/api.h>
#include <libbackup/backup.h>
#include <libbackup/catalog.h>
#include <libbackup/config.h>
#include <libbackup/device.h>
#include <libbackup/errors.h>
#include <libbackup/firmware.h>
#include <libbackup/identity.h>
#include <libbackup/job.h>
#include <libbackup/keys.h>
#include <libbackup/log.h>
#include <libbackup/progress.h>
#include <libbackup/stream.h>
#include <libbackup/transfer.h>
#include <libbackup/version.h>

BK_BEGIN_DECLS

/* Initialises the library (and libsodium). Call once from the main thread
 * before anything else; safe to call again. */
BK_EXTERN int bk_init(void);
/* Releases what bk_init() set up. */
BK_EXTERN void bk_shutdown(void);

BK_END_DECLS

#endif
