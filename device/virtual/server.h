/* The virtual robot's server: accepts connections on a tcp: or unix:
 * listener and/or host sessions on the simulated USB bus, and serves each in
 * its own thread with bk_vunit_serve() (one active session, the others get
 * "busy"). */
#ifndef BK_VDEV_SERVER_H
#define BK_VDEV_SERVER_H

#include <stdbool.h>

#include "device/virtual/unit.h"

typedef struct bk_vserver bk_vserver;

/* A server for `u` (borrowed; it must outlive the server) listening on
 * `listen_uri` (tcp: or unix:, NULL: none) and, with `usb`, presented as a
 * USB unit (its serial string is the unit's serial) through the simulator.
 * At least one of the two is needed. */
int bk_vserver_new(bk_vserver **out, bk_vunit *u, const char *listen_uri, bool usb);
/* The canonical URI clients use: the bound tcp:/unix: address, else
 * "usb:SERIAL". Borrowed. */
const char *bk_vserver_uri(const bk_vserver *s);
/* With usb: the environment a client process needs (see usbsim.h). */
int bk_vserver_usb_env(const bk_vserver *s, const char **out_dir, const char **out_preload);

/* Serves until bk_vserver_request_stop() or until the unit dies (power
 * loss: BK_EDISCONNECTED "power-loss"). Open sessions are ended and joined
 * before it returns. */
int bk_vserver_run(bk_vserver *s);
/* Async-signal-safe: makes bk_vserver_run() return soon. */
void bk_vserver_request_stop(bk_vserver *s);

/* Runs bk_vserver_run() in a thread; bk_vserver_stop() stops and joins it
 * and returns what run returned. */
int bk_vserver_start(bk_vserver *s);
int bk_vserver_stop(bk_vserver *s);

/* Sessions served to their end so far (refused ones included). */
unsigned bk_vserver_sessions(bk_vserver *s);

/* Stops (if running) and frees. NULL is a no-op. */
void bk_vserver_free(bk_vserver *s);

#endif
