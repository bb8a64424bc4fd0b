/* aibo-restore keygen: depot identities and signing keys. */
#include <string.h>

#include "cli.h"

static int identity_recipients(cli_ctx *ctx, const char *path)
{
	char *recipients = NULL;
	int rc = bk_keys_identity_recipients(path, cli_passphrase_cb, ctx, &recipients);
	if (rc)
		return rc;
	cli_print(ctx, "%s\n", recipients);
	json_t *list = json_array();
	for (char *p = recipients; p && *p;) {
		char *nl = strchr(p, '\n');
		if (nl)
			*nl = '\0';
		json_array_append_new(list, json_string(p));
		p = nl ? nl + 1 : NULL;
	}
	cli_set(ctx, "file", json_string(path));
	cli_set(ctx, "recipients", list);
	bk_free(recipients);
	return 0;
}

static int run(cli_ctx *ctx)
{
	const char *out = cli_value(ctx, "output");
	const char *show = cli_value(ctx, "show-recipient");
	bool signing = cli_flag(ctx, "signing");
	bool protect = cli_flag(ctx, "passphrase") || cli_value(ctx, "passphrase-file");
	char pass[1024];
	size_t plen = 0;
	int rc = 0;

	if (show) {
		if (out || signing)
			return cli_error(ctx, BK_EUSER, "usage", "-y cannot be combined with -o or --signing");
		return identity_recipients(ctx, show);
	}
	if (out == NULL && !signing) {
		bk_config *cfg;
		rc = cli_config(ctx, &cfg);
		if (rc)
			return rc;
		out = bk_config_get(cfg, "depot.identity");
	}
	if (out == NULL)
		return cli_error(ctx, BK_EUSER, "missing-output",
				 signing ? "keygen --signing needs -o KEY"
					 : "no output: give -o FILE or set identity in [depot]");
	if (protect) {
		rc = cli_passphrase(ctx, pass, sizeof(pass), &plen, "Passphrase for the new key", true);
		if (rc)
			return rc;
	}
	if (signing) {
		char *id = NULL, *pub = NULL;
		rc = bk_keys_signing_generate(out, protect ? pass : NULL, plen, &id, &pub);
		if (rc == 0) {
			cli_print(ctx, "key id %s\npublic key %s\n", id, pub);
			if (!ctx->quiet && !ctx->json)
				fprintf(stderr, "aibo-restore: wrote %s and %s.pub\n", out, out);
			cli_set(ctx, "file", json_string(out));
			char pubfile[4096];
			snprintf(pubfile, sizeof(pubfile), "%s.pub", out);
			cli_set(ctx, "public_file", json_string(pubfile));
			cli_set(ctx, "key_id", json_string(id));
			cli_set(ctx, "public_key", json_string(pub));
		}
		bk_free(id);
		bk_free(pub);
	} else {
		char *recipient = NULL;
		rc = bk_keys_identity_generate(out, protect ? pass : NULL, plen, &recipient);
		if (rc == 0) {
			cli_print(ctx, "%s\n", recipient);
			cli_set(ctx, "file", json_string(out));
			cli_set(ctx, "recipient", json_string(recipient));
			cli_set(ctx, "passphrase_protected", json_boolean(protect));
		}
		bk_free(recipient);
	}
	explicit_bzero(pass, sizeof(pass));
	return rc;
}

static const cli_opt opts[] = {
	{"output", 'o', "FILE", "write the new key to FILE (default: the configured identity)"},
	{"signing", 0, NULL, "make a minisign-compatible signing key pair (FILE and FILE.pub)"},
	{"passphrase", 'p', NULL, "protect the new key with a passphrase"},
	{"passphrase-file", 0, "FILE", "read the passphrase from FILE"},
	{"show-recipient", 'y', "FILE", "print the recipient of an existing identity file"},
	{0},
};

const cli_command cmd_keygen = {
	.name = "keygen",
	.args = "",
	.summary = "make a depot identity or a signing key, or show an identity's recipient",
	.opts = opts,
	.min_args = 0,
	.max_args = 0,
	.run = run,
};
