/* The lab's public-key infrastructure, made by `aibo-vdev pki init DIR`. */
#ifndef BK_VDEV_PKI_H
#define BK_VDEV_PKI_H

/* The file names pki init writes into DIR. */
#define BK_PKI_FACTORY_CA "factory-ca.key"
#define BK_PKI_SERVICE_CA "service-ca.key"
#define BK_PKI_FIRMWARE_KEY "firmware.key"
#define BK_PKI_DEPOT_IDENTITY "depot.identity"
#define BK_PKI_ESCROW_IDENTITY "cloud-escrow.identity"
#define BK_PKI_TERMINAL_KEY "terminal.key"
#define BK_PKI_TERMINAL_CERT "terminal.cert"
#define BK_PKI_API_TOKEN "api.token"
#define BK_PKI_CONFIG "config"
#define BK_PKI_TERMINAL_ID "lab-terminal-1"

/* Creates, in `dir` (made if missing; mode 0700): the factory CA, the service
 * CA and the firmware signing key (minisign key pairs, `NAME` and
 * `NAME.pub`), the depot and cloud-escrow age identities, the terminal's key
 * file and its certificate (issued by the service CA), an API token for the
 * simulator, and `config`, an aibo-restore configuration pointing at all of
 * them with a catalog and a backup store under `dir`. Secret files are
 * unencrypted, mode 0600. Refuses (BK_EEXIST) when any of them exists. */
int bk_vdev_pki_init(const char *dir);

#endif
