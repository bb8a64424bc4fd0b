/* The virtual robot: a unit as the factory makes it, kept in a folder, and
 * the unit side of the device protocol (aibo-vdev(1)).
 *
 * A unit folder holds:
 *   unit.db          SQLite: identity, firmware slots, staging metadata
 *   unit.keys        aibo-keys/1: Noise, Ed25519 and age secret keys (0600)
 *   unit.cert        the factory certificate (aibo-cert/1, armored)
 *   trust/service-ca.pub, trust/firmware.pub   the trust anchors it ships with
 *   memory/<domain>/...                        the memory
 *   volatile/        uncommitted bulk data: emptied at every power-up
 * Killing the program that serves a unit and opening the folder again is a
 * power cycle: what was committed (SQLite transactions, files renamed into
 * place) survives; volatile/ is discarded.
 *
 * Serving: bk_vunit_serve() runs one session over a transport (handshake,
 * HELLO, then commands until the terminal hangs up). Several sessions may
 * call it at once from several threads; only one becomes the active session,
 * the others are refused with BK_EBUSY after the handshake.
 *
 * Commands are dispatched through a table: the core answers HELLO, PING and
 * INFO; later features (backup, restore, firmware, identity) register their
 * handlers with bk_vunit_set_handler(). Handlers run on the active session's
 * thread only. */
#ifndef BK_VDEV_UNIT_H
#define BK_VDEV_UNIT_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <sqlite3.h>

#include "crypto/cert.h"
#include "device/device_internal.h"

typedef struct bk_vunit bk_vunit;

#define BK_VUNIT_KEYS           "unit.keys"
#define BK_VUNIT_CERT           "unit.cert"
#define BK_VUNIT_DB             "unit.db"
#define BK_VUNIT_MEMORY         "memory"
#define BK_VUNIT_VOLATILE       "volatile"
#define BK_VUNIT_TRUST_SERVICE  "trust/service-ca.pub"
#define BK_VUNIT_TRUST_FIRMWARE "trust/firmware.pub"

/* --- Creating a unit ----------------------------------------------------------- */

#define BK_VUNIT_CREATE_OPTS_VERSION 1

typedef struct bk_vunit_create_opts {
	unsigned version;
	const char *pki_dir;          /* factory-ca.key, service-ca.key.pub, firmware.key.pub */
	const char *serial;           /* required */
	const char *model;            /* "ERS-1000" */
	const char *hw_revision;      /* "1" */
	const char *fw_version;       /* "3.0.0" */
	uint64_t fw_security_counter; /* 1 */
	uint64_t schema;              /* 2: the firmware holds memory schemas 1..schema */
	int battery;                  /* 100 */
	uint64_t memory_size;         /* 1 MiB */
	uint64_t seed;                /* 1 */
	bool fresh;                   /* no memory (every domain empty) */
	/* Certificate validity (0: from an hour ago, for ten years). */
	int64_t not_before;
	int64_t not_after;
} bk_vunit_create_opts;

#define BK_VUNIT_CREATE_OPTS_INIT                                                                  \
	{                                                                                          \
		.version = BK_VUNIT_CREATE_OPTS_VERSION, .model = "ERS-1000", .hw_revision = "1",  \
		.fw_version = "3.0.0", .fw_security_counter = 1, .schema = 2, .battery = 100,      \
		.memory_size = (uint64_t)1 << 20, .seed = 1                                        \
	}

/* Creates the unit in `dir` (which must not exist, or be empty): keys, the
 * factory certificate signed with the PKI's factory CA, trust anchors, slot A
 * holding the given firmware (slot B empty), and the memory. */
int bk_vunit_create(const char *dir, const bk_vunit_create_opts *opts);

/* --- Opening ------------------------------------------------------------------ */

/* Powers the unit up: reads its keys, certificate and state; empties
 * volatile/. */
int bk_vunit_open(bk_vunit **out, const char *dir);
void bk_vunit_free(bk_vunit *u);

const char *bk_vunit_dir(const bk_vunit *u);
const char *bk_vunit_serial(const bk_vunit *u);
const bk_cert *bk_vunit_cert(const bk_vunit *u);
const bk_keyfile *bk_vunit_keys(const bk_vunit *u);
/* The unit's database (for feature handlers; the active session's thread). */
sqlite3 *bk_vunit_db(bk_vunit *u);
/* "<dir>/memory" (borrowed). */
const char *bk_vunit_memory_dir(const bk_vunit *u);

/* What INFO answers (see aibo-restore-protocol(7)). */
int bk_vunit_info_json(bk_vunit *u, json_t **out);

/* {"serial": ..., "domains": {...}} for `aibo-vdev digest`: reads the unit
 * folder without opening it for serving (works while it is served). */
int bk_vunit_digest_json(const char *dir, json_t **out);

/* --- Commands ------------------------------------------------------------------ */

/* An answer a handler fills: an OK with `json` (owned; NULL: {}), or, with
 * `is_data`, a DATA answer of `data_len` bytes written into `data` (a
 * buffer of BK_PROTO_DATA_MAX bytes provided by the session) at `offset`. */
typedef struct bk_vunit_reply {
	json_t *json;
	bool is_data;
	uint64_t offset;
	uint8_t *data;
	size_t data_len;
} bk_vunit_reply;

/* Answers one request. Returning an error sends an ERROR built from the last
 * error; returning BK_EDISCONNECTED with the unit dead (power loss) sends
 * nothing. */
typedef int (*bk_vunit_handler)(bk_vunit *u, const bk_proto_msg *req, bk_vunit_reply *reply,
                                void *payload);

/* Installs (or, with NULL, removes) the handler of a request type. HELLO
 * cannot be replaced. */
int bk_vunit_set_handler(bk_vunit *u, uint8_t type, bk_vunit_handler h, void *payload);

/* --- Faults -------------------------------------------------------------------- */

/* Adds a fault from its spec (as `aibo-vdev serve --fault`):
 *   disconnect-after=BYTES   drop the connection once BYTES crossed it (both ways)
 *   stall=N                  never answer the Nth request after HELLO
 *   corrupt-frame=N          flip a byte of the Nth frame sent (handshake
 *                            message 2 is frame 1)
 *   rate=BYTES_PER_S         send at most this fast (K/M suffixes allowed)
 *   battery=PERCENT          report this battery level
 *   busy                     refuse every session as busy
 *   refuse-handshake         refuse every terminal after the handshake
 *   power-loss=STEP[:PERCENT] die at that step (see bk_vunit_step)
 *   boot-fail                newly installed firmware never passes its health
 *                            check (the unit falls back to the old slot)
 * disconnect-after, stall, corrupt-frame and power-loss fire once (in the
 * first session that reaches them); append ",repeat" to fire them in every
 * session. A bad spec is BK_EUSER "bad-fault". */
int bk_vunit_fault_add(bk_vunit *u, const char *spec);
void bk_vunit_faults_clear(bk_vunit *u);

/* Steps the core knows: "handshake" (after the handshake, before HELLO is
 * answered), "info" (before INFO is answered), "ping". Features name their
 * own ("restore-write", ...) and report `percent` (0-100) of their progress
 * where it means something. When a power-loss fault names the step (and its
 * percent, when given, is reached), the unit dies: the function returns
 * BK_EDISCONNECTED "power-loss", the session ends without a word and the
 * unit stays dead (bk_vunit_dead) until it is freed and opened again. */
int bk_vunit_step(bk_vunit *u, const char *step, unsigned percent);
bool bk_vunit_dead(const bk_vunit *u);
/* The step the unit died at ("" while alive). */
const char *bk_vunit_death_step(const bk_vunit *u);

/* With `on`, sessions end at their next wake-up (a few times a second)
 * instead of waiting for the terminal; the server sets it when stopping. */
void bk_vunit_interrupt(bk_vunit *u, bool on);

/* Ends the active session once the answer being prepared is sent (a
 * handler's REBOOT). */
void bk_vunit_end_session(bk_vunit *u);
/* Enables the firmware commands (FW_*, REBOOT, BOOT_STATUS; device/virtual/fw.h)
 * and runs the power-up boot sequence; aibo-vdev serve does it after
 * bk_vunit_open(). */
int bk_vunit_firmware_enable(bk_vunit *u);
/* The unit's firmware slots (NULL until enabled). */
struct bk_vfw *bk_vunit_fw(bk_vunit *u);

/* --- Serving -------------------------------------------------------------------- */

/* Serves one session over `transport` (owned): handshake before
 * `handshake_deadline`, then requests until the terminal hangs up (0), the
 * unit dies (BK_EDISCONNECTED "power-loss") or the session fails. Returns
 * BK_EBUSY when another session was active, BK_EAUTH when the terminal was
 * refused. */
int bk_vunit_serve(bk_vunit *u, bk_stream *transport, bk_deadline handshake_deadline);

/* --- Fault stream (fault.c) ---------------------------------------------------- */

/* A filter over a transport: after `disconnect_after` bytes (0: never) have
 * crossed it in both directions it drops the connection (reads and writes
 * fail with BK_EDISCONNECTED "fault-disconnect"); writes go at most `rate`
 * bytes per second (0: unlimited). Owns `next`. */
int bk_vunit_fault_stream_new(bk_stream **out, bk_stream *next, uint64_t disconnect_after,
                              uint64_t rate);

#endif
