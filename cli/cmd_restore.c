/* aibo-restore restore DEVICE BACKUP [DEVICE BACKUP...]: re-wraps each backup
 * to its unit's certified age key and streams it; the unit checks and
 * commits, and its reported digests are compared with the manifest. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libbackup/device.h>
#include <libbackup/transfer.h>

#include "cli.h"

typedef struct job {
	cli_ctx *ctx;
	const char *arg;
	const char *uri;
	bk_device *dev;
	const char *backup;
	bk_restore_push_opts opts;
	bk_restore_report report;
	char serial[72];
	int rc;
	char reason[64];
	char message[1024];
} job;

static pthread_mutex_t progress_lock = PTHREAD_MUTEX_INITIALIZER;

static int progress(const bk_progress *p, void *payload)
{
	pthread_mutex_lock(&progress_lock);
	int r = cli_progress_cb(p, payload);
	pthread_mutex_unlock(&progress_lock);
	return r;
}

static int passphrase(char *buf, size_t cap, size_t *out_len, const char *prompt, void *payload)
{
	pthread_mutex_lock(&progress_lock);
	int r = cli_passphrase_cb(buf, cap, out_len, prompt, payload);
	pthread_mutex_unlock(&progress_lock);
	return r;
}

static void keep_error(job *j, int rc)
{
	const bk_error *e = bk_error_last();
	j->rc = rc;
	snprintf(j->reason, sizeof(j->reason), "%s",
	         e->code == rc && e->reason ? e->reason : bk_error_code_name(rc));
	snprintf(j->message, sizeof(j->message), "%s",
	         e->code == rc && e->message ? e->message : bk_strerror(rc));
}

static void *work(void *arg)
{
	job *j = arg;
	int rc = bk_restore_push(j->ctx->cfg, j->dev, j->backup, &j->opts, &j->report);
	if (rc)
		keep_error(j, rc);
	return NULL;
}

static json_t *job_json(const job *j)
{
	json_t *o = json_pack("{s:s, s:s, s:s}", "device", j->arg, "serial", j->serial, "backup",
	                      j->backup);
	if (o == NULL)
		return NULL;
	if (j->report.backup_id[0]) {
		json_object_set_new(o, "backup_id", json_string(j->report.backup_id));
		json_object_set_new(o, "from_serial", json_string(j->report.from_serial));
		json_object_set_new(o, "schema", json_integer((json_int_t)j->report.schema));
	}
	if (j->rc)
		json_object_set_new(o, "error",
		                    json_pack("{s:s, s:s, s:i}", "code", j->reason, "message",
		                              j->message, "exit", cli_exit_code(j->rc)));
	if (j->report.domains_json) {
		json_t *d = json_loads(j->report.domains_json, 0, NULL);
		json_t *dd = json_object_get(d, "domains");
		json_object_set(o, "domains", dd ? dd : d);
		json_decref(d);
		json_object_set_new(o, "digests_match", json_boolean(j->report.digests_match));
	}
	json_object_set_new(o, "resumed", json_boolean(j->report.resumed));
	json_object_set_new(
	    o, "transfer",
	    json_pack("{s:I, s:I, s:I, s:i, s:f}", "size", (json_int_t)j->report.stats.size,
	              "start", (json_int_t)j->report.stats.start, "bytes",
	              (json_int_t)j->report.stats.bytes, "reconnects",
	              (int)j->report.stats.reconnects, "seconds", j->report.stats.seconds));
	return o;
}

static int run(cli_ctx *ctx)
{
	bk_config *cfg = NULL;
	int n = ctx->argc / 2, rc, failed = 0;
	job *jobs = NULL;
	pthread_t *th = NULL;
	if (ctx->argc % 2 != 0)
		return cli_error(ctx, BK_EUSER, "usage",
		                 "restore takes DEVICE BACKUP pairs (got %d arguments)", ctx->argc);
	int64_t reconnect_ms = 0;
	if ((rc = cli_reconnect_ms(ctx, &reconnect_ms)))
		return rc;
	if ((rc = cli_config(ctx, &cfg)))
		return rc;
	jobs = calloc((size_t)n, sizeof(*jobs));
	th = calloc((size_t)n, sizeof(*th));
	if (jobs == NULL || th == NULL) {
		free(jobs);
		free(th);
		return BK_ENOMEM;
	}
	for (int i = 0; i < n; i++) {
		job *j = &jobs[i];
		j->ctx = ctx;
		j->arg = ctx->argv[2 * i];
		j->backup = ctx->argv[2 * i + 1];
		bk_restore_push_opts o = BK_RESTORE_PUSH_OPTS_INIT;
		o.identity = cli_value(ctx, "identity");
		o.overwrite = cli_flag(ctx, "overwrite");
		o.passphrase = passphrase;
		o.passphrase_payload = ctx;
		o.progress = progress;
		o.progress_payload = ctx;
		o.reconnect_ms = reconnect_ms;
		j->opts = o;
		rc = cli_device_resolve(ctx, j->arg, &j->uri);
		if (rc == 0)
			rc = cli_device_open(ctx, j->uri, &j->dev);
		if (rc) {
			if (ctx->err_code) {
				j->rc = ctx->err_code;
				snprintf(j->reason, sizeof(j->reason), "%s", ctx->err_reason);
				snprintf(j->message, sizeof(j->message), "%s", ctx->err_message);
				ctx->err_code = 0;
			} else {
				keep_error(j, rc);
			}
			continue;
		}
		snprintf(j->serial, sizeof(j->serial), "%s", bk_device_serial(j->dev));
	}
	for (int i = 0; i < n; i++)
		if (jobs[i].dev && pthread_create(&th[i], NULL, work, &jobs[i]) != 0)
			work(&jobs[i]);
	for (int i = 0; i < n; i++)
		if (jobs[i].dev && th[i])
			pthread_join(th[i], NULL);
	json_t *units = json_array();
	int first = -1;
	for (int i = 0; i < n; i++) {
		job *j = &jobs[i];
		json_array_append_new(units, job_json(j));
		if (j->rc) {
			failed++;
			if (first < 0)
				first = i;
			if (!ctx->json)
				fprintf(stderr, "aibo-restore: %s: %s\n",
				        j->serial[0] ? j->serial : j->arg, j->message);
			continue;
		}
		cli_print(ctx, "%s: restored backup %s (from %s, schema %llu)%s\n", j->serial,
		          j->report.backup_id, j->report.from_serial,
		          (unsigned long long)j->report.schema,
		          j->report.resumed ? ", resumed" : "");
		cli_print(ctx, "  unit digests %s the manifest\n",
		          j->report.digests_match ? "match" : "DO NOT match");
	}
	if (n == 1 && first < 0) {
		json_t *one = json_array_get(units, 0);
		const char *k;
		json_t *v;
		json_object_foreach(one, k, v)
		{
			cli_set(ctx, k, json_incref(v));
		}
	}
	cli_set(ctx, "units", units);
	rc = 0;
	if (first >= 0) {
		job *j = &jobs[first];
		if (n == 1)
			rc = cli_error(ctx, j->rc, j->reason, "%s", j->message);
		else
			rc =
			    cli_error(ctx, j->rc, j->reason, "%d of %d units failed; first: %s: %s",
			              failed, n, j->serial[0] ? j->serial : j->arg, j->message);
	}
	for (int i = 0; i < n; i++) {
		bk_restore_report_clear(&jobs[i].report);
		bk_device_free(jobs[i].dev);
	}
	free(jobs);
	free(th);
	return rc;
}

static const cli_opt opts[] = {
    {"identity", 'i', "FILE", "the identity that opens the backup (default: depot.identity)"},
    {"overwrite", 0, NULL, "replace a memory the unit already holds"},
    {"reconnect-timeout", 0, "SECONDS",
     "keep reconnecting to a unit that went away for this long (default 60)"},
    {"passphrase-file", 0, "FILE", "passphrase of a protected identity"},
    {0},
};

const cli_command cmd_restore = {
    .name = "restore",
    .args = "DEVICE BACKUP [DEVICE BACKUP...]",
    .summary = "restore backups onto (replacement) units, re-wrapped to each unit's key",
    .opts = opts,
    .min_args = 2,
    .max_args = -1,
    .run = run,
};
