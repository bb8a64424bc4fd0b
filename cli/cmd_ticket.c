/* aibo-restore ticket: a repair ticket in the private API. */
#include "api_common.h"

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static int run(cli_ctx *ctx)
{
	bk_api *api = NULL;
	bk_api_ticket t = {0};
	int rc = cli_api_open(ctx, &api);
	if (rc)
		return rc;
	rc = bk_api_ticket_get(api, ctx->argv[0], &t);
	if (rc) {
		rc = cli_api_fail(ctx, rc);
		goto done;
	}
	cli_print(ctx,
	          "ticket      %s\nstatus      %s\nmodel       %s\nold serial  %s\n"
	          "new serial  %s\n",
	          t.ticket, t.status, t.model ? t.model : "(unknown)", t.old_serial,
	          t.new_serial ? t.new_serial : "(not reassigned yet)");
	if (t.outcome)
		cli_print(ctx, "outcome     %s\n", t.outcome);
	json_t *o = json_object();
	json_object_set_new(o, "ticket", json_string(t.ticket));
	json_object_set_new(o, "status", json_string(t.status));
	json_object_set_new(o, "model", str_or_null(t.model));
	json_object_set_new(o, "old_serial", json_string(t.old_serial));
	json_object_set_new(o, "new_serial", str_or_null(t.new_serial));
	json_object_set_new(o, "outcome", str_or_null(t.outcome));
	cli_set(ctx, "ticket", o);
done:
	bk_api_ticket_clear(&t);
	bk_api_free(api);
	return rc;
}

static const cli_opt opts[] = {
    {0},
};

const cli_command cmd_ticket = {
    .name = "ticket",
    .args = "TICKET",
    .summary = "show a repair ticket: its old serial, the new serial bound, its status",
    .opts = opts,
    .min_args = 1,
    .max_args = 1,
    .run = run,
};
