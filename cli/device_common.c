/* Helpers the device commands share: resolving DEVICE arguments and opening
 * authenticated sessions from the configuration. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_device_usb_ids(cli_ctx *ctx, uint16_t *vid, uint16_t *pid)
{
	bk_config *cfg;
	int rc = cli_config(ctx, &cfg);
	if (rc)
		return rc;
	const char *v = bk_config_get(cfg, "usb.vid_pid");
	*vid = 0;
	*pid = 0;
	return v ? bk_device_parse_vid_pid(v, vid, pid) : 0;
}

/* A DEVICE argument: a URI, or a name from the [devices] section. */
int cli_device_resolve(cli_ctx *ctx, const char *arg, const char **out_uri)
{
	bk_config *cfg;
	char key[256];
	int rc = cli_config(ctx, &cfg);
	if (rc)
		return rc;
	if (strchr(arg, ':')) {
		rc = bk_device_uri_check(arg);
		if (rc == 0)
			*out_uri = arg;
		return rc;
	}
	snprintf(key, sizeof(key), "devices.%s", arg);
	const char *uri = strlen(arg) < 200 ? bk_config_get(cfg, key) : NULL;
	if (uri == NULL)
		return cli_error(
		    ctx, BK_ENOTFOUND, "unknown-device",
		    "'%s' is neither a device URI (usb:, tcp:, unix:) nor a name in the "
		    "[devices] section of the configuration",
		    arg);
	rc = bk_device_uri_check(uri);
	if (rc)
		return cli_error(ctx, BK_EUSER, "bad-device-uri", "devices.%s: %s", arg,
		                 bk_error_last()->message);
	*out_uri = uri;
	return 0;
}

int cli_device_open(cli_ctx *ctx, const char *uri, bk_device **out)
{
	bk_config *cfg;
	int rc = cli_config(ctx, &cfg);
	return rc ? rc : bk_device_open_config(out, cfg, uri, NULL);
}

int cli_reconnect_ms(cli_ctx *ctx, int64_t *out)
{
	const char *rt = cli_value(ctx, "reconnect-timeout");
	*out = 0;
	if (rt == NULL)
		return 0;
	char *end = NULL;
	long long secs = strtoll(rt, &end, 10);
	if (end == rt || *end != '\0' || secs < 1 || secs > 86400)
		return cli_error(ctx, BK_EUSER, "usage", "--reconnect-timeout takes 1 to 86400 seconds");
	*out = (int64_t)secs * 1000;
	return 0;
}
