/* The virtual robot's memory transfers: the unit side of BACKUP_BEGIN,
 * BACKUP_READ, BACKUP_END and RESTORE_BEGIN, RESTORE_WRITE, RESTORE_STATUS,
 * RESTORE_COMMIT, RESTORE_ABORT (aibo-restore-protocol(7)).
 *
 * Backups. BACKUP_BEGIN {"recipients": ["age1..."], "domains": [...]} makes
 * the unit produce the backup itself: the memory archive of its memory
 * folder, encrypted with age to the recipients, and a statement signed with
 * the unit's own Ed25519 key and factory certificate. The file is kept in
 * <unit>/backup/<id>.aibk until BACKUP_END {"id"}, so BACKUP_READ
 * {"id", "offset", "len"} can resume anywhere, also after a power cycle.
 * A BACKUP_BEGIN with the same recipients and domains while a kept backup
 * exists answers that backup again (a terminal that restarted resumes it).
 * Answer: {"id", "size", "header_size", "statement": "<text>"}.
 * The file is made in a thread of its own; with "stream": true in the
 * request the answer is {"id", "streaming": true} at once, BACKUP_READ of
 * bytes not made yet waits for them (at most 10 s, then BK_EBUSY
 * "backup-in-progress"), and the same BACKUP_BEGIN after the end of the data
 * gives the complete answer. A backup being made is lost in a power cycle.
 *
 * Restores. RESTORE_BEGIN {"size", "statement", "header_digest"} opens
 * staging in <unit>/restore/ (an identical BEGIN keeps what was received;
 * the optional header_digest, hex BLAKE2b-256 of the age header the terminal
 * sends, must match too, so a new re-wrap starts over); a statement
 * for another model is BK_EINCOMPAT "model-mismatch", a memory schema the
 * running firmware cannot hold BK_EINCOMPAT "schema-unsupported" naming the
 * schema. RESTORE_WRITE (DATA at an offset, at most the bytes received so
 * far) appends; RESTORE_STATUS answers {"active", "size", "received", "statement",
 * "header_digest"}.
 * RESTORE_COMMIT decrypts the staged age file with the unit's age key into
 * <unit>/memory.new, checks the payload digest, the statement (its producer
 * certificate against <unit>/trust/factory-ca.pub or the service CA), the
 * manifest against the statement and every entry's digest, then swaps
 * memory.new and memory in one renameat2(RENAME_EXCHANGE) and removes the
 * old one: a power loss leaves the old memory or the new one, never a mix.
 * Answer: {"domains": {...}, "schema", "manifest_digest": "<hex>"} (the
 * domain digests of the new memory, and the BLAKE2b-256 of the MANIFEST.json
 * it came from, which a terminal that cannot open the file compares with the
 * statement's).
 * RESTORE_ABORT drops the staging.
 *
 * Power-loss steps (aibo-vdev serve --fault power-loss=STEP[:PERCENT]):
 * "backup-begin", "backup-read" (percent of the file sent), "restore-write" (percent of the
 * size received), "restore-commit" (0 before checking, 50 checked and
 * before the swap, 100 after the swap). */
#ifndef BK_VDEV_MEMORY_OPS_H
#define BK_VDEV_MEMORY_OPS_H

#include "device/virtual/unit.h"

typedef struct bk_vmemops bk_vmemops;

#define BK_VUNIT_TRUST_FACTORY "trust/factory-ca.pub"

/* Finishes an interrupted swap left by a power loss, and installs the
 * handlers on `u`. `*out` must outlive serving; free it after the unit. */
int bk_vmemops_install(bk_vmemops **out, bk_vunit *u);
void bk_vmemops_free(bk_vmemops *m);

/* Gives a new unit the factory CA public key of the lab PKI (`pki_dir`), as
 * <unit>/trust/factory-ca.pub, so it can check unit-made statements. */
int bk_vmemops_provision(const char *unit_dir, const char *pki_dir);

#endif
