/* The private-API client against aibo-cloudsim on 127.0.0.1: every call,
 * the status mapping, retries, idempotency, TLS, and secrecy of the token. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libbackup/api.h>
#include <libbackup/libbackup.h>

#include "crypto/age.h"
#include "crypto/cert.h"
#include "libbackup/api/api_internal.h"
#include "libbackup/util/util.h"
#include "testlib.h"

#define TOKEN      "tok-5ecret-Qx7Zr2"
#define READ_TOKEN "tok-readonly-9Hh3"

/* --- The lab: a PKI, units, a ticket, a backup -------------------------------- */

typedef struct lab {
	char dir[512];
	char db[600];
	bk_minisign_seckey *factory;
	bk_minisign_pubkey service_pub;
	bk_age_identity *unit_age[4]; /* OLD1, NEW1, NEW2 (bound), OTHER (other model) */
	uint8_t *cert[4];
	size_t cert_len[4];
	uint8_t *plain;
	size_t plain_len;
	char backup_id[65];
	char backup_path[600];
} lab;

static const char *const serials[4] = {"OLD1", "NEW1", "BOUND1", "OTHER1"};

static const char *sim_bin(void)
{
	static char path[1024];
	const char *b = getenv("BK_BUILD_DIR");
	snprintf(path, sizeof(path), "%s/tests/cloudsim/aibo-cloudsim", b ? b : ".");
	return path;
}

static const char *openapi_doc(void)
{
	static char path[1024];
	snprintf(path, sizeof(path), "%s/libbackup/api/openapi.yaml", bk_test_source_dir());
	return path;
}

static int write_file(const char *path, const void *data, size_t len, unsigned mode)
{
	return bk_file_write_atomic(path, data, len, mode, 0);
}

static int make_unit(lab *l, int i, const char *model)
{
	char path[700];
	bk_cert *c = NULL;
	uint8_t noise[32], sign[32];
	bk_age_recipient r;
	int rc = bk_age_identity_generate(&l->unit_age[i]);
	if (rc)
		return rc;
	bk_age_identity_recipient(&r, l->unit_age[i]);
	randombytes_buf(noise, sizeof(noise));
	randombytes_buf(sign, sizeof(sign));
	int64_t now = (int64_t)time(NULL);
	bk_cert_params p = {.role = BK_CERT_ROLE_UNIT,
	                    .serial = serials[i],
	                    .model = model,
	                    .hw_revision = "1",
	                    .noise_key = noise,
	                    .age_key = r.public_key,
	                    .ed25519_key = sign,
	                    .not_before = now - 3600,
	                    .not_after = now + 86400};
	if ((rc = bk_cert_issue(&c, &p, l->factory)))
		return rc;
	size_t n;
	const uint8_t *b = bk_cert_bytes(c, &n);
	l->cert[i] = bk__malloc(n);
	memcpy(l->cert[i], b, n);
	l->cert_len[i] = n;
	snprintf(path, sizeof(path), "%s/%s.cert", l->dir, serials[i]);
	rc = bk_cert_write(path, c);
	bk_cert_free(c);
	return rc;
}

static int lab_build(lab *l, const char *dir)
{
	char path[700];
	bk_minisign_seckey *service = NULL;
	bk_minisign_pubkey pub;
	bk_age_identity *escrow = NULL;
	bk_secret *text = NULL;
	bk_stream *file = NULL, *enc = NULL;
	int rc;
	memset(l, 0, sizeof(*l));
	snprintf(l->dir, sizeof(l->dir), "%s", dir);
	snprintf(l->db, sizeof(l->db), "%s/template.db", l->dir);
	if ((rc = bk_mkdir_p(l->dir, 0700)))
		return rc;
	if ((rc = bk_minisign_keygen(&l->factory)))
		return rc;
	bk_minisign_seckey_pubkey(l->factory, &pub);
	snprintf(path, sizeof(path), "%s/factory-ca.key.pub", l->dir);
	if ((rc = bk_minisign_pubkey_write(path, &pub)))
		return rc;
	if ((rc = bk_minisign_keygen(&service)))
		return rc;
	bk_minisign_seckey_pubkey(service, &l->service_pub);
	snprintf(path, sizeof(path), "%s/service-ca.key", l->dir);
	rc = bk_minisign_seckey_write(path, service, NULL, 0, 0);
	bk_minisign_seckey_free(service);
	if (rc)
		return rc;
	if ((rc = bk_age_identity_generate(&escrow)) ||
	    (rc = bk_age_identity_file_format(&text, escrow, (int64_t)time(NULL))))
		goto done;
	snprintf(path, sizeof(path), "%s/cloud-escrow.identity", l->dir);
	if ((rc = write_file(path, bk_secret_data(text), strlen((char *)bk_secret_data(text)),
	                     0600)))
		goto done;
	for (int i = 0; i < 4; i++)
		if ((rc = make_unit(l, i, i == 3 ? "ERS-2000" : "ERS-1000")))
			goto done;
	/* A backup of OLD1, encrypted to the escrow key. */
	l->plain_len = 200000;
	l->plain = bk__malloc(l->plain_len);
	randombytes_buf(l->plain, l->plain_len);
	snprintf(l->backup_path, sizeof(l->backup_path), "%s/old1.aibk", l->dir);
	bk_age_recipient r;
	bk_age_identity_recipient(&r, escrow);
	bk_age_encrypt_opts eo = BK_AGE_ENCRYPT_OPTS_INIT;
	eo.recipients = &r;
	eo.recipient_count = 1;
	if ((rc = bk_stream_atomic_new(&file, l->backup_path, 0644, 0)))
		goto done;
	if ((rc = bk_age_encrypt_new(&enc, file, 1, &eo))) {
		bk_stream_free(file);
		goto done;
	}
	if ((rc = bk_stream_write(enc, l->plain, l->plain_len, BK_DEADLINE_NONE)) ||
	    (rc = bk_stream_close(enc, BK_DEADLINE_NONE))) {
		enc = NULL;
		goto done;
	}
	enc = NULL;
	snprintf(path, sizeof(path), "%s.statement", l->backup_path);
	if ((rc = write_file(path, "statement of old1", 17, 0644)))
		goto done;
	/* Seed the database through the simulator's own commands. */
	const char *bin = sim_bin();
	if (bk_test_system("'%s' register-unit --db '%s' --pki '%s' --owner owner-42 "
	                   "'%s/OLD1.cert' >/dev/null",
	                   bin, l->db, l->dir, l->dir) != 0 ||
	    bk_test_system("'%s' register-unit --db '%s' --pki '%s' '%s/NEW1.cert' >/dev/null", bin,
	                   l->db, l->dir, l->dir) != 0 ||
	    bk_test_system(
	        "'%s' register-unit --db '%s' --owner someone '%s/BOUND1.cert' >/dev/null", bin,
	        l->db, l->dir) != 0 ||
	    bk_test_system("'%s' register-unit --db '%s' '%s/OTHER1.cert' >/dev/null", bin, l->db,
	                   l->dir) != 0 ||
	    bk_test_system("'%s' add-ticket --db '%s' --old OLD1 T-100", bin, l->db) != 0 ||
	    bk_test_system("'%s' add-ticket --db '%s' --old OLD1 T-200", bin, l->db) != 0 ||
	    bk_test_system("'%s' add-backup --db '%s' --serial OLD1 --id b-old1 --firmware 3.1.0 "
	                   "--schema 2 '%s' >/dev/null",
	                   bin, l->db, l->backup_path) != 0) {
		rc = bk__error_set(BK_ERROR, NULL, "seeding the simulator failed");
		goto done;
	}
	snprintf(l->backup_id, sizeof(l->backup_id), "b-old1");
done:
	bk_stream_free(enc);
	bk_secret_free(text);
	bk_age_identity_free(escrow);
	return rc;
}

static void lab_release(lab *l)
{
	bk_minisign_seckey_free(l->factory);
	for (int i = 0; i < 4; i++) {
		bk_age_identity_free(l->unit_age[i]);
		bk__free(l->cert[i]);
	}
	bk__free(l->plain);
}

/* The lab is made once per run (keys, certificates and the backup take a
 * while); each test gets its own copy of the seeded database. */
static lab shared_lab;
static char shared_dir[64];

static void lab_cleanup(void)
{
	lab_release(&shared_lab);
	if (shared_dir[0])
		bk_test_system("rm -rf '%s'", shared_dir);
}

static int lab_setup(lab *l)
{
	if (shared_dir[0] == '\0') {
		snprintf(shared_dir, sizeof(shared_dir), "/tmp/bk-api-lab-XXXXXX");
		if (mkdtemp(shared_dir) == NULL)
			return bk__error_errno(errno, "mkdtemp");
		atexit(lab_cleanup);
		int rc = lab_build(&shared_lab, shared_dir);
		if (rc)
			return rc;
	}
	*l = shared_lab;
	snprintf(l->db, sizeof(l->db), "%s", bk_test_path("cloud.db"));
	return bk_test_system("cp '%s' '%s'", shared_lab.db, l->db) == 0
	           ? 0
	           : bk__error_set(BK_ERROR, NULL, "cannot copy the lab database");
}

static void lab_free(lab *l)
{
	BK_UNUSED(l);
}

/* --- The simulator process ------------------------------------------------------ */

typedef struct sim {
	pid_t pid;
	char url[256];
	char record[600];
} sim;

static int sim_start(sim *s, const lab *l, const char *fmt, ...) BK_PRINTF(3, 4);
static int sim_start(sim *s, const lab *l, const char *fmt, ...)
{
	char extra[1024], cmd[4096];
	int pfd[2];
	static int n;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(extra, sizeof(extra), fmt, ap);
	va_end(ap);
	memset(s, 0, sizeof(*s));
	snprintf(s->record, sizeof(s->record), "%s/record-%d.jsonl", shared_dir, ++n);
	snprintf(cmd, sizeof(cmd),
	         "exec '%s' serve --db '%s' --pki '%s' --listen 127.0.0.1:0 --token " TOKEN
	         " --read-token " READ_TOKEN " --record '%s' %s",
	         sim_bin(), l->db, l->dir, s->record, extra);
	if (pipe(pfd) != 0)
		return -1;
	s->pid = fork();
	if (s->pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		close(pfd[1]);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	/* The first line names the URL. */
	size_t len = 0;
	char line[300];
	while (len < sizeof(line) - 1) {
		struct pollfd p = {pfd[0], POLLIN, 0};
		if (poll(&p, 1, 10000) <= 0)
			break;
		if (read(pfd[0], line + len, 1) != 1)
			break;
		if (line[len] == '\n')
			break;
		len++;
	}
	line[len] = '\0';
	close(pfd[0]);
	if (strncmp(line, "listening on ", 13) != 0) {
		fprintf(stderr, "  simulator did not start: '%s'\n", line);
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
		s->pid = 0;
		return -1;
	}
	bk_strlcpy(s->url, line + 13, sizeof(s->url));
	return 0;
}

/* Stops the simulator; it must exit 0 on SIGTERM (and, in the sanitizer
 * build, without leaks). Its recorded responses are checked against the
 * OpenAPI document by the last test. */
static void sim_stop(sim *s)
{
	int st = 0;
	if (s->pid <= 0)
		return;
	kill(s->pid, SIGTERM);
	waitpid(s->pid, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	s->pid = 0;
}

static size_t collect(char *d, size_t sz, size_t nm, void *p)
{
	return bk_buf_put(p, d, sz * nm) == 0 ? sz * nm : 0;
}

/* GET /_sim/stats. */
static json_t *sim_stats(const sim *s)
{
	bk_buf b = BK_BUF_INIT;
	char url[300];
	snprintf(url, sizeof(url), "%s/_sim/stats", s->url);
	CURL *h = curl_easy_init();
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	CURLcode cc = curl_easy_perform(h);
	curl_easy_cleanup(h);
	json_t *j = cc == CURLE_OK ? json_loadb((const char *)b.data, b.len, 0, NULL) : NULL;
	bk_buf_free(&b);
	return j;
}

static long stat_int(json_t *st, const char *key)
{
	return (long)json_integer_value(json_object_get(st, key));
}

static long stat_reassign(json_t *st, const char *ticket)
{
	return (long)json_integer_value(
	    json_object_get(json_object_get(st, "reassignments"), ticket));
}

static int client(bk_api **out, const sim *s, const char *token, long budget_ms)
{
	bk_api_options o = BK_API_OPTIONS_INIT;
	o.url = s->url;
	o.token = token;
	o.retry_budget_ms = budget_ms;
	o.timeout_ms = 5000;
	o.connect_timeout_ms = 2000;
	return bk_api_new(out, &o);
}

/* --- Tests ---------------------------------------------------------------------------- */

static void test_url_policy(void)
{
	bk_api *api = NULL;
	bk_api_options o = BK_API_OPTIONS_INIT;
	o.token = "abc";
	static const char *const refused[] = {"http://10.0.0.1:8080", "http://api.example.com/",
	                                      "http://128.0.0.1/", "http://127.example.com/"};
	for (size_t i = 0; i < BK_ARRAY_LEN(refused); i++) {
		o.url = refused[i];
		CHECK_EQ(bk_api_new(&api, &o), BK_EUSER);
		CHECK_STR(bk_error_last()->reason, "insecure-url");
		CHECK(api == NULL);
	}
	static const char *const allowed[] = {"http://127.0.0.1:9", "http://127.3.4.5/",
	                                      "http://localhost:1/", "http://[::1]:9/api/",
	                                      "https://api.example.com/"};
	for (size_t i = 0; i < BK_ARRAY_LEN(allowed); i++) {
		o.url = allowed[i];
		CHECK_OK(bk_api_new(&api, &o));
		bk_api_free(api);
		api = NULL;
	}
	o.url = "ftp://127.0.0.1/";
	CHECK_EQ(bk_api_new(&api, &o), BK_EUSER);
	o.url = "https://user:pw@api.example.com/";
	CHECK_EQ(bk_api_new(&api, &o), BK_EUSER);
	o.url = "https://api.example.com/";
	o.token = "has space";
	CHECK_EQ(bk_api_new(&api, &o), BK_EUSER);
	o.token = "";
	CHECK_EQ(bk_api_new(&api, &o), BK_EUSER);
	CHECK_STR(bk_error_last()->reason, "no-token");
	/* Identifiers that could change the path are refused before any request. */
	o.token = "abc";
	o.url = "http://127.0.0.1:9";
	REQUIRE_OK(bk_api_new(&api, &o));
	bk_api_unit u;
	CHECK_EQ(bk_api_unit_get(api, "../x", &u), BK_EUSER);
	CHECK_EQ(bk_api_unit_get(api, "a/b", &u), BK_EUSER);
	CHECK_EQ(bk_api_unit_get(api, "", &u), BK_EUSER);
	bk_api_free(api);
}

static void test_token_file(void)
{
	char *tok = NULL;
	const char *p = bk_test_path("token");
	REQUIRE_OK(write_file(p, "  s3cr3t-token\n", 15, 0644));
	CHECK_EQ(bk_api_token_from_file(&tok, p), BK_EAUTH);
	CHECK(strstr(bk_error_last()->message, "chmod 600") != NULL);
	CHECK(tok == NULL);
	REQUIRE(chmod(p, 0600) == 0);
	REQUIRE_OK(bk_api_token_from_file(&tok, p));
	CHECK_STR(tok, "s3cr3t-token");
	bk_api_token_free(tok);
	REQUIRE_OK(write_file(p, "\n \n", 3, 0600));
	CHECK_EQ(bk_api_token_from_file(&tok, p), BK_EAUTH);
	CHECK_STR(bk_error_last()->reason, "token-empty");
	CHECK_EQ(bk_api_token_from_file(&tok, bk_test_path("missing")), BK_ENOTFOUND);
}

static void test_every_call(void)
{
	lab l;
	sim s = {0};
	bk_api *api = NULL;
	bk_api_unit u = {0};
	bk_api_ticket t = {0};
	bk_api_reassignment ra = {0}, rb = {0};
	bk_api_backup *list = NULL;
	size_t count = 0;
	uint8_t *bytes = NULL, *hdr = NULL, *file = NULL, *plain = NULL;
	size_t len = 0, hdr_len = 0, file_len = 0, plain_len = 0;
	bk_stream *mem = NULL;
	bk_cert *c = NULL;
	bk_age_identities *ids = NULL;
	REQUIRE_OK(lab_setup(&l));
	REQUIRE(sim_start(&s, &l, "%s", "") == 0);
	REQUIRE_OK(client(&api, &s, TOKEN, 3000));

	/* Unit and ticket. */
	REQUIRE_OK(bk_api_unit_get(api, "OLD1", &u));
	CHECK_STR(u.serial, "OLD1");
	CHECK_STR(u.model, "ERS-1000");
	CHECK_STR(u.status, "active");
	CHECK_STR(u.owner, "owner-42");
	CHECK_STR(u.device_id, "dev-OLD1");
	bk_api_unit_clear(&u);
	REQUIRE_OK(bk_api_unit_get(api, "NEW1", &u));
	CHECK_STR(u.status, "stock");
	CHECK(u.owner == NULL);
	bk_api_unit_clear(&u);
	REQUIRE_OK(bk_api_ticket_get(api, "T-100", &t));
	CHECK_STR(t.old_serial, "OLD1");
	CHECK_STR(t.status, "open");
	CHECK(t.new_serial == NULL);
	bk_api_ticket_clear(&t);

	/* Backups: list, statement, content, rewrap. */
	REQUIRE_OK(bk_api_backups_list(api, "OLD1", &list, &count));
	REQUIRE(count == 1);
	CHECK_STR(list[0].id, "b-old1");
	CHECK_EQ(list[0].schema, 2);
	CHECK_STR(list[0].firmware, "3.1.0");
	REQUIRE_OK(bk_file_read(l.backup_path, 1 << 22, &file, &file_len));
	CHECK_EQ(list[0].size, file_len);
	bk_api_backup_list_free(list, count);
	REQUIRE_OK(bk_api_backups_list(api, "NEW1", &list, &count));
	CHECK_EQ(count, 0);
	bk_api_backup_list_free(list, count);
	REQUIRE_OK(bk_api_backup_statement(api, "b-old1", &bytes, &len));
	CHECK(len == 17 && memcmp(bytes, "statement of old1", 17) == 0);
	bk_free(bytes);
	bytes = NULL;
	REQUIRE_OK(bk_stream_mem_writer(&mem, 0));
	uint64_t total = 0;
	REQUIRE_OK(bk_api_backup_download(api, "b-old1", 0, mem, &total));
	const uint8_t *got = bk_stream_mem_data(mem, &len);
	CHECK(total == file_len && len == file_len && memcmp(got, file, len) == 0);
	bk_stream_free(mem);
	mem = NULL;
	/* Resuming from an offset gives the rest. */
	REQUIRE_OK(bk_stream_mem_writer(&mem, 0));
	REQUIRE_OK(bk_api_backup_download(api, "b-old1", 5000, mem, &total));
	got = bk_stream_mem_data(mem, &len);
	CHECK(total == file_len && len == file_len - 5000 && memcmp(got, file + 5000, len) == 0);
	bk_stream_free(mem);
	mem = NULL;
	/* ...and from the very end, nothing. */
	REQUIRE_OK(bk_stream_mem_writer(&mem, 0));
	CHECK_OK(bk_api_backup_download(api, "b-old1", file_len, mem, &total));
	bk_stream_mem_data(mem, &len);
	CHECK_EQ(len, 0);
	bk_stream_free(mem);
	mem = NULL;

	REQUIRE_OK(bk_api_backup_rewrap(api, "b-old1", l.cert[1], l.cert_len[1], "job-1:rewrap",
	                                &hdr, &hdr_len));
	size_t old_hdr = 0;
	REQUIRE_OK(bk_age_header_parse(&old_hdr, file, file_len, NULL));
	uint8_t *joined = bk__malloc(hdr_len + file_len - old_hdr);
	memcpy(joined, hdr, hdr_len);
	memcpy(joined + hdr_len, file + old_hdr, file_len - old_hdr);
	REQUIRE_OK(bk_age_identities_new(&ids));
	REQUIRE_OK(bk_age_identities_add(ids, l.unit_age[1]));
	CHECK_OK(bk_age_decrypt_mem(&plain, &plain_len, joined, hdr_len + file_len - old_hdr, ids,
	                            NULL));
	CHECK(plain_len == l.plain_len && plain && memcmp(plain, l.plain, plain_len) == 0);
	bk__free(joined);
	/* The same key again: the stored answer, byte for byte. */
	uint8_t *hdr2 = NULL;
	size_t hdr2_len = 0;
	REQUIRE_OK(bk_api_backup_rewrap(api, "b-old1", l.cert[1], l.cert_len[1], "job-1:rewrap",
	                                &hdr2, &hdr2_len));
	CHECK(hdr2_len == hdr_len && memcmp(hdr2, hdr, hdr_len) == 0);
	bk_free(hdr2);

	/* Reassign: the bundle is an identity certificate by the service CA. */
	REQUIRE_OK(
	    bk_api_reassign(api, "T-100", "NEW1", l.cert[1], l.cert_len[1], "job-1:reassign", &ra));
	CHECK_STR(ra.old_serial, "OLD1");
	CHECK_STR(ra.new_serial, "NEW1");
	CHECK_STR(ra.device_id, "dev-OLD1");
	CHECK_STR(ra.owner, "owner-42");
	REQUIRE_OK(bk_cert_parse(&c, ra.bundle, ra.bundle_len));
	CHECK_OK(bk_cert_verify(c, &l.service_pub, 1, BK_CERT_ROLE_IDENTITY, (int64_t)time(NULL)));
	CHECK_STR(bk_cert_serial(c), "NEW1");
	CHECK_STR(bk_cert_device_id(c), "dev-OLD1");
	CHECK_STR(bk_cert_owner_binding(c), "owner-42");
	bk_cert_free(c);
	c = NULL;
	REQUIRE_OK(
	    bk_api_reassign(api, "T-100", "NEW1", l.cert[1], l.cert_len[1], "job-1:reassign", &rb));
	CHECK(rb.bundle_len == ra.bundle_len && memcmp(rb.bundle, ra.bundle, ra.bundle_len) == 0);
	REQUIRE_OK(bk_api_unit_get(api, "NEW1", &u));
	CHECK_STR(u.status, "active");
	CHECK_STR(u.owner, "owner-42");
	bk_api_unit_clear(&u);
	REQUIRE_OK(bk_api_unit_get(api, "OLD1", &u));
	CHECK_STR(u.status, "retired");
	bk_api_unit_clear(&u);

	/* Events and completion. */
	bk_api_event ev[2] = {
	    {0, 1700000000, "step-done", "backup stored", NULL},
	    {1, 1700000100, "step-done", "reassigned",
	     "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"},
	};
	int64_t n_events = 0;
	REQUIRE_OK(bk_api_ticket_events(api, "T-100", ev, 2, NULL, &n_events));
	CHECK_EQ(n_events, 2);
	REQUIRE_OK(bk_api_ticket_events(api, "T-100", ev, 1, "job-1:events-3", &n_events));
	CHECK_EQ(n_events, 3);
	REQUIRE_OK(bk_api_ticket_complete(api, "T-100", "NEW1", 1, "memory restored",
	                                  "job-1:complete", &t));
	CHECK_STR(t.status, "completed");
	CHECK_STR(t.new_serial, "NEW1");
	CHECK_STR(t.outcome, "success");
	bk_api_ticket_clear(&t);

	/* Enrolment: a terminal certificate by the service CA. */
	uint8_t k1[32], k2[32], k3[32];
	randombytes_buf(k1, 32);
	randombytes_buf(k2, 32);
	randombytes_buf(k3, 32);
	REQUIRE_OK(bk_api_terminal_enroll(api, "depot7-t1", k1, k2, k3, NULL, &bytes, &len));
	REQUIRE_OK(bk_cert_parse(&c, bytes, len));
	CHECK_OK(bk_cert_verify(c, &l.service_pub, 1, BK_CERT_ROLE_TERMINAL, (int64_t)time(NULL)));
	CHECK_STR(bk_cert_terminal_id(c), "depot7-t1");
	CHECK(memcmp(bk_cert_noise_key(c), k1, 32) == 0);
	bk_free(bytes);
	bytes = NULL;
	/* Other keys for an enrolled terminal: a conflict. */
	k1[0] ^= 1;
	CHECK_EQ(bk_api_terminal_enroll(api, "depot7-t1", k1, k2, k3, NULL, &bytes, &len), BK_EAPI);
	CHECK_STR(bk_error_last()->reason, "api-conflict");
	CHECK(strstr(bk_error_last()->message, "terminal-enrolled") != NULL);

	bk_cert_free(c);
	bk_api_reassignment_clear(&ra);
	bk_api_reassignment_clear(&rb);
	bk_age_identities_free(ids);
	bk__free(plain);
	bk_free(hdr);
	bk__free(file);
	bk_api_free(api);
	sim_stop(&s);
	lab_free(&l);
}

static void expect_err(int rc, int code, const char *reason, const char *needle)
{
	CHECK_EQ(rc, code);
	CHECK_STR(bk_error_last()->reason, reason);
	if (needle && strstr(bk_error_last()->message, needle) == NULL) {
		fprintf(stderr, "  message '%s' lacks '%s'\n", bk_error_last()->message, needle);
		bk_test_failures++;
	}
}

static void test_status_mapping(void)
{
	lab l;
	sim s = {0};
	bk_api *api = NULL, *bad = NULL, *ro = NULL;
	bk_api_unit u;
	bk_api_ticket t;
	bk_api_reassignment ra;
	uint8_t *hdr = NULL;
	size_t hdr_len = 0;
	REQUIRE_OK(lab_setup(&l));
	REQUIRE(sim_start(&s, &l, "%s", "") == 0);
	REQUIRE_OK(client(&api, &s, TOKEN, 2000));
	REQUIRE_OK(client(&bad, &s, "wrong-token", 2000));
	REQUIRE_OK(client(&ro, &s, READ_TOKEN, 2000));

	expect_err(bk_api_unit_get(api, "NOPE", &u), BK_ENOTFOUND, "api-not-found",
	           "unit-not-found");
	expect_err(bk_api_ticket_get(bad, "T-100", &t), BK_EAUTH, "api-unauthorized", "401");
	CHECK_OK(bk_api_ticket_get(ro, "T-100", &t));
	bk_api_ticket_clear(&t);
	expect_err(bk_api_reassign(ro, "T-100", "NEW1", l.cert[1], l.cert_len[1], NULL, &ra),
	           BK_EAUTH, "api-forbidden", "forbidden");
	/* 400: a certificate larger than the service takes. */
	uint8_t big[10000];
	memset(big, 'A', sizeof(big));
	expect_err(bk_api_backup_rewrap(api, "b-old1", big, sizeof(big), NULL, &hdr, &hdr_len),
	           BK_EAPI, "api-bad-request", "certificate");
	/* 409: the replacement is bound to an owner. */
	expect_err(bk_api_reassign(api, "T-100", "BOUND1", l.cert[2], l.cert_len[2], NULL, &ra),
	           BK_EAPI, "api-conflict", "unit-bound");
	/* 422: another model; a certificate that is not the unit's. */
	expect_err(bk_api_reassign(api, "T-100", "OTHER1", l.cert[3], l.cert_len[3], NULL, &ra),
	           BK_EAPI, "api-unprocessable", "model-mismatch");
	expect_err(bk_api_reassign(api, "T-100", "NEW1", l.cert[3], l.cert_len[3], NULL, &ra),
	           BK_EAPI, "api-unprocessable", "certificate-mismatch");
	/* 422: a key reused for another request. */
	bk_api_event ev = {0, 1700000000, "note", "one", NULL};
	int64_t total;
	REQUIRE_OK(bk_api_ticket_events(api, "T-100", &ev, 1, "job-9:events", &total));
	ev.message = "two";
	expect_err(bk_api_ticket_events(api, "T-100", &ev, 1, "job-9:events", &total), BK_EAPI,
	           "api-unprocessable", "idempotency-key-reused");
	/* 409: completing an open ticket. */
	expect_err(bk_api_ticket_complete(api, "T-200", "NEW1", 1, NULL, NULL, &t), BK_EAPI,
	           "api-conflict", "ticket-not-reassigned");
	/* None of these was retried: one request each. */
	json_t *st = sim_stats(&s);
	REQUIRE(st != NULL);
	CHECK_EQ(stat_int(st, "requests"), 11);
	json_decref(st);
	bk_api_free(api);
	bk_api_free(bad);
	bk_api_free(ro);
	sim_stop(&s);
	lab_free(&l);
}

static void test_drop_after_apply(void)
{
	lab l;
	sim s = {0};
	bk_api *api = NULL;
	bk_api_reassignment ra = {0};
	REQUIRE_OK(lab_setup(&l));
	REQUIRE(sim_start(&s, &l, "%s", "--fault drop-after-apply=reassign") == 0);
	REQUIRE_OK(client(&api, &s, TOKEN, 5000));
	/* No key given: the client's own key must be reused on the retry. */
	REQUIRE_OK(bk_api_reassign(api, "T-100", "NEW1", l.cert[1], l.cert_len[1], NULL, &ra));
	CHECK_STR(ra.new_serial, "NEW1");
	json_t *st = sim_stats(&s);
	REQUIRE(st != NULL);
	CHECK_EQ(stat_reassign(st, "T-100"), 1);
	CHECK_EQ(stat_int(st, "requests"), 2);
	CHECK_EQ(stat_int(st, "replays"), 1);
	CHECK_EQ(stat_int(st, "faults_fired"), 1);
	json_decref(st);
	/* A second reassignment of the same ticket (a new job) is refused. */
	bk_api_reassignment_clear(&ra);
	CHECK_EQ(
	    bk_api_reassign(api, "T-100", "NEW1", l.cert[1], l.cert_len[1], "job-2:reassign", &ra),
	    BK_EAPI);
	CHECK_STR(bk_error_last()->reason, "api-conflict");
	st = sim_stats(&s);
	CHECK_EQ(stat_reassign(st, "T-100"), 1);
	json_decref(st);
	bk_api_free(api);
	sim_stop(&s);
	lab_free(&l);
}

static void test_500_storm_budget(void)
{
	lab l;
	sim s = {0};
	bk_api *api = NULL;
	bk_api_unit u;
	REQUIRE_OK(lab_setup(&l));
	REQUIRE(sim_start(&s, &l, "%s", "--fault 500=100000") == 0);
	REQUIRE_OK(client(&api, &s, TOKEN, 1500));
	int64_t t0 = bk_now_ms();
	expect_err(bk_api_unit_get(api, "OLD1", &u), BK_EAPI, "api-unavailable", "500");
	int64_t took = bk_now_ms() - t0;
	CHECK(took <= 1500 + 300);
	CHECK(strstr(bk_error_last()->message, "get unit OLD1") != NULL);
	json_t *st = sim_stats(&s);
	CHECK(stat_int(st, "requests") >= 2);
	json_decref(st);
	bk_api_free(api);
	sim_stop(&s);
	/* 500s limited to one call, fewer than the attempts: the call succeeds. */
	REQUIRE(sim_start(&s, &l, "%s", "--fault 500=3:ticket") == 0);
	REQUIRE_OK(client(&api, &s, TOKEN, 10000));
	CHECK_OK(bk_api_unit_get(api, "OLD1", &u));
	bk_api_unit_clear(&u);
	bk_api_ticket t;
	CHECK_OK(bk_api_ticket_get(api, "T-100", &t));
	bk_api_ticket_clear(&t);
	st = sim_stats(&s);
	CHECK_EQ(stat_int(st, "requests"), 5);
	json_decref(st);
	bk_api_free(api);
	sim_stop(&s);
	lab_free(&l);
}

static void test_retry_after(void)
{
	lab l;
	sim s = {0};
	bk_api *api = NULL;
	bk_api_unit u;
	REQUIRE_OK(lab_setup(&l));
	REQUIRE(sim_start(&s, &l, "%s", "--fault 429=1:2") == 0);
	REQUIRE_OK(client(&api, &s, TOKEN, 5000));
	int64_t t0 = bk_now_ms();
	REQUIRE_OK(bk_api_unit_get(api, "OLD1", &u));
	int64_t took = bk_now_ms() - t0;
	CHECK(took >= 2000 && took < 3500);
	bk_api_unit_clear(&u);
	bk_api_free(api);
	sim_stop(&s);
	/* A Retry-After past the budget: no wait at all, a clear error. */
	REQUIRE(sim_start(&s, &l, "%s", "--fault 429=1:30") == 0);
	REQUIRE_OK(client(&api, &s, TOKEN, 2000));
	t0 = bk_now_ms();
	expect_err(bk_api_unit_get(api, "OLD1", &u), BK_EAPI, "api-unavailable", "429");
	CHECK(bk_now_ms() - t0 < 1000);
	bk_api_free(api);
	sim_stop(&s);
	lab_free(&l);
}

static void test_timeout_and_unreachable(void)
{
	lab l;
	sim s = {0};
	bk_api *api = NULL;
	bk_api_unit u;
	REQUIRE_OK(lab_setup(&l));
	/* The first request is slower than the timeout: retried. */
	REQUIRE(sim_start(&s, &l, "%s", "--fault latency=1200") == 0);
	bk_api_options o = BK_API_OPTIONS_INIT;
	o.url = s.url;
	o.token = TOKEN;
	o.timeout_ms = 500;
	o.retry_budget_ms = 5000;
	REQUIRE_OK(bk_api_new(&api, &o));
	CHECK_OK(bk_api_unit_get(api, "OLD1", &u));
	bk_api_unit_clear(&u);
	bk_api_free(api);
	api = NULL;
	sim_stop(&s);
	/* Nobody listening: unreachable, within the budget. */
	o.url = "http://127.0.0.1:1";
	o.retry_budget_ms = 1000;
	REQUIRE_OK(bk_api_new(&api, &o));
	int64_t t0 = bk_now_ms();
	expect_err(bk_api_unit_get(api, "OLD1", &u), BK_EDISCONNECTED, "api-unreachable",
	           "get unit");
	CHECK(bk_now_ms() - t0 < 1500);
	bk_api_free(api);
	lab_free(&l);
}

static void test_download_resume(void)
{
	lab l;
	sim s = {0};
	bk_api *api = NULL;
	bk_stream *mem = NULL;
	uint8_t *file = NULL;
	size_t file_len = 0, len = 0;
	REQUIRE_OK(lab_setup(&l));
	REQUIRE_OK(bk_file_read(l.backup_path, 1 << 22, &file, &file_len));
	REQUIRE(sim_start(&s, &l, "%s", "--fault cut-content=70000:2") == 0);
	REQUIRE_OK(client(&api, &s, TOKEN, 5000));
	REQUIRE_OK(bk_stream_mem_writer(&mem, 0));
	uint64_t total = 0;
	CHECK_OK(bk_api_backup_download(api, "b-old1", 0, mem, &total));
	const uint8_t *got = bk_stream_mem_data(mem, &len);
	CHECK(total == file_len && len == file_len && memcmp(got, file, len) == 0);
	json_t *st = sim_stats(&s);
	CHECK_EQ(stat_int(st, "faults_fired"), 2);
	CHECK_EQ(stat_int(st, "requests"), 3);
	json_decref(st);
	bk_stream_free(mem);
	/* A sink that fails stops the download with the sink's own error. */
	REQUIRE_OK(bk_stream_mem_writer(&mem, 1000));
	CHECK_EQ(bk_api_backup_download(api, "b-old1", 0, mem, &total), BK_ENOSPACE);
	bk_stream_free(mem);
	mem = NULL;
	REQUIRE_OK(bk_stream_mem_writer(&mem, 0));
	expect_err(bk_api_backup_download(api, "nope", 0, mem, &total), BK_ENOTFOUND,
	           "api-not-found", "backup-not-found");
	bk_stream_free(mem);
	bk__free(file);
	bk_api_free(api);
	sim_stop(&s);
	lab_free(&l);
}

static int make_tls(const char *dir, const char *name)
{
	return bk_test_system(
	    "cd '%s' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
	    "-keyout %s-ca.key -out %s-ca.pem -days 2 -subj /CN=%s-test-ca >/dev/null 2>&1 && "
	    "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s-server.key "
	    "-out %s-server.csr -subj /CN=127.0.0.1 >/dev/null 2>&1 && "
	    "printf 'subjectAltName=IP:127.0.0.1\\n' > %s-ext.cnf && "
	    "openssl x509 -req -in %s-server.csr -CA %s-ca.pem -CAkey %s-ca.key -CAcreateserial "
	    "-days 2 -extfile %s-ext.cnf -out %s-server.pem >/dev/null 2>&1",
	    dir, name, name, name, name, name, name, name, name, name, name, name);
}

static void test_https(void)
{
	lab l;
	sim s = {0};
	bk_api *api = NULL;
	bk_api_unit u;
	char ca[700], other[700];
	REQUIRE_OK(lab_setup(&l));
	REQUIRE(make_tls(l.dir, "good") == 0);
	REQUIRE(make_tls(l.dir, "other") == 0);
	REQUIRE(sim_start(&s, &l, "--tls-cert '%s/good-server.pem' --tls-key '%s/good-server.key'",
	                  l.dir, l.dir) == 0);
	CHECK(strncmp(s.url, "https://", 8) == 0);
	snprintf(ca, sizeof(ca), "%s/good-ca.pem", l.dir);
	snprintf(other, sizeof(other), "%s/other-ca.pem", l.dir);
	bk_api_options o = BK_API_OPTIONS_INIT;
	o.url = s.url;
	o.token = TOKEN;
	o.ca_file = ca;
	o.retry_budget_ms = 2000;
	REQUIRE_OK(bk_api_new(&api, &o));
	CHECK_OK(bk_api_unit_get(api, "OLD1", &u));
	CHECK_STR(u.serial, "OLD1");
	bk_api_unit_clear(&u);
	bk_api_free(api);
	/* Another CA: refused, not retried. */
	o.ca_file = other;
	REQUIRE_OK(bk_api_new(&api, &o));
	int64_t t0 = bk_now_ms();
	expect_err(bk_api_unit_get(api, "OLD1", &u), BK_EAUTH, "tls-verify-failed", "not trusted");
	CHECK(bk_now_ms() - t0 < 1000);
	bk_api_free(api);
	/* The same server over plain http to 127.0.0.1 does not pass for TLS. */
	json_t *st = sim_stats(&s);
	CHECK_EQ(stat_int(st, "requests"), 1);
	json_decref(st);
	sim_stop(&s);
	lab_free(&l);
}

/* Everything the library logs, at the highest verbosity. */
static bk_buf logged;
static void capture(int level, const char *domain, const char *msg, void *payload)
{
	BK_UNUSED(payload);
	bk_buf_printf(&logged, "%d %s %s\n", level, domain, msg);
}

static void test_token_never_leaks(void)
{
	lab l;
	sim s = {0};
	bk_api *api = NULL, *bad = NULL;
	bk_api_unit u;
	bk_api_reassignment ra;
	REQUIRE_OK(lab_setup(&l));
	REQUIRE(sim_start(&s, &l, "%s", "--fault 500=1 --fault drop-after-apply=reassign") == 0);
	bk_log_set_handler(capture, BK_LOG_TRACE, NULL);
	bk_api_options o = BK_API_OPTIONS_INIT;
	o.url = s.url;
	o.token = TOKEN;
	o.trace = 1;
	o.retry_budget_ms = 5000;
	REQUIRE_OK(bk_api_new(&api, &o));
	o.token = "wrong-" TOKEN;
	REQUIRE_OK(bk_api_new(&bad, &o));
	bk_buf errors = BK_BUF_INIT;
	CHECK_OK(bk_api_unit_get(api, "OLD1", &u));
	bk_api_unit_clear(&u);
	CHECK_OK(bk_api_reassign(api, "T-100", "NEW1", l.cert[1], l.cert_len[1], NULL, &ra));
	bk_api_reassignment_clear(&ra);
	CHECK(bk_api_unit_get(bad, "OLD1", &u) != 0);
	bk_buf_printf(&errors, "%s\n", bk_error_last()->message);
	CHECK(bk_api_unit_get(api, "NOPE", &u) != 0);
	bk_buf_printf(&errors, "%s\n", bk_error_last()->message);
	bk_log_set_handler(NULL, BK_LOG_WARNING, NULL);
	REQUIRE_OK(bk_buf_cstr(&logged));
	REQUIRE_OK(bk_buf_cstr(&errors));
	/* The trace did show the exchanges (so this test can fail)... */
	CHECK(strstr((char *)logged.data, "> GET /v1/units/OLD1") != NULL);
	CHECK(strstr((char *)logged.data, "Authorization: <redacted>") != NULL);
	CHECK(strstr((char *)logged.data, "< HTTP/1.1 500") != NULL);
	CHECK(strstr((char *)logged.data, "Idempotency-Key:") != NULL);
	/* ...and never the token. */
	CHECK(strstr((char *)logged.data, TOKEN) == NULL);
	CHECK(strstr((char *)errors.data, TOKEN) == NULL);
	/* The same check the way a technician would run it. */
	const char *path = bk_test_path("trace.log");
	REQUIRE_OK(write_file(path, logged.data, logged.len, 0600));
	CHECK(bk_test_system("grep -q -F -e '%s' '%s'", TOKEN, path) != 0);
	CHECK(bk_test_system("grep -q -F -e 'redacted' '%s'", path) == 0);
	bk_buf_free(&logged);
	bk_buf_free(&errors);
	bk_api_free(api);
	bk_api_free(bad);
	sim_stop(&s);
	lab_free(&l);
}

static void test_backoff(void)
{
	for (unsigned a = 1; a < 12; a++) {
		for (int i = 0; i < 50; i++) {
			long d = bk_api__backoff_ms(a);
			long cap = 250L << (a - 1);
			if (cap > 8000)
				cap = 8000;
			CHECK(d >= 0 && d <= cap);
		}
	}
	CHECK(bk_api__host_is_loopback("127.0.0.1"));
	CHECK(bk_api__host_is_loopback("[::1]"));
	CHECK(bk_api__host_is_loopback("LOCALHOST"));
	CHECK(!bk_api__host_is_loopback("localhost.example.com"));
	CHECK(!bk_api__host_is_loopback("[::2]"));
	CHECK(!bk_api__host_is_loopback("10.0.0.1"));
}

static void test_decoders(void)
{
	bk_api_unit u;
	bk_api_ticket t;
	const char *ok =
	    "{\"serial\":\"S1\",\"model\":\"ERS-1000\",\"hw_rev\":\"1\",\"device_id\":\"d\","
	    "\"status\":\"stock\",\"owner\":null}";
	REQUIRE_OK(bk_api__decode_unit((const uint8_t *)ok, strlen(ok), &u));
	CHECK(u.owner == NULL && u.firmware == NULL);
	bk_api_unit_clear(&u);
	static const char *const bad_units[] = {
	    "",
	    "[]",
	    "{}",
	    "{\"serial\":1}",
	    "{\"serial\":\"S1\",\"model\":\"M\",\"hw_rev\":\"1\",\"device_id\":\"d\",\"status\":"
	    "\"weird\",\"owner\":null}",
	    "{\"serial\":\"S1\",\"model\":\"M\",\"hw_rev\":\"1\",\"device_id\":\"d\",\"status\":"
	    "\"stock\"}",
	    "{\"serial\":\"../"
	    "x\",\"model\":\"M\",\"hw_rev\":\"1\",\"device_id\":\"d\",\"status\":\"stock\","
	    "\"owner\":null}",
	    "{\"serial\":\"S1\",\"serial\":\"S2\",\"model\":\"M\",\"hw_rev\":\"1\",\"device_id\":"
	    "\"d\",\"status\":\"stock\",\"owner\":null}",
	};
	for (size_t i = 0; i < BK_ARRAY_LEN(bad_units); i++) {
		CHECK_EQ(
		    bk_api__decode_unit((const uint8_t *)bad_units[i], strlen(bad_units[i]), &u),
		    BK_EAPI);
		CHECK_STR(bk_error_last()->reason, "api-bad-response");
		CHECK(u.serial == NULL);
	}
	const char *tk = "{\"ticket\":\"T\",\"old_serial\":\"S\",\"new_serial\":null,\"status\":"
	                 "\"reassigned\",\"model\":\"M\"}";
	CHECK_EQ(bk_api__decode_ticket((const uint8_t *)tk, strlen(tk), &t), BK_EAPI);
	uint8_t *b = NULL;
	size_t n = 0;
	const char *b64 = "{\"statement\":\"aGVsbG8=\"}";
	REQUIRE_OK(
	    bk_api__decode_b64_field((const uint8_t *)b64, strlen(b64), "statement", 100, &b, &n));
	CHECK(n == 5 && memcmp(b, "hello", 5) == 0);
	bk__free(b);
	const char *b64bad = "{\"statement\":\"aGVsbG8\"}";
	CHECK_EQ(bk_api__decode_b64_field((const uint8_t *)b64bad, strlen(b64bad), "statement", 100,
	                                  &b, &n),
	         BK_EAPI);
	CHECK_EQ(
	    bk_api__decode_b64_field((const uint8_t *)b64, strlen(b64), "statement", 4, &b, &n),
	    BK_EAPI);
	char code[32], msg[64];
	const char *e = "{\"error\":{\"code\":\"unit-bound\",\"message\":\"line\\none\\u0007\"}}";
	bk_api__decode_error((const uint8_t *)e, strlen(e), code, sizeof(code), msg, sizeof(msg));
	CHECK_STR(code, "unit-bound");
	CHECK_STR(msg, "line one ");
	const char *e2 = "{\"error\":{\"code\":\"Not A Code\",\"message\":5}}";
	bk_api__decode_error((const uint8_t *)e2, strlen(e2), code, sizeof(code), msg, sizeof(msg));
	CHECK_STR(code, "");
	CHECK_STR(msg, "");
	/* Allocation failures: a clean error, nothing leaked. */
	for (long k = 1; k < 20; k++) {
		bk__alloc_fail_at(k);
		int rc = bk_api__decode_unit((const uint8_t *)ok, strlen(ok), &u);
		bk__alloc_fail_at(0);
		CHECK(rc == 0 || rc == BK_ENOMEM);
		bk_api_unit_clear(&u);
	}
}

/* Every response the simulators sent in the tests above matches the schema
 * the OpenAPI document gives for its call and status. */
static void test_responses_match_openapi(void)
{
	lab l;
	sim s = {0};
	bk_api *api = NULL;
	bk_api_unit u;
	/* At least one exchange, also when this test runs alone. */
	REQUIRE_OK(lab_setup(&l));
	REQUIRE(sim_start(&s, &l, "%s", "") == 0);
	REQUIRE_OK(client(&api, &s, TOKEN, 1000));
	CHECK_OK(bk_api_unit_get(api, "NEW1", &u));
	bk_api_unit_clear(&u);
	bk_api_free(api);
	sim_stop(&s);
	CHECK(bk_test_system(
	          "/usr/bin/python3 '%s/tests/api/openapi_check.py' '%s' '%s'/record-*.jsonl",
	          bk_test_source_dir(), openapi_doc(), shared_dir) == 0);
}

BK_RUN_TESTS(BK_TEST(test_url_policy), BK_TEST(test_token_file), BK_TEST(test_backoff),
             BK_TEST(test_decoders), BK_TEST(test_every_call), BK_TEST(test_status_mapping),
             BK_TEST(test_drop_after_apply), BK_TEST(test_500_storm_budget),
             BK_TEST(test_retry_after), BK_TEST(test_timeout_and_unreachable),
             BK_TEST(test_download_resume), BK_TEST(test_https), BK_TEST(test_token_never_leaks),
             BK_TEST(test_responses_match_openapi))
