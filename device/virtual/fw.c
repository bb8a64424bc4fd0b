/* The virtual robot's firmware slots (see fw.h). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "device/virtual/fw.h"
#include "firmware/firmware_internal.h"

#define SYNC_EVERY  ((uint64_t)32 << 20) /* durable progress every 32 MiB */
#define SYNC_AHEAD  ((uint64_t)4 << 20)  /* writeback started every 4 MiB */
#define HASH_BUF    ((size_t)1 << 20)    /* bytes read at once when re-hashing */
#define REVOKED_MAX 32
#define MIN64(a, b) ((a) < (b) ? (a) : (b))

struct bk_vfw {
	bk_vunit *u;
	pthread_mutex_t lock;
	int64_t boot_time_ms;
	bool boot_fail;
	bool reboot_pending;
	struct timespec boot_until;
	/* The transfer in progress (this power cycle). */
	bk_fw_manifest *m;
	char slot[8];
	int fd;
	uint64_t total;
	uint64_t written;  /* bytes received and checked */
	uint64_t synced;   /* bytes durable (recorded in fw_staging) */
	uint64_t flushing; /* bytes whose writeback was started */
	size_t cur;        /* payload the next byte belongs to */
	uint64_t cur_start;
	size_t live_from; /* payloads before it were complete at FW_BEGIN */
	crypto_generichash_state h;
	/* The slot FW_FINISH verified in this power cycle, and its image file
	 * then (FW_ACTIVATE re-hashes anything else). */
	char verified[8];
	struct stat verified_st;
};

static const char tables_sql[] =
    "CREATE TABLE IF NOT EXISTS fw_state ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1), security_counter INTEGER NOT NULL,"
    "  trial_slot TEXT NOT NULL, attempts INTEGER NOT NULL, last_result TEXT NOT NULL,"
    "  last_slot TEXT NOT NULL, boots INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS fw_staging ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1), slot TEXT NOT NULL, manifest BLOB NOT NULL,"
    "  signature BLOB NOT NULL, total INTEGER NOT NULL, written INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS fw_slots ("
    "  name TEXT PRIMARY KEY, size INTEGER NOT NULL, digest TEXT NOT NULL);"
    "INSERT OR IGNORE INTO fw_state SELECT 1, s.security_counter, '', 0, 'none', '', 0"
    "  FROM slots s, unit u WHERE u.id = 1 AND s.name = u.running_slot;";

/* --- Database helpers ---------------------------------------------------------- */

static int db_fail(sqlite3 *db, const char *what)
{
	return bk__error_set(BK_EIO, "unit-db", "unit database: %s: %s", what, sqlite3_errmsg(db));
}

static int exec(sqlite3 *db, const char *sql, const char *what)
{
	char *err = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
		int rc = bk__error_set(BK_EIO, "unit-db", "unit database: %s: %s", what,
		                       err ? err : "failed");
		sqlite3_free(err);
		return rc;
	}
	return 0;
}

/* Commits (rc == 0) or rolls back a transaction. */
static int end_tx(sqlite3 *db, int rc, const char *what)
{
	if (rc) {
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return rc;
	}
	return exec(db, "COMMIT", what);
}

/* Runs one statement with text/int64 arguments described by `types`
 * ('t' text, 'i' int64, 'b' blob followed by its length). */
static int run(sqlite3 *db, const char *sql, const char *types, ...)
{
	sqlite3_stmt *st = NULL;
	va_list ap;
	int rc = 0, i = 1;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_fail(db, "prepare");
	va_start(ap, types);
	for (const char *t = types; *t; t++, i++) {
		if (*t == 't') {
			sqlite3_bind_text(st, i, va_arg(ap, const char *), -1, SQLITE_TRANSIENT);
		} else if (*t == 'i') {
			sqlite3_bind_int64(st, i, va_arg(ap, int64_t));
		} else {
			const void *p = va_arg(ap, const void *);
			size_t n = va_arg(ap, size_t);
			sqlite3_bind_blob(st, i, p, (int)n, SQLITE_TRANSIENT);
		}
	}
	va_end(ap);
	if (sqlite3_step(st) != SQLITE_DONE)
		rc = db_fail(db, "update");
	sqlite3_finalize(st);
	return rc;
}

typedef struct fw_state {
	int64_t security_counter;
	char trial[8];
	int64_t attempts;
	char result[16];
	char last[8];
	char running[8];
	char model[BK_FW_MODEL_MAX + 1];
	char hw_rev[BK_FW_HW_REV_MAX + 1];
	char state[32];
} fw_state;

static int read_state(sqlite3 *db, fw_state *s)
{
	sqlite3_stmt *st = NULL;
	int rc = 0;
	memset(s, 0, sizeof(*s));
	if (sqlite3_prepare_v2(db,
	                       "SELECT f.security_counter, f.trial_slot, f.attempts, f.last_result,"
	                       " f.last_slot, u.running_slot, u.model, u.hw_revision, u.state"
	                       " FROM fw_state f, unit u WHERE f.id = 1 AND u.id = 1",
	                       -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW) {
		rc = db_fail(db, "read the firmware state");
		goto done;
	}
	s->security_counter = sqlite3_column_int64(st, 0);
	bk_strlcpy(s->trial, (const char *)sqlite3_column_text(st, 1), sizeof(s->trial));
	s->attempts = sqlite3_column_int64(st, 2);
	bk_strlcpy(s->result, (const char *)sqlite3_column_text(st, 3), sizeof(s->result));
	bk_strlcpy(s->last, (const char *)sqlite3_column_text(st, 4), sizeof(s->last));
	bk_strlcpy(s->running, (const char *)sqlite3_column_text(st, 5), sizeof(s->running));
	bk_strlcpy(s->model, (const char *)sqlite3_column_text(st, 6), sizeof(s->model));
	bk_strlcpy(s->hw_rev, (const char *)sqlite3_column_text(st, 7), sizeof(s->hw_rev));
	bk_strlcpy(s->state, (const char *)sqlite3_column_text(st, 8), sizeof(s->state));
done:
	sqlite3_finalize(st);
	return rc;
}

static const char *other_slot(const char *s)
{
	return strcmp(s, "A") == 0 ? "B" : "A";
}

static char *slot_path(bk_vfw *fw, const char *slot)
{
	return bk__asprintf("%s/%s/%s.img", bk_vunit_dir(fw->u), BK_VFW_SLOTS_DIR, slot);
}

/* --- Boot ---------------------------------------------------------------------- */

/* BLAKE2b of `len` bytes of `fd` from `off` (digest of `dlen` bytes). */
static int hash_range(int fd, const char *slot, uint64_t off, uint64_t len, uint8_t *d, size_t dlen)
{
	uint8_t *buf = bk__malloc(HASH_BUF);
	crypto_generichash_state h;
	int rc = 0;
	if (buf == NULL)
		return BK_ENOMEM;
	crypto_generichash_init(&h, NULL, 0, dlen);
	while (len > 0) {
		ssize_t r = pread(fd, buf, (size_t)MIN64((uint64_t)HASH_BUF, len), (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = r < 0 ? bk__error_errno(errno, "slot %s: cannot read", slot)
			           : bk__error_set(BK_EVERIFY, "slot-invalid",
			                           "slot %s: image shorter than its header", slot);
			break;
		}
		crypto_generichash_update(&h, buf, (unsigned long long)r);
		off += (uint64_t)r;
		len -= (uint64_t)r;
	}
	crypto_generichash_final(&h, d, dlen);
	bk__free(buf);
	return rc;
}

/* Checks an image against a slot header digest: "SIZE:HEX,..." (each
 * payload's BLAKE2b-512, in image order), or the whole image's BLAKE2b-256
 * (64 hex digits) for a slot written by an earlier version. 0 when the
 * image matches, 1 when it does not, or an error. */
static int digest_check(int fd, const char *slot, const char *want, uint64_t size)
{
	uint8_t d[BK_FW_DIGEST_LEN];
	char hex[2 * BK_FW_DIGEST_LEN + 1];
	uint64_t off = 0;
	int rc;
	if (strlen(want) == 64 && strchr(want, ':') == NULL) {
		rc = hash_range(fd, slot, 0, size, d, 32);
		if (rc)
			return rc;
		bk_hex_encode(hex, d, 32);
		return sodium_memcmp(hex, want, 64) == 0 ? 0 : 1;
	}
	for (const char *p = want; *p;) {
		uint64_t n = 0;
		size_t digits = 0;
		for (; *p >= '0' && *p <= '9' && digits < 19; p++, digits++)
			n = n * 10 + (uint64_t)(*p - '0');
		if (digits == 0 || *p != ':' || strlen(p + 1) < 2 * BK_FW_DIGEST_LEN ||
		    n > size - off)
			return 1;
		p++;
		rc = hash_range(fd, slot, off, n, d, BK_FW_DIGEST_LEN);
		if (rc)
			return rc;
		bk_hex_encode(hex, d, BK_FW_DIGEST_LEN);
		if (sodium_memcmp(hex, p, 2 * BK_FW_DIGEST_LEN) != 0)
			return 1;
		off += n;
		p += 2 * BK_FW_DIGEST_LEN;
		if (*p == ',')
			p++;
		else if (*p != '\0')
			return 1;
	}
	return off == size ? 0 : 1;
}

/* The slot header digest of the image a manifest describes (see
 * digest_check). */
static char *slot_digest(const bk_fw_manifest *m)
{
	size_t cap = m->payload_count * (2 * BK_FW_DIGEST_LEN + 24) + 1, len = 0;
	char *s = bk__malloc(cap);
	if (s == NULL)
		return NULL;
	s[0] = '\0';
	for (size_t i = 0; i < m->payload_count; i++)
		len +=
		    (size_t)snprintf(s + len, cap - len, "%s%llu:%s", i ? "," : "",
		                     (unsigned long long)m->payloads[i].size, m->payloads[i].hex);
	return s;
}

/* Hashes a slot image and compares it with its header. */
static int slot_check(bk_vfw *fw, const char *slot)
{
	sqlite3 *db = bk_vunit_db(fw->u);
	sqlite3_stmt *st = NULL;
	struct stat sb;
	char *want = NULL;
	int64_t size = -1;
	int fd = -1, rc = 0;
	char *p = slot_path(fw, slot);
	if (p == NULL)
		return BK_ENOMEM;
	if (sqlite3_prepare_v2(db, "SELECT size, digest FROM fw_slots WHERE name = ?1", -1, &st,
	                       NULL) != SQLITE_OK) {
		rc = db_fail(db, "read the slot header");
		goto done;
	}
	sqlite3_bind_text(st, 1, slot, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		size = sqlite3_column_int64(st, 0);
		want = bk__strdup((const char *)sqlite3_column_text(st, 1));
		if (want == NULL) {
			rc = BK_ENOMEM;
			goto done;
		}
	}
	if (size < 0) {
		rc = bk__error_set(BK_EVERIFY, "slot-invalid", "slot %s has no header", slot);
		goto done;
	}
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = bk__error_set(BK_EVERIFY, "slot-invalid", "slot %s: no image", slot);
		goto done;
	}
	if (fstat(fd, &sb) != 0) {
		rc = bk__error_errno(errno, "slot %s: cannot read", slot);
		goto done;
	}
	rc = (uint64_t)sb.st_size == (uint64_t)size ? digest_check(fd, slot, want, (uint64_t)size)
	                                            : 1;
	if (rc == 1)
		rc = bk__error_set(BK_EVERIFY, "slot-invalid",
		                   "slot %s: image does not match its header", slot);
done:
	if (fd >= 0)
		close(fd);
	sqlite3_finalize(st);
	bk__free(want);
	bk__free(p);
	return rc;
}

/* The boot sequence: tries a slot armed for a trial boot, or abandons it. */
static int boot(bk_vfw *fw)
{
	sqlite3 *db = bk_vunit_db(fw->u);
	fw_state s;
	int rc = read_state(db, &s);
	if (rc == 0)
		rc = exec(db, "UPDATE fw_state SET boots = boots + 1", "boot");
	if (rc || s.trial[0] == '\0')
		return rc;
	if (s.attempts > 0) {
		/* The attempt is spent before the slot runs: a boot that never
		 * finishes counts. */
		rc = exec(db, "UPDATE fw_state SET attempts = attempts - 1", "boot attempt");
		if (rc == 0)
			rc = bk_vunit_step(fw->u, "boot", 0);
		if (rc)
			return rc;
		bool healthy = !fw->boot_fail && slot_check(fw, s.trial) == 0;
		if (healthy) {
			rc = exec(db, "BEGIN IMMEDIATE", "mark good");
			if (rc == 0)
				rc = run(db, "UPDATE slots SET state = 'inactive' WHERE name = ?1",
				         "t", s.running);
			if (rc == 0)
				rc = run(db, "UPDATE slots SET state = 'active' WHERE name = ?1",
				         "t", s.trial);
			if (rc == 0)
				rc = run(db, "UPDATE unit SET running_slot = ?1", "t", s.trial);
			if (rc == 0)
				rc = run(db,
				         "UPDATE fw_state SET trial_slot = '', attempts = 0,"
				         " last_result = 'good', last_slot = ?1",
				         "t", s.trial);
			rc = end_tx(db, rc, "mark good");
			/* Only a slot marked good moves the anti-rollback counter. */
			if (rc == 0)
				rc = run(
				    db,
				    "UPDATE fw_state SET security_counter = max(security_counter,"
				    " (SELECT security_counter FROM slots WHERE name = ?1))",
				    "t", s.trial);
			if (rc == 0)
				bk__log(BK_LOG_INFO, "vdev",
				        "unit %s: slot %s booted and marked good",
				        bk_vunit_serial(fw->u), s.trial);
			return rc;
		}
		bk__log(BK_LOG_INFO, "vdev", "unit %s: slot %s failed its health check",
		        bk_vunit_serial(fw->u), s.trial);
	}
	/* Attempts spent: back to the slot that ran before. */
	rc = exec(db, "BEGIN IMMEDIATE", "fall back");
	if (rc == 0)
		rc = run(db,
		         "UPDATE slots SET state = 'empty', version = '', security_counter = 0,"
		         " schema_min = 0, schema_max = 0 WHERE name = ?1",
		         "t", s.trial);
	if (rc == 0)
		rc = run(db, "DELETE FROM fw_slots WHERE name = ?1", "t", s.trial);
	if (rc == 0)
		rc = run(db,
		         "UPDATE fw_state SET trial_slot = '', attempts = 0,"
		         " last_result = 'rolled-back', last_slot = ?1",
		         "t", s.trial);
	rc = end_tx(db, rc, "fall back");
	if (rc == 0)
		bk__log(BK_LOG_INFO, "vdev", "unit %s: fell back to slot %s",
		        bk_vunit_serial(fw->u), s.running);
	return rc;
}

static bool booting(bk_vfw *fw)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec < fw->boot_until.tv_sec ||
	       (now.tv_sec == fw->boot_until.tv_sec && now.tv_nsec < fw->boot_until.tv_nsec);
}

int bk_vfw_before_session(bk_vfw *fw)
{
	int rc = 0;
	if (fw == NULL)
		return 0;
	pthread_mutex_lock(&fw->lock);
	if (fw->reboot_pending && booting(fw)) {
		rc = bk__error_set(BK_EDISCONNECTED, "booting", "unit %s is booting",
		                   bk_vunit_serial(fw->u));
	} else if (fw->reboot_pending) {
		fw->reboot_pending = false;
		rc = boot(fw);
	}
	pthread_mutex_unlock(&fw->lock);
	return rc;
}

void bk_vfw_set_boot_time(bk_vfw *fw, int64_t ms)
{
	if (fw)
		fw->boot_time_ms = ms < 0 ? 0 : ms;
}

void bk_vfw_set_boot_fail(bk_vfw *fw, bool on)
{
	if (fw)
		fw->boot_fail = on;
}

/* --- Transfers ------------------------------------------------------------------ */

static void transfer_end(bk_vfw *fw)
{
	if (fw->fd >= 0)
		close(fw->fd);
	fw->fd = -1;
	bk_fw__manifest_free(fw->m);
	fw->m = NULL;
	fw->total = fw->written = fw->synced = fw->flushing = 0;
}

/* Reads trust/revoked-keys (optional) into `ids` (NULL-terminated). */
static int read_revoked(bk_vfw *fw, char *store, size_t cap, const char **ids)
{
	uint8_t *data = NULL;
	size_t len = 0, n = 0;
	char *p = bk__asprintf("%s/%s", bk_vunit_dir(fw->u), BK_VFW_REVOKED_KEYS);
	int rc;
	ids[0] = NULL;
	if (p == NULL)
		return BK_ENOMEM;
	rc = bk_file_read(p, cap - 1, &data, &len);
	bk__free(p);
	if (rc == BK_ENOTFOUND)
		return 0;
	if (rc)
		return rc;
	memcpy(store, data, len);
	store[len] = '\0';
	bk__free(data);
	for (char *s = store, *e; *s && n < REVOKED_MAX; s = e) {
		e = s + strcspn(s, "\n");
		if (*e)
			*e++ = '\0';
		s += strspn(s, " \t\r");
		s[strcspn(s, " \t\r#")] = '\0';
		if (*s)
			ids[n++] = s;
	}
	ids[n] = NULL;
	return 0;
}

/* What the unit checks of a bundle whatever the terminal did. */
static int check_bundle(bk_vfw *fw, const fw_state *s, const uint8_t *man, size_t man_len,
                        const uint8_t *sig, size_t sig_len, bk_fw_manifest **out)
{
	char revoked_text[4096], key_id[17];
	const char *revoked[REVOKED_MAX + 1];
	char *trusted = bk__asprintf("%s/%s", bk_vunit_dir(fw->u), BK_VUNIT_TRUST_FIRMWARE);
	bk_fw_manifest *m = NULL;
	int rc = trusted ? 0 : BK_ENOMEM, cmp = 0;
	bool model = false;
	if (rc == 0)
		rc = read_revoked(fw, revoked_text, sizeof(revoked_text), revoked);
	if (rc == 0)
		rc = bk_fw__sig_verify(man, man_len, sig, sig_len, trusted, revoked, key_id);
	if (rc == 0)
		rc = bk_fw__manifest_parse(&m, man, man_len);
	if (rc)
		goto done;
	for (size_t i = 0; i < m->model_count; i++)
		model = model || strcmp(m->models[i], s->model) == 0;
	if (!model) {
		rc =
		    bk__error_set(BK_EINCOMPAT, "wrong-model", "unit %s is a %s: not in the bundle",
		                  bk_vunit_serial(fw->u), s->model);
		goto done;
	}
	if ((m->hw_rev_min && bk_fw_hw_rev_compare(s->hw_rev, m->hw_rev_min, &cmp) == 0 &&
	     cmp < 0) ||
	    (m->hw_rev_max && bk_fw_hw_rev_compare(s->hw_rev, m->hw_rev_max, &cmp) == 0 &&
	     cmp > 0)) {
		rc = bk__error_set(BK_EINCOMPAT, "wrong-hw-rev",
		                   "unit %s: hardware revision %s is not covered by the bundle",
		                   bk_vunit_serial(fw->u), s->hw_rev);
		goto done;
	}
	if ((int64_t)m->security_counter < s->security_counter) {
		rc = bk__error_set(BK_EINCOMPAT, "security-counter-rollback",
		                   "unit %s: security counter %u is below the unit's %lld",
		                   bk_vunit_serial(fw->u), m->security_counter,
		                   (long long)s->security_counter);
		goto done;
	}
	*out = m;
	m = NULL;
done:
	bk_fw__manifest_free(m);
	bk__free(trusted);
	return rc;
}

static uint64_t manifest_total(const bk_fw_manifest *m)
{
	uint64_t t = 0;
	for (size_t i = 0; i < m->payload_count; i++)
		t += m->payloads[i].size;
	return t;
}

/* Positions the running payload hash at `fw->written` (re-reading the
 * current payload's bytes already in the file). */
static int hash_seek(bk_vfw *fw)
{
	uint8_t buf[65536];
	uint64_t start = 0;
	size_t i = 0;
	while (i < fw->m->payload_count && start + fw->m->payloads[i].size <= fw->written &&
	       fw->m->payloads[i].size > 0) {
		start += fw->m->payloads[i].size;
		i++;
	}
	fw->cur = i;
	fw->cur_start = start;
	crypto_generichash_init(&fw->h, NULL, 0, BK_FW_DIGEST_LEN);
	for (uint64_t off = start; off < fw->written;) {
		size_t want = (size_t)MIN64((uint64_t)sizeof(buf), fw->written - off);
		ssize_t r = pread(fw->fd, buf, want, (off_t)off);
		if (r <= 0)
			return bk__error_errno(r < 0 ? errno : EIO, "slot %s: cannot read",
			                       fw->slot);
		crypto_generichash_update(&fw->h, buf, (unsigned long long)r);
		off += (uint64_t)r;
	}
	return 0;
}

static int open_image(bk_vfw *fw, bool truncate_all)
{
	char *dir = bk__asprintf("%s/%s", bk_vunit_dir(fw->u), BK_VFW_SLOTS_DIR);
	char *p = slot_path(fw, fw->slot);
	int rc = dir && p ? bk_mkdir_p(dir, 0700) : BK_ENOMEM;
	if (rc == 0) {
		fw->fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (fw->fd < 0)
			rc = bk__error_errno(errno, "%s: cannot open", p);
	}
	if (rc == 0 && ftruncate(fw->fd, truncate_all ? 0 : (off_t)fw->written) != 0)
		rc = bk__error_errno(errno, "%s: cannot truncate", p);
	if (rc == 0 && fsync(fw->fd) != 0)
		rc = bk__error_errno(errno, "%s: cannot sync", p);
	if (rc == 0)
		rc = bk_fsync_dir(dir);
	bk__free(dir);
	bk__free(p);
	return rc;
}

static const char *jstr(const json_t *o, const char *k, size_t *len)
{
	json_t *v = json_object_get(o, k);
	if (len)
		*len = json_string_length(v);
	return json_string_value(v);
}

static int sync_progress(bk_vfw *fw);

static int h_begin(bk_vunit *u, const bk_proto_msg *req, bk_vunit_reply *reply, void *payload)
{
	bk_vfw *fw = payload;
	sqlite3 *db = bk_vunit_db(u);
	sqlite3_stmt *st = NULL;
	size_t man_len = 0, sig_len = 0;
	const char *man = jstr(req->json, "manifest", &man_len);
	const char *sig = jstr(req->json, "signature", &sig_len);
	bk_fw_manifest *m = NULL;
	fw_state s;
	bool resume = false;
	int64_t written = 0;
	int rc;
	/* A transfer of this power cycle keeps what it received. */
	if (fw->m && fw->fd >= 0 && fw->written != fw->synced)
		sync_progress(fw);
	transfer_end(fw);
	fw->verified[0] = '\0';
	if (man == NULL || sig == NULL)
		return bk__error_set(BK_EINVALID, "bad-request",
		                     "FW_BEGIN needs the manifest and its signature");
	rc = read_state(db, &s);
	if (rc == 0 && strcmp(s.state, "idle") != 0)
		rc = bk__error_set(BK_EBUSY, "unit-busy", "unit %s is %s", bk_vunit_serial(u),
		                   s.state);
	if (rc == 0)
		rc = check_bundle(fw, &s, (const uint8_t *)man, man_len, (const uint8_t *)sig,
		                  sig_len, &m);
	if (rc)
		goto done;
	bk_strlcpy(fw->slot, other_slot(s.running), sizeof(fw->slot));
	/* The same bundle to the same slot: resume where the durable bytes end. */
	if (sqlite3_prepare_v2(db, "SELECT slot, manifest, written FROM fw_staging WHERE id = 1",
	                       -1, &st, NULL) != SQLITE_OK) {
		rc = db_fail(db, "read the staging");
		goto done;
	}
	if (sqlite3_step(st) == SQLITE_ROW &&
	    strcmp((const char *)sqlite3_column_text(st, 0), fw->slot) == 0 &&
	    (size_t)sqlite3_column_bytes(st, 1) == man_len &&
	    memcmp(sqlite3_column_blob(st, 1), man, man_len) == 0) {
		resume = true;
		written = sqlite3_column_int64(st, 2);
	}
	sqlite3_finalize(st);
	st = NULL;
	if (!resume) {
		/* The target slot is invalid before its first byte changes. */
		rc = exec(db, "BEGIN IMMEDIATE", "begin");
		if (rc == 0)
			rc = run(
			    db,
			    "UPDATE slots SET state = 'empty', version = '', security_counter = 0,"
			    " schema_min = 0, schema_max = 0 WHERE name = ?1",
			    "t", fw->slot);
		if (rc == 0)
			rc = run(db, "DELETE FROM fw_slots WHERE name = ?1", "t", fw->slot);
		if (rc == 0 && strcmp(s.trial, fw->slot) == 0)
			rc = exec(db, "UPDATE fw_state SET trial_slot = '', attempts = 0", "begin");
		if (rc == 0)
			rc = run(db,
			         "INSERT OR REPLACE INTO fw_staging VALUES (1, ?1, ?2, ?3, ?4, 0)",
			         "tbbi", fw->slot, man, man_len, sig, sig_len,
			         (int64_t)manifest_total(m));
		rc = end_tx(db, rc, "begin");
		if (rc)
			goto done;
	}
	fw->m = m;
	m = NULL;
	fw->total = manifest_total(fw->m);
	fw->written = fw->synced = fw->flushing = (uint64_t)written;
	rc = open_image(fw, !resume);
	if (rc == 0)
		rc = hash_seek(fw);
	fw->live_from = fw->cur;
	if (rc == 0 && (reply->json = json_pack("{s:s, s:I, s:I}", "slot", fw->slot, "offset",
	                                        (json_int_t)fw->written, "size",
	                                        (json_int_t)fw->total)) == NULL)
		rc = bk__error_oom();
done:
	if (rc)
		transfer_end(fw);
	sqlite3_finalize(st);
	bk_fw__manifest_free(m);
	return rc;
}

static int sync_progress(bk_vfw *fw)
{
	if (fdatasync(fw->fd) != 0)
		return bk__error_errno(errno, "slot %s: cannot sync", fw->slot);
	int rc = run(bk_vunit_db(fw->u), "UPDATE fw_staging SET written = ?1 WHERE id = 1", "i",
	             (int64_t)fw->written);
	if (rc == 0)
		fw->synced = fw->flushing = fw->written;
	return rc;
}

static int h_write(bk_vunit *u, const bk_proto_msg *req, bk_vunit_reply *reply, void *payload)
{
	bk_vfw *fw = payload;
	uint64_t off = req->offset;
	const uint8_t *p = req->data;
	size_t n = req->data_len;
	int rc;
	BK_UNUSED(reply);
	if (fw->m == NULL)
		return bk__error_set(BK_EINVALID, "no-transfer", "FW_WRITE without FW_BEGIN");
	if (off > fw->total || n > fw->total - off)
		return bk__error_set(BK_EINVALID, "write-out-of-range",
		                     "FW_WRITE at %llu+%zu passes the image's %llu bytes",
		                     (unsigned long long)off, n, (unsigned long long)fw->total);
	if (off > fw->written)
		return bk__error_set(BK_EINVALID, "write-gap",
		                     "FW_WRITE at %llu: the unit holds %llu bytes",
		                     (unsigned long long)off, (unsigned long long)fw->written);
	if (off + n <= fw->written)
		return 0; /* already here (a resent chunk) */
	p += fw->written - off;
	n -= (size_t)(fw->written - off);
	off = fw->written;
	rc =
	    bk_vunit_step(u, "fw-write", (unsigned)((off + n) * 100 / (fw->total ? fw->total : 1)));
	if (rc)
		return rc;
	for (size_t done = 0; done < n;) {
		ssize_t w = pwrite(fw->fd, p + done, n - done, (off_t)(off + done));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return bk__error_errno(w < 0 ? errno : EIO, "slot %s: cannot write",
			                       fw->slot);
		done += (size_t)w;
	}
	/* Each payload is checked as soon as its last byte is here. */
	while (n > 0 && fw->cur < fw->m->payload_count) {
		const bk_fw_payload *pl = &fw->m->payloads[fw->cur];
		uint64_t left = fw->cur_start + pl->size - off;
		size_t take = (size_t)MIN64((uint64_t)n, left);
		crypto_generichash_update(&fw->h, p, take);
		p += take;
		n -= take;
		off += take;
		if (take == left) {
			uint8_t d[BK_FW_DIGEST_LEN];
			crypto_generichash_final(&fw->h, d, sizeof(d));
			if (sodium_memcmp(d, pl->digest, sizeof(d)) != 0) {
				fw->written = fw->cur_start;
				if (ftruncate(fw->fd, (off_t)fw->written) != 0 ||
				    fw->synced > fw->written)
					sync_progress(fw);
				hash_seek(fw);
				return bk__error_set(
				    BK_EVERIFY, "payload-digest-mismatch",
				    "unit %s: payload %s does not match its digest",
				    bk_vunit_serial(u), pl->name);
			}
			fw->cur++;
			fw->cur_start = off;
			crypto_generichash_init(&fw->h, NULL, 0, BK_FW_DIGEST_LEN);
		}
	}
	fw->written = off;
	if (fw->written == fw->total || fw->written - fw->synced >= SYNC_EVERY)
		return sync_progress(fw);
	/* Start the writeback early, so that the durable points and FW_FINISH
	 * find little left to write. */
	if (fw->written - fw->flushing >= SYNC_AHEAD) {
		sync_file_range(fw->fd, (off_t)fw->flushing, (off_t)(fw->written - fw->flushing),
		                SYNC_FILE_RANGE_WRITE);
		fw->flushing = fw->written;
	}
	return 0;
}

static int h_finish(bk_vunit *u, const bk_proto_msg *req, bk_vunit_reply *reply, void *payload)
{
	bk_vfw *fw = payload;
	sqlite3 *db = bk_vunit_db(u);
	sqlite3_stmt *st = NULL;
	uint8_t d[BK_FW_DIGEST_LEN];
	bk_fw_manifest *m = NULL;
	char *digest = NULL;
	fw_state s;
	uint64_t off = 0;
	int rc;
	BK_UNUSED(req);
	if (fw->m == NULL)
		return bk__error_set(BK_EINVALID, "no-transfer", "FW_FINISH without FW_BEGIN");
	if (fw->written != fw->total)
		return bk__error_set(BK_EINVALID, "transfer-incomplete",
		                     "FW_FINISH: the unit holds %llu of %llu bytes",
		                     (unsigned long long)fw->written,
		                     (unsigned long long)fw->total);
	rc = bk_vunit_step(u, "fw-finish", 0);
	if (rc == 0)
		rc = sync_progress(fw);
	if (rc == 0)
		rc = read_state(db, &s);
	/* The signature again, from what the unit stored. */
	if (rc == 0 &&
	    (sqlite3_prepare_v2(db, "SELECT manifest, signature FROM fw_staging WHERE id = 1", -1,
	                        &st, NULL) != SQLITE_OK ||
	     sqlite3_step(st) != SQLITE_ROW))
		rc = db_fail(db, "read the staging");
	if (rc == 0)
		rc = check_bundle(fw, &s, sqlite3_column_blob(st, 0),
		                  (size_t)sqlite3_column_bytes(st, 0), sqlite3_column_blob(st, 1),
		                  (size_t)sqlite3_column_bytes(st, 1), &m);
	sqlite3_finalize(st);
	st = NULL;
	if (rc)
		goto done;
	/* Every payload FW_WRITE hashed as it arrived, in order, in this
	 * transfer is checked already; the others (complete before a resume)
	 * are read back from storage and hashed now. */
	for (size_t i = 0; rc == 0 && i < m->payload_count; i++) {
		bool live = i >= fw->live_from && i < fw->cur;
		if (!live) {
			rc = hash_range(fw->fd, fw->slot, off, m->payloads[i].size, d, sizeof(d));
			if (rc == 0 && sodium_memcmp(d, m->payloads[i].digest, sizeof(d)) != 0)
				rc = bk__error_set(
				    BK_EVERIFY, "payload-digest-mismatch",
				    "unit %s: slot %s: payload %s does not match its digest",
				    bk_vunit_serial(u), fw->slot, m->payloads[i].name);
		}
		off += m->payloads[i].size;
	}
	if (rc == 0 && (digest = slot_digest(m)) == NULL)
		rc = BK_ENOMEM;
	if (rc)
		goto done;
	/* The slot header last. */
	rc = exec(db, "BEGIN IMMEDIATE", "finish");
	if (rc == 0)
		rc = run(db,
		         "UPDATE slots SET state = 'inactive', version = ?2, security_counter = ?3,"
		         " schema_min = ?4, schema_max = ?5 WHERE name = ?1",
		         "ttiii", fw->slot, m->version, (int64_t)m->security_counter, m->schema_min,
		         m->schema_max);
	if (rc == 0)
		rc = run(db, "INSERT OR REPLACE INTO fw_slots VALUES (?1, ?2, ?3)", "tit", fw->slot,
		         (int64_t)fw->total, digest);
	if (rc == 0)
		rc = exec(db, "DELETE FROM fw_staging", "finish");
	rc = end_tx(db, rc, "finish");
	if (rc == 0 && (reply->json = json_pack("{s:s, s:s, s:I}", "slot", fw->slot, "version",
	                                        m->version, "size", (json_int_t)fw->total)) == NULL)
		rc = bk__error_oom();
	if (rc == 0) {
		if (fstat(fw->fd, &fw->verified_st) == 0)
			bk_strlcpy(fw->verified, fw->slot, sizeof(fw->verified));
		transfer_end(fw);
	}
done:
	bk__free(digest);
	bk_fw__manifest_free(m);
	return rc;
}

/* The slot FW_FINISH verified in this power cycle, its image unchanged. */
static bool verified_now(bk_vfw *fw, const char *slot)
{
	struct stat sb;
	char *p;
	bool same = false;
	if (strcmp(fw->verified, slot) != 0 || (p = slot_path(fw, slot)) == NULL)
		return false;
	if (stat(p, &sb) == 0)
		same = sb.st_dev == fw->verified_st.st_dev && sb.st_ino == fw->verified_st.st_ino &&
		       sb.st_size == fw->verified_st.st_size &&
		       sb.st_mtim.tv_sec == fw->verified_st.st_mtim.tv_sec &&
		       sb.st_mtim.tv_nsec == fw->verified_st.st_mtim.tv_nsec &&
		       sb.st_ctim.tv_sec == fw->verified_st.st_ctim.tv_sec &&
		       sb.st_ctim.tv_nsec == fw->verified_st.st_ctim.tv_nsec;
	bk__free(p);
	return same;
}

static int h_activate(bk_vunit *u, const bk_proto_msg *req, bk_vunit_reply *reply, void *payload)
{
	bk_vfw *fw = payload;
	sqlite3 *db = bk_vunit_db(u);
	const char *want = jstr(req->json, "slot", NULL);
	fw_state s;
	int rc = read_state(db, &s);
	if (rc)
		return rc;
	const char *slot = other_slot(s.running);
	if (want && strcmp(want, slot) != 0)
		return bk__error_set(BK_EINVALID, "bad-slot",
		                     "unit %s: slot %s cannot be activated", bk_vunit_serial(u),
		                     want);
	/* Verified by FW_FINISH in this power cycle, or hashed again now. */
	rc = verified_now(fw, slot) ? 0 : slot_check(fw, slot);
	if (rc)
		return bk__error_prefix(rc, "unit %s", bk_vunit_serial(u));
	rc = bk_vunit_step(u, "fw-activate", 0);
	if (rc == 0)
		rc = exec(db, "BEGIN IMMEDIATE", "activate");
	if (rc == 0)
		rc = run(db, "UPDATE slots SET state = 'pending' WHERE name = ?1", "t", slot);
	if (rc == 0)
		rc = run(db, "UPDATE fw_state SET trial_slot = ?1, attempts = 1", "t", slot);
	if (rc == 0)
		rc = exec(db, "COMMIT", "activate");
	else
		exec(db, "ROLLBACK", "activate");
	if (rc == 0 && (reply->json = json_pack("{s:s, s:i}", "slot", slot, "attempts", 1)) == NULL)
		rc = bk__error_oom();
	return rc;
}

static int h_reboot(bk_vunit *u, const bk_proto_msg *req, bk_vunit_reply *reply, void *payload)
{
	bk_vfw *fw = payload;
	BK_UNUSED(req);
	BK_UNUSED(reply);
	int rc = bk_vunit_step(u, "reboot", 0);
	if (rc)
		return rc;
	transfer_end(fw);
	fw->verified[0] = '\0';
	pthread_mutex_lock(&fw->lock);
	fw->reboot_pending = true;
	clock_gettime(CLOCK_MONOTONIC, &fw->boot_until);
	fw->boot_until.tv_sec += fw->boot_time_ms / 1000;
	fw->boot_until.tv_nsec += (fw->boot_time_ms % 1000) * 1000000L;
	if (fw->boot_until.tv_nsec >= 1000000000L) {
		fw->boot_until.tv_sec++;
		fw->boot_until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_unlock(&fw->lock);
	bk_vunit_end_session(u);
	return 0;
}

static int h_boot_status(bk_vunit *u, const bk_proto_msg *req, bk_vunit_reply *reply, void *payload)
{
	BK_UNUSED(req);
	BK_UNUSED(payload);
	fw_state s;
	int rc = read_state(bk_vunit_db(u), &s);
	if (rc == 0 &&
	    (reply->json = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "running", s.running,
	                             "result", s.result, "slot", s.last, "trial_slot", s.trial,
	                             "attempts_left", (json_int_t)s.attempts, "security_counter",
	                             (json_int_t)s.security_counter)) == NULL)
		rc = bk__error_oom();
	return rc;
}

/* --- Setup --------------------------------------------------------------------------- */

int bk_vfw_attach(bk_vunit *u, bk_vfw **out)
{
	bk_vfw *fw = bk__calloc(1, sizeof(*fw));
	int rc;
	*out = NULL;
	if (fw == NULL)
		return BK_ENOMEM;
	fw->u = u;
	fw->fd = -1;
	fw->boot_time_ms = BK_VFW_BOOT_TIME_MS;
	pthread_mutex_init(&fw->lock, NULL);
	rc = exec(bk_vunit_db(u), tables_sql, "firmware tables");
	if (rc == 0)
		rc = boot(fw); /* power-up */
	if (rc == 0)
		rc = bk_vunit_set_handler(u, BK_MSG_FW_BEGIN, h_begin, fw);
	if (rc == 0)
		rc = bk_vunit_set_handler(u, BK_MSG_FW_WRITE, h_write, fw);
	if (rc == 0)
		rc = bk_vunit_set_handler(u, BK_MSG_FW_FINISH, h_finish, fw);
	if (rc == 0)
		rc = bk_vunit_set_handler(u, BK_MSG_FW_ACTIVATE, h_activate, fw);
	if (rc == 0)
		rc = bk_vunit_set_handler(u, BK_MSG_REBOOT, h_reboot, fw);
	if (rc == 0)
		rc = bk_vunit_set_handler(u, BK_MSG_BOOT_STATUS, h_boot_status, fw);
	if (rc) {
		bk_vfw_free(fw);
		return rc;
	}
	*out = fw;
	return 0;
}

void bk_vfw_free(bk_vfw *fw)
{
	if (fw == NULL)
		return;
	transfer_end(fw);
	pthread_mutex_destroy(&fw->lock);
	bk__free(fw);
}
