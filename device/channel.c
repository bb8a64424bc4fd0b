/* The Noise-secured device channel: the XX handshake with certificate checks
 * on both sides, then framed transport messages (see channel.h). */
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "crypto/noise.h"
#include "device/channel.h"

/* A Noise message with its length header. */
#define FRAME_BUF (BK_FRAME_HEADER_LEN + BK_FRAME_MAX)
/* The receive buffer: several frames, so that one read of the transport
 * usually brings in more than one frame. */
#define RX_BUF (4 * FRAME_BUF)
/* Largest handshake payload accepted (a certificate). */
#define PAYLOAD_MAX (BK_CERT_MAX)
/* How long a refusal may take to send. */
#define REFUSE_MS 2000

struct bk_channel {
	bk_stream *transport;
	int own;
	bk_noise_cipher *send;
	bk_noise_cipher *recv;
	bk_cert *peer;
	uint8_t hash[BK_NOISE_HASH_LEN];
	uint64_t frames_sent;
	uint64_t frames_recv;
	uint64_t corrupt_frame;
	bool *corrupted;
	bool broken;
	/* Received bytes: rbuf[rpos, rend) are read from the transport and not
	 * yet handed out; the last frame handed out lies before rpos and stays
	 * in place until the next receive (DATA bytes are borrowed from it). */
	uint8_t *rbuf;
	size_t rpos;
	size_t rend;
	/* The frame being sent: the length header, then the Noise message
	 * (encrypted in place). */
	uint8_t *sbuf;
};

static int64_t check_time(const bk_channel_cfg *cfg)
{
	return cfg->now ? cfg->now : (int64_t)time(NULL);
}

/* Sends the frame of `len` Noise message bytes at ch->sbuf + header:
 * header and message in one write. Flips a byte of the message when the
 * corrupt-frame hook says so. */
static int send_frame(bk_channel *ch, size_t len, bk_deadline d)
{
	uint8_t *msg = ch->sbuf + BK_FRAME_HEADER_LEN;
	ch->frames_sent++;
	if (ch->corrupt_frame && ch->frames_sent == ch->corrupt_frame && len > 0) {
		msg[len / 2] ^= 0x40;
		if (ch->corrupted)
			*ch->corrupted = true;
	}
	bk_put_u16be(ch->sbuf, (uint16_t)len);
	int rc = bk_stream_write(ch->transport, ch->sbuf, BK_FRAME_HEADER_LEN + len, d);
	if (rc)
		ch->broken = true;
	return rc;
}

/* Hands out the next frame: *out points at its Noise message (inside
 * ch->rbuf, valid until the next call). Reads the transport in large pieces,
 * so a burst of frames costs few reads. A frame read in part when the
 * deadline passes is kept and completed by the next call, so a timeout does
 * not put the stream out of step. */
static int recv_frame(bk_channel *ch, uint8_t **out, size_t *out_len, bk_deadline d)
{
	for (;;) {
		size_t have = ch->rend - ch->rpos;
		size_t need = BK_FRAME_HEADER_LEN;
		if (have >= BK_FRAME_HEADER_LEN) {
			need += bk_get_u16be(ch->rbuf + ch->rpos);
			if (have >= need) {
				*out = ch->rbuf + ch->rpos + BK_FRAME_HEADER_LEN;
				*out_len = need - BK_FRAME_HEADER_LEN;
				ch->rpos += need;
				ch->frames_recv++;
				return 0;
			}
		} else {
			need = FRAME_BUF; /* the length is not in yet: make room for any frame */
		}
		if (ch->rpos + need > RX_BUF) {
			/* The frame would run past the end: move its start to the front. */
			memmove(ch->rbuf, ch->rbuf + ch->rpos, have);
			ch->rpos = 0;
			ch->rend = have;
		}
		size_t n = 0;
		int rc =
		    bk_stream_read(ch->transport, ch->rbuf + ch->rend, RX_BUF - ch->rend, &n, d);
		if (rc) {
			if (rc != BK_ETIMEOUT)
				ch->broken = true;
			return rc;
		}
		if (n == 0) {
			ch->broken = true;
			if (have == 0)
				return bk__error_set(BK_EDISCONNECTED, "closed",
				                     "the peer closed the connection");
			return bk__error_set(BK_EDISCONNECTED, "frame-truncated",
			                     "the peer closed the connection inside a frame");
		}
		ch->rend += n;
	}
}

static int new_channel(bk_channel **out, bk_stream *transport, int own, const bk_channel_cfg *cfg)
{
	bk_channel *ch = bk__calloc(1, sizeof(*ch));
	if (ch == NULL)
		return BK_ENOMEM;
	ch->rbuf = bk__malloc(RX_BUF);
	ch->sbuf = ch->rbuf ? bk__malloc(FRAME_BUF) : NULL;
	if (ch->sbuf == NULL) {
		bk__free(ch->rbuf);
		bk__free(ch);
		return BK_ENOMEM;
	}
	ch->transport = transport;
	ch->own = own;
	ch->corrupt_frame = cfg->corrupt_frame;
	ch->corrupted = cfg->corrupted;
	*out = ch;
	return 0;
}

static int new_handshake(bk_noise_handshake **out, bool initiator, const bk_channel_cfg *cfg)
{
	int rc = bk_noise_handshake_new(out, BK_CHANNEL_PROTOCOL, initiator,
	                                (const uint8_t *)BK_CHANNEL_PROLOGUE,
	                                strlen(BK_CHANNEL_PROLOGUE));
	if (rc == 0)
		rc = bk_noise_handshake_set_local_static(*out, cfg->noise_secret);
	if (rc == 0 && cfg->test_ephemeral)
		rc = bk_noise__handshake_set_ephemeral(*out, cfg->test_ephemeral);
	return rc;
}

/* A Noise failure while reading a handshake message is a refusal. */
static int handshake_garbage(int rc, int msgno, const char *peer)
{
	char why[256];
	if (rc != BK_EVERIFY && rc != BK_EFORMAT && rc != BK_ENOSPACE)
		return rc;
	bk_strlcpy(why, bk_error_last()->message ? bk_error_last()->message : "", sizeof(why));
	return bk__error_set(BK_EAUTH, "bad-handshake",
	                     "handshake refused: message %d from the %s is not a valid Noise "
	                     "message (%s)",
	                     msgno, peer, why);
}

/* Common certificate checks: parse, chain, role, validity, key binding. */
static int check_cert(bk_cert **out, const uint8_t *payload, size_t len,
                      const uint8_t *remote_static, const bk_channel_cfg *cfg, bk_cert_role role,
                      const char *who)
{
	bk_cert *c = NULL;
	int rc;
	*out = NULL;
	if (len == 0)
		return bk__error_set(BK_EAUTH, "no-certificate",
		                     "handshake refused: the %s sent no certificate", who);
	rc = bk_cert_parse(&c, payload, len);
	if (rc) {
		char why[256];
		bk_strlcpy(why, bk_error_last()->message ? bk_error_last()->message : "",
		           sizeof(why));
		if (rc == BK_EFORMAT)
			rc = bk__error_set(BK_EAUTH, "bad-certificate",
			                   "handshake refused: the %s sent garbage instead of a "
			                   "certificate (%s)",
			                   who, why);
		goto done;
	}
	rc = bk_cert_verify(c, cfg->cas, cfg->ncas, role, check_time(cfg));
	if (rc == 0)
		rc = remote_static
		         ? bk_cert_check_noise_key(c, remote_static)
		         : bk__error_set(BK_EAUTH, "key-mismatch", "the %s has no static key", who);
	if (rc == BK_EAUTH && strcmp(bk_error_last()->reason, "key-mismatch") == 0)
		rc = bk__error_set(BK_EAUTH, "key-mismatch",
		                   "handshake refused: the %s's certificate is not for the Noise "
		                   "key it used (key/certificate mismatch)",
		                   who);
	else if (rc)
		rc = bk__error_prefix(rc, "handshake refused: %s certificate", who);
	if (rc)
		goto done;
	*out = c;
	c = NULL;
done:
	bk_cert_free(c);
	return rc;
}

int bk_channel__check_unit_cert(bk_cert **out, const uint8_t *payload, size_t len,
                                const uint8_t *remote_static, const bk_channel_cfg *cfg)
{
	int rc = check_cert(out, payload, len, remote_static, cfg, BK_CERT_ROLE_UNIT, "unit");
	if (rc == 0 && cfg->expect_serial && bk_cert_check_subject(*out, cfg->expect_serial)) {
		rc =
		    bk__error_set(BK_EAUTH, "serial-mismatch",
		                  "handshake refused: asked for unit %s but the unit's certificate "
		                  "is for %s (serial mismatch)",
		                  cfg->expect_serial, bk_cert_serial(*out));
		bk_cert_free(*out);
		*out = NULL;
	}
	return rc;
}

int bk_channel__check_terminal_cert(bk_cert **out, const uint8_t *payload, size_t len,
                                    const uint8_t *remote_static, const bk_channel_cfg *cfg)
{
	return check_cert(out, payload, len, remote_static, cfg, BK_CERT_ROLE_TERMINAL, "terminal");
}

static int write_hs(bk_channel *ch, bk_noise_handshake *hs, const uint8_t *payload, size_t len,
                    bk_deadline d)
{
	size_t n = 0;
	int rc = bk_noise_handshake_write_message(hs, payload, len, ch->sbuf + BK_FRAME_HEADER_LEN,
	                                          BK_FRAME_MAX, &n);
	/* Writing mixes in a DH with the peer's keys: one that fails (a
	 * low-order point) is the peer's doing, a refusal like a bad message. */
	if (rc == BK_EVERIFY) {
		char why[256];
		bk_strlcpy(why, bk_error_last()->message ? bk_error_last()->message : "",
		           sizeof(why));
		return bk__error_set(BK_EAUTH, "bad-handshake",
		                     "handshake refused: the peer's key cannot be used (%s)", why);
	}
	if (rc == 0)
		rc = send_frame(ch, n, d);
	return rc;
}

/* Reads a handshake message; the payload lands in `payload` (PAYLOAD_MAX). */
static int read_hs(bk_channel *ch, bk_noise_handshake *hs, int msgno, const char *peer,
                   uint8_t *payload, size_t *plen, bk_deadline d)
{
	uint8_t *msg = NULL;
	size_t n = 0;
	int rc = recv_frame(ch, &msg, &n, d);
	if (rc) {
		if (rc == BK_EDISCONNECTED)
			return bk__error_set(
			    BK_EDISCONNECTED, bk_error_last()->reason,
			    "the %s hung up during the handshake (before message %d)", peer, msgno);
		return bk__error_prefix(rc, "handshake message %d", msgno);
	}
	rc = bk_noise_handshake_read_message(hs, msg, n, payload, PAYLOAD_MAX, plen);
	return rc ? handshake_garbage(rc, msgno, peer) : 0;
}

static int finish_hs(bk_channel *ch, bk_noise_handshake *hs)
{
	int rc = bk_noise_handshake_hash(hs, ch->hash);
	if (rc == 0)
		rc = bk_noise_handshake_split(hs, &ch->send, &ch->recv);
	return rc;
}

int bk_channel_connect(bk_channel **out, bk_stream *transport, int own, const bk_channel_cfg *cfg,
                       bk_deadline d)
{
	bk_channel *ch = NULL;
	bk_noise_handshake *hs = NULL;
	uint8_t *payload = NULL;
	size_t plen = 0, clen = 0;
	const uint8_t *cbytes = NULL;
	int rc;
	if (out == NULL || transport == NULL || cfg == NULL || cfg->noise_secret == NULL) {
		rc = bk__error_set(BK_EINVALID, NULL, "channel: missing argument");
		goto fail_transport;
	}
	*out = NULL;
	rc = new_channel(&ch, transport, own, cfg);
	if (rc)
		goto fail_transport;
	payload = bk__malloc(PAYLOAD_MAX);
	rc = payload ? new_handshake(&hs, true, cfg) : BK_ENOMEM;
	if (rc == 0)
		rc = write_hs(ch, hs, NULL, 0, d);
	if (rc == 0)
		rc = read_hs(ch, hs, 2, "unit", payload, &plen, d);
	if (rc == 0)
		rc = bk_channel__check_unit_cert(&ch->peer, payload, plen,
		                                 bk_noise_handshake_remote_static(hs), cfg);
	if (rc == 0 && cfg->cert)
		cbytes = bk_cert_bytes(cfg->cert, &clen);
	if (rc == 0)
		rc = write_hs(ch, hs, cbytes, clen, d);
	if (rc == 0)
		rc = finish_hs(ch, hs);
	if (rc == 0) {
		*out = ch;
		ch = NULL;
	}
	goto done;
fail_transport:
	if (own)
		bk_stream_free(transport);
done:
	bk_noise_handshake_free(hs);
	bk__free(payload);
	bk_channel_free(ch);
	return rc;
}

int bk_channel_accept(bk_channel **out, bk_stream *transport, int own, const bk_channel_cfg *cfg,
                      bk_deadline d)
{
	bk_channel *ch = NULL;
	bk_noise_handshake *hs = NULL;
	uint8_t *payload = NULL;
	size_t plen = 0, clen = 0;
	const uint8_t *cbytes;
	int rc;
	if (out == NULL || transport == NULL || cfg == NULL || cfg->noise_secret == NULL ||
	    cfg->cert == NULL) {
		rc = bk__error_set(BK_EINVALID, NULL, "channel: missing argument");
		if (own)
			bk_stream_free(transport);
		return rc;
	}
	*out = NULL;
	rc = new_channel(&ch, transport, own, cfg);
	if (rc) {
		if (own)
			bk_stream_free(transport);
		return rc;
	}
	payload = bk__malloc(PAYLOAD_MAX);
	rc = payload ? new_handshake(&hs, false, cfg) : BK_ENOMEM;
	if (rc == 0)
		rc = read_hs(ch, hs, 1, "terminal", payload, &plen, d);
	if (rc == 0 && plen != 0)
		rc = bk__error_set(
		    BK_EAUTH, "bad-handshake",
		    "handshake refused: message 1 from the terminal carries %zu bytes "
		    "of payload (it must carry none)",
		    plen);
	cbytes = bk_cert_bytes(cfg->cert, &clen);
	if (rc == 0)
		rc = write_hs(ch, hs, cbytes, clen, d);
	if (rc == 0)
		rc = read_hs(ch, hs, 3, "terminal", payload, &plen, d);
	if (rc == 0) {
		rc = bk_channel__check_terminal_cert(&ch->peer, payload, plen,
		                                     bk_noise_handshake_remote_static(hs), cfg);
		if (rc) {
			/* The Noise part succeeded: tell the terminal why it is refused. */
			/* Reasons are string literals: the pointer stays valid. */
			const char *reason = bk_error_last()->reason;
			char msg[512];
			bk_strlcpy(msg, bk_error_last()->message ? bk_error_last()->message : "",
			           sizeof(msg));
			if (finish_hs(ch, hs) == 0) {
				bk_channel_refuse(ch, rc, reason, msg);
				bk_channel_linger(ch, REFUSE_MS);
			}
			rc = bk__error_set(rc, reason, "%s", msg);
		}
	}
	if (rc == 0)
		rc = finish_hs(ch, hs);
	if (rc == 0) {
		*out = ch;
		ch = NULL;
	}
	bk_noise_handshake_free(hs);
	bk__free(payload);
	bk_channel_free(ch);
	return rc;
}

const bk_cert *bk_channel_peer_cert(const bk_channel *ch)
{
	return ch ? ch->peer : NULL;
}

const uint8_t *bk_channel_handshake_hash(const bk_channel *ch)
{
	return ch ? ch->hash : NULL;
}

bk_stream *bk_channel_transport(bk_channel *ch)
{
	return ch ? ch->transport : NULL;
}

bool bk_channel_broken(const bk_channel *ch)
{
	return ch == NULL || ch->broken;
}

uint64_t bk_channel_frames_sent(const bk_channel *ch)
{
	return ch ? ch->frames_sent : 0;
}

int bk_channel_send(bk_channel *ch, const bk_proto_msg *m, bk_deadline d)
{
	size_t n = 0;
	int rc;
	if (ch == NULL || m == NULL || ch->send == NULL)
		return bk__error_set(BK_EINVALID, NULL, "channel: not established");
	if (ch->broken)
		return bk__error_set(BK_EDISCONNECTED, "not-connected",
		                     "the connection to the peer was lost earlier");
	uint8_t *msg = ch->sbuf + BK_FRAME_HEADER_LEN;
	rc = bk_proto_msg_encode(msg, BK_PROTO_MSG_MAX, &n, m);
	if (rc == 0)
		rc = bk_noise_cipher_encrypt(ch->send, NULL, 0, msg, n, msg);
	if (rc == 0)
		rc = send_frame(ch, n + BK_NOISE_TAG_LEN, d);
	if (rc == BK_ETIMEOUT)
		ch->broken = true; /* a partly written frame puts the stream out of step */
	return rc;
}

int bk_channel_recv(bk_channel *ch, bk_proto_msg *out, bk_deadline d)
{
	uint8_t *msg = NULL;
	size_t n = 0;
	int rc;
	memset(out, 0, sizeof(*out));
	if (ch == NULL || ch->recv == NULL)
		return bk__error_set(BK_EINVALID, NULL, "channel: not established");
	if (ch->broken)
		return bk__error_set(BK_EDISCONNECTED, "not-connected",
		                     "the connection to the peer was lost earlier");
	rc = recv_frame(ch, &msg, &n, d);
	if (rc)
		return rc;
	rc = bk_noise_cipher_decrypt(ch->recv, NULL, 0, msg, n, msg);
	if (rc) {
		ch->broken = true;
		return bk__error_set(BK_EDISCONNECTED, "frame-auth",
		                     "frame %llu failed authentication (corrupted or forged); "
		                     "connection dropped",
		                     (unsigned long long)ch->frames_recv);
	}
	return bk_proto_msg_decode(out, msg, n - BK_NOISE_TAG_LEN);
}

void bk_channel_refuse(bk_channel *ch, int code, const char *reason, const char *message)
{
	json_t *body = NULL;
	if (ch == NULL || ch->send == NULL || ch->broken)
		return;
	if (bk_proto_error_encode(&body, code, reason, message) == 0) {
		bk_proto_msg m = {.type = BK_MSG_ERROR, .id = 0, .json = body};
		(void)bk_channel_send(ch, &m, bk_deadline_in(REFUSE_MS));
	}
	json_decref(body);
}

void bk_channel_set_broken(bk_channel *ch)
{
	if (ch)
		ch->broken = true;
}

void bk_channel_linger(bk_channel *ch, int64_t ms)
{
	uint8_t scratch[4096];
	bk_deadline d = bk_deadline_in(ms);
	if (ch == NULL)
		return;
	(void)bk_stream_ctrl(ch->transport, BK_STREAM_CTRL_SHUTDOWN_WR, NULL);
	for (;;) {
		size_t n = 0;
		if (bk_stream_read(ch->transport, scratch, sizeof(scratch), &n, d) != 0 || n == 0)
			break;
	}
	ch->broken = true;
}

void bk_channel_free(bk_channel *ch)
{
	if (ch == NULL)
		return;
	bk_noise_cipher_free(ch->send);
	bk_noise_cipher_free(ch->recv);
	bk_cert_free(ch->peer);
	if (ch->own)
		bk_stream_free(ch->transport);
	if (ch->rbuf)
		sodium_memzero(ch->rbuf, RX_BUF);
	bk__free(ch->rbuf);
	if (ch->sbuf)
		sodium_memzero(ch->sbuf, FRAME_BUF);
	bk__free(ch->sbuf);
	sodium_memzero(ch->hash, sizeof(ch->hash));
	bk__free(ch);
}
