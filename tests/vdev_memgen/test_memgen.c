/* The virtual unit's memory generator: sizes, determinism, layout. */
#include <stdlib.h>

#include <libbackup/libbackup.h>

#include "device/virtual/memgen.h"
#include "libbackup/util/util.h"
#include "testlib.h"

/* Total bytes of regular files under a folder, via du-like walking. */
static long long tree_bytes(const char *root)
{
	char cmd[4200];
	snprintf(cmd, sizeof(cmd), "find '%s' -type f -printf '%%s\\n' | awk '{s+=$1} END {print s+0}'",
		 root);
	FILE *p = popen(cmd, "r");
	long long n = -1;
	if (p) {
		if (fscanf(p, "%lld", &n) != 1)
			n = -1;
		pclose(p);
	}
	return n;
}

static void test_sizes(void)
{
	static const uint64_t sizes[] = {0, 4096, 1u << 20, 16u << 20};
	for (size_t i = 0; i < BK_ARRAY_LEN(sizes); i++) {
		char name[32];
		snprintf(name, sizeof(name), "mem-%zu", i);
		const char *root = bk_test_path(name);
		REQUIRE_OK(bk_vdev_memgen(root, sizes[i], 1));
		long long got = tree_bytes(root);
		CHECK(got >= 0);
		CHECK(got <= (long long)sizes[i] + 8192);
		if (sizes[i] >= (1u << 20))
			CHECK(got >= (long long)(sizes[i] * 9 / 10));
		for (int d = 0; d < BK_VDEV_DOMAIN_COUNT; d++) {
			char dir[4200];
			snprintf(dir, sizeof(dir), "%s/%s", root, bk_vdev_domains[d]);
			CHECK_EQ(bk_test_system("test -d '%s'", dir), 0);
		}
	}
	/* 16 MiB: every domain has content, photos dominate. */
	const char *root = bk_test_path("mem-3");
	for (int d = 0; d < BK_VDEV_DOMAIN_COUNT; d++) {
		char dir[4200];
		snprintf(dir, sizeof(dir), "%s/%s", root, bk_vdev_domains[d]);
		CHECK(tree_bytes(dir) > 0);
	}
	char photos[4200];
	snprintf(photos, sizeof(photos), "%s/photos", root);
	CHECK(tree_bytes(photos) > (8 << 20));
}

static void test_deterministic(void)
{
	const char *a = bk_test_path("a"), *b = bk_test_path("b"), *c = bk_test_path("c");
	REQUIRE_OK(bk_vdev_memgen(a, 3u << 20, 7));
	REQUIRE_OK(bk_vdev_memgen(b, 3u << 20, 7));
	REQUIRE_OK(bk_vdev_memgen(c, 3u << 20, 8));
	CHECK_EQ(bk_test_system("diff -r '%s' '%s' >/dev/null", a, b), 0);
	CHECK(bk_test_system("diff -r '%s' '%s' >/dev/null", a, c) != 0);
	/* Photos are incompressible, logs compress well. */
	CHECK_EQ(bk_test_system("f=$(find '%s/photos' -type f | head -1); "
				"test $(zstd -3 -c \"$f\" | wc -c) -gt $(($(stat -c %%s \"$f\") * 99 / 100))",
				a),
		 0);
	CHECK_EQ(bk_test_system("f=$(find '%s/logs' -type f | head -1); "
				"test $(zstd -3 -c \"$f\" | wc -c) -lt $(($(stat -c %%s \"$f\") / 2))",
				a),
		 0);
}

static void test_refuses_existing_files(void)
{
	const char *a = bk_test_path("x");
	REQUIRE_OK(bk_vdev_memgen(a, 64 * 1024, 1));
	/* Generating over an existing memory does not overwrite files. */
	CHECK_EQ(bk_vdev_memgen(a, 64 * 1024, 1), BK_EEXIST);
}

BK_RUN_TESTS(BK_TEST(test_sizes), BK_TEST(test_deterministic), BK_TEST(test_refuses_existing_files))
