/* Shared by the channel handshake fuzz targets and their corpus generator:
 * a fixed world (factory and service CAs, a unit and a terminal with fixed
 * keys and certificates, fixed ephemeral keys) so that a recorded session
 * replays exactly, and streams that feed an input and capture output.
 *
 * An input is the byte stream one side receives: frames (2-byte big-endian
 * length, then the bytes) of the peer's handshake messages, then transport
 * messages. */
#ifndef BK_TESTS_FUZZ_HANDSHAKE_COMMON_H
#define BK_TESTS_FUZZ_HANDSHAKE_COMMON_H

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include <libbackup/libbackup.h>

#include "crypto/cert.h"
#include "device/channel.h"
#include "libbackup/util/util.h"

#define FH_NOW    2000000000LL
#define FH_SERIAL "FUZZ-0001"

typedef struct fh_world {
	bk_minisign_seckey *factory, *service;
	bk_minisign_pubkey factory_pub, service_pub;
	bk_keyfile *unit_keys, *terminal_keys;
	bk_cert *unit_cert, *terminal_cert;
	uint8_t unit_eph[32], terminal_eph[32];
} fh_world;

/* A minisign secret key made from a fixed seed (the unencrypted file format). */
static inline bk_minisign_seckey *fh_ca(uint8_t seed_byte)
{
	uint8_t raw[2 + 2 + 2 + 32 + 8 + 8 + 8 + 64 + 32], seed[32], pk[32], sk[64];
	uint8_t *p = raw;
	char b64[sizeof(raw) * 2], text[sizeof(b64) + 64];
	bk_minisign_seckey *out = NULL;
	crypto_generichash_state h;
	memset(seed, seed_byte, sizeof(seed));
	crypto_sign_seed_keypair(pk, sk, seed);
	memset(raw, 0, sizeof(raw));
	memcpy(p, "Ed", 2), p += 2;
	p += 2; /* no KDF */
	memcpy(p, "B2", 2), p += 2;
	p += 32 + 8 + 8; /* salt, opslimit, memlimit */
	uint8_t *keyid = p;
	memset(keyid, seed_byte ^ 0x5a, 8);
	p += 8;
	memcpy(p, sk, 64), p += 64;
	crypto_generichash_init(&h, NULL, 0, 32);
	crypto_generichash_update(&h, (const uint8_t *)"Ed", 2);
	crypto_generichash_update(&h, keyid, 8);
	crypto_generichash_update(&h, sk, 64);
	crypto_generichash_final(&h, p, 32);
	sodium_bin2base64(b64, sizeof(b64), raw, sizeof(raw), sodium_base64_VARIANT_ORIGINAL);
	size_t n = (size_t)snprintf(text, sizeof(text), "untrusted comment: fuzz\n%s\n", b64);
	if (bk_minisign_seckey_parse(&out, text, n, NULL) != 0)
		abort();
	sodium_memzero(sk, sizeof(sk));
	sodium_memzero(raw, sizeof(raw));
	return out;
}

static inline bk_keyfile *fh_keys(uint8_t base)
{
	uint8_t n[32], e[32], a[32];
	bk_keyfile *k = NULL;
	memset(n, base, 32);
	memset(e, base + 1, 32);
	memset(a, base + 2, 32);
	if (bk_keyfile_from(&k, n, e, a) != 0)
		abort();
	return k;
}

static inline bk_cert *fh_cert(bk_cert_role role, const bk_keyfile *k, const bk_minisign_seckey *ca)
{
	bk_cert_params p;
	bk_cert *c = NULL;
	memset(&p, 0, sizeof(p));
	p.role = role;
	if (role == BK_CERT_ROLE_UNIT) {
		p.serial = FH_SERIAL;
		p.model = "ERS-1000";
		p.hw_revision = "1";
		p.age_key = bk_keyfile_age_public(k);
	} else {
		p.terminal_id = "fuzz-terminal";
	}
	p.noise_key = bk_keyfile_noise_public(k);
	p.ed25519_key = bk_keyfile_ed25519_public(k);
	p.not_before = FH_NOW - 1000;
	p.not_after = FH_NOW + 1000;
	if (bk_cert_issue(&c, &p, ca) != 0)
		abort();
	return c;
}

/* The world, made once per process. */
static inline const fh_world *fh_world_get(void)
{
	static fh_world w;
	static int done;
	if (done)
		return &w;
	if (bk_init() != 0)
		abort();
	w.factory = fh_ca(0x31);
	w.service = fh_ca(0x32);
	bk_minisign_seckey_pubkey(w.factory, &w.factory_pub);
	bk_minisign_seckey_pubkey(w.service, &w.service_pub);
	w.unit_keys = fh_keys(0x41);
	w.terminal_keys = fh_keys(0x51);
	w.unit_cert = fh_cert(BK_CERT_ROLE_UNIT, w.unit_keys, w.factory);
	w.terminal_cert = fh_cert(BK_CERT_ROLE_TERMINAL, w.terminal_keys, w.service);
	memset(w.unit_eph, 0x61, 32);
	memset(w.terminal_eph, 0x71, 32);
	done = 1;
	return &w;
}

static inline void fh_unit_cfg(bk_channel_cfg *cfg, const fh_world *w)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->noise_secret = bk_keyfile_noise_secret(w->unit_keys);
	cfg->cert = w->unit_cert;
	cfg->cas = &w->service_pub;
	cfg->ncas = 1;
	cfg->now = FH_NOW;
	cfg->test_ephemeral = w->unit_eph;
}

static inline void fh_terminal_cfg(bk_channel_cfg *cfg, const fh_world *w)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->noise_secret = bk_keyfile_noise_secret(w->terminal_keys);
	cfg->cert = w->terminal_cert;
	cfg->cas = &w->factory_pub;
	cfg->ncas = 1;
	cfg->expect_serial = FH_SERIAL;
	cfg->now = FH_NOW;
	cfg->test_ephemeral = w->terminal_eph;
}

/* A stream that reads a fixed input (then reports its end) and appends what
 * is written to `out` (NULL: discarded). */
typedef struct fh_stream {
	bk_stream base;
	bk_cur in;
	bk_buf *out;
} fh_stream;

static inline int fh_read(bk_stream *s, void *buf, size_t len, size_t *out_n, bk_deadline d)
{
	fh_stream *f = (fh_stream *)s;
	size_t n = bk_cur_left(&f->in) < len ? bk_cur_left(&f->in) : len;
	BK_UNUSED(d);
	if (n)
		bk_cur_copy(&f->in, buf, n);
	*out_n = n;
	return 0;
}

static inline int fh_write(bk_stream *s, const void *buf, size_t len, bk_deadline d)
{
	fh_stream *f = (fh_stream *)s;
	BK_UNUSED(d);
	return f->out ? bk_buf_put(f->out, buf, len) : 0;
}

static inline void fh_release(bk_stream *s)
{
	bk__free(s);
}

static const bk_stream_ops fh_ops = {
    .version = BK_STREAM_OPS_VERSION,
    .name = "fuzz",
    .read = fh_read,
    .write = fh_write,
    .release = fh_release,
};

static inline bk_stream *fh_stream_new(const uint8_t *data, size_t len, bk_buf *out)
{
	fh_stream *f = bk__calloc(1, sizeof(*f));
	if (f == NULL)
		abort();
	f->base.ops = &fh_ops;
	bk_cur_init(&f->in, data, len);
	f->out = out;
	return &f->base;
}

/* Receives messages until the input ends; each decoded or refused one is
 * released. Only the documented codes may come out. */
static inline void fh_drain(bk_channel *ch)
{
	for (int i = 0; i < 1000; i++) {
		bk_proto_msg m;
		int rc = bk_channel_recv(ch, &m, BK_DEADLINE_NONE);
		bk_proto_msg_clear(&m);
		if (rc == BK_EFORMAT)
			continue;
		if (rc != BK_EDISCONNECTED && rc != 0)
			abort();
		if (rc)
			break;
	}
}

#endif
