/* Allocation wrappers with a test hook that fails the Nth allocation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static _Thread_local long fail_at;
static _Thread_local long alloc_count;

void bk__alloc_fail_at(long n)
{
	fail_at = n;
	alloc_count = 0;
}

long bk__alloc_count(void)
{
	return alloc_count;
}

static bool should_fail(void)
{
	alloc_count++;
	return fail_at > 0 && alloc_count >= fail_at;
}

void *bk__malloc(size_t n)
{
	if (should_fail()) {
		bk__error_oom();
		return NULL;
	}
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		bk__error_oom();
	return p;
}

void *bk__calloc(size_t count, size_t size)
{
	size_t n;
	if (!bk_size_mul(&n, count, size)) {
		bk__error_oom();
		return NULL;
	}
	if (should_fail()) {
		bk__error_oom();
		return NULL;
	}
	void *p = calloc(n ? n : 1, 1);
	if (p == NULL)
		bk__error_oom();
	return p;
}

void *bk__realloc(void *p, size_t n)
{
	if (should_fail()) {
		bk__error_oom();
		return NULL;
	}
	void *q = realloc(p, n ? n : 1);
	if (q == NULL)
		bk__error_oom();
	return q;
}

void bk__free(void *p)
{
	free(p);
}

char *bk__strndup(const char *s, size_t n)
{
	if (s == NULL)
		return NULL;
	size_t len = strnlen(s, n);
	char *d = bk__malloc(len + 1);
	if (d == NULL)
		return NULL;
	memcpy(d, s, len);
	d[len] = '\0';
	return d;
}

char *bk__strdup(const char *s)
{
	return s ? bk__strndup(s, SIZE_MAX) : NULL;
}

char *bk__asprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		bk__error_set(BK_EINVALID, NULL, "bad format string");
		return NULL;
	}
	char *d = bk__malloc((size_t)n + 1);
	if (d == NULL)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(d, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return d;
}

void bk_free(void *p)
{
	free(p);
}
