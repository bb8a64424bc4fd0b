/* The virtual robot's core: creating a unit folder, powering it up, and the
 * unit side of a session (handshake, HELLO, dispatch, faults). */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "device/channel.h"
#include "device/virtual/fault.h"
#include "device/virtual/fw.h"
#include "device/virtual/identity_ops.h"
#include "device/virtual/memgen.h"
#include "device/virtual/unit.h"
#include "libbackup/archive/archive.h"

#define MAX_FAULTS    32
#define POLL_MS       200
#define BUSY_GRACE_MS 1000
#define YEAR_S        (365 * 24 * 3600LL)

struct bk_vunit {
	char *dir;
	char *memory_dir;
	char serial[BK_URI_SERIAL_MAX + 1];
	bk_keyfile *keys;
	bk_cert *cert;
	bk_minisign_pubkey service_ca;
	sqlite3 *db;
	struct {
		bk_vunit_handler fn;
		void *payload;
	} handlers[256];
	pthread_mutex_t lock; /* guards what follows */
	bk_vfault faults[MAX_FAULTS];
	size_t nfaults;
	bool active;      /* a session is being served */
	bool dead;        /* power lost */
	bool interrupted; /* sessions end at their next wake-up */
	bool end_session; /* the session ends after its current answer */
	bk_vfw *fw;       /* firmware slots (fw.c) */
	char death_step[BK_VFAULT_STEP_MAX];
};

/* --- Small helpers ------------------------------------------------------------ */

static char *in_dir(const char *dir, const char *name)
{
	return bk__asprintf("%s/%s", dir, name);
}

static int db_error(sqlite3 *db, const char *what)
{
	return bk__error_set(BK_EIO, "unit-db", "unit database: %s: %s", what,
	                     db ? sqlite3_errmsg(db) : "cannot open");
}

static int db_exec(sqlite3 *db, const char *sql, const char *what)
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

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	BK_UNUSED(st);
	BK_UNUSED(flag);
	if (ftw->level == 0)
		return 0;
	return remove(path) == 0 ? 0 : -1;
}

/* Empties a folder (keeps the folder itself). */
static int empty_dir(const char *path)
{
	if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
		return bk__error_errno(errno, "%s: cannot empty", path);
	return 0;
}

static int dir_is_empty_or_missing(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int rc = 0;
	if (d == NULL)
		return errno == ENOENT ? 0
		                       : bk__error_errno(errno, "%s: cannot read the folder", path);
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			rc =
			    bk__error_set(BK_EEXIST, "exists",
			                  "%s: not empty; a unit is created in a new folder", path);
			break;
		}
	closedir(d);
	return rc;
}

/* --- Creating ------------------------------------------------------------------- */

static const char schema_sql[] =
    "PRAGMA journal_mode = WAL;"
    "CREATE TABLE unit ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  serial TEXT NOT NULL, model TEXT NOT NULL, hw_revision TEXT NOT NULL,"
    "  battery INTEGER NOT NULL, memory_schema INTEGER NOT NULL,"
    "  running_slot TEXT NOT NULL, state TEXT NOT NULL, created INTEGER NOT NULL);"
    "CREATE TABLE slots ("
    "  name TEXT PRIMARY KEY, state TEXT NOT NULL, version TEXT NOT NULL,"
    "  security_counter INTEGER NOT NULL, schema_min INTEGER NOT NULL,"
    "  schema_max INTEGER NOT NULL);"
    "CREATE TABLE staging ("
    "  kind TEXT PRIMARY KEY, meta TEXT NOT NULL, bytes INTEGER NOT NULL,"
    "  updated INTEGER NOT NULL);"
    "PRAGMA user_version = 1;";

static int create_db(const char *path, const bk_vunit_create_opts *o, uint64_t memory_schema)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int rc;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	    SQLITE_OK) {
		rc = db_error(db, path);
		goto done;
	}
	rc = db_exec(db, schema_sql, "create");
	if (rc == 0)
		rc = db_exec(db, "BEGIN", "begin");
	if (rc)
		goto done;
	if (sqlite3_prepare_v2(db,
	                       "INSERT INTO unit VALUES (1, ?1, ?2, ?3, ?4, ?5, 'A', 'idle', ?6)",
	                       -1, &st, NULL) != SQLITE_OK) {
		rc = db_error(db, "insert unit");
		goto done;
	}
	sqlite3_bind_text(st, 1, o->serial, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, o->model, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, o->hw_revision, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 4, o->battery);
	sqlite3_bind_int64(st, 5, (sqlite3_int64)memory_schema);
	sqlite3_bind_int64(st, 6, (sqlite3_int64)time(NULL));
	if (sqlite3_step(st) != SQLITE_DONE) {
		rc = db_error(db, "insert unit");
		goto done;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (sqlite3_prepare_v2(db, "INSERT INTO slots VALUES (?1, ?2, ?3, ?4, ?5, ?6)", -1, &st,
	                       NULL) != SQLITE_OK) {
		rc = db_error(db, "insert slots");
		goto done;
	}
	for (int i = 0; i < 2; i++) {
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, i ? "B" : "A", -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, i ? "empty" : "active", -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, i ? "" : o->fw_version, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, i ? 0 : (sqlite3_int64)o->fw_security_counter);
		sqlite3_bind_int64(st, 5, i ? 0 : 1);
		sqlite3_bind_int64(st, 6, i ? 0 : (sqlite3_int64)o->schema);
		if (sqlite3_step(st) != SQLITE_DONE) {
			rc = db_error(db, "insert slots");
			goto done;
		}
	}
	rc = db_exec(db, "COMMIT", "commit");
done:
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}

static int check_create_opts(const bk_vunit_create_opts *o)
{
	if (o == NULL || o->version != BK_VUNIT_CREATE_OPTS_VERSION)
		return bk__error_set(BK_EINVALID, NULL, "unit: bad create options");
	if (o->pki_dir == NULL)
		return bk__error_set(BK_EUSER, "no-pki", "a unit needs the lab PKI (--pki DIR)");
	if (o->serial == NULL || o->model == NULL || o->hw_revision == NULL ||
	    o->fw_version == NULL)
		return bk__error_set(BK_EUSER, "missing-field", "a unit needs a serial (--serial)");
	bk_device_uri u;
	char uri[BK_URI_SERIAL_MAX + 8];
	snprintf(uri, sizeof(uri), "usb:%s", o->serial);
	if (strlen(o->serial) > BK_URI_SERIAL_MAX || bk_device_uri_parse(&u, uri) != 0 ||
	    u.kind != BK_URI_USB_SERIAL || strlen(o->serial) > BK_CERT_NAME_MAX)
		return bk__error_set(BK_EUSER, "bad-serial",
		                     "'%s' is not a serial: 1-64 characters of [A-Za-z0-9._-], not "
		                     "shaped like a USB bus-port",
		                     o->serial);
	if (o->battery < 0 || o->battery > 100)
		return bk__error_set(BK_EUSER, "bad-battery", "the battery level is 0-100");
	if (o->schema == 0 || o->schema > 1000000)
		return bk__error_set(BK_EUSER, "bad-schema", "the schema version is 1 or more");
	return 0;
}

int bk_vunit_create(const char *dir, const bk_vunit_create_opts *o)
{
	bk_minisign_seckey *factory = NULL;
	bk_minisign_pubkey service, firmware;
	bk_keyfile *keys = NULL;
	bk_cert *cert = NULL;
	char *p = NULL;
	int rc = check_create_opts(o);
	if (rc == 0 && dir == NULL)
		rc = bk__error_set(BK_EINVALID, NULL, "unit: no folder");
	if (rc == 0)
		rc = dir_is_empty_or_missing(dir);
	/* The PKI first, so that nothing is created when it is missing. */
	if (rc == 0 && (p = in_dir(o->pki_dir, "factory-ca.key")) == NULL)
		rc = BK_ENOMEM;
	if (rc == 0)
		rc = bk_minisign_seckey_read(&factory, p, NULL);
	bk__free(p);
	p = NULL;
	if (rc == 0 && (p = in_dir(o->pki_dir, "service-ca.key.pub")) == NULL)
		rc = BK_ENOMEM;
	if (rc == 0)
		rc = bk_minisign_pubkey_read(&service, p);
	bk__free(p);
	p = NULL;
	if (rc == 0 && (p = in_dir(o->pki_dir, "firmware.key.pub")) == NULL)
		rc = BK_ENOMEM;
	if (rc == 0)
		rc = bk_minisign_pubkey_read(&firmware, p);
	bk__free(p);
	p = NULL;
	if (rc)
		goto done;
	rc = bk_keyfile_generate(&keys, 1);
	if (rc == 0) {
		int64_t now = (int64_t)time(NULL);
		bk_cert_params cp;
		memset(&cp, 0, sizeof(cp));
		cp.role = BK_CERT_ROLE_UNIT;
		cp.serial = o->serial;
		cp.model = o->model;
		cp.hw_revision = o->hw_revision;
		cp.noise_key = bk_keyfile_noise_public(keys);
		cp.age_key = bk_keyfile_age_public(keys);
		cp.ed25519_key = bk_keyfile_ed25519_public(keys);
		cp.not_before = o->not_before ? o->not_before : now - 3600;
		cp.not_after = o->not_after ? o->not_after : now + 10 * YEAR_S;
		rc = bk_cert_issue(&cert, &cp, factory);
	}
	if (rc == 0)
		rc = bk_mkdir_p(dir, 0700);
	if (rc == 0 && (p = in_dir(dir, "trust")) != NULL)
		rc = bk_mkdir_p(p, 0755);
	else if (rc == 0)
		rc = BK_ENOMEM;
	bk__free(p);
	p = NULL;
#define WRITE_IN(name, expr)                                                                       \
	do {                                                                                       \
		if (rc == 0 && (p = in_dir(dir, name)) == NULL)                                    \
			rc = BK_ENOMEM;                                                            \
		if (rc == 0)                                                                       \
			rc = (expr);                                                               \
		bk__free(p);                                                                       \
		p = NULL;                                                                          \
	} while (0)
	WRITE_IN(BK_VUNIT_KEYS, bk_keyfile_write(p, keys));
	WRITE_IN(BK_VUNIT_CERT, bk_cert_write(p, cert));
	WRITE_IN(BK_VUNIT_TRUST_SERVICE, bk_minisign_pubkey_write(p, &service));
	WRITE_IN(BK_VUNIT_TRUST_FIRMWARE, bk_minisign_pubkey_write(p, &firmware));
	WRITE_IN(BK_VUNIT_VOLATILE, bk_mkdir_p(p, 0700));
	WRITE_IN(BK_VUNIT_MEMORY, bk_vdev_memgen(p, o->fresh ? 0 : o->memory_size, o->seed));
	WRITE_IN(BK_VUNIT_DB, create_db(p, o, o->schema));
#undef WRITE_IN
done:
	bk__free(p);
	bk_cert_free(cert);
	bk_keyfile_free(keys);
	bk_minisign_seckey_free(factory);
	return rc;
}

/* --- Opening ------------------------------------------------------------------ */

static int open_db(sqlite3 **out, const char *dir, int flags)
{
	char *p = in_dir(dir, BK_VUNIT_DB);
	int rc = 0;
	struct stat st;
	*out = NULL;
	if (p == NULL)
		return BK_ENOMEM;
	if (stat(p, &st) != 0) {
		rc = bk__error_set(BK_ENOTFOUND, "not-a-unit", "%s: not a unit folder (no %s)", dir,
		                   BK_VUNIT_DB);
	} else if (sqlite3_open_v2(p, out, flags, NULL) != SQLITE_OK) {
		rc = db_error(*out, p);
		sqlite3_close(*out);
		*out = NULL;
	} else {
		sqlite3_busy_timeout(*out, 5000);
	}
	bk__free(p);
	return rc;
}

static int read_serial(sqlite3 *db, char *out, size_t cap)
{
	sqlite3_stmt *st = NULL;
	int rc = 0;
	if (sqlite3_prepare_v2(db, "SELECT serial FROM unit WHERE id = 1", -1, &st, NULL) !=
	        SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW)
		rc = db_error(db, "read the unit");
	else
		bk_strlcpy(out, (const char *)sqlite3_column_text(st, 0), cap);
	sqlite3_finalize(st);
	return rc;
}

int bk_vunit_open(bk_vunit **out, const char *dir)
{
	bk_vunit *u = NULL;
	char *p = NULL;
	int rc;
	if (out == NULL || dir == NULL)
		return bk__error_set(BK_EINVALID, NULL, "unit: no folder");
	*out = NULL;
	u = bk__calloc(1, sizeof(*u));
	if (u == NULL)
		return BK_ENOMEM;
	pthread_mutex_init(&u->lock, NULL);
	u->dir = bk__strdup(dir);
	u->memory_dir = in_dir(dir, BK_VUNIT_MEMORY);
	if (u->dir == NULL || u->memory_dir == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	rc = open_db(&u->db, dir, SQLITE_OPEN_READWRITE);
	if (rc == 0)
		rc = read_serial(u->db, u->serial, sizeof(u->serial));
	if (rc == 0 && (p = in_dir(dir, BK_VUNIT_KEYS)) == NULL)
		rc = BK_ENOMEM;
	if (rc == 0)
		rc = bk_keyfile_read(&u->keys, p);
	bk__free(p);
	p = NULL;
	if (rc == 0 && (p = in_dir(dir, BK_VUNIT_CERT)) == NULL)
		rc = BK_ENOMEM;
	if (rc == 0)
		rc = bk_cert_read(&u->cert, p);
	bk__free(p);
	p = NULL;
	if (rc == 0 && (p = in_dir(dir, BK_VUNIT_TRUST_SERVICE)) == NULL)
		rc = BK_ENOMEM;
	if (rc == 0)
		rc = bk_minisign_pubkey_read(&u->service_ca, p);
	bk__free(p);
	p = NULL;
	if (rc == 0 && (p = in_dir(dir, BK_VUNIT_VOLATILE)) == NULL)
		rc = BK_ENOMEM;
	/* Power-up: what was not committed is gone. */
	if (rc == 0)
		rc = bk_mkdir_p(p, 0700);
	if (rc == 0)
		rc = empty_dir(p);
	bk__free(p);
	p = NULL;
	if (rc == 0)
		rc = db_exec(u->db, "DELETE FROM staging WHERE kind LIKE 'volatile:%'", "power-up");
done:
	if (rc) {
		bk__error_prefix(rc, "unit %s", dir);
		bk_vunit_free(u);
		return rc;
	}
	*out = u;
	return 0;
}

void bk_vunit_free(bk_vunit *u)
{
	if (u == NULL)
		return;
	bk_vfw_free(u->fw);
	sqlite3_close(u->db);
	bk_keyfile_free(u->keys);
	bk_cert_free(u->cert);
	bk__free(u->dir);
	bk__free(u->memory_dir);
	pthread_mutex_destroy(&u->lock);
	bk__free(u);
}

const char *bk_vunit_dir(const bk_vunit *u)
{
	return u->dir;
}

const char *bk_vunit_serial(const bk_vunit *u)
{
	return u->serial;
}

const bk_cert *bk_vunit_cert(const bk_vunit *u)
{
	return u->cert;
}

const bk_keyfile *bk_vunit_keys(const bk_vunit *u)
{
	return u->keys;
}

sqlite3 *bk_vunit_db(bk_vunit *u)
{
	return u->db;
}

const char *bk_vunit_memory_dir(const bk_vunit *u)
{
	return u->memory_dir;
}

/* --- INFO and digests ----------------------------------------------------------- */

static int domains_json(const char *memory_dir, json_t **out)
{
	bk_domain_digests dd;
	int rc = bk_tree_digests(memory_dir, &dd);
	if (rc == 0)
		rc = bk_domain_digests_to_json(&dd, out);
	return rc;
}

static int battery_level(bk_vunit *u, int stored)
{
	int level = stored;
	pthread_mutex_lock(&u->lock);
	for (size_t i = 0; i < u->nfaults; i++)
		if (u->faults[i].kind == BK_VFAULT_BATTERY)
			level = (int)u->faults[i].value;
	pthread_mutex_unlock(&u->lock);
	return level;
}

static int slots_json(bk_vunit *u, const char *running, json_t *slots, json_t **out_fw)
{
	sqlite3_stmt *st = NULL;
	int rc = 0, s;
	if (sqlite3_prepare_v2(u->db,
	                       "SELECT name, state, version, security_counter, schema_min, "
	                       "schema_max FROM slots ORDER BY name",
	                       -1, &st, NULL) != SQLITE_OK)
		return db_error(u->db, "read the slots");
	while ((s = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		bool is_running = strcmp(name, running) == 0;
		json_t *o =
		    json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:b}", "name", name, "state",
		              (const char *)sqlite3_column_text(st, 1), "version",
		              (const char *)sqlite3_column_text(st, 2), "security_counter",
		              (json_int_t)sqlite3_column_int64(st, 3), "schema_min",
		              (json_int_t)sqlite3_column_int64(st, 4), "schema_max",
		              (json_int_t)sqlite3_column_int64(st, 5), "running", is_running);
		if (o == NULL || json_array_append_new(slots, o) != 0) {
			rc = bk__error_oom();
			break;
		}
		if (is_running) {
			*out_fw = json_pack("{s:s, s:O, s:O, s:O, s:O}", "slot", name, "version",
			                    json_object_get(o, "version"), "security_counter",
			                    json_object_get(o, "security_counter"), "schema_min",
			                    json_object_get(o, "schema_min"), "schema_max",
			                    json_object_get(o, "schema_max"));
			if (*out_fw == NULL) {
				rc = bk__error_oom();
				break;
			}
		}
	}
	if (rc == 0 && s != SQLITE_DONE)
		rc = db_error(u->db, "read the slots");
	if (rc == 0 && *out_fw == NULL)
		rc = bk__error_set(BK_ERROR, "no-running-slot", "unit: slot %s does not exist",
		                   running);
	sqlite3_finalize(st);
	return rc;
}

int bk_vunit_info_json(bk_vunit *u, json_t **out)
{
	sqlite3_stmt *st = NULL;
	json_t *o = NULL, *slots = NULL, *fw = NULL, *domains = NULL, *ident = NULL;
	uint8_t fp[32];
	char fph[65];
	int rc = 0;
	*out = NULL;
	if (sqlite3_prepare_v2(u->db,
	                       "SELECT serial, model, hw_revision, battery, memory_schema, "
	                       "running_slot, state FROM unit WHERE id = 1",
	                       -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW) {
		rc = db_error(u->db, "read the unit");
		goto done;
	}
	slots = json_array();
	if (slots == NULL) {
		rc = bk__error_oom();
		goto done;
	}
	rc = slots_json(u, (const char *)sqlite3_column_text(st, 5), slots, &fw);
	if (rc == 0)
		rc = domains_json(u->memory_dir, &domains);
	if (rc == 0)
		rc = bk_videntity_info_json(u, &ident);
	if (rc)
		goto done;
	bk_cert_fingerprint(u->cert, fp);
	bk_hex_encode(fph, fp, sizeof(fp));
	o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:{s:s}, s:O, s:{s:I}, s:O, s:O, s:O}",
	              "serial", (const char *)sqlite3_column_text(st, 0), "model",
	              (const char *)sqlite3_column_text(st, 1), "hw_revision",
	              (const char *)sqlite3_column_text(st, 2), "state",
	              (const char *)sqlite3_column_text(st, 6), "battery",
	              battery_level(u, sqlite3_column_int(st, 3)), "certificate", "fingerprint",
	              fph, "firmware", fw, "memory", "schema",
	              (json_int_t)sqlite3_column_int64(st, 4), "slots", slots, "domains", domains,
	              "identity", ident);
	if (o == NULL) {
		rc = bk__error_oom();
		goto done;
	}
	*out = o;
done:
	sqlite3_finalize(st);
	json_decref(slots);
	json_decref(fw);
	json_decref(domains);
	json_decref(ident);
	return rc;
}

int bk_vunit_digest_json(const char *dir, json_t **out)
{
	sqlite3 *db = NULL;
	json_t *domains = NULL;
	char serial[BK_URI_SERIAL_MAX + 1];
	char *mem = NULL;
	int rc;
	*out = NULL;
	rc = open_db(&db, dir, SQLITE_OPEN_READONLY);
	if (rc == 0)
		rc = read_serial(db, serial, sizeof(serial));
	if (rc == 0 && (mem = in_dir(dir, BK_VUNIT_MEMORY)) == NULL)
		rc = BK_ENOMEM;
	if (rc == 0)
		rc = domains_json(mem, &domains);
	if (rc == 0 &&
	    (*out = json_pack("{s:s, s:O}", "serial", serial, "domains", domains)) == NULL)
		rc = bk__error_oom();
	json_decref(domains);
	bk__free(mem);
	sqlite3_close(db);
	return rc;
}

/* --- Faults and steps ---------------------------------------------------------------- */

struct bk_vfw *bk_vunit_fw(bk_vunit *u)
{
	return u->fw;
}

int bk_vunit_firmware_enable(bk_vunit *u)
{
	if (u == NULL)
		return bk__error_set(BK_EINVALID, NULL, "unit: no unit");
	return u->fw ? 0 : bk_vfw_attach(u, &u->fw);
}

void bk_vunit_end_session(bk_vunit *u)
{
	pthread_mutex_lock(&u->lock);
	u->end_session = true;
	pthread_mutex_unlock(&u->lock);
}

static bool take_end_session(bk_vunit *u)
{
	pthread_mutex_lock(&u->lock);
	bool end = u->end_session;
	u->end_session = false;
	pthread_mutex_unlock(&u->lock);
	return end;
}

int bk_vunit_fault_add(bk_vunit *u, const char *spec)
{
	bk_vfault f;
	char norm[128];
	if (spec && strcmp(spec, "boot-fail") == 0) {
		if (u->fw == NULL)
			return bk__error_set(BK_EUSER, "bad-fault",
			                     "fault 'boot-fail': the unit's firmware slots are not "
			                     "enabled");
		bk_vfw_set_boot_fail(u->fw, true);
		return 0;
	}
	/* Step names are written with '-'; "fw_write" is accepted for "fw-write". */
	if (spec && strncmp(spec, "power-loss=", 11) == 0 && strlen(spec) < sizeof(norm)) {
		bk_strlcpy(norm, spec, sizeof(norm));
		for (char *c = norm + 11; *c && *c != ':' && *c != ','; c++)
			if (*c == '_')
				*c = '-';
		spec = norm;
	}
	int rc = bk_vfault_parse(&f, spec);
	if (rc)
		return rc;
	pthread_mutex_lock(&u->lock);
	if (u->nfaults == MAX_FAULTS)
		rc = bk__error_set(BK_EUSER, "bad-fault", "at most %d faults", MAX_FAULTS);
	else
		u->faults[u->nfaults++] = f;
	pthread_mutex_unlock(&u->lock);
	return rc;
}

void bk_vunit_faults_clear(bk_vunit *u)
{
	pthread_mutex_lock(&u->lock);
	u->nfaults = 0;
	pthread_mutex_unlock(&u->lock);
}

int bk_vunit_step(bk_vunit *u, const char *step, unsigned percent)
{
	bool die = false;
	pthread_mutex_lock(&u->lock);
	if (u->dead) {
		die = true;
	} else {
		for (size_t i = 0; i < u->nfaults; i++) {
			bk_vfault *f = &u->faults[i];
			if (f->kind != BK_VFAULT_POWER_LOSS || f->spent ||
			    strcmp(f->step, step) != 0)
				continue;
			if (f->percent >= 0 && percent < (unsigned)f->percent)
				continue;
			if (!f->repeat)
				f->spent = true;
			u->dead = true;
			bk_strlcpy(u->death_step, step, sizeof(u->death_step));
			die = true;
			break;
		}
	}
	pthread_mutex_unlock(&u->lock);
	if (die)
		return bk__error_set(BK_EDISCONNECTED, "power-loss",
		                     "unit %s: power lost at step %s", u->serial, step);
	return 0;
}

bool bk_vunit_dead(const bk_vunit *u)
{
	bk_vunit *m = (bk_vunit *)u;
	pthread_mutex_lock(&m->lock);
	bool d = m->dead;
	pthread_mutex_unlock(&m->lock);
	return d;
}

const char *bk_vunit_death_step(const bk_vunit *u)
{
	return u->death_step;
}

void bk_vunit_interrupt(bk_vunit *u, bool on)
{
	pthread_mutex_lock(&u->lock);
	u->interrupted = on;
	pthread_mutex_unlock(&u->lock);
}

static bool interrupted(bk_vunit *u)
{
	pthread_mutex_lock(&u->lock);
	bool i = u->interrupted || u->dead;
	pthread_mutex_unlock(&u->lock);
	return i;
}

int bk_vunit_set_handler(bk_vunit *u, uint8_t type, bk_vunit_handler h, void *payload)
{
	if (u == NULL || type == BK_MSG_HELLO || bk_proto_type_is_response(type) ||
	    bk_proto_type_name(type) == NULL)
		return bk__error_set(BK_EINVALID, NULL, "unit: cannot handle message type 0x%02x",
		                     type);
	u->handlers[type].fn = h;
	u->handlers[type].payload = payload;
	return 0;
}

/* --- Sessions -------------------------------------------------------------------- */

/* The faults one session runs with. */
typedef struct session_faults {
	bool busy;
	bool refuse;
	int disconnect; /* index of the armed fault, -1 */
	int stall;
	int corrupt;
	uint64_t rate;
} session_faults;

/* Arms the faults of a connection; with `stall`, only the stall fault (the
 * session became the active one). */
static void arm_faults(bk_vunit *u, session_faults *sf, bool stall)
{
	if (!stall) {
		memset(sf, 0, sizeof(*sf));
		sf->disconnect = sf->stall = sf->corrupt = -1;
	}
	for (size_t i = 0; i < u->nfaults; i++) {
		bk_vfault *f = &u->faults[i];
		if (f->spent || f->armed)
			continue;
		switch (f->kind) {
		case BK_VFAULT_BUSY:
			sf->busy = sf->busy || !stall;
			break;
		case BK_VFAULT_REFUSE_HANDSHAKE:
			sf->refuse = sf->refuse || !stall;
			break;
		case BK_VFAULT_RATE:
			if (!stall)
				sf->rate = f->value;
			break;
		case BK_VFAULT_DISCONNECT_AFTER:
			if (!stall && sf->disconnect < 0)
				sf->disconnect = (int)i;
			break;
		case BK_VFAULT_STALL:
			if (stall && sf->stall < 0)
				sf->stall = (int)i;
			break;
		case BK_VFAULT_CORRUPT_FRAME:
			if (!stall && sf->corrupt < 0)
				sf->corrupt = (int)i;
			break;
		default:
			break;
		}
	}
	/* A one-shot fault belongs to one session at a time. */
	if (sf->disconnect >= 0 && !u->faults[sf->disconnect].repeat)
		u->faults[sf->disconnect].armed = true;
	if (sf->stall >= 0 && !u->faults[sf->stall].repeat)
		u->faults[sf->stall].armed = true;
	if (sf->corrupt >= 0 && !u->faults[sf->corrupt].repeat)
		u->faults[sf->corrupt].armed = true;
}

/* Ends a session's hold on a fault; `fired` spends a one-shot one. */
static void release_fault(bk_vunit *u, int i, bool fired)
{
	if (i < 0 || (size_t)i >= u->nfaults)
		return;
	u->faults[i].armed = false;
	if (fired && !u->faults[i].repeat)
		u->faults[i].spent = true;
}

static int send_error_last(bk_channel *ch, uint32_t id)
{
	json_t *body = NULL;
	int rc = bk_proto_error_from_last(&body);
	if (rc == 0) {
		bk_proto_msg m = {.type = BK_MSG_ERROR, .id = id, .json = body};
		rc = bk_channel_send(ch, &m, bk_deadline_in(30000));
	}
	json_decref(body);
	return rc;
}

static int send_ok(bk_channel *ch, uint32_t id, json_t *body)
{
	bk_proto_msg m = {.type = BK_MSG_OK, .id = id, .json = body};
	return bk_channel_send(ch, &m, bk_deadline_in(30000));
}

/* The core commands. */
static int core_dispatch(bk_vunit *u, const bk_proto_msg *req, bk_vunit_reply *reply)
{
	switch (req->type) {
	case BK_MSG_PING:
		return bk_vunit_step(u, "ping", 0);
	case BK_MSG_INFO: {
		int rc = bk_vunit_step(u, "info", 0);
		return rc ? rc : bk_vunit_info_json(u, &reply->json);
	}
	default:
		return bk__error_set(BK_EINCOMPAT, "unsupported-command",
		                     "unit %s does not support %s", u->serial,
		                     bk_proto_type_name(req->type));
	}
}

/* Answers one request after HELLO; returns non-zero to end the session. */
static int answer(bk_vunit *u, bk_channel *ch, const bk_proto_msg *req, uint8_t *data_buf)
{
	bk_vunit_reply reply;
	int rc;
	memset(&reply, 0, sizeof(reply));
	reply.data = data_buf;
	if (bk_proto_type_is_response(req->type)) {
		rc = bk__error_set(BK_EINVALID, "not-a-request", "%s is not a request",
		                   bk_proto_type_name(req->type));
	} else if (u->handlers[req->type].fn) {
		rc = u->handlers[req->type].fn(u, req, &reply, u->handlers[req->type].payload);
	} else {
		rc = core_dispatch(u, req, &reply);
	}
	if (rc) {
		json_decref(reply.json);
		if (bk_vunit_dead(u))
			return BK_EDISCONNECTED;
		return send_error_last(ch, req->id);
	}
	if (reply.is_data) {
		bk_proto_msg m = {.type = BK_MSG_DATA,
		                  .id = req->id,
		                  .offset = reply.offset,
		                  .data = data_buf,
		                  .data_len = reply.data_len};
		rc = bk_channel_send(ch, &m, bk_deadline_in(30000));
	} else {
		rc = send_ok(ch, req->id, reply.json);
	}
	json_decref(reply.json);
	if (take_end_session(u) && rc == 0)
		rc = BK_ECANCELLED; /* REBOOT: the unit goes away after its answer */
	return rc;
}

static int answer_hello(bk_channel *ch, const bk_proto_msg *req, bool *said_hello)
{
	json_t *ans = NULL;
	uint32_t v = 0;
	int rc = bk_proto_hello_select(req->json, BK_PROTO_VERSION, BK_PROTO_VERSION, &v);
	if (rc == 0)
		rc = bk_proto_hello_answer(&ans, v);
	if (rc) {
		json_decref(ans);
		return send_error_last(ch, req->id);
	}
	bk_proto_msg m = {.type = BK_MSG_HELLO, .id = req->id, .json = ans};
	rc = bk_channel_send(ch, &m, bk_deadline_in(30000));
	json_decref(ans);
	if (rc == 0)
		*said_hello = true;
	return rc;
}

static int session_loop(bk_vunit *u, bk_channel *ch, uint64_t stall_at, bool *stalled)
{
	bk_proto_msg req;
	bool said_hello = false;
	uint64_t count = 0;
	uint8_t *data_buf = bk__malloc(BK_PROTO_DATA_MAX);
	int rc = data_buf ? 0 : BK_ENOMEM;
	while (rc == 0) {
		rc = bk_channel_recv(ch, &req, bk_deadline_in(POLL_MS));
		if (rc == BK_ETIMEOUT) {
			rc = interrupted(u) ? BK_ECANCELLED : 0;
			continue;
		}
		if (rc == BK_EFORMAT) {
			/* Authenticated but not a valid message: answer it, go on. */
			rc = send_error_last(ch, req.id);
			bk_proto_msg_clear(&req);
			continue;
		}
		if (rc)
			break;
		if (req.type == BK_MSG_HELLO) {
			rc = answer_hello(ch, &req, &said_hello);
		} else if (!said_hello) {
			bk__error_set(BK_EINVALID, "hello-required",
			              "%s before HELLO: the protocol version comes first",
			              bk_proto_type_name(req.type));
			rc = send_error_last(ch, req.id);
		} else if (++count == stall_at) {
			*stalled = true; /* never answered */
		} else {
			rc = answer(u, ch, &req, data_buf);
		}
		bk_proto_msg_clear(&req);
		if (rc == 0 && bk_vunit_dead(u))
			rc = BK_EDISCONNECTED;
	}
	bk__free(data_buf);
	if (rc == BK_EDISCONNECTED && strcmp(bk_error_last()->reason, "closed") == 0 &&
	    !bk_vunit_dead(u))
		rc = 0; /* the terminal hung up between messages: a normal end */
	if (rc == BK_ECANCELLED)
		rc = 0;
	return rc;
}

/* Becomes the active session, waiting up to `grace_ms` for another to end. */
static bool claim(bk_vunit *u, int64_t grace_ms)
{
	bk_deadline d = bk_deadline_in(grace_ms);
	for (;;) {
		bool got = false;
		pthread_mutex_lock(&u->lock);
		if (!u->active && !u->dead)
			got = u->active = true;
		pthread_mutex_unlock(&u->lock);
		if (got || bk_deadline_left(d) == 0)
			return got;
		struct timespec ts = {0, 10 * 1000000L};
		nanosleep(&ts, NULL);
	}
}

int bk_vunit_serve(bk_vunit *u, bk_stream *transport, bk_deadline handshake_deadline)
{
	session_faults sf;
	bk_channel *ch = NULL;
	bk_channel_cfg cfg;
	bool active = false, stalled = false, corrupted = false;
	int rc;
	if (u == NULL || transport == NULL) {
		bk_stream_free(transport);
		return bk__error_set(BK_EINVALID, NULL, "unit: nothing to serve");
	}
	if (bk_vunit_dead(u)) {
		bk_stream_free(transport);
		return bk__error_set(BK_EDISCONNECTED, "power-loss", "unit %s: power is off",
		                     u->serial);
	}
	rc = bk_vfw_before_session(u->fw); /* refused while rebooting */
	if (rc) {
		bk_stream_free(transport);
		return rc;
	}
	pthread_mutex_lock(&u->lock);
	arm_faults(u, &sf, false);
	uint64_t disconnect = sf.disconnect >= 0 ? u->faults[sf.disconnect].value : 0;
	uint64_t stall_at = 0;
	uint64_t corrupt = sf.corrupt >= 0 ? u->faults[sf.corrupt].value : 0;
	pthread_mutex_unlock(&u->lock);

	if (disconnect || sf.rate) {
		rc = bk_vunit_fault_stream_new(&transport, transport, disconnect, sf.rate);
		if (rc)
			goto done;
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.noise_secret = bk_keyfile_noise_secret(u->keys);
	cfg.cert = u->cert;
	cfg.cas = &u->service_ca;
	cfg.ncas = 1;
	cfg.corrupt_frame = corrupt;
	cfg.corrupted = &corrupted;
	rc = bk_channel_accept(&ch, transport, 1, &cfg, handshake_deadline);
	transport = NULL;
	if (rc)
		goto done;
	if (sf.refuse) {
		rc = bk__error_set(BK_EAUTH, "handshake-refused",
		                   "unit %s refuses the terminal (refuse-handshake fault)",
		                   u->serial);
		bk_channel_refuse(ch, rc, "handshake-refused", bk_error_last()->message);
		bk_channel_linger(ch, 2000);
		rc = bk__error_set(BK_EAUTH, "handshake-refused",
		                   "unit %s refuses the terminal (refuse-handshake fault)",
		                   u->serial);
		goto done;
	}
	/* A terminal that just hung up may not be gone yet: give it a moment. */
	active = !sf.busy && claim(u, BUSY_GRACE_MS);
	if (!active) {
		rc = bk__error_set(BK_EBUSY, "busy", "unit %s is busy with another terminal",
		                   u->serial);
		bk_channel_refuse(ch, rc, "busy", bk_error_last()->message);
		bk_channel_linger(ch, 2000);
		rc = bk__error_set(BK_EBUSY, "busy", "unit %s is busy with another terminal",
		                   u->serial);
		goto done;
	}
	pthread_mutex_lock(&u->lock);
	arm_faults(u, &sf, true);
	stall_at = sf.stall >= 0 ? u->faults[sf.stall].value : 0;
	pthread_mutex_unlock(&u->lock);
	rc = bk_vunit_step(u, "handshake", 0);
	if (rc == 0)
		rc = session_loop(u, ch, stall_at, &stalled);
done:
	pthread_mutex_lock(&u->lock);
	if (active)
		u->active = false;
	release_fault(u, sf.corrupt, corrupted);
	release_fault(u, sf.stall, stalled);
	release_fault(u, sf.disconnect,
	              rc == BK_EDISCONNECTED &&
	                  strcmp(bk_error_last()->reason, "fault-disconnect") == 0);
	pthread_mutex_unlock(&u->lock);
	bk_channel_free(ch);
	bk_stream_free(transport);
	return rc;
}
