/* The USB transport: a bk_stream over the bulk endpoints of a unit's vendor
 * interface, with libusb's synchronous API. Units are found by VID:PID and
 * either their serial string or their bus-port path. Every stream, listing
 * and wait uses its own libusb context: enumeration then reflects the bus as
 * it is now (hotplug events are not relied on), and streams in different
 * threads share nothing. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <libusb.h>

#include "device/usb.h"

enum {
	RX_CAP = 64 * 1024, /* the read buffer for small reads */
	SERIAL_TIMEOUT_MS = 1000,
	WAIT_POLL_MS = 100,
};

typedef struct usb_stream {
	bk_stream base;
	libusb_context *ctx;
	libusb_device_handle *h;
	int iface;
	int claimed;
	uint8_t ep_out;
	uint8_t ep_in;
	uint16_t mps_out;
	uint16_t mps_in;
	uint8_t *rx;
	size_t rx_pos;
	size_t rx_len;
	char name[BK_URI_STRING_MAX];
} usb_stream;

/* Maps a libusb error to a BK_E* code with a message naming `who`. */
static int usb_error(int r, const char *who, const char *what)
{
	switch (r) {
	case LIBUSB_ERROR_TIMEOUT:
		return bk__error_set(BK_ETIMEOUT, "timeout", "%s: %s timed out", who, what);
	case LIBUSB_ERROR_NO_DEVICE:
		return bk__error_set(BK_EDISCONNECTED, "usb-disconnected",
		                     "%s: %s failed: the unit went away", who, what);
	case LIBUSB_ERROR_BUSY:
		return bk__error_set(BK_EBUSY, "usb-busy",
		                     "%s: %s failed: the unit is in use by another program", who,
		                     what);
	case LIBUSB_ERROR_NOT_FOUND:
		return bk__error_set(BK_ENOTFOUND, "usb-not-found", "%s: %s failed: %s", who, what,
		                     libusb_strerror(r));
	case LIBUSB_ERROR_ACCESS:
		return bk__error_set(
		    BK_EIO, "permission-denied",
		    "%s: %s failed: permission denied (check the udev rules for the "
		    "unit's USB ID)",
		    who, what);
	case LIBUSB_ERROR_NO_MEM:
		return bk__error_oom();
	case LIBUSB_ERROR_PIPE:
		return bk__error_set(BK_EIO, "usb-stall", "%s: %s failed: endpoint stalled", who,
		                     what);
	case LIBUSB_ERROR_OVERFLOW:
		return bk__error_set(BK_EIO, "usb-overflow",
		                     "%s: %s failed: the unit sent more than asked for", who, what);
	case LIBUSB_ERROR_IO:
	case LIBUSB_ERROR_INTERRUPTED:
		return bk__error_set(BK_EIO, "usb-io", "%s: %s failed: %s", who, what,
		                     libusb_strerror(r));
	default:
		return bk__error_set(BK_ERROR, "usb-error", "%s: %s failed: %s", who, what,
		                     libusb_strerror(r));
	}
}

static int context_new(libusb_context **out)
{
	int r = libusb_init(out);
	if (r != 0) {
		*out = NULL;
		return bk__error_set(BK_EIO, "usb-unavailable", "usb: cannot initialise libusb: %s",
		                     libusb_strerror(r));
	}
	return 0;
}

/* A libusb timeout for the time left before `d`: 0 waits forever; a deadline
 * already passed still gets one millisecond, so data already there is taken. */
static unsigned timeout_ms(bk_deadline d)
{
	int left = bk_deadline_left(d);
	if (left < 0)
		return 0;
	return left == 0 ? 1 : (unsigned)left;
}

/* The bus-port path of a device ("1-2", "3-1.4") into `out`. */
static void device_path(libusb_device *dev, char *out, size_t size)
{
	uint8_t ports[BK_URI_PORTS_MAX];
	int n = libusb_get_port_numbers(dev, ports, (int)sizeof(ports));
	size_t used = (size_t)snprintf(out, size, "%u", libusb_get_bus_number(dev));
	for (int i = 0; i < n && used < size; i++)
		used +=
		    (size_t)snprintf(out + used, size - used, "%c%u", i == 0 ? '-' : '.', ports[i]);
}

static bool path_matches(libusb_device *dev, const bk_device_uri *uri)
{
	uint8_t ports[BK_URI_PORTS_MAX];
	if (libusb_get_bus_number(dev) != uri->bus)
		return false;
	int n = libusb_get_port_numbers(dev, ports, (int)sizeof(ports));
	return n == uri->port_count && memcmp(ports, uri->ports, (size_t)n) == 0;
}

/* Reads the serial string of an opened device ("" when it has none). */
static int read_serial(libusb_device_handle *h, const struct libusb_device_descriptor *dd,
                       char *out, size_t size)
{
	out[0] = '\0';
	if (dd->iSerialNumber == 0)
		return 0;
	int r = libusb_get_string_descriptor_ascii(h, dd->iSerialNumber, (unsigned char *)out,
	                                           (int)size);
	if (r < 0) {
		out[0] = '\0';
		return r;
	}
	out[r < (int)size ? r : (int)size - 1] = '\0';
	return 0;
}

/* Finds the unit named by `uri` in `ctx`; on success *out_h is the opened
 * device. BK_ENOTFOUND when it is not there. */
static int find_unit(libusb_context *ctx, const bk_device_uri *uri, uint16_t vid, uint16_t pid,
                     libusb_device_handle **out_h, const char *who)
{
	libusb_device **list = NULL;
	int rc = 0;
	*out_h = NULL;
	ssize_t count = libusb_get_device_list(ctx, &list);
	if (count < 0)
		return usb_error((int)count, who, "listing devices");
	size_t candidates = 0;
	for (ssize_t i = 0; i < count && *out_h == NULL; i++) {
		struct libusb_device_descriptor dd;
		if (libusb_get_device_descriptor(list[i], &dd) != 0 || dd.idVendor != vid ||
		    dd.idProduct != pid)
			continue;
		candidates++;
		if (uri->kind == BK_URI_USB_PORT && !path_matches(list[i], uri))
			continue;
		libusb_device_handle *h = NULL;
		int r = libusb_open(list[i], &h);
		if (r != 0) {
			if (uri->kind == BK_URI_USB_PORT) {
				rc = usb_error(r, who, "opening the device");
				goto done;
			}
			continue; /* someone else's device we cannot open */
		}
		if (uri->kind == BK_URI_USB_SERIAL) {
			char serial[BK_URI_SERIAL_MAX + 1];
			if (read_serial(h, &dd, serial, sizeof(serial)) != 0 ||
			    strcmp(serial, uri->serial) != 0) {
				libusb_close(h);
				continue;
			}
		}
		*out_h = h;
	}
	if (*out_h == NULL)
		rc = bk__error_set(BK_ENOTFOUND, "usb-not-found",
		                   "%s: no such unit among %zu device(s) with USB ID %04x:%04x",
		                   who, candidates, vid, pid);
done:
	libusb_free_device_list(list, 1);
	return rc;
}

/* Picks the vendor interface and its bulk endpoints. */
static int find_interface(usb_stream *u)
{
	struct libusb_config_descriptor *cfg = NULL;
	libusb_device *dev = libusb_get_device(u->h);
	int r = libusb_get_active_config_descriptor(dev, &cfg);
	if (r != 0)
		r = libusb_get_config_descriptor(dev, 0, &cfg);
	if (r != 0)
		return usb_error(r, u->name, "reading the configuration");
	int found = 0;
	for (int i = 0; i < cfg->bNumInterfaces && !found; i++) {
		if (cfg->interface[i].num_altsetting < 1)
			continue;
		const struct libusb_interface_descriptor *alt = &cfg->interface[i].altsetting[0];
		if (alt->bInterfaceClass != LIBUSB_CLASS_VENDOR_SPEC)
			continue;
		uint8_t in = 0, out = 0;
		uint16_t mps_in = 0, mps_out = 0;
		for (int e = 0; e < alt->bNumEndpoints; e++) {
			const struct libusb_endpoint_descriptor *ep = &alt->endpoint[e];
			if ((ep->bmAttributes & LIBUSB_TRANSFER_TYPE_MASK) !=
			    LIBUSB_TRANSFER_TYPE_BULK)
				continue;
			if ((ep->bEndpointAddress & LIBUSB_ENDPOINT_IN) && in == 0) {
				in = ep->bEndpointAddress;
				mps_in = ep->wMaxPacketSize & 0x7ff;
			} else if (!(ep->bEndpointAddress & LIBUSB_ENDPOINT_IN) && out == 0) {
				out = ep->bEndpointAddress;
				mps_out = ep->wMaxPacketSize & 0x7ff;
			}
		}
		if (in && out && mps_in && mps_out) {
			u->iface = alt->bInterfaceNumber;
			u->ep_in = in;
			u->ep_out = out;
			u->mps_in = mps_in;
			u->mps_out = mps_out;
			found = 1;
		}
	}
	libusb_free_config_descriptor(cfg);
	if (!found)
		return bk__error_set(BK_EINCOMPAT, "usb-no-interface",
		                     "%s: the device has no vendor interface with bulk endpoints",
		                     u->name);
	return 0;
}

/* --- The stream ------------------------------------------------------------ */

static int usb_read(bk_stream *s, void *buf, size_t len, size_t *out_n, bk_deadline d)
{
	usb_stream *u = (usb_stream *)s;
	if (u->rx_pos < u->rx_len) {
		size_t n = u->rx_len - u->rx_pos < len ? u->rx_len - u->rx_pos : len;
		memcpy(buf, u->rx + u->rx_pos, n);
		u->rx_pos += n;
		*out_n = n;
		return 0;
	}
	for (;;) {
		/* Large reads go straight to the caller's buffer; small ones through
		 * ours. Requests are whole packets, so the unit can never overflow
		 * them. */
		uint8_t *dst = u->rx;
		size_t want = RX_CAP;
		if (len >= RX_CAP) {
			dst = buf;
			want = len < BK_USB_CHUNK_MAX ? len : BK_USB_CHUNK_MAX;
			want -= want % u->mps_in;
		}
		int got = 0;
		int r = libusb_bulk_transfer(u->h, u->ep_in, dst, (int)want, &got, timeout_ms(d));
		if (got > 0) {
			/* Bytes that arrived count even when the transfer then timed out. */
			if (dst == u->rx) {
				size_t n = (size_t)got < len ? (size_t)got : len;
				memcpy(buf, u->rx, n);
				u->rx_pos = n;
				u->rx_len = (size_t)got;
				*out_n = n;
			} else {
				*out_n = (size_t)got;
			}
			return 0;
		}
		if (r != 0)
			return usb_error(r, u->name, "reading");
		/* A zero-length packet: nothing to hand over yet. */
	}
}

static int usb_write(bk_stream *s, const void *buf, size_t len, bk_deadline d)
{
	usb_stream *u = (usb_stream *)s;
	/* libusb takes a non-const buffer but only reads from it for OUT. */
	uint8_t *p = (uint8_t *)(uintptr_t)buf;
	size_t off = 0;
	while (off < len) {
		size_t n = len - off < BK_USB_CHUNK_MAX ? len - off : BK_USB_CHUNK_MAX;
		int got = 0;
		int r = libusb_bulk_transfer(u->h, u->ep_out, p + off, (int)n, &got, timeout_ms(d));
		if (got > 0)
			off += (size_t)got;
		if (r != 0) {
			char what[80];
			snprintf(what, sizeof(what), "writing (after %zu of %zu bytes)", off, len);
			return usb_error(r, u->name, what);
		}
		if (got <= 0)
			return bk__error_set(BK_EIO, "usb-io",
			                     "%s: writing: the unit took no bytes", u->name);
	}
	if (len % u->mps_out == 0) {
		/* Ends the transfer for a unit that reads whole transfers. */
		uint8_t zero = 0;
		int got = 0;
		int r = libusb_bulk_transfer(u->h, u->ep_out, &zero, 0, &got, timeout_ms(d));
		if (r != 0)
			return usb_error(r, u->name, "writing the zero-length packet");
	}
	return 0;
}

static void usb_release(bk_stream *s)
{
	usb_stream *u = (usb_stream *)s;
	if (u->h) {
		if (u->claimed)
			libusb_release_interface(u->h, u->iface);
		libusb_close(u->h);
	}
	if (u->ctx)
		libusb_exit(u->ctx);
	bk__free(u->rx);
	bk__free(u);
}

static const bk_stream_ops usb_ops = {
    .version = BK_STREAM_OPS_VERSION,
    .name = "usb",
    .read = usb_read,
    .write = usb_write,
    .release = usb_release,
};

/* --- Public functions ------------------------------------------------------ */

static int parse_spec(bk_device_uri *uri, const char *spec)
{
	char tmp[BK_URI_STRING_MAX + 8];
	if (spec == NULL)
		return bk__error_set(BK_EINVALID, NULL, "usb: no unit named");
	if (strncmp(spec, "usb:", 4) != 0) {
		int n = snprintf(tmp, sizeof(tmp), "usb:%s", spec);
		if (n < 0 || (size_t)n >= sizeof(tmp))
			return bk__error_set(BK_EUSER, "bad-device-uri", "usb:%.40s...: too long",
			                     spec);
		spec = tmp;
	}
	int rc = bk_device_uri_parse(uri, spec);
	if (rc == 0 && uri->kind != BK_URI_USB_SERIAL && uri->kind != BK_URI_USB_PORT)
		rc = bk__error_set(BK_EUSER, "bad-device-uri", "%s: not a usb: unit", spec);
	return rc;
}

int bk_usb_open_uri(bk_stream **out, const bk_device_uri *uri, uint16_t vid, uint16_t pid,
                    bk_deadline d)
{
	usb_stream *u = NULL;
	int rc = 0;
	if (out == NULL || uri == NULL)
		return bk__error_set(BK_EINVALID, NULL, "usb: no output or unit");
	*out = NULL;
	if (uri->kind != BK_URI_USB_SERIAL && uri->kind != BK_URI_USB_PORT)
		return bk__error_set(BK_EINVALID, NULL, "usb: not a usb: unit");
	u = bk__calloc(1, sizeof(*u));
	if (u == NULL)
		return BK_ENOMEM;
	u->base.ops = &usb_ops;
	u->iface = -1;
	if (bk_device_uri_format(uri, u->name, sizeof(u->name)) != 0)
		bk_strlcpy(u->name, "usb", sizeof(u->name));
	u->rx = bk__malloc(RX_CAP);
	if (u->rx == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	rc = context_new(&u->ctx);
	if (rc)
		goto done;
	rc = find_unit(u->ctx, uri, vid, pid, &u->h, u->name);
	if (rc)
		goto done;
	rc = find_interface(u);
	if (rc)
		goto done;
	int r = libusb_claim_interface(u->h, u->iface);
	if (r != 0) {
		rc = usb_error(r, u->name, "claiming the interface");
		goto done;
	}
	u->claimed = 1;
	/* A previous session may have left the endpoints halted. */
	libusb_clear_halt(u->h, u->ep_in);
	libusb_clear_halt(u->h, u->ep_out);
	if (bk_deadline_left(d) == 0 && d != BK_DEADLINE_NONE) {
		rc = bk__error_set(BK_ETIMEOUT, "timeout", "%s: opening timed out", u->name);
		goto done;
	}
done:
	if (rc) {
		usb_release(&u->base);
		return rc;
	}
	*out = &u->base;
	return 0;
}

int bk_usb_open(bk_stream **out, const char *spec, uint16_t vid, uint16_t pid, bk_deadline d)
{
	bk_device_uri uri;
	if (out)
		*out = NULL;
	int rc = parse_spec(&uri, spec);
	if (rc)
		return rc;
	return bk_usb_open_uri(out, &uri, vid, pid, d);
}

int bk_usb_list(bk_usb_unit **out, size_t *n, uint16_t vid, uint16_t pid)
{
	libusb_context *ctx = NULL;
	libusb_device **list = NULL;
	bk_usb_unit *units = NULL;
	size_t count = 0;
	int rc = 0;
	if (out == NULL || n == NULL)
		return bk__error_set(BK_EINVALID, NULL, "usb: no output");
	*out = NULL;
	*n = 0;
	rc = context_new(&ctx);
	if (rc)
		return rc;
	ssize_t total = libusb_get_device_list(ctx, &list);
	if (total < 0) {
		rc = usb_error((int)total, "usb", "listing devices");
		goto done;
	}
	for (ssize_t i = 0; i < total; i++) {
		struct libusb_device_descriptor dd;
		if (libusb_get_device_descriptor(list[i], &dd) != 0 || dd.idVendor != vid ||
		    dd.idProduct != pid)
			continue;
		bk_usb_unit *grown = bk__realloc(units, (count + 1) * sizeof(*units));
		if (grown == NULL) {
			rc = BK_ENOMEM;
			goto done;
		}
		units = grown;
		bk_usb_unit *unit = &units[count++];
		memset(unit, 0, sizeof(*unit));
		unit->bus = libusb_get_bus_number(list[i]);
		unit->address = libusb_get_device_address(list[i]);
		unit->vid = dd.idVendor;
		unit->pid = dd.idProduct;
		device_path(list[i], unit->path, sizeof(unit->path));
		libusb_device_handle *h = NULL;
		if (libusb_open(list[i], &h) == 0) {
			read_serial(h, &dd, unit->serial, sizeof(unit->serial));
			libusb_close(h);
		}
	}
done:
	if (list)
		libusb_free_device_list(list, 1);
	libusb_exit(ctx);
	if (rc) {
		bk__free(units);
		return rc;
	}
	*out = units;
	*n = count;
	return 0;
}

void bk_usb_list_free(bk_usb_unit *units)
{
	bk__free(units);
}

int bk_usb_wait(const char *spec, uint16_t vid, uint16_t pid, bk_deadline d)
{
	bk_device_uri uri;
	char name[BK_URI_STRING_MAX];
	int rc = parse_spec(&uri, spec);
	if (rc)
		return rc;
	if (bk_device_uri_format(&uri, name, sizeof(name)) != 0)
		bk_strlcpy(name, "usb", sizeof(name));
	for (;;) {
		libusb_context *ctx = NULL;
		libusb_device_handle *h = NULL;
		rc = context_new(&ctx);
		if (rc)
			return rc;
		rc = find_unit(ctx, &uri, vid, pid, &h, name);
		if (h)
			libusb_close(h);
		libusb_exit(ctx);
		if (rc == 0)
			return 0;
		if (rc != BK_ENOTFOUND && rc != BK_EDISCONNECTED && rc != BK_EIO)
			return rc;
		int left = bk_deadline_left(d);
		if (left == 0)
			return bk__error_set(BK_ETIMEOUT, "usb-wait-timeout",
			                     "%s: the unit did not appear before the deadline",
			                     name);
		int nap = (left < 0 || left > WAIT_POLL_MS) ? WAIT_POLL_MS : left;
		struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)nap * 1000000L};
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
		}
	}
}
