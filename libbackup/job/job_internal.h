/* Internal: the repair journal (jobs, steps, audit chain) and the locks. */
#ifndef BK_JOB_INTERNAL_H
#define BK_JOB_INTERNAL_H

#include <jansson.h>
#include <sys/types.h>

#include <libbackup/backup.h>
#include <libbackup/catalog.h>
#include <libbackup/job.h>

enum {
	BK_JOB_STEP_PREFLIGHT,
	BK_JOB_STEP_BACKUP,
	BK_JOB_STEP_FIRMWARE,
	BK_JOB_STEP_REASSIGN,
	BK_JOB_STEP_RESTORE,
	BK_JOB_STEP_IDENTITY,
	BK_JOB_STEP_VERIFY,
	BK_JOB_STEP_COMPLETE,
	BK_JOB_STEPS
};

/* 64 hex digits and a NUL. */
#define BK_JOB_HASH_HEX 65

/* A job's row, as loaded. */
typedef struct bk_job_row {
	char id[BK_JOB_ID_SIZE];
	char *ticket;
	char source[16];
	char *source_ref;
	char *from_uri; /* NULL for file and cloud sources */
	char *to_uri;
	char *firmware_dir;
	int overwrite;
	char state[16];
	char step[16];
	char created[24];
	char updated[24];
	char *holder;
	json_t *data; /* what the steps learnt (object) */
	int error_code;
	char *error_reason;
	char *error_message;
	char *hint;
	int64_t audit_count;
	char audit_head[BK_JOB_HASH_HEX];
	char *report;
} bk_job_row;

void bk_job__row_clear(bk_job_row *r);

/* The catalog the journal lives in (created when missing). */
int bk_job__db(bk_catalog **out, const bk_config *cfg);
/* The catalog's path (borrowed). */
const char *bk_job__db_path(bk_catalog *cat);

/* A new job row with its first audit event ("job-created"). */
int bk_job__create(bk_catalog *cat, const bk_job_row *r);
/* The unfinished job of `ticket` (BK_ENOTFOUND when none). */
int bk_job__find_open(bk_catalog *cat, const char *ticket, char id[BK_JOB_ID_SIZE]);
int bk_job__load(bk_catalog *cat, const char *id, bk_job_row *out);

/* A step starts: its row "running" (attempts + 1), the job's step and state
 * "running", the holder recorded, an audit event "step-begin". */
int bk_job__step_begin(bk_catalog *cat, const char *id, const char *step, const char *holder,
                       const char *message);
/* A step ended ("done" or "skipped"): its row, the job's data and next
 * step, an audit event ("step-done" / "step-skipped"), in one
 * transaction. */
int bk_job__step_end(bk_catalog *cat, const char *id, const char *step, const char *state,
                     const json_t *outcome, const json_t *data, const char *next,
                     const char *message);
/* The job stops in `state` (its step row "failed" for a failure). `code`
 * 0 clears the error. */
int bk_job__stop(bk_catalog *cat, const char *id, const char *state, int code, const char *reason,
                 const char *message, const char *hint, const char *kind, const char *event);
/* New addresses for the units (NULL: unchanged), with an audit event. */
int bk_job__set_uris(bk_catalog *cat, const char *id, const char *from_uri, const char *to_uri);
/* Saves the report (the job's `report` column). */
int bk_job__save_report(bk_catalog *cat, const char *id, const char *report);
/* Appends one audit event in its own transaction. */
int bk_job__event(bk_catalog *cat, const char *id, const char *step, const char *kind,
                  const char *message);

/* Events not yet uploaded, in order: an array of {seq, time, step, kind,
 * message, hash}. */
int bk_job__events_pending(bk_catalog *cat, const char *id, json_t **out);
int bk_job__events_mark_uploaded(bk_catalog *cat, const char *id, int64_t upto_seq);
/* The whole log (JSON array) and the step rows (JSON array). */
int bk_job__events_all(bk_catalog *cat, const char *id, json_t **out);
int bk_job__steps_all(bk_catalog *cat, const char *id, json_t **out);

/* Lists jobs (newest first), `state` NULL for all; the derived
 * "interrupted" state needs the locks, so the caller completes it. */
int bk_job__list(bk_catalog *cat, json_t **out);

/* --- Locks --------------------------------------------------------------------------- */

typedef struct bk_job_lock bk_job_lock;

/* Takes the lock "<kind>-<name>" in the locks folder beside the database,
 * without waiting: BK_EBUSY naming the holder ("pid N on HOST, job J,
 * since T") when a live process has it. The lock of a process that died
 * is free (flock). */
int bk_job__lock(bk_catalog *cat, const char *kind, const char *name, const char *job,
                 bk_job_lock **out);
void bk_job__unlock(bk_job_lock *l);
/* Whether a live process holds the lock; `holder` gets its description. */
int bk_job__lock_held(bk_catalog *cat, const char *kind, const char *name, char *holder,
                      size_t cap, pid_t *pid);

/* "pid N on HOST" for this process. */
void bk_job__whoami(char *out, size_t cap);

/* The report JSON of a job (new reference). */
int bk_job__report_build(bk_catalog *cat, const bk_job_row *r, json_t **out);

#endif
