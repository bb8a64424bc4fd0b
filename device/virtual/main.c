/* aibo-vdev: the virtual robot (aibo-vdev(1)).
 *
 *   aibo-vdev pki init DIR
 *   aibo-vdev create DIR --pki PKIDIR --serial S [options]
 *   aibo-vdev serve DIR (--listen URI | --usb) [--fault SPEC]...
 *   aibo-vdev digest DIR
 *   aibo-vdev cert DIR */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libbackup/libbackup.h>

#include "device/virtual/memory_ops.h"
#include "device/virtual/fw.h"
#include "device/virtual/identity_ops.h"
#include "device/virtual/pki.h"
#include "device/virtual/server.h"
#include "device/virtual/unit.h"

#define EXIT_USAGE      2
#define EXIT_POWER_LOSS 3

static const char usage_text[] =
    "usage: aibo-vdev pki init DIR\n"
    "       aibo-vdev create DIR --pki PKIDIR --serial SERIAL [--model M] [--hw-rev R]\n"
    "                 [--fw-version V] [--fw-security-counter N] [--schema N]\n"
    "                 [--battery PERCENT] [--memory SIZE] [--seed N] [--fresh]\n"
    "       aibo-vdev serve DIR [--listen tcp:HOST[:PORT]|unix:PATH] [--usb]\n"
    "                 [--fault SPEC]... [--boot-time MS] [-v]\n"
    "       aibo-vdev digest DIR\n"
    "       aibo-vdev cert DIR\n";

static int fail(void)
{
	const bk_error *e = bk_error_last();
	fprintf(stderr, "aibo-vdev: %s\n", e->message ? e->message : bk_strerror(e->code));
	return e->code == BK_EUSER ? EXIT_USAGE : 1;
}

static int usage(const char *why)
{
	if (why)
		fprintf(stderr, "aibo-vdev: %s\n", why);
	fputs(usage_text, stderr);
	return EXIT_USAGE;
}

static int parse_u64(const char *opt, const char *s, uint64_t *out, bool size)
{
	if ((size ? bk_parse_size(s, out) : bk_parse_u64(s, out)) != 0) {
		fprintf(stderr, "aibo-vdev: %s: '%s' is not a %s\n", opt, s,
		        size ? "size (like 1M)" : "number");
		return -1;
	}
	return 0;
}

static int cmd_pki(int argc, char **argv)
{
	if (argc != 3 || strcmp(argv[1], "init") != 0)
		return usage("pki init takes one folder");
	if (bk_vdev_pki_init(argv[2]) != 0)
		return fail();
	printf("lab PKI created in %s\n", argv[2]);
	return 0;
}

static int cmd_create(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"pki", required_argument, NULL, 'p'},
	    {"serial", required_argument, NULL, 's'},
	    {"model", required_argument, NULL, 'm'},
	    {"hw-rev", required_argument, NULL, 'h'},
	    {"fw-version", required_argument, NULL, 'f'},
	    {"fw-security-counter", required_argument, NULL, 'c'},
	    {"schema", required_argument, NULL, 'S'},
	    {"battery", required_argument, NULL, 'b'},
	    {"memory", required_argument, NULL, 'M'},
	    {"seed", required_argument, NULL, 'e'},
	    {"fresh", no_argument, NULL, 'F'},
	    {0},
	};
	bk_vunit_create_opts o = BK_VUNIT_CREATE_OPTS_INIT;
	uint64_t v;
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'p':
			o.pki_dir = optarg;
			break;
		case 's':
			o.serial = optarg;
			break;
		case 'm':
			o.model = optarg;
			break;
		case 'h':
			o.hw_revision = optarg;
			break;
		case 'f':
			o.fw_version = optarg;
			break;
		case 'c':
			if (parse_u64("--fw-security-counter", optarg, &o.fw_security_counter,
			              false))
				return EXIT_USAGE;
			break;
		case 'S':
			if (parse_u64("--schema", optarg, &o.schema, false))
				return EXIT_USAGE;
			break;
		case 'b':
			if (parse_u64("--battery", optarg, &v, false) || v > 100)
				return usage("--battery takes 0-100");
			o.battery = (int)v;
			break;
		case 'M':
			if (parse_u64("--memory", optarg, &o.memory_size, true))
				return EXIT_USAGE;
			break;
		case 'e':
			if (parse_u64("--seed", optarg, &o.seed, false))
				return EXIT_USAGE;
			break;
		case 'F':
			o.fresh = true;
			break;
		default:
			return usage(NULL);
		}
	}
	if (optind + 1 != argc)
		return usage("create takes one folder");
	if (o.pki_dir == NULL || o.serial == NULL)
		return usage("create needs --pki and --serial");
	if (bk_vunit_create(argv[optind], &o) != 0 ||
	    bk_vmemops_provision(argv[optind], o.pki_dir) != 0)
		return fail();
	printf("unit %s created in %s\n", o.serial, argv[optind]);
	return 0;
}

static bk_vserver *g_server;

static void on_signal(int sig)
{
	BK_UNUSED(sig);
	bk_vserver_request_stop(g_server);
}

static void log_stderr(int level, const char *domain, const char *msg, void *payload)
{
	BK_UNUSED(level);
	BK_UNUSED(payload);
	fprintf(stderr, "aibo-vdev: %s: %s\n", domain, msg);
}

static int cmd_serve(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"listen", required_argument, NULL, 'l'},
	    {"usb", no_argument, NULL, 'u'},
	    {"fault", required_argument, NULL, 'f'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"boot-time", required_argument, NULL, 'B'},
	    {0},
	};
	const char *listen = NULL;
	const char *faults[64];
	size_t nfaults = 0;
	bool usb = false;
	int c, rc, status = 0;
	bk_vunit *u = NULL;
	bk_vmemops *memops = NULL;
	uint64_t boot_time = BK_VFW_BOOT_TIME_MS;
	while ((c = getopt_long(argc, argv, "v", longopts, NULL)) != -1) {
		switch (c) {
		case 'l':
			listen = optarg;
			break;
		case 'u':
			usb = true;
			break;
		case 'f':
			if (nfaults == 64)
				return usage("too many --fault options");
			faults[nfaults++] = optarg;
			break;
		case 'v':
			bk_log_set_handler(log_stderr, BK_LOG_INFO, NULL);
			break;
		case 'B':
			if (parse_u64("--boot-time", optarg, &boot_time, false) ||
			    boot_time > 3600000)
				return usage("--boot-time takes milliseconds (at most an hour)");
			break;
		default:
			return usage(NULL);
		}
	}
	if (optind + 1 != argc)
		return usage("serve takes one unit folder");
	if (listen == NULL && !usb)
		return usage("serve needs --listen URI or --usb");
	rc = bk_vunit_open(&u, argv[optind]);
	if (rc == 0)
		rc = bk_vmemops_install(&memops, u);
	if (rc == 0)
		rc = bk_videntity_install(u);
	if (rc == 0)
		rc = bk_vunit_firmware_enable(u);
	if (rc == 0)
		bk_vfw_set_boot_time(bk_vunit_fw(u), (int64_t)boot_time);
	for (size_t i = 0; rc == 0 && i < nfaults; i++)
		rc = bk_vunit_fault_add(u, faults[i]);
	if (rc == 0)
		rc = bk_vserver_new(&g_server, u, listen, usb);
	if (rc) {
		status = fail();
		goto done;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	printf("listening on %s\n", bk_vserver_uri(g_server));
	if (usb) {
		const char *dir = NULL, *preload = NULL;
		if (bk_vserver_usb_env(g_server, &dir, &preload) == 0)
			printf("UMOCKDEV_DIR=%s\nLD_PRELOAD=%s\n", dir, preload);
	}
	fflush(stdout);
	rc = bk_vserver_run(g_server);
	if (rc == BK_EDISCONNECTED && strcmp(bk_error_last()->reason, "power-loss") == 0) {
		fprintf(stderr, "aibo-vdev: %s\n", bk_error_last()->message);
		status = EXIT_POWER_LOSS;
	} else if (rc) {
		status = fail();
	}
done:
	bk_vserver_free(g_server);
	g_server = NULL;
	bk_vunit_free(u);
	bk_vmemops_free(memops);
	return status;
}

static int print_json(json_t *o)
{
	char *s = json_dumps(o, JSON_INDENT(2) | JSON_ENSURE_ASCII);
	if (s == NULL)
		return 1;
	printf("%s\n", s);
	free(s);
	return 0;
}

static int cmd_digest(int argc, char **argv)
{
	json_t *o = NULL;
	if (argc != 2)
		return usage("digest takes one unit folder");
	if (bk_vunit_digest_json(argv[1], &o) != 0)
		return fail();
	int st = print_json(o);
	json_decref(o);
	return st;
}

static int cmd_cert(int argc, char **argv)
{
	bk_cert *cert = NULL;
	char *path, *text = NULL;
	size_t len = 0;
	int rc;
	if (argc != 2)
		return usage("cert takes one unit folder");
	path = bk__asprintf("%s/%s", argv[1], BK_VUNIT_CERT);
	rc = path ? bk_cert_read(&cert, path) : BK_ENOMEM;
	if (rc == 0)
		rc = bk_cert_armor(&text, &len, cert);
	if (rc == 0)
		fwrite(text, 1, len, stdout);
	bk__free(text);
	bk_cert_free(cert);
	bk__free(path);
	return rc ? fail() : 0;
}

int main(int argc, char **argv)
{
	int status;
	if (bk_init() != 0) {
		fprintf(stderr, "aibo-vdev: cannot initialise the library\n");
		return 1;
	}
	if (argc < 2)
		return usage(NULL);
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
		fputs(usage_text, stdout);
		return 0;
	}
	argc--;
	argv++;
	if (strcmp(argv[0], "pki") == 0)
		status = cmd_pki(argc, argv);
	else if (strcmp(argv[0], "create") == 0)
		status = cmd_create(argc, argv);
	else if (strcmp(argv[0], "serve") == 0)
		status = cmd_serve(argc, argv);
	else if (strcmp(argv[0], "digest") == 0)
		status = cmd_digest(argc, argv);
	else if (strcmp(argv[0], "cert") == 0)
		status = cmd_cert(argc, argv);
	else
		status = usage("unknown command");
	return status;
}
