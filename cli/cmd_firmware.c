/* aibo-restore firmware pack|inspect|verify|list|flash: signed firmware
 * bundles (aibo-firmware(5)) and the safe A/B update of a unit. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libbackup/device.h>
#include <libbackup/firmware.h>

#include "cli.h"

#define MAX_REVOKED 64

/* --- Shared ----------------------------------------------------------------------- */

typedef struct trust {
	const char *keys;
	char *text;
	const char *revoked[MAX_REVOKED + 1];
} trust;

/* trust.firmware_keys and trust.revoked_keys (comma-separated ids). */
static int trust_load(cli_ctx *ctx, trust *t, bool required)
{
	bk_config *cfg;
	size_t n = 0;
	int rc = cli_config(ctx, &cfg);
	memset(t, 0, sizeof(*t));
	if (rc)
		return rc;
	t->keys = bk_config_get(cfg, "trust.firmware_keys");
	if (required && (t->keys == NULL || t->keys[0] == '\0'))
		return cli_error(ctx, BK_EUSER, "no-firmware-keys",
		                 "no trusted firmware keys: set trust.firmware_keys");
	const char *rev = bk_config_get(cfg, "trust.revoked_keys");
	t->text = strdup(rev ? rev : "");
	if (t->text == NULL)
		return BK_ENOMEM;
	for (char *s = t->text; *s && n < MAX_REVOKED;) {
		s += strspn(s, ", \t");
		size_t len = strcspn(s, ", \t");
		if (len == 0)
			break;
		t->revoked[n++] = s;
		s += len;
		if (*s)
			*s++ = '\0';
	}
	t->revoked[n] = NULL;
	return 0;
}

static void trust_clear(trust *t)
{
	free(t->text);
	t->text = NULL;
}

static int parse_u64(cli_ctx *ctx, const char *opt, const char *v, uint64_t *out)
{
	char *end = NULL;
	errno = 0;
	unsigned long long n = v ? strtoull(v, &end, 10) : 0;
	if (v == NULL || v[0] < '0' || v[0] > '9' || *end || errno)
		return cli_error(ctx, BK_EUSER, "bad-option-value", "--%s needs a number, not '%s'",
		                 opt, v ? v : "");
	*out = n;
	return 0;
}

/* "MIN:MAX" */
static int parse_range(cli_ctx *ctx, const char *opt, const char *v, char *min, char *max,
                       size_t cap)
{
	const char *colon = v ? strchr(v, ':') : NULL;
	if (colon == NULL || colon == v || colon[1] == '\0' || (size_t)(colon - v) >= cap ||
	    strlen(colon + 1) >= cap)
		return cli_error(ctx, BK_EUSER, "bad-option-value", "--%s takes MIN:MAX, not '%s'",
		                 opt, v ? v : "");
	memcpy(min, v, (size_t)(colon - v));
	min[colon - v] = '\0';
	memcpy(max, colon + 1, strlen(colon + 1) + 1); /* length checked above */
	return 0;
}

static json_t *bundle_json(const bk_fw_bundle *b)
{
	json_t *o = json_object(), *models = json_array(), *payloads = json_array();
	for (size_t i = 0; i < bk_fw_bundle_model_count(b); i++)
		json_array_append_new(models, json_string(bk_fw_bundle_model(b, i)));
	for (size_t i = 0; i < bk_fw_bundle_payload_count(b); i++) {
		bk_fw_payload_info p;
		if (bk_fw_bundle_payload(b, i, &p) == 0)
			json_array_append_new(payloads,
			                      json_pack("{s:s, s:s, s:I, s:s}", "name", p.name, "slot",
			                                p.slot, "size", (json_int_t)p.size, "blake2b",
			                                p.blake2b));
	}
	json_object_set_new(o, "file", json_string(bk_fw_bundle_path(b)));
	json_object_set_new(o, "fw_version", json_string(bk_fw_bundle_version(b)));
	json_object_set_new(o, "models", models);
	json_object_set_new(o, "hw_rev", json_pack("{s:s?, s:s?}", "min", bk_fw_bundle_hw_rev_min(b),
	                                           "max", bk_fw_bundle_hw_rev_max(b)));
	json_object_set_new(o, "security_counter",
	                    json_integer((json_int_t)bk_fw_bundle_security_counter(b)));
	json_object_set_new(o, "schema", json_pack("{s:I, s:I}", "min",
	                                           (json_int_t)bk_fw_bundle_schema_min(b), "max",
	                                           (json_int_t)bk_fw_bundle_schema_max(b)));
	json_object_set_new(o, "created", json_string(bk_fw_bundle_created(b)));
	json_object_set_new(o, "payload_bytes", json_integer((json_int_t)bk_fw_bundle_payload_bytes(b)));
	json_object_set_new(o, "payloads", payloads);
	return o;
}

static void set_all(cli_ctx *ctx, json_t *o)
{
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v) cli_set(ctx, k, json_incref(v));
}

static void print_bundle(cli_ctx *ctx, const bk_fw_bundle *b)
{
	cli_print(ctx, "bundle:            %s\n", bk_fw_bundle_path(b));
	cli_print(ctx, "version:           %s\n", bk_fw_bundle_version(b));
	cli_print(ctx, "models:           ");
	for (size_t i = 0; i < bk_fw_bundle_model_count(b); i++)
		cli_print(ctx, " %s", bk_fw_bundle_model(b, i));
	cli_print(ctx, "\n");
	cli_print(ctx, "hardware revision: %s to %s\n",
	          bk_fw_bundle_hw_rev_min(b) ? bk_fw_bundle_hw_rev_min(b) : "any",
	          bk_fw_bundle_hw_rev_max(b) ? bk_fw_bundle_hw_rev_max(b) : "any");
	cli_print(ctx, "security counter:  %" PRIu32 "\n", bk_fw_bundle_security_counter(b));
	cli_print(ctx, "memory schemas:    %" PRId64 "-%" PRId64 "\n", bk_fw_bundle_schema_min(b),
	          bk_fw_bundle_schema_max(b));
	cli_print(ctx, "created:           %s\n", bk_fw_bundle_created(b));
	for (size_t i = 0; i < bk_fw_bundle_payload_count(b); i++) {
		bk_fw_payload_info p;
		if (bk_fw_bundle_payload(b, i, &p) == 0)
			cli_print(ctx, "payload:           %s (slot %s, %" PRIu64 " bytes)\n", p.name,
			          p.slot, p.size);
	}
}

/* --- pack ---------------------------------------------------------------------------- */

static int run_pack(cli_ctx *ctx)
{
	const char *const *models = NULL;
	const char *out = cli_value(ctx, "output"), *key = cli_value(ctx, "key");
	const char *version = cli_value(ctx, "version");
	char smin[32], smax[32], hmin[64] = "0", hmax[64] = "999999", pass[1024];
	uint64_t counter = 0, s0 = 0, s1 = 0;
	size_t passlen = 0;
	bk_fw_image *imgs = NULL;
	bk_fw_bundle *b = NULL;
	int rc = 0, nmodels = cli_values(ctx, "model", &models);
	if (out == NULL || key == NULL || version == NULL || nmodels == 0 ||
	    cli_value(ctx, "security-counter") == NULL || cli_value(ctx, "schema") == NULL)
		return cli_error(ctx, BK_EUSER, "usage",
		                 "firmware pack needs --key, --model, --version, --security-counter, "
		                 "--schema and -o");
	if ((rc = parse_u64(ctx, "security-counter", cli_value(ctx, "security-counter"), &counter)))
		return rc;
	if (counter > UINT32_MAX)
		return cli_error(ctx, BK_EUSER, "bad-option-value",
		                 "--security-counter is at most %" PRIu32, UINT32_MAX);
	if ((rc = parse_range(ctx, "schema", cli_value(ctx, "schema"), smin, smax, sizeof(smin))) ||
	    (rc = parse_u64(ctx, "schema", smin, &s0)) || (rc = parse_u64(ctx, "schema", smax, &s1)))
		return rc;
	if (cli_value(ctx, "hw-rev") &&
	    (rc = parse_range(ctx, "hw-rev", cli_value(ctx, "hw-rev"), hmin, hmax, sizeof(hmin))))
		return rc;
	const char *models_z[CLI_MAX_VALUES + 1];
	for (int i = 0; i < nmodels; i++)
		models_z[i] = models[i];
	models_z[nmodels] = NULL;
	imgs = calloc((size_t)ctx->argc, sizeof(*imgs));
	if (imgs == NULL)
		return BK_ENOMEM;
	/* IMAGE or NAME=IMAGE or SLOT:NAME=IMAGE; the default slot is the
	 * file's name without its extension. */
	char (*names)[2][80] = calloc((size_t)ctx->argc, sizeof(*names));
	if (names == NULL) {
		free(imgs);
		return BK_ENOMEM;
	}
	for (int i = 0; i < ctx->argc; i++) {
		const char *arg = ctx->argv[i], *eq = strchr(arg, '=');
		const char *path = eq ? eq + 1 : arg;
		const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
		if (eq)
			snprintf(names[i][0], sizeof(names[i][0]), "%.*s", (int)(eq - arg), arg);
		else
			snprintf(names[i][0], sizeof(names[i][0]), "%s", base);
		snprintf(names[i][1], sizeof(names[i][1]), "%s", names[i][0]);
		names[i][1][strcspn(names[i][1], ".")] = '\0';
		for (char *c = names[i][1]; *c; c++)
			if (*c >= 'A' && *c <= 'Z')
				*c = (char)(*c - 'A' + 'a');
		imgs[i].name = names[i][0];
		imgs[i].path = path;
		imgs[i].slot = names[i][1];
	}
	bk_fw_pack_opts o = BK_FW_PACK_OPTS_INIT;
	o.models = models_z;
	o.hw_rev_min = hmin;
	o.hw_rev_max = hmax;
	o.fw_version = version;
	o.security_counter = (uint32_t)counter;
	o.schema_min = (int64_t)s0;
	o.schema_max = (int64_t)s1;
	o.images = imgs;
	o.image_count = (size_t)ctx->argc;
	o.secret_key = key;
	o.progress = cli_progress_cb;
	o.progress_payload = ctx;
	if (cli_value(ctx, "passphrase-file") || getenv("AIBO_RESTORE_PASSPHRASE")) {
		rc = cli_passphrase(ctx, pass, sizeof(pass) - 1, &passlen, "key passphrase", false);
		if (rc == 0) {
			pass[passlen] = '\0';
			o.password = pass;
		}
	}
	if (rc == 0)
		rc = bk_fw_bundle_pack(out, &o);
	explicit_bzero(pass, sizeof(pass));
	if (rc == 0)
		rc = bk_fw_bundle_open(&b, out);
	if (rc == 0) {
		json_t *j = bundle_json(b);
		set_all(ctx, j);
		json_decref(j);
		cli_print(ctx, "%s: firmware %s for %d model(s), %" PRIu64 " payload bytes\n", out,
		          version, nmodels, bk_fw_bundle_payload_bytes(b));
	}
	bk_fw_bundle_free(b);
	free(names);
	free(imgs);
	return rc;
}

/* --- inspect and verify --------------------------------------------------------- */

static int run_inspect(cli_ctx *ctx)
{
	bk_fw_bundle *b = NULL;
	trust t;
	int rc = bk_fw_bundle_open(&b, ctx->argv[0]);
	if (rc)
		return rc;
	json_t *j = bundle_json(b);
	set_all(ctx, j);
	json_decref(j);
	print_bundle(ctx, b);
	/* The signature, when keys are configured (a bad one is reported, not fatal). */
	rc = trust_load(ctx, &t, false);
	if (rc == 0 && t.keys) {
		bk_fw_verify_opts vo = BK_FW_VERIFY_OPTS_INIT;
		vo.trusted_keys = t.keys;
		vo.revoked_key_ids = t.revoked;
		vo.skip_payloads = 1;
		int v = bk_fw_bundle_verify(b, &vo);
		const char *status = v == 0 ? "valid" : bk_error_last()->reason;
		cli_set(ctx, "signature",
		        json_pack("{s:s, s:s?}", "status", status, "key_id", bk_fw_bundle_key_id(b)));
		cli_print(ctx, "signature:         %s%s%s\n", status, v == 0 ? ", key " : "",
		          v == 0 ? bk_fw_bundle_key_id(b) : "");
	} else if (rc == 0) {
		cli_set(ctx, "signature", json_pack("{s:s}", "status", "unchecked"));
		cli_print(ctx, "signature:         unchecked (no trust.firmware_keys)\n");
	}
	trust_clear(&t);
	bk_fw_bundle_free(b);
	return rc;
}

static int unit_of(cli_ctx *ctx, const char *arg, bk_device **dev, bk_device_info **info)
{
	const char *uri = NULL;
	int rc = cli_device_resolve(ctx, arg, &uri);
	if (rc == 0)
		rc = cli_device_open(ctx, uri, dev);
	if (rc == 0)
		rc = bk_device_info_get(*dev, info, 0);
	return rc;
}

static int run_verify(cli_ctx *ctx)
{
	bk_fw_bundle *b = NULL;
	bk_device *dev = NULL;
	bk_device_info *info = NULL;
	bk_fw_unit unit = BK_FW_UNIT_INIT;
	trust t;
	int rc = trust_load(ctx, &t, true);
	if (rc == 0)
		rc = bk_fw_bundle_open(&b, ctx->argv[0]);
	if (rc == 0 && cli_value(ctx, "for"))
		rc = unit_of(ctx, cli_value(ctx, "for"), &dev, &info);
	if (rc == 0) {
		bk_fw_verify_opts vo = BK_FW_VERIFY_OPTS_INIT;
		vo.trusted_keys = t.keys;
		vo.revoked_key_ids = t.revoked;
		vo.progress = cli_progress_cb;
		vo.progress_payload = ctx;
		if (info) {
			unit.model = info->model;
			unit.hw_rev = info->hw_revision;
			unit.security_counter = (uint32_t)info->security_counter;
			unit.schema = (int64_t)info->memory_schema;
			vo.unit = &unit;
			cli_set(ctx, "unit", json_pack("{s:s, s:s, s:s, s:I, s:I}", "serial",
			                               info->serial, "model", info->model, "hw_revision",
			                               info->hw_revision, "security_counter",
			                               (json_int_t)info->security_counter,
			                               "memory_schema",
			                               (json_int_t)info->memory_schema));
		}
		rc = bk_fw_bundle_verify(b, &vo);
		cli_set(ctx, "file", json_string(ctx->argv[0]));
		cli_set(ctx, "fw_version", json_string(bk_fw_bundle_version(b)));
		cli_set(ctx, "ok", json_boolean(rc == 0));
		if (bk_fw_bundle_key_id(b))
			cli_set(ctx, "key_id", json_string(bk_fw_bundle_key_id(b)));
		if (rc == 0)
			cli_print(ctx, "%s: OK (firmware %s, signed by key %s%s%s)\n", ctx->argv[0],
			          bk_fw_bundle_version(b), bk_fw_bundle_key_id(b),
			          info ? ", fits unit " : "", info ? info->serial : "");
	}
	bk_device_info_free(info);
	bk_device_free(dev);
	bk_fw_bundle_free(b);
	trust_clear(&t);
	return rc;
}

/* --- list ------------------------------------------------------------------------------ */

static int run_list(cli_ctx *ctx)
{
	bk_fw_entry *list = NULL;
	size_t n = 0;
	uint64_t min_schema = 0;
	trust t;
	int rc = trust_load(ctx, &t, false);
	bk_fw_list_opts lo = BK_FW_LIST_OPTS_INIT;
	lo.model = cli_value(ctx, "model");
	lo.trusted_keys = t.keys;
	lo.revoked_key_ids = t.revoked;
	if (rc == 0 && cli_value(ctx, "min-schema")) {
		rc = parse_u64(ctx, "min-schema", cli_value(ctx, "min-schema"), &min_schema);
		lo.min_schema = (int64_t)min_schema;
	}
	if (rc == 0)
		rc = bk_fw_list(&list, &n, ctx->argv[0], &lo);
	if (rc == 0) {
		json_t *arr = json_array();
		for (size_t i = 0; i < n; i++) {
			const bk_fw_entry *e = &list[i];
			json_t *o = json_pack("{s:s, s:b}", "file", e->path, "valid", e->status == 0);
			if (e->version) {
				json_object_set_new(o, "fw_version", json_string(e->version));
				json_object_set_new(o, "models", json_string(e->models));
				json_object_set_new(o, "security_counter",
				                    json_integer((json_int_t)e->security_counter));
				json_object_set_new(o, "schema",
				                    json_pack("{s:I, s:I}", "min",
				                              (json_int_t)e->schema_min, "max",
				                              (json_int_t)e->schema_max));
				json_object_set_new(o, "payload_bytes",
				                    json_integer((json_int_t)e->payload_bytes));
				if (e->created)
					json_object_set_new(o, "created", json_string(e->created));
			}
			if (e->key_id)
				json_object_set_new(o, "key_id", json_string(e->key_id));
			if (e->status)
				json_object_set_new(o, "error",
				                    json_pack("{s:s, s:s?}", "reason",
				                              e->reason ? e->reason : "error", "message",
				                              e->message));
			json_array_append_new(arr, o);
			if (e->version)
				cli_print(ctx, "%-10s counter %-4" PRIu32 " schemas %" PRId64 "-%" PRId64
				               "  %-20s %s%s%s\n",
				          e->version, e->security_counter, e->schema_min, e->schema_max,
				          e->models, e->path, e->status ? "  INVALID: " : "",
				          e->status && e->reason ? e->reason : "");
			else
				cli_print(ctx, "%-10s %s  unreadable: %s\n", "-", e->path,
				          e->message ? e->message : "");
		}
		cli_set(ctx, "bundles", arr);
	}
	bk_fw_list_free(list, n);
	trust_clear(&t);
	return rc;
}

/* --- flash ------------------------------------------------------------------------------ */

static bool confirmed(cli_ctx *ctx, const char *serial, const char *version)
{
	char line[32];
	fprintf(stderr, "Flash firmware %s onto unit %s? The unit reboots. [y/N] ", version,
	        serial);
	fflush(stderr);
	if (fgets(line, sizeof(line), stdin) == NULL)
		return false;
	(void)ctx;
	return line[0] == 'y' || line[0] == 'Y';
}

static int run_flash(cli_ctx *ctx)
{
	bk_config *cfg;
	bk_fw_bundle *b = NULL;
	bk_device *dev = NULL;
	const char *uri = NULL;
	uint64_t min_battery = 30;
	bk_fw_flash_result res;
	trust t;
	int rc = trust_load(ctx, &t, true);
	memset(&res, 0, sizeof(res));
	if (rc == 0)
		rc = cli_config(ctx, &cfg);
	if (rc == 0 && bk_config_get(cfg, "firmware.min_battery"))
		rc = bk_config_get_u64(cfg, "firmware.min_battery", &min_battery);
	if (rc)
		goto done;
	if (!cli_flag(ctx, "yes") && !(isatty(0) && isatty(2))) {
		rc = cli_error(ctx, BK_EUSER, "confirmation-needed",
		               "firmware flash reboots the unit: confirm with --yes (no terminal to "
		               "ask on)");
		goto done;
	}
	rc = bk_fw_bundle_open(&b, ctx->argv[1]);
	if (rc == 0)
		rc = cli_device_resolve(ctx, ctx->argv[0], &uri);
	if (rc == 0)
		rc = cli_device_open(ctx, uri, &dev);
	if (rc)
		goto done;
	if (!cli_flag(ctx, "yes") &&
	    !confirmed(ctx, bk_device_serial(dev), bk_fw_bundle_version(b))) {
		rc = cli_error(ctx, BK_ECANCELLED, "not-confirmed", "firmware flash not confirmed");
		goto done;
	}
	bk_fw_flash_opts o = BK_FW_FLASH_OPTS_INIT;
	o.trusted_keys = t.keys;
	o.revoked_key_ids = t.revoked;
	o.min_battery = min_battery > 100 ? 100 : (int)min_battery;
	o.progress = cli_progress_cb;
	o.progress_payload = ctx;
	o.result = &res;
	if (cli_value(ctx, "boot-timeout")) {
		uint64_t s = 0;
		rc = parse_u64(ctx, "boot-timeout", cli_value(ctx, "boot-timeout"), &s);
		if (rc)
			goto done;
		o.boot_timeout_ms = (int64_t)(s > 86400 ? 86400 : s) * 1000;
	}
	rc = bk_fw_flash(dev, b, &o);
	cli_set(ctx, "serial", json_string(bk_device_serial(dev)));
	cli_set(ctx, "fw_version", json_string(bk_fw_bundle_version(b)));
	cli_set(ctx, "slot", json_string(res.slot));
	cli_set(ctx, "previous_slot", json_string(res.previous_slot));
	cli_set(ctx, "running_slot", json_string(res.running_slot));
	cli_set(ctx, "boot_result", json_string(res.boot_result));
	cli_set(ctx, "bytes", json_integer((json_int_t)res.bytes));
	cli_set(ctx, "sent", json_integer((json_int_t)res.sent));
	cli_set(ctx, "resumed_from", json_integer((json_int_t)res.resumed_from));
	cli_set(ctx, "resumes", json_integer((json_int_t)res.resumes));
	cli_set(ctx, "security_counter", json_integer((json_int_t)res.security_counter));
	cli_set(ctx, "rolled_back", json_boolean(rc == BK_EROLLBACK));
	if (rc == 0)
		cli_print(ctx, "%s: firmware %s installed in slot %s and running (was slot %s)\n",
		          bk_device_serial(dev), bk_fw_bundle_version(b), res.slot,
		          res.previous_slot);
done:
	bk_device_free(dev);
	bk_fw_bundle_free(b);
	trust_clear(&t);
	return rc;
}

/* --- The table entries ---------------------------------------------------------------- */

static const cli_opt pack_opts[] = {
    {"key", 0, "SECKEY", "minisign secret key file to sign with"},
    {"model", 0, "MODEL", "a model the firmware is for (repeat for several)"},
    {"version", 0, "VERSION", "firmware version (semantic version)"},
    {"security-counter", 0, "N", "anti-rollback security counter"},
    {"schema", 0, "MIN:MAX", "memory schema versions the firmware holds"},
    {"hw-rev", 0, "MIN:MAX", "hardware revisions covered (default: 0:999999, any)"},
    {"output", 'o', "FILE", "the bundle to write (*.aifw)"},
    {"passphrase-file", 0, "FILE", "passphrase of a protected secret key"},
    {0},
};

static const cli_opt no_opts[] = {{0}};

static const cli_opt verify_opts[] = {
    {"for", 0, "DEVICE", "also check the bundle fits this unit"},
    {0},
};

static const cli_opt list_opts[] = {
    {"model", 0, "MODEL", "only bundles for this model"},
    {"min-schema", 0, "N", "only bundles holding at least this memory schema"},
    {0},
};

static const cli_opt flash_opts[] = {
    {"yes", 'y', NULL, "do not ask for confirmation (required without a terminal)"},
    {"boot-timeout", 0, "SECONDS", "how long the unit may take to come back (default 120)"},
    {0},
};

const cli_command cmd_firmware_pack = {
    .name = "firmware pack",
    .args = "IMAGE...",
    .summary = "write a signed firmware bundle from payload images",
    .opts = pack_opts,
    .min_args = 1,
    .max_args = -1,
    .run = run_pack,
};

const cli_command cmd_firmware_inspect = {
    .name = "firmware inspect",
    .args = "BUNDLE",
    .summary = "show a firmware bundle's manifest and signature status",
    .opts = no_opts,
    .min_args = 1,
    .max_args = 1,
    .run = run_inspect,
};

const cli_command cmd_firmware_verify = {
    .name = "firmware verify",
    .args = "BUNDLE",
    .summary = "verify a firmware bundle's signature and payloads (and fit, with --for)",
    .opts = verify_opts,
    .min_args = 1,
    .max_args = 1,
    .run = run_verify,
};

const cli_command cmd_firmware_list = {
    .name = "firmware list",
    .args = "DIR",
    .summary = "list the firmware bundles of a folder",
    .opts = list_opts,
    .min_args = 1,
    .max_args = 1,
    .run = run_list,
};

const cli_command cmd_firmware_flash = {
    .name = "firmware flash",
    .args = "DEVICE BUNDLE",
    .summary = "install a firmware bundle in a unit's inactive slot and boot it",
    .opts = flash_opts,
    .min_args = 2,
    .max_args = 2,
    .run = run_flash,
};
