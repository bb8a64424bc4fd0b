/* Progress output (bars on a terminal, JSON lines for scripts) and clean
 * cancellation on SIGINT/SIGTERM. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static volatile sig_atomic_t cancel_signal;

static void on_signal(int sig)
{
	cancel_signal = sig;
}

void cli_signals_install(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: blocking calls return EINTR and see the flag. */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

int cli_cancelled(void)
{
	return cancel_signal;
}

#define MAX_BARS 16

typedef struct bar {
	char subject[64];
	int line;
} bar;

static bar bars[MAX_BARS];
static int nbars;

static bool use_tty(const cli_ctx *ctx)
{
	switch (ctx->progress) {
	case CLI_PROGRESS_TTY: return true;
	case CLI_PROGRESS_AUTO: return !ctx->quiet && isatty(STDERR_FILENO);
	default: return false;
	}
}

static void human_bytes(char *out, size_t n, double v)
{
	static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	int u = 0;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(out, n, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

static void draw_tty(const bk_progress *p)
{
	const char *subject = p->subject ? p->subject : "";
	int idx = -1;
	for (int i = 0; i < nbars; i++)
		if (strcmp(bars[i].subject, subject) == 0)
			idx = i;
	if (idx < 0) {
		if (nbars == MAX_BARS)
			return;
		idx = nbars++;
		snprintf(bars[idx].subject, sizeof(bars[idx].subject), "%s", subject);
		bars[idx].line = idx;
		fputc('\n', stderr);
	}
	int up = nbars - bars[idx].line;
	char done[32], total[32], rate[32], eta[32] = "";
	human_bytes(done, sizeof(done), (double)p->done);
	human_bytes(total, sizeof(total), (double)p->total);
	double r = p->elapsed > 0 ? (double)p->done / p->elapsed : 0;
	human_bytes(rate, sizeof(rate), r);
	if (r > 0 && p->total > p->done)
		snprintf(eta, sizeof(eta), " eta %ds", (int)((double)(p->total - p->done) / r));
	int width = 24, filled = (int)(p->fraction * width + 0.5);
	char barstr[32];
	for (int i = 0; i < width; i++)
		barstr[i] = i < filled ? '#' : '-';
	barstr[width] = '\0';
	fprintf(stderr, "\0337\033[%dA\r\033[2K%-14.14s %-8.8s [%s] %3d%% %s/%s %s/s%s\0338", up,
		subject, p->step ? p->step : "", barstr, (int)(p->fraction * 100 + 0.5), done,
		p->total ? total : "?", rate, eta);
	fflush(stderr);
}

static void emit_json(const bk_progress *p)
{
	json_t *o = json_pack("{s:s, s:s?, s:s?, s:i, s:i, s:I, s:I, s:f, s:f}", "type", "progress",
			      "subject", p->subject, "step", p->step, "step_index",
			      (int)p->step_index, "step_count", (int)p->step_count, "done",
			      (json_int_t)p->done, "total", (json_int_t)p->total, "fraction",
			      p->fraction, "elapsed", p->elapsed);
	if (o == NULL)
		return;
	char *s = json_dumps(o, JSON_COMPACT);
	if (s) {
		fprintf(stderr, "%s\n", s);
		fflush(stderr);
		free(s);
	}
	json_decref(o);
}

int cli_progress_cb(const bk_progress *p, void *payload)
{
	const cli_ctx *ctx = payload;
	if (ctx->progress == CLI_PROGRESS_JSON)
		emit_json(p);
	else if (use_tty(ctx))
		draw_tty(p);
	return cli_cancelled() ? 1 : 0;
}
