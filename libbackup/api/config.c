/* The private-API client from the configuration's [api] section. */
#include <string.h>

#include <libbackup/api.h>

#include "libbackup/util/util.h"

static int seconds_ms(const bk_config *cfg, const char *key, long *out)
{
	uint64_t v = 0;
	int rc = bk_config_get_u64(cfg, key, &v);
	if (rc)
		return rc;
	if (v > 86400)
		v = 86400;
	*out = (long)v * 1000;
	return 0;
}

int bk_api_new_config(bk_api **out, const bk_config *cfg, int trace)
{
	bk_api_options o = BK_API_OPTIONS_INIT;
	char *file_token = NULL;
	long ms;
	uint64_t retries = 0;
	int rc;
	if (out == NULL || cfg == NULL)
		return bk__error_set(BK_EINVALID, NULL, "api: missing argument");
	*out = NULL;
	o.url = bk_config_get(cfg, "api.url");
	if (o.url == NULL || o.url[0] == '\0')
		return bk__error_set(BK_EUSER, "no-url",
		                     "no API URL: set url in [api] or AIBO_RESTORE_API_URL");
	o.token = bk_config_get(cfg, "api.token");
	if (o.token == NULL || o.token[0] == '\0') {
		const char *tf = bk_config_get(cfg, "api.token_file");
		if (tf == NULL)
			return bk__error_set(BK_EUSER, "no-token",
			                     "no API token: set token_file in [api] or "
			                     "AIBO_RESTORE_API_TOKEN");
		if ((rc = bk_api_token_from_file(&file_token, tf)))
			return rc;
		o.token = file_token;
	}
	o.ca_file = bk_config_get(cfg, "api.ca_file");
	o.client_cert = bk_config_get(cfg, "api.client_cert");
	o.client_key = bk_config_get(cfg, "api.client_key");
	if ((o.client_cert == NULL) != (o.client_key == NULL)) {
		rc = bk__error_set(BK_EUSER, "tls-client-cert",
		                   "client_cert and client_key in [api] go together");
		goto done;
	}
	if ((rc = seconds_ms(cfg, "api.connect_timeout", &ms)))
		goto done;
	o.connect_timeout_ms = ms > 0 ? ms : 1;
	if ((rc = seconds_ms(cfg, "api.timeout", &ms)))
		goto done;
	o.timeout_ms = ms > 0 ? ms : 1;
	if ((rc = bk_config_get_u64(cfg, "api.retries", &retries)))
		goto done;
	if (retries > 100)
		retries = 100;
	o.max_attempts = (unsigned)retries + 1;
	if (retries == 0)
		o.retry_budget_ms = -1;
	o.trace = trace;
	rc = bk_api_new(out, &o);
done:
	bk_api_token_free(file_token);
	return rc;
}
