/* aibo-cloudsim: the command line (serve, and the seeding commands). */
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libbackup/libbackup.h>

#include "sim.h"

static const char usage_text[] =
    "usage: aibo-cloudsim serve --db FILE [--pki DIR] [--listen ADDR:PORT] --token TOKEN\n"
    "                           [--read-token TOKEN] [--tls-cert FILE --tls-key FILE]\n"
    "                           [--record FILE] [--fault SPEC]...\n"
    "       aibo-cloudsim register-unit --db FILE [--pki DIR] [--owner OWNER]\n"
    "                           [--device-id ID] [--firmware VERSION] CERT\n"
    "       aibo-cloudsim add-ticket --db FILE --old SERIAL TICKET\n"
    "       aibo-cloudsim add-backup --db FILE --serial SERIAL [--id ID] [--created TIME]\n"
    "                           [--firmware VERSION] [--schema N] BACKUP\n";

static int usage(void)
{
	fputs(usage_text, stderr);
	return 2;
}

static int fail(const char *what)
{
	fprintf(stderr, "aibo-cloudsim: %s: %s\n", what, bk_error_last()->message);
	return 1;
}

enum {
	O_DB = 1000,
	O_PKI,
	O_LISTEN,
	O_TOKEN,
	O_READ_TOKEN,
	O_TLS_CERT,
	O_TLS_KEY,
	O_FAULT,
	O_RECORD,
	O_OWNER,
	O_DEVICE_ID,
	O_FIRMWARE,
	O_OLD,
	O_SERIAL,
	O_ID,
	O_CREATED,
	O_SCHEMA,
	O_TOKEN_FILE,
	O_HELP,
};

static const struct option longopts[] = {
    {"db", required_argument, NULL, O_DB},
    {"pki", required_argument, NULL, O_PKI},
    {"listen", required_argument, NULL, O_LISTEN},
    {"token", required_argument, NULL, O_TOKEN},
    {"token-file", required_argument, NULL, O_TOKEN_FILE},
    {"read-token", required_argument, NULL, O_READ_TOKEN},
    {"tls-cert", required_argument, NULL, O_TLS_CERT},
    {"tls-key", required_argument, NULL, O_TLS_KEY},
    {"fault", required_argument, NULL, O_FAULT},
    {"record", required_argument, NULL, O_RECORD},
    {"owner", required_argument, NULL, O_OWNER},
    {"device-id", required_argument, NULL, O_DEVICE_ID},
    {"firmware", required_argument, NULL, O_FIRMWARE},
    {"old", required_argument, NULL, O_OLD},
    {"serial", required_argument, NULL, O_SERIAL},
    {"id", required_argument, NULL, O_ID},
    {"created", required_argument, NULL, O_CREATED},
    {"schema", required_argument, NULL, O_SCHEMA},
    {"help", no_argument, NULL, O_HELP},
    {NULL, 0, NULL, 0},
};

typedef struct args {
	sim_config cfg;
	const char *owner, *device_id, *firmware, *old, *serial, *id, *created, *schema;
	const char *token_file;
	int npos;
	const char *pos[4];
} args;

static int parse(args *a, int argc, char **argv)
{
	int c;
	memset(a, 0, sizeof(*a));
	a->cfg.listen = "127.0.0.1:0";
	optind = 2;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case O_DB:
			a->cfg.db_path = optarg;
			break;
		case O_PKI:
			a->cfg.pki_dir = optarg;
			break;
		case O_LISTEN:
			a->cfg.listen = optarg;
			break;
		case O_TOKEN:
			a->cfg.token = optarg;
			break;
		case O_TOKEN_FILE:
			a->token_file = optarg;
			break;
		case O_READ_TOKEN:
			a->cfg.read_token = optarg;
			break;
		case O_TLS_CERT:
			a->cfg.tls_cert = optarg;
			break;
		case O_TLS_KEY:
			a->cfg.tls_key = optarg;
			break;
		case O_RECORD:
			a->cfg.record = optarg;
			break;
		case O_FAULT:
			if (a->cfg.nfaults == BK_ARRAY_LEN(a->cfg.faults) ||
			    sim_fault_parse(&a->cfg.faults[a->cfg.nfaults], optarg) != 0) {
				fprintf(stderr, "aibo-cloudsim: --fault: cannot use '%s'\n",
				        optarg);
				return -1;
			}
			a->cfg.nfaults++;
			break;
		case O_OWNER:
			a->owner = optarg;
			break;
		case O_DEVICE_ID:
			a->device_id = optarg;
			break;
		case O_FIRMWARE:
			a->firmware = optarg;
			break;
		case O_OLD:
			a->old = optarg;
			break;
		case O_SERIAL:
			a->serial = optarg;
			break;
		case O_ID:
			a->id = optarg;
			break;
		case O_CREATED:
			a->created = optarg;
			break;
		case O_SCHEMA:
			a->schema = optarg;
			break;
		default:
			return -1;
		}
	}
	for (; optind < argc; optind++) {
		if (a->npos == 4)
			return -1;
		a->pos[a->npos++] = argv[optind];
	}
	if (a->cfg.db_path == NULL) {
		fprintf(stderr, "aibo-cloudsim: --db FILE is required\n");
		return -1;
	}
	return 0;
}

static bool valid_id(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == '-'))
			return false;
	return true;
}

static int cmd_serve(args *a)
{
	static char token_buf[4096];
	if (a->npos != 0)
		return usage();
	if (a->token_file) {
		uint8_t *data = NULL;
		size_t len = 0;
		if (bk_file_check_private(a->token_file) != 0 ||
		    bk_file_read(a->token_file, sizeof(token_buf) - 1, &data, &len) != 0)
			return fail(a->token_file);
		while (len > 0 &&
		       (data[len - 1] == '\n' || data[len - 1] == '\r' || data[len - 1] == ' '))
			len--;
		memcpy(token_buf, data, len);
		token_buf[len] = '\0';
		sodium_memzero(data, len);
		bk__free(data);
		a->cfg.token = token_buf;
	}
	if (a->cfg.token == NULL || a->cfg.token[0] == '\0') {
		fprintf(stderr, "aibo-cloudsim: serve needs --token TOKEN or --token-file FILE\n");
		return 2;
	}
	if ((a->cfg.tls_cert == NULL) != (a->cfg.tls_key == NULL)) {
		fprintf(stderr, "aibo-cloudsim: --tls-cert and --tls-key go together\n");
		return 2;
	}
	int rc = sim_serve(&a->cfg);
	sodium_memzero(token_buf, sizeof(token_buf));
	return rc;
}

static int cmd_register_unit(args *a)
{
	bk_cert *cert = NULL;
	sim_pki pki;
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int rc = 1;
	memset(&pki, 0, sizeof(pki));
	if (a->npos != 1)
		return usage();
	if (bk_cert_read(&cert, a->pos[0]) != 0) {
		rc = fail(a->pos[0]);
		goto done;
	}
	if (bk_cert_role_get(cert) != BK_CERT_ROLE_UNIT) {
		fprintf(stderr, "aibo-cloudsim: %s: not a unit certificate\n", a->pos[0]);
		goto done;
	}
	if (sim_pki_load(&pki, a->cfg.pki_dir) != 0)
		goto done;
	if (pki.have_factory &&
	    bk_cert_verify(cert, &pki.factory, 1, BK_CERT_ROLE_UNIT, (int64_t)time(NULL)) != 0) {
		rc = fail(a->pos[0]);
		goto done;
	}
	const char *serial = bk_cert_serial(cert);
	if (!valid_id(serial)) {
		fprintf(stderr, "aibo-cloudsim: %s: serial unusable in the API\n", a->pos[0]);
		goto done;
	}
	char device_id[80];
	if (a->device_id)
		bk_strlcpy(device_id, a->device_id, sizeof(device_id));
	else
		snprintf(device_id, sizeof(device_id), "dev-%s", serial);
	if (sim_db_open(&db, a->cfg.db_path) != 0)
		goto done;
	if (sqlite3_prepare_v2(
	        db,
	        "INSERT OR REPLACE INTO units(serial, model, hw_rev, device_id, owner,"
	        " status, firmware, cert) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
	        -1, &st, NULL) != SQLITE_OK)
		goto sql;
	size_t len;
	const uint8_t *bytes = bk_cert_bytes(cert, &len);
	sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, bk_cert_model(cert), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, bk_cert_hw_revision(cert), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, device_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, a->owner, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, a->owner ? "active" : "stock", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, a->firmware, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 8, bytes, (int)len, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		goto sql;
	printf("%s\n", serial);
	rc = 0;
	goto done;
sql:
	fprintf(stderr, "aibo-cloudsim: %s: %s\n", a->cfg.db_path, sqlite3_errmsg(db));
done:
	sqlite3_finalize(st);
	sqlite3_close(db);
	sim_pki_free(&pki);
	bk_cert_free(cert);
	return rc;
}

static int cmd_add_ticket(args *a)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int rc = 1;
	if (a->npos != 1 || a->old == NULL)
		return usage();
	if (!valid_id(a->pos[0]) || !valid_id(a->old)) {
		fprintf(stderr,
		        "aibo-cloudsim: ticket and serial must be 1 to 64 of A-Za-z0-9._-\n");
		return 2;
	}
	if (sim_db_open(&db, a->cfg.db_path) != 0)
		return 1;
	if (sqlite3_prepare_v2(db, "SELECT 1 FROM units WHERE serial = ?", -1, &st, NULL) !=
	    SQLITE_OK)
		goto sql;
	sqlite3_bind_text(st, 1, a->old, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_ROW) {
		fprintf(stderr, "aibo-cloudsim: unit %s is not registered\n", a->old);
		goto done;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (sqlite3_prepare_v2(db,
	                       "INSERT OR REPLACE INTO tickets(ticket, old_serial, status)"
	                       " VALUES (?, ?, 'open')",
	                       -1, &st, NULL) != SQLITE_OK)
		goto sql;
	sqlite3_bind_text(st, 1, a->pos[0], -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, a->old, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		goto sql;
	rc = 0;
	goto done;
sql:
	fprintf(stderr, "aibo-cloudsim: %s: %s\n", a->cfg.db_path, sqlite3_errmsg(db));
done:
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}

static int cmd_add_backup(args *a)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	bk_stream *in = NULL;
	uint8_t *hdr = NULL;
	size_t hdr_len = 0;
	char *statement = NULL, *abs_path = NULL, *abs_stmt = NULL;
	char id[65], created[21];
	int rc = 1;
	if (a->npos != 1 || a->serial == NULL)
		return usage();
	/* An age file: its header must read. */
	if (bk_stream_file_open(&in, a->pos[0]) != 0 ||
	    bk_age_header_read(&hdr, &hdr_len, in, NULL, bk_deadline_in(10000)) != 0) {
		rc = fail(a->pos[0]);
		goto done;
	}
	uint64_t size = 0;
	if (bk_stream_ctrl(in, BK_STREAM_CTRL_SIZE, &size) != 0) {
		rc = fail(a->pos[0]);
		goto done;
	}
	statement = bk__asprintf("%s.statement", a->pos[0]);
	abs_path = realpath(a->pos[0], NULL);
	abs_stmt = statement ? realpath(statement, NULL) : NULL;
	if (abs_path == NULL || abs_stmt == NULL) {
		fprintf(stderr, "aibo-cloudsim: %s: no statement beside the backup\n", statement);
		goto done;
	}
	if (a->id) {
		if (!valid_id(a->id)) {
			fprintf(stderr, "aibo-cloudsim: --id must be 1 to 64 of A-Za-z0-9._-\n");
			goto done;
		}
		bk_strlcpy(id, a->id, sizeof(id));
	} else {
		uint8_t r[16];
		char hex[33];
		randombytes_buf(r, sizeof(r));
		r[6] = (uint8_t)((r[6] & 0x0f) | 0x40);
		r[8] = (uint8_t)((r[8] & 0x3f) | 0x80);
		bk_hex_encode(hex, r, sizeof(r));
		snprintf(id, sizeof(id), "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12,
		         hex + 16, hex + 20);
	}
	int64_t t;
	if (a->created) {
		if (bk_time_parse_rfc3339(a->created, &t) != 0) {
			fprintf(stderr, "aibo-cloudsim: --created: not an RFC 3339 UTC time\n");
			goto done;
		}
	} else {
		t = (int64_t)time(NULL);
	}
	bk_time_rfc3339(created, t);
	int64_t schema = -1;
	if (a->schema && bk_parse_i64(a->schema, &schema) != 0) {
		fprintf(stderr, "aibo-cloudsim: --schema: not a number\n");
		goto done;
	}
	if (sim_db_open(&db, a->cfg.db_path) != 0)
		goto done;
	if (sqlite3_prepare_v2(db, "SELECT 1 FROM units WHERE serial = ?", -1, &st, NULL) !=
	    SQLITE_OK)
		goto sql;
	sqlite3_bind_text(st, 1, a->serial, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_ROW) {
		fprintf(stderr, "aibo-cloudsim: unit %s is not registered\n", a->serial);
		goto done;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (sqlite3_prepare_v2(db,
	                       "INSERT OR REPLACE INTO backups(id, serial, path, statement_path,"
	                       " size, created, firmware, schema) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
	                       -1, &st, NULL) != SQLITE_OK)
		goto sql;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, a->serial, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, abs_path, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, abs_stmt, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, (sqlite3_int64)size);
	sqlite3_bind_text(st, 6, created, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, a->firmware, -1, SQLITE_STATIC);
	if (schema >= 0)
		sqlite3_bind_int64(st, 8, schema);
	else
		sqlite3_bind_null(st, 8);
	if (sqlite3_step(st) != SQLITE_DONE)
		goto sql;
	printf("%s\n", id);
	rc = 0;
	goto done;
sql:
	fprintf(stderr, "aibo-cloudsim: %s: %s\n", a->cfg.db_path, sqlite3_errmsg(db));
done:
	sqlite3_finalize(st);
	sqlite3_close(db);
	bk_stream_free(in);
	bk__free(hdr);
	bk__free(statement);
	free(abs_path);
	free(abs_stmt);
	return rc;
}

int main(int argc, char **argv)
{
	args a;
	if (argc < 2)
		return usage();
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (bk_init() != 0)
		return fail("init");
	if (parse(&a, argc, argv) != 0)
		return usage();
	if (strcmp(argv[1], "serve") == 0)
		return cmd_serve(&a);
	if (strcmp(argv[1], "register-unit") == 0)
		return cmd_register_unit(&a);
	if (strcmp(argv[1], "add-ticket") == 0)
		return cmd_add_ticket(&a);
	if (strcmp(argv[1], "add-backup") == 0)
		return cmd_add_backup(&a);
	fprintf(stderr, "aibo-cloudsim: unknown command '%s'\n", argv[1]);
	return usage();
}
