/* Shared by the device tests: a lab (PKI, units, terminal credentials) in
 * the test's temporary folder, and a unit served in a thread. */
#ifndef BK_TESTS_DEVICE_HELPERS_H
#define BK_TESTS_DEVICE_HELPERS_H

#include <pthread.h>
#include <stdbool.h>

#include <libbackup/device.h>
#include <libbackup/libbackup.h>

#include "crypto/cert.h"
#include "device/virtual/server.h"
#include "device/virtual/unit.h"

typedef struct lab {
	char pki[512];
	char terminal_key[600];
	char terminal_cert[600];
	char factory_ca[600];
	const char *cas[1];
} lab;

/* Makes the lab PKI in <tmp>/pki (once per test). */
int lab_init(lab *l);
/* Device options using the lab's terminal. */
void lab_opts(const lab *l, bk_device_opts *o);
/* Creates a unit <tmp>/<name> with `serial` and a small memory. */
int lab_unit(const lab *l, const char *name, const char *serial, char *out_dir, size_t cap);
/* Issues a certificate with the CA key file `ca_key` (in the PKI folder):
 * `role`, subject `subject`, the public keys of `keys`, validity window. */
int lab_issue(bk_cert **out, const lab *l, const char *ca_key, bk_cert_role role,
              const char *subject, const bk_keyfile *keys, int64_t not_before, int64_t not_after);
/* Writes a terminal (key file + certificate issued by `ca_key` with the given
 * role and validity; with `cert_keys` non-NULL the certificate carries those
 * keys instead of the terminal's own) as <tmp>/<name>.key/.cert. */
int lab_terminal(const lab *l, const char *name, const char *ca_key, bk_cert_role role,
                 int64_t not_before, int64_t not_after, bool other_key, char *key_path,
                 char *cert_path, size_t cap);

/* A unit served over an in-process pair, in a thread. */
typedef struct inproc {
	pthread_t thread;
	bk_vunit *unit;
	bk_stream *unit_end;
	int rc;
	char reason[64];
	char message[512];
} inproc;

/* Starts serving one session; *client_end is the terminal's end. */
int inproc_start(inproc *ip, bk_vunit *u, bk_stream **client_end);
/* Waits for the session to end; returns its result (reason in ip->reason). */
int inproc_join(inproc *ip);

#endif
