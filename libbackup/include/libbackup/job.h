/* libbackup: the repair job (DESIGN.md §7) — one resumable, journaled,
 * audited transaction from a broken unit (or its backup) to a verified
 * replacement.
 *
 * A job lives in the catalog database (depot.db): its row, one row per step
 * with its timings and outcome, and a hash-chained audit log. Steps run in
 * this order and each records its start and outcome before the next one
 * begins:
 *
 *   preflight  both units authenticated, the ticket open and naming the old
 *              serial, same model, battery, disk space, firmware available
 *   backup     pull from the old unit; or check the given backup file; or
 *              download the cloud backup and have the service re-wrap it to
 *              the replacement
 *   firmware   flash the lowest bundle that holds the memory's schema, only
 *              when the replacement's running firmware cannot
 *   reassign   move the cloud identity (idempotency key from the job)
 *   restore    re-wrap to the replacement, stream, commit
 *   identity   IDENTITY_INSTALL of the verified bundle
 *   verify     the replacement's digests against the manifest, the identity
 *              read back
 *   complete   audit events uploaded, ticket completed, report saved
 *
 * The old unit and the backup are never modified. A job and each unit are
 * held by one process at a time (an flock'ed file beside the database);
 * the lock of a process that died is taken over. */
#ifndef LIBBACKUP_JOB_H
#define LIBBACKUP_JOB_H

#include <libbackup/common.h>
#include <libbackup/config.h>
#include <libbackup/keys.h>
#include <libbackup/progress.h>

BK_BEGIN_DECLS

/* Job ids are "J-" and 16 hex digits. */
#define BK_JOB_ID_SIZE 24

/* Where the memory comes from. */
typedef enum bk_job_source {
	BK_JOB_FROM_DEVICE = 1, /* the old unit (a device URI) */
	BK_JOB_FROM_FILE = 2,   /* a backup file path or catalog id */
	BK_JOB_FROM_CLOUD = 3,  /* a cloud backup id */
} bk_job_source;

/* The step names, in order ("preflight" ... "complete"). */
BK_EXTERN const char *bk_job_step_name(unsigned i);
BK_EXTERN unsigned bk_job_step_count(void);

/* An event the running job reports (besides progress): "step-begin",
 * "step-done", "step-skipped", "step-failed", "job-*". `message` is one
 * line and never holds a secret. */
typedef void (*bk_job_event_cb)(const char *job, const char *step, const char *kind,
                                const char *message, void *payload);

#define BK_JOB_OPTS_VERSION 1
typedef struct bk_job_opts {
	unsigned version;
	/* For bk_job_repair: the ticket, the source and the replacement. */
	const char *ticket;
	bk_job_source source;
	const char *from; /* device URI, backup path or id, or cloud backup id */
	const char *to;   /* the replacement's device URI */
	const char *firmware_dir; /* NULL: firmware.dir */
	/* The replacement may hold a memory; it is replaced (never the old
	 * unit's). Without it a replacement holding a memory stops preflight. */
	int overwrite;
	/* For bk_job_resume: new addresses of units that came back elsewhere
	 * (NULL: the recorded ones). Their serials are checked. */
	const char *new_from;
	const char *new_to;
	bk_passphrase_cb passphrase; /* for a protected depot identity */
	void *passphrase_payload;
	bk_progress_cb progress; /* per step: subject the job id, step its name; the
	                          * steps' own reports too; non-zero cancels */
	void *progress_payload;
	bk_job_event_cb event;
	void *event_payload;
	/* Tests only: stop (as a crash would) right after the named step
	 * recorded its outcome, with BK_ECANCELLED. */
	const char *stop_after;
	/* How long a step waits for a unit that went away (a link drop, a
	 * power cut) before the job stops, resumable; 0: the steps' own
	 * defaults (60 s for the backup and the restore, 30 s for a firmware
	 * transfer). The wait for a unit rebooting after a flash is apart. */
	int64_t reconnect_ms;
} bk_job_opts;
#define BK_JOB_OPTS_INIT                                                                           \
	{                                                                                          \
		BK_JOB_OPTS_VERSION, NULL, 0, NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL,   \
		    NULL, NULL, NULL, NULL, 0                                                      \
	}

/* What a job call ended with. */
typedef struct bk_job_result {
	char id[BK_JOB_ID_SIZE];
	char state[16]; /* "running", "interrupted", "failed", "complete", "aborted" */
	char step[16];  /* the step the job is at (or stopped in) */
	int resumed;    /* an unfinished job of the ticket was continued */
	char *report_json; /* the report (see bk_job_report); NULL before the end */
	char *hint;        /* when the job stopped: what the technician can do */
} bk_job_result;
BK_EXTERN void bk_job_result_clear(bk_job_result *r);

/* Starts the repair of opts->ticket, or continues the ticket's unfinished
 * job (then the source and replacement must be the ones it was started
 * with; BK_EUSER "job-mismatch" otherwise). Returns 0 when the job
 * completed. On failure the job stays resumable: out->state is
 * "interrupted" (a connection, a timeout, a cancel) or "failed" (a
 * refusal that needs the technician), out->step names the step, and the
 * error message begins with "step <name>: ". BK_EBUSY when another process
 * holds the ticket, the job or one of the units (the message names the
 * holder's pid and job). */
BK_EXTERN int bk_job_repair(const bk_config *cfg, const bk_job_opts *opts, bk_job_result *out);

/* Continues job `id` from the step it stopped at. BK_ENOTFOUND for an
 * unknown job; BK_EUSER "job-finished" for a complete or aborted one. */
BK_EXTERN int bk_job_resume(const bk_config *cfg, const char *id, const bk_job_opts *opts,
                            bk_job_result *out);

/* Stops job `id`: a live process running it is sent SIGINT and waited
 * for (up to `wait_ms`, 0: 30000); the job becomes "aborted", its backup
 * is released; nothing is deleted. *out gets the report of what was
 * done. */
BK_EXTERN int bk_job_abort(const bk_config *cfg, const char *id, int64_t wait_ms,
                           bk_job_result *out);

/* One job in a listing. */
typedef struct bk_job_summary {
	char id[BK_JOB_ID_SIZE];
	char ticket[72];
	char state[16];
	char step[16];
	char source[16]; /* "device", "file", "cloud" */
	char old_serial[72];
	char new_serial[72];
	char created[24]; /* RFC 3339 */
	char updated[24];
	char holder[64];  /* "pid 123 on host" while a process runs it, else "" */
} bk_job_summary;

/* Jobs, newest first; `state` (may be NULL) keeps only that state. An
 * unfinished job no live process holds is "interrupted". */
BK_EXTERN int bk_job_list(const bk_config *cfg, const char *state, bk_job_summary **out,
                          size_t *out_count);
BK_EXTERN void bk_job_list_free(bk_job_summary *list);

/* The job's report as JSON (caller frees with bk_free): ticket, both units
 * (serial, model, firmware before and after), the backup (id, payload and
 * manifest digests), every step with its state, timings and outcome, the
 * verification result, the audit head. Also valid for an unfinished job. */
BK_EXTERN int bk_job_report(const bk_config *cfg, const char *id, char **out_json);

/* The audit log as JSON (caller frees): {"job":..., "ticket":..., "events": [{"seq",
 * "time", "step", "kind", "message", "hash"}]} */
BK_EXTERN int bk_job_audit(const bk_config *cfg, const char *id, char **out_json);

/* Recomputes the audit chain. 0 when intact; BK_EVERIFY "audit-broken"
 * naming the first event that was edited, removed or moved. *out_count
 * (may be NULL) gets the number of events checked. */
BK_EXTERN int bk_job_audit_verify(const bk_config *cfg, const char *id, size_t *out_count);

BK_END_DECLS

#endif
