/* The simulated USB unit: a vendor-class USB device presented to libusb
 * through umockdev's ioctl emulation, whose bulk endpoints are connected to a
 * socket the virtual robot's server code speaks the protocol over.
 *
 * The simulator owns a umockdev test bed (a temporary folder holding a fake
 * sysfs and /dev) and answers the usbdevfs ioctls of every process started
 * with the environment of bk_usbsim_env(). One host session at a time: a
 * session begins when a host claims the vendor interface and ends when it
 * releases it or its process goes away; the server side then reads the end
 * of the stream. Built only with umockdev (BK_HAVE_UMOCKDEV); otherwise every
 * call fails with BK_EINCOMPAT. */
#ifndef BK_DEVICE_VIRTUAL_USBSIM_H
#define BK_DEVICE_VIRTUAL_USBSIM_H

#include <stdbool.h>
#include <stdint.h>

#include <libbackup/stream.h>

typedef struct bk_usbsim bk_usbsim;

#define BK_USBSIM_OPTS_VERSION 1

typedef struct bk_usbsim_opts {
	unsigned version;
	uint16_t vid;       /* default 0x1209 */
	uint16_t pid;       /* default 0x0001 */
	const char *serial; /* the serial string descriptor (1..126 ASCII characters) */
	unsigned busnum;    /* 1..255, default 1 */
	unsigned devnum;    /* 1..127, default 2 */
	unsigned port;      /* port on the root hub, 1..15, default 2: the unit is "usb:BUS-PORT" */
} bk_usbsim_opts;

#define BK_USBSIM_OPTS_INIT                                                                        \
	{                                                                                          \
		BK_USBSIM_OPTS_VERSION, 0x1209, 0x0001, "VIRTUAL-0001", 1, 2, 2                    \
	}

/* Creates the test bed and the device. The test bed folder is removed by
 * bk_usbsim_free(). */
int bk_usbsim_new(bk_usbsim **out, const bk_usbsim_opts *opts);

/* What a host process needs in its environment to see the device:
 * UMOCKDEV_DIR=*out_dir and LD_PRELOAD=*out_preload (borrowed strings, valid
 * until bk_usbsim_free()). Either output may be NULL. */
int bk_usbsim_env(const bk_usbsim *sim, const char **out_dir, const char **out_preload);

/* Waits for the next host session and gives the server end of it: a
 * connected stream socket (close it when done; wrap it with
 * bk_stream_fd_new()). Bytes the host writes to the bulk OUT endpoint arrive
 * on it; bytes written to it go to the host's bulk IN transfers. BK_ETIMEOUT
 * when no host claimed the interface before `d`. */
int bk_usbsim_accept(bk_usbsim *sim, int *out_fd, bk_deadline d);

/* With `gone`, the unit drops off the bus as during a reboot: the current
 * session ends (the host's transfers fail as disconnected, the server end
 * reads end-of-stream), enumeration no longer lists it and handles opened
 * before stay dead. Without, it is enumerated and answers again. */
int bk_usbsim_set_gone(bk_usbsim *sim, bool gone);

/* Counters for tests: sessions started, bytes host->device, device->host. */
typedef struct bk_usbsim_stats {
	uint64_t sessions;
	uint64_t bytes_out;
	uint64_t bytes_in;
} bk_usbsim_stats;
void bk_usbsim_get_stats(bk_usbsim *sim, bk_usbsim_stats *out);

/* Ends every session, stops answering and removes the test bed folder. NULL
 * is a no-op. */
void bk_usbsim_free(bk_usbsim *sim);

#endif
