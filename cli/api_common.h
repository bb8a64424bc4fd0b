/* aibo-restore: what the private-API commands share: a client built from the
 * configuration ([api] in aibo-restore.conf(5)), error reporting, helpers. */
#ifndef AIBO_CLI_API_COMMON_H
#define AIBO_CLI_API_COMMON_H

#include <libbackup/identity.h>

#include "cli.h"

/* A client from api.url, the token (api.token or AIBO_RESTORE_API_TOKEN,
 * else api.token_file, which must be private), api.ca_file,
 * api.client_cert/api.client_key, api.connect_timeout and api.timeout
 * (seconds) and api.retries. With -vv, HTTP exchanges are traced to stderr
 * (the token redacted). */
int cli_api_open(cli_ctx *ctx, bk_api **out);

/* Reports a failed library call `rc`: for an API error, the service's status
 * and error code also go into the JSON result as "api_error". Returns rc. */
int cli_api_fail(cli_ctx *ctx, int rc);

/* A configuration value (NULL when unset or when the config cannot load). */
const char *cli_api_cfg(cli_ctx *ctx, const char *key);

/* An idempotency key "<prefix>:<a>:<b>" from stable parts; when that would be
 * longer than the service takes, the parts are replaced by a digest. */
void cli_api_idem_key(char out[129], const char *prefix, const char *a, const char *b);

/* Loads a unit's factory certificate from `path`: it must be a unit
 * certificate for `serial` (when non-NULL) and, when trust.factory_ca is
 * configured, verify against it. Errors are recorded on ctx. */
int cli_api_unit_cert(cli_ctx *ctx, const char *path, const char *serial, bk_identity_cert *out);

/* The certificate's description as a JSON object. */
/* The factory certificate of the unit at DEVICE, as its handshake verified
 * it; with `serial`, the unit must be that one. */
int cli_api_unit_from_device(cli_ctx *ctx, const char *device, const char *serial,
			     bk_identity_cert *out);

json_t *cli_api_cert_json(const bk_identity_cert *c);

#endif
