/* aibo-restore backup DEVICE...: each unit makes a backup of its memory and
 * the terminal streams it into the store and the catalog (or a file). */
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
	bk_backup_pull_opts opts;
	bk_backup_report report;
	bk_transfer_stats stats;
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
	bk_config *cfg = j->ctx->cfg;
	int rc = bk_backup_pull(cfg, j->dev, &j->opts, &j->report, &j->stats);
	if (rc)
		keep_error(j, rc);
	return NULL;
}

static json_t *job_json(const job *j)
{
	json_t *o = json_pack("{s:s, s:s}", "device", j->arg, "serial", j->serial);
	if (o == NULL)
		return NULL;
	if (j->rc) {
		json_object_set_new(o, "error",
		                    json_pack("{s:s, s:s, s:i}", "code", j->reason, "message",
		                              j->message, "exit", cli_exit_code(j->rc)));
	} else {
		json_object_set_new(o, "id", json_string(j->report.id));
		json_object_set_new(o, "path", json_string(j->report.path));
		if (j->report.location)
			json_object_set_new(o, "location", json_string(j->report.location));
		if (j->report.statement_path)
			json_object_set_new(o, "statement", json_string(j->report.statement_path));
		json_object_set_new(o, "in_catalog", json_boolean(j->report.in_catalog));
		json_object_set_new(o, "file_size", json_integer((json_int_t)j->report.file_size));
		json_object_set_new(o, "payload_digest", json_string(j->report.payload_digest));
		json_object_set_new(o, "verified", json_boolean(j->opts.verify));
	}
	json_object_set_new(o, "transfer",
	                    json_pack("{s:I, s:I, s:i, s:f}", "size", (json_int_t)j->stats.size,
	                              "bytes", (json_int_t)j->stats.bytes, "reconnects",
	                              (int)j->stats.reconnects, "seconds", j->stats.seconds));
	return o;
}

static int run(cli_ctx *ctx)
{
	bk_config *cfg = NULL;
	const char *const *rcpt = NULL;
	const char *const *doms = NULL;
	int nr = cli_values(ctx, "recipient", &rcpt);
	int nd = cli_values(ctx, "domain", &doms);
	const char *output = cli_value(ctx, "output");
	const char *outdir = cli_value(ctx, "output-dir");
	int n = ctx->argc, rc, failed = 0;
	job *jobs = NULL;
	pthread_t *th = NULL;
	if (output && n > 1)
		return cli_error(ctx, BK_EUSER, "usage", "-o FILE takes one device; use -O DIR");
	if (output && outdir)
		return cli_error(ctx, BK_EUSER, "usage", "give -o FILE or -O DIR, not both");
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
	/* Sessions first (a wrong or busy unit stops nothing else). */
	for (int i = 0; i < n; i++) {
		job *j = &jobs[i];
		j->ctx = ctx;
		j->arg = ctx->argv[i];
		bk_backup_pull_opts o = BK_BACKUP_PULL_OPTS_INIT;
		o.recipients = rcpt;
		o.recipient_count = (size_t)nr;
		o.domains = doms;
		o.domain_count = (size_t)nd;
		o.output = output;
		o.output_dir = outdir;
		o.verify = cli_flag(ctx, "verify");
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
		cli_print(ctx, "%s: backup %s (%llu bytes, %u reconnects)%s\n  %s\n", j->serial,
		          j->report.id, (unsigned long long)j->report.file_size,
		          j->stats.reconnects, j->opts.verify ? ", verified" : "", j->report.path);
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
		bk_backup_report_clear(&jobs[i].report);
		bk_device_free(jobs[i].dev);
	}
	free(jobs);
	free(th);
	return rc;
}

static const cli_opt opts[] = {
    {"recipient", 'r', "RECIPIENT",
     "encrypt to this age recipient (repeatable; default: the depot identity and "
     "backup.escrow_recipients)"},
    {"output", 'o', "FILE", "write FILE and FILE.statement (one device) instead of the store"},
    {"output-dir", 'O', "DIR", "write DIR/ID.aibk and its statement instead of the store"},
    {"domain", 0, "NAME", "back up only this domain (repeatable; default: all)"},
    {"verify", 0, NULL, "decrypt and check every digest afterwards with the depot identity"},
    {"reconnect-timeout", 0, "SECONDS",
     "keep reconnecting to a unit that went away for this long (default 60)"},
    {"passphrase-file", 0, "FILE", "passphrase of a protected depot identity"},
    {0},
};

const cli_command cmd_backup = {
    .name = "backup",
    .args = "DEVICE...",
    .summary = "back up units' memories into the store (several units at once)",
    .opts = opts,
    .min_args = 1,
    .max_args = -1,
    .run = run,
};
