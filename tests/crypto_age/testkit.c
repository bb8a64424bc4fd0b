/* The C2SP CCTV age testkit: every vector decrypted with its identities and
 * passphrases, classified as its `expect` line says, and the SHA-256 of all
 * plaintext released compared with its `payload` line. Vectors needing the
 * ML-KEM hybrid recipient (not in libsodium 1.0.18) are reported skipped. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <zlib.h>

#include <libbackup/libbackup.h>

#include "crypto/age.h"

typedef struct vec {
	char expect[32];
	char payload[65];
	int armored;
	int compressed;
	bk_age_identities *ids;
	int bad_identity;
	uint8_t *body;
	size_t body_len;
} vec;

static int inflate_all(const uint8_t *in, size_t in_len, uint8_t **out, size_t *out_len)
{
	z_stream z;
	size_t cap = in_len * 4 + 1024, len = 0;
	uint8_t *buf = malloc(cap);
	int zrc;
	memset(&z, 0, sizeof(z));
	if (buf == NULL || inflateInit(&z) != Z_OK) {
		free(buf);
		return -1;
	}
	z.next_in = (uint8_t *)in;
	z.avail_in = (uInt)in_len;
	do {
		if (len == cap) {
			cap *= 2;
			uint8_t *n = realloc(buf, cap);
			if (n == NULL)
				break;
			buf = n;
		}
		z.next_out = buf + len;
		z.avail_out = (uInt)(cap - len);
		zrc = inflate(&z, Z_NO_FLUSH);
		len = cap - z.avail_out;
	} while (zrc == Z_OK);
	inflateEnd(&z);
	if (zrc != Z_STREAM_END) {
		free(buf);
		return -1;
	}
	*out = buf;
	*out_len = len;
	return 0;
}

static int load_vector(const char *path, vec *v)
{
	FILE *f = fopen(path, "rb");
	uint8_t *data = NULL;
	size_t len = 0, cap = 0, n;
	if (f == NULL)
		return -1;
	for (;;) {
		if (len == cap) {
			cap = cap ? cap * 2 : 65536;
			uint8_t *nd = realloc(data, cap);
			if (nd == NULL)
				break;
			data = nd;
		}
		n = fread(data + len, 1, cap - len, f);
		if (n == 0)
			break;
		len += n;
	}
	fclose(f);
	memset(v, 0, sizeof(*v));
	if (bk_age_identities_new(&v->ids) != 0) {
		free(data);
		return -1;
	}
	size_t pos = 0;
	while (pos < len) {
		uint8_t *nl = memchr(data + pos, '\n', len - pos);
		if (nl == NULL)
			break;
		size_t ll = (size_t)(nl - (data + pos));
		char line[512];
		if (ll == 0) {
			pos++;
			break;
		}
		snprintf(line, sizeof(line), "%.*s", (int)ll, (const char *)data + pos);
		pos += ll + 1;
		char *val = strstr(line, ": ");
		if (val == NULL)
			continue;
		*val = '\0';
		val += 2;
		if (strcmp(line, "expect") == 0)
			snprintf(v->expect, sizeof(v->expect), "%s", val);
		else if (strcmp(line, "payload") == 0)
			snprintf(v->payload, sizeof(v->payload), "%s", val);
		else if (strcmp(line, "armored") == 0)
			v->armored = strcmp(val, "yes") == 0;
		else if (strcmp(line, "compressed") == 0)
			v->compressed = strcmp(val, "zlib") == 0;
		else if (strcmp(line, "passphrase") == 0)
			bk_age_identities_add_passphrase(v->ids, val, strlen(val));
		else if (strcmp(line, "identity") == 0) {
			bk_age_identity *id = NULL;
			if (bk_age_identity_parse(&id, val, strlen(val)) == 0)
				bk_age_identities_add(v->ids, id);
			else
				v->bad_identity = 1;
			bk_age_identity_free(id);
		}
	}
	if (v->compressed) {
		if (inflate_all(data + pos, len - pos, &v->body, &v->body_len) != 0) {
			free(data);
			return -1;
		}
		free(data);
	} else {
		v->body = malloc(len - pos + 1);
		if (v->body)
			memcpy(v->body, data + pos, len - pos);
		v->body_len = len - pos;
		free(data);
	}
	return v->body ? 0 : -1;
}

static const char *classify(int rc, const char *reason)
{
	if (rc == 0)
		return "success";
	if (reason == NULL)
		return "other";
	if (strcmp(reason, "no-identity-matched") == 0)
		return "no match";
	if (strcmp(reason, "header-mac") == 0)
		return "HMAC failure";
	if (strcmp(reason, "header-malformed") == 0)
		return "header failure";
	if (strcmp(reason, "payload-corrupt") == 0 || strcmp(reason, "payload-truncated") == 0)
		return "payload failure";
	if (strcmp(reason, "armor-malformed") == 0)
		return "armor failure";
	return reason;
}

/* Decrypts, hashing every plaintext byte released. */
static int run_vector(const vec *v, char hash_hex[65], const char **reason, char *msg,
                      size_t msg_size)
{
	bk_stream *mem = NULL, *dec = NULL;
	bk_age_decrypt_opts opts = BK_AGE_DECRYPT_OPTS_INIT;
	crypto_hash_sha256_state sha;
	uint8_t hash[32], buf[7000];
	int rc;
	crypto_hash_sha256_init(&sha);
	opts.armor = v->armored ? BK_AGE_ARMOR_YES : BK_AGE_ARMOR_AUTO;
	rc = bk_stream_mem_reader(&mem, v->body, v->body_len);
	if (rc == 0) {
		rc = bk_age_decrypt_new(&dec, mem, 1, v->ids, &opts, BK_DEADLINE_NONE);
		if (rc == 0)
			mem = NULL;
	}
	while (rc == 0) {
		size_t n = 0;
		rc = bk_stream_read(dec, buf, sizeof(buf), &n, BK_DEADLINE_NONE);
		if (rc || n == 0)
			break;
		crypto_hash_sha256_update(&sha, buf, n);
	}
	*reason = rc ? bk_error_last()->reason : NULL;
	snprintf(msg, msg_size, "%s", rc ? bk_error_last()->message : "");
	crypto_hash_sha256_final(&sha, hash);
	for (int i = 0; i < 32; i++)
		snprintf(hash_hex + 2 * i, 3, "%02x", hash[i]);
	bk_stream_free(dec);
	bk_stream_free(mem);
	return rc;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
	char dir[4096];
	const char *src = getenv("BK_TEST_SOURCE_DIR");
	char *names[512];
	size_t count = 0;
	int passed = 0, failed = 0, skipped = 0;
	if (argc > 1)
		snprintf(dir, sizeof(dir), "%s", argv[1]);
	else
		snprintf(dir, sizeof(dir), "%s/tests/vectors/age", src ? src : ".");
	if (bk_init() != 0 || sodium_init() < 0) {
		printf("0 passed, 1 failed, 0 skipped\n");
		return 1;
	}
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL && count < 512) {
		if (e->d_name[0] == '.' || strcmp(e->d_name, "README.md") == 0)
			continue;
		names[count++] = strdup(e->d_name);
	}
	if (d)
		closedir(d);
	qsort(names, count, sizeof(names[0]), cmp_names);
	if (count == 0) {
		fprintf(stderr, "no vectors in %s\n", dir);
		failed++;
	}
	for (size_t i = 0; i < count; i++) {
		char path[8192], hash[65], msg[1100];
		const char *reason = NULL;
		vec v;
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (strncmp(names[i], "hybrid", 6) == 0 ||
		    strncmp(names[i], "armor_hybrid", 12) == 0) {
			printf("SKIP %s: ML-KEM-768 hybrid recipients are not supported\n",
			       names[i]);
			skipped++;
			free(names[i]);
			continue;
		}
		if (load_vector(path, &v) != 0 || v.expect[0] == '\0' || v.bad_identity) {
			printf("FAIL %s: cannot load the vector\n", names[i]);
			failed++;
			free(names[i]);
			continue;
		}
		int rc = run_vector(&v, hash, &reason, msg, sizeof(msg));
		const char *got = classify(rc, reason);
		int ok = strcmp(got, v.expect) == 0;
		if (ok && v.payload[0] && strcmp(hash, v.payload) != 0) {
			printf("FAIL %s: released plaintext hash %s, expected %s\n", names[i], hash,
			       v.payload);
			ok = 0;
		} else if (!ok) {
			printf("FAIL %s: expected \"%s\", got \"%s\" (%s)\n", names[i], v.expect,
			       got, msg);
		}
		if (ok) {
			printf("ok   %s (%s)\n", names[i], got);
			passed++;
		} else {
			failed++;
		}
		bk_age_identities_free(v.ids);
		free(v.body);
		free(names[i]);
	}
	bk_shutdown();
	printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
	return failed ? 1 : 0;
}
