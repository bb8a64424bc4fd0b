/* Device URIs: usb:SERIAL, usb:BUS-PORT, tcp:HOST[:PORT], unix:PATH. */
#include <stdio.h>
#include <string.h>

#include "device/device_internal.h"

static int bad(const char *uri, const char *why)
{
	/* The URI is user input: quote at most a screenful of it. */
	return bk__error_set(BK_EUSER, "bad-device-uri", "device \"%.200s\": %s", uri, why);
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alnum(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* A decimal number of `len` characters (1-5 digits) at most `max`. */
static bool parse_number(const char *s, size_t len, unsigned max, unsigned *out)
{
	unsigned v = 0;
	if (len == 0 || len > 5)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (!is_digit(s[i]))
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > max)
		return false;
	*out = v;
	return true;
}

/* A value made only of digits, '-' and '.', starting with a digit and holding
 * a '-', is meant as a bus-port (and must then be a valid one). */
static bool looks_like_bus_port(const char *v)
{
	if (!is_digit(*v) || strchr(v, '-') == NULL)
		return false;
	return v[strspn(v, "0123456789-.")] == '\0';
}

/* Bus-port: BUS '-' PORT ('.' PORT)*, each 1-255, at most 7 ports. */
static int parse_bus_port(bk_device_uri *out, const char *uri, const char *v)
{
	size_t len = strspn(v, "0123456789");
	unsigned n;
	if (!parse_number(v, len, 255, &n) || n == 0)
		return bad(uri, "the bus number must be 1 to 255");
	if (v[len] != '-')
		return bad(uri, "expected usb:BUS-PORT[.PORT...]");
	out->bus = (uint8_t)n;
	const char *p = v + len + 1;
	for (;;) {
		len = strspn(p, "0123456789");
		if (len == 0)
			return bad(uri, "expected a port number");
		if (out->port_count == BK_URI_PORTS_MAX)
			return bad(uri, "more than 7 ports in the chain");
		if (!parse_number(p, len, 255, &n) || n == 0)
			return bad(uri, "a port number must be 1 to 255");
		out->ports[out->port_count++] = (uint8_t)n;
		p += len;
		if (*p == '\0')
			break;
		if (*p != '.')
			return bad(uri, "expected usb:BUS-PORT[.PORT...]");
		p++;
	}
	out->kind = BK_URI_USB_PORT;
	return 0;
}

static int parse_usb(bk_device_uri *out, const char *uri, const char *v)
{
	if (*v == '\0')
		return bad(uri, "a usb: device needs a serial or a bus-port");
	if (looks_like_bus_port(v))
		return parse_bus_port(out, uri, v);
	size_t len = strlen(v);
	if (len > BK_URI_SERIAL_MAX)
		return bad(uri, "the serial is longer than 126 characters");
	for (size_t i = 0; i < len; i++)
		if (!is_alnum(v[i]) && v[i] != '.' && v[i] != '_' && v[i] != '-')
			return bad(uri, "a serial may hold only letters, digits, '.', '_' and '-'");
	memcpy(out->serial, v, len + 1);
	out->kind = BK_URI_USB_SERIAL;
	return 0;
}

static bool valid_hostname(const char *h, size_t len)
{
	/* Letters, digits, '-' and '.'; labels of 1-63 characters that neither
	 * start nor end with '-'. Covers IPv4 literals too. */
	size_t label = 0;
	if (len == 0 || len > BK_URI_HOST_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = h[i];
		if (c == '.') {
			if (label == 0 || h[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!is_alnum(c) && c != '-')
			return false;
		if (c == '-' && label == 0)
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0 && h[len - 1] != '-';
}

static bool valid_ipv6(const char *h, size_t len)
{
	/* The shape only (hex digits, ':' and '.' for an embedded IPv4 tail);
	 * the resolver has the last word. */
	size_t colons = 0;
	if (len < 2 || len > 45)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = h[i];
		if (c == ':')
			colons++;
		else if (!is_digit(c) && !(c >= 'a' && c <= 'f') && !(c >= 'A' && c <= 'F') &&
			 c != '.')
			return false;
	}
	return colons >= 2;
}

static int parse_tcp(bk_device_uri *out, const char *uri, const char *v)
{
	const char *host = v, *port = NULL;
	size_t host_len;
	if (*v == '[') {
		const char *close = strchr(v, ']');
		if (close == NULL)
			return bad(uri, "missing ']' after the IPv6 address");
		host = v + 1;
		host_len = (size_t)(close - host);
		if (!valid_ipv6(host, host_len))
			return bad(uri, "not an IPv6 address between the brackets");
		if (close[1] == ':')
			port = close + 2;
		else if (close[1] != '\0')
			return bad(uri, "unexpected text after the IPv6 address");
	} else {
		const char *colon = strchr(v, ':');
		if (colon && strchr(colon + 1, ':'))
			return bad(uri,
				   "an IPv6 address must be written in brackets: tcp:[::1]:7450");
		host_len = colon ? (size_t)(colon - v) : strlen(v);
		if (host_len == 0)
			return bad(uri, "a tcp: device needs a host");
		if (!valid_hostname(host, host_len))
			return bad(uri, "not a valid host name or address");
		if (colon)
			port = colon + 1;
	}
	unsigned n = BK_DEVICE_TCP_PORT;
	if (port && !parse_number(port, strlen(port), 65535, &n))
		return bad(uri, "the port must be a number from 0 to 65535");
	memcpy(out->host, host, host_len);
	out->host[host_len] = '\0';
	out->port = (uint16_t)n;
	out->kind = BK_URI_TCP;
	return 0;
}

static int parse_unix(bk_device_uri *out, const char *uri, const char *v)
{
	size_t len = strlen(v);
	if (len == 0)
		return bad(uri, "a unix: device needs a socket path");
	if (len > BK_URI_PATH_MAX)
		return bad(uri, "the socket path is longer than 107 bytes");
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
			return bad(uri, "control character in the socket path");
	memcpy(out->path, v, len + 1);
	out->kind = BK_URI_UNIX;
	return 0;
}

int bk_device_uri_parse(bk_device_uri *out, const char *uri)
{
	if (out == NULL || uri == NULL)
		return bk__error_set(BK_EINVALID, NULL, "device uri: no uri given");
	memset(out, 0, sizeof(*out));
	int rc;
	if (strncmp(uri, "usb:", 4) == 0)
		rc = parse_usb(out, uri, uri + 4);
	else if (strncmp(uri, "tcp:", 4) == 0)
		rc = parse_tcp(out, uri, uri + 4);
	else if (strncmp(uri, "unix:", 5) == 0)
		rc = parse_unix(out, uri, uri + 5);
	else
		rc = bad(uri, "expected usb:SERIAL, usb:BUS-PORT, tcp:HOST[:PORT] or unix:PATH");
	if (rc)
		memset(out, 0, sizeof(*out));
	return rc;
}

int bk_device_uri_format(const bk_device_uri *uri, char *out, size_t out_size)
{
	char tmp[BK_URI_STRING_MAX];
	int n = -1;
	if (uri == NULL || out == NULL)
		return bk__error_set(BK_EINVALID, NULL, "device uri: nothing to format");
	switch (uri->kind) {
	case BK_URI_USB_SERIAL:
		n = snprintf(tmp, sizeof(tmp), "usb:%.126s", uri->serial);
		break;
	case BK_URI_USB_PORT: {
		if (uri->port_count == 0 || uri->port_count > BK_URI_PORTS_MAX)
			break;
		n = snprintf(tmp, sizeof(tmp), "usb:%u-%u", uri->bus, uri->ports[0]);
		for (unsigned i = 1; i < uri->port_count && n > 0; i++) {
			int m = snprintf(tmp + n, sizeof(tmp) - (size_t)n, ".%u", uri->ports[i]);
			n = m < 0 ? -1 : n + m;
		}
		break;
	}
	case BK_URI_TCP:
		if (memchr(uri->host, ':', strnlen(uri->host, sizeof(uri->host))))
			n = snprintf(tmp, sizeof(tmp), "tcp:[%.253s]:%u", uri->host, uri->port);
		else
			n = snprintf(tmp, sizeof(tmp), "tcp:%.253s:%u", uri->host, uri->port);
		break;
	case BK_URI_UNIX:
		n = snprintf(tmp, sizeof(tmp), "unix:%.107s", uri->path);
		break;
	default:
		break;
	}
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return bk__error_set(BK_EINVALID, NULL, "device uri: not a valid uri structure");
	if ((size_t)n >= out_size)
		return bk__error_set(BK_ENOSPACE, "too-large",
				     "device uri: %d bytes do not fit in %zu", n + 1, out_size);
	memcpy(out, tmp, (size_t)n + 1);
	return 0;
}
