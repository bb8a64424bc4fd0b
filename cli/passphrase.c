/* Passphrases: from --passphrase-file, AIBO_RESTORE_PASSPHRASE, or a prompt
 * on the terminal; never from an argument. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"

/* Reads one line from the terminal with echo off. */
static int prompt_tty(char *buf, size_t cap, size_t *out_len, const char *prompt)
{
	int fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct termios old, quiet;
	int have_tc = tcgetattr(fd, &old) == 0;
	if (have_tc) {
		quiet = old;
		quiet.c_lflag &= (tcflag_t) ~(ECHO | ECHONL);
		quiet.c_lflag |= ICANON;
		tcsetattr(fd, TCSAFLUSH, &quiet);
	}
	if (write(fd, prompt, strlen(prompt)) < 0 || write(fd, ": ", 2) < 0) {
		/* the prompt is a courtesy; reading still works */
	}
	size_t n = 0;
	int rc = 0;
	for (;;) {
		char c;
		ssize_t r = read(fd, &c, 1);
		if (r < 0 && errno == EINTR) {
			if (cli_cancelled()) {
				rc = -2;
				break;
			}
			continue;
		}
		if (r <= 0 || c == '\n' || c == '\r')
			break;
		if (n + 1 >= cap) {
			rc = -3;
			break;
		}
		buf[n++] = c;
	}
	if (have_tc)
		tcsetattr(fd, TCSAFLUSH, &old);
	if (write(fd, "\n", 1) < 0) {
		/* ignore */
	}
	close(fd);
	*out_len = n;
	return rc;
}

int cli_passphrase(cli_ctx *ctx, char *buf, size_t cap, size_t *out_len, const char *prompt,
		   bool confirm)
{
	const char *file = cli_value(ctx, "passphrase-file");
	const char *env = getenv("AIBO_RESTORE_PASSPHRASE");
	*out_len = 0;
	if (file) {
		int fd = open(file, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return cli_error(ctx, errno == ENOENT ? BK_ENOTFOUND : BK_EIO, "passphrase-file",
					 "%s: %s", file, strerror(errno));
		ssize_t n = read(fd, buf, cap - 1);
		close(fd);
		if (n < 0)
			return cli_error(ctx, BK_EIO, "passphrase-file", "%s: %s", file,
					 strerror(errno));
		size_t len = (size_t)n;
		while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
			len--;
		if (len == 0)
			return cli_error(ctx, BK_EUSER, "empty-passphrase", "%s: empty passphrase",
					 file);
		*out_len = len;
		return 0;
	}
	if (env && env[0]) {
		size_t len = strlen(env);
		if (len >= cap)
			return cli_error(ctx, BK_EUSER, "passphrase-too-long",
					 "AIBO_RESTORE_PASSPHRASE is too long");
		memcpy(buf, env, len);
		*out_len = len;
		return 0;
	}
	if (!isatty(STDIN_FILENO) && !isatty(STDERR_FILENO))
		return cli_error(ctx, BK_EUSER, "no-passphrase",
				 "a passphrase is needed: use --passphrase-file FILE or "
				 "AIBO_RESTORE_PASSPHRASE (no terminal to prompt on)");
	size_t n = 0;
	int rc = prompt_tty(buf, cap, &n, prompt);
	if (rc == -1)
		return cli_error(ctx, BK_EUSER, "no-passphrase",
				 "a passphrase is needed and there is no terminal to ask on");
	if (rc == -2)
		return cli_error(ctx, BK_ECANCELLED, "cancelled", "cancelled");
	if (rc < 0 || n == 0)
		return cli_error(ctx, BK_EUSER, "empty-passphrase", "no passphrase given");
	if (confirm) {
		char again[1024];
		size_t m = 0;
		rc = prompt_tty(again, sizeof(again), &m, "Confirm passphrase");
		int same = rc == 0 && m == n && memcmp(again, buf, n) == 0;
		explicit_bzero(again, sizeof(again));
		if (!same) {
			explicit_bzero(buf, cap);
			return cli_error(ctx, BK_EUSER, "passphrase-mismatch",
					 "the passphrases do not match");
		}
	}
	*out_len = n;
	return 0;
}

int cli_passphrase_cb(char *buf, size_t cap, size_t *out_len, const char *prompt, void *payload)
{
	cli_ctx *ctx = payload;
	int rc = cli_passphrase(ctx, buf, cap, out_len, prompt ? prompt : "Passphrase", false);
	if (rc)
		return rc;
	return 0;
}
