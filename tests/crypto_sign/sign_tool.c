/* bk-sign-tool: a small driver over crypto/minisign for the interoperability
 * tests against the minisign program.
 *
 *   bk-sign-tool keygen PUBFILE SECFILE
 *   bk-sign-tool sign SECFILE FILE SIGFILE [TRUSTED-COMMENT]
 *   bk-sign-tool sign-legacy SECFILE FILE SIGFILE [TRUSTED-COMMENT]
 *   bk-sign-tool verify PUBFILE FILE SIGFILE
 *
 * A passphrase, when wanted, comes from BK_SIGN_PASSPHRASE; keygen then uses
 * light scrypt limits unless BK_SIGN_KDF=sensitive. verify prints the trusted
 * comment. Exit status: 0 ok, 4 verification failed, 2 usage, 1 other; the
 * error's reason and message go to stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libbackup/libbackup.h>

#include "crypto/minisign.h"
#include "libbackup/util/util.h"

static int fail(int rc)
{
	const bk_error *e = bk_error_last();
	fprintf(stderr, "bk-sign-tool: %s: %s\n", e->reason ? e->reason : "?",
	        e->message ? e->message : "?");
	return rc == BK_EVERIFY ? 4 : 1;
}

static int usage(void)
{
	fprintf(stderr, "usage: bk-sign-tool keygen PUB SEC | sign[-legacy] SEC FILE SIG [TC] | "
	                "verify PUB FILE SIG\n");
	return 2;
}

static int cmd_keygen(const char *pub, const char *sec)
{
	bk_minisign_seckey *sk = NULL;
	bk_minisign_pubkey pk;
	const char *pass = getenv("BK_SIGN_PASSPHRASE");
	const char *kdf = getenv("BK_SIGN_KDF");
	uint64_t ops = 0, mem = 0;
	int rc = bk_minisign_keygen(&sk);
	if (pass && !(kdf && strcmp(kdf, "sensitive") == 0)) {
		ops = 1 << 19;
		mem = 1 << 24;
	}
	if (rc == 0)
		rc = bk_minisign_seckey_write(sec, sk, pass, ops, mem);
	if (rc == 0) {
		bk_minisign_seckey_pubkey(sk, &pk);
		rc = bk_minisign_pubkey_write(pub, &pk);
	}
	bk_minisign_seckey_free(sk);
	return rc ? fail(rc) : 0;
}

static int cmd_sign(const char *sec, const char *file, const char *sigpath, const char *tc,
                    int legacy)
{
	bk_minisign_seckey *sk = NULL;
	char *sig = NULL;
	size_t len = 0;
	uint8_t *data = NULL;
	size_t dlen = 0;
	int rc = bk_minisign_seckey_read(&sk, sec, getenv("BK_SIGN_PASSPHRASE"));
	if (rc)
		goto done;
	if (legacy) {
		rc = bk_file_read(file, (size_t)1 << 30, &data, &dlen);
		if (rc == 0)
			rc = bk_minisign_sign_buf_legacy(&sig, &len, sk, data, dlen, tc, NULL);
	} else {
		rc = bk_minisign_sign_file(&sig, &len, sk, file, tc, NULL);
	}
	if (rc == 0)
		rc = bk_file_write_atomic(sigpath, sig, len, 0644, 0);
done:
	bk__free(data);
	bk__free(sig);
	bk_minisign_seckey_free(sk);
	return rc ? fail(rc) : 0;
}

static int cmd_verify(const char *pub, const char *file, const char *sigpath)
{
	bk_minisign_pubkey pk;
	bk_minisign_sig *sig = NULL;
	int rc = bk_minisign_pubkey_read(&pk, pub);
	if (rc == 0)
		rc = bk_minisign_sig_read(&sig, sigpath);
	if (rc == 0)
		rc = bk_minisign_verify_file(sig, &pk, file);
	if (rc == 0)
		printf("%s\n", bk_minisign_sig_trusted_comment(sig));
	bk_minisign_sig_free(sig);
	return rc ? fail(rc) : 0;
}

int main(int argc, char **argv)
{
	if (bk_init() != 0)
		return 1;
	if (argc == 4 && strcmp(argv[1], "keygen") == 0)
		return cmd_keygen(argv[2], argv[3]);
	if ((argc == 5 || argc == 6) && strcmp(argv[1], "sign") == 0)
		return cmd_sign(argv[2], argv[3], argv[4], argc == 6 ? argv[5] : NULL, 0);
	if ((argc == 5 || argc == 6) && strcmp(argv[1], "sign-legacy") == 0)
		return cmd_sign(argv[2], argv[3], argv[4], argc == 6 ? argv[5] : NULL, 1);
	if (argc == 5 && strcmp(argv[1], "verify") == 0)
		return cmd_verify(argv[2], argv[3], argv[4]);
	return usage();
}
