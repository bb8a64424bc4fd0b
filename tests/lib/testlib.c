/* The test runner. */
#include "testlib.h"

#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

#include <libbackup/libbackup.h>

int bk_test_failures;
const char *bk_test_skip_reason;
static char tmpdir[4096];

const char *bk_test_tmpdir(void)
{
	if (tmpdir[0] == '\0') {
		const char *base = getenv("TMPDIR");
		snprintf(tmpdir, sizeof(tmpdir), "%s/bk-test-XXXXXX", base ? base : "/tmp");
		if (mkdtemp(tmpdir) == NULL) {
			perror("mkdtemp");
			exit(1);
		}
	}
	return tmpdir;
}

const char *bk_test_path(const char *name)
{
	static char slots[8][4096];
	static int next;
	char *p = slots[next++ % 8];
	snprintf(p, 4096, "%s/%s", bk_test_tmpdir(), name);
	return p;
}

const char *bk_test_source_dir(void)
{
	const char *d = getenv("BK_TEST_SOURCE_DIR");
#ifdef BK_TEST_SOURCE_DIR_DEFAULT
	if (d == NULL)
		d = BK_TEST_SOURCE_DIR_DEFAULT;
#endif
	return d ? d : ".";
}

int bk_test_system(const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	int st = system(cmd);
	if (st == -1)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void cleanup_tmpdir(void)
{
	if (tmpdir[0]) {
		char cmd[4200];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", tmpdir);
		tmpdir[0] = '\0';
	}
}

int bk_test_main(int argc, char **argv, const bk_test *tests, size_t count)
{
	int passed = 0, failed = 0, skipped = 0;
	if (bk_init() != 0) {
		fprintf(stderr, "bk_init failed\n");
		return 1;
	}
	for (size_t i = 0; i < count; i++) {
		if (argc > 1) {
			int wanted = 0;
			for (int a = 1; a < argc; a++)
				if (strstr(tests[i].name, argv[a]))
					wanted = 1;
			if (!wanted)
				continue;
		}
		bk_test_failures = 0;
		bk_test_skip_reason = NULL;
		bk_error_clear();
		tests[i].fn();
		if (bk_test_failures) {
			printf("FAIL %s\n", tests[i].name);
			failed++;
			if (tmpdir[0])
				fprintf(stderr, "  (files kept in %s)\n", tmpdir);
			tmpdir[0] = '\0';
		} else if (bk_test_skip_reason) {
			printf("SKIP %s: %s\n", tests[i].name, bk_test_skip_reason);
			skipped++;
			cleanup_tmpdir();
		} else {
			printf("ok   %s\n", tests[i].name);
			passed++;
			cleanup_tmpdir();
		}
		fflush(stdout);
	}
	printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
	bk_shutdown();
	return failed ? 1 : 0;
}
