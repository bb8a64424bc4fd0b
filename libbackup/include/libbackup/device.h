/* libbackup: talking to a unit (aibo-restore-protocol(7)).
 *
 * bk_device_open() connects to a unit named by a device URI ("usb:SERIAL",
 * "usb:BUS-PORT", "tcp:HOST[:PORT]", "unix:PATH"), runs the Noise handshake
 * (the unit's factory certificate checked against the trusted factory CAs,
 * the terminal's certificate sent to the unit) and negotiates the protocol
 * version. Then commands travel as requests with JSON bodies; transfers use
 * byte offsets so they resume where they stopped, with several requests in
 * flight.
 *
 * Every call takes a deadline (BK_DEADLINE_NONE or 0: the handle's default
 * timeout); a lost connection is BK_EDISCONNECTED and a passed deadline
 * BK_ETIMEOUT, never a hang. After BK_EDISCONNECTED the handle keeps its
 * options: bk_device_reconnect() opens a new session to the same unit.
 * A handle holds no global state; use each from one thread at a time
 * (separate handles in separate threads are fine). */
#ifndef LIBBACKUP_DEVICE_H
#define LIBBACKUP_DEVICE_H

#include <libbackup/common.h>
#include <libbackup/config.h>
#include <libbackup/stream.h>

BK_BEGIN_DECLS

typedef struct bk_device bk_device;

#define BK_DEVICE_OPTS_VERSION 1

typedef struct bk_device_opts {
	unsigned version;
	/* The terminal's key file (aibo-keys/1, mode 0600) and certificate. A
	 * terminal without a certificate is refused by every unit. */
	const char *terminal_key;
	const char *terminal_cert;
	/* Trust anchors: paths of factory CA public keys (minisign format). */
	const char *const *factory_ca;
	size_t factory_ca_count;
	/* The serial the unit must have (NULL: any; usb:SERIAL implies it). */
	const char *serial;
	/* Default deadline of calls and of opening, in milliseconds (0: 30000). */
	int64_t timeout_ms;
	/* USB vendor and product id (0: 1209:0001). */
	uint16_t usb_vid;
	uint16_t usb_pid;
	/* Requests in flight during transfers (0: 8; at most 64). */
	unsigned window;
} bk_device_opts;

#define BK_DEVICE_OPTS_INIT                                                                        \
	{                                                                                          \
		BK_DEVICE_OPTS_VERSION, NULL, NULL, NULL, 0, NULL, 0, 0, 0, 0                      \
	}

/* Request types (the protocol's message numbers). */
enum {
	BK_DEVICE_PING = 0x02,
	BK_DEVICE_INFO = 0x10,
	BK_DEVICE_BACKUP_BEGIN = 0x20,
	BK_DEVICE_BACKUP_READ = 0x21,
	BK_DEVICE_BACKUP_END = 0x22,
	BK_DEVICE_RESTORE_BEGIN = 0x30,
	BK_DEVICE_RESTORE_WRITE = 0x31,
	BK_DEVICE_RESTORE_STATUS = 0x32,
	BK_DEVICE_RESTORE_COMMIT = 0x33,
	BK_DEVICE_RESTORE_ABORT = 0x34,
	BK_DEVICE_FW_BEGIN = 0x40,
	BK_DEVICE_FW_WRITE = 0x41,
	BK_DEVICE_FW_FINISH = 0x42,
	BK_DEVICE_FW_ACTIVATE = 0x43,
	BK_DEVICE_REBOOT = 0x50,
	BK_DEVICE_BOOT_STATUS = 0x51,
	BK_DEVICE_IDENTITY_INSTALL = 0x60,
};

/* Opens a session with the unit at `uri` before the options' timeout.
 * Errors: BK_EUSER (bad URI or options), BK_ENOTFOUND (no such unit, missing
 * key or certificate file), BK_EDISCONNECTED (refused, unreachable, hung up),
 * BK_ETIMEOUT, BK_EAUTH (the handshake was refused by either side: the
 * reason names the cause), BK_EBUSY (the unit serves another terminal),
 * BK_EINCOMPAT (no common protocol version). */
BK_EXTERN int bk_device_open(bk_device **out, const char *uri, const bk_device_opts *opts);
/* bk_device_open with the options from the configuration: the terminal's
 * key and certificate (depot.terminal_key, depot.terminal_cert), the
 * factory CA (trust.factory_ca), usb.vid_pid and device.timeout (seconds).
 * `serial` (may be NULL) is the serial the unit must have. */
BK_EXTERN int bk_device_open_config(bk_device **out, const bk_config *cfg, const char *uri,
                                    const char *serial);

/* The same over a connected transport (an in-process pair, a test harness);
 * the handle owns `transport`, also on failure. It cannot reconnect. */
BK_EXTERN int bk_device_open_stream(bk_device **out, bk_stream *transport,
                                    const bk_device_opts *opts);
/* Ends the session (if any) and opens a new one to the same unit, which must
 * present a certificate for the same serial. */
BK_EXTERN int bk_device_reconnect(bk_device *dev);
/* Closes the session. NULL is a no-op. */
BK_EXTERN void bk_device_free(bk_device *dev);

/* The unit's serial and model from its verified certificate (borrowed). */
BK_EXTERN const char *bk_device_serial(const bk_device *dev);
BK_EXTERN const char *bk_device_model(const bk_device *dev);
/* The unit's factory certificate exactly as the handshake verified it
 * (canonical bytes, borrowed, valid until the session ends or reconnects).
 * BK_EDISCONNECTED without a session. */
BK_EXTERN int bk_device_certificate(const bk_device *dev, const uint8_t **out, size_t *out_len);
/* The canonical URI the handle connects to ("" for bk_device_open_stream). */
BK_EXTERN const char *bk_device_get_uri(const bk_device *dev);
/* Whether the session is usable (0 after a lost connection). */
BK_EXTERN int bk_device_connected(const bk_device *dev);

/* --- Commands -------------------------------------------------------------- */

/* Sends a request of `type` with a JSON object body (`json_body` NULL: no
 * arguments) and waits for its answer before `d`. On success *json_reply
 * (may be NULL) gets the unit's answer as compact JSON text (free with
 * bk_free). An ERROR answer becomes the last error with the unit's code,
 * reason and message. After a timeout the session stays usable: a late
 * answer is discarded. */
BK_EXTERN int bk_device_call(bk_device *dev, int type, const char *json_body, char **json_reply,
                             bk_deadline d);

/* PING: a round trip; *rtt_ms (may be NULL) gets its duration. */
BK_EXTERN int bk_device_ping(bk_device *dev, int64_t *rtt_ms, bk_deadline d);

/* IDENTITY_INSTALL: hands the unit the identity bundle a reassignment
 * returned (aibo-cert/1, role "identity", signed by the service CA). The
 * unit checks the signature against the service CA it trusts and that the
 * bundle names its own serial and keys, then keeps it; installing the same
 * bundle again succeeds. *out_json (may be NULL; free with bk_free) gets
 * the unit's answer: {"device_id": ..., "serial": ..., "fingerprint": ...}.
 * Refusals are the unit's errors as it reports them (BK_EAUTH for a bundle
 * it cannot verify, BK_EVERIFY "bundle-mismatch" for another unit's). */
BK_EXTERN int bk_device_identity_install(bk_device *dev, const uint8_t *bundle, size_t len,
                                         char **out_json, bk_deadline d);

/* One firmware slot as INFO reports it. */
typedef struct bk_device_slot {
	const char *name;    /* "A", "B" */
	const char *state;   /* "active", "inactive", "empty", "pending" */
	const char *version; /* "" for an empty slot */
	uint64_t security_counter;
	uint64_t schema_min; /* the memory schemas this firmware holds */
	uint64_t schema_max;
	int running; /* the unit runs this slot now */
} bk_device_slot;

/* One memory domain as INFO reports it. */
typedef struct bk_device_domain {
	const char *name;
	uint64_t items;
	uint64_t bytes;
	const char *digest; /* 64 hex digits: the domain digest */
} bk_device_domain;

/* What INFO returns, parsed. Strings live as long as the struct. */
typedef struct bk_device_info {
	const char *json; /* the whole answer, compact JSON text */
	const char *serial;
	const char *model;
	const char *hw_revision;
	const char *state; /* "idle", ... */
	int battery;       /* percent */
	/* The factory certificate as the terminal checked it. */
	const char *cert_status;      /* "valid" */
	const char *cert_fingerprint; /* BLAKE2b-256 of the certificate, hex */
	const char *cert_issuer;      /* the factory CA key id (minisign form) */
	int64_t cert_not_before;
	int64_t cert_not_after;
	const char *age_recipient; /* "age1...": the unit's backup recipient */
	/* The running firmware. */
	const char *firmware_version;
	uint64_t security_counter;
	uint64_t schema_min;
	uint64_t schema_max;
	uint64_t memory_schema; /* the schema version of the unit's memory */
	size_t slot_count;
	const bk_device_slot *slots;
	size_t domain_count;
	const bk_device_domain *domains;
} bk_device_info;

/* INFO, parsed (free with bk_device_info_free). The answer must hold every
 * field above (BK_EFORMAT "bad-info" otherwise). */
BK_EXTERN int bk_device_info_get(bk_device *dev, bk_device_info **out, bk_deadline d);
BK_EXTERN void bk_device_info_free(bk_device_info *info);

/* --- Transfers ------------------------------------------------------------- */

/* Receives `len` bytes from the stream at `offset` on, in order or not:
 * (offset, bytes) pieces. Returns 0 or a BK_E* code that stops the transfer. */
typedef int (*bk_device_sink)(void *payload, uint64_t offset, const void *data, size_t len);
/* Fills `buf` with exactly `len` bytes of the data at `offset`. */
typedef int (*bk_device_source)(void *payload, uint64_t offset, void *buf, size_t len);

#define BK_DEVICE_XFER_OPTS_VERSION 1

typedef struct bk_device_xfer_opts {
	unsigned version;
	/* Requests in flight (0: the handle's window). */
	unsigned window;
	/* Bytes per request (0: the most one message carries). */
	size_t chunk;
	/* For reads: the transfer id, sent as "id" in each request (may be NULL). */
	const char *id;
	/* Deadline of each request's answer (0: the handle's timeout). */
	int64_t request_timeout_ms;
	/* The whole transfer's deadline (0: none). */
	bk_deadline deadline;
} bk_device_xfer_opts;

#define BK_DEVICE_XFER_OPTS_INIT                                                                   \
	{                                                                                          \
		BK_DEVICE_XFER_OPTS_VERSION, 0, 0, NULL, 0, 0                                      \
	}

/* Reads bytes [offset, offset+len) with requests of `type` (BACKUP_READ:
 * JSON {"id", "offset", "len"}; answers are DATA messages). A DATA answer
 * shorter than asked marks the end of the data. *out_done gets the number of
 * bytes from `offset` on that reached the sink without a gap, also on
 * failure: call again from offset + *out_done after a reconnect. */
BK_EXTERN int bk_device_read_range(bk_device *dev, int type, uint64_t offset, uint64_t len,
                                   bk_device_sink sink, void *payload,
                                   const bk_device_xfer_opts *opts, uint64_t *out_done);
/* Writes bytes [offset, offset+len) with DATA requests of `type`
 * (RESTORE_WRITE, FW_WRITE), each answered by OK. *out_done gets the bytes
 * from `offset` on that the unit acknowledged without a gap. */
BK_EXTERN int bk_device_write_range(bk_device *dev, int type, uint64_t offset, uint64_t len,
                                    bk_device_source source, void *payload,
                                    const bk_device_xfer_opts *opts, uint64_t *out_done);

/* --- Finding units --------------------------------------------------------- */

/* One unit present on the USB bus. */
typedef struct bk_device_usb_unit {
	char uri[144]; /* "usb:SERIAL", or "usb:BUS-PORT" when the serial is unreadable */
	char serial[128];
	char path[32]; /* "1-2" */
} bk_device_usb_unit;

/* Lists the units with `vid`:`pid` (0: defaults) on the USB bus. *out is
 * NULL when there are none; free with bk_free. */
BK_EXTERN int bk_device_usb_list(bk_device_usb_unit **out, size_t *count, uint16_t vid,
                                 uint16_t pid);

/* Parses "VVVV:PPPP" (hex). BK_EUSER otherwise. */
BK_EXTERN int bk_device_parse_vid_pid(const char *text, uint16_t *vid, uint16_t *pid);

/* Checks the syntax of a device URI (BK_EUSER "bad-device-uri"). */
BK_EXTERN int bk_device_uri_check(const char *uri);

BK_END_DECLS

#endif
