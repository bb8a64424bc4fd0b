/* Secret memory on sodium_malloc. */
#include <string.h>

#include <sodium.h>

#include "util.h"

struct bk_secret {
	uint8_t *data;
	size_t len;
};

int bk_secret_new(bk_secret **out, size_t len)
{
	if (out == NULL)
		return bk__error_set(BK_EINVALID, NULL, "secret: no output");
	*out = NULL;
	bk_secret *s = bk__calloc(1, sizeof(*s));
	if (s == NULL)
		return BK_ENOMEM;
	/* Go through the allocation hook too, so tests can fail this one. */
	void *probe = bk__malloc(1);
	if (probe == NULL) {
		bk__free(s);
		return BK_ENOMEM;
	}
	bk__free(probe);
	s->data = sodium_malloc(len ? len : 1);
	if (s->data == NULL) {
		bk__free(s);
		return bk__error_oom();
	}
	sodium_memzero(s->data, len ? len : 1);
	s->len = len;
	*out = s;
	return 0;
}

int bk_secret_from(bk_secret **out, const void *data, size_t len)
{
	int rc = bk_secret_new(out, len);
	if (rc == 0 && len)
		memcpy((*out)->data, data, len);
	return rc;
}

uint8_t *bk_secret_data(bk_secret *s)
{
	return s ? s->data : NULL;
}

size_t bk_secret_len(const bk_secret *s)
{
	return s ? s->len : 0;
}

int bk_secret_lock(bk_secret *s)
{
	if (s == NULL)
		return BK_EINVALID;
	return sodium_mprotect_readonly(s->data) == 0
		       ? 0
		       : bk__error_set(BK_ERROR, NULL, "cannot protect secret memory");
}

int bk_secret_unlock(bk_secret *s)
{
	if (s == NULL)
		return BK_EINVALID;
	return sodium_mprotect_readwrite(s->data) == 0
		       ? 0
		       : bk__error_set(BK_ERROR, NULL, "cannot unprotect secret memory");
}

void bk_secret_free(bk_secret *s)
{
	if (s == NULL)
		return;
	sodium_mprotect_readwrite(s->data);
	sodium_free(s->data); /* wipes */
	bk__free(s);
}

void bk_wipe(void *p, size_t n)
{
	if (p && n)
		sodium_memzero(p, n);
}

int bk_ct_compare(const void *a, const void *b, size_t n)
{
	return sodium_memcmp(a, b, n) == 0 ? 0 : 1;
}
