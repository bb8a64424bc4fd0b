/* The virtual robot's firmware slots: the unit side of FW_BEGIN, FW_WRITE,
 * FW_FINISH, FW_ACTIVATE, REBOOT and BOOT_STATUS (aibo-restore-protocol(7)).
 *
 * Slot images live in <unit>/slots/<name>.img; their headers (version,
 * security counter, schemas, state) in unit.db. The install sequence:
 * FW_BEGIN marks the target (inactive) slot invalid before any byte is
 * written; FW_WRITE checks each chunk (in order, in range, and every
 * payload's BLAKE2b-512, hashed as the bytes arrive, as soon as it is
 * complete) and makes progress durable every few MiB; FW_FINISH makes the
 * image durable, checks the signature again, re-reads and re-hashes the
 * payloads it did not hash as they arrived (those complete before a resume)
 * and only then writes the slot header (each payload's size and digest);
 * FW_ACTIVATE checks the slot against its header (unless FW_FINISH checked
 * it in this power cycle and the image file is untouched since) and arms it
 * for one boot (an attempt counter); the boot sequence spends an attempt,
 * runs the health check (the image hashed against its header) and marks the
 * slot good (then advances the stored security counter), or falls back to
 * the old slot once the attempts are spent. Every state change is a SQLite transaction or
 * an fsync'd file, so a power loss at any step leaves a bootable unit. */
#ifndef BK_VDEV_FW_H
#define BK_VDEV_FW_H

#include <stdbool.h>
#include <stdint.h>

#include "device/virtual/unit.h"

typedef struct bk_vfw bk_vfw;

#define BK_VFW_BOOT_TIME_MS 500
#define BK_VFW_SLOTS_DIR    "slots"
/* Optional: revoked firmware key ids, one a line. */
#define BK_VFW_REVOKED_KEYS "trust/revoked-keys"

/* Sets up the firmware state of a unit being powered up: creates its tables
 * when missing, registers the handlers and runs the power-up boot sequence
 * (a slot armed for a trial boot is tried, or abandoned when its attempts are
 * spent). Called by bk_vunit_firmware_enable(). */
int bk_vfw_attach(bk_vunit *u, bk_vfw **out);
void bk_vfw_free(bk_vfw *fw);

/* Called before a connection is served: while the unit reboots it refuses
 * connections (BK_EDISCONNECTED "booting"); the first connection after the
 * boot time runs the boot sequence (which may lose power at step "boot"). */
int bk_vfw_before_session(bk_vfw *fw);

/* How long a reboot takes (default BK_VFW_BOOT_TIME_MS). */
void bk_vfw_set_boot_time(bk_vfw *fw, int64_t ms);
/* With `on`, a newly installed firmware never passes its health check. */
void bk_vfw_set_boot_fail(bk_vfw *fw, bool on);

#endif
