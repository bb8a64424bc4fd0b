/* Reading jobs: the report, the audit log, the listing. */
#include <stdlib.h>
#include <string.h>

#include "libbackup/job/job_internal.h"
#include "libbackup/util/util.h"

static json_t *jstr(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *oget(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return v ? json_incref(v) : json_null();
}

static json_t *dget(const bk_job_row *r, const char *key)
{
	return oget(r->data, key);
}

int bk_job__report_build(bk_catalog *cat, const bk_job_row *r, json_t **out)
{
	json_t *steps = NULL, *o = NULL;
	double total = 0;
	int rc = bk_job__steps_all(cat, r->id, &steps);
	*out = NULL;
	if (rc)
		return rc;
	size_t i;
	json_t *s;
	json_t *verify = NULL;
	json_array_foreach(steps, i, s)
	{
		total += json_real_value(json_object_get(s, "seconds"));
		if (strcmp(json_string_value(json_object_get(s, "name")), "verify") == 0)
			verify = json_object_get(s, "outcome");
	}
	bool verified = json_is_object(verify) &&
	                json_is_true(json_object_get(verify, "digests_match")) &&
	                json_is_true(json_object_get(verify, "identity"));
	o = json_pack(
	    "{s:i, s:s, s:s, s:s, s:s, s:{s:s, s:s}, "
	    "s:{s:o, s:o, s:o}, s:{s:o, s:o, s:o, s:o, s:s}, "
	    "s:{s:o, s:o, s:o, s:o}, s:{s:o, s:o, s:o}, "
	    "s:o, s:f, s:{s:b, s:o, s:o, s:o}, s:{s:I, s:s}, s:s, s:s}",
	    "version", 1, "job", r->id, "ticket", r->ticket, "state", r->state, "step", r->step,
	    "source", "kind", r->source, "ref", r->source_ref,
	    /* old unit */
	    "old_unit", "serial", dget(r, "old_serial"), "model", dget(r, "model"), "firmware",
	    dget(r, "old_firmware"),
	    /* new unit */
	    "new_unit", "serial", dget(r, "new_serial"), "model", dget(r, "new_model"),
	    "firmware_before", dget(r, "new_firmware_before"), "firmware_after",
	    dget(r, "new_firmware_after"), "address", r->to_uri,
	    /* backup */
	    "backup", "id", dget(r, "backup_id"), "payload_digest", dget(r, "payload_digest"),
	    "manifest_digest", dget(r, "manifest_digest"), "schema", dget(r, "schema"),
	    /* identity */
	    "identity", "device_id", dget(r, "device_id"), "owner", dget(r, "owner"),
	    "bundle_fingerprint", dget(r, "bundle_fingerprint"),
	    /* steps */
	    "steps", steps, "seconds", total,
	    /* verification */
	    "verification", "ok", verified, "digests_match",
	    oget(verify, "digests_match"), "identity", oget(verify, "identity"), "domains",
	    oget(verify, "domains"),
	    "audit", "events", (json_int_t)r->audit_count, "head", r->audit_head, "created",
	    r->created, "updated", r->updated);
	steps = NULL;
	if (o == NULL)
		return bk__error_oom();
	if (r->error_code) {
		json_t *err = json_pack("{s:s, s:o, s:o, s:o}", "code", bk_error_code_name(r->error_code),
		                        "reason", jstr(r->error_reason), "message",
		                        jstr(r->error_message), "hint", jstr(r->hint));
		if (err == NULL || json_object_set_new(o, "error", err) != 0) {
			json_decref(o);
			return bk__error_oom();
		}
	}
	*out = o;
	return 0;
}

int bk_job_report(const bk_config *cfg, const char *id, char **out_json)
{
	bk_catalog *cat = NULL;
	bk_job_row r;
	json_t *rep = NULL;
	int rc;
	memset(&r, 0, sizeof(r));
	if (cfg == NULL || id == NULL || out_json == NULL)
		return bk__error_set(BK_EINVALID, NULL, "job: missing argument");
	*out_json = NULL;
	if ((rc = bk_backup_catalog_open(&cat, cfg, 0)) || (rc = bk_job__load(cat, id, &r)))
		goto done;
	/* A job left running by a process that died is interrupted. */
	if (strcmp(r.state, "running") == 0 && !bk_job__lock_held(cat, "job", id, NULL, 0, NULL))
		bk_strlcpy(r.state, "interrupted", sizeof(r.state));
	if ((rc = bk_job__report_build(cat, &r, &rep)))
		goto done;
	char *t = json_dumps(rep, JSON_COMPACT);
	*out_json = t ? bk__strdup(t) : NULL;
	free(t);
	if (*out_json == NULL)
		rc = bk__error_oom();
done:
	json_decref(rep);
	bk_job__row_clear(&r);
	bk_catalog_free(cat);
	return rc;
}

int bk_job_audit(const bk_config *cfg, const char *id, char **out_json)
{
	bk_catalog *cat = NULL;
	bk_job_row r;
	json_t *ev = NULL, *o = NULL;
	int rc;
	memset(&r, 0, sizeof(r));
	if (cfg == NULL || id == NULL || out_json == NULL)
		return bk__error_set(BK_EINVALID, NULL, "job: missing argument");
	*out_json = NULL;
	if ((rc = bk_backup_catalog_open(&cat, cfg, 0)) || (rc = bk_job__load(cat, id, &r)) ||
	    (rc = bk_job__events_all(cat, id, &ev)))
		goto done;
	o = json_pack("{s:s, s:s, s:o}", "job", r.id, "ticket", r.ticket, "events", ev);
	ev = NULL;
	char *t = o ? json_dumps(o, JSON_COMPACT) : NULL;
	*out_json = t ? bk__strdup(t) : NULL;
	free(t);
	if (*out_json == NULL)
		rc = bk__error_oom();
done:
	json_decref(o);
	json_decref(ev);
	bk_job__row_clear(&r);
	bk_catalog_free(cat);
	return rc;
}

int bk_job_list(const bk_config *cfg, const char *state, bk_job_summary **out, size_t *out_count)
{
	bk_catalog *cat = NULL;
	json_t *rows = NULL;
	bk_job_summary *list = NULL;
	size_t n = 0;
	int rc;
	if (cfg == NULL || out == NULL || out_count == NULL)
		return bk__error_set(BK_EINVALID, NULL, "job: missing argument");
	*out = NULL;
	*out_count = 0;
	if (state && strcmp(state, "running") != 0 && strcmp(state, "interrupted") != 0 &&
	    strcmp(state, "failed") != 0 && strcmp(state, "complete") != 0 &&
	    strcmp(state, "aborted") != 0)
		return bk__error_set(BK_EUSER, "bad-state",
		                     "no job state '%s' (running, interrupted, failed, complete, "
		                     "aborted)",
		                     state);
	rc = bk_backup_catalog_open(&cat, cfg, 0);
	if (rc == BK_ENOTFOUND) {
		/* No catalog yet: no jobs. */
		bk_error_clear();
		*out = bk__calloc(1, sizeof(**out));
		return *out ? 0 : bk__error_oom();
	}
	if (rc || (rc = bk_job__list(cat, &rows)))
		goto done;
	list = bk__calloc(json_array_size(rows) + 1, sizeof(*list));
	if (list == NULL) {
		rc = bk__error_oom();
		goto done;
	}
	size_t i;
	json_t *r;
	json_array_foreach(rows, i, r)
	{
		bk_job_summary *s = &list[n];
		bk_strlcpy(s->id, json_string_value(json_object_get(r, "id")), sizeof(s->id));
		bk_strlcpy(s->ticket, json_string_value(json_object_get(r, "ticket")),
		           sizeof(s->ticket));
		bk_strlcpy(s->state, json_string_value(json_object_get(r, "state")),
		           sizeof(s->state));
		bk_strlcpy(s->step, json_string_value(json_object_get(r, "step")), sizeof(s->step));
		bk_strlcpy(s->source, json_string_value(json_object_get(r, "source")),
		           sizeof(s->source));
		bk_strlcpy(s->old_serial, json_string_value(json_object_get(r, "old_serial")),
		           sizeof(s->old_serial));
		bk_strlcpy(s->new_serial, json_string_value(json_object_get(r, "new_serial")),
		           sizeof(s->new_serial));
		bk_strlcpy(s->created, json_string_value(json_object_get(r, "created")),
		           sizeof(s->created));
		bk_strlcpy(s->updated, json_string_value(json_object_get(r, "updated")),
		           sizeof(s->updated));
		if (strcmp(s->state, "running") == 0 || strcmp(s->state, "interrupted") == 0 ||
		    strcmp(s->state, "failed") == 0) {
			int held = bk_job__lock_held(cat, "job", s->id, s->holder, sizeof(s->holder),
			                             NULL);
			if (strcmp(s->state, "running") == 0 && !held)
				bk_strlcpy(s->state, "interrupted", sizeof(s->state));
		}
		if (state == NULL || strcmp(state, s->state) == 0)
			n++;
		else
			memset(s, 0, sizeof(*s));
	}
	*out = list;
	*out_count = n;
	list = NULL;
done:
	bk__free(list);
	json_decref(rows);
	bk_catalog_free(cat);
	return rc;
}

void bk_job_list_free(bk_job_summary *list)
{
	bk__free(list);
}
