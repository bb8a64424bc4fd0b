/* aibo-cloudsim: a simulator of the private service API for tests and the
 * lab. Not part of the library. */
#ifndef AIBO_CLOUDSIM_H
#define AIBO_CLOUDSIM_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/age.h"
#include "crypto/cert.h"
#include "libbackup/util/util.h"

/* --- The database (db.c) ---------------------------------------------------- */

int sim_db_open(sqlite3 **out, const char *path);

/* --- The PKI (pki.c) ----------------------------------------------------------
 * Read from the --pki folder: factory-ca.pub (minisign public key that signs
 * unit certificates), service-ca.key (unencrypted minisign secret key that
 * signs identity bundles and terminal certificates), escrow.key (age
 * identity file of the cloud escrow key). A missing file disables what needs
 * it (the call answers 501). */
typedef struct sim_pki {
	bool have_factory;
	bk_minisign_pubkey factory;
	bk_minisign_seckey *service;
	bk_age_identities *escrow;
} sim_pki;

int sim_pki_load(sim_pki *pki, const char *dir);
void sim_pki_free(sim_pki *pki);

/* The outcome of a check in the HTTP sense: status, error code, message. */
typedef struct sim_fail {
	int status;
	const char *code;
	char message[256];
} sim_fail;

/* Parses a unit certificate and checks it against the factory CA when the PKI
 * has one (0, or -1 with `f` filled: 422 certificate-invalid). */
int sim_unit_cert_check(bk_cert **out, const sim_pki *pki, const uint8_t *data, size_t len,
                        sim_fail *f);
/* Issues the identity bundle for a reassignment; canonical bytes in *out. */
int sim_bundle_issue(uint8_t **out, size_t *out_len, const sim_pki *pki, const bk_cert *unit,
                     const char *device_id, const char *owner, const char *old_serial, sim_fail *f);
/* Re-wraps the age header of the file at `path` to the certificate's age key. */
int sim_rewrap(uint8_t **out, size_t *out_len, const sim_pki *pki, const char *path,
               const bk_cert *unit, sim_fail *f);
/* Issues a terminal certificate. */
int sim_terminal_issue(uint8_t **out, size_t *out_len, const sim_pki *pki, const char *terminal_id,
                       const uint8_t noise[32], const uint8_t age[32], const uint8_t sign[32],
                       sim_fail *f);

/* --- The server (server.c) --------------------------------------------------- */

enum {
	FAULT_500 = 1,
	FAULT_429,
	FAULT_LATENCY,
	FAULT_DROP_AFTER_APPLY,
	FAULT_CUT_CONTENT,
};

typedef struct sim_fault {
	int kind;
	long count;    /* fires this many more times */
	long arg;      /* seconds (429), milliseconds (latency), bytes (cut) */
	char call[16]; /* "" for any call */
} sim_fault;

typedef struct sim_config {
	const char *listen;
	const char *db_path;
	const char *pki_dir;
	const char *token;
	const char *read_token;
	const char *tls_cert;
	const char *tls_key;
	const char *record;
	sim_fault faults[32];
	size_t nfaults;
} sim_config;

int sim_fault_parse(sim_fault *out, const char *spec);
int sim_serve(const sim_config *cfg);

#endif
