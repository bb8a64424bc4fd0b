/* Fuzz target: the configuration loader (bk_config_load). The input is a
 * configuration file, optionally followed by a line "%%" and environment
 * lines (NAME=VALUE) that the loader reads as AIBO_RESTORE_* variables.
 * The file is written to a memory file (or a private temporary file), as
 * the loader takes a path. A load that fails must return a negative code
 * with the error set; a load that succeeds must list sorted, readable
 * entries whose numeric keys parse as numbers. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <libbackup/libbackup.h>

#define MAX_ENV 64

static char cfg_path[4096];
static int mem_fd = -1;

static void remove_temp(void)
{
	if (mem_fd < 0 && cfg_path[0])
		unlink(cfg_path);
}

/* The file lives in memory (memfd, opened again through /proc/self/fd) when
 * the system allows, else in a private temporary file. */
static int setup(void)
{
	bk_init();
	mem_fd = memfd_create("bk-fuzz-config", MFD_CLOEXEC);
	if (mem_fd >= 0) {
		snprintf(cfg_path, sizeof(cfg_path), "/proc/self/fd/%d", mem_fd);
		if (access(cfg_path, R_OK) == 0)
			return 0;
		close(mem_fd);
		mem_fd = -1;
	}
	const char *tmp = getenv("TMPDIR");
	if (tmp == NULL || tmp[0] == '\0')
		tmp = "/tmp";
	snprintf(cfg_path, sizeof(cfg_path), "%s/bk-fuzz-config-%ld", tmp, (long)getpid());
	atexit(remove_temp);
	return 0;
}

static int write_file(const uint8_t *data, size_t size)
{
	int fd = mem_fd;
	if (fd >= 0) {
		if (ftruncate(fd, 0) != 0)
			return -1;
	} else {
		fd = open(cfg_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0)
			return -1;
	}
	size_t off = 0;
	int rc = 0;
	while (off < size) {
		ssize_t n = pwrite(fd, data + off, size - off, (off_t)off);
		if (n <= 0) {
			rc = -1;
			break;
		}
		off += (size_t)n;
	}
	if (fd != mem_fd)
		close(fd);
	return rc;
}

/* The numeric keys every configuration must be able to read as numbers. */
static const char *const u64_keys[] = {
    "backup.compression_level", "backup.min_battery",   "limits.max_entries", "limits.max_bytes",
    "limits.max_path",          "api.connect_timeout",  "api.timeout",        "api.retries",
    "device.timeout",           "firmware.min_battery",
};

static void check_loaded(const bk_config *cfg)
{
	size_t n = bk_config_count(cfg);
	const char *prev = NULL;
	for (size_t i = 0; i < n; i++) {
		const char *k = NULL, *v = NULL, *o = NULL;
		if (bk_config_entry(cfg, i, &k, &v, &o) != 0 || k == NULL || v == NULL || o == NULL)
			abort();
		if (prev && strcmp(prev, k) >= 0)
			abort(); /* sorted, no duplicates */
		if (bk_config_get(cfg, k) != v)
			abort();
		prev = k;
	}
	const char *k = NULL, *v = NULL, *o = NULL;
	if (bk_config_entry(cfg, n, &k, &v, &o) != BK_ENOTFOUND)
		abort();
	for (size_t i = 0; i < sizeof(u64_keys) / sizeof(u64_keys[0]); i++) {
		uint64_t u;
		if (bk_config_get_u64(cfg, u64_keys[i], &u) != 0)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	char *env_text = NULL;
	const char *env[MAX_ENV + 1];
	size_t file_len = size, env_count = 0;
	if (!ready) {
		setup();
		ready = 1;
	}
	/* Split off the environment part after a "\n%%\n" line. */
	for (size_t i = 0; i + 4 <= size; i++) {
		if (memcmp(data + i, "\n%%\n", 4) == 0) {
			file_len = i + 1;
			size_t elen = size - (i + 4);
			env_text = malloc(elen + 1);
			if (env_text == NULL)
				return 0;
			memcpy(env_text, data + i + 4, elen);
			env_text[elen] = '\0';
			break;
		}
	}
	if (env_text) {
		char *line = env_text;
		while (line && env_count < MAX_ENV) {
			char *nl = memchr(line, '\n', strlen(line));
			if (nl)
				*nl = '\0';
			if (line[0])
				env[env_count++] = line;
			line = nl ? nl + 1 : NULL;
		}
	}
	env[env_count] = NULL;
	if (write_file(data, file_len) != 0) {
		free(env_text);
		return 0;
	}
	bk_config_opts o = BK_CONFIG_OPTS_INIT;
	bk_config *cfg = NULL;
	o.file = cfg_path;
	o.environ = env;
	int rc = bk_config_load(&cfg, &o);
	if (rc == 0) {
		if (cfg == NULL)
			abort();
		check_loaded(cfg);
	} else {
		const bk_error *e = bk_error_last();
		if (rc > 0 || cfg != NULL || e->code != rc || e->message == NULL ||
		    e->message[0] == '\0')
			abort();
	}
	bk_config_free(cfg);
	free(env_text);
	return 0;
}
