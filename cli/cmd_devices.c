/* aibo-restore devices [--probe URI]...: the units within reach: on the USB
 * bus (by the configured VID:PID), named in the [devices] section of the
 * configuration, and the URIs given with --probe. Each is asked for INFO. */
#include <string.h>

#include <libbackup/device.h>

#include "cli.h"

/* From cmd_info.c. */

/* Asks one unit for INFO and adds its row; returns the failure code (0 when
 * it answered). */
static int probe(cli_ctx *ctx, json_t *rows, const char *uri, const char *source, const char *name)
{
	bk_device *dev = NULL;
	bk_device_info *info = NULL;
	json_t *row = json_pack("{s:s, s:s}", "uri", uri, "source", source);
	int rc = cli_device_open(ctx, uri, &dev);
	if (name)
		json_object_set_new(row, "name", json_string(name));
	if (rc == 0)
		rc = bk_device_info_get(dev, &info, 0);
	if (rc == 0) {
		json_object_set_new(row, "serial", json_string(info->serial));
		json_object_set_new(row, "model", json_string(info->model));
		json_object_set_new(row, "firmware", json_string(info->firmware_version));
		json_object_set_new(row, "state", json_string(info->state));
		json_object_set_new(row, "battery", json_integer(info->battery));
		cli_print(ctx, "%-32s %-16s %-10s %-10s %s\n", uri, info->serial, info->model,
		          info->firmware_version, info->state);
	} else {
		const bk_error *e = bk_error_last();
		const char *reason = ctx->err_code ? ctx->err_reason : e->reason;
		const char *msg = ctx->err_code ? ctx->err_message : e->message;
		json_object_set_new(row, "error",
		                    json_pack("{s:s, s:s}", "code", reason ? reason : "error",
		                              "message", msg ? msg : bk_strerror(rc)));
		cli_print(ctx, "%-32s %-16s %-10s %-10s %s\n", uri, "-", "-", "-", "unreachable");
		if (!ctx->json && strcmp(source, "probe") != 0)
			fprintf(stderr, "aibo-restore: %s\n", msg ? msg : bk_strerror(rc));
	}
	json_array_append_new(rows, row);
	bk_device_info_free(info);
	bk_device_free(dev);
	return rc;
}

static int run(cli_ctx *ctx)
{
	bk_config *cfg;
	const char *const *probes = NULL;
	int nprobes = cli_values(ctx, "probe", &probes);
	bk_device_usb_unit *usb = NULL;
	size_t nusb = 0;
	uint16_t vid = 0, pid = 0;
	int first_rc = 0, rc;
	json_t *rows = json_array();

	rc = cli_config(ctx, &cfg);
	if (rc == 0)
		rc = cli_device_usb_ids(ctx, &vid, &pid);
	/* Check every probe URI before talking to anything. */
	for (int i = 0; rc == 0 && i < nprobes; i++)
		rc = bk_device_uri_check(probes[i]);
	if (rc) {
		json_decref(rows);
		return rc;
	}
	cli_print(ctx, "%-32s %-16s %-10s %-10s %s\n", "DEVICE", "SERIAL", "MODEL", "FIRMWARE",
	          "STATE");
	/* The USB bus: a machine without USB simply has no units there. */
	if (bk_device_usb_list(&usb, &nusb, vid, pid) == 0)
		for (size_t i = 0; i < nusb; i++)
			probe(ctx, rows, usb[i].uri, "usb", NULL);
	bk_free(usb);
	/* Units named in the configuration: listed whether or not they answer. */
	size_t n = bk_config_count(cfg);
	for (size_t i = 0; i < n; i++) {
		const char *k, *v, *o;
		if (bk_config_entry(cfg, i, &k, &v, &o) != 0 || strncmp(k, "devices.", 8) != 0)
			continue;
		ctx->err_code = 0;
		if (bk_device_uri_check(v) != 0) {
			json_array_append_new(
			    rows, json_pack("{s:s, s:s, s:s, s:{s:s, s:s}}", "uri", v, "source",
			                    "config", "name", k + 8, "error", "code",
			                    "bad-device-uri", "message", bk_error_last()->message));
			continue;
		}
		probe(ctx, rows, v, "config", k + 8);
	}
	/* Probed URIs: a unit asked for explicitly that does not answer is an error. */
	for (int i = 0; i < nprobes; i++) {
		ctx->err_code = 0;
		rc = probe(ctx, rows, probes[i], "probe", NULL);
		if (rc && first_rc == 0) {
			first_rc = rc;
			if (ctx->err_code == 0) {
				const bk_error *e = bk_error_last();
				cli_error(ctx, rc, e->reason, "%s", e->message);
			}
		}
	}
	cli_set(ctx, "units", rows);
	return first_rc;
}

static const cli_opt opts[] = {
    {"probe", 0, "URI", "also ask the unit at URI (repeatable)"},
    {0},
};

const cli_command cmd_devices = {
    .name = "devices",
    .args = "",
    .summary = "list the units on the USB bus, in the configuration and at probed URIs",
    .opts = opts,
    .min_args = 0,
    .max_args = 0,
    .run = run,
};
