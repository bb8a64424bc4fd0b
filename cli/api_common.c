/* aibo-restore: the private-API client from the configuration, and error
 * reporting for the API commands. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "api_common.h"

const char *cli_api_cfg(cli_ctx *ctx, const char *key)
{
	bk_config *cfg;
	if (cli_config(ctx, &cfg) != 0)
		return NULL;
	return bk_config_get(cfg, key);
}

/* With -vv: every level up to the verbosity, plus the API's HTTP trace. */
static void trace_log(int level, const char *domain, const char *msg, void *payload)
{
	static const char *const names[] = {"error", "warning", "info", "debug", "trace"};
	cli_ctx *ctx = payload;
	if (level > BK_LOG_WARNING + ctx->verbose &&
	    !(level == BK_LOG_TRACE && domain && strcmp(domain, "api") == 0))
		return;
	fprintf(stderr, "aibo-restore: %s: %s: %s\n",
	        names[level < 0   ? 0
	              : level > 4 ? 4
	                          : level],
	        domain, msg);
}

int cli_api_open(cli_ctx *ctx, bk_api **out)
{
	bk_config *cfg;
	int rc;
	*out = NULL;
	if ((rc = cli_config(ctx, &cfg)))
		return rc;
	if (ctx->verbose >= 2)
		bk_log_set_handler(trace_log, BK_LOG_TRACE, ctx);
	return bk_api_new_config(out, cfg, ctx->verbose >= 2);
}

/* Finds "NNN code" after the call's name in an API error message. */
static void service_error(const char *msg, long *status, char *code, size_t cap)
{
	*status = 0;
	code[0] = '\0';
	for (const char *p = msg ? strstr(msg, ": ") : NULL; p; p = strstr(p + 1, ": ")) {
		const char *s = p + 2;
		if (isdigit((unsigned char)s[0]) && isdigit((unsigned char)s[1]) &&
		    isdigit((unsigned char)s[2]) && s[3] == ' ') {
			*status = strtol(s, NULL, 10);
			s += 4;
			size_t n = 0;
			while (s[n] && n + 1 < cap &&
			       (isalnum((unsigned char)s[n]) || s[n] == '-' || s[n] == '_'))
				n++;
			if (s[n] == ':' || s[n] == '\0') {
				memcpy(code, s, n);
				code[n] = '\0';
			}
			return;
		}
	}
}

int cli_api_fail(cli_ctx *ctx, int rc)
{
	const bk_error *e = bk_error_last();
	if (rc >= 0 || e->code != rc || e->reason == NULL || strncmp(e->reason, "api-", 4) != 0)
		return rc;
	long status;
	char code[64];
	service_error(e->message, &status, code, sizeof(code));
	if (status == 0)
		return rc;
	json_t *o = json_object();
	json_object_set_new(o, "status", json_integer(status));
	json_object_set_new(o, "code", code[0] ? json_string(code) : json_null());
	cli_set(ctx, "api_error", o);
	return rc;
}

void cli_api_idem_key(char out[129], const char *prefix, const char *a, const char *b)
{
	int n = snprintf(out, 129, "%s:%s:%s", prefix, a, b);
	if (n > 0 && n < 129)
		return;
	/* FNV-1a, twice with different seeds: stable, and short enough. */
	uint64_t h1 = 1469598103934665603ULL, h2 = 0x84222325cbf29ce4ULL;
	const char *parts[2] = {a, b};
	for (int i = 0; i < 2; i++)
		for (const unsigned char *p = (const unsigned char *)parts[i]; *p; p++) {
			h1 = (h1 ^ *p) * 1099511628211ULL;
			h2 = (h2 ^ *p) * 1099511628211ULL;
		}
	snprintf(out, 129, "%.40s:%016llx%016llx", prefix, (unsigned long long)h1,
	         (unsigned long long)h2);
}

int cli_api_unit_cert(cli_ctx *ctx, const char *path, const char *serial, bk_identity_cert *out)
{
	int rc = bk_identity_cert_load(out, path);
	if (rc)
		return rc;
	if (strcmp(out->role, "unit") != 0) {
		rc = cli_error(ctx, BK_EVERIFY, "wrong-role",
		               "%s: a %s certificate, not a unit's factory certificate", path,
		               out->role);
		goto done;
	}
	if (serial && strcmp(out->subject, serial) != 0) {
		rc = cli_error(ctx, BK_EUSER, "certificate-serial-mismatch",
		               "%s: the certificate is for %s, not %s", path, out->subject, serial);
		goto done;
	}
	const char *ca = cli_api_cfg(ctx, "trust.factory_ca");
	if (ca && (rc = bk_identity_cert_verify(out, ca, "unit"))) {
		const bk_error *e = bk_error_last();
		rc = cli_error(ctx, BK_EVERIFY, e->reason ? e->reason : "certificate-invalid",
		               "%s: %s", path, e->message ? e->message : "does not verify");
	}
done:
	if (rc)
		bk_identity_cert_clear(out);
	return rc;
}

int cli_api_unit_from_device(cli_ctx *ctx, const char *device, const char *serial,
			     bk_identity_cert *out)
{
	const char *uri = NULL;
	bk_device *dev = NULL;
	const uint8_t *bytes;
	size_t len;
	int rc = cli_device_resolve(ctx, device, &uri);
	if (rc == 0)
		rc = cli_device_open(ctx, uri, &dev);
	/* The handshake verified the certificate against the factory CA and
	 * bound it to the unit's Noise key: take exactly those bytes. */
	if (rc == 0)
		rc = bk_device_certificate(dev, &bytes, &len);
	if (rc == 0)
		rc = bk_identity_cert_parse(out, bytes, len);
	if (rc == 0 && serial && strcmp(out->subject, serial) != 0) {
		rc = cli_error(ctx, BK_EUSER, "certificate-serial-mismatch",
			       "%s is unit %s, not %s", device, out->subject, serial);
		bk_identity_cert_clear(out);
	}
	bk_device_free(dev);
	return rc;
}

json_t *cli_api_cert_json(const bk_identity_cert *c)
{
	json_t *o = json_object();
	json_object_set_new(o, "role", json_string(c->role));
	json_object_set_new(o, "subject", json_string(c->subject ? c->subject : ""));
	if (c->model)
		json_object_set_new(o, "model", json_string(c->model));
	if (c->age_recipient)
		json_object_set_new(o, "age_recipient", json_string(c->age_recipient));
	json_object_set_new(o, "fingerprint", json_string(c->fingerprint));
	json_object_set_new(o, "issuer", json_string(c->issuer));
	json_object_set_new(o, "not_before", json_integer(c->not_before));
	json_object_set_new(o, "not_after", json_integer(c->not_after));
	return o;
}
