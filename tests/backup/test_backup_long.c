/* Backup files beyond 4 GiB: a sparse 4 GiB + 1 byte file packs, verifies and
 * extracts (label long: minutes, and 4 GiB of disk for the extraction). */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libbackup/libbackup.h>
#include <libbackup/backup.h>

#include "device/virtual/pki.h"
#include "libbackup/archive/archive.h"
#include "libbackup/util/util.h"
#include "testlib.h"

static void test_sparse_4g(void)
{
	static const char *const no_env[] = {NULL};
	char lab[4200], cfgfile[4200], src[4200], dir[4200], file[4200], out[4200];
	bk_config *cfg = NULL;
	bk_config_opts co = BK_CONFIG_OPTS_INIT;
	snprintf(lab, sizeof(lab), "%s", bk_test_path("lab"));
	REQUIRE_OK(bk_vdev_pki_init(lab));
	snprintf(cfgfile, sizeof(cfgfile), "%s/config", lab);
	co.file = cfgfile;
	co.environ = no_env;
	REQUIRE_OK(bk_config_load(&cfg, &co));
	snprintf(src, sizeof(src), "%s", bk_test_path("src"));
	snprintf(dir, sizeof(dir), "%s/photos", src);
	REQUIRE_OK(bk_mkdir_p(dir, 0755));
	snprintf(file, sizeof(file), "%s/sparse.bin", dir);
	int fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0644);
	REQUIRE(fd >= 0);
	const uint64_t size = ((uint64_t)4 << 30) + 1;
	REQUIRE(pwrite(fd, "head", 4, 0) == 4);
	REQUIRE(pwrite(fd, "x", 1, (off_t)(size - 1)) == 1);
	close(fd);
	snprintf(file, sizeof(file), "%s/big.aibk", bk_test_tmpdir());
	bk_backup_pack_opts po = BK_BACKUP_PACK_OPTS_INIT;
	po.serial = "ERS1-4G";
	po.model = "ERS-1000";
	po.firmware_version = "4.2.0";
	po.output = file;
	bk_backup_report r;
	REQUIRE_OK(bk_backup_pack(cfg, src, &po, &r));
	CHECK(r.file_bytes == size);
	bk_backup_report_clear(&r);
	bk_backup *b = NULL;
	REQUIRE_OK(bk_backup_open(&b, cfg, file));
	bk_backup_read_opts ro = BK_BACKUP_READ_OPTS_INIT;
	REQUIRE_OK(bk_backup_verify(b, &ro, &r));
	CHECK(r.file_bytes == size);
	bk_backup_report_clear(&r);
	snprintf(out, sizeof(out), "%s/out", bk_test_tmpdir());
	REQUIRE_OK(bk_backup_extract(b, out, &ro, NULL));
	bk_backup_free(b);
	bk_domain_digests a, c;
	REQUIRE_OK(bk_tree_digests(src, &a));
	REQUIRE_OK(bk_tree_digests(out, &c));
	CHECK(bk_domain_digests_equal(&a, &c));
	bk_config_free(cfg);
}

BK_RUN_TESTS(BK_TEST(test_sparse_4g))
