/* Configuration loader: precedence, relative paths, errors, redaction. */
#include <stdlib.h>

#include <libbackup/libbackup.h>

#include "libbackup/util/util.h"
#include "testlib.h"

static void write_file(const char *path, const char *text)
{
	char *dir = bk_path_dirname(path);
	bk_mkdir_p(dir, 0700);
	bk__free(dir);
	if (bk_file_write_atomic(path, text, strlen(text), 0600, 0) != 0)
		fprintf(stderr, "cannot write %s\n", path);
}

static void test_precedence(void)
{
	const char *sys = bk_test_path("etc/config");
	const char *user = bk_test_path("xdg/aibo-restore/config");
	write_file(sys, "# system\n[depot]\ndb = /var/lib/depot.db\nidentity = keys/depot.identity\n"
			"[api]\nurl = https://api.example\ntimeout = 5\n");
	write_file(user, "[depot]\ndb = user.db\n\n[api]\n  timeout=7  \n");
	char xdg[4096];
	snprintf(xdg, sizeof(xdg), "XDG_CONFIG_HOME=%s/xdg", bk_test_tmpdir());
	const char *env[] = {xdg, "AIBO_RESTORE_API_TIMEOUT=9", "AIBO_RESTORE_API_TOKEN=s3cret",
			     "UNRELATED=1", NULL};
	bk_config_opts o = BK_CONFIG_OPTS_INIT;
	o.system_file = sys;
	o.environ = env;
	bk_config *cfg = NULL;
	REQUIRE_OK(bk_config_load(&cfg, &o));
	/* The user file wins over the system file; relative paths are
	 * resolved against the folder of the file that set them. */
	char want[4200];
	snprintf(want, sizeof(want), "%s/xdg/aibo-restore/user.db", bk_test_tmpdir());
	CHECK_STR(bk_config_get(cfg, "depot.db"), want);
	snprintf(want, sizeof(want), "%s/etc/keys/depot.identity", bk_test_tmpdir());
	CHECK_STR(bk_config_get(cfg, "depot.identity"), want);
	CHECK_STR(bk_config_get(cfg, "api.url"), "https://api.example");
	/* The environment wins over both files. */
	CHECK_STR(bk_config_get(cfg, "api.timeout"), "9");
	CHECK_STR(bk_config_origin(cfg, "api.timeout"), "env AIBO_RESTORE_API_TIMEOUT");
	CHECK_STR(bk_config_get(cfg, "api.token"), "s3cret");
	CHECK(bk_config_is_secret("api.token"));
	CHECK(!bk_config_is_secret("api.url"));
	/* Flags win over everything. */
	REQUIRE_OK(bk_config_set(cfg, "api.timeout", "11", "--timeout"));
	uint64_t t;
	REQUIRE_OK(bk_config_get_u64(cfg, "api.timeout", &t));
	CHECK_EQ(t, 11);
	CHECK_STR(bk_config_origin(cfg, "api.timeout"), "--timeout");
	/* Defaults. */
	CHECK_STR(bk_config_get(cfg, "usb.vid_pid"), "1209:0001");
	CHECK_STR(bk_config_origin(cfg, "usb.vid_pid"), "default");
	snprintf(want, sizeof(want), "%s:2", user);
	CHECK_STR(bk_config_origin(cfg, "depot.db"), want);
	/* Iteration is sorted and complete. */
	size_t n = bk_config_count(cfg);
	const char *prev = "";
	int seen_token = 0;
	for (size_t i = 0; i < n; i++) {
		const char *k, *v, *org;
		REQUIRE_OK(bk_config_entry(cfg, i, &k, &v, &org));
		CHECK(strcmp(prev, k) < 0);
		prev = k;
		if (strcmp(k, "api.token") == 0)
			seen_token = 1;
	}
	CHECK(seen_token);
	bk_config_free(cfg);
}

static void test_explicit_file_replaces(void)
{
	const char *sys = bk_test_path("etc/config");
	const char *mine = bk_test_path("mine/config");
	write_file(sys, "[depot]\nterminal_id = from-system\n");
	write_file(mine, "[depot]\nstore = dir:backups\n[devices]\nbench1 = tcp:127.0.0.1:7450\n");
	const char *env[] = {NULL};
	bk_config_opts o = BK_CONFIG_OPTS_INIT;
	o.system_file = sys;
	o.user_file = sys;
	o.file = mine;
	o.environ = env;
	bk_config *cfg = NULL;
	REQUIRE_OK(bk_config_load(&cfg, &o));
	CHECK(bk_config_get(cfg, "depot.terminal_id") == NULL);
	char want[4200];
	snprintf(want, sizeof(want), "dir:%s/mine/backups", bk_test_tmpdir());
	CHECK_STR(bk_config_get(cfg, "depot.store"), want);
	CHECK_STR(bk_config_get(cfg, "devices.bench1"), "tcp:127.0.0.1:7450");
	bk_config_free(cfg);
	/* AIBO_RESTORE_CONFIG does the same. */
	char var[4200];
	snprintf(var, sizeof(var), "AIBO_RESTORE_CONFIG=%s", mine);
	const char *env2[] = {var, NULL};
	bk_config_opts o2 = BK_CONFIG_OPTS_INIT;
	o2.system_file = sys;
	o2.environ = env2;
	REQUIRE_OK(bk_config_load(&cfg, &o2));
	CHECK(bk_config_get(cfg, "depot.terminal_id") == NULL);
	CHECK_STR(bk_config_get(cfg, "devices.bench1"), "tcp:127.0.0.1:7450");
	bk_config_free(cfg);
	/* An explicit file that does not exist is an error. */
	o.file = bk_test_path("missing");
	CHECK_EQ(bk_config_load(&cfg, &o), BK_ENOTFOUND);
}

static void expect_error(const char *text, const char *reason, const char *line)
{
	const char *f = bk_test_path("bad/config");
	write_file(f, text);
	const char *env[] = {NULL};
	bk_config_opts o = BK_CONFIG_OPTS_INIT;
	o.file = f;
	o.environ = env;
	bk_config *cfg = NULL;
	CHECK_EQ(bk_config_load(&cfg, &o), BK_EUSER);
	CHECK(cfg == NULL);
	CHECK_STR(bk_error_last()->reason, reason);
	char want[4200];
	snprintf(want, sizeof(want), "%s:%s:", f, line);
	if (strstr(bk_error_last()->message, want) == NULL) {
		fprintf(stderr, "  message '%s' does not name %s\n", bk_error_last()->message, want);
		bk_test_failures++;
	}
}

static void test_errors(void)
{
	expect_error("[depot]\ndb = x\nfrobnicate = 1\n", "config-unknown-key", "3");
	expect_error("[depot\n", "config-malformed", "1");
	expect_error("\n\ndb = x\n", "config-malformed", "3");
	expect_error("[api]\njust a line\n", "config-malformed", "2");
	expect_error("[api]\ntimeout = soon\n", "config-invalid", "2");
	expect_error("[depot]\nstore = ftp://x\n", "config-invalid", "2");
	expect_error("[nosuch]\nkey = 1\n", "config-unknown-key", "2");
	expect_error("[api]\n= 1\n", "config-malformed", "2");
	/* Bad values from the environment name the variable. */
	const char *env[] = {"AIBO_RESTORE_API_RETRIES=many", NULL};
	bk_config_opts o = BK_CONFIG_OPTS_INIT;
	o.system_file = bk_test_path("none");
	o.user_file = bk_test_path("none");
	o.environ = env;
	bk_config *cfg = NULL;
	CHECK_EQ(bk_config_load(&cfg, &o), BK_EUSER);
	CHECK(strstr(bk_error_last()->message, "AIBO_RESTORE_API_RETRIES") != NULL);
	/* Unknown keys from the caller too. */
	REQUIRE_OK(bk_config_new(&cfg));
	CHECK_EQ(bk_config_set(cfg, "depot.nope", "1", "--x"), BK_EUSER);
	bk_config_free(cfg);
}

static void test_alloc_failures(void)
{
	const char *f = bk_test_path("cfg/config");
	write_file(f, "[depot]\ndb = a.db\nidentity = k\n[api]\nurl = http://127.0.0.1\n");
	const char *env[] = {"AIBO_RESTORE_API_TOKEN=t", NULL};
	int ok = 0;
	for (long n = 1; n < 200 && !ok; n++) {
		bk_config_opts o = BK_CONFIG_OPTS_INIT;
		o.file = f;
		o.environ = env;
		bk_config *cfg = NULL;
		bk__alloc_fail_at(n);
		int rc = bk_config_load(&cfg, &o);
		bk__alloc_fail_at(0);
		if (rc == 0) {
			ok = 1;
			CHECK_STR(bk_config_get(cfg, "api.token"), "t");
		} else {
			CHECK_EQ(rc, BK_ENOMEM);
			CHECK(cfg == NULL);
		}
		bk_config_free(cfg);
	}
	CHECK(ok);
}

BK_RUN_TESTS(BK_TEST(test_precedence), BK_TEST(test_explicit_file_replaces), BK_TEST(test_errors),
	     BK_TEST(test_alloc_failures))
