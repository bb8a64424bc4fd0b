/* bk-flash-bench WORKDIR SIZE_MIB: flashes a SIZE_MIB bundle into a virtual
 * unit served on TCP loopback, and in the same run sends the same number of
 * bytes over the same kind of session to a unit that only acknowledges them
 * (the raw channel). Prints both rates and their ratio (tests/bench/flash.sh). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include <libbackup/device.h>
#include <libbackup/firmware.h>
#include <libbackup/libbackup.h>

#include "device/virtual/fw.h"
#include "device/virtual/pki.h"
#include "device/virtual/server.h"
#include "device/virtual/unit.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int die(const char *what)
{
	fprintf(stderr, "bk-flash-bench: %s: %s\n", what, bk_error_last()->message);
	return 1;
}

static int sink(bk_vunit *u, const bk_proto_msg *req, bk_vunit_reply *reply, void *payload)
{
	(void)u;
	(void)req;
	(void)reply;
	(void)payload;
	return 0;
}

static uint8_t pattern[1 << 20];

static int source(void *payload, uint64_t offset, void *buf, size_t len)
{
	(void)payload;
	size_t at = (size_t)(offset % sizeof(pattern));
	for (size_t done = 0; done < len;) {
		size_t n = len - done < sizeof(pattern) - at ? len - done : sizeof(pattern) - at;
		memcpy((uint8_t *)buf + done, pattern + at, n);
		done += n;
		at = 0;
	}
	return 0;
}

/* When the write step begins (the terminal checked the bundle, FW_BEGIN
 * answered) and ends, and when the reboot begins (the unit has checked the
 * slot and armed it: FW_FINISH and FW_ACTIVATE answered). */
typedef struct marks {
	double start, write_start, write_end, verified;
} marks;

static int on_progress(const bk_progress *p, void *payload)
{
	marks *m = payload;
	if (m->write_start == 0 && strcmp(p->step, "write") == 0)
		m->write_start = now_s();
	if (m->write_end == 0 && strcmp(p->step, "write") != 0)
		m->write_end = now_s();
	if (m->verified == 0 && strcmp(p->step, "reboot") == 0)
		m->verified = now_s();
	return 0;
}

static int serve(const char *unit, bk_vunit **u, bk_vserver **srv, bk_device **dev, const char *pki)
{
	char key[4096], cert[4096], ca[4096];
	const char *cas[1] = {ca};
	snprintf(key, sizeof(key), "%s/%s", pki, BK_PKI_TERMINAL_KEY);
	snprintf(cert, sizeof(cert), "%s/%s", pki, BK_PKI_TERMINAL_CERT);
	snprintf(ca, sizeof(ca), "%s/%s.pub", pki, BK_PKI_FACTORY_CA);
	bk_device_opts o = BK_DEVICE_OPTS_INIT;
	o.terminal_key = key;
	o.terminal_cert = cert;
	o.factory_ca = cas;
	o.factory_ca_count = 1;
	o.timeout_ms = 60000;
	if (bk_vunit_open(u, unit) || bk_vunit_firmware_enable(*u) ||
	    bk_vserver_new(srv, *u, "tcp:127.0.0.1:0", false) || bk_vserver_start(*srv))
		return -1;
	bk_vfw_set_boot_time(bk_vunit_fw(*u), 100);
	return bk_device_open(dev, bk_vserver_uri(*srv), &o);
}

static void down(bk_vunit *u, bk_vserver *srv, bk_device *dev)
{
	bk_device_free(dev);
	bk_vserver_free(srv);
	bk_vunit_free(u);
}

int main(int argc, char **argv)
{
	char pki[4096], unit[4096], img[4096], bundle[4096], fwkey[4096];
	bk_vunit *u = NULL;
	bk_vserver *srv = NULL;
	bk_device *dev = NULL;
	bk_fw_bundle *b = NULL;
	uint64_t mib = 0, done = 0;
	if (argc != 3 || bk_init() != 0 || (mib = strtoull(argv[2], NULL, 10)) == 0) {
		fprintf(stderr, "usage: bk-flash-bench WORKDIR SIZE_MIB\n");
		return 2;
	}
	uint64_t total = mib << 20;
	snprintf(pki, sizeof(pki), "%s/pki", argv[1]);
	snprintf(unit, sizeof(unit), "%s/unit", argv[1]);
	snprintf(img, sizeof(img), "%s/rootfs.img", argv[1]);
	snprintf(bundle, sizeof(bundle), "%s/fw.aifw", argv[1]);
	snprintf(fwkey, sizeof(fwkey), "%s/%s", pki, BK_PKI_FIRMWARE_KEY);
	uint32_t seed = 1;
	for (size_t i = 0; i < sizeof(pattern); i++) {
		seed = seed * 1103515245u + 12345u;
		pattern[i] = (uint8_t)(seed >> 16);
	}
	FILE *f = fopen(img, "wb");
	for (uint64_t i = 0; f && i < mib; i++)
		fwrite(pattern, 1, sizeof(pattern), f);
	if (f == NULL || fclose(f) != 0) {
		fprintf(stderr, "bk-flash-bench: cannot write %s\n", img);
		return 1;
	}
	bk_vunit_create_opts co = BK_VUNIT_CREATE_OPTS_INIT;
	co.pki_dir = pki;
	co.serial = "BENCH-1";
	co.memory_size = 64 * 1024;
	if (bk_vdev_pki_init(pki) || bk_vunit_create(unit, &co))
		return die("lab");
	const char *models[] = {"ERS-1000", NULL};
	bk_fw_image im = {"rootfs.img", img, "rootfs"};
	bk_fw_pack_opts po = BK_FW_PACK_OPTS_INIT;
	po.models = models;
	po.hw_rev_min = "1";
	po.hw_rev_max = "9";
	po.fw_version = "4.0.0";
	po.security_counter = 2;
	po.schema_min = 1;
	po.schema_max = 3;
	po.images = &im;
	po.image_count = 1;
	po.secret_key = fwkey;
	if (bk_fw_bundle_pack(bundle, &po))
		return die("pack");

	/* Raw: the same bytes as FW_WRITE requests a unit only acknowledges. */
	if (serve(unit, &u, &srv, &dev, pki))
		return die("serve");
	bk_vunit_set_handler(u, BK_MSG_FW_WRITE, sink, NULL);
	bk_device_xfer_opts xo = BK_DEVICE_XFER_OPTS_INIT;
	double t0 = now_s();
	if (bk_device_write_range(dev, BK_DEVICE_FW_WRITE, 0, total, source, NULL, &xo, &done))
		return die("raw transfer");
	double raw = now_s() - t0;
	down(u, srv, dev);

	/* The ceiling the design sets: the terminal hashes every payload byte
	 * (BLAKE2b-512) before the first write, and the unit hashes every byte
	 * as it arrives, so the verified flash takes at least two single-core
	 * BLAKE2b passes in series. Measured here on a buffer in cache, which
	 * is the most favourable case. */
	uint64_t hbytes = total < ((uint64_t)256 << 20) ? total : ((uint64_t)256 << 20);
	crypto_generichash_state hs;
	uint8_t digest[64];
	crypto_generichash_init(&hs, NULL, 0, sizeof(digest));
	crypto_generichash_update(&hs, pattern, sizeof(pattern)); /* warm up */
	double h0 = now_s();
	for (uint64_t off = 0; off < hbytes; off += sizeof(pattern))
		crypto_generichash_update(&hs, pattern, sizeof(pattern));
	crypto_generichash_final(&hs, digest, sizeof(digest));
	double hash_rate = (double)hbytes / 1e6 / (now_s() - h0);

	/* The flash. */
	if (serve(unit, &u, &srv, &dev, pki) || bk_fw_bundle_open(&b, bundle))
		return die("serve");
	char pub[4200];
	snprintf(pub, sizeof(pub), "%s.pub", fwkey);
	marks m = {now_s(), 0, 0, 0};
	bk_fw_flash_opts fo = BK_FW_FLASH_OPTS_INIT;
	fo.trusted_keys = pub;
	fo.progress = on_progress;
	fo.progress_payload = &m;
	if (bk_fw_flash(dev, b, &fo))
		return die("flash");
	double flash = now_s() - m.start;
	double write = m.write_end - m.start;
	double verified = m.verified - m.start;
	bk_fw_bundle_free(b);
	down(u, srv, dev);
	double mb = (double)total / 1e6;
	printf("bytes:                 %llu (%llu MiB)\n", (unsigned long long)total,
	       (unsigned long long)mib);
	printf("raw channel:           %.1f MB/s (%.2f s)\n", mb / raw, raw);
	printf("flash, preflight+write: %.1f MB/s (%.2f s: preflight %.2f s, write %.2f s)\n",
	       mb / write, write, m.write_start - m.start, m.write_end - m.write_start);
	printf("flash, verified:       %.1f MB/s (%.2f s, through the unit's FW_FINISH check and "
	       "FW_ACTIVATE)\n",
	       mb / verified, verified);
	printf(
	    "flash, end to end:     %.1f MB/s (%.2f s, incl. reboot and the unit's boot check)\n",
	    mb / flash, flash);
	printf("BLAKE2b-512, one core: %.1f MB/s\n", hash_rate);
	printf("ceiling (2 passes):    %.1f MB/s (two BLAKE2b-512 passes in series, no transfer "
	       "cost)\n",
	       hash_rate / 2);
	printf("ratio write/raw:       %.2f\n", raw / write);
	printf("ratio verified/raw:    %.2f\n", raw / verified);
	printf("ratio end-to-end/raw:  %.2f\n", raw / flash);
	printf("ratio ceiling/raw:     %.2f (the most any verified flash reaches here)\n",
	       hash_rate / 2 / (mb / raw));
	return 0;
}
