/* aibo-restore enroll: gets this terminal's certificate from the private API
 * (creating the terminal's key file first if it has none). */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "api_common.h"

static void hex16(char out[17], const uint8_t *b)
{
	static const char digits[] = "0123456789abcdef";
	for (int i = 0; i < 8; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[16] = '\0';
}

static int run(cli_ctx *ctx)
{
	const char *key_path = cli_api_cfg(ctx, "depot.terminal_key");
	const char *cert_path = cli_api_cfg(ctx, "depot.terminal_cert");
	const char *service_ca = cli_api_cfg(ctx, "trust.service_ca");
	const char *tid = cli_value(ctx, "terminal-id");
	bool force = cli_flag(ctx, "force");
	bk_identity_terminal_keys keys;
	bk_identity_cert old = {0}, cert = {0};
	bk_api *api = NULL;
	uint8_t *raw = NULL;
	size_t raw_len = 0;
	char idem[129], kid[17];
	int rc, created = 0;
	struct stat st;

	if (tid == NULL)
		tid = cli_api_cfg(ctx, "depot.terminal_id");
	if (tid == NULL)
		return cli_error(
		    ctx, BK_EUSER, "no-terminal-id",
		    "no terminal id: give --terminal-id ID or set terminal_id in [depot]");
	if (key_path == NULL || cert_path == NULL)
		return cli_error(ctx, BK_EUSER, "no-terminal-files",
		                 "set terminal_key and terminal_cert in [depot]");
	if ((rc = bk_identity_terminal_key_ensure(key_path, &keys, &created)))
		return rc;
	cli_set(ctx, "terminal_id", json_string(tid));
	cli_set(ctx, "key_file", json_string(key_path));
	cli_set(ctx, "key_created", json_boolean(created));
	if (created && !ctx->json && !ctx->quiet)
		fprintf(stderr, "aibo-restore: created the terminal key %s\n", key_path);
	if (!keys.has_age) {
		rc = cli_error(ctx, BK_EUSER, "terminal-key-no-age",
		               "%s: the key file has no age key, which enrolling needs; move it "
		               "aside to make a new one",
		               key_path);
		goto done;
	}
	/* A valid certificate for these keys is never replaced without --force. */
	if (lstat(cert_path, &st) == 0) {
		if (bk_identity_cert_load(&old, cert_path) == 0 &&
		    bk_identity_terminal_cert_check(&old, &keys, tid, service_ca) == 0 && !force) {
			rc =
			    cli_error(ctx, BK_EEXIST, "terminal-cert-exists",
			              "%s: already a valid certificate of terminal %s (valid until "
			              "%lld); use --force to replace it",
			              cert_path, tid, (long long)old.not_after);
			goto done;
		}
	} else if (errno != ENOENT) {
		rc = cli_error(ctx, BK_EIO, "io-error", "%s: %s", cert_path, strerror(errno));
		goto done;
	}
	hex16(kid, keys.noise);
	cli_api_idem_key(idem, "enroll", tid, kid);
	if ((rc = cli_api_open(ctx, &api)))
		goto done;
	rc =
	    bk_api_terminal_enroll(api, tid, keys.noise, keys.age, keys.sign, idem, &raw, &raw_len);
	if (rc) {
		rc = cli_api_fail(ctx, rc);
		goto done;
	}
	if ((rc = bk_identity_cert_parse(&cert, raw, raw_len)) ||
	    (rc = bk_identity_terminal_cert_check(&cert, &keys, tid, service_ca))) {
		const bk_error *e = bk_error_last();
		rc = cli_error(ctx, BK_EVERIFY, e->reason ? e->reason : "certificate-invalid",
		               "enroll: the certificate the service issued is refused: %s",
		               e->message ? e->message : "does not verify");
		goto done;
	}
	if ((rc = bk_identity_cert_save(cert_path, &cert)))
		goto done;
	cli_set(ctx, "cert_file", json_string(cert_path));
	cli_set(ctx, "certificate", cli_api_cert_json(&cert));
	cli_set(ctx, "verified_against_service_ca", json_boolean(service_ca != NULL));
	cli_print(ctx, "terminal     %s\ncertificate  %s\nfingerprint  %s\nvalid until  %lld\n",
	          tid, cert_path, cert.fingerprint, (long long)cert.not_after);
	if (service_ca == NULL && !ctx->json && !ctx->quiet)
		fprintf(stderr,
		        "aibo-restore: warning: no service_ca in [trust]: the certificate's "
		        "keys were checked, not its issuer\n");
done:
	bk_free(raw);
	bk_identity_cert_clear(&cert);
	bk_identity_cert_clear(&old);
	bk_api_free(api);
	return rc;
}

static const cli_opt opts[] = {
    {"terminal-id", 0, "ID", "the terminal's id (default: terminal_id in [depot])"},
    {"force", 'f', NULL, "replace a certificate that is still valid"},
    {0},
};

const cli_command cmd_enroll = {
    .name = "enroll",
    .args = "",
    .summary = "get this terminal's certificate from the private API",
    .opts = opts,
    .min_args = 0,
    .max_args = 0,
    .run = run,
};
