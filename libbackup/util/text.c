/* Hex, numbers, sizes and times. */
#include <errno.h>
#include <stdio.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "util.h"

void bk_hex_encode(char *out, const uint8_t *in, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int bk_hex_decode(uint8_t *out, size_t n, const char *hex)
{
	if (hex == NULL || strlen(hex) != 2 * n)
		return bk__error_set(BK_EFORMAT, "bad-hex", "expected %zu hex digits", 2 * n);
	for (size_t i = 0; i < n; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return bk__error_set(BK_EFORMAT, "bad-hex", "not a hex digit at %zu", 2 * i);
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

int bk_parse_u64(const char *s, uint64_t *out)
{
	if (s == NULL || *s == '\0')
		return bk__error_set(BK_EUSER, "bad-number", "empty number");
	uint64_t v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return bk__error_set(BK_EUSER, "bad-number", "not a number: '%s'", s);
		uint64_t d = (uint64_t)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return bk__error_set(BK_EUSER, "bad-number", "number out of range: '%s'", s);
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

int bk_parse_i64(const char *s, int64_t *out)
{
	if (s == NULL)
		return bk__error_set(BK_EUSER, "bad-number", "empty number");
	int neg = s[0] == '-';
	uint64_t v;
	int rc = bk_parse_u64(s + neg, &v);
	if (rc)
		return bk__error_set(BK_EUSER, "bad-number", "not a number: '%s'", s);
	if (v > (uint64_t)INT64_MAX + (uint64_t)neg)
		return bk__error_set(BK_EUSER, "bad-number", "number out of range: '%s'", s);
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 0;
}

int bk_parse_size(const char *s, uint64_t *out)
{
	if (s == NULL || *s == '\0')
		return bk__error_set(BK_EUSER, "bad-size", "empty size");
	size_t n = strlen(s);
	unsigned shift = 0;
	char last = s[n - 1];
	switch (last) {
	case 'k': case 'K': shift = 10; break;
	case 'm': case 'M': shift = 20; break;
	case 'g': case 'G': shift = 30; break;
	case 't': case 'T': shift = 40; break;
	default: break;
	}
	char digits[32];
	size_t dn = shift ? n - 1 : n;
	if (dn == 0 || dn >= sizeof(digits))
		return bk__error_set(BK_EUSER, "bad-size", "not a size: '%s'", s);
	memcpy(digits, s, dn);
	digits[dn] = '\0';
	uint64_t v;
	if (bk_parse_u64(digits, &v) != 0)
		return bk__error_set(BK_EUSER, "bad-size", "not a size: '%s'", s);
	if (shift && v > (UINT64_MAX >> shift))
		return bk__error_set(BK_EUSER, "bad-size", "size out of range: '%s'", s);
	*out = v << shift;
	return 0;
}

bool bk_strlcpy(char *dst, const char *src, size_t dst_size)
{
	if (dst_size == 0)
		return false;
	size_t n = strlen(src);
	bool ok = n < dst_size;
	if (!ok)
		n = dst_size - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
	return ok;
}

void bk_time_rfc3339(char out[21], int64_t unix_seconds)
{
	time_t t = (time_t)unix_seconds;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int bk_time_parse_rfc3339(const char *s, int64_t *out)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	/* Exactly DDDD-DD-DDTDD:DD:DDZ, from 1970 on, so that every accepted
	 * time is written back the same way by bk_time_rfc3339(). */
	static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
	bool ok = s != NULL && strlen(s) == 20;
	for (size_t i = 0; ok && i < 20; i++)
		ok = shape[i] == 'd' ? (s[i] >= '0' && s[i] <= '9') : s[i] == shape[i];
	if (!ok || memcmp(s, "1970", 4) < 0)
		return bk__error_set(BK_EFORMAT, "bad-time", "not an RFC 3339 UTC time: '%s'",
				     s ? s : "");
	const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (end == NULL || *end != '\0')
		return bk__error_set(BK_EFORMAT, "bad-time", "not an RFC 3339 UTC time: '%s'", s);
	*out = (int64_t)timegm(&tm);
	return 0;
}
