/* aibo-restore unit: a unit's record in the private API. */
#include "api_common.h"

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static int run(cli_ctx *ctx)
{
	bk_api *api = NULL;
	bk_api_unit u = {0};
	const char *serial = ctx->argv[0];
	int rc = cli_api_open(ctx, &api);
	if (rc)
		return rc;
	rc = bk_api_unit_get(api, serial, &u);
	if (rc) {
		rc = cli_api_fail(ctx, rc);
		goto done;
	}
	cli_print(ctx,
	          "serial     %s\nmodel      %s\nhw rev     %s\ndevice id  %s\nstatus     %s\n"
	          "owner      %s\nfirmware   %s\n",
	          u.serial, u.model, u.hw_rev ? u.hw_rev : "", u.device_id, u.status,
	          u.owner ? u.owner : "(none)", u.firmware ? u.firmware : "(unknown)");
	json_t *o = json_object();
	json_object_set_new(o, "serial", json_string(u.serial));
	json_object_set_new(o, "model", json_string(u.model));
	json_object_set_new(o, "hw_rev", str_or_null(u.hw_rev));
	json_object_set_new(o, "device_id", json_string(u.device_id));
	json_object_set_new(o, "status", json_string(u.status));
	json_object_set_new(o, "owner", str_or_null(u.owner));
	json_object_set_new(o, "firmware", str_or_null(u.firmware));
	cli_set(ctx, "unit", o);
done:
	bk_api_unit_clear(&u);
	bk_api_free(api);
	return rc;
}

static const cli_opt opts[] = {
    {0},
};

const cli_command cmd_unit = {
    .name = "unit",
    .args = "SERIAL",
    .summary = "show a unit's record in the private API (device id, owner, status, firmware)",
    .opts = opts,
    .min_args = 1,
    .max_args = 1,
    .run = run,
};
