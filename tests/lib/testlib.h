/* A small test runner: each test binary lists its tests and calls
 * bk_test_main(). The last line printed is "N passed, N failed, N skipped". */
#ifndef BK_TESTLIB_H
#define BK_TESTLIB_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef struct bk_test {
	const char *name;
	void (*fn)(void);
} bk_test;

/* Per-test state, reset before each test. */
extern int bk_test_failures;
extern const char *bk_test_skip_reason;

int bk_test_main(int argc, char **argv, const bk_test *tests, size_t count);

/* A fresh temporary folder for the current test (removed after it passes). */
const char *bk_test_tmpdir(void);
/* Path inside the test's temporary folder (static buffer rotation: 8 slots). */
const char *bk_test_path(const char *name);
/* The folder holding the test data given by the build (BK_TEST_DATA_DIR). */
const char *bk_test_source_dir(void);
/* Runs a shell command, returns its exit status (or -1). */
int bk_test_system(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define BK_TEST(fn) {#fn, fn}
#define BK_RUN_TESTS(...)                                                               \
	int main(int argc, char **argv)                                                  \
	{                                                                                \
		static const bk_test tests_[] = {__VA_ARGS__};                           \
		return bk_test_main(argc, argv, tests_, sizeof(tests_) / sizeof(tests_[0])); \
	}

#define CHECK(cond)                                                                      \
	do {                                                                             \
		if (!(cond)) {                                                           \
			fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
			bk_test_failures++;                                              \
		}                                                                        \
	} while (0)

#define REQUIRE(cond)                                                                    \
	do {                                                                             \
		if (!(cond)) {                                                           \
			fprintf(stderr, "  %s:%d: REQUIRE(%s) failed\n", __FILE__, __LINE__, #cond); \
			bk_test_failures++;                                              \
			return;                                                          \
		}                                                                        \
	} while (0)

#define CHECK_EQ(a, b)                                                                   \
	do {                                                                             \
		long long a_ = (long long)(a), b_ = (long long)(b);                      \
		if (a_ != b_) {                                                          \
			fprintf(stderr, "  %s:%d: CHECK_EQ(%s, %s) failed: %lld != %lld\n", \
				__FILE__, __LINE__, #a, #b, a_, b_);                     \
			bk_test_failures++;                                              \
		}                                                                        \
	} while (0)

#define CHECK_STR(a, b)                                                                  \
	do {                                                                             \
		const char *a_ = (a), *b_ = (b);                                         \
		if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {                   \
			fprintf(stderr, "  %s:%d: CHECK_STR(%s, %s) failed: \"%s\" != \"%s\"\n", \
				__FILE__, __LINE__, #a, #b, a_ ? a_ : "(null)",           \
				b_ ? b_ : "(null)");                                     \
			bk_test_failures++;                                              \
		}                                                                        \
	} while (0)

/* Expects a libbackup call to succeed; prints the last error otherwise. */
#define CHECK_OK(expr)                                                                   \
	do {                                                                             \
		int rc_ = (expr);                                                        \
		if (rc_ != 0) {                                                          \
			fprintf(stderr, "  %s:%d: %s failed: %d (%s)\n", __FILE__, __LINE__, \
				#expr, rc_, bk_error_last()->message);                   \
			bk_test_failures++;                                              \
		}                                                                        \
	} while (0)

#define REQUIRE_OK(expr)                                                                 \
	do {                                                                             \
		int rc_ = (expr);                                                        \
		if (rc_ != 0) {                                                          \
			fprintf(stderr, "  %s:%d: %s failed: %d (%s)\n", __FILE__, __LINE__, \
				#expr, rc_, bk_error_last()->message);                   \
			bk_test_failures++;                                              \
			return;                                                          \
		}                                                                        \
	} while (0)

/* Marks the current test as skipped, with a reason printed in the output. */
#define SKIP(reason)                                                                     \
	do {                                                                             \
		bk_test_skip_reason = (reason);                                          \
		return;                                                                  \
	} while (0)

#endif
