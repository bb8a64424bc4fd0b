/* IDENTITY_INSTALL, the terminal side (libbackup/device.h): hands a unit the
 * identity bundle a reassignment returned and checks what it answers. */
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include <libbackup/device.h>

#include "crypto/cert.h"
#include "device/device_internal.h"

/* The answer must be an object naming the bundle that was sent: its device
 * id, the unit's serial (also the bundle's subject) and the BLAKE2b-256 of
 * the bundle's canonical bytes. */
static int check_answer(bk_device *dev, const char *reply, const bk_cert *sent)
{
	const char *serial = bk_device_serial(dev);
	json_t *a = json_loads(reply, JSON_REJECT_DUPLICATES, NULL);
	json_t *jd = json_object_get(a, "device_id"), *js = json_object_get(a, "serial"),
	       *jf = json_object_get(a, "fingerprint");
	uint8_t fp[32], got[32];
	const char *what = NULL;
	int rc = 0;
	if (!json_is_object(a))
		what = "not a JSON object";
	else if (!json_is_string(jd) || !json_is_string(js) || !json_is_string(jf))
		what = "device_id, serial or fingerprint missing or not a string";
	else if (strlen(json_string_value(jf)) != 64 ||
	         strspn(json_string_value(jf), "0123456789abcdef") != 64 ||
	         bk_hex_decode(got, sizeof(got), json_string_value(jf)) != 0)
		what = "fingerprint is not 64 lower-case hex digits";
	if (what) {
		rc = bk__error_set(BK_EFORMAT, "bad-answer",
		                   "unit %s: malformed IDENTITY_INSTALL answer: %s",
		                   serial ? serial : "?", what);
		goto done;
	}
	bk_cert_fingerprint(sent, fp);
	if (bk_cert_role_get(sent) != BK_CERT_ROLE_IDENTITY || bk_cert_device_id(sent) == NULL ||
	    bk_cert_serial(sent) == NULL ||
	    strcmp(json_string_value(jd), bk_cert_device_id(sent)) != 0 ||
	    strcmp(json_string_value(js), bk_cert_serial(sent)) != 0 ||
	    (serial && strcmp(json_string_value(js), serial) != 0) ||
	    sodium_memcmp(fp, got, sizeof(fp)) != 0)
		rc = bk__error_set(BK_EFORMAT, "bad-answer",
		                   "unit %s: IDENTITY_INSTALL answer does not name the bundle sent",
		                   serial ? serial : "?");
done:
	json_decref(a);
	return rc;
}

int bk_device_identity_install(bk_device *dev, const uint8_t *bundle, size_t len, char **out_json,
                               bk_deadline d)
{
	bk_cert *sent = NULL;
	json_t *req = NULL;
	char *b64 = NULL, *body = NULL, *reply = NULL;
	int rc = 0;
	if (out_json)
		*out_json = NULL;
	if (dev == NULL || bundle == NULL || len == 0)
		return bk__error_set(BK_EINVALID, NULL, "identity install: missing argument");
	/* The armored form of the largest certificate is well under 8 KiB (the
	 * unit's limit too); anything larger cannot be a bundle. */
	if (len > 2 * BK_CERT_MAX)
		return bk__error_set(BK_EINVALID, "bad-bundle",
		                     "identity install: %zu bytes is too large for an identity "
		                     "bundle",
		                     len);
	size_t enc = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
	if ((b64 = bk__malloc(enc)) == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	sodium_bin2base64(b64, enc, bundle, len, sodium_base64_VARIANT_ORIGINAL);
	req = json_pack("{s:s}", "bundle", b64);
	body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	if (body == NULL) {
		rc = bk__error_oom();
		goto done;
	}
	if ((rc = bk_device_call(dev, BK_DEVICE_IDENTITY_INSTALL, body, &reply, d)))
		goto done;
	/* The unit accepted it, so it is a certificate; the answer must name it. */
	if ((rc = bk_cert_parse(&sent, bundle, len))) {
		bk__error_prefix(rc, "unit %s accepted a bundle that does not parse",
		                 bk_device_serial(dev) ? bk_device_serial(dev) : "?");
		goto done;
	}
	if ((rc = check_answer(dev, reply, sent)))
		goto done;
	if (out_json) {
		*out_json = reply;
		reply = NULL;
	}
done:
	bk_cert_free(sent);
	bk_free(reply);
	free(body);
	json_decref(req);
	bk__free(b64);
	return rc;
}
