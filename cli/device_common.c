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
	bk_device_opts o = BK_DEVICE_OPTS_INIT;
	bk_config *cfg;
	const char *ca[1];
	uint64_t timeout = 30;
	int rc = cli_config(ctx, &cfg);
	if (rc == 0)
		rc = cli_device_usb_ids(ctx, &o.usb_vid, &o.usb_pid);
	if (rc == 0)
		rc = bk_config_get_u64(cfg, "device.timeout", &timeout);
	if (rc)
		return rc;
	o.terminal_key = bk_config_get(cfg, "depot.terminal_key");
	o.terminal_cert = bk_config_get(cfg, "depot.terminal_cert");
	ca[0] = bk_config_get(cfg, "trust.factory_ca");
	if (ca[0]) {
		o.factory_ca = ca;
		o.factory_ca_count = 1;
	}
	if (o.terminal_key == NULL)
		return cli_error(ctx, BK_EUSER, "no-terminal-key",
		                 "no terminal key configured: set depot.terminal_key (see "
		                 "aibo-restore.conf(5))");
	if (o.terminal_cert == NULL)
		return cli_error(ctx, BK_EUSER, "no-terminal-cert",
		                 "no terminal certificate configured: set depot.terminal_cert");
	if (ca[0] == NULL)
		return cli_error(ctx, BK_EUSER, "no-factory-ca",
		                 "no factory CA configured: set trust.factory_ca");
	o.timeout_ms = timeout > 86400 ? 86400000 : (int64_t)timeout * 1000;
	return bk_device_open(out, uri, &o);
}

