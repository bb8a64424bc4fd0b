/* Flashing a unit's inactive slot (bk_fw_flash, see firmware.h). */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <jansson.h>
#include <sodium.h>

#include <libbackup/device.h>

#include "firmware/firmware_internal.h"

#define READ_BLOCK        ((size_t)1 << 20) /* bytes read from the bundle file at once */
#define SKIP_BLOCK        ((size_t)1 << 20) /* bytes skipped at once when resuming */
#define BOOT_TIMEOUT_MS   120000
#define MAX_RESUMES       5
#define RECONNECT_WAIT_MS 100

static const bk_progress_step steps[] = {
    {"write", 0.80},
    {"verify", 0.05},
    {"reboot", 0.10},
    {"confirm", 0.05},
};

/* --- Reading the payload bytes in bundle order --------------------------------- */

/* The bundle file as it was when the terminal verified it: the transfer
 * reads the same file, unchanged (the unit checks every digest again before
 * it activates anything, so this is the terminal's early word, not the last
 * line of defence). */
typedef struct file_id {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
} file_id;

static void file_id_of(file_id *id, const struct stat *st)
{
	memset(id, 0, sizeof(*id));
	id->dev = st->st_dev;
	id->ino = st->st_ino;
	id->size = st->st_size;
	id->mtime = st->st_mtim;
	id->ctime = st->st_ctim;
}

static bool file_id_same(const file_id *a, const file_id *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
	       a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

static int bundle_changed(const bk_fw_bundle *b)
{
	return bk__error_set(BK_EVERIFY, "bundle-changed",
	                     "%s: the bundle changed since it was verified", bk_fw_bundle_path(b));
}

typedef struct reader {
	const bk_fw_bundle *b;
	struct archive *a;
	int fd;
	size_t idx;    /* payload being read */
	uint64_t left; /* bytes left in it */
} reader;

static void reader_close(reader *r)
{
	if (r->a)
		archive_read_free(r->a);
	r->a = NULL;
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
}

static int reader_next(reader *r)
{
	const bk_fw_manifest *m = bk_fw__bundle_manifest(r->b);
	struct archive_entry *e;
	for (;;) {
		int x = archive_read_next_header(r->a, &e);
		if (x != ARCHIVE_OK)
			return bk__error_set(BK_EFORMAT, "payload-missing",
			                     "%s: payload %s is missing", bk_fw_bundle_path(r->b),
			                     m->payloads[r->idx].name);
		const char *name = archive_entry_pathname(e);
		if (name && (strcmp(name, BK_FW_MANIFEST_NAME) == 0 ||
		             strcmp(name, BK_FW_SIGNATURE_NAME) == 0))
			continue;
		if (name == NULL || strcmp(name, m->payloads[r->idx].name) != 0)
			return bk__error_set(BK_EFORMAT, "unexpected-entry",
			                     "%s: entry %s where payload %s belongs",
			                     bk_fw_bundle_path(r->b), name ? name : "(unnamed)",
			                     m->payloads[r->idx].name);
		if (archive_entry_size(e) < 0 ||
		    (uint64_t)archive_entry_size(e) != m->payloads[r->idx].size)
			return bk__error_set(BK_EFORMAT, "payload-size",
			                     "%s: payload %s is not the size its manifest says",
			                     bk_fw_bundle_path(r->b), m->payloads[r->idx].name);
		r->left = m->payloads[r->idx].size;
		return 0;
	}
}

/* Opens the bundle file; with `id`, it must still be the file verified. */
static int reader_open(reader *r, const bk_fw_bundle *b, const file_id *id)
{
	struct stat st;
	file_id now;
	memset(r, 0, sizeof(*r));
	r->b = b;
	r->fd = open(bk_fw_bundle_path(b), O_RDONLY | O_CLOEXEC);
	if (r->fd < 0)
		return bk__error_errno(errno, "%s", bk_fw_bundle_path(b));
	if (id) {
		if (fstat(r->fd, &st) != 0) {
			int rc = bk__error_errno(errno, "%s", bk_fw_bundle_path(b));
			reader_close(r);
			return rc;
		}
		file_id_of(&now, &st);
		if (!file_id_same(&now, id)) {
			reader_close(r);
			return bundle_changed(b);
		}
	}
	r->a = archive_read_new();
	if (r->a == NULL) {
		reader_close(r);
		return bk__error_oom();
	}
	if (archive_read_support_format_tar(r->a) != ARCHIVE_OK ||
	    archive_read_open_fd(r->a, r->fd, READ_BLOCK) != ARCHIVE_OK) {
		int rc = bk__error_set(BK_EIO, "bundle-unreadable", "%s: %s", bk_fw_bundle_path(b),
		                       archive_error_string(r->a));
		reader_close(r);
		return rc;
	}
	if (bk_fw__bundle_manifest(b)->payload_count == 0)
		return 0;
	int rc = reader_next(r);
	if (rc)
		reader_close(r);
	return rc;
}

/* With `id`: the file read is still the one verified. */
static int reader_unchanged(reader *r, const file_id *id)
{
	struct stat st;
	file_id now;
	if (id == NULL)
		return 0;
	if (fstat(r->fd, &st) != 0)
		return bk__error_errno(errno, "%s", bk_fw_bundle_path(r->b));
	file_id_of(&now, &st);
	return file_id_same(&now, id) ? 0 : bundle_changed(r->b);
}

/* Reads exactly `len` bytes of the concatenated payloads. */
static int reader_read(reader *r, uint8_t *buf, size_t len)
{
	const bk_fw_manifest *m = bk_fw__bundle_manifest(r->b);
	while (len > 0) {
		if (r->left == 0) {
			if (++r->idx >= m->payload_count)
				return bk__error_set(BK_EFORMAT, "payload-truncated",
				                     "%s: payloads end early",
				                     bk_fw_bundle_path(r->b));
			int rc = reader_next(r);
			if (rc)
				return rc;
			continue;
		}
		size_t want = len < r->left ? len : (size_t)r->left;
		la_ssize_t n = archive_read_data(r->a, buf, want);
		if (n <= 0)
			return bk__error_set(BK_EFORMAT, "payload-truncated",
			                     "%s: payload %s is truncated", bk_fw_bundle_path(r->b),
			                     m->payloads[r->idx].name);
		buf += n;
		len -= (size_t)n;
		r->left -= (uint64_t)n;
	}
	return 0;
}

static int reader_skip(reader *r, uint8_t *buf, size_t cap, uint64_t n)
{
	while (n > 0) {
		size_t k = n < cap ? (size_t)n : cap;
		int rc = reader_read(r, buf, k);
		if (rc)
			return rc;
		n -= k;
	}
	return 0;
}

/* --- The procedure --------------------------------------------------------------- */

typedef struct flash {
	bk_device *dev;
	bk_fw_bundle *b;
	const bk_fw_flash_opts *o;
	bk_fw_flash_result *res;
	bk_progress_tracker pt;
	file_id id;       /* the bundle file verified (unless skip_terminal_checks) */
	reader r;         /* the transfer's reader */
	uint64_t next;    /* the next offset the reader gives */
	uint8_t *scratch; /* SKIP_BLOCK bytes */
	uint64_t total;
	char slot[8];
} flash;

/* The transfer's data: read straight from the bundle in the order the
 * requests go out, so the pipeline of requests never drains between blocks
 * (and no byte is copied twice on the terminal). */
static int source(void *payload, uint64_t offset, void *buf, size_t len)
{
	flash *f = payload;
	if (offset != f->next)
		return bk__error_set(
		    BK_ERROR, "out-of-order",
		    "firmware flash: data asked at %llu, the bundle is read at %llu",
		    (unsigned long long)offset, (unsigned long long)f->next);
	int rc = reader_read(&f->r, buf, len);
	if (rc == 0) {
		f->next += len;
		rc = bk_progress_update(&f->pt, offset, false);
	}
	return rc;
}
static const char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

static int call_json(flash *f, int type, json_t *body, json_t **out, int64_t timeout_ms)
{
	char *text = NULL, *reply = NULL;
	int rc = 0;
	if (body && (text = json_dumps(body, JSON_COMPACT)) == NULL)
		return bk__error_oom();
	rc =
	    bk_device_call(f->dev, type, text, &reply, timeout_ms ? bk_deadline_in(timeout_ms) : 0);
	free(text);
	if (rc == 0 && out) {
		*out = json_loads(reply ? reply : "{}", 0, NULL);
		if (*out == NULL)
			rc = bk__error_set(BK_EFORMAT, "bad-reply",
			                   "%s: the unit's answer is not JSON",
			                   bk_device_serial(f->dev));
	}
	bk_free(reply);
	return rc;
}

/* FW_BEGIN: the unit names the slot and the bytes it already holds. */
static int begin(flash *f, uint64_t *out_offset)
{
	size_t ml = 0, sl = 0;
	const uint8_t *man = bk_fw_bundle_manifest(f->b, &ml);
	const uint8_t *sig = bk_fw_bundle_signature(f->b, &sl);
	json_t *body = json_pack("{s:s%, s:s%}", "manifest", (const char *)man, ml, "signature",
	                         (const char *)sig, sl);
	json_t *ans = NULL;
	int rc = body ? call_json(f, BK_DEVICE_FW_BEGIN, body, &ans, 0) : bk__error_oom();
	if (rc == 0) {
		json_t *off = json_object_get(ans, "offset");
		const char *slot = jstr(ans, "slot");
		if (!json_is_integer(off) || json_integer_value(off) < 0 ||
		    (uint64_t)json_integer_value(off) > f->total || slot[0] == '\0' ||
		    strlen(slot) >= sizeof(f->slot))
			rc = bk__error_set(BK_EFORMAT, "bad-reply",
			                   "%s: FW_BEGIN answer without a valid slot and offset",
			                   bk_device_serial(f->dev));
		else {
			*out_offset = (uint64_t)json_integer_value(off);
			bk_strlcpy(f->slot, slot, sizeof(f->slot));
			bk_strlcpy(f->res->slot, slot, sizeof(f->res->slot));
		}
	}
	json_decref(body);
	json_decref(ans);
	return rc;
}

/* Sends bytes [offset, total) from the bundle, in one pipeline of requests. */
static int send_from(flash *f, uint64_t offset)
{
	const file_id *id = f->o->skip_terminal_checks ? NULL : &f->id;
	bk_device_xfer_opts xo = BK_DEVICE_XFER_OPTS_INIT;
	uint64_t done = 0;
	int rc = reader_open(&f->r, f->b, id);
	if (rc == 0)
		rc = reader_skip(&f->r, f->scratch, SKIP_BLOCK, offset);
	f->next = offset;
	if (rc == 0 && offset < f->total) {
		rc = bk_device_write_range(f->dev, BK_DEVICE_FW_WRITE, offset, f->total - offset,
		                           source, f, &xo, &done);
		f->res->sent += done;
	}
	if (rc == 0)
		rc = reader_unchanged(&f->r, id);
	if (rc == 0)
		rc = bk_progress_update(&f->pt, f->total, true);
	reader_close(&f->r);
	return rc;
}

static void pause_ms(int64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* Reconnects until `d`; the last failure stays the last error. */
static int reconnect_until(flash *f, bk_deadline d)
{
	for (;;) {
		int rc = bk_device_reconnect(f->dev);
		if (rc == 0 || rc == BK_EAUTH || rc == BK_EINVALID || rc == BK_ENOTFOUND)
			return rc;
		if (bk_deadline_left(d) == 0)
			return rc;
		pause_ms(RECONNECT_WAIT_MS);
		int prc = bk_progress_update(&f->pt, f->pt.last_done, false);
		if (prc)
			return prc;
	}
}

static bool lost(int rc)
{
	return rc == BK_EDISCONNECTED || rc == BK_ETIMEOUT;
}

static int transfer(flash *f)
{
	uint64_t offset = 0;
	unsigned max = f->o->max_resumes ? f->o->max_resumes : MAX_RESUMES;
	int rc = begin(f, &offset);
	if (rc)
		return rc;
	f->res->resumed_from = offset;
	rc = bk_progress_step_begin(&f->pt, "write", f->total);
	if (rc == 0)
		rc = bk_progress_update(&f->pt, offset, true);
	while (rc == 0) {
		rc = send_from(f, offset);
		if (rc == 0 || !lost(rc) || f->res->resumes >= max)
			break;
		/* Resume from what the unit holds. */
		f->res->resumes++;
		bk__log(BK_LOG_INFO, "firmware",
		        "%s: connection lost during the transfer; resuming",
		        bk_device_serial(f->dev));
		rc = reconnect_until(f, bk_deadline_in(f->o->reconnect_timeout_ms
		                                           ? f->o->reconnect_timeout_ms
		                                           : 30000));
		if (rc == 0)
			rc = begin(f, &offset);
		f->res->resume_offset = offset;
	}
	return rc;
}

static int preflight(flash *f, bk_device_info *info)
{
	const bk_fw_flash_opts *o = f->o;
	if (strcmp(info->state, "idle") != 0)
		return bk__error_set(BK_EBUSY, "unit-busy",
		                     "%s is %s: a firmware update needs an idle unit",
		                     bk_device_serial(f->dev), info->state);
	for (size_t i = 0; i < info->slot_count; i++)
		if (info->slots[i].running)
			bk_strlcpy(f->res->previous_slot, info->slots[i].name,
			           sizeof(f->res->previous_slot));
	if (o->skip_terminal_checks)
		return 0;
	if (info->battery < o->min_battery)
		return bk__error_set(BK_EINCOMPAT, "battery-low",
		                     "%s: battery at %d%%, a firmware update needs %d%%",
		                     bk_device_serial(f->dev), info->battery, o->min_battery);
	if (o->trusted_keys == NULL)
		return bk__error_set(BK_EUSER, "no-firmware-keys",
		                     "no trusted firmware keys (trust.firmware_keys)");
	bk_fw_unit unit = BK_FW_UNIT_INIT;
	unit.model = info->model;
	unit.hw_rev = info->hw_revision;
	unit.security_counter =
	    info->security_counter > UINT32_MAX ? UINT32_MAX : (uint32_t)info->security_counter;
	unit.schema = info->memory_schema > INT64_MAX ? INT64_MAX : (int64_t)info->memory_schema;
	bk_fw_verify_opts vo = BK_FW_VERIFY_OPTS_INIT;
	vo.trusted_keys = o->trusted_keys;
	vo.revoked_key_ids = o->revoked_key_ids;
	vo.unit = &unit;
	/* The file verified is the file sent: its identity before and after
	 * the check, and again while it is read for the transfer. */
	struct stat st;
	file_id after;
	if (stat(bk_fw_bundle_path(f->b), &st) != 0)
		return bk__error_errno(errno, "%s", bk_fw_bundle_path(f->b));
	file_id_of(&f->id, &st);
	int rc = bk_fw_bundle_verify(f->b, &vo);
	if (rc)
		return rc;
	if (stat(bk_fw_bundle_path(f->b), &st) != 0)
		return bk__error_errno(errno, "%s", bk_fw_bundle_path(f->b));
	file_id_of(&after, &st);
	return file_id_same(&f->id, &after) ? 0 : bundle_changed(f->b);
}

/* After REBOOT: the unit comes back and says what it booted. */
static int confirm(flash *f)
{
	int64_t wait = f->o->boot_timeout_ms ? f->o->boot_timeout_ms : BOOT_TIMEOUT_MS;
	json_t *st = NULL;
	int rc = bk_progress_step_begin(&f->pt, "reboot", 0);
	if (rc == 0)
		rc = reconnect_until(f, bk_deadline_in(wait));
	if (rc && lost(rc)) {
		/* One last look at the unit before saying anything. */
		if (reconnect_until(f, bk_deadline_in(wait < 2000 ? wait : 2000)) == 0)
			rc = 0;
		else
			return bk__error_set(
			    BK_ETIMEOUT, "unit-not-back",
			    "%s did not come back within %lld ms after the reboot; "
			    "its slot state is unknown (check it with info once it "
			    "answers)",
			    bk_device_serial(f->dev), (long long)wait);
	}
	if (rc == 0)
		rc = bk_progress_step_begin(&f->pt, "confirm", 0);
	if (rc == 0)
		rc = call_json(f, BK_DEVICE_BOOT_STATUS, NULL, &st, 0);
	if (rc)
		goto done;
	const char *running = jstr(st, "running"), *result = jstr(st, "result");
	const char *slot = jstr(st, "slot");
	bk_strlcpy(f->res->running_slot, running, sizeof(f->res->running_slot));
	bk_strlcpy(f->res->boot_result, result, sizeof(f->res->boot_result));
	json_t *sc = json_object_get(st, "security_counter");
	f->res->security_counter = json_is_integer(sc) ? (uint64_t)json_integer_value(sc) : 0;
	if (strcmp(running, f->slot) == 0 && strcmp(result, "good") == 0 &&
	    strcmp(slot, f->slot) == 0)
		rc = 0;
	else if (strcmp(result, "rolled-back") == 0 && strcmp(slot, f->slot) == 0)
		rc = bk__error_set(
		    BK_EROLLBACK, "firmware-rolled-back",
		    "%s: firmware %s failed its first boot in slot %s; the unit went "
		    "back to slot %s",
		    bk_device_serial(f->dev), bk_fw_bundle_version(f->b), f->slot, running);
	else
		rc = bk__error_set(BK_ERROR, "boot-undecided",
		                   "%s: after the reboot the unit runs slot %s (last boot result "
		                   "'%s' for slot '%s'), not the new firmware",
		                   bk_device_serial(f->dev), running, result, slot);
	if (rc == 0)
		rc = bk_progress_update(&f->pt, 0, true);
done:
	json_decref(st);
	return rc;
}

int bk_fw_flash(bk_device *dev, bk_fw_bundle *b, const bk_fw_flash_opts *opts)
{
	bk_fw_flash_result scratch;
	bk_device_info *info = NULL;
	flash f;
	json_t *body = NULL;
	int rc = 0;
	if (dev == NULL || b == NULL || opts == NULL || opts->version != BK_FW_FLASH_OPTS_VERSION)
		return bk__error_set(BK_EINVALID, NULL, "firmware flash: bad arguments");
	memset(&f, 0, sizeof(f));
	f.dev = dev;
	f.b = b;
	f.o = opts;
	f.res = opts->result ? opts->result : &scratch;
	memset(f.res, 0, sizeof(*f.res));
	f.total = bk_fw_bundle_payload_bytes(b);
	f.res->bytes = f.total;
	bk_progress_init(&f.pt, opts->progress, opts->progress_payload, bk_device_serial(dev),
	                 steps, (unsigned)BK_ARRAY_LEN(steps));
	f.r.fd = -1;
	if (bk_fw_bundle_path(b) == NULL) {
		rc = bk__error_set(BK_EINVALID, NULL, "firmware flash: the bundle must be a file");
		goto done;
	}
	f.scratch = bk__malloc(SKIP_BLOCK);
	if (f.scratch == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	rc = bk_device_info_get(dev, &info, 0);
	if (rc == 0)
		rc = preflight(&f, info);
	if (rc == 0)
		rc = transfer(&f);
	/* The unit checks the signature again and re-reads whatever it could not
	 * hash as it arrived (payloads complete before a resume): allow it time. */
	if (rc == 0)
		rc = bk_progress_step_begin(&f.pt, "verify", 0);
	if (rc == 0)
		rc = call_json(&f, BK_DEVICE_FW_FINISH, NULL, NULL,
		               60000 + (int64_t)(f.total / (20u << 20)) * 1000);
	if (rc == 0 && (body = json_pack("{s:s, s:b}", "slot", f.slot, "boot_once", 1)) == NULL)
		rc = bk__error_oom();
	if (rc == 0)
		rc = call_json(&f, BK_DEVICE_FW_ACTIVATE, body, NULL, 0);
	if (rc == 0) {
		rc = call_json(&f, BK_DEVICE_REBOOT, NULL, NULL, 0);
		/* A unit that drops the line before its answer reboots all the same. */
		if (rc == BK_EDISCONNECTED)
			rc = 0;
	}
	if (rc == 0)
		rc = confirm(&f);
done:
	json_decref(body);
	bk_device_info_free(info);
	bk__free(f.scratch);
	return rc;
}
