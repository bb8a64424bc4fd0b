/* A simulated USB unit that echoes every byte a host sends, for the USB
 * transport tests. It writes the environment a host process needs
 * (UMOCKDEV_DIR, LD_PRELOAD) to --env-file, then serves one host session
 * after another until SIGTERM or SIGINT. SIGUSR1 makes the unit drop off the
 * bus for --gone-ms milliseconds (as during a reboot), then come back.
 *
 *   usb_echo_server --serial S --env-file PATH [--bus N --dev N --port N]
 *                   [--gone-ms MS] */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "device/virtual/usbsim.h"
#include "libbackup/util/util.h"

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t gone_requested;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		gone_requested = 1;
	else
		stop_requested = 1;
}

static int write_env(const char *path, const bk_usbsim *sim)
{
	const char *dir, *preload;
	bk_buf b = BK_BUF_INIT;
	int rc = bk_usbsim_env(sim, &dir, &preload);
	if (rc == 0)
		rc = bk_buf_printf(&b, "UMOCKDEV_DIR=%s\nLD_PRELOAD=%s\n", dir, preload);
	if (rc == 0)
		rc = bk_file_write_atomic(path, b.data, b.len, 0644, 0);
	if (rc == 0)
		printf("%.*s", (int)b.len, (const char *)b.data);
	fflush(stdout);
	bk_buf_free(&b);
	return rc;
}

static unsigned arg_uint(const char *s)
{
	uint64_t v = 0;
	if (bk_parse_u64(s, &v) != 0 || v > 1000000) {
		fprintf(stderr, "usb_echo_server: bad number: %s\n", s);
		exit(2);
	}
	return (unsigned)v;
}

int main(int argc, char **argv)
{
	bk_usbsim_opts opts = BK_USBSIM_OPTS_INIT;
	const char *env_file = NULL;
	unsigned gone_ms = 1500;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--serial") == 0)
			opts.serial = argv[i + 1];
		else if (strcmp(argv[i], "--env-file") == 0)
			env_file = argv[i + 1];
		else if (strcmp(argv[i], "--bus") == 0)
			opts.busnum = arg_uint(argv[i + 1]);
		else if (strcmp(argv[i], "--dev") == 0)
			opts.devnum = arg_uint(argv[i + 1]);
		else if (strcmp(argv[i], "--port") == 0)
			opts.port = arg_uint(argv[i + 1]);
		else if (strcmp(argv[i], "--gone-ms") == 0)
			gone_ms = arg_uint(argv[i + 1]);
		else {
			fprintf(stderr, "usb_echo_server: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	if (env_file == NULL) {
		fprintf(stderr, "usage: usb_echo_server --serial S --env-file PATH\n");
		return 2;
	}

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	bk_usbsim *sim = NULL;
	int rc = bk_usbsim_new(&sim, &opts);
	if (rc == 0)
		rc = write_env(env_file, sim);
	if (rc) {
		fprintf(stderr, "usb_echo_server: %s\n", bk_error_last()->message);
		bk_usbsim_free(sim);
		return 1;
	}

	enum { BUF = 256 * 1024 };
	uint8_t *buf = malloc(BUF);
	bk_stream *session = NULL;
	int64_t back_at = -1;
	uint64_t echoed = 0;
	while (!stop_requested && buf) {
		if (gone_requested) {
			gone_requested = 0;
			fprintf(stderr, "usb_echo_server: unit goes quiet for %u ms\n", gone_ms);
			bk_usbsim_set_gone(sim, true);
			back_at = bk_now_ms() + gone_ms;
		}
		if (back_at >= 0 && bk_now_ms() >= back_at) {
			back_at = -1;
			if (bk_usbsim_set_gone(sim, false) != 0)
				fprintf(stderr, "usb_echo_server: %s\n", bk_error_last()->message);
			else
				fprintf(stderr, "usb_echo_server: unit is back\n");
		}
		if (session == NULL) {
			int fd = -1;
			rc = bk_usbsim_accept(sim, &fd, bk_deadline_in(50));
			if (rc == BK_ETIMEOUT)
				continue;
			if (rc == 0)
				rc = bk_stream_fd_new(&session, fd, 1);
			if (rc) {
				fprintf(stderr, "usb_echo_server: %s\n", bk_error_last()->message);
				break;
			}
			continue;
		}
		size_t n = 0;
		rc = bk_stream_read(session, buf, BUF, &n, bk_deadline_in(50));
		if (rc == BK_ETIMEOUT)
			continue;
		if (rc == 0 && n > 0) {
			rc = bk_stream_write(session, buf, n, bk_deadline_in(10000));
			echoed += n;
		}
		if (rc || n == 0) {
			if (rc)
				fprintf(stderr, "usb_echo_server: session: %s\n",
				        bk_error_last()->message);
			bk_stream_free(session);
			session = NULL;
		}
	}
	bk_stream_free(session);
	bk_usbsim_stats st;
	bk_usbsim_get_stats(sim, &st);
	fprintf(stderr, "usb_echo_server: %llu sessions, %llu bytes echoed (%llu out, %llu in)\n",
	        (unsigned long long)st.sessions, (unsigned long long)echoed,
	        (unsigned long long)st.bytes_out, (unsigned long long)st.bytes_in);
	bk_usbsim_free(sim);
	free(buf);
	return 0;
}
