/* Internal: the device module's pieces for the other modules (firmware,
 * libbackup, the virtual robot) and its own files. Not installed.
 *
 * Layers, bottom up:
 *   device URIs            (uri.c)       where a unit is
 *   transports             (transport.c) byte streams to it: tcp, unix, in-process
 *                                        (usb lives in usb.c)
 *   framing                (frame.c)     2-byte big-endian length + one Noise message
 *   Noise channel          (crypto/noise.h + the channel) encrypts what is framed
 *   message codec          (message.c)   type, request id, body inside a Noise
 *                                        transport message
 * See PROTOCOL-NOTES.md for the byte layouts and the type numbers. */
#ifndef BK_DEVICE_INTERNAL_H
#define BK_DEVICE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "libbackup/util/util.h"

/* --- Device URIs ---------------------------------------------------------- */

#define BK_DEVICE_TCP_PORT 7450 /* the default port of tcp: URIs */

enum {
	BK_URI_USB_SERIAL = 1, /* usb:SERIAL */
	BK_URI_USB_PORT,       /* usb:BUS-PORT[.PORT...] */
	BK_URI_TCP,            /* tcp:HOST[:PORT] */
	BK_URI_UNIX,           /* unix:PATH */
};

#define BK_URI_SERIAL_MAX 126 /* a USB string descriptor holds 126 characters */
#define BK_URI_HOST_MAX 253   /* a DNS name */
#define BK_URI_PATH_MAX 107   /* sizeof(sun_path) - 1 */
#define BK_URI_PORTS_MAX 7    /* USB hub depth */
/* Enough for the canonical form of any URI, with its NUL. */
#define BK_URI_STRING_MAX 272

typedef struct bk_device_uri {
	int kind; /* BK_URI_* */
	/* BK_URI_USB_SERIAL */
	char serial[BK_URI_SERIAL_MAX + 1];
	/* BK_URI_USB_PORT: bus number and the port chain from the root hub */
	uint8_t bus;
	uint8_t ports[BK_URI_PORTS_MAX];
	uint8_t port_count;
	/* BK_URI_TCP: host name or address literal (IPv6 without brackets) */
	char host[BK_URI_HOST_MAX + 1];
	uint16_t port;
	/* BK_URI_UNIX */
	char path[BK_URI_PATH_MAX + 1];
} bk_device_uri;

/* Parses a device URI: "usb:SERIAL", "usb:BUS-PORT" (e.g. usb:1-2, usb:3-1.4),
 * "tcp:HOST[:PORT]" (default port 7450, IPv6 literals in brackets:
 * tcp:[::1]:7450; port 0 only makes sense for listening), "unix:PATH".
 * A usb: value made only of digits, '-' and '.' that starts with a digit and
 * holds a '-' is a bus-port (BUS 1-255, then 1 to 7 ports of 1-255 joined by
 * '.'); anything else is a serial: 1-126 characters of [A-Za-z0-9._-]. Fails with BK_EUSER, reason
 * "bad-device-uri", naming the URI and what is wrong with it. */
int bk_device_uri_parse(bk_device_uri *out, const char *uri);
/* The canonical form ("tcp:host:7450", "tcp:[::1]:7450", "usb:3-1.4") into
 * `out`; BK_ENOSPACE when `out_size` is too small (BK_URI_STRING_MAX always
 * fits), BK_EINVALID for a bad struct. */
int bk_device_uri_format(const bk_device_uri *uri, char *out, size_t out_size);

/* --- Transports ------------------------------------------------------------ */

/* Every transport is a bk_stream that reads and writes (see stream.h). Errors
 * they report:
 *   - the peer closed the connection: read returns 0 bytes (end of stream);
 *     the frame reader turns that into BK_EDISCONNECTED;
 *   - connection reset, or writing to a closed peer: BK_EDISCONNECTED
 *     (reasons "connection-reset", "connection-closed"); SIGPIPE is never
 *     raised (send(2) with MSG_NOSIGNAL);
 *   - a deadline passed: BK_ETIMEOUT ("timeout");
 *   - connecting to an address nobody listens on: BK_EDISCONNECTED, reason
 *     "connection-refused" (a transport failure, exit class 6, rather than
 *     "not found": the unit may just be rebooting); a host name that does not
 *     resolve: BK_ENOTFOUND "unknown-host"; a unix: socket file that does not
 *     exist: BK_ENOTFOUND "no-such-socket"; unreachable network or host:
 *     BK_EDISCONNECTED "unreachable".
 * Use each stream from one thread at a time (the bk_stream base fields are not
 * synchronised); the two ends of an in-process pair may live in two threads. */

/* Connects to a tcp: or unix: URI before `d`. Host names are resolved with
 * getaddrinfo(3), which does not honour the deadline (address literals never
 * block); each resolved address is tried in turn. TCP_NODELAY is set. A usb:
 * URI is BK_EINVALID here: usb.c opens those. */
int bk_transport_connect(bk_stream **out, const bk_device_uri *uri, bk_deadline d);

/* A listening socket for the unit side (the virtual robot). */
typedef struct bk_listener bk_listener;

/* Listens on a tcp: or unix: URI. tcp: with port 0 picks a free port; see
 * bk_listener_uri() for the one bound. unix: removes a stale socket file (a
 * socket nobody accepts on), refuses a live one (BK_EBUSY "address-in-use")
 * and anything that is not a socket (BK_EEXIST); the socket file is removed
 * again by bk_listener_free(). */
int bk_listener_new(bk_listener **out, const bk_device_uri *uri);
/* The bound address (actual port for tcp:). Borrowed from the listener. */
const bk_device_uri *bk_listener_uri(const bk_listener *l);
/* Accepts one connection before `d` (BK_ETIMEOUT otherwise). */
int bk_listener_accept(bk_listener *l, bk_stream **out, bk_deadline d);
/* The listening descriptor, for callers that poll several things. */
int bk_listener_fd(const bk_listener *l);
void bk_listener_free(bk_listener *l);

/* Two connected in-process transports (a socketpair): what one writes the
 * other reads. Each end may live in its own thread. Closing one end makes
 * the other read end-of-stream. */
int bk_transport_pair_new(bk_stream **out_a, bk_stream **out_b);

/* --- Framing ---------------------------------------------------------------- */

/* Each Noise message travels as a 2-byte big-endian length then that many
 * bytes. A zero-length frame is valid framing (the Noise layer rejects it). */
#define BK_FRAME_HEADER_LEN 2
#define BK_FRAME_MAX 65535

/* Writes one frame (header and payload in one write) before `d`. `len` over
 * BK_FRAME_MAX is BK_EINVALID. */
int bk_frame_write(bk_stream *s, const void *data, size_t len, bk_deadline d);
/* Reads exactly one frame into `buf` (`cap` bytes) before `d`; *out_len gets
 * its length. A length over `cap` is BK_EFORMAT ("frame-too-large") and the
 * stream is then out of step: drop the connection. End of stream before the
 * first header byte is BK_EDISCONNECTED reason "closed" (the peer hung up
 * between frames); end of stream inside a frame is BK_EDISCONNECTED reason
 * "frame-truncated". */
int bk_frame_read(bk_stream *s, void *buf, size_t cap, size_t *out_len, bk_deadline d);
/* Frames `len` bytes into `out`: 2 + len bytes (BK_ENOSPACE if `cap` is too
 * small, BK_EINVALID if len > BK_FRAME_MAX). */
int bk_frame_encode(uint8_t *out, size_t cap, size_t *out_len, const void *data, size_t len);
/* Takes one frame from a cursor: its payload, borrowed. BK_EFORMAT
 * ("frame-truncated") when the cursor holds less than the frame (the cursor
 * does not move), ("frame-too-large") when the length is over `max`. */
int bk_frame_decode(bk_cur *c, const uint8_t **out, size_t *out_len, size_t max);

/* --- Protocol messages ------------------------------------------------------ */

#define BK_PROTO_NOISE_TAG_LEN 16
/* The plaintext of one Noise transport message. */
#define BK_PROTO_MSG_MAX (BK_FRAME_MAX - BK_PROTO_NOISE_TAG_LEN) /* 65519 */
#define BK_PROTO_HEADER_LEN 5                                /* type u8, id u32be */
#define BK_PROTO_BODY_MAX (BK_PROTO_MSG_MAX - BK_PROTO_HEADER_LEN) /* 65514 */
#define BK_PROTO_DATA_HEADER_LEN 8                           /* offset u64be */
#define BK_PROTO_DATA_MAX (BK_PROTO_BODY_MAX - BK_PROTO_DATA_HEADER_LEN) /* 65506 */

/* The protocol version this code speaks (HELLO). */
#define BK_PROTO_VERSION 1
#define BK_PROTO_NAME "aibo-restore"

/* Message types. Numbers are part of the wire protocol: never renumbered. */
enum {
	BK_MSG_HELLO = 0x01,
	BK_MSG_PING = 0x02,
	BK_MSG_INFO = 0x10,
	BK_MSG_BACKUP_BEGIN = 0x20,
	BK_MSG_BACKUP_READ = 0x21,
	BK_MSG_BACKUP_END = 0x22,
	BK_MSG_RESTORE_BEGIN = 0x30,
	BK_MSG_RESTORE_WRITE = 0x31,
	BK_MSG_RESTORE_STATUS = 0x32,
	BK_MSG_RESTORE_COMMIT = 0x33,
	BK_MSG_RESTORE_ABORT = 0x34,
	BK_MSG_FW_BEGIN = 0x40,
	BK_MSG_FW_WRITE = 0x41,
	BK_MSG_FW_FINISH = 0x42,
	BK_MSG_FW_ACTIVATE = 0x43,
	BK_MSG_REBOOT = 0x50,
	BK_MSG_BOOT_STATUS = 0x51,
	BK_MSG_IDENTITY_INSTALL = 0x60,
	/* responses */
	BK_MSG_OK = 0x80,
	BK_MSG_DATA = 0x81,
	BK_MSG_ERROR = 0x82,
};

enum {
	BK_PROTO_BODY_UNKNOWN = 0, /* not a known type */
	BK_PROTO_BODY_JSON,        /* empty, or a JSON object */
	BK_PROTO_BODY_DATA,        /* u64be offset + bytes */
};

/* "RESTORE_WRITE"; NULL for an unknown type. */
const char *bk_proto_type_name(uint8_t type);
/* BK_PROTO_BODY_* of a type. */
int bk_proto_type_body(uint8_t type);
/* OK, DATA and ERROR (and a HELLO answer) travel from unit to terminal. */
bool bk_proto_type_is_response(uint8_t type);
/* A type by name (for tools and tests); 0 when unknown. */
uint8_t bk_proto_type_from_name(const char *name);

/* One plaintext message. For a JSON type, `json` is its body (NULL: an empty
 * body when encoding; decoding always gives an object, {} for an empty
 * body). For a DATA type, `offset` and `data`/`data_len`. */
typedef struct bk_proto_msg {
	uint8_t type;
	uint32_t id;
	json_t *json;
	uint64_t offset;
	const uint8_t *data;
	size_t data_len;
} bk_proto_msg;

/* Encodes `m` into `out` (at most `cap` bytes; BK_PROTO_MSG_MAX always
 * holds a valid message). Unknown type: BK_EINVALID; a body over
 * BK_PROTO_BODY_MAX or `cap`: BK_ENOSPACE ("message-too-large"); an offset
 * whose end passes INT64_MAX: BK_EINVALID. */
int bk_proto_msg_encode(uint8_t *out, size_t cap, size_t *out_len, const bk_proto_msg *m);
/* Decodes one message. `data` of a DATA type is borrowed from `buf`; `json`
 * belongs to the caller (bk_proto_msg_clear). Fails with BK_EFORMAT:
 * "message-truncated" (shorter than the header), "message-too-large" (over
 * BK_PROTO_MSG_MAX), "unknown-message-type", "bad-json", "json-not-object",
 * "data-truncated" (no offset), "bad-offset" (offset + length past
 * INT64_MAX). When the header could be read, out->type and out->id are set
 * even on failure, so the receiver can answer the request with an ERROR. */
int bk_proto_msg_decode(bk_proto_msg *out, const uint8_t *buf, size_t len);
/* Releases a decoded message's JSON body and clears it. */
void bk_proto_msg_clear(bk_proto_msg *m);

/* ERROR bodies: {"code": "<bk_error_code_name>", "reason": "...",
 * "message": "..."}. Builds the body of an error. `reason` NULL: the code's
 * name; `message` NULL: bk_strerror(code). `code` must be negative. */
int bk_proto_error_encode(json_t **out, int code, const char *reason, const char *message);
/* The body for the calling thread's last error. */
int bk_proto_error_from_last(json_t **out);
/* Reads an ERROR body and makes it the calling thread's last error: returns
 * the mapped BK_E* code (an unknown code name is BK_ERROR), with the peer's
 * reason (when it is a well-formed reason) and message (control characters
 * replaced, shortened to fit). A body that is not a valid error is
 * BK_EFORMAT ("bad-error-body"). */
int bk_proto_error_decode(const json_t *body);
/* The BK_E* code of a wire code name, or 0 when unknown. */
int bk_proto_error_code(const char *name);

/* HELLO: the terminal offers {"protocol": "aibo-restore", "versions": [1]};
 * the unit answers HELLO {"protocol": "aibo-restore", "version": 1}, or ERROR
 * "incompatible" / "no-common-version". */
int bk_proto_hello_offer(json_t **out);
/* The unit side: picks the highest offered version it speaks (between
 * `min` and `max`); BK_EINCOMPAT ("no-common-version") when none, BK_EFORMAT
 * ("bad-hello") when the body is not an offer. */
int bk_proto_hello_select(const json_t *offer, uint32_t min, uint32_t max, uint32_t *out_version);
/* The unit's answer to an offer. */
int bk_proto_hello_answer(json_t **out, uint32_t version);
/* The terminal side: checks the answer names a version it offered (between
 * `min` and `max`). */
int bk_proto_hello_accept(const json_t *answer, uint32_t min, uint32_t max, uint32_t *out_version);

#endif
