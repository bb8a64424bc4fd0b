/* Opening a session with the options the configuration gives. */
#include <libbackup/device.h>

#include "device/device_internal.h"

int bk_device_open_config(bk_device **out, const bk_config *cfg, const char *uri,
                          const char *serial)
{
	bk_device_opts o = BK_DEVICE_OPTS_INIT;
	const char *ca[1];
	uint64_t timeout = 30;
	int rc;
	if (out == NULL || cfg == NULL || uri == NULL)
		return bk__error_set(BK_EINVALID, NULL, "device: missing argument");
	*out = NULL;
	const char *ids = bk_config_get(cfg, "usb.vid_pid");
	if (ids && (rc = bk_device_parse_vid_pid(ids, &o.usb_vid, &o.usb_pid)))
		return rc;
	if ((rc = bk_config_get_u64(cfg, "device.timeout", &timeout)))
		return rc;
	o.terminal_key = bk_config_get(cfg, "depot.terminal_key");
	o.terminal_cert = bk_config_get(cfg, "depot.terminal_cert");
	ca[0] = bk_config_get(cfg, "trust.factory_ca");
	if (o.terminal_key == NULL)
		return bk__error_set(BK_EUSER, "no-terminal-key",
		                     "no terminal key configured: set depot.terminal_key (see "
		                     "aibo-restore.conf(5))");
	if (o.terminal_cert == NULL)
		return bk__error_set(BK_EUSER, "no-terminal-cert",
		                     "no terminal certificate configured: set depot.terminal_cert");
	if (ca[0] == NULL)
		return bk__error_set(BK_EUSER, "no-factory-ca",
		                     "no factory CA configured: set trust.factory_ca");
	o.factory_ca = ca;
	o.factory_ca_count = 1;
	o.serial = serial;
	o.timeout_ms = timeout > 86400 ? 86400000 : (int64_t)timeout * 1000;
	return bk_device_open(out, uri, &o);
}
