/* Fault injection for the virtual robot: fault specs and the transport
 * filter that cuts connections and limits the sending rate. */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "device/virtual/fault.h"
#include "device/virtual/unit.h"

static int bad(const char *spec, const char *why)
{
	return bk__error_set(BK_EUSER, "bad-fault", "fault '%s': %s", spec, why);
}

static bool step_name_ok(const char *s, size_t n)
{
	if (n == 0 || n >= BK_VFAULT_STEP_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

int bk_vfault_parse(bk_vfault *out, const char *spec)
{
	char buf[160];
	char *value, *comma;
	uint64_t v = 0;
	memset(out, 0, sizeof(*out));
	out->percent = -1;
	if (spec == NULL || !bk_strlcpy(buf, spec, sizeof(buf)))
		return bad(spec ? spec : "", "too long");
	comma = strchr(buf, ',');
	if (comma) {
		if (strcmp(comma, ",repeat") != 0)
			return bad(spec, "the only modifier is ',repeat'");
		*comma = '\0';
		out->repeat = true;
	}
	value = strchr(buf, '=');
	if (value)
		*value++ = '\0';
	if (strcmp(buf, "busy") == 0 || strcmp(buf, "refuse-handshake") == 0) {
		if (value)
			return bad(spec, "takes no value");
		out->kind = buf[0] == 'b' ? BK_VFAULT_BUSY : BK_VFAULT_REFUSE_HANDSHAKE;
		out->repeat = true;
		return 0;
	}
	if (value == NULL || *value == '\0')
		return bad(spec, "needs a value (NAME=VALUE)");
	if (strcmp(buf, "power-loss") == 0) {
		char *colon = strchr(value, ':');
		if (colon) {
			*colon++ = '\0';
			if (bk_parse_u64(colon, &v) != 0 || v > 100)
				return bad(spec, "the percent must be 0-100");
			out->percent = (int)v;
		}
		if (!step_name_ok(value, strlen(value)))
			return bad(spec, "a step is a name of [a-z0-9-]");
		bk_strlcpy(out->step, value, sizeof(out->step));
		out->kind = BK_VFAULT_POWER_LOSS;
		return 0;
	}
	if (strcmp(buf, "disconnect-after") == 0 || strcmp(buf, "rate") == 0) {
		if (bk_parse_size(value, &v) != 0)
			return bad(spec, "not a byte count");
		if (buf[0] == 'r' && v == 0)
			return bad(spec, "the rate must be above 0");
		out->kind = buf[0] == 'r' ? BK_VFAULT_RATE : BK_VFAULT_DISCONNECT_AFTER;
		out->value = v;
		if (out->kind == BK_VFAULT_RATE)
			out->repeat = true;
		return 0;
	}
	if (bk_parse_u64(value, &v) != 0)
		return bad(spec, "not a number");
	if (strcmp(buf, "stall") == 0 || strcmp(buf, "corrupt-frame") == 0) {
		if (v == 0)
			return bad(spec, "counts from 1");
		out->kind = buf[0] == 's' ? BK_VFAULT_STALL : BK_VFAULT_CORRUPT_FRAME;
	} else if (strcmp(buf, "battery") == 0) {
		if (v > 100)
			return bad(spec, "the battery level is 0-100");
		out->kind = BK_VFAULT_BATTERY;
		out->repeat = true;
	} else {
		return bad(spec, "unknown fault (disconnect-after, stall, corrupt-frame, rate, "
		                 "battery, busy, refuse-handshake, power-loss)");
	}
	out->value = v;
	return 0;
}

/* --- The fault stream ------------------------------------------------------------ */

typedef struct fault_stream {
	bk_stream base;
	uint64_t limit; /* 0: none */
	uint64_t crossed;
	uint64_t rate;
	int64_t started_ms;
	uint64_t sent;
	bool cut;
} fault_stream;

static int cut_error(void)
{
	return bk__error_set(BK_EDISCONNECTED, "fault-disconnect",
	                     "connection dropped by the disconnect-after fault");
}

static void do_cut(fault_stream *f)
{
	f->cut = true;
	(void)bk_stream_ctrl(f->base.next, BK_STREAM_CTRL_SHUTDOWN_WR, NULL);
}

static size_t allowance(const fault_stream *f, size_t len)
{
	if (f->limit == 0)
		return len;
	uint64_t left = f->limit - f->crossed;
	return left < len ? (size_t)left : len;
}

static int fs_read(bk_stream *s, void *buf, size_t len, size_t *out_n, bk_deadline d)
{
	fault_stream *f = (fault_stream *)s;
	*out_n = 0;
	if (f->cut)
		return cut_error();
	size_t n = allowance(f, len);
	if (n == 0 && len > 0) {
		do_cut(f);
		return cut_error();
	}
	int rc = bk_stream_read(f->base.next, buf, n, out_n, d);
	if (rc == 0)
		f->crossed += *out_n;
	return rc;
}

/* Sleeps so that `sent` bytes took at least sent/rate seconds. */
static int pace(fault_stream *f, bk_deadline d)
{
	if (f->rate == 0)
		return 0;
	int64_t due = f->started_ms + (int64_t)(f->sent * 1000 / f->rate);
	int64_t now = bk_now_ms();
	if (due <= now)
		return 0;
	if (d != BK_DEADLINE_NONE && due > d)
		return bk__error_set(BK_ETIMEOUT, "timeout", "rate-limited write timed out");
	struct timespec ts = {(time_t)((due - now) / 1000), (long)((due - now) % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
	return 0;
}

static int fs_write(bk_stream *s, const void *buf, size_t len, bk_deadline d)
{
	fault_stream *f = (fault_stream *)s;
	const uint8_t *p = buf;
	if (f->cut)
		return cut_error();
	if (f->started_ms == 0)
		f->started_ms = bk_now_ms();
	while (len > 0) {
		size_t n = allowance(f, len);
		if (n == 0) {
			do_cut(f);
			return cut_error();
		}
		if (f->rate) {
			size_t piece = (size_t)(f->rate / 10 + 1);
			if (n > piece)
				n = piece;
		}
		int rc = bk_stream_write(f->base.next, p, n, d);
		if (rc)
			return rc;
		f->crossed += n;
		f->sent += n;
		p += n;
		len -= n;
		rc = pace(f, d);
		if (rc)
			return rc;
	}
	return 0;
}

static int fs_flush(bk_stream *s, bk_deadline d)
{
	return bk_stream_flush(s->next, d);
}

static int fs_ctrl(bk_stream *s, int op, void *arg)
{
	return bk_stream_ctrl(s->next, op, arg);
}

static void fs_release(bk_stream *s)
{
	bk__free(s);
}

static const bk_stream_ops fault_ops = {
    .version = BK_STREAM_OPS_VERSION,
    .name = "fault",
    .read = fs_read,
    .write = fs_write,
    .flush = fs_flush,
    .release = fs_release,
    .ctrl = fs_ctrl,
};

int bk_vunit_fault_stream_new(bk_stream **out, bk_stream *next, uint64_t disconnect_after,
                              uint64_t rate)
{
	fault_stream *f = bk__calloc(1, sizeof(*f));
	if (f == NULL) {
		bk_stream_free(next);
		return BK_ENOMEM;
	}
	f->base.ops = &fault_ops;
	f->base.next = next;
	f->base.owns_next = 1;
	f->limit = disconnect_after;
	f->rate = rate;
	*out = &f->base;
	return 0;
}
