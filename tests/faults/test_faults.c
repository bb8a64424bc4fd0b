/* Fault loops (STYLE.md, Tests): every path below runs once per fault point,
 * with the Nth allocation failing (and every later one), and, for paths that
 * read a byte stream, with that stream cut after K bytes (an early end, or a
 * disconnect). Each run must end in success or a clean negative BK_E* code
 * with the error message set, leave no *.part file or staging folder behind,
 * and leak nothing (LeakSanitizer, in the sanitizer build).
 *
 * Adding a path: write one function `static int path_<name>(fault *f)` that
 * prepares what it needs (fixtures below), calls fault_arm(f) just before the
 * code under test and fault_disarm(f) right after, routes the input it reads
 * through fault_input() when it is a stream, writes its outputs under
 * f->work, checks its own result (CHECK) and returns the operation's code;
 * then list it with FAULT_PATH() and in BK_RUN_TESTS at the end. */
#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include <libbackup/libbackup.h>
#include <libbackup/backup.h>
#include <libbackup/catalog.h>
#include <libbackup/device.h>

#include "crypto/age.h"
#include "device/virtual/pki.h"
#include "libbackup/archive/archive.h"
#include "libbackup/job/job_internal.h"
#include "libbackup/util/util.h"
#include "testlib.h"
#include "tests/device/helpers.h"

/* --- The harness -------------------------------------------------------------------------- */

enum { FAULT_ALLOC = 1, FAULT_CUT = 2 };

typedef struct fault {
	const char *name;   /* the path's name */
	long alloc_at;      /* fail this allocation and every later one (0: none) */
	int64_t cut_at;     /* cut the input after this many bytes (-1: none) */
	int cut_code;       /* what the cut reports: 0 (an early end) or a BK_E* code */
	uint64_t input_len; /* bytes of the stream fault_input() wrapped */
	bool has_input;
	bool fired;      /* an allocation was made to fail */
	char work[4096]; /* an empty folder for this run's outputs */
} fault;

static void fault_arm(fault *f)
{
	if (f->alloc_at > 0)
		bk__alloc_fail_at(f->alloc_at);
}

static void fault_disarm(fault *f)
{
	if (f->alloc_at > 0) {
		f->fired = bk__alloc_count() >= f->alloc_at;
		bk__alloc_fail_at(0);
	}
}

/* Puts the cut filter on `*s` (which holds `len` bytes) when this run cuts;
 * the filter then owns the stream. */
static int fault_input(fault *f, bk_stream **s, uint64_t len)
{
	f->input_len = len;
	f->has_input = true;
	if (f->cut_at < 0)
		return 0;
	bk_stream *cut = NULL;
	int rc = bk_stream_cut_new(&cut, *s, 1, (uint64_t)f->cut_at, f->cut_code);
	if (rc)
		return rc;
	*s = cut;
	return 0;
}

static const char *fault_path(const fault *f, const char *name)
{
	static char buf[4][4200];
	static int slot;
	char *p = buf[slot++ % 4];
	snprintf(p, 4200, "%s/%s", f->work, name);
	return p;
}

typedef int (*fault_path_fn)(fault *f);

/* What a path returns when it could not even prepare (a test failure, not
 * an outcome): the loop stops. */
#define FAULT_SETUP_FAILED 1
#define NEED(cond)                                                                                 \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "  %s:%d: setup: %s failed: %s\n", __FILE__, __LINE__,     \
			        #cond, bk_error_last()->message);                                  \
			bk_test_failures++;                                                        \
			return FAULT_SETUP_FAILED;                                                 \
		}                                                                                  \
	} while (0)

static int leftovers_cb(const char *p, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	const char *name = p + ftw->base;
	size_t n = strlen(name);
	if ((n > 5 && strcmp(name + n - 5, ".part") == 0) || strncmp(name, ".staging", 8) == 0 ||
	    strncmp(name, ".extract-", 9) == 0) {
		fprintf(stderr, "  left behind: %s\n", p);
		return 1;
	}
	return 0;
}

/* No *.part file and no staging folder (.staging-*, .extract-*) anywhere
 * below `dir`. */
static bool no_leftovers(const char *dir)
{
	return nftw(dir, leftovers_cb, 16, FTW_PHYS) == 0;
}

/* Checks one run's outcome; returns false (after reporting) when it is wrong. */
static bool outcome_ok(const fault *f, int rc, const char *what, long point)
{
	const bk_error *e = bk_error_last();
	bool ok = true;
	if (rc > 0 || rc < BK_EFORMAT) {
		fprintf(stderr, "  %s: %s %ld: not a BK_E* code: %d\n", f->name, what, point, rc);
		ok = false;
	} else if (rc < 0 && (e->code != rc || e->message == NULL || e->message[0] == '\0' ||
	                      e->reason == NULL || e->reason[0] == '\0')) {
		fprintf(stderr, "  %s: %s %ld: code %d but the last error is %d \"%s\"\n", f->name,
		        what, point, rc, e->code, e->message ? e->message : "(null)");
		ok = false;
	}
	if (!no_leftovers(f->work)) {
		fprintf(stderr, "  %s: %s %ld: a partial output was left (rc %d)\n", f->name, what,
		        point, rc);
		ok = false;
	}
	return ok;
}

static int rm_below_cb(const char *p, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	return ftw->level > 0 ? remove(p) : 0;
}

/* The loop's work folder, emptied for each run (kept, not re-made: folder
 * removal is slow on some file systems). */
static void new_work(fault *f, const char *kind)
{
	snprintf(f->work, sizeof(f->work), "%s/%s-%s", bk_test_tmpdir(), f->name, kind);
	nftw(f->work, rm_below_cb, 16, FTW_DEPTH | FTW_PHYS);
	if (bk_mkdir_p(f->work, 0700) != 0) {
		fprintf(stderr, "  cannot make %s\n", f->work);
		bk_test_failures++;
	}
}

#define ALLOC_LOOP_MAX 50000

/* Fails allocation N = 1, 2, ... until a run completes without any failed
 * allocation. Every failing run must end with BK_ENOMEM. */
static void alloc_loop(const char *name, fault_path_fn fn)
{
	long n;
	bool done = false;
	long failed_runs = 0, tolerated = 0;
	for (n = 1; n <= ALLOC_LOOP_MAX && !done; n++) {
		fault f = {.name = name, .alloc_at = n, .cut_at = -1};
		new_work(&f, "alloc");
		bk_error_clear();
		int before = bk_test_failures;
		int rc = fn(&f);
		bk__alloc_fail_at(0);
		if (bk_test_failures > before)
			fprintf(stderr, "  %s: (the check above: allocation %ld, rc %d)\n", name, n,
			        rc);
		if (rc == FAULT_SETUP_FAILED)
			return;
		if (!outcome_ok(&f, rc, "allocation", n))
			bk_test_failures++;
		if (rc != 0) {
			failed_runs++;
			if (rc != BK_ENOMEM) {
				fprintf(stderr,
				        "  %s: allocation %ld: %d (%s) instead of BK_ENOMEM\n",
				        name, n, rc, bk_error_last()->message);
				bk_test_failures++;
			}
			if (!f.fired) {
				fprintf(stderr,
				        "  %s: allocation %ld: failed (%d: %s) without a fault\n",
				        name, n, rc, bk_error_last()->message);
				bk_test_failures++;
			}
		} else if (f.fired) {
			tolerated++;
		} else {
			done = true;
		}
		if (bk_test_failures > 20)
			break; /* enough to go on */
	}
	printf("  %s: %ld allocation points, %ld failed cleanly, %ld survived\n", name, n - 1,
	       failed_runs, tolerated);
	CHECK(done);
	CHECK(failed_runs > 3); /* the loop really failed allocations */
}

/* Cuts the input after K = 0, 1, ... bytes, up to past its end: with an
 * early end (code 0) and with a disconnect. A cut inside the input must fail
 * (with the cut's code when it has one); past the input, the run succeeds. */
static void cut_loop(const char *name, fault_path_fn fn, int code)
{
	uint64_t len = 0;
	long fails = 0;
	bool ended = false;
	for (int64_t k = 0; !ended; k++) {
		fault f = {.name = name, .cut_at = k, .cut_code = code};
		new_work(&f, code ? "disconnect" : "cut");
		bk_error_clear();
		int before = bk_test_failures;
		int rc = fn(&f);
		if (bk_test_failures > before)
			fprintf(stderr, "  %s: (the check above: cut %lld, rc %d)\n", name,
			        (long long)k, rc);
		if (rc == FAULT_SETUP_FAILED)
			return;
		if (!f.has_input) {
			fprintf(stderr, "  %s: the path reads no stream through fault_input()\n",
			        name);
			bk_test_failures++;
			return;
		}
		len = f.input_len;
		/* An early end right at the input's end is its real end. */
		bool whole = code == 0 ? (uint64_t)k >= len : (uint64_t)k > len;
		if (!outcome_ok(&f, rc, code ? "disconnect at" : "cut at", (long)k))
			bk_test_failures++;
		if (whole && rc != 0) {
			fprintf(stderr, "  %s: cut %lld of %llu: failed (%d: %s)\n", name,
			        (long long)k, (unsigned long long)len, rc,
			        bk_error_last()->message);
			bk_test_failures++;
		} else if (!whole && rc == 0) {
			fprintf(stderr,
			        "  %s: cut %lld of %llu: the truncated input was accepted\n", name,
			        (long long)k, (unsigned long long)len);
			bk_test_failures++;
		} else if (!whole && code != 0 && rc != code) {
			fprintf(stderr, "  %s: disconnect at %lld: %d (%s) instead of %d\n", name,
			        (long long)k, rc, bk_error_last()->message, code);
			bk_test_failures++;
		}
		if (rc != 0)
			fails++;
		ended = whole || bk_test_failures > 20;
	}
	printf("  %s: %llu-byte input cut at every byte (%s), %ld cuts failed cleanly\n", name,
	       (unsigned long long)len, code ? "disconnect" : "early end", fails);
	CHECK(len > 0);
}

/* --- Fixtures: built once per test, outside any fault ------------------------------------- */

static struct {
	char dir[4096]; /* the test's tmpdir the fixtures live in */
	bk_config *cfg; /* the lab's configuration */
	char lab[4200];
	char backup[4300];      /* a small backup file (pack -o) */
	bk_age_identities *ids; /* the depot identity, opening the backup */
	char memory[4300];      /* the memory folder the backup holds */
	char age_file[4300];    /* a small age file */
	uint8_t *age_plain;
	size_t age_plain_len;
	bk_age_identities *age_ids;
	lab dlab; /* device lab (tests/device/helpers) */
	bool dlab_ready;
	bk_vunit *unit;
} fx;

static void fx_reset_if_stale(void)
{
	if (strcmp(fx.dir, bk_test_tmpdir()) == 0)
		return;
	memset(&fx, 0, sizeof(fx));
	snprintf(fx.dir, sizeof(fx.dir), "%s", bk_test_tmpdir());
}

static void fx_release(void)
{
	bk_config_free(fx.cfg);
	bk_age_identities_free(fx.ids);
	bk_age_identities_free(fx.age_ids);
	free(fx.age_plain);
	bk_vunit_free(fx.unit);
	memset(&fx, 0, sizeof(fx));
}

static int put_file(const char *path, const void *data, size_t len)
{
	char *dir = bk_path_dirname(path);
	int rc = dir ? bk_mkdir_p(dir, 0755) : BK_ENOMEM;
	bk__free(dir);
	if (rc)
		return rc;
	FILE *fp = fopen(path, "wb");
	if (fp == NULL)
		return BK_EIO;
	size_t n = len ? fwrite(data, 1, len, fp) : 0;
	return fclose(fp) == 0 && n == len ? 0 : BK_EIO;
}

static bk_config *fx_lab(void)
{
	static const char *const no_env[] = {NULL};
	fx_reset_if_stale();
	if (fx.cfg)
		return fx.cfg;
	bk_config_opts o = BK_CONFIG_OPTS_INIT;
	char file[4300];
	snprintf(fx.lab, sizeof(fx.lab), "%s/fixture-lab", fx.dir);
	if (bk_vdev_pki_init(fx.lab) != 0)
		return NULL;
	snprintf(file, sizeof(file), "%s/%s", fx.lab, BK_PKI_CONFIG);
	o.file = file;
	o.environ = no_env;
	if (bk_config_load(&fx.cfg, &o) != 0)
		return NULL;
	return fx.cfg;
}

/* A small backup of a small memory, written with -o beside its statement,
 * and the depot identity that opens it. */
static const char *fx_backup(void)
{
	if (fx_lab() == NULL)
		return NULL;
	if (fx.backup[0])
		return fx.backup;
	static const struct {
		const char *path, *text;
	} files[] = {
	    {"personality/traits.json", "{\"curious\": 7, \"playful\": 9}\n"},
	    {"memories/people/owner.json", "{\"name\": \"owner\", \"seen\": 1204}\n"},
	    {"settings/owner.json", "{\"volume\": 3}\n"},
	    {"logs/errors.txt", "E104 2026-01-02 left hind joint\n"},
	};
	snprintf(fx.memory, sizeof(fx.memory), "%s/fixture-memory", fx.dir);
	for (size_t i = 0; i < BK_ARRAY_LEN(files); i++) {
		char p[4500];
		snprintf(p, sizeof(p), "%s/%s", fx.memory, files[i].path);
		if (put_file(p, files[i].text, strlen(files[i].text)) != 0)
			return NULL;
	}
	char out[4300];
	snprintf(out, sizeof(out), "%s/fixture-backups/small.aibk", fx.dir);
	char parent[4300];
	snprintf(parent, sizeof(parent), "%s/fixture-backups", fx.dir);
	if (bk_mkdir_p(parent, 0755) != 0)
		return NULL;
	bk_backup_pack_opts o = BK_BACKUP_PACK_OPTS_INIT;
	bk_backup_report r;
	o.serial = "ERS1-0042";
	o.model = "ERS-1000";
	o.hardware_revision = "B";
	o.firmware_version = "4.2.0";
	o.schema_version = 3;
	o.output = out;
	if (bk_backup_pack(fx.cfg, fx.memory, &o, &r) != 0)
		return NULL;
	bk_backup_report_clear(&r);
	char id[4300];
	snprintf(id, sizeof(id), "%s/%s", fx.lab, BK_PKI_DEPOT_IDENTITY);
	if (bk_age_identities_new(&fx.ids) != 0 ||
	    bk_age_identities_load(fx.ids, id, 0, NULL, NULL) != 0)
		return NULL;
	snprintf(fx.backup, sizeof(fx.backup), "%s", out);
	return fx.backup;
}

/* A small age file (one chunk) and the identity that opens it. */
static const char *fx_age(void)
{
	fx_reset_if_stale();
	if (fx.age_file[0])
		return fx.age_file;
	bk_age_identity *id = NULL;
	bk_age_recipient r;
	bk_stream *file = NULL, *enc = NULL;
	fx.age_plain_len = 1000;
	fx.age_plain = malloc(fx.age_plain_len);
	if (fx.age_plain == NULL)
		return NULL;
	for (size_t i = 0; i < fx.age_plain_len; i++)
		fx.age_plain[i] = (uint8_t)(i * 31 + (i >> 9));
	if (bk_age_identity_generate(&id) != 0)
		return NULL;
	bk_age_identity_recipient(&r, id);
	int rc = bk_age_identities_new(&fx.age_ids);
	if (rc == 0)
		rc = bk_age_identities_add(fx.age_ids, id);
	bk_age_identity_free(id);
	if (rc)
		return NULL;
	char path[4300];
	snprintf(path, sizeof(path), "%s/fixture-plain.age", fx.dir);
	bk_age_encrypt_opts eo = BK_AGE_ENCRYPT_OPTS_INIT;
	eo.recipients = &r;
	eo.recipient_count = 1;
	if (bk_stream_atomic_new(&file, path, 0600, 1) != 0)
		return NULL;
	if (bk_age_encrypt_new(&enc, file, 1, &eo) != 0) {
		bk_stream_free(file);
		return NULL;
	}
	rc = bk_stream_write(enc, fx.age_plain, fx.age_plain_len, BK_DEADLINE_NONE);
	if (rc) {
		bk_stream_free(enc);
		return NULL;
	}
	if (bk_stream_close(enc, BK_DEADLINE_NONE) != 0)
		return NULL;
	snprintf(fx.age_file, sizeof(fx.age_file), "%s", path);
	return fx.age_file;
}

/* A virtual unit (opened, not served) and the device lab's terminal. */
static bk_vunit *fx_unit(void)
{
	fx_reset_if_stale();
	if (fx.unit)
		return fx.unit;
	char dir[600];
	if (lab_init(&fx.dlab) != 0)
		return NULL;
	if (lab_unit(&fx.dlab, "fixture-unit", "ERS1-0077", dir, sizeof(dir)) != 0)
		return NULL;
	if (bk_vunit_open(&fx.unit, dir) != 0)
		return NULL;
	return fx.unit;
}

static uint64_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static bool exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

/* --- Paths --------------------------------------------------------------------------------- */

/* Age decryption of a small file into an atomically written output file. */
static int path_age_decrypt(fault *f)
{
	const char *in_path = fx_age();
	NEED(in_path != NULL);
	const char *out_path = fault_path(f, "plain.out");
	bk_stream *in = NULL, *dec = NULL, *out = NULL;
	fault_arm(f);
	int rc = bk_stream_file_open(&in, in_path);
	if (rc == 0)
		rc = fault_input(f, &in, file_size(in_path));
	if (rc == 0)
		rc = bk_age_decrypt_new(&dec, in, 1, fx.age_ids, NULL, BK_DEADLINE_NONE);
	if (rc == 0)
		in = NULL; /* owned by the reader */
	if (rc == 0)
		rc = bk_stream_atomic_new(&out, out_path, 0600, 1);
	if (rc == 0)
		rc = bk_stream_copy(out, dec, NULL, BK_DEADLINE_NONE);
	if (rc == 0) {
		rc = bk_stream_close(out, BK_DEADLINE_NONE);
		out = NULL;
	}
	fault_disarm(f);
	bk_stream_free(out);
	bk_stream_free(dec);
	bk_stream_free(in);
	if (rc == 0) {
		uint8_t *back = NULL;
		size_t back_len = 0;
		CHECK_OK(bk_file_read(out_path, 1 << 20, &back, &back_len));
		CHECK(back != NULL && back_len == fx.age_plain_len &&
		      memcmp(back, fx.age_plain, back_len) == 0);
		bk__free(back);
	} else {
		CHECK(!exists(out_path));
	}
	return rc;
}

/* Archive reading: the small backup's file decrypted and its memory archive
 * read and extracted into a folder (staged, then moved into place). */
static int path_archive_read(fault *f)
{
	const char *in_path = fx_backup();
	NEED(in_path != NULL);
	const char *dest = fault_path(f, "dest");
	bk_stream *in = NULL, *dec = NULL;
	bk_manifest *m = NULL;
	bk_archive_read_opts ro = BK_ARCHIVE_READ_OPTS_INIT;
	ro.dest_dir = dest;
	ro.no_sync = true;
	NEED(bk_mkdir_p(dest, 0755) == 0);
	fault_arm(f);
	int rc = bk_stream_file_open(&in, in_path);
	if (rc == 0)
		rc = fault_input(f, &in, file_size(in_path));
	if (rc == 0)
		rc = bk_age_decrypt_new(&dec, in, 1, fx.ids, NULL, BK_DEADLINE_NONE);
	if (rc == 0)
		in = NULL;
	if (rc == 0)
		rc = bk_archive_read(dec, &ro, &m, NULL);
	fault_disarm(f);
	bk_stream_free(dec);
	bk_stream_free(in);
	if (rc == 0) {
		bk_domain_digests a, b;
		CHECK(m != NULL);
		CHECK_OK(bk_tree_digests(dest, &a));
		CHECK_OK(bk_tree_digests(fx.memory, &b));
		CHECK(bk_domain_digests_equal(&a, &b));
	} else {
		CHECK(m == NULL);
		CHECK(!exists(fault_path(f, "dest/personality")));
		CHECK(!exists(fault_path(f, "dest/memories")));
	}
	bk_manifest_free(m);
	return rc;
}

/* bk_backup_verify of the small backup (full: decrypt, every digest). */
static int path_backup_verify(fault *f)
{
	const char *path = fx_backup();
	NEED(path != NULL);
	bk_backup *b = NULL;
	bk_backup_read_opts o = BK_BACKUP_READ_OPTS_INIT;
	bk_backup_report r;
	memset(&r, 0, sizeof(r));
	fault_arm(f);
	int rc = bk_backup_open(&b, fx.cfg, path);
	if (rc == 0)
		rc = bk_backup_verify(b, &o, &r);
	fault_disarm(f);
	bk_backup_free(b);
	if (rc == 0)
		CHECK_EQ(r.files, 4);
	bk_backup_report_clear(&r); /* filled on failure too */
	/* Verification writes nothing beside the backup. */
	CHECK(no_leftovers(fx.dir));
	return rc;
}

/* bk_backup_extract of the small backup into a new folder. */
static int path_backup_extract(fault *f)
{
	const char *path = fx_backup();
	NEED(path != NULL);
	const char *dest = fault_path(f, "restored");
	bk_backup *b = NULL;
	bk_backup_read_opts o = BK_BACKUP_READ_OPTS_INIT;
	fault_arm(f);
	int rc = bk_backup_open(&b, fx.cfg, path);
	if (rc == 0)
		rc = bk_backup_extract(b, dest, &o, NULL);
	fault_disarm(f);
	bk_backup_free(b);
	if (rc == 0) {
		bk_domain_digests a, d;
		CHECK_OK(bk_tree_digests(dest, &a));
		CHECK_OK(bk_tree_digests(fx.memory, &d));
		CHECK(bk_domain_digests_equal(&a, &d));
	} else {
		/* Nothing is left: the folder it made is removed. */
		CHECK(!exists(dest));
	}
	return rc;
}

static void record_fill(bk_backup_record *r, const char *id, const char *loc)
{
	static uint8_t statement[] = "statement";
	memset(r, 0, sizeof(*r));
	r->id = (char *)id;
	r->location = (char *)loc;
	r->serial = "ERS1-0042";
	r->model = "ERS-1000";
	r->hw_rev = "B";
	r->fw_version = "4.2.0";
	r->schema = 3;
	r->created = "2026-01-02T03:04:05Z";
	r->producer = "lab-terminal-1";
	r->plaintext_size = 1000;
	r->file_size = 1200;
	r->payload_digest = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
	r->manifest_digest = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
	r->statement = statement;
	r->statement_len = sizeof(statement) - 1;
}

#define CAT_ID_OLD "11111111-2222-4333-8444-555555555555"
#define CAT_ID_NEW "99999999-8888-4777-8666-555555555555"

static int catalog_has(const char *db, const char *id, int *out)
{
	bk_catalog *cat = NULL;
	bk_backup_record r;
	memset(&r, 0, sizeof(r));
	int rc = bk_catalog_open(&cat, db);
	if (rc == 0) {
		rc = bk_catalog_backup_get(cat, id, &r);
		*out = rc == 0;
		if (rc == BK_ENOTFOUND)
			rc = 0;
		bk_backup_record_clear(&r);
	}
	bk_catalog_free(cat);
	return rc;
}

static bool db_intact(const char *db)
{
	sqlite3 *h = NULL;
	sqlite3_stmt *st = NULL;
	bool ok = false;
	if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		ok = strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0;
	sqlite3_finalize(st);
	sqlite3_close(h);
	return ok;
}

/* Catalog writes: open an existing catalog holding one backup, add another,
 * list, remove the first. Every call is atomic: afterwards the catalog opens,
 * is intact and holds exactly what the calls that succeeded say. */
static int path_catalog(fault *f)
{
	const char *db = fault_path(f, "state/depot.db");
	bk_catalog *cat = NULL;
	bk_backup_record old_r, new_r;
	bk_backup_record *list = NULL;
	size_t count = 0;
	int added = 0, removed = 0;
	record_fill(&old_r, CAT_ID_OLD, "/srv/backups/old.aibk");
	record_fill(&new_r, CAT_ID_NEW, "/srv/backups/new.aibk");
	/* The catalog as it was before (no fault). */
	NEED(0 == bk_catalog_open(&cat, db));
	NEED(0 == bk_catalog_backup_add(cat, &old_r));
	bk_catalog_free(cat);
	cat = NULL;

	fault_arm(f);
	int rc = bk_catalog_open(&cat, db);
	if (rc == 0) {
		rc = bk_catalog_backup_add(cat, &new_r);
		added = rc == 0;
	}
	if (rc == 0)
		rc = bk_catalog_backup_list(cat, NULL, &list, &count);
	if (rc == 0) {
		CHECK_EQ(count, 2);
		rc = bk_catalog_backup_remove(cat, CAT_ID_OLD);
		removed = rc == 0;
	}
	fault_disarm(f);
	bk_catalog_backup_list_free(list, count);
	bk_catalog_free(cat);

	const bk_error saved = *bk_error_last();
	char msg[512];
	snprintf(msg, sizeof(msg), "%s", saved.message ? saved.message : "");
	int has_old = -1, has_new = -1;
	CHECK(db_intact(db));
	CHECK_OK(catalog_has(db, CAT_ID_OLD, &has_old));
	CHECK_OK(catalog_has(db, CAT_ID_NEW, &has_new));
	if (added)
		CHECK_EQ(has_new, 1);
	if (removed)
		CHECK_EQ(has_old, 0);
	else
		CHECK_EQ(has_old, 1);
	/* Put the failing run's error back for the harness. */
	if (rc)
		bk__error_set(saved.code, saved.reason, "%s", msg);
	return rc;
}

/* The Noise handshake: the terminal opens an in-process session to a virtual
 * unit served in a thread (allocations fail on the terminal's thread). */
static int path_handshake(fault *f)
{
	bk_vunit *u = fx_unit();
	NEED(u != NULL);
	bk_device_opts o;
	bk_device *dev = NULL;
	bk_stream *end = NULL;
	inproc ip;
	lab_opts(&fx.dlab, &o);
	NEED(0 == inproc_start(&ip, u, &end));
	fault_arm(f);
	int rc = bk_device_open_stream(&dev, end, &o);
	fault_disarm(f);
	const bk_error saved = *bk_error_last();
	char msg[512];
	snprintf(msg, sizeof(msg), "%s", saved.message ? saved.message : "");
	if (rc == 0) {
		CHECK_STR(bk_device_serial(dev), "ERS1-0077");
		CHECK_OK(bk_device_ping(dev, NULL, 0));
	}
	bk_device_free(dev);
	int unit_rc = inproc_join(&ip);
	/* The unit sees a finished session, or a terminal that went away. */
	if (rc == 0)
		CHECK_EQ(unit_rc, 0);
	else
		CHECK(unit_rc <= 0);
	if (rc)
		bk__error_set(saved.code, saved.reason, "%s", msg);
	return rc;
}

/* --- Tests ---------------------------------------------------------------------------------- */

static void run_path(const char *name, fault_path_fn fn, unsigned kinds)
{
	if (kinds & FAULT_ALLOC)
		alloc_loop(name, fn);
	if (kinds & FAULT_CUT) {
		cut_loop(name, fn, 0);
		cut_loop(name, fn, BK_EDISCONNECTED);
	}
	fx_release();
}

/* The repair journal: a job created, a step begun and ended, an event and
 * a stop written, then its report and audit chain read back. Whatever a
 * failing run wrote, the chain of it still verifies. */
static int path_journal(fault *f)
{
	const char *db = fault_path(f, "state/depot.db");
	const char *id = "J-00000000000000aa";
	bk_catalog *cat = NULL;
	bk_config *cfg = NULL;
	bk_job_row r;
	char *rep = NULL;
	size_t n = 0;
	memset(&r, 0, sizeof(r));
	NEED(0 == bk_config_new(&cfg));
	NEED(0 == bk_config_set(cfg, "depot.db", db, "test"));
	/* The schema exists before (no fault). */
	NEED(0 == bk_catalog_open(&cat, db));
	bk_catalog_free(cat);
	cat = NULL;
	snprintf(r.id, sizeof(r.id), "%s", id);
	r.ticket = (char *)"T-1";
	snprintf(r.source, sizeof(r.source), "device");
	r.source_ref = (char *)"tcp:127.0.0.1:1";
	r.from_uri = (char *)"tcp:127.0.0.1:1";
	r.to_uri = (char *)"tcp:127.0.0.1:2";
	r.data = json_pack("{s:s}", "old_serial", "OLD-1");
	json_t *outcome = json_pack("{s:b}", "firmware_needed", 1);
	NEED(r.data != NULL && outcome != NULL);

	fault_arm(f);
	int rc = bk_catalog_open(&cat, db);
	if (rc == 0)
		rc = bk_job__create(cat, &r);
	if (rc == 0)
		rc = bk_job__step_begin(cat, id, "preflight", "pid 1 on test", "preflight begins");
	if (rc == 0)
		rc = bk_job__step_end(cat, id, "preflight", "done", outcome, r.data, "backup",
		                      "preflight done");
	if (rc == 0)
		rc = bk_job__event(cat, id, "backup", "job-resumed", "resume");
	if (rc == 0)
		rc = bk_job__stop(cat, id, "interrupted", BK_EDISCONNECTED, "peer-closed",
		                  "step backup: the unit went away", "resume it", "step-failed",
		                  "step backup: the unit went away");
	if (rc == 0)
		rc = bk_job_report(cfg, id, &rep);
	if (rc == 0)
		rc = bk_job_audit_verify(cfg, id, &n);
	fault_disarm(f);
	const bk_error saved = *bk_error_last();
	char msg[512];
	snprintf(msg, sizeof(msg), "%s", saved.message ? saved.message : "");
	bk_free(rep);
	bk_catalog_free(cat);
	json_decref(outcome);
	json_decref(r.data);

	if (rc == 0)
		CHECK_EQ(n, 5);
	size_t m = 0;
	int v = bk_job_audit_verify(cfg, id, &m);
	CHECK(v == 0 || v == BK_ENOTFOUND);
	CHECK(db_intact(db));
	bk_config_free(cfg);
	if (rc)
		bk__error_set(saved.code, saved.reason, "%s", msg);
	return rc;
}

#define FAULT_PATH(name, kinds)                                                                    \
	static void test_##name(void)                                                              \
	{                                                                                          \
		run_path(#name, path_##name, kinds);                                               \
	}

FAULT_PATH(age_decrypt, FAULT_ALLOC | FAULT_CUT)
FAULT_PATH(archive_read, FAULT_ALLOC | FAULT_CUT)
FAULT_PATH(backup_verify, FAULT_ALLOC)
FAULT_PATH(backup_extract, FAULT_ALLOC)
FAULT_PATH(catalog, FAULT_ALLOC)
FAULT_PATH(handshake, FAULT_ALLOC)
FAULT_PATH(journal, FAULT_ALLOC)

BK_RUN_TESTS(BK_TEST(test_age_decrypt), BK_TEST(test_archive_read), BK_TEST(test_backup_verify),
             BK_TEST(test_backup_extract), BK_TEST(test_catalog), BK_TEST(test_handshake),
             BK_TEST(test_journal))
