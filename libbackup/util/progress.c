/* Weighted progress steps. */
#include <string.h>

#include "util.h"

#define REPORT_INTERVAL_MS 100

void bk_progress_init(bk_progress_tracker *t, bk_progress_cb cb, void *payload,
		      const char *subject, const bk_progress_step *steps, unsigned count)
{
	memset(t, 0, sizeof(*t));
	t->cb = cb;
	t->payload = payload;
	t->subject = subject;
	t->steps = steps;
	t->count = count;
	t->started_ms = bk_now_ms();
}

static int report(bk_progress_tracker *t, uint64_t done)
{
	if (t->cb == NULL || t->count == 0)
		return 0;
	double wsum = 0, wbefore = 0;
	for (unsigned i = 0; i < t->count; i++) {
		wsum += t->steps[i].weight;
		if (i < t->current)
			wbefore += t->steps[i].weight;
	}
	double part = t->total ? (double)done / (double)t->total : 0.0;
	if (part > 1.0)
		part = 1.0;
	bk_progress p = {
		.version = BK_PROGRESS_VERSION,
		.subject = t->subject,
		.step = t->steps[t->current].name,
		.step_index = t->current,
		.step_count = t->count,
		.done = done,
		.total = t->total,
		.fraction = wsum > 0 ? (wbefore + part * t->steps[t->current].weight) / wsum : 0,
		.elapsed = (double)(bk_now_ms() - t->started_ms) / 1000.0,
	};
	if (t->cb(&p, t->payload) != 0)
		return bk__error_set(BK_ECANCELLED, "cancelled", "%s: cancelled during %s",
				     t->subject ? t->subject : "work", p.step);
	return 0;
}

int bk_progress_step_begin(bk_progress_tracker *t, const char *name, uint64_t total)
{
	for (unsigned i = 0; i < t->count; i++) {
		if (strcmp(t->steps[i].name, name) == 0) {
			t->current = i;
			t->total = total;
			t->last_done = 0;
			t->last_report_ms = bk_now_ms();
			return report(t, 0);
		}
	}
	return bk__error_set(BK_EINVALID, NULL, "progress: unknown step '%s'", name);
}

int bk_progress_update(bk_progress_tracker *t, uint64_t done, bool force)
{
	if (t->cb == NULL)
		return 0;
	int64_t now = bk_now_ms();
	if (!force && now - t->last_report_ms < REPORT_INTERVAL_MS)
		return 0;
	t->last_report_ms = now;
	t->last_done = done;
	return report(t, done);
}
