/* aibo-restore repair / resume / jobs / job show / job abort / job audit:
 * the repair job (libbackup/job.h) from the command line. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libbackup/job.h>

#include "cli.h"

/* --- Output ----------------------------------------------------------------------------- */

static const char *js(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "-";
}

/* The report as text. */
static void print_report(cli_ctx *ctx, json_t *r)
{
	json_t *ou = json_object_get(r, "old_unit"), *nu = json_object_get(r, "new_unit");
	json_t *b = json_object_get(r, "backup"), *id = json_object_get(r, "identity");
	json_t *v = json_object_get(r, "verification"), *a = json_object_get(r, "audit");
	json_t *src = json_object_get(r, "source");
	cli_print(ctx, "job          %s (%s, step %s)\n", js(r, "job"), js(r, "state"),
	          js(r, "step"));
	cli_print(ctx, "ticket       %s\n", js(r, "ticket"));
	cli_print(ctx, "source       %s %s\n", js(src, "kind"), js(src, "ref"));
	cli_print(ctx, "old unit     %s  %s  firmware %s\n", js(ou, "serial"), js(ou, "model"),
	          js(ou, "firmware"));
	cli_print(ctx, "new unit     %s  %s  firmware %s -> %s\n", js(nu, "serial"),
	          js(nu, "model"), js(nu, "firmware_before"),
	          json_is_string(json_object_get(nu, "firmware_after"))
	              ? js(nu, "firmware_after")
	              : js(nu, "firmware_before"));
	cli_print(ctx, "backup       %s\n", js(b, "id"));
	cli_print(ctx, "  payload    %s\n  manifest   %s\n", js(b, "payload_digest"),
	          js(b, "manifest_digest"));
	cli_print(ctx, "identity     device %s  bundle %s\n", js(id, "device_id"),
	          js(id, "bundle_fingerprint"));
	cli_print(ctx, "steps\n");
	size_t i;
	json_t *s;
	json_array_foreach(json_object_get(r, "steps"), i, s)
	{
		int attempts = (int)json_integer_value(json_object_get(s, "attempts"));
		cli_print(ctx, "  %-10s %-8s %8.2f s%s\n", js(s, "name"), js(s, "state"),
		          json_real_value(json_object_get(s, "seconds")),
		          attempts > 1 ? "  (resumed)" : "");
	}
	cli_print(ctx, "  total               %8.2f s\n",
	          json_real_value(json_object_get(r, "seconds")));
	json_t *ok = json_object_get(v, "ok");
	cli_print(ctx, "verification %s (digests %s, identity %s)\n",
	          json_is_true(ok) ? "passed" : "not passed",
	          json_is_true(json_object_get(v, "digests_match"))   ? "match"
	          : json_is_false(json_object_get(v, "digests_match")) ? "DIFFER"
	                                                               : "not checked",
	          json_is_true(json_object_get(v, "identity"))   ? "installed"
	          : json_is_false(json_object_get(v, "identity")) ? "MISSING"
	                                                          : "not checked");
	cli_print(ctx, "audit        %lld events, head %s\n",
	          (long long)json_integer_value(json_object_get(a, "events")), js(a, "head"));
	json_t *err = json_object_get(r, "error");
	if (err)
		cli_print(ctx, "stopped      %s\nwhat to do   %s\n", js(err, "message"),
		          js(err, "hint"));
}

/* Events as lines on stderr (not with --json or -q), and the test hook
 * AIBO_RESTORE_CRASH_AFTER=KIND:STEP, which kills the process as a power
 * cut would right after that event was journaled. */
static void on_event(const char *job, const char *step, const char *kind, const char *message,
                     void *payload)
{
	cli_ctx *ctx = payload;
	const char *crash = getenv("AIBO_RESTORE_CRASH_AFTER");
	if (!ctx->json && !ctx->quiet)
		fprintf(stderr, "aibo-restore: %s: %-9s %s\n", job, step, message);
	if (crash) {
		char want[64];
		snprintf(want, sizeof(want), "%s:%s",
		         strcmp(kind, "step-begin") == 0 ? "begin" : "done", step);
		if (strcmp(crash, want) == 0 &&
		    (strcmp(kind, "step-begin") == 0 || strcmp(kind, "step-done") == 0 ||
		     strcmp(kind, "step-skipped") == 0))
			raise(SIGKILL);
	}
}

/* Fills the JSON result and prints the report; returns rc. */
static int report_result(cli_ctx *ctx, int rc, const bk_job_result *res)
{
	if (res->id[0]) {
		cli_set(ctx, "job", json_string(res->id));
		cli_set(ctx, "state", json_string(res->state));
		cli_set(ctx, "step", json_string(res->step));
		cli_set(ctx, "resumed", json_boolean(res->resumed));
	}
	if (res->hint)
		cli_set(ctx, "hint", json_string(res->hint));
	json_t *r = res->report_json ? json_loads(res->report_json, 0, NULL) : NULL;
	if (r) {
		if (rc == 0 || !ctx->json)
			print_report(ctx, r);
		cli_set(ctx, "report", r);
	}
	if (rc && res->hint && !ctx->json)
		fprintf(stderr, "aibo-restore: job %s stopped at step %s (%s)\n", res->id, res->step,
		        res->state);
	return rc;
}

static int job_opts_init(cli_ctx *ctx, bk_job_opts *o)
{
	bk_job_opts init = BK_JOB_OPTS_INIT;
	*o = init;
	o->passphrase = cli_passphrase_cb;
	o->passphrase_payload = ctx;
	o->progress = cli_progress_cb;
	o->progress_payload = ctx;
	o->event = on_event;
	o->event_payload = ctx;
	/* Fault-injection tests: stop (as if cut off) after that step. */
	o->stop_after = getenv("AIBO_RESTORE_TEST_STOP_AFTER");
	return cli_reconnect_ms(ctx, &o->reconnect_ms);
}

/* --- repair ----------------------------------------------------------------------------- */

static int run_repair(cli_ctx *ctx)
{
	bk_config *cfg;
	bk_job_opts o;
	bk_job_result res;
	const char *from = cli_value(ctx, "from"), *file = cli_value(ctx, "backup");
	const char *cloud = cli_value(ctx, "cloud-backup"), *to = cli_value(ctx, "to");
	int rc;
	memset(&res, 0, sizeof(res));
	if ((rc = job_opts_init(ctx, &o)) || (rc = cli_config(ctx, &cfg)))
		return rc;
	o.ticket = cli_value(ctx, "ticket");
	if (o.ticket == NULL)
		return cli_error(ctx, BK_EUSER, "missing-option", "repair needs --ticket T");
	if ((from != NULL) + (file != NULL) + (cloud != NULL) != 1)
		return cli_error(ctx, BK_EUSER, "missing-option",
		                 "repair needs exactly one source: --from DEVICE, --backup FILE or "
		                 "--cloud-backup ID");
	if (to == NULL)
		return cli_error(ctx, BK_EUSER, "missing-option",
		                 "repair needs the replacement: --to DEVICE");
	if (from) {
		o.source = BK_JOB_FROM_DEVICE;
		if ((rc = cli_device_resolve(ctx, from, &o.from)))
			return rc;
	} else if (file) {
		o.source = BK_JOB_FROM_FILE;
		o.from = file;
	} else {
		o.source = BK_JOB_FROM_CLOUD;
		o.from = cloud;
	}
	if ((rc = cli_device_resolve(ctx, to, &o.to)))
		return rc;
	o.firmware_dir = cli_value(ctx, "firmware-dir");
	o.overwrite = cli_flag(ctx, "overwrite");
	rc = bk_job_repair(cfg, &o, &res);
	report_result(ctx, rc, &res);
	bk_job_result_clear(&res);
	return rc;
}

static const cli_opt repair_opts[] = {
    {"ticket", 't', "T", "the repair ticket (required)"},
    {"from", 0, "DEVICE", "take the memory from the old unit"},
    {"backup", 0, "FILE", "take the memory from a backup file or catalog id"},
    {"cloud-backup", 0, "ID", "take the memory from the unit's cloud backup"},
    {"to", 0, "DEVICE", "the replacement unit (required)"},
    {"firmware-dir", 0, "DIR", "where to find firmware bundles (default: firmware.dir)"},
    {"overwrite", 0, NULL, "the replacement's own memory may be replaced"},
    {"reconnect-timeout", 0, "SECONDS",
     "how long a step keeps reconnecting to a unit that went away (default 60, 30 for a flash)"},
    {0},
};

const cli_command cmd_repair = {
    .name = "repair",
    .args = "",
    .summary = "move a unit's memory and identity onto its replacement, as one resumable job",
    .opts = repair_opts,
    .min_args = 0,
    .max_args = 0,
    .run = run_repair,
};

/* --- resume ----------------------------------------------------------------------------- */

static int run_resume(cli_ctx *ctx)
{
	bk_config *cfg;
	bk_job_opts o;
	bk_job_result res;
	const char *from = cli_value(ctx, "from"), *to = cli_value(ctx, "to");
	int rc;
	memset(&res, 0, sizeof(res));
	if ((rc = job_opts_init(ctx, &o)) || (rc = cli_config(ctx, &cfg)))
		return rc;
	if (from && (rc = cli_device_resolve(ctx, from, &o.new_from)))
		return rc;
	if (to && (rc = cli_device_resolve(ctx, to, &o.new_to)))
		return rc;
	rc = bk_job_resume(cfg, ctx->argv[0], &o, &res);
	report_result(ctx, rc, &res);
	bk_job_result_clear(&res);
	return rc;
}

static const cli_opt resume_opts[] = {
    {"from", 0, "DEVICE", "the old unit's new address (its serial is checked)"},
    {"to", 0, "DEVICE", "the replacement's new address (its serial is checked)"},
    {"reconnect-timeout", 0, "SECONDS",
     "how long a step keeps reconnecting to a unit that went away (default 60, 30 for a flash)"},
    {0},
};

const cli_command cmd_resume = {
    .name = "resume",
    .args = "JOB",
    .summary = "continue a repair job from the step where it stopped",
    .opts = resume_opts,
    .min_args = 1,
    .max_args = 1,
    .run = run_resume,
};

/* --- jobs ------------------------------------------------------------------------------- */

static int run_jobs(cli_ctx *ctx)
{
	bk_config *cfg;
	bk_job_summary *list = NULL;
	size_t n = 0;
	int rc = cli_config(ctx, &cfg);
	if (rc == 0)
		rc = bk_job_list(cfg, cli_value(ctx, "state"), &list, &n);
	if (rc)
		return rc;
	json_t *arr = json_array();
	if (!ctx->json && n > 0)
		cli_print(ctx, "%-18s %-12s %-11s %-9s %-7s %-14s %s\n", "JOB", "TICKET", "STATE",
		          "STEP", "SOURCE", "OLD -> NEW", "UPDATED");
	for (size_t i = 0; i < n; i++) {
		const bk_job_summary *s = &list[i];
		json_array_append_new(
		    arr, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "id", s->id,
		                   "ticket", s->ticket, "state", s->state, "step", s->step, "source",
		                   s->source, "old_serial", s->old_serial, "new_serial",
		                   s->new_serial, "created", s->created, "updated", s->updated,
		                   "holder", s->holder));
		cli_print(ctx, "%-18s %-12s %-11s %-9s %-7s %s -> %s  %s%s%s\n", s->id, s->ticket,
		          s->state, s->step, s->source, s->old_serial[0] ? s->old_serial : "?",
		          s->new_serial[0] ? s->new_serial : "?", s->updated,
		          s->holder[0] ? "  " : "", s->holder);
	}
	if (!ctx->json && n == 0)
		cli_print(ctx, "no jobs\n");
	cli_set(ctx, "version", json_integer(1));
	cli_set(ctx, "jobs", arr);
	bk_job_list_free(list);
	return 0;
}

static const cli_opt jobs_opts[] = {
    {"state", 0, "S", "only jobs in state S (running, interrupted, failed, complete, aborted)"},
    {0},
};

const cli_command cmd_jobs = {
    .name = "jobs",
    .args = "",
    .summary = "list repair jobs",
    .opts = jobs_opts,
    .min_args = 0,
    .max_args = 0,
    .run = run_jobs,
};

/* --- job show / abort / audit ----------------------------------------------------------- */

static int run_show(cli_ctx *ctx)
{
	bk_config *cfg;
	char *text = NULL;
	int rc = cli_config(ctx, &cfg);
	if (rc == 0)
		rc = bk_job_report(cfg, ctx->argv[0], &text);
	if (rc)
		return rc;
	json_t *r = json_loads(text, 0, NULL);
	bk_free(text);
	if (r == NULL)
		return cli_error(ctx, BK_ENOMEM, NULL, "out of memory");
	print_report(ctx, r);
	cli_set(ctx, "report", r);
	return 0;
}

const cli_command cmd_job_show = {
    .name = "job show",
    .args = "JOB",
    .summary = "show a repair job: units, backup, steps with timings, verification",
    .opts = NULL,
    .min_args = 1,
    .max_args = 1,
    .run = run_show,
};

static int run_abort(cli_ctx *ctx)
{
	bk_config *cfg;
	bk_job_result res;
	uint64_t wait = 30;
	int rc = cli_config(ctx, &cfg);
	memset(&res, 0, sizeof(res));
	if (rc)
		return rc;
	const char *w = cli_value(ctx, "wait");
	if (w) {
		char *end = NULL;
		unsigned long long v = strtoull(w, &end, 10);
		if (end == w || *end || v > 86400)
			return cli_error(ctx, BK_EUSER, "bad-option", "--wait: seconds, 0 to 86400");
		wait = v;
	}
	/* 0: do not wait (the library's 0 means its default). */
	rc = bk_job_abort(cfg, ctx->argv[0], wait ? (int64_t)wait * 1000 : 1, &res);
	if (rc == 0)
		cli_print(ctx, "job %s aborted at step %s; nothing was deleted\n", res.id, res.step);
	report_result(ctx, rc, &res);
	bk_job_result_clear(&res);
	return rc;
}

static const cli_opt abort_opts[] = {
    {"wait", 0, "SECONDS", "how long to wait for a running job to stop (default 30)"},
    {0},
};

const cli_command cmd_job_abort = {
    .name = "job abort",
    .args = "JOB",
    .summary = "stop a repair job for good and report what it did (deletes nothing)",
    .opts = abort_opts,
    .min_args = 1,
    .max_args = 1,
    .run = run_abort,
};

static int run_audit(cli_ctx *ctx)
{
	bk_config *cfg;
	char *text = NULL;
	size_t count = 0;
	int rc = cli_config(ctx, &cfg);
	if (rc)
		return rc;
	if (cli_flag(ctx, "verify")) {
		rc = bk_job_audit_verify(cfg, ctx->argv[0], &count);
		cli_set(ctx, "job", json_string(ctx->argv[0]));
		cli_set(ctx, "intact", json_boolean(rc == 0));
		if (rc == 0) {
			cli_set(ctx, "events", json_integer((json_int_t)count));
			cli_print(ctx, "job %s: audit log intact (%zu events)\n", ctx->argv[0], count);
		}
		return rc;
	}
	if ((rc = bk_job_audit(cfg, ctx->argv[0], &text)))
		return rc;
	json_t *a = json_loads(text, 0, NULL);
	bk_free(text);
	if (a == NULL)
		return cli_error(ctx, BK_ENOMEM, NULL, "out of memory");
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(a, "events"), i, e)
	{
		char when[32];
		time_t t = (time_t)json_integer_value(json_object_get(e, "time"));
		struct tm tm;
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
		cli_print(ctx, "%4lld %s %-9s %-13s %s\n",
		          (long long)json_integer_value(json_object_get(e, "seq")), when,
		          js(e, "step"), js(e, "kind"), js(e, "message"));
	}
	cli_set(ctx, "job", json_incref(json_object_get(a, "job")));
	cli_set(ctx, "ticket", json_incref(json_object_get(a, "ticket")));
	cli_set(ctx, "events", json_incref(json_object_get(a, "events")));
	json_decref(a);
	return 0;
}

static const cli_opt audit_opts[] = {
    {"verify", 0, NULL, "recompute the hash chain: exit 4 if an event was edited, removed or moved"},
    {0},
};

const cli_command cmd_job_audit = {
    .name = "job audit",
    .args = "JOB",
    .summary = "print a repair job's audit log, or check its hash chain",
    .opts = audit_opts,
    .min_args = 1,
    .max_args = 1,
    .run = run_audit,
};
