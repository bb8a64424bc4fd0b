/* The virtual robot's cloud identity: the unit side of IDENTITY_INSTALL
 * (aibo-restore-protocol(7)).
 *
 * IDENTITY_INSTALL {"bundle": "<base64>"} carries the identity bundle a
 * reassignment returned (aibo-cert/1, role "identity"), armored or
 * canonical. The unit decodes the base64 strictly (only the standard
 * alphabet, padding only at the end: BK_EFORMAT "bad-base64"), parses the
 * bundle (BK_EFORMAT "malformed-certificate"), checks its signature and
 * validity against <unit>/trust/service-ca.pub (BK_EAUTH: "wrong-role",
 * "unknown-ca", "bad-signature", "not-yet-valid", "expired"), then that it
 * names the unit's serial, model and hardware revision and binds only the
 * unit's own keys (BK_EVERIFY "bundle-mismatch"). It keeps the canonical
 * bundle in unit.db (table `identity`), so it survives a power cycle.
 * Installing the installed bundle again succeeds and changes nothing; a
 * bundle issued at the same time or later replaces it; one issued before it
 * is refused (BK_EINCOMPAT "bundle-older"), so an old reassignment cannot be
 * replayed over a newer one.
 * Answer: {"device_id", "serial", "fingerprint"} (fingerprint: hex
 * BLAKE2b-256 of the bundle's canonical bytes).
 *
 * Power-loss step (aibo-vdev serve --fault power-loss=STEP[:PERCENT]):
 * "identity-install", at 0 (checked, before it is stored) and 100 (stored,
 * before the answer). */
#ifndef BK_VDEV_IDENTITY_OPS_H
#define BK_VDEV_IDENTITY_OPS_H

#include <jansson.h>

#include "device/virtual/unit.h"

/* Prepares the unit's identity table and installs the IDENTITY_INSTALL
 * handler on `u`. */
int bk_videntity_install(bk_vunit *u);

/* What INFO reports under "identity": {"installed": false}, or
 * {"installed": true, "device_id", "serial", "fingerprint"}
 * once a bundle is installed. Works whether or not the handler is
 * installed. */
int bk_videntity_info_json(bk_vunit *u, json_t **out);

#endif
