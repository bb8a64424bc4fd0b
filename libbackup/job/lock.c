/* Locks for jobs, tickets and units: an flock'ed file per name in the
 * "locks" folder beside the catalog database. The kernel drops the lock when
 * its process dies, so a stale lock is simply free; the file's text names
 * the holder for the BK_EBUSY message. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "libbackup/job/job_internal.h"
#include "libbackup/util/util.h"

struct bk_job_lock {
	int fd;
	char *path;
};

void bk_job__whoami(char *out, size_t cap)
{
	char host[128] = "";
	if (gethostname(host, sizeof(host) - 1) != 0)
		bk_strlcpy(host, "?", sizeof(host));
	host[sizeof(host) - 1] = '\0';
	snprintf(out, cap, "pid %ld on %s", (long)getpid(), host);
}

/* Names go into file names: other bytes than [A-Za-z0-9._-], or a long name,
 * become a digest. */
static char *lock_path(bk_catalog *cat, const char *kind, const char *name)
{
	const char *db = bk_job__db_path(cat);
	const char *slash = strrchr(db, '/');
	char safe[80];
	size_t n = strlen(name);
	bool ok = n > 0 && n < 64 && name[0] != '.';
	for (size_t i = 0; ok && i < n; i++) {
		char c = name[i];
		ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		     c == '.' || c == '_' || c == '-';
	}
	if (ok) {
		bk_strlcpy(safe, name, sizeof(safe));
	} else {
		uint8_t h[16];
		crypto_generichash(h, sizeof(h), (const uint8_t *)name, n, NULL, 0);
		safe[0] = 'h';
		bk_hex_encode(safe + 1, h, sizeof(h));
	}
	if (slash == NULL)
		return bk__asprintf("locks/%s-%s.lock", kind, safe);
	return bk__asprintf("%.*s/locks/%s-%s.lock", (int)(slash - db), db, kind, safe);
}

static void read_holder(int fd, char *out, size_t cap)
{
	ssize_t n = pread(fd, out, cap - 1, 0);
	if (n < 0)
		n = 0;
	out[n] = '\0';
	char *nl = strchr(out, '\n');
	if (nl)
		*nl = '\0';
	if (out[0] == '\0')
		bk_strlcpy(out, "another process", cap);
}

static int open_lock(const char *path, int *out_fd)
{
	char *dir = bk__strdup(path);
	int rc = dir ? 0 : bk__error_oom();
	if (rc)
		return rc;
	char *slash = strrchr(dir, '/');
	if (slash) {
		*slash = '\0';
		rc = bk_mkdir_p(dir, 0700);
	}
	bk__free(dir);
	if (rc)
		return rc;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return bk__error_errno(errno, "%s", path);
	*out_fd = fd;
	return 0;
}

int bk_job__lock(bk_catalog *cat, const char *kind, const char *name, const char *job,
                 bk_job_lock **out)
{
	bk_job_lock *l = NULL;
	char *path = lock_path(cat, kind, name);
	int fd = -1, rc = path ? 0 : bk__error_oom();
	*out = NULL;
	if (rc)
		return rc;
	if ((rc = open_lock(path, &fd)))
		goto done;
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		if (errno == EWOULDBLOCK) {
			char holder[256];
			read_holder(fd, holder, sizeof(holder));
			rc = bk__error_set(BK_EBUSY, "locked", "%s %s is in use by %s", kind, name,
			                   holder);
		} else {
			rc = bk__error_errno(errno, "%s: lock", path);
		}
		goto done;
	}
	char who[160], line[400], since[21];
	bk_job__whoami(who, sizeof(who));
	bk_time_rfc3339(since, (int64_t)time(NULL));
	int n = snprintf(line, sizeof(line), "%s, job %s, since %s\n", who, job ? job : "-", since);
	if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)n, 0) != n) {
		rc = bk__error_errno(errno, "%s: write", path);
		goto done;
	}
	l = bk__calloc(1, sizeof(*l));
	if (l == NULL) {
		rc = bk__error_oom();
		goto done;
	}
	l->fd = fd;
	l->path = path;
	fd = -1;
	path = NULL;
	*out = l;
done:
	if (fd >= 0)
		close(fd);
	bk__free(path);
	return rc;
}

void bk_job__unlock(bk_job_lock *l)
{
	if (l == NULL)
		return;
	/* The text stays until the next holder replaces it; it is only read
	 * while the lock is held. */
	close(l->fd);
	bk__free(l->path);
	bk__free(l);
}

int bk_job__lock_held(bk_catalog *cat, const char *kind, const char *name, char *holder,
                      size_t cap, pid_t *pid)
{
	char *path = lock_path(cat, kind, name);
	int fd = -1, held = 0;
	if (holder && cap)
		holder[0] = '\0';
	if (pid)
		*pid = 0;
	if (path == NULL)
		return 0;
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		if (flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
			char text[256];
			held = 1;
			read_holder(fd, text, sizeof(text));
			if (holder && cap) {
				char *comma = strchr(text, ',');
				if (comma)
					*comma = '\0';
				bk_strlcpy(holder, text, cap);
			}
			long p = 0;
			if (pid && sscanf(text, "pid %ld", &p) == 1)
				*pid = (pid_t)p;
		}
		close(fd);
	}
	bk__free(path);
	return held;
}
