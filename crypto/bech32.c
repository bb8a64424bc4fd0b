/* Bech32 (BIP 173) without the 90-character limit, as age uses it. */
#include <string.h>

#include "crypto/bech32.h"
#include "libbackup/util/util.h"

static const char charset[] = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

static uint32_t polymod_step(uint32_t chk, uint8_t v)
{
	static const uint32_t gen[5] = {0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3};
	uint8_t top = (uint8_t)(chk >> 25);
	chk = ((chk & 0x1ffffff) << 5) ^ v;
	for (int i = 0; i < 5; i++)
		if ((top >> i) & 1)
			chk ^= gen[i];
	return chk;
}

static char lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static uint32_t hrp_polymod(const char *hrp, size_t hrp_len)
{
	uint32_t chk = 1;
	for (size_t i = 0; i < hrp_len; i++)
		chk = polymod_step(chk, (uint8_t)((uint8_t)lower(hrp[i]) >> 5));
	chk = polymod_step(chk, 0);
	for (size_t i = 0; i < hrp_len; i++)
		chk = polymod_step(chk, (uint8_t)((uint8_t)lower(hrp[i]) & 31));
	return chk;
}

size_t bk_bech32_encoded_len(size_t hrp_len, size_t len)
{
	return hrp_len + 1 + (len * 8 + 4) / 5 + 6;
}

int bk_bech32_encode(char *out, size_t out_size, const char *hrp, const uint8_t *data, size_t len)
{
	size_t hrp_len = strlen(hrp);
	int has_lower = 0, has_upper = 0;
	if (hrp_len == 0 || bk_bech32_encoded_len(hrp_len, len) + 1 > out_size)
		return bk__error_set(BK_EINVALID, NULL, "bech32: output buffer too small");
	for (size_t i = 0; i < hrp_len; i++) {
		char c = hrp[i];
		if (c < 33 || c > 126)
			return bk__error_set(BK_EINVALID, NULL, "bech32: invalid prefix character");
		has_lower |= (c >= 'a' && c <= 'z');
		has_upper |= (c >= 'A' && c <= 'Z');
	}
	if (has_lower && has_upper)
		return bk__error_set(BK_EINVALID, NULL, "bech32: mixed-case prefix");
	uint32_t chk = hrp_polymod(hrp, hrp_len);
	size_t o = 0;
	memcpy(out, hrp, hrp_len);
	o = hrp_len;
	out[o++] = '1';
	uint32_t acc = 0;
	unsigned bits = 0;
	for (size_t i = 0; i < len; i++) {
		acc = (acc << 8) | data[i];
		bits += 8;
		while (bits >= 5) {
			bits -= 5;
			uint8_t v = (uint8_t)((acc >> bits) & 31);
			chk = polymod_step(chk, v);
			out[o++] = charset[v];
		}
	}
	if (bits) {
		uint8_t v = (uint8_t)((acc << (5 - bits)) & 31);
		chk = polymod_step(chk, v);
		out[o++] = charset[v];
	}
	for (int i = 0; i < 6; i++)
		chk = polymod_step(chk, 0);
	chk ^= 1;
	for (int i = 0; i < 6; i++)
		out[o++] = charset[(chk >> (5 * (5 - i))) & 31];
	out[o] = '\0';
	if (has_upper)
		for (size_t i = hrp_len; i < o; i++)
			if (out[i] >= 'a' && out[i] <= 'z')
				out[i] = (char)(out[i] - 'a' + 'A');
	return 0;
}

static int bad(const char *why)
{
	return bk__error_set(BK_EFORMAT, "bech32-invalid", "bech32: %s", why);
}

int bk_bech32_decode(char *hrp, size_t hrp_size, uint8_t *data, size_t data_size, size_t *out_len,
                     const char *s, size_t s_len)
{
	int has_lower = 0, has_upper = 0;
	size_t sep = s_len;
	*out_len = 0;
	for (size_t i = 0; i < s_len; i++) {
		char c = s[i];
		if (c < 33 || c > 126)
			return bad("invalid character");
		has_lower |= (c >= 'a' && c <= 'z');
		has_upper |= (c >= 'A' && c <= 'Z');
		if (c == '1')
			sep = i;
	}
	if (has_lower && has_upper)
		return bad("mixed case");
	if (sep == s_len || sep < 1 || sep + 7 > s_len)
		return bad("separator at an invalid position");
	if (sep + 1 > hrp_size)
		return bad("prefix too long");
	uint32_t chk = hrp_polymod(s, sep);
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t n = 0;
	size_t groups = s_len - sep - 1;
	for (size_t i = 0; i < groups; i++) {
		const char *p = strchr(charset, lower(s[sep + 1 + i]));
		if (p == NULL || *p == '\0')
			return bad("invalid data character");
		uint8_t v = (uint8_t)(p - charset);
		chk = polymod_step(chk, v);
		if (i >= groups - 6)
			continue;
		acc = ((acc << 5) | v) & 0xfff;
		bits += 5;
		if (bits >= 8) {
			bits -= 8;
			if (n >= data_size)
				return bad("data too long");
			data[n++] = (uint8_t)(acc >> bits);
		}
	}
	if (chk != 1)
		return bad("invalid checksum");
	if (bits >= 5 || (acc & ((1u << bits) - 1)) != 0)
		return bad("invalid padding");
	memcpy(hrp, s, sep);
	hrp[sep] = '\0';
	*out_len = n;
	return 0;
}
