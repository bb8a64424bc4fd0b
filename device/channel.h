/* Internal: the Noise-secured device channel (aibo-restore-protocol(7)), for
 * the device client and the unit side (the virtual robot).
 *
 * Handshake Noise_XX_25519_ChaChaPoly_BLAKE2b with prologue "aibo-restore/1",
 * every Noise message framed with a 2-byte big-endian length (frame.c). The
 * terminal is the initiator:
 *   -> e                       payload: empty
 *   <- e, ee, s, es            payload: the unit's factory certificate
 *   -> s, se                   payload: the terminal's certificate
 * Certificates travel in their canonical binary form (aibo-cert(5)). Each
 * side checks the other's certificate: the chain (factory CA for units,
 * service CA for terminals), the role, the validity window at `now`, and that
 * its Noise static key is the key the handshake authenticated; the terminal
 * also checks the serial it asked for. A refusal is BK_EAUTH with one of the
 * reasons: "unknown-ca", "bad-signature", "wrong-role", "expired",
 * "not-yet-valid", "key-mismatch", "serial-mismatch", "bad-certificate"
 * (not a certificate), "no-certificate", "bad-handshake" (a handshake message
 * that is not Noise: garbage, a command sent in the clear, a truncated
 * message).
 *
 * When the unit refuses a terminal after the third message, it still derives
 * the transport keys and sends one ERROR message (request id 0) naming the
 * cause before it hangs up, so the terminal learns why (bk_channel_refuse).
 *
 * After the handshake every frame is one Noise transport message holding one
 * bk_proto_msg. A frame that fails authentication ends the channel:
 * BK_EDISCONNECTED "frame-auth". A channel is used from one thread at a time.
 *
 * The channel reads its transport ahead, in pieces of several frames, and
 * writes each frame (length and message) with one write: once a transport
 * carries a channel, every read of it goes through the channel (the one
 * exception, bk_channel_linger, only discards). */
#ifndef BK_DEVICE_CHANNEL_H
#define BK_DEVICE_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/cert.h"
#include "device/device_internal.h"

#define BK_CHANNEL_PROTOCOL "Noise_XX_25519_ChaChaPoly_BLAKE2b"
#define BK_CHANNEL_PROLOGUE "aibo-restore/1"

typedef struct bk_channel bk_channel;

/* What one side brings to a handshake. Everything is borrowed for the
 * duration of the handshake call only. */
typedef struct bk_channel_cfg {
	/* Our Noise static secret key (32 bytes). */
	const uint8_t *noise_secret;
	/* Our certificate (NULL: none is sent, which the unit refuses). */
	const bk_cert *cert;
	/* The CAs the peer's certificate must chain to: factory CAs on the
	 * terminal, service CAs on the unit. */
	const bk_minisign_pubkey *cas;
	size_t ncas;
	/* Terminal only: the serial the unit must have (NULL: any). */
	const char *expect_serial;
	/* The time certificates are checked at (0: now). */
	int64_t now;
	/* Test hooks (NULL/0 in production): a fixed ephemeral secret (fuzz
	 * targets and their seed corpora), and the 1-based number of the frame
	 * sent (handshake frames included) whose byte is flipped after
	 * encryption (the corrupt-frame fault). */
	const uint8_t *test_ephemeral;
	uint64_t corrupt_frame;
	bool *corrupted; /* set to true once that frame was sent (may be NULL) */
} bk_channel_cfg;

/* The terminal side: runs the handshake over `transport` before `d`. With
 * `own`, the channel owns the transport (also on failure). */
int bk_channel_connect(bk_channel **out, bk_stream *transport, int own, const bk_channel_cfg *cfg,
                       bk_deadline d);
/* The unit side. On a refusal of the terminal (BK_EAUTH) after the third
 * message, the refusal was already sent to the terminal. */
int bk_channel_accept(bk_channel **out, bk_stream *transport, int own, const bk_channel_cfg *cfg,
                      bk_deadline d);

/* The peer's verified certificate (borrowed). */
const bk_cert *bk_channel_peer_cert(const bk_channel *ch);
/* The handshake hash (channel binding). */
const uint8_t *bk_channel_handshake_hash(const bk_channel *ch);
/* The transport below (borrowed). */
bk_stream *bk_channel_transport(bk_channel *ch);

/* Encrypts and sends one message. */
int bk_channel_send(bk_channel *ch, const bk_proto_msg *m, bk_deadline d);
/* Receives one message. DATA bytes are borrowed from the channel until the
 * next receive; the JSON body belongs to the caller (bk_proto_msg_clear),
 * also on a BK_EFORMAT failure when the header was read. Errors:
 * BK_EDISCONNECTED (the peer hung up; "frame-auth" when a frame did not
 * authenticate), BK_ETIMEOUT, BK_EFORMAT (a message that authenticated but
 * does not decode: the channel stays usable; out->type and out->id are set). */
int bk_channel_recv(bk_channel *ch, bk_proto_msg *out, bk_deadline d);
/* Unit side: sends an ERROR with request id 0 built from `code`, `reason`
 * and `message` (best effort, short deadline). */
void bk_channel_refuse(bk_channel *ch, int code, const char *reason, const char *message);
/* Unit side, after a refusal: stops writing and reads (discarding) until
 * the peer hangs up or `ms` pass, so what was sent reaches the peer before
 * the connection is closed. The channel is dead afterwards. */
void bk_channel_linger(bk_channel *ch, int64_t ms);
/* Marks the channel dead (the peer said it hangs up). */
void bk_channel_set_broken(bk_channel *ch);
/* True once a send or receive failed for good (the channel is dead). */
bool bk_channel_broken(const bk_channel *ch);
/* Frames sent and received so far, handshake included. */
uint64_t bk_channel_frames_sent(const bk_channel *ch);

void bk_channel_free(bk_channel *ch);

/* The terminal side of a handshake driven by hand (fuzz targets): the
 * certificate checks on the unit's message-2 payload. */
int bk_channel__check_unit_cert(bk_cert **out, const uint8_t *payload, size_t len,
                                const uint8_t *remote_static, const bk_channel_cfg *cfg);
/* The unit side's checks on the message-3 payload. */
int bk_channel__check_terminal_cert(bk_cert **out, const uint8_t *payload, size_t len,
                                    const uint8_t *remote_static, const bk_channel_cfg *cfg);

#endif
