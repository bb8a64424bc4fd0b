/* The memory archive with 100,000 files (ctest label "long"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libbackup/libbackup.h>

#include "helpers.h"
#include "libbackup/archive/archive.h"
#include "testlib.h"

static void test_hundred_thousand_entries(void)
{
	const char *src = bk_test_path("src");
	char rel[128];
	for (int i = 0; i < 100000; i++) {
		snprintf(rel, sizeof(rel), "%s/f%03d/e%06d", bk_domain_name(i % BK_DOMAIN_COUNT),
		         i % 500, i);
		if (t_put(src, rel, rel, (size_t)(i % 3 ? strlen(rel) : 0)) != 0) {
			fprintf(stderr, "  cannot write %s\n", rel);
			bk_test_failures++;
			return;
		}
	}
	uint8_t *data = NULL;
	size_t len;
	bk_manifest *wm = NULL, *rm = NULL;
	bk_archive_stats st;
	REQUIRE_OK(t_write(src, NULL, &data, &len, &wm, &st));
	CHECK_EQ(bk_manifest_count(wm), 100000);
	CHECK_EQ(st.entries, 100001);
	CHECK_OK(t_read(data, len, bk_test_path("dest"), 0, &rm));
	bk_domain_digests a, b;
	CHECK_OK(bk_tree_digests(src, &a));
	CHECK_OK(bk_tree_digests(bk_test_path("dest"), &b));
	CHECK(bk_domain_digests_equal(&a, &b));
	CHECK(rm && bk_domain_digests_equal(&a, bk_manifest_domains(rm)));
	CHECK(bk_domain_digests_equal(&a, bk_manifest_domains(wm)));
	/* A limit below the count is refused before anything is written. */
	bk_stream *r = NULL;
	bk_archive_read_opts ro = BK_ARCHIVE_READ_OPTS_INIT;
	ro.limits.max_entries = 99999;
	REQUIRE_OK(bk_stream_mem_reader(&r, data, len));
	CHECK_EQ(bk_archive_read(r, &ro, NULL, NULL), BK_ENOSPACE);
	bk_stream_free(r);
	bk_manifest_free(wm);
	bk_manifest_free(rm);
	free(data);
}

BK_RUN_TESTS(BK_TEST(test_hundred_thousand_entries))
