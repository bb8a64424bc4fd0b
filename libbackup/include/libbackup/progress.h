/* libbackup: progress reports with named, weighted steps. */
#ifndef LIBBACKUP_PROGRESS_H
#define LIBBACKUP_PROGRESS_H

#include <libbackup/common.h>

BK_BEGIN_DECLS

#define BK_PROGRESS_VERSION 1

typedef struct bk_progress {
	unsigned version;     /* BK_PROGRESS_VERSION */
	const char *subject;  /* what the work is about: a serial, a file name */
	const char *step;     /* the current step's name ("write", "verify") */
	unsigned step_index;  /* 0-based index of the current step */
	unsigned step_count;  /* number of steps */
	uint64_t done;        /* bytes (or items) done in this step */
	uint64_t total;       /* bytes (or items) in this step; 0 if unknown */
	double fraction;      /* 0.0 .. 1.0 over all steps, by their weights */
	double elapsed;       /* seconds since the work started */
} bk_progress;

/* Return 0 to go on; any other value cancels the work, which then fails with
 * BK_ECANCELLED and stays resumable. */
typedef int (*bk_progress_cb)(const bk_progress *p, void *payload);

BK_END_DECLS

#endif
