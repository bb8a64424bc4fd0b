/* aibo-restore info DEVICE: everything a unit reports about itself. */
#include <stdlib.h>
#include <string.h>

#include <libbackup/device.h>

#include "cli.h"

static void print_text(cli_ctx *ctx, const char *uri, const bk_device_info *in)
{
	char nb[32], na[32];
	cli_print(ctx, "device:            %s\n", uri);
	cli_print(ctx, "serial:            %s\n", in->serial);
	cli_print(ctx, "model:             %s (hardware revision %s)\n", in->model,
	          in->hw_revision);
	cli_print(ctx, "state:             %s\n", in->state);
	cli_print(ctx, "battery:           %d%%\n", in->battery);
	json_t *root = json_loads(in->json, 0, NULL);
	json_t *cert = json_object_get(root, "certificate");
	snprintf(nb, sizeof(nb), "%s", json_string_value(json_object_get(cert, "not_before")));
	snprintf(na, sizeof(na), "%s", json_string_value(json_object_get(cert, "not_after")));
	json_decref(root);
	cli_print(ctx, "certificate:       %s (factory CA %s, %s to %s)\n", in->cert_status,
	          in->cert_issuer, nb, na);
	cli_print(ctx, "  fingerprint:     %s\n", in->cert_fingerprint);
	cli_print(ctx, "  age recipient:   %s\n", in->age_recipient);
	cli_print(ctx, "firmware:          %s (security counter %llu, memory schemas %llu-%llu)\n",
	          in->firmware_version, (unsigned long long)in->security_counter,
	          (unsigned long long)in->schema_min, (unsigned long long)in->schema_max);
	cli_print(ctx, "memory schema:     %llu\n", (unsigned long long)in->memory_schema);
	cli_print(ctx, "slots:\n");
	for (size_t i = 0; i < in->slot_count; i++) {
		const bk_device_slot *s = &in->slots[i];
		cli_print(ctx, "  %-2s %-9s %-12s counter %-4llu schemas %llu-%llu%s\n", s->name,
		          s->state, s->version[0] ? s->version : "-",
		          (unsigned long long)s->security_counter,
		          (unsigned long long)s->schema_min, (unsigned long long)s->schema_max,
		          s->running ? "  (running)" : "");
	}
	cli_print(ctx, "domains:\n");
	for (size_t i = 0; i < in->domain_count; i++) {
		const bk_device_domain *d = &in->domains[i];
		cli_print(ctx, "  %-12s %8llu items %12llu bytes  %s\n", d->name,
		          (unsigned long long)d->items, (unsigned long long)d->bytes, d->digest);
	}
}

static int run(cli_ctx *ctx)
{
	bk_device *dev = NULL;
	bk_device_info *info = NULL;
	const char *uri = NULL;
	int rc = cli_device_resolve(ctx, ctx->argv[0], &uri);
	if (rc == 0)
		rc = cli_device_open(ctx, uri, &dev);
	if (rc == 0)
		rc = bk_device_info_get(dev, &info, 0);
	if (rc == 0) {
		json_t *root = json_loads(info->json, 0, NULL);
		const char *k;
		json_t *v;
		cli_set(ctx, "uri", json_string(bk_device_get_uri(dev)));
		json_object_foreach(root, k, v)
		{
			cli_set(ctx, k, json_incref(v));
		}
		json_decref(root);
		print_text(ctx, bk_device_get_uri(dev), info);
	}
	bk_device_info_free(info);
	bk_device_free(dev);
	return rc;
}

static const cli_opt opts[] = {{0}};

const cli_command cmd_info = {
    .name = "info",
    .args = "DEVICE",
    .summary = "show a unit's identity, certificate, firmware slots, memory and battery",
    .opts = opts,
    .min_args = 1,
    .max_args = 1,
    .run = run,
};
