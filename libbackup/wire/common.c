/* Helpers shared by the backup pull and the restore push. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "libbackup/wire/wire_internal.h"

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void bk_wire__progress_init(bk_wire_progress *p, bk_progress_cb cb, void *payload,
                            const char *subject, unsigned steps)
{
	memset(p, 0, sizeof(*p));
	p->cb = cb;
	p->payload = payload;
	p->subject = subject;
	p->step_count = steps;
	p->started_ms = mono_ms();
}

int bk_wire__progress(bk_wire_progress *p, const char *step, unsigned index, uint64_t done,
                      uint64_t total, int force)
{
	if (p->cb == NULL)
		return 0;
	int64_t now = mono_ms();
	if (!force && done != total && now - p->last_ms < 100)
		return 0;
	p->last_ms = now;
	bk_progress pr;
	memset(&pr, 0, sizeof(pr));
	pr.version = BK_PROGRESS_VERSION;
	pr.subject = p->subject;
	pr.step = step;
	pr.step_index = index;
	pr.step_count = p->step_count;
	pr.done = done;
	pr.total = total;
	double f = total ? (double)done / (double)total : 0.0;
	pr.fraction = p->step_count ? ((double)index + f) / (double)p->step_count : f;
	pr.elapsed = (double)(now - p->started_ms) / 1000.0;
	if (p->cb(&pr, p->payload) != 0)
		return bk__error_set(BK_ECANCELLED, "cancelled", "%s: cancelled",
		                     p->subject ? p->subject : "transfer");
	return 0;
}

typedef struct pass_bridge {
	bk_passphrase_cb cb;
	void *payload;
} pass_bridge;

static int ask_pass(bk_secret **out, const char *prompt, void *payload)
{
	pass_bridge *b = payload;
	char buf[1024];
	size_t n = 0;
	*out = NULL;
	if (b->cb == NULL)
		return bk__error_set(BK_EAUTH, "passphrase-required",
		                     "the identity file is passphrase-protected and no passphrase "
		                     "was given");
	int rc = b->cb(buf, sizeof(buf), &n, prompt, b->payload);
	if (rc == 0 && n > sizeof(buf))
		rc = bk__error_set(BK_EINVALID, NULL, "passphrase too long");
	if (rc == 0)
		rc = bk_secret_from(out, buf, n);
	sodium_memzero(buf, sizeof(buf));
	return rc;
}

int bk_wire__load_identities(bk_age_identities **out, const bk_config *cfg, const char *path,
                             bk_passphrase_cb cb, void *payload)
{
	pass_bridge bridge = {cb, payload};
	*out = NULL;
	if (path == NULL && cfg)
		path = bk_config_get(cfg, "depot.identity");
	if (path == NULL || path[0] == '\0')
		return bk__error_set(BK_EUSER, "no-identity",
		                     "no identity: give -i FILE or set identity in [depot]");
	int rc = bk_age_identities_new(out);
	if (rc == 0)
		rc = bk_age_identities_load(*out, path, 0, ask_pass, &bridge);
	if (rc) {
		bk_age_identities_free(*out);
		*out = NULL;
	}
	return rc;
}

static int add_recipient(json_t *arr, const char *text, const char *what)
{
	bk_age_recipient r;
	char norm[BK_AGE_RECIPIENT_STR_SIZE];
	if (bk_age_recipient_parse(&r, text) != 0)
		return bk__error_set(BK_EUSER, "recipient-invalid",
		                     "%s: '%.80s' is not an age "
		                     "recipient",
		                     what, text);
	bk_age_recipient_format(norm, &r);
	for (size_t i = 0; i < json_array_size(arr); i++)
		if (strcmp(json_string_value(json_array_get(arr, i)), norm) == 0)
			return 0;
	if (json_array_append_new(arr, json_string(norm)) != 0)
		return bk__error_oom();
	return 0;
}

int bk_wire__recipients(json_t **out, const bk_config *cfg, const char *const *list, size_t n,
                        bk_passphrase_cb cb, void *payload)
{
	json_t *arr = json_array();
	bk_age_identities *ids = NULL;
	char *esc = NULL;
	int rc = arr ? 0 : bk__error_oom();
	*out = NULL;
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = add_recipient(arr, list[i], "-r");
	if (rc == 0 && n == 0) {
		const char *idpath = bk_config_get(cfg, "depot.identity");
		if (idpath && idpath[0])
			rc = bk_wire__load_identities(&ids, cfg, idpath, cb, payload);
		for (size_t i = 0; rc == 0 && ids && i < bk_age_identities_count(ids); i++) {
			const bk_age_identity *id;
			bk_age_recipient r;
			char t[BK_AGE_RECIPIENT_STR_SIZE];
			if (bk_age_identities_get(ids, i, &id) != 0)
				continue;
			bk_age_identity_recipient(&r, id);
			bk_age_recipient_format(t, &r);
			rc = add_recipient(arr, t, "depot.identity");
		}
		const char *e = bk_config_get(cfg, "backup.escrow_recipients");
		if (rc == 0 && e && e[0] && (esc = bk__strdup(e)) == NULL)
			rc = bk__error_oom();
		for (char *p = esc; rc == 0 && p && *p;) {
			char *comma = strchr(p, ',');
			if (comma)
				*comma = '\0';
			while (*p == ' ' || *p == '\t')
				p++;
			size_t l = strlen(p);
			while (l && (p[l - 1] == ' ' || p[l - 1] == '\t'))
				p[--l] = '\0';
			if (l)
				rc = add_recipient(arr, p, "backup.escrow_recipients");
			p = comma ? comma + 1 : NULL;
		}
	}
	if (rc == 0 && json_array_size(arr) == 0)
		rc = bk__error_set(BK_EUSER, "no-recipients",
		                   "no recipients: give -r RECIPIENT or set identity in [depot]");
	bk__free(esc);
	bk_age_identities_free(ids);
	if (rc) {
		json_decref(arr);
		return rc;
	}
	*out = arr;
	return 0;
}

int bk_wire__retryable(int rc)
{
	return rc == BK_EDISCONNECTED || rc == BK_ETIMEOUT || rc == BK_EBUSY;
}

int bk_wire__reconnect(bk_device *dev, bk_deadline until, bk_wire_progress *p)
{
	int64_t delay = 100;
	for (;;) {
		int rc = bk_device_reconnect(dev);
		if (rc == 0 || !bk_wire__retryable(rc))
			return rc;
		if (bk_deadline_left(until) <= 0)
			return bk__error_prefix(rc, "%s: gave up reconnecting",
			                        bk_device_get_uri(dev));
		/* Stay responsive to cancellation while waiting. */
		if (p && p->cb) {
			int c = bk_wire__progress(p, "reconnect", 0, 0, 0, 1);
			if (c)
				return c;
		}
		struct timespec ts = {(time_t)(delay / 1000), (long)(delay % 1000) * 1000000L};
		nanosleep(&ts, NULL);
		delay = delay * 2 > 2000 ? 2000 : delay * 2;
	}
}

int bk_wire__info(bk_device *dev, bk_device_info **out, int64_t reconnect_ms, bk_wire_progress *p,
                  unsigned *reconnects)
{
	int rc;
	*out = NULL;
	for (;;) {
		rc = bk_device_info_get(dev, out, 0);
		if (rc == 0 || !bk_wire__retryable(rc))
			return rc;
		if ((rc = bk_wire__reconnect(dev, bk_deadline_in(reconnect_ms), p)))
			return rc;
		(*reconnects)++;
	}
}

int bk_wire__min_battery(const bk_config *cfg, int given)
{
	uint64_t v = 0;
	if (given > 0)
		return given;
	if (cfg && bk_config_get_u64(cfg, "backup.min_battery", &v) == 0 && v <= 100)
		return (int)v;
	return BK_WIRE_MIN_BATTERY_DEFAULT;
}

/* --- The manifest at the start of an archive --- */

typedef struct peek_src {
	bk_stream *in;
	uint8_t buf[65536];
} peek_src;

static la_ssize_t peek_read(struct archive *a, void *data, const void **out)
{
	peek_src *s = data;
	size_t n = 0;
	int rc = bk_stream_read(s->in, s->buf, sizeof(s->buf), &n, BK_DEADLINE_NONE);
	if (rc) {
		archive_set_error(a, EIO, "read failed");
		return -1;
	}
	*out = s->buf;
	return (la_ssize_t)n;
}

int bk_wire__manifest_peek(bk_manifest **out, bk_stream *in)
{
	struct archive *a = archive_read_new();
	struct archive_entry *e = NULL;
	peek_src *src = bk__calloc(1, sizeof(*src));
	uint8_t *buf = NULL;
	int rc = 0;
	bk_archive_limits lim = BK_ARCHIVE_LIMITS_DEFAULT;
	*out = NULL;
	if (a == NULL || src == NULL) {
		rc = bk__error_oom();
		goto done;
	}
	src->in = in;
	archive_read_support_filter_zstd(a);
	archive_read_support_format_tar(a);
	if (archive_read_open(a, src, NULL, peek_read, NULL) != ARCHIVE_OK ||
	    archive_read_next_header(a, &e) != ARCHIVE_OK) {
		const bk_error *le = bk_error_last();
		rc = le->code ? le->code
		              : bk__error_set(BK_EFORMAT, "archive-corrupt",
		                              "memory archive unreadable");
		goto done;
	}
	const char *name = archive_entry_pathname(e);
	int64_t size = archive_entry_size(e);
	if (name == NULL || strcmp(name, BK_MANIFEST_NAME) != 0 || size < 0 ||
	    (uint64_t)size > lim.max_manifest_bytes) {
		rc = bk__error_set(BK_EFORMAT, "manifest-not-first",
		                   "memory archive does not start with its manifest");
		goto done;
	}
	buf = bk__malloc((size_t)size + 1);
	if (buf == NULL) {
		rc = bk__error_oom();
		goto done;
	}
	size_t got = 0;
	while (got < (size_t)size) {
		la_ssize_t n = archive_read_data(a, buf + got, (size_t)size - got);
		if (n <= 0) {
			rc = bk__error_set(BK_EFORMAT, "archive-corrupt", "manifest truncated");
			goto done;
		}
		got += (size_t)n;
	}
	rc = bk_manifest_parse(out, buf, got, &lim);
done:
	bk__free(buf);
	if (a)
		archive_read_free(a);
	bk__free(src);
	return rc;
}
