/* bk-age-tool: a small driver over the age module for the interoperability
 * test and the benchmark (the real commands live in the CLI).
 *
 *   bk-age-tool keygen -o FILE             write an identity file, print its recipient
 *   bk-age-tool recipients FILE            print the recipients of an identity file
 *   bk-age-tool encrypt (-r AGE1... | -p) [-w LOG2N] [-a] [-o OUT] [IN]
 *   bk-age-tool decrypt [-i FILE]... [-p] [-o OUT] [IN]
 *   bk-age-tool rewrap -i FILE... (-r AGE1... | -p) [-a] [-o OUT] [IN]
 *   bk-age-tool header-len [IN]
 *
 * Passphrases (-p, and for passphrase-protected identity files) come from
 * the BK_AGE_PASSPHRASE environment variable. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libbackup/libbackup.h>

#include "crypto/age.h"

#define MAX_ITEMS 32

static int fail(int rc)
{
	const bk_error *e = bk_error_last();
	fprintf(stderr, "bk-age-tool: %s: %s\n", e->reason ? e->reason : "error",
	        e->message ? e->message : "failed");
	return rc ? 1 : 0;
}

static int usage(void)
{
	fprintf(stderr,
	        "usage: bk-age-tool keygen|recipients|encrypt|decrypt|rewrap|header-len ...\n");
	return 2;
}

static int env_pass(bk_secret **out, const char *prompt, void *payload)
{
	(void)prompt;
	(void)payload;
	const char *p = getenv("BK_AGE_PASSPHRASE");
	if (p == NULL)
		return bk__error_set(BK_EAUTH, "passphrase-required",
		                     "BK_AGE_PASSPHRASE is not set");
	return bk_secret_from(out, p, strlen(p));
}

static int open_in(bk_stream **s, const char *path)
{
	if (path == NULL || strcmp(path, "-") == 0)
		return bk_stream_fd_new(s, 0, 0);
	return bk_stream_file_open(s, path);
}

static int open_out(bk_stream **s, const char *path)
{
	if (path == NULL || strcmp(path, "-") == 0)
		return bk_stream_fd_new(s, 1, 0);
	return bk_stream_atomic_new(s, path, 0644, 0);
}

typedef struct args {
	const char *out, *in;
	const char *recips[MAX_ITEMS];
	size_t nrecips;
	const char *idfiles[MAX_ITEMS];
	size_t nids;
	int pass, armor, log2n;
} args;

static int parse_args(args *a, int argc, char **argv)
{
	memset(a, 0, sizeof(*a));
	for (int i = 0; i < argc; i++) {
		const char *s = argv[i];
		if (strcmp(s, "-o") == 0 && i + 1 < argc)
			a->out = argv[++i];
		else if (strcmp(s, "-r") == 0 && i + 1 < argc && a->nrecips < MAX_ITEMS)
			a->recips[a->nrecips++] = argv[++i];
		else if (strcmp(s, "-i") == 0 && i + 1 < argc && a->nids < MAX_ITEMS)
			a->idfiles[a->nids++] = argv[++i];
		else if (strcmp(s, "-w") == 0 && i + 1 < argc)
			a->log2n = atoi(argv[++i]);
		else if (strcmp(s, "-p") == 0)
			a->pass = 1;
		else if (strcmp(s, "-a") == 0)
			a->armor = 1;
		else if (s[0] == '-' && s[1] != '\0')
			return -1;
		else if (a->in == NULL)
			a->in = s;
		else
			return -1;
	}
	return 0;
}

/* The encryption options from -r/-p; `recips` must hold MAX_ITEMS. */
static int to_opts(bk_age_encrypt_opts *o, bk_age_recipient *recips, const args *a)
{
	*o = (bk_age_encrypt_opts)BK_AGE_ENCRYPT_OPTS_INIT;
	o->armor = a->armor;
	o->scrypt_log2_n = a->log2n;
	if (a->pass) {
		const char *p = getenv("BK_AGE_PASSPHRASE");
		if (p == NULL)
			return bk__error_set(BK_EUSER, "passphrase-required",
			                     "BK_AGE_PASSPHRASE is not set");
		o->passphrase = p;
		o->passphrase_len = strlen(p);
		return 0;
	}
	for (size_t i = 0; i < a->nrecips; i++) {
		int rc = bk_age_recipient_parse(&recips[i], a->recips[i]);
		if (rc)
			return rc;
	}
	o->recipients = recips;
	o->recipient_count = a->nrecips;
	return 0;
}

static int load_ids(bk_age_identities **ids, const args *a)
{
	int rc = bk_age_identities_new(ids);
	for (size_t i = 0; rc == 0 && i < a->nids; i++)
		rc = bk_age_identities_load(*ids, a->idfiles[i], 0, env_pass, NULL);
	if (rc == 0 && a->pass) {
		const char *p = getenv("BK_AGE_PASSPHRASE");
		rc = p ? bk_age_identities_add_passphrase(*ids, p, strlen(p))
		       : bk__error_set(BK_EUSER, "passphrase-required",
		                       "BK_AGE_PASSPHRASE is not set");
	}
	return rc;
}

static int cmd_keygen(const args *a)
{
	bk_age_identity *id = NULL;
	bk_secret *text = NULL;
	bk_age_recipient r;
	char rs[BK_AGE_RECIPIENT_STR_SIZE];
	int rc = bk_age_identity_generate(&id);
	if (rc == 0)
		rc = bk_age_identity_file_format(&text, id, (int64_t)time(NULL));
	if (rc == 0) {
		const char *t = (const char *)bk_secret_data(text);
		if (a->out)
			rc = bk_file_write_atomic(a->out, t, strlen(t), 0600, 1);
		else
			fputs(t, stdout);
	}
	if (rc == 0) {
		bk_age_identity_recipient(&r, id);
		bk_age_recipient_format(rs, &r);
		if (a->out)
			printf("%s\n", rs);
	}
	bk_secret_free(text);
	bk_age_identity_free(id);
	return rc;
}

static int cmd_recipients(const args *a)
{
	bk_age_identities *ids = NULL;
	args b = *a;
	b.idfiles[0] = a->in;
	b.nids = a->in ? 1 : 0;
	int rc = load_ids(&ids, &b);
	for (size_t i = 0; rc == 0 && i < bk_age_identities_count(ids); i++) {
		const bk_age_identity *id;
		if (bk_age_identities_get(ids, i, &id) == 0) {
			bk_age_recipient r;
			char rs[BK_AGE_RECIPIENT_STR_SIZE];
			bk_age_identity_recipient(&r, id);
			bk_age_recipient_format(rs, &r);
			printf("%s\n", rs);
		}
	}
	bk_age_identities_free(ids);
	return rc;
}

static int cmd_encrypt(const args *a)
{
	bk_age_recipient recips[MAX_ITEMS];
	bk_age_encrypt_opts o;
	bk_stream *in = NULL, *out = NULL, *enc = NULL;
	int rc = to_opts(&o, recips, a);
	if (rc == 0)
		rc = open_in(&in, a->in);
	if (rc == 0)
		rc = open_out(&out, a->out);
	if (rc == 0)
		rc = bk_age_encrypt_new(&enc, out, 1, &o);
	if (rc == 0) {
		out = NULL;
		rc = bk_stream_copy(enc, in, NULL, BK_DEADLINE_NONE);
	}
	if (rc == 0) {
		rc = bk_stream_close(enc, BK_DEADLINE_NONE);
		enc = NULL;
	}
	bk_stream_free(enc);
	bk_stream_free(out);
	bk_stream_free(in);
	return rc;
}

static int cmd_decrypt(const args *a)
{
	bk_age_identities *ids = NULL;
	bk_stream *in = NULL, *out = NULL, *dec = NULL;
	int rc = load_ids(&ids, a);
	if (rc == 0)
		rc = open_in(&in, a->in);
	if (rc == 0)
		rc = bk_age_decrypt_new(&dec, in, 1, ids, NULL, BK_DEADLINE_NONE);
	if (rc == 0) {
		in = NULL;
		rc = open_out(&out, a->out);
	}
	if (rc == 0)
		rc = bk_stream_copy(out, dec, NULL, BK_DEADLINE_NONE);
	if (rc == 0) {
		rc = bk_stream_close(out, BK_DEADLINE_NONE);
		out = NULL;
	}
	bk_stream_free(out);
	bk_stream_free(dec);
	bk_stream_free(in);
	bk_age_identities_free(ids);
	return rc;
}

static int cmd_rewrap(const args *a)
{
	bk_age_recipient recips[MAX_ITEMS];
	bk_age_encrypt_opts o;
	bk_age_identities *ids = NULL;
	bk_stream *in = NULL, *out = NULL;
	uint64_t old_len = 0, new_len = 0;
	args b = *a;
	b.pass = 0;
	int rc = load_ids(&ids, &b);
	if (rc == 0)
		rc = to_opts(&o, recips, a);
	if (rc == 0)
		rc = open_in(&in, a->in);
	if (rc == 0)
		rc = open_out(&out, a->out);
	if (rc == 0)
		rc = bk_age_rewrap(out, in, ids, &o, &old_len, &new_len, BK_DEADLINE_NONE);
	if (rc == 0) {
		rc = bk_stream_close(out, BK_DEADLINE_NONE);
		out = NULL;
	}
	if (rc == 0)
		fprintf(stderr, "header %llu -> %llu bytes\n", (unsigned long long)old_len,
		        (unsigned long long)new_len);
	bk_stream_free(out);
	bk_stream_free(in);
	bk_age_identities_free(ids);
	return rc;
}

static int cmd_header_len(const args *a)
{
	bk_stream *in = NULL;
	uint8_t *hdr = NULL;
	size_t len = 0;
	int rc = open_in(&in, a->in);
	if (rc == 0)
		rc = bk_age_header_read(&hdr, &len, in, NULL, BK_DEADLINE_NONE);
	if (rc == 0)
		printf("%zu\n", len);
	bk__free(hdr);
	bk_stream_free(in);
	return rc;
}

int main(int argc, char **argv)
{
	args a;
	int rc;
	if (argc < 2 || parse_args(&a, argc - 2, argv + 2) != 0)
		return usage();
	if (bk_init() != 0)
		return fail(1);
	const char *cmd = argv[1];
	if (strcmp(cmd, "keygen") == 0)
		rc = cmd_keygen(&a);
	else if (strcmp(cmd, "recipients") == 0)
		rc = cmd_recipients(&a);
	else if (strcmp(cmd, "encrypt") == 0)
		rc = cmd_encrypt(&a);
	else if (strcmp(cmd, "decrypt") == 0)
		rc = cmd_decrypt(&a);
	else if (strcmp(cmd, "rewrap") == 0)
		rc = cmd_rewrap(&a);
	else if (strcmp(cmd, "header-len") == 0)
		rc = cmd_header_len(&a);
	else {
		bk_shutdown();
		return usage();
	}
	int status = rc ? fail(rc) : 0;
	bk_shutdown();
	return status;
}
