/* The simulated USB unit on its own, in one process (no preload): options,
 * the test bed folder's life, the sysfs record, accept deadlines, the
 * unit dropping off the bus and coming back. */
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "device/virtual/usbsim.h"
#include "libbackup/util/util.h"
#include "testlib.h"

static bool exists(const char *dir, const char *rel)
{
	char p[4096];
	struct stat st;
	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	return stat(p, &st) == 0;
}

static int thread_count(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/task");
	if (d == NULL)
		return -1;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* The thread count once it stops falling (a finished thread may take a
 * moment to leave), or once it is at most `want`; at most 2 s. */
static int settled_threads(int want)
{
	int n = thread_count(), last = -1;
	for (int i = 0; i < 40 && n > want && n != last; i++) {
		usleep(50000);
		last = n;
		n = thread_count();
	}
	if (n > want && want > 0)
		bk_test_system("cat /proc/%d/task/*/comm | tr '\\n' ' ' >&2", (int)getpid());
	return n;
}

static void test_options(void)
{
	bk_usbsim *sim = (bk_usbsim *)1;
	bk_usbsim_opts o = BK_USBSIM_OPTS_INIT;
	o.serial = "";
	CHECK_EQ(bk_usbsim_new(&sim, &o), BK_EINVALID);
	CHECK(sim == NULL);
	o.serial = "has space";
	CHECK_EQ(bk_usbsim_new(&sim, &o), BK_EINVALID);
	o.serial = "OK-1";
	o.devnum = 0;
	CHECK_EQ(bk_usbsim_new(&sim, &o), BK_EINVALID);
	o.devnum = 2;
	o.port = 16;
	CHECK_EQ(bk_usbsim_new(&sim, &o), BK_EINVALID);
	bk_usbsim_free(NULL);
}

static void test_testbed_lifecycle(void)
{
	bk_usbsim *sim = NULL;
	bk_usbsim_opts o = BK_USBSIM_OPTS_INIT;
	/* GLib starts process-wide threads of its own on first use: count
	 * after one simulator came and went. */
	REQUIRE_OK(bk_usbsim_new(&sim, &o));
	bk_usbsim_free(sim);
	sim = NULL;
	int threads_before = settled_threads(0);
	o.serial = "LIFE-1";
	o.busnum = 3;
	o.devnum = 7;
	o.port = 4;
	REQUIRE_OK(bk_usbsim_new(&sim, &o));
	const char *dir = NULL, *preload = NULL;
	CHECK_OK(bk_usbsim_env(sim, &dir, &preload));
	REQUIRE(dir != NULL);
	CHECK_STR(preload, "libumockdev-preload.so.0");
	char saved[4096];
	snprintf(saved, sizeof(saved), "%s", dir);
	CHECK(exists(saved, "sys/devices/pci0000:00/0000:00:14.0/usb3/3-4/descriptors"));
	CHECK(exists(saved, "sys/bus/usb/devices/3-4"));
	CHECK(exists(saved, "dev/bus/usb/003/007"));

	/* Nobody claims the interface: accept keeps its deadline. */
	int fd = 5;
	int64_t t0 = bk_now_ms();
	CHECK_EQ(bk_usbsim_accept(sim, &fd, bk_deadline_in(150)), BK_ETIMEOUT);
	CHECK(bk_now_ms() - t0 >= 140);
	CHECK_EQ(fd, -1);

	/* Dropping off the bus removes the device from sysfs; coming back
	 * restores it. */
	CHECK_OK(bk_usbsim_set_gone(sim, true));
	CHECK(!exists(saved, "sys/devices/pci0000:00/0000:00:14.0/usb3/3-4/descriptors"));
	CHECK_OK(bk_usbsim_set_gone(sim, true));
	CHECK_OK(bk_usbsim_set_gone(sim, false));
	CHECK(exists(saved, "sys/devices/pci0000:00/0000:00:14.0/usb3/3-4/descriptors"));
	CHECK_OK(bk_usbsim_set_gone(sim, false));

	bk_usbsim_stats st;
	bk_usbsim_get_stats(sim, &st);
	CHECK_EQ(st.sessions, 0);
	CHECK(thread_count() > threads_before); /* the test bed's worker */
	bk_usbsim_free(sim);
	CHECK(access(saved, F_OK) != 0);
	/* The worker ends with the simulator: none piles up. */
	CHECK(settled_threads(threads_before) <= threads_before);
}

static void test_two_simulators(void)
{
	bk_usbsim *a = NULL, *b = NULL;
	bk_usbsim_opts o = BK_USBSIM_OPTS_INIT;
	REQUIRE_OK(bk_usbsim_new(&a, &o));
	o.serial = "SECOND";
	int rc = bk_usbsim_new(&b, &o);
	CHECK_EQ(rc, 0);
	const char *da = NULL, *db = NULL;
	bk_usbsim_env(a, &da, NULL);
	if (rc == 0) {
		bk_usbsim_env(b, &db, NULL);
		CHECK(da && db && strcmp(da, db) != 0);
	}
	bk_usbsim_free(b);
	bk_usbsim_free(a);
}

BK_RUN_TESTS(BK_TEST(test_options), BK_TEST(test_testbed_lifecycle), BK_TEST(test_two_simulators))
