/* aibo-restore reassign: moves a unit's cloud identity to the replacement
 * named by a repair ticket, verifies the identity bundle the service returns
 * and keeps it in the catalog. */
#include <string.h>

#include "api_common.h"

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static int run(cli_ctx *ctx)
{
	const char *ticket = cli_value(ctx, "ticket");
	const char *serial = cli_value(ctx, "to-serial");
	const char *cert_path = cli_value(ctx, "to-cert");
	const char *device = cli_value(ctx, "to");
	const char *key = cli_value(ctx, "idempotency-key");
	bk_identity_cert unit = {0}, bundle = {0};
	bk_api_reassignment ra = {0};
	bk_api *api = NULL;
	bk_catalog *cat = NULL;
	char derived[129];
	int rc;

	if (ticket == NULL)
		return cli_error(ctx, BK_EUSER, "missing-option", "reassign needs --ticket T");
	if (device && cert_path)
		return cli_error(ctx, BK_EUSER, "usage", "give either --to DEVICE or --to-cert FILE");
	if (device == NULL && (serial == NULL || cert_path == NULL))
		return cli_error(ctx, BK_EUSER, "missing-option",
		                 "reassign needs the replacement: --to DEVICE, or --to-serial S "
		                 "--to-cert FILE");
	const char *service_ca = cli_api_cfg(ctx, "trust.service_ca");
	const char *db = cli_api_cfg(ctx, "depot.db");
	if (service_ca == NULL)
		return cli_error(ctx, BK_EUSER, "no-service-ca",
		                 "set service_ca in [trust]: the identity bundle must be verified "
		                 "against the service CA");
	if (db == NULL)
		return cli_error(ctx, BK_EUSER, "no-catalog", "set db in [depot] (or give --db)");
	if (device) {
		if ((rc = cli_api_unit_from_device(ctx, device, serial, &unit)))
			goto done;
		serial = unit.subject;
	} else if ((rc = cli_api_unit_cert(ctx, cert_path, serial, &unit))) {
		goto done;
	}
	if (key == NULL) {
		/* The same ticket and replacement always give the same key, so that
		 * running the command again never reassigns twice. */
		cli_api_idem_key(derived, "reassign", ticket, serial);
		key = derived;
	}
	if ((rc = cli_api_open(ctx, &api)))
		goto done;
	rc = bk_api_reassign(api, ticket, serial, unit.bytes, unit.len, key, &ra);
	if (rc) {
		rc = cli_api_fail(ctx, rc);
		goto done;
	}
	if (strcmp(ra.ticket, ticket) != 0 || strcmp(ra.new_serial, serial) != 0) {
		rc = cli_error(
		    ctx, BK_EAPI, "api-bad-response",
		    "reassign ticket %s: the service answered for ticket %s and serial %s", ticket,
		    ra.ticket, ra.new_serial);
		goto done;
	}
	rc = bk_identity_bundle_verify(&bundle, ra.bundle, ra.bundle_len, service_ca, serial,
	                               ra.device_id, ra.owner, ra.old_serial, &unit);
	if (rc) {
		const bk_error *e = bk_error_last();
		rc = cli_error(ctx, BK_EVERIFY, e->reason ? e->reason : "bundle-invalid",
		               "reassign ticket %s: the identity bundle is refused: %s", ticket,
		               e->message ? e->message : "does not verify");
		goto done;
	}
	/* Reported even if saving fails: the identity has moved. */
	cli_set(ctx, "ticket", json_string(ra.ticket));
	cli_set(ctx, "old_serial", json_string(ra.old_serial));
	cli_set(ctx, "new_serial", json_string(ra.new_serial));
	cli_set(ctx, "device_id", json_string(ra.device_id));
	cli_set(ctx, "owner", str_or_null(ra.owner));
	cli_set(ctx, "idempotency_key", json_string(key));
	cli_set(ctx, "bundle_fingerprint", json_string(bundle.fingerprint));
	bk_identity_record rec = {.ticket = ra.ticket,
	                          .old_serial = ra.old_serial,
	                          .new_serial = ra.new_serial,
	                          .device_id = ra.device_id,
	                          .owner = ra.owner,
	                          .bundle = bundle.bytes,
	                          .bundle_len = bundle.len};
	if ((rc = bk_catalog_open(&cat, db)) || (rc = bk_catalog_identity_put(cat, &rec))) {
		cli_set(ctx, "bundle_saved", json_false());
		goto done;
	}
	cli_set(ctx, "bundle_saved", json_true());
	cli_print(ctx,
	          "ticket      %s\nold serial  %s\nnew serial  %s\ndevice id   %s\nowner       %s\n"
	          "bundle      %s (verified, saved in the catalog)\n",
	          ra.ticket, ra.old_serial, ra.new_serial, ra.device_id,
	          ra.owner ? ra.owner : "(none)", bundle.fingerprint);
done:
	bk_catalog_free(cat);
	bk_api_reassignment_clear(&ra);
	bk_identity_cert_clear(&bundle);
	bk_identity_cert_clear(&unit);
	bk_api_free(api);
	return rc;
}

static const cli_opt opts[] = {
    {"ticket", 't', "T", "the repair ticket (required)"},
    {"to", 0, "DEVICE", "the replacement unit (its certificate from the verified handshake)"},
    {"to-serial", 0, "S", "the replacement unit's serial"},
    {"to-cert", 0, "FILE", "the replacement unit's factory certificate"},
    {"idempotency-key", 0, "K", "the request's key (default: derived from ticket and serial)"},
    {0},
};

const cli_command cmd_reassign = {
    .name = "reassign",
    .args = "",
    .summary = "move a unit's cloud identity to its replacement and keep the identity bundle",
    .opts = opts,
    .min_args = 0,
    .max_args = 0,
    .run = run,
};
