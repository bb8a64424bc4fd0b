/* Internal: the USB transport (libusb). A unit is a USB device with a vendor
 * interface (class 0xFF) holding one bulk OUT and one bulk IN endpoint; the
 * protocol's byte stream travels over them. Not installed; no libusb type
 * appears here. */
#ifndef BK_DEVICE_USB_H
#define BK_DEVICE_USB_H

#include <stddef.h>
#include <stdint.h>

#include "device/device_internal.h"

#define BK_USB_DEFAULT_VID 0x1209
#define BK_USB_DEFAULT_PID 0x0001

/* Transfers are split into pieces of at most this many bytes. */
#define BK_USB_CHUNK_MAX (1u << 20)

/* One unit present on the bus. */
typedef struct bk_usb_unit {
	char serial[BK_URI_SERIAL_MAX + 1]; /* "" when it could not be read */
	char path[32];                      /* bus-port chain: "1-2", "3-1.4" */
	uint8_t bus;
	uint8_t address;
	uint16_t vid;
	uint16_t pid;
} bk_usb_unit;

/* Opens the unit named by `spec` ("SERIAL", "BUS-PORT", or either with a
 * "usb:" prefix) among the devices with `vid`:`pid` and claims its vendor
 * interface. The stream reads and writes the bulk endpoints:
 *   - reads return what the unit sent so far (never 0 bytes: USB has no end
 *     of stream); a write is sent in pieces of at most BK_USB_CHUNK_MAX
 *     bytes and ends with a zero-length packet when its length is a multiple
 *     of the endpoint's packet size;
 *   - every call keeps its deadline (BK_ETIMEOUT "timeout"); a unit that
 *     went away is BK_EDISCONNECTED ("usb-disconnected");
 *   - one thread may read while another writes.
 * Each stream has its own libusb context. Fails with BK_ENOTFOUND
 * ("usb-not-found") when no such unit is present, BK_EBUSY ("usb-busy") when
 * another program holds the interface, BK_EINCOMPAT ("usb-no-interface")
 * when the device has no vendor interface with bulk endpoints, BK_EUSER
 * ("bad-device-uri") for a malformed spec. */
int bk_usb_open(bk_stream **out, const char *spec, uint16_t vid, uint16_t pid, bk_deadline d);
/* The same for a parsed usb: URI (BK_URI_USB_SERIAL or BK_URI_USB_PORT). */
int bk_usb_open_uri(bk_stream **out, const bk_device_uri *uri, uint16_t vid, uint16_t pid,
                    bk_deadline d);

/* Lists the units with `vid`:`pid` present now, reading each serial string
 * (a unit busy elsewhere is still listed). *out is NULL when there are none;
 * free it with bk_usb_list_free(). */
int bk_usb_list(bk_usb_unit **out, size_t *n, uint16_t vid, uint16_t pid);
void bk_usb_list_free(bk_usb_unit *units);

/* Waits until the unit named by `spec` is present (for example after a
 * reboot that re-enumerates it), polling the bus about ten times a second.
 * BK_ETIMEOUT ("usb-wait-timeout") when it has not appeared by `d`. */
int bk_usb_wait(const char *spec, uint16_t vid, uint16_t pid, bk_deadline d);

#endif
