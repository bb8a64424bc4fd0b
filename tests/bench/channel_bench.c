/* Channel throughput: bytes through the Noise device channel over TCP
 * loopback, against libsodium's single-core ChaCha20-Poly1305 and a raw TCP
 * loopback copy of the same bytes, measured in the same run.
 *
 * usage: bk-bench-channel [MIB]   (default 1024) */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <sodium.h>

#include <libbackup/libbackup.h>

#include "crypto/cert.h"
#include "crypto/minisign.h"
#include "device/channel.h"
#include "device/device_internal.h"
#include "libbackup/util/util.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time used by the whole process (all threads), in seconds. */
static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void die(const char *what)
{
	fprintf(stderr, "bk-bench-channel: %s: %s\n", what, bk_error_last()->message);
	exit(1);
}

/* --- the lab: two CAs, a unit and a terminal ----------------------------- */

typedef struct party {
	bk_keyfile *keys;
	bk_cert *cert;
} party;

static bk_minisign_seckey *factory_sk, *service_sk;
static bk_minisign_pubkey factory_pk, service_pk;
static party unit, terminal;

static void make_party(party *p, bk_cert_role role)
{
	if (bk_keyfile_generate(&p->keys, role == BK_CERT_ROLE_UNIT) != 0)
		die("keys");
	bk_cert_params c;
	memset(&c, 0, sizeof(c));
	c.role = role;
	c.noise_key = bk_keyfile_noise_public(p->keys);
	c.ed25519_key = bk_keyfile_ed25519_public(p->keys);
	c.not_before = (int64_t)time(NULL) - 60;
	c.not_after = (int64_t)time(NULL) + 3600;
	if (role == BK_CERT_ROLE_UNIT) {
		c.serial = "BENCH-1";
		c.model = "ERS-1000";
		c.hw_revision = "1";
		c.age_key = bk_keyfile_age_public(p->keys);
	} else {
		c.terminal_id = "bench-terminal";
	}
	if (bk_cert_issue(&p->cert, &c, role == BK_CERT_ROLE_UNIT ? factory_sk : service_sk) != 0)
		die("certificate");
}

/* --- raw TCP and channel transfers --------------------------------------- */

typedef struct job {
	bk_listener *listener;
	uint64_t total;
	int use_channel;
	uint64_t received;
	int rc;
} job;

static void *receiver(void *arg)
{
	job *j = arg;
	bk_stream *s = NULL;
	bk_channel *ch = NULL;
	j->rc = bk_listener_accept(j->listener, &s, bk_deadline_in(10000));
	if (j->rc)
		return NULL;
	if (!j->use_channel) {
		uint8_t *buf = malloc(1 << 20);
		size_t n;
		while (j->received < j->total &&
		       (j->rc = bk_stream_read(s, buf, 1 << 20, &n, BK_DEADLINE_NONE)) == 0 && n)
			j->received += n;
		free(buf);
		bk_stream_free(s);
		return NULL;
	}
	bk_channel_cfg cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.noise_secret = bk_keyfile_noise_secret(unit.keys);
	cfg.cert = unit.cert;
	cfg.cas = &service_pk;
	cfg.ncas = 1;
	j->rc = bk_channel_accept(&ch, s, 1, &cfg, bk_deadline_in(10000));
	if (j->rc)
		return NULL;
	while (j->received < j->total) {
		bk_proto_msg m;
		memset(&m, 0, sizeof(m));
		j->rc = bk_channel_recv(ch, &m, BK_DEADLINE_NONE);
		if (j->rc)
			break;
		j->received += m.data_len;
		bk_proto_msg_clear(&m);
	}
	bk_channel_free(ch);
	return NULL;
}

/* Bytes through TCP loopback, raw or through the channel; *out_cores gets
 * the CPU time used during the transfer over its wall time (how many of the
 * machine's cores the two ends actually got). */
static double transfer(uint64_t total, int use_channel, double *out_cores)
{
	bk_device_uri uri;
	job j;
	pthread_t t;
	bk_stream *s = NULL;
	bk_channel *ch = NULL;
	memset(&j, 0, sizeof(j));
	if (bk_device_uri_parse(&uri, "tcp:127.0.0.1:0") != 0 || bk_listener_new(&j.listener, &uri))
		die("listen");
	j.total = total;
	j.use_channel = use_channel;
	pthread_create(&t, NULL, receiver, &j);
	if (bk_transport_connect(&s, bk_listener_uri(j.listener), bk_deadline_in(10000)) != 0)
		die("connect");
	size_t chunk = use_channel ? BK_PROTO_DATA_MAX : (1u << 20);
	uint8_t *buf = malloc(chunk);
	randombytes_buf(buf, chunk);
	double t0 = now_s(), c0 = cpu_s();
	if (use_channel) {
		bk_channel_cfg cfg;
		memset(&cfg, 0, sizeof(cfg));
		cfg.noise_secret = bk_keyfile_noise_secret(terminal.keys);
		cfg.cert = terminal.cert;
		cfg.cas = &factory_pk;
		cfg.ncas = 1;
		if (bk_channel_connect(&ch, s, 1, &cfg, bk_deadline_in(10000)) != 0)
			die("handshake");
		t0 = now_s();
		c0 = cpu_s();
		for (uint64_t off = 0; off < total; off += chunk) {
			bk_proto_msg m;
			memset(&m, 0, sizeof(m));
			m.type = BK_MSG_DATA;
			m.id = 1;
			m.offset = off;
			m.data = buf;
			m.data_len = total - off < chunk ? (size_t)(total - off) : chunk;
			if (bk_channel_send(ch, &m, BK_DEADLINE_NONE) != 0)
				die("send");
		}
	} else {
		for (uint64_t off = 0; off < total; off += chunk) {
			size_t n = total - off < chunk ? (size_t)(total - off) : chunk;
			if (bk_stream_write(s, buf, n, BK_DEADLINE_NONE) != 0)
				die("write");
		}
	}
	pthread_join(t, NULL);
	double dt = now_s() - t0;
	*out_cores = (cpu_s() - c0) / dt;
	if (j.rc || j.received != total) {
		fprintf(stderr, "bk-bench-channel: received %llu of %llu bytes\n",
			(unsigned long long)j.received, (unsigned long long)total);
		exit(1);
	}
	bk_channel_free(ch);
	if (!use_channel)
		bk_stream_free(s);
	bk_listener_free(j.listener);
	free(buf);
	return (double)total / dt / 1e6;
}

static double aead(uint64_t total, double *out_cores)
{
	enum { CHUNK = 65536 };
	uint8_t key[32], nonce[12] = {0};
	uint8_t *in = malloc(CHUNK), *out = malloc(CHUNK + 16);
	randombytes_buf(key, sizeof(key));
	randombytes_buf(in, CHUNK);
	double t0 = now_s(), c0 = cpu_s();
	for (uint64_t off = 0; off < total; off += CHUNK) {
		unsigned long long clen;
		nonce[0]++;
		crypto_aead_chacha20poly1305_ietf_encrypt(out, &clen, in, CHUNK, NULL, 0, NULL, nonce,
							  key);
	}
	double dt = now_s() - t0;
	*out_cores = (cpu_s() - c0) / dt;
	free(in);
	free(out);
	return (double)total / dt / 1e6;
}

int main(int argc, char **argv)
{
	uint64_t mib = argc > 1 ? strtoull(argv[1], NULL, 10) : 1024;
	uint64_t total = mib << 20;
	if (bk_init() != 0 || bk_minisign_keygen(&factory_sk) || bk_minisign_keygen(&service_sk))
		die("init");
	bk_minisign_seckey_pubkey(factory_sk, &factory_pk);
	bk_minisign_seckey_pubkey(service_sk, &service_pk);
	make_party(&unit, BK_CERT_ROLE_UNIT);
	make_party(&terminal, BK_CERT_ROLE_TERMINAL);

	/* BK_BENCH_ONLY=channel runs the channel transfer alone (for profiling). */
	const char *only = getenv("BK_BENCH_ONLY");
	int channel_only = only && strcmp(only, "channel") == 0;
	double a = 1, raw = 1, ch, a_cores = 0, raw_cores = 0, ch_cores;
	if (!channel_only) {
		a = aead(total, &a_cores);
		raw = transfer(total, 0, &raw_cores);
	}
	ch = transfer(total, 1, &ch_cores);
	/* "cores": CPU time over wall time. The channel encrypts on one end and
	 * decrypts on the other, so it needs two cores to run at full speed; on
	 * a busy machine it gets fewer, and the ratio falls with them. */
	printf("%-44s %10s %8s %6s\n", "what", "MB/s", "ratio", "cores");
	printf("%-44s %10.1f %8s %6.2f\n", "libsodium ChaCha20-Poly1305, one core", a, "", a_cores);
	printf("%-44s %10.1f %8s %6.2f\n", "raw TCP loopback copy", raw, "", raw_cores);
	printf("%-44s %10.1f %8.2f %6.2f\n", "Noise channel over TCP loopback (vs AEAD)", ch, ch / a,
	       ch_cores);
	printf("%-44s %10s %8.2f\n", "Noise channel over TCP loopback (vs raw TCP)", "", ch / raw);
	printf("target: channel >= 0.60 x AEAD: %s\n", ch / a >= 0.6 ? "met" : "NOT met");
	bk_keyfile_free(unit.keys);
	bk_keyfile_free(terminal.keys);
	bk_cert_free(unit.cert);
	bk_cert_free(terminal.cert);
	bk_minisign_seckey_free(factory_sk);
	bk_minisign_seckey_free(service_sk);
	bk_shutdown();
	return 0;
}
